/* test_ops_struct.c - the structural ops of issue 12 but attention
 * (test_attention_qkv.c): ag_var, ag_cumsum, ag_argmax, ag_gather,
 * ag_index_select, ag_stack, ag_chunk (and ag_split's views), ag_expand,
 * ag_detach and ag_rms_norm. Values worked by hand, which results are views
 * (sharing their input's data) and which are copies, backward values where a
 * gradcheck cannot tell (repeated indices, detach), the parallel paths on
 * large inputs, gradchecks through weighted_sum, and every op's errors.
 * tests/test_ops_struct_parity.c compares the same ops with PyTorch. */
#include "test_util.h"

#include "ag_op.h" /* ag_op_of: whether an op was recorded */

#include <stdlib.h>

#define SHP(...) AG_SHAPE(__VA_ARGS__)

/* x[i] = i over the given shape */
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

static ag_index *index_of(ag_ctx *c, const int32_t *v, int ndim, const int64_t *shape)
{
    return ag_index_new(c, v, ndim, shape);
}
#define INDEX(c, shape, ...) index_of((c), (const int32_t[]){__VA_ARGS__}, shape)

/* gradcheck of a function linear in its input (cumsum, gather, index_select,
 * expand, through weighted_sum) over a large input: central differences are
 * exact for any step there, and a long step keeps float rounding in f (a sum
 * of 10^5 terms) from swamping them */
#define assert_gradcheck_linear(fn, inputs, n, user)                                     \
    do {                                                                                 \
        ag_gradcheck_opts o_ = ag_gradcheck_defaults();                                  \
        o_.quiet = true;                                                                 \
        o_.eps = 1.0;                                                                    \
        if (!ag_gradcheck((fn), (inputs), (n), (user), &o_))                             \
            fail_msg("gradcheck of %s: %s", #fn, o_.report);                             \
    } while (0)

/* the attributes a gradcheck function passes to its op */
typedef struct {
    int axis;
    bool flag, keep;
    const ag_index *idx;
    int n;
    int ndim;
    const int64_t *shape;
} args;

/* ================================================================ var */

static void test_var_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(1, 2, 3, 4, 2, 2, 2, 2), SHP(2, 4));
    ag_tensor *y = ag_var(c, x, 1, true, false);
    assert_shape(y, 2);
    assert_close(y->data, FLOATS(5.0f / 3.0f, 0), 2, 1e-6);
    y = ag_var(c, x, -1, false, true);
    assert_shape(y, 2, 1);
    assert_close(y->data, FLOATS(1.25f, 0), 2, 1e-6);
    y = ag_var(c, x, 0, true, false); /* columns (1,2) (2,2) (3,2) (4,2) */
    assert_shape(y, 4);
    assert_close(y->data, FLOATS(0.5f, 0, 0.5f, 2), 4, 1e-6);
    /* one element: no degree of freedom left unbiased (NaN, as torch.var), 0 biased */
    ag_tensor *one = ag_from_data(c, FLOATS(3), SHP(1));
    assert_true(isnan(ag_item(ag_var(c, one, 0, true, false))));
    assert_true(ag_item(ag_var(c, one, 0, false, false)) == 0.0f);
    /* backward: d var / d x = 2 (x - mean) / (n - 1) g, g = 1, 2 */
    ag_tensor *p = ag_from_data(NULL, FLOATS(1, 2, 3, 4, 2, 2, 2, 2), SHP(2, 4));
    ag_set_requires_grad(p, true);
    ag_tensor *v = ag_var(c, p, 1, true, false);
    assert_true(ag_backward_with(c, v, seed_like(c, v)));
    assert_close(p->grad, FLOATS(-1, -1.0f / 3, 1.0f / 3, 1, 0, 0, 0, 0), 8, 1e-6);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static ag_tensor *f_var(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const args *a = u;
    return weighted_sum(c, ag_var(c, in[0], a->axis, a->flag, a->keep));
}

