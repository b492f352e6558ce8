/* The mailer: mail jobs from Kafka recorded in mail_deliveries, sent over SMTP, retried from the table
 * with exponential backoff, outcomes and events written in one transaction. */
#include "mailer.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <librdkafka/rdkafka.h>

#include "consumer.h"
#include "db.h"
#include "event.h"
#include "exitstatus.h"
#include "instruments.h"
#include "log.h"
#include "notify.h"
#include "mail.h"
#include "outbox.h"
#include "secret.h"
#include "smtp.h"
#include "text.h"
#include "worker.h"

#define MAILER_SOURCE "/raikoo/mailer"
/* How long a batch of mail jobs waits after its first job to fill (lib/core/consumer.h). */
#define MAILER_BATCH_WAIT_MS 20

/* ---- SQL, all of it ---- */

/* The job that speaks for an invitation now, as seen by a job: the invitation's reminder when that is the
 * one (reminder.c), else its current invitation e-mail (stale_reason compares). In SQL_ACCEPT (v, t) and
 * SQL_DUE (i, d). */
#define CURRENT_JOB_VT                                                                                       \
    "(CASE WHEN v.reminder_job_id = t.job_id AND v.reminder_sent_at IS NOT NULL THEN t.job_id"               \
    " ELSE v.mail_job_id END)"
#define CURRENT_JOB_ID                                                                                       \
    "(CASE WHEN i.reminder_job_id = d.job_id AND i.reminder_sent_at IS NOT NULL THEN d.job_id"               \
    " ELSE i.mail_job_id END)"

/* Every statement works on a whole batch or chunk at once (arrays unnested), so that a batch costs a few
 * round trips rather than a few per job. */

/* Records a batch of jobs and tells, per job in input order: newly recorded (then claimed at once:
 * `sending` with a lease, so that a mailer dying mid-send leaves a row the next scan picks up when the
 * lease is over), the status it had if seen before, and its invitation's state. The SELECT sees the table
 * as it was before the INSERT, so d.status is that of an earlier delivery only. Rows go in job_id order so
 * that two mailers inserting the same jobs (after a rebalance) wait on each other in one order. */
static const char SQL_ACCEPT[] =
    "WITH input AS ("
    "  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY AS t(job_id, invitation_id, "
    "job, ord)"
    "), ins AS ("
    "  INSERT INTO mail_deliveries (job_id, invitation_id, status, attempts, next_attempt_at, job, "
    "claimed_by)"
    "  SELECT job_id, invitation_id, 'sending', 0, now() + $4::bigint * interval '1 millisecond', job, $5"
    "  FROM input ORDER BY job_id"
    "  ON CONFLICT (job_id) DO NOTHING RETURNING job_id"
    ")"
    " SELECT ins.job_id IS NOT NULL, coalesce(d.status, ''), coalesce(v.status, ''),"
    "        coalesce(" CURRENT_JOB_VT "::text, ''), coalesce(v.expires_at <= now(), false)"
    " FROM input t LEFT JOIN ins ON ins.job_id = t.job_id"
    " LEFT JOIN mail_deliveries d ON d.job_id = t.job_id"
    " LEFT JOIN invitations v ON v.id = t.invitation_id"
    " ORDER BY t.ord";
/* Multi-row updates lock their rows first, in key order (ORDER BY ... FOR UPDATE), so that two
 * transactions touching the same rows wait on each other in one order and never deadlock. */
static const char SQL_SUPERSEDE[] =
    "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS u(job_id, why)),"
    " l AS (SELECT job_id FROM mail_deliveries WHERE job_id IN (SELECT job_id FROM u) ORDER BY job_id FOR "
    "UPDATE)"
    " UPDATE mail_deliveries d SET status = 'superseded', next_attempt_at = NULL, last_error = u.why,"
    " held = false, claimed_by = NULL, updated_at = now() FROM u JOIN l ON l.job_id = u.job_id WHERE "
    "d.job_id = u.job_id";
/* Due work: retries whose time has come, and `sending` jobs whose lease ran out: their mailer stopped
 * renewing it (SQL_RENEW), so it is gone. Not in the first $2 ms after PostgreSQL started: live mailers
 * get that long to reconnect and renew their leases after a restart. */
static const char SQL_DUE[] =
    "SELECT d.job_id, d.job, d.attempts, coalesce(i.status, ''), coalesce(" CURRENT_JOB_ID "::text, ''),"
    "       coalesce(i.expires_at <= now(), true), d.status, coalesce(d.last_error, ''),"
    "       d.accepted_at IS NOT NULL"
    " FROM mail_deliveries d LEFT JOIN invitations i ON i.id = d.invitation_id"
    " WHERE d.status IN ('retrying', 'sending') AND d.next_attempt_at <= now()"
    "   AND (d.status = 'retrying' OR pg_postmaster_start_time() < now() - $2::bigint * interval '1 "
    "millisecond')"
    " ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED";
/* The heartbeat: this mailer's `sending` jobs stay its own for another lease. Rows locked by an outcome
 * being written are skipped (they are leaving `sending`); the rest are locked in job_id order. */
static const char SQL_RENEW[] =
    "WITH l AS (SELECT job_id FROM mail_deliveries WHERE claimed_by = $1 AND status = 'sending'"
    "           ORDER BY job_id FOR UPDATE SKIP LOCKED)"
    " UPDATE mail_deliveries d SET next_attempt_at = now() + $2::bigint * interval '1 millisecond'"
    " FROM l WHERE d.job_id = l.job_id";
/* The rows are locked already (the due scan, in this transaction). */
static const char SQL_RECLAIM[] =
    "UPDATE mail_deliveries SET status = 'sending', next_attempt_at = now() + $2::bigint * interval '1 "
    "millisecond',"
    " held = false, claimed_by = $3, updated_at = now() WHERE job_id = ANY($1::uuid[])";
/* The outcome of each job of a chunk: its row (status sent, retrying or failed; a retry's delay, NULL
 * otherwise; held: waiting for the server, not for a backoff of its own) and its invitation's delivery
 * state, which only the invitation's current job speaks for: a superseded job never overwrites it.
 * Deliveries are locked in job_id order. Invitations are locked in id order and SKIP LOCKED: the command
 * worker locks invitations too, one command after another in its batch, so this statement never waits
 * for one while holding others (no deadlock, whatever order the other side takes); the invitations it
 * skipped come back as rows, and get their state afterwards one by one (SQL_MAIL_STATE, each alone). */
static const char SQL_OUTCOMES[] =
    "WITH u AS ("
    "  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::bigint[], $6::text[], "
    "$7::bool[])"
    "    AS u(job_id, invitation_id, status, attempts, delay_ms, error, held)"
    "), li AS (SELECT id FROM invitations WHERE id IN (SELECT invitation_id FROM u) ORDER BY id FOR UPDATE "
    "SKIP LOCKED"
    "), ld AS (SELECT job_id FROM mail_deliveries WHERE job_id IN (SELECT job_id FROM u) ORDER BY job_id FOR "
    "UPDATE"
    "), d AS ("
    "  UPDATE mail_deliveries d SET status = u.status, attempts = u.attempts,"
    "    next_attempt_at = now() + u.delay_ms * interval '1 millisecond', last_error = u.error, held = "
    "u.held,"
    "    claimed_by = NULL, updated_at = now()"
    "  FROM u JOIN ld ON ld.job_id = u.job_id WHERE d.job_id = u.job_id"
    "), i AS ("
    "  UPDATE invitations i SET mail_state = u.status, mail_error = u.error, mail_updated_at = now()"
    "  FROM u JOIN li ON li.id = u.invitation_id WHERE i.id = u.invitation_id AND i.mail_job_id = u.job_id"
    ")"
    " SELECT u.invitation_id, u.job_id, u.status, u.error FROM u WHERE u.invitation_id NOT IN (SELECT id "
    "FROM li)";
static const char SQL_MAIL_STATE[] =
    "UPDATE invitations SET mail_state = $3, mail_error = $4, mail_updated_at = now()"
    " WHERE id = $1 AND mail_job_id = $2";
/* The SMTP server answers again: every job held for it is due now (no backoff of its own). */
static const char SQL_RELEASE_HELD[] =
    "UPDATE mail_deliveries SET next_attempt_at = now(), held = false, updated_at = now()"
    " WHERE held AND status = 'retrying'";
/* Noted during the SMTP session, the moment the server accepts a message (see smtp_send_cb): the messages
 * accepted since the sender's last note, usually one (note_accepted). */
