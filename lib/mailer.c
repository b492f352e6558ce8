/* The mailer: mail jobs from Kafka recorded in mail_deliveries, sent over SMTP, retried from the table
 * with exponential backoff, outcomes and events written in one transaction. */
#include "mailer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <librdkafka/rdkafka.h>

#include "db.h"
#include "event.h"
#include "kafka.h"
#include "log.h"
#include "mail.h"
#include "outbox.h"
#include "secret.h"
#include "smtp.h"
#include "worker.h"

#define MAILER_SOURCE "/raikoo/mailer"

/* ---- SQL, all of it ---- */

/* A new job is claimed at once: `sending` with a lease, so that a mailer dying mid-send leaves a row the
 * next scan picks up when the lease is over. */
static const char SQL_INSERT[] =
    "INSERT INTO mail_deliveries (job_id, invitation_id, status, attempts, next_attempt_at, job)"
    " VALUES ($1, $2, 'sending', 0, now() + $3::bigint * interval '1 millisecond', $4)"
    " ON CONFLICT (job_id) DO NOTHING RETURNING job_id";
static const char SQL_EXISTING[] = "SELECT status FROM mail_deliveries WHERE job_id = $1";
static const char SQL_INVITATION[] =
    "SELECT status, coalesce(mail_job_id::text, ''), expires_at <= now() FROM invitations WHERE id = $1";
static const char SQL_SUPERSEDE[] =
    "UPDATE mail_deliveries SET status = 'superseded', next_attempt_at = NULL, last_error = $2,"
    " updated_at = now() WHERE job_id = $1";
static const char SQL_DUE[] =
    "SELECT d.job_id, d.job, d.attempts, coalesce(i.status, ''), coalesce(i.mail_job_id::text, ''),"
    "       coalesce(i.expires_at <= now(), true)"
    " FROM mail_deliveries d LEFT JOIN invitations i ON i.id = d.invitation_id"
    " WHERE d.status IN ('retrying', 'sending') AND d.next_attempt_at <= now()"
    " ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED";
static const char SQL_RECLAIM[] =
    "UPDATE mail_deliveries SET status = 'sending', next_attempt_at = now() + $2::bigint * interval '1 millisecond',"
    " updated_at = now() WHERE job_id = $1";
static const char SQL_SENT[] =
    "UPDATE mail_deliveries SET status = 'sent', attempts = $2, next_attempt_at = NULL, last_error = NULL,"
    " updated_at = now() WHERE job_id = $1";
static const char SQL_RETRY[] =
    "UPDATE mail_deliveries SET status = 'retrying', attempts = $2,"
    " next_attempt_at = now() + $3::bigint * interval '1 millisecond', last_error = $4, updated_at = now()"
    " WHERE job_id = $1";
static const char SQL_FAILED[] =
    "UPDATE mail_deliveries SET status = 'failed', attempts = $2, next_attempt_at = NULL, last_error = $3,"
    " updated_at = now() WHERE job_id = $1";
/* Only the invitation's current job speaks for its delivery state: a superseded job never overwrites it. */
static const char SQL_INVITATION_STATE[] =
    "UPDATE invitations SET mail_state = $3, mail_error = $4, mail_updated_at = now()"
    " WHERE id = $1 AND mail_job_id = $2";

/* ---- the mailer ---- */

typedef struct claimed {
    mail_job_t job;
    char *payload; /* the job as recorded (for the row; the JSON tree is in job) */
    int attempts;  /* attempts made before this one */
    int bad;       /* malformed: fails without an attempt */
    char why[256];
} claimed_t;

struct mailer {
    const conf_t *conf;
    secret_keys_t keys;
    mail_templates_t *templates;
    mail_from_t from;
    smtp_conf_t smtp;
    const char *app_url, *events_topic;
    long batch_max, retry_base_ms, retry_max, lease_ms;
    claimed_t *claimed;
    size_t n_claimed, cap_claimed;
};

