/* gemm_avx512.c - the AVX-512 micro-kernel: a 14 x 32 tile of C held in 28
 * zmm accumulators. Each step of k loads two vectors of the packed B panel
 * (32 columns) and broadcasts 14 values of the A micro-panel: 28 FMAs for 16
 * loads, so the FMA units, not the loads, set the pace, and 28 independent
 * chains cover the FMA latency on CPUs with two 512-bit FMA ports.
 *
 * Compiled with -mavx512f (see meson.build) into a build for any x86-64;
 * gemm_blocked.c runs it only after CPUID reports AVX-512F. */
#include "gemm_kernel.h"

#ifdef AG_GEMM_X86
#include <immintrin.h>

#define MR 14
#define NR 32
#define TB 16

/* 16 x 16 transpose in registers: r[s] holds row s; afterwards r[t] holds column t */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) { /* pairs of rows interleaved within 128-bit lanes */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4g + c], lane l: column 4l + c of rows 4g .. 4g+3 */
    for (int g = 0; g < 16; g += 4) {
        __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
        __m512d c = _mm512_castps_pd(t[g + 2]), d = _mm512_castps_pd(t[g + 3]);
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* column 4l + c gathers lane l of u[c], u[4 + c], u[8 + c], u[12 + c] */
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

static void transpose_block(float *dst, const float *src, int64_t ldb, int64_t nj, int64_t nk)
{
    __m512 r[16];
    __mmask16 km = (__mmask16)(nk >= 16 ? 0xFFFF : (1u << nk) - 1);
    for (int s = 0; s < 16; s++)
        r[s] = s < nj ? _mm512_maskz_loadu_ps(km, src + s * ldb) : _mm512_setzero_ps();
    transpose16(r);
    for (int t = 0; t < nk; t++)
        _mm512_storeu_ps(dst + t * NR, r[t]);
}

static inline void copy_row(float *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
    if (i < n) {
        __mmask16 km = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, km, _mm512_maskz_loadu_ps(km, src + i));
    }
}

#include "gemm_pack.h"

/* X(r) for each row a tile may have: a tile of m rows (a constant after
 * inlining) keeps those with r < m. Written out rather than a loop with an
 * unroll pragma, which clang left rolled, its accumulators on the stack. */
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

/* element (r, k) of a rows-layout panel, r a constant (see tile) */
#define ROW(r)                                                                    \
    ((r) < 3 ? p0 : (r) < 6 ? p1 : (r) < 9 ? p2 : (r) < 12 ? p3 : p4)             \
        [(r) % 3 == 0 ? o0 : (r) % 3 == 1 ? o1 : o2]

/* C[m, 32 masked by (m0, m1)] = alpha * A-panel @ B-panel + beta * C, m <= 14
 * a compile-time constant after inlining, as is the A layout (rows). */
static inline __attribute__((always_inline)) void tile(const int m, const bool rows, int64_t kc,
                                                        const float *a, int64_t as,
                                                        const float *b, int64_t b_ks, float *C,
                                                        int64_t ldc, float alpha, float beta,
                                                        __mmask16 m0, __mmask16 m1)
{
    __m512 c0[MR], c1[MR];
    /* C's tile is read (or written) once at the end: start fetching it now */
#define INIT(r)                                                                   \
    if (r < m) {                                                                  \
        c0[r] = _mm512_setzero_ps();                                              \
        c1[r] = _mm512_setzero_ps();                                              \
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0);                   \
        _mm_prefetch((const char *)(C + r * ldc + NR - 1), _MM_HINT_T0);          \
    }
    FOR_ROWS(INIT)
#undef INIT
    /* rows layout: row r at base r / 3 (three rows apart) plus offset r % 3
     * (0, as or 2 as, plus k): the broadcasts address base + index with five
     * bases and three indexes in registers (one pointer per row spills) */
    const float *p0 = a, *p1 = a + 3 * as, *p2 = a + 6 * as, *p3 = a + 9 * as, *p4 = a + 12 * as;
    int64_t o0 = 0, o1 = as, o2 = 2 * as;
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#define STEP(r)                                                                   \
    if (r < m) {                                                                  \
        __m512 av = _mm512_set1_ps(rows ? ROW(r) : a[r]);                         \
        c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);                                   \
        c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);                                   \
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
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (beta == 0.0f) {
#define PUT(r)                                                                    \
    if (r < m) {                                                                  \
        _mm512_mask_storeu_ps(C + r * ldc, m0, _mm512_mul_ps(va, c0[r]));         \
        _mm512_mask_storeu_ps(C + r * ldc + 16, m1, _mm512_mul_ps(va, c1[r]));    \
    }
        FOR_ROWS(PUT)
#undef PUT
    } else {
#define ADD(r)                                                                    \
    if (r < m) {                                                                  \
        __m512 x0 = _mm512_maskz_loadu_ps(m0, C + r * ldc);                       \
        __m512 x1 = _mm512_maskz_loadu_ps(m1, C + r * ldc + 16);                  \
        if (beta != 1.0f) {                                                       \
            x0 = _mm512_mul_ps(vb, x0);                                           \
            x1 = _mm512_mul_ps(vb, x1);                                           \
        }                                                                         \
        _mm512_mask_storeu_ps(C + r * ldc, m0, _mm512_fmadd_ps(va, c0[r], x0));   \
        _mm512_mask_storeu_ps(C + r * ldc + 16, m1, _mm512_fmadd_ps(va, c1[r], x1)); \
    }
        FOR_ROWS(ADD)
#undef ADD
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
        __mmask16 m0 = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);                 \
        __mmask16 m1 = (__mmask16)(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0); \
        switch (m) {                                                                    \
            CASE(14, ROWS) CASE(13, ROWS) CASE(12, ROWS) CASE(11, ROWS) CASE(10, ROWS)  \
            CASE(9, ROWS) CASE(8, ROWS) CASE(7, ROWS) CASE(6, ROWS) CASE(5, ROWS)       \
            CASE(4, ROWS) CASE(3, ROWS) CASE(2, ROWS) CASE(1, ROWS)                     \
        default:                                                                        \
            break;                                                                      \
        }                                                                               \
    }
#define CASE(M, ROWS)                                                                   \
    case M:                                                                             \
        tile(M, ROWS, kc, a, as, b, b_ks, C, ldc, alpha, beta, m0, m1);                   \
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

const ag_gemm_kernel ag_gemm_kernel_avx512 = {
    .name = "avx512", .mr = MR, .nr = NR, .nc = 512,
    .micro = micro, .pack_a = pack_a, .pack_b = pack_b,
};

#endif
