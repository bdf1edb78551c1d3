/* fake_cuda.c - a stand-in libcuda.so.1 and libnvidia-ml.so.1 for the
 * hardware tests (built as a module; tests point VRAM_CUDA_LIBRARY and
 * VRAM_NVML_LIBRARY at it). Environment knobs:
 *   FAKE_CUDA_VERSION  driver version (default 12040)
 *   FAKE_CUDA_INIT     cuInit's result (default 0)
 *   FAKE_CUDA_DEVICES  device count (default 1); every device is an
 *                      "NVIDIA GeForce RTX 4090" with UUID bytes i, 0x11..
 *   FAKE_CUDA_CONTEXT  1: a context is current, cuMemGetInfo reports
 *                      1000 MiB in use
 *   FAKE_NVML_INIT     nvmlInit_v2's result (default 0)
 *   FAKE_NVML_MIG      1: NVML knows device 0 by a MIG- UUID (a MIG instance)
 *   FAKE_CUDA_ENGINE   1: the engine's calls work, synchronously on the
 *                      calling thread (device memory is host memory, a
 *                      copy is a memcpy, a host function runs at once),
 *                      with per-thread current contexts and primary
 *                      context references that the fake_cuda_* hooks show;
 *                      otherwise each of them fails with 801
 * Built with FAKE_CUDA_NO_V2 it exports only the CUDA 11.3 cuGetProcAddress.
 * fake_cuda_probe() reports the last ABI version and flags asked for and
 * which cuGetProcAddress form was used. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))
#define MIB (1024ull * 1024ull)
#define TOTAL (24564 * MIB)

typedef int CUresult;

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : fallback;
}

static int last_version, used_v2, last_flags;

EXPORT void fake_cuda_probe(int *version, int *v2, int *flags) {
    *version = last_version;
    *v2 = used_v2;
    *flags = last_flags;
}

EXPORT CUresult cuInit(unsigned flags) { return flags ? 1 : env_int("FAKE_CUDA_INIT", 0); }

EXPORT CUresult cuDriverGetVersion(int *v) {
    *v = env_int("FAKE_CUDA_VERSION", 12040);
    return 0;
}

static CUresult get_error_string(CUresult r, const char **s) {
    *s = r == 2 ? "out of memory" : r == 100 ? "no CUDA-capable device is detected"
                                             : "fake error";
    return 0;
}

static CUresult device_count(int *n) {
    *n = env_int("FAKE_CUDA_DEVICES", 1);
    return 0;
}

static CUresult device_get(int *dev, int ordinal) {
    if (ordinal < 0 || ordinal >= env_int("FAKE_CUDA_DEVICES", 1))
        return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *dev = ordinal;
    return 0;
}

static CUresult device_name(char *name, int len, int dev) {
    (void)dev;
    snprintf(name, (size_t)len, "NVIDIA GeForce RTX 4090");
    return 0;
}

static void fake_uuid(int dev, unsigned char b[16]) {
    for (int i = 0; i < 16; i++)
        b[i] = (unsigned char)(0x11 * i);
    b[0] = (unsigned char)(0xa0 + dev);
}

static CUresult device_uuid(void *uuid, int dev) {
    fake_uuid(dev, uuid);
    return 0;
}

static CUresult device_total(size_t *bytes, int dev) {
    (void)dev;
    *bytes = TOTAL;
    return 0;
}

static CUresult device_attribute(int *v, int attr, int dev) {
    (void)dev;
    switch (attr) {
    case 16: *v = 128; return 0;
    case 75: *v = 8; return 0;
    case 76: *v = 9; return 0;
    default: return 1;
    }
}

/* Contexts: each device's primary one, and the one FAKE_CUDA_CONTEXT makes
 * current on a thread that set none (a runtime's, as the probe meets it). */
#define MAX_DEVICES 8
typedef struct fake_ctx {
    int dev, refs; /* dev -1: the runtime's */
} fake_ctx;
static fake_ctx primary[MAX_DEVICES], runtime_ctx = {-1, 1};
static _Thread_local fake_ctx *current;
static _Thread_local int current_set;
static int calls_without_context;