static void test_var_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(1, 1.0f, SHP(3, 4, 5));
    ag_tensor *in[1] = {x};
    for (int axis = -1; axis < 3; axis++)
        for (int u = 0; u < 2; u++) {
            args a = {.axis = axis, .flag = u, .keep = axis == 1};
            assert_gradcheck(f_var, in, 1, &a);
        }
    /* more than one block of 64 columns, and enough elements for threads: by directions */
    ag_tensor *big = rand_leaf(2, 1.0f, SHP(3, 150, 100));
    ag_tensor *in2[1] = {big};
    args a = {.axis = 1, .flag = true};
    assert_gradcheck(f_var, in2, 1, &a);
    ag_tensor_free(x);
    ag_tensor_free(big);
}

/* ================================================================ cumsum */

static void test_cumsum_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 6), SHP(2, 3));
    ag_tensor *y = ag_cumsum(c, x, 1);
    assert_shape(y, 2, 3);
    assert_close(y->data, FLOATS(1, 3, 6, 4, 9, 15), 6, 0);
    assert_close(ag_cumsum(c, x, 0)->data, FLOATS(1, 2, 3, 5, 7, 9), 6, 0);
    /* backward: the running sum of the seed from the end, (1 2 3 | 4 5 6) -> (6 5 3 | 15 11 6) */
    ag_tensor *p = ag_from_data(NULL, FLOATS(1, 2, 3, 4, 5, 6), SHP(2, 3));
    ag_set_requires_grad(p, true);
    ag_tensor *s = ag_cumsum(c, p, -1);
    assert_true(ag_backward_with(c, s, seed_like(c, s)));
    assert_close(p->grad, FLOATS(6, 5, 3, 15, 11, 6), 6, 0);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static ag_tensor *f_cumsum(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    return weighted_sum(c, ag_cumsum(c, in[0], ((const args *)u)->axis));
}

static void test_cumsum_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(3, 1.0f, SHP(3, 4, 5));
    ag_tensor *in[1] = {x};
    for (int axis = 0; axis < 3; axis++) {
        args a = {.axis = axis};
        assert_gradcheck(f_cumsum, in, 1, &a);
    }
    ag_tensor *big = rand_leaf(4, 1.0f, SHP(2, 300, 70));
    ag_tensor *in2[1] = {big};
    args a = {.axis = 1};
    assert_gradcheck_linear(f_cumsum, in2, 1, &a);
    ag_tensor_free(x);
    ag_tensor_free(big);
}

/* ================================================================ argmax */

static void test_argmax_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(1, 5, 5, 2, /**/ -1, -3, NAN, 9, /**/ 0, 0, 0, 0),
                                SHP(3, 4));
    ag_index *ix = ag_argmax(c, x, 1, false);
    assert_non_null(ix);
    assert_int_equal(ix->ndim, 1);
    assert_int_equal(ix->shape[0], 3);
    /* ties: the first; a NaN is the maximum, as in torch.argmax */
    assert_int_equal(ix->data[0], 1);
    assert_int_equal(ix->data[1], 2);
    assert_int_equal(ix->data[2], 0);
    ix = ag_argmax(c, x, 0, true);
    assert_int_equal(ix->ndim, 2);
    assert_int_equal(ix->shape[0], 1);
    assert_int_equal(ix->shape[1], 4);
    assert_memory_equal(ix->data, ((int32_t[]){0, 0, 1, 1}), 4 * sizeof(int32_t));
    /* no grad: an input that requires grad is fine, nothing is recorded */
    ag_tensor *p = rand_leaf(5, 1.0f, SHP(2, 3));
    ag_index *persistent = ag_argmax(NULL, p, -1, false); /* ctx NULL: ag_index_free */
    assert_non_null(persistent);
    for (int r = 0; r < 2; r++) {
        int best = 0;
        for (int j = 1; j < 3; j++)
            best = p->data[r * 3 + j] > p->data[r * 3 + best] ? j : best;
        assert_int_equal(persistent->data[r], best);
    }
    ag_index_free(persistent);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

/* ================================================================ gather */

