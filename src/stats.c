/* stats.c - the seed's memory numbers (MB means MiB, as torch reports). */
#include "internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

void vram_memory_stats_init(vram_memory_stats *s) {
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    s->size = sizeof *s;
}

static double percent(double part, double whole) { return whole > 0 ? part / whole * 100.0 : 0; }

int vram_memory_stats_get(const vram_hw *hw, int gpu, vram_memory_stats *out) {
    VRAM_CHECK_STRUCT(out, vram_memory_stats);
    if (!hw)
        return vram_fail(VRAM_E_INVALID, "vram_memory_stats_get: hw is NULL");
    vram_memory_stats_init(out);
    int count = vram_hw_gpu_count(hw);
    if (count > 0) {
        vram_gpu_info g = {.size = sizeof g};
        int st = vram_hw_gpu(hw, gpu, &g);
        if (st)
            return st;
        if (g.name_known)
            snprintf(out->gpu_name, sizeof out->gpu_name, "%s", g.name);
        if (g.memory_known) {
            out->vram_known = true;
            out->vram_total_mb = (double)g.total_bytes / VRAM_MIB;
            out->vram_used_mb = (double)g.used_bytes / VRAM_MIB;
            out->vram_free_mb = (double)g.free_bytes / VRAM_MIB;
            out->vram_usage_percent = percent(out->vram_used_mb, out->vram_total_mb);
        }
    }
    vram_dram_info d = {.size = sizeof d};
    int st = vram_hw_dram(hw, &d);
    if (st)
        return st;
    if (d.meminfo_known) {
        /* Used is what the group holds under a cgroup limit. */
        uint64_t total = vram_dram_usable_total(&d);
        uint64_t avail = d.available_bytes < total ? d.available_bytes : total;
        out->dram_known = true;
        out->dram_total_mb = (double)total / VRAM_MIB;
        out->dram_available_mb = (double)avail / VRAM_MIB;
        out->dram_used_mb = (double)(total - avail) / VRAM_MIB;
        out->dram_usage_percent = percent(out->dram_used_mb, out->dram_total_mb);
        out->dram_limit_mb =
            d.cgroup_known ? (double)d.cgroup_limit_bytes / VRAM_MIB : out->dram_total_mb;
    }
    if (d.swap_known) {
        out->swap_total_mb = (double)d.swap_total_bytes / VRAM_MIB;
        out->swap_free_mb = (double)d.swap_free_bytes / VRAM_MIB;
    }
    return VRAM_OK;
}

int vram_memory_stats_json(const vram_memory_stats *s, char **out) {
    if (!out)
        return vram_fail(VRAM_E_INVALID, "vram_memory_stats_json: out is NULL");
    *out = NULL;
    VRAM_CHECK_STRUCT(s, vram_memory_stats);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return vram_fail(VRAM_E_NOMEM, "out of memory building stats JSON");
    bool ok = cJSON_AddStringToObject(o, "gpu_name", s->gpu_name) &&
              cJSON_AddBoolToObject(o, "vram_known", s->vram_known);
    const struct {
        const char *key;
        double v;
    } nums[] = {
        {"vram_used_mb", s->vram_used_mb},   {"vram_total_mb", s->vram_total_mb},
        {"vram_free_mb", s->vram_free_mb},   {"vram_usage_percent", s->vram_usage_percent},
        {"dram_used_mb", s->dram_used_mb},   {"dram_total_mb", s->dram_total_mb},
        {"dram_available_mb", s->dram_available_mb},
        {"dram_usage_percent", s->dram_usage_percent},
        {"dram_limit_mb", s->dram_limit_mb}, {"swap_total_mb", s->swap_total_mb},
        {"swap_free_mb", s->swap_free_mb},
    };
    for (size_t i = 0; ok && i < sizeof nums / sizeof nums[0]; i++)
        ok = cJSON_AddNumberToObject(o, nums[i].key, nums[i].v) != NULL;
    ok = ok && cJSON_AddBoolToObject(o, "dram_known", s->dram_known);
    return vram_json_print(o, ok, true, "the stats JSON", out);
}
