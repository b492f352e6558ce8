/* The domain rules: what each command does to PostgreSQL, who may do it, and the events it emits. */
#include "domain.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "mailjob.h"
#include "text.h"

/* ---- SQL: every statement of the module, with parameters ---- */

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The organization and what the actor may do in it, in one row whatever exists. */
static const char SQL_ACTOR_IN_ORG[] =
    "SELECT o.name, u.id IS NOT NULL, coalesce(u.enabled, false), coalesce(u.is_admin, false),"
    "       m.user_id IS NOT NULL, coalesce(m.is_owner, false), coalesce(m.can_manage_users, false),"
    "       coalesce(u.name, ''), coalesce(u.email, '')"
    "  FROM (SELECT $1::uuid AS actor, $2::uuid AS org) a"
    "  LEFT JOIN organizations o ON o.id = a.org"
    "  LEFT JOIN users u ON u.id = a.actor"
    "  LEFT JOIN org_members m ON m.org_id = a.org AND m.user_id = a.actor";

static const char SQL_ACTOR[] = "SELECT enabled, is_admin, name, email FROM users WHERE id = $1";

/* For AddExistingUser: the account, whether it is a member, the organization's invitations this hour, and
 * whether the account is usable (activated, or an admin). */
static const char SQL_EXISTING_TARGET[] =
    "SELECT u.id, u.name, EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = $2 AND m.user_id = u.id),"
    "       (SELECT coalesce(sum(created), 0) FROM invitation_rate WHERE org_id = $2 AND minute > now() - interval '1 hour'),"
    "       u.enabled OR u.is_admin"
    "  FROM (SELECT 1) one LEFT JOIN users u ON lower(u.email) = lower($1)";

/* Counts a new invitation towards its organization's hourly limit (see SQL_EXISTING_TARGET). */
#define COUNT_INVITATION(org)                                                                                \
    "r AS (INSERT INTO invitation_rate (org_id, minute, created) VALUES (" org ", date_trunc('minute', now()), 1)" \
    "      ON CONFLICT (org_id, minute) DO UPDATE SET created = invitation_rate.created + 1)"

static const char SQL_INSERT_EXISTING_INVITATION[] =
    "WITH " COUNT_INVITATION("$2::uuid") ","
    " i AS (INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, code_hash, invited_by,"
    "                                expires_at, mail_job_id)"
    "       VALUES ($1, $2, $3, $4, 'existing', $5, $6, $7, now() + make_interval(secs => $8), $9)"
    "       RETURNING expires_at)"
    " SELECT " TS("expires_at") " FROM i";

/* For InviteNewUser: the organization's invitations this hour, and the account already there, if any
 * (locked: a removal may be deleting it, an activation enabling it), whether it is usable (activated, or an
 * admin) and its name. */
static const char SQL_NEW_TARGET[] =
    "SELECT u.id, coalesce(u.enabled OR u.is_admin, false), coalesce(u.name, ''), r.n"
    "  FROM (SELECT coalesce(sum(created), 0) AS n FROM invitation_rate"
    "         WHERE org_id = $2 AND minute > now() - interval '1 hour') r"
    "  LEFT JOIN LATERAL (SELECT id, enabled, is_admin, name FROM users WHERE lower(email) = lower($1) FOR UPDATE) u"
    "    ON true";

/* The disabled account, its membership and the invitation, in one statement. */
static const char SQL_INSERT_NEW_USER_INVITATION[] =
    "WITH " COUNT_INVITATION("$4::uuid") ","
    " u AS (INSERT INTO users (id, email, username, name) VALUES ($1, $2, $2, $3) RETURNING id),"
    " m AS (INSERT INTO org_members (org_id, user_id, is_owner) SELECT $4, id, $5 FROM u RETURNING user_id),"
    " i AS (INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, code_hash, invited_by,"
    "                                expires_at, mail_job_id)"
    "       SELECT $6, $4, $2, user_id, 'new', $5, $7, $8, now() + make_interval(secs => $9), $10 FROM m"
    "       RETURNING expires_at)"
    " SELECT " TS("expires_at") " FROM i";

/* InviteNewUser of an address whose account was never activated: that account gets the membership (kept
 * when an expired invitation of this organization left one) and a new `new` invitation. */
static const char SQL_REUSE_UNACTIVATED_INVITATION[] =
    "WITH " COUNT_INVITATION("$3::uuid") ","
    " m AS (INSERT INTO org_members (org_id, user_id, is_owner) VALUES ($3, $1, $4)"
    "       ON CONFLICT (org_id, user_id) DO UPDATE SET is_owner = EXCLUDED.is_owner"
    "       RETURNING user_id, xmax = 0 AS created),"
    " i AS (INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, code_hash, invited_by,"
    "                                expires_at, mail_job_id)"
    "       SELECT $5, $3, $2, user_id, 'new', $4, $6, $7, now() + make_interval(secs => $8), $9 FROM m"
    "       RETURNING expires_at)"
    " SELECT " TS("expires_at") ", (SELECT created FROM m) FROM i";

static const char SQL_INVITATION_FOR_UPDATE[] =
    "SELECT i.org_id, i.user_id, i.email, i.kind, i.grant_owner, i.status, i.code_hash, i.failed_attempts,"
    "       i.expires_at <= now(), coalesce(u.name, ''), o.name"
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
    " WHERE id = $1 AND status = 'pending' AND expires_at > now() AND failed_attempts < 5 RETURNING 1";

static const char SQL_JOIN_ORG[] =
    "INSERT INTO org_members (org_id, user_id, is_owner) VALUES ($1, $2, $3)"
    " ON CONFLICT (org_id, user_id) DO UPDATE SET is_owner = org_members.is_owner OR EXCLUDED.is_owner"
    " RETURNING is_owner, can_manage_users";

static const char SQL_USER_BY_EMAIL_FOR_UPDATE[] =
    "SELECT id, enabled, name FROM users WHERE lower(email) = lower($1) FOR UPDATE";

static const char SQL_ACTIVATE_USER[] =
    "UPDATE users SET password_hash = $2, enabled = true, activated_at = now() WHERE id = $1 AND NOT enabled"
    " RETURNING 1";

static const char SQL_RESEND[] =
    "UPDATE invitations SET status = 'pending', decided_at = NULL, code_hash = $2, failed_attempts = 0,"
    "       expires_at = now() + make_interval(secs => $3), resent_at = now(), resend_count = resend_count + 1,"
    "       mail_job_id = $4, mail_state = 'queued', mail_error = NULL, mail_updated_at = now()"
    " WHERE id = $1 RETURNING " TS("expires_at") ", resend_count";

