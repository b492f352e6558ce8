/* Structured logging to stderr: one line per event, as text or JSON, secrets masked in both. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strbuf.h"
#include "text.h"

static char worker_name[64] = "raikoo";
static char instance_name[128] = "";
static log_level_t min_level = LOG_INFO;
static int json_format;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *worker, const char *level) {
    text_printf(worker_name, sizeof(worker_name), "%s", worker ? worker : "raikoo");
    if (!level || strcmp(level, "info") == 0)
        min_level = LOG_INFO;
    else if (strcmp(level, "debug") == 0)
        min_level = LOG_DEBUG;
    else if (strcmp(level, "warn") == 0)
        min_level = LOG_WARN;
    else if (strcmp(level, "error") == 0)
        min_level = LOG_ERROR;
}

int log_set_format(const char *format) {
    if (!format || !*format || strcmp(format, "text") == 0)
        json_format = 0;
    else if (strcmp(format, "json") == 0)
        json_format = 1;
    else
        return -1;
    return 0;
}

void log_set_instance(const char *instance) {
    text_printf(instance_name, sizeof(instance_name), "%s", instance ? instance : "");
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

/* A copy of s with every registered secret replaced by "***", as valid UTF-8 (an invalid byte becomes
 * U+FFFD, after the secrets are masked, so that a secret is found whatever surrounds it). Caller frees. */
static char *redacted_dup(const char *s) {
    char *copy = xstrdup(s ? s : "");
    for (size_t i = 0; i < n_redacted; i++) {
        size_t len = strlen(redacted[i]);
        char *hit, *from = copy;
        while ((hit = strstr(from, redacted[i])) != NULL) {
            memcpy(hit, "***", 3);
            memmove(hit + 3, hit + len, strlen(hit + len) + 1);
            from = hit + 3;
        }
    }
    char *clean = utf8_clean_dup(copy, strlen(copy), (size_t)-1 / 4);
    free(copy);
    return clean;
}

/* s (valid UTF-8) as a JSON string, quotes included. */
static void add_json_string(sb_t *b, const char *s) {
    sb_add_json_string(b, s, strlen(s));
}

/* s in the text format: quotes, backslashes and line breaks escaped (one event, one line). */
static void add_text_escaped(sb_t *b, const char *s) {
    for (const char *p = s; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            sb_addc(b, '\\');
            sb_addc(b, *p == '\n' ? 'n' : 'r');
        } else if (*p == '"' || *p == '\\') {
            sb_addc(b, '\\');
            sb_addc(b, *p);
        } else {
            sb_addc(b, *p);
        }
    }
}

static void add_json_member(sb_t *b, const char *name, const char *value) {
    sb_addc(b, ',');
    add_json_string(b, name);
    sb_addc(b, ':');
    char *v = redacted_dup(value);
    add_json_string(b, v);
    free(v);
}

char *log_line_dup(log_level_t level, const char *corr, const char *const *fields, const char *msg,
                   const char *when) {
    char now[40];
    if (!when) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char secs[32];
        strftime(secs, sizeof(secs), "%Y-%m-%dT%H:%M:%S", &tm);
        text_printf(now, sizeof(now), "%s.%03ldZ", secs, ts.tv_nsec / 1000000L);
        when = now;
    }
    if (level < LOG_DEBUG || level > LOG_ERROR)
        level = LOG_ERROR;
    sb_t b = {0};
    char *m = redacted_dup(msg);
    if (json_format) {
        sb_add(&b, "{\"time\":");
        add_json_string(&b, when);
        add_json_member(&b, "level", level_names[level]);
        add_json_member(&b, "worker", worker_name);
        if (instance_name[0])
            add_json_member(&b, "instance", instance_name);
        if (corr)
            add_json_member(&b, "corr", corr);
        sb_add(&b, ",\"msg\":");
        add_json_string(&b, m);
        int any = 0;
        for (size_t i = 0; fields && fields[i]; i += 2) {
            if (!fields[i + 1])
                continue;
            if (!any)
                sb_add(&b, ",\"fields\":{");
            char *name = redacted_dup(fields[i]);
            if (any)
                sb_addc(&b, ',');
            add_json_string(&b, name);
            free(name);
            sb_addc(&b, ':');
            char *v = redacted_dup(fields[i + 1]);
            add_json_string(&b, v);
            free(v);
            any = 1;
        }
        if (any)
            sb_addc(&b, '}');
        sb_add(&b, "}\n");
    } else {
        sb_printf(&b, "%s level=%s worker=%s", when, level_names[level], worker_name);
        if (corr) {
            char *v = redacted_dup(corr);
            sb_printf(&b, " corr=%s", v);
            free(v);
        }
        sb_add(&b, " msg=\"");
        add_text_escaped(&b, m);
        sb_addc(&b, '"');
        for (size_t i = 0; fields && fields[i]; i += 2) {
            if (!fields[i + 1])
                continue;
            char *name = redacted_dup(fields[i]), *v = redacted_dup(fields[i + 1]);
            int quote = !*v || strpbrk(v, " \"=\\\n\r\t") != NULL;
            sb_printf(&b, " %s=", name);
            if (quote)
                sb_addc(&b, '"');
            add_text_escaped(&b, v);
            if (quote)
                sb_addc(&b, '"');
            free(name);
            free(v);
        }
        sb_addc(&b, '\n');
    }
    free(m);
    return sb_take(&b);
}

static void log_v(log_level_t level, const char *corr, const char *const *fields, const char *fmt,
                  va_list ap) {
    if (level < min_level)
        return;
    char msg[2048];
    text_vprintf(msg, sizeof(msg), fmt, ap);
    char *line = log_line_dup(level, corr, fields, msg, NULL);
    /* One write per line, so that lines of several threads never mix. */
    flockfile(stderr);
    fputs(line, stderr);
    fflush(stderr);
    funlockfile(stderr);
    free(line);
}

void log_msg(log_level_t level, const char *corr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_v(level, corr, NULL, fmt, ap);
    va_end(ap);
}

void log_fields(log_level_t level, const char *corr, const char *const *fields, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_v(level, corr, fields, fmt, ap);
    va_end(ap);
}
