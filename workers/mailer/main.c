/* raikoo-mailer: sends the invitation e-mails of topic.mail over SMTP (the work is in lib/svc/mailer.c). */
#include "conf.h"
#include "exitstatus.h"
#include "health.h"
#include "instruments.h"
#include "log.h"
#include "mailer.h"
#include "secret.h"
#include "smtp.h"
#include "worker.h"

int main(int argc, char **argv) {
    conf_t *c = conf_new();
    if (worker_init(
            &argc, argv, c, "mailer",
            "Consumes mail jobs (topic.mail, consumer group group.mail), renders the invitation e-mails and\n"
            "sends them over SMTP (smtp.*, mail.*); records every delivery in PostgreSQL and retries "
            "transient\n"
            "failures with backoff. Needs keys.dir/mailer.sk. SIGTERM or SIGINT: finish the batch, commit,\n"
            "leave the group, exit 0.") != 0) {
        conf_free(c);
        return worker_exit_status();
    }
    health_require(HEALTH_POSTGRESQL | HEALTH_KAFKA | HEALTH_PARTITIONS); /* what /readyz waits for */
    instruments_init_mail();
    char err[256];
    int rc = EXIT_INFRA;
    if (secret_init(err, sizeof(err)) != 0) {
        rc = worker_gave_up(err);
    } else {
        smtp_init();
        rc = mailer_run(c);
    }
    conf_free(c);
    return rc;
}
