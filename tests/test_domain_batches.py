"""Batches that mix conflicting commands: the set path (lib/svc/domain_run.c) against the per-command path.

The cases under tests/domain-batch/<case>/ (same format as tests/domain/) put, in one batch, what the set
path cannot decide from its snapshot or must decide exactly as the per-command rules do: the same address
twice, an invitation removed and its address invited again, an hourly rate limit crossed mid-batch, an
unknown organization, refusals, duplicates, dead letters and other command types between runs.
raikoo-domain-runner applies each case three ways against a database of its own:
  - one command per transaction through the per-command path (--per-command): the reference;
  - the whole case as one batch, per-command path (--batch --per-command);
  - the whole case as one batch with the set path (--batch).
Each must give what expected.json states, and the two batch runs must be equal in every result, event,
mail job and row read afterwards (ids as symbols; times and the ids of commands without one left out). A
generated batch of a few hundred commands over few addresses and organizations (fixed seed) is compared
the same way. The rate limit is 4 invitations an hour for the cases, 25 for the generated batch.
"""
import copy
import json
import os
import random
import re

import pytest

from conftest import ROOT, domain_runner, fresh_database
from test_domain_cases import reduce

CASES_DIR = os.path.join(ROOT, "tests", "domain-batch")
CASES = sorted(d for d in os.listdir(CASES_DIR) if os.path.isfile(os.path.join(CASES_DIR, d, "expected.json")))
DB_NAME = "raikoo_domain_batches"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT")


@pytest.fixture(scope="module")
def batch_db():
    """A database of the test stack's PostgreSQL for these cases alone, made afresh and migrated."""
    return fresh_database(DB_NAME)


def run(db, dirs, *flags, rate=4):
    """The runner over dirs: {case name: what it printed}."""
    out = domain_runner(db, dirs, *flags, env={"RAIKOO_RATELIMIT_INVITATIONS_PER_HOUR": str(rate)})
    for o in out.values():
        assert "error" not in o, o
    return out


def comparable(outcome):
    """An outcome without what differs between two runs of the same commands: times, the ids the runner
    makes up for commands that state none, and the set path's own count."""
    def norm(v):
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items() if k not in ("command_id", "set_based", "case")}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, str) and TIME.match(v):
            return "<time>"
        return v
    return norm(outcome)


@pytest.fixture(scope="module")
def outcomes(batch_db):
    dirs = [os.path.join(CASES_DIR, c) for c in CASES]
    return {
        "reference": run(batch_db, dirs, "--per-command"),
        "batch": run(batch_db, dirs, "--batch", "--per-command"),
        "set": run(batch_db, dirs, "--batch"),
    }


@pytest.mark.parametrize("mode", ["reference", "batch", "set"])
@pytest.mark.parametrize("case", CASES)
def test_case(case, mode, outcomes):
    with open(os.path.join(CASES_DIR, case, "expected.json")) as f:
        expected = json.load(f)
    assert reduce(outcomes[mode][case], expected) == expected


@pytest.mark.parametrize("case", CASES)
def test_set_path_equals_per_command_path(case, outcomes):
    """Every result, event, mail job and row of the batch is what the per-command path gives."""
    assert comparable(outcomes["set"][case]) == comparable(outcomes["batch"][case])


@pytest.mark.parametrize("case", CASES)
def test_set_path_took_part(case, outcomes):
    """The set path decided some of each case's commands (else the comparison above proves nothing), and
    --per-command kept it out."""
    assert outcomes["set"][case]["set_based"] > 0
    assert outcomes["batch"][case]["set_based"] == 0


def test_comparison_can_fail(outcomes):
    """A changed code in one result makes the outcomes differ."""
    case = CASES[0]
    wrong = copy.deepcopy(outcomes["set"][case])
    wrong["results"][0]["code"] = "no_such_code"
    assert comparable(wrong) != comparable(outcomes["batch"][case])


