/* test_pressure.c - DRAM pressure.
 *
 * 1. A model that does not fit in a (simulated) small DRAM: an ~8 MiB
 *    safetensors file, every block streamed, DRAM of a few MiB. The plan
 *    must put the overflow on the disk tier, and the engine (host backend)
 *    must deliver every tensor's bytes intact on every pass, for several
 *    slot counts, copy streams, with and without pinned memory.
 * 2. A real memory cgroup: when this process may create a child of its own
 *    memory cgroup (v2 memory.max or v1 memory.limit_in_bytes), the probe
 *    and the `vram` CLI run inside it with a 256 MiB limit must see that
 *    limit. Skipped, with the reason printed, where that is not possible. */
#define _GNU_SOURCE
#include "check.h"
#include "internal.h"
#include "vram.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCKS 16

static uint64_t rng_state = 0xC0FFEEull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* ---- the model file ---- */

typedef struct model_file {
    char path[64];
    uint8_t *bytes; /* the whole file, to compare against */
    size_t len;
} model_file;

/* Wan-like names, bf16: per block a dim x 2dim and a 2dim x dim matrix and
 * a bias of 2dim, plus a head outside the blocks. `sparse`: the data is a
 * hole (ftruncate), for a large model that costs no disk; m->bytes stays
 * NULL. */
static int model_write(model_file *m, int blocks, int dim, bool sparse) {
    snprintf(m->path, sizeof m->path, "/tmp/vram-pressure-XXXXXX.safetensors");
    m->bytes = NULL;
    int fd = mkstemps(m->path, 12);
    if (fd < 0)
        return -1;
    char header[65536];
    size_t hl = 0;
    uint64_t off = 0;
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    struct {
        const char *name;
        int d0, d1;
    } const t[] = {{"ffn.0.weight", 2 * dim, dim}, {"ffn.2.weight", dim, 2 * dim},
                   {"ffn.0.bias", 2 * dim, 0}};
    for (int b = 0; b < blocks; b++)
        for (int k = 0; k < 3; k++) {
            uint64_t n = (uint64_t)t[k].d0 * (t[k].d1 ? (uint64_t)t[k].d1 : 1) * 2;
            char shape[32];
            if (t[k].d1)
                snprintf(shape, sizeof shape, "[%d,%d]", t[k].d0, t[k].d1);
            else
                snprintf(shape, sizeof shape, "[%d]", t[k].d0);
            hl += (size_t)snprintf(header + hl, sizeof header - hl,
                                   ",\"blocks.%d.%s\":{\"dtype\":\"BF16\",\"shape\":%s,"
                                   "\"data_offsets\":[%llu,%llu]}",
                                   b, t[k].name, shape, (unsigned long long)off,
                                   (unsigned long long)(off + n));
            off += n;
        }
    hl += (size_t)snprintf(header + hl, sizeof header - hl,
                           ",\"head.head.weight\":{\"dtype\":\"BF16\",\"shape\":[64,%d],"
                           "\"data_offsets\":[%llu,%llu]}}",
                           dim, (unsigned long long)off, (unsigned long long)(off + 128u * dim));
    off += 128u * (uint64_t)dim;
    while ((hl + 8) % 8) /* data section 8-aligned, padded with spaces */
        header[hl++] = ' ';
    m->len = 8 + hl + off;
    uint64_t h64 = hl;
    bool ok;
    if (sparse) {
        ok = write(fd, &h64, 8) == 8 && write(fd, header, hl) == (ssize_t)hl &&
             ftruncate(fd, (off_t)m->len) == 0;
    } else {
        m->bytes = malloc(m->len);
        ok = m->bytes != NULL;
        if (ok) {
            memcpy(m->bytes, &h64, 8);
            memcpy(m->bytes + 8, header, hl);
            for (uint64_t i = 0; i < off; i++) /* never a repeating pattern per block */
                m->bytes[8 + hl + i] = (uint8_t)((i * 2654435761u) >> 13 ^ (i >> 17));
            ok = write(fd, m->bytes, m->len) == (ssize_t)m->len;
        }
    }
    close(fd);
    return ok ? 0 : -1;
}

static void model_free(model_file *m) {
    unlink(m->path);
    free(m->bytes);
}

/* ---- 1. disk tier under a small simulated DRAM ---- */

/* Reads every tensor of block b back from the device and compares it with
 * the file; returns the number of differing bytes. */
