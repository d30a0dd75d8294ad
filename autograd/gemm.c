/* gemm.c - which matmul runs. OpenBLAS when the build has it and its kernel
 * fits the CPU; the built-in blocked kernel (gemm_blocked.c) for the CPU's
 * ISA otherwise, and always without a BLAS. AG_MATMUL or
 * ag_set_matmul_backend force either. Also the naive loop both are tested
 * against. All row-major: C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C. */
#include "internal.h"
#include "gemm_kernel.h"

#include <ctype.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef AG_HAVE_CBLAS
#include <cblas.h>
#endif
#ifdef AG_HAVE_OPENBLAS
char *openblas_get_corename(void);
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

/* ---------------------------------------------------------------- the BLAS */

#ifdef AG_HAVE_CBLAS
static void scale_c(float *C, int64_t ldc, int64_t M, int64_t N, float beta)
{
    if (beta == 1.0f)
        return;
    AG_PARALLEL(M * N, ,
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    );
}

static void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) { /* some BLAS skip beta when K == 0 */
        scale_c(C, ldc, M, N, beta);
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

static void blas_threaded(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc)
{
    /* one thread up to AG_GEMM_MIN multiply-adds, else the pool's team
     * (fewer under load: threads.c) */
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
}
#endif

/* ---------------------------------------------------------------- the choice */

/* What a matmul runs on: the BLAS (kernel NULL) or a built-in kernel. */
typedef struct {
    const ag_gemm_kernel *kernel;
    char name[64]; /* ag_matmul_backend's answer */
} backend;

/* Filled once, then read-only: [0] the BLAS when the build has one, then
 * the built-in kernels this CPU runs, best first. */
static backend backends[4];
static int nbackends;
static atomic_int current = -1;
static atomic_int ready;

#ifdef AG_HAVE_OPENBLAS
/* Rank of an ISA level: 0 SSE, 1 AVX, 2 AVX2 + FMA, 3 AVX-512. */
static int cpu_level(void)
{
    if (ag_gemm_kernel_named("avx512"))
        return 3;
    if (ag_gemm_kernel_named("avx2"))
        return 2;
    return 0;
}

static bool same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
    return *a == *b;
}

/* The ISA level of OpenBLAS's x86-64 kernels of that name; -1: a name not
 * listed here (another architecture, a newer OpenBLAS), which is trusted. */
static int corename_level(const char *core)
{
    static const struct {
        const char *name;
        int level;
    } cores[] = {
        {"SapphireRapids", 3}, {"Cooperlake", 3}, {"SkylakeX", 3},
        {"Haswell", 2}, {"Zen", 2}, {"Excavator", 2},
        {"Sandybridge", 1}, {"Bulldozer", 1}, {"Piledriver", 1}, {"Steamroller", 1},
        {"Prescott", 0}, {"Core2", 0}, {"Penryn", 0}, {"Dunnington", 0}, {"Nehalem", 0},
        {"Atom", 0}, {"Katmai", 0}, {"Coppermine", 0}, {"Northwood", 0}, {"Banias", 0},
        {"Athlon", 0}, {"Opteron", 0}, {"Opteron(SSE3)", 0}, {"Opteron_SSE3", 0},
        {"Barcelona", 0}, {"Bobcat", 0}, {"Nano", 0},
    };
    for (size_t i = 0; i < sizeof cores / sizeof *cores; i++)
        if (same_name(core, cores[i].name))
            return cores[i].level;
    return -1;
}
#endif

static int builtin0; /* index of the best built-in kernel */

static int find_backend(const char *name)
{
    /* ag_matmul_backend's own answers too ("openblas:Zen") */
    if (strcmp(name, "blas") == 0 || strncmp(name, "openblas", 8) == 0 ||
        strcmp(name, "cblas") == 0)
        return builtin0 > 0 ? 0 : -1;
    if (strcmp(name, "builtin") == 0)
        return builtin0;
    const char *isa = strncmp(name, "builtin:", 8) == 0 ? name + 8 : name;
    for (int i = builtin0; i < nbackends; i++)
        if (strcmp(backends[i].kernel->name, isa) == 0)
            return i;
    return -1;
}

/* The default: the BLAS, unless its kernel is below this CPU's ISA (it did
 * not recognise the CPU), which is then said once on stderr. */
