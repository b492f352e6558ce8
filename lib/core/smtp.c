/* SMTP submission over libesmtp: many messages in one session, STARTTLS, AUTH, timeouts, and a verdict
 * per message (sent, try again later, or give up). */
#include "smtp.h"
#include "metrics.h"
#include "text.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h> /* libesmtp.h uses size_t without including it */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <auth-client.h>
#include <libesmtp.h> /* after openssl/ssl.h: declares smtp_starttls_set_ctx only then */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

/* The last OpenSSL error as text, for a message. */
static const char *ssl_error(char *buf, size_t size) {
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, size, "no detail from OpenSSL");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

/* Makes the TLS context every session of this configuration shares. Our own rather than libesmtp's:
 * libesmtp 1.1.0 looks for its ca.pem under $XDG_CONFIG_DIR (not XDG_CONFIG_HOME), frees the context it
 * caches for the whole process when the first session ends (the next session would use freed memory),
 * and matches the server's name against DNS names only, so a certificate for an IP address never passes.
 * Here OpenSSL checks the chain and the name together (RFC 6125 rules, IP addresses included) and
 * libesmtp reports the verdict through SMTP_EV_INVALID_PEER_CERTIFICATE. */
static int tls_context_new(smtp_conf_t *sc, const char *host, char *errstr, size_t errstr_size) {
    char ebuf[256], cafile[4096];
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int have_file = 0;
    if (xdg && *xdg)
        have_file = (size_t)snprintf(cafile, sizeof(cafile), "%s/libesmtp/ca.pem", xdg) < sizeof(cafile);
    else if (home && *home)
        have_file =
            (size_t)snprintf(cafile, sizeof(cafile), "%s/.config/libesmtp/ca.pem", home) < sizeof(cafile);
    if (have_file && access(cafile, F_OK) != 0)
        have_file = 0;

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(errstr, errstr_size, "smtp.starttls: cannot make a TLS context: %s",
                 ssl_error(ebuf, sizeof(ebuf)));
        return -1;
    }
    /* TLS 1.2 exactly. Under TLS 1.3 the server sends its session tickets after the handshake; libesmtp
     * 1.1.0 sees them as input, reads instead of flushing its EHLO, and waits for a reply that never
     * comes until smtp.timeout.ms (seen against aiosmtpd: every other session timed out). TLS 1.2 sends
     * tickets inside the handshake. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    /* Verification stays SSL_VERIFY_NONE on purpose: the handshake completes, and libesmtp reads the
     * verdict afterwards and asks event_cb, which refuses anything but X509_V_OK with a clear reason. */
    if (have_file) {
        /* As libesmtp does: when the file is there, only its CAs are trusted. */
        if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
            snprintf(errstr, errstr_size, "smtp.starttls: cannot load the trusted CAs from %.3000s: %s",
                     cafile, ssl_error(ebuf, sizeof(ebuf)));
            SSL_CTX_free(ctx);
            return -1;
        }
        snprintf(sc->trust, sizeof(sc->trust), "trusted CAs from %.180s", cafile);
    } else {
        SSL_CTX_set_default_verify_paths(ctx);
        snprintf(sc->trust, sizeof(sc->trust),
                 "trusted CAs: the system's; $XDG_CONFIG_HOME/libesmtp/ca.pem would replace them");
    }
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    unsigned char addr[sizeof(struct in6_addr)];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    int named =
        is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) : X509_VERIFY_PARAM_set1_host(param, host, 0);
    if (named != 1) {
        snprintf(errstr, errstr_size, "smtp.starttls: cannot check certificates against smtp.host \"%.200s\"",
                 host);
        SSL_CTX_free(ctx);
        return -1;
    }
    if (!is_ip)
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    sc->tls = ctx;
    return 0;
}

