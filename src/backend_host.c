/* backend_host.c - RAM stands in for the GPU.
 *
 * Device memory is aligned host memory up to a capacity; each stream is a
 * worker thread draining a FIFO of operations; events are counters
 * (records issued / records completed) with a completion timestamp. One
 * mutex guards all of it: the work per operation is a memcpy or a sleep, so
 * contention is not what limits a run. An optional bandwidth limit models
 * the link: copies reserve time on a shared per-direction timeline, so
 * concurrent streams share it as they would share PCIe.
 * Each worker stream keeps an emulated device clock: an operation starts
 * when its stream's previous one ended, when it was issued and (a wait)
 * when its event completed, not when the worker thread happens to wake; it
 * then sleeps until its emulated end, so the clock never runs ahead of the
 * wall clock. Thread wake-ups and sleep overshoot thus do not add up over
 * a pass, as a GPU's queues do not stall on them; events carry these times. */
#define _GNU_SOURCE
#include "backend.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OP_COPY, OP_WAIT, OP_RECORD, OP_SLEEP, OP_FUNC };
enum { DIR_H2D, DIR_D2H };

typedef struct hevent {
    uint64_t recorded, completed;
    double t;    /* vram_now_ms of the latest completion */
    int waiters; /* threads blocked on it: completion wakes only then */
} hevent;

typedef struct hop {
    int kind;
    hevent *ev;
    uint64_t target; /* WAIT / RECORD: record number */
    void *dst;
    const void *src;
    uint64_t n;
    int dir;
    double ms;
    void (*fn)(void *);
    void *user;
    double t_submit; /* vram_now_ms when issued */
} hop;

typedef struct hbackend hbackend;

typedef struct hstream {
    hbackend *hb;
    pthread_t thread;
    pthread_cond_t cv; /* new work or an event completed */
    hop *q;
    size_t cap, head, count;
    bool busy, stop;
    bool idle; /* waiting for work: a submit signals only then */
    double clock; /* emulated end of its latest operation (worker only) */
} hstream;

struct hbackend {
    vram_backend base;
    pthread_mutex_t mu;
    pthread_cond_t host_cv; /* for callers waiting on events or streams */
    int host_waiters;
    hstream **streams;
    int nstreams, stream_cap;
    uint64_t dev_cap, dev_used;
    double bytes_per_ms;     /* 0 = unlimited */
    double link_free_at[2];  /* per direction, vram_now_ms */
};

#define HB(b) ((hbackend *)(b))

/* Sleeps until vram_now_ms() reaches `end`; returns `end`. */
static double sleep_until(double end) {
    double ms = end - vram_now_ms();
    if (ms > 0)
        vram_sleep_ns((uint64_t)(ms * 1e6));
    return end;
}

static void copy_op(const hop *op) { memcpy(op->dst, op->src, (size_t)op->n); }
static void func_op(const hop *op) { op->fn(op->user); }

/* Runs `work` emulated from `ready`: its end is ready + the time it took. */
static double timed_from(double ready, void (*work)(const hop *), const hop *op) {
    double t0 = vram_now_ms();
    work(op);
    return ready + (vram_now_ms() - t0);
}

/* memcpy at the link's speed when a limit is set: the copy reserves its
 * time on the direction's timeline (after whatever is booked, not before
 * `ready`), so streams share the link, then sleeps until its reservation
 * ends. Returns the emulated end. */
static double link_copy(hbackend *hb, const hop *op, double ready) {
    if (hb->bytes_per_ms <= 0)
        return timed_from(ready, copy_op, op);
    pthread_mutex_lock(&hb->mu);
    double start = fmax(hb->link_free_at[op->dir], ready);
    double end = start + (double)op->n / hb->bytes_per_ms;
    hb->link_free_at[op->dir] = end;
    pthread_mutex_unlock(&hb->mu);
    copy_op(op);
    return sleep_until(end);
}

/* Wakes callers blocked on an event or a stream. Caller holds mu. */
static void wake_host(hbackend *hb) {
    if (hb->host_waiters > 0)
        pthread_cond_broadcast(&hb->host_cv);
}

/* Waiting is rare on the hot path (copies finish ahead of use), so
 * completions wake threads only when someone waits on this event. */
