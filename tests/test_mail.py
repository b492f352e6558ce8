"""The mailer, on the real broker, database and SMTP server: invitation e-mails arrive with a code that
works, transient failures are retried without loss or duplicates, permanent ones are reported, headers
cannot be injected, and no code leaks into events or logs."""
import json
import os
import signal
import subprocess
import tempfile
import uuid
from datetime import datetime, timezone

from conftest import BIN, drop_database, fresh_database, raikoo, unique_email
from cryptokit import argon2id_hash
from mailkit import (Invitation, code_in, create_topic, html_part, mails_to, produce, query, rfc3339, shown_code,
                     start_mailer, text_part, wait_until)


def events_named(tail, name, **data):
    """Events of the given name seen by tail whose data has all the given values."""
    out = []
    for m in tail.poll_new(0.2):
        ev = json.loads(m.value())
        if ev.get("type") == f"raikoo.event.{name}.v1" and all(ev["data"].get(k) == v for k, v in data.items()):
            out.append(ev)
    return out


def command(tail_results, type_name, data, actor=None, key=None):
    """Publishes one command to raikoo.commands and waits for its result; returns (command id, result data)."""
    cid = str(uuid.uuid4())
    ev = {"specversion": "1.0", "id": cid, "source": "/tests", "type": f"raikoo.command.{type_name}.v1",
          "time": rfc3339(datetime.now(timezone.utc)), "datacontenttype": "application/json", "data": data}
    if actor:
        ev["actorid"] = actor
    produce("raikoo.commands", key or data.get("org_id") or data.get("email") or cid, ev)
    m = tail_results.wait_for(lambda m: m.key() == cid.encode(), timeout=60)
    return cid, json.loads(m.value())["data"]


def mailer(tmp_path, topic, **env):
    return start_mailer(topic, **env)


def session_logs(workers):
    return "".join(w.output() for w in workers.values())


def test_new_user_gets_an_email_whose_one_time_password_activates_the_account(workers, tail, db):
    results, events = tail("raikoo.results"), tail("raikoo.events")
    admin = raikoo("bootstrap-admin", "--email", unique_email("admin"), check=True).stdout.strip()
    _, org = command(results, "CreateOrganization", {"name": "Acme Rockets", "owner_user_id": admin}, actor=admin,
                     key=admin)
    assert org["status"] == "accepted", org
    email = unique_email("newbie")
    cid, res = command(results, "InviteNewUser", {"org_id": org["org_id"], "email": email, "name": "Nora New"},
                       actor=admin)
    assert res["status"] == "accepted", res
    msg = wait_until(lambda: mails_to(email), 60, "invitation e-mail")[0]
    assert msg["Subject"] == "You're invited to join Acme Rockets on Raikoo"
    text = text_part(msg)
    assert code_in(text, "Invitation") == res["invitation_id"]
    code = code_in(text, "One-time password")
    assert code and len(code) == 14 and code[4] == "-" and code[9] == "-"
    assert code_in(text, "Confirmation code") is None
    assert f"raikoo activate --email {email}\n" in text and "--code" not in text
    assert "Expires: " in text and "http://localhost:8080" in text
    assert code in html_part(msg)

    sent = wait_until(lambda: events_named(events, "InvitationEmailSent", invitation_id=res["invitation_id"]),
                      60, "InvitationEmailSent")[0]
    assert sent["correlationid"] == cid and sent["data"]["org_id"] == org["org_id"]
    assert wait_until(lambda: query(db, "SELECT mail_state FROM invitations WHERE id = %s AND mail_state = 'sent'",
                                    (res["invitation_id"],)), 30, "mail_state sent")

    _, act = command(results, "ActivateAccount", {"email": email, "code": code.lower(),
                                                  "password_hash": argon2id_hash("correct horse")})
    assert act["status"] == "accepted", act
    assert query(db, "SELECT enabled FROM users WHERE lower(email) = lower(%s)", (email,)) == [(True,)]

    # The code is in the e-mail and nowhere else: not in any event, not in any worker's log.
    canonical = code.replace("-", "")
    events.poll(1)
    for m in events.seen:
        assert code not in m.value().decode() and canonical not in m.value().decode()
        assert "sealed_code" not in m.value().decode()
    logs = session_logs(workers)
    assert code not in logs and canonical not in logs