mailer_t *mailer_new(const conf_t *c, char *errstr, size_t errstr_size) {
    mailer_t *m = calloc(1, sizeof(*m));
    if (!m)
        abort();
    m->conf = c;
    int overridden = 0;
    if (conf_get_long(c, "mail.batch.max", 1, 10000, &m->batch_max, errstr, errstr_size) != 0 ||
        conf_get_long(c, "mail.retry.base.ms", 1, 86400000, &m->retry_base_ms, errstr, errstr_size) != 0 ||
        conf_get_long(c, "mail.retry.max", 1, 100, &m->retry_max, errstr, errstr_size) != 0 ||
        smtp_conf_load(c, &m->smtp, errstr, errstr_size) != 0 ||
        mail_from_parse(conf_get(c, "mail.from"), &m->from, errstr, errstr_size) != 0)
        goto fail;
    if (secret_load(conf_get(c, "keys.dir"), 1, &m->keys, errstr, errstr_size) != 0)
        goto fail;
    m->templates = mail_templates_load(conf_get(c, "mail.templates"), &overridden, errstr, errstr_size);
    if (!m->templates)
        goto fail;
    if (overridden)
        log_info(NULL, "%d mail template(s) from %s", overridden, conf_get(c, "mail.templates"));
    m->app_url = conf_get(c, "mail.app.url");
    m->events_topic = conf_get(c, "topic.events");
    /* Long enough for a whole SMTP session at the configured timeouts, so that a live mailer's claim
     * never lapses mid-send (which could send twice); short enough that a dead mailer's jobs go out
     * within minutes. */
    m->lease_ms = 60000 + m->smtp.timeout_ms * (4 + m->batch_max);
    return m;
fail:
    mailer_free(m);
    return NULL;
}

static void claimed_clear(mailer_t *m) {
    for (size_t i = 0; i < m->n_claimed; i++) {
        mail_job_free(&m->claimed[i].job);
        free(m->claimed[i].payload);
    }
    m->n_claimed = 0;
}

void mailer_free(mailer_t *m) {
    if (!m)
        return;
    claimed_clear(m);
    free(m->claimed);
    mail_templates_free(m->templates);
    mail_from_free(&m->from);
    smtp_conf_clear(&m->smtp);
    sodium_memzero(&m->keys, sizeof(m->keys));
    free(m);
}

long mailer_scan_interval_ms(const mailer_t *m) {
    long t = m->retry_base_ms / 2;
    return t < 100 ? 100 : t > 1000 ? 1000 : t;
}

static claimed_t *claimed_add(mailer_t *m) {
    if (m->n_claimed == m->cap_claimed) {
        m->cap_claimed = m->cap_claimed ? m->cap_claimed * 2 : 64;
        m->claimed = realloc(m->claimed, m->cap_claimed * sizeof(*m->claimed));
        if (!m->claimed)
            abort();
    }
    claimed_t *cl = &m->claimed[m->n_claimed++];
    memset(cl, 0, sizeof(*cl));
    return cl;
}

/* Why a job must not be sent, from its invitation's row (status, current job, expired), or NULL. */
static const char *stale_reason(const char *job_id, const char *status, const char *current, int expired) {
    if (!*status)
        return "not sent: the invitation no longer exists";
    if (strcmp(status, "pending") != 0) {
        if (strcmp(status, "accepted") == 0)
            return "not sent: the invitation is accepted";
        if (strcmp(status, "removed") == 0)
            return "not sent: the invitation is removed";
        return "not sent: the invitation is expired";
    }
    if (strcasecmp(current, job_id) != 0)
        return "not sent: superseded by a newer e-mail for this invitation (resend)";
    if (expired)
        return "not sent: the invitation is expired";
    return NULL;
}

static int exec_ok(PGconn *db, const char *sql, int n, const char *const *p, char *errstr, size_t errstr_size) {
    PGresult *res = db_exec_cached(db, sql, n, p, errstr, errstr_size); /* sql: one of the constants above */
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

static void rollback(PGconn *db) {
    char ignore[256];
    db_cmd(db, "ROLLBACK", ignore, sizeof(ignore));
}

/* Appends InvitationEmailSent or InvitationEmailFailed for a job. No code, sealed or not, goes in. */
static void add_event(mailer_t *m, outbox_t *ob, const mail_job_t *job, const char *name, int attempts,
                      const char *reason, int permanent) {
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "invitation_id", job->invitation_id, "org_id",
                             job->org_id, "job_id", job->job_id, "email", job->email[0] ? job->email : "", "kind",
                             job->kind ? job->kind : "", "attempts", attempts);
    if (!data)
        abort();
    if (reason) {
        json_object_set_new(data, "reason", json_string(reason));
        json_object_set_new(data, "permanent", json_boolean(permanent));
    }
    char type[128];
    snprintf(type, sizeof(type), "raikoo.event.%s.v1", name);
    json_t *ev = event_new(type, NULL, MAILER_SOURCE, NULL, job->correlationid, data);
    char *text = event_dump(ev);
    outbox_add(ob, m->events_topic, job->org_id, text);
    free(text);
    json_decref(ev);
}

