/* test_elementwise.c - the elementwise ops.
 *
 * Binary ops (add, sub, mul, div) with NumPy broadcasting: same shapes, a
 * 0-dim operand on either side, (3,1,4) with (5,4), size-1 dims on both
 * operands, a row-vector bias, lower rank on the left. Forward values are
 * worked out by hand; backward values are checked directly where they are
 * easy to state (the grad of a broadcast operand is a count), and every op
 * is gradchecked through weighted_sum over all those shape pairs.
 *
 * Unary and scalar ops (add_scalar, mul_scalar, pow_scalar with p = 2, 3,
 * 0.5, -1, neg, exp, log, sqrt, rsqrt, relu, gelu, tanh, sigmoid): forward
 * values and derivatives against literals computed with Python's math
 * module in double precision, saturation without NaN, and gradchecks with
 * inputs kept away from kinks and domain edges. */
#include "test_util.h"

#include <stdlib.h>

/* ================================================================ binary forward */

static void test_add_same_shape(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6), AG_SHAPE(2, 3));
    ag_tensor *b = ag_from_data(c, FLOATS(0.5f, -1, 2, 10, 20, -30), AG_SHAPE(2, 3));
    ag_tensor *y = ag_add(c, a, b);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(1.5f, 1, 5, 14, 25, -24), 6, 0);
    ag_ctx_free(c);
}

/* a 0-dim operand broadcasts against anything, on either side */
static void test_scalar_operand_either_side(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_from_data(c, FLOATS(1, 2, 3, 4), AG_SHAPE(2, 2));
    ag_tensor *s = ag_scalar(c, 10);

    ag_tensor *y = ag_sub(c, a, s);
    assert_shape(y, 2, 2);
    assert_close(y->data, FLOATS(-9, -8, -7, -6), 4, 0);

    y = ag_sub(c, s, a);
    assert_shape(y, 2, 2);
    assert_close(y->data, FLOATS(9, 8, 7, 6), 4, 0);

    /* 10 / (1, 2, 3, 4) */
    y = ag_div(c, s, a);
    assert_shape(y, 2, 2);
    assert_close(y->data, FLOATS(10, 5, 10.0f / 3, 2.5f), 4, 1e-6);

    /* scalar op scalar stays 0-dim: 3 * -2 */
    y = ag_mul(c, ag_scalar(c, 3), ag_scalar(c, -2));
    assert_scalar_shape(y);
    assert_true(ag_item(y) == -6.0f);
    ag_ctx_free(c);
}

/* (3,1,4) + (5,4) -> (3,5,4). With a[i,0,k] = 100 i and b[j,k] = 10 j + k
 * every output element spells its own index: y[i,j,k] = 100 i + 10 j + k. */
static void test_add_3d_against_2d(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_empty(c, AG_SHAPE(3, 1, 4));
    ag_tensor *b = ag_empty(c, AG_SHAPE(5, 4));
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++)
            a->data[i * 4 + k] = 100.0f * (float)i;
    for (int j = 0; j < 5; j++)
        for (int k = 0; k < 4; k++)
            b->data[j * 4 + k] = 10.0f * (float)j + (float)k;

    ag_tensor *ys[2] = {ag_add(c, a, b), ag_add(c, b, a)};
    for (int t = 0; t < 2; t++) {
        assert_shape(ys[t], 3, 5, 4);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 5; j++)
                for (int k = 0; k < 4; k++) {
                    float want = (float)(100 * i + 10 * j + k);
                    assert_close(&ys[t]->data[(i * 5 + j) * 4 + k], &want, 1, 0);
                }
    }
    ag_ctx_free(c);
}

/* (2,1) * (1,3) -> (2,3): an outer product, each operand broadcast on one dim */
static void test_mul_size1_dims_on_both_sides(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *col = ag_from_data(c, FLOATS(2, 3), AG_SHAPE(2, 1));
    ag_tensor *row = ag_from_data(c, FLOATS(1, 10, 100), AG_SHAPE(1, 3));
    ag_tensor *y = ag_mul(c, col, row);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(2, 20, 200, 3, 30, 300), 6, 0);
    y = ag_mul(c, row, col);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(2, 20, 200, 3, 30, 300), 6, 0);
    ag_ctx_free(c);
}

