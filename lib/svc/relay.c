/* The outbox relay: publishes outbox rows with an idempotent producer (reads, acknowledgements and deletes
 * overlapping), deletes exactly those Kafka acknowledged. */
#include "relay.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <fcntl.h>
#include <unistd.h>

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

/* The oldest rows not in flight with ids from $3 to $4. A read covers the ids the notifications since the
 * last read named (each insert into the outbox notifies "first last": schemas/sql/013), so that it starts
 * where the new rows are: a read from the index's start passed every row in flight, every row deleted since
 * the last vacuum, and every row of a batch not yet committed, 12 ms a read under load (docs/BENCHMARKS.md).
 * A full read (1 to the largest bigint) runs at the start of a session, on a notification it cannot parse,
 * after a failed delivery and every relay.poll.ms: it finds rows wherever they are (a transaction that took
 * an id before others commits after them; no "id > last" cursor). An anti join (a merge with the sorted
 * ids), not "id <> ALL($2)": with 1,000 rows in flight that compares every row read with every id, 22 ms a
 * read against 6 (measured with psql, most of the 6 the rows returned). */
static const char SQL_PENDING[] =
    "SELECT o.id, o.topic, o.key, o.payload, extract(epoch FROM now() - o.created_at)::float8 FROM outbox o"
    " WHERE o.id BETWEEN $3::bigint AND $4::bigint"
    "   AND NOT EXISTS (SELECT 1 FROM unnest($2::bigint[]) AS f(id) WHERE f.id = o.id)"
    " ORDER BY o.id LIMIT $1";
static const char SQL_DELETE[] = "DELETE FROM outbox WHERE id = ANY($1::bigint[])";

/* One outbox row produced and not yet deleted, reached from its delivery report through the message's
 * opaque. */
typedef struct relay_msg {
    char id[24];    /* outbox.id, as text */
    long long idn;  /* the same as a number */
    char *topic;    /* owned */
    double created; /* outbox.created_at on worker_now_ms()'s clock, in seconds (the age the database gave) */
    int done;       /* the delivery report came (or librdkafka refused the message at once) */
    rd_kafka_resp_err_t err;
} relay_msg_t;

/* What the next read covers: the ids from lo to hi (a full read: 1 to LLONG_MAX). */
typedef struct relay_read {
    int want;         /* a read is due */
    long long lo, hi; /* its range */
    int failed;       /* a delivery failed: the next notification (or poll) reads everything */
    int64_t full_at;  /* when the last full read was asked for */
} relay_read_t;

/* The rows in flight, in the order produced. Kept across reconnections: their reports still come. */
typedef struct relay {
    relay_msg_t **m;
    size_t n, cap;
    long limit; /* relay.batch: most rows in flight at once */
} relay_t;

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    relay_msg_t *r = m->_private;
    r->done = 1;
    r->err = m->err;
}

rd_kafka_t *relay_producer_wait(const conf_t *c, char *errstr, size_t errstr_size) {
    /* No linger: the relay queues what it read at once and then waits for reports, never for more rows;
     * while requests are in flight the next rows batch up by themselves. */
    static const char *const settings[] = {"linger.ms", "0", NULL};
    instruments_init_relay(c);
    return kafka_producer_wait(c, dr_msg_cb, settings, errstr, errstr_size);
}

/* Queues outbox row i of rows as r; a row librdkafka refuses at once is done with that error. */
static void relay_produce(rd_kafka_t *producer, PGresult *rows, int i, relay_msg_t *r) {
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
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), /* rows is cleared at once */
                                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(r), RD_KAFKA_V_END);
        if (err)
            rd_kafka_headers_destroy(h);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(producer, 10); /* the local queue is full: let deliveries drain it */
    }
    if (err) {
        r->done = 1;
        r->err = err;
    }
}

/* The ids in flight from lo to hi as a bigint array literal (malloc'd): the read's anti join needs no
 * others. */
static char *inflight_ids(const relay_t *rl, long long lo, long long hi) {
    const char **ids = xcalloc(rl->n + 1, sizeof(*ids));
    size_t n = 0;
    for (size_t i = 0; i < rl->n; i++)
        if (rl->m[i]->idn >= lo && rl->m[i]->idn <= hi)
            ids[n++] = rl->m[i]->id;
    char *lit = db_array_literal(ids, n);
    free(ids);
    return lit;
}

