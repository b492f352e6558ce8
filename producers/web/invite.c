/* raikoo-web: the invitee's pages, where the e-mail's link lands (/invitations/<id>). A new user activates
 * the account (one-time password, new password twice: ActivateAccount with the Argon2id hash made here);
 * an existing user signs in and confirms with the code (AcceptInvitation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "db.h"
#include "log.h"
#include "secret.h"
#include "text.h"
#include "web.h"

static const char SQL_INVITATION[] =
    "SELECT i.org_id, o.name, i.email, i.kind,"
    " CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired' ELSE i.status END,"
    " coalesce(u.enabled, false), coalesce(u.name, ''), coalesce(i.user_id::text, ''),"
    " to_char(i.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')"
    " FROM invitations i JOIN organizations o ON o.id = i.org_id LEFT JOIN users u ON u.id = i.user_id"
    " WHERE i.id = $1::uuid";

static const char SQL_ORG_NAME[] = "SELECT name FROM organizations WHERE id = $1::uuid";

typedef struct inv {
    char org_id[RAIKOO_ID_SIZE], user_id[RAIKOO_ID_SIZE];
    char *org_name, *email, *kind, *status, *name, *expires;
    int user_enabled;
} inv_t;

static void inv_clear(inv_t *v) {
    free(v->org_name);
    free(v->email);
    free(v->kind);
    free(v->status);
    free(v->name);
    free(v->expires);
    memset(v, 0, sizeof(*v));
}

/* 1 found, 0 not found (404 page rendered), -1 database away (503 page rendered). */
static int inv_load(web_req_t *r, const char *id, inv_t *v) {
    char err[512];
    memset(v, 0, sizeof(*v));
    if (!uuid_valid(id)) {
        page_message(r, 404, "No such invitation",
                     "This address does not name an invitation: check the link in the invitation e-mail.");
        return 0;
    }
    PGconn *db = web_db(r->app);
    const char *p[1] = {id};
    PGresult *res = db ? db_exec(db, SQL_INVITATION, 1, p, err, sizeof(err)) : NULL;
    if (!res) {
        page_message(r, 503, "Try again in a moment", "Raikoo's database cannot be reached right now.");
        return -1;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        page_message(
            r, 404, "No such invitation",
            "No invitation has this id: it may have been removed. Ask the organization to invite you "
            "again.");
        return 0;
    }
    text_printf(v->org_id, sizeof(v->org_id), "%s", PQgetvalue(res, 0, 0));
    v->org_name = xstrdup(PQgetvalue(res, 0, 1));
    v->email = xstrdup(PQgetvalue(res, 0, 2));
    v->kind = xstrdup(PQgetvalue(res, 0, 3));
    v->status = xstrdup(PQgetvalue(res, 0, 4));
    v->user_enabled = PQgetvalue(res, 0, 5)[0] == 't';
    v->name = xstrdup(PQgetvalue(res, 0, 6));
    text_printf(v->user_id, sizeof(v->user_id), "%s", PQgetvalue(res, 0, 7));
    v->expires = xstrdup(PQgetvalue(res, 0, 8));
    PQclear(res);
    return 1;
}

/* Replaces v's organization by org_id's (its name, when it can be read). */
static void org_name_of(web_req_t *r, const char *org_id, inv_t *v) {
    char err[512];
    const char *p[1] = {org_id};
    PGresult *res = web_db(r->app) ? db_exec(r->app->db, SQL_ORG_NAME, 1, p, err, sizeof(err)) : NULL;
    if (res && PQntuples(res) == 1) {
        free(v->org_name);
        v->org_name = xstrdup(PQgetvalue(res, 0, 0));
        text_printf(v->org_id, sizeof(v->org_id), "%s", org_id);
    }
    PQclear(res);
}

/* The account still has to be activated: a new user's invitation whose account is not enabled. */
static int needs_activation(const inv_t *v) {
    return strcmp(v->kind, "new") == 0 && !v->user_enabled;
}

static void intro(web_req_t *r, const inv_t *v) {
    sb_t *b = &r->body;
    sb_add(b, "<p>You are invited to join <strong id=\"org-name\">");
    html_esc(b, v->org_name);
    sb_add(b, "</strong>. The invitation is valid until ");
    html_esc(b, v->expires);
    sb_add(b, ".</p>\n");
}

