/* The invitation templates (lib/templates, or the files of mail.templates): loading, checking, expanding. */
#include "mail_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "embedded.h"
#include "strbuf.h"
#include "text.h"

static const char *template_names[T_COUNT] = {"invitation.subject", "invitation.txt", "invitation.html"};

static const char *const variables[MAIL_VAR_COUNT + 1] = {
    "org_name",      "invitee_name",  "email", "email_shell", "inviter_name",
    "inviter_email", "invitation_id", "code",  "code_label",  "app_url",
    "expires_at",    "role",          NULL};
static const char *const sections[] = {"new", "existing", "owner", NULL};

static int in_list(const char *const *list, const char *s, size_t n) {
    for (; *list; list++)
        if (strlen(*list) == n && strncmp(*list, s, n) == 0)
            return 1;
    return 0;
}

/* Checks placeholders ({{var}}) and sections ({{#s}} ... {{/s}}, not nested in themselves). */
static int template_check(const char *name, const char *t, char *errstr, size_t errstr_size) {
    const char *open[8];
    size_t open_len[8];
    int depth = 0, line = 1;
    for (const char *p = t; *p; p++) {
        if (*p == '\n')
            line++;
        if (p[0] != '{' || p[1] != '{')
            continue;
        const char *end = strstr(p + 2, "}}");
        if (!end) {
            snprintf(errstr, errstr_size, "template %s:%d: \"{{\" without \"}}\"", name, line);
            return -1;
        }
        const char *tag = p + 2;
        size_t n = (size_t)(end - tag);
        if (n > 0 && (tag[0] == '#' || tag[0] == '/')) {
            if (!in_list(sections, tag + 1, n - 1)) {
                snprintf(errstr, errstr_size,
                         "template %s:%d: unknown section \"%.*s\" (new, existing, owner)", name, line,
                         (int)n - 1, tag + 1);
                return -1;
            }
            if (tag[0] == '#') {
                if (depth == 8) {
                    snprintf(errstr, errstr_size, "template %s:%d: sections nested too deep", name, line);
                    return -1;
                }
                open[depth] = tag + 1;
                open_len[depth++] = n - 1;
            } else if (depth == 0 || open_len[depth - 1] != n - 1 ||
                       strncmp(open[depth - 1], tag + 1, n - 1) != 0) {
                snprintf(errstr, errstr_size, "template %s:%d: \"{{/%.*s}}\" closes no open section", name,
                         line, (int)n - 1, tag + 1);
                return -1;
            } else {
                depth--;
            }
        } else if (!in_list(variables, tag, n)) {
            snprintf(errstr, errstr_size, "template %s:%d: unknown placeholder \"{{%.*s}}\"", name, line,
                     (int)n, tag);
            return -1;
        }
        p = end + 1;
    }
    if (depth) {
        snprintf(errstr, errstr_size, "template %s: section \"%.*s\" is not closed", name,
                 (int)open_len[depth - 1], open[depth - 1]);
        return -1;
    }
    return 0;
}

static char *read_file(const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    sb_t b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sb_addn(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    size_t len = b.n;
    char *s = sb_take(&b);
    if (bad || strlen(s) != len) {
        snprintf(errstr, errstr_size, "%s: cannot read (or holds a NUL byte)", path);
        free(s);
        return NULL;
    }
    return s;
}

mail_templates_t *mail_templates_load(const char *dir, int *overridden, char *errstr, size_t errstr_size) {
    mail_templates_t *t = xcalloc(1, sizeof(*t));
    *overridden = 0;
    for (int i = 0; i < T_COUNT; i++) {
        char path[4096];
        if (dir && *dir) {
            snprintf(path, sizeof(path), "%s/%s", dir, template_names[i]);
            FILE *probe = fopen(path, "r");
            if (probe) {
                fclose(probe);
                t->text[i] = read_file(path, errstr, errstr_size);
                if (!t->text[i])
                    goto fail;
                (*overridden)++;
            }
        }
        if (!t->text[i]) {
            for (const embedded_file_t *f = embedded_templates; f->name; f++)
                if (strcmp(f->name, template_names[i]) == 0)
                    t->text[i] = xstrdup(f->text);
            if (!t->text[i]) {
                snprintf(errstr, errstr_size, "built-in template %s is missing", template_names[i]);
                goto fail;
            }
        }
        if (template_check(template_names[i], t->text[i], errstr, errstr_size) != 0)
            goto fail;
    }
    if (!strstr(t->text[T_TEXT], "{{code}}") || !strstr(t->text[T_TEXT], "{{invitation_id}}")) {
        snprintf(errstr, errstr_size, "template invitation.txt must show {{code}} and {{invitation_id}}");
        goto fail;
    }
    if (dir && *dir && *overridden == 0) {
        snprintf(errstr, errstr_size,
                 "mail.templates: %s holds none of invitation.subject, invitation.txt, "
                 "invitation.html",
                 dir);
        goto fail;
    }
    return t;
fail:
    mail_templates_free(t);
    return NULL;
}

void mail_templates_free(mail_templates_t *t) {
    if (!t)
        return;
    for (int i = 0; i < T_COUNT; i++)
        free(t->text[i]);
    free(t);
}

static const char *value_of(const mail_values_t *vals, const char *tag, size_t n) {
    for (size_t i = 0; variables[i]; i++)
        if (strlen(variables[i]) == n && strncmp(variables[i], tag, n) == 0)
            return vals->v[i];
    return "";
}

static int section_on(const mail_values_t *vals, const char *tag, size_t n) {
    for (size_t i = 0; sections[i]; i++)
        if (strlen(sections[i]) == n && strncmp(sections[i], tag, n) == 0)
            return vals->section[i];
    return 0;
}

/* Expands a checked template. escape (HTML) applies to every value. A section tag alone on its line
 * takes its line break with it, so sections leave no blank lines behind. */
char *mail_template_expand(const char *t, const mail_values_t *vals, int html) {
    sb_t b = {0};
    int skip_depth = 0, depth = 0;
    for (const char *p = t; *p;) {
        if (p[0] == '{' && p[1] == '{') {
            const char *tag = p + 2, *end = strstr(tag, "}}");
            size_t n = (size_t)(end - tag);
            int at_line_start = p == t || p[-1] == '\n';
            p = end + 2;
            if (tag[0] == '#' || tag[0] == '/') {
                if (tag[0] == '#') {
                    depth++;
                    if (!skip_depth && !section_on(vals, tag + 1, n - 1))
                        skip_depth = depth;
                } else {
                    if (skip_depth == depth)
                        skip_depth = 0;
                    depth--;
                }
                if (at_line_start && *p == '\n')
                    p++;
                continue;
            }
            if (!skip_depth) {
                const char *v = value_of(vals, tag, n);
                if (html) {
                    char *e = mail_html_escape(v);
                    sb_add(&b, e);
                    free(e);
                } else {
                    sb_add(&b, v);
                }
            }
            continue;
        }
        if (!skip_depth)
            sb_addc(&b, *p);
        p++;
    }
    return sb_take(&b);
}

void mail_values_set(mail_values_t *vals, const char *name, char *value) {
    for (size_t i = 0; variables[i]; i++)
        if (strcmp(variables[i], name) == 0) {
            free(vals->v[i]);
            vals->v[i] = value;
            return;
        }
    abort();
}

void mail_values_free(mail_values_t *vals) {
    for (size_t i = 0; i < MAIL_VAR_COUNT; i++) {
        if (vals->v[i]) {
            sodium_memzero(vals->v[i], strlen(vals->v[i]));
            free(vals->v[i]);
            vals->v[i] = NULL;
        }
    }
}
