"""The JSON Schemas under schemas/ are valid Draft 2020-12 schemas, cover every message, and agree with the
command worker's own parser: a table of valid and invalid commands is checked against both, and whatever
the schema rejects, the parser (bin/raikoo-parse-check, the worker's cmd_parse) rejects too.
"""
import base64
import copy
import json
import os
import re
import subprocess
import uuid

import jsonschema
import pytest

import schemacheck
from conftest import BIN, ROOT

COMMANDS = ["CreateOrganization", "CreateUser", "AddExistingUser", "InviteNewUser", "AcceptInvitation",
            "ActivateAccount", "ResendInvitation", "RemoveInvitation", "RemoveMember", "SetMemberRole",
            "SetOrganizationPolicy"]
EVENTS = ["OrganizationCreated", "UserCreated", "MembershipCreated", "InvitationCreated", "InvitationResent",
          "InvitationAccepted", "InvitationExpired", "InvitationRemoved", "AccountActivated", "MemberRemoved",
          "MemberRoleChanged", "InvitationEmailSent", "InvitationEmailFailed", "InvitationCodeRejected",
          "CommandRejected", "InvitationReminderSent",
          "OrganizationPolicyChanged"]
# DESIGN.md, "Every command ends in exactly one result": the stable codes.
RESULT_CODES = ["invalid_command", "unknown_command_type", "organization_not_found", "permission_denied",
                "owner_grant_denied", "user_not_found", "user_already_exists", "already_member",
                "invitation_pending", "invitation_not_found", "invitation_not_pending", "invitation_expired",
                "invalid_code", "too_many_attempts", "account_already_active", "invalid_password_hash",
                "not_member", "last_owner", "rate_limited",
                "manage_grant_denied", "invalid_expiry", "invalid_locale", "invalid_domain", "invalid_seat_limit",
                "invalid_app_url", "domain_not_allowed", "seat_limit_reached"]


# ---- the schema files themselves ----

def test_every_schema_file_is_a_valid_draft_2020_12_schema_with_its_own_id():
    files = schemacheck.schema_files()
    assert len(files) == 1 + len(COMMANDS) + len(EVENTS) + 3  # result, mail jobs: invitation, reminder
    ids = set()
    for rel in files:
        s = schemacheck.load(rel)
        assert s.get("$schema") == "https://json-schema.org/draft/2020-12/schema", rel
        jsonschema.Draft202012Validator.check_schema(s)
        assert s["$id"] == schemacheck.BASE_ID + rel, rel
        ids.add(s["$id"])
    assert len(ids) == len(files)


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_every_ref_resolves_within_the_schemas_folder():
    for rel in schemacheck.schema_files():
        v = schemacheck.validator(rel)
        refs = list(_refs(v.schema))
        for r in refs:
            url, target = v.resolver.resolve(r)
            assert url.startswith(schemacheck.BASE_ID), (rel, r, url)
            assert isinstance(target, (dict, bool)), (rel, r)
        if rel != "cloudevent.schema.json":
            assert refs, f"{rel} does not build on the shared envelope"


def test_there_is_a_schema_for_every_command_event_result_and_mail_job():
    for name in COMMANDS:
        assert schemacheck.schema_for_type(f"raikoo.command.{name}.v1") == f"commands/{name}.schema.json"
    for name in EVENTS:
        assert schemacheck.schema_for_type(f"raikoo.event.{name}.v1") == f"events/{name}.schema.json"
    assert schemacheck.schema_for_type("raikoo.result.v1") == "result.schema.json"
    assert schemacheck.schema_for_type("raikoo.mail.InvitationEmail.v1") == "mail/InvitationEmail.schema.json"


def _c_command_table():
    """lib/msg/cmd.c's table: {name: (needs_actor, {field: (kind, required, min, max, nonblank)})}."""
    src = open(os.path.join(ROOT, "lib", "msg", "cmd.c")).read()
    consts = {k: int(v) for k, v in re.findall(r"#define (\w+) (\d+)", src)}
    num = lambda t: consts[t] if t in consts else int(t)
    table = {}
    for m in re.finditer(r'\[CMD_\w+\] = \{"(\w+)",\s*(\d),\s*\{(.*?)\}\},\n', src, re.S):
        fields = {}
        for f in re.finditer(r'\{"(\w+)", FIELD_(\w+), (\d), (\w+), (\w+)(?:, (\d))?(?:, (\d))?\}', m.group(3)):
            fields[f.group(1)] = (f.group(2), f.group(3) == "1", num(f.group(4)), num(f.group(5)), f.group(6) == "1")
        table[m.group(1)] = (m.group(2) == "1", fields)
    return table


