/* Built-in layouts: the numbers in docs/../wan-and-gpu-numbers.md, tensor by
 * tensor. */
#include "testutil.h"
#include "internal.h"

static vram_layout *catalog(const char *name, vram_dtype dtype) {
    vram_layout *L = NULL;
    CHECK_OK(vram_layout_from_catalog(name, dtype, &L));
    return L;
}

/* Parameters of the tensors whose name starts with `prefix`. */
static uint64_t params_with_prefix(const vram_layout *L, const char *prefix) {
    vram_layout_info info = info_of(L);
    uint64_t sum = 0;
    for (int i = 0; i < info.tensor_count; i++) {
        vram_tensor_info t = {.size = sizeof t};
        CHECK_OK(vram_layout_tensor(L, i, &t));
        if (strncmp(t.name, prefix, strlen(prefix)) == 0)
            sum += t.nbytes / vram_dtype_size(t.dtype);
    }
    return sum;
}

/* Every block of L has these params and bf16 bytes. */
static void check_blocks(const vram_layout *L, int count, uint64_t params, double mib) {
    vram_layout_info info = info_of(L);
    CHECK_INT(info.block_count, count);
    CHECK_INT(info.group_block_count[VRAM_GROUP_BLOCKS], count);
    for (int b = 0; b < info.block_count; b++) {
        vram_block_info bi = block_of(L, b);
        CHECK_INT(bi.params, params);
        CHECK_INT(bi.group_index, b);
        CHECK_INT(bi.packed_bytes, bi.nbytes); /* every tensor is a multiple of 256 bytes */
        CHECK_NEAR(bi.nbytes / VRAM_MIB, mib, 0.05);
    }
}

static void wan21_t2v_14b(void) {
    vram_layout *L = catalog("wan2.1-t2v-14b", VRAM_DTYPE_UNKNOWN);
    vram_layout_info i = info_of(L);
    CHECK_STR(i.name, "wan2.1-t2v-14b");
    CHECK_STR(i.naming, "wan");
    CHECK_INT(i.dim, 5120);
    CHECK_INT(i.ffn_dim, 13824);
    CHECK_INT(i.heads, 40);
    CHECK_INT(i.expert_count, 1);
    CHECK_INT(i.file_count, 0);
    CHECK_INT(i.main_dtype, VRAM_DTYPE_BF16);
    CHECK_INT(i.tensor_count, 40 * 27 + 15);
    check_blocks(L, 40, 351394304, 670.2);
    vram_block_info b0 = block_of(L, 0);
    CHECK_INT(b0.nbytes, 351394304ull * 2);
    CHECK_INT(b0.linear_params, 8ull * 5120 * 5120 + 2ull * 5120 * 13824);
    CHECK_INT(b0.tensor_count, 27);
    CHECK_INT(b0.first_tensor, 0);
    CHECK_INT(block_of(L, 1).first_tensor, 27);
    CHECK_INT(i.total_params, 14288491584ull);
    CHECK_NEAR(i.total_bytes / 1e9, 28.58, 0.005);
    CHECK_INT(i.block_bytes + i.rest_bytes, i.total_bytes);
    CHECK_INT(params_with_prefix(L, "time_projection."), 157317120);
    CHECK_INT(params_with_prefix(L, "text_embedding."), 47196160);
    CHECK_INT(params_with_prefix(L, "time_embedding."), 27535360);
    CHECK_INT(i.text_emb_bytes, 47196160ull * 2);
    CHECK_INT(i.image_emb_bytes, 0);

    /* Packing follows module order; names and shapes are Wan's own. */
    vram_tensor_info t = {.size = sizeof t};
    CHECK_OK(vram_layout_tensor(L, 0, &t));
    CHECK_STR(t.name, "blocks.0.self_attn.q.weight");
    CHECK_INT(t.block_offset, 0);
    CHECK_INT(t.file_index, -1);
    CHECK_OK(vram_layout_tensor(L, 1, &t));
    CHECK_STR(t.name, "blocks.0.self_attn.q.bias");
    CHECK_INT(t.block_offset, 5120ull * 5120 * 2);
    t = tensor_named(L, "blocks.39.modulation");
    CHECK_INT(t.ndim, 3);
    CHECK_INT(t.shape[1], 6);
    CHECK_INT(t.block, 39);
    CHECK_INT(t.role, VRAM_ROLE_BLOCK);
    t = tensor_named(L, "patch_embedding.weight");
    CHECK_INT(t.ndim, 5);
    CHECK_INT(t.shape[1], 16);
    CHECK_INT(t.block, -1);
    t = tensor_named(L, "head.head.weight");
    CHECK_INT(t.shape[0], 64);
    CHECK_INT(tensor_named(L, "text_embedding.0.weight").role, VRAM_ROLE_TEXT_EMB);
    CHECK_INT(tensor_named(L, "time_projection.1.weight").role, VRAM_ROLE_OTHER);
    CHECK(vram_layout_find_tensor(L, "blocks.0.cross_attn.k_img.weight") == VRAM_E_NOT_FOUND);
    vram_layout_free(L);
}

