/* PostgreSQL helpers: connecting with clear errors, the schema migrations, parameterised queries. */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "text.h"
#include "worker.h"

/* The advisory lock key `raikoo migrate` holds: any constant of our own. */
#define MIGRATE_LOCK_KEY "7238017740"

static void strip_newline(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
}

static void prepared_forget(PGconn *db);

/* The one place a statement's outcome is checked and its error copied: res when it succeeded, else NULL
 * (res cleared) with the server's message, on one line, in errstr. */
static PGresult *result_or_error(PGconn *db, PGresult *res, char *errstr, size_t errstr_size) {
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    /* A statement the cache holds is not in this session: prepared again next time. */
    if (strcmp(db_sqlstate(res), "26000") == 0)
        prepared_forget(db);
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (primary && *db_sqlstate(res)) {
        /* The primary message and SQLSTATE only: the DETAIL of a refused row lists its values (a password
         * hash, a sealed code), a COPY's CONTEXT its line, and a data exception's message quotes the value
         * after ": ". */
        size_t n = strlen(primary);
        const char *quote = strncmp(db_sqlstate(res), "22", 2) == 0 ? strstr(primary, ": ") : NULL;
        if (quote)
            n = (size_t)(quote - primary);
        text_printf(errstr, errstr_size, "ERROR: %.*s (SQLSTATE %s)", (int)n, primary, db_sqlstate(res));
    } else {
        snprintf(errstr, errstr_size, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(db));
    }
    strip_newline(errstr);
    if (!*errstr) {
        snprintf(errstr, errstr_size, "%s", PQerrorMessage(db));
        strip_newline(errstr);
    }
    PQclear(res);
    return NULL;
}

PGconn *db_connect(const conf_t *c, char *errstr, size_t errstr_size) {
    const char *url = conf_get(c, "db.url");
    PGconn *db = PQconnectdb(url ? url : "");
    if (PQstatus(db) != CONNECTION_OK) {
        char why[512];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(db));
        strip_newline(why);
        /* Neither the connection string nor libpq's error (which may quote it) shows the password. */
        char *shown_url = conf_mask_conninfo(url, url), *shown_why = conf_mask_conninfo(why, url);
        snprintf(errstr, errstr_size,
                 "cannot connect to PostgreSQL (db.url \"%s\"): %s; is the database running (ops/stack up)?",
                 shown_url, shown_why);
        free(shown_url);
        free(shown_why);
        PQfinish(db);
        return NULL;
    }
    /* Quiet the server's NOTICEs (IF NOT EXISTS ...) on our stderr. */
    PQclear(PQexec(db, "SET client_min_messages = warning"));
    return db;
}

PGconn *db_connect_migrated(const conf_t *c, char *errstr, size_t errstr_size) {
    PGconn *db = db_connect(c, errstr, errstr_size);
    if (db && db_require_schema(db, errstr, errstr_size) != 0) {
        PQfinish(db);
        return NULL;
    }
    return db;
}

/* PostgreSQL as the workers of this process see it: one log line per change of state. */
static service_t pg_service = {.name = "PostgreSQL"};

PGconn *db_connect_wait(const conf_t *c, char *errstr, size_t errstr_size) {
    for (;;) {
        PGconn *db = db_connect(c, errstr, errstr_size);
        if (db) {
            service_up(&pg_service);
            if (db_require_schema(db, errstr, errstr_size) != 0) {
                PQfinish(db);
                return NULL;
            }
            return db;
        }
        service_down(&pg_service, errstr);
        if (!service_wait(&pg_service)) {
            snprintf(errstr, errstr_size, "stopped while waiting for PostgreSQL");
            return NULL;
        }
    }
}

int db_alive(PGconn *db) {
    if (PQstatus(db) != CONNECTION_OK) {
        PQreset(db);
        prepared_forget(db); /* a new session */
    }
    if (PQstatus(db) == CONNECTION_OK) {
        service_up(&pg_service);
        return 1;
    }
    char why[512];
    text_printf(why, sizeof(why), "%s", PQerrorMessage(db));
    strip_newline(why);
    service_down(&pg_service, why);
    return 0;
}

