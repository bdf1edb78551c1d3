/* vram_plan_option_range: every numeric field of vram_plan_options has a
 * range, and it is the range vram_plan_options_validate and vram_plan_create
 * enforce (its bounds allowed, the values just past them refused; a model
 * with more than 15 VACE blocks raises vace_blocks_to_swap's: see
 * test_plan_stream_more). */
#include "check.h"
#include "vram.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

/* The numeric fields of vram_plan_options as the header documents them. */
static const struct {
    const char *name;
    size_t offset;
    bool integer;
} fields[] = {
#define F(name, integer) {#name, offsetof(vram_plan_options, name), integer}
    F(gpu_index, true),           F(vram_threshold_percent, false),
    F(safety_reserve_percent, false), F(dram_usable_fraction, false),
    F(width, true),               F(height, true),
    F(frames, true),              F(text_tokens, true),
    F(passes_per_step, true),     F(blocks_to_swap, true),
    F(num_cuda_streams, true),    F(bandwidth_target, false),
    F(vace_blocks_to_swap, true), F(measured_h2d_gbps, false),
    F(measured_block_ms, false),  F(max_pinned_mb, false),
    F(disk_gbps, false),
#undef F
};
#define FIELD_COUNT (int)(sizeof fields / sizeof fields[0])

static vram_option_range range_of(const char *name) {
    vram_option_range r = {.size = sizeof r};
    CHECK_OK(vram_plan_option_range(name, &r));
    return r;
}

/* Defaults with field `i` set to v; the validation's status. A refusal must
 * name the field. */
static int validate_with(int i, double v) {
    vram_plan_options o;
    vram_plan_options_init(&o);
    char *field = (char *)&o + fields[i].offset;
    if (fields[i].integer)
        *(int *)field = (int)v;
    else
        *(double *)field = v;
    int st = vram_plan_options_validate(&o);
    if (st) {
        CHECK_INT(st, VRAM_E_RANGE);
        CHECK(strncmp(vram_last_error(), fields[i].name, strlen(fields[i].name)) == 0);
    }
    return st;
}

static void test_every_field_has_a_range(void) {
    vram_plan_options defaults;
    vram_plan_options_init(&defaults);
    for (int i = 0; i < FIELD_COUNT; i++) {
        vram_option_range r = range_of(fields[i].name);
        CHECK(r.min < r.max);
        CHECK_INT(r.integer, fields[i].integer);
        CHECK(r.step >= 0);
        CHECK(!r.integer || (r.min == floor(r.min) && (isinf(r.max) || r.max == floor(r.max))));
        /* the default is allowed */
        const char *d = (const char *)&defaults + fields[i].offset;
        double v = fields[i].integer ? *(const int *)d : *(const double *)d;
        if (validate_with(i, v) != VRAM_OK)
            fprintf(stderr, "default of %s refused: %s\n", fields[i].name, vram_last_error());
    }
}

/* Every field: its bounds allowed, one step (or one ulp) past them refused. */
static void test_bounds_are_what_validation_enforces(void) {
    for (int i = 0; i < FIELD_COUNT; i++) {
        vram_option_range r = range_of(fields[i].name);
        double below = r.integer ? r.min - 1 : nextafter(r.min, -HUGE_VAL);
        if (r.min_excluded) {
            CHECK_INT(validate_with(i, r.min), VRAM_E_RANGE);
            CHECK_OK(validate_with(i, nextafter(r.min, HUGE_VAL)));
        } else {
            CHECK_OK(validate_with(i, r.min));
            CHECK_INT(validate_with(i, below), VRAM_E_RANGE);
        }
        if (isinf(r.max)) {
            CHECK_OK(validate_with(i, DBL_MAX));
            CHECK_INT(validate_with(i, HUGE_VAL), VRAM_E_RANGE);
            CHECK_INT(validate_with(i, NAN), VRAM_E_RANGE);
        } else if (r.integer) {
            int top = (int)(r.max - fmod(r.max - r.min, r.step ? r.step : 1));
            CHECK_OK(validate_with(i, top));
            CHECK_INT(validate_with(i, r.max + 1), VRAM_E_RANGE);
        } else {
            CHECK_OK(validate_with(i, r.max));
            CHECK_INT(validate_with(i, nextafter(r.max, HUGE_VAL)), VRAM_E_RANGE);
            CHECK_INT(validate_with(i, NAN), VRAM_E_RANGE);
        }
        if (r.step > 1) {
            CHECK_OK(validate_with(i, r.min + r.step));
            CHECK_INT(validate_with(i, r.min + 1), VRAM_E_RANGE);
        }
    }
}

