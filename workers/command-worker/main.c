/* raikoo-command-worker: consumes raikoo.commands in batches and applies each batch in one PostgreSQL
 * transaction (lib/svc/cmdproc), then commits the Kafka offsets; non-commands go to the dead-letter topic. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cmdproc.h"
#include "conf.h"
#include "db.h"
#include "deadletter.h"
#include "event.h"
#include "exitstatus.h"
#include "health.h"
#include "kafka.h"
#include "log.h"
#include "notify.h"
#include "secret.h"
#include "text.h"
#include "worker.h"

typedef struct batch {
    rd_kafka_message_t **m;
    size_t n, cap;
} batch_t;

static batch_t batch;

/* Offsets applied in PostgreSQL but not yet known to be committed to the group, per partition. A commit that
 * fails (a rebalance under way, the coordinator away) is made again, and at revoke the partitions' offsets
 * are committed synchronously: otherwise their next owner re-applies a whole backlog (deduplicated, but
 * repeated work). */
static rd_kafka_topic_partition_list_t *pending;
static int commit_failing;      /* the last commit failed: commit again, and log only state changes */
static int64_t commit_retry_at; /* worker_now_ms() after which to commit again */
static rd_kafka_queue_t *commit_queue;

/* Records that partition (topic, part) is applied up to offset (exclusive). */
static void pending_set(const char *topic, int32_t part, int64_t offset) {
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(pending, topic, part);
    if (!tp)
        tp = rd_kafka_topic_partition_list_add(pending, topic, part);
    if (offset > tp->offset)
        tp->offset = offset;
}

/* Forgets the pending offsets that a commit of offs confirmed. */
static void pending_confirmed(const rd_kafka_topic_partition_list_t *offs) {
    for (int i = 0; offs && i < offs->cnt; i++) {
        const rd_kafka_topic_partition_t *c = &offs->elems[i];
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(pending, c->topic, c->partition);
        if (tp && !c->err && tp->offset <= c->offset)
            rd_kafka_topic_partition_list_del(pending, c->topic, c->partition);
    }
}

static void commit_state(rd_kafka_resp_err_t err) {
    if (err && !commit_failing)
        log_warn(NULL,
                 "offset commit failed (%s): committing again until it succeeds (meanwhile a redelivery "
                 "is recognised by its command id)",
                 rd_kafka_err2str(err));
    else if (!err && commit_failing)
        log_info(NULL, "offset commits succeed again");
    commit_failing = err != RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err)
        commit_retry_at = worker_now_ms() + 1000;
}

/* Served by rd_kafka_consumer_poll: the outcome of an asynchronous commit. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offs,
                      void *opaque) {
    (void)rk;
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        err = RD_KAFKA_RESP_ERR_NO_ERROR;
    /* A commit refused as a whole (rebalance in progress, coordinator away) may carry no error on its
     * partitions: nothing of it is confirmed, and every offset stays pending for the next attempt. */
    if (!err)
        pending_confirmed(offs);
    for (int i = 0; !err && offs && i < offs->cnt; i++)
        err = offs->elems[i].err;
    commit_state(err);
}

/* Commits every pending offset: asynchronously while running (the outcome arrives in commit_cb), or
 * synchronously (shutdown). */
static void commit_pending(rd_kafka_t *consumer, int async) {
    if (pending->cnt == 0)
        return;
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_copy(pending);
    rd_kafka_resp_err_t err;
    if (async) {
        err = rd_kafka_commit_queue(consumer, offs, commit_queue, commit_cb, NULL);
        if (err)
            commit_state(err);
    } else {
        err = rd_kafka_commit(consumer, offs, 0);
        if (!err)
            pending_confirmed(offs);
        commit_state(err);
    }
    rd_kafka_topic_partition_list_destroy(offs);
}

/* At revoke: commits, synchronously, the pending offsets of the partitions that go, so that their next
 * owner starts after what this worker applied; then forgets them (they are no longer ours). */
