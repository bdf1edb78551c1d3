/* Layout core: headers parsed from memory, synthetic layouts, accessors,
 * JSON. (Files: test_safetensors.c; built-in models: test_catalog.c.) */
#include "testutil.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <math.h>

/* Size-prefixed header as on disk; caller frees. */
static unsigned char *header(const char *json, size_t *len) {
    size_t n = strlen(json);
    unsigned char *buf = malloc(8 + n);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    *len = 8 + n;
    return buf;
}

static const char *const packing_json =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"model.diffusion_model.blocks.0.b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[100,106]},"
    "\"model.diffusion_model.blocks.0.a\":{\"dtype\":\"F32\",\"shape\":[2,5],\"data_offsets\":[0,40]},"
    "\"model.diffusion_model.blocks.0.z\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[40,40]},"
    "\"model.diffusion_model.blocks.0.y\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[40,40]},"
    "\"model.diffusion_model.head.w\":{\"dtype\":\"BF16\",\"shape\":[7],\"data_offsets\":[200,214]}}";

static void parse_from_memory(void) {
    size_t len;
    unsigned char *h = header(packing_json, &len);
    vram_layout *L = NULL;
    CHECK_OK(vram_layout_parse_header(h, len, &L));
    vram_layout_info i = info_of(L);
    CHECK_STR(i.name, "header");
    CHECK_OK(vram_layout_set_name(L, "WanTransformer3DModel"));
    CHECK_STR(info_of(L).name, "WanTransformer3DModel");
    CHECK_INT(vram_layout_set_name(L, ""), VRAM_E_INVALID);
    CHECK_STR(info_of(L).name, "WanTransformer3DModel");
    CHECK_STR(i.naming, "comfyui");
    CHECK_INT(i.file_count, 0);
    CHECK_INT(i.tensor_count, 5);
    CHECK_INT(i.block_count, 1);
    CHECK_INT(i.main_dtype, VRAM_DTYPE_F32);
    CHECK_INT(i.total_params, 10 + 3 + 7);
    CHECK(vram_layout_file_path(L, 0) == NULL);
    CHECK(vram_layout_file_path(L, -1) == NULL);

    /* Packing: file order, ties (the empty y and z at 40) by name, each
     * start 256-aligned. */
    const char *names[] = {"a", "y", "z", "b"};
    const uint64_t offs[] = {0, 256, 256, 256};
    for (int k = 0; k < 4; k++) {
        vram_tensor_info t = {.size = sizeof t};
        CHECK_OK(vram_layout_tensor(L, k, &t));
        CHECK(strlen(t.name) > 1 && strcmp(t.name + strlen(t.name) - 1, names[k]) == 0);
        CHECK_INT(t.block_offset, offs[k]);
        CHECK_INT(t.file_index, -1);
    }
    vram_block_info b = {.size = sizeof b};
    CHECK_OK(vram_layout_block(L, 0, &b));
    CHECK_INT(b.nbytes, 46);
    CHECK_INT(b.packed_bytes, 512);
    CHECK_INT(b.linear_params, 10);
    CHECK_INT(b.tensor_count, 4);
    vram_tensor_info t = {.size = sizeof t};
    CHECK_OK(vram_layout_tensor(L, 4, &t));
    CHECK_INT(t.block, -1);
    CHECK_INT(t.role, VRAM_ROLE_OTHER);
    CHECK_INT(t.file_offset, len + 200); /* 8 + N + begin */
    vram_layout_free(L);
    free(h);

    /* Offsets are checked against each other only, not against len. */
    h = header("{\"w\":{\"dtype\":\"U8\",\"shape\":[1000000],\"data_offsets\":[0,1000000]}}", &len);
    CHECK_OK(vram_layout_parse_header(h, len, &L));
    vram_layout_free(L);
    free(h);

    L = (vram_layout *)1;
    CHECK_INT(vram_layout_parse_header("abc", 3, &L), VRAM_E_FORMAT);
    CHECK(strstr(vram_last_error(), "shorter than") != NULL);
    CHECK(L == NULL);
    h = header("{}", &len);
    CHECK_INT(vram_layout_parse_header(h, len - 1, &L), VRAM_E_FORMAT); /* one byte short */
    CHECK(strstr(vram_last_error(), "truncated") != NULL);
    CHECK_OK(vram_layout_parse_header(h, len, &L)); /* empty model */
    CHECK_INT(info_of(L).tensor_count, 0);
    CHECK_INT(info_of(L).main_dtype, VRAM_DTYPE_UNKNOWN);
    char *json;
    CHECK_OK(vram_layout_json(L, true, &json));
    vram_free(json);
    vram_layout_free(L);
    free(h);
    CHECK_INT(vram_layout_parse_header(NULL, 16, &L), VRAM_E_INVALID);
    CHECK_INT(vram_layout_parse_header("12345678", 8, NULL), VRAM_E_INVALID);
}

