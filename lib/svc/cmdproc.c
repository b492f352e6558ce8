/* The command processor: applies a batch of command messages in one PostgreSQL transaction, a savepoint
 * per command, with their results, events and mail jobs written to the outbox in that same transaction. */
#include "cmdproc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "consumer.h"
#include "db.h"
#include "deadletter.h"
#include "domain.h"
#include "event.h"
#include "exitstatus.h"
#include "health.h"
#include "instruments.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "outbox.h"
#include "text.h"
#include "worker.h"

static const char SQL_SEEN[] =
    "SELECT command_id::text, result FROM processed_commands WHERE command_id = ANY($1::uuid[])";
/* Whether an organization has an invitation policy: the set path leaves its commands to the per-command
 * path (domain_run.c stops a run at the first of them), so a run that starts at one decides nothing. */
static const char SQL_HAS_POLICY[] = "SELECT 1 FROM organization_policies WHERE org_id = $1::uuid";

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

/* Invitation codes the processor keeps made ahead (160 bytes each). */
#define CMDPROC_CODES_AHEAD 512

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
    /* Codes sealed ahead, while the worker waits for PostgreSQL and Kafka (codepool.h): a default batch's
     * worth. Without a thread, each is made when needed, as a larger burst's are. */
    p->ctx.codes = codepool_new(keys, CMDPROC_CODES_AHEAD);
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
    codepool_free(p->ctx.codes);
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

static const char SQL_RECORD[] =
    "INSERT INTO processed_commands (command_id, command_type, status, result) "
    "SELECT i::uuid, t, s, r FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d (i, t, s, r)";

/* The decided commands' rows for processed_commands: values[i * 4 + col]. (caller frees) */
static const char **decided_values(const decided_t *d, size_t n) {
    const char **values = xmalloc(n * 4 * sizeof(*values));
    for (size_t i = 0; i < n; i++) {
        values[i * 4] = d[i].id;
        values[i * 4 + 1] = d[i].type_name;
        values[i * 4 + 2] = d[i].status;
        values[i * 4 + 3] = d[i].result;
    }
    return values;
}

/* Records the decided commands in processed_commands: while they are few (as the outbox's rows,
 * OUTBOX_PIPELINED_MAX), *st gets an INSERT to send with the COMMIT, its parameters in arrays (caller frees
 * the four), and 1 is returned; beyond, they are copied at once (COPY parses far less): 0, or -1 with errstr. */
static int record_decided(cmdproc_t *p, const decided_t *d, size_t n, db_stmt_t *st, char *arrays[4],
                          char *errstr, size_t errstr_size) {
    const char **values = decided_values(d, n);
    int rc = 1;
    if (n <= OUTBOX_PIPELINED_MAX) {
        db_array_columns(values, n, 4, arrays);
        *st = (db_stmt_t){.sql = SQL_RECORD, .nparams = 4, .params = (const char *const *)arrays};
    } else {
        rc = db_insert_rows(p->db, "processed_commands (command_id, command_type, status, result)", 4, values,
                            n, errstr, errstr_size);
    }
    free(values);
    return rc;
}

/* Begins the transaction and fetches the stored results of the batch's command ids that were decided
 * before, in one round trip. Returns the result (caller clears) or NULL on failure (errstr; the caller
 * rolls back). */
static PGresult *begin_seen_before(cmdproc_t *p, cmd_t *cmds, const parse_status_t *st, size_t n,
                                   char *errstr, size_t errstr_size) {
    const char **ids = xcalloc(n ? n : 1, sizeof(*ids));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (st[i] != PARSE_NOT_COMMAND)
            ids[k++] = cmds[i].id;
    char *arr = db_array_literal(ids, k);
    const char *params[1] = {arr};
    db_stmt_t stmts[2] = {{.sql = "BEGIN"}, {.sql = SQL_SEEN, .nparams = 1, .params = params}};
    int rc = db_pipeline(p->db, stmts, 2, errstr, errstr_size);
    free(arr);
    free(ids);
    return rc == 0 ? stmts[1].result : NULL;
}

