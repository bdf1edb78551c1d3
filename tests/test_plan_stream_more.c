/* vram_plan_stream_more, the out-of-memory retry policy: auto mode lowers
 * the threshold by 10 (floor 10), otherwise (or when that streams no more)
 * a manual count of the streamed main blocks + ceil(n/8), capped at the
 * main block count; VRAM_E_DOES_NOT_FIT when nothing more can stream, with
 * *out untouched on every failure. */
#include "check.h"
#include "vram.h"

#define MIB (1024.0 * 1024.0)
#define N 20

/* N blocks of 100 MiB and 200 MiB of the rest. */
static vram_layout *model(void) {
    uint64_t sizes[N];
    for (int i = 0; i < N; i++)
        sizes[i] = (uint64_t)(100 * MIB);
    vram_layout *l = NULL;
    CHECK_OK(vram_layout_from_blocks(sizes, N, (uint64_t)(200 * MIB), 1024, &l));
    return l;
}

/* A GPU of `vram_mb` with nothing used, and ample DRAM. */
static vram_hw *gpu(double vram_mb) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    CHECK_OK(vram_hw_set_vram(hw, 0, vram_mb, 0));
    CHECK_OK(vram_hw_set_dram(hw, 65536, 49152));
    return hw;
}

static vram_plan_options small_video(void) {
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.width = o.height = 16;
    o.frames = 1;
    return o;
}

static vram_plan *plan(const vram_layout *l, const vram_hw *hw, const vram_plan_options *o) {
    vram_plan *p = NULL;
    CHECK_OK(vram_plan_create(l, hw, o, &p));
    return p;
}

static vram_plan_summary summary(const vram_plan *p) {
    vram_plan_summary s = {.size = sizeof s};
    CHECK_OK(vram_plan_get_summary(p, &s));
    return s;
}

static vram_plan_options options(const vram_plan *p) {
    vram_plan_options o = {.size = sizeof o};
    CHECK_OK(vram_plan_get_options(p, &o));
    return o;
}

/* Streams more from `o`; checks the result is what vram_plan_create gives
 * for the options it reports, and returns them. */
static vram_plan_options more(const vram_layout *l, const vram_hw *hw, const vram_plan_options *o,
                              int *before, int *after) {
    vram_plan *cur = plan(l, hw, o), *next = NULL;
    vram_plan_options got = *o;
    *before = *after = -1;
    if (!cur)
        return got;
    CHECK_OK(vram_plan_stream_more(cur, l, hw, &next));
    *before = summary(cur).streamed_count;
    if (next) {
        got = options(next);
        *after = summary(next).streamed_count;
        CHECK(*after > *before);
        vram_plan *same = plan(l, hw, &got);
        if (same)
            CHECK_INT(summary(same).streamed_count, *after);
        vram_plan_free(same);
    }
    vram_plan_free(next);
    vram_plan_free(cur);
    return got;
}

static void test_auto_lowers_threshold(void) {
    vram_layout *l = model();
    vram_hw *hw = gpu(4000);
    vram_plan_options o = small_video();
    int before, after;
    /* cap 50% of 4000 MiB holds the rest + 18 blocks; 40% holds 14 */
    vram_plan_options got = more(l, hw, &o, &before, &after);
    CHECK(got.auto_hardware_tuning);
    CHECK_NEAR(got.vram_threshold_percent, 40, 0);
    CHECK_INT(before, 2);
    CHECK_INT(after, 6);
    /* floor 10 */
    o.vram_threshold_percent = 15;
    got = more(l, hw, &o, &before, &after);
    CHECK(got.auto_hardware_tuning);
    CHECK_NEAR(got.vram_threshold_percent, 10, 0);
    CHECK_INT(before, 16);
    CHECK_INT(after, 18);
    /* at the floor: manual, 18 + ceil(20/8) capped at 20, with the copy
     * streams and share the auto plan chose (not the 8 and 0.8 it holds) */
    o.vram_threshold_percent = 10;
    got = more(l, hw, &o, &before, &after);
    CHECK(!got.auto_hardware_tuning);
    CHECK_NEAR(got.vram_threshold_percent, 10, 0);
    CHECK_INT(got.blocks_to_swap, N);
    CHECK_INT(after, N);
    vram_plan *floor = plan(l, hw, &o);
    if (floor) {
        vram_plan_summary fs = summary(floor);
        CHECK(fs.copy_streams != o.num_cuda_streams && fs.bandwidth_target != o.bandwidth_target);
        CHECK_INT(got.num_cuda_streams, fs.copy_streams);
        CHECK_NEAR(got.bandwidth_target, fs.bandwidth_target, 0);
    }
    vram_plan_free(floor);
    vram_hw_free(hw);
    vram_layout_free(l);
}

