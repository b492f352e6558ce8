"""The mailer's parallel SMTP sessions (mail.connections sender threads), on the real broker, database and SMTP:
every job is delivered exactly once however the jobs are spread over the sessions, a session stuck on a slow
server does not hold the others back, and the one circuit breaker still opens (one line) and closes (one
line) when the server is down while several sessions probe it at once.

Each test runs its own mailer against a database of its own (conftest's pdb fixture)."""
import collections
import email
import email.policy
import json
import os
import threading

from confluent_kafka import Producer

from mailkit import Invitation, ScriptedSmtp, Sink, create_topic, free_port, query, start_mailer, wait_until


def produce_all(topic, invs):
    """Every invitation's mail job, through one producer."""
    p = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
    for inv in invs:
        p.produce(topic, json.dumps(inv.job()).encode(), key=inv.id.encode())
        p.poll(0)
    assert p.flush(30) == 0


def stored_per_recipient(mdir):
    """How many messages the sink stored for each envelope recipient."""
    counts = collections.Counter()
    new = os.path.join(str(mdir), "new")
    for f in os.listdir(new) if os.path.isdir(new) else []:
        with open(os.path.join(new, f), "rb") as fh:
            msg = email.message_from_bytes(fh.read(), policy=email.policy.default)
        for a in str(msg.get("X-RcptTo", "")).split(","):
            counts[a.strip().lower()] += 1
    return counts


def statuses(db, invs):
    rows = query(db, "SELECT job_id::text, status, attempts FROM mail_deliveries WHERE job_id = ANY(%s::uuid[])",
                 ([i.job_id for i in invs],))
    return {r[0]: (r[1], r[2]) for r in rows}


