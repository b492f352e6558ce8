/* Kafka helpers over librdkafka: configuration passthrough, clients with clear errors, topic creation. */
#include "kafka.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "kafka_defaults.h"
#include "log.h"
#include "metrics.h"
#include "text.h"
#include "worker.h"

/* The Kafka cluster as the clients of this process see it: one log line per change of state. */
static service_t kafka_service = {.name = "Kafka"};

/* Errors of librdkafka: a cluster that cannot be reached is a state (logged once, until it is back), not
 * an error per attempt; anything else is logged as it comes. Only a consumer's report counts: consumers are
 * polled all the time, where an idle producer's report waits in its queue and would arrive long after the
 * fact (and there is no statistics callback to see the cluster come back). */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
        err == RD_KAFKA_RESP_ERR__RESOLVE) {
        /* (At shutdown the client closes its own connections: not an outage.) */
        if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && worker_running() &&
            rd_kafka_type(rk) == RD_KAFKA_CONSUMER) {
            char why[512];
            text_printf(why, sizeof(why), "%s (%s)", reason, rd_kafka_name(rk));
            service_down(&kafka_service, why);
        } else {
            log_debug(NULL, "kafka %s: %s", rd_kafka_err2name(err), reason);
        }
        return;
    }
    log_msg(rd_kafka_fatal_error(rk, NULL, 0) ? LOG_ERROR : LOG_WARN, NULL, "kafka %s: %s",
            rd_kafka_err2name(err), reason);
}

/* The consumer lag of each partition this consumer holds (librdkafka's statistics: the partition's high
 * watermark, or last stable offset, minus the group's committed offset), as the gauge
 * raikoo_kafka_consumer_lag{topic, partition}; partitions no longer held disappear from it. */
static void lag_metrics(json_t *doc) {
    enum { MAX_ROWS = 1024 };
    static const char *const *values[MAX_ROWS];
    static char names[MAX_ROWS][2][256];
    static const char *pairs[MAX_ROWS][3];
    static double lag[MAX_ROWS];
    size_t n = 0;
    const char *topic, *part;
    json_t *t, *p;
    json_object_foreach(json_object_get(doc, "topics"), topic, t) {
        json_object_foreach(json_object_get(t, "partitions"), part, p) {
            /* No committed offset yet (consumer_lag -1): the group would start from the earliest offset, so
             * every message the partition holds is lag. */
            json_int_t lo = json_integer_value(json_object_get(p, "lo_offset"));
            json_int_t hi = json_integer_value(json_object_get(p, "hi_offset"));
            json_int_t l = json_integer_value(json_object_get(p, "consumer_lag"));
            if (l < 0 && hi >= 0 && lo >= 0 && json_integer_value(json_object_get(p, "committed_offset")) < 0)
                l = hi - lo;
            if (n >= MAX_ROWS || strcmp(part, "-1") == 0 || !json_is_true(json_object_get(p, "desired")) ||
                l < 0)
                continue;
            text_printf(names[n][0], sizeof(names[n][0]), "%s", topic);
            text_printf(names[n][1], sizeof(names[n][1]), "%s", part);
            pairs[n][0] = names[n][0];
            pairs[n][1] = names[n][1];
            pairs[n][2] = NULL;
            values[n] = pairs[n];
            lag[n] = (double)l;
            n++;
        }
    }
    metric_gauge_replace(
        metric_gauge("raikoo_kafka_consumer_lag",
                     "messages of the partition this consumer has not yet committed (librdkafka "
                     "statistics, every statistics.interval.ms)",
                     METRIC_LABELS("topic", "partition")),
        values, lag, n);
}

