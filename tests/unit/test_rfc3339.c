/* Unit tests of the one RFC 3339 parser: a date-time is taken only when it names a real instant. */
#include "rfc3339.h"
#include "unit.h"

static long long us_of(const char *s) {
    long long us = -424242;
    return rfc3339_parse_us(s, &us) == 0 ? us : -424242;
}

static void impossible_dates_are_refused(void) {
    static const char *const bad[] = {"2026-02-31T00:00:00Z",
                                      "2026-02-30T00:00:00Z",
                                      "2026-02-29T00:00:00Z",
                                      "2100-02-29T00:00:00Z",
                                      "1900-02-29T00:00:00Z",
                                      "2026-04-31T00:00:00Z",
                                      "2026-06-31T00:00:00Z",
                                      "2026-09-31T00:00:00Z",
                                      "2026-11-31T00:00:00Z",
                                      "2026-01-32T00:00:00Z",
                                      "2026-01-00T00:00:00Z",
                                      "2026-00-10T00:00:00Z",
                                      "2026-13-01T00:00:00Z",
                                      "2026-01-31T24:00:00Z",
                                      "2026-01-31T23:60:00Z",
                                      "2026-01-31T23:61:00Z",
                                      "2026-01-31T23:59:61Z",
                                      "2026-01-31T12:00:00+24:00",
                                      "2026-01-31T12:00:00-23:60",
                                      "2026-01-31T12:00:00+99:00",
                                      "2026-01-31T12:00:00.Z",
                                      "2026-01-31T12:00:00",
                                      "2026-01-31 12:00:00Z",
                                      "2026-1-31T12:00:00Z",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        time_t t = 0;
        if (rfc3339_parse(bad[i], &t) != -1) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            unit_failures++;
        }
        char c[RFC3339_CANONICAL_SIZE];
        CHECK(rfc3339_canonical(bad[i], c) == -1 && c[0] == '\0');
    }
    CHECK(rfc3339_parse(NULL, NULL) == -1);
}

static void real_dates_are_read_right(void) {
    time_t t = -1;
    CHECK(rfc3339_parse("1970-01-01T00:00:00Z", &t) == 0 && t == 0);
    CHECK(rfc3339_parse("2000-02-29T00:00:00Z", &t) == 0 && t == 951782400);  /* divisible by 400 */
    CHECK(rfc3339_parse("2024-02-29T23:59:59z", &t) == 0 && t == 1709251199); /* divisible by 4 */
    CHECK(rfc3339_parse("2026-12-31T23:59:59+00:00", &t) == 0 && t == 1798761599);
    CHECK(rfc3339_parse("2026-12-04t22:00:00+02:00", &t) == 0 && t == 1796414400); /* 20:00 UTC */
    CHECK(rfc3339_parse("2026-12-04T18:30:00-01:30", &t) == 0 && t == 1796414400);
    CHECK(rfc3339_parse("1900-02-28T00:00:00Z", &t) == 0 && t == -2203977600LL);
    CHECK(rfc3339_parse("0000-02-29T00:00:00Z", NULL) == 0); /* year 0 of the proleptic calendar is leap */
    CHECK(rfc3339_parse("9999-12-31T23:59:59.999999999-23:59", &t) == 0);
}

static void a_leap_second_only_at_the_end_of_a_utc_day(void) {
    time_t t = 0;
    /* Read as the first second of the next day, as POSIX time and PostgreSQL count it. */
    CHECK(rfc3339_parse("2016-12-31T23:59:60Z", &t) == 0 && t == 1483228800);
    CHECK(rfc3339_parse("2017-01-01T00:59:60+01:00", &t) == 0 && t == 1483228800);
    CHECK(rfc3339_parse("2016-12-31T18:59:60-05:00", &t) == 0 && t == 1483228800);
    CHECK(rfc3339_parse("2016-12-31T23:59:60+01:00", NULL) == -1); /* 22:59:60 UTC */
    CHECK(rfc3339_parse("2016-12-31T12:00:60Z", NULL) == -1);
    CHECK(rfc3339_parse("2016-12-31T23:58:60Z", NULL) == -1);
}

static void fractions_in_microseconds(void) {
    CHECK(us_of("1970-01-01T00:00:00.5Z") == 500000);
    CHECK(us_of("1970-01-01T00:00:01.000001Z") == 1000001);
    CHECK(us_of("1970-01-01T00:00:00.1234567Z") == 123456); /* cut, not rounded */
    CHECK(us_of("1969-12-31T23:59:59.5Z") == -500000);
    time_t t = 0;
    CHECK(rfc3339_parse("1969-12-31T23:59:59.5Z", &t) == 0 && t == -1); /* the fraction dropped */
    CHECK(rfc3339_parse("2026-01-31T12:00:00.999999999Z", &t) == 0 && t == 1769860800);
}

static void canonical_form_is_utc_with_microseconds(void) {
    char c[RFC3339_CANONICAL_SIZE];
    CHECK(rfc3339_canonical("2026-12-04T22:00:00.12+02:00", c) == 0);
    CHECK_STR(c, "2026-12-04T20:00:00.120000Z");
    CHECK(rfc3339_canonical("2016-12-31t23:59:60z", c) == 0);
    CHECK_STR(c, "2017-01-01T00:00:00.000000Z");
    CHECK(rfc3339_canonical("2026-01-31T00:30:00.1234567+01:00", c) == 0);
    CHECK_STR(c, "2026-01-30T23:30:00.123456Z");
    CHECK(rfc3339_canonical("0001-01-01T00:00:00Z", c) == 0);
    CHECK_STR(c, "0001-01-01T00:00:00.000000Z");
    /* Outside the years PostgreSQL writes as ISO dates: refused rather than misread there. */
    CHECK(rfc3339_canonical("0001-01-01T00:30:00+01:00", c) == -1 && c[0] == '\0');
    CHECK(rfc3339_canonical("0000-06-01T00:00:00Z", c) == -1);
    CHECK(rfc3339_canonical("9999-12-31T23:30:00-01:00", c) == -1);
    CHECK(rfc3339_canonical("9999-12-31T23:59:59.999999Z", c) == 0);
    CHECK_STR(c, "9999-12-31T23:59:59.999999Z");
}

const unit_test_t rfc3339_tests[] = {
    {"rfc3339: impossible dates are refused", impossible_dates_are_refused},
    {"rfc3339: real dates are read right", real_dates_are_read_right},
    {"rfc3339: a leap second only at the end of a UTC day", a_leap_second_only_at_the_end_of_a_utc_day},
    {"rfc3339: fractions in microseconds", fractions_in_microseconds},
    {"rfc3339: canonical form is UTC with microseconds", canonical_form_is_utc_with_microseconds},
    {NULL, NULL},
};
