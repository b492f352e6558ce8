/* raikoo-parse-check: runs the command worker's own parser (cmd_parse) over one message read from stdin
 * and prints "<status> <reason>", status one of ok, not_command, unknown_type, invalid. The schema tests
 * (tests/test_schemas.py) compare its verdicts with the JSON Schemas'. Exit status 0 when it could read
 * the message, 2 when it could not. */
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"

/* The worker's default command.max.bytes. */
#define MAX_BYTES 65536

int main(void) {
    static char buf[4 * MAX_BYTES];
    size_t len = fread(buf, 1, sizeof(buf), stdin);
    if (ferror(stdin) || !feof(stdin)) {
        fprintf(stderr, "raikoo-parse-check: cannot read the message (at most %zu bytes) from stdin\n",
                sizeof(buf) - 1);
        return 2;
    }
    static const char *const names[] = {[PARSE_OK] = "ok",
                                        [PARSE_NOT_COMMAND] = "not_command",
                                        [PARSE_UNKNOWN_TYPE] = "unknown_type",
                                        [PARSE_INVALID] = "invalid"};
    cmd_t cmd;
    char why[256] = "";
    parse_status_t st = cmd_parse(buf, len, MAX_BYTES, &cmd, why, sizeof(why));
    printf("%s %s\n", names[st], why);
    cmd_free(&cmd);
    return 0;
}
