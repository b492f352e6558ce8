/* Configuration: built-in defaults (the local stack), then a key=value file, then RAIKOO_* variables. */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <librdkafka/rdkafka.h>

#include "log.h"
#include "strbuf.h"
#include "text.h"

const conf_key_t conf_keys[] = {
    {"db.url", "host=127.0.0.1 port=55432 dbname=raikoo user=raikoo connect_timeout=5",
     "PostgreSQL: a libpq connection string or a postgresql:// URL (its password is never printed)"},
    {"kafka.bootstrap.servers", "127.0.0.1:19092",
     "Kafka brokers, host:port[,host:port...] (any kafka.<property> goes to librdkafka)"},
    {"topic.commands", "raikoo.commands",
     "commands from producers (the CLI, the producer library, upstream apps)"},
    {"topic.events", "raikoo.events",
     "domain events (InvitationCreated, InvitationEmailSent, ...), keyed by organization"},
    {"topic.results", "raikoo.results", "one result per command, keyed by the command id"},
    {"topic.mail", "raikoo.mail", "mail jobs (codes sealed to the mailer)"},
    {"topic.dlq", "raikoo.commands.dlq",
     "dead-letter topic: messages that are not commands, with the reason in a header"},
    {"topics.partitions.commands", "12", "partitions for `topics create`"},
    {"topics.partitions.events", "12", "partitions for `topics create`"},
    {"topics.partitions.results", "12", "partitions for `topics create`"},
    {"topics.partitions.mail", "6", "partitions for `topics create`"},
    {"topics.partitions.dlq", "3", "partitions for `topics create`"},
    {"topics.replication", "auto",
     "replication factor for `topics create`; auto: 3 on a cluster of 3 brokers or more (then "
     "min.insync.replicas=2), else 1"},
    {"group.commands", "raikoo-command-worker", "consumer group of the command workers"},
    {"group.mail", "raikoo-mailer", "consumer group of the mailers"},
    {"group.audit", "raikoo-audit", "consumer group of the audit workers (topic.events into audit_log)"},
    {"worker.instance", "",
     "non-empty: static group membership (group.instance.id = group/host/instance); one per process"},
    {"commit.interval.ms", "1000",
     "command worker, mailer, audit worker: least time between two offset commits (0: after every batch); "
     "what was applied and not yet committed is read again after a crash, and recognised"},
    {"batch.max", "500", "command worker: most commands in one database transaction"},
    {"batch.wait.ms", "5",
     "command worker: after a full batch (a backlog), how long to gather the next one after its first "
     "command; otherwise a batch takes only the commands already there"},
    {"command.max.bytes", "65536", "larger command messages go to the dead-letter topic"},
    {"keys.dir", "var/keys",
     "folder of mailer.pk, mailer.sk (mailer only) and code.pepper (command worker), from `raikoo keygen`"},
    {"invitation.ttl.seconds", "604800", "how long an invitation code stays valid (7 days)"},
    {"ratelimit.invitations.per.hour", "1000", "new invitations per organization per hour"},
    {"relay.batch", "1000",
     "outbox relay: most rows in flight at once (produced, not yet acknowledged and deleted)"},
    {"relay.poll.ms", "1000", "outbox relay: how often it reads the whole outbox, and its longest sleep"},
    {"expiry.interval.ms", "5000", "expiry worker: time between scans"},
    {"expiry.batch", "500", "expiry worker: most invitations expired per transaction"},
    {"smtp.host", "127.0.0.1", "SMTP server"},
    {"smtp.port", "2525", "SMTP port"},
    {"smtp.starttls", "no", "no | if-available | required"},
    {"smtp.user", "", "SMTP AUTH user (empty: no AUTH)"},
    {"smtp.password", "", "SMTP AUTH password (printed as ***)"},
    {"smtp.timeout.ms", "10000", "SMTP connect and command timeout"},
    {"mail.from", "Raikoo <no-reply@raikoo.local>", "From: of invitation e-mails"},
    {"mail.app.url", "http://localhost:8080", "where invitees accept or activate (shown in the e-mail)"},
    {"mail.templates", "",
     "folder with invitation.subject, invitation.txt and invitation.html replacing the built-in ones (empty: "
     "built-in); also reminder.*, and language folders such as de/ (docs/EMAIL.md)"},
    {"mail.batch.max", "50", "mailer: most messages per SMTP session"},
    {"mail.retry.base.ms", "2000", "mailer: first retry delay, doubled each attempt"},
    {"mail.retry.max", "0",
     "mailer: attempts before InvitationEmailFailed on 4xx replies (0: until the invitation expires)"},
    {"mail.retry.max.delay.ms", "3600000", "mailer: longest delay between two attempts of one job"},
    {"mail.lease.ms", "15000",
     "mailer: a job's claim, renewed while its mailer lives (taken over when it runs out)"},
    {"mail.probe.max.ms", "60000", "mailer: longest delay between two probes of an unreachable SMTP server"},
    {"mail.connections", "4",
     "mailer: SMTP sessions in parallel (sender threads, each with its own session)"},
    {"result.timeout.ms", "30000", "raikoo --wait: how long to wait for a result"},
    {"log.level", "info", "debug | info | warn | error"},
    {"log.format", "text",
     "text (`time level=... worker=... msg=\"...\"`) | json (one JSON object per line: time, level, worker, "
     "instance, corr, msg, fields)"},
    {"metrics.listen", "",
     "workers: HOST:PORT of /metrics (Prometheus), /healthz and /readyz, e.g. 127.0.0.1:9101 (empty: off)"},
    {"metrics.stall.ms", "60000", "workers: /healthz fails when no loop of the worker turned for this long"},
    {"web.listen", "127.0.0.1:8080", "raikoo-web: address:port it serves (port 0: any free port, printed)"},
    {"web.cookie.secure", "no",
     "raikoo-web: yes when browsers reach it over HTTPS (a TLS proxy in front): cookies get Secure"},
    {"web.session.ttl.seconds", "43200", "raikoo-web: how long a sign-in lasts (12 hours)"},
    {"web.password.min.length", "10", "raikoo-web: fewest characters of a new password"},
    {"web.signin.max.failures", "5",
     "raikoo-web: failed sign-ins per address before it waits for the window"},
    {"web.signin.max.failures.client", "50",
     "raikoo-web: failed sign-ins per client IP address before it waits for the window"},
    {"web.signin.window.seconds", "900", "raikoo-web: the window of the failed sign-in counts (15 minutes)"},
    {"mail.locale", "en",
     "language of invitation e-mails when neither the command nor the organization's policy names one; the "
     "mailer's for jobs that name none (templates of it, then of its language, then en)"},
    {"reminder.before", "86400",
     "expiry worker: how long before a pending invitation expires its one reminder e-mail is queued, in "
     "seconds or with a unit (90m, 24h, 2d); 0: no reminders"},
    {"reminder.batch", "500", "expiry worker: most reminders queued per transaction"},
    {NULL, NULL, NULL},
};

