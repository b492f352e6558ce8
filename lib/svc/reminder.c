/* Invitation reminders, queued by the expiry worker (see reminder.h and docs/EMAIL.md). */
#include "reminder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "mailjob.h"
#include "outbox.h"

/* Due: pending, e-mail delivered, not reminded for this code, expiring within $2 seconds but not yet
 * expired, and a code that lives longer than $2 (else the reminder would follow the invitation at once); the soonest first; rows another worker (or a command) holds are skipped and the conditions
 * checked again under the lock. The claim is the update: reminder_sent_at and a fresh reminder_job_id. */
#define REMINDER_EXPIRES DB_RFC3339("u.expires_at")
static const char SQL_REMIND[] =
    "WITH due AS ("
    "  SELECT id FROM invitations"
    "  WHERE status = 'pending' AND reminder_sent_at IS NULL AND mail_state = 'sent'"
    "    AND mail_job_id IS NOT NULL AND expires_at > now()"
    "    AND expires_at <= now() + $2::bigint * interval '1 second'"
    "    AND expires_at - coalesce(resent_at, created_at) > $2::bigint * interval '1 second'"
    "  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    "), upd AS ("
    "  UPDATE invitations i SET reminder_sent_at = now(), reminder_job_id = gen_random_uuid() FROM due"
    "  WHERE i.id = due.id AND i.status = 'pending' AND i.reminder_sent_at IS NULL AND i.expires_at > now()"
    "  RETURNING i.id, i.org_id, i.email, i.kind, i.grant_owner, i.grant_manage_users, i.locale,"
    "            i.expires_at, i.reminder_job_id, i.mail_job_id, i.user_id, i.invited_by"
    ")"
    " SELECT u.id, u.org_id, o.name, u.email, coalesce(invitee.name, ''), u.kind, u.grant_owner,"
    "        u.grant_manage_users, u.locale, u.reminder_job_id, u.mail_job_id,"
    "        coalesce(inviter.name, ''), coalesce(inviter.email, ''), p.app_url, " REMINDER_EXPIRES
    " FROM upd u JOIN organizations o ON o.id = u.org_id"
    " LEFT JOIN users invitee ON invitee.id = u.user_id"
    " LEFT JOIN users inviter ON inviter.id = u.invited_by"
    " LEFT JOIN organization_policies p ON p.org_id = u.org_id"
    " ORDER BY u.expires_at";

enum {
    C_ID,
    C_ORG,
    C_ORG_NAME,
    C_EMAIL,
    C_NAME,
    C_KIND,
    C_OWNER,
    C_MANAGER,
    C_LOCALE,
    C_JOB,
    C_MAIL_JOB,
    C_INVITER,
    C_INVITER_EMAIL,
    C_APP_URL,
    C_EXPIRES
};

static const char *opt(PGresult *res, int r, int c) {
    return PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
}

/* Adds the reminder of row r (a mail job on mail_topic and an InvitationReminderSent event on events_topic)
 * to ob. */
static void reminder_queue(outbox_t *ob, PGresult *res, int r, const char *mail_topic,
                           const char *events_topic) {
    const char *locale = opt(res, r, C_LOCALE), *app_url = opt(res, r, C_APP_URL);
    mail_job_t job = {
        .job_id = PQgetvalue(res, r, C_JOB),
        .invitation_id = PQgetvalue(res, r, C_ID),
        .org_id = PQgetvalue(res, r, C_ORG),
        .org_name = PQgetvalue(res, r, C_ORG_NAME),
        .kind = PQgetvalue(res, r, C_KIND),
        .name = PQgetvalue(res, r, C_NAME),
        .inviter_name = PQgetvalue(res, r, C_INVITER),
        .inviter_email = PQgetvalue(res, r, C_INVITER_EMAIL),
        .expires_at = PQgetvalue(res, r, C_EXPIRES),
        .invitation_job_id = PQgetvalue(res, r, C_MAIL_JOB),
        /* The columns' checks are the job's (locale_tag_valid, app_url_valid): a value that is not
         * would make the mailer fail the job; leave it out instead (the mailer's own settings). */
        .locale = locale && locale_tag_valid(locale) ? locale : NULL,
        .app_url = app_url && app_url_valid(app_url) ? app_url : NULL,
        .grant_owner = PQgetvalue(res, r, C_OWNER)[0] == 't',
        .grant_manage_users = PQgetvalue(res, r, C_MANAGER)[0] == 't',
    };
    snprintf(job.email, sizeof(job.email), "%s", PQgetvalue(res, r, C_EMAIL));
    char *text = mail_reminder_build(&job);
    if (!text) {
        /* A name that is not valid UTF-8 (the database refuses those, so this does not happen): the
         * invitation keeps its reminder_sent_at and gets none, rather than stop the scan. */
        log_error(NULL, "reminder for invitation %s cannot be built (a name is not valid UTF-8): skipped",
                  job.invitation_id);
        return;
    }
    outbox_add(ob, mail_topic, job.invitation_id, text);
    free(text);
    json_t *data =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "invitation_id", job.invitation_id, "org_id", job.org_id,
                  "email", job.email, "kind", job.kind, "job_id", job.job_id, "expires_at", job.expires_at);
    if (!data)
        abort();
    /* No actor and no command caused this: no actorid, no correlationid. */
    json_t *ev =
        event_new("raikoo.event.InvitationReminderSent.v1", NULL, MAIL_REMINDER_SOURCE, NULL, NULL, data);
    char *ev_text = event_dump(ev);
    outbox_add(ob, events_topic, job.org_id, ev_text);
    free(ev_text);
    json_decref(ev);
}

int reminder_run_batch(PGconn *db, const char *mail_topic, const char *events_topic, long before_s,
                       long batch, int *queued, char *errstr, size_t errstr_size) {
    outbox_t ob = {0};
    char limit[32], before[32];
    snprintf(limit, sizeof(limit), "%ld", batch);
    snprintf(before, sizeof(before), "%ld", before_s);
    *queued = 0;
    if (before_s <= 0)
        return 0;
    if (db_cmd(db, "BEGIN", errstr, errstr_size) != 0)
        return -1;
    const char *p[2] = {limit, before};
    PGresult *res = db_exec_cached(db, SQL_REMIND, 2, p, errstr, errstr_size);
    for (int r = 0; res && r < PQntuples(res); r++)
        reminder_queue(&ob, res, r, mail_topic, events_topic);
    int rc = outbox_commit(&ob, db, res != NULL, errstr, errstr_size);
    if (rc == 0) {
        *queued = PQntuples(res);
        for (int r = 0; r < PQntuples(res); r++)
            log_info(NULL, "invitation %s (org %s): reminder queued (expires %s)", PQgetvalue(res, r, C_ID),
                     PQgetvalue(res, r, C_ORG), PQgetvalue(res, r, C_EXPIRES));
    }
    PQclear(res);
    return rc;
}
