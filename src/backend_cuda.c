/* backend_cuda.c - the engine's backend on a CUDA device, through the
 * driver table loaded at run time (cuda_driver.c).
 *
 * Everything runs on the device's PRIMARY context, the one PyTorch uses, so
 * the caller's CUstream handles and ours interoperate. Copy streams are
 * non-blocking (no implicit sync with the legacy stream); ordering comes
 * from events only. Pacing delays are host functions on the copy stream
 * (they stall that stream, not the GPU). Emulated compute is a kernel that
 * spins on %globaltimer for a set number of nanoseconds: wall time, not SM
 * clocks, so boost clocks do not change its length. */
#define _GNU_SOURCE
#include "backend.h"
#include "cuda_driver.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One thread, spins until `ns` nanoseconds of %globaltimer have passed.
 * sm_50 / PTX 7.0 so any driver >= 11.0 JITs it for the card at hand. */
static const char spin_ptx[] =
    ".version 7.0\n"
    ".target sm_50\n"
    ".address_size 64\n"
    "\n"
    ".visible .entry vram_spin(.param .u64 vram_spin_ns)\n"
    "{\n"
    "    .reg .pred %p<2>;\n"
    "    .reg .b64 %rd<5>;\n"
    "    ld.param.u64 %rd1, [vram_spin_ns];\n"
    "    mov.u64 %rd2, %globaltimer;\n"
    "$L_spin:\n"
    "    mov.u64 %rd3, %globaltimer;\n"
    "    sub.s64 %rd4, %rd3, %rd2;\n"
    "    setp.lt.u64 %p1, %rd4, %rd1;\n"
    "    @%p1 bra $L_spin;\n"
    "    ret;\n"
    "}\n";

typedef struct cbackend {
    vram_backend base;
    const vram_cuda *cu;
    CUdevice dev;
    CUcontext ctx;
    CUmodule module;
    CUfunction spin_fn;
    pthread_mutex_t spin_mu; /* the spin kernel loads once, on first use */
} cbackend;

#define CB(b) ((cbackend *)(b))
#define CU_CALL(cb, call, what)                                 \
    do {                                                        \
        CUresult r_ = (cb)->cu->call;                           \
        if (r_ != VRAM_CUDA_SUCCESS)                            \
            return vram_cuda_fail((cb)->cu, r_, what);          \
    } while (0)

static int c_enter(vram_backend *b, void **prev) {
    cbackend *cb = CB(b);
    CUcontext cur = NULL;
    bool known = cb->cu->cuCtxGetCurrent(&cur) == VRAM_CUDA_SUCCESS;
    *prev = known ? cur : cb->ctx; /* unknown: nothing to give back */
    if (known && cur == cb->ctx)
        return VRAM_OK;
    CU_CALL(cb, cuCtxSetCurrent(cb->ctx), "cuCtxSetCurrent");
    return VRAM_OK;
}

static void c_leave(vram_backend *b, void *prev) {
    cbackend *cb = CB(b);
    if (prev != cb->ctx)
        cb->cu->cuCtxSetCurrent(prev);
}

static int c_dev_alloc(vram_backend *b, uint64_t bytes, uint64_t *addr) {
    cbackend *cb = CB(b);
    CUdeviceptr p = 0;
    CUresult r = cb->cu->cuMemAlloc(&p, (size_t)bytes);
    if (r != VRAM_CUDA_SUCCESS) {
        size_t free_b = 0, total_b = 0;
        cb->cu->cuMemGetInfo(&free_b, &total_b);
        int st = vram_cuda_fail(cb->cu, r, "cuMemAlloc");
        char why[256];
        snprintf(why, sizeof why, "%s", vram_last_error());
        return vram_fail(st, "%s of %.1f MiB; the device has %.1f of %.1f MiB free", why,
                         (double)bytes / VRAM_MIB, (double)free_b / VRAM_MIB,
                         (double)total_b / VRAM_MIB);
    }
    *addr = p;
    return VRAM_OK;
}

static void c_dev_free(vram_backend *b, uint64_t addr, uint64_t bytes) {
    (void)bytes;
    if (addr)
        CB(b)->cu->cuMemFree(addr);
}

static int c_host_register(vram_backend *b, void *p, uint64_t bytes) {
    CU_CALL(CB(b), cuMemHostRegister(p, (size_t)bytes, VRAM_CU_MEMHOSTREGISTER_PORTABLE),
            "cuMemHostRegister");
    return VRAM_OK;
}

static void c_host_unregister(vram_backend *b, void *p) { CB(b)->cu->cuMemHostUnregister(p); }