static void commit_revoked(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(pending, parts->elems[i].topic, parts->elems[i].partition);
        if (tp)
            rd_kafka_topic_partition_list_add(offs, tp->topic, tp->partition)->offset = tp->offset;
    }
    if (offs->cnt > 0 && !rd_kafka_assignment_lost(rk)) {
        rd_kafka_resp_err_t err = rd_kafka_commit(rk, offs, 0);
        if (err)
            log_warn(NULL,
                     "offset commit at revoke failed (%s): the next owner of %d partition(s) sees some "
                     "commands again and deduplicates them",
                     rd_kafka_err2str(err), offs->cnt);
    }
    for (int i = 0; i < offs->cnt; i++)
        rd_kafka_topic_partition_list_del(pending, offs->elems[i].topic, offs->elems[i].partition);
    rd_kafka_topic_partition_list_destroy(offs);
}

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
        commit_revoked(rk, parts);
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

/* Polls until max messages or shutdown; after the first message, gathers more only while they are
 * there at once (a poll of 0 ms), unless the previous batch was full (a backlog: then it waits up to
 * wait_ms after the first one for the batch to fill). An idle worker so applies a lone command at once:
 * batch.wait.ms adds no latency at low rates. */
static void batch_gather(rd_kafka_t *consumer, long max, long wait_ms) {
    static int previous_full;
    int64_t deadline = 0;
    while (worker_running() && batch.n < (size_t)max) {
        int timeout = 100;
        if (batch.n > 0) {
            int64_t left = previous_full ? deadline - worker_now_ms() : 0;
            timeout = left > 0 ? (int)left : 0;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, timeout);
        if (!m) {
            if (batch.n > 0 && timeout == 0)
                break; /* nothing more at once (or the wait is over) */
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn(NULL, "consume: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        batch.m = xgrow(batch.m, batch.n + 1, &batch.cap, sizeof(*batch.m), 256);
        if (batch.n == 0)
            deadline = worker_now_ms() + wait_ms;
        batch.m[batch.n++] = m;
    }
    previous_full = batch.n >= (size_t)max;
}

/* Delivery of the dead letters: each produced message carries a pointer to its slot, which the delivery
 * report sets. Slots live until their report came (see dead_letter_all). */
enum { DL_PENDING = 0, DL_DELIVERED = 1, DL_FAILED = 2 };
static rd_kafka_resp_err_t dl_last_err; /* of the last failed delivery, for the log line */

static void dl_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    int *slot = m->_private;
    if (slot)
        *slot = m->err ? DL_FAILED : DL_DELIVERED;
    if (m->err)
        dl_last_err = m->err;
}

static const char *dlq_group; /* the consumer group, for the dead letters' raikoo.dlq.group header */

/* The dead letter's headers (docs/MESSAGES.md): the original message's own headers, but any raikoo.dlq.* of
 * an earlier dead-lettering, so that a replay sends the message as it came (binary mode too); a
 * content-type saying structured mode when it had none and no ce_ header (the mode the worker read it
 * in); then why and where it came from. The reason names positions and our own words, never the text. */
static rd_kafka_headers_t *dead_letter_headers(const rd_kafka_message_t *m, const char *reason) {
    rd_kafka_headers_t *orig = NULL, *h;
    int marked = 0;
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig) {
        h = rd_kafka_headers_new(rd_kafka_header_cnt(orig) + 8);
        const char *name;
        const void *value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(orig, i, &name, &value, &size) == 0; i++) {
            if (strncmp(name, "raikoo.dlq.", 11) == 0)
                continue;
            marked |= strcasecmp(name, "content-type") == 0 || strncasecmp(name, "ce_", 3) == 0;
            rd_kafka_header_add(h, name, -1, value, value ? (ssize_t)size : 0);
        }
    } else {
        h = rd_kafka_headers_new(8);
    }
    if (!marked)
        rd_kafka_header_add(h, EVENT_CONTENT_TYPE_HEADER, -1, EVENT_CONTENT_TYPE, -1);
    char origin[300], part[16], offset[24], stamp[24];
    const char *topic = rd_kafka_topic_name(m->rkt);
    text_printf(origin, sizeof(origin), "%s/%d/%lld", topic, (int)m->partition, (long long)m->offset);
    text_printf(part, sizeof(part), "%d", (int)m->partition);
    text_printf(offset, sizeof(offset), "%lld", (long long)m->offset);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    text_printf(stamp, sizeof(stamp), "%lld",
                (long long)(tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts));
    rd_kafka_header_add(h, "raikoo.dlq.reason", -1, reason, -1);
    rd_kafka_header_add(h, "raikoo.dlq.origin", -1, origin, -1);
    rd_kafka_header_add(h, "raikoo.dlq.topic", -1, topic, -1);
    rd_kafka_header_add(h, "raikoo.dlq.partition", -1, part, -1);
    rd_kafka_header_add(h, "raikoo.dlq.offset", -1, offset, -1);
    rd_kafka_header_add(h, "raikoo.dlq.timestamp", -1, stamp, -1);
    rd_kafka_header_add(h, "raikoo.dlq.group", -1, dlq_group ? dlq_group : "", -1);
    return h;
}

