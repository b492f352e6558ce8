/* Unit tests of the one UTF-8-safe truncation: no cut ever leaves half a character. */
#include <stdlib.h>

#include "text.h"
#include "unit.h"

static void prefix_never_splits_a_character(void) {
    const char *s = "aa\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"; /* aa é € 😀 */
    size_t n = strlen(s);
    CHECK(utf8_prefix(s, n, 2) == 2);
    CHECK(utf8_prefix(s, n, 3) == 2);
    CHECK(utf8_prefix(s, n, 4) == 4);
    CHECK(utf8_prefix(s, n, 6) == 4);
    CHECK(utf8_prefix(s, n, 7) == 7);
    CHECK(utf8_prefix(s, n, 10) == 7);
    CHECK(utf8_prefix(s, n, 11) == 11);
    for (size_t m = 0; m <= n; m++)
        CHECK(utf8_valid(s, utf8_prefix(s, n, m)));
}

static void printf_cuts_on_a_boundary(void) {
    char big[200];
    memset(big, 'a', 79);
    strcpy(big + 79, "\xc3\xa9\xc3\xa9");
    for (size_t size = 1; size < 90; size++) {
        char buf[100];
        text_printf(buf, size, "%s", big);
        CHECK(utf8_valid(buf, strlen(buf)));
        CHECK(strlen(buf) < size);
    }
    char buf[81];
    text_printf(buf, sizeof(buf), "%s", big);
    CHECK(strlen(buf) == 79);
}

static void count_and_validity(void) {
    CHECK(utf8_count("h\xc3\xa9", 3) == 2);
    CHECK(utf8_count("\xc3", 1) == -1);
    CHECK(utf8_count("\xc0\xaf", 2) == -1);         /* overlong */
    CHECK(utf8_count("\xed\xa0\x80", 3) == -1);     /* surrogate */
    CHECK(utf8_count("\xf4\x90\x80\x80", 4) == -1); /* past U+10FFFF */
}

static void clean_dup_repairs_and_cuts(void) {
    char *c = utf8_clean_dup("a\xffz", 3, 100);
    CHECK_STR(c, "a\xef\xbf\xbdz");
    free(c);
    c = utf8_clean_dup("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, 6);
    CHECK(utf8_valid(c, strlen(c)) && strlen(c) <= 6);
    CHECK_STR(c, "\xc3\xa9...");
    free(c);
    c = utf8_clean_dup(NULL, 0, 10);
    CHECK_STR(c, "");
    free(c);
}

const unit_test_t text_tests[] = {
    {"text: prefix never splits a character", prefix_never_splits_a_character},
    {"text: printf cuts on a boundary", printf_cuts_on_a_boundary},
    {"text: count and validity", count_and_validity},
    {"text: clean dup repairs and cuts", clean_dup_repairs_and_cuts},
    {NULL, NULL},
};
