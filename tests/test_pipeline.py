"""The command pipeline on the real broker and database: every flow of the user guide, every result code,
idempotency, the dead-letter topic, scaling out, and the relay's fail-over."""
import json
import os
import signal
import time
import uuid

import pytest

from conftest import Worker, accepted, argon2id_hash, delete_topics, rejected, unique_email, wait_until

CODES = ["invalid_command", "unknown_command_type", "organization_not_found", "permission_denied",
         "owner_grant_denied", "user_not_found", "user_already_exists", "already_member",
         "invitation_pending", "invitation_not_found", "invitation_not_pending", "invitation_expired",
         "invalid_code", "too_many_attempts", "account_already_active", "invalid_password_hash",
         "not_member", "last_owner", "rate_limited"]


@pytest.fixture()
def org(client, admin):
    """A fresh organization owned by the admin."""
    r = accepted(client.send("CreateOrganization", admin, {"name": "Acme " + uuid.uuid4().hex[:6],
                                                          "owner_user_id": admin}))
    return r["org_id"]


def new_user(client, admin, prefix="user"):
    """An active account made by the admin; returns (id, e-mail)."""
    email = unique_email(prefix)
    r = accepted(client.send("CreateUser", admin, {"email": email, "name": prefix.title(),
                                                  "password_hash": argon2id_hash()}))
    return r["user_id"], email


def member(db, org, user):
    cur = db.cursor()
    cur.execute("SELECT is_owner, can_manage_users FROM org_members WHERE org_id = %s AND user_id = %s",
                (org, user))
    return cur.fetchone()


def invitation(db, inv):
    cur = db.cursor()
    cur.execute("SELECT status, failed_attempts, kind, user_id FROM invitations WHERE id = %s", (inv,))
    return cur.fetchone()


def manager_of(client, admin, org):
    """A member who can manage users but is not an owner."""
    uid, email = new_user(client, admin, "manager")
    r = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": email}))
    code = client.code_for(r["invitation_id"])
    accepted(client.send("AcceptInvitation", uid, {"invitation_id": r["invitation_id"], "code": code}))
    accepted(client.send("SetMemberRole", admin, {"org_id": org, "user_id": uid, "owner": False,
                                                  "can_manage_users": True}))
    return uid


def test_add_existing_user_pending_then_accepted_becomes_member(client, admin, org, db):
    uid, email = new_user(client, admin, "alice")
    r = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": email.upper().replace(
        "EXAMPLE.TEST", "Example.Test"), "owner": True}))
    inv = r["invitation_id"]
    assert r["user_id"] == uid and r["org_id"] == org
    assert invitation(db, inv)[0] == "pending"
    assert member(db, org, uid) is None, "membership only on acceptance"
    code = client.code_for(inv)
    accepted(client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": code.lower()}))
    assert invitation(db, inv)[0] == "accepted"
    assert member(db, org, uid) == (True, False)
    # The code works once.
    rejected(client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": code}), "invitation_not_pending")


def test_invite_new_user_creates_disabled_account_then_activation_enables_it(client, admin, org, db):
    email = unique_email("newbie")
    r = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email, "name": "Newbie"}))
    inv, uid = r["invitation_id"], r["user_id"]
    cur = db.cursor()
    cur.execute("SELECT username, enabled, password_hash FROM users WHERE id = %s", (uid,))
    assert cur.fetchone() == (email, False, None)
    assert member(db, org, uid) == (False, False), "membership at once for a new user"
    assert invitation(db, inv)[:3] == ("pending", 0, "new")
    code = client.code_for(inv)
    rejected(client.send("ActivateAccount", None, {"email": email, "code": code, "password_hash": "plain"}),
             "invalid_password_hash")
    h = argon2id_hash("s3cret passphrase")
    accepted(client.send("ActivateAccount", None, {"email": email, "code": code.replace("-", ""),
                                                   "password_hash": h}))
    cur.execute("SELECT enabled, password_hash IS NOT NULL, activated_at IS NOT NULL FROM users WHERE id = %s",
                (uid,))
    assert cur.fetchone() == (True, True, True)
    assert invitation(db, inv)[0] == "accepted"
    rejected(client.send("ActivateAccount", None, {"email": email, "code": code, "password_hash": h}),
             "account_already_active")


