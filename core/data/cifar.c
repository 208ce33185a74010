/* CIFAR-10 / CIFAR-100 binary batches: fixed-size records, no header.
 * A record is the label byte(s) then 3072 pixel bytes, already laid out as
 * R, G, B planes of 32x32, i.e. CHW. The file size alone gives the record
 * count, so every file is sized and checked before the dataset is allocated,
 * then read one block of records at a time straight into place. */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_PIXELS 3072u
#define CIFAR_BLOCK  1024u /* records per read */

static size_t cifar_record(int cifar100) { return (cifar100 ? 2u : 1u) + CIFAR_PIXELS; }

/* Checks a byte size and gives the record count. */
static dp_err_t cifar_count(const char *name, uint64_t len, int cifar100, uint32_t *n)
{
    size_t rec = cifar_record(cifar100);
    if (len == 0) return dp_err_set(DP_ERR_FORMAT, "%s: size: empty file", name);
    if (len % rec)
        return dp_err_set(DP_ERR_FORMAT,
                          "%s: size: %llu bytes is not a multiple of the %zu-byte %s record", name,
                          (unsigned long long)len, rec, cifar100 ? "CIFAR-100" : "CIFAR-10");
    if (len / rec > DP_DATA_MAX_ELEMS / CIFAR_PIXELS)
        return dp_err_set(DP_ERR_RANGE, "%s: size: %llu records exceed the bound", name,
                          (unsigned long long)(len / rec));
    *n = (uint32_t)(len / rec);
    return DP_OK;
}

/* Decodes nrec records from buf into samples [at, at + nrec) of d; first is
 * the index of buf's first record within its file, for error messages. */
static dp_err_t cifar_fill(const char *name, const uint8_t *buf, uint32_t nrec, int cifar100,
                           dp_dataset_t *d, uint32_t at, uint32_t first)
{
    size_t rec = cifar_record(cifar100);
    for (uint32_t i = 0; i < nrec; i++) {
        const uint8_t *r = buf + i * rec;
        if (cifar100 && r[0] >= 20)
            return dp_err_set(DP_ERR_RANGE, "%s: coarse label[record %u]: %u is not below 20", name,
                              first + i, r[0]);
        uint8_t label = r[cifar100 ? 1 : 0];
        if (label >= d->num_classes)
            return dp_err_set(DP_ERR_RANGE, "%s: %slabel[record %u]: %u is not below %u", name,
                              cifar100 ? "fine " : "", first + i, label, d->num_classes);
        d->labels[at + i] = label;
        float *px = d->images + (size_t)(at + i) * CIFAR_PIXELS;
        const uint8_t *src = r + rec - CIFAR_PIXELS;
        for (unsigned k = 0; k < CIFAR_PIXELS; k++) px[k] = (float)src[k] / 255.0f;
    }
    return DP_OK;
}

dp_err_t dp_dataset_decode_cifar(const uint8_t *buf, size_t len, int cifar100,
                                 const char *name_for_errors, dp_dataset_t **out)
{
    if (!out) return dp_err_set(DP_ERR_INVALID, "cifar: out is NULL");
    *out = NULL;
    const char *name = name_for_errors ? name_for_errors : "<memory>";
    if (!buf && len) return dp_err_set(DP_ERR_INVALID, "%s: buffer is NULL", name);
    uint32_t n = 0;
    dp_dataset_t *d = NULL;
    dp_err_t e = cifar_count(name, len, cifar100, &n);
    if (e) return e;
    if ((e = dp_dataset_new(n, 3, 32, 32, cifar100 ? 100 : 10, &d))) return e;
    if ((e = cifar_fill(name, buf, n, cifar100, d, 0, 0))) {
        dp_dataset_destroy(&d);
        return e;
    }
    *out = d;
    return DP_OK;
}

static dp_err_t cifar_open(const char *path, FILE **f, uint64_t *len)
{
    *f = fopen(path, "rb");
    if (!*f)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: open: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fileno(*f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(*f);
        *f = NULL;
        return dp_err_set(DP_ERR_IO, "%s: open: not a regular file", path);
    }
    *len = (uint64_t)st.st_size;
    return DP_OK;
}

