/* The transactional outbox: rows gathered in memory while a transaction runs, written in one statement
 * before it commits; the relay publishes them. */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "event.h"
#include "text.h"

void outbox_add(outbox_t *ob, const char *topic, const char *key, const char *payload) {
    ob->rows = xgrow(ob->rows, ob->n + 1, &ob->cap, sizeof(*ob->rows), 64);
    ob->rows[ob->n].topic = xstrdup(topic);
    ob->rows[ob->n].key = xstrdup(key);
    ob->rows[ob->n].payload = xstrdup(payload);
    ob->n++;
}

void outbox_event(outbox_t *ob, const char *topic, const char *name, const char *key,
                  const char *correlationid, const char *actorid, json_t *data) {
    char type[128];
    snprintf(type, sizeof(type), "raikoo.event.%s.v1", name);
    json_t *ev = event_new(type, NULL, EVENT_SOURCE_WORKER, actorid, correlationid, data);
    char *text = event_dump(ev);
    outbox_add(ob, topic, key, text);
    free(text);
    json_decref(ev);
}

void outbox_truncate(outbox_t *ob, size_t mark) {
    while (ob->n > mark) {
        ob->n--;
        free(ob->rows[ob->n].topic);
        free(ob->rows[ob->n].key);
        free(ob->rows[ob->n].payload);
    }
}

int outbox_write(outbox_t *ob, PGconn *db, char *errstr, size_t errstr_size) {
    if (ob->n == 0)
        return 0;
    const char **values = xmalloc(ob->n * 3 * sizeof(*values));
    for (size_t i = 0; i < ob->n; i++) {
        values[i * 3] = ob->rows[i].topic;
        values[i * 3 + 1] = ob->rows[i].key;
        values[i * 3 + 2] = ob->rows[i].payload;
    }
    int rc = db_insert_rows(db, "outbox (topic, key, payload)", 3, values, ob->n, errstr, errstr_size);
    free(values);
    if (rc == 0)
        outbox_truncate(ob, 0);
    return rc;
}

/* The rows in their order (the outbox's ids number them in it, and the relay publishes by id). */
static const char SQL_INSERT_ROWS[] =
    "INSERT INTO outbox (topic, key, payload) SELECT t, k, p "
    "FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS r (t, k, p, n) ORDER BY n";

int outbox_write_commit(outbox_t *ob, PGconn *db, db_stmt_t *first, size_t nfirst, char *errstr,
                        size_t errstr_size) {
    db_stmt_t *st = xcalloc(nfirst + 2, sizeof(*st));
    size_t n = 0;
    for (size_t i = 0; i < nfirst; i++)
        st[n++] = first[i];
    int few = ob->n <= OUTBOX_PIPELINED_MAX, rc = -1;
    char *arrays[3] = {NULL, NULL, NULL};
    if (few && ob->n > 0) {
        const char **values = xmalloc(ob->n * 3 * sizeof(*values));
        for (size_t i = 0; i < ob->n; i++) {
            values[i * 3] = ob->rows[i].topic;
            values[i * 3 + 1] = ob->rows[i].key;
            values[i * 3 + 2] = ob->rows[i].payload;
        }
        db_array_columns(values, ob->n, 3, arrays);
        free(values);
        st[n++] = (db_stmt_t){.sql = SQL_INSERT_ROWS, .nparams = 3, .params = (const char *const *)arrays};
    }
    if (few)
        st[n++] = (db_stmt_t){.sql = "COMMIT"};
    if (n > 0 && db_pipeline(db, st, n, errstr, errstr_size) != 0)
        goto done;
    for (size_t i = 0; i < n; i++)
        PQclear(st[i].result);
    if (!few &&
        (outbox_write(ob, db, errstr, errstr_size) != 0 || db_cmd(db, "COMMIT", errstr, errstr_size) != 0))
        goto done;
    outbox_truncate(ob, 0);
    rc = 0;
done:
    for (int c = 0; c < 3; c++)
        free(arrays[c]);
    free(st);
    return rc;
}

int outbox_commit(outbox_t *ob, PGconn *db, int ok, char *errstr, size_t errstr_size) {
    int rc = 0;
    if (!ok || outbox_write_commit(ob, db, NULL, 0, errstr, errstr_size) != 0) {
        char ignore[256];
        db_cmd(db, "ROLLBACK", ignore, sizeof(ignore));
        rc = -1;
    }
    outbox_free(ob);
    return rc;
}

void outbox_free(outbox_t *ob) {
    outbox_truncate(ob, 0);
    free(ob->rows);
    memset(ob, 0, sizeof(*ob));
}
