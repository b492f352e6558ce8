/* The domain rules: what each command does to PostgreSQL, who may do it, and the events it emits. */
#ifndef RAIKOO_DOMAIN_H
#define RAIKOO_DOMAIN_H

#include <stddef.h>
#include <libpq-fe.h>

#include "cmd.h"
#include "codepool.h"
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
    codepool_t *codes;         /* codes made ahead (NULL: each made when needed) */
    const char *topic_events, *topic_mail;
    long ttl_seconds;           /* invitation.ttl.seconds */
    long rate_per_hour;         /* ratelimit.invitations.per.hour */
    const char *default_locale; /* mail.locale (borrowed from the configuration; NULL: none) */
    outbox_t *outbox;           /* events and mail jobs go here */
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

/* The set path: a run of consecutive InviteNewUser and AddExistingUser commands of a batch (see
 * domain_run_eligible) applied with one statement for the rows of the whole run instead of two round trips
 * per command, with exactly
 * the per-command rules, results, events and order. What the run's snapshot cannot decide exactly (an
 * address an earlier command of the run invited, an account never activated, a statement the database
 * refuses) is left to the per-command path: the run decides its commands from the first up to, not
 * including, the first such one. */
typedef struct domain_run_item domain_run_item_t;
typedef struct domain_run {
    size_t n;              /* commands of the run */
    size_t decided;        /* out: commands [0, decided) are decided, their rows written */
    int refused;           /* out: a statement failed (rolled back to the run's savepoint); the caller
                            * applies the rest of this run per command */
    domain_run_item_t *it; /* per command: its decision and what its events need */
} domain_run_t;

/* 1 when cmd (parsed valid) may be part of a run. */
int domain_run_eligible(const cmd_t *cmd);

/* Decides cmds[0..n) as far as it can, inside the caller's transaction (a savepoint of its own around
 * the run), writing the rows of the accepted ones. Fills run (free with domain_run_free). 0 then (see
 * run->decided, which may be 0), -1 when the database failed in a way that is not the commands' fault
 * (as domain_apply): the caller retries the batch. No events are emitted here: domain_run_result does that
 * for each decided command, in order. */
int domain_run_apply(domain_ctx_t *x, cmd_t *const *cmds, size_t n, domain_run_t *run, char *errstr,
                     size_t errstr_size);

/* For decided command j (< run->decided): emits its events and mail job to the outbox, as domain_apply
 * would have, and fills res. */
void domain_run_result(domain_ctx_t *x, domain_run_t *run, cmd_t *const *cmds, size_t j,
                       domain_result_t *res);

void domain_run_free(domain_run_t *run);

/* Forgets what the batch learned (the authorization cache and the names it read): at the start of every
 * transaction. */
void domain_forget(domain_ctx_t *x);

/* Frees what the context holds (not the context itself). */
void domain_ctx_free(domain_ctx_t *x);

/* Fills res as rejected with code and the code's standard message (what to do about it). */
void domain_reject(domain_result_t *res, const char *code, const char *detail);

#endif
