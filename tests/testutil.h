/* testutil.h - helpers several C tests share: layout lookups that check as
 * they go, and writing small files under a test's temporary folder. */
#ifndef VRAM_TESTUTIL_H
#define VRAM_TESTUTIL_H

#include "check.h"
#include "vram.h"

#include <sys/stat.h>

static inline vram_layout_info info_of(const vram_layout *L) {
    vram_layout_info i = {.size = sizeof i};
    CHECK_OK(vram_layout_get_info(L, &i));
    return i;
}

static inline vram_block_info block_of(const vram_layout *L, int b) {
    vram_block_info bi = {.size = sizeof bi};
    CHECK_OK(vram_layout_block(L, b, &bi));
    return bi;
}

static inline vram_tensor_info tensor_named(const vram_layout *L, const char *name) {
    vram_tensor_info t = {.size = sizeof t};
    int i = vram_layout_find_tensor(L, name);
    CHECK(i >= 0);
    if (i >= 0)
        CHECK_OK(vram_layout_tensor(L, i, &t));
    return t;
}

/* Writes `text` to dir/rel, creating the folders between. */
static inline void write_text(const char *dir, const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

#endif
