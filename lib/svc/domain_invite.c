/* Invitations: AddExistingUser, InviteNewUser, ResendInvitation, RemoveInvitation, and the invitation
 * e-mail they queue (a fresh code, sealed to the mailer). */
#include "domain_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "text.h"
#include "mailjob.h"

/* ---- SQL ---- */

/* The statements below are laid out by clause; clang-format would break them at the macros instead. */
/* clang-format off */

/* For AddExistingUser: the account, whether it is a member, the organization's invitations this hour, and
 * whether the account is usable (activated, or an admin). */
static const char SQL_EXISTING_TARGET[] =
    "SELECT u.id, u.name, EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = $2 AND m.user_id = u.id),"
    "       (SELECT coalesce(sum(created), 0) FROM invitation_rate"
    "         WHERE org_id = $2 AND minute > now() - interval '1 hour'),"
    "       u.enabled OR u.is_admin"
    "  FROM (SELECT 1) one LEFT JOIN users u ON lower(u.email) = lower($1)";

/* Counts a new invitation towards its organization's hourly limit (see SQL_EXISTING_TARGET). */
#define COUNT_INVITATION(org)                                                                                \
    "r AS (INSERT INTO invitation_rate (org_id, minute, created) VALUES (" org                               \
    ", date_trunc('minute', now()), 1)"                                                                      \
    "      ON CONFLICT (org_id, minute) DO UPDATE SET created = invitation_rate.created + 1)"

static const char SQL_INSERT_EXISTING_INVITATION[] =
    "WITH " COUNT_INVITATION("$2::uuid") ","
    " i AS (INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, code_hash, invited_by,"
    "                                expires_at, mail_job_id, grant_manage_users, locale)"
    "       VALUES ($1, $2, $3, $4, 'existing', $5, $6, $7, now() + make_interval(secs => $8), $9, $10, $11)"
    "       RETURNING expires_at)"
    " SELECT " DB_RFC3339("expires_at") " FROM i";

/* For InviteNewUser: the organization's invitations this hour, and the account already there, if any
 * (locked: a removal may be deleting it, an activation enabling it), whether it is usable (activated, or an
 * admin), its name and whether it is a member of the organization already (a never-activated account whose
 * expired invitation left its membership: that membership already holds its seat). */
static const char SQL_NEW_TARGET[] =
    "SELECT u.id, coalesce(u.enabled OR u.is_admin, false), coalesce(u.name, ''), r.n,"
    "       EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = $2 AND m.user_id = u.id)"
    "  FROM (SELECT coalesce(sum(created), 0) AS n FROM invitation_rate"
    "         WHERE org_id = $2 AND minute > now() - interval '1 hour') r"
    "  LEFT JOIN LATERAL (SELECT id, enabled, is_admin, name FROM users"
    "                      WHERE lower(email) = lower($1) FOR UPDATE) u"
    "    ON true";

/* The disabled account, its membership and the invitation, in one statement. */
static const char SQL_INSERT_NEW_USER_INVITATION[] =
    "WITH " COUNT_INVITATION("$4::uuid") ","
    " u AS (INSERT INTO users (id, email, username, name) VALUES ($1, $2, $2, $3) RETURNING id),"
    " m AS (INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users)"
    "       SELECT $4, id, $5, $11 FROM u RETURNING user_id),"
    " i AS (INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, code_hash, invited_by,"
    "                                expires_at, mail_job_id, grant_manage_users, locale)"
    "       SELECT $6, $4, $2, user_id, 'new', $5, $7, $8, now() + make_interval(secs => $9), $10, $11, $12"
    "         FROM m"
    "       RETURNING expires_at)"
    " SELECT " DB_RFC3339("expires_at") " FROM i";

/* InviteNewUser of an address whose account was never activated: that account gets the membership (kept
 * when an expired invitation of this organization left one) and a new `new` invitation. */
