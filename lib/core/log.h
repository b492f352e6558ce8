/* Structured logging to stderr: one line per event with time, level, worker and correlation id, as text
 * (the default) or as one JSON object per line (log.format=json). */
#ifndef RAIKOO_LOG_H
#define RAIKOO_LOG_H

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Names the program in every line and sets the least level printed ("debug", "info", "warn", "error";
 * anything else means info). The strings are copied. */
void log_init(const char *worker, const char *level);

/* "text" (NULL and "" too) or "json"; -1 (nothing changed) for anything else. */
int log_set_format(const char *format);

/* The worker's instance (worker.instance), in every JSON line when not NULL or empty; copied. */
void log_set_instance(const char *instance);

/* Logs one line. Text: `2026-11-27T20:00:00.123Z level=info worker=W corr=C msg="..."`; JSON:
 * `{"time":"2026-11-27T20:00:00.123Z","level":"info","worker":"W","corr":"C","msg":"..."}`. corr may be NULL.
 * Never pass a code, a password or a hash here. */
void log_msg(log_level_t level, const char *corr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* log_msg with fields: name, value, name, value, ..., NULL (values may be NULL: left out). Text appends
 * ` name=value` (value quoted when it holds a space, a quote or '='); JSON puts them in a "fields" object. */
void log_fields(log_level_t level, const char *corr, const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The line log_fields would write for msg (already formatted), with its newline; the caller frees it.
 * when is the time to show (RFC 3339 UTC with milliseconds), NULL for now. Exposed for the unit tests. */
char *log_line_dup(log_level_t level, const char *corr, const char *const *fields, const char *msg,
                   const char *when);

/* Registers a secret (copied) that every later log line shows as "***" wherever it occurs (message, fields,
 * correlation id; text and JSON alike): conf_load registers the configured passwords (db.url's,
 * smtp.password, Kafka secrets), so that an error text that quotes one (a libpq error, say) cannot leak it.
 * Strings under 3 bytes are ignored; at most 32 are kept. */
void log_redact(const char *secret);

#define log_debug(corr, ...) log_msg(LOG_DEBUG, corr, __VA_ARGS__)
#define log_info(corr, ...) log_msg(LOG_INFO, corr, __VA_ARGS__)
#define log_warn(corr, ...) log_msg(LOG_WARN, corr, __VA_ARGS__)
#define log_error(corr, ...) log_msg(LOG_ERROR, corr, __VA_ARGS__)

#endif
