/* raikoo dlq: the dead-letter topic (topic.dlq) read from its beginning to the end it had when the command
 * started, listed (`dlq list`) or sent again to topic.commands (`dlq replay`). A replay sends the message as
 * it came (key, value, headers but the raikoo.dlq.* ones): the command worker's processed_commands makes it
 * idempotent by command id. The values are never printed (they may hold a code or a password hash). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "clock.h"
#include "kafka.h"
#include "redact.h"
#include "secret.h"
#include "text.h"

#define DLQ_TIMEOUT_MS 30000

/* One dead letter, as read. */
/* One dead letter, as read: copies (a consumer cannot be destroyed while its messages live). */
typedef struct dead {
    int32_t partition;
    int64_t offset, timestamp; /* timestamp: ms since the epoch, -1 when none */
    char *key, *payload;       /* owned; key NULL when none */
    size_t key_len, len;
    rd_kafka_headers_t *headers; /* owned copy; NULL when none */
    char command_id[UUID_BUF];
    char redacted[8]; /* "fields" or "whole" when secrets were blanked (lib/msg/redact.h), else "" */
} dead_t;

typedef struct dead_list {
    dead_t *d;
    size_t n, cap;
} dead_list_t;

static void dead_list_free(dead_list_t *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->d[i].key);
        free(l->d[i].payload);
        if (l->d[i].headers)
            rd_kafka_headers_destroy(l->d[i].headers);
    }
    free(l->d);
}

static void dead_copy(dead_t *d, const rd_kafka_message_t *m) {
    memset(d, 0, sizeof(*d));
    d->partition = m->partition;
    d->offset = m->offset;
    rd_kafka_timestamp_type_t tt;
    d->timestamp = rd_kafka_message_timestamp(m, &tt);
    if (m->key) {
        d->key = xmalloc(m->key_len ? m->key_len : 1);
        memcpy(d->key, m->key, m->key_len);
        d->key_len = m->key_len;
    }
    d->payload = xmalloc(m->len ? m->len : 1);
    if (m->payload)
        memcpy(d->payload, m->payload, m->len);
    d->len = m->payload ? m->len : 0;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h)
        d->headers = rd_kafka_headers_copy(h);
}