int smtp_conf_load(const conf_t *c, smtp_conf_t *sc, char *errstr, size_t errstr_size) {
    memset(sc, 0, sizeof(*sc));
    long port;
    if (conf_get_long(c, "smtp.port", 1, 65535, &port, errstr, errstr_size) != 0 ||
        conf_get_long(c, "smtp.timeout.ms", 1, 3600000, &sc->timeout_ms, errstr, errstr_size) != 0)
        return -1;
    const char *host = conf_get(c, "smtp.host");
    if (!host || !*host) {
        snprintf(errstr, errstr_size, "smtp.host is empty");
        return -1;
    }
    /* libesmtp reads "host:port"; an IPv6 literal needs no brackets there, it splits at the last colon. */
    if ((size_t)snprintf(sc->hostport, sizeof(sc->hostport), "%s:%ld", host, port) >= sizeof(sc->hostport)) {
        snprintf(errstr, errstr_size, "smtp.host is too long");
        return -1;
    }
    const char *tls = conf_get(c, "smtp.starttls");
    if (tls && strcmp(tls, "no") == 0)
        sc->starttls = SMTP_STARTTLS_NO;
    else if (tls && strcmp(tls, "if-available") == 0)
        sc->starttls = SMTP_STARTTLS_IF_AVAILABLE;
    else if (tls && strcmp(tls, "required") == 0)
        sc->starttls = SMTP_STARTTLS_REQUIRED;
    else {
        snprintf(errstr, errstr_size, "smtp.starttls: \"%s\" is not no, if-available or required",
                 tls ? tls : "");
        return -1;
    }
    sc->user = conf_get(c, "smtp.user");
    sc->password = conf_get(c, "smtp.password");
    if (sc->starttls != SMTP_STARTTLS_NO && tls_context_new(sc, host, errstr, errstr_size) != 0)
        return -1;
    return 0;
}

void smtp_conf_clear(smtp_conf_t *sc) {
    if (sc->tls)
        SSL_CTX_free(sc->tls);
    sc->tls = NULL;
}

void smtp_init(void) {
    auth_client_init();
}

typedef enum { AUTH_NOT_TRIED, AUTH_ASKED, AUTH_OK, AUTH_REFUSED } auth_progress_t;

/* What the callbacks learn about a session, for a clear reason when it fails. */
typedef struct session_note {
    char why[400];
    int port; /* the server's port, to find the session's socket */
    const smtp_conf_t *sc;
    auth_progress_t auth;
    char auth_reply[160];         /* the server's last refusal of AUTH, one line */
    smtp_accepted_cb on_accepted; /* NULL, or told of each message as the server accepts it */
    void *on_accepted_arg;
    smtp_message_t *msgs;
    size_t n_msgs;
} session_note_t;

/* Turns Nagle's algorithm off on the socket libesmtp just connected to the server. SMTP is a dialogue of
 * small writes each waiting for a reply; with Nagle on, the last write of a message (the final ".") waits
 * for the server's delayed ACK, 40 ms a message, which held the mailer to about 20 messages a second.
 * libesmtp neither sets TCP_NODELAY nor hands out its socket, so the socket is found among this process's
 * descriptors: every TCP connection to the server's port gets it. Several sessions may run at once, in
 * threads of their own, and other threads open and close descriptors meanwhile: whatever the scan meets is
 * harmless to touch. A socket to the server's port is one of our sessions' (setting the option again on one
 * that has it changes nothing), and a descriptor closed and reused between the two calls is at worst
 * another TCP socket that gets TCP_NODELAY. getpeername alone tells all the scan needs (EBADF: closed,
 * ENOTSOCK: not a socket), without fstat, whose reading of another thread's descriptor ThreadSanitizer
 * reports as a race. The scan goes up from the lowest descriptors, as the kernel hands out the lowest free
 * number, and stops after a run of closed ones: scanning down from the descriptor limit cost tens of
 * thousands of calls a session (about a tenth of the mailer's CPU time). */
static void nodelay_on_session_socket(int port) {
    long max = sysconf(_SC_OPEN_MAX);
    if (max <= 0 || max > 65536)
        max = 65536;
    int closed_run = 0;
    for (int fd = 3; fd < (int)max && closed_run < 256; fd++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0) {
            closed_run = errno == EBADF ? closed_run + 1 : 0;
            continue;
        }
        closed_run = 0;
        int peer_port = peer.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&peer)->sin_port)
                        : peer.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&peer)->sin6_port)
                                                     : -1;
        if (peer_port != port)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

