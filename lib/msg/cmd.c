/* Commands: the table of command types and their data fields, and the parser that checks a message
 * against it (the same rules as the JSON Schemas under schemas/). */
#include "cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "event.h"
#include "mailjob.h"
#include "secret.h"
#include "text.h"

#define NAME_MAX_LEN 200
#define CODE_INPUT_MAX 64
#define HASH_MAX 256
#define DOMAINS_MAX 100
_Static_assert(DOMAINS_MAX == CMD_DOMAINS_MAX, "allowed_domains: one limit");
#define DOMAIN_MAX 252 /* what fits an address of EMAIL_MAX after "a@" */

const cmd_spec_t cmd_specs[CMD_TYPE_COUNT] = {
    [CMD_CREATE_ORGANIZATION] = {"CreateOrganization",
                                 1,
                                 {{"name", FIELD_TEXT, 1, 1, NAME_MAX_LEN, 1},
                                  {"owner_user_id", FIELD_UUID, 1, 0, 0}}},
    [CMD_CREATE_USER] = {"CreateUser",
                         1,
                         {{"email", FIELD_EMAIL, 1, 0, 0},
                          {"name", FIELD_TEXT, 1, 1, NAME_MAX_LEN, 1},
                          {"password_hash", FIELD_SECRET, 1, 1, HASH_MAX}}},
    [CMD_ADD_EXISTING_USER] = {"AddExistingUser",
                               1,
                               {{"org_id", FIELD_UUID, 1, 0, 0},
                                {"email", FIELD_EMAIL, 1, 0, 0},
                                {"owner", FIELD_BOOL, 0, 0, 0},
                                {"can_manage_users", FIELD_BOOL, 0, 0, 0},
                                {"expires_in_days", FIELD_DAYS, 0, 1, 30},
                                {"locale", FIELD_LOCALE, 0, 0, 0}}},
    [CMD_INVITE_NEW_USER] = {"InviteNewUser",
                             1,
                             {{"org_id", FIELD_UUID, 1, 0, 0},
                              {"email", FIELD_EMAIL, 1, 0, 0},
                              {"name", FIELD_TEXT, 0, 0, NAME_MAX_LEN},
                              {"owner", FIELD_BOOL, 0, 0, 0},
                              {"can_manage_users", FIELD_BOOL, 0, 0, 0},
                              {"expires_in_days", FIELD_DAYS, 0, 1, 30},
                              {"locale", FIELD_LOCALE, 0, 0, 0}}},
    [CMD_ACCEPT_INVITATION] = {"AcceptInvitation",
                               1,
                               {{"invitation_id", FIELD_UUID, 1, 0, 0},
                                {"code", FIELD_SECRET, 1, 1, CODE_INPUT_MAX}}},
    [CMD_ACTIVATE_ACCOUNT] = {"ActivateAccount",
                              0,
                              {{"email", FIELD_EMAIL, 1, 0, 0},
                               {"code", FIELD_SECRET, 1, 1, CODE_INPUT_MAX},
                               {"password_hash", FIELD_SECRET, 1, 1, HASH_MAX}}},
    [CMD_RESEND_INVITATION] = {"ResendInvitation",
                               1,
                               {{"org_id", FIELD_UUID, 1, 0, 0},
                                {"invitation_id", FIELD_UUID, 1, 0, 0},
                                {"expires_in_days", FIELD_DAYS, 0, 1, 30},
                                {"locale", FIELD_LOCALE, 0, 0, 0}}},
    [CMD_REMOVE_INVITATION] = {"RemoveInvitation",
                               1,
                               {{"org_id", FIELD_UUID, 1, 0, 0}, {"invitation_id", FIELD_UUID, 1, 0, 0}}},
    [CMD_REMOVE_MEMBER] = {"RemoveMember",
                           1,
                           {{"org_id", FIELD_UUID, 1, 0, 0}, {"user_id", FIELD_UUID, 1, 0, 0}}},
    [CMD_SET_MEMBER_ROLE] = {"SetMemberRole",
                             1,
                             {{"org_id", FIELD_UUID, 1, 0, 0},
                              {"user_id", FIELD_UUID, 1, 0, 0},
                              {"owner", FIELD_BOOL, 1, 0, 0},
                              {"can_manage_users", FIELD_BOOL, 1, 0, 0}}},
    [CMD_SET_ORGANIZATION_POLICY] = {"SetOrganizationPolicy",
                                     1,
                                     {{"org_id", FIELD_UUID, 1, 0, 0},
                                      {"allowed_domains", FIELD_DOMAINS, 0, 0, DOMAINS_MAX, 0, 1},
                                      {"seat_limit", FIELD_SEATS, 0, 1, 1000000, 0, 1},
                                      {"default_expiry_days", FIELD_DAYS, 0, 1, 30, 0, 1},
                                      {"default_locale", FIELD_LOCALE, 0, 0, 0, 0, 1},
                                      {"app_url", FIELD_URL, 0, 0, 0, 0, 1}}},
};

