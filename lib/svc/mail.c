/* Invitation e-mails: the mail job contract, the templates and rendering a job into an RFC 5322 MIME
 * message (multipart/alternative, text and HTML), safe against header injection. */
#include "mail.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "embedded.h"
#include "event.h"
#include "secret.h"

/* ---- a growing string ---- */

typedef struct sb {
    char *s;
    size_t n, cap;
} sb_t;

static void sb_grow(sb_t *b, size_t more) {
    if (b->n + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1)
        cap *= 2;
    b->s = realloc(b->s, cap);
    if (!b->s)
        abort();
    b->cap = cap;
}

static void sb_addn(sb_t *b, const char *s, size_t n) {
    sb_grow(b, n);
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_add(sb_t *b, const char *s) {
    sb_addn(b, s, strlen(s));
}

static void sb_addc(sb_t *b, char c) {
    sb_addn(b, &c, 1);
}

static void sb_printf(sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    sb_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

/* The string, never NULL; the caller owns it. */
static char *sb_take(sb_t *b) {
    if (!b->s)
        sb_grow(b, 0);
    b->s[b->n] = '\0';
    char *s = b->s;
    memset(b, 0, sizeof(*b));
    return s;
}

static char *dup_or_die(const char *s) {
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* ---- text cleaning and encodings ---- */

/* Decodes one UTF-8 sequence at s (n bytes left); returns its length, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2, c = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, c = s[0] & 0x0f, min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, c = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

char *mail_clean(const char *text) {
    sb_t b = {0};
    const unsigned char *p = (const unsigned char *)(text ? text : "");
    size_t n = strlen((const char *)p);
    while (n > 0) {
        uint32_t cp;
        size_t len = utf8_decode(p, n, &cp);
        if (len == 0) {
            sb_add(&b, "\xef\xbf\xbd"); /* U+FFFD */
            len = 1;
        } else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0x2029) {
            /* A line break or other control character in a name must never start a header line or a
             * line of the body that looks like ours. */
            sb_addc(&b, ' ');
        } else {
            sb_addn(&b, (const char *)p, len);
        }
        p += len;
        n -= len;
    }
    char *s = sb_take(&b);
    size_t start = 0, end = strlen(s);
    while (s[start] == ' ')
        start++;
    while (end > start && s[end - 1] == ' ')
        end--;
    memmove(s, s + start, end - start);
    s[end - start] = '\0';
    return s;
}

static int printable_ascii(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return 0;
    return 1;
}

/* Appends text as RFC 2047 encoded-words, starting at column col; every word after the first goes on a
 * folded line of its own (CRLF SP), each sized to keep lines within 78 characters. Returns the column
 * after the last word. Each word carries whole UTF-8 characters only. */
