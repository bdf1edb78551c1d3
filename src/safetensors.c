/* safetensors.c - safetensors headers and sharded *.safetensors.index.json.
 * Reads the 8-byte length and the JSON header only (pread), never weights.
 * Every field is checked as hostile input; each failure names the file. */
#define _GNU_SOURCE
#include "layout_internal.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_EXACT_JSON_INT 9007199254740992.0 /* 2^53: doubles are exact below */

static vram_dtype dtype_exact(const char *s) {
    for (int t = 1; t < VRAM_DTYPE_COUNT; t++)
        if (strcmp(s, vram_dtype_name((vram_dtype)t)) == 0)
            return (vram_dtype)t;
    return VRAM_DTYPE_UNKNOWN;
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool json_u64(const cJSON *n, uint64_t *v) {
    if (!cJSON_IsNumber(n) || !(n->valuedouble >= 0 && n->valuedouble <= MAX_EXACT_JSON_INT))
        return false;
    *v = (uint64_t)n->valuedouble;
    return (double)*v == n->valuedouble;
}

typedef struct span {
    uint64_t begin, end;
    const char *name;
} span;

static int cmp_span(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    return a->end < b->end ? -1 : a->end > b->end;
}

/* Non-empty data ranges of one file must not share a byte. */
static int check_overlaps(span *spans, size_t n, const char *source) {
    qsort(spans, n, sizeof *spans, cmp_span);
    const span *last = NULL; /* the non-empty span reaching furthest so far */
    for (size_t i = 0; i < n; i++) {
        if (spans[i].begin == spans[i].end)
            continue;
        if (last && spans[i].begin < last->end)
            return vram_fail(VRAM_E_FORMAT,
                             "%s: tensors \"%.200s\" [%" PRIu64 ", %" PRIu64 ") and \"%.200s\" [%" PRIu64
                             ", %" PRIu64 ") overlap",
                             source, last->name, last->begin, last->end, spans[i].name,
                             spans[i].begin, spans[i].end);
        if (!last || spans[i].end > last->end)
            last = &spans[i];
    }
    return VRAM_OK;
}

/* One tensor entry {"dtype", "shape", "data_offsets"}; adds it to L. */
static int parse_entry(vram_layout *L, const cJSON *e, uint64_t data_start, uint64_t data_size,
                       int file_index, const char *source, span *sp) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return vram_fail(VRAM_E_FORMAT, "%s: tensor \"%.200s\": entry is not an object", source, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd))
        return vram_fail(VRAM_E_FORMAT, "%s: tensor \"%.200s\": dtype is missing or not a string",
                         source, name);
    vram_dtype dtype = dtype_exact(jd->valuestring);
    if (dtype == VRAM_DTYPE_UNKNOWN)
        return vram_fail(VRAM_E_UNSUPPORTED, "%s: tensor \"%.200s\": unknown dtype \"%.40s\"", source,
                         name, jd->valuestring);
    if (!cJSON_IsArray(js))
        return vram_fail(VRAM_E_FORMAT, "%s: tensor \"%.200s\": shape is missing or not an array",
                         source, name);
    int ndim = cJSON_GetArraySize(js);
    if (ndim > 8)
        return vram_fail(VRAM_E_UNSUPPORTED, "%s: tensor \"%.200s\" has %d dimensions (at most 8)",
                         source, name, ndim);
    int64_t shape[8];
    int d = 0;
    for (const cJSON *x = js->child; x; x = x->next, d++) {
        uint64_t v;
        if (!json_u64(x, &v))
            return vram_fail(VRAM_E_FORMAT,
                             "%s: tensor \"%.200s\": shape is not an array of non-negative integers",
                             source, name);
        shape[d] = (int64_t)v;
    }
    uint64_t nbytes, begin, end;
    if (!layout_tensor_bytes(dtype, ndim, shape, &nbytes))
        return vram_fail(VRAM_E_FORMAT, "%s: tensor \"%.200s\": element count times dtype size overflows",
                         source, name);
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_u64(jo->child, &begin) ||
        !json_u64(jo->child->next, &end))
        return vram_fail(VRAM_E_FORMAT,
                         "%s: tensor \"%.200s\": data_offsets is not [begin, end] of non-negative integers",
                         source, name);
    if (end < begin || end - begin != nbytes)
        return vram_fail(VRAM_E_FORMAT,
                         "%s: tensor \"%.200s\": data_offsets [%" PRIu64 ", %" PRIu64
                         ") do not hold the %" PRIu64 " bytes its shape and dtype need",
                         source, name, begin, end, nbytes);
    if (end > data_size)
        return vram_fail(VRAM_E_FORMAT,
                         "%s: tensor \"%.200s\": data [%" PRIu64 ", %" PRIu64
                         ") lies beyond the data section (%" PRIu64 " bytes)",
                         source, name, begin, end, data_size);
    *sp = (span){begin, end, name};
    return layout_add_tensor(L, name, dtype, ndim, shape, file_index, data_start + begin);
}

