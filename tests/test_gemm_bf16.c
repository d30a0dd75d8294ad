/* test_gemm_bf16.c - the bf16 operands (private/bf16.h): rounding, the
 * conversions, and the bf16 products on both paths.
 *
 * Rounding: ag_bf16_round against hand-worked bit patterns (ties to even
 * both ways, NaN quieted and kept NaN even when rounding would carry it to
 * inf, infinities, overflow past bf16's largest finite to inf, signed zero,
 * denormals rounded like any other value). Conversions: the vector loops of
 * ag_bf16_from_f32 / ag_bf16_to_f32 / ag_bf16_round_f32 bit for bit against
 * the scalar ag_bf16_round / ag_bf16_float on every tie and near-tie of
 * every bf16 value and on 4M spread bit patterns, at lengths around the
 * vector width.
 *
 * Products: the AVX512_BF16 kernel (where the CPU has it) and the emulation
 * (forced) against ag_gemm_bf16_naive, for all four transpose combinations,
 * FP32 and bf16 operands mixed, alpha != 1, beta 0 over NaN, 1 and 0.5,
 * leading dimensions past the widths (padding NaN, never read or written),
 * sizes of 1, primes, either side of the 14 x 32 tile, K odd and 0, depth
 * and column blocks, one row (M = 1), on one thread and split over three;
 * and every shape tools/bench_matmul times, --lecture's too (the big ones
 * by 1000 sampled elements, left out under an emulator).
 *
 * Tolerances. With the same rounded operands, each product a*b of two bf16
 * values is exact in FP32, so the kernel and the reference differ only in
 * FP32 summation order: recursive summation of K terms errs by at most
 * (K - 1) u sum|a b| (u = 2^-24), plus a few roundings for alpha, beta and
 * the depth blocks' adds. The bound checked is
 *     |C - C_ref| <= (K + 8) 2^-24 (|alpha| sum_k |a_k b_k| + |beta C0|).
 * Against the FP32 product of the unrounded operands, each operand is off by
 * at most u = 2^-8 relative (RNE to 8 significant bits), a product by
 * 2u + u^2, and sum|a b| of the unrounded operands is at most that of the
 * rounded ones over (1 - u)^2, so
 *     |C - C_fp32| <= 2 * 2^-8 * 1.01 * |alpha| sum_k |a_k b_k| + the above.
 * vdpbf16ps reads bf16 denormals as zero (and vcvtne2ps2bf16 FP32 ones):
 * a denormal operand's products, each below 2^-126 |b|, are then lost; the
 * denormal test allows exactly those. */
#include "test_util.h"

#include "bf16.h"
#include "gemm_bf16_kernel.h"
#include "gemm_kernel.h"
#include "internal.h"

#include <stdlib.h>

static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ------------------------------------------------------------ rounding */

