/* raikoo-bench: the row floor. What the database can absorb of the rows one accepted InviteNewUser leaves
 * behind (the user, the membership, the invitation, the rate counter, processed_commands with its result,
 * and the outbox rows: events, result, mail job), written set-based: one COPY per table and one upsert of
 * the rate counters per transaction of batch.max commands, into the project's own tables with all their
 * constraints, indexes and triggers.
 *
 * The rows are not invented: one real InviteNewUser goes through the worker's processor (lib/cmdproc)
 * first, its rows are read back as COPY text, and every command of the floor gets a copy of them in which
 * each uuid of the template is replaced by a fresh one (the actor's stays, the organization becomes the
 * command's own) and the address by the command's own. Sizes, column values and row counts are thus
 * those of the worker. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cmdproc.h"
#include "db.h"
#include "producer.h"
#include "secret.h"

/* ---- growable text ---- */

typedef struct buf {
    char *s;
    size_t n, cap;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->s = realloc(b->s, cap);
        if (!b->s)
            abort();
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void buf_str(buf_t *b, const char *s) {
    buf_add(b, s, strlen(s));
}

/* One value in COPY text format: NULL is \N; backslash, tab, newline and carriage return escaped. */
static void copy_value(buf_t *b, const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) {
        buf_str(b, "\\N");
        return;
    }
    for (const char *s = PQgetvalue(r, row, col); *s; s++) {
        switch (*s) {
            case '\\': buf_str(b, "\\\\"); break;
            case '\t': buf_str(b, "\\t"); break;
            case '\n': buf_str(b, "\\n"); break;
            case '\r': buf_str(b, "\\r"); break;
            default: buf_add(b, s, 1);
        }
    }
}

/* ---- the template: one command's rows with holes for what differs between commands ---- */

enum { SLOT_ACTOR = -1, SLOT_ORG = -2, SLOT_EMAIL = -3 }; /* other slots: index of a fresh uuid */
#define MAX_UUIDS 16

typedef struct seg {
    char *lit; /* text before the slot */
    int slot;  /* what follows it; 0 with last = 1 for the end */
    int last;
} seg_t;

typedef struct table_tpl {
    const char *copy_sql;
    seg_t *segs;
    size_t nsegs;
    size_t rows; /* rows per command */
} table_tpl_t;

typedef struct tpl {
    char uuids[MAX_UUIDS][UUID_BUF]; /* the template's own uuids, each replaced by a fresh one per command */
    int nuuids;
    char actor[UUID_BUF], org[UUID_BUF], email[256];
} tpl_t;

