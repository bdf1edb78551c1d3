/* test_engine.c - the block-streaming engine on the host backend: bytes
 * arrive intact under random orders and compute delays, slots are never
 * overwritten while in use, every switch has its observable effect, the
 * pinned budget holds, disk-tier blocks come from the model file. Plans
 * come from the real planner on a simulated GPU. No timing is asserted
 * except lower bounds that sleeping guarantees. */
#define _GNU_SOURCE
#include "backend.h"
#include "check.h"
#include "internal.h"
#include "vram.h"

#include <math.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

typedef struct fixture {
    vram_layout *layout;
    vram_hw *hw;
    vram_plan *plan;
    vram_plan_summary sum;
    int n;
} fixture;

typedef void (*tweak_fn)(vram_plan_options *o);

static int fixture_open(fixture *f, vram_layout *layout, int swap, double dram_mb, tweak_fn tweak) {
    memset(&f->sum, 0, sizeof f->sum);
    f->sum.size = sizeof f->sum;
    f->layout = layout;
    f->hw = NULL;
    f->plan = NULL;
    vram_layout_info li = {.size = sizeof li};
    vram_layout_get_info(layout, &li);
    f->n = li.block_count;
    int st = vram_hw_probe_dram_only(&f->hw);
    if (st == VRAM_OK)
        st = vram_hw_set_vram(f->hw, 0, 4096, 0);
    if (st == VRAM_OK)
        st = vram_hw_set_dram(f->hw, dram_mb, dram_mb);
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = swap;
    if (tweak)
        tweak(&o);
    if (st == VRAM_OK)
        st = vram_plan_create(layout, f->hw, &o, &f->plan);
    if (st == VRAM_OK)
        st = vram_plan_get_summary(f->plan, &f->sum);
    return st;
}

static int fixture_make(fixture *f, int n, uint64_t base, uint64_t step, int swap, tweak_fn tweak) {
    uint64_t sizes[64];
    for (int b = 0; b < n; b++)
        sizes[b] = base + (step ? step * (uint64_t)b + 17 * (uint64_t)(b % 3) : 0); /* unaligned */
    vram_layout *layout = NULL;
    int st = vram_layout_from_blocks(sizes, n, 1 << 20, 0, &layout);
    if (st)
        return st;
    return fixture_open(f, layout, swap, 4096, tweak);
}

static void fixture_free(fixture *f) {
    vram_plan_free(f->plan);
    vram_hw_free(f->hw);
    vram_layout_free(f->layout);
}

static uint8_t pattern(int b, uint64_t i) {
    uint64_t x = (uint64_t)(b + 1) * 0x9E3779B97F4A7C15ull + i * 0x100000001B3ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(x >> 32);
}

static int fill_all(vram_engine *eng, int n) {
    for (int b = 0; b < n; b++) {
        uint64_t bytes = vram_engine_block_bytes(eng, b);
        uint8_t *buf = malloc(bytes);
        for (uint64_t i = 0; i < bytes; i++)
            buf[i] = pattern(b, i);
        int st = vram_engine_write(eng, b, 0, buf, bytes);
        free(buf);
        if (st)
            return st;
    }
    return VRAM_OK;
}