static void test_round_hand_worked(void **state)
{
    (void)state;
    static const struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1.0 exact */
        {0x3f807fffu, 0x3f80}, /* just below half an ulp: down */
        {0x3f808000u, 0x3f80}, /* tie, even below: stays */
        {0x3f808001u, 0x3f81}, /* just above half: up */
        {0x3f818000u, 0x3f82}, /* tie, odd below: up to even */
        {0xbf818000u, 0xbf82}, /* the same, negative */
        {0x3f7fffffu, 0x3f80}, /* carry into the exponent: 1 - 2^-24 -> 1.0 */
        {0x40490fdbu, 0x4049}, /* pi -> 3.140625 */
        {0x7f800000u, 0x7f80}, /* +inf */
        {0xff800000u, 0xff80}, /* -inf */
        {0x7fc00000u, 0x7fc0}, /* quiet NaN */
        {0xffc00001u, 0xffc0}, /* negative NaN, low payload */
        {0x7f800001u, 0x7fc0}, /* NaN whose payload is below bf16's: quieted, not inf */
        {0x7fffffffu, 0x7fff}, /* NaN all ones: no carry out */
        {0x7fa00000u, 0x7fe0}, /* signalling NaN quieted, payload kept */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX overflows to inf */
        {0x7f7f7fffu, 0x7f7f}, /* stays bf16's largest finite */
        {0x7f7f8000u, 0x7f80}, /* tie above the largest finite (odd): inf */
        {0xff7f8000u, 0xff80}, /* and -inf */
        {0x00000000u, 0x0000}, /* +0 */
        {0x80000000u, 0x8000}, /* -0 keeps its sign */
        {0x00000001u, 0x0000}, /* smallest denormal: to +0 */
        {0x80000001u, 0x8000}, /* to -0 */
        {0x00008000u, 0x0000}, /* denormal tie, even below */
        {0x00018000u, 0x0002}, /* denormal tie, odd below: up */
        {0x00008001u, 0x0001}, /* bf16's smallest denormal */
        {0x007fffffu, 0x0080}, /* largest denormal rounds up to the smallest normal */
        {0x807f7fffu, 0x807f}, /* negative denormal, down */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint16_t got = ag_bf16_round(bits_f(cases[i].in));
        if (got != cases[i].out)
            fail_msg("ag_bf16_round(0x%08x) = 0x%04x, want 0x%04x", cases[i].in, got,
                     cases[i].out);
        /* and back: the high half, exactly */
        assert_int_equal(f_bits(ag_bf16_float(cases[i].out)), (uint32_t)cases[i].out << 16);
    }
}

/* The vector loops against the scalar reference on n inputs. */
static void check_conversions(const uint32_t *in, int64_t n)
{
    float *f = malloc((size_t)n * sizeof *f), *back = malloc((size_t)n * sizeof *back);
    float *grid = malloc((size_t)n * sizeof *grid);
    ag_bf16 *h = malloc((size_t)n * sizeof *h);
    assert_non_null(f && back && grid && h);
    memcpy(f, in, (size_t)n * sizeof *f);
    ag_bf16_from_f32(h, f, n);
    ag_bf16_to_f32(back, h, n);
    ag_bf16_round_f32(grid, f, false, n);
    for (int64_t i = 0; i < n; i++) {
        ag_bf16 want = ag_bf16_round(f[i]);
        if (h[i] != want)
            fail_msg("ag_bf16_from_f32: 0x%08x -> 0x%04x, scalar 0x%04x (n %lld, i %lld)", in[i],
                     h[i], want, (long long)n, (long long)i);
        if (f_bits(back[i]) != f_bits(ag_bf16_float(want)) || f_bits(grid[i]) != f_bits(back[i]))
            fail_msg("ag_bf16_to_f32 / round_f32 at 0x%08x: 0x%08x / 0x%08x, want 0x%08x", in[i],
                     f_bits(back[i]), f_bits(grid[i]), f_bits(ag_bf16_float(want)));
    }
    /* bf16 input widened (round_f32 with s16) */
    ag_bf16_round_f32(grid, h, true, n);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(f_bits(grid[i]), (uint32_t)h[i] << 16);
    free(f);
    free(back);
    free(grid);
    free(h);
}

static void test_conversions_vector_is_scalar(void **state)
{
    (void)state;
    /* every bf16 value's exact point, ties, and either side of them */
    int64_t n = 65536 * 5;
    uint32_t *in = malloc((size_t)n * sizeof *in);
    assert_non_null(in);
    const uint32_t lows[5] = {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu};
    for (uint32_t h = 0; h < 65536; h++)
        for (int l = 0; l < 5; l++)
            in[h * 5 + (uint32_t)l] = h << 16 | lows[l];
    check_conversions(in, n);
    /* every length around the vector width, so each tail is met */
    for (int64_t len = 0; len <= 40; len++)
        check_conversions(in + 1000 * len, len);
    free(in);
    /* 4M bit patterns spread over all 2^32 */
    n = 1 << 22;
    in = malloc((size_t)n * sizeof *in);
    assert_non_null(in);
    for (int64_t i = 0; i < n; i++)
        in[i] = (uint32_t)i * 1031u + (uint32_t)(i >> 11);
    check_conversions(in, n);
    free(in);
}

