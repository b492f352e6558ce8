/* raikoo-bench: measures the pipeline, its latency and the mailer on a stack of its own, beside the raw
 * floors of Kafka, PostgreSQL and SMTP measured in the same run, and reports ratios (table + JSON). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cmdproc.h"
#include "conf.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "producer.h"
#include "secret.h"
#include "text.h"

#define MAX_COMMAND_WORKERS 4
#define MAX_REPEAT 20
#define MAX_RATES 8 /* offered loads of the latency phases */

typedef struct options {
    long commands;         /* pipeline throughput: InviteNewUser commands */
    long orgs;             /* spread over this many organizations */
    long rates[MAX_RATES]; /* latency: offered loads, commands per second */
    int nrates;
    double rate_seconds; /* how long each offered load lasts */
    const char *out_dir;
    const char *bin_dir;
    long command_workers;
    long repeat;           /* measured phases run this many times; medians reported */
    long scaling_commands; /* scaling phase: commands per measurement (one worker, then two) */
    int no_mail;           /* --no-mail: the mail phase and the SMTP floor left out */
} options_t;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: raikoo-bench [--commands N] [--orgs N] [--rates R1,R2,...] [--rate-seconds S] [--out DIR]\n"
        "                    [--command-workers N] [--repeat N] [--scaling-commands N] [--no-mail]\n"
        "                    [--config FILE]\n"
        "Runs on the stack the configuration names (ops/bench brings up one of its own). Defaults:\n"
        "20000 commands over 100 organizations; loads 200,1000,2000 per second for 10 s each; the mail\n"
        "phase sends every invitation the run made before it; one command worker (up to 4); the scaling\n"
        "phase times half as many commands with one and with two workers; --repeat 1 (with N > 1 every\n"
        "measured phase runs N times and the medians are reported); --no-mail leaves the mail phase and the\n"
        "SMTP floor out; results in var/bench/.\n");
}

static int parse_options(int argc, char **argv, options_t *o, const char **config) {
    static const struct option opts[] = {
        {"commands", required_argument, NULL, 'c'}, {"orgs", required_argument, NULL, 'o'},
        {"rates", required_argument, NULL, 'r'},    {"rate-seconds", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'O'},      {"command-workers", required_argument, NULL, 'w'},
        {"config", required_argument, NULL, 'C'},   {"help", no_argument, NULL, 'h'},
        {"repeat", required_argument, NULL, 'R'},   {"scaling-commands", required_argument, NULL, 'S'},
        {"no-mail", no_argument, NULL, 'M'},        {NULL, 0, NULL, 0}};
    *o = (options_t){.commands = 20000,
                     .orgs = 100,
                     .rates = {200, 1000, 2000},
                     .nrates = 3,
                     .rate_seconds = 10,
                     .out_dir = "var/bench",
                     .command_workers = 1,
                     .repeat = 1,
                     .scaling_commands = 0};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
            case 'c': o->commands = strtol(optarg, &end, 10); break;
            case 'o': o->orgs = strtol(optarg, &end, 10); break;
            case 's': o->rate_seconds = strtod(optarg, &end); break;
            case 'w': o->command_workers = strtol(optarg, &end, 10); break;
            case 'R': o->repeat = strtol(optarg, &end, 10); break;
            case 'M': o->no_mail = 1; break;
            case 'S':
                o->scaling_commands = strtol(optarg, &end, 10);
                if (o->scaling_commands < 1)
                    end = optarg; /* reported as a bad number */
                break;
            case 'r': {
                o->nrates = 0;
                const char *s = optarg;
                while (*s && o->nrates < MAX_RATES) {
                    o->rates[o->nrates++] = strtol(s, &end, 10);
                    s = *end == ',' ? end + 1 : end;
                    if (*end && *end != ',')
                        break;
                }
                break;
            }
            case 'O': o->out_dir = optarg; break;
            case 'C': *config = optarg; break;
            case 'h': usage(stdout); exit(0);
            default: usage(stderr); return -1;
        }
        if (end && *end) {
            fprintf(stderr, "raikoo-bench: bad number \"%s\"\n", optarg);
            return -1;
        }
    }
    if (optind != argc || o->commands < 1 || o->orgs < 1 || o->rate_seconds <= 0 || o->command_workers < 1 ||
        o->command_workers > MAX_COMMAND_WORKERS || o->repeat < 1 || o->repeat > MAX_REPEAT) {
        usage(stderr);
        return -1;
    }
    if (o->scaling_commands == 0)
        o->scaling_commands = o->commands / 2 > 0 ? o->commands / 2 : 1;
    for (int i = 0; i < o->nrates; i++)
        if (o->rates[i] < 1) {
            usage(stderr);
            return -1;
        }
    return 0;
}

/* ---- clocks, progress, percentiles ---- */

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double bench_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double progress_at;

void bench_progress(const char *fmt, ...) {
    double now = bench_now();
    if (now - progress_at < 1.0)
        return;
    progress_at = now;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  ... ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *sorted, size_t n, double p) {
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    return sorted[i ? i - 1 : 0];
}

/* ---- the workers the bench runs, and what they cost ---- */

typedef struct proc {
    const char *name;
    pid_t pid;
    double cpu_s;
    long peak_rss_kb;
} proc_t;

/* Up to four command workers (--command-workers), the relay and the mailer. */
static proc_t procs[] = {{"raikoo-command-worker", 0, 0, 0}, {"raikoo-command-worker", 0, 0, 0},
                         {"raikoo-command-worker", 0, 0, 0}, {"raikoo-command-worker", 0, 0, 0},
                         {"raikoo-outbox-relay", 0, 0, 0},   {"raikoo-mailer", 0, 0, 0}};
enum { P_COMMAND, P_RELAY = 4, P_MAILER, NPROCS };

static void proc_sample(proc_t *p) {
    if (p->pid <= 0)
        return;
    char path[64], buf[4096];
    double cpu = bench_pid_cpu((long)p->pid, NULL);
    if (cpu >= 0)
        p->cpu_s = cpu;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(buf, sizeof(buf), f)) {
            long kb;
            if (sscanf(buf, "VmHWM: %ld kB", &kb) == 1 && kb > p->peak_rss_kb)
                p->peak_rss_kb = kb;
        }
        fclose(f);
    }
}

