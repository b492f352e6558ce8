/* The mailer: mail jobs from Kafka recorded in mail_deliveries, sent over SMTP, retried from the table
 * with exponential backoff, outcomes and events written in one transaction. */
#ifndef RAIKOO_MAILER_H
#define RAIKOO_MAILER_H

#include <stddef.h>
#include <libpq-fe.h>

#include "conf.h"

typedef struct mailer mailer_t;

/* Reads the mail.*, smtp.* and keys.dir settings, loads mailer.sk and the templates. NULL with errstr
 * when any of them is wrong (a configuration mistake: the caller exits with a usage status). */
mailer_t *mailer_new(const conf_t *c, char *errstr, size_t errstr_size);
void mailer_free(mailer_t *m);

/* One message read from topic.mail (borrowed). */
typedef struct mailer_input {
    const char *payload;
    size_t len;
} mailer_input_t;

/* Records a batch of jobs in one transaction: a new job becomes `sending` (claimed by this mailer, and
 * kept in the mailer for its senders), a
 * job seen before is left alone (never sent twice), a job whose invitation is no longer pending or has a
 * newer job becomes `superseded`, and a malformed job that names its invitation `failed`. Returns 0 once
 * that is committed (the caller may then commit the Kafka offsets) and -1 with errstr when the database
 * failed, nothing recorded (call again with the same batch). */
int mailer_accept(mailer_t *m, PGconn *db, const mailer_input_t *in, size_t n, char *errstr,
                  size_t errstr_size);

/* Claims jobs whose retry is due, and sends abandoned by a mailer that died mid-send once their lease
 * ran out (a live mailer renews its leases from a heartbeat thread; none is taken over in the first 30 s
 * after PostgreSQL started), FOR UPDATE SKIP LOCKED so that several mailers share them. *claimed gets how
 * many (kept in the mailer for its senders). */
int mailer_claim_due(mailer_t *m, PGconn *db, int *claimed, char *errstr, size_t errstr_size);

/* How long to wait before the next mailer_claim_due, in milliseconds. */
long mailer_scan_interval_ms(const mailer_t *m);

/* The whole worker: consumer group group.mail on topic.mail (cooperative-sticky, offsets committed
 * by hand once jobs are recorded), retries from the table, until worker_running() says stop. The main
 * thread does all the PostgreSQL and Kafka work (accepting, claiming, recording outcomes with their
 * events); mail.connections sender threads render and send the claimed jobs, each in SMTP sessions of its
 * own (at most mail.batch.max messages each), so that sessions overlap one another and the recording.
 * Every outcome is recorded as before: sent, retrying (backoff, or held while the SMTP server cannot be
 * reached: one circuit breaker for the server, shared by the senders), or failed; recording is tried again
 * until PostgreSQL takes it (on shutdown for 30 s more, then the jobs stay `sending` and are taken over
 * when their lease ends). On SIGTERM the senders finish the jobs in hand first. Returns the exit status:
 * 0 after a clean shutdown, 2 for a configuration mistake, 3 when a service is unreachable at start. */
int mailer_run(const conf_t *c);

#endif