static void event_cb(smtp_session_t session, int event_no, void *arg, ...) {
    (void)session;
    session_note_t *note = arg;
    va_list ap;
    va_start(ap, arg);
    switch (event_no) {
        case SMTP_EV_CONNECT: nodelay_on_session_socket(note->port); break;
        case SMTP_EV_MESSAGESENT: {
            /* The server answered the end of this message's data: accepted (2xx, its recipient too)? */
            smtp_message_t msg = va_arg(ap, smtp_message_t);
            for (size_t i = 0; note->on_accepted && i < note->n_msgs; i++) {
                if (note->msgs[i] != msg)
                    continue;
                const smtp_status_t *data = smtp_message_transfer_status(msg);
                if (data && data->code >= 200 && data->code < 300)
                    note->on_accepted(note->on_accepted_arg, i);
                break;
            }
            break;
        }
        case SMTP_EV_EXTNA_STARTTLS:
            snprintf(note->why, sizeof(note->why),
                     "the server does not offer STARTTLS (smtp.starttls=required)");
            break;
        case SMTP_EV_INVALID_PEER_CERTIFICATE: {
            long result = va_arg(ap, long);
            int *ok = va_arg(ap, int *);
            *ok = 0; /* never send a code over a connection we cannot trust */
            snprintf(note->why, sizeof(note->why),
                     "the server's TLS certificate did not verify: %.80s (OpenSSL %ld; %.180s)",
                     X509_verify_cert_error_string(result), result, note->sc->trust);
            break;
        }
        case SMTP_EV_NO_PEER_CERTIFICATE: {
            int *ok = va_arg(ap, int *);
            *ok = 0;
            snprintf(note->why, sizeof(note->why), "the server presented no TLS certificate");
            break;
        }
        case SMTP_EV_WRONG_PEER_CERTIFICATE: {
            /* libesmtp's own name check knows DNS names only. The certificate verified (with a wrong name
         * SMTP_EV_INVALID_PEER_CERTIFICATE came first and ended the session), and our context had
         * OpenSSL check the name as part of that: a server at an IP address is named correctly here. */
            int *ok = va_arg(ap, int *);
            *ok = note->sc->tls != NULL;
            if (!*ok)
                snprintf(note->why, sizeof(note->why),
                         "the server's TLS certificate does not name the server");
            break;
        }
        case SMTP_EV_WEAK_CIPHER: {
            (void)va_arg(ap, int);
            int *ok = va_arg(ap, int *);
            *ok = 0;
            snprintf(note->why, sizeof(note->why), "the TLS cipher is too weak");
            break;
        }
        default: break;
    }
    va_end(ap);
}

