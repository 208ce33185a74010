/* core/measure: every energy probe on a fake sysfs tree laid out like the
 * real device (RAPL with a wrap inside the window, Jetson Nano IIO, Orin
 * hwmon), NVML through a stand-in library; unreadable and missing files; the
 * latency protocol on a busy-wait of known length; pinning; the
 * environment's warnings; the interleaved order; percentiles, the upper
 * bound (reference values from tests/measure/ref_bound.py), Pearson. */
#define _GNU_SOURCE /* sched_getcpu, CPU_SET */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "measure/latency.h"
#include "measure/probe.h"
#include "measure/stats.h"
#include "util/path.h"

/* ------------------------------------------------------------ fake trees */

static char root[256];

static void make_root(void)
{
    snprintf(root, sizeof root, "/tmp/dp-measure-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    chmod(root, 0755);
}

static void drop_root(void) { dp_path_remove_tree(root); }

static void mkdirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
    mkdir(buf, 0755);
}

/* Writes ROOT/rel atomically (a reader never sees half a value). */
static void put(const char *rel, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(const char *rel, const char *fmt, ...)
{
    char path[1024], tmp[1100], dir[1024];
    snprintf(path, sizeof path, "%s%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    mkdirs(dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f, "%s: %s", tmp, strerror(errno));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void spin_s(double s)
{
    double end = now_s() + s;
    while (now_s() < end) {
    }
}

static void expect_close(double got, double want, double rel, const char *what)
{
    cr_expect(fabs(got - want) <= rel * fabs(want), "%s: %.6f, want %.6f (within %.1f%%)", what,
              got, want, rel * 100);
}

static void nothing(void *arg) { (void)arg; }

static void opts_on_root(measure_probe_opts_t *o)
{
    measure_probe_opts_init(o);
    o->root = root;
}

/* ------------------------------------------------------------------ RAPL */

#define PKG       "/sys/class/powercap/intel-rapl:0"
#define PKG_MAX   262143328850ull
#define DRAM_MAX  65712999613ull
#define SMALL_MAX 1000000ull /* 1 J: wraps every 100 inferences of the fake device */

static void rapl_tree(uint64_t pkg_uj)
{
    put(PKG "/name", "package-0");
    put(PKG "/max_energy_range_uj", "%llu", PKG_MAX);
    put(PKG "/energy_uj", "%llu", (unsigned long long)pkg_uj);
    put(PKG "/intel-rapl:0:0/name", "core");
    put(PKG "/intel-rapl:0:0/max_energy_range_uj", "%llu", PKG_MAX);
    put(PKG "/intel-rapl:0:0/energy_uj", "5000000");
    put(PKG "/intel-rapl:0:1/name", "dram");
    put(PKG "/intel-rapl:0:1/max_energy_range_uj", "%llu", DRAM_MAX);
    put(PKG "/intel-rapl:0:1/energy_uj", "100000");
    /* an MMIO duplicate of the package on some laptops: not a zone to add */
    put("/sys/class/powercap/intel-rapl-mmio:0/name", "package-0");
    put("/sys/class/powercap/intel-rapl-mmio:0/energy_uj", "7");
    put("/sys/class/powercap/intel-rapl-mmio:0/max_energy_range_uj", "%llu", PKG_MAX);
}

TestSuite(rapl, .init = make_root, .fini = drop_root);

Test(rapl, package_and_dram_with_a_wrap_in_the_window)
{
    rapl_tree(PKG_MAX - 1000000); /* 1 J before the wrap */
    measure_probe_opts_t o;
    opts_on_root(&o);
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_OK, "%s", dp_err_detail());
    const char *d = measure_probe_describe(p);
    cr_expect(strstr(d, "package-0 (intel-rapl:0)") && strstr(d, "dram (intel-rapl:0:1)"), "%s", d);
    cr_expect_null(strstr(d, "core"), "%s", d);
    cr_expect_eq(measure_probe_is_sampled(p), 0);
    cr_assert_eq(measure_probe_start(p), DP_OK);
    put(PKG "/energy_uj", "500000");                    /* wrapped: +1.5 J */
    put(PKG "/intel-rapl:0:0/energy_uj", "9000000");    /* core: not chosen */
    put(PKG "/intel-rapl:0:1/energy_uj", "%d", 350000); /* dram: +0.25 J */
    double j, s;
    cr_assert_eq(measure_probe_stop(p, &j, &s), DP_OK, "%s", dp_err_detail());
    cr_expect(fabs(j - 1.75) < 1e-9, "window %.9f J, want 1.75", j);
    expect_close(j, 1.75, 0.01, "energy");
    measure_reading_t r;
    cr_assert_eq(measure_probe_read(p, &r), DP_OK);
    cr_expect(fabs(r.joules - 1.75) < 1e-9, "cumulative %.9f J", r.joules);
    cr_expect_gt(r.t_ns, 0);
    measure_probe_destroy(&p);
    cr_expect_null(p);
}

/* A chosen domain list; zones listed at the top level too (as the kernel
 * does, with symbolic links): each counted once. */
Test(rapl, chosen_domains_and_top_level_links)
{
    rapl_tree(1000);
    char target[1024], link[1024];
    snprintf(target, sizeof target, "%s" PKG "/intel-rapl:0:1", root);
    snprintf(link, sizeof link, "%s/sys/class/powercap/intel-rapl:0:1", root);
    cr_assert_eq(symlink(target, link), 0);
    measure_probe_opts_t o;
    opts_on_root(&o);
    o.rapl_domains = "dram";
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_OK, "%s", dp_err_detail());
    cr_expect_str_eq(measure_probe_describe(p), "rapl: dram (intel-rapl:0:1)");
    cr_assert_eq(measure_probe_start(p), DP_OK);
    put(PKG "/intel-rapl:0:1/energy_uj", "600000");
    double j;
    cr_assert_eq(measure_probe_stop(p, &j, NULL), DP_OK);
    cr_expect(fabs(j - 0.5) < 1e-9, "%.9f", j);
    measure_probe_destroy(&p);

    o.rapl_domains = "psys";
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_ERR_NOTFOUND);
    cr_expect(strstr(dp_err_detail(), "no RAPL domain named psys") &&
                  strstr(dp_err_detail(), "package-0, core, dram"),
              "%s", dp_err_detail());
}

