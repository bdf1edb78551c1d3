/* internal.h - helpers shared by libvram's source files (not installed). */
#ifndef VRAM_INTERNAL_H
#define VRAM_INTERNAL_H

#include "vram.h"

#include <stdarg.h>

#define VRAM_MIB (1024.0 * 1024.0)
#define VRAM_ALIGN 256u

#if defined(__GNUC__)
#define VRAM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VRAM_PRINTF(a, b)
#endif

/* Records the detail of a failure for vram_last_error() and returns
 * `status`, so call sites read: return vram_fail(VRAM_E_INVALID, "...") */
int vram_fail(int status, const char *fmt, ...) VRAM_PRINTF(2, 3);
void vram_clear_error(void);

/* Logs through the user's callback (or stderr). */
void vram_log(int level, const char *fmt, ...) VRAM_PRINTF(2, 3);

/* Round up to a multiple of VRAM_ALIGN. */
static inline uint64_t vram_align_up(uint64_t n) {
    return (n + VRAM_ALIGN - 1) & ~(uint64_t)(VRAM_ALIGN - 1);
}

/* Staging buffers (disk reads, pageable copies) the engine keeps for a
 * number of async copy streams: two shared in turn when there are several
 * (one filled while the other's DMA runs; more add nothing on one link).
 * The planner reserves the same number. */
static inline int vram_staging_buffers(int copy_streams) { return copy_streams > 1 ? 2 : 1; }

/* Streamed blocks the engine keeps copied ahead once a pass's last streamed
 * block is acquired (the next pass's first ones): every one when they all
 * fit in the slots, else one slot fewer than there are (at least one), so a
 * pass after a synchronize starts with a free slot. The planner's step
 * simulation assumes the same number. */
static inline int vram_prefetch_across_pass(int slots, int streamed) {
    return streamed <= slots ? streamed : slots > 1 ? slots - 1 : 1;
}

/* The DRAM this process can have: MemTotal, or the cgroup limit when one
 * applies and is lower (stats and the planner both count from this). */
static inline uint64_t vram_dram_usable_total(const vram_dram_info *d) {
    return d->cgroup_known && d->cgroup_limit_bytes < d->total_bytes ? d->cgroup_limit_bytes
                                                                     : d->total_bytes;
}

/* Checks a versioned struct: non-NULL and size at least `min`. */
#define VRAM_CHECK_STRUCT(p, type)                                                     \
    do {                                                                               \
        if (!(p) || (p)->size < sizeof(type))                                          \
            return vram_fail(VRAM_E_INVALID, #type " is NULL or its size field is %u " \
                                                   "(expected %zu)",                   \
                             (p) ? (unsigned)(p)->size : 0u, sizeof(type));            \
    } while (0)

/* Growable string buffer for explanations and JSON-free text. */
typedef struct vram_strbuf {
    char *data;
    size_t len, cap;
    bool failed; /* an allocation failed; data is then unusable */
} vram_strbuf;

void vram_strbuf_printf(vram_strbuf *b, const char *fmt, ...) VRAM_PRINTF(2, 3);
/* Hands the buffer's text to the caller (NULL and VRAM_E_NOMEM if failed). */
int vram_strbuf_finish(vram_strbuf *b, char **out);

/* Prints `root` (indented when `pretty`) and deletes it; the text goes to
 * plain malloc memory, which vram_free releases, since cJSON's allocator may
 * be hooked by another user of the shared libcjson in the process. A NULL
 * root or !complete (an add failed) is VRAM_E_NOMEM naming `what`. */
struct cJSON;
int vram_json_print(struct cJSON *root, bool complete, bool pretty, const char *what, char **out);

/* cJSON_ParseWithLengthOpts (no null terminator needed; `end`, if not NULL,
 * gets where parsing stopped or failed), serialised: cJSON writes every
 * parse's error position to a global, which concurrent parses race on. */
struct cJSON *vram_json_parse(const char *text, size_t len, const char **end);

/* pread of exactly `n` bytes at `off` (retries short reads and EINTR);
 * VRAM_E_IO naming `what` and the offset otherwise. */
int vram_pread_full(int fd, void *dst, uint64_t n, uint64_t off, const char *what);

/* A file's identity as its header was read: a layout keeps one per model
 * file, and the engine and the layout's readers refuse a file that no
 * longer matches, where a replaced or rewritten checkpoint would give
 * other bytes at the old offsets. */
typedef struct vram_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns; /* ctime: a rewrite that puts mtime back (cp -p) */
} vram_file_id;

/* Opens a regular file read-only, with its identity (size included):
 * VRAM_E_NOT_FOUND when it is missing, VRAM_E_IO when it cannot be opened
 * or is not a regular file. */
int vram_open_regular(const char *path, int *fd, vram_file_id *id);
/* The model file (open as fd, or by path when fd < 0) against its
 * identity then: VRAM_E_STATE naming it when it changed, VRAM_E_IO when it
 * cannot be looked at. */
int vram_file_check(int fd, const char *path, const vram_file_id *then);
/* The identity of a layout's file `file_index` (NULL: none recorded). */
const vram_file_id *vram_layout_file_id(const vram_layout *L, int file_index);
/* Reads a regular file of at most `max` bytes whole, NUL-terminated (free
 * *text); larger is VRAM_E_FORMAT. */
int vram_read_file(const char *path, size_t max, char **text, size_t *len);

/* Sleeps `ns` nanoseconds, resuming after signals. */
void vram_sleep_ns(uint64_t ns);

/* Monotonic milliseconds. */
double vram_now_ms(void);

/* Case-insensitive compare ignoring spaces, dashes and underscores. */
bool vram_name_matches(const char *a, const char *b);

#endif
