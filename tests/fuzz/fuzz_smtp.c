/* Fuzzes what the mailer makes of an SMTP server's replies: smtp_send talks to a scripted server on the
 * loopback (a thread of this process) that answers each command with the next reply of the input, and
 * the verdicts and details smtp_send records are checked. Input: one flags byte (bit 0: smtp.user set, so
 * AUTH is tried; bit 1: two messages in the session), then the replies separated by NUL bytes (the
 * greeting first); a reply without a final line break gets CRLF, and a last line that announces more
 * ("250-") is ended ("250 "), so that neither side waits for the other. When the replies run out the
 * server hangs up. Invariants: each detail and the error are terminated, valid UTF-8 (they go into a
 * PostgreSQL text column and a log line), one line, and never hold the SMTP password; outcomes are one of
 * the three verdicts, and SENT only with the reply the server gave to the end of DATA. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"
#include "smtp.h"

#define PASSWORD "fuzz-secret-pw-4711"

static int listen_fd = -1;
static smtp_conf_t sc_plain, sc_auth;
static conf_t *conf_plain, *conf_auth;

typedef struct script {
    const uint8_t *data;
    size_t size, pos;
    atomic_int stop;
} script_t;

/* The next reply, made safe to send as a whole reply, into out (free()); NULL when none is left. */
static char *next_reply(script_t *s, size_t *len) {
    if (s->pos >= s->size)
        return NULL;
    const uint8_t *p = s->data + s->pos, *nul = memchr(p, 0, s->size - s->pos);
    size_t n = nul ? (size_t)(nul - p) : s->size - s->pos;
    s->pos += n + 1;
    char *r = xmalloc(n + 3);
    memcpy(r, p, n);
    if (n == 0 || r[n - 1] != '\n') {
        r[n++] = '\r';
        r[n++] = '\n';
    }
    r[n] = '\0';
    /* The last line must not promise another. */
    size_t last = n - 1;
    while (last > 0 && r[last - 1] != '\n')
        last--;
    if (n - last > 4 && r[last + 3] == '-')
        r[last + 3] = ' ';
    *len = n;
    return r;
}

static int send_all(int fd, const char *b, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sends the next reply; 0 when there is none (the server then hangs up). */
static int reply(script_t *s, int fd, int *starts_with_3) {
    size_t n;
    char *r = next_reply(s, &n);
    if (!r)
        return 0;
    if (starts_with_3)
        *starts_with_3 = r[0] == '3';
    int ok = send_all(fd, r, n) == 0;
    free(r);
    return ok;
}

static int is_command(const char *line, size_t n) {
    static const char *verbs[] = {"EHLO", "HELO", "MAIL", "RCPT",     "DATA", "RSET",
                                  "QUIT", "NOOP", "AUTH", "STARTTLS", "BDAT", NULL};
    for (const char **v = verbs; *v; v++) {
        size_t vl = strlen(*v);
        if (n >= vl && strncasecmp(line, *v, vl) == 0 && (n == vl || line[vl] == ' '))
            return 1;
    }
    return 0;
}

static void *server(void *arg) {
    script_t *s = arg;
    int fd = -1;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {listen_fd, POLLIN, 0};
        if (poll(&pfd, 1, 5) == 1) {
            fd = accept(listen_fd, NULL, NULL);
            break;
        }
    }
    if (fd < 0)
        return NULL;
    int one = 1; /* replies go out at once, not after the client's delayed ACK */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char buf[8192];
    size_t have = 0;
    int in_body = 0;
    if (!reply(s, fd, NULL))
        goto out;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 5) != 1)
            continue;
        ssize_t r = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
        if (r <= 0)
            break;
        have += (size_t)r;
        char *line = buf, *eol;
        while ((eol = memchr(line, '\n', have - (size_t)(line - buf)))) {
            size_t n = (size_t)(eol - line);
            if (n > 0 && line[n - 1] == '\r')
                n--;
            int answer = 0, three = 0;
            if (in_body) {
                if (n == 1 && line[0] == '.') {
                    in_body = 0;
                    answer = 1;
                } else if (is_command(line, n)) {
                    in_body = 0;
                    answer = 1;
                }
            } else {
                answer = 1; /* a command, or an AUTH answer after a 334 challenge */
            }
            if (answer) {
                int data_cmd = n == 4 && strncasecmp(line, "DATA", 4) == 0;
                if (!reply(s, fd, &three))
                    goto out;
                if (data_cmd && three)
                    in_body = 1;
            }
            line = eol + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof(buf) - 1)
            have = 0; /* a line longer than the buffer: dropped */
    }
