/* test_util.h - what every CMocka suite here shares: catching the engine's
 * errors, comparing floats, and gradchecking an op through a weighted sum. */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ag.h"

/* ---- errors: the test handler records the message and returns, so the
 * failing op returns NULL and the test checks both. */

static char last_error[1024];
static int error_count;

static void record_error(const char *msg, void *user)
{
    (void)user;
    snprintf(last_error, sizeof last_error, "%s", msg);
    error_count++;
}

static inline void catch_errors(void)
{
    ag_set_error_handler(record_error, NULL);
    last_error[0] = '\0';
    error_count = 0;
}

/* expr must report exactly one error whose message holds every given piece. */
#define assert_ag_error(expr, ...)                                                       \
    do {                                                                                 \
        catch_errors();                                                                  \
        (void)(expr);                                                                    \
        if (error_count != 1)                                                            \
            fail_msg("%s: expected 1 error, got %d (last: \"%s\")", #expr, error_count,  \
                     last_error);                                                        \
        const char *want_[] = {__VA_ARGS__};                                             \
        for (size_t k_ = 0; k_ < sizeof want_ / sizeof *want_; k_++)                     \
            if (!strstr(last_error, want_[k_]))                                          \
                fail_msg("%s: error \"%s\" lacks \"%s\"", #expr, last_error, want_[k_]); \
        ag_set_error_handler(NULL, NULL);                                                \
    } while (0)

/* ---- floats */

static inline void assert_close_(const float *got, const float *want, int64_t n, double tol,
                                 const char *what, const char *file, int line)
{
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        bool same_inf = isinf(got[i]) && isinf(want[i]) && (got[i] > 0) == (want[i] > 0);
        bool both_nan = isnan(got[i]) && isnan(want[i]);
        if (!(d <= tol * (1.0 + fabs((double)want[i]))) && !same_inf && !both_nan) {
            print_error("%s:%d: %s[%lld] = %.8g, want %.8g (tol %.2g)\n", file, line, what,
                           (long long)i, (double)got[i], (double)want[i], tol);
            fail();
        }
    }
}

/* got (n floats) == want within tol relative to max(1, |want|) */
#define assert_close(got, want, n, tol) assert_close_((got), (want), (n), (tol), #got, __FILE__, __LINE__)

/* t's shape is exactly the given dims */
#define assert_shape(t, ...)                                                             \
    do {                                                                                 \
        const int64_t want_[] = {__VA_ARGS__};                                           \
        int nd_ = (int)(sizeof want_ / sizeof *want_);                                   \
        assert_non_null(t);                                                              \
        assert_int_equal((t)->ndim, nd_);                                                \
        for (int k_ = 0; k_ < nd_; k_++)                                                 \
            assert_int_equal((t)->shape[k_], want_[k_]);                                 \
    } while (0)

#define assert_scalar_shape(t)                                                           \
    do {                                                                                 \
        assert_non_null(t);                                                              \
        assert_int_equal((t)->ndim, 0);                                                  \
    } while (0)

/* ---- gradcheck helpers */

/* A persistent leaf with given data that requires grad. */
static inline ag_tensor *leaf(const float *data, int ndim, const int64_t *shape)
{
    ag_tensor *t = ag_from_data(NULL, data, ndim, shape);
    ag_set_requires_grad(t, true);
    return t;
}

/* A persistent leaf of N(0, std) values (seeded) that requires grad. */
static inline ag_tensor *rand_leaf(uint64_t seed, float std, int ndim, const int64_t *shape)
{
    ag_tensor *t = ag_randn(NULL, seed, 0.0f, std, ndim, shape);
    ag_set_requires_grad(t, true);
    return t;
}

/* sum(y * W) for fixed N(0,1) weights W (seeded by y's size): a scalar whose
 * gradient reaches every element of y with a different weight. */
static inline ag_tensor *weighted_sum(ag_ctx *c, ag_tensor *y)
{
    if (!y)
        return NULL;
    ag_tensor *w = ag_empty(c, y->ndim, y->shape);
    ag_rng r = ag_rng_new(0xC0FFEEull + (uint64_t)y->numel);
    ag_fill_normal(w, &r, 0.0f, 1.0f);
    return ag_sum_all(c, ag_mul(c, y, w));
}

/* gradcheck with default tolerances, failing the test with its report */
#define assert_gradcheck(fn, inputs, n, user)                                            \
    do {                                                                                 \
        ag_gradcheck_opts o_ = ag_gradcheck_defaults();                                  \
        o_.quiet = true;                                                                 \
        if (!ag_gradcheck((fn), (inputs), (n), (user), &o_))                             \
            fail_msg("gradcheck of %s: %s", #fn, o_.report);                             \
    } while (0)

/* A float array literal: FLOATS(1, 2, 3). */
#define FLOATS(...) ((const float[]){__VA_ARGS__})

static inline void free_all(ag_tensor **ts, int n)
{
    for (int i = 0; i < n; i++)
        ag_tensor_free(ts[i]);
}

#endif