def test_command_schemas_have_exactly_the_fields_of_the_parsers_table():
    table = _c_command_table()
    assert sorted(table) == sorted(COMMANDS)
    envelope = schemacheck.load("cloudevent.schema.json")["$defs"]
    for name, (needs_actor, fields) in table.items():
        s = schemacheck.load(f"commands/{name}.schema.json")
        data = s["properties"]["data"]
        assert data["additionalProperties"] is False
        assert set(data["properties"]) == set(fields), name
        assert set(data["required"]) == {f for f, (_, req, _, _, _) in fields.items() if req}, name
        assert ("actorid" in s["required"]) == needs_actor, name
        for f, (kind, _, lo, hi, nonblank) in fields.items():
            p = data["properties"][f]
            if kind in ("TEXT", "SECRET"):
                assert (p["type"], p["minLength"], p["maxLength"]) == ("string", lo, hi), (name, f)
                # A name of white space only is refused (the database's btrim(name) <> '' CHECK).
                assert (p.get("pattern") == "\\S") == nonblank, (name, f)
            elif kind == "BOOL":
                assert p == {"type": "boolean"}, (name, f)
            elif kind == "UUID":
                assert p == {"$ref": "../cloudevent.schema.json#/$defs/uuid"}, (name, f)
            elif kind == "EMAIL":
                assert p == {"$ref": "../cloudevent.schema.json#/$defs/email_input"}, (name, f)
            elif kind in ("DAYS", "SEATS"):
                nullable = name == "SetOrganizationPolicy"
                assert p == {"type": ["integer", "null"] if nullable else "integer", "minimum": lo, "maximum": hi}, \
                    (name, f)
            elif kind in ("LOCALE", "URL", "DOMAINS"):
                ref = {"LOCALE": {"$ref": "../cloudevent.schema.json#/$defs/locale"},
                       "URL": {"$ref": "../cloudevent.schema.json#/$defs/app_url"},
                       "DOMAINS": {"type": "array", "maxItems": hi,
                                   "items": {"$ref": "../cloudevent.schema.json#/$defs/domain"}}}[kind]
                assert p in (ref, {"oneOf": [ref, {"type": "null"}]}), (name, f)
            else:
                raise AssertionError(f"unknown field kind {kind}")
    assert envelope["result_code"]["enum"] == RESULT_CODES


def _data_schemas(s):
    """The data schemas of a message schema (one, or each branch of a oneOf)."""
    d = s["properties"]["data"]
    return d["oneOf"] if "oneOf" in d else [d]


def test_no_event_or_result_schema_admits_a_secret_field():
    for rel in schemacheck.schema_files():
        if not (rel.startswith("events/") or rel == "result.schema.json"):
            continue
        for d in _data_schemas(schemacheck.load(rel)):
            assert d["additionalProperties"] is False, rel
            for name in schemacheck.SECRET_FIELDS:
                if rel == "result.schema.json" and name == "code":
                    # A result's "code" is the stable result code (DESIGN.md): null or one of an enum.
                    assert d["properties"]["code"] == {"anyOf": [
                        {"type": "null"}, {"$ref": "cloudevent.schema.json#/$defs/result_code"}]}
                    continue
                assert name not in d["properties"], (rel, name)


# ---- commands: the schema and the parser agree ----

def uid():
    return str(uuid.uuid4())


HASH = "$argon2id$v=19$m=65536,t=2,p=1$" + "c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43
FULL_DATA = {
    "CreateOrganization": {"name": "Acme", "owner_user_id": uid()},
    "CreateUser": {"email": "bob@example.test", "name": "Bob", "password_hash": HASH},
    "AddExistingUser": {"org_id": uid(), "email": "bob@example.test", "owner": True},
    "InviteNewUser": {"org_id": uid(), "email": "new@example.test", "name": "New Person", "owner": False},
    "AcceptInvitation": {"invitation_id": uid(), "code": "ABCD-EFGH-JKMN"},
    "ActivateAccount": {"email": "new@example.test", "code": "abcdefghjkmn", "password_hash": HASH},
    "ResendInvitation": {"org_id": uid(), "invitation_id": uid()},
    "RemoveInvitation": {"org_id": uid(), "invitation_id": uid()},
    "RemoveMember": {"org_id": uid(), "user_id": uid()},
    "SetMemberRole": {"org_id": uid(), "user_id": uid(), "owner": False, "can_manage_users": True},
    "SetOrganizationPolicy": {"org_id": uid(), "allowed_domains": ["example.test", "Sub.Example.TEST"],
                              "seat_limit": 10, "default_expiry_days": 14, "default_locale": "de-AT",
                              "app_url": "https://app.example.test/raikoo"},
}
FULL_DATA["AddExistingUser"].update({"can_manage_users": True, "expires_in_days": 30, "locale": "de"})
FULL_DATA["InviteNewUser"].update({"can_manage_users": False, "expires_in_days": 1, "locale": "pt-BR"})
FULL_DATA["ResendInvitation"].update({"expires_in_days": 7, "locale": "es-419"})
TABLE = _c_command_table()


