/* Fuzzes cmd_parse: the CloudEvents envelope of a command and every command's data, as the command worker
 * reads them from the commands topic; and cmd_parse_message, the Kafka headers too (binary mode), for an
 * input that starts with "CE\n" (then "name: value" lines, an empty line, and the message value).
 * Invariants:
 *  - the reason is terminated, valid UTF-8, and never quotes the input: run again with every string the
 *    parser does not know turned into Q's, the reason holds no "QQQ" (positions and lengths only);
 *  - a refused command (with an id) makes a result that is valid JSON, built as the worker builds it;
 *  - an accepted one has every required field bound, an id that is a UUID, an e-mail in normal form, and
 *    is refused as too large one byte under its size;
 *  - header path: the same, and a binary-mode command accepted is accepted in structured mode as the same
 *    command (one set of rules): its envelope, dumped as JSON, parses to the same id, type, actor, e-mail;
 *    with the unknown header names, values and value strings turned into Q's, no reason holds "QQQ". */
#include <jansson.h>

#include "cmd.h"
#include "domain.h"
#include "email.h"
#include "event.h"
#include "fuzz.h"
#include "secret.h"

#define MAX_BYTES 65536

/* The result event the command worker publishes for a command it refuses at parse time (the same
 * json_pack as cmdproc's result_event), checked to be valid JSON that reads back. */
static void check_result(const cmd_t *cmd, parse_status_t st, const char *why) {
    domain_result_t res;
    memset(&res, 0, sizeof(res));
    domain_reject(&res, st == PARSE_UNKNOWN_TYPE ? "unknown_command_type" : "invalid_command", why);
    FUZZ_ASSERT(utf8_valid(res.message, strlen(res.message)), "result message is not UTF-8: %s", res.message);
    const char *type_name = cmd->type_name && *cmd->type_name ? cmd->type_name : "unknown";
    json_t *d = json_pack("{s:s, s:s, s:s, s:o, s:s}", "command_id", cmd->id, "command_type", type_name,
                          "status", "rejected", "code", json_string(res.code), "message", res.message);
    FUZZ_ASSERT(d, "the result of a refused command cannot be built (a string jansson refuses)");
    json_object_set_new(d, "org_id", json_null());
    json_t *ev = event_new("raikoo.result.v1", NULL, EVENT_SOURCE_WORKER, cmd->actor, cmd->id, d);
    char *text = event_dump(ev);
    json_decref(ev);
    json_error_t jerr;
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    FUZZ_ASSERT(back, "result is not valid JSON: %s", jerr.text);
    FUZZ_ASSERT(json_is_string(json_object_get(json_object_get(back, "data"), "message")),
                "result lost its message");
    json_decref(back);
    free(text);
}

/* Strings the parser knows: quoting them is no leak. */
static int known(const char *s) {
    static const char *words[] = {"specversion",
                                  "id",
                                  "source",
                                  "type",
                                  "time",
                                  "datacontenttype",
                                  "actorid",
                                  "data",
                                  "1.0",
                                  "application/json",
                                  "org_id",
                                  "user_id",
                                  "owner_user_id",
                                  "invitation_id",
                                  "email",
                                  "name",
                                  "code",
                                  "password_hash",
                                  "owner",
                                  "can_manage_users",
                                  NULL};
    for (const char **w = words; *w; w++)
        if (strcmp(s, *w) == 0)
            return 1;
    static const char prefix[] = "raikoo.command.";
    if (strncmp(s, prefix, sizeof(prefix) - 1) == 0) {
        char name[64];
        size_t n = strlen(s + sizeof(prefix) - 1);
        if (n > 3 && n - 3 < sizeof(name) && strcmp(s + strlen(s) - 3, ".v1") == 0) {
            memcpy(name, s + sizeof(prefix) - 1, n - 3);
            name[n - 3] = '\0';
            if (cmd_type_from_name(name) != CMD_TYPE_UNKNOWN)
                return 1;
        }
    }
    char norm[EMAIL_MAX + 1], why[128];
    return uuid_valid(s) || event_time_valid(s) || email_normalize(s, norm, why, sizeof(why)) == 0;
}

