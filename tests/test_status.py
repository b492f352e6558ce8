"""`raikoo status` on the real stack: its numbers against what Kafka and PostgreSQL hold, its JSON, its exit
statuses (docs/OPERATIONS.md)."""
import json
import os
import socket
import uuid

import psycopg2
from confluent_kafka import Consumer, TopicPartition

from conftest import accepted, raikoo, unique_email, wait_until


def status_json(env=None):
    p = raikoo("status", "--json", env=env, timeout=120)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (exit {p.returncode}): {p.stdout!r}\nstderr: {p.stderr}")
    return p.returncode, doc, p.stderr


def topic_messages(topic):
    """{partition: high - low} of topic, asked of Kafka by librdkafka's Python binding."""
    c = Consumer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"],
                  "group.id": "test-status-" + uuid.uuid4().hex})
    try:
        md = c.list_topics(topic, timeout=30)
        out = {}
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            out[p] = hi - lo
        return out
    finally:
        c.close()


def test_status_reports_what_kafka_and_postgresql_hold(client, admin, db):
    rc, doc, err = status_json()
    assert rc == 0 and doc["errors"] == [], err
    assert set(doc) >= {"time", "consumer_groups", "outbox", "mail_deliveries", "invitations", "dead_letters"}
    assert doc["outbox"]["rows"] >= 0 and doc["outbox"]["oldest_age_seconds"] >= 0
    assert set(doc["mail_deliveries"]) >= {"sending", "retrying", "sent", "failed", "superseded"}
    groups = {(g["group"], g["topic"]): g for g in doc["consumer_groups"]}
    assert set(groups) == {("raikoo-command-worker", "raikoo.commands"), ("raikoo-mailer", "raikoo.mail")}
    for g in groups.values():
        assert g["partitions"] == len(g["by_partition"]) >= 1
        assert g["lag"] == sum(p["lag"] for p in g["by_partition"])
    dead_before = doc["dead_letters"]["messages"]
    assert doc["dead_letters"] == {"topic": "raikoo.commands.dlq",
                                   "messages": sum(topic_messages("raikoo.commands.dlq").values())}
    due_before = doc["invitations"]["expiring_within_24h"]

    # An invitation due in an hour; one past its expiry that the expiry worker cannot take yet (a row lock
    # of ours makes its FOR UPDATE SKIP LOCKED pass it by); one message that is not a command.
    org = accepted(client.send("CreateOrganization", admin, {"name": "Status " + uuid.uuid4().hex[:6],
                                                            "owner_user_id": admin}))["org_id"]
    soon = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("soon")}))
    late = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("late")}))
    client.publish_raw(b"\x00 not a command", key=org.encode())
    cur = db.cursor()
    cur.execute("UPDATE invitations SET expires_at = now() + interval '1 hour' WHERE id = %s",
                (soon["invitation_id"],))
    holder = psycopg2.connect(os.environ["RAIKOO_DB_URL"])
    try:
        hc = holder.cursor()
        hc.execute("SELECT 1 FROM invitations WHERE id = %s FOR KEY SHARE", (late["invitation_id"],))
        cur.execute("UPDATE invitations SET created_at = now() - interval '2 hours',"
                    " expires_at = now() - interval '1 hour' WHERE id = %s",
                    (late["invitation_id"],))

        def dead_letter_counted():
            rc, d, err = status_json()
            assert rc == 0, err
            return d if d["dead_letters"]["messages"] == dead_before + 1 else None
        doc = wait_until(dead_letter_counted, 90, "status counts the new dead letter")
        assert doc["invitations"]["expiring_within_24h"] == due_before + 1
        assert doc["invitations"]["past_expiry"] >= 1
        cur.execute("SELECT status FROM invitations WHERE id = %s", (late["invitation_id"],))
        assert cur.fetchone()[0] == "pending"
    finally:
        holder.rollback()
        holder.close()

    # Once the command worker committed past everything published, the commands group has no lag; a group
    # that never committed lags by every message of its topic.
    def commands_caught_up():
        rc, d, err = status_json()
        g = [g for g in d["consumer_groups"] if g["topic"] == "raikoo.commands"]
        return d if rc == 0 and g and g[0]["lag"] == 0 else None
    wait_until(commands_caught_up, 90, "the commands group's lag comes to 0")
    fresh = "status-test-" + uuid.uuid4().hex

    def fresh_group_lag():
        held = topic_messages("raikoo.mail")
        rc, d, err = status_json(env={"RAIKOO_GROUP_MAIL": fresh})
        assert rc == 0, err
        # (Compared only while no mail job arrived in between.)
        return (d, held) if topic_messages("raikoo.mail") == held else None
    doc, held = wait_until(fresh_group_lag, 90, "raikoo.mail holds still while status reads it")
    g = [g for g in doc["consumer_groups"] if g["group"] == fresh][0]
    assert g["lag"] == sum(held.values()) > 0
    assert all(p["committed"] is None for p in g["by_partition"])

    # The screen for people says the same.
    p = raikoo("status", timeout=120)
    assert p.returncode == 0, p.stderr
    for text in ("raikoo-command-worker", "raikoo.commands", "raikoo-mailer", "Outbox:", "Mail deliveries:",
                 "Invitations:", "Dead-letter topic raikoo.commands.dlq:"):
        assert text in p.stdout, (text, p.stdout)


def test_status_exit_3_names_what_it_could_not_read():
    """Nothing answers on a port bound but not listening: both services are reported, exit status 3, and
    --json still prints one object."""
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    try:
        env = {"RAIKOO_DB_URL": f"host=127.0.0.1 port={port} dbname=raikoo user=raikoo connect_timeout=3",
               "RAIKOO_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
        rc, doc, err = status_json(env=env)
        assert rc == 3, (rc, doc, err)
        assert any(e.startswith("PostgreSQL:") for e in doc["errors"]), doc["errors"]
        assert any("cannot reach Kafka" in e for e in doc["errors"]), doc["errors"]
        assert "outbox" not in doc and "dead_letters" not in doc
        assert "raikoo status: PostgreSQL" in err
    finally:
        closed.close()


def test_status_usage_error_is_exit_2():
    p = raikoo("status", "--bogus")
    assert p.returncode == 2 and "usage: raikoo status" in p.stderr, (p.returncode, p.stderr)
    p = raikoo("status", "--help")
    assert p.returncode == 0 and "Exit status" in p.stdout