static const char *envelope_keys[] = {"specversion",     "id",      "source", "type", "time",
                                      "datacontenttype", "actorid", "data",   NULL};

cmd_type_t cmd_type_from_name(const char *name) {
    for (int i = 0; i < CMD_TYPE_COUNT; i++)
        if (strcmp(cmd_specs[i].name, name) == 0)
            return (cmd_type_t)i;
    return CMD_TYPE_UNKNOWN;
}

void cmd_free(cmd_t *cmd) {
    if (cmd->root)
        json_decref(cmd->root);
    memset(cmd, 0, sizeof(*cmd));
}

static int in_list(const char *key, const char *const *list) {
    for (; *list; list++)
        if (strcmp(key, *list) == 0)
            return 1;
    return 0;
}

/* Points the cmd_t member for a data field at its value. */
static void bind_field(cmd_t *cmd, const char *name, json_t *v) {
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (strcmp(name, "org_id") == 0)
        cmd->org_id = s;
    else if (strcmp(name, "user_id") == 0)
        cmd->user_id = s;
    else if (strcmp(name, "owner_user_id") == 0)
        cmd->owner_user_id = s;
    else if (strcmp(name, "invitation_id") == 0)
        cmd->invitation_id = s;
    else if (strcmp(name, "name") == 0)
        cmd->name = s;
    else if (strcmp(name, "code") == 0)
        cmd->code = s;
    else if (strcmp(name, "password_hash") == 0)
        cmd->password_hash = s;
    else if (strcmp(name, "owner") == 0)
        cmd->owner = json_is_true(v);
    else if (strcmp(name, "can_manage_users") == 0)
        cmd->can_manage_users = json_is_true(v);
    else if (strcmp(name, "expires_in_days") == 0)
        cmd->expires_in_days = (int)json_integer_value(v);
    else if (strcmp(name, "locale") == 0)
        cmd->locale = s;
}

const char *cmd_invalid_code(const cmd_t *cmd) {
    return cmd->invalid_code ? cmd->invalid_code : "invalid_command";
}

/* 1 when s is a domain as an e-mail address's domain may be (what email_normalize accepts after the @). */
static int domain_valid(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len > DOMAIN_MAX)
        return 0;
    char addr[EMAIL_MAX + 8], out[EMAIL_MAX + 1], why[64];
    text_printf(addr, sizeof(addr), "a@%s", s);
    for (const char *p = s; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '@')
            return 0;
    return email_normalize(addr, out, why, sizeof(why)) == 0;
}

/* Records the result code of a field that was wrong. */
static void invalid_as(cmd_t *cmd, const char *code) {
    cmd->invalid_code = code;
}

