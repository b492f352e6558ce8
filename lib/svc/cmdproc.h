/* The command processor: applies a batch of command messages in one PostgreSQL transaction, a savepoint
 * per command, with their results, events and mail jobs written to the outbox in that same transaction. */
#ifndef RAIKOO_CMDPROC_H
#define RAIKOO_CMDPROC_H

#include <stddef.h>
#include <libpq-fe.h>

#include "cmd.h"
#include "conf.h"
#include "secret.h"

typedef struct cmdproc cmdproc_t;

/* One message of a batch. The caller fills payload/len; apply fills the rest. */
typedef struct cmdproc_msg {
    const char *payload;
    size_t len;
    const cmd_header_t *headers; /* the message's Kafka headers (borrowed; NULL when none) */
    size_t nheaders;
    int dead_letter;           /* out: not a command; belongs on the dead-letter topic */
    char reason[256];          /* out: why, for the dead-letter header */
    char command_id[UUID_BUF]; /* out: the command id when there is one */
    const char *outcome;       /* out: "accepted", "rejected", "duplicate" or "dead_letter" (static) */
    const char *code;          /* out: the result code when rejected (static) */
} cmdproc_msg_t;

/* A processor over db (borrowed; it must outlive the processor) with the settings of c and the keys
 * (borrowed). NULL with errstr when a setting is wrong. */
cmdproc_t *cmdproc_new(const conf_t *c, PGconn *db, const secret_keys_t *keys, char *errstr,
                       size_t errstr_size);

/* Applies msgs[0..n) in one transaction. 0 when it committed; -1 when the database failed (rolled back,
 * errstr says why): nothing of the batch took effect, and the caller retries it. */
int cmdproc_apply(cmdproc_t *p, cmdproc_msg_t *msgs, size_t n, char *errstr, size_t errstr_size);

/* With on = 0, every command goes through the per-command path (domain_apply), runs of InviteNewUser
 * and AddExistingUser included: for tests that compare the two paths. The default is 1. */
void cmdproc_set_set_based(cmdproc_t *p, int on);

/* How many commands the set path decided in the batches committed so far (for tests). */
unsigned long cmdproc_set_based_decided(const cmdproc_t *p);

/* Replaces the connection (after the caller reconnected). */
void cmdproc_set_db(cmdproc_t *p, PGconn *db);

void cmdproc_free(cmdproc_t *p);

/* The whole command worker: consumer group group.commands on topic.commands (lib/core/consumer.c), each
 * batch applied in one transaction (cmdproc_apply; while PostgreSQL fails, the loop holds the batch and
 * offers it again, polling Kafka meanwhile), its messages that are no command stored on topic.dlq
 * (lib/svc/deadletter.c) before the offsets move past them; until worker_running() says stop. Reads
 * keys.dir (secret_init first). Returns the exit status (lib/core/exitstatus.h). */
int cmdproc_run(const conf_t *c);

#endif
