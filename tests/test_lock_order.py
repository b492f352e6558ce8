"""The order in which commands lock rows (lib/svc/domain_invite.c, docs/DESIGN.md): an organization's policy
row before any invitation row, so that a ResendInvitation and a batch that invites (policy row FOR UPDATE) and
then accepts (invitation rows) cannot wait for each other in a circle (PostgreSQL would break it with 40P01
and the batch would run again). On the real stack: the test holds the policy row from a transaction of its
own, sends a ResendInvitation, waits until the worker's transaction waits for that row (pg_blocking_pids, no
sleep), and checks that the invitation row is free at that point."""
import time

import psycopg2
import pytest
from psycopg2 import errors

from conftest import accepted, unique_email


def _blocked_by(db, pid, what, timeout=60):
    """The backends waiting for a lock that backend pid holds, once one of them runs a statement that contains
    `what` (fails at the deadline). pg_stat_activity's text is read from a snapshot taken as the query starts,
    pg_blocking_pids live: a backend seen blocked can still show the statement it ran just before."""
    end = time.time() + timeout
    rows = []
    with db.cursor() as cur:
        while time.time() < end:
            cur.execute("SELECT pid, query FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))", (pid,))
            rows = cur.fetchall()
            if any(what in (q or "") for _, q in rows):
                return rows
            time.sleep(0.05)
    pytest.fail(f"no transaction came to wait for the policy row (blocked last seen: {rows})")


def test_resend_invitation_takes_the_policy_row_before_the_invitation_row(client, admin, db, db_url):
    org = accepted(client.send("CreateOrganization", admin, {"name": "Lock order", "owner_user_id": admin}))["org_id"]
    accepted(client.send("SetOrganizationPolicy", admin, {"org_id": org, "seat_limit": 100}))
    inv = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("lock")}))[
        "invitation_id"]
    # The invitation's e-mail goes first, so that nothing else (the mailer's mail_state) holds the row below.
    end = time.time() + 120
    with db.cursor() as cur:
        while True:
            cur.execute("SELECT mail_state FROM invitations WHERE id = %s", (inv,))
            if cur.fetchone()[0] == "sent":
                break
            assert time.time() < end, "the invitation e-mail was never sent"
            time.sleep(0.1)

    holder = psycopg2.connect(db_url)
    probe = psycopg2.connect(db_url)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM organization_policies WHERE org_id = %s FOR UPDATE", (org,))
            assert cur.fetchone() == (1,)
            cur.execute("SELECT pg_backend_pid()")
            holder_pid = cur.fetchone()[0]
        cid = client.publish("ResendInvitation", admin, {"org_id": org, "invitation_id": inv})
        _blocked_by(db, holder_pid, "organization_policies")
        # The worker waits for the policy row: it must not hold the invitation row meanwhile.
        with probe.cursor() as cur:
            try:
                cur.execute("SELECT 1 FROM invitations WHERE id = %s FOR UPDATE NOWAIT", (inv,))
            except errors.LockNotAvailable:
                pytest.fail("ResendInvitation locked the invitation row before the policy row")
        probe.rollback()
    finally:
        probe.close()
        holder.rollback()
        holder.close()
    r = accepted(client.result(cid))
    assert r["invitation_id"] == inv
