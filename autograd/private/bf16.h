/* bf16.h - bfloat16 operands for the products of the bf16 precision
 * (ag_set_precision): operands rounded to bf16 (round to nearest even),
 * products accumulated in FP32, results in FP32. bf16 is the top half of an
 * IEEE float: 8 exponent bits, 7 stored mantissa bits, so a product of two
 * bf16 values is exact in FP32 and the only rounding is the operands' and
 * the FP32 sums'. */
#ifndef AG_BF16_H
#define AG_BF16_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef uint16_t ag_bf16;

/* x rounded to the nearest bf16, ties to even; NaN stays a (quiet) NaN,
 * infinities stay infinite, values past bf16's largest finite round to inf. */
static inline ag_bf16 ag_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (ag_bf16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ag_bf16)(u >> 16);
}

static inline float ag_bf16_float(ag_bf16 h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* dst[i] = round(src[i]) for i < n. */
void ag_bf16_from_f32(ag_bf16 *dst, const float *src, int64_t n);
/* dst[i] = src[i] widened, for i < n (exact). */
void ag_bf16_to_f32(float *dst, const ag_bf16 *src, int64_t n);

/* Row-major C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C with A's and
 * B's elements rounded to bf16 and the sums in FP32. Each operand is either
 * FP32 (rounded as it is read: a16 / b16 false) or already bf16 (true); lda
 * and ldb count elements of the operand's own type. ag_gemm_bf16 splits the
 * work over the thread pool as ag_gemm does; _serial runs on the caller's
 * thread (inside a parallel region); _naive is the reference both are tested
 * against (sums in double). */
void ag_gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                  bool a16, int64_t lda, const void *B, bool b16, int64_t ldb, float beta,
                  float *C, int64_t ldc);
void ag_gemm_bf16_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const void *A, bool a16, int64_t lda, const void *B, bool b16,
                         int64_t ldb, float beta, float *C, int64_t ldc);
void ag_gemm_bf16_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const void *A, bool a16, int64_t lda, const void *B, bool b16,
                        int64_t ldb, float beta, float *C, int64_t ldc);

/* What runs the bf16 products: "avx512_bf16" (vdpbf16ps) where the CPU has
 * it, else "emulated" (operands rounded to bf16, then FP32 kernels: the same
 * products, at FP32 speed). AG_BF16_KERNEL=emulated forces the emulation.
 * The two differ only in FP32 summation order, and in denormals: the kernel
 * reads denormal operands as zero (vcvtne2ps2bf16 and vdpbf16ps do) and
 * flushes denormal results, so a product's terms below 2^-126 may be lost
 * (gemm_avx512bf16.c, tests/test_gemm_bf16.c). */
const char *ag_gemm_bf16_kernel(void);

#endif
