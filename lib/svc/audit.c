/* The audit trail: topic.events into the append-only, hash-chained audit_log (see audit.h). */
#include "audit.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <sodium.h>

#include "consumer.h"
#include "db.h"
#include "event.h"
#include "exitstatus.h"
#include "log.h"
#include "notify.h"
#include "rfc3339.h"
#include "secret.h"
#include "text.h"
#include "worker.h"

#define AUDIT_SUBJECT_MAX 320
#define AUDIT_BATCH_MAX 500
#define AUDIT_BATCH_WAIT_MS 20

/* ---- SQL, all of it ---- */

/* Every chain of the batch gets its head row (new chains start at seq 0 with a zero hash); the array is
 * sorted, so two writers create and lock heads in one order and never deadlock. */
static const char SQL_HEADS_ENSURE[] =
    "INSERT INTO audit_heads (org_id, seq, hash)"
    " SELECT o, 0, '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea"
    " FROM unnest($1::uuid[]) AS o ORDER BY o ON CONFLICT (org_id) DO NOTHING";
static const char SQL_HEADS_LOCK[] = "SELECT org_id, seq, encode(hash, 'hex') FROM audit_heads"
                                     " WHERE org_id = ANY ($1::uuid[]) ORDER BY org_id FOR UPDATE";
/* After the heads are locked (a new statement, so a new snapshot under READ COMMITTED): what another
 * writer recorded before it let the heads go. */
static const char SQL_SEEN[] = "SELECT event_id FROM audit_log WHERE event_id = ANY ($1::uuid[])";
/* A row beyond the head (inserted by hand) must not stop the worker: new rows go after it. */
static const char SQL_LAST_SEQ[] =
    "SELECT org_id, max(seq) FROM audit_log WHERE org_id = ANY ($1::uuid[]) GROUP BY org_id";
static const char SQL_INSERT[] =
    "INSERT INTO audit_log (org_id, seq, event_id, event_type, event_time, actor_id, correlation_id, "
    "subject, result, event, hash)"
    " SELECT o, s, e, t, audit_time(tm), a, c, sub, r, ev, decode(h, 'hex')"
    " FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::uuid[], "
    "$8::text[], $9::text[], $10::text[], $11::text[]) AS t(o, s, e, t, tm, a, c, sub, r, ev, h)";
static const char SQL_HEADS_MOVE[] =
    "UPDATE audit_heads h SET seq = v.s, hash = decode(v.h, 'hex')"
    " FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS v(o, s, h) WHERE h.org_id = v.o";

/* ---- Entries ---- */

