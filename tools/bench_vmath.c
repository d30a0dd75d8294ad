/* bench_vmath.c - the vectorized elementwise math (autograd/private/vmath.h)
 * against the per-element libm loop it replaces: for each function, ns per
 * element of y[i] = f(x[i]) over 32768 floats, one thread, the median of
 * many runs in thread CPU time, and the ratio libm / ours (the aim: >= 4).
 * The inputs are uniform over each function's working range.
 *   build/tools/bench_vmath [reps] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "vmath.h"

enum { N = 32768 };

typedef void (*loop_fn)(float *restrict y, const float *restrict x, int n);

/* One loop per function, each the plain loop an op runs (-O3 vectorizes
 * ours; libm's stay one call per element). */
#define LOOPS(F)                                                                            \
    static void ours_##F(float *restrict y, const float *restrict x, int n)                 \
    {                                                                                       \
        for (int i = 0; i < n; i++)                                                         \
            y[i] = ag_v##F(x[i]);                                                           \
    }                                                                                       \
    static void libm_##F(float *restrict y, const float *restrict x, int n)                 \
    {                                                                                       \
        for (int i = 0; i < n; i++)                                                         \
            y[i] = ag_ref_##F(x[i]);                                                        \
    }
LOOPS(expf)
LOOPS(logf)
LOOPS(tanhf)
LOOPS(sigmoidf)
LOOPS(siluf)
LOOPS(silu_gradf)
LOOPS(softplusf)
LOOPS(softplus_gradf)
LOOPS(geluf)
LOOPS(gelu_gradf)
LOOPS(gelu_erff)
LOOPS(gelu_erf_gradf)

/* sin and cos with their pass for arguments beyond the fast range */
static void ours_sinf(float *restrict y, const float *restrict x, int n) { ag_vsinf_n(y, x, n); }
static void ours_cosf(float *restrict y, const float *restrict x, int n) { ag_vcosf_n(y, x, n); }
static void libm_sinf(float *restrict y, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = ag_ref_sinf(x[i]);
}
static void libm_cosf(float *restrict y, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = ag_ref_cosf(x[i]);
}

static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median ns per element of reps calls */
static double time_loop(loop_fn f, float *y, const float *x, int reps)
{
    double *ts = malloc((size_t)reps * sizeof *ts);
    f(y, x, N); /* warm the caches */
    for (int r = 0; r < reps; r++) {
        double t0 = thread_seconds();
        f(y, x, N);
        ts[r] = thread_seconds() - t0;
    }
    qsort(ts, (size_t)reps, sizeof *ts, cmp_double);
    double med = ts[reps / 2] / N * 1e9;
    free(ts);
    return med;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 201;
    if (reps < 1)
        reps = 1;
    struct {
        const char *name;
        loop_fn ours, libm;
        float lo, hi;
    } fns[] = {
        {"exp", ours_expf, libm_expf, -20, 20},
        {"log", ours_logf, libm_logf, 1e-3f, 1e3f},
        {"tanh", ours_tanhf, libm_tanhf, -6, 6},
        {"sigmoid", ours_sigmoidf, libm_sigmoidf, -12, 12},
        {"silu", ours_siluf, libm_siluf, -12, 12},
        {"silu grad", ours_silu_gradf, libm_silu_gradf, -12, 12},
        {"softplus", ours_softplusf, libm_softplusf, -25, 25},
        {"softplus grad", ours_softplus_gradf, libm_softplus_gradf, -25, 25},
        {"gelu (tanh)", ours_geluf, libm_geluf, -6, 6},
        {"gelu (tanh) grad", ours_gelu_gradf, libm_gelu_gradf, -6, 6},
        {"gelu (erf)", ours_gelu_erff, libm_gelu_erff, -6, 6},
        {"gelu (erf) grad", ours_gelu_erf_gradf, libm_gelu_erf_gradf, -6, 6},
        {"sin", ours_sinf, libm_sinf, -100, 100},
        {"cos", ours_cosf, libm_cosf, -100, 100},
    };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint64_t s = 12345;
#if defined(__AVX512F__)
    const char *isa = "AVX-512";
#elif defined(__AVX2__)
    const char *isa = "AVX2";
#elif defined(__AVX__)
    const char *isa = "AVX";
#else
    const char *isa = "SSE2 or other";
#endif
#ifdef __FP_FAST_FMAF
    const char *fma = "with";
#else
    const char *fma = "without";
#endif
    printf("%d floats, 1 thread, median of %d runs (thread CPU time); built for %s, %s FMA\n", N,
           reps, isa, fma);
    printf("%-18s %12s %12s %8s\n", "function", "libm ns/el", "ours ns/el", "ratio");
    for (size_t k = 0; k < sizeof fns / sizeof *fns; k++) {
        for (int i = 0; i < N; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            float u = (float)(s >> 40) * (1.0f / 16777216.0f);
            x[i] = fns[k].lo + (fns[k].hi - fns[k].lo) * u;
        }
        double tl = time_loop(fns[k].libm, y, x, reps);
        double to = time_loop(fns[k].ours, y, x, reps);
        printf("%-18s %12.3f %12.3f %7.1fx\n", fns[k].name, tl, to, tl / to);
    }
    free(x);
    free(y);
    return 0;
}