/* The result stored for command id before this batch, or NULL: seen_ids maps an id to its row of seen. */
static const char *stored_result(PGresult *seen, const strmap_t *seen_ids, const char *id) {
    const long *row = strmap_find(seen_ids, id);
    return row ? PQgetvalue(seen, (int)*row, 1) : NULL;
}

/* The result of command id decided earlier in this attempt, or NULL: ids maps an id to its place in d. */
static const char *decided_result(decided_t *d, const strmap_t *ids, const char *id) {
    const long *k = strmap_find(ids, id);
    return k ? d[*k].result : NULL;
}

/* One attempt at a batch (apply_once) and what it has decided so far. */
typedef struct attempt {
    cmdproc_t *p;
    cmdproc_msg_t *msgs;
    size_t n;
    cmd_t *cmds;
    const parse_status_t *st;
    char (*why)[256];
    PGresult *seen;
    strmap_t seen_ids;  /* command id -> its row of seen */
    int safe;           /* a savepoint per command */
    int savepoint_open; /* SAVEPOINT cmd is open */
    decided_t *dec;     /* the commands decided, to record in processed_commands */
    size_t ndec;
    strmap_t dec_ids; /* command id -> its place in dec */
    domain_run_t run;
    size_t run_at, run_end; /* commands [run_at, run_end) were decided by the set path */
    size_t no_run_before;   /* a refused run's commands go per command */
    /* Organizations with a policy, learnt when a run decided nothing at one of their commands: no run starts
     * at their commands again in this attempt (policies are only ever added). */
    char (*policy_orgs)[UUID_BUF];
    size_t npolicy_orgs, cap_policy_orgs;
    int runs;
    unsigned long set_decided;
    cmd_t **run_cmds;
} attempt_t;

/* 1 when org is one of a->policy_orgs. */
static int policy_org(const attempt_t *a, const char *org) {
    for (size_t q = 0; org && q < a->npolicy_orgs; q++)
        if (strcasecmp(a->policy_orgs[q], org) == 0)
            return 1;
    return 0;
}

/* A run that started at cmd decided nothing: when cmd's organization has a policy, no run starts at its
 * commands again (one would decide nothing either); any other reason (its address has a pending
 * invitation, its account was never activated, ...) concerns cmd alone, and a run may start at the next
 * command. -1 on database failure. */
static int learn_policy_org(attempt_t *a, const cmd_t *cmd, char *errstr, size_t errstr_size) {
    if (!cmd->org_id || policy_org(a, cmd->org_id))
        return 0;
    const char *params[1] = {cmd->org_id};
    PGresult *res = db_exec_cached(a->p->db, SQL_HAS_POLICY, 1, params, errstr, errstr_size);
    if (!res)
        return -1;
    if (PQntuples(res) > 0) {
        a->policy_orgs =
            xgrow(a->policy_orgs, a->npolicy_orgs + 1, &a->cap_policy_orgs, sizeof(*a->policy_orgs), 8);
        snprintf(a->policy_orgs[a->npolicy_orgs++], UUID_BUF, "%s", cmd->org_id);
    }
    PQclear(res);
    return 0;
}

/* At command i: when the set path may take a run of invitations from here (up to a command id seen before
 * or repeated within the run: a duplicate, which the loop decides in its turn), applies that run. -1 on
 * database failure. */
