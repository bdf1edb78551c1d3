/* safetensors files and sharded indexes written here from C: valid ones in
 * Wan, ComfyUI and diffusers naming, and every hostile case the parser must
 * reject with the right code and a message naming the file. */
#define _GNU_SOURCE
#include "testutil.h"
#include "internal.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_bytes(const char *name, const void *data, size_t n, uint64_t extend_to) {
    int fd = open(path_of(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, data, n) == (ssize_t)n);
    if (extend_to > n) /* sparse weights: never read */
        CHECK(ftruncate(fd, (off_t)extend_to) == 0);
    close(fd);
}

/* A file whose 8-byte length says `claimed` and whose header is `json`
 * padded with spaces to 8 bytes, then `data` bytes of (sparse) weights. */
static void write_st_claim(const char *name, const char *json, uint64_t claimed, uint64_t data) {
    size_t n = strlen(json), padded = (n + 7) & ~(size_t)7;
    unsigned char *buf = malloc(8 + padded);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(claimed >> (8 * i));
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, ' ', padded - n);
    write_bytes(name, buf, 8 + padded, 8 + padded + data);
    free(buf);
}

static void write_st(const char *name, const char *json, uint64_t data) {
    size_t n = strlen(json);
    write_st_claim(name, json, (n + 7) & ~(size_t)7, data);
}

/* A tensor spec: dtype and shape; offsets are assigned in list order. */
typedef struct spec {
    const char *name, *dtype;
    int ndim;
    int64_t shape[5];
} spec;

/* JSON header for `specs` (names prefixed), data laid out in list order. */
static char *header_for(const char *prefix, const spec *s, int n, uint64_t *data_bytes) {
    vram_strbuf b = {0};
    uint64_t off = 0;
    vram_strbuf_printf(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        uint64_t bytes = vram_dtype_size(vram_dtype_from_name(s[i].dtype));
        vram_strbuf_printf(&b, ",\"%s%s\":{\"dtype\":\"%s\",\"shape\":[", prefix, s[i].name,
                           s[i].dtype);
        for (int d = 0; d < s[i].ndim; d++) {
            vram_strbuf_printf(&b, "%s%" PRId64, d ? "," : "", s[i].shape[d]);
            bytes *= (uint64_t)s[i].shape[d];
        }
        vram_strbuf_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes);
        off += bytes;
    }
    vram_strbuf_printf(&b, "}");
    char *text;
    CHECK_OK(vram_strbuf_finish(&b, &text));
    *data_bytes = off;
    return text;
}

static void write_model(const char *name, const char *prefix, const spec *s, int n) {
    uint64_t data;
    char *json = header_for(prefix, s, n, &data);
    write_st(name, json, data);
    free(json);
}

static vram_layout *open_ok(const char *name) {
    vram_layout *L = NULL;
    CHECK_OK(vram_layout_open(path_of(name), &L));
    return L;
}

/* Opening `name` fails with `code`, a message naming the file and `needle`. */
static void expect_fail_at(int line, const char *name, int code, const char *needle) {
    vram_layout *L = (vram_layout *)1;
    int st = vram_layout_open(path_of(name), &L);
    const char *msg = vram_last_error();
    if (st != code || L != NULL || !strstr(msg, name) || !strstr(msg, needle)) {
        fprintf(stderr, "line %d: %s: got %d (want %d), message \"%s\" (want \"%s\")\n", line, name,
                st, code, msg, needle);
        check_failures++;
    }
}
#define EXPECT_FAIL(name, code, needle) expect_fail_at(__LINE__, name, code, needle)

/* A small Wan-shaped model: dim 256, ffn 512. Listed out of packing order
 * so the parser's ordering is visible. */
