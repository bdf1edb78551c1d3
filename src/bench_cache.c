/* bench_cache.c - measured bandwidth kept per GPU UUID, so a probe can use
 * `vram bench` numbers instead of a profile's guesses.
 *
 * One JSON file per UUID under $VRAM_CACHE_DIR, else $XDG_CACHE_HOME/vram,
 * else ~/.cache/vram; written to a temporary file and renamed so a reader
 * never sees half a file. A file that does not validate is VRAM_E_FORMAT. */
#define _GNU_SOURCE
#include "internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_VERSION 1
#define CACHE_STREAMS 16
#define CACHE_MAX_BYTES (1 << 20)

/* The directory, created with its parents when `create`. */
static int cache_dir(bool create, char *dir, size_t cap) {
    const char *env = getenv("VRAM_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (env && *env)
        n = snprintf(dir, cap, "%s", env);
    else if (xdg && *xdg)
        n = snprintf(dir, cap, "%s/vram", xdg);
    else if (home && *home)
        n = snprintf(dir, cap, "%s/.cache/vram", home);
    else
        return vram_fail(VRAM_E_NOT_FOUND,
                         "no bandwidth cache directory: VRAM_CACHE_DIR, XDG_CACHE_HOME and "
                         "HOME are all unset");
    if (n < 0 || (size_t)n >= cap)
        return vram_fail(VRAM_E_INVALID, "bandwidth cache directory path is too long");
    if (!create)
        return VRAM_OK;
    for (char *p = dir + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST)
                return vram_fail(VRAM_E_IO, "cannot create %s: %s", dir, strerror(errno));
            if (end)
                break;
            *p = '/';
        }
    }
    return VRAM_OK;
}

/* <dir>/<uuid>.json; the UUID may only hold letters, digits, '-' and '_'
 * so it cannot leave the directory. */
static int cache_path(const char *uuid, bool create, char *path, size_t cap) {
    if (!uuid || !*uuid)
        return vram_fail(VRAM_E_INVALID, "bandwidth cache: the GPU UUID is empty");
    for (const char *c = uuid; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            return vram_fail(VRAM_E_INVALID, "bandwidth cache: GPU UUID \"%s\" has a character "
                                             "other than letters, digits, '-' and '_'",
                             uuid);
    char dir[PATH_MAX];
    int st = cache_dir(create, dir, sizeof dir);
    if (st)
        return st;
    int n = snprintf(path, cap, "%s/%s.json", dir, uuid);
    if (n < 0 || (size_t)n >= cap)
        return vram_fail(VRAM_E_INVALID, "bandwidth cache path is too long");
    return VRAM_OK;
}

static const char *const series_keys[4] = {"h2d_pinned_gbps", "h2d_pageable_gbps",
                                           "d2h_pinned_gbps", "d2h_pageable_gbps"};

static const size_t series_offsets[4] = {
    offsetof(vram_bandwidth_result, h2d_pinned_gbps),
    offsetof(vram_bandwidth_result, h2d_pageable_gbps),
    offsetof(vram_bandwidth_result, d2h_pinned_gbps),
    offsetof(vram_bandwidth_result, d2h_pageable_gbps)};

static const double *series(const vram_bandwidth_result *r, int k) {
    return (const double *)((const char *)r + series_offsets[k]);
}

static double *series_mut(vram_bandwidth_result *r, int k) {
    return (double *)((char *)r + series_offsets[k]);
}

/* cJSON prints 15 significant digits, which can lose the last bit; the
 * shortest text that reads back exactly keeps measurements intact. */
static cJSON *exact_number(double v) {
    char text[32];
    snprintf(text, sizeof text, "%.15g", v);
    if (strtod(text, NULL) != v)
        snprintf(text, sizeof text, "%.17g", v);
    return cJSON_CreateRaw(text);
}

static bool add_item(cJSON *parent, const char *key, cJSON *item) {
    if (item && (key ? cJSON_AddItemToObject(parent, key, item)
                     : cJSON_AddItemToArray(parent, item)))
        return true;
    cJSON_Delete(item);
    return false;
}

static int to_json(const vram_bandwidth_result *r, char **text) {
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddNumberToObject(o, "version", CACHE_VERSION) &&
              cJSON_AddNumberToObject(o, "backend", r->backend) &&
              cJSON_AddStringToObject(o, "gpu_name", r->gpu_name) &&
              cJSON_AddStringToObject(o, "gpu_uuid", r->gpu_uuid) &&
              add_item(o, "transfer_bytes", exact_number((double)r->transfer_bytes)) &&
              cJSON_AddNumberToObject(o, "max_streams", r->max_streams);
    for (int k = 0; ok && k < 4; k++) {
        cJSON *a = cJSON_CreateArray();
        ok = add_item(o, series_keys[k], a);
        for (int i = 0; ok && i < CACHE_STREAMS; i++)
            ok = add_item(a, NULL, exact_number(series(r, k)[i]));
    }
    return vram_json_print(o, ok, true, "the bandwidth cache", text);
}

int vram_bench_save(const vram_bandwidth_result *r) {
    VRAM_CHECK_STRUCT(r, vram_bandwidth_result);
    if (memchr(r->gpu_name, '\0', sizeof r->gpu_name) == NULL ||
        memchr(r->gpu_uuid, '\0', sizeof r->gpu_uuid) == NULL)
        return vram_fail(VRAM_E_INVALID, "bandwidth result: gpu_name or gpu_uuid is not "
                                         "NUL-terminated");
    if (r->max_streams < 1 || r->max_streams > CACHE_STREAMS)
        return vram_fail(VRAM_E_RANGE, "bandwidth result: max_streams %d is outside 1..16",
                         r->max_streams);
    if (r->backend < 0 || r->backend > 16)
        return vram_fail(VRAM_E_RANGE, "bandwidth result: backend %d is not a backend",
                         r->backend);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < CACHE_STREAMS; i++) {
            double v = series(r, k)[i];
            if (!isfinite(v) || v < 0)
                return vram_fail(VRAM_E_RANGE, "bandwidth result: %s[%d] is %g, not a finite "
                                               "number >= 0",
                                 series_keys[k], i, v);
        }
    char path[PATH_MAX];
    int st = cache_path(r->gpu_uuid, true, path, sizeof path);
    if (st)
        return st;
    char *text;
    if ((st = to_json(r, &text)))
        return st;
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(text);
        return vram_fail(VRAM_E_IO, "cannot create a file next to %s: %s", path,
                         strerror(errno));
    }
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    int err = done == len ? 0 : errno;
    free(text);
    if ((fsync(fd) != 0 || close(fd) != 0) && !err)
        err = errno;
    if (!err && rename(tmp, path) != 0)
        err = errno;
    if (err) {
        unlink(tmp);
        return vram_fail(VRAM_E_IO, "cannot write %s: %s", path, strerror(err ? err : EIO));
    }
    return VRAM_OK;
}

