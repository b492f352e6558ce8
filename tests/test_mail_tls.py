"""The mailer's STARTTLS and AUTH against a real TLS server (ops/smtp-sink with a certificate from a throwaway
CA made with the openssl CLI): a trusted certificate delivers, an untrusted or misnamed one, a server without
STARTTLS when it is required, or a wrong password send nothing and leave a reason in the delivery state."""
import os
import subprocess

import pytest

from mailkit import (Invitation, Sink, code_in, create_topic, free_port, mails_to, produce, query, shown_code,
                     start_mailer, text_part, wait_until)

PASSWORD = "s3cret-raikoo-smtp-pw"


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr}"


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=Raikoo test {name}",
            cwd=d)


def make_server_cert(d, ca, name, alt_names):
    """A server certificate signed by ca for alt_names (subjectAltName syntax); returns (cert, key) paths."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={alt_names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two throwaway CAs: `trusted` (in the mailer's $XDG_CONFIG_HOME/libesmtp/ca.pem) and `stranger`, and
    server certificates for 127.0.0.1/localhost from each, plus one from the trusted CA for another name."""
    d = str(tmp_path_factory.mktemp("pki"))
    make_ca(d, "trusted")
    make_ca(d, "stranger")
    certs = {
        "good": make_server_cert(d, "trusted", "good", "IP:127.0.0.1,DNS:localhost"),
        "untrusted": make_server_cert(d, "stranger", "untrusted", "IP:127.0.0.1,DNS:localhost"),
        "misnamed": make_server_cert(d, "trusted", "misnamed", "DNS:mail.elsewhere.test"),
    }
    xdg = os.path.join(d, "xdg")
    os.makedirs(os.path.join(xdg, "libesmtp"))
    ca_file = os.path.join(xdg, "libesmtp", "ca.pem")
    with open(os.path.join(d, "trusted.pem")) as src, open(ca_file, "w") as dst:
        dst.write(src.read())
    os.chmod(ca_file, 0o600)
    return {"dir": d, "xdg": xdg, **certs}


class Setup:
    """A private sink (ops/smtp-sink) and a mailer of its own (topic, consumer group, SMTP port) for one test."""

    def __init__(self, tmp_path, pki, cert=None, sink_args=(), **mailer_env):
        self.port = free_port()
        self.mdir = tmp_path / "mail"
        extra = list(sink_args)
        if cert:
            extra += ["--tlscert", pki[cert][0], "--tlskey", pki[cert][1]]
        self.sink = Sink(self.port, self.mdir, extra)
        self.topic = create_topic("raikoo.test.mail")
        env = {"RAIKOO_SMTP_HOST": "127.0.0.1", "RAIKOO_SMTP_PORT": self.port, "XDG_CONFIG_HOME": pki["xdg"],
               "RAIKOO_MAIL_RETRY_BASE_MS": 60000}
        env.update(mailer_env)
        self.mailer = start_mailer(self.topic, **env)
        self.sent = []

    def send(self, inv):
        self.sent.append(inv)
        produce(self.topic, inv.id, inv.job())

    def mails(self, inv):
        return mails_to(inv.email, self.mdir)

    def finish(self):
        rc = self.mailer.stop()
        self.sink.stop()
        return rc


@pytest.fixture()
def setups(db):
    made = []
    yield made
    for s in made:
        s.mailer.stop()
        s.sink.stop()
        # Retries come from the table, for any mailer: a job left `retrying` here would later be claimed by
        # another test's mailer and sent to that test's server. End them.
        jobs = [inv.job_id for inv in s.sent]
        if jobs:
            query(db, "UPDATE mail_deliveries SET status = 'failed', next_attempt_at = NULL"
                      " WHERE job_id = ANY(%s::uuid[]) AND status IN ('retrying', 'sending') RETURNING job_id",
                  (jobs,))


def attempted(inv):
    """The delivery once the first attempt is recorded (no longer `sending`)."""
    return wait_until(lambda: (lambda d: d if d and d[0] != "sending" else None)(inv.delivery()), 60,
                      "the first attempt recorded")


def test_starttls_required_with_a_trusted_certificate_delivers_the_invitation(tmp_path, db, pki, setups):
    s = Setup(tmp_path, pki, cert="good", RAIKOO_SMTP_STARTTLS="required")
    setups.append(s)
    inv = Invitation(db, kind="new")
    s.send(inv)
    msg = wait_until(lambda: s.mails(inv), 60, "the invitation e-mail over TLS")[0]
    assert code_in(text_part(msg), "One-time password") == shown_code(inv.code)
    assert msg["X-TLS"] and msg["X-TLS"].startswith("TLSv1."), msg["X-TLS"]  # it really came over TLS
    wait_until(lambda: inv.delivery()[0] == "sent", 30, "sent recorded")
    assert inv.delivery()[:2] == ("sent", 1)
    assert inv.mail_state()[1:] == ("sent", None)
    # A later batch is a new SMTP session on the same TLS context (libesmtp's own freed it after the first).
    second = Invitation(db)
    s.send(second)
    msg = wait_until(lambda: s.mails(second), 60, "a second e-mail over TLS, in a new session")[0]
    assert msg["X-TLS"].startswith("TLSv1.")
    assert s.finish() == 0


def test_starttls_if_available_uses_tls_when_the_server_offers_it(tmp_path, db, pki, setups):
    s = Setup(tmp_path, pki, cert="good", RAIKOO_SMTP_STARTTLS="if-available")
    setups.append(s)
    inv = Invitation(db)
    s.send(inv)
    msg = wait_until(lambda: s.mails(inv), 60, "the invitation e-mail")[0]
    assert msg["X-TLS"] and msg["X-TLS"].startswith("TLSv1.")
    assert s.finish() == 0


