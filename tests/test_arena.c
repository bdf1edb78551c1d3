/* test_arena.c - the pinned host arena on the host backend, where pinning
 * is bookkeeping: regions are 256-aligned and exactly the block's size
 * rounded to 256 (no power-of-two rounding), pinned within the budget,
 * pageable beyond it, when pinning is off, or when a pin fails (with one
 * warning), and the counters return to zero when freed. */
#define _GNU_SOURCE
#include "backend.h"
#include "check.h"

static int warnings;
static void log_fn(int level, const char *msg, void *user) {
    (void)msg, (void)user;
    warnings += level == VRAM_LOG_WARN;
}

static void test_budget(void) {
    vram_backend *be = NULL;
    CHECK_OK(vram_backend_host_open(0, 0, &be));
    vram_arena a;
    vram_arena_init(&a, be, NULL, true, 3000000);
    vram_host_region r[4];
    const uint64_t sizes[4] = {1000001, 1000000, 999999, 5};
    for (int i = 0; i < 4; i++) {
        CHECK_OK(vram_arena_alloc(&a, sizes[i], true, &r[i]));
        CHECK(r[i].p != NULL);
        CHECK_INT((uintptr_t)r[i].p % 256, 0);
        CHECK_INT(r[i].bytes, vram_align_up(sizes[i]));
        uint8_t *p = r[i].p;
        CHECK_INT(p[0], 0); /* zeroed */
        CHECK_INT(p[r[i].bytes - 1], 0);
    }
    /* 1000192 + 1000192 fit 3,000,000; the third (1000192) does not; the
     * last (256) still does. */
    CHECK(r[0].pinned && r[1].pinned && !r[2].pinned && r[3].pinned);
    CHECK(a.pinned <= a.budget);
    CHECK_INT(a.pinned, 1000192 + 1000192 + 256);
    CHECK_INT(a.pageable, 1000192);
    for (int i = 0; i < 4; i++)
        vram_arena_free(&a, &r[i]);
    CHECK_INT(a.pinned, 0);
    CHECK_INT(a.pageable, 0);
    vram_arena_free(&a, &r[0]); /* freeing twice is a no-op */
    vram_backend_close(be);
}

static void test_pin_off_and_failures(void) {
    vram_backend *be = NULL;
    CHECK_OK(vram_backend_host_open(0, 0, &be));
    vram_arena a;
    vram_arena_init(&a, be, NULL, false, UINT64_MAX);
    vram_host_region r;
    CHECK_OK(vram_arena_alloc(&a, 4096, true, &r));
    CHECK(!r.pinned);
    vram_arena_free(&a, &r);

    vram_faults faults = {.pin_at = 2, .alloc_at = 5};
    vram_arena_init(&a, be, &faults, true, UINT64_MAX);
    vram_set_log(log_fn, NULL, VRAM_LOG_WARN);
    warnings = 0;
    vram_host_region v[4];
    for (int i = 0; i < 4; i++)
        CHECK_OK(vram_arena_alloc(&a, 1 << 16, true, &v[i]));
    CHECK(v[0].pinned && !v[1].pinned && v[2].pinned && v[3].pinned);
    CHECK_INT(warnings, 1);
    vram_host_region w;
    CHECK_INT(vram_arena_alloc(&a, 1 << 16, true, &w), VRAM_E_NOMEM); /* 5th allocation */
    CHECK(w.p == NULL);
    CHECK(strstr(vram_last_error(), "injected") != NULL);
    vram_set_log(NULL, NULL, 0);
    for (int i = 0; i < 4; i++)
        vram_arena_free(&a, &v[i]);
    CHECK_INT(a.pinned + a.pageable, 0);
    vram_backend_close(be);
}

