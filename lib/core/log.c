/* Structured logging to stderr: one line per event with time, level, worker and correlation id. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text.h"

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

#define REDACT_MAX 32
static char *redacted[REDACT_MAX];
static size_t n_redacted;

void log_redact(const char *secret) {
    if (!secret || strlen(secret) < 3)
        return;
    for (size_t i = 0; i < n_redacted; i++)
        if (strcmp(redacted[i], secret) == 0)
            return;
    if (n_redacted < REDACT_MAX)
        redacted[n_redacted++] = xstrdup(secret);
}

/* Replaces, in place, every registered secret in msg by "***" (never longer than the secret). */
static void redact(char *msg) {
    for (size_t i = 0; i < n_redacted; i++) {
        size_t len = strlen(redacted[i]);
        char *hit, *from = msg;
        while ((hit = strstr(from, redacted[i])) != NULL) {
            memcpy(hit, "***", 3);
            memmove(hit + 3, hit + len, strlen(hit + len) + 1);
            from = hit + 3;
        }
    }
}

void log_msg(log_level_t level, const char *corr, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    text_vprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    redact(msg);
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
    fprintf(stderr, "%s.%03ldZ level=%s worker=%s%s%s msg=\"%s\"\n", when, ts.tv_nsec / 1000000L,
            names[level], worker_name, corr ? " corr=" : "", corr ? corr : "", esc);
}
