/* CloudEvents 1.0 in structured JSON mode: building the envelopes of commands, events, results, mail jobs. */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rfc3339.h"
#include "secret.h"
#include "strbuf.h"
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

/* ---- The JSON text of a tree ----
 * Byte for byte what json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) gives (the unit
 * test compares the two on random trees), without what made jansson's dump a quarter of the command
 * worker's CPU (profiled): a cycle check that formats every object's and array's address with snprintf
 * and hashes it, and a string walk of one function call per code point. Strings go through
 * sb_add_json_string (lib/core/strbuf.c), which copies the runs between the bytes JSON escapes. */

static void dump_integer(sb_t *b, json_int_t v) {
    char d[24];
    size_t k = sizeof(d);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        d[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        d[--k] = '-';
    sb_addn(b, d + k, sizeof(d) - k);
}

static void dump_value(sb_t *b, const json_t *v) {
    switch (json_typeof(v)) {
        case JSON_OBJECT: {
            sb_addc(b, '{');
            int first = 1;
            for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
                if (!first)
                    sb_addc(b, ',');
                first = 0;
                sb_add_json_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
                sb_addc(b, ':');
                dump_value(b, json_object_iter_value(it));
            }
            sb_addc(b, '}');
            break;
        }
        case JSON_ARRAY:
            sb_addc(b, '[');
            for (size_t i = 0; i < json_array_size(v); i++) {
                if (i)
                    sb_addc(b, ',');
                dump_value(b, json_array_get(v, i));
            }
            sb_addc(b, ']');
            break;
        case JSON_STRING: sb_add_json_string(b, json_string_value(v), json_string_length(v)); break;
        case JSON_INTEGER: dump_integer(b, json_integer_value(v)); break;
        case JSON_TRUE: sb_add(b, "true"); break;
        case JSON_FALSE: sb_add(b, "false"); break;
        case JSON_NULL: sb_add(b, "null"); break;
        case JSON_REAL: { /* none in our messages: jansson's own format ("%.17g", trimmed) */
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!t)
                abort();
            sb_add(b, t);
            free(t);
            break;
        }
    }
}

char *event_dump(const json_t *ev) {
    sb_t b = {0};
    sb_grow(&b, 1024);
    dump_value(&b, ev);
    return sb_take(&b);
}
