#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/: small valid and near-valid inputs for each
harness. Run again after changing it (the files are committed); python3 tests/fuzz/seeds.py"""
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ID = "6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
ACTOR = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
ORG = "2c3d4e5f-6071-4b8c-9dae-1f2a3b4c5d6e"
USER = "3d4e5f60-7182-4c9d-8ebf-2a3b4c5d6e7f"
INV = "0d9c8b7a-6f5e-4d3c-9b2a-19f8e7d6c5b4"
HASH = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
SEALED = "A" * 80


def write(target, name, content):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())


def envelope(name, data, actor=ACTOR, **extra):
    ev = {"specversion": "1.0", "id": ID, "source": "/raikoo/cli", "type": f"raikoo.command.{name}.v1",
          "time": "2026-01-01T00:00:00.000Z", "datacontenttype": "application/json"}
    if actor:
        ev["actorid"] = actor
    ev["data"] = data
    ev.update(extra)
    return json.dumps(ev, ensure_ascii=False, separators=(",", ":"))


def cmd_seeds():
    valid = {
        "CreateOrganization": {"name": "Acme", "owner_user_id": USER},
        "CreateUser": {"email": "ann@example.com", "name": "Ann", "password_hash": HASH},
        "AddExistingUser": {"org_id": ORG, "email": "Bob@Example.COM", "owner": True},
        "InviteNewUser": {"org_id": ORG, "email": "carl@example.com", "name": "Carl", "owner": False},
        "AcceptInvitation": {"invitation_id": INV, "code": "ABCD-EFGH-JKMN"},
        "ActivateAccount": {"email": "dora@example.com", "code": "abcdefghjkmn", "password_hash": HASH},
        "ResendInvitation": {"org_id": ORG, "invitation_id": INV},
        "RemoveInvitation": {"org_id": ORG, "invitation_id": INV},
        "RemoveMember": {"org_id": ORG, "user_id": USER},
        "SetMemberRole": {"org_id": ORG, "user_id": USER, "owner": True, "can_manage_users": True},
    }
    for name, data in valid.items():
        write("cmd", f"valid-{name}", envelope(name, data, actor=None if name == "ActivateAccount" else ACTOR))
    near = [
        envelope("InviteNewUser", {"org_id": ORG, "email": "x@example.com", "name": "é" * 128}),
        envelope("a" * 79 + "é", {}),
        envelope("InviteNewUser", {"org_id": ORG, "email": "x@example.com", "é" * 40: 1}),
        envelope("CreateOrganization", {"name": "   ", "owner_user_id": USER}),
        envelope("RemoveMember", {"org_id": ORG.upper(), "user_id": USER}),
        envelope("SetMemberRole", {"org_id": ORG, "user_id": USER, "owner": "yes"}),
        envelope("CreateUser", {"email": "a@@b.c", "name": "", "password_hash": "x"}),
        envelope("AcceptInvitation", {"invitation_id": INV}, actor=None),
        envelope("RemoveMember", {"org_id": ORG, "user_id": USER}, extra_attr="x"),
        envelope("RemoveMember", {"org_id": ORG, "user_id": USER}, time="2026-13-01T00:00:00Z"),
        '{"id":"' + ID + '","type":"raikoo.command.Nope.v1"}',
        '{"id":"' + ID + '"',
        '{"id":"not-a-uuid"}',
        '[1,2,3]',
        'nonsense near here',
        '{"id":"' + ID + '","id":"' + ID + '"}',
    ]
    for i, t in enumerate(near):
        write("cmd", f"near-{i:02d}", t)
    cmd_header_seeds()


def binary(name, data, actor=ACTOR, value=None, **headers):
    """A binary-mode command (the CloudEvents Kafka binding) in the harness's header form: "CE\\n", then
    "name: value" lines, an empty line, the message value."""
    h = {"ce_specversion": "1.0", "ce_id": ID, "ce_source": "/upstream/app",
         "ce_type": f"raikoo.command.{name}.v1", "ce_time": "2026-01-01T00:00:00Z",
         "content-type": "application/json"}
    if actor:
        h["ce_actorid"] = actor
    h.update(headers)
    lines = "".join(f"{k}: {v}\n" for k, v in h.items() if v is not None)
    body = value if value is not None else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return "CE\n" + lines + "\n" + body


def cmd_header_seeds():
    org = {"name": "Acme", "owner_user_id": USER}
    seeds = {
        "valid": binary("CreateOrganization", org),
        "valid-activate": binary("ActivateAccount", {"email": "dora@example.com", "code": "abcdefghjkmn",
                                                     "password_hash": HASH}, actor=None),
        "valid-no-content-type": binary("RemoveMember", {"org_id": ORG, "user_id": USER},
                                        **{"content-type": None}),
        "structured-with-content-type": "CE\ncontent-type: application/cloudevents+json; charset=UTF-8\n\n"
                                        + envelope("RemoveMember", {"org_id": ORG, "user_id": USER}),
        "no-id": binary("CreateOrganization", org, ce_id=None),
        "bad-id": binary("CreateOrganization", org, ce_id="nope"),
        "bad-specversion": binary("CreateOrganization", org, ce_specversion="0.3"),
        "unknown-type": binary("Nope", org),
        "unknown-attribute": binary("CreateOrganization", org, ce_colour="red"),
        "ce-data": binary("CreateOrganization", org, ce_data="{}"),
        "value-not-json": binary("CreateOrganization", org, value="not json"),
        "value-empty": binary("CreateOrganization", org, value=""),
        "text-plain": binary("CreateOrganization", org, **{"content-type": "text/plain"}),
        "bad-time": binary("CreateOrganization", org, ce_time="yesterday"),
        "traceparent": binary("CreateOrganization", org, traceparent="00-0af7651916cd43dd8448eb211c80319c-"
                                                                     "b7ad6b7169203331-01"),
    }
    for name, text in seeds.items():
        write("cmd", f"ce-{name}", text)


def mail_job(**data_over):
    data = {"job_id": ID, "invitation_id": INV, "org_id": ORG, "org_name": "Acme", "kind": "new",
            "email": "ann@example.com", "name": "Ann", "inviter_name": "Bob", "inviter_email": "bob@example.com",
            "grant_owner": False, "expires_at": "2026-12-04T20:00:00.123Z", "sealed_code": SEALED}
    data.update(data_over)
    data = {k: v for k, v in data.items() if v is not None}
    ev = {"specversion": "1.0", "id": ID, "source": "/raikoo/command-worker", "type": "raikoo.mail.InvitationEmail.v1",
          "time": "2026-01-01T00:00:00.000Z", "datacontenttype": "application/json", "correlationid": INV,
          "actorid": ACTOR, "data": data}
    return json.dumps(ev, ensure_ascii=False, separators=(",", ":"))


def mail_seeds():
    write("mail", "valid-new", mail_job())
    write("mail", "valid-existing-owner", mail_job(kind="existing", grant_owner=True, expires_at="2026-12-04T22:00:00+02:00"))
    write("mail", "long-ascii-org", mail_job(org_name="A" * 1000))
    write("mail", "long-utf8-org", mail_job(org_name="Ünïcödé " * 60))
    write("mail", "long-ascii-name", mail_job(name="N" * 1200))
    write("mail", "long-utf8-name", mail_job(name="é" * 600, inviter_name="ü" * 300))
    write("mail", "control-chars", mail_job(name="Eve\r\nBcc: x@evil.example", org_name="Org\u2028Bad\u0085",
                                            inviter_name="\t=?UTF-8?B?QQ==?="))
    write("mail", "from-line", mail_job(org_name="x\nFrom me", name="From the start " * 6 + "."))
    write("mail", "bad-time", mail_job(expires_at="2026-01-+1T-1:-5:-9Z"))
    write("mail", "empty-org", mail_job(org_name=""))
    write("mail", "missing", mail_job(email=None))
    write("mail", "bad-kind", mail_job(kind="other"))
    write("mail", "not-json", "{\"data\":")
    write("mail", "german-manager", mail_job(locale="de-AT", grant_manage_users=True, app_url="https://a.example",
                                             org_name="Müller & Söhne"))
    write("mail", "reminder", reminder_job(locale="de"))


def reminder_job(**data_over):
    job = json.loads(mail_job(**data_over))
    del job["data"]["sealed_code"], job["actorid"], job["correlationid"]
    job["data"]["invitation_job_id"] = INV
    job.update(type="raikoo.mail.InvitationReminder.v1", source="/raikoo/expiry-worker")
    return json.dumps(job, ensure_ascii=False, separators=(",", ":"))


def conf_seeds():
    write("conf", "valid", "# comment\n\ndb.url = host=127.0.0.1 port=5432 dbname=raikoo user=raikoo password=s3cret\n"
          "kafka.bootstrap.servers=127.0.0.1:9092\nkafka.security.protocol=plaintext\nsmtp.password=hunter2\n"
          "batch.max=100\nlog.level=debug\n")
    write("conf", "url", "db.url=postgresql://raikoo:s3cr%40t@db.example:5432/raikoo?sslmode=require\n")
    write("conf", "errors", "no equals sign here\n")
    write("conf", "unknown", "bogus.key=1\n")
    write("conf", "unknown-utf8", "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé"
          "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé=1\n")
    write("conf", "numbers", "batch.max=99999999999999999999999\nrelay.batch=-1\nsmtp.port=0x19\nkafka.=x\n")
    write("conf", "crlf", "smtp.host=mail.example\r\nsmtp.port=587\r\n   # indented comment\r\n")


def email_seeds():
    for i, e in enumerate(["ann@example.com", " Bob.Smith+tag@Sub.Example.COM\t", "Raikoo <no-reply@raikoo.local>",
                           "\"Quoted, Name\" <a@b.example>", "Ünïcödé Name <u@example.org>", "a@b", "a..b@c.d",
                           ".a@b.c", "a@-b.c", "a@b-.c", "a@b..c", "x" * 65 + "@example.com",
                           "a@" + "b" * 64 + ".com", "<>", "Name <a@b.c> trailing", "=?UTF-8?B?QQ==?= <q@w.e>",
                           "a@b.c@d.e", "\"\" <a@b.co>"]):
        write("email", f"seed-{i:02d}", e)


def sealed_for_fuzz_key(code):
    """code sealed as the command worker seals it (an ephemeral public key, a nonce, crypto_box from that key)
    to fuzz_code.c's fixed key pair (seed 7 * 32), with a fixed ephemeral key and nonce: a seed that opens."""
    import base64
    from nacl.public import Box, PrivateKey
    mailer = PrivateKey.from_seed(bytes([7]) * 32)
    eph, nonce = PrivateKey.from_seed(bytes([3]) * 32), bytes([5]) * 24
    box = Box(eph, mailer.public_key).encrypt(code.encode(), nonce).ciphertext
    return base64.b64encode(bytes(eph.public_key) + nonce + box).decode()


