/* vram_plan_explain: the seed's debug log in Chinese (same lines, same
 * number format), its English twin, and the JSON with everything. */
#include "check.h"
#include "internal.h"

#include <cjson/cJSON.h>

static bool starts_with(const char *s, const char *prefix) {
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = s ? strlen(s) : 0, m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The seed's example machine: an RTX 5090 with 2 GB in use, 64 GB DRAM. */
static vram_hw *seed_hw(void) {
    vram_hw *hw = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    CHECK_OK(vram_hw_simulate_gpu(hw, 0, "RTX 5090"));
    CHECK_OK(vram_hw_set_vram(hw, 0, 32606.6, 2048.0));
    CHECK_OK(vram_hw_set_dram(hw, 65379.6, 39256.2));
    return hw;
}

static vram_plan *make_plan(const char *model, const vram_plan_options *o) {
    vram_hw *hw = seed_hw();
    vram_layout *l = NULL;
    vram_plan *p = NULL;
    CHECK_OK(vram_layout_from_catalog(model, VRAM_DTYPE_BF16, &l));
    CHECK_OK(vram_plan_create(l, hw, o, &p));
    /* the plan keeps what it saw: explain needs neither */
    vram_layout_free(l);
    vram_hw_free(hw);
    return p;
}

static char *explain(const vram_plan *p, int format) {
    char *text = NULL;
    CHECK_OK(vram_plan_explain(p, format, &text));
    return text;
}

static void test_zh_auto(void) {
    vram_plan *p = make_plan("wan2.1-t2v-1.3b", NULL);
    char *t = explain(p, VRAM_EXPLAIN_ZH);
    CHECK(starts_with(t, "[VRAM] 当前状态:\n"
                         "  VRAM: 2048.0/32606.6MB (6.3%)\n"
                         "  DRAM: 26123.4/65379.6MB (40.0%)\n"
                         "\n"
                         "[VRAM] VRAM-DRAM 平衡分析:\n"
                         "  GPU: RTX 5090\n"
                         "  VRAM 总量: 32606.6MB\n"
                         "  VRAM 已用: 2048.0MB\n"
                         "  VRAM 可用: 27297.9MB (预留 10% 安全边际)\n"
                         "  VRAM 阈值: 16303.3MB (50%)\n"
                         "  DRAM 可用: 39256.2MB (使用率 40.0%)\n"
                         "  总可用: 66554.1MB\n"
                         "\n"
                         "[VRAM] 自动配置:\n"
                         "  分块数: 0\n"
                         "  CUDA 流: 0\n"
                         "  带宽目标: 100%\n"
                         "\n"
                         "[VRAM] 执行计划:\n"));
    CHECK(ends_with(t, "\n\n✓ 智能 VRAM 管理已启用\n"));
    CHECK(strstr(t, "  常驻块: 30 (") != NULL);
    CHECK(strstr(t, "): 0-29\n") != NULL);
    CHECK(strstr(t, "  流式块: 0 (0.0MB 每次前向): 无\n") != NULL);
    CHECK(strstr(t, "32760 tokens") != NULL);
    CHECK(strstr(t, "  预测每步: ") != NULL);
    vram_free(t);
    vram_plan_free(p);
}

static void test_zh_manual_and_en(void) {
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = 30;
    o.num_cuda_streams = 4;
    o.bandwidth_target = 0.9;
    vram_plan *p = make_plan("wan2.1-t2v-14b", &o);
    char *t = explain(p, VRAM_EXPLAIN_ZH);
    CHECK(strstr(t, "\n[VRAM] 手动配置:\n"
                    "  分块数: 30\n"
                    "  CUDA 流: 4\n"
                    "  带宽目标: 90%\n") != NULL);
    CHECK(strstr(t, "  流式块: 30 (") != NULL);
    CHECK(strstr(t, "排列: ") != NULL);
    CHECK(strstr(t, "  设备槽位: ") != NULL);
    CHECK(strstr(t, "  存储层: 锁页 30 (") != NULL);
    CHECK(strstr(t, "  预测峰值 VRAM: ") != NULL);
    CHECK(strstr(t, "  预测每次前向（连续）: ") != NULL);
    CHECK(ends_with(t, "✓ 智能 VRAM 管理已启用\n"));
    vram_free(t);

    t = explain(p, VRAM_EXPLAIN_EN);
    CHECK(starts_with(t, "[VRAM] Current state:\n"
                         "  VRAM: 2048.0/32606.6MB (6.3%)\n"
                         "  DRAM: 26123.4/65379.6MB (40.0%)\n"
                         "\n"
                         "[VRAM] VRAM-DRAM balance:\n"
                         "  GPU: RTX 5090\n"
                         "  VRAM total: 32606.6MB\n"
                         "  VRAM used: 2048.0MB\n"
                         "  VRAM available: 27297.9MB (10% safety reserve)\n"
                         "  VRAM threshold: 16303.3MB (50%)\n"
                         "  DRAM available: 39256.2MB (usage 40.0%)\n"
                         "  Total available: 66554.1MB\n"
                         "\n"
                         "[VRAM] Manual configuration:\n"
                         "  Blocks swapped: 30\n"
                         "  CUDA streams: 4\n"
                         "  Bandwidth target: 90%\n"));
    CHECK(strstr(t, "  Streamed blocks: 30 (") != NULL);
    CHECK(strstr(t, "  Predicted per forward (back to back): ") != NULL);
    CHECK(ends_with(t, "\n✓ Intelligent VRAM management enabled\n"));
    vram_free(t);
    vram_plan_free(p);
}

static void test_json(void) {
    vram_plan *p = make_plan("wan2.1-i2v-14b", NULL);
    vram_plan_summary s = {.size = sizeof s};
    CHECK_OK(vram_plan_get_summary(p, &s));
    char *t = explain(p, VRAM_EXPLAIN_JSON);
    cJSON *root = cJSON_Parse(t);
    CHECK(root != NULL);
    cJSON *sum = cJSON_GetObjectItem(root, "summary");
    CHECK_INT(cJSON_GetObjectItem(sum, "streamed_count")->valueint, s.streamed_count);
    CHECK_INT(cJSON_GetObjectItem(sum, "slot_count")->valueint, s.slot_count);
    CHECK_NEAR(cJSON_GetObjectItem(sum, "predicted_forward_ms")->valuedouble,
               s.predicted_forward_ms, 1e-6);
    CHECK_NEAR(cJSON_GetObjectItem(sum, "predicted_peak_bytes")->valuedouble,
               (double)s.predicted_peak_bytes, 0);
    CHECK(cJSON_IsString(cJSON_GetObjectItem(sum, "arrangement")));
    /* passes_per_step: the step is two forwards with guidance */
    CHECK_NEAR(cJSON_GetObjectItem(sum, "predicted_step_ms")->valuedouble, s.predicted_step_ms,
               1e-6);
    CHECK(s.predicted_step_ms >= 2 * s.predicted_forward_ms - 1e-6);
    cJSON *opts = cJSON_GetObjectItem(root, "options");
    CHECK_INT(cJSON_GetObjectItem(opts, "width")->valueint, 832);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(opts, "auto_hardware_tuning")));
    cJSON *hwj = cJSON_GetObjectItem(root, "hardware");
    CHECK_STR(cJSON_GetObjectItem(hwj, "gpu_name")->valuestring, "RTX 5090");
    cJSON *model = cJSON_GetObjectItem(root, "model");
    CHECK_INT(cJSON_GetObjectItem(model, "dim")->valueint, 5120);
    cJSON *blocks = cJSON_GetObjectItem(root, "blocks");
    CHECK_INT(cJSON_GetArraySize(blocks), 40);
    int streamed = 0;
    cJSON *b;
    cJSON_ArrayForEach(b, blocks) {
        if (strcmp(cJSON_GetObjectItem(b, "placement")->valuestring, "streamed") == 0) {
            streamed++;
            CHECK(strcmp(cJSON_GetObjectItem(b, "tier")->valuestring, "device") != 0);
        }
    }
    CHECK_INT(streamed, s.streamed_count);
    cJSON_Delete(root);
    vram_free(t);
    vram_plan_free(p);
}

