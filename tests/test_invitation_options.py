"""Invitation options and organization policies on the real stack (docs/INVITATION_OPTIONS.md): expiry per
invitation, the role at invitation, the e-mail's language, and SetOrganizationPolicy (allowed domains, the
seat limit, default expiry, language and link), through the CLI, the workers, Kafka and PostgreSQL."""
import json
import uuid

import pytest

from conftest import (Worker, accepted, argon2id_hash, raikoo, raikoo_json, rejected, unique_email)


def make_org(client, admin):
    r = accepted(client.send("CreateOrganization", admin, {"name": "Options " + uuid.uuid4().hex[:6],
                                                          "owner_user_id": admin}))
    return r["org_id"]


@pytest.fixture()
def org(client, admin):
    return make_org(client, admin)


def make_user(client, admin, prefix="user"):
    email = unique_email(prefix)
    r = accepted(client.send("CreateUser", admin, {"email": email, "name": prefix.title(),
                                                   "password_hash": argon2id_hash()}))
    return r["user_id"], email


def one(db, sql, *args):
    cur = db.cursor()
    cur.execute(sql, args)
    return cur.fetchone()


def test_expiry_role_and_language_of_an_invitation_through_the_cli(client, admin, org, db):
    email = unique_email("opt")
    rc, r = raikoo_json("invite-new", "--actor", admin, "--org", org, "--email", email, "--name", "Opt Ion",
                        "--manage-users", "--expires-in-days", "5", "--locale", "de-AT")
    assert rc == 0 and r["status"] == "accepted", r
    inv = r["invitation_id"]
    assert one(db, "SELECT (expires_at - created_at)::text, grant_manage_users, locale FROM invitations"
                   " WHERE id = %s", inv) == ("5 days", True, "de-AT")
    job = client.mail_jobs(inv)[0]["data"]
    assert (job["locale"], job["grant_manage_users"]) == ("de-AT", True)
    assert "app_url" not in job  # no policy: the mailer's mail.app.url
    # The listing shows the role and the language.
    p = raikoo("invitations", "--org", org, "--json", check=True)
    row = [i for i in json.loads(p.stdout)["invitations"] if i["invitation_id"] == inv][0]
    assert (row["grant_manage_users"], row["grant_owner"], row["locale"]) == (True, False, "de-AT")
    table = raikoo("invitations", "--org", org, check=True).stdout
    assert "MANAGE USERS" in table.splitlines()[0] and "LOCALE" in table.splitlines()[0]
    # Activation gives the membership user management.
    code = client.code_for(inv)
    accepted(client.send("ActivateAccount", None, {"email": email, "code": code, "password_hash": argon2id_hash()}))
    members = json.loads(raikoo("members", "--org", org, "--json", check=True).stdout)["members"]
    m = [x for x in members if x["email"] == email][0]
    assert (m["owner"], m["can_manage_users"], m["state"]) == (False, True, "active")


def test_resend_takes_a_new_expiry_and_language_and_defaults_come_from_configuration(client, admin, org, db):
    r = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("rs")}))
    inv = r["invitation_id"]
    # No option, no policy: invitation.ttl.seconds and mail.locale ("en").
    ttl, locale = one(db, "SELECT extract(epoch FROM expires_at - created_at)::bigint, locale FROM invitations"
                          " WHERE id = %s", inv)
    config = raikoo("config", check=True).stdout
    configured = [ln for ln in config.splitlines() if ln.split()[:1] == ["invitation.ttl.seconds"]][0]
    assert (ttl, locale) == (int(configured.rsplit("[", 1)[1].rstrip("]")), "en")
    assert client.mail_jobs(inv)[0]["data"]["locale"] == "en"
    accepted(client.send("ResendInvitation", admin, {"org_id": org, "invitation_id": inv, "expires_in_days": 30,
                                                     "locale": "pt-BR"}))
    assert one(db, "SELECT (expires_at - resent_at)::text, locale FROM invitations WHERE id = %s", inv) == \
        ("30 days", "pt-BR")
    assert client.mail_jobs(inv, 2)[1]["data"]["locale"] == "pt-BR"


