/* explain.c - the plan as the seed's debug log (Chinese or English) or as
 * JSON. The text keeps the seed's lines and numbers format exactly
 * ("[VRAM] 当前状态:", "  VRAM: used/totalMB (p%)", ...) and adds the plan
 * the library really made in the same style. Only the plan's own copy of
 * the memory numbers is used, so no hw is needed. */
#include "plan_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Labels per language; the layout of the text is shared. */
typedef struct explain_text {
    const char *state, *balance, *gpu, *vram_total, *vram_used, *vram_avail, *reserve,
        *threshold, *dram_avail, *dram_usage, *total_avail, *auto_cfg, *manual_cfg, *blocks,
        *streams, *bandwidth, *plan, *model, *block_word, *resident_word, *streamed_word,
        *video, *frames_word, *text_word, *resident, *streamed, *per_pass, *arrangement,
        *slots, *prefetch, *async, *sync, *tiers, *pinned, *pageable, *disk, *pinned_budget,
        *dram_usable, *rest, *offloaded, *activations, *tight, *peak, *budget, *early, *compute,
        *copy, *measured, *estimated, *forward, *all_resident, *copy_bound, *step, *passes,
        *none, *unknown, *enabled;
    const char *arrangements[VRAM_ARR_COUNT];
} explain_text;

static const explain_text text_zh = {
    .state = "[VRAM] 当前状态:",
    .balance = "[VRAM] VRAM-DRAM 平衡分析:",
    .gpu = "GPU",
    .vram_total = "VRAM 总量",
    .vram_used = "VRAM 已用",
    .vram_avail = "VRAM 可用",
    .reserve = "预留 %g%% 安全边际",
    .threshold = "VRAM 阈值",
    .dram_avail = "DRAM 可用",
    .dram_usage = "使用率",
    .total_avail = "总可用",
    .auto_cfg = "[VRAM] 自动配置:",
    .manual_cfg = "[VRAM] 手动配置:",
    .blocks = "分块数",
    .streams = "CUDA 流",
    .bandwidth = "带宽目标",
    .plan = "[VRAM] 执行计划:",
    .model = "模型",
    .block_word = "块",
    .resident_word = "常驻",
    .streamed_word = "流式",
    .video = "视频",
    .frames_word = "帧",
    .text_word = "文本",
    .resident = "常驻块",
    .streamed = "流式块",
    .per_pass = "每次前向",
    .arrangement = "排列",
    .slots = "设备槽位",
    .prefetch = "预取深度",
    .async = "异步拷贝",
    .sync = "同步拷贝 (CUDA 优化关闭)",
    .tiers = "存储层",
    .pinned = "锁页",
    .pageable = "可分页",
    .disk = "磁盘",
    .pinned_budget = "锁页预算",
    .dram_usable = "DRAM 可用于流式",
    .rest = "GPU 上的其余权重",
    .offloaded = "已卸载嵌入",
    .activations = "激活估计",
    .tight = "显存紧张: 激活按 PyTorch 实际分配量规划, 不含其缓存; 若显存不足, 请降低分辨率或帧数",
    .peak = "预测峰值 VRAM",
    .budget = "预算",
    .early = "嵌入阶段",
    .compute = "每块计算",
    .copy = "每块拷贝",
    .measured = "实测",
    .estimated = "估计",
    .forward = "预测每次前向（连续）",
    .all_resident = "全部常驻",
    .copy_bound = "拷贝下限",
    .step = "预测每步",
    .passes = "次前向，然后同步",
    .none = "无",
    .unknown = "未知",
    .enabled = "✓ 智能 VRAM 管理已启用",
    .arrangements = {"均匀分散", "最后 N 块", "最前 N 块", "均匀分散，末块流式"},
};

