/* raikoo status: one screen for the operator. The lag of each consumer group (commands, mail) per topic, the
 * outbox backlog and the age of its oldest row, mail deliveries by state, invitations due to expire, and the
 * dead-letter topic's message count; --json prints the same as one object. Read only: it joins no group
 * (the committed offsets are fetched, not consumed) and writes nothing. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>

#include "cli.h"
#include "db.h"
#include "kafka.h"
#include "text.h"

#define KAFKA_TIMEOUT_MS 10000

static const char SQL_OUTBOX[] =
    "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM outbox";
static const char SQL_MAIL[] = "SELECT status, count(*) FROM mail_deliveries GROUP BY status ORDER BY status";
static const char SQL_EXPIRING[] =
    "SELECT count(*) FILTER (WHERE expires_at > now() AND expires_at <= now() + interval '24 hours'),"
    " count(*) FILTER (WHERE expires_at <= now()) FROM invitations WHERE status = 'pending'";

/* Every state a mail delivery can have (schemas/sql: mail_deliveries.status), shown even at zero. */
static const char *const MAIL_STATES[] = {"sending", "retrying", "sent", "failed", "superseded", NULL};

/* Adds an error to the report's list (and so to the exit status). */
static void add_error(json_t *errors, const char *what, const char *why) {
    char line[1024];
    text_printf(line, sizeof(line), "%s: %s", what, why);
    json_array_append_new(errors, json_string(line));
}

/* The PostgreSQL half: outbox, mail deliveries, invitations due. Sections it cannot read stay null. */
static void read_database(const conf_t *c, json_t *out, json_t *errors) {
    char err[1024];
    PGconn *db = db_connect_migrated(c, err, sizeof(err));
    if (!db) {
        add_error(errors, "PostgreSQL", err);
        return;
    }
    PGresult *r = db_exec(db, SQL_OUTBOX, 0, NULL, err, sizeof(err));
    if (r) {
        json_object_set_new(out, "outbox",
                            json_pack("{s:I, s:f}", "rows",
                                      (json_int_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10),
                                      "oldest_age_seconds", strtod(PQgetvalue(r, 0, 1), NULL)));
        PQclear(r);
    } else {
        add_error(errors, "outbox", err);
    }
    r = db_exec(db, SQL_MAIL, 0, NULL, err, sizeof(err));
    if (r) {
        json_t *mail = json_object();
        for (const char *const *s = MAIL_STATES; *s; s++)
            json_object_set_new(mail, *s, json_integer(0));
        for (int i = 0; i < PQntuples(r); i++)
            json_object_set_new(mail, PQgetvalue(r, i, 0),
                                json_integer(strtoll(PQgetvalue(r, i, 1), NULL, 10)));
        json_object_set_new(out, "mail_deliveries", mail);
        PQclear(r);
    } else {
        add_error(errors, "mail deliveries", err);
    }
    r = db_exec(db, SQL_EXPIRING, 0, NULL, err, sizeof(err));
    if (r) {
        json_object_set_new(out, "invitations",
                            json_pack("{s:I, s:I}", "expiring_within_24h",
                                      (json_int_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10), "past_expiry",
                                      (json_int_t)strtoll(PQgetvalue(r, 0, 1), NULL, 10)));
        PQclear(r);
    } else {
        add_error(errors, "invitations", err);
    }
    PQfinish(db);
}

