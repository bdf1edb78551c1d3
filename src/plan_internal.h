/* plan_internal.h - the plan object and the pipeline simulator, shared by
 * plan.c, plan_sim.c and explain.c (not installed). */
#ifndef VRAM_PLAN_INTERNAL_H
#define VRAM_PLAN_INTERNAL_H

#include "internal.h"

/* Slots the planner considers (more never helped: with one copy link two
 * slots already keep it busy; four leave room for uneven blocks). */
#define VRAM_PLAN_MAX_SLOTS 4
#define VRAM_PLAN_MAX_STREAMS 16

/* Which blocks stream, among those of a group. */
typedef enum vram_arrangement {
    VRAM_ARR_SPREAD = 0, /* evenly between resident ones (Bresenham) */
    VRAM_ARR_LAST = 1,   /* the last N (kijai's WanVideoBlockSwap) */
    VRAM_ARR_FIRST = 2,  /* the first N */
    /* spread one phase later: block 0 resident, the last block streamed;
     * after spread so that ties keep spread */
    VRAM_ARR_SPREAD_LATE = 3,
    VRAM_ARR_COUNT
} vram_arrangement;

const char *vram_arrangement_name(int arrangement);
/* Marks `count` of the blocks lo..hi-1 as streamed (sets streamed[i] = 1;
 * the others in the range to 0). */
void vram_arrange(int arrangement, int lo, int hi, int count, unsigned char *streamed);

/* One block as the simulator sees it. A copy is host-side staging (pageable
 * or disk reads: a CPU memcpy or file read into a pinned bounce buffer)
 * followed by the DMA over the link; pinned blocks have no staging. */
typedef struct vram_sim_block {
    double compute_ms;
    double stage_ms, dma_ms; /* 0, 0 for resident blocks */
    int slot;                /* -1 for resident blocks */
} vram_sim_block;

/* Steady-state time of one pass over `n` blocks in order: two passes are
 * simulated with wrap-around (the first streamed blocks of pass 2 are
 * copied during the end of pass 1) and the second is reported. When
 * copy_start/compute_start are given they get pass 2's times relative to
 * its start (a negative copy start: prefetched during the previous pass).
 * async = false: copies run on the compute stream, one after the other. */
double vram_simulate(const vram_sim_block *b, int n, int streams, bool async,
                     double *copy_start, double *compute_start);

/* Mean time per pass when the caller synchronizes after every
 * `passes_per_sync` passes, as a sampler's step does (a scheduler moving a
 * CPU value to the GPU waits for the compute stream): the passes of a step
 * run back to back; across its end the engine has prefetched only
 * max(1, slots - 1) blocks, the sync waits for those copies too (as
 * torch.cuda.synchronize does; a stream sync would not, so this errs slow),
 * and the next step's other copies and its compute start after it. The
 * steady-state step (the second of two) is reported. */
double vram_simulate_steps(const vram_sim_block *b, int n, int streams, bool async,
                           int passes_per_sync);

/* What the plan saw of the hardware, so explain needs no hw. */
typedef struct vram_plan_memory {
    char gpu_name[VRAM_NAME_MAX];
    bool gpu_simulated;
    double bf16_tflops;
    bool tflops_known;
    double pinned_gbps, pageable_gbps, disk_gbps; /* used for prediction */
    bool bandwidth_known;
    uint64_t dram_total_bytes, dram_available_bytes;
    bool dram_known, dram_cgroup, dram_simulated;
} vram_plan_memory;

struct vram_plan {
    vram_plan_options opts; /* as given (defaults when NULL) */
    vram_plan_summary sum;
    vram_plan_memory mem;
    vram_block_plan *blocks; /* sum.block_count entries */
    unsigned char *vace;     /* 1 for VACE blocks */
    char model_name[VRAM_NAME_MAX];
    int dim, ffn_dim;
    bool dim_estimated;
    int arrangement;            /* vram_arrangement chosen */
    uint64_t block_peak_bytes;  /* while the blocks run */
    uint64_t early_peak_bytes;  /* while the embedders run */
    uint64_t rest_total_bytes;  /* all non-block weights */
};

#endif
