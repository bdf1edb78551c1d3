/* test_probe.c - the CUDA driver loader, the GPU probe (against a fake
 * driver and NVML when ctest built them: $VRAM_FAKE_CUDA, $VRAM_FAKE_CUDA_V1),
 * the DRAM probe on fake /proc and cgroup trees, and the overrides. The
 * driver is loaded once per process, so each driver scenario runs in a
 * forked child. */
#define _GNU_SOURCE
#include "testutil.h"
#include "cuda_driver.h"
#include "internal.h"

#include <dlfcn.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024ull * 1024ull)
#define GIB (1024ull * MIB)

static char tmp_root[64];

/* Runs `fn` in a child with the given NAME=VALUE settings; the child's
 * failed checks fail the parent. */
static void in_child(const char *what, void (*fn)(void), const char *const *env) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        check_failures = 0; /* report only this scenario's */
        for (; env && *env; env++)
            putenv((char *)*env);
        fn();
        fflush(NULL);
        _exit(check_failures ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "scenario \"%s\" failed (status %d)\n", what, status);
        check_failures++;
    }
}

/* ---- driver scenarios (children) ---- */

static void expect_no_gpu(void) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe(&hw));
    CHECK_INT(vram_hw_gpu_count(hw), 0);
    vram_dram_info d = {.size = sizeof d};
    CHECK_OK(vram_hw_dram(hw, &d));
    CHECK(d.meminfo_known);
    vram_hw_free(hw);
}

static void child_missing(void) {
    const char *why = NULL;
    CHECK(vram_cuda_get(&why) == NULL);
    CHECK_STR(why, "/nonexistent/libcuda.so.1 not found");
    expect_no_gpu();
    /* vram_cuda_fail without a driver still gives a message. */
    CHECK_INT(vram_cuda_fail(NULL, 700, "cuMemcpyHtoD"), VRAM_E_DRIVER);
    CHECK_STR(vram_last_error(), "cuMemcpyHtoD: unknown CUDA error (700)");
}

static void child_too_old(void) {
    const char *why = NULL;
    CHECK(vram_cuda_get(&why) == NULL);
    CHECK_STR(why, "driver 11.0 is older than 11.3");
    expect_no_gpu();
}

static void child_init_fails(void) {
    const char *why = NULL;
    CHECK(vram_cuda_get(&why) == NULL);
    CHECK_STR(why, "cuInit failed: no CUDA-capable device is detected (100)");
    expect_no_gpu();
}

static void fake_asked(int *version, int *v2) {
    int flags = -1;
    void *lib = dlopen(getenv("VRAM_CUDA_LIBRARY"), RTLD_NOW | RTLD_NOLOAD);
    void *sym = lib ? dlsym(lib, "fake_cuda_probe") : NULL;
    CHECK(sym != NULL);
    *version = *v2 = -1;
    if (sym) {
        void (*probe)(int *, int *, int *);
        memcpy(&probe, &sym, sizeof sym);
        probe(version, v2, &flags);
    }
    CHECK_INT(flags, 1); /* CU_GET_PROC_ADDRESS_LEGACY_STREAM */
    if (lib)
        dlclose(lib);
}

static vram_hw *probe_one(vram_gpu_info *g) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe(&hw));
    CHECK_INT(vram_hw_gpu_count(hw), 1);
    g->size = sizeof *g;
    CHECK_OK(vram_hw_gpu(hw, 0, g));
    return hw;
}

static void check_device_basics(const vram_gpu_info *g) {
    CHECK(!g->simulated);
    CHECK(g->name_known);
    CHECK_STR(g->name, "NVIDIA GeForce RTX 4090");
    CHECK(g->uuid_known);
    CHECK_STR(g->uuid, "GPU-a0112233-4455-6677-8899-aabbccddeeff");
    CHECK_INT(g->total_bytes, 24564 * MIB);
    CHECK(g->sm_count_known);
    CHECK_INT(g->sm_count, 128);
    CHECK(g->cc_known);
    CHECK_INT(g->cc_major, 8);
    CHECK_INT(g->cc_minor, 9);
    CHECK_STR(g->profile, "RTX 4090");
    CHECK(g->tflops_known);
    CHECK_NEAR(g->bf16_tflops, 116, 1e-9);
}

