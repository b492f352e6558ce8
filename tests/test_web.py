"""raikoo-web in a real browser (Debian's chromium and chromedriver, headless, driven by python3-selenium),
against the test stack and the session's workers: the invitation e-mail's link, activation, acceptance,
sign-in, the Members tab and its actions, what each role sees, wrong codes, and forged forms.
Every page visited is saved under $RAIKOO_VAR/screenshots/ (var/test/screenshots/ with ops/test)."""
import os
import re
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.support.ui import WebDriverWait

from conftest import BIN, raikoo, raikoo_json, accepted, unique_email
from mailkit import code_in, mails_to, text_part, html_part, wait_until

ADMIN_EMAIL = "admin@raikoo.test"
ADMIN_PW = "admin web passphrase"
USER_PW = "a long passphrase"


class Web:
    """raikoo-web of the build under test on a port it picks (web.listen 127.0.0.1:0) and prints."""

    def __init__(self):
        self.log_path = os.path.join(os.environ["RAIKOO_VAR"], "log", f"test-raikoo-web-{os.getpid()}.log")
        env = dict(os.environ, RAIKOO_WEB_LISTEN="127.0.0.1:0", RAIKOO_LOG_LEVEL="debug")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(BIN, "raikoo-web")], env=env, stdout=subprocess.PIPE,
                                     stderr=self.log, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"raikoo-web: (http://127\.0\.0\.1:\d+)/", line)
        assert m, f"raikoo-web printed {line!r}; log {self.log_path}:\n{self.output()}"
        self.url = m.group(1)

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc


@pytest.fixture(scope="module")
def web(workers):
    w = Web()
    yield w
    rc = w.stop()
    assert rc == 0, f"raikoo-web exited {rc}; log {w.log_path}:\n{w.output()[-3000:]}"


