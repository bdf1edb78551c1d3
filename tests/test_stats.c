/* test_stats.c - the seed's memory stats: no GPU, simulated GPU and DRAM,
 * a cgroup limit (fake files), and the JSON form parsed back. */
#define _GNU_SOURCE
#include "testutil.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>

static double json_number(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    CHECK(cJSON_IsNumber(it));
    return cJSON_IsNumber(it) ? it->valuedouble : -1;
}

static void no_gpu(void) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    vram_memory_stats s;
    vram_memory_stats_init(&s);
    CHECK_INT(s.size, sizeof s);
    CHECK_OK(vram_memory_stats_get(hw, 0, &s));
    CHECK_OK(vram_memory_stats_get(hw, 7, &s)); /* ignored without GPUs */
    CHECK(!s.vram_known);
    CHECK_STR(s.gpu_name, "");
    CHECK_NEAR(s.vram_total_mb, 0, 0);
    CHECK_NEAR(s.vram_used_mb, 0, 0);
    CHECK_NEAR(s.vram_usage_percent, 0, 0);
    CHECK(s.dram_known);
    CHECK(s.dram_total_mb > 0);
    CHECK_NEAR(s.dram_used_mb + s.dram_available_mb, s.dram_total_mb, 1e-6);
    CHECK_NEAR(s.dram_usage_percent, s.dram_used_mb / s.dram_total_mb * 100, 1e-9);
    CHECK(s.dram_limit_mb > 0);

    char *text = NULL;
    CHECK_OK(vram_memory_stats_json(&s, &text));
    cJSON *o = cJSON_Parse(text);
    CHECK(cJSON_IsObject(o));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "vram_known")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "dram_known")));
    CHECK_NEAR(json_number(o, "dram_total_mb"), s.dram_total_mb, 1e-6);
    CHECK_NEAR(json_number(o, "dram_used_mb"), s.dram_used_mb, 1e-6);
    CHECK_NEAR(json_number(o, "dram_usage_percent"), s.dram_usage_percent, 1e-9);
    CHECK_NEAR(json_number(o, "vram_used_mb"), 0, 0);
    cJSON_Delete(o);
    vram_free(text);
    vram_hw_free(hw);
}

static void simulated(void) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    CHECK_OK(vram_hw_simulate_gpu(hw, 0, "5090"));
    CHECK_OK(vram_hw_set_vram(hw, 0, 32607, 8151.75));
    CHECK_OK(vram_hw_set_dram(hw, 65536, 49152));
    vram_memory_stats s;
    vram_memory_stats_init(&s);
    CHECK_OK(vram_memory_stats_get(hw, 0, &s));
    CHECK(s.vram_known);
    CHECK_STR(s.gpu_name, "RTX 5090");
    CHECK_NEAR(s.vram_total_mb, 32607, 1e-9);
    CHECK_NEAR(s.vram_used_mb, 8151.75, 1e-9);
    CHECK_NEAR(s.vram_free_mb, 32607 - 8151.75, 1e-9);
    CHECK_NEAR(s.vram_usage_percent, 25, 1e-9);
    CHECK(s.dram_known);
    CHECK_NEAR(s.dram_total_mb, 65536, 1e-9);
    CHECK_NEAR(s.dram_available_mb, 49152, 1e-9);
    CHECK_NEAR(s.dram_used_mb, 16384, 1e-9);
    CHECK_NEAR(s.dram_usage_percent, 25, 1e-9);
    CHECK_NEAR(s.dram_limit_mb, 65536, 1e-9);

    char *text = NULL;
    CHECK_OK(vram_memory_stats_json(&s, &text));
    cJSON *o = cJSON_Parse(text);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "gpu_name");
    CHECK(cJSON_IsString(name) && strcmp(name->valuestring, "RTX 5090") == 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "vram_known")));
    static const char *const keys[] = {"vram_used_mb",      "vram_total_mb",
                                       "vram_free_mb",      "vram_usage_percent",
                                       "dram_used_mb",      "dram_total_mb",
                                       "dram_available_mb", "dram_usage_percent",
                                       "dram_limit_mb",     "swap_total_mb",
                                       "swap_free_mb"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, keys[i])));
    CHECK_NEAR(json_number(o, "vram_used_mb"), 8151.75, 1e-9);
    CHECK_NEAR(json_number(o, "vram_usage_percent"), 25, 1e-9);
    CHECK_NEAR(json_number(o, "dram_used_mb"), 16384, 1e-9);
    cJSON_Delete(o);
    vram_free(text);

    /* With GPUs, a wrong index is an error. */
    CHECK_INT(vram_memory_stats_get(hw, 1, &s), VRAM_E_RANGE);
    CHECK_INT(vram_memory_stats_get(NULL, 0, &s), VRAM_E_INVALID);
    CHECK_INT(vram_memory_stats_get(hw, 0, NULL), VRAM_E_INVALID);
    vram_memory_stats small = {.size = 4};
    CHECK_INT(vram_memory_stats_get(hw, 0, &small), VRAM_E_INVALID);
    CHECK_INT(vram_memory_stats_json(&small, &text), VRAM_E_INVALID);
    CHECK(text == NULL);
    CHECK_INT(vram_memory_stats_json(&s, NULL), VRAM_E_INVALID);
    vram_memory_stats_init(NULL);
    vram_hw_free(hw);
}

/* 16 GiB host, 12 GiB available, cgroup limit 8 GiB with 6 GiB used:
 * the process can have 8 GiB, 2 GiB of it still free. */
static void cgroup_limit(void) {
    char dir[] = "/tmp/vram-stats-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    write_text(dir, "proc/meminfo",
        "MemTotal: 16777216 kB\nMemAvailable: 12582912 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
    write_text(dir, "proc/self/cgroup", "0::/job\n");
    write_text(dir, "cg/job/memory.max", "8589934592\n");
    write_text(dir, "cg/job/memory.current", "6442450944\n");
    char proc[64], cg[64];
    snprintf(proc, sizeof proc, "%s/proc", dir);
    snprintf(cg, sizeof cg, "%s/cg", dir);
    setenv("VRAM_PROC_ROOT", proc, 1);
    setenv("VRAM_CGROUP_ROOT", cg, 1);
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    unsetenv("VRAM_PROC_ROOT");
    unsetenv("VRAM_CGROUP_ROOT");
    vram_memory_stats s;
    vram_memory_stats_init(&s);
    CHECK_OK(vram_memory_stats_get(hw, 0, &s));
    CHECK(s.dram_known);
    CHECK_NEAR(s.dram_total_mb, 8192, 1e-9);
    CHECK_NEAR(s.dram_available_mb, 2048, 1e-9);
    CHECK_NEAR(s.dram_used_mb, 6144, 1e-9);
    CHECK_NEAR(s.dram_usage_percent, 75, 1e-9);
    CHECK_NEAR(s.dram_limit_mb, 8192, 1e-9);
    CHECK_NEAR(s.swap_total_mb, 0, 0);
    vram_hw_free(hw);

    /* No meminfo at all: DRAM unknown, still a result. */
    setenv("VRAM_PROC_ROOT", "/nonexistent", 1);
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    unsetenv("VRAM_PROC_ROOT");
    CHECK_OK(vram_memory_stats_get(hw, 0, &s));
    CHECK(!s.dram_known);
    CHECK_NEAR(s.dram_total_mb, 0, 0);
    vram_hw_free(hw);

    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
}

int main(void) {
    no_gpu();
    simulated();
    cgroup_limit();
    CHECK_DONE();
}