/* The fake device spends 10 mJ per inference; its package counter wraps at
 * 1 J, every 100 inferences, several times in the window. */
static void fake_inference(void *arg)
{
    uint64_t *total = arg;
    spin_s(0.002);
    *total += 10000;
    put(PKG "/energy_uj", "%llu", (unsigned long long)(*total % SMALL_MAX));
}

Test(rapl, energy_per_inference_across_wraps)
{
    rapl_tree(0);
    put(PKG "/max_energy_range_uj", "%llu", SMALL_MAX);
    uint64_t total = 990000; /* the first inference after warm-up already wraps */
    put(PKG "/energy_uj", "%llu", (unsigned long long)total);
    measure_probe_opts_t o;
    opts_on_root(&o);
    o.rapl_domains = "package";
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_OK, "%s", dp_err_detail());
    measure_opts_t mo;
    measure_opts_init(&mo);
    mo.warmup = 1;
    mo.min_window_s = 1.5; /* > 100 inferences even at a third of a loaded core (ASan) */
    mo.windows = 2;
    measure_energy_t e;
    cr_assert_eq(measure_energy(p, fake_inference, &total, &mo, 0, &e), DP_OK, "%s",
                 dp_err_detail());
    cr_expect_eq(e.windows, 2);
    cr_expect(e.window_reps > 100 && e.window_joules > 1.0,
              "the window must span a wrap (1 J): %llu reps, %.3f J",
              (unsigned long long)e.window_reps, e.window_joules);
    cr_expect(fabs(e.joules_per_inference - 0.01) < 1e-9, "%.9f J per inference",
              e.joules_per_inference);
    expect_close(e.mean_power_w, e.window_joules / e.window_s, 1e-9, "mean power");

    /* an idle baseline is subtracted as power x window time */
    mo.windows = 1;
    cr_assert_eq(measure_energy(p, fake_inference, &total, &mo, 1.0, &e), DP_OK);
    double want = (e.window_joules - 1.0 * e.window_s) / (double)e.window_reps;
    cr_expect(fabs(e.joules_per_inference - want) < 1e-9, "%.9f vs %.9f", e.joules_per_inference,
              want);
    cr_expect_eq(e.idle_w, 1.0);
    measure_probe_destroy(&p);
}

/* A writer thread advances the counter as a 12 W idle machine would. */
struct writer {
    volatile int stop;
    double watts, t0;
};

static void *rapl_writer(void *arg)
{
    struct writer *w = arg;
    while (!w->stop) {
        double uj = w->watts * (now_s() - w->t0) * 1e6;
        put(PKG "/energy_uj", "%llu", (unsigned long long)uj % (3 * SMALL_MAX));
        sleep_s(0.0005);
    }
    return NULL;
}

Test(rapl, idle_power_from_a_running_counter)
{
    rapl_tree(0);
    put(PKG "/max_energy_range_uj", "%llu", 3 * SMALL_MAX); /* wraps every 250 ms at 12 W */
    measure_probe_opts_t o;
    opts_on_root(&o);
    o.rapl_domains = "package";
    struct writer w = {0, 12.0, now_s()};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, rapl_writer, &w), 0);
    sleep_s(0.01);
    measure_probe_t *p = NULL;
    dp_err_t err = measure_probe_open(MEASURE_PROBE_RAPL, &o, &p);
    double watts = 0;
    if (!err) err = measure_idle_power(p, 0.6, &watts);
    w.stop = 1;
    pthread_join(th, NULL);
    cr_assert_eq(err, DP_OK, "%s", dp_err_detail());
    expect_close(watts, 12.0, 0.02, "idle power");
    measure_probe_destroy(&p);
}