static void wan21_i2v_14b(void) {
    vram_layout *L = catalog("wan2.1-i2v-14b", VRAM_DTYPE_BF16);
    vram_layout_info i = info_of(L);
    check_blocks(L, 40, 403838464, 770.3);
    CHECK_NEAR(i.total_bytes / 1e9, 32.79, 0.005);
    CHECK_INT(tensor_named(L, "patch_embedding.weight").shape[1], 36);
    CHECK_INT(tensor_named(L, "blocks.7.cross_attn.norm_k_img.weight").shape[0], 5120);
    CHECK_INT(params_with_prefix(L, "img_emb."), 8211200);
    CHECK_INT(i.image_emb_bytes, 8211200ull * 2);
    CHECK_INT(tensor_named(L, "img_emb.proj.4.bias").role, VRAM_ROLE_IMAGE_EMB);
    vram_layout_free(L);
}

static void wan21_t2v_1_3b(void) {
    vram_layout *L = catalog("wan2.1-t2v-1.3b", VRAM_DTYPE_BF16);
    vram_layout_info i = info_of(L);
    check_blocks(L, 30, 46440704, 88.6);
    CHECK_INT(i.dim, 1536);
    CHECK_INT(i.ffn_dim, 8960);
    CHECK_INT(i.heads, 12);
    CHECK_NEAR(i.total_bytes / 1e9, 2.84, 0.005);
    vram_layout_free(L);
}

static void wan22(void) {
    vram_layout *L = catalog("wan2.2-t2v-a14b", VRAM_DTYPE_BF16);
    vram_layout_info i = info_of(L);
    check_blocks(L, 40, 351394304, 670.2);
    CHECK_INT(i.expert_count, 2);
    CHECK_INT(tensor_named(L, "patch_embedding.weight").shape[1], 16);
    vram_layout_free(L);

    L = catalog("wan2.2-i2v-a14b", VRAM_DTYPE_BF16);
    i = info_of(L);
    check_blocks(L, 40, 351394304, 670.2);
    CHECK_INT(i.expert_count, 2);
    CHECK_INT(i.image_emb_bytes, 0);
    CHECK_INT(tensor_named(L, "patch_embedding.weight").shape[1], 36);
    CHECK(vram_layout_find_tensor(L, "blocks.0.cross_attn.k_img.weight") == VRAM_E_NOT_FOUND);
    vram_layout_free(L);

    L = catalog("wan2.2-ti2v-5b", VRAM_DTYPE_BF16);
    i = info_of(L);
    CHECK_INT(i.block_count, 30);
    CHECK_INT(i.dim, 3072);
    CHECK_INT(i.ffn_dim, 14336);
    CHECK_INT(i.heads, 24);
    CHECK_INT(i.expert_count, 1);
    CHECK_INT(tensor_named(L, "patch_embedding.weight").shape[1], 48);
    CHECK_INT(tensor_named(L, "head.head.weight").shape[0], 192);
    vram_layout_free(L);
}

