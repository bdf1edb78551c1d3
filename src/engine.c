/* engine.c - the block-streaming engine (vram_engine_*).
 *
 * The protocol (docs: shared/reference/architecture.md):
 *   - every streamed block has one host region (pinned when the budget
 *     allows) laid out exactly as its device slot: one copy moves it;
 *   - K device slots; per slot a "copied" event (recorded on the copy stream
 *     after a copy into it) and a "freed" event (recorded on the compute
 *     stream at release);
 *   - acquire: the compute stream waits on copied[slot] (a stream wait);
 *   - release: record freed[slot]; a copy into that slot is only ever
 *     issued after the release of its previous block, on a copy stream that
 *     first waits on freed[slot], so the GPU can never overwrite a slot in
 *     use and the copies never run more than K blocks ahead;
 *   - prefetch walks the execution order (wrapping into the next pass) and
 *     keeps the next min(K, streamed) blocks in slots; across the end of a
 *     pass one slot fewer (see prefetch).
 * Slots are assigned at run time rather than fixed per block: in the
 * default order this is the planner's round robin, and it keeps working
 * for any order, for acquires out of order, and reuses a slot's contents
 * when every streamed block fits (streamed <= K).
 *
 * Nothing on the hot path waits on the host under CUDA: timing comes from
 * events read lazily (polled a few at a time, drained at get_stats). */
#define _GNU_SOURCE
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMELINE_CAP 65536u
/* Timing events out at once: at most e_wait, e_start and e_end of each
 * timeline entry. One is made only when the pool is empty, so the pool
 * never holds more than that: sized once, returning one never fails. */
#define POOL_CAP (3 * TIMELINE_CAP)
#define MAX_SLOTS 64
#define MAX_STREAMS 16

typedef struct tensor_ref {
    int file;
    uint64_t file_offset, nbytes, block_offset;
} tensor_ref;

typedef struct eblock {
    int placement, tier;
    uint64_t packed;         /* vram_block_info.packed_bytes */
    uint64_t bytes;          /* region size (256-aligned) */
    vram_host_region host;   /* streamed, pinned or pageable tier */
    uint64_t dev;            /* resident placement */
    tensor_ref *tensors;
    int ntensors;
    bool from_files;         /* every tensor has a file range */
    bool staged;             /* pageable: copied through pinned staging, since a
                              * DMA straight from pageable memory makes the
                              * issuing thread wait for the copy stream */
    uint64_t spill_offset;   /* disk tier without files */
    /* Run state. */
    int slot;                /* slot holding (or receiving) its bytes, -1 */
    void *read_done;         /* streamed: recorded after each copy out of its
                              * source, so a write waits for the last one
                              * even once its slot holds another block */
    int pos;                 /* position among streamed blocks in the order */
    bool in_use;
    uint64_t tl;             /* its open COMPUTE timeline entry */
} eblock;

typedef struct eslot {
    uint64_t dev;
    int block; /* -1 = empty */
    void *copied, *freed;
} eslot;

/* Staging of a block (disk read or pageable memcpy) run in stream order
 * (host function); never changes after create, so a queued job can't see a
 * later issue's arguments. */
typedef struct stage_job {
    vram_engine *eng;
    int block, staging;
} stage_job;

typedef struct tl_entry {
    vram_timeline_event ev;
    void *e_wait, *e_start, *e_end; /* e_wait: compute stream before its wait */
    bool open;                      /* COMPUTE not released yet */
    bool resolved;
    bool dropped;                   /* its issue failed: not reported */
} tl_entry;

struct vram_engine {
    pthread_mutex_t mu;
    vram_backend *be;
    vram_faults faults;
    vram_arena arena;
    int nblocks;
    eblock *blocks;
    int nslots;
    eslot *slots;
    uint64_t slot_bytes;
    int nstreams;
    void **streams;
    unsigned rr;
    bool async;
    double target, link_gbps;
    /* Disk tier and staged pageable blocks: vram_staging_buffers(streams)
     * buffers, shared by the copy streams in turn. */
    vram_host_region *staging;
    void **staging_free; /* per buffer: recorded after the DMA out of it */
    int nstaging;
    stage_job *jobs; /* [block * nstaging + staging] */
    int *fds;
    vram_file_id *file_ids; /* as the layout read them (check_file) */
    char **file_paths;
    int nfiles;
    int spill_fd;
    atomic_int async_status;
    pthread_mutex_t async_mu;
    char async_msg[512];
    /* Order. */
    int *order, norder;
    int *seq, m; /* streamed blocks in order */
    int cons;    /* position in seq of the next expected acquire */
    bool pass_end; /* the pass's last streamed block was the latest acquired */
    bool running;
    /* Stats. */
    bool base_live;
    void *base;
    /* Several copy streams, paced: the latest copy's end, pauses included
     * (issue_copy; a wait on it before its first record passes at once). */
    void *link_done;
    double t_first;
    uint64_t bytes_copied, blocks_copied, acquires, releases;
    uint64_t device_bytes, disk_bytes;
    double compute_wait_ms;
    int peak_slots;
    /* Timeline: entries [tl_next - CAP, tl_next) are live. */
    tl_entry *tl;
    uint64_t tl_next, tl_unres;
    void **pool; /* POOL_CAP */
    int npool;
};

/* ---------------------------------------------------------------- */
/* options                                                           */
/* ---------------------------------------------------------------- */

void vram_engine_options_init(vram_engine_options *o) {
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->backend = VRAM_BACKEND_AUTO;
    o->async_copies = -1;
    o->pin_memory = -1;
}

static int check_options(const vram_engine_options *o) {
    if (o->backend < VRAM_BACKEND_AUTO || o->backend > VRAM_BACKEND_CUDA)
        return vram_fail(VRAM_E_RANGE, "engine option backend is %d (0 auto, 1 host, 2 cuda)",
                         o->backend);
    if (o->slot_count < 0 || o->slot_count > MAX_SLOTS)
        return vram_fail(VRAM_E_RANGE, "engine option slot_count is %d (0 = plan, 1..%d)",
                         o->slot_count, MAX_SLOTS);
    if (o->copy_streams < 0 || o->copy_streams > MAX_STREAMS)
        return vram_fail(VRAM_E_RANGE, "engine option copy_streams is %d (0 = plan, 1..%d)",
                         o->copy_streams, MAX_STREAMS);
    if (o->async_copies < -1 || o->async_copies > 1 || o->pin_memory < -1 || o->pin_memory > 1)
        return vram_fail(VRAM_E_RANGE,
                         "engine options async_copies (%d) and pin_memory (%d) take -1, 0 or 1",
                         o->async_copies, o->pin_memory);
    if (!(o->host_bandwidth_gbps >= 0))
        return vram_fail(VRAM_E_RANGE, "engine option host_bandwidth_gbps is %g (>= 0)",
                         o->host_bandwidth_gbps);
    if (o->fail_alloc_at < 0 || o->fail_pin_at < 0 || o->fail_copy_at < 0 || o->device < 0)
        return vram_fail(VRAM_E_RANGE, "engine options device and fail_*_at must be >= 0");
    return VRAM_OK;
}

/* ---------------------------------------------------------------- */
/* file helpers                                                      */
/* ---------------------------------------------------------------- */

static int pwrite_full(int fd, const void *src, uint64_t n, uint64_t off) {
    uint64_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, (const char *)src + done, (size_t)(n - done), (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return vram_fail(VRAM_E_IO, "writing the spill file at offset %llu: %s",
                             (unsigned long long)(off + done),
                             r < 0 ? strerror(errno) : "no progress");
        done += (uint64_t)r;
    }
    return VRAM_OK;
}

/* Model file f is still the one its layout was read from: its offsets
 * hold. */
