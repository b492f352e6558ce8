/* The set path of the domain rules: a run of InviteNewUser and AddExistingUser commands decided from one
 * snapshot and written with one statement for all of its rows (domain.h, domain_run_*). Every decision is
 * the one the per-command path (domain_invite.c) makes in the same transaction at the same point; where
 * the snapshot cannot tell, the run stops and the per-command path takes over. */
#include "domain_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "db.h"
#include "text.h"

/* Per command of the run, in order: the address as the unique indexes compare it; the account it names
 * (for InviteNewUser locked, as SQL_NEW_TARGET of domain_invite.c does; for AddExistingUser read, as
 * SQL_EXISTING_TARGET does), whether it is usable (activated, or an admin), its name and whether it is a
 * member of the organization; whether the organization has a pending invitation for the address; the
 * organization (canonical text) and its invitations this hour; the expiry every invitation of this
 * transaction gets. */
/* (clang-format would break the SQL at the macro, not at its clauses) */
/* clang-format off */
static const char SQL_RUN_TARGETS[] =
    "SELECT lower(t.email), coalesce(n.id, e.id), coalesce(n.usable, e.usable, false),"
    "       coalesce(n.name, e.name, ''),"
    "       EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = t.org AND m.user_id = coalesce(n.id, e.id)),"
    "       EXISTS (SELECT 1 FROM invitations i WHERE i.org_id = t.org AND lower(i.email) = lower(t.email)"
    "                  AND i.status = 'pending'),"
    "       t.org::text,"
    "       EXISTS (SELECT 1 FROM organization_policies p WHERE p.org_id = t.org),"
    "       (SELECT coalesce(sum(created), 0) FROM invitation_rate"
    "         WHERE org_id = t.org AND minute > now() - interval '1 hour'),"
    "       " DB_RFC3339("(now() + make_interval(secs => $4::double precision))")
    "  FROM unnest($1::text[], $2::uuid[], $3::boolean[]) WITH ORDINALITY AS t(email, org, lock, ord)"
    "  LEFT JOIN LATERAL (SELECT id, enabled OR is_admin AS usable, name FROM users"
    "                      WHERE t.lock AND lower(email) = lower(t.email) FOR UPDATE) n ON true"
    "  LEFT JOIN LATERAL (SELECT id, enabled OR is_admin AS usable, name FROM users"
    "                      WHERE NOT t.lock AND lower(email) = lower(t.email)) e ON true"
    " ORDER BY t.ord";
/* clang-format on */

enum { T_EMAIL, T_USER, T_USABLE, T_NAME, T_MEMBER, T_PENDING, T_ORG, T_POLICY, T_USED, T_EXPIRES };

/* The accepted commands' rows: what SQL_INSERT_NEW_USER_INVITATION and SQL_INSERT_EXISTING_INVITATION of
 * domain_invite.c write for one, for all of them (the rate counters counted up by each organization's
 * number of invitations). $1..$9 the InviteNewUser commands, $10..$17 the AddExistingUser ones. */
