/* The consumer loop of every worker that reads a Kafka topic in a consumer group (the command worker, the
 * mailer, the audit worker): gathers a batch, hands it to the worker, and commits its offsets once the worker
 * says its effect is committed in the database. docs/DESIGN.md ("Consumer loop") says what it guarantees. */
#ifndef RAIKOO_CONSUMER_H
#define RAIKOO_CONSUMER_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "conf.h"

typedef struct consumer consumer_t;

/* What the worker does with the loop. Every hook runs on the thread of consumer_run. */
typedef struct consumer_hooks {
    void *arg; /* passed to every hook */
    /* Applies msgs[0..n) (borrowed; in the order read). 0 once their effect is committed in the database:
     * the loop then commits the offsets past them. -1 when they were not applied (PostgreSQL away, a
     * transient error; return promptly, without waiting for the database: the loop does the waiting). The
     * loop then holds the batch: it pauses the assigned partitions (and those assigned meanwhile), keeps
     * polling Kafka (so the member keeps its place in the group past max.poll.interval.ms, and rebalances
     * and commit outcomes are served), and offers the same batch again after a backoff growing from 250 ms
     * to 5 s, less the messages of partitions revoked meanwhile (their next owner reads them); once it is
     * applied, the partitions resume where the batch ended, so the order within a partition is kept. On
     * shutdown a batch not applied is left uncommitted, and whoever owns its partitions next reads it
     * again (every worker recognises a redelivery: command id, job id, event id). The loop logs one line
     * when a hold starts and one when it ends; the worker logs the cause once per outage. */
    int (*apply)(void *arg, rd_kafka_message_t *const *msgs, size_t n);
    /* Optional, before each gather: how many messages the worker takes now (the loop takes at most
     * batch_max; 0: none this round) and, in *first_wait_ms (100 when left alone), how long to wait for
     * the first one. While it says 0, the loop still polls once a second with the partitions paused (a
     * message that comes all the same is the next batch). Not asked while a batch is held. */
    size_t (*room)(void *arg, int *first_wait_ms);
    /* Optional, at the end of each round (with or without a batch). */
    void (*round)(void *arg);
} consumer_hooks_t;

/* How a batch fills once its first message is there. */
typedef enum consumer_fill {
    /* Only after a full batch (a backlog) does the next one wait up to batch_wait_ms after its first message
     * to fill; otherwise it takes only what is there at once, so an idle worker applies a lone message
     * without delay (the command worker). */
    CONSUMER_FILL_AFTER_FULL,
    /* Every batch waits up to batch_wait_ms after its first message to fill (the mailer: jobs that come
     * together go out in one SMTP session; the audit worker). */
    CONSUMER_FILL_ALWAYS,
} consumer_fill_t;

/* A member of group subscribed to topic (kafka_group_consumer_new: cooperative-sticky, manual commits);
 * waits while Kafka is away. Batches hold up to batch_max messages and fill as fill says. NULL with errstr
 * when a setting is refused, the subscription fails or shutdown was asked while waiting. */
consumer_t *consumer_new(const conf_t *c, const char *group, const char *topic, long batch_max,
                         long batch_wait_ms, consumer_fill_t fill, char *errstr, size_t errstr_size);

/* Rounds of gather, apply, commit until worker_running() says stop; then commits the offsets of what was
 * applied, waiting at most 5 s for the outcome (as at revoke): offsets not confirmed then are read again by
 * the next owner, who recognises what it reads. */
void consumer_run(consumer_t *co, const consumer_hooks_t *hooks);

/* Leaves the group (kafka_consumer_close) and frees the consumer. NULL is fine. */
void consumer_free(consumer_t *co);

#endif