static size_t add_encoded_words(sb_t *b, const char *text, size_t col) {
    const unsigned char *p = (const unsigned char *)text;
    size_t n = strlen(text);
    int first = 1;
    while (n > 0 || first) {
        if (!first) {
            sb_add(b, "\r\n ");
            col = 1;
        }
        /* "=?UTF-8?B?" + base64 + "?=": 12 characters around 4 per 3 bytes; a word is at most 75
         * characters (RFC 2047) and its line at most 78 (RFC 5322). */
        size_t limit = col < 78 ? 78 - col : 0;
        if (limit > 75)
            limit = 75;
        size_t room = limit >= 12 + 8 ? limit - 12 : 8;
        size_t max_bytes = room / 4 * 3;
        size_t take = 0;
        size_t after_space = 0; /* a cut right after a space, so that readers that put a space between
                                 * words (against RFC 2047) still cut between words */
        while (take < n) {
            size_t len = 1;
            while (take + len < n && (p[take + len] & 0xc0) == 0x80)
                len++;
            if (take + len > max_bytes && take > 0)
                break;
            take += len;
            if (p[take - 1] == ' ')
                after_space = take;
        }
        if (take < n && after_space > take / 2)
            take = after_space;
        char b64[sodium_base64_ENCODED_LEN(80, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(b64, sizeof(b64), p, take, sodium_base64_VARIANT_ORIGINAL);
        sb_printf(b, "=?UTF-8?B?%s?=", b64);
        col += 12 + strlen(b64);
        p += take;
        n -= take;
        first = 0;
    }
    return col;
}

/* Longest word (run of non-spaces) of s. */
static size_t longest_word(const char *s) {
    size_t best = 0;
    while (*s) {
        size_t n = strcspn(s, " ");
        if (n > best)
            best = n;
        s += n;
        s += strspn(s, " ");
    }
    return best;
}

/* Appends clean printable-ASCII text with single spaces, folded (CRLF before a space) so that no line
 * grows past 78 characters, the first line starting at column col. Words must be at most 77 - col. */
static void add_folded(sb_t *b, const char *text, size_t col) {
    const char *p = text;
    int first = 1;
    while (*p) {
        size_t n = strcspn(p, " ");
        if (!first && col + 1 + n > 78) {
            sb_add(b, "\r\n");
            col = 0;
        }
        if (!first) {
            sb_addc(b, ' ');
            col++;
        }
        sb_addn(b, p, n);
        col += n;
        p += n;
        p += strspn(p, " ");
        first = 0;
    }
}

/* text with every run of spaces made one space: a header never holds a line of spaces only, and
 * folding has a place between any two words. */
static char *single_spaced(const char *text) {
    sb_t b = {0};
    for (const char *p = text; *p; p++)
        if (*p != ' ' || (b.n > 0 && b.s[b.n - 1] != ' '))
            sb_addc(&b, *p);
    while (b.n > 0 && b.s[b.n - 1] == ' ')
        b.s[--b.n] = '\0';
    return sb_take(&b);
}

/* Plain ASCII that can stay as it is (folded at spaces): printable, no "=?" (mail readers take that for
 * the start of an encoded-word), and no word too long to fold onto a line of its own. */
static int plain_header_ok(const char *text, size_t col) {
    return printable_ascii(text) && !strstr(text, "=?") && longest_word(text) + col <= 77;
}

char *mail_header_text(const char *clean) {
    sb_t b = {0};
    char *one = single_spaced(clean);
    if (plain_header_ok(one, 9 /* "Subject: " */))
        add_folded(&b, one, 9);
    else
        add_encoded_words(&b, one, 9);
    free(one);
    return sb_take(&b);
}

char *mail_mailbox(const char *clean_name, const char *addr) {
    sb_t b = {0};
    char *one = single_spaced(clean_name ? clean_name : "");
    size_t col;
    if (!*one) {
        sb_add(&b, addr);
        free(one);
        return sb_take(&b);
    }
    /* Plain ASCII: a quoted-string, folded at its spaces when long (RFC 5322 allows FWS inside one). Words
     * are checked with room for a quote and escapes on either side. */
    if (plain_header_ok(one, 6 + 4)) {
        sb_t q = {0};
        sb_addc(&q, '"');
        for (const char *p = one; *p; p++) {
            if (*p == '"' || *p == '\\')
                sb_addc(&q, '\\');
            sb_addc(&q, *p);
        }
        sb_addc(&q, '"');
        char *quoted = sb_take(&q);
        add_folded(&b, quoted, 6 /* "From: " */);
        free(quoted);
        const char *last = strrchr(b.s, '\n');
        col = last ? strlen(last + 1) : 6 + b.n;
    } else {
        col = add_encoded_words(&b, one, 6 /* "From: " */);
    }
    free(one);
    /* The address on a folded line of its own when it would not fit (an address is at most 254
     * characters: that line stays far below 998). */
    if (col + 3 + strlen(addr) > 78)
        sb_add(&b, "\r\n");
    sb_printf(&b, " <%s>", addr);
    return sb_take(&b);
}

char *mail_qp_encode(const char *text) {
    sb_t b = {0};
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            len--;
        size_t col = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)line[i];
            char tok[4];
            int last = i + 1 == len;
            /* Encoded: non-ASCII, '=', controls, space or tab at the end of a line (transports strip
             * it), and a leading '.' or "From " which some transports alter. */
            int plain = ch >= 33 && ch <= 126 && ch != '=';
            if ((ch == ' ' || ch == '\t') && !last)
                plain = 1;
            if (col == 0 && (ch == '.' || (ch == 'F' && strncmp(line + i, "From ", 5) == 0)))
                plain = 0;
            if (plain)
                snprintf(tok, sizeof(tok), "%c", ch);
            else
                snprintf(tok, sizeof(tok), "=%02X", ch);
            size_t tlen = strlen(tok);
            /* A soft break keeps lines at 76 including the '='. */
            if (col + tlen > 75) {
                sb_add(&b, "=\r\n");
                col = 0;
                /* The next line starts here: what a leading '.' or "From " would suffer applies. */
                if (ch == '.' || (ch == 'F' && strncmp(line + i, "From ", 5) == 0)) {
                    snprintf(tok, sizeof(tok), "=%02X", ch);
                    tlen = 3;
                }
            }
            sb_add(&b, tok);
            col += tlen;
        }
        sb_add(&b, "\r\n");
        if (!eol)
            break;
        line = eol + 1;
    }
    return sb_take(&b);
}

