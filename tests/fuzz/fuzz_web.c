/* Fuzzes what raikoo-web reads from a browser (producers/web): form_parse (application/x-www-form-urlencoded
 * bodies) with form_get, html_esc and session_check_csrf (the form token); the session cookie's reading
 * (sid_hash_param, csrf_of); the sign-in redirect target (safe_next). session.c is included for its static
 * parsers. The input's first byte picks the parser (modulo 3); the rest is its input. Invariants: parsed names
 * and values are valid UTF-8 without NUL; form_get gives the first field of a name; html_esc leaves none of
 * & < > " ' raw; the form token is taken only when it is the session's; a cookie is read only when it is 64
 * hex digits, and its CSRF token is 32 hex digits; a redirect target is a path of this site. */
#include "../../producers/web/session.c"

#include <ctype.h>

#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (sodium_init() < 0)
        exit(1);
    log_init("fuzz-web", "error"); /* the refusal's log line is info */
    return 0;
}

static const char TOKEN[] = "0123456789abcdef0123456789abcdef";

static void fuzz_form(const char *in, size_t n, int has_session) {
    web_req_t r = {0};
    r.method = "POST", r.path = "/fuzz";
    text_printf(r.client, sizeof(r.client), "127.0.0.1");
    r.has_session = has_session;
    memcpy(r.csrf, TOKEN, sizeof(TOKEN));
    if (form_parse(&r, in, n) == 0) {
        for (size_t i = 0; i < r.nfields; i++) {
            const char *name = r.fields[i].name, *value = r.fields[i].value;
            FUZZ_ASSERT(utf8_valid(name, strlen(name)) && utf8_valid(value, strlen(value)),
                        "a field that is not UTF-8");
            const char *first = form_get(&r, name);
            for (size_t k = 0; k < i; k++)
                if (strcmp(r.fields[k].name, name) == 0) {
                    FUZZ_ASSERT(first == r.fields[k].value, "form_get does not give the first field");
                    break;
                }
            sb_t b = {0};
            html_esc(&b, value);
            FUZZ_ASSERT(!b.s || !strpbrk(b.s, "<>\"'"), "html_esc left a markup character");
            for (const char *p = b.s; p && (p = strchr(p, '&')); p++)
                FUZZ_ASSERT(!strncmp(p, "&amp;", 5) || !strncmp(p, "&lt;", 4) || !strncmp(p, "&gt;", 4) ||
                                !strncmp(p, "&quot;", 6) || !strncmp(p, "&#39;", 5),
                            "html_esc left a raw &");
            free(b.s);
        }
        const char *t = form_get(&r, "csrf");
        int ok = session_check_csrf(&r);
        FUZZ_ASSERT(ok == (has_session && t && strcmp(t, TOKEN) == 0), "form token taken wrongly (%d)", ok);
        FUZZ_ASSERT(ok || r.status == 403, "a refused form token without a 403 page");
    }
    form_free(&r);
    free(r.body.s);
}

static void fuzz_cookie(const char *in) {
    char hp[3 + 64 + 1];
    int ok = sid_hash_param(in, hp) == 0;
    int hex = strlen(in) == WEB_SID_HEX;
    for (size_t i = 0; hex && i < WEB_SID_HEX; i++)
        hex = isxdigit((unsigned char)in[i]) != 0;
    FUZZ_ASSERT(ok == hex, "a session cookie read wrongly (%d)", ok);
    if (ok) {
        FUZZ_ASSERT(hp[0] == '\\' && hp[1] == 'x' && strlen(hp) == 66, "a bad bytea literal");
        char csrf[WEB_CSRF_HEX + 1];
        csrf_of(in, csrf);
        FUZZ_ASSERT(strlen(csrf) == WEB_CSRF_HEX, "a CSRF token of %zu characters", strlen(csrf));
        for (size_t i = 0; i < WEB_CSRF_HEX; i++)
            FUZZ_ASSERT(isxdigit((unsigned char)csrf[i]), "a CSRF token that is not hex");
    }
}

static void fuzz_next(const char *in) {
    const char *next = safe_next(in);
    if (!next)
        return;
    FUZZ_ASSERT(next[0] == '/' && next[1] != '/' && strlen(next) <= 200, "an unsafe redirect target");
    for (const char *p = next; *p; p++)
        FUZZ_ASSERT(isalnum((unsigned char)*p) || *p == '/' || *p == '-', "a redirect target with %c", *p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size > WEB_FORM_MAX)
        return 0;
    char *in = fuzz_cstr(data + 1, size - 1);
    switch (data[0] % 3) {
        case 0: fuzz_form(in, size - 1, data[0] & 4 ? 0 : 1); break;
        case 1: fuzz_cookie(in); break;
        default: fuzz_next(in);
    }
    free(in);
    return 0;
}
