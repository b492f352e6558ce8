/* raikoo invite-bulk: one invitation command per row of a CSV file, all published at once through the
 * producer library (raikoo_commands_run), then every result collected; per-row results on stdout. */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "cli.h"
#include "clock.h"
#include "db.h"
#include "email.h"
#include "producer.h"
#include "secret.h"
#include "text.h"

#define BULK_SOURCE "/raikoo/cli/invite-bulk"
#define BULK_MAX_ROWS 1000000

/* ---- CSV (RFC 4180: quoted fields may hold commas, doubled quotes and line breaks) ---- */

typedef struct csv_record {
    long line; /* where the record starts, 1-based */
    char **field;
    size_t n;
} csv_record_t;

/* Splits text into records; a line that is empty (or only white space) is no record. Returns how many,
 * records in *out (free with csv_free). -1 with errstr on an unterminated quote. */
static long csv_parse(const char *text, size_t len, csv_record_t **out, char *errstr, size_t errstr_size) {
    csv_record_t *recs = NULL;
    size_t nrecs = 0, cap = 0, i = 0;
    long line = 1;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) /* a UTF-8 byte order mark */
        i = 3;
    while (i < len) {
        csv_record_t rec = {line, NULL, 0};
        size_t fcap = 0;
        int end_of_record = 0;
        while (!end_of_record) {
            char *buf = xmalloc(len - i + 1);
            size_t b = 0;
            if (i < len && text[i] == '"') {
                long qline = line;
                i++;
                for (;;) {
                    if (i >= len) {
                        text_printf(errstr, errstr_size, "line %ld: a quoted field has no closing quote",
                                    qline);
                        free(buf);
                        for (size_t k = 0; k < rec.n; k++)
                            free(rec.field[k]);
                        free(rec.field);
                        *out = recs;
                        return -1 - (long)nrecs; /* caller frees what was parsed */
                    }
                    if (text[i] == '"' && i + 1 < len && text[i + 1] == '"') {
                        buf[b++] = '"';
                        i += 2;
                    } else if (text[i] == '"') {
                        i++;
                        break;
                    } else {
                        if (text[i] == '\n')
                            line++;
                        buf[b++] = text[i++];
                    }
                }
            }
            while (i < len && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
                buf[b++] = text[i++];
            buf[b] = '\0';
            buf = xrealloc(buf, b + 1); /* was room for the rest of the file: one per field added up */
            rec.field = xgrow(rec.field, rec.n + 1, &fcap, sizeof(char *), 8);
            rec.field[rec.n++] = buf;
            if (i < len && text[i] == ',') {
                i++;
            } else {
                if (i < len && text[i] == '\r')
                    i++;
                if (i < len && text[i] == '\n')
                    i++;
                line++;
                end_of_record = 1;
            }
        }
        int blank = 1;
        for (size_t k = 0; k < rec.n && blank; k++)
            for (const char *s = rec.field[k]; *s && blank; s++)
                blank = isspace((unsigned char)*s) != 0;
        if (blank) {
            for (size_t k = 0; k < rec.n; k++)
                free(rec.field[k]);
            free(rec.field);
            continue;
        }
        recs = xgrow(recs, nrecs + 1, &cap, sizeof(*recs), 64);
        recs[nrecs++] = rec;
    }
    *out = recs;
    return (long)nrecs;
}

static void csv_free(csv_record_t *recs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < recs[i].n; k++)
            free(recs[i].field[k]);
        free(recs[i].field);
    }
    free(recs);
}

