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

/* Loads the built-in templates (invitation.subject, invitation.txt, invitation.html), each replaced by
 * the file of that name in dir when dir is neither NULL nor empty and holds it. Every placeholder and
 * section is checked here, so a broken override stops the mailer at start, not at the first mail.
 * *overridden gets how many files came from dir. */
mail_templates_t *mail_templates_load(const char *dir, int *overridden, char *errstr, size_t errstr_size);
void mail_templates_free(mail_templates_t *t);

/* Renders the whole message for one job with the (canonical) code, CRLF line ends, ready for SMTP:
 * Date (from now), Message-ID, From, To, Subject, MIME-Version, Content-Type and the two parts.
 * Returns a new string (free()), or NULL with errstr. */
char *mail_render(const mail_templates_t *t, const mail_from_t *from, const char *app_url,
                  const mail_job_t *job, const char *code, time_t now, char *errstr, size_t errstr_size);

#endif
