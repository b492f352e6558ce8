/* A growing string: what every text this code base assembles (mails, SQL literals, shell words) is built in. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

void sb_grow(sb_t *b, size_t more) {
    if (b->n + more + 1 <= b->cap)
        return;
    b->s = xgrow(b->s, b->n + more + 1, &b->cap, 1, 256);
}

void sb_addn(sb_t *b, const char *s, size_t n) {
    sb_grow(b, n);
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

void sb_add(sb_t *b, const char *s) {
    sb_addn(b, s, strlen(s));
}

void sb_addc(sb_t *b, char c) {
    sb_addn(b, &c, 1);
}

void sb_printf(sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_printf(sb_t *b, const char *fmt, ...) {
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

void sb_add_json_string(sb_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    sb_grow(b, n + 2);
    b->s[b->n++] = '"';
    size_t run = 0; /* s[run..i) is copied as it is, in one piece */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_addn(b, s + run, i - run);
        run = i + 1;
        const char *short_form = c == '"'    ? "\\\""
                                 : c == '\\' ? "\\\\"
                                 : c == '\b' ? "\\b"
                                 : c == '\f' ? "\\f"
                                 : c == '\n' ? "\\n"
                                 : c == '\r' ? "\\r"
                                 : c == '\t' ? "\\t"
                                             : NULL;
        if (short_form) {
            sb_addn(b, short_form, 2);
        } else {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_addn(b, u, sizeof(u));
        }
    }
    sb_addn(b, s + run, n - run);
    sb_addc(b, '"');
}

char *sb_take(sb_t *b) {
    if (!b->s)
        sb_grow(b, 0);
    b->s[b->n] = '\0';
    char *s = b->s;
    memset(b, 0, sizeof(*b));
    return s;
}
