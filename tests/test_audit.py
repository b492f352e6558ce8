"""The audit trail on the real stack (docs/AUDIT.md): raikoo-audit-worker records every event of
raikoo.events once, chained per organization; `raikoo audit` reads it; `raikoo audit verify` finds a changed,
deleted or inserted row."""
import hashlib
import json
import os
import signal
import time
import uuid

import pytest

from conftest import Relay, Worker, accepted, argon2id_hash, pg_url_via, raikoo, rejected, unique_email, wait_log

ZERO = b"\0" * 32


def org_events(tail, org):
    """The events of org seen on raikoo.events so far, by id (the last copy of a duplicate)."""
    out = {}
    for m in tail.poll(0.2):
        try:
            ev = json.loads(m.value())
        except ValueError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("data"), dict) and ev["data"].get("org_id") == org:
            out[ev["id"]] = ev
    return out


def audit_rows(db, org):
    cur = db.cursor()
    cur.execute("SELECT seq, event_id::text, event_type, event, hash, actor_id::text, subject, result"
                " FROM audit_log WHERE org_id = %s ORDER BY seq", (org,))
    return cur.fetchall()


def wait_recorded(db, tail, org, mails, extra=(), timeout=90):
    """Waits until the topic shows `mails` InvitationEmailSent events of org and audit_log holds exactly the
    events the topic holds for org; returns (events by id, rows)."""
    end = time.time() + timeout
    while True:
        events = org_events(tail, org)
        rows = audit_rows(db, org)
        sent = sum(1 for e in events.values() if e["type"] == "raikoo.event.InvitationEmailSent.v1")
        if sent >= mails and events and {r[1] for r in rows} == set(events) | set(extra):
            return events, rows
        if time.time() > end:
            raise AssertionError(f"audit_log of {org}: {len(rows)} rows, topic: {len(events)} events, "
                                 f"{sent}/{mails} e-mails sent; missing {set(events) - {r[1] for r in rows}}")
        time.sleep(0.3)


def check_chain(db, org, rows):
    """Each event once, seq 1..n, every hash SHA-256(previous hash || event), the head on the last row."""
    ids = [r[1] for r in rows]
    assert len(ids) == len(set(ids)), "an event recorded twice"
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    prev = ZERO
    for r in rows:
        h = hashlib.sha256(prev + r[3].encode()).digest()
        assert bytes(r[4]) == h, f"seq {r[0]}: hash does not chain"
        prev = h
    cur = db.cursor()
    cur.execute("SELECT seq, hash FROM audit_heads WHERE org_id = %s", (org,))
    seq, head = cur.fetchone()
    assert seq == len(rows) and bytes(head) == prev


def flow(client, admin, with_rejection=True):
    """An organization with an invited new user, an existing user who accepts, and (optionally) a rejected
    command. Returns (org, number of invitation e-mails, the existing user's id and address)."""
    org = accepted(client.send("CreateOrganization", admin, {"name": "Audit " + uuid.uuid4().hex[:6],
                                                            "owner_user_id": admin}))["org_id"]
    accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("new"), "name": "N"}))
    email = unique_email("bob")
    uid = accepted(client.send("CreateUser", admin, {"email": email, "name": "Bob",
                                                    "password_hash": argon2id_hash()}))["user_id"]
    r = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": email}))
    code = client.code_for(r["invitation_id"])
    accepted(client.send("AcceptInvitation", uid, {"invitation_id": r["invitation_id"], "code": code}))
    if with_rejection:
        rejected(client.send("InviteNewUser", admin, {"org_id": org, "email": email, "name": "Bob"}),
                 "user_already_exists")
    return org, 2, uid, email