static int attempt_run(attempt_t *a, size_t i, char *errstr, size_t errstr_size) {
    cmdproc_t *p = a->p;
    if (!(i >= a->run_end && p->set_based && a->st[i] == PARSE_OK && i >= a->no_run_before &&
          a->runs < RUNS_MAX && domain_run_eligible(&a->cmds[i]) && !policy_org(a, a->cmds[i].org_id)))
        return 0;
    size_t m = 0, j = i;
    strmap_t in_run; /* the run's command ids */
    strmap_init(&in_run, 1);
    while (j < a->n && a->st[j] == PARSE_OK && domain_run_eligible(&a->cmds[j]) &&
           !stored_result(a->seen, &a->seen_ids, a->cmds[j].id) &&
           !decided_result(a->dec, &a->dec_ids, a->cmds[j].id)) {
        int added;
        strmap_add(&in_run, a->cmds[j].id, &added);
        if (!added)
            break; /* repeated within the run */
        a->run_cmds[m++] = &a->cmds[j++];
    }
    strmap_free(&in_run);
    if (m < RUN_MIN)
        return 0;
    if (a->savepoint_open) {
        if (db_cmd(p->db, "RELEASE SAVEPOINT cmd", errstr, errstr_size) != 0)
            return -1;
        a->savepoint_open = 0;
    }
    domain_run_free(&a->run);
    a->runs++;
    if (domain_run_apply(&p->ctx, a->run_cmds, m, &a->run, errstr, errstr_size) != 0)
        return -1;
    a->run_at = i;
    a->run_end = i + a->run.decided;
    a->set_decided += a->run.decided;
    if (a->run.refused)
        a->no_run_before = i + m;
    else if (a->run.decided == 0 && learn_policy_org(a, &a->cmds[i], errstr, errstr_size) != 0)
        return -1;
    log_debug(NULL, "a run of %zu invitations: %zu decided set-based%s", m, a->run.decided,
              a->run.refused ? " (refused by the database: per command)" : "");
    return 0;
}

/* Decides command i into *res: from the run that holds it, through domain_apply (under its own savepoint
 * when safe), or as rejected when it did not parse. 0; -1 on database failure; 1 when it needs undoing on
 * its own and the attempt is not safe (the caller rolls back and tries again with savepoints). */
static int attempt_decide(attempt_t *a, size_t i, domain_result_t *res, char *errstr, size_t errstr_size) {
    cmdproc_t *p = a->p;
    if (i < a->run_end) {
        domain_run_result(&p->ctx, &a->run, a->run_cmds, i - a->run_at, res);
        return 0;
    }
    if (a->st[i] != PARSE_OK) {
        memset(res, 0, sizeof(*res));
        domain_reject(res,
                      a->st[i] == PARSE_UNKNOWN_TYPE ? "unknown_command_type" : cmd_invalid_code(&a->cmds[i]),
                      a->why[i]);
        return 0;
    }
    size_t mark = p->outbox.n;
    /* One round trip ends the previous command's savepoint and opens this one's. */
    if (a->safe) {
        if (db_cmd(p->db, a->savepoint_open ? "RELEASE SAVEPOINT cmd; SAVEPOINT cmd" : "SAVEPOINT cmd",
                   errstr, errstr_size) != 0)
            return -1;
        a->savepoint_open = 1;
    }
    if (domain_apply(&p->ctx, &a->cmds[i], res, errstr, errstr_size) != 0)
        return -1;
    if (res->needs_rollback && !a->safe)
        return 1;
    if (res->needs_rollback && db_cmd(p->db, "ROLLBACK TO SAVEPOINT cmd", errstr, errstr_size) != 0)
        return -1;
    if (!res->accepted && !res->keep_changes)
        outbox_truncate(&p->outbox, mark);
    return 0;
}

/* Command i is decided: its result event, its row for processed_commands, its outcome. */
static void attempt_record(attempt_t *a, size_t i, const domain_result_t *res) {
    cmd_t *cmd = &a->cmds[i];
    decided_t *d = &a->dec[a->ndec];
    const char *type_name = cmd->type_name && *cmd->type_name ? cmd->type_name : "unknown";
    d->result = result_event(a->p, cmd, type_name, res);
    snprintf(d->id, sizeof(d->id), "%s", cmd->id);
    *strmap_add(&a->dec_ids, d->id, NULL) = (long)a->ndec++;
    d->type_name = type_name;
    d->status = res->accepted ? "accepted" : "rejected";
    a->msgs[i].outcome = res->accepted ? "accepted" : "rejected";
    a->msgs[i].code = res->code;
}

