/* Organization policies: SetOrganizationPolicy, and what a policy means for the invitations of its
 * organization (allowed domains, the seat limit, the default expiry, language and link). */
#include "domain_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "event.h"
#include "mailjob.h"
#include "text.h"

/* The policy row, locked: concurrent invitations into one organization count its seats one after the
 * other (the count itself is a statement of its own, SQL_SEATS_USED, so that it sees what the transaction
 * it waited for committed). $2: the invitee's address, or NULL. */
static const char SQL_POLICY_FOR_UPDATE[] =
    "SELECT coalesce(cardinality(allowed_domains), 0) > 0,"
    "       coalesce(lower(split_part($2::text, '@', 2)) = ANY (allowed_domains), false),"
    "       coalesce(seat_limit, 0), coalesce(default_expiry_days, 0), default_locale, app_url"
    "  FROM organization_policies WHERE org_id = $1 FOR UPDATE";

/* Members plus pending 'existing' invitations (a 'new' invitation's membership is already a member). */
static const char SQL_SEATS_USED[] = "SELECT (SELECT count(*) FROM org_members WHERE org_id = $1)"
                                     "     + (SELECT count(*) FROM invitations WHERE org_id = $1 AND status "
                                     "= 'pending' AND kind = 'existing')";

/* Absent fields keep their value ($2, $4, ... say whether the command gives one); null clears. Domains are
 * stored in lower case, once each; an empty list is stored as NULL (any domain). */
static const char SQL_UPSERT_POLICY[] =
    "WITH v AS (SELECT (SELECT array_agg(DISTINCT lower(d) ORDER BY lower(d)) FROM unnest($3::text[]) d) AS "
    "domains)"
    " INSERT INTO organization_policies AS p (org_id, allowed_domains, seat_limit, default_expiry_days,"
    "                                         default_locale, app_url, updated_by)"
    " SELECT $1, v.domains, $5::integer, $7::integer, $9, $11, $12 FROM v"
    " ON CONFLICT (org_id) DO UPDATE SET"
    "   allowed_domains = CASE WHEN $2 THEN EXCLUDED.allowed_domains ELSE p.allowed_domains END,"
    "   seat_limit = CASE WHEN $4 THEN EXCLUDED.seat_limit ELSE p.seat_limit END,"
    "   default_expiry_days = CASE WHEN $6 THEN EXCLUDED.default_expiry_days ELSE p.default_expiry_days END,"
    "   default_locale = CASE WHEN $8 THEN EXCLUDED.default_locale ELSE p.default_locale END,"
    "   app_url = CASE WHEN $10 THEN EXCLUDED.app_url ELSE p.app_url END,"
    "   updated_by = EXCLUDED.updated_by, updated_at = now()"
    " RETURNING coalesce(to_json(allowed_domains)::text, 'null'), seat_limit, default_expiry_days,"
    "           default_locale, app_url";

int dom_policy_load(run_t *r, const char *org, const char *email, org_policy_t *pol) {
    memset(pol, 0, sizeof(*pol));
    const char *p[2] = {org, email};
    PGresult *pr = dom_q(r, SQL_POLICY_FOR_UPDATE, 2, p);
    if (!pr)
        return -1;
    if (PQntuples(pr) == 1) {
        pol->found = 1;
        pol->restricts_domains = dom_is_true(pr, 0, 0);
        pol->domain_allowed = dom_is_true(pr, 0, 1);
        pol->seat_limit = strtol(PQgetvalue(pr, 0, 2), NULL, 10);
        pol->expiry_days = (int)strtol(PQgetvalue(pr, 0, 3), NULL, 10);
        if (!PQgetisnull(pr, 0, 4))
            pol->locale = dom_keep_text(r->x, PQgetvalue(pr, 0, 4));
        if (!PQgetisnull(pr, 0, 5))
            pol->app_url = dom_keep_text(r->x, PQgetvalue(pr, 0, 5));
    }
    PQclear(pr);
    return 0;
}

int dom_seat_available(run_t *r, const char *org, const org_policy_t *pol, domain_result_t *res) {
    if (!pol->seat_limit)
        return 1;
    const char *p[1] = {org};
    PGresult *pr = dom_q(r, SQL_SEATS_USED, 1, p);
    if (!pr)
        return -1;
    long used = strtol(PQgetvalue(pr, 0, 0), NULL, 10);
    PQclear(pr);
    if (used < pol->seat_limit)
        return 1;
    char detail[96];
    snprintf(detail, sizeof(detail), "%ld of %ld seats taken by members and pending invitations", used,
             pol->seat_limit);
    domain_reject(res, "seat_limit_reached", detail);
    return 0;
}

