"""Reminder e-mails, on the real broker, database and SMTP server: the expiry worker queues one reminder per
invitation code reminder.before its expiry (InvitationReminderSent, a reminder mail job through the outbox),
the mailer sends it without a code and in the invitation's language; never twice, also with two expiry
workers at once; none when reminder.before is 0, none for accepted, removed, expired invitations or one whose
e-mail failed; a resend re-arms it. The session's expiry worker runs with reminders off (conftest): each test
runs expiry workers of its own."""
import json
import uuid
from datetime import datetime, timedelta, timezone

from conftest import Worker, raikoo, unique_email
from mailkit import (Invitation, code_in, high_watermarks, html_part, mails_to, produce, query, read_topic_range,
                     rfc3339, shown_code, text_part, wait_until)

MONTHS_DE = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
             "November", "Dezember"]


def expiry_worker(before="1h", **env):
    full = {"RAIKOO_REMINDER_BEFORE": before, "RAIKOO_EXPIRY_INTERVAL_MS": "20"}
    full.update(env)
    return Worker("raikoo-expiry-worker", env=full)


def due(db, locale=None, mail_state="sent", status="pending", expires_in=timedelta(minutes=30), kind="existing"):
    """An invitation whose e-mail went out (mail_state, without a message in the sink) and that expires within
    the workers' reminder.before."""
    inv = Invitation(db, kind=kind, expires_in=expires_in)
    db.cursor().execute(
        "UPDATE invitations SET mail_state = %s, locale = %s, status = %s, created_at = now() - interval '1 day',"
        " decided_at = CASE WHEN %s IN ('accepted', 'removed') THEN now() END WHERE id = %s",
        (mail_state, locale, status, status, inv.id))
    return inv


def reminder_row(db, inv_id):
    return query(db, "SELECT reminder_sent_at, reminder_job_id::text, mail_job_id::text, mail_state"
                     " FROM invitations WHERE id = %s", (inv_id,))[0]


def scanned(db, w):
    """Returns once worker w (not the session's expiry worker) has expired an invitation made here after it
    started: w's scan that did it, expiry then reminders, began after everything made before this call."""
    made = []

    def done():
        if any(f"invitation {i} (org" in w.output() for i in made):
            return True
        if not made or query(db, "SELECT status FROM invitations WHERE id = %s", (made[-1],))[0][0] == "expired":
            made.append(Invitation(db, expires_in=timedelta(seconds=-1)).id)  # the other worker took the last
        return False

    wait_until(done, 60, "a scan of the test's expiry worker")


def settled(db, inv_ids):
    """Waits until the outbox holds nothing more for these invitations (mail jobs are keyed by invitation)."""
    wait_until(lambda: query(db, "SELECT count(*) FROM outbox WHERE key = ANY(%s)", (list(inv_ids),))[0][0] == 0,
               60, "outbox drained")


def reminder_jobs(before, inv_ids):
    """The reminder mail jobs published on raikoo.mail since `before`, per invitation."""
    out = {}
    for m in read_topic_range("raikoo.mail", before, high_watermarks("raikoo.mail")):
        job = json.loads(m.value())
        if job["type"] == "raikoo.mail.InvitationReminder.v1" and job["data"]["invitation_id"] in inv_ids:
            out.setdefault(job["data"]["invitation_id"], []).append(job)
    return out


def test_a_reminder_is_queued_once_and_sent_without_a_code(workers, db, tail):
    events = tail("raikoo.events")
    mail_before = high_watermarks("raikoo.mail")
    inv = due(db)
    w = expiry_worker()
    try:
        msg = wait_until(lambda: mails_to(inv.email), 60, "reminder e-mail")[0]
        scanned(db, w)
        scanned(db, w)
    finally:
        assert w.stop() == 0
    sent_at, job_id, mail_job_id, mail_state = reminder_row(db, inv.id)
    assert sent_at is not None and job_id and mail_job_id == inv.job_id
    assert mail_state == "sent"  # the invitation e-mail's state: a reminder does not speak for it
    assert wait_until(lambda: inv.delivery(job_id)[0] == "sent", 30, "reminder delivery recorded")
    settled(db, [inv.id])
    jobs = reminder_jobs(mail_before, {inv.id})[inv.id]
    assert len(jobs) == 1 and jobs[0]["id"] == job_id and jobs[0]["source"] == "/raikoo/expiry-worker"
    assert jobs[0]["data"]["invitation_job_id"] == inv.job_id and "sealed_code" not in jobs[0]["data"]
    assert len(mails_to(inv.email)) == 1

    assert msg["Subject"] == "Reminder: your invitation to Acme on Raikoo expires soon"
    text = text_part(msg)
    assert code_in(text, "Invitation") == inv.id
    assert "Expires: " in text and "ask Alice Owner or an administrator of Acme to resend" in " ".join(text.split())
    raw = msg.raw.decode(errors="replace")
    assert inv.code not in raw and shown_code(inv.code) not in raw and "Confirmation code:" not in text
    assert inv.code not in html_part(msg)

    ev = events.wait_for(lambda m: json.loads(m.value())["type"] == "raikoo.event.InvitationReminderSent.v1"
                         and json.loads(m.value())["data"]["invitation_id"] == inv.id, timeout=60)
    data = json.loads(ev.value())["data"]
    assert ev.key().decode() == inv.org and data["job_id"] == job_id and data["email"] == inv.email
    assert "actorid" not in json.loads(ev.value()) and "correlationid" not in json.loads(ev.value())
    assert inv.code not in ev.value().decode()


