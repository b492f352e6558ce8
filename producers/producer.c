/* The producer library: builds, validates and publishes commands, and follows the results topic for theirs. */
#include "include/raikoo/producer.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <librdkafka/rdkafka.h>
#include <sodium.h>

#include "clock.h"
#include "cmd.h"
#include "email.h"
#include "event.h"
#include "kafka_defaults.h"
#include "secret.h"
#include "text.h"
#include "watermark.h"

/* The public sizes are the internal ones. */
_Static_assert(RAIKOO_PASSWORD_HASH_SIZE == crypto_pwhash_STRBYTES, "RAIKOO_PASSWORD_HASH_SIZE");
_Static_assert(RAIKOO_KEY_SIZE == EMAIL_MAX + 1, "RAIKOO_KEY_SIZE");
_Static_assert(RAIKOO_KEY_SIZE >= RAIKOO_ID_SIZE, "a key holds a uuid");
_Static_assert((int)RAIKOO_CMD_TYPE_COUNT == (int)CMD_TYPE_COUNT, "one public command type per cmd_type_t");

#define CONNECT_TIMEOUT_MS 10000
#define FREE_FLUSH_MS 10000
#define DEFAULT_SOURCE "/raikoo/producer"
#define DEFAULT_MESSAGE_TIMEOUT "30000"
#define RESULT_TYPE "raikoo.result.v1"
#define POLL_SLICE_MS 100
#define DEFAULT_BOOTSTRAP "127.0.0.1:19092"
#define DEFAULT_TOPIC_COMMANDS "raikoo.commands"
#define DEFAULT_TOPIC_RESULTS "raikoo.results"
#define DEFAULT_MAX_BYTES 65536L
#define MIN_MAX_BYTES 256L
#define MAX_MAX_BYTES (64L * 1024 * 1024)
/* The result consumer's prefetch is bounded as the workers' is (KAFKA_DEFAULT_QUEUED_KBYTES). Once it is
 * over that, librdkafka 2.2 and later look again only after fetch.queue.backoff.ms, 1 s by default: the
 * results of the next commands would wait for it, hence KAFKA_DEFAULT_QUEUE_BACKOFF_MS. (Older librdkafka
 * do not know the property; it is left out there.) */
/* No linger: a command goes to the broker when it is sent, not up to librdkafka's default 5 ms later
 * (at 200 commands/s every command waited for it: publish -> the worker's transaction p50 7.3-9.1 ms
 * with it, 1.7-2.8 ms without; commands sent faster than the broker acknowledges still batch up while
 * requests are in flight, and the pipeline's bulk publishing was no slower: docs/BENCHMARKS.md).
 * kafka.linger.ms (or its alias kafka.queue.buffering.max.ms) overrides it. */
#define DEFAULT_LINGER_MS "0"
#define SETTING_PREFIX_KAFKA "kafka."

/* The public command types, as the parser's. */
static const cmd_type_t type_map[RAIKOO_CMD_TYPE_COUNT] = {
    [RAIKOO_CMD_CREATE_ORGANIZATION] = CMD_CREATE_ORGANIZATION,
    [RAIKOO_CMD_CREATE_USER] = CMD_CREATE_USER,
    [RAIKOO_CMD_ADD_EXISTING_USER] = CMD_ADD_EXISTING_USER,
    [RAIKOO_CMD_INVITE_NEW_USER] = CMD_INVITE_NEW_USER,
    [RAIKOO_CMD_ACCEPT_INVITATION] = CMD_ACCEPT_INVITATION,
    [RAIKOO_CMD_ACTIVATE_ACCOUNT] = CMD_ACTIVATE_ACCOUNT,
    [RAIKOO_CMD_RESEND_INVITATION] = CMD_RESEND_INVITATION,
    [RAIKOO_CMD_REMOVE_INVITATION] = CMD_REMOVE_INVITATION,
    [RAIKOO_CMD_REMOVE_MEMBER] = CMD_REMOVE_MEMBER,
    [RAIKOO_CMD_SET_MEMBER_ROLE] = CMD_SET_MEMBER_ROLE,
    [RAIKOO_CMD_SET_ORGANIZATION_POLICY] = CMD_SET_ORGANIZATION_POLICY,
};

const char *raikoo_command_type_name(raikoo_command_type_t type) {
    if ((int)type < 0 || type >= RAIKOO_CMD_TYPE_COUNT)
        return NULL;
    return cmd_specs[type_map[type]].name;
}

raikoo_command_type_t raikoo_command_type_from_name(const char *name) {
    cmd_type_t t = name ? cmd_type_from_name(name) : CMD_TYPE_UNKNOWN;
    for (int i = 0; i < RAIKOO_CMD_TYPE_COUNT; i++)
        if (t != CMD_TYPE_UNKNOWN && type_map[i] == t)
            return (raikoo_command_type_t)i;
    return RAIKOO_CMD_TYPE_UNKNOWN;
}

/* The ids of the commands still awaiting a result: a chained hash set, grown as it fills. */
typedef struct id_node {
    struct id_node *next;
    char id[RAIKOO_ID_SIZE];
} id_node_t;