/* Produces a message that is not a command to the dead-letter topic, with why and where it came from; the
 * delivery report lands in *slot. */
static rd_kafka_resp_err_t dead_letter(rd_kafka_t *producer, const char *topic, const rd_kafka_message_t *m,
                                       const char *reason, int *slot) {
    rd_kafka_headers_t *h = dead_letter_headers(m, reason);
    redacted_t r; /* never the secrets of the original (lib/svc/deadletter.h) */
    dead_letter_redact(m, h, &r);
    size_t len;
    const void *value = dead_letter_value(m, &r, &len);
    *slot = DL_PENDING;
    rd_kafka_resp_err_t err =
        rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE((void *)value, len),
                          RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_HEADERS(h),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(slot), RD_KAFKA_V_END);
    redacted_free(&r);
    if (err) {
        rd_kafka_headers_destroy(h);
        *slot = DL_FAILED;
    }
    return err;
}

/* Sends the batch's dead letters and waits for their delivery reports; those that failed are sent again,
 * with a bounded backoff, until all are confirmed: only then may offsets move past them. 0 when all are
 * stored; -1 when shutdown is asked first (the offsets are then not committed: the batch is redelivered,
 * its commands deduplicated and its dead letters sent again). One log line when the dead-letter topic
 * cannot be written and one when it can again. */
