/* bf16.c - bf16 conversions, the reference bf16 product and the emulated
 * one (operands rounded into FP32 copies, then the FP32 GEMM) that runs
 * where the CPU lacks AVX512_BF16 (gemm_bf16.c chooses). */
#include "internal.h"
#include "bf16.h"
#include "bf16_loops.h"
#include "gemm_bf16_kernel.h"

#include <stdlib.h>

/* The AVX-512 build of the loops (gemm_avx512bf16.c) where the CPU has it
 * and this build does not target it; else this file's own. */
typedef struct {
    void (*from_f32)(ag_bf16 *, const float *, int64_t);
    void (*to_f32)(float *, const ag_bf16 *, int64_t);
    void (*round_f32)(float *, const float *, int64_t);
} loops;

static void from_f32_here(ag_bf16 *dst, const float *src, int64_t n)
{
    bf16_from_f32_loop(dst, src, n);
}

static void to_f32_here(float *dst, const ag_bf16 *src, int64_t n) { bf16_to_f32_loop(dst, src, n); }

static void round_f32_here(float *dst, const float *src, int64_t n)
{
    bf16_round_f32_loop(dst, src, n);
}

static const loops *chosen_loops(void)
{
    static const loops here = {from_f32_here, to_f32_here, round_f32_here};
#if defined(AG_GEMM_BF16_X86) && !defined(__AVX512F__)
    static const loops avx512 = {ag_bf16_from_f32_avx512, ag_bf16_to_f32_avx512,
                                 ag_bf16_round_f32_avx512};
    static _Atomic int have = -1;
    int h = have;
    if (h < 0) {
        __builtin_cpu_init();
        have = h = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    }
    if (h)
        return &avx512;
#endif
    return &here;
}

void ag_bf16_from_f32(ag_bf16 *dst, const float *src, int64_t n)
{
    chosen_loops()->from_f32(dst, src, n);
}

void ag_bf16_to_f32(float *dst, const ag_bf16 *src, int64_t n)
{
    chosen_loops()->to_f32(dst, src, n);
}

void ag_bf16_round_f32(float *dst, const void *src, bool s16, int64_t n)
{
    if (s16)
        chosen_loops()->to_f32(dst, src, n);
    else
        chosen_loops()->round_f32(dst, src, n);
}

/* Element (r, c) of a row-major operand with leading dimension ld, as the
 * bf16 value a product uses. */
static inline float elem(const void *X, bool x16, int64_t ld, int64_t r, int64_t c)
{
    return x16 ? ag_bf16_float(((const ag_bf16 *)X)[r * ld + c])
               : ag_bf16_float(ag_bf16_round(((const float *)X)[r * ld + c]));
}

void ag_gemm_bf16_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const void *A, bool a16, int64_t lda, const void *B, bool b16,
                        int64_t ldb, float beta, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)(ta ? elem(A, a16, lda, k, i) : elem(A, a16, lda, i, k)) *
                     (double)(tb ? elem(B, b16, ldb, j, k) : elem(B, b16, ldb, k, j));
            float c = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            C[i * ldc + j] = c + alpha * (float)s;
        }
}

/* Rows r0 .. r0+rows, columns c0 .. c0+cols of X (leading dimension ld,
 * FP32 or bf16) on the bf16 grid, into dst with leading dimension cols. */
static void round_block(float *dst, const void *X, bool x16, int64_t ld, int64_t r0, int64_t c0,
                        int64_t rows, int64_t cols)
{
    const size_t es = x16 ? sizeof(ag_bf16) : sizeof(float);
    for (int64_t r = 0; r < rows; r++)
        ag_bf16_round_f32(dst + r * cols, (const char *)X + (size_t)((r0 + r) * ld + c0) * es,
                          x16, cols);
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Depth of a chunk, and floats of op(A) in one: the rounded copies stay a
 * few MiB (in L3, and reused chunk after chunk) however big the operands,
 * and each FP32 product is still deep enough to run at full speed. */
#define EMU_KC 512
#define EMU_A_FLOATS (1 << 21)
/* Floats of the per-thread buffer for small products (64 KiB). */
#define EMU_SMALL (16 * 1024)

void ag_gemm_bf16_emulated(bool serial, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                           float alpha, const void *A, bool a16, int64_t lda, const void *B,
                           bool b16, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) { /* the FP32 product scales C by beta */
        (serial ? ag_gemm_serial : ag_gemm)(ta, tb, M, N, 0, alpha, NULL, 1, NULL, 1, beta, C,
                                            ldc);
        return;
    }
    /* chunks of equal size: kc deep, mb rows of C */
    int64_t kc = cdiv(K, cdiv(K, EMU_KC)), mb = EMU_A_FLOATS / kc;
    mb = mb < 1 ? 1 : mb > M ? M : mb;
    mb = cdiv(M, cdiv(M, mb));
    /* small products (attention's, per head) round into a buffer of the
     * calling thread's: a malloc would cost a tenth of them */
    static _Thread_local float small[EMU_SMALL] __attribute__((aligned(64)));
    bool fits = mb * kc + kc * N <= EMU_SMALL;
    float *a = fits ? small : malloc((size_t)(mb * kc) * sizeof *a);
    float *b = fits ? small + mb * kc : malloc((size_t)(kc * N) * sizeof *b);
    if (!a || !b) {
        if (!fits) {
            free(a);
            free(b);
        }
        ag_error("matmul: out of memory for bf16 operands of %lld x %lld x %lld",
                 (long long)M, (long long)N, (long long)K);
        return;
    }
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
        int64_t k = K - k0 < kc ? K - k0 : kc;
        /* op(B)[k0 .. k0+k, :] as stored: k rows of N, or N rows of k */
        if (!tb)
            round_block(b, B, b16, ldb, k0, 0, k, N);
        else
            round_block(b, B, b16, ldb, 0, k0, N, k);
        for (int64_t i0 = 0; i0 < M; i0 += mb) {
            int64_t m = M - i0 < mb ? M - i0 : mb;
            /* op(A)[i0 .. i0+m, k0 .. k0+k] as stored */
            if (!ta)
                round_block(a, A, a16, lda, i0, k0, m, k);
            else
                round_block(a, A, a16, lda, k0, i0, k, m);
            (serial ? ag_gemm_serial : ag_gemm)(ta, tb, m, N, k, alpha, a, ta ? m : k, b,
                                                tb ? k : N, k0 == 0 ? beta : 1.0f,
                                                C + i0 * ldc, ldc);
        }
    }
    if (!fits) {
        free(a);
        free(b);
    }
}
