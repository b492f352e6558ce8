/* The outbox relay: publishes outbox rows with an idempotent producer, deletes exactly those Kafka
 * acknowledged. */
#ifndef RAIKOO_RELAY_H
#define RAIKOO_RELAY_H

#include <stddef.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "conf.h"

/* The relay's producer (kafka_producer_wait: idempotence, acks=all, its delivery reports, linger.ms 0),
 * waiting while Kafka is down. NULL with errstr when it cannot be made or shutdown was asked. */
rd_kafka_t *relay_producer_wait(const conf_t *c, char *errstr, size_t errstr_size);

/* The outbox relay: publishes the outbox while this relay holds the advisory lock (one is active; others
 * stand by until its session ends), a round on every NOTIFY raikoo_outbox (reading the ids it names) and a
 * full read every relay.poll.ms, until worker_running() says stop. Waits while PostgreSQL or Kafka is away. Returns the exit status. */
int relay_run(const conf_t *c);

#endif