typedef struct id_set {
    id_node_t **buckets;
    size_t nbuckets, n;
} id_set_t;

/* Results of pending commands that came in while raikoo_command_wait looked for another one. */
typedef struct stashed {
    struct stashed *next;
    raikoo_result_t r;
} stashed_t;

struct raikoo_producer {
    rd_kafka_t *rk;                 /* the idempotent producer */
    rd_kafka_t *rc;                 /* the results consumer; NULL until raikoo_results_follow */
    rd_kafka_conf_t *consumer_conf; /* kept for raikoo_results_follow (the settings may be gone by then) */
    char *topic_commands, *topic_results, *source, *bootstrap;
    size_t max_bytes;
    long message_timeout_ms;

    raikoo_delivery_cb_t *dr_cb;
    void *dr_opaque;
    unsigned long dr_failed; /* failed deliveries since the last raikoo_producer_flush */
    char dr_error[512];

    /* The one command raikoo_command_publish is waiting to see acknowledged. */
    int sync_active, sync_done;
    char sync_id[RAIKOO_ID_SIZE];
    rd_kafka_resp_err_t sync_err;

    id_set_t pending;
    stashed_t *stash_head, *stash_tail;
    size_t stashed;
};

/* ---- the pending set ---- */

static size_t id_hash(const char *id) {
    /* FNV-1a over the lower-cased id: ids compare case-insensitively. */
    size_t h = 1469598103934665603ULL;
    for (; *id; id++)
        h = (h ^ (unsigned char)tolower((unsigned char)*id)) * 1099511628211ULL;
    return h;
}

static id_node_t **id_find(id_set_t *s, const char *id) {
    if (!s->nbuckets)
        return NULL;
    id_node_t **pp = &s->buckets[id_hash(id) % s->nbuckets];
    for (; *pp; pp = &(*pp)->next)
        if (strcasecmp((*pp)->id, id) == 0)
            return pp;
    return NULL;
}

static void id_add(id_set_t *s, const char *id) {
    if (id_find(s, id))
        return;
    if (s->n >= s->nbuckets) {
        size_t nb = s->nbuckets ? s->nbuckets * 2 : 256;
        id_node_t **b = calloc(nb, sizeof(*b));
        if (!b)
            abort();
        for (size_t i = 0; i < s->nbuckets; i++) {
            id_node_t *n = s->buckets[i];
            while (n) {
                id_node_t *next = n->next;
                size_t j = id_hash(n->id) % nb;
                n->next = b[j];
                b[j] = n;
                n = next;
            }
        }
        free(s->buckets);
        s->buckets = b;
        s->nbuckets = nb;
    }
    id_node_t *n = calloc(1, sizeof(*n));
    if (!n)
        abort();
    snprintf(n->id, sizeof(n->id), "%s", id);
    size_t j = id_hash(id) % s->nbuckets;
    n->next = s->buckets[j];
    s->buckets[j] = n;
    s->n++;
}

/* Removes id; 1 when it was there. */
static int id_remove(id_set_t *s, const char *id) {
    id_node_t **pp = id_find(s, id);
    if (!pp)
        return 0;
    id_node_t *n = *pp;
    *pp = n->next;
    free(n);
    s->n--;
    return 1;
}

static void id_set_free(id_set_t *s) {
    for (size_t i = 0; i < s->nbuckets; i++) {
        id_node_t *n = s->buckets[i];
        while (n) {
            id_node_t *next = n->next;
            free(n);
            n = next;
        }
    }
    free(s->buckets);
    memset(s, 0, sizeof(*s));
}

/* ---- building commands ---- */

void raikoo_command_msg_clear(raikoo_command_msg_t *m) {
    free(m->payload);
    memset(m, 0, sizeof(*m));
}

int raikoo_command_build(raikoo_command_type_t public_type, const char *source, const char *actor,
                         json_t *data, size_t max_bytes, raikoo_command_msg_t *out, char *errstr,
                         size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    if ((int)public_type < 0 || public_type >= RAIKOO_CMD_TYPE_COUNT) {
        json_decref(data);
        snprintf(errstr, errstr_size, "unknown command type %d", (int)public_type);
        return RAIKOO_ERR_INVALID;
    }
    cmd_type_t type = type_map[public_type];
    char type_name[96];
    snprintf(type_name, sizeof(type_name), "raikoo.command.%s.v1", cmd_specs[type].name);
    /* data is now owned by ev */
    json_t *ev = event_new(type_name, NULL, source && *source ? source : DEFAULT_SOURCE, actor, NULL, data);
    char *text = event_dump(ev);
    json_decref(ev);

    /* The worker's own parser decides, so client and worker never disagree about what is valid. */
    cmd_t cmd;
    char why[512] = "";
    parse_status_t st = cmd_parse(text, strlen(text), max_bytes, &cmd, why, sizeof(why));
    if (st != PARSE_OK) {
        /* A field with a code of its own says it first ("invalid_expiry: data.expires_in_days ..."). */
        snprintf(errstr, errstr_size, "%s%s%s", cmd.invalid_code ? cmd.invalid_code : "",
                 cmd.invalid_code ? ": " : "", why);
        cmd_free(&cmd);
        free(text);
        return RAIKOO_ERR_INVALID;
    }
    const char *key = NULL;
    if (type == CMD_CREATE_ORGANIZATION)
        key = cmd.owner_user_id;
    else if (cmd.org_id)
        key = cmd.org_id;
    else if (type == CMD_ACCEPT_INVITATION)
        key = cmd.invitation_id;
    if (key) {
        snprintf(out->key, sizeof(out->key), "%s", key);
    } else {
        /* CreateUser, ActivateAccount: the address, in one case so that its commands stay in order. */
        size_t i = 0;
        for (; cmd.email[i] && i + 1 < sizeof(out->key); i++)
            out->key[i] = (char)tolower((unsigned char)cmd.email[i]);
        out->key[i] = '\0';
    }
    snprintf(out->id, sizeof(out->id), "%s", cmd.id);
    out->payload = text;
    out->len = strlen(text);
    cmd_free(&cmd);
    return RAIKOO_OK;
}

