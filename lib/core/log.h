/* Structured logging to stderr: one line per event with time, level, worker and correlation id. */
#ifndef RAIKOO_LOG_H
#define RAIKOO_LOG_H

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Names the program in every line and sets the least level printed ("debug", "info", "warn", "error";
 * anything else means info). The strings are copied. */
void log_init(const char *worker, const char *level);

/* Logs one line: `2026-11-27T20:00:00.123Z level=info worker=W corr=C msg="..."`. corr may be NULL.
 * Never pass a code, a password or a hash here. */
void log_msg(log_level_t level, const char *corr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Registers a secret (copied) that every later log line shows as "***" wherever it occurs: conf_load
 * registers the configured passwords (db.url's, smtp.password, Kafka secrets), so that an error text that
 * quotes one (a libpq error, say) cannot leak it. Strings under 3 bytes are ignored; at most 32 are kept. */
void log_redact(const char *secret);

#define log_debug(corr, ...) log_msg(LOG_DEBUG, corr, __VA_ARGS__)
#define log_info(corr, ...) log_msg(LOG_INFO, corr, __VA_ARGS__)
#define log_warn(corr, ...) log_msg(LOG_WARN, corr, __VA_ARGS__)
#define log_error(corr, ...) log_msg(LOG_ERROR, corr, __VA_ARGS__)

#endif
