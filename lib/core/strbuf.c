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

char *sb_take(sb_t *b) {
    if (!b->s)
        sb_grow(b, 0);
    b->s[b->n] = '\0';
    char *s = b->s;
    memset(b, 0, sizeof(*b));
    return s;
}
