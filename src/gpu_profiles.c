/* gpu_profiles.c - built-in GPU profiles: what a probe cannot measure
 * (throughput, expected bandwidth) and what a simulated GPU needs.
 *
 * Memory is what the driver reports (MiB, as nvidia-smi shows it).
 * bf16_tflops is EFFECTIVE dense bf16 matmul throughput with fp32
 * accumulation, about 0.7 of the spec sheet: the planner predicts block time
 * with it. H100 is calibrated on a measured 14B Wan block (32,760 tokens,
 * about 45 TFLOP in 68.3 ms: 660). GeForce cards run fp32-accumulate tensor
 * math at half their fp16-accumulate rate; the spec numbers used are those.
 * Expected pinned host-to-device: Gen4 x16 24 GB/s, Gen4 x8 12, Gen5 x16 54
 * (measured 53.9-54.7 on an H100). Pageable is about a third of pinned; on
 * the H100 it was measured at 7.1-8.9. */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024ull * 1024ull)

static const struct profile {
    const char *name;
    const char *aliases;
    unsigned total_mib;
    int sm_count, cc_major, cc_minor, pcie_gen, pcie_width;
    double bf16_tflops, pinned_gbps, pageable_gbps;
} profiles[] = {
    /* name, aliases, MiB, SMs, cc, PCIe, effective TFLOPS (spec), pinned, pageable */
    {"RTX 3060 12GB", "3060,rtx3060,rtx 3060", 12288, 28, 8, 6, 4, 16, 18, 24, 8},      /* 25.6 */
    {"RTX 3080", "3080,rtx3080,rtx 3080 10gb", 10240, 68, 8, 6, 4, 16, 42, 24, 8},      /* 59.5 */
    {"RTX 3090", "3090,rtx3090", 24576, 82, 8, 6, 4, 16, 50, 24, 8},                    /* 71 */
    {"RTX 4060 Ti 16GB", "4060 ti,rtx4060ti,4060ti 16gb", 16380, 34, 8, 9, 4, 8, 31, 12,
     4}, /* 44.1 */
    {"RTX 4070 Ti", "4070 ti,rtx4070ti", 12282, 60, 8, 9, 4, 16, 56, 24, 8},            /* 80.2 */
    {"RTX 4080", "4080,rtx4080", 16376, 76, 8, 9, 4, 16, 68, 24, 8},                    /* 97.5 */
    {"RTX 4090", "4090,rtx4090", 24564, 128, 8, 9, 4, 16, 116, 24, 8},                  /* 165.2 */
    {"RTX 5090", "5090,rtx5090", 32607, 170, 12, 0, 5, 16, 147, 54, 18},                /* 209.5 */
    {"A100 40GB", "a100,a100 40gb,a100 sxm4 40gb,a100 pcie 40gb", 40960, 108, 8, 0, 4, 16,
     218, 24, 8}, /* 312 */
    {"A100 80GB", "a100 80gb,a100 sxm4 80gb,a100 80gb pcie", 81920, 108, 8, 0, 4, 16, 218,
     24, 8}, /* 312 */
    {"H100 80GB", "h100,h100 sxm,h100 80gb hbm3,h100 sxm5 80gb", 81559, 132, 9, 0, 5, 16,
     660, 54, 8}, /* 989, calibrated */
    {"H100 PCIe", "h100 pcie", 81559, 114, 9, 0, 5, 16, 500, 54, 8}, /* 756 */
    {"H200", "h200,h200 141gb", 143771, 132, 9, 0, 5, 16, 660, 54, 8},           /* 989 */
    {"L40S", "l40s", 46068, 142, 8, 9, 4, 16, 253, 24, 8},                        /* 362 */
};

#define PROFILE_COUNT ((int)(sizeof profiles / sizeof profiles[0]))

int vram_gpu_profile_count(void) { return PROFILE_COUNT; }

static void fill(const struct profile *p, vram_gpu_profile *out) {
    uint32_t size = out->size;
    memset(out, 0, sizeof *out);
    out->size = size;
    snprintf(out->name, sizeof out->name, "%s", p->name);
    snprintf(out->aliases, sizeof out->aliases, "%s", p->aliases);
    out->total_bytes = (uint64_t)p->total_mib * MIB;
    out->sm_count = p->sm_count;
    out->cc_major = p->cc_major;
    out->cc_minor = p->cc_minor;
    out->pcie_gen = p->pcie_gen;
    out->pcie_width = p->pcie_width;
    out->bf16_tflops = p->bf16_tflops;
    out->h2d_pinned_gbps = p->pinned_gbps;
    out->h2d_pageable_gbps = p->pageable_gbps;
}