/* Records a job as failed without an attempt (malformed), with its event, inside the transaction. */
static int record_failed(mailer_t *m, PGconn *db, outbox_t *ob, const mail_job_t *job, int attempts,
                         const char *why, char *errstr, size_t errstr_size) {
    char att[16];
    snprintf(att, sizeof(att), "%d", attempts);
    const char *p[3] = {job->job_id, att, why};
    const char *q[4] = {job->invitation_id, job->job_id, "failed", why};
    if (exec_ok(db, SQL_FAILED, 3, p, errstr, errstr_size) != 0 ||
        exec_ok(db, SQL_INVITATION_STATE, 4, q, errstr, errstr_size) != 0)
        return -1;
    add_event(m, ob, job, "InvitationEmailFailed", attempts, why, 1);
    return 0;
}

int mailer_accept(mailer_t *m, PGconn *db, const mailer_input_t *in, size_t n, char *errstr, size_t errstr_size) {
    int rc = -1;
    outbox_t ob = {0};
    size_t first_claim = m->n_claimed;
    char lease[32];
    snprintf(lease, sizeof(lease), "%ld", m->lease_ms);
    if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        mail_job_t job;
        int identified = 0;
        char why[256] = "";
        int parsed = mail_job_parse(in[i].payload, in[i].len, &job, &identified, why, sizeof(why));
        if (parsed != 0 && !identified) {
            /* Nothing to record it against: it cannot be sent or reported, only logged (without its body,
             * which may hold a sealed code). */
            log_error(NULL, "mail job ignored: %s", why);
            mail_job_free(&job);
            continue;
        }
        int bad = parsed != 0;
        char *payload = strndup(in[i].payload, in[i].len);
        if (!payload)
            abort();
        const char *ins[4] = {job.job_id, job.invitation_id, lease, payload};
        PGresult *res = db_exec_cached(db, SQL_INSERT, 4, ins, errstr, errstr_size);
        if (!res) {
            free(payload);
            mail_job_free(&job);
            goto done;
        }
        int fresh = PQntuples(res) == 1;
        PQclear(res);
        if (!fresh) {
            const char *p[1] = {job.job_id};
            res = db_exec_cached(db, SQL_EXISTING, 1, p, errstr, errstr_size);
            if (!res) {
                free(payload);
                mail_job_free(&job);
                goto done;
            }
            log_info(job.correlationid, "mail job %s for invitation %s seen before (%s): not sent again", job.job_id,
                     job.invitation_id, PQntuples(res) ? PQgetvalue(res, 0, 0) : "?");
            PQclear(res);
            free(payload);
            mail_job_free(&job);
            continue;
        }
        const char *p[1] = {job.invitation_id};
        res = db_exec_cached(db, SQL_INVITATION, 1, p, errstr, errstr_size);
        if (!res) {
            free(payload);
            mail_job_free(&job);
            goto done;
        }
        int found = PQntuples(res) == 1;
        const char *stale = stale_reason(job.job_id, found ? PQgetvalue(res, 0, 0) : "",
                                         found ? PQgetvalue(res, 0, 1) : "", found && PQgetvalue(res, 0, 2)[0] == 't');
        PQclear(res);
        if (stale) {
            const char *s[2] = {job.job_id, stale};
            log_info(job.correlationid, "mail job %s for invitation %s %s", job.job_id, job.invitation_id, stale);
            int ok = exec_ok(db, SQL_SUPERSEDE, 2, s, errstr, errstr_size) == 0;
            free(payload);
            mail_job_free(&job);
            if (!ok)
                goto done;
            continue;
        }
        claimed_t *cl = claimed_add(m);
        cl->job = job;
        cl->payload = payload;
        cl->bad = bad;
        snprintf(cl->why, sizeof(cl->why), "%s", bad ? why : "");
    }
    /* Malformed jobs that name a current invitation fail here, once, with their event. */
    for (size_t i = first_claim; i < m->n_claimed; i++) {
        claimed_t *cl = &m->claimed[i];
        if (!cl->bad)
            continue;
        char reason[300];
        snprintf(reason, sizeof(reason), "malformed mail job: %s", cl->why);
        log_error(cl->job.correlationid, "mail job %s for invitation %s failed: %s", cl->job.job_id,
                  cl->job.invitation_id, reason);
        if (record_failed(m, db, &ob, &cl->job, 0, reason, errstr, errstr_size) != 0)
            goto done;
    }
    if (outbox_write(&ob, db, errstr, errstr_size) != 0 || db_cmd(db, "COMMIT", errstr, errstr_size) != 0)
        goto done;
    rc = 0;
