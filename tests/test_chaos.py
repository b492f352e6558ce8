"""The short version of `make chaos` (tests/chaos/chaos.py): every fault once, a few hundred commands, on
the test stack (a database and topics of its own). It kills and restarts the test stack's PostgreSQL,
broker and SMTP server, so ops/test runs it in one pass only: that of the last build of RAIKOO_TEST_BUILDS
(bin-asan by default: the sanitizers watch the workers' reconnection paths); the other passes leave the file
out (--ignore), nothing is skipped."""
import os
import subprocess
import sys

from conftest import BIN, ROOT, need_env


def test_chaos_short_every_fault_once():
    need_env("RAIKOO_VAR")
    log_path = os.path.join(os.environ["RAIKOO_VAR"], "log", f"test-chaos-{os.getpid()}.log")
    args = [sys.executable, os.path.join(ROOT, "tests", "chaos", "chaos.py"), "--commands", "300",
            "--smtp-outage", "20", "--broker-down", "5", "--warmup", "5", "--settle", "3",
            "--recovery-cap", "90", "--drain", "120", "--flow-timeout", "90", "--max-minutes", "20",
            "--rate", "3", "--seed", "9"]
    with open(log_path, "w") as out:
        rc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, RAIKOO_BIN_DIR=BIN),
                            timeout=40 * 60).returncode
    text = open(log_path, errors="replace").read()
    report = text[text.rfind("== chaos run"):] if "== chaos run" in text else text[-6000:]
    assert rc == 0, f"chaos (exit {rc}), full output in {log_path}:\n{report}"