int raikoo_password_hash(const char *password, char out[RAIKOO_PASSWORD_HASH_SIZE], char *errstr,
                         size_t errstr_size) {
    if (sodium_init() < 0) {
        snprintf(errstr, errstr_size, "libsodium failed to initialise");
        return -1;
    }
    if (!password || !*password) {
        snprintf(errstr, errstr_size, "the password is empty");
        return -1;
    }
    /* Argon2id named explicitly: the worker accepts nothing else. */
    if (crypto_pwhash_str_alg(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        snprintf(errstr, errstr_size, "cannot hash the password (out of memory?)");
        return -1;
    }
    return 0;
}

/* ---- results ---- */

void raikoo_result_clear(raikoo_result_t *r) {
    if (r->data)
        json_decref(r->data);
    memset(r, 0, sizeof(*r));
}

static const char *str_or_null(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int raikoo_result_parse(const void *buf, size_t len, raikoo_result_t *r) {
    memset(r, 0, sizeof(*r));
    json_t *root = json_loadb(buf, len, 0, NULL);
    json_t *type = json_object_get(root, "type");
    json_t *data = json_object_get(root, "data");
    if (!json_is_string(type) || strcmp(json_string_value(type), RESULT_TYPE) != 0 || !json_is_object(data) ||
        !str_or_null(data, "command_id")) {
        json_decref(root);
        return -1;
    }
    r->data = json_incref(data);
    json_decref(root);
    r->command_id = str_or_null(data, "command_id");
    r->command_type = str_or_null(data, "command_type");
    r->status = str_or_null(data, "status");
    if (!r->command_type)
        r->command_type = "";
    if (!r->status)
        r->status = "";
    r->accepted = strcmp(r->status, "accepted") == 0;
    r->code = str_or_null(data, "code");
    r->message = str_or_null(data, "message");
    if (!r->message)
        r->message = "";
    r->org_id = str_or_null(data, "org_id");
    r->user_id = str_or_null(data, "user_id");
    r->invitation_id = str_or_null(data, "invitation_id");
    return 0;
}

/* Reads a results-topic message into r (taking a reference to its data). -1 when it is not a result. */
static int result_from_message(const rd_kafka_message_t *m, raikoo_result_t *r) {
    if (raikoo_result_parse(m->payload, m->len, r) != 0)
        return -1;
    rd_kafka_timestamp_type_t type;
    long long ts = rd_kafka_message_timestamp(m, &type);
    r->published_ms = type == RD_KAFKA_TIMESTAMP_CREATE_TIME && ts > 0 ? ts : 0;
    return 0;
}

/* Reads one message from the results consumer, waiting up to timeout_ms. 1 with *r filled when it is the
 * result of one of our pending commands (no longer pending), else 0. */
static int results_read_one(raikoo_producer_t *p, int timeout_ms, raikoo_result_t *r) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(p->rc, timeout_ms);
    if (!m)
        return 0;
    int got = 0;
    /* An error (m->err): librdkafka retries transport errors itself; a waiting caller times out if it never
     * recovers. */
    if (!m->err && result_from_message(m, r) == 0) {
        if (id_remove(&p->pending, r->command_id))
            got = 1;
        else
            raikoo_result_clear(r); /* someone else's command, or a duplicate of one already returned */
    }
    rd_kafka_message_destroy(m);
    return got;
}

static void stash_push(raikoo_producer_t *p, raikoo_result_t *r) {
    stashed_t *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->r = *r; /* the data reference moves into the stash */
    memset(r, 0, sizeof(*r));
    if (p->stash_tail)
        p->stash_tail->next = s;
    else
        p->stash_head = s;
    p->stash_tail = s;
    p->stashed++;
}

/* Moves the stashed result of command_id (any, when NULL) into *r; 1 when there was one. */
static int stash_take(raikoo_producer_t *p, const char *command_id, raikoo_result_t *r) {
    stashed_t *prev = NULL;
    for (stashed_t *s = p->stash_head; s; prev = s, s = s->next) {
        if (command_id && strcasecmp(s->r.command_id, command_id) != 0)
            continue;
        if (prev)
            prev->next = s->next;
        else
            p->stash_head = s->next;
        if (p->stash_tail == s)
            p->stash_tail = prev;
        *r = s->r;
        free(s);
        p->stashed--;
        return 1;
    }
    return 0;
}

/* ---- the producer ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    raikoo_producer_t *p = opaque;
    char *id = m->_private; /* ours since send_one; freed here */
    const char *err = m->err ? rd_kafka_err2str(m->err) : NULL;
    if (m->err) {
        p->dr_failed++;
        snprintf(p->dr_error, sizeof(p->dr_error), "command %s not delivered: %s", id, err);
        /* It will never have a result: do not let a waiter count on one. */
        id_remove(&p->pending, id);
    }
    if (p->sync_active && strcmp(p->sync_id, id) == 0) {
        p->sync_done = 1;
        p->sync_err = m->err;
    }
    if (p->dr_cb)
        p->dr_cb(p->dr_opaque, id, err);
    free(id);
}