/* The scripts' own variables. None starts with RAIKOO_KAFKA_: the programs pass every RAIKOO_KAFKA_*
 * variable to librdkafka. RAIKOO_SMTP_PORT is both ops/stack's port and the programs' smtp.port. */
const conf_script_var_t conf_script_vars[] = {
    {"RAIKOO_VAR", "var/", "ops/stack: where the stack keeps its data, logs, pid files and mail"},
    {"RAIKOO_PG_PORT", "55432", "ops/stack: PostgreSQL port"},
    {"RAIKOO_BROKER_PORT", "19092", "ops/stack: Kafka broker port"},
    {"RAIKOO_CONTROLLER_PORT", "19093", "ops/stack: Kafka KRaft controller port"},
    {"RAIKOO_SMTP_PORT", "2525", "ops/stack: SMTP sink port (the programs read it as smtp.port too)"},
    {"RAIKOO_STACK_KAFKA_LIBS", "var/kafka/libs", "ops/setup, ops/stack: folder of the Apache Kafka jars"},
    {"RAIKOO_DEMO_ADMIN", "admin@raikoo.local", "ops/run (make run): address of the demo admin"},
    {"RAIKOO_RUN_METRICS_PORT", "9101",
     "ops/run (make run): metrics port of the first worker (127.0.0.1); the others take the next ones"},
    {"RAIKOO_TEST_VAR", "var/test", "ops/test: data folder of the test stack"},
    {"RAIKOO_TEST_PG_PORT", "25532", "ops/test: PostgreSQL port of the test stack"},
    {"RAIKOO_TEST_BROKER_PORT", "19192", "ops/test: Kafka port of the test stack (controller: port + 1)"},
    {"RAIKOO_TEST_SMTP_PORT", "2625", "ops/test: SMTP port of the test stack"},
    {"RAIKOO_TEST_BUILDS", "bin bin-asan", "ops/test: the builds the suite runs against"},
    {"RAIKOO_TEST_TIMEOUT", "900",
     "tests: seconds one test may take (setup, call and teardown) before the run stops and prints where it "
     "hung; 0: no limit"},
    {"RAIKOO_BIN_DIR", "bin", "tests: the build under test (set by ops/test)"},
    {"RAIKOO_BENCH_VAR", "var/bench", "ops/bench: data folder of the bench stack"},
    {"RAIKOO_BENCH_PG_PORT", "25542", "ops/bench: PostgreSQL port of the bench stack"},
    {"RAIKOO_BENCH_BROKER_PORT", "19202", "ops/bench: Kafka port of the bench stack (controller: port + 1)"},
    {"RAIKOO_BENCH_SMTP_PORT", "2635", "ops/bench: SMTP port of the bench stack"},
    {"RAIKOO_BENCH_KEEP_DATA", "0",
     "ops/bench: 1 keeps the bench stack's data and a running bench stack (by default every run starts "
     "from an empty stack)"},
    {"RAIKOO_STACK_JAVA_OPTS", "(none)",
     "ops/stack: more options for the brokers' JVM (ops/test and ops/bench: -XX:TieredStopAtLevel=1, a "
     "faster start and no compiler threads competing with the system measured)"},
    {NULL, NULL, NULL},
};

