/* vram - the command line of libvram: stats, probe, models, inspect, plan,
 * bench. Exit status: 0 success, 1 the operation failed, 2 bad usage. */
#include "cli.h"
#include "vram.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)

static int report(int status, const char *what) {
    fprintf(stderr, "vram: %s: %s", what, vram_strerror(status));
    const char *detail = vram_last_error();
    if (detail && *detail)
        fprintf(stderr, ": %s", detail);
    fputc('\n', stderr);
    return 1;
}

/* Prints and frees a library-owned string. */
static void put_owned(char *text) {
    fputs(text, stdout);
    if (*text && text[strlen(text) - 1] != '\n')
        fputc('\n', stdout);
    vram_free(text);
}

/* Prints a JSON document and frees it. */
static int print_json(cJSON *doc, const char *what) {
    char *text = doc ? cJSON_Print(doc) : NULL;
    cJSON_Delete(doc);
    if (!text)
        return report(VRAM_E_NOMEM, what);
    puts(text);
    cJSON_free(text);
    return 0;
}

/* Probed hardware with the simulations the options ask for. */
static int build_hw(const cli_args *a, vram_hw **out) {
    bool simulated = a->gpu || a->have_vram_total;
    int st = simulated ? vram_hw_probe_dram_only(out) : vram_hw_probe(out);
    if (st)
        return st;
    if (a->gpu)
        st = vram_hw_simulate_gpu(*out, 0, a->gpu);
    if (!st && a->have_vram_total)
        st = vram_hw_set_vram(*out, 0, a->vram_total_mb, a->vram_used_mb);
    if (!st && a->have_dram_total)
        st = vram_hw_set_dram(*out, a->dram_total_mb, a->dram_available_mb);
    if (st) {
        vram_hw_free(*out);
        *out = NULL;
    }
    return st;
}

static int cmd_stats(const cli_args *a) {
    vram_hw *hw;
    int st = build_hw(a, &hw);
    if (st)
        return report(st, "probe");
    vram_memory_stats s;
    vram_memory_stats_init(&s);
    st = vram_memory_stats_get(hw, 0, &s);
    vram_hw_free(hw);
    if (st)
        return report(st, "stats");
    if (a->json) {
        char *json;
        if ((st = vram_memory_stats_json(&s, &json)))
            return report(st, "stats");
        put_owned(json);
        return 0;
    }
    if (s.vram_known)
        printf("GPU: %s\nVRAM: %.1f/%.1fMB (%.1f%%), free %.1fMB\n", s.gpu_name, s.vram_used_mb,
               s.vram_total_mb, s.vram_usage_percent, s.vram_free_mb);
    else
        printf("GPU: none found (simulate one with --gpu NAME or --vram-total MB)\n");
    if (s.dram_known)
        printf("DRAM: %.1f/%.1fMB (%.1f%%), available %.1fMB, limit %.1fMB\n", s.dram_used_mb,
               s.dram_total_mb, s.dram_usage_percent, s.dram_available_mb, s.dram_limit_mb);
    else
        printf("DRAM: unknown\n");
    return 0;
}

