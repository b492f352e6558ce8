/* Unit tests of lib/msg/event.c: the JSON text of a tree is jansson's, byte for byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "event.h"
#include "unit.h"

/* A small deterministic generator (xorshift64*), so that a failure repeats. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* A random string of valid UTF-8: every byte JSON escapes (control characters, quote, backslash), NUL
 * inside, "/" and DEL (not escaped by jansson), two-, three- and four-byte sequences. */
static json_t *random_string(void) {
    static const char *const pieces[] = {"a",
                                         "Z",
                                         "0",
                                         " ",
                                         "\"",
                                         "\\",
                                         "/",
                                         "\x7f",
                                         "\x01",
                                         "\x1f",
                                         "\b",
                                         "\f",
                                         "\n",
                                         "\r",
                                         "\t",
                                         "\x0b",
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         "\xe2\x80\xa8",
                                         "abc@example.org",
                                         "{\"x\":1}"};
    char buf[512];
    size_t n = 0, parts = rnd() % 24;
    for (size_t i = 0; i < parts; i++) {
        if (rnd() % 16 == 0) {
            buf[n++] = '\0'; /* json_stringn keeps it */
            continue;
        }
        const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
        memcpy(buf + n, p, strlen(p));
        n += strlen(p);
    }
    return json_stringn(buf, n);
}

static json_t *random_tree(int depth) {
    int kind = (int)(rnd() % (depth > 4 ? 6 : 8));
    switch (kind) {
        case 0: return random_string();
        case 1: {
            static const json_int_t edges[] = {0, -1, 1, 9, 10, -10, INT64_MAX, INT64_MIN, 1000000007};
            return json_integer(rnd() % 2 ? edges[rnd() % 9] : (json_int_t)rnd());
        }
        case 2: return json_real((double)(int64_t)rnd() / 1e6);
        case 3: return json_true();
        case 4: return json_false();
        case 5: return json_null();
        case 6: {
            json_t *o = json_object();
            for (size_t i = rnd() % 6; i > 0; i--) {
                json_t *k = random_string();
                json_object_setn_new(o, json_string_value(k), json_string_length(k), random_tree(depth + 1));
                json_decref(k);
            }
            return o;
        }
        default: {
            json_t *a = json_array();
            for (size_t i = rnd() % 6; i > 0; i--)
                json_array_append_new(a, random_tree(depth + 1));
            return a;
        }
    }
}

static void dump_is_janssons_byte_for_byte(void) {
    int differ = 0;
    for (int i = 0; i < 5000; i++) {
        json_t *t = random_tree(0);
        char *ours = event_dump(t);
        char *theirs = json_dumps(t, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        if (!theirs || strcmp(ours, theirs) != 0) {
            if (differ++ < 3)
                fprintf(stderr, "tree %d:\n  ours:    %s\n  jansson: %s\n", i, ours,
                        theirs ? theirs : "(null)");
        }
        free(ours);
        free(theirs);
        json_decref(t);
    }
    CHECK(differ == 0);
}

static void dump_of_a_cloudevent_parses_back_to_the_same_tree(void) {
    json_t *data = json_pack("{s:s, s:i, s:b, s:n, s:[s, s]}", "email", "An\xc3\xa9 \"x\" <a@example.org>\n",
                             "count", 3, "ok", 1, "none", "a", "b\\c");
    json_t *ev = event_new("raikoo.test.v1", NULL, "/test", "actor", NULL, data);
    char *text = event_dump(ev);
    json_error_t e;
    json_t *back = json_loads(text, 0, &e);
    CHECK(back && json_equal(back, ev));
    CHECK(strstr(text, "\"specversion\":\"1.0\",\"id\":") == text + 1);
    json_decref(back);
    json_decref(ev);
    free(text);
}

const unit_test_t event_tests[] = {
    {"event: dump is jansson's byte for byte (5,000 random trees)", dump_is_janssons_byte_for_byte},
    {"event: dump of a cloudevent parses back to the same tree",
     dump_of_a_cloudevent_parses_back_to_the_same_tree},
    {NULL, NULL},
};
