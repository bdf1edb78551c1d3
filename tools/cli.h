/* cli.h - the `vram` command line, parsed without side effects so the
 * parser can be fuzzed on its own (fuzz/fuzz_cli.c). */
#ifndef VRAM_CLI_H
#define VRAM_CLI_H

#include "vram.h"

typedef enum cli_command {
    CLI_HELP = 0,
    CLI_VERSION,
    CLI_STATS,
    CLI_PROBE,
    CLI_GPUS,
    CLI_MODELS,
    CLI_INSPECT,
    CLI_PLAN,
    CLI_BENCH
} cli_command;

typedef struct cli_args {
    cli_command command;
    const char *file;  /* inspect FILE */
    const char *model; /* plan --model FILE|NAME */
    vram_dtype dtype;  /* --dtype for catalog models */
    /* Hardware simulation. */
    const char *gpu;
    bool have_vram_total, have_vram_used;
    double vram_total_mb, vram_used_mb;
    bool have_dram_total, have_dram_available;
    double dram_total_mb, dram_available_mb; /* available defaults to total */
    /* Planner options (defaults from vram_plan_options_init). */
    vram_plan_options plan;
    bool manual_flag_given; /* a manual-only option implied --manual */
    bool have_streams, have_max_pinned, have_size; /* given: checked against the switches */
    /* Output. */
    bool json, debug, tensors;
    int lang; /* VRAM_EXPLAIN_ZH or VRAM_EXPLAIN_EN */
    bool have_lang;
    /* bench */
    int backend;
    double bench_mb;
    int bench_streams;
    bool no_save;
} cli_args;

/* Parses argv[1..]. On error returns non-zero with a one-line message in
 * `err` naming the option and the problem. */
int cli_parse(int argc, char **argv, cli_args *out, char *err, size_t errlen);

extern const char cli_usage[];

#endif