/* Every command decided: the outbox, processed_commands and COMMIT. -1 on database failure. */
static int attempt_commit(attempt_t *a, char *errstr, size_t errstr_size) {
    cmdproc_t *p = a->p;
    db_stmt_t first[2];
    size_t n = 0;
    char *arrays[4] = {NULL, NULL, NULL, NULL};
    if (a->savepoint_open)
        first[n++] = (db_stmt_t){.sql = "RELEASE SAVEPOINT cmd"};
    int rc = a->ndec ? record_decided(p, a->dec, a->ndec, &first[n], arrays, errstr, errstr_size) : 0;
    n += rc == 1;
    if (rc >= 0)
        rc = outbox_write_commit(&p->outbox, p->db, first, n, errstr, errstr_size);
    for (int c = 0; c < 4; c++)
        free(arrays[c]);
    return rc;
}

/* One attempt at the batch in one transaction. In the optimistic mode (safe = 0) no command gets a
 * savepoint: when one needs undoing on its own (a statement failed, or it wrote and was then rejected),
 * the attempt rolls back and returns 1, and the caller runs the batch again with a savepoint per command.
 * 0 when committed; -1 on database failure (rolled back). */
static int apply_once(cmdproc_t *p, cmdproc_msg_t *msgs, size_t n, cmd_t *cmds, const parse_status_t *st,
                      char (*why)[256], PGresult **seen_p, int safe, char *errstr, size_t errstr_size) {
    int rc = -1, in_tx = 1; /* from the BEGIN on (should it fail, the ROLLBACK does no harm) */
    attempt_t a = {.p = p, .msgs = msgs, .n = n, .cmds = cmds, .st = st, .why = why, .safe = safe};
    a.dec = xcalloc(n ? n : 1, sizeof(*a.dec));
    strmap_init(&a.dec_ids, 1);
    strmap_init(&a.seen_ids, 1);
    a.run_cmds = xcalloc(n ? n : 1, sizeof(*a.run_cmds));
    outbox_truncate(&p->outbox, 0);
    domain_forget(&p->ctx);
    /* The first attempt learns the stored results with its BEGIN; a second one (with savepoints) keeps them. */
    if (*seen_p ? db_cmd(p->db, "BEGIN", errstr, errstr_size) != 0
                : !(*seen_p = begin_seen_before(p, cmds, st, n, errstr, errstr_size)))
        goto done;
    a.seen = *seen_p;
    for (int r = 0; r < PQntuples(a.seen); r++)
        *strmap_add(&a.seen_ids, PQgetvalue(a.seen, r, 0), NULL) = r;
    for (size_t i = 0; i < n; i++) {
        if (st[i] == PARSE_NOT_COMMAND)
            continue;
        /* A command id decided before gets its original result again, and changes nothing. (A run holds
         * no such command.) */
        const char *prior = i < a.run_end ? NULL : stored_result(a.seen, &a.seen_ids, cmds[i].id);
        if (!prior && i >= a.run_end)
            prior = decided_result(a.dec, &a.dec_ids, cmds[i].id);
        if (prior) {
            outbox_add(&p->outbox, p->topic_results, cmds[i].id, prior);
            msgs[i].outcome = "duplicate";
            msgs[i].code = NULL;
            continue;
        }
        domain_result_t res;
        int d = attempt_run(&a, i, errstr, errstr_size);
        if (d == 0)
            d = attempt_decide(&a, i, &res, errstr, errstr_size);
        if (d != 0) {
            rc = d; /* -1: database failure; 1: run again with savepoints */
            goto done;
        }
        attempt_record(&a, i, &res);
    }
    if (attempt_commit(&a, errstr, errstr_size) != 0)
        goto done;
    in_tx = 0;
    rc = 0;
    p->set_decided += a.set_decided;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].outcome && strcmp(msgs[i].outcome, "rejected") == 0)
            log_info(msgs[i].command_id, "%s rejected: %s", cmds[i].type_name, msgs[i].code);
    }
