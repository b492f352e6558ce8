/* Invitation and reminder e-mails: the sender (mail.from), the words and dates of each language, and
 * rendering a job into an RFC 5322 MIME message (multipart/alternative, text and HTML), safe against header
 * injection. */
#include "mail_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "secret.h"
#include "strbuf.h"
#include "text.h"

/* ---- mail.from ---- */

int mail_from_parse(const char *spec, mail_from_t *from, char *errstr, size_t errstr_size) {
    memset(from, 0, sizeof(*from));
    char why[256];
    const char *lt = strrchr(spec, '<');
    char addr[EMAIL_MAX * 2];
    char *name = NULL;
    if (lt) {
        const char *gt = strchr(lt, '>');
        if (!gt || gt[1] != '\0' || (size_t)(gt - lt - 1) >= sizeof(addr)) {
            snprintf(errstr, errstr_size, "mail.from: expected \"Name <address>\" or \"address\"");
            return -1;
        }
        snprintf(addr, sizeof(addr), "%.*s", (int)(gt - lt - 1), lt + 1);
        char *raw = xstrndup(spec, (size_t)(lt - spec));
        /* A quoted display name loses its quotes; it is quoted again as needed. */
        size_t n = strlen(raw);
        while (n > 0 && raw[n - 1] == ' ')
            raw[--n] = '\0';
        char *s = raw;
        while (*s == ' ')
            s++;
        n = strlen(s);
        if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
            s[n - 1] = '\0';
            s++;
        }
        name = mail_clean(s);
        free(raw);
    } else {
        if (strlen(spec) >= sizeof(addr)) {
            snprintf(errstr, errstr_size, "mail.from: address too long");
            return -1;
        }
        snprintf(addr, sizeof(addr), "%s", spec);
    }
    if (email_normalize(addr, from->addr, why, sizeof(why)) != 0) {
        snprintf(errstr, errstr_size, "mail.from: %s", why);
        free(name);
        return -1;
    }
    snprintf(from->domain, sizeof(from->domain), "%s", strchr(from->addr, '@') + 1);
    from->header = mail_mailbox(name, from->addr);
    free(name);
    return 0;
}

void mail_from_free(mail_from_t *from) {
    free(from->header);
    from->header = NULL;
}

/* The address for a shell command line: quoted when it holds characters a shell would read. */
static char *shell_word(const char *s) {
    if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._+-") == strlen(s))
        return xstrdup(s);
    sb_t b = {0};
    sb_addc(&b, '\'');
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            sb_add(&b, "'\\''");
        else
            sb_addc(&b, *p);
    }
    sb_addc(&b, '\'');
    return sb_take(&b);
}

/* ---- words of each language (the templates hold the rest) ---- */

typedef struct mail_words {
    const char *lang;
    const char *months[12];
    int day_first; /* "4. Dezember 2026" rather than "December 4, 2026" */
    const char *owner, *manager, *member, *otp, *confirmation, *someone;
} mail_words_t;

static const mail_words_t words[] = {
    {"en",
     {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
      "November", "December"},
     0,
     "owner",
     "user manager",
     "member",
     "One-time password",
     "Confirmation code",
     "A Raikoo user"},
    {"de",
     {"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
      "November", "Dezember"},
     1,
     "Inhaber",
     "Benutzerverwalter",
     "Mitglied",
     "Einmalpasswort",
     "Bestätigungscode",
     "Ein Raikoo-Benutzer"},
};

/* The words of the locale's language, English when we have none. */
static const mail_words_t *words_for(const char *locale) {
    size_t lang = locale ? strcspn(locale, "-") : 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (lang && strlen(words[i].lang) == lang && strncmp(words[i].lang, locale, lang) == 0)
            return &words[i];
    return &words[0];
}

void mail_format_time(const char *locale, time_t t, char *buf, size_t size) {
    const mail_words_t *w = words_for(locale);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (w->day_first)
        snprintf(buf, size, "%d. %s %d, %02d:%02d UTC", tm.tm_mday, w->months[tm.tm_mon], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min);
    else
        snprintf(buf, size, "%s %d, %d, %02d:%02d UTC", w->months[tm.tm_mon], tm.tm_mday, tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min);
}

/* The values the templates may name, for job in the words w (vals starts zeroed). name is the invitee's
 * name, cleaned; shown the code as displayed (empty for a reminder). */
