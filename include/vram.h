/*
 * vram.h - libvram, the intelligent VRAM manager.
 *
 * One public header. Everything is prefixed vram_. Handles are opaque.
 * Every function that can fail returns a vram_status (0 = VRAM_OK, negative
 * = error); vram_strerror() names the code and vram_last_error() gives the
 * detail of the last failure on the calling thread. Nothing on an API path
 * aborts: the library lives inside Python processes.
 *
 * Structs that cross the ABI begin with a `size` field, set by the caller to
 * sizeof(struct) (the *_init functions do it), so they can grow without
 * breaking older callers (ctypes included).
 *
 * Usage:
 *
 *   vram_hw *hw;         vram_hw_probe(&hw);               // GPUs + DRAM
 *   vram_layout *model;  vram_layout_open("wan.safetensors", &model);
 *   vram_plan_options o; vram_plan_options_init(&o);
 *   o.width = 832; o.height = 480; o.frames = 81;
 *   vram_plan *plan;     vram_plan_create(model, hw, &o, &plan);
 *   char *text;          vram_plan_explain(plan, VRAM_EXPLAIN_ZH, &text);
 *   puts(text);          vram_free(text);
 *
 *   vram_engine_options eo; vram_engine_options_init(&eo);
 *   vram_engine *eng;    vram_engine_create(plan, model, &eo, &eng);
 *   ... fill vram_engine_host_ptr(eng, b) or vram_engine_load_files(eng) ...
 *   for each block b in execution order:
 *       vram_engine_acquire(eng, b, stream, &dev);  // stream waits for copy
 *       run block b with weights at dev
 *       vram_engine_release(eng, b, stream);        // slot reusable after
 *   vram_engine_destroy(eng); vram_plan_free(plan); ...
 */
#ifndef VRAM_H
#define VRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(VRAM_BUILD_SHARED)
#define VRAM_API __declspec(dllexport)
#elif defined(__GNUC__)
#define VRAM_API __attribute__((visibility("default")))
#else
#define VRAM_API
#endif

#define VRAM_VERSION_MAJOR 0
#define VRAM_VERSION_MINOR 1
#define VRAM_VERSION_PATCH 0
#define VRAM_VERSION_NUMBER \
    (VRAM_VERSION_MAJOR * 10000 + VRAM_VERSION_MINOR * 100 + VRAM_VERSION_PATCH)

/* The library's own version; bindings check it against the header's. */
VRAM_API int vram_version_number(void);
VRAM_API const char *vram_version_string(void);

/* ------------------------------------------------------------------ */
/* Status codes                                                        */
/* ------------------------------------------------------------------ */

/* X-macro: one list makes both the enum and the name table. */
#define VRAM_STATUS_LIST(X)                                                   \
    X(VRAM_OK, 0, "success")                                                  \
    X(VRAM_E_INVALID, -1, "invalid argument")                                 \
    X(VRAM_E_NOMEM, -2, "out of host memory")                                 \
    X(VRAM_E_IO, -3, "input/output error")                                    \
    X(VRAM_E_FORMAT, -4, "malformed model file")                              \
    X(VRAM_E_NOT_FOUND, -5, "not found")                                      \
    X(VRAM_E_NO_DEVICE, -6, "no GPU device")                                  \
    X(VRAM_E_DRIVER, -7, "GPU driver error")                                  \
    X(VRAM_E_DEVICE_NOMEM, -8, "out of device memory")                        \
    X(VRAM_E_DOES_NOT_FIT, -9, "model does not fit in the memory available")  \
    X(VRAM_E_STATE, -10, "call not valid in the current state")               \
    X(VRAM_E_UNSUPPORTED, -11, "not supported")                               \
    X(VRAM_E_RANGE, -12, "value out of range")

typedef enum vram_status {
#define VRAM_STATUS_ENUM(name, value, text) name = value,
    VRAM_STATUS_LIST(VRAM_STATUS_ENUM)
#undef VRAM_STATUS_ENUM
} vram_status;

/* Static text for a status code; never NULL. */
VRAM_API const char *vram_strerror(int status);
/* Detail of the last failure on this thread ("" when none). Owned by the
 * library, valid until the next failing call on this thread. */
VRAM_API const char *vram_last_error(void);

