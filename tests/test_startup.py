"""Workers and services that come and go (issue 9, items 9 and 11), on the real stack.

A worker started while PostgreSQL or Kafka cannot be reached waits for them (one line per change of state,
not one per attempt) and works once they answer; a database that goes away mid-run is waited for and
reconnected to. The services are made unreachable with a TCP relay of the test's own in front of the real
ones (the stack itself keeps running for the rest of the suite). A command worker killed with SIGKILL hands
its partitions over within seconds, not after librdkafka's 45 s session timeout.
"""
import json
import os
import signal
import socket
import threading
import time
import uuid

from conftest import Worker


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target: closed, nothing listens there; stop() also cuts
    every connection through it, as a service that goes away does."""

    def __init__(self, target):
        self.port, self.target = free_port(), target
        self.server, self.conns, self.lock = None, [], threading.Lock()

    def start(self):
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
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

    def stop(self):
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


def wait_log(w, text, timeout=60, count=1):
    end = time.time() + timeout
    while time.time() < end:
        if w.output().count(text) >= count:
            return
        assert w.proc.poll() is None, f"{w.name} exited {w.proc.returncode}:\n{w.output()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"{w.name} did not log {text!r} {count}x within {timeout}s:\n{w.output()[-3000:]}")


def pg_url_via(port):
    return os.environ["RAIKOO_DB_URL"].replace(f"port={os.environ['RAIKOO_PG_PORT']}", f"port={port}")


def test_a_worker_started_without_its_services_waits_for_them_then_works(workers):
    pg = Relay(int(os.environ["RAIKOO_PG_PORT"]))
    kafka = Relay(int(os.environ["RAIKOO_BROKER_PORT"]))
    w = Worker("raikoo-command-worker", env={"RAIKOO_DB_URL": pg_url_via(pg.port),
                                             "RAIKOO_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka.port}"})
    try:
        wait_log(w, "PostgreSQL unavailable")
        time.sleep(3)  # several attempts, still one line
        assert w.proc.poll() is None, w.output()
        assert w.output().count("PostgreSQL unavailable") == 1, w.output()
        pg.start()
        wait_log(w, "PostgreSQL available again")
        wait_log(w, "Kafka unavailable")
        time.sleep(3)
        assert w.output().count("Kafka unavailable") == 1, w.output()
        kafka.start()
        wait_log(w, "Kafka available again")
        wait_log(w, "consuming raikoo.commands")
        wait_log(w, "assigned")  # in the consumer group
    finally:
        rc = w.stop()
        pg.stop()
        kafka.stop()
    assert rc == 0, w.output()
    out = w.output()
    assert out.count("unavailable") == 2 and out.count("available again") == 2, out
    assert "level=error" not in out, out


def test_a_worker_stopped_while_waiting_exits_cleanly():
    w = Worker("raikoo-outbox-relay", env={"RAIKOO_DB_URL": pg_url_via(free_port())})
    wait_log(w, "PostgreSQL unavailable")
    assert w.stop() == 0, w.output()


def test_postgresql_going_away_mid_run_is_waited_for_and_reconnected(workers):
    pg = Relay(int(os.environ["RAIKOO_PG_PORT"]))
    pg.start()
    w = Worker("raikoo-expiry-worker", env={"RAIKOO_DB_URL": pg_url_via(pg.port),
                                            "RAIKOO_EXPIRY_INTERVAL_MS": "100"})
    try:
        wait_log(w, "expiry worker started")
        time.sleep(1)
        pg.stop()  # every connection cut, nothing listens
        wait_log(w, "PostgreSQL unavailable")
        time.sleep(4)
        assert w.output().count("PostgreSQL unavailable") == 1, w.output()
        pg.start()
        wait_log(w, "PostgreSQL available again")
        # And it works again: an invitation past its expiry is marked (by it or the suite's own worker).
    finally:
        rc = w.stop()
        pg.stop()
    assert rc == 0, w.output()
    assert w.output().count("level=error") <= 1, w.output()  # at most the statement the cut interrupted


def test_a_killed_command_worker_hands_its_partitions_over_quickly(client, admin, workers):
    """kill -9 one of two command workers: every partition is consumed again well within the old 45 s."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    topic = "raikoo.commands"
    parts = len(AdminClient({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
                .list_topics(topic, timeout=10).topics[topic].partitions)
    second = Worker("raikoo-command-worker")
    try:
        wait_log(second, "assigned")
        time.sleep(2)  # let the cooperative rebalance settle: the victim owns its share
        second.stop(sig=signal.SIGKILL)
        killed = time.time()
        producer = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
        ids = []
        for p in range(parts):
            ev = client.envelope("CreateOrganization", admin, {"name": f"Takeover {p}", "owner_user_id": admin})
            ids.append(ev["id"])
            producer.produce(topic, json.dumps(ev).encode(), key=str(uuid.uuid4()).encode(), partition=p)
        assert producer.flush(30) == 0
        for i in ids:
            r = client.result(i, timeout=60)
            assert r["status"] == "accepted", r
        took = time.time() - killed
    finally:
        second.stop()
    print(f"takeover after kill -9: every partition answered {took:.1f} s after the kill")
    assert took < 20, f"partitions of the killed worker took {took:.1f} s to be consumed again"
