/* Fuzzes mail_job_parse (the mail jobs the mailer reads from the mail topic) and renders every job it accepts
 * with the built-in templates. Invariants of the rendered message: CRLF line ends only, no line over 998
 * bytes (RFC 5322), 7-bit text only, exactly the template's headers (each once; continuation lines start
 * with a space), and exactly the two MIME parts with their own headers. */
#include <time.h>

#include "fuzz.h"
#include "mail.h"
#include "secret.h"

static mail_templates_t *templates;
static mail_from_t from;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char err[256];
    int overridden = 0;
    if (secret_init(err, sizeof(err)) != 0 ||
        !(templates = mail_templates_load(NULL, &overridden, err, sizeof(err))) ||
        mail_from_parse("Raikoo <no-reply@raikoo.local>", &from, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_mail: %s\n", err);
        exit(1);
    }
    return 0;
}

/* Checks the header block [h, end) and returns how many of each known header it holds. */
static void check_headers(const char *what, const char *h, const char *end, const char *const *names) {
    int count[16] = {0};
    size_t nnames = 0;
    while (names[nnames])
        nnames++;
    for (const char *line = h; line < end;) {
        const char *eol = strstr(line, "\r\n");
        FUZZ_ASSERT(eol && eol < end + 2, "%s: a header line without CRLF", what);
        if (*line == ' ' || *line == '\t') {
            FUZZ_ASSERT(line != h, "%s: starts with a continuation line", what);
        } else {
            const char *colon = memchr(line, ':', (size_t)(eol - line));
            FUZZ_ASSERT(colon, "%s: a header line without a name: %.*s", what, (int)(eol - line), line);
            size_t i = 0;
            for (; i < nnames; i++)
                if (strlen(names[i]) == (size_t)(colon - line) &&
                    strncmp(names[i], line, (size_t)(colon - line)) == 0)
                    break;
            FUZZ_ASSERT(i < nnames, "%s: a header the template does not have: %.*s", what,
                        (int)(colon - line), line);
            count[i]++;
        }
        line = eol + 2;
    }
    for (size_t i = 0; i < nnames; i++)
        FUZZ_ASSERT(count[i] == 1, "%s: header %s appears %d times", what, names[i], count[i]);
}

static void check_message(const char *msg) {
    size_t n = strlen(msg), col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '\r') {
            FUZZ_ASSERT(msg[i + 1] == '\n', "a CR without LF at byte %zu", i);
            continue;
        }
        if (c == '\n') {
            FUZZ_ASSERT(i > 0 && msg[i - 1] == '\r', "a bare LF at byte %zu", i);
            col = 0;
            continue;
        }
        FUZZ_ASSERT(c == '\t' || (c >= 0x20 && c < 0x7f), "byte 0x%02x at %zu is not 7-bit text", c, i);
        col++;
        FUZZ_ASSERT(col <= 998, "a line over 998 bytes ending at byte %zu", i);
    }
    FUZZ_ASSERT(n >= 2 && msg[n - 2] == '\r' && msg[n - 1] == '\n', "the message does not end with CRLF");

    static const char *const top[] = {"Date",         "Message-ID",       "From",
                                      "To",           "Subject",          "MIME-Version",
                                      "Content-Type", "Content-Language", NULL};
    const char *body = strstr(msg, "\r\n\r\n");
    FUZZ_ASSERT(body, "no end of headers");
    check_headers("message", msg, body + 2, top);

    /* The boundary of the Content-Type header (a header starts a line; a subject may hold boundary="). */
    const char *ct = strstr(msg, "\r\nContent-Type: multipart/alternative;");
    FUZZ_ASSERT(ct && ct < body, "no multipart Content-Type header");
    const char *b = strstr(ct, "boundary=\"");
    FUZZ_ASSERT(b && b < body, "no boundary");
    b += strlen("boundary=\"");
    const char *bq = strchr(b, '"');
    FUZZ_ASSERT(bq, "boundary unterminated");
    char delim[128];
    FUZZ_ASSERT((size_t)(bq - b) + 3 < sizeof(delim), "boundary too long");
    snprintf(delim, sizeof(delim), "--%.*s", (int)(bq - b), b);
    int seen = 0;
    static const char *const part[] = {"Content-Type", "Content-Transfer-Encoding", NULL};
    for (const char *p = strstr(body, delim); p; p = strstr(p + 1, delim)) {
        seen++;
        FUZZ_ASSERT(p[-1] == '\n', "boundary inside a line");
        const char *after = p + strlen(delim);
        if (seen <= 2) {
            FUZZ_ASSERT(after[0] == '\r' && after[1] == '\n', "boundary line has more on it");
            const char *ph = after + 2, *pend = strstr(ph, "\r\n\r\n");
            FUZZ_ASSERT(pend, "a part without a blank line after its headers");
            check_headers("part", ph, pend + 2, part);
        } else {
            FUZZ_ASSERT(strcmp(after, "--\r\n") == 0, "closing boundary is not the end");
        }
    }
    FUZZ_ASSERT(seen == 3, "%d boundaries in the body (expected 2 parts and the end)", seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mail_job_t job;
    int identified = 0;
    char err[256];
    err[0] = '\0';
    int rc = mail_job_parse((const char *)data, size, &job, &identified, err, sizeof(err));
    if (rc != 0) {
        fuzz_check_text("mail_job_parse reason", err, sizeof(err));
        if (identified)
            FUZZ_ASSERT(uuid_valid(job.job_id) && uuid_valid(job.invitation_id) && uuid_valid(job.org_id),
                        "identified without its three UUIDs");
        mail_job_free(&job);
        return 0;
    }
    FUZZ_ASSERT(identified, "accepted but not identified");
    char rerr[256];
    rerr[0] = '\0';
    char *msg = mail_render(templates, &from, "http://localhost:8080/accept", &job, "ABCDEFGHJKMN",
                            (time_t)1767225600, rerr, sizeof(rerr));
    if (msg) {
        check_message(msg);
        free(msg);
    } else {
        fuzz_check_text("mail_render reason", rerr, sizeof(rerr));
    }
    mail_job_free(&job);
    return 0;
}