/* Frees memory the library handed out (explanations, JSON). */
VRAM_API void vram_free(void *p);

/* ------------------------------------------------------------------ */
/* Logging                                                             */
/* ------------------------------------------------------------------ */

typedef enum vram_log_level {
    VRAM_LOG_ERROR = 0,
    VRAM_LOG_WARN = 1,
    VRAM_LOG_INFO = 2,
    VRAM_LOG_DEBUG = 3
} vram_log_level;

typedef void (*vram_log_fn)(int level, const char *message, void *user);
/* NULL restores the default (warnings and errors to stderr). */
VRAM_API void vram_set_log(vram_log_fn fn, void *user, int max_level);

/* ------------------------------------------------------------------ */
/* Data types                                                          */
/* ------------------------------------------------------------------ */

typedef enum vram_dtype {
    VRAM_DTYPE_UNKNOWN = 0,
    VRAM_DTYPE_BOOL,
    VRAM_DTYPE_U8,
    VRAM_DTYPE_I8,
    VRAM_DTYPE_F8_E4M3,
    VRAM_DTYPE_F8_E5M2,
    VRAM_DTYPE_I16,
    VRAM_DTYPE_U16,
    VRAM_DTYPE_F16,
    VRAM_DTYPE_BF16,
    VRAM_DTYPE_I32,
    VRAM_DTYPE_U32,
    VRAM_DTYPE_F32,
    VRAM_DTYPE_I64,
    VRAM_DTYPE_U64,
    VRAM_DTYPE_F64,
    VRAM_DTYPE_COUNT
} vram_dtype;

/* Bytes per element (0 for UNKNOWN); safetensors name ("BF16", "F8_E4M3"). */
VRAM_API size_t vram_dtype_size(vram_dtype t);
VRAM_API const char *vram_dtype_name(vram_dtype t);
/* Accepts safetensors names and common aliases (bf16, fp8_e4m3fn, ...). */
VRAM_API vram_dtype vram_dtype_from_name(const char *name);

/* ------------------------------------------------------------------ */
/* Hardware: GPU profiles, probe, DRAM                                 */
/* ------------------------------------------------------------------ */

#define VRAM_NAME_MAX 96

/* A built-in GPU profile, used to simulate a GPU for planning and to fill
 * what a probe cannot measure (throughput, expected bandwidth). */
typedef struct vram_gpu_profile {
    uint32_t size;
    char name[VRAM_NAME_MAX];    /* "RTX 4090" */
    char aliases[VRAM_NAME_MAX]; /* comma separated: "4090,rtx4090" */
    uint64_t total_bytes;        /* memory as the driver reports it */
    int sm_count;
    int cc_major, cc_minor;
    int pcie_gen, pcie_width;
    double bf16_tflops;       /* effective dense bf16 matmul throughput */
    double h2d_pinned_gbps;   /* expected pinned host-to-device, GB/s */
    double h2d_pageable_gbps; /* expected pageable host-to-device, GB/s */
} vram_gpu_profile;

VRAM_API int vram_gpu_profile_count(void);
VRAM_API int vram_gpu_profile_get(int index, vram_gpu_profile *out);
/* Case-insensitive match on name or alias; "NVIDIA GeForce RTX 4090" and
 * "4090" both find "RTX 4090". VRAM_E_NOT_FOUND otherwise. */
VRAM_API int vram_gpu_profile_find(const char *name, vram_gpu_profile *out);

/* One GPU as probed (or simulated). Every group has a known flag. */
typedef struct vram_gpu_info {
    uint32_t size;
    int index;
    bool simulated; /* from a profile or overrides, not a device */
    char name[VRAM_NAME_MAX];
    bool name_known;
    char uuid[64];
    bool uuid_known;
    uint64_t total_bytes, used_bytes, free_bytes; /* other processes included */
    bool memory_known;
    int sm_count;
    bool sm_count_known;
    int cc_major, cc_minor;
    bool cc_known;
    int pcie_gen_current, pcie_width_current, pcie_gen_max, pcie_width_max;
    bool pcie_known;
    double bf16_tflops;
    bool tflops_known;
    double h2d_pinned_gbps, h2d_pageable_gbps;
    bool bandwidth_known;
    bool bandwidth_measured; /* from a `vram bench` cache, not a profile */
    char profile[VRAM_NAME_MAX]; /* the matching built-in profile or "" */
} vram_gpu_info;

