/* test_engine_faults.c - the engine's failure paths on the host backend:
 * each allocation, pin and copy made to fail in turn (a clear error,
 * nothing leaked: run under ASan/LSan and valgrind), pin failures falling
 * back to pageable memory with a warning, a device too small, a CUDA
 * backend asked for with no driver, and on a fake driver (failing, then
 * working) the CUDA backend's errors and its care for the caller's
 * context. */
#define _GNU_SOURCE
#include "backend.h"
#include "check.h"
#include "internal.h"
#include "vram.h"

#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fixture {
    vram_layout *layout;
    vram_hw *hw;
    vram_plan *plan;
    int n;
} fixture;

/* 8 blocks of ~100 KiB, 6 streamed (tiers pinned), 2 resident. */
static int fixture_make(fixture *f) {
    uint64_t sizes[8];
    for (int b = 0; b < 8; b++)
        sizes[b] = 100000 + 333 * (uint64_t)b;
    f->n = 8;
    f->hw = NULL;
    f->plan = NULL;
    int st = vram_layout_from_blocks(sizes, 8, 1 << 20, 0, &f->layout);
    if (st == VRAM_OK)
        st = vram_hw_probe_dram_only(&f->hw);
    if (st == VRAM_OK)
        st = vram_hw_set_vram(f->hw, 0, 4096, 0);
    if (st == VRAM_OK)
        st = vram_hw_set_dram(f->hw, 4096, 4096);
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = 6;
    if (st == VRAM_OK)
        st = vram_plan_create(f->layout, f->hw, &o, &f->plan);
    return st;
}

static void fixture_free(fixture *f) {
    vram_plan_free(f->plan);
    vram_hw_free(f->hw);
    vram_layout_free(f->layout);
}

static vram_engine_options opts(void) {
    vram_engine_options eo;
    vram_engine_options_init(&eo);
    eo.backend = VRAM_BACKEND_HOST;
    eo.slot_count = 2;
    eo.copy_streams = 2;
    return eo;
}

/* Writes, then two passes; returns the first failure. */
static int run(vram_engine *eng, int n) {
    uint8_t buf[4096];
    for (int b = 0; b < n; b++) {
        memset(buf, b + 1, sizeof buf);
        int st = vram_engine_write(eng, b, 0, buf, sizeof buf);
        if (st)
            return st;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < n; b++) {
            uint64_t addr;
            int st = vram_engine_acquire(eng, b, NULL, &addr);
            if (st)
                return st;
            uint8_t got[16];
            if ((st = vram_engine_read_device(eng, addr, got, sizeof got)))
                return st;
            CHECK_INT(got[0], b + 1);
            if ((st = vram_engine_release(eng, b, NULL))) {
                /* A failed prefetch: the block is released all the same. */
                vram_engine_stats s = {.size = sizeof s};
                CHECK(vram_engine_get_stats(eng, &s) == VRAM_OK && s.releases == s.acquires);
                return st;
            }
        }
    return vram_engine_synchronize(eng);
}

static int warnings;
static char last_warning[1024];
static void log_fn(int level, const char *msg, void *user) {
    (void)user;
    if (level == VRAM_LOG_WARN) {
        warnings++;
        snprintf(last_warning, sizeof last_warning, "%s", msg);
    }
}

static void test_fail_alloc_each(void) {
    fixture f;
    CHECK_OK(fixture_make(&f));
    int n;
    for (n = 1; n < 100; n++) {
        vram_engine_options eo = opts();
        eo.fail_alloc_at = n;
        vram_engine *eng = NULL;
        int st = vram_engine_create(f.plan, f.layout, &eo, &eng);
        if (st == VRAM_OK) {
            CHECK_OK(run(eng, f.n));
            vram_engine_destroy(eng);
            break;
        }
        CHECK(eng == NULL);
        CHECK(st == VRAM_E_NOMEM || st == VRAM_E_DEVICE_NOMEM);
        CHECK(strstr(vram_last_error(), "injected") != NULL);
    }
    /* 6 host regions + 2 slots + 2 resident blocks. */
    CHECK_INT(n, 11);
    fixture_free(&f);
}

