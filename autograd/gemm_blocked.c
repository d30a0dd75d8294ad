/* gemm_blocked.c - the built-in GEMM's loops, threads and buffers around a
 * micro-kernel (gemm_kernel.h says how the work is cut), and the choice of
 * kernel from what the CPU offers. */
#include "internal.h"
#include "gemm_kernel.h"

#include <omp.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- choice */

static bool cpu_has(const char *isa)
{
#ifdef AG_GEMM_X86
    __builtin_cpu_init();
    if (strcmp(isa, "avx512") == 0)
        return __builtin_cpu_supports("avx512f");
    if (strcmp(isa, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return strcmp(isa, "generic") == 0;
}

const ag_gemm_kernel *ag_gemm_kernel_named(const char *name)
{
    static const ag_gemm_kernel *const all[] = {
#ifdef AG_GEMM_X86
        &ag_gemm_kernel_avx512,
        &ag_gemm_kernel_avx2,
#endif
        &ag_gemm_kernel_generic,
    };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (strcmp(all[i]->name, name) == 0)
            return cpu_has(name) ? all[i] : NULL;
    return NULL;
}

const ag_gemm_kernel *ag_gemm_kernel_best(void)
{
    const ag_gemm_kernel *k = ag_gemm_kernel_named("avx512");
    if (!k)
        k = ag_gemm_kernel_named("avx2");
    return k ? k : &ag_gemm_kernel_generic;
}

/* ---------------------------------------------------------------- driver */

typedef struct {
    const ag_gemm_kernel *k;
    bool ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    int64_t kcb, ncb;   /* depth and column block */
    float *bp;          /* the packed B block, shared */
    float *ap;          /* one A micro-panel per thread, apn floats apart */
    int64_t apn;
} gemm_job;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Thread id of nt: for each block, packs its share of B's panels, then
 * (after all have packed) runs its share of the block's micro-tiles, taken
 * in row-panel order so each A micro-panel is packed once and meets every B
 * panel while it sits in L1. */
static void gemm_run(const gemm_job *g, int id, int nt)
{
    const ag_gemm_kernel *kr = g->k;
    const int64_t mr = kr->mr, nr = kr->nr, mp = cdiv(g->M, mr);
    float *ap = g->ap + id * g->apn;
    for (int64_t jc = 0; jc < g->N; jc += g->ncb) {
        int64_t nc = min64(g->ncb, g->N - jc), np = cdiv(nc, nr);
        for (int64_t pc = 0; pc < g->K; pc += g->kcb) {
            int64_t kc = min64(g->kcb, g->K - pc);
            int64_t p0 = np * id / nt, p1 = np * (id + 1) / nt;
            if (p1 > p0)
                kr->pack_b(g->bp + p0 * kc * nr, g->tb, g->B, g->ldb, pc, jc + p0 * nr, kc,
                           min64(nc, p1 * nr) - p0 * nr);
            if (nt > 1) {
#pragma omp barrier
            }
            /* later depth blocks add to what the first one wrote */
            float beta = pc == 0 ? g->beta : 1.0f;
            int64_t tiles = mp * np, t0 = tiles * id / nt, t1 = tiles * (id + 1) / nt;
            int64_t packed = -1;
            for (int64_t t = t0; t < t1; t++) {
                int64_t ir = t / np, jr = t % np, i0 = ir * mr, m = min64(mr, g->M - i0);
                if (ir != packed) {
                    kr->pack_a(ap, g->ta, g->A, g->lda, i0, pc, m, kc);
                    packed = ir;
                }
                kr->micro(m, min64(nr, nc - jr * nr), kc, ap, !g->ta, mr, g->bp + jr * kc * nr,
                          g->C + i0 * g->ldc + jc + jr * nr, g->ldc, g->alpha, beta);
            }
            if (nt > 1) { /* B's buffer is refilled next */
#pragma omp barrier
            }
        }
    }
}

static void scale_rows(float *C, int64_t ldc, int64_t M, int64_t N, float beta)
{
    if (beta == 1.0f)
        return;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

/* Below this many multiply-adds a product runs on one thread: waking a
 * team costs more than it saves. */
#define BLOCKED_PAR_MIN (1 << 18)

void ag_gemm_blocked(const ag_gemm_kernel *k, int nthreads, bool ta, bool tb, int64_t M,
                     int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        scale_rows(C, ldc, M, N, beta);
        return;
    }
    gemm_job g = {.k = k, .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = alpha,
                  .beta = beta, .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C};
    /* blocks of equal size rather than full ones and a runt */
    g.kcb = cdiv(K, cdiv(K, AG_GEMM_KC));
    g.ncb = cdiv(cdiv(N, cdiv(N, k->nc)), k->nr) * k->nr;
    int64_t tiles = cdiv(M, k->mr) * cdiv(min64(N, g.ncb), k->nr);
    int nt = nthreads;
    if (M * N * K < BLOCKED_PAR_MIN)
        nt = 1;
    if (nt > tiles)
        nt = (int)tiles;
    if (nt < 1)
        nt = 1;
    /* A panel: AG_GEMM_MR_MAX rows of AG_GEMM_ARS, or kc columns of mr */
    g.apn = cdiv(AG_GEMM_MR_MAX * AG_GEMM_ARS, 16) * 16;
    size_t floats = (size_t)(g.kcb * g.ncb + nt * g.apn);
    float *buf = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!buf) {
        ag_error("matmul: out of memory for a %lld x %lld packing buffer", (long long)g.kcb,
                 (long long)g.ncb);
        return;
    }
    g.bp = buf;
    g.ap = buf + g.kcb * g.ncb;
    if (nt == 1) {
        gemm_run(&g, 0, 1);
    } else {
#pragma omp parallel num_threads(nt)
        gemm_run(&g, omp_get_thread_num(), omp_get_num_threads());
    }
    free(buf);
}
