/* Commands: the table of command types and their data fields, and the parser that checks a message
 * against it (the same rules as the JSON Schemas under schemas/). */
#ifndef RAIKOO_CMD_H
#define RAIKOO_CMD_H

#include <stddef.h>
#include <jansson.h>

#include "email.h"

typedef enum {
    CMD_CREATE_ORGANIZATION,
    CMD_CREATE_USER,
    CMD_ADD_EXISTING_USER,
    CMD_INVITE_NEW_USER,
    CMD_ACCEPT_INVITATION,
    CMD_ACTIVATE_ACCOUNT,
    CMD_RESEND_INVITATION,
    CMD_REMOVE_INVITATION,
    CMD_REMOVE_MEMBER,
    CMD_SET_MEMBER_ROLE,
    CMD_SET_ORGANIZATION_POLICY,
    CMD_TYPE_COUNT,
    CMD_TYPE_UNKNOWN = -1
} cmd_type_t;

/* FIELD_DAYS: an integer of 1 to 30 (expires_in_days, default_expiry_days); FIELD_LOCALE: a language tag
 * (locale_tag_valid); FIELD_SEATS: an integer of 1 to 1000000; FIELD_DOMAINS: an array of at most 100
 * domains; FIELD_URL: an http(s) address (app_url_valid). A field of these kinds that is wrong gets a result
 * code of its own (cmd_t.invalid_code); nullable ones take null ("clear") as well. */
typedef enum {
    FIELD_UUID,
    FIELD_EMAIL,
    FIELD_TEXT,
    FIELD_BOOL,
    FIELD_SECRET,
    FIELD_DAYS,
    FIELD_LOCALE,
    FIELD_SEATS,
    FIELD_DOMAINS,
    FIELD_URL
} field_kind_t;

/* One field of a command's data. */
typedef struct cmd_field {
    const char *name;
    field_kind_t kind;
    int required;
    size_t min_len, max_len; /* characters, for text and secrets */
    int nonblank;            /* text: white space only is refused (the database's btrim(...) <> '' CHECKs) */
    int nullable;            /* null is a value (SetOrganizationPolicy: clears the setting) */
} cmd_field_t;

#define CMD_MAX_FIELDS 7
#define CMD_DOMAINS_MAX 100 /* allowed_domains: at most this many */

typedef struct cmd_spec {
    const char *name; /* "InviteNewUser"; the CloudEvents type is raikoo.command.<name>.v1 */
    int needs_actor;  /* every command but ActivateAccount has an actorid */
    cmd_field_t fields[CMD_MAX_FIELDS + 1];
} cmd_spec_t;

extern const cmd_spec_t cmd_specs[CMD_TYPE_COUNT];

/* A parsed command. Strings point into root, except email, which holds the normal form. Every UUID (id,
 * actorid, data fields) is in canonical lower-case form: the parser rewrites it in root. */
typedef struct cmd {
    json_t *root;
    cmd_type_t type;
    const char *id;
    const char *type_name; /* "InviteNewUser", or "unknown" (the sender's text is never repeated) */
    const char *actor;     /* NULL when absent */
    const char *org_id, *user_id, *owner_user_id, *invitation_id;
    const char *name, *code, *password_hash;
    int has_email;
    char email[EMAIL_MAX + 1];
    int owner, can_manage_users;
    /* Invitation options (AddExistingUser, InviteNewUser, ResendInvitation): 0 / NULL when absent. */
    int expires_in_days;
    const char *locale;
    /* When parsing returned PARSE_INVALID for a field with a code of its own ("invalid_expiry", ...): that
     * code; NULL means invalid_command. See cmd_invalid_code. */
    const char *invalid_code;
} cmd_t;

/* The result code of a command that parsing refused (PARSE_INVALID): invalid_command, or the code of the
 * field that was wrong (invalid_expiry, invalid_locale, invalid_domain, invalid_seat_limit,
 * invalid_app_url). */
const char *cmd_invalid_code(const cmd_t *cmd);

typedef enum {
    PARSE_OK,           /* a valid command */
    PARSE_NOT_COMMAND,  /* not JSON, not an object, no usable id, too large: the dead-letter topic */
    PARSE_UNKNOWN_TYPE, /* has an id; result unknown_command_type */
    PARSE_INVALID       /* has an id; result invalid_command */
} parse_status_t;

/* Parses and validates one message into cmd (which then owns a JSON tree: free with cmd_free). The reason
 * of anything but PARSE_OK goes into why (cut on a character boundary): it says where and what is wrong by
 * position and by our own field names, never by repeating the message's text, which may hold a code or a
 * password hash. max_bytes bounds the message size. */
parse_status_t cmd_parse(const char *buf, size_t len, size_t max_bytes, cmd_t *cmd, char *why,
                         size_t why_size);

/* One header of a Kafka message, as read from the topic: value[0..len) is not terminated (NULL when the
 * header has no value). Borrowed from the message. */
typedef struct cmd_header {
    const char *name;
    const void *value;
    size_t len;
} cmd_header_t;

/* How a message carries its command, by the CloudEvents Kafka protocol binding: structured mode (the whole
 * event in the value; a content-type application/cloudevents..., or no content-type and no ce_ header, as
 * every message before the binding was) or binary mode (the attributes in ce_ headers, the data in the value,
 * content-type the data's). */
typedef enum { CMD_MODE_STRUCTURED, CMD_MODE_BINARY } cmd_mode_t;

cmd_mode_t cmd_message_mode(const cmd_header_t *headers, size_t nheaders);

/* cmd_parse for a Kafka message in either mode: a binary-mode message's headers become the envelope's
 * attributes (ce_id -> id, ..., content-type -> datacontenttype) and its value the data, then the envelope is
 * checked by the same rules as a structured one, with the same outcomes (no usable ce_id: PARSE_NOT_COMMAND;
 * a bad ce_specversion, ce_type, header or value: a result). Other headers (tracing, ours) are ignored.
 * max_bytes bounds the value and the headers together in binary mode. Reasons of binary mode start with
 * "binary mode: ". */
parse_status_t cmd_parse_message(const cmd_header_t *headers, size_t nheaders, const char *buf, size_t len,
                                 size_t max_bytes, cmd_t *cmd, char *why, size_t why_size);

void cmd_free(cmd_t *cmd);

/* The command type of a name ("InviteNewUser"), or CMD_TYPE_UNKNOWN. */
cmd_type_t cmd_type_from_name(const char *name);

#endif
