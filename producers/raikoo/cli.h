/* The raikoo CLI: shared pieces of its subcommands (exit statuses, configuration, option parsing). */
#ifndef RAIKOO_CLI_H
#define RAIKOO_CLI_H

#include <jansson.h>

#include "conf.h"
#include "exitstatus.h"

/* Exit statuses of every subcommand. */

typedef struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv, conf_t *c);
    const char *usage;   /* options after the command name */
    const char *summary; /* one line */
    const char *details; /* more lines for --help, or NULL */
} cli_cmd_t;

/* Loads the configuration: defaults, then --config FILE (from argv, removed from it) or RAIKOO_CONFIG,
 * then the environment. Prints the problem and returns -1 when it fails. */
int cli_conf_load(conf_t *c, int *argc, char **argv);

/* Prints "usage: raikoo NAME USAGE" and the summary to stdout (help) or stderr (mistake). */
int cli_usage(const cli_cmd_t *cmd, int mistake);

/* Prints doc as one line of compact JSON on stdout and releases it (a reference stolen). */
void cli_print_json(json_t *doc);

/* The command table entry for name, or NULL. */
const cli_cmd_t *cli_find(const char *name);

/* Subcommands, grouped by file. */
int cmd_migrate(int argc, char **argv, conf_t *c);
int cmd_topics(int argc, char **argv, conf_t *c);
int cmd_keygen(int argc, char **argv, conf_t *c);
int cmd_bootstrap_admin(int argc, char **argv, conf_t *c);
int cmd_config(int argc, char **argv, conf_t *c);
/* publish.c: every command published to topic.commands; argv[0] names which. */
int cmd_publish(int argc, char **argv, conf_t *c);
/* read.c */
int cmd_members(int argc, char **argv, conf_t *c);
int cmd_invitations(int argc, char **argv, conf_t *c);
/* bulk.c */
int cmd_invite_bulk(int argc, char **argv, conf_t *c);
/* audit.c */
int cmd_audit(int argc, char **argv, conf_t *c);
/* dlq.c: dlq list, dlq replay */
int cmd_dlq(int argc, char **argv, conf_t *c);
/* status.c */
int cmd_status(int argc, char **argv, conf_t *c);
/* policy.c: policy show, policy set (SetOrganizationPolicy through cmd_publish) */
int cmd_policy(int argc, char **argv, conf_t *c);

#endif