static const char SQL_MARK_REMOVED[] =
    "UPDATE invitations SET status = 'removed', decided_at = now() WHERE id = $1";

/* A never-activated account's membership goes with its `new` invitation. */
static const char SQL_DROP_UNACTIVATED_MEMBERSHIP[] =
    "DELETE FROM org_members m USING users u"
    " WHERE m.org_id = $1 AND m.user_id = $2 AND u.id = m.user_id AND NOT u.enabled RETURNING 1";

/* ... and the account itself, unless something else still holds it. */
static const char SQL_DROP_UNACTIVATED_ACCOUNT[] =
    "DELETE FROM users u WHERE u.id = $1 AND NOT u.enabled AND NOT u.is_admin"
    "   AND NOT EXISTS (SELECT 1 FROM org_members WHERE user_id = u.id)"
    "   AND NOT EXISTS (SELECT 1 FROM invitations WHERE user_id = u.id AND status = 'pending')"
    " RETURNING 1";

/* The target member and every owner, locked, so that the last-owner rule holds against races; with whether
 * each has activated their account (a pending owner does not count towards the rule). */
static const char SQL_LOCK_MEMBER_AND_OWNERS[] =
    "SELECT m.user_id = $2, m.is_owner, m.can_manage_users, u.enabled FROM org_members m JOIN users u ON u.id = m.user_id"
    " WHERE m.org_id = $1 AND (m.is_owner OR m.user_id = $2) FOR UPDATE OF m";

static const char SQL_REMOVE_MEMBER[] = "DELETE FROM org_members WHERE org_id = $1 AND user_id = $2";

/* Several rows: locked first in id order (as the mailer locks invitations), so that no two transactions
 * wait on each other's rows in opposite orders. */
static const char SQL_WITHDRAW_PENDING_OF_MEMBER[] =
    "WITH l AS (SELECT id FROM invitations WHERE org_id = $1 AND user_id = $2 AND status = 'pending'"
    "           ORDER BY id FOR UPDATE)"
    " UPDATE invitations i SET status = 'removed', decided_at = now() FROM l WHERE i.id = l.id RETURNING i.id";

static const char SQL_SET_ROLE[] =
    "UPDATE org_members SET is_owner = $3, can_manage_users = $4 WHERE org_id = $1 AND user_id = $2";

static const char SQL_CREATE_ORG[] =
    "WITH o AS (INSERT INTO organizations (id, name) VALUES ($1, $2) RETURNING id)"
    " INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users) SELECT id, $3, true, true FROM o";

static const char SQL_USER_EXISTS[] = "SELECT 1 FROM users WHERE id = $1";

static const char SQL_CREATE_USER[] =
    "INSERT INTO users (id, email, username, name, password_hash, enabled, activated_at)"
    " VALUES ($1, $2, $2, $3, $4, true, now())";

/* ---- result codes and their messages ---- */

typedef struct code_message {
    const char *code, *message;
} code_message_t;

static const code_message_t messages[] = {
    {"invalid_command", "The command is malformed"},
    {"unknown_command_type", "This command type is not known"},
    {"organization_not_found",
     "No organization has this id: check the organization id (refresh, or navigate back to the organization "
     "dashboard)"},
    {"permission_denied",
     "You do not have permission to do this in this organization: ask an organization owner or a Raikoo admin"},
    {"owner_grant_denied",
     "Only organization owners and Raikoo admins can grant or change owner capabilities: ask an owner or an admin"},
    {"user_not_found", "No Raikoo account has this e-mail address or id: to add a new person, use Invite New User"},
    {"user_already_exists",
     "A user with this e-mail address already has a Raikoo account: use Add Existing User instead"},
    {"already_member", "This user is already a member of the organization"},
    {"invitation_pending",
     "A pending invitation for this e-mail address already exists: resend it, or remove it and invite again"},
    {"invitation_not_found", "No such invitation: check the invitation id or the e-mail address"},
    {"invitation_not_pending",
     "This invitation was already accepted or removed: send a new invitation if the person should join"},
    {"invitation_expired", "This invitation has expired: ask the organization to resend it"},
    {"invalid_code", "The code is not right: check the code in the invitation e-mail"},
    {"too_many_attempts",
     "Too many wrong codes: ask the organization to resend the invitation, which issues a new code"},
    {"account_already_active", "This account is already active: sign in, or accept the invitation instead"},
    {"invalid_password_hash",
     "The password must arrive as an Argon2id hash of at least the interactive cost (the raikoo CLI and producer "
     "library do this)"},
    {"not_member", "This user is not a member of the organization"},
    {"last_owner", "An organization must keep at least one owner: make another member an owner first"},
    {"rate_limited", "This organization has sent too many invitations in the last hour: try again later"},
    {NULL, NULL},
};

void domain_reject(domain_result_t *res, const char *code, const char *detail) {
    const char *msg = "Rejected";
    for (const code_message_t *m = messages; m->code; m++) {
        if (strcmp(m->code, code) == 0) {
            code = m->code; /* a static string, kept by the result */
            msg = m->message;
            break;
        }
    }
    res->accepted = 0;
    res->code = code;
    if (detail && *detail)
        text_printf(res->message, sizeof(res->message), "%s (%s)", msg, detail);
    else
        text_printf(res->message, sizeof(res->message), "%s", msg);
}

/* ---- helpers ---- */

typedef enum { ROLE_NONE, ROLE_MANAGER, ROLE_OWNER, ROLE_ADMIN } role_t;

/* Runs one statement. NULL on failure, with x's last error: a constraint the rules know is turned into a
 * rejection by the caller through failure(); anything else is the database's fault. */
typedef struct run {
    domain_ctx_t *x;
    char *errstr;
    size_t errstr_size;
    char sqlstate[6];
    char constraint[64];
    int wrote, failed; /* a write ran; a statement failed (the transaction is then aborted) */
} run_t;