/* Fake driver 12.4 with the fake NVML: memory and link from NVML, the
 * 4090's 24 GB/s halved by the x8 link (max, not the idle Gen1). */
static void child_fake_nvml(void) {
    const char *why = NULL;
    const vram_cuda *cu = vram_cuda_get(&why);
    CHECK(cu != NULL);
    if (!cu) {
        fprintf(stderr, "why: %s\n", why);
        return;
    }
    CHECK_STR(why, "");
    CHECK_INT(cu->driver_version, 12040);
    int version, v2;
    fake_asked(&version, &v2);
    CHECK_INT(version, 12000); /* our declarations' ABI, not the driver's */
    CHECK_INT(v2, 1);
    CHECK_INT(vram_cuda_fail(cu, VRAM_CUDA_ERROR_OUT_OF_MEMORY, "cuMemAlloc"),
              VRAM_E_DEVICE_NOMEM);
    CHECK_STR(vram_last_error(), "cuMemAlloc: out of memory (2)");
    CHECK_INT(vram_cuda_fail(cu, 999, "cuStreamCreate"), VRAM_E_DRIVER);
    CHECK_STR(vram_last_error(), "cuStreamCreate: fake error (999)");

    vram_gpu_info g;
    vram_hw *hw = probe_one(&g);
    check_device_basics(&g);
    CHECK(g.memory_known);
    CHECK_INT(g.used_bytes, 2048 * MIB);
    CHECK_INT(g.free_bytes, (24564 - 2048) * MIB);
    CHECK(g.pcie_known);
    CHECK_INT(g.pcie_gen_current, 1);
    CHECK_INT(g.pcie_gen_max, 4);
    CHECK_INT(g.pcie_width_current, 8);
    CHECK_INT(g.pcie_width_max, 8);
    CHECK(g.bandwidth_known);
    CHECK(!g.bandwidth_measured);
    CHECK_NEAR(g.h2d_pinned_gbps, 12, 1e-9);
    CHECK_NEAR(g.h2d_pageable_gbps, 4, 1e-9);

    vram_memory_stats s;
    vram_memory_stats_init(&s);
    CHECK_OK(vram_memory_stats_get(hw, 0, &s));
    CHECK(s.vram_known);
    CHECK_STR(s.gpu_name, "NVIDIA GeForce RTX 4090");
    CHECK_NEAR(s.vram_used_mb, 2048, 1e-9);
    CHECK_NEAR(s.vram_total_mb, 24564, 1e-9);
    vram_hw_free(hw);
}

/* A bench cache for the fake GPU replaces the profile's bandwidth. */
static void child_fake_cached(void) {
    vram_bandwidth_result r = {.size = sizeof r, .max_streams = 2, .transfer_bytes = 256 * MIB};
    snprintf(r.gpu_uuid, sizeof r.gpu_uuid, "GPU-a0112233-4455-6677-8899-aabbccddeeff");
    snprintf(r.gpu_name, sizeof r.gpu_name, "NVIDIA GeForce RTX 4090");
    r.h2d_pinned_gbps[0] = 20;
    r.h2d_pinned_gbps[1] = 22.5;
    r.h2d_pageable_gbps[0] = 9;
    r.h2d_pinned_gbps[2] = 99; /* beyond max_streams: ignored */
    CHECK_OK(vram_bench_save(&r));
    vram_gpu_info g;
    vram_hw *hw = probe_one(&g);
    CHECK(g.bandwidth_known);
    CHECK(g.bandwidth_measured);
    CHECK_NEAR(g.h2d_pinned_gbps, 22.5, 1e-9);
    CHECK_NEAR(g.h2d_pageable_gbps, 9, 1e-9);
    vram_hw_free(hw);
}

