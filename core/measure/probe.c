/* The probe interface over its back ends (probe_rapl.c, probe_ina3221.c,
 * probe_nvml.c): windows on energy counters, the sampling thread that
 * integrates power sensors, the idle baseline and energy per inference.
 *
 * The sampler is the only thread of core/measure. It lives from start to
 * stop; it wakes every period_s on a CLOCK_MONOTONIC condition variable (so
 * stop wakes it at once), reads the rail without the lock, and adds the
 * trapezoid (P_prev + P) / 2 * dt under it. Stop joins it and adds a last
 * sample, so the window covers start to stop exactly. A read error ends the
 * sampling; its code and detail cross to the caller through the probe. */
#include "measure/probe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "measure/measure_impl.h"
#include "measure/stats.h"

struct measure_probe {
    measure_probe_kind_t kind;
    msr_backend_t be; /* be.impl NULL for "none" */
    double period_s;
    int in_window;
    uint64_t win_t0;
    double win_j0; /* counters: the reading at start */

    /* power sensors: the sampler and what it shares, under mu */
    pthread_t thread;
    int thread_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop_req;
    double total_j; /* integrated over all windows */
    double win_j;   /* over this window */
    double last_w;
    uint64_t last_t;
    dp_err_t th_err;
    char th_detail[1024];
};

static const char *const kind_names[MEASURE_PROBE__COUNT] = {"none", "rapl", "ina3221", "nvml"};

const char *measure_probe_kind_name(measure_probe_kind_t kind)
{
    if ((int)kind < 0 || kind >= MEASURE_PROBE__COUNT) return "unknown";
    return kind_names[kind];
}

int measure_probe_parse_kind(const char *name)
{
    if (!name) return -1;
    for (int k = 0; k < MEASURE_PROBE__COUNT; k++)
        if (strcasecmp(name, kind_names[k]) == 0) return k;
    if (strcasecmp(name, "jetson") == 0) return MEASURE_PROBE_INA3221;
    return -1;
}

void measure_probe_opts_init(measure_probe_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->root = "";
    o->rapl_domains = "package,dram";
    o->rails = "VDD_IN,POM_5V_IN";
    o->period_s = 0.01;
    o->nvml_path = "libnvidia-ml.so.1";
    o->nvml_index = 0;
}

