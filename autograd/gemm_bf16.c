/* gemm_bf16.c - which bf16 product runs (the AVX512_BF16 kernel where the
 * CPU has it, else the emulation in bf16.c), and the kernel's driver: the
 * loops, threads and buffers of gemm_blocked.c, with every operand packed,
 * since packing is where FP32 becomes bf16 (gemm_bf16_kernel.h). */
#include "internal.h"
#include "bf16.h"
#include "gemm_bf16_kernel.h"
#include "gemm_kernel.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- choice */

/* AVX512_BF16 with the AVX-512 registers enabled by the OS: libgcc's
 * __builtin_cpu_supports reports AVX-512 features only when XCR0 has the
 * opmask and zmm state. */
static bool cpu_has_bf16(void)
{
#ifdef AG_GEMM_BF16_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

static atomic_int forced;    /* ag_gemm_bf16_force_emulation */
static atomic_int chosen = -1; /* 1: the kernel, 0: the emulation */

static int choose(void)
{
    int c = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (c >= 0)
        return c;
    c = cpu_has_bf16();
    const char *env = getenv("AG_BF16_KERNEL");
    if (env && strcmp(env, "emulated") == 0) {
        c = 0;
    } else if (env && *env && strcmp(env, "auto") != 0 && strcmp(env, "avx512_bf16") != 0) {
        fprintf(stderr, "agrad: AG_BF16_KERNEL=%s is not a bf16 kernel (auto, avx512_bf16, "
                        "emulated); using auto\n", env);
    } else if (env && strcmp(env, "avx512_bf16") == 0 && !c) {
        fprintf(stderr, "agrad: AG_BF16_KERNEL=avx512_bf16 but this CPU lacks AVX512_BF16; "
                        "the bf16 products are emulated\n");
    }
    atomic_store_explicit(&chosen, c, memory_order_relaxed);
    return c;
}

const ag_gemm_bf16_kernel_t *ag_gemm_bf16_current(void)
{
#ifdef AG_GEMM_BF16_X86
    if (choose() && !atomic_load_explicit(&forced, memory_order_relaxed))
        return &ag_gemm_bf16_avx512;
#else
    (void)choose();
#endif
    return NULL;
}

void ag_gemm_bf16_force_emulation(bool on) { atomic_store(&forced, on); }

const char *ag_gemm_bf16_kernel(void)
{
    const ag_gemm_bf16_kernel_t *k = ag_gemm_bf16_current();
    return k ? k->name : "emulated";
}

/* ---------------------------------------------------------------- driver */

typedef struct {
    const ag_gemm_bf16_kernel_t *k;
    bool ta, tb, a16, b16;
    int64_t M, N, K;
    float alpha, beta;
    const void *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    int64_t kcb, ncb; /* depth and column block */
    uint32_t *bp;     /* one packed B block per thread, bpn words apart */
    uint32_t *ap;     /* one A micro-panel per thread, apn words apart */
    int64_t bpn, apn;
    int tr, tc;       /* threads split the tiles into tr x tc rectangles */
} gemm_job;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* B panels of a thread's rectangle up to which A (not transposed) is
 * packed in the rows layout. Measured (1 thread, CPU time): at 1-2 panels
 * rows are 5-10% faster (64 x 64 x 256: 159 -> 172 GFLOP/s, 256 x 64 x 256:
 * 182 -> 197), at 4-8 even, at 12 and more 5-10% slower (16384 x 384 x
 * 1536: 194 -> 175): many B panels streaming past 14 A rows evict them from
 * L1 where one contiguous cols panel stays. */
#define ROWS_PANELS 4

/* Most column panels in a block (block_cols caps it at 4096 columns). */
#define MAX_PANELS (4096 / 16)

/* Thread id of nt runs one rectangle of each block's micro-tiles, row
 * panel by row panel, packing each A micro-panel once and each B panel it
 * uses on first use into its own buffer (as gemm_blocked.c's gemm_run). */
static void gemm_run(const gemm_job *g, int id)
{
    const ag_gemm_bf16_kernel_t *kr = g->k;
    const int64_t mr = kr->mr, nr = kr->nr, mp = cdiv(g->M, mr);
    const int64_t tr = g->tr, tc = g->tc, ti = id / tc, tj = id % tc;
    uint32_t *ap = g->ap + id * g->apn, *bbuf = g->bp + id * g->bpn;
    bool have[MAX_PANELS];
    for (int64_t jc = 0; jc < g->N; jc += g->ncb) {
        int64_t nc = min64(g->ncb, g->N - jc), np = cdiv(nc, nr);
        int64_t r0 = mp * ti / tr, r1 = mp * (ti + 1) / tr;
        int64_t q0 = np * tj / tc, q1 = np * (tj + 1) / tc;
        /* A not transposed, met by few B panels: its rows converted as they
         * are (cheap to pack), else transposed into the cols layout (which
         * streams better past many) */
        bool a_rows = !g->ta && q1 - q0 <= ROWS_PANELS;
        for (int64_t pc = 0; pc < g->K; pc += g->kcb) {
            int64_t kc = min64(g->kcb, g->K - pc), kp = cdiv(kc, 2), b_ps = kp * nr;
            memset(have, 0, (size_t)np * sizeof *have);
            /* later depth blocks add to what the first one wrote */
            float beta = pc == 0 ? g->beta : 1.0f;
            for (int64_t ir = r0; ir < r1; ir++) {
                int64_t i0 = ir * mr, m = min64(mr, g->M - i0);
                kr->pack_a(ap, g->ta, a_rows, g->A, g->a16, g->lda, i0, pc, m, kc);
                for (int64_t jr = q0; jr < q1; jr++) {
                    int64_t n = min64(nr, nc - jr * nr);
                    if (!have[jr]) {
                        kr->pack_b(bbuf + jr * b_ps, g->tb, g->B, g->b16, g->ldb, pc,
                                   jc + jr * nr, kc, n);
                        have[jr] = true;
                    }
                    kr->micro(m, n, kp, ap, a_rows, bbuf + jr * b_ps,
                              g->C + i0 * g->ldc + jc + jr * nr, g->ldc, g->alpha, beta);
                }
            }
        }
    }
}

/* Columns of the packed B block: its kc x nc bf16 values fill three
 * quarters of L2 (512 KiB assumed when L2 is unknown). */
static int64_t block_cols(const ag_gemm_bf16_kernel_t *k, int64_t kc)
{
    int64_t l2 = ag_l2_bytes();
    int64_t nc = (l2 ? l2 : 512 * 1024) * 3 / 4 / (kc * 2);
    nc = nc / k->nr * k->nr;
    return nc < 4 * k->nr ? 4 * k->nr : nc > 4096 ? 4096 : nc;
}

/* Words of the per-thread packing buffer for small products (96 KiB). */
#define SMALL_BUF (24 * 1024)

void ag_gemm_bf16_blocked(const ag_gemm_bf16_kernel_t *k, int nthreads, bool ta, bool tb,
                          int64_t M, int64_t N, int64_t K, float alpha, const void *A, bool a16,
                          int64_t lda, const void *B, bool b16, int64_t ldb, float beta,
                          float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        ag_gemm_scale_rows(C, ldc, M, N, beta);
        return;
    }
    gemm_job g = {.k = k, .ta = ta, .tb = tb, .a16 = a16, .b16 = b16, .M = M, .N = N, .K = K,
                  .alpha = alpha, .beta = beta, .A = A, .B = B, .lda = lda, .ldb = ldb,
                  .ldc = ldc, .C = C};
    /* blocks of equal size rather than full ones and a runt, even so that
     * only the last one has an odd k (a zero-padded pair) */
    g.kcb = cdiv(K, cdiv(K, AG_GEMM_BF16_KC));
    g.kcb += g.kcb & 1;
    int64_t ncmax = block_cols(k, g.kcb);
    g.ncb = cdiv(cdiv(N, cdiv(N, ncmax)), k->nr) * k->nr;
    int64_t mp = cdiv(M, k->mr), np = cdiv(min64(N, g.ncb), k->nr);
    int nt = M * N * K < ag_gemm_par_min || nthreads < 1 ? 1 : nthreads;
    /* 1 x 1 always fits */
    while (!ag_gemm_pick_grid(k->mr, k->nr, 32.0, nt, M, N, mp, np, tb, &g.tr, &g.tc))
        nt--;
    int64_t kp = g.kcb / 2;
    g.apn = cdiv(k->mr * AG_GEMM_BF16_ARS, 16) * 16; /* either layout */
    g.bpn = kp * g.ncb; /* a multiple of 16: ncb is one of nr */
    size_t words = (size_t)(nt * (g.bpn + g.apn));
    static _Thread_local uint32_t small[SMALL_BUF] __attribute__((aligned(64)));
    uint32_t *buf = words <= SMALL_BUF ? small
                                       : aligned_alloc(64, (words * sizeof *buf + 63) / 64 * 64);
    if (!buf) {
        ag_error("matmul: out of memory for a %lld x %lld bf16 packing buffer",
                 (long long)g.kcb, (long long)g.ncb);
        return;
    }
    g.bp = buf;
    g.ap = buf + nt * g.bpn;
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

/* ---------------------------------------------------------------- one row */

/* Floats of B rounded at a time for one row of C. */
#define ROW_CHUNK 16384

/* One row of C with the kernel's GEMV: op(A)'s row as bf16 (a zero past an
 * odd K), then B read once, converted as it is read. */
static void one_row_kernel(const ag_gemm_bf16_kernel_t *kr, bool ta, bool tb, int64_t N,
                           int64_t K, float alpha, const void *A, bool a16, int64_t lda,
                           const void *B, bool b16, int64_t ldb, float beta, float *C)
{
    ag_bf16 *a = malloc((size_t)(K + 1) * sizeof *a);
    float *work = malloc((size_t)N * sizeof *work);
    if (!a || !work) {
        free(a);
        free(work);
        ag_error("matmul: out of memory for a bf16 row of %lld", (long long)K);
        return;
    }
    for (int64_t k = 0; k < K; k++) {
        int64_t i = ta ? k * lda : k; /* op(A)[0, k] */
        a[k] = a16 ? ((const ag_bf16 *)A)[i] : ag_bf16_round(((const float *)A)[i]);
    }
    a[K] = 0;
    kr->row(tb, N, K, alpha, a, B, b16, ldb, beta, C, work);
    free(a);
    free(work);
}

/* One row of C (sampling a token at a time): B is read once, as a GEMV
 * reads it, not packed whole. With the kernel, its GEMV; else B rounded in
 * chunks that stay in L2, each chunk's product by the FP32 one-row product. */
static void one_row(bool ta, bool tb, int64_t N, int64_t K, float alpha, const void *A,
                    bool a16, int64_t lda, const void *B, bool b16, int64_t ldb, float beta,
                    float *C)
{
    if (K <= 0 || alpha == 0.0f) {
        ag_gemm_scale_rows(C, 1, 1, N, beta);
        return;
    }
    const ag_gemm_bf16_kernel_t *kr = ag_gemm_bf16_current();
    if (kr && kr->row) {
        one_row_kernel(kr, ta, tb, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C);
        return;
    }
    const size_t as = a16 ? sizeof(ag_bf16) : sizeof(float), bs = b16 ? sizeof(ag_bf16)
                                                                       : sizeof(float);
    int64_t rowlen = tb ? K : N, rows = ROW_CHUNK / rowlen > 0 ? ROW_CHUNK / rowlen : 1;
    float *a = malloc((size_t)K * sizeof *a), *buf = malloc((size_t)(rows * rowlen) * sizeof *buf);
    if (!a || !buf) {
        free(a);
        free(buf);
        ag_error("matmul: out of memory for a bf16 row of %lld", (long long)K);
        return;
    }
    if (!ta) {
        ag_bf16_round_f32(a, A, a16, K);
    } else { /* op(A)[0, k] = A[k, 0] */
        for (int64_t k = 0; k < K; k++)
            ag_bf16_round_f32(a + k, (const char *)A + (size_t)(k * lda) * as, a16, 1);
    }
    /* B's rows r0 .. r0+r rounded into buf */
    for (int64_t r0 = 0; r0 < (tb ? N : K); r0 += rows) {
        int64_t r = min64(rows, (tb ? N : K) - r0);
        for (int64_t t = 0; t < r; t++)
            ag_bf16_round_f32(buf + t * rowlen, (const char *)B + (size_t)((r0 + t) * ldb) * bs,
                              b16, rowlen);
        if (tb) /* C[r0 ..] = a . B's rows */
            ag_gemm_serial(false, true, 1, r, K, alpha, a, K, buf, K, beta, C + r0, N);
        else /* C += a[r0 ..] @ B's rows r0 .. */
            ag_gemm_serial(false, false, 1, N, r, alpha, a + r0, r, buf, N,
                           r0 == 0 ? beta : 1.0f, C, N);
    }
    free(a);
    free(buf);
}

/* ---------------------------------------------------------------- entry points */

static void product(bool serial, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const void *A, bool a16, int64_t lda, const void *B, bool b16, int64_t ldb,
                    float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (M == 1) {
        one_row(ta, tb, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C);
        return;
    }
    const ag_gemm_bf16_kernel_t *k = ag_gemm_bf16_current();
    if (!k) {
        ag_gemm_bf16_emulated(serial, ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C,
                              ldc);
        return;
    }
    /* the FP32 kernel's split: a rectangle of C per ag_gemm_par_min
     * multiply-adds, at most the thread count (gemm.c's blocked_parts) */
    int parts = serial ? 1 : ag_parts_past(M * N * K, ag_gemm_par_min - 1);
    ag_gemm_bf16_blocked(k, parts, ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C,
                         ldc);
}

void ag_gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                  bool a16, int64_t lda, const void *B, bool b16, int64_t ldb, float beta,
                  float *C, int64_t ldc)
{
    product(false, ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C, ldc);
}

void ag_gemm_bf16_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const void *A, bool a16, int64_t lda, const void *B, bool b16,
                         int64_t ldb, float beta, float *C, int64_t ldc)
{
    product(true, ta, tb, M, N, K, alpha, A, a16, lda, B, b16, ldb, beta, C, ldc);
}
