"""Beyond one broker (issue 12, item 8): the pipeline on a 3-broker KRaft cluster survives losing a broker.

`ops/stack up --brokers 3` brings up a stack of its own under $RAIKOO_VAR/cluster (PostgreSQL and SMTP on
ports free at run time; brokers on RAIKOO_TEST_CLUSTER_BROKER_PORT, +2, +4 with their controllers at +1, or
on a free run of ports). `raikoo topics create` with topics.replication at its default must replicate every
topic 3 times with min.insync.replicas=2. Then a command worker and an outbox relay run against it while
commands flow, and the broker leading the most partitions is killed with SIGKILL mid-traffic: every command
must still get exactly one result on raikoo.results (read to its end once the outbox is empty; a copy of the
same CloudEvent, same id, from a redelivery is the same result), every one accepted and applied once in
PostgreSQL, nothing lost.
"""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import psycopg2
import pytest

from conftest import ROOT, Worker, free_port, free_port_run, run

COMMANDS = 600
VAR = os.path.join(os.environ.get("RAIKOO_VAR", os.path.join(ROOT, "var", "test")), "cluster")


def broker_base():
    """Six consecutive free ports (3 brokers, 3 controllers), unless RAIKOO_TEST_CLUSTER_BROKER_PORT says."""
    if os.environ.get("RAIKOO_TEST_CLUSTER_BROKER_PORT"):
        return int(os.environ["RAIKOO_TEST_CLUSTER_BROKER_PORT"])
    return free_port_run(6)


