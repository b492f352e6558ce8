/* The outbox relay's round: publish outbox rows with an idempotent producer, delete exactly those
 * Kafka acknowledged. */
#include "relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "db.h"
#include "exitstatus.h"
#include "event.h"
#include "health.h"
#include "instruments.h"
#include "kafka.h"
#include "log.h"
#include "notify.h"
#include "text.h"
#include "worker.h"

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
        /* A flush sends what lingers at once (it ignores linger.ms: the round is all queued by now) and
         * serves the delivery reports. */
        rd_kafka_flush(producer, 50);
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

/* ---- The worker ---- */

/* The advisory lock the active relay holds: any constant of our own. */
#define RELAY_LOCK_KEY "7238017741"

/* Waits for a NOTIFY on db's socket, at most ms milliseconds; drains the notifications. */
static void wait_notify(PGconn *db, long ms) {
    int64_t end = worker_now_ms() + ms;
    while (worker_running()) {
        PQconsumeInput(db);
        PGnotify *n;
        int got = 0;
        while ((n = PQnotifies(db)) != NULL) {
            got = 1;
            PQfreemem(n);
        }
        if (got)
            return;
        int64_t left = end - worker_now_ms();
        if (left <= 0)
            return;
        int fd = PQsocket(db);
        if (fd < 0)
            return;
        /* Short slices so that a shutdown request is seen promptly. */
        struct timeval tv = {0, (left > 200 ? 200 : left) * 1000};
        fd_set rfds;
        FD_ZERO(&rfds);
        FD_SET(fd, &rfds);
        if (select(fd + 1, &rfds, NULL, NULL, &tv) < 0 && errno != EINTR)
            return;
    }
}

/* Takes the advisory lock, waiting as a standby until the active relay goes. 0 once held. */
static int become_active(PGconn *db) {
    int logged = 0;
    char err[512];
    while (worker_running()) {
        PGresult *res =
            db_exec(db, "SELECT pg_try_advisory_lock(" RELAY_LOCK_KEY ")", 0, NULL, err, sizeof(err));
        if (!res) {
            log_error(NULL, "advisory lock: %s", err);
            return -1;
        }
        int held = PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (held) {
            log_info(NULL, "active: publishing the outbox");
            return 0;
        }
        if (!logged) {
            log_info(NULL, "standing by: another relay is active");
            logged = 1;
        }
        worker_sleep_ms(1000);
    }
    return -1;
}

/* Active: publishes rounds of the outbox while the connection holds (between rounds, waits for a NOTIFY
 * or poll_ms). -1 on a fatal producer error (logged), else 0 when the connection went or stop is asked. */
static int publish(PGconn *db, rd_kafka_t *producer, long limit, long poll_ms) {
    char err[1024];
    while (worker_running() && PQstatus(db) == CONNECTION_OK) {
        size_t published = 0;
        if (relay_round(db, producer, limit, &published, err, sizeof(err)) != 0) {
            log_error(NULL, "relay round: %s", err);
            if (strncmp(err, "fatal producer error", 20) == 0)
                return -1;
            worker_sleep_ms(500);
            continue;
        }
        if (published > 0)
            log_debug(NULL, "published %zu outbox row(s)", published);
        if (published < (size_t)limit)
            wait_notify(db, poll_ms);
    }
    return 0;
}

int relay_run(const conf_t *c) {
    int rc = EXIT_INFRA;
    char err[1024];
    PGconn *db = NULL;
    rd_kafka_t *producer = NULL;
    long limit, poll_ms;
    if (conf_get_long(c, "relay.batch", 1, 100000, &limit, err, sizeof(err)) != 0 ||
        conf_get_long(c, "relay.poll.ms", 10, 600000, &poll_ms, err, sizeof(err)) != 0)
        return worker_misconfigured(err);
    if (!(db = db_connect_wait(c, err, sizeof(err))) ||           /* waits while PostgreSQL is down */
        !(producer = relay_producer_wait(c, err, sizeof(err)))) { /* waits while Kafka is down */
        rc = worker_gave_up(err);
        goto done;
    }
    notify_ready("relaying the outbox"); /* systemd (Type=notify): connected to PostgreSQL and Kafka */
    while (worker_running()) {
        /* After a lost connection the lock went with the old session: another relay may be active now. */
        if (!db_alive(db)) { /* PostgreSQL away: logged once, bounded backoff */
            db_wait();
            continue;
        }
        if (become_active(db) != 0)
            continue;
        if (db_cmd(db, "LISTEN raikoo_outbox", err, sizeof(err)) != 0) {
            log_error(NULL, "LISTEN: %s", err);
            continue;
        }
        /* The relay's DELETE of delivered rows need not wait for its WAL flush: should PostgreSQL crash
         * before the flush, those rows come back and are published again, the same at-least-once window as
         * a relay killed between Kafka's acknowledgement and its DELETE (consumers drop a CloudEvent id they
         * have seen). It takes an fsync off every round's path, hence off every result's latency. */
        if (db_cmd(db, "SET synchronous_commit = off", err, sizeof(err)) != 0) {
            log_error(NULL, "SET synchronous_commit: %s", err);
            continue;
        }
        /* Every statement of the relay reads the outbox by its primary key. The outbox is a queue: most of
         * its pages hold rows already deleted, and after autovacuum the statistics say it is nearly empty,
         * so the planner prefers reading the whole table and sorting it (tens of milliseconds a round on a
         * table bloated by a burst, measured) to the index (under a millisecond). */
        if (db_cmd(db, "SET enable_seqscan = off", err, sizeof(err)) != 0) {
            log_error(NULL, "SET enable_seqscan: %s", err);
            continue;
        }
        if (publish(db, producer, limit, poll_ms) != 0)
            goto done; /* the idempotent producer cannot go on; a restart makes a new one */
    }
    rc = EXIT_OK;
    log_info(NULL, "shutting down");
done:
    if (producer) {
        rd_kafka_flush(producer, 10000);
        rd_kafka_destroy(producer);
    }
    PQfinish(db); /* releases the advisory lock: a standby takes over */
    return rc;
}
