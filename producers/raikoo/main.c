/* raikoo: the command-line front of the producer library, plus the operational commands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "secret.h"

static const cli_cmd_t commands[] = {
    {"migrate", cmd_migrate, "", "apply the SQL migrations (harmless to repeat)"},
    {"topics", cmd_topics, "create", "create the Kafka topics (harmless to repeat)"},
    {"keygen", cmd_keygen, "[--dir DIR]", "write the mailer key pair and the code pepper (never overwrites)"},
    {"bootstrap-admin", cmd_bootstrap_admin, "--email E [--name N]", "create or find the system admin; print its id"},
    {"config", cmd_config, "", "print every configuration key, its variable and its current value"},
    {NULL, NULL, NULL, NULL},
};

const cli_cmd_t *cli_find(const char *name) {
    for (const cli_cmd_t *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

int cli_usage(const cli_cmd_t *cmd, int mistake) {
    FILE *f = mistake ? stderr : stdout;
    fprintf(f, "usage: raikoo %s %s [--config FILE]\n  %s\n", cmd->name, cmd->usage, cmd->summary);
    return mistake ? EXIT_USAGE : EXIT_ACCEPTED;
}

int cli_conf_load(conf_t *c, int *argc, char **argv) {
    const char *path = NULL;
    int j = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc) {
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else {
            argv[j++] = argv[i];
        }
    }
    argv[j] = NULL;
    *argc = j;
    char err[512];
    if (conf_load(c, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo: %s\n", err);
        return -1;
    }
    return 0;
}

static void usage_all(FILE *f) {
    fprintf(f, "usage: raikoo <command> [options]   (raikoo <command> --help for its options)\n\n");
    for (const cli_cmd_t *c = commands; c->name; c++)
        fprintf(f, "  %-18s %s\n", c->name, c->summary);
    fprintf(f, "\nExit status: 0 accepted, 1 rejected, 2 usage error, 3 infrastructure (unreachable, timeout).\n"
               "Configuration: --config FILE, RAIKOO_* variables; `raikoo config` lists them.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage_all(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_ACCEPTED;
    }
    const cli_cmd_t *cmd = cli_find(argv[1]);
    if (!cmd) {
        fprintf(stderr, "raikoo: unknown command \"%s\"\n", argv[1]);
        usage_all(stderr);
        return EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return cli_usage(cmd, 0);
    char err[256];
    if (secret_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo: %s\n", err);
        return EXIT_INFRA;
    }
    conf_t *c = conf_new();
    int sub_argc = argc - 1;
    if (cli_conf_load(c, &sub_argc, argv + 1) != 0) {
        conf_free(c);
        return EXIT_USAGE;
    }
    log_init("raikoo", conf_get(c, "log.level"));
    int rc = cmd->run(sub_argc, argv + 1, c);
    conf_free(c);
    return rc;
}
