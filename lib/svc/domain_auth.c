/* Authorisation: who the actor is in the organization, cached for a batch (domain_auth_t). */
#include "domain_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "text.h"

/* The organization and what the actor may do in it, in one row whatever exists. */
static const char SQL_ACTOR_IN_ORG[] =
    "SELECT o.name, u.id IS NOT NULL, coalesce(u.enabled, false), coalesce(u.is_admin, false),"
    "       m.user_id IS NOT NULL, coalesce(m.is_owner, false), coalesce(m.can_manage_users, false),"
    "       coalesce(u.name, ''), coalesce(u.email, '')"
    "  FROM (SELECT $1::uuid AS actor, $2::uuid AS org) a"
    "  LEFT JOIN organizations o ON o.id = a.org"
    "  LEFT JOIN users u ON u.id = a.actor"
    "  LEFT JOIN org_members m ON m.org_id = a.org AND m.user_id = a.actor";

const char DOMAIN_SQL_ACTOR[] = "SELECT enabled, is_admin, name, email FROM users WHERE id = $1";

/* Fills a cache entry from row of a result with SQL_ACTOR_IN_ORG's columns. */
static void auth_fill(domain_ctx_t *x, domain_auth_t *au, const char *actor, const char *org,
                      const PGresult *pr, int row) {
    memset(au, 0, sizeof(*au));
    text_printf(au->actor, sizeof(au->actor), "%s", actor);
    text_printf(au->org, sizeof(au->org), "%s", org);
    au->found_org = !PQgetisnull(pr, row, 0);
    int enabled = dom_is_true(pr, row, 2), admin = dom_is_true(pr, row, 3), member = dom_is_true(pr, row, 4);
    int owner = dom_is_true(pr, row, 5), manager = dom_is_true(pr, row, 6);
    au->role = !enabled            ? ROLE_NONE
               : admin             ? ROLE_ADMIN
               : member && owner   ? ROLE_OWNER
               : member && manager ? ROLE_MANAGER
                                   : ROLE_NONE;
    au->org_name = dom_keep_text(x, PQgetvalue(pr, row, 0));
    au->name = dom_keep_text(x, PQgetvalue(pr, row, 7));
    text_printf(au->email, sizeof(au->email), "%s", PQgetvalue(pr, row, 8));
}

static domain_auth_t *auth_cached(domain_ctx_t *x, const char *actor, const char *org) {
    for (int i = 0; i < x->nauth; i++)
        if (strcmp(x->auth[i].actor, actor) == 0 && strcmp(x->auth[i].org, org) == 0)
            return &x->auth[i];
    return NULL;
}

/* SQL_ACTOR_IN_ORG for many (actor, organization) pairs, in their order. */
static const char SQL_ACTORS_IN_ORGS[] =
    "SELECT o.name, u.id IS NOT NULL, coalesce(u.enabled, false), coalesce(u.is_admin, false),"
    "       m.user_id IS NOT NULL, coalesce(m.is_owner, false), coalesce(m.can_manage_users, false),"
    "       coalesce(u.name, ''), coalesce(u.email, '')"
    "  FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS a(actor, org, ord)"
    "  LEFT JOIN organizations o ON o.id = a.org"
    "  LEFT JOIN users u ON u.id = a.actor"
    "  LEFT JOIN org_members m ON m.org_id = a.org AND m.user_id = a.actor"
    " ORDER BY a.ord";

int dom_authorize_prefetch(run_t *r, cmd_t *const *cmds, size_t n) {
    domain_ctx_t *x = r->x;
    size_t room = (size_t)(DOMAIN_AUTH_CACHE - x->nauth), k = 0;
    const char **actors = xcalloc(n ? n : 1, sizeof(*actors)), **orgs = xcalloc(n ? n : 1, sizeof(*orgs));
    for (size_t j = 0; j < n && k < room; j++) {
        const cmd_t *c = cmds[j];
        if (!c->actor || !c->org_id || auth_cached(x, c->actor, c->org_id))
            continue;
        int again = 0;
        for (size_t q = 0; q < k && !again; q++)
            again = strcmp(actors[q], c->actor) == 0 && strcmp(orgs[q], c->org_id) == 0;
        if (!again) {
            actors[k] = c->actor;
            orgs[k++] = c->org_id;
        }
    }
    int rc = 0;
    if (k > 1) { /* one pair is as well looked up by dom_authorize */
        char *aa = db_array_literal(actors, k), *oa = db_array_literal(orgs, k);
        const char *p[2] = {aa, oa};
        PGresult *pr = dom_q(r, SQL_ACTORS_IN_ORGS, 2, p);
        free(aa);
        free(oa);
        if (!pr) {
            rc = -1;
        } else {
            for (int i = 0; i < PQntuples(pr) && i < (int)k; i++)
                auth_fill(x, &x->auth[x->nauth++], actors[i], orgs[i], pr, i);
            PQclear(pr);
        }
    }
    free(actors);
    free(orgs);
    return rc;
}

int dom_authorize(run_t *r, const cmd_t *cmd, actor_info_t *a, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    domain_auth_t *au = auth_cached(x, cmd->actor, cmd->org_id);
    if (!au) {
        const char *p[2] = {cmd->actor, cmd->org_id};
        PGresult *pr = dom_q(r, SQL_ACTOR_IN_ORG, 2, p);
        if (!pr)
            return dom_failure(r, res) == 0 ? 0 : -1;
        au = &x->auth[x->nauth < DOMAIN_AUTH_CACHE ? x->nauth++ : DOMAIN_AUTH_CACHE - 1];
        auth_fill(x, au, cmd->actor, cmd->org_id, pr, 0);
        PQclear(pr);
    }
    memset(a, 0, sizeof(*a));
    dom_copy_id(res->org_id, cmd->org_id);
    if (!au->found_org) {
        domain_reject(res, "organization_not_found", NULL);
        return 0;
    }
    a->role = (role_t)au->role;
    a->org_name = au->org_name;
    a->name = au->name;
    text_printf(a->email, sizeof(a->email), "%s", au->email);
    if (a->role == ROLE_NONE) {
        domain_reject(res, "permission_denied", NULL);
        return 0;
    }
    return 1;
}

void domain_forget(domain_ctx_t *x) {
    x->nauth = 0;
    for (size_t i = 0; i < x->ntexts; i++)
        free(x->texts[i]);
    x->ntexts = 0;
}

void domain_ctx_free(domain_ctx_t *x) {
    domain_forget(x);
    free(x->texts);
    x->texts = NULL;
    x->cap_texts = 0;
}

/* 1 when the actor is an enabled system admin, 0 with res rejected, -1 on database failure. */
int dom_require_admin(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    const char *p[1] = {cmd->actor};
    PGresult *pr = dom_q(r, DOMAIN_SQL_ACTOR, 1, p);
    if (!pr)
        return -1;
    int ok = PQntuples(pr) == 1 && dom_is_true(pr, 0, 0) && dom_is_true(pr, 0, 1);
    PQclear(pr);
    if (!ok)
        domain_reject(res, "permission_denied", "only a Raikoo admin can do this");
    return ok;
}