static void test_gather_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = iota(c, SHP(2, 3)); /* (0 1 2 | 3 4 5) */
    ag_tensor *y = ag_gather(c, a, INDEX(c, SHP(2, 2), 2, 0, 1, 1), 1);
    assert_shape(y, 2, 2);
    assert_close(y->data, FLOATS(2, 0, 4, 4), 4, 0);
    /* along axis 0, more indices than rows */
    y = ag_gather(c, a, INDEX(c, SHP(3, 3), 1, 0, 1, 0, 0, 0, 1, 1, 1), 0);
    assert_shape(y, 3, 3);
    assert_close(y->data, FLOATS(3, 1, 5, 0, 1, 2, 3, 4, 5), 9, 0);
    /* idx broadcast along the other dim: (1, 2) picks the same columns of each row */
    y = ag_gather(c, a, INDEX(c, SHP(1, 2), 2, 1), 1);
    assert_shape(y, 2, 2);
    assert_close(y->data, FLOATS(2, 1, 5, 4), 4, 0);
    /* a broadcast: (1, 3) serves two rows of indices */
    ag_tensor *row = iota(c, SHP(1, 3));
    y = ag_gather(c, row, INDEX(c, SHP(2, 1), 2, 0), 1);
    assert_shape(y, 2, 1);
    assert_close(y->data, FLOATS(2, 0), 2, 0);

    /* backward: repeated and broadcast picks add up */
    ag_tensor *p = ag_zeros(NULL, SHP(1, 3));
    ag_set_requires_grad(p, true);
    ag_tensor *g = ag_gather(c, p, INDEX(c, SHP(2, 3), 2, 2, 0, 1, 2, 2), 1);
    assert_true(ag_backward_with(c, g, seed_like(c, g))); /* seed 1..6 */
    assert_close(p->grad, FLOATS(3, 4, 1 + 2 + 5 + 6), 3, 0);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static ag_tensor *f_gather(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const args *a = u;
    return weighted_sum(c, ag_gather(c, in[0], a->idx, a->axis));
}

/* random indices in [0, n) of the given shape, persistent */
static ag_index *rand_index(uint64_t seed, int32_t n, int ndim, const int64_t *shape)
{
    ag_index *ix = ag_index_new(NULL, NULL, ndim, shape);
    ag_rng r = ag_rng_new(seed);
    for (int64_t i = 0; i < ix->numel; i++)
        ix->data[i] = (int32_t)(ag_rng_next(&r) % (uint64_t)n);
    return ix;
}

static void test_gather_gradcheck(void **state)
{
    (void)state;
    ag_tensor *a = rand_leaf(6, 1.0f, SHP(3, 4, 2));
    ag_tensor *row = rand_leaf(7, 1.0f, SHP(1, 4, 2));
    ag_index *ix = rand_index(1, 4, SHP(3, 5, 2)), *ixb = rand_index(2, 2, SHP(3, 4, 1));
    ag_tensor *in[1] = {a};
    args g1 = {.axis = 1, .idx = ix}, g2 = {.axis = -1, .idx = ixb};
    assert_gradcheck(f_gather, in, 1, &g1);
    assert_gradcheck(f_gather, in, 1, &g2);
    ag_tensor *in_row[1] = {row}; /* a broadcast before the axis: the serial backward */
    assert_gradcheck(f_gather, in_row, 1, &g1);
    ag_index_free(ix);
    ag_index_free(ixb);
    ag_tensor_free(a);
    ag_tensor_free(row);
}

/* enough elements for threads: every output element is its pick */
static void test_gather_large(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = rand_leaf(8, 1.0f, SHP(64, 50, 16));
    ag_index *ix = rand_index(3, 50, SHP(64, 40, 16));
    ag_tensor *y = ag_gather(c, a, ix, 1);
    assert_shape(y, 64, 40, 16);
    for (int64_t o = 0; o < 64; o++)
        for (int64_t k = 0; k < 40; k++)
            for (int64_t i = 0; i < 16; i++) {
                int64_t e = (o * 40 + k) * 16 + i;
                assert_true(y->data[e] == a->data[(o * 50 + ix->data[e]) * 16 + i]);
            }
    args g = {.axis = 1, .idx = ix};
    ag_tensor *in[1] = {a};
    assert_gradcheck_linear(f_gather, in, 1, &g);
    ag_index_free(ix);
    ag_tensor_free(a);
    ag_ctx_free(c);
}

/* ================================================================ index_select */

