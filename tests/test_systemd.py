"""systemd (issue 12, item 3): the units of ops/systemd/ and the notification protocol of the workers.

The units are checked by systemd's own `systemd-analyze verify` in a throwaway root that holds the host's
system units, the units of ops/systemd/ and the build's binaries where ExecStart= expects them, so that
verify checks the real paths (and fails when a binary is missing or a directive is wrong: both shown here).

The protocol is checked against a real NOTIFY_SOCKET: an AF_UNIX datagram socket of the test's own, as
systemd's manager listens on. A real worker, started on the test stack with NOTIFY_SOCKET and WATCHDOG_USEC
set, must send READY=1 only once it is connected (PostgreSQL is held away behind a relay until the test
lets it through), WATCHDOG=1 again and again while it runs, and STOPPING=1 on SIGTERM before it exits 0.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, ROOT, WORKERS, Relay, Worker, pg_url_via, wait_log

UNIT_DIR = os.path.join(ROOT, "ops", "systemd")
TEMPLATES = {w: f"{w}@.service" for w in WORKERS}


def unit_lines(name):
    """The unit's (key, value) lines, in order, comments left out (keys may repeat)."""
    out = []
    with open(os.path.join(UNIT_DIR, name)) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")):
                key, _, value = line.partition("=")
                out.append((key.strip(), value.strip()))
    return out


@pytest.fixture(scope="module")
def root():
    """A root for systemd-analyze: the host's system units, ours in /etc, the binaries in /usr/local/bin."""
    d = tempfile.mkdtemp(prefix="raikoo-systemd-")
    shutil.copytree("/usr/lib/systemd/system", os.path.join(d, "usr/lib/systemd/system"), symlinks=True)
    os.makedirs(os.path.join(d, "usr/local/bin"))
    for w in WORKERS:
        shutil.copy2(os.path.join(BIN, w), os.path.join(d, "usr/local/bin", w))
    etc = os.path.join(d, "etc/systemd/system")
    os.makedirs(etc)
    for name in os.listdir(UNIT_DIR):
        if name.endswith((".service", ".target")):
            shutil.copy2(os.path.join(UNIT_DIR, name), etc)
    yield d
    shutil.rmtree(d)


def analyze(root, *args):
    return subprocess.run(["systemd-analyze", *args, f"--root={root}"], capture_output=True, text=True,
                          timeout=120)


def test_every_worker_has_a_template_unit_and_nothing_else_is_there():
    names = sorted(os.listdir(UNIT_DIR))
    assert names == sorted(list(TEMPLATES.values()) + ["raikoo.target", "raikoo.env.example",
                                                       "raikoo.sysusers.conf"]), names


@pytest.mark.parametrize("worker", WORKERS)
def test_the_unit_is_a_notify_template_with_watchdog_environment_file_and_hardening(worker):
    lines = unit_lines(TEMPLATES[worker])
    kv = {}
    for k, v in lines:
        kv.setdefault(k, []).append(v)
    one = {k: v[-1] for k, v in kv.items()}
    assert one["ExecStart"] == f"/usr/local/bin/{worker}"
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert re.fullmatch(r"\d+(s|min)", one["WatchdogSec"]), one["WatchdogSec"]
    assert one["EnvironmentFile"] == "/etc/raikoo/raikoo.env"
    assert "RAIKOO_WORKER_INSTANCE=%i" in kv["Environment"]
    assert one["User"] == "raikoo" and one["Group"] == "raikoo"
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("CapabilityBoundingSet", ""),
                       ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
                       ("MemoryDenyWriteExecute", "yes"), ("SystemCallArchitectures", "native")]:
        assert one.get(key) == value, (key, one.get(key))
    assert kv["SystemCallFilter"][0] == "@system-service", kv["SystemCallFilter"]
    assert one["WantedBy"] == "raikoo.target"


# The one line a unit may have that the others do not: the command worker's code pool lowers its thread to
# SCHED_IDLE (sched_setscheduler, otherwise refused with @resources).
OWN_LINES = {"raikoo-command-worker": ["SystemCallFilter=sched_setscheduler"]}


