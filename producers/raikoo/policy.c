/* raikoo policy: an organization's invitation policy, shown from PostgreSQL (show) or set with the
 * SetOrganizationPolicy command (set). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cli.h"
#include "db.h"
#include "secret.h"

/* The organization, its policy (NULL columns when it has none) and the seats in use: members plus pending
 * 'existing' invitations, as the command worker counts them. $2: the actor (NULL: no check), who must be
 * an enabled admin, or an owner or user manager of the organization. */
static const char SQL_POLICY_SHOW[] =
    "SELECT o.name, coalesce(to_json(p.allowed_domains)::text, 'null'), p.seat_limit,"
    "       (SELECT count(*) FROM org_members WHERE org_id = o.id)"
    "     + (SELECT count(*) FROM invitations WHERE org_id = o.id AND status = 'pending' AND kind = "
    "'existing'),"
    "       p.default_expiry_days, p.default_locale, p.app_url, p.updated_by,"
    "       to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    "       $2::uuid IS NULL OR EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.enabled AND (u.is_admin "
    "OR"
    "         EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = o.id AND m.user_id = u.id"
    "                    AND (m.is_owner OR m.can_manage_users))))"
    "  FROM organizations o LEFT JOIN organization_policies p ON p.org_id = o.id WHERE o.id = $1";

static int show_fail(int as_json, const char *org, int rc, const char *code, const char *why) {
    fprintf(stderr, "raikoo policy show: %s%s%s\n", code ? code : "", code ? ": " : "", why);
    if (as_json)
        cli_print_json(json_pack("{s:s?, s:s, s:s, s:s}", "org_id", org, "status",
                                 rc == EXIT_REJECTED ? "rejected" : "error", "code",
                                 code ? code : "unavailable", "message", why));
    return rc;
}

static json_t *int_or_null(const PGresult *r, int col) {
    return PQgetisnull(r, 0, col) ? json_null() : json_integer(strtol(PQgetvalue(r, 0, col), NULL, 10));
}

static json_t *text_or_null(const PGresult *r, int col) {
    return PQgetisnull(r, 0, col) ? json_null() : json_string(PQgetvalue(r, 0, col));
}

static void show_print(const PGresult *r, const char *org, int as_json) {
    json_t *domains = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    json_t *doc = json_object();
    json_object_set_new(doc, "org_id", json_string(org));
    json_object_set_new(doc, "org_name", json_string(PQgetvalue(r, 0, 0)));
    json_object_set_new(doc, "allowed_domains", domains ? domains : json_null());
    json_object_set_new(doc, "seat_limit", int_or_null(r, 2));
    json_object_set_new(doc, "seats_used", int_or_null(r, 3));
    json_object_set_new(doc, "default_expiry_days", int_or_null(r, 4));
    json_object_set_new(doc, "default_locale", text_or_null(r, 5));
    json_object_set_new(doc, "app_url", text_or_null(r, 6));
    json_object_set_new(doc, "updated_by", text_or_null(r, 7));
    json_object_set_new(doc, "updated_at", text_or_null(r, 8));
    if (as_json) {
        cli_print_json(doc);
        return;
    }
    static const char *const keys[] = {
        "org_name",       "allowed_domains", "seat_limit", "seats_used", "default_expiry_days",
        "default_locale", "app_url",         "updated_by", "updated_at", NULL};
    for (const char *const *k = keys; *k; k++) {
        json_t *v = json_object_get(doc, *k);
        char *text = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%-20s %s\n", *k,
               json_is_string(v) ? json_string_value(v)
               : json_is_null(v) ? "- (none)"
                                 : (text ? text : "?"));
        free(text);
    }
    json_decref(doc);
}

static int policy_show(int argc, char **argv, conf_t *c) {
    static const struct option opts[] = {{"org", required_argument, NULL, 'o'},
                                         {"actor", required_argument, NULL, 'a'},
                                         {"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    const char *org = NULL, *actor = NULL;
    int as_json = 0, o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (o == 'o')
            org = optarg;
        else if (o == 'a')
            actor = optarg;
        else if (o == 'j')
            as_json = 1;
        else {
            fprintf(stderr, "raikoo policy show: %s %s\n",
                    o == ':' ? "option needs a value:" : "unknown option", argv[optind - 1]);
            return cli_usage(cli_find("policy"), 1);
        }
    }
    if (optind != argc || !org || !uuid_valid(org) || (actor && !uuid_valid(actor))) {
        fprintf(stderr, "raikoo policy show: --org UUID is required%s\n",
                actor ? " (and --actor a UUID)" : "");
        return cli_usage(cli_find("policy"), 1);
    }
    char err[1024];
    PGconn *db = db_connect_migrated(c, err, sizeof(err));
    if (!db)
        return show_fail(as_json, org, EXIT_INFRA, NULL, err);
    const char *p[2] = {org, actor};
    PGresult *r = db_exec(db, SQL_POLICY_SHOW, 2, p, err, sizeof(err));
    int rc = EXIT_OK;
    if (!r)
        rc = show_fail(as_json, org, EXIT_INFRA, NULL, err);
    else if (PQntuples(r) == 0)
        rc = show_fail(as_json, org, EXIT_REJECTED, "organization_not_found", "no organization with this id");
    else if (PQgetvalue(r, 0, 9)[0] != 't')
        rc = show_fail(as_json, org, EXIT_REJECTED, "permission_denied",
                       "admins, owners and members who manage users may read the policy");
    else
        show_print(r, org, as_json);
    PQclear(r);
    PQfinish(db);
    fflush(stdout);
    return rc;
}

int cmd_policy(int argc, char **argv, conf_t *c) {
    if (argc >= 2 && strcmp(argv[1], "show") == 0) {
        argv[1] = argv[0];
        return policy_show(argc - 1, argv + 1, c);
    }
    if (argc >= 2 && strcmp(argv[1], "set") == 0) {
        argv[1] = argv[0]; /* "policy": publish.c's spec of SetOrganizationPolicy */
        return cmd_publish(argc - 1, argv + 1, c);
    }
    fprintf(stderr, "raikoo policy: show or set?\n");
    return cli_usage(cli_find("policy"), 1);
}