static uint64_t streamed_region_bytes(vram_engine *eng, int n, uint64_t *largest) {
    uint64_t t = 0;
    *largest = 0;
    for (int b = 0; b < n; b++)
        if (vram_engine_host_ptr(eng, b)) {
            uint64_t r = vram_align_up(vram_engine_block_bytes(eng, b));
            t += r;
            *largest = r > *largest ? r : *largest;
        }
    return t;
}

static void test_fail_pin_each(void) {
    fixture f;
    CHECK_OK(fixture_make(&f));
    vram_set_log(log_fn, NULL, VRAM_LOG_WARN);
    for (int n = 1; n <= 7; n++) {
        warnings = 0;
        vram_engine_options eo = opts();
        eo.fail_pin_at = n;
        vram_engine *eng = NULL;
        CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
        if (!eng)
            continue;
        CHECK_OK(run(eng, f.n));
        vram_engine_stats s = {.size = sizeof s};
        CHECK_OK(vram_engine_get_stats(eng, &s));
        if (n <= 6) { /* one of the six regions fell back to pageable */
            CHECK_INT(warnings, 1);
            CHECK(strstr(last_warning, "pageable") != NULL);
            CHECK(s.pageable_bytes > 0 && s.pinned_bytes > 0);
            /* the regions, plus the pinned staging buffers (two, shared by
             * the copy streams), as large as the pageable region */
            uint64_t largest, regions = streamed_region_bytes(eng, f.n, &largest);
            uint64_t extra = s.pinned_bytes + s.pageable_bytes - regions;
            CHECK(s.pinned_bytes + s.pageable_bytes > regions);
            uint64_t buffers = (uint64_t)vram_staging_buffers(s.copy_streams); /* shared by the streams */
            CHECK(extra % buffers == 0);
            CHECK(extra <= buffers * largest);
        } else {
            CHECK_INT(warnings, 0);
            CHECK_INT(s.pageable_bytes, 0);
        }
        vram_engine_destroy(eng);
    }
    vram_set_log(NULL, NULL, 0);
    fixture_free(&f);
}

static void test_fail_copy_each(void) {
    fixture f;
    CHECK_OK(fixture_make(&f));
    int n, failures = 0;
    for (n = 1; n < 200; n++) {
        vram_engine_options eo = opts();
        eo.fail_copy_at = n;
        vram_engine *eng = NULL;
        CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
        if (!eng)
            break;
        int st = run(eng, f.n);
        vram_engine_destroy(eng);
        if (st == VRAM_OK)
            break;
        failures++;
        CHECK_INT(st, VRAM_E_DRIVER);
        CHECK(strstr(vram_last_error(), "injected copy failure") != NULL);
    }
    /* 2 resident writes, then each streamed copy of two passes. */
    CHECK(failures >= 2 + 12);
    CHECK(n < 200);
    fixture_free(&f);
}

/* realloc failing on demand; otherwise the process's next one (libc's, or
 * a shared sanitizer runtime's). Clang links its sanitizer runtimes into
 * the program, where this would replace their realloc: no hook there. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NO_REALLOC_HOOK 1
#endif
#endif
#ifndef NO_REALLOC_HOOK
static atomic_bool fail_realloc;
void *realloc(void *p, size_t n) {
    static void *(*_Atomic next)(void *, size_t);
    if (atomic_load(&fail_realloc)) {
        errno = ENOMEM;
        return NULL;
    }
    if (!next)
        next = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    return next(p, n);
}

/* A "kernel" that runs until the test (or, after 2 s, the watchdog) opens
 * the gate. */
static atomic_bool gate_open, watchdog_opened;
static void gate_fn(void *user) {
    (void)user;
    while (!atomic_load(&gate_open))
        usleep(1000);
}
static void *watchdog(void *user) {
    (void)user;
    for (int i = 0; i < 2000 && !atomic_load(&gate_open); i++)
        usleep(1000);
    if (!atomic_exchange(&gate_open, true))
        atomic_store(&watchdog_opened, true);
    return NULL;
}

/* The timing events of a block acquired on a stream that has yet to reach
 * them go back to the event pool at reset_stats, with every realloc
 * failing: the pool has room for them, so none is destroyed in use (a
 * failed pool growth destroyed them, and reset_stats stalled until the
 * stream's kernel ended). */
