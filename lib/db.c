/* PostgreSQL helpers: connecting with clear errors, the schema migrations, parameterised queries. */
#include "db.h"

#include <stdio.h>
#include <string.h>

#include "embedded.h"

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

PGconn *db_connect(const conf_t *c, char *errstr, size_t errstr_size) {
    const char *url = conf_get(c, "db.url");
    PGconn *db = PQconnectdb(url ? url : "");
    if (PQstatus(db) != CONNECTION_OK) {
        char why[512];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(db));
        strip_newline(why);
        snprintf(errstr, errstr_size,
                 "cannot connect to PostgreSQL (db.url \"%s\"): %s; is the database running (ops/stack up)?",
                 url ? url : "", why);
        PQfinish(db);
        return NULL;
    }
    /* Quiet the server's NOTICEs (IF NOT EXISTS ...) on our stderr. */
    PQclear(PQexec(db, "SET client_min_messages = warning"));
    return db;
}

PGresult *db_exec(PGconn *db, const char *sql, int nparams, const char *const *params, char *errstr,
                  size_t errstr_size) {
    PGresult *res = PQexecParams(db, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    snprintf(errstr, errstr_size, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(db));
    strip_newline(errstr);
    if (!*errstr)
        snprintf(errstr, errstr_size, "%s", PQerrorMessage(db));
    PQclear(res);
    return NULL;
}

int db_cmd(PGconn *db, const char *sql, char *errstr, size_t errstr_size) {
    PGresult *res = db_exec(db, sql, 0, NULL, errstr, errstr_size);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

const char *db_sqlstate(const PGresult *res) {
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
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
        PGresult *res = db_exec(db, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, p, errstr,
                                errstr_size);
        if (!res)
            goto done;
        int seen = PQntuples(res) > 0;
        PQclear(res);
        if (seen)
            continue;
        char why[1024];
        if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
            goto done;
        res = PQexec(db, m->text); /* a migration is several statements: simple query protocol */
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(why, sizeof(why), "%s", PQresultErrorMessage(res));
            strip_newline(why);
            PQclear(res);
            db_cmd(db, "ROLLBACK", errstr, errstr_size);
            snprintf(errstr, errstr_size, "migration %s failed: %s", m->name, why);
            goto done;
        }
        PQclear(res);
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