/* Produces the rows a read returned (each in flight from now on). */
static void relay_take_rows(rd_kafka_t *producer, relay_t *rl, PGresult *rows) {
    int got = PQntuples(rows);
    rl->m = xgrow(rl->m, rl->n + (size_t)got, &rl->cap, sizeof(*rl->m), 256);
    for (int i = 0; i < got; i++) {
        relay_msg_t *r = xcalloc(1, sizeof(*r));
        snprintf(r->id, sizeof(r->id), "%s", PQgetvalue(rows, i, 0));
        r->idn = strtoll(r->id, NULL, 10);
        r->topic = xstrdup(PQgetvalue(rows, i, 1));
        r->created = (double)worker_now_ms() / 1000.0 - strtod(PQgetvalue(rows, i, 4), NULL);
        rl->m[rl->n++] = r;
        relay_produce(producer, rows, i, r);
    }
}

/* The rows whose report came, taken out of the flight (relay_settled). */
typedef struct settled {
    relay_msg_t **m;
    size_t n;
    char *delivered; /* the ids Kafka acknowledged, as a bigint array literal; NULL when none */
    size_t failed;   /* rows whose delivery failed: they stay in the outbox */
} settled_t;

/* Takes the rows whose report came out of the flight into *s: those Kafka acknowledged are to be deleted
 * (s->delivered); those that failed stay in the outbox and are read again. */
static void relay_settled(relay_t *rl, settled_t *s) {
    s->m = xcalloc(rl->n + 1, sizeof(*s->m));
    const char **delivered = xcalloc(rl->n + 1, sizeof(*delivered));
    size_t nd = 0, j = 0;
    s->n = 0;
    s->failed = 0;
    for (size_t i = 0; i < rl->n; i++) {
        relay_msg_t *r = rl->m[i];
        if (!r->done) {
            rl->m[j++] = r;
            continue;
        }
        s->m[s->n++] = r;
        if (r->err) {
            log_warn(NULL, "outbox row %s to %s not delivered (%s): kept in the outbox, produced again",
                     r->id, r->topic, rd_kafka_err2str(r->err));
            s->failed++;
        } else
            delivered[nd++] = r->id;
    }
    rl->n = j;
    s->delivered = nd ? db_array_literal(delivered, nd) : NULL;
    free(delivered);
}

/* Frees what relay_settled took; when deleted, counts the acknowledged rows as published. Returns how
 * many that was. */
static size_t settled_free(settled_t *s, int deleted) {
    size_t published = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (deleted && !s->m[i]->err) {
            instruments_published(s->m[i]->topic, 1);
            published++;
        }
        free(s->m[i]->topic);
        free(s->m[i]);
    }
    free(s->m);
    free(s->delivered);
    return published;
}

/* One round trip of a tick: deletes the rows of s Kafka acknowledged and, when ask > 0, reads up to ask of
 * the oldest rows not in flight in rd's range and produces them (*got: how many). -1 with errstr when
 * either fails (the rows acknowledged are then published again later: at least once). */
static int relay_tick(PGconn *db, rd_kafka_t *producer, relay_t *rl, settled_t *s, const relay_read_t *rd,
                      long ask, int *got, char *errstr, size_t errstr_size) {
    db_stmt_t st[2];
    size_t n = 0, read_at = 2;
    const char *pd[1] = {s->delivered};
    if (s->delivered)
        st[n++] = (db_stmt_t){.sql = SQL_DELETE, .nparams = 1, .params = pd};
    char lim[24], lo[24], hi[24], *ids = NULL;
    const char *pr[4] = {lim, NULL, lo, hi};
    if (ask > 0) {
        snprintf(lim, sizeof(lim), "%ld", ask);
        snprintf(lo, sizeof(lo), "%lld", rd->lo);
        snprintf(hi, sizeof(hi), "%lld", rd->hi);
        pr[1] = ids = inflight_ids(rl, rd->lo, rd->hi);
        read_at = n;
        st[n++] = (db_stmt_t){.sql = SQL_PENDING, .nparams = 4, .params = pr};
    }
    *got = 0;
    int rc = n ? db_pipeline(db, st, n, errstr, errstr_size) : 0;
    free(ids);
    if (rc == 0 && read_at < n) {
        *got = PQntuples(st[read_at].result);
        relay_take_rows(producer, rl, st[read_at].result);
        PQclear(st[read_at].result);
    }
    return rc;
}