/* (N,C) + (C): the bias is added to every row */
static void test_add_row_bias(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6), AG_SHAPE(2, 3));
    ag_tensor *bias = ag_from_data(c, FLOATS(10, 20, 30), AG_SHAPE(3));
    ag_tensor *y = ag_add(c, x, bias);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(11, 22, 33, 14, 25, 36), 6, 0);
    ag_ctx_free(c);
}

/* (2,3) - (2,1): the column is subtracted along each row */
static void test_sub_column(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(1, 2, 3, 7, 8, 9), AG_SHAPE(2, 3));
    ag_tensor *col = ag_from_data(c, FLOATS(1, 7), AG_SHAPE(2, 1));
    ag_tensor *y = ag_sub(c, x, col);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(0, 1, 2, 0, 1, 2), 6, 0);
    ag_ctx_free(c);
}

/* (2,2) / (2): column j divided by b[j] */
static void test_div_row(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_from_data(c, FLOATS(1, 2, 3, 4), AG_SHAPE(2, 2));
    ag_tensor *b = ag_from_data(c, FLOATS(2, 4), AG_SHAPE(2));
    ag_tensor *y = ag_div(c, a, b);
    assert_shape(y, 2, 2);
    /* 1/2, 2/4, 3/2, 4/4 */
    assert_close(y->data, FLOATS(0.5f, 0.5f, 1.5f, 1), 4, 0);
    ag_ctx_free(c);
}

/* (4,1) - (2,1,3) -> (2,4,3): the lower-rank operand on the left, both broadcast.
 * b[j] = 10^j, a[i,0,k] = 3 i + k + 1, y[i,j,k] = 10^j - (3 i + k + 1). */
static void test_sub_lower_rank_left(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *b = ag_from_data(c, FLOATS(1, 10, 100, 1000), AG_SHAPE(4, 1));
    ag_tensor *a = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6), AG_SHAPE(2, 1, 3));
    ag_tensor *y = ag_sub(c, b, a);
    assert_shape(y, 2, 4, 3);
    const float want[24] = {
        0,   -1,  -2,  9,   8,   7,   99,  98,  97,  999, 998, 997, /* i = 0 */
        -3,  -4,  -5,  6,   5,   4,   96,  95,  94,  996, 995, 994, /* i = 1 */
    };
    assert_close(y->data, want, 24, 0);
    ag_ctx_free(c);
}

/* (64,600) + (600): big enough for the parallel kernels and the column-sum
 * backward. x[r,c] = r, bias[c] = c / 2, so y[r,c] = r + c / 2 exactly; the
 * bias is broadcast over 64 rows, so its grad under sum_all is 64. */
static void test_large_bias_add_and_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    enum { R = 64, C = 600 };
    ag_tensor *x = ag_zeros(NULL, AG_SHAPE(R, C));
    ag_tensor *bias = ag_zeros(NULL, AG_SHAPE(C));
    for (int r = 0; r < R; r++)
        for (int k = 0; k < C; k++)
            x->data[r * C + k] = (float)r;
    for (int k = 0; k < C; k++)
        bias->data[k] = 0.5f * (float)k;
    ag_set_requires_grad(x, true);
    ag_set_requires_grad(bias, true);

    ag_tensor *y = ag_add(c, x, bias);
    assert_shape(y, R, C);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < C; k++) {
            float want = (float)r + 0.5f * (float)k;
            assert_close(&y->data[r * C + k], &want, 1, 0);
        }
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    for (int k = 0; k < C; k++)
        assert_true(bias->grad[k] == (float)R);
    for (int i = 0; i < R * C; i++)
        assert_true(x->grad[i] == 1.0f);
    ag_tensor_free(x);
    ag_tensor_free(bias);
    ag_ctx_free(c);
}

/* A size-0 dim broadcasts like any other: (3,1) + (0) -> (3,0). Backward
 * has nothing to add, so a's grad stays zero (and must not trip over the
 * empty last dim while undoing the broadcast). */
static void test_broadcast_against_empty(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = leaf(FLOATS(1, 2, 3), AG_SHAPE(3, 1));
    ag_tensor *b = ag_ones(NULL, AG_SHAPE(0));
    ag_set_requires_grad(b, true);
    ag_tensor *(*const fns[4])(ag_ctx *, ag_tensor *, ag_tensor *) = {ag_add, ag_sub, ag_mul,
                                                                      ag_div};
    for (size_t k = 0; k < 4; k++) {
        ag_tensor *y = fns[k](c, a, b);
        assert_shape(y, 3, 0);
        ag_tensor *s = ag_sum_all(c, y);
        assert_true(ag_item(s) == 0.0f);
        assert_true(ag_backward(c, s));
        assert_close(a->grad, FLOATS(0, 0, 0), 3, 0);
    }
    ag_tensor_free(a);
    ag_tensor_free(b);
    ag_ctx_free(c);
}

