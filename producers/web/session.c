/* raikoo-web: sessions (a random id in an HttpOnly cookie, only its hash in PostgreSQL), the CSRF token of
 * every form (derived from the session id, so a new session invalidates every older form), sign-in against
 * the stored Argon2id hash with failures throttled per address and per client, and sign-out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "db.h"
#include "email.h"
#include "log.h"
#include "text.h"
#include "web.h"

static const char SQL_SESSION[] =
    "SELECT s.user_id, coalesce(u.enabled, false), coalesce(u.is_admin, false), coalesce(u.name, ''),"
    " coalesce(u.email, ''), s.flash FROM web_sessions s LEFT JOIN users u ON u.id = s.user_id"
    " WHERE s.id_hash = $1::bytea AND s.expires_at > now()";
static const char SQL_FLASH_TAKEN[] = "UPDATE web_sessions SET flash = NULL WHERE id_hash = $1::bytea";
static const char SQL_FLASH_SET[] = "UPDATE web_sessions SET flash = $2 WHERE id_hash = $1::bytea";
static const char SQL_SESSION_NEW[] =
    "INSERT INTO web_sessions (id_hash, user_id, expires_at) VALUES ($1::bytea, $2::uuid,"
    " now() + make_interval(secs => $3::bigint))";
static const char SQL_SESSION_END[] = "DELETE FROM web_sessions WHERE id_hash = $1::bytea";
static const char SQL_SESSIONS_EXPIRED[] = "DELETE FROM web_sessions WHERE expires_at < now()";
static const char SQL_FAILURES_EXPIRED[] =
    "DELETE FROM web_signin_failures WHERE first_at < now() - make_interval(secs => $1::bigint)";
static const char SQL_USER_BY_EMAIL[] =
    "SELECT id, password_hash, enabled FROM users WHERE lower(email) = lower($1)";
/* The larger count of the two scopes in the current window. */
static const char SQL_FAILURES[] =
    "SELECT coalesce(max(failures) FILTER (WHERE scope = 'address'), 0),"
    " coalesce(max(failures) FILTER (WHERE scope = 'client'), 0) FROM web_signin_failures"
    " WHERE ((scope = 'address' AND subject = lower($1)) OR (scope = 'client' AND subject = $2))"
    " AND first_at > now() - make_interval(secs => $3::bigint)";
static const char SQL_FAILURE_COUNT[] =
    "INSERT INTO web_signin_failures (scope, subject, failures, first_at)"
    " VALUES ('address', lower($1), 1, now()), ('client', $2, 1, now())"
    " ON CONFLICT (scope, subject) DO UPDATE SET"
    " failures = CASE WHEN web_signin_failures.first_at > now() - make_interval(secs => $3::bigint)"
    "   THEN web_signin_failures.failures + 1 ELSE 1 END,"
    " first_at = CASE WHEN web_signin_failures.first_at > now() - make_interval(secs => $3::bigint)"
    "   THEN web_signin_failures.first_at ELSE now() END";
static const char SQL_FAILURES_FORGET[] =
    "DELETE FROM web_signin_failures WHERE scope = 'address' AND subject = lower($1)";
static const char SQL_ADMIN_PASSWORD[] =
    "UPDATE users SET password_hash = $2 WHERE lower(email) = lower($1) AND is_admin RETURNING id";

PGconn *web_db(web_app_t *app) {
    char err[1024];
    if (app->db && PQstatus(app->db) == CONNECTION_OK)
        return app->db;
    if (app->db) {
        PQreset(app->db);
        if (PQstatus(app->db) == CONNECTION_OK)
            return app->db;
        PQfinish(app->db);
        app->db = NULL;
    }
    app->db = db_connect_migrated(app->conf, err, sizeof(err));
    if (!app->db)
        log_warn(NULL, "PostgreSQL: %s", err);
    return app->db;
}

/* The bytea literal of the hash of a session id (hex): "\x" and 64 hex digits. */
static int sid_hash_param(const char *sid_hex, char out[3 + 2 * 32 + 1]) {
    unsigned char sid[WEB_SID_BYTES], h[32];
    size_t n = 0;
    if (strlen(sid_hex) != WEB_SID_HEX ||
        sodium_hex2bin(sid, sizeof(sid), sid_hex, WEB_SID_HEX, NULL, &n, NULL) != 0 || n != sizeof(sid))
        return -1;
    crypto_generichash(h, sizeof(h), sid, sizeof(sid), NULL, 0);
    out[0] = '\\';
    out[1] = 'x';
    sodium_bin2hex(out + 2, 2 * 32 + 1, h, sizeof(h));
    sodium_memzero(sid, sizeof(sid));
    return 0;
}

