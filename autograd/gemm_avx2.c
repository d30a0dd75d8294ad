/* gemm_avx2.c - the AVX2/FMA micro-kernel: a 6 x 16 tile of C in 12 ymm
 * accumulators (of the 16 registers, two hold the B row and one the
 * broadcast). Each step of k: 2 loads of B, 6 broadcasts of A, 12 FMAs.
 *
 * Compiled with -mavx2 -mfma (see meson.build) into a build for any x86-64;
 * gemm_blocked.c runs it only after CPUID reports AVX2 and FMA. */
#include "gemm_kernel.h"

#ifdef AG_GEMM_X86
#include <immintrin.h>

#define MR 6
#define NR 16
#define TB 8

/* 8 x 8 transpose in registers: r[s] holds row s; afterwards r[t] holds column t */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4g + c], lane l: column 4l + c of rows 4g .. 4g+3 */
    for (int g = 0; g < 8; g += 4) {
        __m256d a = _mm256_castps_pd(t[g]), b = _mm256_castps_pd(t[g + 1]);
        __m256d c = _mm256_castps_pd(t[g + 2]), d = _mm256_castps_pd(t[g + 3]);
        u[g] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
        u[g + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
        u[g + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
        u[g + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

static void transpose_block(float *dst, const float *src, int64_t ldb, int64_t nj, int64_t nk)
{
    __m256 r[8];
    if (nk == 8) {
        for (int s = 0; s < 8; s++)
            r[s] = s < nj ? _mm256_loadu_ps(src + s * ldb) : _mm256_setzero_ps();
    } else { /* the depth's ragged end: never read past it */
        for (int s = 0; s < 8; s++) {
            float row[8] = {0};
            for (int t = 0; s < nj && t < nk; t++)
                row[t] = src[s * ldb + t];
            r[s] = _mm256_loadu_ps(row);
        }
    }
    transpose8(r);
    for (int t = 0; t < nk; t++)
        _mm256_storeu_ps(dst + t * NR, r[t]);
}

static inline void copy_row(float *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
    for (; i < n; i++)
        dst[i] = src[i];
}

#include "gemm_pack.h"

/* X(r) for each row a tile may have (see gemm_avx512.c) */
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* element (r, k) of a rows-layout panel, r a constant (see tile) */
#define ROW(r) ((r) < 3 ? p0 : p1)[(r) % 3 == 0 ? o0 : (r) % 3 == 1 ? o1 : o2]

/* C[m, n] = alpha * A-panel @ B-panel + beta * C; m <= 6 and the A layout
 * are compile-time constants after inlining. */
static inline __attribute__((always_inline)) void tile(const int m, const bool rows, int64_t kc,
                                                        const float *a, int64_t as,
                                                        const float *b, int64_t b_ks, float *C,
                                                        int64_t ldc, int64_t n, float alpha,
                                                        float beta)
{
    __m256 c0[MR], c1[MR];
#define INIT(r)                                                                   \
    if (r < m) {                                                                  \
        c0[r] = _mm256_setzero_ps();                                              \
        c1[r] = _mm256_setzero_ps();                                              \
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0);                   \
        _mm_prefetch((const char *)(C + r * ldc + NR - 1), _MM_HINT_T0);          \
    }
    FOR_ROWS(INIT)
#undef INIT
    /* rows layout: row r at base r / 3 plus offset r % 3 (see gemm_avx512.c) */
    const float *p0 = a, *p1 = a + 3 * as;
    int64_t o0 = 0, o1 = as, o2 = 2 * as;
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#define STEP(r)                                                                   \
    if (r < m) {                                                                  \
        __m256 av = _mm256_set1_ps(rows ? ROW(r) : a[r]);                         \
        c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);                                   \
        c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);                                   \
    }
        FOR_ROWS(STEP)
#undef STEP
        if (rows) {
            o0++, o1++, o2++;
        } else {
            a += as;
        }
        b += b_ks;
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (n == NR) {
#define PUT(r)                                                                    \
    if (r < m) {                                                                  \
        float *c = C + r * ldc;                                                   \
        __m256 y0 = _mm256_mul_ps(va, c0[r]), y1 = _mm256_mul_ps(va, c1[r]);      \
        if (beta != 0.0f) {                                                       \
            __m256 x0 = _mm256_loadu_ps(c), x1 = _mm256_loadu_ps(c + 8);          \
            y0 = beta == 1.0f ? _mm256_add_ps(y0, x0) : _mm256_fmadd_ps(vb, x0, y0); \
            y1 = beta == 1.0f ? _mm256_add_ps(y1, x1) : _mm256_fmadd_ps(vb, x1, y1); \
        }                                                                         \
        _mm256_storeu_ps(c, y0);                                                  \
        _mm256_storeu_ps(c + 8, y1);                                              \
    }
        FOR_ROWS(PUT)
#undef PUT
    } else { /* ragged right edge: through a buffer, never touching C past n */
        float t[MR][NR];
#define BUF(r)                                                                    \
    if (r < m) {                                                                  \
        _mm256_storeu_ps(t[r], _mm256_mul_ps(va, c0[r]));                         \
        _mm256_storeu_ps(t[r] + 8, _mm256_mul_ps(va, c1[r]));                     \
    }
        FOR_ROWS(BUF)
#undef BUF
        for (int r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++)
                C[r * ldc + j] = beta == 0.0f ? t[r][j] : t[r][j] + beta * C[r * ldc + j];
    }
}

/* One function per A layout, each switching to a tile of constant height:
 * clang would otherwise merge the two layouts' loops into one that selects
 * between them at every step. */
#define MICRO(NAME, ROWS)                                                               \
    static __attribute__((noinline)) void NAME(int64_t m, int64_t n, int64_t kc,       \
                                               const float *a, int64_t as,              \
                                               const float *b, int64_t b_ks, float *C,  \
                                               int64_t ldc, float alpha, float beta)    \
    {                                                                                   \
        switch (m) {                                                                    \
            CASE(6, ROWS) CASE(5, ROWS) CASE(4, ROWS) CASE(3, ROWS) CASE(2, ROWS)       \
            CASE(1, ROWS)                                                               \
        default:                                                                        \
            break;                                                                      \
        }                                                                               \
    }
#define CASE(M, ROWS)                                                                   \
    case M:                                                                             \
        tile(M, ROWS, kc, a, as, b, b_ks, C, ldc, n, alpha, beta);                        \
        break;
MICRO(micro_rows, true)
MICRO(micro_cols, false)
#undef CASE
#undef MICRO

static void micro(int64_t m, int64_t n, int64_t kc, const float *a, bool a_rows, int64_t as,
                  const float *b, int64_t b_ks, float *C, int64_t ldc, float alpha, float beta)
{
    (a_rows ? micro_rows : micro_cols)(m, n, kc, a, as, b, b_ks, C, ldc, alpha, beta);
}

const ag_gemm_kernel ag_gemm_kernel_avx2 = {
    .name = "avx2", .mr = MR, .nr = NR, .nc = 512,
    .micro = micro, .pack_a = pack_a, .pack_b = pack_b,
};

#endif
