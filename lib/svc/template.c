/* The e-mail templates, per language (lib/templates, or the files of mail.templates): loading, checking,
 * choosing by locale, expanding. */
#include "mail_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "embedded.h"
#include "strbuf.h"
#include "text.h"

static const char *template_names[T_COUNT] = {"invitation.subject", "invitation.txt", "invitation.html",
                                              "reminder.subject",   "reminder.txt",   "reminder.html"};

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

/* The built-in file of a language: "<name>" for English, "<tag>.<name>" for the others. */
static const char *embedded_find(const char *tag, const char *name) {
    int en = strcmp(tag, "en") == 0;
    size_t tn = strlen(tag);
    for (const embedded_file_t *f = embedded_templates; f->name; f++) {
        if (en ? strcmp(f->name, name) == 0
               : strncmp(f->name, tag, tn) == 0 && f->name[tn] == '.' && strcmp(f->name + tn + 1, name) == 0)
            return f->text;
    }
    return NULL;
}

/* Reads dir/sub/name (sub may be NULL) when it exists: 1 read, 0 absent, -1 unreadable (errstr). */
static int override_read(const char *dir, const char *sub, const char *name, char **out, char *errstr,
                         size_t errstr_size) {
    char path[4096];
    if (sub)
        snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
    else
        snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *probe = fopen(path, "r");
    if (!probe)
        return 0;
    fclose(probe);
    *out = read_file(path, errstr, errstr_size);
    return *out ? 1 : -1;
}

static mail_template_set_t *set_find(mail_templates_t *t, const char *tag) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->sets[i].tag, tag) == 0)
            return &t->sets[i];
    return NULL;
}

static void set_add(mail_templates_t *t, const char *tag) {
    if (!locale_tag_valid(tag) || set_find(t, tag))
        return;
    t->sets = xrealloc(t->sets, (t->n + 1) * sizeof(*t->sets));
    memset(&t->sets[t->n], 0, sizeof(t->sets[t->n]));
    snprintf(t->sets[t->n].tag, sizeof(t->sets[t->n].tag), "%s", tag);
    t->n++;
}

/* The languages there are: English, each built-in "<tag>.<name>", each folder of dir named like a tag;
 * languages ("de") before regions ("de-AT"), so that a region's parent is complete before it. */
static void sets_gather(mail_templates_t *t, const char *dir) {
    set_add(t, "en");
    for (const embedded_file_t *f = embedded_templates; f->name; f++) {
        const char *dot = strchr(f->name, '.');
        char tag[LOCALE_TAG_MAX + 1];
        for (int i = 0; dot && i < T_COUNT; i++) {
            if (strcmp(dot + 1, template_names[i]) == 0 && (size_t)(dot - f->name) < sizeof(tag)) {
                snprintf(tag, sizeof(tag), "%.*s", (int)(dot - f->name), f->name);
                set_add(t, tag);
            }
        }
    }
    DIR *d = dir && *dir ? opendir(dir) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            set_add(t, e->d_name);
        closedir(d);
    }
    /* Stable: English first, then tags without a region, then with one. */
    for (size_t i = 1; i < t->n; i++) {
        for (size_t j = i + 1; j < t->n; j++) {
            if (strchr(t->sets[i].tag, '-') && !strchr(t->sets[j].tag, '-')) {
                mail_template_set_t tmp = t->sets[i];
                t->sets[i] = t->sets[j];
                t->sets[j] = tmp;
            }
        }
    }
}

/* What every set must hold beyond well-formed templates. */
static int set_check(const mail_template_set_t *s, char *errstr, size_t errstr_size) {
    for (int i = 0; i < T_COUNT; i++) {
        char label[64];
        /* English's are named as before languages came: "invitation.txt"; the others "de/invitation.txt". */
        if (strcmp(s->tag, "en") == 0)
            snprintf(label, sizeof(label), "%s", template_names[i]);
        else
            snprintf(label, sizeof(label), "%s/%s", s->tag, template_names[i]);
        if (template_check(label, s->text[i], errstr, errstr_size) != 0)
            return -1;
    }
    if (!strstr(s->text[T_TEXT], "{{code}}") || !strstr(s->text[T_TEXT], "{{invitation_id}}")) {
        snprintf(errstr, errstr_size, "template %s/invitation.txt must show {{code}} and {{invitation_id}}",
                 s->tag);
        return -1;
    }
    for (int i = R_SUBJECT; i <= R_HTML; i++) {
        if (strstr(s->text[i], "{{code}}") || strstr(s->text[i], "{{code_label}}")) {
            snprintf(errstr, errstr_size,
                     "template %s/%s: a reminder has no code (codes are stored only as hashes): remove "
                     "{{code}} and {{code_label}}",
                     s->tag, template_names[i]);
            return -1;
        }
    }
    return 0;
}