static const char SQL_RUN_INSERT[] =
    "WITH d AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::boolean[],"
    "                                $6::uuid[], $7::bytea[], $8::uuid[], $9::uuid[])"
    "             WITH ORDINALITY AS t(user_id, email, name, org, owner, inv, hash, actor, job, ord)),"
    " x AS (SELECT * FROM unnest($10::uuid[], $11::text[], $12::uuid[], $13::uuid[], $14::boolean[],"
    "                                $15::bytea[], $16::uuid[], $17::uuid[])"
    "             WITH ORDINALITY AS t(inv, email, user_id, org, owner, hash, actor, job, ord)),"
    " r AS (INSERT INTO invitation_rate (org_id, minute, created)"
    "       SELECT org, date_trunc('minute', now()), count(*)"
    "         FROM (SELECT org FROM d UNION ALL SELECT org FROM x) o GROUP BY org"
    "       ON CONFLICT (org_id, minute) DO UPDATE SET created = invitation_rate.created + EXCLUDED.created),"
    " u AS (INSERT INTO users (id, email, username, name)"
    "       SELECT user_id, email, email, name FROM d ORDER BY ord RETURNING id),"
    " m AS (INSERT INTO org_members (org_id, user_id, is_owner)"
    "       SELECT d.org, u.id, d.owner FROM u JOIN d ON d.user_id = u.id ORDER BY d.ord RETURNING user_id),"
    " i AS (INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, code_hash, invited_by,"
    "                                expires_at, mail_job_id, locale)"
    "       SELECT d.inv, d.org, d.email, m.user_id, 'new', d.owner, d.hash, d.actor,"
    "              now() + make_interval(secs => $18::double precision), d.job, $19::text"
    "         FROM m JOIN d ON d.user_id = m.user_id ORDER BY d.ord RETURNING 1),"
    " j AS (INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, code_hash, invited_by,"
    "                                expires_at, mail_job_id, locale)"
    "       SELECT inv, org, email, user_id, 'existing', owner, hash, actor,"
    "              now() + make_interval(secs => $18::double precision), job, $19::text"
    "         FROM x ORDER BY ord RETURNING 1)"
    " SELECT (SELECT count(*) FROM i) + (SELECT count(*) FROM j)";

struct domain_run_item {
    domain_result_t res; /* the decision (accepted: completed by domain_run_result) */
    int authorized;      /* dom_authorize_invite let it go on */
    int accept;          /* accepted: its rows are written by the run's statement */
    int row;             /* its row in the targets' result */
    actor_info_t a;
    const char *name; /* AddExistingUser: the account's name (owned by the context's texts) */
    char user[UUID_BUF], inv[UUID_BUF], job[UUID_BUF];
    char expires[40];
    fresh_code_t fc; /* the sealed code: wiped by domain_run_free */
    invite_opts_t o; /* no policy, no option: the configuration's expiry and language */
};

/* The invitation options (expires_in_days, locale, can_manage_users) and organizations with a policy
 * (organization_policies: domains, seats under a lock, defaults) are decided by the per-command path. */
int domain_run_eligible(const cmd_t *cmd) {
    return (cmd->type == CMD_INVITE_NEW_USER || cmd->type == CMD_ADD_EXISTING_USER) &&
           !cmd->expires_in_days && !cmd->locale && !cmd->can_manage_users;
}

void domain_run_free(domain_run_t *run) {
    if (run->it) {
        sodium_memzero(run->it, run->n * sizeof(*run->it));
        free(run->it);
    }
    memset(run, 0, sizeof(*run));
}

/* After a statement of the run failed (r says how): -1 when it is the database's or the moment's fault
 * (the caller retries the batch); else the run is rolled back to its savepoint and left to the
 * per-command path (0, run->refused). */
static int run_refused(domain_ctx_t *x, run_t *r, domain_run_t *run) {
    if (!r->sqlstate[0] || db_error_transient(r->sqlstate) || PQstatus(x->db) != CONNECTION_OK)
        return -1;
    char why[256];
    if (db_cmd(x->db, "ROLLBACK TO SAVEPOINT domain_run; RELEASE SAVEPOINT domain_run", why, sizeof(why)) !=
        0) {
        text_printf(r->errstr, r->errstr_size, "%s", why);
        return -1;
    }
    run->decided = 0;
    run->refused = 1;
    return 0;
}

