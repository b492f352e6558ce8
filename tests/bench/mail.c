/* raikoo-bench: the mail phase (mail jobs to messages the SMTP server stored) and the SMTP floor (the same
 * message sent straight to the same server over one session, or over several at once). */
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "event.h"
#include "mail.h"
#include "secret.h"
#include "smtp.h"

static void maildir_path(char *out, size_t size) {
    const char *var = getenv("RAIKOO_VAR");
    snprintf(out, size, "%s/mail/new", var && *var ? var : "var");
}

int bench_mail(const conf_t *c, long expected, int (*start)(void), void (*sample)(void), void (*mark)(int),
               double *per_s, char *errstr, size_t errstr_size) {
    (void)c;
    char dir[4096];
    maildir_path(dir, sizeof(dir));
    /* Messages are counted as the SMTP server files them (inotify: a name made in new/), not by listing the
     * folder: listing it every 20 ms, tens of thousands of names after a few runs, held the folder's lock
     * against the server's own renames and made the server, not the mailer, the slow one. */
    int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ino < 0 || inotify_add_watch(ino, dir, IN_CREATE | IN_MOVED_TO) < 0) {
        snprintf(errstr, errstr_size, "%s: cannot watch the SMTP server's Maildir (set RAIKOO_VAR)", dir);
        if (ino >= 0)
            close(ino);
        return -1;
    }
    if (start() != 0) {
        snprintf(errstr, errstr_size, "cannot start the mailer");
        close(ino);
        return -1;
    }
    double first = 0, last = bench_now(), t_last_change = bench_now(), sampled_at = 0;
    long seen = 0;
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (seen < expected) {
        struct pollfd pfd = {ino, POLLIN, 0};
        poll(&pfd, 1, 20);
        double now = bench_now();
        for (;;) {
            ssize_t len = read(ino, buf, sizeof(buf));
            if (len <= 0)
                break;
            for (char *p = buf; p < buf + len;) {
                const struct inotify_event *e = (const struct inotify_event *)p;
                if (e->mask & IN_Q_OVERFLOW) {
                    snprintf(errstr, errstr_size, "%s: too many messages at once for inotify", dir);
                    close(ino);
                    return -1;
                }
                if (e->len > 0 && e->name[0] != '.') {
                    if (seen == 0) {
                        first = now;
                        mark(0);
                    }
                    seen++;
                    last = now;
                    t_last_change = now;
                }
                p += sizeof(*e) + e->len;
            }
        }
        if (now - t_last_change > 120) {
            snprintf(errstr, errstr_size, "%ld of %ld messages after 120 s without progress", seen, expected);
            close(ino);
            return -1;
        }
        /* The workers' CPU time and peak RSS (a high-water mark) lose nothing when read less often; read at
         * every message (the poll wakes at each one), the /proc files cost the bench a few per cent of a
         * core during this phase only, taken from the machine the mailer and the SMTP server share. */
        if (now - sampled_at >= 0.2) {
            sample();
            sampled_at = now;
        }
        bench_progress("mail: %ld of %ld messages stored", seen, expected);
    }
    close(ino);
    sample();
    mark(1);
    /* From the first stored message to the last: the mailer's start-up is not its throughput. */
    *per_s = expected > 1 && last > first ? (double)(expected - 1) / (last - first) : 0;
    return 0;
}

/* One session of the floor: its share of the messages. */
typedef struct floor_session {
    const smtp_conf_t *sc;
    const char *from;
    smtp_item_t *items;
    size_t n;
    int rc;
    char err[400];
} floor_session_t;

static void *floor_session_main(void *arg) {
    floor_session_t *f = arg;
    f->rc = smtp_send(f->sc, f->from, f->items, f->n, f->err, sizeof(f->err));
    return NULL;
}

/* One invitation like the pipeline's from `from`, rendered once with mail.templates and mail.app.url: the
 * message (free()), or NULL with errstr. */
