/* raikoo-audit-worker: records every event of topic.events once in the append-only, hash-chained audit_log
 * (the work is in lib/svc/audit.c). */
#include "audit.h"
#include "conf.h"
#include "exitstatus.h"
#include "health.h"
#include "secret.h"
#include "worker.h"

int main(int argc, char **argv) {
    conf_t *c = conf_new();
    if (worker_init(
            &argc, argv, c, "audit-worker",
            "Consumes topic.events (consumer group group.audit) into the append-only audit_log table:\n"
            "one row per event (by CloudEvents id), a SHA-256 chain per organization. Scale out by\n"
            "starting more (one consumer group). SIGTERM or SIGINT: finish the batch, commit, leave\n"
            "the group, exit 0.") != 0) {
        conf_free(c);
        return worker_exit_status();
    }
    health_require(HEALTH_POSTGRESQL | HEALTH_KAFKA | HEALTH_PARTITIONS); /* what /readyz waits for */
    char err[256];
    int rc = EXIT_INFRA;
    if (secret_init(err, sizeof(err)) != 0)
        rc = worker_gave_up(err);
    else
        rc = audit_run(c);
    conf_free(c);
    return rc;
}