Test(rapl, missing_files_name_the_file)
{
    measure_probe_opts_t o;
    opts_on_root(&o);
    measure_probe_t *p = NULL;
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_ERR_NOTFOUND);
    cr_expect(strstr(dp_err_detail(), "/sys/class/powercap: no such directory") &&
                  strstr(dp_err_detail(), root),
              "%s", dp_err_detail());
    rapl_tree(0);
    char path[1024];
    snprintf(path, sizeof path, "%s" PKG "/energy_uj", root);
    cr_assert_eq(unlink(path), 0);
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_ERR_NOTFOUND);
    cr_expect(strstr(dp_err_detail(), path) && strstr(dp_err_detail(), "no such file"), "%s",
              dp_err_detail());
    cr_expect_null(p);
}

/* Unreadable: a directory where the file should be (works as root too), a
 * FIFO (must not hang), and permission denied, which needs a non-root
 * effective user since root reads through mode 000. */
Test(rapl, unreadable_files_name_the_file_and_the_fix)
{
    rapl_tree(0);
    measure_probe_opts_t o;
    opts_on_root(&o);
    measure_probe_t *p = NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s" PKG "/energy_uj", root);

    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_ERR_IO);
    cr_expect(strstr(dp_err_detail(), path) && strstr(dp_err_detail(), "is a directory"), "%s",
              dp_err_detail());
    cr_assert_eq(rmdir(path), 0);

    cr_assert_eq(mkfifo(path, 0644), 0);
    cr_expect_neq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_OK);
    cr_expect(strstr(dp_err_detail(), path), "%s", dp_err_detail());
    cr_assert_eq(unlink(path), 0);

    put(PKG "/energy_uj", "12");
    cr_assert_eq(chmod(path, 0), 0);
    int dropped = 0;
    if (geteuid() == 0) {
        if (seteuid(65534) != 0) {
            cr_log_info("cannot take a non-root uid (%s): permission case not run",
                        strerror(errno));
            return;
        }
        dropped = 1;
    }
    dp_err_t err = measure_probe_open(MEASURE_PROBE_RAPL, &o, &p);
    if (dropped) cr_assert_eq(seteuid(0), 0);
    cr_expect_eq(err, DP_ERR_IO);
    const char *d = dp_err_detail();
    cr_expect(strstr(d, path) && strstr(d, "permission denied") && strstr(d, "chmod o+r") &&
                  strstr(d, "root") && strstr(d, "udev"),
              "%s", d);
    cr_expect_null(p);
}

Test(rapl, bad_contents)
{
    rapl_tree(0);
    put(PKG "/energy_uj", "12abc");
    measure_probe_opts_t o;
    opts_on_root(&o);
    measure_probe_t *p = NULL;
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_RAPL, &o, &p), DP_ERR_FORMAT);
    cr_expect(strstr(dp_err_detail(), "'12abc' is not a decimal number"), "%s", dp_err_detail());
}

/* --------------------------------------------------------------- INA3221 */

#define NANO "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
#define ORIN "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"

TestSuite(ina3221, .init = make_root, .fini = drop_root);

static void nano_tree(void)
{
    put("/sys/bus/i2c/drivers/ina3221x/uevent", "DRIVER=ina3221x");
    put(NANO "/rail_name_0", "POM_5V_IN");
    put(NANO "/in_power0_input", "4000");
    put(NANO "/in_voltage0_input", "5000");
    put(NANO "/in_current0_input", "800");
    put(NANO "/rail_name_1", "POM_5V_GPU");
    put(NANO "/in_power1_input", "1000");
    put(NANO "/rail_name_2", "POM_5V_CPU");
    put(NANO "/in_power2_input", "1500");
}

static void orin_tree(void)
{
    put(ORIN "/name", "ina3221");
    put(ORIN "/in1_label", "VDD_IN");
    put(ORIN "/in1_input", "5000");
    put(ORIN "/curr1_input", "800");
    put(ORIN "/in2_label", "VDD_CPU_GPU_CV");
    put(ORIN "/in2_input", "5000");
    put(ORIN "/curr2_input", "300");
    put(ORIN "/in3_label", "VDD_SOC");
    put(ORIN "/in3_input", "5000");
    put(ORIN "/curr3_input", "200");
    put("/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon2/in1_label", "VDDQ_VDD2_1V8AO");
    put("/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon2/in1_input", "1800");
    put("/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon2/curr1_input", "100");
}

/* A window in which the board draws w0 watts, then w1 from halfway: the
 * integral the probe returns against the one the test knows. */
static void step_window(measure_probe_t *p, double w0, void (*set_w1)(void), double w1)
{
    measure_reading_t r0, r1;
    cr_assert_eq(measure_probe_read(p, &r0), DP_OK);
    double ta = now_s();
    cr_assert_eq(measure_probe_start(p), DP_OK, "%s", dp_err_detail());
    sleep_s(0.4);
    double s0 = now_s();
    set_w1();
    double ts = 0.5 * (s0 + now_s());
    sleep_s(0.4);
    double j, s;
    cr_assert_eq(measure_probe_stop(p, &j, &s), DP_OK, "%s", dp_err_detail());
    double tb = now_s();
    double want = w0 * (ts - ta) + w1 * (tb - ts);
    expect_close(j, want, 0.01, "window energy");
    expect_close(s, tb - ta, 0.01, "window length");
    cr_assert_eq(measure_probe_read(p, &r1), DP_OK);
    cr_expect(fabs(r1.joules - r0.joules - j) < 1e-9, "cumulative %.6f - %.6f vs window %.6f",
              r1.joules, r0.joules, j);
    cr_expect_gt(r1.t_ns, r0.t_ns);
}

