/* test_reduce.c - reductions: ag_sum, ag_mean, ag_max over one axis and
 * ag_sum_all, ag_mean_all.
 *
 * Forward values over the first, middle and last axis of a 3-D tensor, with
 * negative axes, keepdim on and off, a size-1 axis and a 1-D input reduced to
 * 0-dim, all worked out by hand; shapes big enough for the parallel kernels;
 * backward values directly (a sum's grad is the seed broadcast back, a mean's
 * is divided by the count, a max's goes only to the first maximum, ties
 * included); and gradchecks over every axis, both keepdims, batch and
 * non-square shapes, with max inputs spaced far apart so no step makes a tie. */
#include "test_util.h"

/* (2,3,4) with x[i,j,k] = 12 i + 4 j + k, i.e. 0..23 in order */
static ag_tensor *iota_234(ag_ctx *c)
{
    ag_tensor *x = ag_empty(c, AG_SHAPE(2, 3, 4));
    for (int i = 0; i < 24; i++)
        x->data[i] = (float)i;
    return x;
}

/* (2,3,4) holding 0..23 shuffled, x[n] = 7 n mod 24, so maxima sit at
 * different positions along every axis:
 *   i=0: [ 0  7 14 21] [ 4 11 18  1] [ 8 15 22  5]
 *   i=1: [12 19  2  9] [16 23  6 13] [20  3 10 17] */
static ag_tensor *shuffled_234(ag_ctx *c)
{
    ag_tensor *x = ag_empty(c, AG_SHAPE(2, 3, 4));
    for (int n = 0; n < 24; n++)
        x->data[n] = (float)(7 * n % 24);
    return x;
}

/* ================================================================ sum */

/* axis 0: x[0,j,k] + x[1,j,k] = 2 (4 j + k) + 12 */
static void test_sum_first_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota_234(c);
    const float *want = FLOATS(12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34);
    ag_tensor *y = ag_sum(c, x, 0, false);
    assert_shape(y, 3, 4);
    assert_close(y->data, want, 12, 0);
    y = ag_sum(c, x, -3, true);
    assert_shape(y, 1, 3, 4);
    assert_close(y->data, want, 12, 0);
    ag_ctx_free(c);
}

/* axis 1: sum_j (12 i + 4 j + k) = 36 i + 3 k + 12 */
static void test_sum_middle_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota_234(c);
    const float *want = FLOATS(12, 15, 18, 21, 48, 51, 54, 57);
    ag_tensor *y = ag_sum(c, x, 1, false);
    assert_shape(y, 2, 4);
    assert_close(y->data, want, 8, 0);
    y = ag_sum(c, x, -2, true);
    assert_shape(y, 2, 1, 4);
    assert_close(y->data, want, 8, 0);
    ag_ctx_free(c);
}

/* axis 2: sum_k (12 i + 4 j + k) = 48 i + 16 j + 6 */
static void test_sum_last_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota_234(c);
    const float *want = FLOATS(6, 22, 38, 54, 70, 86);
    ag_tensor *y = ag_sum(c, x, 2, false);
    assert_shape(y, 2, 3);
    assert_close(y->data, want, 6, 0);
    y = ag_sum(c, x, -1, true);
    assert_shape(y, 2, 3, 1);
    assert_close(y->data, want, 6, 0);
    ag_ctx_free(c);
}

/* summing a size-1 axis only drops (or keeps) it */
static void test_sum_size1_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float *d = FLOATS(1, -2, 3, 4, 5, -6);
    ag_tensor *x = ag_from_data(c, d, AG_SHAPE(2, 1, 3));
    ag_tensor *y = ag_sum(c, x, 1, false);
    assert_shape(y, 2, 3);
    assert_close(y->data, d, 6, 0);
    y = ag_sum(c, x, -2, true);
    assert_shape(y, 2, 1, 3);
    assert_close(y->data, d, 6, 0);
    ag_ctx_free(c);
}

/* a 1-D tensor summed over its only axis: 0-dim, or (1) with keepdim */
static void test_sum_1d_to_scalar(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(1.5f, -2, 4, 0.25f), AG_SHAPE(4));
    ag_tensor *y = ag_sum(c, x, 0, false);
    assert_scalar_shape(y);
    assert_true(ag_item(y) == 3.75f);
    y = ag_sum(c, x, -1, true);
    assert_shape(y, 1);
    assert_true(y->data[0] == 3.75f);
    ag_ctx_free(c);
}

/* ================================================================ mean */