dp_err_t measure_probe_open(measure_probe_kind_t kind, const measure_probe_opts_t *opts,
                            measure_probe_t **out)
{
    *out = NULL;
    measure_probe_opts_t o;
    measure_probe_opts_init(&o);
    if (opts) {
        if (opts->root) o.root = opts->root;
        if (opts->rapl_domains && opts->rapl_domains[0]) o.rapl_domains = opts->rapl_domains;
        if (opts->rails && opts->rails[0]) o.rails = opts->rails;
        if (opts->period_s > 0) o.period_s = opts->period_s;
        if (opts->nvml_path && opts->nvml_path[0]) o.nvml_path = opts->nvml_path;
        o.nvml_index = opts->nvml_index;
    }
    if (!(o.period_s >= 1e-4 && o.period_s <= 10))
        return dp_err_set(DP_ERR_INVALID, "probe: period_s %g outside [0.0001, 10]", o.period_s);
    measure_probe_t *p = calloc(1, sizeof *p);
    if (!p) return dp_err_set(DP_ERR_NOMEM, "probe");
    p->kind = kind;
    p->period_s = o.period_s;
    dp_err_t err = DP_OK;
    switch (kind) {
    case MEASURE_PROBE_NONE:
        snprintf(p->be.desc, sizeof p->be.desc, "none");
        break;
    case MEASURE_PROBE_RAPL:
        err = msr_rapl_open(&o, &p->be);
        break;
    case MEASURE_PROBE_INA3221:
        err = msr_ina3221_open(&o, &p->be);
        break;
    case MEASURE_PROBE_NVML:
        err = msr_nvml_open(&o, &p->be);
        break;
    default:
        err = dp_err_set(DP_ERR_INVALID, "probe: unknown kind %d", (int)kind);
    }
    if (err) {
        free(p);
        return err;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->last_t = msr_now_ns();
    *out = p;
    return DP_OK;
}

void measure_probe_destroy(measure_probe_t **pp)
{
    if (!pp || !*pp) return;
    measure_probe_t *p = *pp;
    if (p->in_window) measure_probe_stop(p, NULL, NULL);
    if (p->be.destroy) p->be.destroy(p->be.impl);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    *pp = NULL;
}

measure_probe_kind_t measure_probe_kind(const measure_probe_t *p) { return p->kind; }
int measure_probe_has_energy(const measure_probe_t *p) { return p->kind != MEASURE_PROBE_NONE; }
int measure_probe_is_sampled(const measure_probe_t *p) { return p->be.read_power != NULL; }
const char *measure_probe_describe(const measure_probe_t *p) { return p->be.desc; }

static dp_err_t read_counter(measure_probe_t *p, double *j)
{
    *j = 0;
    if (!p->be.read_energy) return DP_OK; /* none */
    return p->be.read_energy(p->be.impl, j);
}

dp_err_t measure_probe_read(measure_probe_t *p, measure_reading_t *out)
{
    if (p->be.read_power) {
        pthread_mutex_lock(&p->mu);
        out->joules = p->total_j;
        out->t_ns = p->last_t;
        pthread_mutex_unlock(&p->mu);
        return DP_OK;
    }
    out->t_ns = msr_now_ns();
    return read_counter(p, &out->joules);
}

/* ---------------------------------------------------------------- sampler */

static void add_sample(measure_probe_t *p, double w, uint64_t t)
{
    double j = 0.5 * (p->last_w + w) * (double)(t - p->last_t) * 1e-9;
    p->win_j += j;
    p->total_j += j;
    p->last_w = w;
    p->last_t = t;
}

static void *sampler(void *arg)
{
    measure_probe_t *p = arg;
    const uint64_t period = (uint64_t)(p->period_s * 1e9);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&p->mu);
    while (!p->stop_req) {
        uint64_t ns = (uint64_t)next.tv_nsec + period;
        next.tv_sec += (time_t)(ns / 1000000000ull);
        next.tv_nsec = (long)(ns % 1000000000ull);
        while (!p->stop_req && pthread_cond_timedwait(&p->cv, &p->mu, &next) == 0) {
        }
        if (p->stop_req) break;
        pthread_mutex_unlock(&p->mu);
        double w;
        dp_err_t err = p->be.read_power(p->be.impl, &w);
        uint64_t t = msr_now_ns();
        pthread_mutex_lock(&p->mu);
        if (err) {
            p->th_err = err;
            snprintf(p->th_detail, sizeof p->th_detail, "%s", dp_err_detail());
            break;
        }
        add_sample(p, w, t);
        /* Behind by more than a period (a loaded machine): skip the missed
         * ticks; the trapezoid spans the gap. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
            next = now;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

dp_err_t measure_probe_start(measure_probe_t *p)
{
    if (p->in_window) return dp_err_set(DP_ERR_INVALID, "probe: a window is already open");
    if (p->be.read_power) {
        double w;
        dp_err_t err = p->be.read_power(p->be.impl, &w);
        if (err) return err;
        pthread_mutex_lock(&p->mu);
        p->last_w = w;
        p->last_t = msr_now_ns();
        p->win_t0 = p->last_t;
        p->win_j = 0;
        p->stop_req = 0;
        p->th_err = DP_OK;
        pthread_mutex_unlock(&p->mu);
        if (pthread_create(&p->thread, NULL, sampler, p) != 0)
            return dp_err_set(DP_ERR_NOMEM, "probe: cannot start the sampling thread");
        p->thread_running = 1;
    } else {
        dp_err_t err = read_counter(p, &p->win_j0);
        if (err) return err;
        p->win_t0 = msr_now_ns();
    }
    p->in_window = 1;
    return DP_OK;
}

dp_err_t measure_probe_stop(measure_probe_t *p, double *joules, double *seconds)
{
    if (joules) *joules = 0;
    if (seconds) *seconds = 0;
    if (!p->in_window) return dp_err_set(DP_ERR_INVALID, "probe: no window is open");
    p->in_window = 0;
    if (p->be.read_power) {
        pthread_mutex_lock(&p->mu);
        p->stop_req = 1;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (p->thread_running) pthread_join(p->thread, NULL);
        p->thread_running = 0;
        if (p->th_err) return dp_err_set(p->th_err, "%s", p->th_detail);
        double w;
        dp_err_t err = p->be.read_power(p->be.impl, &w);
        if (err) return err;
        uint64_t t = msr_now_ns();
        add_sample(p, w, t);
        if (joules) *joules = p->win_j;
        if (seconds) *seconds = (double)(t - p->win_t0) * 1e-9;
        return DP_OK;
    }
    double j;
    dp_err_t err = read_counter(p, &j);
    uint64_t t = msr_now_ns();
    if (err) return err;
    if (joules) *joules = j - p->win_j0;
    if (seconds) *seconds = (double)(t - p->win_t0) * 1e-9;
    return DP_OK;
}

/* ------------------------------------------------------ idle and energy */

/* Counters are read every POLL_NS inside a window so that a RAPL wrap is
 * seen even in a long window (a 32-bit counter wraps in ~1 min at 60 W). */
#define POLL_NS 100000000ull

static dp_err_t poll_counter(measure_probe_t *p)
{
    if (p->be.read_power) return DP_OK;
    double j;
    return read_counter(p, &j);
}

dp_err_t measure_idle_power(measure_probe_t *p, double seconds, double *watts)
{
    *watts = 0;
    if (!(seconds > 0 && seconds <= 3600))
        return dp_err_set(DP_ERR_INVALID, "idle power: %g s outside (0, 3600]", seconds);
    dp_err_t err = measure_probe_start(p);
    if (err) return err;
    const uint64_t end = msr_now_ns() + (uint64_t)(seconds * 1e9);
    for (uint64_t now = msr_now_ns(); now < end; now = msr_now_ns()) {
        uint64_t left = end - now < POLL_NS ? end - now : POLL_NS;
        struct timespec ts = {(time_t)(left / 1000000000ull), (long)(left % 1000000000ull)};
        nanosleep(&ts, NULL);
        if ((err = poll_counter(p))) {
            measure_probe_stop(p, NULL, NULL);
            return err;
        }
    }
    double j, s;
    if ((err = measure_probe_stop(p, &j, &s))) return err;
    *watts = s > 0 ? j / s : 0;
    return DP_OK;
}

dp_err_t measure_energy(measure_probe_t *p, measure_fn fn, void *ctx, const measure_opts_t *opts,
                        double idle_w, measure_energy_t *out)
{
    measure_opts_t defaults;
    if (!opts) {
        measure_opts_init(&defaults);
        opts = &defaults;
    }
    memset(out, 0, sizeof *out);
    if (!measure_probe_has_energy(p))
        return dp_err_set(DP_ERR_UNSUPPORTED, "energy: the probe 'none' measures no energy");
    if (!fn) return dp_err_set(DP_ERR_INVALID, "energy: no function to run");
    if (!(opts->min_window_s > 0))
        return dp_err_set(DP_ERR_INVALID, "energy: min_window_s %g must be > 0",
                          opts->min_window_s);
    unsigned windows = opts->windows ? opts->windows : 1;
    double *per = malloc(windows * sizeof *per);
    if (!per) return dp_err_set(DP_ERR_NOMEM, "energy: %u windows", windows);
    for (unsigned i = 0; i < opts->warmup; i++) fn(ctx);
    const uint64_t min_ns = (uint64_t)(opts->min_window_s * 1e9);
    dp_err_t err = DP_OK;
    for (unsigned w = 0; w < windows; w++) {
        if ((err = measure_probe_start(p))) goto done;
        uint64_t reps = 0, begin = msr_now_ns(), next_poll = begin + POLL_NS, now;
        do {
            fn(ctx);
            reps++;
            now = msr_now_ns();
            if (now >= next_poll) {
                next_poll = now + POLL_NS;
                if ((err = poll_counter(p))) {
                    measure_probe_stop(p, NULL, NULL);
                    goto done;
                }
            }
        } while (now - begin < min_ns);
        double j, s;
        if ((err = measure_probe_stop(p, &j, &s))) goto done;
        per[w] = (j - idle_w * s) / (double)reps;
        out->window_joules = j;
        out->window_s = s;
        out->window_reps = reps;
        out->mean_power_w = s > 0 ? j / s : 0;
    }
    measure_sort(per, windows);
    out->joules_per_inference = per[measure_nearest_rank(windows, 0.5) - 1];
    out->idle_w = idle_w;
    out->windows = windows;
done:
    free(per);
    return err;
}