static void nano_to_5w(void) { put(NANO "/in_power0_input", "5000"); }
static void orin_to_5w(void) { put(ORIN "/curr1_input", "1000"); }

Test(ina3221, nano_iio_total_rail_integrated)
{
    nano_tree();
    measure_probe_opts_t o;
    opts_on_root(&o);
    o.period_s = 0.002;
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_INA3221, &o, &p), DP_OK, "%s", dp_err_detail());
    cr_expect_eq(measure_probe_is_sampled(p), 1);
    cr_expect(strstr(measure_probe_describe(p), "ina3221 iio: POM_5V_IN") &&
                  strstr(measure_probe_describe(p), "in_power0_input"),
              "%s", measure_probe_describe(p));
    step_window(p, 4.0, nano_to_5w, 5.0);
    measure_probe_destroy(&p);
}

Test(ina3221, orin_hwmon_by_label)
{
    orin_tree();
    measure_probe_opts_t o;
    opts_on_root(&o);
    o.period_s = 0.002;
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_INA3221, &o, &p), DP_OK, "%s", dp_err_detail());
    cr_expect(strstr(measure_probe_describe(p), "ina3221 hwmon: VDD_IN") &&
                  strstr(measure_probe_describe(p), "hwmon1/in1_input"),
              "%s", measure_probe_describe(p));
    step_window(p, 4.0, orin_to_5w, 5.0);
    /* a second window on the same probe */
    put(ORIN "/curr1_input", "800");
    step_window(p, 4.0, orin_to_5w, 5.0);
    measure_probe_destroy(&p);
}

static void no_change(void) {}

Test(ina3221, sum_of_rails_and_the_default_period)
{
    orin_tree();
    measure_probe_opts_t o;
    opts_on_root(&o);
    o.rails = "GPU+CPU+SOC, VDD_CPU_GPU_CV+VDD_SOC";
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_INA3221, &o, &p), DP_OK, "%s", dp_err_detail());
    cr_expect(strstr(measure_probe_describe(p), "VDD_CPU_GPU_CV") &&
                  strstr(measure_probe_describe(p), "+ VDD_SOC"),
              "%s", measure_probe_describe(p));
    step_window(p, 2.5, no_change, 2.5);
    measure_probe_destroy(&p);
}

Test(ina3221, missing_rail_lists_the_rails)
{
    nano_tree();
    measure_probe_opts_t o;
    opts_on_root(&o);
    o.rails = "VDD_IN";
    measure_probe_t *p = NULL;
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_INA3221, &o, &p), DP_ERR_NOTFOUND);
    cr_expect(strstr(dp_err_detail(), "no INA3221 rail matches 'VDD_IN'") &&
                  strstr(dp_err_detail(), "POM_5V_IN, POM_5V_GPU, POM_5V_CPU"),
              "%s", dp_err_detail());
    dp_path_remove_tree(root);
    mkdir(root, 0755);
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_INA3221, &o, &p), DP_ERR_NOTFOUND);
    cr_expect(strstr(dp_err_detail(), "ina3221x/*/iio:device*/rail_name_K") &&
                  strstr(dp_err_detail(), "not a Jetson"),
              "%s", dp_err_detail());
}

Test(ina3221, unreadable_rail_at_open_and_during_a_window)
{
    nano_tree();
    char path[1024];
    snprintf(path, sizeof path, "%s" NANO "/in_power0_input", root);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkdir(path, 0755), 0);
    measure_probe_opts_t o;
    opts_on_root(&o);
    o.period_s = 0.002;
    measure_probe_t *p = NULL;
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_INA3221, &o, &p), DP_ERR_IO);
    cr_expect(strstr(dp_err_detail(), path) && strstr(dp_err_detail(), "is a directory"), "%s",
              dp_err_detail());
    cr_assert_eq(rmdir(path), 0);
    put(NANO "/in_power0_input", "4000");
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_INA3221, &o, &p), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(measure_probe_start(p), DP_OK);
    sleep_s(0.02);
    cr_assert_eq(unlink(path), 0); /* the rail goes away mid-window */
    sleep_s(0.05);
    dp_err_clear();
    double j = -1;
    cr_expect_eq(measure_probe_stop(p, &j, NULL), DP_ERR_NOTFOUND);
    cr_expect(strstr(dp_err_detail(), path) && strstr(dp_err_detail(), "no such file"),
              "the sampler's detail crosses threads: '%s'", dp_err_detail());
    cr_expect_eq(j, 0);
    /* and the probe can be destroyed (no window open) */
    measure_probe_destroy(&p);
}

Test(ina3221, destroy_stops_a_running_window)
{
    nano_tree();
    measure_probe_opts_t o;
    opts_on_root(&o);
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_INA3221, &o, &p), DP_OK);
    cr_assert_eq(measure_probe_start(p), DP_OK);
    cr_expect_eq(measure_probe_start(p), DP_ERR_INVALID);
    measure_probe_destroy(&p);
    cr_expect_null(p);
}

/* ------------------------------------------------------------------ NVML */

