/* Redaction of message values (see redact.h). */
#include "redact.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd.h"
#include "secret.h"
#include "strbuf.h"
#include "text.h"

/* Words of a key that make it a secret's name. */
static const char *const secret_words[] = {"code",   "otp",  "password", "passwd", "pwd", "passphrase",
                                           "secret", "hash", "token",    "pepper", "pin", NULL};
/* Looked for anywhere in a key, and anywhere in a value that is not JSON (case ignored). */
static const char *const secret_parts[] = {"password", "passwd", "secret", NULL};
/* Looked for anywhere in a value that is not JSON: a value holding none of them has no secret key. */
static const char *const raw_names[] = {"code", "otp",   "pass",   "pwd", "secret",
                                        "hash", "token", "pepper", "pin", NULL};

/* 1 when s[0..m) is part (ASCII case ignored; NUL bytes are bytes). */
static int same_ci(const char *s, const char *part, size_t m) {
    for (size_t k = 0; k < m; k++)
        if (tolower((unsigned char)s[k]) != tolower((unsigned char)part[k]))
            return 0;
    return 1;
}

static int has_part(const char *s, size_t n, const char *part) {
    size_t m = strlen(part);
    int first = tolower((unsigned char)part[0]);
    for (size_t i = 0; i + m <= n; i++)
        if (tolower((unsigned char)s[i]) == first && same_ci(s + i, part, m))
            return 1;
    return 0;
}

static int is_spec_secret(const char *key, size_t len) {
    for (int t = 0; t < CMD_TYPE_COUNT; t++)
        for (const cmd_field_t *f = cmd_specs[t].fields; f->name; f++)
            if (f->kind == FIELD_SECRET && strlen(f->name) == len && same_ci(key, f->name, len))
                return 1;
    return 0;
}

int redact_key_is_secret(const char *key, size_t len) {
    if (is_spec_secret(key, len))
        return 1;
    for (const char *const *p = secret_parts; *p; p++)
        if (has_part(key, len, *p))
            return 1;
    /* Names written without separators (passcode, accesstoken, invitecode): the parts the scan of a value
     * that is not JSON looks for, so that both paths blank the same fields. */
    for (const char *const *p = raw_names; *p; p++)
        if (has_part(key, len, *p))
            return 1;
    size_t i = 0;
    while (i < len) {
        while (i < len && !isalnum((unsigned char)key[i]))
            i++;
        size_t start = i;
        /* a word: letters and digits, up to a change from lower to upper case */
        while (i < len && isalnum((unsigned char)key[i])) {
            if (i > start && isupper((unsigned char)key[i]) && islower((unsigned char)key[i - 1]))
                break;
            i++;
        }
        size_t n = i - start;
        for (const char *const *w = secret_words; n && *w; w++)
            if (strlen(*w) == n && same_ci(key + start, *w, n))
                return 1;
    }
    return 0;
}

/* ---- secrets by their shape, inside any text ---- */

static int is_word(unsigned char c) {
    return isalnum(c) || c == '-';
}

/* Length of a code in display form (XXXX-XXXX-XXXX, letters and digits, alone as a word) at s[i], or 0. */
static size_t code_shape(const char *s, size_t n, size_t i) {
    if (i + CODE_DISPLAY_LEN > n || (i > 0 && is_word((unsigned char)s[i - 1])))
        return 0;
    for (size_t k = 0; k < CODE_DISPLAY_LEN; k++) {
        unsigned char c = (unsigned char)s[i + k];
        if ((k == 4 || k == 9) ? c != '-' : !isalnum(c))
            return 0;
    }
    if (i + CODE_DISPLAY_LEN < n && is_word((unsigned char)s[i + CODE_DISPLAY_LEN]))
        return 0;
    return CODE_DISPLAY_LEN;
}

/* Length of an Argon2 hash string at s[i] ($argon2 up to a quote, white space or a JSON delimiter), or 0. */
static size_t hash_shape(const char *s, size_t n, size_t i) {
    static const char lead[] = "$argon2";
    if (i + sizeof(lead) - 1 > n || !same_ci(s + i, lead, sizeof(lead) - 1))
        return 0;
    size_t k = i;
    while (k < n && !strchr("\"' \t\r\n,}]", s[k]) && s[k] != '\0')
        k++;
    return k - i;
}

