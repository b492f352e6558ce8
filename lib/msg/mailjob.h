/* The mail job contract: the CloudEvent (raikoo.mail.InvitationEmail.v1) the command worker writes to
 * topic.mail for each invitation e-mail, and the mailer reads. One type for both sides. */
#ifndef RAIKOO_MAILJOB_H
#define RAIKOO_MAILJOB_H

#include <stddef.h>
#include <time.h>
#include <jansson.h>

#include "email.h"

#define MAIL_JOB_TYPE "raikoo.mail.InvitationEmail.v1"
/* The reminder before an invitation expires (schemas/mail/InvitationReminder.schema.json), written by the
 * expiry worker: the same fields but no code (codes are stored only as hashes), and the invitation's mail
 * job it reminds of. */
#define MAIL_REMINDER_TYPE "raikoo.mail.InvitationReminder.v1"
#define MAIL_REMINDER_SOURCE "/raikoo/expiry-worker"

/* A mail job. Parsed (mail_job_parse): the strings point into root, which the job owns; free with
 * mail_job_free. Built (mail_job_build): root is NULL and the strings belong to the caller. email holds the
 * normal form of the address. */
typedef struct mail_job {
    json_t *root;
    const char *job_id, *invitation_id, *org_id, *org_name, *kind, *name, *inviter_name, *inviter_email;
    const char *expires_at, *sealed_code, *correlationid, *actorid;
    /* Optional (NULL when absent): the e-mail's language tag (locale_tag_valid) and the web address its link
     * points to (app_url_valid; the mailer's mail.app.url when absent). */
    const char *locale, *app_url;
    char email[EMAIL_MAX + 1];
    int is_new, grant_owner; /* is_new: kind is "new" (set by the parser; the builder reads kind) */
    int grant_manage_users;  /* optional in the job: written only when 1 */
    time_t expires;          /* expires_at as a time (set by the parser) */
    /* A reminder (MAIL_REMINDER_TYPE; set by the parser): sealed_code is NULL, correlationid may be NULL,
     * invitation_job_id is the invitation's mail job (invitations.mail_job_id) when it was queued. */
    int is_reminder;
    const char *invitation_job_id;
} mail_job_t;

/* The job's CloudEvent as JSON text (free()), from every string field but root, is_new and expires
 * (correlationid required, actorid may be NULL); NULL when a string is not valid UTF-8 (jansson refuses
 * it): the caller rejects the command rather than stop. */
char *mail_job_build(const mail_job_t *job);

/* The reminder job's CloudEvent (MAIL_REMINDER_TYPE, source MAIL_REMINDER_SOURCE) as JSON text (free()),
 * from job_id, invitation_id, org_id, org_name, kind, email, name, inviter_name, inviter_email, grant_owner,
 * grant_manage_users, expires_at, invitation_job_id and the optional locale, app_url and correlationid;
 * sealed_code and actorid are not read. NULL when a string is not valid UTF-8. */
char *mail_reminder_build(const mail_job_t *job);

/* Parses and checks one mail job (an invitation e-mail or a reminder: is_reminder tells). On failure errstr says why; when the job at least names itself
 * (job_id, invitation_id and org_id are UUIDs) *identified is 1 and those three fields are set, so the
 * caller can record the failure against the invitation. The job owns a JSON tree even then. */
int mail_job_parse(const char *buf, size_t len, mail_job_t *job, int *identified, char *errstr,
                   size_t errstr_size);

void mail_job_free(mail_job_t *job);

/* Longest language tag and link address a job (or a command) may carry. */
#define LOCALE_TAG_MAX 16
#define APP_URL_MAX 512

/* A language tag of the form "de" or "de-AT" (two or three lower-case letters, then optionally a hyphen and
 * two upper-case letters or three digits). */
int locale_tag_valid(const char *s);

/* An absolute http or https address without spaces, quotes, angle brackets or control characters, at
 * most APP_URL_MAX bytes, not ending in '/' (the mailer appends "/invitations/<id>"). */
int app_url_valid(const char *s);

#endif