typedef struct entry {
    char *key;
    char *value;
    char *origin; /* "default", "FILE:LINE", "RAIKOO_..." or "set" */
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

static int is_kafka_key(const char *key) {
    return strncmp(key, "kafka.", 6) == 0 && key[6];
}

static entry_t *find(const conf_t *c, const char *key) {
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].key, key) == 0)
            return &c->v[i];
    return NULL;
}

static void put(conf_t *c, const char *key, const char *value, const char *origin) {
    entry_t *e = find(c, key);
    if (e) {
        free(e->value);
        free(e->origin);
        e->value = xstrdup(value);
        e->origin = xstrdup(origin);
        return;
    }
    c->v = xgrow(c->v, c->n + 1, &c->cap, sizeof(*c->v), 64);
    c->v[c->n].key = xstrdup(key);
    c->v[c->n].value = xstrdup(value);
    c->v[c->n].origin = xstrdup(origin);
    c->n++;
}

conf_t *conf_new(void) {
    conf_t *c = xcalloc(1, sizeof(*c));
    for (const conf_key_t *k = conf_keys; k->key; k++)
        put(c, k->key, k->def, "default");
    return c;
}

void conf_free(conf_t *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].key);
        free(c->v[i].value);
        free(c->v[i].origin);
    }
    free(c->v);
    free(c);
}

static int set_from(conf_t *c, const char *key, const char *value, const char *origin, char *errstr,
                    size_t errstr_size) {
    if (!known_key(key) && !is_kafka_key(key)) {
        text_printf(errstr, errstr_size, "unknown configuration key \"%s\" (`raikoo config` lists them)",
                    key);
        return -1;
    }
    put(c, key, value, origin);
    return 0;
}

int conf_set(conf_t *c, const char *key, const char *value, char *errstr, size_t errstr_size) {
    return set_from(c, key, value, "set", errstr, errstr_size);
}