/* The CSRF token of a session: a keyed hash of a constant under the session id. */
static void csrf_of(const char *sid_hex, char out[WEB_CSRF_HEX + 1]) {
    unsigned char sid[WEB_SID_BYTES], t[WEB_CSRF_HEX / 2];
    size_t n = 0;
    static const char label[] = "raikoo-web form token";
    sodium_hex2bin(sid, sizeof(sid), sid_hex, WEB_SID_HEX, NULL, &n, NULL);
    crypto_generichash(t, sizeof(t), (const unsigned char *)label, sizeof(label) - 1, sid, sizeof(sid));
    sodium_bin2hex(out, WEB_CSRF_HEX + 1, t, sizeof(t));
    sodium_memzero(sid, sizeof(sid));
}

static void user_clear(web_user_t *u) {
    free(u->name);
    free(u->email);
    memset(u, 0, sizeof(*u));
}

int session_load(web_req_t *r) {
    char hp[3 + 64 + 1], err[512];
    if (!r->sid[0] || sid_hash_param(r->sid, hp) != 0) {
        r->sid[0] = '\0';
        return 0;
    }
    PGconn *db = web_db(r->app);
    if (!db)
        return -1;
    const char *p[1] = {hp};
    PGresult *res = db_exec(db, SQL_SESSION, 1, p, err, sizeof(err));
    if (!res) {
        log_warn(NULL, "reading a session: %s", err);
        return -1;
    }
    if (PQntuples(res) == 1) {
        r->has_session = 1;
        csrf_of(r->sid, r->csrf);
        if (!PQgetisnull(res, 0, 0) && PQgetvalue(res, 0, 1)[0] == 't') {
            r->signed_in = 1;
            text_printf(r->user.id, sizeof(r->user.id), "%s", PQgetvalue(res, 0, 0));
            r->user.is_admin = PQgetvalue(res, 0, 2)[0] == 't';
            r->user.name = xstrdup(PQgetvalue(res, 0, 3));
            r->user.email = xstrdup(PQgetvalue(res, 0, 4));
        }
        if (!PQgetisnull(res, 0, 5)) {
            r->flash = xstrdup(PQgetvalue(res, 0, 5));
            PGresult *t = db_exec(db, SQL_FLASH_TAKEN, 1, p, err, sizeof(err));
            PQclear(t);
        }
    } else {
        r->sid[0] = '\0';
    }
    PQclear(res);
    return 0;
}

/* A new session (for user_id, or a visitor with NULL): its cookie, its CSRF token. */
static int session_new(web_req_t *r, const char *user_id) {
    unsigned char sid[WEB_SID_BYTES];
    char hp[3 + 64 + 1], ttl[32], err[512];
    randombytes_buf(sid, sizeof(sid));
    sodium_bin2hex(r->sid, sizeof(r->sid), sid, sizeof(sid));
    sodium_memzero(sid, sizeof(sid));
    sid_hash_param(r->sid, hp);
    snprintf(ttl, sizeof(ttl), "%ld", r->app->session_ttl);
    PGconn *db = web_db(r->app);
    const char *p[3] = {hp, user_id, ttl};
    PGresult *res = db ? db_exec(db, SQL_SESSION_NEW, 3, p, err, sizeof(err)) : NULL;
    if (!res) {
        if (db)
            log_warn(NULL, "creating a session: %s", err);
        r->sid[0] = '\0';
        r->csrf[0] = '\0';
        return -1;
    }
    PQclear(res);
    r->has_session = 1;
    csrf_of(r->sid, r->csrf);
    free(r->set_cookie);
    sb_t c = {0};
    sb_printf(&c, "%s=%s; Path=/; Max-Age=%ld; HttpOnly; SameSite=Strict%s", WEB_COOKIE, r->sid,
              r->app->session_ttl, r->app->cookie_secure ? "; Secure" : "");
    r->set_cookie = sb_take(&c);
    return 0;
}

int session_ensure(web_req_t *r) {
    return r->has_session ? 0 : session_new(r, NULL);
}