@pytest.mark.parametrize("cert, reason", [
    ("untrusted", "unable to get local issuer certificate"),
    ("misnamed", "IP address mismatch"),
])
def test_an_untrusted_or_misnamed_certificate_sends_nothing_and_says_why(tmp_path, db, pki, setups, cert, reason):
    s = Setup(tmp_path, pki, cert=cert, RAIKOO_SMTP_STARTTLS="required")
    setups.append(s)
    inv = Invitation(db, kind="new")
    s.send(inv)
    status, attempts, error = attempted(inv)
    # The server (or the configuration) is at fault, not the message: held, no attempt counted.
    assert status == "retrying" and attempts == 0
    assert "TLS certificate did not verify" in error and reason in error, error
    assert os.path.join(pki["xdg"], "libesmtp", "ca.pem") in error  # which CAs were trusted
    state = inv.mail_state()
    assert state[1] in ("retrying", "failed") and "TLS certificate did not verify" in state[2]
    assert s.mails(inv) == []
    assert s.finish() == 0
    assert os.listdir(s.mdir / "new") == []  # nothing at all reached the server


def test_starttls_required_against_a_server_without_starttls_sends_nothing(tmp_path, db, pki, setups):
    s = Setup(tmp_path, pki, cert=None, RAIKOO_SMTP_STARTTLS="required")
    setups.append(s)
    inv = Invitation(db, kind="new")
    s.send(inv)
    status, attempts, error = attempted(inv)
    # The server (or the configuration) is at fault, not the message: held, no attempt counted.
    assert status == "retrying" and attempts == 0
    assert "does not offer STARTTLS" in error and "smtp.starttls=required" in error, error
    assert inv.mail_state()[1] in ("retrying", "failed")
    assert s.finish() == 0
    assert os.listdir(s.mdir / "new") == []


def test_auth_with_the_right_password_sends(tmp_path, db, pki, setups):
    s = Setup(tmp_path, pki, cert="good", sink_args=["--auth-user", "raikoo-mailer", "--auth-password", PASSWORD],
              RAIKOO_SMTP_STARTTLS="required", RAIKOO_SMTP_USER="raikoo-mailer", RAIKOO_SMTP_PASSWORD=PASSWORD)
    setups.append(s)
    inv = Invitation(db, kind="new")
    s.send(inv)
    msg = wait_until(lambda: s.mails(inv), 60, "the invitation e-mail after AUTH")[0]
    assert msg["X-Auth-User"] == "raikoo-mailer" and msg["X-TLS"]
    assert code_in(text_part(msg), "One-time password") == shown_code(inv.code)
    wait_until(lambda: inv.delivery()[0] == "sent", 30, "sent recorded")
    assert inv.mail_state()[1] == "sent"
    assert s.finish() == 0
    assert PASSWORD not in s.mailer.output()


def test_auth_with_a_wrong_password_sends_nothing_and_says_why(tmp_path, db, pki, setups):
    s = Setup(tmp_path, pki, cert="good", sink_args=["--auth-user", "raikoo-mailer", "--auth-password", PASSWORD],
              RAIKOO_SMTP_STARTTLS="required", RAIKOO_SMTP_USER="raikoo-mailer",
              RAIKOO_SMTP_PASSWORD="not-the-password")
    setups.append(s)
    inv = Invitation(db, kind="new")
    s.send(inv)
    status, attempts, error = attempted(inv)
    # The server (or the configuration) is at fault, not the message: held, no attempt counted.
    assert status == "retrying" and attempts == 0
    assert "SMTP AUTH refused" in error and "535" in error and "smtp.password" in error, error
    state = inv.mail_state()
    assert state[1] in ("retrying", "failed") and "SMTP AUTH refused" in state[2]
    assert s.finish() == 0
    assert os.listdir(s.mdir / "new") == []
    assert "not-the-password" not in s.mailer.output()


def test_auth_offered_only_after_starttls_is_not_attempted_in_the_clear(tmp_path, db, pki, setups):
    s = Setup(tmp_path, pki, cert="good", sink_args=["--auth-user", "raikoo-mailer", "--auth-password", PASSWORD],
              RAIKOO_SMTP_STARTTLS="no", RAIKOO_SMTP_USER="raikoo-mailer", RAIKOO_SMTP_PASSWORD=PASSWORD)
    setups.append(s)
    inv = Invitation(db)
    s.send(inv)
    status, attempts, error = attempted(inv)
    assert status in ("retrying", "failed")
    assert "offered no AUTH mechanism" in error and "STARTTLS" in error, error
    assert s.finish() == 0
    assert os.listdir(s.mdir / "new") == []


def test_an_unreadable_ca_file_stops_the_mailer_at_start(tmp_path, pki):
    xdg = tmp_path / "xdg"
    (xdg / "libesmtp").mkdir(parents=True)
    (xdg / "libesmtp" / "ca.pem").write_text("this is not a certificate\n")
    from conftest import BIN
    p = subprocess.run([os.path.join(BIN, "raikoo-mailer")], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, RAIKOO_SMTP_STARTTLS="required", XDG_CONFIG_HOME=str(xdg)))
    assert p.returncode == 2, p.stderr
    assert "cannot load the trusted CAs from" in p.stderr and str(xdg / "libesmtp" / "ca.pem") in p.stderr