def command(name, data=None, **envelope):
    """A valid command message of that name (with every data field), envelope attributes overridable."""
    msg = {"specversion": "1.0", "id": uid(), "source": "/tests/schemas", "type": f"raikoo.command.{name}.v1",
           "time": "2026-01-31T12:00:00.123Z", "datacontenttype": "application/json", "actorid": uid(),
           "data": copy.deepcopy(FULL_DATA[name]) if data is None else data}
    msg.update(envelope)
    return msg


DROP = object()


def with_attr(msg, key, value):
    m = copy.deepcopy(msg)
    if value is DROP:
        m.pop(key, None)
    else:
        m[key] = value
    return m


def with_field(msg, key, value):
    m = copy.deepcopy(msg)
    if value is DROP:
        m["data"].pop(key, None)
    else:
        m["data"][key] = value
    return m


GOOD_UUIDS = ["6F9619FF-8B86-D011-B42D-00C04FC964FF", "00000000-0000-0000-0000-000000000000"]
BAD_UUIDS = ["", "6f9619ff8b86d011b42d00c04fc964ff", "6f9619ff-8b86-d011-b42d-00c04fc964f",
             "6f9619ff-8b86-d011-b42d-00c04fc964fff", "6g9619ff-8b86-d011-b42d-00c04fc964ff",
             "{6f9619ff-8b86-d011-b42d-00c04fc964ff}", "6f9619ff_8b86_d011_b42d_00c04fc964ff",
             " 6f9619ff-8b86-d011-b42d-00c04fc964f", "6f9619ff-8b86-d011-b42d-00c04fc964f\n", 42, None, True]
GOOD_EMAILS = ["bob@example.test", "Bob.Smith+tag@Example.TEST", "  bob@example.test\t", "a@b.co",
               "o'neil!#$%&*/=?^_`{|}~-x@sub-domain.example.test", "x" * 64 + "@example.test",
               "b@" + ".".join(["a" * 63] * 3) + "." + "b" * 60,  # 254 characters
               "b@" + "a" * 63 + ".test", "b@1.2"]
BAD_EMAILS = ["", "   ", "bob", "bob@", "@example.test", "bob@example", "bob@@example.test", "bob@ex@ample.test",
              ".bob@example.test", "bob.@example.test", "bo..b@example.test", "bob smith@example.test",
              "Bob <bob@example.test>", "bob@-example.test", "bob@example-.test", "bob@example.test-",
              "bob@example..test", "bob@.example.test", "bob@example.test.", "bob@exa_mple.test",
              "bob@exämple.test", "böb@example.test", "bob(x)@example.test", "bob\"@example.test",
              "x" * 65 + "@example.test", "b@" + ".".join(["a" * 63] * 3) + "." + "b" * 61,  # 255
              "b@" + "a" * 64 + ".test", "bob@example.test\u0085", "bob\n@example.test", 7, None,
              ["bob@example.test"]]
GOOD_TIMES = ["2026-01-31T12:00:00Z", "2026-01-31t12:00:00z", "2017-01-01T13:59:60.123456789+14:00",
              "2026-01-01T00:00:00-00:00", "2000-02-29T00:00:00.5+05:30"]
# The schema's pattern is the grammar only; the parser also refuses instants that do not exist (a day the month
# lacks, a leap second anywhere but 23:59:60 UTC: docs/HARDENING.md). Stricter than the schema is allowed.
CALENDAR_TIMES = ["1999-02-31T00:00:00.5+05:30", "2026-12-31T23:59:60.123456789+14:00", "2025-02-29T00:00:00Z",
                  "2026-04-31T12:00:00Z"]