static void session_end(web_req_t *r) {
    char hp[3 + 64 + 1], err[512];
    if (r->has_session && sid_hash_param(r->sid, hp) == 0 && web_db(r->app)) {
        const char *p[1] = {hp};
        PQclear(db_exec(r->app->db, SQL_SESSION_END, 1, p, err, sizeof(err)));
    }
    r->has_session = r->signed_in = 0;
    r->sid[0] = r->csrf[0] = '\0';
    user_clear(&r->user);
}

void web_flash(web_req_t *r, const char *msg) {
    char hp[3 + 64 + 1], err[512];
    if (!r->has_session || sid_hash_param(r->sid, hp) != 0 || !web_db(r->app))
        return;
    const char *p[2] = {hp, msg};
    PQclear(db_exec(r->app->db, SQL_FLASH_SET, 2, p, err, sizeof(err)));
}

int session_check_csrf(web_req_t *r) {
    const char *t = form_get(r, "csrf");
    if (r->has_session && t && strlen(t) == WEB_CSRF_HEX && sodium_memcmp(t, r->csrf, WEB_CSRF_HEX) == 0)
        return 1;
    log_info(NULL, "refused a %s %s without the form token of its session (client %s)", r->method, r->path,
             r->client);
    page_message(r, 403, "This form cannot be used",
                 "The form did not come from a page of this site, or it is older than your current sign-in "
                 "(forms of an earlier session stop working when you sign in or out): go back, reload the "
                 "page and send it again.");
    return 0;
}

/* Where to go after signing in: only a path of this site (no scheme, no host, no "//"). */
static const char *safe_next(const char *next) {
    if (!next || next[0] != '/' || next[1] == '/' || strlen(next) > 200)
        return NULL;
    for (const char *s = next; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '/' ||
              *s == '-'))
            return NULL;
    return next;
}

void signin_form(web_req_t *r, const char *error, const char *next, const char *email) {
    sb_t *b = &r->body;
    page_begin(r, "Sign in");
    if (error) {
        sb_add(b, "<p class=\"error\" role=\"alert\" id=\"error\">");
        html_esc(b, error);
        sb_add(b, "</p>\n");
    }
    sb_add(b, "<form method=\"post\" action=\"/signin\">\n");
    form_csrf(r, b);
    if (safe_next(next)) {
        sb_add(b, "<input type=\"hidden\" name=\"next\" value=\"");
        html_esc(b, next);
        sb_add(b, "\">\n");
    }
    sb_add(b, "<p><label for=\"email\">E-mail address</label>\n<input id=\"email\" name=\"email\" "
              "type=\"email\" autocomplete=\"username\" required autofocus value=\"");
    html_esc(b, email ? email : "");
    sb_add(b,
           "\"></p>\n<p><label for=\"password\">Password</label>\n<input id=\"password\" name=\"password\" "
           "type=\"password\" autocomplete=\"current-password\" required></p>\n"
           "<p><button type=\"submit\">Sign in</button></p>\n</form>\n");
    page_end(r, error ? 401 : 200);
}

