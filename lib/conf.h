/* Configuration: built-in defaults (the local stack), then a key=value file, then RAIKOO_* variables. */
#ifndef RAIKOO_CONF_H
#define RAIKOO_CONF_H

#include <stddef.h>

typedef struct conf conf_t;

/* A setting the programs know: its key, default and one line of help. */
typedef struct conf_key {
    const char *key;
    const char *def;
    const char *help;
} conf_key_t;

/* The table of known keys, ending with a NULL key (for --help and the README). */
extern const conf_key_t conf_keys[];

/* Returns a new configuration holding the defaults; never NULL. */
conf_t *conf_new(void);
void conf_free(conf_t *c);

/* Sets one key. Known keys and any "kafka.<property>" are accepted; anything else fails into errstr. */
int conf_set(conf_t *c, const char *key, const char *value, char *errstr, size_t errstr_size);

/* Reads "key=value" lines (# comments, blank lines) from path; errors read "file:line: what". */
int conf_load_file(conf_t *c, const char *path, char *errstr, size_t errstr_size);

/* Applies RAIKOO_<KEY> variables (dots as underscores, upper case): RAIKOO_DB_URL sets db.url,
 * RAIKOO_KAFKA_SECURITY_PROTOCOL sets kafka.security.protocol. Unrelated RAIKOO_* variables are ignored. */
int conf_load_env(conf_t *c, char *errstr, size_t errstr_size);

/* The usual start of every program: defaults, then --config FILE (or RAIKOO_CONFIG), then the environment.
 * config_path may be NULL. */
int conf_load(conf_t *c, const char *config_path, char *errstr, size_t errstr_size);

/* The value of key (borrowed, valid until the key is set again), or NULL when unset. */
const char *conf_get(const conf_t *c, const char *key);

/* The value of key as an integer; fails into errstr when it is not one within [min, max]. */
int conf_get_long(const conf_t *c, const char *key, long min, long max, long *out, char *errstr,
                  size_t errstr_size);

/* Calls fn for each "kafka.<property>" setting with the prefix removed (for librdkafka). */
int conf_each_kafka(const conf_t *c, int (*fn)(void *arg, const char *prop, const char *value), void *arg);

/* Prints the table of known keys with their environment variable names and current values. */
void conf_print_reference(const conf_t *c, void *file);

#endif
