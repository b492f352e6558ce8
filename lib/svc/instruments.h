/* The services' instruments: the metric families of the command processor, the outbox relay, the mailer
 * and the expiry worker (lib/core/metrics.h), each updated by one call where the work is done. Label values
 * are only command types the parser knows ("unknown" otherwise), result codes, outcomes, states and topic
 * names from the configuration: never an address or an id. */
#ifndef RAIKOO_INSTRUMENTS_H
#define RAIKOO_INSTRUMENTS_H

#include <stddef.h>
#include <libpq-fe.h>

#include "cmd.h"
#include "cmdproc.h"
#include "conf.h"

/* Make a service's families exported from its start, at zero (a rate() over a counter that never moved is then
 * 0, not absent): the command processor's (cmdproc_new), the relay's (its topics from c), the mailer's, the
 * expiry worker's. */
void instruments_init_commands(void);
void instruments_init_relay(const conf_t *c);
void instruments_init_mail(void);
void instruments_init_expiry(void);

/* A batch of n commands committed (msgs/cmds as cmdproc_apply had them; started: metrics_now() when it began):
 * raikoo_commands_total{type, outcome, code}, raikoo_command_batch_size and
 * raikoo_command_batch_duration_seconds. */
void instruments_batch(const cmdproc_msg_t *msgs, const cmd_t *cmds, size_t n, double started);

/* A relay round published n rows to topic: raikoo_outbox_published_total{topic}. */
void instruments_published(const char *topic, size_t n);

/* The outbox's backlog (rows, age of the oldest), asked of db at most once a second (the relay calls it
 * while rows wait beyond those it holds in flight): raikoo_outbox_backlog_rows,
 * raikoo_outbox_oldest_age_seconds. Only with metrics on. */
void instruments_outbox_backlog(PGconn *db);

/* The same gauges without a query, when the relay knows the backlog: every row there is is one of the
 * rows it has in flight (its last read found fewer than it asked for), the oldest created oldest_age
 * seconds ago (0 when none). */
void instruments_outbox_known(size_t rows, double oldest_age);

/* A mail job's outcome recorded: raikoo_mail_deliveries_total{state} (sent, retrying, failed; held: a job
 * waiting for an unreachable SMTP server, no attempt counted). */
void instruments_mail_outcome(const char *status, int held);

/* n invitations expired: raikoo_invitations_expired_total. */
void instruments_expired(int n);

#endif
