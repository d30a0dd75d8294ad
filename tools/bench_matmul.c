/* bench_matmul.c - the built-in GEMM against OpenBLAS (a direct cblas_sgemm
 * call, when the build has it) on the GPT's shapes: forward (x @ W^T), both
 * backward products, attention's batched shapes, and the small presets'.
 * The two run alternately, call by call, so drift in the machine's speed
 * hits both alike; each figure is the median of its calls.
 *
 *   build/tools/bench_matmul [threads] [--kernel avx512|avx2|generic] [--clock cpu|wall]
 *                            [--precision fp32|bf16] [--lecture]
 *
 * Per shape: GFLOP/s of builtin and openblas, builtin/openblas, and builtin's
 * share of the FMA peak (fma_peak_run.c) at the same thread count. The clock
 * is the process's CPU time at 1 thread (steady on a busy machine) and wall
 * time otherwise, unless --clock says; CPU time at T threads counts as that
 * time over T (run it with OMP_WAIT_POLICY=PASSIVE, or waiting threads' spins
 * count as work).
 *
 * --precision bf16 adds the bf16 product (ag_gemm_bf16's kernel, or its
 * emulation without AVX512_BF16) on the same FP32 operands, converted as it
 * packs: its GFLOP/s (nominal: 2 M N K over the time), bf16/builtin,
 * bf16/openblas and its share of the bf16 peak (vdpbf16ps chains,
 * fma_peak.h); the summary line gives the lecture shapes' total time ratio.
 * --lecture times the lecture GPT's twelve linear-layer products instead
 * (forward and both backward products of its four layers), the summary
 * then their total: the ratio a training step's linear layers would see. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bf16.h"
#include "fma_peak.h"
#include "gemm_bf16_kernel.h"
#include "gemm_kernel.h"
#include "internal.h"

#ifdef AG_HAVE_CBLAS
#include <cblas.h>
#endif

typedef struct {
    const char *what;
    bool ta, tb;
    int64_t M, N, K;
} shape;

static const shape shapes[] = {
    {"lecture ffwd x @ W^T    ", false, true, 16384, 1536, 384},
    {"lecture ffwd dX = g @ W ", false, false, 16384, 384, 1536},
    {"lecture ffwd dW = g^T x ", true, false, 1536, 384, 16384},
    {"lecture qkv  x @ W^T    ", false, true, 16384, 1152, 384},
    {"attn    q @ k^T         ", false, true, 256, 256, 64},
    {"attn    att @ v         ", false, false, 256, 64, 256},
    /* one head's products as ops_attention.c issues them (64-row blocks) */
    {"lecture head q @ k^T    ", false, true, 64, 256, 64},
    {"lecture head att @ v    ", false, false, 64, 64, 256},
    {"lecture head dk = dS^T q", true, false, 64, 64, 256},
    {"medium  head q @ k^T    ", false, true, 64, 64, 32},
    {"medium  head att @ v    ", false, false, 64, 32, 64},
    {"medium  head dk = dS^T q", true, false, 64, 32, 64},
    {"medium  x @ W^T         ", false, true, 2048, 512, 128},
    {"medium  dX = g @ W      ", false, false, 2048, 128, 512},
    {"medium  dW = g^T x      ", true, false, 512, 128, 2048},
    {"small   x @ W^T         ", false, true, 512, 256, 64},
    {"small   dW = g^T x      ", true, false, 256, 64, 512},
    {"tiny    x @ W^T         ", false, true, 256, 128, 32},
};

/* --lecture: the lecture GPT's twelve linear-layer products per block
 * (B * T = 16384 tokens, n_embd 384): forward, dX and dW of qkv (384 ->
 * 1152), the attention projection (384 -> 384) and the MLP (384 -> 1536,
 * 1536 -> 384), W stored (out, in) as nn's linear keeps it. */
static const shape lecture[] = {
    {"qkv   y = x @ W^T       ", false, true, 16384, 1152, 384},
    {"qkv   dX = g @ W        ", false, false, 16384, 384, 1152},
    {"qkv   dW = g^T x        ", true, false, 1152, 384, 16384},
    {"proj  y = x @ W^T       ", false, true, 16384, 384, 384},
    {"proj  dX = g @ W        ", false, false, 16384, 384, 384},
    {"proj  dW = g^T x        ", true, false, 384, 384, 16384},
    {"fc    y = x @ W^T       ", false, true, 16384, 1536, 384},
    {"fc    dX = g @ W        ", false, false, 16384, 384, 1536},
    {"fc    dW = g^T x        ", true, false, 1536, 384, 16384},
    {"fc2   y = x @ W^T       ", false, true, 16384, 384, 1536},
    {"fc2   dX = g @ W        ", false, false, 16384, 1536, 384},
    {"fc2   dW = g^T x        ", true, false, 384, 1536, 16384},
};