/* The partition count of topic, from a metadata request; -1 with errstr when the topic is not there. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, const char *bootstrap, int *count,
                            char *errstr, size_t errstr_size) {
    int rc = -1;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(errstr, errstr_size, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, CONNECT_TIMEOUT_MS);
    if (err) {
        snprintf(
            errstr, errstr_size,
            "cannot reach Kafka at %s (kafka.bootstrap.servers): %s; is the broker running (ops/stack up)?",
            bootstrap, rd_kafka_err2str(err));
        goto done;
    }
    if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        snprintf(errstr, errstr_size, "topic %s is not available (%s): run `raikoo topics create`", topic,
                 md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
        goto done;
    }
    *count = md->topics[0].partition_cnt;
    rc = 0;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* librdkafka's log lines: warnings and errors to stderr. A connection that fails or closes is left out: a
 * broker that stays away shows as the error of the call that needed it, not as a line per attempt. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (level > 4 || strcmp(fac, "FAIL") == 0 || strcmp(fac, "CONNECT") == 0 ||
        strcmp(fac, "BROKERFAIL") == 0)
        return;
    fprintf(stderr, "raikoo producer: kafka %s: %s\n", fac, buf);
}

static int kafka_set(rd_kafka_conf_t *kconf, const char *prop, const char *value, char *errstr,
                     size_t errstr_size) {
    char why[512];
    if (rd_kafka_conf_set(kconf, prop, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        text_printf(errstr, errstr_size, "%s%s: %s", SETTING_PREFIX_KAFKA, prop, why);
        return -1;
    }
    return 0;
}

/* What raikoo_producer_new reads from its settings besides the librdkafka properties. */
typedef struct settings_read {
    const char *bootstrap, *topic_commands, *topic_results, *message_timeout;
    int queued_kbytes_set, linger_set, queue_backoff_set;
    long max_bytes;
} settings_read_t;

/* Applies the settings: kafka.* to kconf, the others into out. -1 with errstr on a bad one. */
static int settings_apply(const raikoo_setting_t *settings, size_t count, rd_kafka_conf_t *kconf,
                          settings_read_t *out, char *errstr, size_t errstr_size) {
    const size_t plen = strlen(SETTING_PREFIX_KAFKA);
    for (size_t i = 0; i < count; i++) {
        const char *key = settings[i].key, *value = settings[i].value;
        if (!key || !value) {
            text_printf(errstr, errstr_size, "setting %zu has no %s", i, key ? "value" : "key");
            return -1;
        }
        if (strncmp(key, SETTING_PREFIX_KAFKA, plen) == 0 && key[plen]) {
            const char *prop = key + plen;
            if (kafka_set(kconf, prop, value, errstr, errstr_size) != 0)
                return -1;
            if (strcmp(prop, "bootstrap.servers") == 0)
                out->bootstrap = value;
            else if (strcmp(prop, "message.timeout.ms") == 0)
                out->message_timeout = value;
            else if (strcmp(prop, "queued.max.messages.kbytes") == 0)
                out->queued_kbytes_set = 1;
            else if (strcmp(prop, "linger.ms") == 0 || strcmp(prop, "queue.buffering.max.ms") == 0)
                out->linger_set = 1;
            else if (strcmp(prop, "fetch.queue.backoff.ms") == 0)
                out->queue_backoff_set = 1;
        } else if (strcmp(key, "topic.commands") == 0 || strcmp(key, "topic.results") == 0) {
            if (!*value) {
                text_printf(errstr, errstr_size, "%s is empty: name the topic", key);
                return -1;
            }
            *(key[6] == 'c' ? &out->topic_commands : &out->topic_results) = value;
        } else if (strcmp(key, "command.max.bytes") == 0) {
            char *end;
            errno = 0;
            long v = strtol(value, &end, 10);
            if (errno || end == value || *end || v < MIN_MAX_BYTES || v > MAX_MAX_BYTES) {
                text_printf(errstr, errstr_size, "command.max.bytes: not an integer from %ld to %ld",
                            MIN_MAX_BYTES, MAX_MAX_BYTES);
                return -1;
            }
            out->max_bytes = v;
        } else {
            text_printf(errstr, errstr_size,
                        "unknown producer setting \"%s\": use kafka.<librdkafka property>, topic.commands, "
                        "topic.results or command.max.bytes",
                        key);
            return -1;
        }
    }
    return 0;
}