/* The partition count of topic, or -1 with err. */
static int partition_count(rd_kafka_t *rk, const char *topic, char *err, size_t err_size) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = t ? rd_kafka_metadata(rk, 0, t, &md, KAFKA_TIMEOUT_MS) : rd_kafka_last_error();
    int n = -1;
    if (e) {
        text_printf(err, err_size, "metadata of %s: %s", topic, rd_kafka_err2str(e));
    } else if (md->topic_cnt != 1 || md->topics[0].err) {
        text_printf(
            err, err_size, "topic %s: %s (raikoo topics create makes it)", topic,
            rd_kafka_err2str(md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    } else {
        n = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    return n;
}

/* The group's committed offsets of parts, asking again for a while when the coordinator is settling (a
 * cluster just started, the offsets topic just created, a coordinator moving). */
static rd_kafka_resp_err_t committed_offsets(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    for (int tries = 0; tries < 20; tries++) {
        e = rd_kafka_committed(rk, parts, KAFKA_TIMEOUT_MS);
        if (e != RD_KAFKA_RESP_ERR_NOT_COORDINATOR && e != RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE &&
            e != RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS)
            break;
        rd_kafka_poll(rk, 250);
    }
    return e;
}

/* The lag of group on topic: per partition, the high watermark minus the group's committed offset (the low
 * watermark when the group has committed nothing there: it would start from the earliest). NULL with err. */
static json_t *group_lag(const conf_t *c, const char *group, const char *topic, char *err, size_t err_size) {
    rd_kafka_conf_t *kconf = kafka_conf_new(c, err, err_size);
    if (!kconf || kafka_conf_set(kconf, "group.id", group, err, err_size) != 0 ||
        kafka_conf_set(kconf, "enable.auto.commit", "false", err, err_size) != 0) {
        if (kconf)
            rd_kafka_conf_destroy(kconf);
        return NULL;
    }
    rd_kafka_t *rk = kafka_client_new(c, RD_KAFKA_CONSUMER, kconf, KAFKA_TIMEOUT_MS, err, err_size);
    if (!rk)
        return NULL;
    json_t *out = NULL;
    int n = partition_count(rk, topic, err, err_size);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p);
    rd_kafka_resp_err_t e = n < 0 ? RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC : committed_offsets(rk, parts);
    if (n >= 0 && e) {
        text_printf(err, err_size, "committed offsets of group %s: %s", group, rd_kafka_err2str(e));
    } else if (n >= 0) {
        json_t *by_part = json_array();
        json_int_t total = 0;
        for (int i = 0; i < parts->cnt && by_part; i++) {
            int64_t low = 0, high = 0;
            e = rd_kafka_query_watermark_offsets(rk, topic, parts->elems[i].partition, &low, &high,
                                                 KAFKA_TIMEOUT_MS);
            if (e) {
                text_printf(err, err_size, "watermarks of %s/%d: %s", topic, (int)parts->elems[i].partition,
                            rd_kafka_err2str(e));
                json_decref(by_part);
                by_part = NULL;
                break;
            }
            int64_t committed = parts->elems[i].offset >= 0 ? parts->elems[i].offset : -1;
            int64_t lag = high - (committed >= 0 ? committed : low);
            if (lag < 0)
                lag = 0;
            total += lag;
            json_array_append_new(by_part, json_pack("{s:i, s:o, s:I, s:I}", "partition",
                                                     (int)parts->elems[i].partition, "committed",
                                                     committed >= 0 ? json_integer(committed) : json_null(),
                                                     "high", (json_int_t)high, "lag", (json_int_t)lag));
        }
        if (by_part)
            out = json_pack("{s:s, s:s, s:i, s:I, s:o}", "group", group, "topic", topic, "partitions", n,
                            "lag", total, "by_partition", by_part);
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);
    return out;
}

/* Messages held by the dead-letter topic: the sum over its partitions of high minus low watermark. */
static json_t *dead_letters(const conf_t *c, const char *topic, char *err, size_t err_size) {
    rd_kafka_conf_t *kconf = kafka_conf_new(c, err, err_size);
    if (!kconf)
        return NULL;
    rd_kafka_t *rk = kafka_client_new(c, RD_KAFKA_PRODUCER, kconf, KAFKA_TIMEOUT_MS, err, err_size);
    if (!rk)
        return NULL;
    json_t *out = NULL;
    int n = partition_count(rk, topic, err, err_size);
    json_int_t total = 0;
    int ok = n >= 0;
    for (int p = 0; ok && p < n; p++) {
        int64_t low = 0, high = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high, KAFKA_TIMEOUT_MS);
        if (e) {
            text_printf(err, err_size, "watermarks of %s/%d: %s", topic, p, rd_kafka_err2str(e));
            ok = 0;
        }
        total += high - low;
    }
    if (ok)
        out = json_pack("{s:s, s:I}", "topic", topic, "messages", total);
    rd_kafka_destroy(rk);
    return out;
}

static void read_kafka(const conf_t *c, json_t *out, json_t *errors) {
    char err[1024];
    static const char *const groups[][2] = {{"group.commands", "topic.commands"},
                                            {"group.mail", "topic.mail"}};
    json_t *lags = json_array();
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        const char *group = conf_get(c, groups[i][0]), *topic = conf_get(c, groups[i][1]);
        json_t *g = group_lag(c, group, topic, err, sizeof(err));
        if (g) {
            json_array_append_new(lags, g);
        } else {
            char what[300];
            text_printf(what, sizeof(what), "consumer group %s", group);
            add_error(errors, what, err);
            /* Kafka unreachable: the other questions would each wait for it again. */
            if (strstr(err, "cannot reach Kafka"))
                break;
        }
    }
    json_object_set_new(out, "consumer_groups", lags);
    if (json_array_size(errors) &&
        strstr(json_string_value(json_array_get(errors, json_array_size(errors) - 1)), "cannot reach Kafka"))
        return;
    json_t *dl = dead_letters(c, conf_get(c, "topic.dlq"), err, sizeof(err));
    if (dl)
        json_object_set_new(out, "dead_letters", dl);
    else
        add_error(errors, "dead-letter topic", err);
}

