/* A small HTTP server for /healthz and /metrics (libmicrohttpd), driven by
 * its owner's poll loop: it has no thread of its own, so the handler runs on
 * the loop's thread and reads the loop's state without locks.
 *
 * The owner polls dp_http_fd for reading (a zmq_pollitem_t with .fd works),
 * waits at most dp_http_timeout_ms, and calls dp_http_run after either.
 * GET and HEAD only (405 otherwise); the handler answers every path. At most
 * 32 connections, each closed after 10 s idle. */
#ifndef DP_HTTP_HTTP_H
#define DP_HTTP_HTTP_H

#include <stddef.h>

#include "util/err.h"

typedef struct dp_http dp_http_t;

typedef struct dp_http_reply {
    int status;               /* 200 unless the handler says otherwise */
    const char *content_type; /* a static string; default "text/plain; charset=utf-8" */
    char *body;               /* malloc'd by the handler, freed by dp_http; NULL: empty */
} dp_http_reply_t;

/* Fills *out for a GET (or HEAD) of path (the query string cut off). */
typedef void (*dp_http_handler_fn)(void *ctx, const char *path, dp_http_reply_t *out);

/* Listens on addr, "HOST:PORT" (an IPv4 address or "*" for all; PORT 0
 * picks a free one). DP_ERR_INVALID for an address it cannot parse,
 * DP_ERR_NETWORK when it cannot listen (the detail names addr and why). */
dp_err_t dp_http_new(const char *addr, dp_http_handler_fn fn, void *ctx, dp_http_t **out);

/* The descriptor to poll for reading. */
int dp_http_fd(const dp_http_t *h);

/* Milliseconds until dp_http_run must be called even when nothing is
 * readable (idle connections to close); -1: no limit. */
long dp_http_timeout_ms(const dp_http_t *h);

/* Serves what is ready; never blocks. */
void dp_http_run(dp_http_t *h);

/* The port listened on. */
int dp_http_port(const dp_http_t *h);

/* Accepts NULL and *h == NULL; sets *h = NULL. */
void dp_http_destroy(dp_http_t **h);

/* v as a Prometheus label value into out (size bytes): backslash, quote and
 * newline escaped; cut at a whole escape when out is too small. */
void dp_http_label(char *out, size_t size, const char *v);

/* Appends printf output to a growing string (*buf, *len, *cap; *buf NULL
 * at first): for handlers building a body. -1 when out of memory (*buf is
 * then freed and NULL). */
int dp_http_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
