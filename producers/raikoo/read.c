/* raikoo read side: an organization's members and invitations, straight from PostgreSQL. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cli.h"
#include "db.h"
#include "rfc3339.h"
#include "secret.h"
#include "text.h"
#include <sodium.h>

#define UTC_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The SQL of the read side, in one place. */
static const char SQL_ORG[] = "SELECT name FROM organizations WHERE id = $1";

/* Admins may read any organization; owners and managers their own. Disabled or unknown actors none. */
static const char SQL_MAY_READ[] =
    "SELECT EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.enabled AND (u.is_admin OR EXISTS ("
    " SELECT 1 FROM org_members m WHERE m.org_id = $1 AND m.user_id = u.id AND (m.is_owner OR "
    "m.can_manage_users))))";

/* The listings, one statement per sort order, each walking its index of schemas/sql/010 in order and
 * stopping after the page. Parameters: $1 org, $2 status (NULL: any), $3 search as a LIKE pattern (NULL:
 * none), $4 and $5 the cursor's key and id (NULL: the first page), $6 the limit (NULL: all). The last column
 * is the row's sort key, for the next cursor. */
#define MEMBER_STATE                                                                                         \
    "CASE WHEN u.enabled THEN 'active' WHEN u.activated_at IS NULL THEN 'pending_activation' ELSE "          \
    "'disabled' END"
#define MEMBERS_SQL(key, key_cast, order)                                                                    \
    "SELECT u.id, u.name, u.email, m.is_owner, m.can_manage_users, u.enabled, " MEMBER_STATE ","             \
    " " UTC_TIME("m.created_at") ", " key "::text FROM org_members m JOIN users u ON u.id = m.user_id"       \
                                 " WHERE m.org_id = $1 AND ($2::text IS NULL OR " MEMBER_STATE " = $2)"      \
                                 " AND ($3::text IS NULL OR lower(u.email) LIKE lower($3) OR lower(u.name) " \
                                 "LIKE lower($3))"                                                           \
                                 " AND ($4::text IS NULL OR (" order ") > ($4::" key_cast ", $5::uuid))"     \
                                 " ORDER BY " order " LIMIT $6"
#define KEY_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
static const char SQL_MEMBERS_CREATED[] =
    MEMBERS_SQL(KEY_TIME("m.created_at"), "timestamptz", "m.created_at, m.user_id");
static const char SQL_MEMBERS_EMAIL[] = MEMBERS_SQL("lower(u.email)", "text", "lower(u.email), u.id");

/* A pending invitation past its expiry reads as expired even before the expiry worker marks it. */
#define INVITATION_STATUS                                                                                    \
    "CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired' ELSE i.status END"
#define INVITATIONS_SQL(key, key_cast, order)                                                                \
    "SELECT i.id, u.name, i.email, i.kind, " INVITATION_STATUS ", " UTC_TIME(                                \
        "i.expires_at") ","                                                                                  \
                        " i.grant_owner, i.grant_manage_users, i.locale, i.mail_state, "                     \
                        "i.mail_error, " UTC_TIME(                                                           \
                            "i.created_at") ", " key "::text"                                                \
                                            " FROM invitations i LEFT JOIN users u ON u.id = i.user_id"      \
                                            " WHERE i.org_id = $1 AND ($2::text IS NULL "                    \
                                            "OR " INVITATION_STATUS " = $2)"                                 \
                                            " AND ($3::text IS NULL OR lower(i.email) LIKE lower($3) OR "    \
                                            "lower(u.name) LIKE lower($3))"                                  \
                                            " AND ($4::text IS NULL OR (" order ") > ($4::" key_cast         \
                                            ", $5::uuid))"                                                   \
                                            " ORDER BY " order " LIMIT $6"
static const char SQL_INVITATIONS_CREATED[] =
    INVITATIONS_SQL(KEY_TIME("i.created_at"), "timestamptz", "i.created_at, i.id");
static const char SQL_INVITATIONS_EXPIRES[] =
    INVITATIONS_SQL(KEY_TIME("i.expires_at"), "timestamptz", "i.expires_at, i.id");
