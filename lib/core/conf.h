/* Configuration: built-in defaults (the local stack), then a key=value file, then RAIKOO_* variables. */
#ifndef RAIKOO_CONF_H
#define RAIKOO_CONF_H

#include <stddef.h>

typedef struct conf conf_t;

/* A setting the programs know: its key, default and what it means (one sentence or two; the
 * configuration reference, docs/CONFIGURATION.md, is generated from this table). */
typedef struct conf_key {
    const char *key;
    const char *def;
    const char *help;
} conf_key_t;

/* The table of known keys, ending with a NULL key (for --help, `raikoo config` and the reference). */
extern const conf_key_t conf_keys[];

/* A variable the scripts under ops/ read (not the programs): name, default and meaning; NULL name ends. */
typedef struct conf_script_var {
    const char *name;
    const char *def;
    const char *help;
} conf_script_var_t;
extern const conf_script_var_t conf_script_vars[];

/* Returns a new configuration holding the defaults; never NULL. */
conf_t *conf_new(void);
void conf_free(conf_t *c);

/* Sets one key. Known keys and any "kafka.<property>" are accepted; anything else fails into errstr. */
int conf_set(conf_t *c, const char *key, const char *value, char *errstr, size_t errstr_size);

/* Reads "key=value" lines (# comments, blank lines) from path; errors read "file:line: what". A path that
 * is a directory, or that cannot be opened or read, is an error saying so (never an empty file). */
int conf_load_file(conf_t *c, const char *path, char *errstr, size_t errstr_size);

/* Applies RAIKOO_<KEY> variables (dots as underscores, upper case): RAIKOO_DB_URL sets db.url,
 * RAIKOO_KAFKA_SECURITY_PROTOCOL sets kafka.security.protocol. Unrelated RAIKOO_* variables are ignored
 * (every RAIKOO_KAFKA_* variable is a librdkafka property, see conf_check_kafka). */
int conf_load_env(conf_t *c, char *errstr, size_t errstr_size);

/* Asks librdkafka whether it takes every "kafka.<property>" setting; the error names where the setting
 * came from (the variable, or file:line) and what to do. */
int conf_check_kafka(const conf_t *c, char *errstr, size_t errstr_size);

/* The usual start of every program: defaults, then --config FILE (or RAIKOO_CONFIG), then the environment,
 * then conf_check_kafka; registers the configured secrets with log_redact. config_path may be NULL (then
 * RAIKOO_CONFIG, when set and not empty, names the file); an empty config_path is an error. */
int conf_load(conf_t *c, const char *config_path, char *errstr, size_t errstr_size);

/* The value of key (borrowed, valid until the key is set again), or NULL when unset. */
const char *conf_get(const conf_t *c, const char *key);

/* Where the value of key came from: "default", "FILE:LINE", the variable's name, or "set" (borrowed;
 * NULL when unset). */
const char *conf_origin(const conf_t *c, const char *key);

/* The value of key as an integer; fails into errstr when it is not one within [min, max]. */
int conf_get_long(const conf_t *c, const char *key, long min, long max, long *out, char *errstr,
                  size_t errstr_size);

/* The value of key as a duration in seconds: whole seconds ("86400") or a number with a unit s, m, h or d
 * ("90m", "24h", "2d"), at most max_s seconds (max_s > 0). Fails into errstr ("key: expected seconds or a
 * number with s, m, h or d (e.g. 86400, 24h), at most 30 days") otherwise, or when key is unset. */
int conf_get_duration(const conf_t *c, const char *key, long max_s, long *seconds, char *errstr,
                      size_t errstr_size);

/* Calls fn for each "kafka.<property>" setting with the prefix removed (for librdkafka). */
int conf_each_kafka(const conf_t *c, int (*fn)(void *arg, const char *prop, const char *value), void *arg);

/* Prints the table of known keys with their environment variable names and current values (secrets,
 * such as the password of db.url, masked), then the kafka.<property> settings in force. */
void conf_print_reference(const conf_t *c, void *file);

/* Prints the configuration reference in Markdown (defaults only, never the current values): what
 * `raikoo config --markdown` prints and docs/CONFIGURATION.md holds. kafka_more (when not NULL) adds to its
 * section on Kafka client properties (the Kafka helpers' own defaults: kafka_defaults_markdown). */
void conf_print_markdown(void *file, void (*kafka_more)(void *file));

/* Passwords in connection strings. Returns a copy of text (free()) in which:
 *  - every password written in a libpq connection string, key=value form ("password=...",
 *    "sslpassword='...'") or URL form ("postgresql://user:PW@host/db", "?password=...&"), is "***";
 *  - every occurrence of a password that conninfo (may be NULL) holds, as written and decoded, is "***"
 *    too when it is at least CONF_SECRET_MIN bytes long (libpq's errors may quote part of a string they
 *    could not parse).
 * Use it on everything printed that holds db.url or a libpq connection error. */
#define CONF_SECRET_MIN 4
char *conf_mask_conninfo(const char *text, const char *conninfo);

#endif
