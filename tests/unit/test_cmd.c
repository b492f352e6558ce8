/* Unit tests of commands: the parser the worker uses, and the producer library's envelopes built on it. */
#include <stdlib.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "cmd.h"
#include "event.h"
#include "log.h"
#include "producer.h"
#include "secret.h"
#include "text.h"
#include "unit.h"

#define ORG "3f0c6a4e-8d1b-4c52-9a7e-0b1c2d3e4f50"
#define ACTOR "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
#define INV "0d9c8b7a-6f5e-4d3c-9b2a-19f8e7d6c5b4"
#define HASH "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
#define MAX 65536

/* An envelope around data (a JSON object's text) with the given type name and actorid (NULL: none). */
static char *envelope(const char *name, const char *actor, const char *data) {
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"specversion\":\"1.0\",\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"source\":\"/test\","
             "\"type\":\"raikoo.command.%s.v1\",\"time\":\"2026-01-01T00:00:00.000Z\","
             "\"datacontenttype\":\"application/json\"%s%s%s,\"data\":%s}",
             name, actor ? ",\"actorid\":\"" : "", actor ? actor : "", actor ? "\"" : "", data);
    return buf;
}

/* Parses text; returns the status and leaves the reason in why (the cmd is freed unless keep). */
static parse_status_t parse(const char *text, char *why, size_t why_size, cmd_t *keep) {
    cmd_t cmd;
    why[0] = '\0';
    parse_status_t st = cmd_parse(text, strlen(text), MAX, &cmd, why, why_size);
    if (keep)
        *keep = cmd;
    else
        cmd_free(&cmd);
    return st;
}

