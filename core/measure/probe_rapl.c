/* powercap/RAPL: ROOT/sys/class/powercap/intel-rapl:N (packages) and
 * intel-rapl:N:M (their subdomains: "core", "uncore", "dram"), each with
 * `name`, `energy_uj` (cumulative microjoules) and `max_energy_range_uj`
 * (where energy_uj wraps to 0). The kernel lists every zone at the top of
 * /sys/class/powercap; the subdomains are also directories of their package,
 * which is where they are looked for when the top level lacks them.
 *
 * Every read folds each domain's wrap into a 64-bit running total: a
 * reading below the previous one means the counter passed its maximum, so
 * the step is (max - prev) + now. One wrap between two reads is seen; the
 * windows read often enough for that (probe.c). Since Linux 5.10 energy_uj
 * is readable by root only (CVE-2020-8694): the error says how to grant it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure/measure_impl.h"
#include "measure/probe.h"

#define RAPL_MAX_DOMAINS 32
#define RAPL_PATH        4096

typedef struct rapl_domain {
    char zone[64]; /* "intel-rapl:0:1" */
    char name[64]; /* "dram" */
    char energy[RAPL_PATH];
    uint64_t max_uj;
    uint64_t last_uj;
    uint64_t total_uj;
} rapl_domain_t;

typedef struct rapl {
    int n;
    rapl_domain_t d[RAPL_MAX_DOMAINS];
} rapl_t;

typedef struct zone {
    char name[64];
    char dir[RAPL_PATH];
} zone_t;

static int is_rapl_zone(const char *name)
{
    unsigned a, b;
    char tail;
    if (sscanf(name, "intel-rapl:%u:%u%c", &a, &b, &tail) == 2) return 2;
    if (sscanf(name, "intel-rapl:%u%c", &a, &tail) == 1) return 1;
    return 0;
}

static int zone_cmp(const void *x, const void *y)
{
    return strcmp(((const zone_t *)x)->name, ((const zone_t *)y)->name);
}

/* Zones of dir (and, for packages, their subdirectories), deduplicated by name. */
static void scan_zones(const char *dir, zone_t *z, int *n, int cap, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int kind = is_rapl_zone(de->d_name);
        if (!kind) continue;
        int dup = 0;
        for (int i = 0; i < *n && !dup; i++) dup = strcmp(z[i].name, de->d_name) == 0;
        if (!dup && *n < cap) {
            int a = snprintf(z[*n].name, sizeof z[*n].name, "%s", de->d_name);
            int b = snprintf(z[*n].dir, sizeof z[*n].dir, "%s/%s", dir, de->d_name);
            if (a > 0 && (size_t)a < sizeof z[*n].name && b > 0 && (size_t)b < sizeof z[*n].dir)
                (*n)++;
        }
        if (kind == 1 && depth == 0) {
            char sub[RAPL_PATH];
            snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
            scan_zones(sub, z, n, cap, 1);
        }
    }
    closedir(d);
}

/* "package" matches "package" and "package-0"; comma-separated list. */
static int wanted(const char *list, const char *name)
{
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        size_t len = strcspn(p, ", ");
        if (len && (strncmp(name, p, len) == 0 && (name[len] == '\0' || name[len] == '-')))
            return 1;
        p += len;
    }
    return 0;
}

static void perm_hint(char *buf, size_t cap, const char *path)
{
    snprintf(buf, cap,
             "energy_uj is readable by root only since Linux 5.10; run `sudo chmod o+r %s` "
             "(until reboot), run the measurer as root, or install the udev rule or "
             "tmpfiles line of docs/MEASURE.md",
             path);
}

static dp_err_t read_domain(rapl_domain_t *d, uint64_t *uj)
{
    char hint[RAPL_PATH + 256];
    int64_t v;
    perm_hint(hint, sizeof hint, d->energy);
    dp_err_t err = msr_read_i64(d->energy, &v, hint);
    if (err) return err;
    if (v < 0)
        return dp_err_set(DP_ERR_FORMAT, "%s: negative energy %lld", d->energy, (long long)v);
    *uj = (uint64_t)v;
    return DP_OK;
}