int db_wait(void) {
    return service_wait(&pg_service);
}

PGresult *db_exec(PGconn *db, const char *sql, int nparams, const char *const *params, char *errstr,
                  size_t errstr_size) {
    return result_or_error(db, PQexecParams(db, sql, nparams, NULL, params, NULL, NULL, 0), errstr,
                           errstr_size);
}

/* The statements prepared in the current session of each connection. A reset connection is a new server
 * session (another backend pid) without them, so the pid is part of the key. */
#define PREPARED_MAX 128
#define PREPARED_CONNS 8

typedef struct prepared {
    PGconn *conn;
    int pid;
    int n;
    const char *sql[PREPARED_MAX];
    unsigned long name[PREPARED_MAX]; /* sql[i] is prepared as "rk<name[i]>" */
} prepared_t;

static prepared_t prepared[PREPARED_CONNS];
/* Statement names are never used twice in a process: a session whose cache entry was dropped (evicted, or
 * forgotten after an error) may still hold its old statements, and preparing under one of their names would
 * fail (42P05) for as long as the session lasts. */
static unsigned long prepared_seq;

/* Forgets what db's session has prepared: after a reset (a new session, which may have the old one's backend
 * pid after a server restart), or when the server says a statement the cache holds does not exist (26000). */
static void prepared_forget(PGconn *db) {
    for (int i = 0; i < PREPARED_CONNS; i++)
        if (prepared[i].conn == db)
            prepared[i].n = 0;
}

static prepared_t *prepared_for(PGconn *db) {
    int pid = PQbackendPID(db);
    prepared_t *free_slot = NULL;
    for (int i = 0; i < PREPARED_CONNS; i++) {
        if (prepared[i].conn == db) {
            if (prepared[i].pid != pid) {
                prepared[i].pid = pid;
                prepared[i].n = 0;
            }
            return &prepared[i];
        }
        if (!prepared[i].conn && !free_slot)
            free_slot = &prepared[i];
    }
    if (!free_slot)
        free_slot = &prepared[(unsigned)pid % PREPARED_CONNS]; /* evict: it is only a cache */
    free_slot->conn = db;
    free_slot->pid = pid;
    free_slot->n = 0;
    return free_slot;
}

/* Prepares sql in db's session unless it was; name gets its statement name. NULL when it is (or now is)
 * prepared, and also, with name "", when the cache is full (the caller runs it unnamed); else the PQprepare
 * result saying why not (caller clears). */
static PGresult *prepare_once(PGconn *db, const char *sql, int nparams, char name[24]) {
    prepared_t *p = prepared_for(db);
    int i = 0;
    while (i < p->n && p->sql[i] != sql)
        i++;
    if (i < p->n) {
        snprintf(name, 24, "rk%lu", p->name[i]);
        return NULL;
    }
    if (p->n == PREPARED_MAX) {
        name[0] = '\0';
        return NULL;
    }
    unsigned long seq = ++prepared_seq;
    snprintf(name, 24, "rk%lu", seq);
    PGresult *res = PQprepare(db, name, sql, nparams, NULL);
    if (!res) /* no answer at all (the connection is gone) */
        return PQmakeEmptyPGresult(db, PGRES_FATAL_ERROR);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return res; /* the caller sees why (in an aborted transaction, say) */
    PQclear(res);
    p->sql[p->n] = sql;
    p->name[p->n++] = seq;
    return NULL;
}

PGresult *db_exec_prepared(PGconn *db, const char *sql, int nparams, const char *const *params) {
    char name[24];
    PGresult *failed = prepare_once(db, sql, nparams, name);
    if (failed)
        return failed;
    if (!name[0])
        return PQexecParams(db, sql, nparams, NULL, params, NULL, NULL, 0);
    PGresult *res = PQexecPrepared(db, name, nparams, params, NULL, NULL, 0);
    if (strcmp(db_sqlstate(res), "26000") == 0) /* (db_exec_cached's callers see it in result_or_error) */
        prepared_forget(db);
    return res;
}

