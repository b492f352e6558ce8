/* Unit tests of the Kafka helpers against librdkafka's mock cluster (the real broker is in the Python
 * tests): what a group consumer keeps is its own. */
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "conf.h"
#include "kafka.h"
#include "log.h"
#include "unit.h"
#include "worker.h"

/* What one consumer's rebalance callback saw. */
typedef struct member_seen {
    int assigned; /* partitions assigned */
    int foreign;  /* calls that came with another member's opaque */
} member_seen_t;

static member_seen_t seen_a, seen_b;

/* Assigns or unassigns as kafka_group_consumer_new asks (cooperative), counting into the opaque. */
static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                      member_seen_t *s) {
    rd_kafka_error_t *e;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        s->assigned += parts->cnt;
        e = rd_kafka_incremental_assign(rk, parts);
    } else {
        e = rd_kafka_incremental_unassign(rk, parts);
    }
    if (e)
        rd_kafka_error_destroy(e);
}

static void rebalance_a(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                        void *opaque) {
    seen_a.foreign += opaque != &seen_a;
    rebalance(rk, err, parts, &seen_a);
}

static void rebalance_b(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                        void *opaque) {
    seen_b.foreign += opaque != &seen_b;
    rebalance(rk, err, parts, &seen_b);
}

/* Two group consumers in one process (each in a group of its own, so each gets every partition): each
 * rebalance reaches the callback and opaque its own consumer was made with, and each closes by itself. */
static void two_group_consumers_keep_their_own_state(void) {
    char err[512];
    log_init("unit", "error");
    rd_kafka_conf_t *mconf = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(mconf, "test.mock.num.brokers", "1", err, sizeof(err)) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(mconf, "log_level", "3", err, sizeof(err)) == RD_KAFKA_CONF_OK);
    rd_kafka_t *cluster = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, err, sizeof(err));
    CHECK(cluster != NULL);
    if (!cluster)
        return;
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(cluster);
    rd_kafka_mock_topic_create(mc, "unit.topic", 3, 1);
    conf_t *c = conf_new();
    CHECK(conf_set(c, "kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), err, sizeof(err)) ==
          0);
    seen_a = seen_b = (member_seen_t){0, 0};
    rd_kafka_t *a =
        kafka_group_consumer_new(c, "unit-a", "unit.topic", rebalance_a, &seen_a, err, sizeof(err));
    rd_kafka_t *b =
        kafka_group_consumer_new(c, "unit-b", "unit.topic", rebalance_b, &seen_b, err, sizeof(err));
    CHECK(a != NULL && b != NULL);
    /* Polled until both hold every partition (bounded: the mock group settles within seconds). */
    int64_t end = worker_now_ms() + 60000;
    while (a && b && (seen_a.assigned < 3 || seen_b.assigned < 3) && worker_now_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(a, 50);
        if (m)
            rd_kafka_message_destroy(m);
        m = rd_kafka_consumer_poll(b, 50);
        if (m)
            rd_kafka_message_destroy(m);
    }
    CHECK(seen_a.assigned == 3 && seen_b.assigned == 3);
    CHECK(seen_a.foreign == 0 && seen_b.foreign == 0);
    kafka_consumer_close(a);
    kafka_consumer_close(b);
    conf_free(c);
    rd_kafka_destroy(cluster); /* and its mock cluster */
}

/* The value of prop in kconf, into buf ("" when unset or unknown). */
static const char *conf_value(rd_kafka_conf_t *kconf, const char *prop, char *buf, size_t size) {
    size_t n = size;
    if (rd_kafka_conf_get(kconf, prop, buf, &n) != RD_KAFKA_CONF_OK)
        buf[0] = '\0';
    return buf;
}

/* Our consumers' defaults: a prefetch that neither fills the memory nor starves the consumer (kafka.h);
 * what the configuration sets wins. */
static void consumer_defaults_bound_the_prefetch_and_yield_to_the_configuration(void) {
    char err[512], v[64];
    conf_t *c = conf_new();
    rd_kafka_conf_t *kconf = kafka_conf_new(c, err, sizeof(err));
    CHECK(kconf != NULL);
    CHECK(kafka_consumer_defaults(c, kconf, err, sizeof(err)) == 0);
    CHECK_STR(conf_value(kconf, "queued.max.messages.kbytes", v, sizeof(v)), "4096");
    CHECK_STR(conf_value(kconf, "fetch.max.bytes", v, sizeof(v)), "1048576");
    /* Set where this librdkafka knows it (2.2 and later), left out (not an error) where it does not. */
    conf_value(kconf, "fetch.queue.backoff.ms", v, sizeof(v));
    CHECK(rd_kafka_version() < 0x020200ff ? v[0] == '\0' : strcmp(v, "10") == 0);
    rd_kafka_conf_destroy(kconf);

    CHECK(conf_set(c, "kafka.queued.max.messages.kbytes", "2048", err, sizeof(err)) == 0);
    CHECK(conf_set(c, "kafka.fetch.max.bytes", "2097152", err, sizeof(err)) == 0);
    kconf = kafka_conf_new(c, err, sizeof(err));
    CHECK(kconf != NULL);
    CHECK(kafka_consumer_defaults(c, kconf, err, sizeof(err)) == 0);
    CHECK_STR(conf_value(kconf, "queued.max.messages.kbytes", v, sizeof(v)), "2048");
    CHECK_STR(conf_value(kconf, "fetch.max.bytes", v, sizeof(v)), "2097152");
    rd_kafka_conf_destroy(kconf);
    conf_free(c);
}

const unit_test_t kafka_tests[] = {
    {"kafka: two group consumers keep their own state", two_group_consumers_keep_their_own_state},
    {"kafka: consumer defaults bound the prefetch and yield to the configuration",
     consumer_defaults_bound_the_prefetch_and_yield_to_the_configuration},
    {NULL, NULL},
};