static dp_err_t rapl_read_energy(void *impl, double *joules)
{
    rapl_t *r = impl;
    uint64_t sum = 0;
    for (int i = 0; i < r->n; i++) {
        rapl_domain_t *d = &r->d[i];
        uint64_t now;
        dp_err_t err = read_domain(d, &now);
        if (err) return err;
        uint64_t step = now >= d->last_uj
                            ? now - d->last_uj
                            : (d->max_uj > d->last_uj ? d->max_uj - d->last_uj : 0) + now;
        d->total_uj += step;
        d->last_uj = now;
        sum += d->total_uj;
    }
    *joules = (double)sum * 1e-6;
    return DP_OK;
}

static void rapl_destroy(void *impl) { free(impl); }

dp_err_t msr_rapl_open(const measure_probe_opts_t *o, msr_backend_t *b)
{
    char dir[RAPL_PATH];
    dp_err_t err = msr_path(dir, sizeof dir, o->root, "/sys/class/powercap");
    if (err) return err;
    DIR *probe = opendir(dir);
    if (!probe)
        return dp_err_set(DP_ERR_NOTFOUND,
                          "%s: no such directory: no powercap driver (modprobe intel_rapl_msr; "
                          "AMD CPUs need Linux 5.8+; ARM boards have no RAPL): use another probe "
                          "or none",
                          dir);
    closedir(probe);
    zone_t *z = calloc(RAPL_MAX_DOMAINS * 2, sizeof *z);
    rapl_t *r = calloc(1, sizeof *r);
    if (!z || !r) {
        free(z);
        free(r);
        return dp_err_set(DP_ERR_NOMEM, "rapl");
    }
    int nz = 0;
    scan_zones(dir, z, &nz, RAPL_MAX_DOMAINS * 2, 0);
    qsort(z, (size_t)nz, sizeof *z, zone_cmp);
    char found[512] = "";
    size_t flen = 0;
    for (int i = 0; i < nz; i++) {
        char path[RAPL_PATH + 16], name[64];
        snprintf(path, sizeof path, "%s/name", z[i].dir);
        if (msr_read_str(path, name, sizeof name, NULL) != DP_OK) continue;
        if (flen + strlen(name) + 3 < sizeof found)
            flen +=
                (size_t)snprintf(found + flen, sizeof found - flen, "%s%s", flen ? ", " : "", name);
        if (!wanted(o->rapl_domains, name) || r->n == RAPL_MAX_DOMAINS) continue;
        rapl_domain_t *d = &r->d[r->n];
        snprintf(d->zone, sizeof d->zone, "%s", z[i].name);
        snprintf(d->name, sizeof d->name, "%s", name);
        snprintf(d->energy, sizeof d->energy, "%s/energy_uj", z[i].dir);
        int64_t max;
        snprintf(path, sizeof path, "%s/max_energy_range_uj", z[i].dir);
        if ((err = msr_read_i64(path, &max, NULL))) goto fail;
        if (max <= 0) {
            err = dp_err_set(DP_ERR_FORMAT, "%s: range %lld is not positive", path, (long long)max);
            goto fail;
        }
        d->max_uj = (uint64_t)max;
        if ((err = read_domain(d, &d->last_uj))) goto fail;
        r->n++;
    }
    dp_err_clear();
    if (r->n == 0) {
        err = dp_err_set(DP_ERR_NOTFOUND,
                         "%s: no RAPL domain named %s (found: %s); set the domains to some of "
                         "those",
                         dir, o->rapl_domains, found[0] ? found : "none");
        goto fail;
    }
    size_t len = (size_t)snprintf(b->desc, sizeof b->desc, "rapl:");
    for (int i = 0; i < r->n && len < sizeof b->desc; i++)
        len += (size_t)snprintf(b->desc + len, sizeof b->desc - len, "%s %s (%s)", i ? "," : "",
                                r->d[i].name, r->d[i].zone);
    free(z);
    b->impl = r;
    b->read_energy = rapl_read_energy;
    b->destroy = rapl_destroy;
    return DP_OK;
fail:
    free(z);
    free(r);
    return err;
}