typedef struct vram_dram_info {
    uint32_t size;
    uint64_t total_bytes, available_bytes; /* /proc/meminfo */
    bool meminfo_known;
    uint64_t cgroup_limit_bytes, cgroup_usage_bytes; /* v2 or v1 */
    bool cgroup_known;                               /* a limit applies */
    uint64_t swap_total_bytes, swap_free_bytes;
    bool swap_known;
    uint64_t memlock_limit_bytes; /* UINT64_MAX when unlimited */
    bool memlock_known;
    bool simulated;
} vram_dram_info;

typedef struct vram_hw vram_hw;

/* Probes GPUs (CUDA driver + NVML via dlopen) and DRAM. No driver or no
 * device is a normal state: the result has zero GPUs. */
VRAM_API int vram_hw_probe(vram_hw **out);
/* Same, with no GPU probe at all (for planning on any machine). */
VRAM_API int vram_hw_probe_dram_only(vram_hw **out);
VRAM_API void vram_hw_free(vram_hw *hw);
VRAM_API int vram_hw_gpu_count(const vram_hw *hw);
VRAM_API int vram_hw_gpu(const vram_hw *hw, int index, vram_gpu_info *out);
VRAM_API int vram_hw_dram(const vram_hw *hw, vram_dram_info *out);
/* Replaces GPU `index` (or appends one when index == count) with a
 * simulated GPU from a built-in profile, used memory 0. */
VRAM_API int vram_hw_simulate_gpu(vram_hw *hw, int index, const char *profile);
/* Overrides memory numbers of GPU `index` (appends a generic simulated GPU
 * when index == count). used_mb <= total_mb. */
VRAM_API int vram_hw_set_vram(vram_hw *hw, int index, double total_mb, double used_mb);
/* Overrides DRAM numbers (simulated DRAM size). available_mb <= total_mb. */
VRAM_API int vram_hw_set_dram(vram_hw *hw, double total_mb, double available_mb);
/* Sets measured host-to-device bandwidth for GPU `index` (GB/s). */
VRAM_API int vram_hw_set_bandwidth(vram_hw *hw, int index, double pinned_gbps,
                                   double pageable_gbps);

/* ------------------------------------------------------------------ */
/* Memory stats (the seed's fields, and more)                          */
/* ------------------------------------------------------------------ */

typedef struct vram_memory_stats {
    uint32_t size;
    char gpu_name[VRAM_NAME_MAX];
    bool vram_known;
    double vram_used_mb, vram_total_mb, vram_free_mb, vram_usage_percent;
    bool dram_known;
    double dram_used_mb, dram_total_mb, dram_available_mb, dram_usage_percent;
    double dram_limit_mb; /* cgroup limit when one applies, else total */
    double swap_total_mb, swap_free_mb;
} vram_memory_stats;

VRAM_API void vram_memory_stats_init(vram_memory_stats *s);
/* Stats of GPU `gpu` (ignored when there is none) and DRAM. */
VRAM_API int vram_memory_stats_get(const vram_hw *hw, int gpu, vram_memory_stats *out);
/* JSON object of the stats; free with vram_free. */
VRAM_API int vram_memory_stats_json(const vram_memory_stats *s, char **out);

/* ------------------------------------------------------------------ */
/* Model layouts                                                       */
/* ------------------------------------------------------------------ */

typedef struct vram_layout vram_layout;

/* Block groups. Tensors outside any block belong to the "rest". */
typedef enum vram_block_group {
    VRAM_GROUP_BLOCKS = 0, /* blocks.N. / transformer_blocks.N. */
    VRAM_GROUP_VACE = 1,   /* vace_blocks.N. */
    VRAM_GROUP_COUNT
} vram_block_group;

/* Role of a tensor outside the blocks, for offload_txt_emb/offload_img_emb. */
typedef enum vram_rest_role {
    VRAM_ROLE_BLOCK = 0,      /* inside a block */
    VRAM_ROLE_OTHER = 1,      /* patch embedding, head, time embedding... */
    VRAM_ROLE_TEXT_EMB = 2,   /* text_embedding / condition_embedder.text_* */
    VRAM_ROLE_IMAGE_EMB = 3   /* img_emb / condition_embedder.image_* */
} vram_rest_role;