static const char SQL_REUSE_UNACTIVATED_INVITATION[] =
    "WITH " COUNT_INVITATION("$3::uuid") ","
    " m AS (INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users) VALUES ($3, $1, $4, $10)"
    "       ON CONFLICT (org_id, user_id) DO UPDATE SET is_owner = EXCLUDED.is_owner,"
    "           can_manage_users = EXCLUDED.can_manage_users"
    "       RETURNING user_id, xmax = 0 AS created),"
    " i AS (INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, code_hash, invited_by,"
    "                                expires_at, mail_job_id, grant_manage_users, locale)"
    "       SELECT $5, $3, $2, user_id, 'new', $4, $6, $7, now() + make_interval(secs => $8), $9, $10, $11"
    "         FROM m"
    "       RETURNING expires_at)"
    " SELECT " DB_RFC3339("expires_at") ", (SELECT created FROM m) FROM i";

static const char SQL_RESEND[] =
    "UPDATE invitations SET status = 'pending', decided_at = NULL, code_hash = $2, failed_attempts = 0,"
    "       expires_at = now() + make_interval(secs => $3), resent_at = now(), resend_count = resend_count + 1,"
    "       mail_job_id = $4, mail_state = 'queued', mail_error = NULL, mail_updated_at = now(),"
    "       locale = $5, reminder_sent_at = NULL" /* a new code and expiry: its own reminder (lib/svc/reminder.c) */
    " WHERE id = $1 RETURNING " DB_RFC3339("expires_at") ", resend_count";

/* clang-format on */

static const char SQL_MARK_REMOVED[] =
    "UPDATE invitations SET status = 'removed', decided_at = now() WHERE id = $1";

/* A never-activated account's membership goes with its `new` invitation. */
static const char SQL_DROP_UNACTIVATED_MEMBERSHIP[] =
    "DELETE FROM org_members m USING users u"
    " WHERE m.org_id = $1 AND m.user_id = $2 AND u.id = m.user_id AND NOT u.enabled RETURNING 1";

/* ... and the account itself, unless something else still holds it. */
const char DOMAIN_SQL_DROP_UNACTIVATED_ACCOUNT[] =
    "DELETE FROM users u WHERE u.id = $1 AND NOT u.enabled AND NOT u.is_admin"
    "   AND NOT EXISTS (SELECT 1 FROM org_members WHERE user_id = u.id)"
    "   AND NOT EXISTS (SELECT 1 FROM invitations WHERE user_id = u.id AND status = 'pending')"
    " RETURNING 1";

int dom_fresh_code(domain_ctx_t *x, fresh_code_t *fc, char *errstr, size_t errstr_size) {
    made_code_t mc;
    int rc = codepool_take(x->codes, x->keys, &mc);
    if (rc == 0) {
        dom_hash_param(mc.hash, fc->hash_param);
        memcpy(fc->sealed, mc.sealed, sizeof(fc->sealed));
    } else {
        snprintf(errstr, errstr_size, "sealing the code failed");
    }
    sodium_memzero(&mc, sizeof(mc));
    return rc;
}

/* Queues the invitation e-mail: the code travels sealed to the mailer's key, on the mail topic only.
 * m->email is set here from email; correlationid and actorid from the command. 0 when queued; -1 when the
 * job cannot be built from what it holds (jansson refuses a string): the caller rejects the command
 * instead of stopping the worker. */
static int queue_mail(domain_ctx_t *x, const cmd_t *cmd, mail_job_t *m, const char *email) {
    text_printf(m->email, sizeof(m->email), "%s", email);
    m->correlationid = cmd->id;
    m->actorid = cmd->actor;
    char *text = mail_job_build(m);
    if (!text) {
        log_error(cmd->id, "the invitation e-mail job cannot be built (a name is not valid UTF-8): rejected");
        return -1;
    }
    outbox_add(x->outbox, x->topic_mail, m->invitation_id, text);
    free(text);
    return 0;
}

/* queue_mail, or a rejection (invalid_command) when the job cannot be built. 1 when queued. */
static int queue_mail_or_reject(domain_ctx_t *x, const cmd_t *cmd, mail_job_t *m, const char *email,
                                domain_result_t *res) {
    if (queue_mail(x, cmd, m, email) == 0)
        return 1;
    domain_reject(res, "invalid_command", "the invitation e-mail cannot be built from these names");
    return 0;
}

