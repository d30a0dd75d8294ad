/* test_shape.c - shape ops: ag_reshape (with -1 inference; a view sharing
 * its input's data), ag_transpose (negative axes, 3-D and 4-D), ag_permute
 * (3-D and 4-D), ag_concat (first, middle, last and negative axis, three
 * inputs, an empty piece, one input used twice), ag_slice (negative start and
 * end, empty slices) and ag_split (including an empty piece).
 *
 * Forward values are worked out by hand or by index arithmetic on inputs
 * whose values spell their own index; backward values are checked directly
 * with non-uniform seeds (each grad element must come back to exactly the
 * place it came from), and every op is gradchecked through weighted_sum. */
#include "test_util.h"

/* x[i] = i over the given shape, in ctx (or persistent with ctx NULL) */
static ag_tensor *iota(ag_ctx *c, int ndim, const int64_t *shape)
{
    ag_tensor *x = ag_empty(c, ndim, shape);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = (float)i;
    return x;
}

/* seed g[i] = i + 1 shaped like t, for ag_backward_with */
static ag_tensor *seed_like(ag_ctx *c, const ag_tensor *t)
{
    ag_tensor *g = ag_empty(c, t->ndim, t->shape);
    for (int64_t i = 0; i < g->numel; i++)
        g->data[i] = (float)(i + 1);
    return g;
}

/* ================================================================ reshape */

static void test_reshape_keeps_order(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, AG_SHAPE(2, 3));
    ag_tensor *y = ag_reshape(c, x, AG_SHAPE(3, 2));
    assert_shape(y, 3, 2);
    assert_close(y->data, FLOATS(0, 1, 2, 3, 4, 5), 6, 0);
    y = ag_reshape(c, x, AG_SHAPE(6));
    assert_shape(y, 6);
    y = ag_reshape(c, x, AG_SHAPE(1, 2, 1, 3));
    assert_shape(y, 1, 2, 1, 3);
    assert_close(y->data, FLOATS(0, 1, 2, 3, 4, 5), 6, 0);
    ag_ctx_free(c);
}

/* the one -1 takes whatever size makes the element count match */
static void test_reshape_infers_minus_one(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, AG_SHAPE(2, 3, 4));
    assert_shape(ag_reshape(c, x, AG_SHAPE(-1, 4)), 6, 4);
    assert_shape(ag_reshape(c, x, AG_SHAPE(4, -1)), 4, 6);
    assert_shape(ag_reshape(c, x, AG_SHAPE(2, -1, 2, 3)), 2, 2, 2, 3);
    assert_shape(ag_reshape(c, x, AG_SHAPE(-1)), 24);
    assert_shape(ag_reshape(c, x, AG_SHAPE(24, -1)), 24, 1);
    ag_ctx_free(c);
}

/* one element to 0-dim and back */
static void test_reshape_to_scalar(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(7.5f), AG_SHAPE(1, 1));
    ag_tensor *s = ag_reshape(c, x, 0, NULL);
    assert_scalar_shape(s);
    assert_true(ag_item(s) == 7.5f);
    assert_shape(ag_reshape(c, s, AG_SHAPE(1, 1, 1)), 1, 1, 1);
    ag_ctx_free(c);
}

/* a view: the same floats, so a write through either side shows in the other */
static void test_reshape_is_a_view(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, AG_SHAPE(2, 3));
    ag_tensor *y = ag_reshape(c, x, AG_SHAPE(-1, 2));
    assert_ptr_equal(y->data, x->data);
    x->data[4] = 42;
    assert_true(y->data[4] == 42.0f); /* y[2, 0] */
    y->data[1] = -1;
    assert_true(x->data[1] == -1.0f);
    ag_ctx_free(c);
}