static void test_mean_each_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota_234(c);
    /* the sums above divided by 2, 3 and 4 */
    ag_tensor *y = ag_mean(c, x, 0, false);
    assert_shape(y, 3, 4);
    assert_close(y->data, FLOATS(6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17), 12, 1e-6);
    y = ag_mean(c, x, -2, true);
    assert_shape(y, 2, 1, 4);
    assert_close(y->data, FLOATS(4, 5, 6, 7, 16, 17, 18, 19), 8, 1e-6);
    y = ag_mean(c, x, 2, false);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(1.5f, 5.5f, 9.5f, 13.5f, 17.5f, 21.5f), 6, 1e-6);
    y = ag_mean(c, x, -1, true);
    assert_shape(y, 2, 3, 1);
    assert_close(y->data, FLOATS(1.5f, 5.5f, 9.5f, 13.5f, 17.5f, 21.5f), 6, 1e-6);
    ag_ctx_free(c);
}

static void test_mean_size1_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float *d = FLOATS(1, -2, 3, 4, 5, -6);
    ag_tensor *y = ag_mean(c, ag_from_data(c, d, AG_SHAPE(2, 3, 1)), -1, false);
    assert_shape(y, 2, 3);
    assert_close(y->data, d, 6, 0);
    ag_ctx_free(c);
}

/* ================================================================ max */

static void test_max_first_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = shuffled_234(c);
    const float *want = FLOATS(12, 19, 14, 21, 16, 23, 18, 13, 20, 15, 22, 17);
    ag_tensor *y = ag_max(c, x, 0, false);
    assert_shape(y, 3, 4);
    assert_close(y->data, want, 12, 0);
    y = ag_max(c, x, -3, true);
    assert_shape(y, 1, 3, 4);
    assert_close(y->data, want, 12, 0);
    ag_ctx_free(c);
}

static void test_max_middle_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = shuffled_234(c);
    const float *want = FLOATS(8, 15, 22, 21, 20, 23, 10, 17);
    ag_tensor *y = ag_max(c, x, 1, false);
    assert_shape(y, 2, 4);
    assert_close(y->data, want, 8, 0);
    y = ag_max(c, x, -2, true);
    assert_shape(y, 2, 1, 4);
    assert_close(y->data, want, 8, 0);
    ag_ctx_free(c);
}

static void test_max_last_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = shuffled_234(c);
    const float *want = FLOATS(21, 18, 22, 19, 23, 20);
    ag_tensor *y = ag_max(c, x, 2, false);
    assert_shape(y, 2, 3);
    assert_close(y->data, want, 6, 0);
    y = ag_max(c, x, -1, true);
    assert_shape(y, 2, 3, 1);
    assert_close(y->data, want, 6, 0);
    ag_ctx_free(c);
}

/* all negative: the max is -0.5, not a 0 the loop might have started from */
static void test_max_all_negative(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(-3, -0.5f, -2, -7, -9, -8), AG_SHAPE(2, 3));
    ag_tensor *y = ag_max(c, x, 1, false);
    assert_shape(y, 2);
    assert_close(y->data, FLOATS(-0.5f, -7), 2, 0);
    ag_ctx_free(c);
}

