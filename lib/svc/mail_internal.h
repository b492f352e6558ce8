/* Shared by the parts of the invitation e-mail (template.c, mail.c); not for other modules. */
#ifndef RAIKOO_MAIL_INTERNAL_H
#define RAIKOO_MAIL_INTERNAL_H

#include "mail.h"

/* The templates of one e-mail language: the invitation's, then the reminder's. */
enum { T_SUBJECT, T_TEXT, T_HTML, R_SUBJECT, R_TEXT, R_HTML, T_COUNT };

typedef struct mail_template_set {
    char tag[LOCALE_TAG_MAX + 1]; /* "en", "de", "de-AT", ... */
    char *text[T_COUNT];          /* owned */
} mail_template_set_t;

/* sets[0] is English, the last fallback; the others are the embedded languages and the operator's
 * locale folders, each complete (a file it lacks is its language's, else English's). */
struct mail_templates {
    mail_template_set_t *sets;
    size_t n;
    char default_tag[LOCALE_TAG_MAX + 1]; /* for jobs without a locale (mail.locale) */
};

/* The set for a job's locale (NULL: the default): the tag itself, then its language, then English. */
const mail_template_set_t *mail_templates_set_for(const mail_templates_t *t, const char *locale);

/* The placeholders a template may use (org_name, invitee_name, email, email_shell, inviter_name,
 * inviter_email, invitation_id, code, code_label, app_url, expires_at, role). */
#define MAIL_VAR_COUNT 12

/* The values a template sees, each already clean (no control characters), owned; and the sections
 * new, existing, owner. */
typedef struct mail_values {
    char *v[MAIL_VAR_COUNT];
    int section[3];
} mail_values_t;

/* Sets the placeholder name (one of the list above) to value (taken over). */
void mail_values_set(mail_values_t *vals, const char *name, char *value);

/* Wipes (a value may hold the code) and frees every value. */
void mail_values_free(mail_values_t *vals);

/* Expands a checked template (new string, free()). html: every value HTML-escaped. A section tag alone on
 * its line takes its line break with it, so sections leave no blank lines behind. */
char *mail_template_expand(const char *t, const mail_values_t *vals, int html);

#endif
