/* test_vmath.c - the vectorized elementwise math (autograd/private/vmath.h)
 * against double-precision libm and against the naive libm expressions it
 * replaces.
 *
 * - accuracy: every function's maximum error in ulp of the exact result
 *   (double libm), over every 4099th float bit pattern of both signs (so
 *   tiny, subnormal, huge and overflowing arguments) plus a dense grid over
 *   its working range; the bounds are the ones vmath.h states. The
 *   derivatives' errors are relative, absolute near their zeros.
 * - special values: the libm / PyTorch results at +-0, subnormals, the
 *   overflow and underflow edges, +-inf and NaN, one by one.
 * - the naive references: fast and naive agree within both their errors
 *   over each function's working range.
 * - sin and cos over arrays: the elements beyond the fast range come out
 *   exactly as sinf / cosf. */
#include "test_util.h"

#include <float.h>
#include <stdlib.h>

#include "vmath.h"

/* ---------------------------------------------------------------- double references */

static double d_sigmoid(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

static double d_silu(double x) { return x * d_sigmoid(x); }

static double d_silu_grad(double x) { return d_sigmoid(x) * (1 + x * d_sigmoid(-x)); }

static double d_softplus(double x)
{
    return x > 20 ? x : x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static double d_softplus_grad(double x) { return x > 20 ? 1 : d_sigmoid(x); }

/* the tanh form as x sigmoid(2u): 1 + tanh(u) would cancel on the left */
static double d_gelu(double x)
{
    double v = 2 * 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return x * d_sigmoid(v);
}

static double d_gelu_grad(double x)
{
    double v = 2 * 0.7978845608028654 * (x + 0.044715 * x * x * x);
    double s = d_sigmoid(v), sc = d_sigmoid(-v);
    return s + 2 * x * s * sc * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
}

static double d_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static double d_gelu_erf(double x) { return x * d_cdf(x); }

static double d_gelu_erf_grad(double x)
{
    return d_cdf(x) + x * exp(-0.5 * x * x) * 0.3989422804014327;
}

/* ---------------------------------------------------------------- the table */

typedef struct {
    const char *name;
    float (*fast)(float);
    float (*naive)(float); /* the libm expression */
    double (*exact)(double);
    double max_ulp;           /* vmath.h's bound (values) or relative bound (derivatives) */
    float lo, hi;             /* working range: the dense grid, and where fast ~ naive */
    double naive_ulp;         /* fast and naive agree within this on [lo, hi] */
    bool derivative;
    bool tail;                /* silu: below -87.3, 1.5 |x| ulp of 2^-149 instead */
} fn_case;

/* sin and cos with their libm pass beyond the fast range, as the ops run them */
static float sin_any(float x) { return ag_vtrig_fast_ok(x) ? ag_vsinf(x) : sinf(x); }
static float cos_any(float x) { return ag_vtrig_fast_ok(x) ? ag_vcosf(x) : cosf(x); }

#define D(f) static double dd_##f(double x) { return f(x); }
D(exp)
D(log)
D(tanh)
D(sin)
D(cos)
#undef D

static const fn_case cases[] = {
    {"exp", ag_vexpf, ag_ref_expf, dd_exp, 1.5, -103.0f, 88.7f, 2, false, false},
    {"log", ag_vlogf, ag_ref_logf, dd_log, 1.5, 1e-30f, 1e30f, 2, false, false},
    {"tanh", ag_vtanhf, ag_ref_tanhf, dd_tanh, 2.0, -10.0f, 10.0f, 3, false, false},
    {"sigmoid", ag_vsigmoidf, ag_ref_sigmoidf, d_sigmoid, 3.0, -80.0f, 80.0f, 4, false, false},
    /* (silu's bound holds where sigmoid is normal: test_silu_subnormal_tail below) */
    {"silu", ag_vsiluf, ag_ref_siluf, d_silu, 3.5, -80.0f, 80.0f, 5, false, true},
    {"softplus", ag_vsoftplusf, ag_ref_softplusf, d_softplus, 2.0, -80.0f, 80.0f, 4, false, false},
    /* the libm gelu forms cancel on the left (1 + tanh, 1 + erf): compared right of -1 */
    {"gelu", ag_vgeluf, ag_ref_geluf, d_gelu, 3.5, -1.0f, 10.0f, 6, false, false},
    {"gelu_erf", ag_vgelu_erff, ag_ref_gelu_erff, d_gelu_erf, 6.5, -1.0f, 10.0f, 9, false, false},
    {"sin", sin_any, ag_ref_sinf, dd_sin, 3.0, -12867.0f, 12867.0f, 4, false, false},
    {"cos", cos_any, ag_ref_cosf, dd_cos, 3.0, -12867.0f, 12867.0f, 4, false, false},
    {"silu_grad", ag_vsilu_gradf, ag_ref_silu_gradf, d_silu_grad, 6e-7, -80.0f, 80.0f, 2e-6, true, false},
    {"softplus_grad", ag_vsoftplus_gradf, ag_ref_softplus_gradf, d_softplus_grad, 6e-7, -80.0f,
     80.0f, 1e-6, true, false},
    {"gelu_grad", ag_vgelu_gradf, ag_ref_gelu_gradf, d_gelu_grad, 6e-7, -1.0f, 10.0f, 2e-6, true, false},
    {"gelu_erf_grad", ag_vgelu_erf_gradf, ag_ref_gelu_erf_gradf, d_gelu_erf_grad, 6e-7, -0.5f,
     10.0f, 2e-6, true, false},
};

/* ---------------------------------------------------------------- error measures */

/* ulp of the float nearest to r; subnormal and zero results count 2^-149 */
static double ulp_of(double r)
{
    if (r == 0 || fabs(r) < 0x1p-126)
        return 0x1p-149;
    int e;
    frexp(fabs(r) > 0x1p128 ? 0x1p128 : r, &e);
    return ldexp(1.0, e - 24);
}

/* got's error in ulp of the exact r; 0 for agreeing NaNs and infinities
 * (a result past FLT_MAX must be inf), HUGE_VAL for a disagreement */
static double err_ulp(float got, double r)
{
    if (isnan(r) || isnan(got))
        return isnan(r) && isnan(got) ? 0 : HUGE_VAL;
    if (isinf(got) && fabs(r) >= 0x1p128 * (1 - 0x1p-25))
        return (got > 0) == (r > 0) ? 0 : HUGE_VAL;
    double g = isinf(got) ? copysign(0x1p128, got) : got;
    return fabs(g - r) / ulp_of(r);
}

/* a derivative's error: relative, but for |x| < 3, where each crosses zero
 * (silu' at -1.28, gelu' at -0.75) and the error there is absolute, |r|
 * counts at least 0.25; and results below 2^-100 count that much */
static double err_rel(float x, float got, double r)
{
    if (isnan(r) || isnan(got))
        return isnan(r) && isnan(got) ? 0 : HUGE_VAL;
    double floor = fabsf(x) < 3.0f ? 0.25 : 0x1p-100;
    return fabs((double)got - r) / (fabs(r) > floor ? fabs(r) : floor);
}

static double err_of(const fn_case *f, float x, float got, double r)
{
    if (f->tail && x < -87.3f && isfinite(r)) /* scaled: the tail's bound meets max_ulp */
        return fabs((double)got - r) / 0x1p-149 / (1.5 * fabsf(x)) * f->max_ulp;
    return f->derivative ? err_rel(x, got, r) : err_ulp(got, r);
}

typedef struct {
    double worst;
    float at;
} worst_t;

static void note(worst_t *w, double e, float x)
{
    if (e > w->worst || isnan(e)) {
        w->worst = e;
        w->at = x;
    }
}

/* ---------------------------------------------------------------- accuracy */

static void check_accuracy(const fn_case *f)
{
    worst_t w = {0, 0};
    for (uint64_t b = 0; b <= 0x7f800000u; b += 4099) /* every 4099th finite float, and more */
        for (int s = 0; s < 2; s++) {
            float x = ag_u2f((uint32_t)b | (s ? 0x80000000u : 0u));
            note(&w, err_of(f, x, f->fast(x), f->exact(x)), x);
        }
    for (int i = 0; i <= 400000; i++) { /* dense over the working range */
        float x = f->lo + (f->hi - f->lo) * (float)i / 400000.0f;
        note(&w, err_of(f, x, f->fast(x), f->exact(x)), x);
    }
    print_message("%-14s max error %.3g %s at %.9g\n", f->name, w.worst,
                  f->derivative ? "(relative)" : "ulp", (double)w.at);
    if (!(w.worst <= f->max_ulp))
        fail_msg("%s: error %.4g at x = %.9g (%a): %.9g, want %.9g; bound %.3g", f->name, w.worst,
                 (double)w.at, (double)w.at, (double)f->fast(w.at), f->exact(w.at), f->max_ulp);
}

static void test_accuracy_values(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        if (!cases[k].derivative)
            check_accuracy(&cases[k]);
}

static void test_accuracy_derivatives(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        if (cases[k].derivative)
            check_accuracy(&cases[k]);
}

/* silu's left tail, where sigmoid is subnormal: what vmath.h says, 1.5 |x|
 * ulp of 2^-149 at most */
static void test_silu_subnormal_tail(void **state)
{
    (void)state;
    for (float x = -87.3f; x > -110.0f; x -= 0.001f) {
        double e = fabs((double)ag_vsiluf(x) - d_silu(x)) / 0x1p-149;
        if (!(e <= 1.5 * fabs(x)))
            fail_msg("silu(%.9g): error %.3g units of 2^-149", (double)x, e);
    }
}

/* ---------------------------------------------------------------- special values */

static const float specials[] = {
    0.0f, -0.0f, 1e-45f, -1e-45f, 1e-40f, -1e-40f, FLT_MIN, -FLT_MIN, 1e-30f, -1e-30f,
    0.5f, -0.5f, 1.0f, -1.0f, 20.0f, -20.0f, 20.5f, -20.5f, 87.0f, -87.0f, 88.72f, 88.73f,
    -88.73f, 89.0f, -89.0f, 100.0f, -100.0f, 103.9f, -103.9f, 104.0f, -104.0f, 110.0f, -110.0f,
    1e4f, -1e4f, 12867.0f, -12867.0f, 12868.0f, -12868.0f, 1e5f, 1e30f, -1e30f, FLT_MAX,
    -FLT_MAX, INFINITY, -INFINITY, NAN, -NAN,
};

/* Every function at every special value: within its bound of the exact
 * result, NaN exactly where that is NaN, the same infinity, and the sign of
 * a zero result as libm's expression gives it. */
static void test_special_values(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const fn_case *f = &cases[k];
        for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) {
            float x = specials[i], got = f->fast(x), naive = f->naive(x);
            double r = f->exact(x), e = err_of(f, x, got, r);
            if (!(e <= f->max_ulp))
                fail_msg("%s(%a) = %a, want %.9g (error %.3g)", f->name, (double)x, (double)got,
                         r, e);
            if (got == 0 && naive == 0 && r == 0 && signbit(got) != signbit(naive))
                fail_msg("%s(%a) = %a, libm's %a", f->name, (double)x, (double)got,
                         (double)naive);
        }
    }
}