def test_inviting_an_existing_account_says_use_add_existing_user(client, admin, org):
    _, email = new_user(client, admin, "exists")
    r = rejected(client.send("InviteNewUser", admin, {"org_id": org, "email": email}), "user_already_exists")
    assert "Add Existing User" in r["message"]


def test_owner_toggle_by_a_manager_is_refused(client, admin, org):
    mgr = manager_of(client, admin, org)
    r = rejected(client.send("InviteNewUser", mgr, {"org_id": org, "email": unique_email(), "owner": True}),
                 "owner_grant_denied")
    assert "owner" in r["message"].lower()
    _, email = new_user(client, admin, "target")
    rejected(client.send("AddExistingUser", mgr, {"org_id": org, "email": email, "owner": True}),
             "owner_grant_denied")
    # Without the toggle a manager may invite.
    accepted(client.send("InviteNewUser", mgr, {"org_id": org, "email": unique_email()}))
    # A manager cannot make someone an owner, nor remove an owner.
    rejected(client.send("SetMemberRole", mgr, {"org_id": org, "user_id": admin, "owner": False,
                                                "can_manage_users": True}), "owner_grant_denied")
    rejected(client.send("RemoveMember", mgr, {"org_id": org, "user_id": admin}), "permission_denied")


def test_removed_new_invitation_frees_the_address_for_a_new_invitation(client, admin, org, db):
    email = unique_email("again")
    r = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email}))
    inv, uid = r["invitation_id"], r["user_id"]
    rejected(client.send("InviteNewUser", admin, {"org_id": org, "email": email}), "invitation_pending")
    accepted(client.send("RemoveInvitation", admin, {"org_id": org, "invitation_id": inv}))
    assert invitation(db, inv)[0] == "removed"
    cur = db.cursor()
    cur.execute("SELECT count(*) FROM users WHERE id = %s", (uid,))
    assert cur.fetchone()[0] == 0, "the never-activated account goes with its invitation"
    r2 = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email}))
    assert r2["invitation_id"] != inv
    rejected(client.send("RemoveInvitation", admin, {"org_id": org, "invitation_id": inv}),
             "invitation_not_pending")
    # An existing user's invitation can be removed and sent again too.
    _, e2 = new_user(client, admin, "again2")
    r3 = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": e2}))
    rejected(client.send("AddExistingUser", admin, {"org_id": org, "email": e2}), "invitation_pending")
    accepted(client.send("RemoveInvitation", admin, {"org_id": org, "invitation_id": r3["invitation_id"]}))
    accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": e2}))