static const explain_text text_en = {
    .state = "[VRAM] Current state:",
    .balance = "[VRAM] VRAM-DRAM balance:",
    .gpu = "GPU",
    .vram_total = "VRAM total",
    .vram_used = "VRAM used",
    .vram_avail = "VRAM available",
    .reserve = "%g%% safety reserve",
    .threshold = "VRAM threshold",
    .dram_avail = "DRAM available",
    .dram_usage = "usage",
    .total_avail = "Total available",
    .auto_cfg = "[VRAM] Automatic configuration:",
    .manual_cfg = "[VRAM] Manual configuration:",
    .blocks = "Blocks swapped",
    .streams = "CUDA streams",
    .bandwidth = "Bandwidth target",
    .plan = "[VRAM] Plan:",
    .model = "Model",
    .block_word = "blocks",
    .resident_word = "resident",
    .streamed_word = "streamed",
    .video = "Video",
    .frames_word = "frames",
    .text_word = "text",
    .resident = "Resident blocks",
    .streamed = "Streamed blocks",
    .per_pass = "per forward",
    .arrangement = "arrangement",
    .slots = "Device slots",
    .prefetch = "prefetch depth",
    .async = "async copies",
    .sync = "synchronous copies (CUDA optimization off)",
    .tiers = "Tiers",
    .pinned = "pinned",
    .pageable = "pageable",
    .disk = "disk",
    .pinned_budget = "Pinned budget",
    .dram_usable = "DRAM usable for streaming",
    .rest = "Other weights on the GPU",
    .offloaded = "embedders offloaded",
    .activations = "Activations (estimate)",
    .tight = "tight: activations planned at the bytes they allocate, without torch's cache; if "
             "VRAM runs out, lower the resolution or frames",
    .peak = "Predicted peak VRAM",
    .budget = "budget",
    .early = "embedding phase",
    .compute = "Compute per block",
    .copy = "Copy per block",
    .measured = "measured",
    .estimated = "estimated",
    .forward = "Predicted per forward (back to back)",
    .all_resident = "all resident",
    .copy_bound = "copy bound",
    .step = "Predicted per step",
    .passes = "forward(s), then a sync",
    .none = "none",
    .unknown = "unknown",
    .enabled = "✓ Intelligent VRAM management enabled",
    .arrangements = {"spread", "last N", "first N", "spread, last block streamed"},
};

static double mb(uint64_t bytes) { return (double)bytes / VRAM_MIB; }

/* "1, 3, 5-9" for the blocks with the given placement. */
static void block_list(vram_strbuf *b, const vram_plan *plan, int placement, const char *none) {
    int n = plan->sum.block_count, printed = 0;
    for (int i = 0; i < n;) {
        if (plan->blocks[i].placement != placement) {
            i++;
            continue;
        }
        int j = i;
        while (j + 1 < n && plan->blocks[j + 1].placement == placement)
            j++;
        vram_strbuf_printf(b, printed ? ", " : "");
        if (j > i)
            vram_strbuf_printf(b, "%d-%d", i, j);
        else
            vram_strbuf_printf(b, "%d", i);
        printed++;
        i = j + 1;
    }
    if (!printed)
        vram_strbuf_printf(b, "%s", none);
}

static int count_tier(const vram_plan *plan, int tier) {
    int c = 0;
    for (int i = 0; i < plan->sum.block_count; i++)
        c += plan->blocks[i].placement == VRAM_PLACE_STREAMED && plan->blocks[i].tier == tier;
    return c;
}