def code_seeds():
    for i, c in enumerate(["ABCD-EFGH-JKMN", "abcd efgh jkmn", "0O1IL-23456789", "ABCDEFGHJKMNP", "ABCDEFGHJKU",
                           HASH, "$argon2id$v=19$m=1,t=1,p=1$c29tZXNhbHQ$aGFzaA", "$argon2i$v=19$m=65536,t=2,p=1$x$y",
                           ID, ID.upper(), SEALED, "x" * 79 + "=", "A" * 112, sealed_for_fuzz_key("ABCDEFGHJKMN")]):
        write("code", f"seed-{i:02d}", c)


def smtp_seeds():
    ok = [b"220 fuzz ESMTP", b"250-fuzz\r\n250-PIPELINING\r\n250 8BITMIME", b"250 sender ok", b"250 rcpt ok",
          b"354 go ahead", b"250 queued as 42", b"221 bye"]
    write("smtp", "ok", b"\x00" + b"\x00".join(ok))
    write("smtp", "two", b"\x02" + b"\x00".join(ok[:2] + [b"250 ok", b"250 ok", b"354 go", b"250 one", b"250 ok",
                                                          b"250 ok", b"354 go", b"250 two", b"221 bye"]))
    write("smtp", "refused-rcpt", b"\x00" + b"\x00".join(ok[:3] + [b"550 5.1.1 no such user", b"221 bye"]))
    write("smtp", "deferred", b"\x00" + b"\x00".join(ok[:3] + [b"451 4.7.1 try later \xff\xfe not utf-8", b"221 bye"]))
    write("smtp", "long-reply", b"\x00" + b"\x00".join(ok[:5] + [b"250 " + "é".encode() * 300, b"221"]))
    write("smtp", "multiline", b"\x00" + b"\x00".join(ok[:5] + [b"552-too\r\n552-big\r\n552 really", b"221"]))
    write("smtp", "auth-refused", b"\x01" + b"\x00".join([b"220 hi", b"250-hi\r\n250 AUTH PLAIN LOGIN",
                                                          b"535 5.7.8 bad credentials \xc3", b"250 ok", b"530 auth first"]))
    write("smtp", "auth-ok", b"\x01" + b"\x00".join([b"220 hi", b"250-hi\r\n250 AUTH PLAIN", b"235 ok"] + ok[2:]))
    write("smtp", "greeting-refused", b"\x00554 go away")
    write("smtp", "garbage", b"\x00hello\x00world\x00\r\n\x00")


