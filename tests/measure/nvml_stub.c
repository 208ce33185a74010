/* A stand-in for libnvidia-ml.so.1, built by the tests: the four NVML calls
 * the probe uses (and nvmlErrorString), returning values a test scripts
 * through nvml_stub_script() (the test dlopens the same path, so it shares
 * this state with the probe). */
#include <stddef.h>

typedef struct nvml_device *nvml_device_t;

int nvmlInit_v2(void);
int nvmlShutdown(void);
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvml_device_t *dev);
int nvmlDeviceGetTotalEnergyConsumption(nvml_device_t dev, unsigned long long *mj);
const char *nvmlErrorString(int rc);
void nvml_stub_script(const unsigned long long *mj, int n, int energy_rc, unsigned gpus);
int nvml_stub_inits(void);

static unsigned long long script[64];
static int nscript, next, rc_energy, inits;
static unsigned ngpus = 1;
static int dummy_device;

void nvml_stub_script(const unsigned long long *mj, int n, int energy_rc, unsigned gpus)
{
    nscript = n < 64 ? n : 64;
    for (int i = 0; i < nscript; i++) script[i] = mj[i];
    next = 0;
    rc_energy = energy_rc;
    ngpus = gpus;
}

int nvml_stub_inits(void) { return inits; }

int nvmlInit_v2(void)
{
    inits++;
    return 0;
}

int nvmlShutdown(void)
{
    inits--;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvml_device_t *dev)
{
    if (index >= ngpus) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *dev = (nvml_device_t)(void *)&dummy_device;
    return 0;
}

int nvmlDeviceGetTotalEnergyConsumption(nvml_device_t dev, unsigned long long *mj)
{
    if (dev != (nvml_device_t)(void *)&dummy_device) return 2;
    if (rc_energy) return rc_energy;
    if (nscript == 0) return 999;
    *mj = script[next < nscript ? next : nscript - 1];
    if (next < nscript) next++;
    return 0;
}

const char *nvmlErrorString(int rc)
{
    switch (rc) {
    case 0:
        return "Success";
    case 2:
        return "Invalid Argument";
    case 3:
        return "Not Supported";
    default:
        return "Unknown Error";
    }
}
