/* gemm_blocked.c - the built-in GEMM's loops, threads and buffers around a
 * micro-kernel (gemm_kernel.h says how the work is cut), and the choice of
 * kernel from what the CPU offers. */
#include "internal.h"
#include "gemm_kernel.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

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
    float *bp;          /* one packed B block per thread, bpn floats apart */
    float *ap;          /* one A micro-panel per thread, apn floats apart */
    int64_t bpn, apn;
    int tr, tc;         /* threads split the tiles into tr x tc rectangles */
} gemm_job;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Row panels of A up to which op(B) (not transposed, whole panels) is read
 * in place: packing pays only when B is read many times. */
#define B_IN_PLACE_PANELS 8
/* Column panels of B up to which op(A) is read in place. */
#define A_IN_PLACE_PANELS 2
/* Most column panels in a block (block_cols caps it at 4096 columns). */
#define MAX_PANELS (4096 / 16)

/* Thread id of nt runs one rectangle of each block's micro-tiles: rows
 * ti of tr, columns tj of tc (tr * tc = nt), row panel by row panel, so each
 * A micro-panel is packed once and meets every B panel of the rectangle
 * while it sits in L1. Each thread packs the B panels its rectangle uses
 * into its own buffer, on first use, which spares a barrier after a shared
 * packing (on a busy machine that costs a scheduler slice whenever a partner
 * thread is off its core). Small products skip the packing where the kernel
 * can read the matrix as it is stored (gemm_kernel.h). */
static void gemm_run(const gemm_job *g, int id)
{
    const ag_gemm_kernel *kr = g->k;
    const int64_t mr = kr->mr, nr = kr->nr, mp = cdiv(g->M, mr);
    const int64_t tr = g->tr, tc = g->tc, ti = id / tc, tj = id % tc;
    float *ap = g->ap + id * g->apn, *bbuf = g->bp + id * g->bpn;
    bool have[MAX_PANELS]; /* B panels packed for this block */
    for (int64_t jc = 0; jc < g->N; jc += g->ncb) {
        int64_t nc = min64(g->ncb, g->N - jc), np = cdiv(nc, nr);
        bool pack_b = g->tb || nc % nr != 0 || mp > B_IN_PLACE_PANELS;
        bool pack_a = np > A_IN_PLACE_PANELS;
        int64_t r0 = mp * ti / tr, r1 = mp * (ti + 1) / tr;
        int64_t q0 = np * tj / tc, q1 = np * (tj + 1) / tc;
        for (int64_t pc = 0; pc < g->K; pc += g->kcb) {
            int64_t kc = min64(g->kcb, g->K - pc);
            const float *bp = bbuf;
            int64_t b_ks = nr, b_ps = kc * nr; /* k and panel strides */
            if (pack_b) {
                memset(have, 0, (size_t)np * sizeof *have);
            } else {
                bp = g->B + pc * g->ldb + jc;
                b_ks = g->ldb;
                b_ps = nr;
            }
            /* later depth blocks add to what the first one wrote */
            float beta = pc == 0 ? g->beta : 1.0f;
            for (int64_t ir = r0; ir < r1; ir++) {
                int64_t i0 = ir * mr, m = min64(mr, g->M - i0);
                const float *a = ap;
                int64_t as = g->ta ? mr : AG_GEMM_ARS;
                if (pack_a) {
                    kr->pack_a(ap, g->ta, g->A, g->lda, i0, pc, m, kc);
                } else {
                    a = g->ta ? g->A + pc * g->lda + i0 : g->A + i0 * g->lda + pc;
                    as = g->lda;
                }
                for (int64_t jr = q0; jr < q1; jr++) {
                    int64_t n = min64(nr, nc - jr * nr);
                    if (pack_b && !have[jr]) {
                        kr->pack_b(bbuf + jr * b_ps, g->tb, g->B, g->ldb, pc, jc + jr * nr, kc,
                                   n);
                        have[jr] = true;
                    }
                    kr->micro(m, n, kc, a, !g->ta, as, bp + jr * b_ps, b_ks,
                              g->C + i0 * g->ldc + jc + jr * nr, g->ldc, g->alpha, beta);
                }
            }
        }
    }
}

/* The rectangle grid (tr x tc = nt) for mp row panels and np column panels
 * whose slowest thread finishes first, in cycles of one depth step: its
 * tiles (mr nr / lanes cycles each: 16 FP32 FMAs a cycle, 32 bf16 pairs) plus its
 * packing (A's rows and B's columns: a copy, about 0.15 cycles a float, or
 * 0.4 for B transposed). Splitting the rows repeats B's packing in every
 * thread; splitting the columns repeats A's. false: no grid of nt fits. */
bool ag_gemm_pick_grid(int mr, int nr, double lanes, int nt, int64_t M, int64_t N, int64_t mp,
                       int64_t np, bool tb, int *tr, int *tc)
{
    double best = -1, ca = 0.15, cb = tb ? 0.4 : 0.15;
    for (int c = 1; c <= nt; c++) {
        int r = nt / c;
        if (r * c != nt || r > mp || c > np)
            continue;
        double cost = (double)(cdiv(mp, r) * cdiv(np, c) * mr * nr) / lanes +
                      ca * (double)cdiv(M, r) + cb * (double)cdiv(N, c);
        if (best < 0 || cost < best) {
            best = cost;
            *tr = r;
            *tc = c;
        }
    }
    return best >= 0;
}

/* One row of C (sampling a token at a time through a KV cache): B is read
 * once, as a GEMV reads it; packing it first would double the traffic. */
