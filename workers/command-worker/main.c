/* raikoo-command-worker: consumes raikoo.commands in batches and applies each batch in one PostgreSQL
 * transaction, then commits the Kafka offsets; non-commands go to the dead-letter topic (the work is in
 * lib/svc/cmdproc.c). */
#include "cmdproc.h"
#include "conf.h"
#include "exitstatus.h"
#include "health.h"
#include "secret.h"
#include "worker.h"

int main(int argc, char **argv) {
    conf_t *c = conf_new();
    if (worker_init(
            &argc, argv, c, "command-worker",
            "Consumes raikoo.commands, applies each batch in one PostgreSQL transaction and writes results,\n"
            "events and mail jobs to the outbox. Scale out by starting more (one consumer group).") != 0) {
        conf_free(c);
        return worker_exit_status();
    }
    health_require(HEALTH_POSTGRESQL | HEALTH_KAFKA | HEALTH_PARTITIONS); /* what /readyz waits for */
    char err[256];
    int rc = EXIT_INFRA;
    if (secret_init(err, sizeof(err)) != 0)
        rc = worker_gave_up(err);
    else
        rc = cmdproc_run(c);
    conf_free(c);
    return rc;
}
