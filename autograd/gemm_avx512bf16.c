/* gemm_avx512bf16.c - the AVX512_BF16 micro-kernel and its packing
 * (gemm_bf16_kernel.h): a MR x NR tile of C in FP32 zmm accumulators, each
 * step taking one k pair: NV vectors of the packed B panel and a broadcast
 * pair of each A row, MR * NV vdpbf16ps (32 multiply-adds each). vdpbf16ps
 * on Zen 4 issues one zmm a cycle, twice the FP32 FMA's rate, with a
 * latency of about 6 cycles, so 28 independent chains keep it busy.
 *
 * Packing converts FP32 to bf16 with vcvtne2ps2bf16: round to nearest even,
 * bit for bit ag_bf16_round on every normal, zero, infinite and NaN input;
 * it reads FP32 denormals as zero (so does vdpbf16ps with bf16 denormals,
 * and it flushes denormal results), which bf16.h documents.
 *
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512bf16 (meson.build)
 * into a build for any x86-64; gemm_bf16.c runs it only after CPUID
 * reports them. */
#include "gemm_bf16_kernel.h"

#include <string.h>

#ifdef AG_GEMM_BF16_X86
#include <immintrin.h>

/* The tile, chosen by measuring: the four lecture shapes (bench_matmul's
 * "lecture ffwd" and "lecture qkv"), summed CPU time at 1 thread, medians,
 * Zen 4: 14 x 32 363-366 ms, 12 x 32 363-367, 10 x 32 368-370, 8 x 48
 * 374-384, 7 x 64 382-386, 6 x 64 380+; and at 14 x 32 a depth block
 * (AG_GEMM_BF16_KC) of 384: 370, 512: 364, 768: 365-368. A broadcast folded
 * into vdpbf16ps ({1to16}, inline asm) instead of vpbroadcastd: 372. */
#ifndef MR
#define MR 14
#endif
#ifndef NV
#define NV 2
#endif
#define NR (16 * NV)
#define ARS AG_GEMM_BF16_ARS

static inline __mmask16 mask16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

static inline __mmask32 mask32(int64_t n)
{
    return n >= 32 ? (__mmask32)0xFFFFFFFFu : n <= 0 ? (__mmask32)0 : (__mmask32)((1u << n) - 1);
}

/* The element off elements past src, of FP32 or bf16 (s16). */
static inline const void *at(const void *src, bool s16, int64_t off)
{
    return s16 ? (const void *)((const uint16_t *)src + off) : (const void *)((const float *)src + off);
}

