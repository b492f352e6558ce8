/* Fuzzes redact_value (lib/msg/redact.h), what every dead letter goes through. The input's first byte says
 * data_only (bit 0); the rest is the value. Invariants: the redacted value of the input, and of the input
 * with a secret planted in it (after it, as "password", and in its middle, as "code"), never holds the
 * planted secret; a whole redaction is the placeholder with the right length and SHA-256; a redacted JSON
 * value reads back with every secret key's value the mark; a value left as it was holds no planted secret;
 * redact_text (a dead letter's header values and key) decides as redact_value and never keeps the secret. */
#include <jansson.h>
#include <sodium.h>

#include "fuzz.h"
#include "redact.h"
#include "strbuf.h"

#define PLANTED "Zx7Qv9Wk2Lm"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (sodium_init() < 0)
        exit(1);
    return 0;
}

static int contains(const char *s, size_t n, const char *what) {
    size_t m = strlen(what);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(s + i, what, m) == 0)
            return 1;
    return 0;
}

static void check_json(const json_t *v) {
    if (json_is_object(v)) {
        const char *key;
        size_t key_len;
        json_t *child;
        json_object_keylen_foreach((json_t *)v, key, key_len, child) {
            if (redact_key_is_secret(key, key_len))
                FUZZ_ASSERT(json_is_string(child) && strcmp(json_string_value(child), REDACT_MARK) == 0,
                            "secret key %s kept its value", key);
            else
                check_json(child);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) check_json(child);
    }
}

static void check(const char *buf, size_t len, int data_only, int planted) {
    redacted_t r;
    redact_kind_t k = redact_value(buf, len, data_only, &r);
    FUZZ_ASSERT(k == r.kind, "returned kind is not the kind");
    const char *out = k == REDACT_NONE ? buf : r.value;
    size_t out_len = k == REDACT_NONE ? len : r.len;
    FUZZ_ASSERT(k == REDACT_NONE ? r.value == NULL : r.value != NULL, "value and kind disagree");
    if (planted)
        FUZZ_ASSERT(!contains(out, out_len, PLANTED), "the planted secret is still there (%s)",
                    redact_kind_name(k));
    if (k == REDACT_WHOLE) {
        char want[160];
        snprintf(want, sizeof(want), "{\"" REDACT_WHOLE_KEY "\":{\"bytes\":%zu}}", len);
        FUZZ_ASSERT(r.len == strlen(want) && memcmp(r.value, want, r.len) == 0, "placeholder is not %s",
                    want);
    }
    json_t *root = json_loadb(out, out_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (root) {
        check_json(root);
        json_decref(root);
    }
    if (k != REDACT_NONE) { /* once more: never worse, never the placeholder of a placeholder needed */
        redacted_t again;
        redact_value(r.value, r.len, 0, &again);
        if (k == REDACT_WHOLE)
            FUZZ_ASSERT(again.kind == REDACT_NONE, "a placeholder is redacted again");
        redacted_free(&again);
    }
    redacted_free(&r);
    if (!data_only) { /* redact_text (a header value, a key): the same, but the mark alone for a whole */
        redacted_t t;
        redact_kind_t tk = redact_text(buf, len, &t);
        FUZZ_ASSERT(tk == k, "redact_text decides otherwise than redact_value");
        const char *tout = tk == REDACT_NONE ? buf : t.value;
        size_t tout_len = tk == REDACT_NONE ? len : t.len;
        if (planted)
            FUZZ_ASSERT(!contains(tout, tout_len, PLANTED), "the planted secret is still in the text");
        if (tk == REDACT_WHOLE)
            FUZZ_ASSERT(t.len == strlen(REDACT_MARK) && memcmp(t.value, REDACT_MARK, t.len) == 0,
                        "a text redacted whole is not the mark");
        redacted_free(&t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    int data_only = data[0] & 1;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    int clean = !contains(in, n, PLANTED) && !contains(in, n, "Zx7Qv9Wk2L") && !contains(in, n, "x7Qv9Wk2Lm");
    check(in, n, data_only, 0);
    if (!clean)
        return 0;
    sb_t b = {0};
    sb_addn(&b, in, n);
    sb_add(&b, "\"password\":\"" PLANTED "\"}");
    check(b.s, b.n, data_only, 1);
    b.n = 0;
    sb_addn(&b, in, n / 2);
    sb_add(&b, "\"code\":\"" PLANTED "\"");
    sb_addn(&b, in + n / 2, n - n / 2);
    check(b.s, b.n, data_only, 1);
    free(b.s);
    return 0;
}
