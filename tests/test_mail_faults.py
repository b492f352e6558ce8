"""The mailer under faults, on the real broker, database and SMTP: a killed mailer's jobs are taken over when
its lease runs out (a live one renews it however long its session takes), an outcome is recorded after the
database comes back instead of being abandoned, an SMTP outage is one log line each way and never a failed
invitation, replies of any bytes and length are stored, the outcome statement never deadlocks with a
transaction holding an invitation, and the job parser rejects every job the JSON Schema rejects.

Each test runs its own mailer against a database of its own (conftest's pdb), so the session's
mailer never touches its rows."""
import copy
import threading
import time

import psycopg2
import pytest

import schemacheck
from mailkit import (Invitation, ScriptedSmtp, Sink, code_in, create_topic, free_port, mails_to, produce, query,
                     shown_code, start_mailer, text_part, wait_until)


class FakeSmtp(ScriptedSmtp):
    """A scripted SMTP server: reply(cmd_line) -> bytes gives the answer to each command (None: the
    default); hold=True never greets (a server that hangs); data_gate (threading.Event) delays the reply
    to the end of DATA until set. Counts the messages whose data it received."""

    def __init__(self, reply=None, hold=False, data_gate=None, gate_after=0):
        self.reply, self.hold, self.data_gate = reply or (lambda line: None), hold, data_gate
        self.gate_after = gate_after  # the first gate_after messages are answered at once
        self.messages, self.got_data = 0, threading.Event()
        super().__init__()

    def serve(self, c):
        try:
            if self.hold:
                while not self.stopping and c.recv(4096):
                    pass
                return
            f = c.makefile("rb")
            c.sendall(b"220 fake.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.strip().upper()
                custom = self.reply(line)
                if cmd.startswith(b"EHLO"):
                    c.sendall(custom or b"250 fake.test\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    while f.readline() not in (b".\r\n", b".\n", b""):
                        pass
                    self.messages += 1
                    self.got_data.set()
                    if self.data_gate and self.messages > self.gate_after:
                        self.data_gate.wait(120)
                    c.sendall(custom or b"250 2.0.0 queued\r\n")
                elif cmd == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(custom or b"250 ok\r\n")
        except OSError:
            pass
        finally:
            c.close()


def mailer_on(url, topic, **env):
    return start_mailer(topic, RAIKOO_DB_URL=url, **env)


def deliveries(db, invs):
    return {i.id: i.delivery() for i in invs}


def test_an_smtp_outage_is_one_line_each_way_holds_mail_and_fails_nothing(tmp_path, pdb):
    """Item 14: a server-wide outage opens the circuit breaker (one line), jobs wait without attempts being
    counted, the server is probed with backoff; when it answers (one line) every held job goes out at once.
    mail.retry.max=2: before, the outage itself used those attempts up and marked the invitations failed."""
    url, db = pdb
    topic = create_topic("raikoo.test.mail")
    port, mdir = free_port(), tmp_path / "mail"
    sink = Sink(port, mdir)
    w = mailer_on(url, topic, RAIKOO_SMTP_PORT=port, RAIKOO_MAIL_RETRY_BASE_MS=200, RAIKOO_MAIL_PROBE_MAX_MS=400,
                  RAIKOO_MAIL_RETRY_MAX=2)
    try:
        first = Invitation(db)
        produce(topic, first.id, first.job())
        wait_until(lambda: mails_to(first.email, mdir), 60, "mail before the outage")
        sink.stop()
        sink = None
        invs = [Invitation(db) for _ in range(40)]
        for inv in invs:
            produce(topic, inv.id, inv.job())
        wait_until(lambda: all((d or ("",))[0] == "retrying" for d in deliveries(db, invs).values()), 60,
                   "every job held")
        # Let several probes fail: the held rows are claimed and held again at each.
        seen = set()
        wait_until(lambda: seen.add(query(db, "SELECT updated_at FROM mail_deliveries WHERE job_id = %s",
                                          (invs[0].job_id,))[0][0]) or len(seen) >= 4, 60, "four probes")
        for inv in invs:
            status, attempts, error = inv.delivery()
            # Held: retrying between probes, sending while a probe has it claimed; never an attempt counted.
            assert status in ("retrying", "sending") and attempts == 0, (status, attempts, error)
            assert "waiting for the SMTP server" in error, error
            assert inv.mail_state()[1] == "retrying"
        out = w.output()
        assert out.count("cannot be reached") == 1, out
        assert not any(inv.job_id in out for inv in invs), "a log line per job during the outage"
        assert len(out.splitlines()) < 15, out

        sink = Sink(port, mdir)
        wait_until(lambda: all(d[0] == "sent" for d in deliveries(db, invs).values()), 60, "all sent after")
        out = w.output()
        assert out.count("answers again") == 1 and out.count("cannot be reached") == 1, out
        for inv in invs:
            assert inv.delivery()[:2] == ("sent", 1)
            assert len(mails_to(inv.email, mdir)) == 1
        assert query(db, "SELECT count(*) FROM mail_deliveries WHERE status = 'failed'") == [(0,)]
        assert query(db, "SELECT count(*) FROM invitations WHERE mail_state = 'failed'") == [(0,)]
        assert w.stop() == 0
    finally:
        w.stop()
        if sink:
            sink.stop()


def test_a_live_mailer_keeps_its_jobs_and_a_killed_one_loses_them_when_the_lease_ends(tmp_path, pdb):
    """Item 10: the lease is short (mail.lease.ms) and renewed by a live mailer however long its SMTP session
    takes; kill -9 it mid-send and another mailer sends the job when the lease ends, not 10 minutes later."""
    url, db = pdb
    hang = FakeSmtp(hold=True)
    topic = create_topic("raikoo.test.mail")
    a = mailer_on(url, topic, RAIKOO_SMTP_PORT=hang.port, RAIKOO_SMTP_TIMEOUT_MS=120000, RAIKOO_MAIL_LEASE_MS=2000)
    port, mdir = free_port(), tmp_path / "mail"
    sink = Sink(port, mdir)
    b = None
    try:
        inv = Invitation(db)
        produce(topic, inv.id, inv.job())
        wait_until(lambda: (inv.delivery() or ("",))[0] == "sending", 60, "claimed by the hanging mailer")
        b = mailer_on(url, create_topic("raikoo.test.mail"), RAIKOO_SMTP_PORT=port, RAIKOO_MAIL_LEASE_MS=2000)
        wait_until(lambda: "mailer started" in b.output(), 60, "second mailer started")
        # Several leases go by while A hangs in its session: A renews, B leaves the job alone.
        seen = set()
        wait_until(lambda: seen.add(query(db, "SELECT next_attempt_at FROM mail_deliveries WHERE job_id = %s",
                                          (inv.job_id,))[0][0]) or len(seen) >= 5, 60, "five renewals")
        assert inv.delivery()[0] == "sending" and mails_to(inv.email, mdir) == []
        a.proc.kill()
        a.proc.wait()
        killed = time.time()
        wait_until(lambda: inv.delivery()[0] == "sent", 90, "taken over after the kill")
        print(f"\ntakeover after kill -9: {time.time() - killed:.1f} s (lease 2 s)")
        assert len(mails_to(inv.email, mdir)) == 1
        assert inv.mail_state()[1] == "sent"
        assert b.stop() == 0
    finally:
        a.stop()
        if b:
            b.stop()
        sink.stop()
        hang.stop()


def test_a_message_the_server_accepted_is_not_sent_again_after_its_mailer_is_killed(tmp_path, pdb):
    """Item 10: the mailer notes each message the moment the server accepts it; killed before it writes the
    session's outcomes, the mailer taking the jobs over records that one sent instead of sending it again
    (only the message whose acceptance it never heard of goes out twice)."""
    url, db = pdb
    gate = threading.Event()
    slow = FakeSmtp(data_gate=gate, gate_after=1)
    topic = create_topic("raikoo.test.mail", partitions=1)
    a = mailer_on(url, topic, RAIKOO_SMTP_PORT=slow.port, RAIKOO_MAIL_LEASE_MS=2000)
    port, mdir = free_port(), tmp_path / "mail"
    sink = Sink(port, mdir)
    b = None
    try:
        first, second = Invitation(db), Invitation(db)
        for inv in (first, second):
            produce(topic, inv.id, inv.job())
        wait_until(lambda: slow.messages == 2, 60, "both messages in one session, the second unanswered")
        wait_until(lambda: query(db, "SELECT accepted_at IS NOT NULL FROM mail_deliveries WHERE job_id = %s",
                                 (first.job_id,)) == [(True,)], 30, "the first noted as accepted")
        assert first.delivery()[0] == "sending"  # the session's outcomes are not written yet
        a.proc.kill()
        a.proc.wait()
        b = mailer_on(url, create_topic("raikoo.test.mail"), RAIKOO_SMTP_PORT=port)
        wait_until(lambda: all(i.delivery()[0] == "sent" for i in (first, second)), 90, "taken over")
        assert mails_to(first.email, mdir) == []  # not sent again
        assert len(mails_to(second.email, mdir)) == 1
        assert first.mail_state()[1] == "sent"
        assert b.stop() == 0
    finally:
        gate.set()
        a.stop()
        if b:
            b.stop()
        sink.stop()
        slow.stop()


def test_an_outcome_is_recorded_once_the_database_is_back_not_abandoned(tmp_path, pdb):
    """Item 10: the connection goes while the message is being accepted by the server; the mailer waits for
    PostgreSQL and records `sent`, instead of leaving the row `sending` to be sent again at lease end."""
    url, db = pdb
    gate = threading.Event()
    slow = FakeSmtp(data_gate=gate)
    topic = create_topic("raikoo.test.mail")
    w = mailer_on(url, topic, RAIKOO_SMTP_PORT=slow.port)
    dbname = url.split("dbname=")[1].split()[0]
    try:
        inv = Invitation(db)
        produce(topic, inv.id, inv.job())
        assert slow.got_data.wait(60), "the message never reached the server"
        # PostgreSQL "goes away" for this database: no new sessions, the mailer's sessions ended.
        db.cursor().execute(f"ALTER DATABASE {dbname} CONNECTION LIMIT 0")
        db.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND application_name LIKE 'raikoo-mailer %'")
        gate.set()  # the server accepts the message now
        wait_until(lambda: "cannot record the outcome of 1 mail job(s)" in w.output(), 60, "recording failed")
        db.cursor().execute(f"ALTER DATABASE {dbname} CONNECTION LIMIT -1")
        wait_until(lambda: inv.delivery()[0] == "sent", 60, "recorded after the database came back")
        # The line comes once the commit has returned, a moment after the row is visible.
        wait_until(lambda: "recorded the outcome of 1 mail job(s) after" in w.output(), 30, "the line saying so")
        assert inv.delivery()[:2] == ("sent", 1) and inv.mail_state()[1] == "sent"
        assert slow.messages == 1
        assert w.stop() == 0
    finally:
        db.cursor().execute(f"ALTER DATABASE {dbname} CONNECTION LIMIT -1")
        gate.set()
        w.stop()
        slow.stop()


@pytest.mark.parametrize("code", [b"451 4.7.1", b"550 5.1.1"])
def test_a_reply_of_any_bytes_and_length_is_stored(tmp_path, pdb, code):
    """Item 15: invalid UTF-8 and a long text in the server's reply are stored cleaned and cut (never SQLSTATE
    22021); the job leaves `sending`."""
    url, db = pdb
    garbage = code + b" caf\xe9 \xff\xfe\xc3 " + b"\xe9t\xe9 " * 200 + b"end\r\n"
    fake = FakeSmtp(reply=lambda line: garbage if line.upper().startswith(b"RCPT") else None)
    topic = create_topic("raikoo.test.mail")
    w = mailer_on(url, topic, RAIKOO_SMTP_PORT=fake.port, RAIKOO_MAIL_RETRY_BASE_MS=60000)
    try:
        inv = Invitation(db)
        produce(topic, inv.id, inv.job())
        wait_until(lambda: (inv.delivery() or ("sending",))[0] != "sending", 60, "outcome recorded")
        status, attempts, error = inv.delivery()
        assert status == ("retrying" if code.startswith(b"4") else "failed") and attempts == 1
        assert code.decode() in error and "\ufffd" in error, error
        assert len(error.encode()) <= 400
        assert inv.mail_state()[2] == error
        assert "22021" not in w.output()
        assert w.stop() == 0
    finally:
        w.stop()
        fake.stop()


def test_the_outcome_never_waits_for_an_invitation_while_holding_another(tmp_path, pdb):
    """Item 13: a transaction holds invitation B (a command in the worker's batch); the mailer records A and
    B: it must not lock A and then wait for B (the command then asking for A is a deadlock)."""
    url, db = pdb
    topic = create_topic("raikoo.test.mail", partitions=1)
    port, mdir = free_port(), tmp_path / "mail"
    sink = Sink(port, mdir)
    w = mailer_on(url, topic, RAIKOO_SMTP_PORT=port)
    other = psycopg2.connect(url)
    try:
        a, b = sorted([Invitation(db), Invitation(db)], key=lambda i: i.id)
        cur = other.cursor()
        cur.execute("SELECT 1 FROM invitations WHERE id = %s FOR UPDATE", (b.id,))
        produce(topic, a.id, a.job())
        produce(topic, b.id, b.job())
        wait_until(lambda: all((i.delivery() or ("",))[0] == "sent" for i in (a, b)), 60, "both recorded")
        assert a.mail_state()[1] == "sent"
        cur.execute("UPDATE invitations SET failed_attempts = failed_attempts WHERE id = %s", (a.id,))  # no deadlock
        other.commit()
        wait_until(lambda: b.mail_state()[1] == "sent", 60, "B's state written once B is free")
        assert len(mails_to(a.email, mdir)) == 1 and len(mails_to(b.email, mdir)) == 1
        assert w.stop() == 0
    finally:
        other.close()
        w.stop()
        sink.stop()


def bad_jobs(good):
    """(name, job) pairs that break one rule of schemas/mail/InvitationEmail.schema.json each."""
    out = []

    def mutate(name, fn):
        j = copy.deepcopy(good)
        fn(j)
        out.append((name, j))

    d = lambda k, v: lambda j: j["data"].__setitem__(k, v)  # noqa: E731
    drop = lambda k: lambda j: j["data"].pop(k)  # noqa: E731
    mutate("expires_at with signs in its digits", d("expires_at", "2026-01-+1T-1:-5:-9Z"))
    mutate("expires_at with a space", d("expires_at", "2026-12-04 22:30:00Z"))
    mutate("expires_at month 13", d("expires_at", "2026-13-04T22:30:00Z"))
    mutate("empty org_name", d("org_name", ""))
    mutate("org_name a number", d("org_name", 5))
    for k in ("org_name", "kind", "email", "name", "inviter_name", "inviter_email", "grant_owner", "expires_at",
              "sealed_code"):
        mutate(f"missing {k}", drop(k))
    mutate("kind sideways", d("kind", "sideways"))
    mutate("grant_owner 0", d("grant_owner", 0))
    mutate("name null", d("name", None))
    mutate("email not normal", d("email", good["data"]["email"].replace("example.test", "Example.TEST")))
    mutate("email with spaces", d("email", " " + good["data"]["email"]))
    mutate("sealed_code short", d("sealed_code", "QUFB"))
    mutate("sealed_code not base64", d("sealed_code", "!" * 80))
    mutate("extra data key", d("extra", 1))
    mutate("extra envelope key", lambda j: j.__setitem__("extra", 1))
    mutate("wrong specversion", lambda j: j.__setitem__("specversion", "0.3"))
    mutate("wrong source", lambda j: j.__setitem__("source", "/elsewhere"))
    mutate("missing time", lambda j: j.pop("time"))
    mutate("bad time", lambda j: j.__setitem__("time", "yesterday"))
    mutate("wrong datacontenttype", lambda j: j.__setitem__("datacontenttype", "text/plain"))
    mutate("missing correlationid", lambda j: j.pop("correlationid"))
    mutate("bad actorid", lambda j: j.__setitem__("actorid", "not-a-uuid"))
    return out


def test_the_job_parser_rejects_every_job_the_schema_rejects(tmp_path, pdb):
    """Item 17: each bad job goes through python-jsonschema and the mailer's parser (on the real stack: a
    job the parser rejects ends `failed` as malformed, nothing sent); both must reject it. The good job
    passes both."""
    url, db = pdb
    validator = schemacheck.validator("mail/InvitationEmail.schema.json")
    topic = create_topic("raikoo.test.mail", partitions=1)
    port, mdir = free_port(), tmp_path / "mail"
    sink = Sink(port, mdir)
    w = mailer_on(url, topic, RAIKOO_SMTP_PORT=port)
    try:
        cases = []
        for name, _ in bad_jobs(Invitation(db).job()):
            inv = Invitation(db)
            job = dict(bad_jobs(inv.job()))[name]
            errors = list(validator.iter_errors(job))
            assert errors, f"the schema accepts {name}"
            produce(topic, inv.id, job)
            cases.append((name, inv))
        good = Invitation(db)
        assert not list(validator.iter_errors(good.job()))
        produce(topic, good.id, good.job())
        wait_until(lambda: mails_to(good.email, mdir), 60, "the good job sent")
        disagree = []
        for name, inv in cases:
            d = wait_until(lambda: (lambda r: r if r and r[0] != "sending" else None)(inv.delivery()), 60, name)
            if d[0] != "failed" or not d[2].startswith("malformed mail job"):
                disagree.append((name, d))
            assert mails_to(inv.email, mdir) == []
        assert not disagree, disagree
        assert w.stop() == 0
    finally:
        w.stop()
        sink.stop()


def test_long_names_make_folded_headers_that_decode_back(tmp_path, pdb):
    """Item 17: a long organization name (57 and 1,000 characters) and long invitee names: header lines
    at most 78 characters, encoded-words at most 75, and the decoded Subject and To as they were."""
    url, db = pdb
    topic = create_topic("raikoo.test.mail")
    port, mdir = free_port(), tmp_path / "mail"
    sink = Sink(port, mdir)
    w = mailer_on(url, topic, RAIKOO_SMTP_PORT=port)
    try:
        orgs = ["Interplanetary Logistics and Rocketry Consortium Limited", ("Word " * 200).strip(),
                "x" * 1000, "Société " * 30 + "☕"]
        names = ["Bartholomew " * 10 + "Q", "Bartholomew", "Zoë Ünïcode " * 8 + "山田太郎", "Q"]
        invs = [Invitation(db, name=n) for n in names]
        for inv, org in zip(invs, orgs):
            produce(topic, inv.id, inv.job(org_name=org))  # a job may carry more than the database allows
        for inv, org, name in zip(invs, orgs, names):
            msg = wait_until(lambda: mails_to(inv.email, mdir), 60, "e-mail")[0]
            raw = msg.raw.replace(b"\r\n", b"\n")
            head = raw.split(b"\n\n", 1)[0]
            for line in head.split(b"\n"):
                if line.startswith(b"X-") or line.startswith(b"Return-Path"):
                    continue  # added by the sink
                assert len(line) <= 78, line
            for word in head.replace(b"\n ", b" ").split():
                if word.startswith(b"=?"):
                    assert len(word) <= 75, word
            assert all(len(line) <= 998 for line in raw.split(b"\n"))
            assert msg["Subject"] == f"You're invited to join {' '.join(org.split())} on Raikoo"
            # Python's address parser puts a space between adjacent encoded-words of a phrase, where RFC 2047
            # says to ignore the whitespace between them (the words carry their spaces): compare word by word.
            assert msg["To"].addresses[0].display_name.split() == name.split()
            if name.isascii():
                assert msg["To"].addresses[0].display_name == name  # a folded quoted-string, exact
            assert code_in(text_part(msg), "Confirmation code") == shown_code(inv.code)
        assert w.stop() == 0
    finally:
        w.stop()
        sink.stop()