/* Old driver (11.4) and the CUDA 11.3 cuGetProcAddress only. */
static void child_fake_v1(void) {
    const vram_cuda *cu = vram_cuda_get(NULL);
    CHECK(cu != NULL);
    int version, v2;
    fake_asked(&version, &v2);
    CHECK_INT(version, 11040);
    CHECK_INT(v2, 0);
    vram_gpu_info g;
    vram_hw_free(probe_one(&g));
    check_device_basics(&g);
}

/* No NVML, no context: total known, used unknown, profile bandwidth. */
static void child_fake_no_nvml(void) {
    vram_gpu_info g;
    vram_hw *hw = probe_one(&g);
    check_device_basics(&g);
    CHECK(!g.memory_known);
    CHECK(!g.pcie_known);
    CHECK_NEAR(g.h2d_pinned_gbps, 24, 1e-9);
    vram_memory_stats s;
    vram_memory_stats_init(&s);
    CHECK_OK(vram_memory_stats_get(hw, 0, &s));
    CHECK(!s.vram_known);
    CHECK_NEAR(s.vram_total_mb, 0, 0);
    vram_hw_free(hw);
}

/* No NVML but a current context: cuMemGetInfo gives used memory. */
static void child_fake_context(void) {
    vram_gpu_info g;
    vram_hw_free(probe_one(&g));
    CHECK(g.memory_known);
    CHECK_INT(g.used_bytes, 1000 * MIB);
    CHECK_INT(g.free_bytes, (24564 - 1000) * MIB);
}

/* Two identical GPUs, NVML knows only the first, a context is current:
 * which device the context is on is ambiguous, so GPU 1 stays unknown. */
static void child_fake_two(void) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe(&hw));
    CHECK_INT(vram_hw_gpu_count(hw), 2);
    vram_gpu_info g0 = {.size = sizeof g0}, g1 = {.size = sizeof g1};
    CHECK_OK(vram_hw_gpu(hw, 0, &g0));
    CHECK_OK(vram_hw_gpu(hw, 1, &g1));
    CHECK_INT(g0.index, 0);
    CHECK_INT(g1.index, 1);
    CHECK(g0.memory_known);
    CHECK_INT(g0.used_bytes, 2048 * MIB);
    CHECK(!g1.memory_known);
    CHECK_STR(g1.uuid, "GPU-a1112233-4455-6677-8899-aabbccddeeff");
    CHECK_INT(vram_hw_gpu(hw, 2, &g1), VRAM_E_RANGE);
    vram_hw_free(hw);
}

static void driver_scenarios(void) {
    static const char *const missing[] = {"VRAM_CUDA_LIBRARY=/nonexistent/libcuda.so.1", NULL};
    in_child("missing driver", child_missing, missing);

    const char *fake = getenv("VRAM_FAKE_CUDA"), *fake_v1 = getenv("VRAM_FAKE_CUDA_V1");
    if (!fake || !fake_v1) {
        fprintf(stderr, "VRAM_FAKE_CUDA(_V1) unset: fake driver scenarios skipped\n");
        return;
    }
    static char lib[600], lib_v1[600], nvml[600], cache[600];
    snprintf(lib, sizeof lib, "VRAM_CUDA_LIBRARY=%s", fake);
    snprintf(lib_v1, sizeof lib_v1, "VRAM_CUDA_LIBRARY=%s", fake_v1);
    snprintf(nvml, sizeof nvml, "VRAM_NVML_LIBRARY=%s", fake);
    snprintf(cache, sizeof cache, "VRAM_CACHE_DIR=%s/cache", tmp_root);
    const char *no_nvml = "VRAM_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1";
    const char *empty_cache = "VRAM_CACHE_DIR=/nonexistent/vram-cache";

    const char *too_old[] = {lib, "FAKE_CUDA_VERSION=11000", no_nvml, NULL};
    in_child("driver too old", child_too_old, too_old);
    const char *init_fails[] = {lib, "FAKE_CUDA_INIT=100", no_nvml, NULL};
    in_child("cuInit fails", child_init_fails, init_fails);
    const char *with_nvml[] = {lib, nvml, empty_cache, NULL};
    in_child("fake device with NVML", child_fake_nvml, with_nvml);
    const char *cached[] = {lib, nvml, cache, NULL};
    in_child("bench cache", child_fake_cached, cached);
    const char *v1[] = {lib_v1, "FAKE_CUDA_VERSION=11040", nvml, empty_cache, NULL};
    in_child("cuGetProcAddress v1", child_fake_v1, v1);
    const char *bare[] = {lib, no_nvml, empty_cache, NULL};
    in_child("no NVML", child_fake_no_nvml, bare);
    const char *ctx[] = {lib, no_nvml, "FAKE_CUDA_CONTEXT=1", empty_cache, NULL};
    in_child("no NVML, current context", child_fake_context, ctx);
    const char *two[] = {lib, nvml, "FAKE_CUDA_DEVICES=2", "FAKE_CUDA_CONTEXT=1", empty_cache,
                         NULL};
    in_child("two devices", child_fake_two, two);
    const char *mig[] = {lib, nvml, "FAKE_NVML_MIG=1", empty_cache, NULL};
    in_child("a MIG instance, MIG- in NVML", child_fake_nvml, mig);
    const char *nvml_fails[] = {lib, nvml, "FAKE_NVML_INIT=999", empty_cache, NULL};
    in_child("nvmlInit fails", child_fake_no_nvml, nvml_fails);
}