def stack(env, *args, timeout=900):
    p = subprocess.run([os.path.join(ROOT, "ops", "stack"), *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    return p


STACK_ENV = os.path.join(VAR, "stack.env")


def recorded_ports():
    """The ports the cluster under VAR was started with (ops/stack down needs them), {} when unknown."""
    try:
        with open(STACK_ENV) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)
    except OSError:
        return {}


class Starting:
    """`ops/stack up --brokers 3` under way: conftest starts it in the background as soon as the session knows
    these tests will run (they run last), so that the brokers' minutes of start-up overlap the other tests."""
    env, proc, log_path = None, None, None


def start_in_background():
    if Starting.proc:
        return
    base = broker_base()
    env = dict(os.environ)
    brokers = tuple(range(base, base + 6))
    pg = free_port(avoid=brokers)
    env.update({"RAIKOO_VAR": VAR, "RAIKOO_PG_PORT": str(pg), "RAIKOO_SMTP_PORT": str(free_port(brokers + (pg,))),
                "RAIKOO_BROKER_PORT": str(base)})
    if os.path.exists(VAR):  # what a run that was killed left behind (ops/test stops it too)
        # Without its recorded ports, ports of no stack: the suite's own (in os.environ) would be taken for
        # the cluster's, and their SMTP sink stopped.
        stack(dict(env, **recorded_ports()), "down")
        shutil.rmtree(VAR)
    os.makedirs(VAR)
    with open(STACK_ENV, "w") as f:  # for recorded_ports() and ops/test
        f.write("".join(f"{k}={env[k]}\n" for k in ("RAIKOO_PG_PORT", "RAIKOO_SMTP_PORT", "RAIKOO_BROKER_PORT")))
    Starting.log_path = os.path.join(VAR, "stack-up.out")
    with open(Starting.log_path, "w") as out:
        Starting.proc = subprocess.Popen([os.path.join(ROOT, "ops", "stack"), "up", "--brokers", "3"], env=env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    Starting.env = env


def stop_background():
    """At the end of the session: a cluster started for tests that did not run (-x) goes too."""
    if Starting.proc:
        try:
            Starting.proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            Starting.proc.kill()
        stack(Starting.env, "down")
        Starting.proc = None


@pytest.fixture(scope="module")
def cluster():
    start_in_background()  # a no-op when conftest did it
    env = Starting.env
    try:
        rc = Starting.proc.wait(timeout=900)
        with open(Starting.log_path, errors="replace") as f:
            out = f.read()
        assert rc == 0, out
        base = int(env["RAIKOO_BROKER_PORT"])
        bootstrap = stack(env, "bootstrap").stdout.strip()
        assert bootstrap == ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(3)), bootstrap
        env.update({"RAIKOO_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RAIKOO_KEYS_DIR": os.path.join(VAR, "keys"),
                    "RAIKOO_DB_URL": f"host=127.0.0.1 port={env['RAIKOO_PG_PORT']} dbname=raikoo user=raikoo "
                                     "connect_timeout=5"})
        env.pop("RAIKOO_TOPICS_REPLICATION", None)  # the default: auto
        for args in (["migrate"], ["topics", "create"], ["keygen"]):
            p = run(["raikoo"] + args, env=env, timeout=120)
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        yield env
    finally:
        stack(env, "down")  # the data and logs stay under $RAIKOO_VAR/cluster until the next run
        Starting.proc = None


def test_status_lists_every_broker(cluster):
    p = stack(cluster, "status")
    assert p.returncode == 0, p.stdout + p.stderr
    for i in (1, 2, 3):
        assert f"kafka broker {i}: running on" in p.stdout, p.stdout


def test_topics_create_replicates_three_times_with_two_in_sync(cluster):
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": cluster["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
    md = admin.list_topics(timeout=30)
    names = ["raikoo.commands", "raikoo.events", "raikoo.results", "raikoo.mail", "raikoo.commands.dlq"]
    for t in names:
        for p in md.topics[t].partitions.values():
            assert sorted(p.replicas) == [1, 2, 3], (t, p.id, p.replicas)
    for res, fut in admin.describe_configs([ConfigResource("topic", t) for t in names]).items():
        assert fut.result()["min.insync.replicas"].value == "2", res


def leaders(bootstrap):
    """{broker id: number of partitions it leads} over our topics."""
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    count = {}
    for name, t in md.topics.items():
        if name.startswith("raikoo."):
            for p in t.partitions.values():
                count[p.leader] = count.get(p.leader, 0) + 1
    return count


def test_a_broker_killed_mid_traffic_loses_no_command_and_doubles_no_result(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    env = {k: cluster[k] for k in ("RAIKOO_KAFKA_BOOTSTRAP_SERVERS", "RAIKOO_DB_URL", "RAIKOO_KEYS_DIR")}
    bootstrap = env["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]
    admin_id = run(["raikoo", "bootstrap-admin", "--email", "admin@cluster.test"], env=cluster,
                   check=True).stdout.strip()
    workers = [Worker("raikoo-command-worker", env=env), Worker("raikoo-outbox-relay", env=env)]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    ids = [str(uuid.uuid4()) for _ in range(COMMANDS)]
    published, errors = [0], []
    # The publisher stops after a third and goes on only once the broker is dead, so that the kill falls
    # among the commands however fast the pipeline is (a fast run once published all 600 before 20 results).
    killed_now = threading.Event()

    def deliver(err, msg):
        if err:
            errors.append(str(err))

    def publish():
        for i, cid in enumerate(ids):
            ev = {"specversion": "1.0", "id": cid, "source": "/tests/cluster",
                  "type": "raikoo.command.CreateOrganization.v1", "time": "2026-11-29T00:00:00Z",
                  "datacontenttype": "application/json", "actorid": admin_id,
                  "data": {"name": f"Cluster {i}", "owner_user_id": admin_id}}
            producer.produce("raikoo.commands", json.dumps(ev).encode(), key=cid.encode(), on_delivery=deliver)
            if i % 20 == 19:
                producer.flush(120)  # in steps, so that the test sees how far it got
                published[0] = i + 1
                if published[0] == COMMANDS // 3:
                    killed_now.wait(300)
        producer.flush(120)
        published[0] = COMMANDS

    results = Consumer({"bootstrap.servers": bootstrap, "group.id": "cluster-" + uuid.uuid4().hex,
                        "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    results.subscribe(["raikoo.results"])
    seen = {}

    def read(seconds):
        end = time.time() + seconds
        while time.time() < end:
            m = results.poll(0.2)
            if m is None or m.error():
                continue
            r = json.loads(m.value())
            seen.setdefault(r["data"]["command_id"], []).append(r)

    killed = None
    try:
        sender = threading.Thread(target=publish, daemon=True)
        sender.start()
        deadline = time.time() + 240
        # A third of the commands in and some results out: the pipeline runs through the cluster.
        while published[0] < COMMANDS // 3 or len(seen) < 20:
            assert time.time() < deadline, (published[0], len(seen), [w.output()[-2000:] for w in workers])
            read(0.3)
        count = leaders(bootstrap)
        victim = max(count, key=count.get)
        with open(os.path.join(VAR, "run", f"kafka-{victim}.pid")) as f:
            killed = int(f.read())
        os.kill(killed, signal.SIGKILL)
        at_kill = published[0]
        killed_now.set()
        sender.join(300)
        assert not sender.is_alive() and published[0] == COMMANDS, published
        assert not errors, errors[:5]
        assert at_kill < COMMANDS, "the broker died after the traffic, not during it"
        # Every command answered: read until each id has a result (or the deadline fails the test).
        while len(seen) < COMMANDS and time.time() < deadline + 120:
            read(0.5)
        missing = [c for c in ids if c not in seen]
        assert not missing, (len(missing), [w.output()[-3000:] for w in workers])
        # Nothing left to publish, then raikoo.results read to its end: a duplicate would be there now.
        conn = psycopg2.connect(env["RAIKOO_DB_URL"])
        conn.autocommit = True
        cur = conn.cursor()
        while True:
            cur.execute("SELECT count(*) FROM outbox")
            if cur.fetchone()[0] == 0:
                break
            assert time.time() < deadline + 240, "the outbox never emptied"
            time.sleep(0.5)
        ends = {}
        for p in results.list_topics("raikoo.results", timeout=30).topics["raikoo.results"].partitions:
            ends[p] = results.get_watermark_offsets(TopicPartition("raikoo.results", p), timeout=30)[1]
        while True:
            read(0.5)
            pos = {tp.partition: tp.offset for tp in results.position(
                [TopicPartition("raikoo.results", p) for p in ends])}
            if all(pos[p] >= ends[p] or ends[p] == 0 for p in ends):
                break
            assert time.time() < deadline + 360, (pos, ends)
        # One result per command: a redelivered command (its offset commit lost while the group coordinator
        # moved) gets its stored result again, the same CloudEvent with the same id, which a consumer drops
        # (DESIGN.md); two different results, or two ids, would be two results.
        two = {c: [r["id"] for r in seen[c]] for c in ids if any(r != seen[c][0] for r in seen[c][1:])}
        assert not two, two
        copies = sum(len(seen[c]) - 1 for c in ids)
        print(f"{COMMANDS} commands, {COMMANDS} results, {copies} redelivered copies; broker {victim} killed "
              f"after {at_kill} commands were published")
        bad = [seen[c][0]["data"] for c in ids if seen[c][0]["data"]["status"] != "accepted"]
        assert not bad, bad[:3]
        cur.execute("SELECT count(*) FROM processed_commands WHERE command_id = ANY(%s::uuid[])", (ids,))
        assert cur.fetchone()[0] == COMMANDS
        cur.execute("SELECT count(*) FROM organizations WHERE name LIKE 'Cluster %%'")
        assert cur.fetchone()[0] == COMMANDS
        conn.close()
        # ops/stack sees the broker gone.
        p = stack(cluster, "status")
        assert p.returncode == 1 and f"kafka broker {victim}: stopped" in p.stdout, p.stdout
    finally:
        killed_now.set()
        results.close()
        rcs = [w.stop() for w in workers]
    assert rcs == [0, 0], [w.output()[-3000:] for w in workers]


def test_stack_refuses_a_bad_broker_count_before_touching_anything():
    env = dict(os.environ, RAIKOO_VAR=os.path.join(VAR + "-args"))
    try:
        for args, says in ((["up", "--brokers", "0"], "--brokers takes 1 to 9"),
                           (["up", "--brokers", "three"], "--brokers takes 1 to 9"),
                           (["up", "--brokers"], "usage: ops/stack up [--brokers N]"),
                           (["status", "--brokers", "3"], "--brokers goes with up"),
                           (["up", "--replicas", "3"], 'unknown argument "--replicas"')):
            p = stack(env, *args, timeout=60)
            assert p.returncode == 2 and says in p.stderr, (args, p.returncode, p.stderr)
        assert not os.path.exists(os.path.join(VAR + "-args", "kafka")), "a refused command left Kafka data"
    finally:
        shutil.rmtree(VAR + "-args", ignore_errors=True)