static void error_alert(web_req_t *r, const char *error) {
    if (!error)
        return;
    sb_add(&r->body, "<p class=\"error\" role=\"alert\" id=\"error\">");
    html_esc(&r->body, error);
    sb_add(&r->body, "</p>\n");
}

/* A final state (accepted, removed, expired): a sentence instead of a form. 1 when it rendered one. */
static int final_state(web_req_t *r, const inv_t *v) {
    const char *text = NULL;
    if (strcmp(v->status, "accepted") == 0)
        text = "This invitation was already accepted. Sign in to see the organization.";
    else if (strcmp(v->status, "removed") == 0)
        text =
            "This invitation was withdrawn by the organization: ask them to invite you again if you should "
            "join.";
    else if (strcmp(v->status, "expired") == 0)
        text = "This invitation has expired: ask the organization to resend it (a new e-mail with a new code "
               "arrives).";
    if (!text)
        return 0;
    page_begin(r, "Invitation");
    sb_add(&r->body, "<p id=\"message\" role=\"alert\">");
    html_esc(&r->body, text);
    sb_add(&r->body, "</p>\n<p><a href=\"/signin\">Sign in</a></p>\n");
    page_end(r, 200);
    return 1;
}

static void activation_form(web_req_t *r, const char *id, const inv_t *v, const char *error) {
    sb_t *b = &r->body;
    page_begin(r, "Activate your account");
    error_alert(r, error);
    intro(r, v);
    sb_printf(b, "<form method=\"post\" action=\"/invitations/%s/activate\">\n", id);
    form_csrf(r, b);
    sb_add(b, "<p><label for=\"email\">Your e-mail address</label>\n<input id=\"email\" type=\"email\" "
              "autocomplete=\"username\" readonly value=\"");
    html_esc(b, v->email);
    sb_add(b, "\"></p>\n<p><label for=\"code\">One-time password (from the e-mail)</label>\n"
              "<input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" required autofocus "
              "spellcheck=\"false\" autocapitalize=\"characters\"></p>\n");
    sb_printf(b,
              "<p><label for=\"password\">New password (at least %ld characters)</label>\n"
              "<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" "
              "required minlength=\"%ld\"></p>\n"
              "<p><label for=\"password2\">New password again</label>\n"
              "<input id=\"password2\" name=\"password2\" type=\"password\" autocomplete=\"new-password\" "
              "required minlength=\"%ld\"></p>\n"
              "<p><button type=\"submit\">Activate my account</button></p>\n</form>\n",
              r->app->password_min, r->app->password_min, r->app->password_min);
    page_end(r, 200);
}

static void accept_form(web_req_t *r, const char *id, const inv_t *v, const char *error) {
    sb_t *b = &r->body;
    page_begin(r, "Accept the invitation");
    error_alert(r, error);
    intro(r, v);
    if (strcmp(r->user.id, v->user_id) != 0) {
        sb_add(b, "<p id=\"message\">This invitation is for ");
        html_esc(b, v->email);
        sb_add(b, ", but you are signed in as ");
        html_esc(b, r->user.email);
        sb_add(b, ": sign out, then open the link again and sign in as ");
        html_esc(b, v->email);
        sb_add(b, ".</p>\n");
        page_end(r, 200);
        return;
    }
    sb_printf(b, "<form method=\"post\" action=\"/invitations/%s/accept\">\n", id);
    form_csrf(r, b);
    sb_add(b, "<p><label for=\"code\">Confirmation code (from the e-mail)</label>\n"
              "<input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" required autofocus "
              "spellcheck=\"false\" autocapitalize=\"characters\"></p>\n"
              "<p><button type=\"submit\">Join the organization</button></p>\n</form>\n");
    page_end(r, 200);
}

void page_invitation(web_req_t *r, const char *id) {
    inv_t v;
    if (inv_load(r, id, &v) <= 0)
        return;
    if (!final_state(r, &v)) {
        if (needs_activation(&v)) {
            activation_form(r, id, &v, NULL);
        } else if (!r->signed_in) {
            char next[128], msg[512];
            snprintf(next, sizeof(next), "/invitations/%s", id);
            text_printf(msg, sizeof(msg),
                        "You are invited to join %s. Sign in as %s to accept the invitation with the "
                        "confirmation code from the e-mail.",
                        v.org_name, v.email);
            free(r->flash);
            r->flash = xstrdup(msg);
            signin_form(r, NULL, next, v.email);
        } else {
            accept_form(r, id, &v, NULL);
        }
    }
    inv_clear(&v);
}

