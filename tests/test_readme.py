"""README.md's "Try it" flow, run as it stands against the test stack, so the README cannot drift from what
the system does. Only the addresses are made unique (the flow is written for a fresh stack)."""
import os
import re
import subprocess
import uuid

from conftest import BIN, ROOT


def try_it_block():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## Try it", 1)[1]
    m = re.search(r"```sh\n(.*?)```", section, re.S)
    assert m, "README.md: no ```sh block under \"## Try it\""
    return m.group(1)


def test_the_readme_flow_runs_as_written(workers, db, tmp_path):
    script = try_it_block()
    tag = uuid.uuid4().hex[:10]
    for who in ("ann", "bob"):
        assert f"{who}@example.com" in script
        script = script.replace(f"{who}@example.com", f"{who}-{tag}@example.com")
    # The flow's relative paths: bin/ (the build under test), ops/, and var/ (the test stack's data).
    os.symlink(BIN, tmp_path / "bin")
    os.symlink(os.path.join(ROOT, "ops"), tmp_path / "ops")
    os.symlink(os.environ["RAIKOO_VAR"], tmp_path / "var")
    full = "set -euo pipefail\n" + script + '\necho "ORG=$ORG"\n'
    p = subprocess.run(["bash", "-c", full], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    org = re.search(r"^ORG=([0-9a-f-]{36})$", p.stdout, re.M).group(1)
    cur = db.cursor()
    cur.execute("select lower(u.email), i.status, m.user_id is not null and u.enabled"
                "  from invitations i join users u on u.id = i.user_id"
                "  left join org_members m on m.user_id = u.id and m.org_id = i.org_id"
                " where i.org_id = %s order by 1", (org,))
    rows = cur.fetchall()
    assert rows == [(f"ann-{tag}@example.com", "accepted", True), (f"bob-{tag}@example.com", "accepted", True)], rows
    assert "accepted" in p.stdout