done:
    domain_run_free(&a.run);
    strmap_free(&a.dec_ids);
    strmap_free(&a.seen_ids);
    free(a.run_cmds);
    free(a.policy_orgs);
    if (in_tx) {
        char ignore[256];
        db_cmd(p->db, "ROLLBACK", ignore, sizeof(ignore));
    }
    if (rc != 0)
        outbox_truncate(&p->outbox, 0);
    for (size_t i = 0; i < a.ndec; i++)
        free(a.dec[i].result);
    free(a.dec);
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
    rc = apply_once(p, msgs, n, cmds, st, why, &seen, 0, errstr, errstr_size);
    if (rc == 1) {
        log_debug(NULL, "batch of %zu applied again with a savepoint per command", n);
        rc = apply_once(p, msgs, n, cmds, st, why, &seen, 1, errstr, errstr_size);
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

/* ---- The worker ---- */

/* What the command worker's consumer loop hands each batch to (apply_batch). */
typedef struct cmdworker {
    cmdproc_t *proc;
    PGconn *db;
    rd_kafka_t *producer; /* of the dead letters */
    const char *dlq, *group;
    int failing; /* the last offer of the batch rolled back on a working connection (logged once) */
    /* The batch last committed in PostgreSQL whose dead letters are not all stored yet: offered again, it is
     * not applied again (its results would be published twice), only its missing dead letters sent. */
    deadletter_batch_t *held;
} cmdworker_t;

/* The Kafka headers of m, for the parser (binary-mode CloudEvents): an array the caller frees, whose names
 * and values m owns; NULL when it has none. */
static cmd_header_t *message_headers(const rd_kafka_message_t *m, size_t *n) {
    rd_kafka_headers_t *hdrs = NULL;
    *n = 0;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || !hdrs)
        return NULL;
    size_t cnt = rd_kafka_header_cnt(hdrs);
    cmd_header_t *h = xcalloc(cnt ? cnt : 1, sizeof(*h));
    while (*n < cnt && rd_kafka_header_get_all(hdrs, *n, &h[*n].name, &h[*n].value, &h[*n].len) == 0)
        (*n)++;
    return h;
}

/* Applies msgs in PostgreSQL: 0 when it committed; -1 when it rolled back, at once (no wait here: the
 * consumer loop holds the batch, polls Kafka with the partitions paused and offers it again with a
 * backoff). A connection lost and reset at once is tried again at once; PostgreSQL away is logged once by
 * db_alive, another failure once per run of failures. */
static int apply_offer(cmdworker_t *w, cmdproc_msg_t *msgs, size_t n) {
    char err[1024];
    for (int tries = 0;; tries++) {
        if (cmdproc_apply(w->proc, msgs, n, err, sizeof(err)) == 0) {
            if (w->failing)
                log_info(NULL, "batch of %zu committed again", n);
            w->failing = 0;
            return 0;
        }
        int was_up = PQstatus(w->db) == CONNECTION_OK;
        if (!db_alive(w->db))
            return -1; /* PostgreSQL away */
        if (!was_up && tries == 0)
            continue; /* the connection was lost and is back: once more at once */
        if (!w->failing)
            log_error(NULL,
                      "batch of %zu rolled back: %s; offered again with a backoff (no further line until "
                      "a batch commits)",
                      n, err);
        else
            log_debug(NULL, "batch of %zu rolled back again: %s", n, err);
        w->failing = 1;
        return -1;
    }
}

/* The consumer loop's apply hook: the batch in PostgreSQL, then its dead letters stored; 0 when both are
 * done (the offsets may move past the batch), -1 when the database did not commit it, its dead letters are
 * not all stored yet, or shutdown is asked (offered again). A batch committed whose dead letters are
 * missing is offered again as it was (less revoked partitions' messages): then only those are sent. */
static int apply_batch(void *arg, rd_kafka_message_t *const *m, size_t n) {
    cmdworker_t *w = arg;
    int rc;
    if (!deadletter_batch_same(w->held, m, n)) {
        /* Another batch (the held one's partitions were all revoked): its next owner re-reads it. */
        deadletter_batch_free(w->held);
        w->held = NULL;
        cmdproc_msg_t *msgs = xcalloc(n, sizeof(*msgs));
        for (size_t i = 0; i < n; i++) {
            msgs[i].payload = m[i]->payload ? m[i]->payload : "";
            msgs[i].len = m[i]->len;
            msgs[i].headers = message_headers(m[i], &msgs[i].nheaders);
        }
        rc = apply_offer(w, msgs, n);
        if (rc == 0) {
            const char **reasons = xcalloc(n, sizeof(*reasons));
            size_t dead = 0;
            for (size_t i = 0; i < n; i++) {
                reasons[i] = msgs[i].dead_letter ? msgs[i].reason : NULL;
                dead += reasons[i] != NULL;
            }
            if (dead > 0)
                w->held = deadletter_batch_new(m, reasons, n);
            free(reasons);
        }
        for (size_t i = 0; i < n; i++)
            free((void *)msgs[i].headers);
        free(msgs);
        if (rc != 0 || !w->held)
            return rc;
    }
    /* The dead letters must be stored before their offsets are committed. */
    rc = deadletter_batch_store(w->held, w->producer, w->dlq, w->group, m, n);
    if (rc == 0) {
        deadletter_batch_free(w->held);
        w->held = NULL;
    }
    return rc;
}

