/* Invitation reminders: one e-mail per invitation code, reminder.before its expiry, queued by the expiry
 * worker (lib/svc/expiry.c's loop) as a reminder mail job (MAIL_REMINDER_TYPE) through the outbox, sent by
 * the mailer like an invitation e-mail. */
#ifndef RAIKOO_REMINDER_H
#define RAIKOO_REMINDER_H

#include <stddef.h>
#include <libpq-fe.h>

/* The longest reminder.before (conf_get_duration's max_s): 30 days. */
#define REMINDER_BEFORE_MAX_S (30L * 86400L)

/* Queues at most `batch` due reminders in one transaction: pending invitations whose e-mail was delivered
 * (mail_state sent), not reminded for their current code (reminder_sent_at NULL), not expired, expiring
 * within before_s seconds. FOR UPDATE SKIP LOCKED, so concurrent expiry workers take different rows and
 * each invitation gets one. Each gets reminder_sent_at and reminder_job_id, a reminder job on mail_topic
 * (key invitation id) and an InvitationReminderSent event on events_topic (key org id), in the same
 * transaction. *queued gets how many. -1 with errstr on a database error (nothing changed). */
int reminder_run_batch(PGconn *db, const char *mail_topic, const char *events_topic, long before_s,
                       long batch, int *queued, char *errstr, size_t errstr_size);

#endif
