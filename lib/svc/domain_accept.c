/* Acceptance and activation: AcceptInvitation (an existing account joins) and ActivateAccount (a new
 * account sets its password and joins), each checked against the invitation's code. */
#include "domain_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "text.h"

static const char SQL_INVITATION_FOR_UPDATE[] =
    "SELECT i.org_id, i.user_id, i.email, i.kind, i.grant_owner, i.status, i.code_hash, i.failed_attempts,"
    "       i.expires_at <= now(), coalesce(u.name, ''), o.name, i.grant_manage_users"
    "  FROM invitations i JOIN organizations o ON o.id = i.org_id LEFT JOIN users u ON u.id = i.user_id"
    " WHERE i.id = $1 FOR UPDATE OF i";

/* A never-activated account's `new` invitations (one per organization that invited it), pending first,
 * newest first: ActivateAccount uses the one whose code is offered, else the first. */
static const char SQL_NEW_INVITATIONS_OF_USER[] =
    "SELECT id, code_hash FROM invitations WHERE user_id = $1 AND kind = 'new' AND status <> 'removed'"
    " ORDER BY (status = 'pending') DESC, created_at DESC LIMIT 100";

static const char SQL_COUNT_FAILED_ATTEMPT[] =
    "UPDATE invitations SET failed_attempts = failed_attempts + 1 WHERE id = $1 RETURNING failed_attempts";

/* The single use of a code, in one statement: pending, not expired, not locked (MAX_CODE_ATTEMPTS). */
static const char SQL_ACCEPT[] =
    "UPDATE invitations SET status = 'accepted', decided_at = now()"
    " WHERE id = $1 AND status = 'pending' AND expires_at > now() AND failed_attempts < " DB_INT(
        MAX_CODE_ATTEMPTS) " RETURNING 1";

static const char SQL_JOIN_ORG[] =
    "INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (org_id, user_id) DO UPDATE SET is_owner = org_members.is_owner OR EXCLUDED.is_owner,"
    "     can_manage_users = org_members.can_manage_users OR EXCLUDED.can_manage_users"
    " RETURNING is_owner, can_manage_users";

static const char SQL_USER_BY_EMAIL_FOR_UPDATE[] =
    "SELECT id, enabled, name FROM users WHERE lower(email) = lower($1) FOR UPDATE";

static const char SQL_ACTIVATE_USER[] =
    "UPDATE users SET password_hash = $2, enabled = true, activated_at = now() WHERE id = $1 AND NOT enabled"
    " RETURNING 1";

/* 1 found and locked, 0 not found, -1 database failure. */
int dom_invitation_lock(run_t *r, const char *id, invitation_t *inv) {
    const char *p[1] = {id};
    PGresult *pr = dom_q(r, SQL_INVITATION_FOR_UPDATE, 1, p);
    if (!pr)
        return -1;
    int found = PQntuples(pr) == 1;
    if (found) {
        dom_copy_id(inv->id, id);
        dom_copy_id(inv->org_id, PQgetvalue(pr, 0, 0));
        dom_copy_id(inv->user_id, PQgetvalue(pr, 0, 1));
        text_printf(inv->email, sizeof(inv->email), "%s", PQgetvalue(pr, 0, 2));
        text_printf(inv->kind, sizeof(inv->kind), "%s", PQgetvalue(pr, 0, 3));
        inv->grant_owner = dom_is_true(pr, 0, 4);
        text_printf(inv->status, sizeof(inv->status), "%s", PQgetvalue(pr, 0, 5));
        if (dom_hash_column(pr, 0, 6, inv->code_hash) != 0)
            memset(inv->code_hash, 0, sizeof(inv->code_hash));
        inv->failed_attempts = (int)strtol(PQgetvalue(pr, 0, 7), NULL, 10);
        inv->past_expiry = dom_is_true(pr, 0, 8);
        inv->invitee_name = dom_keep_text(r->x, PQgetvalue(pr, 0, 9));
        inv->org_name = dom_keep_text(r->x, PQgetvalue(pr, 0, 10));
        inv->grant_manage_users = dom_is_true(pr, 0, 11);
    }
    PQclear(pr);
    return found;
}

/* Checks an invitation's state and the code offered for it. 1 when the code is right and the invitation
 * usable; 0 with res rejected (a wrong code is counted, kept, and audited); -1 on database failure. */