/* s with every character turned into Q (same length in characters). */
static json_t *masked_string(const char *s, size_t len) {
    char *q = xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            q[n++] = 'Q';
    q[n] = '\0';
    json_t *j = json_string(q);
    free(q);
    return j;
}

static json_t *mask(json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        return strlen(s) == len && known(s) ? json_incref(v) : masked_string(s, len);
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x) {
            json_t *k = known(key) ? json_string(key) : masked_string(key, strlen(key));
            json_object_set_new(o, json_string_value(k), mask(x));
            json_decref(k);
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(a, mask(x));
        return a;
    }
    return json_incref(v);
}

static void check_no_echo(const char *buf, size_t len) {
    cmd_t cmd;
    char why[256];
    why[0] = '\0';
    parse_status_t st = cmd_parse(buf, len, MAX_BYTES, &cmd, why, sizeof(why));
    fuzz_check_text("cmd_parse reason", why, sizeof(why));
    FUZZ_ASSERT(st == PARSE_OK || !strstr(why, "QQQ"), "the reason quotes the input: %s", why);
    cmd_free(&cmd);
}

/* ---- The header path: "CE\n" + "name: value" lines + "\n" + value ---- */

#define MAX_HEADERS 16

typedef struct split {
    cmd_header_t h[MAX_HEADERS];
    size_t n;
    const char *value;
    size_t len;
} split_t;

/* Splits a header-path input (after "CE\n") into headers and value. Names and values point into buf, whose
 * ':' and '\n' separators are turned into NULs (names must be terminated). */
static void split_input(char *buf, size_t size, split_t *sp) {
    size_t i = 0;
    sp->n = 0;
    while (i < size && buf[i] != '\n' && sp->n < MAX_HEADERS) {
        char *line = buf + i;
        char *end = memchr(line, '\n', size - i);
        size_t ll = end ? (size_t)(end - line) : size - i;
        char *colon = memchr(line, ':', ll);
        if (end)
            *end = '\0';
        if (colon) {
            *colon = '\0';
            const char *v = colon + 1;
            if (v < line + ll && *v == ' ')
                v++;
            sp->h[sp->n++] = (cmd_header_t){line, v, (size_t)(line + ll - v)};
        } else {
            sp->h[sp->n++] = (cmd_header_t){line, NULL, 0}; /* a header without a value */
        }
        i += ll + (end ? 1 : 0);
    }
    if (i < size && buf[i] == '\n')
        i++;
    sp->value = buf + i;
    sp->len = size - i;
}

static int known_n(const char *s, size_t len) {
    char *c = xstrndup(s, len);
    int k = strlen(c) == len && known(c);
    free(c);
    return k;
}

/* The masked copy of a header name or value into out (Q's unless known; the ce_ prefix and content-type are
 * ours). */
static char *mask_text(const char *s, size_t len, int is_name) {
    if (known_n(s, len) || (is_name && len > 3 && strncmp(s, "ce_", 3) == 0 && known_n(s + 3, len - 3)) ||
        (is_name && strcmp(s, "content-type") == 0))
        return xstrndup(s, len);
    char *q = xmalloc(len + 1);
    size_t n = 0;
    if (is_name && len >= 3 && strncmp(s, "ce_", 3) == 0) {
        memcpy(q, "ce_", 3);
        n = 3;
        s += 3;
        len -= 3;
    }
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            q[n++] = 'Q';
    q[n] = '\0';
    return q;
}