char *smtp_reply_clean(const char *text, size_t len) {
    char *t = utf8_clean_dup(text, len, SMTP_REPLY_MAX);
    for (unsigned char *p = (unsigned char *)t; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = ' ';
    size_t n = strlen(t);
    while (n > 0 && t[n - 1] == ' ')
        t[--n] = '\0';
    return t;
}

/* Follows the dialogue (never the message contents: libesmtp does not show them here) for what became of
 * AUTH, which libesmtp does not tell: when every mechanism is refused it carries on unauthenticated.
 * Only the command word of what we write is looked at, never the credentials after it. */
static void monitor_cb(const char *buf, int buflen, int writing, void *arg) {
    session_note_t *note = arg;
    if (writing == SMTP_CB_WRITING) {
        if (buflen >= 5 && strncasecmp(buf, "AUTH ", 5) == 0)
            note->auth = AUTH_ASKED;
        return;
    }
    if (writing != SMTP_CB_READING || note->auth != AUTH_ASKED || buflen < 3)
        return;
    if (buf[0] == '2') {
        note->auth = AUTH_OK;
    } else if (buf[0] == '4' || buf[0] == '5') {
        note->auth = AUTH_REFUSED;
        int n = 0;
        while (n < buflen && buf[n] != '\r' && buf[n] != '\n')
            n++;
        char *reply = smtp_reply_clean(buf, (size_t)n);
        text_printf(note->auth_reply, sizeof(note->auth_reply), "%s", reply);
        free(reply);
    }
    /* 3xx: a challenge; the answer is written and the verdict read next. */
}

/* SASL asks for the user and the password; arg is the smtp_conf_t. */
static int interact_cb(auth_client_request_t request, char **result, int fields, void *arg) {
    const smtp_conf_t *sc = arg;
    for (int i = 0; i < fields; i++) {
        if (request[i].flags & AUTH_USER)
            result[i] = (char *)sc->user;
        else if (request[i].flags & AUTH_PASS)
            result[i] = (char *)sc->password;
        else
            return 0;
    }
    return 1;
}

static void copy_reply(char *out, size_t out_size, const smtp_status_t *st, const char *what) {
    const char *raw = st && st->text ? st->text : "";
    char *text = smtp_reply_clean(raw, strlen(raw));
    text_printf(out, out_size, "%s: %d %s", what, st ? st->code : 0, text);
    free(text);
}

/* The verdict for one message after the session, from the replies to MAIL, RCPT and the end of DATA. */
static void judge(smtp_message_t msg, smtp_recipient_t rcpt, smtp_item_t *it, const char *session_why) {
    const smtp_status_t *mail = smtp_reverse_path_status(msg);
    const smtp_status_t *rs = smtp_recipient_status(rcpt);
    const smtp_status_t *data = smtp_message_transfer_status(msg);
    int rcpt_ok = rs && rs->code >= 200 && rs->code < 300;
    if (mail && mail->code >= 500) {
        it->outcome = SMTP_PERMANENT;
        copy_reply(it->detail, sizeof(it->detail), mail, "MAIL FROM refused");
    } else if (rs && rs->code >= 500) {
        it->outcome = SMTP_PERMANENT;
        copy_reply(it->detail, sizeof(it->detail), rs, "recipient refused");
    } else if (mail && mail->code >= 400) {
        /* A deferred envelope decides, whatever the (pipelined) DATA got back afterwards. */
        it->outcome = SMTP_TRANSIENT;
        copy_reply(it->detail, sizeof(it->detail), mail, "MAIL FROM deferred");
    } else if (rs && rs->code >= 400) {
        it->outcome = SMTP_TRANSIENT;
        copy_reply(it->detail, sizeof(it->detail), rs, "recipient deferred");
    } else if (rcpt_ok && data && data->code >= 200 && data->code < 300) {
        it->outcome = SMTP_SENT;
        copy_reply(it->detail, sizeof(it->detail), data, "accepted");
    } else if (rcpt_ok && data && data->code >= 500) {
        it->outcome = SMTP_PERMANENT;
        copy_reply(it->detail, sizeof(it->detail), data, "message refused");
    } else if (rcpt_ok && data && data->code >= 400) {
        it->outcome = SMTP_TRANSIENT;
        copy_reply(it->detail, sizeof(it->detail), data, "message deferred");
    } else {
        it->outcome = SMTP_TRANSIENT;
        text_printf(it->detail, sizeof(it->detail), "not delivered: %.*s",
                    (int)utf8_prefix(session_why, strlen(session_why), 200), session_why);
    }
}

int smtp_send(const smtp_conf_t *sc, const char *from, smtp_item_t *items, size_t n, char *errstr,
              size_t errstr_size) {
    return smtp_send_cb(sc, from, items, n, NULL, NULL, errstr, errstr_size);
}

#define SMTP_WHY_SIZE 320 /* why a session failed as a whole */

/* Configures a new session: the server, the event callback, the timeouts, STARTTLS and AUTH (*auth, owned
 * by the caller once set). 0, or -1 with why. */
static int session_setup(smtp_session_t session, const smtp_conf_t *sc, session_note_t *note,
                         auth_context_t *auth, char *why, size_t why_size) {
    if (!smtp_set_server(session, sc->hostport)) {
        snprintf(why, why_size, "smtp.host/smtp.port \"%.150s\" refused by libesmtp", sc->hostport);
        return -1;
    }
    smtp_set_eventcb(session, event_cb, note);
    /* Every phase gets the configured timeout; below RFC 5321's minutes only on purpose. */
    static const int phases[] = {Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA, Timeout_TRANSFER,
                                 Timeout_DATA2};
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++)
        smtp_set_timeout(session, phases[i] | Timeout_OVERRIDE_RFC2822_MINIMUM, sc->timeout_ms);
    if (sc->starttls != SMTP_STARTTLS_NO) {
        enum starttls_option how =
            sc->starttls == SMTP_STARTTLS_REQUIRED ? Starttls_REQUIRED : Starttls_ENABLED;
        /* The session takes a reference of its own to the shared context. */
        if (!sc->tls || !smtp_starttls_set_ctx(session, sc->tls) || !smtp_starttls_enable(session, how)) {
            snprintf(why, why_size, "this libesmtp has no STARTTLS support (smtp.starttls)");
            return -1;
        }
    }
    if (sc->user && *sc->user) {
        *auth = auth_create_context();
        if (!*auth) {
            snprintf(why, why_size, "cannot create an SMTP AUTH context");
            return -1;
        }
        /* PLAIN and LOGIN send the password as is; allowed, as the operator configured AUTH. */
        auth_set_mechanism_flags(*auth, AUTH_PLUGIN_PLAIN, 0);
        auth_set_interact_cb(*auth, interact_cb, (void *)sc);
        smtp_auth_set_context(session, *auth);
        smtp_set_monitorcb(session, monitor_cb, note, 0);
    }
    return 0;
}

