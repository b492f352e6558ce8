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
     * the loop then commits the offsets past them. -1 when they were not applied: the loop offers the same
     * batch again next round (less the messages of partitions revoked meanwhile), unless shutdown is asked
     * (then nothing of it is committed and whoever owns its partitions next reads it again). A worker that
     * retries inside apply (the command worker while PostgreSQL is away) does not poll meanwhile: past
     * max.poll.interval.ms the member leaves its group, and the batch it then commits may hold messages of
     * partitions it lost; redelivery is recognised by command id, so they are not applied twice, and their
     * offset commits are refused. */
    int (*apply)(void *arg, rd_kafka_message_t *const *msgs, size_t n);
    /* Optional, before each gather: how many messages the worker takes now (the loop takes at most
     * batch_max; 0: none this round) and, in *first_wait_ms (100 when left alone), how long to wait for
     * the first one. */
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

/* Rounds of gather, apply, commit until worker_running() says stop; then commits, synchronously, the
 * offsets of what was applied. */
void consumer_run(consumer_t *co, const consumer_hooks_t *hooks);

/* Leaves the group (kafka_consumer_close) and frees the consumer. NULL is fine. */
void consumer_free(consumer_t *co);

#endif
