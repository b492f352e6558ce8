/* A small test harness for the C unit tests: named tests, checks that report file:line, a summary. */
#ifndef RAIKOO_UNIT_H
#define RAIKOO_UNIT_H

#include <stdio.h>
#include <string.h>

extern int unit_failures;

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                         \
            unit_failures++;                                                                                 \
        }                                                                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                                                      \
    do {                                                                                                     \
        const char *a_ = (a), *b_ = (b);                                                                     \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                             \
            fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, a_ ? a_ : "(null)",             \
                    b_ ? b_ : "(null)");                                                                     \
            unit_failures++;                                                                                 \
        }                                                                                                    \
    } while (0)

typedef struct unit_test {
    const char *name;
    void (*fn)(void);
} unit_test_t;

/* Each test file exports its table, ending with a NULL name. */
extern const unit_test_t conf_tests[];
extern const unit_test_t email_tests[];
extern const unit_test_t secret_tests[];
extern const unit_test_t cmd_tests[];
extern const unit_test_t mail_tests[];
extern const unit_test_t text_tests[];
extern const unit_test_t log_tests[];
extern const unit_test_t rfc3339_tests[];
extern const unit_test_t deadletter_tests[];
extern const unit_test_t metrics_tests[];
extern const unit_test_t kafka_tests[];
extern const unit_test_t event_tests[];

#endif