/* The fields with a result code of their own. 0 when v is right; else -1 with why and cmd->invalid_code. */
static int check_option(const cmd_field_t *f, json_t *v, cmd_t *cmd, char *why, size_t why_size) {
    if (json_is_null(v) && f->nullable)
        return 0;
    switch (f->kind) {
        case FIELD_DAYS:
        case FIELD_SEATS:
            if (json_is_integer(v) && json_integer_value(v) >= (json_int_t)f->min_len &&
                json_integer_value(v) <= (json_int_t)f->max_len)
                return 0;
            invalid_as(cmd, f->kind == FIELD_DAYS ? "invalid_expiry" : "invalid_seat_limit");
            text_printf(why, why_size, "data.%s must be a whole number of %zu to %zu%s", f->name, f->min_len,
                        f->max_len, f->nullable ? ", or null" : "");
            return -1;
        case FIELD_LOCALE:
            if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
                locale_tag_valid(json_string_value(v)))
                return 0;
            invalid_as(cmd, "invalid_locale");
            text_printf(why, why_size, "data.%s must be a language tag such as \"de\" or \"pt-BR\"%s",
                        f->name, f->nullable ? ", or null" : "");
            return -1;
        case FIELD_URL:
            if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
                app_url_valid(json_string_value(v)))
                return 0;
            invalid_as(cmd, "invalid_app_url");
            text_printf(why, why_size, "data.%s must be an http:// or https:// address%s", f->name,
                        f->nullable ? ", or null" : "");
            return -1;
        case FIELD_DOMAINS: {
            invalid_as(cmd, "invalid_domain");
            if (!json_is_array(v) || json_array_size(v) > f->max_len) {
                text_printf(why, why_size, "data.%s must be a list of at most %zu domains%s", f->name,
                            f->max_len, f->nullable ? ", or null" : "");
                return -1;
            }
            size_t i;
            json_t *d;
            json_array_foreach(v, i, d) {
                if (!json_is_string(d) || strlen(json_string_value(d)) != json_string_length(d) ||
                    !domain_valid(json_string_value(d))) {
                    text_printf(why, why_size, "data.%s: item %zu is not a domain such as example.com",
                                f->name, i + 1);
                    return -1;
                }
            }
            invalid_as(cmd, NULL);
            return 0;
        }
        default: return -1;
    }
}

/* 1 when the code point is white space (Unicode White_Space, the information separators U+001C-U+001F that
 * Python counts too, and U+FEFF that ECMAScript counts): a superset of the JSON Schemas' "\S" pattern. */
static int is_space(unsigned int cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

/* 1 when s[0..len) holds something other than white space. */
static int has_non_space(const char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned int cp;
        size_t n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n == 0 || !is_space(cp))
            return 1;
        i += n;
    }
    return 0;
}

/* Replaces a UUID string value by its canonical (lower-case) form, so that comparisons, keys and stored
 * ids never depend on the sender's case. v must hold a valid UUID. */
