/* Error codes and per-thread error detail. */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const err_text[DP_ERR__COUNT] = {
    [DP_OK] = "success",
    [DP_ERR_INVALID] = "invalid argument",
    [DP_ERR_NOMEM] = "out of memory",
    [DP_ERR_IO] = "input/output error",
    [DP_ERR_NOTFOUND] = "not found",
    [DP_ERR_FORMAT] = "malformed data",
    [DP_ERR_TRUNCATED] = "truncated data",
    [DP_ERR_RANGE] = "value out of range",
    [DP_ERR_MISMATCH] = "mismatch",
    [DP_ERR_UNSUPPORTED] = "not supported",
    [DP_ERR_NETWORK] = "network error",
    [DP_ERR_AUTH] = "authentication failed",
    [DP_ERR_REMOTE] = "remote error",
    [DP_ERR_EXISTS] = "already exists",
    [DP_ERR_INTERRUPTED] = "interrupted",
    [DP_ERR_TIMEOUT] = "timed out",
    [DP_ERR_CANCELLED] = "cancelled",
    [DP_ERR_CLOSED] = "closed",
    [DP_ERR_PROTOCOL] = "protocol error",
};

static _Thread_local char err_detail[1024];

const char *dp_strerror(dp_err_t err)
{
    if ((int)err < 0 || err >= DP_ERR__COUNT || !err_text[err]) return "unknown error";
    return err_text[err];
}

dp_err_t dp_err_set(dp_err_t err, const char *fmt, ...)
{
    /* Formatted aside first: callers wrap an inner error with
     * dp_err_set(..., "%s: ...: %s", path, dp_err_detail()), and vsnprintf
     * into the buffer it reads from is undefined (it garbled the text). */
    char buf[sizeof err_detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(err_detail, buf, strlen(buf) + 1);
    return err;
}

const char *dp_err_detail(void) { return err_detail; }

void dp_err_clear(void) { err_detail[0] = '\0'; }