/* the grad comes back in the same element order: x.grad = g */
static void test_reshape_grad_passes_through(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = leaf(FLOATS(0, 1, 2, 3, 4, 5), AG_SHAPE(2, 3));
    ag_tensor *y = ag_reshape(c, x, AG_SHAPE(3, -1));
    assert_true(ag_backward_with(c, y, seed_like(c, y)));
    assert_close(x->grad, FLOATS(1, 2, 3, 4, 5, 6), 6, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ transpose */

/* [[0,1,2],[3,4,5]]^T = [[0,3],[1,4],[2,5]], whichever way the axes are named */
static void test_transpose_2d(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, AG_SHAPE(2, 3));
    ag_tensor *ys[3] = {ag_transpose(c, x, 0, 1), ag_transpose(c, x, 1, 0),
                        ag_transpose(c, x, -1, -2)};
    for (int k = 0; k < 3; k++) {
        assert_shape(ys[k], 3, 2);
        assert_close(ys[k]->data, FLOATS(0, 3, 1, 4, 2, 5), 6, 0);
    }
    ag_ctx_free(c);
}

/* (2,3,4) with x[i,j,k] = 12 i + 4 j + k, axes 0 and 2 (named 0, -1) swapped:
 * y[k,j,i] = x[i,j,k] */
static void test_transpose_3d_outer_axes(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_transpose(c, iota(c, AG_SHAPE(2, 3, 4)), 0, -1);
    assert_shape(y, 4, 3, 2);
    const float want[24] = {0, 12, 4, 16, 8, 20,  /* k = 0 */
                            1, 13, 5, 17, 9, 21,  /* k = 1 */
                            2, 14, 6, 18, 10, 22, /* k = 2 */
                            3, 15, 7, 19, 11, 23};
    assert_close(y->data, want, 24, 0);
    ag_ctx_free(c);
}

/* 4-D (2,3,4,5), axes 1 and -1: y[a,d,c,b] = x[a,b,c,d] = 60a + 20b + 5c + d */
static void test_transpose_4d(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_transpose(c, iota(c, AG_SHAPE(2, 3, 4, 5)), 1, -1);
    assert_shape(y, 2, 5, 4, 3);
    for (int a = 0; a < 2; a++)
        for (int d = 0; d < 5; d++)
            for (int cc = 0; cc < 4; cc++)
                for (int b = 0; b < 3; b++) {
                    float want = (float)(60 * a + 20 * b + 5 * cc + d);
                    assert_close(&y->data[((a * 5 + d) * 4 + cc) * 3 + b], &want, 1, 0);
                }
    ag_ctx_free(c);
}

/* an axis with itself: a copy */
static void test_transpose_same_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_transpose(c, iota(c, AG_SHAPE(2, 3)), 1, -1);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(0, 1, 2, 3, 4, 5), 6, 0);
    ag_ctx_free(c);
}

/* seed g (3,2) = [[1,2],[3,4],[5,6]] comes back transposed: [[1,3,5],[2,4,6]] */
static void test_transpose_grad_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = leaf(FLOATS(0, 1, 2, 3, 4, 5), AG_SHAPE(2, 3));
    ag_tensor *y = ag_transpose(c, x, -2, -1);
    assert_true(ag_backward_with(c, y, seed_like(c, y)));
    assert_close(x->grad, FLOATS(1, 3, 5, 2, 4, 6), 6, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ permute */

/* (2,3,2) with x[i,j,k] = 100 i + 10 j + k, perm (2,0,1): y[k,i,j] = x[i,j,k] */
static void test_permute_3d_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121),
                                AG_SHAPE(2, 3, 2));
    ag_tensor *y = ag_permute(c, x, (const int[]){2, 0, 1});
    assert_shape(y, 2, 2, 3);
    assert_close(y->data, FLOATS(0, 10, 20, 100, 110, 120, 1, 11, 21, 101, 111, 121), 12, 0);
    ag_ctx_free(c);
}

