/* vram - command line for libvram (subcommands filled in as they land). */
#include "vram.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("vram %s\n", vram_version_string());
        return 0;
    }
    fprintf(stderr, "usage: vram <command> ...\n");
    return 2;
}