static PGresult *q(run_t *r, const char *sql, int n, const char *const *p) {
    PGresult *res = db_exec_prepared(r->x->db, sql, n, p);
    ExecStatusType st = PQresultStatus(res);
    if (strncmp(sql, "SELECT", 6) != 0)
        r->wrote = 1; /* INSERT, UPDATE, DELETE, or WITH ... INSERT */
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        r->sqlstate[0] = '\0';
        return res;
    }
    r->failed = 1;
    text_printf(r->sqlstate, sizeof(r->sqlstate), "%s", db_sqlstate(res));
    const char *c = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    text_printf(r->constraint, sizeof(r->constraint), "%s", c ? c : "");
    /* The primary message only: the DETAIL of a refused row lists its values (a password hash), and a
     * data exception's message quotes the value; those are described by SQLSTATE and constraint alone. */
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!r->sqlstate[0] || !primary)
        text_printf(r->errstr, r->errstr_size, "%s", PQerrorMessage(r->x->db));
    else if (strncmp(r->sqlstate, "22", 2) == 0)
        text_printf(r->errstr, r->errstr_size, "data exception (SQLSTATE %s)", r->sqlstate);
    else
        text_printf(r->errstr, r->errstr_size, "%s (SQLSTATE %s)", primary, r->sqlstate);
    for (char *s = r->errstr; *s; s++)
        if (*s == '\n')
            *s = ' ';
    PQclear(res);
    return NULL;
}

/* After q() failed: 0 with res rejected when the failure is a rule the database enforces, else -1. */
static int failure(run_t *r, domain_result_t *res) {
    if (strcmp(r->sqlstate, "RK001") == 0) {
        domain_reject(res, "last_owner", NULL);
        return 0;
    }
    if (strcmp(r->sqlstate, "23505") == 0) {
        if (strcmp(r->constraint, "invitations_one_pending") == 0) {
            domain_reject(res, "invitation_pending", NULL);
            return 0;
        }
        if (strcmp(r->constraint, "users_email_key") == 0) {
            domain_reject(res, "user_already_exists", NULL);
            return 0;
        }
        if (strcmp(r->constraint, "org_members_pkey") == 0) {
            domain_reject(res, "already_member", NULL);
            return 0;
        }
    }
    if (strcmp(r->sqlstate, "23503") == 0) {
        /* A row the command names vanished under it (e.g. an account removed meanwhile). */
        domain_reject(res, "user_not_found", NULL);
        return 0;
    }
    return -1;
}

static int is_true(const PGresult *res, int row, int col) {
    return PQgetvalue(res, row, col)[0] == 't';
}

static void copy_id(char dst[37], const char *src) {
    text_printf(dst, 37, "%s", src ? src : "");
}

static const char *bool_str(int b) {
    return b ? "true" : "false";
}

/* The bytea text form ("\x" + hex) of a code hash, for a query parameter. */
static void hash_param(const unsigned char h[CODE_HASH_LEN], char out[2 * CODE_HASH_LEN + 3]) {
    out[0] = '\\';
    out[1] = 'x';
    sodium_bin2hex(out + 2, 2 * CODE_HASH_LEN + 1, h, CODE_HASH_LEN);
}

/* Reads a bytea column in hex output form into 32 bytes; -1 when it is not that. */
static int hash_column(const PGresult *res, int row, int col, unsigned char out[CODE_HASH_LEN]) {
    const char *v = PQgetvalue(res, row, col);
    size_t len = 0;
    if (strncmp(v, "\\x", 2) != 0 ||
        sodium_hex2bin(out, CODE_HASH_LEN, v + 2, strlen(v + 2), NULL, &len, NULL) != 0 || len != CODE_HASH_LEN)
        return -1;
    return 0;
}

/* Looks up the organization and the actor's role in it. 1 when the command may go on; 0 with res
 * rejected (organization_not_found, permission_denied); -1 on database failure. On success fills
 * org_name and the actor's name and e-mail (for the invitation e-mail). */
typedef struct actor_info {
    role_t role;
    const char *org_name, *name; /* owned by x->texts */
    char email[EMAIL_MAX + 1];
} actor_info_t;

/* A copy of s (a name read from the database, of any length) that lives until domain_forget(). */
static const char *keep_text(domain_ctx_t *x, const char *s) {
    if (x->ntexts == x->cap_texts) {
        x->cap_texts = x->cap_texts ? 2 * x->cap_texts : 64;
        x->texts = xrealloc(x->texts, x->cap_texts * sizeof(*x->texts));
    }
    return x->texts[x->ntexts++] = xstrdup(s ? s : "");
}