def test_five_wrong_codes_lock_until_a_resend_issues_a_new_code(client, admin, org, db):
    uid, email = new_user(client, admin, "locked")
    inv = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": email}))["invitation_id"]
    code = client.code_for(inv)
    wrong = "ZZZZ-ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ-ZZZZ" else "YYYY-YYYY-YYYY"
    for i in range(5):
        r = rejected(client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": wrong}), "invalid_code")
    assert "resend" in r["message"]
    assert invitation(db, inv)[1] == 5
    rejected(client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": code}), "too_many_attempts")
    accepted(client.send("ResendInvitation", admin, {"org_id": org, "invitation_id": inv}))
    new_code = client.code_for(inv, nth=2)
    assert invitation(db, inv)[1] == 0
    rejected(client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": code}) if code != new_code
             else client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": wrong}), "invalid_code")
    accepted(client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": new_code}))


def test_an_organization_keeps_its_last_owner(client, admin, org, db):
    rejected(client.send("RemoveMember", admin, {"org_id": org, "user_id": admin}), "last_owner")
    rejected(client.send("SetMemberRole", admin, {"org_id": org, "user_id": admin, "owner": False,
                                                  "can_manage_users": True}), "last_owner")
    uid, email = new_user(client, admin, "second")
    inv = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": email, "owner": True}))
    accepted(client.send("AcceptInvitation", uid, {"invitation_id": inv["invitation_id"],
                                                   "code": client.code_for(inv["invitation_id"])}))
    accepted(client.send("RemoveMember", uid, {"org_id": org, "user_id": admin}))
    rejected(client.send("RemoveMember", uid, {"org_id": org, "user_id": uid}), "last_owner")
    assert member(db, org, uid) == (True, False)


def test_the_database_itself_refuses_to_drop_the_last_owner(db, client, admin, org):
    import psycopg2
    import psycopg2.errors
    cur = db.cursor()
    with pytest.raises(psycopg2.DatabaseError) as e:
        cur.execute("DELETE FROM org_members WHERE org_id = %s", (org,))
    assert e.value.pgcode == "RK001"


def test_a_repeated_command_id_changes_nothing_and_gets_the_same_result(client, admin, org, db):
    email = unique_email("twice")
    cid = str(uuid.uuid4())
    client.publish("InviteNewUser", admin, {"org_id": org, "email": email}, command_id=cid)
    client.publish("InviteNewUser", admin, {"org_id": org, "email": email}, command_id=cid)
    first = client.result(cid)
    accepted(first)
    client.publish("InviteNewUser", admin, {"org_id": org, "email": email}, command_id=cid)
    deadline = time.time() + 30
    while len(client.by_command.get(cid, [])) < 3 and time.time() < deadline:
        client.result(str(uuid.uuid4()), timeout=0.5) if False else client.results.poll(0.3)
        for m in client.results.seen:
            r = json.loads(m.value())
            client.by_command.setdefault(r["data"]["command_id"], []).append(r)
        client.results.seen.clear()
    results = client.by_command[cid]
    assert len(results) == 3
    assert all(r == results[0] for r in results), "the original result, again"
    cur = db.cursor()
    cur.execute("SELECT count(*) FROM invitations WHERE lower(email) = lower(%s)", (email,))
    assert cur.fetchone()[0] == 1


def test_a_command_another_worker_decides_meanwhile_gets_that_result_and_changes_nothing(client, admin, org,
                                                                                       db_url, db):
    """Constraints decide races. Another worker's transaction records the same command id while this worker
    applies it: this worker's processed_commands row (sent with its outbox rows and COMMIT in one pipeline)
    waits for that row's lock; once the other commits, the whole transaction fails on the unique key and
    rolls back, and the command, applied again, gets the other's stored result and changes nothing itself."""
    import psycopg2
    email = unique_email("raced")
    cid = str(uuid.uuid4())
    theirs = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/tests/other-worker",
              "type": "raikoo.result.v1", "time": "2026-11-29T00:00:00Z", "datacontenttype": "application/json",
              "data": {"command_id": cid, "command_type": "InviteNewUser", "status": "rejected",
                       "code": "rate_limited", "message": "decided by the other worker", "org_id": org,
                       "user_id": None, "invitation_id": None}}
    other = psycopg2.connect(db_url)
    try:
        oc = other.cursor()
        oc.execute("INSERT INTO processed_commands (command_id, command_type, status, result) "
                   "VALUES (%s, 'InviteNewUser', 'rejected', %s)", (cid, json.dumps(theirs)))
        client.publish("InviteNewUser", admin, {"org_id": org, "email": email}, command_id=cid)
        cur = db.cursor()

        def waiting():
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'INSERT INTO processed_commands%%'")
            return cur.fetchone()[0] > 0
        wait_until(waiting, what="the worker's row waiting for the other transaction's")
        other.commit()
        assert client.result(cid) == theirs["data"]
    finally:
        other.close()
    cur = db.cursor()
    cur.execute("SELECT count(*) FROM invitations WHERE lower(email) = lower(%s)", (email,))
    assert cur.fetchone()[0] == 0, "the rolled-back attempt left nothing"
    cur.execute("SELECT count(*) FROM users WHERE lower(email) = lower(%s)", (email,))
    assert cur.fetchone()[0] == 0


def test_a_run_whose_new_account_another_transaction_takes_meanwhile_is_decided_per_command(client, admin, org,
                                                                                          db_url, db):
    """The set path writes a run's rows with one statement (lib/svc/domain_run.c, SQL_RUN_INSERT). An account
    for one of the run's addresses that another transaction inserted, not yet committed when the run read its
    targets, holds that statement at the unique index; once committed, it fails the statement (23505): the
    run goes back to its savepoint and its commands are decided per command, that address
    user_already_exists, the others accepted, and nothing is written twice. The commands are published in
    one flush (one record batch), so that one batch of the worker holds them all and makes them a run; the
    statement waited for is the set path's own."""
    import psycopg2
    taken = unique_email("taken")
    emails = [unique_email("run") for _ in range(2)] + [taken] + [unique_email("run") for _ in range(2)]
    holder = psycopg2.connect(db_url)
    try:
        hc = holder.cursor()
        hc.execute("INSERT INTO users (id, email, username, name, password_hash, enabled)"
                   " VALUES (%s, %s, %s, 'Taken Meanwhile', %s, true)",
                   (str(uuid.uuid4()), taken, taken, argon2id_hash()))
        ids = []
        for e in emails:
            ev = client.envelope("InviteNewUser", admin, {"org_id": org, "email": e})
            client.producer.produce("raikoo.commands", json.dumps(ev).encode(), key=org.encode())
            ids.append(ev["id"])
        assert client.producer.flush(30) == 0
        cur = db.cursor()

        def run_waits():
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))"
                        " AND query LIKE 'WITH d AS (SELECT * FROM unnest(%%'", (holder.get_backend_pid(),))
            return cur.fetchone()[0] > 0
        wait_until(run_waits, what="the run's statement waiting for the other transaction's account")
        holder.commit()
    finally:
        holder.close()
    results = [client.result(i) for i in ids]
    rejected(results[2], "user_already_exists")
    for r in results[:2] + results[3:]:
        accepted(r)
    cur = db.cursor()
    cur.execute("SELECT lower(email), count(*) FROM users WHERE lower(email) = ANY (%s) GROUP BY 1",
                ([e.lower() for e in emails],))
    assert dict(cur.fetchall()) == {e.lower(): 1 for e in emails}
    cur.execute("SELECT lower(email), count(*) FROM invitations WHERE org_id = %s AND lower(email) = ANY (%s)"
                " GROUP BY 1", (org, [e.lower() for e in emails]))
    assert dict(cur.fetchall()) == {e.lower(): 1 for e in emails if e != taken}