int dom_policy_allows_address(const org_policy_t *pol, domain_result_t *res) {
    if (!pol->restricts_domains || pol->domain_allowed)
        return 1;
    domain_reject(res, "domain_not_allowed", NULL);
    return 0;
}

void dom_invite_opts(const domain_ctx_t *x, const cmd_t *cmd, const org_policy_t *pol, int grant_manage_users,
                     invite_opts_t *o) {
    memset(o, 0, sizeof(*o));
    if (cmd->expires_in_days > 0)
        o->ttl_seconds = cmd->expires_in_days * 86400L;
    else if (pol && pol->expiry_days > 0)
        o->ttl_seconds = pol->expiry_days * 86400L;
    else
        o->ttl_seconds = x->ttl_seconds;
    if (cmd->locale)
        o->locale = cmd->locale;
    else if (pol && pol->locale)
        o->locale = pol->locale;
    else if (x->default_locale && locale_tag_valid(x->default_locale))
        o->locale = x->default_locale;
    o->app_url = pol ? pol->app_url : NULL;
    o->grant_manage_users = grant_manage_users;
}

/* A parameter pair: whether data has the field, and its value as text (NULL for null or absent). */
static const char *field_text(json_t *data, const char *name, const char **given, char buf[24]) {
    json_t *v = json_object_get(data, name);
    *given = dom_bool_str(v != NULL);
    if (json_is_integer(v))
        return dom_ltoa((long)json_integer_value(v), buf);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int domain_set_organization_policy(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    int ok = dom_authorize(r, cmd, &a, res);
    if (ok <= 0)
        return ok;
    if (a.role < ROLE_OWNER) {
        domain_reject(res, "permission_denied", "only organization owners and Raikoo admins set its policy");
        return 0;
    }
    json_t *data = json_object_get(cmd->root, "data");
    if (json_is_string(json_object_get(data, "app_url")) && a.role < ROLE_ADMIN) {
        /* The e-mails come from the platform's trusted sender and ask for a code (and, for a new user, a
         * password) at that link: an owner could send every invitee to a site of their own. Clearing it
         * (null) is anyone's who sets the policy. */
        domain_reject(res, "permission_denied",
                      "only a Raikoo admin sets the link the invitation e-mails point to");
        return 0;
    }
    json_t *domains = json_object_get(data, "allowed_domains");
    char *domains_literal = NULL;
    if (json_is_array(domains)) {
        size_t n = json_array_size(domains), i;
        const char **items = xcalloc(n + 1, sizeof(*items));
        json_t *d;
        json_array_foreach(domains, i, d) items[i] = json_string_value(d);
        domains_literal = db_array_literal(items, n);
        free(items);
    }
    char b1[24], b2[24];
    const char *p[12];
    p[0] = cmd->org_id;
    p[1] = dom_bool_str(domains != NULL);
    p[2] = domains_literal;
    p[4] = field_text(data, "seat_limit", &p[3], b1);
    p[6] = field_text(data, "default_expiry_days", &p[5], b2);
    p[8] = field_text(data, "default_locale", &p[7], NULL);
    p[10] = field_text(data, "app_url", &p[9], NULL);
    p[11] = cmd->actor;
    PGresult *pr = dom_q(r, SQL_UPSERT_POLICY, 12, p);
    free(domains_literal);
    if (!pr)
        return dom_failure(r, res);
    json_t *d = dom_ids_json(cmd->org_id, NULL, NULL);
    json_t *list = json_loads(PQgetvalue(pr, 0, 0), 0, NULL);
    json_object_set_new(d, "allowed_domains", list ? list : json_null());
    for (int c = 1; c <= 2; c++)
        json_object_set_new(d, c == 1 ? "seat_limit" : "default_expiry_days",
                            PQgetisnull(pr, 0, c) ? json_null()
                                                  : json_integer(strtol(PQgetvalue(pr, 0, c), NULL, 10)));
    for (int c = 3; c <= 4; c++)
        json_object_set_new(d, c == 3 ? "default_locale" : "app_url",
                            PQgetisnull(pr, 0, c) ? json_null() : json_string(PQgetvalue(pr, 0, c)));
    json_object_set_new(d, "updated_by", json_string(cmd->actor));
    PQclear(pr);
    dom_emit(x, cmd, "OrganizationPolicyChanged", cmd->org_id, d);
    res->accepted = 1;
    return 0;
}