static int check_code(run_t *r, const cmd_t *cmd, const invitation_t *inv, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    if (strcmp(inv->status, "accepted") == 0 || strcmp(inv->status, "removed") == 0) {
        domain_reject(res, "invitation_not_pending", NULL);
        return 0;
    }
    /* Expiry is checked at use time: the expiry worker may not have run yet. */
    if (strcmp(inv->status, "expired") == 0 || inv->past_expiry) {
        domain_reject(res, "invitation_expired", NULL);
        return 0;
    }
    if (inv->failed_attempts >= MAX_CODE_ATTEMPTS) {
        domain_reject(res, "too_many_attempts", NULL);
        return 0;
    }
    char canon[CODE_LEN + 1];
    unsigned char h[CODE_HASH_LEN];
    int right = 0;
    if (code_canonical(cmd->code, canon) == 0) {
        code_hash(x->keys, canon, h);
        right = sodium_memcmp(h, inv->code_hash, CODE_HASH_LEN) == 0;
        sodium_memzero(canon, sizeof(canon));
    }
    if (right)
        return 1;
    const char *p[1] = {inv->id};
    PGresult *pr = dom_q(r, SQL_COUNT_FAILED_ATTEMPT, 1, p);
    if (!pr)
        return -1;
    int attempts = (int)strtol(PQgetvalue(pr, 0, 0), NULL, 10);
    PQclear(pr);
    json_t *d = dom_ids_json(inv->org_id, inv->user_id[0] ? inv->user_id : NULL, inv->id);
    json_object_set_new(d, "command_type", json_string(cmd->type_name));
    json_object_set_new(d, "failed_attempts", json_integer(attempts));
    json_object_set_new(d, "locked", json_boolean(attempts >= MAX_CODE_ATTEMPTS));
    dom_emit(x, cmd, "InvitationCodeRejected", inv->org_id, d);
    char detail[96];
    if (attempts >= MAX_CODE_ATTEMPTS)
        snprintf(detail, sizeof(detail), "no attempts left: ask the organization to resend the invitation");
    else
        snprintf(detail, sizeof(detail), "%d attempt%s left", MAX_CODE_ATTEMPTS - attempts,
                 MAX_CODE_ATTEMPTS - attempts == 1 ? "" : "s");
    domain_reject(res, "invalid_code", detail);
    res->keep_changes = 1;
    return 0;
}

static void emit_invitation_accepted(domain_ctx_t *x, const cmd_t *cmd, const invitation_t *inv) {
    json_t *d = dom_ids_json(inv->org_id, inv->user_id, inv->id);
    json_object_set_new(d, "email", json_string(inv->email));
    json_object_set_new(d, "kind", json_string(inv->kind));
    dom_emit(x, cmd, "InvitationAccepted", inv->org_id, d);
}

/* Marks the invitation accepted, once: a racing second use finds it no longer pending. */
static int accept_once(run_t *r, const invitation_t *inv, domain_result_t *res) {
    const char *p[1] = {inv->id};
    PGresult *pr = dom_q(r, SQL_ACCEPT, 1, p);
    if (!pr)
        return -1;
    int won = PQntuples(pr) == 1;
    PQclear(pr);
    if (!won)
        domain_reject(res, "invitation_not_pending", NULL);
    return won;
}

int domain_accept_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    invitation_t inv;
    int found = dom_invitation_lock(r, cmd->invitation_id, &inv);
    if (found < 0)
        return -1;
    dom_copy_id(res->invitation_id, cmd->invitation_id);
    if (!found) {
        domain_reject(res, "invitation_not_found", NULL);
        return 0;
    }
    dom_copy_id(res->org_id, inv.org_id);
    dom_copy_id(res->user_id, inv.user_id);
    /* Only the invitee, with a working account, confirms. */
    const char *p1[1] = {cmd->actor};
    PGresult *pr = dom_q(r, DOMAIN_SQL_ACTOR, 1, p1);
    if (!pr)
        return -1;
    int is_invitee = PQntuples(pr) == 1 && dom_is_true(pr, 0, 0) && strcmp(inv.user_id, cmd->actor) == 0;
    PQclear(pr);
    if (!is_invitee) {
        domain_reject(res, "permission_denied",
                      strcmp(inv.kind, "new") == 0 ? "a new user activates the account with ActivateAccount"
                                                   : "only the invited user can accept this invitation");
        return 0;
    }
    int ok = check_code(r, cmd, &inv, res);
    if (ok <= 0)
        return ok;
    ok = accept_once(r, &inv, res);
    if (ok <= 0)
        return ok;
    const char *p[4] = {inv.org_id, inv.user_id, dom_bool_str(inv.grant_owner),
                        dom_bool_str(inv.grant_manage_users)};
    pr = dom_q(r, SQL_JOIN_ORG, 4, p);
    if (!pr)
        return dom_failure(r, res);
    int owner = dom_is_true(pr, 0, 0), manage = dom_is_true(pr, 0, 1);
    PQclear(pr);
    emit_invitation_accepted(x, cmd, &inv);
    json_t *d = dom_ids_json(inv.org_id, inv.user_id, NULL);
    json_object_set_new(d, "is_owner", json_boolean(owner));
    json_object_set_new(d, "can_manage_users", json_boolean(manage));
    dom_emit(x, cmd, "MembershipCreated", inv.org_id, d);
    res->accepted = 1;
    return 0;
}

