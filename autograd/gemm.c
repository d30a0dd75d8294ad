/* gemm.c - the matmul kernels: BLAS when the build has it, a packed OpenMP
 * kernel otherwise, and the naive loop both are tested against.
 * All row-major: C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C. */
#include "internal.h"

#include <omp.h>
#include <stdlib.h>

#ifdef AG_HAVE_CBLAS
#include <cblas.h>
#endif

void ag_gemm_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                   float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                     (double)(tb ? B[j * ldb + k] : B[k * ldb + j]);
            float c = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            C[i * ldc + j] = c + alpha * (float)s;
        }
}

/* ---- the built-in kernel: C is cut into MC x NC tiles, one thread per tile;
 * each tile packs its slices of A and B (cheap: (MC+NC)/(2 MC NC) of the
 * flops) and runs a 6x16 register-blocked micro-kernel over them. */

#define MR 6
#define NR 16
#define MC 72
#define NC 256
#define KC 256

typedef float v16 __attribute__((vector_size(64)));

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
/* Built for x86-64 in general, run with AVX-512 or AVX2 where the CPU has it. */
#define AG_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AG_CLONES
#endif

/* Ap[panel][k][r]: mc rows of op(A) from (i0, k0), zero-padded to MR */
static void pack_a(float *ap, bool ta, const float *A, int64_t lda, int64_t i0, int64_t k0,
                   int64_t mc, int64_t kc)
{
    for (int64_t p = 0; p < mc; p += MR)
        for (int64_t k = 0; k < kc; k++)
            for (int64_t r = 0; r < MR; r++) {
                int64_t i = i0 + p + r, kk = k0 + k;
                *ap++ = p + r < mc ? (ta ? A[kk * lda + i] : A[i * lda + kk]) : 0.0f;
            }
}

/* Bp[panel][k][c]: nc columns of op(B) from (k0, j0), zero-padded to NR */
static void pack_b(float *bp, bool tb, const float *B, int64_t ldb, int64_t k0, int64_t j0,
                   int64_t kc, int64_t nc)
{
    for (int64_t p = 0; p < nc; p += NR)
        for (int64_t k = 0; k < kc; k++)
            for (int64_t c = 0; c < NR; c++) {
                int64_t j = j0 + p + c, kk = k0 + k;
                *bp++ = p + c < nc ? (tb ? B[j * ldb + kk] : B[kk * ldb + j]) : 0.0f;
            }
}

/* C[mr, nr] += alpha * Ap-panel @ Bp-panel over kc. Forced inline so it is
 * compiled into each of tile's target clones: left out of line, it ran the
 * baseline x86-64 code under every clone, about 9x slower than AVX-512. */
static inline __attribute__((always_inline)) void micro(int64_t kc, const float *ap,
                                                         const float *bp, float *C, int64_t ldc,
                                                         int64_t mr, int64_t nr, float alpha)
{
    v16 acc[MR] = {0};
    for (int64_t k = 0; k < kc; k++) {
        v16 b;
        memcpy(&b, bp + k * NR, sizeof b);
        for (int r = 0; r < MR; r++)
            acc[r] += ap[k * MR + r] * b;
    }
    if (mr == MR && nr == NR) {
        for (int r = 0; r < MR; r++) {
            v16 c;
            memcpy(&c, C + r * ldc, sizeof c);
            c += alpha * acc[r];
            memcpy(C + r * ldc, &c, sizeof c);
        }
    } else {
        for (int64_t r = 0; r < mr; r++)
            for (int64_t c = 0; c < nr; c++)
                C[r * ldc + c] += alpha * acc[r][c];
    }
}

AG_CLONES
static void tile(bool ta, bool tb, int64_t i0, int64_t j0, int64_t mc, int64_t nc, int64_t K,
                 float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                 int64_t ldc, float *ap, float *bp)
{
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int64_t kc = K - k0 < KC ? K - k0 : KC;
        pack_a(ap, ta, A, lda, i0, k0, mc, kc);
        pack_b(bp, tb, B, ldb, k0, j0, kc, nc);
        for (int64_t jr = 0; jr < nc; jr += NR)
            for (int64_t ir = 0; ir < mc; ir += MR)
                micro(kc, ap + ir * kc, bp + jr * kc, C + (i0 + ir) * ldc + j0 + jr, ldc,
                      mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR, alpha);
    }
}