static void test_index_select_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = iota(c, SHP(2, 3, 2)); /* a[i, j, k] = 6 i + 2 j + k */
    ag_tensor *y = ag_index_select(c, a, INDEX(c, SHP(3), 2, 0, 2), 1);
    assert_shape(y, 2, 3, 2);
    assert_close(y->data, FLOATS(4, 5, 0, 1, 4, 5, 10, 11, 6, 7, 10, 11), 12, 0);
    y = ag_index_select(c, a, INDEX(c, SHP(1), 1), 0);
    assert_shape(y, 1, 3, 2);
    assert_close(y->data, FLOATS(6, 7, 8, 9, 10, 11), 6, 0);
    y = ag_index_select(c, a, ag_index_new(c, (int32_t[]){1}, AG_SCALAR), -1); /* 0-dim */
    assert_shape(y, 2, 3, 1);
    assert_close(y->data, FLOATS(1, 3, 5, 7, 9, 11), 6, 0);
    y = ag_index_select(c, a, ag_index_new(c, NULL, SHP(0)), 1); /* none */
    assert_shape(y, 2, 0, 2);

    /* backward: index_add of the seed, repeated rows adding */
    ag_tensor *p = ag_zeros(NULL, SHP(3, 2));
    ag_set_requires_grad(p, true);
    ag_tensor *s = ag_index_select(c, p, INDEX(c, SHP(4), 2, 0, 2, 2), 0);
    assert_true(ag_backward_with(c, s, seed_like(c, s))); /* rows (1 2) (3 4) (5 6) (7 8) */
    assert_close(p->grad, FLOATS(3, 4, 0, 0, 1 + 5 + 7, 2 + 6 + 8), 6, 0);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static ag_tensor *f_index_select(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const args *a = u;
    return weighted_sum(c, ag_index_select(c, in[0], a->idx, a->axis));
}

static void test_index_select_gradcheck(void **state)
{
    (void)state;
    ag_tensor *a = rand_leaf(9, 1.0f, SHP(3, 4, 2));
    ag_index *ix = ag_index_new(NULL, (int32_t[]){3, 0, 3, 1, 3}, SHP(5));
    ag_tensor *in[1] = {a};
    for (int axis = 0; axis < 3; axis++) {
        ag_index *use = axis == 1 ? ix : ag_index_new(NULL, (int32_t[]){1, 1, 0}, SHP(3));
        args g = {.axis = axis, .idx = use};
        assert_gradcheck(f_index_select, in, 1, &g);
        if (use != ix)
            ag_index_free(use);
    }
    /* threads: (outer, column block) pairs; one outer slice and many column blocks */
    ag_tensor *big = rand_leaf(10, 1.0f, SHP(4, 100, 200));
    ag_index *bix = rand_index(4, 100, SHP(150));
    ag_tensor *in2[1] = {big};
    args g = {.axis = 1, .idx = bix};
    assert_gradcheck_linear(f_index_select, in2, 1, &g);
    ag_tensor *wide = rand_leaf(11, 1.0f, SHP(300, 400));
    ag_tensor *in3[1] = {wide};
    args g0 = {.axis = 0, .idx = bix};
    assert_gradcheck_linear(f_index_select, in3, 1, &g0);
    ag_index_free(bix);
    ag_index_free(ix);
    ag_tensor_free(a);
    ag_tensor_free(big);
    ag_tensor_free(wide);
}

/* ================================================================ stack */

static void test_stack_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = iota(c, SHP(2, 2)), *b = ag_add_scalar(c, iota(c, SHP(2, 2)), 10);
    ag_tensor *ab[2] = {a, b};
    ag_tensor *y = ag_stack(c, ab, 2, 0);
    assert_shape(y, 2, 2, 2);
    assert_close(y->data, FLOATS(0, 1, 2, 3, 10, 11, 12, 13), 8, 0);
    y = ag_stack(c, ab, 2, 1);
    assert_shape(y, 2, 2, 2);
    assert_close(y->data, FLOATS(0, 1, 10, 11, 2, 3, 12, 13), 8, 0);
    y = ag_stack(c, ab, 2, -1);
    assert_shape(y, 2, 2, 2);
    assert_close(y->data, FLOATS(0, 10, 1, 11, 2, 12, 3, 13), 8, 0);
    /* 0-dim tensors stack into a vector */
    ag_tensor *s[3] = {ag_scalar(c, 1), ag_scalar(c, 2), ag_scalar(c, 3)};
    y = ag_stack(c, s, 3, 0);
    assert_shape(y, 3);
    assert_close(y->data, FLOATS(1, 2, 3), 3, 0);
    ag_ctx_free(c);
}