static const char SQL_ACCEPTED[] =
    "UPDATE mail_deliveries SET accepted_at = now() WHERE job_id = ANY($1::uuid[]) AND status = 'sending'";
/* The name SQL_ACCEPTED is prepared under on each sender's connection (sent without waiting for it). */
#define ACCEPTED_STMT "raikoo_mail_accepted"
/* Names this session after the mailer (pg_stat_activity shows who holds what). */
static const char SQL_IDENTIFY[] = "SELECT set_config('application_name', $1, false)";

/* ---- the mailer ---- */

typedef struct claimed {
    mail_job_t job;
    char *payload; /* the job as recorded (for the row; the JSON tree is in job) */
    int attempts;  /* attempts made before this one */
    int bad;       /* malformed, or its invitation expired while it waited: fails without an attempt */
    int accepted;  /* the server accepted it already (a mailer killed mid-session): record it sent */
    char why[400];
} claimed_t;

/* After a PostgreSQL restart, how long live mailers get to reconnect and renew their leases before their
 * `sending` jobs count as abandoned (SQL_DUE's $2). */
#define RECONNECT_GRACE_MS 30000L

/* A job on its way through the senders: claimed by the main thread, sent by a sender thread, recorded by
 * the main thread. Owned by whichever list holds it (todo, then a sender, then done). */
typedef struct sendjob {
    claimed_t cl;
    smtp_item_t item; /* the verdict */
    int held;         /* not sent: the breaker held it (no attempt counted) */
    struct sendjob *next;
} sendjob_t;

/* A FIFO of jobs. */
typedef struct joblist {
    sendjob_t *head, *tail;
    size_t n;
} joblist_t;

/* One of the mail.connections sender threads: its own SMTP sessions and its own PostgreSQL connection (for
 * SQL_ACCEPTED during a session; libpq connections are not shared between threads). */
typedef struct sender {
    struct mailer *m;
    pthread_t thread;
    int started;
    PGconn *db;         /* NULL until connected */
    int64_t connect_at; /* the next reconnection attempt, when db is down */
    /* The accepted_at notes of the current session (notes_pump): the job ids accepted and not yet sent to
     * PostgreSQL (borrowed from the session's jobs), and whether a note is on its way (its answer not yet
     * read). At most one is on its way; the messages the server accepts meanwhile go in the next one. */
    const char **note_ids;
    size_t n_notes;
    int note_busy;
} sender_t;

struct mailer {
    const conf_t *conf;
    secret_keys_t keys;
    mail_templates_t *templates;
    mail_from_t from;
    smtp_conf_t smtp;
    const char *app_url, *events_topic, *db_url;
    long batch_max, retry_base_ms, retry_max, retry_max_delay_ms, probe_max_ms, lease_ms, connections;
    char id[UUID_BUF]; /* this mailer's instance id: mail_deliveries.claimed_by */
    char appname[64];  /* "raikoo-mailer <id>": its sessions' application_name */
    claimed_t *claimed;
    size_t n_claimed, cap_claimed;
    /* The sender threads and their queues, under lock. The main thread moves claimed jobs to todo (or
     * straight to done when nothing is to be sent), senders take them from todo in SMTP sessions of at most
     * mail.batch.max and put them on done, the main thread records done. inflight (main thread only) counts
     * the jobs dispatched and not yet recorded. */
    pthread_mutex_t lock;
    pthread_cond_t work_cv, done_cv;
    joblist_t todo, done;
    int draining; /* senders stop once todo is empty */
    size_t inflight;
    sender_t *senders;
    /* The server-level circuit breaker, one for the SMTP server, shared by the senders (under lock): open
     * while the SMTP server cannot be reached (session failures), jobs are held without contacting it; a
     * probe (a real session) at probe_at, backing off to mail.probe.max.ms; closed again at the first session
     * that works. One log line per change. A session that started before the breaker last changed says
     * nothing new about the server: its failure neither reopens the breaker nor doubles the backoff. */
    int breaker_open, release_pending;
    int64_t probe_at, opened_at, tripped_at, closed_at;
    long probe_delay_ms;
    char outage[400];
    /* Main thread: recording outcomes failed, and how often (across rounds while PostgreSQL is away):
     * logged once until it works again. */
    int record_failing, record_tries;
};

mailer_t *mailer_new(const conf_t *c, char *errstr, size_t errstr_size) {
    mailer_t *m = xcalloc(1, sizeof(*m));
    m->conf = c;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->work_cv, NULL);
    pthread_cond_init(&m->done_cv, NULL);
    m->db_url = conf_get(c, "db.url");
    int overridden = 0;
    if (conf_get_long(c, "mail.batch.max", 1, 10000, &m->batch_max, errstr, errstr_size) != 0 ||
        conf_get_long(c, "mail.retry.base.ms", 1, 86400000, &m->retry_base_ms, errstr, errstr_size) != 0 ||
        conf_get_long(c, "mail.retry.max", 0, 100000, &m->retry_max, errstr, errstr_size) != 0 ||
        conf_get_long(c, "mail.retry.max.delay.ms", 1, 86400000, &m->retry_max_delay_ms, errstr,
                      errstr_size) != 0 ||
        conf_get_long(c, "mail.probe.max.ms", 1, 3600000, &m->probe_max_ms, errstr, errstr_size) != 0 ||
        conf_get_long(c, "mail.lease.ms", 1000, 3600000, &m->lease_ms, errstr, errstr_size) != 0 ||
        conf_get_long(c, "mail.connections", 1, 64, &m->connections, errstr, errstr_size) != 0 ||
        smtp_conf_load(c, &m->smtp, errstr, errstr_size) != 0 ||
        mail_from_parse(conf_get(c, "mail.from"), &m->from, errstr, errstr_size) != 0)
        goto fail;
    if (secret_load(conf_get(c, "keys.dir"), 1, &m->keys, errstr, errstr_size) != 0)
        goto fail;
    m->templates = mail_templates_load(conf_get(c, "mail.templates"), &overridden, errstr, errstr_size);
    if (!m->templates)
        goto fail;
    if (mail_templates_set_default(m->templates, conf_get(c, "mail.locale")) != 0) {
        snprintf(errstr, errstr_size, "mail.locale: expected a language tag such as en, de or de-AT");
        goto fail;
    }
    if (overridden)
        log_info(NULL, "%d mail template(s) from %s", overridden, conf_get(c, "mail.templates"));
    m->app_url = conf_get(c, "mail.app.url");
    m->events_topic = conf_get(c, "topic.events");
    /* The lease: a live mailer renews it (a heartbeat thread, every fifth of it) however long its SMTP
     * session takes; a dead one's jobs are taken over when it ends. */
    uuid_generate(m->id);
    snprintf(m->appname, sizeof(m->appname), "raikoo-mailer %s", m->id);
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
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->work_cv);
    pthread_cond_destroy(&m->done_cv);
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
    m->claimed = xgrow(m->claimed, m->n_claimed + 1, &m->cap_claimed, sizeof(*m->claimed), 64);
    claimed_t *cl = &m->claimed[m->n_claimed++];
    memset(cl, 0, sizeof(*cl));
    return cl;
}

static const char STALE_EXPIRED[] = "not sent: the invitation is expired";

/* Why a job must not be sent, from its invitation's row (status, current job, expired), or NULL. */
static const char *stale_reason(const char *job_id, const char *status, const char *current, int expired) {
    if (!*status)
        return "not sent: the invitation no longer exists";
    if (strcmp(status, "pending") != 0) {
        if (strcmp(status, "accepted") == 0)
            return "not sent: the invitation is accepted";
        if (strcmp(status, "removed") == 0)
            return "not sent: the invitation is removed";
        return STALE_EXPIRED;
    }
    if (strcasecmp(current, job_id) != 0)
        return "not sent: superseded by a newer e-mail for this invitation (resend)";
    if (expired)
        return STALE_EXPIRED;
    return NULL;
}

static void rollback(PGconn *db) {
    char ignore[256];
    db_cmd(db, "ROLLBACK", ignore, sizeof(ignore));
}

/* Appends InvitationEmailSent or InvitationEmailFailed for a job. No code, sealed or not, goes in. */
static void add_event(mailer_t *m, outbox_t *ob, const mail_job_t *job, const char *name, int attempts,
                      const char *reason, int permanent) {
    if (job->is_reminder)
        return; /* a reminder's delivery is in mail_deliveries and the log (docs/EMAIL.md) */
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "invitation_id", job->invitation_id, "org_id",
                             job->org_id, "job_id", job->job_id, "email", job->email[0] ? job->email : "",
                             "kind", job->kind ? job->kind : "", "attempts", attempts);
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