static int c_stream_create(vram_backend *b, void **stream) {
    CUstream s = NULL;
    CU_CALL(CB(b), cuStreamCreate(&s, VRAM_CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    *stream = s;
    return VRAM_OK;
}

static void c_stream_destroy(vram_backend *b, void *stream) {
    if (stream)
        CB(b)->cu->cuStreamDestroy(stream);
}

static int c_stream_sync(vram_backend *b, void *stream) {
    CU_CALL(CB(b), cuStreamSynchronize(stream), "cuStreamSynchronize");
    return VRAM_OK;
}

static int c_event_create(vram_backend *b, bool timing, void **event) {
    CUevent e = NULL;
    CU_CALL(CB(b), cuEventCreate(&e, timing ? 0 : VRAM_CU_EVENT_DISABLE_TIMING),
            "cuEventCreate");
    *event = e;
    return VRAM_OK;
}

static void c_event_destroy(vram_backend *b, void *event) {
    if (event)
        CB(b)->cu->cuEventDestroy(event);
}

static int c_event_record(vram_backend *b, void *event, void *stream) {
    CU_CALL(CB(b), cuEventRecord(event, stream), "cuEventRecord");
    return VRAM_OK;
}

static int c_stream_wait(vram_backend *b, void *stream, void *event) {
    CU_CALL(CB(b), cuStreamWaitEvent(stream, event, 0), "cuStreamWaitEvent");
    return VRAM_OK;
}

static int c_event_query(vram_backend *b, void *event) {
    cbackend *cb = CB(b);
    CUresult r = cb->cu->cuEventQuery(event);
    if (r == VRAM_CUDA_SUCCESS)
        return 1;
    if (r == VRAM_CUDA_ERROR_NOT_READY)
        return 0;
    return vram_cuda_fail(cb->cu, r, "cuEventQuery");
}

static int c_event_sync(vram_backend *b, void *event) {
    CU_CALL(CB(b), cuEventSynchronize(event), "cuEventSynchronize");
    return VRAM_OK;
}

static int c_event_elapsed(vram_backend *b, void *start, void *end, double *ms) {
    float f = 0;
    CU_CALL(CB(b), cuEventElapsedTime(&f, start, end), "cuEventElapsedTime");
    *ms = f;
    return VRAM_OK;
}

static int c_copy_h2d_async(vram_backend *b, uint64_t dst, const void *src, uint64_t n,
                            void *stream) {
    CU_CALL(CB(b), cuMemcpyHtoDAsync(dst, src, (size_t)n, stream), "cuMemcpyHtoDAsync");
    return VRAM_OK;
}

static int c_copy_d2h_async(vram_backend *b, void *dst, uint64_t src, uint64_t n, void *stream) {
    CU_CALL(CB(b), cuMemcpyDtoHAsync(dst, src, (size_t)n, stream), "cuMemcpyDtoHAsync");
    return VRAM_OK;
}

static int c_copy_h2d(vram_backend *b, uint64_t dst, const void *src, uint64_t n) {
    CU_CALL(CB(b), cuMemcpyHtoD(dst, src, (size_t)n), "cuMemcpyHtoD");
    return VRAM_OK;
}

static int c_copy_d2h(vram_backend *b, void *dst, uint64_t src, uint64_t n) {
    CU_CALL(CB(b), cuMemcpyDtoH(dst, src, (size_t)n), "cuMemcpyDtoH");
    return VRAM_OK;
}

static int c_host_func(vram_backend *b, void *stream, void (*fn)(void *), void *user) {
    CU_CALL(CB(b), cuLaunchHostFunc(stream, fn, user), "cuLaunchHostFunc");
    return VRAM_OK;
}

/* Host function: the delay in microseconds travels in the pointer itself,
 * so nothing needs to outlive the call that enqueued it. */
static void pace_fn(void *user) {
    vram_sleep_ns((uint64_t)(uintptr_t)user * 1000);
}

static int c_pace(vram_backend *b, void *stream, double ms) {
    if (ms <= 0)
        return VRAM_OK;
    return c_host_func(b, stream, pace_fn, (void *)(uintptr_t)(uint64_t)(ms * 1e3));
}

/* Loads the spin kernel once; callers reach it from any thread. */
static int load_spin(cbackend *cb) {
    pthread_mutex_lock(&cb->spin_mu);
    int st = VRAM_OK;
    if (!cb->spin_fn) {
        CUmodule module = NULL;
        CUfunction fn = NULL;
        CUresult r = cb->cu->cuModuleLoadData(&module, spin_ptx);
        if (r != VRAM_CUDA_SUCCESS) {
            st = vram_cuda_fail(cb->cu, r, "cuModuleLoadData(spin kernel)");
        } else if ((r = cb->cu->cuModuleGetFunction(&fn, module, "vram_spin")) !=
                   VRAM_CUDA_SUCCESS) {
            st = vram_cuda_fail(cb->cu, r, "cuModuleGetFunction(vram_spin)");
            cb->cu->cuModuleUnload(module);
        } else {
            cb->module = module;
            cb->spin_fn = fn;
        }
    }
    pthread_mutex_unlock(&cb->spin_mu);
    return st;
}

static int c_spin(vram_backend *b, void *stream, double ms) {
    cbackend *cb = CB(b);
    int st = load_spin(cb);
    if (st)
        return st;
    uint64_t ns = ms > 0 ? (uint64_t)(ms * 1e6) : 0;
    void *params[] = {&ns};
    CU_CALL(cb, cuLaunchKernel(cb->spin_fn, 1, 1, 1, 1, 1, 1, 0, stream, params, NULL),
            "cuLaunchKernel(vram_spin)");
    return VRAM_OK;
}

static void c_destroy(vram_backend *b) {
    cbackend *cb = CB(b);
    if (cb->ctx) {
        void *prev;
        bool entered = c_enter(b, &prev) == VRAM_OK;
        if (entered && cb->module)
            cb->cu->cuModuleUnload(cb->module);
        /* Released last, the context is reset but stays current: the
         * thread gets its own back (ours only when it was its own before,
         * as PyTorch's on the same device is). */
        cb->cu->cuDevicePrimaryCtxRelease(cb->dev);
        if (entered)
            c_leave(b, prev);
    }
    pthread_mutex_destroy(&cb->spin_mu);
    free(cb);
}

static const vram_backend_ops cuda_ops = {
    .destroy = c_destroy,
    .enter = c_enter,
    .leave = c_leave,
    .dev_alloc = c_dev_alloc,
    .dev_free = c_dev_free,
    .host_register = c_host_register,
    .host_unregister = c_host_unregister,
    .stream_create = c_stream_create,
    .stream_destroy = c_stream_destroy,
    .stream_sync = c_stream_sync,
    .event_create = c_event_create,
    .event_destroy = c_event_destroy,
    .event_record = c_event_record,
    .stream_wait = c_stream_wait,
    .event_query = c_event_query,
    .event_sync = c_event_sync,
    .event_elapsed = c_event_elapsed,
    .copy_h2d_async = c_copy_h2d_async,
    .copy_d2h_async = c_copy_d2h_async,
    .copy_h2d = c_copy_h2d,
    .copy_d2h = c_copy_d2h,
    .host_func = c_host_func,
    .pace = c_pace,
    .spin = c_spin,
};

int vram_backend_cuda_open(int device, vram_backend **out) {
    *out = NULL;
    const char *why = NULL;
    const vram_cuda *cu = vram_cuda_get(&why);
    if (!cu)
        return vram_fail(VRAM_E_NO_DEVICE, "CUDA backend unavailable: %s", why);
    int count = 0;
    CUresult r = cu->cuDeviceGetCount(&count);
    if (r != VRAM_CUDA_SUCCESS || device < 0 || device >= count)
        return vram_fail(VRAM_E_NO_DEVICE, "CUDA device %d not present (%d device(s) found)",
                         device, r == VRAM_CUDA_SUCCESS ? count : 0);
    cbackend *cb = calloc(1, sizeof *cb);
    if (!cb)
        return vram_fail(VRAM_E_NOMEM, "CUDA backend");
    cb->cu = cu;
    pthread_mutex_init(&cb->spin_mu, NULL);
    cb->base.ops = &cuda_ops;
    cb->base.kind = VRAM_BACKEND_CUDA;
    int st = VRAM_OK;
    if ((r = cu->cuDeviceGet(&cb->dev, device)) != VRAM_CUDA_SUCCESS) {
        st = vram_cuda_fail(cu, r, "cuDeviceGet");
        goto fail;
    }
    if ((r = cu->cuDevicePrimaryCtxRetain(&cb->ctx, cb->dev)) != VRAM_CUDA_SUCCESS) {
        cb->ctx = NULL;
        st = vram_cuda_fail(cu, r, "cuDevicePrimaryCtxRetain");
        goto fail;
    }
    if (cu->cuDeviceGetName(cb->base.name, (int)sizeof cb->base.name, cb->dev) !=
        VRAM_CUDA_SUCCESS)
        snprintf(cb->base.name, sizeof cb->base.name, "CUDA device %d", device);
    CUuuid u;
    if (cu->cuDeviceGetUuid(&u, cb->dev) == VRAM_CUDA_SUCCESS)
        vram_cuda_format_uuid(&u, cb->base.uuid, sizeof cb->base.uuid);
    *out = &cb->base;
    return VRAM_OK;
fail:
    c_destroy(&cb->base);
    return st;
}
