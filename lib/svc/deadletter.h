/* Dead letters: a message of raikoo.commands that is no command, stored on the dead-letter topic with why
 * and where it came from (docs/MESSAGES.md), confirmed by its delivery report before the offsets move past
 * it, and redacted (lib/msg/redact.h, docs/REDACTION.md): every dead letter is what dead_letter_redact
 * makes of the original message, never the message itself. */
#ifndef RAIKOO_DEADLETTER_H
#define RAIKOO_DEADLETTER_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "redact.h"

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

/* Redacts the dead letter of m (docs/REDACTION.md): headers h (the dead letter's own, already copied from m;
 * modified in place, names kept): a header whose name names a secret gets the value REDACT_MARK, every other
 * header's value (but our own raikoo.dlq.*) what redact_text leaves of it; its value into *out and its key
 * into *key_out (redact_text): send out->value, out->len when out->kind is not REDACT_NONE, else m's value,
 * and likewise the key (dead_letter_value, dead_letter_key). When anything was redacted, a
 * raikoo.dlq.redacted header says "whole" (the value was replaced whole) or "fields". Free *out and *key_out
 * with redacted_free once produced with a copy. A message with a ce_ header (CloudEvents binary mode) has its
 * value redacted as data only. */
void dead_letter_redact(const rd_kafka_message_t *m, rd_kafka_headers_t *h, redacted_t *out,
                        redacted_t *key_out);

/* The value to send: out's when redacted, else m's. */
const void *dead_letter_value(const rd_kafka_message_t *m, const redacted_t *r, size_t *len);

/* The key to send: k's when redacted, else m's (NULL when m has none). */
const void *dead_letter_key(const rd_kafka_message_t *m, const redacted_t *k, size_t *len);

#endif