static void uuid_canonicalize(json_t *v) {
    char lower[UUID_BUF];
    const char *s = json_string_value(v);
    for (int i = 0; i < 36; i++)
        lower[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    lower[36] = '\0';
    if (strcmp(lower, s) != 0)
        json_string_set(v, lower); /* only fails on out-of-memory: the value is then left as it was */
}

/* Checks one data field. Reasons name the field (from our table), never quote the value. */
static int check_field(const cmd_field_t *f, json_t *v, cmd_t *cmd, char *why, size_t why_size) {
    switch (f->kind) {
        case FIELD_DAYS:
        case FIELD_LOCALE:
        case FIELD_SEATS:
        case FIELD_DOMAINS:
        case FIELD_URL: return check_option(f, v, cmd, why, why_size);
        case FIELD_BOOL:
            if (!json_is_boolean(v)) {
                text_printf(why, why_size, "data.%s must be true or false", f->name);
                return -1;
            }
            return 0;
        case FIELD_UUID:
            if (!json_is_string(v) || !uuid_valid(json_string_value(v))) {
                text_printf(why, why_size, "data.%s must be a UUID", f->name);
                return -1;
            }
            uuid_canonicalize(v);
            return 0;
        case FIELD_EMAIL: {
            char reason[128];
            if (!json_is_string(v)) {
                text_printf(why, why_size, "data.%s must be a string", f->name);
                return -1;
            }
            if (email_normalize(json_string_value(v), cmd->email, reason, sizeof(reason)) != 0) {
                text_printf(why, why_size, "data.%s: %s", f->name, reason);
                return -1;
            }
            cmd->has_email = 1;
            return 0;
        }
        case FIELD_TEXT:
        case FIELD_SECRET: {
            if (!json_is_string(v)) {
                text_printf(why, why_size, "data.%s must be a string", f->name);
                return -1;
            }
            /* Lengths in characters as JSON Schema (and PostgreSQL's length()) count them; an embedded NUL is
         * refused. */
            size_t bytes = json_string_length(v);
            const char *s = json_string_value(v);
            long chars = utf8_count(s, bytes);
            if (chars < 0 || (size_t)chars < f->min_len || (size_t)chars > f->max_len || strlen(s) != bytes) {
                text_printf(why, why_size, "data.%s must be a string of %zu to %zu characters", f->name,
                            f->min_len, f->max_len);
                return -1;
            }
            /* The database's CHECK (btrim(name) <> '') and more: a name of white space only names nothing. */
            if (f->nonblank && !has_non_space(s, bytes)) {
                text_printf(why, why_size, "data.%s must not be blank (white space only)", f->name);
                return -1;
            }
            return 0;
        }
    }
    return -1;
}

/* The fixed description of a JSON syntax error: jansson's own text quotes the input ("near '...'"), and a
 * reason must never repeat what was sent (it may hold a code or a password hash). */
static const char *json_error_kind(const json_error_t *e) {
    switch (json_error_code(e)) {
        case json_error_invalid_syntax: return "invalid syntax";
        case json_error_invalid_format: return "invalid format";
        case json_error_wrong_type: return "wrong type";
        case json_error_premature_end_of_input: return "premature end of input";
        case json_error_end_of_input_expected: return "end of input expected";
        case json_error_invalid_utf8: return "invalid UTF-8";
        case json_error_null_character: return "NUL character";
        case json_error_null_byte_in_key: return "NUL byte in a key";
        case json_error_duplicate_key: return "duplicate key";
        case json_error_numeric_overflow: return "number out of range";
        case json_error_item_not_found:
        case json_error_out_of_memory:
        case json_error_stack_overflow: return "nesting too deep or too large";
        case json_error_cannot_open_file:
        case json_error_invalid_argument:
        case json_error_index_out_of_range:
        default: return "cannot be read";
    }
}

/* "the 3rd key" and the like: where an unknown key sits, since its name is the sender's text. */
static size_t key_position(json_t *obj, const char *key) {
    size_t i = 1;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (k == key)
            return i;
        i++;
    }
    return 0;
}

/* The data fields a command takes, as "org_id, user_id". */
static void field_list(const cmd_spec_t *spec, char *out, size_t size) {
    size_t len = 0;
    out[0] = '\0';
    for (const cmd_field_t *f = spec->fields; f->name && len < size; f++) {
        text_printf(out + len, size - len, "%s%s", len ? ", " : "", f->name);
        len = strlen(out);
    }
}

static parse_status_t check_root(cmd_t *cmd, const char *data_why, char *why, size_t why_size);

parse_status_t cmd_parse(const char *buf, size_t len, size_t max_bytes, cmd_t *cmd, char *why,
                         size_t why_size) {
    memset(cmd, 0, sizeof(*cmd));
    cmd->type = CMD_TYPE_UNKNOWN;
    if (len > max_bytes) {
        text_printf(why, why_size, "message of %zu bytes is over the limit of %zu", len, max_bytes);
        return PARSE_NOT_COMMAND;
    }
    json_error_t jerr;
    cmd->root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!cmd->root) {
        /* By position, never by content. */
        text_printf(why, why_size, "not JSON: %s at line %d, column %d (byte %d)", json_error_kind(&jerr),
                    jerr.line, jerr.column, jerr.position);
        return PARSE_NOT_COMMAND;
    }
    return check_root(cmd, NULL, why, why_size);
}

