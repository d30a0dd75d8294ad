/* bench_matmul.c - matmul throughput of this build's kernels against a
 * direct cblas_sgemm call (when the build has a BLAS) on the GPT's shapes:
 * forward (A @ W^T) and both backward products, plus attention's batched
 * shapes. Prints GFLOP/s and the ratio to cblas for each.
 *   build/tools/bench_matmul [threads] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#ifdef AG_HAVE_CBLAS
#include <cblas.h>
#endif

typedef void (*gemm_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                        const float *, int64_t, float, float *, int64_t);

#ifdef AG_HAVE_CBLAS
static void direct_cblas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
#endif

/* median GFLOP/s of reps calls */
static double time_gemm(gemm_fn f, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float *A,
                        float *B, float *C, int reps)
{
    double ts[64];
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        f(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
        ts[r] = omp_get_wtime() - t0;
    }
    for (int i = 1; i < reps; i++) /* insertion sort, reps is small */
        for (int j = i; j > 0 && ts[j] < ts[j - 1]; j--) {
            double t = ts[j];
            ts[j] = ts[j - 1];
            ts[j - 1] = t;
        }
    return 2.0 * (double)M * N * K / ts[reps / 2] / 1e9;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        ag_set_num_threads(atoi(argv[1]));
    struct { const char *what; bool ta, tb; int64_t M, N, K; } shapes[] = {
        {"ffwd fc   x @ W^T   ", false, true, 16384, 1536, 384},
        {"ffwd fc   dX = g @ W", false, false, 16384, 384, 1536},
        {"ffwd fc   dW = g^T x", true, false, 1536, 384, 16384},
        {"qkv       x @ W^T   ", false, true, 16384, 1152, 384},
        {"attn      q @ k^T   ", false, true, 256, 256, 64},
        {"attn      att @ v   ", false, false, 256, 64, 256},
        {"medium    x @ W^T   ", false, true, 2048, 512, 128},
        {"medium    dX = g @ W", false, false, 2048, 128, 512},
        {"medium    dW = g^T x", true, false, 512, 128, 2048},
        {"small     x @ W^T   ", false, true, 512, 256, 64},
        {"small     dW = g^T x", true, false, 256, 64, 512},
        {"tiny      x @ W^T   ", false, true, 256, 128, 32},
    };
    size_t maxe = 16384 * 1536;
    float *A = malloc(maxe * sizeof *A), *B = malloc(maxe * sizeof *B), *C = malloc(maxe * sizeof *C);
    ag_rng r = ag_rng_new(1);
    for (size_t i = 0; i < maxe; i++) {
        A[i] = ag_rng_uniform(&r) - 0.5f;
        B[i] = ag_rng_uniform(&r) - 0.5f;
    }
    printf("matmul: backend=%s threads=%d\n", ag_matmul_backend(), ag_get_num_threads());
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        int reps = M * N * K > 100000000 ? 7 : 31;
        double ag = time_gemm(ag_gemm, shapes[s].ta, shapes[s].tb, M, N, K, A, B, C, reps);
        double bi = time_gemm(ag_gemm_builtin, shapes[s].ta, shapes[s].tb, M, N, K, A, B, C, reps);
#ifdef AG_HAVE_CBLAS
        double cb = time_gemm(direct_cblas, shapes[s].ta, shapes[s].tb, M, N, K, A, B, C, reps);
        printf("%s (%5lld x %5lld x %5lld): ag_gemm %6.1f  builtin %6.1f  cblas %6.1f GFLOP/s"
               "  ag/cblas %.2f  builtin/cblas %.2f\n", shapes[s].what, (long long)M, (long long)N,
               (long long)K, ag, bi, cb, ag / cb, bi / cb);
#else
        printf("%s (%5lld x %5lld x %5lld): ag_gemm %6.1f  builtin %6.1f GFLOP/s\n",
               shapes[s].what, (long long)M, (long long)N, (long long)K, ag, bi);
#endif
    }
    free(A);
    free(B);
    free(C);
    return 0;
}