/* ------------------------------------------------------------ products */

/* The paths a bf16 product takes: the kernel (where the CPU has it) and the
 * emulation, each through ag_gemm_bf16, _serial, and the kernel's driver on
 * three threads. */
typedef enum { VIA_GEMM, VIA_SERIAL, VIA_THREE } via;

static bool have_kernel(void)
{
    ag_gemm_bf16_force_emulation(false);
    return ag_gemm_bf16_current() != NULL;
}

static void run(bool emulate, via how, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                float alpha, const void *A, bool a16, int64_t lda, const void *B, bool b16,
                int64_t ldb, float beta, float *C, int64_t ldc)
{
    ag_gemm_bf16_force_emulation(emulate);
    const ag_gemm_bf16_kernel_t *k = ag_gemm_bf16_current();
    if (how == VIA_THREE && k)
        ag_gemm_bf16_blocked(k, 3, ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C,
                             ldc);
    else if (how == VIA_SERIAL)
        ag_gemm_bf16_serial(ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C, ldc);
    else
        ag_gemm_bf16(ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C, ldc);
    ag_gemm_bf16_force_emulation(false);
}

/* A rows x cols operand with leading dimension ld (padding NaN), values
 * uniform in [-1, 1), FP32 or bf16. */
static void *operand(ag_rng *r, int64_t rows, int64_t cols, int64_t ld, bool x16)
{
    size_t n = (size_t)(rows * ld > 0 ? rows * ld : 1);
    float *f = malloc(n * sizeof *f);
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        f[i] = (int64_t)(i % (size_t)(ld > 0 ? ld : 1)) < cols ? 2 * ag_rng_uniform(r) - 1 : NAN;
    if (!x16)
        return f;
    ag_bf16 *h = malloc(n * sizeof *h);
    assert_non_null(h);
    ag_bf16_from_f32(h, f, (int64_t)n);
    free(f);
    return h;
}

/* op(X)[r, c] as the product uses it (rounded), and unrounded */
static double at16(const void *X, bool x16, int64_t ld, bool t, int64_t r, int64_t c)
{
    int64_t i = t ? c * ld + r : r * ld + c;
    return x16 ? ag_bf16_float(((const ag_bf16 *)X)[i])
               : ag_bf16_float(ag_bf16_round(((const float *)X)[i]));
}

static double at32(const void *X, bool x16, int64_t ld, bool t, int64_t r, int64_t c)
{
    int64_t i = t ? c * ld + r : r * ld + c;
    return x16 ? ag_bf16_float(((const ag_bf16 *)X)[i]) : ((const float *)X)[i];
}

typedef struct {
    bool ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const void *A, *B;
    bool a16, b16;
    int64_t lda, ldb, ldc;
    const float *C0; /* C before the product */
} problem;

/* What element (i, j) of C must be near: the double sums of the rounded
 * and of the unrounded operands, and the bounds around them. */
typedef struct {
    int64_t i, j;
    double want16, want32, sum_bound, bf_bound;
} expect;

static expect expected(const problem *p, int64_t i, int64_t j)
{
    double s16 = 0, s32 = 0, mag = 0;
    for (int64_t k = 0; k < p->K; k++) {
        double a = at16(p->A, p->a16, p->lda, p->ta, i, k), b = at16(p->B, p->b16, p->ldb, p->tb, k, j);
        s16 += a * b;
        s32 += at32(p->A, p->a16, p->lda, p->ta, i, k) * at32(p->B, p->b16, p->ldb, p->tb, k, j);
        mag += fabs(a * b);
    }
    double c0 = p->beta == 0.0f ? 0.0 : (double)p->beta * p->C0[i * p->ldc + j];
    expect e = {i, j, c0 + (double)p->alpha * s16, c0 + (double)p->alpha * s32, 0, 0};
    e.sum_bound = (double)(p->K + 8) * 0x1p-24 * (fabs(p->alpha) * mag + fabs(c0)) + 1e-30;
    e.bf_bound = 2 * 0x1p-8 * 1.01 * fabs(p->alpha) * mag + e.sum_bound;
    return e;
}

