/* Where the pipeline's and the mail phase's CPU goes: CPU seconds of the bench stack's broker, PostgreSQL
 * cluster and SMTP server, of this program and of the whole machine, read from /proc. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* utime + stime of pid in seconds, and its parent's pid; -1 when it is gone. */
double bench_pid_cpu(long pid, long *ppid) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    double s = -1;
    if (fgets(buf, sizeof(buf), f)) {
        const char *p = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        long pp = 0;
        /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
        if (p && sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &pp, &ut, &st) == 3) {
            s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
            if (ppid)
                *ppid = pp;
        }
    }
    fclose(f);
    return s;
}

int bench_pid_sched(long pid, bench_sched_t *s) {
    char path[96];
    snprintf(path, sizeof(path), "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/task/%.16s/schedstat", pid, e->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long run_ns, wait_ns, runs;
        if (!f)
            continue; /* a thread that just ended */
        /* on a CPU, waiting on a run queue (both in ns), turns on a CPU */
        if (fscanf(f, "%llu %llu %llu", &run_ns, &wait_ns, &runs) == 3) {
            s->wait_s += (double)wait_ns / 1e9;
            s->runs += (double)runs;
            found = 1;
        }
        fclose(f);
    }
    closedir(d);
    return found ? 0 : -1;
}

/* The pid in the first line of $RAIKOO_VAR/<rel>; 0 when there is none. */
static long pid_file(const char *rel) {
    const char *var = getenv("RAIKOO_VAR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", var ? var : "var", rel);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid;
}

/* Adds pid's CPU seconds s (when found: above 0) to *cpu and its scheduler's counts to *sched. */
static void add_pid(long pid, double s, double *cpu, bench_sched_t *sched) {
    if (s > 0)
        *cpu += s;
    bench_pid_sched(pid, sched);
}

/* The postmaster and every process it started (backends, WAL writer, checkpointer, ...). */
static void cluster_sample(long postmaster, double *cpu, bench_sched_t *sched) {
    *cpu = 0;
    if (postmaster <= 0)
        return;
    add_pid(postmaster, bench_pid_cpu(postmaster, NULL), cpu, sched);
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        long ppid = 0;
        if (*end || pid <= 0 || pid == postmaster)
            continue;
        double s = bench_pid_cpu(pid, &ppid);
        if (s >= 0 && ppid == postmaster)
            add_pid(pid, s, cpu, sched);
    }
    closedir(d);
}

/* Busy seconds of the whole machine: every state of the first line of /proc/stat but idle and iowait. */
static double machine_busy(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    int n = 0;
    if (f) {
        n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
        fclose(f);
    }
    unsigned long long busy = 0;
    for (int i = 0; i < n && i < 8; i++) /* guest and guest_nice are already in user and nice */
        if (i != 3 && i != 4)
            busy += v[i];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

void bench_cpu_sample(bench_cpu_t *s) {
    s->broker = s->smtp = s->bench = 0;
    s->sched = (bench_sched_t){0, 0};
    long broker = pid_file("run/kafka.pid"), smtp = pid_file("run/smtp.pid");
    if (broker > 0)
        add_pid(broker, bench_pid_cpu(broker, NULL), &s->broker, &s->sched);
    if (smtp > 0)
        add_pid(smtp, bench_pid_cpu(smtp, NULL), &s->smtp, &s->sched);
    add_pid((long)getpid(), bench_pid_cpu((long)getpid(), NULL), &s->bench, &s->sched);
    cluster_sample(pid_file("pg/postmaster.pid"), &s->postgresql, &s->sched);
    s->machine_busy = machine_busy();
    s->cores = (double)sysconf(_SC_NPROCESSORS_ONLN);
}