/* ================================================================ binary backward values */

/* sum_all(a + b), a (2,3), b (3): b is used by 2 rows, so its grad is 2 */
static void test_add_grad_counts_broadcast_rows(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = leaf(FLOATS(1, 2, 3, 4, 5, 6), AG_SHAPE(2, 3));
    ag_tensor *b = leaf(FLOATS(-1, 0, 1), AG_SHAPE(3));
    assert_true(ag_backward(c, ag_sum_all(c, ag_add(c, a, b))));
    assert_close(a->grad, FLOATS(1, 1, 1, 1, 1, 1), 6, 0);
    assert_close(b->grad, FLOATS(2, 2, 2), 3, 0);
    ag_tensor_free(a);
    ag_tensor_free(b);
    ag_ctx_free(c);
}

/* sum_all(a + b), a (3,1,4), b (5,4): a is reused 5 times, b 3 times */
static void test_add_grad_counts_3d_against_2d(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = rand_leaf(1, 1.0f, AG_SHAPE(3, 1, 4));
    ag_tensor *b = rand_leaf(2, 1.0f, AG_SHAPE(5, 4));
    assert_true(ag_backward(c, ag_sum_all(c, ag_add(c, a, b))));
    for (int i = 0; i < 12; i++)
        assert_true(a->grad[i] == 5.0f);
    for (int i = 0; i < 20; i++)
        assert_true(b->grad[i] == 3.0f);
    ag_tensor_free(a);
    ag_tensor_free(b);
    ag_ctx_free(c);
}

/* sum_all(a - b), b (2,1): each b element is subtracted from 3 columns */
static void test_sub_grad_negates_and_counts(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = leaf(FLOATS(1, 2, 3, 4, 5, 6), AG_SHAPE(2, 3));
    ag_tensor *b = leaf(FLOATS(1, 2), AG_SHAPE(2, 1));
    assert_true(ag_backward(c, ag_sum_all(c, ag_sub(c, a, b))));
    assert_close(a->grad, FLOATS(1, 1, 1, 1, 1, 1), 6, 0);
    assert_close(b->grad, FLOATS(-3, -3), 2, 0);
    ag_tensor_free(a);
    ag_tensor_free(b);
    ag_ctx_free(c);
}

/* sum_all(a * s), s 0-dim = 3: d/da = s = 3, d/ds = sum(a) = 21 */
static void test_mul_grad_with_scalar_operand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = leaf(FLOATS(1, 2, 3, 4, 5, 6), AG_SHAPE(2, 3));
    ag_tensor *s = ag_scalar(NULL, 3);
    ag_set_requires_grad(s, true);
    assert_true(ag_backward(c, ag_sum_all(c, ag_mul(c, a, s))));
    assert_close(a->grad, FLOATS(3, 3, 3, 3, 3, 3), 6, 0);
    assert_close(s->grad, FLOATS(21), 1, 0);
    ag_tensor_free(a);
    ag_tensor_free(s);
    ag_ctx_free(c);
}

/* sum_all(a / b), a (2,2) = [[1,2],[3,4]], b (2) = [2,4]:
 * d/da[i,j] = 1/b[j] = 0.5, 0.25; d/db[j] = -sum_i a[i,j] / b[j]^2:
 * -(1+3)/4 = -1 and -(2+4)/16 = -0.375 */
static void test_div_grad_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = leaf(FLOATS(1, 2, 3, 4), AG_SHAPE(2, 2));
    ag_tensor *b = leaf(FLOATS(2, 4), AG_SHAPE(2));
    assert_true(ag_backward(c, ag_sum_all(c, ag_div(c, a, b))));
    assert_close(a->grad, FLOATS(0.5f, 0.25f, 0.5f, 0.25f), 4, 1e-7);
    assert_close(b->grad, FLOATS(-1, -0.375f), 2, 1e-7);
    ag_tensor_free(a);
    ag_tensor_free(b);
    ag_ctx_free(c);
}

