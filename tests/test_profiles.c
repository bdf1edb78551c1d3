/* test_profiles.c - built-in GPU profiles: the table, name and alias
 * matching (driver names, short names, variants that must not match). */
#define _GNU_SOURCE
#include "check.h"
#include "internal.h"

#define MIB (1024ull * 1024ull)

static void table(void) {
    int n = vram_gpu_profile_count();
    CHECK(n >= 10);
    for (int i = 0; i < n; i++) {
        vram_gpu_profile p = {.size = sizeof p};
        CHECK_OK(vram_gpu_profile_get(i, &p));
        CHECK(p.name[0] != '\0');
        CHECK(p.total_bytes > 0 && p.total_bytes % MIB == 0);
        CHECK(p.sm_count > 0 && p.cc_major >= 8);
        CHECK(p.pcie_gen == 4 || p.pcie_gen == 5);
        CHECK(p.pcie_width == 8 || p.pcie_width == 16);
        CHECK(p.bf16_tflops > 0);
        CHECK(p.h2d_pinned_gbps > p.h2d_pageable_gbps && p.h2d_pageable_gbps > 0);
        CHECK_INT(p.size, sizeof p);
        /* Every profile finds itself by its own name and by each alias. */
        vram_gpu_profile q = {.size = sizeof q};
        CHECK_OK(vram_gpu_profile_find(p.name, &q));
        CHECK_STR(q.name, p.name);
        char aliases[VRAM_NAME_MAX];
        snprintf(aliases, sizeof aliases, "%s", p.aliases);
        for (char *save = NULL, *a = strtok_r(aliases, ",", &save); a;
             a = strtok_r(NULL, ",", &save)) {
            CHECK_OK(vram_gpu_profile_find(a, &q));
            if (strcmp(q.name, p.name) != 0)
                fprintf(stderr, "alias \"%s\" of %s found %s\n", a, p.name, q.name);
            CHECK_STR(q.name, p.name);
        }
    }
    vram_gpu_profile p = {.size = sizeof p};
    CHECK_INT(vram_gpu_profile_get(-1, &p), VRAM_E_RANGE);
    CHECK_INT(vram_gpu_profile_get(n, &p), VRAM_E_RANGE);
    CHECK_INT(vram_gpu_profile_get(0, NULL), VRAM_E_INVALID);
    vram_gpu_profile small = {.size = 4};
    CHECK_INT(vram_gpu_profile_get(0, &small), VRAM_E_INVALID);
}

static void expect(const char *query, const char *name) {
    vram_gpu_profile p = {.size = sizeof p};
    int st = vram_gpu_profile_find(query, &p);
    if (st)
        fprintf(stderr, "find(\"%s\"): %s\n", query, vram_last_error());
    CHECK_OK(st);
    CHECK_STR(p.name, name);
}

static void expect_none(const char *query) {
    vram_gpu_profile p = {.size = sizeof p};
    int st = vram_gpu_profile_find(query, &p);
    if (st != VRAM_E_NOT_FOUND)
        fprintf(stderr, "find(\"%s\") found %s\n", query, p.name);
    CHECK_INT(st, VRAM_E_NOT_FOUND);
}