/* the cases the brief names, spelled out */
static void test_special_values_named(void **state)
{
    (void)state;
    assert_true(ag_vexpf(-INFINITY) == 0.0f);
    assert_true(ag_vexpf(INFINITY) == INFINITY);
    assert_true(ag_vexpf(89.0f) == INFINITY);
    assert_true(ag_vexpf(-104.0f) == 0.0f);
    assert_true(ag_vexpf(-103.5f) > 0.0f); /* a subnormal */
    assert_true(ag_vexpf(0.0f) == 1.0f && ag_vexpf(-0.0f) == 1.0f);
    assert_true(isnan(ag_vexpf(NAN)));
    assert_true(ag_vlogf(0.0f) == -INFINITY && ag_vlogf(-0.0f) == -INFINITY);
    assert_true(isnan(ag_vlogf(-1.0f)) && isnan(ag_vlogf(-INFINITY)) && isnan(ag_vlogf(NAN)));
    assert_true(ag_vlogf(INFINITY) == INFINITY);
    assert_true(ag_vlogf(1.0f) == 0.0f);
    assert_true(fabsf(ag_vlogf(1e-45f) - logf(1e-45f)) <= 1e-5f * fabsf(logf(1e-45f)));
    assert_true(ag_vtanhf(INFINITY) == 1.0f && ag_vtanhf(-INFINITY) == -1.0f);
    assert_true(ag_vtanhf(-0.0f) == 0.0f && signbit(ag_vtanhf(-0.0f)));
    assert_true(isnan(ag_vtanhf(NAN)));
    assert_true(ag_vsigmoidf(-INFINITY) == 0.0f && ag_vsigmoidf(INFINITY) == 1.0f);
    assert_true(isnan(ag_vsigmoidf(NAN)));
    assert_true(ag_vsoftplusf(-INFINITY) == 0.0f && ag_vsoftplusf(INFINITY) == INFINITY);
    assert_true(ag_vsoftplusf(20.5f) == 20.5f);
    assert_true(isnan(ag_vsiluf(-INFINITY)) && ag_vsiluf(INFINITY) == INFINITY); /* PyTorch's */
    assert_true(isnan(ag_vgeluf(-INFINITY)) && ag_vgeluf(INFINITY) == INFINITY);
    assert_true(isnan(ag_vgelu_erff(-INFINITY)) && ag_vgelu_erff(INFINITY) == INFINITY);
    assert_true(ag_vgelu_erff(-30.0f) == 0.0f && ag_vgelu_erff(30.0f) == 30.0f);
    float big[] = {INFINITY, -INFINITY, NAN};
    for (int i = 0; i < 3; i++) {
        assert_false(ag_vtrig_fast_ok(big[i]));
        assert_true(isnan(sin_any(big[i])) && isnan(cos_any(big[i])));
    }
    assert_true(sin_any(-0.0f) == 0.0f && signbit(sin_any(-0.0f)));
    assert_true(cos_any(0.0f) == 1.0f);
}