/* The consumer loop's round hook: serves the dead letters' delivery reports. */
static void serve_producer(void *arg) {
    rd_kafka_poll(((cmdworker_t *)arg)->producer, 0);
}

/* The dead letters' producer: delivery reports confirm each one; message.timeout.ms bounds the wait for
 * one (a missing topic otherwise holds a message for librdkafka's 300 s default) unless the configuration
 * sets one. Waits while Kafka is down. */
static rd_kafka_t *dead_letter_producer(const conf_t *c, char *errstr, size_t errstr_size) {
    static const char *const timeout[] = {"message.timeout.ms", "30000", NULL};
    int own_timeout = conf_get(c, "kafka.message.timeout.ms") || conf_get(c, "kafka.delivery.timeout.ms");
    return kafka_producer_wait(c, deadletter_delivered, own_timeout ? NULL : timeout, errstr, errstr_size);
}

int cmdproc_run(const conf_t *c) {
    int rc = EXIT_INFRA;
    char err[1024];
    long batch_max, batch_wait;
    secret_keys_t keys;
    cmdworker_t w = {.dlq = conf_get(c, "topic.dlq"), .group = conf_get(c, "group.commands")};
    consumer_t *consumer = NULL;
    if (secret_load(conf_get(c, "keys.dir"), 0, &keys, err, sizeof(err)) != 0 ||
        conf_get_long(c, "batch.max", 1, 100000, &batch_max, err, sizeof(err)) != 0 ||
        conf_get_long(c, "batch.wait.ms", 0, 60000, &batch_wait, err, sizeof(err)) != 0) {
        rc = worker_misconfigured(err);
        goto done;
    }
    if (!(w.db = db_connect_wait(c, err, sizeof(err))) || /* waits while PostgreSQL is down */
        !(w.proc = cmdproc_new(c, w.db, &keys, err, sizeof(err))) ||
        !(w.producer = dead_letter_producer(c, err, sizeof(err))) ||
        !(consumer = consumer_new(c, w.group, conf_get(c, "topic.commands"), batch_max, batch_wait,
                                  CONSUMER_FILL_AFTER_FULL, err, sizeof(err)))) {
        rc = worker_gave_up(err);
        goto done;
    }
    log_info(NULL, "consuming %s as group %s (batches of up to %ld, %ld ms)", conf_get(c, "topic.commands"),
             w.group, batch_max, batch_wait);
    notify_ready("consuming commands"); /* systemd (Type=notify): connected to PostgreSQL and Kafka */
    consumer_run(consumer, &(consumer_hooks_t){.arg = &w, .apply = apply_batch, .round = serve_producer});
    rc = EXIT_OK;
    log_info(NULL, "shutting down");
done:
    consumer_free(consumer);       /* leaves the group: partitions move on at once */
    deadletter_batch_free(w.held); /* the reports still to come free its slots */
    if (w.producer) {
        rd_kafka_flush(w.producer, 10000);
        rd_kafka_purge(w.producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(w.producer, 1000); /* serves the purged messages' reports */
        rd_kafka_destroy(w.producer);
    }
    cmdproc_free(w.proc);
    PQfinish(w.db);
    code_seal_forget(); /* this thread sealed the codes the pool had not made ahead */
    sodium_memzero(&keys, sizeof(keys));
    return rc;
}