def test_every_permission_and_lookup_code(client, admin, org, db):
    outsider, _ = new_user(client, admin, "outsider")
    rejected(client.send("InviteNewUser", outsider, {"org_id": org, "email": unique_email()}), "permission_denied")
    rejected(client.send("CreateOrganization", outsider, {"name": "X", "owner_user_id": outsider}),
             "permission_denied")
    rejected(client.send("InviteNewUser", str(uuid.uuid4()), {"org_id": org, "email": unique_email()}),
             "permission_denied")
    r = rejected(client.send("InviteNewUser", admin, {"org_id": str(uuid.uuid4()), "email": unique_email()}),
                 "organization_not_found")
    assert "organization" in r["message"].lower()
    r = rejected(client.send("AddExistingUser", admin, {"org_id": org, "email": unique_email("nobody")}),
                 "user_not_found")
    assert "Invite New User" in r["message"]
    rejected(client.send("AddExistingUser", admin, {"org_id": org, "email": "admin@raikoo.test"}), "already_member")
    rejected(client.send("ResendInvitation", admin, {"org_id": org, "invitation_id": str(uuid.uuid4())}),
             "invitation_not_found")
    rejected(client.send("AcceptInvitation", admin, {"invitation_id": str(uuid.uuid4()), "code": "AAAA-AAAA-AAAA"}),
             "invitation_not_found")
    rejected(client.send("RemoveMember", admin, {"org_id": org, "user_id": outsider}), "not_member")
    rejected(client.send("SetMemberRole", admin, {"org_id": org, "user_id": outsider, "owner": False,
                                                  "can_manage_users": False}), "not_member")
    rejected(client.send("CreateUser", admin, {"email": unique_email(), "name": "W", "password_hash": "$2b$10$x"}),
             "invalid_password_hash")
    _, email = new_user(client, admin, "dup")
    rejected(client.send("CreateUser", admin, {"email": email.upper(), "name": "D",
                                               "password_hash": argon2id_hash()}), "user_already_exists")


def test_someone_elses_invitation_cannot_be_accepted(client, admin, org):
    uid, email = new_user(client, admin, "invitee")
    other, _ = new_user(client, admin, "other")
    inv = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": email}))["invitation_id"]
    rejected(client.send("AcceptInvitation", other, {"invitation_id": inv, "code": client.code_for(inv)}),
             "permission_denied")