def result_seeds():
    def res(**d):
        ev = {"specversion": "1.0", "id": INV, "source": "/raikoo/command-worker", "type": "raikoo.result.v1",
              "time": "2026-01-01T00:00:00.000Z", "datacontenttype": "application/json", "correlationid": ID,
              "data": d}
        return json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
    write("result", "accepted", res(command_id=ID, command_type="InviteNewUser", status="accepted", code=None,
                                    message="Done", org_id=ORG, user_id=USER, invitation_id=INV))
    write("result", "rejected", res(command_id=ID, command_type="RemoveMember", status="rejected",
                                    code="permission_denied", message="Not allowed (é)", org_id=ORG, user_id=None,
                                    invitation_id=None))
    write("result", "odd-types", res(command_id=ID, status=1, message=["x"], code={"a": 1.5e300}))
    write("result", "no-id", res(status="accepted"))
    write("result", "other-type", '{"type":"raikoo.event.X.v1","data":{"command_id":"x"}}')
    write("result", "not-json", '{"type":"raikoo.result.v1","data":{"command_id":"\\ud800"}}')


def smtpreply_seeds():
    write("smtpreply", "ok", b"250 2.0.0 Ok: queued as 4A1B2C")
    write("smtpreply", "bad-utf8", b"451 4.7.1 try later \xff\xfe")
    write("smtpreply", "crlf", b"550 5.1.1 <x@bounce.test>: Recipient address rejected\r\n")
    write("smtpreply", "utf8-ctl", "554 ééé 😀 \x1b[31m red".encode())
    write("smtpreply", "long-utf8", ("421 " + "é" * 150).encode())


