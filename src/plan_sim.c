/* plan_sim.c - block arrangements and the copy/compute pipeline simulator
 * the planner predicts forward time with.
 *
 * The model of the hardware (measured on an H100, see the reference notes):
 * - one compute stream runs the blocks in order;
 * - the PCIe link is one serial resource: pinned copies on 1, 2 or 4 streams
 *   reach the same 54 GB/s, so a second stream does not double bandwidth;
 * - pageable and disk copies first stage on the host (memcpy or read into a
 *   pinned bounce buffer), a second serial resource; with two or more copy
 *   streams one block's staging overlaps another's DMA, with one they are
 *   back to back;
 * - a streamed block's copy may start once its slot's previous block has
 *   finished computing and its copy stream is free; its compute starts once
 *   the previous block's compute and its own copy have ended.
 * Everything is FIFO in execution order, so one pass over the blocks is
 * exact for this model and costs O(blocks). */
#include "plan_internal.h"

const char *vram_arrangement_name(int arrangement) {
    switch (arrangement) {
    case VRAM_ARR_SPREAD:
        return "spread";
    case VRAM_ARR_LAST:
        return "last";
    case VRAM_ARR_FIRST:
        return "first";
    case VRAM_ARR_SPREAD_LATE:
        return "spread-late";
    default:
        return "unknown";
    }
}

void vram_arrange(int arrangement, int lo, int hi, int count, unsigned char *streamed) {
    int n = hi - lo;
    for (int i = 0; i < n; i++) {
        bool s;
        if (arrangement == VRAM_ARR_LAST)
            s = i >= n - count;
        else if (arrangement == VRAM_ARR_FIRST)
            s = i < count;
        else {
            /* Bresenham on the rounded-up share: exactly `count`, evenly spaced;
               block 0 streams and the last block stays resident (unless all
               stream). Block 0: under a sync between passes the copy engine idles
               until the first streamed block's slot frees, which is then one
               block's compute rather than every block up to it; the cost is one
               unhidden copy on the very first pass. The resident last block: in
               back-to-back passes block 0's copy hides behind it (streaming both
               ends leaves that copy exposed when both share a slot). Spread-late
               rounds down instead (block 0 resident, the last block streamed):
               back to back that phase is sometimes slightly faster. */
            int64_t up = arrangement == VRAM_ARR_SPREAD_LATE ? 0 : n - 1;
            s = ((int64_t)(i + 1) * count + up) / n > ((int64_t)i * count + up) / n;
        }
        streamed[lo + i] = s;
    }
}

static double max2(double a, double b) { return a > b ? a : b; }

/* The GPU's state as the simulation goes. */
typedef struct sim_state {
    double slot_free[VRAM_PLAN_MAX_SLOTS];
    double stream_free[VRAM_PLAN_MAX_STREAMS];
    double stage_free, link_free, compute_end;
    int streams, ordinal;
    bool async;
} sim_state;

static sim_state sim_begin(int streams, bool async) {
    sim_state s = {.async = async, .streams = streams};
    if (s.streams < 1)
        s.streams = 1;
    if (s.streams > VRAM_PLAN_MAX_STREAMS)
        s.streams = VRAM_PLAN_MAX_STREAMS;
    return s;
}

/* The copy of streamed block `blk`, not before `floor`; *end gets when it
 * ends, the return value when it starts. */
static double sim_copy(sim_state *s, const vram_sim_block *blk, double floor, double *end) {
    double cs;
    if (s->async) {
        int k = s->ordinal % s->streams;
        double ready = max2(max2(s->slot_free[blk->slot], s->stream_free[k]), floor);
        double dma_ready = ready;
        cs = ready;
        if (blk->stage_ms > 0) {
            cs = max2(ready, s->stage_free);
            s->stage_free = cs + blk->stage_ms;
            dma_ready = s->stage_free;
        }
        double ds = max2(dma_ready, s->link_free);
        if (blk->stage_ms <= 0)
            cs = ds;
        *end = ds + blk->dma_ms;
        s->link_free = *end;
        s->stream_free[k] = *end;
    } else {
        cs = max2(s->compute_end, floor);
        *end = cs + blk->stage_ms + blk->dma_ms;
    }
    s->ordinal++;
    return cs;
}

/* Block `blk`'s compute, after the previous block's, its copy (ending at
 * copy_end; 0 for resident blocks) and `floor`; returns its start. */
static double sim_compute(sim_state *s, const vram_sim_block *blk, double copy_end, double floor) {
    double start = max2(max2(s->compute_end, copy_end), floor);
    s->compute_end = start + blk->compute_ms;
    if (blk->slot >= 0)
        s->slot_free[blk->slot] = s->compute_end;
    return start;
}

double vram_simulate(const vram_sim_block *b, int n, int streams, bool async,
                     double *copy_start, double *compute_start) {
    sim_state s = sim_begin(streams, async);
    double pass1_end = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            double ce = 0, cs = 0;
            if (b[i].slot >= 0)
                cs = sim_copy(&s, &b[i], 0, &ce);
            double start = sim_compute(&s, &b[i], ce, 0);
            if (pass == 1 && copy_start)
                copy_start[i] = b[i].slot >= 0 ? cs - pass1_end : 0;
            if (pass == 1 && compute_start)
                compute_start[i] = start - pass1_end;
        }
        if (pass == 0)
            pass1_end = s.compute_end;
    }
    return s.compute_end - pass1_end;
}

double vram_simulate_steps(const vram_sim_block *b, int n, int streams, bool async,
                           int passes_per_sync) {
    sim_state s = sim_begin(streams, async);
    int slots = 0, streamed = 0;
    for (int i = 0; i < n; i++)
        if (b[i].slot >= 0) {
            streamed++;
            if (b[i].slot >= slots)
                slots = b[i].slot + 1;
        }
    int cross = async ? vram_prefetch_across_pass(slots, streamed) : 0;
    if (passes_per_sync < 1)
        passes_per_sync = 1;
    double sync = 0, measured_from = 0, cross_end[VRAM_PLAN_MAX_SLOTS];
    for (int step = 0; step < 3; step++) {
        int ncross = 0;
        if (step > 0) {
            /* The next step's first copies are queued before the sync
             * returns, and the sync waits for them. */
            for (int i = 0; i < n && ncross < cross; i++)
                if (b[i].slot >= 0)
                    sim_copy(&s, &b[i], sync, &cross_end[ncross++]);
            sync = max2(s.compute_end, s.link_free);
            if (step == 2)
                break;
            measured_from = sync;
        }
        for (int pass = 0; pass < passes_per_sync; pass++) {
            int j = 0;
            for (int i = 0; i < n; i++) {
                double ce = 0;
                if (b[i].slot >= 0) {
                    if (pass == 0 && j < ncross)
                        ce = cross_end[j];
                    else
                        sim_copy(&s, &b[i], sync, &ce);
                    j++;
                }
                sim_compute(&s, &b[i], ce, sync);
            }
        }
    }
    return (sync - measured_from) / passes_per_sync;
}