static fake_ctx *thread_ctx(void) {
    if (!current_set)
        return env_int("FAKE_CUDA_CONTEXT", 0) ? &runtime_ctx : NULL;
    return current;
}

/* Hooks for the tests: the current context's device (-1: none, -2: the
 * runtime's), making one current, references held, calls made without a
 * live current context. */
EXPORT int fake_cuda_current(void) {
    fake_ctx *c = thread_ctx();
    return !c ? -1 : c->dev < 0 ? -2 : c->dev;
}
EXPORT void fake_cuda_set_current(int dev) {
    current_set = 1;
    current = dev == -2 ? &runtime_ctx : dev < 0 ? NULL : &primary[dev];
}
EXPORT int fake_cuda_refs(int dev) { return primary[dev].refs; }
EXPORT int fake_cuda_calls_without_context(void) { return calls_without_context; }

static CUresult ctx_get_current(void **ctx) {
    *ctx = thread_ctx();
    return 0;
}

/* Every engine call needs a current context that is alive. */
static CUresult need_context(void) {
    fake_ctx *c = thread_ctx();
    if (c && c->refs > 0)
        return 0;
    calls_without_context++;
    return 201; /* CUDA_ERROR_INVALID_CONTEXT */
}

static CUresult mem_get_info(size_t *free_bytes, size_t *total) {
    if (!thread_ctx())
        return 201;
    *total = TOTAL;
    *free_bytes = TOTAL - 1000 * MIB;
    return 0;
}

/* Resolvable but never called by the probe. */
static CUresult not_supported(void) { return 801; }

/* ---- the engine's calls (FAKE_CUDA_ENGINE=1) ---- */

static CUresult primary_retain(void **ctx, int dev) {
    primary[dev].dev = dev;
    primary[dev].refs++;
    *ctx = &primary[dev];
    return 0;
}

static CUresult primary_release(int dev) {
    return primary[dev].refs > 0 ? (primary[dev].refs--, 0) : 201;
}

static CUresult ctx_set_current(void *ctx) {
    current_set = 1;
    current = ctx;
    return 0;
}

static CUresult no_args(void) { return need_context(); }
static CUresult one_handle(void *h) {
    (void)h;
    return need_context();
}

static CUresult mem_alloc(unsigned long long *p, size_t n) {
    CUresult r = need_context();
    void *m = r ? NULL : malloc(n ? n : 1);
    if (!r && !m)
        r = 2;
    *p = (unsigned long long)(uintptr_t)m;
    return r;
}

static CUresult mem_free(unsigned long long p) {
    free((void *)(uintptr_t)p);
    return need_context();
}

static CUresult host_register(void *p, size_t n, unsigned flags) {
    (void)p;
    (void)n;
    (void)flags;
    return need_context();
}

static CUresult copy_h2d(unsigned long long dst, const void *src, size_t n) {
    CUresult r = need_context();
    if (!r)
        memcpy((void *)(uintptr_t)dst, src, n);
    return r;
}

static CUresult copy_d2h(void *dst, unsigned long long src, size_t n) {
    CUresult r = need_context();
    if (!r)
        memcpy(dst, (const void *)(uintptr_t)src, n);
    return r;
}

static CUresult copy_h2d_async(unsigned long long dst, const void *src, size_t n, void *s) {
    (void)s;
    return copy_h2d(dst, src, n);
}

static CUresult copy_d2h_async(void *dst, unsigned long long src, size_t n, void *s) {
    (void)s;
    return copy_d2h(dst, src, n);
}

/* Streams are tokens; an event holds the time it was recorded. */
static CUresult stream_create(void **s, unsigned flags) {
    (void)flags;
    CUresult r = need_context();
    *s = r ? NULL : malloc(1);
    return r;
}

static CUresult stream_destroy(void *s) {
    free(s);
    return need_context();
}

