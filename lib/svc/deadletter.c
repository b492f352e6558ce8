/* Dead letters: messages that are no command, stored on the dead-letter topic with why and where from. */
#include "deadletter.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "event.h"
#include "log.h"
#include "text.h"
#include "worker.h"

/* One header of a dead letter, as it is to be sent. */
typedef struct dl_header {
    char *name;
    void *value; /* NULL: a header without a value */
    size_t size;
    int changed; /* its value was redacted */
} dl_header_t;

/* A header's value as it may be sent: REDACT_MARK when its name names a secret, else what redact_text
 * leaves of it. 1 (and *v, *size replaced by an owned copy) when it was redacted. */
static int redact_header(const char *name, void **v, size_t *size) {
    if (!*v || strncmp(name, "raikoo.dlq.", 11) == 0)
        return 0; /* no value, or our own (why and where from: never the message's text) */
    if (*size == strlen(REDACT_MARK) && memcmp(*v, REDACT_MARK, *size) == 0)
        return 0; /* redacted already (a dead letter of a dead letter) */
    if (redact_key_is_secret(name, strlen(name))) {
        free(*v);
        *v = xstrdup(REDACT_MARK);
        *size = strlen(REDACT_MARK);
        return 1;
    }
    redacted_t r;
    if (redact_text(*v, *size, &r) == REDACT_NONE)
        return 0;
    free(*v);
    *v = r.value; /* ours now */
    *size = r.len;
    return 1;
}

void dead_letter_redact(const rd_kafka_message_t *m, rd_kafka_headers_t **h, redacted_t *out,
                        redacted_t *key_out) {
    const char *name;
    const void *value;
    size_t size;
    int binary = 0, headers_redacted = 0;
    dl_header_t *all = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; rd_kafka_header_get_all(*h, i, &name, &value, &size) == 0; i++) {
        binary |= strncasecmp(name, "ce_", 3) == 0;
        all = xgrow(all, n + 1, &cap, sizeof(*all), 8);
        dl_header_t *e = &all[n++];
        e->name = xstrdup(name);
        e->size = value ? size : 0;
        e->value = value ? xmalloc(size + 1) : NULL;
        if (value) {
            memcpy(e->value, value, size);
            ((char *)e->value)[size] = '\0';
        }
        e->changed = redact_header(e->name, &e->value, &e->size);
        headers_redacted |= e->changed;
    }
    /* When any value was redacted, the headers are made again from all[] in one pass, in their order, names
     * kept, each value as redacted on its own (removing and re-adding by name was quadratic in the headers'
     * count: a producer could stall the worker with a message of many small headers). */
    if (headers_redacted) {
        rd_kafka_headers_t *fresh = rd_kafka_headers_new(n + 1);
        for (size_t i = 0; i < n; i++)
            rd_kafka_header_add(fresh, all[i].name, -1, all[i].value,
                                all[i].value ? (ssize_t)all[i].size : 0);
        rd_kafka_headers_destroy(*h);
        *h = fresh;
    }
    for (size_t i = 0; i < n; i++) {
        free(all[i].name);
        free(all[i].value);
    }
    free(all);
    redact_value(m->payload, m->payload ? m->len : 0, binary, out);
    /* The key: the same rules as a header value (a producer may key a command by anything, a code too). */
    if (m->key)
        redact_text(m->key, m->key_len, key_out);
    else
        memset(key_out, 0, sizeof(*key_out));
    if (out->kind != REDACT_NONE || headers_redacted || key_out->kind != REDACT_NONE)
        rd_kafka_header_add(*h, "raikoo.dlq.redacted", -1,
                            redact_kind_name(out->kind != REDACT_NONE ? out->kind : REDACT_FIELDS), -1);
}

const void *dead_letter_value(const rd_kafka_message_t *m, const redacted_t *r, size_t *len) {
    if (r->kind != REDACT_NONE) {
        *len = r->len;
        return r->value;
    }
    *len = m->len;
    return m->payload;
}

const void *dead_letter_key(const rd_kafka_message_t *m, const redacted_t *k, size_t *len) {
    if (k->kind != REDACT_NONE) {
        *len = k->len;
        return k->value;
    }
    *len = m->key ? m->key_len : 0;
    return m->key;
}

