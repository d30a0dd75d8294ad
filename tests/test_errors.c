/* test_errors.c - programmer errors. Each one reaches the error handler
 * exactly once with a message naming the op and the shapes (or the bad
 * value), and the op returns NULL (false for ag_split / ag_backward); an op
 * given a NULL input (an earlier op's failure) returns NULL without a second
 * report. Covered: broadcasting, matmul, reshape, axes out of range, permute,
 * concat, slice, split, masked_fill, causal_mask, cross_entropy, embedding,
 * dropout, backward misuse, tensors used after their arena's reset, ag_item,
 * ag_tensor_free, too many dims, and the default handler (print + abort, in
 * a forked child). */
#include "test_util.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* a (2, 3) tensor of 0..5 in c */
static ag_tensor *t23(ag_ctx *c)
{
    const float d[6] = {0, 1, 2, 3, 4, 5};
    return ag_from_data(c, d, AG_SHAPE(2, 3));
}

/* ================================================================ elementwise */

static void test_binary_ops_report_shapes_that_do_not_broadcast(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *b = ag_zeros(c, AG_SHAPE(4));
    ag_tensor *r = a;
    assert_ag_error(r = ag_add(c, a, b), "add: shapes (2, 3) and (4) do not broadcast");
    assert_null(r);
    r = a;
    assert_ag_error(r = ag_sub(c, b, a), "sub: shapes (4) and (2, 3) do not broadcast");
    assert_null(r);
    r = a;
    assert_ag_error(r = ag_mul(c, a, ag_zeros(c, AG_SHAPE(3, 2))), "mul", "(2, 3)", "(3, 2)");
    assert_null(r);
    r = a;
    assert_ag_error(r = ag_div(c, ag_zeros(c, AG_SHAPE(5, 1, 3)), ag_zeros(c, AG_SHAPE(4, 2))),
                    "div", "(5, 1, 3)", "(4, 2)");
    assert_null(r);
    ag_ctx_free(c);
}

/* ================================================================ matmul */

