"""Rules of issue 9 on the real stack: an address never becomes impossible to invite (item 5), and a pending
owner who never activated the account does not count towards the last-owner rule (item 6)."""
import uuid

import pytest

from conftest import accepted, argon2id_hash, rejected, unique_email


def make_org(client, admin):
    r = accepted(client.send("CreateOrganization", admin, {"name": "Rules " + uuid.uuid4().hex[:6],
                                                          "owner_user_id": admin}))
    return r["org_id"]


@pytest.fixture()
def org(client, admin):
    return make_org(client, admin)


def account(db, email):
    cur = db.cursor()
    cur.execute("SELECT id, enabled FROM users WHERE lower(email) = lower(%s)", (email,))
    return cur.fetchone()


def membership(db, org, user):
    cur = db.cursor()
    cur.execute("SELECT is_owner FROM org_members WHERE org_id = %s AND user_id = %s", (org, user))
    row = cur.fetchone()
    return row[0] if row else None


def status(db, inv):
    cur = db.cursor()
    cur.execute("SELECT status FROM invitations WHERE id = %s", (inv,))
    return cur.fetchone()[0]


def activate(client, email, code):
    return client.send("ActivateAccount", None, {"email": email, "code": code, "password_hash": argon2id_hash()})


# ---- item 5: an address can always be invited again ----

def test_removing_a_never_activated_member_frees_the_address(client, admin, org, db, tail):
    events = tail("raikoo.events")
    email = unique_email("removed")
    first = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email}))
    old_code = client.code_for(first["invitation_id"])
    r = accepted(client.send("RemoveMember", admin, {"org_id": org, "user_id": first["user_id"]}))
    ev = events.wait_for(lambda m: b'event.MemberRemoved' in m.value() and first["user_id"].encode() in m.value())
    assert b'"account_removed":true' in ev.value().replace(b" ", b""), ev.value()
    assert r["user_id"] == first["user_id"]
    assert account(db, email) is None, "the never-activated account held by nothing must go"
    assert status(db, first["invitation_id"]) == "removed"
    # Every path works again: the old code is dead, a new invitation is issued and activates the account.
    rejected(activate(client, email, old_code), "invitation_not_found")
    again = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email}))
    accepted(activate(client, email, client.code_for(again["invitation_id"])))
    assert account(db, email)[1] is True
    assert membership(db, org, again["user_id"]) is False


def test_an_account_kept_by_another_organization_is_invited_again(client, admin, db):
    a, b = make_org(client, admin), make_org(client, admin)
    email = unique_email("twoorgs")
    in_a = accepted(client.send("InviteNewUser", admin, {"org_id": a, "email": email}))
    # A second organization invites the same never-activated account: the account is re-used.
    in_b = accepted(client.send("InviteNewUser", admin, {"org_id": b, "email": email}))
    assert in_b["user_id"] == in_a["user_id"]
    # Removing A's invitation keeps the account (B's invitation holds it) but drops its membership in A ...
    accepted(client.send("RemoveInvitation", admin, {"org_id": a, "invitation_id": in_a["invitation_id"]}))
    user = in_a["user_id"]
    assert account(db, email) == (user, False)
    assert membership(db, a, user) is None
    # ... and A can invite the address again, on the same account; Add Existing User says what to do instead.
    r = rejected(client.send("AddExistingUser", admin, {"org_id": a, "email": email}), "user_not_found")
    assert "never activated" in r["message"]
    again = accepted(client.send("InviteNewUser", admin, {"org_id": a, "email": email, "owner": True}))
    assert again["user_id"] == user
    rejected(client.send("InviteNewUser", admin, {"org_id": a, "email": email}), "invitation_pending")
    # Activation takes the code of whichever invitation it is given (A's here, the older B's one is pending).
    code_a, code_b = client.code_for(again["invitation_id"]), client.code_for(in_b["invitation_id"])
    accepted(activate(client, email, code_a))
    assert status(db, again["invitation_id"]) == "accepted" and status(db, in_b["invitation_id"]) == "pending"
    assert membership(db, a, user) is True
    # Now active: B's invitation is accepted with its own code by the user.
    accepted(client.send("AcceptInvitation", user, {"invitation_id": in_b["invitation_id"], "code": code_b}))
    assert status(db, in_b["invitation_id"]) == "accepted"
    rejected(client.send("InviteNewUser", admin, {"org_id": a, "email": email}), "user_already_exists")