static void add_known_number(cJSON *o, bool known, const char *name, double v) {
    if (known)
        cJSON_AddNumberToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

/* Text form of a probe object: one "key value" line per field. */
static void print_fields(const cJSON *obj) {
    for (const cJSON *f = obj->child; f; f = f->next) {
        if (strcmp(f->string, "index") == 0)
            continue;
        if (cJSON_IsNull(f))
            printf("  %-20s unknown\n", f->string);
        else if (cJSON_IsString(f))
            printf("  %-20s %s\n", f->string, f->valuestring);
        else if (cJSON_IsBool(f))
            printf("  %-20s %s\n", f->string, cJSON_IsTrue(f) ? "yes" : "no");
        else
            printf("  %-20s %.6g\n", f->string, f->valuedouble);
    }
}

static int cmd_probe(const cli_args *a) {
    vram_hw *hw;
    int st = build_hw(a, &hw);
    if (st)
        return report(st, "probe");
    cJSON *root = cJSON_CreateObject(), *gpus = cJSON_AddArrayToObject(root, "gpus");
    int n = vram_hw_gpu_count(hw);
    for (int i = 0; i < n; i++) {
        vram_gpu_info g = {.size = sizeof g};
        if (vram_hw_gpu(hw, i, &g))
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", g.index);
        cJSON_AddBoolToObject(o, "simulated", g.simulated);
        if (g.name_known)
            cJSON_AddStringToObject(o, "name", g.name);
        if (g.uuid_known)
            cJSON_AddStringToObject(o, "uuid", g.uuid);
        add_known_number(o, g.memory_known, "total_mb", g.total_bytes / MIB);
        add_known_number(o, g.memory_known, "used_mb", g.used_bytes / MIB);
        add_known_number(o, g.memory_known, "free_mb", g.free_bytes / MIB);
        add_known_number(o, g.sm_count_known, "sm_count", g.sm_count);
        add_known_number(o, g.cc_known, "compute_capability", g.cc_major + g.cc_minor / 10.0);
        add_known_number(o, g.pcie_known, "pcie_gen_current", g.pcie_gen_current);
        add_known_number(o, g.pcie_known, "pcie_width_current", g.pcie_width_current);
        add_known_number(o, g.pcie_known, "pcie_gen_max", g.pcie_gen_max);
        add_known_number(o, g.pcie_known, "pcie_width_max", g.pcie_width_max);
        add_known_number(o, g.tflops_known, "bf16_tflops", g.bf16_tflops);
        add_known_number(o, g.bandwidth_known, "h2d_pinned_gbps", g.h2d_pinned_gbps);
        add_known_number(o, g.bandwidth_known, "h2d_pageable_gbps", g.h2d_pageable_gbps);
        cJSON_AddBoolToObject(o, "bandwidth_measured", g.bandwidth_measured);
        cJSON_AddStringToObject(o, "profile", g.profile);
        cJSON_AddItemToArray(gpus, o);
    }
    vram_dram_info d = {.size = sizeof d};
    cJSON *dram = cJSON_AddObjectToObject(root, "dram");
    if (vram_hw_dram(hw, &d) == VRAM_OK) {
        add_known_number(dram, d.meminfo_known, "total_mb", d.total_bytes / MIB);
        add_known_number(dram, d.meminfo_known, "available_mb", d.available_bytes / MIB);
        add_known_number(dram, d.cgroup_known, "cgroup_limit_mb", d.cgroup_limit_bytes / MIB);
        add_known_number(dram, d.cgroup_known, "cgroup_usage_mb", d.cgroup_usage_bytes / MIB);
        add_known_number(dram, d.swap_known, "swap_total_mb", d.swap_total_bytes / MIB);
        add_known_number(dram, d.swap_known, "swap_free_mb", d.swap_free_bytes / MIB);
        bool unlimited = d.memlock_limit_bytes == UINT64_MAX;
        if (d.memlock_known && unlimited)
            cJSON_AddStringToObject(dram, "memlock_limit_mb", "unlimited");
        else
            add_known_number(dram, d.memlock_known, "memlock_limit_mb",
                             d.memlock_limit_bytes / MIB);
        cJSON_AddBoolToObject(dram, "simulated", d.simulated);
    }
    vram_hw_free(hw);
    if (a->json)
        return print_json(root, "probe");
    cJSON *g;
    cJSON_ArrayForEach(g, gpus) {
        printf("GPU %d\n", cJSON_GetObjectItem(g, "index")->valueint);
        print_fields(g);
    }
    if (!cJSON_GetArraySize(gpus))
        printf("GPU: none found (no CUDA driver or no device)\n");
    printf("DRAM\n");
    print_fields(dram);
    cJSON_Delete(root);
    return 0;
}

static int cmd_gpus(const cli_args *a) {
    int n = vram_gpu_profile_count();
    cJSON *arr = a->json ? cJSON_CreateArray() : NULL;
    if (!a->json)
        printf("%-22s %10s %5s %8s %12s %10s\n", "name", "memory MB", "SMs", "PCIe",
               "bf16 TFLOPS", "H2D GB/s");
    for (int i = 0; i < n; i++) {
        vram_gpu_profile p = {.size = sizeof p};
        if (vram_gpu_profile_get(i, &p))
            continue;
        if (arr) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", p.name);
            cJSON_AddStringToObject(o, "aliases", p.aliases);
            cJSON_AddNumberToObject(o, "total_mb", p.total_bytes / MIB);
            cJSON_AddNumberToObject(o, "sm_count", p.sm_count);
            cJSON_AddNumberToObject(o, "pcie_gen", p.pcie_gen);
            cJSON_AddNumberToObject(o, "pcie_width", p.pcie_width);
            cJSON_AddNumberToObject(o, "bf16_tflops", p.bf16_tflops);
            cJSON_AddNumberToObject(o, "h2d_pinned_gbps", p.h2d_pinned_gbps);
            cJSON_AddNumberToObject(o, "h2d_pageable_gbps", p.h2d_pageable_gbps);
            cJSON_AddItemToArray(arr, o);
        } else {
            printf("%-22s %10.0f %5d  Gen%d x%-2d %12.0f %10.1f\n", p.name, p.total_bytes / MIB,
                   p.sm_count, p.pcie_gen, p.pcie_width, p.bf16_tflops, p.h2d_pinned_gbps);
        }
    }
    return arr ? print_json(arr, "gpus") : 0;
}