mail_templates_t *mail_templates_load(const char *dir, int *overridden, char *errstr, size_t errstr_size) {
    mail_templates_t *t = xcalloc(1, sizeof(*t));
    snprintf(t->default_tag, sizeof(t->default_tag), "en");
    *overridden = 0;
    int have_dir = dir && *dir;
    sets_gather(t, dir);
    for (size_t k = 0; k < t->n; k++) {
        mail_template_set_t *s = &t->sets[k];
        int en = k == 0;
        const mail_template_set_t *parent = NULL;
        if (!en) {
            char lang[LOCALE_TAG_MAX + 1];
            snprintf(lang, sizeof(lang), "%.*s", (int)strcspn(s->tag, "-"), s->tag);
            parent = strcmp(lang, s->tag) != 0 ? set_find(t, lang) : NULL;
            if (!parent)
                parent = &t->sets[0];
        }
        for (int i = 0; i < T_COUNT; i++) {
            int got = 0;
            if (have_dir) {
                got = override_read(dir, s->tag, template_names[i], &s->text[i], errstr, errstr_size);
                if (got == 0 && en)
                    got = override_read(dir, NULL, template_names[i], &s->text[i], errstr, errstr_size);
                if (got < 0)
                    goto fail;
                *overridden += got;
            }
            if (!got) {
                const char *builtin = embedded_find(s->tag, template_names[i]);
                if (builtin)
                    s->text[i] = xstrdup(builtin);
                else if (parent)
                    s->text[i] = xstrdup(parent->text[i]);
            }
            if (!s->text[i]) {
                snprintf(errstr, errstr_size, "built-in template %s is missing", template_names[i]);
                goto fail;
            }
        }
        if (set_check(s, errstr, errstr_size) != 0)
            goto fail;
    }
    if (have_dir && *overridden == 0) {
        snprintf(errstr, errstr_size,
                 "mail.templates: %s holds none of invitation.subject, invitation.txt, invitation.html, "
                 "reminder.subject, reminder.txt, reminder.html (nor in a language folder such as de/)",
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
    for (size_t k = 0; k < t->n; k++)
        for (int i = 0; i < T_COUNT; i++)
            free(t->sets[k].text[i]);
    free(t->sets);
    free(t);
}

int mail_templates_set_default(mail_templates_t *t, const char *tag) {
    if (!locale_tag_valid(tag))
        return -1;
    snprintf(t->default_tag, sizeof(t->default_tag), "%s", tag);
    return 0;
}

/* The set of tag, else of its language; NULL when neither is loaded. */
static const mail_template_set_t *set_lookup(const mail_templates_t *t, const char *tag) {
    if (!tag || !locale_tag_valid(tag))
        return NULL;
    size_t lang = strcspn(tag, "-");
    const mail_template_set_t *by_lang = NULL;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->sets[i].tag, tag) == 0)
            return &t->sets[i];
        if (strlen(t->sets[i].tag) == lang && strncmp(t->sets[i].tag, tag, lang) == 0)
            by_lang = &t->sets[i];
    }
    return by_lang;
}

const mail_template_set_t *mail_templates_set_for(const mail_templates_t *t, const char *locale) {
    /* A job's locale that is not loaded falls back to English, not to mail.locale. */
    const mail_template_set_t *s = set_lookup(t, locale ? locale : t->default_tag);
    return s ? s : &t->sets[0];
}

const char *mail_templates_locale(const mail_templates_t *t, const char *locale) {
    return mail_templates_set_for(t, locale)->tag;
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
