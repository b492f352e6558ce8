/* raikoo-outbox-relay: publishes the outbox to Kafka (events, results, mail jobs). One relay is active at
 * a time, holding a PostgreSQL advisory lock; the others stand by to take over. */
#include "conf.h"
#include "exitstatus.h"
#include "health.h"
#include "relay.h"
#include "worker.h"

int main(int argc, char **argv) {
    conf_t *c = conf_new();
    if (worker_init(
            &argc, argv, c, "outbox-relay",
            "Publishes outbox rows to Kafka with an idempotent producer and deletes those delivered.\n"
            "Run two for fail-over: one is active (advisory lock), the other stands by.") != 0) {
        conf_free(c);
        return worker_exit_status();
    }
    health_require(HEALTH_POSTGRESQL | HEALTH_KAFKA); /* what /readyz waits for */
    int rc = relay_run(c);
    conf_free(c);
    return rc;
}
