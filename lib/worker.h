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

/* 1 until SIGINT or SIGTERM arrives (a second one exits at once). */
int worker_running(void);

/* Sleeps ms milliseconds, or less when shutdown is asked; returns worker_running(). */
int worker_sleep_ms(long ms);

/* Monotonic clock in milliseconds. */
int64_t worker_now_ms(void);

#endif
