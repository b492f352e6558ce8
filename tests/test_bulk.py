"""raikoo invite-bulk on the real stack: one command per CSV row, published at once and every result
collected (the producer library's raikoo_commands_run); bad rows named by line and not sent."""
import csv
import io
import json
import os
import pty
import subprocess
import uuid

import pytest

from conftest import BIN, accepted, argon2id_hash, raikoo, unique_email


@pytest.fixture()
def org(client, admin):
    return accepted(client.send("CreateOrganization", admin, {"name": "Bulk " + uuid.uuid4().hex[:6],
                                                             "owner_user_id": admin}))["org_id"]


def write(tmp_path, text, name="rows.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return str(path)


def rows_of(stdout):
    return list(csv.DictReader(io.StringIO(stdout)))


def test_a_mixed_file_invites_new_and_existing_and_names_bad_rows(client, admin, org, db, tmp_path):
    existing = unique_email("existing")
    uid = accepted(client.send("CreateUser", admin, {"email": existing, "name": "Ex",
                                                    "password_hash": argon2id_hash()}))["user_id"]
    new = unique_email("new")
    text = ("Email,Name,Owner,Manage_Users,Department\r\n"
            f'{new},"Lee, Ann ""the"" second",yes,1,sales\r\n'
            "not-an-address,Bad,,,\r\n"
            "\r\n"
            f"{existing.upper().replace('EXAMPLE.TEST', 'example.test')},Ex,no,,\r\n"
            f"{new.upper()},Dup,,,\r\n"
            f"{unique_email('owner')},O,maybe,,\r\n")
    p = raikoo("invite-bulk", "--org", org, "--csv", write(tmp_path, text), "--actor", admin)
    assert p.returncode == 1, p.stderr
    rows = rows_of(p.stdout)
    assert [r["row"] for r in rows] == ["2", "3", "5", "6", "7"]
    by = {r["row"]: r for r in rows}
    assert (by["2"]["command"], by["2"]["status"]) == ("InviteNewUser", "accepted")
    assert (by["3"]["status"], by["3"]["code"], by["3"]["command"]) == ("skipped", "invalid_email", "")
    assert (by["5"]["command"], by["5"]["status"]) == ("AddExistingUser", "accepted")
    assert (by["6"]["status"], by["6"]["code"]) == ("skipped", "duplicate_email")
    assert "line 2" in by["6"]["message"]
    assert (by["7"]["status"], by["7"]["code"]) == ("skipped", "invalid_value")
    # Bad rows are named on standard error with their line, and the ignored column warned.
    assert "line 3: invalid_email" in p.stderr and "line 6: duplicate_email" in p.stderr
    assert "line 7: invalid_value" in p.stderr
    assert 'column "department" ignored' in p.stderr
    assert "5 row(s): 2 accepted, 0 rejected, 3 skipped" in p.stderr
    cur = db.cursor()
    cur.execute("SELECT i.kind, i.grant_owner, u.name, i.grant_manage_users FROM invitations i"
                " JOIN users u ON u.id = i.user_id WHERE i.id = %s", (by["2"]["invitation_id"],))
    assert cur.fetchone() == ("new", True, 'Lee, Ann "the" second', True)  # manage_users: the role at invitation
    cur.execute("SELECT kind, grant_owner, user_id::text, grant_manage_users FROM invitations WHERE id = %s",
                (by["5"]["invitation_id"],))
    assert cur.fetchone() == ("existing", False, uid, False)
    # Nothing was sent for the bad rows.
    cur.execute("SELECT count(*) FROM invitations WHERE org_id = %s", (org,))
    assert cur.fetchone()[0] == 2


def test_all_accepted_exits_0_and_json_has_rows_and_summary(admin, org, tmp_path):
    emails = [unique_email("j") for _ in range(20)]
    text = "email\n" + "\n".join(emails) + "\n"
    p = raikoo("invite-bulk", "--org", org, "--csv", write(tmp_path, text), "--actor", admin, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["org_id"] == org and doc["mode"] == "auto"
    assert [r["email"] for r in doc["rows"]] == emails and [r["row"] for r in doc["rows"]] == list(range(2, 22))
    assert all(r["status"] == "accepted" and r["code"] is None and r["invitation_id"] for r in doc["rows"])
    s = doc["summary"]
    assert (s["rows"], s["accepted"], s["rejected"], s["skipped"], s["errors"]) == (20, 20, 0, 0, 0)
    # Not a terminal: plain progress lines, no carriage returns.
    assert "invite-bulk: 20/20 done" in p.stderr and "\r" not in p.stderr
    # The same file again: every row is now rejected (a pending invitation), exit status 1.
    p = raikoo("invite-bulk", "--org", org, "--csv", write(tmp_path, text), "--actor", admin, "--json")
    assert p.returncode == 1
    assert {r["code"] for r in json.loads(p.stdout)["rows"]} == {"invitation_pending"}


def test_ten_thousand_rows_get_one_result_each(admin, org, tmp_path):
    """10,000 commands published at once, then collected: every row one result (user_not_found, so that
    nothing is mailed and the organization's invitation rate limit is not in the way)."""
    emails = [f"nobody-{uuid.uuid4().hex[:10]}-{i}@bulk.test" for i in range(10000)]
    text = "email,name\n" + "".join(f"{e},N{i}\n" for i, e in enumerate(emails))
    p = raikoo("invite-bulk", "--org", org, "--csv", write(tmp_path, text), "--actor", admin, "--mode", "existing",
               timeout=600)
    assert p.returncode == 1, p.stderr[-2000:]
    rows = rows_of(p.stdout)
    assert len(rows) == 10000 and [r["email"] for r in rows] == emails
    assert {(r["command"], r["status"], r["code"]) for r in rows} == {("AddExistingUser", "rejected",
                                                                       "user_not_found")}
    assert "10000 row(s): 0 accepted, 10000 rejected, 0 skipped" in p.stderr


def test_a_terminal_gets_a_progress_bar(admin, org, tmp_path):
    text = "email\n" + "\n".join(unique_email("tty") for _ in range(5)) + "\n"
    master, slave = pty.openpty()
    try:
        p = subprocess.run([os.path.join(BIN, "raikoo"), "invite-bulk", "--org", org, "--csv",
                            write(tmp_path, text), "--actor", admin], stdout=subprocess.PIPE, stderr=slave,
                           timeout=120)
        os.close(slave)
        slave = None
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0, err
    text = err.decode()
    assert "\r[" in text and "5/5 done" in text and "ETA" in text and "/s" in text, text


def test_a_name_that_is_not_utf8_skips_its_row_instead_of_sending_it_without_the_name(admin, org, db, tmp_path):
    """Before, json_string() of a Latin-1 name gave NULL, the name was left out and the invitation sent."""
    latin1, good = unique_email("latin"), unique_email("good")
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"email,name\n{latin1},Ren\xe9e\n{good},Ann\n".encode("latin-1"))
    p = raikoo("invite-bulk", "--org", org, "--csv", str(path), "--actor", admin)
    assert p.returncode == 1, p.stdout + p.stderr
    by = {r["email"]: r for r in rows_of(p.stdout)}
    assert (by[latin1]["status"], by[latin1]["code"]) == ("skipped", "invalid_value"), by
    assert "not UTF-8" in by[latin1]["message"] and "line 2: invalid_value" in p.stderr
    assert by[good]["status"] == "accepted", by
    cur = db.cursor()
    cur.execute("SELECT count(*) FROM invitations WHERE lower(email) = lower(%s)", (latin1,))
    assert cur.fetchone()[0] == 0


@pytest.mark.parametrize("text, message", [
    ("name,owner\nA,yes\n", 'has no "email" column'),
    ('email,name\na@b.test,"unterminated\n', "line 2: a quoted field has no closing quote"),
    ("", "is empty"),
])
def test_a_file_that_cannot_be_read_as_rows_is_a_usage_error(admin, org, tmp_path, text, message):
    p = raikoo("invite-bulk", "--org", org, "--csv", write(tmp_path, text), "--actor", admin)
    assert p.returncode == 2 and message in p.stderr, p.stderr


def test_options_are_checked(admin, org, tmp_path):
    path = write(tmp_path, "email\na@b.test\n")
    assert raikoo("invite-bulk", "--org", org, "--csv", path).returncode == 2
    assert raikoo("invite-bulk", "--org", org, "--csv", path, "--actor", admin, "--mode", "x").returncode == 2
    assert raikoo("invite-bulk", "--csv", path, "--actor", admin).returncode == 2
    p = raikoo("invite-bulk", "--org", org, "--csv", str(tmp_path / "missing.csv"), "--actor", admin)
    assert p.returncode == 2 and "cannot open" in p.stderr


def test_auto_mode_needs_the_database_and_says_how_to_do_without(admin, org, tmp_path):
    path = write(tmp_path, "email\na@b.test\n")
    p = raikoo("invite-bulk", "--org", org, "--csv", path, "--actor", admin,
               env={"RAIKOO_DB_URL": "host=127.0.0.1 port=1 dbname=raikoo user=raikoo connect_timeout=2"})
    assert p.returncode == 3 and "--mode" in p.stderr and "new|existing" in p.stderr, p.stderr