static const spec wan_specs[] = {
    {"text_embedding.0.weight", "BF16", 2, {256, 64}},
    {"blocks.1.self_attn.q.weight", "BF16", 2, {256, 256}},
    {"blocks.0.ffn.0.weight", "BF16", 2, {512, 256}},
    {"blocks.0.self_attn.q.weight", "BF16", 2, {256, 256}},
    {"blocks.0.norm3.weight", "F32", 1, {3}}, /* 12 bytes: the next offset aligns up */
    {"blocks.0.modulation", "F32", 3, {1, 6, 256}},
    {"blocks.1.ffn.0.weight", "BF16", 2, {512, 256}},
    {"img_emb.proj.1.weight", "BF16", 2, {32, 32}},
    {"head.head.weight", "BF16", 2, {64, 256}},
};
#define NSPECS(a) ((int)(sizeof a / sizeof *a))

static void wan_naming(void) {
    write_model("wan.safetensors", "", wan_specs, NSPECS(wan_specs));
    vram_layout *L = open_ok("wan.safetensors");
    vram_layout_info i = info_of(L);
    CHECK_STR(i.name, "wan");
    CHECK_STR(i.naming, "wan");
    CHECK_INT(i.block_count, 2);
    CHECK_INT(i.tensor_count, NSPECS(wan_specs));
    CHECK_INT(i.file_count, 1);
    CHECK_STR(vram_layout_file_path(L, 0), path_of("wan.safetensors"));
    CHECK(vram_layout_file_path(L, 1) == NULL);
    CHECK_OK(vram_layout_check_file(L, 0));
    CHECK_INT(vram_layout_check_file(L, 1), VRAM_E_RANGE);
    CHECK_INT(i.dim, 256);
    CHECK_INT(i.ffn_dim, 512);
    CHECK_INT(i.heads, 2);
    CHECK_INT(i.main_dtype, VRAM_DTYPE_BF16);
    CHECK_INT(i.text_emb_bytes, 256 * 64 * 2);
    CHECK_INT(i.image_emb_bytes, 32 * 32 * 2);
    CHECK_INT(i.rest_bytes, 256 * 64 * 2 + 32 * 32 * 2 + 64 * 256 * 2);

    /* Block 0 in file order: ffn.0, q, norm3 (12 bytes), modulation. */
    vram_block_info b = {.size = sizeof b};
    CHECK_OK(vram_layout_block(L, 0, &b));
    CHECK_INT(b.tensor_count, 4);
    CHECK_INT(b.first_tensor, 0);
    CHECK_INT(b.params, 512 * 256 + 256 * 256 + 3 + 6 * 256);
    CHECK_INT(b.linear_params, 512 * 256 + 256 * 256);
    CHECK_INT(b.nbytes, 262144 + 131072 + 12 + 6144);
    CHECK_INT(b.packed_bytes, 262144 + 131072 + 256 + 6144);
    const char *order[] = {"blocks.0.ffn.0.weight", "blocks.0.self_attn.q.weight",
                           "blocks.0.norm3.weight", "blocks.0.modulation"};
    const uint64_t offsets[] = {0, 262144, 393216, 393472};
    for (int k = 0; k < 4; k++) {
        vram_tensor_info t = {.size = sizeof t};
        CHECK_OK(vram_layout_tensor(L, k, &t));
        CHECK_STR(t.name, order[k]);
        CHECK_INT(t.block_offset, offsets[k]);
        CHECK_INT(t.block, 0);
    }
    CHECK_OK(vram_layout_block(L, 1, &b));
    CHECK_INT(b.first_tensor, 4);
    CHECK_INT(b.group_index, 1);

    vram_tensor_info t = tensor_named(L, "text_embedding.0.weight");
    CHECK_INT(t.role, VRAM_ROLE_TEXT_EMB);
    CHECK_INT(t.file_index, 0);
    CHECK_INT(t.file_offset % 8, 0); /* header padded to 8 */
    CHECK(t.file_offset >= 8);
    CHECK_INT(tensor_named(L, "img_emb.proj.1.weight").role, VRAM_ROLE_IMAGE_EMB);
    CHECK_INT(tensor_named(L, "head.head.weight").role, VRAM_ROLE_OTHER);
    CHECK_INT(tensor_named(L, "blocks.0.norm3.weight").dtype, VRAM_DTYPE_F32);
    /* Rewritten since its header was read (a size of its own: a timestamp
     * may not have moved yet): named as changed. */
    write_model("wan.safetensors", "model.diffusion_model.", wan_specs, NSPECS(wan_specs));
    CHECK_INT(vram_layout_check_file(L, 0), VRAM_E_STATE);
    CHECK(strstr(vram_last_error(), "wan.safetensors changed since its layout was read"));
    vram_layout_free(L);
}

