/* cuda_driver.c - the CUDA driver API, loaded at run time (NCCL style).
 *
 * Only cuInit, cuDriverGetVersion and cuGetProcAddress come from dlsym; every
 * other entry point is resolved through cuGetProcAddress so the driver hands
 * out the ABI version matching our declarations (cuMemAlloc -> cuMemAlloc_v2).
 * The result, success or the reason for failure, is computed once. */
#define _GNU_SOURCE
#include "cuda_driver.h"

#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CUDA 11.3-12.4 form, and the CUDA 12.5+ form with a query result. */
typedef CUresult (*get_proc_v1_fn)(const char *symbol, void **pfn, int cuda_version,
                                   uint64_t flags);
typedef CUresult (*get_proc_v2_fn)(const char *symbol, void **pfn, int cuda_version,
                                   uint64_t flags, int *symbol_status);

/* The signatures in cuda_driver.h are those of the CUDA 12.0 ABI. A newer
 * driver asked with its own version could hand out a later ABI of the same
 * name (CUDA 13 changed several), so never ask for more than this. */
#define VRAM_CUDA_ABI_VERSION 12000

/* Every entry point resolved through cuGetProcAddress (all exist in 11.3). */
#define VRAM_CUDA_PROCS(X)                                                             \
    X(cuGetErrorString) X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName)          \
    X(cuDeviceGetUuid) X(cuDeviceTotalMem) X(cuDeviceGetAttribute)                     \
    X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease) X(cuCtxGetCurrent)        \
    X(cuCtxSetCurrent) X(cuCtxSynchronize) X(cuMemGetInfo) X(cuMemAlloc) X(cuMemFree)  \
    X(cuMemHostAlloc) X(cuMemFreeHost) X(cuMemHostRegister) X(cuMemHostUnregister)     \
    X(cuMemcpyHtoD) X(cuMemcpyDtoH) X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync)          \
    X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize) X(cuStreamWaitEvent)   \
    X(cuEventCreate) X(cuEventDestroy) X(cuEventRecord) X(cuEventSynchronize)          \
    X(cuEventQuery) X(cuEventElapsedTime) X(cuLaunchHostFunc) X(cuModuleLoadData)      \
    X(cuModuleUnload) X(cuModuleGetFunction) X(cuLaunchKernel)

static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;
static vram_cuda cuda_table;
static const vram_cuda *cuda_loaded;
static const char *cuda_why = "CUDA driver not loaded";
static char cuda_why_buf[256];

static get_proc_v1_fn get_proc_v1;
static get_proc_v2_fn get_proc_v2;

/* CU_GET_PROC_ADDRESS_LEGACY_STREAM: a NULL stream means the legacy
 * default stream, as cuda_driver.h promises and PyTorch uses. */
#define GET_PROC_LEGACY_STREAM 1u

static CUresult resolve(const char *name, int version, void **pfn) {
    *pfn = NULL;
    if (get_proc_v2) {
        int status = 0;
        return get_proc_v2(name, pfn, version, GET_PROC_LEGACY_STREAM, &status);
    }
    return get_proc_v1(name, pfn, version, GET_PROC_LEGACY_STREAM);
}