static void print_layout_text(const vram_layout *l) {
    vram_layout_info info = {.size = sizeof info};
    if (vram_layout_get_info(l, &info))
        return;
    printf("model: %s (%s naming)\n", info.name, info.naming);
    printf("tensors: %d in %d file(s), main dtype %s\n", info.tensor_count, info.file_count,
           vram_dtype_name(info.main_dtype));
    printf("parameters: %.3f B, %.2f GB (%.1f MiB)\n", info.total_params / 1e9,
           info.total_bytes / 1e9, info.total_bytes / MIB);
    printf("blocks: %d (%d transformer, %d VACE), %.1f MiB; rest %.1f MiB (text emb %.1f, "
           "image emb %.1f)\n",
           info.block_count, info.group_block_count[VRAM_GROUP_BLOCKS],
           info.group_block_count[VRAM_GROUP_VACE], info.block_bytes / MIB, info.rest_bytes / MIB,
           info.text_emb_bytes / MIB, info.image_emb_bytes / MIB);
    if (info.dim)
        printf("architecture: dim %d, ffn_dim %d, heads %d%s\n", info.dim, info.ffn_dim,
               info.heads, info.expert_count > 1 ? " (one expert of two)" : "");
    for (int b = 0; b < info.block_count; b++) {
        vram_block_info bi = {.size = sizeof bi};
        if (vram_layout_block(l, b, &bi))
            continue;
        printf("  %s.%-3d %4d tensors %14" PRIu64 " params %9.1f MiB\n",
               bi.group == VRAM_GROUP_VACE ? "vace_blocks" : "blocks", bi.group_index,
               bi.tensor_count, bi.params, bi.nbytes / MIB);
    }
}

static int cmd_models(const cli_args *a) {
    int n = vram_catalog_count();
    cJSON *arr = a->json ? cJSON_CreateArray() : NULL;
    for (int i = 0; i < n; i++) {
        vram_layout *l;
        int st = vram_layout_from_catalog(vram_catalog_name(i), a->dtype, &l);
        if (st) {
            cJSON_Delete(arr);
            return report(st, vram_catalog_name(i));
        }
        vram_layout_info info = {.size = sizeof info};
        vram_layout_get_info(l, &info);
        vram_block_info b0 = {.size = sizeof b0};
        vram_layout_block(l, 0, &b0);
        if (arr) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", vram_catalog_name(i));
            cJSON_AddStringToObject(o, "description", vram_catalog_description(i));
            cJSON_AddNumberToObject(o, "blocks", info.block_count);
            cJSON_AddNumberToObject(o, "block_params", (double)b0.params);
            cJSON_AddNumberToObject(o, "block_mib", b0.nbytes / MIB);
            cJSON_AddNumberToObject(o, "total_params", (double)info.total_params);
            cJSON_AddNumberToObject(o, "total_gb", info.total_bytes / 1e9);
            cJSON_AddStringToObject(o, "dtype", vram_dtype_name(info.main_dtype));
            cJSON_AddItemToArray(arr, o);
        } else {
            printf("%-18s %3d blocks x %8.1f MiB, %6.2f GB  %s\n", vram_catalog_name(i),
                   info.block_count, b0.nbytes / MIB, info.total_bytes / 1e9,
                   vram_catalog_description(i));
        }
        vram_layout_free(l);
    }
    return arr ? print_json(arr, "models") : 0;
}

