/* Unit tests of the configuration: defaults, file parsing with file:line errors, environment. */
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
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

const unit_test_t conf_tests[] = {
    {"conf: defaults point at the local stack", defaults_point_at_the_local_stack},
    {"conf: file sets keys and passes kafka properties", file_sets_keys_and_passes_kafka_properties},
    {"conf: file errors name file and line", file_errors_name_file_and_line},
    {"conf: environment overrides and maps kafka", environment_overrides_and_maps_kafka},
    {NULL, NULL},
};