/* Delivery of the dead letters: each produced message carries a pointer to its slot, which the delivery
 * report sets. A slot lives until its report came: a batch dropped while one is in flight orphans it, and
 * the report frees it (deadletter_batch_free). */
enum { DL_PENDING = 0, DL_DELIVERED = 1, DL_FAILED = 2 };
typedef struct dl_slot {
    int state;
    int orphan; /* its batch is gone: the report frees the slot */
} dl_slot_t;
static rd_kafka_resp_err_t dl_last_err; /* of the last failed delivery, for the log line */
static int dl_failing;                  /* the topic could not be written (logged once until it can) */

void deadletter_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    dl_slot_t *slot = m->_private;
    if (m->err)
        dl_last_err = m->err;
    if (!slot)
        return;
    if (slot->orphan)
        free(slot);
    else
        slot->state = m->err ? DL_FAILED : DL_DELIVERED;
}

/* The dead letter's headers (docs/MESSAGES.md): the original message's own headers, but any raikoo.dlq.* of
 * an earlier dead-lettering, so that a replay sends the message as it came (binary mode too); a
 * content-type saying structured mode when it had none and no ce_ header (the mode the worker read it
 * in); then why and where it came from. The reason names positions and our own words, never the text. */
static rd_kafka_headers_t *dead_letter_headers(const rd_kafka_message_t *m, const char *reason,
                                               const char *group) {
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
    rd_kafka_header_add(h, "raikoo.dlq.group", -1, group ? group : "", -1);
    return h;
}

/* Produces a message that is not a command to the dead-letter topic, with why and where it came from; the
 * delivery report lands in *slot. */
static rd_kafka_resp_err_t dead_letter(rd_kafka_t *producer, const char *topic, const char *group,
                                       const rd_kafka_message_t *m, const char *reason, dl_slot_t *slot) {
    rd_kafka_headers_t *h = dead_letter_headers(m, reason, group);
    redacted_t r, k; /* never the secrets of the original */
    dead_letter_redact(m, &h, &r, &k);
    size_t len, key_len;
    const void *value = dead_letter_value(m, &r, &len);
    const void *key = dead_letter_key(m, &k, &key_len);
    slot->state = DL_PENDING;
    rd_kafka_resp_err_t err =
        rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE((void *)value, len),
                          RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_HEADERS(h),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(slot), RD_KAFKA_V_END);
    redacted_free(&r);
    redacted_free(&k);
    if (err) {
        rd_kafka_headers_destroy(h);
        slot->state = DL_FAILED;
    }
    return err;
}

/* One dead letter of a batch: where its message is (the key across offers), why, and its delivery. */
typedef struct dl_entry {
    char *topic;
    int32_t partition;
    int64_t offset;
    char *reason;
    dl_slot_t *slot;
} dl_entry_t;

struct deadletter_batch {
    dl_entry_t *e;
    size_t n;
    /* Every message of the batch (dead letter or not), to know the same batch when it is offered again. */
    struct dl_key {
        char *topic;
        int32_t partition;
        int64_t offset;
    } * keys;
    size_t nkeys;
};

static int same_message(const char *topic, int32_t partition, int64_t offset, const rd_kafka_message_t *m) {
    return partition == m->partition && offset == m->offset &&
           strcmp(topic, rd_kafka_topic_name(m->rkt)) == 0;
}

deadletter_batch_t *deadletter_batch_new(rd_kafka_message_t *const *m, const char *const *reasons, size_t n) {
    deadletter_batch_t *b = xcalloc(1, sizeof(*b));
    b->keys = xcalloc(n ? n : 1, sizeof(*b->keys));
    b->e = xcalloc(n ? n : 1, sizeof(*b->e));
    for (size_t i = 0; i < n; i++) {
        struct dl_key *k = &b->keys[b->nkeys++];
        k->topic = xstrdup(rd_kafka_topic_name(m[i]->rkt));
        k->partition = m[i]->partition;
        k->offset = m[i]->offset;
        if (!reasons[i])
            continue;
        dl_entry_t *e = &b->e[b->n++];
        e->topic = xstrdup(k->topic);
        e->partition = k->partition;
        e->offset = k->offset;
        e->reason = xstrdup(reasons[i]);
        e->slot = xcalloc(1, sizeof(*e->slot));
        e->slot->state = DL_FAILED; /* not sent yet */
    }
    return b;
}

