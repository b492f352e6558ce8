/* Configuration: built-in defaults (the local stack), then a key=value file, then RAIKOO_* variables. */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const conf_key_t conf_keys[] = {
    {"db.url", "host=127.0.0.1 port=55432 dbname=raikoo user=raikoo connect_timeout=5",
     "libpq connection string (or postgresql:// URL)"},
    {"kafka.bootstrap.servers", "127.0.0.1:19092", "Kafka brokers (any kafka.<property> goes to librdkafka)"},
    {"topic.commands", "raikoo.commands", "commands topic"},
    {"topic.events", "raikoo.events", "domain events topic"},
    {"topic.results", "raikoo.results", "one result per command"},
    {"topic.mail", "raikoo.mail", "mail jobs (codes sealed to the mailer)"},
    {"topic.dlq", "raikoo.commands.dlq", "messages that are not commands"},
    {"topics.partitions.commands", "12", "partitions for `topics create`"},
    {"topics.partitions.events", "12", "partitions for `topics create`"},
    {"topics.partitions.results", "12", "partitions for `topics create`"},
    {"topics.partitions.mail", "6", "partitions for `topics create`"},
    {"topics.partitions.dlq", "3", "partitions for `topics create`"},
    {"topics.replication", "1", "replication factor for `topics create`"},
    {"group.commands", "raikoo-command-worker", "consumer group of the command workers"},
    {"group.mail", "raikoo-mailer", "consumer group of the mailers"},
    {"batch.max", "500", "command worker: most commands in one database transaction"},
    {"batch.wait.ms", "5", "command worker: how long to gather a batch after its first command"},
    {"command.max.bytes", "65536", "larger command messages go to the dead-letter topic"},
    {"keys.dir", "var/keys", "mailer key pair and code pepper (raikoo keygen)"},
    {"invitation.ttl.seconds", "604800", "how long an invitation code stays valid (7 days)"},
    {"ratelimit.invitations.per.hour", "1000", "new invitations per organization per hour"},
    {"relay.batch", "1000", "outbox relay: most rows published at a time"},
    {"relay.poll.ms", "1000", "outbox relay: poll interval when no notification arrives"},
    {"expiry.interval.ms", "5000", "expiry worker: time between scans"},
    {"expiry.batch", "500", "expiry worker: most invitations expired per transaction"},
    {"smtp.host", "127.0.0.1", "SMTP server"},
    {"smtp.port", "2525", "SMTP port"},
    {"smtp.starttls", "no", "no | if-available | required"},
    {"smtp.user", "", "SMTP AUTH user (empty: no AUTH)"},
    {"smtp.password", "", "SMTP AUTH password"},
    {"smtp.timeout.ms", "10000", "SMTP connect and command timeout"},
    {"mail.from", "Raikoo <no-reply@raikoo.local>", "From: of invitation e-mails"},
    {"mail.app.url", "http://localhost:8080", "where invitees accept or activate (shown in the e-mail)"},
    {"mail.templates", "", "folder with invitation.{subject,txt,html} overriding the built-in ones"},
    {"mail.batch.max", "50", "mailer: most messages per SMTP session"},
    {"mail.retry.base.ms", "2000", "mailer: first retry delay, doubled each attempt"},
    {"mail.retry.max", "0", "mailer: attempts before InvitationEmailFailed on 4xx replies (0: until the invitation expires)"},
    {"mail.retry.max.delay.ms", "3600000", "mailer: longest delay between two attempts of one job"},
    {"mail.lease.ms", "15000", "mailer: a job's claim, renewed while its mailer lives (taken over when it runs out)"},
    {"mail.probe.max.ms", "60000", "mailer: longest delay between two probes of an unreachable SMTP server"},
    {"result.timeout.ms", "30000", "raikoo --wait: how long to wait for a result"},
    {"log.level", "info", "debug | info | warn | error"},
    {NULL, NULL, NULL},
};

typedef struct entry {
    char *key;
    char *value;
} entry_t;

struct conf {
    entry_t *v;
    size_t n, cap;
};

static const conf_key_t *known_key(const char *key) {
    for (const conf_key_t *k = conf_keys; k->key; k++)
        if (strcmp(k->key, key) == 0)
            return k;
    return NULL;
}

static entry_t *find(const conf_t *c, const char *key) {
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].key, key) == 0)
            return &c->v[i];
    return NULL;
}

