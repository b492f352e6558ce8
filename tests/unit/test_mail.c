/* Unit tests of mail rendering: cleaning, encoded-words, quoted-printable, HTML escaping, templates, jobs. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail.h"
#include "reminder.h"
#include "secret.h"
#include "unit.h"

static void clean_replaces_control_characters_and_bad_utf8(void) {
    char *s = mail_clean("  Bob\r\nBcc: x@y.z\tTab\x7f\xc2\x85Nel\xe2\x80\xa8Sep \xff end  ");
    CHECK_STR(s, "Bob  Bcc: x@y.z Tab  Nel Sep \xef\xbf\xbd end");
    CHECK(strpbrk(s, "\r\n\t") == NULL);
    free(s);
    s = mail_clean("Zo\xc3\xab \xe5\xb1\xb1\xe7\x94\xb0");
    CHECK_STR(s, "Zo\xc3\xab \xe5\xb1\xb1\xe7\x94\xb0");
    free(s);
}

static void header_text_encodes_non_ascii_and_folds(void) {
    char *s = mail_header_text("You're invited to join Acme on Raikoo");
    CHECK_STR(s, "You're invited to join Acme on Raikoo");
    free(s);
    s = mail_header_text("Caf\xc3\xa9");
    CHECK_STR(s, "=?UTF-8?B?Q2Fmw6k=?=");
    free(s);
    /* "=?" in plain text would be decoded by readers: encoded instead. */
    s = mail_header_text("a =?UTF-8?B?eA==?= b");
    CHECK(strncmp(s, "=?UTF-8?B?", 10) == 0 && !strstr(s, "eA=="));
    free(s);
    char longname[400] = "";
    for (int i = 0; i < 60; i++)
        strcat(longname, "\xc3\xa9\xe5\xb1\xb1"); /* é山: 2 + 3 bytes */
    s = mail_header_text(longname);
    size_t col = 9; /* after "Subject: " */
    for (const char *p = s; *p; p++) {
        if (*p == '\r') {
            CHECK(p[1] == '\n' && p[2] == ' ');
            col = 0;
            p++;
            continue;
        }
        col++;
        CHECK(col <= 78);
    }
    free(s);
}

static void mailbox_quotes_or_encodes_the_display_name(void) {
    char *s = mail_mailbox("", "bob@example.com");
    CHECK_STR(s, "bob@example.com");
    free(s);
    s = mail_mailbox("Bob \"B\" O'Neil", "bob@example.com");
    CHECK_STR(s, "\"Bob \\\"B\\\" O'Neil\" <bob@example.com>");
    free(s);
    s = mail_mailbox("Zo\xc3\xab", "zoe@example.com");
    CHECK_STR(s, "=?UTF-8?B?Wm/Dqw==?= <zoe@example.com>");
    free(s);
}

static void quoted_printable_keeps_lines_short_and_encodes_what_it_must(void) {
    char *s = mail_qp_encode("a=b caf\xc3\xa9 \n.dot\nFrom here\ntrailing \n");
    CHECK_STR(s, "a=3Db caf=C3=A9=20\r\n=2Edot\r\n=46rom here\r\ntrailing=20\r\n");
    free(s);
    char line[300];
    memset(line, 'x', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    s = mail_qp_encode(line);
    size_t col = 0, xs = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '\r') {
            col = 0;
            p++;
            continue;
        }
        xs += *p == 'x';
        CHECK(++col <= 76);
    }
    CHECK(xs == sizeof(line) - 1);
    free(s);
}

static void html_escape_escapes_markup(void) {
    char *s = mail_html_escape("<a href=\"x\">O'Neil & co</a>");
    CHECK_STR(s, "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;");
    free(s);
}