/* "blocks.01." is not module-list naming: it stays out of the blocks
 * rather than merging with "blocks.1.". */
static void leading_zero_index(void) {
    size_t len;
    unsigned char *h = header(
        "{\"blocks.1.w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
        "\"blocks.01.w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
        "\"blocks.0.w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}",
        &len);
    vram_layout *L = NULL;
    CHECK_OK(vram_layout_parse_header(h, len, &L));
    CHECK_INT(info_of(L).block_count, 2);
    CHECK_INT(info_of(L).rest_bytes, 4);
    int k = vram_layout_find_tensor(L, "blocks.01.w");
    vram_tensor_info t = {.size = sizeof t};
    CHECK_OK(vram_layout_tensor(L, k, &t));
    CHECK_INT(t.block, -1);
    vram_layout_free(L);
    free(h);
}

static void from_size(void) {
    vram_layout *L = NULL;
    CHECK_OK(vram_layout_from_size(1000.0, 10, &L));
    vram_layout_info i = info_of(L);
    CHECK_STR(i.naming, "synthetic");
    CHECK_INT(i.block_count, 10);
    CHECK_INT(i.tensor_count, 0);
    CHECK_INT(i.rest_bytes, 0);
    CHECK_INT(i.total_bytes, 10 * 104857600ull);
    CHECK_INT(i.dim, 0);
    vram_block_info b = {.size = sizeof b};
    CHECK_OK(vram_layout_block(L, 9, &b));
    CHECK_INT(b.nbytes, 104857600);
    CHECK_INT(b.packed_bytes, 104857600);
    CHECK_INT(b.group_index, 9);
    CHECK_INT(b.first_tensor, -1);
    vram_layout_free(L);

    const double bad_sizes[] = {0, -5, NAN, INFINITY, 1e12};
    for (size_t k = 0; k < sizeof bad_sizes / sizeof *bad_sizes; k++) {
        L = (vram_layout *)1;
        CHECK_INT(vram_layout_from_size(bad_sizes[k], 10, &L), VRAM_E_RANGE);
        CHECK(strstr(vram_last_error(), "model size") != NULL);
        CHECK(L == NULL);
    }
    CHECK_INT(vram_layout_from_size(100, 0, &L), VRAM_E_RANGE);
    CHECK(strstr(vram_last_error(), "layer count 0") != NULL);
    CHECK_INT(vram_layout_from_size(100, 4097, &L), VRAM_E_RANGE);
    CHECK_OK(vram_layout_from_size(100, 4096, &L));
    vram_layout_free(L);
    CHECK_INT(vram_layout_from_size(100, 10, NULL), VRAM_E_INVALID);
}

static void from_blocks(void) {
    const uint64_t bytes[] = {1000, 2048, 300};
    vram_layout *L = NULL;
    CHECK_OK(vram_layout_from_blocks(bytes, 3, 500, 5120, &L));
    vram_layout_info i = info_of(L);
    CHECK_INT(i.block_count, 3);
    CHECK_INT(i.block_bytes, 3348);
    CHECK_INT(i.rest_bytes, 500);
    CHECK_INT(i.total_bytes, 3848);
    CHECK_INT(i.dim, 5120);
    CHECK_INT(i.heads, 40);
    CHECK_INT(i.expert_count, 1);
    const uint64_t packed[] = {1024, 2048, 512};
    for (int k = 0; k < 3; k++) {
        vram_block_info b = {.size = sizeof b};
        CHECK_OK(vram_layout_block(L, k, &b));
        CHECK_INT(b.nbytes, bytes[k]);
        CHECK_INT(b.packed_bytes, packed[k]);
        CHECK_INT(b.group, VRAM_GROUP_BLOCKS);
    }
    vram_layout_free(L);

    L = (vram_layout *)1;
    CHECK_INT(vram_layout_from_blocks(bytes, 0, 0, 0, &L), VRAM_E_RANGE);
    CHECK(L == NULL);
    CHECK_INT(vram_layout_from_blocks(NULL, 3, 0, 0, &L), VRAM_E_INVALID);
    CHECK_INT(vram_layout_from_blocks(bytes, 3, 0, -1, &L), VRAM_E_RANGE);
    const uint64_t huge[] = {UINT64_MAX};
    CHECK_INT(vram_layout_from_blocks(huge, 1, 0, 0, &L), VRAM_E_RANGE);
    CHECK_INT(vram_layout_from_blocks(bytes, 3, UINT64_MAX, 0, &L), VRAM_E_RANGE);
}

