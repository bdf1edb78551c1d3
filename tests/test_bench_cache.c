/* test_bench_cache.c - the bandwidth cache: round trip of every field, the
 * directory fallbacks, atomic replacement, and files that must not load. */
#define _GNU_SOURCE
#include "check.h"
#include "internal.h"

#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64];

static vram_bandwidth_result sample(const char *uuid) {
    vram_bandwidth_result r;
    memset(&r, 0, sizeof r);
    r.size = sizeof r;
    r.backend = VRAM_BACKEND_CUDA;
    snprintf(r.gpu_name, sizeof r.gpu_name, "NVIDIA H100 80GB HBM3");
    snprintf(r.gpu_uuid, sizeof r.gpu_uuid, "%s", uuid);
    r.transfer_bytes = 256ull << 20;
    r.max_streams = 16;
    for (int k = 0; k < 16; k++) {
        r.h2d_pinned_gbps[k] = 53.9 + k * 0.05;
        r.h2d_pageable_gbps[k] = 7.1 + k * 0.1;
        r.d2h_pinned_gbps[k] = 54.9 - k * 0.01;
        r.d2h_pageable_gbps[k] = 1.0 / 3.0 + k;
    }
    return r;
}

/* Field by field: struct copies need not keep padding. */
static bool same(const vram_bandwidth_result *a, const vram_bandwidth_result *b) {
    return a->size == b->size && a->backend == b->backend &&
           strcmp(a->gpu_name, b->gpu_name) == 0 && strcmp(a->gpu_uuid, b->gpu_uuid) == 0 &&
           a->transfer_bytes == b->transfer_bytes && a->max_streams == b->max_streams &&
           memcmp(a->h2d_pinned_gbps, b->h2d_pinned_gbps, sizeof a->h2d_pinned_gbps) == 0 &&
           memcmp(a->h2d_pageable_gbps, b->h2d_pageable_gbps, sizeof a->h2d_pageable_gbps) == 0 &&
           memcmp(a->d2h_pinned_gbps, b->d2h_pinned_gbps, sizeof a->d2h_pinned_gbps) == 0 &&
           memcmp(a->d2h_pageable_gbps, b->d2h_pageable_gbps, sizeof a->d2h_pageable_gbps) == 0;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int files_in(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void round_trip(void) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/a/b/c", root); /* created with parents */
    setenv("VRAM_CACHE_DIR", dir, 1);
    const char *uuid = "GPU-01234567-89ab-cdef-0123-456789abcdef";
    vram_bandwidth_result r = sample(uuid), back;
    CHECK_OK(vram_bench_save(&r));
    memset(&back, 0xab, sizeof back);
    back.size = sizeof back;
    CHECK_OK(vram_bench_load(uuid, &back));
    CHECK(same(&r, &back));
    CHECK_INT(files_in(dir), 1); /* no temporary left */
    char path[256];
    snprintf(path, sizeof path, "%s/%s.json", dir, uuid);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);

    /* Saving again replaces the file. */
    r.max_streams = 2;
    r.h2d_pinned_gbps[0] = 24.5;
    CHECK_OK(vram_bench_save(&r));
    CHECK_OK(vram_bench_load(uuid, &back));
    CHECK(same(&r, &back));
    CHECK_INT(files_in(dir), 1);

    CHECK_INT(vram_bench_load("GPU-ffffffff-0000-0000-0000-000000000000", &back),
              VRAM_E_NOT_FOUND);
    CHECK(strstr(vram_last_error(), "GPU-ffffffff") != NULL);
}