/* The value of header name of d as a terminated string in out ("" when absent or not text). */
static const char *header(const dead_t *d, const char *name, char *out, size_t size) {
    const void *v = NULL;
    size_t len = 0;
    out[0] = '\0';
    if (d->headers && rd_kafka_header_get_last(d->headers, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        v && utf8_valid(v, len) && !memchr(v, '\0', len))
        text_printf(out, size, "%.*s", (int)len, (const char *)v);
    return out;
}

/* The command id of a dead letter when it has one: its ce_id header (binary mode) or the "id" of its value. */
static void find_command_id(dead_t *d) {
    char v[128];
    d->command_id[0] = '\0';
    if (uuid_valid(header(d, "ce_id", v, sizeof(v)))) {
        text_printf(d->command_id, sizeof(d->command_id), "%s", v);
    } else {
        json_t *root = json_loadb(d->payload, d->len, 0, NULL);
        const char *id = root ? json_string_value(json_object_get(root, "id")) : NULL;
        if (id && uuid_valid(id))
            text_printf(d->command_id, sizeof(d->command_id), "%s", id);
        json_decref(root);
    }
    for (char *p = d->command_id; *p; p++) /* the canonical form, as results carry it */
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

/* Whether the worker blanked secrets of a dead letter: its raikoo.dlq.redacted header, or a value that is
 * the placeholder of one redacted whole. */
static void find_redaction(dead_t *d) {
    char v[16];
    header(d, "raikoo.dlq.redacted", v, sizeof(v));
    if (strcmp(v, "fields") == 0 || strcmp(v, "whole") == 0) {
        text_printf(d->redacted, sizeof(d->redacted), "%s", v);
        return;
    }
    d->redacted[0] = '\0';
    json_t *root = json_loadb(d->payload, d->len, 0, NULL);
    if (root && json_object_size(root) == 1 && json_object_get(root, REDACT_WHOLE_KEY))
        text_printf(d->redacted, sizeof(d->redacted), "whole");
    json_decref(root);
}

/* RFC 3339 UTC with milliseconds of a Kafka timestamp (ms since the epoch); "" when there is none. */
static void ms_time(int64_t ms, char *out, size_t size) {
    out[0] = '\0';
    if (ms < 0)
        return;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return;
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03dZ", base, (int)(ms % 1000));
}

/* A consumer that joins no group (its partitions are assigned), for read_topic. NULL with errstr set. */
static rd_kafka_t *reader_new(const conf_t *c, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kconf = kafka_conf_new(c, errstr, errstr_size);
    if (!kconf)
        return NULL;
    /* No group is joined (the partitions are assigned): group.id is only librdkafka's requirement. */
    if (kafka_conf_set(kconf, "group.id", "raikoo-dlq-reader", errstr, errstr_size) != 0 ||
        kafka_conf_set(kconf, "enable.auto.commit", "false", errstr, errstr_size) != 0 ||
        kafka_conf_set(kconf, "enable.auto.offset.store", "false", errstr, errstr_size) != 0 ||
        kafka_conf_set(kconf, "enable.partition.eof", "true", errstr, errstr_size) != 0) {
        rd_kafka_conf_destroy(kconf);
        return NULL;
    }
    rd_kafka_t *rk = kafka_client_new(c, RD_KAFKA_CONSUMER, kconf, 10000, errstr, errstr_size);
    if (rk)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Where read_topic stands: per partition, the high watermark at the start and whether it is read. */
typedef struct reading {
    int np, left;
    int64_t *high;
    int *done;
} reading_t;

/* Assigns every partition of topic from its low watermark, noting the high ones in *r. 0, or -1 with
 * errstr set. */
static int assign_from_low(rd_kafka_t *rk, const char *topic, reading_t *r, char *errstr,
                           size_t errstr_size) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int rc = -1;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (err || !md || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
        snprintf(errstr, errstr_size, "topic %s cannot be read (%s): does it exist? raikoo topics create",
                 topic,
                 rd_kafka_err2str(err                        ? err
                                  : md && md->topic_cnt == 1 ? md->topics[0].err
                                                             : err));
        goto done;
    }
    r->np = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(r->np);
    r->high = xcalloc((size_t)r->np, sizeof(*r->high));
    r->done = xcalloc((size_t)r->np, sizeof(*r->done));
    for (int p = 0; p < r->np; p++) {
        int64_t low = 0;
        err = rd_kafka_query_watermark_offsets(rk, topic, p, &low, &r->high[p], 10000);
        if (err) {
            snprintf(errstr, errstr_size, "cannot read the watermarks of %s [%d]: %s", topic, p,
                     rd_kafka_err2str(err));
            goto done;
        }
        r->done[p] = low >= r->high[p];
        r->left += !r->done[p];
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = low;
    }
    if ((err = rd_kafka_assign(rk, parts)) != 0) {
        snprintf(errstr, errstr_size, "cannot assign %s: %s", topic, rd_kafka_err2str(err));
        goto done;
    }
    rc = 0;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

/* Takes one polled message into out, or notes its partition's end: 0, or -1 with errstr set when the
 * topic cannot be read. Destroys m. */
static int take_message(rd_kafka_message_t *m, const char *topic, reading_t *r, dead_list_t *out,
                        char *errstr, size_t errstr_size) {
    int p = m->partition, rc = 0;
    if (p < 0 || p >= r->np || r->done[p]) {
        /* not ours, or a partition already read */
    } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        r->done[p] = 1;
        r->left--;
    } else if (m->err) {
        snprintf(errstr, errstr_size, "reading %s [%d]: %s", topic, p, rd_kafka_message_errstr(m));
        rc = -1;
    } else if (m->offset >= r->high[p]) { /* written after the start: not ours to list */
        r->done[p] = 1;
        r->left--;
    } else {
        out->d = xgrow(out->d, out->n + 1, &out->cap, sizeof(*out->d), 64);
        dead_copy(&out->d[out->n], m);
        find_command_id(&out->d[out->n]);
        find_redaction(&out->d[out->n]);
        out->n++;
        if (m->offset >= r->high[p] - 1) {
            r->done[p] = 1;
            r->left--;
        }
    }
    rd_kafka_message_destroy(m);
    return rc;
}

/* Reads every message of topic, from each partition's low watermark to the high one it had at the start. */
static int read_topic(const conf_t *c, const char *topic, dead_list_t *out, char *errstr,
                      size_t errstr_size) {
    rd_kafka_t *rk = reader_new(c, errstr, errstr_size);
    if (!rk)
        return -1;
    reading_t r = {0};
    int rc = assign_from_low(rk, topic, &r, errstr, errstr_size);
    int64_t start = clock_ms();
    while (rc == 0 && r.left > 0) {
        if (clock_ms() - start > DLQ_TIMEOUT_MS) {
            snprintf(errstr, errstr_size, "%s not read to its end within %d s", topic, DLQ_TIMEOUT_MS / 1000);
            rc = -1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m)
            rc = take_message(m, topic, &r, out, errstr, errstr_size);
    }
    free(r.high);
    free(r.done);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

/* Reads every dead letter of topic.dlq into *l for `raikoo dlq <sub>`; -1 (said on stderr, *l freed) when
 * it cannot. */
static int read_dlq(const conf_t *c, const char *sub, dead_list_t *l) {
    char err[1024];
    if (read_topic(c, conf_get(c, "topic.dlq"), l, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo dlq %s: %s\n", sub, err);
        dead_list_free(l);
        return -1;
    }
    return 0;
}

/* One dead letter as a JSON object (never its value). */
static json_t *dead_json(const dead_t *d) {
    const dead_t *m = d;
    char v[512], when[40];
    json_t *o = json_object();
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer(m->offset));
    ms_time(m->timestamp, when, sizeof(when));
    json_object_set_new(o, "dead_lettered_at", when[0] ? json_string(when) : json_null());
    json_object_set_new(o, "command_id", d->command_id[0] ? json_string(d->command_id) : json_null());
    int key_text = m->key && utf8_valid(m->key, m->key_len) && !memchr(m->key, '\0', m->key_len);
    json_object_set_new(o, "key", key_text ? json_stringn(m->key, m->key_len) : json_null());
    json_object_set_new(o, "bytes", json_integer((json_int_t)m->len));
    json_object_set_new(o, "redacted", d->redacted[0] ? json_string(d->redacted) : json_null());
    char ce[8];
    json_object_set_new(
        o, "mode",
        json_string(header(m, "ce_specversion", ce, sizeof(ce))[0] || header(m, "ce_id", v, sizeof(v))[0]
                        ? "binary"
                        : "structured"));
    static const char *const fields[][2] = {
        {"raikoo.dlq.reason", "reason"},
        {"raikoo.dlq.origin", "origin"},
        {"raikoo.dlq.topic", "origin_topic"},
        {"raikoo.dlq.group", "group"},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        header(m, fields[i][0], v, sizeof(v));
        json_object_set_new(o, fields[i][1], v[0] ? json_string(v) : json_null());
    }
    static const char *const numbers[][2] = {{"raikoo.dlq.partition", "origin_partition"},
                                             {"raikoo.dlq.offset", "origin_offset"}};
    for (size_t i = 0; i < 2; i++) {
        header(m, numbers[i][0], v, sizeof(v));
        json_object_set_new(o, numbers[i][1], v[0] ? json_integer(strtoll(v, NULL, 10)) : json_null());
    }
    header(m, "raikoo.dlq.timestamp", v, sizeof(v));
    ms_time(v[0] ? strtoll(v, NULL, 10) : -1, when, sizeof(when));
    json_object_set_new(o, "origin_time", when[0] ? json_string(when) : json_null());
    return o;
}

static int cmd_dlq_list(int argc, char **argv, conf_t *c) {
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int as_json = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'j')
            as_json = 1;
        else
            return cli_usage(cli_find("dlq"), 1);
    }
    if (optind != argc)
        return cli_usage(cli_find("dlq"), 1);
    dead_list_t l = {0};
    const char *topic = conf_get(c, "topic.dlq");
    if (read_dlq(c, "list", &l) != 0)
        return EXIT_INFRA;
    if (as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < l.n; i++)
            json_array_append_new(arr, dead_json(&l.d[i]));
        json_t *doc = json_pack("{s:s, s:I, s:o}", "topic", topic, "count", (json_int_t)l.n, "messages", arr);
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(doc);
    } else {
        printf("%-9s %-8s %-24s %-36s %-30s %s\n", "PARTITION", "OFFSET", "DEAD-LETTERED", "COMMAND ID",
               "ORIGIN", "REASON");
        for (size_t i = 0; i < l.n; i++) {
            json_t *o = dead_json(&l.d[i]);
            const char *when = json_string_value(json_object_get(o, "dead_lettered_at"));
            const char *origin = json_string_value(json_object_get(o, "origin"));
            const char *reason = json_string_value(json_object_get(o, "reason"));
            printf("%-9d %-8" PRId64 " %-24s %-36s %-30s %s%s\n", (int)l.d[i].partition, l.d[i].offset,
                   when ? when : "-", l.d[i].command_id[0] ? l.d[i].command_id : "-", origin ? origin : "-",
                   reason ? reason : "-",
                   l.d[i].redacted[0] ? " [secrets redacted: cannot be replayed]" : "");
            json_decref(o);
        }
        printf("%zu dead letter%s in %s\n", l.n, l.n == 1 ? "" : "s", topic);
    }
    dead_list_free(&l);
    return EXIT_ACCEPTED;
}