typedef struct vram_tensor_info {
    uint32_t size;
    const char *name; /* owned by the layout */
    vram_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t nbytes;
    int file_index;        /* into vram_layout_file_path; -1: no file (catalog,
                              parse_header) */
    uint64_t file_offset;  /* absolute offset of the data in that file */
    int block;             /* block index, -1 for the rest */
    int role;              /* vram_rest_role */
    uint64_t block_offset; /* offset in the block's packed region (256-aligned) */
} vram_tensor_info;

typedef struct vram_block_info {
    uint32_t size;
    int index;       /* 0..block_count-1: BLOCKS first, then VACE */
    int group;       /* vram_block_group */
    int group_index; /* N in blocks.N. */
    int tensor_count;
    uint64_t params;
    uint64_t nbytes;        /* sum of tensor bytes */
    uint64_t packed_bytes;  /* with each tensor 256-aligned: region size */
    uint64_t linear_params; /* params of 2-D weights (matmul FLOPs) */
    int first_tensor;       /* its tensors are first_tensor..+tensor_count-1
                               in packing order; -1 when it has none */
} vram_block_info;

typedef struct vram_layout_info {
    uint32_t size;
    char name[VRAM_NAME_MAX]; /* catalog name or file stem */
    char naming[32];          /* "wan", "comfyui", "diffusers", "t5", "synthetic" */
    int block_count;          /* all groups */
    int group_block_count[VRAM_GROUP_COUNT];
    int tensor_count;
    int file_count;
    uint64_t total_params, total_bytes;
    uint64_t block_bytes;    /* sum over blocks */
    uint64_t rest_bytes;     /* outside blocks */
    uint64_t text_emb_bytes; /* part of rest */
    uint64_t image_emb_bytes;
    vram_dtype main_dtype; /* most bytes */
    /* Architecture, read from shapes when possible (0 when unknown). */
    int dim, ffn_dim, heads;
    int expert_count; /* Wan2.2 A14B: 2 (this layout is one expert) */
} vram_layout_info;

/* Opens a .safetensors file or a *.safetensors.index.json (sharded).
 * Reads headers only, never the weights. */
VRAM_API int vram_layout_open(const char *path, vram_layout **out);
/* Parses a safetensors header held in memory (size-prefixed, as on disk);
 * `len` is the number of bytes available. Used by the fuzzer. No file:
 * file_count 0, file_index -1, file_offset as in a file (8 + N + begin),
 * data offsets checked only against each other. */
VRAM_API int vram_layout_parse_header(const void *data, size_t len, vram_layout **out);
/* Built-in catalog: "wan2.1-t2v-14b", "wan2.1-i2v-14b", "wan2.1-t2v-1.3b",
 * "wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b", "umt5-xxl";
 * dtype BF16/F16/F32 for all tensors (bf16 when UNKNOWN); F8_E4M3/F8_E5M2
 * for the Linear weights inside blocks, the rest bf16 (as fp8 checkpoints). */
VRAM_API int vram_layout_from_catalog(const char *name, vram_dtype dtype, vram_layout **out);
VRAM_API int vram_catalog_count(void);
VRAM_API const char *vram_catalog_name(int index);
VRAM_API const char *vram_catalog_description(int index);
/* The seed's fallback: only the size and the layer count are known;
 * num_layers equal blocks of model_size_mb / num_layers each. */
VRAM_API int vram_layout_from_size(double model_size_mb, int num_layers, vram_layout **out);
/* A layout built by a caller (Python, from a live torch module): blocks of
 * the given byte sizes, rest_bytes outside. dim may be 0 (unknown).
 * These two have no tensors; params and main_dtype are unknown (0). */
VRAM_API int vram_layout_from_blocks(const uint64_t *block_bytes, int block_count,
                                     uint64_t rest_bytes, int dim, vram_layout **out);
VRAM_API void vram_layout_free(vram_layout *layout);
/* Names a layout for explanations (a layout parsed from memory is "header");
 * at most VRAM_NAME_MAX - 1 bytes are kept. */
