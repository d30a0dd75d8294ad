/* fma_peak.h - the FP32 peak measured with explicit FMA chains, for
 * fma_peak and bench_matmul's share-of-peak figures. */
#ifndef FMA_PEAK_H
#define FMA_PEAK_H

#include <stdbool.h>

/* GFLOP/s of nthreads threads each running independent FMA chains on the
 * widest vectors this CPU has (AVX-512, else AVX2, else the compiler's
 * vectors): the best of `tries` runs of about 0.1 s. With cpu_clock each
 * thread's rate comes from its own CPU time (the figure a busy machine
 * would give if each thread had a core); else from wall time. *isa gets
 * "avx512", "avx2" or "generic". */
double fma_peak_gflops(int nthreads, bool cpu_clock, int tries, const char **isa);

/* The same for the bf16 dot product (vdpbf16ps: 64 flops a zmm instruction,
 * 2 per bf16 multiply-add); 0 without AVX512_BF16. */
double bf16_peak_gflops(int nthreads, bool cpu_clock, int tries);

#endif
