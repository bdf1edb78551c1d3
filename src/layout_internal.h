/* layout_internal.h - the layout object and its builder, shared by layout.c,
 * safetensors.c and catalog.c (not installed). */
#ifndef VRAM_LAYOUT_INTERNAL_H
#define VRAM_LAYOUT_INTERNAL_H

#include "internal.h"

/* Names and the tensors that carry a heap name are owned here; blocks and
 * the name index are made by layout_finish. */
struct vram_layout {
    vram_layout_info info;
    vram_tensor_info *tensors; /* blocks in order (packing order), then the rest */
    int tensor_cap;
    vram_block_info *blocks;
    char **files;         /* absolute: an engine opens them again later */
    vram_file_id *file_ids; /* each file's as its header was read */
    int file_cap;
    int *by_name; /* tensor indices sorted by name, for lookups */
};

/* An empty layout to fill with layout_add_file / layout_add_tensor. */
vram_layout *layout_new(void);
/* Appends a file path (copied, made absolute); *index gets its file_index.
 * The reader records its identity in file_ids[*index]. */
int layout_add_file(vram_layout *L, const char *path, int *index);
/* Appends a tensor; the name is copied and nbytes computed from the shape
 * (the caller checked that it does not overflow). */
int layout_add_tensor(vram_layout *L, const char *name, vram_dtype dtype, int ndim,
                      const int64_t *shape, int file_index, uint64_t file_offset);
/* Classifies names into blocks and roles, orders and packs the tensors,
 * rejects duplicate names and fills the info. `source` names the input in
 * messages. expert_count of the info is 1; callers may change it after. */
int layout_finish(vram_layout *L, const char *name, const char *source);

/* Index of the tensor named exactly `name`, or -1 (no error recorded). */
int layout_find_exact(const vram_layout *L, const char *name);

/* numel * dtype size, false on overflow or unknown dtype. */
bool layout_tensor_bytes(vram_dtype dtype, int ndim, const int64_t *shape, uint64_t *nbytes);

/* Parses one safetensors header (the JSON text, `len` bytes) into L.
 * data_start: absolute offset of the data section (8 + N); data_size: its
 * size, or UINT64_MAX when unknown (offsets then checked only against each
 * other). `source` names the file in messages. */
int safetensors_parse_json(vram_layout *L, const char *json, size_t len, uint64_t data_start,
                           uint64_t data_size, int file_index, const char *source);

#define SAFETENSORS_MAX_HEADER (100u * 1024u * 1024u)

#endif
