/* Fuzzes raikoo_result_parse: what the producer library makes of each message on the results topic (anyone
 * who can write there can send it anything). Invariants: a result has a command id, a status, a message
 * that is never NULL, accepted exactly when the status says so, every string valid UTF-8 and borrowed from
 * data; its data serialises to valid JSON that reads back equal. Anything else is refused with r zeroed. */
#include <jansson.h>

#include "fuzz.h"
#include "producer.h"

static void check_str(const char *what, const char *s, int may_be_null) {
    if (!s) {
        FUZZ_ASSERT(may_be_null, "%s is NULL", what);
        return;
    }
    FUZZ_ASSERT(utf8_valid(s, strlen(s)), "%s is not valid UTF-8", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    raikoo_result_t r;
    memset(&r, 0xA5, sizeof(r));
    if (raikoo_result_parse(data, size, &r) != 0) {
        FUZZ_ASSERT(!r.data && !r.command_id && !r.message, "a refused result left data behind");
        return 0;
    }
    FUZZ_ASSERT(json_is_object(r.data), "a result without a data object");
    check_str("command_id", r.command_id, 0);
    check_str("command_type", r.command_type, 0);
    check_str("status", r.status, 0);
    check_str("message", r.message, 0);
    check_str("code", r.code, 1);
    check_str("org_id", r.org_id, 1);
    check_str("user_id", r.user_id, 1);
    check_str("invitation_id", r.invitation_id, 1);
    FUZZ_ASSERT(r.accepted == (strcmp(r.status, "accepted") == 0), "accepted disagrees with status");
    FUZZ_ASSERT(json_string_value(json_object_get(r.data, "command_id")) == r.command_id,
                "command_id is not borrowed from data");
    char *text = json_dumps(r.data, JSON_COMPACT);
    FUZZ_ASSERT(text, "the result's data does not serialise");
    json_error_t jerr;
    json_t *back = json_loads(text, 0, &jerr);
    FUZZ_ASSERT(back, "the result's data is not valid JSON: %s", jerr.text);
    FUZZ_ASSERT(json_equal(back, r.data), "the result's data does not read back equal");
    json_decref(back);
    free(text);
    raikoo_result_clear(&r);
    FUZZ_ASSERT(!r.data && !r.command_id, "raikoo_result_clear left something");
    return 0;
}