static void emit_invitation_created(domain_ctx_t *x, const cmd_t *cmd, const invite_opts_t *o,
                                    const char *inv, const char *user, const char *kind,
                                    const char *expires_at) {
    json_t *d = dom_ids_json(cmd->org_id, user, inv);
    json_object_set_new(d, "email", json_string(cmd->email));
    json_object_set_new(d, "kind", json_string(kind));
    json_object_set_new(d, "grant_owner", json_boolean(cmd->owner));
    json_object_set_new(d, "grant_manage_users", json_boolean(o->grant_manage_users));
    json_object_set_new(d, "locale", o->locale ? json_string(o->locale) : json_null());
    json_object_set_new(d, "invited_by", json_string(cmd->actor));
    json_object_set_new(d, "expires_at", json_string(expires_at));
    dom_emit(x, cmd, "InvitationCreated", cmd->org_id, d);
}

static int rate_limited(domain_ctx_t *x, const PGresult *pr, int col, domain_result_t *res) {
    return dom_rate_limited(x, strtol(PQgetvalue(pr, 0, col), NULL, 10), res);
}

int dom_rate_limited(domain_ctx_t *x, long used, domain_result_t *res) {
    if (used < x->rate_per_hour)
        return 0;
    char detail[64];
    snprintf(detail, sizeof(detail), "limit %ld an hour", x->rate_per_hour);
    domain_reject(res, "rate_limited", detail);
    return 1;
}

/* The start of AddExistingUser and InviteNewUser: the actor may invite in the organization, and may grant
 * owner capabilities when the command asks for them. 1 to go on, 0 rejected, -1 on database failure. */
int dom_authorize_invite(run_t *r, const cmd_t *cmd, actor_info_t *a, domain_result_t *res) {
    int ok = dom_authorize(r, cmd, a, res);
    if (ok <= 0)
        return ok;
    if (cmd->owner && a->role < ROLE_OWNER) {
        domain_reject(res, "owner_grant_denied", NULL);
        return 0;
    }
    if (cmd->can_manage_users && a->role < ROLE_OWNER) {
        domain_reject(res, "manage_grant_denied", NULL);
        return 0;
    }
    return 1;
}

/* The invitation e-mail (job fields borrowed from the arguments). */
static void invitation_mail(mail_job_t *m, const cmd_t *cmd, const actor_info_t *a, const invite_opts_t *o,
                            const char *kind, const char *name, const char *inv, const char *job,
                            const char *sealed, const char *expires) {
    *m = (mail_job_t){.job_id = job,
                      .invitation_id = inv,
                      .org_id = cmd->org_id,
                      .org_name = a->org_name,
                      .kind = kind,
                      .name = name,
                      .inviter_name = a->name,
                      .inviter_email = a->email,
                      .expires_at = expires,
                      .sealed_code = sealed,
                      .grant_owner = cmd->owner,
                      .grant_manage_users = o->grant_manage_users,
                      .locale = o->locale,
                      .app_url = o->app_url};
}

int dom_invitation_mail_ok(const cmd_t *cmd, const actor_info_t *a, const invite_opts_t *o, const char *kind,
                           const char *name, const char *inv, const char *job, const char *sealed,
                           const char *expires) {
    mail_job_t m;
    invitation_mail(&m, cmd, a, o, kind, name, inv, job, sealed, expires);
    text_printf(m.email, sizeof(m.email), "%s", cmd->email);
    m.correlationid = cmd->id;
    m.actorid = cmd->actor;
    char *text = mail_job_build(&m);
    free(text);
    return text != NULL;
}

/* The policy of the command's organization for its address: loaded (row locked), the domain checked.
 * 1 to go on, 0 rejected, -1 on database failure. */
static int invite_policy(run_t *r, const cmd_t *cmd, org_policy_t *pol, domain_result_t *res) {
    if (dom_policy_load(r, cmd->org_id, cmd->email, pol) != 0)
        return -1;
    return dom_policy_allows_address(pol, res);
}

