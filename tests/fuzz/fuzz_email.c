/* Fuzzes e-mail addresses: email_normalize (every address a command or mail job carries) and mail_from_parse
 * (mail.from, "Name <address>"). Invariants: the normal form is a plain addr-spec of at most EMAIL_MAX
 * bytes, printable ASCII, one @, lower-case domain, and normalising it again gives it back; the From: header
 * built from mail.from is 7-bit, one logical line (only CRLF SP folds), no line over 78 characters when the
 * address itself fits, and ends with the address in angle brackets or is the bare address. */
#include <ctype.h>

#include "email.h"
#include "fuzz.h"
#include "mail.h"

static void check_normal(const char *out) {
    size_t n = strlen(out);
    FUZZ_ASSERT(n > 0 && n <= EMAIL_MAX, "normal form of %zu bytes", n);
    const char *at = strchr(out, '@');
    FUZZ_ASSERT(at && !strchr(at + 1, '@'), "normal form without exactly one @: %s", out);
    for (const char *p = out; *p; p++) {
        unsigned char c = (unsigned char)*p;
        FUZZ_ASSERT(c > 0x20 && c < 0x7f && c != '"' && c != '<' && c != '>' && c != '(' && c != ')' &&
                        c != ',' && c != ';' && c != ':' && c != '\\' && c != '[' && c != ']',
                    "character 0x%02x in a normal form", c);
        if (p > at)
            FUZZ_ASSERT(!isupper(c), "upper case in the domain: %s", out);
    }
    char again[EMAIL_MAX + 1], why[256];
    FUZZ_ASSERT(email_normalize(out, again, why, sizeof(why)) == 0, "normal form refused: %s", why);
    FUZZ_ASSERT(strcmp(again, out) == 0, "normal form not stable: %s -> %s", out, again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *in = fuzz_cstr(data, size);
    char out[EMAIL_MAX + 1], why[256];
    why[0] = '\0';
    if (email_normalize(in, out, why, sizeof(why)) == 0)
        check_normal(out);
    else
        fuzz_check_text("email_normalize reason", why, sizeof(why));

    mail_from_t from;
    char err[256];
    err[0] = '\0';
    if (mail_from_parse(in, &from, err, sizeof(err)) == 0) {
        check_normal(from.addr);
        FUZZ_ASSERT(strcmp(from.domain, strchr(from.addr, '@') + 1) == 0, "domain is not the address's");
        const char *h = from.header;
        size_t col = 6; /* "From: " */
        for (size_t i = 0; h[i]; i++) {
            unsigned char c = (unsigned char)h[i];
            if (c == '\r') {
                FUZZ_ASSERT(h[i + 1] == '\n' && (h[i + 2] == ' ' || h[i + 2] == '\t'),
                            "a line break that ends the header");
                col = 0;
                i++;
                continue;
            }
            FUZZ_ASSERT(c >= 0x20 && c < 0x7f, "byte 0x%02x in the From: header", c);
            col++;
            FUZZ_ASSERT(col <= 998, "a From: line over 998 bytes");
        }
        size_t hl = strlen(h), al = strlen(from.addr);
        int bare = strcmp(h, from.addr) == 0;
        int bracketed = hl > al + 2 && h[hl - 1] == '>' && h[hl - al - 2] == '<' &&
                        strncmp(h + hl - al - 1, from.addr, al) == 0;
        FUZZ_ASSERT(bare || bracketed, "the From: header does not end with the address: %s", h);
        mail_from_free(&from);
    } else {
        fuzz_check_text("mail_from_parse reason", err, sizeof(err));
    }
    free(in);
    return 0;
}