/* ag_backward_with a non-uniform seed through (2,1) * (1,3):
 * y[i,j] = c[i] r[j], dc[i] = sum_j g[i,j] r[j], dr[j] = sum_i g[i,j] c[i].
 * c = (2, 3), r = (1, 10, 100), g = [[1,2,3],[4,5,6]]:
 * dc = (1 + 20 + 300, 4 + 50 + 600) = (321, 654),
 * dr = (2 + 12, 4 + 15, 6 + 18) = (14, 19, 24) */
static void test_mul_outer_grad_with_seed(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *col = leaf(FLOATS(2, 3), AG_SHAPE(2, 1));
    ag_tensor *row = leaf(FLOATS(1, 10, 100), AG_SHAPE(1, 3));
    ag_tensor *g = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6), AG_SHAPE(2, 3));
    assert_true(ag_backward_with(c, ag_mul(c, col, row), g));
    assert_close(col->grad, FLOATS(321, 654), 2, 0);
    assert_close(row->grad, FLOATS(14, 19, 24), 3, 0);
    ag_tensor_free(col);
    ag_tensor_free(row);
    ag_ctx_free(c);
}

/* One tensor as both operands: both grads land on it and add up.
 * x = (-1.5, 0.5, 2): d(x*x) = 2x, d(x+x) = 2, d(x-x) = 0, d(x/x) = 1/x - x/x^2 = 0. */