@pytest.mark.parametrize("data, code", [
    ({"expires_in_days": 0}, "invalid_expiry"), ({"expires_in_days": 31}, "invalid_expiry"),
    ({"expires_in_days": "7"}, "invalid_expiry"), ({"expires_in_days": 7.5}, "invalid_expiry"),
    ({"expires_in_days": None}, "invalid_expiry"), ({"locale": "German"}, "invalid_locale"),
    ({"locale": "de_DE"}, "invalid_locale"),
])
def test_a_wrong_option_gets_its_own_code_from_the_worker(client, admin, org, db, data, code):
    email = unique_email("bad")
    r = rejected(client.send("InviteNewUser", admin, dict({"org_id": org, "email": email}, **data)), code)
    assert r["message"]
    assert one(db, "SELECT count(*) FROM users WHERE lower(email) = lower(%s)", email) == (0,)
    # The CLI refuses the same before sending, naming the code.
    p = raikoo("invite-new", "--actor", admin, "--org", org, "--email", email, "--expires-in-days", "31")
    assert p.returncode == 2 and "invalid_expiry" in p.stderr


def test_a_user_manager_invites_plain_members_only(client, admin, org, db):
    manager, _ = make_user(client, admin, "mgr")
    other, other_email = make_user(client, admin, "oth")
    inv = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": _email_of(db, manager),
                                                          "can_manage_users": True}))["invitation_id"]
    accepted(client.send("AcceptInvitation", manager, {"invitation_id": inv, "code": client.code_for(inv)}))
    assert one(db, "SELECT can_manage_users, is_owner FROM org_members WHERE org_id = %s AND user_id = %s",
               org, manager) == (True, False)
    rejected(client.send("AddExistingUser", manager, {"org_id": org, "email": other_email,
                                                      "can_manage_users": True}), "manage_grant_denied")
    rejected(client.send("AddExistingUser", manager, {"org_id": org, "email": other_email, "owner": True}),
             "owner_grant_denied")
    r = accepted(client.send("AddExistingUser", manager, {"org_id": org, "email": other_email}))
    assert one(db, "SELECT grant_owner, grant_manage_users FROM invitations WHERE id = %s", r["invitation_id"]) == \
        (False, False)
    assert "grant_manage_users" not in client.mail_jobs(r["invitation_id"])[0]["data"]


def _email_of(db, user):
    return one(db, "SELECT email FROM users WHERE id = %s", user)[0]


