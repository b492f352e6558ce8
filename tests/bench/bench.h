/* raikoo-bench's parts: clocks and progress, the send-time table, and the floors measured beside the
 * system (PostgreSQL, Kafka, SMTP) and the mail phase. */
#ifndef RAIKOO_BENCH_H
#define RAIKOO_BENCH_H

#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "conf.h"

/* Monotonic seconds. */
double bench_now(void);

/* Wall-clock seconds since the epoch (CLOCK_REALTIME): to compare with PostgreSQL's now() on the same
 * machine. */
double bench_wall(void);

/* Prints a progress line on stderr, at most once a second. */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* When each command was published, by command id: t on any clock (bench_now), wall on the wall clock
 * (bench_wall). */
typedef struct sendtimes sendtimes_t;
sendtimes_t *sendtimes_new(size_t n);
void sendtimes_put(sendtimes_t *s, const char *id, double t, double wall);
/* t of id, and its wall time in *wall when wall is not NULL; 0 (both) when unknown. */
double sendtimes_get(const sendtimes_t *s, const char *id, double *wall);
void sendtimes_free(sendtimes_t *s);

/* The data of the i-th command of a phase (a new reference). */
typedef json_t *bench_data_fn(void *arg, const char *phase, long i);

/* Per-command SQL (called the "PostgreSQL floor" before the row floor came): n InviteNewUser commands by
 * actor through the worker's own processor (lib/cmdproc), in transactions of batch.max, without Kafka.
 * Sets *per_s and the mean command size. Deletes the outbox rows it made (the bench's stack is its own).
 * set_based 0: every command through the per-command path; 1: the processor as the worker runs it (runs of
 * InviteNewUser through its set path). */
int bench_pg_floor(const conf_t *c, PGconn *db, long n, const char *actor, bench_data_fn *data, void *arg,
                   int set_based, double *per_s, size_t *payload_bytes, char *errstr, size_t errstr_size);

/* Row floor: the durable rows n accepted InviteNewUser commands leave (user, membership, invitation, rate
 * counter, processed command with its result, outbox rows), written set-based (COPY per table, one
 * upsert of the rate counters) in transactions of batch.max into the project's own tables. The row shapes
 * come from one real InviteNewUser run through lib/cmdproc first (data(arg, "<phase>-template", 0)); the
 * commands' data from data(arg, phase, i). Only the time spent in the database counts. Sets *per_s, the
 * bytes of COPY text per command and the rows per command. Deletes the outbox rows it made. */
int bench_row_floor(const conf_t *c, PGconn *db, long n, const char *actor, bench_data_fn *data, void *arg,
                    const char *phase, double *per_s, size_t *row_bytes, size_t *rows_per_command,
                    char *errstr, size_t errstr_size);

/* Waits until the consumer group has exactly `members` members, is stable, and every partition of
 * `topic` is assigned to one of them, each member having at least one (when there are enough). */
int bench_group_wait(const conf_t *c, const char *group, const char *topic, int members, int timeout_ms,
                     char *errstr, size_t errstr_size);

/* Leaves the mail jobs queued so far unsent: waits until the relay has published every outbox row, then
 * commits the mail consumer group's offsets at the end of the mail topic (the mailers must be stopped). */
int bench_mail_skip(const conf_t *c, PGconn *db, char *errstr, size_t errstr_size);

/* Kafka floor: n messages of the given size over `keys` keys, produced with the producer library's
 * settings (idempotent, acks=all) to a topic with as many partitions as the commands topic, and
 * consumed back. Sets *per_s (first produce to last consume). */
int bench_kafka_floor(const conf_t *c, long n, size_t bytes, long keys, double *per_s, char *errstr,
                      size_t errstr_size);

/* Mail phase: starts the mailer (through start()) and waits until every mail job queued so far in the
 * run (`expected`) has become a message in the SMTP server's Maildir ($RAIKOO_VAR/mail/new). sample() is
 * called now and then; mark(0) when the first message is stored and mark(1) after the last, the span the
 * rate is measured over. */
int bench_mail(const conf_t *c, long expected, int (*start)(void), void (*sample)(void), void (*mark)(int),
               double *per_s, char *errstr, size_t errstr_size);

/* SMTP floor: the same invitation message, rendered once, sent n times over `sessions` SMTP sessions at
 * once (threads of their own, an equal share each), as the mailer's mail.connections senders do. */
int bench_smtp_floor(const conf_t *c, long n, long sessions, double *per_s, char *errstr, size_t errstr_size);

/* What the scheduler counts of a set of threads (the second and third of /proc/<pid>/task/<tid>/schedstat's
 * three fields): seconds runnable but waiting for a CPU (on a run queue), and turns on a CPU (a wake-up, or
 * a turn after a preemption). A thread that ended takes its counts with it. */
typedef struct bench_sched {
    double wait_s, runs;
} bench_sched_t;

/* CPU seconds so far of the bench stack's Kafka broker ($RAIKOO_VAR/run/kafka.pid), of its PostgreSQL cluster
 * (the postmaster of $RAIKOO_VAR/pg/postmaster.pid and every process it started: a backend that ended
 * between two samples takes its seconds with it), of its SMTP server ($RAIKOO_VAR/run/smtp.pid), of this
 * program (its producer and result consumer, its SMTP floor's sessions), and of the machine (busy: every
 * state but idle and iowait); 0 for what is not found. cores: CPUs online. sched: the scheduler's counts of
 * the threads of the broker, the cluster, the SMTP server and this program. */
typedef struct bench_cpu {
    double broker, postgresql, smtp, bench, machine_busy, cores;
    bench_sched_t sched;
} bench_cpu_t;
void bench_cpu_sample(bench_cpu_t *s);

/* utime + stime of pid in seconds (every thread), and its parent's pid in *ppid when not NULL; -1 when it
 * is gone. */
double bench_pid_cpu(long pid, long *ppid);

/* Adds the scheduler's counts of pid's threads to *s; -1 when it is gone or the kernel keeps no such
 * count. */
int bench_pid_sched(long pid, bench_sched_t *s);

#endif
