"""Shared fixtures of the integration suite: the test stack's settings, the CLI, Kafka and PostgreSQL.

ops/test brings the stack up (ports and data of its own) and exports RAIKOO_* before pytest starts;
RAIKOO_BIN_DIR says which build (bin/ or bin-asan/) the tests run.
"""
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
import weakref

import psycopg2
import pytest

import cryptokit
# The per-test time limit: a test that hangs ends the run and says where (RAIKOO_TEST_TIMEOUT).
from hangwatch import pytest_runtest_protocol  # noqa: F401 (a hook pytest finds here)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RAIKOO_BIN_DIR", os.path.join(ROOT, "bin"))


def need_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the suite through `make test` (ops/test)")
    return value


def run(args, input=None, env=None, timeout=60, check=False):
    """Runs one of our binaries; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    exe = args[0] if os.path.isabs(args[0]) else os.path.join(BIN, args[0])
    p = subprocess.run([exe] + list(args[1:]), input=input, capture_output=True, text=True,
                       env=full_env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def ephemeral_range():
    """The ports the system gives outgoing connections (ip_local_port_range): (first, last)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            first, last = (int(x) for x in f.read().split()[:2])
            return first, last
    except (OSError, ValueError):
        return 32768, 60999


def port_free(port):
    """Whether nothing listens on this loopback port now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_run(n, avoid=()):
    """The first of n consecutive loopback ports nothing listens on now, none of them in avoid (ports picked
    already for the same test), for a server a test starts. Outside the system's range for outgoing
    connections (below it from 20000 on, or above it when it starts low): a port the system picked (bind to
    port 0) lies in that range, where any client connection made before the server binds it (a Kafka
    client's, say) can take it. At random, so that two runs at once on one machine seldom try the same."""
    first, last = ephemeral_range()
    low, top = (20000 if first > 21000 else 1024), first
    if top - low < 1000 + n:
        low, top = last + 1, 65536
    for _ in range(200):
        base = random.randrange(low, top - n)
        if all(base + i not in avoid and port_free(base + i) for i in range(n)):
            return base
    raise AssertionError(f"no run of {n} free ports found on 127.0.0.1 in [{low}, {top})")


def free_port(avoid=()):
    """A loopback port nothing listens on now (free_port_run)."""
    return free_port_run(1, avoid)


def wait_until(pred, timeout=60, what="condition"):
    """Polls pred() until it returns something true; returns it, or fails the test naming what was awaited
    at the deadline (a bound, not a timing assertion)."""
    end = time.time() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.time() > end:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        time.sleep(0.1)


def conninfo_with(url, **kw):
    """The key=value connection string url with some keys replaced."""
    parts = dict(p.split("=", 1) for p in url.split())
    parts.update(kw)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def pg_url_via(port):
    """The test stack's database URL through another port (a Relay's)."""
    return conninfo_with(need_env("RAIKOO_DB_URL"), port=str(port))


def _pg_admin():
    conn = psycopg2.connect(conninfo_with(need_env("RAIKOO_DB_URL"), user="postgres", dbname="postgres"))
    conn.autocommit = True
    return conn


def fresh_database(name, migrate=True):
    """A database of the test stack's PostgreSQL made afresh (dropped first if a run left it) and migrated
    (unless told); returns its URL."""
    admin = _pg_admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {name} OWNER raikoo")
    finally:
        admin.close()
    url = conninfo_with(need_env("RAIKOO_DB_URL"), dbname=name)
    if migrate:
        raikoo("migrate", env={"RAIKOO_DB_URL": url}, check=True, timeout=120)
    return url


def drop_database(name):
    admin = _pg_admin()
    try:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


def domain_runner(db_url, dirs, *flags, env=None):
    """raikoo-domain-runner over the case folders dirs against database db_url: {case name: what it printed
    for the case}; fails unless it printed one line a case."""
    full = dict(os.environ, RAIKOO_DB_URL=db_url, **(env or {}))
    p = subprocess.run([os.path.join(BIN, "raikoo-domain-runner"), *flags] + list(dirs), capture_output=True,
                       text=True, env=full, timeout=600)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert len(lines) == len(dirs), f"runner exited {p.returncode}\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr}"
    return {os.path.basename(o["case"]): o for o in lines}


def raikoo(*args, **kw):
    return run(["raikoo"] + list(args), **kw)


def raikoo_json(*args, **kw):
    """Runs `raikoo ... --wait --json` and returns (exit status, parsed result)."""
    p = raikoo(*args, "--wait", "--json", **kw)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        raise AssertionError(f"not JSON on stdout (exit {p.returncode}): {p.stdout!r}\nstderr: {p.stderr}")
    return p.returncode, doc


def accepted(r):
    """A result that must be accepted: returns it."""
    assert r["status"] == "accepted" and r["code"] is None, r
    return r


def rejected(r, code):
    """A result that must be rejected with code, and say why: returns it."""
    assert r["status"] == "rejected" and r["code"] == code, r
    assert r["message"], r
    return r


@pytest.fixture(scope="session")
def db_url():
    return need_env("RAIKOO_DB_URL")


@pytest.fixture(scope="session")
def bootstrap():
    return need_env("RAIKOO_KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture()
def db(db_url):
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture()
def pdb():
    """(url, connection) of a fresh, migrated database of this test's own: no worker of the session sees its
    rows (the session's mailer, for one, takes every due retry of the database it serves)."""
    name = "raikoo_private_" + uuid.uuid4().hex[:8]
    url = fresh_database(name)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        yield url, conn
    finally:
        conn.close()
        drop_database(name)


def unique_email(prefix="user"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.test"


WORKERS = ["raikoo-command-worker", "raikoo-outbox-relay", "raikoo-mailer", "raikoo-expiry-worker",
           "raikoo-audit-worker"]


class Worker:
    """One worker process of the build under test, logging to $RAIKOO_VAR/log/test-<name>-<n>.log."""
    count = 0

    def __init__(self, name, env=None, args=()):
        Worker.count += 1
        self.name = name
        self.log_path = os.path.join(os.environ["RAIKOO_VAR"], "log",
                                     f"test-{name}-{os.getpid()}-{Worker.count}.log")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(BIN, name)] + list(args), env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self, sig=None, timeout=30):
        """Stops the worker (SIGTERM unless told) and returns its exit status."""
        import signal
        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def wait_log(w, text, timeout=60, count=1):
    """Waits until worker w has logged text (count times); fails if it exits first or at the deadline."""
    end = time.time() + timeout
    while time.time() < end:
        if w.output().count(text) >= count:
            return
        assert w.proc.poll() is None, f"{w.name} exited {w.proc.returncode}:\n{w.output()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"{w.name} did not log {text!r} {count}x within {timeout}s:\n{w.output()[-3000:]}")


class Relay:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target, to make a real service come and go without touching
    it. Its port is held from the start (bound, not listening: a connection is refused) until start();
    stop() cuts every connection through it and refuses new ones again, as a service that goes away does."""

    def __init__(self, target):
        self.target = target
        self.lock, self.conns, self.server = threading.Lock(), [], None
        self.held = self._bind(0)
        self.port = self.held.getsockname()[1]

    @staticmethod
    def _bind(port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return s

    def start(self):
        if self.server:
            return
        self.server, self.held = self.held or self._bind(self.port), None
        self.server.listen(64)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server):
        while True:
            try:
                a, _ = server.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                a.close()
                continue
            with self.lock:
                self.conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _cut(self):
        if self.server:
            try:
                self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(): nothing listens any more
            except OSError:
                pass
            self.server.close()
            self.server = None
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns = []

    def stop(self):
        """Cuts every connection; the port is held again (refused) until the next start()."""
        was = self.server is not None
        self._cut()
        if was and self.held is None:
            try:
                self.held = self._bind(self.port)
            except OSError:
                self.held = None  # start() binds again

    def close(self):
        """Cuts every connection and lets the port go."""
        self._cut()
        if self.held:
            self.held.close()
            self.held = None


@pytest.fixture(scope="session")
def workers():
    """Every worker the build has, running for the whole session; each must exit 0 on SIGTERM. Each serves
    metrics on a port of its own picked by the system (tests/test_metrics.py reads it from the log)."""
    # Reminders off in the session's expiry worker: tests/test_reminders.py runs expiry workers of its own, and
    # no other test expects a second e-mail to an invitee.
    started = {w: Worker(w, env={"RAIKOO_METRICS_LISTEN": "127.0.0.1:0", "RAIKOO_REMINDER_BEFORE": "0"})
               for w in WORKERS if os.path.exists(os.path.join(BIN, w))}
    yield started
    bad = []
    for name, w in started.items():
        rc = w.stop()
        if rc != 0:
            bad.append(f"{name} exited {rc}; log {w.log_path}:\n{w.output()[-3000:]}")
    assert not bad, "\n".join(bad)


class Tail:
    """Reads a topic from the end it had when created, across all partitions (no consumer group)."""

    open = weakref.WeakSet()  # the Tails not closed yet: delete_topics closes those on a topic it deletes

    def __init__(self, topic):
        from confluent_kafka import Consumer, TopicPartition
        self.topic = topic
        Tail.open.add(self)
        self.c = Consumer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"],
                           "group.id": "tail-" + uuid.uuid4().hex, "enable.auto.commit": False})
        md = self.c.list_topics(topic, timeout=10)
        parts = []
        for p in md.topics[topic].partitions:
            _, high = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, high))
        self.c.assign(parts)
        self.seen = []

    def poll(self, seconds=0.5):
        import time
        end = time.time() + seconds
        while time.time() < end:
            m = self.c.poll(0.1)
            if m is None or m.error():
                continue
            self.seen.append(m)
        return self.seen

    def poll_new(self, seconds=0.5):
        """Like poll, but returns as soon as new messages came (with those ready at once after them), not
        after the whole window: what waits for one message is not held up by the window."""
        end = time.time() + seconds
        before = len(self.seen)
        while time.time() < end:
            m = self.c.poll(0.05)
            if m is None:
                if len(self.seen) > before:
                    break
                continue
            if not m.error():
                self.seen.append(m)
        return self.seen

    def wait_for(self, pred, timeout=30):
        """Polls until some message satisfies pred(message); returns it or fails the test."""
        end = time.time() + timeout
        while time.time() < end:
            for m in self.seen:
                if pred(m):
                    return m
            self.poll_new(0.3)
        raise AssertionError(f"nothing on {self.topic} matched within {timeout}s; saw {len(self.seen)} messages")

    def close(self):
        """Leaves the topic; a second call does nothing."""
        if self.c is not None:
            self.c.close()
            self.c = None
        Tail.open.discard(self)


def delete_topics(*names):
    """Deletes topics, every open Tail on one of them closed first: librdkafka 2.0.2's close of a consumer
    still assigned to a deleted topic can hang for good, and a Tail the test left to its fixture is closed
    only after the test (it held the whole suite twice, in two tests, until tests/hangwatch.py stopped it)."""
    from confluent_kafka.admin import AdminClient
    for t in list(Tail.open):
        if t.topic in names:
            t.close()
    admin = AdminClient({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
    for f in admin.delete_topics(list(names)).values():
        try:
            f.result(30)
        except Exception:
            pass  # already gone


@pytest.fixture()
def tail():
    """tail(topic) opens a Tail closed after the test."""
    opened = []

    def open_tail(topic):
        t = Tail(topic)
        opened.append(t)
        return t
    yield open_tail
    for t in opened:
        t.close()


class Client:
    """Publishes commands straight to raikoo.commands (as an upstream app would) and waits for results.

    Results are read from the end raikoo.results had when the client was made, so none is missed.
    """

    def __init__(self):
        from confluent_kafka import Producer
        self.producer = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"],
                                  "enable.idempotence": True})
        self.results = Tail("raikoo.results")
        self.mail = Tail("raikoo.mail")
        self.by_command = {}

    @staticmethod
    def envelope(name, actor, data, command_id=None):
        ev = {"specversion": "1.0", "id": command_id or str(uuid.uuid4()), "source": "/tests",
              "type": f"raikoo.command.{name}.v1", "time": "2026-11-27T00:00:00Z",
              "datacontenttype": "application/json", "data": data}
        if actor:
            ev["actorid"] = actor
        return ev

    def publish_raw(self, value, key=None):
        self.producer.produce("raikoo.commands", value, key=key)
        assert self.producer.flush(30) == 0

    def publish(self, name, actor, data, command_id=None):
        ev = self.envelope(name, actor, data, command_id)
        key = data.get("org_id") or data.get("email") or ev["id"]
        self.publish_raw(json.dumps(ev).encode(), key=key.encode())
        return ev["id"]

    def result(self, command_id, timeout=60):
        import time
        end = time.time() + timeout
        while command_id not in self.by_command:
            if time.time() > end:
                raise AssertionError(f"no result for command {command_id} within {timeout}s")
            for m in self.results.poll_new(0.2):
                r = json.loads(m.value())
                self.by_command.setdefault(r["data"]["command_id"], []).append(r)
            self.results.seen.clear()
        return self.by_command[command_id][0]["data"]

    def result_counts(self, ids):
        """How many result messages each of ids got so far, copies included (a command applied twice, or
        redelivered and recognised, has its result published again)."""
        self.results.poll(2)
        for m in self.results.seen:
            r = json.loads(m.value())
            self.by_command.setdefault(r["data"]["command_id"], []).append(r)
        self.results.seen.clear()
        return {cid: len(self.by_command.get(cid, [])) for cid in ids}

    def send(self, name, actor, data, command_id=None):
        """Publishes one command and returns its result's data."""
        return self.result(self.publish(name, actor, data, command_id))

    def mail_jobs(self, invitation_id, count=1, timeout=60):
        """The mail jobs of an invitation, once at least count of them arrived (oldest first)."""
        import time
        end = time.time() + timeout
        while True:
            jobs = [json.loads(m.value()) for m in self.mail.seen if m.key() == invitation_id.encode()]
            if len(jobs) >= count:
                return jobs
            if time.time() > end:
                raise AssertionError(f"{len(jobs)} mail jobs for {invitation_id}, wanted {count}")
            self.mail.poll_new(0.3)

    def code_for(self, invitation_id, nth=1, timeout=60):
        """The code carried by the nth mail job of an invitation, opened with the mailer's secret key."""
        keys = os.environ["RAIKOO_KEYS_DIR"]
        sk = open(os.path.join(keys, "mailer.sk"), "rb").read()
        job = self.mail_jobs(invitation_id, nth, timeout)[nth - 1]
        return cryptokit.shown_code(cryptokit.open_sealed_code(job["data"]["sealed_code"], sk))

    def close(self):
        self.results.close()
        self.mail.close()


@pytest.fixture(scope="session")
def client(workers):
    c = Client()
    yield c
    c.close()


@pytest.fixture(scope="session")
def admin():
    """The system admin's id (bootstrap-admin is idempotent)."""
    return raikoo("bootstrap-admin", "--email", "admin@raikoo.test", check=True).stdout.strip()


def argon2id_hash(password="correct horse battery staple"):
    """An Argon2id hash at libsodium's interactive cost, as the CLI would send (tests/cryptokit.py's)."""
    return cryptokit.argon2id_hash(password)


# ---- The 3-broker cluster (tests/test_cluster.py): last, its start-up overlapping the rest of the pass ----
@pytest.hookimpl(trylast=True)  # after -k / -m have deselected what does not run
def pytest_collection_modifyitems(session, config, items):
    cluster = [i for i in items if i.path.name == "test_cluster.py"]
    if cluster and not config.option.collectonly:
        items[:] = [i for i in items if i.path.name != "test_cluster.py"] + cluster
        if any("cluster" in getattr(i, "fixturenames", ()) for i in cluster):
            cluster[0].module.start_in_background()


def pytest_sessionfinish(session, exitstatus):
    import sys
    mod = sys.modules.get("test_cluster")
    if mod is not None:
        mod.stop_background()


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # SIGTERM ends the session as Ctrl-C does: fixtures torn down (workers stopped), the cluster stopped.
    import signal
    signal.signal(signal.SIGTERM, _interrupted)