typedef void (*script_fn)(const unsigned long long *, int, int, unsigned);

static script_fn stub_script(void **lib)
{
    *lib = dlopen(NVML_STUB_PATH, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(*lib, "%s", dlerror());
    script_fn f;
    *(void **)(&f) = dlsym(*lib, "nvml_stub_script");
    cr_assert_not_null(f);
    return f;
}

Test(nvml, energy_from_the_stand_in_library)
{
    void *lib;
    script_fn script = stub_script(&lib);
    const unsigned long long mj[] = {1000000, 1000500, 1003000, 1003100};
    script(mj, 4, 0, 1);
    measure_probe_opts_t o;
    measure_probe_opts_init(&o);
    o.nvml_path = NVML_STUB_PATH;
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_NVML, &o, &p), DP_OK, "%s", dp_err_detail());
    cr_expect(strstr(measure_probe_describe(p), "nvml: GPU 0"), "%s", measure_probe_describe(p));
    cr_assert_eq(measure_probe_start(p), DP_OK);
    double j;
    cr_assert_eq(measure_probe_stop(p, &j, NULL), DP_OK);
    cr_expect(fabs(j - 2.5) < 1e-9, "%.9f J", j);
    measure_reading_t r;
    cr_assert_eq(measure_probe_read(p, &r), DP_OK);
    cr_expect(fabs(r.joules - 3.1) < 1e-9, "cumulative since open %.9f J", r.joules);
    measure_probe_destroy(&p);
    int (*inits)(void);
    *(void **)(&inits) = dlsym(lib, "nvml_stub_inits");
    cr_expect_eq(inits(), 0, "nvmlShutdown after nvmlInit_v2");
    dlclose(lib);
}

Test(nvml, errors_name_the_library_and_the_fix)
{
    measure_probe_opts_t o;
    measure_probe_opts_init(&o);
    o.nvml_path = "/nonexistent/libnvidia-ml.so.1";
    measure_probe_t *p = NULL;
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_NVML, &o, &p), DP_ERR_NOTFOUND);
    cr_expect(strstr(dp_err_detail(), "/nonexistent/libnvidia-ml.so.1: cannot load NVML") &&
                  strstr(dp_err_detail(), "NVIDIA driver"),
              "%s", dp_err_detail());

    void *lib;
    script_fn script = stub_script(&lib);
    o.nvml_path = NVML_STUB_PATH;
    script(NULL, 0, 3 /* NVML_ERROR_NOT_SUPPORTED */, 1);
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_NVML, &o, &p), DP_ERR_UNSUPPORTED);
    cr_expect(strstr(dp_err_detail(), "Not Supported") &&
                  strstr(dp_err_detail(), "no energy counter"),
              "%s", dp_err_detail());
    o.nvml_index = 1;
    cr_expect_eq(measure_probe_open(MEASURE_PROBE_NVML, &o, &p), DP_ERR_NOTFOUND);
    cr_expect(strstr(dp_err_detail(), "no GPU of that index"), "%s", dp_err_detail());
    cr_expect_null(p);
    int (*inits)(void);
    *(void **)(&inits) = dlsym(lib, "nvml_stub_inits");
    cr_expect_eq(inits(), 0, "every failed open shuts NVML down");
    dlclose(lib);
}

/* ------------------------------------------------------------------ none */

Test(none, latency_only)
{
    measure_probe_t *p = NULL;
    cr_assert_eq(measure_probe_open(MEASURE_PROBE_NONE, NULL, &p), DP_OK);
    cr_expect_eq(measure_probe_has_energy(p), 0);
    cr_expect_str_eq(measure_probe_describe(p), "none");
    measure_energy_t e;
    cr_expect_eq(measure_energy(p, nothing, NULL, NULL, 0, &e), DP_ERR_UNSUPPORTED);
    measure_probe_destroy(&p);
    measure_probe_destroy(NULL);
    cr_expect_eq(measure_probe_parse_kind("RAPL"), MEASURE_PROBE_RAPL);
    cr_expect_eq(measure_probe_parse_kind("jetson"), MEASURE_PROBE_INA3221);
    cr_expect_eq(measure_probe_parse_kind("nvml"), MEASURE_PROBE_NVML);
    cr_expect_eq(measure_probe_parse_kind("none"), MEASURE_PROBE_NONE);
    cr_expect_eq(measure_probe_parse_kind("joulemeter"), -1);
    cr_expect_str_eq(measure_probe_kind_name(MEASURE_PROBE_INA3221), "ina3221");
}

/* --------------------------------------------------------------- latency */

/* A 2 ms spin that times itself with the measurer's clock: what
 * measure_latency reports is checked against these, not against 2 ms, so a
 * repetition stretched by preemption on a loaded machine is stretched on
 * both sides. */
typedef struct busy {
    int calls;
    double own[4096]; /* each call's own duration, seconds */
} busy_t;

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void busy_2ms(void *arg)
{
    busy_t *b = arg;
    const double t0 = now_s();
    spin_s(0.002);
    if (b->calls < 4096) b->own[b->calls] = now_s() - t0;
    b->calls++;
}