int domain_add_existing_user(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    int ok = dom_authorize_invite(r, cmd, &a, res);
    if (ok <= 0)
        return ok;
    org_policy_t pol;
    if ((ok = invite_policy(r, cmd, &pol, res)) <= 0)
        return ok;
    const char *p1[2] = {cmd->email, cmd->org_id};
    PGresult *pr = dom_q(r, SQL_EXISTING_TARGET, 2, p1);
    if (!pr)
        return -1;
    if (PQgetisnull(pr, 0, 0)) {
        PQclear(pr);
        domain_reject(res, "user_not_found", NULL);
        return 0;
    }
    if (!dom_is_true(pr, 0, 4)) {
        /* Never activated: it could not accept; InviteNewUser invites it again with a one-time password. */
        PQclear(pr);
        domain_reject(res, "user_not_found", DOMAIN_NEVER_ACTIVATED);
        return 0;
    }
    char user[UUID_BUF];
    dom_copy_id(user, PQgetvalue(pr, 0, 0));
    const char *name = dom_keep_text(x, PQgetvalue(pr, 0, 1));
    dom_copy_id(res->user_id, user);
    if (dom_is_true(pr, 0, 2)) {
        PQclear(pr);
        domain_reject(res, "already_member", NULL);
        return 0;
    }
    if (rate_limited(x, pr, 3, res)) {
        PQclear(pr);
        return 0;
    }
    PQclear(pr);
    if ((ok = dom_seat_available(r, cmd->org_id, &pol, res)) <= 0)
        return ok;
    invite_opts_t o;
    dom_invite_opts(x, cmd, &pol, cmd->can_manage_users, &o);

    char inv[UUID_BUF], job[UUID_BUF], ttl[24];
    fresh_code_t fc;
    uuid_generate(inv);
    uuid_generate(job);
    if (dom_fresh_code(x, &fc, r->errstr, r->errstr_size) != 0)
        return -1;
    const char *p[11] = {inv,
                         cmd->org_id,
                         cmd->email,
                         user,
                         dom_bool_str(cmd->owner),
                         fc.hash_param,
                         cmd->actor,
                         dom_ltoa(o.ttl_seconds, ttl),
                         job,
                         dom_bool_str(o.grant_manage_users),
                         o.locale};
    pr = dom_q(r, SQL_INSERT_EXISTING_INVITATION, 11, p);
    if (!pr)
        return dom_failure(r, res);
    char expires[40];
    snprintf(expires, sizeof(expires), "%s", PQgetvalue(pr, 0, 0));
    PQclear(pr);
    return dom_existing_user_invited(x, cmd, &a, &o, user, name, inv, job, fc.sealed, expires, res);
}

int dom_existing_user_invited(domain_ctx_t *x, const cmd_t *cmd, const actor_info_t *a,
                              const invite_opts_t *o, const char *user, const char *name, const char *inv,
                              const char *job, const char *sealed, const char *expires,
                              domain_result_t *res) {
    dom_copy_id(res->invitation_id, inv);
    emit_invitation_created(x, cmd, o, inv, user, "existing", expires);
    mail_job_t m;
    invitation_mail(&m, cmd, a, o, "existing", name, inv, job, sealed, expires);
    if (!queue_mail_or_reject(x, cmd, &m, cmd->email, res))
        return 0;
    res->accepted = 1;
    return 0;
}

/* InviteNewUser of an address whose account exists but was never activated (its earlier invitations were
 * removed, expired, or are pending in other organizations): the same account gets a membership and a new
 * `new` invitation, so the address never becomes impossible to invite. target is SQL_NEW_TARGET's row. */
