/* dp_http on libmicrohttpd in external-poll mode with epoll (http.h). */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dp_http {
    struct MHD_Daemon *d;
    dp_http_handler_fn fn;
    void *ctx;
    int fd, port;
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version, (void)upload, (void)con_cls;
    dp_http_t *h = cls;
    dp_http_reply_t r = {200, "text/plain; charset=utf-8", NULL};
    if (*upload_size) return MHD_NO; /* GET and HEAD carry no body */
    int head = !strcmp(method, MHD_HTTP_METHOD_HEAD);
    if (!head && strcmp(method, MHD_HTTP_METHOD_GET)) {
        r.status = MHD_HTTP_METHOD_NOT_ALLOWED;
        r.body = strdup("only GET and HEAD\n");
    } else {
        h->fn(h->ctx, url, &r);
        if (!r.content_type) r.content_type = "text/plain; charset=utf-8";
    }
    size_t len = r.body ? strlen(r.body) : 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, r.body ? r.body : (void *)"", r.body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(r.body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type);
    if (r.status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static dp_err_t parse_addr(const char *addr, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    char host[64];
    if (!colon || (size_t)(colon - addr) >= sizeof host || colon == addr)
        return dp_err_set(DP_ERR_INVALID, "http address '%s': expected HOST:PORT",
                          addr ? addr : "");
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
        return dp_err_set(DP_ERR_INVALID, "http address '%s': the port is not in [0, 65535]", addr);
    sa->sin_port = htons((uint16_t)port);
    if (!strcmp(host, "*") || !strcmp(host, "0.0.0.0")) {
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (!strcmp(host, "localhost")) {
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        return dp_err_set(DP_ERR_INVALID,
                          "http address '%s': '%s' is not an IPv4 address (or * for all)", addr,
                          host);
    }
    return DP_OK;
}

dp_err_t dp_http_new(const char *addr, dp_http_handler_fn fn, void *ctx, dp_http_t **out)
{
    *out = NULL;
    struct sockaddr_in sa;
    dp_err_t err = parse_addr(addr, &sa);
    if (err) return err;
    dp_http_t *h = calloc(1, sizeof *h);
    if (!h) return dp_err_set(DP_ERR_NOMEM, "http: out of memory");
    h->fn = fn, h->ctx = ctx;
    errno = 0;
    h->d = MHD_start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!h->d) {
        int e = errno;
        free(h);
        return dp_err_set(DP_ERR_NETWORK, "http: cannot listen on %s%s%s", addr, e ? ": " : "",
                          e ? strerror(e) : "");
    }
    const union MHD_DaemonInfo *fi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    if (!fi || !pi) {
        MHD_stop_daemon(h->d);
        free(h);
        return dp_err_set(DP_ERR_NETWORK, "http: %s: no epoll descriptor or port", addr);
    }
    h->fd = fi->epoll_fd;
    h->port = pi->port;
    *out = h;
    return DP_OK;
}

int dp_http_fd(const dp_http_t *h) { return h->fd; }

long dp_http_timeout_ms(const dp_http_t *h)
{
    MHD_UNSIGNED_LONG_LONG t;
    if (MHD_get_timeout(h->d, &t) != MHD_YES) return -1;
    return t > 60000 ? 60000 : (long)t;
}

void dp_http_run(dp_http_t *h) { MHD_run(h->d); }

int dp_http_port(const dp_http_t *h) { return h->port; }

void dp_http_destroy(dp_http_t **ph)
{
    if (!ph || !*ph) return;
    MHD_stop_daemon((*ph)->d);
    free(*ph);
    *ph = NULL;
}

void dp_http_label(char *out, size_t size, const char *v)
{
    size_t o = 0;
    for (; *v && o + 3 < size; v++) {
        if (*v == '\\' || *v == '"')
            out[o++] = '\\', out[o++] = *v;
        else if (*v == '\n')
            out[o++] = '\\', out[o++] = 'n';
        else
            out[o++] = *v;
    }
    if (size) out[o] = '\0';
}

int dp_http_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = *buf ? *cap - *len : 0;
        int n = vsnprintf(*buf ? *buf + *len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) goto fail;
        if ((size_t)n < room) {
            *len += (size_t)n;
            return 0;
        }
        size_t nc = *cap ? *cap : 1024;
        while (nc < *len + (size_t)n + 1) nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) goto fail;
        *buf = nb, *cap = nc;
    }
fail:
    free(*buf);
    *buf = NULL;
    *len = *cap = 0;
    return -1;
}
