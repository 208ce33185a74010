/* Jetson INA3221 power monitors: three rails per chip, one or two chips per
 * board, found by the rail's label.
 *
 * - Older JetPack (4.x: Nano, TX2, Xavier), the ina3221x IIO driver:
 *   ROOT/sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:deviceN/ with
 *   rail_name_K (label) and in_powerK_input (mW), K = 0, 1, 2.
 * - Newer JetPack (5+: Orin), the mainline ina3221 hwmon driver:
 *   ROOT/sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmonN/ with
 *   inK_label (label), inK_input (bus mV) and currK_input (mA), K = 1, 2, 3.
 *
 * The board's total is one rail ("VDD_IN" on Orin and Xavier NX,
 * "POM_5V_IN" on Nano) or a sum of rails ("GPU+CPU+SOC"); the options list
 * alternatives and the first whose rails all exist wins. These are power
 * sensors: probe.c samples read_power on its thread and integrates. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "measure/measure_impl.h"
#include "measure/probe.h"

#define INA_MAX_RAILS 32
#define INA_PATH      4096

typedef struct rail {
    char label[64];
    int hwmon;             /* 0: IIO (mW in a), 1: hwmon (mV in a, mA in b) */
    char a[INA_PATH + 64]; /* in_powerK_input or inK_input */
    char b[INA_PATH + 64]; /* currK_input */
} rail_t;

typedef struct ina {
    int n;
    rail_t r[INA_MAX_RAILS]; /* found */
    int nsel;
    int sel[INA_MAX_RAILS]; /* chosen, summed */
} ina_t;

static const char ina_hint[] = "the INA3221 files are normally world-readable: run the "
                               "measurer as root or `sudo chmod o+r` the file";

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Calls fn(dir/entry) for each entry of dir whose name starts with prefix. */
static void each_entry(const char *dir, const char *prefix, void (*fn)(const char *, ina_t *),
                       ina_t *ina)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !starts_with(de->d_name, prefix)) continue;
        char path[INA_PATH];
        int n = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (n > 0 && (size_t)n < sizeof path) fn(path, ina);
    }
    closedir(d);
}

static void add_iio_device(const char *dev, ina_t *ina)
{
    for (int k = 0; k < 3 && ina->n < INA_MAX_RAILS; k++) {
        rail_t *r = &ina->r[ina->n];
        char path[INA_PATH + 64];
        snprintf(path, sizeof path, "%s/rail_name_%d", dev, k);
        if (msr_read_str(path, r->label, sizeof r->label, NULL) != DP_OK || !r->label[0]) continue;
        r->hwmon = 0;
        snprintf(r->a, sizeof r->a, "%s/in_power%d_input", dev, k);
        ina->n++;
    }
}

static void add_iio_chip(const char *chip, ina_t *ina)
{
    each_entry(chip, "iio:device", add_iio_device, ina);
}

static void add_hwmon(const char *hw, ina_t *ina)
{
    for (int k = 1; k <= 3 && ina->n < INA_MAX_RAILS; k++) {
        rail_t *r = &ina->r[ina->n];
        char path[INA_PATH + 64];
        snprintf(path, sizeof path, "%s/in%d_label", hw, k);
        if (msr_read_str(path, r->label, sizeof r->label, NULL) != DP_OK || !r->label[0]) continue;
        r->hwmon = 1;
        snprintf(r->a, sizeof r->a, "%s/in%d_input", hw, k);
        snprintf(r->b, sizeof r->b, "%s/curr%d_input", hw, k);
        ina->n++;
    }
}

static void add_hwmon_chip(const char *chip, ina_t *ina)
{
    char dir[INA_PATH + 8];
    snprintf(dir, sizeof dir, "%s/hwmon", chip);
    each_entry(dir, "hwmon", add_hwmon, ina);
}

static dp_err_t rail_power(const rail_t *r, double *w)
{
    int64_t a, b;
    dp_err_t err = msr_read_i64(r->a, &a, ina_hint);
    if (err) return err;
    if (!r->hwmon) {
        *w = (double)a * 1e-3;
        return DP_OK;
    }
    if ((err = msr_read_i64(r->b, &b, ina_hint))) return err;
    *w = (double)a * (double)b * 1e-6;
    return DP_OK;
}

