/* Invitation e-mails: the mail job contract, the templates and rendering a job into an RFC 5322 MIME
 * message (multipart/alternative, text and HTML), safe against header injection. */
#ifndef RAIKOO_MAIL_H
#define RAIKOO_MAIL_H

#include <stddef.h>
#include <time.h>
#include <jansson.h>

#include "email.h"

#define MAIL_JOB_TYPE "raikoo.mail.InvitationEmail.v1"

/* A parsed mail job (the CloudEvent the command worker writes to topic.mail). The strings point into
 * root, which the job owns; free with mail_job_free. email holds the normal form of the address. */
typedef struct mail_job {
    json_t *root;
    const char *job_id, *invitation_id, *org_id, *org_name, *kind, *name, *inviter_name, *inviter_email;
    const char *expires_at, *sealed_code, *correlationid, *actorid;
    char email[EMAIL_MAX + 1];
    int is_new, grant_owner;
    time_t expires; /* expires_at as a time */
} mail_job_t;

/* Parses and checks one mail job. On failure errstr says why; when the job at least names itself
 * (job_id, invitation_id and org_id are UUIDs) *identified is 1 and those three fields are set, so the
 * caller can record the failure against the invitation. The job owns a JSON tree even then. */
int mail_job_parse(const char *buf, size_t len, mail_job_t *job, int *identified, char *errstr,
                   size_t errstr_size);

void mail_job_free(mail_job_t *job);

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
char *mail_render(const mail_templates_t *t, const mail_from_t *from, const char *app_url, const mail_job_t *job,
                  const char *code, time_t now, char *errstr, size_t errstr_size);

/* Building blocks, public for the unit tests. Each returns a new string (free()). */

/* text with every control character (C0, DEL, C1, U+2028/2029) replaced by a space, invalid UTF-8 by
 * U+FFFD, and surrounding space trimmed: what every value goes through before it reaches a mail. */
char *mail_clean(const char *text);

/* A header value for unstructured text (Subject): as is when printable ASCII, else RFC 2047
 * encoded-words (UTF-8, base64), folded with CRLF SP so that no line grows past 78 characters. The
 * input must be clean (mail_clean). */
char *mail_header_text(const char *clean);

/* A mailbox for To/From: "addr", "\"Display Name\" <addr>" or "=?UTF-8?B?...?= <addr>". */
char *mail_mailbox(const char *clean_name, const char *addr);

/* quoted-printable of text with LF or CRLF line ends, output lines CRLF-terminated and at most 76
 * characters. */
char *mail_qp_encode(const char *text);

/* text with & < > " ' replaced by entities. */
char *mail_html_escape(const char *text);

#endif
