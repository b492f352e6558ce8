/* E-mail addresses: validation and the one normal form used for matching. */
#ifndef RAIKOO_EMAIL_H
#define RAIKOO_EMAIL_H

#include <stddef.h>

#define EMAIL_MAX 254

/* Validates an address and writes its normal form into out (at least EMAIL_MAX + 1 bytes): surrounding
 * space trimmed, domain lower-cased, local part kept as typed (matching is case-insensitive in the
 * database). -1 with a reason in errstr when it is not a plain addr-spec: no display names, no control
 * characters, no spaces, exactly one @, a dotted domain of letters, digits and hyphens. */
int email_normalize(const char *in, char *out, char *errstr, size_t errstr_size);

#endif