static ag_tensor *f_stack(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    /* x, y, x: the first input twice, its grad the sum of two blocks */
    ag_tensor *ts[3] = {in[0], in[1], in[0]};
    return weighted_sum(c, ag_stack(c, ts, 3, ((const args *)u)->axis));
}

static void test_stack_gradcheck(void **state)
{
    (void)state;
    ag_tensor *in[2] = {rand_leaf(12, 1.0f, SHP(2, 3)), rand_leaf(13, 1.0f, SHP(2, 3))};
    for (int axis = -3; axis < 3; axis++) {
        args a = {.axis = axis};
        assert_gradcheck(f_stack, in, 2, &a);
    }
    free_all(in, 2);
}

/* ================================================================ chunk, split */

static void test_chunk_sizes(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *out[8];
    assert_int_equal(ag_chunk(c, iota(c, SHP(6)), 4, 0, out), 3); /* torch: 2, 2, 2 */
    for (int k = 0; k < 3; k++) {
        assert_shape(out[k], 2);
        assert_close(out[k]->data, FLOATS(2.0f * k, 2.0f * k + 1), 2, 0);
    }
    assert_int_equal(ag_chunk(c, iota(c, SHP(2, 5)), 3, 1, out), 3); /* 2, 2, 1 */
    assert_shape(out[0], 2, 2);
    assert_shape(out[2], 2, 1);
    assert_close(out[1]->data, FLOATS(2, 3, 7, 8), 4, 0);
    assert_close(out[2]->data, FLOATS(4, 9), 2, 0);
    assert_int_equal(ag_chunk(c, iota(c, SHP(3, 0)), 3, 1, out), 3); /* empty: 3 empty pieces */
    for (int k = 0; k < 3; k++)
        assert_shape(out[k], 3, 0);
    assert_int_equal(ag_chunk(c, iota(c, SHP(3)), 1, 0, out), 1);
    assert_shape(out[0], 3);
    assert_int_equal(ag_chunk(c, iota(c, SHP(2)), 5, 0, out), 2); /* more chunks than rows */
    ag_ctx_free(c);
}

/* Views exactly when every dim before the axis has size 1: the piece's data
 * lies inside its input's, so a write through one shows in the other. */
static void test_chunk_split_views(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *out[3];
    ag_tensor *x = iota(c, SHP(6, 4));
    assert_int_equal(ag_chunk(c, x, 3, 0, out), 3);
    for (int k = 0; k < 3; k++)
        assert_ptr_equal(out[k]->data, x->data + 8 * k);
    out[1]->data[0] = -1.0f;
    assert_true(x->data[8] == -1.0f);
    /* (1, T, C) along T: the GPT's batch-of-one shape */
    ag_tensor *seq = iota(c, SHP(1, 6, 4));
    assert_true(ag_split(c, seq, (int64_t[]){2, 4}, 2, 1, out));
    assert_ptr_equal(out[0]->data, seq->data);
    assert_ptr_equal(out[1]->data, seq->data + 8);
    /* along the last axis of (6, 4): rows are not contiguous, so copies */
    assert_int_equal(ag_chunk(c, x, 2, 1, out), 2);
    assert_true(out[0]->data < x->data || out[0]->data >= x->data + 24);
    assert_close(out[1]->data, FLOATS(2, 3, 6, 7), 4, 0);
    ag_ctx_free(c);
}

static ag_tensor *f_chunk(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const args *a = u;
    ag_tensor *out[8], *sum = NULL;
    int k = ag_chunk(c, in[0], a->n, a->axis, out);
    for (int i = 0; i < k; i++) {
        /* a different weight per piece: the scale makes pieces of one shape differ */
        ag_tensor *t = weighted_sum(c, ag_mul_scalar(c, out[i], (float)(i + 1)));
        sum = sum ? ag_add(c, sum, t) : t;
    }
    return sum;
}

static void test_chunk_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(14, 1.0f, SHP(5, 3));
    ag_tensor *in[1] = {x};
    args view = {.axis = 0, .n = 3}, copy = {.axis = 1, .n = 2};
    assert_gradcheck(f_chunk, in, 1, &view);
    assert_gradcheck(f_chunk, in, 1, &copy);
    ag_tensor_free(x);
}

