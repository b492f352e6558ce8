/* The outbox relay's round: publish outbox rows with an idempotent producer, delete exactly those
 * Kafka acknowledged. */
#ifndef RAIKOO_RELAY_H
#define RAIKOO_RELAY_H

#include <stddef.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

/* The producer configuration the relay needs on top of the user's: idempotence, acks=all. */
int relay_conf(rd_kafka_conf_t *kconf, char *errstr, size_t errstr_size);

/* Publishes up to limit of the oldest outbox rows and deletes those delivered. *published gets how many
 * were delivered and deleted; rows whose delivery failed stay for the next round. -1 on a database
 * failure or a fatal producer error (errstr). */
int relay_round(PGconn *db, rd_kafka_t *producer, long limit, size_t *published, char *errstr,
                size_t errstr_size);

#endif