int deadletter_batch_same(const deadletter_batch_t *b, rd_kafka_message_t *const *m, size_t n) {
    if (!b || n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < b->nkeys && !same_message(b->keys[j].topic, b->keys[j].partition, b->keys[j].offset, m[i]))
            j++;
        if (j == b->nkeys)
            return 0;
    }
    return 1;
}

void deadletter_batch_free(deadletter_batch_t *b) {
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->e[i].topic);
        free(b->e[i].reason);
        if (b->e[i].slot->state == DL_PENDING)
            b->e[i].slot->orphan = 1; /* its report is still to come: it frees the slot */
        else
            free(b->e[i].slot);
    }
    for (size_t i = 0; i < b->nkeys; i++)
        free(b->keys[i].topic);
    free(b->keys);
    free(b->e);
    free(b);
}

/* How long one offer waits for the reports of what it sent: a written topic confirms within it, a topic
 * away leaves them in flight to the next offer (the consumer loop polls Kafka meanwhile). */
#define DL_OFFER_WAIT_MS 1000

int deadletter_batch_store(deadletter_batch_t *b, rd_kafka_t *producer, const char *topic, const char *group,
                           rd_kafka_message_t *const *m, size_t n) {
    char what[256] = "";
    /* Those of the offered messages whose dead letter failed (or was never sent) are sent (again); one in
     * flight is left to its report; one of a message no longer offered (its partition revoked) is its next
     * owner's. */
    dl_entry_t **offered = xcalloc(b->n ? b->n : 1, sizeof(*offered));
    size_t noffered = 0;
    for (size_t i = 0; i < b->n; i++) {
        dl_entry_t *e = &b->e[i];
        const rd_kafka_message_t *msg = NULL;
        for (size_t j = 0; j < n && !msg; j++)
            if (same_message(e->topic, e->partition, e->offset, m[j]))
                msg = m[j];
        if (!msg)
            continue;
        offered[noffered++] = e;
        if (e->slot->state != DL_FAILED)
            continue;
        rd_kafka_resp_err_t err = dead_letter(producer, topic, group, msg, e->reason, e->slot);
        if (err)
            text_printf(what, sizeof(what), "%s", rd_kafka_err2str(err));
    }
    /* Reports: every one of a written topic comes within moments; the rest stay in flight. */
    int pending = 1;
    for (int waited = 0; pending; waited += 100) {
        pending = 0;
        for (size_t i = 0; i < noffered; i++)
            pending |= offered[i]->slot->state == DL_PENDING;
        if (!pending || waited >= DL_OFFER_WAIT_MS || !worker_running())
            break;
        rd_kafka_flush(producer, 100);
    }
    size_t stored = 0, failed = 0;
    const dl_entry_t *first = NULL;
    for (size_t i = 0; i < noffered; i++) {
        if (offered[i]->slot->state == DL_DELIVERED) {
            stored++;
            continue;
        }
        if (offered[i]->slot->state == DL_FAILED)
            failed++;
        if (!first)
            first = offered[i];
    }
    free(offered);
    if (!first) {
        if (dl_failing && stored > 0)
            log_info(NULL, "dead-letter topic %s written again: %zu message(s) stored, offsets move on",
                     topic, stored);
        if (stored > 0)
            dl_failing = 0;
        return 0;
    }
    if (!worker_running()) {
        log_error(NULL, "shutting down with dead letters undelivered: offsets not committed past them");
        return -1;
    }
    if (failed > 0 && !dl_failing) {
        log_error(
            NULL,
            "dead-letter topic %s cannot be written (%s): offsets stay before %s/%d/%lld and the worker "
            "retries until it can, polling Kafka meanwhile (does the topic exist? raikoo topics create)",
            topic, what[0] ? what : rd_kafka_err2str(dl_last_err), first->topic, (int)first->partition,
            (long long)first->offset);
        dl_failing = 1;
    }
    return -1;
}
