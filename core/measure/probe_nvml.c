/* NVML: total energy of one NVIDIA GPU in millijoules since the driver
 * loaded (nvmlDeviceGetTotalEnergyConsumption, Volta and newer), a 64-bit
 * counter that does not wrap in practice. The library is loaded with dlopen
 * at run time, so building needs no NVIDIA header or library: the few types
 * and prototypes used are declared here, as NVML's ABI defines them. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure/measure_impl.h"
#include "measure/probe.h"

typedef int nvml_return_t; /* nvmlReturn_t: 0 is NVML_SUCCESS */
typedef struct nvml_device *nvml_device_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
};

typedef struct nvml {
    void *lib;
    char path[1024];
    unsigned index;
    nvml_device_t dev;
    unsigned long long first_mj;
    int inited;
    nvml_return_t (*init)(void);
    nvml_return_t (*shutdown)(void);
    nvml_return_t (*handle)(unsigned int, nvml_device_t *);
    nvml_return_t (*energy)(nvml_device_t, unsigned long long *);
    const char *(*error_string)(nvml_return_t);
} nvml_t;

static const char *nvml_text(const nvml_t *n, nvml_return_t rc)
{
    if (n->error_string) {
        const char *s = n->error_string(rc);
        if (s) return s;
    }
    switch (rc) {
    case 1:
        return "NVML not initialized";
    case NVML_ERROR_INVALID_ARGUMENT:
        return "invalid argument";
    case NVML_ERROR_NOT_SUPPORTED:
        return "not supported";
    case NVML_ERROR_NO_PERMISSION:
        return "no permission";
    case 6:
        return "not found";
    case NVML_ERROR_DRIVER_NOT_LOADED:
        return "driver not loaded";
    case 12:
        return "library not found";
    case 15:
        return "GPU is lost";
    case 18:
        return "library and driver versions differ";
    default:
        return "unknown error";
    }
}

static dp_err_t nvml_read_energy(void *impl, double *joules)
{
    nvml_t *n = impl;
    unsigned long long mj;
    nvml_return_t rc = n->energy(n->dev, &mj);
    if (rc != NVML_SUCCESS)
        return dp_err_set(DP_ERR_IO, "%s: nvmlDeviceGetTotalEnergyConsumption(GPU %u): %s (%d)",
                          n->path, n->index, nvml_text(n, rc), rc);
    *joules = (double)(mj - n->first_mj) * 1e-3;
    return DP_OK;
}

static void nvml_destroy(void *impl)
{
    nvml_t *n = impl;
    if (!n) return;
    if (n->inited) n->shutdown();
    if (n->lib) dlclose(n->lib);
    free(n);
}

#define NVML_SYM(field, name)                                                                      \
    do {                                                                                           \
        *(void **)(&n->field) = dlsym(n->lib, name);                                               \
        if (!n->field) {                                                                           \
            err = dp_err_set(DP_ERR_FORMAT,                                                        \
                             "%s: no symbol %s: not NVML, or a driver older than R410 (the "       \
                             "energy counter needs 410+); update the NVIDIA driver",               \
                             n->path, name);                                                       \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

dp_err_t msr_nvml_open(const measure_probe_opts_t *o, msr_backend_t *b)
{
    nvml_t *n = calloc(1, sizeof *n);
    if (!n) return dp_err_set(DP_ERR_NOMEM, "nvml");
    snprintf(n->path, sizeof n->path, "%s", o->nvml_path);
    n->index = o->nvml_index;
    dp_err_t err = DP_OK;
    n->lib = dlopen(n->path, RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) {
        const char *why = dlerror();
        err = dp_err_set(DP_ERR_NOTFOUND,
                         "%s: cannot load NVML (%s): it comes with the NVIDIA driver; install "
                         "the driver, or give the library's path; without an NVIDIA GPU use "
                         "the probe rapl or none",
                         n->path, why ? why : "unknown reason");
        free(n);
        return err;
    }
    *(void **)(&n->error_string) = dlsym(n->lib, "nvmlErrorString"); /* optional */
    NVML_SYM(init, "nvmlInit_v2");
    NVML_SYM(shutdown, "nvmlShutdown");
    NVML_SYM(handle, "nvmlDeviceGetHandleByIndex_v2");
    NVML_SYM(energy, "nvmlDeviceGetTotalEnergyConsumption");
    nvml_return_t rc = n->init();
    if (rc != NVML_SUCCESS) {
        err = dp_err_set(rc == NVML_ERROR_DRIVER_NOT_LOADED ? DP_ERR_NOTFOUND : DP_ERR_IO,
                         "%s: nvmlInit_v2: %s (%d)%s", n->path, nvml_text(n, rc), rc,
                         rc == NVML_ERROR_DRIVER_NOT_LOADED
                             ? ": the NVIDIA kernel driver is not loaded (nvidia-smi says why)"
                             : "");
        goto fail;
    }
    n->inited = 1;
    rc = n->handle(n->index, &n->dev);
    if (rc != NVML_SUCCESS) {
        err =
            dp_err_set(rc == NVML_ERROR_INVALID_ARGUMENT ? DP_ERR_NOTFOUND : DP_ERR_IO,
                       "%s: nvmlDeviceGetHandleByIndex_v2(%u): %s (%d)%s", n->path, n->index,
                       nvml_text(n, rc), rc,
                       rc == NVML_ERROR_INVALID_ARGUMENT ? ": no GPU of that index (nvidia-smi -L)"
                       : rc == NVML_ERROR_NO_PERMISSION
                           ? ": this user may not open the GPU (/dev/nvidia* permissions)"
                           : "");
        goto fail;
    }
    rc = n->energy(n->dev, &n->first_mj);
    if (rc != NVML_SUCCESS) {
        err = dp_err_set(rc == NVML_ERROR_NOT_SUPPORTED ? DP_ERR_UNSUPPORTED : DP_ERR_IO,
                         "%s: nvmlDeviceGetTotalEnergyConsumption(GPU %u): %s (%d)%s", n->path,
                         n->index, nvml_text(n, rc), rc,
                         rc == NVML_ERROR_NOT_SUPPORTED
                             ? ": this GPU has no energy counter (Volta or newer has); use the "
                               "probe none"
                             : "");
        goto fail;
    }
    snprintf(b->desc, sizeof b->desc, "nvml: GPU %u total energy (%.400s)", n->index, n->path);
    b->impl = n;
    b->read_energy = nvml_read_energy;
    b->destroy = nvml_destroy;
    return DP_OK;
fail:
    nvml_destroy(n);
    return err;
}
