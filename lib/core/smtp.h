/* SMTP submission over libesmtp: many messages in one session, STARTTLS, AUTH, timeouts, and a verdict
 * per message (sent, try again later, or give up). */
#ifndef RAIKOO_SMTP_H
#define RAIKOO_SMTP_H

#include <stddef.h>

#include "conf.h"

typedef enum { SMTP_STARTTLS_NO, SMTP_STARTTLS_IF_AVAILABLE, SMTP_STARTTLS_REQUIRED } smtp_starttls_t;

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

typedef struct smtp_conf {
    char hostport[512]; /* "host:port" */
    smtp_starttls_t starttls;
    const char *user, *password; /* borrowed from the configuration; user NULL or empty: no AUTH */
    long timeout_ms;
    struct ssl_ctx_st *tls; /* owned; made when starttls is not "no": trusted CAs, the server's name */
    char trust[200];        /* where the trusted CAs came from, for error messages */
} smtp_conf_t;

/* Reads smtp.host, smtp.port, smtp.starttls, smtp.user, smtp.password and smtp.timeout.ms. The strings
 * stay borrowed from c. With STARTTLS it also makes the TLS context: the CAs of
 * $XDG_CONFIG_HOME/libesmtp/ca.pem (~/.config when unset) when that file exists, else the system's, and
 * the check that the certificate names smtp.host (a DNS name or an IP address). A CA file that cannot be
 * read fails here, at start. Free with smtp_conf_clear. */
int smtp_conf_load(const conf_t *c, smtp_conf_t *sc, char *errstr, size_t errstr_size);
void smtp_conf_clear(smtp_conf_t *sc);

/* Initialises libesmtp's SASL client; once per process. */
void smtp_init(void);

typedef enum {
    SMTP_SENT,      /* the server accepted the message for the recipient */
    SMTP_TRANSIENT, /* connection trouble, a timeout or a 4xx reply: try again later */
    SMTP_PERMANENT  /* a 5xx reply: trying again would not help */
} smtp_outcome_t;

/* One message of a session: inputs, then the verdict. */
typedef struct smtp_item {
    const char *rcpt;    /* envelope recipient */
    const char *message; /* the whole message, headers included, CRLF line ends */
    smtp_outcome_t outcome;
    char detail[320]; /* the server's reply or what went wrong, for mail_error and logs */
} smtp_item_t;

/* Sends every item in one SMTP session from the envelope sender `from` and sets each item's outcome
 * and detail. Returns -1 with errstr when the session failed as a whole (set-up, server unreachable,
 * greeting, TLS or AUTH refused) and sent nothing: every item then has its verdict all the same,
 * transient. Every detail is one line of valid UTF-8 (a server's reply cleaned and cut to 200 bytes). */
/* The longest part of a server's reply kept (bytes): it goes into a database column and a log line. */
#define SMTP_REPLY_MAX 200

/* A server's reply text[0..len) as one line of valid UTF-8 of at most SMTP_REPLY_MAX bytes, whatever it
 * sent: invalid bytes become U+FFFD, control characters spaces, no trailing spaces (a reply is text from
 * outside, like a message). Returns a new string; the caller frees it. */
char *smtp_reply_clean(const char *text, size_t len);

int smtp_send(const smtp_conf_t *sc, const char *from, smtp_item_t *items, size_t n, char *errstr,
              size_t errstr_size);

/* Told, during the session, of each message the server has just accepted (index into items), before the
 * session ends: so that the caller can note it durably at once (a mailer killed mid-session then leaves
 * no doubt about what went out). */
typedef void (*smtp_accepted_cb)(void *arg, size_t index);

/* smtp_send with on_accepted (may be NULL) called for each message as the server accepts it. */
int smtp_send_cb(const smtp_conf_t *sc, const char *from, smtp_item_t *items, size_t n,
                 smtp_accepted_cb on_accepted, void *arg, char *errstr, size_t errstr_size);

#endif
