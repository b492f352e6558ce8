/* Unit tests of the configuration: defaults, file parsing with file:line errors, environment. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "unit.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void defaults_point_at_the_local_stack(void) {
    conf_t *c = conf_new();
    CHECK_STR(conf_get(c, "kafka.bootstrap.servers"), "127.0.0.1:19092");
    CHECK(strstr(conf_get(c, "db.url"), "port=55432") != NULL);
    CHECK_STR(conf_get(c, "topic.commands"), "raikoo.commands");
    conf_free(c);
}

static void file_sets_keys_and_passes_kafka_properties(void) {
    char path[] = "/tmp/raikoo-conf-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_file(path, "# comment\n\n batch.max = 42 \nkafka.security.protocol=plaintext\n");
    conf_t *c = conf_new();
    char err[256] = "";
    CHECK(conf_load_file(c, path, err, sizeof(err)) == 0);
    long v = 0;
    CHECK(conf_get_long(c, "batch.max", 1, 100000, &v, err, sizeof(err)) == 0 && v == 42);
    CHECK_STR(conf_get(c, "kafka.security.protocol"), "plaintext");
    conf_free(c);
    unlink(path);
}

static void file_errors_name_file_and_line(void) {
    char path[] = "/tmp/raikoo-conf-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_file(path, "batch.max=1\nno.such.key=2\n");
    conf_t *c = conf_new();
    char err[512] = "", want[512];
    CHECK(conf_load_file(c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s:2: unknown configuration key", path);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    write_file(path, "just words\n");
    CHECK(conf_load_file(c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s:1: expected key=value", path);
    CHECK_STR(err, want);
    conf_free(c);
    unlink(path);
}

static void environment_overrides_and_maps_kafka(void) {
    setenv("RAIKOO_BATCH_MAX", "7", 1);
    setenv("RAIKOO_KAFKA_CLIENT_ID", "unit", 1);
    setenv("RAIKOO_UNRELATED_THING", "x", 1);
    conf_t *c = conf_new();
    char err[256];
    CHECK(conf_load_env(c, err, sizeof(err)) == 0);
    CHECK_STR(conf_get(c, "batch.max"), "7");
    CHECK_STR(conf_get(c, "kafka.client.id"), "unit");
    long v;
    CHECK(conf_set(c, "batch.max", "x", err, sizeof(err)) == 0);
    CHECK(conf_get_long(c, "batch.max", 1, 10, &v, err, sizeof(err)) == -1);
    conf_free(c);
    unsetenv("RAIKOO_BATCH_MAX");
    unsetenv("RAIKOO_KAFKA_CLIENT_ID");
    unsetenv("RAIKOO_UNRELATED_THING");
}

/* Every printed form of a connection string hides its password; nothing else is lost. */
static void connection_strings_are_printed_without_their_password(void) {
    static const struct {
        const char *url, *want;
    } cases[] = {
        {"host=h port=1 user=u password=s3cretpw dbname=x", "host=h port=1 user=u password=*** dbname=x"},
        {"password = s3cretpw host=h", "password = *** host=h"},
        {"host=h password='s3 cr\\'etpw' dbname=x", "host=h password=*** dbname=x"},
        {"host=h sslpassword=keypass1 dbname=x", "host=h sslpassword=*** dbname=x"},
        {"postgresql://u:s3cretpw@h:5432/db", "postgresql://u:***@h:5432/db"},
        {"postgres://u:s3%40cret@h/db?sslmode=disable", "postgres://u:***@h/db?sslmode=disable"},
        {"postgresql://u:p/w@rd@h/db", "postgresql://u:***@h/db"},
        {"postgresql://u@h/db?sslmode=disable&password=s3cretpw&connect_timeout=5",
         "postgresql://u@h/db?sslmode=disable&password=***&connect_timeout=5"},
        {"postgresql://h:5432/db?password=s3cretpw", "postgresql://h:5432/db?password=***"},
        {"host=127.0.0.1 port=55432 dbname=raikoo user=raikoo",
         "host=127.0.0.1 port=55432 dbname=raikoo user=raikoo"},
        {"postgresql://u@h:5432/db", "postgresql://u@h:5432/db"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = conf_mask_conninfo(cases[i].url, cases[i].url);
        CHECK_STR(got, cases[i].want);
        free(got);
    }
    /* libpq's errors may quote a piece of the string: the password is hidden as written and decoded. */
    const char *url = "postgresql://u:s3%zzcret@h/db";
    char *got = conf_mask_conninfo("invalid percent-encoded token: \"s3%zzcret\"", url);
    CHECK_STR(got, "invalid percent-encoded token: \"***\"");
    free(got);
    got = conf_mask_conninfo("user u: no s3@cret here", "postgresql://u:s3%40cret@h/db");
    CHECK_STR(got, "user u: no *** here");
    free(got);
    got = conf_mask_conninfo("missing \"=\" after \"s3 cr'etpw\"", "host=h password='s3 cr\\'etpw'");
    CHECK_STR(got, "missing \"=\" after \"***\"");
    free(got);
    /* A password too short to mask safely everywhere is still masked where it is written. */
    got = conf_mask_conninfo("db.url \"host=h password=ab\": ab", "host=h password=ab");
    CHECK_STR(got, "db.url \"host=h password=***\": ab");
    free(got);
    got = conf_mask_conninfo(NULL, NULL);
    CHECK_STR(got, "");
    free(got);
}

/* Runs fn with stderr going to a file; returns what it wrote (caller frees). */
static char *capture_stderr(void (*fn)(void)) {
    char path[] = "/tmp/raikoo-log-XXXXXX";
    int fd = mkstemp(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *out = calloc(1, 8192);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, out, 8191);
    (void)n;
    close(fd);
    unlink(path);
    return out;
}

static void log_a_libpq_error(void) {
    log_init("unit", "info");
    log_error(NULL, "PostgreSQL unreachable: %s", "FATAL: bad value \"Pw-0f-db-url\" and smtp Smtp-Secret-9");
}

static void loaded_passwords_never_reach_a_log_line(void) {
    setenv("RAIKOO_DB_URL", "postgresql://u:Pw-0f-db-url@127.0.0.1:1/db", 1);
    setenv("RAIKOO_SMTP_PASSWORD", "Smtp-Secret-9", 1);
    conf_t *c = conf_new();
    char err[512];
    CHECK(conf_load(c, NULL, err, sizeof(err)) == 0);
    char *out = capture_stderr(log_a_libpq_error);
    CHECK(strstr(out, "level=error") != NULL);
    CHECK(strstr(out, "bad value \\\"***\\\" and smtp ***") != NULL);
    CHECK(strstr(out, "Pw-0f-db-url") == NULL && strstr(out, "Smtp-Secret-9") == NULL);
    free(out);
    conf_free(c);
    unsetenv("RAIKOO_DB_URL");
    unsetenv("RAIKOO_SMTP_PASSWORD");
}

static void a_directory_or_missing_file_is_not_an_empty_configuration(void) {
    conf_t *c = conf_new();
    char err[512] = "";
    CHECK(conf_load(c, "/tmp", err, sizeof(err)) == -1);
    CHECK(strstr(err, "/tmp: is a directory") != NULL);
    CHECK(conf_load(c, "/nonexistent/raikoo.conf", err, sizeof(err)) == -1);
    CHECK(strstr(err, "/nonexistent/raikoo.conf: No such file or directory") != NULL);
    CHECK(conf_load(c, "", err, sizeof(err)) == -1);
    CHECK_STR(err, "--config: no file name given");
    conf_free(c);
}

static void a_kafka_property_librdkafka_refuses_names_where_it_came_from(void) {
    setenv("RAIKOO_KAFKA_LIBS", "/opt/kafka/libs", 1);
    conf_t *c = conf_new();
    char err[1024] = "";
    CHECK(conf_load(c, NULL, err, sizeof(err)) == -1);
    CHECK(strncmp(err, "RAIKOO_KAFKA_LIBS: librdkafka refuses libs: ", 44) == 0);
    CHECK(strstr(err, "RAIKOO_STACK_KAFKA_LIBS") != NULL);
    CHECK_STR(conf_origin(c, "kafka.libs"), "RAIKOO_KAFKA_LIBS");
    conf_free(c);
    unsetenv("RAIKOO_KAFKA_LIBS");

    char path[] = "/tmp/raikoo-conf-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_file(path, "kafka.client.id = unit\nkafka.no.such.thing = 1\n");
    c = conf_new();
    CHECK(conf_load(c, path, err, sizeof(err)) == -1);
    char want[512];
    snprintf(want, sizeof(want), "%s:2: librdkafka refuses no.such.thing: ", path);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    conf_free(c);
    write_file(path, "kafka.client.id = unit\n");
    c = conf_new();
    CHECK(conf_load(c, path, err, sizeof(err)) == 0);
    conf_free(c);
    unlink(path);
}

static void duration_takes_seconds_or_a_unit(void) {
    const long month = 30L * 86400L;
    long v = -1;
    char err[256];
    conf_t *c = conf_new();
    static const struct {
        const char *text;
        long seconds;
    } good[] = {{"86400", 86400}, {"0", 0},    {"90m", 5400},        {"24h", 86400},
                {"2d", 172800},   {"30s", 30}, {"30d", 30L * 86400}, {"2592000", 2592000}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK(conf_set(c, "reminder.before", good[i].text, err, sizeof(err)) == 0);
        v = -1;
        CHECK(conf_get_duration(c, "reminder.before", month, &v, err, sizeof(err)) == 0 &&
              v == good[i].seconds);
    }
    static const char *const bad[] = {"",     "-1",      "1w", "h", "24 h", "31d", "99999999999999999999",
                                      "1.5h", "2592001", " 5", NULL};
    for (const char *const *b = bad; *b; b++) {
        CHECK(conf_set(c, "reminder.before", *b, err, sizeof(err)) == 0);
        CHECK(conf_get_duration(c, "reminder.before", month, &v, err, sizeof(err)) == -1);
        CHECK_STR(err,
                  "reminder.before: expected seconds or a number with s, m, h or d (e.g. 86400, 24h), at "
                  "most 30 days");
    }
    /* The limit is said in the largest whole unit. */
    CHECK(conf_set(c, "reminder.before", "2h", err, sizeof(err)) == 0);
    CHECK(conf_get_duration(c, "reminder.before", 90L * 60L, &v, err, sizeof(err)) == -1);
    CHECK(strstr(err, "at most 90 minutes") != NULL);
    CHECK(conf_get_duration(c, "reminder.before", 1, &v, err, sizeof(err)) == -1);
    CHECK(strstr(err, "at most 1 second") != NULL);
    conf_free(c);
}

const unit_test_t conf_tests[] = {
    {"conf: defaults point at the local stack", defaults_point_at_the_local_stack},
    {"conf: file sets keys and passes kafka properties", file_sets_keys_and_passes_kafka_properties},
    {"conf: file errors name file and line", file_errors_name_file_and_line},
    {"conf: environment overrides and maps kafka", environment_overrides_and_maps_kafka},
    {"conf: connection strings are printed without their password",
     connection_strings_are_printed_without_their_password},
    {"conf: loaded passwords never reach a log line", loaded_passwords_never_reach_a_log_line},
    {"conf: a directory or missing file is not an empty configuration",
     a_directory_or_missing_file_is_not_an_empty_configuration},
    {"conf: a kafka property librdkafka refuses names where it came from",
     a_kafka_property_librdkafka_refuses_names_where_it_came_from},
    {"conf: a duration takes seconds or a unit", duration_takes_seconds_or_a_unit},
    {NULL, NULL},
};
