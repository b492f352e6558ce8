/* Fuzzes rfc3339_parse (lib/core/rfc3339.c), the one parser of RFC 3339 times (commands' "time", mail jobs'
 * expires_at). Invariants: an accepted time has at least 20 characters and ends in Z or an offset; the same
 * text with "t"/"z" in the other case gives the same time; written again in UTC ("...Z") it reads back to
 * the same time; a time in UTC without a leap second is written again by gmtime as it came (no day the month
 * lacks, no hour 24 is taken and moved on); the canonical form reads back to the same microsecond; one
 * character more is refused. */
#include <time.h>

#include "fuzz.h"
#include "rfc3339.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *in = fuzz_cstr(data, size);
    time_t t = 0;
    FUZZ_ASSERT(rfc3339_parse(NULL, &t) == -1, "NULL accepted");
    if (rfc3339_parse(in, &t) == 0) {
        size_t n = strlen(in);
        FUZZ_ASSERT(n >= 20, "accepted %zu characters", n);
        FUZZ_ASSERT(rfc3339_parse(in, NULL) == 0, "accepted only with out");
        char *other = xstrdup(in);
        other[10] = other[10] == 'T' ? 't' : 'T';
        if (other[n - 1] == 'Z' || other[n - 1] == 'z')
            other[n - 1] = other[n - 1] == 'Z' ? 'z' : 'Z';
        time_t t2 = 0;
        FUZZ_ASSERT(rfc3339_parse(other, &t2) == 0 && t2 == t, "the other case reads otherwise");
        free(other);
        struct tm tm;
        if (gmtime_r(&t, &tm) && tm.tm_year + 1900 >= 0 && tm.tm_year + 1900 <= 9999) {
            char again[40];
            snprintf(again, sizeof(again), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
            time_t t3 = 0;
            FUZZ_ASSERT(rfc3339_parse(again, &t3) == 0 && t3 == t, "%s does not read back as %s", again, in);
            if ((in[n - 1] == 'Z' || in[n - 1] == 'z') && memcmp(in + 17, "60", 2) != 0)
                FUZZ_ASSERT(memcmp(again, in, 10) == 0 && memcmp(again + 11, in + 11, 8) == 0,
                            "%s is read as another instant, %s", in, again);
        }
        long long us = 0, us2 = 0;
        char canon[RFC3339_CANONICAL_SIZE];
        FUZZ_ASSERT(rfc3339_parse_us(in, &us) == 0, "accepted by rfc3339_parse only");
        if (rfc3339_canonical(in, canon) == 0)
            FUZZ_ASSERT(rfc3339_parse_us(canon, &us2) == 0 && us2 == us,
                        "canonical %s is another instant than %s", canon, in);
        char *longer = xmalloc(n + 2);
        memcpy(longer, in, n);
        longer[n] = data[0] ? (char)data[0] : 'x';
        longer[n + 1] = '\0';
        FUZZ_ASSERT(rfc3339_parse(longer, NULL) != 0, "one character more is accepted: %s", longer);
        free(longer);
    }
    free(in);
    return 0;
}