int conf_load_file(conf_t *c, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        text_printf(errstr, errstr_size, "configuration file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        text_printf(errstr, errstr_size, "configuration file %s: %s", path,
                    S_ISDIR(st.st_mode) ? "is a directory, not a file of key=value lines" : strerror(errno));
        fclose(f);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    errno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = text_trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            text_printf(errstr, errstr_size, "%s:%d: expected key=value", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = text_trim(s), *value = text_trim(eq + 1);
        char why[256], origin[512];
        text_printf(origin, sizeof(origin), "%s:%d", path, lineno);
        if (set_from(c, key, value, origin, why, sizeof(why)) != 0) {
            text_printf(errstr, errstr_size, "%s:%d: %s", path, lineno, why);
            rc = -1;
            break;
        }
        errno = 0;
    }
    if (rc == 0 && ferror(f)) {
        text_printf(errstr, errstr_size, "configuration file %s: cannot read it: %s", path,
                    strerror(errno ? errno : EIO));
        rc = -1;
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
        char key[256], name[264];
        size_t n = (size_t)(eq - (*e + 7));
        if (n == 0 || n >= sizeof(key))
            continue;
        for (size_t i = 0; i < n; i++) {
            char ch = (*e)[7 + i];
            key[i] = ch == '_' ? '.' : (char)tolower((unsigned char)ch);
        }
        key[n] = '\0';
        snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
        if (known_key(key) || is_kafka_key(key)) {
            if (set_from(c, key, eq + 1, name, errstr, errstr_size) != 0)
                return -1;
        }
    }
    return 0;
}

int conf_check_kafka(const conf_t *c, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kconf = rd_kafka_conf_new();
    int rc = 0;
    for (size_t i = 0; i < c->n && rc == 0; i++) {
        const entry_t *e = &c->v[i];
        if (!is_kafka_key(e->key))
            continue;
        char why[512];
        if (rd_kafka_conf_set(kconf, e->key + 6, e->value, why, sizeof(why)) == RD_KAFKA_CONF_OK)
            continue;
        const char *hint =
            strcmp(e->key, "kafka.libs") == 0
                ? " (the Kafka jar folder of ops/stack and ops/setup is RAIKOO_STACK_KAFKA_LIBS)"
                : "";
        if (strncmp(e->origin, "RAIKOO_", 7) == 0)
            text_printf(errstr, errstr_size,
                        "%s: librdkafka refuses %s: %s; every RAIKOO_KAFKA_<PROPERTY> variable is passed to "
                        "librdkafka as a client property: fix or unset %s%s",
                        e->origin, e->key + 6, why, e->origin, hint);
        else
            text_printf(
                errstr, errstr_size,
                "%s: librdkafka refuses %s: %s; every kafka.<property> key is passed to librdkafka as a "
                "client property: fix or remove %s%s",
                e->origin, e->key + 6, why, e->key, hint);
        rc = -1;
    }
    rd_kafka_conf_destroy(kconf);
    return rc;
}

/* ---- passwords in connection strings ---- */

typedef struct pw_span {
    size_t start, end; /* the value in the text, quotes included */
    int url;           /* percent-encoded (URL user info or query) rather than key=value */
} pw_span_t;

#define SPANS_MAX 32
#define SECRETS_MAX (2 * SPANS_MAX)

static int starts_with_ci(const char *s, const char *prefix) {
    for (; *prefix; s++, prefix++)
        if (tolower((unsigned char)*s) != *prefix)
            return 0;
    return 1;
}

/* Where a token of text ends: white space, the end, or (in printed text, text_mode) a double quote. */
static int token_end(char ch, int text_mode) {
    return ch == '\0' || isspace((unsigned char)ch) || (text_mode && ch == '"');
}

static void add_span(pw_span_t *spans, size_t *n, size_t start, size_t end, int url) {
    if (*n < SPANS_MAX && end > start)
        spans[(*n)++] = (pw_span_t){start, end, url};
}