class SlowSmtp(ScriptedSmtp):
    """A scripted SMTP server of threads: answers the end of a message's data at once, except for recipients
    containing `slow`, whose reply waits for the gate. Counts, per recipient, the messages it accepted, and
    the sessions open at once (most ever)."""

    def __init__(self, slow="slow-"):
        self.slow, self.gate = slow.encode(), threading.Event()
        self.lock = threading.Lock()
        self.accepted, self.open, self.most_open = collections.Counter(), 0, 0
        self.slow_waiting = threading.Event()
        super().__init__(backlog=64)

    def serve(self, c):
        with self.lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        try:
            f = c.makefile("rb")
            c.sendall(b"220 slow.test ESMTP\r\n")
            rcpt = b""
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.strip().upper()
                if cmd.startswith(b"EHLO"):
                    c.sendall(b"250 slow.test\r\n")
                elif cmd.startswith(b"RCPT"):
                    rcpt = line.strip()[8:].strip(b"<> ").lower()
                    c.sendall(b"250 ok\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    while f.readline() not in (b".\r\n", b".\n", b""):
                        pass
                    if self.slow in rcpt:
                        self.slow_waiting.set()
                        self.gate.wait(120)
                    with self.lock:
                        self.accepted[rcpt.decode()] += 1
                    c.sendall(b"250 2.0.0 queued\r\n")
                elif cmd == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
            c.close()

    def stop(self):
        self.gate.set()
        super().stop()


def test_parallel_sessions_deliver_each_job_exactly_once(tmp_path, pdb):
    """200 invitations, mail.connections=4, sessions of at most 10 messages: each invitation gets exactly one
    message in the sink, its row is sent after one attempt, and its invitation says sent."""
    url, db = pdb
    topic = create_topic("raikoo.test.mail", partitions=4)
    port, mdir = free_port(), tmp_path / "mail"
    sink = Sink(port, mdir)
    w = start_mailer(topic, RAIKOO_DB_URL=url, RAIKOO_SMTP_PORT=port, RAIKOO_MAIL_CONNECTIONS=4,
                     RAIKOO_MAIL_BATCH_MAX=10)
    try:
        invs = [Invitation(db) for _ in range(200)]
        produce_all(topic, invs)
        wait_until(lambda: sum(1 for s in statuses(db, invs).values() if s[0] == "sent") == 200, 180,
                   "200 jobs sent")
        assert set(statuses(db, invs).values()) == {("sent", 1)}
        counts = stored_per_recipient(mdir)
        assert [inv.email for inv in invs if counts[inv.email] != 1] == []
        assert sum(counts.values()) == 200
        assert query(db, "SELECT count(*) FROM invitations WHERE id = ANY(%s::uuid[]) AND mail_state = 'sent'",
                     ([i.id for i in invs],)) == [(200,)]
        assert w.stop() == 0
    finally:
        w.stop()
        sink.stop()


def test_a_slow_session_does_not_hold_back_the_others(tmp_path, pdb):
    """One message hangs at the end of its data (the server has not answered): the other senders deliver and
    record every job that comes after it meanwhile; the slow one is recorded once the server answers."""
    url, db = pdb
    smtp = SlowSmtp()
    topic = create_topic("raikoo.test.mail", partitions=2)
    w = start_mailer(topic, RAIKOO_DB_URL=url, RAIKOO_SMTP_PORT=smtp.port, RAIKOO_MAIL_CONNECTIONS=4,
                     RAIKOO_SMTP_TIMEOUT_MS=120000)
    try:
        slow = Invitation(db, email=f"slow-{os.urandom(6).hex()}@example.test")
        produce_all(topic, [slow])
        assert smtp.slow_waiting.wait(60), "the slow message never reached the server"
        others = [Invitation(db) for _ in range(30)]
        produce_all(topic, others)
        wait_until(lambda: set(statuses(db, others).values()) == {("sent", 1)}, 90,
                   "the other jobs sent while one session hangs")
        assert slow.delivery()[0] == "sending"
        assert smtp.most_open >= 2
        smtp.gate.set()
        wait_until(lambda: slow.delivery()[:2] == ("sent", 1), 60, "the slow job recorded once answered")
        assert all(smtp.accepted[i.email] == 1 for i in others + [slow]), smtp.accepted
        assert w.stop() == 0
    finally:
        w.stop()
        smtp.stop()


def test_the_breaker_opens_once_and_closes_once_with_parallel_sessions(tmp_path, pdb):
    """The server is down while 120 jobs are spread over four senders, each probing it: one line when it goes,
    one when it answers again, no attempt counted and nothing failed meanwhile, then each message once."""
    url, db = pdb
    topic = create_topic("raikoo.test.mail", partitions=4)
    port, mdir = free_port(), tmp_path / "mail"
    sink = Sink(port, mdir)
    w = start_mailer(topic, RAIKOO_DB_URL=url, RAIKOO_SMTP_PORT=port, RAIKOO_MAIL_CONNECTIONS=4,
                     RAIKOO_MAIL_BATCH_MAX=10, RAIKOO_MAIL_RETRY_BASE_MS=200, RAIKOO_MAIL_PROBE_MAX_MS=400,
                     RAIKOO_MAIL_RETRY_MAX=2)
    try:
        first = Invitation(db)
        produce_all(topic, [first])
        wait_until(lambda: (first.delivery() or ("",))[0] == "sent", 60, "mail before the outage")
        sink.stop()
        sink = None
        invs = [Invitation(db) for _ in range(120)]
        produce_all(topic, invs)
        wait_until(lambda: len(statuses(db, invs)) == 120 and all(
            s[0] == "retrying" for s in statuses(db, invs).values()), 60, "every job held")
        # Several rounds of probes, four sessions at a time.
        seen = set()
        wait_until(lambda: seen.add(query(db, "SELECT max(updated_at) FROM mail_deliveries")[0][0])
                   or len(seen) >= 5, 60, "several probes")
        assert all(s[1] == 0 for s in statuses(db, invs).values())
        assert query(db, "SELECT count(*) FROM mail_deliveries WHERE status = 'failed'") == [(0,)]
        out = w.output()
        assert out.count("cannot be reached") == 1, out
        sink = Sink(port, mdir)
        wait_until(lambda: set(statuses(db, invs).values()) == {("sent", 1)}, 90, "all sent after")
        out = w.output()
        assert out.count("answers again") == 1 and out.count("cannot be reached") == 1, out
        counts = stored_per_recipient(mdir)
        assert [inv.email for inv in invs + [first] if counts[inv.email] != 1] == []
        assert query(db, "SELECT count(*) FROM invitations WHERE mail_state = 'failed'") == [(0,)]
        assert w.stop() == 0
    finally:
        w.stop()
        if sink:
            sink.stop()