static void complete_event(hbackend *hb, hevent *e, uint64_t target, double t) {
    if (target > e->completed) {
        e->completed = target;
        e->t = t;
    }
    if (e->waiters > 0) {
        for (int i = 0; i < hb->nstreams; i++)
            pthread_cond_signal(&hb->streams[i]->cv);
        wake_host(hb);
    }
}

static void host_wait(hbackend *hb) {
    hb->host_waiters++;
    pthread_cond_wait(&hb->host_cv, &hb->mu);
    hb->host_waiters--;
}

/* Runs an operation (COPY, SLEEP, FUNC) outside the lock, emulated from
 * `ready`; returns its emulated end. */
static double run_op(hbackend *hb, const hop *op, double ready) {
    switch (op->kind) {
    case OP_COPY:
        return link_copy(hb, op, ready);
    case OP_SLEEP:
        return sleep_until(ready + op->ms);
    case OP_FUNC:
        return timed_from(ready, func_op, op);
    default:
        return ready;
    }
}

static void *worker(void *arg) {
    hstream *s = arg;
    hbackend *hb = s->hb;
    pthread_mutex_lock(&hb->mu);
    for (;;) {
        while (s->count == 0 && !s->stop) {
            s->idle = true;
            pthread_cond_wait(&s->cv, &hb->mu);
            s->idle = false;
        }
        if (s->count == 0)
            break;
        hop op = s->q[s->head];
        if (op.kind == OP_WAIT && op.ev->completed < op.target) {
            op.ev->waiters++;
            pthread_cond_wait(&s->cv, &hb->mu);
            op.ev->waiters--;
            continue;
        }
        s->head = (s->head + 1) % s->cap;
        s->count--;
        double ready = fmax(s->clock, op.t_submit);
        if (op.kind == OP_WAIT)
            ready = fmax(ready, op.ev->t);
        if (op.kind == OP_RECORD) {
            complete_event(hb, op.ev, op.target, ready);
        } else if (op.kind != OP_WAIT) {
            s->busy = true;
            pthread_mutex_unlock(&hb->mu);
            ready = run_op(hb, &op, ready);
            pthread_mutex_lock(&hb->mu);
            s->busy = false;
        }
        s->clock = ready;
        wake_host(hb);
    }
    pthread_mutex_unlock(&hb->mu);
    return NULL;
}

/* The worker stream behind a handle, or NULL for the calling thread (also
 * for handles this backend did not make). Caller holds mu. */
static hstream *find_stream(hbackend *hb, void *stream) {
    for (int i = 0; stream && i < hb->nstreams; i++)
        if (hb->streams[i] == stream)
            return hb->streams[i];
    return NULL;
}

/* Queues `op` on a worker stream, or runs it on the calling thread. */
static int submit(hbackend *hb, void *stream, hop *op) {
    pthread_mutex_lock(&hb->mu);
    hstream *s = find_stream(hb, stream);
    op->t_submit = vram_now_ms();
    if (op->kind == OP_WAIT || op->kind == OP_RECORD) {
        if (op->kind == OP_RECORD)
            op->ev->recorded++;
        op->target = op->ev->recorded;
    }
    if (!s) {
        if (op->kind == OP_RECORD) {
            complete_event(hb, op->ev, op->target, op->t_submit);
        } else if (op->kind == OP_WAIT) {
            while (op->ev->completed < op->target) {
                op->ev->waiters++;
                host_wait(hb);
                op->ev->waiters--;
            }
        }
        pthread_mutex_unlock(&hb->mu);
        run_op(hb, op, vram_now_ms());
        return VRAM_OK;
    }
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        hop *q = malloc(cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&hb->mu);
            return vram_fail(VRAM_E_NOMEM, "host stream queue of %zu operations", cap);
        }
        for (size_t i = 0; i < s->count; i++)
            q[i] = s->q[(s->head + i) % s->cap];
        free(s->q);
        s->q = q;
        s->cap = cap;
        s->head = 0;
    }
    s->q[(s->head + s->count) % s->cap] = *op;
    s->count++;
    if (s->idle) {
        s->idle = false; /* one signal is enough */
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&hb->mu);
    return VRAM_OK;
}

