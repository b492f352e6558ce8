/* raikoo read side: an organization's members and invitations, straight from PostgreSQL. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cli.h"
#include "db.h"
#include "secret.h"

#define UTC_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The SQL of the read side, in one place. */
static const char SQL_ORG[] = "SELECT name FROM organizations WHERE id = $1";

/* Admins may read any organization; owners and managers their own. Disabled or unknown actors none. */
static const char SQL_MAY_READ[] =
    "SELECT EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.enabled AND (u.is_admin OR EXISTS ("
    " SELECT 1 FROM org_members m WHERE m.org_id = $1 AND m.user_id = u.id AND (m.is_owner OR "
    "m.can_manage_users))))";

static const char SQL_MEMBERS[] =
    "SELECT u.id, u.name, u.email, m.is_owner, m.can_manage_users, u.enabled,"
    " CASE WHEN u.enabled THEN 'active' WHEN u.activated_at IS NULL THEN 'pending_activation' ELSE "
    "'disabled' END,"
    " " UTC_TIME("m.created_at") " FROM org_members m JOIN users u ON u.id = m.user_id"
                                 " WHERE m.org_id = $1 ORDER BY m.created_at, lower(u.email)";

/* A pending invitation past its expiry reads as expired even before the expiry worker marks it. */
static const char SQL_INVITATIONS[] = "SELECT id, name, email, kind, shown_status, " UTC_TIME(
    "expires_at") ", grant_owner, mail_state, mail_error,"
                  " " UTC_TIME("created_at") " FROM (SELECT i.*, u.name,"
                                             "  CASE WHEN i.status = 'pending' AND i.expires_at <= now() "
                                             "THEN 'expired' ELSE i.status END AS shown_status"
                                             "  FROM invitations i LEFT JOIN users u ON u.id = i.user_id "
                                             "WHERE i.org_id = $1) i"
                                             " WHERE $2::text IS NULL OR shown_status = $2"
                                             " ORDER BY created_at, id";

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
        json_t *o = json_pack("{s:s?, s:s, s:s, s:s}", "org_id", org, "status",
                              rc == EXIT_REJECTED ? "rejected" : "error", "code", code ? code : "unavailable",
                              "message", why);
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    }
    return rc;
}

