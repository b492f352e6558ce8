/* Unit tests of the one UTF-8-safe truncation (no cut ever leaves half a character) and of the map of
 * texts batches look ids and addresses up in. */
#include <stdio.h>
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

/* Thousands of keys (the map grows many times over), each found with its own value; keys not added are not
 * found; adding a key again finds its value; folding compares without case, and without it case counts. */
static void strmap_finds_what_was_added(void) {
    enum { N = 5000 };
    static char keys[N][40], upper[N][40];
    strmap_t m, exact;
    strmap_init(&m, 1);
    strmap_init(&exact, 0);
    CHECK(strmap_find(&m, "anything") == NULL);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "4b1e%04x-0c8a-4d5e-9f00-%012x", i, i * 7919);
        for (int c = 0;; c++) {
            char ch = keys[i][c];
            upper[i][c] = ch >= 'a' && ch <= 'f' ? (char)(ch - 32) : ch;
            if (!ch)
                break;
        }
        int added = 0;
        *strmap_add(&m, keys[i], &added) = i;
        CHECK(added);
        *strmap_add(&exact, keys[i], NULL) = i;
    }
    CHECK(m.n == N);
    for (int i = 0; i < N; i++) {
        const long *v = strmap_find(&m, upper[i]);
        CHECK(v && *v == i);
        int added = 1;
        CHECK(*strmap_add(&m, upper[i], &added) == i);
        CHECK(!added);
        v = strmap_find(&exact, keys[i]);
        CHECK(v && *v == i);
        CHECK(strmap_find(&exact, upper[i]) == NULL); /* every key has letters ("4b1e..."): case counts */
    }
    CHECK(m.n == N);
    CHECK(strmap_find(&m, "4b1effff-0c8a-4d5e-9f00-000000000000") == NULL);
    CHECK(strmap_find(&m, "") == NULL);
    (*strmap_add(&exact, keys[3], NULL))++;
    CHECK(*strmap_find(&exact, keys[3]) == 4);
    strmap_free(&m);
    strmap_free(&exact);
    CHECK(strmap_find(&m, keys[0]) == NULL);
    CHECK(m.fold == 1);
}

const unit_test_t text_tests[] = {
    {"text: prefix never splits a character", prefix_never_splits_a_character},
    {"text: printf cuts on a boundary", printf_cuts_on_a_boundary},
    {"text: count and validity", count_and_validity},
    {"text: clean dup repairs and cuts", clean_dup_repairs_and_cuts},
    {"text: strmap finds what was added", strmap_finds_what_was_added},
    {NULL, NULL},
};
