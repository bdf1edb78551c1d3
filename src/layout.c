/* layout.c - model layouts: the object, name classification, block packing,
 * synthetic layouts, accessors and JSON. Parsing lives in safetensors.c and
 * the built-in models in catalog.c. */
#define _GNU_SOURCE
#include "layout_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- building ---- */

vram_layout *layout_new(void) {
    vram_layout *L = calloc(1, sizeof *L);
    if (L) {
        L->info.size = sizeof L->info;
        L->info.expert_count = 1;
    }
    return L;
}

void vram_layout_free(vram_layout *L) {
    if (!L)
        return;
    for (int i = 0; i < L->info.tensor_count; i++)
        free((char *)L->tensors[i].name);
    for (int i = 0; i < L->info.file_count; i++)
        free(L->files[i]);
    free(L->tensors);
    free(L->blocks);
    free(L->files);
    free(L->file_ids);
    free(L->by_name);
    free(L);
}

int layout_add_file(vram_layout *L, const char *path, int *index) {
    if (L->info.file_count == L->file_cap) {
        int cap = L->file_cap ? L->file_cap * 2 : 4;
        char **p = realloc(L->files, (size_t)cap * sizeof *p);
        if (p)
            L->files = p;
        vram_file_id *ids = p ? realloc(L->file_ids, (size_t)cap * sizeof *ids) : NULL;
        if (!ids)
            return vram_fail(VRAM_E_NOMEM, "out of memory adding file %s", path);
        L->file_ids = ids;
        L->file_cap = cap;
    }
    /* Relative to the directory of now, not of when an engine opens it. */
    bool relative = path[0] != '/';
    char *cwd = relative ? getcwd(NULL, 0) : NULL;
    if (relative && !cwd)
        return vram_fail(VRAM_E_IO, "cannot make %s absolute: getcwd: %s", path,
                         strerror(errno));
    size_t n = (relative ? strlen(cwd) + 1 : 0) + strlen(path) + 1;
    char *copy = malloc(n);
    if (copy)
        snprintf(copy, n, "%s%s%s", relative ? cwd : "", relative ? "/" : "", path);
    free(cwd);
    if (!copy)
        return vram_fail(VRAM_E_NOMEM, "out of memory adding file %s", path);
    *index = L->info.file_count;
    L->file_ids[*index] = (vram_file_id){0};
    L->files[L->info.file_count++] = copy;
    return VRAM_OK;
}

int vram_layout_check_file(const vram_layout *L, int file_index) {
    if (!L)
        return vram_fail(VRAM_E_INVALID, "vram_layout_check_file: layout is NULL");
    if (file_index < 0 || file_index >= L->info.file_count)
        return vram_fail(VRAM_E_RANGE, "file %d, the layout has %d", file_index,
                         L->info.file_count);
    return vram_file_check(-1, L->files[file_index], &L->file_ids[file_index]);
}

const vram_file_id *vram_layout_file_id(const vram_layout *L, int file_index) {
    if (!L || file_index < 0 || file_index >= L->info.file_count)
        return NULL;
    return &L->file_ids[file_index];
}

bool layout_tensor_bytes(vram_dtype dtype, int ndim, const int64_t *shape, uint64_t *nbytes) {
    uint64_t n = vram_dtype_size(dtype);
    if (n == 0 || ndim < 0 || ndim > 8)
        return false;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n))
            return false;
    *nbytes = n;
    return true;
}

int layout_add_tensor(vram_layout *L, const char *name, vram_dtype dtype, int ndim,
                      const int64_t *shape, int file_index, uint64_t file_offset) {
    if (L->info.tensor_count == L->tensor_cap) {
        if (L->tensor_cap > INT_MAX / 2)
            return vram_fail(VRAM_E_RANGE, "too many tensors");
        int cap = L->tensor_cap ? L->tensor_cap * 2 : 64;
        vram_tensor_info *p = realloc(L->tensors, (size_t)cap * sizeof *p);
        if (!p)
            return vram_fail(VRAM_E_NOMEM, "out of memory adding tensor %.200s", name);
        L->tensors = p;
        L->tensor_cap = cap;
    }
    vram_tensor_info t = {.size = sizeof t, .dtype = dtype, .ndim = ndim,
                          .file_index = file_index, .file_offset = file_offset,
                          .block = -1, .role = VRAM_ROLE_OTHER};
    memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
    if (!layout_tensor_bytes(dtype, ndim, shape, &t.nbytes))
        return vram_fail(VRAM_E_FORMAT, "tensor %.200s: size overflows", name);
    t.name = strdup(name);
    if (!t.name)
        return vram_fail(VRAM_E_NOMEM, "out of memory adding tensor %.200s", name);
    L->tensors[L->info.tensor_count++] = t;
    return VRAM_OK;
}

