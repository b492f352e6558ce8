/* raikoo-expiry-worker: every expiry.interval.ms, marks pending invitations past their expiry as expired
 * (lib/svc/expiry.c), in batches of expiry.batch, then queues the reminders that are due (lib/svc/reminder.c);
 * several replicas share the work. */
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "db.h"
#include "exitstatus.h"
#include "expiry.h"
#include "health.h"
#include "instruments.h"
#include "log.h"
#include "notify.h"
#include "reminder.h"
#include "worker.h"

/* The worker: rounds of expiry until worker_running() says stop. Returns the exit status. */
static int run(const conf_t *c) {
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

int main(int argc, char **argv) {
    conf_t *c = conf_new();
    if (worker_init(
            &argc, argv, c, "expiry-worker",
            "Every expiry.interval.ms, marks pending invitations whose expires_at has passed as expired,\n"
            "expiry.batch at a time, each with an InvitationExpired event through the outbox; queues one\n"
            "reminder e-mail per invitation code reminder.before its expiry (InvitationReminderSent).\n"
            "Several replicas are safe. SIGTERM or SIGINT: finish the batch, exit 0.") != 0) {
        conf_free(c);
        return worker_exit_status();
    }
    health_require(HEALTH_POSTGRESQL); /* what /readyz waits for */
    instruments_init_expiry();
    int rc = run(c);
    conf_free(c);
    return rc;
}