static int is_uuid_at(const char *s) {
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* Splits COPY text into literals and slots. -1 when the template has more uuids than MAX_UUIDS. */
static int segment(tpl_t *t, table_tpl_t *tt, const char *text, char *errstr, size_t errstr_size) {
    size_t cap = 16, elen = strlen(t->email);
    tt->segs = calloc(cap, sizeof(*tt->segs));
    if (!tt->segs)
        abort();
    buf_t lit = {0};
    const char *s = text;
    while (1) {
        int slot = 0, last = 0;
        size_t skip = 0;
        if (!*s) {
            last = 1;
        } else if (is_uuid_at(s)) { /* stops at the terminating NUL, which is neither hex nor '-' */
            skip = 36;
            if (strncmp(s, t->actor, 36) == 0) {
                slot = SLOT_ACTOR;
            } else if (strncmp(s, t->org, 36) == 0) {
                slot = SLOT_ORG;
            } else {
                int k;
                for (k = 0; k < t->nuuids && strncmp(s, t->uuids[k], 36) != 0; k++)
                    ;
                if (k == t->nuuids) {
                    if (k == MAX_UUIDS) {
                        snprintf(errstr, errstr_size, "the template command wrote more than %d uuids",
                                 MAX_UUIDS);
                        free(lit.s);
                        return -1;
                    }
                    memcpy(t->uuids[k], s, 36);
                    t->uuids[k][36] = '\0';
                    t->nuuids++;
                }
                slot = k;
            }
        } else if (elen > 0 && strncasecmp(s, t->email, elen) == 0) {
            skip = elen;
            slot = SLOT_EMAIL;
        } else {
            buf_add(&lit, s, 1);
            s++;
            continue;
        }
        if (tt->nsegs == cap) {
            cap *= 2;
            tt->segs = realloc(tt->segs, cap * sizeof(*tt->segs));
            if (!tt->segs)
                abort();
        }
        tt->segs[tt->nsegs++] = (seg_t){lit.s ? lit.s : strdup(""), slot, last};
        if (!tt->segs[tt->nsegs - 1].lit)
            abort();
        lit = (buf_t){0};
        if (last)
            return 0;
        s += skip;
    }
}

/* Appends one command's copy of the table's rows. */
static void instantiate(const table_tpl_t *tt, buf_t *b, char (*fresh)[UUID_BUF], const char *actor,
                        const char *org, const char *email) {
    for (size_t i = 0; i < tt->nsegs; i++) {
        buf_str(b, tt->segs[i].lit);
        if (tt->segs[i].last)
            break;
        int slot = tt->segs[i].slot;
        buf_str(b, slot == SLOT_ACTOR   ? actor
                   : slot == SLOT_ORG   ? org
                   : slot == SLOT_EMAIL ? email
                                        : fresh[slot]);
    }
}

/* The rows, in foreign-key order. $1 is what `param` says: the template user's id, its command's id, or
 * the outbox id before it ran. created_at and processed_at are left to their defaults (now()). */
enum { BY_USER, BY_COMMAND, BY_OUTBOX_MARK };
static const struct {
    const char *select, *copy;
    int param;
} TABLES[] = {
    {"SELECT id, email, username, name, password_hash, enabled, is_admin, activated_at FROM users WHERE id = "
     "$1",
     "COPY users (id, email, username, name, password_hash, enabled, is_admin, activated_at) FROM STDIN",
     BY_USER},
    {"SELECT org_id, user_id, is_owner, can_manage_users FROM org_members WHERE user_id = $1",
     "COPY org_members (org_id, user_id, is_owner, can_manage_users) FROM STDIN", BY_USER},
    {"SELECT id, org_id, email, user_id, kind, grant_owner, status, code_hash, failed_attempts, invited_by,"
     " expires_at, decided_at, resent_at, resend_count, mail_job_id, mail_state, mail_error, mail_updated_at"
     " FROM invitations WHERE user_id = $1",
     "COPY invitations (id, org_id, email, user_id, kind, grant_owner, status, code_hash, failed_attempts,"
     " invited_by, expires_at, decided_at, resent_at, resend_count, mail_job_id, mail_state, mail_error,"
     " mail_updated_at) FROM STDIN",
     BY_USER},
    {"SELECT command_id, command_type, status, result FROM processed_commands WHERE command_id = $1",
     "COPY processed_commands (command_id, command_type, status, result) FROM STDIN", BY_COMMAND},
    {"SELECT topic, key, payload FROM outbox WHERE id > $1 ORDER BY id",
     "COPY outbox (topic, key, payload) FROM STDIN", BY_OUTBOX_MARK},
};
#define NTABLES (sizeof(TABLES) / sizeof(TABLES[0]))

/* Rate counters of a batch, one statement: the same upsert the worker makes, one row per organization. */
static const char SQL_RATE[] =
    "INSERT INTO invitation_rate (org_id, minute, created)"
    " SELECT o, date_trunc('minute', now()), count(*) FROM unnest($1::uuid[]) o GROUP BY o"
    " ON CONFLICT (org_id, minute) DO UPDATE SET created = invitation_rate.created + excluded.created";

static long outbox_mark(PGconn *db, char *errstr, size_t errstr_size) {
    PGresult *r = db_exec(db, "SELECT coalesce(max(id), 0) FROM outbox", 0, NULL, errstr, errstr_size);
    if (!r)
        return -1;
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* Deletes the outbox rows after mark (nobody is to publish the floor's results, events and mail jobs). */
static int outbox_delete_after(PGconn *db, long mark, char *errstr, size_t errstr_size) {
    char markstr[24];
    snprintf(markstr, sizeof(markstr), "%ld", mark);
    const char *pm[1] = {markstr};
    PGresult *r = db_exec(db, "DELETE FROM outbox WHERE id > $1", 1, pm, errstr, errstr_size);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

/* Runs one real InviteNewUser by t->actor with data (stolen; its address t->email) through the processor:
 * *built gets the command (raikoo_command_msg_clear), user the id of the user it made. */
static int template_command(const conf_t *c, PGconn *db, const tpl_t *t, json_t *data,
                            raikoo_command_msg_t *built, char user[UUID_BUF], char *errstr,
                            size_t errstr_size) {
    int rc = -1;
    long max_bytes;
    secret_keys_t keys;
    int keys_loaded = 0;
    cmdproc_t *proc = NULL;
    PGresult *r = NULL;
    if (conf_get_long(c, "command.max.bytes", 256, 1L << 30, &max_bytes, errstr, errstr_size) != 0 ||
        secret_load(conf_get(c, "keys.dir"), 0, &keys, errstr, errstr_size) != 0) {
        json_decref(data);
        goto done;
    }
    keys_loaded = 1;
    proc = cmdproc_new(c, db, &keys, errstr, errstr_size);
    if (!proc) {
        json_decref(data);
        goto done;
    }
    if (raikoo_command_build(RAIKOO_CMD_INVITE_NEW_USER, "/raikoo/bench", t->actor, data, (size_t)max_bytes,
                             built, errstr, errstr_size) != 0)
        goto done;
    cmdproc_msg_t msg = {.payload = built->payload, .len = built->len};
    if (cmdproc_apply(proc, &msg, 1, errstr, errstr_size) != 0)
        goto done;
    if (!msg.outcome || strcmp(msg.outcome, "accepted") != 0) {
        snprintf(errstr, errstr_size, "the template InviteNewUser was %s (%s)",
                 msg.outcome ? msg.outcome : "lost", msg.code ? msg.code : "");
        goto done;
    }
    const char *p0[1] = {t->email};
    r = db_exec(db, "SELECT id FROM users WHERE lower(email) = lower($1)", 1, p0, errstr, errstr_size);
    if (!r)
        goto done;
    if (PQntuples(r) != 1) {
        snprintf(errstr, errstr_size, "the template InviteNewUser left no user");
        goto done;
    }
    snprintf(user, 37, "%s", PQgetvalue(r, 0, 0));
    rc = 0;
done:
    PQclear(r);
    cmdproc_free(proc);
    if (keys_loaded)
        sodium_memzero(&keys, sizeof(keys));
    return rc;
}

/* Reads the template's rows of table k (the SELECT of TABLES[k] with param) back as COPY text into *tt,
 * with holes (segment); adds the text's size to *bytes. */
static int table_template(PGconn *db, size_t k, const char *param, tpl_t *t, table_tpl_t *tt, size_t *bytes,
                          char *errstr, size_t errstr_size) {
    const char *p[1] = {param};
    PGresult *r = db_exec(db, TABLES[k].select, 1, p, errstr, errstr_size);
    if (!r)
        return -1;
    if (PQntuples(r) < 1) {
        snprintf(errstr, errstr_size, "the template InviteNewUser left no row for \"%s\"", TABLES[k].copy);
        PQclear(r);
        return -1;
    }
    buf_t text = {0};
    for (int row = 0; row < PQntuples(r); row++) {
        for (int col = 0; col < PQnfields(r); col++) {
            if (col)
                buf_str(&text, "\t");
            copy_value(&text, r, row, col);
        }
        buf_str(&text, "\n");
    }
    tt->copy_sql = TABLES[k].copy;
    tt->rows = (size_t)PQntuples(r);
    *bytes += text.n;
    PQclear(r);
    int rc = segment(t, tt, text.s, errstr, errstr_size);
    free(text.s);
    return rc;
}

/* Runs one real InviteNewUser through the processor and reads its rows back into templates. */
static int make_templates(const conf_t *c, PGconn *db, const char *actor, json_t *data, tpl_t *t,
                          table_tpl_t *tt, size_t *bytes, char *errstr, size_t errstr_size) {
    raikoo_command_msg_t built = {0};
    const char *email = json_string_value(json_object_get(data, "email"));
    const char *org = json_string_value(json_object_get(data, "org_id"));
    snprintf(t->email, sizeof(t->email), "%s", email ? email : "");
    snprintf(t->org, sizeof(t->org), "%s", org ? org : "");
    snprintf(t->actor, sizeof(t->actor), "%s", actor);
    long mark = outbox_mark(db, errstr, errstr_size);
    if (mark < 0) {
        json_decref(data);
        return -1;
    }
    char user[UUID_BUF], markstr[24];
    int rc = template_command(c, db, t, data, &built, user, errstr, errstr_size);
    snprintf(markstr, sizeof(markstr), "%ld", mark);
    *bytes = 0;
    for (size_t k = 0; rc == 0 && k < NTABLES; k++) {
        const char *by[3] = {[BY_USER] = user, [BY_COMMAND] = built.id, [BY_OUTBOX_MARK] = markstr};
        rc = table_template(db, k, by[TABLES[k].param], t, &tt[k], bytes, errstr, errstr_size);
    }
    /* The template's own outbox rows are not for the relay. */
    if (rc == 0)
        rc = outbox_delete_after(db, mark, errstr, errstr_size);
    raikoo_command_msg_clear(&built);
    return rc;
}

/* Streams one table's rows of a batch with COPY. */
static int copy_in(PGconn *db, const char *sql, const buf_t *b, char *errstr, size_t errstr_size) {
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        snprintf(errstr, errstr_size, "%s: %s", sql, PQerrorMessage(db));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    int ok = PQputCopyData(db, b->s, (int)b->n) == 1 && PQputCopyEnd(db, NULL) == 1;
    int rc = ok ? 0 : -1;
    while ((r = PQgetResult(db)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0) {
            snprintf(errstr, errstr_size, "%s: %s", sql, PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    if (!ok)
        snprintf(errstr, errstr_size, "%s: %s", sql, PQerrorMessage(db));
    return rc;
}

/* Builds the rows of commands [i, i + k) of phase into bufs (one per table), before their transaction
 * starts; orgs[j] gets command i + j's organization (kept in orgbuf[j]). */
static void batch_build(const tpl_t *t, const table_tpl_t *tt, buf_t *bufs, bench_data_fn *data, void *arg,
                        const char *phase, long i, long k, const char **orgs, char (*orgbuf)[UUID_BUF]) {
    for (size_t tb = 0; tb < NTABLES; tb++)
        bufs[tb].n = 0;
    for (long j = 0; j < k; j++) {
        json_t *d = data(arg, phase, i + j);
        const char *email = json_string_value(json_object_get(d, "email"));
        const char *org = json_string_value(json_object_get(d, "org_id"));
        char fresh[MAX_UUIDS][UUID_BUF];
        for (int u = 0; u < t->nuuids; u++)
            uuid_generate(fresh[u]);
        for (size_t tb = 0; tb < NTABLES; tb++)
            instantiate(&tt[tb], &bufs[tb], fresh, t->actor, org ? org : t->org, email ? email : t->email);
        snprintf(orgbuf[j], 37, "%s", org ? org : t->org);
        orgs[j] = orgbuf[j];
        json_decref(d);
    }
}

/* Writes a batch in one transaction: a COPY per table, then the rate counters of its k organizations.
 * Adds the time spent to *in_db. -1 with errstr (rolled back). */
static int batch_write(PGconn *db, const table_tpl_t *tt, const buf_t *bufs, const char **orgs, long k,
                       double *in_db, char *errstr, size_t errstr_size) {
    char *arr = db_array_literal(orgs, (size_t)k);
    const char *p[1] = {arr};
    double t0 = bench_now();
    int ok = db_cmd(db, "BEGIN", errstr, errstr_size) == 0;
    for (size_t tb = 0; ok && tb < NTABLES; tb++)
        ok = copy_in(db, tt[tb].copy_sql, &bufs[tb], errstr, errstr_size) == 0;
    PGresult *r = ok ? db_exec_cached(db, SQL_RATE, 1, p, errstr, errstr_size) : NULL;
    ok = ok && r;
    PQclear(r);
    ok = ok && db_cmd(db, "COMMIT", errstr, errstr_size) == 0;
    *in_db += bench_now() - t0;
    free(arr);
    if (!ok) {
        char ignore[256];
        db_cmd(db, "ROLLBACK", ignore, sizeof(ignore));
        return -1;
    }
    return 0;
}

int bench_row_floor(const conf_t *c, PGconn *db, long n, const char *actor, bench_data_fn *data, void *arg,
                    const char *phase, double *per_s, size_t *row_bytes, size_t *rows_per_command,
                    char *errstr, size_t errstr_size) {
    int rc = -1;
    long batch_max;
    tpl_t t;
    memset(&t, 0, sizeof(t));
    table_tpl_t tt[NTABLES];
    memset(tt, 0, sizeof(tt));
    buf_t bufs[NTABLES];
    memset(bufs, 0, sizeof(bufs));
    const char **orgs = NULL;
    char(*orgbuf)[UUID_BUF] = NULL;
    char tpl_phase[48];
    snprintf(tpl_phase, sizeof(tpl_phase), "%s-template", phase);
    if (conf_get_long(c, "batch.max", 1, 100000, &batch_max, errstr, errstr_size) != 0 ||
        make_templates(c, db, actor, data(arg, tpl_phase, 0), &t, tt, row_bytes, errstr, errstr_size) != 0)
        goto done;
    *rows_per_command = 1; /* the rate counter */
    for (size_t k = 0; k < NTABLES; k++)
        *rows_per_command += tt[k].rows;
    long mark = outbox_mark(db, errstr, errstr_size);
    if (mark < 0)
        goto done;
    orgs = calloc((size_t)batch_max, sizeof(*orgs));
    orgbuf = calloc((size_t)batch_max, sizeof(*orgbuf));
    if (!orgs || !orgbuf)
        abort();
    double in_db = 0;
    for (long i = 0; i < n; i += batch_max) {
        long k = n - i < batch_max ? n - i : batch_max;
        batch_build(&t, tt, bufs, data, arg, phase, i, k, orgs, orgbuf);
        if (batch_write(db, tt, bufs, orgs, k, &in_db, errstr, errstr_size) != 0)
            goto done;
        bench_progress("row floor: %ld of %ld", i + k, n);
    }
    *per_s = (double)n / in_db;
    /* Nobody is to publish the floor's results, events and mail jobs. */
    if (outbox_delete_after(db, mark, errstr, errstr_size) != 0)
        goto done;
    rc = 0;
done:
    for (size_t k = 0; k < NTABLES; k++) {
        for (size_t s = 0; s < tt[k].nsegs; s++)
            free(tt[k].segs[s].lit);
        free(tt[k].segs);
        free(bufs[k].s);
    }
    free(orgs);
    free(orgbuf);
    return rc;
}
