/* raikoo-web: the browser's producer. One HTTP thread (libmicrohttpd's internal polling thread) serves every
 * request in turn, so the PostgreSQL connection and the producer below are used from that thread only.
 *
 * Ownership: a web_req_t and everything in it belong to main.c's connection handler; handlers borrow it and
 * fill its response fields (status, body, location, set_cookie), which main.c sends and frees. */
#ifndef RAIKOO_WEB_H
#define RAIKOO_WEB_H

#include <stddef.h>
#include <libpq-fe.h>

#include "conf.h"
#include "producer.h"
#include "strbuf.h"

#define WEB_SOURCE "/raikoo/web"
#define WEB_COOKIE "raikoo_session"
#define WEB_SID_BYTES 32
#define WEB_SID_HEX (WEB_SID_BYTES * 2)
#define WEB_CSRF_HEX 32
#define WEB_FORM_MAX 65536 /* the largest request body taken */
#define WEB_PASSWORD_MAX 4096

/* Settings and connections, one per process. */
typedef struct web_app {
    conf_t *conf;
    PGconn *db;            /* NULL until first reached; re-made when it breaks */
    raikoo_producer_t *pr; /* NULL until the broker first answers; following topic.results */
    int cookie_secure;
    long session_ttl, password_min, max_fail_address, max_fail_client, fail_window, result_timeout_ms;
    char dummy_hash[RAIKOO_PASSWORD_HASH_SIZE]; /* verified for unknown addresses: the same time either way */
} web_app_t;

/* One field of a form (decoded, valid UTF-8). */
typedef struct web_field {
    char *name, *value;
} web_field_t;

/* The signed-in user of a request's session. */
typedef struct web_user {
    char id[RAIKOO_ID_SIZE];
    char *name, *email;
    int is_admin;
} web_user_t;

typedef struct web_req {
    web_app_t *app;
    const char *method, *path;
    char client[64]; /* the client's IP address */
    /* The session: has_session when the cookie names a live one; sid its id (hex), user set when signed in. */
    int has_session, signed_in;
    char sid[WEB_SID_HEX + 1];
    char csrf[WEB_CSRF_HEX + 1];
    web_user_t user;
    char *flash; /* the message left by the previous action, shown once */
    /* The form of a POST. */
    web_field_t *fields;
    size_t nfields;
    /* The response. */
    int status;
    sb_t body;
    char *location;   /* a redirect (303) when set */
    char *set_cookie; /* a Set-Cookie header when set */
} web_req_t;

/* ---- form.c: request bodies and HTML ---- */

/* Parses an application/x-www-form-urlencoded body into r->fields. -1 when it is malformed or not UTF-8. */
int form_parse(web_req_t *r, const char *body, size_t len);
/* A field's value, or NULL when absent. Borrowed from r. */
const char *form_get(const web_req_t *r, const char *name);
void form_free(web_req_t *r);

/* Appends s HTML-escaped (& < > " '): every text from a user, the database or a result goes through it. */
void html_esc(sb_t *b, const char *s);
/* Opens a page: doctype, title (escaped), the header with who is signed in and the sign-out form, a
 * "main" landmark, and r->flash when there is one. */
void page_begin(web_req_t *r, const char *title);
/* Closes what page_begin opened and sets the status. */
void page_end(web_req_t *r, int status);
/* A whole page with one heading and one paragraph (escaped), e.g. errors. */
void page_message(web_req_t *r, int status, const char *title, const char *text);
/* The hidden CSRF field of a form (creates the visitor's session when there is none). */
void form_csrf(web_req_t *r, sb_t *b);
/* Sets a 303 redirect to path (copied). */
void web_redirect(web_req_t *r, const char *path);
/* A message shown once by the next page of this session (copied). */
void web_flash(web_req_t *r, const char *msg);

/* ---- session.c: sessions, CSRF, sign-in ---- */

/* The database connection, connecting or reconnecting when needed; NULL when PostgreSQL cannot be reached
 * (the caller shows a "try again" page). */
PGconn *web_db(web_app_t *app);
/* Reads the session cookie and the session (user, flash). -1 when the database cannot be reached. */
int session_load(web_req_t *r);
/* Makes a visitor session (no user) when there is none, so that a form can carry a CSRF token. */
int session_ensure(web_req_t *r);
/* 1 when the POST carries the session's CSRF token; else renders the refusal (403) and returns 0. */
int session_check_csrf(web_req_t *r);
/* GET and POST /signin, POST /signout. */
void page_signin(web_req_t *r);
void action_signin(web_req_t *r);
void action_signout(web_req_t *r);
/* Renders the sign-in page (status 200) with an optional error and where to go afterwards. */
void signin_form(web_req_t *r, const char *error, const char *next, const char *email);
/* `raikoo-web admin-password --email E`: sets an admin's password from standard input. */
int admin_password(web_app_t *app, int argc, char **argv);

/* ---- command.c ---- */

/* Publishes a command through the producer library and waits for its result. 1 with *out filled (clear
 * it), 0 with msg (a sentence for the page) when the command could not be published or no result came in
 * time. data is stolen. */
int web_command(web_app_t *app, raikoo_command_type_t type, const char *actor, json_t *data,
                raikoo_result_t *out, char *msg, size_t msg_size);

/* ---- invite.c: the invitee's pages ---- */
void page_invitation(web_req_t *r, const char *invitation_id);
void action_activate(web_req_t *r, const char *invitation_id);
void action_accept(web_req_t *r, const char *invitation_id);

/* ---- org.c: organizations and their members ---- */
void page_orgs(web_req_t *r);
void page_members(web_req_t *r, const char *org_id);
void page_invite_form(web_req_t *r, const char *org_id, int new_user);
/* POST /orgs/<org>/<what>[/<id>/<verb>]. */
void action_org(web_req_t *r, const char *org_id, const char *rest);

#endif
