/* Membership and roles: RemoveMember and SetMemberRole, under the last-owner rule. */
#include "domain_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "text.h"

/* The target member and every owner, locked, so that the last-owner rule holds against races; with whether
 * each has activated their account (a pending owner does not count towards the rule). */
static const char SQL_LOCK_MEMBER_AND_OWNERS[] =
    "SELECT m.user_id = $2, m.is_owner, m.can_manage_users, u.enabled FROM org_members m JOIN users u ON "
    "u.id = m.user_id"
    " WHERE m.org_id = $1 AND (m.is_owner OR m.user_id = $2) FOR UPDATE OF m";

static const char SQL_REMOVE_MEMBER[] = "DELETE FROM org_members WHERE org_id = $1 AND user_id = $2";

/* Several rows: locked first in id order (as the mailer locks invitations), so that no two transactions
 * wait on each other's rows in opposite orders. */
static const char SQL_WITHDRAW_PENDING_OF_MEMBER[] =
    "WITH l AS (SELECT id FROM invitations WHERE org_id = $1 AND user_id = $2 AND status = 'pending'"
    "           ORDER BY id FOR UPDATE)"
    " UPDATE invitations i SET status = 'removed', decided_at = now() FROM l WHERE i.id = l.id RETURNING "
    "i.id";

static const char SQL_SET_ROLE[] =
    "UPDATE org_members SET is_owner = $3, can_manage_users = $4 WHERE org_id = $1 AND user_id = $2";

/* The target's membership and the organization's owners, locked. Only activated owners count (`owners`):
 * a pending owner who never activated the account cannot keep the organization running. */
typedef struct member_view {
    int found, is_owner, can_manage, activated, owners;
} member_view_t;

/* The last-owner rule: the target is an activated owner and no other activated owner remains. */
static int member_is_last_owner(const member_view_t *mv) {
    return mv->is_owner && mv->activated && mv->owners <= 1;
}

static int member_lock(run_t *r, const cmd_t *cmd, member_view_t *mv) {
    const char *p[2] = {cmd->org_id, cmd->user_id};
    PGresult *pr = dom_q(r, SQL_LOCK_MEMBER_AND_OWNERS, 2, p);
    if (!pr)
        return -1;
    memset(mv, 0, sizeof(*mv));
    for (int i = 0; i < PQntuples(pr); i++) {
        if (dom_is_true(pr, i, 1) && dom_is_true(pr, i, 3))
            mv->owners++;
        if (dom_is_true(pr, i, 0)) {
            mv->found = 1;
            mv->is_owner = dom_is_true(pr, i, 1);
            mv->can_manage = dom_is_true(pr, i, 2);
            mv->activated = dom_is_true(pr, i, 3);
        }
    }
    PQclear(pr);
    return 0;
}

/* The start of RemoveMember and SetMemberRole: the actor may act in the organization and the target is a
 * member (locked, with the owners). 1 to go on, 0 rejected, -1 on database failure. */
static int member_target(run_t *r, const cmd_t *cmd, actor_info_t *a, member_view_t *mv,
                         domain_result_t *res) {
    int ok = dom_authorize(r, cmd, a, res);
    if (ok <= 0)
        return ok;
    dom_copy_id(res->user_id, cmd->user_id);
    if (member_lock(r, cmd, mv) != 0)
        return -1;
    if (!mv->found) {
        domain_reject(res, "not_member", NULL);
        return 0;
    }
    return 1;
}

int domain_remove_member(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    member_view_t mv;
    int ok = member_target(r, cmd, &a, &mv, res);
    if (ok <= 0)
        return ok;
    if (mv.is_owner && a.role < ROLE_OWNER) {
        domain_reject(res, "permission_denied", "members who manage users can remove non-owners only");
        return 0;
    }
    if (member_is_last_owner(&mv)) {
        domain_reject(res, "last_owner", "pending owners who never activated their account do not count");
        return 0;
    }
    const char *p[2] = {cmd->org_id, cmd->user_id};
    PGresult *pr = dom_q(r, SQL_REMOVE_MEMBER, 2, p);
    if (!pr)
        return dom_failure(r, res);
    PQclear(pr);
    /* A pending invitation of the removed member in this organization would bring them back: withdraw it. */
    pr = dom_q(r, SQL_WITHDRAW_PENDING_OF_MEMBER, 2, p);
    if (!pr)
        return -1;
    for (int i = 0; i < PQntuples(pr); i++) {
        json_t *d = dom_ids_json(cmd->org_id, cmd->user_id, PQgetvalue(pr, i, 0));
        json_object_set_new(d, "reason", json_string("member_removed"));
        dom_emit(x, cmd, "InvitationRemoved", cmd->org_id, d);
    }
    PQclear(pr);
    /* A never-activated account held by nothing else any more goes too: the address is free again. */
    int account_removed = 0;
    if (!mv.activated) {
        const char *p3[1] = {cmd->user_id};
        pr = dom_q(r, DOMAIN_SQL_DROP_UNACTIVATED_ACCOUNT, 1, p3);
        if (!pr)
            return dom_failure(r, res);
        account_removed = PQntuples(pr) > 0;
        PQclear(pr);
    }
    json_t *d = dom_ids_json(cmd->org_id, cmd->user_id, NULL);
    json_object_set_new(d, "was_owner", json_boolean(mv.is_owner));
    json_object_set_new(d, "account_removed", json_boolean(account_removed));
    dom_emit(x, cmd, "MemberRemoved", cmd->org_id, d);
    res->accepted = 1;
    return 0;
}

int domain_set_member_role(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    member_view_t mv;
    int ok = member_target(r, cmd, &a, &mv, res);
    if (ok <= 0)
        return ok;
    if (a.role < ROLE_OWNER && (mv.is_owner || cmd->owner)) {
        domain_reject(res, "owner_grant_denied", NULL);
        return 0;
    }
    if (!cmd->owner && member_is_last_owner(&mv)) {
        domain_reject(res, "last_owner", "pending owners who never activated their account do not count");
        return 0;
    }
    const char *p[4] = {cmd->org_id, cmd->user_id, dom_bool_str(cmd->owner),
                        dom_bool_str(cmd->can_manage_users)};
    PGresult *pr = dom_q(r, SQL_SET_ROLE, 4, p);
    if (!pr)
        return dom_failure(r, res);
    PQclear(pr);
    json_t *d = dom_ids_json(cmd->org_id, cmd->user_id, NULL);
    json_object_set_new(d, "is_owner", json_boolean(cmd->owner));
    json_object_set_new(d, "can_manage_users", json_boolean(cmd->can_manage_users));
    json_object_set_new(d, "was_owner", json_boolean(mv.is_owner));
    json_object_set_new(d, "could_manage_users", json_boolean(mv.can_manage));
    dom_emit(x, cmd, "MemberRoleChanged", cmd->org_id, d);
    res->accepted = 1;
    return 0;
}