/* The seed's parameters keep the ranges the seed gives them. */
static void test_seed_ranges(void) {
    static const struct {
        const char *name;
        double min, max;
    } seed[] = {
        {"vram_threshold_percent", 10, 95},
        {"num_cuda_streams", 1, 16},
        {"bandwidth_target", 0.1, 1.0},
        {"vace_blocks_to_swap", 0, 15},
    };
    for (size_t i = 0; i < sizeof seed / sizeof seed[0]; i++) {
        vram_option_range r = range_of(seed[i].name);
        CHECK_NEAR(r.min, seed[i].min, 0);
        CHECK_NEAR(r.max, seed[i].max, 0);
        CHECK(!r.min_excluded && r.step == 0);
    }
    vram_option_range b = range_of("blocks_to_swap");
    CHECK_NEAR(b.min, 0, 0);
    CHECK(b.max >= 40); /* the model bounds it (below) */
}

static vram_layout *blocks(int n) {
    uint64_t sizes[64];
    for (int i = 0; i < n; i++)
        sizes[i] = 64ull << 20;
    vram_layout *l = NULL;
    CHECK_OK(vram_layout_from_blocks(sizes, n, 128ull << 20, 1024, &l));
    return l;
}

static int plan_with(const vram_layout *l, const vram_hw *hw, const vram_plan_options *o) {
    vram_plan *p = NULL;
    int st = vram_plan_create(l, hw, o, &p);
    CHECK((st == VRAM_OK) == (p != NULL));
    vram_plan_free(p);
    return st;
}

/* vram_plan_create refuses what the range refuses, before planning, and
 * bounds the block counts by the model's. */
static void test_the_planner_enforces_them(void) {
    vram_layout *l = blocks(12);
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    CHECK_OK(vram_hw_set_vram(hw, 0, 81920, 0));
    CHECK_OK(vram_hw_set_dram(hw, 65536, 49152));
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.width = o.height = 64;
    o.frames = 5;

    vram_option_range t = range_of("vram_threshold_percent");
    o.vram_threshold_percent = t.min;
    CHECK_OK(plan_with(l, hw, &o));
    o.vram_threshold_percent = t.max;
    CHECK_OK(plan_with(l, hw, &o));
    o.vram_threshold_percent = t.min - 0.001;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    CHECK_STR(vram_last_error(), "vram_threshold_percent is 9.999, allowed 10-95");
    o.vram_threshold_percent = t.max + 0.001;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    o.vram_threshold_percent = 50;

    o.auto_hardware_tuning = false;
    o.blocks_to_swap = 4;
    vram_option_range s = range_of("num_cuda_streams");
    o.num_cuda_streams = (int)s.min;
    CHECK_OK(plan_with(l, hw, &o));
    o.num_cuda_streams = (int)s.max;
    CHECK_OK(plan_with(l, hw, &o));
    o.num_cuda_streams = (int)s.max + 1;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    CHECK_STR(vram_last_error(), "num_cuda_streams is 17, allowed 1-16");
    o.num_cuda_streams = (int)s.min - 1;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    o.num_cuda_streams = 8;

    vram_option_range b = range_of("bandwidth_target");
    o.bandwidth_target = b.min;
    CHECK_OK(plan_with(l, hw, &o));
    o.bandwidth_target = b.max;
    CHECK_OK(plan_with(l, hw, &o));
    o.bandwidth_target = b.min - 1e-6;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    o.bandwidth_target = b.max + 1e-6;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    o.bandwidth_target = 0.8;

    /* blocks_to_swap: the static range, then the model's 12 blocks */
    o.blocks_to_swap = 12;
    CHECK_OK(plan_with(l, hw, &o));
    o.blocks_to_swap = 13;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    CHECK_STR(vram_last_error(), "blocks_to_swap is 13, allowed 0-12 for this model");
    o.blocks_to_swap = (int)range_of("blocks_to_swap").min - 1;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    CHECK_STR(vram_last_error(), "blocks_to_swap is -1, allowed 0-65536");
    /* vace_blocks_to_swap: within the static range, over this model's 0 */
    o.blocks_to_swap = 4;
    o.vace_blocks_to_swap = 1;
    CHECK_INT(plan_with(l, hw, &o), VRAM_E_RANGE);
    CHECK_STR(vram_last_error(), "vace_blocks_to_swap is 1, allowed 0-0 for this model");

    vram_hw_free(hw);
    vram_layout_free(l);
}

/* The fields a range marks manual_only are those auto mode does not read:
 * an auto plan is the same whatever their value; the others are not marked.
 * (On 8 GiB the 12 blocks of 64 MiB partly stream, so there is a plan for
 * streams, share and counts to change.) */
