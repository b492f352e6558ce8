/* Text that comes from outside (messages, SMTP replies, database errors) is cut, copied and checked here,
 * and only here: one UTF-8-safe truncation for the whole code base, so that no buffer ever ends in half a
 * character (jansson refuses such a string, and json_pack then fails).
 *
 * Ownership: functions named *_dup return memory the caller frees with free(). They abort only when
 * memory runs out, never because of what the text holds. */
#ifndef RAIKOO_TEXT_H
#define RAIKOO_TEXT_H

#include <stdarg.h>
#include <stddef.h>

/* Decodes one UTF-8 sequence at s (n > 0 bytes left) into *cp; returns its length (1-4), or 0 when the
 * bytes there are not a valid, shortest-form, non-surrogate sequence. */
size_t utf8_decode(const unsigned char *s, size_t n, unsigned int *cp);

/* 1 when s[0..len) is valid UTF-8, else 0. */
int utf8_valid(const char *s, size_t len);

/* Number of characters (code points) in s[0..len), or -1 when it is not valid UTF-8. */
long utf8_count(const char *s, size_t len);

/* Columns s takes in a table: its characters, counted by their lead bytes (invalid bytes count as one). */
size_t utf8_width(const char *s);

/* s without the ASCII white space at both ends: trims the tail in place, returns a pointer into s. */
char *text_trim(char *s);

/* Length of the longest prefix of s[0..len) of at most max bytes that does not end inside a UTF-8
 * sequence (a sequence that is invalid anyway counts byte by byte). */
size_t utf8_prefix(const char *s, size_t len, size_t max);

/* Removes from the end of the NUL-terminated buf a UTF-8 sequence that was cut short (what snprintf
 * leaves when it truncates). */
void utf8_trim_tail(char *buf);

/* snprintf that, when it has to cut, cuts on a character boundary. Returns what vsnprintf returns. */
int text_printf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int text_vprintf(char *buf, size_t size, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* A copy of s[0..len) that is valid UTF-8 (every invalid byte becomes U+FFFD), at most max bytes long
 * (cut on a character boundary; "..." is appended within max when cut and max >= 3). NULL s gives "". */
char *utf8_clean_dup(const char *s, size_t len, size_t max);

/* malloc / strdup / strndup that abort on out-of-memory only. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Room for at least need elements of size bytes in array, whose capacity is *cap elements: doubles *cap
 * (from first when 0) until it is enough. Returns the array, perhaps moved; aborts on out-of-memory only.
 * The one way this code base grows an array:  v = xgrow(v, n + 1, &cap, sizeof(*v), 64); */
void *xgrow(void *array, size_t need, size_t *cap, size_t size, size_t first);

/* A map from text keys to a long each, by hashing: for what a batch looks up once per command (an id seen
 * before in the batch, an address an earlier command took), where a scan of everything before it would make
 * a batch's work grow with its square. The keys are borrowed: they must outlive the map. Zeroed memory
 * ({0}) is an empty map that compares keys exactly; strmap_init chooses. */
typedef struct strmap {
    const char **keys; /* cap slots, NULL when free */
    long *vals;
    size_t cap, n;
    int fold; /* keys compare without regard to ASCII case (UUIDs in text) */
} strmap_t;

void strmap_init(strmap_t *m, int fold);
/* key's value, or NULL when key is not in m. */
long *strmap_find(const strmap_t *m, const char *key);
/* key's value, added as 0 when key was not in m (*added says so when not NULL). The pointer is good until
 * the next strmap_add. */
long *strmap_add(strmap_t *m, const char *key, int *added);
void strmap_free(strmap_t *m);

#endif