/* ================================================================ expand */

static void test_expand_views_and_copies(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = iota(c, SHP(2, 1, 3));
    /* same element count: a view */
    ag_tensor *v = ag_expand(c, x, SHP(1, 2, 1, 3));
    assert_shape(v, 1, 2, 1, 3);
    assert_ptr_equal(v->data, x->data);
    v = ag_expand(c, x, SHP(-1, -1, -1));
    assert_ptr_equal(v->data, x->data);
    /* repeats: a copy */
    ag_tensor *y = ag_expand(c, x, SHP(2, 2, 3));
    assert_shape(y, 2, 2, 3);
    assert_true(y->data != x->data);
    assert_close(y->data, FLOATS(0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5), 12, 0);
    y = ag_expand(c, ag_from_data(c, FLOATS(7, 8), SHP(2, 1)), SHP(3, 2, 2));
    assert_close(y->data, FLOATS(7, 7, 8, 8, 7, 7, 8, 8, 7, 7, 8, 8), 12, 0);
    ag_tensor *one = ag_expand(c, ag_scalar(c, 5), SHP(2, 2)); /* 0-dim */
    assert_close(one->data, FLOATS(5, 5, 5, 5), 4, 0);

    /* backward of a copy: the seed summed over the repeats */
    ag_tensor *p = ag_zeros(NULL, SHP(2, 1));
    ag_set_requires_grad(p, true);
    ag_tensor *e = ag_expand(c, p, SHP(2, 2, 3)); /* seed 1..12 */
    assert_true(ag_backward_with(c, e, seed_like(c, e)));
    assert_close(p->grad, FLOATS(1 + 2 + 3 + 7 + 8 + 9, 4 + 5 + 6 + 10 + 11 + 12), 2, 0);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static ag_tensor *f_expand(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const args *a = u;
    return weighted_sum(c, ag_expand(c, in[0], a->ndim, a->shape));
}

static void test_expand_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(15, 1.0f, SHP(3, 1));
    ag_tensor *in[1] = {x};
    args copy = {.ndim = 3, .shape = (int64_t[]){2, 3, 4}};
    args view = {.ndim = 3, .shape = (int64_t[]){1, 3, 1}};
    assert_gradcheck(f_expand, in, 1, &copy);
    assert_gradcheck(f_expand, in, 1, &view);
    ag_tensor *big = rand_leaf(16, 1.0f, SHP(64, 1, 32)); /* threads in the copy */
    ag_tensor *in2[1] = {big};
    args wide = {.ndim = 3, .shape = (int64_t[]){64, 40, 32}};
    assert_gradcheck_linear(f_expand, in2, 1, &wide);
    ag_tensor_free(x);
    ag_tensor_free(big);
}

/* ================================================================ detach */

/* d/dx (x * detach(x)) is detach(x), not 2x: finite differences see through a
 * detach, so this is a value check rather than a gradcheck */
static void test_detach(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(NULL, FLOATS(1, -2, 3), SHP(3));
    ag_set_requires_grad(x, true);
    ag_tensor *d = ag_detach(c, x);
    assert_shape(d, 3);
    assert_ptr_equal(d->data, x->data);
    assert_false(ag_requires_grad(d));
    assert_null(ag_op_of(d));
    ag_tensor *y = ag_mul(c, x, d);
    assert_true(ag_backward_with(c, y, seed_like(c, y)));
    assert_close(x->grad, FLOATS(1, -4, 9), 3, 0);
    /* a detached view outlives its released base: the buffer stays */
    ag_tensor *t = ag_mul_scalar(c, x, 2.0f);
    ag_tensor *dt = ag_detach(c, t);
    ag_release(c, t);
    ag_tensor *other = ag_full(c, 9.0f, SHP(3)); /* would reuse t's buffer if it were free */
    assert_true(other->data != dt->data);
    assert_close(dt->data, FLOATS(2, -4, 6), 3, 0);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ================================================================ rms_norm */

static ag_tensor *rms_composed(ag_ctx *c, ag_tensor *x, ag_tensor *w, float eps)
{
    ag_tensor *ms = ag_mean(c, ag_mul(c, x, x), -1, true);
    ag_tensor *y = ag_mul(c, x, ag_rsqrt(c, ag_add_scalar(c, ms, eps)));
    return w ? ag_mul(c, y, w) : y;
}

static void test_rms_norm_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    /* (3, 4): mean square 12.5; (2, -1) weights */
    ag_tensor *x = ag_from_data(c, FLOATS(3, 4, 0, 0), SHP(2, 2));
    ag_tensor *w = ag_from_data(c, FLOATS(2, -1), SHP(2));
    ag_tensor *y = ag_rms_norm(c, x, w, 0.0f);
    float r = 1.0f / sqrtf(12.5f);
    assert_close(y->data, FLOATS(6 * r, -4 * r), 2, 1e-6);
    /* an all-zero row stays 0 with eps > 0 */
    y = ag_rms_norm(c, x, NULL, 1e-6f);
    assert_close(y->data + 2, FLOATS(0, 0), 2, 0);
    ag_ctx_free(c);
}