/* ---- the real machine ---- */

static void real_probe(void) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe(&hw));
    CHECK(hw != NULL);
    int n = vram_hw_gpu_count(hw);
    CHECK(n >= 0);
    for (int i = 0; i < n; i++) {
        vram_gpu_info g = {.size = sizeof g};
        CHECK_OK(vram_hw_gpu(hw, i, &g));
        CHECK_INT(g.index, i);
        CHECK(!g.simulated);
        CHECK(!g.memory_known || g.used_bytes + g.free_bytes <= g.total_bytes);
    }
    vram_dram_info d = {.size = sizeof d};
    CHECK_OK(vram_hw_dram(hw, &d));
    CHECK(d.meminfo_known);
    CHECK(d.total_bytes > 0);
    CHECK(d.available_bytes <= d.total_bytes);
    CHECK(!d.simulated);
    CHECK(d.memlock_known);
    struct rlimit rl;
    CHECK_INT(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
    CHECK(d.memlock_limit_bytes ==
          (rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur));
    vram_hw_free(hw);

    CHECK_INT(vram_hw_probe(NULL), VRAM_E_INVALID);
    CHECK_INT(vram_hw_gpu_count(NULL), 0);
    vram_hw_free(NULL);
}

/* ---- DRAM on fake files ---- */

static vram_dram_info dram_at(const char *proc, const char *cgroup) {
    char p[600], c[600];
    snprintf(p, sizeof p, "%s/%s", tmp_root, proc);
    snprintf(c, sizeof c, "%s/%s", tmp_root, cgroup);
    setenv("VRAM_PROC_ROOT", p, 1);
    setenv("VRAM_CGROUP_ROOT", c, 1);
    vram_hw *hw = NULL;
    vram_dram_info d = {.size = sizeof d};
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    CHECK_INT(vram_hw_gpu_count(hw), 0);
    CHECK_OK(vram_hw_dram(hw, &d));
    vram_hw_free(hw);
    unsetenv("VRAM_PROC_ROOT");
    unsetenv("VRAM_CGROUP_ROOT");
    return d;
}

static const char meminfo[] = "MemTotal:       16777216 kB\n"
                              "MemFree:         1000000 kB\n"
                              "MemAvailable:   12582912 kB\n"
                              "SwapCached:            0 kB\n"
                              "SwapTotal:       2097152 kB\n"
                              "SwapFree:        1048576 kB\n";