/* Adds the n messages of items to the session (msgs, rcpts: n slots each). 0, or -1 with why. */
static int session_add(smtp_session_t session, const char *from, const smtp_item_t *items, size_t n,
                       smtp_message_t *msgs, smtp_recipient_t *rcpts, char *why, size_t why_size) {
    for (size_t i = 0; i < n; i++) {
        msgs[i] = smtp_add_message(session);
        if (!msgs[i] || !smtp_set_reverse_path(msgs[i], from) ||
            !smtp_set_message_str(msgs[i], (void *)items[i].message)) {
            snprintf(why, why_size, "cannot add a message to the SMTP session");
            return -1;
        }
        rcpts[i] = smtp_add_recipient(msgs[i], items[i].rcpt);
        if (!rcpts[i]) {
            snprintf(why, why_size, "cannot add a recipient to the SMTP session");
            return -1;
        }
    }
    return 0;
}

/* After smtp_start_session (started: what it returned; called right after it, for smtp_errno): judges
 * every message by its own replies, or by why the session failed as a whole. 0 when the server took part,
 * else -1 with why (why_size: SMTP_WHY_SIZE). */
static int session_outcome(const smtp_conf_t *sc, const session_note_t *note, int started,
                           smtp_message_t *msgs, smtp_recipient_t *rcpts, smtp_item_t *items, size_t n,
                           char *why, size_t why_size) {
    char ebuf[128] = "";
    const char *session_why = "the session ended early";
    if (!started) {
        smtp_strerror(smtp_errno(), ebuf, sizeof(ebuf));
        if (note->why[0])
            session_why = note->why;
        else
            session_why = ebuf;
    } else if (note->why[0]) {
        session_why = note->why;
    }
    char auth_why[256] = "";
    if (sc->user && *sc->user && note->auth != AUTH_OK && !note->why[0]) {
        /* AUTH was asked for and did not happen: whatever the server then said to MAIL or RCPT (530,
         * 550 relaying denied) is about that, and fixing smtp.user/smtp.password makes it go. */
        if (note->auth == AUTH_REFUSED)
            text_printf(auth_why, sizeof(auth_why),
                        "SMTP AUTH refused (check smtp.user and smtp.password): %s", note->auth_reply);
        else if (started)
            snprintf(auth_why, sizeof(auth_why),
                     "the server offered no AUTH mechanism we can use (smtp.user is set%s)",
                     sc->starttls == SMTP_STARTTLS_NO ? "; many servers offer AUTH only after STARTTLS" : "");
        if (auth_why[0])
            session_why = auth_why;
    }
    char where[SMTP_WHY_SIZE];
    text_printf(where, sizeof(where), "%.*s (SMTP %.50s)",
                (int)utf8_prefix(session_why, strlen(session_why), 250), session_why, sc->hostport);
    for (size_t i = 0; i < n; i++) {
        judge(msgs[i], rcpts[i], &items[i], where);
        if (auth_why[0] && items[i].outcome != SMTP_SENT) {
            items[i].outcome = SMTP_TRANSIENT;
            text_printf(items[i].detail, sizeof(items[i].detail), "%s", where);
        }
    }
    /* A session that sent nothing for a reason of its own (unreachable, TLS, AUTH) failed as a whole: the
     * server's (or the configuration's) fault, not any message's. */
    int any_sent = 0;
    for (size_t i = 0; i < n; i++)
        any_sent |= items[i].outcome == SMTP_SENT;
    if (!started || auth_why[0] || (note->why[0] && !any_sent)) {
        snprintf(why, why_size, "%s", where);
        return -1;
    }
    return 0;
}

