/* CloudEvents 1.0 in structured JSON mode: building the envelopes of commands, events, results, mail jobs. */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secret.h"
#include "text.h"

void event_time_now(char *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char s[24] = "";
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.20s.%03dZ", s, (int)(ts.tv_nsec / 1000000L));
}

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

int event_time_valid(const char *s) {
    /* date-time = full-date "T" partial-time time-offset (RFC 3339, section 5.6); "T" and "Z" in either
     * case. The same grammar as the "time" pattern of schemas/cloudevent.schema.json. */
    if (!s || strlen(s) < 20)
        return 0;
    int mon = digits(s + 5, 2), day = digits(s + 8, 2), hour = digits(s + 11, 2), min = digits(s + 14, 2),
        sec = digits(s + 17, 2);
    if (digits(s, 4) < 0 || s[4] != '-' || mon < 1 || mon > 12 || s[7] != '-' || day < 1 || day > 31 ||
        (s[10] != 'T' && s[10] != 't') || hour < 0 || hour > 23 || s[13] != ':' || min < 0 || min > 59 ||
        s[16] != ':' || sec < 0 || sec > 60)
        return 0;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return 1;
    if (*p != '+' && *p != '-')
        return 0;
    if (strlen(p) != 6)
        return 0;
    int oh = digits(p + 1, 2), om = digits(p + 4, 2);
    return oh >= 0 && oh <= 23 && p[3] == ':' && om >= 0 && om <= 59;
}

json_t *event_new(const char *type, const char *id, const char *source, const char *actorid,
                  const char *correlationid, json_t *data) {
    char fresh[37], when[32];
    if (!id) {
        uuid_generate(fresh);
        id = fresh;
    }
    event_time_now(when);
    /* Every string is made valid UTF-8 first, so that what a message held can never make this fail (the
     * callers pass validated UUIDs and our own names: cleaning changes nothing then). */
    char *cid = utf8_clean_dup(id, strlen(id), 64), *csrc = utf8_clean_dup(source, strlen(source), 256),
         *ctype = utf8_clean_dup(type, strlen(type), 256);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "specversion", "1.0", "id", cid, "source", csrc,
                           "type", ctype, "time", when, "datacontenttype", "application/json");
    free(cid);
    free(csrc);
    free(ctype);
    if (!ev)
        abort(); /* out of memory */
    if (actorid)
        json_object_set_new(ev, "actorid", json_string(actorid)); /* NULL (not set) if not UTF-8 */
    if (correlationid)
        json_object_set_new(ev, "correlationid", json_string(correlationid));
    json_object_set_new(ev, "data", data ? data : json_object());
    return ev;
}

char *event_dump(const json_t *ev) {
    char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s)
        abort(); /* out of memory: a tree of valid strings always dumps */
    return s;
}
