"""The suite's time limit for one test: a test that hangs ends the run and says where.

A test stuck where Python cannot interrupt it (inside librdkafka or libpq, waiting on a socket) would otherwise
hold `make test` until whatever runs it gives up (CI: 90 minutes) and print nothing about where it hung. It
happened twice, in two tests: a consumer's close() in a fixture's teardown waiting for good on a topic the test
had deleted (conftest.delete_topics now closes such consumers first; the second time, this watchdog said where
within its limit). Past the limit, a watchdog thread prints the test's name and every thread's Python stack
to the terminal, kills the processes the run started (workers, relays, whatever they started in turn) and
ends pytest with status 3; ops/test then stops the stack as after any failure.

The limit covers a test's setup, call and teardown (the first test's setup starts the session's workers, the
last one's teardown stops them). RAIKOO_TEST_TIMEOUT sets it in seconds; 0 turns the watchdog off (a debugger
session). conftest.py imports the hook; `pytest -p hangwatch` loads it on its own.
"""
import faulthandler
import os
import signal
import sys
import threading
import traceback

import pytest

DEFAULT_SECONDS = 900
EXIT_STATUS = 3


def limit_seconds():
    return float(os.environ.get("RAIKOO_TEST_TIMEOUT", DEFAULT_SECONDS))


def _descendants(root):
    """Every living process below root (pid), from /proc: children before their own children."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ")".
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _expired(item, seconds):
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.suspend_global_capture(in_=True)  # to the terminal, not into the test's captured output
    err = sys.stderr
    err.write(f"\n\nTIMEOUT: {item.nodeid} ran over {seconds:g} s (RAIKOO_TEST_TIMEOUT); the run ends here.\n")
    main = sys._current_frames().get(threading.main_thread().ident)
    if main is not None:
        err.write("Where the test is (the main thread, most recent call last):\n")
        err.write("".join(traceback.format_stack(main)))
    err.write("Every thread's stack (most recent call first):\n")
    err.flush()
    faulthandler.dump_traceback(file=err, all_threads=True)
    pids = _descendants(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    err.write(f"TIMEOUT: killed {len(pids)} process(es) the run had started; pytest exits {EXIT_STATUS}.\n")
    err.flush()
    os._exit(EXIT_STATUS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    seconds = limit_seconds()
    if seconds <= 0:
        yield
        return
    done = threading.Event()

    def watch():
        if not done.wait(seconds):
            _expired(item, seconds)

    threading.Thread(target=watch, name="hangwatch", daemon=True).start()
    try:
        yield
    finally:
        done.set()
