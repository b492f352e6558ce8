"""The e-mail's language, on the real broker, database and SMTP server: a job's locale picks the templates
(de-AT, then de, then English), dates are written in that language, the role line and the link follow the
job, and an operator's templates work per locale (mail.templates/<tag>/)."""
import os
import subprocess

from conftest import BIN

from mailkit import (Invitation, code_in, create_topic, html_part, mails_to, produce, shown_code, start_mailer,
                     text_part, wait_until)

MONTHS_DE = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
             "November", "Dezember"]
MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"]


def german_date(dt):
    return f"{dt.day}. {MONTHS_DE[dt.month - 1]} {dt.year}, {dt:%H:%M} UTC"


def english_date(dt):
    return f"{MONTHS_EN[dt.month - 1]} {dt.day}, {dt.year}, {dt:%H:%M} UTC"


def test_a_german_invitation_arrives_in_german(workers, db):
    inv = Invitation(db, org_name="Müller & Söhne")
    produce("raikoo.mail", inv.id, inv.job(locale="de-AT", grant_manage_users=True,
                                           app_url="https://muller.example"))
    msg = wait_until(lambda: mails_to(inv.email), 60, "German invitation e-mail")[0]
    assert msg["Subject"] == "Einladung zur Organisation Müller & Söhne auf Raikoo"
    assert msg["Content-Language"] == "de"
    text = text_part(msg)
    assert text.startswith("Guten Tag Bob Invitee,\n")
    assert "hat Sie eingeladen" in text and "als Benutzerverwalter beizutreten" in text
    assert code_in(text, "Bestätigungscode") == shown_code(inv.code)
    assert code_in(text, "Gültig bis") == german_date(inv.expires_at)
    assert code_in(text, "Einladung") == inv.id
    assert f"https://muller.example/invitations/{inv.id}" in text and "localhost:8080" not in text
    assert "Confirmation code" not in text and "Expires" not in text
    html = html_part(msg)
    assert '<html lang="de">' in html and shown_code(inv.code) in html and german_date(inv.expires_at) in html


def test_an_unknown_locale_falls_back_to_english_and_the_role_follows_the_job(workers, db):
    fr = Invitation(db, kind="new")
    owner = Invitation(db)
    produce("raikoo.mail", fr.id, fr.job(locale="fr"))
    produce("raikoo.mail", owner.id, owner.job(locale="en-GB", grant_owner=True, grant_manage_users=True))
    msg = wait_until(lambda: mails_to(fr.email), 60, "e-mail of the fr job")[0]
    assert msg["Subject"] == "You're invited to join Acme on Raikoo" and msg["Content-Language"] == "en"
    text = text_part(msg)
    assert code_in(text, "One-time password") == shown_code(fr.code)
    assert code_in(text, "Expires") == english_date(fr.expires_at)
    assert ", as member." in text
    text = text_part(wait_until(lambda: mails_to(owner.email), 60, "e-mail of the owner job")[0])
    assert ", as owner." in text  # owner wins over user manager


def test_operator_templates_work_per_locale(tmp_path, db):
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "invitation.subject").write_text("Willkommen bei {{org_name}}, {{invitee_name}}\n")
    (tmp_path / "invitation.subject").write_text("Welcome to {{org_name}}\n")
    topic = create_topic("raikoo.mail.locale")
    m = start_mailer(topic, RAIKOO_MAIL_TEMPLATES=str(tmp_path), RAIKOO_MAIL_LOCALE="de")
    try:
        de, en, default = Invitation(db), Invitation(db), Invitation(db)
        produce(topic, de.id, de.job(locale="de-CH"))
        produce(topic, en.id, en.job(locale="en"))
        produce(topic, default.id, default.job())  # no locale: mail.locale
        de_msg = wait_until(lambda: mails_to(de.email), 60, "de e-mail")[0]
        en_msg = wait_until(lambda: mails_to(en.email), 60, "en e-mail")[0]
        default_msg = wait_until(lambda: mails_to(default.email), 60, "default e-mail")[0]
    finally:
        assert m.stop() == 0
    assert de_msg["Subject"] == "Willkommen bei Acme, Bob Invitee"
    assert code_in(text_part(de_msg), "Bestätigungscode") == shown_code(de.code)  # the rest: built-in German
    assert en_msg["Subject"] == "Welcome to Acme"
    assert code_in(text_part(en_msg), "Confirmation code") == shown_code(en.code)
    assert default_msg["Subject"] == "Willkommen bei Acme, Bob Invitee"
    assert "2 mail template(s)" in m.output()


def test_a_broken_locale_template_stops_the_mailer_at_start(tmp_path):
    (tmp_path / "de-AT").mkdir()
    (tmp_path / "de-AT" / "reminder.txt").write_text("Ihr Code: {{code}}\n")
    p = subprocess.run([os.path.join(BIN, "raikoo-mailer")], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, RAIKOO_MAIL_TEMPLATES=str(tmp_path)))
    assert p.returncode == 2
    assert "template de-AT/reminder.txt: a reminder has no code" in p.stderr
    p = subprocess.run([os.path.join(BIN, "raikoo-mailer")], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, RAIKOO_MAIL_LOCALE="Deutsch"))
    assert p.returncode == 2 and "mail.locale" in p.stderr