static void dtypes(void) {
    /* fp8 checkpoints: Linear weights in blocks fp8, everything else bf16. */
    vram_layout *L = catalog("wan2.1-t2v-14b", VRAM_DTYPE_F8_E4M3);
    vram_layout_info i = info_of(L);
    double sum_mib = 0;
    for (int b = 0; b < i.block_count; b++) {
        vram_block_info bi = block_of(L, b);
        CHECK_INT(bi.params, 351394304);
        CHECK_INT(bi.nbytes, 351515648);
        CHECK_NEAR(bi.nbytes / VRAM_MIB, 335.23, 0.005);
        sum_mib += bi.nbytes / VRAM_MIB;
    }
    CHECK_NEAR(sum_mib, 13409.26, 0.005);
    CHECK_NEAR(i.block_bytes / VRAM_MIB, 13409.26, 0.005);
    CHECK_INT(i.main_dtype, VRAM_DTYPE_F8_E4M3);
    CHECK_INT(tensor_named(L, "blocks.3.ffn.0.weight").dtype, VRAM_DTYPE_F8_E4M3);
    CHECK_INT(tensor_named(L, "blocks.3.ffn.0.bias").dtype, VRAM_DTYPE_BF16);
    CHECK_INT(tensor_named(L, "blocks.3.modulation").dtype, VRAM_DTYPE_BF16);
    CHECK_INT(tensor_named(L, "text_embedding.0.weight").dtype, VRAM_DTYPE_BF16);
    vram_layout_free(L);

    L = catalog("wan2.1-t2v-1.3b", VRAM_DTYPE_F32);
    CHECK_INT(block_of(L, 0).nbytes, 46440704ull * 4);
    CHECK_INT(tensor_named(L, "blocks.0.modulation").dtype, VRAM_DTYPE_F32);
    vram_layout_free(L);

    L = catalog("wan2.1-t2v-1.3b", VRAM_DTYPE_F16);
    CHECK_INT(info_of(L).main_dtype, VRAM_DTYPE_F16);
    vram_layout_free(L);

    L = NULL;
    CHECK_INT(vram_layout_from_catalog("wan2.1-t2v-14b", VRAM_DTYPE_I8, &L), VRAM_E_UNSUPPORTED);
    CHECK(strstr(vram_last_error(), "I8") != NULL);
    CHECK(L == NULL);
}

static void umt5(void) {
    vram_layout *L = catalog("umt5-xxl", VRAM_DTYPE_BF16);
    vram_layout_info i = info_of(L);
    CHECK_STR(i.naming, "t5");
    CHECK_INT(i.block_count, 24);
    CHECK_INT(i.dim, 4096);
    CHECK_INT(i.ffn_dim, 10240);
    CHECK_INT(i.heads, 64);
    CHECK_INT(i.total_params, 5680910336ull);
    CHECK_NEAR(i.total_params / 1e9, 5.68, 0.005);
    CHECK_NEAR(i.total_bytes / 1e9, 11.36, 0.005);
    CHECK_INT(i.rest_bytes, (256384ull * 4096 + 4096) * 2);
    CHECK_INT(block_of(L, 0).params, 192948224);
    CHECK_INT(tensor_named(L, "encoder.block.23.layer.0.SelfAttention.relative_attention_bias.weight")
                  .shape[1],
              64);
    CHECK_INT(tensor_named(L, "shared.weight").block, -1);
    vram_layout_free(L);
}

static void listing(void) {
    CHECK_INT(vram_catalog_count(), 7);
    CHECK_STR(vram_catalog_name(0), "wan2.1-t2v-14b");
    CHECK_STR(vram_catalog_description(0), "Wan2.1 text-to-video 14B transformer (40 blocks, dim 5120)");
    for (int k = 0; k < vram_catalog_count(); k++) {
        CHECK(vram_catalog_description(k) && strchr(vram_catalog_description(k), '\n') == NULL);
        vram_layout *L = catalog(vram_catalog_name(k), VRAM_DTYPE_UNKNOWN);
        CHECK_STR(info_of(L).name, vram_catalog_name(k));
        vram_layout_free(L);
    }
    CHECK(vram_catalog_name(-1) == NULL);
    CHECK(vram_catalog_name(7) == NULL);
    CHECK(vram_catalog_description(99) == NULL);
    vram_layout *L = catalog("Wan2.1_T2V_1.3B", VRAM_DTYPE_UNKNOWN); /* loose spelling */
    CHECK_INT(info_of(L).block_count, 30);
    vram_layout_free(L);
    L = NULL;
    CHECK_INT(vram_layout_from_catalog("wan9-giant", VRAM_DTYPE_BF16, &L), VRAM_E_NOT_FOUND);
    CHECK(strstr(vram_last_error(), "wan9-giant") != NULL);
    CHECK_INT(vram_layout_from_catalog(NULL, VRAM_DTYPE_BF16, &L), VRAM_E_INVALID);
}

int main(void) {
    wan21_t2v_14b();
    wan21_i2v_14b();
    wan21_t2v_1_3b();
    wan22();
    dtypes();
    umt5();
    listing();
    CHECK_DONE();
}
