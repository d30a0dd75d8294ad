/* test_elem_ops.c - the elementwise ops added beside add..sigmoid: abs, sin,
 * cos, silu, softplus, gelu_erf, clamp, maximum, minimum, where.
 *
 * Values and derivatives against literals computed with Python's math
 * module in double precision; the special values (inf, NaN, +-0, the
 * overflow edges) through the ops, forward and backward; sin and cos beyond
 * the range of their fast path (large tensors too, which take the threaded
 * loops), with an accumulating backward; the tie and NaN rules of maximum
 * and minimum and the broadcasting of where, with their grads; and
 * gradchecks of every op, inputs kept away from kinks. PyTorch's values are
 * in test_elem_parity.c. */
#include "test_util.h"

#include <stdlib.h>

typedef ag_tensor *(*unary_fn)(ag_ctx *, ag_tensor *);

static const float xs[6] = {-2, -0.5f, 0, 0.5f, 1, 3};

/* f(x) == want_y and d sum(f(x)) / dx == want_dx, elementwise */
static void check_unary(unary_fn f, const float *x, const float *want_y, const float *want_dx)
{
    ag_ctx *c = ag_ctx_new();
    ag_tensor *t = leaf(x, AG_SHAPE(2, 3));
    ag_tensor *y = f(c, t);
    assert_shape(y, 2, 3);
    assert_close(y->data, want_y, 6, 1e-6);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(t->grad, want_dx, 6, 1e-6);
    ag_tensor_free(t);
    ag_ctx_free(c);
}

/* ================================================================ values */

static void test_sin_cos_values(void **state)
{
    (void)state;
    const float *s = FLOATS(-0.909297427f, -0.479425539f, 0, 0.479425539f, 0.841470985f,
                            0.141120008f);
    const float *co = FLOATS(-0.416146837f, 0.877582562f, 1, 0.877582562f, 0.540302306f,
                             -0.989992497f);
    float minus_s[6];
    for (int i = 0; i < 6; i++)
        minus_s[i] = -s[i];
    check_unary(ag_sin, xs, s, co);
    check_unary(ag_cos, xs, co, minus_s);
}

/* |x|, and sign(x) with 0 at 0 (PyTorch's) */
static void test_abs_values(void **state)
{
    (void)state;
    check_unary(ag_abs, xs, FLOATS(2, 0.5f, 0, 0.5f, 1, 3), FLOATS(-1, -1, 0, 1, 1, 1));
}

/* x sigmoid(x); sigmoid(x) (1 + x (1 - sigmoid(x))) */
static void test_silu_values(void **state)
{
    (void)state;
    check_unary(ag_silu, xs,
                FLOATS(-0.238405844f, -0.188770334f, 0, 0.311229666f, 0.731058579f, 2.85772238f),
                FLOATS(-0.0907842488f, 0.260038813f, 0.5f, 0.739961187f, 0.927670512f,
                       1.08810411f));
}

/* log(1 + e^x); sigmoid(x). Above 20, x and 1 (PyTorch's threshold). */
static void test_softplus_values(void **state)
{
    (void)state;
    check_unary(ag_softplus, xs,
                FLOATS(0.126928011f, 0.474076984f, 0.693147181f, 0.974076984f, 1.31326169f,
                       3.04858735f),
                FLOATS(0.119202922f, 0.377540669f, 0.5f, 0.622459331f, 0.731058579f,
                       0.952574127f));
    /* 19.9: log1p(e^19.9) = 19.9 + 2.3e-9; -30: e^-30 = 9.36e-14 */
    check_unary(ag_softplus, FLOATS(20.5f, 25, 1000, 19.9f, -30, -100),
                FLOATS(20.5f, 25, 1000, 19.9f, 9.35762297e-14f, 3.72007598e-44f),
                FLOATS(1, 1, 1, 1, 9.35762297e-14f, 3.72007598e-44f));
}

/* x Phi(x) = 0.5 x erfc(-x / sqrt 2); Phi(x) + x phi(x) */
static void test_gelu_erf_values(void **state)
{
    (void)state;
    check_unary(ag_gelu_erf, xs,
                FLOATS(-0.0455002639f, -0.154268769f, 0, 0.345731231f, 0.841344746f,
                       2.99595031f),
                FLOATS(-0.0852318011f, 0.132504875f, 0.5f, 0.867495125f, 1.08331547f,
                       1.01194565f));
}