static dp_err_t ina_read_power(void *impl, double *watts)
{
    ina_t *ina = impl;
    double sum = 0;
    for (int i = 0; i < ina->nsel; i++) {
        double w;
        dp_err_t err = rail_power(&ina->r[ina->sel[i]], &w);
        if (err) return err;
        sum += w;
    }
    *watts = sum;
    return DP_OK;
}

static void ina_destroy(void *impl) { free(impl); }

static int find_rail(const ina_t *ina, const char *label, size_t len)
{
    for (int i = 0; i < ina->n; i++)
        if (strlen(ina->r[i].label) == len && strncasecmp(ina->r[i].label, label, len) == 0)
            return i;
    return -1;
}

/* Chooses the first alternative of spec ("A,B+C") whose rails all exist. */
static int choose(ina_t *ina, const char *spec)
{
    const char *p = spec;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        size_t alt = strcspn(p, ",");
        ina->nsel = 0;
        int ok = alt > 0;
        for (const char *q = p; ok && q < p + alt;) {
            while (q < p + alt && (*q == '+' || *q == ' ')) q++;
            size_t len = 0;
            while (q + len < p + alt && q[len] != '+' && q[len] != ' ') len++;
            if (!len) break;
            int i = find_rail(ina, q, len);
            if (i < 0 || ina->nsel == INA_MAX_RAILS)
                ok = 0;
            else
                ina->sel[ina->nsel++] = i;
            q += len;
        }
        if (ok && ina->nsel > 0) return 1;
        p += alt;
    }
    ina->nsel = 0;
    return 0;
}

dp_err_t msr_ina3221_open(const measure_probe_opts_t *o, msr_backend_t *b)
{
    char iio[INA_PATH], hw[INA_PATH];
    dp_err_t err = msr_path(iio, sizeof iio, o->root, "/sys/bus/i2c/drivers/ina3221x");
    if (!err) err = msr_path(hw, sizeof hw, o->root, "/sys/bus/i2c/drivers/ina3221");
    if (err) return err;
    ina_t *ina = calloc(1, sizeof *ina);
    if (!ina) return dp_err_set(DP_ERR_NOMEM, "ina3221");
    each_entry(iio, "", add_iio_chip, ina);
    each_entry(hw, "", add_hwmon_chip, ina);
    dp_err_clear();
    if (ina->n == 0) {
        free(ina);
        return dp_err_set(DP_ERR_NOTFOUND,
                          "no INA3221 rail under %s/*/iio:device*/rail_name_K (JetPack 4) nor "
                          "%s/*/hwmon/hwmon*/inK_label (JetPack 5+): not a Jetson, or its "
                          "ina3221 driver is not loaded",
                          iio, hw);
    }
    if (!choose(ina, o->rails)) {
        char found[512] = "";
        size_t len = 0;
        for (int i = 0; i < ina->n && len + 70 < sizeof found; i++)
            len += (size_t)snprintf(found + len, sizeof found - len, "%s%s", i ? ", " : "",
                                    ina->r[i].label);
        err = dp_err_set(DP_ERR_NOTFOUND,
                         "no INA3221 rail matches '%s' (rails found: %s); set the rails to one "
                         "of them, or a sum such as A+B",
                         o->rails, found);
        free(ina);
        return err;
    }
    double w;
    if ((err = ina_read_power(ina, &w))) {
        free(ina);
        return err;
    }
    size_t len = (size_t)snprintf(b->desc, sizeof b->desc,
                                  "ina3221 %s:", ina->r[ina->sel[0]].hwmon ? "hwmon" : "iio");
    for (int i = 0; i < ina->nsel && len < sizeof b->desc; i++) {
        const rail_t *r = &ina->r[ina->sel[i]];
        len += (size_t)snprintf(b->desc + len, sizeof b->desc - len, "%s %s (%s)", i ? " +" : "",
                                r->label, r->a);
    }
    b->impl = ina;
    b->read_power = ina_read_power;
    b->destroy = ina_destroy;
    return DP_OK;
}