static int authorize(run_t *r, const cmd_t *cmd, actor_info_t *a, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    domain_auth_t *au = NULL;
    for (int i = 0; i < x->nauth && !au; i++)
        if (strcmp(x->auth[i].actor, cmd->actor) == 0 && strcmp(x->auth[i].org, cmd->org_id) == 0)
            au = &x->auth[i];
    if (!au) {
        const char *p[2] = {cmd->actor, cmd->org_id};
        PGresult *pr = q(r, SQL_ACTOR_IN_ORG, 2, p);
        if (!pr)
            return failure(r, res) == 0 ? 0 : -1;
        au = &x->auth[x->nauth < DOMAIN_AUTH_CACHE ? x->nauth++ : DOMAIN_AUTH_CACHE - 1];
        memset(au, 0, sizeof(*au));
        text_printf(au->actor, sizeof(au->actor), "%s", cmd->actor);
        text_printf(au->org, sizeof(au->org), "%s", cmd->org_id);
        au->found_org = !PQgetisnull(pr, 0, 0);
        int enabled = is_true(pr, 0, 2), admin = is_true(pr, 0, 3), member = is_true(pr, 0, 4);
        int owner = is_true(pr, 0, 5), manager = is_true(pr, 0, 6);
        au->role = !enabled             ? ROLE_NONE
                   : admin              ? ROLE_ADMIN
                   : member && owner    ? ROLE_OWNER
                   : member && manager  ? ROLE_MANAGER
                                        : ROLE_NONE;
        au->org_name = keep_text(x, PQgetvalue(pr, 0, 0));
        au->name = keep_text(x, PQgetvalue(pr, 0, 7));
        text_printf(au->email, sizeof(au->email), "%s", PQgetvalue(pr, 0, 8));
        PQclear(pr);
    }
    memset(a, 0, sizeof(*a));
    copy_id(res->org_id, cmd->org_id);
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
static int require_admin(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    const char *p[1] = {cmd->actor};
    PGresult *pr = q(r, SQL_ACTOR, 1, p);
    if (!pr)
        return -1;
    int ok = PQntuples(pr) == 1 && is_true(pr, 0, 0) && is_true(pr, 0, 1);
    PQclear(pr);
    if (!ok)
        domain_reject(res, "permission_denied", "only a Raikoo admin can do this");
    return ok;
}

static json_t *ids_json(const char *org_id, const char *user_id, const char *invitation_id) {
    json_t *d = json_object();
    if (invitation_id)
        json_object_set_new(d, "invitation_id", json_string(invitation_id));
    if (org_id)
        json_object_set_new(d, "org_id", json_string(org_id));
    if (user_id)
        json_object_set_new(d, "user_id", json_string(user_id));
    return d;
}

static void emit(domain_ctx_t *x, const cmd_t *cmd, const char *name, const char *key, json_t *data) {
    outbox_event(x->outbox, x->topic_events, name, key, cmd->id, cmd->actor, data);
}

/* Makes a fresh code: its hash (as a query parameter) and its sealed form for the mail job. */
typedef struct fresh_code {
    char hash_param[2 * CODE_HASH_LEN + 3];
    char sealed[SEALED_CODE_B64_MAX];
} fresh_code_t;

static int fresh_code_new(domain_ctx_t *x, fresh_code_t *fc, char *errstr, size_t errstr_size) {
    char code[CODE_LEN + 1];
    unsigned char h[CODE_HASH_LEN];
    code_generate(code);
    code_hash(x->keys, code, h);
    hash_param(h, fc->hash_param);
    int rc = code_seal(x->keys, code, fc->sealed, sizeof(fc->sealed));
    sodium_memzero(code, sizeof(code));
    if (rc != 0)
        snprintf(errstr, errstr_size, "sealing the code failed");
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

static char *ltoa_buf(long v, char buf[24]) {
    snprintf(buf, 24, "%ld", v);
    return buf;
}

/* ---- the commands ---- */

static int create_organization(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    int ok = require_admin(r, cmd, res);
    if (ok <= 0)
        return ok;
    const char *p1[1] = {cmd->owner_user_id};
    PGresult *pr = q(r, SQL_USER_EXISTS, 1, p1);
    if (!pr)
        return -1;
    int found = PQntuples(pr) == 1;
    PQclear(pr);
    copy_id(res->user_id, cmd->owner_user_id);
    if (!found) {
        domain_reject(res, "user_not_found", "the owner_user_id names no account");
        return 0;
    }
    char org[37];
    uuid_generate(org);
    const char *p[3] = {org, cmd->name, cmd->owner_user_id};
    pr = q(r, SQL_CREATE_ORG, 3, p);
    if (!pr)
        return failure(r, res);
    PQclear(pr);
    copy_id(res->org_id, org);
    json_t *d = ids_json(org, NULL, NULL);
    json_object_set_new(d, "name", json_string(cmd->name));
    json_object_set_new(d, "owner_user_id", json_string(cmd->owner_user_id));
    emit(x, cmd, "OrganizationCreated", org, d);
    d = ids_json(org, cmd->owner_user_id, NULL);
    json_object_set_new(d, "is_owner", json_true());
    json_object_set_new(d, "can_manage_users", json_true());
    emit(x, cmd, "MembershipCreated", org, d);
    res->accepted = 1;
    return 0;
}

static int create_user(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    int ok = require_admin(r, cmd, res);
    if (ok <= 0)
        return ok;
    if (!password_hash_acceptable(cmd->password_hash)) {
        domain_reject(res, "invalid_password_hash", NULL);
        return 0;
    }
    char id[37];
    uuid_generate(id);
    const char *p[4] = {id, cmd->email, cmd->name, cmd->password_hash};
    PGresult *pr = q(r, SQL_CREATE_USER, 4, p);
    if (!pr) {
        if (failure(r, res) != 0)
            return -1;
        if (strcmp(res->code, "user_already_exists") == 0)
            snprintf(res->message, sizeof(res->message), "An account with this e-mail address already exists");
        return 0;
    }
    PQclear(pr);
    copy_id(res->user_id, id);
    json_t *d = ids_json(NULL, id, NULL);
    json_object_set_new(d, "email", json_string(cmd->email));
    json_object_set_new(d, "name", json_string(cmd->name));
    json_object_set_new(d, "enabled", json_true());
    emit(r->x, cmd, "UserCreated", id, d);
    res->accepted = 1;
    return 0;
}

static void emit_invitation_created(domain_ctx_t *x, const cmd_t *cmd, const char *inv, const char *user,
                                    const char *kind, const char *expires_at) {
    json_t *d = ids_json(cmd->org_id, user, inv);
    json_object_set_new(d, "email", json_string(cmd->email));
    json_object_set_new(d, "kind", json_string(kind));
    json_object_set_new(d, "grant_owner", json_boolean(cmd->owner));
    json_object_set_new(d, "invited_by", json_string(cmd->actor));
    json_object_set_new(d, "expires_at", json_string(expires_at));
    emit(x, cmd, "InvitationCreated", cmd->org_id, d);
}

static int rate_limited(domain_ctx_t *x, const PGresult *pr, int col, domain_result_t *res) {
    long used = strtol(PQgetvalue(pr, 0, col), NULL, 10);
    if (used < x->rate_per_hour)
        return 0;
    char detail[64];
    snprintf(detail, sizeof(detail), "limit %ld an hour", x->rate_per_hour);
    domain_reject(res, "rate_limited", detail);
    return 1;
}

/* The start of AddExistingUser and InviteNewUser: the actor may invite in the organization, and may grant
 * owner capabilities when the command asks for them. 1 to go on, 0 rejected, -1 on database failure. */
static int authorize_invite(run_t *r, const cmd_t *cmd, actor_info_t *a, domain_result_t *res) {
    int ok = authorize(r, cmd, a, res);
    if (ok <= 0)
        return ok;
    if (cmd->owner && a->role < ROLE_OWNER) {
        domain_reject(res, "owner_grant_denied", NULL);
        return 0;
    }
    return 1;
}

static int add_existing_user(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    int ok = authorize_invite(r, cmd, &a, res);
    if (ok <= 0)
        return ok;
    const char *p1[2] = {cmd->email, cmd->org_id};
    PGresult *pr = q(r, SQL_EXISTING_TARGET, 2, p1);
    if (!pr)
        return -1;
    if (PQgetisnull(pr, 0, 0)) {
        PQclear(pr);
        domain_reject(res, "user_not_found", NULL);
        return 0;
    }
    if (!is_true(pr, 0, 4)) {
        /* Never activated: it could not accept; InviteNewUser invites it again with a one-time password. */
        PQclear(pr);
        domain_reject(res, "user_not_found", "the account of this address was never activated");
        return 0;
    }
    char user[37];
    copy_id(user, PQgetvalue(pr, 0, 0));
    const char *name = keep_text(x, PQgetvalue(pr, 0, 1));
    copy_id(res->user_id, user);
    if (is_true(pr, 0, 2)) {
        PQclear(pr);
        domain_reject(res, "already_member", NULL);
        return 0;
    }
    if (rate_limited(x, pr, 3, res)) {
        PQclear(pr);
        return 0;
    }
    PQclear(pr);

    char inv[37], job[37], ttl[24];
    fresh_code_t fc;
    uuid_generate(inv);
    uuid_generate(job);
    if (fresh_code_new(x, &fc, r->errstr, r->errstr_size) != 0)
        return -1;
    const char *p[9] = {inv, cmd->org_id, cmd->email, user, bool_str(cmd->owner), fc.hash_param, cmd->actor,
                        ltoa_buf(x->ttl_seconds, ttl), job};
    pr = q(r, SQL_INSERT_EXISTING_INVITATION, 9, p);
    if (!pr)
        return failure(r, res);
    char expires[40];
    snprintf(expires, sizeof(expires), "%s", PQgetvalue(pr, 0, 0));
    PQclear(pr);
    copy_id(res->invitation_id, inv);
    emit_invitation_created(x, cmd, inv, user, "existing", expires);
    mail_job_t m = {.job_id = job, .invitation_id = inv, .org_id = cmd->org_id, .org_name = a.org_name,
                    .kind = "existing", .name = name, .inviter_name = a.name, .inviter_email = a.email,
                    .expires_at = expires, .sealed_code = fc.sealed, .grant_owner = cmd->owner};
    if (!queue_mail_or_reject(x, cmd, &m, cmd->email, res))
        return 0;
    res->accepted = 1;
    return 0;
}

/* InviteNewUser of an address whose account exists but was never activated (its earlier invitations were
 * removed, expired, or are pending in other organizations): the same account gets a membership and a new
 * `new` invitation, so the address never becomes impossible to invite. target is SQL_NEW_TARGET's row. */
static int invite_unactivated_user(run_t *r, const cmd_t *cmd, const actor_info_t *a, const PGresult *target,
                                   domain_result_t *res) {
    domain_ctx_t *x = r->x;
    char user[37], inv[37], job[37], ttl[24];
    const char *name = PQgetvalue(target, 0, 2); /* lives as long as target: no copy, no cut */
    copy_id(user, PQgetvalue(target, 0, 0));
    copy_id(res->user_id, user);
    fresh_code_t fc;
    uuid_generate(inv);
    uuid_generate(job);
    if (fresh_code_new(x, &fc, r->errstr, r->errstr_size) != 0)
        return -1;
    const char *p[9] = {user, cmd->email, cmd->org_id, bool_str(cmd->owner), inv, fc.hash_param, cmd->actor,
                        ltoa_buf(x->ttl_seconds, ttl), job};
    PGresult *pr = q(r, SQL_REUSE_UNACTIVATED_INVITATION, 9, p);
    if (!pr)
        return failure(r, res); /* a pending invitation of this organization: invitation_pending */
    char expires[40];
    snprintf(expires, sizeof(expires), "%s", PQgetvalue(pr, 0, 0));
    int membership_created = is_true(pr, 0, 1);
    PQclear(pr);
    copy_id(res->invitation_id, inv);
    if (membership_created) {
        json_t *d = ids_json(cmd->org_id, user, NULL);
        json_object_set_new(d, "is_owner", json_boolean(cmd->owner));
        json_object_set_new(d, "can_manage_users", json_false());
        emit(x, cmd, "MembershipCreated", cmd->org_id, d);
    }
    emit_invitation_created(x, cmd, inv, user, "new", expires);
    mail_job_t m = {.job_id = job, .invitation_id = inv, .org_id = cmd->org_id, .org_name = a->org_name,
                    .kind = "new", .name = name, .inviter_name = a->name, .inviter_email = a->email,
                    .expires_at = expires, .sealed_code = fc.sealed, .grant_owner = cmd->owner};
    queue_mail(x, cmd, &m, cmd->email);
    res->accepted = 1;
    return 0;
}

static int invite_new_user(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    int ok = authorize_invite(r, cmd, &a, res);
    if (ok <= 0)
        return ok;
    const char *p1[2] = {cmd->email, cmd->org_id};
    PGresult *pr = q(r, SQL_NEW_TARGET, 2, p1);
    if (!pr)
        return -1;
    if (!PQgetisnull(pr, 0, 0) && is_true(pr, 0, 1)) {
        copy_id(res->user_id, PQgetvalue(pr, 0, 0));
        PQclear(pr);
        domain_reject(res, "user_already_exists", NULL);
        return 0;
    }
    if (rate_limited(x, pr, 3, res)) {
        PQclear(pr);
        return 0;
    }
    if (!PQgetisnull(pr, 0, 0)) {
        /* An account that was never activated is only a placeholder for its invitations: invite it again. */
        int rc = invite_unactivated_user(r, cmd, &a, pr, res);
        PQclear(pr);
        return rc;
    }
    PQclear(pr);

    char user[37], inv[37], job[37], ttl[24];
    fresh_code_t fc;
    uuid_generate(user);
    uuid_generate(inv);
    uuid_generate(job);
    if (fresh_code_new(x, &fc, r->errstr, r->errstr_size) != 0)
        return -1;
    const char *name = cmd->name ? cmd->name : "";
    const char *p[10] = {user, cmd->email, name, cmd->org_id, bool_str(cmd->owner), inv, fc.hash_param, cmd->actor,
                         ltoa_buf(x->ttl_seconds, ttl), job};
    pr = q(r, SQL_INSERT_NEW_USER_INVITATION, 10, p);
    if (!pr)
        return failure(r, res);
    char expires[40];
    snprintf(expires, sizeof(expires), "%s", PQgetvalue(pr, 0, 0));
    PQclear(pr);
    copy_id(res->user_id, user);
    copy_id(res->invitation_id, inv);

    json_t *d = ids_json(cmd->org_id, user, NULL);
    json_object_set_new(d, "email", json_string(cmd->email));
    json_object_set_new(d, "name", json_string(name));
    json_object_set_new(d, "enabled", json_false());
    emit(x, cmd, "UserCreated", cmd->org_id, d);
    d = ids_json(cmd->org_id, user, NULL);
    json_object_set_new(d, "is_owner", json_boolean(cmd->owner));
    json_object_set_new(d, "can_manage_users", json_false());
    emit(x, cmd, "MembershipCreated", cmd->org_id, d);
    emit_invitation_created(x, cmd, inv, user, "new", expires);
    mail_job_t m = {.job_id = job, .invitation_id = inv, .org_id = cmd->org_id, .org_name = a.org_name,
                    .kind = "new", .name = name, .inviter_name = a.name, .inviter_email = a.email,
                    .expires_at = expires, .sealed_code = fc.sealed, .grant_owner = cmd->owner};
    if (!queue_mail_or_reject(x, cmd, &m, cmd->email, res))
        return 0;
    res->accepted = 1;
    return 0;
}

/* An invitation row locked for a decision. */
typedef struct invitation {
    char id[37], org_id[37], user_id[37], email[EMAIL_MAX + 1], kind[16], status[16];
    const char *invitee_name, *org_name; /* owned by x->texts */
    int grant_owner, failed_attempts, past_expiry;
    unsigned char code_hash[CODE_HASH_LEN];
} invitation_t;

/* 1 found and locked, 0 not found, -1 database failure. */
static int invitation_lock(run_t *r, const char *id, invitation_t *inv) {
    const char *p[1] = {id};
    PGresult *pr = q(r, SQL_INVITATION_FOR_UPDATE, 1, p);
    if (!pr)
        return -1;
    int found = PQntuples(pr) == 1;
    if (found) {
        copy_id(inv->id, id);
        copy_id(inv->org_id, PQgetvalue(pr, 0, 0));
        copy_id(inv->user_id, PQgetvalue(pr, 0, 1));
        text_printf(inv->email, sizeof(inv->email), "%s", PQgetvalue(pr, 0, 2));
        text_printf(inv->kind, sizeof(inv->kind), "%s", PQgetvalue(pr, 0, 3));
        inv->grant_owner = is_true(pr, 0, 4);
        text_printf(inv->status, sizeof(inv->status), "%s", PQgetvalue(pr, 0, 5));
        if (hash_column(pr, 0, 6, inv->code_hash) != 0)
            memset(inv->code_hash, 0, sizeof(inv->code_hash));
        inv->failed_attempts = (int)strtol(PQgetvalue(pr, 0, 7), NULL, 10);
        inv->past_expiry = is_true(pr, 0, 8);
        inv->invitee_name = keep_text(r->x, PQgetvalue(pr, 0, 9));
        inv->org_name = keep_text(r->x, PQgetvalue(pr, 0, 10));
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
    PGresult *pr = q(r, SQL_COUNT_FAILED_ATTEMPT, 1, p);
    if (!pr)
        return -1;
    int attempts = (int)strtol(PQgetvalue(pr, 0, 0), NULL, 10);
    PQclear(pr);
    json_t *d = ids_json(inv->org_id, inv->user_id[0] ? inv->user_id : NULL, inv->id);
    json_object_set_new(d, "command_type", json_string(cmd->type_name));
    json_object_set_new(d, "failed_attempts", json_integer(attempts));
    json_object_set_new(d, "locked", json_boolean(attempts >= MAX_CODE_ATTEMPTS));
    emit(x, cmd, "InvitationCodeRejected", inv->org_id, d);
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
    json_t *d = ids_json(inv->org_id, inv->user_id, inv->id);
    json_object_set_new(d, "email", json_string(inv->email));
    json_object_set_new(d, "kind", json_string(inv->kind));
    emit(x, cmd, "InvitationAccepted", inv->org_id, d);
}

/* Marks the invitation accepted, once: a racing second use finds it no longer pending. */
static int accept_once(run_t *r, const invitation_t *inv, domain_result_t *res) {
    const char *p[1] = {inv->id};
    PGresult *pr = q(r, SQL_ACCEPT, 1, p);
    if (!pr)
        return -1;
    int won = PQntuples(pr) == 1;
    PQclear(pr);
    if (!won)
        domain_reject(res, "invitation_not_pending", NULL);
    return won;
}

static int accept_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    invitation_t inv;
    int found = invitation_lock(r, cmd->invitation_id, &inv);
    if (found < 0)
        return -1;
    copy_id(res->invitation_id, cmd->invitation_id);
    if (!found) {
        domain_reject(res, "invitation_not_found", NULL);
        return 0;
    }
    copy_id(res->org_id, inv.org_id);
    copy_id(res->user_id, inv.user_id);
    /* Only the invitee, with a working account, confirms. */
    const char *p1[1] = {cmd->actor};
    PGresult *pr = q(r, SQL_ACTOR, 1, p1);
    if (!pr)
        return -1;
    int is_invitee = PQntuples(pr) == 1 && is_true(pr, 0, 0) && strcmp(inv.user_id, cmd->actor) == 0;
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
    const char *p[3] = {inv.org_id, inv.user_id, bool_str(inv.grant_owner)};
    pr = q(r, SQL_JOIN_ORG, 3, p);
    if (!pr)
        return failure(r, res);
    int owner = is_true(pr, 0, 0), manage = is_true(pr, 0, 1);
    PQclear(pr);
    emit_invitation_accepted(x, cmd, &inv);
    json_t *d = ids_json(inv.org_id, inv.user_id, NULL);
    json_object_set_new(d, "is_owner", json_boolean(owner));
    json_object_set_new(d, "can_manage_users", json_boolean(manage));
    emit(x, cmd, "MembershipCreated", inv.org_id, d);
    res->accepted = 1;
    return 0;
}

static int activate_account(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    const char *p1[1] = {cmd->email};
    PGresult *pr = q(r, SQL_USER_BY_EMAIL_FOR_UPDATE, 1, p1);
    if (!pr)
        return -1;
    if (PQntuples(pr) == 0) {
        PQclear(pr);
        domain_reject(res, "invitation_not_found", "no invitation was sent to this e-mail address");
        return 0;
    }
    char user[37];
    copy_id(user, PQgetvalue(pr, 0, 0));
    int enabled = is_true(pr, 0, 1);
    PQclear(pr);
    copy_id(res->user_id, user);
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
    pr = q(r, SQL_NEW_INVITATIONS_OF_USER, 1, p2);
    if (!pr)
        return -1;
    char inv_id[37] = "";
    if (PQntuples(pr) > 0)
        copy_id(inv_id, PQgetvalue(pr, 0, 0)); /* no code matches: the newest pending one counts the attempt */
    char canon[CODE_LEN + 1];
    if (PQntuples(pr) > 1 && code_canonical(cmd->code, canon) == 0) {
        unsigned char h[CODE_HASH_LEN], stored[CODE_HASH_LEN];
        code_hash(x->keys, canon, h);
        sodium_memzero(canon, sizeof(canon));
        for (int i = 0; i < PQntuples(pr); i++) {
            if (hash_column(pr, i, 1, stored) == 0 && sodium_memcmp(h, stored, CODE_HASH_LEN) == 0) {
                copy_id(inv_id, PQgetvalue(pr, i, 0));
                break;
            }
        }
    }
    PQclear(pr);
    invitation_t inv;
    int found = inv_id[0] ? invitation_lock(r, inv_id, &inv) : 0;
    if (found < 0)
        return -1;
    if (!found) {
        domain_reject(res, "invitation_not_found", "no invitation was sent to this e-mail address");
        return 0;
    }
    copy_id(res->invitation_id, inv.id);
    copy_id(res->org_id, inv.org_id);
    int ok = check_code(r, cmd, &inv, res);
    if (ok <= 0)
        return ok;
    ok = accept_once(r, &inv, res);
    if (ok <= 0)
        return ok;
    const char *p3[2] = {user, cmd->password_hash};
    pr = q(r, SQL_ACTIVATE_USER, 2, p3);
    if (!pr)
        return failure(r, res);
    int activated = PQntuples(pr) == 1;
    PQclear(pr);
    if (!activated) {
        domain_reject(res, "account_already_active", NULL);
        return 0;
    }
    json_t *d = ids_json(inv.org_id, user, inv.id);
    json_object_set_new(d, "email", json_string(inv.email));
    emit(x, cmd, "AccountActivated", inv.org_id, d);
    emit_invitation_accepted(x, cmd, &inv);
    res->accepted = 1;
    return 0;
}

/* Locks an invitation of the command's organization that a resend or a removal may act on. */
static int invitation_of_org(run_t *r, const cmd_t *cmd, invitation_t *inv, domain_result_t *res) {
    int found = invitation_lock(r, cmd->invitation_id, inv);
    if (found < 0)
        return -1;
    copy_id(res->invitation_id, cmd->invitation_id);
    if (!found || strcmp(inv->org_id, cmd->org_id) != 0) {
        domain_reject(res, "invitation_not_found", NULL);
        return 0;
    }
    if (inv->user_id[0])
        copy_id(res->user_id, inv->user_id);
    if (strcmp(inv->status, "pending") != 0 && strcmp(inv->status, "expired") != 0) {
        domain_reject(res, "invitation_not_pending", NULL);
        return 0;
    }
    return 1;
}

static int resend_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    int ok = authorize(r, cmd, &a, res);
    if (ok <= 0)
        return ok;
    invitation_t inv;
    ok = invitation_of_org(r, cmd, &inv, res);
    if (ok <= 0)
        return ok;
    if (inv.grant_owner && a.role < ROLE_OWNER) {
        domain_reject(res, "owner_grant_denied", "this invitation grants owner capabilities");
        return 0;
    }
    char job[37], ttl[24];
    fresh_code_t fc;
    uuid_generate(job);
    if (fresh_code_new(x, &fc, r->errstr, r->errstr_size) != 0)
        return -1;
    const char *p[4] = {inv.id, fc.hash_param, ltoa_buf(x->ttl_seconds, ttl), job};
    PGresult *pr = q(r, SQL_RESEND, 4, p);
    if (!pr)
        return failure(r, res);
    char expires[40];
    snprintf(expires, sizeof(expires), "%s", PQgetvalue(pr, 0, 0));
    long count = strtol(PQgetvalue(pr, 0, 1), NULL, 10);
    PQclear(pr);
    json_t *d = ids_json(inv.org_id, inv.user_id[0] ? inv.user_id : NULL, inv.id);
    json_object_set_new(d, "email", json_string(inv.email));
    json_object_set_new(d, "previous_status", json_string(inv.status));
    json_object_set_new(d, "expires_at", json_string(expires));
    json_object_set_new(d, "resend_count", json_integer(count));
    emit(x, cmd, "InvitationResent", inv.org_id, d);
    mail_job_t m = {.job_id = job, .invitation_id = inv.id, .org_id = inv.org_id, .org_name = inv.org_name,
                    .kind = inv.kind, .name = inv.invitee_name, .inviter_name = a.name, .inviter_email = a.email,
                    .expires_at = expires, .sealed_code = fc.sealed, .grant_owner = inv.grant_owner};
    if (!queue_mail_or_reject(x, cmd, &m, inv.email, res))
        return 0;
    res->accepted = 1;
    return 0;
}

static int remove_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res) {
    domain_ctx_t *x = r->x;
    actor_info_t a;
    int ok = authorize(r, cmd, &a, res);
    if (ok <= 0)
        return ok;
    invitation_t inv;
    ok = invitation_of_org(r, cmd, &inv, res);
    if (ok <= 0)
        return ok;
    const char *p1[1] = {inv.id};
    PGresult *pr = q(r, SQL_MARK_REMOVED, 1, p1);
    if (!pr)
        return -1;
    PQclear(pr);
    int membership_removed = 0, account_removed = 0;
    if (strcmp(inv.kind, "new") == 0 && inv.user_id[0]) {
        const char *p2[2] = {inv.org_id, inv.user_id};
        pr = q(r, SQL_DROP_UNACTIVATED_MEMBERSHIP, 2, p2);
        if (!pr)
            return failure(r, res);
        membership_removed = PQntuples(pr) > 0;
        PQclear(pr);
        const char *p3[1] = {inv.user_id};
        pr = q(r, SQL_DROP_UNACTIVATED_ACCOUNT, 1, p3);
        if (!pr)
            return failure(r, res);
        account_removed = PQntuples(pr) > 0;
        PQclear(pr);
    }
    json_t *d = ids_json(inv.org_id, inv.user_id[0] ? inv.user_id : NULL, inv.id);
    json_object_set_new(d, "email", json_string(inv.email));
    json_object_set_new(d, "kind", json_string(inv.kind));
    json_object_set_new(d, "previous_status", json_string(inv.status));
    json_object_set_new(d, "membership_removed", json_boolean(membership_removed));
    json_object_set_new(d, "account_removed", json_boolean(account_removed));
    emit(x, cmd, "InvitationRemoved", inv.org_id, d);
    if (membership_removed) {
        d = ids_json(inv.org_id, inv.user_id, NULL);
        json_object_set_new(d, "reason", json_string("invitation_removed"));
        emit(x, cmd, "MemberRemoved", inv.org_id, d);
    }
    res->accepted = 1;
    return 0;
}

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
    PGresult *pr = q(r, SQL_LOCK_MEMBER_AND_OWNERS, 2, p);
    if (!pr)
        return -1;
    memset(mv, 0, sizeof(*mv));
    for (int i = 0; i < PQntuples(pr); i++) {
        if (is_true(pr, i, 1) && is_true(pr, i, 3))
            mv->owners++;
        if (is_true(pr, i, 0)) {
            mv->found = 1;
            mv->is_owner = is_true(pr, i, 1);
            mv->can_manage = is_true(pr, i, 2);
            mv->activated = is_true(pr, i, 3);
        }
    }
    PQclear(pr);
    return 0;
}

