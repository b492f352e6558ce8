/* The transactional outbox: rows gathered in memory while a transaction runs, written in one statement
 * before it commits; the relay publishes them. */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "event.h"

/* Rows per INSERT: three parameters each, well under the protocol's 65535. */
#define ROWS_PER_STATEMENT 2000

static char *dup_or_die(const char *s) {
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

void outbox_add(outbox_t *ob, const char *topic, const char *key, const char *payload) {
    if (ob->n == ob->cap) {
        ob->cap = ob->cap ? ob->cap * 2 : 64;
        ob->rows = realloc(ob->rows, ob->cap * sizeof(*ob->rows));
        if (!ob->rows)
            abort();
    }
    ob->rows[ob->n].topic = dup_or_die(topic);
    ob->rows[ob->n].key = dup_or_die(key);
    ob->rows[ob->n].payload = dup_or_die(payload);
    ob->n++;
}

void outbox_event(outbox_t *ob, const char *topic, const char *name, const char *key, const char *correlationid,
                  const char *actorid, json_t *data) {
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
    size_t done = 0;
    while (done < ob->n) {
        size_t rows = ob->n - done < ROWS_PER_STATEMENT ? ob->n - done : ROWS_PER_STATEMENT;
        /* "INSERT ... VALUES ($1,$2,$3),($4,$5,$6),..." */
        size_t cap = 64 + rows * 40;
        char *sql = malloc(cap);
        const char **params = malloc(rows * 3 * sizeof(*params));
        if (!sql || !params)
            abort();
        size_t len = (size_t)snprintf(sql, cap, "INSERT INTO outbox (topic, key, payload) VALUES ");
        for (size_t i = 0; i < rows; i++) {
            len += (size_t)snprintf(sql + len, cap - len, "%s($%zu,$%zu,$%zu)", i ? "," : "", i * 3 + 1, i * 3 + 2,
                                    i * 3 + 3);
            params[i * 3] = ob->rows[done + i].topic;
            params[i * 3 + 1] = ob->rows[done + i].key;
            params[i * 3 + 2] = ob->rows[done + i].payload;
        }
        PGresult *res = db_exec(db, sql, (int)(rows * 3), params, errstr, errstr_size);
        free(sql);
        free(params);
        if (!res)
            return -1;
        PQclear(res);
        done += rows;
    }
    outbox_truncate(ob, 0);
    return 0;
}

void outbox_free(outbox_t *ob) {
    outbox_truncate(ob, 0);
    free(ob->rows);
    memset(ob, 0, sizeof(*ob));
}