static void test_matmul_inner_dims_differ(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    assert_ag_error(r = ag_matmul(c, t23(c), ag_zeros(c, AG_SHAPE(4, 5))),
                    "matmul: shapes (2, 3) and (4, 5) do not match (inner dims differ)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_matmul_batch_dims_do_not_broadcast(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    ag_tensor *a = ag_zeros(c, AG_SHAPE(2, 2, 3)), *b = ag_zeros(c, AG_SHAPE(3, 3, 4));
    assert_ag_error(r = ag_matmul(c, a, b),
                    "matmul: shapes (2, 2, 3) and (3, 3, 4)", "batch dims do not broadcast");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_matmul_needs_2d_inputs(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    assert_ag_error(r = ag_matmul(c, ag_zeros(c, AG_SHAPE(3)), ag_zeros(c, AG_SHAPE(3, 4))),
                    "matmul: needs at least 2-D inputs, got (3) and (3, 4)");
    assert_null(r);
    assert_ag_error(r = ag_matmul(c, ag_zeros(c, AG_SHAPE(2, 3)), ag_zeros(c, AG_SHAPE(3))),
                    "matmul", "(2, 3) and (3)");
    assert_null(r);
    ag_ctx_free(c);
}

/* matmul_nt wants (M, K) and (N, K): the K of b is its last dim */
static void test_matmul_nt_mismatch(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    assert_ag_error(r = ag_matmul_nt(c, t23(c), ag_zeros(c, AG_SHAPE(3, 2))),
                    "matmul_nt: shapes (2, 3) and (3, 2) do not match (inner dims differ)");
    assert_null(r);
    ag_tensor *a3 = ag_zeros(c, AG_SHAPE(2, 1, 3)), *b3 = ag_zeros(c, AG_SHAPE(3, 4, 3));
    assert_ag_error(r = ag_matmul_nt(c, a3, b3),
                    "matmul_nt", "batch dims");
    assert_null(r);
    assert_ag_error(r = ag_matmul_nt(c, ag_zeros(c, AG_SHAPE(3)), ag_zeros(c, AG_SHAPE(4, 3))),
                    "matmul_nt: needs at least 2-D inputs, got (3) and (4, 3)");
    assert_null(r);
    /* the transposed layout itself is fine */
    catch_errors();
    assert_non_null(ag_matmul_nt(c, t23(c), ag_zeros(c, AG_SHAPE(4, 3))));
    assert_int_equal(error_count, 0);
    ag_set_error_handler(NULL, NULL);
    ag_ctx_free(c);
}

/* ================================================================ shape ops */

static void test_reshape_to_wrong_size(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *r = NULL;
    assert_ag_error(r = ag_reshape(c, a, AG_SHAPE(4, 2)),
                    "reshape: cannot view (2, 3) (6 elements) as (4, 2)");
    assert_null(r);
    assert_ag_error(r = ag_reshape(c, a, AG_SHAPE(-1, 4)), "reshape", "(2, 3)", "(-1, 4)");
    assert_null(r);
    assert_ag_error(r = ag_reshape(c, a, AG_SHAPE(-1, -1)),
                    "reshape: bad target shape (-1, -1) for (2, 3)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_transpose_axis_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *r = NULL;
    assert_ag_error(r = ag_transpose(c, a, 0, 2),
                    "transpose: axis 2 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_transpose(c, a, -3, 1),
                    "transpose: axis -3 out of range for shape (2, 3)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_reductions_axis_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *r = NULL;
    assert_ag_error(r = ag_sum(c, a, 2, false), "sum: axis 2 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_sum(c, a, -3, true), "sum: axis -3 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_mean(c, a, 5, false), "mean: axis 5 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_mean(c, a, -4, false), "mean: axis -4 out of range");
    assert_null(r);
    assert_ag_error(r = ag_max(c, a, 2, true), "max: axis 2 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_max(c, a, -3, false), "max: axis -3 out of range");
    assert_null(r);
    /* a 0-dim tensor has no axis at all */
    assert_ag_error(r = ag_sum(c, ag_scalar(c, 1), 0, false),
                    "sum: axis 0 out of range for shape ()");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_max_over_empty_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    assert_ag_error(r = ag_max(c, ag_zeros(c, AG_SHAPE(2, 0)), 1, false),
                    "max: empty axis 1 in shape (2, 0)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_softmax_axis_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *r = NULL;
    assert_ag_error(r = ag_softmax(c, a, 2), "softmax: axis 2 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_softmax(c, a, -3), "softmax: axis -3 out of range");
    assert_null(r);
    assert_ag_error(r = ag_log_softmax(c, a, 2),
                    "log_softmax: axis 2 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_log_softmax(c, a, -3), "log_softmax: axis -3 out of range");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_concat_axis_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *ts[2] = {t23(c), t23(c)}, *r = NULL;
    assert_ag_error(r = ag_concat(c, ts, 2, 2), "concat: axis 2 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_concat(c, ts, 2, -3), "concat: axis -3 out of range for shape (2, 3)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_concat_shapes_mismatch(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    ag_tensor *ts[3] = {t23(c), t23(c), ag_zeros(c, AG_SHAPE(2, 4))};
    assert_ag_error(r = ag_concat(c, ts, 3, 0),
                    "concat: tensor 2 of shape (2, 4) does not match tensor 0 of shape (2, 3) "
                    "outside axis 0");
    assert_null(r);
    ag_tensor *nd[2] = {t23(c), ag_zeros(c, AG_SHAPE(3))};
    assert_ag_error(r = ag_concat(c, nd, 2, -1),
                    "concat: tensor 1 of shape (3)", "(2, 3)", "axis 1");
    assert_null(r);
    assert_ag_error(r = ag_concat(c, nd, 0, 0), "concat: no tensors");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_permute_not_a_permutation(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *r = NULL;
    assert_ag_error(r = ag_permute(c, a, (const int[]){0, 0}, 2),
                    "permute: axis 0 at position 1 is not a permutation of the 2 axes of (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_permute(c, a, (const int[]){2, 0}, 2),
                    "permute: axis 2 at position 0", "(2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_permute(c, a, (const int[]){1, 0, 2}, 3), "permute",
                    "3 axes given for the 2 dims of (2, 3)");
    assert_null(r);
    r = a;
    assert_ag_error(r = ag_permute(c, a, (const int[]){1, -1}, 2),
                    "permute: axis -1 at position 1", "(2, 3)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_slice_axis_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *r = NULL;
    assert_ag_error(r = ag_slice(c, a, 2, 0, 1), "slice: axis 2 out of range for shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_slice(c, a, -3, 0, 1), "slice: axis -3 out of range for shape (2, 3)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_slice_range_out_of_bounds(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *r = NULL;
    assert_ag_error(r = ag_slice(c, a, 1, 1, 5),
                    "slice: [1:5] out of range for axis 1 of shape (2, 3)");
    assert_null(r);
    assert_ag_error(r = ag_slice(c, a, 1, 2, 1), "slice: [2:1] out of range for axis 1");
    assert_null(r);
    assert_ag_error(r = ag_slice(c, a, 0, -3, 1),
                    "slice: [-3:1] out of range for axis 0 of shape (2, 3)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_split_axis_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *out[2] = {NULL, NULL};
    bool ok = true;
    assert_ag_error(ok = ag_split(c, t23(c), (const int64_t[]){1, 1}, 2, 2, out),
                    "split: axis 2 out of range for shape (2, 3)");
    assert_false(ok);
    ok = true;
    assert_ag_error(ok = ag_split(c, t23(c), (const int64_t[]){1, 1}, 2, -3, out),
                    "split: axis -3 out of range for shape (2, 3)");
    assert_false(ok);
    ag_ctx_free(c);
}

static void test_split_sizes_do_not_add_up(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *out[3] = {NULL, NULL, NULL};
    bool ok = true;
    assert_ag_error(ok = ag_split(c, t23(c), (const int64_t[]){1, 1}, 2, 1, out),
                    "split: sizes of 2 pieces add up to 2, not the 3 of axis 1 of shape (2, 3)");
    assert_false(ok);
    ok = true;
    assert_ag_error(ok = ag_split(c, t23(c), (const int64_t[]){1, 1, 1}, 3, 0, out),
                    "split", "add up to 3, not the 2 of axis 0 of shape (2, 3)");
    assert_false(ok);
    ok = true;
    assert_ag_error(ok = ag_split(c, t23(c), (const int64_t[]){4, -1}, 2, 1, out), "split",
                    "(2, 3)");
    assert_false(ok);
    ag_ctx_free(c);
}

/* ================================================================ masks */

static void test_masked_fill_mask_does_not_broadcast(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_zeros(c, AG_SHAPE(2, 4)), *r = NULL;
    assert_ag_error(r = ag_masked_fill(c, a, ag_zeros(c, AG_SHAPE(3)), 1.0f),
                    "masked_fill: mask of shape (3) does not broadcast to input shape (2, 4)");
    assert_null(r);
    /* a mask that broadcasts with a but would grow it is refused too */
    assert_ag_error(r = ag_masked_fill(c, a, ag_zeros(c, AG_SHAPE(3, 2, 4)), 1.0f),
                    "masked_fill: mask of shape (3, 2, 4)", "input shape (2, 4)");
    assert_null(r);
    assert_ag_error(r = ag_masked_fill(c, a, ag_zeros(c, AG_SHAPE(2, 1, 4)), 1.0f), "masked_fill",
                    "(2, 1, 4)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_causal_mask_needs_2d(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    assert_ag_error(r = ag_causal_mask(c, ag_zeros(c, AG_SHAPE(4)), -INFINITY),
                    "causal_mask: needs (..., T, S), got (4)");
    assert_null(r);
    assert_ag_error(r = ag_causal_mask(c, ag_scalar(c, 0), -INFINITY), "causal_mask", "got ()");
    assert_null(r);
    ag_ctx_free(c);
}

/* ================================================================ nn ops */

static void test_cross_entropy_wrong_shapes(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    ag_index *t3 = ag_index_new(c, (const int32_t[]){0, 1, 2}, AG_SHAPE(3));
    assert_ag_error(r = ag_cross_entropy(c, t23(c), t3, -100),
                    "cross_entropy: logits (2, 3) and targets (3); want (N, C) and (N)");
    assert_null(r);
    assert_ag_error(r = ag_cross_entropy(c, ag_zeros(c, AG_SHAPE(3)), t3, -100),
                    "cross_entropy: logits (3) and targets (3)");
    assert_null(r);
    ag_index *t2x1 = ag_index_new(c, (const int32_t[]){0, 1}, AG_SHAPE(2, 1));
    assert_ag_error(r = ag_cross_entropy(c, t23(c), t2x1, -100),
                    "cross_entropy: logits (2, 3) and targets (2, 1)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_cross_entropy_target_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    ag_index *big = ag_index_new(c, (const int32_t[]){0, 5}, AG_SHAPE(2));
    assert_ag_error(r = ag_cross_entropy(c, t23(c), big, -100),
                    "cross_entropy: target 5 at row 1 is out of range for 3 classes");
    assert_null(r);
    ag_index *neg = ag_index_new(c, (const int32_t[]){-1, 0}, AG_SHAPE(2));
    assert_ag_error(r = ag_cross_entropy(c, t23(c), neg, -100), "target -1 at row 0",
                    "3 classes");
    assert_null(r);
    /* the same value is fine when it is the ignore_index */
    catch_errors();
    assert_non_null(ag_cross_entropy(c, t23(c), neg, -1));
    assert_int_equal(error_count, 0);
    ag_set_error_handler(NULL, NULL);
    ag_ctx_free(c);
}

static void test_embedding_index_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *w = ag_zeros(c, AG_SHAPE(5, 2)), *r = NULL;
    ag_index *ix = ag_index_new(c, (const int32_t[]){0, 4, 7}, AG_SHAPE(3));
    assert_ag_error(r = ag_embedding(c, w, ix),
                    "embedding: index 7 at position 2 is out of range for 5 rows");
    assert_null(r);
    ag_index *neg = ag_index_new(c, (const int32_t[]){1, -1, 0, 2}, AG_SHAPE(2, 2));
    assert_ag_error(r = ag_embedding(c, w, neg), "embedding: index -1 at position 1", "5 rows");
    assert_null(r);
    assert_ag_error(r = ag_embedding(c, ag_zeros(c, AG_SHAPE(5)), ix),
                    "embedding: weight (5) and indices (3); want (V, C)");
    assert_null(r);
    ag_ctx_free(c);
}

static void test_dropout_probability_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *r = NULL;
    assert_ag_error(r = ag_dropout(c, a, -0.1f, true),
                    "dropout: probability -0.1 is not in [0, 1)");
    assert_null(r);
    assert_ag_error(r = ag_dropout(c, a, 1.0f, true), "dropout: probability 1 is not in [0, 1)");
    assert_null(r);
    assert_ag_error(r = ag_dropout(c, a, 1.5f, false), "dropout: probability 1.5");
    assert_null(r);
    assert_ag_error(r = ag_dropout(c, a, NAN, true), "dropout: probability nan");
    assert_null(r);
    ag_ctx_free(c);
}

/* ================================================================ backward */

static void test_backward_on_non_scalar(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = t23(c);
    ag_set_requires_grad(x, true);
    bool ok = true;
    assert_ag_error(ok = ag_backward(c, ag_mul_scalar(c, x, 2.0f)),
                    "ag_backward: output of shape (2, 3) is not a scalar", "ag_backward_with");
    assert_false(ok);
    assert_null(x->grad);
    ag_ctx_free(c);
}

static void test_backward_with_wrong_grad_shape(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = t23(c);
    ag_set_requires_grad(x, true);
    ag_tensor *y = ag_mul_scalar(c, x, 2.0f);
    bool ok = true;
    assert_ag_error(ok = ag_backward_with(c, y, ag_zeros(c, AG_SHAPE(3, 2))),
                    "ag_backward_with: grad of shape (3, 2) for output of shape (2, 3)");
    assert_false(ok);
    ok = true;
    assert_ag_error(ok = ag_backward_with(c, y, ag_zeros(c, AG_SHAPE(6))), "ag_backward_with",
                    "(6)", "(2, 3)");
    assert_false(ok);
    assert_null(x->grad);
    ag_ctx_free(c);
}

static void test_backward_on_tensor_without_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    bool ok = true;
    assert_ag_error(ok = ag_backward(c, ag_sum_all(c, t23(c))),
                    "ag_backward: output does not require grad");
    assert_false(ok);
    ok = true;
    assert_ag_error(ok = ag_backward_with(c, t23(c), t23(c)),
                    "ag_backward_with: output does not require grad");
    assert_false(ok);
    ag_ctx_free(c);
}

static void test_set_requires_grad_on_non_leaf(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = t23(c);
    ag_set_requires_grad(x, true);
    ag_tensor *y = ag_tanh(c, x);
    assert_ag_error(ag_set_requires_grad(y, false),
                    "ag_set_requires_grad: tensor made by tanh is not a leaf");
    assert_true(ag_requires_grad(y));
    ag_ctx_free(c);
}

/* A tensor made in a ctx dies at ag_ctx_reset; ops check its generation.
 * In a normal build the memory is reused, so this is only well-defined right
 * after the reset, before anything is allocated over the tensor. The debug
 * arena (-Darena_debug=true) never reuses a reset step's memory, so there it
 * is caught however much the new step has allocated: the second part. */
static void test_tensor_used_after_ctx_reset(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *p = ag_ones(NULL, AG_SHAPE(2, 3));
    ag_tensor *stale = t23(c);
    ag_ctx_reset(c);
    ag_tensor *r = p;
    assert_ag_error(r = ag_neg(c, stale),
                    "neg: input 0 is from a step whose arena was reset");
    assert_null(r);
    r = p;
    assert_ag_error(r = ag_add(c, p, stale), "add: input 1 is from a step whose arena was reset");
    assert_null(r);
    bool ok = true;
    assert_ag_error(ok = ag_backward(c, stale), "ag_backward: input 0", "arena was reset");
    assert_false(ok);
    float v = 0.0f;
    assert_ag_error(v = ag_item(stale), "ag_item: input 0 is from a step whose arena was reset");
    assert_true(isnan(v));
#ifdef AG_ARENA_DEBUG
    stale = t23(c);
    ag_ctx_reset(c);
    for (int i = 0; i < 100; i++) /* a new step that allocates plenty */
        ag_zeros(c, AG_SHAPE(1000));
    assert_ag_error(r = ag_mul(c, stale, p), "mul: input 0 is from a step whose arena was reset");
#endif
    ag_tensor_free(p);
    ag_ctx_free(c);
}

/* ================================================================ tensors */

static void test_item_of_many_elements(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    float v = 0.0f;
    assert_ag_error(v = ag_item(t23(c)), "ag_item: tensor of shape (2, 3) has 6 elements, not 1");
    assert_true(isnan(v));
    assert_ag_error(v = ag_item(ag_zeros(c, AG_SHAPE(0))), "ag_item", "shape (0) has 0 elements");
    assert_true(isnan(v));
    ag_ctx_free(c);
}

static void test_tensor_free_on_arena_tensor(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c);
    assert_ag_error(ag_tensor_free(a),
                    "ag_tensor_free: tensor of shape (2, 3) lives in a ctx arena; "
                    "ag_ctx_reset frees it");
    assert_true(a->data[5] == 5.0f); /* untouched */
    ag_ctx_free(c);
}

static void test_too_many_dims(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const int64_t s7[7] = {1, 2, 1, 2, 1, 2, 1};
    ag_tensor *r = NULL;
    assert_ag_error(r = ag_zeros(c, 7, s7),
                    "ag_zeros: shape (1, 2, 1, 2, 1, 2, 1) has 7 dims, the most is 6");
    assert_null(r);
    assert_ag_error(r = ag_empty(NULL, 7, s7), "ag_empty: shape (1, 2, 1, 2, 1, 2, 1) has 7 dims");
    assert_null(r);
    assert_ag_error(r = ag_param("big", 7, s7), "ag_param", "7 dims");
    assert_null(r);
    float d[8] = {0};
    assert_ag_error(r = ag_from_data(c, d, 7, s7), "ag_from_data", "7 dims");
    assert_null(r);
    assert_ag_error(r = ag_rand(c, NULL, 0.0f, 1.0f, 7, s7), "ag_rand", "7 dims");
    assert_null(r);
    assert_ag_error(r = ag_reshape(c, ag_zeros(c, AG_SHAPE(8)), 7, s7), "reshape", "7 dims",
                    "most is 6");
    assert_null(r);
    ag_index *ix = NULL;
    assert_ag_error(ix = ag_index_new(c, NULL, 7, s7), "ag_index_new", "7 dims");
    assert_null(ix);
    ag_ctx_free(c);
}

static void test_negative_size(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *r = NULL;
    assert_ag_error(r = ag_ones(c, AG_SHAPE(2, -1)), "ag_ones: negative size in shape (2, -1)");
    assert_null(r);
    assert_ag_error(r = ag_full(NULL, 1.0f, AG_SHAPE(-3)), "ag_full", "(-3)");
    assert_null(r);
    ag_ctx_free(c);
}

/* ================================================================ propagation */

/* Every op handed a NULL (an earlier failure) returns NULL and reports nothing. */
static void test_null_inputs_return_null_silently(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = t23(c), *n = NULL, *out[2] = {a, a};
    ag_index *ix = ag_index_new(c, (const int32_t[]){0, 1}, AG_SHAPE(2));
    catch_errors();
    assert_null(ag_add(c, n, a));
    assert_null(ag_mul(c, a, n));
    assert_null(ag_tanh(c, n));
    assert_null(ag_add_scalar(c, n, 1.0f));
    assert_null(ag_sum(c, n, 0, false));
    assert_null(ag_mean_all(c, n));
    assert_null(ag_max(c, n, 0, false));
    assert_null(ag_reshape(c, n, AG_SHAPE(6)));
    assert_null(ag_transpose(c, n, 0, 1));
    assert_null(ag_permute(c, n, (const int[]){1, 0}, 2));
    ag_tensor *ts[2] = {a, n};
    assert_null(ag_concat(c, ts, 2, 0));
    assert_null(ag_slice(c, n, 0, 0, 1));
    assert_false(ag_split(c, n, (const int64_t[]){1, 1}, 2, 0, out));
    assert_null(ag_matmul(c, n, a));
    assert_null(ag_matmul_nt(c, a, n));
    assert_null(ag_masked_fill(c, n, a, 0.0f));
    assert_null(ag_masked_fill(c, a, n, 0.0f));
    assert_null(ag_causal_mask(c, n, 0.0f));
    assert_null(ag_softmax(c, n, 0));
    assert_null(ag_log_softmax(c, n, 0));
    assert_null(ag_cross_entropy(c, n, ix, -100));
    assert_null(ag_cross_entropy(c, a, NULL, -100));
    assert_null(ag_embedding(c, n, ix));
    assert_null(ag_embedding(c, a, NULL));
    assert_null(ag_dropout(c, n, 0.5f, true));
    assert_false(ag_backward(c, n));
    assert_false(ag_backward_with(c, n, a));
    assert_false(ag_backward_with(c, a, n));
    assert_int_equal(error_count, 0);
    assert_string_equal(last_error, "");
    ag_set_error_handler(NULL, NULL);
    ag_ctx_free(c);
}

/* One mistake deep in a chain is reported once, and NULL comes out the end. */
static void test_error_reported_once_through_a_chain(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = t23(c), *loss = x;
    ag_set_requires_grad(x, true);
    bool ok = true;
    assert_ag_error(
        (loss = ag_mean_all(c, ag_softmax(c, ag_tanh(c, ag_matmul(c, x, x)), -1)),
         ok = ag_backward(c, loss)),
        "matmul: shapes (2, 3) and (2, 3) do not match");
    assert_null(loss);
    assert_false(ok);
    /* an ag_index that failed to be made is NULL, and the loss stays silent about it */
    const int64_t s7[7] = {1, 1, 1, 1, 1, 1, 1};
    assert_ag_error(loss = ag_cross_entropy(c, x, ag_index_new(c, NULL, 7, s7), -100),
                    "ag_index_new");
    assert_null(loss);
    ag_ctx_free(c);
}

/* ================================================================ handlers */

static int user_calls;

static void counting_handler(const char *msg, void *user)
{
    (void)msg;
    user_calls += *(int *)user;
}

static void test_handler_gets_user_pointer_and_is_restorable(void **state)
{
    (void)state;
    int weight = 10;
    user_calls = 0;
    ag_error_hook def = ag_set_error_handler(counting_handler, &weight);
    assert_null(def.fn); /* the default was installed */
    ag_ctx *c = ag_ctx_new();
    assert_null(ag_add(c, t23(c), ag_zeros(c, AG_SHAPE(4))));
    assert_int_equal(user_calls, 10);
    /* a second handler, then the first restored exactly, user pointer and all */
    int other = 1;
    ag_error_hook first = ag_set_error_handler(counting_handler, &other);
    assert_ptr_equal(first.fn, counting_handler);
    assert_ptr_equal(first.user, &weight);
    assert_null(ag_add(c, t23(c), ag_zeros(c, AG_SHAPE(4))));
    assert_int_equal(user_calls, 11);
    ag_set_error_handler(first.fn, first.user);
    assert_null(ag_add(c, t23(c), ag_zeros(c, AG_SHAPE(4))));
    assert_int_equal(user_calls, 21);
    ag_error_hook back = ag_set_error_handler(def.fn, def.user);
    assert_ptr_equal(back.fn, counting_handler);
    assert_ptr_equal(back.user, &weight);
    ag_ctx_free(c);
}

/* The default handler prints "ag: error: <message>" to stderr and aborts.
 * Run in a child whose stderr is a pipe. */
static void test_default_handler_prints_and_aborts(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        ag_set_error_handler(NULL, NULL);
        ag_ctx *c = ag_ctx_new();
        ag_add(c, t23(c), ag_zeros(c, AG_SHAPE(4)));
        _exit(0); /* only reached if the handler returned */
    }
    close(fds[1]);
    char buf[1024];
    size_t len = 0;
    ssize_t k;
    while (len < sizeof buf - 1 && (k = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)k;
    buf[len] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    if (!strstr(buf, "ag: error: add: shapes (2, 3) and (4) do not broadcast\n"))
        fail_msg("child stderr was \"%s\"", buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_ops_report_shapes_that_do_not_broadcast),
        cmocka_unit_test(test_matmul_inner_dims_differ),
        cmocka_unit_test(test_matmul_batch_dims_do_not_broadcast),
        cmocka_unit_test(test_matmul_needs_2d_inputs),
        cmocka_unit_test(test_matmul_nt_mismatch),
        cmocka_unit_test(test_reshape_to_wrong_size),
        cmocka_unit_test(test_transpose_axis_out_of_range),
        cmocka_unit_test(test_reductions_axis_out_of_range),
        cmocka_unit_test(test_max_over_empty_axis),
        cmocka_unit_test(test_softmax_axis_out_of_range),
        cmocka_unit_test(test_concat_axis_out_of_range),
        cmocka_unit_test(test_concat_shapes_mismatch),
        cmocka_unit_test(test_permute_not_a_permutation),
        cmocka_unit_test(test_slice_axis_out_of_range),
        cmocka_unit_test(test_slice_range_out_of_bounds),
        cmocka_unit_test(test_split_axis_out_of_range),
        cmocka_unit_test(test_split_sizes_do_not_add_up),
        cmocka_unit_test(test_masked_fill_mask_does_not_broadcast),
        cmocka_unit_test(test_causal_mask_needs_2d),
        cmocka_unit_test(test_cross_entropy_wrong_shapes),
        cmocka_unit_test(test_cross_entropy_target_out_of_range),
        cmocka_unit_test(test_embedding_index_out_of_range),
        cmocka_unit_test(test_dropout_probability_out_of_range),
        cmocka_unit_test(test_backward_on_non_scalar),
        cmocka_unit_test(test_backward_with_wrong_grad_shape),
        cmocka_unit_test(test_backward_on_tensor_without_grad),
        cmocka_unit_test(test_set_requires_grad_on_non_leaf),
        cmocka_unit_test(test_tensor_used_after_ctx_reset),
        cmocka_unit_test(test_item_of_many_elements),
        cmocka_unit_test(test_tensor_free_on_arena_tensor),
        cmocka_unit_test(test_too_many_dims),
        cmocka_unit_test(test_negative_size),
        cmocka_unit_test(test_null_inputs_return_null_silently),
        cmocka_unit_test(test_error_reported_once_through_a_chain),
        cmocka_unit_test(test_handler_gets_user_pointer_and_is_restorable),
        cmocka_unit_test(test_default_handler_prints_and_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
