/* raikoo audit: the audit trail of an organization (who did what to whom, when, with what result), and
 * `raikoo audit verify`, which checks the hash chains (lib/svc/audit.c, docs/AUDIT.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "audit.h"
#include "cli.h"
#include "db.h"
#include "rfc3339.h"
#include "secret.h"
#include "text.h"

static const char SQL_AUDIT[] = "SELECT a.seq, " DB_RFC3339(
    "a.event_time") ", a.actor_id, u.email, a.event_type, a.subject, a.result,"
                    " a.event_id, a.correlation_id, a.event"
                    " FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id"
                    " WHERE a.org_id = $1 AND ($2::timestamptz IS NULL OR a.event_time >= $2::timestamptz)"
                    " ORDER BY a.seq LIMIT $3";

enum { A_SEQ, A_TIME, A_ACTOR, A_ACTOR_EMAIL, A_TYPE, A_SUBJECT, A_RESULT, A_ID, A_CORR, A_EVENT };

static int audit_usage(const char *problem) {
    fprintf(stderr, "raikoo audit: %s\n", problem);
    return cli_usage(cli_find("audit"), 1); /* 1: a mistake, on stderr */
}

/* "InviteNewUser" for a CommandRejected event (what was refused), else NULL; and the event's data. */
static json_t *event_data(const char *event) {
    json_t *ev = json_loads(event, 0, NULL);
    json_t *data = json_incref(json_object_get(ev, "data"));
    json_decref(ev);
    return data;
}

static void what_of(const char *type, json_t *data, char *out, size_t size) {
    const char *cmd = json_string_value(json_object_get(data, "command_type"));
    if (strcmp(type, "CommandRejected") == 0 && cmd)
        text_printf(out, size, "%s rejected", cmd);
    else
        text_printf(out, size, "%s", type);
}

typedef struct list_opts {
    const char *org, *since, *limit;
    int as_json;
    char since_utc[RFC3339_CANONICAL_SIZE]; /* --since as PostgreSQL gets it (rfc3339_canonical) */
} list_opts_t;