static const char SQL_INVITATIONS_EMAIL[] = INVITATIONS_SQL("lower(i.email)", "text", "lower(i.email), i.id");

typedef struct column {
    const char *title;
    const char *json_key;
    char type; /* 's' string (null when SQL NULL), 'b' boolean */
} column_t;

static const column_t member_cols[] = {
    {"USER ID", "user_id", 's'},
    {"NAME", "name", 's'},
    {"EMAIL", "email", 's'},
    {"OWNER", "owner", 'b'},
    {"MANAGE USERS", "can_manage_users", 'b'},
    {"ENABLED", "enabled", 'b'},
    {"STATE", "state", 's'},
    {"SINCE", "since", 's'},
};

static const column_t invitation_cols[] = {
    {"INVITATION ID", "invitation_id", 's'},
    {"NAME", "name", 's'},
    {"EMAIL", "email", 's'},
    {"KIND", "kind", 's'},
    {"STATUS", "status", 's'},
    {"EXPIRES", "expires_at", 's'},
    {"OWNER", "grant_owner", 'b'},
    {"MANAGE USERS", "grant_manage_users", 'b'},
    {"LOCALE", "locale", 's'},
    {"MAIL", "mail_state", 's'},
    {"MAIL ERROR", "mail_error", 's'},
    {"CREATED", "created_at", 's'},
};

static int read_fail(const char *cmd, int as_json, const char *org, int rc, const char *code, const char *fmt,
                     ...) __attribute__((format(printf, 6, 7)));

/* Reports a failure: on stderr, and with --json also as one object on stdout. Returns rc. */
static int read_fail(const char *cmd, int as_json, const char *org, int rc, const char *code, const char *fmt,
                     ...) {
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    fprintf(stderr, "raikoo %s: %s%s%s\n", cmd, code ? code : "", code ? ": " : "", why);
    if (as_json) {
        cli_print_json(json_pack("{s:s?, s:s, s:s, s:s}", "org_id", org, "status",
                                 rc == EXIT_REJECTED ? "rejected" : "error", "code",
                                 code ? code : "unavailable", "message", why));
    }
    return rc;
}

static const char *cell_text(const PGresult *res, int row, int col, const column_t *c) {
    if (PQgetisnull(res, row, col))
        return "-";
    const char *v = PQgetvalue(res, row, col);
    if (c->type == 'b')
        return v[0] == 't' ? "yes" : "no";
    return *v ? v : "-";
}

/* Prints rows as a table whose columns line up; the last column is not padded. */
static void table_print(const PGresult *res, int rows, const column_t *cols, int ncols) {
    size_t width[16] = {0};
    for (int j = 0; j < ncols; j++) {
        width[j] = utf8_width(cols[j].title);
        for (int i = 0; i < rows; i++) {
            size_t w = utf8_width(cell_text(res, i, j, &cols[j]));
            if (w > width[j])
                width[j] = w;
        }
    }
    for (int i = -1; i < rows; i++) {
        for (int j = 0; j < ncols; j++) {
            const char *t = i < 0 ? cols[j].title : cell_text(res, i, j, &cols[j]);
            fputs(t, stdout);
            if (j + 1 < ncols)
                printf("%*s", (int)(width[j] - utf8_width(t) + 2), "");
        }
        putchar('\n');
    }
}

/* Prints {"org_id":..., "org_name":..., "<list_key>":[{...}, ...], "next_cursor": ...}. */
static void json_print(const char *org, const char *org_name, const char *list_key, const PGresult *res,
                       int rows, const column_t *cols, int ncols, const char *next_cursor) {
    json_t *list = json_array();
    for (int i = 0; i < rows; i++) {
        json_t *o = json_object();
        for (int j = 0; j < ncols; j++) {
            json_t *v;
            if (PQgetisnull(res, i, j))
                v = json_null();
            else if (cols[j].type == 'b')
                v = json_boolean(PQgetvalue(res, i, j)[0] == 't');
            else
                v = json_string(PQgetvalue(res, i, j));
            json_object_set_new(o, cols[j].json_key, v);
        }
        json_array_append_new(list, o);
    }
    cli_print_json(json_pack("{s:s, s:s, s:o, s:s?}", "org_id", org, "org_name", org_name, list_key, list,
                             "next_cursor", next_cursor));
}

