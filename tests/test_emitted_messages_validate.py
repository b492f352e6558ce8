"""Every message the running system writes (events, results, mail jobs) validates against its JSON Schema,
and none carries a code or a password hash. The real workers run; commands go straight to raikoo.commands
as an upstream app would send them, through a flow that triggers every event type.
"""
import json
import os
import uuid

import nacl.public
from confluent_kafka import Producer

import schemacheck
from conftest import argon2id_hash, raikoo, unique_email
from cryptokit import open_sealed_code

KEYS_DIR = os.environ.get("RAIKOO_KEYS_DIR", "")


class Flow:
    """Publishes commands and reads back what they caused on the three output topics."""

    def __init__(self, tail):
        self.events, self.results, self.mail = tail("raikoo.events"), tail("raikoo.results"), tail("raikoo.mail")
        self.producer = Producer({"bootstrap.servers": os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"]})
        self.command_ids = []
        self.expected = set()  # (command id, event type) pairs the flow must see
        with open(os.path.join(KEYS_DIR, "mailer.sk"), "rb") as f:
            sk = f.read()
        with open(os.path.join(KEYS_DIR, "mailer.pk"), "rb") as f:
            pk = f.read()
        self.sk = sk
        assert bytes(nacl.public.PrivateKey(sk).public_key) == pk

    def send(self, name, data, actor=None, key=None, raw=None, expect=()):
        """Publishes one command (or raw text with its id) and returns (id, result data)."""
        cid = str(uuid.uuid4())
        msg = {"specversion": "1.0", "id": cid, "source": "/tests/emitted-messages",
               "type": f"raikoo.command.{name}.v1", "time": "2026-01-31T12:00:00Z",
               "datacontenttype": "application/json", "data": data}
        if actor:
            msg["actorid"] = actor
        if raw is not None:
            msg = raw(msg)
        self.producer.produce("raikoo.commands", json.dumps(msg).encode(),
                              key=(key or data.get("org_id") or data.get("email") or cid).encode())
        assert self.producer.flush(30) == 0
        self.command_ids.append(cid)
        for t in expect:
            self.expected.add((cid, t))
        m = self.results.wait_for(lambda m: m.key() == cid.encode(), timeout=60)
        return cid, json.loads(m.value())["data"]

    def accepted(self, name, data, actor=None, expect=()):
        cid, res = self.send(name, data, actor, expect=expect)
        assert res["status"] == "accepted", res
        return cid, res

    def rejected(self, name, data, code, actor=None, expect=(), raw=None):
        cid, res = self.send(name, data, actor, raw=raw, expect=("CommandRejected",) + tuple(expect))
        assert (res["status"], res["code"]) == ("rejected", code), res
        return cid, res

    def mail_job(self, cid):
        """The mail job a command queued, and its code (opened with the mailer's secret key)."""
        m = self.mail.wait_for(lambda m: json.loads(m.value()).get("correlationid") == cid, timeout=60)
        job = json.loads(m.value())
        # The worker's form: an ephemeral key, a nonce and the box (84 bytes), not crypto_box_seal's (60).
        assert len(job["data"]["sealed_code"]) == 112, job["data"]["sealed_code"]
        code = open_sealed_code(job["data"]["sealed_code"], self.sk)
        assert len(code) == 12
        return job, code

    def event(self, type_name, pred=lambda d: True):
        m = self.events.wait_for(lambda m: json.loads(m.value())["type"] == f"raikoo.event.{type_name}.v1"
                                 and pred(json.loads(m.value())["data"]), timeout=60)
        return json.loads(m.value())


def test_every_emitted_event_result_and_mail_job_validates_and_carries_no_secret(workers, tail, db):
    f = Flow(tail)
    admin = raikoo("bootstrap-admin", "--email", unique_email("admin"), check=True).stdout.strip()
    hashes = [argon2id_hash("alice-" + uuid.uuid4().hex), argon2id_hash("bob-" + uuid.uuid4().hex),
              argon2id_hash("carol-" + uuid.uuid4().hex)]

    # Accounts and an organization.
    _, r = f.accepted("CreateUser", {"email": unique_email("alice"), "name": "Alice", "password_hash": hashes[0]},
                      admin, expect=["UserCreated"])
    alice = r["user_id"]
    bob_email = unique_email("Bob").replace("example.test", "Example.TEST")
    _, r = f.accepted("CreateUser", {"email": bob_email, "name": "Bob", "password_hash": hashes[1]}, admin,
                      expect=["UserCreated"])
    bob = r["user_id"]
    _, r = f.accepted("CreateOrganization", {"name": "Acmé Schemas", "owner_user_id": alice}, admin,
                      expect=["OrganizationCreated", "MembershipCreated"])
    org = r["org_id"]

    # An existing user: invited, a wrong code, a resend, the right code.
    bob_invited, r = f.accepted("AddExistingUser", {"org_id": org, "email": bob_email, "owner": False}, alice,
                                expect=["InvitationCreated"])
    bob_inv = r["invitation_id"]
    _, first_code = f.mail_job(bob_invited)
    f.rejected("AcceptInvitation", {"invitation_id": bob_inv, "code": "ZZZZ-ZZZZ-ZZZZ"}, "invalid_code", bob,
               expect=["InvitationCodeRejected"])
    cid, _ = f.accepted("ResendInvitation", {"org_id": org, "invitation_id": bob_inv}, alice,
                        expect=["InvitationResent"])
    _, bob_code = f.mail_job(cid)
    f.rejected("AcceptInvitation", {"invitation_id": bob_inv, "code": first_code}, "invalid_code", bob,
               expect=["InvitationCodeRejected"])
    f.accepted("AcceptInvitation", {"invitation_id": bob_inv, "code": bob_code.lower()}, bob,
               expect=["InvitationAccepted", "MembershipCreated"])

    # A new user: invited, a wrong one-time password, then activated.
    carol_email = unique_email("carol")
    cid, r = f.accepted("InviteNewUser", {"org_id": org, "email": carol_email, "name": "Carol"}, alice,
                        expect=["UserCreated", "MembershipCreated", "InvitationCreated"])
    carol = r["user_id"]
    _, carol_code = f.mail_job(cid)
    f.rejected("ActivateAccount", {"email": carol_email, "code": "0000-0000-0000", "password_hash": hashes[2]},
               "invalid_code", expect=["InvitationCodeRejected"])
    f.accepted("ActivateAccount", {"email": carol_email, "code": carol_code, "password_hash": hashes[2]},
               expect=["AccountActivated", "InvitationAccepted"])

    # Roles and removals.
    f.accepted("SetMemberRole", {"org_id": org, "user_id": bob, "owner": False, "can_manage_users": True}, alice,
               expect=["MemberRoleChanged"])
    cid, r = f.accepted("InviteNewUser", {"org_id": org, "email": unique_email("dave")}, bob,
                        expect=["UserCreated", "MembershipCreated", "InvitationCreated"])
    f.accepted("RemoveInvitation", {"org_id": org, "invitation_id": r["invitation_id"]}, bob,
               expect=["InvitationRemoved", "MemberRemoved"])
    cid, r = f.accepted("InviteNewUser", {"org_id": org, "email": unique_email("erin"), "owner": True}, alice,
                        expect=["UserCreated", "MembershipCreated", "InvitationCreated"])
    f.accepted("RemoveMember", {"org_id": org, "user_id": r["user_id"]}, alice,
               expect=["InvitationRemoved", "MemberRemoved"])
    f.accepted("RemoveMember", {"org_id": org, "user_id": carol}, bob, expect=["MemberRemoved"])

    # The mailer's outcomes and the expiry worker's decisions, where the build has those workers: a sent
    # e-mail, one refused for good (the test SMTP server bounces bounce.test), an invitation past its expiry
    # (resent afterwards, from expired).
    mailer, expiry = "raikoo-mailer" in workers, "raikoo-expiry-worker" in workers
    cid, r = f.accepted("InviteNewUser", {"org_id": org, "email": unique_email("frank").replace(
        "example.test", "bounce.test")}, alice, expect=["UserCreated", "MembershipCreated", "InvitationCreated"]
        + (["InvitationEmailFailed"] if mailer else []))
    f.accepted("InviteNewUser", {"org_id": org, "email": unique_email("grace"), "name": "Grâce Ødegård"}, alice,
               expect=["UserCreated", "MembershipCreated", "InvitationCreated"]
               + (["InvitationEmailSent"] if mailer else []))  # stays pending, so its mail goes out
    expired_inv = None
    if expiry:
        cid, r = f.accepted("AddExistingUser", {"org_id": org, "email": carol_email}, alice,
                            expect=["InvitationCreated"])
        expired_inv = r["invitation_id"]
        db.cursor().execute("UPDATE invitations SET created_at = now() - interval '8 days',"
                            " expires_at = now() - interval '1 day' WHERE id = %s", (expired_inv,))
        f.event("InvitationExpired", lambda d: d["invitation_id"] == expired_inv)
        f.accepted("ResendInvitation", {"org_id": org, "invitation_id": expired_inv}, alice,
                   expect=["InvitationResent"])

    # Rejections, each with a result and a CommandRejected event.
    f.rejected("CreateOrganization", {"name": "Not mine", "owner_user_id": alice}, "permission_denied", alice)
    f.rejected("RemoveMember", {"org_id": org, "user_id": alice}, "last_owner", admin)
    f.rejected("SetMemberRole", {"org_id": org, "user_id": bob, "owner": True, "can_manage_users": True},
               "owner_grant_denied", bob)
    f.rejected("InviteNewUser", {"org_id": org, "email": bob_email}, "user_already_exists", alice)
    f.rejected("AddExistingUser", {"org_id": org, "email": "bob@nowhere.invalid"}, "invalid_command", alice,
               raw=lambda m: dict(m, data=dict(m["data"], email="not an address")))
    f.rejected("RemoveMember", {"org_id": org, "user_id": alice}, "unknown_command_type", alice,
               raw=lambda m: dict(m, type="raikoo.command.RemoveEveryone.v1"))
    f.rejected("CreateUser", {"email": unique_email("weak"), "name": "Weak", "password_hash": "$argon2id$weak"},
               "invalid_password_hash", admin)
    f.rejected("AcceptInvitation", {"invitation_id": bob_inv, "code": bob_code}, "invitation_not_pending", bob)

    # Everything the flow must have caused, then everything it caused, validated.
    for cid, t in sorted(f.expected):
        f.events.wait_for(lambda m: json.loads(m.value()).get("correlationid") == cid
                          and json.loads(m.value())["type"] == f"raikoo.event.{t}.v1", timeout=60)
    ours = set(f.command_ids)

    def mine(m):
        doc = json.loads(m.value())
        return doc.get("correlationid") in ours or (
            doc["type"] == "raikoo.event.InvitationExpired.v1" and doc["data"]["invitation_id"] == expired_inv)
    events = [m for m in f.events.poll(0.5) if mine(m)]
    results = [m for m in f.results.poll(0.1) if mine(m)]
    jobs = [m for m in f.mail.poll(0.1) if mine(m)]
    assert len(results) == len(f.command_ids)
    # AddExistingUser, ResendInvitation, five InviteNewUser; with the expiry worker one more of the first two.
    assert len(jobs) == (9 if expiry else 7)

    invalid = []
    for m in events + results + jobs:
        doc = json.loads(m.value())
        invalid += schemacheck.errors(doc)
    assert not invalid, "\n".join(invalid)

    seen = {json.loads(m.value())["type"].split(".")[2] for m in events}
    assert seen >= {t for _, t in f.expected}
    assert seen >= {"OrganizationCreated", "UserCreated", "MembershipCreated", "InvitationCreated",
                    "InvitationResent", "InvitationAccepted", "InvitationRemoved", "AccountActivated",
                    "MemberRemoved", "MemberRoleChanged", "InvitationCodeRejected", "CommandRejected"}
    if mailer:
        assert seen >= {"InvitationEmailSent", "InvitationEmailFailed"}
    if expiry:
        assert "InvitationExpired" in seen
    # Both shapes of the events that have two.
    removed = [json.loads(m.value())["data"] for m in events if b"InvitationRemoved" in m.value()]
    assert {d.get("reason", "by RemoveInvitation") for d in removed} == {"by RemoveInvitation", "member_removed"}

    # No code (as sent, canonical, displayed, any case) and no password hash in any event or result; mail
    # jobs carry the code only sealed.
    codes = [first_code, bob_code, carol_code, "ZZZZ-ZZZZ-ZZZZ", "0000-0000-0000"]
    secrets = set(hashes) | {"$argon2id$"}
    for c in codes:
        canon = c.replace("-", "")
        secrets |= {canon, canon.lower(), f"{canon[:4]}-{canon[4:8]}-{canon[8:]}"}
        secrets.add(f"{canon[:4]}-{canon[4:8]}-{canon[8:]}".lower())
    for m in events + results:
        text = m.value().decode()
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{leaked} in {text}"
        for j in jobs:
            assert json.loads(j.value())["data"]["sealed_code"] not in text
    for j in jobs:
        text = j.value().decode()
        assert not [s for s in secrets if s in text], text