static void dram_files(void) {
    /* cgroup v2, limit at the process's own level. */
    write_text(tmp_root, "v2/proc/meminfo", meminfo);
    write_text(tmp_root, "v2/proc/self/cgroup", "0::/user/job\n");
    write_text(tmp_root, "v2/cg/user/job/memory.max", "8589934592\n");
    write_text(tmp_root, "v2/cg/user/job/memory.current", "6442450944\n");
    write_text(tmp_root, "v2/cg/user/memory.max", "max\n");
    write_text(tmp_root, "v2/cg/user/memory.current", "7000000000\n");
    vram_dram_info d = dram_at("v2/proc", "v2/cg");
    CHECK(d.meminfo_known);
    CHECK_INT(d.total_bytes, 16 * GIB);
    CHECK(d.cgroup_known);
    CHECK_INT(d.cgroup_limit_bytes, 8 * GIB);
    CHECK_INT(d.cgroup_usage_bytes, 6 * GIB);
    CHECK_INT(d.available_bytes, 2 * GIB); /* min(12 GiB, 8 - 6) */
    CHECK(d.swap_known);
    CHECK_INT(d.swap_total_bytes, 2 * GIB);
    CHECK_INT(d.swap_free_bytes, 1 * GIB);

    /* Reclaimable page cache does not count against the limit. */
    write_text(tmp_root, "v2/cg/user/job/memory.stat",
               "anon 4294967296\nfile 2147483648\nactive_file 0\ninactive_file 2147483648\n");
    d = dram_at("v2/proc", "v2/cg");
    CHECK_INT(d.cgroup_usage_bytes, 4 * GIB);
    CHECK_INT(d.available_bytes, 4 * GIB);

    /* A parent with less headroom wins. */
    write_text(tmp_root, "v2/cg/user/memory.max", "7516192768\n"); /* 7 GiB */
    write_text(tmp_root, "v2/cg/user/memory.current", "6979321856\n"); /* 6.5 GiB */
    d = dram_at("v2/proc", "v2/cg");
    CHECK_INT(d.cgroup_limit_bytes, 7 * GIB);
    CHECK_INT(d.available_bytes, GIB / 2);

    /* A limit larger than what is free on the host: MemAvailable wins. */
    write_text(tmp_root, "big/proc/meminfo", meminfo);
    write_text(tmp_root, "big/proc/self/cgroup", "0::/\n");
    write_text(tmp_root, "big/cg/memory.max", "68719476736\n");
    write_text(tmp_root, "big/cg/memory.current", "1073741824\n");
    d = dram_at("big/proc", "big/cg");
    CHECK(d.cgroup_known);
    CHECK_INT(d.available_bytes, 12 * GIB);

    /* cgroup v1 on a hybrid system: v2 without a memory limit. */
    write_text(tmp_root, "v1/proc/meminfo", meminfo);
    write_text(tmp_root, "v1/proc/self/cgroup",
               "5:cpu,cpuacct:/\n4:memory:/docker/abc\n1:name=systemd:/\n0::/\n");
    write_text(tmp_root, "v1/cg/memory/docker/abc/memory.limit_in_bytes", "4294967296\n");
    write_text(tmp_root, "v1/cg/memory/docker/abc/memory.usage_in_bytes", "1073741824\n");
    write_text(tmp_root, "v1/cg/memory/memory.limit_in_bytes", "9223372036854771712\n");
    write_text(tmp_root, "v1/cg/unified/cgroup.procs", "1\n");
    d = dram_at("v1/proc", "v1/cg");
    CHECK(d.cgroup_known);
    CHECK_INT(d.cgroup_limit_bytes, 4 * GIB);
    CHECK_INT(d.cgroup_usage_bytes, 1 * GIB);
    CHECK_INT(d.available_bytes, 3 * GIB);

    /* v1 counts the hierarchy's cache as total_inactive_file. */
    write_text(tmp_root, "v1/cg/memory/docker/abc/memory.stat",
               "cache 1\ninactive_file 1\ntotal_cache 536870912\n"
               "total_inactive_file 536870912\n");
    d = dram_at("v1/proc", "v1/cg");
    CHECK_INT(d.cgroup_usage_bytes, GIB / 2);
    CHECK_INT(d.available_bytes, 3 * GIB + GIB / 2);

    /* v1 "unlimited" is a huge number: no limit applies. */
    write_text(tmp_root, "v1/cg/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n");
    d = dram_at("v1/proc", "v1/cg");
    CHECK(!d.cgroup_known);
    CHECK_INT(d.available_bytes, 12 * GIB);

    /* A container without a cgroup namespace: its path does not exist
     * under the mount, whose own root carries the limit. */
    write_text(tmp_root, "ns/proc/meminfo", meminfo);
    write_text(tmp_root, "ns/proc/self/cgroup", "0::/docker/abc\n");
    write_text(tmp_root, "ns/cg/memory.max", "10737418240\n");
    write_text(tmp_root, "ns/cg/memory.current", "5368709120\n");
    d = dram_at("ns/proc", "ns/cg");
    CHECK(d.cgroup_known);
    CHECK_INT(d.cgroup_limit_bytes, 10 * GIB);
    CHECK_INT(d.available_bytes, 5 * GIB);

    /* Nothing there: everything unknown but memlock, still a result. */
    d = dram_at("none/proc", "none/cg");
    CHECK(!d.meminfo_known);
    CHECK(!d.swap_known);
    CHECK(!d.cgroup_known);
    CHECK_INT(d.total_bytes, 0);
    CHECK(d.memlock_known);

    /* A meminfo without MemAvailable is not usable. */
    write_text(tmp_root, "old/proc/meminfo", "MemTotal: 1024 kB\nMemFree: 512 kB\n");
    d = dram_at("old/proc", "old/cg");
    CHECK(!d.meminfo_known);
}

