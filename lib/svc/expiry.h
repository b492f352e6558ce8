/* Invitation expiry: pending invitations past expires_at become `expired`, with an InvitationExpired
 * event through the outbox, in bounded batches that several workers can share. */
#ifndef RAIKOO_EXPIRY_H
#define RAIKOO_EXPIRY_H

#include <stddef.h>
#include <libpq-fe.h>

#include "conf.h"

/* Expires at most `batch` due invitations in one transaction (FOR UPDATE SKIP LOCKED, so concurrent
 * workers take different rows) and writes one InvitationExpired event per invitation to events_topic
 * (key org_id) in the same transaction. *expired gets how many. -1 with errstr on a database error
 * (nothing changed). */
int expiry_run_batch(PGconn *db, const char *events_topic, long batch, int *expired, char *errstr,
                     size_t errstr_size);

/* The expiry worker: every expiry.interval.ms, expires what is due (expiry.batch a transaction), then queues
 * the reminders that are due (reminder.before, reminder.batch), until worker_running() says stop. Waits while
 * PostgreSQL is away. Returns the exit status. */
int expiry_run(const conf_t *c);

#endif