/* The targets of the authorized commands: one query. NULL on failure (r says why). */
static PGresult *run_targets(run_t *r, cmd_t *const *cmds, domain_run_t *run) {
    const char **emails = xcalloc(run->n, sizeof(*emails)), **orgs = xcalloc(run->n, sizeof(*orgs));
    const char **lock = xcalloc(run->n, sizeof(*lock));
    size_t k = 0;
    for (size_t j = 0; j < run->n; j++) {
        if (!run->it[j].authorized)
            continue;
        run->it[j].row = (int)k;
        emails[k] = cmds[j]->email;
        lock[k] = dom_bool_str(cmds[j]->type == CMD_INVITE_NEW_USER);
        orgs[k++] = cmds[j]->org_id;
    }
    char ttl[24];
    char *ea = db_array_literal(emails, k), *oa = db_array_literal(orgs, k), *la = db_array_literal(lock, k);
    const char *p[4] = {ea, oa, la, dom_ltoa(r->x->ttl_seconds, ttl)};
    PGresult *res = dom_q(r, SQL_RUN_TARGETS, 4, p);
    free(ea);
    free(oa);
    free(la);
    free(emails);
    free(orgs);
    free(lock);
    if (res && PQntuples(res) != (int)k) {
        text_printf(r->errstr, r->errstr_size, "the run's targets: %d rows for %zu commands", PQntuples(res),
                    k);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* Writes the rows of the accepted commands among the first k. 0, or -1 with r's error. */
static int run_insert(run_t *r, cmd_t *const *cmds, domain_run_t *run, size_t k) {
    size_t nn = 0, ne = 0;
    for (size_t j = 0; j < k; j++) {
        if (run->it[j].accept)
            *(cmds[j]->type == CMD_INVITE_NEW_USER ? &nn : &ne) += 1;
    }
    if (nn + ne == 0)
        return 0;
    const char **col[17];
    for (int c = 0; c < 17; c++)
        col[c] = xcalloc((c < 9 ? nn : ne) + 1, sizeof(**col));
    size_t in = 0, ie = 0;
    for (size_t j = 0; j < k; j++) {
        struct domain_run_item *it = &run->it[j];
        if (!it->accept)
            continue;
        const cmd_t *cmd = cmds[j];
        if (cmd->type == CMD_INVITE_NEW_USER) {
            const char *v[9] = {it->user,
                                cmd->email,
                                cmd->name ? cmd->name : "",
                                cmd->org_id,
                                dom_bool_str(cmd->owner),
                                it->inv,
                                it->fc.hash_param,
                                cmd->actor,
                                it->job};
            for (int c = 0; c < 9; c++)
                col[c][in] = v[c];
            in++;
        } else {
            const char *v[8] = {
                it->inv,           cmd->email, it->user, cmd->org_id, dom_bool_str(cmd->owner),
                it->fc.hash_param, cmd->actor, it->job};
            for (int c = 0; c < 8; c++)
                col[9 + c][ie] = v[c];
            ie++;
        }
    }
    char *arr[17], ttl[24];
    const char *p[19];
    for (int c = 0; c < 17; c++)
        p[c] = arr[c] = db_array_literal(col[c], c < 9 ? nn : ne);
    invite_opts_t o;
    dom_invite_opts(r->x, cmds[0], NULL, 0, &o);
    p[17] = dom_ltoa(o.ttl_seconds, ttl);
    p[18] = o.locale;
    PGresult *res = dom_q(r, SQL_RUN_INSERT, 19, p);
    for (int c = 0; c < 17; c++) {
        free(arr[c]);
        free(col[c]);
    }
    if (!res)
        return -1;
    long written = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (written != (long)(nn + ne)) {
        /* Not expected: the per-command path decides instead. */
        text_printf(r->errstr, r->errstr_size, "the run wrote %ld invitations for %zu commands", written,
                    nn + ne);
        text_printf(r->sqlstate, sizeof(r->sqlstate), "%s", "RKRUN");
        r->failed = 1;
        return -1;
    }
    return 0;
}

/* What run_decide says of a command: decided (go on), not decidable from the snapshot (the run ends before
 * it: per command), or a failure (errstr set). */
enum { RUN_NEXT, RUN_STOP, RUN_FAILED };

/* What the run's accepted commands have taken so far, which the snapshot does not show: their addresses
 * (as the unique indexes compare them) and how many invitations each organization got (both texts of the
 * targets' result). Kept in maps, as a scan of every earlier command would make a run's work grow with
 * its square. */
typedef struct run_taken {
    strmap_t emails, orgs; /* an address taken; an organization -> its accepted invitations */
} run_taken_t;

/* 1 when an earlier accepted command of the run took command k's address (the run must stop: the
 * per-command path sees those rows); else 0, with *used raised by the run's accepted invitations into the
 * same organization. */
static int run_stale(const domain_run_t *run, const run_taken_t *taken, PGresult *tr, size_t k, long *used) {
    int row = run->it[k].row;
    if (strmap_find(&taken->emails, PQgetvalue(tr, row, T_EMAIL)))
        return 1;
    const long *org = strmap_find(&taken->orgs, PQgetvalue(tr, row, T_ORG));
    if (org)
        *used += *org;
    return 0;
}

/* Command k is accepted: its address and an invitation into its organization are taken. */
static void run_take(run_taken_t *taken, const domain_run_t *run, PGresult *tr, size_t k) {
    int row = run->it[k].row;
    strmap_add(&taken->emails, PQgetvalue(tr, row, T_EMAIL), NULL);
    (*strmap_add(&taken->orgs, PQgetvalue(tr, row, T_ORG), NULL))++;
}

/* Decides command k of the run from the snapshot tr, in the order of the per-command handlers
 * (domain_invite_new_user, domain_add_existing_user): a rejection into its result, an acceptance into its
 * item (ids, code, expiry, options; its rows are written by run_insert). */
static int run_decide(run_t *r, domain_run_t *run, run_taken_t *taken, cmd_t *const *cmds, PGresult *tr,
                      size_t k) {
    domain_ctx_t *x = r->x;
    struct domain_run_item *it = &run->it[k];
    if (!it->authorized)
        return RUN_NEXT; /* rejected by dom_authorize_invite, nothing written */
    const cmd_t *cmd = cmds[k];
    int row = it->row, is_new = cmd->type == CMD_INVITE_NEW_USER;
    long used = strtol(PQgetvalue(tr, row, T_USED), NULL, 10);
    if (run_stale(run, taken, tr, k, &used) || dom_is_true(tr, row, T_POLICY))
        return RUN_STOP; /* a policy: per command, under its lock */
    int found = !PQgetisnull(tr, row, T_USER), usable = dom_is_true(tr, row, T_USABLE);
    if (is_new) {
        /* domain_invite_new_user's order: an account in use, the rate, then a new account. */
        if (found && usable) {
            dom_copy_id(it->res.user_id, PQgetvalue(tr, row, T_USER));
            domain_reject(&it->res, "user_already_exists", NULL);
            return RUN_NEXT;
        }
        if (dom_rate_limited(x, used, &it->res))
            return RUN_NEXT;
        if (found)
            return RUN_STOP; /* never activated: invite_unactivated_user, per command */
    } else {
        /* domain_add_existing_user's order: no account, never activated, a member, the rate. */
        if (!found || !usable) {
            domain_reject(&it->res, "user_not_found", found ? DOMAIN_NEVER_ACTIVATED : NULL);
            return RUN_NEXT;
        }
        dom_copy_id(it->res.user_id, PQgetvalue(tr, row, T_USER));
        dom_copy_id(it->user, PQgetvalue(tr, row, T_USER));
        if (dom_is_true(tr, row, T_MEMBER)) {
            domain_reject(&it->res, "already_member", NULL);
            return RUN_NEXT;
        }
        if (dom_rate_limited(x, used, &it->res))
            return RUN_NEXT;
        it->name = dom_keep_text(x, PQgetvalue(tr, row, T_NAME));
    }
    if (dom_is_true(tr, row, T_PENDING))
        return RUN_STOP; /* the invitation's insert fails (invitation_pending): per command, with its savepoint */
    if (is_new)
        uuid_generate(it->user);
    uuid_generate(it->inv);
    uuid_generate(it->job);
    text_printf(it->expires, sizeof(it->expires), "%s", PQgetvalue(tr, row, T_EXPIRES));
    dom_invite_opts(x, cmd, NULL, 0, &it->o);
    if (dom_fresh_code(x, &it->fc, r->errstr, r->errstr_size) != 0)
        return RUN_FAILED;
    const char *name = is_new ? (cmd->name ? cmd->name : "") : it->name;
    if (!dom_invitation_mail_ok(cmd, &it->a, &it->o, is_new ? "new" : "existing", name, it->inv, it->job,
                                it->fc.sealed, it->expires))
        return RUN_STOP; /* rejected after its rows are written: per command, with its savepoint */
    it->accept = 1;
    run_take(taken, run, tr, k);
    return RUN_NEXT;
}

int domain_run_apply(domain_ctx_t *x, cmd_t *const *cmds, size_t n, domain_run_t *run, char *errstr,
                     size_t errstr_size) {
    memset(run, 0, sizeof(*run));
    run->n = n;
    run->it = xcalloc(n ? n : 1, sizeof(*run->it));
    run_t r = {.x = x, .errstr = errstr, .errstr_size = errstr_size};
    if (db_cmd(x->db, "SAVEPOINT domain_run", errstr, errstr_size) != 0)
        return -1;

    /* Who may invite: the organizations and actors not yet known to the batch in one query, then each
     * command as domain_apply decides it (the answers are cached; a run changes no role). */
    if (dom_authorize_prefetch(&r, cmds, n) != 0)
        return run_refused(x, &r, run);
    for (size_t j = 0; j < n; j++) {
        struct domain_run_item *it = &run->it[j];
        if (cmds[j]->org_id)
            dom_copy_id(it->res.org_id, cmds[j]->org_id);
        int ok = dom_authorize_invite(&r, cmds[j], &it->a, &it->res);
        if (r.failed)
            return run_refused(x, &r, run);
        if (ok < 0)
            return -1;
        it->authorized = ok == 1;
    }

    PGresult *tr = run_targets(&r, cmds, run);
    if (!tr)
        return r.failed ? run_refused(x, &r, run) : -1;

    /* The decisions, in order (run_decide); the first that the snapshot cannot decide ends the run. */
    size_t k = 0;
    int rc = 0;
    run_taken_t taken; /* keys compared exactly: both are the database's canonical text */
    strmap_init(&taken.emails, 0);
    strmap_init(&taken.orgs, 0);
    for (; k < n; k++) {
        int d = run_decide(&r, run, &taken, cmds, tr, k);
        if (d == RUN_FAILED)
            rc = -1;
        if (d != RUN_NEXT)
            break;
    }
    strmap_free(&taken.emails);
    strmap_free(&taken.orgs);
    PQclear(tr);
    if (rc != 0)
        return rc;
    if (run_insert(&r, cmds, run, k) != 0)
        return r.failed ? run_refused(x, &r, run) : -1;
    if (db_cmd(x->db, "RELEASE SAVEPOINT domain_run", errstr, errstr_size) != 0)
        return -1;
    run->decided = k;
    return 0;
}

void domain_run_result(domain_ctx_t *x, domain_run_t *run, cmd_t *const *cmds, size_t j,
                       domain_result_t *res) {
    struct domain_run_item *it = &run->it[j];
    *res = it->res;
    if (it->accept && cmds[j]->type == CMD_INVITE_NEW_USER)
        dom_new_user_invited(x, cmds[j], &it->a, &it->o, it->user, it->inv, it->job, it->fc.sealed,
                             it->expires, res);
    else if (it->accept)
        dom_existing_user_invited(x, cmds[j], &it->a, &it->o, it->user, it->name, it->inv, it->job,
                                  it->fc.sealed, it->expires, res);
}