static void scale_c(float *C, int64_t ldc, int64_t M, int64_t N, float beta, bool par)
{
    if (beta == 1.0f)
        return;
    AG_PARALLEL(par ? M * N : 0, ,
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    );
}

/* Thread id of nt takes tiles id, id + nt, ... of the tm x tn tiles of C.
 * Each thread packs into its own buffers, made once per thread: no
 * allocation per product. */
static void tiles(int id, int nt, int64_t tm, int64_t tn, bool ta, bool tb, int64_t M, int64_t N,
                  int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                  float *C, int64_t ldc)
{
    static _Thread_local float ap[(MC + MR) * KC] __attribute__((aligned(64)));
    static _Thread_local float bp[(NC + NR) * KC] __attribute__((aligned(64)));
    for (int64_t t = id; t < tm * tn; t += nt) {
        int64_t i0 = t / tn * MC, j0 = t % tn * NC;
        tile(ta, tb, i0, j0, M - i0 < MC ? M - i0 : MC, N - j0 < NC ? N - j0 : NC, K, alpha, A,
             lda, B, ldb, C, ldc, ap, bp);
    }
}

static void gemm_builtin(bool par, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc)
{
    scale_c(C, ldc, M, N, beta, par);
    if (M == 0 || N == 0 || K == 0 || alpha == 0.0f)
        return;
    int64_t tm = (M + MC - 1) / MC, tn = (N + NC - 1) / NC;
    int parts = par ? ag_parts_past(M * N * K, AG_GEMM_MIN) : 1;
    int nt = ag_team(parts < tm * tn ? parts : (int)(tm * tn));
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
            tiles(omp_get_thread_num(), omp_get_num_threads(), tm, tn, ta, tb, M, N, K, alpha, A,
                  lda, B, ldb, C, ldc);
        }
        ag_region_end(&r, nt);
    } else {
        tiles(0, 1, tm, tn, ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc);
    }
}

void ag_gemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc)
{
    gemm_builtin(true, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#ifdef AG_HAVE_CBLAS
static void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) { /* some BLAS skip beta when K == 0 */
        scale_c(C, ldc, M, N, beta, true);
        return;
    }
    if (M == 1) {
        /* one row (sampling a token at a time): a GEMV reads B once, where
         * GEMM would first copy all of B into its packed layout */
        if (beta == 0.0f) /* zeroed here: not every BLAS's GEMV ignores y at beta 0 */
            memset(C, 0, (size_t)N * sizeof *C);
        cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, (int)(tb ? N : K),
                    (int)(tb ? K : N), alpha, B, (int)ldb, A, ta ? (int)lda : 1, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* A threaded BLAS call, timed for the contention cap (threads.c): its team
 * came late when the call took longer than one slow core would -- 10
 * GFLOP/s, 4 GB/s for the operands -- a floor any SIMD core clears, while
 * a worker descheduled by other load costs milliseconds. */
static void blas_timed(int nt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc)
{
    if (nt < 2) {
        blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int64_t t0 = ag_now_ns();
    blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    int64_t now = ag_now_ns(), wall = now - t0;
    int64_t flops_ns = 2 * M * N * K / 10, bytes_ns = M * K + K * N + 2 * M * N;
    ag_team_note(nt, wall > 50000 && wall > flops_ns && wall > bytes_ns, now);
}
#endif

void ag_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
#ifdef AG_HAVE_CBLAS
    /* a thread per AG_GEMM_MIN multiply-adds, fewer under load (threads.c) */
    int nt = ag_team(ag_parts_past(M * N * K, AG_GEMM_MIN)), icv = omp_get_max_threads();
    if (nt != icv && !omp_in_parallel()) {
        /* OpenBLAS splits anything over 2^18 multiply-adds across threads and
         * has no per-call thread count, but its OpenMP build sizes its team
         * by omp_get_max_threads(): this call's team, no more wake-ups */
        omp_set_num_threads(nt);
        blas_timed(nt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        omp_set_num_threads(icv);
        return;
    }
    blas_timed(nt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    gemm_builtin(true, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

/* Called from inside a parallel region: the OpenMP build of OpenBLAS runs
 * single-threaded there by itself. */
void ag_gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc)
{
#ifdef AG_HAVE_CBLAS
    blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    gemm_builtin(false, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

const char *ag_matmul_backend(void)
{
#if defined(AG_HAVE_OPENBLAS)
    return "openblas";
#elif defined(AG_HAVE_CBLAS)
    return "cblas";
#else
    return "builtin";
#endif
}