def test_existing_user_gets_a_confirmation_code_that_accepts_the_invitation(workers, tail, db):
    results = tail("raikoo.results")
    admin = raikoo("bootstrap-admin", "--email", unique_email("admin"), check=True).stdout.strip()
    _, org = command(results, "CreateOrganization", {"name": "Zoë's Café", "owner_user_id": admin}, actor=admin,
                     key=admin)
    email = unique_email("existing")
    _, user = command(results, "CreateUser", {"email": email, "name": "Eve Existing",
                                              "password_hash": argon2id_hash("pw-eve")}, actor=admin)
    assert user["status"] == "accepted", user
    _, res = command(results, "AddExistingUser", {"org_id": org["org_id"], "email": email}, actor=admin)
    assert res["status"] == "accepted", res
    msg = wait_until(lambda: mails_to(email), 60, "invitation e-mail")[0]
    assert msg["Subject"] == "You're invited to join Zoë's Café on Raikoo"
    text = text_part(msg)
    code = code_in(text, "Confirmation code")
    assert code and code_in(text, "One-time password") is None
    assert f"raikoo accept --invitation {res['invitation_id']}\n" in text and "--code" not in text
    _, acc = command(results, "AcceptInvitation", {"invitation_id": res["invitation_id"], "code": code},
                     actor=user["user_id"])
    assert acc["status"] == "accepted", acc


def test_a_bounced_address_ends_in_failed_with_an_event(workers, tail, db):
    results, events = tail("raikoo.results"), tail("raikoo.events")
    admin = raikoo("bootstrap-admin", "--email", unique_email("admin"), check=True).stdout.strip()
    _, org = command(results, "CreateOrganization", {"name": "Bouncers", "owner_user_id": admin}, actor=admin,
                     key=admin)
    email = f"nobody-{uuid.uuid4().hex[:8]}@bounce.test"
    cid, res = command(results, "InviteNewUser", {"org_id": org["org_id"], "email": email}, actor=admin)
    assert res["status"] == "accepted", res
    failed = wait_until(lambda: events_named(events, "InvitationEmailFailed", invitation_id=res["invitation_id"]),
                        60, "InvitationEmailFailed")[0]
    assert failed["correlationid"] == cid
    assert failed["data"]["permanent"] is True and "550" in failed["data"]["reason"]
    assert failed["data"]["attempts"] == 1
    status, state, error = query(db, "SELECT status, mail_state, mail_error FROM invitations WHERE id = %s",
                                 (res["invitation_id"],))[0]
    assert (status, state) == ("pending", "failed") and "550" in error
    assert mails_to(email) == []
    # The state shows where people look: `raikoo invitations`.
    listing = raikoo("invitations", "--org", org["org_id"], check=True).stdout
    line = [row for row in listing.splitlines() if email in row]
    assert len(line) == 1 and " failed " in line[0] and "550" in line[0]


def outbox_events(db, name, **data):
    """Events of the given name the mailer wrote to the outbox of database db (one no relay serves) whose
    data has all the given values."""
    out = []
    for (payload,) in query(db, "SELECT payload FROM outbox WHERE topic = 'raikoo.events' ORDER BY id"):
        ev = json.loads(payload)
        if ev.get("type") == f"raikoo.event.{name}.v1" and all(ev["data"].get(k) == v for k, v in data.items()):
            out.append(ev)
    return out


# The two retry tests run their own mailer on a database of their own (pdb): the session's mailer takes
# every due retry of the database it serves, and would count attempts of its own on these jobs.
def test_a_waiting_retry_does_not_block_other_mail(pdb):
    url, db = pdb
    topic = create_topic("raikoo.test.mail")
    w = start_mailer(topic, RAIKOO_DB_URL=url, RAIKOO_MAIL_RETRY_BASE_MS=60000)
    try:
        slow = Invitation(db, email=f"later-{uuid.uuid4().hex[:8]}@tempfail.test")
        produce(topic, slow.id, slow.job())
        wait_until(lambda: (slow.delivery() or ("",))[0] == "retrying", 60, "451 recorded as retrying")
        assert "451" in slow.delivery()[2]
        fast = Invitation(db)
        produce(topic, fast.id, fast.job())
        wait_until(lambda: mails_to(fast.email), 60, "the next mail")
        assert slow.delivery()[0] == "retrying"
    finally:
        assert w.stop() == 0


