/* Kafka helpers over librdkafka: configuration passthrough, clients with clear errors, topic creation. */
#ifndef RAIKOO_KAFKA_H
#define RAIKOO_KAFKA_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "conf.h"
#include "watermark.h"

/* A new librdkafka configuration carrying every kafka.<property> setting and our log callback.
 * NULL with errstr ("kafka.<property>: what") when librdkafka refuses one. */
rd_kafka_conf_t *kafka_conf_new(const conf_t *c, char *errstr, size_t errstr_size);

/* Consumer settings every consumer of ours starts from, unless the configuration sets them (kafka.<property>
 * wins), so that a backlog neither fills the memory nor starves the consumer (docs/BENCHMARKS.md):
 * - queued.max.messages.kbytes 4096: the prefetch is bounded (librdkafka's default holds up to 64 MiB of a
 *   backlog). Not less: once the local queue is over this bound librdkafka stops fetching, and before 2.2
 *   looks again only when its broker thread next wakes, up to a second later; a queue that drains in under
 *   a second then leaves the consumer idle until then (at 1 MiB the command worker ran at two thirds of
 *   its speed through a backlog, and the first command after one waited up to 0.4 s).
 * - fetch.max.bytes 1 MiB: one fetch response (kept in memory until its last message is freed) is at most
 *   that, not up to 1 MiB a partition.
 * - fetch.queue.backoff.ms 10 (librdkafka 2.2 and later, which waits that long, 1 s by default, before it
 *   looks at a full queue again).
 * The command worker's peak RSS through a 20,000-command backlog: 31 MiB. */
int kafka_consumer_defaults(const conf_t *c, rd_kafka_conf_t *kconf, char *errstr, size_t errstr_size);

/* Those defaults, for the configuration reference (conf_print_markdown's kafka_more): a FILE *. */
void kafka_defaults_markdown(void *file);

/* Makes kconf an idempotent producer's: enable.idempotence and acks=all (no duplicates or reordering from
 * the client's own retries; every replica has the message before it is acknowledged). */
int kafka_conf_idempotent(rd_kafka_conf_t *kconf, char *errstr, size_t errstr_size);

/* Sets one librdkafka property on kconf; fails into errstr. */
int kafka_conf_set(rd_kafka_conf_t *kconf, const char *prop, const char *value, char *errstr,
                   size_t errstr_size);

/* Creates a client of the given type from kconf (which it takes over, even on failure) and checks that
 * the cluster answers a metadata request within timeout_ms. NULL with a clear errstr otherwise. */
rd_kafka_t *kafka_client_new(const conf_t *c, rd_kafka_type_t type, rd_kafka_conf_t *kconf, int timeout_ms,
                             char *errstr, size_t errstr_size);

/* kafka_client_new for a long-running worker: while the cluster cannot be reached, waits for it (one log
 * line when it starts waiting, one when it answers; bounded backoff) instead of failing. Its clients also
 * report a cluster that goes away mid-run once and once when it is back (consumers; a producer's
 * connection errors are debug lines), not per attempt; librdkafka reconnects by itself. NULL with errstr only when the client cannot be created or
 * shutdown was asked while waiting (worker_running() then says 0). */
rd_kafka_t *kafka_client_wait(const conf_t *c, rd_kafka_type_t type, rd_kafka_conf_t *kconf, char *errstr,
                              size_t errstr_size);

/* The idempotent producer of a long-running worker, the one way they are made: kafka_conf_new, the
 * delivery-report callback dr_msg_cb (may be NULL), kafka_conf_idempotent, then each property/value pair of
 * settings (NULL-terminated; may be NULL), then kafka_client_wait. NULL with errstr when the configuration is
 * refused, the client cannot be created or shutdown was asked while waiting (worker_running() then says 0). */
rd_kafka_t *kafka_producer_wait(const conf_t *c,
                                void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque),
                                const char *const *settings, char *errstr, size_t errstr_size);

/* A consumer in group `group` subscribed to `topic`, the way every worker of ours consumes: manual offset
 * commits, from the earliest offset when the group has none, cooperative-sticky assignment with
 * rebalance_cb (which must use rd_kafka_incremental_(un)assign), bounded prefetch, rd_kafka_consumer_poll
 * serving the main queue, a 6 s session (a member killed without leaving hands its partitions over within
 * seconds; kafka.session.timeout.ms overrides), static membership when worker.instance is set. Waits for
 * the cluster as kafka_client_wait does. NULL with errstr when a setting is refused, shutdown was asked
 * while waiting, or the subscription fails. One per process: after each rebalance it reports the partitions
 * held (readiness, metrics; health.h), and with metrics on its statistics give each partition's lag. opaque
 * is what rebalance_cb gets (the client's own rd_kafka_opaque is kafka.c's state of this member: close it with
 * kafka_consumer_close, which frees that state). */
rd_kafka_t *kafka_group_consumer_new(const conf_t *c, const char *group, const char *topic,
                                     void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                                          rd_kafka_topic_partition_list_t *, void *),
                                     void *opaque, char *errstr, size_t errstr_size);

/* Leaves the group (commits in flight are waited for) and destroys the consumer of kafka_group_consumer_new.
 * With librdkafka before 2.3, a cooperative-sticky member destroyed after it joined its group but before its
 * first assignment aborts the process (librdkafka issue 4312: the assignor's state is still NULL); such a
 * member first waits, at most 10 s, for that assignment. */
void kafka_consumer_close(rd_kafka_t *rk);

/* Waits up to timeout_ms until every partition of topic has a leader (a topic just created is not usable
 * at once). -1 with errstr when it does not happen in time. */
int kafka_topic_wait_ready(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                           size_t errstr_size);

/* Asks the cluster to create topics[0..n) (the caller keeps and destroys them) and waits for its answer, 30 s
 * at most. A topic that exists already is fine; *created gets how many more were made (the caller sets it
 * to 0 first). -1 with errstr when the cluster does not answer or refuses a topic. */
int kafka_create_topics(rd_kafka_t *rk, rd_kafka_NewTopic_t **topics, size_t n, int *created, char *errstr,
                        size_t errstr_size);

/* Creates the five topics with their configured partition counts. Topics that exist already are fine.
 * *created gets how many were new. Returns once every partition of them has a leader. */
int kafka_topics_create(const conf_t *c, int *created, char *errstr, size_t errstr_size);

#endif