static void test_same_tensor_both_operands(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = leaf(FLOATS(-1.5f, 0.5f, 2), AG_SHAPE(3));

    ag_tensor *y = ag_mul(c, x, x);
    assert_close(y->data, FLOATS(2.25f, 0.25f, 4), 3, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(x->grad, FLOATS(-3, 1, 4), 3, 0);

    ag_zero_grad(x);
    assert_true(ag_backward(c, ag_sum_all(c, ag_add(c, x, x))));
    assert_close(x->grad, FLOATS(2, 2, 2), 3, 0);

    ag_zero_grad(x);
    y = ag_sub(c, x, x);
    assert_close(y->data, FLOATS(0, 0, 0), 3, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(x->grad, FLOATS(0, 0, 0), 3, 0);

    ag_zero_grad(x);
    y = ag_div(c, x, x);
    assert_close(y->data, FLOATS(1, 1, 1), 3, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(x->grad, FLOATS(0, 0, 0), 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* x (3) times its own (3,1) view: y[i,j] = x[i] x[j], an outer product whose
 * two operands are broadcast along different dims. d sum(y) / dx[k] =
 * sum_j x[j] + sum_i x[i] = 2 sum(x) = 12 for x = (1, 2, 3). */
static void test_same_tensor_broadcast_against_itself(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = leaf(FLOATS(1, 2, 3), AG_SHAPE(3));
    ag_tensor *y = ag_mul(c, ag_reshape(c, x, AG_SHAPE(3, 1)), x);
    assert_shape(y, 3, 3);
    assert_close(y->data, FLOATS(1, 2, 3, 2, 4, 6, 3, 6, 9), 9, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(x->grad, FLOATS(12, 12, 12), 3, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ binary gradchecks */

typedef struct {
    const char *name;
    ag_tensor *(*fn)(ag_ctx *, ag_tensor *, ag_tensor *);
} binary_case;

static const binary_case binary_ops[] = {
    {"add", ag_add}, {"sub", ag_sub}, {"mul", ag_mul}, {"div", ag_div}};

static ag_tensor *f_binary(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    const binary_case *op = user;
    return weighted_sum(c, op->fn(c, in[0], in[1]));
}

/* x = sign * (|x| + margin): keeps every element at least margin from 0 */
static void push_from_zero(ag_tensor *t, float margin)
{
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = t->data[i] < 0 ? t->data[i] - margin : t->data[i] + margin;
}

/* Gradchecks all four ops on a (sa) op b (sb); divisors kept >= 0.5 from 0. */
static void gradcheck_binary(int nda, const int64_t *sa, int ndb, const int64_t *sb)
{
    for (size_t k = 0; k < sizeof binary_ops / sizeof *binary_ops; k++) {
        ag_tensor *in[2] = {rand_leaf(11 + k, 1.0f, nda, sa), rand_leaf(23 + k, 1.0f, ndb, sb)};
        if (binary_ops[k].fn == ag_div)
            push_from_zero(in[1], 0.5f);
        ag_gradcheck_opts o = ag_gradcheck_defaults();
        o.quiet = true;
        if (!ag_gradcheck(f_binary, in, 2, (void *)&binary_ops[k], &o)) {
            char a[64], b[64];
            fail_msg("gradcheck of %s%s with %s: %s", binary_ops[k].name,
                     ag_shape_str(in[0], a, sizeof a), ag_shape_str(in[1], b, sizeof b), o.report);
        }
        free_all(in, 2);
    }
}

static void test_binary_gradcheck_same_shape(void **state)
{
    (void)state;
    gradcheck_binary(AG_SHAPE(2, 3), AG_SHAPE(2, 3));
    gradcheck_binary(AG_SHAPE(2, 3, 4), AG_SHAPE(2, 3, 4));
}

static void test_binary_gradcheck_scalar_operand(void **state)
{
    (void)state;
    gradcheck_binary(0, NULL, AG_SHAPE(2, 3));
    gradcheck_binary(AG_SHAPE(2, 3), 0, NULL);
    gradcheck_binary(0, NULL, 0, NULL);
    gradcheck_binary(AG_SHAPE(1), AG_SHAPE(3, 2)); /* one element but 1-D */
}

static void test_binary_gradcheck_3d_against_2d(void **state)
{
    (void)state;
    gradcheck_binary(AG_SHAPE(3, 1, 4), AG_SHAPE(5, 4));
    gradcheck_binary(AG_SHAPE(5, 4), AG_SHAPE(3, 1, 4));
}

static void test_binary_gradcheck_size1_dims_both_sides(void **state)
{
    (void)state;
    gradcheck_binary(AG_SHAPE(2, 1), AG_SHAPE(1, 3));
    gradcheck_binary(AG_SHAPE(1, 3), AG_SHAPE(2, 1));
    gradcheck_binary(AG_SHAPE(4, 1), AG_SHAPE(2, 1, 3));
    gradcheck_binary(AG_SHAPE(2, 1, 3, 1), AG_SHAPE(1, 2, 1, 2));
}

static void test_binary_gradcheck_bias_and_batch(void **state)
{
    (void)state;
    gradcheck_binary(AG_SHAPE(4, 3), AG_SHAPE(3));
    gradcheck_binary(AG_SHAPE(3), AG_SHAPE(4, 3));
    gradcheck_binary(AG_SHAPE(2, 3, 5), AG_SHAPE(5));
    gradcheck_binary(AG_SHAPE(2, 3, 5), AG_SHAPE(3, 5));
    gradcheck_binary(AG_SHAPE(2, 3, 5), AG_SHAPE(3, 1));
}

/* more than 64 elements: gradcheck goes by random directions */
static void test_binary_gradcheck_large_by_directions(void **state)
{
    (void)state;
    gradcheck_binary(AG_SHAPE(20, 40), AG_SHAPE(40));
    gradcheck_binary(AG_SHAPE(6, 1, 30), AG_SHAPE(7, 30));
}

/* ================================================================ unary values */

/* An elementwise op of one tensor, with or without a scalar argument. */
typedef struct {
    const char *name;
    ag_tensor *(*fn)(ag_ctx *, ag_tensor *);
    ag_tensor *(*fn_s)(ag_ctx *, ag_tensor *, float);
    float s;
} unary_case;

static ag_tensor *apply(ag_ctx *c, const unary_case *u, ag_tensor *x)
{
    return u->fn ? u->fn(c, x) : u->fn_s(c, x, u->s);
}

/* Inputs for the values below: any sign, and positive only. */
static const float xs[6] = {-2, -0.5f, 0, 0.5f, 1, 3};
static const float xp[6] = {0.25f, 0.5f, 1, 2, 4, 9};

/* y = op(x) == want_y and d sum(y) / dx == want_dx, both elementwise */
static void check_unary(ag_ctx *c, unary_case u, const float *x, const float *want_y,
                        const float *want_dx)
{
    ag_tensor *t = leaf(x, AG_SHAPE(2, 3));
    ag_tensor *y = apply(c, &u, t);
    assert_shape(y, 2, 3);
    assert_close(y->data, want_y, 6, 1e-5);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(t->grad, want_dx, 6, 1e-5);
    ag_tensor_free(t);
}

static void test_add_scalar_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"add_scalar", NULL, ag_add_scalar, 1.5f}, xs,
                FLOATS(-0.5f, 1, 1.5f, 2, 2.5f, 4.5f), FLOATS(1, 1, 1, 1, 1, 1));
    ag_ctx_free(c);
}

static void test_mul_scalar_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"mul_scalar", NULL, ag_mul_scalar, -2}, xs,
                FLOATS(4, 1, 0, -1, -2, -6), FLOATS(-2, -2, -2, -2, -2, -2));
    ag_ctx_free(c);
}

/* p = 2: x^2 and 2x */
static void test_pow_scalar_square(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"pow2", NULL, ag_pow_scalar, 2}, xs,
                FLOATS(4, 0.25f, 0, 0.25f, 1, 9), FLOATS(-4, -1, 0, 1, 2, 6));
    ag_ctx_free(c);
}