/* The one op against the composition in values and grads (x, w), with and
 * without a weight; big enough for threads too. */
static void check_rms_composition(int64_t rows, int64_t C, bool weight)
{
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(17 + (uint64_t)C, 2.0f, SHP(rows, C));
    ag_tensor *w = weight ? rand_leaf(18, 1.0f, SHP(C)) : NULL;
    ag_tensor *want = rms_composed(c, x, w, 1e-5f);
    assert_true(ag_backward(c, weighted_sum(c, want)));
    float *gx = malloc((size_t)x->numel * sizeof *gx), *gw = malloc((size_t)C * sizeof *gw);
    memcpy(gx, x->grad, (size_t)x->numel * sizeof *gx);
    if (w)
        memcpy(gw, w->grad, (size_t)C * sizeof *gw);
    ag_zero_grad(x);
    if (w)
        ag_zero_grad(w);
    ag_tensor *got = ag_rms_norm(c, x, w, 1e-5f);
    assert_close(got->data, want->data, got->numel, 1e-5);
    assert_true(ag_backward(c, weighted_sum(c, got)));
    assert_close(x->grad, gx, x->numel, 1e-4);
    if (w)
        assert_close(w->grad, gw, C, 1e-4);
    free(gx);
    free(gw);
    ag_tensor_free(x);
    ag_tensor_free(w);
    ag_ctx_free(c);
}

static void test_rms_norm_matches_composition(void **state)
{
    (void)state;
    check_rms_composition(6, 8, true);
    check_rms_composition(6, 37, false);
    check_rms_composition(1000, 64, true); /* 64000 elements: threads */
}

static ag_tensor *f_rms(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)u;
    return weighted_sum(c, ag_rms_norm(c, in[0], n > 1 ? in[1] : NULL, 1e-5f));
}

static void test_rms_norm_gradcheck(void **state)
{
    (void)state;
    ag_tensor *in[2] = {rand_leaf(19, 1.0f, SHP(2, 3, 5)), rand_leaf(20, 1.0f, SHP(5))};
    assert_gradcheck(f_rms, in, 2, NULL);
    assert_gradcheck(f_rms, in, 1, NULL);
    free_all(in, 2);
}

/* ================================================================ errors */

