/* core/perform file headers (issue 18): sample-set and generator metadata.
 * Whatever perf_samples_save or perf_gen_save writes loads back, bit for bit;
 * what a loader would refuse, the saver refuses too (the field named); and a
 * loaded set carries no NaN or infinity into the metrics. Each case is an
 * input a fuzz run or a hand-made file found. */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/safetensors.h"
#include "perform/perform.h"
#include "util/utf8.h"

static char g_path[256];

static const char *path_of(const char *name)
{
    snprintf(g_path, sizeof g_path, "%s/test_samples_meta_%d_%s", DP_BINARY_DIR, (int)getpid(),
             name);
    return g_path;
}

/* A whole sample set (1 input of 1x2x2) with the metadata of a valid one,
 * but for the (key, value) pairs of kv (up to NULL) that replace or add. */
static const char *write_set(const char *name, const char *const *kv)
{
    const char *defaults[][2] = {
        {"format", "dp.perform.samples.v1"},
        {"model", "sdn_resnet"},
        {"method", "random"},
        {"norm", "linf"},
        {"eps", "0.09"},
        {"l2_at_most", "0"},
        {"flops_full", "2000000"},
        {"seconds", "0.5"},
    };
    st_writer_t *w = st_writer_new();
    cr_assert_not_null(w);
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        cr_assert_eq(st_writer_set_metadata(w, defaults[i][0], defaults[i][1]), DP_OK);
    for (int i = 0; kv && kv[i]; i += 2)
        cr_assert_eq(st_writer_set_metadata(w, kv[i], kv[i + 1]), DP_OK, "%s", dp_err_detail());
    int64_t one = 1, img[4] = {1, 1, 2, 2}, seed = 3;
    float x[4] = {0, 0.25f, 0.5f, 1}, norm = 0.05f, psnr = 30;
    double fs = 1e6, fa = 1.5e6;
    cr_assert_eq(st_writer_add_i64(w, "seed_index", 1, &one, &seed), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "x_adv", 4, img, x), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "delta_norm", 1, &one, &norm), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "psnr", 1, &one, &psnr), DP_OK);
    cr_assert_eq(st_writer_add(w, "flops_seed", ST_F64, 1, &one, &fs), DP_OK);
    cr_assert_eq(st_writer_add(w, "flops_adv", ST_F64, 1, &one, &fa), DP_OK);
    const char *p = path_of(name);
    cr_assert_eq(st_writer_write(w, p), DP_OK, "%s", dp_err_detail());
    st_writer_destroy(&w);
    return p;
}

#define KV(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The load of path fails with err and a detail holding needle. */
static void expect_refused(const char *path, dp_err_t err, const char *needle)
{
    perf_samples_t *s = NULL;
    cr_assert_eq(perf_samples_load(path, &s), err, "%s: %s", path, dp_err_detail());
    cr_assert_null(s);
    cr_assert(strstr(dp_err_detail(), needle), "detail '%s' lacks '%s'", dp_err_detail(), needle);
    cr_assert(strstr(dp_err_detail(), path), "detail '%s' does not name the file", dp_err_detail());
    unlink(path);
}

