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

double vram_simulate(const vram_sim_block *b, int n, int streams, bool async,
                     double *copy_start, double *compute_start) {
    double slot_free[VRAM_PLAN_MAX_SLOTS] = {0};
    double stream_free[VRAM_PLAN_MAX_STREAMS] = {0};
    double stage_free = 0, link_free = 0, compute_end = 0, pass1_end = 0;
    if (streams < 1)
        streams = 1;
    if (streams > VRAM_PLAN_MAX_STREAMS)
        streams = VRAM_PLAN_MAX_STREAMS;
    int ordinal = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            const vram_sim_block *blk = &b[i];
            double start = compute_end;
            if (blk->slot >= 0) {
                double cs, ce;
                if (async) {
                    int s = ordinal % streams;
                    double ready = max2(slot_free[blk->slot], stream_free[s]);
                    double dma_ready = ready;
                    cs = ready;
                    if (blk->stage_ms > 0) {
                        cs = max2(ready, stage_free);
                        stage_free = cs + blk->stage_ms;
                        dma_ready = stage_free;
                    }
                    double ds = max2(dma_ready, link_free);
                    if (blk->stage_ms <= 0)
                        cs = ds;
                    ce = ds + blk->dma_ms;
                    link_free = ce;
                    stream_free[s] = ce;
                } else {
                    cs = compute_end;
                    ce = cs + blk->stage_ms + blk->dma_ms;
                }
                ordinal++;
                start = max2(start, ce);
                if (pass == 1 && copy_start)
                    copy_start[i] = cs - pass1_end;
            } else if (pass == 1 && copy_start) {
                copy_start[i] = 0;
            }
            compute_end = start + blk->compute_ms;
            if (blk->slot >= 0)
                slot_free[blk->slot] = compute_end;
            if (pass == 1 && compute_start)
                compute_start[i] = start - pass1_end;
        }
        if (pass == 0)
            pass1_end = compute_end;
    }
    return compute_end - pass1_end;
}
