/* MEASURE on local inputs (basic; the measurer issue adds energy): the
 * zoo's adaptive forward at batch size 1 (skipped blocks are not computed),
 * `warmup` untimed forwards over the first inputs, then `repetitions` timed
 * forwards of each input (CLOCK_MONOTONIC_RAW: not slewed by NTP), the
 * median per input with its spread, executed FLOPs per input, nearest-rank
 * percentiles across inputs, and where it ran. */
#define _GNU_SOURCE /* sched_getcpu, pthread_setaffinity_np */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "task/task_impl.h"
#include "util/clock.h"

static double now_raw_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least p% of the n sorted values
 * at or below it (MLPerf LoadGen's). */
static double rank_pct(const double *sorted, size_t n, double p)
{
    if (n == 0) return NAN;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return sorted[k - 1];
}

/* The CPU's model name from /proc/cpuinfo ("" if unknown). */
static void cpu_model(char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) && strncmp(line, "Model", 5)) continue;
        const char *c = strchr(line, ':');
        if (!c) continue;
        for (c++; *c == ' ' || *c == '\t'; c++) {
        }
        snprintf(buf, size, "%s", c);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(f);
}

typedef struct row {
    int64_t index;
    double median, min, max, iqr;
    double flops, flops_exact, exec;
    int exit_taken, blocks_run;
} row_t;

static void json_env(tj_writer_t *w, const dp_task_settings_t *s, int pinned)
{
    char cpu[256];
    struct utsname u;
    cpu_model(cpu, sizeof cpu);
    if (uname(&u) != 0) memset(&u, 0, sizeof u);
    tj_key(w, "device");
    tj_obj(w);
    tj_kstr(w, "device_class", s->device_class);
    tj_kstr(w, "cpu", cpu);
    char kernel[2 * sizeof u.release + 2];
    snprintf(kernel, sizeof kernel, "%s %s", u.sysname, u.release);
    tj_kstr(w, "kernel", kernel);
    tj_kbool(w, "pinned", pinned);
    tj_kstr(w, "clock", "CLOCK_MONOTONIC_RAW");
    tj_obj_end(w);
}

/* The totals of rows[0..n) as members. */
static void json_totals(tj_writer_t *w, const dp_task_settings_t *s, const row_t *rows, size_t n,
                        double flops_full, double seconds)
{
    double *med = malloc((n ? n : 1) * sizeof *med);
    double sum = 0, fsum = 0, esum = 0;
    for (size_t i = 0; i < n; i++) {
        if (med) med[i] = rows[i].median;
        sum += rows[i].median, fsum += rows[i].flops, esum += rows[i].exec;
    }
    if (med) qsort(med, n, sizeof *med, cmp_double);
    tj_kint(w, "n", (int64_t)n);
    tj_kint(w, "warmup", s->warmup);
    tj_kint(w, "repetitions", s->repetitions);
    tj_knum(w, "latency_mean_ms", n ? sum / n * 1e3 : NAN);
    tj_knum(w, "latency_p50_ms", med ? rank_pct(med, n, 50) * 1e3 : NAN);
    tj_knum(w, "latency_p90_ms", med ? rank_pct(med, n, 90) * 1e3 : NAN);
    tj_knum(w, "latency_p99_ms", med ? rank_pct(med, n, 99) * 1e3 : NAN);
    tj_knum(w, "flops_mean", n ? fsum / n : NAN);
    tj_knum(w, "exec_fraction_mean", n ? esum / n : NAN);
    tj_knum(w, "flops_full", flops_full);
    tj_knum(w, "seconds", seconds);
    free(med);
}

/* Pins the calling thread to the CPU it runs on; *saved gets the old mask.
 * 1 when pinned. */
static int pin_here(cpu_set_t *saved)
{
    int cpu = sched_getcpu();
    if (cpu < 0 || pthread_getaffinity_np(pthread_self(), sizeof *saved, saved)) return 0;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
}