done:
    if (rc != 0) {
        rollback(db);
        /* Nothing was recorded: forget what this batch claimed. */
        while (m->n_claimed > first_claim) {
            m->n_claimed--;
            mail_job_free(&m->claimed[m->n_claimed].job);
            free(m->claimed[m->n_claimed].payload);
        }
    } else {
        /* The malformed ones are finished. */
        size_t j = first_claim;
        for (size_t i = first_claim; i < m->n_claimed; i++) {
            if (m->claimed[i].bad) {
                mail_job_free(&m->claimed[i].job);
                free(m->claimed[i].payload);
            } else {
                m->claimed[j++] = m->claimed[i];
            }
        }
        m->n_claimed = j;
    }
    outbox_free(&ob);
    return rc;
}

int mailer_claim_due(mailer_t *m, PGconn *db, int *claimed, char *errstr, size_t errstr_size) {
    int rc = -1;
    size_t first_claim = m->n_claimed;
    char limit[32], lease[32];
    snprintf(limit, sizeof(limit), "%ld", m->batch_max);
    snprintf(lease, sizeof(lease), "%ld", m->lease_ms);
    PGresult *res = NULL;
    *claimed = 0;
    if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
        return -1;
    const char *p[1] = {limit};
    res = db_exec_cached(db, SQL_DUE, 1, p, errstr, errstr_size);
    if (!res)
        goto done;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *job_id = PQgetvalue(res, r, 0), *text = PQgetvalue(res, r, 1);
        const char *stale = stale_reason(job_id, PQgetvalue(res, r, 3), PQgetvalue(res, r, 4),
                                         PQgetvalue(res, r, 5)[0] == 't');
        if (stale) {
            const char *s[2] = {job_id, stale};
            log_info(NULL, "mail job %s %s", job_id, stale);
            if (exec_ok(db, SQL_SUPERSEDE, 2, s, errstr, errstr_size) != 0)
                goto done;
            continue;
        }
        claimed_t *cl = claimed_add(m);
        int identified = 0;
        char why[256];
        /* The row holds a job that parsed when it came in; a failure here would be a changed contract. */
        cl->bad = mail_job_parse(text, strlen(text), &cl->job, &identified, why, sizeof(why)) != 0;
        cl->payload = strdup(text);
        cl->attempts = (int)strtol(PQgetvalue(res, r, 2), NULL, 10);
        if (!cl->payload)
            abort();
        if (cl->bad || !identified) {
            snprintf(cl->why, sizeof(cl->why), "malformed mail job: %.200s", why);
            if (!identified) {
                /* Cannot even name its invitation: retire the row. */
                const char *s[2] = {job_id, cl->why};
                log_error(NULL, "mail job %s: %s", job_id, cl->why);
                mail_job_free(&cl->job);
                free(cl->payload);
                m->n_claimed--;
                if (exec_ok(db, SQL_SUPERSEDE, 2, s, errstr, errstr_size) != 0)
                    goto done;
                continue;
            }
        }
        const char *q[2] = {job_id, lease};
        if (exec_ok(db, SQL_RECLAIM, 2, q, errstr, errstr_size) != 0)
            goto done;
    }
    if (db_cmd(db, "COMMIT", errstr, errstr_size) != 0)
        goto done;
    *claimed = (int)(m->n_claimed - first_claim);
    rc = 0;