/* Jobs to retire as `superseded`, each with the reason: gathered over a batch, written in one statement. */
typedef struct retire_list {
    char **job_ids, **whys;
    size_t n, cap;
} retire_list_t;

static void retire_add(retire_list_t *r, const char *job_id, const char *why) {
    size_t cap = r->cap;
    r->job_ids = xgrow(r->job_ids, r->n + 1, &cap, sizeof(*r->job_ids), 16);
    r->whys = xgrow(r->whys, r->n + 1, &r->cap, sizeof(*r->whys), 16);
    r->job_ids[r->n] = xstrdup(job_id);
    r->whys[r->n] = xstrdup(why);
    r->n++;
}

static int retire_write(const retire_list_t *r, PGconn *db, char *errstr, size_t errstr_size) {
    if (r->n == 0)
        return 0;
    char *ids = db_array_literal((const char *const *)r->job_ids, r->n);
    char *whys = db_array_literal((const char *const *)r->whys, r->n);
    const char *p[2] = {ids, whys};
    int rc = db_run(db, SQL_SUPERSEDE, 2, p, errstr, errstr_size);
    free(ids);
    free(whys);
    return rc;
}

static void retire_free(retire_list_t *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->job_ids[i]);
        free(r->whys[i]);
    }
    free(r->job_ids);
    free(r->whys);
    memset(r, 0, sizeof(*r));
}

/* A new string (free()) made by a printf format; never cut (error_text cuts, on a character boundary). */
static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort(); /* out of memory */
    return out;
}

/* The delay before attempt number `attempts + 1`: base, doubling, at most mail.retry.max.delay.ms. */
static long long backoff_ms(const mailer_t *m, int attempts) {
    long long d = m->retry_base_ms;
    for (int i = 1; i < attempts && d < m->retry_max_delay_ms; i++)
        d *= 2;
    return d > m->retry_max_delay_ms ? m->retry_max_delay_ms : d;
}

/* What one job's outcome writes: the texts its array entries point at. */
typedef struct outcome_row {
    char att[16], delay[24];
    char *error; /* valid UTF-8, at most ERROR_MAX bytes */
} outcome_row_t;

/* The longest error text stored (last_error, mail_error, the event's reason). */
#define ERROR_MAX 400

/* A text for the database and the events, whatever went into it (a server's reply, a parser's reason):
 * valid UTF-8 of at most ERROR_MAX bytes; ascii: every non-ASCII byte a '?' besides (the fallback when
 * even a clean text was refused). */
static char *error_text(const char *text, int ascii) {
    char *t = utf8_clean_dup(text, strlen(text), ERROR_MAX);
    if (ascii)
        for (unsigned char *p = (unsigned char *)t; *p; p++)
            if (*p >= 0x80)
                *p = '?';
    return t;
}

/* What became of one job: its item's verdict, or held (the server could not be reached: waiting for it,
 * no attempt counted). */
typedef struct outcome_in {
    claimed_t *cl;
    const smtp_item_t *item;
    int held;
} outcome_in_t;

/* One job's outcome (record_outcomes): fills r (attempts, delay, error text), adds its event to ob when
 * it is final, logs it when verbose; returns its status and sets *delay (NULL: none). */
static const char *outcome_decide(mailer_t *m, outbox_t *ob, const outcome_in_t *o, int attempted,
                                  int verbose, int ascii, time_t now, int64_t now_ms, outcome_row_t *r,
                                  const char **delay) {
    const mail_job_t *job = &o->cl->job;
    const smtp_item_t *it = o->item;
    int attempts = o->cl->attempts + (attempted && !o->held && !o->cl->bad ? 1 : 0);
    const char *status;
    snprintf(r->att, sizeof(r->att), "%d", attempts);
    long long left_ms = ((long long)job->expires - (long long)now) * 1000;
    if (o->held) {
        /* Due at the next probe; at once when the server answered again meanwhile. */
        pthread_mutex_lock(&m->lock);
        long long d = m->breaker_open && m->probe_at > now_ms ? m->probe_at - now_ms : 0;
        char *why = dup_printf("waiting for the SMTP server: %s", m->outage);
        pthread_mutex_unlock(&m->lock);
        snprintf(r->delay, sizeof(r->delay), "%lld", d);
        status = "retrying";
        *delay = r->delay;
        r->error = error_text(why, ascii);
        free(why);
    } else if (it->outcome == SMTP_SENT) {
        status = "sent";
        add_event(m, ob, job, "InvitationEmailSent", attempts, NULL, 0);
        if (verbose)
            log_info(job->correlationid, "mail job %s for invitation %s sent to %s (attempt %d)", job->job_id,
                     job->invitation_id, job->email, attempts);
    } else if (it->outcome == SMTP_TRANSIENT && left_ms > 0 &&
               (m->retry_max == 0 || attempts < m->retry_max)) {
        long long d = backoff_ms(m, attempts);
        if (d > left_ms)
            d = left_ms; /* the last try when it expires: then it is failed, with its event */
        snprintf(r->delay, sizeof(r->delay), "%lld", d);
        status = "retrying";
        *delay = r->delay;
        r->error = error_text(it->detail, ascii);
        if (verbose)
            log_warn(job->correlationid,
                     "mail job %s for invitation %s: attempt %d failed (%s); next in %lld ms", job->job_id,
                     job->invitation_id, attempts, r->error, d);
    } else {
        char *why;
        if (it->outcome == SMTP_TRANSIENT && left_ms <= 0)
            why = dup_printf("the invitation expired before the e-mail could be delivered (after %d "
                             "attempts): %s",
                             attempts, it->detail);
        else if (it->outcome == SMTP_TRANSIENT)
            why = dup_printf("gave up after %d attempts: %s", attempts, it->detail);
        else
            why = xstrdup(it->detail);
        r->error = error_text(why, ascii);
        free(why);
        status = "failed";
        add_event(m, ob, job, "InvitationEmailFailed", attempts, r->error, it->outcome == SMTP_PERMANENT);
        if (verbose)
            log_error(job->correlationid, "mail job %s for invitation %s to %s failed: %s", job->job_id,
                      job->invitation_id, job->email, r->error);
    }
    return status;
}

/* Records, inside the transaction, the outcome of n jobs in one statement, with their events: sent,
 * held for the server (retrying, no attempt counted), retrying (its own backoff, until the invitation
 * expires or mail.retry.max attempts when set) or failed (a permanent reply, the invitation expired, the
 * last allowed attempt). attempted: the verdicts are of an attempt just made (counted), else of jobs that
 * failed without one (malformed). verbose: log each job (the first time this outcome is written).
 * *skipped (when not NULL) gets the invitations whose state is still to write: pass it, once committed,
 * to apply_skipped. */
static int record_outcomes(mailer_t *m, PGconn *db, outbox_t *ob, const outcome_in_t *in, size_t n,
                           int attempted, int verbose, int ascii, PGresult **skipped, char *errstr,
                           size_t errstr_size) {
    enum { C_JOB, C_INVITATION, C_STATUS, C_ATTEMPTS, C_DELAY, C_ERROR, C_HELD, N_COLS };
    if (n == 0)
        return 0;
    outcome_row_t *rows = xcalloc(n, sizeof(*rows));
    const char **col = xcalloc(N_COLS * n, sizeof(*col));
    time_t now = time(NULL);
    int64_t now_ms = worker_now_ms();
    for (size_t i = 0; i < n; i++) {
        const mail_job_t *job = &in[i].cl->job;
        const char *delay = NULL;
        const char *status =
            outcome_decide(m, ob, &in[i], attempted, verbose, ascii, now, now_ms, &rows[i], &delay);
        col[C_JOB * n + i] = job->job_id;
        col[C_INVITATION * n + i] = job->invitation_id;
        col[C_STATUS * n + i] = status;
        col[C_ATTEMPTS * n + i] = rows[i].att;
        col[C_DELAY * n + i] = delay;
        col[C_ERROR * n + i] = rows[i].error;
        col[C_HELD * n + i] = in[i].held ? "t" : "f";
        instruments_mail_outcome(status, in[i].held);
    }
    char *lit[N_COLS];
    for (int c = 0; c < N_COLS; c++)
        lit[c] = db_array_literal(col + (size_t)c * n, n);
    PGresult *res = db_exec_cached(db, SQL_OUTCOMES, N_COLS, (const char *const *)lit, errstr, errstr_size);
    int rc = res ? 0 : -1;
    if (res && skipped)
        *skipped = res;
    else if (res)
        PQclear(res);
    for (int c = 0; c < N_COLS; c++)
        free(lit[c]);
    for (size_t i = 0; i < n; i++)
        free(rows[i].error);
    free(col);
    free(rows);
    return rc;
}

