/* probe.c - what the machine has: GPUs (CUDA driver API merged with NVML by
 * UUID, profile numbers, cached `vram bench` bandwidth) and DRAM
 * (/proc/meminfo, cgroup v2 or v1, RLIMIT_MEMLOCK), plus the simulation
 * overrides. The probe never creates a CUDA context.
 *
 * $VRAM_PROC_ROOT (default /proc) and $VRAM_CGROUP_ROOT (default
 * /sys/fs/cgroup) move the DRAM sources, so tests can feed fake files. */
#define _GNU_SOURCE
#include "cuda_driver.h"
#include "internal.h"
#include "nvml.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct vram_hw {
    int gpu_count;
    vram_gpu_info *gpus;
    vram_dram_info dram;
};

/* ---- DRAM ---- */

/* Reads a small text file, NUL-terminated; false when it cannot be read. */
static bool read_text(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    bool ok = !ferror(f);
    fclose(f);
    buf[n] = '\0';
    return ok;
}

/* v1 reports "no limit" as a huge page-rounded number, v2 as "max". */
#define CGROUP_UNLIMITED (1ull << 62)

/* A limit or usage file: true with the value when it holds a finite one. */
static bool read_cgroup_value(const char *dir, const char *name, uint64_t *v) {
    char path[PATH_MAX + 64], text[64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!read_text(path, text, sizeof text))
        return false;
    char *end;
    unsigned long long x = strtoull(text, &end, 10);
    if (end == text || x >= CGROUP_UNLIMITED)
        return false;
    *v = x;
    return true;
}

/* The files of one cgroup version. Usage counts the page cache, which the
 * kernel reclaims before it enforces the limit, so the inactive file pages
 * from memory.stat are taken off (the working set, as kubelet computes it):
 * after reading a 30 GB checkpoint the cache alone can reach the limit. */
typedef struct cgroup_files {
    const char *limit, *usage, *inactive_key;
} cgroup_files;

static const cgroup_files cgroup_v2 = {"memory.max", "memory.current", "inactive_file "};
static const cgroup_files cgroup_v1 = {"memory.limit_in_bytes", "memory.usage_in_bytes",
                                       "total_inactive_file "};

static uint64_t working_set(const char *dir, const cgroup_files *files) {
    uint64_t usage = 0;
    if (!read_cgroup_value(dir, files->usage, &usage))
        return 0;
    char path[PATH_MAX + 64], text[16384];
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    if (!read_text(path, text, sizeof text))
        return usage;
    /* The key at the start of a line ("inactive_file" also ends v1's
     * "total_inactive_file"). */
    for (const char *hit = text; (hit = strstr(hit, files->inactive_key)); hit++)
        if (hit == text || hit[-1] == '\n') {
            unsigned long long inactive = strtoull(hit + strlen(files->inactive_key), NULL, 10);
            return inactive < usage ? usage - inactive : 0;
        }
    return usage;
}

/* Walks from base/rel up to base itself; keeps the level with the least
 * headroom (limit - usage), since every ancestor's limit applies too. */
