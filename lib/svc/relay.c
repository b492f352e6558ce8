/* The outbox relay's round: publish outbox rows with an idempotent producer, delete exactly those
 * Kafka acknowledged. */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "event.h"
#include "health.h"
#include "instruments.h"
#include "kafka.h"
#include "log.h"
#include "text.h"

static const char SQL_PENDING[] = "SELECT id, topic, key, payload FROM outbox ORDER BY id LIMIT $1";
static const char SQL_DELETE[] = "DELETE FROM outbox WHERE id = ANY($1::bigint[])";

/* Per-message delivery state, reached through the message opaque. */
typedef struct delivery {
    int done;
    rd_kafka_resp_err_t err;
} delivery_t;

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    delivery_t *d = m->_private;
    d->done = 1;
    d->err = m->err;
}

rd_kafka_t *relay_producer_wait(const conf_t *c, char *errstr, size_t errstr_size) {
    static const char *const settings[] = {"linger.ms", "2", NULL};
    instruments_init_relay(c);
    return kafka_producer_wait(c, dr_msg_cb, settings, errstr, errstr_size);
}

/* Queues outbox row i of rows with d as its delivery state; a row librdkafka refuses at once is done with
 * that error. */
static void relay_produce(rd_kafka_t *producer, PGresult *rows, int i, delivery_t *d) {
    const char *key = PQgetvalue(rows, i, 2);
    const char *payload = PQgetvalue(rows, i, 3);
    rd_kafka_resp_err_t err;
    for (;;) {
        /* Every outbox row (event, result, mail job) is a CloudEvent in structured mode: the CloudEvents
         * Kafka binding marks it by this header. The headers go with the message once it is queued. */
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, EVENT_CONTENT_TYPE_HEADER, -1, EVENT_CONTENT_TYPE, -1);
        err = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(PQgetvalue(rows, i, 1)),
                                RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE((void *)payload, (size_t)PQgetlength(rows, i, 3)),
                                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
        if (err)
            rd_kafka_headers_destroy(h);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(producer, 10); /* the local queue is full: let deliveries drain it */
    }
    if (err) {
        d->done = 1;
        d->err = err;
    }
}

/* Waits for every delivery report of d[0..n) (librdkafka retries internally up to message.timeout.ms).
 * After a fatal error the rest is purged, which reports them as failed: d[] is not freed under librdkafka.
 * 1 after a fatal error (errstr), else 0. */
static int relay_wait_deliveries(rd_kafka_t *producer, const delivery_t *d, int n, char *errstr,
                                 size_t errstr_size) {
    int fatal = 0;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < n; i++)
            pending += !d[i].done;
        if (!pending)
            return fatal;
        rd_kafka_poll(producer, 50);
        health_beat(); /* waiting for Kafka's acknowledgements (up to message.timeout.ms) is alive */
        char why[256];
        if (!fatal && rd_kafka_fatal_error(producer, why, sizeof(why))) {
            snprintf(errstr, errstr_size, "fatal producer error: %s", why);
            fatal = 1;
            rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        }
    }
}

/* Deletes the rows Kafka acknowledged (d[i].err 0) and counts them as published; the others stay for the
 * next round. *published gets how many were deleted. -1 with errstr when the delete fails. */
static int relay_delete_delivered(PGconn *db, PGresult *rows, const delivery_t *d, int n, size_t *published,
                                  char *errstr, size_t errstr_size) {
    const char **delivered = xcalloc((size_t)n, sizeof(*delivered));
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (d[i].err) {
            log_warn(NULL, "outbox row %s to %s not delivered (%s): kept for the next round",
                     PQgetvalue(rows, i, 0), PQgetvalue(rows, i, 1), rd_kafka_err2str(d[i].err));
            continue;
        }
        delivered[k++] = PQgetvalue(rows, i, 0);
    }
    int rc = 0;
    if (k) {
        char *ids = db_array_literal(delivered, k);
        const char *pd[1] = {ids};
        PGresult *del = db_exec_cached(db, SQL_DELETE, 1, pd, errstr, errstr_size);
        free(ids);
        if (del) {
            PQclear(del);
            *published = k;
            for (int i = 0; i < n; i++)
                if (!d[i].err)
                    instruments_published(PQgetvalue(rows, i, 1), 1);
        } else {
            rc = -1;
        }
    }
    free(delivered);
    return rc;
}

int relay_round(PGconn *db, rd_kafka_t *producer, long limit, size_t *published, char *errstr,
                size_t errstr_size) {
    char lim[24];
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[1] = {lim};
    *published = 0;
    PGresult *rows = db_exec_cached(db, SQL_PENDING, 1, p, errstr, errstr_size);
    if (!rows)
        return -1;
    int n = PQntuples(rows);
    delivery_t *d = xcalloc((size_t)n, sizeof(*d));
    for (int i = 0; i < n; i++)
        relay_produce(producer, rows, i, &d[i]);
    int fatal = relay_wait_deliveries(producer, d, n, errstr, errstr_size);
    int rc = relay_delete_delivered(db, rows, d, n, published, errstr, errstr_size);
    if (rc == 0) {
        instruments_outbox_backlog(db);
        rc = fatal ? -1 : 0;
    }
    free(d);
    PQclear(rows);
    return rc;
}
