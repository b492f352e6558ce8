/* Dead letters: a message of raikoo.commands that is no command, stored on the dead-letter topic with why
 * and where it came from (docs/MESSAGES.md), confirmed by its delivery report before the offsets move past
 * it. */
#ifndef RAIKOO_DEADLETTER_H
#define RAIKOO_DEADLETTER_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

/* The delivery-report callback (dr_msg_cb) of the producer that deadletter_store uses. */
void deadletter_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* Sends m[i] for every i whose reasons[i] is not NULL to topic (headers: the original's, then why:
 * reasons[i], where from, and group), and waits for their delivery reports; those that failed are sent
 * again, with a bounded backoff, until all are confirmed: only then may offsets move past them. 0 when all
 * are stored (or none was to be); -1 when shutdown is asked first (the offsets are then not committed: the
 * batch is redelivered, its commands recognised and its dead letters sent again). One log line when topic
 * cannot be written and one when it can again. */
int deadletter_store(rd_kafka_t *producer, const char *topic, const char *group, rd_kafka_message_t *const *m,
                     const char *const *reasons, size_t n);

#endif
