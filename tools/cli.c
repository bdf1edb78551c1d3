/* cli.c - parser of the `vram` command line: a table of options, strict
 * number parsing, one clear message per mistake. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cli_usage[] =
    "usage: vram <command> [options]\n"
    "\n"
    "commands:\n"
    "  stats              VRAM and DRAM use (the seed's fields)\n"
    "  probe              everything known about the GPUs and DRAM\n"
    "  gpus               built-in GPU profiles (for --gpu)\n"
    "  models             built-in model layouts (for --model)\n"
    "  inspect FILE       layout of a .safetensors file or *.safetensors.index.json\n"
    "  plan --model M     plan the VRAM-DRAM-disk balance for model M (file or name)\n"
    "  bench              measure host<->device bandwidth and cache it for the planner\n"
    "  version            print the version\n"
    "\n"
    "hardware (stats, probe, plan):\n"
    "  --gpu NAME                 simulate a built-in GPU profile\n"
    "  --vram-total MB --vram-used MB   simulate VRAM numbers\n"
    "  --dram-total MB --dram-available MB  simulate DRAM numbers\n"
    "plan:\n"
    "  --model FILE|NAME  --dtype bf16|fp16|fp32|fp8_e4m3fn|fp8_e5m2 (catalog models)\n"
    "  --width W --height H --frames F    video size (default 832x480x81); a text\n"
    "                     encoder's prompt pass: --width 512 --height 256 --frames 1 --passes 1\n"
    "  --threshold P      vram_threshold_percent, 10-95 (default 50)\n"
    "  --passes N         forward passes per sampling step, 1-4 (default 2: CFG)\n"
    "  --manual           manual configuration (auto_hardware_tuning off)\n"
    "  --blocks-to-swap N --streams N (1-16) --bandwidth X (0.1-1.0)\n"
    "  --vace-blocks N (0 to the model's VACE blocks; 15 in Wan's VACE)\n"
    "                     (these four imply --manual: auto mode reads none)\n"
    "  --offload-txt-emb  --offload-img-emb\n"
    "  --no-cuda-opt      synchronous copies (enable_cuda_optimization off; no --streams)\n"
    "  --no-dram-opt      no pinned memory (enable_dram_optimization off; no --max-pinned)\n"
    "  --measured-bandwidth GBS   host-to-device GB/s to plan with\n"
    "  --measured-block-ms MS   measured compute time per block\n"
    "  --max-pinned MB    cap on pinned DRAM\n"
    "  --debug            the seed's debug log   --lang zh|en (with --debug; default zh)\n"
    "output:\n"
    "  --json             machine-readable output   --tensors (inspect: list tensors)\n"
    "bench:\n"
    "  --backend auto|cuda|host  --size MB (default 256)  --streams N  --no-save\n";

enum opt_kind { OPT_FLAG, OPT_INT, OPT_DOUBLE, OPT_STRING, OPT_DTYPE, OPT_LANG, OPT_BACKEND };

/* Which commands accept an option (bit per cli_command). */
#define CMD(c) (1u << (c))
#define HW_CMDS (CMD(CLI_STATS) | CMD(CLI_PROBE) | CMD(CLI_PLAN))

typedef struct opt_spec {
    const char *name;
    enum opt_kind kind;
    size_t offset;   /* into cli_args */
    double min, max; /* numbers, unless plan_option gives libvram's range */
    unsigned commands;
    bool manual;     /* --manual (plan options imply it when libvram marks them
                        manual_only) */
    size_t flag_offset; /* bool set when given (0 = none) */
    const char *plan_option; /* the numeric plan option it sets (NULL = none) */
} opt_spec;

