/* bench_engine.c - the engine on the host backend:
 *   1. overhead per acquire+release (resident blocks: pure bookkeeping;
 *      streamed 4 KiB blocks: bookkeeping + copy hand-off to the workers);
 *   2. one pass over 40 streamed blocks with emulated compute on a
 *      bandwidth-limited link, against the bound max(compute, bytes/link);
 *   3. loops of passes (compute on a worker stream, as under CUDA), back to
 *      back and with a sync after each: the H100's 4,590-token shape against
 *      its bound, and three shapes against the planner's predictions.
 * Short on purpose (about 15 s): the machine is shared. */
#define _GNU_SOURCE
#include "backend.h"
#include "vram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct setup {
    vram_layout *layout;
    vram_hw *hw;
    vram_plan *plan;
    vram_engine *eng;
} setup;

static void setup_free(setup *s) {
    vram_engine_destroy(s->eng);
    vram_plan_free(s->plan);
    vram_hw_free(s->hw);
    vram_layout_free(s->layout);
}

/* compute_ms > 0: the planner is told the block compute time and the link
 * speed the emulation runs at, so it arranges the blocks for them, and that
 * a sync follows every pass (passes_per_step 1), as in loop_ms. slots 0:
 * the plan's. */
static int setup_make(setup *s, int n, uint64_t block_bytes, int swap, int slots, int streams,
                      double link_gbps, double compute_ms) {
    memset(s, 0, sizeof *s);
    uint64_t *sizes = malloc((size_t)n * sizeof *sizes);
    if (!sizes)
        return VRAM_E_NOMEM;
    for (int b = 0; b < n; b++)
        sizes[b] = block_bytes;
    int st = vram_layout_from_blocks(sizes, n, 0, 0, &s->layout);
    free(sizes);
    if (st == VRAM_OK)
        st = vram_hw_probe_dram_only(&s->hw);
    if (st == VRAM_OK)
        st = vram_hw_set_vram(s->hw, 0, 81559, 0);
    if (st == VRAM_OK)
        st = vram_hw_set_dram(s->hw, 16384, 16384);
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = swap;
    o.bandwidth_target = 1.0;
    if (compute_ms > 0) {
        o.measured_block_ms = compute_ms;
        o.measured_h2d_gbps = link_gbps;
        o.passes_per_step = 1;
    }
    if (st == VRAM_OK)
        st = vram_plan_create(s->layout, s->hw, &o, &s->plan);
    vram_engine_options eo;
    vram_engine_options_init(&eo);
    eo.backend = VRAM_BACKEND_HOST;
    eo.slot_count = slots;
    eo.copy_streams = streams;
    eo.host_bandwidth_gbps = link_gbps;
    if (st == VRAM_OK)
        st = vram_engine_create(s->plan, s->layout, &eo, &s->eng);
    return st;
}

/* Mean microseconds per acquire+release over `passes` passes, the compute
 * stream being `cs` (NULL: the calling thread, which waits for copies; a
 * worker stream: the host only issues, as under CUDA). *drain_us gets the
 * mean including the wait for the queued work to finish. */
static double overhead_us(setup *s, int n, int passes, void *cs, double *drain_us) {
    vram_backend *be = vram_engine_get_backend(s->eng);
    uint64_t addr;
    for (int b = 0; b < n; b++) { /* warm-up pass */
        vram_engine_acquire(s->eng, b, cs, &addr);
        vram_engine_release(s->eng, b, cs);
    }
    be->ops->stream_sync(be, cs);
    double t0 = vram_now_ms();
    for (int p = 0; p < passes; p++)
        for (int b = 0; b < n; b++) {
            if (vram_engine_acquire(s->eng, b, cs, &addr) ||
                vram_engine_release(s->eng, b, cs))
                return -1;
        }
    double t1 = vram_now_ms();
    be->ops->stream_sync(be, cs);
    vram_engine_synchronize(s->eng);
    if (drain_us)
        *drain_us = (vram_now_ms() - t0) * 1e3 / ((double)passes * n);
    return (t1 - t0) * 1e3 / ((double)passes * n);
}

/* One pass on the worker compute stream `cs`: the model's head, then every
 * block acquired, computed and released, as a PyTorch forward issues it. */
static int issue_pass(setup *s, int n, void *cs, double head_ms, double compute_ms) {
    vram_backend *be = vram_engine_get_backend(s->eng);
    uint64_t addr;
    int st = be->ops->spin(be, cs, head_ms);
    for (int b = 0; b < n && st == VRAM_OK; b++) {
        st = vram_engine_acquire(s->eng, b, cs, &addr);
        if (st == VRAM_OK)
            st = be->ops->spin(be, cs, compute_ms);
        if (st == VRAM_OK)
            st = vram_engine_release(s->eng, b, cs);
    }
    return st;
}