static void joined_page(web_req_t *r, const inv_t *v, int activated) {
    sb_t *b = &r->body;
    page_begin(r, activated ? "Your account is active" : "Invitation accepted");
    sb_add(b, "<p id=\"message\" role=\"status\">");
    if (activated)
        sb_add(b, "Your account is active. ");
    sb_add(b, "You joined ");
    html_esc(b, v->org_name);
    sb_add(b, ".</p>\n");
    if (activated || !r->signed_in)
        sb_add(b,
               "<p><a href=\"/signin\" id=\"signin-link\">Sign in</a> with your e-mail address and your new "
               "password.</p>\n");
    else
        sb_printf(b, "<p><a href=\"/orgs/%s/members\">Open the organization</a></p>\n", v->org_id);
    page_end(r, 200);
}

void action_activate(web_req_t *r, const char *id) {
    if (!session_check_csrf(r))
        return;
    inv_t v;
    if (inv_load(r, id, &v) <= 0)
        return;
    /* No check of the invitation's state here: the command worker decides, and its message is shown. */
    const char *code = form_get(r, "code"), *pw = form_get(r, "password"), *pw2 = form_get(r, "password2");
    char msg[1024];
    if (!code || !*code || !pw || !pw2) {
        activation_form(r, id, &v, "Type the one-time password from the e-mail and your new password twice.");
    } else if (strcmp(pw, pw2) != 0) {
        activation_form(r, id, &v, "The two passwords typed differ: type the same password twice.");
    } else if (utf8_count(pw, strlen(pw)) < r->app->password_min || strlen(pw) > WEB_PASSWORD_MAX) {
        snprintf(msg, sizeof(msg), "The password must have at least %ld characters (and at most %d bytes).",
                 r->app->password_min, WEB_PASSWORD_MAX);
        activation_form(r, id, &v, msg);
    } else {
        char hash[RAIKOO_PASSWORD_HASH_SIZE], err[512];
        if (raikoo_password_hash(pw, hash, err, sizeof(err)) != 0) {
            log_error(NULL, "hashing a password: %s", err);
            page_message(r, 500, "Something went wrong", "The password could not be processed: try again.");
            inv_clear(&v);
            return;
        }
        json_t *data = json_pack("{s:s, s:s, s:s}", "email", v.email, "code", code, "password_hash", hash);
        sodium_memzero(hash, sizeof(hash));
        raikoo_result_t res;
        if (!web_command(r->app, RAIKOO_CMD_ACTIVATE_ACCOUNT, NULL, data, &res, msg, sizeof(msg)))
            activation_form(r, id, &v, msg);
        else if (!res.accepted)
            activation_form(r, id, &v, res.message);
        else {
            /* The code says which invitation it took when several organizations invited the address. */
            if (res.org_id && strcmp(res.org_id, v.org_id) != 0)
                org_name_of(r, res.org_id, &v);
            joined_page(r, &v, 1);
        }
        raikoo_result_clear(&res);
    }
    inv_clear(&v);
}

void action_accept(web_req_t *r, const char *id) {
    if (!session_check_csrf(r))
        return;
    inv_t v;
    if (inv_load(r, id, &v) <= 0)
        return;
    if (!r->signed_in) {
        char next[128];
        snprintf(next, sizeof(next), "/invitations/%s", id);
        signin_form(r, "Sign in first, then type the confirmation code.", next, v.email);
        inv_clear(&v);
        return;
    }
    const char *code = form_get(r, "code");
    char msg[1024];
    if (!code || !*code) {
        accept_form(r, id, &v, "Type the confirmation code from the e-mail.");
    } else {
        json_t *data = json_pack("{s:s, s:s}", "invitation_id", id, "code", code);
        raikoo_result_t res;
        if (!web_command(r->app, RAIKOO_CMD_ACCEPT_INVITATION, r->user.id, data, &res, msg, sizeof(msg)))
            accept_form(r, id, &v, msg);
        else if (!res.accepted)
            accept_form(r, id, &v, res.message);
        else
            joined_page(r, &v, 0);
        raikoo_result_clear(&res);
    }
    inv_clear(&v);
}
