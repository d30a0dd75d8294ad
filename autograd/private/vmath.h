/* vmath.h - float exp, log, tanh, sigmoid, silu, softplus, gelu (tanh and
 * erf forms), sin and cos, and the derivatives the backwards use, as
 * branch-free static inline functions: a loop calling one vectorizes at -O3
 * (the release build) with whatever vector unit -march gives, fusing the
 * polynomials' multiply-adds where it has FMA. No libm call, and no float ->
 * int conversion of an unclamped value, so NaN and inf are safe anywhere.
 *
 * Maximum errors against double-precision libm, in ulp of the exact result
 * (a subnormal result's ulp is 2^-149): the bounds tests/test_vmath.c holds
 * them to (every 4099th float bit pattern of both signs, a dense grid over
 * each working range, the special values), and in parentheses the largest
 * seen over every 61st float, with FMA / without:
 *
 *   exp       1.5 (1.04 / 1.01)     log       1.5 (0.78 / 0.80)
 *   tanh      2   (1.30 / 1.30)     sigmoid   3   (2.33 / 2.33)
 *   softplus  2   (1.62 / 1.62)     silu      3.5 (3.13 / 3.17)
 *   gelu      3.5 (3.04 / 3.04), the tanh form
 *   gelu_erf  6.5 (5.92 / 6.00), the erf form
 *   sin, cos  3   (2.35 / 2.35) for |x| <= AG_VTRIG_FAST (12867); beyond it
 *             the array functions (and the ops) redo the element with libm's
 *   silu where sigmoid is subnormal (x < -87.3, |silu| < 1e-36): 1.5 |x|
 *             ulp of 2^-149
 *   derivatives (silu, softplus, both gelus): 6e-7 relative (5.0e-7 the
 *             largest seen, gelu's); for |x| < 3, where silu' and gelu'
 *             cross zero, 1.5e-7 absolute below 0.25
 *
 * Special values are libm's and PyTorch's: exp(-inf) = 0, exp(inf) = inf,
 * exp overflows to inf above 88.72 and underflows through the subnormals to
 * 0; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf; tanh(+-inf) = +-1,
 * sigmoid(-inf) = 0, sigmoid(inf) = 1; sin(+-inf) = cos(+-inf) = NaN; +-0
 * keeps its sign where libm keeps it; NaN in, NaN out; silu(-inf) and
 * gelu(-inf) are NaN (-inf * 0), as PyTorch's. Where the libm expression
 * underflows early (1 / (1 + e^-x) is 0 below -88.7), these keep the
 * subnormals.
 *
 * Next to each function is its naive reference, ag_ref_<name>: the libm
 * expression the op computed before (PyTorch's formula for the new ones),
 * which the tests and tools/bench_vmath.c run it against.
 *
 * Polynomials: log, tanh, sin and cos Cephes' single-precision minimax ones
 * (S. L. Moshier), erf Cephes' erff's; e^r and erfc Chebyshev fits made
 * with mpmath (relative errors 1e-8 and 4e-9). tools/bench_vmath.c times
 * each function against its naive reference. */
#ifndef AG_VMATH_H
#define AG_VMATH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Every function here is forced inline: a loop that calls one that is not
 * inlined stays scalar (GCC's limits stop inlining the larger ones once they
 * have two callers in a file). */
#define AG_VINLINE static inline __attribute__((always_inline))

