/* Unit tests of e-mail normalisation: what is accepted, the normal form, what is refused. */
#include "email.h"
#include "unit.h"

static void normal_form_trims_and_lowercases_domain(void) {
    char out[EMAIL_MAX + 1], err[128];
    CHECK(email_normalize("  Alice.Smith@Example.COM ", out, err, sizeof(err)) == 0);
    CHECK_STR(out, "Alice.Smith@example.com");
    CHECK(email_normalize("ice+tag@x.io", out, err, sizeof(err)) == 0);
    CHECK_STR(out, "ice+tag@x.io");
}

static void refuses_what_is_not_an_address(void) {
    static const char *bad[] = {"",
                                "   ",
                                "alice",
                                "alice@",
                                "@x.io",
                                "a@b@c.io",
                                "alice@localhost",
                                "al ice@x.io",
                                "alice@x..io",
                                "alice@-x.io",
                                ".alice@x.io",
                                "alice.@x.io",
                                "a..b@x.io",
                                "alice@x.io\r\nBcc: evil@y.io",
                                "Alice <alice@x.io>",
                                "alice@x_y.io",
                                "alice@x.io-",
                                NULL};
    char out[EMAIL_MAX + 1], err[128];
    for (int i = 0; bad[i]; i++) {
        err[0] = '\0';
        int rc = email_normalize(bad[i], out, err, sizeof(err));
        if (rc != -1 || !err[0])
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
        CHECK(rc == -1 && err[0]);
    }
    char longer[300];
    memset(longer, 'a', sizeof(longer));
    memcpy(longer + 250, "@x.io", 6);
    CHECK(email_normalize(longer, out, err, sizeof(err)) == -1);
}

const unit_test_t email_tests[] = {
    {"email: normal form trims and lowercases the domain", normal_form_trims_and_lowercases_domain},
    {"email: refuses what is not an address", refuses_what_is_not_an_address},
    {NULL, NULL},
};
