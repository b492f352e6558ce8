/* The value and headers of a dead letter, redacted (lib/msg/redact.h): every writer of a dead-letter topic
 * sends what dead_letter_redact makes of the original message, never the message itself. */
#ifndef RAIKOO_DEADLETTER_H
#define RAIKOO_DEADLETTER_H

#include <librdkafka/rdkafka.h>

#include "redact.h"

/* Redacts the dead letter of m: headers h (the dead letter's own, already copied from m; modified in place:
 * a header whose name names a secret gets the value REDACT_MARK, and when anything was redacted a
 * raikoo.dlq.redacted header says "fields" or "whole") and its value into *out: send out->value, out->len
 * when out->kind is not REDACT_NONE, else m's value (free with redacted_free once produced with a copy).
 * A message with a ce_ header (CloudEvents binary mode) has its value redacted as data only. */
void dead_letter_redact(const rd_kafka_message_t *m, rd_kafka_headers_t *h, redacted_t *out);

/* The value to send: out's when redacted, else m's. */
const void *dead_letter_value(const rd_kafka_message_t *m, const redacted_t *r, size_t *len);

#endif
