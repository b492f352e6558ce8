/* raikoo_producer_new_conf: the producer library configured from a conf_t (the CLI, the bench, the tests). */
#include "producer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* The settings being gathered: pairs whose strings are owned here. */
typedef struct settings {
    raikoo_setting_t *v;
    size_t n, cap;
} settings_t;

static void settings_add(settings_t *s, const char *key, const char *value) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        if (!s->v)
            abort();
    }
    s->v[s->n].key = xstrdup(key);
    s->v[s->n].value = xstrdup(value);
    s->n++;
}

static int add_kafka(void *arg, const char *prop, const char *value) {
    char key[512];
    text_printf(key, sizeof(key), "kafka.%s", prop);
    settings_add(arg, key, value);
    return 0;
}

raikoo_producer_t *raikoo_producer_new_conf(const conf_t *c, char *errstr, size_t errstr_size) {
    static const char *const keys[] = {"topic.commands", "topic.results", "command.max.bytes"};
    settings_t s = {0};
    conf_each_kafka(c, add_kafka, &s);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (conf_get(c, keys[i]))
            settings_add(&s, keys[i], conf_get(c, keys[i]));
    raikoo_producer_t *p = raikoo_producer_new(s.v, s.n, errstr, errstr_size);
    for (size_t i = 0; i < s.n; i++) {
        free((char *)s.v[i].key);
        free((char *)s.v[i].value);
    }
    free(s.v);
    return p;
}
