/* The coordinator's /healthz and /metrics (server.h's http option), served
 * from the loop's thread between its polls, so they read the state as the
 * loop left it. docs/DEPLOY.md lists the metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server_impl.h"
#include "util/log.h"

const double srv_commit_le_s[SRV_COMMIT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

static const char *const kind_names[] = {"unspecified", "train",   "generate",
                                         "baseline",    "measure", "report"};
static const char *const state_names[] = {"unspecified", "blocked", "queued",   "leased",
                                          "done",        "failed",  "cancelled"};
static const char *const campaign_names[] = {"unspecified", "running", "done", "failed",
                                             "cancelled"};
static const char *const role_names[] = {"unspecified", "trainer", "measurer", "submitter"};

void srv_http_commit(dp_coord_server_t *s, double secs)
{
    int b = 0;
    while (b < SRV_COMMIT_BUCKETS && secs > srv_commit_le_s[b]) b++;
    s->commit_le[b]++;
    s->commit_sum_s += secs;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void srv_http_tick(dp_coord_server_t *s)
{
    if (!s->http) return;
    const uint64_t now = mono_ms();
    const unsigned last = (s->rate_next + SRV_RATE_SLOTS - 1) % SRV_RATE_SLOTS;
    if (s->rate_ms[last] && now - s->rate_ms[last] < 1000) return;
    s->rate_ms[s->rate_next] = now;
    s->rate_assigned[s->rate_next] = s->st.assigned;
    s->rate_next = (s->rate_next + 1) % SRV_RATE_SLOTS;
}

/* Tasks assigned per second over the samples kept (up to 10 s). */
static double dispatch_rate(const dp_coord_server_t *s)
{
    const unsigned newest = (s->rate_next + SRV_RATE_SLOTS - 1) % SRV_RATE_SLOTS;
    unsigned oldest = s->rate_next;
    if (!s->rate_ms[oldest]) oldest = 0; /* not yet wrapped */
    if (!s->rate_ms[newest] || newest == oldest || s->rate_ms[newest] <= s->rate_ms[oldest])
        return 0;
    return (double)(s->rate_assigned[newest] - s->rate_assigned[oldest]) * 1000.0 /
           (double)(s->rate_ms[newest] - s->rate_ms[oldest]);
}

typedef struct wcount {
    Dp__V1__Role role;
    char cls[64];
    uint64_t n;
} wcount_t;

typedef struct wcounts {
    wcount_t v[64];
    size_t n;
    uint64_t other; /* past 64 (role, class) pairs */
} wcounts_t;

static void count_worker(void *ctx, Dp__V1__Role role, const char *cls)
{
    wcounts_t *w = ctx;
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i].role == role && !strcmp(w->v[i].cls, cls)) {
            w->v[i].n++;
            return;
        }
    if (w->n == sizeof w->v / sizeof w->v[0]) {
        w->other++;
        return;
    }
    w->v[w->n].role = role;
    snprintf(w->v[w->n].cls, sizeof w->v[w->n].cls, "%s", cls);
    w->v[w->n++].n = 1;
}

#define APPEND(...)                                                                                \
    do {                                                                                           \
        if (dp_http_appendf(&b, &len, &cap, __VA_ARGS__)) return NULL;                             \
    } while (0)