/* Writes the delivery state of the invitations SQL_OUTCOMES skipped (locked by a command at the time), each
 * in a statement of its own, and frees res. A failure leaves only that display column behind (the
 * delivery row and the event are committed): it is logged. */
static void apply_skipped(PGconn *db, PGresult *res) {
    if (!res)
        return;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *p[4] = {PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2),
                            PQgetisnull(res, r, 3) ? NULL : PQgetvalue(res, r, 3)};
        char err[512];
        if (db_run(db, SQL_MAIL_STATE, 4, p, err, sizeof(err)) != 0)
            log_warn(NULL, "cannot write the mail state of invitation %s: %s", p[0], err);
    }
    PQclear(res);
}

/* One job of a batch being accepted. */
typedef struct incoming {
    mail_job_t job;
    char *payload;
    int bad, taken; /* taken: moved into m->claimed */
    char why[256];
} incoming_t;

/* Reads the batch into jobs[0..k) and the three columns of SQL_ACCEPT (col: n job ids, n invitation ids,
 * n payloads; borrowed from jobs); returns k. A job that names nothing to record it against is logged and
 * left out, and so is the second of a job id twice in the batch. */
static size_t accept_parse(const mailer_input_t *in, size_t n, incoming_t *jobs, const char **col) {
    size_t k = 0;
    strmap_t ids; /* the job ids taken so far (borrowed from jobs) */
    strmap_init(&ids, 1);
    for (size_t i = 0; i < n; i++) {
        incoming_t *j = &jobs[k];
        int identified = 0;
        int parsed = mail_job_parse(in[i].payload, in[i].len, &j->job, &identified, j->why, sizeof(j->why));
        if (parsed != 0 && !identified) {
            /* Nothing to record it against: it cannot be sent or reported, only logged (without its body,
             * which may hold a sealed code). */
            log_error(NULL, "mail job ignored: %s", j->why);
            mail_job_free(&j->job);
            continue;
        }
        int added;
        strmap_add(&ids, j->job.job_id, &added);
        if (!added) {
            /* The statement below would count both as new: the second is a redelivery. */
            log_info(j->job.correlationid,
                     "mail job %s for invitation %s seen before (in this batch): not sent again",
                     j->job.job_id, j->job.invitation_id);
            mail_job_free(&j->job);
            continue;
        }
        j->bad = parsed != 0;
        j->payload = xstrndup(in[i].payload, in[i].len);
        col[k] = j->job.job_id;
        col[n + k] = j->job.invitation_id;
        col[2 * n + k] = j->payload;
        k++;
    }
    strmap_free(&ids);
    return k;
}

/* Reads SQL_ACCEPT's answer (res: a row per job of jobs[0..k)): a job seen before is left alone, a stale
 * one goes on retire, a new one moves into m->claimed (taken). Returns how many of those claimed are
 * malformed. */
static size_t accept_take(mailer_t *m, incoming_t *jobs, size_t k, const PGresult *res,
                          retire_list_t *retire) {
    size_t n_bad = 0;
    for (size_t r = 0; r < k; r++) {
        incoming_t *j = &jobs[r];
        if (PQgetvalue(res, (int)r, 0)[0] != 't') {
            log_info(j->job.correlationid, "mail job %s for invitation %s seen before (%s): not sent again",
                     j->job.job_id, j->job.invitation_id,
                     PQgetvalue(res, (int)r, 1)[0] ? PQgetvalue(res, (int)r, 1) : "?");
            continue;
        }
        const char *stale = stale_reason(j->job.job_id, PQgetvalue(res, (int)r, 2),
                                         PQgetvalue(res, (int)r, 3), PQgetvalue(res, (int)r, 4)[0] == 't');
        if (stale) {
            log_info(j->job.correlationid, "mail job %s for invitation %s %s", j->job.job_id,
                     j->job.invitation_id, stale);
            retire_add(retire, j->job.job_id, stale);
            continue;
        }
        claimed_t *cl = claimed_add(m);
        cl->job = j->job;
        cl->payload = j->payload;
        cl->bad = j->bad;
        text_printf(cl->why, sizeof(cl->why), "%s", j->bad ? j->why : "");
        j->taken = 1;
        n_bad += (size_t)j->bad;
    }
    return n_bad;
}

/* Inside the transaction: the n_bad malformed jobs claimed from first_claim on (they name a current
 * invitation) fail here, once, with their event on ob. *skipped as record_outcomes. */
static int accept_fail_malformed(mailer_t *m, PGconn *db, outbox_t *ob, size_t first_claim, size_t n_bad,
                                 PGresult **skipped, char *errstr, size_t errstr_size) {
    if (n_bad == 0)
        return 0;
    outcome_in_t *bad = xcalloc(n_bad, sizeof(*bad));
    smtp_item_t *bad_items = xcalloc(n_bad, sizeof(*bad_items));
    size_t b = 0;
    for (size_t i = first_claim; i < m->n_claimed; i++) {
        if (!m->claimed[i].bad)
            continue;
        bad_items[b].outcome = SMTP_PERMANENT;
        text_printf(bad_items[b].detail, sizeof(bad_items[b].detail), "malformed mail job: %s",
                    m->claimed[i].why);
        bad[b].cl = &m->claimed[i];
        bad[b].item = &bad_items[b];
        b++;
    }
    int rc = record_outcomes(m, db, ob, bad, n_bad, 0, 1, 0, skipped, errstr, errstr_size);
    free(bad);
    free(bad_items);
    return rc;
}

/* After the transaction: committed (ok), the malformed jobs claimed are finished and go; else nothing was
 * recorded, and what this batch claimed is forgotten. Then frees the jobs not moved into m->claimed. */