def redact_seeds():
    # First byte: bit 0 = data_only (CloudEvents binary mode: the value is the data). Then the value.
    s, b = b"\x00", b"\x01"
    create_user = envelope("CreateUser", {"email": "ann@example.com", "name": "Ann", "password_hash": HASH})
    write("redact", "structured-create-user", s + create_user.encode())
    write("redact", "structured-accept", s + envelope("AcceptInvitation", {"invitation_id": INV,
                                                                          "code": "QX7R-M2KD-9PLV"}).encode())
    write("redact", "binary-activate", b + json.dumps({"email": "a@example.com", "code": "QX7RM2KD9PLV",
                                                       "password_hash": HASH}).encode())
    write("redact", "binary-bare-code", b + b"QX7R-M2KD-9PLV")
    write("redact", "binary-json-string", b + b'"QX7R-M2KD-9PLV"')
    write("redact", "malformed-password", s + b'{"id":"' + ID.encode() + b'","password":"hunter2", "x":')
    write("redact", "malformed-run-on", s + b'{"password":"hun"ter2"}')
    write("redact", "malformed-escaped-key", s + b'{"pass\\u0077ord":"hunter2"')
    write("redact", "nested", s + json.dumps({"a": [{"b": {"OTP": 123456, "sealedCode": "x"}}],
                                              "note": "code ABCD-EFGH-JKMN"}).encode())
    write("redact", "duplicate-keys", s + b'{"a":{"password":"p"},"a":1}')
    write("redact", "oversized", s + (create_user[:-2] + ',"pad":"' + "x" * 3000 + '"}}').encode())
    write("redact", "plain", s + b"not a command at all")
    write("redact", "binary-bytes", s + bytes(range(256)))
    write("redact", "placeholder", s + b'{"raikoo_redacted":{"bytes":3,"sha256":"00"}}')
    write("redact", "deep", s + b"[" * 3000 + b'{"code":"1"}' + b"]" * 3000)


def web_seeds():
    # First byte modulo 3: 0 a form body (bit 2 set: no session), 1 a session cookie, 2 a redirect target.
    token = "0123456789abcdef0123456789abcdef"
    write("web", "signin", b"\x00" + f"csrf={token}&email=ann%40example.com&password=p%C3%A4ss+word&next=%2Forgs".encode())
    write("web", "no-session", b"\x04csrf=" + token.encode())
    write("web", "bad-token", b"\x00csrf=0123&csrf=" + token.encode())
    write("web", "markup", b"\x00name=%3Cscript%3E%22%27%26&x&=y&&")
    write("web", "bad-escape", b"\x00a=%zz&b=%00&c=%C3%28")
    write("web", "cookie", b"\x01" + b"ab" * 32)
    write("web", "cookie-upper", b"\x01" + b"AB" * 32)
    write("web", "cookie-short", b"\x01abc")
    write("web", "next", b"\x02/orgs/2c3d4e5f-6071-4b8c-9dae-1f2a3b4c5d6e")
    write("web", "next-evil", b"\x02//evil.example/x")
    write("web", "next-scheme", b"\x02https://evil.example")