def test_the_units_are_identical_but_for_the_worker():
    """One template, four workers: a hardening change made to one unit and not the others is caught."""
    def norm(w):
        with open(os.path.join(UNIT_DIR, TEMPLATES[w])) as f:
            text = f.read()
        lines = [l for l in text.replace(w, "WORKER").splitlines() if not l.startswith(("#", "Description="))]
        for own in OWN_LINES.get(w, []):
            assert own in lines, (w, own)
            lines.remove(own)
        return lines
    first = norm(WORKERS[0])
    for w in WORKERS[1:]:
        assert norm(w) == first, w


@pytest.mark.parametrize("unit", [f"{w}@1.service" for w in WORKERS] + ["raikoo-mailer@eu-2.service",
                                                                         "raikoo.target"])
def test_systemd_analyze_verify_accepts_the_unit(root, unit):
    p = analyze(root, "verify", unit)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), (p.stdout, p.stderr)


def test_verify_fails_on_a_missing_binary_and_warns_on_a_wrong_directive(root):
    """The check above can fail: verify against a root without the binary, and a unit with a typo."""
    missing = os.path.join(root, "usr/local/bin/raikoo-mailer")
    os.rename(missing, missing + ".away")
    try:
        p = analyze(root, "verify", "raikoo-mailer@1.service")
        assert p.returncode != 0 and "/usr/local/bin/raikoo-mailer" in p.stderr, (p.returncode, p.stderr)
    finally:
        os.rename(missing + ".away", missing)
    etc = os.path.join(root, "etc/systemd/system")
    with open(os.path.join(UNIT_DIR, "raikoo-mailer@.service")) as f:
        text = f.read()
    with open(os.path.join(etc, "raikoo-typo@.service"), "w") as f:
        f.write(text.replace("Type=notify", "Type=notfy").replace("WatchdogSec=", "WatchdogSecs="))
    try:
        p = analyze(root, "verify", "raikoo-typo@1.service")
        assert "notfy" in p.stderr and "WatchdogSecs" in p.stderr, p.stderr
    finally:
        os.unlink(os.path.join(etc, "raikoo-typo@.service"))


def security_scores(root):
    scores = {}
    for w in WORKERS:
        p = analyze(root, "security", "--offline=yes", f"{w}@1.service")
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", p.stdout)
        assert m, (p.returncode, p.stdout[-2000:], p.stderr)
        scores[w] = (m.group(1), m.group(2))
    return scores


def test_security_exposure_is_low_and_docs_report_it(root):
    """systemd-analyze security's exposure (0 = locked down, 10 = exposed) of every unit: OK at most, and
    the figures docs/SYSTEMD.md gives are the ones measured."""
    scores = security_scores(root)
    with open(os.path.join(ROOT, "docs", "SYSTEMD.md")) as f:
        doc = f.read()
    for w, (score, verdict) in scores.items():
        assert float(score) <= 2.0, (w, score, verdict)
        assert f"| `{w}@.service` | {score} {verdict} |" in doc, (w, score, verdict)


