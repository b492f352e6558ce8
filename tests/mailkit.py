"""Helpers of the mail and expiry tests: codes sealed to the mailer's key (by tests/cryptokit.py), rows made
directly in PostgreSQL, mail jobs and commands produced to Kafka, messages read from a Maildir."""
import email
import email.parser
import email.policy
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg2
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import free_port, wait_until  # noqa: F401 (the mail tests take them from here too)
from cryptokit import seal_code, shown_code  # noqa: F401 (shown_code: the mail tests take it from here)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_code():
    return "".join(random.choice(CROCKFORD) for _ in range(12))


def seal(code, keys_dir=None, anon=False):
    """The code sealed to the mailer's public key, base64: what the command worker puts in a mail job (an
    ephemeral public key, a nonce, the code in crypto_box from that key to the mailer's); with anon,
    crypto_box_seal's form, which jobs written before carry."""
    keys_dir = keys_dir or os.environ["RAIKOO_KEYS_DIR"]
    with open(os.path.join(keys_dir, "mailer.pk"), "rb") as f:
        pk = f.read()
    return seal_code(code, pk, anon)


def query(db, sql, args=()):
    cur = db.cursor()
    cur.execute(sql, args)
    return cur.fetchall()


def rfc3339(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Invitation:
    """A pending invitation made directly in the database (inviter, organization, invitee), with the mail
    job the command worker would have queued for it."""

    def __init__(self, db, kind="existing", email=None, name="Bob Invitee", org_name="Acme",
                 inviter_name="Alice Owner", expires_in=timedelta(days=7)):
        self.db = db
        self.kind = kind
        self.email = email or f"bob-{uuid.uuid4().hex[:12]}@example.test"
        self.name = name
        self.org_name = org_name
        self.inviter_name = inviter_name
        self.inviter_email = f"alice-{uuid.uuid4().hex[:12]}@example.test"
        self.inviter = str(uuid.uuid4())
        self.org = str(uuid.uuid4())
        self.id = str(uuid.uuid4())
        self.job_id = str(uuid.uuid4())
        self.command_id = str(uuid.uuid4())
        self.code = new_code()
        self.expires_at = datetime.now(timezone.utc) + expires_in
        cur = db.cursor()
        cur.execute("INSERT INTO users (id, email, username, name) VALUES (%s, %s, %s, %s)",
                    (self.inviter, self.inviter_email, self.inviter_email, inviter_name))
        cur.execute("INSERT INTO organizations (id, name) VALUES (%s, %s)", (self.org, org_name))
        cur.execute("INSERT INTO org_members (org_id, user_id, is_owner) VALUES (%s, %s, true)",
                    (self.org, self.inviter))
        cur.execute(
            "INSERT INTO invitations (id, org_id, email, kind, code_hash, invited_by, created_at, expires_at,"
            " mail_job_id, mail_state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'queued')",
            (self.id, self.org, self.email, kind, psycopg2.Binary(os.urandom(32)), self.inviter,
             min(datetime.now(timezone.utc), self.expires_at - timedelta(hours=1)), self.expires_at, self.job_id))

    def job(self, job_id=None, anon_seal=False, **data_overrides):
        """The mail job CloudEvent (dict) for this invitation (anon_seal: its code in crypto_box_seal's form)."""
        job_id = job_id or self.job_id
        data = {"job_id": job_id, "invitation_id": self.id, "org_id": self.org, "org_name": self.org_name,
                "kind": self.kind, "email": self.email, "name": self.name, "inviter_name": self.inviter_name,
                "inviter_email": self.inviter_email, "grant_owner": False, "expires_at": rfc3339(self.expires_at),
                "sealed_code": seal(self.code, anon=anon_seal)}
        data.update(data_overrides)
        return {"specversion": "1.0", "id": job_id, "source": "/raikoo/command-worker",
                "type": "raikoo.mail.InvitationEmail.v1", "time": rfc3339(datetime.now(timezone.utc)),
                "datacontenttype": "application/json", "actorid": self.inviter, "correlationid": self.command_id,
                "data": data}

    def delivery(self, job_id=None):
        """(status, attempts, last_error) of the job's row in mail_deliveries, or None."""
        rows = query(self.db, "SELECT status, attempts, last_error FROM mail_deliveries WHERE job_id = %s",
                     (job_id or self.job_id,))
        return rows[0] if rows else None

    def mail_state(self):
        return query(self.db, "SELECT status, mail_state, mail_error FROM invitations WHERE id = %s", (self.id,))[0]


def produce(topic, key, value):
    p = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
    p.produce(topic, json.dumps(value).encode() if not isinstance(value, bytes) else value, key=key.encode())
    assert p.flush(30) == 0


def create_topic(prefix, partitions=2):
    name = f"{prefix}.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
    return name


def start_mailer(topic, **env):
    """A mailer of the test's own (conftest's Worker): its own mail topic and consumer group, so the session's
    mailer never competes for its jobs; env adds RAIKOO_* settings (values made strings)."""
    from conftest import Worker
    full = {"RAIKOO_TOPIC_MAIL": topic, "RAIKOO_GROUP_MAIL": "test-mailer-" + uuid.uuid4().hex[:8]}
    full.update({k: str(v) for k, v in env.items()})
    return Worker("raikoo-mailer", env=full)


def maildir():
    return os.path.join(os.environ["RAIKOO_VAR"], "mail")


# The envelope recipients of each stored message by path: a message reaches new/ whole (the sink's Maildir
# writes it under tmp/, then renames it) and never changes there, so each is parsed once, not at every poll
# (the session's Maildir holds thousands by the end of a run).
_recipients = {}


def mails_to(addr, mdir=None):
    """Every stored message whose envelope recipient is addr, parsed (email.message.EmailMessage), each with
    .raw holding the bytes as stored."""
    new = os.path.join(mdir or maildir(), "new")
    found = []
    for f in sorted(os.listdir(new)) if os.path.isdir(new) else []:
        path = os.path.join(new, f)
        rcpts = _recipients.get(path)
        if rcpts is None:
            with open(path, "rb") as fh:
                head = email.parser.BytesHeaderParser(policy=email.policy.default).parse(fh)
            rcpts = _recipients[path] = [a.strip().lower() for a in str(head.get("X-RcptTo", "")).split(",")]
        if addr.lower() in rcpts:
            with open(path, "rb") as fh:
                raw = fh.read()
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            msg.raw = raw
            found.append(msg)
    return found


def text_part(msg):
    return msg.get_body(preferencelist=("plain",)).get_content()


def html_part(msg):
    return msg.get_body(preferencelist=("html",)).get_content()


def code_in(text, label):
    for line in text.splitlines():
        if line.startswith(label + ": "):
            return line[len(label) + 2:].strip()
    return None


class Sink:
    """An SMTP sink of our own (ops/smtp-sink) on a port of its own, storing into a Maildir of its own."""

    def __init__(self, port, mdir, extra=()):
        self.port, self.mdir = port, str(mdir)
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "ops", "smtp-sink"), "--port",
                                      str(port), "--maildir", self.mdir] + list(extra),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._ready, 30, f"SMTP sink on port {port}")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"ops/smtp-sink exited {self.proc.returncode} (arguments or port in use?)")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def read_topic_range(topic, start, end):
    """Every message of topic between two offset maps {partition: offset} (end exclusive)."""
    c = Consumer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"],
                  "group.id": "range-" + uuid.uuid4().hex, "enable.auto.commit": False})
    parts = [TopicPartition(topic, p, start.get(p, 0)) for p, hi in end.items() if hi > start.get(p, 0)]
    out = []
    if parts:
        c.assign(parts)
        want = sum(end[p.partition] - p.offset for p in parts)
        deadline = time.time() + 60
        while len(out) < want and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            if m.offset() < end[m.partition()]:
                out.append(m)
    c.close()
    return out


def high_watermarks(topic):
    c = Consumer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"],
                  "group.id": "wm-" + uuid.uuid4().hex})
    md = c.list_topics(topic, timeout=10)
    marks = {}
    for p in md.topics[topic].partitions:
        marks[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    c.close()
    return marks


class ScriptedSmtp:
    """A loopback SMTP server of threads on a port the system picks, for a test to script: a subclass's
    serve(connection) speaks SMTP on each connection. stop() closes the server and cuts every session."""

    def __init__(self, backlog=16):
        self.stopping = False
        self.conns = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        raise NotImplementedError

    def stop(self):
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
