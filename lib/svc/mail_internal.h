/* Shared by the parts of the invitation e-mail (template.c, mail.c); not for other modules. */
#ifndef RAIKOO_MAIL_INTERNAL_H
#define RAIKOO_MAIL_INTERNAL_H

#include "mail.h"

enum { T_SUBJECT, T_TEXT, T_HTML, T_COUNT };

struct mail_templates {
    char *text[T_COUNT]; /* owned */
};

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