def test_transient_failures_give_up_after_the_configured_attempts(pdb):
    url, db = pdb
    topic = create_topic("raikoo.test.mail")
    inv = Invitation(db, email=f"deferred-{uuid.uuid4().hex[:8]}@tempfail.test")
    w = start_mailer(topic, RAIKOO_DB_URL=url, RAIKOO_MAIL_RETRY_BASE_MS=100, RAIKOO_MAIL_RETRY_MAX=3)
    try:
        produce(topic, inv.id, inv.job())
        ev = wait_until(lambda: outbox_events(db, "InvitationEmailFailed", invitation_id=inv.id), 60,
                        "InvitationEmailFailed")[0]
        assert ev["data"]["attempts"] == 3 and ev["data"]["permanent"] is False
        assert "gave up after 3 attempts" in ev["data"]["reason"] and "451" in ev["data"]["reason"]
        assert inv.delivery()[:2] == ("failed", 3)
        assert inv.mail_state()[1] == "failed"
        assert len(outbox_events(db, "InvitationEmailFailed", invitation_id=inv.id)) == 1
    finally:
        assert w.stop() == 0


def test_a_redelivered_job_is_not_sent_twice(workers, db):
    inv = Invitation(db)
    produce("raikoo.mail", inv.id, inv.job())
    wait_until(lambda: mails_to(inv.email), 60, "first delivery")
    wait_until(lambda: inv.delivery()[0] == "sent", 30, "sent recorded")
    produce("raikoo.mail", inv.id, inv.job())
    wait_until(lambda: f"mail job {inv.job_id} for invitation {inv.id} seen before (sent)" in
               workers["raikoo-mailer"].output(), 60, "redelivery noticed")
    assert len(mails_to(inv.email)) == 1
    assert inv.delivery()[:2] == ("sent", 1)


def test_a_superseded_or_decided_invitation_gets_no_mail(workers, db):
    resent = Invitation(db)
    old_job = str(uuid.uuid4())  # the invitation's current job is another one: a resend replaced this one
    produce("raikoo.mail", resent.id, resent.job(job_id=old_job))
    removed = Invitation(db)
    query_db = db.cursor()
    query_db.execute("UPDATE invitations SET status = 'removed', decided_at = now() WHERE id = %s", (removed.id,))
    produce("raikoo.mail", removed.id, removed.job())
    wait_until(lambda: (resent.delivery(old_job) or ("",))[0] == "superseded", 60, "superseded by resend")
    wait_until(lambda: (removed.delivery() or ("",))[0] == "superseded", 60, "superseded by removal")
    assert "resend" in resent.delivery(old_job)[2] and "removed" in removed.delivery()[2]
    assert mails_to(resent.email) == [] and mails_to(removed.email) == []
    assert resent.mail_state()[1] == "queued"


def test_non_ascii_names_are_encoded_words_and_survive_decoding(workers, db):
    inv = Invitation(db, name="Zoë Ünïcode 山田太郎", org_name="Société Générale des Crêpes ☕",
                     inviter_name="Ådne Øvrebø")
    produce("raikoo.mail", inv.id, inv.job())
    msg = wait_until(lambda: mails_to(inv.email), 60, "e-mail")[0]
    raw_headers = msg.raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    raw_headers.decode("ascii")  # 7-bit clean: every non-ASCII character is in an encoded-word
    assert b"=?UTF-8?B?" in raw_headers
    assert msg["Subject"] == "You're invited to join Société Générale des Crêpes ☕ on Raikoo"
    assert msg["To"].addresses[0].display_name == "Zoë Ünïcode 山田太郎"
    assert msg["To"].addresses[0].addr_spec == inv.email
    for h in ("Date", "Message-ID", "From", "MIME-Version"):
        assert msg[h], h
    assert msg.get_content_type() == "multipart/alternative"
    assert "Hello Zoë Ünïcode 山田太郎" in text_part(msg) and "Ådne Øvrebø" in text_part(msg)
    for line in raw_headers.split(b"\n"):
        assert len(line) <= 78, line


def test_a_job_with_its_code_in_crypto_box_seals_form_is_still_sent(workers, db):
    # Jobs written before the command worker sealed codes with a key pair of its own for a while carry
    # crypto_box_seal's form (80 characters); a mailer of today opens both.
    inv = Invitation(db, kind="new")
    job = inv.job(anon_seal=True)
    assert len(job["data"]["sealed_code"]) == 80
    produce("raikoo.mail", inv.id, job)
    msg = wait_until(lambda: mails_to(inv.email), 60, "e-mail")[0]
    assert code_in(text_part(msg), "One-time password") == shown_code(inv.code)


