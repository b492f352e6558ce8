"""Dead-letter tools on the real stack: the headers a dead letter carries (where it came from and why),
`raikoo dlq list [--json]`, and `raikoo dlq replay (--offset N | --all) [--dry-run]`, idempotent by command id
(the command worker's processed_commands: replaying twice yields one result, applied once).
"""
import json
import os
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Tail, Worker, delete_topics, raikoo, wait_log

BOOTSTRAP = os.environ.get("RAIKOO_KAFKA_BOOTSTRAP_SERVERS", "")
STRUCTURED = b"application/cloudevents+json; charset=UTF-8"


def create_topic(name):
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for f in admin.create_topics([NewTopic(name, 1, 1)]).values():
        f.result(30)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "dlq-probe"})
    try:
        deadline = time.time() + 30
        while True:
            md = c.list_topics(name, timeout=10).topics[name]
            if md.error is None and md.partitions and all(p.leader >= 0 for p in md.partitions.values()):
                return
            assert time.time() < deadline, f"topic {name} has no leader"
            time.sleep(0.2)
    finally:
        c.close()


def end_offsets(topic):
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "dlq-probe"})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)
    finally:
        c.close()


def dlq_list(env=None):
    p = raikoo("dlq", "list", "--json", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)


def test_a_dead_letter_says_where_it_came_from_and_dlq_list_shows_it(workers, tail):
    commands = Tail("raikoo.commands")
    dlq = tail("raikoo.commands.dlq")
    try:
        secret = "QX7R-M2KD-9PLV"
        marker = uuid.uuid4().hex
        value = f'{{"not a command {marker}": "{secret}"'.encode()
        p = Producer({"bootstrap.servers": BOOTSTRAP})
        p.produce("raikoo.commands", value, key=marker.encode(), headers=[("traceparent", b"00-abc-def-01")])
        assert p.flush(30) == 0
        original = commands.wait_for(lambda m: m.value() == value)
        m = dlq.wait_for(lambda m: m.key() == marker.encode())
        # The code-shaped text is blanked (lib/msg/redact.h), the rest kept as it came.
        kept = value.replace(secret.encode(), b"[redacted]")
        assert m.value() == kept, m.value()
        h = dict(m.headers())
        assert h["raikoo.dlq.topic"] == b"raikoo.commands"
        assert int(h["raikoo.dlq.partition"]) == original.partition()
        assert int(h["raikoo.dlq.offset"]) == original.offset()
        assert int(h["raikoo.dlq.timestamp"]) == original.timestamp()[1]
        assert h["raikoo.dlq.group"] == os.environ.get("RAIKOO_GROUP_COMMANDS", "raikoo-command-worker").encode()
        assert h["raikoo.dlq.origin"] == f"raikoo.commands/{original.partition()}/{original.offset()}".encode()
        assert h["raikoo.dlq.reason"].startswith(b"not JSON"), h
        assert h["raikoo.dlq.redacted"] == b"fields", h
        # The original's headers stay (a replay sends it as it came); structured mode is said.
        assert h["traceparent"] == b"00-abc-def-01" and h["content-type"] == STRUCTURED, h
        assert m.key() == marker.encode()

        doc = dlq_list()
        assert doc["topic"] == "raikoo.commands.dlq" and doc["count"] == len(doc["messages"])
        mine = [e for e in doc["messages"] if (e["partition"], e["offset"]) == (m.partition(), m.offset())]
        assert len(mine) == 1, doc
        e = mine[0]
        assert (e["origin_topic"], e["origin_partition"], e["origin_offset"]) == \
            ("raikoo.commands", original.partition(), original.offset())
        assert e["reason"].startswith("not JSON") and e["group"] and e["key"] == marker
        assert e["command_id"] is None and e["bytes"] == len(kept) and e["mode"] == "structured"
        assert e["redacted"] == "fields"
        assert e["origin_time"].endswith("Z") and e["dead_lettered_at"].endswith("Z")
        text = raikoo("dlq", "list")
        assert text.returncode == 0 and "REASON" in text.stdout and f"{m.offset()}" in text.stdout, text.stdout
        # Never the value: it may hold a code or a password hash.
        for out in (json.dumps(doc), text.stdout):
            assert secret not in out and "QX7R" not in out
    finally:
        commands.close()