/* s saves, and loads back with the same header bits. */
static void expect_round_trip(const perf_samples_t *s)
{
    const char *p = path_of("rt.st");
    cr_assert_eq(perf_samples_save(s, p), DP_OK, "%s", dp_err_detail());
    perf_samples_t *t = NULL;
    cr_assert_eq(perf_samples_load(p, &t), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(t->model, s->model);
    cr_assert_eq(memcmp(&t->budget.eps, &s->budget.eps, sizeof(float)), 0);
    cr_assert_eq(memcmp(&t->flops_full, &s->flops_full, sizeof(double)), 0);
    cr_assert_eq(memcmp(&t->seconds, &s->seconds, sizeof(double)), 0);
    perf_samples_destroy(&t);
    unlink(p);
}

static perf_samples_t *valid_set(void)
{
    perf_samples_t *s = perf_samples_new(1, 1, 2, 2);
    cr_assert_not_null(s);
    s->budget = (perf_budget_t){PERF_NORM_LINF, 0.09f, 0, 0};
    s->method = PERF_METHOD_RANDOM;
    s->flops_full = 2e6, s->seconds = 0.5;
    s->flops_seed[0] = 1e6, s->flops_adv[0] = 1.5e6;
    snprintf(s->model, sizeof s->model, "sdn_resnet");
    return s;
}

/* "eps":"1e-50" is > 0 as a double and 0 as the float it becomes: it was
 * accepted, saved as "0" and that file refused. Now refused at once; the
 * saver refuses eps 0; the least float eps round-trips. */
Test(samples_meta, eps_zero_after_float_conversion)
{
    expect_refused(write_set("eps.st", KV("eps", "1e-50")), DP_ERR_FORMAT,
                   "budget eps 1e-50 (0 as a float), l2_at_most 0 out of range");
    expect_refused(write_set("eps.st", KV("eps", "-1")), DP_ERR_FORMAT,
                   "budget eps -1, l2_at_most 0 out of range");
    expect_refused(write_set("eps.st", KV("eps", "")), DP_ERR_FORMAT,
                   "not a sample set (metadata)"); /* strtod reads "" as 0 */
    perf_samples_t *s = valid_set();
    s->budget.eps = 0;
    cr_assert_eq(perf_samples_save(s, path_of("x.st")), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "not saved: budget eps 0"), "%s", dp_err_detail());
    cr_assert_neq(access(path_of("x.st"), F_OK), 0, "a refused set was written");
    s->budget.eps = 1e-45f; /* the least float > 0 (a subnormal) */
    expect_round_trip(s);
    s->budget.eps = 1e6f;
    expect_round_trip(s);
    perf_samples_destroy(&s);
    /* a double that rounds to a float > 0 loads, and its save loads again */
    perf_samples_t *t = NULL;
    cr_assert_eq(perf_samples_load(write_set("eps.st", KV("eps", "1e-40")), &t), DP_OK, "%s",
                 dp_err_detail());
    cr_assert_gt(t->budget.eps, 0);
    expect_round_trip(t);
    perf_samples_destroy(&t);
    unlink(path_of("eps.st"));
}

/* A model name of 62 ASCII bytes and a 3-byte character (65 bytes): cut to
 * 63 bytes by snprintf, inside the character; the save then failed and
 * dp-perform evaluate --json printed invalid UTF-8. The loader now refuses a
 * name that does not fit, the saver one that is not UTF-8, and the methods
 * (and dp-perform) cut names on character boundaries. */
Test(samples_meta, model_name_cut_inside_a_character)
{
    char name[80];
    memset(name, 'a', 62);
    strcpy(name + 62, "\xe2\x82\xac"); /* U+20AC */
    cr_assert_eq(strlen(name), 65);
    expect_refused(write_set("model.st", KV("model", name)), DP_ERR_FORMAT,
                   "metadata 'model' is 65 bytes, at most 63");
    perf_samples_t *s = valid_set();
    snprintf(s->model, sizeof s->model, "%.63s", name); /* the old cut: invalid UTF-8 */
    cr_assert_not(dp_utf8_valid(s->model, strlen(s->model)));
    cr_assert_eq(perf_samples_save(s, path_of("x.st")), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "not saved: model name is not UTF-8 of at most 63 bytes"),
              "%s", dp_err_detail());
    cr_assert_eq(dp_utf8_copy(s->model, sizeof s->model, name), 0, "a cut is reported");
    cr_assert_eq(strlen(s->model), 62, "cut before the character, not inside it");
    expect_round_trip(s);
    /* 60 ASCII bytes and the character: 63 bytes, fits whole */
    cr_assert_eq(dp_utf8_copy(s->model, sizeof s->model, name + 2), 1);
    cr_assert_str_eq(s->model, name + 2);
    expect_round_trip(s);
    perf_samples_destroy(&s);
}

/* "flops_full":"nan(123)" loaded, saved as "nan" (the payload lost: the
 * reload was not bit-identical) and evaluate printed "executed fraction
 * nan". A NaN, an infinity, 0 or a negative number there is refused, and so
 * in seconds (but 0); the saver refuses them too. */