/* The start of RemoveMember and SetMemberRole: the actor may act in the organization and the target is a
 * member (locked, with the owners). 1 to go on, 0 rejected, -1 on database failure. */
static int member_target(run_t *r, const cmd_t *cmd, actor_info_t *a, member_view_t *mv, domain_result_t *res) {
    int ok = authorize(r, cmd, a, res);
    if (ok <= 0)
        return ok;
    copy_id(res->user_id, cmd->user_id);
    if (member_lock(r, cmd, mv) != 0)
        return -1;
    if (!mv->found) {
        domain_reject(res, "not_member", NULL);
        return 0;
    }
    return 1;
}

static int remove_member(run_t *r, const cmd_t *cmd, domain_result_t *res) {
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
    PGresult *pr = q(r, SQL_REMOVE_MEMBER, 2, p);
    if (!pr)
        return failure(r, res);
    PQclear(pr);
    /* A pending invitation of the removed member in this organization would bring them back: withdraw it. */
    pr = q(r, SQL_WITHDRAW_PENDING_OF_MEMBER, 2, p);
    if (!pr)
        return -1;
    for (int i = 0; i < PQntuples(pr); i++) {
        json_t *d = ids_json(cmd->org_id, cmd->user_id, PQgetvalue(pr, i, 0));
        json_object_set_new(d, "reason", json_string("member_removed"));
        emit(x, cmd, "InvitationRemoved", cmd->org_id, d);
    }
    PQclear(pr);
    /* A never-activated account held by nothing else any more goes too: the address is free again. */
    int account_removed = 0;
    if (!mv.activated) {
        const char *p3[1] = {cmd->user_id};
        pr = q(r, SQL_DROP_UNACTIVATED_ACCOUNT, 1, p3);
        if (!pr)
            return failure(r, res);
        account_removed = PQntuples(pr) > 0;
        PQclear(pr);
    }
    json_t *d = ids_json(cmd->org_id, cmd->user_id, NULL);
    json_object_set_new(d, "was_owner", json_boolean(mv.is_owner));
    json_object_set_new(d, "account_removed", json_boolean(account_removed));
    emit(x, cmd, "MemberRemoved", cmd->org_id, d);
    res->accepted = 1;
    return 0;
}

