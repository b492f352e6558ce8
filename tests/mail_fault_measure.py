"""Measures duplicate e-mails under faults (not a test; run on a stack brought up with ops/stack, after
`source ops/test-env`): N mail jobs, two mailers of a database of its own; MODE pg: PostgreSQL restarted
(immediate) twice mid-run; kill: one mailer kill -9'd mid-run; both; none. Usage: python3 tests/mail_fault_measure.py [N] [MODE]
"""
import collections
import os
import subprocess
import sys
import time
import uuid
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import psycopg2
from mailkit import Invitation, create_topic, produce, free_port
from confluent_kafka import Producer
import json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
MODE = sys.argv[2] if len(sys.argv) > 2 else "both"
url0 = os.environ["RAIKOO_DB_URL"]
name = "raikoo_measure_" + uuid.uuid4().hex[:6]
admin = psycopg2.connect(url0.replace("dbname=raikoo", "dbname=postgres").replace("user=raikoo", "user=postgres"))
admin.autocommit = True
admin.cursor().execute(f"CREATE DATABASE {name} OWNER raikoo")
url = url0.replace("dbname=raikoo", f"dbname={name}")
subprocess.run([f"{ROOT}/bin/raikoo", "migrate"], check=True, env=dict(os.environ, RAIKOO_DB_URL=url))
db = psycopg2.connect(url); db.autocommit = True
port = free_port(); mdir = os.path.join(os.environ["RAIKOO_VAR"], "measure", f"mail-{name}")
sink = subprocess.Popen(["/usr/bin/python3", f"{ROOT}/ops/smtp-sink", "--port", str(port), "--maildir", mdir],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
topic = create_topic("raikoo.measure.mail", partitions=4)
env = dict(os.environ, RAIKOO_DB_URL=url, RAIKOO_SMTP_PORT=str(port), RAIKOO_TOPIC_MAIL=topic,
           RAIKOO_GROUP_MAIL="measure-" + name, RAIKOO_MAIL_BATCH_MAX="20")
def mailer(i):
    return subprocess.Popen([f"{ROOT}/bin/raikoo-mailer"], env=env, stdout=open(os.path.join(os.environ["RAIKOO_VAR"], "log", f"{name}-mailer{i}.log"), "a"),
                            stderr=subprocess.STDOUT)
ms = [mailer(0), mailer(1)]
time.sleep(3)
invs = [Invitation(db) for _ in range(N)]
p = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 50})
for inv in invs:
    p.produce(topic, json.dumps(inv.job()).encode(), key=inv.id.encode())
p.flush(60)
t0 = time.time()
pgctl = subprocess.check_output("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1", shell=True, text=True).strip() + "/pg_ctl"
def sent():
    try:
        c = psycopg2.connect(url); cur = c.cursor()
        cur.execute("SELECT count(*) FROM mail_deliveries WHERE status = 'sent'"); n = cur.fetchone()[0]; c.close(); return n
    except Exception:
        return -1
events = []
def wait_sent(k):
    while sent() < k: time.sleep(0.2)
wait_sent(N // 5)
for r in range(2 if MODE in ("pg", "both") else 0):
    events.append((time.time() - t0, "pg restart -m immediate"))
    subprocess.run(["runuser", "-u", "postgres", "--", pgctl, "-D", f"{os.environ['RAIKOO_VAR']}/pg", "-m", "immediate",
                    "-w", "restart", "-l", f"{os.environ['RAIKOO_VAR']}/log/postgresql.log"], check=True,
                   stdout=subprocess.DEVNULL)
    wait_sent(N * (2 + r) // 5)
db = psycopg2.connect(url); db.autocommit = True
if MODE in ("kill", "both"):
    events.append((time.time() - t0, "kill -9 mailer 0"))
    ms[0].kill(); ms[0].wait(); ms[0] = mailer(2)
deadline = time.time() + 600
while sent() < N and time.time() < deadline:
    time.sleep(0.5)
elapsed = time.time() - t0
time.sleep(3)
counts = collections.Counter()
for f in os.listdir(os.path.join(mdir, "new")):
    with open(os.path.join(mdir, "new", f), "rb") as fh:
        for line in fh:
            if line.startswith(b"X-RcptTo:"):
                counts[line.split(b":", 1)[1].strip().lower()] += 1
                break
emails = {inv.email.lower().encode() for inv in invs}
dups = sum(c - 1 for e, c in counts.items() if e in emails and c > 1)
missing = sum(1 for e in emails if counts[e] == 0)
cur = db.cursor(); cur.execute("SELECT status, count(*) FROM mail_deliveries GROUP BY status"); st = cur.fetchall()
print(f"jobs {N}, sent rows {sent()}, statuses {st}, e-mails {sum(counts[e] for e in emails)}, duplicates {dups} "
      f"({100.0 * dups / N:.3f}%), missing {missing}, elapsed {elapsed:.1f} s, events {events}")
for m in ms:
    m.terminate(); m.wait()
sink.terminate()
db.close()
admin = psycopg2.connect(url0.replace("dbname=raikoo", "dbname=postgres").replace("user=raikoo", "user=postgres")); admin.autocommit = True
admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