/* One JSON object filling json[0, len), white space and NUL padding aside
 * (writers pad a header to 8 bytes); anything else after it is damage. */
static int parse_json_object(const char *json, size_t len, const char *source, const char *what,
                             cJSON **out) {
    const char *end = NULL;
    cJSON *root = vram_json_parse(json, len, &end);
    *out = NULL;
    if (!root) {
        size_t at = end ? (size_t)(end - json) : 0;
        return vram_fail(VRAM_E_FORMAT, "%s: %s is not valid JSON (error at byte %zu of %zu)",
                         source, what, at, len);
    }
    for (const char *p = end; p < json + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
            cJSON_Delete(root);
            return vram_fail(VRAM_E_FORMAT, "%s: unexpected bytes after the JSON %s (at byte %zu)",
                             source, what, (size_t)(p - json));
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vram_fail(VRAM_E_FORMAT, "%s: %s JSON is not an object", source, what);
    }
    *out = root;
    return VRAM_OK;
}

int safetensors_parse_json(vram_layout *L, const char *json, size_t len, uint64_t data_start,
                           uint64_t data_size, int file_index, const char *source) {
    cJSON *root;
    int st = parse_json_object(json, len, source, "header", &root);
    if (st)
        return st;
    size_t count = (size_t)cJSON_GetArraySize(root);
    span *spans = malloc((count ? count : 1) * sizeof *spans);
    if (!spans) {
        cJSON_Delete(root);
        return vram_fail(VRAM_E_NOMEM, "%s: out of memory for %zu header entries", source, count);
    }
    size_t n = 0;
    st = VRAM_OK;
    for (const cJSON *e = root->child; e && !st; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e))
                st = vram_fail(VRAM_E_FORMAT, "%s: __metadata__ is not an object", source);
            continue;
        }
        st = parse_entry(L, e, data_start, data_size, file_index, source, &spans[n]);
        n += st == VRAM_OK;
    }
    if (!st)
        st = check_overlaps(spans, n, source);
    free(spans);
    cJSON_Delete(root);
    return st;
}

/* ---- files ---- */

static int check_header_length(uint64_t n, uint64_t avail, const char *source) {
    if (n > SAFETENSORS_MAX_HEADER)
        return vram_fail(VRAM_E_FORMAT, "%s: header length %" PRIu64 " is above the 100 MiB limit",
                         source, n);
    if (n > avail)
        return vram_fail(VRAM_E_FORMAT,
                         "%s: truncated: the header length is %" PRIu64 " but only %" PRIu64
                         " bytes follow it",
                         source, n, avail);
    return VRAM_OK;
}

static uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Reads one safetensors file's header into L as file `file_index`. */
static int read_safetensors(vram_layout *L, const char *path, int file_index) {
    int fd;
    /* The name the engine will open (absolute), `path` in messages. */
    int st = vram_open_regular(L->files[file_index], &fd, &L->file_ids[file_index]);
    if (st)
        return st;
    uint64_t size = L->file_ids[file_index].size;
    unsigned char len8[8];
    char *json = NULL;
    uint64_t n = 0;
    if (size < 8)
        st = vram_fail(VRAM_E_FORMAT,
                       "%s: file is %" PRIu64 " bytes, shorter than the 8-byte header length",
                       path, size);
    else if (!(st = vram_pread_full(fd, len8, 8, 0, path)) &&
             !(st = check_header_length(n = read_le64(len8), size - 8, path))) {
        json = malloc(n ? n : 1);
        st = !json ? vram_fail(VRAM_E_NOMEM, "%s: out of memory for a %" PRIu64 "-byte header",
                               path, n)
                   : vram_pread_full(fd, json, n, 8, path);
    }
    close(fd);
    if (!st)
        st = safetensors_parse_json(L, json, n, 8 + n, size - 8 - n, file_index, path);
    free(json);
    return st;
}

/* File name without folders and known extensions: the layout's name. */
static void file_stem(const char *path, char *buf, size_t cap) {
    const char *base = strrchr(path, '/');
    snprintf(buf, cap, "%s", base ? base + 1 : path);
    static const char *const exts[] = {".safetensors.index.json", ".index.json", ".safetensors",
                                       ".json"};
    size_t len = strlen(buf);
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        size_t e = strlen(exts[i]);
        if (len > e && strcmp(buf + len - e, exts[i]) == 0) {
            buf[len - e] = '\0';
            return;
        }
    }
}

int vram_layout_parse_header(const void *data, size_t len, vram_layout **out) {
    if (!out || (!data && len))
        return vram_fail(VRAM_E_INVALID, "vram_layout_parse_header: data or out is NULL");
    *out = NULL;
    const char *src = "header";
    if (len < 8)
        return vram_fail(VRAM_E_FORMAT, "%s: %zu bytes, shorter than the 8-byte header length", src,
                         len);
    uint64_t n = read_le64(data);
    int st = check_header_length(n, len - 8, src);
    if (st)
        return st;
    vram_layout *L = layout_new();
    if (!L)
        return vram_fail(VRAM_E_NOMEM, "out of memory for a layout");
    if ((st = safetensors_parse_json(L, (const char *)data + 8, (size_t)n, 8 + n, UINT64_MAX, -1,
                                     src)) ||
        (st = layout_finish(L, src, src))) {
        vram_layout_free(L);
        return st;
    }
    *out = L;
    return VRAM_OK;
}

