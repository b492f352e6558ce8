/* Shared by the libFuzzer harnesses of tests/fuzz: a failed invariant aborts with a message, which libFuzzer
 * reports as a crash and saves the input that caused it. */
#ifndef RAIKOO_FUZZ_H
#define RAIKOO_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond, ...)                                                                               \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "\ninvariant broken at %s:%d: ", __FILE__, __LINE__);                            \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* A NUL-terminated copy of the input (free()); bytes after an embedded NUL are what a C string API sees. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Error text must be a terminated, valid UTF-8 string within its buffer. */
static inline void fuzz_check_text(const char *what, const char *buf, size_t size) {
    size_t n = strnlen(buf, size);
    FUZZ_ASSERT(n < size, "%s is not NUL-terminated within its buffer", what);
    FUZZ_ASSERT(utf8_valid(buf, n), "%s is not valid UTF-8: \"%s\"", what, buf);
}

#endif