def test_two_expiry_workers_send_each_reminder_once(workers, db):
    mail_before = high_watermarks("raikoo.mail")
    invs = [due(db) for _ in range(24)]
    ids = {i.id for i in invs}
    extra = [expiry_worker(RAIKOO_REMINDER_BATCH="3") for _ in range(2)]
    try:
        wait_until(lambda: query(db, "SELECT count(*) FROM invitations WHERE id = ANY(%s::uuid[])"
                                     " AND reminder_sent_at IS NOT NULL", (list(ids),))[0][0] == len(ids),
                   120, "every reminder queued")
        for w in extra:
            scanned(db, w)
    finally:
        assert [w.stop() for w in extra] == [0, 0]
    settled(db, ids)
    jobs = reminder_jobs(mail_before, ids)
    assert {k: len(v) for k, v in jobs.items()} == {i: 1 for i in ids}
    for inv in invs:
        wait_until(lambda: mails_to(inv.email), 60, "reminder e-mail")
    assert all(len(mails_to(inv.email)) == 1 for inv in invs)


def test_no_reminder_when_reminder_before_is_zero(workers, db):
    inv = due(db)
    w = expiry_worker(before="0")
    try:
        scanned(db, w)
        scanned(db, w)
    finally:
        assert w.stop() == 0
    assert "(off)" in w.output()
    assert reminder_row(db, inv.id)[0] is None and mails_to(inv.email) == []


def test_no_reminder_for_decided_expired_undelivered_or_short_lived_invitations(workers, db):
    others = [due(db, status="accepted"), due(db, status="removed"), due(db, status="expired"),
              due(db, mail_state="failed"), due(db, mail_state="queued"),
              due(db, expires_in=timedelta(hours=3))]  # not due yet within 1h
    # Valid for 40 minutes in all, less than reminder.before (1h): a reminder would follow the invitation at once.
    short = due(db)
    db.cursor().execute("UPDATE invitations SET created_at = now() - interval '10 minutes' WHERE id = %s", (short.id,))
    others.append(short)
    control = due(db)
    w = expiry_worker()
    try:
        wait_until(lambda: mails_to(control.email), 60, "the control invitation's reminder")
        scanned(db, w)
        scanned(db, w)
    finally:
        assert w.stop() == 0
    for inv in others:
        assert reminder_row(db, inv.id)[0] is None, inv.mail_state()
        assert mails_to(inv.email) == []


def command(results, type_name, data, actor=None, key=None):
    cid = str(uuid.uuid4())
    ev = {"specversion": "1.0", "id": cid, "source": "/tests", "type": f"raikoo.command.{type_name}.v1",
          "time": rfc3339(datetime.now(timezone.utc)), "datacontenttype": "application/json", "data": data}
    if actor:
        ev["actorid"] = actor
    produce("raikoo.commands", key or data.get("org_id") or cid, ev)
    return json.loads(results.wait_for(lambda m: m.key() == cid.encode(), timeout=60).value())["data"]