/* After a fatal producer error: purges what is queued and in flight (each then reports a failure) and
 * serves those reports, so that no relay_msg_t is left under librdkafka. */
static void relay_purge(rd_kafka_t *producer, relay_t *rl) {
    rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    for (int tries = 0; tries < 100; tries++) {
        size_t open = 0;
        for (size_t i = 0; i < rl->n; i++)
            open += !rl->m[i]->done;
        if (!open)
            break;
        rd_kafka_poll(producer, 50);
    }
}

/* ---- The worker ---- */

/* The advisory lock the active relay holds: any constant of our own. */
#define RELAY_LOCK_KEY "7238017741"

/* Asks for a read of the ids from lo to hi, together with any read already asked for. */
static void want_read(relay_read_t *rd, long long lo, long long hi) {
    if (!rd->want || lo < rd->lo)
        rd->lo = lo;
    if (!rd->want || hi > rd->hi)
        rd->hi = hi;
    rd->want = 1;
}

/* Asks for a full read (every row not in flight), noting when. */
static void want_full_read(relay_read_t *rd) {
    want_read(rd, 1, LLONG_MAX);
    rd->failed = 0;
    rd->full_at = worker_now_ms();
}

/* Drains the NOTIFYs that came on db's connection, asking for a read of the ids each names ("first last",
 * schemas/sql/013), or for a full read when one names none it can parse, or when a delivery failed since
 * the last full read (the row is read again with the next notification, as it always was). */
static void notified(PGconn *db, relay_read_t *rd) {
    PQconsumeInput(db);
    PGnotify *n;
    int got = 0;
    while ((n = PQnotifies(db)) != NULL) {
        char *end;
        errno = 0;
        long long lo = strtoll(n->extra, &end, 10), hi = 0;
        int ok = errno == 0 && end != n->extra && *end == ' ';
        if (ok) {
            const char *p = end + 1;
            hi = strtoll(p, &end, 10);
            ok = errno == 0 && end != p && *end == '\0' && lo >= 1 && lo <= hi;
        }
        if (ok)
            want_read(rd, lo, hi);
        else
            want_full_read(rd);
        got = 1;
        PQfreemem(n);
    }
    if (got && rd->failed)
        want_full_read(rd);
}

/* Waits at most ms (in slices of 200 ms, so that a shutdown request is seen promptly) until db's socket
 * or wake_fd (written by librdkafka when a delivery report is queued; -1: none) is readable; empties
 * wake_fd. */
