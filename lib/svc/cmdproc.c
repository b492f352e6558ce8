/* The command processor: applies a batch of command messages in one PostgreSQL transaction, a savepoint
 * per command, with their results, events and mail jobs written to the outbox in that same transaction. */
#include "cmdproc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "db.h"
#include "domain.h"
#include "event.h"
#include "instruments.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "text.h"

static const char SQL_SEEN[] =
    "SELECT command_id::text, result FROM processed_commands WHERE command_id = ANY($1::uuid[])";

struct cmdproc {
    PGconn *db;
    domain_ctx_t ctx;
    outbox_t outbox;
    long max_bytes;
    const char *topic_results, *topic_events;
    int set_based;             /* runs of invitations through the set path (domain_run_apply) */
    unsigned long set_decided; /* commands the set path decided in committed batches */
};

/* A run shorter than this goes per command; at most this many runs a batch attempt (a run stops at the
 * first command it cannot decide, and the next run starts after that one). */
#define RUN_MIN 2
#define RUNS_MAX 16

/* A command decided in this batch, to record in processed_commands. */
typedef struct decided {
    char id[UUID_BUF];
    const char *type_name;
    const char *status;
    char *result; /* the result event's text */
} decided_t;

cmdproc_t *cmdproc_new(const conf_t *c, PGconn *db, const secret_keys_t *keys, char *errstr,
                       size_t errstr_size) {
    cmdproc_t *p = xcalloc(1, sizeof(*p));
    if (conf_get_long(c, "command.max.bytes", 256, 100L * 1024 * 1024, &p->max_bytes, errstr, errstr_size) !=
            0 ||
        conf_get_long(c, "invitation.ttl.seconds", 60, 365L * 86400, &p->ctx.ttl_seconds, errstr,
                      errstr_size) != 0 ||
        conf_get_long(c, "ratelimit.invitations.per.hour", 1, 100000000, &p->ctx.rate_per_hour, errstr,
                      errstr_size) != 0) {
        free(p);
        return NULL;
    }
    p->db = db;
    p->ctx.db = db;
    p->ctx.keys = keys;
    p->ctx.topic_events = p->topic_events = conf_get(c, "topic.events");
    p->ctx.topic_mail = conf_get(c, "topic.mail");
    p->ctx.default_locale = conf_get(c, "mail.locale");
    p->topic_results = conf_get(c, "topic.results");
    p->ctx.outbox = &p->outbox;
    instruments_init_commands();
    p->set_based = 1;
    return p;
}

void cmdproc_set_set_based(cmdproc_t *p, int on) {
    p->set_based = on != 0;
}

unsigned long cmdproc_set_based_decided(const cmdproc_t *p) {
    return p->set_decided;
}

void cmdproc_set_db(cmdproc_t *p, PGconn *db) {
    p->db = db;
    p->ctx.db = db;
}

void cmdproc_free(cmdproc_t *p) {
    if (!p)
        return;
    outbox_free(&p->outbox);
    domain_ctx_free(&p->ctx);
    free(p);
}

/* The result event of a decided command (text, caller frees), and a CommandRejected event when rejected.
 * Every string is made valid UTF-8 first (utf8_clean_dup), so that building the JSON cannot fail on what a
 * message held. */