def generated_case(root, seed):
    """A batch of InviteNewUser and AddExistingUser over a handful of addresses and two organizations, with
    RemoveInvitation of setup invitations, RemoveMember, refusals and repeated command ids among them."""
    rnd = random.Random(seed)
    people = [f"p{i}" for i in range(24)]
    setup = {
        "users": [{"as": "owner"}, {"as": "mgr"}, {"as": "plain"}, {"as": "old1"}, {"as": "old2"}, {"as": "old3"},
                  {"as": "old4"}, {"as": "ghostly", "activated": False, "enabled": False}],
        "orgs": [{"as": "acme"}, {"as": "beta"}],
        "members": [{"org": "acme", "user": "owner", "owner": True, "manage": True},
                    {"org": "beta", "user": "owner", "owner": True, "manage": True},
                    {"org": "acme", "user": "mgr", "manage": True}, {"org": "acme", "user": "plain"}],
        "invitations": [{"as": "inv1", "org": "acme", "user": "ghostly", "by": "owner", "kind": "new"},
                        {"as": "inv2", "org": "beta", "user": "old1", "by": "owner"}],
        "ghosts": people + ["nowhere", "again"],
    }
    commands = []
    for i in range(300):
        r = rnd.random()
        org = rnd.choice(["$acme", "$acme", "$beta"])
        if r < 0.75:
            who = rnd.choice(people[:12] if rnd.random() < 0.5 else people)
            email = f"${who}.email" if rnd.random() < 0.9 else rnd.choice(["$old1.email", "$ghostly.email"])
            actor = rnd.choice(["$owner"] * 8 + ["$mgr", "$plain"])
            c = {"type": "InviteNewUser", "actor": actor, "data": {"org_id": org, "email": email}}
            if rnd.random() < 0.1:
                c["data"]["owner"] = True
            if rnd.random() < 0.02:
                c["data"]["org_id"] = "$nowhere"
            if rnd.random() < 0.02:
                c["id"] = "$again"
            commands.append(c)
        elif r < 0.90:
            email = rnd.choice(["$old1.email", "$old2.email", "$old3.email", "$old4.email", "$ghostly.email",
                                "$mgr.email", "$owner.email", f"${rnd.choice(people)}.email"])
            commands.append({"type": "AddExistingUser", "actor": rnd.choice(["$owner"] * 4 + ["$mgr"]),
                             "data": {"org_id": org, "email": email}})
        elif r < 0.93:
            commands.append({"type": "RemoveInvitation", "actor": "$owner",
                             "data": {"org_id": org, "invitation_id": rnd.choice(["$inv1", "$inv2"])}})
        elif r < 0.95:
            commands.append({"type": "RemoveMember", "actor": "$owner",
                             "data": {"org_id": "$acme", "user_id": "$mgr"}})
        else:
            commands.append({"type": "InviteNewUser", "actor": "$owner", "data": {"org_id": org}})
    d = os.path.join(root, f"generated-{seed}")
    os.makedirs(d)
    rows = [{"sql": "SELECT o.name, i.email, i.status, i.kind, i.grant_owner FROM invitations i JOIN organizations"
                    " o ON o.id = i.org_id WHERE i.org_id IN ($acme, $beta) ORDER BY o.name, i.email, i.status",
             "rows": []},
            {"sql": "SELECT o.name, u.email, u.enabled, m.is_owner FROM org_members m JOIN users u ON u.id ="
                    " m.user_id JOIN organizations o ON o.id = m.org_id WHERE m.org_id IN ($acme, $beta)"
                    " ORDER BY o.name, u.email", "rows": []},
            {"sql": "SELECT o.name, sum(r.created)::int FROM invitation_rate r JOIN organizations o ON o.id ="
                    " r.org_id WHERE r.org_id IN ($acme, $beta) GROUP BY o.name ORDER BY o.name", "rows": []},
            # The expiry of the invitations the batch made (its transaction's, the latest created_at).
            {"sql": "SELECT DISTINCT to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                    " FROM invitations WHERE org_id IN ($acme, $beta) AND created_at ="
                    " (SELECT max(created_at) FROM invitations WHERE org_id IN ($acme, $beta))", "rows": []}]
    for name, v in (("setup", setup), ("commands", commands), ("expected", {"results": [], "rows": rows})):
        with open(os.path.join(d, f"{name}.json"), "w") as f:
            json.dump(v, f)
    return d


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_batch(seed, batch_db, tmp_path):
    d = generated_case(str(tmp_path), seed)
    name = os.path.basename(d)
    per = run(batch_db, [d], "--batch", "--per-command", rate=25)[name]
    got = run(batch_db, [d], "--batch", rate=25)[name]
    assert got["set_based"] > 0
    codes = {r["code"] for r in per["results"]}
    # The batch holds what it is meant to: acceptances and the conflicts the set path must leave alone.
    assert {None, "invitation_pending", "user_already_exists", "rate_limited", "user_not_found",
            "already_member"} <= codes, codes
    # Times differ between the two runs and are left out of the comparison: each run's events state the
    # expiry its rows hold.
    for outcome in (per, got):
        expiry = outcome["rows"][3]["rows"]
        assert len(expiry) == 1, expiry
        stated = {e["data"]["expires_at"] for r in outcome["results"] for e in r["events"]
                  if e["type"] == "InvitationCreated"}
        assert stated == {expiry[0][0]}
    a, b = comparable(got), comparable(per)
    for i, (x, y) in enumerate(zip(a["results"], b["results"])):
        assert x == y, f"command {i + 1}"
    assert a == b
