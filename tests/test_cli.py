"""The raikoo CLI and the producer library under it: usage errors, what a published command looks like on
raikoo.commands, infrastructure failures, the read side, and (with the workers) commands end to end."""
import json
import os
import uuid

import nacl.pwhash
import psycopg2
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import raikoo, raikoo_json, unique_email

ORG = "3f0c6a4e-8d1b-4c52-9a7e-0b1c2d3e4f50"
ACTOR = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
OTHER = "0d9c8b7a-6f5e-4d3c-9b2a-19f8e7d6c5b4"
# Nothing listens there: a command that gets as far as connecting fails with exit 3, not 2.
NO_BROKER = {"RAIKOO_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}

PUBLISHING = ["create-org", "create-user", "add-existing", "invite-new", "accept", "activate", "resend",
              "remove-invitation", "remove-member", "set-role"]


def commands_topic_message(tail_, command_id):
    """The message carrying command_id on raikoo.commands (fails the test when it never comes)."""
    return tail_.wait_for(lambda m: json.loads(m.value()).get("id") == command_id)


# ---- usage ----

@pytest.mark.parametrize("cmd", PUBLISHING + ["members", "invitations"])
def test_help_on_every_command_prints_its_usage_and_exits_0(cmd):
    p = raikoo(cmd, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: raikoo {cmd} ")
    assert "--json" in p.stdout


def test_top_level_help_lists_the_publishing_and_read_commands():
    p = raikoo("--help")
    assert p.returncode == 0
    for cmd in PUBLISHING + ["members", "invitations"]:
        assert f"  {cmd} " in p.stdout


@pytest.mark.parametrize("args, complaint", [
    (["invite-new", "--email", "a@x.io", "--actor", ACTOR], "--org UUID is required"),
    (["invite-new", "--org", ORG, "--actor", ACTOR], "--email E is required"),
    (["invite-new", "--org", ORG, "--email", "a@x.io"], "--actor UUID is required"),
    (["create-org", "--name", "Acme", "--actor", ACTOR], "--owner UUID is required"),
    (["accept", "--invitation", OTHER, "--code", "abcd-efgh-jkmn", "--actor", ACTOR],
     "--code is not taken on the command line"),
    (["accept", "--invitation", OTHER, "--actor", ACTOR, "--code=abcd-efgh-jkmn"],
     "--code is not taken on the command line"),
    (["activate", "--email", "a@x.io", "--code", "abcd-efgh-jkmn", "--password-stdin"],
     "--code is not taken on the command line"),
    (["create-user", "--email", "a@x.io", "--name", "A", "--actor", ACTOR], "--password-stdin is required"),
    (["set-role", "--org", ORG, "--actor", ACTOR, "--owner"], "--user UUID is required"),
    (["remove-member", "--org", ORG, "--user", OTHER, "--actor", ACTOR, "--bogus"], "unknown option --bogus"),
    (["activate", "--email", "a@x.io", "--password-stdin", "--actor", ACTOR], "unknown option --actor"),
    (["resend", "--org", ORG, "--invitation", OTHER, "--actor", ACTOR, "extra"], 'unexpected argument "extra"'),
    (["resend", "--org", ORG, "--invitation"], "option --invitation needs a value"),
    (["remove-invitation", "--org", "not-a-uuid", "--invitation", OTHER, "--actor", ACTOR],
     '--org: "not-a-uuid" is not a UUID'),
    (["remove-member", "--org", ORG, "--user", OTHER, "--actor", "12345"], '--actor: "12345" is not a UUID'),
    (["create-org", "--name", "Acme", "--owner", "x" * 36, "--actor", ACTOR], "--owner: "),
])
def test_bad_or_missing_options_are_usage_errors_caught_before_connecting(args, complaint):
    p = raikoo(*args, env=NO_BROKER, input="pw\n")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert complaint in p.stderr
    assert f"usage: raikoo {args[0]} " in p.stderr
    assert p.stdout == ""


# A byte that is not UTF-8 (0xE9, Latin-1 "é"), given on the command line (surrogateescape: the bytes as such).
NOT_UTF8 = "caf\udce9.test"


@pytest.mark.parametrize("args, complaint", [
    # Every list option (V_LIST_OR_NONE in publish.c): refused whole, not sent without the item.
    (["policy", "set", "--org", ORG, "--actor", ACTOR, "--allowed-domains", "example.test," + NOT_UTF8],
     "--allowed-domains: item 2 is not UTF-8 text"),
    (["policy", "set", "--org", ORG, "--actor", ACTOR, "--allowed-domains", NOT_UTF8 + ",example.test"],
     "--allowed-domains: item 1 is not UTF-8 text"),
    # And every other option that goes as text.
    (["create-org", "--name", NOT_UTF8, "--owner", OTHER, "--actor", ACTOR], "--name: not UTF-8 text"),
    (["invite-new", "--org", ORG, "--email", "a@x.io", "--actor", ACTOR, "--locale", NOT_UTF8],
     "--locale: not UTF-8 text"),
    (["policy", "set", "--org", ORG, "--actor", ACTOR, "--default-locale", NOT_UTF8], "--default-locale: not UTF-8"),
    (["policy", "set", "--org", ORG, "--actor", ACTOR, "--app-url", "https://" + NOT_UTF8],
     "--app-url: not UTF-8 text"),
    (["add-existing", "--org", ORG, "--email", "ann@" + NOT_UTF8, "--actor", ACTOR], "--email: not UTF-8 text"),
])
def test_an_option_that_is_not_utf8_is_refused_before_anything_is_sent(args, complaint):
    """Before, a non-UTF-8 item of --allowed-domains was dropped and the rest sent (exit 3 here, where no broker
    listens, or 0 with one): now a usage error (exit 2) naming the option, and nothing is sent."""
    p = raikoo(*args, env=NO_BROKER)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert complaint in p.stderr and "usage: raikoo" in p.stderr, p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("address", ["ann", "ann@", "ann at x.io", "Ann <ann@x.io>", "a@b@x.io", "ann@nodot"])
def test_an_invalid_email_is_refused_client_side(address):
    p = raikoo("add-existing", "--org", ORG, "--email", address, "--actor", ACTOR, env=NO_BROKER)
    assert p.returncode == 2, p.stderr
    assert "raikoo add-existing: --email: " in p.stderr


def test_a_name_the_worker_would_refuse_is_refused_with_the_workers_message():
    p = raikoo("create-org", "--name", "x" * 201, "--owner", OTHER, "--actor", ACTOR, env=NO_BROKER)
    assert p.returncode == 2
    assert "invalid command: data.name must be a string of 1 to 200 characters" in p.stderr


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_an_empty_password_on_stdin_is_refused(stdin):
    p = raikoo("create-user", "--email", "a@x.io", "--name", "A", "--password-stdin", "--actor", ACTOR,
               input=stdin, env=NO_BROKER)
    assert p.returncode == 2
    assert "--password-stdin" in p.stderr


@pytest.mark.parametrize("cmd", ["members", "invitations"])
def test_read_side_usage_errors_exit_2(cmd):
    assert raikoo(cmd).returncode == 2
    p = raikoo(cmd, "--org", "nope")
    assert p.returncode == 2 and "--org: not a UUID" in p.stderr
    p = raikoo(cmd, "--org", ORG, "--actor", "nope")
    assert p.returncode == 2 and "--actor: not a UUID" in p.stderr


def test_invitations_and_members_refuse_an_unknown_status():
    p = raikoo("invitations", "--org", ORG, "--status", "lost")
    assert p.returncode == 2 and "--status must be pending, accepted, expired or removed" in p.stderr
    p = raikoo("members", "--org", ORG, "--status", "pending")
    assert p.returncode == 2 and "--status must be active, pending_activation or disabled" in p.stderr


# ---- what lands on raikoo.commands ----

def test_a_published_command_lands_on_the_commands_topic_as_a_cloudevent_keyed_by_org(tail):
    t = tail("raikoo.commands")
    p = raikoo("invite-new", "--org", ORG, "--email", " Ann@Example.TEST ", "--name", "Ann", "--owner",
               "--actor", ACTOR)
    assert p.returncode == 0, p.stderr
    command_id = p.stdout.strip()
    assert str(uuid.UUID(command_id)) == command_id
    m = commands_topic_message(t, command_id)
    assert m.key() == ORG.encode()
    ev = json.loads(m.value())
    assert set(ev) == {"specversion", "id", "source", "type", "time", "datacontenttype", "actorid", "data"}
    assert ev["specversion"] == "1.0"
    assert ev["type"] == "raikoo.command.InviteNewUser.v1"
    assert ev["source"] == "/raikoo/cli"
    assert ev["datacontenttype"] == "application/json"
    assert ev["actorid"] == ACTOR
    assert ev["time"].endswith("Z") and ev["time"][10] == "T"
    assert ev["data"] == {"org_id": ORG, "email": "Ann@example.test", "name": "Ann", "owner": True}


@pytest.mark.parametrize("args, key, data", [
    (["create-org", "--name", "Acme", "--owner", OTHER, "--actor", ACTOR], OTHER,
     {"name": "Acme", "owner_user_id": OTHER}),
    (["accept", "--invitation", OTHER, "--actor", ACTOR], OTHER, {"invitation_id": OTHER, "code": "abcd-efgh-jkmn"}),
    (["add-existing", "--org", ORG, "--email", "b@x.io", "--actor", ACTOR], ORG,
     {"org_id": ORG, "email": "b@x.io", "owner": False}),
    (["resend", "--org", ORG, "--invitation", OTHER, "--actor", ACTOR], ORG, {"org_id": ORG, "invitation_id": OTHER}),
    (["remove-invitation", "--org", ORG, "--invitation", OTHER, "--actor", ACTOR], ORG,
     {"org_id": ORG, "invitation_id": OTHER}),
    (["remove-member", "--org", ORG, "--user", OTHER, "--actor", ACTOR], ORG, {"org_id": ORG, "user_id": OTHER}),
    (["set-role", "--org", ORG, "--user", OTHER, "--manage-users", "--actor", ACTOR], ORG,
     {"org_id": ORG, "user_id": OTHER, "owner": False, "can_manage_users": True}),
])
def test_each_command_carries_its_data_and_the_key_of_its_subject(tail, args, key, data):
    t = tail("raikoo.commands")
    p = raikoo(*args, input=" abcd-efgh-jkmn \n" if args[0] == "accept" else None)
    assert p.returncode == 0, p.stderr
    m = commands_topic_message(t, p.stdout.strip())
    assert m.key() == key.encode()
    ev = json.loads(m.value())
    assert ev["data"] == data
    assert ev["actorid"] == ACTOR


def test_create_user_sends_an_argon2id_hash_and_never_the_password(tail):
    t = tail("raikoo.commands")
    password = "Tr0ub4dor&3-" + uuid.uuid4().hex[:8]
    email = unique_email("Bob")
    p = raikoo("create-user", "--email", email, "--name", "Bob", "--password-stdin", "--actor", ACTOR,
               input=password + "\n")
    assert p.returncode == 0, p.stderr
    assert password not in p.stdout + p.stderr
    m = commands_topic_message(t, p.stdout.strip())
    assert password.encode() not in m.value()
    assert m.key() == email.lower().encode()
    ev = json.loads(m.value())
    assert ev["type"] == "raikoo.command.CreateUser.v1"
    h = ev["data"]["password_hash"]
    assert h.startswith("$argon2id$v=19$m=65536,t=2,p=1$")
    assert nacl.pwhash.verify(h.encode(), password.encode())
    assert set(ev["data"]) == {"email", "name", "password_hash"}


def test_activate_has_no_actor_and_is_keyed_by_the_lower_cased_address(tail):
    t = tail("raikoo.commands")
    email = unique_email("NewUser")
    p = raikoo("activate", "--email", email, input="ABCD-EFGH-JKMN\ns3cret pass\n")
    assert p.returncode == 0, p.stderr
    m = commands_topic_message(t, p.stdout.strip())
    assert m.key() == email.lower().encode()
    ev = json.loads(m.value())
    assert "actorid" not in ev
    assert ev["type"] == "raikoo.command.ActivateAccount.v1"
    assert ev["data"]["code"] == "ABCD-EFGH-JKMN"
    assert nacl.pwhash.verify(ev["data"]["password_hash"].encode(), b"s3cret pass")
    assert b"s3cret pass" not in m.value()


def test_json_without_wait_prints_the_command_id_as_one_object(tail):
    t = tail("raikoo.commands")
    p = raikoo("remove-member", "--org", ORG, "--user", OTHER, "--actor", ACTOR, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert list(doc) == ["command_id"]
    commands_topic_message(t, doc["command_id"])


# ---- infrastructure failures ----

def test_an_unreachable_broker_exits_3_with_a_clear_error():
    p = raikoo("remove-member", "--org", ORG, "--user", OTHER, "--actor", ACTOR, env=NO_BROKER)
    assert p.returncode == 3
    assert "cannot reach Kafka at 127.0.0.1:1" in p.stderr
    assert p.stdout == ""


@pytest.fixture()
def private_commands_topic(bootstrap):
    """A commands topic no worker reads, so that a command published to it never gets a result."""
    name = "raikoo.test.cli." + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])


def test_wait_without_a_worker_times_out_with_exit_3(private_commands_topic):
    env = {"RAIKOO_TOPIC_COMMANDS": private_commands_topic, "RAIKOO_RESULT_TIMEOUT_MS": "1000"}
    p = raikoo("resend", "--org", ORG, "--invitation", OTHER, "--actor", ACTOR, "--wait", env=env)
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "no result for command" in p.stderr and "within 1000 ms" in p.stderr
    code, doc = raikoo_json("resend", "--org", ORG, "--invitation", OTHER, "--actor", ACTOR, env=env)
    assert code == 3
    assert doc["status"] == "error" and doc["code"] == "timeout" and uuid.UUID(doc["command_id"])


def test_a_missing_commands_topic_is_an_infrastructure_error():
    p = raikoo("resend", "--org", ORG, "--invitation", OTHER, "--actor", ACTOR,
               env={"RAIKOO_TOPIC_COMMANDS": "raikoo.no.such.topic"})
    assert p.returncode == 3
    assert "raikoo.no.such.topic" in p.stderr and "raikoo topics create" in p.stderr


# ---- the read side ----

class Org:
    """An organization with every kind of member and invitation, inserted straight into PostgreSQL."""

    def __init__(self, db):
        self.emails = {}
        cur = db.cursor()
        self.cur = cur
        self.id = str(uuid.uuid4())
        cur.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Globex')", (self.id,))
        self.admin = self.user("admin", "Ada Admin", enabled=True, admin=True)
        self.owner = self.user("owner", "Olga Owner", enabled=True)
        self.manager = self.user("manager", "Manu Manager", enabled=True)
        self.plain = self.user("plain", "Pat Plain", enabled=True)
        self.pending = self.user("pending", "Nina Néw", enabled=False)
        self.outsider_owner = self.user("outsider", "Otto Outsider", enabled=True)
        self.member(self.owner, owner=True, since="2026-01-01 10:00:00+00")
        self.member(self.manager, manage=True, since="2026-01-02 10:00:00+00")
        self.member(self.plain, since="2026-01-03 10:00:00+00")
        self.member(self.pending, since="2026-01-04 10:00:00+00")
        other = str(uuid.uuid4())
        cur.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Elsewhere')", (other,))
        cur.execute("INSERT INTO org_members (org_id, user_id, is_owner) VALUES (%s, %s, true)",
                    (other, self.outsider_owner))
        # Invitations: a new user's pending one, an existing user's failed e-mail, an accepted one, one past
        # its expiry that the expiry worker has not marked yet, and one for an address with no account.
        self.inv_pending = self.invite(self.pending_email, self.pending, "new", "pending", "1 day",
                                       grant_owner=True, age="20 days")
        self.inv_failed = self.invite(unique_email("ext"), self.plain, "existing", "pending", "1 day",
                                      mail=("failed", "550 mailbox unavailable"), age="10 days")
        self.inv_accepted = self.invite(self.emails[self.manager], self.manager, "existing", "accepted", "1 day",
                                        mail=("sent", None), age="5 days")
        self.inv_stale = self.invite(unique_email("stale"), None, "existing", "pending", "-1 hour", age="30 days")

    def user(self, prefix, name, enabled, admin=False):
        uid = str(uuid.uuid4())
        email = unique_email(prefix)
        self.emails[uid] = email
        if prefix == "pending":
            self.pending_email = email
        self.cur.execute(
            "INSERT INTO users (id, email, username, name, password_hash, enabled, is_admin, activated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)",
            (uid, email, email, name, "$argon2id$v=19$m=65536,t=2,p=1$x$y" if enabled else None, enabled, admin,
             enabled))
        return uid

    def member(self, uid, owner=False, manage=False, since=None):
        self.cur.execute("INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users, created_at)"
                         " VALUES (%s, %s, %s, %s, %s)", (self.id, uid, owner, manage, since))

    def invite(self, email, uid, kind, status, ttl, grant_owner=False, mail=("queued", None), age="1 day"):
        """An invitation created age ago that expires ttl from now (a negative ttl: already past)."""
        iid = str(uuid.uuid4())
        self.cur.execute(
            "INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, status, code_hash, invited_by,"
            " created_at, expires_at, decided_at, mail_state, mail_error)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now() - %s::interval, now() + %s::interval,"
            "  CASE WHEN %s = 'pending' THEN NULL ELSE now() END, %s, %s)",
            (iid, self.id, email, uid, kind, grant_owner, status, psycopg2.Binary(os.urandom(32)), self.owner,
             age, ttl, status, mail[0], mail[1]))
        return iid


@pytest.fixture()
def org(db):
    return Org(db)


def test_members_json_lists_every_member_with_capabilities_and_state(org):
    p = raikoo("members", "--org", org.id, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["org_id"] == org.id and doc["org_name"] == "Globex"
    got = [(m["user_id"], m["name"], m["email"], m["owner"], m["can_manage_users"], m["enabled"], m["state"])
           for m in doc["members"]]
    assert got == [
        (org.owner, "Olga Owner", org.emails[org.owner], True, False, True, "active"),
        (org.manager, "Manu Manager", org.emails[org.manager], False, True, True, "active"),
        (org.plain, "Pat Plain", org.emails[org.plain], False, False, True, "active"),
        (org.pending, "Nina Néw", org.emails[org.pending], False, False, False, "pending_activation"),
    ]
    assert doc["members"][0]["since"] == "2026-01-01T10:00:00Z"


def test_members_text_is_an_aligned_table(org):
    p = raikoo("members", "--org", org.id)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["USER", "ID", "NAME", "EMAIL", "OWNER", "MANAGE", "USERS", "ENABLED", "STATE",
                                "SINCE"]
    assert len(lines) == 5
    col = lines[0].index("EMAIL")
    state_col = lines[0].index("STATE")
    for line, uid in zip(lines[1:], [org.owner, org.manager, org.plain, org.pending]):
        assert line.startswith(uid)
        assert line[col:].startswith(org.emails[uid])
    assert lines[4][state_col:].startswith("pending_activation")
    assert lines[1][state_col:].startswith("active")


def test_invitations_json_shows_status_expiry_name_and_mail_state(org):
    p = raikoo("invitations", "--org", org.id, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["org_id"] == org.id
    by_id = {i["invitation_id"]: i for i in doc["invitations"]}
    assert [i["invitation_id"] for i in doc["invitations"]] == [org.inv_stale, org.inv_pending, org.inv_failed,
                                                                org.inv_accepted]
    new = by_id[org.inv_pending]
    assert (new["name"], new["email"], new["kind"], new["status"], new["grant_owner"], new["mail_state"],
            new["mail_error"]) == ("Nina Néw", org.pending_email, "new", "pending", True, "queued", None)
    assert new["expires_at"].endswith("Z")
    failed = by_id[org.inv_failed]
    assert (failed["name"], failed["kind"], failed["mail_state"], failed["mail_error"]) == \
        ("Pat Plain", "existing", "failed", "550 mailbox unavailable")
    assert by_id[org.inv_accepted]["status"] == "accepted"
    # Past its expiry: shown as expired, and without an account it has no name.
    stale = by_id[org.inv_stale]
    assert stale["status"] == "expired" and stale["name"] is None


@pytest.mark.parametrize("status, expected", [
    ("pending", ["inv_pending", "inv_failed"]), ("expired", ["inv_stale"]), ("accepted", ["inv_accepted"]),
    ("removed", []),
])
def test_invitations_status_filter(org, status, expected):
    doc = json.loads(raikoo("invitations", "--org", org.id, "--status", status, "--json", check=True).stdout)
    assert [i["invitation_id"] for i in doc["invitations"]] == [getattr(org, e) for e in expected]


def test_invitations_text_shows_mail_error_in_an_aligned_table(org):
    p = raikoo("invitations", "--org", org.id, "--status", "pending")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 3
    header = lines[0]
    for title in ("INVITATION ID", "NAME", "EMAIL", "KIND", "STATUS", "EXPIRES", "OWNER", "MAIL", "MAIL ERROR"):
        assert title in header
    err_col = header.index("MAIL ERROR")
    status_col = header.index("STATUS")
    failed = next(line for line in lines if line.startswith(org.inv_failed))
    assert failed[err_col:].startswith("550 mailbox unavailable")
    assert failed[status_col:].startswith("pending")
    none = raikoo("invitations", "--org", org.id, "--status", "removed", check=True)
    assert none.stdout.startswith("no removed invitations")


@pytest.mark.parametrize("cmd", ["members", "invitations"])
def test_an_unknown_organization_is_organization_not_found(cmd):
    missing = str(uuid.uuid4())
    p = raikoo(cmd, "--org", missing)
    assert p.returncode == 1
    assert "organization_not_found" in p.stderr
    p = raikoo(cmd, "--org", missing, "--json")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["code"] == "organization_not_found" and doc["org_id"] == missing


@pytest.mark.parametrize("cmd", ["members", "invitations"])
def test_only_admins_owners_and_managers_may_list_for_an_actor(org, cmd):
    for who in (org.admin, org.owner, org.manager):
        p = raikoo(cmd, "--org", org.id, "--actor", who, "--json")
        assert p.returncode == 0, (who, p.stderr)
        assert json.loads(p.stdout)["org_id"] == org.id
    for who in (org.plain, org.pending, org.outsider_owner, str(uuid.uuid4())):
        p = raikoo(cmd, "--org", org.id, "--actor", who)
        assert p.returncode == 1, who
        assert "permission_denied" in p.stderr
        assert p.stdout == ""
    p = raikoo(cmd, "--org", org.id, "--actor", org.plain, "--json")
    assert json.loads(p.stdout)["code"] == "permission_denied"


def test_read_side_with_an_unreachable_database_exits_3():
    p = raikoo("members", "--org", ORG, env={"RAIKOO_DB_URL": "host=127.0.0.1 port=1 dbname=raikoo user=raikoo"})
    assert p.returncode == 3
    assert "cannot connect to PostgreSQL" in p.stderr


# ---- end to end, with the command worker and the outbox relay ----

def test_wait_json_prints_the_result_of_each_command_end_to_end(workers, db):
    assert "raikoo-command-worker" in workers and "raikoo-outbox-relay" in workers
    admin = raikoo("bootstrap-admin", "--email", unique_email("admin"), check=True).stdout.strip()
    code, res = raikoo_json("create-org", "--name", "Initech", "--owner", admin, "--actor", admin)
    assert code == 0, res
    assert res["status"] == "accepted" and res["command_type"] == "CreateOrganization" and res["code"] is None
    org = res["org_id"]
    assert set(res) >= {"command_id", "command_type", "status", "code", "message", "org_id", "user_id",
                        "invitation_id"}

    email = unique_email("new")
    code, res = raikoo_json("invite-new", "--org", org, "--email", email, "--name", "Newt", "--actor", admin)
    assert code == 0, res
    assert res["org_id"] == org and uuid.UUID(res["invitation_id"]) and uuid.UUID(res["user_id"])
    invitation, user = res["invitation_id"], res["user_id"]

    code, res = raikoo_json("invite-new", "--org", org, "--email", email.upper().replace("EXAMPLE.TEST", "example.test"),
                            "--actor", admin)
    assert code == 1
    # The never-activated account already has this organization's pending invitation.
    assert res["status"] == "rejected" and res["code"] == "invitation_pending"
    assert "resend it" in res["message"]

    # Human output of the same outcomes.
    p = raikoo("set-role", "--org", org, "--user", user, "--manage-users", "--actor", admin, "--wait")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"accepted: SetMemberRole (user {user}, org {org})\n"
    p = raikoo("remove-member", "--org", org, "--user", admin, "--actor", admin, "--wait")
    assert p.returncode == 1
    assert p.stdout.startswith("rejected: last_owner: ")

    members = json.loads(raikoo("members", "--org", org, "--actor", admin, "--json", check=True).stdout)["members"]
    by_id = {m["user_id"]: m for m in members}
    assert by_id[user]["state"] == "pending_activation" and by_id[user]["can_manage_users"] is True
    assert by_id[admin]["owner"] is True
    invs = json.loads(raikoo("invitations", "--org", org, "--json", check=True).stdout)["invitations"]
    assert [(i["invitation_id"], i["name"], i["kind"], i["status"]) for i in invs] == \
        [(invitation, "Newt", "new", "pending")]


def test_a_permission_rejection_exits_1_with_its_code(workers):
    assert "raikoo-command-worker" in workers
    stranger = str(uuid.uuid4())
    code, res = raikoo_json("create-org", "--name", "Nope", "--owner", stranger, "--actor", stranger)
    assert code == 1
    assert res["code"] == "permission_denied" and res["command_type"] == "CreateOrganization"


def test_accept_and_activate_through_the_cli_with_the_mailed_codes(client, admin, db):
    """The two invitee commands end to end: codes as the mailer would send them, passwords from stdin."""
    code, res = raikoo_json("create-org", "--name", "Hooli", "--owner", admin, "--actor", admin)
    assert code == 0, res
    org = res["org_id"]

    # Add Existing User, then the invitee accepts with the confirmation code.
    email = unique_email("existing")
    password = "pw-" + uuid.uuid4().hex
    p = raikoo("create-user", "--email", email, "--name", "Eve", "--password-stdin", "--actor", admin, "--wait",
               input=password + "\n")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("accepted: CreateUser (user ")
    eve = p.stdout.split("user ")[1].rstrip(")\n")
    cur = db.cursor()
    cur.execute("SELECT password_hash FROM users WHERE id = %s", (eve,))
    assert nacl.pwhash.verify(cur.fetchone()[0].encode(), password.encode())
    code, res = raikoo_json("add-existing", "--org", org, "--email", email, "--owner", "--actor", admin)
    assert code == 0, res
    inv = res["invitation_id"]
    code, res = raikoo_json("accept", "--invitation", inv, "--actor", eve, input="0000-0000-0000\n")
    assert code == 1 and res["code"] == "invalid_code"
    code, res = raikoo_json("accept", "--invitation", inv, "--actor", eve, input=client.code_for(inv).lower() + "\n")
    assert code == 0, res
    assert res["command_type"] == "AcceptInvitation" and res["invitation_id"] == inv
    members = json.loads(raikoo("members", "--org", org, "--json", check=True).stdout)["members"]
    assert [m["owner"] for m in members if m["user_id"] == eve] == [True]

    # Invite New User, then the new user activates with the one-time password and a password of their own.
    email = unique_email("fresh")
    code, res = raikoo_json("invite-new", "--org", org, "--email", email, "--actor", admin)
    assert code == 0, res
    inv, newbie = res["invitation_id"], res["user_id"]
    p = raikoo("activate", "--email", email, "--password-stdin", "--wait", "--json",
               input=client.code_for(inv) + "\nmy new password\n")
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["user_id"] == newbie
    cur.execute("SELECT enabled, password_hash FROM users WHERE id = %s", (newbie,))
    enabled, h = cur.fetchone()
    assert enabled and nacl.pwhash.verify(h.encode(), b"my new password")
    invs = json.loads(raikoo("invitations", "--org", org, "--status", "accepted", "--json",
                             check=True).stdout)["invitations"]
    assert sorted(i["email"] for i in invs) == sorted([email, unique_email_of(db, eve)])


def unique_email_of(db, user):
    cur = db.cursor()
    cur.execute("SELECT email FROM users WHERE id = %s", (user,))
    return cur.fetchone()[0]


# ---- codes never on the command line (issue 9, item 8) ----

@pytest.mark.parametrize("args, stdin, complaint", [
    (["accept", "--invitation", OTHER, "--actor", ACTOR], "", "the code: nothing to read on standard input"),
    (["accept", "--invitation", OTHER, "--actor", ACTOR], "\n", "the code must be 1 to"),
    (["activate", "--email", "a@x.io"], "", "the code: nothing to read on standard input"),
    (["activate", "--email", "a@x.io"], "ABCD-EFGH-JKMN\n", "the password: nothing to read on standard input"),
    (["activate", "--email", "a@x.io", "--password-stdin"], "ABCD-EFGH-JKMN\n\n", "the password must be 1 to"),
])
def test_a_code_or_password_missing_on_stdin_is_a_usage_error_saying_how_to_pass_it(args, stdin, complaint):
    p = raikoo(*args, input=stdin, env=NO_BROKER)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert complaint in p.stderr
    assert "printf" in p.stderr and p.stdout == ""


def test_the_code_on_the_command_line_is_refused_before_anything_is_read_or_sent():
    for args in (["accept", "--invitation", OTHER, "--actor", ACTOR, "--code", "ABCD-EFGH-JKMN"],
                 ["activate", "--email", "a@x.io", "--code=ABCD-EFGH-JKMN"]):
        p = raikoo(*args, input="ABCD-EFGH-JKMN\npassword\n", env=NO_BROKER)
        assert p.returncode == 2
        assert "--code is not taken on the command line" in p.stderr and "standard input" in p.stderr
        assert "cannot reach Kafka" not in p.stderr


def run_on_terminal(args, answers, timeout=60):
    """Runs raikoo with a pseudo-terminal as stdin, stdout and stderr; types each answer once its prompt
    shows. Returns (exit status, everything the terminal showed)."""
    import pty
    import select
    import subprocess
    import time
    from conftest import BIN
    master, slave = pty.openpty()
    p = subprocess.Popen([os.path.join(BIN, "raikoo")] + args, stdin=slave, stdout=slave, stderr=slave,
                         env=dict(os.environ), start_new_session=True)
    os.close(slave)
    shown = b""
    end = time.time() + timeout

    def read_some():
        nonlocal shown
        if select.select([master], [], [], 0.2)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:  # the program has gone and closed the terminal
                return False
            if not data:
                return False
            shown += data
        return True

    try:
        pos = 0
        for prompt, answer in answers:
            while prompt.encode() not in shown[pos:]:
                assert time.time() < end and read_some(), f"no prompt {prompt!r}; terminal: {shown!r}"
            pos = shown.index(prompt.encode(), pos) + len(prompt)
            os.write(master, answer.encode() + b"\n")
        while time.time() < end and read_some():
            if p.poll() is not None and not select.select([master], [], [], 0.1)[0]:
                break
    finally:
        if p.poll() is None:
            p.kill()
        rc = p.wait()
        os.close(master)
    return rc, shown.decode(errors="replace")


def test_accept_on_a_terminal_asks_for_the_code_without_echo(tail):
    t = tail("raikoo.commands")
    code = "wxyz-" + uuid.uuid4().hex[:4].replace("0", "1") + "-abcd"
    rc, shown = run_on_terminal(["accept", "--invitation", OTHER, "--actor", ACTOR],
                                [("Confirmation code from the e-mail: ", code)])
    assert rc == 0, shown
    assert code not in shown
    command_id = shown.strip().splitlines()[-1].strip()
    m = commands_topic_message(t, command_id)
    assert json.loads(m.value())["data"] == {"invitation_id": OTHER, "code": code}


def test_activate_on_a_terminal_asks_for_the_code_and_the_password_twice_without_echo(tail):
    t = tail("raikoo.commands")
    email = unique_email("tty")
    password = "tty pass " + uuid.uuid4().hex[:8]
    rc, shown = run_on_terminal(["activate", "--email", email],
                                [("One-time password from the e-mail: ", "ABCD-EFGH-JKMN"),
                                 ("New password: ", password), ("New password again: ", password)])
    assert rc == 0, shown
    assert "ABCD-EFGH-JKMN" not in shown and password not in shown
    ev = json.loads(commands_topic_message(t, shown.strip().splitlines()[-1].strip()).value())
    assert ev["data"]["code"] == "ABCD-EFGH-JKMN"
    assert nacl.pwhash.verify(ev["data"]["password_hash"].encode(), password.encode())
    rc, shown = run_on_terminal(["activate", "--email", email],
                                [("One-time password from the e-mail: ", "ABCD-EFGH-JKMN"),
                                 ("New password: ", password), ("New password again: ", password + "x")])
    assert rc == 2 and "the two passwords typed differ" in shown


def test_activate_end_to_end_with_the_code_on_stdin_and_nothing_secret_in_ps(workers, client, admin):
    """The mailed code and a new password on stdin activate the account; `ps` (the process's command line)
    shows neither."""
    import subprocess
    from conftest import BIN
    email = unique_email("ps")
    code, res = raikoo_json("create-org", "--name", "Ps Inc", "--owner", admin, "--actor", admin)
    assert code == 0, res
    code, res = raikoo_json("invite-new", "--org", res["org_id"], "--email", email, "--actor", admin)
    assert code == 0, res
    otp = client.code_for(res["invitation_id"])
    p = subprocess.Popen([os.path.join(BIN, "raikoo"), "activate", "--email", email, "--wait", "--json"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(f"/proc/{p.pid}/cmdline", "rb") as f:
        cmdline = f.read().decode()
    out, err = p.communicate(f"{otp}\npassphrase for ps\n", timeout=60)
    assert p.returncode == 0, out + err
    assert json.loads(out)["user_id"] == res["user_id"]
    assert otp not in cmdline and otp.replace("-", "") not in cmdline and "passphrase" not in cmdline


# ---- the configuration reference (issue 8, item 5) ----

def test_docs_configuration_md_is_what_raikoo_config_markdown_prints():
    from conftest import ROOT
    p = raikoo("config", "--markdown", env={"RAIKOO_BATCH_MAX": "7", "RAIKOO_DB_URL": "host=elsewhere"})
    assert p.returncode == 0, p.stderr
    with open(os.path.join(ROOT, "docs", "CONFIGURATION.md")) as f:
        committed = f.read()
    assert committed == p.stdout, ("docs/CONFIGURATION.md differs from `bin/raikoo config --markdown`: "
                                   "regenerate it with bin/raikoo config --markdown > docs/CONFIGURATION.md")


def test_the_configuration_reference_names_every_key_and_every_script_variable():
    import re
    from conftest import ROOT
    ref = raikoo("config", "--markdown", check=True).stdout
    table = raikoo("config", check=True).stdout
    keys = re.findall(r"^  ([a-z][a-z0-9.]+) +RAIKOO_", table, re.M)
    assert len(keys) > 30
    for k in keys:
        env = "RAIKOO_" + k.upper().replace(".", "_")
        assert f"| `{k}` | " in ref and f"`{env}`" in ref, k
    # Every variable the scripts read is documented, and none is in the librdkafka pass-through namespace
    # except those the scripts set for the programs (issue 9, item 16: RAIKOO_KAFKA_LIBS broke them all).
    used = set()
    for name in ("stack", "setup", "run", "test", "test-env", "bench"):
        path = os.path.join(ROOT, "ops", name)
        if os.path.exists(path):
            used |= set(re.findall(r"RAIKOO_[A-Z0-9_]+", open(path).read()))
    program_vars = {"RAIKOO_" + k.upper().replace(".", "_") for k in keys} | {"RAIKOO_CONFIG"}
    for v in sorted(v for v in used - program_vars if not v.endswith("_")):  # not prefixes (RAIKOO_KAFKA_*)
        assert not v.startswith("RAIKOO_KAFKA_"), f"{v}: RAIKOO_KAFKA_* is passed to librdkafka by every program"
        assert f"| `{v}` | " in ref, f"{v} (read by ops/) is missing from the reference (conf_script_vars)"
