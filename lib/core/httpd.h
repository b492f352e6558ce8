/* The worker's HTTP endpoint (libmicrohttpd, a thread of its own): GET /metrics (metrics_render, the
 * Prometheus text format), /healthz (liveness: 200 while a loop of the worker turned within stall_ms, else
 * 503) and /readyz (readiness: 200 when health_ready says so, else 503). Anything else is 404; methods other
 * than GET and HEAD are 405. */
#ifndef RAIKOO_HTTPD_H
#define RAIKOO_HTTPD_H

#include <stddef.h>

/* Starts serving on listen ("HOST:PORT", "[V6]:PORT" or ":PORT" for every address; port 0 picks a free one)
 * and turns metrics on (metrics_set_enabled). 0 when it listens (the port in *port when not NULL); -1 with
 * errstr (a malformed address, the port taken). Once per process; the server runs until httpd_stop. */
int httpd_start(const char *listen, long stall_ms, int *port, char *errstr, size_t errstr_size);

/* Stops the server (harmless when none runs). */
void httpd_stop(void);

#endif