int domain_activate_account(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    const char *p1[1] = {cmd->email};
    PGresult *pr = dom_q(r, SQL_USER_BY_EMAIL_FOR_UPDATE, 1, p1);
    if (!pr)
        return -1;
    if (PQntuples(pr) == 0) {
        PQclear(pr);
        domain_reject(res, "invitation_not_found", "no invitation was sent to this e-mail address");
        return 0;
    }
    char user[UUID_BUF];
    dom_copy_id(user, PQgetvalue(pr, 0, 0));
    int enabled = dom_is_true(pr, 0, 1);
    PQclear(pr);
    dom_copy_id(res->user_id, user);
    if (enabled) {
        domain_reject(res, "account_already_active", NULL);
        return 0;
    }
    if (!password_hash_acceptable(cmd->password_hash)) {
        domain_reject(res, "invalid_password_hash", NULL);
        return 0;
    }
    /* Several organizations may have invited the account: the code offered says which invitation it takes. */
    const char *p2[1] = {user};
    pr = dom_q(r, SQL_NEW_INVITATIONS_OF_USER, 1, p2);
    if (!pr)
        return -1;
    char inv_id[UUID_BUF] = "";
    if (PQntuples(pr) > 0)
        dom_copy_id(inv_id,
                    PQgetvalue(pr, 0, 0)); /* no code matches: the newest pending one counts the attempt */
    char canon[CODE_LEN + 1];
    if (PQntuples(pr) > 1 && code_canonical(cmd->code, canon) == 0) {
        unsigned char h[CODE_HASH_LEN], stored[CODE_HASH_LEN];
        code_hash(x->keys, canon, h);
        sodium_memzero(canon, sizeof(canon));
        for (int i = 0; i < PQntuples(pr); i++) {
            if (dom_hash_column(pr, i, 1, stored) == 0 && sodium_memcmp(h, stored, CODE_HASH_LEN) == 0) {
                dom_copy_id(inv_id, PQgetvalue(pr, i, 0));
                break;
            }
        }
    }
    PQclear(pr);
    invitation_t inv;
    int found = inv_id[0] ? dom_invitation_lock(r, inv_id, &inv) : 0;
    if (found < 0)
        return -1;
    if (!found) {
        domain_reject(res, "invitation_not_found", "no invitation was sent to this e-mail address");
        return 0;
    }
    dom_copy_id(res->invitation_id, inv.id);
    dom_copy_id(res->org_id, inv.org_id);
    int ok = check_code(r, cmd, &inv, res);
    if (ok <= 0)
        return ok;
    ok = accept_once(r, &inv, res);
    if (ok <= 0)
        return ok;
    const char *p3[2] = {user, cmd->password_hash};
    pr = dom_q(r, SQL_ACTIVATE_USER, 2, p3);
    if (!pr)
        return dom_failure(r, res);
    int activated = PQntuples(pr) == 1;
    PQclear(pr);
    if (!activated) {
        domain_reject(res, "account_already_active", NULL);
        return 0;
    }
    json_t *d = dom_ids_json(inv.org_id, user, inv.id);
    json_object_set_new(d, "email", json_string(inv.email));
    dom_emit(x, cmd, "AccountActivated", inv.org_id, d);
    emit_invitation_accepted(x, cmd, &inv);
    res->accepted = 1;
    return 0;
}