BAD_TIMES = ["", "yesterday", "2026-01-31", "2026-01-31T12:00:00", "2026-01-31 12:00:00Z", "2026-13-01T00:00:00Z",
             "2026-00-01T00:00:00Z", "2026-01-32T00:00:00Z", "2026-01-31T24:00:00Z", "2026-01-31T12:60:00Z",
             "2026-01-31T12:00:61Z", "2026-01-31T12:00:00.Z", "2026-01-31T12:00:00+2:00", "2026-01-31T12:00:00+0200",
             "2026-01-31T12:00:00+24:00", "26-01-31T12:00:00Z", "2026-1-31T12:00:00Z", "2026-01-31T12:00:00ZZ",
             1767182400, None]


def cases():
    """(id, message, schema verdict, parser status). A schema verdict of None means "either": the parser is
    stricter there for a reason the schema cannot express (duplicate keys, size limit, Python's `$`)."""
    out = []

    def add(case_id, msg, schema_ok, parser):
        out.append(pytest.param(msg, schema_ok, parser, id=case_id))

    for name in COMMANDS:
        needs_actor, fields = TABLE[name]
        full = command(name)
        add(f"{name}-full", full, True, "ok")
        required_only = {k: v for k, v in full["data"].items() if fields[k][1]}
        add(f"{name}-required-fields-only", command(name, required_only), True, "ok")
        add(f"{name}-no-time-no-datacontenttype",
            with_attr(with_attr(full, "time", DROP), "datacontenttype", DROP), True, "ok")
        add(f"{name}-uppercase-ids", with_attr(full, "actorid", GOOD_UUIDS[0]), True, "ok")
        add(f"{name}-without-actorid", with_attr(full, "actorid", DROP), not needs_actor,
            "invalid" if needs_actor else "ok")
        for i, bad in enumerate([BAD_UUIDS[1], BAD_UUIDS[4], "", None, 5]):
            add(f"{name}-bad-actorid-{i}", with_attr(full, "actorid", bad), False, "invalid")
        add(f"{name}-unknown-envelope-attribute", with_attr(full, "subject", "x"), False, "invalid")
        add(f"{name}-correlationid-is-not-a-command-attribute", with_attr(full, "correlationid", uid()), False,
            "invalid")
        add(f"{name}-data-unknown-field", with_field(full, "extra", "x"), False, "invalid")
        add(f"{name}-data-not-an-object", with_attr(full, "data", [full["data"]]), False, "invalid")
        add(f"{name}-data-null", with_attr(full, "data", None), False, "invalid")
        add(f"{name}-no-data", with_attr(full, "data", DROP), False, "invalid")
        add(f"{name}-specversion-0.3", with_attr(full, "specversion", "0.3"), False, "invalid")
        add(f"{name}-specversion-number", with_attr(full, "specversion", 1.0), False, "invalid")
        add(f"{name}-no-specversion", with_attr(full, "specversion", DROP), False, "invalid")
        add(f"{name}-empty-source", with_attr(full, "source", ""), False, "invalid")
        add(f"{name}-no-source", with_attr(full, "source", DROP), False, "invalid")
        add(f"{name}-datacontenttype-text", with_attr(full, "datacontenttype", "text/plain"), False, "invalid")
        add(f"{name}-wrong-version", with_attr(full, "type", f"raikoo.command.{name}.v2"), False, "unknown_type")
        add(f"{name}-lower-case-type", with_attr(full, "type", f"raikoo.command.{name.lower()}.v1"), False,
            "unknown_type")
        add(f"{name}-no-type", with_attr(full, "type", DROP), False, "unknown_type")
        add(f"{name}-no-id", with_attr(full, "id", DROP), False, "not_command")
        add(f"{name}-bad-id", with_attr(full, "id", BAD_UUIDS[2]), False, "not_command")
        for key in fields:
            kind, required, lo, hi, nonblank = fields[key]
            add(f"{name}-missing-{key}", with_field(full, key, DROP), not required, "ok" if not required else "invalid")
            if kind == "UUID":
                for i, bad in enumerate(BAD_UUIDS):
                    # A trailing newline: the parser refuses it; Python's re lets "$" match before it.
                    schema_ok = None if isinstance(bad, str) and bad.endswith("\n") else False
                    add(f"{name}-{key}-bad-uuid-{i}", with_field(full, key, bad), schema_ok, "invalid")
                add(f"{name}-{key}-uppercase-uuid", with_field(full, key, GOOD_UUIDS[0]), True, "ok")
            elif kind == "EMAIL":
                for i, good in enumerate(GOOD_EMAILS):
                    add(f"{name}-{key}-good-email-{i}", with_field(full, key, good), True, "ok")
                for i, bad in enumerate(BAD_EMAILS):
                    add(f"{name}-{key}-bad-email-{i}", with_field(full, key, bad), False, "invalid")
                add(f"{name}-{key}-trailing-newline", with_field(full, key, "bob@example.test\n"), None, "invalid")
            elif kind in ("DAYS", "SEATS"):
                nullable = name == "SetOrganizationPolicy"
                for v in (lo, hi):
                    add(f"{name}-{key}-{v}", with_field(full, key, v), True, "ok")
                for i, bad in enumerate([lo - 1, hi + 1, 7.5, "7", True, [7]]):
                    add(f"{name}-{key}-bad-{i}", with_field(full, key, bad), False, "invalid")
                add(f"{name}-{key}-null", with_field(full, key, None), nullable, "ok" if nullable else "invalid")
            elif kind == "LOCALE":
                for i, good in enumerate(["en", "de-AT", "es-419", "fil"]):
                    add(f"{name}-{key}-good-{i}", with_field(full, key, good), True, "ok")
                for i, bad in enumerate(["", "EN", "de_AT", "de-at", "german", "de-AT-x", 7, ["de"]]):
                    add(f"{name}-{key}-bad-{i}", with_field(full, key, bad), False, "invalid")
                add(f"{name}-{key}-trailing-newline", with_field(full, key, "de\n"), None, "invalid")
            elif kind == "URL":
                for i, good in enumerate(["https://app.example.test", "http://127.0.0.1:8080/x"]):
                    add(f"{name}-{key}-good-{i}", with_field(full, key, good), True, "ok")
                for i, bad in enumerate(["", "ftp://x.test", "https://", "https://x.test/", "https:///x",
                                         "https://x .test", 7]):
                    add(f"{name}-{key}-bad-{i}", with_field(full, key, bad), False, "invalid")
            elif kind == "DOMAINS":
                for i, good in enumerate([[], ["EXAMPLE.test"], ["b.co"] * 100, None]):
                    add(f"{name}-{key}-good-{i}", with_field(full, key, good), True, "ok")
                for i, bad in enumerate([["b.co"] * 101, ["example"], ["@example.test"], ["-x.test"], [""],
                                         ["x.test."], "example.test", [7]]):
                    add(f"{name}-{key}-bad-{i}", with_field(full, key, bad), False, "invalid")
            elif kind == "BOOL":
                for i, bad in enumerate(["true", 1, 0, None, "false"]):
                    add(f"{name}-{key}-not-a-boolean-{i}", with_field(full, key, bad), False, "invalid")
                add(f"{name}-{key}-true", with_field(full, key, True), True, "ok")
                add(f"{name}-{key}-false", with_field(full, key, False), True, "ok")
            else:
                add(f"{name}-{key}-shortest", with_field(full, key, "x" * lo), True, "ok")
                if lo > 0:
                    add(f"{name}-{key}-empty", with_field(full, key, ""), False, "invalid")
                add(f"{name}-{key}-longest", with_field(full, key, "x" * hi), True, "ok")
                add(f"{name}-{key}-too-long", with_field(full, key, "x" * (hi + 1)), False, "invalid")
                if nonblank:
                    for i, blank in enumerate([" ", " " * hi, "\t\n", "\u00a0\u3000"]):
                        add(f"{name}-{key}-blank-{i}", with_field(full, key, blank), False, "invalid")
                    add(f"{name}-{key}-padded", with_field(full, key, " x "), True, "ok")
                # Lengths count characters, not bytes: both sides.
                add(f"{name}-{key}-longest-multibyte", with_field(full, key, "é" * (hi - 1) + "😀"), True, "ok")
                add(f"{name}-{key}-too-long-multibyte", with_field(full, key, "😀" * (hi + 1)), False, "invalid")
                for i, bad in enumerate([42, None, True, ["x"], {"x": 1}]):
                    add(f"{name}-{key}-not-a-string-{i}", with_field(full, key, bad), False, "invalid")
        for i, t in enumerate(GOOD_TIMES):
            add(f"{name}-good-time-{i}", with_attr(full, "time", t), True, "ok")
        for i, t in enumerate(BAD_TIMES):
            add(f"{name}-bad-time-{i}", with_attr(full, "time", t), False, "invalid")
        for i, t in enumerate(CALENDAR_TIMES):
            add(f"{name}-impossible-time-{i}", with_attr(full, "time", t), True, "invalid")
        add(f"{name}-time-trailing-newline", with_attr(full, "time", GOOD_TIMES[0] + "\n"), None, "invalid")

    # Messages that are no command at all.
    add("not-json", "{not json", False, "not_command")
    add("json-array", [command("RemoveMember")], False, "not_command")
    add("json-string", "\"raikoo\"", False, "not_command")
    add("unknown-command-name", command("RemoveMember", type="raikoo.command.DeleteEverything.v1"), False,
        "unknown_type")
    # The parser is stricter than any schema can be here.
    dup = json.dumps(command("RemoveMember"))
    add("duplicate-key", dup[:-1] + ', "source": "/other"}', None, "not_command")
    add("over-the-size-limit", command("RemoveMember", source="/" + "s" * 70000), None, "not_command")
    add("nul-in-a-name", command("CreateOrganization", {"name": "Ac\u0000me", "owner_user_id": uid()}), None,
        "not_command")
    return out


