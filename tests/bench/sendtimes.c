/* raikoo-bench: when each command was published, by command id (open addressing, no deletion). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench.h"
#include "secret.h" /* UUID_BUF */

typedef struct slot {
    char id[UUID_BUF];
    double t, wall;
} slot_t;

struct sendtimes {
    slot_t *slots;
    size_t cap;
};

static size_t hash(const char *id, size_t cap) {
    size_t h = 1469598103934665603ULL;
    for (; *id; id++)
        h = (h ^ (unsigned char)(*id | 0x20)) * 1099511628211ULL;
    return h & (cap - 1);
}

sendtimes_t *sendtimes_new(size_t n) {
    sendtimes_t *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    s->slots = calloc(cap, sizeof(*s->slots));
    if (!s->slots)
        abort();
    s->cap = cap;
    return s;
}

void sendtimes_put(sendtimes_t *s, const char *id, double t, double wall) {
    size_t i = hash(id, s->cap);
    while (s->slots[i].id[0] && strcasecmp(s->slots[i].id, id) != 0)
        i = (i + 1) & (s->cap - 1);
    memcpy(s->slots[i].id, id, 36);
    s->slots[i].id[36] = '\0';
    s->slots[i].t = t;
    s->slots[i].wall = wall;
}

double sendtimes_get(const sendtimes_t *s, const char *id, double *wall) {
    if (wall)
        *wall = 0;
    if (!id)
        return 0;
    size_t i = hash(id, s->cap);
    while (s->slots[i].id[0]) {
        if (strcasecmp(s->slots[i].id, id) == 0) {
            if (wall)
                *wall = s->slots[i].wall;
            return s->slots[i].t;
        }
        i = (i + 1) & (s->cap - 1);
    }
    return 0;
}

void sendtimes_free(sendtimes_t *s) {
    if (!s)
        return;
    free(s->slots);
    free(s);
}
