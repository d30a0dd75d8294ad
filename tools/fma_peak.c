/* fma_peak.c - the machine's FP32 peak, measured: each thread runs
 * independent chains of explicit FMAs on the widest vectors the CPU has
 * (fma_peak_run.c), the best of several runs counts.
 *   build/tools/fma_peak [threads] [--cpu]
 *     -> fma_peak: threads=T isa=avx512 clock=wall gflops=G per_thread=G/T
 *     -> bf16_peak: threads=T isa=avx512_bf16 clock=wall gflops=G per_thread=G/T ratio=R
 * (the second where the CPU has AVX512_BF16: vdpbf16ps chains, 2 flops per
 * bf16 multiply-add; ratio is its rate over the FP32 FMA's)
 * --cpu times each thread by its own CPU time (for a busy machine); the
 * default is wall time, what the threads really deliver together. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fma_peak.h"

int main(int argc, char **argv)
{
    int threads = 1;
    bool cpu = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cpu") == 0)
            cpu = true;
        else if (atoi(argv[i]) > 0)
            threads = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: fma_peak [threads] [--cpu]\n");
            return 2;
        }
    }
    const char *isa;
    double g = fma_peak_gflops(threads, cpu, 7, &isa);
    printf("fma_peak: threads=%d isa=%s clock=%s gflops=%.1f per_thread=%.1f\n", threads, isa,
           cpu ? "cpu" : "wall", g, g / threads);
    double b = bf16_peak_gflops(threads, cpu, 7);
    if (b > 0)
        printf("bf16_peak: threads=%d isa=avx512_bf16 clock=%s gflops=%.1f per_thread=%.1f "
               "ratio=%.2f\n", threads, cpu ? "cpu" : "wall", b, b / threads, b / g);
    else
        printf("bf16_peak: this CPU has no AVX512_BF16\n");
    return 0;
}
