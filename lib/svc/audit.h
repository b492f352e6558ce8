/* The audit trail: the events of topic.events recorded once each (by CloudEvents id) in the append-only
 * audit_log table, chained per organization by SHA-256 (schemas/sql/009_audit_log.sql, docs/AUDIT.md);
 * the worker that writes it and the check that reads it back. */
#ifndef RAIKOO_AUDIT_H
#define RAIKOO_AUDIT_H

#include <stddef.h>
#include <libpq-fe.h>

#include "conf.h"
#include "secret.h" /* UUID_BUF */

#define AUDIT_HASH_SIZE 32
/* The chain of events that name no organization (UserCreated by CreateUser, some CommandRejected). */
#define AUDIT_NO_ORG "00000000-0000-0000-0000-000000000000"

/* One event as the audit log records it. Every string is owned by the entry (audit_entry_clear). */
typedef struct audit_entry {
    char event_id[UUID_BUF]; /* lower case */
    char org_id[UUID_BUF];   /* the chain: data.org_id in lower case, or AUDIT_NO_ORG */
    char *type;              /* "InvitationCreated" (the CloudEvents type without raikoo.event. and .v1) */
    char *time;              /* the event's time attribute in canonical form (rfc3339_canonical), or NULL */
    char *actor_id;          /* actorid, or NULL (the workers' own decisions) */
    char *correlation_id;
    char *subject; /* whom: data.email, else user_id, invitation_id, name or org_id; NULL when none */
    char *result;  /* "ok", or the result code of CommandRejected, "failed" for InvitationEmailFailed ... */
    char *event;   /* the canonical bytes: compact JSON, keys sorted, ASCII only; what the hash covers */
} audit_entry_t;

/* Reads an event message into e. -1 (e zeroed) with why (positions and field names only, never the
 * message's text) when it is no CloudEvent: not a JSON object, no uuid id, no type string. */
int audit_entry_parse(const void *payload, size_t len, audit_entry_t *e, char *why, size_t why_size);

/* Frees what an entry holds and zeroes it; harmless on a zeroed entry. */
void audit_entry_clear(audit_entry_t *e);

/* out = SHA-256(prev || event[0..len)). */
void audit_hash(const unsigned char prev[AUDIT_HASH_SIZE], const char *event, size_t len,
                unsigned char out[AUDIT_HASH_SIZE]);

/* Appends the entries not yet recorded (by event id; a duplicate within entries counts once) in one
 * transaction, each at the end of its organization's chain, under a lock of that chain's head row so that
 * concurrent writers never fork a chain. *added gets how many rows were new. -1 with errstr (rolled back,
 * nothing written) on a database error: the caller retries the same entries. */
int audit_append(PGconn *db, const audit_entry_t *entries, size_t n, size_t *added, char *errstr,
                 size_t errstr_size);

/* What audit_verify found wrong, one call per finding: org, the row's place in the chain (0 when the
 * finding is about the chain as a whole), its event id ("" when none) and what is wrong. */
typedef void audit_report_fn(void *arg, const char *org, long long seq, const char *event_id,
                             const char *what);

/* Checks the chain of org (NULL: every chain) from its first row to its head: a row whose hash does not
 * match its event and the row before it (changed), a row that breaks the chain but fits when left out
 * (inserted), a gap in the numbering or a head beyond the last row (deleted). *chains and *rows count
 * what was read, *problems the findings. -1 with errstr on a database error. */
int audit_verify(PGconn *db, const char *org, audit_report_fn *report, void *arg, size_t *chains,
                 size_t *rows, size_t *problems, char *errstr, size_t errstr_size);

/* raikoo-audit-worker: consumes topic.events in group group.audit into audit_log until SIGTERM/SIGINT,
 * waiting for PostgreSQL and Kafka when they are away. Returns the exit status. */
int audit_run(conf_t *c);

#endif