done:
    if (res)
        PQclear(res);
    if (rc != 0) {
        rollback(db);
        while (m->n_claimed > first_claim) {
            m->n_claimed--;
            mail_job_free(&m->claimed[m->n_claimed].job);
            free(m->claimed[m->n_claimed].payload);
        }
    }
    return rc;
}

/* The delay before attempt number `attempts + 1`: base, doubling, at most a day. */
static long long backoff_ms(const mailer_t *m, int attempts) {
    long long d = m->retry_base_ms;
    for (int i = 1; i < attempts && d < 86400000LL; i++)
        d *= 2;
    return d > 86400000LL ? 86400000LL : d;
}

/* Records the outcome of one attempt inside the transaction. */
static int record_outcome(mailer_t *m, PGconn *db, outbox_t *ob, claimed_t *cl, const smtp_item_t *it,
                          char *errstr, size_t errstr_size) {
    const mail_job_t *job = &cl->job;
    int attempts = cl->attempts + 1;
    char att[16], delay[32];
    snprintf(att, sizeof(att), "%d", attempts);
    if (it->outcome == SMTP_SENT) {
        const char *p[2] = {job->job_id, att};
        const char *q[4] = {job->invitation_id, job->job_id, "sent", NULL};
        if (exec_ok(db, SQL_SENT, 2, p, errstr, errstr_size) != 0 ||
            exec_ok(db, SQL_INVITATION_STATE, 4, q, errstr, errstr_size) != 0)
            return -1;
        add_event(m, ob, job, "InvitationEmailSent", attempts, NULL, 0);
        log_info(job->correlationid, "mail job %s for invitation %s sent to %s (attempt %d)", job->job_id,
                 job->invitation_id, job->email, attempts);
        return 0;
    }
    if (it->outcome == SMTP_TRANSIENT && attempts < m->retry_max) {
        long long d = backoff_ms(m, attempts);
        snprintf(delay, sizeof(delay), "%lld", d);
        const char *p[4] = {job->job_id, att, delay, it->detail};
        const char *q[4] = {job->invitation_id, job->job_id, "retrying", it->detail};
        if (exec_ok(db, SQL_RETRY, 4, p, errstr, errstr_size) != 0 ||
            exec_ok(db, SQL_INVITATION_STATE, 4, q, errstr, errstr_size) != 0)
            return -1;
        log_warn(job->correlationid, "mail job %s for invitation %s: attempt %d of %ld failed (%s); next in %lld ms",
                 job->job_id, job->invitation_id, attempts, m->retry_max, it->detail, d);
        return 0;
    }
    char reason[400];
    if (it->outcome == SMTP_TRANSIENT)
        snprintf(reason, sizeof(reason), "gave up after %d attempts: %s", attempts, it->detail);
    else
        snprintf(reason, sizeof(reason), "%s", it->detail);
    const char *p[3] = {job->job_id, att, reason};
    const char *q[4] = {job->invitation_id, job->job_id, "failed", reason};
    if (exec_ok(db, SQL_FAILED, 3, p, errstr, errstr_size) != 0 ||
        exec_ok(db, SQL_INVITATION_STATE, 4, q, errstr, errstr_size) != 0)
        return -1;
    add_event(m, ob, job, "InvitationEmailFailed", attempts, reason, it->outcome == SMTP_PERMANENT);
    log_error(job->correlationid, "mail job %s for invitation %s to %s failed: %s", job->job_id, job->invitation_id,
              job->email, reason);
    return 0;
}

