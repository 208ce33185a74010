/* Logging: level check in the macro, formatting here, one sink at a time. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

dp_log_level_t dp_log_min_level = DP_LOG_INFO;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static dp_log_sink_fn log_sink;
static void *log_sink_arg;
static _Thread_local char log_campaign[64];
static _Thread_local char log_task[64];

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void dp_log_set_level(dp_log_level_t level) { dp_log_min_level = level; }

int dp_log_parse_level(const char *s)
{
    for (int i = 0; i <= DP_LOG_OFF; i++)
        if (s && strcasecmp(s, level_names[i]) == 0) return i;
    return -1;
}

const char *dp_log_level_name(dp_log_level_t level)
{
    return (level >= DP_LOG_DEBUG && level <= DP_LOG_OFF) ? level_names[level] : "?";
}

void dp_log_set_sink(dp_log_sink_fn fn, void *arg)
{
    pthread_mutex_lock(&log_mu);
    log_sink = fn;
    log_sink_arg = arg;
    pthread_mutex_unlock(&log_mu);
}

void dp_log_set_context(const char *campaign, const char *task)
{
    snprintf(log_campaign, sizeof log_campaign, "%s", campaign ? campaign : "");
    snprintf(log_task, sizeof log_task, "%s", task ? task : "");
}

void dp_log_write(dp_log_level_t level, const char *component, const char *fmt, ...)
{
    char msg[2048];
    int n = 0;
    if (log_campaign[0]) n += snprintf(msg, sizeof msg, "campaign=%s ", log_campaign);
    if (log_task[0] && n < (int)sizeof msg)
        n += snprintf(msg + n, sizeof msg - (size_t)n, "task=%s ", log_task);
    if (n < 0 || n >= (int)sizeof msg) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_mu);
    if (log_sink) {
        log_sink(level, component, msg, log_sink_arg);
    } else {
        char ts[32];
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", ts, now.tv_nsec / 1000000,
                dp_log_level_name(level), component, msg);
    }
    pthread_mutex_unlock(&log_mu);
}
