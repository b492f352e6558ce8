/* The process's metrics registry and its Prometheus text rendering (see metrics.h). One mutex guards the
 * whole registry: updates are a few per batch or per second, scrapes a few per minute. */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "strbuf.h"
#include "text.h"

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype_t;

typedef struct series {
    char *values[METRIC_MAX_LABELS];
    double value;     /* counter, gauge */
    double sum;       /* histogram */
    uint64_t *counts; /* histogram: per bucket (not cumulative), nbounds + 1 (the last is +Inf) */
    uint64_t count;
} series_t;

struct metric {
    char *name, *help;
    mtype_t type;
    char *labels[METRIC_MAX_LABELS];
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    series_t *s;
    size_t n, cap;
    struct metric *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static metric_t *first, *last;
static atomic_int enabled;

const double METRIC_SECONDS_BUCKETS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10,   30};
const size_t METRIC_SECONDS_BUCKETS_N = sizeof(METRIC_SECONDS_BUCKETS) / sizeof(METRIC_SECONDS_BUCKETS[0]);
const double METRIC_SIZE_BUCKETS[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
const size_t METRIC_SIZE_BUCKETS_N = sizeof(METRIC_SIZE_BUCKETS) / sizeof(METRIC_SIZE_BUCKETS[0]);

int metrics_enabled(void) {
    return atomic_load(&enabled);
}

void metrics_set_enabled(int on) {
    atomic_store(&enabled, on ? 1 : 0);
}

double metrics_now(void) {
    return clock_s();
}

static metric_t *family(const char *name, const char *help, mtype_t type, const char *const *labels,
                        const double *bounds, size_t nbounds) {
    pthread_mutex_lock(&lock);
    for (metric_t *m = first; m; m = m->next) {
        if (strcmp(m->name, name) == 0) {
            pthread_mutex_unlock(&lock);
            return m;
        }
    }
    metric_t *m = xcalloc(1, sizeof(*m));
    m->name = xstrdup(name);
    m->help = xstrdup(help ? help : "");
    m->type = type;
    for (size_t i = 0; labels && labels[i]; i++) {
        if (i >= METRIC_MAX_LABELS)
            abort(); /* a definition in the code is wrong */
        m->labels[m->nlabels++] = xstrdup(labels[i]);
    }
    if (type == M_HISTOGRAM) {
        m->bounds = xcalloc(nbounds ? nbounds : 1, sizeof(*m->bounds));
        memcpy(m->bounds, bounds, nbounds * sizeof(*bounds));
        m->nbounds = nbounds;
    }
    if (last)
        last->next = m;
    else
        first = m;
    last = m;
    pthread_mutex_unlock(&lock);
    return m;
}

metric_t *metric_counter(const char *name, const char *help, const char *const *labels) {
    return family(name, help, M_COUNTER, labels, NULL, 0);
}

metric_t *metric_gauge(const char *name, const char *help, const char *const *labels) {
    return family(name, help, M_GAUGE, labels, NULL, 0);
}

metric_t *metric_histogram(const char *name, const char *help, const char *const *labels,
                           const double *bounds, size_t n) {
    return family(name, help, M_HISTOGRAM, labels, bounds, n);
}

/* The series of these values, made when new (the overflow series once the family is full). Under lock. */
static series_t *series_of(metric_t *m, const char *const *values) {
    for (size_t i = 0; i < m->n; i++) {
        size_t k = 0;
        for (; k < m->nlabels; k++) {
            const char *v = values && values[k] ? values[k] : "";
            if (strcmp(m->s[i].values[k], v) != 0)
                break;
        }
        if (k == m->nlabels)
            return &m->s[i];
    }
    static const char *const overflow[METRIC_MAX_LABELS] = {"overflow", "overflow", "overflow", "overflow"};
    if (m->n >= METRIC_MAX_SERIES && values != overflow)
        return series_of(m, overflow);
    m->s = xgrow(m->s, m->n + 1, &m->cap, sizeof(*m->s), 8);
    series_t *s = &m->s[m->n++];
    memset(s, 0, sizeof(*s));
    for (size_t k = 0; k < m->nlabels; k++)
        s->values[k] = xstrdup(values && values[k] ? values[k] : "");
    if (m->type == M_HISTOGRAM)
        s->counts = xcalloc(m->nbounds + 1, sizeof(*s->counts));
    return s;
}

void metric_add(metric_t *m, const char *const *values, double v) {
    if (m->type == M_HISTOGRAM || (m->type == M_COUNTER && !(v >= 0)))
        return;
    pthread_mutex_lock(&lock);
    series_of(m, values)->value += v;
    pthread_mutex_unlock(&lock);
}

void metric_set(metric_t *m, const char *const *values, double v) {
    if (m->type != M_GAUGE)
        return;
    pthread_mutex_lock(&lock);
    series_of(m, values)->value = v;
    pthread_mutex_unlock(&lock);
}

void metric_observe(metric_t *m, const char *const *values, double v) {
    if (m->type != M_HISTOGRAM || isnan(v))
        return;
    pthread_mutex_lock(&lock);
    series_t *s = series_of(m, values);
    size_t b = 0;
    while (b < m->nbounds && v > m->bounds[b])
        b++;
    s->counts[b]++;
    s->count++;
    s->sum += v;
    pthread_mutex_unlock(&lock);
}

void metric_touch(metric_t *m, const char *const *values) {
    pthread_mutex_lock(&lock);
    series_of(m, values);
    pthread_mutex_unlock(&lock);
}

static void series_free(metric_t *m) {
    for (size_t i = 0; i < m->n; i++) {
        for (size_t k = 0; k < m->nlabels; k++)
            free(m->s[i].values[k]);
        free(m->s[i].counts);
    }
    m->n = 0;
}

void metric_gauge_replace(metric_t *m, const char *const *const *values, const double *v, size_t n) {
    if (m->type != M_GAUGE)
        return;
    pthread_mutex_lock(&lock);
    series_free(m);
    for (size_t i = 0; i < n; i++)
        series_of(m, values[i])->value = v[i];
    pthread_mutex_unlock(&lock);
}

/* A number as the format wants it: the shortest of %.15g and %.17g that reads back as v (0.1, not
 * 0.10000000000000001; integers without a fraction), +Inf/-Inf/NaN spelt out. */
static void format_number(char *out, size_t size, double v) {
    if (isnan(v))
        snprintf(out, size, "NaN");
    else if (isinf(v))
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
    else if (snprintf(out, size, "%.15g", v), strtod(out, NULL) != v)
        snprintf(out, size, "%.17g", v);
}

static void add_number(sb_t *b, double v) {
    char num[40];
    format_number(num, sizeof(num), v);
    sb_add(b, num);
}

/* HELP text escapes backslash and line feed; label values also the double quote. */
static void add_escaped(sb_t *b, const char *s, int quote) {
    for (; *s; s++) {
        if (*s == '\\')
            sb_add(b, "\\\\");
        else if (*s == '\n')
            sb_add(b, "\\n");
        else if (quote && *s == '"')
            sb_add(b, "\\\"");
        else
            sb_addc(b, *s);
    }
}

/* name{labels[,le="bound"]} value */
static void add_sample(sb_t *b, const metric_t *m, const char *suffix, const series_t *s, const char *le,
                       double v) {
    sb_add(b, m->name);
    sb_add(b, suffix);
    if (m->nlabels || le) {
        sb_addc(b, '{');
        for (size_t k = 0; k < m->nlabels; k++) {
            sb_printf(b, "%s%s=\"", k ? "," : "", m->labels[k]);
            add_escaped(b, s->values[k], 1);
            sb_addc(b, '"');
        }
        if (le)
            sb_printf(b, "%sle=\"%s\"", m->nlabels ? "," : "", le);
        sb_addc(b, '}');
    }
    sb_addc(b, ' ');
    add_number(b, v);
    sb_addc(b, '\n');
}

char *metrics_render(void) {
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    sb_t b = {0};
    pthread_mutex_lock(&lock);
    for (metric_t *m = first; m; m = m->next) {
        sb_printf(&b, "# HELP %s ", m->name);
        add_escaped(&b, m->help, 0);
        sb_printf(&b, "\n# TYPE %s %s\n", m->name, type_names[m->type]);
        /* A family without labels always has its one series, at zero before the first update. */
        if (m->nlabels == 0 && m->n == 0)
            series_of(m, NULL);
        for (size_t i = 0; i < m->n; i++) {
            const series_t *s = &m->s[i];
            if (m->type != M_HISTOGRAM) {
                add_sample(&b, m, "", s, NULL, s->value);
                continue;
            }
            uint64_t cum = 0;
            for (size_t k = 0; k <= m->nbounds; k++) {
                char le[40];
                cum += s->counts[k];
                format_number(le, sizeof(le), k < m->nbounds ? m->bounds[k] : INFINITY);
                add_sample(&b, m, "_bucket", s, le, (double)cum);
            }
            add_sample(&b, m, "_sum", s, NULL, s->sum);
            add_sample(&b, m, "_count", s, NULL, (double)s->count);
        }
    }
    pthread_mutex_unlock(&lock);
    return sb_take(&b);
}