static int invite_unactivated_user(run_t *r, const cmd_t *cmd, const actor_info_t *a, const invite_opts_t *o,
                                   const PGresult *target, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    char user[UUID_BUF], inv[UUID_BUF], job[UUID_BUF], ttl[24];
    const char *name = PQgetvalue(target, 0, 2); /* lives as long as target: no copy, no cut */
    dom_copy_id(user, PQgetvalue(target, 0, 0));
    dom_copy_id(res->user_id, user);
    fresh_code_t fc;
    uuid_generate(inv);
    uuid_generate(job);
    if (dom_fresh_code(x, &fc, r->errstr, r->errstr_size) != 0)
        return -1;
    const char *p[11] = {user,        cmd->email,
                         cmd->org_id, dom_bool_str(cmd->owner),
                         inv,         fc.hash_param,
                         cmd->actor,  dom_ltoa(o->ttl_seconds, ttl),
                         job,         dom_bool_str(o->grant_manage_users),
                         o->locale};
    PGresult *pr = dom_q(r, SQL_REUSE_UNACTIVATED_INVITATION, 11, p);
    if (!pr)
        return dom_failure(r, res); /* a pending invitation of this organization: invitation_pending */
    char expires[40];
    snprintf(expires, sizeof(expires), "%s", PQgetvalue(pr, 0, 0));
    int membership_created = dom_is_true(pr, 0, 1);
    PQclear(pr);
    dom_copy_id(res->invitation_id, inv);
    if (membership_created) {
        json_t *d = dom_ids_json(cmd->org_id, user, NULL);
        json_object_set_new(d, "is_owner", json_boolean(cmd->owner));
        json_object_set_new(d, "can_manage_users", json_boolean(o->grant_manage_users));
        dom_emit(x, cmd, "MembershipCreated", cmd->org_id, d);
    }
    emit_invitation_created(x, cmd, o, inv, user, "new", expires);
    mail_job_t m;
    invitation_mail(&m, cmd, a, o, "new", name, inv, job, fc.sealed, expires);
    queue_mail(x, cmd, &m, cmd->email);
    res->accepted = 1;
    return 0;
}

int dom_new_user_invited(domain_ctx_t *x, const cmd_t *cmd, const actor_info_t *a, const invite_opts_t *o,
                         const char *user, const char *inv, const char *job, const char *sealed,
                         const char *expires, domain_result_t *res) {
    const char *name = cmd->name ? cmd->name : "";
    dom_copy_id(res->user_id, user);
    dom_copy_id(res->invitation_id, inv);

    json_t *d = dom_ids_json(cmd->org_id, user, NULL);
    json_object_set_new(d, "email", json_string(cmd->email));
    json_object_set_new(d, "name", json_string(name));
    json_object_set_new(d, "enabled", json_false());
    dom_emit(x, cmd, "UserCreated", cmd->org_id, d);
    d = dom_ids_json(cmd->org_id, user, NULL);
    json_object_set_new(d, "is_owner", json_boolean(cmd->owner));
    json_object_set_new(d, "can_manage_users", json_boolean(o->grant_manage_users));
    dom_emit(x, cmd, "MembershipCreated", cmd->org_id, d);
    emit_invitation_created(x, cmd, o, inv, user, "new", expires);
    mail_job_t m;
    invitation_mail(&m, cmd, a, o, "new", name, inv, job, sealed, expires);
    if (!queue_mail_or_reject(x, cmd, &m, cmd->email, res))
        return 0;
    res->accepted = 1;
    return 0;
}

int domain_invite_new_user(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    int ok = dom_authorize_invite(r, cmd, &a, res);
    if (ok <= 0)
        return ok;
    org_policy_t pol;
    if ((ok = invite_policy(r, cmd, &pol, res)) <= 0)
        return ok;
    invite_opts_t o;
    dom_invite_opts(x, cmd, &pol, cmd->can_manage_users, &o);
    const char *p1[2] = {cmd->email, cmd->org_id};
    PGresult *pr = dom_q(r, SQL_NEW_TARGET, 2, p1);
    if (!pr)
        return -1;
    if (!PQgetisnull(pr, 0, 0) && dom_is_true(pr, 0, 1)) {
        dom_copy_id(res->user_id, PQgetvalue(pr, 0, 0));
        PQclear(pr);
        domain_reject(res, "user_already_exists", NULL);
        return 0;
    }
    if (rate_limited(x, pr, 3, res)) {
        PQclear(pr);
        return 0;
    }
    /* Seats are members plus pending 'existing' invitations (SQL_SEATS_USED): inviting a never-activated
     * account that is a member already adds none, so the limit does not stop it. */
    int member = !PQgetisnull(pr, 0, 0) && dom_is_true(pr, 0, 4);
    if (!member && (ok = dom_seat_available(r, cmd->org_id, &pol, res)) <= 0) {
        PQclear(pr);
        return ok;
    }
    if (!PQgetisnull(pr, 0, 0)) {
        /* An account that was never activated is only a placeholder for its invitations: invite it again. */
        int rc = invite_unactivated_user(r, cmd, &a, &o, pr, res);
        PQclear(pr);
        return rc;
    }
    PQclear(pr);

    char user[UUID_BUF], inv[UUID_BUF], job[UUID_BUF], ttl[24];
    fresh_code_t fc;
    uuid_generate(user);
    uuid_generate(inv);
    uuid_generate(job);
    if (dom_fresh_code(x, &fc, r->errstr, r->errstr_size) != 0)
        return -1;
    const char *name = cmd->name ? cmd->name : "";
    const char *p[12] = {user,
                         cmd->email,
                         name,
                         cmd->org_id,
                         dom_bool_str(cmd->owner),
                         inv,
                         fc.hash_param,
                         cmd->actor,
                         dom_ltoa(o.ttl_seconds, ttl),
                         job,
                         dom_bool_str(o.grant_manage_users),
                         o.locale};
    pr = dom_q(r, SQL_INSERT_NEW_USER_INVITATION, 12, p);
    if (!pr)
        return dom_failure(r, res);
    char expires[40];
    snprintf(expires, sizeof(expires), "%s", PQgetvalue(pr, 0, 0));
    PQclear(pr);
    return dom_new_user_invited(x, cmd, &a, &o, user, inv, job, fc.sealed, expires, res);
}