static bool cpu_clock, bf16;
static const ag_gemm_kernel *kernel;
static int nthreads = 1;

static double now(void)
{
    struct timespec ts;
    clock_gettime(cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    return cpu_clock ? t / nthreads : t;
}

static void run_builtin(const shape *s, const float *A, const float *B, float *C)
{
    ag_gemm_blocked(kernel, nthreads, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A,
                    s->ta ? s->M : s->K, B, s->tb ? s->K : s->N, 0.0f, C, s->N);
}

static void run_bf16(const shape *s, const float *A, const float *B, float *C)
{
    const ag_gemm_bf16_kernel_t *k = ag_gemm_bf16_current();
    if (k)
        ag_gemm_bf16_blocked(k, nthreads, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, false,
                             s->ta ? s->M : s->K, B, false, s->tb ? s->K : s->N, 0.0f, C, s->N);
    else
        ag_gemm_bf16(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, false, s->ta ? s->M : s->K, B,
                     false, s->tb ? s->K : s->N, 0.0f, C, s->N);
}

#ifdef AG_HAVE_CBLAS
static void run_blas(const shape *s, const float *A, const float *B, float *C)
{
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                s->tb ? CblasTrans : CblasNoTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f, A,
                (int)(s->ta ? s->M : s->K), B, (int)(s->tb ? s->K : s->N), 0.0f, C, (int)s->N);
}
#endif

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

int main(int argc, char **argv)
{
    const char *kname = NULL, *clock_name = NULL;
    bool lecture_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--kernel") == 0 && i + 1 < argc)
            kname = argv[++i];
        else if (strcmp(argv[i], "--clock") == 0 && i + 1 < argc)
            clock_name = argv[++i];
        else if (strcmp(argv[i], "--lecture") == 0)
            lecture_only = true;
        else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc &&
                 (strcmp(argv[i + 1], "bf16") == 0 || strcmp(argv[i + 1], "fp32") == 0))
            bf16 = strcmp(argv[++i], "bf16") == 0;
        else if (atoi(argv[i]) > 0)
            nthreads = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: bench_matmul [threads] [--kernel avx512|avx2|generic] "
                            "[--clock cpu|wall] [--precision fp32|bf16] [--lecture]\n");
            return 2;
        }
    }
    kernel = kname ? ag_gemm_kernel_named(kname) : ag_gemm_kernel_best();
    if (!kernel) {
        fprintf(stderr, "bench_matmul: this build or CPU has no %s kernel\n", kname);
        return 2;
    }
    cpu_clock = clock_name ? strcmp(clock_name, "cpu") == 0 : nthreads == 1;
    ag_set_num_threads(nthreads);

    const char *isa;
    double peak = fma_peak_gflops(nthreads, cpu_clock, 5, &isa);
    const char *blas_name = "none";
#ifdef AG_HAVE_CBLAS
    if (ag_set_matmul_backend("blas"))
        blas_name = ag_matmul_backend();