static const char *obj_str(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

static void lower_uuid(char out[UUID_BUF], const char *s) {
    for (int i = 0; i < 36; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[36] = '\0';
}

static char *uuid_or_null(const char *s) {
    if (!s || !uuid_valid(s))
        return NULL;
    char buf[UUID_BUF];
    lower_uuid(buf, s);
    return xstrdup(buf);
}

void audit_entry_clear(audit_entry_t *e) {
    free(e->type);
    free(e->time);
    free(e->actor_id);
    free(e->correlation_id);
    free(e->subject);
    free(e->result);
    free(e->event);
    memset(e, 0, sizeof(*e));
}

int audit_entry_parse(const void *payload, size_t len, audit_entry_t *e, char *why, size_t why_size) {
    memset(e, 0, sizeof(*e));
    json_error_t jerr;
    json_t *ev = json_loadb(payload ? payload : "", len, 0, &jerr);
    if (!json_is_object(ev)) {
        if (ev)
            text_printf(why, why_size, "not a JSON object");
        else
            text_printf(why, why_size, "not JSON (at byte %d)", jerr.position);
        json_decref(ev);
        return -1;
    }
    const char *id = obj_str(ev, "id"), *type = obj_str(ev, "type");
    if (!id || !uuid_valid(id) || !type || !*type) {
        text_printf(why, why_size, "not a CloudEvent: %s",
                    !id || !uuid_valid(id) ? "no uuid \"id\"" : "no \"type\"");
        json_decref(ev);
        return -1;
    }
    lower_uuid(e->event_id, id);
    json_t *data = json_object_get(ev, "data");
    const char *org = json_is_object(data) ? obj_str(data, "org_id") : NULL;
    if (org && uuid_valid(org))
        lower_uuid(e->org_id, org);
    else
        memcpy(e->org_id, AUDIT_NO_ORG, sizeof(e->org_id));

    const char *t = type;
    size_t tl = strlen(t);
    if (strncmp(t, "raikoo.event.", 13) == 0 && tl > 16 && strcmp(t + tl - 3, ".v1") == 0)
        e->type = xstrndup(t + 13, tl - 16);
    else
        e->type = utf8_clean_dup(t, tl, 200);
    /* In canonical form (rfc3339_canonical): PostgreSQL (audit_time) reads the instant our parser read,
     * which verification compares with (a fraction of more than six digits, say, is not rounded there). */
    const char *tm = obj_str(ev, "time");
    char tm_utc[RFC3339_CANONICAL_SIZE];
    e->time = tm && rfc3339_canonical(tm, tm_utc) == 0 ? xstrdup(tm_utc) : NULL;
    e->actor_id = uuid_or_null(obj_str(ev, "actorid"));
    e->correlation_id = uuid_or_null(obj_str(ev, "correlationid"));

    const char *subject = NULL;
    static const char *const subject_keys[] = {"email", "user_id", "invitation_id", "name", "org_id", NULL};
    for (int i = 0; json_is_object(data) && subject_keys[i] && !subject; i++)
        subject = obj_str(data, subject_keys[i]);
    e->subject = subject ? utf8_clean_dup(subject, strlen(subject), AUDIT_SUBJECT_MAX) : NULL;

    const char *result = "ok";
    if (strcmp(e->type, "CommandRejected") == 0) {
        const char *code = json_is_object(data) ? obj_str(data, "result_code") : NULL;
        result = code && *code ? code : "rejected";
    } else if (strcmp(e->type, "InvitationEmailFailed") == 0) {
        result = "failed";
    } else if (strcmp(e->type, "InvitationCodeRejected") == 0) {
        result = "code_rejected";
    }
    e->result = utf8_clean_dup(result, strlen(result), 100);
    e->event = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(ev);
    if (!e->event) { /* jansson fails only when out of memory */
        audit_entry_clear(e);
        text_printf(why, why_size, "cannot serialise the event");
        return -1;
    }
    return 0;
}

void audit_hash(const unsigned char prev[AUDIT_HASH_SIZE], const char *event, size_t len,
                unsigned char out[AUDIT_HASH_SIZE]) {
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, prev, AUDIT_HASH_SIZE);
    crypto_hash_sha256_update(&st, (const unsigned char *)event, len);
    crypto_hash_sha256_final(&st, out);
}

static int hex_decode(const char *hex, unsigned char out[AUDIT_HASH_SIZE]) {
    size_t bin_len = 0;
    if (sodium_hex2bin(out, AUDIT_HASH_SIZE, hex, strlen(hex), NULL, &bin_len, NULL) != 0 ||
        bin_len != AUDIT_HASH_SIZE)
        return -1;
    return 0;
}

/* ---- Appending ---- */

typedef struct chain {
    const char *org; /* borrowed from an entry */
    long long seq;
    unsigned char hash[AUDIT_HASH_SIZE];
    int moved;
} chain_t;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The chain of org: a->chains follows a->orgs, which is sorted. NULL when org is not among them. */
static chain_t *chain_find(chain_t *chains, const char **orgs, size_t n, const char *org) {
    const char **at = bsearch(&org, orgs, n, sizeof(*orgs), cmp_str);
    return at ? &chains[at - orgs] : NULL;
}

/* Sorted, distinct organizations of the entries (borrowed strings). */
static size_t orgs_of(const audit_entry_t *entries, size_t n, const char **orgs) {
    for (size_t i = 0; i < n; i++)
        orgs[i] = entries[i].org_id;
    qsort(orgs, n, sizeof(*orgs), cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(orgs[k - 1], orgs[i]) != 0)
            orgs[k++] = orgs[i];
    return k;
}

/* What one audit_append call works with: the batch's chains, the events already recorded, and the columns
 * of the rows to insert (one array per column). */
enum { C_ORG, C_SEQ, C_ID, C_TYPE, C_TIME, C_ACTOR, C_CORR, C_SUBJ, C_RESULT, C_EVENT, C_HASH, NCOL };

typedef struct append {
    const audit_entry_t *entries;
    size_t n;
    const char **orgs; /* sorted, distinct (borrowed from entries) */
    size_t norgs;
    chain_t *chains; /* one per organization, in the order of orgs */
    char **seen;     /* event ids recorded before or earlier in this batch */
    size_t nseen;
    strmap_t seen_ids; /* the same, to look up (borrowed from seen) */
    const char **col[NCOL];
    char (*seqs)[24];
    char (*hashes)[AUDIT_HASH_SIZE * 2 + 1];
    char *org_array; /* orgs as a PostgreSQL array literal */
} append_t;

static void append_init(append_t *a, const audit_entry_t *entries, size_t n) {
    memset(a, 0, sizeof(*a));
    a->entries = entries;
    a->n = n;
    a->orgs = xcalloc(n, sizeof(*a->orgs));
    a->norgs = orgs_of(entries, n, a->orgs);
    a->chains = xcalloc(a->norgs, sizeof(*a->chains));
    a->seen = xcalloc(n, sizeof(*a->seen));
    strmap_init(&a->seen_ids, 0);
    for (int j = 0; j < NCOL; j++)
        a->col[j] = xcalloc(n, sizeof(const char *));
    a->seqs = xcalloc(n, 24);
    a->hashes = xcalloc(n, AUDIT_HASH_SIZE * 2 + 1);
    a->org_array = db_array_literal(a->orgs, a->norgs);
}

static void append_free(append_t *a) {
    strmap_free(&a->seen_ids);
    for (size_t i = 0; i < a->nseen; i++)
        free(a->seen[i]);
    for (int j = 0; j < NCOL; j++)
        free(a->col[j]);
    free(a->seen);
    free(a->seqs);
    free(a->hashes);
    free(a->org_array);
    free(a->chains);
    free(a->orgs);
}

/* Notes event id as recorded (a copy; a->seen holds room for one per entry of the batch). */
static void seen_add(append_t *a, const char *id) {
    a->seen[a->nseen] = xstrdup(id);
    strmap_add(&a->seen_ids, a->seen[a->nseen++], NULL);
}

/* Creates the heads of new chains and locks every head of the batch, read into a->chains. */
static int append_lock_heads(PGconn *db, append_t *a, char *errstr, size_t errstr_size) {
    const char *p1[1] = {a->org_array};
    if (db_run(db, SQL_HEADS_ENSURE, 1, p1, errstr, errstr_size) != 0)
        return -1;
    PGresult *res = db_exec_cached(db, SQL_HEADS_LOCK, 1, p1, errstr, errstr_size);
    if (!res)
        return -1;
    int rc = 0;
    for (int r = 0; r < PQntuples(res) && (size_t)r < a->norgs && rc == 0; r++) {
        chain_t *ch = &a->chains[r];
        ch->org = a->orgs[r];
        ch->seq = atoll(PQgetvalue(res, r, 1));
        if (strcmp(PQgetvalue(res, r, 0), a->orgs[r]) != 0 ||
            hex_decode(PQgetvalue(res, r, 2), ch->hash) != 0) {
            text_printf(errstr, errstr_size, "audit_heads: unexpected row for %s", a->orgs[r]);
            rc = -1;
        }
    }
    if (rc == 0 && (size_t)PQntuples(res) != a->norgs) {
        text_printf(errstr, errstr_size, "audit_heads: %d head(s) for %zu organization(s)", PQntuples(res),
                    a->norgs);
        rc = -1;
    }
    PQclear(res);
    return rc;
}

/* Which events of the batch another writer recorded before it let the heads go (into a->seen). */
static int append_read_seen(PGconn *db, append_t *a, char *errstr, size_t errstr_size) {
    const char **ids = xcalloc(a->n, sizeof(*ids));
    for (size_t i = 0; i < a->n; i++)
        ids[i] = a->entries[i].event_id;
    char *id_array = db_array_literal(ids, a->n);
    const char *pid[1] = {id_array};
    PGresult *res = db_exec_cached(db, SQL_SEEN, 1, pid, errstr, errstr_size);
    free(id_array);
    free(ids);
    if (!res)
        return -1;
    for (int r = 0; r < PQntuples(res); r++)
        seen_add(a, PQgetvalue(res, r, 0));
    PQclear(res);
    return 0;
}

/* Chains with rows beyond their head (inserted by hand): new rows go after the last of them. */
static int append_skip_foreign_rows(PGconn *db, append_t *a, char *errstr, size_t errstr_size) {
    const char *p1[1] = {a->org_array};
    PGresult *res = db_exec_cached(db, SQL_LAST_SEQ, 1, p1, errstr, errstr_size);
    if (!res)
        return -1;
    for (int r = 0; r < PQntuples(res); r++) {
        chain_t *ch = chain_find(a->chains, a->orgs, a->norgs, PQgetvalue(res, r, 0));
        long long last = atoll(PQgetvalue(res, r, 1));
        if (ch && last > ch->seq) {
            log_warn(
                NULL,
                "audit chain %s: rows beyond its head (seq %lld > %lld), not written by an audit worker; "
                "new rows go after them (raikoo audit verify --org %s names them)",
                ch->org, last, ch->seq, ch->org);
            ch->seq = last;
        }
    }
    PQclear(res);
    return 0;
}

/* Chains each event not seen before onto its organization's chain, into the columns; returns how many. */
static size_t append_chain_rows(append_t *a) {
    size_t k = 0;
    for (size_t i = 0; i < a->n; i++) {
        const audit_entry_t *e = &a->entries[i];
        if (strmap_find(&a->seen_ids, e->event_id))
            continue;
        seen_add(a, e->event_id);
        chain_t *ch = chain_find(a->chains, a->orgs, a->norgs, e->org_id);
        ch->seq++;
        audit_hash(ch->hash, e->event, strlen(e->event), ch->hash);
        ch->moved = 1;
        snprintf(a->seqs[k], 24, "%lld", ch->seq);
        sodium_bin2hex(a->hashes[k], AUDIT_HASH_SIZE * 2 + 1, ch->hash, AUDIT_HASH_SIZE);
        const char *row[NCOL] = {e->org_id, a->seqs[k],  e->event_id,       e->type,
                                 e->time,   e->actor_id, e->correlation_id, e->subject,
                                 e->result, e->event,    a->hashes[k]};
        for (int j = 0; j < NCOL; j++)
            a->col[j][k] = row[j];
        k++;
    }
    return k;
}

/* Runs sql with one array literal per column of cols (k rows each). */
static int run_arrays(PGconn *db, const char *sql, const char **const *cols, int ncols, size_t k,
                      char *errstr, size_t errstr_size) {
    char *arrays[NCOL] = {0};
    for (int j = 0; j < ncols; j++)
        arrays[j] = db_array_literal(cols[j], k);
    int rc = db_run(db, sql, ncols, (const char *const *)arrays, errstr, errstr_size);
    for (int j = 0; j < ncols; j++)
        free(arrays[j]);
    return rc;
}

/* Inserts the k rows in the columns, then moves the heads of the chains that grew. */
static int append_write(PGconn *db, append_t *a, size_t k, char *errstr, size_t errstr_size) {
    if (run_arrays(db, SQL_INSERT, a->col, NCOL, k, errstr, errstr_size) != 0)
        return -1;
    /* The heads that moved: reuse the first columns' buffers. */
    size_t m = 0;
    for (size_t i = 0; i < a->norgs; i++) {
        if (!a->chains[i].moved)
            continue;
        a->col[C_ORG][m] = a->chains[i].org;
        snprintf(a->seqs[m], 24, "%lld", a->chains[i].seq);
        a->col[C_SEQ][m] = a->seqs[m];
        sodium_bin2hex(a->hashes[m], AUDIT_HASH_SIZE * 2 + 1, a->chains[i].hash, AUDIT_HASH_SIZE);
        a->col[C_HASH][m] = a->hashes[m];
        m++;
    }
    const char **const heads[3] = {a->col[C_ORG], a->col[C_SEQ], a->col[C_HASH]};
    return run_arrays(db, SQL_HEADS_MOVE, heads, 3, m, errstr, errstr_size);
}

int audit_append(PGconn *db, const audit_entry_t *entries, size_t n, size_t *added, char *errstr,
                 size_t errstr_size) {
    *added = 0;
    if (n == 0)
        return 0;
    append_t a;
    append_init(&a, entries, n);
    size_t k = 0;
    int rc = db_cmd(db, "BEGIN", errstr, errstr_size);
    if (rc == 0) {
        if (append_lock_heads(db, &a, errstr, errstr_size) != 0 ||
            append_read_seen(db, &a, errstr, errstr_size) != 0 ||
            append_skip_foreign_rows(db, &a, errstr, errstr_size) != 0 ||
            ((k = append_chain_rows(&a)) > 0 && append_write(db, &a, k, errstr, errstr_size) != 0) ||
            db_cmd(db, "COMMIT", errstr, errstr_size) != 0) {
            char ignored[64];
            db_cmd(db, "ROLLBACK", ignored, sizeof(ignored));
            rc = -1;
        } else {
            *added = k;
        }
    }
    append_free(&a);
    return rc;
}

/* ---- Verifying ---- */

static const char SQL_VERIFY_HEADS[] = "SELECT org_id, seq, encode(hash, 'hex') FROM audit_heads"
                                       " WHERE $1::uuid IS NULL OR org_id = $1 ORDER BY org_id";
static const char SQL_VERIFY_ROWS[] =
    "DECLARE audit_rows NO SCROLL CURSOR FOR"
    " SELECT org_id, seq, event_id, event, encode(hash, 'hex'), event_type,"
    "  floor(extract(epoch FROM event_time))::bigint, actor_id, correlation_id, subject, result"
    " FROM audit_log WHERE $1::uuid IS NULL OR org_id = $1 ORDER BY org_id, seq";

typedef struct walk {
    audit_report_fn *report;
    void *arg;
    size_t problems, chains;
    char org[UUID_BUF];
    long long next_seq; /* the seq the next row should have */
    long long last_seq; /* of the last row read, 0 before the first */
    char last_id[UUID_BUF];
    unsigned char prev[AUDIT_HASH_SIZE];  /* the stored hash of the last row (zeros before the first) */
    unsigned char prev2[AUDIT_HASH_SIZE]; /* the one before it */
    int have_prev2;
    PGresult *heads; /* the heads of the chains walked, in org order */
    int nheads, hi;  /* hi: the next head to compare */
} walk_t;

static void finding(walk_t *w, const char *org, long long seq, const char *event_id, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void finding(walk_t *w, const char *org, long long seq, const char *event_id, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    text_vprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    w->problems++;
    w->report(w->arg, org, seq, event_id ? event_id : "", what);
}

static int str_eq(const char *a, const char *b) {
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static const char *cell(const PGresult *res, int r, int c) {
    return PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
}

/* The end of w's chain against its head row (head_seq -1: no head). */
static void chain_end(walk_t *w, long long head_seq, const unsigned char *head_hash) {
    if (!w->org[0])
        return;
    w->chains++;
    if (head_seq < 0) {
        finding(w, w->org, 0, NULL,
                "the chain has rows but no head in audit_heads: rows inserted by hand, or its head deleted");
    } else if (head_seq > w->last_seq) {
        if (w->last_seq == 0)
            finding(w, w->org, head_seq, NULL, "every row of the chain (seq 1 to %lld) was deleted",
                    head_seq);
        else
            finding(
                w, w->org, w->last_seq + 1, NULL,
                "row(s) seq %lld to %lld deleted: the head says the chain ends at %lld, the last row is %lld",
                w->last_seq + 1, head_seq, head_seq, w->last_seq);
    } else if (head_seq < w->last_seq) {
        finding(
            w, w->org, head_seq + 1, NULL,
            "row(s) seq %lld to %lld inserted: beyond the chain's head (seq %lld), not written by an audit "
            "worker",
            head_seq + 1, w->last_seq, head_seq);
    } else if (memcmp(head_hash, w->prev, AUDIT_HASH_SIZE) != 0) {
        finding(
            w, w->org, w->last_seq, w->last_id,
            "the last row's hash differs from the chain's head: the row was replaced or its hash changed");
    }
    w->org[0] = '\0';
}

/* One row of the chain in w: its place, its hash, and that its columns say what its event says. */
static void verify_row(walk_t *w, const PGresult *res, int r) {
    const char *org = PQgetvalue(res, r, 0), *id = PQgetvalue(res, r, 2), *event = PQgetvalue(res, r, 3);
    long long seq = atoll(PQgetvalue(res, r, 1));
    unsigned char stored[AUDIT_HASH_SIZE], h[AUDIT_HASH_SIZE];
    int hash_ok = hex_decode(PQgetvalue(res, r, 4), stored) == 0;
    size_t len = (size_t)PQgetlength(res, r, 3);
    int gap = seq != w->next_seq;
    if (gap)
        finding(w, org, w->next_seq, NULL,
                "row(s) seq %lld to %lld deleted: the chain goes from %lld to %lld", w->next_seq, seq - 1,
                w->next_seq - 1, seq);
    audit_hash(w->prev, event, len, h);
    if (!gap && (!hash_ok || memcmp(h, stored, AUDIT_HASH_SIZE) != 0)) {
        unsigned char h2[AUDIT_HASH_SIZE];
        if (w->have_prev2)
            audit_hash(w->prev2, event, len, h2);
        if (hash_ok && w->have_prev2 && memcmp(h2, stored, AUDIT_HASH_SIZE) == 0)
            finding(
                w, org, w->last_seq, w->last_id,
                "row inserted: the next row (seq %lld) follows the row before it, as if it were not there",
                seq);
        else
            finding(w, org, seq, id,
                    "row changed: its hash does not match its event and the previous row's hash");
    } else {
        /* The hash holds: the columns beside the event must say what the event says. */
        audit_entry_t e;
        char why[128];
        const char *what = NULL;
        if (audit_entry_parse(event, len, &e, why, sizeof(why)) != 0) {
            what = "event";
        } else {
            time_t t = 0;
            long long stored_t = cell(res, r, 6) ? atoll(cell(res, r, 6)) : -1;
            long long event_t = e.time && rfc3339_parse(e.time, &t) == 0 ? (long long)t : -1;
            if (strcmp(e.event_id, id) != 0)
                what = "event_id";
            else if (strcmp(e.org_id, org) != 0)
                what = "org_id";
            else if (!str_eq(e.type, cell(res, r, 5)))
                what = "event_type";
            else if (stored_t != event_t)
                what = "event_time";
            else if (!str_eq(e.actor_id, cell(res, r, 7)))
                what = "actor_id";
            else if (!str_eq(e.correlation_id, cell(res, r, 8)))
                what = "correlation_id";
            else if (!str_eq(e.subject, cell(res, r, 9)))
                what = "subject";
            else if (!str_eq(e.result, cell(res, r, 10)))
                what = "result";
            audit_entry_clear(&e);
        }
        if (what)
            finding(w, org, seq, id, "row changed: its column %s does not say what its event says", what);
    }
    memcpy(w->prev2, w->prev, AUDIT_HASH_SIZE);
    w->have_prev2 = w->last_seq > 0 || seq == 1;
    if (hash_ok)
        memcpy(w->prev, stored, AUDIT_HASH_SIZE);
    else
        memcpy(w->prev, h, AUDIT_HASH_SIZE);
    w->last_seq = seq;
    w->next_seq = seq + 1;
    text_printf(w->last_id, sizeof(w->last_id), "%s", id);
}

/* Closes the chain in w against its head row, if it has one (the heads are in org order, like the rows). */
static void verify_close_chain(walk_t *w) {
    if (!w->org[0])
        return;
    int match = w->hi < w->nheads && strcmp(PQgetvalue(w->heads, w->hi, 0), w->org) == 0;
    unsigned char hh[AUDIT_HASH_SIZE] = {0};
    if (match)
        hex_decode(PQgetvalue(w->heads, w->hi, 2), hh);
    chain_end(w, match ? atoll(PQgetvalue(w->heads, w->hi, 1)) : -1, hh);
    w->hi += match;
}

/* Reports the heads of chains with no rows at all, up to the chain of org (NULL: every head left). */
static void verify_rowless_heads(walk_t *w, const char *org) {
    for (; w->hi < w->nheads && (!org || strcmp(PQgetvalue(w->heads, w->hi, 0), org) < 0); w->hi++) {
        long long hs = atoll(PQgetvalue(w->heads, w->hi, 1));
        w->chains++;
        if (hs > 0)
            finding(w, PQgetvalue(w->heads, w->hi, 0), hs, NULL,
                    "every row of the chain (seq 1 to %lld) was deleted", hs);
    }
}

/* One fetched row: when it starts another chain, the chain before is closed first. */
static void verify_next_row(walk_t *w, const PGresult *res, int r) {
    const char *row_org = PQgetvalue(res, r, 0);
    if (strcmp(row_org, w->org) != 0) {
        verify_close_chain(w);
        verify_rowless_heads(w, row_org);
        text_printf(w->org, sizeof(w->org), "%s", row_org);
        memset(w->prev, 0, sizeof(w->prev));
        w->have_prev2 = 0;
        w->next_seq = 1;
        w->last_seq = 0;
        w->last_id[0] = '\0';
    }
    verify_row(w, res, r);
}

int audit_verify(PGconn *db, const char *org, audit_report_fn *report, void *arg, size_t *chains,
                 size_t *rows, size_t *problems, char *errstr, size_t errstr_size) {
    walk_t w;
    memset(&w, 0, sizeof(w));
    w.report = report;
    w.arg = arg;
    *rows = 0;
    int rc = -1;
    PGresult *res = NULL;
    const char *p[1] = {org};
    if (db_cmd(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", errstr, errstr_size) != 0)
        return -1;
    w.heads = db_exec(db, SQL_VERIFY_HEADS, 1, p, errstr, errstr_size);
    if (w.heads) {
        w.nheads = PQntuples(w.heads);
        res = db_exec(db, SQL_VERIFY_ROWS, 1, p, errstr, errstr_size);
        rc = res ? 0 : -1;
        PQclear(res);
    }
    while (rc == 0) {
        res = db_exec(db, "FETCH 2000 FROM audit_rows", 0, NULL, errstr, errstr_size);
        if (!res) {
            rc = -1;
            break;
        }
        int n = PQntuples(res);
        for (int r = 0; r < n; r++)
            verify_next_row(&w, res, r);
        *rows += (size_t)n;
        PQclear(res);
        if (n == 0)
            break;
    }
    if (rc == 0) {
        verify_close_chain(&w);
        verify_rowless_heads(&w, NULL);
    }
    PQclear(w.heads);
    {
        char e2[16];
        db_cmd(db, "ROLLBACK", e2, sizeof(e2));
    }
    *chains = w.chains;
    *problems = w.problems;
    return rc;
}

/* ---- The worker ---- */

/* What the audit worker's consumer loop hands record_batch. */
typedef struct audit_worker {
    PGconn *db;
    int failing; /* the last offer failed: the same batch is offered again (logged once) */
} audit_worker_t;

/* The consumer loop's apply hook: records the batch in one attempt; 0 once it committed. -1 when it did not
 * (PostgreSQL away, logged once by db_alive; another error logged once per run of failures): no wait here,
 * the loop holds the batch, polls Kafka with the partitions paused and offers it again with a backoff (on
 * shutdown it is left uncommitted and read again by whoever owns its partitions next). A message that is
 * no event is logged (at its first offer) and left out. */
static int record_batch(void *arg, rd_kafka_message_t *const *msgs, size_t nmsgs) {
    audit_worker_t *w = arg;
    audit_entry_t *entries = xcalloc(nmsgs, sizeof(*entries));
    size_t n = 0, added = 0;
    char why[128], err[1024];
    for (size_t i = 0; i < nmsgs; i++) {
        const rd_kafka_message_t *m = msgs[i];
        if (audit_entry_parse(m->payload, m->len, &entries[n], why, sizeof(why)) == 0) {
            n++;
        } else if (!w->failing) {
            log_warn(NULL, "%s/%d/%lld is no event (%s): not recorded", rd_kafka_topic_name(m->rkt),
                     (int)m->partition, (long long)m->offset, why);
        }
    }
    int rc = audit_append(w->db, entries, n, &added, err, sizeof(err));
    if (rc != 0) {
        /* PostgreSQL away: db_alive resets the connection, or logs once that it is gone. */
        if (db_alive(w->db) && !w->failing)
            log_error(NULL,
                      "audit batch of %zu rolled back: %s; offered again with a backoff (no further line "
                      "until it is recorded)",
                      n, err);
        w->failing = 1;
    } else {
        if (w->failing)
            log_info(NULL, "audit batch of %zu recorded again", n);
        w->failing = 0;
        if (added > 0)
            log_debug(NULL, "%zu event(s) recorded, %zu seen before", added, n - added);
    }
    for (size_t i = 0; i < n; i++)
        audit_entry_clear(&entries[i]);
    free(entries);
    return rc == 0 ? 0 : -1;
}

int audit_run(conf_t *c) {
    int rc = EXIT_INFRA;
    char err[1024];
    consumer_t *consumer = NULL;
    PGconn *db = db_connect_wait(c, err, sizeof(err)); /* waits while PostgreSQL is down */
    if (!db ||
        !(consumer = consumer_new(c, conf_get(c, "group.audit"), conf_get(c, "topic.events"), AUDIT_BATCH_MAX,
                                  AUDIT_BATCH_WAIT_MS, CONSUMER_FILL_ALWAYS, err, sizeof(err)))) {
        rc = worker_gave_up(err);
        goto done;
    }
    log_info(NULL, "consuming %s as group %s into audit_log", conf_get(c, "topic.events"),
             conf_get(c, "group.audit"));
    notify_ready("recording events"); /* systemd (Type=notify): connected to PostgreSQL and Kafka */
    audit_worker_t w = {.db = db};
    consumer_run(consumer, &(consumer_hooks_t){.arg = &w, .apply = record_batch});
    log_info(NULL, "shutting down");
    rc = EXIT_OK;
done:
    consumer_free(consumer); /* leaves the group: partitions move on at once */
    PQfinish(db);
    return rc;
}