static int h_enter(vram_backend *b, void **prev) {
    (void)b;
    *prev = NULL;
    return VRAM_OK;
}

static void h_leave(vram_backend *b, void *prev) {
    (void)b;
    (void)prev;
}

static int h_dev_alloc(vram_backend *b, uint64_t bytes, uint64_t *addr) {
    hbackend *hb = HB(b);
    pthread_mutex_lock(&hb->mu);
    bool fits = !hb->dev_cap || hb->dev_used + bytes <= hb->dev_cap;
    uint64_t used = hb->dev_used;
    if (fits)
        hb->dev_used += bytes;
    pthread_mutex_unlock(&hb->mu);
    if (!fits)
        return vram_fail(VRAM_E_DEVICE_NOMEM,
                         "host device: %.1f MiB requested, %.1f of %.1f MiB in use",
                         (double)bytes / VRAM_MIB, (double)used / VRAM_MIB,
                         (double)hb->dev_cap / VRAM_MIB);
    void *p = NULL;
    if (bytes > SIZE_MAX || posix_memalign(&p, VRAM_ALIGN, (size_t)(bytes ? bytes : 1)) != 0) {
        pthread_mutex_lock(&hb->mu);
        hb->dev_used -= bytes;
        pthread_mutex_unlock(&hb->mu);
        return vram_fail(VRAM_E_DEVICE_NOMEM, "host device: cannot allocate %.1f MiB",
                         (double)bytes / VRAM_MIB);
    }
    *addr = (uint64_t)(uintptr_t)p;
    return VRAM_OK;
}

/* Waits until every worker stream has run all it was given. Caller holds mu. */
static void drain_streams(hbackend *hb) {
    for (;;) {
        bool idle = true;
        for (int i = 0; i < hb->nstreams && idle; i++)
            idle = hb->streams[i]->count == 0 && !hb->streams[i]->busy;
        if (idle)
            return;
        host_wait(hb);
    }
}

/* Like cuMemFree, which waits for the device: work still queued on any
 * stream (a caller's kernel on a released slot) may read the memory. */
static void h_dev_free(vram_backend *b, uint64_t addr, uint64_t bytes) {
    hbackend *hb = HB(b);
    if (!addr)
        return;
    pthread_mutex_lock(&hb->mu);
    drain_streams(hb);
    hb->dev_used -= bytes;
    pthread_mutex_unlock(&hb->mu);
    free((void *)(uintptr_t)addr);
}

/* Pinning is bookkeeping here: the arena counts bytes against the budget. */
static int h_host_register(vram_backend *b, void *p, uint64_t bytes) {
    (void)b, (void)p, (void)bytes;
    return VRAM_OK;
}

static void h_host_unregister(vram_backend *b, void *p) { (void)b, (void)p; }

static int h_stream_create(vram_backend *b, void **stream) {
    hbackend *hb = HB(b);
    hstream *s = calloc(1, sizeof *s);
    if (!s)
        return vram_fail(VRAM_E_NOMEM, "host stream");
    s->hb = hb;
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_lock(&hb->mu);
    if (hb->nstreams == hb->stream_cap) {
        int cap = hb->stream_cap ? hb->stream_cap * 2 : 8;
        hstream **v = realloc(hb->streams, (size_t)cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&hb->mu);
            pthread_cond_destroy(&s->cv);
            free(s);
            return vram_fail(VRAM_E_NOMEM, "host stream list");
        }
        hb->streams = v;
        hb->stream_cap = cap;
    }
    int err = pthread_create(&s->thread, NULL, worker, s);
    if (err) {
        pthread_mutex_unlock(&hb->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return vram_fail(VRAM_E_NOMEM, "cannot start a host stream thread: %s", strerror(err));
    }
    hb->streams[hb->nstreams++] = s;
    pthread_mutex_unlock(&hb->mu);
    *stream = s;
    return VRAM_OK;
}

