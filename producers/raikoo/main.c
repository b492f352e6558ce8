/* raikoo: the command-line front of the producer library, plus the operational commands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "secret.h"

#define PUBLISH_HELP                                                                                         \
    "  --actor UUID      the acting user (required)\n"                                                       \
    "  --wait            wait for the command's result and print it\n"                                       \
    "  --json            print one JSON object (with --wait: the result's data)\n"                           \
    "Without --wait the command id is printed. Exit status: 0 accepted (or published), 1 rejected,\n"        \
    "2 usage error, 3 infrastructure (Kafka unreachable, no result within result.timeout.ms).\n"
#define PASSWORD_HELP                                                                                        \
    "  --password-stdin  read the password (one line) from standard input; it is hashed (Argon2id)\n"        \
    "                    before anything leaves this process\n"
/* The code is never an option: every local user sees a command line (ps). */
#define CODE_HELP(what, example)                                                                             \
    "  standard input    " what " from the e-mail, on the first line (on a terminal it is asked\n"           \
    "                    for, without echo); --code on the command line is refused. For example:\n"          \
    "                      " example "\n"
#define ACTIVATE_HELP                                                                                        \
    CODE_HELP("the one-time password",                                                                       \
              "printf '%s\\n%s\\n' \"$CODE\" 'a long passphrase' | raikoo activate --email E --wait")        \
    "                    The new password, on the second line (asked twice on a terminal), is hashed\n"      \
    "                    (Argon2id) before anything leaves this process. --password-stdin is still\n"        \
    "                    accepted and changes nothing.\n"                                                    \
    "  --wait            wait for the command's result and print it\n"                                       \
    "  --json            print one JSON object (with --wait: the result's data)\n"                           \
    "No --actor: the account does not work yet. Exit status as for the other commands.\n"
#define EXPIRY_LOCALE_HELP                                                                                   \
    "  --expires-in-days N  the code lasts N days (1 to 30; default: the organization's policy, else\n"      \
    "                    invitation.ttl.seconds)\n"                                                          \
    "  --locale TAG      the e-mail's language, e.g. de or pt-BR (default: the organization's policy,\n"     \
    "                    else mail.locale)\n"
#define INVITE_HELP                                                                                          \
    "  --manage-users    let them manage users (invite and remove) once they join; owners and admins\n"      \
    "                    only\n" EXPIRY_LOCALE_HELP
#define LIST_HELP                                                                                            \
    "  --actor UUID      list only if this user is an admin, or an owner or user manager of the org\n"       \
    "  --json            print one JSON object\n"                                                            \
    "Exit status: 0 listed, 1 organization_not_found or permission_denied, 2 usage error, 3 database.\n"

#define PAGE_HELP                                                                                            \
    "  --search TEXT     only rows whose address or name holds TEXT (case-insensitive)\n"                    \
    "  --sort KEY        created (default), expires (invitations) or email; ascending\n"                     \
    "  --limit N         one page of at most N rows; --json then carries next_cursor (null on the last\n"    \
    "                    page), a table prints it on standard error\n"                                       \
    "  --after CURSOR    the page after the one that gave CURSOR (same --sort)\n"                            \
    "  --explain         print the statement's plan, run (EXPLAIN ANALYZE, JSON), instead of the rows\n"