/* Reads all n records of an open file into samples [at, at + n) of d. */
static dp_err_t cifar_read(const char *path, FILE *f, uint32_t n, int cifar100, dp_dataset_t *d,
                           uint32_t at, uint8_t *block)
{
    size_t rec = cifar_record(cifar100);
    for (uint32_t done = 0; done < n;) {
        uint32_t k = n - done < CIFAR_BLOCK ? n - done : CIFAR_BLOCK;
        size_t got = fread(block, 1, k * rec, f);
        if (got < k * rec) {
            if (ferror(f)) return dp_err_set(DP_ERR_IO, "%s: read: %s", path, strerror(errno));
            return dp_err_set(DP_ERR_TRUNCATED, "%s: body: expected %llu bytes, got %llu", path,
                              (unsigned long long)n * rec, (unsigned long long)done * rec + got);
        }
        dp_err_t e = cifar_fill(path, block, k, cifar100, d, at + done, done);
        if (e) return e;
        done += k;
    }
    if (fgetc(f) != EOF)
        return dp_err_set(DP_ERR_FORMAT, "%s: trailing: file grew past %llu bytes while read", path,
                          (unsigned long long)n * rec);
    return DP_OK;
}

dp_err_t dp_dataset_load_cifar(const char *const *paths, int npaths, int cifar100,
                               dp_dataset_t **out)
{
    if (!out) return dp_err_set(DP_ERR_INVALID, "cifar: out is NULL");
    *out = NULL;
    if (!paths || npaths <= 0) return dp_err_set(DP_ERR_INVALID, "cifar: no paths");
    for (int i = 0; i < npaths; i++)
        if (!paths[i]) return dp_err_set(DP_ERR_INVALID, "cifar: paths[%d] is NULL", i);

    uint32_t *counts = calloc((size_t)npaths, sizeof *counts);
    uint8_t *block = malloc(CIFAR_BLOCK * cifar_record(cifar100));
    dp_dataset_t *d = NULL;
    FILE *f = NULL;
    uint64_t total = 0, len;
    dp_err_t e;
    if (!counts || !block) {
        e = dp_err_set(DP_ERR_NOMEM, "cifar: cannot allocate read buffers");
        goto fail;
    }
    for (int i = 0; i < npaths; i++) { /* size every file before allocating */
        if ((e = cifar_open(paths[i], &f, &len))) goto fail;
        fclose(f);
        f = NULL;
        if ((e = cifar_count(paths[i], len, cifar100, &counts[i]))) goto fail;
        total += counts[i];
    }
    if (total > DP_DATA_MAX_ELEMS / CIFAR_PIXELS) {
        e = dp_err_set(DP_ERR_RANGE, "cifar: %llu records in %d files exceed the bound",
                       (unsigned long long)total, npaths);
        goto fail;
    }
    if ((e = dp_dataset_new((uint32_t)total, 3, 32, 32, cifar100 ? 100 : 10, &d))) goto fail;
    uint32_t at = 0;
    for (int i = 0; i < npaths; i++) {
        if ((e = cifar_open(paths[i], &f, &len))) goto fail;
        if (len != (uint64_t)counts[i] * cifar_record(cifar100)) {
            e = dp_err_set(DP_ERR_IO, "%s: size: changed from %llu to %llu bytes while loading",
                           paths[i], (unsigned long long)counts[i] * cifar_record(cifar100),
                           (unsigned long long)len);
            goto fail;
        }
        if ((e = cifar_read(paths[i], f, counts[i], cifar100, d, at, block))) goto fail;
        fclose(f);
        f = NULL;
        at += counts[i];
    }
    free(counts);
    free(block);
    *out = d;
    return DP_OK;
fail:
    if (f) fclose(f);
    free(counts);
    free(block);
    dp_dataset_destroy(&d);
    return e;
}
