/* Levelled logging, redis-style: the macros test the level before formatting,
 * the sink is replaceable so tests can capture lines. Kernels never log.
 * A line carries the component and, where known, campaign and task ids. */
#ifndef DP_UTIL_LOG_H
#define DP_UTIL_LOG_H

typedef enum dp_log_level {
    DP_LOG_DEBUG = 0,
    DP_LOG_INFO,
    DP_LOG_WARN,
    DP_LOG_ERROR,
    DP_LOG_OFF
} dp_log_level_t;

/* Receives one formatted line (no trailing newline); must be thread-safe. */
typedef void (*dp_log_sink_fn)(dp_log_level_t level, const char *component, const char *line,
                               void *arg);

extern dp_log_level_t dp_log_min_level;

void dp_log_set_level(dp_log_level_t level);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int dp_log_parse_level(const char *s);
const char *dp_log_level_name(dp_log_level_t level);
/* NULL restores the default sink (stderr, with a UTC timestamp). */
void dp_log_set_sink(dp_log_sink_fn fn, void *arg);
/* Campaign and task ids stamped on this thread's lines; NULL clears. */
void dp_log_set_context(const char *campaign, const char *task);

void dp_log_write(dp_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define DP_LOG(level, comp, ...)                                                                   \
    do {                                                                                           \
        if ((level) >= dp_log_min_level) dp_log_write((level), (comp), __VA_ARGS__);               \
    } while (0)
#define dp_debug(comp, ...) DP_LOG(DP_LOG_DEBUG, comp, __VA_ARGS__)
#define dp_info(comp, ...)  DP_LOG(DP_LOG_INFO, comp, __VA_ARGS__)
#define dp_warn(comp, ...)  DP_LOG(DP_LOG_WARN, comp, __VA_ARGS__)
#define dp_error(comp, ...) DP_LOG(DP_LOG_ERROR, comp, __VA_ARGS__)

#endif