static int check_file(vram_engine *eng, int f) {
    return vram_file_check(eng->fds[f], eng->file_paths[f], &eng->file_ids[f]);
}

/* check_file for each model file a block's tensors lie in (they come
 * grouped by file: one check per run of them). */
static int check_block_files(vram_engine *eng, const eblock *bl) {
    int checked = -1;
    for (int i = 0; i < bl->ntensors; i++)
        if (bl->tensors[i].file != checked) {
            int st = check_file(eng, checked = bl->tensors[i].file);
            if (st)
                return st;
        }
    return VRAM_OK;
}

/* Reads a block's bytes from its source into `dst` (its packed layout). */
static int read_block(vram_engine *eng, int b, uint8_t *dst) {
    eblock *bl = &eng->blocks[b];
    if (!bl->from_files)
        return vram_pread_full(eng->spill_fd, dst, bl->packed, bl->spill_offset,
                               "the spill file");
    int st = check_block_files(eng, bl);
    for (int i = 0; i < bl->ntensors && st == VRAM_OK; i++) {
        const tensor_ref *t = &bl->tensors[i];
        st = vram_pread_full(eng->fds[t->file], dst + t->block_offset, t->nbytes, t->file_offset,
                             "a model file");
    }
    return st;
}

/* Host function on a stream: a block into its staging buffer, from disk or
 * from its pageable region. Errors surface at the next acquire, release or
 * synchronize. */
static void stage_fn(void *user) {
    const stage_job *j = user;
    vram_engine *eng = j->eng;
    eblock *bl = &eng->blocks[j->block];
    uint8_t *dst = eng->staging[j->staging].p;
    if (bl->tier != VRAM_TIER_DISK) {
        memcpy(dst, bl->host.p, bl->bytes);
        return;
    }
    int st = read_block(eng, j->block, dst);
    if (st != VRAM_OK) {
        pthread_mutex_lock(&eng->async_mu);
        if (atomic_load(&eng->async_status) == VRAM_OK) {
            snprintf(eng->async_msg, sizeof eng->async_msg, "disk-tier block %d: %s", j->block,
                     vram_last_error());
            atomic_store(&eng->async_status, st);
        }
        pthread_mutex_unlock(&eng->async_mu);
    }
}

static int check_async(vram_engine *eng) {
    if (atomic_load(&eng->async_status) == VRAM_OK)
        return VRAM_OK;
    pthread_mutex_lock(&eng->async_mu);
    int st = vram_fail(atomic_load(&eng->async_status), "%s", eng->async_msg);
    pthread_mutex_unlock(&eng->async_mu);
    return st;
}

/* ---------------------------------------------------------------- */
/* timeline                                                          */
/* ---------------------------------------------------------------- */

static int ev_get(vram_engine *eng, void **e) {
    if (eng->npool > 0) {
        *e = eng->pool[--eng->npool];
        return VRAM_OK;
    }
    return eng->be->ops->event_create(eng->be, true, e);
}

/* Pools the event even when a stream has yet to reach it (an open or
 * dropped entry's): its next user records it again, and waits and times
 * read the latest record. */
static void ev_put(vram_engine *eng, void **e) {
    if (!*e)
        return;
    eng->pool[eng->npool++] = *e;
    *e = NULL;
}

static void tl_release_events(vram_engine *eng, tl_entry *t) {
    ev_put(eng, &t->e_wait);
    ev_put(eng, &t->e_start);
    ev_put(eng, &t->e_end);
}

/* Reads an entry's times: 1 done, 0 not yet (wait = false), < 0 error. */
static int tl_resolve(vram_engine *eng, tl_entry *t, bool wait) {
    if (t->resolved)
        return 1;
    if (t->open)
        return 0;
    const vram_backend_ops *o = eng->be->ops;
    if (!t->dropped) {
        if (wait) {
            int st = o->event_sync(eng->be, t->e_end);
            if (st == VRAM_OK)
                st = o->event_sync(eng->be, eng->base);
            if (st)
                return st;
        } else {
            int q = o->event_query(eng->be, t->e_end);
            if (q == 1)
                q = o->event_query(eng->be, eng->base);
            if (q != 1)
                return q;
        }
        double s = 0, e = 0, w = 0;
        if (o->event_elapsed(eng->be, eng->base, t->e_start, &s) != VRAM_OK ||
            o->event_elapsed(eng->be, eng->base, t->e_end, &e) != VRAM_OK ||
            (t->e_wait && o->event_elapsed(eng->be, t->e_wait, t->e_start, &w) != VRAM_OK)) {
            t->dropped = true;
        } else {
            t->ev.start_ms = s;
            t->ev.end_ms = e;
            eng->compute_wait_ms += w > 0 ? w : 0;
        }
    }
    tl_release_events(eng, t);
    t->resolved = true;
    return 1;
}

static tl_entry *tl_at(vram_engine *eng, uint64_t i) { return &eng->tl[i % TIMELINE_CAP]; }

static uint64_t tl_oldest(const vram_engine *eng) {
    return eng->tl_next > TIMELINE_CAP ? eng->tl_next - TIMELINE_CAP : 0;
}

/* Resolves up to `budget` of the oldest entries without waiting. */
static void tl_poll(vram_engine *eng, int budget) {
    while (eng->tl_unres < eng->tl_next && budget-- > 0) {
        if (tl_resolve(eng, tl_at(eng, eng->tl_unres), false) != 1)
            break;
        eng->tl_unres++;
    }
}

/* Resolves every closed entry, waiting for their events. */
static int tl_drain(vram_engine *eng) {
    int first = VRAM_OK;
    for (uint64_t i = eng->tl_unres; i < eng->tl_next; i++) {
        int st = tl_resolve(eng, tl_at(eng, i), true);
        if (st < 0 && first == VRAM_OK)
            first = st;
    }
    while (eng->tl_unres < eng->tl_next && tl_at(eng, eng->tl_unres)->resolved)
        eng->tl_unres++;
    return first;
}

/* Records the base event (on the caller's stream) and clock, when none is
 * live since create or a stats reset. */
static int stats_begin(vram_engine *eng, void *stream) {
    if (eng->base_live)
        return VRAM_OK;
    int st = eng->be->ops->event_record(eng->be, eng->base, stream);
    if (st)
        return st;
    eng->base_live = true;
    eng->t_first = vram_now_ms();
    return VRAM_OK;
}

/* Appends an entry with fresh timing events (e_wait only for COMPUTE of
 * streamed blocks). Overwrites the oldest when the ring is full. The first
 * entry since create or a reset records the base on `compute` (the
 * caller's stream) first, whatever call issues it: every time counts from
 * a base issued before it. */
static int tl_add(vram_engine *eng, void *compute, int kind, int block, int slot, int stream,
                  bool with_wait, uint64_t *index) {
    int st = stats_begin(eng, compute);
    if (st)
        return st;
    tl_entry *t = tl_at(eng, eng->tl_next);
    if (eng->tl_next >= TIMELINE_CAP && !t->resolved) {
        if (t->open || tl_resolve(eng, t, true) != 1)
            tl_release_events(eng, t);
    }
    memset(t, 0, sizeof *t);
    t->ev.kind = kind;
    t->ev.block = block;
    t->ev.slot = slot;
    t->ev.stream = stream;
    t->resolved = true; /* until its events exist */
    st = ev_get(eng, &t->e_start);
    if (st == VRAM_OK)
        st = ev_get(eng, &t->e_end);
    if (st == VRAM_OK && with_wait)
        st = ev_get(eng, &t->e_wait);
    if (st != VRAM_OK) {
        tl_release_events(eng, t);
        t->dropped = true;
    } else {
        t->resolved = false;
    }
    *index = eng->tl_next++;
    if (eng->tl_unres < tl_oldest(eng))
        eng->tl_unres = tl_oldest(eng);
    return st;
}