/* Delivery of the replayed messages: each carries a pointer to its status. */
static void replay_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    rd_kafka_resp_err_t *st = m->_private;
    if (st)
        *st = m->err;
}

/* Sends the dead letters of sel[0..n) to topic.commands as they came, waits for every delivery report.
 * 0 when all are stored. */
static int replay_send(const conf_t *c, dead_t **sel, size_t n, const char *dlq, char *errstr,
                       size_t errstr_size) {
    rd_kafka_conf_t *kconf = kafka_conf_new(c, errstr, errstr_size);
    if (!kconf)
        return -1;
    rd_kafka_conf_set_dr_msg_cb(kconf, replay_delivered);
    if (kafka_conf_idempotent(kconf, errstr, errstr_size) != 0) {
        rd_kafka_conf_destroy(kconf);
        return -1;
    }
    rd_kafka_t *rk = kafka_client_new(c, RD_KAFKA_PRODUCER, kconf, 10000, errstr, errstr_size);
    if (!rk)
        return -1;
    const char *topic = conf_get(c, "topic.commands");
    rd_kafka_resp_err_t *st = xcalloc(n ? n : 1, sizeof(*st));
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const dead_t *m = sel[i];
        rd_kafka_headers_t *orig = m->headers, *h;
        if (orig) {
            h = rd_kafka_headers_new(rd_kafka_header_cnt(orig) + 1);
            const char *name;
            const void *value;
            size_t size;
            for (size_t k = 0; rd_kafka_header_get_all(orig, k, &name, &value, &size) == 0; k++)
                if (strncmp(name, "raikoo.dlq.", 11) != 0 && strcmp(name, "raikoo.replay.of") != 0)
                    rd_kafka_header_add(h, name, -1, value, value ? (ssize_t)size : 0);
        } else {
            h = rd_kafka_headers_new(1);
        }
        char of[300];
        text_printf(of, sizeof(of), "%s/%d/%" PRId64, dlq, (int)m->partition, m->offset);
        rd_kafka_header_add(h, "raikoo.replay.of", -1, of, -1);
        st[i] = RD_KAFKA_RESP_ERR__IN_PROGRESS;
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&st[i]), RD_KAFKA_V_END);
        if (err) {
            rd_kafka_headers_destroy(h);
            st[i] = err;
        }
    }
    rd_kafka_flush(rk, DLQ_TIMEOUT_MS);
    for (size_t i = 0; i < n; i++) {
        if (st[i] != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "dead letter %d/%" PRId64 " not delivered to %s: %s",
                     (int)sel[i]->partition, sel[i]->offset, topic,
                     st[i] == RD_KAFKA_RESP_ERR__IN_PROGRESS ? "no acknowledgement in time"
                                                             : rd_kafka_err2str(st[i]));
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            printf("replayed %d/%" PRId64 " (command %s) to %s\n", (int)sel[i]->partition, sel[i]->offset,
                   sel[i]->command_id[0] ? sel[i]->command_id : "without an id", topic);
    }
    rd_kafka_destroy(rk);
    free(st);
    return rc;
}