raikoo_producer_t *raikoo_producer_new(const raikoo_setting_t *settings, size_t count, char *errstr,
                                       size_t errstr_size) {
    raikoo_producer_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *kconf = rd_kafka_conf_new();
    int ok = 0;
    if (!p || !kconf)
        abort();
    rd_kafka_conf_set_log_cb(kconf, log_cb);
    settings_read_t s = {.bootstrap = DEFAULT_BOOTSTRAP,
                         .topic_commands = DEFAULT_TOPIC_COMMANDS,
                         .topic_results = DEFAULT_TOPIC_RESULTS,
                         .message_timeout = DEFAULT_MESSAGE_TIMEOUT,
                         .max_bytes = DEFAULT_MAX_BYTES};
    if (kafka_set(kconf, "bootstrap.servers", DEFAULT_BOOTSTRAP, errstr, errstr_size) != 0 ||
        settings_apply(settings, count, kconf, &s, errstr, errstr_size) != 0)
        goto done;
    p->topic_commands = xstrdup(s.topic_commands);
    p->topic_results = xstrdup(s.topic_results);
    p->bootstrap = xstrdup(s.bootstrap);
    p->source = xstrdup(DEFAULT_SOURCE);
    p->max_bytes = (size_t)s.max_bytes;

    /* The consumer takes the same properties, before the producer's own are added. */
    p->consumer_conf = rd_kafka_conf_dup(kconf);
    /* The idempotent producer: no duplicates or reordering from the client's own retries. */
    if (kafka_set(kconf, "enable.idempotence", "true", errstr, errstr_size) != 0 ||
        kafka_set(kconf, "acks", "all", errstr, errstr_size) != 0 ||
        (!s.linger_set && kafka_set(kconf, "linger.ms", DEFAULT_LINGER_MS, errstr, errstr_size) != 0) ||
        kafka_set(kconf, "message.timeout.ms", s.message_timeout, errstr, errstr_size) != 0)
        goto done;
    p->message_timeout_ms = strtol(s.message_timeout, NULL, 10);
    rd_kafka_conf_set_dr_msg_cb(kconf, on_delivery);
    rd_kafka_conf_set_opaque(kconf, p);

    if (!s.queue_backoff_set) {
        char unknown[256]; /* a librdkafka before 2.2: nothing to set */
        (void)rd_kafka_conf_set(p->consumer_conf, "fetch.queue.backoff.ms", KAFKA_DEFAULT_QUEUE_BACKOFF_MS,
                                unknown, sizeof(unknown));
    }
    /* librdkafka wants a group for assign(), but this one never joins, subscribes or commits. */
    char group[64], uid[RAIKOO_ID_SIZE];
    uuid_generate(uid);
    snprintf(group, sizeof(group), "raikoo-results-%s", uid);
    if ((!s.queued_kbytes_set && kafka_set(p->consumer_conf, "queued.max.messages.kbytes",
                                           KAFKA_DEFAULT_QUEUED_KBYTES, errstr, errstr_size) != 0) ||
        kafka_set(p->consumer_conf, "group.id", group, errstr, errstr_size) != 0 ||
        kafka_set(p->consumer_conf, "enable.auto.commit", "false", errstr, errstr_size) != 0 ||
        kafka_set(p->consumer_conf, "enable.auto.offset.store", "false", errstr, errstr_size) != 0 ||
        kafka_set(p->consumer_conf, "enable.partition.eof", "false", errstr, errstr_size) != 0)
        goto done;

    char why[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, why, sizeof(why));
    if (!p->rk) {
        text_printf(errstr, errstr_size, "cannot create Kafka producer: %s", why);
        goto done;
    }
    kconf = NULL; /* now owned by p->rk */
    /* topic_partitions says when the broker does not answer. */
    int parts;
    if (topic_partitions(p->rk, p->topic_commands, p->bootstrap, &parts, errstr, errstr_size) != 0)
        goto done;
    ok = 1;
done:
    if (kconf)
        rd_kafka_conf_destroy(kconf);
    if (!ok) {
        raikoo_producer_free(p);
        p = NULL;
    }
    return p;
}

