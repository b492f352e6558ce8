/* An upstream app in miniature: invites a new user into an organisation through the Raikoo producer
 * library and prints the command's result. Built with `pkg-config raikoo-producer` alone (see Makefile).
 *
 *   invite [-b HOST:PORT] -a ACTOR -o ORG -e EMAIL [-n NAME] [-t SECONDS]
 *
 * Prints "accepted InviteNewUser command_id=... invitation_id=... user_id=..." and exits 0, or
 * "rejected <code>: <message>" and exits 1; 2 on a usage error or an invalid command, 3 when Kafka fails or
 * no result comes in time. -b defaults to $RAIKOO_KAFKA_BOOTSTRAP_SERVERS, then to the library's default. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>
#include <raikoo/producer.h>

static void usage(void) {
    fprintf(stderr,
            "usage: invite [-b HOST:PORT] -a ACTOR_UUID -o ORG_UUID -e EMAIL [-n NAME] [-t SECONDS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *bootstrap = getenv("RAIKOO_KAFKA_BOOTSTRAP_SERVERS");
    const char *actor = NULL, *org = NULL, *email = NULL, *name = NULL;
    int timeout_s = 30, opt;
    while ((opt = getopt(argc, argv, "b:a:o:e:n:t:")) != -1) {
        switch (opt) {
            case 'b': bootstrap = optarg; break;
            case 'a': actor = optarg; break;
            case 'o': org = optarg; break;
            case 'e': email = optarg; break;
            case 'n': name = optarg; break;
            case 't': timeout_s = atoi(optarg); break;
            default: usage();
        }
    }
    if (!actor || !org || !email || optind != argc || timeout_s <= 0)
        usage();

    /* The settings an app would read from its own configuration. */
    raikoo_setting_t settings[] = {{"kafka.bootstrap.servers", bootstrap}};
    char err[512];
    raikoo_producer_t *p = raikoo_producer_new(settings, bootstrap && *bootstrap ? 1 : 0, err, sizeof(err));
    if (!p) {
        fprintf(stderr, "invite: %s\n", err);
        return 3;
    }
    raikoo_producer_set_source(p, "/examples/invite");
    /* Before publishing: from now on the results topic is read, so ours cannot be missed. */
    if (raikoo_results_follow(p, err, sizeof(err)) != 0) {
        fprintf(stderr, "invite: %s\n", err);
        raikoo_producer_free(p);
        return 3;
    }

    json_t *data = json_pack("{s:s, s:s}", "org_id", org, "email", email);
    if (name)
        json_object_set_new(data, "name", json_string(name));
    char id[RAIKOO_ID_SIZE];
    int rc = raikoo_command_publish(p, RAIKOO_CMD_INVITE_NEW_USER, actor, data, id, err,
                                    sizeof(err)); /* steals data */
    if (rc != RAIKOO_OK) {
        fprintf(stderr, "invite: %s\n", err);
        raikoo_producer_free(p);
        return rc == RAIKOO_ERR_INVALID ? 2 : 3;
    }

    raikoo_result_t r;
    rc = raikoo_command_wait(p, id, timeout_s * 1000, &r, err, sizeof(err));
    if (rc != 1) {
        fprintf(stderr, "invite: %s\n", rc == 0 ? "no result in time: is the command worker running?" : err);
        raikoo_producer_free(p);
        return 3;
    }
    int status;
    if (r.accepted) {
        printf("accepted %s command_id=%s invitation_id=%s user_id=%s\n", r.command_type, r.command_id,
               r.invitation_id ? r.invitation_id : "-", r.user_id ? r.user_id : "-");
        status = 0;
    } else {
        printf("rejected %s: %s\n", r.code ? r.code : "?", r.message);
        status = 1;
    }
    raikoo_result_clear(&r);
    raikoo_producer_free(p);
    return status;
}