/* p = 3 on negative bases too: x^3 and 3x^2 */
static void test_pow_scalar_cube(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"pow3", NULL, ag_pow_scalar, 3}, xs,
                FLOATS(-8, -0.125f, 0, 0.125f, 1, 27), FLOATS(12, 0.75f, 0, 0.75f, 3, 27));
    ag_ctx_free(c);
}

/* p = 0.5: sqrt(x) and 0.5 / sqrt(x) */
static void test_pow_scalar_half(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"pow0.5", NULL, ag_pow_scalar, 0.5f}, xp,
                FLOATS(0.5f, 0.707106781f, 1, 1.41421356f, 2, 3),
                FLOATS(1, 0.707106781f, 0.5f, 0.353553391f, 0.25f, 0.166666667f));
    ag_ctx_free(c);
}

/* p = -1: 1/x and -1/x^2 */
static void test_pow_scalar_reciprocal(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"pow-1", NULL, ag_pow_scalar, -1}, xp,
                FLOATS(4, 2, 1, 0.5f, 0.25f, 0.111111111f),
                FLOATS(-16, -4, -1, -0.25f, -0.0625f, -0.0123456790f));
    ag_ctx_free(c);
}

static void test_neg_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"neg", ag_neg, NULL, 0}, xs,
                FLOATS(2, 0.5f, 0, -0.5f, -1, -3), FLOATS(-1, -1, -1, -1, -1, -1));
    ag_ctx_free(c);
}

/* math.exp(x); the derivative is exp(x) again */
static void test_exp_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float *e = FLOATS(0.135335283f, 0.60653066f, 1, 1.64872127f, 2.71828183f, 20.0855369f);
    check_unary(c, (unary_case){"exp", ag_exp, NULL, 0}, xs, e, e);
    ag_ctx_free(c);
}

/* math.log(x) and 1/x */
static void test_log_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"log", ag_log, NULL, 0}, xp,
                FLOATS(-1.38629436f, -0.693147181f, 0, 0.693147181f, 1.38629436f, 2.19722458f),
                FLOATS(4, 2, 1, 0.5f, 0.25f, 0.111111111f));
    ag_ctx_free(c);
}

/* sqrt(x) and 0.5 / sqrt(x) */
static void test_sqrt_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"sqrt", ag_sqrt, NULL, 0}, xp,
                FLOATS(0.5f, 0.707106781f, 1, 1.41421356f, 2, 3),
                FLOATS(1, 0.707106781f, 0.5f, 0.353553391f, 0.25f, 0.166666667f));
    ag_ctx_free(c);
}

/* 1 / sqrt(x) and -0.5 x^-1.5 */
static void test_rsqrt_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"rsqrt", ag_rsqrt, NULL, 0}, xp,
                FLOATS(2, 1.41421356f, 1, 0.707106781f, 0.5f, 0.333333333f),
                FLOATS(-4, -1.41421356f, -0.5f, -0.176776695f, -0.0625f, -0.0185185185f));
    ag_ctx_free(c);
}

/* max(x, 0); the grad at exactly 0 is 0, as in PyTorch */
static void test_relu_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"relu", ag_relu, NULL, 0}, xs, FLOATS(0, 0, 0, 0.5f, 1, 3),
                FLOATS(0, 0, 0, 1, 1, 1));
    ag_ctx_free(c);
}

/* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with math.tanh in double;
 * the derivative by a central difference of that in double (h = 1e-6). */