/* ---- overrides ---- */

static void overrides(void) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    vram_gpu_info g = {.size = sizeof g};

    CHECK_OK(vram_hw_simulate_gpu(hw, 0, "4090"));
    CHECK_INT(vram_hw_gpu_count(hw), 1);
    CHECK_OK(vram_hw_gpu(hw, 0, &g));
    CHECK(g.simulated);
    CHECK_STR(g.name, "RTX 4090");
    CHECK_STR(g.profile, "RTX 4090");
    CHECK_INT(g.total_bytes, 24564 * MIB);
    CHECK_INT(g.used_bytes, 0);
    CHECK_INT(g.free_bytes, 24564 * MIB);
    CHECK(g.memory_known && g.tflops_known && g.bandwidth_known && g.pcie_known);
    CHECK(!g.bandwidth_measured);
    CHECK(!g.uuid_known);

    CHECK_OK(vram_hw_simulate_gpu(hw, 0, "NVIDIA H100 80GB HBM3"));
    CHECK_INT(vram_hw_gpu_count(hw), 1);
    CHECK_OK(vram_hw_gpu(hw, 0, &g));
    CHECK_STR(g.profile, "H100 80GB");
    CHECK_INT(g.pcie_gen_max, 5);

    /* Failures leave everything as it was. */
    vram_gpu_info before = g;
    CHECK_INT(vram_hw_simulate_gpu(hw, 2, "4090"), VRAM_E_RANGE);
    CHECK_INT(vram_hw_simulate_gpu(hw, -1, "4090"), VRAM_E_RANGE);
    CHECK_INT(vram_hw_simulate_gpu(hw, 1, "GTX 480"), VRAM_E_NOT_FOUND);
    CHECK_INT(vram_hw_simulate_gpu(hw, 0, NULL), VRAM_E_INVALID);
    CHECK_INT(vram_hw_set_vram(hw, 0, 0, 0), VRAM_E_RANGE);
    CHECK(strstr(vram_last_error(), "total") != NULL);
    CHECK_INT(vram_hw_set_vram(hw, 0, -5, 0), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_vram(hw, 0, NAN, 0), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_vram(hw, 0, INFINITY, 0), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_vram(hw, 0, 1000, 1001), VRAM_E_RANGE);
    CHECK(strstr(vram_last_error(), "used") != NULL);
    CHECK_INT(vram_hw_set_vram(hw, 0, 1000, -1), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_vram(hw, 0, 1000, NAN), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_vram(hw, 2, 1000, 0), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_vram(NULL, 0, 1000, 0), VRAM_E_INVALID);
    CHECK_INT(vram_hw_set_bandwidth(hw, 0, 0, 5), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_bandwidth(hw, 0, 20, -1), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_bandwidth(hw, 0, NAN, 5), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_bandwidth(hw, 1, 20, 5), VRAM_E_RANGE);
    CHECK_INT(vram_hw_gpu_count(hw), 1);
    CHECK_OK(vram_hw_gpu(hw, 0, &g));
    CHECK(memcmp(&g, &before, sizeof g) == 0);

    CHECK_OK(vram_hw_set_vram(hw, 0, 16000, 2000.5));
    CHECK_OK(vram_hw_gpu(hw, 0, &g));
    CHECK_INT(g.total_bytes, 16000 * MIB);
    CHECK_INT(g.used_bytes, 2000 * MIB + MIB / 2);
    CHECK_INT(g.free_bytes, g.total_bytes - g.used_bytes);
    CHECK_STR(g.profile, "H100 80GB"); /* the rest of the GPU stays */
    CHECK(g.tflops_known);

    CHECK_OK(vram_hw_set_vram(hw, 1, 8192, 8192));
    CHECK_INT(vram_hw_gpu_count(hw), 2);
    CHECK_OK(vram_hw_gpu(hw, 1, &g));
    CHECK_INT(g.index, 1);
    CHECK(g.simulated);
    CHECK_STR(g.name, "Simulated GPU");
    CHECK_STR(g.profile, "");
    CHECK_INT(g.free_bytes, 0);
    CHECK(!g.tflops_known && !g.bandwidth_known);

    CHECK_OK(vram_hw_set_bandwidth(hw, 1, 20.5, 6.5));
    CHECK_OK(vram_hw_gpu(hw, 1, &g));
    CHECK(g.bandwidth_known && g.bandwidth_measured);
    CHECK_NEAR(g.h2d_pinned_gbps, 20.5, 0);
    CHECK_NEAR(g.h2d_pageable_gbps, 6.5, 0);

    vram_dram_info d = {.size = sizeof d}, dbefore = {.size = sizeof dbefore};
    CHECK_OK(vram_hw_dram(hw, &dbefore));
    CHECK_INT(vram_hw_set_dram(hw, 1000, 1001), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_dram(hw, 1000, 0), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_dram(hw, 0, 0), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_dram(hw, NAN, 10), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_dram(hw, 1000, INFINITY), VRAM_E_RANGE);
    CHECK_INT(vram_hw_set_dram(NULL, 1000, 10), VRAM_E_INVALID);
    CHECK_OK(vram_hw_dram(hw, &d));
    CHECK(memcmp(&d, &dbefore, sizeof d) == 0);
    CHECK_OK(vram_hw_set_dram(hw, 65536, 32768));
    CHECK_OK(vram_hw_dram(hw, &d));
    CHECK(d.simulated && d.meminfo_known && !d.cgroup_known);
    CHECK_INT(d.total_bytes, 64 * GIB);
    CHECK_INT(d.available_bytes, 32 * GIB);

    /* Struct checks. */
    vram_gpu_info small = {.size = 8};
    CHECK_INT(vram_hw_gpu(hw, 0, &small), VRAM_E_INVALID);
    CHECK_INT(vram_hw_gpu(hw, 0, NULL), VRAM_E_INVALID);
    CHECK_INT(vram_hw_gpu(NULL, 0, &g), VRAM_E_INVALID);
    vram_dram_info dsmall = {.size = 4};
    CHECK_INT(vram_hw_dram(hw, &dsmall), VRAM_E_INVALID);
    vram_hw_free(hw);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/vram-probe-XXXXXX");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    driver_scenarios();
    real_probe();
    dram_files();
    overrides();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    CHECK_INT(system(cmd), 0);
    CHECK_DONE();
}