/* Appends s[0..n) to out with every code or hash by its shape replaced by REDACT_MARK; how many were. */
static int add_masked(sb_t *out, const char *s, size_t n) {
    int masked = 0;
    size_t from = 0;
    for (size_t i = 0; i < n;) {
        size_t m = code_shape(s, n, i);
        if (!m)
            m = hash_shape(s, n, i);
        if (m) {
            sb_addn(out, s + from, i - from);
            sb_add(out, REDACT_MARK);
            masked++;
            i += m;
            from = i;
        } else {
            i++;
        }
    }
    sb_addn(out, s + from, n - from);
    return masked;
}

/* ---- JSON ---- */

/* Blanks the secrets of a JSON tree in place; how many. */
static int redact_tree(json_t *v) {
    int n = 0;
    if (json_is_object(v)) {
        const char *key;
        size_t key_len;
        json_t *child;
        json_object_keylen_foreach(v, key, key_len, child) {
            if (redact_key_is_secret(key, key_len)) {
                if (!json_is_string(child) || strcmp(json_string_value(child), REDACT_MARK) != 0) {
                    json_object_setn_new(v, key, key_len, json_string(REDACT_MARK));
                    n++;
                }
            } else {
                n += redact_tree(child);
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) n += redact_tree(child);
    } else if (json_is_string(v)) {
        sb_t b = {0};
        int m = add_masked(&b, json_string_value(v), json_string_length(v));
        if (m) {
            json_string_setn(v, b.s, b.n);
            n += m;
        }
        free(b.s);
    }
    return n;
}

/* ---- not JSON: a scan of the bytes ---- */

static size_t skip_ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

/* Index just after the string that starts with the quote at s[i] (n when it does not end). */
static size_t string_end(const char *s, size_t n, size_t i) {
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n;
}

/* Index just after the JSON value that starts at s[i]: a string, an object or array (to its matching
 * bracket, strings skipped), or anything else up to a delimiter or white space. n when it does not end. */
static size_t value_end(const char *s, size_t n, size_t i) {
    if (i >= n)
        return n;
    if (s[i] == '"')
        return string_end(s, n, i);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            if (s[i] == '"') {
                i = string_end(s, n, i);
                continue;
            }
            if (s[i] == '{' || s[i] == '[')
                depth++;
            else if ((s[i] == '}' || s[i] == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return n;
    }
    while (i < n && !strchr(",}] \t\r\n", s[i]) && s[i] != '\0')
        i++;
    return i;
}

/* The scan: every string followed by a colon is a key; the value of a secret key becomes "[redacted]",
 * which must then be followed by a delimiter (or the end). What is not a secret key and its value is copied
 * to *shadow too: it must hold no secret name and no \u escape. -1 when the value cannot be redacted so. */
static int redact_scan(const char *s, size_t n, sb_t *out) {
    sb_t shadow = {0};
    int redacted = 0, ok = 1;
    size_t i = 0;
    while (i < n && ok) {
        if (s[i] != '"') {
            sb_addc(out, s[i]);
            sb_addc(&shadow, s[i]);
            i++;
            continue;
        }
        size_t j = string_end(s, n, i);
        size_t k = skip_ws(s, n, j);
        int closed = j > i + 1 && s[j - 1] == '"' && (j - i >= 2);
        if (!closed || k >= n || s[k] != ':' || !redact_key_is_secret(s + i + 1, j - i - 2)) {
            sb_addn(out, s + i, j - i);
            sb_addn(&shadow, s + i, j - i);
            i = j;
            continue;
        }
        k = skip_ws(s, n, k + 1);
        sb_addn(out, s + i, k - i); /* the key, the colon and the white space */
        size_t e = value_end(s, n, k);
        sb_add(out, "\"" REDACT_MARK "\"");
        redacted++;
        size_t after = skip_ws(s, n, e);
        if (e == k || (after < n && !strchr(",}]", s[after])))
            ok = 0; /* no value, or one that runs on: where it ends is a guess */
        i = e;
    }
    if (ok) {
        for (const char *const *p = raw_names; *p && ok; p++)
            ok = !has_part(shadow.s ? shadow.s : "", shadow.n, *p);
        for (size_t t = 0; ok && t < CMD_TYPE_COUNT; t++)
            for (const cmd_field_t *f = cmd_specs[t].fields; ok && f->name; f++)
                if (f->kind == FIELD_SECRET)
                    ok = !has_part(shadow.s ? shadow.s : "", shadow.n, f->name);
        ok = ok && !has_part(shadow.s ? shadow.s : "", shadow.n, "\\u");
    }
    free(shadow.s);
    return ok ? redacted : -1;
}

static int any_name(const char *s, size_t n) {
    for (const char *const *p = raw_names; *p; p++)
        if (has_part(s, n, *p))
            return 1;
    for (int t = 0; t < CMD_TYPE_COUNT; t++)
        for (const cmd_field_t *f = cmd_specs[t].fields; f->name; f++)
            if (f->kind == FIELD_SECRET && has_part(s, n, f->name))
                return 1;
    return has_part(s, n, "\\u");
}

/* ---- the value ---- */

/* The placeholder carries the length only: a digest of a value that is little more than a code (about 60
 * bits) could be searched offline by anyone who reads the topic; the headers say where the message was. */
static redact_kind_t whole(const char *buf, size_t len, redacted_t *out) {
    (void)buf;
    sb_t b = {0};
    sb_printf(&b, "{\"" REDACT_WHOLE_KEY "\":{\"bytes\":%zu}}", len);
    out->len = b.n;
    out->value = sb_take(&b);
    return out->kind = REDACT_WHOLE;
}

static redact_kind_t fields(sb_t *b, redacted_t *out) {
    out->len = b->n;
    out->value = sb_take(b);
    return out->kind = REDACT_FIELDS;
}

redact_kind_t redact_value(const char *buf, size_t len, int data_only, redacted_t *out) {
    memset(out, 0, sizeof(*out));
    if (!buf)
        buf = "", len = 0;
    json_error_t e;
    json_t *root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (root) {
        if (data_only && !json_is_object(root)) {
            json_decref(root);
            return whole(buf, len, out);
        }
        sb_t probe = {0};
        int shaped = add_masked(&probe, buf, len);
        free(probe.s);
        if (!shaped && !any_name(buf, len)) {
            json_decref(root);
            return out->kind = REDACT_NONE;
        }
        int n = redact_tree(root);
        char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        json_decref(root);
        if (!text)
            return whole(buf, len, out);
        /* redact_tree blanks values; a code or hash written as a key (or anywhere the tree walk does not
         * rewrite) is still in the text: then nothing of it is sent. */
        sb_t probe2 = {0};
        int left = add_masked(&probe2, text, strlen(text));
        free(probe2.s);
        if (left) {
            free(text);
            return whole(buf, len, out);
        }
        sb_t b = {0};
        sb_add(&b, text);
        free(text);
        if (n == 0) {
            /* Nothing secret in the tree; but a key given twice keeps only its last value there, so the
             * bytes as they came are sent only when no key is given twice (else the tree, written again). */
            json_t *strict =
                json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &e);
            int unique = strict != NULL;
            json_decref(strict);
            if (unique) {
                free(b.s);
                return out->kind = REDACT_NONE;
            }
        }
        return fields(&b, out);
    }
    if (len == 0)
        return out->kind = REDACT_NONE;
    if (data_only)
        return whole(buf, len, out);
    sb_t scanned = {0};
    int n = any_name(buf, len) ? redact_scan(buf, len, &scanned) : (sb_addn(&scanned, buf, len), 0);
    if (n < 0) {
        free(scanned.s);
        return whole(buf, len, out);
    }
    sb_t b = {0};
    n += add_masked(&b, scanned.s ? scanned.s : "", scanned.n);
    free(scanned.s);
    if (n == 0) {
        free(b.s);
        return out->kind = REDACT_NONE;
    }
    return fields(&b, out);
}

redact_kind_t redact_text(const char *buf, size_t len, redacted_t *out) {
    if (redact_value(buf, len, 0, out) == REDACT_WHOLE) {
        free(out->value);
        out->value = xstrdup(REDACT_MARK);
        out->len = strlen(REDACT_MARK);
    }
    return out->kind;
}

void redacted_free(redacted_t *r) {
    free(r->value);
    memset(r, 0, sizeof(*r));
}

const char *redact_kind_name(redact_kind_t kind) {
    return kind == REDACT_FIELDS ? "fields" : kind == REDACT_WHOLE ? "whole" : "none";
}
