/* Invitation expiry: pending invitations past expires_at become `expired`, with an InvitationExpired
 * event through the outbox, in bounded batches that several workers can share. */
#include "expiry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "event.h"
#include "exitstatus.h"
#include "instruments.h"
#include "log.h"
#include "notify.h"
#include "outbox.h"
#include "reminder.h"
#include "worker.h"

#define EXPIRY_SOURCE "/raikoo/expiry-worker"

/* The oldest due invitations first; rows another worker (or a command in flight) holds are skipped,
 * and the status is checked again under the lock. decided_at stays NULL: an expired invitation can
 * still be resent, which makes it pending again. */
static const char SQL_EXPIRE[] =
    "WITH due AS ("
    "  SELECT id FROM invitations WHERE status = 'pending' AND expires_at < now()"
    "  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " UPDATE invitations i SET status = 'expired' FROM due"
    " WHERE i.id = due.id AND i.status = 'pending' AND i.expires_at < now()"
    " RETURNING i.id, i.org_id, i.email, i.kind,"
    "  " DB_RFC3339("i.expires_at");

int expiry_run_batch(PGconn *db, const char *events_topic, long batch, int *expired, char *errstr,
                     size_t errstr_size) {
    outbox_t ob = {0};
    char limit[32];
    snprintf(limit, sizeof(limit), "%ld", batch);
    *expired = 0;
    if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
        return -1;
    const char *p[1] = {limit};
    PGresult *res = db_exec_cached(db, SQL_EXPIRE, 1, p, errstr, errstr_size);
    for (int r = 0; res && r < PQntuples(res); r++) {
        json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s}", "invitation_id", PQgetvalue(res, r, 0),
                                 "org_id", PQgetvalue(res, r, 1), "email", PQgetvalue(res, r, 2), "kind",
                                 PQgetvalue(res, r, 3), "expired_at", PQgetvalue(res, r, 4));
        if (!data)
            abort();
        /* No actor and no command caused this: no actorid, no correlationid. */
        json_t *ev = event_new("raikoo.event.InvitationExpired.v1", NULL, EXPIRY_SOURCE, NULL, NULL, data);
        char *text = event_dump(ev);
        outbox_add(&ob, events_topic, PQgetvalue(res, r, 1), text);
        free(text);
        json_decref(ev);
    }
    int rc = outbox_commit(&ob, db, res != NULL, errstr, errstr_size);
    if (rc == 0) {
        *expired = PQntuples(res);
        instruments_expired(*expired);
        for (int r = 0; r < PQntuples(res); r++)
            log_info(NULL, "invitation %s (org %s) expired", PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
    }
    PQclear(res);
    return rc;
}

/* ---- The worker ---- */

int expiry_run(const conf_t *c) {
    char err[1024];
    long interval_ms, batch, before_s, reminder_batch;
    if (conf_get_long(c, "expiry.interval.ms", 10, 86400000, &interval_ms, err, sizeof(err)) != 0 ||
        conf_get_long(c, "expiry.batch", 1, 100000, &batch, err, sizeof(err)) != 0 ||
        conf_get_long(c, "reminder.batch", 1, 100000, &reminder_batch, err, sizeof(err)) != 0)
        return worker_misconfigured(err);
    if (conf_get_duration(c, "reminder.before", REMINDER_BEFORE_MAX_S, &before_s, err, sizeof(err)) != 0) {
        size_t n = strlen(err);
        snprintf(err + n, sizeof(err) - n, "; 0 turns reminders off");
        return worker_misconfigured(err);
    }
    PGconn *db = db_connect_wait(c, err, sizeof(err)); /* waits while PostgreSQL is down */
    if (!db)
        return worker_gave_up(err);
    log_info(NULL,
             "expiry worker started: every %ld ms, %ld per transaction; reminders %ld s before expiry%s",
             interval_ms, batch, before_s, before_s ? "" : " (off)");
    notify_ready("expiring invitations"); /* systemd (Type=notify): connected to PostgreSQL */
    while (worker_running()) {
        int expired = 0;
        /* Drain what is due, a batch per transaction, then wait for the next round. */
        do {
            if (expiry_run_batch(db, conf_get(c, "topic.events"), batch, &expired, err, sizeof(err)) != 0) {
                if (db_alive(db)) /* else PostgreSQL went away: db_alive logged it once */
                    log_error(NULL, "cannot expire invitations: %s", err);
                while (!db_alive(db) && db_wait())
                    ;
                expired = 0;
            } else if (expired > 0) {
                log_info(NULL, "%d invitation(s) expired", expired);
            }
        } while (expired >= batch && worker_running());
        int queued = 0;
        /* Then the reminders that are due, likewise (none when reminder.before is 0). */
        while (before_s > 0 && worker_running()) {
            if (reminder_run_batch(db, conf_get(c, "topic.mail"), conf_get(c, "topic.events"), before_s,
                                   reminder_batch, &queued, err, sizeof(err)) != 0) {
                if (db_alive(db))
                    log_error(NULL, "cannot queue reminders: %s", err);
                while (!db_alive(db) && db_wait())
                    ;
                break;
            }
            if (queued > 0)
                log_info(NULL, "%d reminder(s) queued", queued);
            if (queued < reminder_batch)
                break;
        }
        worker_sleep_ms(interval_ms);
    }
    log_info(NULL, "expiry worker stopping");
    PQfinish(db);
    return EXIT_OK;
}