/* Bytes of block b at `addr` that differ from its pattern (read back). */
static uint64_t mismatches(vram_engine *eng, int b, uint64_t addr) {
    uint64_t bytes = vram_engine_block_bytes(eng, b), bad = 0;
    uint8_t *buf = malloc(bytes);
    if (vram_engine_read_device(eng, addr, buf, bytes) != VRAM_OK) {
        free(buf);
        return bytes;
    }
    for (uint64_t i = 0; i < bytes; i++)
        bad += buf[i] != pattern(b, i);
    free(buf);
    return bad;
}

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void shuffle(int *v, int n) {
    for (int i = 0; i < n; i++)
        v[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rnd((uint32_t)i + 1), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static vram_engine_options host_opts(void) {
    vram_engine_options eo;
    vram_engine_options_init(&eo);
    eo.backend = VRAM_BACKEND_HOST;
    return eo;
}

/* An engine over f's plan with `eo`, every block holding its pattern; NULL
 * (a failed check) when it cannot be made. */
static vram_engine *filled_engine(const fixture *f, const vram_engine_options *eo) {
    vram_engine *eng = NULL;
    CHECK_OK(vram_engine_create(f->plan, f->layout, eo, &eng));
    if (eng)
        CHECK_OK(fill_all(eng, f->n));
    return eng;
}

/* One pass: acquire in `acq` order, check bytes, compute delay, check
 * again (a premature copy into the slot would show here), release. */
static void run_pass(vram_engine *eng, int n, const int *acq, int max_delay_us) {
    for (int i = 0; i < n; i++) {
        int b = acq[i];
        uint64_t addr = 0;
        CHECK_OK(vram_engine_acquire(eng, b, NULL, &addr));
        CHECK_INT(mismatches(eng, b, addr), 0);
        if (max_delay_us)
            sleep_us(rnd((uint32_t)max_delay_us));
        CHECK_INT(mismatches(eng, b, addr), 0);
        CHECK_OK(vram_engine_release(eng, b, NULL));
    }
}

static void test_integrity_random(void) {
    const int slots[] = {1, 2, 3}, streams[] = {1, 3};
    for (int si = 0; si < 3; si++)
        for (int ci = 0; ci < 2; ci++) {
            fixture f;
            CHECK_OK(fixture_make(&f, 12, 40000, 13001, 9, NULL));
            vram_engine_options eo = host_opts();
            eo.slot_count = slots[si];
            eo.copy_streams = streams[ci];
            vram_engine *eng = filled_engine(&f, &eo);
            if (!eng) {
                fixture_free(&f);
                continue;
            }
            int order[12], acq[12];
            for (int pass = 0; pass < 4; pass++) {
                shuffle(order, f.n);
                CHECK_OK(vram_engine_set_order(eng, order, f.n));
                if (pass % 2)
                    shuffle(acq, f.n); /* out of order: immediate copies */
                else
                    memcpy(acq, order, sizeof acq);
                run_pass(eng, f.n, acq, 300);
            }
            vram_engine_stats s = {.size = sizeof s};
            CHECK_OK(vram_engine_get_stats(eng, &s));
            CHECK_INT(s.backend, VRAM_BACKEND_HOST);
            CHECK_INT(s.acquires, 4 * f.n);
            CHECK_INT(s.releases, 4 * f.n);
            CHECK_INT(s.slot_count, slots[si]);
            CHECK_INT(s.copy_streams, streams[ci]);
            CHECK(s.peak_slots_in_use >= 1 && s.peak_slots_in_use <= slots[si]);
            CHECK(s.blocks_copied >= (uint64_t)(4 * 9 - (slots[si] - 1)));
            CHECK(s.bytes_copied > 0);
            vram_engine_destroy(eng);
            fixture_free(&f);
        }
}

/* ---- slot protection with a real (worker) compute stream ---- */

typedef struct check_job {
    const uint8_t *slot;
    int block;
    uint64_t bytes;
    long delay_us;
    uint64_t bad;
} check_job;

static atomic_int check_ran;

/* Runs on the compute stream: the block's bytes must hold for the whole
 * "kernel" (checked before and after a delay). */
static void check_fn(void *user) {
    check_job *j = user;
    for (int round = 0; round < 2; round++) {
        for (uint64_t i = 0; i < j->bytes; i++)
            j->bad += j->slot[i] != pattern(j->block, i);
        if (round == 0)
            sleep_us(j->delay_us);
    }
    atomic_fetch_add(&check_ran, 1);
}

static void test_slot_never_overwritten_in_use(void) {
    fixture f;
    CHECK_OK(fixture_make(&f, 8, 60000, 7000, 8, NULL));
    vram_engine_options eo = host_opts();
    eo.slot_count = 2;
    eo.copy_streams = 2;
    vram_engine *eng = filled_engine(&f, &eo);
    if (!eng) {
        fixture_free(&f);
        return;
    }
    vram_backend *be = vram_engine_get_backend(eng);
    void *cs = NULL;
    CHECK_OK(be->ops->stream_create(be, &cs));
    enum { PASSES = 3 };
    check_job jobs[PASSES * 8];
    int order[8];
    atomic_store(&check_ran, 0);
    for (int pass = 0; pass < PASSES; pass++) {
        shuffle(order, f.n);
        CHECK_OK(vram_engine_set_order(eng, order, f.n));
        for (int i = 0; i < f.n; i++) {
            int b = order[i];
            uint64_t addr = 0;
            /* Returns at once: the host runs ahead of the compute stream. */
            CHECK_OK(vram_engine_acquire(eng, b, cs, &addr));
            check_job *j = &jobs[pass * 8 + i];
            *j = (check_job){(const uint8_t *)(uintptr_t)addr, b, vram_engine_block_bytes(eng, b),
                             200 + (long)rnd(1500), 0};
            CHECK_OK(be->ops->host_func(be, cs, check_fn, j));
            CHECK_OK(vram_engine_release(eng, b, cs));
        }
    }
    CHECK_OK(be->ops->stream_sync(be, cs));
    CHECK_INT(atomic_load(&check_ran), PASSES * 8);
    for (int i = 0; i < PASSES * 8; i++)
        CHECK_INT(jobs[i].bad, 0);
    be->ops->stream_destroy(be, cs);
    vram_engine_stats s = {.size = sizeof s};
    CHECK_OK(vram_engine_get_stats(eng, &s));
    CHECK_INT(s.acquires, PASSES * 8);
    vram_engine_destroy(eng);
    fixture_free(&f);
}

/* ---- passes with a synchronize between them ---- */

/* Across the end of a pass the engine fills one slot fewer than it has, so
 * that after a synchronize (the caller waiting for everything queued) the
 * next pass's copies start at once rather than once the first streamed
 * block is computed. Compute runs on a worker stream, as under CUDA. */
static void test_free_slot_across_passes(void) {
    const int slot_counts[] = {1, 3};
    for (int k = 0; k < 2; k++) {
        int slots = slot_counts[k];
        fixture f;
        CHECK_OK(fixture_make(&f, 8, 4096, 0, 8, NULL));
        vram_engine_options eo = host_opts();
        eo.slot_count = slots;
        eo.copy_streams = 1;
        vram_engine *eng = filled_engine(&f, &eo);
        if (!eng) {
            fixture_free(&f);
            continue;
        }
        vram_backend *be = vram_engine_get_backend(eng);
        void *cs = NULL;
        CHECK_OK(be->ops->stream_create(be, &cs));
        uint64_t addr;
        for (int b = 0; b < f.n; b++) {
            CHECK_OK(vram_engine_acquire(eng, b, cs, &addr));
            if (b == f.n - 1) { /* a refused order changes nothing, the pass's end included */
                int dup[2] = {0, 0};
                CHECK_INT(vram_engine_set_order(eng, dup, 2), VRAM_E_INVALID);
            }
            CHECK_OK(vram_engine_release(eng, b, cs));
        }
        CHECK_OK(be->ops->stream_sync(be, cs));
        CHECK_OK(vram_engine_synchronize(eng));
        vram_engine_stats s = {.size = sizeof s};
        CHECK_OK(vram_engine_get_stats(eng, &s));
        /* The pass, then max(1, K - 1) blocks of the next one. */
        CHECK_INT(s.blocks_copied, f.n + (slots > 1 ? slots - 1 : 1));
        size_t before = 0;
        CHECK_OK(vram_engine_timeline(eng, NULL, 0, &before));

        /* The next pass's first block computes for 60 ms. */
        CHECK_OK(vram_engine_acquire(eng, 0, cs, &addr));
        CHECK_OK(be->ops->spin(be, cs, 60));
        CHECK_OK(vram_engine_release(eng, 0, cs));
        CHECK_OK(be->ops->stream_sync(be, cs));
        CHECK_OK(vram_engine_synchronize(eng));
        size_t count = 0;
        CHECK_OK(vram_engine_timeline(eng, NULL, 0, &count));
        vram_timeline_event *ev = calloc(count, sizeof *ev);
        CHECK_OK(vram_engine_timeline(eng, ev, count, &count));
        double compute_end = -1, first_copy_end = -1;
        for (size_t i = before; i < count; i++) {
            if (ev[i].kind == VRAM_EVENT_COMPUTE && ev[i].block == 0)
                compute_end = ev[i].end_ms;
            else if (ev[i].kind == VRAM_EVENT_COPY && first_copy_end < 0)
                first_copy_end = ev[i].end_ms;
        }
        CHECK(compute_end > 0 && first_copy_end > 0);
        if (slots > 1)
            CHECK(first_copy_end < compute_end - 30); /* block 2, into the free slot */
        else
            CHECK(first_copy_end >= compute_end); /* block 1, into block 0's slot */
        free(ev);
        be->ops->stream_destroy(be, cs);
        vram_engine_destroy(eng);
        fixture_free(&f);
    }
}

/* ---- writes and destroy while the device is busy ---- */

typedef struct peek_job {
    const uint8_t *p;
    uint8_t seen;
} peek_job;

static void peek_fn(void *user) {
    peek_job *j = user;
    j->seen = j->p[0];
}

/* A write to a released block waits for its copy even when that copy is
 * still queued behind slow compute and the block's slot has already gone
 * to another block: the compute enqueued between acquire and release sees
 * the bytes from before the write (it used to see the new ones). */
static void test_write_waits_for_a_queued_copy(void) {
    for (int async = 0; async <= 1; async++) {
        fixture f;
        CHECK_OK(fixture_make(&f, 3, 1 << 16, 0, 3, NULL));
        vram_engine_options eo = host_opts();
        eo.slot_count = 1;
        eo.copy_streams = 1;
        eo.async_copies = async;
        vram_engine *eng = NULL;
        CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
        if (!eng) {
            fixture_free(&f);
            continue;
        }
        static uint8_t old_bytes[1 << 16], new_bytes[1 << 16];
        memset(old_bytes, 0xAA, sizeof old_bytes);
        memset(new_bytes, 0xBB, sizeof new_bytes);
        for (int b = 0; b < 3; b++)
            CHECK_OK(vram_engine_write(eng, b, 0, old_bytes, sizeof old_bytes));
        vram_backend *be = vram_engine_get_backend(eng);
        void *cs = NULL;
        CHECK_OK(be->ops->stream_create(be, &cs));
        uint64_t addr;
        peek_job j = {0};
        CHECK_OK(vram_engine_acquire(eng, 2, cs, &addr));
        CHECK_OK(be->ops->spin(be, cs, 100)); /* the host runs ahead, as under CUDA */
        CHECK_OK(vram_engine_release(eng, 2, cs));
        CHECK_OK(vram_engine_acquire(eng, 0, cs, &addr));
        j.p = (const uint8_t *)(uintptr_t)addr;
        CHECK_OK(be->ops->host_func(be, cs, peek_fn, &j)); /* block 0's "kernel" */
        CHECK_OK(vram_engine_release(eng, 0, cs));
        CHECK_OK(vram_engine_acquire(eng, 1, cs, &addr)); /* block 0's slot goes to 1 */
        CHECK_OK(vram_engine_release(eng, 1, cs));
        CHECK_OK(vram_engine_write(eng, 0, 0, new_bytes, sizeof new_bytes));
        CHECK_OK(be->ops->stream_sync(be, cs));
        CHECK_INT(j.seen, 0xAA);
        be->ops->stream_destroy(be, cs);
        vram_engine_destroy(eng);
        fixture_free(&f);
    }
}

/* Destroying the engine while the caller's stream still runs a block (and
 * will record its release events) waits for that work instead of freeing
 * what it uses (ASan saw the queued records touch freed events). */
static void test_destroy_while_the_device_is_busy(void) {
    fixture f;
    CHECK_OK(fixture_make(&f, 2, 4096, 0, 2, NULL));
    vram_engine_options eo = host_opts();
    eo.slot_count = 2;
    vram_engine *eng = filled_engine(&f, &eo);
    if (eng) {
        vram_backend *be = vram_engine_get_backend(eng);
        void *cs = NULL;
        CHECK_OK(be->ops->stream_create(be, &cs));
        uint64_t addr;
        CHECK_OK(vram_engine_acquire(eng, 0, cs, &addr));
        CHECK_OK(be->ops->spin(be, cs, 50));
        CHECK_OK(vram_engine_release(eng, 0, cs));
        vram_engine_destroy(eng); /* the stream is still in its 50 ms "kernel" */
    }
    fixture_free(&f);
}

/* ---- switches ---- */

static void timeline_streams(vram_engine *eng, int *seen, int nseen, int *copies, int *computes) {
    size_t count = 0;
    CHECK_OK(vram_engine_timeline(eng, NULL, 0, &count));
    vram_timeline_event *ev = calloc(count ? count : 1, sizeof *ev);
    size_t got = 0;
    CHECK_OK(vram_engine_timeline(eng, ev, count, &got));
    CHECK_INT(got, count);
    *copies = *computes = 0;
    for (size_t i = 0; i < count; i++) {
        CHECK(ev[i].end_ms >= ev[i].start_ms);
        if (ev[i].kind == VRAM_EVENT_COPY) {
            (*copies)++;
            int s = ev[i].stream + 1; /* -1 = the compute stream */
            if (s >= 0 && s < nseen)
                seen[s]++;
        } else {
            (*computes)++;
        }
    }
    free(ev);
}

static void test_copy_streams_switch(void) {
    for (int streams = 1; streams <= 3; streams += 2) {
        fixture f;
        CHECK_OK(fixture_make(&f, 10, 30000, 1000, 10, NULL));
        vram_engine_options eo = host_opts();
        eo.slot_count = 3;
        eo.copy_streams = streams;
        vram_engine *eng = filled_engine(&f, &eo);
        if (!eng) {
            fixture_free(&f);
            continue;
        }
        int order[10];
        shuffle(order, f.n);
        CHECK_OK(vram_engine_set_order(eng, order, f.n));
        run_pass(eng, f.n, order, 0);
        vram_engine_stats s = {.size = sizeof s};
        CHECK_OK(vram_engine_get_stats(eng, &s));
        CHECK_INT(s.copy_streams, streams);
        int seen[5] = {0}, copies = 0, computes = 0;
        timeline_streams(eng, seen, 5, &copies, &computes);
        CHECK_INT(copies, s.blocks_copied);
        CHECK_INT(computes, f.n);
        CHECK_INT(seen[0], 0); /* none on the compute stream */
        for (int i = 0; i < streams; i++)
            CHECK(seen[1 + i] > 0);
        for (int i = streams; i < 4; i++)
            CHECK_INT(seen[1 + i], 0);
        vram_engine_destroy(eng);
        fixture_free(&f);
    }
}

static void test_async_switch(void) {
    for (int async = 0; async <= 1; async++) {
        fixture f;
        CHECK_OK(fixture_make(&f, 6, 256 << 10, 0, 6, NULL));
        vram_engine_options eo = host_opts();
        eo.slot_count = 2;
        eo.async_copies = async;
        eo.host_bandwidth_gbps = 0.5; /* 0.5 ms per block: copies take time */
        vram_engine *eng = filled_engine(&f, &eo);
        if (!eng) {
            fixture_free(&f);
            continue;
        }
        int order[6];
        shuffle(order, f.n);
        for (int i = 0; i < f.n; i++) {
            uint64_t addr;
            CHECK_OK(vram_engine_acquire(eng, i, NULL, &addr));
            CHECK_INT(mismatches(eng, i, addr), 0);
            sleep_us(2000); /* compute */
            CHECK_OK(vram_engine_release(eng, i, NULL));
        }
        vram_engine_stats s = {.size = sizeof s};
        CHECK_OK(vram_engine_get_stats(eng, &s));
        CHECK_INT(s.async_copies, async);
        /* The pass, then the next pass's first block (wrap-around into one
         * of the 2 slots; with sync copies nothing runs ahead). */
        CHECK_INT(s.blocks_copied, async ? f.n + 1 : f.n);
        int seen[3] = {0}, copies = 0, computes = 0;
        timeline_streams(eng, seen, 3, &copies, &computes);
        if (!async) {
            CHECK_INT(s.copy_streams, 0);
            CHECK_INT(seen[0], f.n); /* every copy on the compute stream */
            CHECK_NEAR(s.overlap_ratio, 0, 1e-9);
            /* The compute stream waited for every copy: >= bytes / link. */
            CHECK(s.compute_wait_ms >= 0.9 * (double)s.bytes_copied / 0.5e6);
        } else {
            CHECK_INT(seen[0], 0);
            CHECK(s.overlap_ratio > 0); /* copies ran during the 2 ms computes */
        }
        vram_engine_destroy(eng);
        fixture_free(&f);
    }
}

static double g_share = 1.0;
static void tweak_share(vram_plan_options *o) { o->bandwidth_target = g_share; }

/* The copies of one pass over a 0.5 GB/s link (6 blocks of 4 MiB, no
 * compute, 2 slots): their mean span on the timeline and how long two of
 * them were under way at once. */
typedef struct copy_spans {
    double mean_ms, overlap_ms;
} copy_spans;

static copy_spans paced_copies(double share, int copy_streams) {
    uint64_t sizes[6];
    for (int b = 0; b < 6; b++)
        sizes[b] = 4 << 20;
    fixture f;
    vram_layout *layout = NULL;
    CHECK_OK(vram_layout_from_blocks(sizes, 6, 0, 0, &layout));
    g_share = share;
    CHECK_OK(fixture_open(&f, layout, 6, 4096, tweak_share));
    CHECK_NEAR(f.sum.bandwidth_target, share, 1e-9);
    vram_engine_options eo = host_opts();
    eo.slot_count = 2;
    eo.copy_streams = copy_streams;
    eo.host_bandwidth_gbps = 0.5;
    vram_engine *eng = NULL;
    copy_spans out = {0, 0};
    CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
    if (eng) {
        CHECK_OK(fill_all(eng, 6));
        int order[6];
        shuffle(order, 6);
        CHECK_OK(vram_engine_set_order(eng, order, 6));
        run_pass(eng, 6, order, 0);
        CHECK_OK(vram_engine_synchronize(eng));
        vram_timeline_event ev[64];
        size_t count = 0;
        CHECK_OK(vram_engine_timeline(eng, ev, 64, &count));
        int copies = 0;
        double last_end = 0;
        for (size_t i = 0; i < count && i < 64; i++) {
            if (ev[i].kind != VRAM_EVENT_COPY)
                continue;
            out.mean_ms += ev[i].end_ms - ev[i].start_ms;
            if (copies++ && ev[i].start_ms < last_end) /* issued in order */
                out.overlap_ms += last_end - ev[i].start_ms;
            last_end = fmax(last_end, ev[i].end_ms);
        }
        CHECK_INT(copies, 7); /* + 1 of the next pass */
        out.mean_ms /= copies ? copies : 1;
        vram_engine_destroy(eng);
    }
    fixture_free(&f);
    return out;
}

static void test_pacing(void) {
    const double copy_ms = (4 << 20) / 0.5e6; /* 8.4 ms at full speed */
    copy_spans full = paced_copies(1.0, 1), half = paced_copies(0.5, 1);
    CHECK_NEAR(full.mean_ms, copy_ms, 0.05 * copy_ms);
    /* Half the link: each copy's pieces (four of 1 MiB) spread over twice
     * the time, less the trailing pause, after the copy is marked done. */
    CHECK_NEAR(half.mean_ms, 2 * copy_ms - copy_ms / 4, 0.05 * copy_ms);
    /* Two copy streams keep to the share too: their copies take the link
     * in turn, each with its pauses, instead of filling each other's. */
    copy_spans two = paced_copies(0.5, 2);
    CHECK_NEAR(two.mean_ms, half.mean_ms, 0.05 * copy_ms);
    CHECK(two.overlap_ms < 0.01 * copy_ms);
}

static bool g_dram_opt = true;
static double g_max_pinned = 0;
static void tweak_dram(vram_plan_options *o) {
    o->enable_dram_optimization = g_dram_opt;
    o->max_pinned_mb = g_max_pinned;
}

/* Pinned/pageable bytes of an engine over 8 streamed 1 MiB blocks. */
static void pin_case(bool dram_opt, double max_pinned_mb, int pin_opt, const char *no_pin_env,
                     uint64_t *pinned, uint64_t *pageable, uint64_t *budget) {
    fixture f;
    g_dram_opt = dram_opt;
    g_max_pinned = max_pinned_mb;
    CHECK_OK(fixture_make(&f, 8, 1 << 20, 0, 8, tweak_dram));
    if (no_pin_env)
        setenv("VRAM_NO_PIN", no_pin_env, 1);
    vram_engine_options eo = host_opts();
    eo.pin_memory = pin_opt;
    vram_engine *eng = NULL;
    CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
    unsetenv("VRAM_NO_PIN");
    *pinned = *pageable = 0;
    *budget = f.sum.pinned_budget_bytes;
    if (eng) {
        CHECK_OK(fill_all(eng, f.n));
        int order[8];
        shuffle(order, 8);
        CHECK_OK(vram_engine_set_order(eng, order, 8));
        run_pass(eng, 8, order, 0);
        vram_engine_stats s = {.size = sizeof s};
        CHECK_OK(vram_engine_get_stats(eng, &s));
        *pinned = s.pinned_bytes;
        *pageable = s.pageable_bytes;
        /* the regions, and with pinning on and pageable blocks, the pinned
         * staging buffers (two, shared by the copy streams) for those */
        uint64_t buffers = (uint64_t)vram_staging_buffers(s.copy_streams);
        uint64_t staging = max_pinned_mb > 0 ? buffers << 20 : 0;
        CHECK_INT(s.pinned_bytes + s.pageable_bytes, (8ull << 20) + staging);
        CHECK_INT(s.device_bytes, (uint64_t)s.slot_count * (1 << 20));
        vram_engine_destroy(eng);
    }
    fixture_free(&f);
}

static void test_pinning_switches(void) {
    uint64_t pinned, pageable, budget;
    pin_case(true, 0, -1, NULL, &pinned, &pageable, &budget);
    CHECK_INT(pinned, 8ull << 20); /* default: all pinned */
    pin_case(true, 0, 0, NULL, &pinned, &pageable, &budget);
    CHECK_INT(pinned, 0); /* engine option */
    pin_case(true, 0, -1, "1", &pinned, &pageable, &budget);
    CHECK_INT(pinned, 0); /* VRAM_NO_PIN=1 */
    pin_case(true, 0, -1, "0", &pinned, &pageable, &budget);
    CHECK_INT(pinned, 8ull << 20); /* VRAM_NO_PIN=0 is not a request */
    pin_case(false, 0, -1, NULL, &pinned, &pageable, &budget);
    CHECK_INT(pinned, 0); /* enable_dram_optimization=False */
    /* Budget of 3.5 MiB: two staging buffers, through which the pageable
     * blocks are copied, and one block pinned. */
    pin_case(true, 3.5, -1, NULL, &pinned, &pageable, &budget);
    CHECK(pinned <= budget);
    CHECK_INT(pinned, 3ull << 20);
    CHECK_INT(pageable, 7ull << 20);
}

static void test_reuse_when_all_fit(void) {
    fixture f;
    CHECK_OK(fixture_make(&f, 5, 50000, 0, 2, NULL));
    vram_engine_options eo = host_opts();
    eo.slot_count = 2;
    vram_engine *eng = NULL;
    CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
    if (eng) {
        CHECK_OK(fill_all(eng, f.n));
        int order[5] = {0, 1, 2, 3, 4};
        for (int pass = 0; pass < 3; pass++)
            run_pass(eng, f.n, order, 0);
        vram_engine_stats s = {.size = sizeof s};
        CHECK_OK(vram_engine_get_stats(eng, &s));
        CHECK_INT(s.blocks_copied, 2); /* 2 streamed blocks, 2 slots: copied once */
        CHECK_INT(s.acquires, 15);
        /* Resident blocks: device memory once, written through. */
        for (int b = 0; b < f.n; b++) {
            vram_block_plan bp = {.size = sizeof bp};
            vram_plan_block(f.plan, b, &bp);
            if (bp.placement == VRAM_PLACE_RESIDENT)
                CHECK(vram_engine_host_ptr(eng, b) == NULL);
            else
                CHECK(vram_engine_host_ptr(eng, b) != NULL);
        }
        /* Rewriting a streamed block after use: the next acquire sees it. */
        int sb = -1;
        for (int b = 0; b < f.n && sb < 0; b++)
            if (vram_engine_host_ptr(eng, b))
                sb = b;
        uint8_t z[64] = {0};
        CHECK_OK(vram_engine_write(eng, sb, 0, z, sizeof z));
        uint64_t addr;
        CHECK_OK(vram_engine_acquire(eng, sb, NULL, &addr));
        uint8_t got[64];
        CHECK_OK(vram_engine_read_device(eng, addr, got, sizeof got));
        CHECK(memcmp(got, z, sizeof z) == 0);
        CHECK_OK(vram_engine_release(eng, sb, NULL));
        vram_engine_destroy(eng);
    }
    fixture_free(&f);
}

static void test_errors(void) {
    fixture f;
    CHECK_OK(fixture_make(&f, 4, 10000, 0, 4, NULL));
    vram_engine_options eo = host_opts();
    eo.slot_count = 1;
    vram_engine *eng = NULL;
    CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
    if (eng) {
        uint64_t addr = 0;
        CHECK_INT(vram_engine_acquire(eng, 9, NULL, &addr), VRAM_E_RANGE);
        CHECK_INT(vram_engine_release(eng, 0, NULL), VRAM_E_STATE);
        CHECK_OK(vram_engine_acquire(eng, 0, NULL, &addr));
        CHECK_INT(vram_engine_acquire(eng, 0, NULL, &addr), VRAM_E_STATE);
        /* One slot, held: another streamed block can't get one. */
        CHECK_INT(vram_engine_acquire(eng, 1, NULL, &addr), VRAM_E_STATE);
        CHECK(strstr(vram_last_error(), "slot") != NULL);
        uint8_t b[8] = {0};
        CHECK_INT(vram_engine_write(eng, 0, 0, b, 8), VRAM_E_STATE);
        CHECK_INT(vram_engine_write(eng, 1, vram_engine_block_bytes(eng, 1) - 4, b, 8),
                  VRAM_E_RANGE);
        CHECK_INT(vram_engine_read_device(eng, 8, b, 8), VRAM_E_RANGE);
        CHECK_OK(vram_engine_release(eng, 0, NULL));
        int dup[3] = {0, 1, 0};
        CHECK_INT(vram_engine_set_order(eng, dup, 3), VRAM_E_INVALID);
        int bad[2] = {0, 7};
        CHECK_INT(vram_engine_set_order(eng, bad, 2), VRAM_E_RANGE);
        /* A partial order: blocks outside it still work (immediate copy). */
        int part[2] = {3, 2};
        CHECK_OK(vram_engine_set_order(eng, part, 2));
        CHECK_OK(vram_engine_acquire(eng, 1, NULL, &addr));
        CHECK_OK(vram_engine_release(eng, 1, NULL));
        CHECK_OK(vram_engine_synchronize(eng));
        CHECK_INT(vram_engine_load_files(eng), VRAM_E_STATE);
        vram_engine_stats s = {.size = 4};
        CHECK_INT(vram_engine_get_stats(eng, &s), VRAM_E_INVALID);
        s.size = sizeof s;
        CHECK_OK(vram_engine_reset_stats(eng));
        CHECK_OK(vram_engine_get_stats(eng, &s));
        CHECK_INT(s.acquires, 0);
        size_t n = 1;
        CHECK_OK(vram_engine_timeline(eng, NULL, 0, &n));
        CHECK_INT(n, 0);
        vram_engine_destroy(eng);
    }
    vram_engine_options bad = host_opts();
    bad.copy_streams = 17;
    CHECK_INT(vram_engine_create(f.plan, f.layout, &bad, &eng), VRAM_E_RANGE);
    CHECK(eng == NULL);
    CHECK_INT(vram_engine_create(NULL, f.layout, NULL, &eng), VRAM_E_INVALID);
    vram_engine_destroy(NULL);
    fixture_free(&f);
}

/* A host region changed in place: the slot copy a pass's end prefetched is
 * stale until vram_engine_invalidate, after which the block is copied again. */
static void test_invalidate_after_an_in_place_edit(void) {
    fixture f;
    CHECK_OK(fixture_make(&f, 4, 4096, 0, 4, NULL));
    vram_engine_options eo = host_opts();
    eo.slot_count = 2;
    vram_engine *eng = filled_engine(&f, &eo);
    if (eng) {
        uint64_t addr;
        for (int b = 0; b < f.n; b++) {
            CHECK_OK(vram_engine_acquire(eng, b, NULL, &addr));
            CHECK_OK(vram_engine_release(eng, b, NULL));
        }
        CHECK_OK(vram_engine_synchronize(eng)); /* block 0 sits in a slot for the next pass */
        uint8_t *host = vram_engine_host_ptr(eng, 0);
        CHECK(host != NULL);
        uint8_t got = 0;
        if (host) {
            host[0] = (uint8_t)(pattern(0, 0) + 1);
            CHECK_OK(vram_engine_acquire(eng, 0, NULL, &addr));
            CHECK_OK(vram_engine_read_device(eng, addr, &got, 1));
            CHECK_INT(got, pattern(0, 0)); /* the stale copy */
            CHECK_OK(vram_engine_release(eng, 0, NULL));
            CHECK_INT(vram_engine_invalidate(eng, 0), VRAM_OK);
            CHECK_OK(vram_engine_acquire(eng, 0, NULL, &addr));
            CHECK_OK(vram_engine_read_device(eng, addr, &got, 1));
            CHECK_INT(got, (uint8_t)(pattern(0, 0) + 1));
            /* an acquired block cannot be invalidated */
            CHECK_INT(vram_engine_invalidate(eng, 0), VRAM_E_STATE);
            CHECK_OK(vram_engine_release(eng, 0, NULL));
        }
        CHECK_INT(vram_engine_invalidate(eng, 9), VRAM_E_RANGE);
        CHECK_INT(vram_engine_invalidate(NULL, 0), VRAM_E_INVALID);
        vram_engine_destroy(eng);
    }
    fixture_free(&f);
}

/* Every timeline event lies within [0, elapsed_ms] of the stats base. */
static void check_times_within_elapsed(vram_engine *eng) {
    vram_engine_stats s = {.size = sizeof s};
    CHECK_OK(vram_engine_get_stats(eng, &s));
    size_t count = 0;
    CHECK_OK(vram_engine_timeline(eng, NULL, 0, &count));
    vram_timeline_event *ev = calloc(count ? count : 1, sizeof *ev);
    CHECK_OK(vram_engine_timeline(eng, ev, count, &count));
    int copies = 0;
    for (size_t i = 0; i < count; i++) {
        copies += ev[i].kind == VRAM_EVENT_COPY;
        CHECK(ev[i].start_ms >= 0);
        CHECK(ev[i].end_ms >= ev[i].start_ms);
        /* the clock is read just after the base; the skew seen was >= 20 ms */
        CHECK(ev[i].end_ms <= s.elapsed_ms + 5);
    }
    CHECK_INT(copies, s.blocks_copied);
    CHECK(s.copy_busy_ms <= s.elapsed_ms + 5);
    free(ev);
}

/* After reset_stats, a set_order during a run issues copies before any
 * acquire: their times count from the same base as the rest (they used to
 * count from the base before the reset, or from one recorded after them). */
static void test_reset_then_set_order(void) {
    fixture f;
    CHECK_OK(fixture_make(&f, 6, 64 << 10, 0, 6, NULL));
    vram_engine_options eo = host_opts();
    eo.slot_count = 2;
    eo.copy_streams = 1;
    vram_engine *eng = filled_engine(&f, &eo);
    if (eng) {
        int order[6] = {0, 1, 2, 3, 4, 5};
        run_pass(eng, f.n, order, 0);
        for (int round = 0; round < 2; round++) {
            CHECK_OK(vram_engine_synchronize(eng));
            sleep_us(20000);
            CHECK_OK(vram_engine_reset_stats(eng));
            /* Its first blocks are in no slot: copies start at once. */
            for (int i = 0; i < 6; i++)
                order[i] = (i + 3 + round) % 6;
            CHECK_OK(vram_engine_set_order(eng, order, f.n));
            CHECK_OK(vram_engine_synchronize(eng));
            sleep_us(20000);
            if (round == 0) /* stats first read after the next pass */
                run_pass(eng, f.n, order, 0);
            check_times_within_elapsed(eng); /* round 1: before any acquire */
        }
        vram_engine_destroy(eng);
    }
    fixture_free(&f);
}

/* ---- a real safetensors file: load_files and the disk tier ---- */

static char *write_model(int nblocks, uint64_t tensor_bytes) {
    char *path = strdup("/tmp/vram-engine-test-XXXXXX.safetensors");
    int fd = mkstemps(path, 12);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    char header[8192];
    size_t len = 0;
    uint64_t off = 0;
    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (int b = 0; b < nblocks; b++)
        for (int t = 0; t < 2; t++) {
            uint64_t n = tensor_bytes + (uint64_t)t * 100;
            len += (size_t)snprintf(header + len, sizeof header - len,
                                    "%s\"blocks.%d.ffn.%d.weight\":{\"dtype\":\"U8\",\"shape\":[%llu],"
                                    "\"data_offsets\":[%llu,%llu]}",
                                    len > 1 ? "," : "", b, t, (unsigned long long)n,
                                    (unsigned long long)off, (unsigned long long)(off + n));
            off += n;
        }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    uint64_t hl = len;
    CHECK(write(fd, &hl, 8) == 8);
    CHECK(write(fd, header, len) == (ssize_t)len);
    uint8_t *data = malloc(off);
    for (uint64_t i = 0; i < off; i++)
        data[i] = pattern(99, i);
    CHECK(write(fd, data, off) == (ssize_t)off);
    free(data);
    close(fd);
    return path;
}

static void test_model_file_and_disk_tier(void) {
    char *path = write_model(6, 300000);
    CHECK(path != NULL);
    if (!path)
        return;
    vram_layout *layout = NULL;
    CHECK_OK(vram_layout_open(path, &layout));
    if (!layout) {
        unlink(path);
        free(path);
        return;
    }
    fixture f;
    /* ~0.6 MiB per block, 6 streamed; 2.5 MiB of DRAM, 80% usable: the
     * last streamed blocks fall to the disk tier. */
    CHECK_OK(fixture_open(&f, layout, 6, 2.5, NULL));
    CHECK(f.sum.disk_bytes > 0);
    vram_engine_options eo = host_opts();
    eo.slot_count = 2;
    eo.copy_streams = 2;
    vram_engine *eng = NULL;
    CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
    if (eng) {
        CHECK_OK(vram_engine_load_files(eng));
        vram_layout_info li = {.size = sizeof li};
        vram_layout_get_info(layout, &li);
        /* The data section (pattern index 0) starts after the header. */
        uint64_t data_start = 0;
        FILE *fp = fopen(path, "rb");
        CHECK(fp && fread(&data_start, 8, 1, fp) == 1);
        if (fp)
            fclose(fp);
        data_start += 8;
        int order[6];
        for (int pass = 0; pass < 2; pass++) {
            shuffle(order, f.n);
            CHECK_OK(vram_engine_set_order(eng, order, f.n));
            for (int i = 0; i < f.n; i++) {
                int b = order[i];
                uint64_t addr;
                CHECK_OK(vram_engine_acquire(eng, b, NULL, &addr));
                for (int t = 0; t < li.tensor_count; t++) {
                    vram_tensor_info ti = {.size = sizeof ti};
                    vram_layout_tensor(layout, t, &ti);
                    if (ti.block != b)
                        continue;
                    uint8_t *got = malloc(ti.nbytes);
                    CHECK_OK(vram_engine_read_device(eng, addr + ti.block_offset, got, ti.nbytes));
                    uint64_t bad = 0;
                    for (uint64_t k = 0; k < ti.nbytes; k++)
                        bad += got[k] != pattern(99, ti.file_offset - data_start + k);
                    CHECK_INT(bad, 0);
                    free(got);
                }
                CHECK_OK(vram_engine_release(eng, b, NULL));
            }
        }
        vram_engine_stats s = {.size = sizeof s};
        CHECK_OK(vram_engine_get_stats(eng, &s));
        CHECK_INT(s.disk_bytes > 0, 1);
        for (int b = 0; b < f.n; b++) {
            vram_block_plan bp = {.size = sizeof bp};
            vram_plan_block(f.plan, b, &bp);
            if (bp.tier == VRAM_TIER_DISK) {
                CHECK(vram_engine_host_ptr(eng, b) == NULL);
                uint8_t x = 0;
                CHECK_INT(vram_engine_write(eng, b, 0, &x, 1), VRAM_E_UNSUPPORTED);
            }
        }
        vram_engine_destroy(eng);
    }
    fixture_free(&f);
    unlink(path);
    free(path);
}

static void test_bench_host(void) {
    vram_bandwidth_result r = {.size = sizeof r};
    CHECK_OK(vram_bench_bandwidth(VRAM_BACKEND_HOST, 0, 4 << 20, 2, &r));
    CHECK_INT(r.backend, VRAM_BACKEND_HOST);
    CHECK_INT(r.max_streams, 2);
    CHECK_INT(r.transfer_bytes, 4 << 20);
    for (int k = 0; k < 2; k++) {
        CHECK(r.h2d_pinned_gbps[k] > 0);
        CHECK(r.h2d_pageable_gbps[k] > 0);
        CHECK(r.d2h_pinned_gbps[k] > 0);
        CHECK(r.d2h_pageable_gbps[k] > 0);
    }
    CHECK(r.h2d_pinned_gbps[2] == 0);
    CHECK_STR(r.gpu_uuid, "host");
    CHECK_INT(vram_bench_bandwidth(VRAM_BACKEND_HOST, 0, 1 << 20, 17, &r), VRAM_E_RANGE);
}

int main(void) {
    test_integrity_random();
    test_slot_never_overwritten_in_use();
    test_free_slot_across_passes();
    test_write_waits_for_a_queued_copy();
    test_destroy_while_the_device_is_busy();
    test_copy_streams_switch();
    test_async_switch();
    test_pacing();
    test_pinning_switches();
    test_reuse_when_all_fit();
    test_errors();
    test_invalidate_after_an_in_place_edit();
    test_reset_then_set_order();
    test_model_file_and_disk_tier();
    test_bench_host();
    CHECK_DONE();
}
