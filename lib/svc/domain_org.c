/* CreateOrganization and CreateUser (admin commands). */
#include "domain_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "text.h"

static const char SQL_CREATE_ORG[] =
    "WITH o AS (INSERT INTO organizations (id, name) VALUES ($1, $2) RETURNING id)"
    " INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users) SELECT id, $3, true, true FROM o";

static const char SQL_USER_EXISTS[] = "SELECT 1 FROM users WHERE id = $1";

static const char SQL_CREATE_USER[] =
    "INSERT INTO users (id, email, username, name, password_hash, enabled, activated_at)"
    " VALUES ($1, $2, $2, $3, $4, true, now())";

int domain_create_organization(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    int ok = dom_require_admin(r, cmd, res);
    if (ok <= 0)
        return ok;
    const char *p1[1] = {cmd->owner_user_id};
    PGresult *pr = dom_q(r, SQL_USER_EXISTS, 1, p1);
    if (!pr)
        return -1;
    int found = PQntuples(pr) == 1;
    PQclear(pr);
    dom_copy_id(res->user_id, cmd->owner_user_id);
    if (!found) {
        domain_reject(res, "user_not_found", "the owner_user_id names no account");
        return 0;
    }
    char org[UUID_BUF];
    uuid_generate(org);
    const char *p[3] = {org, cmd->name, cmd->owner_user_id};
    pr = dom_q(r, SQL_CREATE_ORG, 3, p);
    if (!pr)
        return dom_failure(r, res);
    PQclear(pr);
    dom_copy_id(res->org_id, org);
    json_t *d = dom_ids_json(org, NULL, NULL);
    json_object_set_new(d, "name", json_string(cmd->name));
    json_object_set_new(d, "owner_user_id", json_string(cmd->owner_user_id));
    dom_emit(x, cmd, "OrganizationCreated", org, d);
    d = dom_ids_json(org, cmd->owner_user_id, NULL);
    json_object_set_new(d, "is_owner", json_true());
    json_object_set_new(d, "can_manage_users", json_true());
    dom_emit(x, cmd, "MembershipCreated", org, d);
    res->accepted = 1;
    return 0;
}

int domain_create_user(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    int ok = dom_require_admin(r, cmd, res);
    if (ok <= 0)
        return ok;
    if (!password_hash_acceptable(cmd->password_hash)) {
        domain_reject(res, "invalid_password_hash", NULL);
        return 0;
    }
    char id[UUID_BUF];
    uuid_generate(id);
    const char *p[4] = {id, cmd->email, cmd->name, cmd->password_hash};
    PGresult *pr = dom_q(r, SQL_CREATE_USER, 4, p);
    if (!pr) {
        if (dom_failure(r, res) != 0)
            return -1;
        if (strcmp(res->code, "user_already_exists") == 0)
            snprintf(res->message, sizeof(res->message),
                     "An account with this e-mail address already exists");
        return 0;
    }
    PQclear(pr);
    dom_copy_id(res->user_id, id);
    json_t *d = dom_ids_json(NULL, id, NULL);
    json_object_set_new(d, "email", json_string(cmd->email));
    json_object_set_new(d, "name", json_string(cmd->name));
    json_object_set_new(d, "enabled", json_true());
    dom_emit(r->x, cmd, "UserCreated", id, d);
    res->accepted = 1;
    return 0;
}