static void put(conf_t *c, const char *key, const char *value) {
    entry_t *e = find(c, key);
    if (e) {
        free(e->value);
        e->value = strdup(value);
        return;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = realloc(c->v, c->cap * sizeof(*c->v));
        if (!c->v)
            abort();
    }
    c->v[c->n].key = strdup(key);
    c->v[c->n].value = strdup(value);
    if (!c->v[c->n].key || !c->v[c->n].value)
        abort();
    c->n++;
}

conf_t *conf_new(void) {
    conf_t *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    for (const conf_key_t *k = conf_keys; k->key; k++)
        put(c, k->key, k->def);
    return c;
}

void conf_free(conf_t *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].key);
        free(c->v[i].value);
    }
    free(c->v);
    free(c);
}

int conf_set(conf_t *c, const char *key, const char *value, char *errstr, size_t errstr_size) {
    if (!known_key(key) && !(strncmp(key, "kafka.", 6) == 0 && key[6])) {
        snprintf(errstr, errstr_size, "unknown configuration key \"%s\" (see --help-config)", key);
        return -1;
    }
    put(c, key, value);
    return 0;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int conf_load_file(conf_t *c, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(errstr, errstr_size, "%s:%d: expected key=value", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        char why[256];
        if (conf_set(c, key, value, why, sizeof(why)) != 0) {
            snprintf(errstr, errstr_size, "%s:%d: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

extern char **environ;

int conf_load_env(conf_t *c, char *errstr, size_t errstr_size) {
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "RAIKOO_", 7) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char key[256];
        size_t n = (size_t)(eq - (*e + 7));
        if (n == 0 || n >= sizeof(key))
            continue;
        for (size_t i = 0; i < n; i++) {
            char ch = (*e)[7 + i];
            key[i] = ch == '_' ? '.' : (char)tolower((unsigned char)ch);
        }
        key[n] = '\0';
        if (known_key(key) || (strncmp(key, "kafka.", 6) == 0 && key[6])) {
            if (conf_set(c, key, eq + 1, errstr, errstr_size) != 0)
                return -1;
        }
    }
    return 0;
}

int conf_load(conf_t *c, const char *config_path, char *errstr, size_t errstr_size) {
    if (!config_path || !*config_path)
        config_path = getenv("RAIKOO_CONFIG");
    if (config_path && *config_path && conf_load_file(c, config_path, errstr, errstr_size) != 0)
        return -1;
    return conf_load_env(c, errstr, errstr_size);
}

const char *conf_get(const conf_t *c, const char *key) {
    entry_t *e = find(c, key);
    return e ? e->value : NULL;
}

int conf_get_long(const conf_t *c, const char *key, long min, long max, long *out, char *errstr,
                  size_t errstr_size) {
    const char *v = conf_get(c, key);
    char *end = NULL;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || errno || *end || x < min || x > max) {
        snprintf(errstr, errstr_size, "%s: \"%s\" is not a whole number from %ld to %ld", key, v ? v : "",
                 min, max);
        return -1;
    }
    *out = x;
    return 0;
}

int conf_each_kafka(const conf_t *c, int (*fn)(void *arg, const char *prop, const char *value), void *arg) {
    for (size_t i = 0; i < c->n; i++)
        if (strncmp(c->v[i].key, "kafka.", 6) == 0)
            if (fn(arg, c->v[i].key + 6, c->v[i].value) != 0)
                return -1;
    return 0;
}

void conf_print_reference(const conf_t *c, void *file) {
    FILE *f = file;
    fprintf(f, "Configuration (defaults < --config FILE or RAIKOO_CONFIG < environment):\n");
    for (const conf_key_t *k = conf_keys; k->key; k++) {
        char env[128] = "RAIKOO_";
        size_t j = 7;
        for (const char *p = k->key; *p && j + 1 < sizeof(env); p++)
            env[j++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
        env[j] = '\0';
        const char *v = conf_get(c, k->key);
        int secret = strcmp(k->key, "smtp.password") == 0;
        fprintf(f, "  %-32s %-40s %s [%s]\n", k->key, env, k->help, secret && v && *v ? "***" : (v ? v : ""));
    }
    fprintf(f, "  kafka.<property>                 RAIKOO_KAFKA_<PROPERTY>                  passed to librdkafka\n");
}
