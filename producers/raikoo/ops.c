/* raikoo operational commands: migrate, topics create, keygen, bootstrap-admin, config. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "email.h"
#include "kafka.h"
#include "secret.h"

int cmd_migrate(int argc, char **argv, conf_t *c) {
    (void)argv;
    if (argc != 1)
        return cli_usage(cli_find("migrate"), 1);
    char err[1024];
    PGconn *db = db_connect(c, err, sizeof(err));
    if (!db) {
        fprintf(stderr, "raikoo migrate: %s\n", err);
        return EXIT_INFRA;
    }
    int applied = 0;
    int rc = db_migrate(db, &applied, err, sizeof(err));
    PQfinish(db);
    if (rc != 0) {
        fprintf(stderr, "raikoo migrate: %s\n", err);
        return EXIT_INFRA;
    }
    printf("migrate: %d migration%s applied, schema up to date\n", applied, applied == 1 ? "" : "s");
    return EXIT_ACCEPTED;
}

int cmd_topics(int argc, char **argv, conf_t *c) {
    if (argc != 2 || strcmp(argv[1], "create") != 0)
        return cli_usage(cli_find("topics"), 1);
    char err[1024];
    int created = 0;
    if (kafka_topics_create(c, &created, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo topics create: %s\n", err);
        return EXIT_INFRA;
    }
    printf("topics: %d created, %d already there (%s, %s, %s, %s, %s)\n", created, 5 - created,
           conf_get(c, "topic.commands"), conf_get(c, "topic.events"), conf_get(c, "topic.results"),
           conf_get(c, "topic.mail"), conf_get(c, "topic.dlq"));
    return EXIT_ACCEPTED;
}

int cmd_keygen(int argc, char **argv, conf_t *c) {
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'}, {NULL, 0, NULL, 0}};
    const char *dir = conf_get(c, "keys.dir");
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'd')
            dir = optarg;
        else
            return cli_usage(cli_find("keygen"), 1);
    }
    if (optind != argc)
        return cli_usage(cli_find("keygen"), 1);
    char err[1024];
    if (secret_keygen(dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo keygen: %s\n", err);
        return EXIT_REJECTED;
    }
    printf("keygen: wrote %s/mailer.pk, %s/mailer.sk (mailer only) and %s/code.pepper (command worker)\n",
           dir, dir, dir);
    return EXIT_ACCEPTED;
}

int cmd_bootstrap_admin(int argc, char **argv, conf_t *c) {
    static const struct option opts[] = {
        {"email", required_argument, NULL, 'e'}, {"name", required_argument, NULL, 'n'}, {NULL, 0, NULL, 0}};
    const char *email_in = NULL, *name = "Administrator";
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'e')
            email_in = optarg;
        else if (o == 'n')
            name = optarg;
        else
            return cli_usage(cli_find("bootstrap-admin"), 1);
    }
    if (!email_in || optind != argc)
        return cli_usage(cli_find("bootstrap-admin"), 1);
    char email[EMAIL_MAX + 1], err[1024];
    if (email_normalize(email_in, email, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo bootstrap-admin: %s\n", err);
        return EXIT_USAGE;
    }
    PGconn *db = db_connect_migrated(c, err, sizeof(err));
    if (!db) {
        fprintf(stderr, "raikoo bootstrap-admin: %s\n", err);
        return EXIT_INFRA;
    }
    char id[UUID_BUF];
    uuid_generate(id);
    const char *p[3] = {id, email, name};
    /* Finds the account by address (making it an admin) or creates it; one statement, safe to repeat. */
    PGresult *res = db_exec(db,
                            "INSERT INTO users (id, email, username, name, enabled, is_admin, activated_at)"
                            " VALUES ($1, $2, $2, $3, true, true, now())"
                            " ON CONFLICT (lower(email)) DO UPDATE SET is_admin = true"
                            " RETURNING id",
                            3, p, err, sizeof(err));
    PQfinish(db);
    if (!res) {
        fprintf(stderr, "raikoo bootstrap-admin: %s\n", err);
        return EXIT_INFRA;
    }
    printf("%s\n", PQgetvalue(res, 0, 0));
    PQclear(res);
    return EXIT_ACCEPTED;
}

int cmd_config(int argc, char **argv, conf_t *c) {
    if (argc == 2 && strcmp(argv[1], "--markdown") == 0) {
        conf_print_markdown(stdout, kafka_defaults_markdown); /* defaults only: the same on every machine */
        return EXIT_ACCEPTED;
    }
    if (argc != 1)
        return cli_usage(cli_find("config"), 1);
    conf_print_reference(c, stdout);
    return EXIT_ACCEPTED;
}
