/* The domain rules: what each command does to PostgreSQL, who may do it, and the events it emits. This
 * file: the result codes, the helpers the handlers share and domain_apply; the handlers are in
 * domain_org.c, domain_invite.c, domain_accept.c and domain_member.c, authorisation in domain_auth.c. */
#include "domain_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "text.h"

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
    {"permission_denied", "You do not have permission to do this in this organization: ask an organization "
                          "owner or a Raikoo admin"},
    {"owner_grant_denied", "Only organization owners and Raikoo admins can grant or change owner "
                           "capabilities: ask an owner or an admin"},
    {"user_not_found",
     "No Raikoo account has this e-mail address or id: to add a new person, use Invite New User"},
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
    {"invalid_password_hash", "The password must arrive as an Argon2id hash of at least the interactive cost "
                              "(the raikoo CLI and producer "
                              "library do this)"},
    {"not_member", "This user is not a member of the organization"},
    {"last_owner", "An organization must keep at least one owner: make another member an owner first"},
    {"rate_limited", "This organization has sent too many invitations in the last hour: try again later"},
    {"manage_grant_denied", "Only organization owners and Raikoo admins can grant user management "
                            "(can_manage_users): ask an owner or an admin"},
    {"invalid_expiry", "An invitation lasts a whole number of days from 1 to 30: correct expires_in_days"},
    {"invalid_locale", "The language must be a tag such as de or pt-BR: correct the locale"},
    {"invalid_domain", "allowed_domains must be a list of at most 100 domains such as example.com"},
    {"invalid_seat_limit", "seat_limit must be a whole number from 1 to 1000000, or null for no limit"},
    {"invalid_app_url", "app_url must be an http:// or https:// address without a trailing slash, or null"},
    {"domain_not_allowed", "This organization only invites addresses of its allowed domains: ask an owner to "
                           "add the domain to its policy"},
    {"seat_limit_reached", "The organization's seats (members plus pending invitations) are all taken: "
                           "remove a member or an invitation, or ask an owner to raise the seat limit"},
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

/* ---- helpers shared by the handlers (domain_internal.h) ---- */