void raikoo_producer_free(raikoo_producer_t *p) {
    if (!p)
        return;
    if (p->rk) {
        rd_kafka_flush(p->rk, FREE_FLUSH_MS);
        /* What is still queued fails now; serving its reports frees each message's id. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(p->rk, 1000);
        rd_kafka_destroy(p->rk);
    }
    if (p->rc) {
        rd_kafka_consumer_close(p->rc);
        rd_kafka_destroy(p->rc);
    }
    if (p->consumer_conf)
        rd_kafka_conf_destroy(p->consumer_conf);
    raikoo_result_t r;
    while (stash_take(p, NULL, &r))
        raikoo_result_clear(&r);
    id_set_free(&p->pending);
    free(p->topic_commands);
    free(p->topic_results);
    free(p->bootstrap);
    free(p->source);
    free(p);
}

void raikoo_producer_set_source(raikoo_producer_t *p, const char *source) {
    free(p->source);
    p->source = xstrdup(source && *source ? source : DEFAULT_SOURCE);
}

void raikoo_producer_set_delivery_cb(raikoo_producer_t *p, raikoo_delivery_cb_t *cb, void *opaque) {
    p->dr_cb = cb;
    p->dr_opaque = opaque;
}

int raikoo_results_follow(raikoo_producer_t *p, char *errstr, size_t errstr_size) {
    if (p->rc)
        return 0;
    int rc = RAIKOO_ERR_KAFKA;
    char why[512];
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_conf_t *kconf = rd_kafka_conf_dup(p->consumer_conf);
    rd_kafka_t *rc_client = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, why, sizeof(why));
    if (!rc_client) {
        rd_kafka_conf_destroy(kconf);
        snprintf(errstr, errstr_size, "cannot create Kafka consumer: %s", why);
        return RAIKOO_ERR_KAFKA;
    }
    /* kconf is now owned by rc_client */
    rd_kafka_poll_set_consumer(rc_client);
    int parts;
    if (topic_partitions(rc_client, p->topic_results, p->bootstrap, &parts, errstr, errstr_size) != 0)
        goto done;
    list = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++) {
        int64_t high = 0;
        rd_kafka_resp_err_t err =
            kafka_high_watermark(rc_client, p->topic_results, i, CONNECT_TIMEOUT_MS, &high);
        if (err) {
            snprintf(errstr, errstr_size, "cannot read the end of %s [%d]: %s", p->topic_results, i,
                     rd_kafka_err2str(err));
            goto done;
        }
        /* An explicit offset, not OFFSET_END: END would be resolved later, after a fast result. */
        rd_kafka_topic_partition_list_add(list, p->topic_results, i)->offset = high;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(rc_client, list);
    if (err) {
        snprintf(errstr, errstr_size, "cannot assign %s: %s", p->topic_results, rd_kafka_err2str(err));
        goto done;
    }
    p->rc = rc_client;
    rc_client = NULL;
    rc = 0;
done:
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    if (rc_client)
        rd_kafka_destroy(rc_client);
    return rc;
}

/* Builds, validates and queues one command; with sync, waits for its delivery report too. */
static int send_one(raikoo_producer_t *p, raikoo_command_type_t type, const char *actor, json_t *data,
                    char id_out[RAIKOO_ID_SIZE], int sync, char *errstr, size_t errstr_size) {
    raikoo_command_msg_t m;
    if (id_out)
        id_out[0] = '\0';
    int rc = raikoo_command_build(type, p->source, actor, data, p->max_bytes, &m, errstr, errstr_size);
    if (rc != 0)
        return rc;
    if (id_out)
        snprintf(id_out, RAIKOO_ID_SIZE, "%s", m.id);
    char *opaque = xstrdup(m.id); /* freed by on_delivery */
    if (p->rc)
        id_add(&p->pending, m.id);
    if (sync) {
        p->sync_active = 1;
        p->sync_done = 0;
        p->sync_err = RD_KAFKA_RESP_ERR_NO_ERROR;
        snprintf(p->sync_id, sizeof(p->sync_id), "%s", m.id);
    }
    long deadline = clock_ms() + p->message_timeout_ms + 5000;
    rd_kafka_resp_err_t err;
    for (;;) {
        /* Structured mode of the CloudEvents Kafka binding; the headers go with the message once queued. */
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, EVENT_CONTENT_TYPE_HEADER, -1, EVENT_CONTENT_TYPE, -1);
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(p->topic_commands),
                                RD_KAFKA_V_KEY(m.key, strlen(m.key)), RD_KAFKA_V_VALUE(m.payload, m.len),
                                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (err)
            rd_kafka_headers_destroy(h);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || clock_ms() >= deadline)
            break;
        /* The client's queue is full: serve delivery reports until there is room. */
        rd_kafka_poll(p->rk, POLL_SLICE_MS);
    }
    if (err) {
        free(opaque);
        id_remove(&p->pending, m.id);
        snprintf(errstr, errstr_size, "cannot queue command %s for %s: %s", m.id, p->topic_commands,
                 rd_kafka_err2str(err));
        rc = err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? RAIKOO_ERR_TIMEOUT : RAIKOO_ERR_KAFKA;
        goto done;
    }
    if (sync) {
        while (!p->sync_done && clock_ms() < deadline)
            rd_kafka_poll(p->rk, POLL_SLICE_MS);
        if (!p->sync_done) {
            snprintf(errstr, errstr_size, "command %s: no acknowledgement from Kafka at %s in time", m.id,
                     p->bootstrap);
            rc = RAIKOO_ERR_TIMEOUT;
        } else if (p->sync_err) {
            snprintf(errstr, errstr_size, "command %s not delivered to %s: %s", m.id, p->topic_commands,
                     rd_kafka_err2str(p->sync_err));
            rc = RAIKOO_ERR_KAFKA;
        }
    }
done:
    p->sync_active = 0;
    raikoo_command_msg_clear(&m);
    return rc;
}

int raikoo_command_publish(raikoo_producer_t *p, raikoo_command_type_t type, const char *actor, json_t *data,
                           char id_out[RAIKOO_ID_SIZE], char *errstr, size_t errstr_size) {
    return send_one(p, type, actor, data, id_out, 1, errstr, errstr_size);
}

