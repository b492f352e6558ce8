/* The consumer settings that both the workers' consumers (kafka.c, kafka_consumer_defaults) and the producer
 * library's result consumer (producers/producer.c) start from, where their configuration sets nothing:
 * written once here, since the producer library does not link kafka.c. kafka.h says why each. */
#ifndef RAIKOO_KAFKA_DEFAULTS_H
#define RAIKOO_KAFKA_DEFAULTS_H

/* queued.max.messages.kbytes: the prefetch held in memory (librdkafka's own: 65536). */
#define KAFKA_DEFAULT_QUEUED_KBYTES "4096"
/* fetch.queue.backoff.ms, librdkafka 2.2 and later: how soon it looks at a full queue again (its own: 1000). */
#define KAFKA_DEFAULT_QUEUE_BACKOFF_MS "10"

#endif