/* C's element e.(i, j): against the rounded operands' sum within the
 * summation bound, against the unrounded FP32 operands' within the bf16
 * bound, and against ag_gemm_bf16_naive's (ref, when given) within twice
 * the summation bound (both err from the exact sum). */
static void check_elem(const problem *p, const float *C, const float *ref, const expect *e,
                       const char *what)
{
    double got = C[e->i * p->ldc + e->j];
    if (!(fabs(got - e->want16) <= e->sum_bound))
        fail_msg("%s, %lld x %lld x %lld ta=%d tb=%d a16=%d b16=%d alpha=%g beta=%g: C[%lld, "
                 "%lld] = %.9g, bf16 reference %.9g (|diff| %.3g > bound %.3g)", what,
                 (long long)p->M, (long long)p->N, (long long)p->K, p->ta, p->tb, p->a16, p->b16,
                 (double)p->alpha, (double)p->beta, (long long)e->i, (long long)e->j, got,
                 e->want16, fabs(got - e->want16), e->sum_bound);
    if (!(fabs(got - e->want32) <= e->bf_bound))
        fail_msg("%s, %lld x %lld x %lld: C[%lld, %lld] = %.9g, FP32 product %.9g (|diff| %.3g "
                 "> bf16 bound %.3g)", what, (long long)p->M, (long long)p->N, (long long)p->K,
                 (long long)e->i, (long long)e->j, got, e->want32, fabs(got - e->want32),
                 e->bf_bound);
    if (ref && !(fabs(got - ref[e->i * p->ldc + e->j]) <= 2 * e->sum_bound))
        fail_msg("%s against ag_gemm_bf16_naive, %lld x %lld x %lld: C[%lld, %lld] = %.9g, "
                 "naive %.9g", what, (long long)p->M, (long long)p->N, (long long)p->K,
                 (long long)e->i, (long long)e->j, got, (double)ref[e->i * p->ldc + e->j]);
}

static const char *path_name(bool emulate, via how)
{
    static const char *names[2][3] = {{"kernel ag_gemm_bf16", "kernel _serial", "kernel 3 threads"},
                                      {"emulated ag_gemm_bf16", "emulated _serial",
                                       "emulated (3 threads)"}};
    return names[emulate][how];
}

/* One product on every path, checked in full (every element, C's padding
 * untouched, also against ag_gemm_bf16_naive) or at `samples` random
 * elements. */
static void check_product(ag_rng *r, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                          bool a16, bool b16, float alpha, float beta, int pad, int samples,
                          bool all_paths)
{
    int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    void *A = operand(r, ta ? K : M, ta ? M : K, lda, a16);
    void *B = operand(r, tb ? N : K, tb ? K : N, ldb, b16);
    float *C0 = malloc((size_t)(M * ldc) * sizeof *C0), *C = malloc((size_t)(M * ldc) * sizeof *C);
    float *ref = malloc((size_t)(M * ldc) * sizeof *ref);
    assert_non_null(C0 && C && ref);
    for (int64_t i = 0; i < M * ldc; i++)
        C0[i] = i % ldc < N ? (beta == 0.0f ? NAN : 2 * ag_rng_uniform(r) - 1) : -7.0f;
    problem p = {ta, tb, M, N, K, alpha, beta, A, B, a16, b16, lda, ldb, ldc, C0};
    /* the elements checked and what they must be, worked out once */
    int64_t ne = samples ? samples : M * N;
    expect *es = malloc((size_t)(ne > 0 ? ne : 1) * sizeof *es);
    assert_non_null(es);
    ag_rng pick = ag_rng_new((uint64_t)(M * 31 + N * 7 + K));
    for (int64_t e = 0; e < ne; e++) {
        int64_t i = samples ? (int64_t)(ag_rng_uniform(&pick) * (float)M) % M : e / N;
        int64_t j = samples ? (int64_t)(ag_rng_uniform(&pick) * (float)N) % N : e % N;
        es[e] = expected(&p, i, j);
    }
    if (samples == 0) {
        memcpy(ref, C0, (size_t)(M * ldc) * sizeof *ref);
        ag_gemm_bf16_naive(ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, ref, ldc);
    }
    bool kernel = have_kernel();
    for (int em = kernel ? 0 : 1; em < 2; em++)
        for (int h = 0; h < 3; h++) {
            if (!all_paths && h != VIA_GEMM)
                continue;
            bool emulate = em == 1;
            const char *what = path_name(emulate, (via)h);
            memcpy(C, C0, (size_t)(M * ldc) * sizeof *C);
            run(emulate, (via)h, ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C, ldc);
            for (int64_t e = 0; e < ne; e++)
                check_elem(&p, C, samples ? NULL : ref, &es[e], what);
            if (samples == 0)
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = N; j < ldc; j++)
                        if (f_bits(C[i * ldc + j]) != f_bits(-7.0f))
                            fail_msg("%s wrote C's padding at (%lld, %lld)", what, (long long)i,
                                     (long long)j);
        }
    free(es);
    free(A);
    free(B);
    free(C0);
    free(C);
    free(ref);
}

