/* raikoo-bench: per-command SQL (the worker's own statements, no Kafka) and the Kafka floor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cmdproc.h"
#include "db.h"
#include "kafka.h"
#include "producer.h"
#include "secret.h"

int bench_pg_floor(const conf_t *c, PGconn *db, long n, const char *actor, bench_data_fn *data, void *arg,
                   int set_based, double *per_s, size_t *payload_bytes, char *errstr, size_t errstr_size) {
    int rc = -1;
    long batch_max, max_bytes;
    secret_keys_t keys;
    cmdproc_t *proc = NULL;
    raikoo_command_msg_t *built = calloc((size_t)n, sizeof(*built));
    cmdproc_msg_t *msgs = calloc((size_t)n, sizeof(*msgs));
    if (!built || !msgs)
        abort();
    if (conf_get_long(c, "batch.max", 1, 100000, &batch_max, errstr, errstr_size) != 0 ||
        conf_get_long(c, "command.max.bytes", 256, 1L << 30, &max_bytes, errstr, errstr_size) != 0 ||
        secret_load(conf_get(c, "keys.dir"), 0, &keys, errstr, errstr_size) != 0)
        goto done;
    proc = cmdproc_new(c, db, &keys, errstr, errstr_size);
    if (!proc)
        goto done;
    cmdproc_set_set_based(proc, set_based);
    size_t total = 0;
    for (long i = 0; i < n; i++) {
        if (raikoo_command_build(RAIKOO_CMD_INVITE_NEW_USER, "/raikoo/bench", actor,
                                 data(arg, set_based ? "setfloor" : "pgfloor", i), (size_t)max_bytes,
                                 &built[i], errstr, errstr_size) != 0)
            goto done;
        msgs[i].payload = built[i].payload;
        msgs[i].len = built[i].len;
        total += built[i].len;
    }
    *payload_bytes = total / (size_t)n;
    double t0 = bench_now();
    for (long i = 0; i < n; i += batch_max) {
        long k = n - i < batch_max ? n - i : batch_max;
        if (cmdproc_apply(proc, msgs + i, (size_t)k, errstr, errstr_size) != 0)
            goto done;
        bench_progress("%s SQL: %ld of %ld", set_based ? "set-path" : "per-command", i + k, n);
    }
    double wall = bench_now() - t0;
    for (long i = 0; i < n; i++) {
        if (strcmp(msgs[i].outcome, "accepted") != 0) {
            snprintf(errstr, errstr_size, "command %ld was %s (%s)", i, msgs[i].outcome,
                     msgs[i].code ? msgs[i].code : "");
            goto done;
        }
    }
    *per_s = (double)n / wall;
    /* Nobody is to publish the floor's results, events and mail jobs. */
    if (db_cmd(db, "DELETE FROM outbox", errstr, errstr_size) != 0)
        goto done;
    rc = 0;
done:
    cmdproc_free(proc);
    for (long i = 0; i < n; i++)
        raikoo_command_msg_clear(&built[i]);
    free(built);
    free(msgs);
    sodium_memzero(&keys, sizeof(keys));
    return rc;
}

typedef struct kafka_floor {
    long delivered, failed;
} kafka_floor_t;

static void floor_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    kafka_floor_t *f = opaque;
    if (m->err)
        f->failed++;
    else
        f->delivered++;
}

/* Creates the floor topic with the commands topic's partition count, if it is not there. */
static int floor_topic(rd_kafka_t *rk, const char *topic, int partitions, char *errstr, size_t errstr_size) {
    char why[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, why, sizeof(why));
    if (!nt) {
        snprintf(errstr, errstr_size, "%s", why);
        return -1;
    }
    int created = 0;
    int rc = kafka_create_topics(rk, &nt, 1, &created, errstr, errstr_size);
    rd_kafka_NewTopic_destroy(nt);
    if (rc == 0)
        rc = kafka_topic_wait_ready(rk, topic, 30000, errstr, errstr_size);
    return rc;
}

/* The floor's idempotent producer (delivery reports counted in *f), its topic, and a consumer assigned to
 * the current end of every partition of it (only this run's messages). -1 with errstr; what was made is
 * in *prod and *cons either way. */