static void from_reads_name_and_address(void) {
    mail_from_t f;
    char err[256];
    CHECK(mail_from_parse("Raikoo <no-reply@Raikoo.Local>", &f, err, sizeof(err)) == 0);
    CHECK_STR(f.addr, "no-reply@raikoo.local");
    CHECK_STR(f.domain, "raikoo.local");
    CHECK_STR(f.header, "\"Raikoo\" <no-reply@raikoo.local>");
    mail_from_free(&f);
    CHECK(mail_from_parse("ops@example.com", &f, err, sizeof(err)) == 0);
    CHECK_STR(f.header, "ops@example.com");
    mail_from_free(&f);
    CHECK(mail_from_parse("Bad <not an address>", &f, err, sizeof(err)) == -1);
    CHECK(strstr(err, "mail.from") != NULL);
}

static const char JOB[] =
    "{\"specversion\":\"1.0\",\"id\":\"11111111-1111-4111-8111-111111111111\",\"source\":\"/raikoo/"
    "command-worker\","
    "\"type\":\"raikoo.mail.InvitationEmail.v1\",\"time\":\"2026-11-27T20:00:00.000Z\","
    "\"datacontenttype\":\"application/json\",\"actorid\":\"33333333-3333-4333-8333-333333333333\","
    "\"correlationid\":\"44444444-4444-4444-8444-444444444444\",\"data\":{"
    "\"job_id\":\"11111111-1111-4111-8111-111111111111\",\"invitation_id\":\"22222222-2222-4222-8222-"
    "222222222222\","
    "\"org_id\":\"55555555-5555-4555-8555-555555555555\",\"org_name\":\"Acme\\r\\nX-Evil: "
    "1\",\"kind\":\"%s\","
    "\"email\":\"bob@example.com\",\"name\":\"Bob\\nBcc: eve@example.com\",\"inviter_name\":\"<b>Alice</b>\","
    "\"inviter_email\":\"alice@example.com\",\"grant_owner\":false,\"expires_at\":\"2026-12-04T22:30:00.000+"
    "02:00\","
    "\"sealed_code\":\"%s\"}}";

static int header_lines_named(const char *msg, const char *name) {
    int count = 0;
    size_t n = strlen(name);
    const char *end = strstr(msg, "\r\n\r\n");
    for (const char *p = msg; p && p < end; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL)
        if (strncasecmp(p, name, n) == 0 && p[n] == ':')
            count++;
    return count;
}