static uint64_t block_mismatches(vram_engine *eng, const vram_layout *layout, const model_file *m,
                                 int b, uint64_t addr) {
    vram_layout_info li = {.size = sizeof li};
    vram_layout_get_info(layout, &li);
    uint64_t bad = 0;
    for (int t = 0; t < li.tensor_count; t++) {
        vram_tensor_info ti = {.size = sizeof ti};
        vram_layout_tensor(layout, t, &ti);
        if (ti.block != b)
            continue;
        uint8_t *got = malloc(ti.nbytes);
        if (!got || vram_engine_read_device(eng, addr + ti.block_offset, got, ti.nbytes) ||
            ti.file_offset + ti.nbytes > m->len) {
            free(got);
            return ti.nbytes;
        }
        for (uint64_t k = 0; k < ti.nbytes; k++)
            bad += got[k] != m->bytes[ti.file_offset + k];
        free(got);
    }
    return bad;
}

static void pressure_case(const vram_layout *layout, const model_file *m, double dram_mb,
                          bool pinned, int slots, int streams) {
    vram_hw *hw = NULL;
    vram_plan *plan = NULL;
    vram_engine *eng = NULL;
    CHECK_OK(vram_hw_probe_dram_only(&hw));
    CHECK_OK(vram_hw_set_vram(hw, 0, 2048, 0));
    CHECK_OK(vram_hw_set_dram(hw, dram_mb, dram_mb));
    vram_plan_options o;
    vram_plan_options_init(&o);
    o.width = o.height = 128;
    o.frames = 5;
    o.auto_hardware_tuning = false;
    o.blocks_to_swap = BLOCKS;
    o.enable_dram_optimization = pinned;
    CHECK_OK(vram_plan_create(layout, hw, &o, &plan));
    if (!plan)
        goto out;
    vram_plan_summary s = {.size = sizeof s};
    CHECK_OK(vram_plan_get_summary(plan, &s));
    /* The model does not fit in the DRAM the plan may use: disk takes the rest. */
    CHECK(s.streamed_bytes > s.dram_usable_bytes);
    CHECK(s.disk_bytes > 0);
    CHECK_INT(s.pinned_bytes + s.pageable_bytes + s.disk_bytes, s.streamed_bytes);
    CHECK(s.pinned_bytes + s.pageable_bytes <= s.dram_usable_bytes);
    if (!pinned)
        CHECK_INT(s.pinned_bytes, 0);

    vram_engine_options eo;
    vram_engine_options_init(&eo);
    eo.backend = VRAM_BACKEND_HOST;
    eo.slot_count = slots;
    eo.copy_streams = streams;
    CHECK_OK(vram_engine_create(plan, layout, &eo, &eng));
    if (!eng)
        goto out;
    CHECK_OK(vram_engine_load_files(eng));
    int disk_blocks = 0;
    for (int b = 0; b < BLOCKS; b++) {
        vram_block_plan bp = {.size = sizeof bp};
        CHECK_OK(vram_plan_block(plan, b, &bp));
        disk_blocks += bp.tier == VRAM_TIER_DISK;
    }
    CHECK(disk_blocks > 0);
    uint64_t bad = 0;
    int order[BLOCKS];
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < BLOCKS; i++)
            order[i] = i;
        if (pass > 0) /* the order the engine is told, then followed */
            for (int i = BLOCKS - 1; i > 0; i--) {
                int j = (int)rnd((uint32_t)i + 1), t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        CHECK_OK(vram_engine_set_order(eng, order, BLOCKS));
        for (int i = 0; i < BLOCKS; i++) {
            uint64_t addr = 0;
            int st = vram_engine_acquire(eng, order[i], NULL, &addr);
            CHECK_OK(st);
            if (st)
                break;
            bad += block_mismatches(eng, layout, m, order[i], addr);
            CHECK_OK(vram_engine_release(eng, order[i], NULL));
        }
    }
    CHECK_INT(bad, 0);
    vram_engine_stats es = {.size = sizeof es};
    CHECK_OK(vram_engine_get_stats(eng, &es));
    CHECK(es.disk_bytes > 0);
    /* The DRAM tiers and the disk-tier staging buffers (two shared by the
     * copy streams, or one, as large as the largest disk block) together
     * stay within what the plan may use: the planner holds them back. */
    uint64_t largest = 0;
    for (int b = 0; b < BLOCKS; b++) {
        vram_block_plan bp = {.size = sizeof bp};
        vram_plan_block(plan, b, &bp);
        if (bp.tier == VRAM_TIER_DISK && vram_engine_block_bytes(eng, b) > largest)
            largest = vram_engine_block_bytes(eng, b);
    }
    uint64_t staging = largest * (uint64_t)vram_staging_buffers(es.copy_streams);
    CHECK(es.pinned_bytes + es.pageable_bytes <= s.dram_usable_bytes);
    printf("pressure: DRAM %.1f MiB (usable %.2f), %s, %d slot(s), %d stream(s): %d of %d blocks "
           "on disk; pinned %.2f pageable %.2f disk %.2f MiB; %llu blocks copied intact; engine "
           "host memory %.2f MiB (of which %.2f MiB disk staging)\n",
           dram_mb, s.dram_usable_bytes / 1048576.0, pinned ? "pinned" : "pageable", s.slot_count,
           es.copy_streams, disk_blocks, BLOCKS, s.pinned_bytes / 1048576.0,
           s.pageable_bytes / 1048576.0, s.disk_bytes / 1048576.0,
           (unsigned long long)es.blocks_copied, (es.pinned_bytes + es.pageable_bytes) / 1048576.0,
           staging / 1048576.0);
