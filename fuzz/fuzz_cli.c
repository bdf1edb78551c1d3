/* fuzz_cli.c - the `vram` command-line parser on arbitrary arguments.
 * Input: NUL-separated arguments (argv[1..]). */
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 1] = {"vram"};
    int argc = 1;
    for (size_t i = 0; i <= size && argc < MAX_ARGS;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    cli_args a;
    char err[512];
    if (cli_parse(argc, argv, &a, err, sizeof err) == 0 && a.command == CLI_PLAN)
        (void)vram_plan_options_validate(&a.plan);
    free(buf);
    return 0;
}
