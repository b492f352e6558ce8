"""Shared fixtures of the integration suite: the test stack's settings, the CLI, Kafka and PostgreSQL.

ops/test brings the stack up (ports and data of its own) and exports RAIKOO_* before pytest starts;
RAIKOO_BIN_DIR says which build (bin/ or bin-asan/) the tests run.
"""
import json
import os
import subprocess
import uuid

import psycopg2
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RAIKOO_BIN_DIR", os.path.join(ROOT, "bin"))


def need_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the suite through `make test` (ops/test)")
    return value


def run(args, input=None, env=None, timeout=60, check=False):
    """Runs one of our binaries; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    exe = args[0] if os.path.isabs(args[0]) else os.path.join(BIN, args[0])
    p = subprocess.run([exe] + list(args[1:]), input=input, capture_output=True, text=True,
                       env=full_env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def raikoo(*args, **kw):
    return run(["raikoo"] + list(args), **kw)


def raikoo_json(*args, **kw):
    """Runs `raikoo ... --wait --json` and returns (exit status, parsed result)."""
    p = raikoo(*args, "--wait", "--json", **kw)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        raise AssertionError(f"not JSON on stdout (exit {p.returncode}): {p.stdout!r}\nstderr: {p.stderr}")
    return p.returncode, doc


@pytest.fixture(scope="session")
def db_url():
    return need_env("RAIKOO_DB_URL")


@pytest.fixture(scope="session")
def bootstrap():
    return need_env("RAIKOO_KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture()
def db(db_url):
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    yield conn
    conn.close()


def unique_email(prefix="user"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.test"