static void comfyui_naming(void) {
    write_model("comfy.safetensors", "model.diffusion_model.", wan_specs, NSPECS(wan_specs));
    vram_layout *L = open_ok("comfy.safetensors");
    vram_layout_info i = info_of(L);
    CHECK_STR(i.naming, "comfyui");
    CHECK_INT(i.block_count, 2);
    CHECK_INT(i.dim, 256);
    CHECK_INT(i.text_emb_bytes, 256 * 64 * 2);
    /* Found by its full name and by the module's own name. */
    int a = vram_layout_find_tensor(L, "model.diffusion_model.blocks.1.ffn.0.weight");
    CHECK(a >= 0);
    CHECK_INT(vram_layout_find_tensor(L, "blocks.1.ffn.0.weight"), a);
    vram_layout_free(L);

    write_model("short.safetensors", "diffusion_model.", wan_specs, NSPECS(wan_specs));
    L = open_ok("short.safetensors");
    CHECK_STR(info_of(L).naming, "comfyui");
    CHECK_INT(info_of(L).block_count, 2);
    vram_layout_free(L);
}

static void diffusers_naming(void) {
    static const spec s[] = {
        {"condition_embedder.text_embedder.linear_1.weight", "BF16", 2, {384, 64}},
        {"condition_embedder.image_embedder.ff.net.0.proj.weight", "BF16", 2, {16, 16}},
        {"condition_embedder.time_embedder.linear_1.weight", "BF16", 2, {384, 32}},
        {"blocks.0.attn1.to_q.weight", "BF16", 2, {384, 384}},
        {"blocks.0.ffn.net.0.proj.weight", "BF16", 2, {1024, 384}},
        {"blocks.0.scale_shift_table", "F32", 3, {1, 6, 384}},
        {"transformer_blocks.1.attn1.to_q.weight", "BF16", 2, {384, 384}},
    };
    write_model("diffusers.safetensors", "", s, NSPECS(s));
    vram_layout *L = open_ok("diffusers.safetensors");
    vram_layout_info i = info_of(L);
    CHECK_STR(i.naming, "diffusers");
    CHECK_INT(i.block_count, 2);
    CHECK_INT(i.dim, 384);
    CHECK_INT(i.ffn_dim, 1024);
    CHECK_INT(i.heads, 3);
    CHECK_INT(i.text_emb_bytes, 384 * 64 * 2);
    CHECK_INT(i.image_emb_bytes, 16 * 16 * 2);
    CHECK_INT(tensor_named(L, "condition_embedder.time_embedder.linear_1.weight").role,
              VRAM_ROLE_OTHER);
    CHECK_INT(tensor_named(L, "transformer_blocks.1.attn1.to_q.weight").block, 1);
    vram_layout_free(L);
}

