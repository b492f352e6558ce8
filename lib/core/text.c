/* UTF-8-safe cutting, checking and copying of text; allocation that fails only on out-of-memory. */
#include "text.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

size_t utf8_decode(const unsigned char *s, size_t n, unsigned int *cp) {
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    unsigned int c, min;
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

long utf8_count(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    long count = 0;
    while (len > 0) {
        unsigned int cp;
        size_t l = utf8_decode(p, len, &cp);
        if (l == 0)
            return -1;
        p += l, len -= l, count++;
    }
    return count;
}

size_t utf8_width(const char *s) {
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

char *text_trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int utf8_valid(const char *s, size_t len) {
    return utf8_count(s, len) >= 0;
}

size_t utf8_prefix(const char *s, size_t len, size_t max) {
    if (len <= max)
        return len;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < max) {
        unsigned int cp;
        size_t l = utf8_decode(p + i, len - i, &cp);
        if (l == 0)
            l = 1; /* an invalid byte stands alone */
        if (i + l > max)
            break;
        i += l;
    }
    return i;
}

void utf8_trim_tail(char *buf) {
    size_t n = strlen(buf);
    /* Look back at most 3 bytes for the start of the last sequence. */
    size_t start = n;
    for (size_t k = 0; k < 4 && start > 0; k++) {
        unsigned char c = (unsigned char)buf[start - 1];
        start--;
        if ((c & 0xc0) != 0x80)
            break;
    }
    if (start == n)
        return;
    unsigned int cp;
    unsigned char lead = (unsigned char)buf[start];
    if (lead < 0x80)
        return;
    if (utf8_decode((const unsigned char *)buf + start, n - start, &cp) == n - start)
        return; /* complete */
    size_t want = (lead & 0xe0) == 0xc0 ? 2 : (lead & 0xf0) == 0xe0 ? 3 : (lead & 0xf8) == 0xf0 ? 4 : 0;
    if (want > n - start)
        buf[start] = '\0'; /* cut short: drop the partial character */
}

int text_vprintf(char *buf, size_t size, const char *fmt, va_list ap) {
    if (size == 0)
        return vsnprintf(buf, size, fmt, ap);
    int n = vsnprintf(buf, size, fmt, ap);
    if (n >= 0 && (size_t)n >= size)
        utf8_trim_tail(buf);
    return n;
}

int text_printf(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = text_vprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

char *utf8_clean_dup(const char *s, size_t len, size_t max) {
    if (!s)
        s = "", len = 0;
    /* Worst case: every byte becomes a 3-byte U+FFFD. */
    char *out = xmalloc(len * 3 + 4);
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    int cut = 0;
    while (i < len) {
        unsigned int cp;
        size_t l = utf8_decode(p + i, len - i, &cp);
        const char *add = (const char *)p + i;
        size_t addn = l;
        if (l == 0)
            add = "\xef\xbf\xbd", addn = 3, l = 1;
        if (o + addn > max) {
            cut = 1;
            break;
        }
        memcpy(out + o, add, addn);
        o += addn, i += l;
    }
    if (cut && max >= 3) {
        while (o + 3 > max && o > 0) {
            /* back off whole characters until "..." fits */
            o--;
            while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80)
                o--;
        }
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static void *oom(void) {
    fputs("out of memory\n", stderr);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    return p ? p : oom();
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : oom();
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom();
}

char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    return d ? d : oom();
}

char *xstrndup(const char *s, size_t n) {
    char *d = strndup(s ? s : "", n);
    return d ? d : oom();
}

void *xgrow(void *array, size_t need, size_t *cap, size_t size, size_t first) {
    if (need <= *cap && array)
        return array;
    size_t c = *cap ? *cap : (first ? first : 1);
    while (c < need) {
        if (c > ((size_t)-1) / 2 / (size ? size : 1))
            oom();
        c *= 2;
    }
    *cap = c;
    return xrealloc(array, c * (size ? size : 1));
}

void strmap_init(strmap_t *m, int fold) {
    memset(m, 0, sizeof(*m));
    m->fold = fold != 0;
}

/* FNV-1a over the key's bytes (folded to lower case when m->fold). */
static size_t strmap_hash(const strmap_t *m, const char *key) {
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= m->fold ? (unsigned char)tolower(*p) : *p;
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 32));
}

/* The slot of key, or the free slot where it would go (m->cap > 0: a power of two, never full). */
static size_t strmap_slot(const strmap_t *m, const char *key) {
    size_t i = strmap_hash(m, key) & (m->cap - 1);
    while (m->keys[i] && (m->fold ? strcasecmp(m->keys[i], key) : strcmp(m->keys[i], key)) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

long *strmap_find(const strmap_t *m, const char *key) {
    if (m->n == 0)
        return NULL;
    size_t i = strmap_slot(m, key);
    return m->keys[i] ? &m->vals[i] : NULL;
}

long *strmap_add(strmap_t *m, const char *key, int *added) {
    if (2 * (m->n + 1) > m->cap) { /* at most half full: short probes */
        strmap_t bigger = {.cap = m->cap ? 2 * m->cap : 16, .fold = m->fold};
        bigger.keys = xcalloc(bigger.cap, sizeof(*bigger.keys));
        bigger.vals = xcalloc(bigger.cap, sizeof(*bigger.vals));
        for (size_t j = 0; j < m->cap; j++) {
            if (!m->keys[j])
                continue;
            size_t i = strmap_slot(&bigger, m->keys[j]);
            bigger.keys[i] = m->keys[j];
            bigger.vals[i] = m->vals[j];
        }
        bigger.n = m->n;
        free(m->keys);
        free(m->vals);
        *m = bigger;
    }
    size_t i = strmap_slot(m, key);
    if (added)
        *added = !m->keys[i];
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->vals[i] = 0;
        m->n++;
    }
    return &m->vals[i];
}

void strmap_free(strmap_t *m) {
    free(m->keys);
    free(m->vals);
    int fold = m->fold;
    memset(m, 0, sizeof(*m));
    m->fold = fold;
}