int smtp_send_cb(const smtp_conf_t *sc, const char *from, smtp_item_t *items, size_t n,
                 smtp_accepted_cb on_accepted, void *arg, char *errstr, size_t errstr_size) {
    int rc = -1;
    smtp_session_t session = NULL;
    auth_context_t auth = NULL;
    smtp_message_t *msgs = NULL;
    smtp_recipient_t *rcpts = NULL;
    session_note_t note = {"", 0, sc, AUTH_NOT_TRIED, "", on_accepted, arg, NULL, 0};
    const char *colon = strrchr(sc->hostport, ':');
    note.port = colon ? (int)strtol(colon + 1, NULL, 10) : 25;
    char why[SMTP_WHY_SIZE] = "";
    int judged = 0;
    double session_began = metrics_now();

    for (size_t i = 0; i < n; i++) {
        items[i].outcome = SMTP_TRANSIENT;
        snprintf(items[i].detail, sizeof(items[i].detail), "not attempted");
    }
    if (n == 0)
        return 0;
    msgs = xcalloc(n, sizeof(*msgs));
    rcpts = xcalloc(n, sizeof(*rcpts));
    note.msgs = msgs;
    note.n_msgs = n;
    session = smtp_create_session();
    if (!session) {
        snprintf(why, sizeof(why), "cannot create an SMTP session");
        goto done;
    }
    if (session_setup(session, sc, &note, &auth, why, sizeof(why)) != 0 ||
        session_add(session, from, items, n, msgs, rcpts, why, sizeof(why)) != 0)
        goto done;
    int started = smtp_start_session(session);
    rc = session_outcome(sc, &note, started, msgs, rcpts, items, n, why, sizeof(why));
    judged = 1;
done:
    if (why[0] && !judged) {
        for (size_t i = 0; i < n; i++)
            text_printf(items[i].detail, sizeof(items[i].detail), "%s", why);
    }
    if (why[0])
        text_printf(errstr, errstr_size, "%s", why);
    if (session)
        smtp_destroy_session(session);
    if (auth)
        auth_destroy_context(auth);
    free(msgs);
    free(rcpts);
    metric_observe(
        metric_histogram("raikoo_smtp_session_duration_seconds",
                         "SMTP sessions of the mailer, connect to QUIT, by result (ok: the server took "
                         "part in it; failed: unreachable, greeting, TLS or AUTH refused)",
                         METRIC_LABELS("result"), METRIC_SECONDS_BUCKETS, METRIC_SECONDS_BUCKETS_N),
        METRIC_LABELS(rc == 0 ? "ok" : "failed"), metrics_now() - session_began);
    return rc;
}