static void vace_and_gaps(void) {
    static const spec s[] = {
        {"vace_blocks.1.proj.weight", "BF16", 2, {16, 16}},
        {"blocks.2.self_attn.q.weight", "BF16", 2, {128, 128}},
        {"vace_blocks.0.proj.weight", "BF16", 2, {16, 16}},
        {"blocks.0.self_attn.q.weight", "BF16", 2, {128, 128}},
        {"blocks.x.not_a_block", "BF16", 1, {4}},
        {"blocks.3", "BF16", 1, {4}},
        {"vace_patch_embedding.weight", "BF16", 1, {8}},
    };
    write_model("vace.safetensors", "", s, NSPECS(s));
    vram_layout *L = open_ok("vace.safetensors");
    vram_layout_info i = info_of(L);
    CHECK_INT(i.block_count, 4);
    CHECK_INT(i.group_block_count[VRAM_GROUP_BLOCKS], 2);
    CHECK_INT(i.group_block_count[VRAM_GROUP_VACE], 2);
    const int groups[] = {VRAM_GROUP_BLOCKS, VRAM_GROUP_BLOCKS, VRAM_GROUP_VACE, VRAM_GROUP_VACE};
    const int ns[] = {0, 2, 0, 1};
    for (int b = 0; b < 4; b++) {
        vram_block_info bi = {.size = sizeof bi};
        CHECK_OK(vram_layout_block(L, b, &bi));
        CHECK_INT(bi.index, b);
        CHECK_INT(bi.group, groups[b]);
        CHECK_INT(bi.group_index, ns[b]);
        CHECK_INT(bi.tensor_count, 1);
    }
    CHECK_INT(tensor_named(L, "blocks.2.self_attn.q.weight").block, 1);
    CHECK_INT(tensor_named(L, "vace_blocks.1.proj.weight").block, 3);
    CHECK_INT(tensor_named(L, "blocks.x.not_a_block").block, -1);
    CHECK_INT(tensor_named(L, "blocks.3").block, -1);
    vram_layout_free(L);
}

/* ---- sharded ---- */

static void sharded(void) {
    static const spec a[] = {
        {"blocks.0.self_attn.q.weight", "BF16", 2, {256, 256}},
        {"blocks.0.ffn.0.weight", "BF16", 2, {512, 256}},
    };
    static const spec b[] = {
        {"blocks.1.self_attn.q.weight", "BF16", 2, {256, 256}},
        {"head.head.weight", "BF16", 2, {64, 256}},
    };
    write_model("m-00001-of-00002.safetensors", "", a, 2);
    write_model("m-00002-of-00002.safetensors", "", b, 2);
    write_text(dir, "m.safetensors.index.json",
               "{\"metadata\":{\"total_size\":1},\"weight_map\":{"
               "\"blocks.0.self_attn.q.weight\":\"m-00001-of-00002.safetensors\","
               "\"blocks.0.ffn.0.weight\":\"m-00001-of-00002.safetensors\","
               "\"blocks.1.self_attn.q.weight\":\"m-00002-of-00002.safetensors\","
               "\"head.head.weight\":\"m-00002-of-00002.safetensors\"}}");
    vram_layout *L = open_ok("m.safetensors.index.json");
    vram_layout_info i = info_of(L);
    CHECK_STR(i.name, "m");
    CHECK_INT(i.file_count, 2);
    CHECK_INT(i.tensor_count, 4);
    CHECK_INT(i.block_count, 2);
    CHECK_INT(i.dim, 256);
    CHECK_STR(vram_layout_file_path(L, 0), path_of("m-00001-of-00002.safetensors"));
    CHECK_STR(vram_layout_file_path(L, 1), path_of("m-00002-of-00002.safetensors"));
    CHECK_INT(tensor_named(L, "blocks.0.ffn.0.weight").file_index, 0);
    CHECK_INT(tensor_named(L, "head.head.weight").file_index, 1);
    vram_layout_free(L);

    /* Hostile indexes. */
    write_text(dir, "escape.safetensors.index.json",
               "{\"weight_map\":{\"blocks.0.self_attn.q.weight\":\"../m-00001-of-00002.safetensors\"}}");
    EXPECT_FAIL("escape.safetensors.index.json", VRAM_E_FORMAT, "leaves the index's folder");
    write_text(dir, "sub.safetensors.index.json",
               "{\"weight_map\":{\"blocks.0.self_attn.q.weight\":\"sub/x.safetensors\"}}");
    EXPECT_FAIL("sub.safetensors.index.json", VRAM_E_FORMAT, "leaves the index's folder");
    write_text(dir, "dotdot.safetensors.index.json", "{\"weight_map\":{\"x\":\"..\"}}");
    EXPECT_FAIL("dotdot.safetensors.index.json", VRAM_E_FORMAT, "leaves the index's folder");
    write_text(dir, "notstr.safetensors.index.json", "{\"weight_map\":{\"x\":7}}");
    EXPECT_FAIL("notstr.safetensors.index.json", VRAM_E_FORMAT, "not a string");
    write_text(dir, "wrong.safetensors.index.json",
               "{\"weight_map\":{\"head.head.weight\":\"m-00001-of-00002.safetensors\","
               "\"blocks.1.self_attn.q.weight\":\"m-00002-of-00002.safetensors\"}}");
    EXPECT_FAIL("wrong.safetensors.index.json", VRAM_E_FORMAT, "that shard has no such tensor");
    write_text(dir, "missing.safetensors.index.json",
               "{\"weight_map\":{\"x\":\"nowhere.safetensors\"}}");
    EXPECT_FAIL("missing.safetensors.index.json", VRAM_E_NOT_FOUND, "nowhere.safetensors");
    write_text(dir, "nomap.safetensors.index.json", "{\"metadata\":{}}");
    EXPECT_FAIL("nomap.safetensors.index.json", VRAM_E_FORMAT, "weight_map");
    write_text(dir, "empty.safetensors.index.json", "{\"weight_map\":{}}");
    EXPECT_FAIL("empty.safetensors.index.json", VRAM_E_FORMAT, "weight_map");
    write_text(dir, "broken.safetensors.index.json", "{\"weight_map\":");
    EXPECT_FAIL("broken.safetensors.index.json", VRAM_E_FORMAT, "index is not valid JSON");
    write_text(dir, "list.safetensors.index.json", "[]");
    EXPECT_FAIL("list.safetensors.index.json", VRAM_E_FORMAT, "index JSON is not an object");
    write_text(dir, "trailing.safetensors.index.json",
               "{\"weight_map\":{\"x\":\"tiny.safetensors\"}} {}");
    EXPECT_FAIL("trailing.safetensors.index.json", VRAM_E_FORMAT,
                "unexpected bytes after the JSON index");
    /* The same tensor in two shards. */
    write_model("dup-a.safetensors", "", a, 1);
    write_model("dup-b.safetensors", "", a, 1);
    write_text(dir, "dup.safetensors.index.json",
               "{\"weight_map\":{\"blocks.0.self_attn.q.weight\":\"dup-a.safetensors\","
               "\"x\":\"dup-b.safetensors\"}}");
    EXPECT_FAIL("dup.safetensors.index.json", VRAM_E_FORMAT, "appears twice");
    /* A broken shard is reported by its own name. */
    write_bytes("tiny.safetensors", "abc", 3, 0);
    write_text(dir, "badshard.safetensors.index.json", "{\"weight_map\":{\"x\":\"tiny.safetensors\"}}");
    EXPECT_FAIL("badshard.safetensors.index.json", VRAM_E_FORMAT, "tiny.safetensors");
}