static int auto_backend(void)
{
    if (builtin0 == 0)
        return 0;
#ifdef AG_HAVE_OPENBLAS
    const char *core = openblas_get_corename();
    int have = cpu_level(), blas_level = corename_level(core ? core : "");
    if (have >= 2 && blas_level >= 0 && blas_level < have) {
        static atomic_flag said = ATOMIC_FLAG_INIT;
        if (!atomic_flag_test_and_set(&said))
            fprintf(stderr,
                    "agrad: OpenBLAS chose its %s kernels, below this CPU's %s; matmul uses "
                    "the built-in %s kernel (AG_MATMUL=blas forces OpenBLAS)\n",
                    core, have == 3 ? "AVX-512" : "AVX2", backends[builtin0].kernel->name);
        return builtin0;
    }
#endif
    return 0;
}

static void choose_once(void)
{
    if (atomic_load_explicit(&ready, memory_order_acquire))
        return;
#pragma omp critical(ag_gemm_choice)
    if (!atomic_load_explicit(&ready, memory_order_relaxed)) {
#if defined(AG_HAVE_OPENBLAS)
        const char *core = openblas_get_corename();
        snprintf(backends[nbackends++].name, sizeof backends[0].name, "openblas:%s",
                 core ? core : "unknown");
#elif defined(AG_HAVE_CBLAS)
        snprintf(backends[nbackends++].name, sizeof backends[0].name, "cblas");
#endif
        builtin0 = nbackends;
        const char *isas[] = {"avx512", "avx2", "generic"};
        for (size_t i = 0; i < sizeof isas / sizeof *isas; i++) {
            const ag_gemm_kernel *k = ag_gemm_kernel_named(isas[i]);
            if (k) {
                backends[nbackends].kernel = k;
                snprintf(backends[nbackends++].name, sizeof backends[0].name, "builtin:%s",
                         k->name);
            }
        }
        const char *env = getenv("AG_MATMUL");
        int pick = -1;
        if (env && *env && strcmp(env, "auto") != 0) {
            pick = find_backend(env);
            if (pick < 0)
                fprintf(stderr,
                        "agrad: AG_MATMUL=%s is not a matmul this build and CPU run (auto, "
                        "blas, builtin, builtin:avx512, builtin:avx2, builtin:generic); "
                        "using auto\n", env);
        }
        if (pick < 0)
            pick = auto_backend();
        /* a backend set by ag_set_matmul_backend before the first matmul stays */
        int unset = -1;
        atomic_compare_exchange_strong(&current, &unset, pick);
        atomic_store_explicit(&ready, 1, memory_order_release);
    }
}

static const backend *chosen(void)
{
    choose_once();
    return &backends[atomic_load_explicit(&current, memory_order_relaxed)];
}

bool ag_set_matmul_backend(const char *name)
{
    choose_once();
    int i = !name ? -1 : strcmp(name, "auto") == 0 ? auto_backend() : find_backend(name);
    if (i < 0)
        return false;
    atomic_store(&current, i);
    return true;
}

const char *ag_matmul_backend(void) { return chosen()->name; }

/* ---------------------------------------------------------------- entry points */

/* The built-in kernel's split: from ag_gemm_par_min multiply-adds on, a
 * rectangle of C per ag_gemm_par_min of them, at most the thread count
 * (ag_gemm_blocked runs them on the pool's team, fewer under load). */
static int blocked_parts(int64_t M, int64_t N, int64_t K)
{
    return ag_parts_past(M * N * K, ag_gemm_par_min - 1);
}

void ag_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    const backend *b = chosen();
#ifdef AG_HAVE_CBLAS
    if (!b->kernel) {
        blas_threaded(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    ag_gemm_blocked(b->kernel, blocked_parts(M, N, K), ta, tb, M, N, K, alpha, A, lda, B, ldb,
                    beta, C, ldc);
}

/* Called from inside a parallel region: the OpenMP build of OpenBLAS runs
 * single-threaded there by itself. */
void ag_gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc)
{
    const backend *b = chosen();
#ifdef AG_HAVE_CBLAS
    if (!b->kernel) {
        blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    ag_gemm_blocked(b->kernel, 1, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ag_gemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc)
{
    ag_gemm_blocked(ag_gemm_kernel_best(), blocked_parts(M, N, K), ta, tb, M, N, K, alpha, A,
                    lda, B, ldb, beta, C, ldc);
}
