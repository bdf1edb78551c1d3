/* catalog.c - built-in layouts: the Wan transformers and the umt5-xxl text
 * encoder, tensor by tensor with the original checkpoint names and shapes,
 * so a plan can be made before any file is downloaded. */
#include "layout_internal.h"

#include <stdio.h>

typedef struct wan_config {
    int dim, ffn, layers, in_dim, out_dim;
    bool image; /* Wan2.1 I2V: k_img/v_img/norm_k_img per block and img_emb */
} wan_config;

typedef enum { ARCH_WAN, ARCH_UMT5 } arch;

static const struct catalog_entry {
    const char *name, *description;
    arch arch;
    wan_config wan;
    int experts;
} catalog[] = {
    {"wan2.1-t2v-14b", "Wan2.1 text-to-video 14B transformer (40 blocks, dim 5120)", ARCH_WAN,
     {5120, 13824, 40, 16, 16, false}, 1},
    {"wan2.1-i2v-14b",
     "Wan2.1 image-to-video 14B transformer (40 blocks, dim 5120, CLIP image embedder)", ARCH_WAN,
     {5120, 13824, 40, 36, 16, true}, 1},
    {"wan2.1-t2v-1.3b", "Wan2.1 text-to-video 1.3B transformer (30 blocks, dim 1536)", ARCH_WAN,
     {1536, 8960, 30, 16, 16, false}, 1},
    {"wan2.2-t2v-a14b",
     "Wan2.2 text-to-video A14B, one of its 2 experts (40 blocks, dim 5120)", ARCH_WAN,
     {5120, 13824, 40, 16, 16, false}, 2},
    {"wan2.2-i2v-a14b",
     "Wan2.2 image-to-video A14B, one of its 2 experts (40 blocks, dim 5120)", ARCH_WAN,
     {5120, 13824, 40, 36, 16, false}, 2},
    {"wan2.2-ti2v-5b", "Wan2.2 text/image-to-video 5B transformer (30 blocks, dim 3072)",
     ARCH_WAN, {3072, 14336, 30, 48, 48, false}, 1},
    {"umt5-xxl", "umt5-xxl text encoder of Wan (24 blocks, d_model 4096, encoder only)",
     ARCH_UMT5, {0}, 1},
};

#define CATALOG_COUNT ((int)(sizeof catalog / sizeof *catalog))

int vram_catalog_count(void) { return CATALOG_COUNT; }

const char *vram_catalog_name(int index) {
    return index >= 0 && index < CATALOG_COUNT ? catalog[index].name : NULL;
}

const char *vram_catalog_description(int index) {
    return index >= 0 && index < CATALOG_COUNT ? catalog[index].description : NULL;
}

/* Adds tensors in checkpoint order at running offsets of a virtual
 * contiguous file, so packing follows declaration order. */
typedef struct builder {
    vram_layout *L;
    char prefix[32]; /* "blocks.N." while adding a block */
    vram_dtype linear_dtype, other_dtype;
    uint64_t offset;
    int st;
} builder;

static void add(builder *b, const char *name, bool block_linear, int ndim, const int64_t *shape) {
    if (b->st)
        return;
    char full[160];
    snprintf(full, sizeof full, "%s%s", b->prefix, name);
    vram_dtype dt = block_linear && b->prefix[0] ? b->linear_dtype : b->other_dtype;
    b->st = layout_add_tensor(b->L, full, dt, ndim, shape, -1, b->offset);
    if (!b->st)
        b->offset += b->L->tensors[b->L->info.tensor_count - 1].nbytes;
}

static void vec(builder *b, const char *name, int64_t n) { add(b, name, false, 1, &n); }

static void norm(builder *b, const char *name, int64_t n, bool bias) {
    char s[96];
    snprintf(s, sizeof s, "%s.weight", name);
    vec(b, s, n);
    if (bias) {
        snprintf(s, sizeof s, "%s.bias", name);
        vec(b, s, n);
    }
}

static void linear(builder *b, const char *name, int64_t out, int64_t in, bool bias) {
    char s[96];
    snprintf(s, sizeof s, "%s.weight", name);
    add(b, s, true, 2, (int64_t[]){out, in});
    if (bias) {
        snprintf(s, sizeof s, "%s.bias", name);
        vec(b, s, out);
    }
}

/* WanSelfAttention / WanCrossAttention / WanI2VCrossAttention. */
static void wan_attention(builder *b, const char *name, int64_t dim, bool image) {
    static const char *const proj[] = {"q", "k", "v", "o", "k_img", "v_img"};
    char s[64];
    for (int i = 0; i < (image ? 6 : 4); i++) {
        snprintf(s, sizeof s, "%s.%s", name, proj[i]);
        linear(b, s, dim, dim, true);
        if (i == 3) { /* the RMSNorms follow o in module order */
            snprintf(s, sizeof s, "%s.norm_q", name);
            norm(b, s, dim, false);
            snprintf(s, sizeof s, "%s.norm_k", name);
            norm(b, s, dim, false);
        }
    }
    if (image) {
        snprintf(s, sizeof s, "%s.norm_k_img", name);
        norm(b, s, dim, false);
    }
}