/* "yes", "true", "1", "y", "x" → 1; "", "no", "false", "0", "n" → 0; anything else -1. */
static int parse_bool(const char *s) {
    static const char *const yes[] = {"1", "true", "yes", "y", "x", NULL}, *const no[] = {"",   "0", "false",
                                                                                          "no", "n", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    return -1;
}

/* ---- rows ---- */

typedef struct row {
    long line;
    char email[EMAIL_MAX + 1]; /* normal form; or as written when bad */
    char *name;                /* borrowed from the CSV */
    int owner, manage_users;
    const char *bad_code; /* set: not sent (invalid_email, duplicate_email, invalid_value) */
    char bad_message[200];
    int existing; /* --mode auto: an activated account has this address */
    size_t item;  /* index into the batch items when sent */
} row_t;

static int cmp_row_email(const void *a, const void *b) {
    const row_t *const *x = a, *const *y = b;
    int c = strcasecmp((*x)->email, (*y)->email);
    return c ? c : ((*x)->line > (*y)->line) - ((*x)->line < (*y)->line);
}

/* ---- progress ---- */

typedef struct progress {
    int tty;
    double start;
    size_t last_step; /* plain lines: the last tenth reported */
    int drawn;
} progress_t;

static void on_progress(void *opaque, size_t sent, size_t done, size_t total) {
    progress_t *pr = opaque;
    double el = clock_s() - pr->start;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    if (pr->tty) {
        int width = 30, fill = total ? (int)((double)done * width / (double)total) : width;
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] %zu/%zu done, %zu sent, %.0f/s, ETA %.0f s   ", bar, done, total, sent, rate,
                eta);
        pr->drawn = 1;
    } else {
        size_t step = total ? done * 10 / total : 10;
        if (step > pr->last_step || (done == total && pr->last_step < 10)) {
            pr->last_step = step;
            fprintf(stderr, "invite-bulk: %zu/%zu done (%.0f/s, ETA %.0f s)\n", done, total, rate, eta);
        }
    }
    fflush(stderr);
}

/* ---- the command ---- */

static int bulk_usage(const char *problem) {
    fprintf(stderr, "raikoo invite-bulk: %s\n", problem);
    return cli_usage(cli_find("invite-bulk"), 1);
}