static void test_manual_only(void) {
    static const char *manual[] = {"blocks_to_swap", "num_cuda_streams", "bandwidth_target",
                                   "vace_blocks_to_swap"};
    vram_layout *l = blocks(12);
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    CHECK_OK(vram_hw_set_vram(hw, 0, 8192, 0));
    CHECK_OK(vram_hw_set_dram(hw, 65536, 49152));
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.vram_threshold_percent = 10;
    vram_plan *base = NULL;
    CHECK_OK(vram_plan_create(l, hw, &o, &base));
    vram_plan_summary want = {.size = sizeof want};
    if (base)
        CHECK_OK(vram_plan_get_summary(base, &want));
    CHECK(want.streamed_count > 0 && want.resident_count > 0);
    for (int i = 0; i < FIELD_COUNT; i++) {
        bool expected = false;
        for (int m = 0; m < 4; m++)
            expected |= strcmp(fields[i].name, manual[m]) == 0;
        vram_option_range r = range_of(fields[i].name);
        CHECK_INT(r.manual_only, expected);
        if (!r.manual_only)
            continue;
        vram_plan_options changed = o;
        char *field = (char *)&changed + fields[i].offset;
        if (fields[i].integer)
            *(int *)field = (int)(r.max < 12 ? r.max : 12);
        else
            *(double *)field = r.min;
        vram_plan *p = NULL;
        CHECK_OK(vram_plan_create(l, hw, &changed, &p));
        vram_plan_summary got = {.size = sizeof got};
        if (p)
            CHECK_OK(vram_plan_get_summary(p, &got));
        CHECK_INT(got.streamed_count, want.streamed_count);
        CHECK_INT(got.slot_count, want.slot_count);
        CHECK_INT(got.copy_streams, want.copy_streams);
        CHECK_NEAR(got.bandwidth_target, want.bandwidth_target, 0);
        CHECK_NEAR(got.predicted_step_ms, want.predicted_step_ms, 0);
        vram_plan_free(p);
    }
    vram_plan_free(base);
    vram_hw_free(hw);
    vram_layout_free(l);
}

/* vram_plan_stream_more lowers the threshold by 10, not below its minimum:
 * 15 -> 10 (on 8 GiB: 15% keeps all 12 blocks, 10% streams some). */
static void test_stream_more_stops_at_the_minimum(void) {
    vram_layout *l = blocks(12);
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    CHECK_OK(vram_hw_set_vram(hw, 0, 8192, 0));
    CHECK_OK(vram_hw_set_dram(hw, 65536, 49152));
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.width = o.height = 64;
    o.frames = 5;
    o.vram_threshold_percent = 15;
    vram_plan *p = NULL, *more = NULL;
    CHECK_OK(vram_plan_create(l, hw, &o, &p));
    CHECK_OK(vram_plan_stream_more(p, l, hw, &more));
    vram_plan_options got = {.size = sizeof got};
    if (more)
        CHECK_OK(vram_plan_get_options(more, &got));
    CHECK_NEAR(got.vram_threshold_percent, range_of("vram_threshold_percent").min, 0);
    CHECK(got.auto_hardware_tuning);
    vram_plan_free(more);
    vram_plan_free(p);
    vram_hw_free(hw);
    vram_layout_free(l);
}

static void test_unknown_names(void) {
    vram_option_range r = {.size = sizeof r, .min = 7, .max = 7};
    CHECK_INT(vram_plan_option_range("vram_threshold", &r), VRAM_E_NOT_FOUND);
    CHECK_STR(vram_last_error(),
              "'vram_threshold' is not a numeric field of vram_plan_options: it has no range");
    CHECK(r.min == 7 && r.max == 7); /* untouched */
    /* a switch, not a number */
    CHECK_INT(vram_plan_option_range("offload_txt_emb", &r), VRAM_E_NOT_FOUND);
    CHECK_INT(vram_plan_option_range("size", &r), VRAM_E_NOT_FOUND);
    CHECK_INT(vram_plan_option_range("", &r), VRAM_E_NOT_FOUND);
    CHECK_INT(vram_plan_option_range(NULL, &r), VRAM_E_INVALID);
    CHECK_INT(vram_plan_option_range("frames", NULL), VRAM_E_INVALID);
    r.size = 4;
    CHECK_INT(vram_plan_option_range("frames", &r), VRAM_E_INVALID);
}

/* The fields a range marks zero_unset are the ones whose 0 is the default,
 * "not set": vram_plan_options_init leaves them at their minimum, 0. */
static void test_zero_unset(void) {
    static const char *unset[] = {"measured_h2d_gbps", "measured_block_ms", "max_pinned_mb"};
    vram_plan_options o;
    vram_plan_options_init(&o);
    for (int i = 0; i < FIELD_COUNT; i++) {
        bool expected = false;
        for (int u = 0; u < 3; u++)
            expected |= strcmp(fields[i].name, unset[u]) == 0;
        vram_option_range r = range_of(fields[i].name);
        CHECK_INT(r.zero_unset, expected);
        if (expected) {
            CHECK_NEAR(r.min, 0, 0);
            CHECK_NEAR(*(double *)((char *)&o + fields[i].offset), 0, 0);
        }
    }
}

int main(void) {
    test_every_field_has_a_range();
    test_zero_unset();
    test_bounds_are_what_validation_enforces();
    test_seed_ranges();
    test_the_planner_enforces_them();
    test_manual_only();
    test_stream_more_stops_at_the_minimum();
    test_unknown_names();
    CHECK_DONE();
}