PGresult *db_exec_cached(PGconn *db, const char *sql, int nparams, const char *const *params, char *errstr,
                         size_t errstr_size) {
    return result_or_error(db, db_exec_prepared(db, sql, nparams, params), errstr, errstr_size);
}

int db_run(PGconn *db, const char *sql, int nparams, const char *const *params, char *errstr,
           size_t errstr_size) {
    PGresult *res = db_exec_cached(db, sql, nparams, params, errstr, errstr_size);
    PQclear(res);
    return res ? 0 : -1;
}

int db_cmd(PGconn *db, const char *sql, char *errstr, size_t errstr_size) {
    /* The simple query protocol: sql may hold several statements (one round trip). */
    PGresult *res = result_or_error(db, PQexec(db, sql), errstr, errstr_size);
    PQclear(res);
    return res ? 0 : -1;
}

/* Reads what one pipeline of n statements returns: per statement its result and an end (NULL), then the
 * sync. Keeps the first failure's message in errstr. 0 when all succeeded and the sync came; -1 otherwise.
 * The connection leaves pipeline mode unless it was lost (a reset leaves it then). */
static int pipeline_collect(PGconn *db, db_stmt_t *stmts, size_t n, char *errstr, size_t errstr_size) {
    int rc = 0, synced = 0;
    size_t i = 0;
    for (int ended = 0; !synced;) {
        PGresult *res = PQgetResult(db);
        if (!res) {
            /* The end of one statement's results; twice in a row: nothing more is coming (connection lost). */
            if (ended++)
                break;
            i++;
            continue;
        }
        ended = 0;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            synced = 1;
        } else if (st == PGRES_PIPELINE_ABORTED) {
            PQclear(res); /* a statement after the failed one: it did not run */
        } else if (rc == 0 && !(res = result_or_error(db, res, errstr, errstr_size))) {
            rc = -1;
        } else if (rc == 0 && i < n && PQresultStatus(res) == PGRES_TUPLES_OK && !stmts[i].result) {
            stmts[i].result = res;
        } else {
            PQclear(res);
        }
    }
    if (!synced && rc == 0) {
        snprintf(errstr, errstr_size, "%s", PQerrorMessage(db));
        strip_newline(errstr);
        rc = -1;
    }
    if (synced)
        PQexitPipelineMode(db);
    return rc;
}

int db_pipeline(PGconn *db, db_stmt_t *stmts, size_t n, char *errstr, size_t errstr_size) {
    /* Each statement is prepared once per session (before its first pipeline: one round trip more, once),
     * so that the server neither parses nor plans it each time. */
    char(*names)[24] = xcalloc(n ? n : 1, sizeof(*names));
    for (size_t i = 0; i < n; i++) {
        stmts[i].result = NULL;
        PGresult *failed = prepare_once(db, stmts[i].sql, stmts[i].nparams, names[i]);
        if (failed) {
            free(names);
            PQclear(result_or_error(db, failed, errstr, errstr_size)); /* not a success: errstr, cleared */
            return -1;
        }
    }
    int sent = PQenterPipelineMode(db) == 1;
    for (size_t i = 0; sent && i < n; i++) {
        const db_stmt_t *st = &stmts[i];
        sent =
            (names[i][0] ? PQsendQueryPrepared(db, names[i], st->nparams, st->params, NULL, NULL, 0)
                         : PQsendQueryParams(db, st->sql, st->nparams, NULL, st->params, NULL, NULL, 0)) == 1;
    }
    free(names);
    /* What was sent is read up to the sync, whether or not all of it could be sent. */
    if (PQpipelineStatus(db) != PQ_PIPELINE_OFF && PQpipelineSync(db) != 1)
        sent = 0;
    int rc = sent ? 0 : -1;
    if (!sent) {
        snprintf(errstr, errstr_size, "%s", PQerrorMessage(db));
        strip_newline(errstr);
    }
    if (PQpipelineStatus(db) != PQ_PIPELINE_OFF && pipeline_collect(db, stmts, n, errstr, errstr_size) != 0)
        rc = -1;
    if (rc != 0)
        for (size_t i = 0; i < n; i++) {
            PQclear(stmts[i].result);
            stmts[i].result = NULL;
        }
    return rc;
}