PGresult *dom_q(run_t *r, const char *sql, int n, const char *const *p) {
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

/* After dom_q() failed: 0 with res rejected when the failure is a rule the database enforces, else -1. */
int dom_failure(run_t *r, domain_result_t *res) {
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

int dom_is_true(const PGresult *res, int row, int col) {
    return PQgetvalue(res, row, col)[0] == 't';
}

void dom_copy_id(char dst[UUID_BUF], const char *src) {
    text_printf(dst, UUID_BUF, "%s", src ? src : "");
}

const char *dom_bool_str(int b) {
    return b ? "true" : "false";
}

/* The bytea text form ("\x" + hex) of a code hash, for a query parameter. */
void dom_hash_param(const unsigned char h[CODE_HASH_LEN], char out[2 * CODE_HASH_LEN + 3]) {
    out[0] = '\\';
    out[1] = 'x';
    sodium_bin2hex(out + 2, 2 * CODE_HASH_LEN + 1, h, CODE_HASH_LEN);
}

/* Reads a bytea column in hex output form into 32 bytes; -1 when it is not that. */
int dom_hash_column(const PGresult *res, int row, int col, unsigned char out[CODE_HASH_LEN]) {
    const char *v = PQgetvalue(res, row, col);
    size_t len = 0;
    if (strncmp(v, "\\x", 2) != 0 ||
        sodium_hex2bin(out, CODE_HASH_LEN, v + 2, strlen(v + 2), NULL, &len, NULL) != 0 ||
        len != CODE_HASH_LEN)
        return -1;
    return 0;
}

/* A copy of s (a name read from the database, of any length) that lives until domain_forget(). */
const char *dom_keep_text(domain_ctx_t *x, const char *s) {
    x->texts = xgrow(x->texts, x->ntexts + 1, &x->cap_texts, sizeof(*x->texts), 64);
    return x->texts[x->ntexts++] = xstrdup(s ? s : "");
}

json_t *dom_ids_json(const char *org_id, const char *user_id, const char *invitation_id) {
    json_t *d = json_object();
    if (invitation_id)
        json_object_set_new(d, "invitation_id", json_string(invitation_id));
    if (org_id)
        json_object_set_new(d, "org_id", json_string(org_id));
    if (user_id)
        json_object_set_new(d, "user_id", json_string(user_id));
    return d;
}

void dom_emit(domain_ctx_t *x, const cmd_t *cmd, const char *name, const char *key, json_t *data) {
    outbox_event(x->outbox, x->topic_events, name, key, cmd->id, cmd->actor, data);
}

char *dom_ltoa(long v, char buf[24]) {
    snprintf(buf, 24, "%ld", v);
    return buf;
}

/* ---- applying a command ---- */

int domain_apply(domain_ctx_t *x, const cmd_t *cmd, domain_result_t *res, char *errstr, size_t errstr_size) {
    static int (*const handlers[CMD_TYPE_COUNT])(run_t *, const cmd_t *, domain_result_t *) = {
        [CMD_CREATE_ORGANIZATION] = domain_create_organization,
        [CMD_CREATE_USER] = domain_create_user,
        [CMD_ADD_EXISTING_USER] = domain_add_existing_user,
        [CMD_INVITE_NEW_USER] = domain_invite_new_user,
        [CMD_ACCEPT_INVITATION] = domain_accept_invitation,
        [CMD_ACTIVATE_ACCOUNT] = domain_activate_account,
        [CMD_RESEND_INVITATION] = domain_resend_invitation,
        [CMD_REMOVE_INVITATION] = domain_remove_invitation,
        [CMD_REMOVE_MEMBER] = domain_remove_member,
        [CMD_SET_MEMBER_ROLE] = domain_set_member_role,
        [CMD_SET_ORGANIZATION_POLICY] = domain_set_organization_policy,
    };
    memset(res, 0, sizeof(*res));
    if (cmd->org_id)
        dom_copy_id(res->org_id, cmd->org_id);
    run_t r = {.x = x, .errstr = errstr, .errstr_size = errstr_size};
    if (cmd->type < 0 || cmd->type >= CMD_TYPE_COUNT) {
        domain_reject(res, "unknown_command_type", NULL);
        return 0;
    }
    /* Only these leave every role and membership as it was; after any other, roles are read afresh. */
    if (cmd->type != CMD_INVITE_NEW_USER && cmd->type != CMD_ADD_EXISTING_USER &&
        cmd->type != CMD_RESEND_INVITATION)
        domain_forget(x);
    int rc = handlers[cmd->type](&r, cmd, res);
    if (cmd->type != CMD_INVITE_NEW_USER && cmd->type != CMD_ADD_EXISTING_USER &&
        cmd->type != CMD_RESEND_INVITATION)
        domain_forget(x);
    if (rc != 0 && r.failed && r.sqlstate[0] && !db_error_transient(r.sqlstate) &&
        PQstatus(x->db) == CONNECTION_OK) {
        /* The database refused what this command holds (a CHECK the parser missed, a value out of range):
         * running the batch again would fail the same way and stall the partition. This command alone is
         * rejected; its savepoint is rolled back. */
        char detail[128];
        text_printf(detail, sizeof(detail), "refused by the database: SQLSTATE %s%s%s", r.sqlstate,
                    r.constraint[0] ? ", constraint " : "", r.constraint);
        log_warn(cmd->id, "%s %s: rejected as invalid_command", cmd->type_name, detail);
        memset(res, 0, sizeof(*res));
        if (cmd->org_id)
            dom_copy_id(res->org_id, cmd->org_id);
        domain_reject(res, "invalid_command", detail);
        text_printf(res->sqlstate, sizeof(res->sqlstate), "%s", r.sqlstate);
        rc = 0;
    }
    res->needs_rollback = r.failed || (r.wrote && !res->accepted && !res->keep_changes);
    return rc;
}
