/* Unit tests of the metrics registry's exposition text: escaping, histograms, the bound on label sets.
 * With RAIKOO_UNIT_METRICS_OUT set, the escaping test also writes the whole exposition to that file, for
 * tests/test_metrics.py to read with an independent parser (prometheus_client). */
#include <stdlib.h>

#include "metrics.h"
#include "unit.h"

static void escaping_of_label_values_and_help(void) {
    metric_t *m = metric_counter("raikoo_unit_escape_total", "help with \\ backslash\nand a second line",
                                 METRIC_LABELS("value"));
    metric_add(m, METRIC_LABELS("quote \" backslash \\ newline \n end"), 2);
    metric_add(m, METRIC_LABELS("plain"), 1);
    metric_add(m, METRIC_LABELS("\xc3\xa9t\xc3\xa9"), 1); /* UTF-8 passes as it is */
    metric_add(m, METRIC_LABELS(""), 0.5);
    char *text = metrics_render();
    CHECK(strstr(text, "# HELP raikoo_unit_escape_total help with \\\\ backslash\\nand a second line\n"));
    CHECK(strstr(text, "# TYPE raikoo_unit_escape_total counter\n"));
    CHECK(strstr(text, "raikoo_unit_escape_total{value=\"quote \\\" backslash \\\\ newline \\n end\"} 2\n"));
    CHECK(strstr(text, "raikoo_unit_escape_total{value=\"plain\"} 1\n"));
    CHECK(strstr(text, "raikoo_unit_escape_total{value=\"\xc3\xa9t\xc3\xa9\"} 1\n"));
    CHECK(strstr(text, "raikoo_unit_escape_total{value=\"\"} 0.5\n"));
    const char *out = getenv("RAIKOO_UNIT_METRICS_OUT");
    if (out) {
        FILE *f = fopen(out, "w");
        CHECK(f != NULL);
        if (f) {
            fputs(text, f);
            fclose(f);
        }
    }
    free(text);
}

static void histogram_buckets_are_cumulative(void) {
    static const double bounds[] = {0.1, 1, 2.5};
    metric_t *h = metric_histogram("raikoo_unit_seconds", "a histogram", METRIC_LABELS("kind"), bounds, 3);
    metric_observe(h, METRIC_LABELS("a"), 0.05);
    metric_observe(h, METRIC_LABELS("a"), 0.1); /* on a bound: in that bucket (le) */
    metric_observe(h, METRIC_LABELS("a"), 2);
    metric_observe(h, METRIC_LABELS("a"), 100);
    char *text = metrics_render();
    CHECK(strstr(text, "# TYPE raikoo_unit_seconds histogram\n"));
    CHECK(strstr(text, "raikoo_unit_seconds_bucket{kind=\"a\",le=\"0.1\"} 2\n"));
    CHECK(strstr(text, "raikoo_unit_seconds_bucket{kind=\"a\",le=\"1\"} 2\n"));
    CHECK(strstr(text, "raikoo_unit_seconds_bucket{kind=\"a\",le=\"2.5\"} 3\n"));
    CHECK(strstr(text, "raikoo_unit_seconds_bucket{kind=\"a\",le=\"+Inf\"} 4\n"));
    CHECK(strstr(text, "raikoo_unit_seconds_sum{kind=\"a\"} 102.15000000000001\n") ||
          strstr(text, "raikoo_unit_seconds_sum{kind=\"a\"} 102.15\n"));
    CHECK(strstr(text, "raikoo_unit_seconds_count{kind=\"a\"} 4\n"));
    free(text);
}

static void label_sets_are_bounded(void) {
    metric_t *m = metric_counter("raikoo_unit_bounded_total", "bounded", METRIC_LABELS("n"));
    char v[32];
    for (int i = 0; i < METRIC_MAX_SERIES + 50; i++) {
        snprintf(v, sizeof(v), "%d", i);
        metric_add(m, METRIC_LABELS(v), 1);
    }
    char *text = metrics_render();
    CHECK(strstr(text, "raikoo_unit_bounded_total{n=\"overflow\"} 50\n"));
    free(text);
}

static void a_family_is_registered_once(void) {
    metric_t *a = metric_gauge("raikoo_unit_once", "first", NULL);
    metric_t *b = metric_gauge("raikoo_unit_once", "second", NULL);
    CHECK(a == b);
    metric_set(a, NULL, 3);
    metric_add(b, NULL, -1);
    const char *const *rows[] = {METRIC_LABELS("x")};
    double v[] = {7};
    metric_t *g = metric_gauge("raikoo_unit_replaced", "replaced", METRIC_LABELS("k"));
    metric_set(g, METRIC_LABELS("old"), 1);
    metric_gauge_replace(g, rows, v, 1);
    char *text = metrics_render();
    CHECK(strstr(text, "# HELP raikoo_unit_once first\n"));
    CHECK(strstr(text, "raikoo_unit_once 2\n"));
    CHECK(strstr(text, "raikoo_unit_replaced{k=\"x\"} 7\n"));
    CHECK(!strstr(text, "raikoo_unit_replaced{k=\"old\"}"));
    free(text);
}

const unit_test_t metrics_tests[] = {
    {"metrics: escaping of label values and help", escaping_of_label_values_and_help},
    {"metrics: histogram buckets are cumulative", histogram_buckets_are_cumulative},
    {"metrics: label sets are bounded", label_sets_are_bounded},
    {"metrics: a family is registered once", a_family_is_registered_once},
    {NULL, NULL},
};