static void fallbacks(void) {
    const char *uuid = "GPU-fallback";
    vram_bandwidth_result r = sample(uuid), back = {.size = sizeof back};
    char xdg[128], home[128], path[256];
    snprintf(xdg, sizeof xdg, "%s/xdg", root);
    snprintf(home, sizeof home, "%s/home", root);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

    unsetenv("VRAM_CACHE_DIR");
    setenv("XDG_CACHE_HOME", xdg, 1);
    CHECK_OK(vram_bench_save(&r));
    snprintf(path, sizeof path, "%s/vram/%s.json", xdg, uuid);
    CHECK_INT(access(path, R_OK), 0);
    CHECK_OK(vram_bench_load(uuid, &back));
    CHECK(same(&r, &back));

    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", home, 1);
    CHECK_OK(vram_bench_save(&r));
    snprintf(path, sizeof path, "%s/.cache/vram/%s.json", home, uuid);
    CHECK_INT(access(path, R_OK), 0);

    unsetenv("HOME");
    CHECK_INT(vram_bench_save(&r), VRAM_E_NOT_FOUND);
    CHECK_INT(vram_bench_load(uuid, &back), VRAM_E_NOT_FOUND);
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
}

/* Files that do not validate are VRAM_E_FORMAT, never a crash. */
static void corrupt(void) {
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "%s/bad", root);
    setenv("VRAM_CACHE_DIR", dir, 1);
    const char *uuid = "GPU-bad";
    vram_bandwidth_result r = sample(uuid), back = {.size = sizeof back};
    CHECK_OK(vram_bench_save(&r));
    snprintf(path, sizeof path, "%s/%s.json", dir, uuid);

    /* The saved text cut in half. */
    FILE *f = fopen(path, "r");
    char good[8192] = "";
    size_t n = f ? fread(good, 1, sizeof good - 1, f) : 0;
    if (f)
        fclose(f);
    CHECK(n > 100);
    good[n / 2] = '\0';
    write_text(path, good);
    CHECK_INT(vram_bench_load(uuid, &back), VRAM_E_FORMAT);
    CHECK(strstr(vram_last_error(), path) != NULL);

    static const char *const bad[] = {
        "",
        "{not json",
        "[]",
        "null",
        "{}",
        "{\"version\":2}",
        /* each of the rest breaks one rule of an otherwise valid file */
        "{\"version\":1,\"backend\":2,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-bad\","
        "\"transfer_bytes\":1,\"max_streams\":17,\"h2d_pinned_gbps\":[],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}",
        "{\"version\":1,\"backend\":2,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-other\","
        "\"transfer_bytes\":1,\"max_streams\":1,\"h2d_pinned_gbps\":[],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}",
        "{\"version\":1,\"backend\":2,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-bad\","
        "\"transfer_bytes\":1,\"max_streams\":1,\"h2d_pinned_gbps\":[-1],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}",
        "{\"version\":1,\"backend\":2,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-bad\","
        "\"transfer_bytes\":1,\"max_streams\":1,\"h2d_pinned_gbps\":[\"fast\"],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}",
        "{\"version\":1,\"backend\":2,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-bad\","
        "\"transfer_bytes\":1,\"max_streams\":1,\"h2d_pinned_gbps\":"
        "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}",
        "{\"version\":1,\"backend\":2,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-bad\","
        "\"transfer_bytes\":1,\"max_streams\":1,\"h2d_pinned_gbps\":[1],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[]}",
        "{\"version\":1,\"backend\":2.5,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-bad\","
        "\"transfer_bytes\":1,\"max_streams\":1,\"h2d_pinned_gbps\":[1],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}",
        "{\"version\":1,\"backend\":2,\"gpu_name\":7,\"gpu_uuid\":\"GPU-bad\","
        "\"transfer_bytes\":1,\"max_streams\":1,\"h2d_pinned_gbps\":[1],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}",
        "{\"version\":1,\"backend\":2,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-bad\","
        "\"transfer_bytes\":1e300,\"max_streams\":1,\"h2d_pinned_gbps\":[1],"
        "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i]);
        memset(&back, 0, sizeof back);
        back.size = sizeof back;
        int st = vram_bench_load(uuid, &back);
        if (st != VRAM_E_FORMAT)
            fprintf(stderr, "bad file %zu loaded with %d\n", i, st);
        CHECK_INT(st, VRAM_E_FORMAT);
        CHECK_INT(back.max_streams, 0); /* nothing written on failure */
    }
    /* The minimal valid file: short series are zero-filled. */
    write_text(path, "{\"version\":1,\"backend\":2,\"gpu_name\":\"x\",\"gpu_uuid\":\"GPU-bad\","
                     "\"transfer_bytes\":1,\"max_streams\":1,\"h2d_pinned_gbps\":[3.5],"
                     "\"h2d_pageable_gbps\":[],\"d2h_pinned_gbps\":[],\"d2h_pageable_gbps\":[]}");
    CHECK_OK(vram_bench_load(uuid, &back));
    CHECK_NEAR(back.h2d_pinned_gbps[0], 3.5, 0);
    CHECK_NEAR(back.h2d_pinned_gbps[1], 0, 0);
    CHECK_STR(back.gpu_name, "x");

    /* A file too large to be ours. */
    char *big = malloc((2 << 20) + 1);
    CHECK(big != NULL);
    if (big) {
        memset(big, ' ', 2 << 20);
        big[2 << 20] = '\0';
        write_text(path, big);
        free(big);
        CHECK_INT(vram_bench_load(uuid, &back), VRAM_E_FORMAT);
    }

    /* A directory where the file should be. */
    unlink(path);
    CHECK_INT(mkdir(path, 0755), 0);
    CHECK(vram_bench_load(uuid, &back) != VRAM_OK);
    CHECK(vram_bench_save(&r) != VRAM_OK);
    rmdir(path);
}