static int cmd_inspect(const cli_args *a) {
    vram_layout *l;
    int st = vram_layout_open(a->file, &l);
    if (st)
        return report(st, a->file);
    if (a->json) {
        char *json;
        st = vram_layout_json(l, a->tensors, &json);
        if (!st)
            put_owned(json);
    } else {
        print_layout_text(l);
        if (a->tensors) {
            vram_layout_info info = {.size = sizeof info};
            vram_layout_get_info(l, &info);
            for (int t = 0; t < info.tensor_count; t++) {
                vram_tensor_info ti = {.size = sizeof ti};
                if (vram_layout_tensor(l, t, &ti))
                    continue;
                printf("  %-60s %-8s %12" PRIu64 " bytes block %d\n", ti.name,
                       vram_dtype_name(ti.dtype), ti.nbytes, ti.block);
            }
        }
    }
    vram_layout_free(l);
    return st ? report(st, a->file) : 0;
}

/* A path that exists, or that looks like one (a '/' or a model file's
 * extension: its error then names the file), is a model file; anything
 * else names a catalog entry. */
static int open_model(const cli_args *a, vram_layout **out) {
    static const char *const exts[] = {".safetensors", ".json"};
    bool path = access(a->model, F_OK) == 0 || strchr(a->model, '/');
    size_t n = strlen(a->model);
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        path |= n > strlen(exts[i]) && strcmp(a->model + n - strlen(exts[i]), exts[i]) == 0;
    if (path)
        return vram_layout_open(a->model, out);
    return vram_layout_from_catalog(a->model, a->dtype, out);
}

static void print_plan_short(const vram_plan *p) {
    vram_plan_summary s = {.size = sizeof s};
    vram_plan_options o = {.size = sizeof o};
    if (vram_plan_get_summary(p, &s) || vram_plan_get_options(p, &o))
        return;
    printf("mode: %s\n", s.manual ? "manual" : "auto");
    printf("blocks: %d resident, %d streamed (%d VACE) through %d slot(s), prefetch %d\n",
           s.resident_count, s.streamed_count, s.vace_streamed_count, s.slot_count,
           s.prefetch_depth);
    printf("copies: %d stream(s), bandwidth target %.0f%%, %s, %s memory\n", s.copy_streams,
           s.bandwidth_target * 100, s.async_copies ? "async" : "synchronous",
           s.pinned_memory ? "pinned" : "pageable");
    printf("streamed weights: %.1f MiB (pinned %.1f, pageable %.1f, disk %.1f)\n",
           s.streamed_bytes / MIB, s.pinned_bytes / MIB, s.pageable_bytes / MIB,
           s.disk_bytes / MIB);
    printf("peak VRAM: %.1f MiB of %.1f MiB budget (resident %.1f, rest %.1f, slots %.1f, "
           "activations %.1f)\n",
           s.predicted_peak_bytes / MIB, s.budget_bytes / MIB, s.resident_bytes / MIB,
           s.rest_bytes / MIB, s.slot_bytes / MIB, s.activation_bytes / MIB);
    if (s.tight_activations)
        printf("tight: activations planned at the bytes they allocate, without torch's cache; "
               "if VRAM runs out, lower the resolution or frames\n");
    printf("forward pass: %.1f ms predicted back to back (all resident %.1f ms, copy bound "
           "%.1f ms) at %d tokens\n",
           s.predicted_forward_ms, s.resident_forward_ms, s.copy_bound_ms, s.tokens);
    printf("sampling step: %.1f ms predicted (%d forward(s), then a sync)\n",
           s.predicted_step_ms, o.passes_per_step);
}