static char *floor_message(const conf_t *c, const mail_from_t *from, char *errstr, size_t errstr_size) {
    char *message = NULL, *text = NULL;
    mail_job_t job;
    memset(&job, 0, sizeof(job));
    mail_templates_t *tpl = NULL;
    secret_keys_t keys;
    int overridden = 0;
    if (secret_load(conf_get(c, "keys.dir"), 0, &keys, errstr, errstr_size) != 0)
        goto done;
    tpl = mail_templates_load(conf_get(c, "mail.templates"), &overridden, errstr, errstr_size);
    if (!tpl)
        goto done;
    char code[CODE_LEN + 1], sealed[SEALED_CODE_B64_MAX], ids[3][UUID_BUF], when[32];
    code_generate(code);
    if (code_seal(&keys, code, sealed, sizeof(sealed)) != 0) {
        snprintf(errstr, errstr_size, "sealing failed");
        goto done;
    }
    for (int i = 0; i < 3; i++)
        uuid_generate(ids[i]);
    event_time_now(when);
    json_t *data =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s}", "job_id", ids[0],
                  "invitation_id", ids[1], "org_id", ids[2], "org_name", "Bench Org", "kind", "new", "email",
                  "floor@bench.test", "name", "Bench Invitee", "inviter_name", "Bench Admin", "inviter_email",
                  "bench-admin@bench.test", "grant_owner", 0, "expires_at", when, "sealed_code", sealed);
    json_t *ev = event_new(MAIL_JOB_TYPE, ids[0], "/raikoo/command-worker" /* the mail job schema's source */,
                           ids[2], ids[2], data);
    text = event_dump(ev);
    json_decref(ev);
    int identified = 0;
    if (mail_job_parse(text, strlen(text), &job, &identified, errstr, errstr_size) != 0)
        goto done;
    message =
        mail_render(tpl, from, conf_get(c, "mail.app.url"), &job, code, time(NULL), errstr, errstr_size);
done:
    free(text);
    mail_job_free(&job);
    mail_templates_free(tpl);
    sodium_memzero(&keys, sizeof(keys));
    return message;
}

/* Sends items[0..n) over `sessions` SMTP sessions at once: each a thread of its own with an equal share,
 * as the mailer's senders. *wall gets the time from the first session's start to the last one's end. -1
 * with errstr (the first failed session's error) when a session fails. */
static int floor_sessions(const smtp_conf_t *sc, const char *from, smtp_item_t *items, long n, long sessions,
                          double *wall, char *errstr, size_t errstr_size) {
    floor_session_t *fs = calloc((size_t)sessions, sizeof(*fs));
    pthread_t *th = calloc((size_t)sessions, sizeof(*th));
    if (!fs || !th)
        abort();
    double t0 = bench_now();
    long at = 0;
    for (long k = 0; k < sessions; k++) {
        long share = n / sessions + (k < n % sessions ? 1 : 0);
        fs[k] = (floor_session_t){sc, from, items + at, (size_t)share, -1, ""};
        at += share;
        if (pthread_create(&th[k], NULL, floor_session_main, &fs[k]) != 0)
            abort();
    }
    int failed = 0;
    for (long k = 0; k < sessions; k++) {
        pthread_join(th[k], NULL);
        if (fs[k].rc != 0 && !failed) {
            failed = 1;
            snprintf(errstr, errstr_size, "%s", fs[k].err);
        }
    }
    *wall = bench_now() - t0;
    free(fs);
    free(th);
    return failed ? -1 : 0;
}

int bench_smtp_floor(const conf_t *c, long n, long sessions, double *per_s, char *errstr,
                     size_t errstr_size) {
    int rc = -1;
    smtp_conf_t sc = {0};
    mail_from_t from;
    memset(&from, 0, sizeof(from));
    char *message = NULL;
    smtp_item_t *items = NULL;
    if (n < 1)
        n = 1;
    if (smtp_conf_load(c, &sc, errstr, errstr_size) != 0 ||
        mail_from_parse(conf_get(c, "mail.from"), &from, errstr, errstr_size) != 0)
        goto done;
    message = floor_message(c, &from, errstr, errstr_size);
    if (!message)
        goto done;
    items = calloc((size_t)n, sizeof(*items));
    if (!items)
        abort();
    for (long i = 0; i < n; i++) {
        items[i].rcpt = "floor@bench.test";
        items[i].message = message;
    }
    smtp_init();
    if (sessions < 1)
        sessions = 1;
    if (sessions > n)
        sessions = n;
    fprintf(stderr, "  ... SMTP floor: %ld messages over %ld session(s) at once\n", n, sessions);
    double wall;
    if (floor_sessions(&sc, from.addr, items, n, sessions, &wall, errstr, errstr_size) != 0)
        goto done;
    for (long i = 0; i < n; i++) {
        if (items[i].outcome != SMTP_SENT) {
            snprintf(errstr, errstr_size, "message %ld not sent: %s", i, items[i].detail);
            goto done;
        }
    }
    *per_s = (double)n / wall;
    rc = 0;
done:
    free(items);
    free(message);
    mail_from_free(&from);
    smtp_conf_clear(&sc);
    return rc;
}