char *mail_html_escape(const char *text) {
    sb_t b = {0};
    for (const char *p = text; *p; p++) {
        switch (*p) {
        case '&': sb_add(&b, "&amp;"); break;
        case '<': sb_add(&b, "&lt;"); break;
        case '>': sb_add(&b, "&gt;"); break;
        case '"': sb_add(&b, "&quot;"); break;
        case '\'': sb_add(&b, "&#39;"); break;
        default: sb_addc(&b, *p);
        }
    }
    return sb_take(&b);
}

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
        char *raw = strndup(spec, (size_t)(lt - spec));
        if (!raw)
            abort();
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

/* ---- mail jobs ---- */

/* Parses RFC 3339 ("2026-12-04T20:00:00.123Z", "...+02:00") into a time. */
static int rfc3339_parse(const char *s, time_t *out) {
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int consumed = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &consumed) != 6 ||
        consumed != 19)
        return -1;
    const char *p = s + consumed;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm, n = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || n != 5)
            return -1;
        offset = (hh * 60L + mm) * 60L * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = timegm(&tm) - offset;
    return 0;
}

static const char *get_str(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The envelope and data keys the schema (schemas/mail/InvitationEmail.schema.json) allows: any other key
 * makes the job malformed there, and so here. */
static const char *const envelope_keys[] = {"specversion", "id", "source", "type", "time", "datacontenttype",
                                            "actorid", "correlationid", "data", NULL};
static const char *const data_keys[] = {"job_id", "invitation_id", "org_id", "org_name", "kind", "email", "name",
                                        "inviter_name", "inviter_email", "grant_owner", "expires_at", "sealed_code",
                                        NULL};

/* The first key of obj not in allowed, or NULL. */
static const char *unknown_key(json_t *obj, const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        (void)v;
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0)
            a++;
        if (!*a)
            return key;
    }
    return NULL;
}

/* The schema's sealed_code: 80 characters of the original base64 alphabet. */
static int sealed_code_valid(const char *s) {
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
    return n == 80 && s[n] == '\0';
}