static void test_gelu_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"gelu", ag_gelu, NULL, 0}, xs,
                FLOATS(-0.0454023059f, -0.15428599f, 0, 0.34571401f, 0.841191991f, 2.99636261f),
                FLOATS(-0.0860992566f, 0.132630096f, 0.5f, 0.867369903f, 1.08296408f,
                       1.01158417f));
    ag_ctx_free(c);
}

/* math.tanh(x) and 1 - tanh(x)^2 */
static void test_tanh_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"tanh", ag_tanh, NULL, 0}, xs,
                FLOATS(-0.96402758f, -0.462117157f, 0, 0.462117157f, 0.761594156f, 0.995054754f),
                FLOATS(0.0706508249f, 0.786447733f, 1, 0.786447733f, 0.419974342f,
                       0.00986603717f));
    ag_ctx_free(c);
}

/* 1 / (1 + math.exp(-x)) and s (1 - s) */
static void test_sigmoid_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    check_unary(c, (unary_case){"sigmoid", ag_sigmoid, NULL, 0}, xs,
                FLOATS(0.119202922f, 0.377540669f, 0.5f, 0.622459331f, 0.731058579f, 0.952574127f),
                FLOATS(0.104993585f, 0.235003712f, 0.25f, 0.235003712f, 0.196611933f,
                       0.0451766597f));
    ag_ctx_free(c);
}

/* Far in the tails the functions and their grads are finite, not NaN:
 * sigmoid -> 0 / 1, tanh -> -1 / 1, gelu -> 0 / x, exp(-100) -> 0, grads -> 0
 * (gelu's -> 0 / 1). */
static void test_saturation_is_finite(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float *tails = FLOATS(-100, 100, -100, 100, -100, 100);
    check_unary(c, (unary_case){"sigmoid", ag_sigmoid, NULL, 0}, tails, FLOATS(0, 1, 0, 1, 0, 1),
                FLOATS(0, 0, 0, 0, 0, 0));
    check_unary(c, (unary_case){"tanh", ag_tanh, NULL, 0}, tails, FLOATS(-1, 1, -1, 1, -1, 1),
                FLOATS(0, 0, 0, 0, 0, 0));
    check_unary(c, (unary_case){"gelu", ag_gelu, NULL, 0}, tails, FLOATS(0, 100, 0, 100, 0, 100),
                FLOATS(0, 1, 0, 1, 0, 1));
    /* exp(-100) ~ 3.7e-44 (a float denormal), exp(100) overflows to +inf */
    ag_tensor *e = ag_exp(c, ag_from_data(c, tails, AG_SHAPE(2)));
    assert_true(e->data[0] >= 0.0f && e->data[0] < 1e-38f);
    assert_true(isinf(e->data[1]) && e->data[1] > 0);
    ag_ctx_free(c);
}

/* ================================================================ unary gradchecks */

static ag_tensor *f_unary(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    return weighted_sum(c, apply(c, user, in[0]));
}

static void gradcheck_unary(const unary_case *u, ag_tensor *x)
{
    ag_gradcheck_opts o = ag_gradcheck_defaults();
    o.quiet = true;
    if (!ag_gradcheck(f_unary, &x, 1, (void *)u, &o)) {
        char s[64];
        fail_msg("gradcheck of %s(%g) on %s: %s", u->name, (double)u->s,
                 ag_shape_str(x, s, sizeof s), o.report);
    }
    ag_tensor_free(x);
}