/* Marks an entry whose issue failed half way: its events go back. */
static void tl_drop(vram_engine *eng, uint64_t index) {
    if (index < tl_oldest(eng))
        return;
    tl_entry *t = tl_at(eng, index);
    t->dropped = true;
    t->open = false;
}

/* ---------------------------------------------------------------- */
/* slots and copies                                                  */
/* ---------------------------------------------------------------- */

static int order_dist(const vram_engine *eng, int block) {
    int pos = eng->blocks[block].pos;
    if (pos < 0)
        return INT_MAX - 1; /* not in the order: first to go */
    return (pos - eng->cons + eng->m) % eng->m;
}

static int window(const vram_engine *eng) { return eng->nslots < eng->m ? eng->nslots : eng->m; }

/* A slot to load a block into: not in use, empty first, else the one whose
 * block is needed furthest in the future. Slots holding the next window
 * blocks are taken only when `steal` (an acquire out of order). */
static int pick_slot(const vram_engine *eng, bool steal) {
    int best = -1, best_dist = -1, w = window(eng);
    for (int r = 0; r < eng->nslots; r++) {
        int b = eng->slots[r].block;
        int d = INT_MAX;
        if (b >= 0) {
            if (eng->blocks[b].in_use)
                continue;
            d = order_dist(eng, b);
            if (d < w && !steal)
                continue;
        }
        if (d > best_dist) {
            best = r;
            best_dist = d;
        }
    }
    return best;
}

/* Paced copies move in about 16 pieces (1..64 MiB) with a delay after
 * each: fine enough to spread the load, few enough that the per-piece cost
 * of a host function on the stream stays small. */
static uint64_t pace_chunk(uint64_t bytes) {
    uint64_t c = vram_align_up(bytes / 16);
    const uint64_t lo = 1u << 20, hi = 64u << 20;
    return c < lo ? lo : c > hi ? hi : c;
}

/* Enqueues the copy of block b into slot r. Async: on the next copy stream
 * (round robin) behind freed[r] and the slot's previous copy; else on the
 * compute stream (the baseline: the copy blocks compute). */
static int issue_copy(vram_engine *eng, int b, int r, void *compute) {
    const vram_backend_ops *o = eng->be->ops;
    eblock *bl = &eng->blocks[b];
    eslot *sl = &eng->slots[r];
    if (vram_fault_hit(&eng->faults.copies, eng->faults.copy_at))
        return vram_fail(VRAM_E_DRIVER, "copy of block %d into slot %d: injected copy failure",
                         b, r);
    if (sl->block >= 0)
        eng->blocks[sl->block].slot = -1;
    sl->block = -1;
    int sidx = -1;
    void *s = compute;
    if (eng->async) {
        sidx = (int)(eng->rr++ % (unsigned)eng->nstreams);
        s = eng->streams[sidx];
    }
    uint64_t ti = 0;
    bool staged = bl->tier == VRAM_TIER_DISK || bl->staged;
    bool paced = eng->target > 0 && eng->target < 1 && eng->link_gbps > 0;
    /* Paced copies take the link one at a time, each with its pauses, as
     * the planner models it: copies on several streams would fill each
     * other's pauses and use more than the share. A staged copy waits
     * after its staging, which may still overlap another's DMA. */
    bool link_wait = paced && eng->link_done;
    int st = o->stream_wait(eng->be, s, sl->freed);
    if (st == VRAM_OK)
        st = o->stream_wait(eng->be, s, sl->copied);
    if (st == VRAM_OK && link_wait && !staged)
        st = o->stream_wait(eng->be, s, eng->link_done);
    if (st == VRAM_OK)
        st = tl_add(eng, compute, VRAM_EVENT_COPY, b, r, sidx, false, &ti);
    if (st != VRAM_OK)
        return st;
    tl_entry *t = tl_at(eng, ti);
    st = o->event_record(eng->be, t->e_start, s);
    const uint8_t *src = bl->host.p;
    int k = sidx < 0 ? 0 : sidx % (eng->nstaging ? eng->nstaging : 1);
    /* A changed model file fails this call, not only the staging later
     * (whose error would surface a call late, after this block's slot was
     * handed out). */
    if (st == VRAM_OK && bl->tier == VRAM_TIER_DISK && bl->from_files)
        st = check_block_files(eng, bl);
    if (st == VRAM_OK && staged) {
        /* Streams share the buffers: refill one only after its last DMA. */
        src = eng->staging[k].p;
        st = o->stream_wait(eng->be, s, eng->staging_free[k]);
        if (st == VRAM_OK)
            st = o->host_func(eng->be, s, stage_fn, &eng->jobs[b * eng->nstaging + k]);
        if (st == VRAM_OK && link_wait)
            st = o->stream_wait(eng->be, s, eng->link_done);
    }
    uint64_t chunk = paced ? pace_chunk(bl->bytes) : bl->bytes;
    /* Idle after each piece so the link is busy `target` of the time. */
    double gap = paced ? (double)chunk / (eng->link_gbps * 1e6) * (1 / eng->target - 1) : 0;
    for (uint64_t off = 0; st == VRAM_OK && off < bl->bytes; off += chunk) {
        uint64_t n = bl->bytes - off < chunk ? bl->bytes - off : chunk;
        if (paced && off > 0)
            st = o->pace(eng->be, s, gap);
        if (st == VRAM_OK)
            st = o->copy_h2d_async(eng->be, sl->dev + off, src + off, n, s);
    }
    if (st == VRAM_OK)
        st = o->event_record(eng->be, sl->copied, s);
    if (st == VRAM_OK)
        st = o->event_record(eng->be, bl->read_done, s);
    if (st == VRAM_OK && staged)
        st = o->event_record(eng->be, eng->staging_free[k], s);
    if (st == VRAM_OK)
        st = o->event_record(eng->be, t->e_end, s);
    /* The last piece's gap comes after the copy is marked done, so the
     * block is usable at once and the next copy on this stream still
     * keeps to the share. */
    if (st == VRAM_OK && paced) {
        uint64_t last = bl->bytes % chunk ? bl->bytes % chunk : chunk;
        st = o->pace(eng->be, s, gap * (double)last / (double)chunk);
    }
    if (st == VRAM_OK && link_wait)
        st = o->event_record(eng->be, eng->link_done, s);
    if (st != VRAM_OK) {
        tl_drop(eng, ti);
        return st;
    }
    sl->block = b;
    bl->slot = r;
    eng->bytes_copied += bl->bytes;
    eng->blocks_copied++;
    return VRAM_OK;
}

static void note_peak(vram_engine *eng) {
    int n = 0, w = window(eng);
    for (int r = 0; r < eng->nslots; r++) {
        int b = eng->slots[r].block;
        if (b >= 0 && (eng->blocks[b].in_use || order_dist(eng, b) < w))
            n++;
    }
    if (n > eng->peak_slots)
        eng->peak_slots = n;
}

/* Keeps the next min(K, streamed) blocks of the order in slots (async
 * copies only), then records the peak of slots in use: every change of
 * slot occupancy ends here. `compute`: the caller's stream (NULL when it
 * has none), for the stats base.
 * Once the pass's last streamed block is acquired it keeps only
 * vram_prefetch_across_pass of them: with slots reused, one slot stays
 * free, so a caller that synchronizes between passes (a timing loop, a
 * sampler step reading a value back) starts the next pass with its copy
 * engine busy at once instead of idling until the first streamed block's
 * compute frees a slot (the 4,590-token gap on the H100). Back to back, the
 * host issues that copy at the next pass's first acquire; when the host runs
 * ahead of the device (CUDA) the device sees no change. */
