/* raikoo-web: the browser's producer. Serves the invitee's pages (where the invitation e-mail links), sign-in,
 * and the organizations' Members tab on web.listen; publishes commands through the producer library and waits
 * for their results; reads PostgreSQL for the pages. `raikoo-web admin-password --email E` sets an admin's
 * password from standard input (the demo admin of make run). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <microhttpd.h>
#include <sodium.h>

#include "conf.h"
#include "log.h"
#include "secret.h"
#include "text.h"
#include "web.h"
#include "worker.h"

/* Every response: no script at all, nothing from elsewhere, never in a frame, never cached. */
static const char CSP[] = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                          "frame-ancestors 'none'; base-uri 'none'";

static const char STYLE[] =
    "body{font-family:system-ui,sans-serif;line-height:1.5;margin:0;color:#1b1b1b;background:#fff}\n"
    "header{display:flex;justify-content:space-between;align-items:center;padding:.5rem 1rem;"
    "background:#16365c;color:#fff}\nheader a,header span{color:#fff}\n.brand{font-weight:bold;margin:0}\n"
    "main{padding:1rem;max-width:72rem}\n.skip{position:absolute;left:-999px}\n.skip:focus{left:1rem;top:"
    "1rem;"
    "background:#fff;color:#000;padding:.5rem}\n.sr{position:absolute;width:1px;height:1px;overflow:hidden;"
    "clip:rect(0 0 0 0)}\n.inline{display:inline}\n:focus{outline:3px solid #f5a623;outline-offset:2px}\n"
    "table{border-collapse:collapse;margin:1rem 0}\nth,td{border:1px solid #bbb;padding:.3rem .5rem;"
    "text-align:left;vertical-align:top}\n.flash{background:#e7f3e7;border:1px solid #3c763d;padding:.5rem}\n"
    ".error{background:#fbeaea;border:1px solid #a94442;padding:.5rem}\n"
    "a.button,button{display:inline-block;padding:.3rem .8rem;border:1px solid #16365c;border-radius:4px;"
    "background:#f4f7fb;color:#16365c;text-decoration:none;font:inherit;cursor:pointer}\n"
    "input{font:inherit;padding:.2rem}\ninput:not([type=checkbox]){min-width:20rem}\nlabel{font-weight:600}\n"
    ".tabs a{margin-right:1rem}\n"
    ".tabs a[aria-current]{font-weight:bold;border-bottom:3px solid #16365c}\n";

typedef struct conn_state {
    sb_t body;
    int too_large;
} conn_state_t;