def test_dlq_usage_errors_and_a_missing_offset():
    for args in (["dlq"], ["dlq", "replay"], ["dlq", "replay", "--all", "--offset", "1"],
                 ["dlq", "replay", "--offset", "x"], ["dlq", "list", "extra"]):
        p = raikoo(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
    p = raikoo("dlq", "replay", "--offset", "999999999", "--dry-run")
    assert p.returncode == 1 and "no dead letter at offset 999999999" in p.stderr, p.stderr


def test_replay_sends_dead_letters_again_and_twice_yields_one_result(client, admin, db):
    """A worker with command.max.bytes 256 dead-letters two commands that are too large for it (one structured,
    one binary mode); replayed to raikoo.commands, whose workers take them, each is applied once, however
    often it is replayed."""
    tag = uuid.uuid4().hex[:10]
    commands, dlq, group = f"test.cmds.{tag}", f"test.dlq.{tag}", f"test-group-{tag}"
    create_topic(commands)
    create_topic(dlq)
    env = {"RAIKOO_TOPIC_COMMANDS": commands, "RAIKOO_TOPIC_DLQ": dlq, "RAIKOO_GROUP_COMMANDS": group,
           "RAIKOO_COMMAND_MAX_BYTES": "256"}
    w = Worker("raikoo-command-worker", env=env)
    try:
        wait_log(w, "assigned", timeout=120)
        name_s, name_b = f"Replayed structured {tag} " + "x" * 150, f"Replayed binary {tag} " + "y" * 150
        cid_s, cid_b = str(uuid.uuid4()), str(uuid.uuid4())
        structured = {"specversion": "1.0", "id": cid_s, "source": "/tests/dlq",
                      "type": "raikoo.command.CreateOrganization.v1", "actorid": admin,
                      "datacontenttype": "application/json", "data": {"name": name_s, "owner_user_id": admin}}
        binary_headers = [("ce_specversion", b"1.0"), ("ce_id", cid_b.upper().encode()),
                          ("ce_source", b"/tests/dlq"), ("ce_type", b"raikoo.command.CreateOrganization.v1"),
                          ("ce_actorid", admin.encode()), ("content-type", b"application/json")]
        p = Producer({"bootstrap.servers": BOOTSTRAP})
        p.produce(commands, json.dumps(structured).encode(), key=cid_s.encode())
        p.produce(commands, json.dumps({"name": name_b, "owner_user_id": admin}).encode(), key=cid_b.encode(),
                  headers=binary_headers)
        assert p.flush(30) == 0
        deadline = time.time() + 120
        while True:
            doc = dlq_list({"RAIKOO_TOPIC_DLQ": dlq})
            if doc["count"] >= 2:
                break
            assert time.time() < deadline, f"not dead-lettered:\n{w.output()[-3000:]}"
            time.sleep(0.5)
        assert {e["command_id"] for e in doc["messages"]} == {cid_s, cid_b}, doc
        assert all("over the limit" in e["reason"] and e["origin_topic"] == commands and e["group"] == group
                   for e in doc["messages"]), doc
        assert {e["mode"] for e in doc["messages"]} == {"structured", "binary"}
    finally:
        assert w.stop() == 0, w.output()[-3000:]

    try:
        renv = {"RAIKOO_TOPIC_DLQ": dlq}
        before = end_offsets("raikoo.commands")
        dry = raikoo("dlq", "replay", "--all", "--dry-run", env=renv)
        assert dry.returncode == 0 and "2 dead letters would be replayed" in dry.stdout, dry.stdout + dry.stderr
        assert cid_s in dry.stdout and cid_b in dry.stdout
        assert end_offsets("raikoo.commands") == before, "a dry run sent something"

        one = raikoo("dlq", "replay", "--offset", "0", env=renv)
        assert one.returncode == 0 and "1 dead letter replayed" in one.stdout, one.stdout + one.stderr
        first = client.result(cid_s)
        assert first["status"] == "accepted", first
        for _ in range(2):
            p = raikoo("dlq", "replay", "--all", env=renv)
            assert p.returncode == 0 and "2 dead letters replayed" in p.stdout, p.stdout + p.stderr
        # cid_s was sent three times, cid_b twice: each result is the first one again.
        deadline = time.time() + 60
        while (len(client.by_command.get(cid_s, [])) < 3 or len(client.by_command.get(cid_b, [])) < 2) \
                and time.time() < deadline:
            for m in client.results.poll_new(0.3):
                r = json.loads(m.value())
                client.by_command.setdefault(r["data"]["command_id"], []).append(r)
            client.results.seen.clear()
        for cid, n in ((cid_s, 3), (cid_b, 2)):
            got = client.by_command.get(cid, [])
            assert len(got) == n, (cid, got)
            assert len({r["id"] for r in got}) == 1, "one result, published again: the same CloudEvents id"
            assert got[0]["data"]["status"] == "accepted", got[0]
        cur = db.cursor()
        for name in (name_s, name_b):
            cur.execute("SELECT count(*) FROM organizations WHERE name = %s", (name,))
            assert cur.fetchone() == (1,), name
        cur.execute("SELECT count(*) FROM processed_commands WHERE command_id = ANY(%s::uuid[])", ([cid_s, cid_b],))
        assert cur.fetchone() == (2,)
    finally:
        delete_topics(commands, dlq)


def test_no_secret_reaches_the_dead_letter_topic_and_redacted_letters_are_not_replayed(client, admin):
    """A worker with command.max.bytes 512 dead-letters an oversized CreateUser (a password hash), a binary-mode
    message without a usable ce_id carrying a code (and a secret-named header), a binary-mode bare code, a
    malformed JSON with a "password", and an oversized command without secrets. No dead letter holds a secret;
    the worker goes on; `dlq replay` refuses the redacted ones with a clear message and replays the other."""
    tag = uuid.uuid4().hex[:10]
    commands, dlq, group = f"test.cmds.{tag}", f"test.dlq.{tag}", f"test-group-{tag}"
    create_topic(commands)
    create_topic(dlq)
    env = {"RAIKOO_TOPIC_COMMANDS": commands, "RAIKOO_TOPIC_DLQ": dlq, "RAIKOO_GROUP_COMMANDS": group,
           "RAIKOO_COMMAND_MAX_BYTES": "512"}
    hash_ = "$argon2id$v=19$m=65536,t=2,p=1$" + "c2FsdHNhbHQ" + tag + "$" + "aGFzaA" * 8
    code = "QX7R-M2KD-9PLV"
    password = f"hunter2-{tag}"
    header_secret = f"hdr-{tag}"
    secrets = (hash_, code, password, header_secret, tag + "$", "QX7R")
    cids = {k: str(uuid.uuid4()) for k in ("user", "binary", "bare", "malformed", "plain", "after")}
    w = Worker("raikoo-command-worker", env=env)
    t = None
    try:
        wait_log(w, "assigned")
        p = Producer({"bootstrap.servers": BOOTSTRAP})
        user = client.envelope("CreateUser", admin, {"email": f"dlq-{tag}@example.com", "name": "D" * 600,
                                                     "password_hash": hash_}, cids["user"])
        p.produce(commands, json.dumps(user).encode(), key=b"user")
        p.produce(commands, json.dumps({"invitation_id": str(uuid.uuid4()), "code": code}).encode(), key=b"binary",
                  headers=[("ce_specversion", b"1.0"), ("ce_id", b"not-a-uuid"), ("ce_source", b"/tests/dlq"),
                           ("ce_type", b"raikoo.command.AcceptInvitation.v1"), ("ce_actorid", admin.encode()),
                           ("content-type", b"application/json"), ("x-password", header_secret.encode())])
        p.produce(commands, code.encode(), key=b"bare",
                  headers=[("ce_specversion", b"1.0"), ("ce_type", b"raikoo.command.AcceptInvitation.v1"),
                           ("content-type", b"text/plain")])
        malformed = f'{{"id":"{cids["malformed"]}","data":{{"password":"{password}", "email":'.encode()
        p.produce(commands, malformed, key=b"malformed")
        plain = client.envelope("CreateOrganization", admin, {"name": f"Plain {tag} " + "p" * 180,
                                                              "owner_user_id": admin}, cids["plain"])
        p.produce(commands, json.dumps(plain).encode(), key=b"plain")
        # The worker goes on: a command after the poison gets its result.
        after = client.envelope("CreateOrganization", admin, {"name": f"After {tag}", "owner_user_id": admin},
                                cids["after"])
        p.produce(commands, json.dumps(after).encode(), key=b"after")
        assert p.flush(30) == 0
        assert client.result(cids["after"])["status"] == "accepted"

        t = Tail(dlq)
        t.c.assign([TopicPartition(dlq, 0, 0)])
        got = {}
        for _ in range(5):
            m = t.wait_for(lambda m: m.key() not in got)
            got[m.key()] = m
        for key, m in got.items():
            blob = m.value() + b"".join(v or b"" for _, v in m.headers())
            for secret in secrets:
                assert secret.encode() not in blob, (key, secret, m.value(), m.headers())
        h = {k: dict(m.headers()) for k, m in got.items()}
        assert h[b"user"]["raikoo.dlq.reason"].startswith(b"over the limit") or \
            b"over the limit" in h[b"user"]["raikoo.dlq.reason"], h[b"user"]
        u = json.loads(got[b"user"].value())
        assert u["data"]["password_hash"] == "[redacted]" and u["data"]["name"] == "D" * 600, u
        assert u["id"] == cids["user"] and h[b"user"]["raikoo.dlq.redacted"] == b"fields"
        b = json.loads(got[b"binary"].value())
        assert b["code"] == "[redacted]" and h[b"binary"]["x-password"] == b"[redacted]", (b, h[b"binary"])
        assert h[b"binary"]["ce_id"] == b"not-a-uuid" and h[b"binary"]["raikoo.dlq.redacted"] == b"fields"
        bare = json.loads(got[b"bare"].value())["raikoo_redacted"]
        assert bare == {"bytes": len(code)}, bare
        assert h[b"bare"]["raikoo.dlq.redacted"] == b"whole"
        assert h[b"malformed"]["raikoo.dlq.redacted"] in (b"fields", b"whole")
        assert got[b"plain"].value() == json.dumps(plain).encode() and "raikoo.dlq.redacted" not in h[b"plain"]
    finally:
        assert w.stop() == 0, w.output()[-3000:]
    out = w.output()
    for secret in secrets:
        assert secret not in out, secret

    try:
        renv = {"RAIKOO_TOPIC_DLQ": dlq}
        doc = dlq_list(renv)
        by_key = {e["key"]: e for e in doc["messages"]}
        assert by_key["user"]["redacted"] == "fields" and by_key["bare"]["redacted"] == "whole", doc
        assert by_key["plain"]["redacted"] is None and by_key["user"]["command_id"] == cids["user"]
        text = raikoo("dlq", "list", env=renv)
        assert "cannot be replayed" in text.stdout, text.stdout
        for out in (json.dumps(doc), text.stdout):
            for secret in secrets:
                assert secret not in out

        one = raikoo("dlq", "replay", "--offset", str(by_key["user"]["offset"]), env=renv)
        assert one.returncode == 1, one.stdout + one.stderr
        assert f"(command {cids['user']}) cannot be replayed" in one.stderr and "send the command again" in one.stderr
        before = end_offsets("raikoo.commands")
        dry = raikoo("dlq", "replay", "--all", "--dry-run", env=renv)
        assert dry.returncode == 1 and "1 dead letter would be replayed" in dry.stdout, dry.stdout + dry.stderr
        assert "4 dead letters with redacted secrets not replayed" in dry.stdout, dry.stdout
        assert end_offsets("raikoo.commands") == before, "a dry run sent something"
        p = raikoo("dlq", "replay", "--all", env=renv)
        assert p.returncode == 1 and "1 dead letter replayed" in p.stdout, p.stdout + p.stderr
        assert client.result(cids["plain"])["status"] == "accepted"
        for out in (one.stdout + one.stderr, dry.stdout + dry.stderr, p.stdout + p.stderr):
            for secret in secrets:
                assert secret not in out
    finally:
        if t:
            t.close()  # before its topic goes: librdkafka 2.0.2's close can hang on a deleted topic
        delete_topics(commands, dlq)