Test(latency, median_of_a_known_busy_wait)
{
    measure_opts_t o;
    measure_opts_init(&o);
    o.warmup = 3;
    o.min_reps = 20;
    o.min_time_s = 0.1;
    static busy_t b;
    measure_latency_t l;
    cr_assert_eq(measure_latency(busy_2ms, &b, &o, &l), DP_OK, "%s", dp_err_detail());
    cr_expect(l.count >= 20 && (double)l.count <= l.elapsed_s / 0.002 + 1, "%llu reps in %.3f s",
              (unsigned long long)l.count, l.elapsed_s);
    cr_assert_eq((uint64_t)b.calls, l.count + 3);
    cr_assert_leq(b.calls, 4096);
    /* the timed repetitions are the calls after the warm-up: each timed
       value is the call's own duration plus the timer's overhead, which is
       well under 50 us (bench_measure: ~0.4 us); a preemption inside the
       spin lengthens both alike */
    double *own = b.own + 3;
    const size_t n = (size_t)l.count;
    qsort(own, n, sizeof *own, cmp_double);
    const double own_min = own[0], own_med = own[measure_nearest_rank(n, 0.5) - 1];
    cr_expect(own_min >= 0.002, "the spin took %.6f s", own_min);
    cr_expect(l.min_s > own_min - 1e-7 && l.min_s < own_min + 50e-6,
              "min %.6f s, the calls' %.6f s", l.min_s, own_min);
    cr_expect(l.median_s > own_med - 1e-7 && l.median_s < own_med + 50e-6,
              "median %.6f s, the calls' %.6f s", l.median_s, own_med);
    cr_expect(l.min_s <= l.q1_s && l.q1_s <= l.median_s && l.median_s <= l.q3_s &&
                  l.q3_s <= l.max_s,
              "%g %g %g %g %g", l.min_s, l.q1_s, l.median_s, l.q3_s, l.max_s);
    cr_expect(fabs(l.iqr_s - (l.q3_s - l.q1_s)) < 1e-15);
    cr_expect(l.mad_s >= 0 && l.mad_s <= l.max_s - l.min_s, "MAD %.6f", l.mad_s);
    cr_expect_geq(l.elapsed_s, 0.1);
    cr_expect_eq(l.env.pinned_cpu, -1);
}

Test(latency, count_bounds)
{
    measure_opts_t o;
    measure_opts_init(&o);
    measure_latency_t l;
    o.min_time_s = 0;
    o.min_reps = 7;
    cr_assert_eq(measure_latency(nothing, NULL, &o, &l), DP_OK);
    cr_expect_eq(l.count, 7);
    o.min_time_s = 60; /* the maximum count wins over the minimum time */
    o.max_reps = 3000;
    cr_assert_eq(measure_latency(nothing, NULL, &o, &l), DP_OK);
    cr_expect_eq(l.count, 3000);
    o.min_reps = 3001;
    cr_expect_eq(measure_latency(nothing, NULL, &o, &l), DP_ERR_INVALID);
    o.max_reps = 0;
    cr_expect_eq(measure_latency(nothing, NULL, &o, &l), DP_ERR_INVALID);
}

static void where(void *arg) { *(int *)arg = sched_getcpu(); }

Test(latency, pinning_is_restored)
{
    cpu_set_t before, after;
    cr_assert_eq(sched_getaffinity(0, sizeof before, &before), 0);
    int cpu = -1; /* the last allowed CPU */
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &before)) cpu = c;
    measure_opts_t o;
    measure_opts_init(&o);
    o.pin_cpu = cpu;
    o.min_time_s = 0.01;
    int ran_on = -2;
    measure_latency_t l;
    cr_assert_eq(measure_latency(where, &ran_on, &o, &l), DP_OK, "%s", dp_err_detail());
    cr_expect_eq(ran_on, cpu);
    cr_expect_eq(l.env.pinned_cpu, cpu);
    cr_assert_eq(sched_getaffinity(0, sizeof after, &after), 0);
    cr_expect(CPU_EQUAL(&before, &after), "affinity restored");

    int bad = -1;
    for (int c = 0; c < CPU_SETSIZE && bad < 0; c++)
        if (!CPU_ISSET(c, &before)) bad = c;
    o.pin_cpu = bad;
    cr_expect_eq(measure_latency(where, &ran_on, &o, &l), DP_ERR_INVALID);
    cr_expect(strstr(dp_err_detail(), "may not run on CPU"), "%s", dp_err_detail());
    cr_assert_eq(sched_getaffinity(0, sizeof after, &after), 0);
    cr_expect(CPU_EQUAL(&before, &after));
}

TestSuite(env, .init = make_root, .fini = drop_root);