static void test_event_pool_never_grows(void) {
    fixture f;
    CHECK_OK(fixture_make(&f));
    vram_engine_options eo = opts();
    vram_engine *eng = NULL;
    CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
    int streamed[2], ns = 0;
    for (int b = 0; eng && b < f.n && ns < 2; b++)
        if (vram_engine_host_ptr(eng, b))
            streamed[ns++] = b;
    vram_backend *be = eng ? vram_engine_get_backend(eng) : NULL;
    void *cs = NULL;
    if (be)
        CHECK_OK(be->ops->stream_create(be, &cs));
    CHECK(eng && ns == 2 && cs);
    if (!eng || ns < 2 || !cs) {
        vram_engine_destroy(eng);
        fixture_free(&f);
        return;
    }
    atomic_store(&fail_realloc, true);
    uint64_t addr;
    CHECK_OK(vram_engine_acquire(eng, streamed[0], NULL, &addr)); /* the base, done */
    CHECK_OK(vram_engine_release(eng, streamed[0], NULL));
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0);
    CHECK_OK(be->ops->host_func(be, cs, gate_fn, NULL));
    CHECK_OK(vram_engine_acquire(eng, streamed[1], cs, &addr)); /* events behind the gate */
    CHECK_OK(vram_engine_reset_stats(eng));
    atomic_store(&fail_realloc, false);
    atomic_store(&gate_open, true);
    pthread_join(wd, NULL);
    CHECK(!atomic_load(&watchdog_opened));
    CHECK_OK(vram_engine_release(eng, streamed[1], cs));
    CHECK_OK(be->ops->stream_sync(be, cs));
    be->ops->stream_destroy(be, cs);
    CHECK_OK(run(eng, f.n));
    vram_engine_destroy(eng);
    fixture_free(&f);
}
#else
static void test_event_pool_never_grows(void) {
    fprintf(stderr, "no realloc hook under clang sanitizers: event pool case skipped\n");
}
#endif

static void test_device_too_small(void) {
    fixture f;
    CHECK_OK(fixture_make(&f));
    vram_engine_options eo = opts();
    eo.host_device_bytes = 300000; /* 2 slots fit, the residents don't */
    vram_engine *eng = NULL;
    CHECK_INT(vram_engine_create(f.plan, f.layout, &eo, &eng), VRAM_E_DEVICE_NOMEM);
    CHECK(eng == NULL);
    CHECK(strstr(vram_last_error(), "MiB of device memory") != NULL);
    CHECK(strstr(vram_last_error(), "2 slot(s)") != NULL);
    fixture_free(&f);
}

static void test_no_cuda_driver(void) {
    fixture f;
    CHECK_OK(fixture_make(&f));
    vram_engine_options eo = opts();
    eo.backend = VRAM_BACKEND_CUDA;
    vram_engine *eng = NULL;
    CHECK_INT(vram_engine_create(f.plan, f.layout, &eo, &eng), VRAM_E_NO_DEVICE);
    CHECK(eng == NULL);
    CHECK(strstr(vram_last_error(), "CUDA backend unavailable") != NULL);
    vram_bandwidth_result r = {.size = sizeof r};
    CHECK_INT(vram_bench_bandwidth(VRAM_BACKEND_CUDA, 0, 1 << 20, 1, &r), VRAM_E_NO_DEVICE);
    /* AUTO falls back to the host backend. */
    eo.backend = VRAM_BACKEND_AUTO;
    CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
    if (eng) {
        CHECK_OK(run(eng, f.n));
        vram_engine_stats s = {.size = sizeof s};
        CHECK_OK(vram_engine_get_stats(eng, &s));
        CHECK_INT(s.backend, VRAM_BACKEND_HOST);
        vram_engine_destroy(eng);
    }
    fixture_free(&f);
}

/* Runs `body` in a child process against the probe tests' fake libcuda
 * (built beside this program; the case is skipped with a note when it is
 * not there): the driver loads once per process. */