/* msg with quoted-printable soft line breaks removed (in place), to search for whole lines. */
static char *unsoft(char *msg) {
    char *w = msg;
    for (const char *r = msg; *r;) {
        if (r[0] == '=' && r[1] == '\r' && r[2] == '\n') {
            r += 3;
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
    return msg;
}

static void render_makes_a_safe_multipart_message(void) {
    secret_keys_t k;
    crypto_box_keypair(k.pk, k.sk);
    k.have_sk = 1;
    char sealed[SEALED_CODE_B64_MAX], buf[4096], err[256];
    CHECK(code_seal(&k, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0);
    snprintf(buf, sizeof(buf), JOB, "new", sealed);
    mail_job_t job;
    int identified = 0;
    CHECK(mail_job_parse(buf, strlen(buf), &job, &identified, err, sizeof(err)) == 0);
    CHECK(identified && job.is_new);
    CHECK_STR(job.email, "bob@example.com");
    CHECK(job.expires == 1796416200); /* 2026-12-04T20:30:00Z */
    int overridden = -1;
    mail_templates_t *t = mail_templates_load(NULL, &overridden, err, sizeof(err));
    CHECK(t != NULL && overridden == 0);
    mail_from_t from;
    CHECK(mail_from_parse("Raikoo <no-reply@raikoo.local>", &from, err, sizeof(err)) == 0);
    char code[CODE_LEN + 1];
    CHECK(code_open(&k, job.sealed_code, code) == 0);
    char *msg =
        t ? mail_render(t, &from, "https://app.example", &job, code, 1796000000, err, sizeof(err)) : NULL;
    CHECK(msg != NULL);
    if (msg) {
        CHECK(header_lines_named(msg, "Date") == 1 && header_lines_named(msg, "Message-ID") == 1);
        CHECK(header_lines_named(msg, "X-Evil") == 0 && header_lines_named(msg, "Bcc") == 0);
        CHECK(strstr(msg, "Subject: You're invited to join Acme X-Evil: 1 on Raikoo\r\n") != NULL);
        CHECK(strstr(msg, "To: \"Bob Bcc: eve@example.com\" <bob@example.com>\r\n") != NULL);
        CHECK(strstr(msg, "Message-ID: <11111111-1111-4111-8111-111111111111@raikoo.local>\r\n") != NULL);
        CHECK(strstr(msg, "MIME-Version: 1.0\r\n") != NULL);
        CHECK(strstr(msg, "\r\nInvitation: 22222222-2222-4222-8222-222222222222\r\n") != NULL);
        CHECK(strstr(msg, "\r\nOne-time password: ABCD-EFGH-JKMN\r\n") != NULL);
        CHECK(strstr(msg, "Confirmation code") == NULL);
        char *copy = strdup(msg);
        CHECK(strstr(unsoft(copy), "raikoo activate --email bob@example.com\r\n"));
        free(copy);
        CHECK(strstr(msg, "Expires: December 4, 2026, 20:30 UTC") != NULL);
        CHECK(strstr(msg, "&lt;b&gt;Alice&lt;/b&gt;") != NULL && strstr(msg, "<b>Alice</b>") != NULL);
        CHECK(strstr(msg, "Content-Type: text/html; charset=UTF-8") != NULL);
        /* Every line ends with CRLF; none is longer than 78 characters. */
        for (const char *p = msg; *p;) {
            const char *eol = strstr(p, "\r\n");
            CHECK(eol != NULL);
            if (!eol)
                break;
            CHECK(eol - p <= 78);
            CHECK(memchr(p, '\n', (size_t)(eol - p)) == NULL);
            p = eol + 2;
        }
        free(msg);
    }
    mail_job_free(&job);

    snprintf(buf, sizeof(buf), JOB, "existing", sealed);
    CHECK(mail_job_parse(buf, strlen(buf), &job, &identified, err, sizeof(err)) == 0);
    msg = t ? mail_render(t, &from, "https://app.example", &job, code, 1796000000, err, sizeof(err)) : NULL;
    CHECK(msg && strstr(msg, "\r\nConfirmation code: ABCD-EFGH-JKMN\r\n") != NULL);
    CHECK(msg && strstr(unsoft(msg), "raikoo accept --invitation 22222222-2222-4222-8222-222222222222\r\n"));
    CHECK(msg && strstr(msg, "One-time password") == NULL);
    free(msg);
    mail_job_free(&job);
    mail_from_free(&from);
    mail_templates_free(t);
}

static void malformed_jobs_say_why_and_whether_they_name_an_invitation(void) {
    mail_job_t job;
    int identified = 1;
    char err[256];
    CHECK(mail_job_parse("not json", 8, &job, &identified, err, sizeof(err)) == -1 && !identified);
    mail_job_free(&job);
    char buf[4096];
    snprintf(buf, sizeof(buf), JOB, "sideways", "x");
    CHECK(mail_job_parse(buf, strlen(buf), &job, &identified, err, sizeof(err)) == -1 && identified);
    CHECK(strstr(err, "kind") != NULL);
    mail_job_free(&job);
}

/* Every line of a header value (CRLF-separated, the first starting at column col) at most 78 characters;
 * folded lines start with a space. */
static int lines_within(const char *s, size_t col) {
    const size_t max = 78;
    for (const char *p = s; *p; p++) {
        if (p[0] == '\r' && p[1] == '\n') {
            if (p[2] && p[2] != ' ')
                return 0;
            col = 0;
            p++;
            continue;
        }
        if (++col > max)
            return 0;
    }
    return 1;
}

/* Every encoded-word of s at most 75 characters (RFC 2047). */
static int encoded_words_within_75(const char *s) {
    for (const char *p = strstr(s, "=?"); p; p = strstr(p, "=?")) {
        const char *q = strstr(p + 10, "?=");
        if (!q || q + 2 - p > 75)
            return 0;
        p = q + 2;
    }
    return 1;
}

static void long_headers_are_folded_and_encoded_words_stay_within_75(void) {
    /* A 57-character organization name made a 98-character Subject line. */
    char *s = mail_header_text(
        "You're invited to join Interplanetary Logistics and Rocketry Consortium Ltd on Raikoo");
    CHECK(lines_within(s, 9) && strstr(s, "\r\n ") != NULL);
    CHECK(strstr(s, "=?") == NULL);
    free(s);
    /* 1,000 characters: folded at spaces, far below 998 per line. */
    char big[1200] = "";
    for (int i = 0; i < 100; i++)
        strcat(big, "Longwords ");
    s = mail_header_text(big);
    CHECK(lines_within(s, 9));
    free(s);
    /* A word too long for any line: encoded-words, which can be cut anywhere. */
    char word[1100];
    memset(word, 'x', 1000);
    word[1000] = '\0';
    s = mail_header_text(word);
    CHECK(lines_within(s, 9) && encoded_words_within_75(s) && strncmp(s, "=?UTF-8?B?", 10) == 0);
    free(s);
    /* Non-ASCII: every encoded-word, not only the first, at most 75 characters. */
    char uni[800] = "";
    for (int i = 0; i < 100; i++)
        strcat(uni, "\xc3\xa9t\xc3\xa9 ");
    s = mail_header_text(uni);
    CHECK(lines_within(s, 9) && encoded_words_within_75(s));
    free(s);
    /* A long ASCII display name is encoded (a quoted one cannot be folded); the address goes on a line of
     * its own when it would not fit. */
    s = mail_mailbox(big, "someone.with.a.long.address@subdomain.example.com");
    CHECK(lines_within(s, 6) && encoded_words_within_75(s));
    CHECK(strstr(s, " <someone.with.a.long.address@subdomain.example.com>") != NULL);
    free(s);
    s = mail_mailbox("Zo\xc3\xab", "zoe@example.com");
    CHECK_STR(s, "=?UTF-8?B?Wm/Dqw==?= <zoe@example.com>");
    free(s);
}

static void quoted_printable_escapes_from_after_a_soft_break(void) {
    /* 75 characters, then "From ": the soft break puts "From " at the start of a line. */
    char line[200];
    memset(line, 'a', 75);
    strcpy(line + 75, "From here on");
    char *s = mail_qp_encode(line);
    CHECK(strstr(s, "=\r\nFrom ") == NULL && strstr(s, "=\r\n=46rom here on") != NULL);
    free(s);
    memset(line, 'a', 75);
    strcpy(line + 75, ".dot");
    s = mail_qp_encode(line);
    CHECK(strstr(s, "=\r\n=2Edot") != NULL);
    free(s);
}

/* JOB with one substitution of `from` by `to` (first occurrence). */
static void job_with(char *out, size_t size, const char *sealed, const char *from, const char *to) {
    char base[4096];
    snprintf(base, sizeof(base), JOB, "new", sealed);
    char *at = strstr(base, from);
    if (!at) {
        snprintf(out, size, "%s", base);
        return;
    }
    snprintf(out, size, "%.*s%s%s", (int)(at - base), base, to, at + strlen(from));
}

static void job_parser_holds_every_rule_of_the_schema(void) {
    const char *sealed = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB";
    static const char *const subs[][2] = {
        {"2026-12-04T22:30:00.000+02:00", "2026-01-+1T-1:-5:-9Z"},
        {"2026-12-04T22:30:00.000+02:00", "2026-12-04 22:30:00Z"},
        {"\"org_name\":\"Acme\\r\\nX-Evil: 1\"", "\"org_name\":\"\""},
        {"\"org_name\":\"Acme\\r\\nX-Evil: 1\",", ""},
        {"\"name\":\"Bob\\nBcc: eve@example.com\",", ""},
        {"\"inviter_email\":\"alice@example.com\",", ""},
        {"\"grant_owner\":false", "\"grant_owner\":0"},
        {"\"grant_owner\":false,", ""},
        {"bob@example.com", "bob@Example.COM"},
        {"bob@example.com", " bob@example.com"},
        {"\"specversion\":\"1.0\"", "\"specversion\":\"0.3\""},
        {"/raikoo/command-worker", "/elsewhere"},
        {"\"time\":\"2026-11-27T20:00:00.000Z\",", ""},
        {"2026-11-27T20:00:00.000Z", "yesterday"},
        {"\"datacontenttype\":\"application/json\"", "\"datacontenttype\":\"text/plain\""},
        {"\"correlationid\":\"44444444-4444-4444-8444-444444444444\",", ""},
        {"33333333-3333-4333-8333-333333333333", "not-a-uuid"},
        {"\"actorid\"", "\"extra\""},
        {"\"grant_owner\":false", "\"grant_owner\":false,\"extra\":1"},
        {"QUFB", "!!!!"},
        {"\"grant_owner\":false", "\"grant_owner\":false,\"locale\":\"german\""},
        {"\"grant_owner\":false", "\"grant_owner\":false,\"locale\":\"de-at\""},
        {"\"grant_owner\":false", "\"grant_owner\":false,\"locale\":7"},
        {"\"grant_owner\":false", "\"grant_owner\":false,\"app_url\":\"javascript:alert(1)\""},
        {"\"grant_owner\":false", "\"grant_owner\":false,\"app_url\":\"https://a.example/\""},
        {"\"grant_owner\":false", "\"grant_owner\":false,\"app_url\":\"https://a.example/\\\"x\""},
        {"\"grant_owner\":false", "\"grant_owner\":false,\"grant_manage_users\":1"},
    };
    char buf[4096], err[256];
    mail_job_t job;
    int identified = 0;
    job_with(buf, sizeof(buf), sealed, "-", "-");
    CHECK(mail_job_parse(buf, strlen(buf), &job, &identified, err, sizeof(err)) == 0);
    CHECK(job.locale == NULL && job.app_url == NULL && job.grant_manage_users == 0);
    mail_job_free(&job);
    job_with(buf, sizeof(buf), sealed, "\"grant_owner\":false",
             "\"grant_owner\":false,\"locale\":\"de-AT\",\"app_url\":\"https://app.example/org/7\","
             "\"grant_manage_users\":true");
    CHECK(mail_job_parse(buf, strlen(buf), &job, &identified, err, sizeof(err)) == 0);
    CHECK(job.locale && strcmp(job.locale, "de-AT") == 0 && job.app_url && job.grant_manage_users == 1);
    mail_job_free(&job);
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        job_with(buf, sizeof(buf), sealed, subs[i][0], subs[i][1]);
        int rc = mail_job_parse(buf, strlen(buf), &job, &identified, err, sizeof(err));
        if (rc == 0)
            fprintf(stderr, "accepted bad job %zu: %s -> %s\n", i, subs[i][0], subs[i][1]);
        CHECK(rc == -1 && identified);
        mail_job_free(&job);
    }
}

static void templates_are_checked_when_loaded(void) {
    char dir[] = "/tmp/raikoo-unit-tpl-XXXXXX", path[128], err[256];
    int overridden = 0;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/invitation.subject", dir);
    FILE *f = fopen(path, "w");
    fputs("{{#new}}Welcome{{/existing}}", f);
    fclose(f);
    mail_templates_t *t = mail_templates_load(dir, &overridden, err, sizeof(err));
    CHECK(t == NULL && strstr(err, "closes no open section") != NULL);
    f = fopen(path, "w");
    fputs("Join {{org_name}}{{#owner}} as owner{{/owner}}", f);
    fclose(f);
    t = mail_templates_load(dir, &overridden, err, sizeof(err));
    CHECK(t != NULL && overridden == 1);
    mail_templates_free(t);
    unlink(path);
    t = mail_templates_load(dir, &overridden, err, sizeof(err));
    CHECK(t == NULL && strstr(err, "holds none of") != NULL);
    rmdir(dir);
}

static void dates_are_written_in_the_locales_words(void) {
    char buf[128];
    time_t t = 1796423400; /* 2026-12-04T22:30:00Z */
    mail_format_time("en", t, buf, sizeof(buf));
    CHECK_STR(buf, "December 4, 2026, 22:30 UTC");
    mail_format_time("de", t, buf, sizeof(buf));
    CHECK_STR(buf, "4. Dezember 2026, 22:30 UTC");
    mail_format_time("de-AT", t, buf, sizeof(buf));
    CHECK_STR(buf, "4. Dezember 2026, 22:30 UTC");
    mail_format_time("fr", t, buf, sizeof(buf)); /* no words of ours: English */
    CHECK_STR(buf, "December 4, 2026, 22:30 UTC");
    mail_format_time(NULL, 1772409600, buf, sizeof(buf)); /* 2026-03-02T00:00:00Z */
    CHECK_STR(buf, "March 2, 2026, 00:00 UTC");
    mail_format_time("de", 1772409600, buf, sizeof(buf));
    CHECK_STR(buf, "2. M\xc3\xa4rz 2026, 00:00 UTC");
}

static void locale_lookup_falls_back_to_the_language_then_english(void) {
    char err[256];
    int overridden = 0;
    mail_templates_t *t = mail_templates_load(NULL, &overridden, err, sizeof(err));
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK_STR(mail_templates_locale(t, "de"), "de");
    CHECK_STR(mail_templates_locale(t, "de-AT"), "de");
    CHECK_STR(mail_templates_locale(t, "en-GB"), "en");
    CHECK_STR(mail_templates_locale(t, "fr"), "en");
    CHECK_STR(mail_templates_locale(t, "not a tag"), "en");
    CHECK_STR(mail_templates_locale(t, NULL), "en");
    CHECK(mail_templates_set_default(t, "de-CH") == 0);
    CHECK_STR(mail_templates_locale(t, NULL), "de");
    CHECK_STR(mail_templates_locale(t, "fr"), "en"); /* a job's own locale: de-AT, de, en; not mail.locale */
    CHECK(mail_templates_set_default(t, "German") == -1);
    mail_templates_free(t);

    /* An operator's folder per locale: de-AT/ adds that locale, its other files are de's. */
    char dir[] = "/tmp/raikoo-unit-loc-XXXXXX", path[160];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/de-AT", dir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/de-AT/invitation.subject", dir);
    FILE *f = fopen(path, "w");
    fputs("Servus bei {{org_name}}", f);
    fclose(f);
    t = mail_templates_load(dir, &overridden, err, sizeof(err));
    CHECK(t != NULL && overridden == 1);
    if (t) {
        CHECK_STR(mail_templates_locale(t, "de-AT"), "de-AT");
        CHECK_STR(mail_templates_locale(t, "de-DE"), "de");
        mail_templates_free(t);
    }
    /* A reminder template may not show a code: there is none. */
    f = fopen(path, "w");
    fputs("Servus", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/de-AT/reminder.txt", dir);
    f = fopen(path, "w");
    fputs("Ihr Code: {{code}}", f);
    fclose(f);
    t = mail_templates_load(dir, &overridden, err, sizeof(err));
    CHECK(t == NULL && strstr(err, "de-AT/reminder.txt") && strstr(err, "no code"));
    unlink(path);
    snprintf(path, sizeof(path), "%s/de-AT/invitation.subject", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/de-AT", dir);
    rmdir(path);
    rmdir(dir);
}

static void german_jobs_render_in_german_with_the_role_and_link(void) {
    secret_keys_t k;
    crypto_box_keypair(k.pk, k.sk);
    k.have_sk = 1;
    char sealed[SEALED_CODE_B64_MAX], base[4096], buf[4096], err[256];
    CHECK(code_seal(&k, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0);
    snprintf(base, sizeof(base), JOB, "existing", sealed);
    char *at = strstr(base, "\"grant_owner\":false");
    CHECK(at != NULL);
    if (!at)
        return;
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - base), base,
             "\"grant_owner\":false,\"grant_manage_users\":true,\"locale\":\"de-AT\","
             "\"app_url\":\"https://org.example\"",
             at + strlen("\"grant_owner\":false"));
    mail_job_t job;
    int identified = 0, overridden = 0;
    CHECK(mail_job_parse(buf, strlen(buf), &job, &identified, err, sizeof(err)) == 0);
    mail_templates_t *t = mail_templates_load(NULL, &overridden, err, sizeof(err));
    mail_from_t from;
    CHECK(mail_from_parse("Raikoo <no-reply@raikoo.local>", &from, err, sizeof(err)) == 0);
    char *msg = t ? mail_render(t, &from, "https://default.example", &job, "ABCDEFGHJKMN", 1796000000, err,
                                sizeof(err))
                  : NULL;
    CHECK(msg != NULL);
    if (msg) {
        unsoft(msg);
        CHECK(strstr(msg, "Content-Language: de\r\n") != NULL);
        CHECK(strstr(msg, "Subject: Einladung zur Organisation Acme X-Evil: 1 auf Raikoo\r\n") != NULL);
        CHECK(strstr(msg, "Guten Tag Bob Bcc: eve@example.com,") != NULL);
        CHECK(strstr(msg, "als Benutzerverwalter beizutreten") != NULL);
        CHECK(strstr(msg, "\r\nBest=C3=A4tigungscode: ABCD-EFGH-JKMN\r\n") != NULL);
        CHECK(strstr(msg, "G=C3=BCltig bis: 4. Dezember 2026, 20:30 UTC\r\n") != NULL);
        CHECK(strstr(msg, "https://org.example/invitations/22222222-2222-4222-8222-222222222222") != NULL);
        CHECK(strstr(msg, "default.example") == NULL);
        free(msg);
    }
    mail_job_free(&job);
    mail_from_free(&from);
    mail_templates_free(t);
}

static void a_reminder_job_round_trips_and_renders_without_a_code(void) {
    mail_job_t in = {.job_id = "66666666-6666-4666-8666-666666666666",
                     .invitation_id = "22222222-2222-4222-8222-222222222222",
                     .org_id = "55555555-5555-4555-8555-555555555555",
                     .org_name = "Acme",
                     .kind = "new",
                     .name = "Bob",
                     .inviter_name = "Alice",
                     .inviter_email = "alice@example.com",
                     .expires_at = "2026-12-04T20:30:00.000Z",
                     .invitation_job_id = "11111111-1111-4111-8111-111111111111",
                     .grant_owner = 1};
    snprintf(in.email, sizeof(in.email), "bob@example.com");
    char *text = mail_reminder_build(&in);
    CHECK(text != NULL && strstr(text, "raikoo.mail.InvitationReminder.v1") && !strstr(text, "sealed_code") &&
          !strstr(text, "actorid") && !strstr(text, "correlationid"));
    mail_job_t job;
    int identified = 0, overridden = 0;
    char err[256];
    CHECK(text && mail_job_parse(text, strlen(text), &job, &identified, err, sizeof(err)) == 0);
    CHECK(job.is_reminder && job.sealed_code == NULL && job.is_new && job.grant_owner);
    CHECK(job.invitation_job_id && strcmp(job.invitation_job_id, in.invitation_job_id) == 0);
    mail_templates_t *t = mail_templates_load(NULL, &overridden, err, sizeof(err));
    mail_from_t from;
    CHECK(mail_from_parse("Raikoo <no-reply@raikoo.local>", &from, err, sizeof(err)) == 0);
    char *msg =
        t ? mail_render(t, &from, "https://app.example", &job, NULL, 1796000000, err, sizeof(err)) : NULL;
    CHECK(msg != NULL);
    if (msg) {
        unsoft(msg);
        CHECK(strstr(msg, "Subject: Reminder: your invitation to Acme on Raikoo expires soon\r\n") != NULL);
        CHECK(strstr(msg, "expires on December 4, 2026, 20:30 UTC.") != NULL);
        CHECK(strstr(msg, "as owner.") != NULL);
        CHECK(strstr(msg, "to resend the invitation") != NULL);
        CHECK(strstr(msg, "One-time password:") == NULL);
        CHECK(strstr(msg, "https://app.example/invitations/22222222-2222-4222-8222-222222222222") != NULL);
        free(msg);
    }
    mail_job_free(&job);
    free(text);
    /* A reminder carries no sealed code, and an invitation job no invitation_job_id. */
    static const char *const bad[][2] = {
        {"\"invitation_job_id\"", "\"sealed_code\""},
        {"/raikoo/expiry-worker", "/raikoo/command-worker"},
        {"\"invitation_job_id\":\"11111111", "\"invitation_job_id\":\"x1111111"},
    };
    in.locale = "de";
    text = mail_reminder_build(&in);
    for (size_t i = 0; text && i < sizeof(bad) / sizeof(bad[0]); i++) {
        char buf[4096];
        char *at = strstr(text, bad[i][0]);
        CHECK(at != NULL);
        if (!at)
            continue;
        snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - text), text, bad[i][1], at + strlen(bad[i][0]));
        CHECK(mail_job_parse(buf, strlen(buf), &job, &identified, err, sizeof(err)) == -1 && identified);
        mail_job_free(&job);
    }
    CHECK(text && mail_job_parse(text, strlen(text), &job, &identified, err, sizeof(err)) == 0);
    msg = t && text ? mail_render(t, &from, "https://app.example", &job, NULL, 1796000000, err, sizeof(err))
                    : NULL;
    CHECK(msg && strstr(unsoft(msg), "Content-Language: de\r\n") &&
          strstr(msg, "am 4. Dezember 2026, 20:30 UTC ab"));
    free(msg);
    mail_job_free(&job);
    free(text);
    mail_from_free(&from);
    mail_templates_free(t);
}

