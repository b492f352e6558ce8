"""The foundation is real: broker, database, migrations, constraints, topics, keys, clear errors."""
import os
import subprocess
import uuid

import psycopg2
import psycopg2.errors
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BIN, raikoo, unique_email


def test_a_message_produced_to_the_real_broker_is_consumed_back(bootstrap):
    topic = f"raikoo.test.roundtrip.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    payload = uuid.uuid4().hex.encode()
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, payload, key=b"k")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "roundtrip-" + topic,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    got = None
    for _ in range(100):
        m = c.poll(0.3)
        if m is not None and not m.error():
            got = m.value()
            break
    c.close()
    admin.delete_topics([topic])
    assert got == payload


def test_migrate_twice_in_a_row_is_harmless():
    first = raikoo("migrate", check=True)
    second = raikoo("migrate", check=True)
    assert "schema up to date" in first.stdout
    assert "0 migrations applied" in second.stdout


def test_migrate_from_two_processes_at_once_on_a_fresh_database(db_url):
    name = "raikoo_mig_" + uuid.uuid4().hex[:8]
    admin = psycopg2.connect(db_url.replace("dbname=raikoo", "dbname=postgres").replace("user=raikoo", "user=postgres"))
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name} OWNER raikoo")
    try:
        url = db_url.replace("dbname=raikoo", f"dbname={name}")
        env = dict(os.environ, RAIKOO_DB_URL=url)
        procs = [subprocess.Popen([os.path.join(BIN, "raikoo"), "migrate"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        applied = sorted(int(o[0].split()[1]) for o in outs)
        conn = psycopg2.connect(url)
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM schema_migrations")
        total = cur.fetchone()[0]
        conn.close()
        assert applied[0] == 0 and applied[1] == total > 0
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def make_user(cur, email):
    uid = str(uuid.uuid4())
    cur.execute("INSERT INTO users (id, email, username) VALUES (%s, %s, %s)", (uid, email, email))
    return uid


def make_org(cur, owner):
    oid = str(uuid.uuid4())
    cur.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Acme')", (oid,))
    cur.execute("INSERT INTO org_members (org_id, user_id, is_owner) VALUES (%s, %s, true)", (oid, owner))
    return oid


def invite(cur, org, email, by, status="pending"):
    cur.execute(
        "INSERT INTO invitations (id, org_id, email, kind, status, code_hash, invited_by, expires_at, decided_at)"
        " VALUES (%s, %s, %s, 'existing', %s, %s, %s, now() + interval '1 day',"
        "         CASE WHEN %s = 'pending' THEN NULL ELSE now() END)",
        (str(uuid.uuid4()), org, email, status, psycopg2.Binary(os.urandom(32)), by, status))


def test_the_database_refuses_a_second_pending_invitation_for_one_address(db):
    cur = db.cursor()
    owner = make_user(cur, unique_email("owner"))
    org = make_org(cur, owner)
    email = unique_email("bob")
    invite(cur, org, email, owner)
    with pytest.raises(psycopg2.errors.UniqueViolation):
        invite(cur, org, email.upper().replace("EXAMPLE.TEST", "example.test"), owner)
    # A decided invitation does not block a new pending one.
    invite(cur, org, unique_email("carol"), owner, status="removed")
    other = unique_email("dave")
    invite(cur, org, other, owner, status="expired")
    invite(cur, org, other, owner)


def test_the_database_refuses_the_same_email_in_another_case(db):
    cur = db.cursor()
    email = unique_email("Erin")
    make_user(cur, email)
    with pytest.raises(psycopg2.errors.UniqueViolation):
        make_user(cur, email.upper())
    # Exact matching: a suffix of an address is another address.
    make_user(cur, email[1:])


def test_topics_create_is_idempotent(bootstrap):
    raikoo("topics", "create", check=True)
    again = raikoo("topics", "create", check=True)
    assert "0 created, 5 already there" in again.stdout
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    for t, parts in (("raikoo.commands", 12), ("raikoo.events", 12), ("raikoo.results", 12),
                     ("raikoo.mail", 6), ("raikoo.commands.dlq", 3)):
        assert len(md.topics[t].partitions) == parts


def test_keygen_refuses_to_overwrite(tmp_path):
    d = tmp_path / "keys"
    first = raikoo("keygen", "--dir", str(d))
    assert first.returncode == 0, first.stderr
    before = {f: (d / f).read_bytes() for f in ("mailer.pk", "mailer.sk", "code.pepper")}
    for f in before:
        assert oct((d / f).stat().st_mode & 0o777) == "0o600"
    second = raikoo("keygen", "--dir", str(d))
    assert second.returncode != 0
    assert "refusing to overwrite" in second.stderr
    assert before == {f: (d / f).read_bytes() for f in before}


def test_unreachable_database_gives_a_clear_error():
    p = raikoo("migrate", env={"RAIKOO_DB_URL": "host=127.0.0.1 port=1 dbname=raikoo user=raikoo"})
    assert p.returncode == 3
    assert "cannot connect to PostgreSQL" in p.stderr and "port=1" in p.stderr


def test_unreachable_broker_gives_a_clear_error():
    p = raikoo("topics", "create", env={"RAIKOO_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert p.returncode == 3
    assert "cannot reach Kafka at 127.0.0.1:1" in p.stderr


def test_bad_config_file_names_file_and_line(tmp_path):
    f = tmp_path / "raikoo.conf"
    f.write_text("batch.max = 10\nbogus.key = 1\n")
    p = raikoo("migrate", "--config", str(f))
    assert p.returncode == 2
    assert f"{f}:2: unknown configuration key" in p.stderr


def test_bootstrap_admin_is_idempotent_and_case_insensitive(db):
    email = unique_email("Admin")
    a = raikoo("bootstrap-admin", "--email", email, check=True).stdout.strip()
    b = raikoo("bootstrap-admin", "--email", email.upper().replace("EXAMPLE.TEST", "example.test"),
               check=True).stdout.strip()
    assert a == b and uuid.UUID(a)
    cur = db.cursor()
    cur.execute("SELECT is_admin, enabled FROM users WHERE id = %s", (a,))
    assert cur.fetchone() == (True, True)


def test_help_is_available_on_every_operational_command():
    for cmd in ("migrate", "topics", "keygen", "bootstrap-admin"):
        p = raikoo(cmd, "--help")
        assert p.returncode == 0 and p.stdout.startswith(f"usage: raikoo {cmd}")


def test_c_unit_tests_pass():
    p = subprocess.run([os.path.join(BIN, "raikoo-unit-tests")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert " 0 failed" in p.stdout


def test_smtp_server_stores_a_message(tmp_path):
    import smtplib
    import time
    var = os.environ["RAIKOO_VAR"]
    marker = uuid.uuid4().hex
    with smtplib.SMTP("127.0.0.1", int(os.environ["RAIKOO_SMTP_PORT"]), timeout=10) as s:
        s.sendmail("a@example.test", ["b@example.test"], f"Subject: {marker}\r\n\r\nhello\r\n")
    newdir = os.path.join(var, "mail", "new")
    for _ in range(50):
        if any(marker in open(os.path.join(newdir, f), errors="replace").read() for f in os.listdir(newdir)):
            return
        time.sleep(0.1)
    pytest.fail("message not stored under var/mail/new")


# ---- passwords in connection strings (issue 9, item 8) ----

DB_SECRET = "Db-Secret-" + uuid.uuid4().hex[:10]
UNREACHABLE_URLS = [
    f"host=127.0.0.1 port=1 dbname=raikoo user=raikoo password={DB_SECRET} connect_timeout=5",
    f"host=127.0.0.1 port=1 dbname=raikoo user=raikoo password='{DB_SECRET} x' connect_timeout=5",
    f"postgresql://raikoo:{DB_SECRET}@127.0.0.1:1/raikoo?connect_timeout=5",
    f"postgresql://raikoo@127.0.0.1:1/raikoo?connect_timeout=5&password={DB_SECRET}",
    # libpq quotes the part it cannot parse: the password itself here.
    f"postgresql://raikoo:{DB_SECRET}%zz@127.0.0.1:1/raikoo",
]


@pytest.mark.parametrize("url", UNREACHABLE_URLS)
def test_the_database_password_is_masked_in_config_and_connection_errors(url):
    p = raikoo("config", env={"RAIKOO_DB_URL": url, "RAIKOO_SMTP_PASSWORD": DB_SECRET + "-smtp",
                              "RAIKOO_KAFKA_SASL_PASSWORD": DB_SECRET + "-sasl"})
    assert p.returncode == 0, p.stderr
    assert "kafka.sasl.password" in p.stdout
    line = next(l for l in p.stdout.splitlines() if l.strip().startswith("db.url "))
    assert DB_SECRET not in p.stdout + p.stderr and "***" in line
    for args in (["migrate"], ["members", "--org", str(uuid.uuid4())], ["bootstrap-admin", "--email", "a@x.io"]):
        p = raikoo(*args, env={"RAIKOO_DB_URL": url})
        assert p.returncode == 3, (args, p.stdout, p.stderr)
        assert "cannot connect to PostgreSQL" in p.stderr and "***" in p.stderr
        assert DB_SECRET not in p.stdout + p.stderr, (args, p.stderr)


@pytest.mark.parametrize("worker", ["raikoo-command-worker", "raikoo-outbox-relay", "raikoo-mailer",
                                    "raikoo-expiry-worker", "raikoo-audit-worker"])
def test_a_worker_never_logs_the_database_password(worker):
    """A worker that cannot reach the database (it gives up or waits, whichever it does) says so without the
    password; one that reaches it (the test cluster trusts local connections) never logs it either."""
    import time
    from conftest import Worker
    bad = Worker(worker, env={"RAIKOO_DB_URL": UNREACHABLE_URLS[2]})
    end = time.time() + 60
    while "PostgreSQL" not in bad.output() and bad.proc.poll() is None and time.time() < end:
        time.sleep(0.2)
    bad.stop()
    assert "PostgreSQL" in bad.output(), bad.output()
    good_url = os.environ["RAIKOO_DB_URL"] + f" password={DB_SECRET}"
    good = Worker(worker, env={"RAIKOO_DB_URL": good_url, "RAIKOO_LOG_LEVEL": "debug"})
    end = time.time() + 60
    while "level=" not in good.output() and good.proc.poll() is None and time.time() < end:
        time.sleep(0.2)
    rc = good.stop()
    assert "level=" in good.output()
    for w in (bad, good):
        assert DB_SECRET not in w.output(), w.output()
    assert rc == 0, good.output()


# ---- configuration mistakes stop every program with a clear error (issue 9, item 16) ----

PROGRAMS = [["raikoo", "config"], ["raikoo", "migrate"], ["raikoo-command-worker"], ["raikoo-outbox-relay"],
            ["raikoo-mailer"], ["raikoo-expiry-worker"], ["raikoo-audit-worker"], ["raikoo-web"]]


@pytest.mark.parametrize("prog", PROGRAMS, ids=lambda p: " ".join(p))
def test_a_stray_raikoo_kafka_variable_is_named_in_a_clear_error(prog):
    from conftest import run
    p = run(prog, env={"RAIKOO_KAFKA_LIBS": "/opt/kafka/libs"})
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "RAIKOO_KAFKA_LIBS: librdkafka refuses libs: " in p.stderr
    assert "RAIKOO_STACK_KAFKA_LIBS" in p.stderr
    assert "Assertion" not in p.stderr and "AddressSanitizer" not in p.stderr


@pytest.mark.parametrize("prog", PROGRAMS, ids=lambda p: " ".join(p))
def test_a_config_that_is_a_directory_or_missing_is_an_error(prog, tmp_path):
    from conftest import run
    p = run(prog + ["--config", str(tmp_path)])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert f"{tmp_path}: is a directory" in p.stderr
    p = run(prog, env={"RAIKOO_CONFIG": str(tmp_path / "missing.conf")})
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert f"{tmp_path / 'missing.conf'}: No such file or directory" in p.stderr
    conf = tmp_path / "raikoo.conf"
    conf.write_text("kafka.client.id = ok\nkafka.not.a.property = 1\n")
    p = run(prog + ["--config", str(conf)])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert f"{conf}:2: librdkafka refuses not.a.property" in p.stderr


# One exit-status table for every program (lib/core/exitstatus.h, docs/DESIGN.md "Exit statuses"): a
# configuration mistake found at start-up is 2 in every worker, never 1 or 3.
CONFIG_MISTAKES = [
    (["raikoo-command-worker"], {"RAIKOO_KEYS_DIR": "/nonexistent/raikoo-keys"}),
    (["raikoo-command-worker"], {"RAIKOO_BATCH_MAX": "0"}),
    (["raikoo-mailer"], {"RAIKOO_KEYS_DIR": "/nonexistent/raikoo-keys"}),
    (["raikoo-outbox-relay"], {"RAIKOO_RELAY_BATCH": "0"}),
    (["raikoo-expiry-worker"], {"RAIKOO_EXPIRY_BATCH": "0"}),
]


@pytest.mark.parametrize("prog,env", CONFIG_MISTAKES, ids=lambda v: " ".join(v) if isinstance(v, list) else
                         ",".join(v))
def test_a_configuration_mistake_at_start_up_exits_2_in_every_worker(prog, env):
    from conftest import run
    p = run(prog, env=env)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip(), "the mistake is named on stderr"