/* ---- names ---- */

static const char *const model_prefixes[] = {"model.diffusion_model.", "diffusion_model."};

static const struct {
    const char *prefix;
    int group;
} block_prefixes[] = {
    {"blocks.", VRAM_GROUP_BLOCKS},
    {"transformer_blocks.", VRAM_GROUP_BLOCKS},
    {"vace_blocks.", VRAM_GROUP_VACE},
    {"encoder.block.", VRAM_GROUP_BLOCKS}, /* T5 text encoders (umt5-xxl) */
};

typedef struct name_class {
    const char *stripped; /* without the ComfyUI prefix */
    bool prefixed;
    int group; /* -1: not in a block */
    int group_index;
    const char *inner; /* the name inside its block */
    int role;
} name_class;

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void classify(const char *name, name_class *c) {
    *c = (name_class){.stripped = name, .group = -1, .role = VRAM_ROLE_OTHER};
    for (size_t i = 0; i < sizeof model_prefixes / sizeof *model_prefixes; i++)
        if (starts_with(name, model_prefixes[i])) {
            c->stripped = name + strlen(model_prefixes[i]);
            c->prefixed = true;
            break;
        }
    for (size_t i = 0; i < sizeof block_prefixes / sizeof *block_prefixes; i++) {
        if (!starts_with(c->stripped, block_prefixes[i].prefix))
            continue;
        const char *p = c->stripped + strlen(block_prefixes[i].prefix);
        int n = 0, digits = 0;
        /* Nine digits keep N in an int; longer runs are not block indices. */
        for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
            n = n * 10 + (*p - '0');
        /* A module list names its children 0, 1, ...: "blocks.01." is some
         * other container's key, and counting it as block 1 would merge it
         * with "blocks.1.". */
        bool leading_zero = digits > 1 && p[-digits] == '0';
        if (digits == 0 || *p != '.' || leading_zero)
            continue;
        c->group = block_prefixes[i].group;
        c->group_index = n;
        c->inner = p + 1;
        c->role = VRAM_ROLE_BLOCK;
        return;
    }
    if (starts_with(c->stripped, "text_embedding.") ||
        starts_with(c->stripped, "condition_embedder.text_embedder."))
        c->role = VRAM_ROLE_TEXT_EMB;
    else if (starts_with(c->stripped, "img_emb.") ||
             starts_with(c->stripped, "condition_embedder.image_embedder."))
        c->role = VRAM_ROLE_IMAGE_EMB;
}

/* Where dim and ffn_dim are read, by naming: the attention query weight
 * [out, dim] and the first FFN weight [ffn, dim] inside a block. */
static const struct {
    const char *query, *ffn;
    int head_dim;
} arch_names[] = {
    {"self_attn.q.weight", "ffn.0.weight", 128},                               /* Wan */
    {"attn1.to_q.weight", "ffn.net.0.proj.weight", 128},                       /* diffusers */
    {"layer.0.SelfAttention.q.weight", "layer.1.DenseReluDense.wi_0.weight", 64}, /* T5 */
};

/* ---- finishing ---- */

static int block_sort_key(const vram_tensor_info *t) { return t->block < 0 ? INT_MAX : t->block; }

