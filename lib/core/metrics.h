/* The process's metrics: a registry of counters, gauges and histograms (fixed buckets), safe to update from
 * any thread, rendered in the Prometheus text exposition format (version 0.0.4) by metrics_render.
 *
 * A family is registered once by name (later calls with that name return the same family: the first call's
 * help, labels and buckets stay) and lives as long as the process. Label values must come from a bounded set
 * (a command type, a result code, a topic, a partition number): never an e-mail address or an id. As a
 * safety net a family holds at most METRIC_MAX_SERIES label sets; further ones are counted in one series
 * whose every label is "overflow". Names follow Prometheus conventions: raikoo_ prefix, base units
 * (seconds, bytes), counters end in _total. */
#ifndef RAIKOO_METRICS_H
#define RAIKOO_METRICS_H

#include <stddef.h>

#define METRIC_MAX_LABELS 4
#define METRIC_MAX_SERIES 500

typedef struct metric metric_t;

/* Label names or values: a NULL-terminated list, written in place as METRIC_LABELS("type", "code"). */
#define METRIC_LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Finds or registers a family. labels: NULL (none) or a NULL-terminated list of at most METRIC_MAX_LABELS
 * names. Never NULL (aborts on out-of-memory or a malformed definition, which is a programming error). */
metric_t *metric_counter(const char *name, const char *help, const char *const *labels);
metric_t *metric_gauge(const char *name, const char *help, const char *const *labels);
/* bounds: the n upper bounds of the buckets, ascending (the +Inf bucket is implied). */
metric_t *metric_histogram(const char *name, const char *help, const char *const *labels,
                           const double *bounds, size_t n);

/* Updates the series with these label values (NULL when the family has no labels; a NULL value is ""):
 * metric_add for counters (v >= 0) and gauges, metric_set for gauges, metric_observe for histograms. A call
 * that does not fit the family's type is ignored. */
void metric_add(metric_t *m, const char *const *values, double v);
void metric_set(metric_t *m, const char *const *values, double v);
void metric_observe(metric_t *m, const char *const *values, double v);

/* Makes the series with these label values exist (at zero when new), so that it is exported before its first
 * update: a rate() over a counter that never moved is then 0, not absent. */
void metric_touch(metric_t *m, const char *const *values);

/* Forgets every series of the family (a gauge whose label sets come and go, such as the partitions a
 * consumer holds), then sets the n series given: values[i] are the label values of the i-th, v[i] its
 * value. Atomically for a reader of metrics_render. */
void metric_gauge_replace(metric_t *m, const char *const *const *values, const double *v, size_t n);

/* 1 when metrics are served (metrics_set_enabled was called with 1): callers may skip costly gathering. */
int metrics_enabled(void);
void metrics_set_enabled(int on);

/* Every family in the Prometheus text format, families in registration order. The caller frees it. */
char *metrics_render(void);

/* Standard bucket sets: durations in seconds (1 ms to 30 s) and sizes (1 to 10000). */
extern const double METRIC_SECONDS_BUCKETS[];
extern const size_t METRIC_SECONDS_BUCKETS_N;
extern const double METRIC_SIZE_BUCKETS[];
extern const size_t METRIC_SIZE_BUCKETS_N;

/* Monotonic clock in seconds, for durations. */
double metrics_now(void);

#endif