static void test_errors(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_zeros(c, SHP(2, 3)), *out[4];
    ag_tensor *s = ag_scalar(c, 1.0f);
    /* bad axes */
    assert_ag_error(ag_var(c, x, 2, true, false), "var", "axis 2", "(2, 3)");
    assert_ag_error(ag_cumsum(c, x, -3), "cumsum", "axis -3", "(2, 3)");
    assert_ag_error(ag_argmax(c, x, 5, false), "argmax", "axis 5", "(2, 3)");
    assert_ag_error(ag_argmax(c, ag_zeros(c, SHP(2, 0)), 1, false), "argmax", "empty", "(2, 0)");
    assert_ag_error(ag_gather(c, x, INDEX(c, SHP(2, 1), 0, 0), 2), "gather", "axis 2", "(2, 3)");
    assert_ag_error(ag_index_select(c, x, INDEX(c, SHP(1), 0), -3), "index_select", "axis -3");
    assert_ag_error(ag_chunk(c, x, 2, 2, out), "chunk", "axis 2", "(2, 3)");
    assert_ag_error(ag_var(c, s, 0, true, false), "var", "()");
    /* indices out of range, negative, wrong shapes */
    assert_ag_error(ag_gather(c, x, INDEX(c, SHP(2, 1), 0, 3), 1), "gather", "index 3",
                    "axis 1", "(2, 3)");
    assert_ag_error(ag_gather(c, x, INDEX(c, SHP(2, 1), -1, 0), 1), "gather", "index -1");
    assert_ag_error(ag_gather(c, x, INDEX(c, SHP(2), 0, 0), 1), "gather", "(2)", "(2, 3)");
    assert_ag_error(ag_gather(c, x, INDEX(c, SHP(3, 1), 0, 0, 0), 1), "gather", "(3, 1)",
                    "(2, 3)");
    assert_ag_error(ag_index_select(c, x, INDEX(c, SHP(2), 0, 2), 0), "index_select", "index 2",
                    "(2, 3)");
    assert_ag_error(ag_index_select(c, x, INDEX(c, SHP(1, 1), 0), 0), "index_select", "(1, 1)",
                    "(2, 3)");
    /* stack: shapes differ, axis beyond ndim, nothing to stack */
    ag_tensor *two[2] = {x, ag_zeros(c, SHP(3, 2))};
    assert_ag_error(ag_stack(c, two, 2, 0), "stack", "(3, 2)", "(2, 3)");
    two[1] = x;
    assert_ag_error(ag_stack(c, two, 2, 3), "stack", "axis 3", "(2, 3)");
    assert_ag_error(ag_stack(c, two, 2, -4), "stack", "axis -4");
    assert_ag_error(ag_stack(c, two, 0, 0), "stack", "no tensors");
    /* chunk count */
    assert_ag_error(ag_chunk(c, x, 0, 0, out), "chunk", "0 chunks", "(2, 3)");
    /* expand: a size that is neither equal nor 1, fewer dims, a negative size */
    assert_ag_error(ag_expand(c, x, SHP(2, 4)), "expand", "(2, 3)", "(2, 4)");
    assert_ag_error(ag_expand(c, x, SHP(3)), "expand", "(2, 3)", "(3)");
    assert_ag_error(ag_expand(c, x, SHP(-1, 2, 3)), "expand", "(-1, 2, 3)");
    /* detach needs a ctx */
    assert_ag_error(ag_detach(NULL, x), "detach", "ctx", "(2, 3)");
    /* rms_norm: weight of the wrong size, 0-dim input, negative eps */
    assert_ag_error(ag_rms_norm(c, x, ag_ones(c, SHP(2)), 1e-5f), "rms_norm", "(2, 3)", "(2)");
    assert_ag_error(ag_rms_norm(c, s, NULL, 1e-5f), "rms_norm", "()", "none");
    assert_ag_error(ag_rms_norm(c, x, NULL, -1.0f), "rms_norm", "eps", "-1");
    /* a NULL input (an earlier failure) passes on quietly */
    catch_errors();
    assert_null(ag_var(c, NULL, 0, true, false));
    assert_null(ag_gather(c, x, NULL, 0));
    assert_null(ag_expand(c, NULL, SHP(2)));
    assert_int_equal(error_count, 0);
    ag_set_error_handler(NULL, NULL);
    ag_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_var_by_hand),
        cmocka_unit_test(test_var_gradcheck),
        cmocka_unit_test(test_cumsum_by_hand),
        cmocka_unit_test(test_cumsum_gradcheck),
        cmocka_unit_test(test_argmax_by_hand),
        cmocka_unit_test(test_gather_by_hand),
        cmocka_unit_test(test_gather_gradcheck),
        cmocka_unit_test(test_gather_large),
        cmocka_unit_test(test_index_select_by_hand),
        cmocka_unit_test(test_index_select_gradcheck),
        cmocka_unit_test(test_stack_by_hand),
        cmocka_unit_test(test_stack_gradcheck),
        cmocka_unit_test(test_chunk_sizes),
        cmocka_unit_test(test_chunk_split_views),
        cmocka_unit_test(test_chunk_gradcheck),
        cmocka_unit_test(test_expand_views_and_copies),
        cmocka_unit_test(test_expand_gradcheck),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_rms_norm_by_hand),
        cmocka_unit_test(test_rms_norm_matches_composition),
        cmocka_unit_test(test_rms_norm_gradcheck),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
