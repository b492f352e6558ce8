/* RFC 3339 date-times, the one parser of the code base. */
#include "rfc3339.h"

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

int rfc3339_parse(const char *s, time_t *out) {
    /* date-time = full-date "T" partial-time time-offset (RFC 3339, section 5.6); "T" and "Z" in either
     * case. The same grammar as the "time" pattern of schemas/cloudevent.schema.json. */
    if (!s || strlen(s) < 20)
        return -1;
    int year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2), hour = digits(s + 11, 2),
        min = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (year < 0 || s[4] != '-' || mon < 1 || mon > 12 || s[7] != '-' || day < 1 || day > 31 ||
        (s[10] != 'T' && s[10] != 't') || hour < 0 || hour > 23 || s[13] != ':' || min < 0 || min > 59 ||
        s[16] != ':' || sec < 0 || sec > 60)
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
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
    if (out) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = year - 1900;
        tm.tm_mon = mon - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour;
        tm.tm_min = min;
        tm.tm_sec = sec;
        *out = timegm(&tm) - offset;
    }
    return 0;
}