static void wan_model(builder *b, const wan_config *w) {
    const int64_t d = w->dim, text_dim = 4096, freq_dim = 256, clip_dim = 1280;
    add(b, "patch_embedding.weight", false, 5, (int64_t[]){d, w->in_dim, 1, 2, 2});
    vec(b, "patch_embedding.bias", d);
    linear(b, "text_embedding.0", d, text_dim, true);
    linear(b, "text_embedding.2", d, d, true);
    linear(b, "time_embedding.0", d, freq_dim, true);
    linear(b, "time_embedding.2", d, d, true);
    linear(b, "time_projection.1", 6 * d, d, true);
    for (int i = 0; i < w->layers; i++) {
        snprintf(b->prefix, sizeof b->prefix, "blocks.%d.", i);
        wan_attention(b, "self_attn", d, false);
        norm(b, "norm3", d, true);
        wan_attention(b, "cross_attn", d, w->image);
        linear(b, "ffn.0", w->ffn, d, true);
        linear(b, "ffn.2", d, w->ffn, true);
        add(b, "modulation", false, 3, (int64_t[]){1, 6, d});
    }
    b->prefix[0] = '\0';
    linear(b, "head.head", (int64_t)w->out_dim * 4, d, true); /* patch 1x2x2 */
    add(b, "head.modulation", false, 3, (int64_t[]){1, 2, d});
    if (w->image) { /* MLPProj: LayerNorm, Linear, GELU, Linear, LayerNorm */
        norm(b, "img_emb.proj.0", clip_dim, true);
        linear(b, "img_emb.proj.1", clip_dim, clip_dim, true);
        linear(b, "img_emb.proj.3", d, clip_dim, true);
        norm(b, "img_emb.proj.4", d, true);
    }
}

/* Hugging Face UMT5EncoderModel names: every layer has its own relative
 * attention bias (32 buckets x 64 heads); the FFN is gated GELU. */
static void umt5_xxl(builder *b) {
    const int64_t d = 4096, ff = 10240, vocab = 256384, heads = 64, buckets = 32;
    add(b, "shared.weight", false, 2, (int64_t[]){vocab, d});
    for (int i = 0; i < 24; i++) {
        snprintf(b->prefix, sizeof b->prefix, "encoder.block.%d.", i);
        linear(b, "layer.0.SelfAttention.q", d, d, false);
        linear(b, "layer.0.SelfAttention.k", d, d, false);
        linear(b, "layer.0.SelfAttention.v", d, d, false);
        linear(b, "layer.0.SelfAttention.o", d, d, false);
        add(b, "layer.0.SelfAttention.relative_attention_bias.weight", false, 2,
            (int64_t[]){buckets, heads});
        norm(b, "layer.0.layer_norm", d, false);
        linear(b, "layer.1.DenseReluDense.wi_0", ff, d, false);
        linear(b, "layer.1.DenseReluDense.wi_1", ff, d, false);
        linear(b, "layer.1.DenseReluDense.wo", d, ff, false);
        norm(b, "layer.1.layer_norm", d, false);
    }
    b->prefix[0] = '\0';
    vec(b, "encoder.final_layer_norm.weight", d);
}

int vram_layout_from_catalog(const char *name, vram_dtype dtype, vram_layout **out) {
    if (!name || !out)
        return vram_fail(VRAM_E_INVALID, "vram_layout_from_catalog: name or out is NULL");
    *out = NULL;
    const struct catalog_entry *e = NULL;
    for (int i = 0; i < CATALOG_COUNT && !e; i++)
        if (vram_name_matches(name, catalog[i].name))
            e = &catalog[i];
    if (!e) {
        char names[256] = "";
        for (int i = 0, n = 0; i < CATALOG_COUNT && n >= 0 && (size_t)n < sizeof names; i++)
            n += snprintf(names + n, sizeof names - (size_t)n, "%s%s", i ? ", " : "",
                          catalog[i].name);
        return vram_fail(VRAM_E_NOT_FOUND, "no model \"%.100s\" in the catalog (%s)", name,
                         names);
    }
    builder b = {.linear_dtype = dtype, .other_dtype = dtype};
    switch (dtype) {
    case VRAM_DTYPE_UNKNOWN:
        b.linear_dtype = b.other_dtype = VRAM_DTYPE_BF16;
        break;
    case VRAM_DTYPE_BF16:
    case VRAM_DTYPE_F16:
    case VRAM_DTYPE_F32:
        break;
    case VRAM_DTYPE_F8_E4M3:
    case VRAM_DTYPE_F8_E5M2: /* fp8 checkpoints keep norms, biases and the rest in bf16 */
        b.other_dtype = VRAM_DTYPE_BF16;
        break;
    default:
        return vram_fail(VRAM_E_UNSUPPORTED,
                         "catalog dtype %s is not supported (BF16, F16, F32, F8_E4M3, F8_E5M2)",
                         vram_dtype_name(dtype));
    }
    if (!(b.L = layout_new()))
        return vram_fail(VRAM_E_NOMEM, "out of memory for a layout");
    if (e->arch == ARCH_WAN)
        wan_model(&b, &e->wan);
    else
        umt5_xxl(&b);
    if (b.st || (b.st = layout_finish(b.L, e->name, e->name))) {
        vram_layout_free(b.L);
        return b.st;
    }
    b.L->info.expert_count = e->experts;
    *out = b.L;
    return VRAM_OK;
}
