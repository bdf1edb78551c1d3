/* bench_engine.c - the engine on the host backend:
 *   1. overhead per acquire+release (resident blocks: pure bookkeeping;
 *      streamed 4 KiB blocks: bookkeeping + copy hand-off to the workers);
 *   2. one pass over 40 streamed blocks with emulated compute on a
 *      bandwidth-limited link, against the bound max(compute, bytes/link).
 * Short on purpose (a few seconds): the machine is shared. */
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

static int setup_make(setup *s, int n, uint64_t block_bytes, int swap, int slots, int streams,
                      double link_gbps) {
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

static int fail(const char *what, int st) {
    fprintf(stderr, "bench_engine: %s: %s: %s\n", what, vram_strerror(st), vram_last_error());
    return 1;
}

int main(void) {
    setup s;
    int st;
    printf("engine overhead per acquire+release (host backend, %s)\n",
           "mean over 200 passes of 40 blocks");
    if ((st = setup_make(&s, 40, 4096, 1, 2, 1, 0)))
        return fail("setup", st);
    /* 39 resident blocks, 1 streamed (slot reused): pure bookkeeping. */
    double res = overhead_us(&s, 40, 200, NULL, NULL);
    setup_free(&s);
    if ((st = setup_make(&s, 40, 4096, 40, 2, 1, 0)))
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
        if ((st = setup_make(&s, n, bytes, n, 2, 1, link)))
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
    return 0;
}