def parser_status(text):
    p = subprocess.run([os.path.join(BIN, "raikoo-parse-check")], input=text.encode(), capture_output=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    status, _, reason = p.stdout.decode().rstrip("\n").partition(" ")
    return status, reason


@pytest.mark.parametrize("msg, schema_ok, parser", cases())
def test_schema_and_the_workers_parser_agree_on_commands(msg, schema_ok, parser):
    text = msg if isinstance(msg, str) else json.dumps(msg, ensure_ascii=False)
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("type", "").startswith("raikoo.command.") and \
            schemacheck.schema_for_type(doc["type"]):
        rel = schemacheck.schema_for_type(doc["type"])
    elif isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        # A wrong type: judge it by the schema of the command it was built from.
        rel = "commands/RemoveMember.schema.json"
        for name in COMMANDS:
            if name in json.dumps(doc.get("type")) or set(doc["data"]) == set(FULL_DATA[name]):
                rel = f"commands/{name}.schema.json"
    else:
        rel = "commands/RemoveMember.schema.json"
    errs = [e.message for e in schemacheck.validator(rel).iter_errors(doc)] if doc is not None else ["not JSON"]
    status, reason = parser_status(text)
    if schema_ok is not None:
        assert (not errs) == schema_ok, f"schema {rel}: {errs or 'valid'}"
    assert status == parser, f"parser: {status} {reason}"
    # The contract: whatever the schema rejects, the worker's parser rejects too.
    if errs:
        assert status != "ok", f"the schema rejects ({errs}) but the parser accepts"
    if status == "ok":
        assert not errs


# ---- events, results and mail jobs: examples shaped like what the C code writes ----

def _c_sources():
    out = []
    for d in ("lib", "workers"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, d)):
            out += [os.path.join(dirpath, f) for f in files if f.endswith((".c", ".h"))]
    return {p: open(p).read() for p in out}