static void add_headers(struct MHD_Response *resp) {
    MHD_add_response_header(resp, "Content-Security-Policy", CSP);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type, const char *text,
                                 size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    add_headers(resp);
    MHD_add_response_header(resp, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* "/orgs/<uuid>/rest": copies the id into id and points *rest at what follows its slash ("" when none). */
static int path_id(const char *path, const char *prefix, char id[RAIKOO_ID_SIZE], const char **rest) {
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return 0;
    const char *s = path + n, *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : strlen(s);
    if (len != RAIKOO_ID_SIZE - 1)
        return 0;
    memcpy(id, s, len);
    id[len] = '\0';
    if (!uuid_valid(id))
        return 0;
    *rest = slash ? slash + 1 : "";
    return 1;
}

static void route(web_req_t *r, struct MHD_Connection *c) {
    int get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    int post = strcmp(r->method, "POST") == 0;
    char id[RAIKOO_ID_SIZE];
    const char *rest;
    if (get && strcmp(r->path, "/") == 0) {
        web_redirect(r, r->signed_in ? "/orgs" : "/signin");
    } else if (get && strcmp(r->path, "/signin") == 0) {
        if (r->signed_in)
            web_redirect(r, "/orgs");
        else
            signin_form(r, NULL, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "next"), NULL);
    } else if (post && strcmp(r->path, "/signin") == 0) {
        action_signin(r);
    } else if (post && strcmp(r->path, "/signout") == 0) {
        action_signout(r);
    } else if (get && strcmp(r->path, "/orgs") == 0) {
        page_orgs(r);
    } else if (path_id(r->path, "/invitations/", id, &rest)) {
        if (get && !*rest)
            page_invitation(r, id);
        else if (post && strcmp(rest, "activate") == 0)
            action_activate(r, id);
        else if (post && strcmp(rest, "accept") == 0)
            action_accept(r, id);
        else
            page_message(r, 404, "Not found", "This page does not exist.");
    } else if (path_id(r->path, "/orgs/", id, &rest)) {
        if (get && (!*rest || strcmp(rest, "members") == 0))
            page_members(r, id);
        else if (get && strcmp(rest, "invite-new") == 0)
            page_invite_form(r, id, 1);
        else if (get && strcmp(rest, "add-existing") == 0)
            page_invite_form(r, id, 0);
        else if (post)
            action_org(r, id, rest);
        else
            page_message(r, 404, "Not found", "This page does not exist.");
    } else if (!get && !post) {
        page_message(r, 405, "Not allowed", "This method is not served here.");
    } else {
        page_message(r, 404, "Not found", "This page does not exist.");
    }
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    web_app_t *app = cls;
    conn_state_t *st = *con_cls;
    if (!st) {
        st = xcalloc(1, sizeof(*st));
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_size) {
        if (st->body.n + *upload_size > WEB_FORM_MAX)
            st->too_large = 1;
        else
            sb_addn(&st->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/style.css") == 0)
        return send_text(c, 200, "text/css; charset=utf-8", STYLE, sizeof(STYLE) - 1);
    if (strcmp(url, "/favicon.ico") == 0)
        return send_text(c, 404, "text/plain; charset=utf-8", "", 0);

    web_req_t r = {.app = app, .method = method, .path = url, .status = 200};
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    text_printf(r.client, sizeof(r.client), "unknown");
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r.client, sizeof(r.client));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r.client, sizeof(r.client));
    }
    const char *cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, WEB_COOKIE);
    if (cookie && strlen(cookie) == WEB_SID_HEX)
        memcpy(r.sid, cookie, WEB_SID_HEX + 1);
    const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (st->too_large) {
        page_message(&r, 413, "Too large", "The form sent is too large.");
    } else if (session_load(&r) != 0) {
        page_message(&r, 503, "Try again in a moment", "Raikoo's database cannot be reached right now.");
    } else if (strcmp(method, "POST") == 0 &&
               (!ctype || strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0 ||
                form_parse(&r, st->body.s ? st->body.s : "", st->body.n) != 0)) {
        page_message(&r, 400, "Bad request",
                     "The form could not be read: reload the page and send it again.");
    } else {
        route(&r, c);
    }
    /* Never the query string or the form: the path only (ids, no secret), with the status. */
    log_debug(NULL, "%s %s -> %d", method, url, r.location ? 303 : r.status);

    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r.body.n, r.body.s ? r.body.s : (void *)"", MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret = MHD_NO;
    if (resp) {
        add_headers(resp);
        MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
        if (r.set_cookie)
            MHD_add_response_header(resp, "Set-Cookie", r.set_cookie);
        if (r.location)
            MHD_add_response_header(resp, "Location", r.location);
        ret = MHD_queue_response(c, (unsigned)(r.location ? 303 : r.status), resp);
        MHD_destroy_response(resp);
    }
    form_free(&r);
    free(r.body.s);
    free(r.location);
    free(r.set_cookie);
    free(r.flash);
    free(r.user.name);
    free(r.user.email);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode t) {
    (void)cls;
    (void)c;
    (void)t;
    conn_state_t *st = *con_cls;
    if (st) {
        if (st->body.s)
            sodium_memzero(st->body.s, st->body.cap); /* the form had passwords and codes */
        free(st->body.s);
        free(st);
        *con_cls = NULL;
    }
}

static int parse_listen(const char *s, struct sockaddr_in *sa, char *err, size_t err_size) {
    char host[64];
    const char *colon = strrchr(s, ':');
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    if (!colon || (size_t)(colon - s) >= sizeof(host)) {
        snprintf(err, err_size, "web.listen: \"%s\" is not address:port (e.g. 127.0.0.1:8080)", s);
        return -1;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        snprintf(err, err_size, "web.listen: \"%s\" is not an IPv4 address:port (e.g. 127.0.0.1:8080)", s);
        return -1;
    }
    sa->sin_port = htons((uint16_t)port);
    return 0;
}

