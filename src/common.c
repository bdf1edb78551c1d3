/* common.c - version, status codes, errors, logging, dtypes, small utils. */
#define _GNU_SOURCE
#include "internal.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int vram_version_number(void) { return VRAM_VERSION_NUMBER; }

const char *vram_version_string(void) {
#define VRAM_STR2(x) #x
#define VRAM_STR(x) VRAM_STR2(x)
    return VRAM_STR(VRAM_VERSION_MAJOR) "." VRAM_STR(VRAM_VERSION_MINOR) "." VRAM_STR(
        VRAM_VERSION_PATCH);
}

const char *vram_strerror(int status) {
    switch (status) {
#define VRAM_STATUS_CASE(name, value, text) \
    case value:                             \
        return text;
        VRAM_STATUS_LIST(VRAM_STATUS_CASE)
#undef VRAM_STATUS_CASE
    default:
        return "unknown status code";
    }
}

static _Thread_local char last_error[1024];

const char *vram_last_error(void) { return last_error; }

void vram_clear_error(void) { last_error[0] = '\0'; }

int vram_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void vram_free(void *p) { free(p); }

static vram_log_fn log_fn;
static void *log_user;
static int log_max_level = VRAM_LOG_WARN;

void vram_set_log(vram_log_fn fn, void *user, int max_level) {
    log_fn = fn;
    log_user = user;
    log_max_level = fn ? max_level : VRAM_LOG_WARN;
}

void vram_log(int level, const char *fmt, ...) {
    if (level > log_max_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fn)
        log_fn(level, msg, log_user);
    else
        fprintf(stderr, "vram: %s\n", msg);
}

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
} dtype_table[VRAM_DTYPE_COUNT] = {
    [VRAM_DTYPE_UNKNOWN] = {"UNKNOWN", 0}, [VRAM_DTYPE_BOOL] = {"BOOL", 1},
    [VRAM_DTYPE_U8] = {"U8", 1},           [VRAM_DTYPE_I8] = {"I8", 1},
    [VRAM_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [VRAM_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [VRAM_DTYPE_I16] = {"I16", 2},         [VRAM_DTYPE_U16] = {"U16", 2},
    [VRAM_DTYPE_F16] = {"F16", 2},         [VRAM_DTYPE_BF16] = {"BF16", 2},
    [VRAM_DTYPE_I32] = {"I32", 4},         [VRAM_DTYPE_U32] = {"U32", 4},
    [VRAM_DTYPE_F32] = {"F32", 4},         [VRAM_DTYPE_I64] = {"I64", 8},
    [VRAM_DTYPE_U64] = {"U64", 8},         [VRAM_DTYPE_F64] = {"F64", 8},
};

size_t vram_dtype_size(vram_dtype t) {
    return (t > 0 && t < VRAM_DTYPE_COUNT) ? dtype_table[t].size : 0;
}

const char *vram_dtype_name(vram_dtype t) {
    return (t >= 0 && t < VRAM_DTYPE_COUNT) ? dtype_table[t].name : "UNKNOWN";
}

vram_dtype vram_dtype_from_name(const char *name) {
    static const struct {
        const char *alias;
        vram_dtype t;
    } aliases[] = {
        {"bfloat16", VRAM_DTYPE_BF16}, {"float16", VRAM_DTYPE_F16},
        {"fp16", VRAM_DTYPE_F16},      {"half", VRAM_DTYPE_F16},
        {"float32", VRAM_DTYPE_F32},   {"fp32", VRAM_DTYPE_F32},
        {"float", VRAM_DTYPE_F32},     {"float64", VRAM_DTYPE_F64},
        {"fp64", VRAM_DTYPE_F64},      {"double", VRAM_DTYPE_F64},
        {"fp8", VRAM_DTYPE_F8_E4M3},   {"fp8_e4m3fn", VRAM_DTYPE_F8_E4M3},
        {"f8_e4m3fn", VRAM_DTYPE_F8_E4M3}, {"float8_e4m3fn", VRAM_DTYPE_F8_E4M3},
        {"fp8_e4m3", VRAM_DTYPE_F8_E4M3},  {"fp8_e5m2", VRAM_DTYPE_F8_E5M2},
        {"float8_e5m2", VRAM_DTYPE_F8_E5M2}, {"int8", VRAM_DTYPE_I8},
        {"uint8", VRAM_DTYPE_U8},      {"int16", VRAM_DTYPE_I16},
        {"int32", VRAM_DTYPE_I32},     {"int64", VRAM_DTYPE_I64},
        {"bool", VRAM_DTYPE_BOOL},
    };
    if (!name)
        return VRAM_DTYPE_UNKNOWN;
    for (int t = 1; t < VRAM_DTYPE_COUNT; t++)
        if (strcasecmp(name, dtype_table[t].name) == 0)
            return (vram_dtype)t;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(name, aliases[i].alias) == 0)
            return aliases[i].t;
    return VRAM_DTYPE_UNKNOWN;
}

/* ---- string buffer ---- */

void vram_strbuf_printf(vram_strbuf *b, const char *fmt, ...) {
    if (b->failed)
        return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->data && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

int vram_strbuf_finish(vram_strbuf *b, char **out) {
    if (b->failed || !b->data) {
        free(b->data);
        *b = (vram_strbuf){0};
        *out = NULL;
        return vram_fail(VRAM_E_NOMEM, "out of memory building text");
    }
    *out = b->data;
    *b = (vram_strbuf){0};
    return VRAM_OK;
}

int vram_json_print(cJSON *root, bool complete, bool pretty, const char *what, char **out) {
    char *text = root && complete ? (pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root))
                                  : NULL;
    cJSON_Delete(root);
    *out = text ? strdup(text) : NULL;
    cJSON_free(text);
    return *out ? VRAM_OK : vram_fail(VRAM_E_NOMEM, "out of memory building %s", what);
}

static pthread_mutex_t json_parse_lock = PTHREAD_MUTEX_INITIALIZER;

cJSON *vram_json_parse(const char *text, size_t len, const char **end) {
    pthread_mutex_lock(&json_parse_lock);
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, end, false);
    pthread_mutex_unlock(&json_parse_lock);
    return root;
}