out:
    close(fd);
    return NULL;
}

static conf_t *make_conf(int port, int auth, smtp_conf_t *sc) {
    conf_t *c = conf_new();
    char err[256], p[16];
    snprintf(p, sizeof(p), "%d", port);
    if (conf_set(c, "smtp.host", "127.0.0.1", err, sizeof(err)) != 0 ||
        conf_set(c, "smtp.port", p, err, sizeof(err)) != 0 ||
        conf_set(c, "smtp.timeout.ms", "2000", err, sizeof(err)) != 0 ||
        (auth && (conf_set(c, "smtp.user", "fuzz", err, sizeof(err)) != 0 ||
                  conf_set(c, "smtp.password", PASSWORD, err, sizeof(err)) != 0)) ||
        smtp_conf_load(c, sc, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_smtp: %s\n", err);
        exit(1);
    }
    return c;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    signal(SIGPIPE,
           SIG_IGN); /* as every worker does (lib/core/worker.c): a server that hangs up is an error */
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(listen_fd, 8) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        perror("fuzz_smtp: listen");
        exit(1);
    }
    smtp_init();
    conf_plain = make_conf(ntohs(a.sin_port), 0, &sc_plain);
    conf_auth = make_conf(ntohs(a.sin_port), 1, &sc_auth);
    return 0;
}

/* said: the server's replies held the password themselves (libFuzzer learns it from the check below). */
static void check_detail(const char *what, const char *d, size_t size, int said) {
    fuzz_check_text(what, d, size);
    FUZZ_ASSERT(!strchr(d, '\r') && !strchr(d, '\n'), "%s is more than one line: %s", what, d);
    FUZZ_ASSERT(said || !strstr(d, PASSWORD), "%s shows the SMTP password", what);
}

static const char MESSAGE[] = "Subject: fuzz\r\nFrom: a@example.com\r\n\r\nbody\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    script_t s = {data + 1, size - 1, 0, 0};
    pthread_t th;
    if (pthread_create(&th, NULL, server, &s) != 0)
        abort();
    smtp_item_t items[2];
    memset(items, 0, sizeof(items));
    items[0].rcpt = "one@example.com";
    items[0].message = MESSAGE;
    items[1].rcpt = "two@example.com";
    items[1].message = MESSAGE;
    size_t n = (flags & 2) ? 2 : 1;
    char err[512];
    err[0] = '\0';
    int rc = smtp_send((flags & 1) ? &sc_auth : &sc_plain, "sender@example.com", items, n, err, sizeof(err));
    atomic_store(&s.stop, 1);
    pthread_join(th, NULL);
    int said = memmem(data, size, PASSWORD, strlen(PASSWORD)) != NULL;
    if (rc != 0)
        check_detail("smtp_send error", err, sizeof(err), said);
    for (size_t i = 0; i < n; i++) {
        FUZZ_ASSERT(items[i].outcome == SMTP_SENT || items[i].outcome == SMTP_TRANSIENT ||
                        items[i].outcome == SMTP_PERMANENT,
                    "outcome %d", (int)items[i].outcome);
        check_detail("item detail", items[i].detail, sizeof(items[i].detail), said);
        if (items[i].outcome == SMTP_SENT)
            FUZZ_ASSERT(strncmp(items[i].detail, "accepted", 8) == 0, "sent, yet the detail says %s",
                        items[i].detail);
    }
    return 0;
}