/* src[0 .. 32) as bf16 (n of them, zero past) */
static inline __m512i load32(const void *src, bool s16, int64_t n)
{
    if (s16)
        return _mm512_maskz_loadu_epi16(mask32(n), src);
    const float *f = src;
    __m512 lo = _mm512_maskz_loadu_ps(mask16(n), f), hi = _mm512_maskz_loadu_ps(mask16(n - 16), f + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* src[0 .. 16) as bf16 (n of them, zero past) */
static inline __m256i load16(const void *src, bool s16, int64_t n)
{
    if (s16)
        return _mm256_maskz_loadu_epi16(mask16(n), src);
    return (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask16(n), src));
}

/* 16 x 16 transpose of 32-bit words: r[s] holds row s; afterwards r[t]
 * holds column t (as in gemm_avx512.c) */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {
        __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
        __m512d c = _mm512_castps_pd(t[g + 2]), d = _mm512_castps_pd(t[g + 3]);
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
        __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* Rows s < rows of storage, row s at src + s * ld, contiguous in k (kc of
 * them): dst[p * ds + s] = (row s's k 2p, 2p+1), `store` lanes of s written
 * (zero for rows past `rows`). 32 k at a time: 16 rows of 16 pairs
 * converted, then transposed. */
static inline void pack_rows(uint32_t *dst, int64_t ds, int store, const void *src, bool s16,
                             int64_t ld, int64_t rows, int64_t kc)
{
    const __mmask16 sm = mask16(store);
    for (int64_t k = 0; k < kc; k += 32) {
        __m512 r[16];
        for (int s = 0; s < 16; s++)
            r[s] = s < rows ? _mm512_castsi512_ps(load32(at(src, s16, s * ld + k), s16, kc - k))
                            : _mm512_setzero_ps();
        transpose16(r);
        int64_t np = (kc - k + 1) / 2;
        np = np > 16 ? 16 : np;
        for (int t = 0; t < np; t++)
            _mm512_mask_storeu_epi32(dst + (k / 2 + t) * ds, sm, _mm512_castps_si512(r[t]));
    }
}

/* Word s: (row k's s, row k+1's s) as bf16, s < width (zero past), rows
 * at src + k * ld; row k+1 zero at k + 1 == kc. idx: pack_cols's. */
static inline __m512i pair_rows(const void *src, bool s16, int64_t ld, int64_t k, int64_t kc,
                                int64_t width, __m512i idx)
{
    __m256i r0 = load16(at(src, s16, k * ld), s16, width);
    __m256i r1 = k + 1 < kc ? load16(at(src, s16, (k + 1) * ld), s16, width)
                            : _mm256_setzero_si256();
    __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
    return _mm512_permutexvar_epi16(idx, x);
}

/* word i of pair_rows: 16-bit lanes i of the first row and of the second */
#define PAIR_IDX                                                                              \
    _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, \
                     6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0)

/* Storage rows k < kc, row k at src + k * ld, contiguous in s (width of
 * them): dst[p * ds + s] = (row 2p's s, row 2p+1's s), `store` lanes of s
 * written (zero past width): two rows converted, then interleaved. */
static inline void pack_cols(uint32_t *dst, int64_t ds, int store, const void *src, bool s16,
                             int64_t ld, int64_t width, int64_t kc)
{
    const __mmask16 sm = mask16(store);
    const __m512i idx = PAIR_IDX;
    for (int64_t k = 0; k < kc; k += 2)
        _mm512_mask_storeu_epi32(dst + (k / 2) * ds, sm, pair_rows(src, s16, ld, k, kc, width, idx));
}

static void pack_a(uint32_t *ap, bool ta, bool rows, const void *A, bool a16, int64_t lda,
                   int64_t i0, int64_t k0, int64_t m, int64_t kc)
{
    if (!ta && !rows) { /* op(A)[r, k] = A[i0 + r, k0 + k]: rows of A, transposed */
        pack_rows(ap, MR, MR, at(A, a16, i0 * lda + k0), a16, lda, m, kc);
    } else if (!ta) { /* row r converted, in place */
        for (int64_t r = 0; r < m; r++)
            for (int64_t k = 0; k < kc; k += 32)
                _mm512_mask_storeu_epi32(ap + r * ARS + k / 2, mask16((kc - k + 1) / 2),
                                         load32(at(A, a16, (i0 + r) * lda + k0 + k), a16, kc - k));
    } else { /* op(A)[r, k] = A[k0 + k, i0 + r] */
        pack_cols(ap, MR, MR, at(A, a16, k0 * lda + i0), a16, lda, m, kc);
    }
}

static void pack_b(uint32_t *bp, bool tb, const void *B, bool b16, int64_t ldb, int64_t k0,
                   int64_t j0, int64_t kc, int64_t n)
{
    for (int64_t j = 0; j < NR; j += 16) {
        if (!tb) /* op(B)[k, j] = B[k0 + k, j0 + j] */
            pack_cols(bp + j, NR, 16, at(B, b16, k0 * ldb + j0 + (j < n ? j : 0)), b16, ldb,
                      n - j, kc);
        else /* op(B)[k, j] = B[j0 + j, k0 + k] */
            pack_rows(bp + j, NR, 16, at(B, b16, (j0 + (j < n ? j : 0)) * ldb + k0), b16, ldb,
                      n - j, kc);
    }
}

/* X(r) for each row a tile may have, X(v) for each vector of columns: a
 * tile of m rows (a constant after inlining) keeps those with r < m. */
#define FOR_ROWS(X)                                                                           \
    X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define FOR_V(X, r) X(r, 0) X(r, 1) X(r, 2) X(r, 3)

/* C[m, NR masked by mk] = alpha * A-panel . B-panel + beta * C over kp k
 * pairs, m <= MR a compile-time constant after inlining. */
static inline __attribute__((always_inline)) void tile(const int m, const bool rows, int64_t kp,
                                                        const uint32_t *a, const uint32_t *b,
                                                        float *C, int64_t ldc, float alpha,
                                                        float beta, const __mmask16 *mk)
{
    /* pair p of row r: a[r * ARS] (rows layout; ARS a constant, so each
     * broadcast is one pointer plus a displacement) or a[r], with a
     * stepping one pair or one column of pairs */
    __m512 c[MR][NV];
#define ZERO(r, v)                                                                            \
    if (v < NV)                                                                               \
        c[r][v] = _mm512_setzero_ps();
#define INIT(r)                                                                               \
    if (r < m && r < MR) {                                                                              \
        FOR_V(ZERO, r)                                                                        \
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0);                               \
        _mm_prefetch((const char *)(C + r * ldc + NR - 1), _MM_HINT_T0);                      \
    }
    FOR_ROWS(INIT)
#undef INIT
#undef ZERO
    for (int64_t p = 0; p < kp; p++) {
        __m512bh bv[NV];
        for (int v = 0; v < NV; v++)
            bv[v] = (__m512bh)_mm512_loadu_si512(b + 16 * v);
#define DOT(r, v)                                                                             \
    if (v < NV)                                                                               \
        c[r][v] = _mm512_dpbf16_ps(c[r][v], av, bv[v]);
#define STEP(r)                                                                               \
    if (r < m && r < MR) {                                                                              \
        __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[rows ? r * ARS : r]);                \
        FOR_V(DOT, r)                                                                         \
    }
        FOR_ROWS(STEP)
#undef STEP
#undef DOT
        a += rows ? 1 : MR;
        b += NR;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (beta == 0.0f) {
#define PUTV(r, v)                                                                            \
    if (v < NV)                                                                               \
        _mm512_mask_storeu_ps(C + r * ldc + 16 * v, mk[v], _mm512_mul_ps(va, c[r][v]));
#define PUT(r)                                                                                \
    if (r < m && r < MR) {                                                                              \
        FOR_V(PUTV, r)                                                                        \
    }
        FOR_ROWS(PUT)
#undef PUT
#undef PUTV
    } else {
#define ADDV(r, v)                                                                            \
    if (v < NV) {                                                                             \
        __m512 x = _mm512_maskz_loadu_ps(mk[v], C + r * ldc + 16 * v);                        \
        if (beta != 1.0f)                                                                     \
            x = _mm512_mul_ps(vb, x);                                                         \
        _mm512_mask_storeu_ps(C + r * ldc + 16 * v, mk[v], _mm512_fmadd_ps(va, c[r][v], x));  \
    }
#define ADD(r)                                                                                \
    if (r < m && r < MR) {                                                                              \
        FOR_V(ADDV, r)                                                                        \
    }
        FOR_ROWS(ADD)
#undef ADD
#undef ADDV
    }
}

/* One function per A layout, each switching to a tile of constant height
 * (as gemm_avx512.c: one loop selecting the layout at every step is slower). */
#define CASE(M, ROWS)                                                                         \
    case M:                                                                                   \
        if (M <= MR)                                                                          \
            tile(M <= MR ? M : MR, ROWS, kp, a, b, C, ldc, alpha, beta, mk);                  \
        break;
#define MICRO(NAME, ROWS)                                                                     \
    static __attribute__((noinline)) void NAME(int64_t m, int64_t n, int64_t kp,             \
                                               const uint32_t *a, const uint32_t *b,          \
                                               float *C, int64_t ldc, float alpha,            \
                                               float beta)                                    \
    {                                                                                         \
        __mmask16 mk[4];                                                                      \
        for (int v = 0; v < 4; v++)                                                           \
            mk[v] = mask16(n - 16 * v);                                                       \
        switch (m) {                                                                          \
            CASE(16, ROWS) CASE(15, ROWS) CASE(14, ROWS) CASE(13, ROWS) CASE(12, ROWS)        \
            CASE(11, ROWS) CASE(10, ROWS) CASE(9, ROWS) CASE(8, ROWS) CASE(7, ROWS)           \
            CASE(6, ROWS) CASE(5, ROWS) CASE(4, ROWS) CASE(3, ROWS) CASE(2, ROWS)             \
            CASE(1, ROWS)                                                                     \
        default:                                                                              \
            break;                                                                            \
        }                                                                                     \
    }
MICRO(micro_rows, true)
MICRO(micro_cols, false)
#undef MICRO
#undef CASE

static void micro(int64_t m, int64_t n, int64_t kp, const uint32_t *a, bool a_rows,
                  const uint32_t *b, float *C, int64_t ldc, float alpha, float beta)
{
    (a_rows ? micro_rows : micro_cols)(m, n, kp, a, b, C, ldc, alpha, beta);
}

/* ---------------------------------------------------------------- one row */

/* alpha * s + beta * C (C not read at beta 0), lanes of m */
static inline void put_row(float *C, __mmask16 m, __m512 s, float alpha, float beta)
{
    __m512 r = _mm512_mul_ps(_mm512_set1_ps(alpha), s);
    if (beta != 0.0f)
        r = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, C), r);
    _mm512_mask_storeu_ps(C, m, r);
}

