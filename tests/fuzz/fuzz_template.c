/* Fuzzes the mail templates an operator supplies (mail.templates: lib/svc/template.c): the input's first byte
 * picks the file (invitation.subject, .txt or .html, modulo 3), the rest is its text, written into a
 * directory that mail_templates_load reads; a template it accepts renders one mail job. Invariants: an error
 * is terminated and valid UTF-8 when the file is; a message rendered from an accepted template keeps every
 * invariant of the built-in ones (tests/fuzz/fuzz_mail.c: CRLF only, lines of at most 998 bytes, 7-bit, the
 * headers and the two MIME parts). */
#define LLVMFuzzerTestOneInput fuzz_mail_one
#define LLVMFuzzerInitialize fuzz_mail_init
#include "fuzz_mail.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize

#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[64];
static mail_job_t job;
static const char JOB[] =
    "{\"specversion\":\"1.0\",\"id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"source\":\"/raikoo/"
    "command-worker\",\"datacontenttype\":\"application/"
    "json\",\"correlationid\":\"0d9c8b7a-6f5e-4d3c-9b2a-19f8e7d6c5b4\","
    "\"type\":\"raikoo.mail.InvitationEmail.v1\",\"time\":\"2026-01-01T00:00:00Z\",\"data\":{"
    "\"job_id\":\"6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"invitation_id\":\"0d9c8b7a-6f5e-4d3c-9b2a-"
    "19f8e7d6c5b4\","
    "\"org_id\":\"2c3d4e5f-6071-4b8c-9dae-1f2a3b4c5d6e\",\"org_name\":\"Acme "
    "\\u00e9\",\"email\":\"ann@example.com\","
    "\"name\":\"Ann\",\"inviter_name\":\"Bob\",\"inviter_email\":\"bob@example.com\",\"kind\":\"new\","
    "\"grant_owner\":true,\"expires_at\":\"2026-12-04T22:00:00Z\",\"sealed_code\":"
    "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}}";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_mail_init(argc, argv);
    snprintf(dir, sizeof(dir), "%s/raikoo-fuzz-template-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        exit(1);
    int identified = 0;
    char err[256];
    if (mail_job_parse(JOB, sizeof(JOB) - 1, &job, &identified, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_template: the job: %s\n", err);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[] = {"invitation.subject", "invitation.txt", "invitation.html"};
    if (size == 0)
        return 0;
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, names[data[0] % 3]);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    char err[512];
    err[0] = '\0';
    int overridden = 0;
    mail_templates_t *t = mail_templates_load(dir, &overridden, err, sizeof(err));
    unlink(path);
    if (!t) {
        FUZZ_ASSERT(strnlen(err, sizeof(err)) < sizeof(err), "error not terminated");
        if (utf8_valid((const char *)data + 1, size - 1))
            fuzz_check_text("mail_templates_load error", err, sizeof(err));
        return 0;
    }
    FUZZ_ASSERT(overridden == 1, "%d templates overridden", overridden);
    char rerr[256];
    rerr[0] = '\0';
    char *msg = mail_render(t, &from, "http://localhost:8080/accept", &job, "ABCDEFGHJKMN",
                            (time_t)1767225600, rerr, sizeof(rerr));
    if (msg) {
        check_message(msg);
        free(msg);
    } else {
        fuzz_check_text("mail_render reason", rerr, sizeof(rerr));
    }
    mail_templates_free(t);
    return 0;
}