def test_every_message_type_the_c_code_writes_has_a_schema():
    emitted = set()
    for path, src in _c_sources().items():
        for m in re.finditer(r'\b(?:dom_emit|emit|outbox_event|add_event)\([^;]*?"([A-Z][A-Za-z]+)"', src):
            emitted.add(f"raikoo.event.{m.group(1)}.v1")
        emitted |= set(re.findall(r'"(raikoo\.(?:event|mail)\.[A-Za-z]+\.v1|raikoo\.result\.v1)"', src))
    assert {"raikoo.event.OrganizationCreated.v1", "raikoo.event.CommandRejected.v1", "raikoo.result.v1",
            "raikoo.mail.InvitationEmail.v1"} <= emitted
    missing = sorted(t for t in emitted if schemacheck.schema_for_type(t) is None)
    assert not missing
    assert all(t.split(".")[2] in EVENTS for t in emitted if t.startswith("raikoo.event."))


def envelope(type_, data, source="/raikoo/command-worker", **ext):
    msg = {"specversion": "1.0", "id": uid(), "source": source, "type": type_, "time": "2026-11-27T21:06:17.123Z",
           "datacontenttype": "application/json"}
    msg.update({k: v for k, v in ext.items() if v is not None})
    msg["data"] = data
    return msg


def ev(name, data, source="/raikoo/command-worker", actorid="", correlationid=""):
    return envelope(f"raikoo.event.{name}.v1", data, source, actorid=uid() if actorid == "" else actorid,
                    correlationid=uid() if correlationid == "" else correlationid)