AG_VINLINE uint32_t ag_f2u(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

AG_VINLINE float ag_u2f(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* c ? a : b on the bits. GCC turns some float ?: into branches and moves
 * the arithmetic of one side into them; under the default -ftrapping-math it
 * may then not if-convert that arithmetic back, and the loop stays scalar. */
AG_VINLINE float ag_vsel(bool c, float a, float b)
{
    uint32_t m = 0u - (uint32_t)c;
    return ag_u2f((ag_f2u(a) & m) | (ag_f2u(b) & ~m));
}

/* a * b + c, fused (one rounding, one instruction) where the target has FMA
 * (-march=native on most machines); otherwise, as in the portable build,
 * two roundings. The error bounds above hold either way. */
AG_VINLINE float ag_vfma(float a, float b, float c)
{
#ifdef __FP_FAST_FMAF
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

/* p * 2^n for n in [-252, 254] (n as the bits of an int32), in two steps so
 * that each factor is a normal float: results overflow to inf and round into
 * the subnormals correctly (one rounding). Unsigned arithmetic: a NaN
 * argument's garbage n must not overflow (p is NaN then anyway). */
AG_VINLINE float ag_vscalef(float p, uint32_t n)
{
    uint32_t n1 = (uint32_t)((int32_t)n >> 1), n2 = n - n1; /* >> is arithmetic in GCC and clang */
    return p * ag_u2f((n1 + 127u) << 23) * ag_u2f((n2 + 127u) << 23);
}

/* ---------------------------------------------------------------- exp */

/* e^(hi + lo) 2^k, the argument clamped to [lowest, 89] by the caller, lo
 * what hi lacks of a more precise argument (|lo| <= 2) or 0: x = n ln2 + r,
 * n = round(x / ln2) by adding 1.5 * 2^23 (whose low bits then hold n), ln2
 * in two parts, the first short enough that hi - n * 0.693359375 is exact;
 * e^r = 1 + r + r^2 P(r), P a degree-4 Chebyshev fit (relative error 1e-8
 * for |r| <= ln2/2) made with mpmath. NaN stays NaN. */
AG_VINLINE float ag_vexp_kernel(float xc, float hi, float lo, uint32_t k)
{
    float v = ag_vfma(xc, 1.44269504088896341f, 12582912.0f);
    float n = v - 12582912.0f;
    float r = ag_vfma(n, -0.693359375f, hi) + lo;
    r = ag_vfma(n, 2.12194440e-4f, r);
    float p = 1.3926325618e-3f;
    p = ag_vfma(p, r, 8.3632927530e-3f);
    p = ag_vfma(p, r, 4.1666553763e-2f);
    p = ag_vfma(p, r, 1.6666576306e-1f);
    p = ag_vfma(p, r, 0.5f);
    float e = ag_vfma(p, r * r, r) + 1.0f;
    return ag_vscalef(e, ag_f2u(v) - 0x4b400000u + k);
}

/* e^x. x is clamped to [-104, 89]: e^-104 rounds to 0 and e^89 overflows,
 * as they should; NaN passes the clamps. */
AG_VINLINE float ag_vexpf(float x)
{
    float xc = ag_vsel(x < -104.0f, -104.0f, x);
    xc = ag_vsel(xc > 89.0f, 89.0f, xc);
    return ag_vexp_kernel(xc, xc, 0.0f, 0);
}

/* e^(hi + lo) 2^k for hi + lo <= 89, |lo| <= 2 and k in [0, 64], lo being
 * what hi lacks of a more precise argument. The factor 2^k lets a caller
 * keep full precision where e^(hi + lo) itself is subnormal. Where e^(hi +
 * lo) 2^k < 2^-150, 0. */
AG_VINLINE float ag_vexpf_hlk(float hi, float lo, uint32_t k)
{
    const float lowest = -104.0f - 0.693147181f * (float)k;
    float x = hi + lo;
    bool under = x < lowest;
    float xc = ag_vsel(under, lowest, x);
    xc = ag_vsel(xc > 89.0f, 89.0f, xc);
    return ag_vsel(under, 0.0f, ag_vexp_kernel(xc, hi, lo, k));
}

AG_VINLINE float ag_ref_expf(float x) { return expf(x); }

/* ---------------------------------------------------------------- log */

/* k ln2 + log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]: Cephes logf's
 * polynomial, ln2 in two parts so that k * 0.693359375 is exact */
AG_VINLINE float ag_vlog_combine(float k, float f)
{
    float p = 7.0376836292e-2f;
    p = ag_vfma(p, f, -1.1514610310e-1f);
    p = ag_vfma(p, f, 1.1676998740e-1f);
    p = ag_vfma(p, f, -1.2420140846e-1f);
    p = ag_vfma(p, f, 1.4249322787e-1f);
    p = ag_vfma(p, f, -1.6668057665e-1f);
    p = ag_vfma(p, f, 2.0000714765e-1f);
    p = ag_vfma(p, f, -2.4999993993e-1f);
    p = ag_vfma(p, f, 3.3333331174e-1f);
    float z = f * f;
    float y = p * f * z;
    y = ag_vfma(k, -2.12194440e-4f, y);
    y = ag_vfma(-0.5f, z, y);
    return ag_vfma(k, 0.693359375f, f + y);
}

/* log(x): x = 2^e m with m in [sqrt(1/2), sqrt(2)), read off the bits of x
 * less those of sqrt(1/2) (as musl's logf); a subnormal x = j 2^-149 is read
 * through the float of its integer j, which is normal */
AG_VINLINE float ag_vlogf(float x)
{
    uint32_t u = ag_f2u(x);
    bool sub = u < 0x00800000u; /* +0 and the positive subnormals */
    float j = (float)(int32_t)(u & 0x007fffffu);
    uint32_t w = ag_f2u(ag_vsel(sub, j, x)) - 0x3f3504f3u;
    int32_t e = ((int32_t)w >> 23) - 149 * (int32_t)sub;
    float m = ag_u2f((w & 0x007fffffu) + 0x3f3504f3u);
    float r = ag_vlog_combine((float)e, m - 1.0f);
    r = ag_vsel(u >= 0x7f800000u, ag_vsel(x == INFINITY, x, NAN), r); /* inf, NaN, x < 0 */
    return ag_vsel(x == 0.0f, -INFINITY, r);
}

AG_VINLINE float ag_ref_logf(float x) { return logf(x); }

/* log(1 + u) for u in [0, 1]: 1 + u = 2^k (1 + f), f exact but for the last
 * bit of (u - 1) / 2 when u < 1/2 */
AG_VINLINE float ag_vlog1p_unitf(float u)
{
    bool hi = u > 0.41421356f;
    float f = ag_vsel(hi, (u - 1.0f) * 0.5f, u);
    return ag_vlog_combine(ag_vsel(hi, 1.0f, 0.0f), f);
}

/* ---------------------------------------------------------------- sigmoid family */

/* 1 / (1 + e^-x) = e^x / (1 + e^x): the form whose exponential is at most 1,
 * so neither tail overflows and the left one keeps its subnormals */
AG_VINLINE float ag_vsigmoidf(float x)
{
    float e = ag_vexpf(-fabsf(x));
    return ag_vsel(x >= 0.0f, 1.0f, e) / (1.0f + e);
}

AG_VINLINE float ag_ref_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* sigmoid(x) and 1 - sigmoid(x) = sigmoid(-x), both to full relative
 * precision down to the subnormals of the left tail, e^x's */
AG_VINLINE void ag_vsigmoid_pairf(float x, float *s, float *sc)
{
    float e = ag_vexpf(-fabsf(x));
    float r = 1.0f / (1.0f + e), er = e * r;
    bool right = x >= 0.0f;
    *s = ag_vsel(right, r, er);
    *sc = ag_vsel(right, er, r);
}

/* The same for v = vh + vl (vl: what vh lacks of a more precise v), the
 * sigmoid times 2^24, so that on the left it stays precise where e^v is
 * subnormal */
AG_VINLINE void ag_vsigmoid_pair24f(float vh, float vl, float *s24, float *sc)
{
    bool right = vh >= 0.0f;
    float e24 = ag_vexpf_hlk(-fabsf(vh), ag_vsel(right, -vl, vl), 24), e = e24 * 0x1p-24f;
    float r = 1.0f / (1.0f + e);
    *s24 = ag_vsel(right, r * 0x1p24f, e24 * r);
    *sc = ag_vsel(right, e * r, r);
}

/* x sigmoid(v), v = vh + vl: on the left x e^v / (1 + e^v), with e^v
 * scaled by 2^24 so that x times a subnormal e^v rounds once, at the end */
AG_VINLINE float ag_vmul_sigmoidf(float x, float vh, float vl)
{
    bool right = vh >= 0.0f;
    float e24 = ag_vexpf_hlk(-fabsf(vh), ag_vsel(right, -vl, vl), 24), e = e24 * 0x1p-24f;
    float num = ag_vsel(right, 1.0f, e24), unscale = ag_vsel(right, 1.0f, 0x1p-24f);
    return x * num / (1.0f + e) * unscale;
}

/* tanh(x), odd: for a = |x|, a polynomial below 0.625 (Cephes tanhf), 1 - 2 /
 * (e^2a + 1) above, then x's sign (so tanh(-0) = -0) */
AG_VINLINE float ag_vtanhf(float x)
{
    float a = fabsf(x), z = a * a;
    float p = -5.70498872745e-3f;
    p = ag_vfma(p, z, 2.06390887954e-2f);
    p = ag_vfma(p, z, -5.37397155531e-2f);
    p = ag_vfma(p, z, 1.33314422036e-1f);
    p = ag_vfma(p, z, -3.33332819422e-1f);
    float small = ag_vfma(p * z, a, a);
    float big = 1.0f - 2.0f / (ag_vexpf(a + a) + 1.0f);
    float t = ag_vsel(a < 0.625f, small, big);
    return ag_u2f(ag_f2u(t) | (ag_f2u(x) & 0x80000000u));
}

AG_VINLINE float ag_ref_tanhf(float x) { return tanhf(x); }

/* silu(x) = x sigmoid(x). Where sigmoid is subnormal (x < -87.3) silu is
 * below 1e-36 and inherits sigmoid's rounding to 2^-149, times |x|. */
AG_VINLINE float ag_vsiluf(float x) { return x * ag_vsigmoidf(x); }
AG_VINLINE float ag_ref_siluf(float x) { return x / (1.0f + expf(-x)); }

/* d silu / dx = s (1 + x (1 - s)), s = sigmoid(x) */
AG_VINLINE float ag_vsilu_gradf(float x)
{
    float s, sc;
    ag_vsigmoid_pairf(x, &s, &sc);
    return s * (1.0f + x * sc);
}

AG_VINLINE float ag_ref_silu_gradf(float x)
{
    float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f + x * (1.0f - s));
}

/* softplus(x) = log(1 + e^x) with PyTorch's beta 1 and threshold 20 (x
 * above 20); below, max(x, 0) + log(1 + e^-|x|), the same function without
 * the overflow or the cancellation */
AG_VINLINE float ag_vsoftplusf(float x)
{
    float l = ag_vlog1p_unitf(ag_vexpf(-fabsf(x)));
    float r = ag_vsel(x > 0.0f, x, 0.0f) + l;
    return ag_vsel((x > 20.0f) | (x != x), x, r);
}

AG_VINLINE float ag_ref_softplusf(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* d softplus / dx = sigmoid(x), 1 above the threshold */
AG_VINLINE float ag_vsoftplus_gradf(float x) { return ag_vsel(x > 20.0f, 1.0f, ag_vsigmoidf(x)); }

AG_VINLINE float ag_ref_softplus_gradf(float x)
{
    float z = expf(x);
    return x > 20.0f ? 1.0f : z / (z + 1.0f);
}

/* ---------------------------------------------------------------- gelu, tanh form */

#define AG_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define AG_GELU_C 0.044715f

/* The argument of gelu's tanh form, |x| capped at 1e4 (where sigmoid(2u)
 * is 0 or 1 already; NaN becomes 1e4, the caller's x keeps it) */
AG_VINLINE float ag_vgelu_cap(float x)
{
    return ag_vsel(fabsf(x) < 1e4f, x, ag_u2f(0x461c4000u | (ag_f2u(x) & 0x80000000u)));
}

/* v = 2u = 2 sqrt(2/pi) (x + 0.044715 x^3) as vh + vl, for x capped:
 * worked in double, because e^-|v| magnifies v's rounding |v| times */
AG_VINLINE void ag_vgelu_arg(float xc, float *vh, float *vl)
{
    double xd = xc;
    double v = 2.0 * 0.7978845608028654 * xd * (1.0 + 0.044715 * (xd * xd));
    *vh = (float)v;
    *vl = (float)(v - (double)*vh);
}

/* 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation on the left */
AG_VINLINE float ag_vgeluf(float x)
{
    float vh, vl;
    ag_vgelu_arg(ag_vgelu_cap(x), &vh, &vl);
    return ag_vmul_sigmoidf(x, vh, vl);
}

AG_VINLINE float ag_ref_geluf(float x)
{
    return 0.5f * x * (1.0f + tanhf(AG_GELU_K * (x + AG_GELU_C * x * x * x)));
}

/* 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx = s + 2 x s (1 - s) du/dx,
 * s = sigmoid(2u). s (1 - s) is formed first, so that a far tail gives 0
 * (and +-inf NaN, as PyTorch: inf * 0). */
AG_VINLINE float ag_vgelu_gradf(float x)
{
    float xc = ag_vgelu_cap(x), vh, vl;
    ag_vgelu_arg(xc, &vh, &vl);
    float du = AG_GELU_K * ag_vfma(3.0f * AG_GELU_C, xc * xc, 1.0f);
    float s24, sc;
    ag_vsigmoid_pair24f(vh, vl, &s24, &sc);
    return (s24 + s24 * sc * x * (2.0f * du)) * 0x1p-24f;
}

AG_VINLINE float ag_ref_gelu_gradf(float x)
{
    float u = AG_GELU_K * (x + AG_GELU_C * x * x * x);
    float th = tanhf(u);
    float du = AG_GELU_K * (1.0f + 3.0f * AG_GELU_C * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

/* ---------------------------------------------------------------- gelu, erf form */

/* -x^2/2 as hi + lo with hi exact: x = xh + xl, xh the top 12 bits, so xh^2 is a float */
AG_VINLINE void ag_vneg_half_square(float x, float *hi, float *lo)
{
    float xh = ag_u2f(ag_f2u(x) & 0xfffff000u), xl = x - xh;
    *hi = -0.5f * (xh * xh);
    *lo = -(xh * xl) - 0.5f * (xl * xl);
}

/* Phi(x) and phi(x), the standard normal CDF and density, to full relative
 * precision, both times 2^24 when x < 0, where the scale keeps the
 * subnormals of the left tail (the caller unscales):
 * - near 0: Phi = 1/2 + erf(x / sqrt 2) / 2, erf(z) = z P(z^2) (Cephes erff),
 *   for x in (-1/sqrt 2, sqrt 2), where 1/2 + ... cancels little;
 * - beyond: erfc(|x| / sqrt 2) = e^(-x^2/2) Q(t), t = 1 / (1 + |x| / (2 sqrt 2)),
 *   with -x^2/2 exact; Phi = erfc / 2 on the left, 1 - erfc / 2 on the right.
 * Past |x| = 14.5 Phi is 0 or 1 and phi 0 in float. */
AG_VINLINE void ag_vnormal_scaledf(float x, float *cdf, float *pdf)
{
    float a = fabsf(x);
    bool far = !(a < 14.5f), left = x < 0.0f; /* NaN: far (the caller's x keeps it) */
    a = ag_vsel(far, 14.5f, a);
    float z = a * 0.70710678118654752f, z2 = z * z;
    float p = 7.853861353153693e-5f;
    p = ag_vfma(p, z2, -8.010193625184903e-4f);
    p = ag_vfma(p, z2, 5.188327685732524e-3f);
    p = ag_vfma(p, z2, -2.685381193529856e-2f);
    p = ag_vfma(p, z2, 1.128358514861418e-1f);
    p = ag_vfma(p, z2, -3.761262582423300e-1f);
    p = ag_vfma(p, z2, 1.128379165726710e+0f);
    float half_erf = 0.5f * z * p;
    float t = 1.0f / (1.0f + 0.35355338f * a);
    float q = 4.0287194295451131e-03f;
    q = ag_vfma(q, t, -9.5139243919164340e-02f);
    q = ag_vfma(q, t, 3.9769025351586618e-01f);
    q = ag_vfma(q, t, -6.7061671195547179e-01f);
    q = ag_vfma(q, t, 4.5494533923845387e-01f);
    q = ag_vfma(q, t, -1.3429442920412077e-01f);
    q = ag_vfma(q, t, 2.4486933077569550e-01f);
    q = ag_vfma(q, t, 2.3257113269444643e-01f);
    q = ag_vfma(q, t, 2.8398126665304252e-01f);
    q = ag_vfma(q, t, 2.8195128356690602e-01f);
    q = ag_vfma(q, t, 4.7696007338061891e-06f);
    float hi, lo;
    ag_vneg_half_square(a, &hi, &lo);
    float g = ag_vexpf_hlk(hi, lo, 24u * left);
    float one = ag_vsel(left, 0x1p24f, 1.0f);
    float half_erfc = 0.5f * q * g;
    float tail = ag_vsel(left, half_erfc, one - half_erfc);
    float mid = ag_vsel(left, 0.5f - half_erf, 0.5f + half_erf) * one;
    float c = ag_vsel(a < ag_vsel(left, 0.70710678f, 1.41421356f), mid, tail);
    *cdf = ag_vsel(far, ag_vsel(left, 0.0f, 1.0f), c);
    *pdf = ag_vsel(far, 0.0f, 0.3989422804014327f * g);
}

/* x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)): PyTorch's gelu(approximate='none') */
AG_VINLINE float ag_vgelu_erff(float x)
{
    float cdf, pdf;
    ag_vnormal_scaledf(x, &cdf, &pdf);
    return x * cdf * ag_vsel(x < 0.0f, 0x1p-24f, 1.0f);
}

AG_VINLINE float ag_ref_gelu_erff(float x)
{
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

/* Phi(x) + x phi(x) */
AG_VINLINE float ag_vgelu_erf_gradf(float x)
{
    float cdf, pdf;
    ag_vnormal_scaledf(x, &cdf, &pdf);
    return (cdf + x * pdf) * ag_vsel(x < 0.0f, 0x1p-24f, 1.0f);
}

AG_VINLINE float ag_ref_gelu_erf_gradf(float x)
{
    return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
           x * 0.3989422804014327f * expf(-0.5f * x * x);
}

/* ---------------------------------------------------------------- sin, cos */

/* Where the fast sin and cos hold: j = round(x 2/pi) <= 2^13, so that j
 * times each of the first three parts of pi/2 (8, 11 and 11 bits) is exact
 * (Cody-Waite). 8192 pi/2 = 12867.96. */
#define AG_VTRIG_FAST 12867.0f

/* sin(x) for quarter 0, cos(x) = sin(x + pi/2) for quarter 1, for |x| <=
 * AG_VTRIG_FAST; 0 beyond it and for inf and NaN, where the callers take
 * libm's value instead (a 0 leaves an accumulating backward's sum alone).
 * x = j pi/2 + r, |r| <= pi/4; Cephes' sinf and cosf polynomials for r. */
AG_VINLINE float ag_vsincosf(float x, uint32_t quarter)
{
    float v = ag_vfma(x, 0.636619772367581343f, 12582912.0f);
    float j = v - 12582912.0f; /* round(x 2/pi), whose low bits v's bits hold */
    uint32_t q = ag_f2u(v) + quarter;
    float r = ag_vfma(j, -1.5703125f, x);
    r = ag_vfma(j, -4.83751296997070312e-4f, r);
    r = ag_vfma(j, -7.54953362047672272e-8f, r);
    r = ag_vfma(j, -2.56334415e-12f, r);
    float z = r * r;
    float ps = ag_vfma(-1.9515295891e-4f, z, 8.3321608736e-3f);
    ps = ag_vfma(ps, z, -1.6666654611e-1f);
    float s = ag_vfma(ps * z, r, r);
    float pc = ag_vfma(2.443315711809948e-5f, z, -1.388731625493765e-3f);
    pc = ag_vfma(pc, z, 4.166664568298827e-2f);
    float c = ag_vfma(pc * z, z, ag_vfma(-0.5f, z, 1.0f));
    float y = ag_vsel(q & 1u, c, s);
    y = ag_u2f(ag_f2u(y) ^ ((q & 2u) << 30)); /* quarters 2 and 3: negate */
    return ag_vsel(fabsf(x) <= AG_VTRIG_FAST, y, 0.0f);
}

AG_VINLINE float ag_vsinf(float x)
{
    return ag_vsel(x == 0.0f, x, ag_vsincosf(x, 0)); /* sin(-0) = -0 */
}

AG_VINLINE float ag_vcosf(float x) { return ag_vsincosf(x, 1); }

AG_VINLINE float ag_ref_sinf(float x) { return sinf(x); }
AG_VINLINE float ag_ref_cosf(float x) { return cosf(x); }

/* Whether the fast sin and cos cover x (not inf or NaN). */
AG_VINLINE bool ag_vtrig_fast_ok(float x) { return fabsf(x) <= AG_VTRIG_FAST; }

/* Whether they cover every x[i], i < n: one vectorized pass. */
AG_VINLINE bool ag_vtrig_fast_all(const float *x, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad |= !(fabsf(x[i]) <= AG_VTRIG_FAST);
    return !bad;
}

/* y[i] = sin(x[i]) / cos(x[i]), i < n: the fast form, then libm's for the
 * rare elements beyond AG_VTRIG_FAST. */
AG_VINLINE void ag_vsinf_n(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = ag_vsinf(x[i]);
    if (!ag_vtrig_fast_all(x, n))
        for (int64_t i = 0; i < n; i++)
            if (!ag_vtrig_fast_ok(x[i]))
                y[i] = sinf(x[i]);
}

AG_VINLINE void ag_vcosf_n(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = ag_vcosf(x[i]);
    if (!ag_vtrig_fast_all(x, n))
        for (int64_t i = 0; i < n; i++)
            if (!ag_vtrig_fast_ok(x[i]))
                y[i] = cosf(x[i]);
}

#endif