/* Everything fits under 40% as under 50%: the lower threshold streams no
 * more, so the manual step applies. */
static void test_auto_falls_back_to_manual(void) {
    vram_layout *l = model();
    vram_hw *hw = gpu(81920);
    vram_plan_options o = small_video();
    int before, after;
    vram_plan_options got = more(l, hw, &o, &before, &after);
    CHECK_INT(before, 0);
    CHECK(!got.auto_hardware_tuning);
    CHECK_NEAR(got.vram_threshold_percent, 50, 0); /* not half-applied */
    CHECK_INT(got.blocks_to_swap, 3);
    CHECK_INT(after, 3);
    /* nothing streamed before: one copy stream at full speed */
    CHECK_INT(got.num_cuda_streams, 1);
    CHECK_NEAR(got.bandwidth_target, 1.0, 0);
    vram_hw_free(hw);
    vram_layout_free(l);
}

static void test_manual(void) {
    vram_layout *l = model();
    vram_hw *hw = gpu(81920);
    vram_plan_options o = small_video();
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = 3;
    o.bandwidth_target = 0.5;
    int before, after;
    vram_plan_options got = more(l, hw, &o, &before, &after);
    CHECK_INT(got.blocks_to_swap, 6); /* 3 + ceil(20/8) */
    CHECK_INT(after, 6);
    CHECK_NEAR(got.bandwidth_target, 0.5, 0); /* the other options stay */
    CHECK_NEAR(got.vram_threshold_percent, 50, 0);
    o.blocks_to_swap = 18;
    got = more(l, hw, &o, &before, &after);
    CHECK_INT(got.blocks_to_swap, N); /* capped */
    CHECK_INT(after, N);
    vram_hw_free(hw);
    vram_layout_free(l);
}

static void test_nothing_more(void) {
    vram_layout *l = model();
    vram_hw *hw = gpu(81920);
    vram_plan_options o = small_video();
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = N;
    vram_plan *cur = plan(l, hw, &o);
    vram_plan *sentinel = (vram_plan *)&o, *out = sentinel;
    CHECK_INT(vram_plan_stream_more(cur, l, hw, &out), VRAM_E_DOES_NOT_FIT);
    CHECK(out == sentinel);
    CHECK(strstr(vram_last_error(), "all 20 blocks already stream") != NULL);
    /* bad arguments: a NULL, a layout of another model */
    CHECK_INT(vram_plan_stream_more(NULL, l, hw, &out), VRAM_E_INVALID);
    CHECK_INT(vram_plan_stream_more(cur, NULL, hw, &out), VRAM_E_INVALID);
    CHECK_INT(vram_plan_stream_more(cur, l, NULL, &out), VRAM_E_INVALID);
    CHECK_INT(vram_plan_stream_more(cur, l, hw, NULL), VRAM_E_INVALID);
    uint64_t one = (uint64_t)MIB;
    vram_layout *other = NULL;
    CHECK_OK(vram_layout_from_blocks(&one, 1, 0, 1024, &other));
    CHECK_INT(vram_plan_stream_more(cur, other, hw, &out), VRAM_E_INVALID);
    CHECK(strstr(vram_last_error(), "the layout has 1 blocks, the plan 20") != NULL);
    CHECK(out == sentinel);
    vram_layout_free(other);
    vram_plan_free(cur);
    vram_hw_free(hw);
    vram_layout_free(l);
}

/* `n_main` main blocks and `n_vace` VACE blocks of one 32 MiB tensor each,
 * from a safetensors header in memory. */