/* Sizes either side of the 14 x 32 tile, primes, 1, K odd and 0, two depth
 * blocks (K past 512, the last odd), two column blocks (N past what fits L2
 * at that depth), and one row. */
static void test_products_edge_sizes(void **state)
{
    (void)state;
    const int64_t sizes[][3] = {
        {1, 1, 1},   {1, 17, 33},  {1, 100, 7},   {2, 3, 5},     {13, 31, 7},  {14, 32, 16},
        {15, 33, 17}, {29, 65, 1}, {7, 5, 0},     {31, 47, 97},  {97, 61, 131}, {28, 64, 2},
        {45, 100, 515}, {3, 1, 1025}, {5, 800, 1031}, {43, 37, 3},
    };
    ag_rng r = ag_rng_new(11);
    int64_t saved = ag_gemm_par_min;
    ag_gemm_par_min = 0; /* split even these over the threads */
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            int64_t M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
            /* operand types and scalars varied across the cases */
            bool a16 = (s + (size_t)t) % 2, b16 = (s + (size_t)t) % 4 >= 2;
            float alpha = t == 1 ? -0.75f : 1.0f, beta = t == 0 ? 0.0f : t == 2 ? 0.5f : 1.0f;
            check_product(&r, ta, tb, M, N, K, a16, b16, alpha, beta, (int)(s % 3) * 3, 0,
                          true);
        }
    ag_gemm_par_min = saved;
}

/* Every shape tools/bench_matmul times (also with --lecture), both paths:
 * the big ones by 1000 sampled elements, and left out under an emulator
 * (minutes each). */
static void test_products_bench_shapes(void **state)
{
    (void)state;
    const struct {
        bool ta, tb;
        int64_t M, N, K;
    } shapes[] = {
        {false, true, 16384, 1536, 384}, {false, false, 16384, 384, 1536},
        {true, false, 1536, 384, 16384}, {false, true, 16384, 1152, 384},
        {false, true, 256, 256, 64},     {false, false, 256, 64, 256},
        {false, true, 64, 256, 64},      {false, false, 64, 64, 256},
        {true, false, 64, 64, 256},      {false, true, 64, 64, 32},
        {false, false, 64, 32, 64},      {true, false, 64, 32, 64},
        {false, true, 2048, 512, 128},   {false, false, 2048, 128, 512},
        {true, false, 512, 128, 2048},   {false, true, 512, 256, 64},
        {true, false, 256, 64, 512},     {false, true, 256, 128, 32},
        /* and bench_matmul --lecture's other eight */
        {false, false, 16384, 384, 1152}, {true, false, 1152, 384, 16384},
        {false, true, 16384, 384, 384},   {false, false, 16384, 384, 384},
        {true, false, 384, 384, 16384},   {false, true, 16384, 384, 1536},
        {false, false, 16384, 1536, 384}, {true, false, 384, 1536, 16384},
    };
    ag_rng r = ag_rng_new(5);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        bool big = M * N * K > 100000000, mid = M * N * K > 4000000;
        if (big && getenv("MESON_EXE_WRAPPER"))
            continue;
        check_product(&r, shapes[s].ta, shapes[s].tb, M, N, K, s % 3 == 1, s % 2 == 1, 1.0f,
                      0.0f, 0, mid ? 1000 : 0, !big);
    }
}

