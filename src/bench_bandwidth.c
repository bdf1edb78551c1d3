/* bench_bandwidth.c - vram_bench_bandwidth: host<->device copy speed,
 * pinned and pageable, with 1..N streams sharing one block-sized transfer
 * (stream i copies the i-th of N equal pieces, all issued before any wait).
 * The best of a few repetitions counts; GB/s = 1e9 bytes per second. Runs
 * on the host backend too, where it measures memcpy through the workers. */
#define _GNU_SOURCE
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_REPS 3

enum { H2D_PINNED, H2D_PAGEABLE, D2H_PINNED, D2H_PAGEABLE, BENCH_MODES };

typedef struct bench {
    vram_backend *be;
    void *streams[16];
    uint64_t dev;
    void *pinned, *pageable;
    bool registered;
    bool entered; /* ctx: the thread's context to give back */
    void *ctx;
    uint64_t bytes;
} bench;

/* One transfer of `bytes` split over k streams; milliseconds. */
static int timed_transfer(bench *x, int mode, int k, double *ms) {
    const vram_backend_ops *o = x->be->ops;
    uint8_t *host = (mode == H2D_PINNED || mode == D2H_PINNED) ? x->pinned : x->pageable;
    uint64_t piece = x->bytes / (uint64_t)k;
    double t0 = vram_now_ms();
    int st = VRAM_OK;
    for (int i = 0; i < k && st == VRAM_OK; i++) {
        uint64_t off = piece * (uint64_t)i;
        uint64_t n = i == k - 1 ? x->bytes - off : piece;
        st = mode < D2H_PINNED ? o->copy_h2d_async(x->be, x->dev + off, host + off, n, x->streams[i])
                               : o->copy_d2h_async(x->be, host + off, x->dev + off, n, x->streams[i]);
    }
    for (int i = 0; i < k && st == VRAM_OK; i++)
        st = o->stream_sync(x->be, x->streams[i]);
    *ms = vram_now_ms() - t0;
    return st;
}

static void bench_free(bench *x) {
    if (!x->be)
        return;
    for (int i = 0; i < 16; i++)
        if (x->streams[i])
            x->be->ops->stream_destroy(x->be, x->streams[i]);
    x->be->ops->dev_free(x->be, x->dev, x->bytes);
    if (x->registered)
        x->be->ops->host_unregister(x->be, x->pinned);
    free(x->pinned);
    free(x->pageable);
    if (x->entered)
        x->be->ops->leave(x->be, x->ctx);
    vram_backend_close(x->be);
}

int vram_bench_bandwidth(int backend, int device, uint64_t transfer_bytes, int max_streams,
                         vram_bandwidth_result *out) {
    VRAM_CHECK_STRUCT(out, vram_bandwidth_result);
    if (max_streams < 1 || max_streams > 16)
        return vram_fail(VRAM_E_RANGE, "bench max_streams is %d (1..16)", max_streams);
    uint64_t bytes = transfer_bytes ? transfer_bytes : 256ull << 20;
    if (bytes < (uint64_t)max_streams || bytes > SIZE_MAX / 2)
        return vram_fail(VRAM_E_RANGE, "bench transfer of %llu bytes over %d streams",
                         (unsigned long long)bytes, max_streams);
    uint32_t size = out->size;
    memset(out, 0, sizeof *out);
    out->size = size;

    bench x = {.bytes = bytes};
    int st = vram_backend_open(backend, device, 0, 0, &x.be);
    if (st == VRAM_OK)
        x.entered = (st = x.be->ops->enter(x.be, &x.ctx)) == VRAM_OK;
    if (st == VRAM_OK)
        st = x.be->ops->dev_alloc(x.be, bytes, &x.dev);
    if (st == VRAM_OK && (posix_memalign(&x.pinned, VRAM_ALIGN, (size_t)bytes) != 0 ||
                          posix_memalign(&x.pageable, VRAM_ALIGN, (size_t)bytes) != 0))
        st = vram_fail(VRAM_E_NOMEM, "two host buffers of %.1f MiB for the bench",
                       (double)bytes / VRAM_MIB);
    if (st == VRAM_OK) {
        /* Touch every page so first-use faults stay out of the timings. */
        memset(x.pinned, 0x5a, (size_t)bytes);
        memset(x.pageable, 0xa5, (size_t)bytes);
        st = x.be->ops->host_register(x.be, x.pinned, bytes);
        x.registered = st == VRAM_OK;
    }
    for (int i = 0; i < max_streams && st == VRAM_OK; i++)
        st = x.be->ops->stream_create(x.be, &x.streams[i]);
    double *results[BENCH_MODES] = {out->h2d_pinned_gbps, out->h2d_pageable_gbps,
                                    out->d2h_pinned_gbps, out->d2h_pageable_gbps};
    for (int mode = 0; mode < BENCH_MODES && st == VRAM_OK; mode++) {
        double warm = 0;
        st = timed_transfer(&x, mode, 1, &warm);
        for (int k = 1; k <= max_streams && st == VRAM_OK; k++) {
            double best = 0;
            for (int rep = 0; rep < BENCH_REPS && st == VRAM_OK; rep++) {
                double ms = 0;
                st = timed_transfer(&x, mode, k, &ms);
                if (rep == 0 || ms < best)
                    best = ms;
            }
            results[mode][k - 1] = best > 0 ? (double)bytes / (best * 1e6) : 0;
        }
    }
    if (st == VRAM_OK) {
        out->backend = x.be->kind;
        snprintf(out->gpu_name, sizeof out->gpu_name, "%s", x.be->name);
        snprintf(out->gpu_uuid, sizeof out->gpu_uuid, "%s", x.be->uuid);
        out->transfer_bytes = bytes;
        out->max_streams = max_streams;
    }
    bench_free(&x);
    return st;
}
