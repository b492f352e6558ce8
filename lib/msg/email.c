/* E-mail addresses: validation and the one normal form used for matching. */
#include "email.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int local_char_ok(unsigned char ch) {
    return isalnum(ch) || strchr("!#$%&'*+-/=?^_`{|}~.", ch) != NULL;
}

int email_normalize(const char *in, char *out, char *errstr, size_t errstr_size) {
    while (*in == ' ' || *in == '\t')
        in++;
    size_t n = strlen(in);
    while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t'))
        n--;
    if (n == 0) {
        snprintf(errstr, errstr_size, "e-mail address is empty");
        return -1;
    }
    if (n > EMAIL_MAX) {
        snprintf(errstr, errstr_size, "e-mail address is longer than %d characters", EMAIL_MAX);
        return -1;
    }
    const char *at = memchr(in, '@', n);
    if (!at || memchr(at + 1, '@', n - (size_t)(at - in) - 1)) {
        snprintf(errstr, errstr_size, "e-mail address must contain exactly one @");
        return -1;
    }
    size_t local_len = (size_t)(at - in), dom_len = n - local_len - 1;
    if (local_len == 0 || local_len > 64 || in[0] == '.' || in[local_len - 1] == '.') {
        snprintf(errstr, errstr_size, "e-mail address has an invalid local part");
        return -1;
    }
    for (size_t i = 0; i < local_len; i++) {
        if (!local_char_ok((unsigned char)in[i]) || (in[i] == '.' && in[i + 1] == '.')) {
            snprintf(errstr, errstr_size, "e-mail address has a character not allowed before the @");
            return -1;
        }
    }
    const char *dom = at + 1;
    if (dom_len == 0 || !memchr(dom, '.', dom_len)) {
        snprintf(errstr, errstr_size, "e-mail address needs a domain with a dot after the @");
        return -1;
    }
    size_t label = 0;
    for (size_t i = 0; i < dom_len; i++) {
        unsigned char ch = (unsigned char)dom[i];
        if (ch == '.') {
            if (label == 0 || dom[i - 1] == '-') {
                snprintf(errstr, errstr_size, "e-mail address has an invalid domain");
                return -1;
            }
            label = 0;
            continue;
        }
        if (!isalnum(ch) && !(ch == '-' && label > 0)) {
            snprintf(errstr, errstr_size, "e-mail address has an invalid domain");
            return -1;
        }
        if (++label > 63) {
            snprintf(errstr, errstr_size, "e-mail address has an invalid domain");
            return -1;
        }
    }
    if (label == 0 || dom[dom_len - 1] == '-') {
        snprintf(errstr, errstr_size, "e-mail address has an invalid domain");
        return -1;
    }
    memcpy(out, in, local_len + 1);
    for (size_t i = 0; i < dom_len; i++)
        out[local_len + 1 + i] = (char)tolower((unsigned char)dom[i]);
    out[n] = '\0';
    return 0;
}
