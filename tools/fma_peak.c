/* fma_peak.c - the machine's FP32 peak, measured: every thread runs
 * independent chains of fused multiply-adds on the widest vectors the
 * compiler gives it (-march=native), and the best of several runs counts.
 *   build/tools/fma_peak [threads]   ->  fma_peak: threads=T gflops=G */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

typedef float vec __attribute__((vector_size(64)));

#define CHAINS 12 /* enough independent accumulators to cover FMA latency */

static double run(long iters)
{
    double t0 = omp_get_wtime();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        vec acc[CHAINS], a, b;
        for (int k = 0; k < 16; k++) {
            a[k] = 1.0f + 1e-7f * (float)k;
            b[k] = 1e-7f;
        }
        for (int c = 0; c < CHAINS; c++)
            acc[c] = a * (float)(c + 1);
        for (long i = 0; i < iters; i++)
            for (int c = 0; c < CHAINS; c++)
                acc[c] = acc[c] * a + b;
        for (int c = 0; c < CHAINS; c++)
            for (int k = 0; k < 16; k++)
                sink += acc[c][k];
    }
    double dt = omp_get_wtime() - t0;
    if (sink == 42.0f)
        printf("!");
    return 2.0 * 16 * CHAINS * (double)iters * omp_get_max_threads() / dt / 1e9;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        omp_set_num_threads(atoi(argv[1]));
    double best = 0;
    for (int r = 0; r < 7; r++) {
        double g = run(20000000);
        best = g > best ? g : best;
    }
    printf("fma_peak: threads=%d gflops=%.1f\n", omp_get_max_threads(), best);
    return 0;
}