/* Checks the envelope in cmd->root, however it was read (a structured-mode value, or the attributes of a
 * binary-mode message's headers with its value as data): the one set of rules for both modes. data_why,
 * when not NULL, says why data could not be read (binary mode: the value is not JSON). */
/* The command type named by the envelope's "type" (raikoo.command.<Name>.v1) into cmd; CMD_TYPE_UNKNOWN
 * when it names none. */
static void resolve_type(cmd_t *cmd) {
    json_t *type = json_object_get(cmd->root, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "";
    cmd->type_name = t;
    static const char prefix[] = "raikoo.command.", suffix[] = ".v1";
    size_t tl = strlen(t), pl = sizeof(prefix) - 1, sl = sizeof(suffix) - 1;
    if (tl > pl + sl && strncmp(t, prefix, pl) == 0 && strcmp(t + tl - sl, suffix) == 0) {
        char name[64];
        size_t nl = tl - pl - sl;
        if (nl < sizeof(name)) {
            memcpy(name, t + pl, nl);
            name[nl] = '\0';
            cmd->type = cmd_type_from_name(name);
        }
    }
}

/* The envelope's attributes but type and data: only known keys, specversion, source, time,
 * datacontenttype, actorid (bound into cmd). PARSE_OK or PARSE_INVALID with why. */
static parse_status_t check_envelope(cmd_t *cmd, const cmd_spec_t *spec, char *why, size_t why_size) {
    const char *key;
    json_t *v;
    json_object_foreach(cmd->root, key, v) {
        if (!in_list(key, envelope_keys)) {
            text_printf(why, why_size, "unknown attribute (key %zu of the envelope)",
                        key_position(cmd->root, key));
            return PARSE_INVALID;
        }
    }
    json_t *sv = json_object_get(cmd->root, "specversion");
    if (!json_is_string(sv) || strcmp(json_string_value(sv), "1.0") != 0) {
        text_printf(why, why_size, "specversion must be \"1.0\"");
        return PARSE_INVALID;
    }
    json_t *src = json_object_get(cmd->root, "source");
    if (!json_is_string(src) || json_string_length(src) == 0) {
        text_printf(why, why_size, "source must be a non-empty string");
        return PARSE_INVALID;
    }
    json_t *tm = json_object_get(cmd->root, "time");
    if (tm && (!json_is_string(tm) || !event_time_valid(json_string_value(tm)))) {
        text_printf(why, why_size, "time must be an RFC 3339 string");
        return PARSE_INVALID;
    }
    json_t *ct = json_object_get(cmd->root, "datacontenttype");
    if (ct && (!json_is_string(ct) || strcmp(json_string_value(ct), "application/json") != 0)) {
        text_printf(why, why_size, "datacontenttype must be \"application/json\"");
        return PARSE_INVALID;
    }
    json_t *actor = json_object_get(cmd->root, "actorid");
    if (actor) {
        if (!json_is_string(actor) || !uuid_valid(json_string_value(actor))) {
            text_printf(why, why_size, "actorid must be a UUID");
            return PARSE_INVALID;
        }
        uuid_canonicalize(actor);
        cmd->actor = json_string_value(actor);
    } else if (spec->needs_actor) {
        text_printf(why, why_size, "actorid is required for %s", spec->name);
        return PARSE_INVALID;
    }
    return PARSE_OK;
}

/* The data object against the spec's fields (bound into cmd). PARSE_OK or PARSE_INVALID with why (data_why
 * when data is not an object and it is given). */
static parse_status_t check_data(cmd_t *cmd, const cmd_spec_t *spec, const char *data_why, char *why,
                                 size_t why_size) {
    json_t *data = json_object_get(cmd->root, "data");
    if (!json_is_object(data)) {
        text_printf(why, why_size, "%s", data_why ? data_why : "data must be an object");
        return PARSE_INVALID;
    }
    const char *key;
    json_t *v;
    json_object_foreach(data, key, v) {
        const cmd_field_t *f = spec->fields;
        while (f->name && strcmp(f->name, key) != 0)
            f++;
        if (!f->name) {
            char fields[128];
            field_list(spec, fields, sizeof(fields));
            text_printf(why, why_size, "unknown field (key %zu of data) for %s, which takes %s",
                        key_position(data, key), spec->name, fields);
            return PARSE_INVALID;
        }
    }
    for (const cmd_field_t *f = spec->fields; f->name; f++) {
        v = json_object_get(data, f->name);
        if (!v) {
            if (f->required) {
                text_printf(why, why_size, "data.%s is required for %s", f->name, spec->name);
                return PARSE_INVALID;
            }
            continue;
        }
        if (check_field(f, v, cmd, why, why_size) != 0)
            return PARSE_INVALID;
        bind_field(cmd, f->name, v);
    }
    return PARSE_OK;
}

static parse_status_t check_root(cmd_t *cmd, const char *data_why, char *why, size_t why_size) {
    if (!json_is_object(cmd->root)) {
        text_printf(why, why_size, "not a JSON object");
        return PARSE_NOT_COMMAND;
    }
    json_t *id = json_object_get(cmd->root, "id");
    if (!json_is_string(id) || !uuid_valid(json_string_value(id))) {
        text_printf(why, why_size, "no command id (\"id\" must be a UUID)");
        return PARSE_NOT_COMMAND;
    }
    uuid_canonicalize(id);
    cmd->id = json_string_value(id);

    /* From here on the sender gets a result keyed by the command id. */
    resolve_type(cmd);
    if (cmd->type == CMD_TYPE_UNKNOWN) {
        /* The sender's type is not repeated (nor kept as the type name): "unknown" stands for it. */
        cmd->type_name = "unknown";
        text_printf(
            why, why_size,
            "unknown command type: expected raikoo.command.<Name>.v1, Name a command of schemas/commands/");
        return PARSE_UNKNOWN_TYPE;
    }
    const cmd_spec_t *spec = &cmd_specs[cmd->type];
    cmd->type_name = spec->name;
    parse_status_t st = check_envelope(cmd, spec, why, why_size);
    return st != PARSE_OK ? st : check_data(cmd, spec, data_why, why, why_size);
}

/* ---- The CloudEvents Kafka protocol binding: binary mode ---- */

static int header_is(const cmd_header_t *h, const char *name) {
    return strcasecmp(h->name, name) == 0;
}

static int header_is_ce(const cmd_header_t *h) {
    return strncasecmp(h->name, "ce_", 3) == 0;
}

cmd_mode_t cmd_message_mode(const cmd_header_t *headers, size_t nheaders) {
    static const char structured[] = "application/cloudevents";
    int has_ce = 0;
    for (size_t i = 0; i < nheaders; i++) {
        const cmd_header_t *h = &headers[i];
        if (header_is(h, "content-type") && h->value && h->len >= sizeof(structured) - 1 &&
            strncasecmp(h->value, structured, sizeof(structured) - 1) == 0)
            return CMD_MODE_STRUCTURED; /* the content type decides, whatever else is there */
        has_ce |= header_is_ce(h);
    }
    return has_ce ? CMD_MODE_BINARY : CMD_MODE_STRUCTURED;
}

/* The attributes a binary-mode header may carry: the envelope's, but data (the value) and datacontenttype
 * (the content-type header). */
static int binary_attribute(const char *attr) {
    return in_list(attr, envelope_keys) && strcmp(attr, "data") != 0 && strcmp(attr, "datacontenttype") != 0;
}

/* Builds cmd->root from a binary-mode message and checks it with check_root. A problem with a header other
 * than ce_id is kept in bad and reported once the command id and type are known (a result, not a dead
 * letter), as the same problem in a structured envelope would be. */
static parse_status_t parse_binary(const cmd_header_t *headers, size_t nheaders, const char *buf, size_t len,
                                   size_t max_bytes, cmd_t *cmd, char *why, size_t why_size) {
    size_t total = len;
    for (size_t i = 0; i < nheaders; i++)
        total += strlen(headers[i].name) + headers[i].len;
    if (total > max_bytes) {
        text_printf(why, why_size, "message of %zu bytes (value and headers) is over the limit of %zu", total,
                    max_bytes);
        return PARSE_NOT_COMMAND;
    }
    cmd->root = json_object();
    if (!cmd->root)
        abort(); /* out of memory */
    char bad[160] = "";
    for (size_t i = 0; i < nheaders; i++) {
        const cmd_header_t *h = &headers[i];
        const char *attr;
        if (header_is_ce(h))
            attr = h->name + 3;
        else if (header_is(h, "content-type"))
            attr = "datacontenttype";
        else
            continue; /* not the command's: tracing, our own headers */
        if (header_is_ce(h) && (strncmp(h->name, "ce_", 3) != 0 || !binary_attribute(attr))) {
            /* By position: the header's name is the sender's text. */
            if (!bad[0])
                text_printf(bad, sizeof(bad), "unknown attribute (header %zu of the message)", i + 1);
            continue;
        }
        const char *v = h->value ? h->value : "";
        int text = utf8_valid(v, h->len) && memchr(v, '\0', h->len) == NULL;
        if (json_object_get(cmd->root, attr) || !text) {
            if (strcmp(attr, "id") == 0) {
                text_printf(why, why_size, "no command id (ce_id must be one UUID%s)",
                            text ? ", given once" : " in UTF-8");
                return PARSE_NOT_COMMAND;
            }
            if (!bad[0])
                text_printf(bad, sizeof(bad), "%s%s %s", header_is_ce(h) ? "ce_" : "",
                            header_is_ce(h) ? attr : "content-type",
                            text ? "is given twice" : "is not UTF-8 text");
            continue;
        }
        json_t *s = json_stringn(v, h->len);
        if (!s)
            abort(); /* out of memory: the value is valid UTF-8 without NUL */
        json_object_set_new(cmd->root, attr, s);
    }
    char data_why[160] = "";
    if (len == 0) {
        text_printf(data_why, sizeof(data_why), "data must be an object (the message value is empty)");
    } else {
        json_error_t jerr;
        json_t *data = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (data)
            json_object_set_new(cmd->root, "data", data);
        else
            text_printf(data_why, sizeof(data_why),
                        "data must be an object (the message value is not JSON: %s at line %d, column %d)",
                        json_error_kind(&jerr), jerr.line, jerr.column);
    }
    parse_status_t st = check_root(cmd, data_why[0] ? data_why : NULL, why, why_size);
    if ((st == PARSE_OK || st == PARSE_INVALID) && bad[0]) {
        text_printf(why, why_size, "%s", bad);
        st = PARSE_INVALID;
    }
    return st;
}

parse_status_t cmd_parse_message(const cmd_header_t *headers, size_t nheaders, const char *buf, size_t len,
                                 size_t max_bytes, cmd_t *cmd, char *why, size_t why_size) {
    if (cmd_message_mode(headers, nheaders) == CMD_MODE_STRUCTURED)
        return cmd_parse(buf, len, max_bytes, cmd, why, why_size);
    memset(cmd, 0, sizeof(*cmd));
    cmd->type = CMD_TYPE_UNKNOWN;
    char reason[256] = "";
    parse_status_t st = parse_binary(headers, nheaders, buf, len, max_bytes, cmd, reason, sizeof(reason));
    if (st != PARSE_OK)
        text_printf(why, why_size, "binary mode: %s", reason);
    return st;
}