int mail_job_parse(const char *buf, size_t len, mail_job_t *job, int *identified, char *errstr,
                   size_t errstr_size) {
    memset(job, 0, sizeof(*job));
    *identified = 0;
    json_error_t jerr;
    job->root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!job->root || !json_is_object(job->root)) {
        snprintf(errstr, errstr_size, "not a JSON object");
        return -1;
    }
    json_t *data = json_object_get(job->root, "data");
    const char *type = get_str(job->root, "type");
    if (!json_is_object(data)) {
        snprintf(errstr, errstr_size, "no data object");
        return -1;
    }
    job->job_id = get_str(data, "job_id");
    job->invitation_id = get_str(data, "invitation_id");
    job->org_id = get_str(data, "org_id");
    if (!uuid_valid(job->job_id) || !uuid_valid(job->invitation_id) || !uuid_valid(job->org_id)) {
        snprintf(errstr, errstr_size, "data.job_id, data.invitation_id and data.org_id must be UUIDs");
        return -1;
    }
    *identified = 1;
    /* From here on every rule of the JSON Schema holds here too (tests/test_mail_contract.py compares the
     * two verdicts): the job names its invitation, so a failure is recorded against it. Keys are named in
     * errstr, never their values (a value may be anything a producer wrote). */
    job->correlationid = get_str(job->root, "correlationid");
    job->actorid = get_str(job->root, "actorid");
    int in_envelope = unknown_key(job->root, envelope_keys) != NULL;
    if (in_envelope || unknown_key(data, data_keys)) {
        snprintf(errstr, errstr_size, "a key the mail job schema does not allow (in %s)",
                 in_envelope ? "the envelope" : "data");
        return -1;
    }
    if (!type || strcmp(type, MAIL_JOB_TYPE) != 0) {
        snprintf(errstr, errstr_size, "type is not %s", MAIL_JOB_TYPE);
        return -1;
    }
    const char *id = get_str(job->root, "id");
    if (!id || strcmp(id, job->job_id) != 0) {
        snprintf(errstr, errstr_size, "id and data.job_id differ");
        return -1;
    }
    const char *spec = get_str(job->root, "specversion"), *source = get_str(job->root, "source"),
               *time_s = get_str(job->root, "time"), *ctype = get_str(job->root, "datacontenttype");
    if (!spec || strcmp(spec, "1.0") != 0 || !source || strcmp(source, "/raikoo/command-worker") != 0 || !ctype ||
        strcmp(ctype, "application/json") != 0) {
        snprintf(errstr, errstr_size,
                 "specversion must be 1.0, source /raikoo/command-worker, datacontenttype application/json");
        return -1;
    }
    if (!event_time_valid(time_s)) {
        snprintf(errstr, errstr_size, "time is not an RFC 3339 time");
        return -1;
    }
    if (!uuid_valid(job->correlationid) ||
        (json_object_get(job->root, "actorid") && !uuid_valid(job->actorid))) {
        snprintf(errstr, errstr_size, "correlationid (required) and actorid (optional) must be UUIDs");
        return -1;
    }
    job->org_name = get_str(data, "org_name");
    job->kind = get_str(data, "kind");
    job->name = get_str(data, "name");
    job->inviter_name = get_str(data, "inviter_name");
    job->inviter_email = get_str(data, "inviter_email");
    job->expires_at = get_str(data, "expires_at");
    job->sealed_code = get_str(data, "sealed_code");
    const char *email = get_str(data, "email");
    json_t *owner = json_object_get(data, "grant_owner");
    if (!job->org_name || !job->kind || !email || !job->expires_at || !job->sealed_code || !job->name ||
        !job->inviter_name || !job->inviter_email || !json_is_boolean(owner)) {
        snprintf(errstr, errstr_size, "data lacks one of org_name, kind, email, name, inviter_name, inviter_email, "
                                      "expires_at, sealed_code (strings) or grant_owner (a boolean)");
        return -1;
    }
    if (!*job->org_name) {
        snprintf(errstr, errstr_size, "data.org_name is empty");
        return -1;
    }
    if (strcmp(job->kind, "new") != 0 && strcmp(job->kind, "existing") != 0) {
        snprintf(errstr, errstr_size, "data.kind must be new or existing");
        return -1;
    }
    job->is_new = strcmp(job->kind, "new") == 0;
    job->grant_owner = json_is_true(owner);
    char why[256];
    if (email_normalize(email, job->email, why, sizeof(why)) != 0) {
        snprintf(errstr, errstr_size, "data.email: %s", why);
        return -1;
    }
    if (strcmp(email, job->email) != 0) {
        snprintf(errstr, errstr_size, "data.email is not in normal form (trimmed, domain in lower case)");
        return -1;
    }
    if (!event_time_valid(job->expires_at) || rfc3339_parse(job->expires_at, &job->expires) != 0) {
        snprintf(errstr, errstr_size, "data.expires_at is not an RFC 3339 time");
        return -1;
    }
    if (!sealed_code_valid(job->sealed_code)) {
        snprintf(errstr, errstr_size, "data.sealed_code is not 80 characters of base64");
        return -1;
    }
    return 0;
}