const unit_test_t mail_tests[] = {
    {"mail: clean replaces control characters and bad UTF-8", clean_replaces_control_characters_and_bad_utf8},
    {"mail: header text encodes non-ASCII and folds", header_text_encodes_non_ascii_and_folds},
    {"mail: mailbox quotes or encodes the display name", mailbox_quotes_or_encodes_the_display_name},
    {"mail: quoted-printable", quoted_printable_keeps_lines_short_and_encodes_what_it_must},
    {"mail: HTML escape", html_escape_escapes_markup},
    {"mail: mail.from", from_reads_name_and_address},
    {"mail: render makes a safe multipart message", render_makes_a_safe_multipart_message},
    {"mail: malformed jobs", malformed_jobs_say_why_and_whether_they_name_an_invitation},
    {"mail: templates are checked when loaded", templates_are_checked_when_loaded},
    {"mail: dates in the locale's words", dates_are_written_in_the_locales_words},
    {"mail: locale lookup falls back to the language, then English",
     locale_lookup_falls_back_to_the_language_then_english},
    {"mail: a German job renders in German, with role and link",
     german_jobs_render_in_german_with_the_role_and_link},
    {"mail: a reminder job round-trips and renders without a code",
     a_reminder_job_round_trips_and_renders_without_a_code},
    {"mail: long headers are folded, encoded-words within 75",
     long_headers_are_folded_and_encoded_words_stay_within_75},
    {"mail: quoted-printable escapes From after a soft break",
     quoted_printable_escapes_from_after_a_soft_break},
    {"mail: the job parser holds every rule of the schema", job_parser_holds_every_rule_of_the_schema},
    {NULL, NULL},
};
