/* bench_plan - time vram_plan_create on a 100-block model and the Wan
 * catalog (target: under 1 ms per plan). Prints one line per case. */
#include "vram.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

static int bench(const char *what, const vram_layout *l, const vram_hw *hw,
                 const vram_plan_options *o) {
    vram_plan *p = NULL;
    int st = vram_plan_create(l, hw, o, &p); /* warm up, and report refusals */
    if (st) {
        fprintf(stderr, "%s: %s: %s\n", what, vram_strerror(st), vram_last_error());
        return 1;
    }
    vram_plan_summary s = {.size = sizeof s};
    vram_plan_get_summary(p, &s);
    vram_plan_free(p);
    int iters = 0;
    double start = vram_now_ms(), now = start;
    while (now - start < 200 && iters < 100000) {
        if (vram_plan_create(l, hw, o, &p) == VRAM_OK)
            vram_plan_free(p);
        iters++;
        now = vram_now_ms();
    }
    printf("%-34s %4d blocks %3d streamed %d slot(s): %8.1f us per plan (%d plans)\n", what,
           s.block_count, s.streamed_count, s.slot_count, (now - start) * 1e3 / iters, iters);
    return 0;
}

int main(void) {
    vram_hw *hw = NULL;
    if (vram_hw_probe_dram_only(&hw) || vram_hw_simulate_gpu(hw, 0, "RTX 4090") ||
        vram_hw_set_dram(hw, 131072, 98304)) {
        fprintf(stderr, "hw: %s\n", vram_last_error());
        vram_hw_free(hw);
        return 1;
    }
    int rc = 0;
    vram_plan_options o;
    vram_plan_options_init(&o);

    uint64_t sizes[100];
    for (int i = 0; i < 100; i++)
        sizes[i] = (uint64_t)(300 + (i % 7) * 10) << 20; /* 300-360 MiB, uneven */
    vram_layout *l = NULL;
    if (vram_layout_from_blocks(sizes, 100, 1ull << 30, 0, &l) == VRAM_OK) {
        rc |= bench("100 blocks, auto", l, hw, &o);
        o.enable_dram_optimization = false;
        rc |= bench("100 blocks, auto, pageable", l, hw, &o);
        vram_plan_options_init(&o);
        o.auto_hardware_tuning = false;
        o.blocks_to_swap = 80;
        rc |= bench("100 blocks, manual 80", l, hw, &o);
        vram_layout_free(l);
    }
    vram_plan_options_init(&o);
    const char *models[] = {"wan2.1-t2v-14b", "wan2.1-t2v-1.3b", "wan2.2-ti2v-5b"};
    for (int m = 0; m < 3; m++) {
        if (vram_layout_from_catalog(models[m], VRAM_DTYPE_BF16, &l) == VRAM_OK) {
            rc |= bench(models[m], l, hw, &o);
            vram_layout_free(l);
        }
    }
    vram_hw_free(hw);
    return rc;
}