/* (2,3,4) iota, perm (1,2,0): y[j,k,i] = 12 i + 4 j + k; the identity perm copies */
static void test_permute_3d_rotation(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, AG_SHAPE(2, 3, 4));
    ag_tensor *y = ag_permute(c, x, (const int[]){1, 2, 0});
    assert_shape(y, 3, 4, 2);
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 4; k++)
            for (int i = 0; i < 2; i++) {
                float want = (float)(12 * i + 4 * j + k);
                assert_close(&y->data[(j * 4 + k) * 2 + i], &want, 1, 0);
            }
    y = ag_permute(c, x, (const int[]){0, 1, 2});
    assert_shape(y, 2, 3, 4);
    assert_close(y->data, x->data, 24, 0);
    ag_ctx_free(c);
}

/* 4-D (2,3,4,5) iota, perm (3,1,0,2): y[d,b,a,c] = 60a + 20b + 5c + d */
static void test_permute_4d(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_permute(c, iota(c, AG_SHAPE(2, 3, 4, 5)), (const int[]){3, 1, 0, 2});
    assert_shape(y, 5, 3, 2, 4);
    for (int d = 0; d < 5; d++)
        for (int b = 0; b < 3; b++)
            for (int a = 0; a < 2; a++)
                for (int cc = 0; cc < 4; cc++) {
                    float want = (float)(60 * a + 20 * b + 5 * cc + d);
                    assert_close(&y->data[((d * 3 + b) * 2 + a) * 4 + cc], &want, 1, 0);
                }
    ag_ctx_free(c);
}

/* seed through perm (2,0,1) of (2,3,4): x.grad[i,j,k] = g[k,i,j] = (k*6 + i*3 + j) + 1 */
static void test_permute_grad_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(3, 1.0f, AG_SHAPE(2, 3, 4));
    ag_tensor *y = ag_permute(c, x, (const int[]){2, 0, 1});
    assert_shape(y, 4, 2, 3);
    assert_true(ag_backward_with(c, y, seed_like(c, y)));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) {
                float want = (float)(k * 6 + i * 3 + j + 1);
                assert_close(&x->grad[(i * 3 + j) * 4 + k], &want, 1, 0);
            }
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* x reached three ways, sum(x^T) + 2 sum(permute(x)) + 3 sum(x): the
 * permute backwards add to the grad already there, 1 + 2 + 3 = 6 */
static void test_permute_grad_accumulates(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(6, 1.0f, AG_SHAPE(2, 3));
    ag_tensor *a = ag_sum_all(c, ag_transpose(c, x, 0, 1));
    ag_tensor *b = ag_mul_scalar(c, ag_sum_all(c, ag_permute(c, x, (const int[]){1, 0})), 2);
    ag_tensor *d = ag_mul_scalar(c, ag_sum_all(c, x), 3);
    assert_true(ag_backward(c, ag_add(c, ag_add(c, a, b), d)));
    assert_close(x->grad, FLOATS(6, 6, 6, 6, 6, 6), 6, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ concat */

/* (1,3) and (2,3) on axis 0: rows stacked */
static void test_concat_first_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *ts[2] = {ag_from_data(c, FLOATS(1, 2, 3), AG_SHAPE(1, 3)),
                        ag_from_data(c, FLOATS(4, 5, 6, 7, 8, 9), AG_SHAPE(2, 3))};
    ag_tensor *y = ag_concat(c, ts, 2, 0);
    assert_shape(y, 3, 3);
    assert_close(y->data, FLOATS(1, 2, 3, 4, 5, 6, 7, 8, 9), 9, 0);
    ag_ctx_free(c);
}

/* (2,1,2) and (2,2,2) on axis 1 (and -2): for each i, a's row then b's two rows */
static void test_concat_middle_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *ts[2] = {ag_from_data(c, FLOATS(1, 2, 3, 4), AG_SHAPE(2, 1, 2)),
                        ag_from_data(c, FLOATS(10, 20, 30, 40, 50, 60, 70, 80), AG_SHAPE(2, 2, 2))};
    const float *want = FLOATS(1, 2, 10, 20, 30, 40, 3, 4, 50, 60, 70, 80);
    ag_tensor *y = ag_concat(c, ts, 2, 1);
    assert_shape(y, 2, 3, 2);
    assert_close(y->data, want, 12, 0);
    y = ag_concat(c, ts, 2, -2);
    assert_shape(y, 2, 3, 2);
    assert_close(y->data, want, 12, 0);
    ag_ctx_free(c);
}