static char *result_event(cmdproc_t *p, const cmd_t *cmd, const char *type_name, const domain_result_t *res) {
    char *type = utf8_clean_dup(type_name, strlen(type_name), 64);
    char *message = utf8_clean_dup(res->accepted ? "Done" : res->message,
                                   strlen(res->accepted ? "Done" : res->message), sizeof(res->message));
    json_t *d = json_pack("{s:s, s:s, s:s, s:o, s:s}", "command_id", cmd->id, "command_type", type, "status",
                          res->accepted ? "accepted" : "rejected", "code",
                          res->code ? json_string(res->code) : json_null(), "message", message);
    if (!d)
        abort(); /* out of memory: every string above is valid UTF-8 */
    json_object_set_new(d, "org_id", res->org_id[0] ? json_string(res->org_id) : json_null());
    json_object_set_new(d, "user_id", res->user_id[0] ? json_string(res->user_id) : json_null());
    json_object_set_new(d, "invitation_id",
                        res->invitation_id[0] ? json_string(res->invitation_id) : json_null());
    json_t *ev = event_new("raikoo.result.v1", NULL, EVENT_SOURCE_WORKER, cmd->actor, cmd->id, d);
    char *text = event_dump(ev);
    json_decref(ev);
    if (!res->accepted) {
        /* "result_code", not "code": no event has a field named code, so that a one-time code can never
         * pass for one (schemas/events/ forbid the name). */
        json_t *rd = json_pack("{s:s, s:s, s:s, s:s}", "command_id", cmd->id, "command_type", type,
                               "result_code", res->code, "message", message);
        if (!rd)
            abort(); /* out of memory, as above */
        if (res->org_id[0])
            json_object_set_new(rd, "org_id", json_string(res->org_id));
        outbox_event(&p->outbox, p->topic_events, "CommandRejected", res->org_id[0] ? res->org_id : cmd->id,
                     cmd->id, cmd->actor, rd);
    }
    free(type);
    free(message);
    outbox_add(&p->outbox, p->topic_results, cmd->id, text);
    return text;
}

/* Inserts the decided commands. */
static int record_decided(cmdproc_t *p, decided_t *d, size_t n, char *errstr, size_t errstr_size) {
    const char **values = xmalloc(n * 4 * sizeof(*values));
    for (size_t i = 0; i < n; i++) {
        values[i * 4] = d[i].id;
        values[i * 4 + 1] = d[i].type_name;
        values[i * 4 + 2] = d[i].status;
        values[i * 4 + 3] = d[i].result;
    }
    int rc = db_insert_rows(p->db, "processed_commands (command_id, command_type, status, result)", 4, values,
                            n, errstr, errstr_size);
    free(values);
    return rc;
}

/* Fetches the stored results of the batch's command ids that were decided before. Returns the result
 * (caller clears) or NULL on failure. */
static PGresult *seen_before(cmdproc_t *p, cmd_t *cmds, parse_status_t *st, size_t n, char *errstr,
                             size_t errstr_size) {
    const char **ids = xcalloc(n ? n : 1, sizeof(*ids));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (st[i] != PARSE_NOT_COMMAND)
            ids[k++] = cmds[i].id;
    char *arr = db_array_literal(ids, k);
    const char *params[1] = {arr};
    PGresult *res = db_exec_cached(p->db, SQL_SEEN, 1, params, errstr, errstr_size);
    free(arr);
    free(ids);
    return res;
}

static const char *stored_result(PGresult *seen, const char *id) {
    for (int i = 0; i < PQntuples(seen); i++)
        if (strcasecmp(PQgetvalue(seen, i, 0), id) == 0)
            return PQgetvalue(seen, i, 1);
    return NULL;
}

static const char *decided_result(decided_t *d, size_t n, const char *id) {
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(d[i].id, id) == 0)
            return d[i].result;
    return NULL;
}

/* One attempt at the batch in one transaction. In the optimistic mode (safe = 0) no command gets a
 * savepoint: when one needs undoing on its own (a statement failed, or it wrote and was then rejected),
 * the attempt rolls back and returns 1, and the caller runs the batch again with a savepoint per command.
 * 0 when committed; -1 on database failure (rolled back). */
