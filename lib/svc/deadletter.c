/* Redacted dead letters (see deadletter.h). */
#include "deadletter.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text.h"

void dead_letter_redact(const rd_kafka_message_t *m, rd_kafka_headers_t *h, redacted_t *out) {
    const char *name;
    const void *value;
    size_t size;
    int binary = 0, headers_redacted = 0;
    char **secret = NULL;
    size_t nsecret = 0, cap = 0;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &value, &size) == 0; i++) {
        binary |= strncasecmp(name, "ce_", 3) == 0;
        if (strncmp(name, "raikoo.dlq.", 11) != 0 && redact_key_is_secret(name, strlen(name)) && value &&
            !(size == strlen(REDACT_MARK) && memcmp(value, REDACT_MARK, size) == 0)) {
            secret = xgrow(secret, nsecret + 1, &cap, sizeof(*secret), 4);
            secret[nsecret++] = xstrdup(name);
        }
    }
    for (size_t i = 0; i < nsecret; i++) {
        rd_kafka_header_remove(h, secret[i]); /* every header of that name: each gets the mark */
        rd_kafka_header_add(h, secret[i], -1, REDACT_MARK, -1);
        headers_redacted = 1;
        free(secret[i]);
    }
    free(secret);
    redact_value(m->payload, m->payload ? m->len : 0, binary, out);
    if (out->kind != REDACT_NONE || headers_redacted)
        rd_kafka_header_add(h, "raikoo.dlq.redacted", -1,
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