VRAM_API int vram_layout_set_name(vram_layout *layout, const char *name);

/* Tensor order: block 0's tensors in packing order, block 1's, ..., then
 * the rest in file order. Names are the file's own (prefixes kept). */
VRAM_API int vram_layout_get_info(const vram_layout *layout, vram_layout_info *out);
VRAM_API int vram_layout_block(const vram_layout *layout, int index, vram_block_info *out);
VRAM_API int vram_layout_tensor(const vram_layout *layout, int index, vram_tensor_info *out);
/* Index of the tensor named `name` (also found without a ComfyUI
 * "model.diffusion_model." prefix), or VRAM_E_NOT_FOUND. */
VRAM_API int vram_layout_find_tensor(const vram_layout *layout, const char *name);
VRAM_API const char *vram_layout_file_path(const vram_layout *layout, int file_index);
/* VRAM_OK when model file `file_index` is still the file its header was read
 * from (device, inode, size, mtime, ctime: the engine checks the same);
 * VRAM_E_STATE naming it when it changed since, VRAM_E_IO when it cannot
 * be looked at, VRAM_E_RANGE for no such file. */
VRAM_API int vram_layout_check_file(const vram_layout *layout, int file_index);
/* JSON description (info, blocks, optionally tensors); free with vram_free. */
VRAM_API int vram_layout_json(const vram_layout *layout, bool with_tensors, char **out);

/* ------------------------------------------------------------------ */
/* The planner                                                         */
/* ------------------------------------------------------------------ */

typedef enum vram_placement {
    VRAM_PLACE_RESIDENT = 0, /* on the GPU for the whole run */
    VRAM_PLACE_STREAMED = 1  /* copied into a device slot before each use */
} vram_placement;

typedef enum vram_tier {
    VRAM_TIER_DEVICE = 0,   /* resident blocks */
    VRAM_TIER_PINNED = 1,   /* pinned DRAM: full-speed DMA */
    VRAM_TIER_PAGEABLE = 2, /* pageable DRAM: slower copies */
    VRAM_TIER_DISK = 3      /* read from the model file each pass */
} vram_tier;

typedef struct vram_plan_options {
    uint32_t size;
    int gpu_index;                 /* which GPU of the hw (default 0) */
    double vram_threshold_percent; /* 10..95, default 50: share of total VRAM
                                      resident weights may take */
    double safety_reserve_percent; /* default 10 */
    double dram_usable_fraction;   /* default 0.8 of available DRAM */
    int width, height, frames;     /* video size, default 832x480x81 */
    int text_tokens;               /* default 512 */
    int passes_per_step;           /* 2 with classifier-free guidance */
    bool auto_hardware_tuning;     /* default true; false = manual values */
    int blocks_to_swap;            /* > 0: stream exactly this many blocks */
    int num_cuda_streams;          /* manual copy streams 1..16 (default 8) */
    double bandwidth_target;       /* manual share of link bandwidth the
                                      copies may use, 0.1..1.0 (default 0.8) */
    int vace_blocks_to_swap;       /* 0..15: VACE blocks to stream (a model
                                      with more: up to its count) */
    bool offload_txt_emb;          /* text embedder off the GPU between runs */
    bool offload_img_emb;          /* image embedder likewise */
    bool enable_cuda_optimization; /* async copy streams + events (default) */
    bool enable_dram_optimization; /* pinned DRAM (default) */
    double measured_h2d_gbps;      /* > 0 replaces the profile's bandwidth */
    double measured_block_ms;      /* > 0 replaces the compute estimate */
    double max_pinned_mb;          /* > 0 caps the pinned budget */
    double disk_gbps;              /* disk-tier read speed, GB/s (default 2) */
} vram_plan_options;

VRAM_API void vram_plan_options_init(vram_plan_options *o);
/* Checks ranges; VRAM_E_RANGE naming the field in vram_last_error(). */
VRAM_API int vram_plan_options_validate(const vram_plan_options *o);