/* Display width of UTF-8 text in terminal columns (one per character: good enough for names). */
static size_t text_width(const char *s) {
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
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
static void table_print(const PGresult *res, const column_t *cols, int ncols) {
    size_t width[16] = {0};
    int rows = PQntuples(res);
    for (int j = 0; j < ncols; j++) {
        width[j] = text_width(cols[j].title);
        for (int i = 0; i < rows; i++) {
            size_t w = text_width(cell_text(res, i, j, &cols[j]));
            if (w > width[j])
                width[j] = w;
        }
    }
    for (int i = -1; i < rows; i++) {
        for (int j = 0; j < ncols; j++) {
            const char *t = i < 0 ? cols[j].title : cell_text(res, i, j, &cols[j]);
            fputs(t, stdout);
            if (j + 1 < ncols)
                printf("%*s", (int)(width[j] - text_width(t) + 2), "");
        }
        putchar('\n');
    }
}

/* Prints {"org_id":..., "org_name":..., "<list_key>":[{...}, ...]}. */
static void json_print(const char *org, const char *org_name, const char *list_key, const PGresult *res,
                       const column_t *cols, int ncols) {
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
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
    json_t *doc = json_pack("{s:s, s:s, s:o}", "org_id", org, "org_name", org_name, list_key, list);
    char *s = json_dumps(doc, JSON_COMPACT);
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(doc);
}

/* What both listings share: options, the connection, the organization and the actor's right to read. */
static int listing(int argc, char **argv, conf_t *c, int invitations) {
    /* members has no --status: getopt must not take its value as an option argument. */
    static const struct option all_opts[] = {{"org", required_argument, NULL, 'o'},
                                             {"actor", required_argument, NULL, 'a'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"status", required_argument, NULL, 's'},
                                             {NULL, 0, NULL, 0}};
    static const struct option member_opts[] = {{"org", required_argument, NULL, 'o'},
                                                {"actor", required_argument, NULL, 'a'},
                                                {"json", no_argument, NULL, 'j'},
                                                {NULL, 0, NULL, 0}};
    const struct option *opts = invitations ? all_opts : member_opts;
    const char *cmd = argv[0], *org = NULL, *actor = NULL, *status = NULL;
    int as_json = 0, o, rc = EXIT_INFRA;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (o == 'o') {
            org = optarg;
        } else if (o == 'a') {
            actor = optarg;
        } else if (o == 's') {
            status = optarg;
        } else if (o == 'j') {
            as_json = 1;
        } else {
            fprintf(stderr, "raikoo %s: %s %s\n", cmd, o == ':' ? "option needs a value:" : "unknown option",
                    argv[optind - 1]);
            return cli_usage(cli_find(cmd), 1);
        }
    }
    const char *problem = NULL;
    if (optind != argc)
        problem = "unexpected argument";
    else if (!org)
        problem = "--org UUID is required";
    else if (!uuid_valid(org))
        problem = "--org: not a UUID";
    else if (actor && !uuid_valid(actor))
        problem = "--actor: not a UUID";
    else if (status && strcmp(status, "pending") != 0 && strcmp(status, "accepted") != 0 &&
             strcmp(status, "expired") != 0 && strcmp(status, "removed") != 0)
        problem = "--status must be pending, accepted, expired or removed";
    if (problem) {
        fprintf(stderr, "raikoo %s: %s\n", cmd, problem);
        return cli_usage(cli_find(cmd), 1);
    }

    char err[1024];
    PGresult *res = NULL, *org_res = NULL;
    PGconn *db = db_connect_migrated(c, err, sizeof(err));
    if (!db) {
        rc = read_fail(cmd, as_json, org, EXIT_INFRA, NULL, "%s", err);
        goto done;
    }
    /* One snapshot for the checks and the rows. */
    if (db_cmd(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, sizeof(err)) != 0) {
        rc = read_fail(cmd, as_json, org, EXIT_INFRA, NULL, "%s", err);
        goto done;
    }
    const char *p2[2] = {org, actor};
    org_res = db_exec(db, SQL_ORG, 1, p2, err, sizeof(err));
    if (!org_res) {
        rc = read_fail(cmd, as_json, org, EXIT_INFRA, NULL, "%s", err);
        goto done;
    }
    if (PQntuples(org_res) == 0) {
        rc = read_fail(cmd, as_json, org, EXIT_REJECTED, "organization_not_found",
                       "no organization with id %s", org);
        goto done;
    }
    if (actor) {
        res = db_exec(db, SQL_MAY_READ, 2, p2, err, sizeof(err));
        if (!res) {
            rc = read_fail(cmd, as_json, org, EXIT_INFRA, NULL, "%s", err);
            goto done;
        }
        int may = PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        res = NULL;
        if (!may) {
            rc = read_fail(cmd, as_json, org, EXIT_REJECTED, "permission_denied",
                           "user %s may not list the %s of this organization (admins, owners and members who "
                           "manage users may)",
                           actor, invitations ? "invitations" : "members");
            goto done;
        }
    }
    const char *lp[2] = {org, status};
    res = db_exec(db, invitations ? SQL_INVITATIONS : SQL_MEMBERS, invitations ? 2 : 1, lp, err, sizeof(err));
    if (!res) {
        rc = read_fail(cmd, as_json, org, EXIT_INFRA, NULL, "%s", err);
        goto done;
    }
    const column_t *cols = invitations ? invitation_cols : member_cols;
    int ncols = invitations ? (int)(sizeof(invitation_cols) / sizeof(invitation_cols[0]))
                            : (int)(sizeof(member_cols) / sizeof(member_cols[0]));
    if (as_json) {
        json_print(org, PQgetvalue(org_res, 0, 0), invitations ? "invitations" : "members", res, cols, ncols);
    } else if (PQntuples(res) == 0) {
        printf("no %s%s%s in organization %s\n", status ? status : "", status ? " " : "",
               invitations ? "invitations" : "members", org);
    } else {
        table_print(res, cols, ncols);
    }
    rc = EXIT_ACCEPTED;
done:
    PQclear(res);
    PQclear(org_res);
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