static void accept_finish(mailer_t *m, incoming_t *jobs, size_t k, size_t first_claim, int ok) {
    if (!ok) {
        for (size_t r = 0; r < k; r++)
            jobs[r].taken = 0;
        m->n_claimed = first_claim;
    } else {
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
    for (size_t r = 0; r < k; r++) {
        if (!jobs[r].taken) {
            mail_job_free(&jobs[r].job);
            free(jobs[r].payload);
        }
    }
}

int mailer_accept(mailer_t *m, PGconn *db, const mailer_input_t *in, size_t n, char *errstr,
                  size_t errstr_size) {
    int rc = -1, begun = 0;
    outbox_t ob = {0};
    retire_list_t retire = {0};
    size_t first_claim = m->n_claimed;
    incoming_t *jobs = xcalloc(n, sizeof(*jobs));
    const char **col = xcalloc(3 * (n ? n : 1), sizeof(*col));
    char *lit[3] = {NULL, NULL, NULL};
    PGresult *skipped = NULL;
    PGresult *res = NULL;
    char lease[32];
    snprintf(lease, sizeof(lease), "%ld", m->lease_ms);

    size_t k = accept_parse(in, n, jobs, col);
    if (k == 0) {
        rc = 0;
        goto done;
    }
    for (int c = 0; c < 3; c++)
        lit[c] = db_array_literal(col + (size_t)c * n, k);
    if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
        goto done;
    begun = 1;
    const char *params[5] = {lit[0], lit[1], lit[2], lease, m->id};
    res = db_exec_cached(db, SQL_ACCEPT, 5, params, errstr, errstr_size);
    if (!res)
        goto done;
    if ((size_t)PQntuples(res) != k) {
        snprintf(errstr, errstr_size, "recording mail jobs: %d rows for %zu jobs", PQntuples(res), k);
        goto done;
    }
    size_t n_bad = accept_take(m, jobs, k, res, &retire);
    if (retire_write(&retire, db, errstr, errstr_size) != 0 ||
        accept_fail_malformed(m, db, &ob, first_claim, n_bad, &skipped, errstr, errstr_size) != 0)
        goto done;
    if (outbox_write_commit(&ob, db, NULL, 0, errstr, errstr_size) != 0)
        goto done;
    apply_skipped(db, skipped);
    skipped = NULL;
    rc = 0;
done:
    if (res)
        PQclear(res);
    if (rc != 0 && begun)
        rollback(db);
    accept_finish(m, jobs, k, first_claim, rc == 0);
    for (int c = 0; c < 3; c++)
        free(lit[c]);
    free(col);
    free(jobs);
    if (skipped)
        PQclear(skipped);
    retire_free(&retire);
    outbox_free(&ob);
    return rc;
}

/* One row of SQL_DUE (mailer_claim_due): a stale job, or one that cannot even name its invitation, goes on
 * retire (0); any other is claimed into m->claimed (1: its row is to be reclaimed), failing without an
 * attempt when malformed or when its invitation expired while it waited for a retry. */
static int claim_due_row(mailer_t *m, const PGresult *res, int r, retire_list_t *retire) {
    const char *job_id = PQgetvalue(res, r, 0), *text = PQgetvalue(res, r, 1);
    const char *stale =
        stale_reason(job_id, PQgetvalue(res, r, 3), PQgetvalue(res, r, 4), PQgetvalue(res, r, 5)[0] == 't');
    /* A job that was waiting for a retry when its invitation expired has failed (with its event);
     * one that never got that far is only superseded. */
    int expired_waiting = stale == STALE_EXPIRED && strcmp(PQgetvalue(res, r, 6), "retrying") == 0;
    if (stale && !expired_waiting) {
        log_info(NULL, "mail job %s %s", job_id, stale);
        retire_add(retire, job_id, stale);
        return 0;
    }
    claimed_t *cl = claimed_add(m);
    int identified = 0;
    char why[256];
    /* The row holds a job that parsed when it came in; a failure here would be a changed contract. */
    cl->bad = mail_job_parse(text, strlen(text), &cl->job, &identified, why, sizeof(why)) != 0;
    cl->payload = xstrdup(text);
    cl->attempts = (int)strtol(PQgetvalue(res, r, 2), NULL, 10);
    cl->accepted = PQgetvalue(res, r, 8)[0] == 't';
    if (!cl->bad && expired_waiting) {
        cl->bad = 1;
        text_printf(cl->why, sizeof(cl->why),
                    "the invitation expired before the e-mail could be delivered "
                    "(after %d attempts): %s",
                    cl->attempts, PQgetvalue(res, r, 7));
    } else if (cl->bad || !identified) {
        text_printf(cl->why, sizeof(cl->why), "malformed mail job: %s", why);
        if (!identified) {
            /* Cannot even name its invitation: retire the row. */
            log_error(NULL, "mail job %s: %s", job_id, cl->why);
            retire_add(retire, job_id, cl->why);
            mail_job_free(&cl->job);
            free(cl->payload);
            m->n_claimed--;
            return 0;
        }
    }
    return 1;
}

int mailer_claim_due(mailer_t *m, PGconn *db, int *claimed, char *errstr, size_t errstr_size) {
    int rc = -1;
    size_t first_claim = m->n_claimed;
    retire_list_t retire = {0};
    char limit[32], lease[32];
    snprintf(limit, sizeof(limit), "%ld", m->batch_max);
    snprintf(lease, sizeof(lease), "%ld", m->lease_ms);
    PGresult *res = NULL;
    const char **ids = NULL;
    char *ids_lit = NULL;
    *claimed = 0;
    if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
        return -1;
    char grace[32];
    snprintf(grace, sizeof(grace), "%ld", RECONNECT_GRACE_MS);
    const char *p[2] = {limit, grace};
    res = db_exec_cached(db, SQL_DUE, 2, p, errstr, errstr_size);
    if (!res)
        goto done;
    ids = xcalloc((size_t)PQntuples(res) + 1, sizeof(*ids));
    size_t n_ids = 0;
    for (int r = 0; r < PQntuples(res); r++)
        if (claim_due_row(m, res, r, &retire))
            ids[n_ids++] = PQgetvalue(res, r, 0);
    if (retire_write(&retire, db, errstr, errstr_size) != 0)
        goto done;
    if (n_ids > 0) {
        ids_lit = db_array_literal(ids, n_ids);
        const char *q[3] = {ids_lit, lease, m->id};
        if (db_run(db, SQL_RECLAIM, 3, q, errstr, errstr_size) != 0)
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
    free(ids);
    free(ids_lit);
    retire_free(&retire);
    return rc;
}

/* ---- the SMTP server's circuit breaker (shared by the senders, under m->lock) ---- */

/* A session that started at `started` failed as a whole (the server unreachable, its greeting, TLS or AUTH
 * refused): open the breaker (one line), or after a failed probe, probe again later (backing off, no line
 * at info level). */
static void breaker_trip(mailer_t *m, const char *why, int64_t started) {
    pthread_mutex_lock(&m->lock);
    int64_t now = worker_now_ms();
    if (!m->breaker_open) {
        if (started >= m->closed_at) { /* else: it tried before the server answered again */
            m->breaker_open = 1;
            m->opened_at = now;
            m->tripped_at = now;
            m->probe_delay_ms = m->retry_base_ms < m->probe_max_ms ? m->retry_base_ms : m->probe_max_ms;
            m->probe_at = now + m->probe_delay_ms;
            text_printf(m->outage, sizeof(m->outage), "%s", why);
            log_warn(
                NULL,
                "SMTP server %s cannot be reached: %s; mail is held (nothing is marked failed for this), "
                "the server is probed with backoff up to %ld ms",
                m->smtp.hostport, m->outage, m->probe_max_ms);
        }
    } else if (started >= m->tripped_at) { /* a probe failed */
        m->probe_delay_ms = m->probe_delay_ms * 2 < m->probe_max_ms ? m->probe_delay_ms * 2 : m->probe_max_ms;
        m->tripped_at = now;
        m->probe_at = now + m->probe_delay_ms;
        text_printf(m->outage, sizeof(m->outage), "%s", why);
        log_debug(NULL, "SMTP probe failed: %s; next in %ld ms", m->outage, m->probe_delay_ms);
    }
    pthread_mutex_unlock(&m->lock);
}

/* A session worked: close the breaker; the main thread then makes every held job due (breaker_release). */
static void breaker_close(mailer_t *m) {
    pthread_mutex_lock(&m->lock);
    if (m->breaker_open) {
        m->breaker_open = 0;
        m->closed_at = worker_now_ms();
        m->release_pending = 1;
    }
    pthread_mutex_unlock(&m->lock);
}

/* Main thread: after the breaker closed, every held job is due now (one line). */
static void breaker_release(mailer_t *m, PGconn *db) {
    pthread_mutex_lock(&m->lock);
    int pending = m->release_pending;
    m->release_pending = 0;
    long long after_s = (long long)((m->closed_at - m->opened_at) / 1000);
    pthread_mutex_unlock(&m->lock);
    if (!pending)
        return;
    char err[512];
    PGresult *res = db_exec_cached(db, SQL_RELEASE_HELD, 0, NULL, err, sizeof(err));
    long released = res ? strtol(PQcmdTuples(res), NULL, 10) : -1;
    if (res)
        PQclear(res);
    else /* they are due at the next probe time anyway */
        log_warn(NULL, "cannot release the held mail jobs now: %s", err);
    log_info(NULL, "SMTP server %s answers again after %lld s: %ld held mail job(s) due now",
             m->smtp.hostport, after_s, released);
}

/* 1 while the breaker is open and no probe is due: jobs are held without contacting the server. */
static int breaker_holding(mailer_t *m) {
    pthread_mutex_lock(&m->lock);
    int holding = m->breaker_open && worker_now_ms() < m->probe_at;
    pthread_mutex_unlock(&m->lock);
    return holding;
}

/* ---- recording ---- */

static void db_recover(mailer_t *m, PGconn *db, long sleep_ms);

/* Writes the outcomes of a chunk (with their events) in one transaction, and does not give up: once mail
 * has gone out, forgetting that would send it again. An error on a working connection is tried again once
 * as is (a deadlock, a serialization failure), then with every text made ASCII (a text PostgreSQL
 * refused), backing off to 5 s. While running, PostgreSQL away returns 1 at once: the caller keeps the
 * outcomes for a later round, and the consumer loop goes on polling Kafka meanwhile. On shutdown it keeps
 * trying (backing off to 5 s) for another 30 s, then leaves the rows `sending` (taken over by another
 * mailer once this one is gone): -1. 0 once written. One line per outage, not per attempt. */
static int record_chunk(mailer_t *m, PGconn *db, const outcome_in_t *in, size_t n, char *errstr,
                        size_t errstr_size) {
    long backoff = 250;
    int64_t stop_by = 0;
    for (int tries = 0;; tries++) {
        outbox_t ob = {0};
        PGresult *skipped = NULL;
        int ascii = tries >= 2 && PQstatus(db) == CONNECTION_OK;
        int ok =
            db_cmd(db, "BEGIN", errstr, errstr_size) == 0 &&
            record_outcomes(m, db, &ob, in, n, 1, tries == 0, ascii, &skipped, errstr, errstr_size) == 0 &&
            outbox_write_commit(&ob, db, NULL, 0, errstr, errstr_size) == 0;
        outbox_free(&ob);
        if (ok)
            apply_skipped(db, skipped);
        else if (skipped)
            PQclear(skipped);
        if (ok) {
            if (m->record_failing)
                log_info(NULL, "recorded the outcome of %zu mail job(s) after %d tries", n,
                         m->record_tries + 1);
            m->record_failing = 0;
            m->record_tries = 0;
            return 0;
        }
        rollback(db);
        if (tries == 0 && !m->record_failing)
            log_error(NULL,
                      "cannot record the outcome of %zu mail job(s) (%s): trying again until PostgreSQL "
                      "takes it",
                      n, errstr);
        m->record_failing = 1;
        m->record_tries++;
        if (worker_running() && !db_alive(db))
            return 1; /* away (db_alive logged it once): kept for a later round */
        if (!worker_running()) {
            if (!stop_by)
                stop_by = worker_now_ms() + 30000;
            else if (worker_now_ms() > stop_by)
                return -1;
        }
        db_recover(m, db, backoff);
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
}

/* ---- the job lists ---- */

static void joblist_push(joblist_t *l, sendjob_t *j) {
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->n++;
}

static sendjob_t *joblist_pop(joblist_t *l) {
    sendjob_t *j = l->head;
    if (j) {
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
        l->n--;
        j->next = NULL;
    }
    return j;
}

static void sendjob_free(sendjob_t *j) {
    mail_job_free(&j->cl.job);
    free(j->cl.payload);
    free(j);
}

/* Main thread: hands every claimed job on. Those with nothing to send (malformed, accepted before, or held
 * while the breaker holds) go straight to done; the others to the senders. */
static void dispatch(mailer_t *m) {
    if (m->n_claimed == 0)
        return;
    int holding = breaker_holding(m);
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n_claimed; i++) {
        sendjob_t *j = xcalloc(1, sizeof(*j));
        j->cl = m->claimed[i]; /* the job and its payload move */
        if (j->cl.bad) {
            j->item.outcome = SMTP_PERMANENT;
            text_printf(j->item.detail, sizeof(j->item.detail), "%s", j->cl.why);
        } else if (j->cl.accepted) {
            j->item.outcome = SMTP_SENT;
            snprintf(j->item.detail, sizeof(j->item.detail),
                     "accepted by the SMTP server before the mailer sending it stopped");
        } else if (holding) {
            j->held = 1;
        } else {
            joblist_push(&m->todo, j);
            continue;
        }
        joblist_push(&m->done, j);
    }
    m->inflight += m->n_claimed;
    m->n_claimed = 0;
    pthread_cond_broadcast(&m->work_cv);
    pthread_cond_signal(&m->done_cv);
    pthread_mutex_unlock(&m->lock);
}

/* Main thread: records the outcomes of every job the senders finished, in transactions of at most
 * mail.batch.max × mail.connections jobs. -1 while running when PostgreSQL is away: the outcomes not
 * written are kept (done) for a later call. -1 (logged) when the worker is stopping and PostgreSQL did not
 * take them: the jobs stay `sending`, taken over when their lease ends. */
static int record_done(mailer_t *m, PGconn *db) {
    breaker_release(m, db);
    pthread_mutex_lock(&m->lock);
    joblist_t done = m->done;
    memset(&m->done, 0, sizeof(m->done));
    pthread_mutex_unlock(&m->lock);
    if (done.n == 0)
        return 0;
    size_t cap = (size_t)(m->batch_max * m->connections);
    outcome_in_t *in = xcalloc(cap, sizeof(*in));
    int rc = 0;
    while (done.n > 0) {
        size_t n = 0;
        sendjob_t *taken = done.head;
        for (sendjob_t *j = done.head; j && n < cap; j = j->next) {
            in[n].cl = &j->cl;
            in[n].item = &j->item;
            in[n].held = j->held;
            n++;
        }
        char err[1024];
        int r = record_chunk(m, db, in, n, err, sizeof(err));
        if (r > 0) {
            /* PostgreSQL away: these outcomes and the rest go back in front of done, for a later round. */
            pthread_mutex_lock(&m->lock);
            if (m->done.head)
                done.tail->next = m->done.head;
            else
                m->done.tail = done.tail;
            m->done.head = done.head;
            m->done.n += done.n;
            pthread_mutex_unlock(&m->lock);
            rc = -1;
            break;
        }
        if (r < 0) {
            log_error(NULL, "gave up recording the outcome of %zu mail job(s) on shutdown: %s", n, err);
            rc = -1;
        }
        (void)taken;
        for (size_t i = 0; i < n; i++)
            sendjob_free(joblist_pop(&done));
        m->inflight -= n;
    }
    free(in);
    return rc;
}

/* ---- the senders ---- */

/* The sender's PostgreSQL connection, (re)connected at most once a second while it is down; NULL while it
 * is. Never in the middle of a session: a connection attempt may take db.url's connect_timeout. */
static void sender_connect(sender_t *s) {
    if (s->db && PQstatus(s->db) == CONNECTION_OK)
        return;
    int64_t now = worker_now_ms();
    if (now < s->connect_at)
        return;
    s->connect_at = now + 1000;
    if (s->db)
        PQfinish(s->db);
    s->note_busy = 0;
    s->db = PQconnectdb(s->m->db_url ? s->m->db_url : "");
    if (PQstatus(s->db) == CONNECTION_OK) {
        char err[256];
        const char *p[1] = {s->m->appname};
        PGresult *res = db_exec(s->db, SQL_IDENTIFY, 1, p, err, sizeof(err));
        if (res)
            PQclear(res);
        /* The accepted_at notes of this connection (one a message, in the middle of the session) do not
         * wait for their WAL to reach the disk: a flush a message held the senders to the disk's flush rate,
         * far below the SMTP server's. The note only has to outlive this mailer, which it does once
         * committed (PostgreSQL writes it out within a fraction of a second); only PostgreSQL itself
         * crashing in that fraction of a second and this mailer dying before it records the outcome could
         * lose it (the message would then go out again). Outcomes, on the main thread's connection, stay
         * synchronous. */
        if (db_cmd(s->db, "SET synchronous_commit TO off", err, sizeof(err)) != 0)
            log_warn(NULL, "mail sender: %s (accepted_at notes wait for the disk)", err);
        res = PQprepare(s->db, ACCEPTED_STMT, SQL_ACCEPTED, 1, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) /* the notes then fail: only their protection is lost */
            log_warn(NULL, "mail sender: cannot prepare the accepted_at note: %s", PQerrorMessage(s->db));
        PQclear(res);
    }
}

/* What note_accepted needs to find a message's job. */
typedef struct accepted_ctx {
    sender_t *s;
    sendjob_t **jobs;
    const size_t *which; /* session index -> index in jobs */
} accepted_ctx_t;

/* Reads whatever answer of the note on its way has arrived (wait: until it has); a note answered clears
 * note_busy. A broken connection drops the note (its protection only) and is reconnected before the next
 * session. */
static void notes_read(sender_t *s, int wait) {
    PGconn *db = s->db;
    while (s->note_busy) {
        if (!wait && (!PQconsumeInput(db) || PQisBusy(db))) {
            if (PQstatus(db) != CONNECTION_OK)
                s->note_busy = 0;
            return;
        }
        PGresult *res = PQgetResult(db); /* blocks only when wait */
        if (!res) {
            s->note_busy = 0; /* the statement is over */
            break;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            log_debug(NULL, "mail sender: accepted_at note not written: %s", PQresultErrorMessage(res));
        PQclear(res);
    }
}

/* Sends the notes gathered since the last one, in one statement, when none is on its way (the statement
 * does not wait for its answer: notes_read reads it later). Then, with wait, reads answers and sends again
 * until every note gathered is written: so at the end of a session, before its outcomes go to the main
 * thread, no note is left behind (nor on its way while the outcomes are written). */
static void notes_pump(sender_t *s, int wait) {
    for (;;) {
        if (!s->db || PQstatus(s->db) != CONNECTION_OK) {
            s->note_busy = 0;
            s->n_notes = 0; /* lost: only that protection */
            return;
        }
        notes_read(s, wait);
        if (s->note_busy || s->n_notes == 0)
            return;
        char *ids = db_array_literal(s->note_ids, s->n_notes);
        const char *p[1] = {ids};
        s->note_busy = PQsendQueryPrepared(s->db, ACCEPTED_STMT, 1, p, NULL, NULL, 0) == 1;
        free(ids);
        if (!s->note_busy)
            log_debug(NULL, "mail sender: cannot send the accepted_at note: %s", PQerrorMessage(s->db));
        s->n_notes = 0;
        if (!wait)
            return;
    }
}

/* The server accepted message k of the session: noted at once, so that if this mailer dies before the
 * outcome is written, the mailer taking the job over records it sent instead of sending it again. The note
 * goes to PostgreSQL on the sender's own connection without the sender waiting for its answer (the session
 * goes on meanwhile); while one is on its way, the messages accepted meanwhile wait for it and go together
 * in the next. A failure only loses that protection. */
static void note_accepted(void *arg, size_t k) {
    accepted_ctx_t *ctx = arg;
    sender_t *s = ctx->s;
    if (!s->db || PQstatus(s->db) != CONNECTION_OK)
        return;
    s->note_ids[s->n_notes++] = ctx->jobs[ctx->which[k]]->cl.job.job_id;
    notes_pump(s, 0);
}

/* Sends jobs[0..n) in one SMTP session: renders each (the code opened here, wiped after the session) and
 * sets each verdict. While the breaker holds, nothing is sent: the jobs are held. */
static void send_jobs(sender_t *s, sendjob_t **jobs, size_t n) {
    mailer_t *m = s->m;
    int64_t started = worker_now_ms();
    if (breaker_holding(m)) {
        for (size_t i = 0; i < n; i++)
            jobs[i]->held = 1;
        return;
    }
    sender_connect(s);
    smtp_item_t *batch = xcalloc(n, sizeof(*batch));
    char **texts = xcalloc(n, sizeof(*texts));
    size_t *which = xcalloc(n, sizeof(*which));
    size_t n_send = 0;
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        claimed_t *cl = &jobs[i]->cl;
        smtp_item_t *it = &jobs[i]->item;
        char code[CODE_LEN + 1] = "";
        if (!cl->job.is_reminder && code_open(&m->keys, cl->job.sealed_code, code) != 0) {
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
            text_printf(it->detail, sizeof(it->detail), "cannot render the e-mail: %s", why);
            continue;
        }
        batch[n_send].rcpt = cl->job.email;
        batch[n_send].message = texts[i];
        which[n_send++] = i;
    }
    if (n_send > 0) {
        /* The session gets only the messages that rendered; their verdicts go back to their jobs. */
        char why[400] = "";
        accepted_ctx_t ctx = {s, jobs, which};
        s->n_notes = 0;
        int session_failed =
            smtp_send_cb(&m->smtp, m->from.addr, batch, n_send, note_accepted, &ctx, why, sizeof(why)) != 0;
        notes_pump(s, 1); /* every note written before the outcomes are */
        for (size_t k = 0; k < n_send; k++)
            jobs[which[k]]->item = batch[k];
        if (session_failed) {
            /* The server's fault, not the messages': those not sent wait for it, no attempt counted. */
            breaker_trip(m, why, started);
            for (size_t k = 0; k < n_send; k++)
                if (jobs[which[k]]->item.outcome != SMTP_SENT)
                    jobs[which[k]]->held = 1;
        } else {
            breaker_close(m);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (texts[i]) {
            sodium_memzero(texts[i], strlen(texts[i]));
            free(texts[i]);
        }
    }
    free(texts);
    free(batch);
    free(which);
}

/* Jobs per session when a sender takes work: an even share of what waits among the senders (so that a
 * batch is sent over several sessions at once), at least SESSION_MIN (a session has a cost of its own), at
 * most mail.batch.max. */
#define SESSION_MIN 8

static void *sender_main(void *arg) {
    sender_t *s = arg;
    mailer_t *m = s->m;
    sendjob_t **jobs = xcalloc((size_t)m->batch_max, sizeof(*jobs));
    s->note_ids = xcalloc((size_t)m->batch_max, sizeof(*s->note_ids));
    sender_connect(s);
    pthread_mutex_lock(&m->lock);
    for (;;) {
        while (m->todo.n == 0 && !m->draining)
            pthread_cond_wait(&m->work_cv, &m->lock);
        if (m->todo.n == 0)
            break; /* draining, and nothing left */
        size_t take = (m->todo.n + (size_t)m->connections - 1) / (size_t)m->connections;
        if (take < SESSION_MIN)
            take = SESSION_MIN;
        if (take > (size_t)m->batch_max)
            take = (size_t)m->batch_max;
        if (take > m->todo.n)
            take = m->todo.n;
        for (size_t i = 0; i < take; i++)
            jobs[i] = joblist_pop(&m->todo);
        pthread_mutex_unlock(&m->lock);
        send_jobs(s, jobs, take);
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < take; i++)
            joblist_push(&m->done, jobs[i]);
        pthread_cond_signal(&m->done_cv);
    }
    pthread_mutex_unlock(&m->lock);
    free(jobs);
    free(s->note_ids);
    if (s->db)
        PQfinish(s->db);
    s->db = NULL;
    return NULL;
}

/* Starts the mail.connections senders; 0, or -1 with errstr when not even one thread could start. */
static int senders_start(mailer_t *m, char *errstr, size_t errstr_size) {
    m->senders = xcalloc((size_t)m->connections, sizeof(*m->senders));
    long started = 0;
    for (long i = 0; i < m->connections; i++) {
        sender_t *s = &m->senders[i];
        s->m = m;
        s->started = pthread_create(&s->thread, NULL, sender_main, s) == 0;
        started += s->started;
    }
    if (started == 0) {
        snprintf(errstr, errstr_size, "cannot start a mail sender thread");
        return -1;
    }
    if (started < m->connections)
        log_warn(NULL, "only %ld of %ld mail sender threads (mail.connections) started", started,
                 m->connections);
    return 0;
}

/* Lets the senders finish every job handed to them, recording the outcomes as they come, then joins them. */
static void senders_stop(mailer_t *m, PGconn *db) {
    if (!m->senders)
        return;
    pthread_mutex_lock(&m->lock);
    m->draining = 1;
    pthread_cond_broadcast(&m->work_cv);
    pthread_mutex_unlock(&m->lock);
    while (m->inflight > 0) {
        pthread_mutex_lock(&m->lock);
        if (m->done.n == 0) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&m->done_cv, &m->lock, &until);
        }
        pthread_mutex_unlock(&m->lock);
        if (record_done(m, db) != 0)
            break; /* gave up (logged): the rest stay `sending` until their lease ends */
    }
    for (long i = 0; i < m->connections; i++)
        if (m->senders[i].started)
            pthread_join(m->senders[i].thread, NULL);
    /* Anything left (recording gave up) is forgotten here: the rows are `sending`, taken over later. */
    for (sendjob_t *j; (j = joblist_pop(&m->done)) != NULL;)
        sendjob_free(j);
    for (sendjob_t *j; (j = joblist_pop(&m->todo)) != NULL;)
        sendjob_free(j);
    free(m->senders);
    m->senders = NULL;
}

