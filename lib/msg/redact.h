/* Redaction of a message value before it goes where people and tools read it (the dead-letter topic): no
 * code, OTP, password or password hash leaves in it. Pure functions on bytes (no Kafka), fuzzed by
 * tests/fuzz/fuzz_redact.c. docs/REDACTION.md says what is blanked and why.
 *
 * - JSON (any value, any depth): the value of every key that names a secret (redact_key_is_secret) becomes
 *   REDACT_MARK, and inside every other string a code in display form (XXXX-XXXX-XXXX) or an Argon2 hash
 *   ($argon2...) becomes REDACT_MARK; the value is written again (compact, keys in their order).
 * - Not JSON (malformed, cut, binary): the same by a scan of the bytes, which must recognise every secret
 *   name it sees as a key followed by a value it can delimit; when it cannot (a secret name anywhere else, a
 *   \u escape, a value that runs on), the whole value becomes a placeholder with its length and SHA-256.
 * - data_only (CloudEvents binary mode: the value is the command's data): a value that is not a JSON object
 *   becomes the placeholder (it may be a bare code).
 * A value with none of these is kept byte for byte (REDACT_NONE). */
#ifndef RAIKOO_REDACT_H
#define RAIKOO_REDACT_H

#include <stddef.h>

#define REDACT_MARK "[redacted]"
/* The placeholder of a value redacted whole: {"raikoo_redacted":{"bytes":N}}. */
#define REDACT_WHOLE_KEY "raikoo_redacted"

typedef enum {
    REDACT_NONE,   /* nothing secret: the value as it came */
    REDACT_FIELDS, /* secret fields or spans blanked: the rest is as it came (JSON written again) */
    REDACT_WHOLE   /* replaced whole by the placeholder */
} redact_kind_t;

typedef struct redacted {
    redact_kind_t kind;
    char *value; /* owned, NULL for REDACT_NONE (use the original value) */
    size_t len;
} redacted_t;

/* 1 when a JSON key or header name names a secret: a FIELD_SECRET field of any command (lib/msg/cmd.c), or
 * a name made of words (split at _, -, ., and lower-to-upper case changes) among code, otp, password,
 * passwd, pwd, passphrase, secret, hash, token, pepper, pin, or holding "password", "passwd" or "secret", or
 * holding any of code, otp, pass, pwd, secret, hash, token, pepper, pin anywhere (invitecode, accesstoken:
 * the parts the scan of non-JSON values looks for; a name such as "zipcode" is blanked too, by design). */
int redact_key_is_secret(const char *key, size_t len);

/* Redacts buf[0..len) into *out (see above; free with redacted_free). Returns out->kind. */
redact_kind_t redact_value(const char *buf, size_t len, int data_only, redacted_t *out);

/* Redacts a Kafka header value or message key buf[0..len) into *out by the same rules as a value that is
 * not data_only: spans (a code, a hash, a secret key's value) become REDACT_MARK (REDACT_FIELDS); when the
 * value must go whole, it becomes REDACT_MARK alone (REDACT_WHOLE; short text, no JSON placeholder).
 * Returns out->kind; free with redacted_free. */
redact_kind_t redact_text(const char *buf, size_t len, redacted_t *out);

void redacted_free(redacted_t *r);

/* "none", "fields" or "whole": the raikoo.dlq.redacted header of a dead letter. */
const char *redact_kind_name(redact_kind_t kind);

#endif