/* Drains the stream's queue, then stops its thread. */
static void h_stream_destroy(vram_backend *b, void *stream) {
    hbackend *hb = HB(b);
    pthread_mutex_lock(&hb->mu);
    hstream *s = find_stream(hb, stream);
    if (!s) {
        pthread_mutex_unlock(&hb->mu);
        return;
    }
    s->stop = true;
    pthread_cond_signal(&s->cv);
    s->idle = false;
    pthread_mutex_unlock(&hb->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_lock(&hb->mu);
    for (int i = 0; i < hb->nstreams; i++)
        if (hb->streams[i] == s) {
            hb->streams[i] = hb->streams[--hb->nstreams];
            break;
        }
    pthread_mutex_unlock(&hb->mu);
    pthread_cond_destroy(&s->cv);
    free(s->q);
    free(s);
}

static int h_stream_sync(vram_backend *b, void *stream) {
    hbackend *hb = HB(b);
    pthread_mutex_lock(&hb->mu);
    hstream *s = find_stream(hb, stream);
    while (s && (s->count > 0 || s->busy))
        host_wait(hb);
    pthread_mutex_unlock(&hb->mu);
    return VRAM_OK;
}

static int h_event_create(vram_backend *b, bool timing, void **event) {
    (void)b, (void)timing;
    hevent *e = calloc(1, sizeof *e);
    if (!e)
        return vram_fail(VRAM_E_NOMEM, "host event");
    *event = e;
    return VRAM_OK;
}

/* Whether a queued operation still refers to `e`, or one of its records
 * has not run. Caller holds mu. */
static bool event_in_use(const hbackend *hb, const hevent *e) {
    if (e->completed < e->recorded)
        return true;
    for (int i = 0; i < hb->nstreams; i++) {
        const hstream *s = hb->streams[i];
        for (size_t k = 0; k < s->count; k++)
            if (s->q[(s->head + k) % s->cap].ev == e)
                return true;
    }
    return false;
}

/* As CUDA defers an event's destruction until its queued uses are done,
 * this waits for them: a caller's stream may still record or await it. */
static void h_event_destroy(vram_backend *b, void *event) {
    hbackend *hb = HB(b);
    if (!event)
        return;
    pthread_mutex_lock(&hb->mu);
    while (event_in_use(hb, event))
        host_wait(hb);
    pthread_mutex_unlock(&hb->mu);
    free(event);
}

static int h_event_record(vram_backend *b, void *event, void *stream) {
    hop op = {.kind = OP_RECORD, .ev = event};
    return submit(HB(b), stream, &op);
}

static int h_stream_wait(vram_backend *b, void *stream, void *event) {
    hop op = {.kind = OP_WAIT, .ev = event};
    return submit(HB(b), stream, &op);
}

static int h_event_query(vram_backend *b, void *event) {
    hbackend *hb = HB(b);
    hevent *e = event;
    pthread_mutex_lock(&hb->mu);
    int done = e->completed >= e->recorded;
    pthread_mutex_unlock(&hb->mu);
    return done;
}

static int h_event_sync(vram_backend *b, void *event) {
    hop op = {.kind = OP_WAIT, .ev = event};
    return submit(HB(b), NULL, &op);
}

static int h_event_elapsed(vram_backend *b, void *start, void *end, double *ms) {
    hbackend *hb = HB(b);
    hevent *s = start, *e = end;
    pthread_mutex_lock(&hb->mu);
    bool done = s->recorded && e->recorded && s->completed >= s->recorded &&
                e->completed >= e->recorded;
    *ms = done ? e->t - s->t : 0;
    pthread_mutex_unlock(&hb->mu);
    return done ? VRAM_OK : vram_fail(VRAM_E_STATE, "host event not recorded or not complete");
}

static int h_copy_h2d_async(vram_backend *b, uint64_t dst, const void *src, uint64_t n,
                            void *stream) {
    hop op = {.kind = OP_COPY, .dst = (void *)(uintptr_t)dst, .src = src, .n = n, .dir = DIR_H2D};
    return submit(HB(b), stream, &op);
}

static int h_copy_d2h_async(vram_backend *b, void *dst, uint64_t src, uint64_t n, void *stream) {
    hop op = {.kind = OP_COPY, .dst = dst, .src = (const void *)(uintptr_t)src, .n = n,
              .dir = DIR_D2H};
    return submit(HB(b), stream, &op);
}

static int h_copy_h2d(vram_backend *b, uint64_t dst, const void *src, uint64_t n) {
    return h_copy_h2d_async(b, dst, src, n, NULL);
}

static int h_copy_d2h(vram_backend *b, void *dst, uint64_t src, uint64_t n) {
    return h_copy_d2h_async(b, dst, src, n, NULL);
}

static int h_host_func(vram_backend *b, void *stream, void (*fn)(void *), void *user) {
    hop op = {.kind = OP_FUNC, .fn = fn, .user = user};
    return submit(HB(b), stream, &op);
}

static int h_sleep(vram_backend *b, void *stream, double ms) {
    hop op = {.kind = OP_SLEEP, .ms = ms};
    return submit(HB(b), stream, &op);
}

static void h_destroy(vram_backend *b) {
    hbackend *hb = HB(b);
    while (hb->nstreams > 0)
        h_stream_destroy(b, hb->streams[hb->nstreams - 1]);
    free(hb->streams);
    pthread_cond_destroy(&hb->host_cv);
    pthread_mutex_destroy(&hb->mu);
    free(hb);
}

static const vram_backend_ops host_ops = {
    .destroy = h_destroy,
    .enter = h_enter,
    .leave = h_leave,
    .dev_alloc = h_dev_alloc,
    .dev_free = h_dev_free,
    .host_register = h_host_register,
    .host_unregister = h_host_unregister,
    .stream_create = h_stream_create,
    .stream_destroy = h_stream_destroy,
    .stream_sync = h_stream_sync,
    .event_create = h_event_create,
    .event_destroy = h_event_destroy,
    .event_record = h_event_record,
    .stream_wait = h_stream_wait,
    .event_query = h_event_query,
    .event_sync = h_event_sync,
    .event_elapsed = h_event_elapsed,
    .copy_h2d_async = h_copy_h2d_async,
    .copy_d2h_async = h_copy_d2h_async,
    .copy_h2d = h_copy_h2d,
    .copy_d2h = h_copy_d2h,
    .host_func = h_host_func,
    .pace = h_sleep,
    .spin = h_sleep,
};

int vram_backend_host_open(uint64_t device_bytes, double bandwidth_gbps, vram_backend **out) {
    *out = NULL;
    if (!(bandwidth_gbps >= 0))
        return vram_fail(VRAM_E_RANGE, "host_bandwidth_gbps is %g (must be >= 0)",
                         bandwidth_gbps);
    hbackend *hb = calloc(1, sizeof *hb);
    if (!hb)
        return vram_fail(VRAM_E_NOMEM, "host backend");
    hb->base.ops = &host_ops;
    hb->base.kind = VRAM_BACKEND_HOST;
    snprintf(hb->base.name, sizeof hb->base.name, "host (RAM as device)");
    snprintf(hb->base.uuid, sizeof hb->base.uuid, "host");
    hb->base.link_gbps = bandwidth_gbps;
    hb->dev_cap = device_bytes;
    hb->bytes_per_ms = bandwidth_gbps * 1e6; /* 1 GB/s = 1e6 bytes per ms */
    pthread_mutex_init(&hb->mu, NULL);
    pthread_cond_init(&hb->host_cv, NULL);
    *out = &hb->base;
    return VRAM_OK;
}

int vram_backend_open(int kind, int device, uint64_t device_bytes, double bandwidth_gbps,
                      vram_backend **out) {
    *out = NULL;
    switch (kind) {
    case VRAM_BACKEND_HOST:
        return vram_backend_host_open(device_bytes, bandwidth_gbps, out);
    case VRAM_BACKEND_CUDA:
        return vram_backend_cuda_open(device, out);
    case VRAM_BACKEND_AUTO:
        if (vram_backend_cuda_open(device, out) == VRAM_OK)
            return VRAM_OK;
        vram_log(VRAM_LOG_INFO, "no CUDA device (%s); using the host backend",
                 vram_last_error());
        vram_clear_error();
        return vram_backend_host_open(device_bytes, bandwidth_gbps, out);
    default:
        return vram_fail(VRAM_E_INVALID, "backend %d is not AUTO (0), HOST (1) or CUDA (2)",
                         kind);
    }
}
