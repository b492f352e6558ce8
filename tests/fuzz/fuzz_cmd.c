/* Fuzzes cmd_parse: the CloudEvents envelope of a command and every command's data, as the command worker
 * reads them from the commands topic. Invariants:
 *  - the reason is terminated, valid UTF-8, and never quotes the input: run again with every string the
 *    parser does not know turned into Q's, the reason holds no "QQQ" (positions and lengths only);
 *  - a refused command (with an id) makes a result that is valid JSON, built as the worker builds it;
 *  - an accepted one has every required field bound, an id that is a UUID, an e-mail in normal form, and
 *    is refused as too large one byte under its size. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
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