/* A finite number >= 0 under `key`, or false. */
static bool get_number(const cJSON *o, const char *key, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0)
        return false;
    *v = it->valuedouble;
    return true;
}

static const char *from_json(const cJSON *o, const char *uuid, vram_bandwidth_result *r) {
    double version, backend, bytes, streams;
    if (!cJSON_IsObject(o))
        return "not a JSON object";
    if (!get_number(o, "version", &version) || version != CACHE_VERSION)
        return "missing or unknown \"version\"";
    if (!get_number(o, "backend", &backend) || backend != floor(backend) || backend > 16)
        return "bad \"backend\"";
    if (!get_number(o, "transfer_bytes", &bytes) || bytes != floor(bytes) || bytes > 0x1p63)
        return "bad \"transfer_bytes\"";
    if (!get_number(o, "max_streams", &streams) || streams != floor(streams) || streams < 1 ||
        streams > CACHE_STREAMS)
        return "\"max_streams\" must be an integer in 1..16";
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "gpu_name");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "gpu_uuid");
    if (!cJSON_IsString(name) || strlen(name->valuestring) >= sizeof r->gpu_name)
        return "bad \"gpu_name\"";
    if (!cJSON_IsString(id) || strcmp(id->valuestring, uuid) != 0)
        return "\"gpu_uuid\" does not match the file name";
    for (int k = 0; k < 4; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, series_keys[k]);
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > CACHE_STREAMS)
            return "a bandwidth series is missing or longer than 16";
        int i = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, a) {
            if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < 0)
                return "a bandwidth is not a finite number >= 0";
            series_mut(r, k)[i++] = x->valuedouble;
        }
    }
    r->backend = (int)backend;
    r->transfer_bytes = (uint64_t)bytes;
    r->max_streams = (int)streams;
    snprintf(r->gpu_name, sizeof r->gpu_name, "%s", name->valuestring);
    snprintf(r->gpu_uuid, sizeof r->gpu_uuid, "%s", id->valuestring);
    return NULL;
}

int vram_bench_load(const char *gpu_uuid, vram_bandwidth_result *out) {
    VRAM_CHECK_STRUCT(out, vram_bandwidth_result);
    char path[PATH_MAX];
    int st = cache_path(gpu_uuid, false, path, sizeof path);
    if (st)
        return st;
    char *text;
    size_t n;
    st = vram_read_file(path, CACHE_MAX_BYTES, &text, &n);
    if (st == VRAM_E_NOT_FOUND)
        return vram_fail(st, "no bandwidth measured for %s (%s)", gpu_uuid, path);
    if (st)
        return st;
    cJSON *o = vram_json_parse(text, n, NULL);
    free(text);
    vram_bandwidth_result r;
    memset(&r, 0, sizeof r);
    const char *why = o ? from_json(o, gpu_uuid, &r) : "not valid JSON";
    cJSON_Delete(o);
    if (why)
        return vram_fail(VRAM_E_FORMAT, "bandwidth cache %s: %s", path, why);
    r.size = out->size;
    *out = r;
    return VRAM_OK;
}
