/* The exit status of every program (the raikoo CLI, the workers, raikoo-bench, the test programs): one table,
 * documented in docs/DESIGN.md ("Exit statuses"). */
#ifndef RAIKOO_EXITSTATUS_H
#define RAIKOO_EXITSTATUS_H

enum {
    /* Done: a command accepted or published, a listing printed; a worker stopped on SIGTERM or SIGINT. */
    EXIT_OK = 0,
    EXIT_ACCEPTED = EXIT_OK, /* the CLI's name for it */
    /* The request was understood and refused: a command rejected with a result code, a check that found a
     * fault (a bench target, a verification). */
    EXIT_REJECTED = 1,
    /* Usage or configuration: the command line, a --config file, a RAIKOO_* variable, a template, the keys
     * in keys.dir. Fix the input; running again as is fails the same way. */
    EXIT_USAGE = 2,
    /* Infrastructure that waiting does not fix: a database without the migrations, a fatal Kafka producer
     * error, a service unreachable for a one-shot CLI command, no result within result.timeout.ms. Workers
     * wait for services that are merely down; they exit with this status only when waiting cannot help. */
    EXIT_INFRA = 3,
};

#endif