static int app_settings(web_app_t *app, char *err, size_t err_size) {
    const char *secure = conf_get(app->conf, "web.cookie.secure");
    if (strcmp(secure, "yes") != 0 && strcmp(secure, "no") != 0) {
        snprintf(err, err_size, "web.cookie.secure: \"%s\" is neither yes nor no", secure);
        return -1;
    }
    app->cookie_secure = strcmp(secure, "yes") == 0;
    if (conf_get_long(app->conf, "web.session.ttl.seconds", 60, 90L * 86400, &app->session_ttl, err,
                      err_size) ||
        conf_get_long(app->conf, "web.password.min.length", 8, 1024, &app->password_min, err, err_size) ||
        conf_get_long(app->conf, "web.signin.max.failures", 1, 1000000, &app->max_fail_address, err,
                      err_size) ||
        conf_get_long(app->conf, "web.signin.max.failures.client", 1, 1000000, &app->max_fail_client, err,
                      err_size) ||
        conf_get_long(app->conf, "web.signin.window.seconds", 1, 86400, &app->fail_window, err, err_size) ||
        conf_get_long(app->conf, "result.timeout.ms", 100, 3600000, &app->result_timeout_ms, err, err_size))
        return -1;
    return 0;
}

int main(int argc, char **argv) {
    int rc = 3, admin_cmd = argc > 1 && strcmp(argv[1], "admin-password") == 0;
    char err[1024];
    web_app_t app = {0};
    struct MHD_Daemon *d = NULL;
    app.conf = conf_new();
    if (admin_cmd) {
        if (conf_load(app.conf, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "raikoo-web: %s\n", err);
            rc = 2;
            goto done;
        }
        log_init("web", conf_get(app.conf, "log.level"));
    } else if (worker_init(
                   &argc, argv, app.conf, "web",
                   "Serves Raikoo's web pages on web.listen: the invitation e-mail's link (activate a new\n"
                   "account, accept an invitation), sign-in, and each organization's Members tab with\n"
                   "its invitations and actions, published as commands through the producer library.\n"
                   "Prints its address (http://HOST:PORT/) when it is ready. SIGTERM or SIGINT: exit 0.\n"
                   "`raikoo-web admin-password --email E` sets an admin's password from standard input.") !=
               0) {
        rc = worker_exit_status();
        goto done;
    }
    if (secret_init(err, sizeof(err)) != 0 || app_settings(&app, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-web: %s\n", err);
        rc = 2;
        goto done;
    }
    if (admin_cmd) {
        rc = admin_password(&app, argc, argv);
        goto done;
    }
    /* Verified in place of a hash for an unknown address, so that the answer takes as long either way. */
    char dummy[32];
    randombytes_buf(dummy, sizeof(dummy));
    sodium_bin2hex(err, sizeof(err), (unsigned char *)dummy, 16);
    if (raikoo_password_hash(err, app.dummy_hash, err, sizeof(err)) != 0) {
        log_error(NULL, "%s", err);
        goto done;
    }
    struct sockaddr_in sa;
    if (parse_listen(conf_get(app.conf, "web.listen"), &sa, err, sizeof(err)) != 0) {
        log_error(NULL, "%s", err);
        rc = 2;
        goto done;
    }
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, handle, &app,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, completed,
                         NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_END);
    if (!d) {
        log_error(NULL, "cannot listen on %s (web.listen): is another program using this port?",
                  conf_get(app.conf, "web.listen"));
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[64];
    inet_ntop(AF_INET, &sa.sin_addr, host, sizeof(host));
    unsigned port = info ? info->port : ntohs(sa.sin_port);
    log_info(NULL, "raikoo-web serving http://%s:%u/", host, port);
    printf("raikoo-web: http://%s:%u/\n", host, port);
    fflush(stdout);
    while (worker_running())
        worker_sleep_ms(500);
    log_info(NULL, "raikoo-web stopping");
    rc = 0;
done:
    if (d)
        MHD_stop_daemon(d);
    raikoo_producer_free(app.pr);
    if (app.db)
        PQfinish(app.db);
    conf_free(app.conf);
    return rc;
}
