/* plan.c - the planner: which blocks stay on the GPU, which stream, through
 * how many slots and copy streams, from which DRAM tier, and how long a
 * forward pass will take.
 *
 * Memory (all on the GPU the plan targets):
 *   budget    = total - used - reserve% x total
 *   cap       = threshold% x total: the rest kept on the GPU plus the
 *               resident blocks stay under it, so a lower threshold streams
 *               more and leaves more room for activations;
 *   peak      = max(block phase, embedding phase) where
 *     block phase     = rest on GPU + resident + slots + activations
 *     embedding phase = all rest (embedders included) + resident + slots
 *                       + the embedders' small activations
 *   offload_txt_emb / offload_img_emb take the embedders off the GPU while
 *   the blocks run, which is when the activations peak.
 *
 * Auto mode streams the fewest blocks that satisfy the cap and the budget,
 * tries four arrangements (spread, last N, first N, spread-late) and 1..4
 * slots by simulating the pipeline (plan_sim.c), keeps the fastest
 * arrangement and the smallest slot count within 1% of the best, then
 * lowers the bandwidth share while the predicted time stays within 1%.
 * Manual mode takes the block counts, copy streams and bandwidth share as
 * given (an explicit count is honoured even above the threshold: the user
 * asked for it) and still refuses a plan over the budget; blocks_to_swap = 0
 * is the automatic count. Everything is a pure function of its inputs. */
#include "plan_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fallbacks when the GPU's numbers are unknown (a bare --vram-total): a
 * PCIe Gen3 x16 link and a modest GPU; explain marks them as estimates. */
#define DEFAULT_PINNED_GBPS 12.0
#define DEFAULT_TFLOPS 50.0
/* Activations of a block, per token, as measured on diffusers'
 * WanTransformerBlock in bf16 (torch's profiler on the CPU across dims and
 * FFN widths; torch's peak allocated on an H100 at 4,590 and 32,760 tokens,
 * docs/gpu/2026-11-27-h100): self-attention holds about 23 bytes per model
 * dim (bf16 q, k, v, the fp32 rotary temporaries, fp32 norm and residual
 * copies), the FFN 9 per dim plus 4 per FFN dim (its bf16 up projection
 * and GELU output); the larger phase is the peak. */
#define ACT_ATTENTION_PER_DIM 23.0
#define ACT_FFN_PER_DIM 9.0
#define ACT_PER_FFN_DIM 4.0
/* torch's caching allocator held 1.4x (4,590 tokens) to 1.6x (32,760) of the
 * activation bytes it handed out on that H100; the GPU loses what it holds. */
#define ACT_ALLOCATOR_SLACK 1.6
#define ACT_FIXED_BYTES (64.0 * VRAM_MIB)
/* When a layout does not know its width: dim from params per block
 * (Wan: 13.4 dim^2) and the FFN width as a multiple of dim. */
#define PARAMS_PER_DIM2 13.4
#define FFN_PER_DIM 2.7
/* Output width of the text encoder (umt5-xxl) the text embedder reads. */
#define TEXT_ENCODER_DIM 4096.0
#define SAME_TIME 1.01 /* "within 1%" */

void vram_plan_options_init(vram_plan_options *o) {
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->gpu_index = 0;
    o->vram_threshold_percent = 50;
    o->safety_reserve_percent = 10;
    o->dram_usable_fraction = 0.8;
    o->width = 832;
    o->height = 480;
    o->frames = 81;
    o->text_tokens = 512;
    o->passes_per_step = 2;
    o->auto_hardware_tuning = true;
    o->blocks_to_swap = 0;
    o->num_cuda_streams = 8;
    o->bandwidth_target = 0.8;
    o->vace_blocks_to_swap = 0;
    o->offload_txt_emb = false;
    o->offload_img_emb = false;
    o->enable_cuda_optimization = true;
    o->enable_dram_optimization = true;
    o->measured_h2d_gbps = 0;
    o->measured_block_ms = 0;
    o->max_pinned_mb = 0;
    o->disk_gbps = 2.0;
}

/* The numeric options' allowed values, one row per field: the validation
 * below checks each field against its row, and vram_plan_option_range hands
 * the rows to bindings and UIs, so no caller states a range of its own.
 * blocks_to_swap and vace_blocks_to_swap are also bounded by the model's
 * block counts when a plan is made (plan_blocks), and vace_blocks_to_swap's
 * row is raised for a model with more VACE blocks (validate_options). */
typedef struct option_rule {
    const char *name;
    size_t offset;       /* of the field in vram_plan_options */
    bool integer;        /* an int field, else a double */
    double min, max;     /* both allowed; max HUGE_VAL: no upper bound */
    bool min_excluded;   /* only values above min */
    int step;            /* > 0: value - min is a multiple of it */
    bool manual_only;    /* read only with auto_hardware_tuning off */
    bool zero_unset;     /* 0 means "not set" */
    const char *note;    /* appended to the message */
} option_rule;

#define RULE(field, integer, min, max, min_excluded, step, manual_only, note)                   \
    {#field, offsetof(vram_plan_options, field), integer, min, max, min_excluded, step,       \
     manual_only, false, note}
