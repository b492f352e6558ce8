/* Fuzzes the CSV reader of `raikoo invite-bulk` (producers/raikoo/bulk.c, included for its static functions):
 * csv_parse, then the row checks (the first record as the header: email, name, owner, manage_users) and the
 * duplicate marking. Invariants: records start on increasing lines, none is blank; written again with every
 * field quoted, the records read back the same; a row sent has an address in normal form and owner and
 * manage_users of 0 or 1; what is kept of a bad address and the messages are valid UTF-8; an unterminated
 * quote says its line. */
#include "../../producers/raikoo/bulk.c"

#include "fuzz.h"
#include "strbuf.h"

/* The command table lives in producers/raikoo/main.c: not linked here, and not reached. */
const cli_cmd_t *cli_find(const char *name) {
    (void)name;
    return NULL;
}
int cli_usage(const cli_cmd_t *cmd, int mistake) {
    (void)cmd;
    return mistake;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

static char *quoted(const csv_record_t *recs, size_t n, size_t *len) {
    sb_t b = {0};
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < recs[i].n; k++) {
            sb_add(&b, k ? ",\"" : "\"");
            for (const char *s = recs[i].field[k]; *s; s++) {
                if (*s == '"')
                    sb_addc(&b, '"');
                sb_addc(&b, *s);
            }
            sb_addc(&b, '"');
        }
        sb_addc(&b, '\n');
    }
    *len = b.n;
    return sb_take(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    err[0] = '\0';
    csv_record_t *recs = NULL;
    long n = csv_parse((const char *)data, size, &recs, err, sizeof(err));
    if (n < 0) {
        fuzz_check_text("csv_parse error", err, sizeof(err));
        FUZZ_ASSERT(strncmp(err, "line ", 5) == 0, "an error without its line: %s", err);
        csv_free(recs, (size_t)(-1 - n));
        return 0;
    }
    for (long i = 0; i < n; i++) {
        FUZZ_ASSERT(recs[i].line >= 1 && (i == 0 || recs[i].line > recs[i - 1].line),
                    "record lines out of order");
        int blank = 1;
        for (size_t k = 0; k < recs[i].n && blank; k++)
            for (const char *s = recs[i].field[k]; *s && blank; s++)
                blank = isspace((unsigned char)*s) != 0;
        FUZZ_ASSERT(!blank, "a blank record");
    }
    size_t qlen;
    char *q = quoted(recs, (size_t)n, &qlen);
    csv_record_t *again = NULL;
    long m = csv_parse(q, qlen, &again, err, sizeof(err));
    FUZZ_ASSERT(m == n, "quoted again: %ld records instead of %ld", m, n);
    for (long i = 0; i < n; i++) {
        FUZZ_ASSERT(again[i].n == recs[i].n, "quoted again: record %ld has %zu fields", i, again[i].n);
        for (size_t k = 0; k < recs[i].n; k++)
            FUZZ_ASSERT(strcmp(again[i].field[k], recs[i].field[k]) == 0, "quoted again: a field differs");
    }
    csv_free(again, m < 0 ? (size_t)(-1 - m) : (size_t)m);
    free(q);

    bulk_t b = {0};
    b.recs = recs;
    b.nrecs = n;
    b.nrows = n > 0 ? (size_t)n - 1 : 0;
    b.col_email = 0, b.col_name = 1, b.col_owner = 2, b.col_manage = 3;
    b.rows = xcalloc(b.nrows ? b.nrows : 1, sizeof(*b.rows));
    for (size_t i = 0; i < b.nrows; i++)
        bulk_row_check(&b, i);
    bulk_mark_duplicates(&b);
    for (size_t i = 0; i < b.nrows; i++) {
        const row_t *w = &b.rows[i];
        FUZZ_ASSERT(utf8_valid(w->email, strlen(w->email)), "a row's address is not UTF-8");
        if (w->bad_code) {
            fuzz_check_text("a row's message", w->bad_message, sizeof(w->bad_message));
            continue;
        }
        char norm[EMAIL_MAX + 1], why[256];
        FUZZ_ASSERT(email_normalize(w->email, norm, why, sizeof(why)) == 0 && strcmp(norm, w->email) == 0,
                    "a row sent with an address not in normal form");
        FUZZ_ASSERT((w->owner == 0 || w->owner == 1) && (w->manage_users == 0 || w->manage_users == 1),
                    "a row sent with owner %d, manage_users %d", w->owner, w->manage_users);
        for (size_t k = 0; k < i; k++)
            FUZZ_ASSERT(b.rows[k].bad_code || strcasecmp(b.rows[k].email, w->email) != 0,
                        "two rows sent to one address");
    }
    free(b.rows);
    csv_free(recs, (size_t)n);
    return 0;
}