def test_sysusers_and_environment_example():
    with open(os.path.join(UNIT_DIR, "raikoo.sysusers.conf")) as f:
        entries = [l.split() for l in f if l.strip() and not l.startswith("#")]
    assert entries and entries[0][:2] == ["u", "raikoo"], entries
    # The example's keys are real settings (raikoo config knows each variable).
    p = subprocess.run([os.path.join(BIN, "raikoo"), "config"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(UNIT_DIR, "raikoo.env.example")) as f:
        names = [l.split("=", 1)[0] for l in f if l.strip() and not l.startswith("#")]
    assert "RAIKOO_LOG_FORMAT" in names
    for n in names:
        assert n in p.stdout, n


class NotifySocket:
    """systemd's side of sd_notify: an AF_UNIX datagram socket; every datagram kept in order of arrival."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="raikoo-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def _recv(self, timeout):
        """Reads what arrives within timeout seconds (0: only what is queued already)."""
        self.sock.settimeout(timeout if timeout > 0 else 0.0)  # 0.0: non-blocking
        try:
            while True:
                data = self.sock.recv(4096)
                self.messages.append(dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l))
                self.sock.settimeout(0.0)  # then take the rest of what is queued, without waiting
        except (BlockingIOError, socket.timeout):
            pass

    def wait_for(self, pred, what, w, timeout=90):
        end = time.time() + timeout
        while not pred(self.messages):
            if w.proc.poll() is not None:
                self._recv(0)  # what it sent before it exited is queued: read all of it, then judge
                assert pred(self.messages), \
                    f"{w.name} exited {w.proc.returncode} before {what}; got {self.messages}:\n{w.output()[-3000:]}"
                break
            left = end - time.time()
            assert left > 0, f"no {what} within {timeout}s; got {self.messages}\n{w.output()[-3000:]}"
            self._recv(min(left, 0.3))
        return list(self.messages)

    def snapshot(self):
        self._recv(0)
        return list(self.messages)

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir)


def keys(messages, key):
    return [i for i, m in enumerate(messages) if key in m]


@pytest.mark.parametrize("worker", WORKERS)
def test_the_worker_speaks_the_notify_protocol(worker, workers):
    """READY=1 once connected (not while PostgreSQL is away), WATCHDOG=1 repeatedly, STOPPING=1 on
    SIGTERM, exit 0."""
    ns = NotifySocket()
    pg = Relay(int(os.environ["RAIKOO_PG_PORT"]))  # closed: PostgreSQL cannot be reached yet
    w = Worker(worker, env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "600000",
                            "RAIKOO_DB_URL": pg_url_via(pg.port)})
    try:
        wait_log(w, "PostgreSQL unavailable")
        before = ns.wait_for(lambda ms: any(m.get("STATUS") == "waiting for PostgreSQL" for m in ms),
                             "STATUS=waiting for PostgreSQL", w)
        assert not keys(before, "READY"), before  # not ready while it waits
        pg.start()
        msgs = ns.wait_for(lambda ms: keys(ms, "READY"), "READY=1", w)
        ready = keys(msgs, "READY")
        assert len(ready) == 1 and msgs[ready[0]]["READY"] == "1", msgs
        # Sent once connected: the worker logged both that PostgreSQL answers and that it started work.
        out = w.output()
        assert "PostgreSQL available again" in out, out
        # The watchdog keeps coming while the worker runs (WATCHDOG_USEC 0.6 s: about every 0.2 s).
        msgs = ns.wait_for(lambda ms: len([i for i in keys(ms, "WATCHDOG") if i > ready[0]]) >= 5,
                           "5 x WATCHDOG=1 after READY=1", w)
        assert all(msgs[i]["WATCHDOG"] == "1" for i in keys(msgs, "WATCHDOG")), msgs
        w.proc.send_signal(signal.SIGTERM)
        msgs = ns.wait_for(lambda ms: keys(ms, "STOPPING"), "STOPPING=1", w)
        rc = w.proc.wait(timeout=60)  # one signal only: a second one exits at once (status 143)
        assert rc == 0, w.output()
        msgs = ns.snapshot()
        stopping = keys(msgs, "STOPPING")
        assert len(stopping) == 1 and msgs[stopping[0]]["STOPPING"] == "1", msgs
        assert stopping[0] > ready[0], msgs
        assert not [i for i in keys(msgs, "WATCHDOG") if i > stopping[0]], msgs  # the loop has stopped
        assert "level=error" not in w.output(), w.output()
    finally:
        w.stop(signal.SIGKILL)
        pg.stop()
        ns.close()


def test_no_notify_socket_no_messages_and_no_harm(workers):
    """Without NOTIFY_SOCKET (ops/run, a test) the same binary runs as before: nothing to send to."""
    env = {"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "600000"}
    w = Worker("raikoo-expiry-worker", env=env)
    try:
        wait_log(w, "expiry worker started")
    finally:
        rc = w.stop()
    assert rc == 0, w.output()