int vram_pread_full(int fd, void *dst, uint64_t n, uint64_t off, const char *what) {
    for (uint64_t done = 0; done < n;) {
        ssize_t r = pread(fd, (char *)dst + done, (size_t)(n - done), (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return vram_fail(VRAM_E_IO, "reading %s at offset %llu: %s", what,
                             (unsigned long long)(off + done),
                             r < 0 ? strerror(errno) : "unexpected end of file");
        done += (uint64_t)r;
    }
    return VRAM_OK;
}

static vram_file_id file_id_of(const struct stat *s) {
    return (vram_file_id){.dev = (uint64_t)s->st_dev,
                          .ino = (uint64_t)s->st_ino,
                          .size = (uint64_t)s->st_size,
                          .mtime_ns = (int64_t)s->st_mtim.tv_sec * 1000000000 + s->st_mtim.tv_nsec,
                          .ctime_ns = (int64_t)s->st_ctim.tv_sec * 1000000000 + s->st_ctim.tv_nsec};
}

int vram_open_regular(const char *path, int *fd, vram_file_id *id) {
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return vram_fail(errno == ENOENT ? VRAM_E_NOT_FOUND : VRAM_E_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    struct stat s;
    if (fstat(*fd, &s) != 0 || !S_ISREG(s.st_mode)) {
        close(*fd);
        *fd = -1;
        return vram_fail(VRAM_E_IO, "%s: not a regular file", path);
    }
    *id = file_id_of(&s);
    return VRAM_OK;
}

int vram_file_check(int fd, const char *path, const vram_file_id *then) {
    struct stat s;
    int st = fd >= 0 ? fstat(fd, &s) : stat(path, &s);
    if (st != 0)
        return vram_fail(VRAM_E_IO, "model file %s: %s", path, strerror(errno));
    vram_file_id now = file_id_of(&s);
    if (now.dev != then->dev || now.ino != then->ino || now.size != then->size ||
        now.mtime_ns != then->mtime_ns || now.ctime_ns != then->ctime_ns)
        return vram_fail(VRAM_E_STATE, "model file %s changed since its layout was read (a "
                         "replaced or rewritten file): open its layout again", path);
    return VRAM_OK;
}

int vram_read_file(const char *path, size_t max, char **text, size_t *len) {
    int fd;
    vram_file_id id;
    int st = vram_open_regular(path, &fd, &id);
    if (st)
        return st;
    uint64_t size = id.size;
    if (size > max) {
        close(fd);
        return vram_fail(VRAM_E_FORMAT, "%s: %llu bytes, above the %.0f MiB limit", path,
                         (unsigned long long)size, (double)max / VRAM_MIB);
    }
    *text = malloc((size_t)size + 1);
    st = !*text ? vram_fail(VRAM_E_NOMEM, "%s: out of memory reading it", path)
                : vram_pread_full(fd, *text, size, 0, path);
    close(fd);
    if (st) {
        free(*text);
        *text = NULL;
        return st;
    }
    (*text)[size] = '\0';
    *len = (size_t)size;
    return VRAM_OK;
}

void vram_sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

double vram_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

bool vram_name_matches(const char *a, const char *b) {
    for (;;) {
        while (*a == ' ' || *a == '-' || *a == '_')
            a++;
        while (*b == ' ' || *b == '-' || *b == '_')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
        a++;
        b++;
    }
}