/* ================================================================ special values */

/* NaN for NaN, the same infinity or zero, a finite value within 1e-6 */
static bool same_value(float got, float want)
{
    if (isnan(want) || isinf(want) || want == 0)
        return isnan(want) ? isnan(got) : got == want;
    return fabsf(got - want) <= 1e-6f * fabsf(want);
}

/* y = f(x) elementwise equal to want, and d sum(y) / dx likewise */
static void check_special(const char *what, unary_fn f, int n, const float *x, const float *want_y,
                          const float *want_dx)
{
    ag_ctx *c = ag_ctx_new();
    ag_tensor *t = leaf(x, AG_SHAPE(n));
    ag_tensor *y = f(c, t);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    for (int i = 0; i < n; i++) {
        bool ok_y = same_value(y->data[i], want_y[i]);
        bool ok_dx = !want_dx || same_value(t->grad[i], want_dx[i]);
        if (!ok_y || !ok_dx)
            fail_msg("%s(%g) = %g (want %g), grad %g (want %g)", what, (double)x[i],
                     (double)y->data[i], (double)want_y[i], (double)t->grad[i],
                     want_dx ? (double)want_dx[i] : 0.0);
    }
    ag_tensor_free(t);
    ag_ctx_free(c);
}

/* libm's and PyTorch's results at the edges, through the ops; the grads at
 * +-inf are PyTorch's too (inf * 0 = NaN where its formula multiplies) */
static void test_special_values_through_ops(void **state)
{
    (void)state;
    const float inf = INFINITY, nan = NAN;
    check_special("exp", ag_exp, 6, FLOATS(-inf, inf, nan, 89, -104, 0),
                  FLOATS(0, inf, nan, inf, 0, 1), FLOATS(0, inf, nan, inf, 0, 1));
    check_special("log", ag_log, 6, FLOATS(0, -0.0f, -1, inf, nan, 1),
                  FLOATS(-inf, -inf, nan, inf, nan, 0), FLOATS(inf, -inf, -1, 0, nan, 1));
    check_special("tanh", ag_tanh, 4, FLOATS(-inf, inf, nan, 0), FLOATS(-1, 1, nan, 0),
                  FLOATS(0, 0, nan, 1));
    check_special("sigmoid", ag_sigmoid, 4, FLOATS(-inf, inf, nan, 0), FLOATS(0, 1, nan, 0.5f),
                  FLOATS(0, 0, nan, 0.25f));
    check_special("silu", ag_silu, 4, FLOATS(-inf, inf, nan, 0), FLOATS(nan, inf, nan, 0),
                  FLOATS(nan, nan, nan, 0.5f));
    check_special("softplus", ag_softplus, 4, FLOATS(-inf, inf, nan, 0),
                  FLOATS(0, inf, nan, 0.693147181f), FLOATS(0, 1, nan, 0.5f));
    check_special("gelu", ag_gelu, 4, FLOATS(-inf, inf, nan, 0), FLOATS(nan, inf, nan, 0),
                  FLOATS(nan, nan, nan, 0.5f));
    check_special("gelu_erf", ag_gelu_erf, 5, FLOATS(-inf, inf, nan, 0, -30),
                  FLOATS(nan, inf, nan, 0, 0), FLOATS(nan, nan, nan, 0.5f, 0));
    check_special("sin", ag_sin, 4, FLOATS(-inf, inf, nan, 0), FLOATS(nan, nan, nan, 0),
                  FLOATS(nan, nan, nan, 1));
    check_special("cos", ag_cos, 4, FLOATS(-inf, inf, nan, 0), FLOATS(nan, nan, nan, 1),
                  FLOATS(nan, nan, nan, 0));
    check_special("abs", ag_abs, 5, FLOATS(-inf, inf, nan, 0, -0.0f), FLOATS(inf, inf, nan, 0, 0),
                  FLOATS(-1, 1, 0, 0, 0));

    /* the sign of zero where libm keeps it */
    ag_ctx *c = ag_ctx_new();
    ag_tensor *z = ag_from_data(c, FLOATS(-0.0f), AG_SHAPE(1));
    assert_true(signbit(ag_sin(c, z)->data[0]) && signbit(ag_tanh(c, z)->data[0]));
    ag_ctx_free(c);
}

