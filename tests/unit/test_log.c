/* Unit tests of lib/core/log.c: the text and JSON lines, secrets masked in both, JSON valid for any input. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "text.h"
#include "unit.h"

static const char *const when = "2026-11-29T06:31:30.123Z";

/* Parses a JSON line (one object, then exactly one newline); NULL when it is not one. */
static json_t *parse_line(const char *line) {
    size_t n = strlen(line);
    if (n == 0 || line[n - 1] != '\n' || memchr(line, '\n', n - 1) != NULL)
        return NULL;
    json_error_t e;
    json_t *doc = json_loadb(line, n - 1, 0, &e);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static const char *member(json_t *doc, const char *name) {
    return json_string_value(json_object_get(doc, name));
}

static void text_is_the_default_and_keeps_its_shape(void) {
    log_init("unit", "info");
    CHECK(log_set_format(NULL) == 0);
    char *line = log_line_dup(LOG_WARN, "c-1", NULL, "say \"hi\"\nthen go", when);
    CHECK_STR(line,
              "2026-11-29T06:31:30.123Z level=warn worker=unit corr=c-1 msg=\"say \\\"hi\\\"\\nthen go\"\n");
    free(line);
    const char *fields[] = {"service", "PostgreSQL", "why", "no route", "skipped", NULL, NULL};
    line = log_line_dup(LOG_INFO, NULL, fields, "m", when);
    CHECK_STR(
        line,
        "2026-11-29T06:31:30.123Z level=info worker=unit msg=\"m\" service=PostgreSQL why=\"no route\"\n");
    free(line);
}

static void unknown_formats_are_refused(void) {
    CHECK(log_set_format("xml") == -1);
    CHECK(log_set_format("JSON") == -1);
    CHECK(log_set_format("text") == 0);
    CHECK(log_set_format("") == 0);
}

static void json_lines_hold_every_member(void) {
    log_init("command-worker", "info");
    log_set_instance("2");
    CHECK(log_set_format("json") == 0);
    const char *fields[] = {"service", "Kafka", "away_s", "1.5", NULL};
    char *line = log_line_dup(LOG_ERROR, "3f0c-1", fields, "Kafka available again", when);
    json_t *doc = parse_line(line);
    CHECK(doc != NULL);
    if (doc) {
        CHECK_STR(member(doc, "time"), when);
        CHECK_STR(member(doc, "level"), "error");
        CHECK_STR(member(doc, "worker"), "command-worker");
        CHECK_STR(member(doc, "instance"), "2");
        CHECK_STR(member(doc, "corr"), "3f0c-1");
        CHECK_STR(member(doc, "msg"), "Kafka available again");
        json_t *f = json_object_get(doc, "fields");
        CHECK(json_is_object(f) && json_object_size(f) == 2);
        CHECK_STR(json_string_value(json_object_get(f, "away_s")), "1.5");
        json_decref(doc);
    }
    free(line);
    /* No correlation id, no fields, no instance: those members are left out, not empty. */
    log_set_instance(NULL);
    line = log_line_dup(LOG_DEBUG, NULL, NULL, "plain", when);
    CHECK_STR(line,
              "{\"time\":\"2026-11-29T06:31:30.123Z\",\"level\":\"debug\",\"worker\":\"command-worker\","
              "\"msg\":\"plain\"}\n");
    free(line);
    log_set_format("text");
}

static void json_stays_valid_for_any_bytes(void) {
    log_init("unit", "info");
    log_set_format("json");
    /* Quotes, backslashes, every control character, DEL, invalid UTF-8 (a lone continuation byte, a cut
     * sequence, an overlong form, a surrogate) and a valid multi-byte character. */
    char msg[128];
    size_t n = 0;
    const char *head = "q\"b\\ \xc3\xa9 \x80 \xe2\x82 \xc0\xaf \xed\xa0\x80 ";
    memcpy(msg, head, strlen(head));
    n = strlen(head);
    for (int ch = 1; ch < 0x20; ch++)
        msg[n++] = (char)ch;
    msg[n++] = 0x7f;
    msg[n] = '\0';
    const char *fields[] = {"k\"ey\n", "v\x01\xff", NULL};
    char *line = log_line_dup(LOG_INFO, "corr\xfe", fields, msg, when);
    CHECK(utf8_valid(line, strlen(line)));
    json_t *doc = parse_line(line);
    CHECK(doc != NULL);
    if (doc) {
        const char *m = member(doc, "msg");
        CHECK(m && strncmp(m, "q\"b\\ \xc3\xa9 \xef\xbf\xbd ", 11) == 0);
        CHECK(m && strchr(m, '\t') != NULL && strchr(m, '\x1f') != NULL && strchr(m, 0x7f) != NULL);
        CHECK_STR(member(doc, "corr"), "corr\xef\xbf\xbd");
        CHECK_STR(json_string_value(json_object_get(json_object_get(doc, "fields"), "k\"ey\n")),
                  "v\x01\xef\xbf\xbd");
        json_decref(doc);
    }
    free(line);
    log_set_format("text");
}

static void secrets_are_masked_in_both_formats(void) {
    log_init("unit", "info");
    log_redact("Pw-0f-db-url");
    log_redact("S\"cret\n9");
    const char *fields[] = {"url", "password=Pw-0f-db-url", NULL};
    for (int json = 0; json < 2; json++) {
        log_set_format(json ? "json" : "text");
        char *line = log_line_dup(LOG_ERROR, "Pw-0f-db-url", fields,
                                  "FATAL: bad value \"Pw-0f-db-url\" and S\"cret\n9 \xff", when);
        CHECK(strstr(line, "Pw-0f-db-url") == NULL);
        CHECK(strstr(line, "cret") == NULL);
        CHECK(strstr(line, "***") != NULL);
        if (json) {
            json_t *doc = parse_line(line);
            CHECK(doc != NULL);
            if (doc) {
                CHECK_STR(member(doc, "msg"), "FATAL: bad value \"***\" and *** \xef\xbf\xbd");
                CHECK_STR(member(doc, "corr"), "***");
                json_decref(doc);
            }
        }
        free(line);
    }
    log_set_format("text");
}

static void a_long_message_is_cut_on_a_character(void) {
    log_init("unit", "info");
    log_set_format("json");
    /* log_msg cuts at 2 KiB with text_vprintf; here the line itself for a long message stays valid. */
    char big[6000];
    for (size_t i = 0; i + 2 < sizeof(big); i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof(big) - 2] = '"';
    big[sizeof(big) - 1] = '\0';
    char *line = log_line_dup(LOG_INFO, NULL, NULL, big, when);
    json_t *doc = parse_line(line);
    CHECK(doc != NULL);
    json_decref(doc);
    free(line);
    log_set_format("text");
}

const unit_test_t log_tests[] = {
    {"log: text is the default and keeps its shape", text_is_the_default_and_keeps_its_shape},
    {"log: unknown formats are refused", unknown_formats_are_refused},
    {"log: json lines hold every member", json_lines_hold_every_member},
    {"log: json stays valid for any bytes", json_stays_valid_for_any_bytes},
    {"log: secrets are masked in both formats", secrets_are_masked_in_both_formats},
    {"log: a long message stays one valid line", a_long_message_is_cut_on_a_character},
    {NULL, NULL},
};
