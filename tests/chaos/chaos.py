#!/usr/bin/python3
"""The fault-injection suite (`make chaos`, short version in tests/test_chaos.py).

Runs on a stack brought up by ops/stack (RAIKOO_VAR, RAIKOO_PG_PORT, RAIKOO_BROKER_PORT, RAIKOO_SMTP_PORT,
RAIKOO_DB_URL, RAIKOO_KAFKA_BOOTSTRAP_SERVERS, RAIKOO_KEYS_DIR exported, as ops/chaos and ops/test do). Each
run has a database and topics of its own (raikoo_chaos_<run>, chaos-<run>.*), so it disturbs nothing else on
the stack but the services it restarts. It starts the workers itself (RAIKOO_BIN_DIR or bin/) and restarts
them as a supervisor would, publishes mixed commands raw to Kafka (flows that mostly succeed, duplicates of
earlier ids, poison messages) while it injects the faults one after the other, waits for the system to
settle, then checks what the system did against what it was asked, and prints the figures. Exit status 0:
every check held; 1: a check failed (each failure says what, how many, and examples); 2: usage or setup.
"""
import argparse
import email
import email.policy
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg2
from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for cryptokit
from cryptokit import argon2id_hash, open_sealed_code, shown_code  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKERS = ["raikoo-command-worker", "raikoo-outbox-relay", "raikoo-mailer", "raikoo-expiry-worker"]
POISON_KINDS = ["not-json", "wrong-types", "huge-field", "long-field", "long-non-ascii-type",
                "long-non-ascii-key", "names-128-e", "blank-org-name"]
CODE_RE = re.compile(r"(?:One-time password|Confirmation code):\s*([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})")
INV_RE = re.compile(r"Invitation:\s*([0-9a-f-]{36})")


def need(name):
    v = os.environ.get(name)
    if not v:
        sys.exit(f"chaos: {name} is not set: run through ops/chaos (make chaos) or ops/test")
    return v


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the codes travel sealed to the mailer's key on the mail topic (tests/cryptokit.py) ---------------------
def unseal(sealed_b64, pk, sk):
    """The code of a mail job's sealed_code as the e-mail shows it (XXXX-XXXX-XXXX), or None if it does not
    open."""
    try:
        code = open_sealed_code(sealed_b64, sk, pk)
    except ValueError:
        return None
    return shown_code(code)