#define OFF(field) offsetof(cli_args, field)
/* Sets the numeric plan option `field`, within libvram's range for it. */
#define PLAN_NUM(flag, kind, field) \
    {flag, kind, OFF(plan.field), 0, 0, CMD(CLI_PLAN), false, 0, #field}
/* An option whose 0 means "not set": a value given is above 0. */
#define PLAN_SET(flag, field, given) \
    {flag, OPT_DOUBLE, OFF(plan.field), 0, 0, CMD(CLI_PLAN), false, given, #field}
/* A video size option: a text encoder's plan notes when none is given. */
#define PLAN_SIZE(flag, field) \
    {flag, OPT_INT, OFF(plan.field), 0, 0, CMD(CLI_PLAN), false, OFF(have_size), #field}
static const opt_spec specs[] = {
    {"--gpu", OPT_STRING, OFF(gpu), 0, 0, HW_CMDS, false, 0, NULL},
    {"--vram-total", OPT_DOUBLE, OFF(vram_total_mb), 1, 1e8, HW_CMDS, false, OFF(have_vram_total),
     NULL},
    {"--vram-used", OPT_DOUBLE, OFF(vram_used_mb), 0, 1e8, HW_CMDS, false, OFF(have_vram_used),
     NULL},
    {"--dram-total", OPT_DOUBLE, OFF(dram_total_mb), 1, 1e9, HW_CMDS, false, OFF(have_dram_total),
     NULL},
    {"--dram-available", OPT_DOUBLE, OFF(dram_available_mb), 1, 1e9, HW_CMDS, false,
     OFF(have_dram_available), NULL},
    PLAN_SET("--measured-bandwidth", measured_h2d_gbps, 0),
    {"--model", OPT_STRING, OFF(model), 0, 0, CMD(CLI_PLAN), false, 0, NULL},
    {"--dtype", OPT_DTYPE, OFF(dtype), 0, 0, CMD(CLI_PLAN) | CMD(CLI_MODELS), false, 0, NULL},
    PLAN_SIZE("--width", width),
    PLAN_SIZE("--height", height),
    PLAN_SIZE("--frames", frames),
    PLAN_NUM("--threshold", OPT_DOUBLE, vram_threshold_percent),
    PLAN_NUM("--passes", OPT_INT, passes_per_step),
    {"--manual", OPT_FLAG, OFF(manual_flag_given), 0, 0, CMD(CLI_PLAN), true, 0, NULL},
    PLAN_NUM("--blocks-to-swap", OPT_INT, blocks_to_swap),
    {"--streams", OPT_INT, OFF(plan.num_cuda_streams), 0, 0, CMD(CLI_PLAN), false,
     OFF(have_streams), "num_cuda_streams"},
    PLAN_NUM("--bandwidth", OPT_DOUBLE, bandwidth_target),
    PLAN_NUM("--vace-blocks", OPT_INT, vace_blocks_to_swap),
    {"--offload-txt-emb", OPT_FLAG, OFF(plan.offload_txt_emb), 0, 0, CMD(CLI_PLAN), false, 0,
     NULL},
    {"--offload-img-emb", OPT_FLAG, OFF(plan.offload_img_emb), 0, 0, CMD(CLI_PLAN), false, 0,
     NULL},
    PLAN_SET("--measured-block-ms", measured_block_ms, 0),
    PLAN_SET("--max-pinned", max_pinned_mb, OFF(have_max_pinned)),
    {"--debug", OPT_FLAG, OFF(debug), 0, 0, CMD(CLI_PLAN), false, 0, NULL},
    {"--lang", OPT_LANG, OFF(lang), 0, 0, CMD(CLI_PLAN), false, OFF(have_lang), NULL},
    {"--json", OPT_FLAG, OFF(json), 0, 0, ~0u, false, 0, NULL},
    {"--tensors", OPT_FLAG, OFF(tensors), 0, 0, CMD(CLI_INSPECT), false, 0, NULL},
    {"--backend", OPT_BACKEND, OFF(backend), 0, 0, CMD(CLI_BENCH), false, 0, NULL},
    {"--size", OPT_DOUBLE, OFF(bench_mb), 1, 65536, CMD(CLI_BENCH), false, 0, NULL},
    {"--no-save", OPT_FLAG, OFF(no_save), 0, 0, CMD(CLI_BENCH), false, 0, NULL},
};

/* Options whose meaning is a negation of a plan switch. */
static const struct {
    const char *name;
    size_t offset;
} negations[] = {
    {"--no-cuda-opt", OFF(plan.enable_cuda_optimization)},
    {"--no-dram-opt", OFF(plan.enable_dram_optimization)},
};

static const struct {
    const char *name;
    cli_command command;
} commands[] = {
    {"help", CLI_HELP},       {"--help", CLI_HELP},   {"-h", CLI_HELP},
    {"version", CLI_VERSION}, {"--version", CLI_VERSION}, {"stats", CLI_STATS},
    {"probe", CLI_PROBE},     {"gpus", CLI_GPUS},     {"models", CLI_MODELS},
    {"inspect", CLI_INSPECT}, {"plan", CLI_PLAN},     {"bench", CLI_BENCH},
};

static int failf(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static bool parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static void set_manual(cli_args *a) {
    a->manual_flag_given = true;
    a->plan.auto_hardware_tuning = false;
}

static int parse_value(const opt_spec *sp, const char *value, cli_args *a, char *err,
                       size_t errlen) {
    char *field = (char *)a + sp->offset;
    double v;
    switch (sp->kind) {
    case OPT_STRING:
        if (!*value)
            return failf(err, errlen, "%s: the value is empty", sp->name);
        *(const char **)field = value;
        return 0;
    case OPT_DTYPE: {
        vram_dtype t = vram_dtype_from_name(value);
        if (t == VRAM_DTYPE_UNKNOWN)
            return failf(err, errlen, "%s: unknown dtype '%s' (bf16, fp16, fp32, fp8_e4m3fn, "
                                      "fp8_e5m2)", sp->name, value);
        *(vram_dtype *)field = t;
        return 0;
    }
    case OPT_LANG:
        if (strcmp(value, "zh") == 0)
            *(int *)field = VRAM_EXPLAIN_ZH;
        else if (strcmp(value, "en") == 0)
            *(int *)field = VRAM_EXPLAIN_EN;
        else
            return failf(err, errlen, "%s: '%s' is not zh or en", sp->name, value);
        return 0;
    case OPT_BACKEND:
        if (strcmp(value, "auto") == 0)
            *(int *)field = VRAM_BACKEND_AUTO;
        else if (strcmp(value, "cuda") == 0)
            *(int *)field = VRAM_BACKEND_CUDA;
        else if (strcmp(value, "host") == 0)
            *(int *)field = VRAM_BACKEND_HOST;
        else
            return failf(err, errlen, "%s: '%s' is not auto, cuda or host", sp->name, value);
        return 0;
    case OPT_INT:
    case OPT_DOUBLE:
        if (!parse_double(value, &v))
            return failf(err, errlen, "%s: '%s' is not a number", sp->name, value);
        if (sp->kind == OPT_INT && v != floor(v))
            return failf(err, errlen, "%s: '%s' is not a whole number", sp->name, value);
        vram_option_range r = {.size = sizeof r, .min = sp->min, .max = sp->max};
        if (sp->plan_option && vram_plan_option_range(sp->plan_option, &r) != VRAM_OK)
            return failf(err, errlen, "%s: %s", sp->name, vram_last_error());
        /* libvram raises 15 for a model with more VACE blocks (the plan checks
         * against the model); blocks_to_swap's bound keeps it an int. */
        if (sp->offset == OFF(plan.vace_blocks_to_swap) &&
            vram_plan_option_range("blocks_to_swap", &r) != VRAM_OK)
            return failf(err, errlen, "%s: %s", sp->name, vram_last_error());
        if (v < r.min || v > r.max)
            return failf(err, errlen, "%s: %s is out of range (%g-%g)", sp->name, value, r.min,
                         r.max);
        if (v <= r.min && (r.min_excluded || r.zero_unset))
            return failf(err, errlen, "%s: %s must be above %g", sp->name, value, r.min);
        if (sp->kind == OPT_INT)
            *(int *)field = (int)v;
        else
            *(double *)field = v;
        if (r.manual_only)
            set_manual(a);
        return 0;
    case OPT_FLAG:
        break;
    }
    return failf(err, errlen, "%s: internal option table error", sp->name);
}

int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    vram_plan_options_init(&a->plan);
    a->lang = VRAM_EXPLAIN_ZH;
    a->backend = VRAM_BACKEND_AUTO;
    a->bench_mb = 256;
    if (argc < 2) {
        a->command = CLI_HELP;
        return 0;
    }
    bool found = false;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            a->command = commands[i].command;
            found = true;
        }
    if (!found)
        return failf(err, errlen, "unknown command '%s' (try 'vram help')", argv[1]);

    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] != '-') {
            if (a->command == CLI_INSPECT && !a->file) {
                if (!*arg)
                    return failf(err, errlen, "inspect: the FILE is empty");
                a->file = arg;
                continue;
            }
            return failf(err, errlen, "unexpected argument '%s'", arg);
        }
        bool matched = false;
        for (size_t n = 0; n < sizeof negations / sizeof negations[0]; n++)
            if (strcmp(arg, negations[n].name) == 0) {
                if (a->command != CLI_PLAN)
                    return failf(err, errlen, "%s applies to 'plan' only", arg);
                *(bool *)((char *)a + negations[n].offset) = false;
                matched = true;
            }
        if (matched)
            continue;
        /* --streams is shared by plan (copy streams) and bench (max streams). */
        if (a->command == CLI_BENCH && strcmp(arg, "--streams") == 0) {
            static const opt_spec bench_streams = {"--streams", OPT_INT, OFF(bench_streams),
                                                   1, 16, CMD(CLI_BENCH), false, 0, NULL};
            if (i + 1 >= argc)
                return failf(err, errlen, "%s needs a value", arg);
            if (parse_value(&bench_streams, argv[++i], a, err, errlen))
                return -1;
            continue;
        }
        const opt_spec *sp = NULL;
        for (size_t n = 0; n < sizeof specs / sizeof specs[0]; n++)
            if (strcmp(arg, specs[n].name) == 0)
                sp = &specs[n];
        if (!sp)
            return failf(err, errlen, "unknown option '%s' (try 'vram help')", arg);
        if (!(sp->commands & CMD(a->command)))
            return failf(err, errlen, "%s does not apply to '%s'", arg, argv[1]);
        if (sp->kind == OPT_FLAG) {
            *(bool *)((char *)a + sp->offset) = true;
        } else {
            if (i + 1 >= argc)
                return failf(err, errlen, "%s needs a value", arg);
            if (parse_value(sp, argv[++i], a, err, errlen))
                return -1;
        }
        if (sp->flag_offset)
            *(bool *)((char *)a + sp->flag_offset) = true;
        if (sp->manual)
            set_manual(a);
    }

    if (a->have_vram_used && !a->have_vram_total)
        return failf(err, errlen, "--vram-used needs --vram-total");
    if (a->vram_used_mb > a->vram_total_mb && a->have_vram_total)
        return failf(err, errlen, "--vram-used (%g MB) is more than --vram-total (%g MB)",
                     a->vram_used_mb, a->vram_total_mb);
    if (a->have_dram_available && !a->have_dram_total)
        return failf(err, errlen, "--dram-available needs --dram-total");
    if (!a->have_dram_available)
        a->dram_available_mb = a->dram_total_mb;
    if (a->dram_available_mb > a->dram_total_mb)
        return failf(err, errlen, "--dram-available (%g MB) is more than --dram-total (%g MB)",
                     a->dram_available_mb, a->dram_total_mb);
    if (a->gpu && a->have_vram_total)
        return failf(err, errlen, "--gpu and --vram-total both describe the GPU: give one");
    if (a->command == CLI_INSPECT && !a->file)
        return failf(err, errlen, "inspect needs a FILE (.safetensors or .index.json)");
    if (a->command == CLI_PLAN && !a->model)
        return failf(err, errlen, "plan needs --model FILE|NAME (see 'vram models')");
    /* Options that the switches given with them would leave unread. */
    if (a->have_streams && !a->plan.enable_cuda_optimization)
        return failf(err, errlen, "--streams sets copy streams, which --no-cuda-opt turns off");
    if (a->have_max_pinned && !a->plan.enable_dram_optimization)
        return failf(err, errlen, "--max-pinned caps pinned memory, which --no-dram-opt turns "
                                  "off");
    if (a->have_lang && !a->debug)
        return failf(err, errlen, "--lang is the language of --debug's log: give --debug");
    if (a->debug && a->json)
        return failf(err, errlen, "--debug and --json are two outputs: give one");
    /* The rest of libvram's rules (a width off its step): bad usage too;
     * the VACE count against the model is checked when the plan is made. */
    vram_plan_options rules = a->plan;
    rules.vace_blocks_to_swap = 0;
    if (a->command == CLI_PLAN && vram_plan_options_validate(&rules) != VRAM_OK)
        return failf(err, errlen, "%s", vram_last_error());
    return 0;
}