def test_activation_with_the_older_organizations_code(client, admin, db):
    a, b = make_org(client, admin), make_org(client, admin)
    email = unique_email("oldercode")
    in_a = accepted(client.send("InviteNewUser", admin, {"org_id": a, "email": email}))
    in_b = accepted(client.send("InviteNewUser", admin, {"org_id": b, "email": email}))
    rejected(activate(client, email, "WRNG-WRNG-WRNG"), "invalid_code")
    accepted(activate(client, email, client.code_for(in_a["invitation_id"])))
    assert status(db, in_a["invitation_id"]) == "accepted" and status(db, in_b["invitation_id"]) == "pending"


def test_an_expired_invitation_of_a_never_activated_account_is_replaced(client, admin, org, db):
    email = unique_email("expired")
    first = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email}))
    old_code = client.code_for(first["invitation_id"])
    db.cursor().execute("UPDATE invitations SET status = 'expired', created_at = now() - interval '2 days',"
                        " expires_at = now() - interval '1 day' WHERE id = %s", (first["invitation_id"],))
    again = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email}))
    assert again["user_id"] == first["user_id"] and again["invitation_id"] != first["invitation_id"]
    rejected(activate(client, email, old_code), "invitation_expired")
    accepted(activate(client, email, client.code_for(again["invitation_id"])))


def test_a_stranded_disabled_account_is_invitable(client, admin, org, db):
    """An account left behind by the earlier rules (disabled, no membership, no invitation)."""
    email = unique_email("stranded")
    user = str(uuid.uuid4())
    db.cursor().execute("INSERT INTO users (id, email, username) VALUES (%s, %s, %s)", (user, email, email))
    rejected(activate(client, email, "AAAA-BBBB-CCCC"), "invitation_not_found")
    r = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email}))
    assert r["user_id"] == user
    accepted(activate(client, email, client.code_for(r["invitation_id"])))


# ---- item 6: only activated owners keep an organization ----

def test_a_pending_owner_does_not_count_as_an_owner(client, admin, org, db):
    email = unique_email("pendingowner")
    inv = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email, "owner": True}))
    pending = inv["user_id"]
    assert membership(db, org, pending) is True
    r = rejected(client.send("SetMemberRole", admin, {"org_id": org, "user_id": admin, "owner": False,
                                                      "can_manage_users": True}), "last_owner")
    assert "never activated" in r["message"]
    rejected(client.send("RemoveMember", admin, {"org_id": org, "user_id": admin}), "last_owner")
    assert membership(db, org, admin) is True
    # A pending owner may always be demoted.
    accepted(client.send("SetMemberRole", admin, {"org_id": org, "user_id": pending, "owner": False,
                                                  "can_manage_users": False}))
    accepted(client.send("SetMemberRole", admin, {"org_id": org, "user_id": pending, "owner": True,
                                                  "can_manage_users": False}))
    # Once activated, the owner counts: the admin may step down.
    accepted(activate(client, email, client.code_for(inv["invitation_id"])))
    accepted(client.send("SetMemberRole", admin, {"org_id": org, "user_id": admin, "owner": False,
                                                  "can_manage_users": True}))
    assert membership(db, org, admin) is False
    rejected(client.send("RemoveMember", pending, {"org_id": org, "user_id": pending}), "last_owner")


def test_the_database_ignores_pending_owners_too(client, admin, org, db):
    import psycopg2
    email = unique_email("dbpending")
    inv = accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email, "owner": True}))
    cur = db.cursor()
    with pytest.raises(psycopg2.DatabaseError) as e:
        cur.execute("UPDATE org_members SET is_owner = false WHERE org_id = %s AND user_id = %s", (org, admin))
    assert e.value.pgcode == "RK001"
    # The pending owner goes without complaint, and takes the never-activated account with it.
    accepted(client.send("RemoveMember", admin, {"org_id": org, "user_id": inv["user_id"]}))
    assert account(db, email) is None