static int proc_start(proc_t *p, const options_t *o) {
    char exe[4096], log_path[4096];
    snprintf(exe, sizeof(exe), "%s/%s", o->bin_dir, p->name);
    snprintf(log_path, sizeof(log_path), "%s/log/%s.log", o->out_dir, p->name);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "raikoo-bench: %s: %s\n", exe, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(exe, exe, (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    return 0;
}

static const options_t *options;

static int start_mailer(void) {
    return proc_start(&procs[P_MAILER], options);
}

static int proc_stop(proc_t *p) {
    if (p->pid <= 0)
        return 0;
    proc_sample(p);
    kill(p->pid, SIGTERM);
    int status = 0;
    waitpid(p->pid, &status, 0);
    p->pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void procs_sample(void) {
    for (int i = 0; i < NPROCS; i++)
        proc_sample(&procs[i]);
}

/* ---- set-up: the organizations every phase spreads its commands over ---- */

/* Messages sent, untimed, before the mail phase: the SMTP floor is measured after the mail phase, on a server
 * that has handled tens of thousands of messages; the mail phase would otherwise meet it cold. */
#define SMTP_WARMUP 4000
/* The SMTP floor sends at most this many messages: enough for a steady rate. */
#define SMTP_FLOOR_MAX 10000

static char (*orgs)[UUID_BUF];
static long invitations_made; /* accepted InviteNewUser commands of this run not yet mailed */
static long run_no;           /* 1 .. --repeat */
static long batch_max;
/* The mailer's parallel SMTP sessions: the SMTP floor is measured with as many too. */
static long mail_connections;
static double first_send, last_send; /* when run_commands published its first and last command */
static char admin_id[UUID_BUF];
static char run_tag[16];

static int setup_orgs(PGconn *db, const options_t *o, char *err, size_t errsz) {
    const char *p0[1] = {"bench-admin@bench.test"};
    PGresult *r = db_exec(db,
                          "INSERT INTO users (id, email, username, name, enabled, is_admin) VALUES"
                          " (gen_random_uuid(), $1, $1, 'Bench Admin', true, true)"
                          " ON CONFLICT (lower(email)) DO UPDATE SET is_admin = true RETURNING id",
                          1, p0, err, errsz);
    if (!r)
        return -1;
    snprintf(admin_id, sizeof(admin_id), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    orgs = calloc((size_t)o->orgs, sizeof(*orgs));
    if (!orgs)
        abort();
    char n[24];
    snprintf(n, sizeof(n), "%ld", o->orgs);
    const char *p1[3] = {admin_id, n, run_tag};
    r = db_exec(
        db,
        "WITH o AS (INSERT INTO organizations (id, name)"
        "           SELECT gen_random_uuid(), 'Bench ' || $3 || ' ' || g FROM generate_series(1, $2::int) g"
        "           RETURNING id),"
        " m AS (INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users)"
        "       SELECT id, $1, true, true FROM o RETURNING org_id)"
        " SELECT org_id FROM m",
        3, p1, err, errsz);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        snprintf(orgs[i], 37, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}

/* The data of the i-th InviteNewUser of a phase (arg: the options). */
static json_t *invite_data(void *arg, const char *phase, long i) {
    const options_t *o = arg;
    char email[128];
    snprintf(email, sizeof(email), "%s-%s-%ld-%ld@bench.test", phase, run_tag, run_no, i);
    return json_pack("{s:s, s:s, s:s}", "org_id", orgs[i % o->orgs], "email", email, "name", "Bench Invitee");
}

/* ---- results ---- */

/* The stages of a paced command's latency, split where its worker's batch transaction began
 * (processed_commands.processed_at): publish -> transaction began, transaction began -> result received. */
enum { ST_TO_TX, ST_TX_TO_RESULT, ST_TX_TO_PUB, ST_PUB_TO_RECV, STAGE_N };
static const char *const stage_names[STAGE_N] = {"to_transaction", "transaction_to_result",
                                                 "transaction_to_published", "published_to_received"};
static const char *const stage_labels[STAGE_N] = {
    "publish -> transaction began", "transaction began -> result received",
    "  transaction began -> relay published", "  relay published -> result received"};
enum { SQ_P50, SQ_P90, SQ_P99, SQ_N };

typedef struct lat_fig {
    long rate, sent, received;
    double achieved, min, p50, p90, p95, p99, max;
    long staged;                 /* commands whose processed_at was found (the stages' sample) */
    double stage[STAGE_N][SQ_N]; /* p50, p90, p99 of each stage, ms */
} lat_fig_t;

/* One paced command's times: its publish and its result's receipt on the wall clock (CLOCK_REALTIME,
 * seconds), and publish -> result on the monotonic clock (ms, the latency figures). id[0] == '\0' when
 * the result's command was not one this phase published. */
typedef struct lat_sample {
    char id[UUID_BUF];
    double sent_wall, recv_wall, total_ms;
    double published_wall; /* the result's Kafka timestamp (the relay's publish), seconds; 0 when absent */
} lat_sample_t;

/* The figures of one run. */
/* Where the pipeline phase's CPU goes. */
enum { PC_WORKERS, PC_RELAY, PC_BROKER, PC_POSTGRESQL, PC_BENCH, PIPE_CPU_N };
static const char *const pipe_cpu_names[PIPE_CPU_N] = {"command_workers", "relay", "broker", "postgresql",
                                                       "bench"};
/* Where the mail phase's CPU goes (a message: from the first one stored to the last), and the SMTP floor's
 * over mail.connections sessions (the server and the bench's sessions only). */
enum { MC_MAILER, MC_RELAY, MC_BROKER, MC_POSTGRESQL, MC_SMTP, MC_BENCH, MAIL_CPU_N };
static const char *const mail_cpu_names[MAIL_CPU_N] = {"mailer",     "relay",       "broker",
                                                       "postgresql", "smtp_server", "bench"};

/* What the scheduler counted over a phase of the threads on its path (the command workers, the relay, the
 * mailer while it runs, the broker, PostgreSQL, the SMTP server, this program): the cores' worth of time
 * they spent runnable but waiting for a CPU, their turns on a CPU per command or message (each a wake-up,
 * but for preemptions), and the mean wait of a turn in microseconds. All doubles (figure_offsets). */
typedef struct sched_fig {
    double wait_cores, runs_per, wait_us;
} sched_fig_t;

typedef struct report {
    double pg_floor_cps; /* per-command SQL (the "PostgreSQL floor" of earlier versions) */
    double set_sql_cps;  /* the processor with its set path, same batches, no Kafka */
    double row_floor_cps, kafka_floor_mps, pipeline_cps, one_worker_cps, two_workers_cps, mail_mps,
        smtp_floor_mps;
    double smtp_floor_sessions_mps; /* the SMTP floor over mail.connections sessions at once */
    double cpu_s[NPROCS], peak_rss_mib[NPROCS];
    int started[NPROCS];
    long pipeline_rejected, mails_sent;
    size_t payload_bytes, row_bytes, rows_per_command;
    int nlat;
    lat_fig_t lat[MAX_RATES];
    /* The pipeline phase's CPU per command, in ms (PC_*), the machine's busy cores over it, and what the
     * scheduler counted of the threads on its path. */
    double pipe_cpu_ms[PIPE_CPU_N], pipe_busy_cores, cores;
    sched_fig_t pipe_sched;
    /* The same for the mail phase (MC_*, a message) and for the SMTP floor over mail.connections sessions
     * (the mailer is stopped by then: the SMTP server and the bench's sessions are what counts). */
    double mail_cpu_ms[MAIL_CPU_N], mail_busy_cores, floor_cpu_ms[MAIL_CPU_N], floor_busy_cores;
    sched_fig_t mail_sched; /* not for the floor: its sessions' threads end before its second sample */
} report_t;

/* Reads the results there are (waiting up to timeout ms for the first), recording each one's latency into
 * lat and samples (when not NULL) by its publish time in st. *last gets when the last one came. 0 when none
 * came, -1 with err on a failure. */
static int take_results(raikoo_producer_t *p, sendtimes_t *st, int timeout, long n, double *lat,
                        lat_sample_t *samples, long *rejected, long *received, double *last, char *err,
                        size_t errsz) {
    raikoo_result_t r = {0};
    int got;
    while ((got = raikoo_results_poll(p, timeout, &r, err, errsz)) == 1) {
        double now = bench_now(), now_wall = bench_wall(), at_wall;
        double at = sendtimes_get(st, r.command_id, &at_wall);
        if (lat && at > 0)
            lat[*received] = (now - at) * 1000.0;
        if (samples && at > 0 && *received < n) {
            lat_sample_t *sm = &samples[*received];
            snprintf(sm->id, sizeof(sm->id), "%s", r.command_id);
            sm->sent_wall = at_wall;
            sm->recv_wall = now_wall;
            sm->published_wall = (double)r.published_ms / 1000.0;
            sm->total_ms = (now - at) * 1000.0;
        }
        if (r.accepted)
            invitations_made++;
        if (!r.accepted) {
            if (*rejected == 0)
                fprintf(stderr, "raikoo-bench: rejected: %s: %s\n", r.code, r.message);
            (*rejected)++;
        }
        (*received)++;
        *last = now;
        raikoo_result_clear(&r);
        timeout = 0;
    }
    return got;
}

/* Publishes n InviteNewUser commands at the given rate (0: as fast as the producer allows) and waits for
 * every result. Fills lat (milliseconds, sorted) and samples (in the order the results came) when not
 * NULL, n of each. Returns the wall time from the first publish to the last result, or a negative value
 * on failure. */
static double run_commands(raikoo_producer_t *p, const options_t *o, const char *phase, long n, long rate,
                           double *lat, lat_sample_t *samples, long *rejected, long *received) {
    char err[512], id[UUID_BUF];
    sendtimes_t *st = sendtimes_new((size_t)n);
    double t0 = bench_now(), last = t0;
    long sent = 0;
    first_send = last_send = t0;
    *rejected = 0;
    *received = 0;
    while (*received < n) {
        if (sent < n) {
            double due = rate ? t0 + (double)sent / (double)rate : 0;
            double now = bench_now();
            if (!rate || now >= due) {
                /* The publish is the moment the send is asked for: the command may reach the worker, and
                 * its transaction begin, before the call returns. */
                json_t *data = invite_data((void *)o, phase, sent);
                double at = bench_now(), at_wall = bench_wall();
                if (raikoo_command_send(p, RAIKOO_CMD_INVITE_NEW_USER, admin_id, data, id, err,
                                        sizeof(err)) != 0) {
                    fprintf(stderr, "raikoo-bench: publish: %s\n", err);
                    sendtimes_free(st);
                    return -1;
                }
                sendtimes_put(st, id, at, at_wall);
                sent++;
                if (sent == n)
                    last_send = bench_now();
                if (!rate && sent % 256 != 0)
                    continue; /* as fast as possible: read results now and then */
            }
        }
        /* Between paced sends, wait for results rather than spin: the workers share these two cores. */
        int timeout = 100;
        if (sent < n) {
            double wait = rate ? t0 + (double)sent / (double)rate - bench_now() : 0;
            timeout = (int)(wait * 1000.0);
            if (timeout <= 0 && wait > 0) {
                /* Under a millisecond to the next send: sleep it off (spinning would take a core). */
                struct timespec ts = {0, (long)(wait * 1e9)};
                nanosleep(&ts, NULL);
            }
            if (timeout < 0)
                timeout = 0;
        }
        int got = take_results(p, st, timeout, n, lat, samples, rejected, received, &last, err, sizeof(err));
        if (got < 0) {
            fprintf(stderr, "raikoo-bench: results: %s\n", err);
            sendtimes_free(st);
            return -1;
        }
        if (sent == n && bench_now() - last > 120) {
            fprintf(stderr, "raikoo-bench: %ld of %ld results after 120 s without progress\n", *received, n);
            sendtimes_free(st);
            return -1;
        }
        bench_progress("%s: %ld sent, %ld results", phase, sent, *received);
    }
    sendtimes_free(st);
    if (lat)
        qsort(lat, (size_t)*received, sizeof(*lat), cmp_double);
    return last - t0;
}

/* ---- medians of several runs ---- */

/* The median of the figures of v that are numbers (sorted first, the NaNs after them, so that v[0] and
 * v[k - 1] are the minimum and maximum); NaN when none is. */
static double median(double *v, int n) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) {
            double t = v[k];
            v[k++] = v[i];
            v[i] = t;
        }
    qsort(v, (size_t)k, sizeof(*v), cmp_double);
    if (k == 0)
        return NAN;
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2.0;
}

#define SCHED_FIGS (sizeof(sched_fig_t) / sizeof(double))
/* The most figures figure_offsets gives: 10 simple figures, 2 a process, the pipeline's CPU and busy cores,
 * the scheduler's for the pipeline and for the mail phase, the mail phase's and the SMTP floor's CPU and
 * busy cores, and for each paced rate the achieved rate, min, 4 percentiles, max and the stages'. */
#define MAX_FIGS                                                                                             \
    (10 + 2 * NPROCS + PIPE_CPU_N + 1 + 2 * SCHED_FIGS + 2 * MAIL_CPU_N + 2 +                                \
     (7 + STAGE_N * SQ_N) * MAX_RATES)

/* Where each figure lives in a report (off[0..MAX_FIGS)): the median, min and max of every one of them. */
static int figure_offsets(const report_t *r, size_t *off) {
    int n = 0;
    const size_t simple[] = {offsetof(report_t, set_sql_cps),     offsetof(report_t, pg_floor_cps),
                             offsetof(report_t, row_floor_cps),   offsetof(report_t, kafka_floor_mps),
                             offsetof(report_t, pipeline_cps),    offsetof(report_t, one_worker_cps),
                             offsetof(report_t, two_workers_cps), offsetof(report_t, mail_mps),
                             offsetof(report_t, smtp_floor_mps)};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
        off[n++] = simple[i];
    off[n++] = offsetof(report_t, smtp_floor_sessions_mps);
    for (int i = 0; i < NPROCS; i++) {
        off[n++] = offsetof(report_t, cpu_s) + (size_t)i * sizeof(double);
        off[n++] = offsetof(report_t, peak_rss_mib) + (size_t)i * sizeof(double);
    }
    for (int i = 0; i < PIPE_CPU_N; i++)
        off[n++] = offsetof(report_t, pipe_cpu_ms) + (size_t)i * sizeof(double);
    off[n++] = offsetof(report_t, pipe_busy_cores);
    const size_t sched[] = {offsetof(report_t, pipe_sched), offsetof(report_t, mail_sched)};
    for (size_t i = 0; i < sizeof(sched) / sizeof(sched[0]); i++)
        for (size_t k = 0; k < SCHED_FIGS; k++)
            off[n++] = sched[i] + k * sizeof(double);
    for (int i = 0; i < MAIL_CPU_N; i++) {
        off[n++] = offsetof(report_t, mail_cpu_ms) + (size_t)i * sizeof(double);
        off[n++] = offsetof(report_t, floor_cpu_ms) + (size_t)i * sizeof(double);
    }
    off[n++] = offsetof(report_t, mail_busy_cores);
    off[n++] = offsetof(report_t, floor_busy_cores);
    for (int i = 0; i < r->nlat; i++) {
        size_t base = offsetof(report_t, lat) + (size_t)i * sizeof(lat_fig_t);
        off[n++] = base + offsetof(lat_fig_t, achieved);
        off[n++] = base + offsetof(lat_fig_t, min);
        off[n++] = base + offsetof(lat_fig_t, p50);
        off[n++] = base + offsetof(lat_fig_t, p90);
        off[n++] = base + offsetof(lat_fig_t, p95);
        off[n++] = base + offsetof(lat_fig_t, p99);
        off[n++] = base + offsetof(lat_fig_t, max);
        for (int s = 0; s < STAGE_N; s++)
            for (int q = 0; q < SQ_N; q++)
                off[n++] =
                    base + offsetof(lat_fig_t, stage) + ((size_t)s * SQ_N + (size_t)q) * sizeof(double);
    }
    if ((size_t)n > MAX_FIGS) /* MAX_FIGS has fallen behind a figure added here */
        abort();
    return n;
}

#define FIG(r, o) (*(double *)((char *)(r) + (o)))

/* med, lo, hi: the runs' medians, minima and maxima (counts and sizes from the last run). */
static void summarize(const report_t *runs, int n, report_t *med, report_t *lo, report_t *hi) {
    size_t off[MAX_FIGS];
    *med = *lo = *hi = runs[n - 1];
    int nf = figure_offsets(&runs[n - 1], off);
    for (int f = 0; f < nf; f++) {
        double v[MAX_REPEAT];
        for (int r = 0; r < n; r++)
            v[r] = FIG(&runs[r], off[f]);
        FIG(med, off[f]) = median(v, n);
        int k = 0;
        while (k < n && !isnan(v[k]))
            k++;
        FIG(lo, off[f]) = k ? v[0] : NAN;
        FIG(hi, off[f]) = k ? v[k - 1] : NAN;
    }
    for (int i = 0; i < NPROCS; i++)
        for (int r = 0; r < n; r++)
            med->started[i] |= runs[r].started[i];
}

/* a / b; 0 when b was not measured (0), NaN when either is not a number (an empty percentile set). */
static double ratio(double a, double b) {
    if (!isfinite(a) || !isfinite(b))
        return NAN;
    return b > 0 ? a / b : 0.0;
}

/* A figure for the JSON report: null when it is not a number (JSON has no NaN; jansson refuses one). */
static json_t *fig_json(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

/* A figure for the table: "n/a" when it is not a number (no samples, e.g. no latency measured). */
static const char *fig_text(char *buf, size_t size, const char *fmt, double v) {
    if (!isfinite(v))
        snprintf(buf, size, "n/a");
    else
        snprintf(buf, size, fmt, v);
    return buf;
}

/* ---- the report: JSON and table ---- */

/* Commands per second the machine's cores would allow at the pipeline's CPU cost per command (its own
 * processes: workers, relay, broker, PostgreSQL, the bench's producer and consumer). */
/* The CPU of ms[0..n) in all (NaN when one of them has no value). */
static double ms_sum(const double *ms, int n) {
    double total = 0;
    for (int i = 0; i < n; i++)
        total += ms[i];
    return total;
}

/* Commands or messages per second `cores` cores allow at total_ms of CPU each. */
static double per_s_allowed(double total_ms, double cores) {
    return total_ms > 0 && cores > 0 ? cores * 1000.0 / total_ms : NAN;
}

static double cpu_bound(const report_t *rp) {
    return per_s_allowed(ms_sum(rp->pipe_cpu_ms, PIPE_CPU_N), rp->cores);
}

/* Messages per second `cores` cores allow at the CPU cost a message of ms[0..MAIL_CPU_N). */
static double per_s_at(const double *ms, double cores) {
    return per_s_allowed(ms_sum(ms, MAIL_CPU_N), cores);
}

/* Messages per second the SMTP server allows at its CPU cost a message: it runs on one thread. */
static double smtp_server_bound(const double *ms) {
    return ms[MC_SMTP] > 0 ? 1000.0 / ms[MC_SMTP] : NAN;
}

static json_t *sched_json(const sched_fig_t *s) {
    json_t *o = json_object();
    json_object_set_new(o, "cpu_wait_cores", fig_json(s->wait_cores));
    json_object_set_new(o, "runs_per_item", fig_json(s->runs_per));
    json_object_set_new(o, "wait_us_per_run", fig_json(s->wait_us));
    return o;
}

/* "threads waiting for a CPU 1.97 cores (11.3 turns on a CPU a message, 72 us each)" into buf. */
static const char *sched_text(char *buf, size_t size, const sched_fig_t *s, const char *item) {
    char w[16], r[16], u[16];
    snprintf(buf, size, "threads waiting for a CPU %s cores (%s turns on a CPU a %s, %s us each)",
             fig_text(w, sizeof(w), "%.2f", s->wait_cores), fig_text(r, sizeof(r), "%.1f", s->runs_per), item,
             fig_text(u, sizeof(u), "%.0f", s->wait_us));
    return buf;
}

static json_t *mail_cpu_json(const double *ms) {
    json_t *cpu = json_object();
    for (int i = 0; i < MAIL_CPU_N; i++)
        json_object_set_new(cpu, mail_cpu_names[i], fig_json(ms[i]));
    json_object_set_new(cpu, "total", fig_json(ms_sum(ms, MAIL_CPU_N)));
    return cpu;
}

/* One ratio of the table; "n/a" with a note when a figure it needs has no value. */
static void print_ratio(const char *label, double r) {
    char v[32];
    printf("%-46s %12s%s\n", label, fig_text(v, sizeof(v), "%.2f", r),
           isfinite(r) ? "" : "  (a figure it needs has no value)");
}

static void proc_label(int i, char *name, size_t size) {
    if (i > P_COMMAND && i < P_RELAY)
        snprintf(name, size, "%s#%d", procs[i].name, i + 1);
    else
        snprintf(name, size, "%s", procs[i].name);
}

/* The figures of a report (one run's, or the medians; peak_rss from rss, which is the maxima for the
 * medians). "floors.postgresql_commands_per_s" and "ratios.pipeline_to_postgresql" are the per-command SQL
 * figures under their former names. */
static json_t *figures_json(const report_t *rp, const report_t *rss, const options_t *o) {
    json_t *procs_j = json_object();
    for (int i = 0; i < NPROCS; i++) {
        if (!rp->started[i])
            continue;
        char name[64];
        proc_label(i, name, sizeof(name));
        json_object_set_new(procs_j, name,
                            json_pack("{s:o, s:o}", "cpu_seconds", fig_json(rp->cpu_s[i]), "peak_rss_mib",
                                      fig_json(rss->peak_rss_mib[i])));
    }
    json_t *lat = json_array();
    for (int i = 0; i < rp->nlat; i++) {
        json_array_append_new(
            lat, json_pack("{s:I, s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "offered_per_s",
                           (json_int_t)rp->lat[i].rate, "achieved_per_s", fig_json(rp->lat[i].achieved),
                           "commands", (json_int_t)rp->lat[i].received, "min_ms", fig_json(rp->lat[i].min),
                           "p50_ms", fig_json(rp->lat[i].p50), "p90_ms", fig_json(rp->lat[i].p90), "p95_ms",
                           fig_json(rp->lat[i].p95), "p99_ms", fig_json(rp->lat[i].p99), "max_ms",
                           fig_json(rp->lat[i].max)));
        json_t *entry = json_array_get(lat, json_array_size(lat) - 1), *stages = json_object();
        for (int st = 0; st < STAGE_N; st++)
            json_object_set_new(stages, stage_names[st],
                                json_pack("{s:o, s:o, s:o}", "p50_ms", fig_json(rp->lat[i].stage[st][SQ_P50]),
                                          "p90_ms", fig_json(rp->lat[i].stage[st][SQ_P90]), "p99_ms",
                                          fig_json(rp->lat[i].stage[st][SQ_P99])));
        json_object_set_new(entry, "stages", stages);
        json_object_set_new(entry, "stage_commands", json_integer((json_int_t)rp->lat[i].staged));
    }
    json_t *doc = json_pack(
        "{s:{s:o, s:I}, s:o, s:{s:o, s:I},"
        " s:{s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o},"
        " s:{s:I, s:o, s:o, s:o},"
        " s:{s:o, s:o, s:o, s:o, s:o, s:o, s:o}, s:o}",
        "pipeline", "commands_per_s", fig_json(rp->pipeline_cps), "rejected",
        (json_int_t)rp->pipeline_rejected, "latency", lat, "mail", "messages_per_s", fig_json(rp->mail_mps),
        "messages", (json_int_t)rp->mails_sent, "floors", "row_floor_commands_per_s",
        fig_json(rp->row_floor_cps), "row_floor_bytes_per_command", (json_int_t)rp->row_bytes,
        "row_floor_rows_per_command", (json_int_t)rp->rows_per_command, "batch_max", (json_int_t)batch_max,
        "per_command_sql_commands_per_s", fig_json(rp->pg_floor_cps), "postgresql_commands_per_s",
        fig_json(rp->pg_floor_cps), "set_path_sql_commands_per_s", fig_json(rp->set_sql_cps),
        "kafka_messages_per_s", fig_json(rp->kafka_floor_mps), "smtp_messages_per_s",
        fig_json(rp->smtp_floor_mps), "scaling", "commands", (json_int_t)o->scaling_commands,
        "one_worker_commands_per_s", fig_json(rp->one_worker_cps), "two_workers_commands_per_s",
        fig_json(rp->two_workers_cps), "two_to_one", fig_json(ratio(rp->two_workers_cps, rp->one_worker_cps)),
        "ratios", "pipeline_to_row_floor", fig_json(ratio(rp->pipeline_cps, rp->row_floor_cps)),
        "set_path_sql_to_row_floor", fig_json(ratio(rp->set_sql_cps, rp->row_floor_cps)),
        "pipeline_to_per_command_sql", fig_json(ratio(rp->pipeline_cps, rp->pg_floor_cps)),
        "pipeline_to_postgresql", fig_json(ratio(rp->pipeline_cps, rp->pg_floor_cps)), "pipeline_to_kafka",
        fig_json(ratio(rp->pipeline_cps, rp->kafka_floor_mps)), "mailer_to_smtp",
        fig_json(ratio(rp->mail_mps, rp->smtp_floor_mps)), "two_workers_to_one",
        fig_json(ratio(rp->two_workers_cps, rp->one_worker_cps)), "workers", procs_j);
    if (!doc)
        abort();
    /* The SMTP floor over as many sessions as the mailer's senders, and the mailer against it. */
    json_t *floors = json_object_get(doc, "floors"), *ratios = json_object_get(doc, "ratios");
    json_object_set_new(floors, "smtp_sessions", json_integer(mail_connections));
    json_object_set_new(floors, "smtp_sessions_messages_per_s", fig_json(rp->smtp_floor_sessions_mps));
    json_object_set_new(ratios, "mailer_to_smtp_sessions",
                        fig_json(ratio(rp->mail_mps, rp->smtp_floor_sessions_mps)));
    /* Where the pipeline phase's CPU went, per command, and what the machine's cores allow at that cost. */
    json_t *cpu = json_object();
    for (int i = 0; i < PIPE_CPU_N; i++)
        json_object_set_new(cpu, pipe_cpu_names[i], fig_json(rp->pipe_cpu_ms[i]));
    json_object_set_new(cpu, "total", fig_json(ms_sum(rp->pipe_cpu_ms, PIPE_CPU_N)));
    json_t *pipe = json_object_get(doc, "pipeline");
    json_object_set_new(pipe, "cpu_ms_per_command", cpu);
    json_object_set_new(pipe, "machine_busy_cores", fig_json(rp->pipe_busy_cores));
    json_object_set_new(pipe, "scheduler", sched_json(&rp->pipe_sched));
    json_object_set_new(pipe, "cores", fig_json(rp->cores));
    json_object_set_new(pipe, "cpu_bound_commands_per_s", fig_json(cpu_bound(rp)));
    /* The same for the mail phase (a message), and for the SMTP floor over mail.connections sessions. */
    json_t *mail = json_object_get(doc, "mail");
    json_object_set_new(mail, "cpu_ms_per_message", mail_cpu_json(rp->mail_cpu_ms));
    json_object_set_new(mail, "machine_busy_cores", fig_json(rp->mail_busy_cores));
    json_object_set_new(mail, "scheduler", sched_json(&rp->mail_sched));
    json_object_set_new(mail, "cpu_bound_messages_per_s", fig_json(per_s_at(rp->mail_cpu_ms, rp->cores)));
    json_object_set_new(mail, "smtp_server_bound_messages_per_s",
                        fig_json(smtp_server_bound(rp->mail_cpu_ms)));
    json_object_set_new(floors, "smtp_sessions_cpu_ms_per_message", mail_cpu_json(rp->floor_cpu_ms));
    json_object_set_new(floors, "smtp_sessions_machine_busy_cores", fig_json(rp->floor_busy_cores));
    json_object_set_new(floors, "smtp_sessions_smtp_server_bound_messages_per_s",
                        fig_json(smtp_server_bound(rp->floor_cpu_ms)));
    return doc;
}

static void write_json(const report_t *runs, int n, const report_t *med, const report_t *lo,
                       const report_t *hi, const options_t *o, const char *path) {
    json_t *doc =
        json_pack("{s:s, s:I, s:{s:I, s:I, s:I, s:I, s:I}}", "run", run_tag, "repeat", (json_int_t)n, "sizes",
                  "commands", (json_int_t)o->commands, "orgs", (json_int_t)o->orgs, "command_workers",
                  (json_int_t)o->command_workers, "scaling_commands", (json_int_t)o->scaling_commands,
                  "payload_bytes", (json_int_t)med->payload_bytes);
    if (!doc)
        abort();
    json_t *fig = figures_json(med, hi, o);
    json_object_update(doc, fig);
    json_decref(fig);
    /* Every figure's median, min and max over the runs. */
    json_t *spread = json_object();
    static const struct {
        const char *name;
        size_t off;
    } named[] = {{"row_floor_commands_per_s", offsetof(report_t, row_floor_cps)},
                 {"per_command_sql_commands_per_s", offsetof(report_t, pg_floor_cps)},
                 {"set_path_sql_commands_per_s", offsetof(report_t, set_sql_cps)},
                 {"kafka_messages_per_s", offsetof(report_t, kafka_floor_mps)},
                 {"pipeline_commands_per_s", offsetof(report_t, pipeline_cps)},
                 {"one_worker_commands_per_s", offsetof(report_t, one_worker_cps)},
                 {"two_workers_commands_per_s", offsetof(report_t, two_workers_cps)},
                 {"mail_messages_per_s", offsetof(report_t, mail_mps)},
                 {"smtp_messages_per_s", offsetof(report_t, smtp_floor_mps)},
                 {"smtp_sessions_messages_per_s", offsetof(report_t, smtp_floor_sessions_mps)}};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        json_object_set_new(spread, named[i].name,
                            json_pack("{s:o, s:o, s:o}", "median", fig_json(FIG(med, named[i].off)), "min",
                                      fig_json(FIG(lo, named[i].off)), "max",
                                      fig_json(FIG(hi, named[i].off))));
    for (int i = 0; i < med->nlat; i++) {
        char name[64];
        snprintf(name, sizeof(name), "latency_%ld_p99_ms", med->lat[i].rate);
        json_object_set_new(spread, name,
                            json_pack("{s:o, s:o, s:o}", "median", fig_json(med->lat[i].p99), "min",
                                      fig_json(lo->lat[i].p99), "max", fig_json(hi->lat[i].p99)));
    }
    json_object_set_new(doc, "spread", spread);
    json_t *runs_j = json_array();
    for (int r = 0; r < n; r++)
        json_array_append_new(runs_j, figures_json(&runs[r], &runs[r], o));
    json_object_set_new(doc, "runs", runs_j);
    if (json_dump_file(doc, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        fprintf(stderr, "raikoo-bench: cannot write %s\n", path);
    json_decref(doc);
}

/* One line of the table: the median, and with several runs their min and max. */
static void row(int n, const char *label, const char *fmt, double med, double lo, double hi) {
    char v[32];
    printf("%-46s %12s", label, fig_text(v, sizeof(v), fmt, med));
    if (n > 1) {
        char a[32], b[32];
        printf(" %12s %12s", fig_text(a, sizeof(a), fmt, lo), fig_text(b, sizeof(b), fmt, hi));
    }
    printf("\n");
}

static void print_table(int n, const report_t *m, const report_t *lo, const report_t *hi,
                        const options_t *o) {
    if (n > 1)
        printf("\nmedians of %d runs\n%-46s %12s %12s %12s\n", n, "measure", "median", "min", "max");
    else
        printf("\n%-46s %12s\n", "measure", "value");
    row(n, "row floor (InviteNewUser/s, set-based rows)", "%.0f", m->row_floor_cps, lo->row_floor_cps,
        hi->row_floor_cps);
    row(n, "per-command SQL (InviteNewUser/s, lib/cmdproc)", "%.0f", m->pg_floor_cps, lo->pg_floor_cps,
        hi->pg_floor_cps);
    row(n, "set-path SQL (InviteNewUser/s, lib/cmdproc)", "%.0f", m->set_sql_cps, lo->set_sql_cps,
        hi->set_sql_cps);
    row(n, "Kafka floor (messages/s, produce+consume)", "%.0f", m->kafka_floor_mps, lo->kafka_floor_mps,
        hi->kafka_floor_mps);
    char label[80];
    snprintf(label, sizeof(label), "pipeline (commands/s, %ld worker%s)", o->command_workers,
             o->command_workers > 1 ? "s" : "");
    row(n, label, "%.0f", m->pipeline_cps, lo->pipeline_cps, hi->pipeline_cps);
    row(n, "scaling: one command worker (commands/s)", "%.0f", m->one_worker_cps, lo->one_worker_cps,
        hi->one_worker_cps);
    row(n, "scaling: two command workers (commands/s)", "%.0f", m->two_workers_cps, lo->two_workers_cps,
        hi->two_workers_cps);
    for (int i = 0; i < m->nlat; i++) {
        char f[8][16];
        printf("latency @%5ld/s (achieved %6s/s)  min %6s  p50 %6s  p90 %6s  p95 %6s  p99 %6s  max %6s ms",
               m->lat[i].rate, fig_text(f[0], 16, "%.0f", m->lat[i].achieved),
               fig_text(f[1], 16, "%.1f", m->lat[i].min), fig_text(f[2], 16, "%.1f", m->lat[i].p50),
               fig_text(f[3], 16, "%.1f", m->lat[i].p90), fig_text(f[4], 16, "%.1f", m->lat[i].p95),
               fig_text(f[5], 16, "%.1f", m->lat[i].p99), fig_text(f[6], 16, "%.1f", m->lat[i].max));
        if (n > 1)
            printf("  (p99 %s..%s)", fig_text(f[6], 16, "%.1f", lo->lat[i].p99),
                   fig_text(f[7], 16, "%.1f", hi->lat[i].p99));
        if (!isfinite(m->lat[i].p50))
            printf("  (n/a: no latency samples)");
        printf("\n");
        for (int st = 0; st < STAGE_N; st++)
            printf("  @%5ld/s %-38s p50 %6s  p90 %6s  p99 %6s ms\n", m->lat[i].rate, stage_labels[st],
                   fig_text(f[0], 16, "%.1f", m->lat[i].stage[st][SQ_P50]),
                   fig_text(f[1], 16, "%.1f", m->lat[i].stage[st][SQ_P90]),
                   fig_text(f[2], 16, "%.1f", m->lat[i].stage[st][SQ_P99]));
    }
    row(n, "SMTP floor (messages/s, one session)", "%.0f", m->smtp_floor_mps, lo->smtp_floor_mps,
        hi->smtp_floor_mps);
    char floor_label[64];
    snprintf(floor_label, sizeof(floor_label), "SMTP floor (messages/s, %ld sessions)", mail_connections);
    row(n, floor_label, "%.0f", m->smtp_floor_sessions_mps, lo->smtp_floor_sessions_mps,
        hi->smtp_floor_sessions_mps);
    row(n, "mailer (messages/s, job->accepted)", "%.0f", m->mail_mps, lo->mail_mps, hi->mail_mps);
    print_ratio("ratio pipeline / row floor", ratio(m->pipeline_cps, m->row_floor_cps));
    print_ratio("ratio set-path SQL / row floor", ratio(m->set_sql_cps, m->row_floor_cps));
    print_ratio("ratio pipeline / per-command SQL", ratio(m->pipeline_cps, m->pg_floor_cps));
    print_ratio("ratio pipeline / Kafka floor", ratio(m->pipeline_cps, m->kafka_floor_mps));
    print_ratio("ratio two workers / one worker", ratio(m->two_workers_cps, m->one_worker_cps));
    print_ratio("ratio mailer / SMTP floor (one session)", ratio(m->mail_mps, m->smtp_floor_mps));
    print_ratio("ratio mailer / SMTP floor (mail.connections)",
                ratio(m->mail_mps, m->smtp_floor_sessions_mps));
    printf("(ratios from the medians; row floor rows: %zu per command, %zu bytes of COPY text)\n",
           m->rows_per_command, m->row_bytes);
    char f[PIPE_CPU_N + 3][16];
    double total = ms_sum(m->pipe_cpu_ms, PIPE_CPU_N);
    printf(
        "pipeline CPU per command (ms): workers %s, relay %s, broker %s, PostgreSQL %s, bench %s; all %s\n",
        fig_text(f[0], 16, "%.3f", m->pipe_cpu_ms[PC_WORKERS]),
        fig_text(f[1], 16, "%.3f", m->pipe_cpu_ms[PC_RELAY]),
        fig_text(f[2], 16, "%.3f", m->pipe_cpu_ms[PC_BROKER]),
        fig_text(f[3], 16, "%.3f", m->pipe_cpu_ms[PC_POSTGRESQL]),
        fig_text(f[4], 16, "%.3f", m->pipe_cpu_ms[PC_BENCH]), fig_text(f[5], 16, "%.3f", total));
    char sched[160];
    printf("pipeline: machine busy %s of %.0f cores, %s; at that cost the cores allow %s commands/s\n",
           fig_text(f[6], 16, "%.2f", m->pipe_busy_cores), m->cores,
           sched_text(sched, sizeof(sched), &m->pipe_sched, "command"),
           fig_text(f[7], 16, "%.0f", cpu_bound(m)));
    if (m->mail_mps > 0) {
        char g[MAIL_CPU_N + 6][16];
        const double *ms = m->mail_cpu_ms, *fl = m->floor_cpu_ms;
        printf(
            "mail CPU per message (ms): mailer %s, relay %s, broker %s, PostgreSQL %s, SMTP server %s, bench "
            "%s; all %s\n",
            fig_text(g[0], 16, "%.3f", ms[MC_MAILER]), fig_text(g[1], 16, "%.3f", ms[MC_RELAY]),
            fig_text(g[2], 16, "%.3f", ms[MC_BROKER]), fig_text(g[3], 16, "%.3f", ms[MC_POSTGRESQL]),
            fig_text(g[4], 16, "%.3f", ms[MC_SMTP]), fig_text(g[5], 16, "%.3f", ms[MC_BENCH]),
            fig_text(g[6], 16, "%.3f", ms_sum(ms, MAIL_CPU_N)));
        printf("mail: machine busy %s of %.0f cores, %s; at that cost the cores allow %s messages/s, the "
               "SMTP server (one thread) %s\n",
               fig_text(g[7], 16, "%.2f", m->mail_busy_cores), m->cores,
               sched_text(sched, sizeof(sched), &m->mail_sched, "message"),
               fig_text(g[8], 16, "%.0f", per_s_at(ms, m->cores)),
               fig_text(g[9], 16, "%.0f", smtp_server_bound(ms)));
        printf("SMTP floor over %ld sessions, CPU per message (ms): SMTP server %s, bench %s; machine busy "
               "%s of %.0f cores; the SMTP server allows %s messages/s\n",
               mail_connections, fig_text(g[10], 16, "%.3f", fl[MC_SMTP]),
               fig_text(g[11], 16, "%.3f", fl[MC_BENCH]), fig_text(g[0], 16, "%.2f", m->floor_busy_cores),
               m->cores, fig_text(g[1], 16, "%.0f", smtp_server_bound(fl)));
    }
    for (int i = 0; i < NPROCS; i++) {
        if (!m->started[i])
            continue;
        char name[64];
        proc_label(i, name, sizeof(name));
        printf("%-28s cpu %8.2f s   peak RSS %7.1f MiB\n", name, m->cpu_s[i], hi->peak_rss_mib[i]);
    }
}

/* ---- the phases ---- */

/* Starts or stops command workers until k run, then waits for their group to settle. */
static int set_command_workers(const conf_t *c, long k, char *err, size_t errsz) {
    for (long i = 0; i < MAX_COMMAND_WORKERS; i++) {
        proc_t *p = &procs[P_COMMAND + i];
        if (i < k && p->pid <= 0 && proc_start(p, options) != 0) {
            snprintf(err, errsz, "cannot start %s", p->name);
            return -1;
        }
        if (i >= k && p->pid > 0) {
            int st = proc_stop(p);
            if (st != 0) {
                snprintf(err, errsz, "%s exited %d (see %s/log/)", p->name, st, options->out_dir);
                return -1;
            }
        }
    }
    return bench_group_wait(c, conf_get(c, "group.commands"), conf_get(c, "topic.commands"), (int)k, 120000,
                            err, errsz);
}

/* A warm-up (the producer's partitions, the workers' sessions), then n commands as fast as the producer
 * allows. Commands per second, or a negative value on failure. */
/* CPU seconds of every process on the pipeline's path at one moment. */
typedef struct cpu_at {
    bench_cpu_t stack;
    double workers, relay, mailer, t;
    bench_sched_t sched; /* of the stack's threads and of the workers running */
} cpu_at_t;

static void cpu_at(cpu_at_t *c) {
    procs_sample();
    bench_cpu_sample(&c->stack);
    c->workers = 0;
    for (int i = P_COMMAND; i < P_RELAY; i++)
        c->workers += procs[i].cpu_s;
    c->relay = procs[P_RELAY].cpu_s;
    c->mailer = procs[P_MAILER].cpu_s;
    c->sched = c->stack.sched;
    for (int i = 0; i < NPROCS; i++)
        if (procs[i].pid > 0)
            bench_pid_sched((long)procs[i].pid, &c->sched);
    c->t = bench_now();
}

/* The machine's busy cores between two moments; NaN when no time passed. */
static double busy_cores(const cpu_at_t *a, const cpu_at_t *b) {
    return b->t > a->t ? (b->stack.machine_busy - a->stack.machine_busy) / (b->t - a->t) : NAN;
}

/* What the scheduler counted between two moments n commands or messages apart; NaN when nothing was counted
 * (no turn on a CPU: no thread found, or no such count) or no time passed. */
static sched_fig_t sched_fig(const cpu_at_t *a, const cpu_at_t *b, long n) {
    double wait = b->sched.wait_s - a->sched.wait_s, runs = b->sched.runs - a->sched.runs;
    sched_fig_t f = {NAN, NAN, NAN};
    if (runs <= 0)
        return f;
    if (b->t > a->t)
        f.wait_cores = wait / (b->t - a->t);
    if (n > 0)
        f.runs_per = runs / (double)n;
    f.wait_us = wait * 1e6 / runs;
    return f;
}

/* rp's pipeline CPU figures from two moments n commands apart. */
static void cpu_profile(report_t *rp, const cpu_at_t *a, const cpu_at_t *b, long n) {
    double per = 1000.0 / (double)n;
    rp->pipe_cpu_ms[PC_WORKERS] = (b->workers - a->workers) * per;
    rp->pipe_cpu_ms[PC_RELAY] = (b->relay - a->relay) * per;
    rp->pipe_cpu_ms[PC_BROKER] = (b->stack.broker - a->stack.broker) * per;
    rp->pipe_cpu_ms[PC_POSTGRESQL] = (b->stack.postgresql - a->stack.postgresql) * per;
    rp->pipe_cpu_ms[PC_BENCH] = (b->stack.bench - a->stack.bench) * per;
    rp->pipe_busy_cores = busy_cores(a, b);
    rp->pipe_sched = sched_fig(a, b, n);
    rp->cores = b->stack.cores;
}

/* The mail phase's CPU figures (ms[MC_*], a message), busy cores and scheduler counts (unless sched is NULL)
 * from two moments n messages apart; NaN (null in the JSON) when there were no such moments (a->t 0: no
 * message was stored). */
static void mail_cpu_profile(double *ms, double *busy, sched_fig_t *sched, const cpu_at_t *a,
                             const cpu_at_t *b, long n) {
    if (n <= 0 || a->t <= 0) {
        for (int i = 0; i < MAIL_CPU_N; i++)
            ms[i] = NAN;
        *busy = NAN;
        if (sched)
            *sched = (sched_fig_t){NAN, NAN, NAN};
        return;
    }
    double per = 1000.0 / (double)n;
    ms[MC_MAILER] = (b->mailer - a->mailer) * per;
    ms[MC_RELAY] = (b->relay - a->relay) * per;
    ms[MC_BROKER] = (b->stack.broker - a->stack.broker) * per;
    ms[MC_POSTGRESQL] = (b->stack.postgresql - a->stack.postgresql) * per;
    ms[MC_SMTP] = (b->stack.smtp - a->stack.smtp) * per;
    ms[MC_BENCH] = (b->stack.bench - a->stack.bench) * per;
    *busy = busy_cores(a, b);
    if (sched)
        *sched = sched_fig(a, b, n);
}

/* Commands per second of n commands published as fast as the producer allows, after a warm-up. With
 * profile, also where their CPU went (rp's pipe_* figures). */
static double throughput(raikoo_producer_t *prod, const options_t *o, const char *phase, long n,
                         long *rejected, report_t *profile) {
    long rej, got;
    char warm[48];
    snprintf(warm, sizeof(warm), "%s-warmup", phase);
    if (run_commands(prod, o, warm, o->orgs < 50 ? o->orgs : 50, 0, NULL, NULL, &rej, &got) < 0)
        return -1;
    cpu_at_t a, b;
    cpu_at(&a);
    double wall = run_commands(prod, o, phase, n, 0, NULL, NULL, rejected, &got);
    if (wall <= 0)
        return -1;
    if (profile) {
        cpu_at(&b);
        cpu_profile(profile, &a, &b, n);
    }
    return (double)n / wall;
}

/* The connection the phases' CHECKPOINTs go through (main's). */
static PGconn *settle_db;

/* Writes out what the phases before left in PostgreSQL's buffers (CHECKPOINT),
 * so that no phase measures the checkpoint the one before it caused: the pipeline's 20,000 commands write
 * about half a GB of WAL, which starts a checkpoint that spreads its writes over the next half minute,
 * and during it every first change to a page logs the whole page and COMMITs wait 50 ms every two seconds
 * (docs/BENCHMARKS.md). Needs the pg_checkpoint role (ops/bench grants it); without it, a warning once and
 * the figures include the checkpoints. */
static void settle(void) {
    static int warned;
    char err[512];
    if (settle_db && db_cmd(settle_db, "CHECKPOINT", err, sizeof(err)) != 0 && !warned++)
        fprintf(stderr, "raikoo-bench: no CHECKPOINT between phases (%s): the figures include checkpoints\n",
                err);
}

/* "phase: ..." on stderr, then settle(). */
static void phase_start(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("phase: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    settle();
}

/* Phases 1 to 3, the floors beside the system: the row floor, per-command and set-path SQL, Kafka. */
static int phase_floors(const conf_t *c, PGconn *db, const options_t *o, report_t *rp) {
    char err[1024];
    /* 1. Row floor: the rows an accepted InviteNewUser leaves, written set-based. */
    phase_start("row floor");
    if (bench_row_floor(c, db, o->commands, admin_id, invite_data, (void *)o, "rowfloor", &rp->row_floor_cps,
                        &rp->row_bytes, &rp->rows_per_command, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: row floor: %s\n", err);
        return -1;
    }
    fprintf(stderr, "  = %.0f commands/s\n", rp->row_floor_cps);

    /* 2. Per-command SQL: the worker's own statements (lib/cmdproc) on the same batches, no Kafka, with
     * the set path turned off; then the processor as the worker runs it (set path on). */
    phase_start("per-command SQL");
    if (bench_pg_floor(c, db, o->commands, admin_id, invite_data, (void *)o, 0, &rp->pg_floor_cps,
                       &rp->payload_bytes, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: per-command SQL: %s\n", err);
        return -1;
    }
    fprintf(stderr, "  = %.0f commands/s\n", rp->pg_floor_cps);
    phase_start("set-path SQL");
    if (bench_pg_floor(c, db, o->commands, admin_id, invite_data, (void *)o, 1, &rp->set_sql_cps,
                       &rp->payload_bytes, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: set-path SQL: %s\n", err);
        return -1;
    }
    fprintf(stderr, "  = %.0f commands/s\n", rp->set_sql_cps);

    /* 3. Kafka floor: messages of the same size, same client settings, produced and consumed back. */
    phase_start("Kafka floor");
    if (bench_kafka_floor(c, o->commands, rp->payload_bytes, o->orgs, &rp->kafka_floor_mps, err,
                          sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: Kafka floor: %s\n", err);
        return -1;
    }
    fprintf(stderr, "  = %.0f messages/s\n", rp->kafka_floor_mps);
    return 0;
}

/* Phase 4: the pipeline, end to end (starts the relay and the command workers). */
static int phase_pipeline(const conf_t *c, raikoo_producer_t *prod, const options_t *o, report_t *rp) {
    char err[1024];
    phase_start("pipeline throughput");
    if (proc_start(&procs[P_RELAY], o) != 0)
        return -1;
    if (set_command_workers(c, o->command_workers, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: %s\n", err);
        return -1;
    }
    rp->pipeline_cps = throughput(prod, o, "pipeline", o->commands, &rp->pipeline_rejected, rp);
    if (rp->pipeline_cps <= 0)
        return -1;
    procs_sample();
    fprintf(stderr, "  = %.0f commands/s\n", rp->pipeline_cps);
    return 0;
}

/* The file of a latency phase's commands, one line each (--out/latency-<run>-<n>-<rate>.csv): the publish
 * on the wall clock (epoch seconds), publish -> result, publish -> transaction began, transaction began ->
 * relay published, relay published -> result received (ms; the last two empty when the result had no
 * timestamp). NULL (and a warning) when it cannot be written: the figures do not need it. */
static FILE *samples_csv(long rate) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/latency-%s-%ld-%ld.csv", options->out_dir, run_tag, run_no, rate);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "raikoo-bench: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    fputs(
        "published_epoch_s,total_ms,to_transaction_ms,transaction_to_published_ms,published_to_received_ms\n",
        f);
    return f;
}

/* The stages of a latency phase's n samples into l: one query for the processed_at (epoch microseconds) of
 * every command id, then each stage's p50, p90 and p99. PostgreSQL's now() and bench_wall() are the same
 * machine's wall clock. */
static int latency_stages(PGconn *db, const lat_sample_t *s, long n, long rate, lat_fig_t *l, char *err,
                          size_t errsz) {
    for (int st = 0; st < STAGE_N; st++)
        for (int q = 0; q < SQ_N; q++)
            l->stage[st][q] = NAN;
    l->staged = 0;
    /* The ids as a text array literal: {id,id,...} (uuids need no quoting). */
    char *ids = xmalloc((size_t)n * UUID_BUF + 3), *w = ids;
    *w++ = '{';
    for (long i = 0; i < n; i++)
        if (s[i].id[0]) {
            if (w > ids + 1)
                *w++ = ',';
            size_t len = strlen(s[i].id);
            memcpy(w, s[i].id, len);
            w += len;
        }
    *w++ = '}';
    *w = '\0';
    const char *params[1] = {ids};
    PGresult *r = db_exec(db,
                          "SELECT command_id::text, (extract(epoch FROM processed_at) * 1000000)::bigint"
                          " FROM processed_commands WHERE command_id = ANY($1::uuid[])",
                          1, params, err, errsz);
    free(ids);
    if (!r)
        return -1;
    sendtimes_t *began = sendtimes_new((size_t)PQntuples(r));
    for (int i = 0; i < PQntuples(r); i++) {
        double us = strtod(PQgetvalue(r, i, 1), NULL);
        sendtimes_put(began, PQgetvalue(r, i, 0), us / 1e6, 0);
    }
    PQclear(r);
    double *v[STAGE_N], drift = 0;
    size_t kst[STAGE_N] = {0}; /* samples of each stage (the relay's publish may be unknown) */
    for (int st = 0; st < STAGE_N; st++)
        v[st] = xcalloc((size_t)n + 1, sizeof(double));
    long k = 0;
    FILE *csv = samples_csv(rate);
    for (long i = 0; i < n; i++) {
        double at = s[i].id[0] ? sendtimes_get(began, s[i].id, NULL) : 0;
        if (at <= 0)
            continue;
        double to_tx = (at - s[i].sent_wall) * 1000.0, tx_to_result = (s[i].recv_wall - at) * 1000.0;
        v[ST_TO_TX][kst[ST_TO_TX]++] = to_tx;
        v[ST_TX_TO_RESULT][kst[ST_TX_TO_RESULT]++] = tx_to_result;
        /* The relay's publish, from the result message's Kafka timestamp (whole milliseconds). */
        double pub = s[i].published_wall;
        if (pub > 0) {
            v[ST_TX_TO_PUB][kst[ST_TX_TO_PUB]++] = (pub - at) * 1000.0;
            v[ST_PUB_TO_RECV][kst[ST_PUB_TO_RECV]++] = (s[i].recv_wall - pub) * 1000.0;
        }
        if (csv && pub > 0)
            fprintf(csv, "%.6f,%.3f,%.3f,%.3f,%.3f\n", s[i].sent_wall, s[i].total_ms, to_tx,
                    (pub - at) * 1000.0, (s[i].recv_wall - pub) * 1000.0);
        else if (csv)
            fprintf(csv, "%.6f,%.3f,%.3f,,\n", s[i].sent_wall, s[i].total_ms, to_tx);
        double d = fabs(to_tx + tx_to_result - s[i].total_ms);
        if (d > drift)
            drift = d;
        k++;
    }
    sendtimes_free(began);
    if (csv)
        fclose(csv);
    for (int st = 0; st < STAGE_N; st++) {
        qsort(v[st], kst[st], sizeof(double), cmp_double);
        l->stage[st][SQ_P50] = percentile(v[st], kst[st], 50);
        l->stage[st][SQ_P90] = percentile(v[st], kst[st], 90);
        l->stage[st][SQ_P99] = percentile(v[st], kst[st], 99);
        free(v[st]);
    }
    l->staged = k;
    fprintf(stderr,
            "  = stages of %ld of %ld commands: to transaction p50 %.1f p99 %.1f ms, transaction to result"
            " p50 %.1f p99 %.1f ms (wall-clock sum vs monotonic total: at most %.3f ms apart)\n",
            k, n, l->stage[ST_TO_TX][SQ_P50], l->stage[ST_TO_TX][SQ_P99], l->stage[ST_TX_TO_RESULT][SQ_P50],
            l->stage[ST_TX_TO_RESULT][SQ_P99], drift);
    return 0;
}

/* Phase 5: latency at each fixed offered load of --rates (*lat: the samples' buffer, reused), each split
 * into its stages. */
static int phase_latency(PGconn *db, raikoo_producer_t *prod, const options_t *o, report_t *rp,
                         double **lat) {
    for (int i = 0; i < o->nrates; i++) {
        long n = (long)((double)o->rates[i] * o->rate_seconds);
        if (n < 1)
            n = 1;
        phase_start("latency at %ld commands/s (%ld commands)", o->rates[i], n);
        free(*lat);
        *lat = calloc((size_t)n, sizeof(**lat));
        lat_sample_t *samples = calloc((size_t)n, sizeof(*samples));
        if (!*lat || !samples)
            abort();
        long rej, got;
        char phase[32];
        snprintf(phase, sizeof(phase), "lat%ld.%d", o->rates[i], i); /* a rate given twice: other addresses */
        double wall = run_commands(prod, o, phase, n, o->rates[i], *lat, samples, &rej, &got);
        if (wall <= 0) {
            free(samples);
            return -1;
        }
        lat_fig_t *l = &rp->lat[i];
        l->rate = o->rates[i];
        l->sent = n;
        l->received = got;
        l->achieved = (double)n / wall;
        l->min = got ? (*lat)[0] : NAN;
        l->p50 = percentile(*lat, (size_t)got, 50);
        l->p90 = percentile(*lat, (size_t)got, 90);
        l->p95 = percentile(*lat, (size_t)got, 95);
        l->p99 = percentile(*lat, (size_t)got, 99);
        l->max = got ? (*lat)[got - 1] : NAN;
        rp->nlat = i + 1;
        procs_sample();
        fprintf(stderr, "  = achieved %.0f/s (published at %.0f/s), p50 %.1f ms, p99 %.1f ms\n", l->achieved,
                last_send > first_send ? (double)(n - 1) / (last_send - first_send) : 0.0, l->p50, l->p99);
        char err[1024];
        int rc = latency_stages(db, samples, got, o->rates[i], l, err, sizeof(err));
        free(samples);
        if (rc != 0) {
            fprintf(stderr, "raikoo-bench: latency stages: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/* The CPU of every process at the mail phase's first stored message (0) and after its last (1). */
static cpu_at_t mail_marks[2];
static void mail_mark(int end) {
    cpu_at(&mail_marks[end ? 1 : 0]);
}

/* Phase 6: mail, the jobs this run queued so far (starts and stops the mailer), then the SMTP floor over
 * one session and over mail.connections. With --no-mail, neither: 0 for both figures. */
static int phase_mail(const conf_t *c, const options_t *o, report_t *rp) {
    char err[1024];
    if (o->no_mail) {
        rp->mail_mps = rp->smtp_floor_mps = 0.0; /* JSON has no NaN: 0 for "not measured" */
        return 0;
    }
    /* The SMTP server warmed up first, untimed, as the floor measured after this phase finds it. */
    double warm;
    fprintf(stderr, "phase: SMTP server warm-up (untimed)\n");
    if (bench_smtp_floor(c, SMTP_WARMUP, mail_connections, &warm, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: SMTP warm-up: %s\n", err);
        return -1;
    }
    phase_start("mail throughput");
    rp->mails_sent = invitations_made;
    memset(mail_marks, 0, sizeof(mail_marks)); /* none from an earlier run */
    if (bench_mail(c, invitations_made, start_mailer, procs_sample, mail_mark, &rp->mail_mps, err,
                   sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: mail: %s\n", err);
        return -1;
    }
    mail_cpu_profile(rp->mail_cpu_ms, &rp->mail_busy_cores, &rp->mail_sched, &mail_marks[0], &mail_marks[1],
                     rp->mails_sent - 1);
    invitations_made = 0;
    phase_start("SMTP floor");
    if (proc_stop(&procs[P_MAILER]) != 0) {
        fprintf(stderr, "raikoo-bench: the mailer failed (see %s/log/)\n", o->out_dir);
        return -1;
    }
    long n = rp->mails_sent < SMTP_FLOOR_MAX ? rp->mails_sent : SMTP_FLOOR_MAX;
    cpu_at_t a, b;
    int failed = bench_smtp_floor(c, n, 1, &rp->smtp_floor_mps, err, sizeof(err)) != 0;
    if (!failed) {
        cpu_at(&a);
        failed =
            bench_smtp_floor(c, n, mail_connections, &rp->smtp_floor_sessions_mps, err, sizeof(err)) != 0;
        cpu_at(&b);
    }
    if (failed) {
        fprintf(stderr, "raikoo-bench: SMTP floor: %s\n", err);
        return -1;
    }
    /* No scheduler's counts: the sessions' threads ended before b. */
    mail_cpu_profile(rp->floor_cpu_ms, &rp->floor_busy_cores, NULL, &a, &b, n);
    return 0;
}

/* Phase 7. Scaling: the same throughput with one and with two command workers, back to back. Its mail
 * jobs are left unsent (the mail phase is over), and with --no-mail those of the whole run. */
static int phase_scaling(const conf_t *c, PGconn *db, raikoo_producer_t *prod, const options_t *o,
                         report_t *rp) {
    char err[1024];
    phase_start("scaling (one and two command workers, %ld commands each)", o->scaling_commands);
    long order[2] = {1, 2};
    if (o->command_workers > 1) {
        order[0] = 2;
        order[1] = 1;
    }
    for (int k = 0; k < 2; k++) {
        long w = order[k], rej = 0;
        if (k > 0)
            settle();
        if (set_command_workers(c, w, err, sizeof(err)) != 0) {
            fprintf(stderr, "raikoo-bench: scaling: %s\n", err);
            return -1;
        }
        double cps = throughput(prod, o, w == 1 ? "scale1" : "scale2", o->scaling_commands, &rej, NULL);
        if (cps <= 0)
            return -1;
        if (rej) {
            fprintf(stderr, "raikoo-bench: scaling: %ld commands rejected\n", rej);
            return -1;
        }
        *(w == 1 ? &rp->one_worker_cps : &rp->two_workers_cps) = cps;
        procs_sample();
        fprintf(stderr, "  = %ld worker%s: %.0f commands/s\n", w, w > 1 ? "s" : "", cps);
    }
    if (bench_mail_skip(c, db, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: scaling: %s\n", err);
        return -1;
    }
    invitations_made = 0;
    return 0;
}

/* Every measured phase, once. The workers run only from the pipeline phase to the end of the run, so that
 * the floors see no relay and every run starts from the same state. */
static int one_run(const conf_t *c, PGconn *db, raikoo_producer_t *prod, const options_t *o, report_t *rp,
                   double **lat) {
    invitations_made = 0;
    for (int i = 0; i < NPROCS; i++)
        procs[i] = (proc_t){procs[i].name, 0, 0, 0};
    int ok = phase_floors(c, db, o, rp) == 0 && phase_pipeline(c, prod, o, rp) == 0 &&
             phase_latency(db, prod, o, rp, lat) == 0 && phase_mail(c, o, rp) == 0 &&
             phase_scaling(c, db, prod, o, rp) == 0;
    procs_sample();
    for (int i = 0; i < NPROCS; i++) {
        int st = proc_stop(&procs[i]);
        if (st != 0 && procs[i].pid != 0) {
            fprintf(stderr, "raikoo-bench: %s exited %d (see %s/log/)\n", procs[i].name, st, o->out_dir);
            ok = 0;
        }
        rp->started[i] = procs[i].pid != 0;
        rp->cpu_s[i] = procs[i].cpu_s;
        rp->peak_rss_mib[i] = (double)procs[i].peak_rss_kb / 1024.0;
    }
    return ok ? 0 : -1;
}

/* The folder of this program (where the workers it starts are), into dir. */
static void self_dir(char *dir, size_t size) {
    ssize_t sl = readlink("/proc/self/exe", dir, size - 1);
    dir[sl > 0 ? sl : 0] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
}

/* Makes --out and its log/ folder (the workers' logs). */
static void out_dir_make(const options_t *o) {
    char logdir[4096];
    snprintf(logdir, sizeof(logdir), "%s/log", o->out_dir);
    mkdir(o->out_dir, 0755);
    mkdir(logdir, 0755);
}

/* The medians (min, max) of every run: the table on stdout and bench-<run>.json in --out. */
static void report_runs(const report_t *runs, const options_t *o) {
    report_t med, lo, hi;
    summarize(runs, (int)o->repeat, &med, &lo, &hi);
    char path[4096];
    snprintf(path, sizeof(path), "%s/bench-%s.json", o->out_dir, run_tag);
    print_table((int)o->repeat, &med, &lo, &hi, o);
    write_json(runs, (int)o->repeat, &med, &lo, &hi, o, path);
    printf("\nfigures written to %s\n", path);
}

int main(int argc, char **argv) {
    int rc = 1;
    char err[1024];
    options_t o;
    const char *config = NULL;
    conf_t *c = conf_new();
    PGconn *db = NULL;
    raikoo_producer_t *prod = NULL;
    report_t *runs = NULL;
    double *lat = NULL;

    if (parse_options(argc, argv, &o, &config) != 0) {
        conf_free(c);
        return 2;
    }
    if (conf_load(c, config, err, sizeof(err)) != 0 || secret_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: %s\n", err);
        conf_free(c);
        return 2;
    }
    log_init("bench", "warn");
    signal(SIGPIPE, SIG_IGN);
    char self[4096];
    self_dir(self, sizeof(self));
    o.bin_dir = self;
    options = &o;
    out_dir_make(&o);
    unsigned char tag[4];
    randombytes_buf(tag, sizeof(tag));
    sodium_bin2hex(run_tag, sizeof(run_tag), tag, sizeof(tag));
    runs = calloc((size_t)o.repeat, sizeof(*runs));
    if (!runs)
        abort();

    db = settle_db = db_connect_migrated(c, err, sizeof(err));
    if (!db || setup_orgs(db, &o, err, sizeof(err)) != 0 ||
        conf_get_long(c, "batch.max", 1, 100000, &batch_max, err, sizeof(err)) != 0 ||
        conf_get_long(c, "mail.connections", 1, 64, &mail_connections, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: %s\n", err);
        goto done;
    }
    printf("raikoo-bench run %s: %ld commands over %ld organizations, %ld run%s\n", run_tag, o.commands,
           o.orgs, o.repeat, o.repeat > 1 ? "s" : "");
    fflush(stdout);
    prod = raikoo_producer_new_conf(c, err, sizeof(err));
    if (!prod || raikoo_results_follow(prod, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: %s\n", err);
        goto done;
    }
    raikoo_producer_set_source(prod, "/raikoo/bench");

    for (run_no = 1; run_no <= o.repeat; run_no++) {
        if (o.repeat > 1)
            fprintf(stderr, "run %ld of %ld\n", run_no, o.repeat);
        if (one_run(c, db, prod, &o, &runs[run_no - 1], &lat) != 0)
            goto done;
    }
    rc = 0;
    report_runs(runs, &o);
done:
    free(runs);
    free(lat);
    free(orgs);
    raikoo_producer_free(prod);
    PQfinish(db);
    conf_free(c);
    return rc;
}
