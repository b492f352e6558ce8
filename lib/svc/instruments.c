/* The services' metric families (see instruments.h). */
#include "instruments.h"

#include <stdlib.h>

#include "db.h"
#include "log.h"
#include "metrics.h"

void instruments_batch(const cmdproc_msg_t *msgs, const cmd_t *cmds, size_t n, double started) {
    metric_t *commands = metric_counter(
        "raikoo_commands_total",
        "commands decided, by type, outcome (accepted, rejected, duplicate, dead_letter) and result code",
        METRIC_LABELS("type", "outcome", "code"));
    for (size_t i = 0; i < n; i++) {
        const char *outcome = msgs[i].outcome ? msgs[i].outcome : "unknown";
        const char *type = !msgs[i].dead_letter && cmds[i].type_name ? cmds[i].type_name : "unknown";
        metric_add(commands, METRIC_LABELS(type, outcome, msgs[i].code ? msgs[i].code : ""), 1);
    }
    metric_observe(metric_histogram("raikoo_command_batch_size",
                                    "commands per batch applied in one transaction", NULL,
                                    METRIC_SIZE_BUCKETS, METRIC_SIZE_BUCKETS_N),
                   NULL, (double)n);
    metric_observe(metric_histogram("raikoo_command_batch_duration_seconds",
                                    "time to apply a batch in PostgreSQL, from parsing to commit", NULL,
                                    METRIC_SECONDS_BUCKETS, METRIC_SECONDS_BUCKETS_N),
                   NULL, metrics_now() - started);
}

void instruments_published(const char *topic, size_t n) {
    metric_add(metric_counter("raikoo_outbox_published_total",
                              "outbox rows the relay published (acknowledged by Kafka) and deleted, by topic",
                              METRIC_LABELS("topic")),
               METRIC_LABELS(topic), (double)n);
}

void instruments_outbox_backlog(PGconn *db) {
    static double last;
    if (!metrics_enabled() || (last > 0 && metrics_now() - last < 1.0))
        return;
    last = metrics_now();
    char err[256];
    PGresult *r = db_exec_cached(
        db, "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM outbox",
        0, NULL, err, sizeof(err));
    if (!r) {
        log_debug(NULL, "outbox backlog: %s", err);
        return;
    }
    metric_set(metric_gauge("raikoo_outbox_backlog_rows", "rows in the outbox waiting to be published", NULL),
               NULL, strtod(PQgetvalue(r, 0, 0), NULL));
    metric_set(metric_gauge("raikoo_outbox_oldest_age_seconds",
                            "age of the oldest row in the outbox (0 when it is empty)", NULL),
               NULL, strtod(PQgetvalue(r, 0, 1), NULL));
    PQclear(r);
}

void instruments_mail_outcome(const char *status, int held) {
    metric_add(
        metric_counter("raikoo_mail_deliveries_total",
                       "mail job outcomes recorded, by state (sent, retrying, failed; held: waiting for "
                       "an unreachable SMTP server)",
                       METRIC_LABELS("state")),
        METRIC_LABELS(held ? "held" : status), 1);
}

void instruments_expired(int n) {
    metric_add(metric_counter("raikoo_invitations_expired_total",
                              "pending invitations this process marked expired", NULL),
               NULL, n);
}