Test(env, governor_and_load_warnings)
{
    put("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "powersave");
    put("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "performance");
    put("/sys/devices/system/cpu/cpufreq/policy0/scaling_governor", "powersave");
    put("/proc/loadavg", "3.50 2.00 1.00 2/300 1234");
    measure_env_t e;
    measure_env_read(root, -1, 0, &e);
    cr_expect_str_eq(e.governor, "mixed");
    cr_expect(fabs(e.loadavg1 - 3.5) < 1e-12);
    cr_assert_eq(e.n_warnings, 2);
    cr_expect(strstr(e.warnings[0], "'powersave' on cpu0, not 'performance'"), "%s", e.warnings[0]);
    cr_expect(strstr(e.warnings[1], "load average 3.50 is above 1.50"), "%s", e.warnings[1]);

    measure_env_read(root, 1, 4.0, &e); /* the pinned CPU only; a higher load bar */
    cr_expect_str_eq(e.governor, "performance");
    cr_expect_eq(e.n_warnings, 0, "%s", e.warnings[0]);

    /* through the protocol, with the root in the options */
    measure_opts_t o;
    measure_opts_init(&o);
    o.root = root;
    o.min_time_s = 0;
    measure_latency_t l;
    cr_assert_eq(measure_latency(nothing, NULL, &o, &l), DP_OK);
    cr_expect_eq(l.env.n_warnings, 2);
}

Test(env, absent_files_are_unknown_not_warnings)
{
    measure_env_t e;
    measure_env_read(root, -1, 0, &e);
    cr_expect_str_eq(e.governor, "");
    cr_expect_eq(e.loadavg1, -1);
    cr_expect_eq(e.n_warnings, 0);
}

Test(interleave, pairs_adjacent_shuffled_and_reproducible)
{
    enum { N = 200 };
    measure_slot_t a[2 * N], b[2 * N], c[2 * N];
    cr_assert_eq(measure_interleave(N, 2, 42, a), DP_OK);
    cr_assert_eq(measure_interleave(N, 2, 42, b), DP_OK);
    cr_assert_eq(measure_interleave(N, 2, 43, c), DP_OK);
    cr_expect(memcmp(a, b, sizeof a) == 0, "same seed, same order");
    cr_expect(memcmp(a, c, sizeof a) != 0, "another seed, another order");
    int seen[N][2] = {{0}}, seed_first = 0, in_place = 0;
    for (int i = 0; i < N; i++) {
        measure_slot_t x = a[2 * i], y = a[2 * i + 1];
        cr_assert_eq(x.input, y.input, "a seed and its input are adjacent");
        cr_assert(x.which != y.which && x.which < 2 && y.which < 2);
        seen[x.input][x.which]++;
        seen[y.input][y.which]++;
        seed_first += x.which == 0;
        in_place += x.input == (uint32_t)i;
    }
    for (int i = 0; i < N; i++) cr_expect(seen[i][0] == 1 && seen[i][1] == 1, "input %d", i);
    cr_expect(seed_first > N / 2 - 40 && seed_first < N / 2 + 40, "seed first %d of %d", seed_first,
              N);
    cr_expect_lt(in_place, 20, "inputs shuffled");
    measure_slot_t d[3 * 5];
    cr_assert_eq(measure_interleave(5, 3, 1, d), DP_OK);
    int count[5][3] = {{0}};
    for (int i = 0; i < 15; i++) count[d[i].input][d[i].which]++;
    for (int i = 0; i < 5; i++)
        for (int w = 0; w < 3; w++) cr_expect_eq(count[i][w], 1);
    cr_expect_eq(measure_interleave(5, 0, 1, d), DP_ERR_INVALID);
}

/* ------------------------------------------------------------ statistics */

Test(stats, nearest_rank)
{
    cr_expect_eq(measure_nearest_rank(10, 0.9), 9);
    cr_expect_eq(measure_nearest_rank(10, 0.5), 5);
    cr_expect_eq(measure_nearest_rank(10, 0.99), 10);
    cr_expect_eq(measure_nearest_rank(100, 0.07), 7);
    cr_expect_eq(measure_nearest_rank(100, 0.29), 29);
    cr_expect_eq(measure_nearest_rank(1, 0.5), 1);
    cr_expect_eq(measure_nearest_rank(3, 0.01), 1);
    cr_expect_eq(measure_nearest_rank(0, 0.5), 0);
}

/* From tests/measure/ref_bound.py (exact rational arithmetic). */
static const struct {
    uint64_t n;
    double p, conf;
    uint64_t rank;
} bounds[] = {
    {10, 0.9, 0.99, 0},      {44, 0.9, 0.99, 44},    {43, 0.9, 0.99, 0},
    {100, 0.9, 0.99, 97},    {100, 0.9, 0.95, 96},   {100, 0.99, 0.99, 0},
    {458, 0.99, 0.99, 0},    {459, 0.99, 0.99, 459}, {1000, 0.9, 0.99, 922},
    {1000, 0.99, 0.99, 998}, {1000, 0.5, 0.95, 527}, {5000, 0.99, 0.99, 4967},
};
static const struct {
    uint64_t k, n;
    double p, cdf;
} cdfs[] = {
    {5, 20, 0.3, 0.41637082944748138},      {0, 10, 0.5, 0.0009765625},
    {89, 100, 0.9, 0.41684448773350818},    {95, 100, 0.9, 0.97628891733652323},
    {990, 1000, 0.99, 0.54269940782510917}, {3, 7, 0.25, 0.929443359375},
};

Test(stats, binomial_cdf_and_upper_rank_against_python)
{
    for (size_t i = 0; i < sizeof cdfs / sizeof cdfs[0]; i++) {
        double got = measure_binomial_cdf(cdfs[i].k, cdfs[i].n, cdfs[i].p);
        cr_expect(fabs(got - cdfs[i].cdf) < 1e-10, "cdf(%llu; %llu, %g) = %.17g, want %.17g",
                  (unsigned long long)cdfs[i].k, (unsigned long long)cdfs[i].n, cdfs[i].p, got,
                  cdfs[i].cdf);
    }
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        uint64_t r = 99;
        dp_err_t err = measure_upper_rank(bounds[i].n, bounds[i].p, bounds[i].conf, &r);
        cr_expect_eq(r, bounds[i].rank, "n %llu p %g conf %g: rank %llu, want %llu",
                     (unsigned long long)bounds[i].n, bounds[i].p, bounds[i].conf,
                     (unsigned long long)r, (unsigned long long)bounds[i].rank);
        cr_expect_eq(err, bounds[i].rank ? DP_OK : DP_ERR_RANGE);
    }
}

Test(stats, percentiles_with_counts_and_bounds)
{
    enum { N = 1000 };
    double v[N];
    for (int i = 0; i < N; i++) v[i] = (double)((i * 7919) % N + 1); /* 1..1000 shuffled */
    double keep = v[0];
    const double ps[] = {0.5, 0.9, 0.99};
    measure_percentile_t out[3];
    cr_assert_eq(measure_percentiles(v, N, ps, 3, 0.99, out), DP_OK, "%s", dp_err_detail());
    cr_expect_eq(v[0], keep, "input not modified");
    cr_expect_eq(out[0].value, 500);
    cr_expect_eq(out[1].value, 900);
    cr_expect_eq(out[2].value, 990);
    for (int j = 0; j < 3; j++) {
        cr_expect_eq(out[j].n, N);
        cr_expect_eq(out[j].rank, (uint64_t)out[j].value);
        cr_expect_eq(out[j].confidence, 0.99);
    }
    cr_expect_eq(out[1].upper_rank, 922);
    cr_expect_eq(out[1].upper, 922);
    cr_expect_eq(out[2].upper_rank, 998);
    cr_expect_eq(out[2].upper, 998);

    /* too few samples for a p99 bound: NAN, rank 0 */
    cr_assert_eq(measure_percentiles(v, 100, ps, 3, 0.99, out), DP_OK);
    cr_expect_eq(out[2].n, 100);
    cr_expect_eq(out[2].upper_rank, 0);
    cr_expect(isnan(out[2].upper));
    cr_expect_eq(out[1].upper_rank, 97);

    const double bad_p[] = {1.5};
    cr_expect_eq(measure_percentiles(v, N, bad_p, 1, 0.99, out), DP_ERR_INVALID);
    cr_expect_eq(measure_percentiles(v, 0, ps, 3, 0.99, out), DP_ERR_INVALID);
    v[3] = NAN;
    cr_expect_eq(measure_percentiles(v, N, ps, 3, 0.99, out), DP_ERR_INVALID);
}

Test(stats, pearson_and_increase)
{
    const double x[] = {1, 2, 3, 4, 5}, y[] = {2, 4, 5, 4, 5}, flat[] = {3, 3, 3, 3, 3};
    double r;
    cr_assert_eq(measure_pearson(x, y, 5, &r), DP_OK);
    cr_expect(fabs(r - sqrt(0.6)) < 1e-12, "r = %.15f, want %.15f", r, sqrt(0.6));
    cr_assert_eq(measure_pearson(x, x, 5, &r), DP_OK);
    cr_expect(fabs(r - 1) < 1e-12);
    const double neg[] = {10, 8, 6, 4, 2};
    cr_assert_eq(measure_pearson(x, neg, 5, &r), DP_OK);
    cr_expect(fabs(r + 1) < 1e-12);
    cr_expect_eq(measure_pearson(x, flat, 5, &r), DP_ERR_INVALID);
    cr_expect(strstr(dp_err_detail(), "y has no variance"), "%s", dp_err_detail());
    cr_expect_eq(measure_pearson(x, y, 1, &r), DP_ERR_INVALID);

    cr_expect(fabs(measure_increase(2.0, 3.0) - 50.0) < 1e-12);
    cr_expect(fabs(measure_increase(4.0, 3.0) + 25.0) < 1e-12);
    cr_expect(isnan(measure_increase(0, 3.0)));
}

Test(stats, spread_ratio)
{
    const double rounds[] = {0.40, 0.62, 0.41}, alike[] = {1.0, 1.0}, zero[] = {1.0, 0.0};
    cr_expect(fabs(measure_spread_ratio(rounds, 3) - 1.55) < 1e-12, "%.15f",
              measure_spread_ratio(rounds, 3));
    cr_expect_eq(measure_spread_ratio(alike, 2), 1.0);
    cr_expect_eq(measure_spread_ratio(rounds + 1, 1), 1.0);
    cr_expect(isnan(measure_spread_ratio(zero, 2)));
    cr_expect(isnan(measure_spread_ratio(rounds, 0)));
    const double inf[] = {1.0, INFINITY}, nan_[] = {NAN, 1.0};
    cr_expect(isnan(measure_spread_ratio(inf, 2)));
    cr_expect(isnan(measure_spread_ratio(nan_, 2)));
}