/* ---- hostile single files ---- */

static void hostile(void) {
    write_bytes("short.bin", "\x10\0\0", 3, 0);
    EXPECT_FAIL("short.bin", VRAM_E_FORMAT, "shorter than the 8-byte header length");
    write_st_claim("huge.safetensors", "{}", 200ull << 20, 0);
    EXPECT_FAIL("huge.safetensors", VRAM_E_FORMAT, "above the 100 MiB limit");
    write_st_claim("trunc.safetensors", "{}", 4096, 0);
    EXPECT_FAIL("trunc.safetensors", VRAM_E_FORMAT, "truncated");
    write_st_claim("maxlen.safetensors", "{}", UINT64_MAX, 0);
    EXPECT_FAIL("maxlen.safetensors", VRAM_E_FORMAT, "above the 100 MiB limit");

    static const struct {
        const char *file, *json;
        int code;
        const char *needle;
    } cases[] = {
        {"badjson.safetensors", "{\"a\":", VRAM_E_FORMAT, "not valid JSON"},
        {"array.safetensors", "[1,2]", VRAM_E_FORMAT, "not an object"},
        {"empty.safetensors", "", VRAM_E_FORMAT, "not valid JSON"},
        {"trailing.safetensors", "{} x", VRAM_E_FORMAT, "unexpected bytes after"},
        {"meta.safetensors", "{\"__metadata__\":[]}", VRAM_E_FORMAT, "__metadata__ is not an object"},
        {"entry.safetensors", "{\"w\":5}", VRAM_E_FORMAT, "entry is not an object"},
        {"nodtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,2]}}", VRAM_E_FORMAT,
         "dtype is missing"},
        {"dtype.safetensors", "{\"w\":{\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,1]}}",
         VRAM_E_UNSUPPORTED, "unknown dtype \"F4\""},
        {"dtypecase.safetensors", "{\"w\":{\"dtype\":\"bf16\",\"shape\":[1],\"data_offsets\":[0,2]}}",
         VRAM_E_UNSUPPORTED, "unknown dtype"},
        {"shape.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":3,\"data_offsets\":[0,6]}}",
         VRAM_E_FORMAT, "shape is missing or not an array"},
        {"negdim.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[-1],\"data_offsets\":[0,0]}}",
         VRAM_E_FORMAT, "non-negative integers"},
        {"fracdim.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[1.5],\"data_offsets\":[0,2]}}",
         VRAM_E_FORMAT, "non-negative integers"},
        {"strdim.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[\"2\"],\"data_offsets\":[0,4]}}",
         VRAM_E_FORMAT, "non-negative integers"},
        {"ndim.safetensors",
         "{\"w\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,2]}}",
         VRAM_E_UNSUPPORTED, "9 dimensions"},
        {"overflow.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,0]}}",
         VRAM_E_FORMAT, "overflows"},
        {"nbytes.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,6]}}",
         VRAM_E_FORMAT, "do not hold the 8 bytes"},
        {"reversed.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[8,0]}}",
         VRAM_E_FORMAT, "do not hold"},
        {"offsets.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0]}}",
         VRAM_E_FORMAT, "data_offsets is not [begin, end]"},
        {"beyond.safetensors",
         "{\"w\":{\"dtype\":\"BF16\",\"shape\":[64],\"data_offsets\":[64,192]}}", VRAM_E_FORMAT,
         "beyond the data section"},
        {"overlap.safetensors",
         "{\"a\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[0,16]},"
         "\"b\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[8,24]}}",
         VRAM_E_FORMAT, "overlap"},
        {"dup.safetensors",
         "{\"a\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[0,16]},"
         "\"a\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[16,32]}}",
         VRAM_E_FORMAT, "duplicate tensor name \"a\""},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        write_st(cases[k].file, cases[k].json, 128); /* 128 bytes of data */
        EXPECT_FAIL(cases[k].file, cases[k].code, cases[k].needle);
    }

    /* Valid edge cases: a scalar, an empty tensor, a newline before the padding. */
    write_st("edge.safetensors",
             "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
             "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,4],\"data_offsets\":[4,4]},"
             "\"u\":{\"dtype\":\"U8\",\"shape\":[120],\"data_offsets\":[8,128]}}\n",
             128);
    vram_layout *L = open_ok("edge.safetensors");
    CHECK_INT(info_of(L).tensor_count, 3);
    CHECK_INT(info_of(L).total_params, 121);
    CHECK_INT(info_of(L).block_count, 0);
    vram_layout_free(L);

    EXPECT_FAIL("does-not-exist.safetensors", VRAM_E_NOT_FOUND, "cannot open");
    mkdir(path_of("adir.safetensors"), 0755);
    EXPECT_FAIL("adir.safetensors", VRAM_E_IO, "not a regular file");
    rmdir(path_of("adir.safetensors"));
    L = (vram_layout *)1;
    CHECK_INT(vram_layout_open(NULL, &L), VRAM_E_INVALID);
    CHECK_INT(vram_layout_open(path_of("wan.safetensors"), NULL), VRAM_E_INVALID);
}

static void cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/vram_st_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    wan_naming();
    comfyui_naming();
    diffusers_naming();
    vace_and_gaps();
    sharded();
    hostile();
    cleanup();
    CHECK_DONE();
}