static void explain_text_format(vram_strbuf *b, const vram_plan *plan, const explain_text *t) {
    const vram_plan_summary *s = &plan->sum;
    const vram_plan_options *o = &plan->opts;
    const vram_plan_memory *m = &plan->mem;
    double total = mb(s->vram_total_bytes), used = mb(s->vram_used_bytes);
    double dram_total = mb(m->dram_total_bytes), dram_avail = mb(m->dram_available_bytes);
    double dram_used = dram_total > dram_avail ? dram_total - dram_avail : 0;
    double dram_pct = dram_total > 0 ? dram_used / dram_total * 100 : 0;

    vram_strbuf_printf(b, "%s\n", t->state);
    vram_strbuf_printf(b, "  VRAM: %.1f/%.1fMB (%.1f%%)\n", used, total,
                       total > 0 ? used / total * 100 : 0);
    if (m->dram_known)
        vram_strbuf_printf(b, "  DRAM: %.1f/%.1fMB (%.1f%%)\n", dram_used, dram_total, dram_pct);
    else
        vram_strbuf_printf(b, "  DRAM: %s\n", t->unknown);

    vram_strbuf_printf(b, "\n%s\n", t->balance);
    vram_strbuf_printf(b, "  %s: %s\n", t->gpu, m->gpu_name);
    vram_strbuf_printf(b, "  %s: %.1fMB\n", t->vram_total, total);
    vram_strbuf_printf(b, "  %s: %.1fMB\n", t->vram_used, used);
    vram_strbuf_printf(b, "  %s: %.1fMB (", t->vram_avail, mb(s->budget_bytes));
    vram_strbuf_printf(b, t->reserve, o->safety_reserve_percent);
    vram_strbuf_printf(b, ")\n");
    vram_strbuf_printf(b, "  %s: %.1fMB (%g%%)\n", t->threshold, mb(s->threshold_bytes),
                       o->vram_threshold_percent);
    vram_strbuf_printf(b, "  %s: %.1fMB (%s %.1f%%)\n", t->dram_avail, dram_avail, t->dram_usage,
                       dram_pct);
    vram_strbuf_printf(b, "  %s: %.1fMB\n", t->total_avail, mb(s->budget_bytes) + dram_avail);

    vram_strbuf_printf(b, "\n%s\n", s->manual ? t->manual_cfg : t->auto_cfg);
    vram_strbuf_printf(b, "  %s: %d\n", t->blocks, s->streamed_count);
    vram_strbuf_printf(b, "  %s: %d\n", t->streams, s->copy_streams);
    vram_strbuf_printf(b, "  %s: %.0f%%\n", t->bandwidth, s->bandwidth_target * 100);

    vram_strbuf_printf(b, "\n%s\n", t->plan);
    vram_strbuf_printf(b, "  %s: %s (%d %s: %d %s, %d %s; dim %d%s)\n", t->model,
                       plan->model_name, s->block_count, t->block_word, s->resident_count,
                       t->resident_word, s->streamed_count, t->streamed_word, plan->dim,
                       plan->dim_estimated ? "~" : "");
    vram_strbuf_printf(b, "  %s: %dx%d, %d %s -> %d tokens (%s %d tokens)\n", t->video, o->width,
                       o->height, o->frames, t->frames_word, s->tokens, t->text_word,
                       o->text_tokens);
    vram_strbuf_printf(b, "  %s: %d (%.1fMB): ", t->resident, s->resident_count,
                       mb(s->resident_bytes));
    block_list(b, plan, VRAM_PLACE_RESIDENT, t->none);
    vram_strbuf_printf(b, "\n  %s: %d (%.1fMB %s): ", t->streamed, s->streamed_count,
                       mb(s->streamed_bytes), t->per_pass);
    block_list(b, plan, VRAM_PLACE_STREAMED, t->none);
    if (s->streamed_count)
        vram_strbuf_printf(b, " (%s: %s)", t->arrangement, t->arrangements[plan->arrangement]);
    vram_strbuf_printf(b, "\n");
    if (s->streamed_count) {
        vram_strbuf_printf(b, "  %s: %d x %.1fMB, %s %d, %s\n", t->slots, s->slot_count,
                           s->slot_count ? mb(s->slot_bytes) / s->slot_count : 0, t->prefetch,
                           s->prefetch_depth, s->async_copies ? t->async : t->sync);
        vram_strbuf_printf(b, "  %s: %s %d (%.1fMB), %s %d (%.1fMB), %s %d (%.1fMB)\n", t->tiers,
                           t->pinned, count_tier(plan, VRAM_TIER_PINNED), mb(s->pinned_bytes),
                           t->pageable, count_tier(plan, VRAM_TIER_PAGEABLE),
                           mb(s->pageable_bytes), t->disk, count_tier(plan, VRAM_TIER_DISK),
                           mb(s->disk_bytes));
    }
    vram_strbuf_printf(b, "  %s: %.1fMB, %s: %.1fMB (%.0f%%)\n", t->pinned_budget,
                       mb(s->pinned_budget_bytes), t->dram_usable, mb(s->dram_usable_bytes),
                       o->dram_usable_fraction * 100);
    vram_strbuf_printf(b, "  %s: %.1fMB (%s %.1fMB)\n", t->rest, mb(s->rest_bytes), t->offloaded,
                       mb(s->offloaded_rest_bytes));
    vram_strbuf_printf(b, "  %s: %.1fMB\n", t->activations, mb(s->activation_bytes));
    if (s->tight_activations)
        vram_strbuf_printf(b, "  %s\n", t->tight);
    vram_strbuf_printf(b, "  %s: %.1fMB / %s %.1fMB (%s %.1fMB)\n", t->peak,
                       mb(s->predicted_peak_bytes), t->budget, mb(s->budget_bytes), t->early,
                       mb(plan->early_peak_bytes));
    vram_strbuf_printf(b, "  %s: %.2fms (%s)", t->compute, s->block_compute_ms,
                       s->compute_measured ? t->measured : t->estimated);
    if (s->streamed_count)
        vram_strbuf_printf(b, ", %s: %.2fms @ %.1f GB/s (%s)", t->copy, s->block_copy_ms,
                           s->h2d_gbps, s->h2d_measured ? t->measured : t->estimated);
    vram_strbuf_printf(b, "\n  %s: %.1fms (%s %.1fms, %s %.1fms)\n", t->forward,
                       s->predicted_forward_ms, t->all_resident, s->resident_forward_ms,
                       t->copy_bound, s->copy_bound_ms);
    vram_strbuf_printf(b, "  %s: %.1fms (%d %s)\n", t->step, s->predicted_step_ms,
                       o->passes_per_step, t->passes);
    vram_strbuf_printf(b, "\n%s\n", t->enabled);
}