/* The values vram_plan_options_validate allows for one numeric field. */
typedef struct vram_option_range {
    uint32_t size;
    double min, max;   /* both allowed; max is HUGE_VAL when unbounded */
    bool min_excluded; /* only values above min (dram_usable_fraction) */
    bool integer;      /* an int field */
    int step;          /* > 0: value - min is a multiple of it (width, frames) */
    bool manual_only;  /* read only with auto_hardware_tuning off (auto plans
                          the same whatever its value) */
    bool zero_unset;   /* 0 (min) means "not set" (measured_*, max_pinned_mb) */
} vram_option_range;

/* The range of the vram_plan_options field `name` ("num_cuda_streams"), for
 * bindings and UIs; VRAM_E_NOT_FOUND when `name` is not a numeric field.
 * blocks_to_swap and vace_blocks_to_swap are further bounded by the model's
 * block counts when a plan is made; vace_blocks_to_swap's 15 (the most a Wan
 * model has) rises to the VACE block count of a model with more. */
VRAM_API int vram_plan_option_range(const char *name, vram_option_range *out);

typedef struct vram_plan vram_plan;

typedef struct vram_plan_summary {
    uint32_t size;
    bool manual;            /* manual overrides were used */
    bool fits;              /* always true for a returned plan */
    int block_count;
    int resident_count, streamed_count;
    int vace_streamed_count;
    int slot_count;         /* device slots for streamed blocks */
    int prefetch_depth;     /* blocks copied ahead of compute */
    int copy_streams;
    double bandwidth_target;
    bool async_copies;      /* enable_cuda_optimization */
    bool pinned_memory;     /* enable_dram_optimization */
    uint64_t vram_total_bytes, vram_used_bytes;
    uint64_t budget_bytes;          /* VRAM the plan may use */
    uint64_t threshold_bytes;       /* resident-weight cap from threshold */
    uint64_t resident_bytes;        /* resident blocks */
    uint64_t rest_bytes;            /* non-block weights on the GPU */
    uint64_t offloaded_rest_bytes;  /* embedders offloaded */
    uint64_t slot_bytes;            /* all slots */
    uint64_t activation_bytes;      /* estimated activation peak */
    uint64_t predicted_peak_bytes;  /* resident + rest + slots + activations */
    uint64_t streamed_bytes;        /* per pass */
    uint64_t pinned_budget_bytes;
    uint64_t pinned_bytes, pageable_bytes, disk_bytes; /* streamed, by tier */
    uint64_t dram_usable_bytes;
    double h2d_gbps;                /* bandwidth used for prediction */
    bool h2d_measured;
    double block_compute_ms;        /* per block, mean */
    bool compute_measured;
    double block_copy_ms;           /* per streamed block, mean */
    double predicted_forward_ms;    /* one pass, passes back to back */
    double resident_forward_ms;     /* same model all resident */
    double copy_bound_ms;           /* streamed bytes / bandwidth */
    int tokens;
    /* One sampling step: passes_per_step passes back to back, then the
     * caller synchronizes (a scheduler reading a value back does); what
     * the planner minimises. */
    double predicted_step_ms;
    /* Nothing fit beside the share torch's caching allocator holds on top
     * of the activations, so they are planned at the bytes they allocate:
     * it runs when torch hands its cache back, which costs time. */
    bool tight_activations;
} vram_plan_summary;

typedef struct vram_block_plan {
    uint32_t size;
    int block;
    int placement; /* vram_placement */
    int tier;      /* vram_tier */
    int slot;      /* device slot for streamed blocks, -1 for resident */
    double copy_ms, compute_ms;
    /* Steady state (the second of two simulated passes), ms from the pass's
     * start; a negative copy start: prefetched during the previous pass. */
    double predicted_copy_start_ms, predicted_compute_start_ms;
} vram_block_plan;

/* Plans `layout` on `hw` with `opts` (NULL = defaults). Returns
 * VRAM_E_DOES_NOT_FIT with the numbers in vram_last_error() when no plan
 * keeps the predicted peak within the budget. Deterministic. */
VRAM_API int vram_plan_create(const vram_layout *layout, const vram_hw *hw,
                              const vram_plan_options *opts, vram_plan **out);
VRAM_API void vram_plan_free(vram_plan *plan);
VRAM_API int vram_plan_get_summary(const vram_plan *plan, vram_plan_summary *out);
VRAM_API int vram_plan_block(const vram_plan *plan, int block, vram_block_plan *out);
VRAM_API int vram_plan_get_options(const vram_plan *plan, vram_plan_options *out);

