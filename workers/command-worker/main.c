/* raikoo-command-worker: consumes raikoo.commands in batches and applies each batch in one PostgreSQL
 * transaction (lib/cmdproc), then commits the Kafka offsets; non-commands go to the dead-letter topic. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmdproc.h"
#include "conf.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "secret.h"
#include "worker.h"

typedef struct batch {
    rd_kafka_message_t **m;
    size_t n, cap;
} batch_t;

static batch_t batch;

/* Drops the gathered messages of partitions this worker no longer owns: they were not applied, and
 * their new owner reads them from the last committed offset. */
static void batch_drop_partitions(const rd_kafka_topic_partition_list_t *parts) {
    size_t j = 0;
    for (size_t i = 0; i < batch.n; i++) {
        rd_kafka_message_t *m = batch.m[i];
        if (rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition)) {
            rd_kafka_message_destroy(m);
        } else {
            batch.m[j++] = m;
        }
    }
    batch.n = j;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
    (void)opaque;
    rd_kafka_error_t *error = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info(NULL, "assigned %d partition(s)", parts->cnt);
        error = rd_kafka_incremental_assign(rk, parts);
    } else {
        log_info(NULL, "revoked %d partition(s)", parts->cnt);
        batch_drop_partitions(parts);
        error = rd_kafka_incremental_unassign(rk, parts);
    }
    if (error) {
        log_error(NULL, "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

static void batch_clear(void) {
    for (size_t i = 0; i < batch.n; i++)
        rd_kafka_message_destroy(batch.m[i]);
    batch.n = 0;
}

/* Polls until max messages, or wait_ms after the first one, or shutdown. */
static void batch_gather(rd_kafka_t *consumer, long max, long wait_ms) {
    int64_t deadline = 0;
    while (worker_running() && batch.n < (size_t)max) {
        int timeout = 100;
        if (batch.n > 0) {
            int64_t left = deadline - worker_now_ms();
            if (left <= 0)
                break;
            timeout = (int)left;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, timeout);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn(NULL, "consume: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (batch.n == batch.cap) {
            batch.cap = batch.cap ? batch.cap * 2 : 256;
            batch.m = realloc(batch.m, batch.cap * sizeof(*batch.m));
            if (!batch.m)
                abort();
        }
        if (batch.n == 0)
            deadline = worker_now_ms() + wait_ms;
        batch.m[batch.n++] = m;
    }
}

/* Sends a message that is not a command to the dead-letter topic, with why and where it came from. */
static int dead_letter(rd_kafka_t *producer, const char *topic, const rd_kafka_message_t *m, const char *reason) {
    char origin[64];
    snprintf(origin, sizeof(origin), "%s/%d/%lld", rd_kafka_topic_name(m->rkt), (int)m->partition,
             (long long)m->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "raikoo.dlq.reason", -1, reason, -1);
    rd_kafka_header_add(h, "raikoo.dlq.origin", -1, origin, -1);
    rd_kafka_resp_err_t err =
        rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(m->payload, m->len),
                          RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        log_error(NULL, "dead-letter produce: %s", rd_kafka_err2str(err));
        return -1;
    }
    log_warn(NULL, "message %s sent to %s: %s", origin, topic, reason);
    return 0;
}

/* Commits, for each partition of the batch, the offset after its last message. Asynchronously while
 * running: the batch is already committed in PostgreSQL, so a commit lost to a crash or a rebalance only
 * means a redelivery that processed_commands recognises, and the next batch need not wait a round trip to
 * the group coordinator. At shutdown (async = 0) it waits. */
static int commit_offsets(rd_kafka_t *consumer, int async) {
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new((int)batch.n);
    for (size_t i = 0; i < batch.n; i++) {
        rd_kafka_message_t *m = batch.m[i];
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(offs, rd_kafka_topic_name(m->rkt), m->partition);
        if (!tp)
            tp = rd_kafka_topic_partition_list_add(offs, rd_kafka_topic_name(m->rkt), m->partition);
        if (m->offset + 1 > tp->offset)
            tp->offset = m->offset + 1;
    }
    rd_kafka_resp_err_t err = rd_kafka_commit(consumer, offs, async);
    rd_kafka_topic_partition_list_destroy(offs);
    if (err) {
        /* Applied but not acknowledged: a redelivery is recognised by its command id. */
        log_warn(NULL, "offset commit failed (%s): the batch will be seen again and deduplicated",
                 rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Applies the gathered batch, retrying on database failure until it commits or shutdown is asked. */
static int batch_apply(cmdproc_t *proc, PGconn **db, rd_kafka_t *producer, const char *dlq) {
    char err[1024];
    cmdproc_msg_t *msgs = calloc(batch.n, sizeof(*msgs));
    if (!msgs)
        abort();
    for (size_t i = 0; i < batch.n; i++) {
        msgs[i].payload = batch.m[i]->payload ? batch.m[i]->payload : "";
        msgs[i].len = batch.m[i]->len;
    }
    int backoff_ms = 100, rc = -1;
    for (;;) {
        if (cmdproc_apply(proc, msgs, batch.n, err, sizeof(err)) == 0) {
            rc = 0;
            break;
        }
        if (!db_alive(*db)) { /* PostgreSQL away: logged once by db_alive, not per attempt */
            if (!db_wait())
                break; /* shutdown: abandon the batch; it is redelivered */
            continue;
        }
        log_error(NULL, "batch of %zu rolled back: %s; retrying in %d ms", batch.n, err, backoff_ms);
        if (!worker_sleep_ms(backoff_ms))
            break; /* shutdown: abandon the batch; it is redelivered */
        backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
        cmdproc_set_db(proc, *db);
    }
    if (rc == 0) {
        int dead = 0, dl_failed = 0;
        for (size_t i = 0; i < batch.n; i++) {
            if (msgs[i].dead_letter) {
                dead++;
                dl_failed |= dead_letter(producer, dlq, batch.m[i], msgs[i].reason) != 0;
            }
        }
        /* The dead letters must be stored before their offsets are committed. */
        if (dead && (rd_kafka_flush(producer, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR || dl_failed)) {
            log_error(NULL, "dead-letter topic unavailable: offsets not committed, the batch will be redelivered");
            rc = -1;
        }
    }
    free(msgs);
    return rc;
}

int main(int argc, char **argv) {
    int rc = 1;
    char err[1024];
    conf_t *c = conf_new();
    PGconn *db = NULL;
    rd_kafka_t *consumer = NULL, *producer = NULL;
    cmdproc_t *proc = NULL;
    secret_keys_t keys;
    long batch_max, batch_wait;

    if (worker_init(&argc, argv, c, "command-worker",
                    "Consumes raikoo.commands, applies each batch in one PostgreSQL transaction and writes results,\n"
                    "events and mail jobs to the outbox. Scale out by starting more (one consumer group).") != 0) {
        rc = worker_exit_status();
        goto done;
    }
    if (secret_init(err, sizeof(err)) != 0 ||
        secret_load(conf_get(c, "keys.dir"), 0, &keys, err, sizeof(err)) != 0 ||
        conf_get_long(c, "batch.max", 1, 100000, &batch_max, err, sizeof(err)) != 0 ||
        conf_get_long(c, "batch.wait.ms", 0, 60000, &batch_wait, err, sizeof(err)) != 0) {
        log_error(NULL, "%s", err);
        goto done;
    }
    db = db_connect_wait(c, err, sizeof(err)); /* waits while PostgreSQL is down */
    if (!db) {
        log_error(NULL, "%s", err);
        rc = worker_running() ? 1 : 0;
        goto done;
    }
    proc = cmdproc_new(c, db, &keys, err, sizeof(err));
    if (!proc) {
        log_error(NULL, "%s", err);
        goto done;
    }

    rd_kafka_conf_t *pconf = kafka_conf_new(c, err, sizeof(err));
    if (!pconf || kafka_conf_idempotent(pconf, err, sizeof(err)) != 0) {
        log_error(NULL, "%s", err);
        if (pconf)
            rd_kafka_conf_destroy(pconf);
        goto done;
    }
    producer = kafka_client_wait(c, RD_KAFKA_PRODUCER, pconf, err, sizeof(err)); /* waits while Kafka is down */
    if (!producer) {
        log_error(NULL, "%s", err);
        rc = worker_running() ? 1 : 0;
        goto done;
    }
    consumer = kafka_group_consumer_new(c, conf_get(c, "group.commands"), conf_get(c, "topic.commands"),
                                        rebalance_cb, err, sizeof(err));
    if (!consumer) {
        log_error(NULL, "%s", err);
        rc = worker_running() ? 1 : 0;
        goto done;
    }
    log_info(NULL, "consuming %s as group %s (batches of up to %ld, %ld ms)", conf_get(c, "topic.commands"),
             conf_get(c, "group.commands"), batch_max, batch_wait);

    while (worker_running()) {
        batch_gather(consumer, batch_max, batch_wait);
        if (batch.n == 0)
            continue;
        if (batch_apply(proc, &db, producer, conf_get(c, "topic.dlq")) == 0)
            commit_offsets(consumer, worker_running());
        batch_clear();
        rd_kafka_poll(producer, 0);
    }
    rc = 0;
    log_info(NULL, "shutting down");
done:
    batch_clear();
    free(batch.m);
    if (consumer) {
        rd_kafka_consumer_close(consumer); /* leaves the group: partitions move on at once */
        rd_kafka_destroy(consumer);
    }
    if (producer) {
        rd_kafka_flush(producer, 10000);
        rd_kafka_destroy(producer);
    }
    cmdproc_free(proc);
    PQfinish(db);
    conf_free(c);
    sodium_memzero(&keys, sizeof(keys));
    return rc;
}