/* ---- sharded index ---- */

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Shards are plain file names next to the index: no folders, no escape. */
static bool plain_file_name(const char *s) {
    return *s && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Checks the weight_map and collects its distinct shard names, sorted. */
static int index_shards(const cJSON *map, const char *path, const char ***shards, int *count) {
    if (!cJSON_IsObject(map) || !map->child)
        return vram_fail(VRAM_E_FORMAT, "%s: weight_map is missing, empty or not an object", path);
    int n = cJSON_GetArraySize(map);
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names)
        return vram_fail(VRAM_E_NOMEM, "%s: out of memory for %d weight_map entries", path, n);
    int i = 0;
    for (const cJSON *e = map->child; e; e = e->next) {
        const char *why = !cJSON_IsString(e)                  ? "is not a string"
                          : !plain_file_name(e->valuestring) ? "leaves the index's folder (only "
                                                                "plain file names are allowed)"
                                                              : NULL;
        if (why) {
            free(names);
            return vram_fail(VRAM_E_FORMAT, "%s: the shard of \"%.200s\" (%.200s) %s", path,
                             e->string, cJSON_IsString(e) ? e->valuestring : "?", why);
        }
        names[i++] = e->valuestring;
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    int u = 0;
    for (i = 0; i < n; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0)
            names[u++] = names[i];
    *shards = names;
    *count = u;
    return VRAM_OK;
}

/* Opens each distinct shard once (file_index = its place in `shards`), then
 * checks that every mapped tensor is in the shard the map names. */
static int read_shards(vram_layout *L, const char *path, const cJSON *map, const char **shards,
                       int count) {
    const char *slash = strrchr(path, '/');
    int folder_len = slash ? (int)(slash - path) : 1;
    const char *folder = slash ? path : ".";
    int st = VRAM_OK;
    for (int s = 0; s < count && !st; s++) {
        char *full = NULL;
        int fi;
        if (asprintf(&full, "%.*s/%s", folder_len, folder, shards[s]) < 0)
            return vram_fail(VRAM_E_NOMEM, "%s: out of memory", path);
        if (!(st = layout_add_file(L, full, &fi)) && (st = read_safetensors(L, full, fi))) {
            char why[768];
            snprintf(why, sizeof why, "%s", vram_last_error());
            st = vram_fail(st, "%s (a shard of %s)", why, path);
        }
        free(full);
    }
    char stem[VRAM_NAME_MAX];
    file_stem(path, stem, sizeof stem);
    if (st || (st = layout_finish(L, stem, path)))
        return st;
    for (const cJSON *e = map->child; e; e = e->next) {
        int t = layout_find_exact(L, e->string);
        const char **want = bsearch(&e->valuestring, shards, (size_t)count, sizeof *shards,
                                    cmp_str_ptr);
        if (t < 0 || !want || L->tensors[t].file_index != (int)(want - shards))
            return vram_fail(VRAM_E_FORMAT,
                             "%s: weight_map puts \"%.200s\" in %.200s, but that shard has no such "
                             "tensor",
                             path, e->string, e->valuestring);
    }
    return VRAM_OK;
}

static int open_index(vram_layout *L, const char *path) {
    char *text = NULL;
    size_t len = 0;
    int st = vram_read_file(path, SAFETENSORS_MAX_HEADER, &text, &len);
    if (st)
        return st;
    cJSON *root;
    st = parse_json_object(text, len, path, "index", &root);
    free(text);
    if (st)
        return st;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const char **shards = NULL;
    int count = 0;
    if (!(st = index_shards(map, path, &shards, &count)))
        st = read_shards(L, path, map, shards, count);
    free(shards);
    cJSON_Delete(root);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int vram_layout_open(const char *path, vram_layout **out) {
    if (!path || !out)
        return vram_fail(VRAM_E_INVALID, "vram_layout_open: path or out is NULL");
    *out = NULL;
    if (!*path)
        return vram_fail(VRAM_E_INVALID, "vram_layout_open: the path is empty");
    vram_layout *L = layout_new();
    if (!L)
        return vram_fail(VRAM_E_NOMEM, "out of memory for a layout");
    int st, fi;
    if (ends_with(path, ".json")) {
        st = open_index(L, path);
    } else if (!(st = layout_add_file(L, path, &fi)) && !(st = read_safetensors(L, path, fi))) {
        char stem[VRAM_NAME_MAX];
        file_stem(path, stem, sizeof stem);
        st = layout_finish(L, stem, path);
    }
    if (st) {
        vram_layout_free(L);
        return st;
    }
    *out = L;
    return VRAM_OK;
}