ORG, USER, INV, JOB = uid(), uid(), uid(), uid()
T = "2026-12-04T21:06:17.123Z"
EVENT_EXAMPLES = [
    ev("OrganizationCreated", {"org_id": ORG, "name": "Acme", "owner_user_id": USER}),
    ev("UserCreated", {"user_id": USER, "email": "bob@example.test", "name": "Bob", "enabled": True}),
    ev("UserCreated", {"org_id": ORG, "user_id": USER, "email": "Bob@example.test", "name": "", "enabled": False}),
    ev("MembershipCreated", {"org_id": ORG, "user_id": USER, "is_owner": False, "can_manage_users": False}),
    ev("InvitationCreated", {"invitation_id": INV, "org_id": ORG, "user_id": USER, "email": "bob@example.test",
                             "kind": "existing", "grant_owner": False, "invited_by": uid(), "expires_at": T,
                             "grant_manage_users": True, "locale": "de-AT"}),
    ev("InvitationResent", {"invitation_id": INV, "org_id": ORG, "user_id": USER, "email": "bob@example.test",
                            "previous_status": "expired", "expires_at": T, "resend_count": 1, "locale": None}),
    ev("OrganizationPolicyChanged", {"org_id": ORG, "allowed_domains": ["example.test"], "seat_limit": 5,
                                     "default_expiry_days": None, "default_locale": "de",
                                     "app_url": "https://app.example.test", "updated_by": USER}),
    ev("InvitationAccepted", {"invitation_id": INV, "org_id": ORG, "user_id": USER, "email": "bob@example.test",
                              "kind": "new"}, actorid=None),
    ev("AccountActivated", {"invitation_id": INV, "org_id": ORG, "user_id": USER, "email": "bob@example.test"},
       actorid=None),
    ev("InvitationRemoved", {"invitation_id": INV, "org_id": ORG, "user_id": USER, "email": "bob@example.test",
                             "kind": "new", "previous_status": "pending", "membership_removed": True,
                             "account_removed": True}),
    ev("InvitationRemoved", {"invitation_id": INV, "org_id": ORG, "user_id": USER, "reason": "member_removed"}),
    ev("MemberRemoved", {"org_id": ORG, "user_id": USER, "was_owner": True, "account_removed": False}),
    ev("MemberRemoved", {"org_id": ORG, "user_id": USER, "reason": "invitation_removed"}),
    ev("MemberRoleChanged", {"org_id": ORG, "user_id": USER, "is_owner": True, "can_manage_users": True,
                             "was_owner": False, "could_manage_users": False}),
    ev("InvitationCodeRejected", {"invitation_id": INV, "org_id": ORG, "user_id": USER,
                                  "command_type": "ActivateAccount", "failed_attempts": 5, "locked": True},
       actorid=None),
    ev("CommandRejected", {"command_id": uid(), "command_type": "raikoo.command.Nope.v1",
                           "result_code": "unknown_command_type", "message": "This command type is not known"}),
    ev("CommandRejected", {"command_id": uid(), "command_type": "RemoveMember", "result_code": "last_owner",
                           "message": "An organization must keep at least one owner", "org_id": ORG}),
    ev("InvitationEmailSent", {"invitation_id": INV, "org_id": ORG, "job_id": JOB, "email": "bob@example.test",
                               "kind": "existing", "attempts": 1}, source="/raikoo/mailer", actorid=None),
    ev("InvitationEmailFailed", {"invitation_id": INV, "org_id": ORG, "job_id": JOB, "email": "bob@bounce.test",
                                 "kind": "new", "attempts": 1, "reason": "550 5.1.1 mailbox unavailable",
                                 "permanent": True}, source="/raikoo/mailer", actorid=None),
    ev("InvitationEmailFailed", {"invitation_id": INV, "org_id": ORG, "job_id": JOB, "email": "", "kind": "",
                                 "attempts": 0, "reason": "data.kind must be new or existing", "permanent": True},
       source="/raikoo/mailer", actorid=None, correlationid=None),
    ev("InvitationExpired", {"invitation_id": INV, "org_id": ORG, "email": "bob@example.test", "kind": "new",
                             "expired_at": T}, source="/raikoo/expiry-worker", actorid=None, correlationid=None),
    ev("InvitationReminderSent", {"invitation_id": INV, "org_id": ORG, "email": "bob@example.test", "kind": "new",
                                  "job_id": JOB, "expires_at": T}, source="/raikoo/expiry-worker", actorid=None,
       correlationid=None),
]
RESULT_EXAMPLES = [
    envelope("raikoo.result.v1", {"command_id": uid(), "command_type": "InviteNewUser", "status": "accepted",
                                  "code": None, "message": "Done", "org_id": ORG, "user_id": USER,
                                  "invitation_id": INV}, actorid=uid(), correlationid=uid()),
    envelope("raikoo.result.v1", {"command_id": uid(), "command_type": "unknown", "status": "rejected",
                                  "code": "unknown_command_type", "message": "This command type is not known",
                                  "org_id": None, "user_id": None, "invitation_id": None}, correlationid=uid()),
]
MAIL_EXAMPLES = [
    envelope("raikoo.mail.InvitationEmail.v1",
             {"job_id": JOB, "invitation_id": INV, "org_id": ORG, "org_name": "Acme", "kind": "new",
              "email": "bob@example.test", "name": "", "inviter_name": "Alice", "inviter_email": "alice@example.test",
              "grant_owner": False, "expires_at": T, "sealed_code": base64.b64encode(os.urandom(60)).decode()},
             actorid=uid(), correlationid=uid()),
    envelope("raikoo.mail.InvitationReminder.v1",
             {"job_id": JOB, "invitation_id": INV, "org_id": ORG, "org_name": "Acme", "kind": "existing",
              "email": "bob@example.test", "name": "Bob", "inviter_name": "Alice", "inviter_email": "",
              "grant_owner": False, "grant_manage_users": True, "expires_at": T, "invitation_job_id": uid(),
              "locale": "de-AT", "app_url": "https://acme.example"}, source="/raikoo/expiry-worker"),
]
ALL_EXAMPLES = EVENT_EXAMPLES + RESULT_EXAMPLES + MAIL_EXAMPLES