/* What `raikoo dlq replay` was asked: --offset (and --partition; -1 when not given), --all, --dry-run. */
typedef struct replay_args {
    long long offset, partition;
    int all, dry;
} replay_args_t;

/* Reads replay's options into a. -1 when they are right, else the exit status (the error printed). */
static int replay_parse(int argc, char **argv, replay_args_t *a) {
    static const struct option opts[] = {{"offset", required_argument, NULL, 'o'},
                                         {"partition", required_argument, NULL, 'p'},
                                         {"all", no_argument, NULL, 'a'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    *a = (replay_args_t){.offset = -1, .partition = -1};
    int o;
    char *end;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'o') {
            a->offset = strtoll(optarg, &end, 10);
            if (*end || a->offset < 0 || !*optarg) {
                fprintf(stderr,
                        "raikoo dlq replay: --offset takes an offset of the dead-letter topic (0, 1, ...)\n");
                return EXIT_USAGE;
            }
        } else if (o == 'p') {
            a->partition = strtoll(optarg, &end, 10);
            if (*end || a->partition < 0 || a->partition > INT32_MAX || !*optarg) {
                fprintf(stderr, "raikoo dlq replay: --partition takes a partition number (0, 1, ...)\n");
                return EXIT_USAGE;
            }
        } else if (o == 'a') {
            a->all = 1;
        } else if (o == 'n') {
            a->dry = 1;
        } else {
            return cli_usage(cli_find("dlq"), 1);
        }
    }
    if (optind != argc || a->all == (a->offset >= 0) || (a->all && a->partition >= 0)) {
        fprintf(stderr,
                "raikoo dlq replay: give either --offset N (with --partition P when several partitions "
                "have offset N) or --all\n");
        return cli_usage(cli_find("dlq"), 1);
    }
    return -1;
}