out:
    vram_engine_destroy(eng);
    vram_plan_free(plan);
    vram_hw_free(hw);
}

static void test_disk_tier(void) {
    model_file m = {0};
    CHECK_INT(model_write(&m, BLOCKS, 256, false), 0);
    vram_layout *layout = NULL;
    CHECK_OK(vram_layout_open(m.path, &layout));
    if (layout) {
        vram_layout_info li = {.size = sizeof li};
        CHECK_OK(vram_layout_get_info(layout, &li));
        CHECK_INT(li.block_count, BLOCKS);
        CHECK(li.block_bytes > 8u << 20);
        pressure_case(layout, &m, 4, true, 0, 0);
        pressure_case(layout, &m, 4, false, 2, 2);
        pressure_case(layout, &m, 3, true, 1, 1);
        pressure_case(layout, &m, 6, true, 3, 4);
        vram_layout_free(layout);
    }
    model_free(&m);
}

/* ---- 2. a real memory cgroup ---- */

#define CG_LIMIT (256ull << 20)

typedef struct cgroup_dir {
    char path[PATH_MAX + 64];
    const char *limit_file;
} cgroup_dir;

/* Creates a child of this process's own memory cgroup with CG_LIMIT, or
 * returns false with the reason in `why`. */
static bool cgroup_make(cgroup_dir *cg, char *why, size_t whylen) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) {
        snprintf(why, whylen, "no /proc/self/cgroup");
        return false;
    }
    char line[PATH_MAX], v2[PATH_MAX] = "", v1[PATH_MAX] = "";
    bool have_v2 = false, have_v1 = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        if (strcmp(line, "0::") == 0 || (strncmp(line, "0:", 2) == 0 && c1[1] == '\0')) {
            snprintf(v2, sizeof v2, "%s", c2 + 1);
            have_v2 = true;
        } else if (strstr(c1 + 1, "memory")) {
            snprintf(v1, sizeof v1, "%s", c2 + 1);
            have_v1 = true;
        }
    }
    fclose(f);
    char base[PATH_MAX + 32], probe_file[PATH_MAX + 64];
    cg->limit_file = NULL;
    if (have_v2) {
        snprintf(base, sizeof base, "/sys/fs/cgroup%s", v2);
        snprintf(probe_file, sizeof probe_file, "%s/cgroup.controllers", base);
        FILE *c = fopen(probe_file, "r");
        char ctl[512] = "";
        if (c) {
            if (!fgets(ctl, sizeof ctl, c))
                ctl[0] = '\0';
            fclose(c);
        }
        if (strstr(ctl, "memory"))
            cg->limit_file = "memory.max";
    }
    if (!cg->limit_file && have_v1) {
        snprintf(base, sizeof base, "/sys/fs/cgroup/memory%s", v1);
        snprintf(probe_file, sizeof probe_file, "%s/memory.limit_in_bytes", base);
        if (access(probe_file, R_OK) == 0)
            cg->limit_file = "memory.limit_in_bytes";
    }
    if (!cg->limit_file) {
        snprintf(why, whylen, "no memory cgroup controller reachable (v2: %s, v1: %s)",
                 have_v2 ? "no memory controller" : "absent", have_v1 ? "not mounted" : "absent");
        return false;
    }
    snprintf(cg->path, sizeof cg->path, "%s/vram-pressure-%d", base, (int)getpid());
    if (mkdir(cg->path, 0755) != 0) {
        snprintf(why, whylen, "cannot create %s: %s", cg->path, strerror(errno));
        return false;
    }
    char file[PATH_MAX + 128];
    snprintf(file, sizeof file, "%s/%s", cg->path, cg->limit_file);
    FILE *l = fopen(file, "w");
    bool ok = l && fprintf(l, "%llu\n", (unsigned long long)CG_LIMIT) > 0;
    if (l && fclose(l) != 0)
        ok = false;
    if (!ok) {
        snprintf(why, whylen, "cannot write %s: %s", file, strerror(errno));
        rmdir(cg->path);
        return false;
    }
    return true;
}

