/* Dead letters: a message of raikoo.commands that is no command, stored on the dead-letter topic with why
 * and where it came from (docs/MESSAGES.md), confirmed by its delivery report before the offsets move past
 * it, and redacted (lib/msg/redact.h, docs/REDACTION.md): every dead letter is what dead_letter_redact
 * makes of the original message, never the message itself. */
#ifndef RAIKOO_DEADLETTER_H
#define RAIKOO_DEADLETTER_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "redact.h"

/* The delivery-report callback (dr_msg_cb) of the producer that deadletter_batch_store uses. */
void deadletter_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* The dead letters of one applied batch and their delivery, kept across the consumer loop's offers of that
 * batch (keyed by topic, partition and offset of its messages), so that an offer again only sends those
 * still missing. */
typedef struct deadletter_batch deadletter_batch_t;

/* The dead letters of m[0..n): m[i] for every i whose reasons[i] is not NULL (copied; m is not kept). */
deadletter_batch_t *deadletter_batch_new(rd_kafka_message_t *const *m, const char *const *reasons, size_t n);

/* 1 when every message of m[0..n) is one of b's batch (the same batch offered again, less the messages of
 * partitions revoked meanwhile); 0 otherwise or when b is NULL. */
int deadletter_batch_same(const deadletter_batch_t *b, rd_kafka_message_t *const *m, size_t n);

/* One offer of b's batch, m[0..n) (b's messages, borrowed): sends to topic (headers: the original's, then
 * why, where from, and group) every dead letter of the messages offered not yet stored nor in flight, and
 * waits up to a second for their delivery reports, never longer: 0 when every one of them is confirmed
 * (only then may offsets move past them); -1 when some is not (yet): the consumer loop holds the batch,
 * polls Kafka and offers it again, and the reports of those in flight arrive meanwhile (the worker serves
 * the producer's reports each round). -1 too when shutdown is asked first (the offsets are then not
 * committed: the batch is redelivered, its commands recognised and its dead letters sent again). One log
 * line when topic cannot be written and one when it can again. */
int deadletter_batch_store(deadletter_batch_t *b, rd_kafka_t *producer, const char *topic, const char *group,
                           rd_kafka_message_t *const *m, size_t n);

/* Frees b. A dead letter still in flight keeps its slot until its report comes (the report frees it): serve
 * the producer's reports (rd_kafka_poll, flush, or purge and flush) before destroying it. NULL is fine. */
void deadletter_batch_free(deadletter_batch_t *b);

/* Redacts the dead letter of m (docs/REDACTION.md): headers *h (the dead letter's own, already copied from m;
 * replaced by a new set, names and order kept, when a value is redacted; time linear in their size): a header whose name names a secret gets the value REDACT_MARK, every other
 * header's value (but our own raikoo.dlq.*) what redact_text leaves of it; its value into *out and its key
 * into *key_out (redact_text): send out->value, out->len when out->kind is not REDACT_NONE, else m's value,
 * and likewise the key (dead_letter_value, dead_letter_key). When anything was redacted, a
 * raikoo.dlq.redacted header says "whole" (the value was replaced whole) or "fields". Free *out and *key_out
 * with redacted_free once produced with a copy. A message with a ce_ header (CloudEvents binary mode) has its
 * value redacted as data only. */
void dead_letter_redact(const rd_kafka_message_t *m, rd_kafka_headers_t **h, redacted_t *out,
                        redacted_t *key_out);

/* The value to send: out's when redacted, else m's. */
const void *dead_letter_value(const rd_kafka_message_t *m, const redacted_t *r, size_t *len);

/* The key to send: k's when redacted, else m's (NULL when m has none). */
const void *dead_letter_key(const rd_kafka_message_t *m, const redacted_t *k, size_t *len);

#endif