static int set_member_role(run_t *r, const cmd_t *cmd, domain_result_t *res) {
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
    const char *p[4] = {cmd->org_id, cmd->user_id, bool_str(cmd->owner), bool_str(cmd->can_manage_users)};
    PGresult *pr = q(r, SQL_SET_ROLE, 4, p);
    if (!pr)
        return failure(r, res);
    PQclear(pr);
    json_t *d = ids_json(cmd->org_id, cmd->user_id, NULL);
    json_object_set_new(d, "is_owner", json_boolean(cmd->owner));
    json_object_set_new(d, "can_manage_users", json_boolean(cmd->can_manage_users));
    json_object_set_new(d, "was_owner", json_boolean(mv.is_owner));
    json_object_set_new(d, "could_manage_users", json_boolean(mv.can_manage));
    emit(x, cmd, "MemberRoleChanged", cmd->org_id, d);
    res->accepted = 1;
    return 0;
}

int domain_apply(domain_ctx_t *x, const cmd_t *cmd, domain_result_t *res, char *errstr, size_t errstr_size) {
    static int (*const handlers[CMD_TYPE_COUNT])(run_t *, const cmd_t *, domain_result_t *) = {
        [CMD_CREATE_ORGANIZATION] = create_organization, [CMD_CREATE_USER] = create_user,
        [CMD_ADD_EXISTING_USER] = add_existing_user,     [CMD_INVITE_NEW_USER] = invite_new_user,
        [CMD_ACCEPT_INVITATION] = accept_invitation,     [CMD_ACTIVATE_ACCOUNT] = activate_account,
        [CMD_RESEND_INVITATION] = resend_invitation,     [CMD_REMOVE_INVITATION] = remove_invitation,
        [CMD_REMOVE_MEMBER] = remove_member,             [CMD_SET_MEMBER_ROLE] = set_member_role,
    };
    memset(res, 0, sizeof(*res));
    if (cmd->org_id)
        copy_id(res->org_id, cmd->org_id);
    run_t r = {.x = x, .errstr = errstr, .errstr_size = errstr_size};
    if (cmd->type < 0 || cmd->type >= CMD_TYPE_COUNT) {
        domain_reject(res, "unknown_command_type", NULL);
        return 0;
    }
    /* Only these leave every role and membership as it was; after any other, roles are read afresh. */
    if (cmd->type != CMD_INVITE_NEW_USER && cmd->type != CMD_ADD_EXISTING_USER && cmd->type != CMD_RESEND_INVITATION)
        domain_forget(x);
    int rc = handlers[cmd->type](&r, cmd, res);
    if (cmd->type != CMD_INVITE_NEW_USER && cmd->type != CMD_ADD_EXISTING_USER && cmd->type != CMD_RESEND_INVITATION)
        domain_forget(x);
    if (rc != 0 && r.failed && r.sqlstate[0] && !db_error_transient(r.sqlstate) && PQstatus(x->db) == CONNECTION_OK) {
        /* The database refused what this command holds (a CHECK the parser missed, a value out of range):
         * running the batch again would fail the same way and stall the partition. This command alone is
         * rejected; its savepoint is rolled back. */
        char detail[128];
        text_printf(detail, sizeof(detail), "refused by the database: SQLSTATE %s%s%s", r.sqlstate,
                    r.constraint[0] ? ", constraint " : "", r.constraint);
        log_warn(cmd->id, "%s %s: rejected as invalid_command", cmd->type_name, detail);
        memset(res, 0, sizeof(*res));
        if (cmd->org_id)
            copy_id(res->org_id, cmd->org_id);
        domain_reject(res, "invalid_command", detail);
        text_printf(res->sqlstate, sizeof(res->sqlstate), "%s", r.sqlstate);
        rc = 0;
    }
    res->needs_rollback = r.failed || (r.wrote && !res->accepted && !res->keep_changes);
    return rc;
}