static void parse_accepts_every_command_type_with_its_fields(void) {
    char why[256];
    cmd_t cmd;
    CHECK(parse(envelope("InviteNewUser", ACTOR,
                         "{\"org_id\":\"" ORG
                         "\",\"email\":\" Ann@Example.IO \",\"name\":\"Ann\",\"owner\":true}"),
                why, sizeof(why), &cmd) == PARSE_OK);
    CHECK(cmd.type == CMD_INVITE_NEW_USER);
    CHECK_STR(cmd.org_id, ORG);
    CHECK_STR(cmd.actor, ACTOR);
    CHECK_STR(cmd.email, "Ann@example.io"); /* trimmed, domain lower-cased, local part kept */
    CHECK(cmd.owner == 1);
    cmd_free(&cmd);

    CHECK(parse(envelope("SetMemberRole", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV
                         "\",\"owner\":false,\"can_manage_users\":true}"),
                why, sizeof(why), &cmd) == PARSE_OK);
    CHECK(cmd.owner == 0 && cmd.can_manage_users == 1);
    cmd_free(&cmd);

    CHECK(parse(envelope("CreateOrganization", ACTOR, "{\"name\":\"Acme\",\"owner_user_id\":\"" ACTOR "\"}"),
                why, sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("AcceptInvitation", ACTOR,
                         "{\"invitation_id\":\"" INV "\",\"code\":\"ABCD-EFGH-JKMN\"}"),
                why, sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("ResendInvitation", ACTOR, "{\"org_id\":\"" ORG "\",\"invitation_id\":\"" INV "\"}"),
                why, sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("RemoveInvitation", ACTOR, "{\"org_id\":\"" ORG "\",\"invitation_id\":\"" INV "\"}"),
                why, sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("RemoveMember", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"), why,
                sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("AddExistingUser", ACTOR, "{\"org_id\":\"" ORG "\",\"email\":\"b@x.io\"}"), why,
                sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("CreateUser", ACTOR,
                         "{\"email\":\"b@x.io\",\"name\":\"B\",\"password_hash\":\"" HASH "\"}"),
                why, sizeof(why), NULL) == PARSE_OK);
}

static void parse_accepts_activate_account_without_actor_but_not_others(void) {
    char why[256];
    const char *data = "{\"email\":\"n@x.io\",\"code\":\"ABCD-EFGH-JKMN\",\"password_hash\":\"" HASH "\"}";
    CHECK(parse(envelope("ActivateAccount", NULL, data), why, sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("RemoveMember", NULL, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"), why,
                sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "actorid is required for RemoveMember");
    CHECK(parse(envelope("ActivateAccount", "not-a-uuid", data), why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "actorid must be a UUID");
}

static void parse_refuses_wrong_types_missing_and_unknown_fields(void) {
    char why[256];
    CHECK(parse(envelope("AddExistingUser", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"email\":\"b@x.io\",\"owner\":\"yes\"}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.owner must be true or false");
    CHECK(parse(envelope("AddExistingUser", ACTOR, "{\"org_id\":42,\"email\":\"b@x.io\"}"), why, sizeof(why),
                NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.org_id must be a UUID");
    CHECK(parse(envelope("CreateOrganization", ACTOR, "{\"name\":7,\"owner_user_id\":\"" ACTOR "\"}"), why,
                sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.name must be a string");
    CHECK(parse(envelope("SetMemberRole", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\",\"owner\":true}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.can_manage_users is required for SetMemberRole");
    CHECK(parse(envelope("AddExistingUser", ACTOR, "{\"email\":\"b@x.io\"}"), why, sizeof(why), NULL) ==
          PARSE_INVALID);
    CHECK_STR(why, "data.org_id is required for AddExistingUser");
    CHECK(parse(envelope("RemoveMember", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\",\"password\":\"hunter2\"}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "unknown field (key 3 of data) for RemoveMember, which takes org_id, user_id");
    CHECK(parse(envelope("RemoveMember", ACTOR, "[]"), why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data must be an object");
    CHECK(parse(envelope("CreateOrganization", ACTOR, "{\"name\":\"\",\"owner_user_id\":\"" ACTOR "\"}"), why,
                sizeof(why), NULL) == PARSE_INVALID);
    CHECK(strstr(why, "data.name must be a string of 1 to") != NULL);
}

static void parse_refuses_bad_uuids_and_addresses(void) {
    char why[256];
    CHECK(parse(envelope("RemoveMember", ACTOR,
                         "{\"org_id\":\"3f0c6a4e-8d1b-4c52-9a7e-0b1c2d3e4f5\",\"user_id\":\"" INV "\"}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.org_id must be a UUID");
    CHECK(parse(envelope("RemoveMember", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"user_id\":\"zz9c8b7a-6f5e-4d3c-9b2a-19f8e7d6c5b4\"}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.user_id must be a UUID");
    const char *bad[] = {"no-at-sign",  "two@@x.io", "a@b@x.io", "Ann <ann@x.io>",
                         "sp ace@x.io", "a@nodot",   NULL};
    for (int i = 0; bad[i]; i++) {
        char data[256];
        snprintf(data, sizeof(data), "{\"org_id\":\"" ORG "\",\"email\":\"%s\"}", bad[i]);
        CHECK(parse(envelope("AddExistingUser", ACTOR, data), why, sizeof(why), NULL) == PARSE_INVALID);
        CHECK(strncmp(why, "data.email: ", 12) == 0);
    }
}

static void parse_sorts_non_commands_from_unknown_types_and_invalid_envelopes(void) {
    char why[256];
    CHECK(parse("not json", why, sizeof(why), NULL) == PARSE_NOT_COMMAND);
    CHECK(parse("[1,2]", why, sizeof(why), NULL) == PARSE_NOT_COMMAND);
    CHECK(parse("{\"type\":\"raikoo.command.RemoveMember.v1\"}", why, sizeof(why), NULL) ==
          PARSE_NOT_COMMAND);
    CHECK(parse("{\"id\":\"nope\"}", why, sizeof(why), NULL) == PARSE_NOT_COMMAND);
    CHECK(parse(envelope("PromoteEveryone", ACTOR, "{}"), why, sizeof(why), NULL) == PARSE_UNKNOWN_TYPE);
    CHECK(strstr(why, "PromoteEveryone") == NULL); /* never repeats the input */
    CHECK(strstr(why, "unknown command type") != NULL);

    char big[MAX + 100];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "{}", 2);
    CHECK(parse(big, why, sizeof(why), NULL) == PARSE_NOT_COMMAND);
    CHECK(strstr(why, "over the limit") != NULL);

    char text[4096];
    snprintf(text, sizeof(text), "%s",
             envelope("RemoveMember", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"));
    char *v = strstr(text, "\"1.0\"");
    memcpy(v, "\"0.3\"", 5);
    CHECK(parse(text, why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "specversion must be \"1.0\"");
    snprintf(text, sizeof(text), "%s",
             envelope("RemoveMember", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"));
    text[strlen(text) - 1] = '\0';
    strncat(text, ",\"extra\":1}", sizeof(text) - strlen(text) - 1);
    CHECK(parse(text, why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "unknown attribute (key 9 of the envelope)");
}

/* ---- issue 9: hostile input ---- */

static void parse_canonicalises_uuids_to_lower_case(void) {
    char why[256];
    cmd_t cmd;
    char text[4096];
    snprintf(text, sizeof(text),
             "{\"specversion\":\"1.0\",\"id\":\"6A1F0C7E-2B3D-4E5F-8A9B-0C1D2E3F4A5B\",\"source\":\"/t\","
             "\"type\":\"raikoo.command.ResendInvitation.v1\",\"actorid\":\"A1B2C3D4-E5F6-4A7B-8C9D-"
             "0E1F2A3B4C5D\","
             "\"data\":{\"org_id\":\"3F0C6A4E-8D1B-4C52-9A7E-0B1C2D3E4F50\",\"invitation_id\":\"0D9C8B7A-"
             "6F5E-4D3C-9B2A-19F8E7D6C5B4\"}}");
    CHECK(parse(text, why, sizeof(why), &cmd) == PARSE_OK);
    CHECK_STR(cmd.id, "6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b");
    CHECK_STR(cmd.actor, ACTOR);
    CHECK_STR(cmd.org_id, ORG);
    CHECK_STR(cmd.invitation_id, INV);
    cmd_free(&cmd);
    /* The producer library keys by the canonical form: one organization, one partition. */
    raikoo_command_msg_t m;
    char err[256];
    CHECK(raikoo_command_build(
              RAIKOO_CMD_RESEND_INVITATION, NULL, "A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D",
              json_pack("{s:s, s:s}", "org_id", "3F0C6A4E-8D1B-4C52-9A7E-0B1C2D3E4F50", "invitation_id", INV),
              MAX, &m, err, sizeof(err)) == RAIKOO_OK);
    CHECK_STR(m.key, ORG);
    raikoo_command_msg_clear(&m);
}

static void parse_refuses_blank_names_as_the_database_does(void) {
    char why[256];
    const char *blank[] = {"   ", " ", "\\t\\n", "\\u00a0\\u3000", NULL};
    for (int i = 0; blank[i]; i++) {
        char data[256];
        snprintf(data, sizeof(data), "{\"name\":\"%s\",\"owner_user_id\":\"" ACTOR "\"}", blank[i]);
        CHECK(parse(envelope("CreateOrganization", ACTOR, data), why, sizeof(why), NULL) == PARSE_INVALID);
        CHECK(strstr(why, "blank") != NULL);
        snprintf(data, sizeof(data), "{\"email\":\"a@b.io\",\"name\":\"%s\",\"password_hash\":\"" HASH "\"}",
                 blank[i]);
        CHECK(parse(envelope("CreateUser", ACTOR, data), why, sizeof(why), NULL) == PARSE_INVALID);
    }
    CHECK(parse(envelope("CreateOrganization", ACTOR, "{\"name\":\" A \",\"owner_user_id\":\"" ACTOR "\"}"),
                why, sizeof(why), NULL) == PARSE_OK);
}

/* Every reason is valid UTF-8 and repeats nothing of the message: a secret planted anywhere never shows. */
static void parse_reasons_never_repeat_the_input(void) {
    char why[256];
    static char text[8192];
    const char *secret = "S3CR-ETC0-DE99";
    const char *cases[] = {
        "{\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"type\":\"%s\"}",
        "{\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"type\":\"raikoo.command.%s.v1\"}",
        "{\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"specversion\":\"1.0\",\"source\":\"/t\","
        "\"type\":\"raikoo.command.RemoveMember.v1\",\"actorid\":\"" ACTOR "\",\"%s\":1}",
        "{\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"specversion\":\"1.0\",\"source\":\"/t\","
        "\"type\":\"raikoo.command.RemoveMember.v1\",\"actorid\":\"" ACTOR "\",\"data\":{\"%s\":1}}",
        "{\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"code\":%s}",
        "{\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"code\":\"%s\",\"code\":1}",
        "{\"code\":\"%s\" \"x\"}",
        "[%s]",
        "%s",
        "{\"id\":\"%s\"}",
        "{\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"specversion\":\"1.0\",\"source\":\"/t\","
        "\"type\":\"raikoo.command.AcceptInvitation.v1\",\"actorid\":\"" ACTOR
        "\",\"data\":{\"invitation_id\":\"" INV
        "\",\"code\":\"%s-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}}",
        NULL};
    for (int i = 0; cases[i]; i++) {
        snprintf(text, sizeof(text), cases[i], secret);
        parse(text, why, sizeof(why), NULL);
        CHECK(why[0] != '\0');
        CHECK(strstr(why, secret) == NULL);
        CHECK(strstr(why, "S3CR") == NULL);
        CHECK(utf8_valid(why, strlen(why)));
    }
    /* A type of 79 'a' and an 'é' (the crash of issue 9), and long non-ASCII keys: a short, valid reason. */
    char type[160];
    memset(type, 'a', 79);
    strcpy(type + 79, "\xc3\xa9");
    snprintf(text, sizeof(text), "{\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"type\":\"%s\"}", type);
    cmd_t cmd;
    CHECK(parse(text, why, sizeof(why), &cmd) == PARSE_UNKNOWN_TYPE);
    CHECK_STR(cmd.type_name, "unknown");
    CHECK(utf8_valid(why, strlen(why)));
    cmd_free(&cmd);
    char key[400] = "";
    for (int i = 0; i < 100; i++)
        strcat(key, "\xc3\xa9");
    snprintf(text, sizeof(text), "%s",
             envelope("RemoveMember", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"));
    text[strlen(text) - 1] = '\0';
    strncat(text, ",\"", sizeof(text) - strlen(text) - 1);
    strncat(text, key, sizeof(text) - strlen(text) - 1);
    strncat(text, "\":1}", sizeof(text) - strlen(text) - 1);
    CHECK(parse(text, why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK(utf8_valid(why, strlen(why)) && strstr(why, "\xc3\xa9") == NULL);
    /* A reason cut short by a small buffer still ends on a character boundary. */
    char small[7];
    CHECK(parse(text, small, sizeof(small), NULL) == PARSE_INVALID);
    CHECK(utf8_valid(small, strlen(small)));
}

/* ---- the producer library's envelopes ---- */

static void build_makes_a_cloudevent_the_worker_accepts(void) {
    raikoo_command_msg_t m;
    char err[256];
    json_t *data =
        json_pack("{s:s, s:s, s:s, s:b}", "org_id", ORG, "email", "ann@x.io", "name", "Ann", "owner", 1);
    CHECK(raikoo_command_build(RAIKOO_CMD_INVITE_NEW_USER, "/raikoo/cli", ACTOR, data, MAX, &m, err,
                               sizeof(err)) == 0);
    CHECK(uuid_valid(m.id));
    CHECK_STR(m.key, ORG);
    json_t *ev = json_loadb(m.payload, m.len, 0, NULL);
    CHECK(ev != NULL);
    CHECK_STR(json_string_value(json_object_get(ev, "specversion")), "1.0");
    CHECK_STR(json_string_value(json_object_get(ev, "id")), m.id);
    CHECK_STR(json_string_value(json_object_get(ev, "source")), "/raikoo/cli");
    CHECK_STR(json_string_value(json_object_get(ev, "type")), "raikoo.command.InviteNewUser.v1");
    CHECK_STR(json_string_value(json_object_get(ev, "datacontenttype")), "application/json");
    CHECK_STR(json_string_value(json_object_get(ev, "actorid")), ACTOR);
    const char *t = json_string_value(json_object_get(ev, "time"));
    CHECK(t && strlen(t) == 24 && t[10] == 'T' && t[23] == 'Z');
    CHECK_STR(json_string_value(json_object_get(json_object_get(ev, "data"), "email")), "ann@x.io");
    CHECK(json_object_size(ev) == 8);

    char why[256];
    cmd_t cmd;
    CHECK(cmd_parse(m.payload, m.len, MAX, &cmd, why, sizeof(why)) == PARSE_OK);
    CHECK(cmd.type == CMD_INVITE_NEW_USER);
    cmd_free(&cmd);
    json_decref(ev);

    raikoo_command_msg_t m2;
    CHECK(raikoo_command_build(RAIKOO_CMD_REMOVE_MEMBER, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "org_id", ORG, "user_id", INV), MAX, &m2, err,
                               sizeof(err)) == 0);
    CHECK(strcmp(m.id, m2.id) != 0); /* a fresh id each time: each is its own idempotency key */
    CHECK(strstr(m2.payload, "\"source\":\"/raikoo/producer\"") != NULL);
    raikoo_command_msg_clear(&m);
    raikoo_command_msg_clear(&m2);
}

static void build_keys_each_command_by_org_or_its_own_subject(void) {
    raikoo_command_msg_t m;
    char err[256];
    CHECK(raikoo_command_build(RAIKOO_CMD_CREATE_ORGANIZATION, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "name", "Acme", "owner_user_id", INV), MAX, &m, err,
                               sizeof(err)) == 0);
    CHECK_STR(m.key, INV);
    raikoo_command_msg_clear(&m);
    CHECK(raikoo_command_build(RAIKOO_CMD_ACCEPT_INVITATION, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "invitation_id", INV, "code", "ABCD-EFGH-JKMN"), MAX,
                               &m, err, sizeof(err)) == 0);
    CHECK_STR(m.key, INV);
    raikoo_command_msg_clear(&m);
    CHECK(raikoo_command_build(RAIKOO_CMD_CREATE_USER, NULL, ACTOR,
                               json_pack("{s:s, s:s, s:s}", "email", " Bob.Smith@Example.IO", "name", "Bob",
                                         "password_hash", HASH),
                               MAX, &m, err, sizeof(err)) == 0);
    CHECK_STR(m.key, "bob.smith@example.io");
    raikoo_command_msg_clear(&m);
    CHECK(raikoo_command_build(RAIKOO_CMD_ACTIVATE_ACCOUNT, NULL, NULL,
                               json_pack("{s:s, s:s, s:s}", "email", "New@X.io", "code", "ABCD-EFGH-JKMN",
                                         "password_hash", HASH),
                               MAX, &m, err, sizeof(err)) == 0);
    CHECK_STR(m.key, "new@x.io");
    CHECK(strstr(m.payload, "actorid") == NULL);
    raikoo_command_msg_clear(&m);
    CHECK(raikoo_command_build(RAIKOO_CMD_RESEND_INVITATION, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "org_id", ORG, "invitation_id", INV), MAX, &m, err,
                               sizeof(err)) == 0);
    CHECK_STR(m.key, ORG);
    raikoo_command_msg_clear(&m);
}

static void build_refuses_what_the_worker_would_refuse_with_its_message(void) {
    raikoo_command_msg_t m;
    char err[256];
    CHECK(raikoo_command_build(RAIKOO_CMD_ADD_EXISTING_USER, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "org_id", ORG, "email", "x"), MAX, &m, err,
                               sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK(strncmp(err, "data.email: ", 12) == 0);
    CHECK(m.payload == NULL && m.id[0] == '\0');
    CHECK(raikoo_command_build(RAIKOO_CMD_ADD_EXISTING_USER, NULL, NULL,
                               json_pack("{s:s, s:s}", "org_id", ORG, "email", "b@x.io"), MAX, &m, err,
                               sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK_STR(err, "actorid is required for AddExistingUser");
    CHECK(raikoo_command_build(RAIKOO_CMD_REMOVE_MEMBER, NULL, ACTOR, json_pack("{s:s}", "org_id", ORG), MAX,
                               &m, err, sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK_STR(err, "data.user_id is required for RemoveMember");
    CHECK(raikoo_command_build(RAIKOO_CMD_REMOVE_MEMBER, NULL, ACTOR,
                               json_pack("{s:s, s:s, s:s}", "org_id", ORG, "user_id", INV, "note", "hi"), MAX,
                               &m, err, sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK_STR(err, "unknown field (key 3 of data) for RemoveMember, which takes org_id, user_id");
    CHECK(raikoo_command_build(RAIKOO_CMD_SET_MEMBER_ROLE, NULL, ACTOR,
                               json_pack("{s:s, s:s, s:i, s:b}", "org_id", ORG, "user_id", INV, "owner", 1,
                                         "can_manage_users", 0),
                               MAX, &m, err, sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK_STR(err, "data.owner must be true or false");
    CHECK(raikoo_command_build(RAIKOO_CMD_REMOVE_MEMBER, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "org_id", ORG, "user_id", INV), 100, &m, err,
                               sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK(strstr(err, "over the limit") != NULL);
    CHECK(raikoo_command_build(RAIKOO_CMD_TYPE_COUNT, NULL, ACTOR, json_object(), MAX, &m, err,
                               sizeof(err)) == RAIKOO_ERR_INVALID);
}

static void password_hash_is_interactive_argon2id_and_verifies(void) {
    char hash[crypto_pwhash_STRBYTES], err[256];
    CHECK(raikoo_password_hash("correct horse battery staple", hash, err, sizeof(err)) == 0);
    CHECK(strncmp(hash, "$argon2id$", 10) == 0);
    CHECK(strstr(hash, "correct horse") == NULL);
    CHECK(password_hash_acceptable(hash) == 1);
    CHECK(crypto_pwhash_str_verify(hash, "correct horse battery staple", 28) == 0);
    CHECK(crypto_pwhash_str_verify(hash, "wrong", 5) != 0);
    char again[crypto_pwhash_STRBYTES];
    CHECK(raikoo_password_hash("correct horse battery staple", again, err, sizeof(err)) == 0);
    CHECK(strcmp(hash, again) != 0); /* salted */
    CHECK(raikoo_password_hash("", hash, err, sizeof(err)) == -1);
}

/* ---- the producer against librdkafka's mock cluster (the real broker is in tests/test_cli.py) ---- */

/* Publishes a result for command_id to the results topic, as the relay would. */
static void mock_result(rd_kafka_t *rk, const char *command_id, const char *status) {
    json_t *data = json_pack("{s:s, s:s, s:s, s:n, s:s, s:s, s:n, s:n}", "command_id", command_id,
                             "command_type", "RemoveMember", "status", status, "code", "message", "Done",
                             "org_id", ORG, "user_id", "invitation_id");
    json_t *ev = event_new("raikoo.result.v1", NULL, "/test", NULL, command_id, data);
    char *text = event_dump(ev);
    CHECK(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("raikoo.results"),
                            RD_KAFKA_V_KEY(command_id, strlen(command_id)),
                            RD_KAFKA_V_VALUE(text, strlen(text)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_END) == 0);
    free(text);
    json_decref(ev);
}

static int delivered_ok, delivered_bad;
static void count_delivery(void *opaque, const char *command_id, const char *error) {
    (void)opaque;
    CHECK(uuid_valid(command_id));
    if (error)
        delivered_bad++;
    else
        delivered_ok++;
}

/* librdkafka's mock cluster with the commands and results topics, a configuration pointing at it, and the
 * relay's part: a plain producer writing results into it. */
typedef struct mock_kafka {
    rd_kafka_t *cluster, *relay;
    conf_t *c;
} mock_kafka_t;

enum { MOCK_COMMANDS = 40 };

static int mock_kafka_new(mock_kafka_t *m) {
    char err[512];
    memset(m, 0, sizeof(*m));
    /* A client whose configuration asks for a mock cluster owns one (and points at it). */
    rd_kafka_conf_t *mconf = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(mconf, "test.mock.num.brokers", "1", err, sizeof(err)) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(mconf, "log_level", "3", err, sizeof(err)) == RD_KAFKA_CONF_OK);
    m->cluster = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, err, sizeof(err));
    CHECK(m->cluster != NULL);
    if (!m->cluster)
        return -1;
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(m->cluster);
    rd_kafka_mock_topic_create(mc, "raikoo.commands", 3, 1);
    rd_kafka_mock_topic_create(mc, "raikoo.results", 4, 1);
    m->c = conf_new();
    CHECK(conf_set(m->c, "kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), err, sizeof(err)) ==
          0);
    rd_kafka_conf_t *rconf = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(rconf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), err,
                            sizeof(err)) == RD_KAFKA_CONF_OK);
    m->relay = rd_kafka_new(RD_KAFKA_PRODUCER, rconf, err, sizeof(err));
    CHECK(m->relay != NULL);
    return m->relay ? 0 : -1;
}

static void mock_kafka_free(mock_kafka_t *m) {
    if (m->relay)
        rd_kafka_destroy(m->relay);
    conf_free(m->c);
    if (m->cluster)
        rd_kafka_destroy(m->cluster); /* and its mock cluster */
}

/* Publishes MOCK_COMMANDS commands (the first waiting for its delivery, the others not) and one that is
 * refused before it is sent; every delivery is reported. */
static void publish_commands(raikoo_producer_t *p, char ids[MOCK_COMMANDS][UUID_BUF]) {
    char err[512];
    delivered_ok = delivered_bad = 0;
    CHECK(raikoo_command_publish(p, RAIKOO_CMD_REMOVE_MEMBER, ACTOR,
                                 json_pack("{s:s, s:s}", "org_id", ORG, "user_id", INV), ids[0], err,
                                 sizeof(err)) == 0);
    for (int i = 1; i < MOCK_COMMANDS; i++)
        CHECK(raikoo_command_send(p, RAIKOO_CMD_REMOVE_MEMBER, ACTOR,
                                  json_pack("{s:s, s:s}", "org_id", ORG, "user_id", INV), ids[i], err,
                                  sizeof(err)) == 0);
    char bad_id[UUID_BUF] = "x";
    CHECK(raikoo_command_send(p, RAIKOO_CMD_REMOVE_MEMBER, ACTOR, json_pack("{s:s}", "org_id", ORG), bad_id,
                              err, sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK(bad_id[0] == '\0');
    CHECK(raikoo_producer_flush(p, 10000, err, sizeof(err)) == 0);
    CHECK(delivered_ok == MOCK_COMMANDS && delivered_bad == 0);
    CHECK(raikoo_results_pending(p) == MOCK_COMMANDS);
}

/* Polls the results of ids[1..MOCK_COMMANDS) (ids[0]'s was taken): each once, accepted or rejected as
 * published; then nothing more. */
static void poll_results_each_once(raikoo_producer_t *p, char ids[MOCK_COMMANDS][UUID_BUF]) {
    char err[512];
    raikoo_result_t r;
    int seen[MOCK_COMMANDS] = {0}, got = 0;
    while (raikoo_results_pending(p) > 0 && raikoo_results_poll(p, 10000, &r, err, sizeof(err)) == 1) {
        for (int i = 0; i < MOCK_COMMANDS; i++)
            if (strcmp(r.command_id, ids[i]) == 0) {
                seen[i]++;
                CHECK(r.accepted == !(i % 2));
            }
        got++;
        raikoo_result_clear(&r);
    }
    CHECK(got == MOCK_COMMANDS - 1);
    for (int i = 1; i < MOCK_COMMANDS; i++)
        CHECK(seen[i] == 1);
    /* Nothing more: the duplicate and the stranger's result were skipped. */
    CHECK(raikoo_results_poll(p, 300, &r, err, sizeof(err)) == 0);
    CHECK(raikoo_command_wait(p, ids[3], 100, &r, err, sizeof(err)) == 0);
}

static void producer_waits_for_one_and_polls_many_results_each_once(void) {
    enum { N = MOCK_COMMANDS };
    char err[512];
    log_init("unit", "error");
    mock_kafka_t m;
    raikoo_producer_t *p = NULL;
    if (mock_kafka_new(&m) != 0)
        goto done;

    /* A result already on the topic before we follow it is not ours to see. */
    mock_result(m.relay, "6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b", "accepted");
    rd_kafka_flush(m.relay, 5000);

    p = raikoo_producer_new_conf(m.c, err, sizeof(err));
    CHECK(p != NULL);
    if (!p)
        goto done;
    raikoo_producer_set_delivery_cb(p, count_delivery, NULL);
    raikoo_result_t r;
    CHECK(raikoo_results_poll(p, 0, &r, err, sizeof(err)) == RAIKOO_ERR_STATE);
    CHECK(raikoo_results_follow(p, err, sizeof(err)) == 0);

    char ids[N][UUID_BUF];
    publish_commands(p, ids);

    /* Results in reverse order, someone else's among them, and one duplicate. */
    for (int i = N - 1; i >= 0; i--) {
        mock_result(m.relay, ids[i], i % 2 ? "rejected" : "accepted");
        if (i == N / 2) {
            mock_result(m.relay, "0d9c8b7a-6f5e-4d3c-9b2a-000000000000", "accepted");
            mock_result(m.relay, ids[N - 1], "accepted");
        }
    }
    CHECK(rd_kafka_flush(m.relay, 5000) == 0);

    /* Waiting for the first command keeps the others that arrive meanwhile. */
    CHECK(raikoo_command_wait(p, ids[0], 10000, &r, err, sizeof(err)) == 1);
    CHECK_STR(r.command_id, ids[0]);
    CHECK(r.accepted == 1 && r.code == NULL && r.user_id == NULL);
    CHECK_STR(r.org_id, ORG);
    raikoo_result_clear(&r);
    CHECK(raikoo_results_pending(p) == N - 1);
    poll_results_each_once(p, ids);
done:
    raikoo_producer_free(p);
    mock_kafka_free(&m);
}

/* The invitation options and SetOrganizationPolicy: bound when right, their own code when wrong. */
static void parse_gives_invitation_options_their_own_codes(void) {
    char why[256];
    cmd_t cmd;
    CHECK(parse(envelope("InviteNewUser", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"email\":\"a@x.io\",\"can_manage_users\":true,"
                         "\"expires_in_days\":30,\"locale\":\"de-AT\"}"),
                why, sizeof(why), &cmd) == PARSE_OK);
    CHECK(cmd.can_manage_users == 1 && cmd.expires_in_days == 30 && cmd.invalid_code == NULL);
    CHECK_STR(cmd.locale, "de-AT");
    cmd_free(&cmd);
    static const struct {
        const char *type, *data, *code;
    } bad[] = {
        {"AddExistingUser", "\"expires_in_days\":0", "invalid_expiry"},
        {"AddExistingUser", "\"expires_in_days\":31", "invalid_expiry"},
        {"InviteNewUser", "\"expires_in_days\":\"7\"", "invalid_expiry"},
        {"InviteNewUser", "\"expires_in_days\":7.0", "invalid_expiry"},
        {"ResendInvitation", "\"invitation_id\":\"" INV "\",\"locale\":\"EN\"", "invalid_locale"},
        {"SetOrganizationPolicy", "\"seat_limit\":0", "invalid_seat_limit"},
        {"SetOrganizationPolicy", "\"allowed_domains\":[\"x\"]", "invalid_domain"},
        {"SetOrganizationPolicy", "\"app_url\":\"https://x.io/\"", "invalid_app_url"},
        {"SetOrganizationPolicy", "\"default_expiry_days\":\"none\"", "invalid_expiry"},
        {"InviteNewUser", "\"can_manage_users\":1", "invalid_command"},
    };
    char data[512];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        text_printf(data, sizeof(data), "{\"org_id\":\"" ORG "\",%s%s}", bad[i].data,
                    strcmp(bad[i].type, "ResendInvitation") == 0 ||
                            strcmp(bad[i].type, "SetOrganizationPolicy") == 0
                        ? ""
                        : ",\"email\":\"a@x.io\"");
        CHECK(parse(envelope(bad[i].type, ACTOR, data), why, sizeof(why), &cmd) == PARSE_INVALID);
        CHECK_STR(cmd_invalid_code(&cmd), bad[i].code);
        cmd_free(&cmd);
    }
    /* null clears a policy setting; an empty list of domains is any domain. */
    CHECK(parse(envelope("SetOrganizationPolicy", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"allowed_domains\":[],\"seat_limit\":null,"
                         "\"default_expiry_days\":null,\"default_locale\":null,\"app_url\":null}"),
                why, sizeof(why), NULL) == PARSE_OK);
}

const unit_test_t cmd_tests[] = {
    {"cmd: parse gives invitation options their own codes", parse_gives_invitation_options_their_own_codes},
    {"cmd: parse accepts every command type with its fields",
     parse_accepts_every_command_type_with_its_fields},
    {"cmd: parse accepts activate account without actor but not others",
     parse_accepts_activate_account_without_actor_but_not_others},
    {"cmd: parse refuses wrong types missing and unknown fields",
     parse_refuses_wrong_types_missing_and_unknown_fields},
    {"cmd: parse refuses bad uuids and addresses", parse_refuses_bad_uuids_and_addresses},
    {"cmd: parse sorts non commands from unknown types and invalid envelopes",
     parse_sorts_non_commands_from_unknown_types_and_invalid_envelopes},
    {"cmd: parse canonicalises uuids to lower case", parse_canonicalises_uuids_to_lower_case},
    {"cmd: parse refuses blank names as the database does", parse_refuses_blank_names_as_the_database_does},
    {"cmd: parse reasons never repeat the input", parse_reasons_never_repeat_the_input},
    {"producer: build makes a cloudevent the worker accepts", build_makes_a_cloudevent_the_worker_accepts},
    {"producer: build keys each command by org or its own subject",
     build_keys_each_command_by_org_or_its_own_subject},
    {"producer: build refuses what the worker would refuse with its message",
     build_refuses_what_the_worker_would_refuse_with_its_message},
    {"password_hash_is_interactive_argon2id_and_verifies",
     password_hash_is_interactive_argon2id_and_verifies},
    {"producer: waits for one and polls many results each once",
     producer_waits_for_one_and_polls_many_results_each_once},
    {NULL, NULL},
};
