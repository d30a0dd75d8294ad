/* bf16.c - bf16 conversions, the reference bf16 product and the emulated
 * one (operands rounded into FP32 copies, then the FP32 GEMM) that runs
 * where the CPU lacks AVX512_BF16 (gemm_bf16.c chooses). */
#include "internal.h"
#include "bf16.h"
#include "gemm_bf16_kernel.h"

#include <stdlib.h>

/* 16 lanes at a time in the compiler's vectors (AVX-512 or SSE2, as the
 * build targets), the same integer steps as ag_bf16_round, without its
 * branch: NaN lanes take (u >> 16) | 0x40, the others u + 0x7fff + lsb. */
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));

/* x's bits rounded to bf16, in the high half (the low half is garbage) */
static inline u32x16 round_hi(u32x16 u)
{
    u32x16 nan = (u32x16)((u & 0x7fffffffu) > 0x7f800000u);
    u32x16 r = u + 0x7fffu + ((u >> 16) & 1u);
    return (r & ~nan) | ((u | 0x400000u) & nan);
}

static inline u32x16 load16f(const float *p)
{
    u32x16 u;
    memcpy(&u, p, sizeof u);
    return u;
}

void ag_bf16_from_f32(ag_bf16 *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        u16x16 h = __builtin_convertvector(round_hi(load16f(src + i)) >> 16, u16x16);
        memcpy(dst + i, &h, sizeof h);
    }
    for (; i < n; i++)
        dst[i] = ag_bf16_round(src[i]);
}

void ag_bf16_to_f32(float *dst, const ag_bf16 *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        u16x16 h;
        memcpy(&h, src + i, sizeof h);
        u32x16 u = __builtin_convertvector(h, u32x16) << 16;
        memcpy(dst + i, &u, sizeof u);
    }
    for (; i < n; i++)
        dst[i] = ag_bf16_float(src[i]);
}

void ag_bf16_round_f32(float *dst, const void *src, bool s16, int64_t n)
{
    if (s16) {
        ag_bf16_to_f32(dst, src, n);
        return;
    }
    const float *f = src;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        u32x16 u = round_hi(load16f(f + i)) & 0xffff0000u;
        memcpy(dst + i, &u, sizeof u);
    }
    for (; i < n; i++)
        dst[i] = ag_bf16_float(ag_bf16_round(f[i]));
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

/* op(X)'s rows x cols elements as FP32 values on the bf16 grid, packed with
 * leading dimension cols (rows, cols: X's stored shape). */
static float *rounded(const void *X, bool x16, int64_t ld, int64_t rows, int64_t cols)
{
    int64_t n = rows * cols;
    float *t = malloc((size_t)(n > 0 ? n : 1) * sizeof *t);
    if (!t)
        return NULL;
    const size_t es = x16 ? sizeof(ag_bf16) : sizeof(float);
    for (int64_t r = 0; r < rows; r++)
        ag_bf16_round_f32(t + r * cols, (const char *)X + (size_t)(r * ld) * es, x16, cols);
    return t;
}

void ag_gemm_bf16_emulated(bool serial, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                           float alpha, const void *A, bool a16, int64_t lda, const void *B,
                           bool b16, int64_t ldb, float beta, float *C, int64_t ldc)
{
    int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    float *a = rounded(A, a16, lda, ar, ac), *b = rounded(B, b16, ldb, br, bc);
    if (!a || !b) {
        free(a);
        free(b);
        ag_error("matmul: out of memory for bf16 operands of %lld x %lld x %lld",
                 (long long)M, (long long)N, (long long)K);
        return;
    }
    (serial ? ag_gemm_serial : ag_gemm)(ta, tb, M, N, K, alpha, a, ac, b, bc, beta, C, ldc);
    free(a);
    free(b);
}
