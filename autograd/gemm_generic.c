/* gemm_generic.c - the portable micro-kernel: a 6 x 16 tile of C in the
 * compiler's vector extension, for CPUs without AVX2 (and for aarch64, where
 * the vectors are NEON's). Compiled with -ffp-contract=fast (meson.build):
 * -std=c11 alone keeps a * b + c as a multiply and an add, and here the fused
 * form is both faster and what the tests hold every kernel to. */
#include "gemm_kernel.h"

#include <string.h>

#define MR 6
#define NR 16
#define TB 4

typedef float v16 __attribute__((vector_size(NR * sizeof(float))));

static void transpose_block(float *dst, const float *src, int64_t ldb, int64_t nj, int64_t nk)
{
    for (int64_t t = 0; t < nk; t++)
        for (int64_t s = 0; s < TB; s++)
            dst[t * NR + s] = s < nj ? src[s * ldb + t] : 0.0f;
}

static inline void copy_row(float *dst, const float *src, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof *dst);
}

#include "gemm_pack.h"

static inline __attribute__((always_inline)) void tile(const int m, const bool rows, int64_t kc,
                                                        const float *a, int64_t as,
                                                        const float *b, int64_t b_ks, float *C,
                                                        int64_t ldc,
                                                        int64_t n, float alpha, float beta)
{
    v16 acc[MR];
    for (int r = 0; r < m; r++)
        acc[r] = (v16){0};
    const int64_t rs = rows ? as : 1, ks = rows ? 1 : as;
    for (int64_t k = 0; k < kc; k++) {
        v16 bv;
        memcpy(&bv, b, sizeof bv);
        for (int r = 0; r < m; r++)
            acc[r] += a[r * rs] * bv;
        a += ks;
        b += b_ks;
    }
    for (int r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            float *c = C + r * ldc + j;
            *c = beta == 0.0f ? alpha * acc[r][j] : alpha * acc[r][j] + beta * *c;
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

const ag_gemm_kernel ag_gemm_kernel_generic = {
    .name = "generic", .mr = MR, .nr = NR, .nc = 512,
    .micro = micro, .pack_a = pack_a, .pack_b = pack_b,
};
