/* PostgreSQL helpers: connecting with clear errors, the schema migrations, parameterised queries. */
#ifndef RAIKOO_DB_H
#define RAIKOO_DB_H

#include <stddef.h>
#include <libpq-fe.h>

#include "conf.h"

/* Connects with the db.url setting. Returns a new connection, or NULL with errstr saying where it tried
 * and what to do. */
PGconn *db_connect(const conf_t *c, char *errstr, size_t errstr_size);

/* db_connect, then db_require_schema: what every worker and read command starts with. NULL with errstr
 * (the connection closed) when either fails. */
PGconn *db_connect_migrated(const conf_t *c, char *errstr, size_t errstr_size);

/* db_connect_migrated for a long-running worker: while PostgreSQL cannot be reached, waits for it (one
 * log line when it starts waiting, one when the database answers; bounded backoff) instead of failing.
 * NULL with errstr only when the schema is not migrated or shutdown was asked while waiting
 * (worker_running() then says 0). */
PGconn *db_connect_wait(const conf_t *c, char *errstr, size_t errstr_size);

/* For a worker whose statement just failed, or before it uses db: 1 when the connection is up (logging
 * once that PostgreSQL is back, if it was away); else resets it once and, when that fails too, logs once
 * that PostgreSQL went away and returns 0: the caller waits with db_wait() and tries again. */
int db_alive(PGconn *db);

/* Waits before the next attempt to reach PostgreSQL (bounded backoff); returns worker_running(). */
int db_wait(void);

/* Applies every embedded migration not yet recorded, each in its own transaction, under an advisory
 * lock so that two processes at once are harmless. *applied gets how many ran. */
int db_migrate(PGconn *db, int *applied, char *errstr, size_t errstr_size);

/* Fails, saying to run `raikoo migrate`, unless every embedded migration is recorded. */
int db_require_schema(PGconn *db, char *errstr, size_t errstr_size);

/* Runs one parameterised statement (text parameters; NULL entries are SQL NULL). Returns the result
 * (caller frees with PQclear) when it succeeded, else NULL with the server's message in errstr. */
PGresult *db_exec(PGconn *db, const char *sql, int nparams, const char *const *params, char *errstr,
                  size_t errstr_size);

/* Like PQexecParams, but sql (a string that lives as long as the program: a constant) is prepared once
 * per database session and then executed by name, which spares the server parsing and planning it again.
 * Returns the result whatever its status (caller checks and frees). */
PGresult *db_exec_prepared(PGconn *db, const char *sql, int nparams, const char *const *params);

/* db_exec for a constant sql (see db_exec_prepared): prepared once per session. */
PGresult *db_exec_cached(PGconn *db, const char *sql, int nparams, const char *const *params, char *errstr,
                         size_t errstr_size);

/* db_exec_cached for a statement whose rows do not matter: 0 when it succeeded, else -1 with errstr. */
int db_run(PGconn *db, const char *sql, int nparams, const char *const *params, char *errstr,
           size_t errstr_size);

/* Runs statements without parameters or result rows (BEGIN, COMMIT, SAVEPOINT ...), several at once
 * when separated by semicolons (one round trip). */
int db_cmd(PGconn *db, const char *sql, char *errstr, size_t errstr_size);

/* Inserts nrows rows of ncols text values (values[row * ncols + col]; NULL is SQL NULL), in that order, with
 * one COPY (one round trip, nothing to plan). into is "table (col, col, ...)": a constant of the caller's,
 * never a value from a message. */
int db_insert_rows(PGconn *db, const char *into, int ncols, const char *const *values, size_t nrows,
                   char *errstr, size_t errstr_size);

/* One statement of a pipeline (db_pipeline): sql (no semicolon-separated list) with text parameters. */
typedef struct db_stmt {
    const char *sql;
    int nparams;
    const char *const *params;
    PGresult
        *result; /* db_pipeline's: the rows of a statement that returned rows (caller clears), else NULL */
} db_stmt_t;
/* Runs n statements with libpq's pipeline mode: sent together and their results read together, one round
 * trip for all instead of one each. They run in order; once one fails the rest do not run. 0 when every one
 * succeeded; -1 with the first failure's message in errstr (every result cleared), as db_exec would give it.
 * A transaction the statements began or were in is then aborted, or gone with the connection: the caller
 * rolls back as after any failed statement. */
int db_pipeline(PGconn *db, db_stmt_t *stmts, size_t n, char *errstr, size_t errstr_size);
/* A one-dimensional PostgreSQL array literal of n text values ("{\"a\",NULL}"; a NULL entry is SQL NULL),
 * to pass as one parameter and cast in the statement ($1::uuid[]), for set-based statements over
 * unnest(). Returns a new string (free()). */
char *db_array_literal(const char *const *values, size_t n);
/* db_array_literal of every column of nrows rows of ncols values (values[row * ncols + col]), the same table
 * db_insert_rows takes: out[col] gets column col's (ncols new strings, free() each). */
void db_array_columns(const char *const *values, size_t nrows, int ncols, char **out);

/* SQL that formats a timestamptz column as RFC 3339 UTC with milliseconds ("2026-12-04T20:00:00.123Z"), the
 * form every message carries: the one way statements of this code base write a time. */
#define DB_RFC3339(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* A C integer constant as an SQL literal, so that a limit named in C is the limit in the statement:
 * "failed_attempts < " DB_INT(MAX_CODE_ATTEMPTS). The macro's value must be a plain number. */
#define DB_INT(n) DB_INT_(n)
#define DB_INT_(n) #n

/* The SQLSTATE of a failed result ("" when none). */
const char *db_sqlstate(const PGresult *res);

/* 1 when a statement that failed with this SQLSTATE may well succeed if run again, because the failure is
 * the server's or the moment's, not the data's: no SQLSTATE at all (the connection failed), connection
 * exceptions (08), transaction rollbacks (40: serialization failure, deadlock), insufficient resources (53),
 * object not in prerequisite state (55: lock not available), operator intervention
 * (57: admin or crash shutdown, cannot connect now, query cancelled), system errors (58), internal errors
 * (XX), and an aborted transaction (25P02). 0 for the rest (data exceptions 22, integrity constraints 23,
 * program limits 54 such as an index row too large, syntax or access rule 42, ...): running it again fails
 * the same way. */
int db_error_transient(const char *sqlstate);

#endif