/* (2,2) and (2,1) on the last axis (1 and -1): a column appended */
static void test_concat_last_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *ts[2] = {ag_from_data(c, FLOATS(1, 2, 3, 4), AG_SHAPE(2, 2)),
                        ag_from_data(c, FLOATS(9, 8), AG_SHAPE(2, 1))};
    ag_tensor *y = ag_concat(c, ts, 2, 1);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(1, 2, 9, 3, 4, 8), 6, 0);
    y = ag_concat(c, ts, 2, -1);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(1, 2, 9, 3, 4, 8), 6, 0);
    ag_ctx_free(c);
}

/* three inputs, (2,1) (2,2) (2,3) on axis 1, and a (2,0) piece that adds nothing */
static void test_concat_three_inputs(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *ts[4] = {ag_from_data(c, FLOATS(1, 2), AG_SHAPE(2, 1)),
                        ag_from_data(c, FLOATS(3, 4, 5, 6), AG_SHAPE(2, 2)),
                        ag_empty(c, AG_SHAPE(2, 0)),
                        ag_from_data(c, FLOATS(7, 8, 9, 10, 11, 12), AG_SHAPE(2, 3))};
    const float *want = FLOATS(1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12);
    ag_tensor *three[3] = {ts[0], ts[1], ts[3]};
    ag_tensor *y = ag_concat(c, three, 3, 1);
    assert_shape(y, 2, 6);
    assert_close(y->data, want, 12, 0);
    y = ag_concat(c, ts, 4, -1);
    assert_shape(y, 2, 6);
    assert_close(y->data, want, 12, 0);
    ag_ctx_free(c);
}

/* seed g (2,6) = [[1..6],[7..12]] split back along axis 1 into (2,1) (2,2) (2,3);
 * b is a constant and gets nothing */
static void test_concat_grad_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = leaf(FLOATS(1, 2), AG_SHAPE(2, 1));
    ag_tensor *b = ag_from_data(c, FLOATS(3, 4, 5, 6), AG_SHAPE(2, 2));
    ag_tensor *d = leaf(FLOATS(7, 8, 9, 10, 11, 12), AG_SHAPE(2, 3));
    ag_tensor *y = ag_concat(c, (ag_tensor *[]){a, b, d}, 3, 1);
    assert_true(ag_backward_with(c, y, seed_like(c, y)));
    assert_close(a->grad, FLOATS(1, 7), 2, 0);
    assert_close(d->grad, FLOATS(4, 5, 6, 10, 11, 12), 6, 0);
    assert_null(b->grad);
    ag_tensor_free(a);
    ag_tensor_free(d);
    ag_ctx_free(c);
}

/* concat(x, x) on axis 0 with seed (1,2,3,4): x.grad = (1+3, 2+4) */
static void test_concat_same_input_twice(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = leaf(FLOATS(1, 2), AG_SHAPE(2));
    ag_tensor *y = ag_concat(c, (ag_tensor *[]){x, x}, 2, 0);
    assert_shape(y, 4);
    assert_close(y->data, FLOATS(1, 2, 1, 2), 4, 0);
    assert_true(ag_backward_with(c, y, seed_like(c, y)));
    assert_close(x->grad, FLOATS(4, 6), 2, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ slice */

/* (3,4) iota: columns 1..2 by positive and by negative bounds */
static void test_slice_last_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, AG_SHAPE(3, 4));
    const float *want = FLOATS(1, 2, 5, 6, 9, 10);
    ag_tensor *ys[3] = {ag_slice(c, x, 1, 1, 3), ag_slice(c, x, -1, -3, -1),
                        ag_slice(c, x, 1, -3, 3)};
    for (int k = 0; k < 3; k++) {
        assert_shape(ys[k], 3, 2);
        assert_close(ys[k]->data, want, 6, 0);
    }
    ag_ctx_free(c);
}