/* Runs argv (NULL: an in-process probe) in a child moved into the cgroup,
 * stdout to `out_path`. Returns the child's exit status, or -1. The
 * in-process probe exits 0 when it sees the limit, 3 when not. */
static int run_in_cgroup(const cgroup_dir *cg, char *const argv[], const char *out_path) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char procs[PATH_MAX + 128];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", cg->path);
        FILE *p = fopen(procs, "w");
        if (!p || fprintf(p, "%d\n", (int)getpid()) < 0 || fclose(p) != 0)
            _exit(4);
        if (!argv) {
            vram_hw *hw = NULL;
            vram_dram_info d = {.size = sizeof d};
            if (vram_hw_probe_dram_only(&hw) || vram_hw_dram(hw, &d))
                _exit(5);
            printf("in-process probe: cgroup_known %d limit %.1f MiB usage %.1f MiB available "
                   "%.1f MiB\n",
                   d.cgroup_known, d.cgroup_limit_bytes / 1048576.0,
                   d.cgroup_usage_bytes / 1048576.0, d.available_bytes / 1048576.0);
            fflush(stdout);
            _exit(d.cgroup_known && d.cgroup_limit_bytes == CG_LIMIT &&
                          d.available_bytes <= CG_LIMIT
                      ? 0
                      : 3);
        }
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0)
            _exit(6);
        execv(argv[0], argv);
        _exit(7);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return cJSON_Parse(buf);
}

static double json_num(const cJSON *root, const char *a, const char *b) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, a), b);
    return cJSON_IsNumber(x) ? x->valuedouble : -1;
}

static void test_cgroup(void) {
    cgroup_dir cg;
    char why[PATH_MAX + 512];
    if (!cgroup_make(&cg, why, sizeof why)) {
        printf("cgroup: SKIPPED: %s\n", why);
        return;
    }
    printf("cgroup: %s with %s = %llu\n", cg.path, cg.limit_file, (unsigned long long)CG_LIMIT);
    CHECK_INT(run_in_cgroup(&cg, NULL, NULL), 0);

    /* The CLI next to this test program (ctest builds both in one folder). */
    char self[PATH_MAX], cli[PATH_MAX + 8], out[64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        snprintf(cli, sizeof cli, "%s/vram", dirname(self));
    }
    if (n <= 0 || access(cli, X_OK) != 0) {
        printf("cgroup: CLI part SKIPPED: no vram binary next to this test\n");
    } else {
        snprintf(out, sizeof out, "/tmp/vram-pressure-cli-%d.json", (int)getpid());
        char *probe_argv[] = {cli, "probe", "--json", NULL};
        CHECK_INT(run_in_cgroup(&cg, probe_argv, out), 0);
        cJSON *j = read_json(out);
        CHECK(j != NULL);
        CHECK_NEAR(json_num(j, "dram", "cgroup_limit_mb"), CG_LIMIT / 1048576.0, 0.01);
        CHECK(json_num(j, "dram", "available_mb") <= CG_LIMIT / 1048576.0);
        cJSON_Delete(j);

        /* 40 blocks of 32 MiB, all streamed: 1.25 GiB, far more than the
         * ~200 MiB of DRAM the cgroup leaves; the file (sparse, no disk
         * used) lets the plan put the rest on the disk tier. */
        model_file big = {0};
        CHECK_INT(model_write(&big, 40, 2048, true), 0);
        char *plan_argv[] = {cli, "plan", "--model", big.path, "--gpu", "RTX 4090", "--manual",
                             "--blocks-to-swap", "40", "--json", NULL};
        CHECK_INT(run_in_cgroup(&cg, plan_argv, out), 0);
        model_free(&big);
        j = read_json(out);
        CHECK(j != NULL);
        double usable = json_num(j, "summary", "dram_usable_bytes");
        double disk = json_num(j, "summary", "disk_bytes");
        printf("cgroup: vram plan inside: dram_usable %.1f MiB, disk tier %.1f MiB\n",
               usable / 1048576.0, disk / 1048576.0);
        CHECK(usable >= 0 && usable <= (double)CG_LIMIT);
        CHECK(disk > 0);
        cJSON_Delete(j);
        unlink(out);
    }
    /* Empty by now (every child exited): removable. */
    for (int tries = 0; rmdir(cg.path) != 0 && tries < 50; tries++)
        usleep(20000);
    CHECK(access(cg.path, F_OK) != 0);
}

int main(void) {
    vram_set_log(NULL, NULL, VRAM_LOG_ERROR);
    test_disk_tier();
    test_cgroup();
    return check_failures ? 1 : 0;
}