/* ops smooth on the whole line: N(0,1) inputs, 24 elements and 200 (directions) */
static void test_unary_gradcheck_smooth(void **state)
{
    (void)state;
    const unary_case cases[] = {
        {"add_scalar", NULL, ag_add_scalar, 1.5f}, {"mul_scalar", NULL, ag_mul_scalar, -0.75f},
        {"pow", NULL, ag_pow_scalar, 2},           {"pow", NULL, ag_pow_scalar, 3},
        {"neg", ag_neg, NULL, 0},                  {"exp", ag_exp, NULL, 0},
        {"gelu", ag_gelu, NULL, 0},                {"tanh", ag_tanh, NULL, 0},
        {"sigmoid", ag_sigmoid, NULL, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        gradcheck_unary(&cases[k], rand_leaf(100 + k, 1.0f, AG_SHAPE(2, 3, 4)));
        gradcheck_unary(&cases[k], rand_leaf(200 + k, 1.0f, AG_SHAPE(10, 20)));
    }
}

/* ops defined for x > 0: inputs uniform in [0.5, 3) */
static void test_unary_gradcheck_positive_domain(void **state)
{
    (void)state;
    const unary_case cases[] = {
        {"log", ag_log, NULL, 0},
        {"sqrt", ag_sqrt, NULL, 0},
        {"rsqrt", ag_rsqrt, NULL, 0},
        {"pow", NULL, ag_pow_scalar, 0.5f},
        {"pow", NULL, ag_pow_scalar, -1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        for (int big = 0; big < 2; big++) {
            ag_tensor *x = big ? ag_rand(NULL, 300 + k, 0.5f, 3.0f, AG_SHAPE(10, 20))
                               : ag_rand(NULL, 400 + k, 0.5f, 3.0f, AG_SHAPE(3, 1, 5));
            ag_set_requires_grad(x, true);
            gradcheck_unary(&cases[k], x);
        }
    }
}

/* relu (kink at 0) and 1/x (pole at 0) on both signs, every input >= 0.5 from 0 */
static void test_unary_gradcheck_away_from_zero(void **state)
{
    (void)state;
    const unary_case cases[] = {
        {"relu", ag_relu, NULL, 0},
        {"pow", NULL, ag_pow_scalar, -1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ag_tensor *x = rand_leaf(500 + k, 1.0f, AG_SHAPE(4, 6));
        push_from_zero(x, 0.5f);
        gradcheck_unary(&cases[k], x);
        x = rand_leaf(600 + k, 1.0f, AG_SHAPE(10, 20));
        push_from_zero(x, 0.5f);
        gradcheck_unary(&cases[k], x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_same_shape),
        cmocka_unit_test(test_scalar_operand_either_side),
        cmocka_unit_test(test_add_3d_against_2d),
        cmocka_unit_test(test_mul_size1_dims_on_both_sides),
        cmocka_unit_test(test_add_row_bias),
        cmocka_unit_test(test_sub_column),
        cmocka_unit_test(test_div_row),
        cmocka_unit_test(test_sub_lower_rank_left),
        cmocka_unit_test(test_large_bias_add_and_grad),
        cmocka_unit_test(test_broadcast_against_empty),
        cmocka_unit_test(test_add_grad_counts_broadcast_rows),
        cmocka_unit_test(test_add_grad_counts_3d_against_2d),
        cmocka_unit_test(test_sub_grad_negates_and_counts),
        cmocka_unit_test(test_mul_grad_with_scalar_operand),
        cmocka_unit_test(test_div_grad_values),
        cmocka_unit_test(test_mul_outer_grad_with_seed),
        cmocka_unit_test(test_same_tensor_both_operands),
        cmocka_unit_test(test_same_tensor_broadcast_against_itself),
        cmocka_unit_test(test_binary_gradcheck_same_shape),
        cmocka_unit_test(test_binary_gradcheck_scalar_operand),
        cmocka_unit_test(test_binary_gradcheck_3d_against_2d),
        cmocka_unit_test(test_binary_gradcheck_size1_dims_both_sides),
        cmocka_unit_test(test_binary_gradcheck_bias_and_batch),
        cmocka_unit_test(test_binary_gradcheck_large_by_directions),
        cmocka_unit_test(test_add_scalar_values),
        cmocka_unit_test(test_mul_scalar_values),
        cmocka_unit_test(test_pow_scalar_square),
        cmocka_unit_test(test_pow_scalar_cube),
        cmocka_unit_test(test_pow_scalar_half),
        cmocka_unit_test(test_pow_scalar_reciprocal),
        cmocka_unit_test(test_neg_values),
        cmocka_unit_test(test_exp_values),
        cmocka_unit_test(test_log_values),
        cmocka_unit_test(test_sqrt_values),
        cmocka_unit_test(test_rsqrt_values),
        cmocka_unit_test(test_relu_values),
        cmocka_unit_test(test_gelu_values),
        cmocka_unit_test(test_tanh_values),
        cmocka_unit_test(test_sigmoid_values),
        cmocka_unit_test(test_saturation_is_finite),
        cmocka_unit_test(test_unary_gradcheck_smooth),
        cmocka_unit_test(test_unary_gradcheck_positive_domain),
        cmocka_unit_test(test_unary_gradcheck_away_from_zero),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
