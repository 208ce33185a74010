/* One error enum for the whole project, nng-style: fallible functions return a
 * dp_err_t and pass results through trailing pointers. dp_strerror() gives the
 * fixed text; modules add detail (file, field, value) with dp_err_set(). */
#ifndef DP_UTIL_ERR_H
#define DP_UTIL_ERR_H

typedef enum dp_err {
    DP_OK = 0,
    DP_ERR_INVALID,     /* a bad argument or setting */
    DP_ERR_NOMEM,       /* allocation failed */
    DP_ERR_IO,          /* read/write/open failed */
    DP_ERR_NOTFOUND,    /* file, key or tensor does not exist */
    DP_ERR_FORMAT,      /* malformed file or message */
    DP_ERR_TRUNCATED,   /* input ends early */
    DP_ERR_RANGE,       /* a value outside its bounds, or an overflow */
    DP_ERR_MISMATCH,    /* shapes, dtypes or names disagree */
    DP_ERR_UNSUPPORTED, /* valid but not implemented here */
    DP_ERR_NETWORK,     /* connection, DNS, timeout */
    DP_ERR_AUTH,        /* credentials rejected */
    DP_ERR_REMOTE,      /* the server answered with an error */
    DP_ERR_EXISTS,      /* already exists */
    DP_ERR_INTERRUPTED, /* signalled (SIGINT, SIGTERM) */
    DP_ERR_TIMEOUT,     /* a deadline passed (a lease, a reply, a retry window) */
    DP_ERR_CANCELLED,   /* the work was cancelled by its owner (a campaign cancel) */
    DP_ERR_CLOSED,      /* the peer or the object was closed */
    DP_ERR_PROTOCOL,    /* a message that breaks the wire protocol */
    DP_ERR__COUNT
} dp_err_t;

/* Fixed text for an error code; never NULL. */
const char *dp_strerror(dp_err_t err);

/* Thread-local detail of the last error: printf-style. Returns err so that
 * `return dp_err_set(DP_ERR_FORMAT, "%s: bad magic 0x%08x", path, m);` reads well. */
dp_err_t dp_err_set(dp_err_t err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Detail of the last error set on this thread ("" if none); borrowed, valid
 * until the next dp_err_set() on this thread. */
const char *dp_err_detail(void);

/* Clears the detail. */
void dp_err_clear(void);

#endif