def bulk_seeds():
    write("bulk", "valid", "email,name,owner,manage_users\nann@example.com,Ann,yes,no\nBob@Example.COM,\"Bob, Jr.\",0,1\n")
    write("bulk", "bom-crlf", "\ufeffemail,name\r\nann@example.com,Ann\r\n\r\n  \r\ncarl@example.com,\"Carl \"\"C\"\"\"\r\n")
    write("bulk", "multiline", "email,name\nann@example.com,\"two\nlines\"\nann@EXAMPLE.com,dup\n")
    write("bulk", "unterminated", "email,name\nann@example.com,\"open\n")
    write("bulk", "bad-values", "email,name,owner\nnot-an-address,x,maybe\nb@example.com,,\xff\n")
    write("bulk", "quote-then-text", "email\n\"a\"b@example.com\n")


def dlq_seeds():
    write("dlq", "structured", "raikoo.dlq.reason: not JSON at line 1 column 2\nraikoo.dlq.origin: raikoo.commands/0/5\n"
          "raikoo.dlq.topic: raikoo.commands\nraikoo.dlq.partition: 0\nraikoo.dlq.offset: 5\n"
          "raikoo.dlq.timestamp: 1767225600000\nraikoo.dlq.group: raikoo-command-worker\n"
          "content-type: application/cloudevents+json\n\n" + envelope("CreateOrganization", {"name": "A", "owner_user_id": USER}))
    write("dlq", "binary", f"ce_id: {ID.upper()}\nce_specversion: 1.0\nraikoo.dlq.redacted: fields\n\n" + '{"code":"[redacted]"}')
    write("dlq", "whole", '\n{"raikoo_redacted":{"bytes":14,"sha256":"' + "0" * 64 + '"}}')
    write("dlq", "odd-headers", b"raikoo.dlq.offset: 99999999999999999999999\nraikoo.dlq.timestamp: -5\nce_id\n"
          b"raikoo.dlq.reason: \xff\xfe\nraikoo.dlq.redacted: whole\x00x\n\n\x00\x01")


def rfc3339_seeds():
    for name, t in (("z", "2026-01-31T12:00:00Z"), ("frac", "2026-01-31T12:00:00.123456Z"),
                    ("offset", "2026-12-04T22:00:00+02:00"), ("neg", "1970-01-01T00:00:00-23:59"),
                    ("lower", "2026-01-31t12:00:00z"), ("leap", "2016-12-31T23:59:60Z"),
                    ("feb31", "2026-02-31T00:00:00Z"), ("bad", "2026-13-01T00:00:00Z"), ("short", "2026-01-31T12:00Z"),
                    ("far", "9999-12-31T23:59:59.999999999+00:00"), ("zero", "0000-01-01T00:00:00Z"),
                    ("feb29", "2024-02-29T00:00:00Z"), ("feb29-1900", "1900-02-29T00:00:00Z"),
                    ("apr31", "2026-04-31T00:00:00Z"), ("h24", "2026-01-31T24:00:00Z"),
                    ("m61", "2026-01-31T12:61:00Z"), ("off24", "2026-01-31T12:00:00+24:00"),
                    ("leap-offset", "2017-01-01T00:59:60+01:00"), ("leap-noon", "2016-12-31T12:00:60Z"),
                    ("frac7", "2026-01-31T00:30:00.1234567+01:00")):
        write("rfc3339", name, t)


def template_seeds():
    # First byte modulo 3: 0 invitation.subject, 1 invitation.txt, 2 invitation.html.
    src = os.path.join(HERE, "..", "..", "lib", "templates")
    for i, name in enumerate(("invitation.subject", "invitation.txt", "invitation.html")):
        with open(os.path.join(src, name), "rb") as f:
            write("template", name, bytes([i]) + f.read())
    write("template", "sections", b"\x01{{#new}}New {{invitee_name}}{{/new}}{{#existing}}{{#owner}}O{{/owner}}{{/existing}}"
          b" {{code}} {{invitation_id}} {{email_shell}} {{app_url}}\n")
    write("template", "unknown", b"\x00{{nope}} {{#bad}}x{{/bad}}")
    write("template", "unclosed", b"\x02{{#new}}<p>{{org_name}}</p>")
    write("template", "long-subject", b"\x00" + b"{{org_name}} " * 200)
    write("template", "crlf-html", b"\x02<p>\r\n{{inviter_name}}\r\n\x7f\xff</p>")


if __name__ == "__main__":
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    cmd_seeds()
    mail_seeds()
    conf_seeds()
    email_seeds()
    code_seeds()
    smtp_seeds()
    smtpreply_seeds()
    result_seeds()
    redact_seeds()
    web_seeds()
    bulk_seeds()
    dlq_seeds()
    rfc3339_seeds()
    template_seeds()
