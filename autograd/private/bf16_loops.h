/* bf16_loops.h - the conversion loops of bf16.h, included by bf16.c (for
 * the build's own ISA) and by gemm_avx512bf16.c (for AVX-512, chosen at run
 * time where the build does not target it). Each is ag_bf16_round /
 * ag_bf16_float written without a branch, which GCC and clang vectorize:
 * the same bits, lane by lane (tests/test_gemm_bf16.c checks all ties). */
#ifndef AG_BF16_LOOPS_H
#define AG_BF16_LOOPS_H

#include "bf16.h"

/* u's bits rounded to bf16 in the high half (low half garbage): NaN
 * quieted, else + 0x7fff + the kept part's lowest bit (ties to even) */
static inline uint32_t bf16_round_hi(uint32_t u)
{
    uint32_t up = u + 0x7fffu + ((u >> 16) & 1u), nan = u | 0x400000u;
    return (u & 0x7fffffffu) > 0x7f800000u ? nan : up;
}

static inline void bf16_from_f32_loop(ag_bf16 *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, sizeof u);
        dst[i] = (ag_bf16)(bf16_round_hi(u) >> 16);
    }
}

static inline void bf16_to_f32_loop(float *dst, const ag_bf16 *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, sizeof u);
    }
}

/* dst[i] = src[i] rounded to bf16, kept as FP32 */
static inline void bf16_round_f32_loop(float *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, sizeof u);
        u = bf16_round_hi(u) & 0xffff0000u;
        memcpy(dst + i, &u, sizeof u);
    }
}

#endif