def test_every_event_of_a_flow_is_recorded_once_chained_and_readable(client, admin, db, tail):
    events_tail = tail("raikoo.events")
    # Something on raikoo.events that is no event must not stop the audit worker.
    client.producer.produce("raikoo.events", b"not json at all", key=b"x")
    client.producer.produce("raikoo.events", b'{"id": 5}', key=b"x")
    client.producer.flush(30)
    org, mails, uid, email = flow(client, admin)
    events, rows = wait_recorded(db, events_tail, org, mails)
    check_chain(db, org, rows)
    types = [r[2] for r in rows]
    for t in ("OrganizationCreated", "MembershipCreated", "InvitationCreated", "UserCreated",
              "InvitationEmailSent", "InvitationAccepted", "CommandRejected"):
        assert t in types, (t, types)
    # The columns say who, what, whom and with what result.
    rej = next(r for r in rows if r[2] == "CommandRejected")
    assert rej[5] == admin and rej[7] == "user_already_exists"
    acc = next(r for r in rows if r[2] == "InvitationAccepted")
    assert acc[5] == uid and acc[6] == email and acc[7] == "ok"

    p = raikoo("audit", "--org", org, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["org_id"] == org and [e["seq"] for e in doc["entries"]] == list(range(1, len(rows) + 1))
    e = next(e for e in doc["entries"] if e["type"] == "CommandRejected")
    assert e["what"] == "InviteNewUser rejected" and e["result"] == "user_already_exists"
    assert e["actor_id"] == admin and e["actor_email"] == "admin@raikoo.test" and e["subject"] == org
    assert e["event_id"] in events and e["data"]["result_code"] == "user_already_exists"
    p = raikoo("audit", "--org", org)
    assert p.returncode == 0 and p.stdout.split("\n")[0].split() == ["SEQ", "TIME", "ACTOR", "WHAT", "WHOM",
                                                                     "RESULT"], p.stdout
    assert "InviteNewUser rejected" in p.stdout and "admin@raikoo.test" in p.stdout
    # --since: only what happened from then on.
    last_time = doc["entries"][-1]["time"]
    p = raikoo("audit", "--org", org, "--since", "2999-01-01T00:00:00Z", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["entries"] == []
    p = raikoo("audit", "--org", org, "--since", last_time, "--json")
    assert 1 <= len(json.loads(p.stdout)["entries"]) < len(rows)
    assert raikoo("audit", "--org", org, "--since", "yesterday").returncode == 2
    assert raikoo("audit", "--org", "nope").returncode == 2
    # No secret reaches the audit log.
    for r in rows:
        assert "sealed_code" not in r[3] and "password_hash" not in r[3] and "$argon2id$" not in r[3]

    p = raikoo("audit", "verify", "--org", org)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 chain(s)" in p.stdout and f"{len(rows)} row(s)" in p.stdout


def test_audit_log_is_append_only(client, admin, db, tail):
    import psycopg2
    events_tail = tail("raikoo.events")
    org = accepted(client.send("CreateOrganization", admin, {"name": "Append " + uuid.uuid4().hex[:6],
                                                            "owner_user_id": admin}))["org_id"]
    end = time.time() + 60
    while not audit_rows(db, org) and time.time() < end:
        org_events(events_tail, org)
        time.sleep(0.2)
    cur = db.cursor()
    for sql in ("UPDATE audit_log SET result = 'x' WHERE org_id = %s", "DELETE FROM audit_log WHERE org_id = %s",
                "DELETE FROM audit_heads WHERE org_id = %s", "UPDATE audit_heads SET seq = 0 WHERE org_id = %s"):
        with pytest.raises(psycopg2.Error) as e:
            cur.execute(sql, (org,))
        assert e.value.pgcode == "RK010", sql
    with pytest.raises(psycopg2.Error) as e:
        cur.execute("TRUNCATE audit_log")
    assert e.value.pgcode == "RK010"


def test_several_audit_workers_a_kill_and_a_replay_record_each_event_once(client, admin, db, tail):
    """Three audit workers in the group (one killed -9 mid-flow and started again), then a worker of a new
    group that reads raikoo.events from its start: every event of the flows once, every chain intact."""
    events_tail = tail("raikoo.events")
    extra = [Worker("raikoo-audit-worker"), Worker("raikoo-audit-worker")]
    orgs = []
    try:
        orgs.append(flow(client, admin)[0])
        extra[0].stop(signal.SIGKILL)
        orgs.append(flow(client, admin)[0])
        extra[0] = Worker("raikoo-audit-worker")
        orgs.append(flow(client, admin)[0])
        for org in orgs:
            _, rows = wait_recorded(db, events_tail, org, 2)
            check_chain(db, org, rows)
        group = "audit-replay-" + uuid.uuid4().hex
        replay = Worker("raikoo-audit-worker", env={"RAIKOO_GROUP_AUDIT": group})
        try:
            # The replay reads the whole topic; it is done when its group has caught up with the end.
            wait_caught_up(group, replay)
        finally:
            assert replay.stop() == 0, replay.output()
        for org in orgs:
            rows = audit_rows(db, org)
            check_chain(db, org, rows)
            assert raikoo("audit", "verify", "--org", org).returncode == 0
    finally:
        for w in extra:
            assert w.stop() == 0, w.output()


def wait_caught_up(group, worker, timeout=120):
    """Waits until group's committed offsets reach the end raikoo.events has now (the worker commits only
    after its database transaction did)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"], "group.id": group})
    try:
        parts = [TopicPartition("raikoo.events", p) for p in
                 c.list_topics("raikoo.events", timeout=10).topics["raikoo.events"].partitions]
        high = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        end = time.time() + timeout
        while True:
            committed = {p.partition: p.offset for p in c.committed(parts, timeout=10)}
            if all(committed[p] >= high[p] for p in high if high[p] > 0):
                return
            assert time.time() < end, f"group {group} did not catch up: {committed} of {high}"
            assert worker.proc.poll() is None, worker.output()
            time.sleep(0.5)
    finally:
        c.close()


def tamper(db, sql, args):
    """Runs sql with the append-only trigger off, as someone with the table owner's rights could."""
    cur = db.cursor()
    cur.execute("BEGIN")
    cur.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    cur.execute(sql, args)
    cur.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    cur.execute("COMMIT")


def verify(org=None):
    args = ["audit", "verify", "--json"] + (["--org", org] if org else [])
    p = raikoo(*args)
    doc = json.loads(p.stdout)
    assert p.returncode == (0 if doc["ok"] else 1), p.stderr
    return p.returncode, doc["problems"]


def test_verify_finds_a_changed_a_deleted_and_an_inserted_row(client, admin, db, tail):
    events_tail = tail("raikoo.events")
    changed, deleted, inserted = (flow(client, admin, with_rejection=False) for _ in range(3))
    for org, mails, _, _ in (changed, deleted, inserted):
        _, rows = wait_recorded(db, events_tail, org, mails)
        check_chain(db, org, rows)
        assert verify(org) == (0, [])

    # Changed: an UPDATE with the trigger disabled, of the event itself, then of a column beside it.
    org = changed[0]
    rows = audit_rows(db, org)
    tamper(db, "UPDATE audit_log SET event = replace(event, '\"data\":{', '\"data\":{\"x\":1,')"
               " WHERE org_id = %s AND seq = 2", (org,))
    rc, problems = verify(org)
    assert rc == 1 and [p["seq"] for p in problems] == [2], problems
    assert "changed" in problems[0]["problem"] and problems[0]["event_id"] == rows[1][1]
    tamper(db, "UPDATE audit_log SET actor_id = gen_random_uuid() WHERE org_id = %s AND seq = 3", (org,))
    rc, problems = verify(org)
    assert rc == 1 and [p["seq"] for p in problems] == [2, 3], problems
    assert "actor_id" in problems[1]["problem"]

    # Deleted: a row in the middle, then the last one.
    org = deleted[0]
    n = len(audit_rows(db, org))
    tamper(db, "DELETE FROM audit_log WHERE org_id = %s AND seq = 3", (org,))
    rc, problems = verify(org)
    assert rc == 1 and [(p["seq"], "deleted" in p["problem"]) for p in problems] == [(3, True)], problems
    tamper(db, "DELETE FROM audit_log WHERE org_id = %s AND seq = %s", (org, n))
    rc, problems = verify(org)
    assert rc == 1 and [(p["seq"], "deleted" in p["problem"]) for p in problems] == [(3, True), (n, True)]

    # Inserted: a forged row chained onto the last one (its hash right), then a real event after it.
    org = inserted[0]
    rows = audit_rows(db, org)
    last = rows[-1]
    forged = json.loads(last[3])
    forged["id"] = str(uuid.uuid4())
    subject = last[6]
    if "email" in forged["data"]:
        forged["data"]["email"] = subject = "mallory@example.test"
    text = json.dumps(forged, sort_keys=True, separators=(",", ":"))
    h = hashlib.sha256(bytes(last[4]) + text.encode()).digest()
    cur = db.cursor()
    cur.execute("INSERT INTO audit_log (org_id, seq, event_id, event_type, event_time, actor_id, correlation_id,"
                " subject, result, event, hash)"
                " SELECT org_id, seq + 1, %s, event_type, event_time, actor_id, correlation_id, %s, result, %s, %s"
                " FROM audit_log WHERE org_id = %s AND seq = %s",
                (forged["id"], subject, text, h, org, last[0]))
    rc, problems = verify(org)
    assert rc == 1 and [p["seq"] for p in problems] == [last[0] + 1], problems
    assert "inserted" in problems[0]["problem"]
    # The worker is not stopped by the row beyond the head: the next event goes after it, and verify still
    # names the inserted row.
    accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("late"), "name": "L"}))
    _, rows = wait_recorded(db, events_tail, org, inserted[1] + 1, extra=[forged["id"]])
    assert rows[-1][0] > last[0] + 1
    rc, problems = verify(org)
    assert rc == 1 and [(p["seq"], p["event_id"]) for p in problems] == [(last[0] + 1, forged["id"])], problems
    assert "inserted" in problems[0]["problem"]

    # Without --org: every chain is checked, and the three are named.
    p = raikoo("audit", "verify")
    assert p.returncode == 1
    for o in (changed[0], deleted[0], inserted[0]):
        assert f"org {o} seq" in p.stdout, p.stdout