static int prefetch(vram_engine *eng, void *compute) {
    int st = VRAM_OK, w = !eng->async || eng->m == 0 ? 0
                          : eng->pass_end      ? vram_prefetch_across_pass(eng->nslots, eng->m)
                                               : window(eng);
    for (int i = 0; i < w && st == VRAM_OK; i++) {
        int b = eng->seq[(eng->cons + i) % eng->m];
        if (eng->blocks[b].slot >= 0)
            continue;
        int r = pick_slot(eng, false);
        if (r < 0)
            break;
        st = issue_copy(eng, b, r, compute);
    }
    note_peak(eng);
    return st;
}

/* ---------------------------------------------------------------- */
/* create / destroy                                                  */
/* ---------------------------------------------------------------- */

/* The engine's lock, with the backend usable on this thread (CUDA: its
 * context current); unlocking gives the thread back its own context. */
static int engine_lock(vram_engine *eng, void **ctx) {
    pthread_mutex_lock(&eng->mu);
    return eng->be->ops->enter(eng->be, ctx);
}

static void engine_unlock(vram_engine *eng, void *ctx) {
    eng->be->ops->leave(eng->be, ctx);
    pthread_mutex_unlock(&eng->mu);
}

void vram_engine_destroy(vram_engine *eng) {
    if (!eng)
        return;
    vram_backend *be = eng->be;
    void *ctx = NULL;
    /* Freed even when the context cannot be made current. */
    bool entered = be && be->ops->enter(be, &ctx) == VRAM_OK;
    if (be) {
        /* Counts can be set before their arrays when create fails half way. */
        for (int i = 0; eng->streams && i < eng->nstreams; i++)
            if (eng->streams[i])
                be->ops->stream_sync(be, eng->streams[i]);
        /* The caller's streams may still run released blocks: their release
         * events say when, and slots and events go only after (cuMemFree
         * only "may" synchronize). */
        tl_drain(eng);
        for (uint64_t i = tl_oldest(eng); i < eng->tl_next; i++)
            tl_release_events(eng, tl_at(eng, i));
        for (int i = 0; eng->streams && i < eng->nstreams; i++)
            if (eng->streams[i])
                be->ops->stream_destroy(be, eng->streams[i]);
        for (int r = 0; eng->slots && r < eng->nslots; r++) {
            be->ops->event_destroy(be, eng->slots[r].copied);
            be->ops->event_destroy(be, eng->slots[r].freed);
            be->ops->dev_free(be, eng->slots[r].dev, eng->slot_bytes);
        }
        for (int i = 0; i < eng->npool; i++)
            be->ops->event_destroy(be, eng->pool[i]);
        be->ops->event_destroy(be, eng->base);
        be->ops->event_destroy(be, eng->link_done);
        for (int b = 0; eng->blocks && b < eng->nblocks; b++) {
            be->ops->event_destroy(be, eng->blocks[b].read_done);
            be->ops->dev_free(be, eng->blocks[b].dev, eng->blocks[b].bytes);
            vram_arena_free(&eng->arena, &eng->blocks[b].host);
        }
        for (int k = 0; eng->staging && k < eng->nstaging; k++) {
            vram_arena_free(&eng->arena, &eng->staging[k]);
            if (eng->staging_free && eng->staging_free[k])
                be->ops->event_destroy(be, eng->staging_free[k]);
        }
        if (entered)
            be->ops->leave(be, ctx);
    }
    for (int b = 0; eng->blocks && b < eng->nblocks; b++)
        free(eng->blocks[b].tensors);
    for (int f = 0; f < eng->nfiles; f++) {
        if (eng->fds[f] >= 0)
            close(eng->fds[f]);
        if (eng->file_paths)
            free(eng->file_paths[f]);
    }
    free(eng->file_ids);
    free(eng->file_paths);
    if (eng->spill_fd >= 0)
        close(eng->spill_fd);
    free(eng->fds);
    free(eng->staging);
    free(eng->staging_free);
    free(eng->jobs);
    free(eng->pool);
    free(eng->tl);
    free(eng->order);
    free(eng->seq);
    free(eng->slots);
    free(eng->streams);
    free(eng->blocks);
    vram_backend_close(be);
    pthread_mutex_destroy(&eng->async_mu);
    pthread_mutex_destroy(&eng->mu);
    free(eng);
}

/* Streamed blocks of the order, and each one's position among them. */
static void rebuild_sequence(vram_engine *eng) {
    eng->m = 0;
    for (int b = 0; b < eng->nblocks; b++)
        eng->blocks[b].pos = -1;
    for (int i = 0; i < eng->norder; i++) {
        int b = eng->order[i];
        if (eng->blocks[b].placement == VRAM_PLACE_STREAMED) {
            eng->blocks[b].pos = eng->m;
            eng->seq[eng->m++] = b;
        }
    }
    eng->cons = 0;
    eng->pass_end = false;
}

/* Per block: placement, tier, sizes and the tensors' file ranges (a block's
 * tensors are contiguous in the layout, from its first_tensor). */
static int load_blocks(vram_engine *eng, const vram_plan *plan, const vram_layout *layout,
                       int file_count) {
    for (int b = 0; b < eng->nblocks; b++) {
        eblock *bl = &eng->blocks[b];
        vram_block_plan bp = {.size = sizeof bp};
        vram_block_info bi = {.size = sizeof bi};
        int st = vram_plan_block(plan, b, &bp);
        if (st == VRAM_OK)
            st = vram_layout_block(layout, b, &bi);
        if (st)
            return st;
        bl->placement = bp.placement;
        bl->tier = bp.placement == VRAM_PLACE_RESIDENT ? VRAM_TIER_DEVICE : bp.tier;
        bl->packed = bi.packed_bytes;
        bl->bytes = vram_align_up(bi.packed_bytes ? bi.packed_bytes : 1);
        bl->slot = -1;
        bl->pos = -1;
        if (bi.tensor_count > 0 &&
            !(bl->tensors = calloc((size_t)bi.tensor_count, sizeof *bl->tensors)))
            return vram_fail(VRAM_E_NOMEM, "tensor table of block %d", b);
        bl->from_files = bi.tensor_count > 0;
        for (int i = 0; i < bi.tensor_count; i++) {
            vram_tensor_info ti = {.size = sizeof ti};
            if ((st = vram_layout_tensor(layout, bi.first_tensor + i, &ti)))
                return st;
            if (ti.block != b || ti.block_offset + ti.nbytes > bl->packed)
                return vram_fail(VRAM_E_FORMAT,
                                 "tensor %s does not fit block %d's packed region (%llu bytes)",
                                 ti.name ? ti.name : "?", b, (unsigned long long)bl->packed);
            bl->tensors[bl->ntensors++] = (tensor_ref){ti.file_index, ti.file_offset, ti.nbytes,
                                                       ti.block_offset};
            if (ti.file_index < 0 || ti.file_index >= file_count)
                bl->from_files = false;
        }
    }
    return VRAM_OK;
}

