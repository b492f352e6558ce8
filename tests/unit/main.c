/* Runs the C unit tests (all, or those whose name contains argv[1]); exit status 1 when any fails. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"

int unit_failures;

int main(int argc, char **argv) {
    const unit_test_t *suites[] = {conf_tests,  email_tests,   secret_tests,     cmd_tests,
                                   mail_tests,  text_tests,    log_tests,        metrics_tests,
                                   kafka_tests, rfc3339_tests, deadletter_tests, event_tests};
    if (sodium_init() < 0)
        return 1;
    int run = 0, failed = 0;
    for (size_t s = 0; s < sizeof(suites) / sizeof(suites[0]); s++) {
        for (const unit_test_t *t = suites[s]; t->name; t++) {
            if (argc > 1 && !strstr(t->name, argv[1]))
                continue;
            int before = unit_failures;
            t->fn();
            run++;
            if (unit_failures != before) {
                failed++;
                printf("FAIL %s\n", t->name);
            } else {
                printf("ok   %s\n", t->name);
            }
        }
    }
    printf("%d unit tests, %d failed\n", run, failed);
    return failed || run == 0 ? 1 : 0;
}