/* ---- the heartbeat ---- */

/* A thread with a connection of its own renews this mailer's leases every fifth of mail.lease.ms, whatever
 * the main thread is doing (a long SMTP session, waiting for PostgreSQL to take an outcome). */
typedef struct heartbeat {
    const mailer_t *m;
    const char *url;
    pthread_t thread;
    int started;
    atomic_int stop;
} heartbeat_t;

static void *heartbeat_main(void *arg) {
    heartbeat_t *h = arg;
    PGconn *db = NULL;
    char lease[32], err[512];
    snprintf(lease, sizeof(lease), "%ld", h->m->lease_ms);
    int failing = 0;
    while (!atomic_load(&h->stop)) {
        if (!db)
            db = PQconnectdb(h->url);
        else if (PQstatus(db) != CONNECTION_OK)
            PQreset(db);
        int ok = 0;
        if (PQstatus(db) == CONNECTION_OK) {
            const char *name[1] = {h->m->appname};
            PGresult *res = db_exec(db, SQL_IDENTIFY, 1, name, err, sizeof(err));
            if (res)
                PQclear(res);
            const char *p[2] = {h->m->id, lease};
            res = db_exec(db, SQL_RENEW, 2, p, err, sizeof(err));
            ok = res != NULL;
            if (res)
                PQclear(res);
        }
        if (!ok && !failing)
            log_warn(NULL,
                     "mail lease heartbeat: cannot renew (PostgreSQL unreachable?); trying every second");
        else if (ok && failing)
            log_info(NULL, "mail lease heartbeat: renewing again");
        failing = !ok;
        /* Every fifth of the lease; every second while failing. */
        long wait_ms = ok ? h->m->lease_ms / 5 : 1000;
        for (long t = 0; t < wait_ms && !atomic_load(&h->stop); t += 50) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (db)
        PQfinish(db);
    return NULL;
}

static void heartbeat_start(heartbeat_t *h, const mailer_t *m, const char *url) {
    h->m = m;
    h->url = url ? url : "";
    atomic_init(&h->stop, 0);
    h->started = pthread_create(&h->thread, NULL, heartbeat_main, h) == 0;
    if (!h->started)
        log_warn(NULL, "cannot start the mail lease heartbeat: jobs will be taken over by other mailers when "
                       "mail.lease.ms runs out mid-send");
}

static void heartbeat_stop(heartbeat_t *h) {
    if (!h->started)
        return;
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    h->started = 0;
}

/* ---- the worker loop ---- */

/* Names the session after this mailer (SQL_IDENTIFY): its `sending` jobs count as held by a live mailer
 * only while a session of that name is connected. */
static void db_identify(mailer_t *m, PGconn *db) {
    char err[512];
    const char *p[1] = {m->appname};
    PGresult *res = db_exec(db, SQL_IDENTIFY, 1, p, err, sizeof(err));
    if (res)
        PQclear(res);
    /* On failure the claims are anonymous (lease only): safe, only slower to take over. */
}

/* After a database error: a broken connection is reset (and named again; while PostgreSQL is away, one
 * line, by db_alive); then a wait of sleep_ms (the hooks of the consumer loop pass 1 s, so that it polls
 * Kafka at least that often while PostgreSQL is away). */
static void db_recover(mailer_t *m, PGconn *db, long sleep_ms) {
    int was_down = PQstatus(db) != CONNECTION_OK;
    if (db_alive(db) && was_down)
        db_identify(m, db);
    if (worker_running()) {
        worker_sleep_ms(sleep_ms);
    } else { /* shutting down, still writing what was sent: worker_sleep_ms would not wait */
        struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* What the mailer's consumer loop hands its hooks. */
typedef struct mailer_loop {
    mailer_t *m;
    PGconn *db;
    /* Jobs dispatched and not yet recorded: at most two sessions' worth per sender, so that every sender has
     * its next session waiting while the main thread records and accepts. */
    size_t limit;
    int64_t next_scan; /* worker_now_ms() of the next mailer_claim_due */
    int accept_failed; /* the last batch could not be recorded: no scan this round */
} mailer_loop_t;

/* Every sender has work enough: waits (at most 50 ms) for outcomes to record. */
static void wait_for_outcomes(mailer_t *m) {
    pthread_mutex_lock(&m->lock);
    if (m->done.n == 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&m->done_cv, &m->lock, &until);
    }
    pthread_mutex_unlock(&m->lock);
}

/* The consumer loop's room hook: records the outcomes the senders finished, then takes as many jobs as
 * the senders have room for. The first job is waited for briefly (so that shutdown, retries and the
 * senders' outcomes stay responsive), the less while jobs are in hand. */
static size_t loop_room(void *arg, int *first_wait_ms) {
    mailer_loop_t *l = arg;
    mailer_t *m = l->m;
    if (record_done(m, l->db) != 0)
        db_recover(m, l->db, 1000);
    size_t room = m->inflight < l->limit ? l->limit - m->inflight : 0;
    if (room == 0)
        wait_for_outcomes(m);
    *first_wait_ms = m->inflight > 0 ? 5 : 100;
    return room;
}

/* The consumer loop's apply hook: records the batch of jobs in mail_deliveries (mailer_accept). Until they
 * are in the table their offsets stay uncommitted: on failure it returns -1 at once (no wait here: the loop
 * holds the batch, polls Kafka with the partitions paused and offers it again with a backoff; on shutdown it
 * is left uncommitted for the next mailer). The senders' outcomes meanwhile are recorded at each offer.
 * One line per run of failures, not one per offer. */
static int loop_accept(void *arg, rd_kafka_message_t *const *batch, size_t n) {
    mailer_loop_t *l = arg;
    char err[1024];
    mailer_input_t *in = xcalloc(n, sizeof(*in));
    for (size_t i = 0; i < n; i++) {
        in[i].payload = batch[i]->payload ? batch[i]->payload : "";
        in[i].len = batch[i]->len;
    }
    int failed = mailer_accept(l->m, l->db, in, n, err, sizeof(err)) != 0;
    free(in);
    if (failed) {
        if (!l->accept_failed)
            log_error(NULL,
                      "cannot record %zu mail job(s), will try again (no further line until it works): %s", n,
                      err);
        l->accept_failed = 1;
        int was_down = PQstatus(l->db) != CONNECTION_OK;
        if (db_alive(l->db) && was_down) /* PostgreSQL away: db_alive logs it once */
            db_identify(l->m, l->db);
        if (worker_running() && PQstatus(l->db) == CONNECTION_OK)
            record_done(l->m, l->db); /* the senders' outcomes meanwhile */
        return -1;
    }
    if (l->accept_failed)
        log_info(NULL, "mail jobs recorded again");
    l->accept_failed = 0;
    return 0;
}

/* The consumer loop's round hook: hands the jobs accepted on to the senders, then claims the retries that
 * are due. While the breaker holds, nothing due is claimed (it would only be held again); nor while the
 * senders have their hands full. */
static void loop_round(void *arg) {
    mailer_loop_t *l = arg;
    mailer_t *m = l->m;
    dispatch(m);
    if (l->accept_failed || worker_now_ms() < l->next_scan || breaker_holding(m) ||
        m->inflight + (size_t)m->batch_max > l->limit)
        return;
    int claimed = 0;
    char err[1024];
    if (mailer_claim_due(m, l->db, &claimed, err, sizeof(err)) != 0) {
        if (PQstatus(l->db) == CONNECTION_OK) /* else PostgreSQL away: db_alive logs that once */
            log_error(NULL, "cannot read due mail retries: %s", err);
        db_recover(m, l->db, 1000);
    } else {
        dispatch(m);
    }
    /* A full batch means more may be due: look again at once. */
    l->next_scan = claimed >= m->batch_max ? 0 : worker_now_ms() + mailer_scan_interval_ms(m);
}

int mailer_run(const conf_t *c) {
    int rc = EXIT_INFRA;
    char err[1024];
    heartbeat_t heartbeat = {0};
    mailer_loop_t l = {0};
    consumer_t *consumer = NULL;
    if (!(l.m = mailer_new(c, err, sizeof(err)))) {
        rc = worker_misconfigured(err);
        goto done;
    }
    if (!(l.db = db_connect_wait(c, err, sizeof(err)))) {
        rc = worker_gave_up(err);
        goto done;
    }
    db_identify(l.m, l.db);
    heartbeat_start(&heartbeat, l.m, conf_get(c, "db.url"));
    if (senders_start(l.m, err, sizeof(err)) != 0 ||
        !(consumer = consumer_new(c, conf_get(c, "group.mail"), conf_get(c, "topic.mail"), l.m->batch_max,
                                  MAILER_BATCH_WAIT_MS, CONSUMER_FILL_ALWAYS, err, sizeof(err)))) {
        rc = worker_gave_up(err);
        goto done;
    }
    log_info(NULL,
             "mailer started: group %s, topic %s, SMTP %s (starttls %s), batch %ld, retries %ld from %ld ms",
             conf_get(c, "group.mail"), conf_get(c, "topic.mail"), l.m->smtp.hostport,
             conf_get(c, "smtp.starttls"), l.m->batch_max, l.m->retry_max, l.m->retry_base_ms);
    notify_ready("sending invitation e-mails"); /* systemd (Type=notify): connected to PostgreSQL and Kafka */
    l.limit = 2 * (size_t)l.m->batch_max * (size_t)l.m->connections;
    consumer_run(consumer, &(consumer_hooks_t){
                               .arg = &l, .apply = loop_accept, .room = loop_room, .round = loop_round});
    log_info(NULL, "mailer stopping");
    rc = EXIT_OK;
done:
    if (l.m && l.db)
        senders_stop(l.m, l.db); /* the jobs in hand are sent and recorded */
    heartbeat_stop(&heartbeat);  /* after the last outcome is written: the leases held until then */
    consumer_free(consumer);     /* leaves the group: partitions move on at once */
    if (l.db)
        PQfinish(l.db);
    mailer_free(l.m);
    return rc;
}