def test_the_audit_worker_waits_for_its_services_and_reconnects_without_losing_an_event(client, admin, db):
    """Started with PostgreSQL and Kafka unreachable it waits (one line each), then works; PostgreSQL cut
    mid-run is waited for, and the event that came meanwhile is recorded once it is back."""
    pg = Relay(int(os.environ["RAIKOO_PG_PORT"]))
    kafka = Relay(int(os.environ["RAIKOO_BROKER_PORT"]))
    # A group of its own, so that it owns every partition (it reads the topic from its start: deduplicated).
    group = "audit-services-" + uuid.uuid4().hex
    w = Worker("raikoo-audit-worker", env={"RAIKOO_DB_URL": pg_url_via(pg.port),
                                           "RAIKOO_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka.port}",
                                           "RAIKOO_GROUP_AUDIT": group})
    try:
        wait_log(w, "PostgreSQL unavailable")
        time.sleep(2)
        assert w.output().count("PostgreSQL unavailable") == 1, w.output()
        pg.start()
        wait_log(w, "PostgreSQL available again")
        wait_log(w, "Kafka unavailable")
        kafka.start()
        wait_log(w, "Kafka available again")
        wait_log(w, "consuming raikoo.events")
        wait_log(w, "assigned")
        wait_caught_up(group, w)  # the replay of the topic so far
        pg.stop()
        org = accepted(client.send("CreateOrganization", admin, {"name": "Cut " + uuid.uuid4().hex[:6],
                                                                "owner_user_id": admin}))["org_id"]
        wait_log(w, "PostgreSQL unavailable", count=2)
        time.sleep(2)
        assert w.output().count("PostgreSQL unavailable") == 2, w.output()
        pg.start()
        wait_log(w, "PostgreSQL available again", count=2)
        # This worker got past the event (its offsets commit only after its transaction), and it is there.
        wait_caught_up(group, w)
        end = time.time() + 60
        while len(audit_rows(db, org)) < 2 and time.time() < end:  # OrganizationCreated, MembershipCreated
            time.sleep(0.3)
        rows = audit_rows(db, org)
        assert {r[2] for r in rows} >= {"OrganizationCreated", "MembershipCreated"}, rows
        check_chain(db, org, rows)
    finally:
        rc = w.stop()
        pg.stop()
        kafka.stop()
    assert rc == 0, w.output()
