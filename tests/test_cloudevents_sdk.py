"""The CloudEvents Kafka protocol binding, checked with the official CloudEvents SDK for Python (PyPI
`cloudevents` 2.x, `cloudevents.core.bindings.kafka`), which ops/setup installs into var/pylib.

- Commands the SDK builds in binary mode (ce_ headers, data in the value) and in structured mode
  (content-type application/cloudevents+json) are processed like the ones our producer library sends.
- Binary-mode poison gets what structured-mode poison gets: a result with a stable code when the command id
  is known, the dead-letter topic otherwise.
- Every event, result and mail job the system writes carries content-type application/cloudevents+json;
  charset=UTF-8 and reads back with the SDK's from_kafka_event as a structured-mode CloudEvent.
"""
import json
import os
import sys
import uuid

from confluent_kafka import Producer

from conftest import ROOT, Tail, accepted, raikoo, rejected, unique_email

sys.path.insert(0, os.path.join(ROOT, "var", "pylib"))
# Not skipped when missing: ops/setup installs it, and a suite without it must fail.
from cloudevents.core.bindings import kafka as ce_kafka  # noqa: E402
from cloudevents.core.v1.event import CloudEvent  # noqa: E402

STRUCTURED = b"application/cloudevents+json; charset=UTF-8"


def sdk_command(name, data, actor=None, command_id=None, content_type="application/json"):
    attrs = {"specversion": "1.0", "id": command_id or str(uuid.uuid4()), "source": "/tests/cloudevents-sdk",
             "type": f"raikoo.command.{name}.v1"}
    if content_type:
        attrs["datacontenttype"] = content_type
    if actor:
        attrs["actorid"] = actor
    return CloudEvent(attributes=attrs, data=data)


class Sender:
    def __init__(self):
        self.producer = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"],
                                  "enable.idempotence": True})

    def send(self, msg, key):
        """Publishes an SDK KafkaMessage to raikoo.commands as it stands."""
        self.producer.produce("raikoo.commands", msg.value, key=key.encode(),
                              headers=list(msg.headers.items()))
        assert self.producer.flush(30) == 0


def sdk_read(m):
    """A consumed message read by the SDK, as a consumer in another language would."""
    return ce_kafka.from_kafka_event(ce_kafka.KafkaMessage(headers={k: v for k, v in (m.headers() or [])},
                                                           key=m.key(), value=m.value()))


def test_sdk_commands_in_binary_and_structured_mode_are_processed(client, admin, db):
    s = Sender()
    names = {}
    for mode, to_kafka in (("binary", ce_kafka.to_binary_event), ("structured", ce_kafka.to_structured_event)):
        name = f"SDK {mode} {uuid.uuid4().hex[:8]}"
        ev = sdk_command("CreateOrganization", {"name": name, "owner_user_id": admin}, actor=admin)
        msg = to_kafka(ev)
        if mode == "binary":
            assert msg.headers["ce_id"] == ev.get_id().encode() and "ce_type" in msg.headers, msg.headers
            assert msg.headers["content-type"] == b"application/json"
            assert json.loads(msg.value) == {"name": name, "owner_user_id": admin}
        else:
            assert msg.headers["content-type"].startswith(b"application/cloudevents+json"), msg.headers
            assert not any(k.startswith("ce_") for k in msg.headers)
        s.send(msg, ev.get_id())
        names[mode] = (name, accepted(client.result(ev.get_id())))
    cur = db.cursor()
    for mode, (name, r) in names.items():
        cur.execute("SELECT name FROM organizations WHERE id = %s", (r["org_id"],))
        assert cur.fetchone() == (name,), mode

    # A whole invitation in binary mode, without a content-type (the SDK leaves it out when the event has
    # no datacontenttype): the data is JSON all the same.
    org = names["binary"][1]["org_id"]
    email = unique_email("sdk")
    ev = sdk_command("InviteNewUser", {"org_id": org, "email": email, "name": "Sdk User"}, actor=admin,
                     content_type=None)
    msg = ce_kafka.to_binary_event(ev)
    assert "content-type" not in msg.headers
    s.send(msg, org)
    r = accepted(client.result(ev.get_id()))
    code = client.code_for(r["invitation_id"])
    from conftest import argon2id_hash
    ev = sdk_command("ActivateAccount", {"email": email.upper(), "code": code, "password_hash": argon2id_hash()})
    s.send(ce_kafka.to_binary_event(ev), email)
    accepted(client.result(ev.get_id()))
    cur.execute("SELECT enabled FROM users WHERE lower(email) = lower(%s)", (email,))
    assert cur.fetchone() == (True,)

    # The same command id in the other mode is the same command: its first result again, nothing applied.
    ev2 = sdk_command("CreateOrganization", {"name": "never made", "owner_user_id": admin}, actor=admin,
                      command_id=names["structured"][1]["command_id"])
    s.send(ce_kafka.to_binary_event(ev2), ev2.get_id())
    results = []
    deadline = __import__("time").time() + 60
    while len(client.by_command.get(ev2.get_id(), [])) < 2 and __import__("time").time() < deadline:
        for m in client.results.poll_new(0.3):
            d = json.loads(m.value())
            client.by_command.setdefault(d["data"]["command_id"], []).append(d)
        client.results.seen.clear()
    results = client.by_command[ev2.get_id()]
    assert len(results) == 2 and results[0] == results[1], results
    cur.execute("SELECT count(*) FROM organizations WHERE name = 'never made'")
    assert cur.fetchone() == (0,)


