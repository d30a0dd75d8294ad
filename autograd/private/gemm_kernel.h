/* gemm_kernel.h - what the blocked GEMM driver (gemm_blocked.c) and the
 * per-ISA micro-kernels (gemm_avx512.c, gemm_avx2.c, gemm_generic.c) share.
 *
 * The driver cuts C[M,N] = alpha * op(A) @ op(B) + beta * C into depth
 * blocks of kc and column blocks of nc. For each it packs op(B)[kc, nc] once
 * into nr-wide panels (B[panel][k][nr], zero-padded past N), shared by all
 * threads; each thread then packs one mr-row micro-panel of op(A) at a time
 * and runs the micro-kernel over every B panel, so the A micro-panel stays
 * in L1 while the B block streams from L2. */
#ifndef AG_GEMM_KERNEL_H
#define AG_GEMM_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

/* The A micro-panel comes in one of two layouts, whichever copies cheaply
 * from op(A)'s storage, with a stride as:
 *   rows (A not transposed): a[r * as + k]; as = AG_GEMM_ARS when packed
 *        (each row a plain copy), lda when read in place;
 *   cols (A transposed):     a[k * as + r]; as = mr when packed (each k a
 *        plain copy of mr floats), lda when read in place.
 * The 16 floats of AG_GEMM_ARS past AG_GEMM_KC keep packed rows off the
 * same L1 set. */
#define AG_GEMM_KC 384
#define AG_GEMM_ARS (AG_GEMM_KC + 16)

/* C[m, n] = alpha * sum_k a(r, k) b[k][j] + beta * C for r < m <= mr,
 * j < n <= nr, k < kc, with a(r, k) as above (a_rows picks the layout, as
 * its stride) and b[k][j] = b[k * b_ks + j] for j < nr (b_ks: nr for a
 * packed panel, zero past n; ldb for B read in place, then n == nr). C's row
 * stride is ldc. beta 0 writes C without reading it (NaN there is
 * overwritten). */
typedef void ag_gemm_micro_fn(int64_t m, int64_t n, int64_t kc, const float *a, bool a_rows,
                              int64_t as, const float *b, int64_t b_ks, float *C, int64_t ldc,
                              float alpha, float beta);

/* The micro-panel of op(A) with rows i0 .. i0+m (m <= mr) and depth
 * k0 .. k0+kc, into ap: the rows layout when !ta, the cols layout when ta. */
typedef void ag_gemm_pack_a_fn(float *ap, bool ta, const float *A, int64_t lda, int64_t i0,
                               int64_t k0, int64_t m, int64_t kc);

/* op(B)[k0 .. k0+kc, j0 .. j0+nc] into nr-wide panels at bp:
 * bp[p * kc * nr + k * nr + j], zero past nc. */
typedef void ag_gemm_pack_b_fn(float *bp, bool tb, const float *B, int64_t ldb, int64_t k0,
                               int64_t j0, int64_t kc, int64_t nc);

typedef struct {
    const char *name;           /* "avx512", "avx2", "generic" */
    int mr, nr;                 /* register tile: mr rows of C by nr columns */
    int nc;                     /* columns of B per packed block (its kc x nc stays in L2) */
    ag_gemm_micro_fn *micro;
    ag_gemm_pack_a_fn *pack_a;
    ag_gemm_pack_b_fn *pack_b;
} ag_gemm_kernel;

/* The kernels this build carries (the x86 ones only on x86-64); each one's
 * code runs only after ag_gemm_kernel_usable says the CPU has its ISA. */
extern const ag_gemm_kernel ag_gemm_kernel_generic;
#if defined(__x86_64__) || defined(_M_X64)
#define AG_GEMM_X86 1
extern const ag_gemm_kernel ag_gemm_kernel_avx2;
extern const ag_gemm_kernel ag_gemm_kernel_avx512;
#endif

/* The kernel named "avx512", "avx2" or "generic" when this build has it and
 * this CPU runs it; else NULL. */
const ag_gemm_kernel *ag_gemm_kernel_named(const char *name);
/* The fastest kernel this CPU runs. */
const ag_gemm_kernel *ag_gemm_kernel_best(void);

/* Below this many multiply-adds a product runs on one thread: waking a
 * team costs more than it saves. Tests set 0 to split even tiny ones. */
extern int64_t ag_gemm_par_min;

/* The grid of tr x tc thread rectangles (tr * tc = nt) over mp row and np
 * column panels of an mr x nr tile whose slowest thread finishes first, the
 * tiles costing mr nr / lanes cycles a depth step (16 for FP32 FMAs, 32 for
 * bf16 pairs) plus the packing. false when no grid of nt fits. */
bool ag_gemm_pick_grid(int mr, int nr, double lanes, int nt, int64_t M, int64_t N, int64_t mp,
                       int64_t np, bool tb, int *tr, int *tc);
/* C[M,N] = beta * C (beta 0 writes zeros: NaN there is overwritten). */
void ag_gemm_scale_rows(float *C, int64_t ldc, int64_t M, int64_t N, float beta);
/* Bytes of L2 per core (0: unknown), asked once. */
int64_t ag_l2_bytes(void);

/* C[M,N] = alpha * op(A) @ op(B) + beta * C with kernel k on up to nthreads
 * threads (1: the caller's thread alone, as inside a parallel region). */
void ag_gemm_blocked(const ag_gemm_kernel *k, int nthreads, bool ta, bool tb, int64_t M,
                     int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

#endif