/* rows -2.. of (3,4): rows 1 and 2; the full range is a copy */
static void test_slice_first_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, AG_SHAPE(3, 4));
    ag_tensor *y = ag_slice(c, x, 0, -2, 3);
    assert_shape(y, 2, 4);
    assert_close(y->data, FLOATS(4, 5, 6, 7, 8, 9, 10, 11), 8, 0);
    y = ag_slice(c, x, 0, 0, 3);
    assert_shape(y, 3, 4);
    assert_close(y->data, x->data, 12, 0);
    ag_ctx_free(c);
}

/* (2,3,4) iota, j in [1, 2) of the middle axis: x[i,1,k] = 12 i + 4 + k */
static void test_slice_middle_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_slice(c, iota(c, AG_SHAPE(2, 3, 4)), -2, 1, 2);
    assert_shape(y, 2, 1, 4);
    assert_close(y->data, FLOATS(4, 5, 6, 7, 16, 17, 18, 19), 8, 0);
    ag_ctx_free(c);
}

/* start == end gives a size-0 axis, and its grad is nothing */
static void test_slice_empty(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = leaf(FLOATS(0, 1, 2, 3, 4, 5), AG_SHAPE(2, 3));
    ag_tensor *e = ag_slice(c, x, 1, 2, 2);
    assert_shape(e, 2, 0);
    assert_int_equal(e->numel, 0);
    assert_shape(ag_slice(c, x, 0, -1, -1), 0, 3);
    /* sum_all of nothing is 0; added to sum_all(x) the grad is all ones */
    ag_tensor *s = ag_sum_all(c, e);
    assert_true(ag_item(s) == 0.0f);
    assert_true(ag_backward(c, ag_add(c, s, ag_sum_all(c, x))));
    assert_close(x->grad, FLOATS(1, 1, 1, 1, 1, 1), 6, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* seed (1..6) into columns 1..2 of (3,4): zero everywhere else */
static void test_slice_grad_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(4, 1.0f, AG_SHAPE(3, 4));
    ag_tensor *y = ag_slice(c, x, -1, 1, -1);
    assert_true(ag_backward_with(c, y, seed_like(c, y)));
    assert_close(x->grad, FLOATS(0, 1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0), 12, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ split */

/* (2,5) iota into 2 and 3 columns, and into 2, 0 and 3 */
static void test_split_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, AG_SHAPE(2, 5));
    ag_tensor *p[3];
    assert_true(ag_split(c, x, 1, (const int64_t[]){2, 3}, 2, p));
    assert_shape(p[0], 2, 2);
    assert_shape(p[1], 2, 3);
    assert_close(p[0]->data, FLOATS(0, 1, 5, 6), 4, 0);
    assert_close(p[1]->data, FLOATS(2, 3, 4, 7, 8, 9), 6, 0);

    assert_true(ag_split(c, x, -1, (const int64_t[]){2, 0, 3}, 3, p));
    assert_shape(p[0], 2, 2);
    assert_shape(p[1], 2, 0);
    assert_shape(p[2], 2, 3);
    assert_close(p[2]->data, FLOATS(2, 3, 4, 7, 8, 9), 6, 0);

    /* rows: (1,5) and (1,5) */
    assert_true(ag_split(c, x, 0, (const int64_t[]){1, 1}, 2, p));
    assert_shape(p[1], 1, 5);
    assert_close(p[1]->data, FLOATS(5, 6, 7, 8, 9), 5, 0);
    ag_ctx_free(c);
}

/* loss = sum(p0) + 2 sum(p2): columns 0..1 get 1, columns 2..4 get 2 */
static void test_split_grad_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(5, 1.0f, AG_SHAPE(2, 5));
    ag_tensor *p[3];
    assert_true(ag_split(c, x, 1, (const int64_t[]){2, 0, 3}, 3, p));
    ag_tensor *loss = ag_add(c, ag_sum_all(c, p[0]), ag_mul_scalar(c, ag_sum_all(c, p[2]), 2));
    assert_true(ag_backward(c, loss));
    assert_close(x->grad, FLOATS(1, 1, 2, 2, 2, 1, 1, 2, 2, 2), 10, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ large inputs */

/* Past AG_PAR_MIN elements, so the copies run in parallel: a (300,200)
 * transpose with x[i,j] = 1000 i + j (exact in float), its grad under a seed
 * g[j,i] = y[j,i] (so x.grad == x), and a concat / slice round trip. */
static void test_large_transpose_concat_slice(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    enum { R = 300, C = 200 };
    ag_tensor *x = ag_empty(NULL, AG_SHAPE(R, C));
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++)
            x->data[i * C + j] = (float)(1000 * i + j);
    ag_set_requires_grad(x, true);
    ag_tensor *y = ag_transpose(c, x, 0, 1);
    assert_shape(y, C, R);
    for (int j = 0; j < C; j++)
        for (int i = 0; i < R; i++)
            assert_true(y->data[j * R + i] == (float)(1000 * i + j));
    assert_true(ag_backward_with(c, y, y));
    assert_close(x->grad, x->data, R * C, 0);

    /* x split at column 50 and joined back is x again; grads: 1 from each path */
    ag_zero_grad(x);
    ag_tensor *parts[2] = {ag_slice(c, x, 1, 0, 50), ag_slice(c, x, -1, 50, C)};
    ag_tensor *z = ag_concat(c, parts, 2, -1);
    assert_shape(z, R, C);
    assert_close(z->data, x->data, R * C, 0);
    assert_true(ag_backward(c, ag_sum_all(c, z)));
    for (int i = 0; i < R * C; i++)
        assert_true(x->grad[i] == 1.0f);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ gradchecks */

/* Each shape op applied through a small nonlinearity (tanh), so a grad that
 * lands on the wrong element is caught even where weights happen to match. */

typedef struct {
    int ndim;
    int64_t shape[AG_MAX_DIMS];
} shape_arg;

static ag_tensor *f_reshape(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    const shape_arg *s = user;
    return weighted_sum(c, ag_tanh(c, ag_reshape(c, in[0], s->ndim, s->shape)));
}

static void test_gradcheck_reshape(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(10, 1.0f, AG_SHAPE(2, 3, 4));
    shape_arg s1 = {2, {-1, 6}}, s2 = {4, {2, 1, 12, 1}};
    assert_gradcheck(f_reshape, &x, 1, &s1);
    assert_gradcheck(f_reshape, &x, 1, &s2);
    ag_tensor *big = rand_leaf(11, 1.0f, AG_SHAPE(6, 20));
    shape_arg s3 = {3, {4, -1, 5}};
    assert_gradcheck(f_reshape, &big, 1, &s3);
    ag_tensor_free(x);
    ag_tensor_free(big);
}

static ag_tensor *f_transpose(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    const int *ax = user;
    return weighted_sum(c, ag_tanh(c, ag_transpose(c, in[0], ax[0], ax[1])));
}

static void test_gradcheck_transpose(void **state)
{
    (void)state;
    ag_tensor *x2 = rand_leaf(12, 1.0f, AG_SHAPE(3, 5));
    ag_tensor *x3 = rand_leaf(13, 1.0f, AG_SHAPE(2, 1, 4));
    ag_tensor *x4 = rand_leaf(14, 1.0f, AG_SHAPE(2, 3, 4, 5)); /* 120: by directions */
    assert_gradcheck(f_transpose, &x2, 1, ((int[]){0, 1}));
    assert_gradcheck(f_transpose, &x3, 1, ((int[]){-1, 0}));
    assert_gradcheck(f_transpose, &x3, 1, ((int[]){1, 2}));
    assert_gradcheck(f_transpose, &x4, 1, ((int[]){1, -1}));
    assert_gradcheck(f_transpose, &x4, 1, ((int[]){-4, 2}));
    ag_tensor_free(x2);
    ag_tensor_free(x3);
    ag_tensor_free(x4);
}

static ag_tensor *f_permute(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    return weighted_sum(c, ag_tanh(c, ag_permute(c, in[0], user)));
}

static void test_gradcheck_permute(void **state)
{
    (void)state;
    ag_tensor *x3 = rand_leaf(15, 1.0f, AG_SHAPE(2, 3, 4));
    const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int k = 0; k < 6; k++)
        assert_gradcheck(f_permute, &x3, 1, (void *)perms[k]);
    ag_tensor *x4 = rand_leaf(16, 1.0f, AG_SHAPE(2, 3, 1, 4));
    assert_gradcheck(f_permute, &x4, 1, ((int[]){3, 0, 2, 1}));
    ag_tensor *big = rand_leaf(17, 1.0f, AG_SHAPE(3, 4, 5, 2));
    assert_gradcheck(f_permute, &big, 1, ((int[]){2, 3, 0, 1}));
    ag_tensor_free(x3);
    ag_tensor_free(x4);
    ag_tensor_free(big);
}

/* concat of all inputs along *axis */
static ag_tensor *f_concat(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    const int *axis = user;
    return weighted_sum(c, ag_tanh(c, ag_concat(c, in, n, *axis)));
}

static void test_gradcheck_concat(void **state)
{
    (void)state;
    ag_tensor *a0[2] = {rand_leaf(20, 1.0f, AG_SHAPE(1, 3, 2)),
                        rand_leaf(21, 1.0f, AG_SHAPE(2, 3, 2))};
    assert_gradcheck(f_concat, a0, 2, ((int[]){0}));
    ag_tensor *a1[3] = {rand_leaf(22, 1.0f, AG_SHAPE(2, 1, 3)),
                        rand_leaf(23, 1.0f, AG_SHAPE(2, 2, 3)),
                        rand_leaf(24, 1.0f, AG_SHAPE(2, 3, 3))};
    assert_gradcheck(f_concat, a1, 3, ((int[]){1}));
    assert_gradcheck(f_concat, a1, 3, ((int[]){-2}));
    ag_tensor *a2[2] = {rand_leaf(25, 1.0f, AG_SHAPE(3, 2)), rand_leaf(26, 1.0f, AG_SHAPE(3, 4))};
    assert_gradcheck(f_concat, a2, 2, ((int[]){-1}));
    /* 100 and 50 elements: the first by directions */
    ag_tensor *big[2] = {rand_leaf(27, 1.0f, AG_SHAPE(5, 20)),
                         rand_leaf(28, 1.0f, AG_SHAPE(5, 10))};
    assert_gradcheck(f_concat, big, 2, ((int[]){1}));
    free_all(a0, 2);
    free_all(a1, 3);
    free_all(a2, 2);
    free_all(big, 2);
}

/* concat(x, y, x): x's two copies carry different weights and add up */
static ag_tensor *f_concat_twice(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_tanh(c, ag_concat(c, (ag_tensor *[]){in[0], in[1], in[0]}, 3, 0)));
}