static const char *tier_name(int tier) {
    static const char *names[] = {"device", "pinned", "pageable", "disk"};
    return tier >= 0 && tier <= VRAM_TIER_DISK ? names[tier] : "unknown";
}

/* cJSON_Add* return NULL when out of memory: every add is checked, so the
 * JSON is either complete or not produced. */
#define ADD(call) (ok = ((call) != NULL) && ok)

static bool add_summary(cJSON *o, const vram_plan_summary *s) {
    bool ok = true;
#define NUM(field) ADD(cJSON_AddNumberToObject(o, #field, (double)s->field))
#define BOOL(field) ADD(cJSON_AddBoolToObject(o, #field, s->field))
    BOOL(manual);
    BOOL(fits);
    NUM(block_count);
    NUM(resident_count);
    NUM(streamed_count);
    NUM(vace_streamed_count);
    NUM(slot_count);
    NUM(prefetch_depth);
    NUM(copy_streams);
    NUM(bandwidth_target);
    BOOL(async_copies);
    BOOL(pinned_memory);
    NUM(vram_total_bytes);
    NUM(vram_used_bytes);
    NUM(budget_bytes);
    NUM(threshold_bytes);
    NUM(resident_bytes);
    NUM(rest_bytes);
    NUM(offloaded_rest_bytes);
    NUM(slot_bytes);
    NUM(activation_bytes);
    NUM(predicted_peak_bytes);
    NUM(streamed_bytes);
    NUM(pinned_budget_bytes);
    NUM(pinned_bytes);
    NUM(pageable_bytes);
    NUM(disk_bytes);
    NUM(dram_usable_bytes);
    NUM(h2d_gbps);
    BOOL(h2d_measured);
    NUM(block_compute_ms);
    BOOL(compute_measured);
    NUM(block_copy_ms);
    NUM(predicted_forward_ms);
    NUM(predicted_step_ms);
    BOOL(tight_activations);
    NUM(resident_forward_ms);
    NUM(copy_bound_ms);
    NUM(tokens);
#undef NUM
#undef BOOL
    return ok;
}

static bool add_options(cJSON *o, const vram_plan_options *s) {
    bool ok = true;
#define NUM(field) ADD(cJSON_AddNumberToObject(o, #field, (double)s->field))
#define BOOL(field) ADD(cJSON_AddBoolToObject(o, #field, s->field))
    NUM(gpu_index);
    NUM(vram_threshold_percent);
    NUM(safety_reserve_percent);
    NUM(dram_usable_fraction);
    NUM(width);
    NUM(height);
    NUM(frames);
    NUM(text_tokens);
    NUM(passes_per_step);
    BOOL(auto_hardware_tuning);
    NUM(blocks_to_swap);
    NUM(num_cuda_streams);
    NUM(bandwidth_target);
    NUM(vace_blocks_to_swap);
    BOOL(offload_txt_emb);
    BOOL(offload_img_emb);
    BOOL(enable_cuda_optimization);
    BOOL(enable_dram_optimization);
    NUM(measured_h2d_gbps);
    NUM(measured_block_ms);
    NUM(max_pinned_mb);
    NUM(disk_gbps);
#undef NUM
#undef BOOL
    return ok;
}