static char *read_all(const char *path, size_t *len, char *errstr, size_t errstr_size) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        text_printf(errstr, errstr_size, "cannot open %s: %m", path);
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            buf = xrealloc(buf, cap *= 2);
    }
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        text_printf(errstr, errstr_size, "cannot read %s", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --mode auto: which addresses have an activated account (AddExistingUser), looked up in one statement. */
static int lookup_existing(conf_t *c, row_t *rows, size_t n, char *errstr, size_t errstr_size) {
    PGconn *db = db_connect_migrated(c, errstr, errstr_size);
    if (!db)
        return -1;
    const char **emails = xcalloc(n ? n : 1, sizeof(*emails));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!rows[i].bad_code)
            emails[k++] = rows[i].email;
    char *arr = db_array_literal(emails, k);
    const char *p[1] = {arr};
    PGresult *res =
        db_exec(db,
                "SELECT lower(u.email) FROM users u WHERE lower(u.email) IN (SELECT lower(e) FROM "
                "unnest($1::text[]) AS e) AND (u.enabled OR u.activated_at IS NOT NULL)",
                1, p, errstr, errstr_size);
    free(arr);
    free(emails);
    if (!res) {
        PQfinish(db);
        return -1;
    }
    int m = PQntuples(res);
    char **found = xcalloc(m ? (size_t)m : 1, sizeof(char *));
    for (int r = 0; r < m; r++)
        found[r] = PQgetvalue(res, r, 0);
    qsort(found, (size_t)m, sizeof(char *), cmp_strp);
    for (size_t i = 0; i < n; i++) {
        if (rows[i].bad_code)
            continue;
        char low[EMAIL_MAX + 1];
        size_t j = 0;
        for (; rows[i].email[j]; j++)
            low[j] = (char)tolower((unsigned char)rows[i].email[j]);
        low[j] = '\0';
        /* bsearch over sorted pointers to strings */
        size_t lo = 0, hi = (size_t)m;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            int cmp = strcmp(found[mid], low);
            if (cmp == 0) {
                rows[i].existing = 1;
                break;
            }
            if (cmp < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    free(found);
    PQclear(res);
    PQfinish(db);
    return 0;
}

static void csv_cell(FILE *f, const char *s) {
    if (!s)
        return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* One run of the command: its options, the file's records and rows, and the commands sent. */
typedef struct bulk {
    const char *org, *path, *actor, *mode;
    int as_json;
    csv_record_t *recs;
    long nrecs; /* below 0 until the file is parsed */
    row_t *rows;
    size_t nrows;
    raikoo_batch_item_t *items;
    size_t nitems;
    raikoo_producer_t *p;                           /* freed by the caller, after the results are printed */
    int col_email, col_name, col_owner, col_manage; /* -1: no such column */
    size_t n_acc, n_rej, n_bad, n_err;
} bulk_t;

/* The command line into b: 0, or the exit status of a usage mistake (reported). */
static int bulk_options(int argc, char **argv, bulk_t *b) {
    static const struct option opts[] = {
        {"org", required_argument, NULL, 'o'},   {"csv", required_argument, NULL, 'f'},
        {"actor", required_argument, NULL, 'a'}, {"mode", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},        {NULL, 0, NULL, 0}};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (o == 'o')
            b->org = optarg;
        else if (o == 'f')
            b->path = optarg;
        else if (o == 'a')
            b->actor = optarg;
        else if (o == 'm')
            b->mode = optarg;
        else if (o == 'j')
            b->as_json = 1;
        else
            return bulk_usage(o == ':' ? "an option needs a value" : "unknown option");
    }
    if (optind != argc)
        return bulk_usage("unexpected argument");
    if (!b->org || !uuid_valid(b->org))
        return bulk_usage("--org UUID is required");
    if (!b->actor || !uuid_valid(b->actor))
        return bulk_usage("--actor UUID is required");
    if (!b->path)
        return bulk_usage("--csv FILE is required (- for standard input)");
    if (strcmp(b->mode, "auto") != 0 && strcmp(b->mode, "new") != 0 && strcmp(b->mode, "existing") != 0)
        return bulk_usage("--mode must be auto, new or existing");
    return EXIT_OK;
}

/* Reads and parses the file into b->recs: 0, or -1 (reported). */
static int bulk_read(bulk_t *b) {
    char err[1024];
    size_t len = 0;
    char *text = read_all(b->path, &len, err, sizeof(err));
    if (!text) {
        fprintf(stderr, "raikoo invite-bulk: %s\n", err);
        return -1;
    }
    long nrecs = csv_parse(text, len, &b->recs, err, sizeof(err));
    free(text);
    if (nrecs < 0) {
        csv_free(b->recs, (size_t)(-1 - nrecs));
        b->recs = NULL;
        fprintf(stderr, "raikoo invite-bulk: %s: %s\n", b->path, err);
        return -1;
    }
    b->nrecs = nrecs;
    b->nrows = nrecs > 0 ? (size_t)nrecs - 1 : 0;
    return 0;
}

/* The header: email (required), name, owner, manage_users; others ignored with a warning. 0, or -1
 * (reported) when there is none, a column appears twice, there is no email column or too many rows. */
static int bulk_header(bulk_t *b) {
    if (b->nrecs == 0) {
        fprintf(stderr,
                "raikoo invite-bulk: %s is empty: its first line must name the columns (email,name,owner,"
                "manage_users)\n",
                b->path);
        return -1;
    }
    if (b->nrows > BULK_MAX_ROWS) {
        fprintf(stderr, "raikoo invite-bulk: %zu rows: at most %d per run (split the file)\n", b->nrows,
                BULK_MAX_ROWS);
        return -1;
    }
    for (size_t k = 0; k < b->recs[0].n; k++) {
        char *h = text_trim(b->recs[0].field[k]);
        for (char *s = h; *s; s++)
            *s = (char)tolower((unsigned char)*s);
        int *slot = strcmp(h, "email") == 0          ? &b->col_email
                    : strcmp(h, "name") == 0         ? &b->col_name
                    : strcmp(h, "owner") == 0        ? &b->col_owner
                    : strcmp(h, "manage_users") == 0 ? &b->col_manage
                                                     : NULL;
        if (!slot) {
            fprintf(stderr,
                    "raikoo invite-bulk: warning: column \"%s\" ignored (known: email, name, owner, "
                    "manage_users)\n",
                    h);
        } else if (*slot >= 0) {
            fprintf(stderr, "raikoo invite-bulk: column \"%s\" appears twice in the header\n", h);
            return -1;
        } else {
            *slot = (int)k;
        }
    }
    if (b->col_email < 0) {
        fprintf(stderr, "raikoo invite-bulk: the header (line %ld) has no \"email\" column\n",
                b->recs[0].line);
        return -1;
    }
    return 0;
}

/* The trimmed field of column col in r; "" when the row is shorter or there is no such column. */
static const char *field_of(const csv_record_t *r, int col) {
    return col >= 0 && col < (int)r->n ? text_trim(r->field[col]) : "";
}

/* Checks row i of the file, so that a bad one is reported by its line and not sent. */
static void bulk_row_check(bulk_t *b, size_t i) {
    const csv_record_t *r = &b->recs[i + 1];
    row_t *w = &b->rows[i];
    w->line = r->line;
    const char *email = field_of(r, b->col_email);
    w->name = b->col_name >= 0 && b->col_name < (int)r->n ? text_trim(r->field[b->col_name]) : NULL;
    char why[256];
    w->owner = parse_bool(field_of(r, b->col_owner));
    w->manage_users = parse_bool(field_of(r, b->col_manage));
    if (email_normalize(email, w->email, why, sizeof(why)) != 0) {
        char *shown = utf8_clean_dup(email, strlen(email), EMAIL_MAX);
        text_printf(w->email, sizeof(w->email), "%s", shown);
        free(shown);
        w->bad_code = "invalid_email";
        text_printf(w->bad_message, sizeof(w->bad_message), "not an e-mail address: %s", why);
    } else if (w->owner < 0 || w->manage_users < 0) {
        w->bad_code = "invalid_value";
        text_printf(w->bad_message, sizeof(w->bad_message), "%s must be yes/no, true/false or 1/0",
                    w->owner < 0 ? "owner" : "manage_users");
    } else if (w->name && !utf8_valid(w->name, strlen(w->name))) {
        /* Else the name would be dropped from the command without a word (JSON holds UTF-8 only). */
        w->bad_code = "invalid_value";
        text_printf(w->bad_message, sizeof(w->bad_message),
                    "name is not UTF-8 text (save the file as UTF-8)");
    } else if (w->name && !*w->name) {
        w->name = NULL;
    }
}

/* Duplicates (the address compared case-insensitively): the first row is sent, later ones are not. */
static void bulk_mark_duplicates(bulk_t *b) {
    row_t **byaddr = xcalloc(b->nrows ? b->nrows : 1, sizeof(*byaddr));
    size_t ngood = 0;
    for (size_t i = 0; i < b->nrows; i++)
        if (!b->rows[i].bad_code)
            byaddr[ngood++] = &b->rows[i];
    qsort(byaddr, ngood, sizeof(*byaddr), cmp_row_email);
    const row_t *first = NULL; /* the first line of the current address (sorted by address, then line) */
    for (size_t i = 0; i < ngood; i++) {
        if (first && strcasecmp(byaddr[i]->email, first->email) == 0) {
            byaddr[i]->bad_code = "duplicate_email";
            text_printf(byaddr[i]->bad_message, sizeof(byaddr[i]->bad_message), "same address as line %ld",
                        first->line);
        } else {
            first = byaddr[i];
        }
    }
    free(byaddr);
}

/* Every row checked; the rows not sent reported on stderr. */
static void bulk_rows(bulk_t *b) {
    b->rows = xcalloc(b->nrows ? b->nrows : 1, sizeof(*b->rows));
    for (size_t i = 0; i < b->nrows; i++)
        bulk_row_check(b, i);
    bulk_mark_duplicates(b);
    for (size_t i = 0; i < b->nrows; i++)
        if (b->rows[i].bad_code)
            fprintf(stderr, "raikoo invite-bulk: line %ld: %s: %s (not sent)\n", b->rows[i].line,
                    b->rows[i].bad_code, b->rows[i].bad_message);
}

/* One command per good row: AddExistingUser or InviteNewUser as --mode (and the lookup) say. */
static void bulk_items(bulk_t *b) {
    b->items = xcalloc(b->nrows ? b->nrows : 1, sizeof(*b->items));
    for (size_t i = 0; i < b->nrows; i++) {
        row_t *w = &b->rows[i];
        if (w->bad_code)
            continue;
        int existing = strcmp(b->mode, "existing") == 0 || (strcmp(b->mode, "auto") == 0 && w->existing);
        raikoo_batch_item_t *it = &b->items[b->nitems];
        it->type = existing ? RAIKOO_CMD_ADD_EXISTING_USER : RAIKOO_CMD_INVITE_NEW_USER;
        it->actor = b->actor;
        it->data = json_pack("{s:s, s:s, s:b}", "org_id", b->org, "email", w->email, "owner", w->owner == 1);
        if (!existing && w->name)
            json_object_set_new(it->data, "name", json_string(w->name));
        if (w->manage_users == 1) /* the role at invitation: owners and admins only (manage_grant_denied) */
            json_object_set_new(it->data, "can_manage_users", json_true());
        w->item = b->nitems++;
    }
}

/* Publishes the commands and collects their results: EXIT_OK, or EXIT_INFRA (reported). */
static int bulk_send(bulk_t *b, conf_t *c, long timeout_ms, progress_t *pr) {
    char err[1024];
    raikoo_producer_t *p = b->p = raikoo_producer_new_conf(c, err, sizeof(err));
    if (!p) {
        fprintf(stderr, "raikoo invite-bulk: %s\n", err);
        return EXIT_INFRA;
    }
    raikoo_producer_set_source(p, BULK_SOURCE);
    if (raikoo_commands_run(p, b->items, b->nitems, (int)timeout_ms, on_progress, pr, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "raikoo invite-bulk: %s\n", err);
        return EXIT_INFRA;
    }
    if (pr->drawn)
        fputc('\n', stderr);
    return EXIT_OK;
}

/* What became of a row. */
typedef struct outcome {
    const char *status, *code, *inv, *message, *command;
} outcome_t;

static outcome_t bulk_outcome(bulk_t *b, const row_t *w) {
    outcome_t r = {NULL, NULL, NULL, NULL, NULL};
    if (w->bad_code) {
        r = (outcome_t){"skipped", w->bad_code, NULL, w->bad_message, NULL};
        b->n_bad++;
        return r;
    }
    const raikoo_batch_item_t *it = &b->items[w->item];
    r.command = raikoo_command_type_name(it->type);
    if (it->status == RAIKOO_ITEM_RESULT) {
        r.status = it->result.accepted ? "accepted" : "rejected";
        r.code = it->result.code;
        r.inv = it->result.invitation_id;
        r.message = it->result.message;
        if (it->result.accepted)
            b->n_acc++;
        else
            b->n_rej++;
    } else if (it->status == RAIKOO_ITEM_INVALID) {
        r.status = "rejected";
        r.code = "invalid_command";
        r.message = it->error;
        b->n_rej++;
    } else {
        r.status = "error";
        r.code = it->status == RAIKOO_ITEM_UNSENT ? "not_sent" : "no_result";
        r.message = it->error;
        b->n_err++;
    }
    return r;
}

/* Results, one per row in file order (CSV, or one JSON document), and the summary on stderr. */
static void bulk_print(bulk_t *b, double seconds) {
    json_t *list = b->as_json ? json_array() : NULL;
    if (!b->as_json)
        printf("row,email,command,status,code,invitation_id,message\n");
    for (size_t i = 0; i < b->nrows; i++) {
        const row_t *w = &b->rows[i];
        outcome_t r = bulk_outcome(b, w);
        if (b->as_json) {
            json_array_append_new(list, json_pack("{s:I, s:s, s:s?, s:s, s:s?, s:s?, s:s?}", "row",
                                                  (json_int_t)w->line, "email", w->email, "command",
                                                  r.command, "status", r.status, "code", r.code,
                                                  "invitation_id", r.inv, "message", r.message));
        } else {
            printf("%ld,", w->line);
            csv_cell(stdout, w->email);
            printf(",%s,%s,%s,%s,", r.command ? r.command : "", r.status, r.code ? r.code : "",
                   r.inv ? r.inv : "");
            csv_cell(stdout, r.message);
            putchar('\n');
        }
    }
    double rate = seconds > 0 ? (double)b->nitems / seconds : 0;
    if (b->as_json) {
        json_t *doc =
            json_pack("{s:s, s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:f, s:f}}", "org_id", b->org, "mode",
                      b->mode, "rows", list, "summary", "rows", (json_int_t)b->nrows, "accepted",
                      (json_int_t)b->n_acc, "rejected", (json_int_t)b->n_rej, "skipped", (json_int_t)b->n_bad,
                      "errors", (json_int_t)b->n_err, "seconds", seconds, "rate_per_second", rate);
        char *s = json_dumps(doc, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(doc);
    }
    fprintf(stderr,
            "invite-bulk: %zu row(s): %zu accepted, %zu rejected, %zu skipped (bad rows, not sent), %zu "
            "without a "
            "result, in %.1f s (%.0f commands/s)\n",
            b->nrows, b->n_acc, b->n_rej, b->n_bad, b->n_err, seconds, rate);
}

/* Checks the rows, looks up existing accounts (--mode auto), sends the commands and prints the results. */
static int bulk_run(bulk_t *b, conf_t *c) {
    char err[1024];
    bulk_rows(b);
    if (strcmp(b->mode, "auto") == 0 && lookup_existing(c, b->rows, b->nrows, err, sizeof(err)) != 0) {
        fprintf(
            stderr,
            "raikoo invite-bulk: --mode auto looks the addresses up in PostgreSQL: %s (or choose with --mode "
            "new|existing)\n",
            err);
        return EXIT_INFRA;
    }
    long timeout_ms;
    if (conf_get_long(c, "result.timeout.ms", 0, 24L * 3600 * 1000, &timeout_ms, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo invite-bulk: %s\n", err);
        return EXIT_USAGE;
    }
    bulk_items(b);
    progress_t pr = {isatty(STDERR_FILENO), clock_s(), 0, 0};
    if (b->nitems > 0) {
        int rc = bulk_send(b, c, timeout_ms, &pr);
        if (rc != EXIT_OK)
            return rc;
    }
    bulk_print(b, clock_s() - pr.start);
    return b->n_err ? EXIT_INFRA : (b->n_rej || b->n_bad) ? EXIT_REJECTED : EXIT_ACCEPTED;
}

int cmd_invite_bulk(int argc, char **argv, conf_t *c) {
    bulk_t b = {
        .mode = "auto", .nrecs = -1, .col_email = -1, .col_name = -1, .col_owner = -1, .col_manage = -1};
    int rc = bulk_options(argc, argv, &b);
    if (rc != EXIT_OK)
        return rc;
    if (bulk_read(&b) != 0)
        return EXIT_USAGE;
    rc = bulk_header(&b) != 0 ? EXIT_USAGE : bulk_run(&b, c);
    fflush(stdout);
    for (size_t i = 0; b.items && i < b.nitems; i++) {
        raikoo_result_clear(&b.items[i].result);
        json_decref(b.items[i].data);
    }
    free(b.items);
    raikoo_producer_free(b.p);
    free(b.rows);
    csv_free(b.recs, b.nrecs > 0 ? (size_t)b.nrecs : 0);
    return rc;
}