static void test_gradcheck_concat_same_input_twice(void **state)
{
    (void)state;
    ag_tensor *in[2] = {rand_leaf(30, 1.0f, AG_SHAPE(2, 3)), rand_leaf(31, 1.0f, AG_SHAPE(1, 3))};
    assert_gradcheck(f_concat_twice, in, 2, NULL);
    free_all(in, 2);
}

/* three overlapping slices of one input, along different axes, summed */
static ag_tensor *f_slices(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    ag_tensor *x = in[0];
    ag_tensor *a = weighted_sum(c, ag_tanh(c, ag_slice(c, x, 0, 0, 2)));     /* (2,4,3) */
    ag_tensor *b = weighted_sum(c, ag_tanh(c, ag_slice(c, x, -2, -3, -1)));  /* (3,2,3) */
    ag_tensor *d = weighted_sum(c, ag_exp(c, ag_slice(c, x, -1, 1, 2)));     /* (3,4,1) */
    return ag_add(c, ag_add(c, a, b), d);
}

static void test_gradcheck_slice(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(32, 1.0f, AG_SHAPE(3, 4, 3));
    assert_gradcheck(f_slices, &x, 1, NULL);
    ag_tensor_free(x);
}

/* split into 3, 0 and 2 rows, the pieces weighted differently */
static ag_tensor *f_split(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    ag_tensor *p[3];
    if (!ag_split(c, in[0], 0, (const int64_t[]){3, 0, 2}, 3, p))
        return NULL;
    return ag_add(c, weighted_sum(c, ag_tanh(c, p[0])),
                  weighted_sum(c, ag_sigmoid(c, p[2])));
}

