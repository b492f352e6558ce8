/* Shared by the parts of the domain rules (domain.c, domain_auth.c, domain_org.c, domain_invite.c,
 * domain_accept.c, domain_member.c); not for other modules. Each handler applies one command type inside
 * the caller's transaction: 0 when decided (see res), -1 when the database failed (r->errstr says how). */
#ifndef RAIKOO_DOMAIN_INTERNAL_H
#define RAIKOO_DOMAIN_INTERNAL_H

#include <libpq-fe.h>
#include <jansson.h>

#include "domain.h"

typedef enum { ROLE_NONE, ROLE_MANAGER, ROLE_OWNER, ROLE_ADMIN } role_t;

/* Runs one statement. NULL on failure, with x's last error: a constraint the rules know is turned into a
 * rejection by the caller through dom_failure(); anything else is the database's fault. */
typedef struct run {
    domain_ctx_t *x;
    char *errstr;
    size_t errstr_size;
    char sqlstate[6];
    char constraint[64];
    int wrote, failed; /* a write ran; a statement failed (the transaction is then aborted) */
} run_t;

/* What dom_authorize learned about the actor: role, the organization's name, the actor's name and e-mail
 * (for the invitation e-mail). */
typedef struct actor_info {
    role_t role;
    const char *org_name, *name; /* owned by x->texts */
    char email[EMAIL_MAX + 1];
} actor_info_t;

/* An invitation row locked for a decision. */
typedef struct invitation {
    char id[UUID_BUF], org_id[UUID_BUF], user_id[UUID_BUF], email[EMAIL_MAX + 1], kind[16], status[16];
    const char *invitee_name, *org_name; /* owned by x->texts */
    int grant_owner, grant_manage_users, failed_attempts, past_expiry;
    unsigned char code_hash[CODE_HASH_LEN];
} invitation_t;

/* An organization's invitation policy (organization_policies; domain_policy.c), as it applies to one
 * address. Texts owned by x->texts. */
typedef struct org_policy {
    int found;
    int restricts_domains, domain_allowed; /* allowed_domains set; the address's domain is one of them */
    long seat_limit;                       /* 0: none */
    int expiry_days;                       /* default_expiry_days, 0: none */
    const char *locale, *app_url;          /* default_locale, app_url: NULL when not set */
} org_policy_t;

/* What an invitation gets besides its code: its lifetime, the e-mail's language and link, the role. */
typedef struct invite_opts {
    long ttl_seconds;
    const char *locale;  /* resolved (command, policy, mail.locale); NULL: none valid */
    const char *app_url; /* the policy's; NULL: the mailer's mail.app.url */
    int grant_manage_users;
} invite_opts_t;

/* Reads the organization's policy (locking its row, so that seat counts of concurrent invitations into the
 * organization are taken one after the other) as it applies to email (NULL: no domain check). 0, or -1 on
 * database failure. */
int dom_policy_load(run_t *r, const char *org, const char *email, org_policy_t *pol);
/* 1 when one more invitation fits the policy's seat limit (members plus pending 'existing' invitations, a
 * 'new' invitation's membership standing for it), 0 with res rejected (seat_limit_reached), -1 on failure.
 * Counted after dom_policy_load locked the policy row, in a statement of its own. */
int dom_seat_available(run_t *r, const char *org, const org_policy_t *pol, domain_result_t *res);
/* The options of an invitation cmd creates or resends: expires_in_days, else the policy's default, else
 * invitation.ttl.seconds; locale, else the policy's, else mail.locale; the policy's app_url. */
void dom_invite_opts(const domain_ctx_t *x, const cmd_t *cmd, const org_policy_t *pol, int grant_manage_users,
                     invite_opts_t *o);
/* The policy checks of AddExistingUser and InviteNewUser before anything is looked up: the address's
 * domain (domain_not_allowed). 1 to go on, 0 rejected. */
int dom_policy_allows_address(const org_policy_t *pol, domain_result_t *res);

/* SQL shared by more than one part. */
extern const char DOMAIN_SQL_ACTOR[];                    /* $1 user: enabled, is_admin, name, email */
extern const char DOMAIN_SQL_DROP_UNACTIVATED_ACCOUNT[]; /* $1 user: removes a never-activated account */

/* Runs one statement. NULL on failure, with r's last error: a constraint the rules know is turned into a
 * rejection by the caller through dom_failure(); anything else is the database's fault. */
PGresult *dom_q(run_t *r, const char *sql, int n, const char *const *p);
/* After dom_q() failed: 0 with res rejected when the failure is a rule the database enforces, else -1. */
int dom_failure(run_t *r, domain_result_t *res);
int dom_is_true(const PGresult *res, int row, int col);
void dom_copy_id(char dst[UUID_BUF], const char *src);
const char *dom_bool_str(int b);
/* The bytea text form ("\x" + hex) of a code hash, for a query parameter. */
void dom_hash_param(const unsigned char h[CODE_HASH_LEN], char out[2 * CODE_HASH_LEN + 3]);
/* Reads a bytea column in hex output form into 32 bytes; -1 when it is not that. */
int dom_hash_column(const PGresult *res, int row, int col, unsigned char out[CODE_HASH_LEN]);
/* A copy of s (a name read from the database, of any length) that lives until domain_forget(). */
const char *dom_keep_text(domain_ctx_t *x, const char *s);
char *dom_ltoa(long v, char buf[24]);
json_t *dom_ids_json(const char *org_id, const char *user_id, const char *invitation_id);
/* Appends an event (data stolen) for the command to the outbox. */
void dom_emit(domain_ctx_t *x, const cmd_t *cmd, const char *name, const char *key, json_t *data);

