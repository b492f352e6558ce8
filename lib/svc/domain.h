/* The domain rules: what each command does to PostgreSQL, who may do it, and the events it emits. */
#ifndef RAIKOO_DOMAIN_H
#define RAIKOO_DOMAIN_H

#include <stddef.h>
#include <libpq-fe.h>

#include "cmd.h"
#include "outbox.h"
#include "secret.h"

#define MAX_CODE_ATTEMPTS 5

/* What authorize() learned about an actor in an organization, kept for the rest of a batch while no
 * command that changes memberships runs (bulk invitations by one actor then cost one lookup). */
typedef struct domain_auth {
    char actor[UUID_BUF], org[UUID_BUF];
    int found_org, role;
    const char *org_name, *name; /* owned by the context's texts (names may be 200 characters of 4 bytes) */
    char email[EMAIL_MAX + 1];
} domain_auth_t;

#define DOMAIN_AUTH_CACHE 128

typedef struct domain_ctx {
    PGconn *db;                /* inside the caller's transaction and savepoint */
    const secret_keys_t *keys; /* public key and pepper */
    const char *topic_events, *topic_mail;
    long ttl_seconds;   /* invitation.ttl.seconds */
    long rate_per_hour; /* ratelimit.invitations.per.hour */
    outbox_t *outbox;   /* events and mail jobs go here */
    domain_auth_t auth[DOMAIN_AUTH_CACHE];
    int nauth;    /* entries of auth in use; domain_forget() empties it */
    char **texts; /* copies of names read from the database, of any length: freed by
                                 * domain_forget() and domain_ctx_free() */
    size_t ntexts, cap_texts;
} domain_ctx_t;

typedef struct domain_result {
    int accepted;
    const char *code; /* stable result code, NULL when accepted */
    char message[512];
    char org_id[UUID_BUF], user_id[UUID_BUF], invitation_id[UUID_BUF];
    int keep_changes;   /* rejected, but what it wrote (a failed attempt) must be committed */
    int needs_rollback; /* a statement failed, or it wrote and was rejected: only a savepoint (or
                                 * rolling back the whole transaction) undoes that */
    char sqlstate[6];   /* when rejected because the database refused a statement (a CHECK, a value
                                 * out of range ...): its SQLSTATE, else "" */
} domain_result_t;

/* Applies one valid command. Returns 0 when it is decided (accepted or rejected: see res), -1 when the
 * database failed in a way that is not the command's fault (db_error_transient: connection lost,
 * serialization failure, deadlock, shutdown ...; errstr says how): the caller retries the batch. A statement
 * the database refuses for what the command holds (any other SQLSTATE) rejects that command alone as
 * invalid_command (res->sqlstate says which), and the caller must roll back to its savepoint. */
int domain_apply(domain_ctx_t *x, const cmd_t *cmd, domain_result_t *res, char *errstr, size_t errstr_size);

/* Forgets what the batch learned (the authorization cache and the names it read): at the start of every
 * transaction. */
void domain_forget(domain_ctx_t *x);

/* Frees what the context holds (not the context itself). */
void domain_ctx_free(domain_ctx_t *x);

/* Fills res as rejected with code and the code's standard message (what to do about it). */
void domain_reject(domain_result_t *res, const char *code, const char *detail);

#endif