def test_expiry_is_checked_at_use_time_and_a_resend_revives(client, admin, org, db):
    uid, email = new_user(client, admin, "late")
    inv = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": email}))["invitation_id"]
    code = client.code_for(inv)
    db.cursor().execute("UPDATE invitations SET created_at = now() - interval '8 days',"
                        " expires_at = now() - interval '1 day' WHERE id = %s", (inv,))
    rejected(client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": code}), "invitation_expired")
    accepted(client.send("ResendInvitation", admin, {"org_id": org, "invitation_id": inv}))
    accepted(client.send("AcceptInvitation", uid, {"invitation_id": inv, "code": client.code_for(inv, nth=2)}))


def test_rate_limit_per_organization(client, admin, org, db):
    # 1,000 invitations this hour, as an hour of busy inviting would leave them (made directly: 1,000
    # commands would make this test slow, not better).
    db.cursor().execute("INSERT INTO invitation_rate (org_id, minute, created)"
                        " VALUES (%s, date_trunc('minute', now()) - interval '30 minutes', 999)", (org,))
    accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email()}))
    r = rejected(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email()}), "rate_limited")
    assert "1000" in r["message"]
    _, email = new_user(client, admin, "limited")
    rejected(client.send("AddExistingUser", admin, {"org_id": org, "email": email}), "rate_limited")
    # An hour later the old invitations no longer count.
    db.cursor().execute("UPDATE invitation_rate SET minute = minute - interval '2 hours' WHERE org_id = %s", (org,))
    accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email()}))


def test_exact_address_matching_never_matches_a_suffix(client, admin, org, db):
    tail = uuid.uuid4().hex[:6]
    _, alice = new_user(client, admin, f"alice{tail}")
    ice = alice[len("al"):]
    r = rejected(client.send("AddExistingUser", admin, {"org_id": org, "email": ice}), "user_not_found")
    accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": ice}))


def test_malformed_messages_go_to_the_dead_letter_topic_and_the_worker_goes_on(client, admin, org, tail):
    dlq = tail("raikoo.commands.dlq")
    marker = uuid.uuid4().hex
    client.publish_raw(f"not json {marker}".encode())
    client.publish_raw(json.dumps({"no_id": marker}).encode())
    client.publish_raw(json.dumps({"id": marker, "pad": "x" * 70000}).encode())
    reasons = {}
    for _ in range(3):
        m = dlq.wait_for(lambda m: marker.encode() in m.value() and m.value() not in reasons)
        reasons[m.value()] = dict(m.headers())["raikoo.dlq.reason"].decode()
    assert any("not JSON" in r for r in reasons.values())
    assert any("no command id" in r for r in reasons.values())
    assert any("over the limit" in r for r in reasons.values())
    # A command with an id but nonsense inside gets a result, not the DLQ.
    rejected(client.send("NoSuchThing", admin, {"org_id": org}), "unknown_command_type")
    rejected(client.send("InviteNewUser", admin, {"org_id": org, "email": "x@y.io", "extra": 1}), "invalid_command")
    rejected(client.send("InviteNewUser", admin, {"org_id": "not-a-uuid", "email": "x@y.io"}), "invalid_command")
    # Still serving.
    accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email()}))


def test_two_workers_in_one_group_share_the_partitions(client, admin, workers):
    second = Worker("raikoo-command-worker")
    try:
        deadline = time.time() + 60
        while "assigned" not in second.output() and time.time() < deadline:
            time.sleep(0.2)
        assert "assigned" in second.output()
        orgs = [accepted(client.send("CreateOrganization", admin, {"name": f"Shared {i}", "owner_user_id": admin}))
                ["org_id"] for i in range(6)]
        ids = [client.publish("InviteNewUser", admin, {"org_id": o, "email": unique_email("shared")})
               for o in orgs for _ in range(5)]
        for i in ids:
            accepted(client.result(i))
    finally:
        assert second.stop() == 0
    out = second.output()
    assert "revoked" in out or "shutting down" in out