void action_signin(web_req_t *r) {
    if (!session_check_csrf(r))
        return;
    web_app_t *app = r->app;
    const char *email_in = form_get(r, "email"), *password = form_get(r, "password");
    const char *next = safe_next(form_get(r, "next"));
    char email[EMAIL_MAX + 1], why[256], err[512], window[32];
    if (!email_in || !password || email_normalize(email_in, email, why, sizeof(why)) != 0) {
        signin_form(r, "Type your e-mail address and your password.", next, email_in);
        return;
    }
    PGconn *db = web_db(app);
    if (!db) {
        page_message(r, 503, "Try again in a moment", "Raikoo's database cannot be reached right now.");
        return;
    }
    snprintf(window, sizeof(window), "%ld", app->fail_window);
    const char *pf[3] = {email, r->client, window};
    PGresult *res = db_exec(db, SQL_FAILURES, 3, pf, err, sizeof(err));
    if (!res) {
        log_warn(NULL, "sign-in: %s", err);
        page_message(r, 503, "Try again in a moment", "Raikoo's database cannot be reached right now.");
        return;
    }
    long by_address = strtol(PQgetvalue(res, 0, 0), NULL, 10),
         by_client = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    if (by_address >= app->max_fail_address || by_client >= app->max_fail_client) {
        char msg[256];
        snprintf(
            msg, sizeof(msg),
            "Too many failed sign-ins for this address or from this computer: wait %ld minutes, then try "
            "again.",
            (app->fail_window + 59) / 60);
        log_info(NULL, "sign-in throttled (client %s)", r->client);
        signin_form(r, msg, next, email);
        r->status = 429;
        return;
    }
    const char *pu[1] = {email};
    res = db_exec(db, SQL_USER_BY_EMAIL, 1, pu, err, sizeof(err));
    if (!res) {
        log_warn(NULL, "sign-in: %s", err);
        page_message(r, 503, "Try again in a moment", "Raikoo's database cannot be reached right now.");
        return;
    }
    int found = PQntuples(res) == 1 && !PQgetisnull(res, 0, 1);
    const char *hash = found ? PQgetvalue(res, 0, 1) : app->dummy_hash;
    int ok = crypto_pwhash_str_verify(hash, password, strlen(password)) == 0 && found &&
             PQgetvalue(res, 0, 2)[0] == 't';
    char user_id[RAIKOO_ID_SIZE] = "";
    if (ok)
        text_printf(user_id, sizeof(user_id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!ok) {
        PQclear(db_exec(db, SQL_FAILURE_COUNT, 3, pf, err, sizeof(err)));
        log_info(NULL, "sign-in refused (client %s)", r->client);
        signin_form(r, "The e-mail address or the password is not right (or the account is not active yet).",
                    next, email);
        return;
    }
    PQclear(db_exec(db, SQL_FAILURES_FORGET, 1, pu, err, sizeof(err)));
    /* Housekeeping, at each sign-in: sessions past their expiry, failure counts past their window. */
    PQclear(db_exec(db, SQL_SESSIONS_EXPIRED, 0, NULL, err, sizeof(err)));
    const char *pw[1] = {window};
    PQclear(db_exec(db, SQL_FAILURES_EXPIRED, 1, pw, err, sizeof(err)));
    /* A new session id at sign-in: forms and cookies of the visitor session stop working. */
    session_end(r);
    if (session_new(r, user_id) != 0) {
        page_message(r, 503, "Try again in a moment", "Raikoo's database cannot be reached right now.");
        return;
    }
    log_info(NULL, "signed in: user %s (client %s)", user_id, r->client);
    web_redirect(r, next ? next : "/orgs");
}

void action_signout(web_req_t *r) {
    if (!session_check_csrf(r))
        return;
    session_end(r);
    free(r->set_cookie);
    sb_t c = {0};
    sb_printf(&c, "%s=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict%s", WEB_COOKIE,
              r->app->cookie_secure ? "; Secure" : "");
    r->set_cookie = sb_take(&c);
    web_redirect(r, "/signin");
}

int admin_password(web_app_t *app, int argc, char **argv) {
    const char *email_in = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--email") == 0)
            email_in = argv[i + 1];
    char email[EMAIL_MAX + 1], why[256], err[1024];
    if (!email_in || email_normalize(email_in, email, why, sizeof(why)) != 0) {
        fprintf(stderr, "usage: raikoo-web admin-password --email ADMIN-EMAIL < file-with-the-password\n");
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    int rc = 2;
    if (n <= 0 || utf8_count(line, (size_t)n) < app->password_min || n > WEB_PASSWORD_MAX) {
        fprintf(stderr,
                "raikoo-web admin-password: the password (one line on standard input) must have %ld to %d "
                "characters\n",
                app->password_min, WEB_PASSWORD_MAX);
        goto done;
    }
    char hash[RAIKOO_PASSWORD_HASH_SIZE];
    if (raikoo_password_hash(line, hash, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-web admin-password: %s\n", err);
        rc = 3;
        goto done;
    }
    PGconn *db = web_db(app);
    if (!db) {
        fprintf(stderr, "raikoo-web admin-password: PostgreSQL cannot be reached (is the stack up?)\n");
        rc = 3;
        goto done;
    }
    const char *p[2] = {email, hash};
    PGresult *res = db_exec(db, SQL_ADMIN_PASSWORD, 2, p, err, sizeof(err));
    sodium_memzero(hash, sizeof(hash));
    if (!res) {
        fprintf(stderr, "raikoo-web admin-password: %s\n", err);
        rc = 3;
        goto done;
    }
    if (PQntuples(res) != 1) {
        fprintf(stderr,
                "raikoo-web admin-password: no admin has the address %s (raikoo bootstrap-admin makes one)\n",
                email);
        rc = 1;
    } else {
        printf("admin-password: the password of %s is set\n", email);
        rc = 0;
    }
    PQclear(res);
done:
    if (line) {
        sodium_memzero(line, cap);
        free(line);
    }
    return rc;
}