static int dead_letter_all(rd_kafka_t *producer, const char *topic, const cmdproc_msg_t *msgs) {
    size_t dead = 0;
    for (size_t i = 0; i < batch.n; i++)
        dead += msgs[i].dead_letter != 0;
    if (dead == 0)
        return 0;
    /* Not freed while a delivery report may still write into it (only at shutdown is it left behind). */
    int *slot = xcalloc(batch.n, sizeof(*slot));
    for (size_t i = 0; i < batch.n; i++)
        slot[i] = msgs[i].dead_letter ? DL_FAILED : DL_DELIVERED;
    int backoff_ms = 500, failing = 0;
    char what[256] = "";
    for (;;) {
        for (size_t i = 0; i < batch.n; i++) {
            if (slot[i] != DL_FAILED)
                continue;
            rd_kafka_resp_err_t err = dead_letter(producer, topic, batch.m[i], msgs[i].reason, &slot[i]);
            if (err)
                text_printf(what, sizeof(what), "%s", rd_kafka_err2str(err));
        }
        /* Every report arrives within message.timeout.ms. */
        while (rd_kafka_outq_len(producer) > 0) {
            rd_kafka_flush(producer, 1000);
            if (!worker_running()) {
                rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE);
                rd_kafka_flush(producer, 5000);
                break;
            }
        }
        size_t stored = 0, first_failed = batch.n;
        for (size_t i = 0; i < batch.n; i++) {
            if (slot[i] == DL_DELIVERED)
                stored++;
            else if (first_failed == batch.n)
                first_failed = i;
        }
        if (stored == batch.n) {
            if (failing)
                log_info(NULL, "dead-letter topic %s written again: %zu message(s) stored, offsets move on",
                         topic, dead);
            free(slot);
            return 0;
        }
        if (rd_kafka_outq_len(producer) > 0) {
            log_error(NULL, "shutting down with dead letters undelivered: offsets not committed past them");
            return -1; /* slot is left to the reports still to come */
        }
        if (!failing) {
            const rd_kafka_message_t *m = batch.m[first_failed];
            log_error(
                NULL,
                "dead-letter topic %s cannot be written (%s): offsets stay before %s/%d/%lld and the worker "
                "retries until it can (does the topic exist? raikoo topics create)",
                topic, what[0] ? what : rd_kafka_err2str(dl_last_err), rd_kafka_topic_name(m->rkt),
                (int)m->partition, (long long)m->offset);
            failing = 1;
        }
        if (!worker_sleep_ms(backoff_ms)) {
            free(slot);
            return -1;
        }
        backoff_ms = backoff_ms < 15000 ? backoff_ms * 2 : 30000;
    }
}

/* The Kafka headers of m, for the parser (binary-mode CloudEvents): an array the caller frees, whose names
 * and values m owns; NULL when it has none. */
static cmd_header_t *message_headers(const rd_kafka_message_t *m, size_t *n) {
    rd_kafka_headers_t *hdrs = NULL;
    *n = 0;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || !hdrs)
        return NULL;
    size_t cnt = rd_kafka_header_cnt(hdrs);
    cmd_header_t *h = xcalloc(cnt ? cnt : 1, sizeof(*h));
    while (*n < cnt && rd_kafka_header_get_all(hdrs, *n, &h[*n].name, &h[*n].value, &h[*n].len) == 0)
        (*n)++;
    return h;
}