/* ================================================================ sin, cos beyond the fast range */

/* x mixes values inside the fast range with ones beyond it (12868 .. 3e38)
 * and inf/NaN; n > 32768 takes the threaded loops. sin(x) + sin(x) makes
 * the second backward add to the first's grad. */
static void check_trig_wide(int64_t n)
{
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_empty(NULL, AG_SHAPE(n));
    ag_rng r = ag_rng_new(7);
    for (int64_t i = 0; i < n; i++) {
        float u = ag_rng_uniform(&r) * 2 - 1;
        x->data[i] = i % 5 == 0 ? u * 1e6f : i % 11 == 0 ? u * 3e38f : u * 20;
    }
    x->data[1] = INFINITY;
    x->data[2] = NAN;
    x->data[3] = 12868.0f;
    x->data[4] = -12867.0f;
    ag_set_requires_grad(x, true);
    ag_tensor *s = ag_sin(c, x), *co = ag_cos(c, x);
    assert_true(ag_backward(c, ag_add(c, ag_sum_all(c, ag_add(c, s, ag_sin(c, x))),
                                      ag_sum_all(c, co))));
    for (int64_t i = 0; i < n; i++) {
        double v = x->data[i];
        float ws = sinf(x->data[i]), wc = cosf(x->data[i]);
        if (isnan(ws)) {
            assert_true(isnan(s->data[i]) && isnan(co->data[i]) && isnan(x->grad[i]));
            continue;
        }
        /* within 3 ulp of the exact value; beyond the range exactly libm's */
        double tol = 6 * 0x1p-24 * (fabs(sin(v)) > 0x1p-30 ? fabs(sin(v)) : 0x1p-30);
        if (fabs(v) > 12867 && (s->data[i] != ws || co->data[i] != wc))
            fail_msg("n %lld: sin/cos(%.9g) = %.9g, %.9g; sinf/cosf %.9g, %.9g", (long long)n, v,
                     (double)s->data[i], (double)co->data[i], (double)ws, (double)wc);
        if (!(fabs(s->data[i] - sin(v)) <= tol))
            fail_msg("sin(%.9g) = %.9g, want %.9g", v, (double)s->data[i], sin(v));
        /* d/dx (2 sin x + cos x) = 2 cos x - sin x */
        double want = 2.0 * wc - ws;
        if (!(fabs(x->grad[i] - want) <= 1e-6 * (1 + fabs(want))))
            fail_msg("grad at %.9g: %.9g, want %.9g", v, (double)x->grad[i], want);
    }
    ag_tensor_free(x);
    ag_ctx_free(c);
}

static void test_sin_cos_beyond_fast_range(void **state)
{
    (void)state;
    check_trig_wide(1000);
    check_trig_wide(70000);
}

/* ================================================================ clamp */

