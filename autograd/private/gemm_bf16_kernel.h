/* gemm_bf16_kernel.h - what the bf16 GEMM driver (gemm_bf16.c) and its
 * AVX512_BF16 micro-kernel (gemm_avx512bf16.c) share.
 *
 * vdpbf16ps multiplies adjacent pairs of bf16 values and adds both products
 * to one FP32 lane, so the packed panels hold k in pairs: one 32-bit word
 * per (k pair, row or column), the even k in its low half, the odd k in its
 * high half, zero past an odd depth. The driver cuts C into depth blocks of
 * kc (even, but the last) and column blocks of nc as the FP32 driver does
 * (gemm_kernel.h), packs each B block once per thread into nr-wide panels
 * and each mr-row micro-panel of A into L1, converting FP32 operands to bf16
 * (round to nearest even) as it packs:
 *   A micro-panel, rows layout (A not transposed, few B panels: each row
 *   converted in place): ap[r * AG_GEMM_BF16_ARS + p] = (op(A)[r, 2p], op(A)[r, 2p+1])
 *   A micro-panel, cols layout (A transposed: two rows of A interleaved;
 *   else 16 x 16 blocks of pairs transposed):
 *                ap[p * mr + r]          = (op(A)[r, 2p], op(A)[r, 2p+1])
 *   B panel:     bp[p * nr + j]          = (op(B)[2p, j], op(B)[2p+1, j])
 * with columns past n zero (rows past m are not read). */
#ifndef AG_GEMM_BF16_KERNEL_H
#define AG_GEMM_BF16_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "bf16.h"

/* Depth of a block in k (bf16 values: an mr x kc A micro-panel is
 * mr * kc * 2 bytes of L1). */
#ifndef AG_GEMM_BF16_KC
#define AG_GEMM_BF16_KC 512
#endif
/* Words from one row of a rows-layout A micro-panel to the next: the 16
 * past a block's pairs keep the rows off the same L1 set. */
#define AG_GEMM_BF16_ARS (AG_GEMM_BF16_KC / 2 + 16)

/* C[m, n] = alpha * sum_p a-pairs . b-pairs + beta * C for m <= mr, n <= nr
 * over kp k pairs, a and b packed as above (a in the rows layout when
 * a_rows). beta 0 writes C without reading it (NaN there is overwritten). */
typedef void ag_gemm_bf16_micro_fn(int64_t m, int64_t n, int64_t kp, const uint32_t *a,
                                   bool a_rows, const uint32_t *b, float *C, int64_t ldc,
                                   float alpha, float beta);

/* op(A)[i0 .. i0+m, k0 .. k0+kc] into ap (m <= mr), the rows layout when
 * rows (only when !ta), else the cols layout; A is FP32, or bf16 when a16,
 * lda in its own elements. */
typedef void ag_gemm_bf16_pack_a_fn(uint32_t *ap, bool ta, bool rows, const void *A, bool a16,
                                    int64_t lda, int64_t i0, int64_t k0, int64_t m, int64_t kc);

/* op(B)[k0 .. k0+kc, j0 .. j0+n] into one nr-wide panel at bp (n <= nr). */
typedef void ag_gemm_bf16_pack_b_fn(uint32_t *bp, bool tb, const void *B, bool b16, int64_t ldb,
                                    int64_t k0, int64_t j0, int64_t kc, int64_t n);

/* One row of C (M = 1): C[j] = alpha * sum_k a[k] op(B)[k, j] + beta * C[j]
 * for j < N, a the row of op(A) as bf16 with a zero past an odd K (so K
 * rounded up to even values), B as stored (FP32, or bf16 when b16), read
 * once, as a GEMV reads it; work: N floats of scratch. */
typedef void ag_gemm_bf16_row_fn(bool tb, int64_t N, int64_t K, float alpha, const ag_bf16 *a,
                                 const void *B, bool b16, int64_t ldb, float beta, float *C,
                                 float *work);

typedef struct {
    const char *name; /* "avx512_bf16" */
    int mr, nr;       /* register tile */
    ag_gemm_bf16_micro_fn *micro;
    ag_gemm_bf16_pack_a_fn *pack_a;
    ag_gemm_bf16_pack_b_fn *pack_b;
    ag_gemm_bf16_row_fn *row;
} ag_gemm_bf16_kernel_t;

#if defined(__x86_64__) || defined(_M_X64)
#define AG_GEMM_BF16_X86 1
/* Runs only after the CPU reports AVX512F, AVX512BW and AVX512_BF16. */
extern const ag_gemm_bf16_kernel_t ag_gemm_bf16_avx512;
/* bf16.h's conversions (bf16_loops.h) compiled for AVX-512 (F and BW),
 * for builds that do not target it. */
void ag_bf16_from_f32_avx512(ag_bf16 *dst, const float *src, int64_t n);
void ag_bf16_to_f32_avx512(float *dst, const ag_bf16 *src, int64_t n);
void ag_bf16_round_f32_avx512(float *dst, const float *src, int64_t n);
#endif

/* The kernel the bf16 products run on now: NULL for the emulation (no
 * AVX512_BF16, AG_BF16_KERNEL=emulated, or ag_gemm_bf16_force_emulation). */
const ag_gemm_bf16_kernel_t *ag_gemm_bf16_current(void);

/* Tests: true makes the bf16 products use the emulation even on a CPU with
 * AVX512_BF16; false returns to what the CPU and AG_BF16_KERNEL say. */
void ag_gemm_bf16_force_emulation(bool on);

/* C[M,N] = alpha * op(A) @ op(B) + beta * C with kernel k on up to
 * nthreads threads (1: the caller's thread alone), operands as in
 * ag_gemm_bf16. */
void ag_gemm_bf16_blocked(const ag_gemm_bf16_kernel_t *k, int nthreads, bool ta, bool tb,
                          int64_t M, int64_t N, int64_t K, float alpha, const void *A, bool a16,
                          int64_t lda, const void *B, bool b16, int64_t ldb, float beta,
                          float *C, int64_t ldc);

/* The emulation (bf16.c): chunks of both operands (512 deep, at most 2^21
 * floats of A) rounded into FP32 copies, each chunk's product by ag_gemm
 * (ag_gemm_serial when serial): the same products at about FP32 speed. */
void ag_gemm_bf16_emulated(bool serial, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                           float alpha, const void *A, bool a16, int64_t lda, const void *B,
                           bool b16, int64_t ldb, float beta, float *C, int64_t ldc);

/* dst[i] = src[i] on the bf16 grid as FP32 (src FP32 rounded, or bf16
 * widened when s16), i < n. */
void ag_bf16_round_f32(float *dst, const void *src, bool s16, int64_t n);

#endif