/* Statistics (consumers only: they are polled all the time): while Kafka is marked down, a broker in
 * state UP means it is back; with metrics on, the lag of each partition held. The statistics callback runs
 * in the thread that polls the consumer (one consumer per process): the static rows above are its own. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    (void)opaque;
    if (!kafka_service.down && !metrics_enabled())
        return 0;
    json_t *doc = json_loadb(json, json_len, 0, NULL);
    if (metrics_enabled())
        lag_metrics(doc);
    if (!kafka_service.down) {
        json_decref(doc);
        return 0;
    }
    json_t *brokers = json_object_get(doc, "brokers");
    const char *name;
    json_t *b;
    int up = 0;
    json_object_foreach(brokers, name, b) {
        const char *state = json_string_value(json_object_get(b, "state"));
        const char *source = json_string_value(json_object_get(b, "source"));
        if (state && strcmp(state, "UP") == 0 && !(source && strcmp(source, "internal") == 0))
            up = 1;
    }
    json_decref(doc);
    if (up)
        service_up(&kafka_service);
    return 0;
}

/* What kafka.c keeps for one group consumer, as its librdkafka opaque (rd_kafka_opaque): the worker's
 * rebalance callback and opaque, the partitions it holds, and whether it had its first assignment
 * (kafka_consumer_close). Freed by kafka_consumer_close. */
typedef struct group_member {
    void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t *, void *);
    void *opaque;
    int held;
    int assigned_once;
} group_member_t;

/* The worker's rebalance callback, then a report of what the member holds (readiness,
 * raikoo_kafka_assigned_partitions). */
static void rebalance_count(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                            void *opaque) {
    /* Counted from the callback's own list: no call back into librdkafka here (a rebalance served while the
     * consumer closes must not wait for its main thread). Cooperative: partitions come and go a few at a
     * time; eager: each assignment replaces the last. */
    group_member_t *g = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        g->assigned_once = 1;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    g->rebalance_cb(rk, err, parts, g->opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        g->held = cooperative ? g->held + parts->cnt : parts->cnt;
    else
        g->held = cooperative && g->held >= parts->cnt ? g->held - parts->cnt : 0;
    health_assigned(g->held);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    /* syslog levels: 0-3 errors, 4 warning, 5-6 info, 7 debug. A connection that fails or closes is
     * reported once as a state by error_cb (service_down/service_up), not once per attempt here. */
    if (strcmp(fac, "FAIL") == 0 || strcmp(fac, "CONNECT") == 0 || strcmp(fac, "BROKERFAIL") == 0)
        level = 7;
    log_msg(level <= 3   ? LOG_ERROR
            : level == 4 ? LOG_WARN
            : level <= 6 ? LOG_INFO
                         : LOG_DEBUG,
            NULL, "kafka %s: %s", fac, buf);
}

int kafka_conf_set(rd_kafka_conf_t *kconf, const char *prop, const char *value, char *errstr,
                   size_t errstr_size) {
    char why[512];
    if (rd_kafka_conf_set(kconf, prop, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka.%s: %s", prop, why);
        return -1;
    }
    return 0;
}

typedef struct set_arg {
    rd_kafka_conf_t *kconf;
    char *errstr;
    size_t errstr_size;
} set_arg_t;

static int set_one(void *arg, const char *prop, const char *value) {
    set_arg_t *a = arg;
    return kafka_conf_set(a->kconf, prop, value, a->errstr, a->errstr_size);
}

int kafka_conf_idempotent(rd_kafka_conf_t *kconf, char *errstr, size_t errstr_size) {
    if (kafka_conf_set(kconf, "enable.idempotence", "true", errstr, errstr_size) != 0 ||
        kafka_conf_set(kconf, "acks", "all", errstr, errstr_size) != 0)
        return -1;
    return 0;
}

/* What kafka_consumer_defaults sets (kafka.h says why; kafka_defaults_markdown prints it); optional: a
 * property this librdkafka does not know is left out. */
static const struct {
    const char *prop, *value, *theirs, *why;
    int optional;
} consumer_defaults[] = {
    {"queued.max.messages.kbytes", KAFKA_DEFAULT_QUEUED_KBYTES, "65536",
     "the prefetch of a backlog held in memory. librdkafka stops fetching above it and, before 2.2, looks "
     "again only when its broker thread next wakes (up to a second): a bound the worker drains in under a "
     "second leaves it idle meanwhile (at 1024 the command worker ran through a backlog at two thirds of its "
     "speed, and the first command after one waited up to 0.4 s)",
     0},
    {"fetch.max.bytes", "1048576", "52428800",
     "one fetch response, kept in memory until its last message is freed", 0},
    {"fetch.queue.backoff.ms", KAFKA_DEFAULT_QUEUE_BACKOFF_MS, "1000",
     "librdkafka 2.2 and later: how long it waits before it looks at a full queue again (left out where "
     "librdkafka does not know it)",
     1},
};

void kafka_defaults_markdown(void *file) {
    FILE *f = file;
    fputs("\nWhere the configuration sets nothing, the workers' consumers (command worker, mailer, audit "
          "worker) "
          "start\nfrom these, so that a backlog neither fills their memory nor starves them; a "
          "`kafka.<property>` "
          "of the same\nname replaces each:\n\n| property | ours | librdkafka's | why |\n|---|---|---|---|\n",
          f);
    for (size_t i = 0; i < sizeof(consumer_defaults) / sizeof(consumer_defaults[0]); i++)
        fprintf(f, "| `%s` | %s | %s | %s |\n", consumer_defaults[i].prop, consumer_defaults[i].value,
                consumer_defaults[i].theirs, consumer_defaults[i].why);
    fputs("\nThe producer library's result consumer bounds its prefetch at " KAFKA_DEFAULT_QUEUED_KBYTES
          " KiB and sets `fetch.queue.backoff.ms` " KAFKA_DEFAULT_QUEUE_BACKOFF_MS
          " too (`raikoo/producer.h`).\n",
          f);
}

int kafka_consumer_defaults(const conf_t *c, rd_kafka_conf_t *kconf, char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < sizeof(consumer_defaults) / sizeof(consumer_defaults[0]); i++) {
        char key[128], why[512];
        snprintf(key, sizeof(key), "kafka.%s", consumer_defaults[i].prop);
        if (conf_get(c, key))
            continue;
        rd_kafka_conf_res_t r =
            rd_kafka_conf_set(kconf, consumer_defaults[i].prop, consumer_defaults[i].value, why, sizeof(why));
        if (r == RD_KAFKA_CONF_UNKNOWN && consumer_defaults[i].optional)
            continue;
        if (r != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "kafka.%s: %s", consumer_defaults[i].prop, why);
            return -1;
        }
    }
    return 0;
}