/* Everything queued: the compute stream and the engine's copies (what
 * torch.cuda.synchronize waits for). */
static int sync_all(setup *s, void *cs) {
    vram_backend *be = vram_engine_get_backend(s->eng);
    int st = be->ops->stream_sync(be, cs);
    return st ? st : vram_engine_synchronize(s->eng);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Milliseconds per pass over `passes` passes after a warm-up pass: back to
 * back (one synchronize at the end, as a sampler's passes run), or the
 * median of passes each followed by a synchronize (a timing loop, or a step
 * that reads a value back). */
static double loop_ms(setup *s, int n, void *cs, double head_ms, double compute_ms, int passes,
                      bool synced) {
    double t[16];
    if (passes > 16 || issue_pass(s, n, cs, head_ms, compute_ms) || sync_all(s, cs))
        return -1;
    double t0 = vram_now_ms();
    for (int p = 0; p < passes; p++) {
        double tp = vram_now_ms();
        if (issue_pass(s, n, cs, head_ms, compute_ms) || (synced && sync_all(s, cs)))
            return -1;
        t[p] = vram_now_ms() - tp;
    }
    if (!synced) {
        if (sync_all(s, cs))
            return -1;
        return (vram_now_ms() - t0) / passes;
    }
    qsort(t, (size_t)passes, sizeof *t, cmp_double);
    return t[passes / 2];
}

static int fail(const char *what, int st) {
    fprintf(stderr, "bench_engine: %s: %s: %s\n", what, vram_strerror(st), vram_last_error());
    return 1;
}

int main(void) {
    setup s;
    int st;
    printf("engine overhead per acquire+release (host backend, %s)\n",
           "mean over 200 passes of 40 blocks");
    if ((st = setup_make(&s, 40, 4096, 1, 2, 1, 0, 0)))
        return fail("setup", st);
    /* 39 resident blocks, 1 streamed (slot reused): pure bookkeeping. */
    double res = overhead_us(&s, 40, 200, NULL, NULL);
    setup_free(&s);
    if ((st = setup_make(&s, 40, 4096, 40, 2, 1, 0, 0)))
        return fail("setup", st);
    double str = overhead_us(&s, 40, 200, NULL, NULL);
    vram_engine_stats es = {.size = sizeof es};
    vram_engine_get_stats(s.eng, &es);
    /* The same on a worker compute stream: the host never waits. */
    vram_backend *be = vram_engine_get_backend(s.eng);
    void *cs = NULL;
    if ((st = be->ops->stream_create(be, &cs)))
        return fail("stream", st);
    double drain = 0, issue = overhead_us(&s, 40, 200, cs, &drain);
    be->ops->stream_destroy(be, cs);
    setup_free(&s);
    printf("  resident blocks:                  %7.2f us\n", res);
    printf("  streamed 4 KiB, caller computes:  %7.2f us (waits for each copy: thread "
           "hand-offs, %llu copies)\n",
           str, (unsigned long long)es.blocks_copied);
    printf("  streamed 4 KiB, compute stream:   %7.2f us to issue (%.2f us with the work "
           "drained)\n",
           issue, drain);

    /* 40 streamed 4 MiB blocks over a 4 GB/s link (1.05 ms per copy). */
    const int n = 40;
    const uint64_t bytes = 4u << 20;
    const double link = 4.0;
    const double compute_ms[2] = {2.0, 0.5};
    printf("\none pass, 40 streamed 4 MiB blocks, 2 slots, 1 copy stream, link %.1f GB/s\n",
           link);
    for (int c = 0; c < 2; c++) {
        if ((st = setup_make(&s, n, bytes, n, 2, 1, link, 0)))
            return fail("setup", st);
        vram_backend *be2 = vram_engine_get_backend(s.eng);
        uint64_t addr;
        double t0 = vram_now_ms();
        for (int b = 0; b < n && st == VRAM_OK; b++) {
            st = vram_engine_acquire(s.eng, b, NULL, &addr);
            if (st == VRAM_OK)
                st = be2->ops->spin(be2, NULL, compute_ms[c]); /* emulated compute */
            if (st == VRAM_OK)
                st = vram_engine_release(s.eng, b, NULL);
        }
        double ms = vram_now_ms() - t0;
        if (st)
            return fail("pass", st);
        vram_engine_get_stats(s.eng, &es);
        double copy_ms = (double)bytes * n / (link * 1e6);
        double total_compute = compute_ms[c] * n;
        double bound = copy_ms > total_compute ? copy_ms : total_compute;
        printf("  compute %.1f ms/block: pass %.1f ms, bound %.1f ms (%.2fx), overlap %.2f, "
               "compute waited %.1f ms\n",
               compute_ms[c], ms, bound, ms / bound, es.overlap_ratio, es.compute_wait_ms);
        setup_free(&s);
    }

    /* Wan 14B at 4,590 tokens on an H100 under a 24 GB cap, scaled down:
     * 24 of 40 blocks streamed, a copy 1.78x a block's compute (12.8 vs
     * 7.2 ms there), the head 0.25 of a block; copy-bound. */
    const uint64_t wan_bytes = 8u << 20;
    const double wan_link = 2.0, wan_copy = (double)wan_bytes / (wan_link * 1e6);
    const double wan_compute = wan_copy * 7.2 / 12.8, wan_head = wan_compute / 4;
    const int wan_swap = 24;
    if ((st = setup_make(&s, n, wan_bytes, wan_swap, 2, 1, wan_link, wan_compute)))
        return fail("setup", st);
    vram_backend *be3 = vram_engine_get_backend(s.eng);
    if ((st = be3->ops->stream_create(be3, &cs)))
        return fail("stream", st);
    vram_block_plan bp = {.size = sizeof bp};
    int first_streamed = -1;
    for (int b = 0; b < n && first_streamed < 0; b++)
        if (vram_plan_block(s.plan, b, &bp) == VRAM_OK && bp.placement == VRAM_PLACE_STREAMED)
            first_streamed = b;
    double wan_bound = wan_swap * wan_copy;
    double resident = wan_head + n * wan_compute;
    if (resident > wan_bound)
        wan_bound = resident;
    printf("\nloop of passes, %d of %d 8 MiB blocks streamed (first: block %d), 2 slots, link "
           "%.1f GB/s, compute %.2f ms/block (copy %.2f), compute on a worker stream\n",
           wan_swap, n, first_streamed, wan_link, wan_compute, wan_copy);
    for (int synced = 0; synced <= 1; synced++) {
        double ms = loop_ms(&s, n, cs, wan_head, wan_compute, 7, synced);
        if (ms < 0)
            return fail("loop", VRAM_E_DRIVER);
        printf("  %-37s %.1f ms per pass, bound %.1f ms (%.3fx)\n",
               synced ? "synchronized after each pass:" : "back to back:", ms, wan_bound,
               ms / wan_bound);
    }
    be3->ops->stream_destroy(be3, cs);
    setup_free(&s);

    /* The planner's predictions against the engine, each on its own plan
     * (arrangement, slots): copy-bound, balanced, compute-bound. */
    const struct {
        int swap;
        double compute_per_copy;
    } cases[] = {{24, 0.5625}, {30, 1.0}, {40, 1.5}};
    printf("\nthe plan's prediction vs the engine, %d 8 MiB blocks, link %.1f GB/s (copy %.2f ms), "
           "compute on a worker stream\n",
           n, wan_link, wan_copy);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double compute = wan_copy * cases[c].compute_per_copy;
        if ((st = setup_make(&s, n, wan_bytes, cases[c].swap, 0, 1, wan_link, compute)))
            return fail("setup", st);
        vram_plan_summary ps = {.size = sizeof ps};
        vram_backend *be4 = vram_engine_get_backend(s.eng);
        if ((st = vram_plan_get_summary(s.plan, &ps)) || (st = be4->ops->stream_create(be4, &cs)))
            return fail("plan", st);
        double b2b = loop_ms(&s, n, cs, 0, compute, 7, false);
        double synced = loop_ms(&s, n, cs, 0, compute, 7, true);
        if (b2b < 0 || synced < 0)
            return fail("loop", VRAM_E_DRIVER);
        printf("  %d streamed, %d slot(s), compute %.2f ms: back to back %.1f ms, predicted %.1f "
               "(%.3fx); synchronized %.1f ms, predicted %.1f (%.3fx)\n",
               ps.streamed_count, ps.slot_count, compute, b2b, ps.predicted_forward_ms,
               b2b / ps.predicted_forward_ms, synced, ps.predicted_step_ms,
               synced / ps.predicted_step_ms);
        be4->ops->stream_destroy(be4, cs);
        setup_free(&s);
    }
    return 0;
}