/* A dead letter whose secrets were redacted is not the command that was sent: never replayed. Drops those
 * from sel[0..*n), saying so on stderr, and returns how many it dropped. (With --offset matching several
 * partitions nothing is dropped: the usage error comes first.) */
static size_t replay_drop_redacted(dead_t **sel, size_t *n, int all) {
    size_t kept = 0, redacted = 0;
    for (size_t i = 0; i < *n; i++) {
        if (!sel[i]->redacted[0] || (!all && *n > 1)) {
            sel[kept++] = sel[i];
            continue;
        }
        fprintf(
            stderr,
            "raikoo dlq replay: dead letter %d/%" PRId64
            " (command %s) cannot be replayed: its secrets (code, "
            "password hash) were %s when it was dead-lettered, so it is no longer the command that was sent; "
            "ask its sender to send the command again\n",
            (int)sel[i]->partition, sel[i]->offset,
            sel[i]->command_id[0] ? sel[i]->command_id : "without an id",
            strcmp(sel[i]->redacted, "whole") == 0 ? "redacted with the whole value" : "blanked");
        redacted++;
    }
    *n = kept;
    return redacted;
}

/* Replays sel[0..n) (or with --dry-run says what it would), found of them matched before the redacted
 * ones were dropped; first refuses a selection that is empty or, with --offset, ambiguous. The exit
 * status. */
static int replay_selected(const conf_t *c, const replay_args_t *a, dead_t **sel, size_t n, size_t found,
                           const char *dlq) {
    char err[1024];
    if (!a->all && found == 1 && n == 0)
        return EXIT_REJECTED;
    if (!a->all && n == 0) {
        fprintf(stderr,
                "raikoo dlq replay: no dead letter at offset %lld%s of %s (raikoo dlq list shows them)\n",
                a->offset, a->partition >= 0 ? " of that partition" : "", dlq);
        return EXIT_REJECTED;
    }
    if (n > 1 && !a->all) {
        fprintf(
            stderr,
            "raikoo dlq replay: %zu partitions of %s have a dead letter at offset %lld: add --partition P\n",
            n, dlq, a->offset);
        return EXIT_USAGE;
    }
    if (a->dry) {
        for (size_t i = 0; i < n; i++)
            printf("would replay %d/%" PRId64 " (command %s) to %s\n", (int)sel[i]->partition, sel[i]->offset,
                   sel[i]->command_id[0] ? sel[i]->command_id : "without an id",
                   conf_get(c, "topic.commands"));
        printf("%zu dead letter%s would be replayed (dry run: nothing sent)\n", n, n == 1 ? "" : "s");
        return EXIT_ACCEPTED;
    }
    if (replay_send(c, sel, n, dlq, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo dlq replay: %s\n", err);
        return EXIT_INFRA;
    }
    printf("%zu dead letter%s replayed\n", n, n == 1 ? "" : "s");
    return EXIT_ACCEPTED;
}

static int cmd_dlq_replay(int argc, char **argv, conf_t *c) {
    replay_args_t a;
    int rc = replay_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    dead_list_t l = {0};
    const char *dlq = conf_get(c, "topic.dlq");
    if (read_dlq(c, "replay", &l) != 0)
        return EXIT_INFRA;
    dead_t **sel = xcalloc(l.n ? l.n : 1, sizeof(*sel));
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++)
        if (a.all || (l.d[i].offset == a.offset && (a.partition < 0 || l.d[i].partition == a.partition)))
            sel[n++] = &l.d[i];
    size_t found = n;
    size_t redacted = replay_drop_redacted(sel, &n, a.all);
    rc = replay_selected(c, &a, sel, n, found, dlq);
    if (redacted && rc == EXIT_ACCEPTED) {
        printf("%zu dead letter%s with redacted secrets not replayed\n", redacted, redacted == 1 ? "" : "s");
        rc = EXIT_REJECTED;
    }
    free(sel);
    dead_list_free(&l);
    return rc;
}

int cmd_dlq(int argc, char **argv, conf_t *c) {
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return cmd_dlq_list(argc - 1, argv + 1, c);
    if (argc >= 2 && strcmp(argv[1], "replay") == 0)
        return cmd_dlq_replay(argc - 1, argv + 1, c);
    return cli_usage(cli_find("dlq"), 1);
}
