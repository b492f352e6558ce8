/* Invitation e-mails: the sender, the templates (template.c) and rendering a job into an RFC 5322 MIME
 * message (multipart/alternative, text and HTML), safe against header injection. */
#ifndef RAIKOO_MAIL_H
#define RAIKOO_MAIL_H

#include <stddef.h>
#include <time.h>
#include <jansson.h>

#include "email.h"
#include "mailjob.h"
#include "mime.h"

/* The language tags (locale_tag_valid, LOCALE_TAG_MAX) are in mailjob.h. */

/* The sender of every mail (mail.from): an address and the From: header value, encoded as needed. */
typedef struct mail_from {
    char addr[EMAIL_MAX + 1];
    char *header; /* "Raikoo <no-reply@raikoo.local>" or with an encoded-word display name */
    char domain[EMAIL_MAX + 1];
} mail_from_t;

/* Reads "Display Name <addr>" or a bare "addr". Free with mail_from_free. */
int mail_from_parse(const char *spec, mail_from_t *from, char *errstr, size_t errstr_size);
void mail_from_free(mail_from_t *from);

typedef struct mail_templates mail_templates_t;

/* Loads the built-in templates (lib/templates: invitation.subject, invitation.txt, invitation.html,
 * reminder.subject, reminder.txt, reminder.html in English, and "<tag>.<name>" in the language <tag>),
 * each replaced by the file of that name in dir when dir is neither NULL nor empty and holds it: dir/<name>
 * or dir/en/<name> for English, dir/<tag>/<name> for the language <tag> (a folder named like "de" or
 * "de-AT" adds that language). A language's file that is neither in dir nor built in is its parent's
 * (de-AT: de's), else English's. Every placeholder and section is checked here, so a broken override
 * stops the mailer at start, not at the first mail. *overridden gets how many files came from dir. */
mail_templates_t *mail_templates_load(const char *dir, int *overridden, char *errstr, size_t errstr_size);
void mail_templates_free(mail_templates_t *t);

/* The language of jobs without a locale (mail.locale; English until set). -1 when tag is not a language
 * tag (locale_tag_valid). */
int mail_templates_set_default(mail_templates_t *t, const char *tag);

/* The tag of the templates a job of this locale gets (NULL: the default): the locale itself when loaded,
 * else its language ("de" for "de-AT"), else "en". */
const char *mail_templates_locale(const mail_templates_t *t, const char *locale);

/* A time in UTC the way the locale's language writes it, with month names of our own (no system locale):
 * en "December 4, 2026, 22:30 UTC", de "4. Dezember 2026, 22:30 UTC"; other languages as en. */
void mail_format_time(const char *locale, time_t t, char *buf, size_t size);

/* Renders the whole message for one job with the (canonical) code, CRLF line ends, ready for SMTP, in the
 * job's language (mail_templates_locale), its link starting with the job's app_url, else app_url. A
 * reminder (job->is_reminder) uses the reminder templates and has no code: code may be NULL then.
 * Date (from now), Message-ID, From, To, Subject, MIME-Version, Content-Type and the two parts.
 * Returns a new string (free()), or NULL with errstr. */
char *mail_render(const mail_templates_t *t, const mail_from_t *from, const char *app_url,
                  const mail_job_t *job, const char *code, time_t now, char *errstr, size_t errstr_size);

#endif
