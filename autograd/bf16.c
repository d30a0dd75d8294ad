/* bf16.c - bf16 conversions and the reference and emulated bf16 products
 * (bf16.h). */
#include "internal.h"
#include "bf16.h"

#include <stdlib.h>

void ag_bf16_from_f32(ag_bf16 *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = ag_bf16_round(src[i]);
}

void ag_bf16_to_f32(float *dst, const ag_bf16 *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = ag_bf16_float(src[i]);
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
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            t[r * cols + c] = elem(X, x16, ld, r, c);
    return t;
}

/* The emulation: both operands rounded into FP32 copies, then the FP32
 * product. */
static void emulated(bool serial, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                     float alpha, const void *A, bool a16, int64_t lda, const void *B, bool b16,
                     int64_t ldb, float beta, float *C, int64_t ldc)
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

void ag_gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                  bool a16, int64_t lda, const void *B, bool b16, int64_t ldb, float beta,
                  float *C, int64_t ldc)
{
    emulated(false, ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C, ldc);
}

void ag_gemm_bf16_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const void *A, bool a16, int64_t lda, const void *B, bool b16,
                         int64_t ldb, float beta, float *C, int64_t ldc)
{
    emulated(true, ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C, ldc);
}

const char *ag_gemm_bf16_kernel(void) { return "emulated"; }