# --- the stack's services -----------------------------------------------------------------------------------
class Stack:
    def __init__(self):
        self.var = need("RAIKOO_VAR")
        pgbins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if not pgbins:
            sys.exit("chaos: no PostgreSQL under /usr/lib/postgresql: run ops/setup")
        self.pgbin = pgbins[-1]

    def as_pg(self, args):
        return (["runuser", "-u", "postgres", "--"] + args) if os.getuid() == 0 else args

    def pg_restart_immediate(self):
        subprocess.run(self.as_pg([f"{self.pgbin}/pg_ctl", "-D", f"{self.var}/pg", "-m", "immediate", "-w",
                                   "-t", "60", "-l", f"{self.var}/log/postgresql.log", "restart"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _pid(self, name):
        try:
            return int(open(f"{self.var}/run/{name}.pid").read().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _gone(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] in ("Z", "X")
        except OSError:
            return True

    def _kill(self, name, sig):
        pid = self._pid(name)
        if pid is None:
            raise RuntimeError(f"no {name} pid under {self.var}/run: is the stack up?")
        os.kill(pid, sig)
        for _ in range(300):
            if self._gone(pid):
                break
            time.sleep(0.1)
        os.unlink(f"{self.var}/run/{name}.pid")

    def broker_kill(self):
        self._kill("kafka", signal.SIGKILL)

    def smtp_stop(self):
        self._kill("smtp", signal.SIGTERM)

    def up(self):
        """ops/stack up starts whatever is not running (the broker, the SMTP server) and waits for it."""
        subprocess.run([os.path.join(ROOT, "ops", "stack"), "up"], check=True, stdout=subprocess.DEVNULL)


# --- workers, restarted as a supervisor would ---------------------------------------------------------------
class Proc:
    def __init__(self, sup, name, slot):
        self.sup, self.name, self.slot = sup, name, slot
        self.starts = 0
        self.asked = None   # the signal the suite sent, or None
        self.retired = False
        self.restart_at = None
        self.start()

    def start(self):
        self.starts += 1
        path = os.path.join(self.sup.logdir, f"chaos-{self.sup.run}-{self.name}-{self.slot}.{self.starts}.log")
        self.log_path = path
        self.log = open(path, "w")
        self.proc = subprocess.Popen([os.path.join(self.sup.bin, self.name)], env=self.sup.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.started_at = time.time()
        self.asked = None

    def label(self):
        return f"{self.name}#{self.slot}"


class Supervisor:
    def __init__(self, run, env, bindir, logdir):
        self.run, self.env, self.bin, self.logdir = run, env, bindir, logdir
        self.procs = []
        self.deaths = []      # (time, label, exit status, log path): died without the suite asking
        self.kills = []       # (time, label, signal)
        self.lock = threading.Lock()
        self.stopping = False
        self.t = threading.Thread(target=self._watch, daemon=True)

    def add(self, name):
        with self.lock:
            slot = sum(1 for p in self.procs if p.name == name) + 1
            p = Proc(self, name, slot)
            self.procs.append(p)
        return p

    def first(self, name):
        return next(p for p in self.procs if p.name == name and not p.retired)

    def kill(self, p, sig=signal.SIGKILL):
        with self.lock:
            p.asked = sig
            self.kills.append((time.time(), p.label(), sig))
            p.proc.send_signal(sig)

    def retire(self, p):
        """SIGTERM, wait; a worker must exit 0 when asked to stop."""
        with self.lock:
            p.retired = True
            p.asked = signal.SIGTERM
        p.proc.send_signal(signal.SIGTERM)
        try:
            rc = p.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            rc = p.proc.wait()
            self.deaths.append((time.time(), p.label(), "did not stop within 60 s of SIGTERM (killed)",
                                p.log_path))
            return rc
        if rc != 0:
            self.deaths.append((time.time(), p.label(), f"exit status {rc} after SIGTERM", p.log_path))
        return rc

    def _watch(self):
        crashes = {}
        while not self.stopping:
            now = time.time()
            with self.lock:
                for p in self.procs:
                    if p.retired:
                        continue
                    if p.restart_at is not None:
                        if now >= p.restart_at:
                            p.restart_at = None
                            p.start()
                        continue
                    if p.proc.poll() is None:
                        continue
                    rc = p.proc.returncode
                    asked = p.asked is not None and rc in (-p.asked, 128 + p.asked)
                    p.log.close()
                    if asked:
                        crashes[p.label()] = 0
                        p.restart_at = now
                        continue
                    how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
                    self.deaths.append((now, p.label(), how, p.log_path))
                    n = crashes.get(p.label(), 0)
                    crashes[p.label()] = n + 1
                    # A supervisor's restart: at once, then backing off up to 8 s while it keeps dying.
                    p.restart_at = now + (0 if n == 0 else min(8, 2 ** (n - 1)))
            time.sleep(0.1)

    def stop_all(self):
        self.stopping = True
        self.t.join(timeout=5)
        for p in list(self.procs):
            if not p.retired:
                self.retire(p)


# --- the run ------------------------------------------------------------------------------------------------
class Cmd:
    __slots__ = ("id", "type", "value", "key", "sent_at", "expect", "flow", "partition", "poison", "probe",
                 "delivered")

    def __init__(self, ctype, value, key, expect=None, poison=None, probe=False, cid=None, partition=None):
        self.id, self.type, self.value, self.key = cid, ctype, value, key
        self.expect, self.poison, self.probe, self.partition = expect, poison, probe, partition
        self.flow, self.sent_at, self.delivered = None, None, None


class Chaos:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.run = a.run or uuid.uuid4().hex[:8]
        self.stack = Stack()
        base_url = need("RAIKOO_DB_URL")
        self.dbname = f"raikoo_chaos_{self.run}"
        self.db_url = re.sub(r"dbname=\S+", f"dbname={self.dbname}", base_url)
        self.admin_url = re.sub(r"user=\S+", "user=postgres", base_url)
        self.bootstrap = need("RAIKOO_KAFKA_BOOTSTRAP_SERVERS")
        keys = need("RAIKOO_KEYS_DIR")
        self.pk = open(os.path.join(keys, "mailer.pk"), "rb").read()
        self.sk = open(os.path.join(keys, "mailer.sk"), "rb").read()
        self.maildir = os.path.join(self.stack.var, "mail", "new")
        p = f"chaos-{self.run}"
        self.topics = {"commands": f"{p}.commands", "events": f"{p}.events", "results": f"{p}.results",
                       "mail": f"{p}.mail", "dlq": f"{p}.commands.dlq"}
        self.env = dict(os.environ)
        self.env.update({"RAIKOO_DB_URL": self.db_url, "RAIKOO_TOPIC_COMMANDS": self.topics["commands"],
                         "RAIKOO_TOPIC_EVENTS": self.topics["events"],
                         "RAIKOO_TOPIC_RESULTS": self.topics["results"],
                         "RAIKOO_TOPIC_MAIL": self.topics["mail"], "RAIKOO_TOPIC_DLQ": self.topics["dlq"],
                         "RAIKOO_GROUP_COMMANDS": f"{p}-command-worker", "RAIKOO_GROUP_MAIL": f"{p}-mailer"})
        self.bin = os.environ.get("RAIKOO_BIN_DIR") or os.path.join(ROOT, "bin")
        self.lock = threading.RLock()
        self.scan_lock = threading.Lock()
        self.cmds = {}            # command id -> Cmd
        self.results = {}         # command id -> [result data]
        self.result_at = {}       # command id -> first arrival time
        self.jobs = {}            # job id -> (invitation id, code, partition, seen at)
        self.codes = {}           # invitation id -> [codes, in mail-job order]
        self.events = {}          # event id -> event (deduplicated)
        self.event_copies = 0
        self.dlq = []
        self.mails = {}           # file name -> (invitation id, code, mtime)
        self.mail_count = {}      # (invitation id, code) -> messages
        self.mail_first = {}      # (invitation id, code) -> earliest mtime
        self.not_delivered = []
        self.faults = []          # dicts: name, at, recovery, notes
        self.failures = []
        self.sent_total = 0
        self.probes = 0
        self.unanswered = []
        self.counts = {}
        self.dups = 0
        self.poison_sent = {}
        self.left_pending = []
        self.flows = []
        self.waiting_code = []
        self.ready = []
        self.faults_done = False
        self.hash = argon2id_hash("chaos passphrase")  # one for every account: the worker checks its form

    # -- setup --
    def setup(self):
        conn = psycopg2.connect(self.admin_url.replace("dbname=raikoo", "dbname=postgres"))
        conn.autocommit = True
        conn.cursor().execute(f"CREATE DATABASE {self.dbname} OWNER raikoo")
        conn.close()
        cli = os.path.join(self.bin, "raikoo")
        for args in (["migrate"], ["topics", "create"]):
            subprocess.run([cli] + args, env=self.env, check=True, stdout=subprocess.DEVNULL)
        self.admin = subprocess.run([cli, "bootstrap-admin", "--email", f"admin-{self.run}@chaos.example"],
                                    env=self.env, check=True, capture_output=True, text=True).stdout.strip()
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                                  "linger.ms": 5, "message.timeout.ms": 600000, "log_level": 0})
        self.consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"chaos-{self.run}-reader",
                                  "enable.auto.commit": False, "log_level": 0})
        parts = []
        md = self.consumer.list_topics(timeout=30)
        for k in ("results", "mail", "events", "dlq"):
            for pnum in md.topics[self.topics[k]].partitions:
                parts.append(TopicPartition(self.topics[k], pnum, 0))
        self.consumer.assign(parts)
        self.cmd_partitions = len(md.topics[self.topics["commands"]].partitions)
        self.mail_partitions = len(md.topics[self.topics["mail"]].partitions)
        self.sup = Supervisor(self.run, self.env, self.bin, os.path.join(self.stack.var, "log"))
        for w in WORKERS:
            self.sup.add(w)
        self.sup.t.start()
        self.db = None

    def q(self, sql, params=None, fetch=True):
        """One statement on the run's database, reconnecting (for up to a minute) after a restart."""
        end = time.time() + 60
        while True:
            try:
                if self.db is None or self.db.closed:
                    self.db = psycopg2.connect(self.db_url)
                    self.db.autocommit = True
                cur = self.db.cursor()
                cur.execute(sql, params)
                return cur.fetchall() if fetch else None
            except psycopg2.OperationalError:
                if self.db is not None:
                    self.db.close()
                if time.time() > end:
                    raise
                time.sleep(0.5)

    # -- publishing --
    def envelope(self, name, actor, data, cid=None, ctype=None):
        ev = {"specversion": "1.0", "id": cid or str(uuid.UUID(int=self.rng.getrandbits(128))),
              "source": "/chaos", "type": ctype or f"raikoo.command.{name}.v1", "time": "2026-11-29T00:00:00Z",
              "datacontenttype": "application/json", "data": data}
        if actor:
            ev["actorid"] = actor
        return ev

    def command(self, name, actor, data, key=None, expect=None, poison=None):
        ev = self.envelope(name, actor, data)
        if key is None:
            key = data.get("org_id") or data.get("owner_user_id") or data.get("invitation_id") \
                or (data.get("email") or "").lower() or ev["id"]
        return Cmd(name, json.dumps(ev).encode(), key, expect=expect, poison=poison, cid=ev["id"])

    def publish(self, c):
        def done(err, msg, c=c):
            if err is not None:
                c.delivered = False
                self.not_delivered.append((c.id, str(err)))
            else:
                c.delivered = True
                c.partition = msg.partition()
        c.sent_at = time.time()
        with self.lock:
            if c.id:
                self.cmds.setdefault(c.id, c)
            self.sent_total += 1
            self.counts[c.type] = self.counts.get(c.type, 0) + 1
        kw = {"key": c.key.encode() if isinstance(c.key, str) else c.key, "on_delivery": done}
        if c.partition is not None:
            kw["partition"] = c.partition
        while True:
            try:
                self.producer.produce(self.topics["commands"], c.value, **kw)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    # -- reading --
    def consume(self, seconds):
        end = time.time() + seconds
        while True:
            msgs = self.consumer.consume(500, max(0.0, min(0.05, end - time.time())))
            now = time.time()
            for m in msgs:
                if m.error():
                    continue
                t = m.topic()
                try:
                    v = json.loads(m.value())
                except ValueError:
                    v = None
                if t == self.topics["results"]:
                    d = v["data"]
                    cid = d["command_id"]
                    with self.lock:
                        first = cid not in self.results
                        self.results.setdefault(cid, []).append(d)
                        if first:
                            self.result_at[cid] = now
                            c = self.cmds.get(cid)
                            if c is not None and c.flow is not None:
                                self.ready.append((c.flow, d))
                elif t == self.topics["mail"]:
                    d = v["data"]
                    code = unseal(d["sealed_code"], self.pk, self.sk)
                    with self.lock:
                        if d["job_id"] not in self.jobs:
                            self.jobs[d["job_id"]] = (d["invitation_id"], code, m.partition(), now)
                            self.codes.setdefault(d["invitation_id"], []).append(code)
                elif t == self.topics["events"]:
                    with self.lock:
                        if v["id"] in self.events:
                            self.event_copies += 1
                        else:
                            self.events[v["id"]] = v
                else:
                    self.dlq.append((m.value(), dict(m.headers() or [])))
            self.producer.poll(0)
            if time.time() >= end:
                return

    def scan_mail(self):
        with self.scan_lock:
            self._scan_mail()

    def _scan_mail(self):
        try:
            names = os.listdir(self.maildir)
        except FileNotFoundError:
            return
        for n in names:
            if n in self.mails:
                continue
            path = os.path.join(self.maildir, n)
            try:
                st = os.stat(path)
                msg = email.message_from_binary_file(open(path, "rb"), policy=email.policy.default)
            except OSError:
                continue
            body = msg.get_body(preferencelist=("plain",))
            text = body.get_content() if body else ""
            inv, code = INV_RE.search(text), CODE_RE.search(text)
            entry = (inv.group(1), code.group(1), st.st_mtime) if inv and code else (None, None, st.st_mtime)
            with self.lock:
                self.mails[n] = entry
                if entry[0]:
                    k = entry[:2]
                    self.mail_count[k] = self.mail_count.get(k, 0) + 1
                    self.mail_first[k] = min(self.mail_first.get(k, entry[2]), entry[2])

    # -- flows: small stories of dependent commands that mostly succeed --
    def email(self, what):
        return f"{what}-{self.run}-{self.rng.getrandbits(48):012x}@chaos.example"

    def flow_new_user(self, org):
        r = self.rng
        em = self.email("new")
        name = r.choice(["Ann Lee", "Zoë Ærøskøbing", "李小龍", "O'Brien", ""])
        res = yield self.command("InviteNewUser", self.admin, {"org_id": org, "email": em, "name": name})
        if res["status"] != "accepted":
            return
        inv, user = res["invitation_id"], res["user_id"]
        nth = 1
        if r.random() < 0.04:
            # The never-activated member is removed: the address must stay invitable.
            res = yield self.command("RemoveMember", self.admin, {"org_id": org, "user_id": user})
            if res["status"] == "accepted":
                yield self.command("InviteNewUser", self.admin, {"org_id": org, "email": em}, expect={None},
                                   poison="reinvite-after-remove-member")
            return
        if r.random() < 0.2:
            res = yield self.command("ResendInvitation", self.admin, {"org_id": org, "invitation_id": inv})
            nth = 2 if res["status"] == "accepted" else 1
        if r.random() < 0.15:
            self.left_pending.append(inv)
            return
        code = yield ("code", inv, nth)
        if code is None:
            return
        if r.random() < 0.05:
            yield self.command("ActivateAccount", None, {"email": em, "code": "ZZZZ-ZZZZ-ZZZ0",
                                                        "password_hash": self.hash})
        res = yield self.command("ActivateAccount", None, {"email": em, "code": code, "password_hash": self.hash})
        if res["status"] == "accepted":
            yield from self.flow_member_tail(org, user)

    def flow_member_tail(self, org, user):
        r = self.rng
        if r.random() < 0.3:
            yield self.command("SetMemberRole", self.admin, {"org_id": org, "user_id": user, "owner": False,
                                                            "can_manage_users": True})
        if r.random() < 0.2:
            yield self.command("RemoveMember", self.admin, {"org_id": org, "user_id": user})

    def flow_existing_user(self, org):
        r = self.rng
        em = self.email("old")
        res = yield self.command("CreateUser", self.admin, {"email": em, "name": "Existing Person",
                                                           "password_hash": self.hash})
        if res["status"] != "accepted":
            return
        user = res["user_id"]
        res = yield self.command("AddExistingUser", self.admin, {"org_id": org, "email": em,
                                                                "owner": r.random() < 0.05})
        if res["status"] != "accepted":
            return
        inv = res["invitation_id"]
        if r.random() < 0.15:
            self.left_pending.append(inv)
            return
        code = yield ("code", inv, 1)
        if code is None:
            return
        res = yield self.command("AcceptInvitation", user, {"invitation_id": inv, "code": code})
        if res["status"] == "accepted":
            yield from self.flow_member_tail(org, user)

    def flow_cancelled(self, org):
        r = self.rng
        em = self.email("cancel")
        if r.random() < 0.5:
            res = yield self.command("InviteNewUser", self.admin, {"org_id": org, "email": em})
            again = ("InviteNewUser", {"org_id": org, "email": em})
        else:
            res = yield self.command("CreateUser", self.admin, {"email": em, "name": "C", "password_hash": self.hash})
            if res["status"] != "accepted":
                return
            res = yield self.command("AddExistingUser", self.admin, {"org_id": org, "email": em})
            again = ("AddExistingUser", {"org_id": org, "email": em})
        if res["status"] != "accepted":
            return
        if r.random() < 0.1:
            # Upper-case UUIDs are valid UUIDs: the same organization and invitation.
            yield self.command("RemoveInvitation", self.admin, {"org_id": org.upper(),
                                                               "invitation_id": res["invitation_id"].upper()},
                               expect={None}, poison="upper-case-uuids")
        else:
            yield self.command("RemoveInvitation", self.admin, {"org_id": org, "invitation_id": res["invitation_id"]})
        if r.random() < 0.5:
            yield self.command(again[0], self.admin, again[1])   # the address is free again

    def flow_new_org(self, org):
        em = self.email("owner")
        res = yield self.command("CreateUser", self.admin, {"email": em, "name": "Owner", "password_hash": self.hash})
        if res["status"] != "accepted":
            return
        owner = res["user_id"]
        res = yield self.command("CreateOrganization", self.admin, {"name": f"Org {self.rng.getrandbits(32)}",
                                                                   "owner_user_id": owner})
        if res["status"] != "accepted":
            return
        new_org = res["org_id"]
        with self.lock:
            self.orgs.append(new_org)
        res = yield self.command("InviteNewUser", owner, {"org_id": new_org, "email": self.email("by-owner"),
                                                          "owner": self.rng.random() < 0.3})
        if res["status"] == "accepted" and self.rng.random() < 0.3:
            # The only active owner steps down while the other owner has never activated: must be refused.
            yield self.command("SetMemberRole", owner, {"org_id": new_org, "user_id": owner, "owner": False,
                                                        "can_manage_users": True})

    def flow_rejections(self, org):
        r = self.rng
        choice = r.randrange(4)
        if choice == 0:
            yield self.command("AddExistingUser", self.admin, {"org_id": org, "email": self.email("nobody")},
                               expect={"user_not_found"})
        elif choice == 1:
            yield self.command("InviteNewUser", self.admin, {"org_id": str(uuid.UUID(int=r.getrandbits(128))),
                                                            "email": self.email("x")}, expect={"organization_not_found"})
        elif choice == 2:
            yield self.command("AcceptInvitation", self.admin, {"invitation_id": str(uuid.UUID(int=r.getrandbits(128))),
                                                               "code": "AAAA-AAAA-AAAA"}, expect={"invitation_not_found"})
        else:
            yield self.command("RemoveMember", self.admin, {"org_id": org,
                                                            "user_id": str(uuid.UUID(int=r.getrandbits(128)))},
                               expect={"not_member", "user_not_found"})

    def flow_names_128(self, org):
        e128 = "é" * 128
        res = yield self.command("CreateOrganization", self.admin, {"name": e128, "owner_user_id": self.admin},
                                 poison="names-128-e")
        if res["status"] == "accepted":
            org = res["org_id"]
        res = yield self.command("InviteNewUser", self.admin, {"org_id": org, "email": self.email("e128"),
                                                              "name": e128}, poison="names-128-e")
        if res["status"] == "accepted":
            yield self.command("ResendInvitation", self.admin, {"org_id": org, "invitation_id": res["invitation_id"]},
                               poison="names-128-e")
        em = self.email("e128u")
        res = yield self.command("CreateUser", self.admin, {"email": em, "name": e128, "password_hash": self.hash},
                                 poison="names-128-e")
        if res["status"] == "accepted":
            res = yield self.command("AddExistingUser", self.admin, {"org_id": org, "email": em}, poison="names-128-e")
            if res["status"] == "accepted":
                yield self.command("ResendInvitation", self.admin,
                                   {"org_id": org, "invitation_id": res["invitation_id"]}, poison="names-128-e")

    def poison(self, kind):
        """One poison message (not a flow). Returns the Cmd; expect 'dlq' or a set of result codes."""
        marker = uuid.UUID(int=self.rng.getrandbits(128)).hex
        org = self.rng.choice(self.orgs)
        if kind == "not-json":
            return Cmd("poison", b"\xff\xfe{not json " + marker.encode(), marker, expect="dlq", poison=kind,
                       cid="dlq:" + marker)
        if kind == "wrong-types":
            c = self.command("InviteNewUser", self.admin, {"org_id": 12345, "email": ["x@y.example"], "name": None},
                             key=marker, expect={"invalid_command"}, poison=kind)
            return c
        if kind == "huge-field":
            c = self.command("InviteNewUser", self.admin, {"org_id": org, "email": self.email("huge"),
                                                          "name": "x" * 100000}, expect="dlq", poison=kind)
            return c
        if kind == "long-field":
            return self.command("InviteNewUser", self.admin, {"org_id": org, "email": self.email("long"),
                                                             "name": "ü" * 5000}, expect={"invalid_command"},
                                poison=kind)
        if kind == "long-non-ascii-type":
            ctype = self.rng.choice(["a" * 79 + "é", "raikoo.command." + "a" * 79 + "é" + ".v1", "é" * 300])
            ev = self.envelope(None, self.admin, {"org_id": org}, ctype=ctype)
            return Cmd("poison", json.dumps(ev, ensure_ascii=False).encode(), org, poison=kind, cid=ev["id"],
                       expect={"unknown_command_type", "invalid_command"})
        if kind == "long-non-ascii-key":
            return self.command("InviteNewUser", self.admin, {"org_id": org, "email": self.email("key"),
                                                             "a" * 63 + "é" * 40: 1}, expect={"invalid_command"},
                                poison=kind)
        if kind == "blank-org-name":
            return self.command("CreateOrganization", self.admin, {"name": "   ", "owner_user_id": self.admin},
                                expect={"invalid_command"}, poison=kind)
        raise ValueError(kind)

    # -- the load: runs in the main thread --
    def start_flow(self, gen):
        self.advance(gen, None)

    def advance(self, gen, value):
        try:
            step = gen.send(value)
        except StopIteration:
            return
        if isinstance(step, tuple):
            self.waiting_code.append((gen, step[1], step[2], time.time()))
            return
        step.flow = gen
        self.publish(step)
        self.flows.append((gen, step))

    def load(self):
        a = self.a
        kinds = [k for k in POISON_KINDS if k not in a.exclude_poison]
        start = time.time()
        budget = 0.0
        sent_before = 0
        last = time.time()
        deadline = start + a.max_minutes * 60
        poison_i = 0
        n_flows_waiting = 0
        while True:
            self.consume(0.05)
            self.scan_mail() if self.rng.random() < 0.1 else None
            now = time.time()
            # Flows whose result came back.
            with self.lock:
                ready, self.ready = self.ready, []
            for gen, res in ready:
                self.advance(gen, res)
            # Flows waiting for a code (the mail job's).
            still = []
            for gen, inv, nth, since in self.waiting_code:
                with self.lock:
                    codes = self.codes.get(inv, [])
                if len(codes) >= nth:
                    self.advance(gen, codes[nth - 1])
                elif now - since > a.flow_timeout:
                    self.advance(gen, None)
                else:
                    still.append((gen, inv, nth, since))
            self.waiting_code = still
            # Forget flows stuck on a result (they are reported at the end as commands without a result).
            self.flows = [(g, c) for g, c in self.flows if c.id not in self.result_at
                          and now - c.sent_at < a.flow_timeout]
            n_flows_waiting = len(self.flows) + len(self.waiting_code)
            if self.faults_done and self.sent_total >= a.commands:
                break
            if now > deadline:
                self.failures.append(f"load: not finished within --max-minutes {a.max_minutes} "
                                     f"({self.sent_total} of {a.commands} commands sent)")
                break
            # --rate counts every command the load publishes (the steps of running flows too, not probes).
            budget = min(budget + (now - last) * a.rate, a.rate) - (self.sent_total - self.probes - sent_before)
            sent_before = self.sent_total - self.probes
            last = now
            while budget >= 1 and n_flows_waiting < a.concurrency:
                budget -= 1
                sent_before += 1
                x = self.rng.random()
                org = self.rng.choice(self.orgs)
                if x < 0.025 and self.cmds:
                    self.duplicate()
                    continue
                # Every kind of poison once early on (after the warm-up's first seconds), then 2 % of the mix.
                due = kinds and poison_i < len(kinds) and now - start > 3 + 2 * poison_i
                if due or (x < 0.045 and kinds):
                    kind = kinds[poison_i % len(kinds)]
                    poison_i += 1
                    self.poison_sent[kind] = self.poison_sent.get(kind, 0) + 1
                    if kind == "names-128-e":
                        self.start_flow(self.flow_names_128(org))
                    else:
                        self.publish(self.poison(kind))
                    continue
                f = (self.flow_new_user if x < 0.35 else self.flow_existing_user if x < 0.65
                     else self.flow_cancelled if x < 0.82 else self.flow_new_org if x < 0.88
                     else self.flow_rejections)
                self.start_flow(f(org))
                n_flows_waiting += 1

    def duplicate(self):
        with self.lock:
            pool = [c for c in list(self.cmds.values())[-2000:] if not c.poison and not c.probe]
        if not pool:
            return
        c = self.rng.choice(pool)
        d = Cmd(c.type, c.value, c.key, cid=None)
        d.type = "duplicate"
        self.dups += 1
        self.publish(d)

    # -- faults: run in a thread of their own --
    def probe_recovery(self, t0, cap):
        """Sends a probe (a command rejected at once) to every partition of the commands topic right after
        the fault; a partition's probe is answered when that partition is consumed again (it waits in the
        topic, or in the producer while the broker is down). Returns the seconds from t0 to the last
        partition's answer, or None at the cap."""
        ids = {}
        for p in range(self.cmd_partitions):
            c = self.command("RemoveMember", self.admin, {"org_id": str(uuid.uuid4()), "user_id": self.admin},
                             expect={"organization_not_found"})
            c.probe, c.partition, c.type = True, p, "probe"
            self.probes += 1
            self.publish(c)
            ids[p] = c.id
        end = t0 + cap
        while time.time() < end:
            time.sleep(0.5)
            with self.lock:
                got = [self.result_at.get(i) for i in ids.values()]
            if all(got):
                self.unanswered = []
                return max(got) - t0
        with self.lock:
            self.unanswered = [p for p, i in ids.items() if i not in self.result_at]
        return None

    def stall_culprits(self, parts):
        """The oldest command without a result on each stalled partition: the likely cause of the stall."""
        out = []
        with self.lock:
            for p in parts:
                waiting = [c for c in self.cmds.values() if c.partition == p and c.id not in self.result_at
                           and c.expect != "dlq" and not c.probe and c.sent_at]
                if waiting:
                    c = min(waiting, key=lambda c: c.sent_at)
                    out.append(f"partition {p}: {c.poison or c.type} {c.id} (sent {time.strftime('%H:%M:%S', time.localtime(c.sent_at))})")
                else:
                    out.append(f"partition {p}: only probes waiting")
            poison = {}
            for c in self.cmds.values():
                if c.poison and c.expect != "dlq" and c.id not in self.result_at and c.sent_at:
                    poison[c.poison] = min(poison.get(c.poison, c.sent_at), c.sent_at)
        if poison:
            out.append("poison without a result (first sent): " + ", ".join(
                f"{k} {time.strftime('%H:%M:%S', time.localtime(t))}" for k, t in sorted(poison.items(),
                                                                                      key=lambda kv: kv[1])))
        deaths = {}
        for t, label, how, path in list(self.sup.deaths):
            deaths.setdefault(f"{label} {how}", t)
        for pr in [pr for pr in self.sup.procs if pr.name == "raikoo-command-worker" and not pr.retired]:
            try:
                errs = [ln for ln in open(pr.log_path, errors="replace") if "level=error" in ln]
            except OSError:
                errs = []
            if errs:
                out.append(f"last error of {pr.label()} ({pr.log_path}): {errs[-1].strip()[:400]}")
        if deaths:
            out.append("unasked deaths (first): " + ", ".join(
                f"{k} {time.strftime('%H:%M:%S', time.localtime(t))}" for k, t in deaths.items()))
        return out

    def mail_recovery(self, t0, cap):
        """Seconds from t0 until every mail partition has delivered a message for a job first seen after t0
        (the first message stored, per partition); None at the cap."""
        end = t0 + cap
        while time.time() < end:
            time.sleep(1)
            self.scan_mail()
            first = {}
            with self.lock:
                for job_id, (inv, code, part, seen) in self.jobs.items():
                    if seen < t0:
                        continue
                    mt = self.mail_first.get((inv, code))
                    if mt is not None and mt >= t0:
                        first[part] = min(first.get(part, mt), mt)
            if len(first) == self.mail_partitions:
                return max(first.values()) - t0
        return None

    def expiry_recovery(self, t0, cap):
        with self.lock:
            victims = self.left_pending[-3:]
        if not victims:
            return None, "no pending invitation to expire"
        self.q("UPDATE invitations SET created_at = now() - interval '8 days', expires_at = now() - interval"
               " '1 second' WHERE id = ANY(%s::uuid[]) AND status = 'pending'", (victims,), fetch=False)
        self.expired_by_hand = getattr(self, "expired_by_hand", []) + victims
        end = t0 + cap
        while time.time() < end:
            if self.q("SELECT count(*) FROM invitations WHERE id = ANY(%s::uuid[]) AND status = 'pending'",
                      (victims,))[0][0] == 0:
                return time.time() - t0, f"{len(victims)} invitations expired by hand"
            time.sleep(0.5)
        return None, f"{len(victims)} invitations expired by hand"

    def wait_assigned(self, p, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if "assigned" in open(p.log_path, errors="replace").read():
                    return True
            except OSError:
                pass
            time.sleep(0.5)
        return False

    def fault(self, name, fn):
        log(f"fault: {name}")
        entry = {"name": name, "at": time.time()}
        try:
            fn(entry)
        except Exception as e:  # a fault the suite could not inject is a failure of its own
            entry["error"] = f"{type(e).__name__}: {e}"
            self.failures.append(f"fault {name}: could not inject: {entry['error']}")
        rec = entry.get("recovery")
        log(f"fault: {name}: recovery {'%.1f s' % rec if rec is not None else 'NOT within the cap'}"
            f"{'; ' + entry['notes'] if entry.get('notes') else ''}")
        self.faults.append(entry)
        time.sleep(self.a.settle)

    def run_faults(self):
        a, cap = self.a, self.a.recovery_cap
        try:
            time.sleep(a.warmup)

            def kill(name, mail=False):
                def f(e):
                    t0 = time.time()
                    self.sup.kill(self.sup.first(name))
                    if name == "raikoo-expiry-worker":
                        e["recovery"], e["notes"] = self.expiry_recovery(t0, cap)
                        if e["notes"].startswith("no pending"):
                            e["error"] = "not measured: " + e["notes"]
                    elif mail:
                        e["recovery"] = self.mail_recovery(t0, cap)
                        e["notes"] = "until every mail partition delivers again"
                    else:
                        e["recovery"] = self.probe_recovery(t0, cap)
                        e["notes"] = "until every commands partition answers again"
                return f

            def kill_in_group(name, mail):
                def f(e):
                    extra = self.sup.add(name)
                    self.wait_assigned(extra)
                    time.sleep(2)
                    t0 = time.time()
                    self.sup.kill(self.sup.first(name))
                    e["recovery"] = self.mail_recovery(t0, cap) if mail else self.probe_recovery(t0, cap)
                    e["notes"] = "two in the group, one killed"
                    self.sup.retire(extra)
                return f

            def pg(e):
                t0 = time.time()
                self.stack.pg_restart_immediate()
                back = time.time() - t0
                e["recovery"] = self.probe_recovery(t0, cap)
                e["notes"] = f"PostgreSQL back after {back:.1f} s (pg_ctl -m immediate restart)"

            def broker(e):
                t0 = time.time()
                self.stack.broker_kill()
                time.sleep(2)
                # A worker that starts while the broker is down must wait for it, not exit.
                self.sup.kill(self.sup.first("raikoo-command-worker"))
                time.sleep(max(0, a.broker_down - 2))
                self.stack.up()
                back = time.time()
                e["recovery"] = self.probe_recovery(t0, cap + (back - t0))
                e["notes"] = (f"broker down {back - t0:.1f} s (kill -9, command worker killed meanwhile);"
                              f" from its return: "
                              + (f"{t0 + e['recovery'] - back:.1f} s" if e["recovery"] is not None else "-"))

            def smtp(e):
                t0 = time.time()
                self.stack.smtp_stop()
                time.sleep(a.smtp_outage)
                self.stack.up()
                back = time.time()
                e["smtp_back"] = back
                e["recovery"] = self.mail_recovery_first(back, cap)
                e["notes"] = f"SMTP down {back - t0:.0f} s; recovery = first message stored after its return"

            plan = [("kill -9 command worker", kill("raikoo-command-worker")),
                    ("kill -9 outbox relay", kill("raikoo-outbox-relay")),
                    ("kill -9 mailer", kill("raikoo-mailer", mail=True)),
                    ("kill -9 expiry worker", kill("raikoo-expiry-worker")),
                    ("kill -9 one of two command workers", kill_in_group("raikoo-command-worker", False)),
                    ("kill -9 one of two mailers", kill_in_group("raikoo-mailer", True)),
                    ("PostgreSQL immediate restart", pg),
                    ("broker kill -9 and restart", broker),
                    (f"SMTP server stopped {a.smtp_outage:g} s", smtp)]
            for _ in range(a.rounds):
                for name, fn in plan:
                    if self.faults and self.faults[-1].get("recovery") is None and "error" not in self.faults[-1]:
                        self.failures.append(f"faults stopped before '{name}': no recovery from"
                                             f" '{self.faults[-1]['name']}' within {cap:g} s (partitions"
                                             f" {self.unanswered} unanswered; oldest unanswered command per"
                                             f" partition: {'; '.join(self.stall_culprits(self.unanswered))})")
                        return
                    if not a.faults or any(f in name for f in a.faults):
                        # The pipeline must flow before the fault, or the fault is blamed for an older stall.
                        if self.probe_recovery(time.time(), cap) is None:
                            self.failures.append(
                                f"the pipeline was stalled before '{name}' was injected: no answer within {cap:g} s"
                                f" on commands partitions {self.unanswered}; oldest unanswered command per"
                                f" partition: {'; '.join(self.stall_culprits(self.unanswered))}")
                            return
                    looping = self.crash_looping()
                    if looping:
                        self.failures.append(f"faults stopped before '{name}': {looping} keeps dying unasked"
                                             " (crash loop): the rest of the run would measure nothing")
                        return
                    if not a.faults or any(f in name for f in a.faults):
                        self.fault(name, fn)
        except Exception as e:
            self.failures.append(f"fault thread: {type(e).__name__}: {e}")
        finally:
            self.faults_done = True

    def crash_looping(self, times=10):
        n = {}
        for _, label, _, _ in list(self.sup.deaths):
            n[label] = n.get(label, 0) + 1
        return ", ".join(f"{k} ({v} deaths)" for k, v in n.items() if v >= times)

    def mail_recovery_first(self, t0, cap):
        end = t0 + cap
        while time.time() < end:
            time.sleep(0.5)
            self.scan_mail()
            with self.lock:
                if any(m[2] >= t0 for m in self.mails.values()):
                    return min(m[2] for m in self.mails.values() if m[2] >= t0) - t0
        return None

    # -- settle, then check --
    def expected_ids(self):
        with self.lock:
            return [c for c in self.cmds.values() if c.expect != "dlq" and c.delivered is not False]

    def pending_unmailed(self):
        out = []
        for inv, job, state in self.q("SELECT id::text, mail_job_id::text, mail_state FROM invitations"
                                      " WHERE status = 'pending'"):
            j = self.jobs.get(job)
            if j is None or (inv, j[1]) not in self.mail_count:
                out.append((inv, job, state))
        return out

    def drain(self):
        end = time.time() + self.a.drain
        log(f"settling: up to {self.a.drain:g} s for results, the outbox and mail")
        while time.time() < end:
            self.consume(1.0)
            self.scan_mail()
            missing = [c for c in self.expected_ids() if c.id not in self.results]
            outbox = self.q("SELECT count(*) FROM outbox")[0][0]
            if not missing and outbox == 0 and not self.pending_unmailed():
                break
        self.consume(3.0)   # stragglers: late duplicates of results and events
        self.scan_mail()

    def check(self):
        F = self.failures

        def ex(rows, n=5):
            return ", ".join(str(r) for r in rows[:n]) + (" ..." if len(rows) > n else "")

        # Results.
        exp = self.expected_ids()
        missing = [c for c in exp if c.id not in self.results]
        if missing:
            by = {}
            for c in missing:
                by[c.poison or c.type] = by.get(c.poison or c.type, 0) + 1
            F.append(f"commands without a result: {len(missing)} of {len(exp)} (by type: {by}); e.g. "
                     + ex([c.id for c in missing]))
        differ = []
        for cid, rs in self.results.items():
            if any(json.dumps(r, sort_keys=True) != json.dumps(rs[0], sort_keys=True) for r in rs[1:]):
                differ.append((cid, sorted({(r["status"], r["code"]) for r in rs}, key=str)))
        if differ:
            F.append(f"commands with two different results: {len(differ)}; e.g. {ex(differ)}")
        wrong = [(c.poison or c.type, c.id, self.results[c.id][0]["code"]) for c in exp
                 if isinstance(c.expect, set) and c.id in self.results
                 and self.results[c.id][0]["code"] not in c.expect]
        if wrong:
            by = {}
            for kind, cid, code in wrong:
                by.setdefault(f"{kind} -> {code}", []).append(cid)
            for k, ids in sorted(by.items()):
                F.append(f"results other than the one expected: {k}: {len(ids)}; e.g. {ex(ids, 3)}")
        poison_bad = [(c.poison, c.id, self.results[c.id][0]["code"]) for c in exp
                      if c.poison == "names-128-e" and c.id in self.results
                      and self.results[c.id][0]["status"] != "accepted"]
        if poison_bad:
            F.append(f"names of 128 × 'é' (valid: 128 characters) not accepted: {len(poison_bad)}; e.g. "
                     f"{ex(poison_bad)}")
        strangers = [cid for cid in self.results if cid not in self.cmds]
        if strangers:
            F.append(f"results for command ids never sent: {len(strangers)}; e.g. {ex(strangers)}")
        # Dead letters.
        dlq_expected = [c for c in self.cmds.values() if c.expect == "dlq" and c.delivered is not False]
        dlq_blob = [v for v, _ in self.dlq]
        lost = [c.id for c in dlq_expected if not any(c.id.split(":")[-1].encode() in v for v in dlq_blob)]
        if lost:
            F.append(f"messages that are not commands missing from the dead-letter topic: {len(lost)} of "
                     f"{len(dlq_expected)}; e.g. {ex(lost)}")
        # processed_commands against the results.
        processed = {cid: (st, res) for cid, st, res in
                     self.q("SELECT command_id::text, status, result FROM processed_commands")}
        no_row = [cid for cid in self.results if cid not in processed]
        if no_row:
            F.append(f"results without a processed_commands row: {len(no_row)}; e.g. {ex(no_row)}")
        mism = [cid for cid, rs in self.results.items() if cid in processed
                and (processed[cid][0] != rs[0]["status"]
                     or json.loads(processed[cid][1]).get("data") != rs[0])]
        if mism:
            F.append(f"results that differ from their processed_commands row: {len(mism)}; e.g. {ex(mism)}")
        unpublished = [cid for cid in processed if cid not in self.results]
        if unpublished:
            F.append(f"processed_commands rows whose result never reached the results topic: {len(unpublished)};"
                     f" e.g. {ex(unpublished)}")
        # The domain's invariants.
        q = {
            "two or more pending invitations for one organization and address":
                "SELECT org_id::text, lower(email), count(*) FROM invitations WHERE status = 'pending'"
                " GROUP BY 1, 2 HAVING count(*) > 1",
            "organizations without an active (enabled) owner":
                "SELECT o.id::text, o.name FROM organizations o WHERE NOT EXISTS (SELECT 1 FROM org_members m"
                " JOIN users u ON u.id = m.user_id WHERE m.org_id = o.id AND m.is_owner AND u.enabled)",
            "memberships of users that do not exist":
                "SELECT m.org_id::text, m.user_id::text FROM org_members m LEFT JOIN users u ON u.id = m.user_id"
                " WHERE u.id IS NULL",
            "memberships of never-activated accounts without a pending or expired invitation to that organization":
                "SELECT m.org_id::text, u.email FROM org_members m JOIN users u ON u.id = m.user_id"
                " WHERE NOT u.enabled AND NOT u.is_admin AND NOT EXISTS (SELECT 1 FROM invitations i"
                " WHERE i.org_id = m.org_id AND i.user_id = u.id AND i.kind = 'new'"
                " AND i.status IN ('pending', 'expired'))",
            "accepted invitations of new users whose account is not enabled":
                "SELECT i.id::text FROM invitations i JOIN users u ON u.id = i.user_id"
                " WHERE i.status = 'accepted' AND i.kind = 'new' AND NOT u.enabled",
            "outbox rows never published":
                "SELECT id, topic FROM outbox",
            "mail deliveries still `sending` (a lease nobody took over)":
                "SELECT job_id::text, invitation_id::text, attempts FROM mail_deliveries WHERE status = 'sending'",
            "pending invitations whose e-mail was marked failed":
                "SELECT id::text, mail_error FROM invitations WHERE status = 'pending' AND mail_state = 'failed'",
        }
        for what, sql in q.items():
            rows = self.q(sql)
            if rows:
                F.append(f"invariant: {what}: {len(rows)}; e.g. {ex(rows)}")
        # Mail.
        unmailed = self.pending_unmailed()
        if unmailed:
            states = {}
            for _, _, st in unmailed:
                states[st] = states.get(st, 0) + 1
            F.append(f"pending invitations never mailed (latest code not in {self.maildir}): {len(unmailed)}"
                     f" (mail_state: {states}); e.g. {ex(unmailed)}")
        mine = {r[0] for r in self.q("SELECT id::text FROM invitations")}
        total = sum(n for (inv, _), n in self.mail_count.items() if inv in mine)
        dup = sum(n - 1 for (inv, _), n in self.mail_count.items() if inv in mine and n > 1)
        self.mail_total, self.mail_dups = total, dup
        if total and dup / total >= 0.001:
            worst = sorted(((n, k) for k, n in self.mail_count.items() if k[0] in mine and n > 1), reverse=True)
            F.append(f"duplicate e-mails: {dup} of {total} messages ({100.0 * dup / total:.2f}% >= 0.1%);"
                     f" e.g. {ex([(k[0], n) for n, k in worst])}")
        # Events per invitation.
        per = {}
        for ev in self.events.values():
            d = ev.get("data") or {}
            inv = d.get("invitation_id")
            if inv:
                t = ev["type"].split(".")[2]
                per.setdefault(inv, {}).setdefault(t, 0)
                per[inv][t] += 1
        bad = {}
        for inv, status, resends, sent in self.q(
                "SELECT i.id::text, i.status, i.resend_count, (SELECT count(*) FROM mail_deliveries d"
                " WHERE d.invitation_id = i.id AND d.status = 'sent') FROM invitations i"):
            got = per.get(inv, {})
            want = {"InvitationCreated": 1, "InvitationResent": resends,
                    "InvitationAccepted": int(status == "accepted"), "InvitationRemoved": int(status == "removed"),
                    "InvitationExpired": int(status == "expired"), "InvitationEmailSent": sent}
            for t, n in want.items():
                g = got.get(t, 0)
                if g != n:
                    k = f"{t} {'missing' if g < n else 'doubled'}"
                    bad.setdefault(k, []).append((inv, status, f"{g} events, {n} expected"))
        for k, rows in sorted(bad.items()):
            F.append(f"events per invitation: {k}: {len(rows)} invitations; e.g. {ex(rows, 3)}")
        # Workers.
        deaths = self.sup.deaths
        if deaths:
            by = {}
            for _, label, how, _ in deaths:
                by.setdefault(f"{label} ({how})", 0)
                by[f"{label} ({how})"] += 1
            F.append(f"workers that died unasked: {len(deaths)} times: {by}; first logs: "
                     + ex(sorted({d[3] for d in deaths}), 4))
        if self.not_delivered:
            F.append(f"the suite's own producer could not deliver {len(self.not_delivered)} commands; e.g. "
                     f"{ex(self.not_delivered)}")
        for e in self.faults:
            if e.get("recovery") is None and "error" not in e:
                F.append(f"no recovery within {self.a.recovery_cap:g} s after: {e['name']}")
        self.processed, self.invitation_states = len(processed), None
        self.invitation_states = dict(self.q("SELECT status, count(*) FROM invitations GROUP BY 1 ORDER BY 1"))

    def report(self):
        print()
        print(f"== chaos run {self.run} (database {self.dbname}, topics chaos-{self.run}.*, seed {self.a.seed})")
        print(f"{'fault':<44} {'recovery':>10}  notes")
        for e in self.faults:
            rec = e.get("recovery")
            print(f"{e['name']:<44} {('%.1f s' % rec) if rec is not None else 'none':>10}  "
                  f"{e.get('error') or e.get('notes', '')}")
        smtp = [e for e in self.faults if "smtp_back" in e]
        for e in smtp:
            back = e["smtp_back"]
            outage_jobs = [(inv, code) for (inv, code, part, seen) in self.jobs.values() if e["at"] <= seen < back]
            done = [self.mail_first[k] for k in outage_jobs if k in self.mail_first]
            print(f"  SMTP backlog: {len(outage_jobs)} mail jobs arrived during the outage; {len(done)} mailed"
                  + (f", the last {max(done) - back:.1f} s after the server returned" if done else "")
                  + "; the others' invitations were decided first (code read from the job), so not sent")
        acc = sum(1 for rs in self.results.values() if rs[0]["status"] == "accepted")
        codes = {}
        for rs in self.results.values():
            if rs[0]["code"]:
                codes[rs[0]["code"]] = codes.get(rs[0]["code"], 0) + 1
        print(f"commands published: {self.sent_total} (by type: {dict(sorted(self.counts.items()))})")
        print(f"  duplicates of earlier ids: {self.dups}; poison: {dict(sorted(self.poison_sent.items()))}")
        print(f"results: {len(self.results)} command ids, {sum(len(r) for r in self.results.values())} messages;"
              f" accepted {acc}; rejected by code: {dict(sorted(codes.items()))}")
        extra = sum(len(r) - 1 for r in self.results.values())
        print(f"  result messages beyond one per command id: {extra} (duplicates of ids sent: {self.dups})")
        print(f"dead-letter messages: {len(self.dlq)}; events: {len(self.events)} (+{self.event_copies} copies"
              f" with a seen id); processed_commands rows: {self.processed}")
        print(f"invitations: {self.invitation_states}; e-mails: {self.mail_total} messages, {self.mail_dups}"
              f" duplicates")
        print(f"workers killed by the suite: {len(self.sup.kills)}; died unasked: {len(self.sup.deaths)}")
        if self.failures:
            print(f"FAILED: {len(self.failures)} checks")
            for f in self.failures:
                print(f"  - {f}")
        else:
            print("PASSED: every check held")
        sys.stdout.flush()

    def write_json(self):
        out = os.path.join(self.stack.var, "results")
        os.makedirs(out, exist_ok=True)
        doc = {"run": self.run, "seed": self.a.seed, "commands": self.sent_total, "counts": self.counts,
               "duplicates": self.dups, "poison": self.poison_sent, "results": len(self.results),
               "faults": [{k: v for k, v in e.items()} for e in self.faults], "failures": self.failures,
               "mail": {"messages": self.mail_total, "duplicates": self.mail_dups},
               "deaths": [list(d) for d in self.sup.deaths]}
        with open(os.path.join(out, f"chaos-{self.run}.json"), "w") as f:
            json.dump(doc, f, indent=1, default=str)

    def main(self):
        self.setup()
        log(f"run {self.run}: workers from {self.bin}, database {self.dbname}")
        try:
            self.orgs = []
            ids = []
            for i in range(max(5, self.a.commands // 200)):
                c = self.command("CreateOrganization", self.admin, {"name": f"Chaos {i}", "owner_user_id": self.admin})
                self.publish(c)
                ids.append(c.id)
            end = time.time() + 120
            while time.time() < end and not all(i in self.results for i in ids):
                self.consume(0.2)
            self.orgs = [self.results[i][0]["org_id"] for i in ids
                         if i in self.results and self.results[i][0]["status"] == "accepted"]
            if not self.orgs:
                self.failures.append("setup: no CreateOrganization accepted within 120 s: the pipeline does not run")
            else:
                t = threading.Thread(target=self.run_faults, daemon=True)
                t.start()
                self.load()
                t.join(timeout=self.a.max_minutes * 60)
                self.drain()
        finally:
            self.sup.stop_all()
        self.check()
        self.report()
        self.write_json()
        return 1 if self.failures else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=10000, help="at least this many commands (10000)")
    ap.add_argument("--smtp-outage", type=float, default=300, help="seconds the SMTP server stays down (300)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    ap.add_argument("--rate", type=float, default=None,
                    help="commands per second (default: enough to spread --commands over the faults)")
    ap.add_argument("--concurrency", type=int, default=200, help="flows in flight at most (200)")
    ap.add_argument("--broker-down", type=float, default=10, help="seconds the broker stays down (10)")
    ap.add_argument("--recovery-cap", type=float, default=180, help="longest wait for recovery per fault (180)")
    ap.add_argument("--settle", type=float, default=10, help="pause between faults (10)")
    ap.add_argument("--warmup", type=float, default=15, help="load before the first fault (15)")
    ap.add_argument("--drain", type=float, default=300,
                    help="longest wait at the end for results, the outbox and mail (300)")
    ap.add_argument("--flow-timeout", type=float, default=240, help="a flow step waits this long at most (240)")
    ap.add_argument("--rounds", type=int, default=1, help="times the list of faults is run (1)")
    ap.add_argument("--max-minutes", type=float, default=90, help="give up the load after this long (90)")
    ap.add_argument("--exclude-poison", action="append", default=[], choices=POISON_KINDS,
                    help="leave out a kind of poison message (repeatable), to measure the rest")
    ap.add_argument("--faults", action="append", default=[],
                    help="only the faults whose name contains this text (repeatable; default: all)")
    ap.add_argument("--run", help="run name (default: random)")
    a = ap.parse_args(argv)
    if a.seed is None:
        a.seed = int(time.time())
    if a.rate is None:
        a.rate = max(4.0, a.commands / (a.smtp_outage + 9 * (a.settle + 25) + a.warmup))
    return Chaos(a).main()


if __name__ == "__main__":
    sys.exit(main())