/* Denormal operands: the kernel reads them as zero, so their products
 * (each below 2^-126 in size here) may be lost; the rest is exact as ever. */
static void test_products_denormals(void **state)
{
    (void)state;
    const int64_t M = 19, N = 35, K = 41;
    float *A = malloc((size_t)(M * K) * sizeof *A), *B = malloc((size_t)(K * N) * sizeof *B);
    float *C = malloc((size_t)(M * N) * sizeof *C), *ref = malloc((size_t)(M * N) * sizeof *C);
    assert_non_null(A && B && C && ref);
    ag_rng r = ag_rng_new(3);
    for (int64_t i = 0; i < M * K; i++)
        A[i] = i % 3 == 0 ? bits_f(0x00400000u + (uint32_t)i) : 2 * ag_rng_uniform(&r) - 1;
    for (int64_t i = 0; i < K * N; i++)
        B[i] = 2 * ag_rng_uniform(&r) - 1;
    ag_gemm_bf16_naive(false, false, M, N, K, 1.0f, A, false, K, B, false, N, 0.0f, ref, N);
    for (int e = 0; e < 2; e++) {
        ag_gemm_bf16_force_emulation(e == 1);
        ag_gemm_bf16(false, false, M, N, K, 1.0f, A, false, K, B, false, N, 0.0f, C, N);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double mag = 0;
                for (int64_t k = 0; k < K; k++)
                    mag += fabs((double)ag_bf16_float(ag_bf16_round(A[i * K + k])) *
                                ag_bf16_float(ag_bf16_round(B[k * N + j])));
                double tol = (double)(K + 8) * 0x1p-24 * mag + (double)K * 0x1p-126;
                if (!(fabs((double)C[i * N + j] - ref[i * N + j]) <= tol))
                    fail_msg("denormals (%s): C[%lld, %lld] = %.9g, want %.9g",
                             ag_gemm_bf16_kernel(), (long long)i, (long long)j,
                             (double)C[i * N + j], (double)ref[i * N + j]);
            }
    }
    ag_gemm_bf16_force_emulation(false);
    free(A);
    free(B);
    free(C);
    free(ref);
}

/* The kernel's name: avx512_bf16 exactly where the CPU has AVX512_BF16
 * (unless AG_BF16_KERNEL=emulated, which meson's second run sets), and
 * emulated when forced. */
static void test_kernel_choice(void **state)
{
    (void)state;
    bool cpu = false;
#if defined(__x86_64__)
    __builtin_cpu_init();
    cpu = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl");
#endif
    const char *env = getenv("AG_BF16_KERNEL");
    bool emulated_env = env && strcmp(env, "emulated") == 0;
    assert_string_equal(ag_gemm_bf16_kernel(), cpu && !emulated_env ? "avx512_bf16" : "emulated");
    ag_gemm_bf16_force_emulation(true);
    assert_string_equal(ag_gemm_bf16_kernel(), "emulated");
    assert_null(ag_gemm_bf16_current());
    ag_gemm_bf16_force_emulation(false);
    printf("bf16 products run on: %s\n", ag_gemm_bf16_kernel());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_hand_worked),
        cmocka_unit_test(test_conversions_vector_is_scalar),
        cmocka_unit_test(test_kernel_choice),
        cmocka_unit_test(test_products_edge_sizes),
        cmocka_unit_test(test_products_denormals),
        cmocka_unit_test(test_products_bench_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