Test(samples_meta, nan_and_infinite_numbers)
{
    static const struct {
        const char *key, *value, *needle;
    } bad[] = {
        {"flops_full", "nan(123)",
         "metadata 'flops_full' is 'nan(123)', expected a finite number > 0"},
        {"flops_full", "-nan", "metadata 'flops_full' is '-nan'"},
        {"flops_full", "inf", "metadata 'flops_full' is 'inf'"},
        {"flops_full", "1e999", "metadata 'flops_full' is '1e999'"},
        {"flops_full", "0", "metadata 'flops_full' is '0', expected a finite number > 0"},
        {"flops_full", "-5", "metadata 'flops_full' is '-5'"},
        {"seconds", "nan", "metadata 'seconds' is 'nan', expected a finite number >= 0"},
        {"seconds", "-infinity", "metadata 'seconds' is '-infinity'"},
        {"seconds", "-0.5", "metadata 'seconds' is '-0.5'"},
        {"l2_at_most", "nan", "l2_at_most nan out of range"},
        {"eps", "nan", "budget eps nan"},
        {"eps", "inf", "budget eps inf"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(write_set("num.st", KV(bad[i].key, bad[i].value)), DP_ERR_FORMAT,
                       bad[i].needle);
    perf_samples_t *s = valid_set();
    s->seconds = 0; /* a wall time of 0 is fine */
    expect_round_trip(s);
    s->flops_full = NAN;
    cr_assert_eq(perf_samples_save(s, path_of("x.st")), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "not saved: flops_full is nan"), "%s", dp_err_detail());
    s->flops_full = 2e6, s->seconds = INFINITY;
    cr_assert_eq(perf_samples_save(s, path_of("x.st")), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "not saved: seconds is inf"), "%s", dp_err_detail());
    s->seconds = 1, s->flops_adv[0] = -1;
    cr_assert_eq(perf_samples_save(s, path_of("x.st")), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "input 0: FLOPs 1e+06 (seed), -1 (x')"), "%s",
              dp_err_detail());
    cr_assert_neq(access(path_of("x.st"), F_OK), 0, "a refused set was written");
    perf_samples_destroy(&s);
}

/* Per-input FLOPs in the tensors: a NaN there is refused at load as well
 * (the save refuses it, so the file is patched). */
Test(samples_meta, nan_per_input_flops)
{
    perf_samples_t *s = valid_set();
    const char *p = path_of("flops.st");
    cr_assert_eq(perf_samples_save(s, p), DP_OK, "%s", dp_err_detail());
    perf_samples_destroy(&s);
    FILE *f = fopen(p, "r+b");
    cr_assert_not_null(f);
    unsigned char buf[4096];
    size_t len = fread(buf, 1, sizeof buf, f);
    cr_assert_lt(len, sizeof buf);
    double want = 1.5e6, nan_ = NAN; /* flops_adv[0], little-endian as the file */
    unsigned char *at = memmem(buf, len, &want, sizeof want);
    cr_assert_not_null(at, "flops_adv[0] not found in the file");
    cr_assert_eq(fseek(f, at - buf, SEEK_SET), 0);
    cr_assert_eq(fwrite(&nan_, sizeof nan_, 1, f), 1);
    cr_assert_eq(fclose(f), 0);
    expect_refused(p, DP_ERR_FORMAT, "input 0: FLOPs 1e+06 (seed), nan (x')");
}

/* The smallest generator the loader takes (13x13, width 1), for its files. */
static perf_gen_t *tiny_gen(void)
{
    perf_gen_config_t c = perf_gen_config_default();
    c.h = c.w = 13, c.width = 1, c.max_batch = 1, c.inference_only = 1;
    perf_gen_t *g = perf_gen_new(&c);
    cr_assert_not_null(g, "%s", dp_err_detail());
    return g;
}

/* Generator files: eps 1e-9 (the least dp-perform train --eps) becomes the
 * float 9.99999972e-10, below the double bound 1e-9, so the file saved from
 * it was refused. Bounds now apply to the floats. */
Test(samples_meta, generator_eps_checked_as_float)
{
    perf_gen_t *g = tiny_gen(), *h = NULL;
    const char *p = path_of("gen.st");
    float epss[] = {(float)1e-9, 1e6f, 0.09f};
    for (size_t i = 0; i < sizeof epss / sizeof epss[0]; i++) {
        perf_budget_t b = {PERF_NORM_L2, epss[i], 1, 0}, b2;
        cr_assert_eq(perf_gen_save(g, &b, p), DP_OK, "%s", dp_err_detail());
        cr_assert_eq(perf_gen_load(p, 1, &h, &b2), DP_OK, "eps %g: %s", epss[i], dp_err_detail());
        cr_assert_eq(memcmp(&b2.eps, &b.eps, sizeof(float)), 0);
        perf_gen_destroy(&h);
    }
    /* below the float bound: refused, naming the field */
    perf_budget_t b = {PERF_NORM_L2, 9.9e-10f, 1, 0}, b2;
    cr_assert_eq(perf_gen_save(g, &b, p), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(perf_gen_load(p, 1, &h, &b2), DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "metadata 'eps' is 9.9"), "%s", dp_err_detail());
    cr_assert_null(h);
    unlink(p);
    perf_gen_destroy(&g);
}