def test_policy_set_show_domains_seats_defaults_and_link(client, admin, org, db):
    member, member_email = make_user(client, admin, "plain")
    rc, r = raikoo_json("policy", "set", "--actor", admin, "--org", org,
                        "--allowed-domains", "EXAMPLE.test,other.test", "--seat-limit", "3",
                        "--default-expiry-days", "2", "--default-locale", "fr",
                        "--app-url", "https://join.example.test/acme")
    assert rc == 0 and r["status"] == "accepted", r
    shown = json.loads(raikoo("policy", "show", "--org", org, "--actor", admin, "--json", check=True).stdout)
    assert shown["allowed_domains"] == ["example.test", "other.test"]
    assert (shown["seat_limit"], shown["seats_used"], shown["default_expiry_days"], shown["default_locale"],
            shown["app_url"]) == (3, 1, 2, "fr", "https://join.example.test/acme")
    # Domains: case-insensitive; others refused with their own code.
    rejected(client.send("InviteNewUser", admin, {"org_id": org, "email": "zed@elsewhere.test"}), "domain_not_allowed")
    a = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": f"amy-{uuid.uuid4().hex[:8]}@Other.TEST"}))
    # Defaults: expiry, language and the link of the mail job.
    assert one(db, "SELECT (expires_at - created_at)::text, locale FROM invitations WHERE id = %s",
               a["invitation_id"]) == ("2 days", "fr")
    job = client.mail_jobs(a["invitation_id"])[0]["data"]
    assert (job["locale"], job["app_url"]) == ("fr", "https://join.example.test/acme")
    # Seats: admin (member) + amy (new: a member) = 2; a pending existing invitation makes 3 = the limit.
    b = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": member_email}))
    r = rejected(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("full")}),
                 "seat_limit_reached")
    assert "3 of 3" in r["message"]
    # A removal frees a seat.
    accepted(client.send("RemoveInvitation", admin, {"org_id": org, "invitation_id": b["invitation_id"]}))
    accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": unique_email("freed")}))
    # none clears a setting; a setting left out stays.
    rc, r = raikoo_json("policy", "set", "--actor", admin, "--org", org, "--seat-limit", "none", "--app-url", "none")
    assert rc == 0, r
    shown = json.loads(raikoo("policy", "show", "--org", org, "--json", check=True).stdout)
    assert (shown["seat_limit"], shown["app_url"], shown["default_locale"]) == (None, None, "fr")
    # Only owners and admins set the policy; a plain member may not read it either.
    inv = accepted(client.send("AddExistingUser", admin, {"org_id": org, "email": member_email}))["invitation_id"]
    accepted(client.send("AcceptInvitation", member, {"invitation_id": inv, "code": client.code_for(inv)}))
    p = raikoo("policy", "set", "--actor", member, "--org", org, "--seat-limit", "9", "--wait")
    assert p.returncode == 1 and "permission_denied" in p.stdout, p.stdout + p.stderr
    p = raikoo("policy", "show", "--org", org, "--actor", member, "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == "permission_denied"
    assert json.loads(raikoo("policy", "show", "--org", org, "--json", check=True).stdout)["seat_limit"] is None


def test_policy_values_out_of_range_get_their_own_codes(client, admin, org):
    for data, code in [({"seat_limit": 0}, "invalid_seat_limit"), ({"default_expiry_days": 31}, "invalid_expiry"),
                       ({"allowed_domains": ["no domain"]}, "invalid_domain"), ({"app_url": "ftp://x.test"}, "invalid_app_url"),
                       ({"default_locale": "english"}, "invalid_locale")]:
        rejected(client.send("SetOrganizationPolicy", admin, dict({"org_id": org}, **data)), code)


def _last_seat(client, admin, org, db, n, key_of):
    """n InviteNewUser commands for the organization's one free seat, published at once with key_of(email) as
    their Kafka keys: exactly one is accepted, whichever worker or batch decides them."""
    accepted(client.send("SetOrganizationPolicy", admin, {"org_id": org, "seat_limit": 2}))
    emails = [unique_email(f"seat{i}") for i in range(n)]
    ids = []
    for e in emails:
        ev = client.envelope("InviteNewUser", admin, {"org_id": org, "email": e})
        client.producer.produce("raikoo.commands", json.dumps(ev).encode(), key=key_of(e).encode())
        ids.append(ev["id"])
    assert client.producer.flush(30) == 0
    results = [client.result(i, timeout=120) for i in ids]
    codes = sorted(r["code"] or "accepted" for r in results)
    assert codes == ["accepted"] + ["seat_limit_reached"] * (n - 1), codes
    assert one(db, "SELECT (SELECT count(*) FROM org_members WHERE org_id = %s)"
                   " + (SELECT count(*) FROM invitations WHERE org_id = %s AND status = 'pending' AND kind = 'existing')",
               org, org) == (2,)


def test_the_last_seat_goes_to_one_invitation_of_a_batch(client, admin, org, db):
    _last_seat(client, admin, org, db, 6, lambda e: org)


def test_the_last_seat_goes_to_one_invitation_when_two_command_workers_race(client, admin, org, db):
    # A second command worker in the group: commands keyed by address spread over the partitions, so
    # both workers decide some of them at the same time; the policy row's lock lets one through.
    second = Worker("raikoo-command-worker", env={"RAIKOO_METRICS_LISTEN": "127.0.0.1:0"})
    try:
        _last_seat(client, admin, org, db, 12, lambda e: e)
    finally:
        assert second.stop() == 0, second.output()[-2000:]


def test_an_invitation_waits_for_the_policy_row_and_counts_what_the_holder_committed(client, admin, org, db,
                                                                                     db_url):
    """The seat count is taken under the policy row's lock, in a statement after it: a transaction holding
    the lock that takes the last seat makes the waiting invitation seat_limit_reached (without the lock, or
    with the count in the locking statement's snapshot, it would be accepted)."""
    import time
    import psycopg2
    other, _ = make_user(client, admin, "holder")
    accepted(client.send("SetOrganizationPolicy", admin, {"org_id": org, "seat_limit": 2}))
    holder = psycopg2.connect(db_url)
    try:
        cur = holder.cursor()  # psycopg2 opens a transaction: the row lock is held until commit
        cur.execute("SELECT 1 FROM organization_policies WHERE org_id = %s FOR UPDATE", (org,))
        cid = client.publish("InviteNewUser", admin, {"org_id": org, "email": unique_email("waits")})
        end = time.time() + 60
        while True:
            waiting = one(db, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                              " WHERE NOT l.granted AND a.query LIKE '%%organization_policies%%FOR UPDATE%%'"
                              " AND a.pid <> pg_backend_pid()")[0]
            if waiting:
                break
            assert time.time() < end, "no command worker waited for the policy row"
            time.sleep(0.2)
        cur.execute("INSERT INTO org_members (org_id, user_id) VALUES (%s, %s)", (org, other))
        holder.commit()
    finally:
        holder.close()
    r = rejected(client.result(cid), "seat_limit_reached")
    assert "2 of 2" in r["message"]