static void test_clamp_values_and_grads(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float *x = FLOATS(-2, -1, 0, 1, 2, NAN, INFINITY, -INFINITY);
    struct {
        float lo, hi;
        float y[8], dx[8];
    } cases[] = {
        /* the bounds themselves pass the grad, as PyTorch's >= and <= */
        {-1, 1, {-1, -1, 0, 1, 1, NAN, 1, -1}, {0, 1, 1, 1, 0, 0, 0, 0}},
        {0, INFINITY, {0, 0, 0, 1, 2, NAN, INFINITY, 0}, {0, 0, 1, 1, 1, 0, 1, 0}},
        {-INFINITY, -1, {-2, -1, -1, -1, -1, NAN, -1, -INFINITY}, {1, 1, 0, 0, 0, 0, 0, 1}},
        {-INFINITY, INFINITY, {-2, -1, 0, 1, 2, NAN, INFINITY, -INFINITY}, {1, 1, 1, 1, 1, 0, 1, 1}},
        /* min > max: everything is max, no grad */
        {1, -1, {-1, -1, -1, -1, -1, NAN, -1, -1}, {0, 0, 0, 0, 0, 0, 0, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ag_tensor *t = leaf(x, AG_SHAPE(8));
        ag_tensor *y = ag_clamp(c, t, cases[k].lo, cases[k].hi);
        assert_shape(y, 8);
        assert_true(ag_backward(c, ag_sum_all(c, ag_mul_scalar(c, y, 1.0f))));
        for (int i = 0; i < 8; i++) {
            bool ok = isnan(cases[k].y[i]) ? isnan(y->data[i]) : y->data[i] == cases[k].y[i];
            if (!ok || t->grad[i] != cases[k].dx[i])
                fail_msg("clamp(%g, %g, %g) = %g, grad %g; want %g, %g", (double)x[i],
                         (double)cases[k].lo, (double)cases[k].hi, (double)y->data[i],
                         (double)t->grad[i], (double)cases[k].y[i], (double)cases[k].dx[i]);
        }
        ag_tensor_free(t);
    }
    ag_ctx_free(c);
}

/* ================================================================ maximum, minimum */

/* ties: half the grad each; NaN: NaN out and the full grad to both inputs
 * (PyTorch's); otherwise all of it to the larger (smaller) */
static void test_maximum_minimum_ties_and_nan(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = leaf(FLOATS(1, 2, 3, NAN, -1), AG_SHAPE(5));
    ag_tensor *b = leaf(FLOATS(1, 3, 2, 1, NAN), AG_SHAPE(5));
    ag_tensor *g = ag_from_data(c, FLOATS(2, 2, 2, 2, 2), AG_SHAPE(5));

    ag_tensor *y = ag_maximum(c, a, b);
    assert_close(y->data, FLOATS(1, 3, 3, NAN, NAN), 5, 0);
    assert_true(ag_backward_with(c, y, g));
    assert_close(a->grad, FLOATS(1, 0, 2, 2, 2), 5, 0);
    assert_close(b->grad, FLOATS(1, 2, 0, 2, 2), 5, 0);

    ag_zero_grad(a);
    ag_zero_grad(b);
    y = ag_minimum(c, a, b);
    assert_close(y->data, FLOATS(1, 2, 2, NAN, NAN), 5, 0);
    assert_true(ag_backward_with(c, y, g));
    assert_close(a->grad, FLOATS(1, 2, 0, 2, 2), 5, 0);
    assert_close(b->grad, FLOATS(1, 0, 2, 2, 2), 5, 0);
    ag_tensor_free(a);
    ag_tensor_free(b);
    ag_ctx_free(c);
}

/* (2,1) against (3): y[i,j] = max(a[i], b[j]); a's grad counts the columns
 * it wins (half at a tie), b's the rows. a = (0, 2), b = (-1, 0, 3):
 * max = [[0, 0, 3], [2, 2, 3]], a: 1 + 0.5, 2; b: 0, 0.5, 2. */
static void test_maximum_broadcast_grads(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = leaf(FLOATS(0, 2), AG_SHAPE(2, 1));
    ag_tensor *b = leaf(FLOATS(-1, 0, 3), AG_SHAPE(3));
    ag_tensor *y = ag_maximum(c, a, b);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(0, 0, 3, 2, 2, 3), 6, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(a->grad, FLOATS(1.5f, 2), 2, 0);
    assert_close(b->grad, FLOATS(0, 0.5f, 2), 3, 0);

    ag_zero_grad(a);
    ag_zero_grad(b);
    y = ag_minimum(c, b, a); /* min = [[-1, 0, 0], [-1, 0, 2]] */
    assert_close(y->data, FLOATS(-1, 0, 0, -1, 0, 2), 6, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(a->grad, FLOATS(1.5f, 1), 2, 0);
    assert_close(b->grad, FLOATS(2, 1.5f, 0), 3, 0);
    ag_tensor_free(a);
    ag_tensor_free(b);
    ag_ctx_free(c);
}

/* ================================================================ where */

/* cond (3,1) picks whole rows of a (3,4) or of the row vector b (4); NaN
 * in cond counts as true */
static void test_where_broadcast(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *cond = ag_from_data(c, FLOATS(1, 0, NAN), AG_SHAPE(3, 1));
    ag_tensor *a = leaf(FLOATS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), AG_SHAPE(3, 4));
    ag_tensor *b = leaf(FLOATS(-1, -2, -3, -4), AG_SHAPE(4));
    ag_tensor *y = ag_where(c, cond, a, b);
    assert_shape(y, 3, 4);
    assert_close(y->data, FLOATS(1, 2, 3, 4, -1, -2, -3, -4, 9, 10, 11, 12), 12, 0);
    ag_tensor *g = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, INFINITY),
                                AG_SHAPE(3, 4));
    assert_true(ag_backward_with(c, y, g));
    assert_close(a->grad, FLOATS(1, 2, 3, 4, 0, 0, 0, 0, 9, 10, 11, INFINITY), 12, 0);
    assert_close(b->grad, FLOATS(5, 6, 7, 8), 4, 0); /* 0, not NaN, for g = inf unpicked */

    /* a scalar a and a (2,1,2) cond: out (2,1,2) */
    ag_tensor *s = leaf(FLOATS(7), AG_SHAPE(1));
    ag_tensor *c3 = ag_from_data(c, FLOATS(0, 1, 1, 0), AG_SHAPE(2, 1, 2));
    ag_tensor *b2 = leaf(FLOATS(-1, -2), AG_SHAPE(2));
    y = ag_where(c, c3, s, b2);
    assert_shape(y, 2, 1, 2);
    assert_close(y->data, FLOATS(-1, 7, 7, -2), 4, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(s->grad, FLOATS(2), 1, 0);
    assert_close(b2->grad, FLOATS(1, 1), 2, 0);
    ag_tensor *ts[4] = {a, b, s, b2};
    free_all(ts, 4);
    ag_ctx_free(c);
}

static void test_where_shape_error(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *cond = ag_zeros(c, AG_SHAPE(3));
    ag_tensor *a = ag_zeros(c, AG_SHAPE(2, 4)), *b = ag_zeros(c, AG_SHAPE(4));
    assert_ag_error(ag_where(c, cond, a, b), "where", "(3)", "(2, 4)", "(4)");
    assert_ag_error(ag_maximum(c, a, cond), "maximum", "(2, 4)", "(3)");
    ag_ctx_free(c);
}

/* ================================================================ gradchecks */

typedef struct {
    unary_fn f;
} unary_user;

static ag_tensor *f_unary(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    return weighted_sum(c, ((unary_user *)user)->f(c, in[0]));
}

static void gradcheck_unary(unary_fn f, const char *name, ag_tensor *x)
{
    ag_gradcheck_opts o = ag_gradcheck_defaults();
    o.quiet = true;
    if (!ag_gradcheck(f_unary, &x, 1, &(unary_user){f}, &o)) {
        char s[64];
        fail_msg("gradcheck of %s on %s: %s", name, ag_shape_str(x, s, sizeof s), o.report);
    }
    ag_tensor_free(x);
}

/* x = sign * (|x| + margin): every element at least margin from 0 */
static void push_from_zero(ag_tensor *t, float margin)
{
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = t->data[i] < 0 ? t->data[i] - margin : t->data[i] + margin;
}

static void test_unary_gradchecks(void **state)
{
    (void)state;
    const struct {
        const char *name;
        unary_fn f;
        float std;
    } ops[] = {
        {"sin", ag_sin, 3}, {"cos", ag_cos, 3}, {"silu", ag_silu, 3}, {"softplus", ag_softplus, 5},
        {"gelu_erf", ag_gelu_erf, 2}, {"abs", ag_abs, 1},
    };
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        for (int big = 0; big < 2; big++) {
            ag_tensor *x = big ? rand_leaf(700 + k, ops[k].std, AG_SHAPE(10, 20))
                               : rand_leaf(800 + k, ops[k].std, AG_SHAPE(2, 3, 4));
            if (ops[k].f == ag_abs)
                push_from_zero(x, 0.1f);
            gradcheck_unary(ops[k].f, ops[k].name, x);
        }
}

/* clamp(x, -0.5, 0.7), x kept 0.1 from both bounds */
static ag_tensor *f_clamp(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_clamp(c, in[0], -0.5f, 0.7f));
}

