/* Unit tests of commands: the parser the worker uses, and the producer library's envelopes built on it. */
#include <stdlib.h>

#include "cmd.h"
#include "producer.h"
#include "secret.h"
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
                         "{\"org_id\":\"" ORG "\",\"email\":\" Ann@Example.IO \",\"name\":\"Ann\",\"owner\":true}"),
                why, sizeof(why), &cmd) == PARSE_OK);
    CHECK(cmd.type == CMD_INVITE_NEW_USER);
    CHECK_STR(cmd.org_id, ORG);
    CHECK_STR(cmd.actor, ACTOR);
    CHECK_STR(cmd.email, "Ann@example.io"); /* trimmed, domain lower-cased, local part kept */
    CHECK(cmd.owner == 1);
    cmd_free(&cmd);

    CHECK(parse(envelope("SetMemberRole", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\",\"owner\":false,\"can_manage_users\":true}"),
                why, sizeof(why), &cmd) == PARSE_OK);
    CHECK(cmd.owner == 0 && cmd.can_manage_users == 1);
    cmd_free(&cmd);

    CHECK(parse(envelope("CreateOrganization", ACTOR, "{\"name\":\"Acme\",\"owner_user_id\":\"" ACTOR "\"}"), why,
                sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("AcceptInvitation", ACTOR, "{\"invitation_id\":\"" INV "\",\"code\":\"ABCD-EFGH-JKMN\"}"),
                why, sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("ResendInvitation", ACTOR, "{\"org_id\":\"" ORG "\",\"invitation_id\":\"" INV "\"}"), why,
                sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("RemoveInvitation", ACTOR, "{\"org_id\":\"" ORG "\",\"invitation_id\":\"" INV "\"}"), why,
                sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("RemoveMember", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"), why,
                sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("AddExistingUser", ACTOR, "{\"org_id\":\"" ORG "\",\"email\":\"b@x.io\"}"), why, sizeof(why),
                NULL) == PARSE_OK);
    CHECK(parse(envelope("CreateUser", ACTOR,
                         "{\"email\":\"b@x.io\",\"name\":\"B\",\"password_hash\":\"" HASH "\"}"),
                why, sizeof(why), NULL) == PARSE_OK);
}

