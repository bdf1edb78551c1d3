/* backend.h - the engine's private device backend vtable, the pinned host
 * arena built on it, and fault injection.
 *
 * Two backends implement the same stream/event semantics:
 *   - CUDA (backend_cuda.c): the driver API on the device's primary context.
 *   - host (backend_host.c): "device" memory is RAM, every stream is a worker
 *     thread draining a queue, events are counters under a mutex.
 * A NULL stream is the caller's: on CUDA the legacy default stream; on the
 * host backend the calling thread itself (work runs inline, waits block).
 * The host backend treats any stream pointer it did not create as NULL, so a
 * CUstream handed to it by mistake is harmless.
 *
 * Events follow CUDA: a wait or query refers to the latest record issued
 * before it; waiting on an event never recorded returns at once. */
#ifndef VRAM_BACKEND_H
#define VRAM_BACKEND_H

#include "internal.h"

typedef struct vram_backend vram_backend;

typedef struct vram_backend_ops {
    void (*destroy)(vram_backend *b);
    /* Makes the backend usable from the calling thread (CUDA: its context
     * current), saving in *prev what leave gives back: the thread's own
     * context, which the caller (PyTorch, on another device perhaps) still
     * counts on after libvram returns. */
    int (*enter)(vram_backend *b, void **prev);
    void (*leave)(vram_backend *b, void *prev);
    int (*dev_alloc)(vram_backend *b, uint64_t bytes, uint64_t *addr);
    void (*dev_free)(vram_backend *b, uint64_t addr, uint64_t bytes);
    /* Page-locks caller memory (pinning); host: bookkeeping only. */
    int (*host_register)(vram_backend *b, void *p, uint64_t bytes);
    void (*host_unregister)(vram_backend *b, void *p);
    int (*stream_create)(vram_backend *b, void **stream);
    void (*stream_destroy)(vram_backend *b, void *stream);
    int (*stream_sync)(vram_backend *b, void *stream);
    /* timing: the event can time (vram_backend_ops.event_elapsed). */
    int (*event_create)(vram_backend *b, bool timing, void **event);
    void (*event_destroy)(vram_backend *b, void *event);
    int (*event_record)(vram_backend *b, void *event, void *stream);
    int (*stream_wait)(vram_backend *b, void *stream, void *event);
    /* 1 = complete, 0 = pending, < 0 = error status. */
    int (*event_query)(vram_backend *b, void *event);
    int (*event_sync)(vram_backend *b, void *event);
    int (*event_elapsed)(vram_backend *b, void *start, void *end, double *ms);
    int (*copy_h2d_async)(vram_backend *b, uint64_t dst, const void *src, uint64_t n,
                          void *stream);
    int (*copy_d2h_async)(vram_backend *b, void *dst, uint64_t src, uint64_t n, void *stream);
    /* Synchronous copies (resident writes, read-back). */
    int (*copy_h2d)(vram_backend *b, uint64_t dst, const void *src, uint64_t n);
    int (*copy_d2h)(vram_backend *b, void *dst, uint64_t src, uint64_t n);
    /* Runs fn(user) in stream order, off the caller's thread where the
     * stream is not NULL. fn must not call the backend. */
    int (*host_func)(vram_backend *b, void *stream, void (*fn)(void *), void *user);
    /* Stalls the stream for `ms` without occupying the GPU (copy pacing). */
    int (*pace)(vram_backend *b, void *stream, double ms);
    /* Emulated compute: busy the stream for `ms` (CUDA: a spin kernel). */
    int (*spin)(vram_backend *b, void *stream, double ms);
} vram_backend_ops;

struct vram_backend {
    const vram_backend_ops *ops;
    int kind; /* vram_backend_kind, never AUTO */
    char name[VRAM_NAME_MAX];
    char uuid[64];
    /* Link bandwidth the backend knows of (GB/s), 0 when unknown. */
    double link_gbps;
};

/* Opens a backend: AUTO picks CUDA when a device is there, else host.
 * device_bytes / bandwidth_gbps only matter for the host backend. */
int vram_backend_open(int kind, int device, uint64_t device_bytes, double bandwidth_gbps,
                      vram_backend **out);
int vram_backend_host_open(uint64_t device_bytes, double bandwidth_gbps, vram_backend **out);
int vram_backend_cuda_open(int device, vram_backend **out);
static inline void vram_backend_close(vram_backend *b) {
    if (b)
        b->ops->destroy(b);
}

/* ---- fault injection (vram_engine_options.fail_*_at) ---- */

typedef struct vram_faults {
    int alloc_at, pin_at, copy_at; /* fail the Nth call, 0 = never */
    int allocs, pins, copies;      /* calls so far */
} vram_faults;

/* Counts one call of a kind; true when this one is to fail. */
static inline bool vram_fault_hit(int *count, int at) {
    return ++*count == at && at > 0;
}

/* ---- pinned host arena ---- */

/* One host region: 256-aligned, pinned (registered) or pageable. */
typedef struct vram_host_region {
    void *p;
    uint64_t bytes;
    bool pinned;
} vram_host_region;

typedef struct vram_arena {
    vram_backend *be;
    vram_faults *faults; /* may be NULL */
    bool pin_enabled;
    uint64_t budget; /* pinned bytes allowed */
    uint64_t pinned, pageable;
    int pin_failures;
} vram_arena;

void vram_arena_init(vram_arena *a, vram_backend *be, vram_faults *faults, bool pin,
                     uint64_t pinned_budget);
/* Allocates `bytes` (256-aligned, zeroed); pinned when asked, pinning is on
 * and the budget allows, else pageable (a failed pin warns and falls back). */
int vram_arena_alloc(vram_arena *a, uint64_t bytes, bool want_pin, vram_host_region *out);
void vram_arena_free(vram_arena *a, vram_host_region *r);

/* ---- engine internals for tests and the GPU check ---- */

/* The engine's backend: tests make compute streams on it, the GPU check
 * runs the spin kernel. */
vram_backend *vram_engine_get_backend(vram_engine *eng);

#endif
