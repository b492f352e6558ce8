/* Fuzzes what `raikoo dlq list` and `replay` read of a dead letter (producers/raikoo/dlq.c, included for its
 * static functions): the headers (raikoo.dlq.*, ce_id, ce_specversion, raikoo.dlq.redacted) and the value
 * (its "id", whether it is the placeholder of a redacted value), through find_command_id, find_redaction and
 * dead_json. Input: header lines "name: value" (a name without ": " is a header without a value) up to an
 * empty line, then the value. Invariants: the command id is empty or a lower-case UUID; the JSON of a dead
 * letter serialises; it never holds the value (a marker appended to the value never shows); "redacted" is
 * null, "fields" or "whole". */
#include "../../producers/raikoo/dlq.c"

#include "fuzz.h"

const cli_cmd_t *cli_find(const char *name) {
    (void)name;
    return NULL;
}
int cli_usage(const cli_cmd_t *cmd, int mistake) {
    (void)cmd;
    return mistake;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

#define MARKER "MqZ8VALUEONLY"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    dead_t d;
    memset(&d, 0, sizeof(d));
    d.headers = rd_kafka_headers_new(8);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop == p) {
            p = stop + 1;
            break;
        }
        const char *colon = memchr(p, ':', (size_t)(stop - p));
        char name[128];
        size_t nlen = (size_t)((colon ? colon : stop) - p);
        text_printf(name, sizeof(name), "%.*s", (int)(nlen < 127 ? nlen : 127), p);
        if (colon) {
            const char *v = colon + 1 < stop && colon[1] == ' ' ? colon + 2 : colon + 1;
            rd_kafka_header_add(d.headers, name, -1, v, (ssize_t)(stop - v));
        } else {
            rd_kafka_header_add(d.headers, name, -1, NULL, 0);
        }
        p = nl ? nl + 1 : end;
    }
    if (p > end)
        p = end;
    size_t vlen = (size_t)(end - p);
    int marked = !memmem(data, size, "MqZ8", 4);
    d.len = vlen + (marked ? sizeof(MARKER) - 1 : 0);
    d.payload = xmalloc(d.len ? d.len : 1);
    memcpy(d.payload, p, vlen);
    if (marked)
        memcpy(d.payload + vlen, MARKER, sizeof(MARKER) - 1);
    d.partition = 0, d.offset = 7, d.timestamp = 1767225600123;
    find_command_id(&d);
    find_redaction(&d);
    size_t idlen = strlen(d.command_id);
    FUZZ_ASSERT(idlen == 0 || (uuid_valid(d.command_id) && idlen == UUID_STR_LEN), "a bad command id");
    for (const char *c = d.command_id; *c; c++)
        FUZZ_ASSERT(!(*c >= 'A' && *c <= 'Z'), "a command id in upper case");
    FUZZ_ASSERT(!d.redacted[0] || !strcmp(d.redacted, "fields") || !strcmp(d.redacted, "whole"),
                "redacted is %s", d.redacted);
    json_t *o = dead_json(&d);
    char *text = json_dumps(o, JSON_COMPACT);
    FUZZ_ASSERT(text, "the JSON of a dead letter does not serialise");
    if (marked)
        FUZZ_ASSERT(!strstr(text, "MqZ8"), "the JSON of a dead letter holds its value: %s", text);
    free(text);
    json_decref(o);
    dead_list_t l = {&d, 1, 1};
    dead_t *copy = xmalloc(sizeof(*copy));
    *copy = d;
    l.d = copy;
    dead_list_free(&l);
    return 0;
}
