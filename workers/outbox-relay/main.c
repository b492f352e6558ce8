/* raikoo-outbox-relay: publishes the outbox to Kafka (events, results, mail jobs). One relay is active at
 * a time, holding a PostgreSQL advisory lock; the others stand by to take over. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>

#include "conf.h"
#include "db.h"
#include "exitstatus.h"
#include "health.h"
#include "kafka.h"
#include "log.h"
#include "notify.h"
#include "relay.h"
#include "worker.h"

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

/* Publishes the outbox while this relay holds the advisory lock, standing by while another does, until
 * worker_running() says stop. Returns the exit status. */
static int run(const conf_t *c) {
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

int main(int argc, char **argv) {
    conf_t *c = conf_new();
    if (worker_init(
            &argc, argv, c, "outbox-relay",
            "Publishes outbox rows to Kafka with an idempotent producer and deletes those delivered.\n"
            "Run two for fail-over: one is active (advisory lock), the other stands by.") != 0) {
        conf_free(c);
        return worker_exit_status();
    }
    health_require(HEALTH_POSTGRESQL | HEALTH_KAFKA); /* what /readyz waits for */
    int rc = run(c);
    conf_free(c);
    return rc;
}