static int floor_clients(const conf_t *c, const char *topic, long partitions, kafka_floor_t *f,
                         rd_kafka_t **prod, rd_kafka_t **cons, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *pc = kafka_conf_new(c, errstr, errstr_size);
    if (!pc)
        return -1;
    rd_kafka_conf_set_dr_msg_cb(pc, floor_dr);
    rd_kafka_conf_set_opaque(pc, f);
    if (kafka_conf_idempotent(pc, errstr, errstr_size) != 0) {
        rd_kafka_conf_destroy(pc);
        return -1;
    }
    *prod = kafka_client_new(c, RD_KAFKA_PRODUCER, pc, 10000, errstr, errstr_size);
    if (!*prod || floor_topic(*prod, topic, (int)partitions, errstr, errstr_size) != 0)
        return -1;
    rd_kafka_conf_t *cc = kafka_conf_new(c, errstr, errstr_size);
    if (!cc || kafka_conf_set(cc, "group.id", "raikoo-bench-floor", errstr, errstr_size) != 0 ||
        kafka_conf_set(cc, "enable.auto.commit", "false", errstr, errstr_size) != 0) {
        if (cc)
            rd_kafka_conf_destroy(cc);
        return -1;
    }
    *cons = kafka_client_new(c, RD_KAFKA_CONSUMER, cc, 10000, errstr, errstr_size);
    if (!*cons)
        return -1;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new((int)partitions);
    int rc = 0;
    for (int p = 0; rc == 0 && p < partitions; p++) {
        int64_t hi;
        if (kafka_high_watermark(*cons, topic, p, 30000, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "watermarks of %s/%d unavailable", topic, p);
            rc = -1;
        } else {
            rd_kafka_topic_partition_list_add(parts, topic, p)->offset = hi;
        }
    }
    if (rc == 0)
        rd_kafka_assign(*cons, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

/* Consumes what is there at once; the number of messages without an error. */
static long floor_consume_ready(rd_kafka_t *cons) {
    long got = 0;
    rd_kafka_message_t *m;
    while ((m = rd_kafka_consumer_poll(cons, 0)) != NULL) {
        got += !m->err;
        rd_kafka_message_destroy(m);
    }
    return got;
}

int bench_kafka_floor(const conf_t *c, long n, size_t bytes, long keys, double *per_s, char *errstr,
                      size_t errstr_size) {
    int rc = -1;
    const char *topic = "raikoo.bench.floor";
    long partitions;
    rd_kafka_t *prod = NULL, *cons = NULL;
    kafka_floor_t f = {0, 0};
    char *payload = malloc(bytes + 1);
    if (!payload)
        abort();
    memset(payload, 'x', bytes);
    payload[bytes] = '\0';
    if (conf_get_long(c, "topics.partitions.commands", 1, 10000, &partitions, errstr, errstr_size) != 0 ||
        floor_clients(c, topic, partitions, &f, &prod, &cons, errstr, errstr_size) != 0)
        goto done;
    double t0 = bench_now();
    long consumed = 0;
    for (long i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key-%ld", i % keys);
        while (rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                 RD_KAFKA_V_VALUE(payload, bytes), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(prod, 10);
        rd_kafka_poll(prod, 0);
        consumed += floor_consume_ready(cons);
    }
    while (consumed < n) {
        rd_kafka_poll(prod, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 100);
        if (m) {
            consumed += !m->err;
            rd_kafka_message_destroy(m);
        }
        if (f.failed) {
            snprintf(errstr, errstr_size, "%ld deliveries failed", f.failed);
            goto done;
        }
        bench_progress("Kafka floor: %ld delivered, %ld consumed of %ld", f.delivered, consumed, n);
        if (bench_now() - t0 > 300) {
            snprintf(errstr, errstr_size, "only %ld of %ld consumed after 300 s", consumed, n);
            goto done;
        }
    }
    *per_s = (double)n / (bench_now() - t0);
    rc = 0;
done:
    if (cons) {
        rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
    }
    if (prod) {
        rd_kafka_flush(prod, 10000);
        rd_kafka_destroy(prod);
    }
    free(payload);
    return rc;
}