def test_binary_mode_poison_gets_a_result_or_the_dead_letter_topic(client, admin, tail):
    s = Sender()
    dlq = tail("raikoo.commands.dlq")

    def base(**over):
        ev = sdk_command("CreateOrganization", {"name": "Poison " + uuid.uuid4().hex[:6], "owner_user_id": admin},
                         actor=admin)
        msg = ce_kafka.to_binary_event(ev)
        headers = dict(msg.headers)
        value = over.pop("value", msg.value)
        for k, v in over.items():
            k = k.replace("_dash_", "-")
            if v is None:
                headers.pop(k, None)
            else:
                headers[k] = v
        return ev.get_id(), ce_kafka.KafkaMessage(headers=headers, key=None, value=value)

    with_result = {
        "invalid_command": [base(ce_specversion=b"0.3"), base(value=b"{not json"), base(value=b""),
                            base(ce_colour=b"red"), base(ce_time=b"yesterday"), base(ce_source=None),
                            base(ce_actorid=None), base(ce_source=b"\xff\xfe"),
                            base(content_dash_type=b"text/plain")],
        "unknown_command_type": [base(ce_type=b"com.example.Other"), base(ce_type=None)],
    }
    for code, cases in with_result.items():
        for cid, msg in cases:
            s.send(msg, cid)
    for code, cases in with_result.items():
        for cid, msg in cases:
            r = rejected(client.result(cid), code)
            assert "(binary mode: " in r["message"], r

    marker = uuid.uuid4().hex
    no_id = [base(ce_id=None, value=json.dumps({"m": marker + "1"}).encode()),
             base(ce_id=b"not-a-uuid", value=json.dumps({"m": marker + "2"}).encode()),
             base(ce_id=b"\xff", value=json.dumps({"m": marker + "3"}).encode())]
    for cid, msg in no_id:
        s.send(msg, cid)
    for i, (cid, msg) in enumerate(no_id, 1):
        m = dlq.wait_for(lambda m: (marker + str(i)).encode() in m.value())
        h = dict(m.headers())
        assert h["raikoo.dlq.reason"].decode().startswith("binary mode: no command id"), h
        # A dead letter keeps the headers it came with: a replay sends it in binary mode again.
        assert h.get("ce_type") == msg.headers["ce_type"] and h["content-type"] == b"application/json", h
    # The worker goes on.
    ev = sdk_command("CreateOrganization", {"name": "After poison", "owner_user_id": admin}, actor=admin)
    s.send(ce_kafka.to_binary_event(ev), ev.get_id())
    accepted(client.result(ev.get_id()))


def test_every_message_written_is_a_structured_cloudevent_the_sdk_reads(client, admin, workers):
    tails = {t: Tail(t) for t in ("raikoo.commands", "raikoo.events", "raikoo.results", "raikoo.mail")}
    try:
        # Through the CLI (the producer library), a flow that writes events, results, a mail job and a
        # rejection.
        org = json.loads(raikoo("create-org", "--actor", admin, "--name", "SDK read " + uuid.uuid4().hex[:6],
                                "--owner", admin, "--wait", "--json", check=True).stdout)["org_id"]
        inv = json.loads(raikoo("invite-new", "--actor", admin, "--org", org, "--email", unique_email("sdkread"),
                                "--wait", "--json", check=True).stdout)["invitation_id"]
        raikoo("remove-invitation", "--actor", admin, "--org", org, "--invitation", inv, "--wait", check=True)
        p = raikoo("remove-invitation", "--actor", admin, "--org", org, "--invitation", inv, "--wait")
        assert p.returncode == 1, p.stdout + p.stderr

        need = {"raikoo.commands": 4, "raikoo.results": 4, "raikoo.events": 4, "raikoo.mail": 1}
        seen = {}
        for topic, t in tails.items():
            deadline = __import__("time").time() + 60
            while len(t.seen) < need[topic] and __import__("time").time() < deadline:
                t.poll(0.5)
            t.poll(1.0)
            assert len(t.seen) >= need[topic], f"{topic}: {len(t.seen)} messages"
            for m in t.seen:
                headers = dict(m.headers() or [])
                assert headers.get("content-type") == STRUCTURED, (topic, headers)
                assert not any(k.startswith("ce_") for k in headers), (topic, headers)
                ev = sdk_read(m)
                doc = json.loads(m.value())
                assert (ev.get_id(), ev.get_type(), ev.get_source(), ev.get_specversion()) == \
                    (doc["id"], doc["type"], doc["source"], "1.0"), topic
                assert ev.get_data() == doc["data"], topic
                assert ev.get_time() is not None, topic
                seen.setdefault(topic, set()).add(ev.get_type())
        assert "raikoo.result.v1" in seen["raikoo.results"]
        assert any(t.endswith("CommandRejected.v1") for t in seen["raikoo.events"]), seen
        assert any(t.startswith("raikoo.command.") for t in seen["raikoo.commands"]), seen
    finally:
        for t in tails.values():
            t.close()