rd_kafka_conf_t *kafka_conf_new(const conf_t *c, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kconf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(kconf, log_cb);
    set_arg_t a = {kconf, errstr, errstr_size};
    if (conf_each_kafka(c, set_one, &a) != 0) {
        rd_kafka_conf_destroy(kconf);
        return NULL;
    }
    return kconf;
}

rd_kafka_t *kafka_client_new(const conf_t *c, rd_kafka_type_t type, rd_kafka_conf_t *kconf, int timeout_ms,
                             char *errstr, size_t errstr_size) {
    char why[512];
    rd_kafka_t *rk = rd_kafka_new(type, kconf, why, sizeof(why));
    if (!rk) {
        rd_kafka_conf_destroy(kconf);
        snprintf(errstr, errstr_size, "cannot create Kafka client: %s", why);
        return NULL;
    }
    /* kconf is now owned by rk */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    if (err) {
        snprintf(
            errstr, errstr_size,
            "cannot reach Kafka at %s (kafka.bootstrap.servers): %s; is the broker running (ops/stack up)?",
            conf_get(c, "kafka.bootstrap.servers"), rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return NULL;
    }
    rd_kafka_metadata_destroy(md);
    return rk;
}

rd_kafka_t *kafka_producer_wait(const conf_t *c,
                                void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque),
                                const char *const *settings, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kconf = kafka_conf_new(c, errstr, errstr_size);
    if (!kconf)
        return NULL;
    if (dr_msg_cb)
        rd_kafka_conf_set_dr_msg_cb(kconf, dr_msg_cb);
    int bad = kafka_conf_idempotent(kconf, errstr, errstr_size) != 0;
    for (const char *const *s = settings; !bad && s && s[0]; s += 2)
        bad = kafka_conf_set(kconf, s[0], s[1], errstr, errstr_size) != 0;
    if (bad) {
        rd_kafka_conf_destroy(kconf);
        return NULL;
    }
    return kafka_client_wait(c, RD_KAFKA_PRODUCER, kconf, errstr, errstr_size);
}