def test_control_characters_in_names_cannot_inject_headers_or_lines(workers, db):
    evil_name = "Mallory\r\nBcc: victim@example.test\r\nX-Injected: name\nOne-time password: AAAA-AAAA-AAAA"
    evil_org = "Evil Org\r\nX-Injected-Org: 1\r\n\r\nbody?"
    inv = Invitation(db, kind="new", name=evil_name, org_name=evil_org, inviter_name="<script>alert(1)</script>")
    produce("raikoo.mail", inv.id, inv.job())
    msg = wait_until(lambda: mails_to(inv.email), 60, "e-mail")[0]
    assert msg["X-Injected"] is None and msg["X-Injected-Org"] is None and msg["Bcc"] is None
    assert msg["X-RcptTo"].strip() == inv.email  # the only recipient
    assert "\n" not in msg["Subject"] and msg["Subject"].startswith("You're invited to join Evil Org")
    assert msg["To"].addresses[0].addr_spec == inv.email
    text = text_part(msg)
    passwords = [line for line in text.splitlines() if line.startswith("One-time password:")]
    assert passwords == [f"One-time password: {shown_code(inv.code)}"]
    html = html_part(msg)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert mails_to("victim@example.test") == []


def test_templates_can_be_replaced_and_a_broken_one_stops_the_mailer_at_start(tmp_path, db):
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "invitation.subject").write_text("Join {{org_name}} now ({{role}})\n")
    topic = create_topic("raikoo.test.mail")
    inv = Invitation(db, org_name="Custom Co")
    w = mailer(tmp_path, topic, RAIKOO_MAIL_TEMPLATES=tdir)
    try:
        produce(topic, inv.id, inv.job())
        msg = wait_until(lambda: mails_to(inv.email), 60, "e-mail")[0]
        assert msg["Subject"] == "Join Custom Co now (member)"
        assert code_in(text_part(msg), "Confirmation code") == shown_code(inv.code)  # built-in text part
    finally:
        assert w.stop() == 0
    (tdir / "invitation.txt").write_text("Hello {{nmae}}\n")
    p = subprocess.run([os.path.join(BIN, "raikoo-mailer")], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, RAIKOO_MAIL_TEMPLATES=str(tdir)))
    assert p.returncode == 2
    assert "template invitation.txt:1: unknown placeholder" in p.stderr and "{{nmae}}" in p.stderr


def test_mailer_refuses_an_unmigrated_database_and_says_what_to_do():
    name = "raikoo_empty_" + uuid.uuid4().hex[:8]
    url = fresh_database(name, migrate=False)
    try:
        for prog in ("raikoo-mailer", "raikoo-expiry-worker"):
            p = subprocess.run([os.path.join(BIN, prog)], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, RAIKOO_DB_URL=url))
            assert p.returncode == 3, (prog, p.stderr)
            assert "run `raikoo migrate` first" in p.stderr, (prog, p.stderr)
    finally:
        drop_database(name)


def test_mailer_reports_unreachable_services_clearly():
    """An unreachable service is waited for (issue 9, item 11), with one line saying which and why."""
    import time
    for env, line in ((dict(RAIKOO_DB_URL="host=127.0.0.1 port=1 dbname=raikoo user=raikoo"),
                       "cannot connect to PostgreSQL"),
                      (dict(RAIKOO_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"), "cannot reach Kafka at 127.0.0.1:1")):
        with tempfile.TemporaryFile("w+") as log:
            p = subprocess.Popen([os.path.join(BIN, "raikoo-mailer")], stdout=subprocess.DEVNULL, stderr=log,
                                 text=True, env=dict(os.environ, **env))

            def said():
                log.seek(0)
                return line in log.read() or p.poll() is not None
            wait_until(said, 60, f"the mailer says {line!r}")
            # Its retries come after 0.2, 0.6 and 1.4 s: several attempts while it waits, still one line.
            time.sleep(2)
            assert p.poll() is None, "the mailer must wait for the service, not exit"
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=30)
            log.seek(0)
            err = log.read()
        assert p.returncode == 0, err
        assert err.count(line) == 1 and "waiting for it" in err, err


def test_workers_have_help():
    for prog in ("raikoo-mailer", "raikoo-expiry-worker"):
        p = subprocess.run([os.path.join(BIN, prog), "--help"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout.startswith(f"usage: {prog} [--config FILE]")


def test_mailer_stops_cleanly_on_sigint(tmp_path):
    topic = create_topic("raikoo.test.mail")
    w = mailer(tmp_path, topic)
    wait_until(lambda: "mailer started" in w.output(), 60, "mailer started")
    assert w.stop(signal.SIGINT) == 0
    assert "mailer stopping" in w.output()