/* A double whose 0 means "not set". */
#define RULE_UNSET(field, max) \
    {#field, offsetof(vram_plan_options, field), false, 0, max, false, 0, false, true, " (0 = not set)"}
static const option_rule rules[] = {
    /*   field, integer, min, max, min_excluded, step, manual_only, note */
    RULE(gpu_index, true, 0, 1023, false, 0, false, ""),
    RULE(vram_threshold_percent, false, 10, 95, false, 0, false, ""),
    RULE(safety_reserve_percent, false, 0, 50, false, 0, false, ""),
    RULE(dram_usable_fraction, false, 0, 1, true, 0, false, ""),
    RULE(width, true, 16, 8192, false, 16, false, ""),
    RULE(height, true, 16, 8192, false, 16, false, ""),
    RULE(frames, true, 1, 1001, false, 4, false, " (81, 121)"),
    RULE(text_tokens, true, 1, 4096, false, 0, false, ""),
    RULE(passes_per_step, true, 1, 4, false, 0, false, ""),
    RULE(blocks_to_swap, true, 0, 1 << 16, false, 0, true, ""),
    RULE(num_cuda_streams, true, 1, VRAM_PLAN_MAX_STREAMS, false, 0, true, ""),
    RULE(bandwidth_target, false, 0.1, 1.0, false, 0, true, ""),
    RULE(vace_blocks_to_swap, true, 0, 15, false, 0, true, ""),
    RULE_UNSET(measured_h2d_gbps, 10000),
    RULE_UNSET(measured_block_ms, 1e6),
    RULE_UNSET(max_pinned_mb, HUGE_VAL),
    RULE(disk_gbps, false, 0.01, 1000, false, 0, false, ""),
};
#undef RULE
#undef RULE_UNSET
#define RULE_COUNT (int)(sizeof rules / sizeof rules[0])

static const option_rule *find_rule(const char *name) {
    for (int i = 0; i < RULE_COUNT; i++)
        if (strcmp(rules[i].name, name) == 0)
            return &rules[i];
    return NULL;
}

int vram_plan_option_range(const char *name, vram_option_range *out) {
    VRAM_CHECK_STRUCT(out, vram_option_range);
    if (!name)
        return vram_fail(VRAM_E_INVALID, "vram_plan_option_range: name is NULL");
    const option_rule *r = find_rule(name);
    if (!r)
        return vram_fail(VRAM_E_NOT_FOUND,
                         "'%s' is not a numeric field of vram_plan_options: it has no range",
                         name);
    out->min = r->min;
    out->max = r->max;
    out->min_excluded = r->min_excluded;
    out->integer = r->integer;
    out->step = r->step;
    out->manual_only = r->manual_only;
    out->zero_unset = r->zero_unset;
    return VRAM_OK;
}

/* The field's value against its row (NaN and infinities fail); the message
 * names the field and says what is allowed. */
static int check_rule(const option_rule *r, const vram_plan_options *o) {
    const char *field = (const char *)o + r->offset;
    double v;
    char shown[32];
    if (r->integer) {
        int i;
        memcpy(&i, field, sizeof i);
        v = i;
        snprintf(shown, sizeof shown, "%d", i);
    } else {
        memcpy(&v, field, sizeof v);
        snprintf(shown, sizeof shown, "%g", v);
    }
    bool ok = isfinite(v) && (r->min_excluded ? v > r->min : v >= r->min) && v <= r->max &&
              (r->step == 0 || fmod(v - r->min, r->step) == 0);
    if (ok)
        return VRAM_OK;
    if (isinf(r->max))
        return vram_fail(VRAM_E_RANGE, "%s is %s, allowed %g or more%s", r->name, shown, r->min,
                         r->note);
    if (r->min_excluded)
        return vram_fail(VRAM_E_RANGE, "%s is %s, allowed more than %g up to %g%s", r->name,
                         shown, r->min, r->max, r->note);
    char steps[48] = "";
    if (r->step && fmod(r->min, r->step) == 0)
        snprintf(steps, sizeof steps, " in multiples of %d", r->step);
    else if (r->step)
        snprintf(steps, sizeof steps, " of the form %dk+%g", r->step, fmod(r->min, r->step));
    return vram_fail(VRAM_E_RANGE, "%s is %s, allowed %g-%g%s%s", r->name, shown, r->min, r->max,
                     steps, r->note);
}

/* The options against the rules. vace_blocks_to_swap's 15 is the most VACE
 * blocks a Wan model has: a model with more (`vace_blocks`) allows them all,
 * so that options can state every plan of it (an auto plan may stream more
 * than 15, and vram_plan_stream_more's manual step keeps them streaming). */
static int validate_options(const vram_plan_options *o, int vace_blocks) {
    VRAM_CHECK_STRUCT(o, vram_plan_options);
    for (int i = 0; i < RULE_COUNT; i++) {
        option_rule r = rules[i];
        if (r.offset == offsetof(vram_plan_options, vace_blocks_to_swap) && vace_blocks > r.max) {
            r.max = vace_blocks;
            r.note = " for this model";
        }
        int st = check_rule(&r, o);
        if (st)
            return st;
    }
    return VRAM_OK;
}

int vram_plan_options_validate(const vram_plan_options *o) { return validate_options(o, 0); }

/* ------------------------------------------------------------------ */
/* Planner state                                                       */
/* ------------------------------------------------------------------ */

typedef struct planner {
    const vram_plan_options *o;
    int n, n_main;
    bool joint;              /* auto: all blocks arranged as one sequence */
    uint64_t *bytes;         /* packed bytes per block */
    double *compute_ms;      /* per block */
    unsigned char *streamed; /* the candidate under evaluation */
    int *tier;
    vram_sim_block *sim;
    uint64_t rest_on, rest_full, act, embed_act;
    uint64_t act_allocated; /* act without the allocator's cache */
    bool tight;             /* act is act_allocated: nothing fit beside the cache */
    uint64_t budget, cap, pinned_budget, dram_usable;
    double pinned_gbps, pageable_gbps, disk_gbps;
    bool async;
} planner;

/* Bytes of a candidate. */
typedef struct footprint {
    int count;
    uint64_t resident, streamed, slot; /* slot: the largest streamed block */
} footprint;

static footprint measure(const planner *p) {
    footprint f = {0};
    for (int i = 0; i < p->n; i++) {
        if (p->streamed[i]) {
            f.count++;
            f.streamed += p->bytes[i];
            if (p->bytes[i] > f.slot)
                f.slot = p->bytes[i];
        } else {
            f.resident += p->bytes[i];
        }
    }
    return f;
}

static uint64_t block_peak(const planner *p, const footprint *f, int slots) {
    return p->rest_on + f->resident + (uint64_t)slots * f->slot + p->act;
}

static uint64_t early_peak(const planner *p, const footprint *f, int slots) {
    return p->rest_full + f->resident + (uint64_t)slots * f->slot + p->embed_act;
}

static uint64_t peak(const planner *p, const footprint *f, int slots) {
    uint64_t a = block_peak(p, f, slots), b = early_peak(p, f, slots);
    return a > b ? a : b;
}

/* The threshold bounds resident blocks; when the rest alone is over it no
 * block is resident, which is the most the threshold can ask. */
static bool within_threshold(const planner *p, const footprint *f) {
    return f->resident == 0 || p->rest_on + f->resident <= p->cap;
}

static void arrange(planner *p, int arrangement, int count_main, int count_vace) {
    if (p->joint) {
        vram_arrange(arrangement, 0, p->n, count_main, p->streamed);
    } else {
        vram_arrange(arrangement, 0, p->n_main, count_main, p->streamed);
        vram_arrange(arrangement, p->n_main, p->n, count_vace, p->streamed);
    }
}

/* Tiers for the streamed blocks in execution order: pinned while the
 * pinned budget lasts, then pageable while usable DRAM lasts, then disk (the
 * model file, or the engine's spill file for blocks not in one). Held back:
 * `pinned_reserve` bytes of the pinned budget, `dram_reserve` of DRAM. */
static void assign_tiers_reserving(planner *p, uint64_t pinned_reserve, uint64_t dram_reserve) {
    uint64_t pinned_cap = p->pinned_budget > pinned_reserve ? p->pinned_budget - pinned_reserve : 0;
    uint64_t dram_cap = p->dram_usable > dram_reserve ? p->dram_usable - dram_reserve : 0;
    uint64_t pinned = 0, dram = 0;
    for (int i = 0; i < p->n; i++) {
        if (!p->streamed[i]) {
            p->tier[i] = VRAM_TIER_DEVICE;
            continue;
        }
        uint64_t b = p->bytes[i];
        if (pinned + b <= pinned_cap && dram + b <= dram_cap) {
            p->tier[i] = VRAM_TIER_PINNED;
            pinned += b;
            dram += b;
        } else if (dram + b <= dram_cap) {
            p->tier[i] = VRAM_TIER_PAGEABLE;
            dram += b;
        } else {
            p->tier[i] = VRAM_TIER_DISK;
        }
    }
}

static int copy_streams(const planner *p);

static bool any_disk(const planner *p) {
    for (int i = 0; i < p->n; i++)
        if (p->streamed[i] && p->tier[i] == VRAM_TIER_DISK)
            return true;
    return false;
}

/* Whether the engine's staging buffers are pinned: it pins them within the
 * pinned budget, so they are when pinning is on and the budget holds one as
 * large as the largest streamed block (copy_streams keeps to as many as it
 * holds). Otherwise it copies pageable blocks straight from their regions,
 * as with pinning off, and reads disk blocks through pageable buffers. */
static bool pinned_staging(const planner *p) {
    return p->o->enable_dram_optimization && p->pinned_budget >= measure(p).slot;
}

/* Whether the engine will stage copies through per-stream buffers: always
 * for the disk tier, for pageable blocks when copies are async and the
 * buffers are pinned (a pageable one would only add a memcpy). */
static bool needs_staging(const planner *p) {
    bool stage_pageable = p->async && pinned_staging(p);
    for (int i = 0; i < p->n; i++)
        if (p->streamed[i] && (p->tier[i] == VRAM_TIER_DISK ||
                               (stage_pageable && p->tier[i] == VRAM_TIER_PAGEABLE)))
            return true;
    return false;
}

static void assign_tiers(planner *p) {
    assign_tiers_reserving(p, 0, 0);
    if (!needs_staging(p))
        return;
    /* Staging (disk reads, pageable copies) takes buffers as large as the
     * largest streamed block (vram_staging_buffers): that DRAM is not the
     * tiers', nor, when they are pinned, that part of the pinned budget. */
    uint64_t staging = (uint64_t)vram_staging_buffers(copy_streams(p)) * measure(p).slot;
    assign_tiers_reserving(p, pinned_staging(p) ? staging : 0, staging);
}

static bool all_pinned(const planner *p) {
    for (int i = 0; i < p->n; i++)
        if (p->streamed[i] && p->tier[i] != VRAM_TIER_PINNED)
            return false;
    return true;
}

/* Copy streams for the current tiers: one for pinned-only (one link: more
 * add nothing), two when staging can overlap DMA; manual takes the value.
 * With staging, several streams share two buffers as large as the largest
 * block; where usable (pinned) DRAM holds only one, one stream. */
static int copy_streams(const planner *p) {
    if (!p->async)
        return 0;
    footprint f = measure(p);
    int n = !p->o->auto_hardware_tuning ? p->o->num_cuda_streams
            : f.count                   ? (all_pinned(p) ? 1 : 2)
                                        : 0;
    if (n > 1 && needs_staging(p)) {
        /* Buffers come from the pinned budget when pinned, else from usable
         * DRAM; with room for one only, one stream. */
        uint64_t room = pinned_staging(p) ? p->pinned_budget : p->dram_usable;
        if (room / f.slot < (uint64_t)vram_staging_buffers(n))
            n = 1;
    }
    return n;
}

static double ms_for(uint64_t bytes, double gbps) { return (double)bytes / (gbps * 1e6); }

/* Fills the simulator's view: slots round-robin in execution order, copy =
 * staging (non-pinned tiers, at the tier's speed minus the DMA part) + DMA
 * at the link speed times the bandwidth share. */
static void build_sim(planner *p, int slots, double share) {
    int ordinal = 0;
    for (int i = 0; i < p->n; i++) {
        vram_sim_block *s = &p->sim[i];
        s->compute_ms = p->compute_ms[i];
        if (!p->streamed[i]) {
            s->slot = -1;
            s->stage_ms = s->dma_ms = 0;
            continue;
        }
        uint64_t b = p->bytes[i];
        double full_dma = ms_for(b, p->pinned_gbps);
        double tier_ms = p->tier[i] == VRAM_TIER_PINNED     ? full_dma
                         : p->tier[i] == VRAM_TIER_PAGEABLE ? ms_for(b, p->pageable_gbps)
                                                            : ms_for(b, p->disk_gbps);
        s->slot = ordinal++ % slots;
        s->dma_ms = full_dma / share;
        s->stage_ms = tier_ms > full_dma ? tier_ms - full_dma : 0;
    }
}

/* Mean time per pass of a sampling step (passes_per_step passes, then a
 * synchronize): what candidates are ranked by. */
static double step_pass_ms(planner *p, int slots, double share) {
    build_sim(p, slots < 1 ? 1 : slots, share);
    return vram_simulate_steps(p->sim, p->n, copy_streams(p), p->async, p->o->passes_per_step);
}

/* The best plan found for one candidate count. */
typedef struct choice {
    bool found;
    int arrangement, slots;
    double time;
} choice;

/* Picks arrangement and slot count for the given counts: every arrangement
 * whose memory and tiers hold is simulated with 1..4 slots within the
 * budget; the fastest arrangement wins (ties: the earlier, spread first),
 * then the fewest slots within 1% of its best time. */
static choice best_arrangement(planner *p, int count_main, int count_vace, bool use_threshold,
                               double share) {
    choice best = {.found = false};
    for (int a = 0; a < VRAM_ARR_COUNT; a++) {
        arrange(p, a, count_main, count_vace);
        footprint f = measure(p);
        if (use_threshold && !within_threshold(p, &f))
            continue;
        int min_slots = f.count ? 1 : 0;
        if (peak(p, &f, min_slots) > p->budget)
            continue;
        assign_tiers(p);
        int max_slots = !p->async ? min_slots
                        : f.count < VRAM_PLAN_MAX_SLOTS ? f.count
                                                        : VRAM_PLAN_MAX_SLOTS;
        double times[VRAM_PLAN_MAX_SLOTS + 1];
        int top = min_slots;
        double fastest = 0;
        for (int k = min_slots; k <= max_slots && peak(p, &f, k) <= p->budget; k++) {
            times[k] = step_pass_ms(p, k, share);
            if (k == min_slots || times[k] < fastest)
                fastest = times[k];
            top = k;
        }
        int slots = min_slots;
        while (slots < top && times[slots] > fastest * SAME_TIME)
            slots++;
        if (!best.found || fastest < best.time * (1 - 1e-9)) {
            best = (choice){.found = true, .arrangement = a, .slots = slots, .time = fastest};
        }
    }
    return best;
}

/* Why a candidate count cannot work, for the error message. */
static int explain_no_fit(planner *p, int count_main, int count_vace, bool explicit) {
    arrange(p, VRAM_ARR_SPREAD, count_main, count_vace);
    footprint f = measure(p);
    int slots = f.count ? 1 : 0;
    bool early = early_peak(p, &f, slots) > block_peak(p, &f, slots);
    uint64_t need = peak(p, &f, slots);
    uint64_t rest = early ? p->rest_full : p->rest_on, act = early ? p->embed_act : p->act;
    if (need <= p->budget && !within_threshold(p, &f))
        return vram_fail(VRAM_E_DOES_NOT_FIT,
                         "resident weights take %.1f MiB (rest %.1f + resident blocks %.1f), over "
                         "the VRAM threshold of %.1f MiB (%.0f%%); raise vram_threshold_percent "
                         "or stream more blocks (VACE blocks too: vace_blocks_to_swap)",
                         (p->rest_on + f.resident) / VRAM_MIB, p->rest_on / VRAM_MIB,
                         f.resident / VRAM_MIB, p->cap / VRAM_MIB,
                         p->o->vram_threshold_percent);
    if (explicit)
        return vram_fail(VRAM_E_DOES_NOT_FIT,
                         "blocks_to_swap=%d (vace %d) needs %.1f MiB (rest %.1f + resident %.1f + "
                         "slot %.1f + activations %.1f), budget %.1f MiB; stream more blocks or "
                         "turn auto_hardware_tuning on",
                         count_main, count_vace, need / VRAM_MIB, rest / VRAM_MIB,
                         f.resident / VRAM_MIB, f.slot / VRAM_MIB, act / VRAM_MIB,
                         p->budget / VRAM_MIB);
    return vram_fail(VRAM_E_DOES_NOT_FIT,
                     "needs %.1f MiB (rest %.1f + resident %.1f + slot %.1f + activations %.1f), "
                     "budget %.1f MiB; lower the resolution or frames, offload the embedders, "
                     "or free VRAM",
                     need / VRAM_MIB, rest / VRAM_MIB, f.resident / VRAM_MIB, f.slot / VRAM_MIB,
                     act / VRAM_MIB, p->budget / VRAM_MIB);
}

/* ------------------------------------------------------------------ */
/* Inputs                                                              */
/* ------------------------------------------------------------------ */

static int read_gpu(const vram_hw *hw, int index, vram_gpu_info *gi) {
    int count = vram_hw_gpu_count(hw);
    if (index >= count)
        return vram_fail(VRAM_E_NO_DEVICE,
                         "no GPU %d to plan for (%d found); simulate one with --gpu NAME or "
                         "--vram-total MB (vram_hw_simulate_gpu / vram_hw_set_vram)",
                         index, count < 0 ? 0 : count);
    memset(gi, 0, sizeof *gi);
    gi->size = sizeof *gi;
    int st = vram_hw_gpu(hw, index, gi);
    if (st)
        return st;
    if (!gi->memory_known || gi->total_bytes == 0)
        return vram_fail(VRAM_E_NO_DEVICE,
                         "memory of GPU %d is unknown; give it with --vram-total MB "
                         "(vram_hw_set_vram)",
                         index);
    return VRAM_OK;
}

static void read_dram(const vram_hw *hw, vram_plan_memory *m) {
    vram_dram_info di;
    memset(&di, 0, sizeof di);
    di.size = sizeof di;
    if (vram_hw_dram(hw, &di) != VRAM_OK || !di.meminfo_known)
        return;
    m->dram_known = true;
    m->dram_cgroup = di.cgroup_known;
    m->dram_simulated = di.simulated;
    m->dram_total_bytes = vram_dram_usable_total(&di);
    /* The probe already limits "available" to what the cgroup leaves. */
    m->dram_available_bytes = di.available_bytes;
}

static void free_planner(planner *p) {
    free(p->bytes);
    free(p->compute_ms);
    free(p->streamed);
    free(p->tier);
    free(p->sim);
}

/* Per-block sizes, files and compute times; the plan's architecture. */
static int read_layout(planner *p, const vram_layout *layout, const vram_layout_info *info,
                       vram_plan *plan, double tokens, double tflops) {
    int n = p->n;
    size_t cap = n > 0 ? (size_t)n : 1;
    p->bytes = calloc(cap, sizeof *p->bytes);
    p->compute_ms = calloc(cap, sizeof *p->compute_ms);
    p->streamed = calloc(cap, 1);
    p->tier = calloc(cap, sizeof *p->tier);
    p->sim = calloc(cap, sizeof *p->sim);
    plan->blocks = calloc(cap, sizeof *plan->blocks);
    plan->vace = calloc(cap, 1);
    double *linear = calloc(cap, sizeof *linear);
    if (!p->bytes || !p->compute_ms || !p->streamed || !p->tier || !p->sim ||
        !plan->blocks || !plan->vace || !linear) {
        free(linear);
        return vram_fail(VRAM_E_NOMEM, "out of memory planning %d blocks", n);
    }
    size_t elem = vram_dtype_size(info->main_dtype);
    if (!elem)
        elem = 2;
    double max_params = 0, main_bytes = 0, all_bytes = 0;
    int main_count = 0;
    for (int i = 0; i < n; i++) {
        vram_block_info bi;
        memset(&bi, 0, sizeof bi);
        bi.size = sizeof bi;
        int st = vram_layout_block(layout, i, &bi);
        if (st) {
            free(linear);
            return st;
        }
        p->bytes[i] = bi.packed_bytes ? bi.packed_bytes : vram_align_up(bi.nbytes);
        all_bytes += (double)p->bytes[i];
        plan->vace[i] = bi.group == VRAM_GROUP_VACE;
        double params = bi.params ? (double)bi.params : (double)bi.nbytes / (double)elem;
        linear[i] = bi.linear_params ? (double)bi.linear_params : params;
        if (!plan->vace[i] || main_count == 0) {
            if (params > max_params)
                max_params = params;
        }
        if (!plan->vace[i]) {
            main_bytes += (double)p->bytes[i];
            main_count++;
        }
    }
    plan->dim_estimated = info->dim <= 0;
    double dim = info->dim > 0 ? info->dim : sqrt(max_params / PARAMS_PER_DIM2);
    double ffn = info->ffn_dim > 0 ? info->ffn_dim : FFN_PER_DIM * dim;
    plan->dim = (int)lround(dim);
    plan->ffn_dim = (int)lround(ffn);
    /* Self-attention 4 T^2 dim, cross-attention 4 T L dim, matmuls 2 T params. */
    /* measured_block_ms is a mean main block's; blocks scale with their size
     * (a VACE-only model: its blocks' mean). */
    double ref_bytes = main_count ? main_bytes / main_count : n ? all_bytes / n : 0;
    for (int i = 0; i < n; i++) {
        if (p->o->measured_block_ms > 0) {
            p->compute_ms[i] = p->o->measured_block_ms *
                               (ref_bytes > 0 ? (double)p->bytes[i] / ref_bytes : 1);
        } else {
            double flops = 2 * tokens * linear[i] + 4 * tokens * tokens * dim +
                           4 * tokens * p->o->text_tokens * dim;
            p->compute_ms[i] = flops / (tflops * 1e12) * 1e3;
        }
    }
    free(linear);
    double act_per_token = fmax(ACT_ATTENTION_PER_DIM * dim,
                                ACT_FFN_PER_DIM * dim + ACT_PER_FFN_DIM * ffn);
    p->act_allocated = (uint64_t)(tokens * act_per_token);
    p->act = (uint64_t)(tokens * act_per_token * ACT_ALLOCATOR_SLACK);
    p->embed_act = (uint64_t)(4 * (p->o->text_tokens * (TEXT_ENCODER_DIM + dim) + tokens * dim) +
                              ACT_FIXED_BYTES);
    return VRAM_OK;
}

/* ------------------------------------------------------------------ */
/* vram_plan_create                                                    */
/* ------------------------------------------------------------------ */

/* Smallest main-group count that fits, with its choice; or the error for
 * the first count the VRAM holds (streaming more only needs more DRAM) or,
 * when even all streamed does not fit, for that. */
static int search_count(planner *p, int vace_count, bool use_threshold, double share,
                        choice *out, int *count) {
    int hi = p->joint ? p->n : p->n_main;
    for (int c = 0; c <= hi; c++) {
        choice ch = best_arrangement(p, c, vace_count, use_threshold, share);
        if (ch.found) {
            *out = ch;
            *count = c;
            return VRAM_OK;
        }
    }
    return explain_no_fit(p, hi, vace_count, false);
}

/* The smallest share within 1% of full speed, doubled: the copies then hide
 * even if compute runs twice as fast as predicted (estimates from a profile
 * can be that far off until the first measured forward replaces them).
 * Full speed when copies are staged (pageable, disk): the host side bounds
 * them already, and the pauses that pace a copy are host functions, which
 * CUDA runs one at a time on one driver thread, where they would hold up
 * the staging of the other stream's blocks. */
static double pick_share(planner *p, const choice *ch) {
    if (needs_staging(p))
        return 1.0;
    double full = step_pass_ms(p, ch->slots, 1.0);
    for (int step = 2; step < 20; step++) {
        double share = step * 0.05;
        if (step_pass_ms(p, ch->slots, share) <= full * SAME_TIME)
            return share * 2 < 1.0 ? share * 2 : 1.0;
    }
    return 1.0;
}

static int fill_summary(planner *p, vram_plan *plan, const vram_gpu_info *gi, const choice *ch,
                        double share, double tokens) {
    vram_plan_summary *s = &plan->sum;
    const vram_plan_options *o = p->o;
    footprint f = measure(p);
    s->size = sizeof *s;
    s->manual = !o->auto_hardware_tuning;
    s->fits = true;
    s->block_count = p->n;
    s->streamed_count = f.count;
    s->resident_count = p->n - f.count;
    s->slot_count = ch->slots;
    s->prefetch_depth = p->async ? ch->slots : 0;
    s->copy_streams = copy_streams(p);
    s->bandwidth_target = share;
    s->async_copies = p->async;
    s->pinned_memory = o->enable_dram_optimization;
    s->vram_total_bytes = gi->total_bytes;
    s->vram_used_bytes = gi->used_bytes;
    s->budget_bytes = p->budget;
    s->threshold_bytes = p->cap;
    s->resident_bytes = f.resident;
    s->rest_bytes = p->rest_on;
    s->offloaded_rest_bytes = p->rest_full - p->rest_on;
    s->slot_bytes = (uint64_t)ch->slots * f.slot;
    s->activation_bytes = p->act;
    s->tight_activations = p->tight;
    s->predicted_peak_bytes = peak(p, &f, ch->slots);
    s->streamed_bytes = f.streamed;
    s->pinned_budget_bytes = p->pinned_budget;
    s->dram_usable_bytes = p->dram_usable;
    s->h2d_gbps = p->pinned_gbps;
    s->h2d_measured = o->measured_h2d_gbps > 0 || (gi->bandwidth_known && gi->bandwidth_measured);
    s->compute_measured = o->measured_block_ms > 0;
    s->tokens = (int)tokens;
    plan->block_peak_bytes = block_peak(p, &f, ch->slots);
    plan->early_peak_bytes = early_peak(p, &f, ch->slots);

    double *copy_start = calloc(p->n ? (size_t)p->n : 1, sizeof *copy_start);
    double *compute_start = calloc(p->n ? (size_t)p->n : 1, sizeof *compute_start);
    if (!copy_start || !compute_start) {
        free(copy_start);
        free(compute_start);
        return vram_fail(VRAM_E_NOMEM, "out of memory planning %d blocks", p->n);
    }
    s->predicted_step_ms = step_pass_ms(p, ch->slots, share) * o->passes_per_step;
    s->predicted_forward_ms =
        vram_simulate(p->sim, p->n, copy_streams(p), p->async, copy_start, compute_start);
    double compute_sum = 0, copy_sum = 0;
    for (int i = 0; i < p->n; i++) {
        vram_block_plan *b = &plan->blocks[i];
        const vram_sim_block *sb = &p->sim[i];
        b->size = sizeof *b;
        b->block = i;
        b->placement = p->streamed[i] ? VRAM_PLACE_STREAMED : VRAM_PLACE_RESIDENT;
        b->tier = p->tier[i];
        b->slot = sb->slot;
        b->compute_ms = sb->compute_ms;
        b->copy_ms = sb->stage_ms + sb->dma_ms;
        b->predicted_copy_start_ms = copy_start[i];
        b->predicted_compute_start_ms = compute_start[i];
        compute_sum += b->compute_ms;
        copy_sum += b->copy_ms;
        if (p->streamed[i]) {
            if (plan->vace[i])
                s->vace_streamed_count++;
            uint64_t *tier_bytes = p->tier[i] == VRAM_TIER_PINNED     ? &s->pinned_bytes
                                   : p->tier[i] == VRAM_TIER_PAGEABLE ? &s->pageable_bytes
                                                                      : &s->disk_bytes;
            *tier_bytes += p->bytes[i];
        }
    }
    free(copy_start);
    free(compute_start);
    s->block_compute_ms = p->n ? compute_sum / p->n : 0;
    s->block_copy_ms = f.count ? copy_sum / f.count : 0;
    s->resident_forward_ms = compute_sum;
    s->copy_bound_ms = copy_sum;
    return VRAM_OK;
}

/* Manual mode with a block count: the user's count stands (0 is the
 * automatic count). */
static bool counted(const vram_plan_options *o) {
    return !o->auto_hardware_tuning && o->blocks_to_swap > 0;
}

/* The streamed counts and their choice: the user's when counted, else the
 * smallest count that fits. */
static int select_blocks(planner *p, int count_vace, double share, choice *ch, int *count_main) {
    if (counted(p->o)) {
        *count_main = p->o->blocks_to_swap;
        *ch = best_arrangement(p, *count_main, count_vace, false, share);
        return ch->found ? VRAM_OK : explain_no_fit(p, *count_main, count_vace, true);
    }
    return search_count(p, count_vace, true, share, ch, count_main);
}

static int plan_blocks(planner *p, vram_plan *plan, const vram_gpu_info *gi, double tokens) {
    const vram_plan_options *o = p->o;
    bool manual = !o->auto_hardware_tuning;
    int n_vace = p->n - p->n_main;
    choice ch = {.found = false};
    int count_main = 0, count_vace = manual ? o->vace_blocks_to_swap : 0;
    double share = manual ? o->bandwidth_target : 1.0;
    if (manual && o->blocks_to_swap > p->n_main)
        return vram_fail(VRAM_E_RANGE, "blocks_to_swap is %d, allowed 0-%d for this model",
                         o->blocks_to_swap, p->n_main);
    if (manual && count_vace > n_vace)
        return vram_fail(VRAM_E_RANGE, "vace_blocks_to_swap is %d, allowed 0-%d for this model",
                         count_vace, n_vace);
    int st = select_blocks(p, count_vace, share, &ch, &count_main);
    /* torch's caching allocator hands its cache back before it fails an
     * allocation: where nothing fits beside the cache however many blocks
     * stream, plan for what the activations allocate (a slower run, when
     * the cache must be rebuilt, rather than a refusal). A manual count
     * that streaming more would fit keeps its refusal, and so does a plan
     * that does not fit even so, with the numbers of the cache's case. */
    if (st == VRAM_E_DOES_NOT_FIT && p->act > p->act_allocated) {
        char why[1024];
        snprintf(why, sizeof why, "%s", vram_last_error());
        choice more;
        int more_count;
        if (!counted(o) || search_count(p, count_vace, true, share, &more, &more_count) != VRAM_OK) {
            uint64_t with_cache = p->act;
            p->act = p->act_allocated;
            p->tight = true;
            if ((st = select_blocks(p, count_vace, share, &ch, &count_main)) != VRAM_OK) {
                p->act = with_cache;
                p->tight = false;
            }
        }
        if (st)
            return vram_fail(st, "%s", why);
    }
    if (st)
        return st;
    arrange(p, ch.arrangement, count_main, count_vace);
    assign_tiers(p);
    footprint f = measure(p);
    if (any_disk(p) && f.slot > p->dram_usable && !plan->mem.dram_known)
        return vram_fail(VRAM_E_DOES_NOT_FIT,
                         "the DRAM size is unknown (no readable /proc/meminfo), so the %d "
                         "streamed blocks would all be read from disk through a staging buffer "
                         "of %.1f MiB; give the DRAM size (vram_hw_set_dram, --dram-total)",
                         f.count, f.slot / VRAM_MIB);
    if (any_disk(p) && f.slot > p->dram_usable)
        return vram_fail(VRAM_E_DOES_NOT_FIT,
                         "disk-tier blocks are read through a staging buffer of %.1f MiB, but "
                         "only %.1f MiB of DRAM is usable (%.0f%% of the available DRAM)",
                         f.slot / VRAM_MIB, p->dram_usable / VRAM_MIB,
                         p->o->dram_usable_fraction * 100);
    plan->arrangement = ch.arrangement;
    if (!manual)
        share = f.count ? pick_share(p, &ch) : 1.0;
    st = fill_summary(p, plan, gi, &ch, share, tokens);
    if (st)
        return st;
    vram_log(VRAM_LOG_DEBUG,
             "plan: %d of %d blocks streamed (%s), %d slot(s), %d copy stream(s), share %.2f, "
             "%.1f ms per forward",
             plan->sum.streamed_count, p->n, vram_arrangement_name(ch.arrangement), ch.slots,
             plan->sum.copy_streams, share, plan->sum.predicted_forward_ms);
    return VRAM_OK;
}

int vram_plan_create(const vram_layout *layout, const vram_hw *hw, const vram_plan_options *opts,
                     vram_plan **out) {
    if (out)
        *out = NULL;
    if (!layout || !hw || !out)
        return vram_fail(VRAM_E_INVALID, "vram_plan_create: layout, hw and out must be non-NULL");
    vram_plan_options defaults;
    if (!opts) {
        vram_plan_options_init(&defaults);
        opts = &defaults;
    }
    vram_layout_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    int st = vram_layout_get_info(layout, &info);
    if (st)
        return st;
    if ((st = validate_options(opts, info.group_block_count[VRAM_GROUP_VACE])))
        return st;
    vram_gpu_info gi;
    if ((st = read_gpu(hw, opts->gpu_index, &gi)))
        return st;

    vram_plan *plan = calloc(1, sizeof *plan);
    if (!plan)
        return vram_fail(VRAM_E_NOMEM, "out of memory creating a plan");
    plan->opts = *opts;
    plan->opts.size = sizeof plan->opts;
    snprintf(plan->model_name, sizeof plan->model_name, "%s", info.name);
    plan->rest_total_bytes = info.rest_bytes;
    vram_plan_memory *m = &plan->mem;
    snprintf(m->gpu_name, sizeof m->gpu_name, "%s", gi.name_known ? gi.name : "GPU");
    m->gpu_simulated = gi.simulated;
    m->tflops_known = gi.tflops_known && gi.bf16_tflops > 0;
    m->bf16_tflops = m->tflops_known ? gi.bf16_tflops : DEFAULT_TFLOPS;
    m->bandwidth_known = opts->measured_h2d_gbps > 0 ||
                         (gi.bandwidth_known && gi.h2d_pinned_gbps > 0);
    m->pinned_gbps = opts->measured_h2d_gbps > 0 ? opts->measured_h2d_gbps
                     : m->bandwidth_known        ? gi.h2d_pinned_gbps
                                                 : DEFAULT_PINNED_GBPS;
    m->pageable_gbps = gi.bandwidth_known && gi.h2d_pageable_gbps > 0 ? gi.h2d_pageable_gbps
                                                                      : m->pinned_gbps / 2;
    if (m->pageable_gbps > m->pinned_gbps)
        m->pageable_gbps = m->pinned_gbps;
    m->disk_gbps = opts->disk_gbps < m->pageable_gbps ? opts->disk_gbps : m->pageable_gbps;
    read_dram(hw, m);

    const vram_plan_options *o = &plan->opts;
    double tokens = (double)((o->frames - 1) / 4 + 1) * (o->height / 16) * (o->width / 16);
    planner p = {
        .o = o,
        .n = info.block_count > 0 ? info.block_count : 0,
        .n_main = info.group_block_count[VRAM_GROUP_BLOCKS],
        .joint = o->auto_hardware_tuning,
        .async = o->enable_cuda_optimization,
        .pinned_gbps = m->pinned_gbps,
        .pageable_gbps = m->pageable_gbps,
        .disk_gbps = m->disk_gbps,
    };
    if (p.n_main > p.n || p.n_main < 0)
        p.n_main = p.n;
    p.rest_full = info.rest_bytes;
    uint64_t offloaded = (o->offload_txt_emb ? info.text_emb_bytes : 0) +
                         (o->offload_img_emb ? info.image_emb_bytes : 0);
    p.rest_on = offloaded < p.rest_full ? p.rest_full - offloaded : 0;
    double total = (double)gi.total_bytes;
    double budget = total - (double)gi.used_bytes - o->safety_reserve_percent / 100 * total;
    p.budget = budget > 0 ? (uint64_t)budget : 0;
    p.cap = (uint64_t)(o->vram_threshold_percent / 100 * total);
    p.dram_usable =
        m->dram_known ? (uint64_t)((double)m->dram_available_bytes * o->dram_usable_fraction) : 0;
    /* Pinned budget: RLIMIT_MEMLOCK is not applied: CUDA pins through the
     * driver (cuMemHostAlloc / cuMemHostRegister), which that limit does not
     * bound, and a default 8 MiB limit would otherwise turn pinning off. */
    p.pinned_budget = 0;
    if (o->enable_dram_optimization) {
        p.pinned_budget = p.dram_usable;
        double cap_pinned = o->max_pinned_mb * VRAM_MIB; /* compared before converting */
        if (o->max_pinned_mb > 0 && cap_pinned < (double)p.pinned_budget)
            p.pinned_budget = (uint64_t)cap_pinned;
    }

    st = read_layout(&p, layout, &info, plan, tokens, m->bf16_tflops);
    if (!st)
        st = plan_blocks(&p, plan, &gi, tokens);
    free_planner(&p);
    if (st) {
        vram_plan_free(plan);
        return st;
    }
    *out = plan;
    return VRAM_OK;
}

void vram_plan_free(vram_plan *plan) {
    if (!plan)
        return;
    free(plan->blocks);
    free(plan->vace);
    free(plan);
}

int vram_plan_get_summary(const vram_plan *plan, vram_plan_summary *out) {
    if (!plan)
        return vram_fail(VRAM_E_INVALID, "vram_plan_get_summary: plan is NULL");
    VRAM_CHECK_STRUCT(out, vram_plan_summary);
    *out = plan->sum;
    return VRAM_OK;
}

int vram_plan_block(const vram_plan *plan, int block, vram_block_plan *out) {
    if (!plan)
        return vram_fail(VRAM_E_INVALID, "vram_plan_block: plan is NULL");
    VRAM_CHECK_STRUCT(out, vram_block_plan);
    if (block < 0 || block >= plan->sum.block_count)
        return vram_fail(VRAM_E_RANGE, "block is %d, allowed 0-%d", block,
                         plan->sum.block_count - 1);
    *out = plan->blocks[block];
    return VRAM_OK;
}

int vram_plan_get_options(const vram_plan *plan, vram_plan_options *out) {
    if (!plan)
        return vram_fail(VRAM_E_INVALID, "vram_plan_get_options: plan is NULL");
    VRAM_CHECK_STRUCT(out, vram_plan_options);
    *out = plan->opts;
    return VRAM_OK;
}

/* ------------------------------------------------------------------ */
/* vram_plan_stream_more                                               */
/* ------------------------------------------------------------------ */

int vram_plan_stream_more(const vram_plan *current, const vram_layout *layout, const vram_hw *hw,
                          vram_plan **out) {
    if (!current || !layout || !hw || !out)
        return vram_fail(VRAM_E_INVALID,
                         "vram_plan_stream_more: current, layout, hw and out must be non-NULL");
    const vram_plan_summary *s = &current->sum;
    vram_layout_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    int st = vram_layout_get_info(layout, &info);
    if (st)
        return st;
    if (info.block_count != s->block_count)
        return vram_fail(VRAM_E_INVALID,
                         "vram_plan_stream_more: the layout has %d blocks, the plan %d; pass the "
                         "layout the plan was made from",
                         info.block_count, s->block_count);
    if (s->streamed_count >= s->block_count)
        return vram_fail(VRAM_E_DOES_NOT_FIT,
                         "all %d blocks already stream: nothing more can leave the GPU",
                         s->block_count);

    vram_plan_options o = current->opts;
    vram_plan *next = NULL;
    double threshold_min = find_rule("vram_threshold_percent")->min;
    if (o.auto_hardware_tuning && o.vram_threshold_percent > threshold_min) {
        /* A lower cap keeps the planner's own choice of count and slots. */
        o.vram_threshold_percent = fmax(threshold_min, o.vram_threshold_percent - 10);
        if (vram_plan_create(layout, hw, &o, &next) == VRAM_OK &&
            next->sum.streamed_count > s->streamed_count) {
            *out = next;
            return VRAM_OK;
        }
        vram_plan_free(next);
        o = current->opts;
    }

    int n_vace = 0;
    for (int i = 0; i < s->block_count; i++)
        n_vace += current->vace[i];
    int n_main = s->block_count - n_vace;
    int main_streamed = s->streamed_count - s->vace_streamed_count;
    if (main_streamed >= n_main) {
        char why[96];
        if (o.auto_hardware_tuning)
            snprintf(why, sizeof why,
                     ", and lowering vram_threshold_percent (floor %g) streams no more",
                     threshold_min);
        else
            snprintf(why, sizeof why, "; vace_blocks_to_swap can stream more");
        return vram_fail(VRAM_E_DOES_NOT_FIT,
                         "all %d main blocks already stream (and %d of %d VACE blocks)%s: nothing "
                         "more can leave the GPU",
                         n_main, s->vace_streamed_count, n_vace, why);
    }
    int step = (s->block_count + 7) / 8;
    if (o.auto_hardware_tuning) {
        /* The manual values an auto plan holds were never read: go on with
         * the copy streams and bandwidth share it chose. */
        o.num_cuda_streams = s->copy_streams > 0 ? s->copy_streams : 1;
        o.bandwidth_target = s->bandwidth_target;
    }
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = main_streamed + step < n_main ? main_streamed + step : n_main;
    o.vace_blocks_to_swap = s->vace_streamed_count;
    if ((st = vram_plan_create(layout, hw, &o, &next)))
        return st;
    *out = next;
    return VRAM_OK;
}