static int apply_once(cmdproc_t *p, cmdproc_msg_t *msgs, size_t n, cmd_t *cmds, const parse_status_t *st,
                      char (*why)[256], PGresult *seen, int safe, char *errstr, size_t errstr_size) {
    int rc = -1, in_tx = 0, savepoint_open = 0;
    decided_t *dec = xcalloc(n ? n : 1, sizeof(*dec));
    size_t ndec = 0;
    domain_run_t run = {0};
    size_t run_at = 0, run_end = 0; /* commands [run_at, run_end) were decided by the set path */
    size_t no_run_before = 0;       /* a refused run's commands go per command */
    int runs = 0;
    unsigned long set_decided = 0;
    cmd_t **run_cmds = xcalloc(n ? n : 1, sizeof(*run_cmds));
    outbox_truncate(&p->outbox, 0);
    domain_forget(&p->ctx);
    if (db_cmd(p->db, "BEGIN", errstr, errstr_size) != 0)
        goto done;
    in_tx = 1;

    for (size_t i = 0; i < n; i++) {
        if (st[i] == PARSE_NOT_COMMAND)
            continue;
        cmd_t *cmd = &cmds[i];
        /* A command id decided before gets its original result again, and changes nothing. (A run holds
         * no such command.) */
        const char *prior = i < run_end ? NULL : stored_result(seen, cmd->id);
        if (!prior && i >= run_end)
            prior = decided_result(dec, ndec, cmd->id);
        if (prior) {
            outbox_add(&p->outbox, p->topic_results, cmd->id, prior);
            msgs[i].outcome = "duplicate";
            msgs[i].code = NULL;
            continue;
        }
        domain_result_t res;
        if (i >= run_end && p->set_based && st[i] == PARSE_OK && i >= no_run_before && runs < RUNS_MAX &&
            domain_run_eligible(cmd)) {
            /* The run: the commands from here that the set path may take, up to a command id seen before
             * or repeated within the run (a duplicate, which the loop decides in its turn). */
            size_t m = 0, j = i;
            while (j < n && st[j] == PARSE_OK && domain_run_eligible(&cmds[j]) &&
                   !stored_result(seen, cmds[j].id) && !decided_result(dec, ndec, cmds[j].id)) {
                int repeated = 0;
                for (size_t q = 0; q < m && !repeated; q++)
                    repeated = strcasecmp(run_cmds[q]->id, cmds[j].id) == 0;
                if (repeated)
                    break;
                run_cmds[m++] = &cmds[j++];
            }
            if (m >= RUN_MIN) {
                if (savepoint_open) {
                    if (db_cmd(p->db, "RELEASE SAVEPOINT cmd", errstr, errstr_size) != 0)
                        goto done;
                    savepoint_open = 0;
                }
                domain_run_free(&run);
                runs++;
                if (domain_run_apply(&p->ctx, run_cmds, m, &run, errstr, errstr_size) != 0)
                    goto done;
                run_at = i;
                run_end = i + run.decided;
                set_decided += run.decided;
                if (run.refused)
                    no_run_before = i + m;
                log_debug(NULL, "a run of %zu invitations: %zu decided set-based%s", m, run.decided,
                          run.refused ? " (refused by the database: per command)" : "");
            }
        }
        if (i < run_end) {
            domain_run_result(&p->ctx, &run, run_cmds, i - run_at, &res);
        } else if (st[i] == PARSE_OK) {
            size_t mark = p->outbox.n;
            /* One round trip ends the previous command's savepoint and opens this one's. */
            if (safe) {
                if (db_cmd(p->db, savepoint_open ? "RELEASE SAVEPOINT cmd; SAVEPOINT cmd" : "SAVEPOINT cmd",
                           errstr, errstr_size) != 0)
                    goto done;
                savepoint_open = 1;
            }
            if (domain_apply(&p->ctx, cmd, &res, errstr, errstr_size) != 0)
                goto done;
            if (res.needs_rollback && !safe) {
                rc = 1;
                goto done;
            }
            if (res.needs_rollback && db_cmd(p->db, "ROLLBACK TO SAVEPOINT cmd", errstr, errstr_size) != 0)
                goto done;
            if (!res.accepted && !res.keep_changes)
                outbox_truncate(&p->outbox, mark);
        } else {
            memset(&res, 0, sizeof(res));
            domain_reject(&res, st[i] == PARSE_UNKNOWN_TYPE ? "unknown_command_type" : cmd_invalid_code(cmd),
                          why[i]);
        }
        const char *type_name = cmd->type_name && *cmd->type_name ? cmd->type_name : "unknown";
        dec[ndec].result = result_event(p, cmd, type_name, &res);
        snprintf(dec[ndec].id, sizeof(dec[ndec].id), "%s", cmd->id);
        dec[ndec].type_name = type_name;
        dec[ndec].status = res.accepted ? "accepted" : "rejected";
        ndec++;
        msgs[i].outcome = res.accepted ? "accepted" : "rejected";
        msgs[i].code = res.code;
    }
    if (savepoint_open && db_cmd(p->db, "RELEASE SAVEPOINT cmd", errstr, errstr_size) != 0)
        goto done;
    if (outbox_write(&p->outbox, p->db, errstr, errstr_size) != 0)
        goto done;
    if (ndec && record_decided(p, dec, ndec, errstr, errstr_size) != 0)
        goto done;
    if (db_cmd(p->db, "COMMIT", errstr, errstr_size) != 0)
        goto done;
    in_tx = 0;
    rc = 0;
    p->set_decided += set_decided;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].outcome && strcmp(msgs[i].outcome, "rejected") == 0)
            log_info(msgs[i].command_id, "%s rejected: %s", cmds[i].type_name, msgs[i].code);
    }