static void cuda_load(void) {
    const char *path = getenv("VRAM_CUDA_LIBRARY");
    if (!path || !*path)
        path = "libcuda.so.1";
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *err = dlerror();
        vram_log(VRAM_LOG_DEBUG, "dlopen(%s): %s", path, err ? err : "?");
        snprintf(cuda_why_buf, sizeof cuda_why_buf, "%s not found", path);
        cuda_why = cuda_why_buf;
        return;
    }

    void *p_init = dlsym(lib, "cuInit");
    void *p_version = dlsym(lib, "cuDriverGetVersion");
    void *p_v2 = dlsym(lib, "cuGetProcAddress_v2");
    void *p_v1 = p_v2 ? NULL : dlsym(lib, "cuGetProcAddress");
    if (!p_init || !p_version || (!p_v2 && !p_v1)) {
        snprintf(cuda_why_buf, sizeof cuda_why_buf,
                 "%s lacks cuInit, cuDriverGetVersion or cuGetProcAddress", path);
        goto fail;
    }
    /* memcpy: ISO C has no cast from void * to a function pointer. */
    memcpy(&cuda_table.cuInit, &p_init, sizeof p_init);
    memcpy(&cuda_table.cuDriverGetVersion, &p_version, sizeof p_version);
    if (p_v2)
        memcpy(&get_proc_v2, &p_v2, sizeof p_v2);
    else
        memcpy(&get_proc_v1, &p_v1, sizeof p_v1);

    int version = 0;
    CUresult r = cuda_table.cuDriverGetVersion(&version);
    if (r != VRAM_CUDA_SUCCESS) {
        snprintf(cuda_why_buf, sizeof cuda_why_buf, "cuDriverGetVersion failed (%d)", r);
        goto fail;
    }
    if (version < VRAM_CUDA_MIN_DRIVER) {
        snprintf(cuda_why_buf, sizeof cuda_why_buf, "driver %d.%d is older than %d.%d",
                 version / 1000, version % 1000 / 10, VRAM_CUDA_MIN_DRIVER / 1000,
                 VRAM_CUDA_MIN_DRIVER % 1000 / 10);
        goto fail;
    }
    cuda_table.driver_version = version;
    int abi = version < VRAM_CUDA_ABI_VERSION ? version : VRAM_CUDA_ABI_VERSION;

#define VRAM_CUDA_RESOLVE(name)                                                          \
    {                                                                                    \
        void *pfn_ = NULL;                                                               \
        r = resolve(#name, abi, &pfn_);                                                  \
        if (r != VRAM_CUDA_SUCCESS || !pfn_) {                                           \
            snprintf(cuda_why_buf, sizeof cuda_why_buf,                                  \
                     "cuGetProcAddress(%s, %d) failed (%d)", #name, abi, r);             \
            goto fail;                                                                   \
        }                                                                                \
        memcpy(&cuda_table.name, &pfn_, sizeof pfn_);                                    \
    }
    VRAM_CUDA_PROCS(VRAM_CUDA_RESOLVE)
#undef VRAM_CUDA_RESOLVE

    r = cuda_table.cuInit(0);
    if (r != VRAM_CUDA_SUCCESS) {
        const char *text = NULL;
        if (cuda_table.cuGetErrorString(r, &text) != VRAM_CUDA_SUCCESS || !text)
            text = "unknown error";
        snprintf(cuda_why_buf, sizeof cuda_why_buf, "cuInit failed: %s (%d)", text, r);
        goto fail;
    }
    cuda_loaded = &cuda_table;
    return;

fail:
    cuda_why = cuda_why_buf;
    memset(&cuda_table, 0, sizeof cuda_table);
    dlclose(lib);
}

const vram_cuda *vram_cuda_get(const char **why) {
    pthread_once(&cuda_once, cuda_load);
    if (why)
        *why = cuda_loaded ? "" : cuda_why;
    return cuda_loaded;
}

int vram_cuda_fail(const vram_cuda *cu, CUresult r, const char *what) {
    const char *text = NULL;
    if (!cu || !cu->cuGetErrorString || cu->cuGetErrorString(r, &text) != VRAM_CUDA_SUCCESS ||
        !text)
        text = "unknown CUDA error";
    int status = r == VRAM_CUDA_ERROR_OUT_OF_MEMORY ? VRAM_E_DEVICE_NOMEM : VRAM_E_DRIVER;
    return vram_fail(status, "%s: %s (%d)", what ? what : "CUDA", text, r);
}

void vram_cuda_format_uuid(const CUuuid *u, char *out, size_t cap) {
    const unsigned char *b = (const unsigned char *)u->bytes;
    snprintf(out, cap,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}