def test_a_resend_rearms_the_reminder_and_it_is_in_the_invitations_language(workers, db, tail):
    results = tail("raikoo.results")
    admin = raikoo("bootstrap-admin", "--email", unique_email("admin"), check=True).stdout.strip()
    org = command(results, "CreateOrganization", {"name": "Acme Reminders", "owner_user_id": admin}, actor=admin,
                  key=admin)
    email = unique_email("remind")
    res = command(results, "InviteNewUser", {"org_id": org["org_id"], "email": email, "name": "Rita"}, actor=admin)
    assert res["status"] == "accepted", res
    inv_id = res["invitation_id"]
    first = wait_until(lambda: mails_to(email), 60, "invitation e-mail")[0]
    code = code_in(text_part(first), "One-time password")
    wait_until(lambda: reminder_row(db, inv_id)[3] == "sent", 60, "mail_state sent")
    # Sent a day ago and expiring in 30 minutes: due (a code that lives less than reminder.before gets none).
    soon = ("UPDATE invitations SET expires_at = now() + interval '30 minutes', locale = 'de',"
            " created_at = now() - interval '1 day', resent_at = resent_at - interval '1 day' WHERE id = %s")
    db.cursor().execute(soon, (inv_id,))

    def reminders():
        return [m for m in mails_to(email) if m["Subject"].startswith("Erinnerung:")]

    w = expiry_worker()
    try:
        reminder = wait_until(reminders, 60, "first reminder")[0]
        first_job = reminder_row(db, inv_id)[1]
        assert command(results, "ResendInvitation", {"org_id": org["org_id"], "invitation_id": inv_id},
                       actor=admin)["status"] == "accepted"
        assert reminder_row(db, inv_id)[0] is None  # re-armed for the new code
        wait_until(lambda: len(mails_to(email)) == 3, 60, "the resent invitation e-mail")
        wait_until(lambda: reminder_row(db, inv_id)[3] == "sent", 60, "mail_state sent again")
        scanned(db, w)
        assert len(reminders()) == 1  # the new code expires in 7 days: not due
        db.cursor().execute(soon, (inv_id,))
        wait_until(lambda: len(reminders()) == 2, 60, "second reminder")
        scanned(db, w)
    finally:
        assert w.stop() == 0
    assert reminder_row(db, inv_id)[1] != first_job and len(reminders()) == 2 and len(mails_to(email)) == 4

    assert reminder["Subject"] == "Erinnerung: Ihre Einladung zur Organisation Acme Reminders auf Raikoo läuft bald ab"
    assert reminder["Content-Language"] == "de"
    text = text_part(reminder)
    assert text.startswith("Guten Tag Rita,\n") and "als Mitglied beizutreten" in text
    assert code_in(text, "Einladung") == inv_id and code_in(text, "Gültig bis").endswith(" UTC")
    assert any(f" {m} " in code_in(text, "Gültig bis") for m in MONTHS_DE)
    assert code not in reminder.raw.decode(errors="replace") and code.replace("-", "") not in text


def reminder_job(inv, job_id, **data_overrides):
    """A reminder mail job for an Invitation of mailkit, as the expiry worker writes it."""
    job = inv.job(job_id=job_id, invitation_job_id=inv.job_id, **data_overrides)
    del job["data"]["sealed_code"], job["actorid"], job["correlationid"]
    job.update(type="raikoo.mail.InvitationReminder.v1", source="/raikoo/expiry-worker")
    return job


def test_the_mailer_sends_only_the_invitations_current_reminder(workers, db):
    current, stale, rearmed = (Invitation(db) for _ in range(3))
    jobs = {inv.id: str(uuid.uuid4()) for inv in (current, stale, rearmed)}
    cur = db.cursor()
    for inv in (current, stale, rearmed):
        cur.execute("UPDATE invitations SET mail_state = 'sent', reminder_sent_at = now(), reminder_job_id = %s"
                    " WHERE id = %s", (jobs[inv.id], inv.id))
    # A resend cleared rearmed's reminder_sent_at; stale's reminder was replaced by a newer one.
    cur.execute("UPDATE invitations SET reminder_sent_at = NULL WHERE id = %s", (rearmed.id,))
    old = str(uuid.uuid4())
    produce("raikoo.mail", stale.id, reminder_job(stale, old))
    produce("raikoo.mail", rearmed.id, reminder_job(rearmed, jobs[rearmed.id]))
    produce("raikoo.mail", current.id, reminder_job(current, jobs[current.id], locale="de"))
    wait_until(lambda: (stale.delivery(old) or ("",))[0] == "superseded", 60, "stale reminder retired")
    wait_until(lambda: (rearmed.delivery(jobs[rearmed.id]) or ("",))[0] == "superseded", 60, "re-armed retired")
    msg = wait_until(lambda: mails_to(current.email), 60, "the current reminder")[0]
    assert msg["Subject"].startswith("Erinnerung: ") and current.code not in msg.raw.decode(errors="replace")
    assert wait_until(lambda: current.delivery(jobs[current.id])[0] == "sent", 30, "delivery recorded")
    assert mails_to(stale.email) == [] and mails_to(rearmed.email) == []
    # The invitation e-mail's state is its own: the reminder did not touch it.
    assert [i.mail_state()[1] for i in (current, stale, rearmed)] == ["sent", "sent", "sent"]