static int cmd_plan(const cli_args *a) {
    vram_layout *l;
    int st = open_model(a, &l);
    if (st)
        return report(st, a->model);
    vram_hw *hw;
    if ((st = build_hw(a, &hw))) {
        vram_layout_free(l);
        return report(st, "hardware");
    }
    vram_layout_info info = {.size = sizeof info};
    if (!a->have_size && vram_layout_get_info(l, &info) == VRAM_OK &&
        strcmp(info.naming, "t5") == 0)
        fprintf(stderr, "vram: note: %s is a text encoder, planned here for a video-sized pass; "
                        "its prompt pass is --width 512 --height 256 --frames 1 --passes 1\n",
                info.name);
    vram_plan *p;
    st = vram_plan_create(l, hw, &a->plan, &p);
    vram_hw_free(hw);
    vram_layout_free(l);
    if (st)
        return report(st, "plan");
    if (a->json || a->debug) {
        char *text;
        st = vram_plan_explain(p, a->json ? VRAM_EXPLAIN_JSON : a->lang, &text);
        if (!st)
            put_owned(text);
    } else {
        print_plan_short(p);
    }
    vram_plan_free(p);
    return st ? report(st, "explain") : 0;
}

static int cmd_bench(const cli_args *a) {
    vram_bandwidth_result r = {.size = sizeof r};
    int streams = a->bench_streams ? a->bench_streams : 4;
    int st = vram_bench_bandwidth(a->backend, 0, (uint64_t)(a->bench_mb * MIB), streams, &r);
    if (st)
        return report(st, "bench");
    const char *backend = r.backend == VRAM_BACKEND_CUDA ? "cuda" : "host";
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "backend", backend);
        cJSON_AddStringToObject(o, "gpu", r.gpu_name);
        cJSON_AddNumberToObject(o, "transfer_bytes", (double)r.transfer_bytes);
        cJSON_AddItemToObject(o, "h2d_pinned_gbps",
                              cJSON_CreateDoubleArray(r.h2d_pinned_gbps, r.max_streams));
        cJSON_AddItemToObject(o, "h2d_pageable_gbps",
                              cJSON_CreateDoubleArray(r.h2d_pageable_gbps, r.max_streams));
        cJSON_AddItemToObject(o, "d2h_pinned_gbps",
                              cJSON_CreateDoubleArray(r.d2h_pinned_gbps, r.max_streams));
        cJSON_AddItemToObject(o, "d2h_pageable_gbps",
                              cJSON_CreateDoubleArray(r.d2h_pageable_gbps, r.max_streams));
        if ((st = print_json(o, "bench")))
            return st;
    } else {
        printf("backend: %s  device: %s  transfer: %.0f MiB\n", backend,
               r.gpu_name[0] ? r.gpu_name : "(host memory)", r.transfer_bytes / MIB);
        printf("%8s %14s %14s %14s %14s\n", "streams", "H2D pinned", "H2D pageable",
               "D2H pinned", "D2H pageable");
        for (int k = 0; k < r.max_streams; k++)
            printf("%8d %11.2f GB/s %9.2f GB/s %9.2f GB/s %9.2f GB/s\n", k + 1,
                   r.h2d_pinned_gbps[k], r.h2d_pageable_gbps[k], r.d2h_pinned_gbps[k],
                   r.d2h_pageable_gbps[k]);
    }
    /* Only a real GPU's numbers are worth planning with. */
    if (!a->no_save && r.backend == VRAM_BACKEND_CUDA) {
        if ((st = vram_bench_save(&r)))
            return report(st, "saving the bench cache");
        if (!a->json)
            printf("saved for the planner (GPU %s)\n", r.gpu_uuid);
    }
    return 0;
}

int main(int argc, char **argv) {
    cli_args a;
    char err[512];
    if (cli_parse(argc, argv, &a, err, sizeof err)) {
        fprintf(stderr, "vram: %s\n", err);
        return 2;
    }
    switch (a.command) {
    case CLI_HELP:
        fputs(cli_usage, stdout);
        return 0;
    case CLI_VERSION:
        printf("vram %s\n", vram_version_string());
        return 0;
    case CLI_STATS:
        return cmd_stats(&a);
    case CLI_PROBE:
        return cmd_probe(&a);
    case CLI_GPUS:
        return cmd_gpus(&a);
    case CLI_MODELS:
        return cmd_models(&a);
    case CLI_INSPECT:
        return cmd_inspect(&a);
    case CLI_PLAN:
        return cmd_plan(&a);
    case CLI_BENCH:
        return cmd_bench(&a);
    }
    return 2;
}