static inline float put_one(float c, float s, float alpha, float beta)
{
    return beta == 0.0f ? alpha * s : alpha * s + beta * c;
}

static void row(bool tb, int64_t N, int64_t K, float alpha, const ag_bf16 *a, const void *B,
                bool b16, int64_t ldb, float beta, float *C, float *work)
{
    const int64_t ke = K + (K & 1); /* a's length */
    if (tb) { /* C[j] = a . B's row j: four rows at a time, four chains */
        int64_t j = 0;
        for (; j + 4 <= N; j += 4) {
            __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                           _mm512_setzero_ps()};
            for (int64_t k = 0; k < K; k += 32) {
                __m512bh av = (__m512bh)_mm512_maskz_loadu_epi16(mask32(ke - k), a + k);
                for (int r = 0; r < 4; r++)
                    s[r] = _mm512_dpbf16_ps(
                        s[r], av, (__m512bh)load32(at(B, b16, (j + r) * ldb + k), b16, K - k));
            }
            for (int r = 0; r < 4; r++)
                C[j + r] = put_one(C[j + r], _mm512_reduce_add_ps(s[r]), alpha, beta);
        }
        for (; j < N; j++) {
            __m512 s = _mm512_setzero_ps();
            for (int64_t k = 0; k < K; k += 32) {
                __m512bh av = (__m512bh)_mm512_maskz_loadu_epi16(mask32(ke - k), a + k);
                s = _mm512_dpbf16_ps(s, av, (__m512bh)load32(at(B, b16, j * ldb + k), b16, K - k));
            }
            C[j] = put_one(C[j], _mm512_reduce_add_ps(s), alpha, beta);
        }
        return;
    }
    /* C = alpha * t + beta * C, t = sum over k pairs of (a[k], a[k+1]) .
     * (B[k, :], B[k+1, :]) accumulated in C's place (at beta 0) or in work,
     * row pair by row pair, so B streams through in its storage order: 32
     * columns of rows k and k+1 converted, then interleaved into the pairs
     * of columns 0 .. 16 (lo) and 16 .. 32 (hi) */
    __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                  39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    float *t = beta == 0.0f ? C : work;
    for (int64_t j = 0; j < N; j += 16)
        _mm512_mask_storeu_ps(t + j, mask16(N - j), _mm512_setzero_ps());
    for (int64_t k = 0; k < K; k += 2) {
        uint32_t pair;
        memcpy(&pair, a + k, sizeof pair);
        __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
        for (int64_t j = 0; j < N; j += 32) {
            __m512i r0 = load32(at(B, b16, k * ldb + j), b16, N - j);
            __m512i r1 = k + 1 < K ? load32(at(B, b16, (k + 1) * ldb + j), b16, N - j)
                                   : _mm512_setzero_si512();
            __mmask16 m0 = mask16(N - j), m1 = mask16(N - j - 16);
            __m512 s0 = _mm512_maskz_loadu_ps(m0, t + j), s1 = _mm512_maskz_loadu_ps(m1, t + j + 16);
            s0 = _mm512_dpbf16_ps(s0, av, (__m512bh)_mm512_permutex2var_epi16(r0, lo, r1));
            s1 = _mm512_dpbf16_ps(s1, av, (__m512bh)_mm512_permutex2var_epi16(r0, hi, r1));
            _mm512_mask_storeu_ps(t + j, m0, s0);
            _mm512_mask_storeu_ps(t + j + 16, m1, s1);
        }
    }
    for (int64_t j = 0; j < N; j += 16)
        put_row(C + j, mask16(N - j), _mm512_maskz_loadu_ps(mask16(N - j), t + j), alpha, beta);
}

/* ---------------------------------------------------------------- conversions */

#include "bf16_loops.h"

void ag_bf16_from_f32_avx512(ag_bf16 *dst, const float *src, int64_t n)
{
    bf16_from_f32_loop(dst, src, n);
}

void ag_bf16_to_f32_avx512(float *dst, const ag_bf16 *src, int64_t n)
{
    bf16_to_f32_loop(dst, src, n);
}

void ag_bf16_round_f32_avx512(float *dst, const float *src, int64_t n)
{
    bf16_round_f32_loop(dst, src, n);
}

const ag_gemm_bf16_kernel_t ag_gemm_bf16_avx512 = {
    .name = "avx512_bf16", .mr = MR, .nr = NR,
    .micro = micro, .pack_a = pack_a, .pack_b = pack_b, .row = row,
};

#endif
