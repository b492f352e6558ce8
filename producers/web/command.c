/* raikoo-web: publishing a command through the producer library and waiting for its result. The producer
 * is made when first needed (and again after it failed), so a broker that is away shows as a page saying
 * to try again, never as an exit. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "web.h"

static raikoo_producer_t *producer(web_app_t *app, char *msg, size_t msg_size) {
    char err[1024];
    if (app->pr)
        return app->pr;
    raikoo_producer_t *p = raikoo_producer_new_conf(app->conf, err, sizeof(err));
    if (p && raikoo_results_follow(p, err, sizeof(err)) != 0) {
        raikoo_producer_free(p);
        p = NULL;
    }
    if (!p) {
        log_warn(NULL, "Kafka: %s", err);
        snprintf(msg, msg_size,
                 "Raikoo's message broker cannot be reached right now: try again in a moment.");
        return NULL;
    }
    raikoo_producer_set_source(p, WEB_SOURCE);
    app->pr = p;
    return p;
}

int web_command(web_app_t *app, raikoo_command_type_t type, const char *actor, json_t *data,
                raikoo_result_t *out, char *msg, size_t msg_size) {
    char err[1024], id[RAIKOO_ID_SIZE] = "";
    memset(out, 0, sizeof(*out));
    raikoo_producer_t *p = producer(app, msg, msg_size);
    if (!p) {
        json_decref(data);
        return 0;
    }
    int rc = raikoo_command_publish(p, type, actor, data, id, err, sizeof(err));
    if (rc == RAIKOO_ERR_INVALID) {
        /* The same reason the worker would give; it names fields, never their values' secrets. */
        snprintf(msg, msg_size, "The request was refused: %s.", err);
        return 0;
    }
    if (rc != 0) {
        log_warn(NULL, "publishing %s: %s", raikoo_command_type_name(type), err);
        raikoo_producer_free(app->pr);
        app->pr = NULL;
        snprintf(msg, msg_size,
                 "Raikoo's message broker cannot be reached right now: try again in a moment.");
        return 0;
    }
    rc = raikoo_command_wait(p, id, (int)app->result_timeout_ms, out, err, sizeof(err));
    if (rc == 1) {
        log_info(id, "%s %s%s%s", raikoo_command_type_name(type), out->accepted ? "accepted" : "rejected: ",
                 out->accepted ? "" : (out->code ? out->code : "?"), "");
        return 1;
    }
    if (rc == 0) {
        log_warn(id, "no result for %s within %ld ms", raikoo_command_type_name(type),
                 app->result_timeout_ms);
        snprintf(msg, msg_size,
                 "Your request was sent but no answer came in time (is raikoo-command-worker running?): "
                 "reload the page in a moment to see whether it was done.");
        return 0;
    }
    log_warn(id, "waiting for the result of %s: %s", raikoo_command_type_name(type), err);
    raikoo_producer_free(app->pr);
    app->pr = NULL;
    snprintf(msg, msg_size, "Raikoo's message broker cannot be reached right now: try again in a moment.");
    return 0;
}
