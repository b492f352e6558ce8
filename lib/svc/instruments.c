/* The services' metric families (see instruments.h). */
#include "instruments.h"

#include <stdlib.h>

#include "db.h"
#include "log.h"
#include "metrics.h"

static metric_t *commands_total(void) {
    return metric_counter(
        "raikoo_commands_total",
        "commands decided, by type, outcome (accepted, rejected, duplicate, dead_letter) and result code",
        METRIC_LABELS("type", "outcome", "code"));
}

static metric_t *batch_size(void) {
    return metric_histogram("raikoo_command_batch_size", "commands per batch applied in one transaction",
                            NULL, METRIC_SIZE_BUCKETS, METRIC_SIZE_BUCKETS_N);
}

static metric_t *batch_duration(void) {
    return metric_histogram("raikoo_command_batch_duration_seconds",
                            "time to apply a batch in PostgreSQL, from parsing to commit", NULL,
                            METRIC_SECONDS_BUCKETS, METRIC_SECONDS_BUCKETS_N);
}

static metric_t *published_total(void) {
    return metric_counter("raikoo_outbox_published_total",
                          "outbox rows the relay published (acknowledged by Kafka) and deleted, by topic",
                          METRIC_LABELS("topic"));
}

static metric_t *backlog_rows(void) {
    return metric_gauge("raikoo_outbox_backlog_rows", "rows in the outbox waiting to be published", NULL);
}

static metric_t *oldest_age(void) {
    return metric_gauge("raikoo_outbox_oldest_age_seconds",
                        "age of the oldest row in the outbox (0 when it is empty)", NULL);
}

static metric_t *deliveries_total(void) {
    return metric_counter(
        "raikoo_mail_deliveries_total",
        "mail job outcomes recorded, by state (sent, retrying, failed; held: waiting for an "
        "unreachable SMTP server)",
        METRIC_LABELS("state"));
}

static metric_t *expired_total(void) {
    return metric_counter("raikoo_invitations_expired_total",
                          "pending invitations this process marked expired", NULL);
}

void instruments_init_commands(void) {
    metric_touch(commands_total(), METRIC_LABELS("unknown", "dead_letter", ""));
    batch_size();
    batch_duration();
}

void instruments_init_relay(const conf_t *c) {
    static const char *const topics[] = {"topic.events", "topic.results", "topic.mail"};
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
        metric_touch(published_total(), METRIC_LABELS(conf_get(c, topics[i])));
}

void instruments_init_mail(void) {
    static const char *const states[] = {"sent", "retrying", "failed", "held"};
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        metric_touch(deliveries_total(), METRIC_LABELS(states[i]));
}

void instruments_init_expiry(void) {
    expired_total();
}

void instruments_batch(const cmdproc_msg_t *msgs, const cmd_t *cmds, size_t n, double started) {
    metric_t *commands = commands_total();
    for (size_t i = 0; i < n; i++) {
        const char *outcome = msgs[i].outcome ? msgs[i].outcome : "unknown";
        const char *type = !msgs[i].dead_letter && cmds[i].type_name ? cmds[i].type_name : "unknown";
        metric_add(commands, METRIC_LABELS(type, outcome, msgs[i].code ? msgs[i].code : ""), 1);
    }
    metric_observe(batch_size(), NULL, (double)n);
    metric_observe(batch_duration(), NULL, metrics_now() - started);
}

void instruments_published(const char *topic, size_t n) {
    metric_add(published_total(), METRIC_LABELS(topic), (double)n);
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
    metric_set(backlog_rows(), NULL, strtod(PQgetvalue(r, 0, 0), NULL));
    metric_set(oldest_age(), NULL, strtod(PQgetvalue(r, 0, 1), NULL));
    PQclear(r);
}

void instruments_outbox_known(size_t rows, double oldest_s) {
    if (!metrics_enabled())
        return;
    metric_set(backlog_rows(), NULL, (double)rows);
    metric_set(oldest_age(), NULL, oldest_s > 0 ? oldest_s : 0);
}

void instruments_mail_outcome(const char *status, int held) {
    metric_add(deliveries_total(), METRIC_LABELS(held ? "held" : status), 1);
}

void instruments_expired(int n) {
    metric_add(expired_total(), NULL, n);
}