/* Asks the cluster for its metadata; 0 when it answered within timeout_ms. */
static rd_kafka_resp_err_t probe(rd_kafka_t *rk, int timeout_ms) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    if (!err)
        rd_kafka_metadata_destroy(md);
    return err;
}

rd_kafka_t *kafka_client_wait(const conf_t *c, rd_kafka_type_t type, rd_kafka_conf_t *kconf, char *errstr,
                              size_t errstr_size) {
    char why[512];
    rd_kafka_conf_set_error_cb(kconf, error_cb);
    rd_kafka_t *rk = rd_kafka_new(type, kconf, why, sizeof(why));
    if (!rk) {
        rd_kafka_conf_destroy(kconf);
        snprintf(errstr, errstr_size, "cannot create Kafka client: %s", why);
        return NULL;
    }
    /* The client itself keeps trying to connect: ask it, with growing pauses, whether it got through. */
    for (;;) {
        rd_kafka_resp_err_t err = probe(rk, 2000);
        if (!err) {
            service_up(&kafka_service);
            return rk;
        }
        text_printf(why, sizeof(why), "cannot reach Kafka at %s (kafka.bootstrap.servers): %s",
                    conf_get(c, "kafka.bootstrap.servers"), rd_kafka_err2str(err));
        service_down(&kafka_service, why);
        if (!service_wait(&kafka_service)) {
            snprintf(errstr, errstr_size, "stopped while waiting for Kafka");
            rd_kafka_destroy(rk);
            return NULL;
        }
    }
}

/* Group settings of our consumers, unless the configuration sets them: a member that dies without leaving
 * (kill -9, a lost host) holds its partitions until its session times out, so the session is short (6 s,
 * the broker's smallest by default; librdkafka's default is 45 s), heartbeats frequent. With worker.instance
 * set, the member is static (group.instance.id = group/host/instance): a restarted instance takes its
 * partitions back without a rebalance; each process needs its own worker.instance, or the broker fences the
 * older one. A static member does not leave the group on shutdown either: its partitions then wait for the
 * session timeout, which is why it is not the default. */
static int consumer_group_defaults(const conf_t *c, rd_kafka_conf_t *kconf, const char *group, char *errstr,
                                   size_t errstr_size) {
    if (!conf_get(c, "kafka.session.timeout.ms") &&
        kafka_conf_set(kconf, "session.timeout.ms", "6000", errstr, errstr_size) != 0)
        return -1;
    if (!conf_get(c, "kafka.heartbeat.interval.ms") &&
        kafka_conf_set(kconf, "heartbeat.interval.ms", "1500", errstr, errstr_size) != 0)
        return -1;
    const char *instance = conf_get(c, "worker.instance");
    if (instance && *instance && !conf_get(c, "kafka.group.instance.id")) {
        char host[256] = "", id[512];
        if (gethostname(host, sizeof(host) - 1) != 0)
            snprintf(host, sizeof(host), "localhost");
        text_printf(id, sizeof(id), "%s/%s/%s", group, host, instance);
        if (kafka_conf_set(kconf, "group.instance.id", id, errstr, errstr_size) != 0)
            return -1;
    }
    return 0;
}