/* The command line of `raikoo audit` into o: 0, or the exit status of a usage mistake (reported). */
static int audit_list_options(int argc, char **argv, list_opts_t *lo) {
    static const struct option opts[] = {{"org", required_argument, NULL, 'o'},
                                         {"since", required_argument, NULL, 's'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (o == 'o')
            lo->org = optarg;
        else if (o == 's')
            lo->since = optarg;
        else if (o == 'l')
            lo->limit = optarg;
        else if (o == 'j')
            lo->as_json = 1;
        else
            return audit_usage(o == ':' ? "an option needs a value" : "unknown option");
    }
    char *end = NULL;
    long lim = strtol(lo->limit, &end, 10);
    if (optind != argc)
        return audit_usage("unexpected argument");
    if (!lo->org || !uuid_valid(lo->org))
        return audit_usage("--org UUID is required");
    if (lo->since && rfc3339_canonical(lo->since, lo->since_utc) != 0)
        return audit_usage("--since: not an RFC 3339 time of the years 0001 to 9999 (2026-11-29T08:00:00Z)");
    if (!end || *end || lim < 1 || lim > 1000000)
        return audit_usage("--limit: a number from 1 to 1000000");
    return EXIT_OK;
}

/* The table of `raikoo audit`: seq, time, actor, what, whom, result; row 0 holds the titles. */
enum { NCOL = 6 };

typedef struct table {
    char **cells; /* (rows + 1) * NCOL, owned */
    size_t rows;
    size_t width[NCOL];
} table_t;

static void table_init(table_t *t, size_t rows) {
    static const char *const titles[NCOL] = {"SEQ", "TIME", "ACTOR", "WHAT", "WHOM", "RESULT"};
    t->cells = xcalloc((rows + 1) * NCOL, sizeof(char *));
    t->rows = rows;
    for (int j = 0; j < NCOL; j++) {
        t->cells[j] = xstrdup(titles[j]);
        t->width[j] = utf8_width(titles[j]);
    }
}

/* Row i (from 1) of the table: the entry in v (the columns of SQL_AUDIT) and what it did. */
static void table_set(table_t *t, size_t i, const char *const *v, const char *what) {
    char *row[NCOL] = {xstrdup(v[A_SEQ]),
                       xstrdup(v[A_TIME] ? v[A_TIME] : "-"),
                       xstrdup(v[A_ACTOR_EMAIL] ? v[A_ACTOR_EMAIL]
                               : v[A_ACTOR]     ? v[A_ACTOR]
                                                : "system"),
                       xstrdup(what),
                       xstrdup(v[A_SUBJECT] ? v[A_SUBJECT] : "-"),
                       xstrdup(v[A_RESULT])};
    for (int j = 0; j < NCOL; j++) {
        t->cells[i * NCOL + j] = row[j];
        if (utf8_width(row[j]) > t->width[j])
            t->width[j] = utf8_width(row[j]);
    }
}

/* Prints the table with its columns lined up (the last one not padded). */
static void table_print(const table_t *t) {
    for (size_t i = 0; i <= t->rows; i++) {
        for (int j = 0; j < NCOL; j++) {
            const char *s = t->cells[i * NCOL + j];
            fputs(s, stdout);
            if (j + 1 < NCOL)
                printf("%*s", (int)(t->width[j] - utf8_width(s) + 2), "");
        }
        putchar('\n');
    }
}

static void table_free(table_t *t) {
    for (size_t k = 0; k < (t->rows + 1) * NCOL; k++)
        free(t->cells[k]);
    free(t->cells);
}

/* One entry of the --json list: the row in v, what it did and its event's data. */
static json_t *entry_json(const char *const *v, const char *what, json_t *data) {
    return json_pack("{s:I, s:s, s:s?, s:s?, s:s?, s:s, s:s, s:s?, s:s, s:s?, s:O?}", "seq",
                     (json_int_t)atoll(v[A_SEQ]), "event_id", v[A_ID], "time", v[A_TIME], "actor_id",
                     v[A_ACTOR], "actor_email", v[A_ACTOR_EMAIL], "type", v[A_TYPE], "what", what, "subject",
                     v[A_SUBJECT], "result", v[A_RESULT], "correlation_id", v[A_CORR], "data", data);
}

/* Prints the entries in res as a table, or with --json as one document about org_l. */
static void audit_print(const list_opts_t *lo, const char *org_l, const PGresult *res) {
    int n = PQntuples(res);
    json_t *list = json_array();
    table_t t;
    table_init(&t, (size_t)n);
    for (int i = 0; i < n; i++) {
        const char *v[10];
        for (int j = 0; j < 10; j++)
            v[j] = PQgetisnull(res, i, j) ? NULL : PQgetvalue(res, i, j);
        json_t *data = event_data(v[A_EVENT]);
        char what[256];
        what_of(v[A_TYPE], data, what, sizeof(what));
        if (lo->as_json)
            json_array_append_new(list, entry_json(v, what, data));
        else
            table_set(&t, (size_t)i + 1, v, what);
        json_decref(data);
    }
    if (lo->as_json) {
        cli_print_json(json_pack("{s:s, s:o}", "org_id", org_l, "entries", list));
    } else {
        json_decref(list);
        if (n == 0)
            printf("no audit entries for organization %s%s%s\n", org_l, lo->since ? " since " : "",
                   lo->since ? lo->since : "");
        else
            table_print(&t);
    }
    table_free(&t);
}

static int audit_list(int argc, char **argv, conf_t *c) {
    list_opts_t lo = {.limit = "1000"};
    int rc = audit_list_options(argc, argv, &lo);
    if (rc != EXIT_OK)
        return rc;
    char err[1024], org_l[UUID_BUF];
    for (int i = 0; i < 36; i++)
        org_l[i] = (char)(lo.org[i] >= 'A' && lo.org[i] <= 'Z' ? lo.org[i] + 32 : lo.org[i]);
    org_l[36] = '\0';
    PGconn *db = db_connect_migrated(c, err, sizeof(err));
    if (!db) {
        fprintf(stderr, "raikoo audit: %s\n", err);
        return EXIT_INFRA;
    }
    const char *p[3] = {org_l, lo.since ? lo.since_utc : NULL, lo.limit};
    PGresult *res = db_exec(db, SQL_AUDIT, 3, p, err, sizeof(err));
    if (!res) {
        fprintf(stderr, "raikoo audit: %s\n", err);
        PQfinish(db);
        return EXIT_INFRA;
    }
    audit_print(&lo, org_l, res);
    PQclear(res);
    PQfinish(db);
    fflush(stdout);
    return EXIT_ACCEPTED;
}

typedef struct verify_out {
    int as_json;
    json_t *findings;
} verify_out_t;

static void verify_report(void *arg, const char *org, long long seq, const char *event_id, const char *what) {
    verify_out_t *v = arg;
    if (v->as_json) {
        json_array_append_new(v->findings,
                              json_pack("{s:s, s:I, s:s?, s:s}", "org_id", org, "seq", (json_int_t)seq,
                                        "event_id", *event_id ? event_id : NULL, "problem", what));
    } else {
        printf("org %s seq %lld%s%s: %s\n", org, seq, *event_id ? " event " : "", event_id, what);
    }
}

static int audit_verify_cmd(int argc, char **argv, conf_t *c) {
    static const struct option opts[] = {
        {"org", required_argument, NULL, 'o'}, {"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    const char *org = NULL;
    int o;
    verify_out_t v = {0, NULL};
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (o == 'o')
            org = optarg;
        else if (o == 'j')
            v.as_json = 1;
        else
            return audit_usage(o == ':' ? "an option needs a value" : "unknown option");
    }
    if (optind != argc)
        return audit_usage("unexpected argument");
    if (org && !uuid_valid(org))
        return audit_usage("--org: not a UUID");
    char err[1024];
    PGconn *db = db_connect_migrated(c, err, sizeof(err));
    if (!db) {
        fprintf(stderr, "raikoo audit verify: %s\n", err);
        return EXIT_INFRA;
    }
    v.findings = json_array();
    size_t chains = 0, rows = 0, problems = 0;
    int rc = audit_verify(db, org, verify_report, &v, &chains, &rows, &problems, err, sizeof(err));
    PQfinish(db);
    if (rc != 0) {
        fprintf(stderr, "raikoo audit verify: %s\n", err);
        json_decref(v.findings);
        return EXIT_INFRA;
    }
    if (v.as_json) {
        cli_print_json(json_pack("{s:b, s:I, s:I, s:o}", "ok", problems == 0, "chains", (json_int_t)chains,
                                 "rows", (json_int_t)rows, "problems", v.findings));
    } else {
        json_decref(v.findings);
        if (problems == 0)
            printf("audit log verified: %zu chain(s), %zu row(s), every hash and head holds\n", chains, rows);
        else
            fprintf(stderr, "raikoo audit verify: %zu problem(s) in %zu chain(s) of %zu row(s)\n", problems,
                    chains, rows);
    }
    fflush(stdout);
    return problems == 0 ? EXIT_ACCEPTED : EXIT_REJECTED;
}

int cmd_audit(int argc, char **argv, conf_t *c) {
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return audit_verify_cmd(argc - 1, argv + 1, c);
    return audit_list(argc, argv, c);
}