int raikoo_command_send(raikoo_producer_t *p, raikoo_command_type_t type, const char *actor, json_t *data,
                        char id_out[RAIKOO_ID_SIZE], char *errstr, size_t errstr_size) {
    return send_one(p, type, actor, data, id_out, 0, errstr, errstr_size);
}

int raikoo_producer_poll(raikoo_producer_t *p, int timeout_ms) {
    return rd_kafka_poll(p->rk, timeout_ms);
}

int raikoo_producer_flush(raikoo_producer_t *p, int timeout_ms, char *errstr, size_t errstr_size) {
    rd_kafka_flush(p->rk, timeout_ms);
    int queued = rd_kafka_outq_len(p->rk);
    if (p->dr_failed) {
        snprintf(errstr, errstr_size, "%lu command%s not delivered; last: %s", p->dr_failed,
                 p->dr_failed == 1 ? "" : "s", p->dr_error);
        p->dr_failed = 0;
        return RAIKOO_ERR_KAFKA;
    }
    if (queued > 0) {
        snprintf(errstr, errstr_size, "%d message%s still queued for Kafka at %s", queued,
                 queued == 1 ? "" : "s", p->bootstrap);
        return RAIKOO_ERR_TIMEOUT;
    }
    return 0;
}

int raikoo_results_poll(raikoo_producer_t *p, int timeout_ms, raikoo_result_t *out, char *errstr,
                        size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    if (!p->rc) {
        snprintf(errstr, errstr_size, "raikoo_results_follow was not called");
        return RAIKOO_ERR_STATE;
    }
    if (stash_take(p, NULL, out))
        return 1;
    long deadline = clock_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    do {
        rd_kafka_poll(p->rk, 0);
        long left = deadline - clock_ms();
        if (results_read_one(p, left <= 0 ? 0 : left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS, out))
            return 1;
    } while (clock_ms() < deadline);
    return 0;
}

int raikoo_command_wait(raikoo_producer_t *p, const char *command_id, int timeout_ms, raikoo_result_t *out,
                        char *errstr, size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    if (!p->rc) {
        snprintf(errstr, errstr_size, "raikoo_results_follow was not called before publishing");
        return RAIKOO_ERR_STATE;
    }
    if (stash_take(p, command_id, out))
        return 1;
    /* A command published elsewhere after we started following may be waited for too. */
    id_add(&p->pending, command_id);
    long deadline = clock_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    do {
        rd_kafka_poll(p->rk, 0);
        long left = deadline - clock_ms();
        raikoo_result_t r;
        if (results_read_one(p, left <= 0 ? 0 : left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS, &r)) {
            if (strcasecmp(r.command_id, command_id) == 0) {
                *out = r;
                return 1;
            }
            stash_push(p, &r);
        }
    } while (clock_ms() < deadline);
    return 0;
}

size_t raikoo_results_pending(const raikoo_producer_t *p) {
    /* Stashed results have arrived but not yet been handed over: still pending for the caller. */
    return p->pending.n + p->stashed;
}

/* ---- Many commands at once ---- */

typedef struct item_ref {
    const char *id; /* items[index].id */
    size_t index;
} item_ref_t;

typedef struct batch_run {
    raikoo_batch_item_t *items;
    item_ref_t *refs; /* sorted by id */
    size_t nrefs, done;
    raikoo_delivery_cb_t *user_cb;
    void *user_opaque;
    /* Failed deliveries reported before refs is sorted: applied once it is. */
    struct {
        char id[RAIKOO_ID_SIZE];
        char error[128];
    } * early;
    size_t nearly, early_cap;
} batch_run_t;

static int ref_cmp(const void *a, const void *b) {
    return strcasecmp(((const item_ref_t *)a)->id, ((const item_ref_t *)b)->id);
}

static raikoo_batch_item_t *batch_find(batch_run_t *b, const char *id) {
    item_ref_t key = {id, 0};
    item_ref_t *r = bsearch(&key, b->refs, b->nrefs, sizeof(*b->refs), ref_cmp);
    return r ? &b->items[r->index] : NULL;
}

/* Delivery reports during a run: a command Kafka did not take will have no result. */
static void batch_delivery(void *opaque, const char *command_id, const char *error) {
    batch_run_t *b = opaque;
    if (error && b->nrefs == 0) {
        b->early = xgrow(b->early, b->nearly + 1, &b->early_cap, sizeof(*b->early), 16);
        snprintf(b->early[b->nearly].id, RAIKOO_ID_SIZE, "%s", command_id);
        snprintf(b->early[b->nearly].error, sizeof(b->early[b->nearly].error), "%s", error);
        b->nearly++;
    } else if (error) {
        raikoo_batch_item_t *it = batch_find(b, command_id);
        if (it && it->status == RAIKOO_ITEM_NO_RESULT) {
            it->status = RAIKOO_ITEM_UNSENT;
            snprintf(it->error, sizeof(it->error), "not delivered to Kafka: %s", error);
            b->done++;
        }
    }
    if (b->user_cb)
        b->user_cb(b->user_opaque, command_id, error);
}