/* Blocks in order, then the rest; in each, file order, ties by name. */
static int cmp_tensor_order(const void *pa, const void *pb) {
    const vram_tensor_info *a = pa, *b = pb;
    int ka = block_sort_key(a), kb = block_sort_key(b);
    if (ka != kb)
        return ka < kb ? -1 : 1;
    if (a->file_index != b->file_index)
        return a->file_index < b->file_index ? -1 : 1;
    if (a->file_offset != b->file_offset)
        return a->file_offset < b->file_offset ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int cmp_u64(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

/* qsort has no context argument; the name index sorts pointers instead. */
static int cmp_name_ptr(const void *pa, const void *pb) {
    const vram_tensor_info *a = *(vram_tensor_info *const *)pa;
    const vram_tensor_info *b = *(vram_tensor_info *const *)pb;
    return strcmp(a->name, b->name);
}

static uint64_t block_key(int group, int group_index) {
    return ((uint64_t)group << 32) | (uint32_t)group_index;
}

static void set_name(vram_layout_info *info, const char *name) {
    snprintf(info->name, sizeof info->name, "%s", name);
}

/* Assigns block indices (BLOCKS by N, then VACE by N) and roles; counts the
 * naming hints. */
static int assign_blocks(vram_layout *L, const char *source, bool *prefixed, bool *diffusers,
                         bool *t5) {
    int n = L->info.tensor_count;
    /* keys[i]: tensor i's block key (UINT64_MAX in the rest); then the
     * sorted distinct keys, whose positions are the block indices. */
    uint64_t *keys = malloc((size_t)(n ? 2 * n : 1) * sizeof *keys), *sorted = keys + n;
    if (!keys)
        return vram_fail(VRAM_E_NOMEM, "%s: out of memory classifying tensors", source);
    int nkeys = 0;
    for (int i = 0; i < n; i++) {
        name_class c;
        classify(L->tensors[i].name, &c);
        *prefixed |= c.prefixed;
        *diffusers |= strstr(c.stripped, "attn1.to_q") || starts_with(c.stripped, "condition_embedder.");
        *t5 |= c.group >= 0 && starts_with(c.stripped, "encoder.block.");
        L->tensors[i].role = c.role;
        keys[i] = c.group >= 0 ? block_key(c.group, c.group_index) : UINT64_MAX;
        if (c.group >= 0)
            sorted[nkeys++] = keys[i];
    }
    qsort(sorted, (size_t)nkeys, sizeof *sorted, cmp_u64);
    int nblocks = 0;
    for (int i = 0; i < nkeys; i++)
        if (nblocks == 0 || sorted[nblocks - 1] != sorted[i])
            sorted[nblocks++] = sorted[i];
    L->blocks = calloc((size_t)(nblocks ? nblocks : 1), sizeof *L->blocks);
    if (!L->blocks) {
        free(keys);
        return vram_fail(VRAM_E_NOMEM, "%s: out of memory for %d blocks", source, nblocks);
    }
    for (int b = 0; b < nblocks; b++) {
        vram_block_info *bi = &L->blocks[b];
        bi->size = sizeof *bi;
        bi->index = b;
        bi->group = (int)(sorted[b] >> 32);
        bi->group_index = (int)(uint32_t)sorted[b];
        bi->first_tensor = -1;
        L->info.group_block_count[bi->group]++;
    }
    for (int i = 0; i < n; i++) {
        if (keys[i] == UINT64_MAX)
            continue;
        const uint64_t *hit = bsearch(&keys[i], sorted, (size_t)nblocks, sizeof *sorted, cmp_u64);
        L->tensors[i].block = (int)(hit - sorted);
    }
    free(keys);
    L->info.block_count = nblocks;
    return VRAM_OK;
}

static int overflow(const char *source) {
    return vram_fail(VRAM_E_FORMAT, "%s: tensor sizes add up past 2^64 bytes", source);
}

/* Packs each block (256-aligned offsets in order) and sums the info. */
static int pack_and_sum(vram_layout *L, const char *source) {
    vram_layout_info *info = &L->info;
    uint64_t dtype_bytes[VRAM_DTYPE_COUNT] = {0};
    for (int i = 0; i < info->tensor_count; i++) {
        vram_tensor_info *t = &L->tensors[i];
        uint64_t params = t->nbytes / vram_dtype_size(t->dtype);
        if (__builtin_add_overflow(info->total_bytes, t->nbytes, &info->total_bytes) ||
            __builtin_add_overflow(dtype_bytes[t->dtype], t->nbytes, &dtype_bytes[t->dtype]))
            return overflow(source);
        info->total_params += params;
        if (t->block < 0) {
            info->rest_bytes += t->nbytes;
            if (t->role == VRAM_ROLE_TEXT_EMB)
                info->text_emb_bytes += t->nbytes;
            else if (t->role == VRAM_ROLE_IMAGE_EMB)
                info->image_emb_bytes += t->nbytes;
            continue;
        }
        vram_block_info *b = &L->blocks[t->block];
        if (b->first_tensor < 0)
            b->first_tensor = i;
        b->tensor_count++;
        b->params += params;
        if (t->ndim == 2)
            b->linear_params += params;
        b->nbytes += t->nbytes;
        t->block_offset = vram_align_up(b->packed_bytes);
        if (t->block_offset < b->packed_bytes ||
            __builtin_add_overflow(t->block_offset, t->nbytes, &b->packed_bytes))
            return overflow(source);
        info->block_bytes += t->nbytes;
    }
    for (int b = 0; b < info->block_count; b++) {
        uint64_t packed = vram_align_up(L->blocks[b].packed_bytes);
        if (packed < L->blocks[b].packed_bytes)
            return overflow(source);
        L->blocks[b].packed_bytes = packed;
    }
    info->main_dtype = VRAM_DTYPE_UNKNOWN;
    for (int d = 1; d < VRAM_DTYPE_COUNT; d++)
        if (dtype_bytes[d] > dtype_bytes[info->main_dtype])
            info->main_dtype = (vram_dtype)d;
    return VRAM_OK;
}

/* dim / ffn_dim / heads from the first BLOCKS block that names them. */
static void read_architecture(vram_layout *L) {
    vram_layout_info *info = &L->info;
    for (size_t a = 0; a < sizeof arch_names / sizeof *arch_names; a++) {
        int dim = 0, ffn = 0;
        for (int i = 0; i < info->tensor_count && !(dim && ffn); i++) {
            const vram_tensor_info *t = &L->tensors[i];
            if (t->block < 0 || L->blocks[t->block].group != VRAM_GROUP_BLOCKS || t->ndim != 2 ||
                t->shape[0] > INT_MAX || t->shape[1] > INT_MAX)
                continue;
            name_class c;
            classify(t->name, &c);
            if (!dim && strcmp(c.inner, arch_names[a].query) == 0)
                dim = (int)t->shape[1];
            else if (!ffn && strcmp(c.inner, arch_names[a].ffn) == 0)
                ffn = (int)t->shape[0];
        }
        if (dim) {
            info->dim = dim;
            info->ffn_dim = ffn;
            info->heads = dim / arch_names[a].head_dim;
            return;
        }
    }
}

static int index_names(vram_layout *L, const char *source) {
    int n = L->info.tensor_count;
    vram_tensor_info **ptrs = malloc((size_t)(n ? n : 1) * sizeof *ptrs);
    L->by_name = malloc((size_t)(n ? n : 1) * sizeof *L->by_name);
    if (!ptrs || !L->by_name) {
        free(ptrs);
        return vram_fail(VRAM_E_NOMEM, "%s: out of memory indexing %d tensors", source, n);
    }
    for (int i = 0; i < n; i++)
        ptrs[i] = &L->tensors[i];
    qsort(ptrs, (size_t)n, sizeof *ptrs, cmp_name_ptr);
    for (int i = 0; i < n; i++) {
        L->by_name[i] = (int)(ptrs[i] - L->tensors);
        if (i > 0 && strcmp(ptrs[i - 1]->name, ptrs[i]->name) == 0) {
            const vram_tensor_info *a = ptrs[i - 1], *b = ptrs[i];
            int st = a->file_index != b->file_index && a->file_index >= 0 && b->file_index >= 0
                         ? vram_fail(VRAM_E_FORMAT, "%s: tensor \"%.200s\" appears twice (in %s and %s)",
                                     source, a->name, L->files[a->file_index],
                                     L->files[b->file_index])
                         : vram_fail(VRAM_E_FORMAT, "%s: duplicate tensor name \"%.200s\"", source,
                                     a->name);
            free(ptrs);
            return st;
        }
    }
    free(ptrs);
    return VRAM_OK;
}

int layout_finish(vram_layout *L, const char *name, const char *source) {
    bool prefixed = false, diffusers = false, t5 = false;
    int st = assign_blocks(L, source, &prefixed, &diffusers, &t5);
    if (st)
        return st;
    if (L->info.tensor_count) /* tensors is NULL for an empty header */
        qsort(L->tensors, (size_t)L->info.tensor_count, sizeof *L->tensors, cmp_tensor_order);
    if ((st = index_names(L, source)) || (st = pack_and_sum(L, source)))
        return st;
    read_architecture(L);
    set_name(&L->info, name);
    snprintf(L->info.naming, sizeof L->info.naming, "%s",
             prefixed ? "comfyui" : diffusers ? "diffusers" : t5 ? "t5" : "wan");
    return VRAM_OK;
}

/* ---- synthetic layouts ---- */

#define MAX_SYNTHETIC_BLOCKS 4096

static int synthetic(const uint64_t *bytes, uint64_t each, int count, uint64_t rest, int dim,
                     const char *name, vram_layout **out) {
    vram_layout *L = layout_new();
    if (!L || !(L->blocks = calloc((size_t)count, sizeof *L->blocks)) ||
        !(L->by_name = malloc(sizeof *L->by_name))) {
        vram_layout_free(L);
        return vram_fail(VRAM_E_NOMEM, "out of memory for a %d-block layout", count);
    }
    vram_layout_info *info = &L->info;
    for (int b = 0; b < count; b++) {
        uint64_t n = bytes ? bytes[b] : each;
        L->blocks[b] = (vram_block_info){.size = sizeof(vram_block_info), .index = b,
                                         .group = VRAM_GROUP_BLOCKS, .group_index = b,
                                         .nbytes = n, .packed_bytes = vram_align_up(n),
                                         .first_tensor = -1};
        info->block_bytes += n;
    }
    set_name(info, name);
    snprintf(info->naming, sizeof info->naming, "synthetic");
    info->block_count = info->group_block_count[VRAM_GROUP_BLOCKS] = count;
    info->rest_bytes = rest;
    info->total_bytes = info->block_bytes + rest;
    info->main_dtype = VRAM_DTYPE_UNKNOWN;
    info->dim = dim;
    info->heads = dim / 128;
    *out = L;
    return VRAM_OK;
}

int vram_layout_from_size(double model_size_mb, int num_layers, vram_layout **out) {
    if (!out)
        return vram_fail(VRAM_E_INVALID, "vram_layout_from_size: out is NULL");
    *out = NULL;
    /* 16 TiB: far above any model, low enough that bytes stay exact. */
    if (!(model_size_mb > 0 && model_size_mb <= 16.0 * 1024 * 1024))
        return vram_fail(VRAM_E_RANGE, "model size %g MB is out of range (0, 16777216]",
                         model_size_mb);
    if (num_layers < 1 || num_layers > MAX_SYNTHETIC_BLOCKS)
        return vram_fail(VRAM_E_RANGE, "layer count %d is out of range 1..%d", num_layers,
                         MAX_SYNTHETIC_BLOCKS);
    uint64_t each = (uint64_t)llround(model_size_mb * VRAM_MIB / num_layers);
    return synthetic(NULL, each, num_layers, 0, 0, "size", out);
}

int vram_layout_from_blocks(const uint64_t *block_bytes, int block_count, uint64_t rest_bytes,
                            int dim, vram_layout **out) {
    if (!out)
        return vram_fail(VRAM_E_INVALID, "vram_layout_from_blocks: out is NULL");
    *out = NULL;
    if (block_count < 1 || block_count > MAX_SYNTHETIC_BLOCKS)
        return vram_fail(VRAM_E_RANGE, "block count %d is out of range 1..%d", block_count,
                         MAX_SYNTHETIC_BLOCKS);
    if (!block_bytes)
        return vram_fail(VRAM_E_INVALID, "vram_layout_from_blocks: block_bytes is NULL");
    if (dim < 0)
        return vram_fail(VRAM_E_RANGE, "dim %d is negative", dim);
    /* 2^50 bytes per part: sums of the rest and 4096 blocks (alignment
     * included) stay far below 2^64. */
    const uint64_t limit = (uint64_t)1 << 50;
    if (rest_bytes > limit)
        return vram_fail(VRAM_E_RANGE, "rest_bytes %" PRIu64 " is above 2^50", rest_bytes);
    for (int b = 0; b < block_count; b++)
        if (block_bytes[b] > limit)
            return vram_fail(VRAM_E_RANGE, "block %d: %" PRIu64 " bytes is above 2^50", b,
                             block_bytes[b]);
    return synthetic(block_bytes, 0, block_count, rest_bytes, dim, "blocks", out);
}

/* ---- accessors ---- */

int vram_layout_set_name(vram_layout *L, const char *name) {
    if (!L || !name || !*name)
        return vram_fail(VRAM_E_INVALID, "vram_layout_set_name: layout or name is NULL or empty");
    set_name(&L->info, name);
    return VRAM_OK;
}

int vram_layout_get_info(const vram_layout *L, vram_layout_info *out) {
    if (!L)
        return vram_fail(VRAM_E_INVALID, "vram_layout_get_info: layout is NULL");
    VRAM_CHECK_STRUCT(out, vram_layout_info);
    *out = L->info;
    return VRAM_OK;
}

int vram_layout_block(const vram_layout *L, int index, vram_block_info *out) {
    if (!L)
        return vram_fail(VRAM_E_INVALID, "vram_layout_block: layout is NULL");
    VRAM_CHECK_STRUCT(out, vram_block_info);
    if (index < 0 || index >= L->info.block_count)
        return vram_fail(VRAM_E_RANGE, "block %d is out of range 0..%d", index,
                         L->info.block_count - 1);
    *out = L->blocks[index];
    return VRAM_OK;
}

int vram_layout_tensor(const vram_layout *L, int index, vram_tensor_info *out) {
    if (!L)
        return vram_fail(VRAM_E_INVALID, "vram_layout_tensor: layout is NULL");
    VRAM_CHECK_STRUCT(out, vram_tensor_info);
    if (index < 0 || index >= L->info.tensor_count)
        return vram_fail(VRAM_E_RANGE, "tensor %d is out of range 0..%d", index,
                         L->info.tensor_count - 1);
    *out = L->tensors[index];
    return VRAM_OK;
}

int layout_find_exact(const vram_layout *L, const char *name) {
    int lo = 0, hi = L->info.tensor_count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(L->tensors[L->by_name[mid]].name, name);
        if (c == 0)
            return L->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int vram_layout_find_tensor(const vram_layout *L, const char *name) {
    if (!L || !name)
        return vram_fail(VRAM_E_INVALID, "vram_layout_find_tensor: layout or name is NULL");
    int i = layout_find_exact(L, name);
    /* A module's own name ("blocks.0.x") also finds the ComfyUI-prefixed one. */
    for (size_t p = 0; i < 0 && p < sizeof model_prefixes / sizeof *model_prefixes; p++) {
        char buf[512];
        if (snprintf(buf, sizeof buf, "%s%s", model_prefixes[p], name) < (int)sizeof buf)
            i = layout_find_exact(L, buf);
    }
    if (i < 0)
        return vram_fail(VRAM_E_NOT_FOUND, "no tensor named \"%.200s\" in %s", name, L->info.name);
    return i;
}

const char *vram_layout_file_path(const vram_layout *L, int file_index) {
    if (!L || file_index < 0 || file_index >= L->info.file_count)
        return NULL;
    return L->files[file_index];
}

/* ---- JSON ---- */

static const char *group_name(int g) { return g == VRAM_GROUP_VACE ? "vace" : "blocks"; }

static const char *role_name(int r) {
    static const char *const names[] = {"block", "other", "text_emb", "image_emb"};
    return r >= 0 && r < 4 ? names[r] : "other";
}

/* Each add reports failure, so one flag tells whether the JSON is whole. */
static bool jnum(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v); }
static bool jstr(cJSON *o, const char *k, const char *v) { return cJSON_AddStringToObject(o, k, v); }

static bool info_json(const vram_layout *L, cJSON *o) {
    const vram_layout_info *i = &L->info;
    cJSON *groups = cJSON_AddObjectToObject(o, "group_block_count");
    cJSON *files = cJSON_AddArrayToObject(o, "files");
    bool ok = groups && files && jstr(o, "name", i->name) && jstr(o, "naming", i->naming) &&
              jnum(o, "block_count", i->block_count) &&
              jnum(groups, "blocks", i->group_block_count[VRAM_GROUP_BLOCKS]) &&
              jnum(groups, "vace", i->group_block_count[VRAM_GROUP_VACE]) &&
              jnum(o, "tensor_count", i->tensor_count) && jnum(o, "file_count", i->file_count) &&
              jnum(o, "total_params", (double)i->total_params) &&
              jnum(o, "total_bytes", (double)i->total_bytes) &&
              jnum(o, "block_bytes", (double)i->block_bytes) &&
              jnum(o, "rest_bytes", (double)i->rest_bytes) &&
              jnum(o, "text_emb_bytes", (double)i->text_emb_bytes) &&
              jnum(o, "image_emb_bytes", (double)i->image_emb_bytes) &&
              jstr(o, "main_dtype", vram_dtype_name(i->main_dtype)) && jnum(o, "dim", i->dim) &&
              jnum(o, "ffn_dim", i->ffn_dim) && jnum(o, "heads", i->heads) &&
              jnum(o, "expert_count", i->expert_count);
    for (int f = 0; ok && f < i->file_count; f++) {
        cJSON *s = cJSON_CreateString(L->files[f]);
        ok = s && cJSON_AddItemToArray(files, s);
        if (!ok)
            cJSON_Delete(s);
    }
    return ok;
}

static bool block_json(const vram_block_info *b, cJSON *o) {
    return jnum(o, "index", b->index) && jstr(o, "group", group_name(b->group)) &&
           jnum(o, "group_index", b->group_index) && jnum(o, "tensor_count", b->tensor_count) &&
           jnum(o, "first_tensor", b->first_tensor) && jnum(o, "params", (double)b->params) &&
           jnum(o, "bytes", (double)b->nbytes) && jnum(o, "packed_bytes", (double)b->packed_bytes) &&
           jnum(o, "linear_params", (double)b->linear_params);
}

static bool tensor_json(const vram_tensor_info *t, cJSON *o) {
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    bool ok = shape && jstr(o, "name", t->name) && jstr(o, "dtype", vram_dtype_name(t->dtype)) &&
              jnum(o, "nbytes", (double)t->nbytes) && jnum(o, "file_index", t->file_index) &&
              jnum(o, "file_offset", (double)t->file_offset) && jnum(o, "block", t->block) &&
              jstr(o, "role", role_name(t->role)) &&
              jnum(o, "block_offset", (double)t->block_offset);
    for (int d = 0; ok && d < t->ndim; d++) {
        cJSON *n = cJSON_CreateNumber((double)t->shape[d]);
        ok = n && cJSON_AddItemToArray(shape, n);
        if (!ok)
            cJSON_Delete(n);
    }
    return ok;
}

/* Adds an object to `array`; NULL when out of memory. */
static cJSON *add_object(cJSON *array) {
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddItemToArray(array, o)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int vram_layout_json(const vram_layout *L, bool with_tensors, char **out) {
    if (!L || !out)
        return vram_fail(VRAM_E_INVALID, "vram_layout_json: layout or out is NULL");
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *info = root ? cJSON_AddObjectToObject(root, "info") : NULL;
    cJSON *blocks = root ? cJSON_AddArrayToObject(root, "blocks") : NULL;
    bool ok = info && blocks && info_json(L, info);
    for (int b = 0; ok && b < L->info.block_count; b++) {
        cJSON *o = add_object(blocks);
        ok = o && block_json(&L->blocks[b], o);
    }
    if (ok && with_tensors) {
        cJSON *tensors = cJSON_AddArrayToObject(root, "tensors");
        ok = tensors != NULL;
        for (int i = 0; ok && i < L->info.tensor_count; i++) {
            cJSON *o = add_object(tensors);
            ok = o && tensor_json(&L->tensors[i], o);
        }
    }
    return vram_json_print(root, ok, false, "the layout JSON", out);
}