/* A cursor names the sort it belongs to, the last row's sort key and its id: "<sort>:<key>:<id>", in
 * URL-safe base64 so that it is one shell word. */
static char *cursor_encode(const char *sort, const char *key, const char *id) {
    char plain[1024];
    text_printf(plain, sizeof(plain), "%s:%s:%s", sort, key, id);
    size_t n = strlen(plain);
    size_t size = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = xmalloc(size);
    sodium_bin2base64(out, size, (const unsigned char *)plain, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

/* Splits a cursor of sort into key and id (both written into buf). -1 when it is not one. */
static int cursor_decode(const char *cursor, const char *sort, char *buf, size_t size, const char **key,
                         const char **id) {
    size_t n = 0;
    if (sodium_base642bin((unsigned char *)buf, size - 1, cursor, strlen(cursor), NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    buf[n] = '\0';
    if (strlen(buf) != n || !utf8_valid(buf, n))
        return -1;
    size_t sl = strlen(sort);
    char *last = strrchr(buf, ':');
    if (strncmp(buf, sort, sl) != 0 || buf[sl] != ':' || !last || last < buf + sl || !uuid_valid(last + 1))
        return -1;
    *last = '\0';
    *key = buf + sl + 1;
    *id = last + 1;
    return 0;
}

/* --search TEXT as a LIKE pattern: a substring, with LIKE's own characters taken literally. */
static char *search_pattern(const char *text) {
    size_t n = strlen(text);
    char *out = xmalloc(2 * n + 3), *o = out;
    *o++ = '%';
    for (const char *s = text; *s; s++) {
        if (*s == '%' || *s == '_' || *s == '\\')
            *o++ = '\\';
        *o++ = *s;
    }
    *o++ = '%';
    *o = '\0';
    return out;
}

/* One listing: its options, checked, and the cursor it continues from. */
typedef struct listing {
    const char *cmd, *org, *actor, *status, *search, *sort, *limit, *after;
    int as_json, explain, invitations;
    long lim;
    const char *after_key, *after_id; /* in cursor_buf, or after_key in after_time */
    char cursor_buf[1024];
    char after_time[RFC3339_CANONICAL_SIZE]; /* a time key as PostgreSQL gets it (rfc3339_canonical) */
} listing_t;

static int listing_usage(const listing_t *l, const char *problem) {
    fprintf(stderr, "raikoo %s: %s\n", l->cmd, problem);
    return cli_usage(cli_find(l->cmd), 1); /* 1: a mistake, on stderr */
}

/* The command line into l: 0, or the exit status of a usage mistake (reported). */
static int listing_options(int argc, char **argv, listing_t *l) {
    static const struct option opts[] = {
        {"org", required_argument, NULL, 'o'},    {"actor", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},         {"status", required_argument, NULL, 's'},
        {"search", required_argument, NULL, 'q'}, {"sort", required_argument, NULL, 'S'},
        {"limit", required_argument, NULL, 'l'},  {"after", required_argument, NULL, 'A'},
        {"explain", no_argument, NULL, 'E'},      {NULL, 0, NULL, 0}};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const char **value = o == 'o'   ? &l->org
                             : o == 'a' ? &l->actor
                             : o == 's' ? &l->status
                             : o == 'q' ? &l->search
                             : o == 'S' ? &l->sort
                             : o == 'l' ? &l->limit
                             : o == 'A' ? &l->after
                                        : NULL;
        if (value) {
            *value = optarg;
        } else if (o == 'E') {
            l->explain = 1;
        } else if (o == 'j') {
            l->as_json = 1;
        } else {
            fprintf(stderr, "raikoo %s: %s %s\n", l->cmd,
                    o == ':' ? "option needs a value:" : "unknown option", argv[optind - 1]);
            return cli_usage(cli_find(l->cmd), 1);
        }
    }
    return optind != argc ? listing_usage(l, "unexpected argument") : EXIT_OK;
}

/* What is wrong with the options in l, or NULL (the cursor of --after is decoded into l). */
static const char *listing_problem(listing_t *l) {
    static const char *const inv_status[] = {"pending", "accepted", "expired", "removed", NULL};
    static const char *const member_status[] = {"active", "pending_activation", "disabled", NULL};
    int status_ok = !l->status;
    for (const char *const *st = l->invitations ? inv_status : member_status; l->status && *st; st++)
        status_ok |= strcmp(l->status, *st) == 0;
    char *end = NULL;
    if (l->limit)
        l->lim = strtol(l->limit, &end, 10);
    if (!l->org)
        return "--org UUID is required";
    if (!uuid_valid(l->org))
        return "--org: not a UUID";
    if (l->actor && !uuid_valid(l->actor))
        return "--actor: not a UUID";
    if (!status_ok)
        return l->invitations ? "--status must be pending, accepted, expired or removed"
                              : "--status must be active, pending_activation or disabled";
    if (strcmp(l->sort, "created") != 0 && strcmp(l->sort, "email") != 0 &&
        (!l->invitations || strcmp(l->sort, "expires") != 0))
        return l->invitations ? "--sort must be created, expires or email"
                              : "--sort must be created or email";
    if (l->limit && (!end || *end || l->lim < 1 || l->lim > 100000))
        return "--limit: a number from 1 to 100000";
    if (l->search && (!*l->search || strlen(l->search) > 320 || !utf8_valid(l->search, strlen(l->search))))
        return "--search: 1 to 320 bytes of text";
    if (l->after && (cursor_decode(l->after, l->sort, l->cursor_buf, sizeof(l->cursor_buf), &l->after_key,
                                   &l->after_id) != 0 ||
                     (strcmp(l->sort, "email") != 0 && rfc3339_canonical(l->after_key, l->after_time) != 0)))
        return "--after: not a cursor of this listing and --sort (copy next_cursor from the --json output)";
    if (l->after && strcmp(l->sort, "email") != 0)
        l->after_key = l->after_time; /* a time key: read by the one parser, not by PostgreSQL */
    return NULL;
}

/* A failure of PostgreSQL, reported as read_fail does. */
static int listing_infra(const listing_t *l, const char *err) {
    return read_fail(l->cmd, l->as_json, l->org, EXIT_INFRA, NULL, "%s", err);
}

/* That the organization exists (its row in *org_res) and the actor, if any, may read it: EXIT_OK, or the
 * exit status of the failure (reported). */
static int listing_allowed(PGconn *db, const listing_t *l, PGresult **org_res) {
    char err[1024];
    const char *p2[2] = {l->org, l->actor};
    *org_res = db_exec(db, SQL_ORG, 1, p2, err, sizeof(err));
    if (!*org_res)
        return listing_infra(l, err);
    if (PQntuples(*org_res) == 0)
        return read_fail(l->cmd, l->as_json, l->org, EXIT_REJECTED, "organization_not_found",
                         "no organization with id %s", l->org);
    if (!l->actor)
        return EXIT_OK;
    PGresult *res = db_exec(db, SQL_MAY_READ, 2, p2, err, sizeof(err));
    if (!res)
        return listing_infra(l, err);
    int may = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!may)
        return read_fail(l->cmd, l->as_json, l->org, EXIT_REJECTED, "permission_denied",
                         "user %s may not list the %s of this organization (admins, owners and members who "
                         "manage users may)",
                         l->actor, l->invitations ? "invitations" : "members");
    return EXIT_OK;
}

static const char *listing_sql(const listing_t *l) {
    if (l->invitations)
        return strcmp(l->sort, "email") == 0     ? SQL_INVITATIONS_EMAIL
               : strcmp(l->sort, "expires") == 0 ? SQL_INVITATIONS_EXPIRES
                                                 : SQL_INVITATIONS_CREATED;
    return strcmp(l->sort, "email") == 0 ? SQL_MEMBERS_EMAIL : SQL_MEMBERS_CREATED;
}

/* The page in res (one row more than --limit when there is a next page), as JSON or a table. */
static void listing_print(const listing_t *l, const PGresult *org_res, const PGresult *res) {
    const column_t *cols = l->invitations ? invitation_cols : member_cols;
    int ncols = l->invitations ? (int)(sizeof(invitation_cols) / sizeof(invitation_cols[0]))
                               : (int)(sizeof(member_cols) / sizeof(member_cols[0]));
    int rows = PQntuples(res);
    char *next_cursor = NULL;
    if (l->limit && rows > l->lim) {
        rows = (int)l->lim;
        next_cursor = cursor_encode(l->sort, PQgetvalue(res, rows - 1, ncols), PQgetvalue(res, rows - 1, 0));
    }
    if (l->as_json) {
        json_print(l->org, PQgetvalue(org_res, 0, 0), l->invitations ? "invitations" : "members", res, rows,
                   cols, ncols, next_cursor);
    } else if (rows == 0) {
        printf("no %s%s%s%s in organization %s\n", l->status ? l->status : "", l->status ? " " : "",
               l->invitations ? "invitations" : "members", l->after ? " after this cursor" : "", l->org);
    } else {
        table_print(res, rows, cols, ncols);
        if (next_cursor)
            fprintf(stderr, "more: raikoo %s ... --after %s\n", l->cmd, next_cursor);
    }
    free(next_cursor);
}

/* In one snapshot: the checks, then the page (or, with --explain, the plan of its statement, run). */
static int listing_run(PGconn *db, const listing_t *l) {
    char err[1024], next_limit[24];
    PGresult *org_res = NULL, *res = NULL;
    if (db_cmd(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, sizeof(err)) != 0)
        return listing_infra(l, err);
    int rc = listing_allowed(db, l, &org_res);
    if (rc == EXIT_OK) {
        char *pattern = l->search ? search_pattern(l->search) : NULL;
        /* One row more than the page: whether there is a next one. */
        if (l->limit)
            text_printf(next_limit, sizeof(next_limit), "%ld", l->lim + 1);
        const char *lp[6] = {l->org,       l->status,   pattern,
                             l->after_key, l->after_id, l->limit ? next_limit : NULL};
        const char *sql = listing_sql(l);
        char *ex = NULL;
        if (l->explain) { /* EXPLAIN ANALYZE of a read-only query, as JSON */
            ex = xmalloc(strlen(sql) + 64);
            sprintf(ex, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) %s", sql);
        }
        res = db_exec(db, ex ? ex : sql, 6, lp, err, sizeof(err));
        free(ex);
        free(pattern);
        if (!res)
            rc = listing_infra(l, err);
        else if (l->explain)
            printf("%s\n", PQgetvalue(res, 0, 0));
        else
            listing_print(l, org_res, res);
    }
    PQclear(res);
    PQclear(org_res);
    return rc;
}

/* What both listings share: options, the connection, the organization and the actor's right to read. */
static int listing(int argc, char **argv, conf_t *c, int invitations) {
    listing_t l = {.cmd = argv[0], .sort = "created", .invitations = invitations};
    int rc = listing_options(argc, argv, &l);
    if (rc != EXIT_OK)
        return rc;
    const char *problem = listing_problem(&l);
    if (problem)
        return listing_usage(&l, problem);
    char err[1024];
    PGconn *db = db_connect_migrated(c, err, sizeof(err));
    rc = db ? listing_run(db, &l) : listing_infra(&l, err);
    PQfinish(db);
    fflush(stdout);
    return rc;
}

int cmd_members(int argc, char **argv, conf_t *c) {
    return listing(argc, argv, c, 0);
}

int cmd_invitations(int argc, char **argv, conf_t *c) {
    return listing(argc, argv, c, 1);
}