rd_kafka_t *kafka_group_consumer_new(const conf_t *c, const char *group, const char *topic,
                                     void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                                          rd_kafka_topic_partition_list_t *, void *),
                                     void *opaque, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kconf = kafka_conf_new(c, errstr, errstr_size);
    if (!kconf)
        return NULL;
    if (kafka_consumer_defaults(c, kconf, errstr, errstr_size) != 0 ||
        consumer_group_defaults(c, kconf, group, errstr, errstr_size) != 0 ||
        (!conf_get(c, "kafka.statistics.interval.ms") &&
         kafka_conf_set(kconf, "statistics.interval.ms", "1000", errstr, errstr_size) != 0) ||
        kafka_conf_set(kconf, "group.id", group, errstr, errstr_size) != 0 ||
        kafka_conf_set(kconf, "partition.assignment.strategy", "cooperative-sticky", errstr, errstr_size) !=
            0 ||
        kafka_conf_set(kconf, "enable.auto.commit", "false", errstr, errstr_size) != 0 ||
        kafka_conf_set(kconf, "enable.auto.offset.store", "false", errstr, errstr_size) != 0 ||
        kafka_conf_set(kconf, "auto.offset.reset", "earliest", errstr, errstr_size) != 0) {
        rd_kafka_conf_destroy(kconf);
        return NULL;
    }
    group_member_t *g = xcalloc(1, sizeof(*g));
    g->rebalance_cb = rebalance_cb;
    g->opaque = opaque;
    rd_kafka_conf_set_rebalance_cb(kconf, rebalance_count);
    rd_kafka_conf_set_opaque(kconf, g);
    rd_kafka_conf_set_stats_cb(kconf, stats_cb);
    rd_kafka_t *rk = kafka_client_wait(c, RD_KAFKA_CONSUMER, kconf, errstr, errstr_size);
    if (!rk) {
        free(g);
        return NULL; /* kconf went with the failed client */
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        snprintf(errstr, errstr_size, "cannot subscribe to %s: %s", topic, rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        free(g);
        return NULL;
    }
    return rk;
}

/* Waits until every partition of topic has a leader: a topic just created is not usable at once (its
 * watermarks and produce requests fail with "leader not available" for a moment). */
int kafka_topic_wait_ready(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                           size_t errstr_size) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (!t) {
        snprintf(errstr, errstr_size, "%s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    int rc = -1, slice = 200;
    for (int waited = 0; rc != 0 && waited < timeout_ms; waited += slice) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            const struct rd_kafka_metadata_topic *mt = md->topic_cnt == 1 ? &md->topics[0] : NULL;
            int ready = mt && !mt->err && mt->partition_cnt > 0;
            for (int i = 0; ready && i < mt->partition_cnt; i++)
                ready = !mt->partitions[i].err && mt->partitions[i].leader >= 0;
            rd_kafka_metadata_destroy(md);
            if (ready) {
                rc = 0;
                break;
            }
        }
        rd_kafka_poll(rk, slice);
    }
    if (rc != 0)
        snprintf(errstr, errstr_size, "topic %s has no leader for every partition after %d ms", topic,
                 timeout_ms);
    rd_kafka_topic_destroy(t);
    return rc;
}

/* The number of brokers in the cluster's metadata, or -1 (errstr says why). */
static long kafka_count_brokers(rd_kafka_t *rk, char *errstr, size_t errstr_size) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, 10000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "cannot count the brokers (topics.replication=auto): %s",
                 rd_kafka_err2str(err));
        return -1;
    }
    long n = md->broker_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* The topics kafka_topics_create makes: the key of each name and of its partition count. */
static const char *const topic_keys[][2] = {
    {"topic.commands", "topics.partitions.commands"}, {"topic.events", "topics.partitions.events"},
    {"topic.results", "topics.partitions.results"},   {"topic.mail", "topics.partitions.mail"},
    {"topic.dlq", "topics.partitions.dlq"},
};
enum { NTOPICS = sizeof(topic_keys) / sizeof(topic_keys[0]) };

/* The new topics' specifications with their configured partition counts and repl replicas each; -1 with
 * errstr (the caller destroys what topics[] holds either way). */
static int topics_new(const conf_t *c, long repl, rd_kafka_NewTopic_t *topics[NTOPICS], char *errstr,
                      size_t errstr_size) {
    for (int i = 0; i < NTOPICS; i++) {
        long parts;
        char why[512];
        const char *name = conf_get(c, topic_keys[i][0]);
        if (conf_get_long(c, topic_keys[i][1], 1, 10000, &parts, errstr, errstr_size) != 0)
            return -1;
        topics[i] = rd_kafka_NewTopic_new(name, (int)parts, (int)repl, why, sizeof(why));
        if (!topics[i]) {
            snprintf(errstr, errstr_size, "%s: %s", name, why);
            return -1;
        }
        /* Replicated: a write is acknowledged by two replicas, so one broker lost loses nothing. */
        if (repl >= 3 && rd_kafka_NewTopic_set_config(topics[i], "min.insync.replicas", "2") != 0) {
            snprintf(errstr, errstr_size, "%s: cannot set min.insync.replicas", name);
            return -1;
        }
    }
    return 0;
}

