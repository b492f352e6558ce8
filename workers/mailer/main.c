/* raikoo-mailer: sends the invitation e-mails of topic.mail over SMTP (the work is in lib/mailer.c). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "mailer.h"
#include "secret.h"
#include "smtp.h"

static volatile sig_atomic_t run = 1;

static void on_signal(int sig) {
    (void)sig;
    if (!run)
        _exit(130); /* a second signal: the operator means it */
    run = 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: raikoo-mailer [--config FILE]\n"
               "  Consumes mail jobs (topic.mail, consumer group group.mail), renders the invitation e-mails and\n"
               "  sends them over SMTP; records every delivery in PostgreSQL and retries transient failures.\n"
               "  SIGTERM or SIGINT: finish the batch, commit, leave the group, exit 0.\n"
               "  Settings: smtp.*, mail.*, keys.dir (needs mailer.sk), db.url, kafka.*; `raikoo config` lists them.\n");
}

int main(int argc, char **argv) {
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config = argv[i] + 9;
        } else {
            fprintf(stderr, "raikoo-mailer: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char err[512];
    conf_t *c = conf_new();
    if (conf_load(c, config, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-mailer: %s\n", err);
        conf_free(c);
        return 2;
    }
    log_init("mailer", conf_get(c, "log.level"));
    if (secret_init(err, sizeof(err)) != 0) {
        log_error(NULL, "%s", err);
        conf_free(c);
        return 3;
    }
    smtp_init();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A server closing the connection must not kill us mid-write. */
    signal(SIGPIPE, SIG_IGN);
    int rc = mailer_run(c, &run);
    conf_free(c);
    return rc;
}
