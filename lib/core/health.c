/* Liveness and readiness of the worker (see health.h). */
#include "health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "metrics.h"
#include "text.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_llong last_beat_ms;
static int required; /* HEALTH_* of health_require */
static int up;       /* HEALTH_POSTGRESQL, HEALTH_KAFKA while they answer; HEALTH_PARTITIONS while held */

void health_beat(void) {
    atomic_store(&last_beat_ms, clock_ms());
}

static metric_t *service_up_gauge(void) {
    return metric_gauge(
        "raikoo_service_up",
        "1 while the service (PostgreSQL, Kafka) answers this process, 0 while it waits for it",
        METRIC_LABELS("service"));
}

static metric_t *reconnects_counter(void) {
    return metric_counter("raikoo_reconnects_total",
                          "times this process got a service (PostgreSQL, Kafka) back after waiting for it",
                          METRIC_LABELS("service"));
}

void health_require(int needs) {
    pthread_mutex_lock(&lock);
    required = needs;
    pthread_mutex_unlock(&lock);
    /* Exported from the start, at 0 until the service answers or comes back. */
    static const char *const names[] = {"PostgreSQL", "Kafka"};
    static const int flags[] = {HEALTH_POSTGRESQL, HEALTH_KAFKA};
    for (int i = 0; i < 2; i++) {
        if (needs & flags[i]) {
            metric_touch(service_up_gauge(), METRIC_LABELS(names[i]));
            metric_touch(reconnects_counter(), METRIC_LABELS(names[i]));
        }
    }
    if (needs & HEALTH_PARTITIONS)
        health_assigned(0);
}

void health_reconnected(const char *name) {
    metric_add(reconnects_counter(), METRIC_LABELS(name), 1);
}

static void set_up(int flag, int on) {
    pthread_mutex_lock(&lock);
    up = on ? up | flag : up & ~flag;
    pthread_mutex_unlock(&lock);
}

void health_service(const char *name, int is_up) {
    set_up(strcmp(name, "PostgreSQL") == 0 ? HEALTH_POSTGRESQL
           : strcmp(name, "Kafka") == 0    ? HEALTH_KAFKA
                                           : 0,
           is_up);
    metric_set(service_up_gauge(), METRIC_LABELS(name), is_up ? 1 : 0);
}

void health_assigned(int partitions) {
    set_up(HEALTH_PARTITIONS, partitions > 0);
    metric_set(metric_gauge("raikoo_kafka_assigned_partitions",
                            "partitions this process's consumer group member holds", NULL),
               NULL, partitions);
}

int health_live(long stall_ms, char *why, size_t why_size) {
    long long last = atomic_load(&last_beat_ms), age = clock_ms() - last;
    if (last == 0 || age > stall_ms) {
        text_printf(why, why_size, "stalled: no loop of the worker turned for %lld ms (limit %ld ms)\n",
                    last == 0 ? -1LL : age, stall_ms);
        return 0;
    }
    text_printf(why, why_size, "ok: a loop turned %lld ms ago\n", age);
    return 1;
}

int health_ready(char *why, size_t why_size) {
    pthread_mutex_lock(&lock);
    int need = required, have = up;
    pthread_mutex_unlock(&lock);
    const char *missing = need == 0 ? "starting"
                          : (need & HEALTH_POSTGRESQL) && !(have & HEALTH_POSTGRESQL)
                              ? "waiting for PostgreSQL"
                          : (need & HEALTH_KAFKA) && !(have & HEALTH_KAFKA) ? "waiting for Kafka"
                          : (need & HEALTH_PARTITIONS) && !(have & HEALTH_PARTITIONS)
                              ? "waiting for the consumer group to assign partitions to this member"
                              : NULL;
    if (missing)
        text_printf(why, why_size, "not ready: %s\n", missing);
    else
        text_printf(why, why_size, "ready\n");
    return missing == NULL;
}
