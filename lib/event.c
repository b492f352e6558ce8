/* CloudEvents 1.0 in structured JSON mode: building the envelopes of commands, events, results, mail jobs. */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "secret.h"

void event_time_now(char *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char s[24] = "";
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.20s.%03dZ", s, (int)(ts.tv_nsec / 1000000L));
}

json_t *event_new(const char *type, const char *id, const char *source, const char *actorid,
                  const char *correlationid, json_t *data) {
    char fresh[37], when[32];
    if (!id) {
        uuid_generate(fresh);
        id = fresh;
    }
    event_time_now(when);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "specversion", "1.0", "id", id, "source", source,
                           "type", type, "time", when, "datacontenttype", "application/json");
    if (!ev)
        abort();
    if (actorid)
        json_object_set_new(ev, "actorid", json_string(actorid));
    if (correlationid)
        json_object_set_new(ev, "correlationid", json_string(correlationid));
    json_object_set_new(ev, "data", data ? data : json_object());
    return ev;
}

char *event_dump(const json_t *ev) {
    char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s)
        abort();
    return s;
}