static int open_files(vram_engine *eng, const vram_layout *layout, int count) {
    if (count <= 0)
        return VRAM_OK;
    eng->fds = malloc((size_t)count * sizeof *eng->fds);
    eng->file_ids = malloc((size_t)count * sizeof *eng->file_ids);
    eng->file_paths = calloc((size_t)count, sizeof *eng->file_paths);
    if (!eng->fds || !eng->file_ids || !eng->file_paths)
        return vram_fail(VRAM_E_NOMEM, "file table");
    for (int f = 0; f < count; f++)
        eng->fds[f] = -1;
    eng->nfiles = count;
    for (int f = 0; f < count; f++) {
        const char *path = vram_layout_file_path(layout, f);
        if (!path || (eng->fds[f] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return vram_fail(VRAM_E_IO, "cannot open model file %s: %s", path ? path : "(null)",
                             strerror(errno));
        if (!(eng->file_paths[f] = strdup(path)))
            return vram_fail(VRAM_E_NOMEM, "file table");
        eng->file_ids[f] = *vram_layout_file_id(layout, f);
        int st = check_file(eng, f);
        if (st)
            return st;
    }
    return VRAM_OK;
}

static int open_spill(vram_engine *eng, uint64_t bytes) {
    const char *dir = getenv("VRAM_SPILL_DIR");
    if (!dir || !*dir)
        dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/vram-spill-XXXXXX", dir);
    eng->spill_fd = mkostemp(path, O_CLOEXEC);
    if (eng->spill_fd < 0)
        return vram_fail(VRAM_E_IO, "cannot create a spill file in %s: %s", dir,
                         strerror(errno));
    unlink(path); /* gone with the last descriptor, even after a crash */
    if (ftruncate(eng->spill_fd, (off_t)bytes) != 0)
        return vram_fail(VRAM_E_IO, "cannot size the spill file in %s to %.1f MiB: %s", dir,
                         (double)bytes / VRAM_MIB, strerror(errno));
    return VRAM_OK;
}

/* Host regions, staging (disk tier, pageable blocks), spill file. */
static int setup_host(vram_engine *eng, const vram_layout *layout, int file_count) {
    uint64_t spill = 0, staging = 0;
    for (int b = 0; b < eng->nblocks; b++) {
        eblock *bl = &eng->blocks[b];
        if (bl->placement != VRAM_PLACE_STREAMED)
            continue;
        if (bl->tier == VRAM_TIER_DISK) {
            eng->disk_bytes += bl->bytes;
            staging = bl->bytes > staging ? bl->bytes : staging;
            if (!bl->from_files) {
                bl->spill_offset = spill;
                spill += bl->bytes;
            }
            continue;
        }
        int st = vram_arena_alloc(&eng->arena, bl->bytes, bl->tier == VRAM_TIER_PINNED,
                                  &bl->host);
        if (st)
            return st;
        /* With pinning on, copy streams stage pageable blocks through pinned
         * buffers (the planner holds them back from the pinned budget). */
        if (!bl->host.pinned && eng->async && eng->arena.pin_enabled) {
            bl->staged = true;
            staging = bl->bytes > staging ? bl->bytes : staging;
        }
    }
    int st = open_files(eng, layout, file_count);
    if (st == VRAM_OK && spill)
        st = open_spill(eng, spill);
    if (st || !staging)
        return st;
    eng->nstaging = vram_staging_buffers(eng->async ? eng->nstreams : 1);
    eng->staging = calloc((size_t)eng->nstaging, sizeof *eng->staging);
    eng->staging_free = calloc((size_t)eng->nstaging, sizeof *eng->staging_free);
    eng->jobs = calloc((size_t)eng->nblocks * (size_t)eng->nstaging, sizeof *eng->jobs);
    if (!eng->staging || !eng->staging_free || !eng->jobs)
        return vram_fail(VRAM_E_NOMEM, "staging tables");
    for (int k = 0; k < eng->nstaging; k++)
        if ((st = eng->be->ops->event_create(eng->be, false, &eng->staging_free[k])))
            return st;
    bool staging_pinned = true;
    for (int k = 0; k < eng->nstaging; k++) {
        if ((st = vram_arena_alloc(&eng->arena, staging, true, &eng->staging[k])))
            return st;
        staging_pinned = staging_pinned && eng->staging[k].pinned;
    }
    /* Staging a pageable block only pays through a pinned buffer; without
     * disk-tier blocks unpinned buffers would serve nothing. */
    if (!staging_pinned) {
        for (int b = 0; b < eng->nblocks; b++)
            eng->blocks[b].staged = false;
        if (!eng->disk_bytes) {
            for (int k = 0; k < eng->nstaging; k++) {
                vram_arena_free(&eng->arena, &eng->staging[k]);
                eng->be->ops->event_destroy(eng->be, eng->staging_free[k]);
            }
            free(eng->staging);
            free(eng->staging_free);
            free(eng->jobs);
            eng->staging = NULL;
            eng->staging_free = NULL;
            eng->jobs = NULL;
            eng->nstaging = 0;
            return VRAM_OK;
        }
    }
    for (int b = 0; b < eng->nblocks; b++)
        for (int k = 0; k < eng->nstaging; k++)
            eng->jobs[b * eng->nstaging + k] = (stage_job){eng, b, k};
    return VRAM_OK;
}

static int dev_alloc(vram_engine *eng, uint64_t bytes, uint64_t *addr) {
    if (vram_fault_hit(&eng->faults.allocs, eng->faults.alloc_at))
        return vram_fail(VRAM_E_DEVICE_NOMEM, "device allocation of %.1f MiB: injected failure",
                         (double)bytes / VRAM_MIB);
    int st = eng->be->ops->dev_alloc(eng->be, bytes, addr);
    if (st == VRAM_OK)
        eng->device_bytes += bytes;
    return st;
}

/* Slots, their events, resident placements. */
static int setup_device(vram_engine *eng) {
    const vram_backend_ops *o = eng->be->ops;
    uint64_t resident = 0;
    int nres = 0;
    for (int b = 0; b < eng->nblocks; b++)
        if (eng->blocks[b].placement == VRAM_PLACE_RESIDENT) {
            resident += eng->blocks[b].bytes;
            nres++;
        }
    int st = VRAM_OK;
    for (int r = 0; r < eng->nslots && st == VRAM_OK; r++) {
        eng->slots[r].block = -1;
        st = dev_alloc(eng, eng->slot_bytes, &eng->slots[r].dev);
        if (st == VRAM_OK)
            st = o->event_create(eng->be, false, &eng->slots[r].copied);
        if (st == VRAM_OK)
            st = o->event_create(eng->be, false, &eng->slots[r].freed);
    }
    for (int b = 0; b < eng->nblocks && st == VRAM_OK; b++)
        if (eng->blocks[b].placement == VRAM_PLACE_RESIDENT)
            st = dev_alloc(eng, eng->blocks[b].bytes, &eng->blocks[b].dev);
        else
            st = o->event_create(eng->be, false, &eng->blocks[b].read_done);
    if (st == VRAM_E_DEVICE_NOMEM) {
        char why[512];
        snprintf(why, sizeof why, "%s", vram_last_error());
        return vram_fail(st,
                         "the engine needs %.1f MiB of device memory (%d slot(s) of %.1f MiB, "
                         "%d resident block(s) of %.1f MiB in all): %s",
                         ((double)eng->slot_bytes * eng->nslots + (double)resident) / VRAM_MIB,
                         eng->nslots, (double)eng->slot_bytes / VRAM_MIB, nres,
                         (double)resident / VRAM_MIB, why);
    }
    return st;
}

static int setup_streams(vram_engine *eng) {
    const vram_backend_ops *o = eng->be->ops;
    int st = o->event_create(eng->be, true, &eng->base);
    if (!eng->async)
        return st;
    for (int i = 0; i < eng->nstreams && st == VRAM_OK; i++)
        st = o->stream_create(eng->be, &eng->streams[i]);
    if (st == VRAM_OK && eng->nstreams > 1)
        st = o->event_create(eng->be, false, &eng->link_done);
    return st;
}

static bool env_no_pin(void) {
    const char *v = getenv("VRAM_NO_PIN");
    return v && *v && strcmp(v, "0") != 0;
}

int vram_engine_create(const vram_plan *plan, const vram_layout *layout,
                       const vram_engine_options *opts, vram_engine **out) {
    if (!out)
        return vram_fail(VRAM_E_INVALID, "vram_engine_create: out is NULL");
    *out = NULL;
    if (!plan || !layout)
        return vram_fail(VRAM_E_INVALID, "vram_engine_create: plan and layout are required");
    vram_engine_options defaults;
    vram_engine_options_init(&defaults);
    if (!opts)
        opts = &defaults;
    VRAM_CHECK_STRUCT(opts, vram_engine_options);
    int st = check_options(opts);
    if (st)
        return st;
    vram_plan_summary sum = {.size = sizeof sum};
    vram_layout_info li = {.size = sizeof li};
    if ((st = vram_plan_get_summary(plan, &sum)) || (st = vram_layout_get_info(layout, &li)))
        return st;
    if (sum.block_count != li.block_count)
        return vram_fail(VRAM_E_INVALID, "the plan has %d blocks but the layout has %d",
                         sum.block_count, li.block_count);

    vram_engine *eng = calloc(1, sizeof *eng);
    if (!eng)
        return vram_fail(VRAM_E_NOMEM, "engine");
    pthread_mutex_init(&eng->mu, NULL);
    pthread_mutex_init(&eng->async_mu, NULL);
    eng->spill_fd = -1;
    eng->faults.alloc_at = opts->fail_alloc_at;
    eng->faults.pin_at = opts->fail_pin_at;
    eng->faults.copy_at = opts->fail_copy_at;
    eng->nblocks = li.block_count;
    eng->async = opts->async_copies >= 0 ? opts->async_copies == 1 : sum.async_copies;
    bool pin = opts->pin_memory >= 0 ? opts->pin_memory == 1 : sum.pinned_memory;
    if (env_no_pin())
        pin = false;
    eng->nstreams = opts->copy_streams > 0 ? opts->copy_streams : sum.copy_streams;
    if (eng->nstreams < 1)
        eng->nstreams = 1;
    if (eng->nstreams > MAX_STREAMS)
        eng->nstreams = MAX_STREAMS;
    eng->target = sum.bandwidth_target;

    st = vram_backend_open(opts->backend, opts->device, opts->host_device_bytes,
                           opts->host_bandwidth_gbps, &eng->be);
    void *ctx = NULL;
    bool entered = st == VRAM_OK && (st = eng->be->ops->enter(eng->be, &ctx)) == VRAM_OK;
    if (st)
        goto fail;
    eng->link_gbps = eng->be->link_gbps > 0 ? eng->be->link_gbps : sum.h2d_gbps;
    vram_arena_init(&eng->arena, eng->be, &eng->faults, pin, sum.pinned_budget_bytes);

    size_t nb = (size_t)(eng->nblocks > 0 ? eng->nblocks : 1);
    eng->blocks = calloc(nb, sizeof *eng->blocks);
    eng->order = malloc(nb * sizeof *eng->order);
    eng->seq = malloc(nb * sizeof *eng->seq);
    eng->tl = calloc(TIMELINE_CAP, sizeof *eng->tl);
    eng->streams = calloc(MAX_STREAMS, sizeof *eng->streams);
    eng->pool = malloc(POOL_CAP * sizeof *eng->pool);
    if (!eng->blocks || !eng->order || !eng->seq || !eng->tl || !eng->streams || !eng->pool) {
        st = vram_fail(VRAM_E_NOMEM, "engine tables for %d blocks", eng->nblocks);
        goto fail;
    }
    if ((st = load_blocks(eng, plan, layout, li.file_count)))
        goto fail;
    int streamed = 0;
    for (int b = 0; b < eng->nblocks; b++) {
        eng->order[b] = b;
        if (eng->blocks[b].placement == VRAM_PLACE_STREAMED) {
            streamed++;
            if (eng->blocks[b].bytes > eng->slot_bytes)
                eng->slot_bytes = eng->blocks[b].bytes;
        }
    }
    eng->norder = eng->nblocks;
    int k = opts->slot_count > 0 ? opts->slot_count : sum.slot_count;
    eng->nslots = streamed == 0 ? 0 : k < 1 ? 1 : k > streamed ? streamed : k;
    if (eng->nslots && !(eng->slots = calloc((size_t)eng->nslots, sizeof *eng->slots))) {
        st = vram_fail(VRAM_E_NOMEM, "slot table");
        goto fail;
    }
    rebuild_sequence(eng);
    if ((st = setup_host(eng, layout, li.file_count)) || (st = setup_device(eng)) ||
        (st = setup_streams(eng)))
        goto fail;
    eng->be->ops->leave(eng->be, ctx);
    *out = eng;
    return VRAM_OK;
fail: {
    char why[1024];
    snprintf(why, sizeof why, "%s", vram_last_error());
    if (entered)
        eng->be->ops->leave(eng->be, ctx);
    vram_engine_destroy(eng);
    return vram_fail(st, "%s", why);
}
}

/* ---------------------------------------------------------------- */
/* data in                                                           */
/* ---------------------------------------------------------------- */

void *vram_engine_host_ptr(vram_engine *eng, int block) {
    if (!eng || block < 0 || block >= eng->nblocks)
        return NULL;
    return eng->blocks[block].host.p;
}

uint64_t vram_engine_block_bytes(const vram_engine *eng, int block) {
    if (!eng || block < 0 || block >= eng->nblocks)
        return 0;
    return eng->blocks[block].packed;
}

/* Before new bytes go into a streamed block's source: let the copies still
 * reading it finish (one may be queued behind compute even after its slot
 * went to another block) and forget the slot's now stale contents. */
static int invalidate(vram_engine *eng, int b) {
    eblock *bl = &eng->blocks[b];
    if (bl->in_use)
        return vram_fail(VRAM_E_STATE, "block %d is acquired; release it before writing it", b);
    int st = eng->be->ops->event_sync(eng->be, bl->read_done);
    if (bl->slot >= 0) {
        eng->slots[bl->slot].block = -1;
        bl->slot = -1;
    }
    return st;
}

/* [addr, addr + n) lies within [base, base + size), without overflow. */
static bool in_range(uint64_t base, uint64_t size, uint64_t addr, uint64_t n) {
    return addr >= base && addr - base <= size && n <= size - (addr - base);
}

static int check_block(const vram_engine *eng, int block) {
    if (block < 0 || block >= eng->nblocks)
        return vram_fail(VRAM_E_RANGE, "block %d out of range (the plan has %d blocks)", block,
                         eng->nblocks);
    return VRAM_OK;
}

static int write_locked(vram_engine *eng, int block, uint64_t offset, const void *src,
                        uint64_t n) {
    int st = check_block(eng, block);
    if (st)
        return st;
    eblock *bl = &eng->blocks[block];
    if (!in_range(0, bl->packed, offset, n))
        return vram_fail(VRAM_E_RANGE, "write of %llu bytes at %llu past block %d's %llu bytes",
                         (unsigned long long)n, (unsigned long long)offset, block,
                         (unsigned long long)bl->packed);
    if (n == 0)
        return VRAM_OK;
    if (bl->placement == VRAM_PLACE_RESIDENT) {
        if (vram_fault_hit(&eng->faults.copies, eng->faults.copy_at))
            return vram_fail(VRAM_E_DRIVER, "write to resident block %d: injected copy failure",
                             block);
        return eng->be->ops->copy_h2d(eng->be, bl->dev + offset, src, n);
    }
    if (bl->tier == VRAM_TIER_DISK && bl->from_files)
        return vram_fail(VRAM_E_UNSUPPORTED,
                         "block %d is on the disk tier and read from the model file", block);
    if ((st = invalidate(eng, block)))
        return st;
    if (bl->tier == VRAM_TIER_DISK)
        return pwrite_full(eng->spill_fd, src, n, bl->spill_offset + offset);
    memcpy((uint8_t *)bl->host.p + offset, src, (size_t)n);
    return VRAM_OK;
}

int vram_engine_write(vram_engine *eng, int block, uint64_t offset, const void *src,
                      uint64_t n) {
    if (!eng || (!src && n))
        return vram_fail(VRAM_E_INVALID, "vram_engine_write: engine or source is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    if (st == VRAM_OK)
        st = write_locked(eng, block, offset, src, n);
    engine_unlock(eng, ctx);
    return st;
}

int vram_engine_invalidate(vram_engine *eng, int block) {
    if (!eng)
        return vram_fail(VRAM_E_INVALID, "vram_engine_invalidate: engine is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    if (st == VRAM_OK && (st = check_block(eng, block)) == VRAM_OK &&
        eng->blocks[block].placement == VRAM_PLACE_STREAMED)
        st = invalidate(eng, block);
    engine_unlock(eng, ctx);
    return st;
}

int vram_engine_load_files(vram_engine *eng) {
    if (!eng)
        return vram_fail(VRAM_E_INVALID, "vram_engine_load_files: engine is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    if (st == VRAM_OK && eng->nfiles == 0)
        st = vram_fail(VRAM_E_STATE, "the layout has no files (made from sizes, blocks or the "
                                     "catalog); fill blocks with vram_engine_write");
    uint8_t *buf = NULL;
    for (int b = 0; b < eng->nblocks && st == VRAM_OK; b++) {
        eblock *bl = &eng->blocks[b];
        if (!bl->from_files || bl->tier == VRAM_TIER_DISK)
            continue; /* disk tier: read at each copy */
        if (bl->placement == VRAM_PLACE_RESIDENT) {
            free(buf);
            if (!(buf = calloc(1, (size_t)bl->bytes))) {
                st = vram_fail(VRAM_E_NOMEM, "read buffer for block %d", b);
                break;
            }
            st = read_block(eng, b, buf);
            if (st == VRAM_OK)
                st = write_locked(eng, b, 0, buf, bl->packed);
        } else if ((st = invalidate(eng, b)) == VRAM_OK) {
            st = read_block(eng, b, bl->host.p);
        }
    }
    free(buf);
    engine_unlock(eng, ctx);
    return st;
}

/* ---------------------------------------------------------------- */
/* the hot path                                                      */
/* ---------------------------------------------------------------- */

static int acquire_locked(vram_engine *eng, int block, void *stream, uint64_t *addr) {
    const vram_backend_ops *o = eng->be->ops;
    int st = check_block(eng, block);
    if (st || (st = check_async(eng)))
        return st;
    eblock *bl = &eng->blocks[block];
    if (bl->in_use)
        return vram_fail(VRAM_E_STATE, "block %d is already acquired", block);
    eng->running = true;
    tl_poll(eng, 2);
    bool streamed = bl->placement == VRAM_PLACE_STREAMED;
    uint64_t ti = 0;
    if ((st = tl_add(eng, stream, VRAM_EVENT_COMPUTE, block, -1, -1, streamed, &ti)))
        return st;
    tl_entry *t = tl_at(eng, ti);
    if (!streamed) {
        st = o->event_record(eng->be, t->e_start, stream);
        *addr = bl->dev;
    } else {
        st = o->event_record(eng->be, t->e_wait, stream);
        if (st == VRAM_OK && bl->slot < 0) {
            int r = pick_slot(eng, true);
            st = r < 0 ? vram_fail(VRAM_E_STATE,
                                   "all %d slots hold acquired blocks; release one before "
                                   "acquiring block %d",
                                   eng->nslots, block)
                       : issue_copy(eng, block, r, stream);
        }
        if (st == VRAM_OK) {
            bl->in_use = true;
            if (bl->pos >= 0)
                eng->cons = (bl->pos + 1) % eng->m;
            eng->pass_end = bl->pos == eng->m - 1;
            st = prefetch(eng, stream);
        }
        if (st == VRAM_OK)
            st = o->stream_wait(eng->be, stream, eng->slots[bl->slot].copied);
        if (st == VRAM_OK)
            st = o->event_record(eng->be, t->e_start, stream);
        if (st == VRAM_OK) {
            t->ev.slot = bl->slot;
            *addr = eng->slots[bl->slot].dev;
        }
    }
    if (st != VRAM_OK) {
        bl->in_use = false;
        tl_drop(eng, ti);
        return st;
    }
    t->open = true;
    bl->in_use = true;
    bl->tl = ti;
    eng->acquires++;
    return VRAM_OK;
}

int vram_engine_acquire(vram_engine *eng, int block, void *stream, uint64_t *device_addr) {
    if (!eng || !device_addr)
        return vram_fail(VRAM_E_INVALID, "vram_engine_acquire: engine or device_addr is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    if (st == VRAM_OK)
        st = acquire_locked(eng, block, stream, device_addr);
    engine_unlock(eng, ctx);
    return st;
}

static int release_locked(vram_engine *eng, int block, void *stream) {
    const vram_backend_ops *o = eng->be->ops;
    int st = check_block(eng, block);
    if (st)
        return st;
    eblock *bl = &eng->blocks[block];
    if (!bl->in_use)
        return vram_fail(VRAM_E_STATE, "block %d is not acquired", block);
    if (bl->placement == VRAM_PLACE_STREAMED)
        st = o->event_record(eng->be, eng->slots[bl->slot].freed, stream);
    if (st)
        return st;
    bl->in_use = false;
    eng->releases++;
    if (bl->tl >= tl_oldest(eng) && bl->tl < eng->tl_next) {
        tl_entry *t = tl_at(eng, bl->tl);
        if (t->open && o->event_record(eng->be, t->e_end, stream) != VRAM_OK) {
            t->dropped = true;
        }
        t->open = false;
    }
    if ((st = prefetch(eng, stream)) == VRAM_OK)
        st = check_async(eng);
    tl_poll(eng, 2);
    return st;
}

int vram_engine_release(vram_engine *eng, int block, void *stream) {
    if (!eng)
        return vram_fail(VRAM_E_INVALID, "vram_engine_release: engine is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    if (st == VRAM_OK)
        st = release_locked(eng, block, stream);
    engine_unlock(eng, ctx);
    return st;
}

int vram_engine_synchronize(vram_engine *eng) {
    if (!eng)
        return vram_fail(VRAM_E_INVALID, "vram_engine_synchronize: engine is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    for (int i = 0; i < eng->nstreams && st == VRAM_OK; i++)
        if (eng->streams[i])
            st = eng->be->ops->stream_sync(eng->be, eng->streams[i]);
    if (st == VRAM_OK)
        st = check_async(eng);
    engine_unlock(eng, ctx);
    return st;
}

int vram_engine_set_order(vram_engine *eng, const int *blocks, int count) {
    if (!eng || !blocks || count <= 0)
        return vram_fail(VRAM_E_INVALID, "vram_engine_set_order: need an engine and 1 or more "
                                         "block indices");
    if (count > eng->nblocks)
        return vram_fail(VRAM_E_RANGE, "order of %d blocks, the plan has %d", count,
                         eng->nblocks);
    /* Checked before the engine is touched: a refused order changes nothing. */
    bool *seen = calloc((size_t)eng->nblocks, sizeof *seen);
    if (!seen)
        return vram_fail(VRAM_E_NOMEM, "vram_engine_set_order: out of memory");
    int st = VRAM_OK;
    for (int i = 0; i < count && st == VRAM_OK; i++) {
        int b = blocks[i];
        if (b < 0 || b >= eng->nblocks)
            st = vram_fail(VRAM_E_RANGE, "order[%d] = %d out of range (0..%d)", i, b,
                           eng->nblocks - 1);
        else if (seen[b])
            st = vram_fail(VRAM_E_INVALID, "order lists block %d twice", b);
        else
            seen[b] = true;
    }
    free(seen);
    if (st)
        return st;
    void *ctx;
    if ((st = engine_lock(eng, &ctx)) == VRAM_OK) {
        memcpy(eng->order, blocks, (size_t)count * sizeof *blocks);
        eng->norder = count;
        rebuild_sequence(eng);
        if (eng->running)
            st = prefetch(eng, NULL);
    }
    engine_unlock(eng, ctx);
    return st;
}

int vram_engine_read_device(vram_engine *eng, uint64_t device_addr, void *dst, uint64_t n) {
    if (!eng || (!dst && n))
        return vram_fail(VRAM_E_INVALID, "vram_engine_read_device: engine or dst is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    bool found = false;
    for (int r = 0; r < eng->nslots && st == VRAM_OK && !found; r++) {
        eslot *sl = &eng->slots[r];
        if (in_range(sl->dev, eng->slot_bytes, device_addr, n)) {
            found = true;
            st = eng->be->ops->event_sync(eng->be, sl->copied);
        }
    }
    for (int b = 0; b < eng->nblocks && !found; b++) {
        eblock *bl = &eng->blocks[b];
        found = bl->dev && in_range(bl->dev, bl->bytes, device_addr, n);
    }
    if (st == VRAM_OK && !found)
        st = vram_fail(VRAM_E_RANGE, "device range 0x%llx + %llu is not the engine's",
                       (unsigned long long)device_addr, (unsigned long long)n);
    if (st == VRAM_OK && n)
        st = eng->be->ops->copy_d2h(eng->be, dst, device_addr, n);
    engine_unlock(eng, ctx);
    return st;
}

/* ---------------------------------------------------------------- */
/* stats and timeline                                                */
/* ---------------------------------------------------------------- */

typedef struct span {
    double a, b;
} span;

static int span_cmp(const void *x, const void *y) {
    double a = ((const span *)x)->a, b = ((const span *)y)->a;
    return (a > b) - (a < b);
}

/* Sorts and merges in place; returns the count of disjoint spans. */
static size_t span_union(span *v, size_t n) {
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, span_cmp);
    size_t k = 0;
    for (size_t i = 1; i < n; i++) {
        if (v[i].a <= v[k].b) {
            if (v[i].b > v[k].b)
                v[k].b = v[i].b;
        } else {
            v[++k] = v[i];
        }
    }
    return k + 1;
}

static double span_total(const span *v, size_t n) {
    double t = 0;
    for (size_t i = 0; i < n; i++)
        t += v[i].b - v[i].a;
    return t;
}

/* Time covered by both unions (two sorted, disjoint lists). */
static double span_overlap(const span *x, size_t nx, const span *y, size_t ny) {
    double t = 0;
    size_t i = 0, j = 0;
    while (i < nx && j < ny) {
        double a = x[i].a > y[j].a ? x[i].a : y[j].a;
        double b = x[i].b < y[j].b ? x[i].b : y[j].b;
        if (b > a)
            t += b - a;
        if (x[i].b < y[j].b)
            i++;
        else
            j++;
    }
    return t;
}

/* Copy busy time and its share hidden behind compute, over the timeline. */
static int copy_overlap(vram_engine *eng, double *busy, double *ratio) {
    *busy = 0;
    *ratio = 0;
    size_t cap = (size_t)(eng->tl_next - tl_oldest(eng));
    if (cap == 0)
        return VRAM_OK;
    span *c = malloc(cap * sizeof *c), *p = malloc(cap * sizeof *p);
    if (!c || !p) {
        free(c);
        free(p);
        return vram_fail(VRAM_E_NOMEM, "stats buffers");
    }
    size_t nc = 0, np = 0;
    for (uint64_t i = tl_oldest(eng); i < eng->tl_next; i++) {
        const tl_entry *t = tl_at(eng, i);
        if (!t->resolved || t->dropped)
            continue;
        span s = {t->ev.start_ms, t->ev.end_ms};
        if (t->ev.kind == VRAM_EVENT_COPY)
            c[nc++] = s;
        else
            p[np++] = s;
    }
    nc = span_union(c, nc);
    np = span_union(p, np);
    *busy = span_total(c, nc);
    *ratio = *busy > 0 ? span_overlap(c, nc, p, np) / *busy : 0;
    free(c);
    free(p);
    return VRAM_OK;
}

int vram_engine_get_stats(vram_engine *eng, vram_engine_stats *out) {
    if (!eng)
        return vram_fail(VRAM_E_INVALID, "vram_engine_get_stats: engine is NULL");
    VRAM_CHECK_STRUCT(out, vram_engine_stats);
    uint32_t size = out->size;
    memset(out, 0, sizeof *out);
    out->size = size;
    void *ctx;
    int st = engine_lock(eng, &ctx);
    if (st == VRAM_OK)
        st = tl_drain(eng);
    if (st == VRAM_OK)
        st = copy_overlap(eng, &out->copy_busy_ms, &out->overlap_ratio);
    out->backend = eng->be->kind;
    out->bytes_copied = eng->bytes_copied;
    out->blocks_copied = eng->blocks_copied;
    out->acquires = eng->acquires;
    out->releases = eng->releases;
    out->compute_wait_ms = eng->compute_wait_ms;
    out->peak_slots_in_use = eng->peak_slots;
    out->slot_count = eng->nslots;
    out->copy_streams = eng->async ? eng->nstreams : 0;
    out->pinned_bytes = eng->arena.pinned;
    out->pageable_bytes = eng->arena.pageable;
    out->disk_bytes = eng->disk_bytes;
    out->device_bytes = eng->device_bytes;
    out->async_copies = eng->async;
    out->elapsed_ms = eng->base_live ? vram_now_ms() - eng->t_first : 0;
    engine_unlock(eng, ctx);
    return st;
}

int vram_engine_reset_stats(vram_engine *eng) {
    if (!eng)
        return vram_fail(VRAM_E_INVALID, "vram_engine_reset_stats: engine is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    if (st == VRAM_OK)
        st = tl_drain(eng);
    /* Open COMPUTE entries (blocks acquired now) are dropped: they would
     * have started before the new base. */
    for (uint64_t i = tl_oldest(eng); i < eng->tl_next; i++)
        tl_release_events(eng, tl_at(eng, i));
    memset(eng->tl, 0, TIMELINE_CAP * sizeof *eng->tl);
    eng->tl_next = eng->tl_unres = 0;
    for (int b = 0; b < eng->nblocks; b++)
        eng->blocks[b].tl = UINT64_MAX;
    eng->base_live = false;
    eng->bytes_copied = eng->blocks_copied = eng->acquires = eng->releases = 0;
    eng->compute_wait_ms = 0;
    eng->peak_slots = 0;
    engine_unlock(eng, ctx);
    return st;
}

int vram_engine_timeline(vram_engine *eng, vram_timeline_event *out, size_t cap,
                         size_t *count) {
    if (!eng || !count || (!out && cap))
        return vram_fail(VRAM_E_INVALID, "vram_engine_timeline: engine, out or count is NULL");
    void *ctx;
    int st = engine_lock(eng, &ctx);
    if (st == VRAM_OK)
        st = tl_drain(eng);
    size_t n = 0;
    for (uint64_t i = tl_oldest(eng); i < eng->tl_next; i++) {
        const tl_entry *t = tl_at(eng, i);
        if (!t->resolved || t->dropped)
            continue;
        if (n < cap)
            out[n] = t->ev;
        n++;
    }
    *count = n;
    engine_unlock(eng, ctx);
    return st;
}

vram_backend *vram_engine_get_backend(vram_engine *eng) { return eng ? eng->be : NULL; }