@pytest.fixture(scope="module")
def admin_id():
    a = raikoo("bootstrap-admin", "--email", ADMIN_EMAIL, check=True).stdout.strip()
    p = subprocess.run([os.path.join(BIN, "raikoo-web"), "admin-password", "--email", ADMIN_EMAIL],
                       input=ADMIN_PW + "\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return a


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(120)
    yield d
    d.quit()


def gone(element):
    """True once element's page has gone. ChromeDriver says so in two ways: a stale element, or, when asked
    in the middle of the navigation, "Node with given id does not belong to the document" (an unknown error
    to selenium, which EC.staleness_of lets through: it failed a fresh-machine run)."""
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        if "does not belong to the document" in str(e):
            return True
        raise


class B:
    """The browser, with the helpers the tests share; every page it loads is screenshot."""

    def __init__(self, driver, web):
        self.d, self.web = driver, web
        self.dir = os.path.join(os.environ["RAIKOO_VAR"], "screenshots")
        os.makedirs(self.dir, exist_ok=True)

    def shot(self, name):
        path = os.path.join(self.dir, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".png")
        assert self.d.save_screenshot(path), path

    def go(self, path, shot=None):
        self.d.get(self.web.url + path)
        if shot:
            self.shot(shot)

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def has(self, css):
        return len(self.d.find_elements(By.CSS_SELECTOR, css)) > 0

    def text(self):
        return self.el("main").text

    def fill(self, css, value):
        e = self.el(css)
        e.clear()
        e.send_keys(value)

    def submit(self, css, shot=None, wait_for=None):
        button = self.el(css)
        button.click()
        # Every form posts and loads a new page (no JavaScript): wait for the old page to go first, or the
        # old page's readyState answers "complete" at once and the next step races the post (a sign-in lost).
        self.wait(lambda d: gone(button))
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete")
        if wait_for:
            self.wait(lambda d: self.has(wait_for))
        if shot:
            self.shot(shot)

    def wait(self, condition):
        """Polls condition (every 50 ms, not selenium's default 500) until it holds; fails after 120 s."""
        return WebDriverWait(self.d, 120, poll_frequency=0.05).until(condition)

    def fresh(self):
        """Another person at the same computer: no cookies left."""
        self.go("/signin")
        self.d.delete_all_cookies()

    def sign_in(self, email, password, shot=None):
        self.fresh()
        self.go("/signin", shot="signin" if shot else None)
        self.fill("#email", email)
        self.fill("#password", password)
        self.submit("main form button[type=submit]", shot=shot)

    def flash(self):
        return self.el("#flash").text if self.has("#flash") else ""


@pytest.fixture()
def b(browser, web):
    return B(browser, web)


def org_with_name(admin_id):
    name = f"Web Org {uuid.uuid4().hex[:6]} <&>"
    rc, r = raikoo_json("create-org", "--actor", admin_id, "--name", name, "--owner", admin_id)
    accepted(r)
    return r["org_id"], name


def create_user(admin_id, email, name="Web User", password=USER_PW):
    rc, r = raikoo_json("create-user", "--actor", admin_id, "--email", email, "--name", name, "--password-stdin",
                        input=password + "\n")
    accepted(r)
    return r["user_id"]


def invitation_id(db, org, email):
    with db.cursor() as cur:
        cur.execute("SELECT id FROM invitations WHERE org_id = %s AND lower(email) = lower(%s)"
                    " ORDER BY created_at DESC LIMIT 1", (org, email))
        row = cur.fetchone()
    return str(row[0]) if row else None


def mail_for(email, count=1):
    """The count-th e-mail to the address, once the SMTP sink has it: (text, html)."""
    msgs = wait_until(lambda: (lambda m: m if len(m) >= count else None)(mails_to(email)), 90,
                      f"{count} e-mail(s) to {email}")
    m = msgs[count - 1]
    return text_part(m), html_part(m)


def link_path(text, inv):
    """The e-mail's link to the invitation's page (mail.app.url + /invitations/<id>): its path."""
    m = re.search(r"(https?://[^\s/]+)(/invitations/" + inv + r")\b", text)
    assert m, f"no link to invitation {inv} in:\n{text}"
    return m.group(2)


def members_page(b, org, shot=None):
    b.go(f"/orgs/{org}/members", shot=shot)


def test_invite_new_user_activates_and_signs_in(b, db, admin_id):
    org, org_name = org_with_name(admin_id)
    b.sign_in(ADMIN_EMAIL, ADMIN_PW, shot="orgs-admin")
    assert org_name in b.text()
    b.d.find_element(By.LINK_TEXT, org_name).click()
    b.shot("members-admin")
    assert b.el("#members-tab").get_attribute("aria-current") == "page"
    b.el("#invite-new").click()
    b.shot("invite-new-admin")
    assert b.has("#owner"), "an admin sees the owner toggle"
    email = unique_email("webnew")
    b.fill("#email", email)
    b.fill("#name", "Nina <b>New</b>")
    b.submit("#send", shot="members-after-invite", wait_for="#flash")
    assert "Invitation sent to " + email in b.flash()
    inv = invitation_id(db, org, email)
    row = b.el(f"#invitation-{inv}")
    assert "pending" in row.find_element(By.CSS_SELECTOR, ".status").text
    assert "Nina <b>New</b>" in row.text  # escaped: shown as text

    text, html = mail_for(email)
    path = link_path(text, inv)
    assert f'href="http://localhost:8080/invitations/{inv}"' in html
    otp = code_in(text, "One-time password")
    assert otp

    b.fresh()
    b.go(path, shot="activate")
    assert b.el("#email").get_attribute("value") == email
    assert b.d.switch_to.active_element.get_attribute("id") == "code", "the focus starts on the code"
    b.fill("#code", otp)
    b.fill("#password", USER_PW)
    b.fill("#password2", USER_PW + "x")
    b.submit("main form button[type=submit]", shot="activate-mismatch")
    assert "differ" in b.el("#error").text
    b.fill("#code", otp)
    b.fill("#password", "short")
    b.fill("#password2", "short")
    b.d.execute_script("document.querySelectorAll('input[minlength]').forEach(e => e.removeAttribute('minlength'))")
    b.submit("main form button[type=submit]")
    assert "at least" in b.el("#error").text
    b.fill("#code", otp)
    b.fill("#password", USER_PW)
    b.fill("#password2", USER_PW)
    b.submit("main form button[type=submit]", shot="activated", wait_for="#message")
    assert "Your account is active" in b.text() and org_name in b.text()

    b.el("#signin-link").click()
    b.fill("#email", email)
    b.fill("#password", USER_PW)
    b.submit("main form button[type=submit]", shot="orgs-new-user")
    assert org_name in b.el("#orgs").text
    # The link again: the invitation is accepted, no form is offered.
    b.go(path, shot="invitation-already-accepted")
    assert "already accepted" in b.text()
    log = b.web.output()
    assert otp not in log and USER_PW not in log and ADMIN_PW not in log


def test_add_existing_user_accepts_with_code_then_remove_and_resend(b, db, admin_id):
    org, org_name = org_with_name(admin_id)
    email = unique_email("webold")
    user = create_user(admin_id, email, "Olga Old")
    b.sign_in(ADMIN_EMAIL, ADMIN_PW)
    members_page(b, org)
    b.el("#add-existing").click()
    b.shot("add-existing-admin")
    b.fill("#email", email)
    b.submit("#send", wait_for="#flash")
    assert "Invitation sent to " + email in b.flash()
    inv = invitation_id(db, org, email)
    text, _ = mail_for(email)
    path = link_path(text, inv)
    code = code_in(text, "Confirmation code")

    b.fresh()
    b.go(path, shot="invitation-signin")
    assert "Sign in as " + email in b.flash()
    b.fill("#password", USER_PW)  # the address is filled in
    b.submit("main form button[type=submit]", shot="accept", wait_for="#code")
    b.fill("#code", code)
    b.submit("main form button[type=submit]", shot="accepted", wait_for="#message")
    assert "You joined " + org_name in b.el("#message").text

    # The admin removes the member, then invites a new person, resends and removes that invitation.
    b.sign_in(ADMIN_EMAIL, ADMIN_PW)
    members_page(b, org)
    assert b.has(f"#member-{user}")
    b.submit(f"#remove-member-{user}", shot="member-removed", wait_for="#flash")
    assert "removed from the organization" in b.flash()
    assert not b.has(f"#member-{user}")

    other = unique_email("webresend")
    b.el("#invite-new").click()
    b.fill("#email", other)
    b.submit("#send", wait_for="#flash")
    inv2 = invitation_id(db, org, other)
    mail_for(other, 1)
    b.submit(f"#resend-{inv2}", shot="invitation-resent", wait_for="#flash")
    assert "sent again" in b.flash()
    mail_for(other, 2)
    b.submit(f"#remove-invitation-{inv2}", shot="invitation-removed", wait_for="#flash")
    assert "removed" in b.flash()
    assert b.el(f"#invitation-{inv2} .status").text == "removed"
    # A rejection shows the result's message: the owner cannot remove themself while the only owner.
    b.submit(f"#remove-member-{admin_id}", wait_for="#flash")
    assert "at least one owner" in b.flash()


def member_of(db, org, user, manage):
    with db.cursor() as cur:
        cur.execute("INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users) VALUES (%s, %s, false, %s)",
                    (org, user, manage))


def test_what_members_and_managers_see(b, db, admin_id):
    org, org_name = org_with_name(admin_id)
    plain, manager = unique_email("webplain"), unique_email("webmanager")
    member_of(db, org, create_user(admin_id, plain, "Pat Plain"), False)
    member_of(db, org, create_user(admin_id, manager, "Max Manager"), True)

    b.sign_in(plain, USER_PW)
    members_page(b, org, shot="members-plain-member")
    assert "Pat Plain" in b.el("#members").text
    assert not b.has("#invite-new") and not b.has("#add-existing"), "a plain member sees no invite buttons"
    assert not b.has("#invitations") and not b.has("main form")
    b.go(f"/orgs/{org}/invite-new", shot="invite-new-plain-member")
    assert "do not have permission" in b.text()

    b.sign_in(manager, USER_PW)
    members_page(b, org, shot="members-manager")
    assert b.has("#invite-new") and b.has("#add-existing")
    assert not b.has("input[name=owner]"), "a user manager sees no owner toggle"
    b.el("#invite-new").click()
    b.shot("invite-new-manager")
    assert b.has("#email") and not b.has("#owner") and not b.has("#manage")


def test_invite_form_options_role_expiry_and_language(b, db, admin_id):
    """An admin grants the user-manager role, three days and German from the form: the invitation carries
    them, the table shows the role, the e-mail is in German; days that are no whole number are refused here,
    days out of range by the worker with its message."""
    org, org_name = org_with_name(admin_id)
    b.sign_in(ADMIN_EMAIL, ADMIN_PW)
    b.go(f"/orgs/{org}/invite-new", shot="invite-new-options")
    assert b.has("#manage") and b.has("#expires") and b.has("#locale")
    email = unique_email("weboptions")
    b.fill("#email", email)
    b.el("#manage").click()
    b.fill("#expires", "3")
    b.el("#locale option[value=de]").click()
    b.submit("#send", shot="members-after-invite-options", wait_for="#flash")
    assert "Invitation sent to " + email in b.flash()
    inv = invitation_id(db, org, email)
    with db.cursor() as cur:
        cur.execute("SELECT grant_owner, grant_manage_users, locale, round(extract(epoch FROM expires_at - created_at))"
                    " FROM invitations WHERE id = %s", (inv,))
        assert cur.fetchone() == (False, True, "de", 3 * 86400)
    assert b.el(f"#invitation-{inv} .grants").text == "user manager"
    text, _ = mail_for(email)
    assert "Einladung" in text or "eingeladen" in text, text

    b.go(f"/orgs/{org}/invite-new")
    b.fill("#email", unique_email("weboptions"))
    b.d.execute_script("document.getElementById('expires').type = 'text'")
    b.fill("#expires", "3.5")
    b.submit("#send", wait_for="#flash")
    assert "whole number" in b.flash()
    b.go(f"/orgs/{org}/invite-new")
    b.fill("#email", unique_email("weboptions"))
    b.d.execute_script("document.getElementById('expires').removeAttribute('max')")
    b.fill("#expires", "31")
    b.submit("#send", wait_for="#flash")
    assert "expires_in_days" in b.flash() or "30" in b.flash(), b.flash()


def test_wrong_codes_then_locked(b, db, admin_id):
    org, _ = org_with_name(admin_id)
    email = unique_email("webwrong")
    user = create_user(admin_id, email)
    rc, r = raikoo_json("add-existing", "--actor", admin_id, "--org", org, "--email", email)
    inv = accepted(r)["invitation_id"]
    text, _ = mail_for(email)
    code = code_in(text, "Confirmation code")
    wrong = "0000-0000-0000" if code != "0000-0000-0000" else "1111-1111-1111"
    b.sign_in(email, USER_PW)
    b.go(link_path(text, inv))
    for left in (4, 3, 2, 1):
        b.fill("#code", wrong)
        b.submit("main form button[type=submit]", wait_for="#error")
        assert f"{left} attempt" in b.el("#error").text, b.el("#error").text
    b.shot("accept-wrong-code")
    b.fill("#code", wrong)
    b.submit("main form button[type=submit]", wait_for="#error")
    assert "no attempts left" in b.el("#error").text
    b.fill("#code", code)  # even the right code: locked after five
    b.submit("main form button[type=submit]", shot="accept-locked", wait_for="#error")
    assert "Too many wrong codes" in b.el("#error").text
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM org_members WHERE org_id = %s AND user_id = %s", (org, user))
        assert cur.fetchone()[0] == 0


def post(web, path, fields, cookie):
    req = urllib.request.Request(web.url + path, data=urllib.parse.urlencode(fields).encode(), method="POST",
                                 headers={"Cookie": f"raikoo_session={cookie}",
                                          "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_forged_and_replayed_forms_are_refused(b, db, admin_id):
    org, _ = org_with_name(admin_id)
    b.sign_in(ADMIN_EMAIL, ADMIN_PW)
    b.el("#orgs")
    members_page(b, org)
    old_token = b.el("input[name=csrf]").get_attribute("value")
    old_cookie = b.d.get_cookie("raikoo_session")
    assert old_cookie["httpOnly"] and old_cookie["sameSite"] == "Strict"
    target = unique_email("webforged")
    # No token at all: refused, nothing published.
    st, body = post(b.web, f"/orgs/{org}/invite-new", {"email": target}, old_cookie["value"])
    assert st == 403 and "This form cannot be used" in body
    # A new sign-in: the token of the earlier session's form is refused with the new cookie.
    b.sign_in(ADMIN_EMAIL, ADMIN_PW)
    new_cookie = b.d.get_cookie("raikoo_session")["value"]
    assert new_cookie != old_cookie["value"]
    st, body = post(b.web, f"/orgs/{org}/invite-new", {"email": target, "csrf": old_token}, new_cookie)
    assert st == 403 and "This form cannot be used" in body
    # The old session itself is over after sign-out.
    members_page(b, org)
    token = b.el("input[name=csrf]").get_attribute("value")
    b.submit("header form button[type=submit]", shot="signed-out")
    st, body = post(b.web, f"/orgs/{org}/invite-new", {"email": target, "csrf": token}, new_cookie)
    assert st == 403
    assert invitation_id(db, org, target) is None
    # Headers of every page: no script, no framing.
    with urllib.request.urlopen(b.web.url + "/signin", timeout=60) as resp:
        csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp and "default-src 'none'" in csp


def test_failed_sign_ins_are_throttled(b):
    email = unique_email("webthrottle")
    for _ in range(5):
        b.sign_in(email, "not the password")
        assert "not right" in b.el("#error").text
    b.sign_in(email, "not the password", shot="signin-throttled")
    assert "Too many failed sign-ins" in b.el("#error").text


def test_activation_wrong_code_then_expired(b, db, admin_id):
    org, _ = org_with_name(admin_id)
    email = unique_email("webexpire")
    rc, r = raikoo_json("invite-new", "--actor", admin_id, "--org", org, "--email", email)
    inv = accepted(r)["invitation_id"]
    text, _ = mail_for(email)
    otp = code_in(text, "One-time password")
    b.fresh()
    b.go(link_path(text, inv))
    b.fill("#code", "0000-0000-0000" if otp != "0000-0000-0000" else "1111-1111-1111")
    b.fill("#password", USER_PW)
    b.fill("#password2", USER_PW)
    b.submit("main form button[type=submit]", shot="activate-wrong-code", wait_for="#error")
    assert "4 attempts left" in b.el("#error").text
    # The invitation expires while the form is open: the result's message says to ask for a resend.
    with db.cursor() as cur:
        cur.execute("UPDATE invitations SET created_at = now() - interval '2 days',"
                    " expires_at = now() - interval '1 second' WHERE id = %s", (inv,))
    b.fill("#code", otp)
    b.fill("#password", USER_PW)
    b.fill("#password2", USER_PW)
    b.submit("main form button[type=submit]", shot="activate-expired", wait_for="#error")
    assert "expired: ask the organization to resend it" in b.el("#error").text
    b.go(link_path(text, inv), shot="invitation-expired")
    assert "expired" in b.el("#message").text and not b.has("#code")


def test_roles_are_changed_where_allowed(b, db, admin_id):
    org, _ = org_with_name(admin_id)
    plain, manager = unique_email("webrole"), unique_email("webrolemgr")
    plain_id = create_user(admin_id, plain, "Rita Role")
    manager_id = create_user(admin_id, manager, "Mia Manager")
    member_of(db, org, plain_id, False)
    member_of(db, org, manager_id, True)
    # A user manager: no role form for an owner, and none with an owner toggle.
    b.sign_in(manager, USER_PW)
    members_page(b, org)
    assert not b.has(f"#role-{admin_id}") and not b.has(f"#remove-member-{admin_id}")
    b.el(f"#manage-{plain_id}").click()
    b.submit(f"#role-{plain_id}", shot="role-changed-by-manager", wait_for="#flash")
    assert "role was changed" in b.flash()
    assert b.el(f"#member-{plain_id} .manage").text == "yes"
    # The admin (an owner here) grants owner capabilities.
    b.sign_in(ADMIN_EMAIL, ADMIN_PW)
    members_page(b, org)
    b.el(f"#owner-{plain_id}").click()
    b.submit(f"#role-{plain_id}", shot="role-owner-granted", wait_for="#flash")
    assert "role was changed" in b.flash()
    assert b.el(f"#member-{plain_id} .owner").text == "yes"


def raw(web, path, data=None, headers=None):
    req = urllib.request.Request(web.url + path, data=data, method="POST" if data is not None else "GET",
                                 headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw):
            return None
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=120) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def test_http_edges(web, admin_id):
    st, h, body = raw(web, "/signin")
    assert st == 200
    cookie = h["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    sid = re.match(r"raikoo_session=([0-9a-f]{64});", cookie).group(1)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', body).group(1)
    form = {"Cookie": f"raikoo_session={sid}", "Content-Type": "application/x-www-form-urlencoded"}
    # Only a path of this site is followed after sign-in (no open redirect).
    fields = {"csrf": token, "email": ADMIN_EMAIL, "password": ADMIN_PW, "next": "//evil.example/x"}
    st, h, _ = raw(web, "/signin", urllib.parse.urlencode(fields).encode(), form)
    assert st == 303 and h["Location"] == "/orgs"
    assert raw(web, "/nowhere")[0] == 404
    assert raw(web, "/invitations/not-a-uuid")[0] == 404
    assert raw(web, f"/invitations/{uuid.uuid4()}")[0] == 404
    # A body that is not a form, or too large, is refused before anything else.
    assert raw(web, "/signin", b"csrf=%zz", form)[0] == 400
    assert raw(web, "/signin", b"csrf=" + b"a" * 70000, form)[0] == 413
    st, _, body = raw(web, "/signin", b"csrf=x", {"Cookie": form["Cookie"], "Content-Type": "text/plain"})
    assert st == 400