dp_err_t dp_task_measure(const dp_task_settings_t *s, const dp_task_io_t *io, dp_task_output_t *out)
{
    memset(out, 0, sizeof *out);
    perf_samples_t *set = NULL;
    const float *x = NULL;
    const int64_t *index = NULL;
    int64_t *seed_idx = NULL;
    row_t *rows = NULL;
    double *reps = NULL;
    size_t n = 0;
    int pinned = 0;
    cpu_set_t saved;
    tj_writer_t w;
    tj_init(&w);
    dp_err_t err = DP_OK;
    const adnn_spec_t *sp = adnn_model_spec(io->model);
    const size_t d = (size_t)sp->c * sp->h * sp->w;
    if (io->samples) {
        if ((err = perf_samples_load(io->samples, &set))) {
            err = task_stage(err, "cannot load the inputs");
            goto done;
        }
        if (set->c != sp->c || set->h != sp->h || set->w != sp->w) {
            err = dp_err_set(DP_ERR_MISMATCH,
                             "the inputs in %s are %dx%dx%d, the model expects "
                             "%dx%dx%d",
                             io->samples, set->c, set->h, set->w, sp->c, sp->h, sp->w);
            goto done;
        }
        x = set->xadv, index = set->seed_index, n = (size_t)set->n;
    } else {
        const dp_dataset_t *t = io->test;
        if ((err = dp_task_check_shape(io->model, t, "the test split"))) goto done;
        if (s->seed_begin >= s->seed_end || s->seed_end > t->n) {
            err = dp_err_set(DP_ERR_RANGE, "seeds [%u, %u) exceed the %u test images",
                             s->seed_begin, s->seed_end, t->n);
            goto done;
        }
        n = s->seed_end - s->seed_begin;
        x = t->images + (size_t)s->seed_begin * d;
        if (!(seed_idx = malloc(n * sizeof *seed_idx))) goto nomem;
        for (size_t i = 0; i < n; i++) seed_idx[i] = (int64_t)s->seed_begin + (int64_t)i;
        index = seed_idx;
    }
    if (s->measure_max && n > s->measure_max) n = s->measure_max;
    const int R = s->repetitions > 0 ? s->repetitions : 1;
    rows = calloc(n ? n : 1, sizeof *rows);
    reps = malloc((size_t)R * sizeof *reps);
    if (!rows || !reps) goto nomem;
    if ((err = task_check_cancel(&io->hooks))) goto done;
    const double full = adnn_flops_full(io->model, 0), t_start = dp_clock_s();
    if (s->pin_cpu) pinned = pin_here(&saved);
    adnn_trace_t tr;
    for (int k = 0; k < s->warmup && n; k++)
        adnn_forward_adaptive(io->model, x + (size_t)(k % (int)n) * d, &tr);
    double last = t_start;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * d;
        for (int r = 0; r < R; r++) {
            double a = now_raw_s();
            adnn_forward_adaptive(io->model, xi, &tr);
            reps[r] = now_raw_s() - a;
        }
        qsort(reps, (size_t)R, sizeof *reps, cmp_double);
        row_t *o = &rows[i];
        o->index = index[i];
        o->median = R % 2 ? reps[R / 2] : 0.5 * (reps[R / 2 - 1] + reps[R / 2]);
        o->min = reps[0], o->max = reps[R - 1];
        o->iqr = rank_pct(reps, (size_t)R, 75) - rank_pct(reps, (size_t)R, 25);
        o->flops = tr.flops_ref, o->flops_exact = tr.flops_exact, o->exec = tr.flops_ref / full;
        o->exit_taken = tr.exit_taken, o->blocks_run = tr.blocks_run;
        if (perf_hooks_cancelled(&io->hooks) != PERF_GO_ON) {
            err = dp_err_set(DP_ERR_CANCELLED, "measure: cancelled after %zu of %zu inputs", i + 1,
                             n);
            goto done;
        }
        double now = dp_clock_s();
        if (s->progress_secs > 0 && now - last >= s->progress_secs && i + 1 < n) {
            char line[128];
            snprintf(line, sizeof line, "measure: %zu/%zu inputs, %.0f s", i + 1, n, now - t_start);
            perf_hooks_progress(&io->hooks, "measure", i + 1, n, line);
            last = now;
        }
    }
    out->seconds = dp_clock_s() - t_start;
    /* measure.json: per input, totals, provenance */
    tj_obj(&w);
    task_json_identity(&w, s);
    json_totals(&w, s, rows, n, full, out->seconds);
    json_env(&w, s, pinned);
    task_json_provenance(&w);
    tj_key(&w, "inputs");
    tj_arr(&w);
    for (size_t i = 0; i < n; i++) {
        const row_t *o = &rows[i];
        tj_obj(&w);
        tj_kint(&w, "index", o->index);
        tj_knum(&w, "latency_median_ms", o->median * 1e3);
        tj_knum(&w, "latency_min_ms", o->min * 1e3);
        tj_knum(&w, "latency_max_ms", o->max * 1e3);
        tj_knum(&w, "latency_iqr_ms", o->iqr * 1e3);
        tj_knum(&w, "flops", o->flops);
        tj_knum(&w, "flops_exact", o->flops_exact);
        tj_knum(&w, "exec_fraction", o->exec);
        tj_kint(&w, "blocks_run", o->blocks_run);
        tj_kint(&w, "exit_taken", o->exit_taken);
        tj_obj_end(&w);
    }
    tj_arr_end(&w);
    tj_obj_end(&w);
    char *text = tj_take(&w);
    if (!text) goto nomem;
    err = task_write_file(io->out, text, strlen(text));
    free(text);
    if (err) {
        err = task_stage(err, "cannot write the measurements");
        goto done;
    }
    /* the summary: the same without the rows */
    tj_obj(&w);
    task_json_identity(&w, s);
    json_totals(&w, s, rows, n, full, out->seconds);
    json_env(&w, s, pinned);
    task_json_provenance(&w);
    tj_obj_end(&w);
    if (!(out->summary_json = tj_take(&w))) goto nomem;
    goto done;
nomem:
    err = dp_err_set(DP_ERR_NOMEM, "measure: out of memory");
done:
    if (pinned) pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
    tj_free(&w);
    perf_samples_destroy(&set);
    free(seed_idx);
    free(rows);
    free(reps);
    return err;
}