/* Locks an invitation of the command's organization that a resend or a removal may act on. */
static int invitation_of_org(run_t *r, const cmd_t *cmd, invitation_t *inv, domain_result_t *res) {
    int found = dom_invitation_lock(r, cmd->invitation_id, inv);
    if (found < 0)
        return -1;
    dom_copy_id(res->invitation_id, cmd->invitation_id);
    if (!found || strcmp(inv->org_id, cmd->org_id) != 0) {
        domain_reject(res, "invitation_not_found", NULL);
        return 0;
    }
    if (inv->user_id[0])
        dom_copy_id(res->user_id, inv->user_id);
    if (strcmp(inv->status, "pending") != 0 && strcmp(inv->status, "expired") != 0) {
        domain_reject(res, "invitation_not_pending", NULL);
        return 0;
    }
    return 1;
}

/* The opening of RemoveInvitation (ResendInvitation locks the policy row in between): the actor may send
 * this command to the organization and the invitation is one of its own, pending or expired. 1 to go on, 0
 * with res rejected, -1 on a failure. */
static int authorized_invitation(run_t *r, const cmd_t *cmd, actor_info_t *a, invitation_t *inv,
                                 domain_result_t *res) {
    int ok = dom_authorize(r, cmd, a, res);
    return ok <= 0 ? ok : invitation_of_org(r, cmd, inv, res);
}