static const cli_cmd_t commands[] = {
    {"create-org", cmd_publish, "--name N --owner UUID --actor UUID [--wait] [--json]",
     "create an organization with that owner (admins only)", PUBLISH_HELP},
    {"create-user", cmd_publish, "--email E --name N --password-stdin --actor UUID [--wait] [--json]",
     "create an active account (admins only)", PASSWORD_HELP PUBLISH_HELP},
    {"add-existing", cmd_publish,
     "--org UUID --email E [--owner] [--manage-users] [--expires-in-days N] [--locale TAG] --actor UUID "
     "[--wait] [--json]",
     "invite an existing user; membership once they confirm with the e-mailed code",
     "  --owner           make them an owner on acceptance\n" INVITE_HELP PUBLISH_HELP},
    {"invite-new", cmd_publish,
     "--org UUID --email E [--name N] [--owner] [--manage-users] [--expires-in-days N] [--locale TAG] "
     "--actor UUID [--wait] [--json]",
     "create a disabled account and membership for a new user; a one-time password is e-mailed",
     "  --owner           make them an owner\n" INVITE_HELP PUBLISH_HELP},
    {"accept", cmd_publish, "--invitation UUID --actor UUID [--wait] [--json]",
     "confirm an Add Existing User invitation with the code read from standard input (the invitee is the "
     "actor)",
     CODE_HELP("the confirmation code",
               "printf '%s\\n' \"$CODE\" | raikoo accept --invitation $INV --actor $ME --wait") PUBLISH_HELP},
    {"activate", cmd_publish, "--email E [--wait] [--json]",
     "a new user activates the account: one-time password, then a new password, read from standard input",
     ACTIVATE_HELP},
    {"resend", cmd_publish,
     "--org UUID --invitation UUID [--expires-in-days N] [--locale TAG] --actor UUID [--wait] [--json]",
     "send a pending or expired invitation again with a new code and expiry",
     EXPIRY_LOCALE_HELP PUBLISH_HELP},
    {"remove-invitation", cmd_publish, "--org UUID --invitation UUID --actor UUID [--wait] [--json]",
     "remove a pending or expired invitation", PUBLISH_HELP},
    {"remove-member", cmd_publish, "--org UUID --user UUID --actor UUID [--wait] [--json]",
     "remove a member from an organization", PUBLISH_HELP},
    {"set-role", cmd_publish,
     "--org UUID --user UUID [--owner] [--manage-users] --actor UUID [--wait] [--json]",
     "set a member's capabilities (a flag left out is turned off)", PUBLISH_HELP},
    {"members", cmd_members,
     "--org UUID [--status active|pending_activation|disabled] [--search TEXT] [--sort created|email] "
     "[--limit N] [--after CURSOR] [--actor UUID] [--json]",
     "list an organization's members (from PostgreSQL)", PAGE_HELP LIST_HELP},
    {"invitations", cmd_invitations,
     "--org UUID [--status pending|accepted|expired|removed] [--search TEXT] [--sort created|expires|email] "
     "[--limit N] [--after CURSOR] [--actor UUID] [--json]",
     "list an organization's invitations with their e-mail delivery state (from PostgreSQL)",
     PAGE_HELP LIST_HELP},
    {"migrate", cmd_migrate, "", "apply the SQL migrations (harmless to repeat)", NULL},
    {"topics", cmd_topics, "create", "create the Kafka topics (harmless to repeat)", NULL},
    {"keygen", cmd_keygen, "[--dir DIR]", "write the mailer key pair and the code pepper (never overwrites)",
     NULL},
    {"bootstrap-admin", cmd_bootstrap_admin, "--email E [--name N]",
     "create or find the system admin; print its id", NULL},
    {"config", cmd_config, "[--markdown]",
     "print every configuration key, its variable and its current value",
     "  --markdown        print the configuration reference instead (defaults, variables, meanings):\n"
     "                    docs/CONFIGURATION.md is this output\n"
     "Passwords (db.url's, smtp.password, Kafka secrets) are printed as ***.\n"},
    {"invite-bulk", cmd_invite_bulk, "--org UUID --csv FILE --actor UUID [--mode auto|new|existing] [--json]",
     "invite every row of a CSV file (columns email,name,owner,manage_users); results per row on stdout",
     "  --csv FILE        the rows (- for standard input); the first line names the columns; other\n"
     "                    columns are ignored with a warning\n"
     "  --mode auto       AddExistingUser when the address has an account, InviteNewUser otherwise "
     "(default);\n"
     "                    new or existing: one command for every row\n"
     "  --json            one JSON object (rows and summary) instead of CSV\n"
     "Bad rows (not an address, a duplicate, a bad owner value) are named by line and not sent. Progress\n"
     "and the summary go to standard error. Exit status: 0 all accepted, 1 any row rejected or skipped,\n"
     "3 infrastructure (some rows without a result).\n"},
    {"audit", cmd_audit, "--org UUID [--since TIME] [--limit N] [--json] | verify [--org UUID] [--json]",
     "the audit trail of an organization (who did what to whom, when, with what result), or check it",
     "  --since TIME      entries from this RFC 3339 time on\n"
     "  --limit N         at most N entries (1000)\n"
     "  verify            check the hash chains of every organization (or --org's): exit status 1 names\n"
     "                    each changed, inserted or deleted row (docs/AUDIT.md)\n"},
    {"dlq", cmd_dlq, "list [--json] | replay (--offset N [--partition P] | --all) [--dry-run]",
     "list the dead-letter topic, or send dead letters again to the commands topic (docs/MESSAGES.md)",
     "  list              every dead letter (read to the end the topic had at the start): where it came\n"
     "                    from, why, its command id when it has one; never its value\n"
     "  replay            send the message again as it came (key, value, headers) to topic.commands;\n"
     "                    a command id already applied gets its first result again and changes nothing\n"
     "  --offset N        the dead letter at offset N (--partition P when several partitions have one)\n"
     "  --all             every dead letter\n"
     "  --dry-run         say what would be sent, send nothing\n"
     "  --json            (list) print one JSON object\n"
     "Exit status: 0 done, 1 no dead letter at that offset, 2 usage error, 3 Kafka unreachable.\n"},
    {"status", cmd_status, "[--json]",
     "one screen for the operator: consumer lag, outbox backlog, mail deliveries, expiries, dead letters",
     "  --json            print one JSON object (docs/OPERATIONS.md describes its fields)\n"
     "Read only (joins no consumer group). Exit status: 0 everything was read, 2 usage error,\n"
     "3 PostgreSQL or Kafka could not be read (what could be read is still printed; the errors go to\n"
     "stderr and, with --json, to its \"errors\" list).\n"},
    {"policy", cmd_policy,
     "show --org UUID [--actor UUID] [--json] | set --org UUID --actor UUID [--allowed-domains D,D...|none] "
     "[--seat-limit N|none] [--default-expiry-days N|none] [--default-locale TAG|none] [--app-url URL|none] "
     "[--wait] [--json]",
     "an organization's invitation policy: show it (from PostgreSQL), or set it (owners and admins)",
     "  show              allowed domains, seat limit and seats in use, default expiry, language and link\n"
     "  set               SetOrganizationPolicy: an option left out keeps its setting, none clears it\n"
     "  --allowed-domains invitations only to addresses of these domains (comma-separated)\n"
     "  --seat-limit N    members plus pending invitations may not exceed N\n"
     "  --default-expiry-days N, --default-locale TAG, --app-url URL: what invitations get when the\n"
     "                    command names none (the e-mail's link starts with URL)\n"
     "See docs/INVITATION_OPTIONS.md. Exit status as for the other commands.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

const cli_cmd_t *cli_find(const char *name) {
    for (const cli_cmd_t *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

void cli_print_json(json_t *doc) {
    char *s = json_dumps(doc, JSON_COMPACT);
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(doc);
}

int cli_usage(const cli_cmd_t *cmd, int mistake) {
    FILE *f = mistake ? stderr : stdout;
    fprintf(f, "usage: raikoo %s %s [--config FILE]\n  %s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->details && !mistake)
        fprintf(f, "\n%s", cmd->details);
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
    fprintf(f,
            "\nExit status: 0 accepted, 1 rejected, 2 usage error, 3 infrastructure (unreachable, timeout).\n"
            "Configuration: --config FILE, RAIKOO_* variables; `raikoo config` lists them.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
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