/* the max of each 1-element group is that element, and gets its whole grad */
static void test_max_size1_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = leaf(FLOATS(1, -2, 3, 4, 5, -6), AG_SHAPE(2, 1, 3));
    ag_tensor *y = ag_max(c, x, 1, true);
    assert_shape(y, 2, 1, 3);
    assert_close(y->data, FLOATS(1, -2, 3, 4, 5, -6), 6, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(x->grad, FLOATS(1, 1, 1, 1, 1, 1), 6, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* max over axis 1 of the shuffled tensor with seed g = [[1,2,3,4],[5,6,7,8]]:
 * each g[i,k] lands on the j holding the max of column (i, k) and nowhere else
 * (i=0: j = 2, 2, 2, 0; i=1: j = 2, 1, 2, 2) */
static void test_max_grad_goes_to_argmax(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = shuffled_234(NULL);
    ag_set_requires_grad(x, true);
    ag_tensor *g = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6, 7, 8), AG_SHAPE(2, 4));
    assert_true(ag_backward_with(c, ag_max(c, x, 1, false), g));
    const float want[24] = {
        0, 0, 0, 4, /**/ 0, 0, 0, 0, /**/ 1, 2, 3, 0, /* i = 0 */
        0, 0, 0, 0, /**/ 0, 6, 0, 0, /**/ 5, 0, 7, 8, /* i = 1 */
    };
    assert_close(x->grad, want, 24, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ties: the grad goes to the first maximum only, along a contiguous axis and
 * along a strided one */
static void test_max_tie_grad_to_first(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *v = leaf(FLOATS(1, 4, 4, 2), AG_SHAPE(4));
    ag_tensor *y = ag_max(c, v, 0, false);
    assert_scalar_shape(y);
    assert_true(ag_item(y) == 4.0f);
    assert_true(ag_backward(c, y));
    assert_close(v->grad, FLOATS(0, 1, 0, 0), 4, 0);

    /* columns of [[5,1],[5,3],[2,3]]: maxima 5 (rows 0 and 1), 3 (rows 1 and 2) */
    ag_tensor *m = leaf(FLOATS(5, 1, 5, 3, 2, 3), AG_SHAPE(3, 2));
    y = ag_max(c, m, 0, false);
    assert_close(y->data, FLOATS(5, 3), 2, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_close(m->grad, FLOATS(1, 0, 0, 1, 0, 0), 6, 0);

    /* all equal: the first of each row */
    ag_tensor *e = leaf(FLOATS(2, 2, 2, -1, -1, -1), AG_SHAPE(2, 3));
    assert_true(ag_backward(c, ag_sum_all(c, ag_max(c, e, -1, false))));
    assert_close(e->grad, FLOATS(1, 0, 0, 1, 0, 0), 6, 0);
    ag_tensor_free(v);
    ag_tensor_free(m);
    ag_tensor_free(e);
    ag_ctx_free(c);
}

/* ================================================================ sum_all, mean_all */

/* 0 + 1 + ... + 23 = 276, / 24 = 11.5 */
static void test_sum_all_mean_all_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota_234(c);
    ag_tensor *s = ag_sum_all(c, x), *m = ag_mean_all(c, x);
    assert_scalar_shape(s);
    assert_scalar_shape(m);
    assert_true(ag_item(s) == 276.0f);
    assert_close(m->data, FLOATS(11.5f), 1, 1e-6);
    /* of a 0-dim tensor: itself */
    assert_true(ag_item(ag_sum_all(c, ag_scalar(c, -2.5f))) == -2.5f);
    assert_true(ag_item(ag_mean_all(c, ag_scalar(c, -2.5f))) == -2.5f);
    ag_ctx_free(c);
}

/* ================================================================ backward values */

/* sum over axis 1 of (2,3,4) seeded with g (2,4): x.grad[i,j,k] = g[i,k] for each j */
static void test_sum_grad_broadcasts_seed_back(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(1, 1.0f, AG_SHAPE(2, 3, 4));
    ag_tensor *g = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6, 7, 8), AG_SHAPE(2, 4));
    assert_true(ag_backward_with(c, ag_sum(c, x, 1, false), g));
    const float want[24] = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4,
                            5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8};
    assert_close(x->grad, want, 24, 0);

    /* keepdim changes nothing but the shape of the seed */
    ag_zero_grad(x);
    ag_tensor *gk = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6, 7, 8), AG_SHAPE(2, 1, 4));
    assert_true(ag_backward_with(c, ag_sum(c, x, -2, true), gk));
    assert_close(x->grad, want, 24, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* mean over axis 0 of (2,3,4) seeded with g (3,4): x.grad[i,j,k] = g[j,k] / 2 */
static void test_mean_grad_divides_by_count(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(2, 1.0f, AG_SHAPE(2, 3, 4));
    ag_tensor *g = ag_empty(c, AG_SHAPE(3, 4));
    for (int i = 0; i < 12; i++)
        g->data[i] = (float)(i + 1);
    assert_true(ag_backward_with(c, ag_mean(c, x, 0, false), g));
    for (int i = 0; i < 24; i++) {
        float want = (float)(i % 12 + 1) / 2.0f;
        assert_close(&x->grad[i], &want, 1, 0);
    }
    /* mean over the last axis (4 elements) under sum_all: 1/4 each */
    ag_zero_grad(x);
    assert_true(ag_backward(c, ag_sum_all(c, ag_mean(c, x, -1, false))));
    for (int i = 0; i < 24; i++)
        assert_true(x->grad[i] == 0.25f);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* d sum_all / dx = 1 and d mean_all / dx = 1/24 for every element */
static void test_sum_all_mean_all_grads(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(3, 1.0f, AG_SHAPE(2, 3, 4));
    assert_true(ag_backward(c, ag_sum_all(c, x)));
    for (int i = 0; i < 24; i++)
        assert_true(x->grad[i] == 1.0f);
    ag_zero_grad(x);
    assert_true(ag_backward(c, ag_mean_all(c, x)));
    float want = 1.0f / 24.0f;
    for (int i = 0; i < 24; i++)
        assert_close(&x->grad[i], &want, 1, 1e-7);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ large inputs */

/* Sizes past AG_PAR_MIN, so the parallel kernels run; integer values keep
 * every sum exact in float. */
static void test_large_reductions(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    /* (300,120), x[r,k] = k: sum over rows = 300 k (one (outer, n, inner) with inner > 1) */
    ag_tensor *a = ag_empty(NULL, AG_SHAPE(300, 120));
    for (int r = 0; r < 300; r++)
        for (int k = 0; k < 120; k++)
            a->data[r * 120 + k] = (float)k;
    ag_set_requires_grad(a, true);
    ag_tensor *y = ag_sum(c, a, 0, false);
    assert_shape(y, 120);
    for (int k = 0; k < 120; k++)
        assert_true(y->data[k] == 300.0f * (float)k);
    /* mean over rows seeded with ones: every element gets 1/300 */
    assert_true(ag_backward(c, ag_sum_all(c, ag_mean(c, a, 0, false))));
    float want = 1.0f / 300.0f;
    for (int i = 0; i < 300 * 120; i++)
        assert_close(&a->grad[i], &want, 1, 1e-6);

    /* (3,20000), x[r,k] = r + 1: rows sum to 20000 (r + 1) (inner == 1) */
    ag_tensor *b = ag_empty(c, AG_SHAPE(3, 20000));
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 20000; k++)
            b->data[r * 20000 + k] = (float)(r + 1);
    y = ag_sum(c, b, -1, true);
    assert_shape(y, 3, 1);
    assert_close(y->data, FLOATS(20000, 40000, 60000), 3, 0);

    /* one long row of 40000 halves: sum 20000, mean 0.5 */
    ag_tensor *h = ag_full(c, 0.5f, AG_SHAPE(40000));
    assert_true(ag_item(ag_sum_all(c, h)) == 20000.0f);
    assert_close(ag_mean_all(c, h)->data, FLOATS(0.5f), 1, 1e-6);
    assert_true(ag_item(ag_sum(c, h, 0, false)) == 20000.0f);

    /* max of (2,20000) with the peak planted at k = 12345 and k = 7 */
    ag_tensor *m = ag_zeros(NULL, AG_SHAPE(2, 20000));
    m->data[12345] = 3.0f;
    m->data[20000 + 7] = 2.0f;
    ag_set_requires_grad(m, true);
    y = ag_max(c, m, 1, false);
    assert_close(y->data, FLOATS(3, 2), 2, 0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    for (int i = 0; i < 40000; i++)
        assert_true(m->grad[i] == (i == 12345 || i == 20007 ? 1.0f : 0.0f));
    ag_tensor_free(a);
    ag_tensor_free(m);
    ag_ctx_free(c);
}

/* ================================================================ gradchecks */

typedef struct {
    const char *name;
    ag_tensor *(*fn)(ag_ctx *, ag_tensor *, int, bool);
    int axis;
    bool keepdim;
} reduce_case;

static ag_tensor *f_reduce(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    const reduce_case *r = user;
    return weighted_sum(c, r->fn(c, in[0], r->axis, r->keepdim));
}

/* A leaf for max over axis: with m the index along axis and g the index of
 * its group (the other coordinates), x = 0.1 ((m + 7 g) mod n) - 0.05 n. Each
 * group is a rotation of 0..n-1 spaced 0.1 apart, so no gradcheck step of 1e-2
 * changes which element is the max, and the max sits at a different m from
 * group to group. */
static ag_tensor *spread_leaf(int ndim, const int64_t *shape, int axis)
{
    ag_tensor *t = ag_empty(NULL, ndim, shape);
    if (axis < 0)
        axis += ndim;
    int64_t outer = 1, n = shape[axis], inner = 1;
    for (int d = 0; d < axis; d++)
        outer *= shape[d];
    for (int d = axis + 1; d < ndim; d++)
        inner *= shape[d];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t m = 0; m < n; m++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t g = o * inner + i, rot = (m + 7 * g) % n;
                t->data[(o * n + m) * inner + i] = 0.1f * (float)rot - 0.05f * (float)n;
            }
    ag_set_requires_grad(t, true);
    return t;
}

/* sum, mean and max of x over axis, keepdim both ways */
static void gradcheck_reduce(int ndim, const int64_t *shape, int axis)
{
    const reduce_case ops[] = {{"sum", ag_sum, axis, false},   {"sum", ag_sum, axis, true},
                               {"mean", ag_mean, axis, false}, {"mean", ag_mean, axis, true},
                               {"max", ag_max, axis, false},   {"max", ag_max, axis, true}};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        ag_tensor *x = ops[k].fn == ag_max ? spread_leaf(ndim, shape, axis)
                                           : rand_leaf(40 + k, 1.0f, ndim, shape);
        ag_gradcheck_opts o = ag_gradcheck_defaults();
        o.quiet = true;
        if (!ag_gradcheck(f_reduce, &x, 1, (void *)&ops[k], &o)) {
            char s[64];
            fail_msg("gradcheck of %s(%s, axis %d, keepdim %d): %s", ops[k].name,
                     ag_shape_str(x, s, sizeof s), axis, ops[k].keepdim, o.report);
        }
        ag_tensor_free(x);
    }
}

static void test_gradcheck_every_axis_3d(void **state)
{
    (void)state;
    for (int axis = -3; axis < 3; axis++)
        gradcheck_reduce(AG_SHAPE(2, 3, 4), axis);
}

static void test_gradcheck_size1_axis(void **state)
{
    (void)state;
    gradcheck_reduce(AG_SHAPE(3, 1, 5), 1);
    gradcheck_reduce(AG_SHAPE(3, 5, 1), -1);
    gradcheck_reduce(AG_SHAPE(1, 5), 0);
}

static void test_gradcheck_batch_and_1d(void **state)
{
    (void)state;
    gradcheck_reduce(AG_SHAPE(2, 3, 1, 4), 2);
    gradcheck_reduce(AG_SHAPE(2, 3, 1, 4), -4);
    gradcheck_reduce(AG_SHAPE(2, 3, 1, 4), 3);
    gradcheck_reduce(AG_SHAPE(7), 0);
    gradcheck_reduce(AG_SHAPE(7), -1);
}

/* more than 64 elements: by directions */
static void test_gradcheck_large_by_directions(void **state)
{
    (void)state;
    gradcheck_reduce(AG_SHAPE(8, 10, 12), 1);
    gradcheck_reduce(AG_SHAPE(8, 10, 12), -1);
}

static ag_tensor *f_sum_all(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_sum_all(c, ag_mul(c, in[0], in[0])));
}