static bool cgroup_walk(const char *base, const char *rel, const cgroup_files *files,
                        uint64_t *limit, uint64_t *usage) {
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s%s", base, rel) >= (int)sizeof dir)
        return false;
    size_t base_len = strlen(base);
    bool found = false;
    uint64_t best_room = UINT64_MAX;
    for (;;) {
        uint64_t l;
        if (read_cgroup_value(dir, files->limit, &l)) {
            uint64_t u = working_set(dir, files);
            uint64_t room = u < l ? l - u : 0;
            if (room < best_room) {
                best_room = room;
                *limit = l;
                *usage = u;
                found = true;
            }
        }
        char *slash = strrchr(dir + base_len, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
    return found;
}

/* The memory cgroup of this process: v2 ("0::/path", at the root or under
 * unified/ on hybrid systems) first, then v1 ("N:...memory...:/path"). */
static void probe_cgroup(const char *proc_root, const char *cg_root, vram_dram_info *d) {
    char path[PATH_MAX], text[8192];
    snprintf(path, sizeof path, "%s/self/cgroup", proc_root);
    if (!read_text(path, text, sizeof text))
        return;
    char v2_rel[PATH_MAX] = "", v1_rel[PATH_MAX] = "";
    bool have_v2 = false, have_v1 = false;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/')
            continue;
        const char *rel = strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1;
        *c2 = '\0';
        if (strncmp(line, "0:", 2) == 0 && c1[1] == '\0') {
            snprintf(v2_rel, sizeof v2_rel, "%s", rel);
            have_v2 = true;
            continue;
        }
        for (char *s2 = NULL, *ctl = strtok_r(c1 + 1, ",", &s2); ctl; ctl = strtok_r(NULL, ",", &s2))
            if (strcmp(ctl, "memory") == 0) {
                snprintf(v1_rel, sizeof v1_rel, "%s", rel);
                have_v1 = true;
            }
    }
    char base[PATH_MAX];
    uint64_t limit = 0, usage = 0;
    bool found = false;
    if (have_v2) {
        found = cgroup_walk(cg_root, v2_rel, &cgroup_v2, &limit, &usage);
        snprintf(base, sizeof base, "%s/unified", cg_root);
        if (!found)
            found = cgroup_walk(base, v2_rel, &cgroup_v2, &limit, &usage);
    }
    if (!found && have_v1) {
        snprintf(base, sizeof base, "%s/memory", cg_root);
        found = cgroup_walk(base, v1_rel, &cgroup_v1, &limit, &usage);
    }
    if (!found)
        return;
    d->cgroup_known = true;
    d->cgroup_limit_bytes = limit;
    d->cgroup_usage_bytes = usage;
}

static void probe_meminfo(const char *proc_root, vram_dram_info *d) {
    char path[PATH_MAX], text[16384];
    snprintf(path, sizeof path, "%s/meminfo", proc_root);
    if (!read_text(path, text, sizeof text))
        return;
    static const char *const keys[] = {"MemTotal:", "MemAvailable:", "SwapTotal:", "SwapFree:"};
    uint64_t v[4] = {0, 0, 0, 0};
    bool have[4] = {false, false, false, false};
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        for (int k = 0; k < 4; k++)
            if (strncmp(line, keys[k], strlen(keys[k])) == 0) {
                char *end;
                unsigned long long kib = strtoull(line + strlen(keys[k]), &end, 10);
                if (end != line + strlen(keys[k]) && kib < UINT64_MAX / 1024) {
                    v[k] = (uint64_t)kib * 1024;
                    have[k] = true;
                }
            }
    if (have[0] && have[1]) {
        d->total_bytes = v[0];
        d->available_bytes = v[1];
        d->meminfo_known = true;
    }
    if (have[2] && have[3]) {
        d->swap_total_bytes = v[2];
        d->swap_free_bytes = v[3];
        d->swap_known = true;
    }
}

static void probe_dram(vram_dram_info *d) {
    memset(d, 0, sizeof *d);
    d->size = sizeof *d;
    const char *proc_root = getenv("VRAM_PROC_ROOT");
    const char *cg_root = getenv("VRAM_CGROUP_ROOT");
    if (!proc_root || !*proc_root)
        proc_root = "/proc";
    if (!cg_root || !*cg_root)
        cg_root = "/sys/fs/cgroup";
    probe_meminfo(proc_root, d);
    probe_cgroup(proc_root, cg_root, d);
    if (d->cgroup_known) {
        uint64_t room = d->cgroup_usage_bytes < d->cgroup_limit_bytes
                            ? d->cgroup_limit_bytes - d->cgroup_usage_bytes
                            : 0;
        if (!d->meminfo_known || room < d->available_bytes)
            d->available_bytes = room;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        d->memlock_limit_bytes = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
        d->memlock_known = true;
    }
}

/* ---- GPU numbers from profiles, the PCIe link and the bench cache ---- */

/* Usable GB/s per lane after line coding, by PCIe generation. */
static double lane_gbps(int gen) {
    static const double rate[] = {0, 0.25, 0.5, 0.985, 1.969, 3.938, 7.563};
    return gen > 0 && gen < (int)(sizeof rate / sizeof rate[0]) ? rate[gen] : 0;
}

/* Share of the raw link a pinned copy reaches (24 of 31.5 GB/s on Gen4 x16,
 * 54 of 63 on Gen5), for GPUs without a profile. */
#define PINNED_SHARE_OF_LINK 0.8
#define PAGEABLE_SHARE_OF_PINNED (1.0 / 3.0)

static void fill_expected(vram_gpu_info *g) {
    vram_gpu_profile p = {.size = sizeof p};
    bool have_profile = g->name_known && vram_gpu_profile_find(g->name, &p) == VRAM_OK;
    /* The link probed at its maximum: an idle GPU drops to Gen1 to save
     * power, so the current generation says nothing about copies. */
    double link = g->pcie_known ? lane_gbps(g->pcie_gen_max) * g->pcie_width_max : 0;
    if (have_profile) {
        snprintf(g->profile, sizeof g->profile, "%s", p.name);
        g->bf16_tflops = p.bf16_tflops;
        g->tflops_known = true;
        double scale = 1;
        double rated = lane_gbps(p.pcie_gen) * p.pcie_width;
        if (link > 0 && rated > 0 && link < rated)
            scale = link / rated; /* a Gen4 card in a Gen3 or x8 slot */
        g->h2d_pinned_gbps = p.h2d_pinned_gbps * scale;
        g->h2d_pageable_gbps = p.h2d_pageable_gbps * scale;
        g->bandwidth_known = true;
    } else if (link > 0) {
        g->h2d_pinned_gbps = link * PINNED_SHARE_OF_LINK;
        g->h2d_pageable_gbps = g->h2d_pinned_gbps * PAGEABLE_SHARE_OF_PINNED;
        g->bandwidth_known = true;
    }
    if (!g->uuid_known)
        return;
    vram_bandwidth_result r = {.size = sizeof r};
    int st = vram_bench_load(g->uuid, &r);
    if (st == VRAM_E_NOT_FOUND)
        return;
    if (st != VRAM_OK) {
        vram_log(VRAM_LOG_WARN, "ignoring the bandwidth cache of %s: %s", g->uuid,
                 vram_last_error());
        return;
    }
    double pinned = 0, pageable = 0;
    for (int k = 0; k < r.max_streams && k < 16; k++) {
        pinned = fmax(pinned, r.h2d_pinned_gbps[k]);
        pageable = fmax(pageable, r.h2d_pageable_gbps[k]);
    }
    if (pinned <= 0)
        return;
    g->h2d_pinned_gbps = pinned;
    if (pageable > 0)
        g->h2d_pageable_gbps = pageable;
    else if (!g->bandwidth_known)
        g->h2d_pageable_gbps = pinned * PAGEABLE_SHARE_OF_PINNED;
    g->bandwidth_known = true;
    g->bandwidth_measured = true;
}

/* ---- CUDA + NVML ---- */

static void probe_cuda_device(const vram_cuda *cu, int ordinal, vram_gpu_info *g) {
    memset(g, 0, sizeof *g);
    g->size = sizeof *g;
    g->index = ordinal;
    CUdevice dev;
    if (cu->cuDeviceGet(&dev, ordinal) != VRAM_CUDA_SUCCESS)
        return;
    g->name_known = cu->cuDeviceGetName(g->name, (int)sizeof g->name, dev) == VRAM_CUDA_SUCCESS;
    g->name[sizeof g->name - 1] = '\0';
    CUuuid uuid;
    if (cu->cuDeviceGetUuid(&uuid, dev) == VRAM_CUDA_SUCCESS) {
        vram_cuda_format_uuid(&uuid, g->uuid, sizeof g->uuid);
        g->uuid_known = true;
    }
    size_t total = 0;
    if (cu->cuDeviceTotalMem(&total, dev) == VRAM_CUDA_SUCCESS)
        g->total_bytes = total;
    g->sm_count_known = cu->cuDeviceGetAttribute(&g->sm_count,
                                                 VRAM_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                                 dev) == VRAM_CUDA_SUCCESS;
    g->cc_known =
        cu->cuDeviceGetAttribute(&g->cc_major, VRAM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                 dev) == VRAM_CUDA_SUCCESS &&
        cu->cuDeviceGetAttribute(&g->cc_minor, VRAM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                 dev) == VRAM_CUDA_SUCCESS;

    vram_nvml_device nv;
    if (!g->uuid_known || !vram_nvml_query_uuid(g->uuid, &nv))
        return;
    if (nv.memory_known) {
        if (!g->total_bytes)
            g->total_bytes = nv.total_bytes;
        g->used_bytes = nv.used_bytes < g->total_bytes ? nv.used_bytes : g->total_bytes;
        g->free_bytes = g->total_bytes - g->used_bytes;
        if (nv.free_bytes < g->free_bytes)
            g->free_bytes = nv.free_bytes;
        g->memory_known = true;
    }
    if (nv.pcie_known) {
        g->pcie_gen_current = nv.pcie_gen_current;
        g->pcie_width_current = nv.pcie_width_current;
        g->pcie_gen_max = nv.pcie_gen_max;
        g->pcie_width_max = nv.pcie_width_max;
        g->pcie_known = true;
    }
}

/* Without NVML, a context already current (PyTorch's) gives cuMemGetInfo
 * for its device. The table has no cuCtxGetDevice, so the numbers go to
 * the one GPU whose total matches. */
static void memory_from_current_context(const vram_cuda *cu, vram_gpu_info *gpus, int n) {
    CUcontext ctx = NULL;
    size_t free_b = 0, total_b = 0;
    if (cu->cuCtxGetCurrent(&ctx) != VRAM_CUDA_SUCCESS || !ctx ||
        cu->cuMemGetInfo(&free_b, &total_b) != VRAM_CUDA_SUCCESS || free_b > total_b)
        return;
    vram_gpu_info *match = NULL;
    for (int i = 0; i < n; i++)
        if (gpus[i].total_bytes == total_b) {
            if (match)
                return; /* ambiguous */
            match = &gpus[i];
        }
    if (!match || match->memory_known)
        return;
    match->free_bytes = free_b;
    match->used_bytes = total_b - free_b;
    match->memory_known = true;
}

static int probe_gpus(vram_hw *hw) {
    const char *why;
    const vram_cuda *cu = vram_cuda_get(&why);
    if (!cu) {
        vram_log(VRAM_LOG_INFO, "no CUDA driver: %s", why);
        return VRAM_OK;
    }
    int n = 0;
    CUresult r = cu->cuDeviceGetCount(&n);
    if (r != VRAM_CUDA_SUCCESS || n <= 0) {
        vram_log(VRAM_LOG_INFO, "no CUDA device (cuDeviceGetCount returned %d)", r);
        return VRAM_OK;
    }
    hw->gpus = calloc((size_t)n, sizeof *hw->gpus);
    if (!hw->gpus)
        return vram_fail(VRAM_E_NOMEM, "out of memory for %d GPU records", n);
    hw->gpu_count = n;
    const char *nvml_why;
    if (!vram_nvml_available(&nvml_why))
        vram_log(VRAM_LOG_INFO, "no NVML, used VRAM unknown without a CUDA context: %s",
                 nvml_why);
    for (int i = 0; i < n; i++)
        probe_cuda_device(cu, i, &hw->gpus[i]);
    memory_from_current_context(cu, hw->gpus, n);
    for (int i = 0; i < n; i++)
        fill_expected(&hw->gpus[i]);
    return VRAM_OK;
}

/* ---- the public API ---- */

static int hw_new(bool with_gpus, vram_hw **out) {
    if (!out)
        return vram_fail(VRAM_E_INVALID, "vram_hw_probe: out is NULL");
    *out = NULL;
    vram_hw *hw = calloc(1, sizeof *hw);
    if (!hw)
        return vram_fail(VRAM_E_NOMEM, "out of memory for the hardware record");
    probe_dram(&hw->dram);
    if (with_gpus) {
        int st = probe_gpus(hw);
        if (st) {
            vram_hw_free(hw);
            return st;
        }
    }
    *out = hw;
    return VRAM_OK;
}

int vram_hw_probe(vram_hw **out) { return hw_new(true, out); }

int vram_hw_probe_dram_only(vram_hw **out) { return hw_new(false, out); }

void vram_hw_free(vram_hw *hw) {
    if (!hw)
        return;
    free(hw->gpus);
    free(hw);
}

int vram_hw_gpu_count(const vram_hw *hw) { return hw ? hw->gpu_count : 0; }

int vram_hw_gpu(const vram_hw *hw, int index, vram_gpu_info *out) {
    VRAM_CHECK_STRUCT(out, vram_gpu_info);
    if (!hw)
        return vram_fail(VRAM_E_INVALID, "vram_hw_gpu: hw is NULL");
    if (index < 0 || index >= hw->gpu_count)
        return vram_fail(VRAM_E_RANGE, "GPU index %d is outside 0..%d", index,
                         hw->gpu_count - 1);
    uint32_t size = out->size;
    *out = hw->gpus[index];
    out->size = size;
    return VRAM_OK;
}

int vram_hw_dram(const vram_hw *hw, vram_dram_info *out) {
    VRAM_CHECK_STRUCT(out, vram_dram_info);
    if (!hw)
        return vram_fail(VRAM_E_INVALID, "vram_hw_dram: hw is NULL");
    uint32_t size = out->size;
    *out = hw->dram;
    out->size = size;
    return VRAM_OK;
}

/* Checks `index` for a GPU override and returns the record to write: the
 * existing one, or a new zeroed one appended (index == count). Nothing
 * changes on failure; the caller fills the record completely. */
static int gpu_slot(vram_hw *hw, int index, bool may_append, const char *what,
                    vram_gpu_info **slot) {
    if (!hw)
        return vram_fail(VRAM_E_INVALID, "%s: hw is NULL", what);
    int last = may_append ? hw->gpu_count : hw->gpu_count - 1;
    if (index < 0 || index > last)
        return vram_fail(VRAM_E_RANGE, "%s: GPU index %d is outside 0..%d", what, index, last);
    if (index < hw->gpu_count) {
        *slot = &hw->gpus[index];
        return VRAM_OK;
    }
    vram_gpu_info *grown = realloc(hw->gpus, (size_t)(hw->gpu_count + 1) * sizeof *grown);
    if (!grown)
        return vram_fail(VRAM_E_NOMEM, "%s: out of memory adding GPU %d", what, index);
    hw->gpus = grown;
    *slot = &hw->gpus[hw->gpu_count++];
    memset(*slot, 0, sizeof **slot);
    (*slot)->size = sizeof **slot;
    (*slot)->index = index;
    (*slot)->simulated = true;
    snprintf((*slot)->name, sizeof (*slot)->name, "Simulated GPU");
    (*slot)->name_known = true;
    return VRAM_OK;
}

int vram_hw_simulate_gpu(vram_hw *hw, int index, const char *profile) {
    vram_gpu_profile p = {.size = sizeof p};
    int st = vram_gpu_profile_find(profile, &p);
    if (st)
        return st;
    vram_gpu_info *g;
    if ((st = gpu_slot(hw, index, true, "vram_hw_simulate_gpu", &g)))
        return st;
    memset(g, 0, sizeof *g);
    g->size = sizeof *g;
    g->index = index;
    g->simulated = true;
    snprintf(g->name, sizeof g->name, "%s", p.name);
    g->name_known = true;
    g->total_bytes = p.total_bytes;
    g->free_bytes = p.total_bytes;
    g->memory_known = true;
    g->sm_count = p.sm_count;
    g->sm_count_known = true;
    g->cc_major = p.cc_major;
    g->cc_minor = p.cc_minor;
    g->cc_known = true;
    g->pcie_gen_current = g->pcie_gen_max = p.pcie_gen;
    g->pcie_width_current = g->pcie_width_max = p.pcie_width;
    g->pcie_known = true;
    g->bf16_tflops = p.bf16_tflops;
    g->tflops_known = true;
    g->h2d_pinned_gbps = p.h2d_pinned_gbps;
    g->h2d_pageable_gbps = p.h2d_pageable_gbps;
    g->bandwidth_known = true;
    snprintf(g->profile, sizeof g->profile, "%s", p.name);
    return VRAM_OK;
}

/* Largest MiB value accepted (1 EiB), far from uint64 overflow. */
#define MAX_MB (1024.0 * 1024.0 * 1024.0 * 1024.0)

static uint64_t mib_to_bytes(double mb) { return (uint64_t)llround(mb * VRAM_MIB); }

int vram_hw_set_vram(vram_hw *hw, int index, double total_mb, double used_mb) {
    if (!isfinite(total_mb) || total_mb <= 0 || total_mb > MAX_MB)
        return vram_fail(VRAM_E_RANGE, "VRAM total %g MB must be above 0 and at most %.0f MB (1 EiB)",
                         total_mb, MAX_MB);
    if (!isfinite(used_mb) || used_mb < 0 || used_mb > total_mb)
        return vram_fail(VRAM_E_RANGE, "VRAM used %g MB must be within 0..%g MB (the total)",
                         used_mb, total_mb);
    vram_gpu_info *g;
    int st = gpu_slot(hw, index, true, "vram_hw_set_vram", &g);
    if (st)
        return st;
    g->total_bytes = mib_to_bytes(total_mb);
    g->used_bytes = mib_to_bytes(used_mb);
    if (g->used_bytes > g->total_bytes)
        g->used_bytes = g->total_bytes;
    g->free_bytes = g->total_bytes - g->used_bytes;
    g->memory_known = true;
    g->simulated = true;
    return VRAM_OK;
}

int vram_hw_set_dram(vram_hw *hw, double total_mb, double available_mb) {
    if (!hw)
        return vram_fail(VRAM_E_INVALID, "vram_hw_set_dram: hw is NULL");
    if (!isfinite(total_mb) || total_mb <= 0 || total_mb > MAX_MB)
        return vram_fail(VRAM_E_RANGE, "DRAM total %g MB must be above 0 and at most %.0f MB (1 EiB)",
                         total_mb, MAX_MB);
    if (!isfinite(available_mb) || available_mb <= 0 || available_mb > total_mb)
        return vram_fail(VRAM_E_RANGE,
                         "DRAM available %g MB must be > 0 and at most %g MB (the total)",
                         available_mb, total_mb);
    vram_dram_info *d = &hw->dram;
    d->total_bytes = mib_to_bytes(total_mb);
    d->available_bytes = mib_to_bytes(available_mb);
    d->meminfo_known = true;
    /* The simulated size replaces the cgroup view as well. */
    d->cgroup_known = false;
    d->cgroup_limit_bytes = d->cgroup_usage_bytes = 0;
    d->simulated = true;
    return VRAM_OK;
}

int vram_hw_set_bandwidth(vram_hw *hw, int index, double pinned_gbps, double pageable_gbps) {
    if (!isfinite(pinned_gbps) || pinned_gbps <= 0 || !isfinite(pageable_gbps) ||
        pageable_gbps <= 0)
        return vram_fail(VRAM_E_RANGE,
                         "bandwidth must be > 0 and finite (pinned %g GB/s, pageable %g GB/s)",
                         pinned_gbps, pageable_gbps);
    vram_gpu_info *g;
    int st = gpu_slot(hw, index, false, "vram_hw_set_bandwidth", &g);
    if (st)
        return st;
    g->h2d_pinned_gbps = pinned_gbps;
    g->h2d_pageable_gbps = pageable_gbps;
    g->bandwidth_known = true;
    g->bandwidth_measured = true;
    return VRAM_OK;
}