#endif
    printf("bench_matmul: threads=%d clock=%s builtin=%s openblas=%s fma_peak=%.1f GFLOP/s (%s)\n",
           nthreads, cpu_clock ? "cpu" : "wall", kernel->name, blas_name, peak, isa);
    double bpeak = bf16 ? bf16_peak_gflops(nthreads, cpu_clock, 5) : 0;
    if (bf16)
        printf("bench_matmul: bf16=%s bf16_peak=%.1f GFLOP/s%s\n", ag_gemm_bf16_kernel(), bpeak,
               bpeak > 0 ? " (vdpbf16ps)" : " (no AVX512_BF16)");
    printf("%-24s %5s %5s %5s  %8s %8s  %6s  %6s", "shape", "M", "N", "K", "builtin",
           "openblas", "ratio", "%peak");
    if (bf16)
        printf("  %8s %7s %7s %6s", "bf16", "/builtin", "/blas", "%bpeak");
    printf("\n");
    double lec_fp32 = 0, lec_bf16 = 0, lec_blas = 0; /* the lecture shapes' summed times */

    size_t maxe = 16384 * 1536;
    float *A = malloc(maxe * sizeof *A), *B = malloc(maxe * sizeof *B);
    float *C = malloc(maxe * sizeof *C);
    ag_rng r = ag_rng_new(1);
    for (size_t i = 0; i < maxe; i++) {
        A[i] = ag_rng_uniform(&r) - 0.5f;
        B[i] = ag_rng_uniform(&r) - 0.5f;
    }
    double worst = 1e9;
    const char *worst_what = "";
    const shape *list = lecture_only ? lecture : shapes;
    size_t nshapes = lecture_only ? sizeof lecture / sizeof *lecture : sizeof shapes / sizeof *shapes;
    for (size_t si = 0; si < nshapes; si++) {
        const shape *s = &list[si];
        double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        /* about 0.3 s of calls per kernel at 100 GFLOP/s, 7 at least */
        int reps = (int)(3e10 / flops);
        reps = reps < 7 ? 7 : reps > 301 ? 301 : reps;
        double *tb = malloc((size_t)reps * sizeof *tb), *to = malloc((size_t)reps * sizeof *to);
        double *th = malloc((size_t)reps * sizeof *th);
        run_builtin(s, A, B, C); /* warm: page in, wake threads */
        if (bf16)
            run_bf16(s, A, B, C);
#ifdef AG_HAVE_CBLAS
        run_blas(s, A, B, C);
#endif
        for (int i = 0; i < reps; i++) {
            double t0 = now();
            run_builtin(s, A, B, C);
            tb[i] = now() - t0;
#ifdef AG_HAVE_CBLAS
            t0 = now();
            run_blas(s, A, B, C);
            to[i] = now() - t0;
#endif
            if (bf16) {
                t0 = now();
                run_bf16(s, A, B, C);
                th[i] = now() - t0;
            }
        }
        double gb = flops / median(tb, reps) / 1e9;
        double gh = bf16 ? flops / median(th, reps) / 1e9 : 0;
        bool lecture = lecture_only || strncmp(s->what, "lecture ffwd", 12) == 0 ||
                       strncmp(s->what, "lecture qkv", 11) == 0;
#ifdef AG_HAVE_CBLAS
        double go = flops / median(to, reps) / 1e9;
        printf("%s %5lld %5lld %5lld  %8.1f %8.1f  %6.2f  %5.0f%%", s->what, (long long)s->M,
               (long long)s->N, (long long)s->K, gb, go, gb / go, 100 * gb / peak);
        if (bf16)
            printf("  %8.1f %7.2f %7.2f %5.0f%%", gh, gh / gb, gh / go,
                   bpeak > 0 ? 100 * gh / bpeak : 0.0);
        printf("\n");
        if (lecture)
            lec_blas += flops / go;
        if (gb / go < worst) {
            worst = gb / go;
            worst_what = s->what;
        }
#else
        printf("%s %5lld %5lld %5lld  %8.1f %8s  %6s  %5.0f%%", s->what, (long long)s->M,
               (long long)s->N, (long long)s->K, gb, "-", "-", 100 * gb / peak);
        if (bf16)
            printf("  %8.1f %7.2f %7s %5.0f%%", gh, gh / gb, "-",
                   bpeak > 0 ? 100 * gh / bpeak : 0.0);
        printf("\n");
#endif
        if (lecture) {
            lec_fp32 += flops / gb;
            lec_bf16 += bf16 ? flops / gh : 0;
        }
        free(tb);
        free(to);
        free(th);
    }
    if (bf16) {
        printf("bench_matmul: threads=%d lecture shapes (%d) bf16 %.2fx builtin", nthreads,
               lecture_only ? 12 : 4, lec_fp32 / lec_bf16);
#ifdef AG_HAVE_CBLAS
        printf(", %.2fx openblas", lec_blas / lec_bf16);
#endif
        printf(" (summed times)\n");
    }
    (void)lec_blas;
#ifdef AG_HAVE_CBLAS
    printf("bench_matmul: threads=%d worst builtin/openblas %.2f (%s)\n", nthreads, worst,
           worst_what);
#else
    (void)worst;
    (void)worst_what;
#endif
    free(A);
    free(B);
    free(C);
    return 0;
}
