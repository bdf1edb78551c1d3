/* nvml.c - NVML loaded at run time (nvtop style): used/free memory of the
 * whole device (other processes included) and the PCIe link. */
#define _GNU_SOURCE
#include "nvml.h"

#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few NVML types used (values from nvml.h). */
typedef int nvmlReturn_t; /* 0 = NVML_SUCCESS */
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

static struct nvml_api {
    nvmlReturn_t (*init)(void);
    const char *(*error_string)(nvmlReturn_t r);
    nvmlReturn_t (*by_uuid)(const char *uuid, nvmlDevice_t *dev);
    nvmlReturn_t (*memory)(nvmlDevice_t dev, nvmlMemory_t *mem);
    nvmlReturn_t (*name)(nvmlDevice_t dev, char *name, unsigned len);
    nvmlReturn_t (*uuid)(nvmlDevice_t dev, char *uuid, unsigned len);
    nvmlReturn_t (*gen_current)(nvmlDevice_t dev, unsigned *gen);
    nvmlReturn_t (*gen_max)(nvmlDevice_t dev, unsigned *gen);
    nvmlReturn_t (*width_current)(nvmlDevice_t dev, unsigned *width);
    nvmlReturn_t (*width_max)(nvmlDevice_t dev, unsigned *width);
} nv;

static pthread_once_t nvml_once = PTHREAD_ONCE_INIT;
static bool nvml_ok;
static char nvml_why[256] = "NVML not loaded";

static void nvml_load(void) {
    const char *path = getenv("VRAM_NVML_LIBRARY");
    if (!path || !*path)
        path = "libnvidia-ml.so.1";
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(nvml_why, sizeof nvml_why, "%s not found", path);
        return;
    }
    static const struct {
        const char *symbol;
        bool required;
        size_t offset;
    } symbols[] = {
        {"nvmlInit_v2", true, offsetof(struct nvml_api, init)},
        {"nvmlErrorString", false, offsetof(struct nvml_api, error_string)},
        {"nvmlDeviceGetHandleByUUID", true, offsetof(struct nvml_api, by_uuid)},
        {"nvmlDeviceGetMemoryInfo", true, offsetof(struct nvml_api, memory)},
        {"nvmlDeviceGetName", false, offsetof(struct nvml_api, name)},
        {"nvmlDeviceGetUUID", false, offsetof(struct nvml_api, uuid)},
        {"nvmlDeviceGetCurrPcieLinkGeneration", false, offsetof(struct nvml_api, gen_current)},
        {"nvmlDeviceGetMaxPcieLinkGeneration", false, offsetof(struct nvml_api, gen_max)},
        {"nvmlDeviceGetCurrPcieLinkWidth", false, offsetof(struct nvml_api, width_current)},
        {"nvmlDeviceGetMaxPcieLinkWidth", false, offsetof(struct nvml_api, width_max)},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        void *p = dlsym(lib, symbols[i].symbol);
        if (!p && symbols[i].required) {
            snprintf(nvml_why, sizeof nvml_why, "%s lacks %s", path, symbols[i].symbol);
            goto fail;
        }
        /* memcpy: ISO C has no cast from void * to a function pointer. */
        memcpy((char *)&nv + symbols[i].offset, &p, sizeof p);
    }
    nvmlReturn_t r = nv.init();
    if (r != 0) {
        snprintf(nvml_why, sizeof nvml_why, "nvmlInit_v2 failed: %s (%d)",
                 nv.error_string ? nv.error_string(r) : "unknown error", r);
        goto fail;
    }
    /* NVML stays initialised for the life of the process (it counts inits,
     * so others in the process are not affected). */
    nvml_ok = true;
    return;

fail:
    memset(&nv, 0, sizeof nv);
    dlclose(lib);
}

bool vram_nvml_available(const char **why) {
    pthread_once(&nvml_once, nvml_load);
    if (why)
        *why = nvml_ok ? "" : nvml_why;
    return nvml_ok;
}

/* CUDA gives a MIG instance's UUID in the same bytes that NVML (and
 * nvidia-smi -L) spell "MIG-..." rather than "GPU-...". */
static bool find_device(const char *uuid, nvmlDevice_t *dev) {
    if (nv.by_uuid(uuid, dev) == 0 && *dev)
        return true;
    char mig[80];
    if (strncmp(uuid, "GPU-", 4) != 0 ||
        snprintf(mig, sizeof mig, "MIG-%s", uuid + 4) >= (int)sizeof mig)
        return false;
    return nv.by_uuid(mig, dev) == 0 && *dev;
}

bool vram_nvml_query_uuid(const char *uuid, vram_nvml_device *out) {
    memset(out, 0, sizeof *out);
    nvmlDevice_t dev = NULL;
    if (!uuid || !vram_nvml_available(NULL) || !find_device(uuid, &dev))
        return false;
    nvmlMemory_t mem;
    if (nv.memory(dev, &mem) == 0) {
        out->total_bytes = mem.total;
        out->used_bytes = mem.used;
        out->free_bytes = mem.free;
        out->memory_known = true;
    }
    out->name_known = nv.name && nv.name(dev, out->name, sizeof out->name) == 0;
    out->uuid_known = nv.uuid && nv.uuid(dev, out->uuid, sizeof out->uuid) == 0;
    unsigned gc = 0, gm = 0, wc = 0, wm = 0;
    if (nv.gen_current && nv.gen_max && nv.width_current && nv.width_max &&
        nv.gen_current(dev, &gc) == 0 && nv.gen_max(dev, &gm) == 0 &&
        nv.width_current(dev, &wc) == 0 && nv.width_max(dev, &wm) == 0) {
        out->pcie_gen_current = (int)gc;
        out->pcie_gen_max = (int)gm;
        out->pcie_width_current = (int)wc;
        out->pcie_width_max = (int)wm;
        out->pcie_known = true;
    }
    return true;
}