/* The password of a URL's user info, "scheme://user:PW@": libpq takes the first '@' before a '/', a
 * writer who did not percent-encode a password may have meant the last '@' before a '?'; both are found
 * (masking more is harmless). */
static void url_userinfo(const char *s, size_t from, int text_mode, pw_span_t *spans, size_t *n) {
    size_t at_libpq = 0, at_query = 0;
    int slash = 0, query = 0;
    for (size_t k = from; !token_end(s[k], text_mode); k++) {
        if (s[k] == '@') {
            if (!slash && !at_libpq)
                at_libpq = k;
            if (!query)
                at_query = k;
        } else if (s[k] == '/') {
            slash = 1;
        } else if (s[k] == '?') {
            query = 1;
        }
    }
    size_t ats[2] = {at_libpq, at_query};
    for (int i = 0; i < 2; i++) {
        if (!ats[i] || (i == 1 && ats[1] == ats[0]))
            continue;
        const char *colon = memchr(s + from, ':', ats[i] - from);
        if (colon)
            add_span(spans, n, (size_t)(colon - s) + 1, ats[i], 1);
    }
}

/* Finds the password values written in s: URL user info, and every "...password = value" (key=value
 * form, quoted or not, or a URL query parameter after '?' or '&'). */
static size_t find_passwords(const char *s, int text_mode, pw_span_t *spans) {
    size_t n = 0;
    for (size_t i = 0; s[i]; i++) {
        if (starts_with_ci(s + i, "postgresql://") || starts_with_ci(s + i, "postgres://")) {
            size_t from = i + (starts_with_ci(s + i, "postgresql://") ? 13 : 11);
            url_userinfo(s, from, text_mode, spans, &n);
            continue;
        }
        if (!starts_with_ci(s + i, "password"))
            continue;
        int query = i > 0 && (s[i - 1] == '?' || s[i - 1] == '&');
        size_t k = i + 8;
        while (s[k] == ' ' || s[k] == '\t')
            k++;
        if (s[k] != '=')
            continue;
        k++;
        while (!query && (s[k] == ' ' || s[k] == '\t'))
            k++;
        size_t start = k;
        if (!query && s[k] == '\'') {
            for (k++; s[k] && s[k] != '\''; k++)
                if (s[k] == '\\' && s[k + 1])
                    k++;
            if (s[k] == '\'')
                k++;
        } else {
            while (!token_end(s[k], text_mode) && !(query && s[k] == '&'))
                k++;
        }
        add_span(spans, &n, start, k, query);
        i = k > i ? k - 1 : i;
    }
    return n;
}

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)tolower((unsigned char)ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* The value of a span as libpq reads it: quotes and backslashes undone, or percent-decoding. */
static char *span_decode(const char *s, const pw_span_t *sp) {
    size_t a = sp->start, b = sp->end;
    char *out = xmalloc(b - a + 1);
    size_t j = 0;
    if (!sp->url && s[a] == '\'') {
        a++;
        if (b > a && s[b - 1] == '\'')
            b--;
        for (size_t k = a; k < b; k++) {
            if (s[k] == '\\' && k + 1 < b)
                k++;
            out[j++] = s[k];
        }
    } else {
        for (size_t k = a; k < b; k++) {
            int hi, lo;
            if (sp->url && s[k] == '%' && k + 2 < b && (hi = hex_value(s[k + 1])) >= 0 &&
                (lo = hex_value(s[k + 2])) >= 0) {
                out[j++] = (char)(hi * 16 + lo);
                k += 2;
            } else {
                out[j++] = s[k];
            }
        }
    }
    out[j] = '\0';
    return out;
}

/* The passwords conninfo holds, as written (without quotes) and decoded, each at least CONF_SECRET_MIN
 * bytes: new strings in out (caller frees), their number returned. */
static size_t conninfo_secrets(const char *conninfo, char **out, size_t max) {
    pw_span_t spans[SPANS_MAX];
    size_t ns = find_passwords(conninfo, 0, spans), n = 0;
    for (size_t i = 0; i < ns && n + 2 <= max; i++) {
        const pw_span_t *sp = &spans[i];
        size_t a = sp->start, b = sp->end;
        if (!sp->url && conninfo[a] == '\'' && b - a >= 2) {
            a++;
            b--;
        }
        char *raw = xstrndup(conninfo + a, b - a), *decoded = span_decode(conninfo, sp);
        int same = strcmp(raw, decoded) == 0;
        if (strlen(raw) >= CONF_SECRET_MIN)
            out[n++] = raw;
        else
            free(raw);
        if (!same && strlen(decoded) >= CONF_SECRET_MIN)
            out[n++] = decoded;
        else
            free(decoded);
    }
    return n;
}

/* A copy of text with every occurrence of needle replaced by "***". */
static char *replace_all(const char *text, const char *needle) {
    sb_t b = {0};
    size_t len = strlen(needle);
    const char *p = text, *hit;
    while ((hit = strstr(p, needle)) != NULL) {
        sb_addn(&b, p, (size_t)(hit - p));
        sb_add(&b, "***");
        p = hit + len;
    }
    sb_add(&b, p);
    return sb_take(&b);
}

static int span_cmp(const void *a, const void *b) {
    const pw_span_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

char *conf_mask_conninfo(const char *text, const char *conninfo) {
    char *t = xstrdup(text ? text : "");
    if (conninfo) {
        char *secrets[SECRETS_MAX];
        size_t n = conninfo_secrets(conninfo, secrets, SECRETS_MAX);
        /* Longest first, so that a password that contains another is hidden whole. */
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (strlen(secrets[j]) > strlen(secrets[i])) {
                    char *x = secrets[i];
                    secrets[i] = secrets[j];
                    secrets[j] = x;
                }
        for (size_t i = 0; i < n; i++) {
            char *u = replace_all(t, secrets[i]);
            free(t);
            t = u;
            free(secrets[i]);
        }
    }
    pw_span_t spans[SPANS_MAX];
    size_t ns = find_passwords(t, 1, spans);
    qsort(spans, ns, sizeof(spans[0]), span_cmp);
    sb_t b = {0};
    size_t at = 0;
    for (size_t i = 0; i < ns; i++) {
        if (spans[i].end <= at)
            continue; /* inside one already masked */
        size_t start = spans[i].start > at ? spans[i].start : at;
        sb_addn(&b, t + at, start - at);
        if (start == spans[i].start)
            sb_add(&b, "***");
        at = spans[i].end;
    }
    sb_add(&b, t + at);
    free(t);
    return sb_take(&b);
}

/* Property names of librdkafka that hold secrets (masked by `raikoo config`, kept out of logs). */
static int kafka_secret(const char *key) {
    return strstr(key, "password") || strstr(key, "secret") || strstr(key, "key.pem") ||
           strstr(key, "oauthbearer.config") || strstr(key, "sasl.jaas");
}

static void redact_configured(const conf_t *c) {
    const char *url = conf_get(c, "db.url");
    if (url) {
        /* The passwords of db.url, as written and decoded: what conf_mask_conninfo hides. */
        char *secrets[SECRETS_MAX];
        size_t n = conninfo_secrets(url, secrets, SECRETS_MAX);
        for (size_t i = 0; i < n; i++) {
            log_redact(secrets[i]);
            free(secrets[i]);
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        const entry_t *e = &c->v[i];
        if ((strcmp(e->key, "smtp.password") == 0 || (is_kafka_key(e->key) && kafka_secret(e->key))) &&
            strlen(e->value) >= CONF_SECRET_MIN)
            log_redact(e->value);
    }
}

int conf_load(conf_t *c, const char *config_path, char *errstr, size_t errstr_size) {
    if (config_path && !*config_path) {
        text_printf(errstr, errstr_size, "--config: no file name given");
        return -1;
    }
    if (!config_path)
        config_path = getenv("RAIKOO_CONFIG");
    if (config_path && *config_path && conf_load_file(c, config_path, errstr, errstr_size) != 0)
        return -1;
    if (conf_load_env(c, errstr, errstr_size) != 0 || conf_check_kafka(c, errstr, errstr_size) != 0)
        return -1;
    redact_configured(c);
    return 0;
}

const char *conf_get(const conf_t *c, const char *key) {
    entry_t *e = find(c, key);
    return e ? e->value : NULL;
}

const char *conf_origin(const conf_t *c, const char *key) {
    entry_t *e = find(c, key);
    return e ? e->origin : NULL;
}

int conf_get_long(const conf_t *c, const char *key, long min, long max, long *out, char *errstr,
                  size_t errstr_size) {
    const char *v = conf_get(c, key);
    char *end = NULL;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || errno || *end || x < min || x > max) {
        text_printf(errstr, errstr_size, "%s: \"%s\" is not a whole number from %ld to %ld", key, v ? v : "",
                    min, max);
        return -1;
    }
    *out = x;
    return 0;
}

/* "30 days", "12 hours", "90 minutes" or "45 seconds": the largest unit max_s is a whole number of. */
static void duration_text(long max_s, char *buf, size_t size) {
    static const struct {
        long s;
        const char *unit;
    } units[] = {{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (max_s % units[i].s == 0) {
            long n = max_s / units[i].s;
            text_printf(buf, size, "%ld %s%s", n, units[i].unit, n == 1 ? "" : "s");
            return;
        }
    }
}

int conf_get_duration(const conf_t *c, const char *key, long max_s, long *seconds, char *errstr,
                      size_t errstr_size) {
    const char *v = conf_get(c, key);
    char *end = NULL;
    errno = 0;
    long n = v && isdigit((unsigned char)*v) ? strtol(v, &end, 10) : -1;
    long unit = 0;
    if (n >= 0 && errno == 0 && end) {
        if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
            unit = 1;
        else if (strcmp(end, "m") == 0)
            unit = 60;
        else if (strcmp(end, "h") == 0)
            unit = 3600;
        else if (strcmp(end, "d") == 0)
            unit = 86400;
    }
    if (!unit || n > max_s / unit) {
        char most[64];
        duration_text(max_s, most, sizeof(most));
        text_printf(errstr, errstr_size,
                    "%s: expected seconds or a number with s, m, h or d (e.g. 86400, 24h), at most %s", key,
                    most);
        return -1;
    }
    *seconds = n * unit;
    return 0;
}

int conf_each_kafka(const conf_t *c, int (*fn)(void *arg, const char *prop, const char *value), void *arg) {
    for (size_t i = 0; i < c->n; i++)
        if (is_kafka_key(c->v[i].key))
            if (fn(arg, c->v[i].key + 6, c->v[i].value) != 0)
                return -1;
    return 0;
}

static void env_name(const char *key, char *env, size_t size) {
    size_t j = (size_t)snprintf(env, size, "RAIKOO_");
    for (const char *p = key; *p && j + 1 < size; p++)
        env[j++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    env[j] = '\0';
}

void conf_print_reference(const conf_t *c, void *file) {
    FILE *f = file;
    fprintf(f, "Configuration (defaults < --config FILE or RAIKOO_CONFIG < environment):\n");
    for (const conf_key_t *k = conf_keys; k->key; k++) {
        char env[128];
        env_name(k->key, env, sizeof(env));
        const char *v = conf_get(c, k->key);
        char *shown = NULL;
        if (strcmp(k->key, "smtp.password") == 0 && v && *v)
            shown = xstrdup("***");
        else if (strcmp(k->key, "db.url") == 0)
            shown = conf_mask_conninfo(v ? v : "", v);
        fprintf(f, "  %-32s %-40s %s [%s]\n", k->key, env, k->help, shown ? shown : (v ? v : ""));
        free(shown);
    }
    fprintf(
        f,
        "  kafka.<property>                 RAIKOO_KAFKA_<PROPERTY>                  passed to librdkafka\n");
    for (size_t i = 0; i < c->n; i++) {
        const entry_t *e = &c->v[i];
        if (!is_kafka_key(e->key) || known_key(e->key))
            continue;
        char env[128];
        env_name(e->key, env, sizeof(env));
        fprintf(f, "  %-32s %-40s from %s [%s]\n", e->key, env, e->origin,
                kafka_secret(e->key) ? "***" : e->value);
    }
}

/* A table cell: | escaped, line breaks as spaces. */
static void md_cell(FILE *f, const char *s, int code) {
    if (code && !*s) {
        fputs("(empty)", f);
        return;
    }
    if (code)
        fputc('`', f);
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            fputs("\\|", f);
        else if (!code && (*p == '<' || *p == '>'))
            fputs(*p == '<' ? "&lt;" : "&gt;", f);
        else if (*p == '\n')
            fputc(' ', f);
        else
            fputc(*p, f);
    }
    if (code)
        fputc('`', f);
}

void conf_print_markdown(void *file, void (*kafka_more)(void *file)) {
    FILE *f = file;
    fputs(
        "# Configuration reference\n"
        "\n"
        "<!-- Generated from the table in lib/core/conf.c by `bin/raikoo config --markdown > "
        "docs/CONFIGURATION.md`;\n"
        "     do not edit by hand: a test fails when this file and the program's output differ. -->\n"
        "\n"
        "Every program (`raikoo`, the four workers, `raikoo-bench`) reads its settings in this order, each\n"
        "source overriding the one before:\n"
        "\n"
        "1. the built-in defaults below, which point at the local stack `make run` starts;\n"
        "2. a file of `key = value` lines given with `--config FILE` (or the `RAIKOO_CONFIG` variable); `#`\n"
        "   starts a comment line; an unknown key, a line without `=`, a directory or an unreadable file is "
        "an\n"
        "   error that names the file (and line), and the program exits with status 2;\n"
        "3. environment variables: `RAIKOO_` followed by the key in upper case with dots as underscores\n"
        "   (`db.url` is `RAIKOO_DB_URL`). Other `RAIKOO_*` variables are ignored by the programs, except\n"
        "   `RAIKOO_KAFKA_*` (see below).\n"
        "\n"
        "`raikoo config` prints every key with its variable and current value; passwords (in `db.url`,\n"
        "`smtp.password`, Kafka secrets) are shown as `***` there, in errors and in logs.\n"
        "\n"
        "## Settings\n"
        "\n"
        "| key | default | environment variable | meaning |\n"
        "|---|---|---|---|\n",
        f);
    for (const conf_key_t *k = conf_keys; k->key; k++) {
        char env[128];
        env_name(k->key, env, sizeof(env));
        fputs("| ", f);
        md_cell(f, k->key, 1);
        fputs(" | ", f);
        md_cell(f, k->def, 1);
        fputs(" | ", f);
        md_cell(f, env, 1);
        fputs(" | ", f);
        md_cell(f, k->help, 0);
        fputs(" |\n", f);
    }
    fputs(
        "\n"
        "## Kafka client properties\n"
        "\n"
        "Any key `kafka.<property>`, or variable `RAIKOO_KAFKA_<PROPERTY>` "
        "(`RAIKOO_KAFKA_SECURITY_PROTOCOL`\n"
        "sets `security.protocol`), is passed to librdkafka as a client property of every Kafka client the\n"
        "program makes; see librdkafka's CONFIGURATION.md for the names. Each is checked at start-up: a\n"
        "property librdkafka refuses stops the program with status 2 and an error that names the variable\n"
        "or the file and line it came from. This is why no variable of the scripts starts with\n"
        "`RAIKOO_KAFKA_`.\n",
        f);
    if (kafka_more)
        kafka_more(f);
    fputs("\n"
          "## Variables of the scripts\n"
          "\n"
          "Read by the scripts under `ops/` (not by the programs):\n"
          "\n"
          "| variable | default | meaning |\n"
          "|---|---|---|\n",
          f);
    for (const conf_script_var_t *v = conf_script_vars; v->name; v++) {
        fputs("| ", f);
        md_cell(f, v->name, 1);
        fputs(" | ", f);
        md_cell(f, v->def, 1);
        fputs(" | ", f);
        md_cell(f, v->help, 0);
        fputs(" |\n", f);
    }
}