/* Applies the gathered batch, retrying on database failure until it commits or shutdown is asked. */
static int batch_apply(cmdproc_t *proc, PGconn **db, rd_kafka_t *producer, const char *dlq) {
    char err[1024];
    cmdproc_msg_t *msgs = xcalloc(batch.n, sizeof(*msgs));
    for (size_t i = 0; i < batch.n; i++) {
        msgs[i].payload = batch.m[i]->payload ? batch.m[i]->payload : "";
        msgs[i].len = batch.m[i]->len;
        msgs[i].headers = message_headers(batch.m[i], &msgs[i].nheaders);
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
    /* The dead letters must be stored before their offsets are committed. */
    if (rc == 0)
        rc = dead_letter_all(producer, dlq, msgs);
    if (rc == 0) {
        for (size_t i = 0; i < batch.n; i++)
            pending_set(rd_kafka_topic_name(batch.m[i]->rkt), batch.m[i]->partition, batch.m[i]->offset + 1);
    }
    for (size_t i = 0; i < batch.n; i++)
        free((void *)msgs[i].headers);
    free(msgs);
    return rc;
}

int main(int argc, char **argv) {
    int rc = EXIT_INFRA;
    char err[1024];
    conf_t *c = conf_new();
    PGconn *db = NULL;
    rd_kafka_t *consumer = NULL, *producer = NULL;
    cmdproc_t *proc = NULL;
    secret_keys_t keys;
    long batch_max, batch_wait;
    pending = rd_kafka_topic_partition_list_new(16);

    if (worker_init(
            &argc, argv, c, "command-worker",
            "Consumes raikoo.commands, applies each batch in one PostgreSQL transaction and writes results,\n"
            "events and mail jobs to the outbox. Scale out by starting more (one consumer group).") != 0) {
        rc = worker_exit_status();
        goto done;
    }
    health_require(HEALTH_POSTGRESQL | HEALTH_KAFKA | HEALTH_PARTITIONS); /* what /readyz waits for */
    if (secret_init(err, sizeof(err)) != 0) {
        rc = worker_gave_up(err);
        goto done;
    }
    if (secret_load(conf_get(c, "keys.dir"), 0, &keys, err, sizeof(err)) != 0 ||
        conf_get_long(c, "batch.max", 1, 100000, &batch_max, err, sizeof(err)) != 0 ||
        conf_get_long(c, "batch.wait.ms", 0, 60000, &batch_wait, err, sizeof(err)) != 0) {
        rc = worker_misconfigured(err);
        goto done;
    }
    db = db_connect_wait(c, err, sizeof(err)); /* waits while PostgreSQL is down */
    if (!db) {
        rc = worker_gave_up(err);
        goto done;
    }
    proc = cmdproc_new(c, db, &keys, err, sizeof(err));
    if (!proc) {
        rc = worker_gave_up(err);
        goto done;
    }

    /* Delivery reports confirm each dead letter; message.timeout.ms bounds the wait for one (a missing
     * topic otherwise holds a message for librdkafka's 300 s default) unless the configuration sets one. */
    static const char *const timeout[] = {"message.timeout.ms", "30000", NULL};
    int own_timeout = conf_get(c, "kafka.message.timeout.ms") || conf_get(c, "kafka.delivery.timeout.ms");
    producer = kafka_producer_wait(c, dl_delivered, own_timeout ? NULL : timeout, err,
                                   sizeof(err)); /* waits while Kafka is down */
    if (!producer) {
        rc = worker_gave_up(err);
        goto done;
    }
    consumer = kafka_group_consumer_new(c, conf_get(c, "group.commands"), conf_get(c, "topic.commands"),
                                        rebalance_cb, err, sizeof(err));
    if (!consumer) {
        rc = worker_gave_up(err);
        goto done;
    }
    commit_queue = rd_kafka_queue_get_consumer(consumer);
    dlq_group = conf_get(c, "group.commands");
    log_info(NULL, "consuming %s as group %s (batches of up to %ld, %ld ms)", conf_get(c, "topic.commands"),
             conf_get(c, "group.commands"), batch_max, batch_wait);
    notify_ready("consuming commands"); /* systemd (Type=notify): connected to PostgreSQL and Kafka */

    while (worker_running()) {
        batch_gather(consumer, batch_max, batch_wait);
        if (batch.n > 0) {
            /* Offsets move only past a batch applied in PostgreSQL whose dead letters are stored; until
             * then the batch is not left (batch_apply fails only when shutdown is asked). */
            if (batch_apply(proc, &db, producer, conf_get(c, "topic.dlq")) == 0)
                commit_pending(consumer, 1);
            batch_clear();
        } else if (commit_failing && pending->cnt > 0 && worker_now_ms() >= commit_retry_at) {
            commit_retry_at = worker_now_ms() + 1000;
            commit_pending(consumer, 1);
        }
        rd_kafka_poll(producer, 0);
    }
    commit_pending(consumer, 0);
    rc = EXIT_OK;
    log_info(NULL, "shutting down");
done:
    batch_clear();
    free(batch.m);
    if (commit_queue)
        rd_kafka_queue_destroy(commit_queue);
    kafka_consumer_close(consumer); /* leaves the group: partitions move on at once */
    if (producer) {
        rd_kafka_flush(producer, 10000);
        rd_kafka_destroy(producer);
    }
    cmdproc_free(proc);
    PQfinish(db);
    rd_kafka_topic_partition_list_destroy(pending);
    conf_free(c);
    sodium_memzero(&keys, sizeof(keys));
    return rc;
}