static CUresult stream_wait(void *s, void *e, unsigned flags) {
    (void)s;
    (void)e;
    (void)flags;
    return need_context();
}

static CUresult event_create(void **e, unsigned flags) {
    (void)flags;
    CUresult r = need_context();
    *e = r ? NULL : calloc(1, sizeof(struct timespec));
    return r;
}

static CUresult event_destroy(void *e) {
    free(e);
    return need_context();
}

static CUresult event_record(void *e, void *s) {
    (void)s;
    CUresult r = need_context();
    if (!r)
        clock_gettime(CLOCK_MONOTONIC, e);
    return r;
}

static CUresult event_elapsed(float *ms, void *a, void *b) {
    const struct timespec *x = a, *y = b;
    *ms = (float)((double)(y->tv_sec - x->tv_sec) * 1e3 + (double)(y->tv_nsec - x->tv_nsec) / 1e6);
    return need_context();
}

static CUresult launch_host_func(void *s, void (*fn)(void *), void *user) {
    (void)s;
    CUresult r = need_context();
    if (!r)
        fn(user);
    return r;
}

static const struct {
    const char *name;
    void *fn;
} engine_procs[] = {
    {"cuDevicePrimaryCtxRetain", (void *)primary_retain},
    {"cuDevicePrimaryCtxRelease", (void *)primary_release},
    {"cuCtxSetCurrent", (void *)ctx_set_current},
    {"cuCtxSynchronize", (void *)no_args},
    {"cuMemAlloc", (void *)mem_alloc},
    {"cuMemFree", (void *)mem_free},
    {"cuMemHostRegister", (void *)host_register},
    {"cuMemHostUnregister", (void *)one_handle},
    {"cuMemcpyHtoD", (void *)copy_h2d},
    {"cuMemcpyDtoH", (void *)copy_d2h},
    {"cuMemcpyHtoDAsync", (void *)copy_h2d_async},
    {"cuMemcpyDtoHAsync", (void *)copy_d2h_async},
    {"cuStreamCreate", (void *)stream_create},
    {"cuStreamDestroy", (void *)stream_destroy},
    {"cuStreamSynchronize", (void *)one_handle},
    {"cuStreamWaitEvent", (void *)stream_wait},
    {"cuEventCreate", (void *)event_create},
    {"cuEventDestroy", (void *)event_destroy},
    {"cuEventRecord", (void *)event_record},
    {"cuEventSynchronize", (void *)one_handle},
    {"cuEventQuery", (void *)one_handle},
    {"cuEventElapsedTime", (void *)event_elapsed},
    {"cuLaunchHostFunc", (void *)launch_host_func},
    {"cuModuleUnload", (void *)one_handle},
};

static const struct {
    const char *name;
    void *fn;
} procs[] = {
    {"cuGetErrorString", (void *)get_error_string},
    {"cuDeviceGetCount", (void *)device_count},
    {"cuDeviceGet", (void *)device_get},
    {"cuDeviceGetName", (void *)device_name},
    {"cuDeviceGetUuid", (void *)device_uuid},
    {"cuDeviceTotalMem", (void *)device_total},
    {"cuDeviceGetAttribute", (void *)device_attribute},
    {"cuCtxGetCurrent", (void *)ctx_get_current},
    {"cuMemGetInfo", (void *)mem_get_info},
};

static const char *const others[] = {
    "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease", "cuCtxSetCurrent",
    "cuCtxSynchronize", "cuMemAlloc", "cuMemFree", "cuMemHostAlloc", "cuMemFreeHost",
    "cuMemHostRegister", "cuMemHostUnregister", "cuMemcpyHtoD", "cuMemcpyDtoH",
    "cuMemcpyHtoDAsync", "cuMemcpyDtoHAsync", "cuStreamCreate", "cuStreamDestroy",
    "cuStreamSynchronize", "cuStreamWaitEvent", "cuEventCreate", "cuEventDestroy",
    "cuEventRecord", "cuEventSynchronize", "cuEventQuery", "cuEventElapsedTime",
    "cuLaunchHostFunc", "cuModuleLoadData", "cuModuleUnload", "cuModuleGetFunction",
    "cuLaunchKernel",
};

