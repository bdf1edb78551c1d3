/* gpu_check.c - the engine on a real NVIDIA GPU, in under five minutes:
 *   1. the CUDA and host backends run the same schedule (random order, two
 *      passes, a compute stream that spins then copies each block back in
 *      stream order, so a slot overwritten while in use shows): their
 *      checksums must be equal and match the blocks' patterns;
 *   2. host-to-device bandwidth, pinned and pageable, 1..4 streams;
 *   3. one forward over 40 streamed 670 MiB blocks (Wan 14B bf16) with the
 *      spin kernel emulating 4.90 ms and 68.3 ms per block, against the
 *      bound max(total compute, bytes / pinned bandwidth).
 * Exit status: 0 pass, 1 a check failed, 2 no GPU. */
#define _GNU_SOURCE
#include "backend.h"
#include "vram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

static uint8_t pattern(int b, uint64_t i) {
    uint64_t x = (uint64_t)(b + 1) * 0x9E3779B97F4A7C15ull + i * 0x100000001B3ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(x >> 32);
}

static uint64_t fnv(uint64_t h, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static int failed(const char *what, int st) {
    fprintf(stderr, "gpu_check: %s: %s: %s\n", what, vram_strerror(st), vram_last_error());
    return st;
}

typedef struct model {
    vram_layout *layout;
    vram_hw *hw;
    vram_plan *plan;
} model;

static void model_free(model *m) {
    vram_plan_free(m->plan);
    vram_hw_free(m->hw);
    vram_layout_free(m->layout);
}

/* A plan streaming `swap` of `n` blocks on the probed GPU (simulated when
 * `simulate`), manual settings. */
static int model_make(model *m, const uint64_t *sizes, int n, int swap, bool simulate,
                      double block_ms, double h2d_gbps) {
    memset(m, 0, sizeof *m);
    int st = vram_layout_from_blocks(sizes, n, 0, 0, &m->layout);
    if (st == VRAM_OK)
        st = simulate ? vram_hw_probe_dram_only(&m->hw) : vram_hw_probe(&m->hw);
    if (st == VRAM_OK && simulate)
        st = vram_hw_set_vram(m->hw, 0, 81559, 0);
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = swap;
    o.bandwidth_target = 1.0;
    o.num_cuda_streams = 1;
    o.measured_block_ms = block_ms;
    o.measured_h2d_gbps = h2d_gbps;
    if (st == VRAM_OK)
        st = vram_plan_create(m->layout, m->hw, &o, &m->plan);
    return st;
}

/* ---- 1. same schedule on both backends ---- */

enum { SCHED_BLOCKS = 16, SCHED_PASSES = 2 };

static int run_schedule(int backend, const model *m, const int *order, uint64_t *sum) {
    vram_engine_options eo;
    vram_engine_options_init(&eo);
    eo.backend = backend;
    eo.slot_count = 2;
    eo.copy_streams = 2;
    vram_engine *eng = NULL;
    int st = vram_engine_create(m->plan, m->layout, &eo, &eng);
    if (st)
        return failed("engine create", st);
    vram_backend *be = vram_engine_get_backend(eng);
    void *cs = NULL;
    uint8_t *back[SCHED_PASSES * SCHED_BLOCKS] = {0};
    uint64_t nback[SCHED_PASSES * SCHED_BLOCKS] = {0};
    for (int b = 0; b < SCHED_BLOCKS && st == VRAM_OK; b++) {
        uint64_t n = vram_engine_block_bytes(eng, b);
        uint8_t *buf = malloc(n);
        if (!buf) {
            st = VRAM_E_NOMEM;
            break;
        }
        for (uint64_t i = 0; i < n; i++)
            buf[i] = pattern(b, i);
        st = vram_engine_write(eng, b, 0, buf, n);
        free(buf);
    }
    if (st == VRAM_OK)
        st = be->ops->stream_create(be, &cs);
    if (st == VRAM_OK)
        st = vram_engine_set_order(eng, order, SCHED_BLOCKS);
    for (int k = 0; k < SCHED_PASSES * SCHED_BLOCKS && st == VRAM_OK; k++) {
        int b = order[k % SCHED_BLOCKS];
        nback[k] = vram_engine_block_bytes(eng, b);
        if (posix_memalign((void **)&back[k], 256, nback[k]) != 0) {
            back[k] = NULL;
            st = VRAM_E_NOMEM;
            break;
        }
        memset(back[k], 0, nback[k]);
        if ((st = be->ops->host_register(be, back[k], nback[k]))) {
            free(back[k]);
            back[k] = NULL;
            break;
        }
        uint64_t addr = 0;
        st = vram_engine_acquire(eng, b, cs, &addr);
        /* The "kernel": spin, then read the block in stream order. */
        if (st == VRAM_OK)
            st = be->ops->spin(be, cs, 1.0 + (k % 3));
        if (st == VRAM_OK)
            st = be->ops->copy_d2h_async(be, back[k], addr, nback[k], cs);
        if (st == VRAM_OK)
            st = vram_engine_release(eng, b, cs);
    }
    if (st == VRAM_OK && cs)
        st = be->ops->stream_sync(be, cs);
    *sum = 0xcbf29ce484222325ull;
    uint64_t bad = 0;
    for (int k = 0; k < SCHED_PASSES * SCHED_BLOCKS && st == VRAM_OK; k++) {
        int b = order[k % SCHED_BLOCKS];
        *sum = fnv(*sum, back[k], nback[k]);
        for (uint64_t i = 0; i < nback[k]; i++)
            bad += back[k][i] != pattern(b, i);
    }
    if (st)
        failed("schedule", st);
    vram_engine_stats s = {.size = sizeof s};
    vram_engine_get_stats(eng, &s);
    printf("  %-4s: checksum %016llx, %llu bytes differ from the patterns, %llu copies, "
           "overlap %.2f\n",
           backend == VRAM_BACKEND_CUDA ? "cuda" : "host", (unsigned long long)*sum,
           (unsigned long long)bad, (unsigned long long)s.blocks_copied, s.overlap_ratio);
    for (int k = 0; k < SCHED_PASSES * SCHED_BLOCKS; k++)
        if (back[k]) {
            be->ops->host_unregister(be, back[k]);
            free(back[k]);
        }
    if (cs)
        be->ops->stream_destroy(be, cs);
    vram_engine_destroy(eng);
    return st ? st : bad ? VRAM_E_STATE : VRAM_OK;
}

static int check_same_schedule(void) {
    uint64_t sizes[SCHED_BLOCKS];
    int order[SCHED_BLOCKS];
    uint64_t x = 42;
    for (int b = 0; b < SCHED_BLOCKS; b++) {
        sizes[b] = (3u << 20) + 4099u * (uint64_t)b;
        order[b] = b;
    }
    for (int i = SCHED_BLOCKS - 1; i > 0; i--) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int j = (int)((x >> 33) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    model m;
    int st = model_make(&m, sizes, SCHED_BLOCKS, 12, true, 0, 0);
    if (st)
        return failed("plan", st);
    uint64_t cuda_sum = 0, host_sum = 1;
    int a = run_schedule(VRAM_BACKEND_CUDA, &m, order, &cuda_sum);
    int b = run_schedule(VRAM_BACKEND_HOST, &m, order, &host_sum);
    model_free(&m);
    bool ok = a == VRAM_OK && b == VRAM_OK && cuda_sum == host_sum;
    printf("  same schedule on both backends: %s\n", ok ? "PASS" : "FAIL");
    return ok ? VRAM_OK : VRAM_E_STATE;
}

/* ---- 3. 40 streamed Wan 14B blocks ---- */

static int check_forward(double block_ms, double h2d_gbps, bool *ok) {
    enum { N = 40 };
    const uint64_t block = 351394304ull * 2; /* 670.2 MiB, bf16 */
    uint64_t sizes[N];
    for (int b = 0; b < N; b++)
        sizes[b] = block;
    model m;
    int st = model_make(&m, sizes, N, N, false, block_ms, h2d_gbps);
    if (st)
        return failed("plan (40 x 670 MiB)", st);
    vram_plan_summary sum = {.size = sizeof sum};
    vram_plan_get_summary(m.plan, &sum);
    vram_engine_options eo;
    vram_engine_options_init(&eo);
    eo.backend = VRAM_BACKEND_CUDA;
    vram_engine *eng = NULL;
    double t_alloc = vram_now_ms();
    if ((st = vram_engine_create(m.plan, m.layout, &eo, &eng))) {
        model_free(&m);
        return failed("engine create (40 x 670 MiB)", st);
    }
    t_alloc = vram_now_ms() - t_alloc;
    vram_backend *be = vram_engine_get_backend(eng);
    void *cs = NULL;
    st = be->ops->stream_create(be, &cs);
    double pass_ms[3] = {0};
    for (int pass = 0; pass < 3 && st == VRAM_OK; pass++) { /* pass 0 warms up */
        double t0 = vram_now_ms();
        for (int b = 0; b < N && st == VRAM_OK; b++) {
            uint64_t addr;
            st = vram_engine_acquire(eng, b, cs, &addr);
            if (st == VRAM_OK)
                st = be->ops->spin(be, cs, block_ms);
            if (st == VRAM_OK)
                st = vram_engine_release(eng, b, cs);
        }
        if (st == VRAM_OK)
            st = be->ops->stream_sync(be, cs);
        pass_ms[pass] = vram_now_ms() - t0;
        if (pass == 0 && st == VRAM_OK)
            st = vram_engine_reset_stats(eng);
    }
    vram_engine_stats s = {.size = sizeof s};
    if (st == VRAM_OK)
        st = vram_engine_get_stats(eng, &s);
    if (st == VRAM_OK) {
        double measured = (pass_ms[1] + pass_ms[2]) / 2;
        double copy = (double)block * N / (h2d_gbps * 1e6), compute = block_ms * N;
        double bound = copy > compute ? copy : compute;
        *ok = measured <= 1.15 * bound;
        printf("  %5.2f ms/block: forward %.1f ms, bound %.1f ms (%.3fx), plan predicted %.1f "
               "ms; %d slots, %d copy stream(s), overlap %.2f, compute waited %.1f ms, "
               "pinned %.1f GiB (set-up %.1f s) %s\n",
               block_ms, measured, bound, measured / bound, sum.predicted_forward_ms,
               s.slot_count, s.copy_streams, s.overlap_ratio, s.compute_wait_ms / 2,
               (double)s.pinned_bytes / (MIB * 1024), t_alloc / 1e3, *ok ? "PASS" : "SLOW");
    } else {
        failed("forward", st);
    }
    if (cs)
        be->ops->stream_destroy(be, cs);
    vram_engine_destroy(eng);
    model_free(&m);
    return st;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    vram_backend *probe = NULL;
    int st = vram_backend_cuda_open(0, &probe);
    if (st) {
        printf("gpu_check: no GPU: %s\n", vram_last_error());
        return 2;
    }
    printf("gpu_check on %s (%s)\n", probe->name, probe->uuid);
    vram_backend_close(probe);
    int failures = 0;

    printf("1. CUDA vs host backend, same schedule (16 blocks, 2 passes, random order)\n");
    failures += check_same_schedule() != VRAM_OK;

    printf("2. bandwidth, 256 MiB transfers (GB/s = 1e9 B/s)\n");
    vram_bandwidth_result r = {.size = sizeof r};
    double h2d = 0;
    if ((st = vram_bench_bandwidth(VRAM_BACKEND_CUDA, 0, 256u << 20, 4, &r))) {
        failed("bandwidth", st);
        failures++;
    } else {
        for (int k = 0; k < 4; k++) {
            printf("  %d stream(s): H2D pinned %6.2f  pageable %6.2f   D2H pinned %6.2f  "
                   "pageable %6.2f\n",
                   k + 1, r.h2d_pinned_gbps[k], r.h2d_pageable_gbps[k], r.d2h_pinned_gbps[k],
                   r.d2h_pageable_gbps[k]);
            if (r.h2d_pinned_gbps[k] > h2d)
                h2d = r.h2d_pinned_gbps[k];
        }
    }

    if (h2d > 0) {
        printf("3. forward over 40 streamed 670 MiB blocks, spin-kernel compute, link %.2f GB/s\n",
               h2d);
        const double ms[2] = {4.90, 68.3};
        for (int i = 0; i < 2; i++) {
            bool ok = false;
            failures += check_forward(ms[i], h2d, &ok) != VRAM_OK || !ok;
        }
    }
    printf("gpu_check: %s\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