def test_the_relay_killed_and_restarted_loses_and_doubles_nothing(client, admin, org, db, workers):
    relay = workers["raikoo-outbox-relay"]
    relay.stop(sig=signal.SIGKILL)
    try:
        ids = [client.publish("InviteNewUser", admin, {"org_id": org, "email": unique_email("relay")})
               for _ in range(20)]
        cur = db.cursor()
        deadline = time.time() + 60
        while time.time() < deadline:
            cur.execute("SELECT count(*) FROM processed_commands WHERE command_id = ANY(%s::uuid[])", (ids,))
            if cur.fetchone()[0] == len(ids):
                break
            time.sleep(0.2)
        cur.execute("SELECT count(*) FROM outbox WHERE topic = 'raikoo.results' AND key = ANY(%s)", (ids,))
        assert cur.fetchone()[0] == len(ids), "results wait in the outbox while no relay runs"
    finally:
        workers["raikoo-outbox-relay"] = Worker("raikoo-outbox-relay")
    for i in ids:
        accepted(client.result(i))
    time.sleep(1)
    client.results.poll(1)
    for m in client.results.seen:
        r = json.loads(m.value())
        client.by_command.setdefault(r["data"]["command_id"], []).append(r)
    client.results.seen.clear()
    assert all(len(client.by_command[i]) == 1 for i in ids), "each result exactly once"


def test_an_outbox_row_committed_after_a_later_one_is_published_all_the_same(db_url, db, tail, workers):
    """The relay overlaps its reads with Kafka's acknowledgements, so it must never find rows by "id above the
    last one read": a transaction that took an outbox id before another may commit after it. Here the early
    row's transaction stays open until the later row is published (the relay has read past its id), then
    commits: its row is published too, and both leave the outbox."""
    import psycopg2
    from test_poison import _create_topic
    topic = "raikoo.test.relay-order-" + uuid.uuid4().hex[:8]
    _create_topic(topic)
    early = psycopg2.connect(db_url)
    try:
        t = tail(topic)
        ec = early.cursor()
        ec.execute("INSERT INTO outbox (topic, key, payload) VALUES (%s, 'k', 'early') RETURNING id", (topic,))
        early_id = ec.fetchone()[0]
        cur = db.cursor()
        cur.execute("INSERT INTO outbox (topic, key, payload) VALUES (%s, 'k', 'late') RETURNING id", (topic,))
        late_id = cur.fetchone()[0]
        assert early_id < late_id
        t.wait_for(lambda m: m.value() == b"late")
        deadline = time.time() + 30
        while time.time() < deadline:  # the relay deletes what Kafka acknowledged
            cur.execute("SELECT count(*) FROM outbox WHERE id = %s", (late_id,))
            if cur.fetchone()[0] == 0:
                break
            time.sleep(0.1)
        assert not [m for m in t.seen if m.value() == b"early"], "published before its transaction committed"
        early.commit()
        t.wait_for(lambda m: m.value() == b"early")
        while time.time() < deadline:
            cur.execute("SELECT count(*) FROM outbox WHERE id = ANY(%s)", ([early_id, late_id],))
            if cur.fetchone()[0] == 0:
                break
            time.sleep(0.1)
        cur.execute("SELECT count(*) FROM outbox WHERE id = ANY(%s)", ([early_id, late_id],))
        assert cur.fetchone()[0] == 0, "both rows deleted once Kafka acknowledged them"
        assert [m.value() for m in t.seen].count(b"early") == 1 and [m.value() for m in t.seen].count(b"late") == 1
    finally:
        early.close()
        delete_topics(topic)


def test_an_insert_into_the_outbox_notifies_the_ids_it_inserted(db_url):
    """The relay reads the ids each notification names (schemas/sql/013): a statement's NOTIFY raikoo_outbox
    says "first last" of the rows it inserted, after its commit; a statement that inserted nothing says
    nothing."""
    import psycopg2
    import select
    from test_poison import _create_topic
    topic = "raikoo.test.relay-notify-" + uuid.uuid4().hex[:8]
    _create_topic(topic)
    listener = psycopg2.connect(db_url)
    listener.autocommit = True
    try:
        listener.cursor().execute("LISTEN raikoo_outbox")
        writer = psycopg2.connect(db_url)
        wc = writer.cursor()
        wc.execute("INSERT INTO outbox (topic, key, payload) SELECT %s, 'k', 'n' || g FROM generate_series(1, 3) g"
                   " RETURNING id", (topic,))
        ids = sorted(r[0] for r in wc.fetchall())
        wc.execute("INSERT INTO outbox (topic, key, payload) SELECT %s, 'k', 'none' WHERE false", (topic,))
        writer.commit()
        writer.close()
        want = f"{ids[0]} {ids[-1]}"
        deadline, payloads = time.time() + 10, []
        while want not in payloads and time.time() < deadline:
            select.select([listener], [], [], 0.5)
            listener.poll()
            payloads += [n.payload for n in listener.notifies]
            listener.notifies.clear()
        assert want in payloads, f"no notification {want!r} among {payloads!r}"
        assert "" not in payloads, "a statement that inserted nothing notified"
    finally:
        listener.close()
        delete_topics(topic)


