/* CloudEvents 1.0 in structured JSON mode: building the envelopes of commands, events, results, mail jobs. */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rfc3339.h"
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

int event_time_valid(const char *s) {
    return rfc3339_parse(s, NULL) == 0;
}

json_t *event_new(const char *type, const char *id, const char *source, const char *actorid,
                  const char *correlationid, json_t *data) {
    char fresh[UUID_BUF], when[32];
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