static char *metrics(const dp_coord_server_t *s)
{
    char *b = NULL;
    size_t len = 0, cap = 0;
    dp_sched_counts_t c;
    dp_sched_counts(s->sched, &c);
    APPEND("# HELP dp_tasks Tasks of every campaign the journal holds, by kind and state.\n"
           "# TYPE dp_tasks gauge\n");
    for (int k = 1; k < 6; k++)
        for (int st = 1; st < 7; st++)
            APPEND("dp_tasks{kind=\"%s\",state=\"%s\"} %llu\n", kind_names[k], state_names[st],
                   (unsigned long long)c.by_kind[k][st]);
    APPEND("# HELP dp_campaigns Campaigns by state.\n# TYPE dp_campaigns gauge\n");
    for (int st = 1; st < 5; st++)
        APPEND("dp_campaigns{state=\"%s\"} %llu\n", campaign_names[st],
               (unsigned long long)c.campaigns[st]);
    APPEND("# HELP dp_campaigns_accepted_total Campaigns accepted.\n"
           "# TYPE dp_campaigns_accepted_total counter\n"
           "dp_campaigns_accepted_total %llu\n",
           (unsigned long long)c.campaigns_accepted);
    wcounts_t w = {.n = 0};
    dp_sched_workers_alive(s->sched, count_worker, &w);
    APPEND("# HELP dp_workers_alive Live workers by role and device class.\n"
           "# TYPE dp_workers_alive gauge\n");
    for (int r = 1; r < 3; r++) { /* both roles always, 0 when none */
        int any = 0;
        for (size_t i = 0; i < w.n; i++) any |= w.v[i].role == (Dp__V1__Role)r;
        if (!any) APPEND("dp_workers_alive{role=\"%s\",device_class=\"\"} 0\n", role_names[r]);
    }
    for (size_t i = 0; i < w.n; i++) {
        char cls[160];
        dp_http_label(cls, sizeof cls, w.v[i].cls);
        APPEND("dp_workers_alive{role=\"%s\",device_class=\"%s\"} %llu\n",
               w.v[i].role < 4 ? role_names[w.v[i].role] : "unspecified", cls,
               (unsigned long long)w.v[i].n);
    }
    APPEND("# HELP dp_tasks_assigned_total Leases given to workers (rate(): the dispatch rate).\n"
           "# TYPE dp_tasks_assigned_total counter\ndp_tasks_assigned_total %llu\n"
           "# HELP dp_task_results_total Results accepted.\n"
           "# TYPE dp_task_results_total counter\ndp_task_results_total %llu\n"
           "# HELP dp_task_failures_total Failures reported or leases ended.\n"
           "# TYPE dp_task_failures_total counter\ndp_task_failures_total %llu\n",
           (unsigned long long)s->st.assigned, (unsigned long long)s->st.done,
           (unsigned long long)s->st.failed);
    APPEND("# HELP dp_dispatch_rate Tasks assigned per second over the last 10 s.\n"
           "# TYPE dp_dispatch_rate gauge\ndp_dispatch_rate %.3f\n",
           dispatch_rate(s));
    APPEND("# HELP dp_messages_received_total Messages received, good or bad.\n"
           "# TYPE dp_messages_received_total counter\ndp_messages_received_total %llu\n"
           "# HELP dp_messages_dropped_total Messages dropped (not decoded, invalid, another "
           "version, or before the peer's Hello).\n"
           "# TYPE dp_messages_dropped_total counter\ndp_messages_dropped_total %llu\n",
           (unsigned long long)s->st.received,
           (unsigned long long)(s->st.dropped + s->st.unregistered));
    dp_journal_stats_t js;
    dp_journal_stats(s->j, &js);
    APPEND("# HELP dp_journal_records_total Journal records appended.\n"
           "# TYPE dp_journal_records_total counter\ndp_journal_records_total %llu\n",
           (unsigned long long)s->st.records);
    APPEND("# HELP dp_journal_commit_seconds Journal commits (write and fsync), by latency.\n"
           "# TYPE dp_journal_commit_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < SRV_COMMIT_BUCKETS; i++) {
        cum += s->commit_le[i];
        APPEND("dp_journal_commit_seconds_bucket{le=\"%g\"} %llu\n", srv_commit_le_s[i],
               (unsigned long long)cum);
    }
    cum += s->commit_le[SRV_COMMIT_BUCKETS];
    APPEND("dp_journal_commit_seconds_bucket{le=\"+Inf\"} %llu\n"
           "dp_journal_commit_seconds_sum %.9f\ndp_journal_commit_seconds_count %llu\n",
           (unsigned long long)cum, s->commit_sum_s, (unsigned long long)cum);
    return b;
}

static void handle(void *ctx, const char *path, dp_http_reply_t *out)
{
    dp_coord_server_t *s = ctx;
    if (!strcmp(path, "/healthz")) {
        if (s->fatal) {
            out->status = 503;
            out->body = strdup("journal failed: the coordinator is stopping\n");
        } else if (access(s->journal_path, W_OK) != 0) {
            out->status = 503;
            char line[512];
            snprintf(line, sizeof line, "journal %s is not writable\n", s->journal_path);
            out->body = strdup(line);
        } else {
            out->body = strdup("ok\n");
        }
    } else if (!strcmp(path, "/metrics")) {
        out->content_type = "text/plain; version=0.0.4; charset=utf-8";
        if (!(out->body = metrics(s))) out->status = 500;
    } else {
        out->status = 404;
        out->body = strdup("not found: the coordinator serves /healthz and /metrics\n");
    }
}

dp_err_t srv_http_start(dp_coord_server_t *s)
{
    if (!s->http_addr) return DP_OK;
    dp_err_t err = dp_http_new(s->http_addr, handle, s, &s->http);
    if (err) return err;
    dp_info(LOG_COMP, "serving /healthz and /metrics on %s (port %d)", s->http_addr,
            dp_http_port(s->http));
    return DP_OK;
}