static void wait_io(PGconn *db, int wake_fd, int64_t ms) {
    int fd = PQsocket(db);
    if (fd < 0 || ms <= 0)
        return;
    struct timeval tv = {0, (ms > 200 ? 200 : ms) * 1000};
    fd_set rfds;
    FD_ZERO(&rfds);
    FD_SET(fd, &rfds);
    if (wake_fd >= 0)
        FD_SET(wake_fd, &rfds);
    if (select((fd > wake_fd ? fd : wake_fd) + 1, &rfds, NULL, NULL, &tv) > 0 && wake_fd >= 0 &&
        FD_ISSET(wake_fd, &rfds)) {
        char buf[64];
        while (read(wake_fd, buf, sizeof(buf)) > 0)
            ;
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

/* The backlog gauges: known without a query while every row in the outbox is one in flight (the last read
 * found fewer rows than it asked for: !more), asked of the database (at most once a second) otherwise. */
static void relay_gauges(PGconn *db, const relay_t *rl, int more) {
    if (more) {
        instruments_outbox_backlog(db);
        return;
    }
    double oldest = 0;
    for (size_t i = 0; i < rl->n; i++)
        if (i == 0 || rl->m[i]->created < oldest)
            oldest = rl->m[i]->created;
    instruments_outbox_known(rl->n, rl->n ? (double)worker_now_ms() / 1000.0 - oldest : 0);
}

/* The least time between two rounds of deletes and reads while rows are in flight. */
#define RELAY_TICK_MS 5

/* Active: publishes the outbox while the connection holds. Reading, producing, acknowledgements and
 * deletes overlap: rows are read (up to rl->limit in flight) whenever a NOTIFY came (the ids it names), the
 * last read was full (on from its last row), a delivery failed (with the next NOTIFY) or poll_ms passed
 * since the last full read (everything), and the rows Kafka acknowledged are deleted as their reports
 * come, while later rows are on their way. -1 on a fatal producer error (logged), else 0 when the
 * connection went or stop is asked. */
static int publish(PGconn *db, rd_kafka_t *producer, relay_t *rl, int wake_fd, long poll_ms) {
    char err[1024];
    relay_read_t rd = {0};
    want_full_read(&rd); /* notifications sent while this session was not listening are lost */
    int64_t tick_at = 0;
    while (worker_running() && PQstatus(db) == CONNECTION_OK) {
        health_beat(); /* waiting for Kafka's acknowledgements (up to message.timeout.ms) is alive */
        /* While rows are in flight the relay works in ticks of RELAY_TICK_MS: one DELETE of what Kafka
         * acknowledged since the last tick, rather than one per delivery report. A NOTIFY ends the wait at
         * once: the rows it names are read now (a read of the ids named is cheap), not up to a tick later
         * (at 200 commands/s rows are nearly always in flight, and every result waited). */
        notified(db, &rd);
        int64_t since = worker_now_ms() - tick_at;
        if (rl->n > 0 && since < RELAY_TICK_MS && !(rd.want && rl->n < (size_t)rl->limit)) {
            wait_io(db, -1, RELAY_TICK_MS - since);
            notified(db, &rd);
        }
        tick_at = worker_now_ms();
        rd_kafka_poll(producer, 0); /* serves the delivery reports queued */
        char why[256];
        if (rd_kafka_fatal_error(producer, why, sizeof(why))) {
            log_error(NULL, "fatal producer error: %s", why);
            relay_purge(producer, rl);
            return -1;
        }
        /* A row whose delivery failed is read again with the next NOTIFY or after poll_ms, as it was
         * between rounds before: reading it again at once would retry (and log) a row Kafka keeps refusing
         * in a tight loop. */
        if (worker_now_ms() - rd.full_at >= poll_ms)
            want_full_read(&rd);
        settled_t s;
        relay_settled(rl, &s);
        rd.failed |= s.failed > 0;
        long ask = rd.want && rl->n < (size_t)rl->limit ? rl->limit - (long)rl->n : 0;
        int got = 0;
        int rc = relay_tick(db, producer, rl, &s, &rd, ask, &got, err, sizeof(err));
        size_t published = settled_free(&s, rc == 0);
        if (rc != 0) {
            log_error(NULL, "relay: %s", err);
            worker_sleep_ms(500);
            continue;
        }
        if (published > 0)
            log_debug(NULL, "published %zu outbox row(s)", published);
        if (ask > 0 && got == ask) /* a full read: more rows may be waiting, on from the last one */
            rd.lo = rl->m[rl->n - 1]->idn + 1;
        else if (ask > 0)
            rd.want = 0;
        relay_gauges(db, rl, rd.want || rd.failed);
        if (ask > 0 && got > 0)
            continue;
        wait_io(db, wake_fd,
                rd.want && rl->n < (size_t)rl->limit ? 0 : poll_ms - (worker_now_ms() - rd.full_at));
    }
    return 0;
}

/* Frees the rows in flight (after the producer is gone: no report can reach them any more). */
static void relay_free(relay_t *rl) {
    for (size_t i = 0; i < rl->n; i++) {
        free(rl->m[i]->topic);
        free(rl->m[i]);
    }
    free(rl->m);
}

/* A non-blocking pipe whose read end wakes the relay when librdkafka queues a delivery report on the
 * producer's main queue (q, kept for the end). -1 when none can be made. */
static int wake_pipe(rd_kafka_t *producer, int fds[2], rd_kafka_queue_t **q) {
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    *q = rd_kafka_queue_get_main(producer);
    rd_kafka_queue_io_event_enable(*q, fds[1], "1", 1);
    return 0;
}

/* Active as long as the session lasts; another session takes the lock again. 0 when stop was asked, -1
 * after a fatal producer error. */
static int relay_sessions(PGconn *db, rd_kafka_t *producer, relay_t *rl, int wake_fd, long poll_ms) {
    char err[1024];
    while (worker_running()) {
        /* After a lost connection the lock went with the old session: another relay may be active now. */
        if (!db_alive(db)) { /* PostgreSQL away: logged once, bounded backoff */
            db_wait();
            continue;
        }
        if (become_active(db) != 0)
            continue;
        /* The relay's DELETE of delivered rows need not wait for its WAL flush: should PostgreSQL crash
         * before the flush, those rows come back and are published again, the same at-least-once window as
         * a relay killed between Kafka's acknowledgement and its DELETE (consumers drop a CloudEvent id they
         * have seen). It takes an fsync off every result's latency.
         * Every statement of the relay reads the outbox by its primary key. The outbox is a queue: most of
         * its pages hold rows already deleted, and after autovacuum the statistics say it is nearly empty,
         * so the planner prefers reading the whole table and sorting it (tens of milliseconds a read on a
         * table bloated by a burst, measured) to the index (under a millisecond). */
        if (db_cmd(db, "LISTEN raikoo_outbox", err, sizeof(err)) != 0 ||
            db_cmd(db, "SET synchronous_commit = off", err, sizeof(err)) != 0 ||
            db_cmd(db, "SET enable_seqscan = off", err, sizeof(err)) != 0) {
            log_error(NULL, "relay session: %s", err);
            continue;
        }
        if (publish(db, producer, rl, wake_fd, poll_ms) != 0)
            return -1; /* the idempotent producer cannot go on; a restart makes a new one */
    }
    return 0;
}

int relay_run(const conf_t *c) {
    int rc = EXIT_INFRA;
    char err[1024];
    PGconn *db = NULL;
    rd_kafka_t *producer = NULL;
    rd_kafka_queue_t *mainq = NULL;
    int wake[2] = {-1, -1};
    relay_t rl = {0};
    long poll_ms;
    if (conf_get_long(c, "relay.batch", 1, 100000, &rl.limit, err, sizeof(err)) != 0 ||
        conf_get_long(c, "relay.poll.ms", 10, 600000, &poll_ms, err, sizeof(err)) != 0)
        return worker_misconfigured(err);
    if (!(db = db_connect_wait(c, err, sizeof(err))) ||           /* waits while PostgreSQL is down */
        !(producer = relay_producer_wait(c, err, sizeof(err)))) { /* waits while Kafka is down */
        rc = worker_gave_up(err);
        goto done;
    }
    if (wake_pipe(producer, wake, &mainq) != 0) {
        log_error(NULL, "pipe: %s", strerror(errno));
        goto done;
    }
    notify_ready("relaying the outbox"); /* systemd (Type=notify): connected to PostgreSQL and Kafka */
    if (relay_sessions(db, producer, &rl, wake[0], poll_ms) == 0) {
        rc = EXIT_OK;
        log_info(NULL, "shutting down");
    }
done:
    if (producer) {
        rd_kafka_flush(producer, 10000);                 /* the reports of the rows in flight */
        if (rl.n > 0 && PQstatus(db) == CONNECTION_OK) { /* deletes what was acknowledged */
            settled_t s;
            int got;
            relay_settled(&rl, &s);
            settled_free(&s, relay_tick(db, producer, &rl, &s, NULL, 0, &got, err, sizeof(err)) == 0);
        }
        if (mainq) {
            rd_kafka_queue_io_event_enable(mainq, -1, NULL, 0);
            rd_kafka_queue_destroy(mainq);
        }
        rd_kafka_destroy(producer);
    }
    relay_free(&rl);
    for (int i = 0; i < 2; i++)
        if (wake[i] >= 0)
            close(wake[i]);
    PQfinish(db); /* releases the advisory lock: a standby takes over */
    return rc;
}
