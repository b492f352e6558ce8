"""The consumer loop while PostgreSQL is away (lib/core/consumer.c, docs/DESIGN.md "Consumer loop"): a batch
that cannot be applied is held with the partitions paused, and the loop keeps polling Kafka, so that a
command worker waiting for PostgreSQL longer than max.poll.interval.ms stays in its group (librdkafka would
otherwise log MAXPOLL, "Application maximum poll interval ... exceeded", and leave the group: rebalances,
refused offset commits). When PostgreSQL is back, every command queued meanwhile gets exactly one result and
is applied once. On the real stack (ops/test): PostgreSQL goes away for this worker alone, through a relay
(conftest.Relay) that is stopped, so the session's workers and the other tests keep their database."""
import json
import os
import time
import uuid

from conftest import Relay, Worker, accepted, delete_topics, pg_url_via, unique_email, wait_log, wait_until
from test_poison import _committed, _create_topic

# librdkafka wants max.poll.interval.ms >= session.timeout.ms (6 s for our consumers, lib/core/kafka.c).
MAX_POLL_MS = 7000
PARTITIONS = 3
COMMANDS = 30


def _ends(topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"], "group.id": "probe"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, i), timeout=10)[1] for i in range(PARTITIONS)]
    finally:
        c.close()


def test_a_postgresql_outage_longer_than_max_poll_interval_keeps_the_command_worker_in_its_group(
        client, admin, db):
    tag = uuid.uuid4().hex[:10]
    commands, group = f"test.cmds.{tag}", f"test-group-{tag}"
    org = accepted(client.send("CreateOrganization", admin, {"name": "Outage " + tag,
                                                             "owner_user_id": admin}))["org_id"]
    _create_topic(commands, PARTITIONS)
    pg = Relay(int(os.environ["RAIKOO_PG_PORT"]))
    pg.start()
    w = Worker("raikoo-command-worker", env={
        "RAIKOO_DB_URL": pg_url_via(pg.port), "RAIKOO_TOPIC_COMMANDS": commands, "RAIKOO_GROUP_COMMANDS": group,
        "RAIKOO_KAFKA_MAX_POLL_INTERVAL_MS": str(MAX_POLL_MS), "RAIKOO_WORKER_INSTANCE": ""})
    rc = None
    try:
        wait_log(w, "assigned", timeout=120)
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
        # A first command while PostgreSQL is there: the worker's connection is in use when it goes.
        first = client.envelope("InviteNewUser", admin, {"org_id": org, "email": unique_email("outage")})
        p.produce(commands, json.dumps(first).encode(), key=b"0")
        assert p.flush(30) == 0
        accepted(client.result(first["id"], timeout=120))

        pg.stop()
        ids, emails = [], []
        for i in range(COMMANDS):
            email = unique_email("outage")
            ev = client.envelope("InviteNewUser", admin, {"org_id": org, "email": email})
            ids.append(ev["id"])
            emails.append(email)
            p.produce(commands, json.dumps(ev).encode(), key=str(i).encode())  # over every partition
        assert p.flush(30) == 0
        wait_log(w, "PostgreSQL unavailable", timeout=120)
        # Away for well over max.poll.interval.ms (a condition to create, not a timing assertion).
        time.sleep(2.5 * MAX_POLL_MS / 1000)
        assert w.proc.poll() is None, f"the worker exited {w.proc.returncode}:\n{w.output()[-3000:]}"
        pg.start()

        for cid in ids:
            accepted(client.result(cid, timeout=180))
        wait_log(w, "PostgreSQL available again", timeout=60)
        # Every offset is committed (none refused by a group the member had left).
        ends = _ends(commands)
        wait_until(lambda: _committed(group, commands, PARTITIONS) == ends, timeout=120,
                   what=f"offsets of {commands} committed up to {ends}")
        log = w.output()
        assert "MAXPOLL" not in log and "maximum poll interval" not in log, \
            f"the worker left its group while PostgreSQL was away:\n{log[-4000:]}"
        assert log.count("PostgreSQL unavailable") == 1, "one line per outage, not one per attempt"
        assert w.proc.poll() is None, f"the worker exited {w.proc.returncode}:\n{log[-3000:]}"
    finally:
        pg.start()
        rc = w.stop()
        pg.close()
        delete_topics(commands)
    assert rc == 0, w.output()[-3000:]

    # Exactly one result per command: a command applied again, or redelivered and recognised, would have
    # its result published a second time.
    twice = {cid: n for cid, n in client.result_counts(ids).items() if n != 1}
    assert not twice, f"commands with other than one result: {twice}"
    # Applied once: one invitation per address, one processed_commands row per command.
    cur = db.cursor()
    cur.execute("SELECT count(*) FROM invitations WHERE org_id = %s AND email = ANY(%s)", (org, emails))
    assert cur.fetchone()[0] == COMMANDS
    cur.execute("SELECT count(*) FROM processed_commands WHERE command_id = ANY(%s::uuid[])", (ids,))
    assert cur.fetchone()[0] == COMMANDS


def test_partitions_that_leave_during_a_hold_are_read_again_when_they_come_back(client, admin, db):
    """librdkafka keeps an application's pause on a partition through its revoke and a later assign: a
    partition taken away while the worker held a batch (paused) came back paused and was never read again.
    Worker A holds (PostgreSQL away for it alone); B joins and takes some of A's partitions; PostgreSQL comes
    back; B leaves, its partitions go back to A; commands over every partition must all be answered."""
    tag = uuid.uuid4().hex[:10]
    commands, group = f"test.cmds.{tag}", f"test-group-{tag}"
    org = accepted(client.send("CreateOrganization", admin, {"name": "Rejoin " + tag,
                                                             "owner_user_id": admin}))["org_id"]
    parts = 4
    _create_topic(commands, parts)
    pg = Relay(int(os.environ["RAIKOO_PG_PORT"]))
    pg.start()
    env = {"RAIKOO_TOPIC_COMMANDS": commands, "RAIKOO_GROUP_COMMANDS": group, "RAIKOO_WORKER_INSTANCE": ""}
    a = Worker("raikoo-command-worker", env=dict(env, RAIKOO_DB_URL=pg_url_via(pg.port)))
    b = None
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})

    def wave(n):
        ids = []
        for i in range(n):
            ev = client.envelope("InviteNewUser", admin, {"org_id": org, "email": unique_email("rejoin")})
            ids.append(ev["id"])
            p.produce(commands, json.dumps(ev).encode(), partition=i % parts)
        assert p.flush(30) == 0
        return ids

    rcs = []
    try:
        wait_log(a, "assigned", timeout=120)
        for cid in wave(parts):  # A's connection is in use when PostgreSQL goes
            accepted(client.result(cid, timeout=120))
        pg.stop()
        held = wave(4 * parts)
        wait_log(a, "PostgreSQL unavailable", timeout=120)
        b = Worker("raikoo-command-worker", env=env)
        wait_log(b, "assigned", timeout=120)
        wait_until(lambda: "revoked" in a.output(), timeout=120, what="A to give partitions to B")
        pg.start()
        for cid in held:
            accepted(client.result(cid, timeout=180))
        assigned_before = a.output().count("assigned ")
        rcs.append(b.stop())
        b = None
        wait_until(lambda: a.output().count("assigned ") > assigned_before, timeout=120,
                   what="B's partitions to come back to A")
        for cid in wave(4 * parts):  # over every partition, A alone
            accepted(client.result(cid, timeout=120))
        assert a.proc.poll() is None, f"A exited {a.proc.returncode}:\n{a.output()[-3000:]}"
    finally:
        pg.start()
        if b:
            rcs.append(b.stop())
        rcs.append(a.stop())
        pg.close()
        delete_topics(commands)
    assert rcs == [0] * len(rcs), (rcs, a.output()[-3000:])
