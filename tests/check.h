/* check.h - minimal assertions for the C tests: print both values, count
 * failures, exit non-zero at the end (the ctest runner reports the summary). */
#ifndef VRAM_CHECK_H
#define VRAM_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                  \
        }                                                                      \
    } while (0)

#define CHECK_INT(a, b)                                                          \
    do {                                                                         \
        long long va_ = (long long)(a), vb_ = (long long)(b);                    \
        if (va_ != vb_) {                                                        \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__,  \
                    __LINE__, #a, #b, va_, vb_);                                 \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

/* A vram_status call that must succeed; prints the library's detail. */
#define CHECK_OK(call)                                                              \
    do {                                                                            \
        int st_ = (call);                                                           \
        if (st_ != 0) {                                                             \
            fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, \
                    #call, st_, vram_strerror(st_), vram_last_error());             \
            check_failures++;                                                       \
        }                                                                           \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                        \
    do {                                                                             \
        double va_ = (double)(a), vb_ = (double)(b);                                 \
        if (!(va_ - vb_ <= (tol) && vb_ - va_ <= (tol))) {                           \
            fprintf(stderr, "%s:%d: %s ~= %s failed: %g vs %g (tol %g)\n", __FILE__, \
                    __LINE__, #a, #b, va_, vb_, (double)(tol));                      \
            check_failures++;                                                        \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b)                                                                  \
    do {                                                                                 \
        const char *sa_ = (a), *sb_ = (b);                                               \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                     \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,     \
                    __LINE__, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");       \
            check_failures++;                                                            \
        }                                                                                \
    } while (0)

#define CHECK_DONE()                                                      \
    do {                                                                  \
        if (check_failures)                                               \
            fprintf(stderr, "%d check(s) failed\n", check_failures);      \
        return check_failures ? 1 : 0;                                    \
    } while (0)

#endif
