/* arena.c - host regions for streamed blocks: one aligned region per block,
 * page-locked (registered with the backend) within the pinned budget and
 * pageable beyond it, when pinning is off or when it fails. Registering
 * memory we allocated (rather than a driver allocation) means a failed pin
 * keeps the same region as pageable: no second allocation, no copy. */
#define _GNU_SOURCE
#include "backend.h"

#include <stdlib.h>
#include <string.h>

void vram_arena_init(vram_arena *a, vram_backend *be, vram_faults *faults, bool pin,
                     uint64_t pinned_budget) {
    memset(a, 0, sizeof *a);
    a->be = be;
    a->faults = faults;
    a->pin_enabled = pin;
    a->budget = pinned_budget;
}

int vram_arena_alloc(vram_arena *a, uint64_t bytes, bool want_pin, vram_host_region *out) {
    memset(out, 0, sizeof *out);
    uint64_t size = vram_align_up(bytes ? bytes : 1);
    if (a->faults && vram_fault_hit(&a->faults->allocs, a->faults->alloc_at))
        return vram_fail(VRAM_E_NOMEM, "host region of %.1f MiB: injected allocation failure",
                         (double)size / VRAM_MIB);
    void *p = NULL;
    if (size > SIZE_MAX || posix_memalign(&p, VRAM_ALIGN, (size_t)size) != 0)
        return vram_fail(VRAM_E_NOMEM, "cannot allocate a host region of %.1f MiB",
                         (double)size / VRAM_MIB);
    /* Zeroing also faults the pages in, which registration needs anyway. */
    memset(p, 0, (size_t)size);
    out->p = p;
    out->bytes = size;
    if (want_pin && a->pin_enabled && a->pinned + size <= a->budget) {
        int st = VRAM_OK;
        if (a->faults && vram_fault_hit(&a->faults->pins, a->faults->pin_at))
            st = vram_fail(VRAM_E_DRIVER, "injected pin failure");
        else
            st = a->be->ops->host_register(a->be, p, size);
        if (st == VRAM_OK) {
            out->pinned = true;
            a->pinned += size;
            return VRAM_OK;
        }
        if (a->pin_failures++ == 0)
            vram_log(VRAM_LOG_WARN,
                     "pinning a %.1f MiB host region failed (%s); using pageable memory, "
                     "copies will be slower",
                     (double)size / VRAM_MIB, vram_last_error());
        vram_clear_error();
    }
    a->pageable += size;
    return VRAM_OK;
}

void vram_arena_free(vram_arena *a, vram_host_region *r) {
    if (!r->p)
        return;
    if (r->pinned) {
        a->be->ops->host_unregister(a->be, r->p);
        a->pinned -= r->bytes;
    } else {
        a->pageable -= r->bytes;
    }
    free(r->p);
    memset(r, 0, sizeof *r);
}
