/* Structured logging to stderr: one line per event with time, level, worker and correlation id. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char worker_name[64] = "raikoo";
static log_level_t min_level = LOG_INFO;

void log_init(const char *worker, const char *level) {
    snprintf(worker_name, sizeof(worker_name), "%s", worker ? worker : "raikoo");
    if (!level || strcmp(level, "info") == 0)
        min_level = LOG_INFO;
    else if (strcmp(level, "debug") == 0)
        min_level = LOG_DEBUG;
    else if (strcmp(level, "warn") == 0)
        min_level = LOG_WARN;
    else if (strcmp(level, "error") == 0)
        min_level = LOG_ERROR;
}

void log_msg(log_level_t level, const char *corr, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One event, one line: quotes and line breaks in the message are escaped. */
    char esc[4200];
    size_t j = 0;
    for (const char *p = msg; *p && j + 3 < sizeof(esc); p++) {
        if (*p == '\n' || *p == '\r') {
            esc[j++] = '\\';
            esc[j++] = *p == '\n' ? 'n' : 'r';
        } else if (*p == '"' || *p == '\\') {
            esc[j++] = '\\';
            esc[j++] = *p;
        } else {
            esc[j++] = *p;
        }
    }
    esc[j] = '\0';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ level=%s worker=%s%s%s msg=\"%s\"\n", when, ts.tv_nsec / 1000000L, names[level],
            worker_name, corr ? " corr=" : "", corr ? corr : "", esc);
}