static void test_host_backend_events(void) {
    vram_backend *be = NULL;
    CHECK_OK(vram_backend_host_open(1 << 20, 0, &be));
    const vram_backend_ops *o = be->ops;
    uint64_t dev = 0, dev2 = 0;
    CHECK_OK(o->dev_alloc(be, 1 << 20, &dev));
    CHECK_INT(o->dev_alloc(be, 1, &dev2), VRAM_E_DEVICE_NOMEM); /* capacity */
    void *s = NULL, *e = NULL;
    CHECK_OK(o->stream_create(be, &s));
    CHECK_OK(o->event_create(be, true, &e));
    CHECK_INT(o->event_query(be, e), 1);   /* never recorded: complete */
    CHECK_OK(o->stream_wait(be, NULL, e)); /* and waiting returns */
    uint8_t src[4096], dst[4096];
    for (int i = 0; i < 4096; i++)
        src[i] = (uint8_t)(i * 7);
    CHECK_OK(o->spin(be, s, 5));
    CHECK_OK(o->copy_h2d_async(be, dev, src, sizeof src, s));
    CHECK_OK(o->event_record(be, e, s));
    CHECK_OK(o->event_sync(be, e));
    CHECK_INT(o->event_query(be, e), 1);
    CHECK_OK(o->copy_d2h(be, dst, dev, sizeof dst));
    CHECK(memcmp(src, dst, sizeof src) == 0);
    /* A foreign stream pointer is the calling thread, never dereferenced. */
    int not_a_stream = 0;
    CHECK_OK(o->copy_d2h_async(be, dst, dev, 16, &not_a_stream));
    o->stream_destroy(be, s);
    o->event_destroy(be, e);
    o->dev_free(be, dev, 1 << 20);
    CHECK_OK(o->dev_alloc(be, 1 << 20, &dev)); /* capacity back */
    o->dev_free(be, dev, 1 << 20);
    vram_backend_close(be);
    CHECK_INT(vram_backend_open(7, 0, 0, 0, &be), VRAM_E_INVALID);
}

/* Worker streams keep an emulated clock: event times add the operations'
 * durations exactly, however late the threads wake, and a wait hands the
 * awaited event's time to the waiting stream. A gate (a stream that sleeps
 * 50 ms, then records) holds the compute stream until every operation is
 * queued, so issue times do not show either. */
static void test_host_backend_clock(void) {
    vram_backend *be = NULL;
    CHECK_OK(vram_backend_host_open(1 << 20, 1.0, &be)); /* 1 GB/s: 1e6 bytes a ms */
    const vram_backend_ops *o = be->ops;
    void *gate_s = NULL, *compute = NULL, *copy = NULL, *ev[4] = {NULL};
    CHECK_OK(o->stream_create(be, &gate_s));
    CHECK_OK(o->stream_create(be, &compute));
    CHECK_OK(o->stream_create(be, &copy));
    for (int i = 0; i < 4; i++)
        CHECK_OK(o->event_create(be, true, &ev[i]));
    void *gate = ev[0], *c0 = ev[1], *c1 = ev[2], *copied = ev[3];
    uint64_t dev = 0;
    CHECK_OK(o->dev_alloc(be, 1 << 20, &dev));
    static uint8_t src[500000];
    CHECK_OK(o->spin(be, gate_s, 50));
    CHECK_OK(o->event_record(be, gate, gate_s));
    CHECK_OK(o->stream_wait(be, compute, gate));
    CHECK_OK(o->event_record(be, c0, compute));
    for (int i = 0; i < 10; i++)
        CHECK_OK(o->spin(be, compute, 1.0));
    CHECK_OK(o->event_record(be, c1, compute));
    CHECK_OK(o->stream_wait(be, copy, c1));
    CHECK_OK(o->copy_h2d_async(be, dev, src, sizeof src, copy)); /* 0.5 ms */
    CHECK_OK(o->event_record(be, copied, copy));
    CHECK_OK(o->stream_sync(be, copy));
    double ms = -1;
    CHECK_OK(o->event_elapsed(be, c0, c1, &ms));
    CHECK_NEAR(ms, 10.0, 1e-9);
    CHECK_OK(o->event_elapsed(be, c1, copied, &ms));
    CHECK_NEAR(ms, 0.5, 1e-9);
    CHECK_OK(o->event_elapsed(be, gate, c0, &ms));
    CHECK_NEAR(ms, 0, 1e-9);
    o->dev_free(be, dev, 1 << 20);
    for (int i = 0; i < 4; i++)
        o->event_destroy(be, ev[i]);
    o->stream_destroy(be, copy);
    o->stream_destroy(be, compute);
    o->stream_destroy(be, gate_s);
    vram_backend_close(be);
}

int main(void) {
    test_budget();
    test_pin_off_and_failures();
    test_host_backend_events();
    test_host_backend_clock();
    CHECK_DONE();
}