static int explain_json(const vram_plan *plan, char **out) {
    const vram_plan_memory *m = &plan->mem;
    cJSON *root = cJSON_CreateObject();
    cJSON *sum = cJSON_AddObjectToObject(root, "summary");
    cJSON *opts = cJSON_AddObjectToObject(root, "options");
    cJSON *mem = cJSON_AddObjectToObject(root, "hardware");
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON *blocks = cJSON_AddArrayToObject(root, "blocks");
    if (!root || !sum || !opts || !mem || !model || !blocks)
        return vram_json_print(root, false, true, "the plan's JSON", out);
    bool ok = add_summary(sum, &plan->sum);
    ADD(cJSON_AddStringToObject(sum, "arrangement", vram_arrangement_name(plan->arrangement)));
    ADD(cJSON_AddNumberToObject(sum, "block_phase_peak_bytes", (double)plan->block_peak_bytes));
    ADD(cJSON_AddNumberToObject(sum, "embedding_phase_peak_bytes",
                                (double)plan->early_peak_bytes));
    ok = add_options(opts, &plan->opts) && ok;
    ADD(cJSON_AddStringToObject(mem, "gpu_name", m->gpu_name));
    ADD(cJSON_AddBoolToObject(mem, "gpu_simulated", m->gpu_simulated));
    ADD(cJSON_AddNumberToObject(mem, "bf16_tflops", m->bf16_tflops));
    ADD(cJSON_AddBoolToObject(mem, "tflops_known", m->tflops_known));
    ADD(cJSON_AddNumberToObject(mem, "pinned_gbps", m->pinned_gbps));
    ADD(cJSON_AddNumberToObject(mem, "pageable_gbps", m->pageable_gbps));
    ADD(cJSON_AddNumberToObject(mem, "disk_gbps", m->disk_gbps));
    ADD(cJSON_AddBoolToObject(mem, "bandwidth_known", m->bandwidth_known));
    ADD(cJSON_AddBoolToObject(mem, "dram_known", m->dram_known));
    ADD(cJSON_AddNumberToObject(mem, "dram_total_bytes", (double)m->dram_total_bytes));
    ADD(cJSON_AddNumberToObject(mem, "dram_available_bytes", (double)m->dram_available_bytes));
    ADD(cJSON_AddBoolToObject(mem, "dram_cgroup", m->dram_cgroup));
    ADD(cJSON_AddBoolToObject(mem, "dram_simulated", m->dram_simulated));
    ADD(cJSON_AddStringToObject(model, "name", plan->model_name));
    ADD(cJSON_AddNumberToObject(model, "dim", plan->dim));
    ADD(cJSON_AddNumberToObject(model, "ffn_dim", plan->ffn_dim));
    ADD(cJSON_AddBoolToObject(model, "dim_estimated", plan->dim_estimated));
    ADD(cJSON_AddNumberToObject(model, "rest_bytes", (double)plan->rest_total_bytes));
    for (int i = 0; i < plan->sum.block_count; i++) {
        const vram_block_plan *bp = &plan->blocks[i];
        cJSON *b = cJSON_CreateObject();
        if (!b || !cJSON_AddItemToArray(blocks, b)) {
            cJSON_Delete(b);
            ok = false;
            break;
        }
        ADD(cJSON_AddNumberToObject(b, "block", bp->block));
        ADD(cJSON_AddStringToObject(b, "group", plan->vace[i] ? "vace" : "blocks"));
        ADD(cJSON_AddStringToObject(b, "placement", bp->placement == VRAM_PLACE_STREAMED
                                                        ? "streamed"
                                                        : "resident"));
        ADD(cJSON_AddStringToObject(b, "tier", tier_name(bp->tier)));
        ADD(cJSON_AddNumberToObject(b, "slot", bp->slot));
        ADD(cJSON_AddNumberToObject(b, "copy_ms", bp->copy_ms));
        ADD(cJSON_AddNumberToObject(b, "compute_ms", bp->compute_ms));
        ADD(cJSON_AddNumberToObject(b, "predicted_copy_start_ms", bp->predicted_copy_start_ms));
        ADD(cJSON_AddNumberToObject(b, "predicted_compute_start_ms",
                                    bp->predicted_compute_start_ms));
    }
    return vram_json_print(root, ok, true, "the plan's JSON", out);
}

int vram_plan_explain(const vram_plan *plan, int format, char **out) {
    if (out)
        *out = NULL;
    if (!plan || !out)
        return vram_fail(VRAM_E_INVALID, "vram_plan_explain: plan and out must be non-NULL");
    if (format == VRAM_EXPLAIN_JSON)
        return explain_json(plan, out);
    if (format != VRAM_EXPLAIN_ZH && format != VRAM_EXPLAIN_EN)
        return vram_fail(VRAM_E_RANGE, "format is %d, allowed 0 (zh), 1 (en) or 2 (json)",
                         format);
    vram_strbuf b = {0};
    explain_text_format(&b, plan, format == VRAM_EXPLAIN_ZH ? &text_zh : &text_en);
    return vram_strbuf_finish(&b, out);
}
