"""The suite's per-test time limit (tests/hangwatch.py), on a pytest run of its own: a test that hangs past
RAIKOO_TEST_TIMEOUT ends that run with status 3, its name and where it hung on the terminal, and the
processes it started killed; a test within the limit is left alone."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

HANGS = '''
import subprocess, time

def test_within_the_limit():
    time.sleep(0.2)

def test_hangs_here():
    child = subprocess.Popen(["sleep", "300"])
    with open("child.pid", "w") as f:
        f.write(str(child.pid))
    time.sleep(300)

def test_never_reached():
    pass
'''


def test_a_test_past_the_limit_ends_the_run_and_says_where(tmp_path):
    (tmp_path / "test_hangs.py").write_text(HANGS)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests"), RAIKOO_TEST_TIMEOUT="3")
    try:  # the sleeping test alone would take 300 s
        p = subprocess.run([sys.executable, "-m", "pytest", "-p", "hangwatch", "-p", "no:cacheprovider", "-v",
                            "test_hangs.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the watchdog did not end the run: {e.stdout!r} {e.stderr!r}")
    out = p.stdout + p.stderr
    assert p.returncode == 3, out
    assert "test_within_the_limit PASSED" in out, out
    assert "TIMEOUT: test_hangs.py::test_hangs_here ran over 3 s" in out, out
    assert "in test_hangs_here\n    time.sleep(300)" in out, out  # where it hung
    assert "test_never_reached" not in out, out
    pid = int((tmp_path / "child.pid").read_text())
    # Killed, and reaped by init once its parent (pytest) exited: no such process, or a zombie at most.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = None
    assert state in (None, "Z"), f"the test's child process {pid} still runs (state {state})"


def test_the_documented_limit_is_the_watchdogs():
    import re
    import hangwatch
    with open(os.path.join(ROOT, "docs", "CONFIGURATION.md")) as f:
        documented = re.search(r"^\| `RAIKOO_TEST_TIMEOUT` \| `(\d+)` \|", f.read(), re.M)
    assert documented and int(documented.group(1)) == hangwatch.DEFAULT_SECONDS
