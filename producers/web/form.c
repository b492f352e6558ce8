/* raikoo-web: form bodies in, HTML out. Every value that reaches a page is escaped by html_esc. */
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "web.h"

static int hexval(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one urlencoded component (+ is a space, %XX a byte) into a new string; NULL when malformed or
 * not UTF-8 or it holds a NUL. */
static char *decode(const char *s, size_t n) {
    char *out = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int a = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int b = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            int h = a < 0 || b < 0 ? -1 : a * 16 + b;
            if (h <= 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char)h;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    if (!utf8_valid(out, o)) {
        free(out);
        return NULL;
    }
    return out;
}

int form_parse(web_req_t *r, const char *body, size_t len) {
    size_t cap = 0;
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (stop > p) {
            const char *ne = eq ? eq : stop;
            char *name = decode(p, (size_t)(ne - p));
            char *value = eq ? decode(eq + 1, (size_t)(stop - eq - 1)) : xstrdup("");
            if (!name || !value) {
                free(name);
                free(value);
                return -1;
            }
            r->fields = xgrow(r->fields, r->nfields + 1, &cap, sizeof(*r->fields), 8);
            r->fields[r->nfields].name = name;
            r->fields[r->nfields].value = value;
            r->nfields++;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

const char *form_get(const web_req_t *r, const char *name) {
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            return r->fields[i].value;
    return NULL;
}

void form_free(web_req_t *r) {
    for (size_t i = 0; i < r->nfields; i++) {
        /* Passwords and codes pass through here: wipe every value. */
        memset(r->fields[i].value, 0, strlen(r->fields[i].value));
        free(r->fields[i].name);
        free(r->fields[i].value);
    }
    free(r->fields);
    r->fields = NULL;
    r->nfields = 0;
}

void html_esc(sb_t *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
            case '&': sb_add(b, "&amp;"); break;
            case '<': sb_add(b, "&lt;"); break;
            case '>': sb_add(b, "&gt;"); break;
            case '"': sb_add(b, "&quot;"); break;
            case '\'': sb_add(b, "&#39;"); break;
            default: sb_addc(b, *s);
        }
    }
}

void page_begin(web_req_t *r, const char *title) {
    sb_t *b = &r->body;
    sb_add(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    html_esc(b, title);
    sb_add(b, " - Raikoo</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n</head>\n<body>\n"
              "<a class=\"skip\" href=\"#main\">Skip to content</a>\n<header>\n<p class=\"brand\"><a "
              "href=\"/\">Raikoo</a></p>\n");
    if (r->signed_in) {
        sb_add(b, "<nav aria-label=\"Account\"><a href=\"/orgs\">Organizations</a> <span>Signed in as ");
        html_esc(b, r->user.email);
        sb_add(b, "</span>\n<form method=\"post\" action=\"/signout\" class=\"inline\">");
        form_csrf(r, b);
        sb_add(b, "<button type=\"submit\">Sign out</button></form></nav>\n");
    }
    sb_add(b, "</header>\n<main id=\"main\" tabindex=\"-1\">\n");
    if (r->flash && *r->flash) {
        sb_add(b, "<p class=\"flash\" role=\"status\" id=\"flash\">");
        html_esc(b, r->flash);
        sb_add(b, "</p>\n");
    }
    sb_add(b, "<h1>");
    html_esc(b, title);
    sb_add(b, "</h1>\n");
}

void page_end(web_req_t *r, int status) {
    sb_add(&r->body, "</main>\n</body>\n</html>\n");
    r->status = status;
}

void page_message(web_req_t *r, int status, const char *title, const char *text) {
    page_begin(r, title);
    sb_add(&r->body, "<p id=\"message\" role=\"alert\">");
    html_esc(&r->body, text);
    sb_add(&r->body, "</p>\n<p><a href=\"/\">Back to the start</a></p>\n");
    page_end(r, status);
}

void form_csrf(web_req_t *r, sb_t *b) {
    if (!r->has_session)
        session_ensure(r);
    sb_add(b, "<input type=\"hidden\" name=\"csrf\" value=\"");
    html_esc(b, r->csrf);
    sb_add(b, "\">");
}

void web_redirect(web_req_t *r, const char *path) {
    free(r->location);
    r->location = xstrdup(path);
    r->status = 303;
}