static void with_fake_driver(void (*body)(const char *lib)) {
    char exe[4096], lib[4200];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return;
    exe[len] = 0;
    snprintf(lib, sizeof lib, "%s/libfake_cuda.so", dirname(exe));
    if (access(lib, R_OK) != 0) {
        fprintf(stderr, "%s missing: fake driver case skipped\n", lib);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        setenv("VRAM_CUDA_LIBRARY", lib, 1);
        body(lib);
        fflush(stderr);
        _exit(check_failures ? 1 : 0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The fake libcuda has a device but fails every call the engine makes: a
 * clear driver error from the CUDA backend, AUTO falls back to the host. */
static void fake_driver_fails(const char *lib) {
    (void)lib;
    fixture f;
    CHECK_OK(fixture_make(&f));
    vram_engine_options eo = opts();
    eo.backend = VRAM_BACKEND_CUDA;
    vram_engine *eng = NULL;
    CHECK_INT(vram_engine_create(f.plan, f.layout, &eo, &eng), VRAM_E_DRIVER);
    CHECK(strstr(vram_last_error(), "cuDevicePrimaryCtxRetain") != NULL);
    vram_bandwidth_result r = {.size = sizeof r};
    CHECK_INT(vram_bench_bandwidth(VRAM_BACKEND_CUDA, 0, 1 << 20, 1, &r), VRAM_E_DRIVER);
    eo.backend = VRAM_BACKEND_AUTO;
    CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
    if (eng) {
        CHECK_OK(run(eng, f.n));
        vram_engine_destroy(eng);
    }
    fixture_free(&f);
}

/* The CUDA backend on the fake driver's working mode (synchronous, per-
 * thread current contexts): the bytes come through, and every call gives
 * the calling thread back the context it had, as a PyTorch thread working
 * on another device (or on none yet) counts on; destroy drops the primary
 * context reference it took. */
static void cuda_context_given_back(const char *lib) {
    setenv("FAKE_CUDA_ENGINE", "1", 1);
    setenv("FAKE_CUDA_DEVICES", "2", 1);
    void *fake = dlopen(lib, RTLD_NOW);
    int (*current)(void) = fake ? (int (*)(void))dlsym(fake, "fake_cuda_current") : NULL;
    void (*set_current)(int) = fake ? (void (*)(int))dlsym(fake, "fake_cuda_set_current") : NULL;
    int (*refs)(int) = fake ? (int (*)(int))dlsym(fake, "fake_cuda_refs") : NULL;
    int (*without)(void) =
        fake ? (int (*)(void))dlsym(fake, "fake_cuda_calls_without_context") : NULL;
    CHECK(current && set_current && refs && without);
    if (!current || !set_current || !refs || !without)
        return;
    fixture f;
    CHECK_OK(fixture_make(&f));
    const int theirs[] = {-2, -1}; /* a runtime's context, then none */
    for (int k = 0; k < 2; k++) {
        set_current(theirs[k]);
        vram_engine_options eo = opts();
        eo.backend = VRAM_BACKEND_CUDA;
        eo.device = 1;
        vram_engine *eng = NULL;
        CHECK_OK(vram_engine_create(f.plan, f.layout, &eo, &eng));
        CHECK_INT(current(), theirs[k]);
        CHECK_INT(refs(1), 1);
        if (eng) {
            CHECK_OK(run(eng, f.n));
            CHECK_INT(current(), theirs[k]);
            vram_engine_stats st = {.size = sizeof st};
            CHECK_OK(vram_engine_get_stats(eng, &st));
            CHECK(st.backend == VRAM_BACKEND_CUDA && st.blocks_copied >= 6);
            CHECK_INT(current(), theirs[k]);
            vram_engine_destroy(eng);
        }
        CHECK_INT(current(), theirs[k]);
        CHECK_INT(refs(1), 0);
        vram_bandwidth_result r = {.size = sizeof r};
        CHECK_OK(vram_bench_bandwidth(VRAM_BACKEND_CUDA, 1, 1 << 16, 2, &r));
        CHECK_INT(current(), theirs[k]);
        CHECK_INT(refs(1), 0);
    }
    CHECK_INT(without(), 0);
    fixture_free(&f);
}

int main(void) {
    /* These fork: before any thread exists. */
    with_fake_driver(fake_driver_fails);
    with_fake_driver(cuda_context_given_back);
    /* A driver that is not there, before anything loads one. */
    setenv("VRAM_CUDA_LIBRARY", "/nonexistent/libcuda.so.1", 1);
    test_fail_alloc_each();
    test_fail_pin_each();
    test_fail_copy_each();
    test_event_pool_never_grows();
    test_device_too_small();
    test_no_cuda_driver();
    CHECK_DONE();
}
