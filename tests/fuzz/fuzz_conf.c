/* Fuzzes the configuration file parser (conf_load_file) with the input as the file's contents, then reads
 * every known key as the programs do (conf_get_long on the numeric ones, conf_each_kafka) and prints the
 * reference. Invariants: no crash or leak; errors are terminated, valid UTF-8 when the file is, and name the file and line;
 * the printed reference never shows the SMTP password (it prints the same whatever the password is). */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fd = memfd_create("raikoo-fuzz-conf", 0);
    if (fd < 0) {
        perror("memfd_create");
        exit(1);
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

static int count_kafka(void *arg, const char *prop, const char *value) {
    (void)value;
    FUZZ_ASSERT(*prop, "an empty kafka property");
    ++*(int *)arg;
    return 0;
}

/* The reference printed with c as it is, into a new string (free()). */
static char *reference(const conf_t *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    FUZZ_ASSERT(f, "open_memstream");
    conf_print_reference(c, f);
    fclose(f);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    conf_t *c = conf_new();
    char err[512];
    err[0] = '\0';
    /* An operator's file: the error must be valid UTF-8 whenever the file is (never cut in a character). */
    int file_utf8 = utf8_valid((const char *)data, size);
    if (conf_load_file(c, path, err, sizeof(err)) != 0) {
        if (file_utf8)
            fuzz_check_text("conf_load_file error", err, sizeof(err));
        FUZZ_ASSERT(strncmp(err, path, strlen(path)) == 0, "error does not name the file: %s", err);
    }
    for (const conf_key_t *k = conf_keys; k->key; k++) {
        const char *v = conf_get(c, k->key);
        FUZZ_ASSERT(v, "known key %s lost its value", k->key);
        long x;
        char why[512];
        why[0] = '\0';
        if (conf_get_long(c, k->key, 0, 1000000, &x, why, sizeof(why)) != 0) {
            if (file_utf8)
                fuzz_check_text("conf_get_long error", why, sizeof(why));
        } else {
            FUZZ_ASSERT(x >= 0 && x <= 1000000, "conf_get_long out of its range");
        }
    }
    int n = 0;
    conf_each_kafka(c, count_kafka, &n);

    const char *pw = conf_get(c, "smtp.password");
    if (pw && *pw) {
        char *a = reference(c), e2[64];
        conf_set(c, "smtp.password", "another-password", e2, sizeof(e2));
        char *b = reference(c);
        FUZZ_ASSERT(strcmp(a, b) == 0, "the printed configuration depends on smtp.password");
        free(a);
        free(b);
    }
    conf_free(c);
    return 0;
}
