/* Fuzzes smtp_reply_clean, which turns whatever an SMTP server replied (any bytes, any length) into the text
 * stored in mail_deliveries.mail_error and written to the log. Fast and without a network, beside fuzz_smtp,
 * which drives whole sessions over loopback TCP. Invariants: valid UTF-8, at most SMTP_REPLY_MAX bytes, one
 * line (no control character at all), no trailing space, and what fits is kept as it was. */
#include "fuzz.h"
#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *out = smtp_reply_clean((const char *)data, size);
    size_t n = strlen(out);
    FUZZ_ASSERT(n <= SMTP_REPLY_MAX, "cleaned reply of %zu bytes", n);
    FUZZ_ASSERT(utf8_valid(out, n), "cleaned reply is not valid UTF-8");
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] != 0x7f,
                    "control byte 0x%02x kept", (unsigned char)out[i]);
    FUZZ_ASSERT(n == 0 || out[n - 1] != ' ', "trailing space kept");
    /* Plain printable ASCII that fits comes back unchanged (but for trailing spaces). */
    int plain = size <= SMTP_REPLY_MAX;
    for (size_t i = 0; plain && i < size; i++)
        plain = data[i] >= 0x20 && data[i] < 0x7f;
    if (plain) {
        size_t m = size;
        while (m > 0 && data[m - 1] == ' ')
            m--;
        FUZZ_ASSERT(n == m && memcmp(out, data, m) == 0, "printable reply changed");
    }
    free(out);
    return 0;
}
