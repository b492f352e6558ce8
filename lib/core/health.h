/* The worker's health as its HTTP endpoints report it: liveness (its loops turn) and readiness (the services
 * it uses answer, and a group consumer holds partitions). Safe to use from any thread. */
#ifndef RAIKOO_HEALTH_H
#define RAIKOO_HEALTH_H

#include <stddef.h>

/* What a worker needs to be ready, declared once at start (before it connects to anything). */
enum { HEALTH_POSTGRESQL = 1, HEALTH_KAFKA = 2, HEALTH_PARTITIONS = 4 };
void health_require(int needs);

/* The process got service name back after waiting for it: raikoo_reconnects_total{service}. */
void health_reconnected(const char *name);

/* A loop of the worker turned (worker_running() and worker_sleep_ms call it). */
void health_beat(void);

/* Service name ("PostgreSQL" or "Kafka", the names of db.c's and kafka.c's service_t) is reachable (up 1) or
 * not (0). Also the gauge raikoo_service_up. */
void health_service(const char *name, int up);

/* A group consumer's assignment changed: it now holds partitions partitions. Also the gauge
 * raikoo_kafka_assigned_partitions. */
void health_assigned(int partitions);

/* 1 when a loop turned within the last stall_ms milliseconds; else 0 with why. */
int health_live(long stall_ms, char *why, size_t why_size);

/* 1 when every service health_require named is up and, with HEALTH_PARTITIONS, the group consumer holds at
 * least one partition; else 0 with why (what is missing). 0 before health_require was called. */
int health_ready(char *why, size_t why_size);

#endif
