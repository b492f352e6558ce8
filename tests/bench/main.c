/* raikoo-bench: measures the pipeline, its latency and the mailer on a stack of its own, beside the raw
 * floors of Kafka, PostgreSQL and SMTP measured in the same run, and reports ratios (table + JSON). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
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

#define MAX_COMMAND_WORKERS 4

typedef struct options {
    long commands;      /* pipeline throughput: InviteNewUser commands */
    long orgs;          /* spread over this many organizations */
    long rates[8];      /* latency: offered loads, commands per second */
    int nrates;
    double rate_seconds;/* how long each offered load lasts */
    const char *out_dir;
    const char *bin_dir;
    long command_workers;
} options_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: raikoo-bench [--commands N] [--orgs N] [--rates R1,R2,...] [--rate-seconds S] [--out DIR]\n"
            "                    [--command-workers N] [--config FILE]\n"
            "Runs on the stack the configuration names (ops/bench brings up one of its own). Defaults:\n"
            "20000 commands over 100 organizations; loads 200,1000,5000 per second for 3 s each; the mail\n"
            "phase sends every invitation the run made; one command worker (up to 4); results in var/bench/.\n");
}

static int parse_options(int argc, char **argv, options_t *o, const char **config) {
    static const struct option opts[] = {
        {"commands", required_argument, NULL, 'c'}, {"orgs", required_argument, NULL, 'o'},
        {"rates", required_argument, NULL, 'r'},    {"rate-seconds", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'O'},      {"command-workers", required_argument, NULL, 'w'},
        {"config", required_argument, NULL, 'C'},   {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    *o = (options_t){.commands = 20000, .orgs = 100, .rates = {200, 1000, 5000}, .nrates = 3, .rate_seconds = 3,
                     .out_dir = "var/bench", .command_workers = 1};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'c':
            o->commands = strtol(optarg, &end, 10);
            break;
        case 'o':
            o->orgs = strtol(optarg, &end, 10);
            break;
        case 's':
            o->rate_seconds = strtod(optarg, &end);
            break;
        case 'w':
            o->command_workers = strtol(optarg, &end, 10);
            break;
        case 'r': {
            o->nrates = 0;
            const char *s = optarg;
            while (*s && o->nrates < 8) {
                o->rates[o->nrates++] = strtol(s, &end, 10);
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',')
                    break;
            }
            break;
        }
        case 'O':
            o->out_dir = optarg;
            break;
        case 'C':
            *config = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (end && *end) {
            fprintf(stderr, "raikoo-bench: bad number \"%s\"\n", optarg);
            return -1;
        }
    }
    if (optind != argc || o->commands < 1 || o->orgs < 1 || o->rate_seconds <= 0 || o->command_workers < 1 ||
        o->command_workers > MAX_COMMAND_WORKERS) {
        usage(stderr);
        return -1;
    }
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
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)p->pid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(buf, sizeof(buf), f)) {
            const char *s = strrchr(buf, ')');
            unsigned long ut = 0, st = 0;
            /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
            if (s && sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
                p->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    f = fopen(path, "r");
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

/* The SMTP floor sends at most this many messages: enough for a steady rate. */
#define SMTP_FLOOR_MAX 10000

static char (*orgs)[37];
static long invitations_made; /* accepted InviteNewUser commands since the workers started */
static double first_send, last_send; /* when run_commands published its first and last command */
static char admin_id[37];
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
    r = db_exec(db,
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
    snprintf(email, sizeof(email), "%s-%s-%ld@bench.test", phase, run_tag, i);
    return json_pack("{s:s, s:s, s:s}", "org_id", orgs[i % o->orgs], "email", email, "name", "Bench Invitee");
}

/* ---- results ---- */

typedef struct report {
    double pg_floor_cps, kafka_floor_mps, pipeline_cps, mail_mps, smtp_floor_mps;
    long pipeline_rejected, mails_sent, batch_max;
    size_t payload_bytes;
    int nlat;
    struct {
        long rate, sent, received;
        double achieved, p50, p95, p99, max;
    } lat[8];
} report_t;

/* Publishes n InviteNewUser commands at the given rate (0: as fast as the producer allows) and waits for
 * every result. Fills lat (milliseconds, sorted) when not NULL. Returns the wall time from the first
 * publish to the last result, or a negative value on failure. */
static double run_commands(raikoo_producer_t *p, const options_t *o, const char *phase, long n, long rate,
                           double *lat, long *rejected, long *received) {
    char err[512], id[37];
    sendtimes_t *st = sendtimes_new((size_t)n);
    double t0 = bench_now(), last = t0;
    long sent = 0;
    first_send = last_send = t0;
    *rejected = 0;
    *received = 0;
    raikoo_result_t r = {0};
    while (*received < n) {
        if (sent < n) {
            double due = rate ? t0 + (double)sent / (double)rate : 0;
            double now = bench_now();
            if (!rate || now >= due) {
                if (raikoo_command_send(p, CMD_INVITE_NEW_USER, admin_id, invite_data((void *)o, phase, sent), id, err,
                                        sizeof(err)) != 0) {
                    fprintf(stderr, "raikoo-bench: publish: %s\n", err);
                    sendtimes_free(st);
                    return -1;
                }
                sendtimes_put(st, id, bench_now());
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
        int got;
        while ((got = raikoo_results_poll(p, timeout, &r, err, sizeof(err))) == 1) {
            double now = bench_now();
            double at = sendtimes_get(st, r.command_id);
            if (lat && at > 0)
                lat[*received] = (now - at) * 1000.0;
            if (r.accepted)
                invitations_made++;
            if (!r.accepted) {
                if (*rejected == 0)
                    fprintf(stderr, "raikoo-bench: rejected: %s: %s\n", r.code, r.message);
                (*rejected)++;
            }
            (*received)++;
            last = now;
            raikoo_result_clear(&r);
            timeout = 0;
        }
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

static void write_json(const report_t *rp, const options_t *o, const char *path) {
    json_t *procs_j = json_object();
    for (int i = 0; i < NPROCS; i++) {
        if (procs[i].pid == 0)
            continue; /* never started */
        char name[64];
        if (i > P_COMMAND && i < P_RELAY)
            snprintf(name, sizeof(name), "%s#%d", procs[i].name, i + 1);
        else
            snprintf(name, sizeof(name), "%s", procs[i].name);
        json_object_set_new(procs_j, name,
                            json_pack("{s:f, s:f}", "cpu_seconds", procs[i].cpu_s, "peak_rss_mib",
                                      (double)procs[i].peak_rss_kb / 1024.0));
    }
    json_t *lat = json_array();
    for (int i = 0; i < rp->nlat; i++)
        json_array_append_new(lat, json_pack("{s:I, s:f, s:I, s:f, s:f, s:f, s:f}", "offered_per_s",
                                             (json_int_t)rp->lat[i].rate, "achieved_per_s", rp->lat[i].achieved,
                                             "commands", (json_int_t)rp->lat[i].received, "p50_ms", rp->lat[i].p50,
                                             "p95_ms", rp->lat[i].p95, "p99_ms", rp->lat[i].p99, "max_ms",
                                             rp->lat[i].max));
    json_t *doc = json_pack(
        "{s:s, s:{s:I, s:I, s:I, s:I}, s:{s:f, s:I}, s:o, s:{s:f, s:I}, s:{s:f, s:f, s:f, s:I}, s:{s:f, s:f, s:f}, s:o}",
        "run", run_tag, "sizes", "commands", (json_int_t)o->commands, "orgs", (json_int_t)o->orgs, "command_workers", (json_int_t)o->command_workers, "payload_bytes",
        (json_int_t)rp->payload_bytes, "pipeline", "commands_per_s", rp->pipeline_cps, "rejected",
        (json_int_t)rp->pipeline_rejected, "latency", lat, "mail", "messages_per_s", rp->mail_mps, "messages",
        (json_int_t)rp->mails_sent, "floors", "postgresql_commands_per_s", rp->pg_floor_cps, "kafka_messages_per_s",
        rp->kafka_floor_mps, "smtp_messages_per_s", rp->smtp_floor_mps, "batch_max", (json_int_t)rp->batch_max, "ratios",
        "pipeline_to_postgresql", rp->pipeline_cps / rp->pg_floor_cps, "pipeline_to_kafka",
        rp->pipeline_cps / rp->kafka_floor_mps, "mailer_to_smtp",
        rp->smtp_floor_mps > 0 ? rp->mail_mps / rp->smtp_floor_mps : 0.0, "workers", procs_j);
    if (!doc || json_dump_file(doc, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        fprintf(stderr, "raikoo-bench: cannot write %s\n", path);
    json_decref(doc);
}

static void print_table(const report_t *rp) {
    printf("\n%-44s %14s\n", "measure", "value");
    printf("%-44s %14.0f\n", "PostgreSQL floor (InviteNewUser/s)", rp->pg_floor_cps);
    printf("%-44s %14.0f\n", "Kafka floor (messages/s, produce+consume)", rp->kafka_floor_mps);
    printf("%-44s %14.0f\n", "pipeline (commands/s, publish->result)", rp->pipeline_cps);
    for (int i = 0; i < rp->nlat; i++)
        printf("latency @%5ld/s (achieved %6.0f/s)  p50 %6.1f  p95 %6.1f  p99 %6.1f  max %6.1f ms\n",
               rp->lat[i].rate, rp->lat[i].achieved, rp->lat[i].p50, rp->lat[i].p95, rp->lat[i].p99, rp->lat[i].max);
    printf("%-44s %14.0f\n", "SMTP floor (messages/s, one session)", rp->smtp_floor_mps);
    printf("%-44s %14.0f\n", "mailer (messages/s, job->accepted)", rp->mail_mps);
    printf("%-44s %14.2f\n", "ratio pipeline / PostgreSQL floor", rp->pipeline_cps / rp->pg_floor_cps);
    printf("%-44s %14.2f\n", "ratio pipeline / Kafka floor", rp->pipeline_cps / rp->kafka_floor_mps);
    printf("%-44s %14.2f\n", "ratio mailer / SMTP floor", rp->smtp_floor_mps > 0 ? rp->mail_mps / rp->smtp_floor_mps : 0);
    for (int i = 0; i < NPROCS; i++)
        if (procs[i].pid != 0)
            printf("%-28s cpu %8.2f s   peak RSS %7.1f MiB\n", procs[i].name, procs[i].cpu_s,
                   (double)procs[i].peak_rss_kb / 1024.0);
}

int main(int argc, char **argv) {
    int rc = 1;
    char err[1024];
    options_t o;
    const char *config = NULL;
    conf_t *c = conf_new();
    PGconn *db = NULL;
    raikoo_producer_t *prod = NULL;
    report_t rp;
    memset(&rp, 0, sizeof(rp));
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
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[sl > 0 ? sl : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    o.bin_dir = self;
    options = &o;
    char logdir[4096];
    snprintf(logdir, sizeof(logdir), "%s/log", o.out_dir);
    mkdir(o.out_dir, 0755);
    mkdir(logdir, 0755);
    unsigned char tag[4];
    randombytes_buf(tag, sizeof(tag));
    sodium_bin2hex(run_tag, sizeof(run_tag), tag, sizeof(tag));

    db = db_connect_migrated(c, err, sizeof(err));
    if (!db || setup_orgs(db, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: %s\n", err);
        goto done;
    }
    conf_get_long(c, "batch.max", 1, 100000, &rp.batch_max, err, sizeof(err));
    printf("raikoo-bench run %s: %ld commands over %ld organizations\n", run_tag, o.commands, o.orgs);
    fflush(stdout);

    /* 1. PostgreSQL floor: the worker's own SQL (lib/cmdproc) on the same batches, no Kafka. */
    fprintf(stderr, "phase: PostgreSQL floor\n");
    if (bench_pg_floor(c, db, o.commands, admin_id, invite_data, &o, &rp.pg_floor_cps, &rp.payload_bytes, err,
                       sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: PostgreSQL floor: %s\n", err);
        goto done;
    }

    fprintf(stderr, "  = %.0f commands/s\n", rp.pg_floor_cps);

    /* 2. Kafka floor: messages of the same size, same client settings, produced and consumed back. */
    fprintf(stderr, "phase: Kafka floor\n");
    if (bench_kafka_floor(c, o.commands, rp.payload_bytes, o.orgs, &rp.kafka_floor_mps, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: Kafka floor: %s\n", err);
        goto done;
    }

    fprintf(stderr, "  = %.0f messages/s\n", rp.kafka_floor_mps);

    /* 3. The pipeline, end to end. */
    fprintf(stderr, "phase: pipeline throughput\n");
    for (long i = 0; i < o.command_workers; i++)
        if (proc_start(&procs[P_COMMAND + i], &o) != 0)
            goto done;
    if (proc_start(&procs[P_RELAY], &o) != 0)
        goto done;
    prod = raikoo_producer_new(c, err, sizeof(err));
    if (!prod || raikoo_results_follow(prod, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: %s\n", err);
        goto done;
    }
    raikoo_producer_set_source(prod, "/raikoo/bench");
    {
        /* Warm-up: the workers join their group and the producer its partitions before the clock runs. */
        long rej, got;
        if (run_commands(prod, &o, "warmup", o.orgs < 50 ? o.orgs : 50, 0, NULL, &rej, &got) < 0)
            goto done;
        double wall = run_commands(prod, &o, "pipeline", o.commands, 0, NULL, &rp.pipeline_rejected, &got);
        if (wall <= 0)
            goto done;
        rp.pipeline_cps = (double)o.commands / wall;
        procs_sample();
        fprintf(stderr, "  = %.0f commands/s\n", rp.pipeline_cps);
    }

    /* 4. Latency at fixed offered loads. */
    for (int i = 0; i < o.nrates; i++) {
        long n = (long)((double)o.rates[i] * o.rate_seconds);
        if (n < 1)
            n = 1;
        fprintf(stderr, "phase: latency at %ld commands/s (%ld commands)\n", o.rates[i], n);
        free(lat);
        lat = calloc((size_t)n, sizeof(*lat));
        long rej, got;
        char phase[32];
        snprintf(phase, sizeof(phase), "lat%ld", o.rates[i]);
        double wall = run_commands(prod, &o, phase, n, o.rates[i], lat, &rej, &got);
        if (wall <= 0)
            goto done;
        rp.lat[i].rate = o.rates[i];
        rp.lat[i].sent = n;
        rp.lat[i].received = got;
        rp.lat[i].achieved = (double)n / wall;
        rp.lat[i].p50 = percentile(lat, (size_t)got, 50);
        rp.lat[i].p95 = percentile(lat, (size_t)got, 95);
        rp.lat[i].p99 = percentile(lat, (size_t)got, 99);
        rp.lat[i].max = got ? lat[got - 1] : NAN;
        rp.nlat = i + 1;
        procs_sample();
        fprintf(stderr, "  = achieved %.0f/s (published at %.0f/s), p50 %.1f ms, p99 %.1f ms\n", rp.lat[i].achieved,
                last_send > first_send ? (double)(n - 1) / (last_send - first_send) : 0.0, rp.lat[i].p50, rp.lat[i].p99);
    }

    /* 5. Mail: the jobs this run queued, then the SMTP floor. */
    fprintf(stderr, "phase: mail throughput\n");
    rp.mails_sent = invitations_made;
    if (bench_mail(c, invitations_made, start_mailer, procs_sample, &rp.mail_mps, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: mail: %s\n", err);
        goto done;
    }
    fprintf(stderr, "phase: SMTP floor\n");
    proc_stop(&procs[P_MAILER]);
    if (bench_smtp_floor(c, rp.mails_sent < SMTP_FLOOR_MAX ? rp.mails_sent : SMTP_FLOOR_MAX, &rp.smtp_floor_mps, err,
                         sizeof(err)) != 0) {
        fprintf(stderr, "raikoo-bench: SMTP floor: %s\n", err);
        goto done;
    }
    rc = 0;
done:
    procs_sample();
    for (int i = 0; i < NPROCS; i++) {
        int st = proc_stop(&procs[i]);
        if (st != 0 && procs[i].pid != 0) {
            fprintf(stderr, "raikoo-bench: %s exited %d (see %s/log/)\n", procs[i].name, st, o.out_dir);
            rc = 1;
        }
    }
    if (rc == 0) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/bench-%s.json", o.out_dir, run_tag);
        print_table(&rp);
        write_json(&rp, &o, path);
        printf("\nfigures written to %s\n", path);
    }
    free(lat);
    free(orgs);
    raikoo_producer_free(prod);
    PQfinish(db);
    conf_free(c);
    return rc;
}