static void check_headers_no_echo(const split_t *sp) {
    split_t m = *sp;
    char *names[MAX_HEADERS], *values[MAX_HEADERS];
    for (size_t i = 0; i < sp->n; i++) {
        names[i] = mask_text(sp->h[i].name, strlen(sp->h[i].name), 1);
        values[i] = sp->h[i].value ? mask_text(sp->h[i].value, sp->h[i].len, 0) : NULL;
        m.h[i] = (cmd_header_t){names[i], values[i], values[i] ? strlen(values[i]) : 0};
    }
    char *text = NULL;
    json_t *root = json_loadb(sp->value, sp->len, JSON_REJECT_DUPLICATES, NULL);
    if (root) {
        json_t *mk = mask(root);
        text = json_dumps(mk, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(mk);
        json_decref(root);
    }
    if (!text) {
        text = xmalloc(sp->len + 1);
        for (size_t i = 0; i < sp->len; i++) {
            char c = sp->value[i];
            text[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? 'Q' : c;
        }
        text[sp->len] = '\0';
        m.len = sp->len;
    } else {
        m.len = strlen(text);
    }
    cmd_t cmd;
    char why[256] = "";
    parse_status_t st = cmd_parse_message(m.h, m.n, text, m.len, MAX_BYTES, &cmd, why, sizeof(why));
    fuzz_check_text("cmd_parse_message reason", why, sizeof(why));
    FUZZ_ASSERT(st == PARSE_OK || !strstr(why, "QQQ"), "the reason quotes a header or the value: %s", why);
    cmd_free(&cmd);
    free(text);
    for (size_t i = 0; i < sp->n; i++) {
        free(names[i]);
        free(values[i]);
    }
}

static int same(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void fuzz_headers(const uint8_t *data, size_t size) {
    char *buf = fuzz_cstr(data, size); /* terminated: a last header line without '\n' ends there */
    split_t sp;
    split_input(buf, size, &sp);
    cmd_t cmd;
    char why[256] = "";
    parse_status_t st = cmd_parse_message(sp.h, sp.n, sp.value, sp.len, MAX_BYTES, &cmd, why, sizeof(why));
    int binary = cmd_message_mode(sp.h, sp.n) == CMD_MODE_BINARY;
    if (st != PARSE_OK) {
        fuzz_check_text("cmd_parse_message reason", why, sizeof(why));
        FUZZ_ASSERT(!binary || strncmp(why, "binary mode: ", 13) == 0,
                    "a binary-mode reason without its mode");
    }
    if (st == PARSE_UNKNOWN_TYPE || st == PARSE_INVALID) {
        FUZZ_ASSERT(cmd.id && uuid_valid(cmd.id), "a refused command without an id");
        check_result(&cmd, st, why);
    } else if (st == PARSE_OK && binary) {
        /* The same command in structured mode: accepted, and the same. */
        char *text = json_dumps(cmd.root, JSON_COMPACT);
        FUZZ_ASSERT(text, "the envelope of an accepted binary-mode command cannot be written");
        cmd_t s;
        char swhy[256] = "";
        FUZZ_ASSERT(cmd_parse(text, strlen(text), MAX_BYTES, &s, swhy, sizeof(swhy)) == PARSE_OK,
                    "accepted in binary mode, refused in structured mode: %s", swhy);
        FUZZ_ASSERT(s.type == cmd.type && same(s.id, cmd.id) && same(s.actor, cmd.actor) &&
                        s.has_email == cmd.has_email && strcmp(s.email, cmd.email) == 0 &&
                        same(s.org_id, cmd.org_id) && same(s.code, cmd.code) && s.owner == cmd.owner,
                    "binary and structured mode read different commands");
        cmd_free(&s);
        free(text);
        cmd_t small;
        FUZZ_ASSERT(cmd_parse_message(sp.h, sp.n, sp.value, sp.len, sp.len, &small, swhy, sizeof(swhy)) ==
                            PARSE_NOT_COMMAND ||
                        sp.n == 0,
                    "headers and value over the size limit yet not refused");
        cmd_free(&small);
    }
    cmd_free(&cmd);
    check_headers_no_echo(&sp);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= 3 && memcmp(data, "CE\n", 3) == 0) {
        fuzz_headers(data + 3, size - 3);
        return 0;
    }
    const char *buf = (const char *)data;
    cmd_t cmd;
    char why[256];
    why[0] = '\0';
    parse_status_t st = cmd_parse(buf, size, MAX_BYTES, &cmd, why, sizeof(why));
    if (st != PARSE_OK)
        fuzz_check_text("cmd_parse reason", why, sizeof(why));
    if (st == PARSE_UNKNOWN_TYPE || st == PARSE_INVALID) {
        FUZZ_ASSERT(cmd.id && uuid_valid(cmd.id), "a refused command without an id");
        check_result(&cmd, st, why);
    } else if (st == PARSE_OK) {
        FUZZ_ASSERT(cmd.type >= 0 && cmd.type < CMD_TYPE_COUNT, "type out of range");
        FUZZ_ASSERT(uuid_valid(cmd.id), "accepted without a UUID id");
        const cmd_spec_t *spec = &cmd_specs[cmd.type];
        FUZZ_ASSERT(strcmp(cmd.type_name, spec->name) == 0, "type_name is not the spec's");
        FUZZ_ASSERT(!spec->needs_actor || (cmd.actor && uuid_valid(cmd.actor)), "accepted without an actor");
        for (const cmd_field_t *f = spec->fields; f->name; f++) {
            if (!f->required)
                continue;
            if (f->kind == FIELD_EMAIL) {
                FUZZ_ASSERT(cmd.has_email, "required e-mail not bound");
            } else if (f->kind != FIELD_BOOL) {
                const char *v = strcmp(f->name, "org_id") == 0          ? cmd.org_id
                                : strcmp(f->name, "user_id") == 0       ? cmd.user_id
                                : strcmp(f->name, "owner_user_id") == 0 ? cmd.owner_user_id
                                : strcmp(f->name, "invitation_id") == 0 ? cmd.invitation_id
                                : strcmp(f->name, "name") == 0          ? cmd.name
                                : strcmp(f->name, "code") == 0          ? cmd.code
                                                                        : cmd.password_hash;
                FUZZ_ASSERT(v, "required field %s not bound", f->name);
                FUZZ_ASSERT(f->kind != FIELD_UUID || uuid_valid(v), "field %s is not a UUID", f->name);
                FUZZ_ASSERT(utf8_valid(v, strlen(v)), "field %s is not UTF-8", f->name);
            }
        }
        if (cmd.has_email) {
            char again[EMAIL_MAX + 1], ewhy[128];
            FUZZ_ASSERT(email_normalize(cmd.email, again, ewhy, sizeof(ewhy)) == 0 &&
                            strcmp(again, cmd.email) == 0,
                        "the normal form of an e-mail is not stable");
        }
        if (size > 0) {
            cmd_t small;
            char swhy[256];
            FUZZ_ASSERT(cmd_parse(buf, size, size - 1, &small, swhy, sizeof(swhy)) == PARSE_NOT_COMMAND,
                        "over the size limit yet not refused");
            cmd_free(&small);
        }
    }

    /* The same message with the strings the parser does not know turned into Q's: no reason quotes them. */
    json_t *root = json_loadb(buf, size, JSON_REJECT_DUPLICATES, NULL);
    if (root) {
        json_t *m = mask(root);
        char *text = json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text) {
            check_no_echo(text, strlen(text));
            free(text);
        }
        json_decref(m);
        json_decref(root);
    } else if (st == PARSE_NOT_COMMAND) {
        /* Not JSON: letters turned into Q's; the reason may give a position, never the text there. */
        char *q = xmalloc(size ? size : 1);
        for (size_t i = 0; i < size; i++)
            q[i] = (buf[i] >= 'a' && buf[i] <= 'z') || (buf[i] >= 'A' && buf[i] <= 'Z') ? 'Q' : buf[i];
        check_no_echo(q, size);
        free(q);
    }
    cmd_free(&cmd);
    return 0;
}
