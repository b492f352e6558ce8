/* raikoo-expiry-worker: every expiry.interval.ms, marks pending invitations past their expiry as expired
 * (lib/svc/expiry.c), in batches of expiry.batch, then queues the reminders that are due (lib/svc/reminder.c);
 * several replicas share the work. */

#include "conf.h"
#include "exitstatus.h"
#include "expiry.h"
#include "health.h"
#include "instruments.h"
#include "worker.h"

int main(int argc, char **argv) {
    conf_t *c = conf_new();
    if (worker_init(
            &argc, argv, c, "expiry-worker",
            "Every expiry.interval.ms, marks pending invitations whose expires_at has passed as expired,\n"
            "expiry.batch at a time, each with an InvitationExpired event through the outbox; queues one\n"
            "reminder e-mail per invitation code reminder.before its expiry (InvitationReminderSent).\n"
            "Several replicas are safe. SIGTERM or SIGINT: finish the batch, exit 0.") != 0) {
        conf_free(c);
        return worker_exit_status();
    }
    health_require(HEALTH_POSTGRESQL); /* what /readyz waits for */
    instruments_init_expiry();
    int rc = expiry_run(c);
    conf_free(c);
    return rc;
}