/* Sends claimed[from, from + n) in one SMTP session and records the outcomes in one transaction. */
static int deliver_chunk(mailer_t *m, PGconn *db, size_t from, size_t n, char *errstr, size_t errstr_size) {
    int rc = -1;
    outbox_t ob = {0};
    smtp_item_t *items = calloc(n, sizeof(*items));
    char **texts = calloc(n, sizeof(*texts));
    size_t *which = calloc(n, sizeof(*which));
    size_t n_send = 0;
    if (!items || !texts || !which)
        abort();
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        claimed_t *cl = &m->claimed[from + i];
        smtp_item_t *it = &items[i];
        char code[CODE_LEN + 1];
        if (cl->bad) {
            it->outcome = SMTP_PERMANENT;
            snprintf(it->detail, sizeof(it->detail), "%s", cl->why);
            continue;
        }
        if (code_open(&m->keys, cl->job.sealed_code, code) != 0) {
            it->outcome = SMTP_PERMANENT;
            snprintf(it->detail, sizeof(it->detail),
                     "the sealed code does not open with this mailer's key (keys.dir/mailer.sk)");
            continue;
        }
        char why[256];
        texts[i] = mail_render(m->templates, &m->from, m->app_url, &cl->job, code, now, why, sizeof(why));
        sodium_memzero(code, sizeof(code));
        if (!texts[i]) {
            it->outcome = SMTP_PERMANENT;
            snprintf(it->detail, sizeof(it->detail), "cannot render the e-mail: %.200s", why);
            continue;
        }
        it->rcpt = cl->job.email;
        it->message = texts[i];
        which[n_send++] = i;
    }
    if (n_send > 0) {
        /* The session gets only the messages that rendered; their verdicts go back to their slots. */
        smtp_item_t *batch = calloc(n_send, sizeof(*batch));
        if (!batch)
            abort();
        for (size_t k = 0; k < n_send; k++)
            batch[k] = items[which[k]];
        char why[256] = "";
        if (smtp_send(&m->smtp, m->from.addr, batch, n_send, why, sizeof(why)) != 0)
            log_warn(NULL, "SMTP session failed: %s", why);
        for (size_t k = 0; k < n_send; k++)
            items[which[k]] = batch[k];
        free(batch);
    }
    if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
        goto done;
    for (size_t i = 0; i < n; i++)
        if (record_outcome(m, db, &ob, &m->claimed[from + i], &items[i], errstr, errstr_size) != 0) {
            rollback(db);
            goto done;
        }
    if (outbox_write(&ob, db, errstr, errstr_size) != 0 || db_cmd(db, "COMMIT", errstr, errstr_size) != 0) {
        rollback(db);
        goto done;
    }
    rc = 0;
done:
    for (size_t i = 0; i < n; i++) {
        if (texts[i]) {
            sodium_memzero(texts[i], strlen(texts[i]));
            free(texts[i]);
        }
    }
    free(texts);
    free(items);
    free(which);
    outbox_free(&ob);
    return rc;
}

int mailer_deliver(mailer_t *m, PGconn *db, char *errstr, size_t errstr_size) {
    int rc = 0;
    for (size_t from = 0; from < m->n_claimed; from += (size_t)m->batch_max) {
        size_t n = m->n_claimed - from < (size_t)m->batch_max ? m->n_claimed - from : (size_t)m->batch_max;
        if (deliver_chunk(m, db, from, n, errstr, errstr_size) != 0) {
            /* Those rows stay `sending` under their lease and come back through the due scan. */
            log_error(NULL, "cannot record the outcome of %zu mail job(s): %s", n, errstr);
            rc = -1;
        }
    }
    claimed_clear(m);
    return rc;
}

/* ---- the worker loop ---- */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
    (void)opaque;
    /* Jobs are handled to the end inside one poll round, so nothing is in flight here: revoking needs
     * no commit of its own. */
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info(NULL, "assigned %d partition(s) of %s", parts->cnt, parts->cnt ? parts->elems[0].topic : "");
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
    } else {
        log_info(NULL, "revoked %d partition(s)", parts->cnt);
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else
            rd_kafka_assign(rk, NULL);
    }
}

/* After a database error: a broken connection is reset; either way wait a moment. */
static void db_recover(PGconn *db) {
    if (PQstatus(db) != CONNECTION_OK) {
        PQreset(db);
        if (PQstatus(db) == CONNECTION_OK)
            log_info(NULL, "reconnected to PostgreSQL");
    }
    worker_sleep_ms(1000);
}