static ag_tensor *f_mean_all(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_mean_all(c, ag_mul(c, in[0], in[0])));
}

/* through x*x so the grad depends on x (d/dx = 2x w, 2x w / n) */
static void test_gradcheck_sum_all_mean_all(void **state)
{
    (void)state;
    ag_tensor *xs[3] = {rand_leaf(5, 1.0f, AG_SHAPE(2, 3, 4)), rand_leaf(6, 1.0f, AG_SHAPE(5)),
                        rand_leaf(7, 1.0f, AG_SHAPE(30, 7))};
    for (int k = 0; k < 3; k++) {
        assert_gradcheck(f_sum_all, &xs[k], 1, NULL);
        assert_gradcheck(f_mean_all, &xs[k], 1, NULL);
    }
    free_all(xs, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_first_axis),
        cmocka_unit_test(test_sum_middle_axis),
        cmocka_unit_test(test_sum_last_axis),
        cmocka_unit_test(test_sum_size1_axis),
        cmocka_unit_test(test_sum_1d_to_scalar),
        cmocka_unit_test(test_mean_each_axis),
        cmocka_unit_test(test_mean_size1_axis),
        cmocka_unit_test(test_max_first_axis),
        cmocka_unit_test(test_max_middle_axis),
        cmocka_unit_test(test_max_last_axis),
        cmocka_unit_test(test_max_all_negative),
        cmocka_unit_test(test_max_size1_axis),
        cmocka_unit_test(test_max_grad_goes_to_argmax),
        cmocka_unit_test(test_max_tie_grad_to_first),
        cmocka_unit_test(test_sum_all_mean_all_values),
        cmocka_unit_test(test_sum_grad_broadcasts_seed_back),
        cmocka_unit_test(test_mean_grad_divides_by_count),
        cmocka_unit_test(test_sum_all_mean_all_grads),
        cmocka_unit_test(test_large_reductions),
        cmocka_unit_test(test_gradcheck_every_axis_3d),
        cmocka_unit_test(test_gradcheck_size1_axis),
        cmocka_unit_test(test_gradcheck_batch_and_1d),
        cmocka_unit_test(test_gradcheck_large_by_directions),
        cmocka_unit_test(test_gradcheck_sum_all_mean_all),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