static void test_clamp_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(901, 1.0f, AG_SHAPE(4, 6));
    for (int64_t i = 0; i < x->numel; i++) {
        float v = x->data[i];
        if (fabsf(v + 0.5f) < 0.1f || fabsf(v - 0.7f) < 0.1f)
            x->data[i] = v + 0.25f;
    }
    assert_gradcheck(f_clamp, &x, 1, NULL);
    ag_tensor_free(x);
}

typedef struct {
    ag_tensor *(*f)(ag_ctx *, ag_tensor *, ag_tensor *);
} binary_user;

static ag_tensor *f_binary(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    return weighted_sum(c, ((binary_user *)user)->f(c, in[0], in[1]));
}

/* t's values rounded to the multiples of 0.1 (plus 0.05 when odd): a and b
 * then differ by 0.05 at least, more than gradcheck's steps */
static void snap(ag_tensor *t, bool odd)
{
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = roundf(t->data[i] * 10.0f) / 10.0f + (odd ? 0.05f : 0.0f);
}

/* inputs of broadcasting shapes, no ties */
static void test_maximum_minimum_gradchecks(void **state)
{
    (void)state;
    const binary_user fs[2] = {{ag_maximum}, {ag_minimum}};
    const int64_t sa[][3] = {{3, 1, 4}, {2, 3, 4}, {1, 1, 1}};
    const int64_t sb[][2] = {{5, 4}, {3, 4}, {3, 4}};
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < 3; s++) {
            ag_tensor *in[2] = {rand_leaf(910 + s, 1.0f, 3, sa[s]), rand_leaf(920 + s, 1.0f, 2, sb[s])};
            snap(in[0], false);
            snap(in[1], true);
            ag_gradcheck_opts o = ag_gradcheck_defaults();
            o.quiet = true;
            if (!ag_gradcheck(f_binary, in, 2, (void *)&fs[k], &o))
                fail_msg("gradcheck of %s, shapes %d: %s", k ? "minimum" : "maximum", s, o.report);
            free_all(in, 2);
        }
}

