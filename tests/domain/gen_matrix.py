#!/usr/bin/env python3
"""Generates the permission matrix cases tests/domain/matrix-<command>-<actor>/ from the TABLE below.

Every case has the same organization (acme) and people; one command, sent by one actor; expected.json says
the result code the TABLE states (None: accepted), the events the command emits then (CommandRejected
alone when rejected), and a row query that shows whether it changed anything.

    tests/domain/gen_matrix.py          # writes the cases (removes matrix-* folders no longer in the table)
    tests/domain/gen_matrix.py --check  # exit 1 when the committed cases differ from what the table makes

The table agrees with docs/DESIGN.md's permission table; change both together.
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The actors: who sends the command. Everyone but `nobody` exists; `disabled` is an owner of acme whose
# account is disabled; `invitee` holds the pending invitation inv (an existing, enabled account).
ACTORS = ["admin", "owner", "manager", "member", "nonmember", "disabled", "nobody", "invitee"]

SETUP = {
    "users": [
        {"as": "admin", "admin": True},
        {"as": "owner"},
        {"as": "coowner"},
        {"as": "manager"},
        {"as": "member"},
        {"as": "nonmember"},
        {"as": "disabled", "enabled": False},
        {"as": "invitee"},
        {"as": "target"},
        {"as": "outsider"},
        {"as": "target2"},
    ],
    "orgs": [{"as": "acme"}],
    "members": [
        {"org": "acme", "user": "owner", "owner": True, "manage": True},
        {"org": "acme", "user": "coowner", "owner": True, "manage": True},
        {"org": "acme", "user": "manager", "manage": True},
        {"org": "acme", "user": "member"},
        {"org": "acme", "user": "disabled", "owner": True, "manage": True},
        {"org": "acme", "user": "target"},
    ],
    "invitations": [
        {"as": "inv", "org": "acme", "user": "invitee", "kind": "existing", "by": "owner"},
        {"as": "ownerinv", "org": "acme", "user": "outsider", "kind": "existing", "owner": True, "by": "owner"},
        {"as": "manageinv", "org": "acme", "user": "target2", "kind": "existing", "manage": True, "by": "owner"},
    ],
    "ghosts": ["nobody", "newbie"],
}

# The commands: (case name, type, data, events when accepted, mail jobs when accepted, row query, rows
# when accepted, rows when rejected).
MEMBER_ROW = "SELECT is_owner, can_manage_users FROM org_members WHERE org_id = $acme AND user_id = $%s"
COMMANDS = {
    "CreateOrganization": ("CreateOrganization", {"name": "Matrix org", "owner_user_id": "$owner"},
                           ["OrganizationCreated", "MembershipCreated"], 0,
                           "SELECT count(*) FROM org_members m JOIN organizations o ON o.id = m.org_id"
                           " WHERE m.user_id = $owner AND o.name = 'Matrix org'", [[1]], [[0]]),
    "CreateUser": ("CreateUser", {"email": "$newbie.email", "name": "Newbie", "password_hash": "$argon2id"},
                   ["UserCreated"], 0, "SELECT enabled FROM users WHERE email = $newbie.email", [[True]], []),
    "AddExistingUser": ("AddExistingUser", {"org_id": "$acme", "email": "$nonmember.email"},
                        ["InvitationCreated"], 1,
                        "SELECT kind, grant_owner FROM invitations WHERE org_id = $acme AND user_id = $nonmember",
                        [["existing", False]], []),
    "AddExistingUser-owner": ("AddExistingUser", {"org_id": "$acme", "email": "$nonmember.email", "owner": True},
                              ["InvitationCreated"], 1,
                              "SELECT kind, grant_owner FROM invitations WHERE org_id = $acme AND user_id = $nonmember",
                              [["existing", True]], []),
    "InviteNewUser": ("InviteNewUser", {"org_id": "$acme", "email": "$newbie.email", "name": "Newbie"},
                      ["UserCreated", "MembershipCreated", "InvitationCreated"], 1,
                      "SELECT kind, grant_owner FROM invitations WHERE org_id = $acme AND email = $newbie.email",
                      [["new", False]], []),
    "InviteNewUser-owner": ("InviteNewUser", {"org_id": "$acme", "email": "$newbie.email", "owner": True},
                            ["UserCreated", "MembershipCreated", "InvitationCreated"], 1,
                            "SELECT kind, grant_owner FROM invitations WHERE org_id = $acme AND email = $newbie.email",
                            [["new", True]], []),
    "ResendInvitation": ("ResendInvitation", {"org_id": "$acme", "invitation_id": "$inv"},
                         ["InvitationResent"], 1, "SELECT resend_count FROM invitations WHERE id = $inv",
                         [[1]], [[0]]),
    "ResendInvitation-owner-grant": ("ResendInvitation", {"org_id": "$acme", "invitation_id": "$ownerinv"},
                                     ["InvitationResent"], 1,
                                     "SELECT resend_count FROM invitations WHERE id = $ownerinv", [[1]], [[0]]),
    "RemoveInvitation": ("RemoveInvitation", {"org_id": "$acme", "invitation_id": "$inv"},
                         ["InvitationRemoved"], 0, "SELECT status FROM invitations WHERE id = $inv",
                         [["removed"]], [["pending"]]),
    "RemoveMember": ("RemoveMember", {"org_id": "$acme", "user_id": "$target"}, ["MemberRemoved"], 0,
                     MEMBER_ROW % "target", [], [[False, False]]),
    "RemoveMember-owner": ("RemoveMember", {"org_id": "$acme", "user_id": "$coowner"}, ["MemberRemoved"], 0,
                           MEMBER_ROW % "coowner", [], [[True, True]]),
    "SetMemberRole": ("SetMemberRole", {"org_id": "$acme", "user_id": "$target", "owner": False,
                                        "can_manage_users": True},
                      ["MemberRoleChanged"], 0, MEMBER_ROW % "target", [[False, True]], [[False, False]]),
    "SetMemberRole-grant-owner": ("SetMemberRole", {"org_id": "$acme", "user_id": "$target", "owner": True,
                                                    "can_manage_users": True},
                                  ["MemberRoleChanged"], 0, MEMBER_ROW % "target", [[True, True]], [[False, False]]),
    "SetMemberRole-of-owner": ("SetMemberRole", {"org_id": "$acme", "user_id": "$coowner", "owner": False,
                                                 "can_manage_users": False},
                               ["MemberRoleChanged"], 0, MEMBER_ROW % "coowner", [[False, False]], [[True, True]]),
    "AddExistingUser-manage": ("AddExistingUser", {"org_id": "$acme", "email": "$nonmember.email",
                                                   "can_manage_users": True},
                               ["InvitationCreated"], 1,
                               "SELECT kind, grant_manage_users FROM invitations WHERE org_id = $acme"
                               " AND user_id = $nonmember", [["existing", True]], []),
    "InviteNewUser-manage": ("InviteNewUser", {"org_id": "$acme", "email": "$newbie.email", "can_manage_users": True},
                             ["UserCreated", "MembershipCreated", "InvitationCreated"], 1,
                             "SELECT kind, grant_manage_users FROM invitations WHERE org_id = $acme"
                             " AND email = $newbie.email", [["new", True]], []),
    "ResendInvitation-manage-grant": ("ResendInvitation", {"org_id": "$acme", "invitation_id": "$manageinv"},
                                      ["InvitationResent"], 1,
                                      "SELECT resend_count FROM invitations WHERE id = $manageinv", [[1]], [[0]]),
    "SetOrganizationPolicy": ("SetOrganizationPolicy", {"org_id": "$acme", "seat_limit": 50,
                                                        "allowed_domains": ["Example.TEST"]},
                              ["OrganizationPolicyChanged"], 0,
                              "SELECT seat_limit, array_to_string(allowed_domains, ',') FROM organization_policies"
                              " WHERE org_id = $acme",
                              [[50, "example.test"]], []),
    "AcceptInvitation": ("AcceptInvitation", {"invitation_id": "$inv", "code": "$inv.code"},
                         ["InvitationAccepted", "MembershipCreated"], 0,
                         "SELECT status FROM invitations WHERE id = $inv", [["accepted"]], [["pending"]]),
}

P, O, N = "permission_denied", "owner_grant_denied", None  # N: accepted
M = "manage_grant_denied"
# The expected result code per command and actor, in the order of ACTORS:
#                               admin owner manager member nonmember disabled nobody invitee
TABLE = {
    "CreateOrganization":           [N, P, P, P, P, P, P, P],
    "CreateUser":                   [N, P, P, P, P, P, P, P],
    "AddExistingUser":              [N, N, N, P, P, P, P, P],
    "AddExistingUser-owner":        [N, N, O, P, P, P, P, P],
    "InviteNewUser":                [N, N, N, P, P, P, P, P],
    "InviteNewUser-owner":          [N, N, O, P, P, P, P, P],
    "ResendInvitation":             [N, N, N, P, P, P, P, P],
    "ResendInvitation-owner-grant": [N, N, O, P, P, P, P, P],
    "RemoveInvitation":             [N, N, N, P, P, P, P, P],
    "RemoveMember":                 [N, N, N, P, P, P, P, P],
    "RemoveMember-owner":           [N, N, P, P, P, P, P, P],
    "SetMemberRole":                [N, N, N, P, P, P, P, P],
    "SetMemberRole-grant-owner":    [N, N, O, P, P, P, P, P],
    "SetMemberRole-of-owner":       [N, N, O, P, P, P, P, P],
    "AcceptInvitation":             [P, P, P, P, P, P, P, N],
    "AddExistingUser-manage":        [N, N, M, P, P, P, P, P],
    "InviteNewUser-manage":          [N, N, M, P, P, P, P, P],
    "ResendInvitation-manage-grant": [N, N, M, P, P, P, P, P],
    "SetOrganizationPolicy":         [N, N, P, P, P, P, P, P],
}


def cases():
    """{folder name: {file name: content}} for every cell of the table."""
    out = {}
    for cname, codes in TABLE.items():
        ctype, data, events, mail, sql, rows_ok, rows_rejected = COMMANDS[cname]
        assert len(codes) == len(ACTORS), cname
        for actor, code in zip(ACTORS, codes):
            accepted = code is None
            result = {"status": "accepted" if accepted else "rejected", "code": code,
                      "events": events if accepted else ["CommandRejected"],
                      "mail": [{"code_opens": True}] * mail if accepted else []}
            out[f"matrix-{cname}-{actor}"] = {
                "setup.json": SETUP,
                "commands.json": [{"type": ctype, "actor": f"${actor}", "data": data}],
                "expected.json": {"results": [result],
                                  "rows": [{"sql": sql, "rows": rows_ok if accepted else rows_rejected}]},
            }
    return out


def text(doc):
    return json.dumps(doc, indent=2) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    want = cases()
    have = {d for d in os.listdir(HERE) if d.startswith("matrix-")}
    wrong = sorted(have - set(want))
    for name, files in want.items():
        folder = os.path.join(HERE, name)
        for fname, doc in files.items():
            path = os.path.join(folder, fname)
            current = open(path).read() if os.path.exists(path) else None
            if current != text(doc):
                wrong.append(f"{name}/{fname}")
                if not check:
                    os.makedirs(folder, exist_ok=True)
                    with open(path, "w") as f:
                        f.write(text(doc))
    if check:
        if wrong:
            print("not what gen_matrix.py makes (run tests/domain/gen_matrix.py):\n  " + "\n  ".join(wrong))
            return 1
        return 0
    for name in sorted(have - set(want)):
        shutil.rmtree(os.path.join(HERE, name))
    print(f"{len(want)} matrix cases; {len(wrong)} files written or removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