/* A generator's linf_scaled: absent loads as 0 (the clip, files from before
 * it), 0 and 1 load, anything else is refused naming the field. The value
 * is changed in place in the file's JSON header. */
Test(samples_meta, generator_linf_scaled_checked)
{
    perf_gen_t *g = tiny_gen(), *h = NULL;
    const char *p = path_of("gen_scaled.st");
    perf_budget_t b = {PERF_NORM_LINF, 0.03f, 1, 1}, b2;
    cr_assert_eq(perf_gen_save(g, &b, p), DP_OK, "%s", dp_err_detail());
    FILE *f = fopen(p, "r+b");
    cr_assert_not_null(f);
    enum { CAP = 1 << 20 };
    char *buf = malloc(CAP);
    cr_assert_not_null(buf);
    size_t len = fread(buf, 1, CAP, f);
    cr_assert_lt(len, CAP);
    char *at = memmem(buf, len, "\"linf_scaled\":\"1\"", 17);
    cr_assert_not_null(at, "the header holds linf_scaled");
    long off = (long)(at - buf) + 15;
    static const struct {
        char v;
        int ok, scaled;
    } cases[] = {{'1', 1, 1}, {'0', 1, 0}, {'2', 0, 0}, {'x', 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(fseek(f, off, SEEK_SET), 0);
        cr_assert_eq(fputc(cases[i].v, f), cases[i].v);
        cr_assert_eq(fflush(f), 0);
        dp_err_t err = perf_gen_load(p, 1, &h, &b2);
        if (cases[i].ok) {
            cr_assert_eq(err, DP_OK, "'%c': %s", cases[i].v, dp_err_detail());
            cr_assert_eq(b2.linf_scaled, cases[i].scaled);
            perf_gen_destroy(&h);
        } else {
            cr_assert_eq(err, DP_ERR_FORMAT, "'%c'", cases[i].v);
            cr_assert(strstr(dp_err_detail(), "metadata 'linf_scaled' is not 0 or 1"), "%s",
                      dp_err_detail());
            cr_assert_null(h);
        }
    }
    cr_assert_eq(fclose(f), 0);
    free(buf);
    unlink(p);
    perf_gen_destroy(&g);
}

/* Provenance: the OpenBLAS core type and nn_gemm path a set was made with
 * round-trip; a file without them loads as "unknown"; a name that is not a
 * short printable one is refused, naming the file. */
Test(samples_meta, provenance_recorded)
{
    perf_samples_t *s = valid_set();
    snprintf(s->blas_core, sizeof s->blas_core, "Haswell");
    snprintf(s->gemm_path, sizeof s->gemm_path, "avx2");
    const char *p = path_of("prov.st");
    cr_assert_eq(perf_samples_save(s, p), DP_OK, "%s", dp_err_detail());
    perf_samples_t *t = NULL;
    cr_assert_eq(perf_samples_load(p, &t), DP_OK, "%s", dp_err_detail());
    cr_expect_str_eq(t->blas_core, "Haswell");
    cr_expect_str_eq(t->gemm_path, "avx2");
    perf_samples_destroy(&t);
    unlink(p);
    perf_samples_destroy(&s);
    p = write_set("noprov.st", NULL);
    cr_assert_eq(perf_samples_load(p, &t), DP_OK, "%s", dp_err_detail());
    cr_expect_str_eq(t->blas_core, "unknown");
    cr_expect_str_eq(t->gemm_path, "unknown");
    perf_samples_destroy(&t);
    unlink(p);
    expect_refused(write_set("badprov.st", KV("blas_core", "Has well")), DP_ERR_FORMAT,
                   "blas_core");
    expect_refused(write_set("longprov.st", KV("gemm_path", "avx512-and-then-some-more")),
                   DP_ERR_FORMAT, "gemm_path");
}