/* Appends s to the COPY text in *buf (escaped: backslash, tab, newline, carriage return; NULL is \N), then
 * the separator sep. */
static void copy_append(char **buf, size_t *len, size_t *cap, const char *s, char sep) {
    size_t need = (s ? 2 * strlen(s) : 2) + 1;
    if (*len + need > *cap) {
        *cap = (*len + need) * 2;
        *buf = realloc(*buf, *cap);
        if (!*buf)
            abort(); /* out of memory */
    }
    char *p = *buf + *len;
    if (!s) {
        *p++ = '\\';
        *p++ = 'N';
    }
    for (; s && *s; s++) {
        char c = *s;
        if (c == '\\' || c == '\t' || c == '\n' || c == '\r') {
            *p++ = '\\';
            c = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
        }
        *p++ = c;
    }
    *p++ = sep;
    *len = (size_t)(p - *buf);
}

/* How much COPY text db_insert_rows gathers before it hands it to libpq. libpq's output buffer grows to the
 * largest message it was given and never shrinks: the outbox of a batch of 500 invitations sent in one piece
 * (about 1.5 MB, and our own buffer of it, doubled as it grew) held several MB of the command worker for good
 * (docs/BENCHMARKS.md, memory). In pieces of this size both stay small, and the server starts reading the
 * rows while the rest are written. */
#define COPY_CHUNK (64 * 1024)

int db_insert_rows(PGconn *db, const char *into, int ncols, const char *const *values, size_t nrows,
                   char *errstr, size_t errstr_size) {
    if (nrows == 0)
        return 0;
    /* COPY: the rows in order (a serial column numbers them in that order), with the same input
     * conversions, constraints and triggers as INSERT, in one round trip and without a statement to plan. */
    size_t sql_size = strlen(into) + 32;
    char *sql = xmalloc(sql_size);
    snprintf(sql, sql_size, "COPY %s FROM STDIN", into);
    PGresult *res = PQexec(db, sql);
    free(sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        PGresult *ok = result_or_error(db, res, errstr, errstr_size);
        if (ok) { /* neither COPY nor an error: not expected */
            snprintf(errstr, errstr_size, "COPY into %s did not start", into);
            PQclear(ok);
        }
        return -1;
    }
    PQclear(res);
    size_t len = 0, cap = 0;
    char *buf = NULL;
    int sent = 1;
    for (size_t i = 0; sent && i < nrows; i++) {
        for (int c = 0; c < ncols; c++)
            copy_append(&buf, &len, &cap, values[i * (size_t)ncols + (size_t)c], c + 1 < ncols ? '\t' : '\n');
        if (len >= COPY_CHUNK || i + 1 == nrows) {
            sent = PQputCopyData(db, buf, (int)len) == 1;
            len = 0;
        }
    }
    free(buf);
    if (PQputCopyEnd(db, sent ? NULL : "the rows could not be sent") != 1)
        sent = 0;
    int rc = 0;
    while ((res = PQgetResult(db)) != NULL) {
        if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK) {
            PGresult *ok = result_or_error(db, res, errstr, errstr_size); /* clears res */
            PQclear(ok);
            rc = -1;
        } else {
            PQclear(res);
        }
    }
    if (rc == 0 && !sent) {
        snprintf(errstr, errstr_size, "COPY into %s: %s", into, PQerrorMessage(db));
        strip_newline(errstr);
        rc = -1;
    }
    return rc;
}