typedef struct {
    ag_tensor *cond;
} where_user;

static ag_tensor *f_where(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    return weighted_sum(c, ag_where(c, ((where_user *)user)->cond, in[0], in[1]));
}

static void test_where_gradcheck(void **state)
{
    (void)state;
    ag_tensor *cond = ag_from_data(NULL, FLOATS(1, 0, 0, 1, 1, 0), AG_SHAPE(2, 3, 1));
    where_user u = {cond};
    ag_tensor *in[2] = {rand_leaf(930, 1.0f, AG_SHAPE(3, 5)), rand_leaf(931, 1.0f, AG_SHAPE(2, 1, 5))};
    assert_gradcheck(f_where, in, 2, &u);
    free_all(in, 2);
    ag_tensor *same[2] = {rand_leaf(932, 1.0f, AG_SHAPE(2, 3, 1)), rand_leaf(933, 1.0f, AG_SHAPE(2, 3, 1))};
    assert_gradcheck(f_where, same, 2, &u);
    free_all(same, 2);
    ag_tensor_free(cond);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sin_cos_values),
        cmocka_unit_test(test_abs_values),
        cmocka_unit_test(test_silu_values),
        cmocka_unit_test(test_softplus_values),
        cmocka_unit_test(test_gelu_erf_values),
        cmocka_unit_test(test_special_values_through_ops),
        cmocka_unit_test(test_sin_cos_beyond_fast_range),
        cmocka_unit_test(test_clamp_values_and_grads),
        cmocka_unit_test(test_maximum_minimum_ties_and_nan),
        cmocka_unit_test(test_maximum_broadcast_grads),
        cmocka_unit_test(test_where_broadcast),
        cmocka_unit_test(test_where_shape_error),
        cmocka_unit_test(test_unary_gradchecks),
        cmocka_unit_test(test_clamp_gradcheck),
        cmocka_unit_test(test_maximum_minimum_gradchecks),
        cmocka_unit_test(test_where_gradcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
