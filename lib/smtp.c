/* SMTP submission over libesmtp: many messages in one session, STARTTLS, AUTH, timeouts, and a verdict
 * per message (sent, try again later, or give up). */
#include "smtp.h"

#include <stdarg.h>
#include <stddef.h> /* libesmtp.h uses size_t without including it */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <auth-client.h>
#include <libesmtp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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
        snprintf(errstr, errstr_size, "smtp.starttls: \"%s\" is not no, if-available or required", tls ? tls : "");
        return -1;
    }
    sc->user = conf_get(c, "smtp.user");
    sc->password = conf_get(c, "smtp.password");
    return 0;
}

void smtp_init(void) {
    auth_client_init();
}

/* What the event callback learns about a session, for a clear reason when it fails. */
typedef struct session_note {
    char why[200];
    int port; /* the server's port, to find the session's socket */
} session_note_t;

/* Turns Nagle's algorithm off on the socket libesmtp just connected to the server. SMTP is a dialogue of
 * small writes each waiting for a reply; with Nagle on, the last write of a message (the final ".") waits
 * for the server's delayed ACK, 40 ms a message, which held the mailer to about 20 messages a second.
 * libesmtp neither sets TCP_NODELAY nor hands out its socket, so the socket is found among this process's
 * descriptors as the newest TCP connection to the server's port (at SMTP_EV_CONNECT, the one just made). */
static void nodelay_on_session_socket(int port) {
    long max = sysconf(_SC_OPEN_MAX);
    if (max <= 0 || max > 65536)
        max = 65536;
    for (int fd = (int)max - 1; fd > 2; fd--) {
        struct stat stt;
        if (fstat(fd, &stt) != 0 || !S_ISSOCK(stt.st_mode))
            continue;
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0)
            continue;
        int peer_port = peer.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&peer)->sin_port)
                        : peer.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&peer)->sin6_port)
                                                      : -1;
        if (peer_port != port)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return;
    }
}

static void event_cb(smtp_session_t session, int event_no, void *arg, ...) {
    (void)session;
    session_note_t *note = arg;
    va_list ap;
    va_start(ap, arg);
    switch (event_no) {
    case SMTP_EV_CONNECT:
        nodelay_on_session_socket(note->port);
        break;
    case SMTP_EV_EXTNA_STARTTLS:
        snprintf(note->why, sizeof(note->why), "the server does not offer STARTTLS (smtp.starttls=required)");
        break;
    case SMTP_EV_INVALID_PEER_CERTIFICATE: {
        long result = va_arg(ap, long);
        int *ok = va_arg(ap, int *);
        *ok = 0; /* never send a code over a connection we cannot trust */
        snprintf(note->why, sizeof(note->why),
                 "the server's TLS certificate did not verify (OpenSSL result %ld; trusted CAs: the system's, or "
                 "$XDG_CONFIG_HOME/libesmtp/ca.pem)",
                 result);
        break;
    }
    case SMTP_EV_NO_PEER_CERTIFICATE:
    case SMTP_EV_WRONG_PEER_CERTIFICATE: {
        int *ok = va_arg(ap, int *);
        *ok = 0;
        snprintf(note->why, sizeof(note->why), "the server's TLS certificate does not name the server");
        break;
    }
    case SMTP_EV_WEAK_CIPHER: {
        (void)va_arg(ap, int);
        int *ok = va_arg(ap, int *);
        *ok = 0;
        snprintf(note->why, sizeof(note->why), "the TLS cipher is too weak");
        break;
    }
    default:
        break;
    }
    va_end(ap);
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
    char text[200];
    snprintf(text, sizeof(text), "%s", st && st->text ? st->text : "");
    /* The reply goes into a database column and a log line: one line. */
    for (char *p = text; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == ' ')
        text[--n] = '\0';
    snprintf(out, out_size, "%s: %d %s", what, st ? st->code : 0, text);
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
        snprintf(it->detail, sizeof(it->detail), "not delivered: %.200s", session_why);
    }
}