static void names(void) {
    /* Short names, spellings, and what the driver reports. */
    expect("4090", "RTX 4090");
    expect("rtx4090", "RTX 4090");
    expect("RTX-4090", "RTX 4090");
    expect("rtx 4090", "RTX 4090");
    expect("NVIDIA GeForce RTX 4090", "RTX 4090");
    expect("h100", "H100 80GB");
    expect("NVIDIA H100 80GB HBM3", "H100 80GB");
    expect("NVIDIA H100 PCIe", "H100 PCIe");
    expect("NVIDIA H200", "H200");
    expect("NVIDIA L40S", "L40S");
    expect("NVIDIA GeForce RTX 3060", "RTX 3060 12GB");
    expect("NVIDIA GeForce RTX 3080", "RTX 3080");
    expect("NVIDIA GeForce RTX 3090", "RTX 3090");
    expect("NVIDIA GeForce RTX 4060 Ti", "RTX 4060 Ti 16GB");
    expect("4060ti", "RTX 4060 Ti 16GB");
    expect("NVIDIA GeForce RTX 4070 Ti", "RTX 4070 Ti");
    expect("NVIDIA GeForce RTX 4080", "RTX 4080");
    expect("NVIDIA GeForce RTX 5090", "RTX 5090");
    expect("a100", "A100 40GB");
    expect("NVIDIA A100-SXM4-40GB", "A100 40GB");
    expect("NVIDIA A100-PCIE-40GB", "A100 40GB");
    expect("NVIDIA A100-SXM4-80GB", "A100 80GB");
    expect("NVIDIA A100 80GB PCIe", "A100 80GB");
    expect("a100_80gb", "A100 80GB");

    /* Different products with the same number. */
    expect_none("NVIDIA GeForce RTX 4060");
    expect_none("NVIDIA GeForce RTX 3060 Ti");
    expect_none("NVIDIA GeForce RTX 4070 Ti SUPER");
    expect_none("NVIDIA GeForce RTX 4080 SUPER");
    expect_none("NVIDIA GeForce RTX 4090 Laptop GPU");
    expect_none("NVIDIA L40");
    expect_none("40");
    expect_none("");
    expect_none("GTX 1080");
    CHECK(strstr(vram_last_error(), "GTX 1080") != NULL);
    CHECK(strstr(vram_last_error(), "RTX 4090") != NULL);
    CHECK(strstr(vram_last_error(), "H200") != NULL);

    vram_gpu_profile p = {.size = sizeof p};
    CHECK_INT(vram_gpu_profile_find(NULL, &p), VRAM_E_INVALID);
    CHECK_INT(vram_gpu_profile_find("4090", NULL), VRAM_E_INVALID);
}

static vram_gpu_profile get(const char *name) {
    vram_gpu_profile p = {.size = sizeof p};
    CHECK_OK(vram_gpu_profile_find(name, &p));
    return p;
}

static void numbers(void) {
    static const struct {
        const char *name;
        unsigned mib;
        int gen, width;
        double pinned;
    } want[] = {
        {"RTX 3060 12GB", 12288, 4, 16, 24}, {"RTX 4060 Ti 16GB", 16380, 4, 8, 12},
        {"RTX 3090", 24576, 4, 16, 24},      {"RTX 4090", 24564, 4, 16, 24},
        {"RTX 5090", 32607, 5, 16, 54},      {"A100 40GB", 40960, 4, 16, 24},
        {"A100 80GB", 81920, 4, 16, 24},     {"H100 80GB", 81559, 5, 16, 54},
        {"H200", 143771, 5, 16, 54},         {"L40S", 46068, 4, 16, 24},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        vram_gpu_profile p = get(want[i].name);
        CHECK_INT(p.total_bytes, (uint64_t)want[i].mib * MIB);
        CHECK_INT(p.pcie_gen, want[i].gen);
        CHECK_INT(p.pcie_width, want[i].width);
        CHECK_NEAR(p.h2d_pinned_gbps, want[i].pinned, 1e-9);
    }
    /* The seed's log: RTX 5090 at 32606.6 MB. */
    CHECK_NEAR(get("5090").total_bytes / (1024.0 * 1024.0), 32606.6, 0.5);

    /* Calibration: one 14B Wan block at 32,760 tokens took 68.3 ms on the
     * H100 (2 x tokens x params + 4 x tokens^2 x dim FLOPs). */
    double tokens = 32760, flops = 2 * tokens * 351394304.0 + 4 * tokens * tokens * 5120;
    double ms = flops / (get("h100").bf16_tflops * 1e12) * 1e3;
    CHECK_NEAR(ms, 68.3, 3);
    /* Measured pageable on the H100: 7.1-8.9 GB/s. */
    double pageable = get("h100").h2d_pageable_gbps;
    CHECK(pageable >= 7.1 && pageable <= 8.9);
    /* Faster cards are faster. */
    CHECK(get("4090").bf16_tflops > get("3090").bf16_tflops);
    CHECK(get("3090").bf16_tflops > get("3060").bf16_tflops);
    CHECK(get("h100").bf16_tflops > get("a100").bf16_tflops);
    CHECK(get("5090").bf16_tflops > get("4090").bf16_tflops);
}

int main(void) {
    table();
    names();
    numbers();
    CHECK_DONE();
}