static CUresult lookup(const char *symbol, void **pfn, int version, uint64_t flags) {
    last_version = version;
    last_flags = (int)flags;
    for (size_t i = 0; i < sizeof procs / sizeof procs[0]; i++)
        if (strcmp(symbol, procs[i].name) == 0) {
            *pfn = procs[i].fn;
            return 0;
        }
    for (size_t i = 0; env_int("FAKE_CUDA_ENGINE", 0) && i < sizeof engine_procs / sizeof engine_procs[0];
         i++)
        if (strcmp(symbol, engine_procs[i].name) == 0) {
            *pfn = engine_procs[i].fn;
            return 0;
        }
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        if (strcmp(symbol, others[i]) == 0) {
            *pfn = (void *)not_supported;
            return 0;
        }
    *pfn = NULL;
    return 500; /* CUDA_ERROR_NOT_FOUND */
}

EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, uint64_t flags) {
    used_v2 = 0;
    return lookup(symbol, pfn, version, flags);
}

#ifndef FAKE_CUDA_NO_V2
EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, uint64_t flags,
                                    int *status) {
    used_v2 = 1;
    CUresult r = lookup(symbol, pfn, version, flags);
    *status = r == 0 ? 0 : 1;
    return r;
}
#endif

/* ---- NVML ---- */

typedef struct {
    unsigned long long total, free, used;
} nvml_memory;

static int nvml_device; /* the handle points here; index in the low byte */

EXPORT int nvmlInit_v2(void) { return env_int("FAKE_NVML_INIT", 0); }

EXPORT const char *nvmlErrorString(int r) { return r ? "fake NVML error" : "success"; }

/* FAKE_NVML_MIG=1: device 0 is a MIG instance, which NVML spells MIG-. */
static void format_uuid(int dev, char *out, unsigned len) {
    unsigned char b[16];
    fake_uuid(dev, b);
    snprintf(out, len,
             "%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             env_int("FAKE_NVML_MIG", 0) ? "MIG" : "GPU", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* Device 0 only: the others exist for CUDA but not for NVML. */
EXPORT int nvmlDeviceGetHandleByUUID(const char *uuid, void **dev) {
    char mine[96];
    format_uuid(0, mine, sizeof mine);
    if (strcmp(uuid, mine) != 0)
        return 13; /* NVML_ERROR_NOT_FOUND */
    *dev = &nvml_device;
    return 0;
}

EXPORT int nvmlDeviceGetMemoryInfo(void *dev, nvml_memory *m) {
    (void)dev;
    m->total = TOTAL;
    m->used = 2048 * MIB;
    m->free = TOTAL - m->used;
    return 0;
}

EXPORT int nvmlDeviceGetName(void *dev, char *name, unsigned len) {
    (void)dev;
    snprintf(name, len, "NVIDIA GeForce RTX 4090");
    return 0;
}

EXPORT int nvmlDeviceGetUUID(void *dev, char *uuid, unsigned len) {
    (void)dev;
    format_uuid(0, uuid, len);
    return 0;
}

/* An idle GPU at Gen1, in a Gen4 x8 slot. */
EXPORT int nvmlDeviceGetCurrPcieLinkGeneration(void *dev, unsigned *v) {
    (void)dev;
    *v = 1;
    return 0;
}

EXPORT int nvmlDeviceGetMaxPcieLinkGeneration(void *dev, unsigned *v) {
    (void)dev;
    *v = 4;
    return 0;
}

EXPORT int nvmlDeviceGetCurrPcieLinkWidth(void *dev, unsigned *v) {
    (void)dev;
    *v = 8;
    return 0;
}

EXPORT int nvmlDeviceGetMaxPcieLinkWidth(void *dev, unsigned *v) {
    (void)dev;
    *v = 8;
    return 0;
}