const char *db_sqlstate(const PGresult *res) {
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

int db_error_transient(const char *sqlstate) {
    static const char *const classes[] = {"08", "40", "53", "55", "57", "58", "XX", NULL};
    if (!sqlstate || strlen(sqlstate) != 5)
        return 1;
    for (const char *const *c = classes; *c; c++)
        if (strncmp(sqlstate, *c, 2) == 0)
            return 1;
    return strcmp(sqlstate, "25P02") == 0;
}

int db_migrate(PGconn *db, int *applied, char *errstr, size_t errstr_size) {
    int rc = -1;
    *applied = 0;
    if (db_cmd(db, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", errstr, errstr_size) != 0)
        return -1;
    if (db_cmd(db,
               "CREATE TABLE IF NOT EXISTS schema_migrations ("
               " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
               errstr, errstr_size) != 0)
        goto done;
    for (const embedded_file_t *m = embedded_sql; m->name; m++) {
        const char *p[1] = {m->name};
        PGresult *res =
            db_exec(db, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, p, errstr, errstr_size);
        if (!res)
            goto done;
        int seen = PQntuples(res) > 0;
        PQclear(res);
        if (seen)
            continue;
        char why[1024];
        if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
            goto done;
        if (db_cmd(db, m->text, why, sizeof(why)) != 0) { /* several statements: simple query protocol */
            db_cmd(db, "ROLLBACK", errstr, errstr_size);
            snprintf(errstr, errstr_size, "migration %s failed: %s", m->name, why);
            goto done;
        }
        res = db_exec(db, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, p, errstr, errstr_size);
        if (!res) {
            db_cmd(db, "ROLLBACK", why, sizeof(why));
            goto done;
        }
        PQclear(res);
        if (db_cmd(db, "COMMIT", errstr, errstr_size) != 0)
            goto done;
        (*applied)++;
    }
    rc = 0;
done:;
    char ignore[256];
    db_cmd(db, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignore, sizeof(ignore));
    return rc;
}

int db_require_schema(PGconn *db, char *errstr, size_t errstr_size) {
    char why[512];
    PGresult *res = db_exec(db, "SELECT version FROM schema_migrations", 0, NULL, why, sizeof(why));
    if (!res) {
        snprintf(errstr, errstr_size, "the database has no schema yet: run `raikoo migrate` first");
        return -1;
    }
    for (const embedded_file_t *m = embedded_sql; m->name; m++) {
        int found = 0;
        for (int i = 0; i < PQntuples(res) && !found; i++)
            found = strcmp(PQgetvalue(res, i, 0), m->name) == 0;
        if (!found) {
            snprintf(errstr, errstr_size, "migration %s is not applied: run `raikoo migrate` first", m->name);
            PQclear(res);
            return -1;
        }
    }
    PQclear(res);
    return 0;
}

static char *array_column(const char *const *values, size_t nrows, int ncols, int col) {
    /* Worst case: every character escaped, plus quotes and a comma per element. */
    size_t cap = 3;
    for (size_t i = 0; i < nrows; i++) {
        const char *v = values[i * (size_t)ncols + (size_t)col];
        cap += v ? 2 * strlen(v) + 3 : 5;
    }
    char *out = xmalloc(cap);
    char *p = out;
    *p++ = '{';
    for (size_t i = 0; i < nrows; i++) {
        const char *v = values[i * (size_t)ncols + (size_t)col];
        if (i > 0)
            *p++ = ',';
        if (!v) {
            memcpy(p, "NULL", 4);
            p += 4;
            continue;
        }
        /* Always quoted, so that an empty string, "NULL", spaces, commas and braces stay values. */
        *p++ = '"';
        for (const char *s = v; *s; s++) {
            if (*s == '"' || *s == '\\')
                *p++ = '\\';
            *p++ = *s;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

char *db_array_literal(const char *const *values, size_t n) {
    return array_column(values, n, 1, 0);
}

void db_array_columns(const char *const *values, size_t nrows, int ncols, char **out) {
    for (int c = 0; c < ncols; c++)
        out[c] = array_column(values, nrows, ncols, c);
}