static const char *age_text(double s, char *buf, size_t size) {
    if (s < 120)
        snprintf(buf, size, "%.1f s", s);
    else if (s < 7200)
        snprintf(buf, size, "%.1f min", s / 60);
    else
        snprintf(buf, size, "%.1f h", s / 3600);
    return buf;
}

static void print_text(const json_t *out) {
    printf("raikoo status at %s\n\n", json_string_value(json_object_get(out, "time")));
    json_t *groups = json_object_get(out, "consumer_groups");
    printf("Consumer groups (lag: messages not yet committed)\n");
    if (json_array_size(groups) == 0)
        printf("  (unavailable)\n");
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g) {
        printf("  %-28s %-24s %3d partitions  lag %lld\n", json_string_value(json_object_get(g, "group")),
               json_string_value(json_object_get(g, "topic")),
               (int)json_integer_value(json_object_get(g, "partitions")),
               (long long)json_integer_value(json_object_get(g, "lag")));
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(g, "by_partition"), k, p) {
            if (json_integer_value(json_object_get(p, "lag")) > 0)
                printf("      partition %d: lag %lld\n",
                       (int)json_integer_value(json_object_get(p, "partition")),
                       (long long)json_integer_value(json_object_get(p, "lag")));
        }
    }
    json_t *ob = json_object_get(out, "outbox");
    char age[64];
    if (ob)
        printf("\nOutbox: %lld row(s) waiting for the relay, oldest %s\n",
               (long long)json_integer_value(json_object_get(ob, "rows")),
               age_text(json_real_value(json_object_get(ob, "oldest_age_seconds")), age, sizeof(age)));
    else
        printf("\nOutbox: (unavailable)\n");
    json_t *mail = json_object_get(out, "mail_deliveries");
    printf("Mail deliveries:");
    if (!mail)
        printf(" (unavailable)");
    const char *state;
    json_t *count;
    const char *sep = " ";
    json_object_foreach(mail, state, count) {
        printf("%s%s %lld", sep, state, (long long)json_integer_value(count));
        sep = ", ";
    }
    printf("\n");
    json_t *inv = json_object_get(out, "invitations");
    if (inv)
        printf(
            "Invitations: %lld pending expire within 24 h; %lld past their expiry, not yet marked expired\n",
            (long long)json_integer_value(json_object_get(inv, "expiring_within_24h")),
            (long long)json_integer_value(json_object_get(inv, "past_expiry")));
    else
        printf("Invitations: (unavailable)\n");
    json_t *dl = json_object_get(out, "dead_letters");
    if (dl)
        printf("Dead-letter topic %s: %lld message(s)\n", json_string_value(json_object_get(dl, "topic")),
               (long long)json_integer_value(json_object_get(dl, "messages")));
    else
        printf("Dead-letter topic: (unavailable)\n");
}

int cmd_status(int argc, char **argv, conf_t *c) {
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int as_json = 0, o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o != 'j') {
            fprintf(stderr, "raikoo status: unknown option \"%s\"\n", argv[optind - 1]);
            return cli_usage(cli_find("status"), 1);
        }
        as_json = 1;
    }
    if (optind < argc) {
        fprintf(stderr, "raikoo status: unexpected argument \"%s\"\n", argv[optind]);
        return cli_usage(cli_find("status"), 1);
    }
    json_t *out = json_object(), *errors = json_array();
    char now[32];
    time_t t = time(NULL);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    json_object_set_new(out, "time", json_string(now));
    read_database(c, out, errors);
    read_kafka(c, out, errors);
    int rc = json_array_size(errors) ? EXIT_INFRA : EXIT_ACCEPTED;
    if (as_json) {
        json_object_set(out, "errors", errors);
        char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s ? s : "{}");
        free(s);
    } else {
        print_text(out);
    }
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) fprintf(stderr, "raikoo status: %s\n", json_string_value(e));
    json_decref(errors);
    json_decref(out);
    return rc;
}