int kafka_create_topics(rd_kafka_t *rk, rd_kafka_NewTopic_t **topics, size_t n, int *created, char *errstr,
                        size_t errstr_size) {
    int rc = -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, topics, n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev) {
        snprintf(errstr, errstr_size, "Kafka did not answer CreateTopics within 30 s");
        goto done;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "CreateTopics: %s", rd_kafka_event_error_string(ev));
        goto done;
    }
    size_t nres = 0;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
    for (size_t i = 0; i < nres; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            (*created)++;
        } else if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            snprintf(errstr, errstr_size, "topic %s: %s", rd_kafka_topic_result_name(tr[i]),
                     rd_kafka_topic_result_error_string(tr[i]));
            goto done;
        }
    }
    rc = 0;
done:
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return rc;
}

/* Creates the topics with repl replicas each through rk, and returns once they can be used, so that a
 * script may go on at once. */
static int topics_create_with(const conf_t *c, rd_kafka_t *rk, long repl, int *created, char *errstr,
                              size_t errstr_size) {
    rd_kafka_NewTopic_t *topics[NTOPICS] = {0};
    int rc = topics_new(c, repl, topics, errstr, errstr_size);
    if (rc == 0)
        rc = kafka_create_topics(rk, topics, NTOPICS, created, errstr, errstr_size);
    for (int i = 0; rc == 0 && i < NTOPICS; i++)
        rc = kafka_topic_wait_ready(rk, conf_get(c, topic_keys[i][0]), 30000, errstr, errstr_size);
    for (int i = 0; i < NTOPICS; i++)
        if (topics[i])
            rd_kafka_NewTopic_destroy(topics[i]);
    return rc;
}

int kafka_topics_create(const conf_t *c, int *created, char *errstr, size_t errstr_size) {
    long repl = 0;
    *created = 0;
    /* auto: 3 on a cluster of 3 brokers or more (counted below), else 1. */
    int auto_repl = strcmp(conf_get(c, "topics.replication"), "auto") == 0;
    if (!auto_repl && conf_get_long(c, "topics.replication", 1, 32, &repl, errstr, errstr_size) != 0)
        return -1;
    rd_kafka_conf_t *kconf = kafka_conf_new(c, errstr, errstr_size);
    if (!kconf)
        return -1;
    rd_kafka_t *rk = kafka_client_new(c, RD_KAFKA_PRODUCER, kconf, 10000, errstr, errstr_size);
    if (!rk)
        return -1;
    if (auto_repl) {
        repl = kafka_count_brokers(rk, errstr, errstr_size);
        if (repl >= 0)
            repl = repl >= 3 ? 3 : 1;
    }
    int rc = repl < 0 ? -1 : topics_create_with(c, rk, repl, created, errstr, errstr_size);
    rd_kafka_destroy(rk);
    return rc;
}

void kafka_consumer_close(rd_kafka_t *rk) {
    if (!rk)
        return;
    group_member_t *g = rd_kafka_opaque(rk);
    char *member = rd_kafka_memberid(rk); /* set once the group took us in (JoinGroup answered) */
    int joined = member && *member;
    if (member)
        rd_kafka_mem_free(rk, member);
    if (joined && !g->assigned_once && rd_kafka_version() < 0x02030000) {
        log_debug(NULL, "waiting for the first assignment before leaving the group (librdkafka %s)",
                  rd_kafka_version_str());
        int64_t end = worker_now_ms() + 10000;
        while (!g->assigned_once && worker_now_ms() < end) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100); /* not applied, not committed */
            if (m)
                rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(g); /* after the last rebalance callback, served by the close */
}
