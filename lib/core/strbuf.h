/* A growing string. Start with sb_t b = {0}; every sb_add* appends (keeping b.s NUL-terminated) and aborts
 * on out-of-memory only; sb_take hands the string over. */
#ifndef RAIKOO_STRBUF_H
#define RAIKOO_STRBUF_H

#include <stddef.h>

typedef struct sb {
    char *s;       /* owned by the builder until sb_take; NULL while nothing was added */
    size_t n, cap; /* length, bytes allocated */
} sb_t;

/* Room for more bytes (and the NUL) after what b holds. */
void sb_grow(sb_t *b, size_t more);
void sb_addn(sb_t *b, const char *s, size_t n);
void sb_add(sb_t *b, const char *s);
void sb_addc(sb_t *b, char c);
void sb_printf(sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* s[0..n) (valid UTF-8, NULs allowed) as a JSON string, quotes included: '"', '\\' and the control
 * characters escaped (\b \f \n \r \t, the others \u00XX), every other byte as is. Byte for byte what
 * jansson writes without JSON_ENSURE_ASCII (lib/msg/event.c relies on it). */
void sb_add_json_string(sb_t *b, const char *s, size_t n);

/* The string, never NULL; the caller owns it (free()). b is empty again. */
char *sb_take(sb_t *b);

#endif