static void test_passes(void) {
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.passes_per_step = 1;
    vram_plan *p = make_plan("wan2.1-t2v-1.3b", &o);
    vram_plan_summary s = {.size = sizeof s};
    CHECK_OK(vram_plan_get_summary(p, &s));
    char *t = explain(p, VRAM_EXPLAIN_EN);
    char want[128];
    snprintf(want, sizeof want, "  Predicted per step: %.1fms (1 forward(s), then a sync)\n",
             s.predicted_step_ms);
    CHECK(strstr(t, want) != NULL);
    vram_free(t);
    vram_plan_free(p);
}

static void test_errors(void) {
    vram_plan *p = make_plan("wan2.1-t2v-1.3b", NULL);
    char *t = (char *)"x";
    CHECK_INT(vram_plan_explain(p, 7, &t), VRAM_E_RANGE);
    CHECK(t == NULL);
    CHECK_INT(vram_plan_explain(NULL, VRAM_EXPLAIN_ZH, &t), VRAM_E_INVALID);
    CHECK_INT(vram_plan_explain(p, VRAM_EXPLAIN_ZH, NULL), VRAM_E_INVALID);
    vram_plan_free(p);
}

int main(void) {
    test_zh_auto();
    test_zh_manual_and_en();
    test_json();
    test_passes();
    test_errors();
    CHECK_DONE();
}
