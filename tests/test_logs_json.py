"""JSON logs (issue 12, item 4): log.format=json makes every line a worker writes one JSON object.

Real workers on the test stack, with log.format=json: every line they write, from start-up through a
service that is away and back, commands and a poison message, to shutdown, must parse as one JSON object with
the members DESIGN asks for; the configured passwords never appear (masked as in the text format); a value
holding quotes, control characters and invalid UTF-8 (here a mail.templates folder named so) still gives
valid JSON and valid UTF-8. The encoder's own cases are in tests/unit/test_log.c.
"""
import json
import os
import re
import shutil
import signal
import tempfile
import uuid

from conftest import Client, Relay, Worker, pg_url_via, run, wait_log

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
DB_SECRET = "Pw-json-" + uuid.uuid4().hex[:8]
SMTP_SECRET = "Smtp-json-" + uuid.uuid4().hex[:8]


def json_lines(w, worker):
    """Every line the worker wrote, parsed; fails on the first that is not one JSON object."""
    with open(w.log_path, "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\n"), raw[-200:]
    for secret in (DB_SECRET, SMTP_SECRET):
        assert secret.encode() not in raw, secret
    raw.decode("utf-8")  # valid UTF-8 as a whole (raises otherwise)
    out = []
    for line in raw.split(b"\n")[:-1]:
        doc = json.loads(line)
        assert isinstance(doc, dict), line
        assert TIME.match(doc["time"]), doc
        assert doc["level"] in ("debug", "info", "warn", "error"), doc
        assert doc["worker"] == worker, doc
        assert isinstance(doc["msg"], str) and doc["msg"], doc
        assert set(doc) <= {"time", "level", "worker", "instance", "corr", "msg", "fields"}, doc
        if "fields" in doc:
            assert isinstance(doc["fields"], dict) and doc["fields"], doc
            assert all(isinstance(v, str) for v in doc["fields"].values()), doc
        out.append(doc)
    assert out
    return out


def test_mailer_lines_are_json_with_secrets_masked_and_odd_bytes_kept_valid(workers):
    odd = tempfile.mkdtemp(prefix='raikoo-tpl-"q"\\ \x01\x1b\t-')
    odd_b = odd.encode() + b"-\xff\xc3\xa9"  # an invalid byte, then a valid "é"
    os.rename(odd.encode(), odd_b)
    with open(os.path.join(odd_b, b"invitation.subject"), "w") as f:
        f.write("Join {{org_name}}")
    pg = Relay(int(os.environ["RAIKOO_PG_PORT"]))
    url = pg_url_via(pg.port) + f" password={DB_SECRET}"
    env = {"RAIKOO_LOG_FORMAT": "json", "RAIKOO_LOG_LEVEL": "debug", "RAIKOO_DB_URL": url,
           "RAIKOO_SMTP_PASSWORD": SMTP_SECRET, "RAIKOO_WORKER_INSTANCE": "json-1"}
    os.environb[b"RAIKOO_MAIL_TEMPLATES"] = odd_b  # bytes: Worker copies os.environ
    try:
        w = Worker("raikoo-mailer", env=env)
    finally:
        del os.environb[b"RAIKOO_MAIL_TEMPLATES"]
    try:
        wait_log(w, "PostgreSQL unavailable")
        pg.start()
        wait_log(w, "mailer started")
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(timeout=60) == 0, w.output()
    finally:
        w.stop(signal.SIGKILL)
        pg.stop()
        shutil.rmtree(odd_b)
    docs = json_lines(w, "mailer")
    assert all(d.get("instance") == "json-1" for d in docs), docs
    down = [d for d in docs if d["msg"].startswith("PostgreSQL unavailable")]
    assert len(down) == 1 and down[0]["level"] == "warn", docs
    assert down[0]["fields"] == {"service": "PostgreSQL"}, down
    assert "password=***" in down[0]["msg"], down  # masked, as the text format does
    up = [d for d in docs if d["msg"].startswith("PostgreSQL available again")]
    assert len(up) == 1 and set(up[0]["fields"]) == {"service", "away_s"}, docs
    tpl = [d for d in docs if "mail template(s) from" in d["msg"]]
    assert len(tpl) == 1, docs
    # The quote, backslash and control characters come back as they were; the invalid byte as U+FFFD.
    assert tpl[0]["msg"].endswith(odd + "-\ufffd\u00e9"), (tpl[0]["msg"], odd)
    assert any(d["msg"] == "mailer stopping" for d in docs), docs


def test_command_worker_lines_carry_the_command_id_as_corr(workers):
    """A command rejected (unknown actor) is logged with its id as corr; a poison message too is logged
    as JSON. The worker reads a topic and group of its own, so the session's workers are not involved."""
    from confluent_kafka.admin import AdminClient, NewTopic
    topic, group = "raikoo.json-test-" + uuid.uuid4().hex[:8], "json-test-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    client = Client()
    w = Worker("raikoo-command-worker", env={"RAIKOO_LOG_FORMAT": "json", "RAIKOO_TOPIC_COMMANDS": topic,
                                             "RAIKOO_GROUP_COMMANDS": group, "RAIKOO_WORKER_INSTANCE": ""})
    try:
        wait_log(w, "assigned")
        ev = client.envelope("CreateOrganization", str(uuid.uuid4()), {"name": "Json \"Co\"",
                                                                       "owner_user_id": str(uuid.uuid4())})
        client.producer.produce(topic, json.dumps(ev).encode(), key=ev["id"].encode())
        client.producer.produce(topic, b'not json "\x01\xff', key=b"poison")
        assert client.producer.flush(30) == 0
        r = client.result(ev["id"])
        assert r["status"] == "rejected", r
        wait_log(w, ev["id"])
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(timeout=60) == 0, w.output()
    finally:
        w.stop(signal.SIGKILL)
        client.close()
        admin.delete_topics([topic])[topic].result(30)
    docs = json_lines(w, "command-worker")
    mine = [d for d in docs if d.get("corr") == ev["id"]]
    assert mine and "rejected" in mine[0]["msg"], docs
    assert all("instance" not in d for d in docs), docs  # worker.instance empty: left out


def test_an_unknown_log_format_is_refused_at_start():
    p = run(["raikoo-expiry-worker"], env={"RAIKOO_LOG_FORMAT": "yaml"}, timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert 'log.format "yaml": use text or json' in p.stderr, p.stderr