/* After an out-of-memory error: a new plan of `layout` on `hw` (those
 * `current` was made from) that streams more blocks than `current`, from
 * its options. Auto mode first lowers vram_threshold_percent by 10 (not
 * below 10); when that streams no more, or in manual mode, it plans
 * manually with blocks_to_swap = the main blocks `current` streams +
 * ceil(block_count / 8), at most all main blocks, and the VACE blocks it
 * streams (from an auto plan, with the copy streams and bandwidth share it
 * chose). vram_plan_get_options on the new plan says what changed.
 * VRAM_E_DOES_NOT_FIT when nothing more can stream (or the planner's error
 * for the manual count); *out is left untouched on any failure. */
VRAM_API int vram_plan_stream_more(const vram_plan *current, const vram_layout *layout,
                                   const vram_hw *hw, vram_plan **out);

typedef enum vram_explain_format {
    VRAM_EXPLAIN_ZH = 0,  /* the seed's debug log, in Chinese */
    VRAM_EXPLAIN_EN = 1,  /* the same in English */
    VRAM_EXPLAIN_JSON = 2 /* everything, machine-readable */
} vram_explain_format;

/* Text or JSON of the plan, with the memory state the plan saw. Free with
 * vram_free. */
VRAM_API int vram_plan_explain(const vram_plan *plan, int format, char **out);

/* ------------------------------------------------------------------ */
/* The block-streaming engine                                          */
/* ------------------------------------------------------------------ */

typedef enum vram_backend_kind {
    VRAM_BACKEND_AUTO = 0, /* CUDA when a device is there, else host */
    VRAM_BACKEND_HOST = 1, /* RAM stands in for the GPU */
    VRAM_BACKEND_CUDA = 2
} vram_backend_kind;

typedef struct vram_engine_options {
    uint32_t size;
    int backend;              /* vram_backend_kind */
    int device;               /* CUDA ordinal */
    /* Host backend: the emulated device's capacity (0 = unlimited) and
     * copy bandwidth limit in GB/s (0 = memcpy speed). */
    uint64_t host_device_bytes;
    double host_bandwidth_gbps;
    /* 0 = take from the plan. */
    int slot_count;
    int copy_streams;
    /* Overrides of the plan's switches (-1 = take from the plan). */
    int async_copies;
    int pin_memory;
    /* Fault injection for tests: fail the Nth call (1-based) of each kind;
     * 0 = never. */
    int fail_alloc_at, fail_pin_at, fail_copy_at;
} vram_engine_options;

VRAM_API void vram_engine_options_init(vram_engine_options *o);

typedef struct vram_engine vram_engine;

/* Allocates the pinned arena (one aligned region per streamed block, within
 * the plan's pinned budget, pageable beyond it or when pinning fails or is
 * off via VRAM_NO_PIN=1), the device slots and the resident placements. */
VRAM_API int vram_engine_create(const vram_plan *plan, const vram_layout *layout,
                                const vram_engine_options *opts, vram_engine **out);
VRAM_API void vram_engine_destroy(vram_engine *eng);

/* Host address of block b's region (streamed blocks; NULL for resident or
 * disk-tier blocks) and its size. Callers fill it before the first acquire. */
VRAM_API void *vram_engine_host_ptr(vram_engine *eng, int block);
VRAM_API uint64_t vram_engine_block_bytes(const vram_engine *eng, int block);
/* Block b's host region was changed in place (through
 * vram_engine_host_ptr): waits for a copy still reading it and drops the
 * slot copy, so the next acquire copies the region again. */
VRAM_API int vram_engine_invalidate(vram_engine *eng, int block);
/* Copies `n` bytes into block b's packed layout at `offset`: into its host
 * region (streamed) or its device placement (resident). */
VRAM_API int vram_engine_write(vram_engine *eng, int block, uint64_t offset,
                               const void *src, uint64_t n);
/* Reads every block's tensors from the layout's files into place. */
VRAM_API int vram_engine_load_files(vram_engine *eng);

/* Device address of block b, with the compute stream made to wait for its
 * copy (stream wait, no host wait on CUDA). stream: a CUstream (NULL = the
 * legacy default stream); ignored by the host backend, where the call
 * waits for the copy. */
