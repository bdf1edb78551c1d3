/* Time to open a safetensors file with 1,500 tensors (a ComfyUI-named 14B
 * Wan checkpoint has about 1,100): target under 5 ms. Writes the header to
 * a sparse temp file; the weights are never read. */
#define _GNU_SOURCE
#include "internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TENSORS 1500
#define RUNS 50

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* 41 blocks of 36 tensors (5120-wide, like Wan 14B) and the rest. */
static char *make_header(uint64_t *data_bytes) {
    vram_strbuf b = {0};
    uint64_t off = 0;
    vram_strbuf_printf(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < TENSORS; i++) {
        int block = i / 36, k = i % 36;
        uint64_t rows = k % 3 == 0 ? 5120 : 1, bytes = rows * 5120 * 2;
        if (block < 41)
            vram_strbuf_printf(&b, ",\"model.diffusion_model.blocks.%d.t%d.weight\"", block, k);
        else
            vram_strbuf_printf(&b, ",\"model.diffusion_model.rest.t%d.weight\"", k);
        vram_strbuf_printf(&b,
                           ":{\"dtype\":\"BF16\",\"shape\":[%" PRIu64 ",5120],"
                           "\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                           rows, off, off + bytes);
        off += bytes;
    }
    vram_strbuf_printf(&b, "}");
    char *text = NULL;
    vram_strbuf_finish(&b, &text);
    *data_bytes = off;
    return text;
}

int main(void) {
    uint64_t data;
    char *json = make_header(&data);
    if (!json)
        return 1;
    size_t n = strlen(json);
    char path[] = "/tmp/vram_bench_layout_XXXXXX";
    int fd = mkstemp(path);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)n >> (8 * i));
    if (fd < 0 || write(fd, len8, 8) != 8 || write(fd, json, n) != (ssize_t)n ||
        ftruncate(fd, (off_t)(8 + n + data)) != 0) {
        perror("bench_layout: writing the header");
        return 1;
    }
    close(fd);

    double open_ms[RUNS], parse_ms[RUNS];
    unsigned char *mem = malloc(8 + n);
    memcpy(mem, len8, 8);
    memcpy(mem + 8, json, n);
    int st = VRAM_OK;
    for (int r = 0; r < RUNS && !st; r++) {
        vram_layout *L = NULL;
        double t0 = vram_now_ms();
        st = vram_layout_open(path, &L);
        open_ms[r] = vram_now_ms() - t0;
        vram_layout_free(L);
        t0 = vram_now_ms();
        if (!st)
            st = vram_layout_parse_header(mem, 8 + n, &L);
        parse_ms[r] = vram_now_ms() - t0;
        vram_layout_free(L);
    }
    unlink(path);
    free(mem);
    free(json);
    if (st) {
        fprintf(stderr, "bench_layout: %s\n", vram_last_error());
        return 1;
    }
    qsort(open_ms, RUNS, sizeof *open_ms, cmp_double);
    qsort(parse_ms, RUNS, sizeof *parse_ms, cmp_double);
    printf("bench_layout: %d tensors, %zu-byte header, %d runs\n", TENSORS, n, RUNS);
    printf("  vram_layout_open:         median %.3f ms, min %.3f ms (target < 5 ms)\n",
           open_ms[RUNS / 2], open_ms[0]);
    printf("  vram_layout_parse_header: median %.3f ms, min %.3f ms\n", parse_ms[RUNS / 2],
           parse_ms[0]);
    return 0;
}