static void parse_accepts_activate_account_without_actor_but_not_others(void) {
    char why[256];
    const char *data = "{\"email\":\"n@x.io\",\"code\":\"ABCD-EFGH-JKMN\",\"password_hash\":\"" HASH "\"}";
    CHECK(parse(envelope("ActivateAccount", NULL, data), why, sizeof(why), NULL) == PARSE_OK);
    CHECK(parse(envelope("RemoveMember", NULL, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"), why, sizeof(why),
                NULL) == PARSE_INVALID);
    CHECK_STR(why, "actorid is required for RemoveMember");
    CHECK(parse(envelope("ActivateAccount", "not-a-uuid", data), why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "actorid must be a UUID");
}

static void parse_refuses_wrong_types_missing_and_unknown_fields(void) {
    char why[256];
    CHECK(parse(envelope("AddExistingUser", ACTOR, "{\"org_id\":\"" ORG "\",\"email\":\"b@x.io\",\"owner\":\"yes\"}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.owner must be true or false");
    CHECK(parse(envelope("AddExistingUser", ACTOR, "{\"org_id\":42,\"email\":\"b@x.io\"}"), why, sizeof(why), NULL) ==
          PARSE_INVALID);
    CHECK_STR(why, "data.org_id must be a UUID");
    CHECK(parse(envelope("CreateOrganization", ACTOR, "{\"name\":7,\"owner_user_id\":\"" ACTOR "\"}"), why, sizeof(why),
                NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.name must be a string");
    CHECK(parse(envelope("SetMemberRole", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\",\"owner\":true}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.can_manage_users is required for SetMemberRole");
    CHECK(parse(envelope("AddExistingUser", ACTOR, "{\"email\":\"b@x.io\"}"), why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.org_id is required for AddExistingUser");
    CHECK(parse(envelope("RemoveMember", ACTOR,
                         "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\",\"password\":\"hunter2\"}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "unknown field data.password for RemoveMember");
    CHECK(parse(envelope("RemoveMember", ACTOR, "[]"), why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data must be an object");
    CHECK(parse(envelope("CreateOrganization", ACTOR, "{\"name\":\"\",\"owner_user_id\":\"" ACTOR "\"}"), why,
                sizeof(why), NULL) == PARSE_INVALID);
    CHECK(strstr(why, "data.name must be a string of 1 to") != NULL);
}

static void parse_refuses_bad_uuids_and_addresses(void) {
    char why[256];
    CHECK(parse(envelope("RemoveMember", ACTOR, "{\"org_id\":\"3f0c6a4e-8d1b-4c52-9a7e-0b1c2d3e4f5\",\"user_id\":\"" INV
                                                "\"}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.org_id must be a UUID");
    CHECK(parse(envelope("RemoveMember", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"zz9c8b7a-6f5e-4d3c-9b2a-19f8e7d6c5b4\"}"),
                why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "data.user_id must be a UUID");
    const char *bad[] = {"no-at-sign", "two@@x.io", "a@b@x.io", "Ann <ann@x.io>", "sp ace@x.io", "a@nodot", NULL};
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
    CHECK(parse("{\"type\":\"raikoo.command.RemoveMember.v1\"}", why, sizeof(why), NULL) == PARSE_NOT_COMMAND);
    CHECK(parse("{\"id\":\"nope\"}", why, sizeof(why), NULL) == PARSE_NOT_COMMAND);
    CHECK(parse(envelope("PromoteEveryone", ACTOR, "{}"), why, sizeof(why), NULL) == PARSE_UNKNOWN_TYPE);
    CHECK(strstr(why, "PromoteEveryone") != NULL);

    char big[MAX + 100];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "{}", 2);
    CHECK(parse(big, why, sizeof(why), NULL) == PARSE_NOT_COMMAND);
    CHECK(strstr(why, "over the limit") != NULL);

    char text[4096];
    snprintf(text, sizeof(text), "%s", envelope("RemoveMember", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"));
    char *v = strstr(text, "\"1.0\"");
    memcpy(v, "\"0.3\"", 5);
    CHECK(parse(text, why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "specversion must be \"1.0\"");
    snprintf(text, sizeof(text), "%s", envelope("RemoveMember", ACTOR, "{\"org_id\":\"" ORG "\",\"user_id\":\"" INV "\"}"));
    text[strlen(text) - 1] = '\0';
    strncat(text, ",\"extra\":1}", sizeof(text) - strlen(text) - 1);
    CHECK(parse(text, why, sizeof(why), NULL) == PARSE_INVALID);
    CHECK_STR(why, "unknown attribute \"extra\"");
}

/* ---- the producer library's envelopes ---- */

static void build_makes_a_cloudevent_the_worker_accepts(void) {
    raikoo_command_msg_t m;
    char err[256];
    json_t *data = json_pack("{s:s, s:s, s:s, s:b}", "org_id", ORG, "email", "ann@x.io", "name", "Ann", "owner", 1);
    CHECK(raikoo_command_build(CMD_INVITE_NEW_USER, "/raikoo/cli", ACTOR, data, MAX, &m, err, sizeof(err)) == 0);
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
    CHECK(raikoo_command_build(CMD_REMOVE_MEMBER, NULL, ACTOR, json_pack("{s:s, s:s}", "org_id", ORG, "user_id", INV),
                               MAX, &m2, err, sizeof(err)) == 0);
    CHECK(strcmp(m.id, m2.id) != 0); /* a fresh id each time: each is its own idempotency key */
    CHECK(strstr(m2.payload, "\"source\":\"/raikoo/producer\"") != NULL);
    raikoo_command_msg_clear(&m);
    raikoo_command_msg_clear(&m2);
}

static void build_keys_each_command_by_org_or_its_own_subject(void) {
    raikoo_command_msg_t m;
    char err[256];
    CHECK(raikoo_command_build(CMD_CREATE_ORGANIZATION, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "name", "Acme", "owner_user_id", INV), MAX, &m, err,
                               sizeof(err)) == 0);
    CHECK_STR(m.key, INV);
    raikoo_command_msg_clear(&m);
    CHECK(raikoo_command_build(CMD_ACCEPT_INVITATION, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "invitation_id", INV, "code", "ABCD-EFGH-JKMN"), MAX, &m, err,
                               sizeof(err)) == 0);
    CHECK_STR(m.key, INV);
    raikoo_command_msg_clear(&m);
    CHECK(raikoo_command_build(CMD_CREATE_USER, NULL, ACTOR,
                               json_pack("{s:s, s:s, s:s}", "email", " Bob.Smith@Example.IO", "name", "Bob",
                                         "password_hash", HASH),
                               MAX, &m, err, sizeof(err)) == 0);
    CHECK_STR(m.key, "bob.smith@example.io");
    raikoo_command_msg_clear(&m);
    CHECK(raikoo_command_build(CMD_ACTIVATE_ACCOUNT, NULL, NULL,
                               json_pack("{s:s, s:s, s:s}", "email", "New@X.io", "code", "ABCD-EFGH-JKMN",
                                         "password_hash", HASH),
                               MAX, &m, err, sizeof(err)) == 0);
    CHECK_STR(m.key, "new@x.io");
    CHECK(strstr(m.payload, "actorid") == NULL);
    raikoo_command_msg_clear(&m);
    CHECK(raikoo_command_build(CMD_RESEND_INVITATION, NULL, ACTOR,
                               json_pack("{s:s, s:s}", "org_id", ORG, "invitation_id", INV), MAX, &m, err,
                               sizeof(err)) == 0);
    CHECK_STR(m.key, ORG);
    raikoo_command_msg_clear(&m);
}

static void build_refuses_what_the_worker_would_refuse_with_its_message(void) {
    raikoo_command_msg_t m;
    char err[256];
    CHECK(raikoo_command_build(CMD_ADD_EXISTING_USER, NULL, ACTOR, json_pack("{s:s, s:s}", "org_id", ORG, "email", "x"),
                               MAX, &m, err, sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK(strncmp(err, "data.email: ", 12) == 0);
    CHECK(m.payload == NULL && m.id[0] == '\0');
    CHECK(raikoo_command_build(CMD_ADD_EXISTING_USER, NULL, NULL,
                               json_pack("{s:s, s:s}", "org_id", ORG, "email", "b@x.io"), MAX, &m, err,
                               sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK_STR(err, "actorid is required for AddExistingUser");
    CHECK(raikoo_command_build(CMD_REMOVE_MEMBER, NULL, ACTOR, json_pack("{s:s}", "org_id", ORG), MAX, &m, err,
                               sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK_STR(err, "data.user_id is required for RemoveMember");
    CHECK(raikoo_command_build(CMD_REMOVE_MEMBER, NULL, ACTOR,
                               json_pack("{s:s, s:s, s:s}", "org_id", ORG, "user_id", INV, "note", "hi"), MAX, &m, err,
                               sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK_STR(err, "unknown field data.note for RemoveMember");
    CHECK(raikoo_command_build(CMD_SET_MEMBER_ROLE, NULL, ACTOR,
                               json_pack("{s:s, s:s, s:i, s:b}", "org_id", ORG, "user_id", INV, "owner", 1,
                                         "can_manage_users", 0),
                               MAX, &m, err, sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK_STR(err, "data.owner must be true or false");
    CHECK(raikoo_command_build(CMD_REMOVE_MEMBER, NULL, ACTOR, json_pack("{s:s, s:s}", "org_id", ORG, "user_id", INV),
                               100, &m, err, sizeof(err)) == RAIKOO_ERR_INVALID);
    CHECK(strstr(err, "over the limit") != NULL);
    CHECK(raikoo_command_build(CMD_TYPE_COUNT, NULL, ACTOR, json_object(), MAX, &m, err, sizeof(err)) ==
          RAIKOO_ERR_INVALID);
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

const unit_test_t cmd_tests[] = {
    {"cmd: parse accepts every command type with its fields", parse_accepts_every_command_type_with_its_fields},
    {"cmd: parse accepts activate account without actor but not others",
     parse_accepts_activate_account_without_actor_but_not_others},
    {"cmd: parse refuses wrong types missing and unknown fields", parse_refuses_wrong_types_missing_and_unknown_fields},
    {"cmd: parse refuses bad uuids and addresses", parse_refuses_bad_uuids_and_addresses},
    {"cmd: parse sorts non commands from unknown types and invalid envelopes",
     parse_sorts_non_commands_from_unknown_types_and_invalid_envelopes},
    {"producer: build makes a cloudevent the worker accepts", build_makes_a_cloudevent_the_worker_accepts},
    {"producer: build keys each command by org or its own subject", build_keys_each_command_by_org_or_its_own_subject},
    {"producer: build refuses what the worker would refuse with its message",
     build_refuses_what_the_worker_would_refuse_with_its_message},
    {"password_hash_is_interactive_argon2id_and_verifies", password_hash_is_interactive_argon2id_and_verifies},
    {NULL, NULL},
};