VRAM_API int vram_engine_acquire(vram_engine *eng, int block, void *stream, uint64_t *device_addr);
/* Block b's compute on `stream` is enqueued; its slot may be reused after
 * it ends. Starts prefetching the next streamed blocks: an error from that
 * (or one a disk-tier read left) is returned, but the block is released
 * all the same. */
VRAM_API int vram_engine_release(vram_engine *eng, int block, void *stream);
/* Waits for all copies issued so far. */
VRAM_API int vram_engine_synchronize(vram_engine *eng);
/* Declares the execution order (block indices; default 0..n-1). Prefetch
 * follows it and wraps around into the next pass, there filling one slot
 * fewer than it has (at least one), so that after a synchronize between
 * passes the next pass's copies start at once. An order that is refused
 * (a block out of range or listed twice) changes nothing; an error from
 * the prefetch a running engine starts comes with the order in effect. */
VRAM_API int vram_engine_set_order(vram_engine *eng, const int *blocks, int count);
/* Copies a resident block's device bytes, or a slot's current bytes, back
 * (for tests). */
VRAM_API int vram_engine_read_device(vram_engine *eng, uint64_t device_addr, void *dst, uint64_t n);

typedef struct vram_engine_stats {
    uint32_t size;
    int backend; /* vram_backend_kind actually used */
    uint64_t bytes_copied;
    uint64_t blocks_copied;
    uint64_t acquires, releases;
    double copy_busy_ms;      /* time some copy was running */
    double compute_wait_ms;   /* time the compute stream waited on copies */
    double overlap_ratio;     /* share of copy time hidden behind compute */
    int peak_slots_in_use;
    int slot_count, copy_streams;
    uint64_t pinned_bytes, pageable_bytes, disk_bytes, device_bytes;
    bool async_copies;
    double elapsed_ms;        /* since the first acquire */
} vram_engine_stats;

VRAM_API int vram_engine_get_stats(vram_engine *eng, vram_engine_stats *out);
VRAM_API int vram_engine_reset_stats(vram_engine *eng);

typedef enum vram_event_kind {
    VRAM_EVENT_COPY = 0,   /* a block's copy into its slot */
    VRAM_EVENT_COMPUTE = 1 /* acquire .. release of a block */
} vram_event_kind;

typedef struct vram_timeline_event {
    int kind; /* vram_event_kind */
    int block;
    int slot;
    int stream;
    double start_ms, end_ms; /* since the engine's first acquire */
} vram_timeline_event;

/* Copies up to `cap` timeline events (oldest first) to `out`; *count gets
 * the number available. The timeline keeps the last 65,536 events. */
VRAM_API int vram_engine_timeline(vram_engine *eng, vram_timeline_event *out, size_t cap,
                                  size_t *count);

/* ------------------------------------------------------------------ */
/* Bandwidth measurement (`vram bench`)                                */
/* ------------------------------------------------------------------ */

typedef struct vram_bandwidth_result {
    uint32_t size;
    int backend;
    char gpu_name[VRAM_NAME_MAX];
    char gpu_uuid[64];
    uint64_t transfer_bytes;
    int max_streams;
    double h2d_pinned_gbps[16];   /* [k] = with k+1 streams */
    double h2d_pageable_gbps[16];
    double d2h_pinned_gbps[16];
    double d2h_pageable_gbps[16];
} vram_bandwidth_result;

/* Measures copies of `transfer_bytes` with 1..max_streams streams on the
 * given backend (0 bytes = 256 MiB). */
VRAM_API int vram_bench_bandwidth(int backend, int device, uint64_t transfer_bytes,
                                  int max_streams, vram_bandwidth_result *out);
/* Cache: $VRAM_CACHE_DIR or $XDG_CACHE_HOME/vram or ~/.cache/vram,
 * one file per GPU UUID. vram_hw_probe reads it for bandwidth. */
VRAM_API int vram_bench_save(const vram_bandwidth_result *r);
VRAM_API int vram_bench_load(const char *gpu_uuid, vram_bandwidth_result *out);

#ifdef __cplusplus
}
#endif
#endif /* VRAM_H */