static void render_values(mail_values_t *vals, const mail_job_t *job, const mail_words_t *w, const char *name,
                          const char *shown, const char *app_url, const char *when) {
    char *inviter = mail_clean(job->inviter_name);
    char *inviter_email = mail_clean(job->inviter_email);
    mail_values_set(vals, "org_name", mail_clean(job->org_name));
    mail_values_set(vals, "invitee_name", xstrdup(*name ? name : job->email));
    mail_values_set(vals, "email", xstrdup(job->email));
    mail_values_set(vals, "email_shell", shell_word(job->email));
    mail_values_set(vals, "inviter_name",
                    xstrdup(*inviter         ? inviter
                            : *inviter_email ? inviter_email
                                             : w->someone));
    mail_values_set(vals, "inviter_email", xstrdup(inviter_email));
    mail_values_set(vals, "invitation_id", mail_clean(job->invitation_id));
    mail_values_set(vals, "code", xstrdup(shown));
    mail_values_set(vals, "code_label",
                    xstrdup(job->is_reminder ? ""
                            : job->is_new    ? w->otp
                                             : w->confirmation));
    mail_values_set(vals, "app_url", mail_clean(app_url ? app_url : ""));
    mail_values_set(vals, "expires_at", xstrdup(when));
    mail_values_set(vals, "role",
                    xstrdup(job->grant_owner          ? w->owner
                            : job->grant_manage_users ? w->manager
                                                      : w->member));
    vals->section[0] = job->is_new;
    vals->section[1] = !job->is_new;
    vals->section[2] = job->grant_owner;
    free(inviter);
    free(inviter_email);
}

/* The MIME part of the message, after its own headers: multipart/alternative with the text and the HTML
 * part (both quoted-printable already), under a random boundary. */
static void render_multipart(sb_t *b, const char *text_qp, const char *html_qp) {
    unsigned char rnd[12];
    char boundary[64], hex[sizeof(rnd) * 2 + 1];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    /* "=_" cannot occur in quoted-printable text, so the boundary never collides with a part. */
    snprintf(boundary, sizeof(boundary), "=_raikoo_%s", hex);
    sb_add(b, "MIME-Version: 1.0\r\n");
    sb_printf(b, "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n", boundary);
    sb_add(b, "\r\n");
    sb_add(b, "This is a multi-part message in MIME format.\r\n");
    sb_printf(b, "\r\n--%s\r\n", boundary);
    sb_add(b,
           "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    sb_add(b, text_qp);
    sb_printf(b, "\r\n--%s\r\n", boundary);
    sb_add(b,
           "Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    sb_add(b, html_qp);
    sb_printf(b, "\r\n--%s--\r\n", boundary);
}

/* Wipes s (it held the code), then frees it. */
static void free_wiped(char *s) {
    sodium_memzero(s, strlen(s));
    free(s);
}

char *mail_render(const mail_templates_t *t, const mail_from_t *from, const char *app_url,
                  const mail_job_t *job, const char *code, time_t now, char *errstr, size_t errstr_size) {
    char shown[CODE_DISPLAY_LEN + 1] = "", when[128], date[64];
    const int reminder = job->is_reminder;
    if (!reminder && (!code || strlen(code) != CODE_LEN)) {
        snprintf(errstr, errstr_size, "the code is not %d characters", CODE_LEN);
        return NULL;
    }
    if (!reminder)
        code_display(code, shown);
    const mail_template_set_t *set = mail_templates_set_for(t, job->locale);
    const char *const *tpl = (const char *const *)set->text + (reminder ? R_SUBJECT : T_SUBJECT);
    if (job->app_url)
        app_url = job->app_url;
    mail_format_time(set->tag, job->expires, when, sizeof(when));
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

    mail_values_t vals;
    memset(&vals, 0, sizeof(vals));
    char *name = mail_clean(job->name);
    render_values(&vals, job, words_for(set->tag), name, shown, app_url, when);
    char *subject_raw = mail_template_expand(tpl[0], &vals, 0);
    char *subject_clean = mail_clean(subject_raw); /* one line, whatever the template holds */
    char *subject = mail_header_text(subject_clean);
    char *to = mail_mailbox(name, job->email);
    char *text = mail_template_expand(tpl[1], &vals, 0);
    char *html = mail_template_expand(tpl[2], &vals, 1);
    char *text_qp = mail_qp_encode(text);
    char *html_qp = mail_qp_encode(html);

    sb_t b = {0};
    sb_printf(&b, "Date: %s\r\n", date);
    sb_printf(&b, "Message-ID: <%s@%s>\r\n", job->job_id, from->domain);
    sb_printf(&b, "From: %s\r\n", from->header);
    sb_printf(&b, "To: %s\r\n", to);
    sb_printf(&b, "Subject: %s\r\n", subject);
    sb_printf(&b, "Content-Language: %s\r\n", set->tag);
    render_multipart(&b, text_qp, html_qp);

    mail_values_free(&vals);
    /* The code was in these buffers: wipe before freeing. */
    free_wiped(text);
    free_wiped(html);
    free_wiped(text_qp);
    free_wiped(html_qp);
    sodium_memzero(shown, sizeof(shown));
    free(name);
    free(subject_raw);
    free(subject_clean);
    free(subject);
    free(to);
    return sb_take(&b);
}