done:
    domain_run_free(&run);
    free(run_cmds);
    if (in_tx) {
        char ignore[256];
        db_cmd(p->db, "ROLLBACK", ignore, sizeof(ignore));
    }
    if (rc != 0)
        outbox_truncate(&p->outbox, 0);
    for (size_t i = 0; i < ndec; i++)
        free(dec[i].result);
    free(dec);
    return rc;
}

int cmdproc_apply(cmdproc_t *p, cmdproc_msg_t *msgs, size_t n, char *errstr, size_t errstr_size) {
    int rc = -1;
    double started = metrics_now();
    cmd_t *cmds = xcalloc(n ? n : 1, sizeof(*cmds));
    parse_status_t *st = xcalloc(n ? n : 1, sizeof(*st));
    char(*why)[256] = xcalloc(n ? n : 1, sizeof(*why));
    PGresult *seen = NULL;
    for (size_t i = 0; i < n; i++) {
        st[i] = cmd_parse_message(msgs[i].headers, msgs[i].nheaders, msgs[i].payload, msgs[i].len,
                                  (size_t)p->max_bytes, &cmds[i], why[i], sizeof(why[i]));
        msgs[i].dead_letter = st[i] == PARSE_NOT_COMMAND;
        msgs[i].code = NULL;
        msgs[i].outcome = NULL;
        msgs[i].command_id[0] = '\0';
        if (msgs[i].dead_letter) {
            text_printf(msgs[i].reason, sizeof(msgs[i].reason), "%s", why[i]);
            msgs[i].outcome = "dead_letter";
        } else {
            snprintf(msgs[i].command_id, sizeof(msgs[i].command_id), "%s", cmds[i].id);
        }
    }
    seen = seen_before(p, cmds, st, n, errstr, errstr_size);
    if (seen) {
        rc = apply_once(p, msgs, n, cmds, st, why, seen, 0, errstr, errstr_size);
        if (rc == 1) {
            log_debug(NULL, "batch of %zu applied again with a savepoint per command", n);
            rc = apply_once(p, msgs, n, cmds, st, why, seen, 1, errstr, errstr_size);
        }
    }
    if (rc == 0)
        instruments_batch(msgs, cmds, n, started);
    PQclear(seen);
    for (size_t i = 0; i < n; i++)
        cmd_free(&cmds[i]);
    free(why);
    free(st);
    free(cmds);
    return rc;
}