int smtp_send(const smtp_conf_t *sc, const char *from, smtp_item_t *items, size_t n, char *errstr,
              size_t errstr_size) {
    int rc = -1;
    smtp_session_t session = NULL;
    auth_context_t auth = NULL;
    smtp_message_t *msgs = NULL;
    smtp_recipient_t *rcpts = NULL;
    session_note_t note = {"", 0};
    const char *colon = strrchr(sc->hostport, ':');
    note.port = colon ? (int)strtol(colon + 1, NULL, 10) : 25;
    char why[256] = "";
    int judged = 0;

    for (size_t i = 0; i < n; i++) {
        items[i].outcome = SMTP_TRANSIENT;
        snprintf(items[i].detail, sizeof(items[i].detail), "not attempted");
    }
    if (n == 0)
        return 0;
    msgs = calloc(n, sizeof(*msgs));
    rcpts = calloc(n, sizeof(*rcpts));
    if (!msgs || !rcpts)
        abort();
    session = smtp_create_session();
    if (!session) {
        snprintf(why, sizeof(why), "cannot create an SMTP session");
        goto done;
    }
    if (!smtp_set_server(session, sc->hostport)) {
        snprintf(why, sizeof(why), "smtp.host/smtp.port \"%.150s\" refused by libesmtp", sc->hostport);
        goto done;
    }
    smtp_set_eventcb(session, event_cb, &note);
    /* Every phase gets the configured timeout; below RFC 5321's minutes only on purpose. */
    static const int phases[] = {Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA, Timeout_TRANSFER, Timeout_DATA2};
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++)
        smtp_set_timeout(session, phases[i] | Timeout_OVERRIDE_RFC2822_MINIMUM, sc->timeout_ms);
    if (sc->starttls != SMTP_STARTTLS_NO) {
        enum starttls_option how = sc->starttls == SMTP_STARTTLS_REQUIRED ? Starttls_REQUIRED : Starttls_ENABLED;
        if (!smtp_starttls_enable(session, how)) {
            snprintf(why, sizeof(why), "this libesmtp has no STARTTLS support (smtp.starttls)");
            goto done;
        }
    }
    if (sc->user && *sc->user) {
        auth = auth_create_context();
        if (!auth) {
            snprintf(why, sizeof(why), "cannot create an SMTP AUTH context");
            goto done;
        }
        /* PLAIN and LOGIN send the password as is; allowed, as the operator configured AUTH. */
        auth_set_mechanism_flags(auth, AUTH_PLUGIN_PLAIN, 0);
        auth_set_interact_cb(auth, interact_cb, (void *)sc);
        smtp_auth_set_context(session, auth);
    }
    for (size_t i = 0; i < n; i++) {
        msgs[i] = smtp_add_message(session);
        if (!msgs[i] || !smtp_set_reverse_path(msgs[i], from) ||
            !smtp_set_message_str(msgs[i], (void *)items[i].message)) {
            snprintf(why, sizeof(why), "cannot add a message to the SMTP session");
            goto done;
        }
        rcpts[i] = smtp_add_recipient(msgs[i], items[i].rcpt);
        if (!rcpts[i]) {
            snprintf(why, sizeof(why), "cannot add a recipient to the SMTP session");
            goto done;
        }
    }
    char ebuf[128] = "";
    const char *session_why = "the session ended early";
    int started = smtp_start_session(session);
    if (!started) {
        smtp_strerror(smtp_errno(), ebuf, sizeof(ebuf));
        if (note.why[0])
            session_why = note.why;
        else
            session_why = ebuf;
    } else if (note.why[0]) {
        session_why = note.why;
    }
    char where[sizeof(why)];
    snprintf(where, sizeof(where), "%.150s (SMTP %.80s)", session_why, sc->hostport);
    for (size_t i = 0; i < n; i++)
        judge(msgs[i], rcpts[i], &items[i], where);
    judged = 1;
    if (!started)
        snprintf(why, sizeof(why), "%s", where);
    else
        rc = 0;
done:
    if (why[0] && !judged) {
        for (size_t i = 0; i < n; i++)
            snprintf(items[i].detail, sizeof(items[i].detail), "%s", why);
    }
    if (why[0])
        snprintf(errstr, errstr_size, "%s", why);
    if (session)
        smtp_destroy_session(session);
    if (auth)
        auth_destroy_context(auth);
    free(msgs);
    free(rcpts);
    return rc;
}