static void accessors(void) {
    vram_layout *L = NULL;
    CHECK_OK(vram_layout_from_catalog("wan2.1-t2v-1.3b", VRAM_DTYPE_BF16, &L));
    vram_block_info b = {.size = sizeof b};
    CHECK_INT(vram_layout_block(L, 30, &b), VRAM_E_RANGE);
    CHECK(strstr(vram_last_error(), "block 30") != NULL);
    CHECK_INT(vram_layout_block(L, -1, &b), VRAM_E_RANGE);
    b.size = 4;
    CHECK_INT(vram_layout_block(L, 0, &b), VRAM_E_INVALID);
    CHECK_INT(vram_layout_block(NULL, 0, &b), VRAM_E_INVALID);
    vram_tensor_info t = {.size = sizeof t};
    CHECK_INT(vram_layout_tensor(L, 1 << 20, &t), VRAM_E_RANGE);
    vram_layout_info i = {.size = 0};
    CHECK_INT(vram_layout_get_info(L, &i), VRAM_E_INVALID);
    CHECK_INT(vram_layout_get_info(L, NULL), VRAM_E_INVALID);
    CHECK_INT(vram_layout_find_tensor(L, "nope"), VRAM_E_NOT_FOUND);
    CHECK(strstr(vram_last_error(), "nope") != NULL);
    CHECK_INT(vram_layout_find_tensor(L, NULL), VRAM_E_INVALID);
    /* Every tensor is found at its own index. */
    i.size = sizeof i;
    CHECK_OK(vram_layout_get_info(L, &i));
    for (int k = 0; k < i.tensor_count; k++) {
        CHECK_OK(vram_layout_tensor(L, k, &t));
        CHECK_INT(vram_layout_find_tensor(L, t.name), k);
    }
    vram_layout_free(L);
    vram_layout_free(NULL);
}

static double num(const cJSON *o, const char *key) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, key);
    CHECK(cJSON_IsNumber(n));
    return cJSON_IsNumber(n) ? n->valuedouble : -1;
}

static void json(void) {
    vram_layout *L = NULL;
    CHECK_OK(vram_layout_from_catalog("wan2.1-i2v-14b", VRAM_DTYPE_BF16, &L));
    char *text = NULL;
    CHECK_OK(vram_layout_json(L, false, &text));
    cJSON *root = cJSON_Parse(text);
    CHECK(root != NULL);
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(root, "info");
    CHECK_INT(num(info, "dim"), 5120);
    CHECK_INT(num(info, "block_count"), 40);
    CHECK_INT(num(info, "image_emb_bytes"), 8211200 * 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "main_dtype")), "BF16");
    const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(root, "blocks");
    CHECK_INT(cJSON_GetArraySize(blocks), 40);
    const cJSON *b1 = cJSON_GetArrayItem(blocks, 1);
    CHECK_INT(num(b1, "index"), 1);
    CHECK_INT(num(b1, "group_index"), 1);
    CHECK_INT(num(b1, "params"), 403838464);
    CHECK_INT(num(b1, "packed_bytes"), 403838464ull * 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b1, "group")), "blocks");
    CHECK(cJSON_GetObjectItemCaseSensitive(root, "tensors") == NULL);
    cJSON_Delete(root);
    vram_free(text);

    CHECK_OK(vram_layout_json(L, true, &text));
    root = cJSON_Parse(text);
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    CHECK_INT(cJSON_GetArraySize(tensors), info_of(L).tensor_count);
    const cJSON *t0 = cJSON_GetArrayItem(tensors, 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t0, "name")),
              "blocks.0.self_attn.q.weight");
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t0, "shape")), 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t0, "role")), "block");
    cJSON_Delete(root);
    vram_free(text);
    vram_layout_free(L);

    CHECK_INT(vram_layout_json(NULL, false, &text), VRAM_E_INVALID);
}

int main(void) {
    parse_from_memory();
    leading_zero_index();
    from_size();
    from_blocks();
    accessors();
    json();
    CHECK_DONE();
}
