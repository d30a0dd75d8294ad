/* gemm_pack.h - the packing copies, included by each kernel's file after it
 * defines MR, NR (its register tile), TB, copy_row and transpose_block
 * (below), so that they are compiled with that file's ISA flags and fixed
 * sizes: a micro-panel's row or column is then a few vector moves, not a
 * memcpy call (which cost 7% of a 64 x 32 x 64 product).
 *
 * copy_row(dst, src, n): dst[i] = src[i] for i < n.
 *
 * transpose_block(dst, src, ldb, nj, nk): dst[t * NR + s] = src[s * ldb + t]
 * for s < nj, t < nk, and 0 for nj <= s < TB (nj may be <= 0: all zeros). */
#ifndef AG_GEMM_PACK_H
#define AG_GEMM_PACK_H

#include <string.h>

#include "gemm_kernel.h"

static inline int64_t pack_min(int64_t a, int64_t b) { return a < b ? a : b; }

static void pack_a(float *ap, bool ta, const float *A, int64_t lda, int64_t i0, int64_t k0,
                   int64_t m, int64_t kc)
{
    if (!ta) { /* rows layout: row r of the panel is a slice of A's row i0 + r */
        for (int64_t r = 0; r < m; r++)
            copy_row(ap + r * AG_GEMM_ARS, A + (i0 + r) * lda + k0, kc);
        return;
    }
    /* cols layout: op(A)[i0 .., k] is a slice of A's row k */
    const float *src = A + k0 * lda + i0;
    if (m == MR) {
        for (int64_t k = 0; k < kc; k++)
            memcpy(ap + k * MR, src + k * lda, MR * sizeof *ap);
    } else {
        for (int64_t k = 0; k < kc; k++)
            for (int64_t r = 0; r < m; r++)
                ap[k * MR + r] = src[k * lda + r];
    }
}

static void pack_b(float *bp, bool tb, const float *B, int64_t ldb, int64_t k0, int64_t j0,
                   int64_t kc, int64_t nc)
{
    for (int64_t p = 0; p < nc; p += NR, bp += kc * NR) {
        int64_t n = pack_min(NR, nc - p);
        if (!tb) { /* panel row k is a slice of B's row k0 + k */
            const float *src = B + k0 * ldb + j0 + p;
            if (n == NR) {
                for (int64_t k = 0; k < kc; k++)
                    memcpy(bp + k * NR, src + k * ldb, NR * sizeof *bp);
            } else {
                for (int64_t k = 0; k < kc; k++)
                    for (int64_t j = 0; j < NR; j++)
                        bp[k * NR + j] = j < n ? src[k * ldb + j] : 0.0f;
            }
        } else { /* op(B)[k, j] = B[j, k]: TB x TB blocks transposed */
            const float *src = B + (j0 + p) * ldb + k0;
            for (int64_t j = 0; j < NR; j += TB)
                for (int64_t k = 0; k < kc; k += TB)
                    transpose_block(bp + k * NR + j, j < n ? src + j * ldb + k : NULL, ldb,
                                    pack_min(TB, n - j), pack_min(TB, kc - k));
        }
    }
}

#endif