int domain_resend_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    invitation_t inv;
    org_policy_t pol;
    int ok = dom_authorize(r, cmd, &a, res);
    if (ok <= 0)
        return ok;
    /* Lock order: the organization's policy row before the invitation row, as every command that takes both
     * (InviteNewUser and AddExistingUser lock the policy row before they write invitations): else this
     * command and a batch that invites and then accepts could each hold the row the other waits for. The
     * command names the organization; the invitation must be one of its own (invitation_of_org). */
    if (dom_policy_load(r, cmd->org_id, NULL, &pol) != 0)
        return -1;
    if ((ok = invitation_of_org(r, cmd, &inv, res)) <= 0)
        return ok;
    if (inv.grant_owner && a.role < ROLE_OWNER) {
        domain_reject(res, "owner_grant_denied", "this invitation grants owner capabilities");
        return 0;
    }
    if (inv.grant_manage_users && a.role < ROLE_OWNER) {
        domain_reject(res, "manage_grant_denied", "this invitation grants user management");
        return 0;
    }
    if (dom_policy_load(r, inv.org_id, inv.email, &pol) != 0) /* the same row, locked already */
        return -1;
    /* A domain the policy has forbidden since: no new code goes there. */
    if (!dom_policy_allows_address(&pol, res))
        return 0;
    /* An expired 'existing' invitation that becomes pending takes a seat again. */
    if (strcmp(inv.status, "expired") == 0 && strcmp(inv.kind, "existing") == 0 &&
        (ok = dom_seat_available(r, inv.org_id, &pol, res)) <= 0)
        return ok;
    invite_opts_t o;
    dom_invite_opts(x, cmd, &pol, inv.grant_manage_users, &o);
    char job[UUID_BUF], ttl[24];
    fresh_code_t fc;
    uuid_generate(job);
    if (dom_fresh_code(x, &fc, r->errstr, r->errstr_size) != 0)
        return -1;
    const char *p[5] = {inv.id, fc.hash_param, dom_ltoa(o.ttl_seconds, ttl), job, o.locale};
    PGresult *pr = dom_q(r, SQL_RESEND, 5, p);
    if (!pr)
        return dom_failure(r, res);
    char expires[40];
    snprintf(expires, sizeof(expires), "%s", PQgetvalue(pr, 0, 0));
    long count = strtol(PQgetvalue(pr, 0, 1), NULL, 10);
    PQclear(pr);
    json_t *d = dom_ids_json(inv.org_id, inv.user_id[0] ? inv.user_id : NULL, inv.id);
    json_object_set_new(d, "email", json_string(inv.email));
    json_object_set_new(d, "previous_status", json_string(inv.status));
    json_object_set_new(d, "expires_at", json_string(expires));
    json_object_set_new(d, "resend_count", json_integer(count));
    json_object_set_new(d, "locale", o.locale ? json_string(o.locale) : json_null());
    dom_emit(x, cmd, "InvitationResent", inv.org_id, d);
    mail_job_t m = {.job_id = job,
                    .invitation_id = inv.id,
                    .org_id = inv.org_id,
                    .org_name = inv.org_name,
                    .kind = inv.kind,
                    .name = inv.invitee_name,
                    .inviter_name = a.name,
                    .inviter_email = a.email,
                    .expires_at = expires,
                    .sealed_code = fc.sealed,
                    .grant_owner = inv.grant_owner,
                    .grant_manage_users = inv.grant_manage_users,
                    .locale = o.locale,
                    .app_url = o.app_url};
    if (!queue_mail_or_reject(x, cmd, &m, inv.email, res))
        return 0;
    res->accepted = 1;
    return 0;
}

int domain_remove_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    invitation_t inv;
    int ok = authorized_invitation(r, cmd, &a, &inv, res);
    if (ok <= 0)
        return ok;
    const char *p1[1] = {inv.id};
    PGresult *pr = dom_q(r, SQL_MARK_REMOVED, 1, p1);
    if (!pr)
        return -1;
    PQclear(pr);
    int membership_removed = 0, account_removed = 0;
    if (strcmp(inv.kind, "new") == 0 && inv.user_id[0]) {
        const char *p2[2] = {inv.org_id, inv.user_id};
        pr = dom_q(r, SQL_DROP_UNACTIVATED_MEMBERSHIP, 2, p2);
        if (!pr)
            return dom_failure(r, res);
        membership_removed = PQntuples(pr) > 0;
        PQclear(pr);
        const char *p3[1] = {inv.user_id};
        pr = dom_q(r, DOMAIN_SQL_DROP_UNACTIVATED_ACCOUNT, 1, p3);
        if (!pr)
            return dom_failure(r, res);
        account_removed = PQntuples(pr) > 0;
        PQclear(pr);
    }
    json_t *d = dom_ids_json(inv.org_id, inv.user_id[0] ? inv.user_id : NULL, inv.id);
    json_object_set_new(d, "email", json_string(inv.email));
    json_object_set_new(d, "kind", json_string(inv.kind));
    json_object_set_new(d, "previous_status", json_string(inv.status));
    json_object_set_new(d, "membership_removed", json_boolean(membership_removed));
    json_object_set_new(d, "account_removed", json_boolean(account_removed));
    dom_emit(x, cmd, "InvitationRemoved", inv.org_id, d);
    if (membership_removed) {
        d = dom_ids_json(inv.org_id, inv.user_id, NULL);
        json_object_set_new(d, "reason", json_string("invitation_removed"));
        dom_emit(x, cmd, "MemberRemoved", inv.org_id, d);
    }
    res->accepted = 1;
    return 0;
}
