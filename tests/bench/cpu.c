/* Where the pipeline's and the mail phase's CPU goes: CPU seconds of the bench stack's broker, PostgreSQL
 * cluster and SMTP server, of this program and of the whole machine, read from /proc. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* utime + stime of pid in seconds, and its parent's pid; -1 when it is gone. */
static double pid_cpu(long pid, long *ppid) {
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

/* The postmaster and every process it started (backends, WAL writer, checkpointer, ...). */
static double cluster_cpu(long postmaster) {
    if (postmaster <= 0)
        return 0;
    double sum = 0, s = pid_cpu(postmaster, NULL);
    if (s > 0)
        sum += s;
    DIR *d = opendir("/proc");
    if (!d)
        return sum;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        long ppid = 0;
        if (*end || pid <= 0 || pid == postmaster)
            continue;
        s = pid_cpu(pid, &ppid);
        if (s > 0 && ppid == postmaster)
            sum += s;
    }
    closedir(d);
    return sum;
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

/* CPU seconds of the process whose pid $RAIKOO_VAR/<rel> holds; 0 when there is none. */
static double pid_file_cpu(const char *rel) {
    long pid = pid_file(rel);
    double s = pid > 0 ? pid_cpu(pid, NULL) : -1;
    return s > 0 ? s : 0;
}

void bench_cpu_sample(bench_cpu_t *s) {
    s->broker = pid_file_cpu("run/kafka.pid");
    s->postgresql = cluster_cpu(pid_file("pg/postmaster.pid"));
    s->smtp = pid_file_cpu("run/smtp.pid");
    double self = pid_cpu((long)getpid(), NULL);
    s->bench = self > 0 ? self : 0;
    s->machine_busy = machine_busy();
    s->cores = (double)sysconf(_SC_NPROCESSORS_ONLN);
}