static void arguments(void) {
    vram_bandwidth_result r = sample("GPU-x"), back = {.size = sizeof back};
    CHECK_INT(vram_bench_save(NULL), VRAM_E_INVALID);
    vram_bandwidth_result small = r;
    small.size = 4;
    CHECK_INT(vram_bench_save(&small), VRAM_E_INVALID);
    CHECK_INT(vram_bench_load("GPU-x", NULL), VRAM_E_INVALID);
    CHECK_INT(vram_bench_load(NULL, &back), VRAM_E_INVALID);
    CHECK_INT(vram_bench_load("", &back), VRAM_E_INVALID);
    CHECK_INT(vram_bench_load("../../etc/passwd", &back), VRAM_E_INVALID);
    snprintf(r.gpu_uuid, sizeof r.gpu_uuid, "GPU/../../x");
    CHECK_INT(vram_bench_save(&r), VRAM_E_INVALID);
    r.gpu_uuid[0] = '\0';
    CHECK_INT(vram_bench_save(&r), VRAM_E_INVALID);
    memset(r.gpu_uuid, 'a', sizeof r.gpu_uuid); /* no terminator */
    CHECK_INT(vram_bench_save(&r), VRAM_E_INVALID);

    /* Values a load would reject are refused before writing. */
    r = sample("GPU-range");
    r.max_streams = 0;
    CHECK_INT(vram_bench_save(&r), VRAM_E_RANGE);
    r.max_streams = 17;
    CHECK_INT(vram_bench_save(&r), VRAM_E_RANGE);
    r = sample("GPU-range");
    r.d2h_pageable_gbps[15] = -1;
    CHECK_INT(vram_bench_save(&r), VRAM_E_RANGE);
    CHECK(strstr(vram_last_error(), "d2h_pageable_gbps[15]") != NULL);
    r.d2h_pageable_gbps[15] = NAN;
    CHECK_INT(vram_bench_save(&r), VRAM_E_RANGE);
    CHECK_INT(vram_bench_load("GPU-range", &back), VRAM_E_NOT_FOUND);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/vram-cache-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    round_trip();
    fallbacks();
    corrupt();
    arguments();
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_INT(system(cmd), 0);
    CHECK_DONE();
}
