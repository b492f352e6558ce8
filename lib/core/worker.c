/* What every long-running worker shares: its command line, configuration, logging and signals. */
#include "worker.h"

#include "exitstatus.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "health.h"
#include "httpd.h"
#include "clock.h"
#include "log.h"
#include "notify.h"
#include "text.h"

static volatile sig_atomic_t run = 1;
static int exit_status = 0;

static void on_signal(int sig) {
    if (!run)
        _exit(128 + sig); /* second signal: the operator insists */
    run = 0;
}

int worker_init(int *argc, char **argv, conf_t *c, const char *name, const char *description) {
    const char *config = NULL;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: raikoo-%s [--config FILE]\n%s\n\n", name, description);
            conf_print_reference(c, stdout);
            exit_status = 0;
            return -1;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc) {
            config = argv[++i];
        } else {
            fprintf(stderr, "raikoo-%s: unknown argument \"%s\" (try --help)\n", name, argv[i]);
            exit_status = EXIT_USAGE;
            return -1;
        }
    }
    char err[512];
    if (conf_load(c, config, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-%s: %s\n", name, err);
        exit_status = EXIT_USAGE;
        return -1;
    }
    log_init(name, conf_get(c, "log.level"));
    log_set_instance(conf_get(c, "worker.instance"));
    if (log_set_format(conf_get(c, "log.format")) != 0) {
        fprintf(stderr, "raikoo-%s: log.format \"%s\": use text or json\n", name, conf_get(c, "log.format"));
        exit_status = 2;
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    health_beat();
    const char *listen = conf_get(c, "metrics.listen");
    if (listen && *listen) {
        long stall_ms;
        int port = 0;
        if (conf_get_long(c, "metrics.stall.ms", 100, 86400000, &stall_ms, err, sizeof(err)) != 0 ||
            httpd_start(listen, stall_ms, &port, err, sizeof(err)) != 0) {
            log_error(NULL, "%s", err);
            exit_status = 2;
            return -1;
        }
        atexit(httpd_stop); /* its thread stops before the process's memory goes */
        log_info(NULL, "metrics on http://%s/metrics (port %d), liveness /healthz, readiness /readyz", listen,
                 port);
    }
    return 0;
}

int worker_exit_status(void) {
    return exit_status;
}

int worker_misconfigured(const char *why) {
    log_error(NULL, "%s", why);
    return EXIT_USAGE;
}

int worker_gave_up(const char *why) {
    log_error(NULL, "%s", why);
    return run ? EXIT_INFRA : EXIT_OK;
}

int worker_running(void) {
    /* Read once: a signal between a test and the return would end a loop without STOPPING=1. */
    int running = run;
    if (running) /* the main loops turn here: systemd's watchdog while running, STOPPING=1 once stop is asked */
        notify_watchdog();
    else
        notify_stopping();
    health_beat(); /* every loop of a worker asks this each turn: liveness */
    return running;
}

int64_t worker_now_ms(void) {
    return clock_ms();
}

int worker_sleep_ms(long ms) {
    int64_t end = worker_now_ms() + ms;
    while (worker_running()) {
        int64_t left = end - worker_now_ms();
        if (left <= 0)
            break;
        struct timespec ts = {0, (left > 50 ? 50 : left) * 1000000L};
        nanosleep(&ts, NULL);
        health_beat();
    }
    return worker_running();
}

void service_down(service_t *s, const char *why) {
    health_service(s->name, 0);
    if (s->down)
        return;
    s->down = 1;
    s->since_ms = worker_now_ms();
    s->backoff_ms = 0;
    const char *fields[] = {"service", s->name, NULL};
    log_fields(LOG_WARN, NULL, fields,
               "%s unavailable: %s; waiting for it (no further line until it is back)", s->name, why);
    char status[96];
    text_printf(status, sizeof(status), "waiting for %s", s->name);
    notify_status(status);
}

void service_up(service_t *s) {
    health_service(s->name, 1);
    if (!s->down)
        return;
    health_reconnected(s->name);
    s->down = 0;
    s->backoff_ms = 0;
    char away[32];
    text_printf(away, sizeof(away), "%.1f", (double)(worker_now_ms() - s->since_ms) / 1000.0);
    const char *fields[] = {"service", s->name, "away_s", away, NULL};
    log_fields(LOG_INFO, NULL, fields, "%s available again after %s s", s->name, away);
    notify_status("running");
}

int service_wait(service_t *s) {
    s->backoff_ms = s->backoff_ms <= 0 ? 200 : s->backoff_ms >= 2500 ? 5000 : s->backoff_ms * 2;
    return worker_sleep_ms(s->backoff_ms);
}