def test_an_outbox_row_whose_notification_never_came_is_published_while_others_keep_coming(db_url, db, tail,
                                                                                            workers):
    """The relay reads the ids notifications name; a row no notification named (here: inserted with the trigger
    disabled in its own transaction, as by a writer of before schemas/sql/013 or a notification lost) is
    found by the full read the relay makes every relay.poll.ms, even while notified rows keep it busy."""
    from test_poison import _create_topic
    topic = "raikoo.test.relay-silent-" + uuid.uuid4().hex[:8]
    _create_topic(topic)
    try:
        t = tail(topic)
        cur = db.cursor()
        cur.execute("BEGIN")
        cur.execute("ALTER TABLE outbox DISABLE TRIGGER outbox_notify")
        cur.execute("INSERT INTO outbox (topic, key, payload) VALUES (%s, 'k', 'silent')", (topic,))
        cur.execute("ALTER TABLE outbox ENABLE TRIGGER outbox_notify")
        cur.execute("COMMIT")
        deadline, n = time.time() + 20, 0
        while time.time() < deadline and not any(m.value() == b"silent" for m in t.seen):
            cur.execute("INSERT INTO outbox (topic, key, payload) VALUES (%s, 'k', %s)", (topic, f"busy{n}"))
            n += 1
            t.poll_new(0.05)
        assert any(m.value() == b"silent" for m in t.seen), f"not published while {n} notified rows were"
        assert any(m.value() == b"busy0" for m in t.seen)
    finally:
        delete_topics(topic)


def test_a_standby_relay_takes_over(client, admin, org, workers):
    standby = Worker("raikoo-outbox-relay")
    try:
        deadline = time.time() + 30
        while "standing by" not in standby.output() and time.time() < deadline:
            time.sleep(0.2)
        assert "standing by" in standby.output()
        assert workers["raikoo-outbox-relay"].stop() == 0
        accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("standby")}))
        assert "active" in standby.output()
    finally:
        workers["raikoo-outbox-relay"] = standby


def test_worker_refuses_an_unmigrated_database(db_url):
    import psycopg2
    name = "raikoo_empty_" + uuid.uuid4().hex[:8]
    admin = psycopg2.connect(db_url.replace("user=raikoo", "user=postgres"))
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name} OWNER raikoo")
    try:
        w = Worker("raikoo-command-worker", env={"RAIKOO_DB_URL": db_url.replace("dbname=raikoo", f"dbname={name}")})
        rc = w.proc.wait(timeout=30)
        w.stop()
        assert rc != 0 and "raikoo migrate" in w.output()
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_no_secret_reaches_events_results_or_logs(client, admin, org, workers, tail):
    events = tail("raikoo.events")
    email = unique_email("secret")
    r = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email}))
    code = client.code_for(r["invitation_id"])
    h = argon2id_hash("another passphrase")
    rejected(client.send("ActivateAccount", None, {"email": email, "code": "WRNG-WRNG-WRNG", "password_hash": h}),
             "invalid_code")
    accepted(client.send("ActivateAccount", None, {"email": email, "code": code, "password_hash": h}))
    events.wait_for(lambda m: b"AccountActivated" in m.value() and email.encode() in m.value())
    texts = [m.value().decode() for m in events.seen]
    texts += [json.dumps(rs) for rs in client.by_command.values()]
    for w in workers.values():
        texts.append(w.output())
    bare = code.replace("-", "")
    for t in texts:
        assert code not in t and bare not in t and h not in t and "WRNG-WRNG-WRNG" not in t
        assert "$argon2id$" not in t


def test_every_result_code_of_the_design_has_a_test_here():
    """Each code of DESIGN.md is expected by some rejected(...) in this file: a code that loses its last
    test fails here, whichever tests were selected."""
    import re
    with open(__file__) as f:
        source = f.read()
    expected = set(re.findall(r'"([a-z_]+)"\)\s*$', source, flags=re.M)) | set(
        re.findall(r'rejected\([^\n]*?"([a-z_]+)"\)', source))
    missing = [c for c in CODES if c not in expected]
    assert not missing, f"codes no test in this file expects: {missing}"