/* ---------------------------------------------------------------- against the naive forms */

/* fast and naive agree within naive_ulp (their two errors) over the working range */
static void test_against_naive(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const fn_case *f = &cases[k];
        worst_t w = {0, 0};
        for (int i = 0; i <= 200000; i++) {
            float x = f->lo + (f->hi - f->lo) * (float)i / 200000.0f;
            float got = f->fast(x), naive = f->naive(x);
            double e = f->derivative ? err_rel(x, got, naive) : err_ulp(got, naive);
            note(&w, e, x);
        }
        print_message("%-14s vs libm's expression: %.3g %s at %.9g\n", f->name, w.worst,
                      f->derivative ? "(relative)" : "ulp", (double)w.at);
        if (!(w.worst <= f->naive_ulp))
            fail_msg("%s(%.9g) = %.9g, libm's expression %.9g", f->name, (double)w.at,
                     (double)f->fast(w.at), (double)f->naive(w.at));
    }
}

/* ---------------------------------------------------------------- sin, cos arrays */

/* A mix inside and beyond the fast range (and inf, NaN): the array
 * functions give sinf's / cosf's exact bits beyond, the fast values inside. */
static void test_trig_arrays(void **state)
{
    (void)state;
    enum { N = 1000 };
    float x[N], s[N], c[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)(i - N / 2) * (i % 7 == 0 ? 97.13f : 0.0731f);
    x[3] = INFINITY;
    x[10] = NAN;
    x[11] = -3e38f;
    assert_false(ag_vtrig_fast_all(x, N));
    ag_vsinf_n(s, x, N);
    ag_vcosf_n(c, x, N);
    int beyond = 0;
    for (int i = 0; i < N; i++) {
        if (!ag_vtrig_fast_ok(x[i])) {
            beyond++;
            float ws = sinf(x[i]), wc = cosf(x[i]);
            assert_true(s[i] == ws || (isnan(s[i]) && isnan(ws)));
            assert_true(c[i] == wc || (isnan(c[i]) && isnan(wc)));
        } else {
            assert_true(s[i] == ag_vsinf(x[i]) && c[i] == ag_vcosf(x[i]));
            assert_true(err_ulp(s[i], sin(x[i])) <= 3 && err_ulp(c[i], cos(x[i])) <= 3);
        }
    }
    assert_true(beyond > 50);
    assert_true(ag_vtrig_fast_all(x + 15, 6)); /* x[15..20]: inside */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy_values),
        cmocka_unit_test(test_accuracy_derivatives),
        cmocka_unit_test(test_silu_subnormal_tail),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_special_values_named),
        cmocka_unit_test(test_against_naive),
        cmocka_unit_test(test_trig_arrays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