static vram_layout *vace_model(int n_main, int n_vace) {
    char header[16384];
    size_t len = 8;
    unsigned long long off = 0, tensor = 32u << 20;
    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (int i = 0; i < n_main + n_vace; i++, off += tensor)
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "%s\"%s.%d.ffn.0.weight\":{\"dtype\":\"BF16\",\"shape\":[4096,4096],"
                                "\"data_offsets\":[%llu,%llu]}",
                                i ? "," : "", i < n_main ? "blocks" : "vace_blocks",
                                i < n_main ? i : i - n_main, off, off + tensor);
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    for (int i = 0; i < 8; i++)
        header[i] = (char)(unsigned char)((len - 8) >> (8 * i));
    vram_layout *l = NULL;
    CHECK_OK(vram_layout_parse_header(header, len, &l));
    return l;
}

/* The VACE blocks that stream keep streaming; only main blocks are added. */
static void test_vace(void) {
    vram_layout *l = vace_model(6, 2);
    vram_hw *hw = gpu(81920);
    vram_plan_options o = small_video();
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = 2;
    o.vace_blocks_to_swap = 1;
    int before, after;
    vram_plan_options got = more(l, hw, &o, &before, &after);
    CHECK_INT(got.blocks_to_swap, 3); /* 2 + ceil(8/8) */
    CHECK_INT(got.vace_blocks_to_swap, 1);
    CHECK_INT(after, 4);
    /* all main blocks stream: more VACE blocks are the caller's call */
    o.blocks_to_swap = 6;
    vram_plan *cur = plan(l, hw, &o), *out = NULL;
    CHECK_INT(vram_plan_stream_more(cur, l, hw, &out), VRAM_E_DOES_NOT_FIT);
    CHECK(out == NULL);
    CHECK(strstr(vram_last_error(), "all 6 main blocks already stream (and 1 of 2 VACE") != NULL);
    vram_plan_free(cur);
    vram_hw_free(hw);
    vram_layout_free(l);
}

/* More VACE blocks than the 15 vace_blocks_to_swap allows for Wan: the
 * manual step keeps the VACE blocks an auto plan streams (17 here), which
 * the model bounds, and streams more main blocks (it failed with a range
 * error). On 2000 MiB at the threshold's floor the 20 main and 20 VACE
 * blocks of 32 MiB keep 6 resident. */
static void test_many_vace_blocks(void) {
    vram_layout *l = vace_model(20, 20);
    vram_hw *hw = gpu(2000);
    vram_plan_options o = small_video();
    o.vram_threshold_percent = 10;
    vram_plan *cur = plan(l, hw, &o), *next = NULL;
    vram_plan_summary s = {0};
    if (cur)
        s = summary(cur);
    CHECK_INT(s.streamed_count, 34);
    CHECK_INT(s.vace_streamed_count, 17);
    if (cur)
        CHECK_OK(vram_plan_stream_more(cur, l, hw, &next));
    if (next) {
        vram_plan_summary ns = summary(next);
        vram_plan_options got = options(next);
        CHECK(!got.auto_hardware_tuning);
        CHECK_INT(got.vace_blocks_to_swap, s.vace_streamed_count);
        CHECK_INT(got.blocks_to_swap, 20); /* capped */
        CHECK_INT(ns.vace_streamed_count, s.vace_streamed_count);
        CHECK_INT(ns.streamed_count, 20 + s.vace_streamed_count);
        /* its options plan it again; one VACE block more than the model has
         * is refused, naming the model's bound */
        vram_plan *same = plan(l, hw, &got);
        if (same)
            CHECK_INT(summary(same).streamed_count, ns.streamed_count);
        vram_plan_free(same);
        got.vace_blocks_to_swap = 21;
        CHECK_INT(vram_plan_create(l, hw, &got, &same), VRAM_E_RANGE);
        CHECK_STR(vram_last_error(), "vace_blocks_to_swap is 21, allowed 0-20 for this model");
    }
    /* the options alone keep Wan's range */
    vram_plan_options wan = small_video();
    wan.vace_blocks_to_swap = 16;
    CHECK_INT(vram_plan_options_validate(&wan), VRAM_E_RANGE);
    CHECK_STR(vram_last_error(), "vace_blocks_to_swap is 16, allowed 0-15");
    vram_plan_free(next);
    vram_plan_free(cur);
    vram_hw_free(hw);
    vram_layout_free(l);
}

int main(void) {
    test_auto_lowers_threshold();
    test_auto_falls_back_to_manual();
    test_manual();
    test_nothing_more();
    test_vace();
    test_many_vace_blocks();
    CHECK_DONE();
}
