/* fma_peak_run.c - the FMA loops behind fma_peak.h: per ISA, enough
 * independent accumulator chains to cover FMA latency times the FMA ports
 * (AVX-512: 16 chains, for two ports of 4-cycle latency with margin; AVX2:
 * 12 of the 16 ymm registers). Written with FMA intrinsics: under -std=c11
 * GCC does not fuse a * b + c, so a plain loop would measure mul + add. */
#include "fma_peak.h"

#include <omp.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now(bool cpu)
{
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Each returns the flops it did; *sink keeps the chains alive. */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double chains_avx512(long iters, float *sink)
{
    __m512 acc[16], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int c = 0; c < 16; c++)
        acc[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < 16; c++)
            acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    for (int c = 1; c < 16; c++)
        acc[0] = _mm512_add_ps(acc[0], acc[c]);
    *sink += _mm512_reduce_add_ps(acc[0]);
    return 2.0 * 16 * 16 * (double)iters;
}

__attribute__((target("avx2,fma"))) static double chains_avx2(long iters, float *sink)
{
    __m256 acc[12], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int c = 0; c < 12; c++)
        acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < 12; c++)
            acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    float out[8];
    for (int c = 1; c < 12; c++)
        acc[0] = _mm256_add_ps(acc[0], acc[c]);
    _mm256_storeu_ps(out, acc[0]);
    for (int k = 0; k < 8; k++)
        *sink += out[k];
    return 2.0 * 12 * 8 * (double)iters;
}

/* vdpbf16ps: 32 bf16 multiply-adds (64 flops) per zmm instruction into 16
 * FP32 lanes; 16 chains cover its latency (about 6 cycles on Zen 4) */
__attribute__((target("avx512f,avx512bf16"))) static double chains_bf16(long iters, float *sink)
{
    __m512 acc[16];
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);
    for (int c = 0; c < 16; c++)
        acc[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < 16; c++)
            acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
    for (int c = 1; c < 16; c++)
        acc[0] = _mm512_add_ps(acc[0], acc[c]);
    *sink += _mm512_reduce_add_ps(acc[0]);
    return 64.0 * 16 * (double)iters;
}
#endif

/* elsewhere: the compiler's vectors, fused by -ffp-contract=fast (meson.build) */
typedef float v4 __attribute__((vector_size(16)));
static double chains_generic(long iters, float *sink)
{
    v4 acc[12], a = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, b = {1e-7f, 1e-7f, 1e-7f, 1e-7f};
    for (int c = 0; c < 12; c++)
        acc[c] = (v4){(float)c, (float)c, (float)c, (float)c};
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < 12; c++)
            acc[c] = acc[c] * a + b;
    for (int c = 0; c < 12; c++)
        *sink += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
    return 2.0 * 12 * 4 * (double)iters;
}

typedef double (*chains_fn)(long, float *);

static chains_fn pick(const char **isa)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *isa = "avx512";
        return chains_avx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *isa = "avx2";
        return chains_avx2;
    }
#endif
    *isa = "generic";
    return chains_generic;
}

static double peak(chains_fn f, int nthreads, bool cpu_clock, int tries)
{
    float sink = 0;
    f(100000, &sink); /* wake the vector units up */
    double best = 0;
    for (int t = 0; t < tries; t++) {
        double rate = 0, w0 = now(false);
        long iters = 4000000;
#pragma omp parallel num_threads(nthreads) reduction(+ : rate, sink)
        {
            double t0 = now(cpu_clock);
            double flops = f(iters, &sink);
            if (cpu_clock)
                rate = flops / (now(true) - t0);
            else
                rate = flops;
        }
        if (!cpu_clock)
            rate /= now(false) - w0;
        best = rate > best ? rate : best;
    }
    if (sink == 42.0f) /* never: keeps the chains' results in use */
        best += 1e-9;
    return best / 1e9;
}

double fma_peak_gflops(int nthreads, bool cpu_clock, int tries, const char **isa)
{
    const char *name;
    chains_fn f = pick(&name);
    if (isa)
        *isa = name;
    return peak(f, nthreads, cpu_clock, tries);
}

double bf16_peak_gflops(int nthreads, bool cpu_clock, int tries)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"))
        return peak(chains_bf16, nthreads, cpu_clock, tries);
#endif
    (void)nthreads, (void)cpu_clock, (void)tries;
    return 0;
}