static void test_gradcheck_split(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(33, 1.0f, AG_SHAPE(5, 4));
    assert_gradcheck(f_split, &x, 1, NULL);
    ag_tensor_free(x);
}


/* A slice whose leading dims are all 1 is a contiguous block: a view, whose
 * grads still land in the right rows. */
static void test_slice_leading_axis_is_a_view(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    float d[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    ag_tensor *a = leaf(d, AG_SHAPE(1, 4, 3));
    ag_tensor *s = ag_slice(c, a, 1, 1, 3);      /* rows 1..2 of the only outer block */
    assert_shape(s, 1, 2, 3);
    assert_ptr_equal(s->data, a->data + 3);
    ag_tensor *t = ag_slice(c, a, 2, 0, 2);      /* not contiguous: a copy */
    assert_ptr_not_equal(t->data, a->data);
    assert_true(ag_backward(c, weighted_sum(c, s)));
    /* d/da of sum(s * W): W in rows 1..2, zero elsewhere */
    ag_tensor *w = ag_empty(c, AG_SHAPE(1, 2, 3));
    ag_rng r = ag_rng_new(0xC0FFEEull + 6);
    ag_fill_normal(w, &r, 0.0f, 1.0f);
    for (int i = 0; i < 12; i++) {
        float want = (i >= 3 && i < 9) ? w->data[i - 3] : 0.0f;
        assert_true(a->grad[i] == want);
    }
    ag_ctx_free(c);
    ag_tensor_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slice_leading_axis_is_a_view),
        cmocka_unit_test(test_reshape_keeps_order),
        cmocka_unit_test(test_reshape_infers_minus_one),
        cmocka_unit_test(test_reshape_to_scalar),
        cmocka_unit_test(test_reshape_is_a_view),
        cmocka_unit_test(test_reshape_grad_passes_through),
        cmocka_unit_test(test_transpose_2d),
        cmocka_unit_test(test_transpose_3d_outer_axes),
        cmocka_unit_test(test_transpose_4d),
        cmocka_unit_test(test_transpose_same_axis),
        cmocka_unit_test(test_transpose_grad_values),
        cmocka_unit_test(test_permute_3d_values),
        cmocka_unit_test(test_permute_3d_rotation),
        cmocka_unit_test(test_permute_4d),
        cmocka_unit_test(test_permute_grad_values),
        cmocka_unit_test(test_permute_grad_accumulates),
        cmocka_unit_test(test_concat_first_axis),
        cmocka_unit_test(test_concat_middle_axis),
        cmocka_unit_test(test_concat_last_axis),
        cmocka_unit_test(test_concat_three_inputs),
        cmocka_unit_test(test_concat_grad_values),
        cmocka_unit_test(test_concat_same_input_twice),
        cmocka_unit_test(test_slice_last_axis),
        cmocka_unit_test(test_slice_first_axis),
        cmocka_unit_test(test_slice_middle_axis),
        cmocka_unit_test(test_slice_empty),
        cmocka_unit_test(test_slice_grad_values),
        cmocka_unit_test(test_split_values),
        cmocka_unit_test(test_split_grad_values),
        cmocka_unit_test(test_large_transpose_concat_slice),
        cmocka_unit_test(test_gradcheck_reshape),
        cmocka_unit_test(test_gradcheck_transpose),
        cmocka_unit_test(test_gradcheck_permute),
        cmocka_unit_test(test_gradcheck_concat),
        cmocka_unit_test(test_gradcheck_concat_same_input_twice),
        cmocka_unit_test(test_gradcheck_slice),
        cmocka_unit_test(test_gradcheck_split),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