static void one_row(bool ta, bool tb, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C)
{
    int64_t as = ta ? lda : 1; /* op(A)[0, k] = A[k * as] */
    if (tb) { /* C[j] = alpha * dot(op(A), B's row j) + beta * C[j] */
        int64_t j = 0;
        /* four rows of B at a time: four independent sums, not one chain */
        for (; as == 1 && j + 4 <= N; j += 4) {
            const float *b = B + j * ldb;
            ag_v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
            int64_t k = 0;
            for (; k + 8 <= K; k += 8) {
                ag_v8 a = ag_load8(A + k);
                s0 += a * ag_load8(b + k);
                s1 += a * ag_load8(b + ldb + k);
                s2 += a * ag_load8(b + 2 * ldb + k);
                s3 += a * ag_load8(b + 3 * ldb + k);
            }
            float s[4] = {ag_hsum8(&s0), ag_hsum8(&s1), ag_hsum8(&s2), ag_hsum8(&s3)};
            for (int r = 0; r < 4; r++) {
                for (int64_t kk = k; kk < K; kk++)
                    s[r] += A[kk] * b[r * ldb + kk];
                C[j + r] = beta == 0.0f ? alpha * s[r] : alpha * s[r] + beta * C[j + r];
            }
        }
        for (; j < N; j++) {
            const float *b = B + j * ldb;
            float s = 0.0f;
            if (as == 1) {
                s = ag_dot(A, b, K);
            } else {
                for (int64_t k = 0; k < K; k++)
                    s += A[k * as] * b[k];
            }
            C[j] = beta == 0.0f ? alpha * s : alpha * s + beta * C[j];
        }
        return;
    }
    /* C = beta * C + sum over k of (alpha op(A)[0, k]) B's row k */
    for (int64_t j = 0; j < N; j++)
        C[j] = beta == 0.0f ? 0.0f : beta * C[j];
    for (int64_t k = 0; k < K; k++) {
        const float x = alpha * A[k * as], *b = B + k * ldb;
        for (int64_t j = 0; j < N; j++)
            C[j] += x * b[j];
    }
}

void ag_gemm_scale_rows(float *C, int64_t ldc, int64_t M, int64_t N, float beta)
{
    if (beta == 1.0f)
        return;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

int64_t ag_l2_bytes(void)
{
    static atomic_llong cached = -1;
    long long v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        v = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
        long s = sysconf(_SC_LEVEL2_CACHE_SIZE);
        v = s > 0 ? s : 0;
#endif
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}

/* Columns of the packed B block: its kc x nc floats fill three quarters of
 * L2, each A micro-panel streams all of it, and the rest of L2 holds the
 * A panels and C's lines; the kernel's own guess when L2 is unknown. */
static int64_t block_cols(const ag_gemm_kernel *k, int64_t kc)
{
    int64_t l2 = ag_l2_bytes(), nc = l2 ? l2 * 3 / 4 / (kc * (int64_t)sizeof(float)) : k->nc;
    nc = nc / k->nr * k->nr;
    return nc < 4 * k->nr ? 4 * k->nr : nc > 4096 ? 4096 : nc;
}

int64_t ag_gemm_par_min = 1 << 18;

/* Floats of the per-thread packing buffer for small products (96 KiB). */
#define SMALL_BUF (24 * 1024)

void ag_gemm_blocked(const ag_gemm_kernel *k, int nthreads, bool ta, bool tb, int64_t M,
                     int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        ag_gemm_scale_rows(C, ldc, M, N, beta);
        return;
    }
    if (M == 1) {
        one_row(ta, tb, N, K, alpha, A, lda, B, ldb, beta, C);
        return;
    }
    gemm_job g = {.k = k, .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = alpha,
                  .beta = beta, .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C};
    /* blocks of equal size rather than full ones and a runt */
    g.kcb = cdiv(K, cdiv(K, AG_GEMM_KC));
    int64_t ncmax = block_cols(k, g.kcb);
    g.ncb = cdiv(cdiv(N, cdiv(N, ncmax)), k->nr) * k->nr;
    int64_t mp = cdiv(M, k->mr), np = cdiv(min64(N, g.ncb), k->nr);
    int nt = M * N * K < ag_gemm_par_min || nthreads < 1 ? 1 : nthreads;
    /* 1 x 1 always fits */
    while (!ag_gemm_pick_grid(k->mr, k->nr, 16.0, nt, M, N, mp, np, tb, &g.tr, &g.tc))
        nt--;
    /* A panel: mr rows of AG_GEMM_ARS, or kc columns of mr */
    g.apn = cdiv(k->mr * AG_GEMM_ARS, 16) * 16;
    g.bpn = g.kcb * g.ncb; /* a multiple of 16: ncb is one of nr */
    size_t floats = (size_t)(nt * (g.bpn + g.apn));
    /* small products (attention's, per head) use a buffer of the calling
     * thread's: a malloc would cost a few percent of them */
    static _Thread_local float small[SMALL_BUF] __attribute__((aligned(64)));
    float *buf = floats <= SMALL_BUF ? small
                                     : aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!buf) {
        ag_error("matmul: out of memory for a %lld x %lld packing buffer", (long long)g.kcb,
                 (long long)g.ncb);
        return;
    }
    g.bp = buf;
    g.ap = buf + nt * g.bpn;
    /* the pool's team (threads.c: the same size for every region, fewer
     * under load); a team smaller than nt runs the missing rectangles too,
     * a larger one leaves threads idle, and C is the same either way */
    int team = ag_team(nt);
    if (team < 2) {
        for (int id = 0; id < nt; id++)
            gemm_run(&g, id);
    } else {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(team)
        {
            ag_region_enter(&r);
            for (int id = omp_get_thread_num(); id < nt; id += omp_get_num_threads())
                gemm_run(&g, id);
        }
        ag_region_end(&r, team);
    }
    if (buf != small)
        free(buf);
}
