/* What every long-running worker shares: its command line, configuration, logging and signals. */
#ifndef RAIKOO_WORKER_H
#define RAIKOO_WORKER_H

#include <stdint.h>

#include "conf.h"

/* Parses the worker's command line (--config FILE, --help), loads the configuration into c, starts
 * logging as name and installs SIGINT/SIGTERM handlers. -1 when the program should exit (help printed:
 * exit status 0 is then decided by worker_exit_status; errors printed: 2). */
int worker_init(int *argc, char **argv, conf_t *c, const char *name, const char *description);

/* The exit status worker_init asks for after it returned -1. */
int worker_exit_status(void);

/* Logs a configuration mistake found at start-up (why names the key or file); returns EXIT_USAGE. */
int worker_misconfigured(const char *why);

/* Logs why start-up could not go on (a service, the database's migrations, ...); returns the exit status:
 * EXIT_OK when shutdown was asked meanwhile (a wait for a service ended by SIGTERM), else EXIT_INFRA. */
int worker_gave_up(const char *why);

/* 1 until SIGINT or SIGTERM arrives (a second one exits at once). */
int worker_running(void);

/* Sleeps ms milliseconds, or less when shutdown is asked; returns worker_running(). */
int worker_sleep_ms(long ms);

/* Monotonic clock in milliseconds. */
int64_t worker_now_ms(void);

/* A service a worker depends on (PostgreSQL, Kafka): whether it is reachable, logged once per change of
 * state, never once per attempt, and the bounded backoff between attempts while it is not. Zero-initialise
 * with the service's name: `service_t pg = {.name = "PostgreSQL"}`. */
typedef struct service {
    const char *name;
    int down;         /* 1 after service_down, until service_up */
    int64_t since_ms; /* when it went down */
    long backoff_ms;  /* the next wait of service_wait */
} service_t;

/* The service failed (why: what happened, without secrets). Logs one warning when it was up; later calls
 * log nothing until service_up. */
void service_down(service_t *s, const char *why);

/* The service answers. Logs one line, with how long it was away, when it was down. */
void service_up(service_t *s);

/* Waits before the next attempt: 200 ms, doubling up to 5 s; returns worker_running() (0: stop asked). */
int service_wait(service_t *s);

#endif