void mail_job_free(mail_job_t *job) {
    json_decref(job->root);
    memset(job, 0, sizeof(*job));
}

/* ---- templates ---- */

enum { T_SUBJECT, T_TEXT, T_HTML, T_COUNT };
static const char *template_names[T_COUNT] = {"invitation.subject", "invitation.txt", "invitation.html"};

struct mail_templates {
    char *text[T_COUNT];
};

static const char *variables[] = {"org_name",      "invitee_name", "email",      "email_shell", "inviter_name",
                                  "inviter_email", "invitation_id", "code",      "code_label",  "app_url",
                                  "expires_at",    "role",          NULL};
static const char *sections[] = {"new", "existing", "owner", NULL};

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
                snprintf(errstr, errstr_size, "template %s:%d: unknown section \"%.*s\" (new, existing, owner)",
                         name, line, (int)n - 1, tag + 1);
                return -1;
            }
            if (tag[0] == '#') {
                if (depth == 8) {
                    snprintf(errstr, errstr_size, "template %s:%d: sections nested too deep", name, line);
                    return -1;
                }
                open[depth] = tag + 1;
                open_len[depth++] = n - 1;
            } else if (depth == 0 || open_len[depth - 1] != n - 1 || strncmp(open[depth - 1], tag + 1, n - 1) != 0) {
                snprintf(errstr, errstr_size, "template %s:%d: \"{{/%.*s}}\" closes no open section", name, line,
                         (int)n - 1, tag + 1);
                return -1;
            } else {
                depth--;
            }
        } else if (!in_list(variables, tag, n)) {
            snprintf(errstr, errstr_size, "template %s:%d: unknown placeholder \"{{%.*s}}\"", name, line, (int)n, tag);
            return -1;
        }
        p = end + 1;
    }
    if (depth) {
        snprintf(errstr, errstr_size, "template %s: section \"%.*s\" is not closed", name, (int)open_len[depth - 1],
                 open[depth - 1]);
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
    mail_templates_t *t = calloc(1, sizeof(*t));
    if (!t)
        abort();
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
                    t->text[i] = dup_or_die(f->text);
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
        snprintf(errstr, errstr_size, "mail.templates: %s holds none of invitation.subject, invitation.txt, "
                                      "invitation.html", dir);
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

/* The values a template sees, each already clean (no control characters). */
typedef struct values {
    char *v[sizeof(variables) / sizeof(variables[0])];
    int section[3]; /* new, existing, owner */
} values_t;

static const char *value_of(const values_t *vals, const char *tag, size_t n) {
    for (size_t i = 0; variables[i]; i++)
        if (strlen(variables[i]) == n && strncmp(variables[i], tag, n) == 0)
            return vals->v[i];
    return "";
}

static int section_on(const values_t *vals, const char *tag, size_t n) {
    for (size_t i = 0; sections[i]; i++)
        if (strlen(sections[i]) == n && strncmp(sections[i], tag, n) == 0)
            return vals->section[i];
    return 0;
}

/* Expands a checked template. escape (HTML) applies to every value. A section tag alone on its line
 * takes its line break with it, so sections leave no blank lines behind. */
static char *template_expand(const char *t, const values_t *vals, int html) {
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

static void set_value(values_t *vals, const char *name, char *value) {
    for (size_t i = 0; variables[i]; i++)
        if (strcmp(variables[i], name) == 0) {
            free(vals->v[i]);
            vals->v[i] = value;
            return;
        }
    abort();
}

/* The address for a shell command line: quoted when it holds characters a shell would read. */
static char *shell_word(const char *s) {
    if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._+-") == strlen(s))
        return dup_or_die(s);
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

char *mail_render(const mail_templates_t *t, const mail_from_t *from, const char *app_url, const mail_job_t *job,
                  const char *code, time_t now, char *errstr, size_t errstr_size) {
    char shown[CODE_DISPLAY_LEN + 1], when[64], date[64];
    if (strlen(code) != CODE_LEN) {
        snprintf(errstr, errstr_size, "the code is not %d characters", CODE_LEN);
        return NULL;
    }
    code_display(code, shown);
    struct tm tm;
    gmtime_r(&job->expires, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

    values_t vals;
    memset(&vals, 0, sizeof(vals));
    char *name = mail_clean(job->name);
    char *inviter = mail_clean(job->inviter_name);
    char *inviter_email = mail_clean(job->inviter_email);
    set_value(&vals, "org_name", mail_clean(job->org_name));
    set_value(&vals, "invitee_name", dup_or_die(*name ? name : job->email));
    set_value(&vals, "email", dup_or_die(job->email));
    set_value(&vals, "email_shell", shell_word(job->email));
    set_value(&vals, "inviter_name", dup_or_die(*inviter ? inviter : *inviter_email ? inviter_email : "A Raikoo user"));
    set_value(&vals, "inviter_email", dup_or_die(inviter_email));
    set_value(&vals, "invitation_id", mail_clean(job->invitation_id));
    set_value(&vals, "code", dup_or_die(shown));
    set_value(&vals, "code_label", dup_or_die(job->is_new ? "One-time password" : "Confirmation code"));
    set_value(&vals, "app_url", mail_clean(app_url ? app_url : ""));
    set_value(&vals, "expires_at", dup_or_die(when));
    set_value(&vals, "role", dup_or_die(job->grant_owner ? "owner" : "member"));
    vals.section[0] = job->is_new;
    vals.section[1] = !job->is_new;
    vals.section[2] = job->grant_owner;

    char *subject_raw = template_expand(t->text[T_SUBJECT], &vals, 0);
    char *subject_clean = mail_clean(subject_raw); /* one line, whatever the template holds */
    char *subject = mail_header_text(subject_clean);
    char *to = mail_mailbox(name, job->email);
    char *text = template_expand(t->text[T_TEXT], &vals, 0);
    char *html = template_expand(t->text[T_HTML], &vals, 1);
    char *text_qp = mail_qp_encode(text);
    char *html_qp = mail_qp_encode(html);

    unsigned char rnd[12];
    char boundary[64], hex[sizeof(rnd) * 2 + 1];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    /* "=_" cannot occur in quoted-printable text, so the boundary never collides with a part. */
    snprintf(boundary, sizeof(boundary), "=_raikoo_%s", hex);

    sb_t b = {0};
    sb_printf(&b, "Date: %s\r\n", date);
    sb_printf(&b, "Message-ID: <%s@%s>\r\n", job->job_id, from->domain);
    sb_printf(&b, "From: %s\r\n", from->header);
    sb_printf(&b, "To: %s\r\n", to);
    sb_printf(&b, "Subject: %s\r\n", subject);
    sb_add(&b, "MIME-Version: 1.0\r\n");
    sb_printf(&b, "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n", boundary);
    sb_add(&b, "\r\n");
    sb_add(&b, "This is a multi-part message in MIME format.\r\n");
    sb_printf(&b, "\r\n--%s\r\n", boundary);
    sb_add(&b, "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    sb_add(&b, text_qp);
    sb_printf(&b, "\r\n--%s\r\n", boundary);
    sb_add(&b, "Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    sb_add(&b, html_qp);
    sb_printf(&b, "\r\n--%s--\r\n", boundary);

    for (size_t i = 0; variables[i]; i++) {
        sodium_memzero(vals.v[i], strlen(vals.v[i]));
        free(vals.v[i]);
    }
    /* The code was in these buffers: wipe before freeing. */
    sodium_memzero(text, strlen(text));
    sodium_memzero(html, strlen(html));
    sodium_memzero(text_qp, strlen(text_qp));
    sodium_memzero(html_qp, strlen(html_qp));
    sodium_memzero(shown, sizeof(shown));
    free(name);
    free(inviter);
    free(inviter_email);
    free(subject_raw);
    free(subject_clean);
    free(subject);
    free(to);
    free(text);
    free(html);
    free(text_qp);
    free(html_qp);
    return sb_take(&b);
}