def _example_id(msg):
    return msg["type"].split(".")[2] if msg["type"] != "raikoo.result.v1" else "result"


def test_examples_cover_every_event_schema():
    assert {m["type"].split(".")[2] for m in EVENT_EXAMPLES} == set(EVENTS)


@pytest.mark.parametrize("msg", ALL_EXAMPLES, ids=_example_id)
def test_a_message_shaped_like_the_codes_output_is_valid(msg):
    assert schemacheck.errors(msg) == []


@pytest.mark.parametrize("msg", ALL_EXAMPLES, ids=_example_id)
def test_a_secret_or_unknown_field_anywhere_in_data_or_envelope_is_refused(msg):
    for name in schemacheck.SECRET_FIELDS + ("otp", "password"):
        if name in msg["data"]:
            continue
        for value in ("ABCD-EFGH-JKMN", None, 1):
            bad = with_field(msg, name, value)
            assert schemacheck.errors(bad), f"data.{name} = {value!r} accepted"
            assert schemacheck.errors(with_attr(msg, name, value)), f"{name} = {value!r} accepted in the envelope"


@pytest.mark.parametrize("msg", ALL_EXAMPLES, ids=_example_id)
def test_every_data_field_and_envelope_attribute_is_checked(msg):
    for key in msg["data"]:
        for value in (["x"], {"x": 1}):
            assert schemacheck.errors(with_field(msg, key, value)), f"data.{key} = {value!r} accepted"
    for key in ("specversion", "id", "source", "type", "time", "datacontenttype", "data"):
        assert schemacheck.errors(with_attr(msg, key, DROP)), f"{key} may be missing"
        assert schemacheck.errors(with_attr(msg, key, 7)), f"{key} may be a number"
    for key in ("id", "actorid", "correlationid"):
        assert schemacheck.errors(with_attr(msg, key, "not-a-uuid")), f"{key} may be no UUID"
    assert schemacheck.errors(with_attr(msg, "time", "yesterday"))
    assert schemacheck.errors(with_attr(msg, "type", msg["type"].replace(".v1", ".v2")))


def test_a_result_code_is_null_exactly_when_the_command_was_accepted():
    ok, rejected = RESULT_EXAMPLES
    assert schemacheck.errors(with_field(ok, "code", "invalid_code"))
    assert schemacheck.errors(with_field(rejected, "code", None))
    assert schemacheck.errors(with_field(rejected, "code", "no_such_code"))
    for code in RESULT_CODES:
        assert schemacheck.errors(with_field(rejected, "code", code)) == []
    assert schemacheck.errors(with_field(ok, "status", "pending"))
