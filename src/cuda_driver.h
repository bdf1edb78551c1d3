/* cuda_driver.h - the CUDA driver API, loaded at run time (no toolkit).
 *
 * Only the types and entry points libvram uses are declared here. The
 * library dlopens libcuda.so.1 (or $VRAM_CUDA_LIBRARY), dlsyms cuInit,
 * cuDriverGetVersion and cuGetProcAddress, enforces a minimum driver
 * version and resolves the rest through cuGetProcAddress so the driver
 * picks the current (_v2) ABIs. "No driver" and "no device" are states. */
#ifndef VRAM_CUDA_DRIVER_H
#define VRAM_CUDA_DRIVER_H

#include <stddef.h>

typedef int CUresult; /* 0 = CUDA_SUCCESS */
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef void (*CUhostFn)(void *user);
typedef struct {
    char bytes[16];
} CUuuid;

#define VRAM_CUDA_SUCCESS 0
#define VRAM_CUDA_ERROR_OUT_OF_MEMORY 2
#define VRAM_CUDA_ERROR_NOT_READY 600
/* Minimum driver: CUDA 11.3 (cuGetProcAddress); 12.0 for its _v2 form. */
#define VRAM_CUDA_MIN_DRIVER 11030

/* Attributes libvram reads (values from cuda.h). */
#define VRAM_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define VRAM_CU_DEVICE_ATTRIBUTE_PCI_BUS_ID 33
#define VRAM_CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID 34
#define VRAM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define VRAM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define VRAM_CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID 50

/* Flags. */
#define VRAM_CU_STREAM_NON_BLOCKING 0x1
#define VRAM_CU_EVENT_DISABLE_TIMING 0x2
#define VRAM_CU_MEMHOSTALLOC_PORTABLE 0x1
#define VRAM_CU_MEMHOSTREGISTER_PORTABLE 0x1

typedef struct vram_cuda {
    int driver_version;
    CUresult (*cuInit)(unsigned flags);
    CUresult (*cuDriverGetVersion)(int *version);
    CUresult (*cuGetErrorString)(CUresult err, const char **str);
    CUresult (*cuDeviceGetCount)(int *count);
    CUresult (*cuDeviceGet)(CUdevice *dev, int ordinal);
    CUresult (*cuDeviceGetName)(char *name, int len, CUdevice dev);
    CUresult (*cuDeviceGetUuid)(CUuuid *uuid, CUdevice dev);
    CUresult (*cuDeviceTotalMem)(size_t *bytes, CUdevice dev);
    CUresult (*cuDeviceGetAttribute)(int *value, int attrib, CUdevice dev);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice dev);
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice dev);
    CUresult (*cuCtxGetCurrent)(CUcontext *ctx);
    CUresult (*cuCtxSetCurrent)(CUcontext ctx);
    CUresult (*cuCtxSynchronize)(void);
    CUresult (*cuMemGetInfo)(size_t *free_bytes, size_t *total_bytes);
    CUresult (*cuMemAlloc)(CUdeviceptr *ptr, size_t bytes);
    CUresult (*cuMemFree)(CUdeviceptr ptr);
    CUresult (*cuMemHostAlloc)(void **ptr, size_t bytes, unsigned flags);
    CUresult (*cuMemFreeHost)(void *ptr);
    CUresult (*cuMemHostRegister)(void *ptr, size_t bytes, unsigned flags);
    CUresult (*cuMemHostUnregister)(void *ptr);
    CUresult (*cuMemcpyHtoD)(CUdeviceptr dst, const void *src, size_t bytes);
    CUresult (*cuMemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes);
    CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes, CUstream s);
    CUresult (*cuMemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t bytes, CUstream s);
    CUresult (*cuStreamCreate)(CUstream *s, unsigned flags);
    CUresult (*cuStreamDestroy)(CUstream s);
    CUresult (*cuStreamSynchronize)(CUstream s);
    CUresult (*cuStreamWaitEvent)(CUstream s, CUevent e, unsigned flags);
    CUresult (*cuEventCreate)(CUevent *e, unsigned flags);
    CUresult (*cuEventDestroy)(CUevent e);
    CUresult (*cuEventRecord)(CUevent e, CUstream s);
    CUresult (*cuEventSynchronize)(CUevent e);
    CUresult (*cuEventQuery)(CUevent e);
    CUresult (*cuEventElapsedTime)(float *ms, CUevent start, CUevent end);
    CUresult (*cuLaunchHostFunc)(CUstream s, CUhostFn fn, void *user);
    CUresult (*cuModuleLoadData)(CUmodule *m, const void *image);
    CUresult (*cuModuleUnload)(CUmodule m);
    CUresult (*cuModuleGetFunction)(CUfunction *f, CUmodule m, const char *name);
    CUresult (*cuLaunchKernel)(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned shared_bytes, CUstream s,
                               void **params, void **extra);
} vram_cuda;

/* Loads and initialises the driver once per process (pthread_once) and
 * returns its table, or NULL with the reason in *why (static text): no
 * library, driver too old, cuInit failed. $VRAM_CUDA_LIBRARY names another
 * library file (tests point it at a missing or fake one). */
const vram_cuda *vram_cuda_get(const char **why);

/* "cuMemAlloc: out of memory (2)" into vram_last_error; returns the vram
 * status matching the CUresult. */
int vram_cuda_fail(const vram_cuda *cu, CUresult r, const char *what);

/* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", NVML's spelling: the probe and
 * the CUDA backend key the bandwidth cache by it, so both must agree. */
void vram_cuda_format_uuid(const CUuuid *u, char *out, size_t cap);

#endif
