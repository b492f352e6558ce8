/* RFC 3339 date-times, the one parser of the code base. */
#include "rfc3339.h"

#include <stdio.h>
#include <string.h>

/* The value of n ASCII digits at s, or -1 when they are not all digits. */
static int digits(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int leap_year(long y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(long y, int m) {
    static const int n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap_year(y) ? 29 : n[m - 1];
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (negative before). */
static long long days_from_civil(long long y, int m, int d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(long long z, long long *y, int *m, int *d) {
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int rfc3339_parse_us(const char *s, long long *out) {
    /* date-time = full-date "T" partial-time time-offset (RFC 3339, section 5.6); "T" and "Z" in either
     * case. The grammar of the "time" pattern of schemas/cloudevent.schema.json, and a real instant. */
    if (!s || strlen(s) < 20)
        return -1;
    int year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2), hour = digits(s + 11, 2),
        min = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (year < 0 || s[4] != '-' || mon < 1 || mon > 12 || s[7] != '-' || day < 1 ||
        day > days_in_month(year, mon) || (s[10] != 'T' && s[10] != 't') || hour < 0 || hour > 23 ||
        s[13] != ':' || min < 0 || min > 59 || s[16] != ':' || sec < 0 || sec > 60)
        return -1;
    const char *p = s + 19;
    long long us = 0;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        for (int n = 0; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 6)
                us = us * 10 + (*p - '0');
        for (int n = (int)(p - s) - 20; n < 6; n++) /* fewer than six digits: scale up */
            us *= 10;
    }
    long offset = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        offset = 0;
    } else {
        if ((*p != '+' && *p != '-') || strlen(p) != 6)
            return -1;
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        if (oh < 0 || oh > 23 || p[3] != ':' || om < 0 || om > 59)
            return -1;
        offset = (oh * 60L + om) * 60L * (*p == '-' ? -1 : 1);
    }
    long long t = days_from_civil(year, mon, day) * 86400LL + hour * 3600LL + min * 60LL - offset;
    if (sec == 60) {
        /* A leap second is the 61st second of 23:59 UTC, nowhere else (RFC 3339, section 5.7). */
        long long s59 = t + 59;
        if (((s59 % 86400) + 86400) % 86400 != 86399)
            return -1;
    }
    t += sec;
    if (out)
        *out = t * 1000000LL + us;
    return 0;
}

int rfc3339_parse(const char *s, time_t *out) {
    long long us;
    if (rfc3339_parse_us(s, &us) != 0)
        return -1;
    if (out) {
        long long secs = us / 1000000LL - (us % 1000000LL < 0); /* floor: the fraction dropped */
        *out = (time_t)secs;
    }
    return 0;
}

int rfc3339_canonical(const char *s, char out[RFC3339_CANONICAL_SIZE]) {
    long long us;
    out[0] = '\0';
    if (rfc3339_parse_us(s, &us) != 0)
        return -1;
    long long secs = us / 1000000LL - (us % 1000000LL < 0);
    long long frac = us - secs * 1000000LL;
    long long days = secs / 86400 - (secs % 86400 < 0);
    long long rem = secs - days * 86400;
    long long y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999)
        return -1;
    char buf[64]; /* room for any int: the compiler cannot see the ranges below */
    int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", (int)y, m, d, (int)(rem / 3600),
                     (int)(rem / 60 % 60), (int)(rem % 60), (int)frac);
    if (n != RFC3339_CANONICAL_SIZE - 1)
        return -1;
    memcpy(out, buf, RFC3339_CANONICAL_SIZE);
    return 0;
}