/* Looks up the organization and the actor's role in it (cached for the batch). 1 when the command may go
 * on; 0 with res rejected (organization_not_found, permission_denied); -1 on database failure. */
int dom_authorize(run_t *r, const cmd_t *cmd, actor_info_t *a, domain_result_t *res);
/* Looks up, in one query, the (actor, organization) pairs of cmds[0..n) that dom_authorize has not
 * cached, as far as the cache has room, and caches them. 0, or -1 on database failure (r says why). */
int dom_authorize_prefetch(run_t *r, cmd_t *const *cmds, size_t n);
/* 1 when the actor is an enabled system admin, 0 with res rejected, -1 on database failure. */
int dom_require_admin(run_t *r, const cmd_t *cmd, domain_result_t *res);

/* 1 found and locked, 0 not found, -1 database failure. */
int dom_invitation_lock(run_t *r, const char *id, invitation_t *inv);

/* A fresh code: its hash (as a query parameter) and its sealed form for the mail job. */
typedef struct fresh_code {
    char hash_param[2 * CODE_HASH_LEN + 3];
    char sealed[SEALED_CODE_B64_MAX];
} fresh_code_t;

/* Makes a fresh code; -1 with errstr when sealing fails. */
int dom_fresh_code(domain_ctx_t *x, fresh_code_t *fc, char *errstr, size_t errstr_size);
/* The start of AddExistingUser and InviteNewUser: dom_authorize, then whether the actor may grant owner
 * capabilities (owner_grant_denied) or user management (manage_grant_denied) when the command asks for
 * them. 1 to go on, 0 rejected, -1 on database failure. */
int dom_authorize_invite(run_t *r, const cmd_t *cmd, actor_info_t *a, domain_result_t *res);
/* 1 with res rejected (rate_limited) when used invitations this hour reach the organization's limit. */
int dom_rate_limited(domain_ctx_t *x, long used, domain_result_t *res);
/* After a new user's account, membership and invitation were written (user, inv, job: their ids; sealed:
 * the code for the mailer; expires: the invitation's expiry as RFC 3339): the events and the mail job of an
 * accepted InviteNewUser, and res accepted (or rejected as invalid_command when the mail job cannot be built:
 * the caller must then undo the rows). Always 0. */
int dom_new_user_invited(domain_ctx_t *x, const cmd_t *cmd, const actor_info_t *a, const invite_opts_t *o,
                         const char *user, const char *inv, const char *job, const char *sealed,
                         const char *expires, domain_result_t *res);
/* The same for an accepted AddExistingUser of the account user (its name: name). */
int dom_existing_user_invited(domain_ctx_t *x, const cmd_t *cmd, const actor_info_t *a,
                              const invite_opts_t *o, const char *user, const char *name, const char *inv,
                              const char *job, const char *sealed, const char *expires, domain_result_t *res);
/* 1 when the invitation e-mail of that kind ("new", "existing") to the invitee of that name can be built
 * (dom_new_user_invited, dom_existing_user_invited will accept), 0 when it cannot. */
int dom_invitation_mail_ok(const cmd_t *cmd, const actor_info_t *a, const invite_opts_t *o, const char *kind,
                           const char *name, const char *inv, const char *job, const char *sealed,
                           const char *expires);
/* The detail of AddExistingUser's user_not_found for an account never activated. */
#define DOMAIN_NEVER_ACTIVATED "the account of this address was never activated"

int domain_create_organization(run_t *r, const cmd_t *cmd, domain_result_t *res); /* domain_org.c */
int domain_create_user(run_t *r, const cmd_t *cmd, domain_result_t *res);
int domain_add_existing_user(run_t *r, const cmd_t *cmd, domain_result_t *res); /* domain_invite.c */
int domain_invite_new_user(run_t *r, const cmd_t *cmd, domain_result_t *res);
int domain_resend_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res);
int domain_remove_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res);
int domain_accept_invitation(run_t *r, const cmd_t *cmd, domain_result_t *res); /* domain_accept.c */
int domain_activate_account(run_t *r, const cmd_t *cmd, domain_result_t *res);
int domain_remove_member(run_t *r, const cmd_t *cmd, domain_result_t *res); /* domain_member.c */
int domain_set_member_role(run_t *r, const cmd_t *cmd, domain_result_t *res);
int domain_set_organization_policy(run_t *r, const cmd_t *cmd, domain_result_t *res); /* domain_policy.c */

#endif