/* Commits, per partition, the offset after the last message of the batch. */
static void commit_offsets(rd_kafka_t *rk, rd_kafka_message_t **msgs, size_t n) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        const char *topic = rd_kafka_topic_name(msgs[i]->rkt);
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(list, topic, msgs[i]->partition);
        if (!tp)
            tp = rd_kafka_topic_partition_list_add(list, topic, msgs[i]->partition);
        if (tp->offset < msgs[i]->offset + 1)
            tp->offset = msgs[i]->offset + 1;
    }
    rd_kafka_resp_err_t err = rd_kafka_commit(rk, list, 0);
    if (err)
        /* Harmless for correctness: a redelivered job is recognised in mail_deliveries. */
        log_warn(NULL, "cannot commit mail offsets: %s", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(list);
}

int mailer_run(const conf_t *c) {
    int rc = 3;
    char err[1024];
    mailer_t *m = NULL;
    PGconn *db = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_message_t **batch = NULL;
    size_t n = 0;

    m = mailer_new(c, err, sizeof(err));
    if (!m) {
        log_error(NULL, "%s", err);
        rc = 2;
        goto done;
    }
    db = db_connect(c, err, sizeof(err));
    if (!db || db_require_schema(db, err, sizeof(err)) != 0) {
        log_error(NULL, "%s", err);
        goto done;
    }
    rk = kafka_group_consumer_new(c, conf_get(c, "group.mail"), conf_get(c, "topic.mail"), rebalance_cb, err,
                                  sizeof(err));
    if (!rk) {
        log_error(NULL, "%s", err);
        goto done;
    }
    log_info(NULL, "mailer started: group %s, topic %s, SMTP %s (starttls %s), batch %ld, retries %ld from %ld ms",
             conf_get(c, "group.mail"), conf_get(c, "topic.mail"), m->smtp.hostport, conf_get(c, "smtp.starttls"),
             m->batch_max, m->retry_max, m->retry_base_ms);

    batch = calloc((size_t)m->batch_max, sizeof(*batch));
    if (!batch)
        abort();
    int64_t next_scan = 0;
    while (worker_running()) {
        /* Gather a batch: wait for the first job briefly (so shutdown and retries stay responsive), then
         * take what is already there. */
        int64_t deadline = 0;
        while (n < (size_t)m->batch_max && worker_running()) {
            int wait = n == 0 ? 100 : (int)(deadline - worker_now_ms());
            if (n > 0 && wait <= 0)
                break;
            rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, wait);
            if (!msg) {
                if (n == 0)
                    break;
                continue;
            }
            if (msg->err) {
                if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    log_warn(NULL, "consumer: %s", rd_kafka_message_errstr(msg));
                rd_kafka_message_destroy(msg);
                continue;
            }
            if (n == 0)
                deadline = worker_now_ms() + 20;
            batch[n++] = msg;
        }
        if (n > 0) {
            mailer_input_t *in = calloc(n, sizeof(*in));
            if (!in)
                abort();
            for (size_t i = 0; i < n; i++) {
                in[i].payload = batch[i]->payload ? batch[i]->payload : "";
                in[i].len = batch[i]->len;
            }
            /* Until the jobs are in the table, their offsets stay uncommitted: retry the same batch. */
            int recorded = mailer_accept(m, db, in, n, err, sizeof(err)) == 0;
            free(in);
            if (!recorded) {
                log_error(NULL, "cannot record %zu mail job(s), will try again: %s", n, err);
                db_recover(db);
                continue; /* the batch is kept; on shutdown it is left uncommitted for the next mailer */
            }
            commit_offsets(rk, batch, n);
            for (size_t i = 0; i < n; i++)
                rd_kafka_message_destroy(batch[i]);
            n = 0;
            if (mailer_deliver(m, db, err, sizeof(err)) != 0)
                db_recover(db);
        }
        if (worker_now_ms() >= next_scan) {
            int claimed = 0;
            if (mailer_claim_due(m, db, &claimed, err, sizeof(err)) != 0) {
                log_error(NULL, "cannot read due mail retries: %s", err);
                db_recover(db);
            } else if (claimed > 0 && mailer_deliver(m, db, err, sizeof(err)) != 0) {
                db_recover(db);
            }
            /* A full batch means more may be due: look again at once. */
            next_scan = claimed >= m->batch_max ? 0 : worker_now_ms() + mailer_scan_interval_ms(m);
        }
    }
    log_info(NULL, "mailer stopping");
    rc = 0;
done:
    for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(batch[i]);
    free(batch);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (db)
        PQfinish(db);
    mailer_free(m);
    return rc;
}
