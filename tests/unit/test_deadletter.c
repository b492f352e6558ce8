/* Unit tests of a dead letter's redaction: no secret leaves in a header value or the key either. */
#include <stdlib.h>

#include "deadletter.h"
#include "unit.h"

/* The value of the last header called name, as a string ("" when it has none; NULL when absent). */
static const char *last(rd_kafka_headers_t *h, const char *name, char *buf, size_t size) {
    const void *v;
    size_t n;
    if (rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    snprintf(buf, size, "%.*s", (int)n, v ? (const char *)v : "");
    return buf;
}

static void headers_and_key_are_redacted(void) {
    const char *code = "QX7R-M2KD-9PLV";
    rd_kafka_message_t m;
    memset(&m, 0, sizeof(m));
    m.payload = (void *)"{\"invitation_id\":\"x\"}";
    m.len = strlen(m.payload);
    m.key = (void *)code;
    m.key_len = strlen(code);
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
    rd_kafka_header_add(h, "ce_subject", -1, code, -1);
    rd_kafka_header_add(h, "ce_source", -1, "/tests/dlq", -1);
    rd_kafka_header_add(h, "x-note", -1, "first", -1);
    rd_kafka_header_add(h, "x-note", -1, "{\"otp\":\"123456\",\"n\":1}", -1);
    rd_kafka_header_add(h, "ce_comment", -1, "the pin is 1234", -1);
    rd_kafka_header_add(h, "x-password", -1, "hunter2", -1);
    rd_kafka_header_add(h, "x-empty", -1, NULL, 0);
    rd_kafka_header_add(h, "raikoo.dlq.reason", -1, "not a command", -1);
    redacted_t r, k;
    dead_letter_redact(&m, &h, &r, &k);
    char b[256];
    CHECK(r.kind == REDACT_NONE);
    CHECK(k.kind != REDACT_NONE);
    size_t klen = 0;
    const char *key = dead_letter_key(&m, &k, &klen);
    CHECK(klen == strlen(REDACT_MARK) && memcmp(key, REDACT_MARK, klen) == 0);
    CHECK_STR(last(h, "ce_subject", b, sizeof(b)), REDACT_MARK);
    CHECK_STR(last(h, "ce_specversion", b, sizeof(b)), "1.0");
    CHECK_STR(last(h, "ce_source", b, sizeof(b)), "/tests/dlq");
    CHECK_STR(last(h, "x-note", b, sizeof(b)), "{\"otp\":\"[redacted]\",\"n\":1}");
    CHECK_STR(last(h, "ce_comment", b, sizeof(b)), REDACT_MARK); /* cannot be cut safely: whole */
    CHECK_STR(last(h, "x-password", b, sizeof(b)), REDACT_MARK);
    CHECK_STR(last(h, "x-empty", b, sizeof(b)), "");
    CHECK_STR(last(h, "raikoo.dlq.reason", b, sizeof(b)), "not a command");
    CHECK_STR(last(h, "raikoo.dlq.redacted", b, sizeof(b)), "fields");
    /* Both x-note headers are kept, in their order, each redacted on its own. */
    const void *v;
    size_t n;
    CHECK(rd_kafka_header_get(h, 0, "x-note", &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR && n == 5 &&
          memcmp(v, "first", 5) == 0);
    CHECK(rd_kafka_header_get(h, 1, "x-note", &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR);
    /* No trace of a secret anywhere. */
    const char *name;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &n) == 0; i++) {
        CHECK(!v || !memmem(v, n, "QX7R", 4));
        CHECK(!v || !memmem(v, n, "123456", 6));
        CHECK(!v || !memmem(v, n, "1234", 4));
        CHECK(!v || !memmem(v, n, "hunter2", 7));
    }
    redacted_free(&r);
    redacted_free(&k);
    rd_kafka_headers_destroy(h);
}

static void a_letter_without_secrets_is_kept_as_it_came(void) {
    rd_kafka_message_t m;
    memset(&m, 0, sizeof(m));
    m.payload = (void *)"{\"id\":1}";
    m.len = strlen(m.payload);
    m.key = (void *)"org-1";
    m.key_len = 5;
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "traceparent", -1, "00-abc-def-01", -1);
    rd_kafka_header_add(h, "x-note", -1, REDACT_MARK, -1); /* a dead letter of a dead letter */
    redacted_t r, k;
    dead_letter_redact(&m, &h, &r, &k);
    char b[64];
    CHECK(r.kind == REDACT_NONE && k.kind == REDACT_NONE);
    size_t klen = 0;
    CHECK(dead_letter_key(&m, &k, &klen) == m.key && klen == 5);
    CHECK(last(h, "raikoo.dlq.redacted", b, sizeof(b)) == NULL);
    CHECK_STR(last(h, "traceparent", b, sizeof(b)), "00-abc-def-01");
    m.key = NULL;
    m.key_len = 0;
    redacted_free(&k);
    dead_letter_redact(&m, &h, &r, &k);
    CHECK(k.kind == REDACT_NONE && dead_letter_key(&m, &k, &klen) == NULL && klen == 0);
    redacted_free(&r);
    redacted_free(&k);
    rd_kafka_headers_destroy(h);
}

/* Thousands of small headers, every other one with a code: each redacted on its own, names, count and order
 * kept (the headers are made again in one pass; the earlier remove-and-add by name was quadratic). */
static void many_headers_keep_their_order(void) {
    enum { N = 5000 };
    rd_kafka_message_t m;
    memset(&m, 0, sizeof(m));
    m.payload = (void *)"{}";
    m.len = 2;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "x-%d", i);
        rd_kafka_header_add(h, name, -1, i % 2 ? "QX7R-M2KD-9PLV" : "plain", -1);
    }
    redacted_t r, k;
    dead_letter_redact(&m, &h, &r, &k);
    const char *hn;
    const void *v;
    size_t n, count = 0;
    int ok = 1;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &hn, &v, &n) == 0; i++) {
        if (strncmp(hn, "x-", 2) != 0)
            continue;
        snprintf(name, sizeof(name), "x-%zu", count);
        ok &= strcmp(hn, name) == 0;
        ok &= count % 2 ? (n == strlen(REDACT_MARK) && memcmp(v, REDACT_MARK, n) == 0)
                        : (n == 5 && memcmp(v, "plain", 5) == 0);
        count++;
    }
    CHECK(ok);
    CHECK(count == N);
    char b[64];
    CHECK_STR(last(h, "raikoo.dlq.redacted", b, sizeof(b)), "fields");
    redacted_free(&r);
    redacted_free(&k);
    rd_kafka_headers_destroy(h);
}

const unit_test_t deadletter_tests[] = {
    {"deadletter: thousands of headers keep names, count and order", many_headers_keep_their_order},
    {"deadletter: headers and key are redacted", headers_and_key_are_redacted},
    {"deadletter: a letter without secrets is kept as it came", a_letter_without_secrets_is_kept_as_it_came},
    {NULL, NULL},
};
