/* The worker's HTTP endpoint: /metrics, /healthz, /readyz (see httpd.h). */
#include "httpd.h"

#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "health.h"
#include "metrics.h"
#include "text.h"

static struct MHD_Daemon *daemon_;
static long stall_limit_ms;

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    (void)cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    static const char text[] = "text/plain; charset=utf-8";
    if (*upload_data_size)
        return MHD_NO; /* no endpoint takes a body */
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, xstrdup("only GET and HEAD\n"));
    char why[256];
    if (strcmp(url, "/metrics") == 0)
        return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", metrics_render());
    if (strcmp(url, "/healthz") == 0) {
        int ok = health_live(stall_limit_ms, why, sizeof(why));
        return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, xstrdup(why));
    }
    if (strcmp(url, "/readyz") == 0) {
        int ok = health_ready(why, sizeof(why));
        return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, xstrdup(why));
    }
    return reply(conn, MHD_HTTP_NOT_FOUND, text, xstrdup("not found: /metrics, /healthz or /readyz\n"));
}

/* "HOST:PORT", "[V6]:PORT" or ":PORT" into a socket address. */
static int parse_listen(const char *listen, struct sockaddr_storage *sa, socklen_t *len, char *errstr,
                        size_t errstr_size) {
    char host[256];
    const char *colon = strrchr(listen, ':');
    const char *h = listen;
    size_t hlen = colon ? (size_t)(colon - listen) : 0;
    if (colon && listen[0] == '[' && hlen >= 2 && listen[hlen - 1] == ']') {
        h = listen + 1;
        hlen -= 2;
    }
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || !colon[1] || *end || port < 0 || port > 65535 || hlen >= sizeof(host)) {
        text_printf(
            errstr, errstr_size,
            "metrics.listen: \"%s\" is not HOST:PORT (for example 127.0.0.1:9101, or empty: no metrics)",
            listen);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char service[8];
    snprintf(service, sizeof(service), "%ld", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int gai = getaddrinfo(hlen ? host : NULL, service, &hints, &ai);
    if (gai != 0 || !ai) {
        text_printf(errstr, errstr_size, "metrics.listen: cannot resolve \"%s\": %s", host,
                    gai_strerror(gai));
        return -1;
    }
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int httpd_start(const char *listen, long stall_ms, int *port, char *errstr, size_t errstr_size) {
    struct sockaddr_storage sa;
    socklen_t len;
    if (daemon_) {
        text_printf(errstr, errstr_size, "metrics: the HTTP server runs already");
        return -1;
    }
    if (parse_listen(listen, &sa, &len, errstr, errstr_size) != 0)
        return -1;
    stall_limit_ms = stall_ms;
    metrics_set_enabled(1);
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | (sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR,
                               (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!daemon_) {
        metrics_set_enabled(0);
        text_printf(errstr, errstr_size,
                    "metrics.listen: cannot listen on %s (is the port taken by another worker? give each its "
                    "own)",
                    listen);
        return -1;
    }
    if (port) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
        *port = info ? info->port : 0;
    }
    return 0;
}

void httpd_stop(void) {
    if (daemon_)
        MHD_stop_daemon(daemon_);
    daemon_ = NULL;
}
