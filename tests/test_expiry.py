"""The expiry worker: pending invitations past their expiry become `expired`, each with one
InvitationExpired event, also when several workers share the work."""
import json
import uuid
from datetime import timedelta

from conftest import Worker
from mailkit import Invitation, high_watermarks, query, read_topic_range, wait_until


def test_an_expired_invitation_shows_expired_and_emits_an_event(workers, tail, db):
    events = tail("raikoo.events")
    inv = Invitation(db, expires_in=timedelta(seconds=-5))
    fresh = Invitation(db)
    wait_until(lambda: inv.mail_state()[0] == "expired", 60, "invitation expired")
    m = events.wait_for(lambda m: json.loads(m.value())["type"] == "raikoo.event.InvitationExpired.v1"
                        and json.loads(m.value())["data"]["invitation_id"] == inv.id, timeout=60)
    ev = json.loads(m.value())
    assert m.key().decode() == inv.org
    assert ev["data"]["org_id"] == inv.org and ev["data"]["email"] == inv.email and ev["data"]["kind"] == "existing"
    assert ev["data"]["expired_at"].startswith(inv.expires_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "correlationid" not in ev and "actorid" not in ev
    assert fresh.mail_state()[0] == "pending"


def test_several_expiry_workers_expire_each_invitation_exactly_once(db):
    org_inv = Invitation(db)  # an organization and inviter to hang many invitations on
    cur = db.cursor()
    ids = [str(uuid.uuid4()) for _ in range(120)]
    for i in ids:
        cur.execute(
            "INSERT INTO invitations (id, org_id, email, kind, code_hash, invited_by, created_at, expires_at)"
            " VALUES (%s, %s, %s, 'new', decode(repeat('00', 32), 'hex'), %s, now() - interval '2 days',"
            "         now() - interval '1 day')",
            (i, org_inv.org, f"x-{i}@example.test", org_inv.inviter))
    before = high_watermarks("raikoo.events")
    extra = [Worker("raikoo-expiry-worker", env={"RAIKOO_EXPIRY_BATCH": "7", "RAIKOO_EXPIRY_INTERVAL_MS": "20"})
             for _ in range(2)]
    try:
        wait_until(lambda: query(db, "SELECT count(*) FROM invitations WHERE org_id = %s AND status = 'expired'",
                                 (org_inv.org,))[0][0] == len(ids), 120, "all expired")
    finally:
        assert [w.stop() for w in extra] == [0, 0]
    # Once the relay has published every row of the outbox, the topic holds all events there will be.
    wait_until(lambda: query(db, "SELECT count(*) FROM outbox WHERE key = %s", (org_inv.org,))[0][0] == 0, 60,
               "outbox drained")
    msgs = read_topic_range("raikoo.events", before, high_watermarks("raikoo.events"))
    expired = [json.loads(m.value())["data"]["invitation_id"] for m in msgs
               if json.loads(m.value())["type"] == "raikoo.event.InvitationExpired.v1"
               and json.loads(m.value())["data"]["org_id"] == org_inv.org]
    assert sorted(expired) == sorted(ids)