int vram_gpu_profile_get(int index, vram_gpu_profile *out) {
    VRAM_CHECK_STRUCT(out, vram_gpu_profile);
    if (index < 0 || index >= PROFILE_COUNT)
        return vram_fail(VRAM_E_RANGE, "GPU profile index %d is outside 0..%d", index,
                         PROFILE_COUNT - 1);
    fill(&profiles[index], out);
    return VRAM_OK;
}

#define MAX_WORDS 16
#define WORD_MAX 32

/* Splits a name into lowercase words at spaces, dashes, underscores and
 * commas; returns the word count (extra words and characters are cut). */
static int split_words(const char *s, size_t len, char words[MAX_WORDS][WORD_MAX]) {
    int n = 0;
    size_t i = 0;
    while (i < len && n < MAX_WORDS) {
        while (i < len && strchr(" -_,", s[i]))
            i++;
        if (i >= len)
            break;
        size_t k = 0;
        while (i < len && !strchr(" -_,", s[i])) {
            if (k + 1 < WORD_MAX)
                words[n][k++] = (char)tolower((unsigned char)s[i]);
            i++;
        }
        words[n++][k] = '\0';
    }
    return n;
}

/* Words that make a different product of the same number ("RTX 3060 Ti"
 * is not an RTX 3060, "RTX 4090 Laptop GPU" is not an RTX 4090). */
static bool is_variant_word(const char *w) {
    static const char *const variants[] = {"ti", "super", "laptop", "mobile", "max"};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        if (strcmp(w, variants[i]) == 0)
            return true;
    return false;
}

/* Length of `alias` (separators dropped) when it equals some run of
 * consecutive words of the query not followed by a variant word; 0 if not.
 * "rtx 4090", "RTX-4090" and "rtx4090" all match the alias "rtx4090". */
static size_t alias_match(char q[MAX_WORDS][WORD_MAX], int nq, const char *alias, size_t len) {
    char a[MAX_WORDS][WORD_MAX];
    int na = split_words(alias, len, a);
    char joined[MAX_WORDS * WORD_MAX] = "";
    for (int i = 0; i < na; i++)
        strcat(joined, a[i]);
    size_t want = strlen(joined);
    if (want == 0)
        return 0;
    for (int start = 0; start < nq; start++) {
        char run[MAX_WORDS * WORD_MAX] = "";
        for (int end = start; end < nq; end++) {
            strcat(run, q[end]);
            if (strlen(run) >= want) {
                if (strcmp(run, joined) == 0 && !(end + 1 < nq && is_variant_word(q[end + 1])))
                    return want;
                break;
            }
        }
    }
    return 0;
}

/* Best match over a profile's name and aliases: longest alias wins, so
 * "A100-SXM4-80GB" picks "a100 sxm4 80gb" over "a100". */
static size_t profile_score(const struct profile *p, char q[MAX_WORDS][WORD_MAX], int nq) {
    size_t best = alias_match(q, nq, p->name, strlen(p->name));
    for (const char *s = p->aliases; *s;) {
        size_t len = strcspn(s, ",");
        size_t score = alias_match(q, nq, s, len);
        if (score > best)
            best = score;
        s += len;
        if (*s == ',')
            s++;
    }
    return best;
}

int vram_gpu_profile_find(const char *name, vram_gpu_profile *out) {
    VRAM_CHECK_STRUCT(out, vram_gpu_profile);
    if (!name)
        return vram_fail(VRAM_E_INVALID, "GPU profile name is NULL");
    char q[MAX_WORDS][WORD_MAX];
    int nq = split_words(name, strlen(name), q);
    int best = -1;
    size_t best_score = 0;
    for (int i = 0; i < PROFILE_COUNT; i++) {
        size_t score = profile_score(&profiles[i], q, nq);
        if (score > best_score) {
            best_score = score;
            best = i;
        }
    }
    if (best < 0) {
        char known[768] = "";
        size_t used = 0;
        for (int i = 0; i < PROFILE_COUNT && used < sizeof known; i++)
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                     profiles[i].name);
        return vram_fail(VRAM_E_NOT_FOUND, "no GPU profile matches \"%s\"; known: %s", name,
                         known);
    }
    fill(&profiles[best], out);
    return VRAM_OK;
}