/* The caller's progress callback during a run, told at most every 100 ms (and once at the end). */
typedef struct run_progress {
    raikoo_batch_progress_cb_t *fn;
    void *opaque;
    long last; /* when it was last told */
    size_t sent, total;
} run_progress_t;

static void run_progress_tell(run_progress_t *pr, size_t done, int always) {
    if (!pr->fn || (!always && clock_ms() - pr->last < 100))
        return;
    if (!always)
        pr->last = clock_ms();
    pr->fn(pr->opaque, pr->sent, done, pr->total);
}

/* Marks the item of command id, while it waits for a result, as not delivered (a failed delivery report). */
static void batch_undelivered(batch_run_t *b, const char *id, const char *error) {
    raikoo_batch_item_t *it = batch_find(b, id);
    if (it && it->status == RAIKOO_ITEM_NO_RESULT) {
        it->status = RAIKOO_ITEM_UNSENT;
        snprintf(it->error, sizeof(it->error), "not delivered to Kafka: %s", error);
        b->done++;
    }
}

/* 1. Queues every command (taking over each item's data); an item that could not be queued is done. */
static void batch_queue(raikoo_producer_t *p, batch_run_t *b, size_t n, run_progress_t *pr) {
    for (size_t i = 0; i < n; i++) {
        raikoo_batch_item_t *it = &b->items[i];
        memset(&it->result, 0, sizeof(it->result));
        it->error[0] = '\0';
        json_t *data = it->data;
        it->data = NULL;
        int src = send_one(p, it->type, it->actor, data, it->id, 0, it->error, sizeof(it->error));
        if (src == 0) {
            it->status = RAIKOO_ITEM_NO_RESULT;
            pr->sent++;
        } else {
            it->status = src == RAIKOO_ERR_INVALID ? RAIKOO_ITEM_INVALID : RAIKOO_ITEM_UNSENT;
            b->done++;
        }
        run_progress_tell(pr, b->done, 0);
    }
}

/* The refs of the items waiting for a result, sorted once all are queued (delivery reports served
 * meanwhile find no ref yet: they were kept in b->early and are applied here). */
static void batch_index(batch_run_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b->items[i].status == RAIKOO_ITEM_NO_RESULT)
            b->refs[b->nrefs++] = (item_ref_t){b->items[i].id, i};
    qsort(b->refs, b->nrefs, sizeof(*b->refs), ref_cmp);
    for (size_t i = 0; i < b->nearly; i++)
        batch_undelivered(b, b->early[i].id, b->early[i].error);
}

/* 2. Collects results in any order, each matched to its item by command id, until every item is done or
 * none came for timeout_ms. */
static void batch_collect(raikoo_producer_t *p, batch_run_t *b, size_t n, int timeout_ms,
                          run_progress_t *pr) {
    long idle_since = clock_ms();
    while (b->done < n) {
        raikoo_result_t r;
        char why[256];
        int got = raikoo_results_poll(p, POLL_SLICE_MS, &r, why, sizeof(why));
        if (got < 0) {
            for (size_t i = 0; i < n; i++)
                if (b->items[i].status == RAIKOO_ITEM_NO_RESULT)
                    snprintf(b->items[i].error, sizeof(b->items[i].error), "%s", why);
            break;
        }
        if (got == 1) {
            raikoo_batch_item_t *it = batch_find(b, r.command_id);
            if (it && it->status == RAIKOO_ITEM_NO_RESULT) {
                it->result = r;
                it->status = RAIKOO_ITEM_RESULT;
                b->done++;
                idle_since = clock_ms();
            } else {
                raikoo_result_clear(&r);
            }
        } else if (clock_ms() - idle_since >= timeout_ms) {
            break;
        }
        run_progress_tell(pr, b->done, 0);
    }
}

int raikoo_commands_run(raikoo_producer_t *p, raikoo_batch_item_t *items, size_t n, int timeout_ms,
                        raikoo_batch_progress_cb_t *progress, void *opaque, char *errstr,
                        size_t errstr_size) {
    int rc = raikoo_results_follow(p, errstr, errstr_size);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            json_decref(items[i].data);
            items[i].data = NULL;
        }
        return rc;
    }
    batch_run_t b = {items, xcalloc(n ? n : 1, sizeof(item_ref_t)), 0, 0, p->dr_cb, p->dr_opaque, NULL, 0, 0};
    run_progress_t pr = {progress, opaque, 0, 0, n};
    p->dr_cb = batch_delivery;
    p->dr_opaque = &b;
    batch_queue(p, &b, n, &pr);
    batch_index(&b, n);
    batch_collect(p, &b, n, timeout_ms, &pr);
    for (size_t i = 0; i < n; i++) {
        raikoo_batch_item_t *it = &items[i];
        if (it->status == RAIKOO_ITEM_NO_RESULT) {
            id_remove(&p->pending, it->id); /* no longer waited for */
            if (!it->error[0])
                snprintf(it->error, sizeof(it->error), "no result within %d ms of the last one", timeout_ms);
        }
    }
    run_progress_tell(&pr, b.done, 1);
    p->dr_cb = b.user_cb;
    p->dr_opaque = b.user_opaque;
    free(b.refs);
    free(b.early);
    return 0;
}
