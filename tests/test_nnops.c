/* test_nnops.c - the neural-network ops: softmax and log-softmax (any axis,
 * large logits, -inf entries), masked_fill with a broadcast mask, the causal
 * mask (square, non-square, batched; with -inf then softmax, exact zeros),
 * cross-entropy (by hand, ignore_index, all ignored, its gradient
 * (softmax - onehot) / count), embedding (gather, repeated indices adding up
 * their grads) and dropout (identity when off, the kept fraction and scale,
 * seeding, its gradient). Forward values by hand where practical; gradcheck
 * for each op.
 *
 * Literals for exp/log values were computed with python3's math module, e.g.
 *   python3 -c "import math; e=[math.exp(x) for x in (1,2,3)]; print([v/sum(e) for v in e])" */
#include "test_util.h"

#include "internal.h"

#include <stdlib.h>

#define SHP(...) AG_SHAPE(__VA_ARGS__)

/* ------------------------------------------------------------ reference */

/* softmax (or log-softmax) of x along axis, in double, into want */
static void ref_softmax(const ag_tensor *x, int axis, bool log_, float *want)
{
    int64_t outer = 1, inner = 1, n = x->shape[axis];
    for (int i = 0; i < axis; i++)
        outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++)
        inner *= x->shape[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *xl = x->data + o * n * inner + i;
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < n; k++)
                m = xl[k * inner] > m ? xl[k * inner] : m;
            for (int64_t k = 0; k < n; k++)
                s += exp(xl[k * inner] - m);
            for (int64_t k = 0; k < n; k++) {
                double v = xl[k * inner] - m;
                want[o * n * inner + i + k * inner] = (float)(log_ ? v - log(s) : exp(v) / s);
            }
        }
}

/* ------------------------------------------------------------ softmax */

static void test_softmax_last_axis_by_hand(void **state)
{
    (void)state;
    /* softmax [1,2,3] = e^k / (e + e^2 + e^3); [0,0,0] -> 1/3 each */
    const float x[6] = {1, 2, 3, 0, 0, 0};
    const float want[6] = {0.0900305732f, 0.244728471f, 0.665240956f, 1.0f / 3, 1.0f / 3, 1.0f / 3};
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_softmax(c, ag_from_data(c, x, SHP(2, 3)), -1);
    assert_shape(y, 2, 3);
    assert_close(y->data, want, 6, 1e-6);
    /* a constant shift changes nothing: [101,102,103] */
    const float xs[3] = {101, 102, 103};
    ag_tensor *ys = ag_softmax(c, ag_from_data(c, xs, SHP(1, 3)), 1);
    assert_close(ys->data, want, 3, 1e-6);
    ag_ctx_free(c);
}

static void test_log_softmax_last_axis_by_hand(void **state)
{
    (void)state;
    /* log_softmax [1,2,3] = k - log(e + e^2 + e^3) = k - 3.40760596; [0,0,0] -> -log 3 */
    const float x[6] = {1, 2, 3, 0, 0, 0};
    const float want[6] = {-2.40760596f, -1.40760596f, -0.407605964f,
                           -1.09861229f, -1.09861229f, -1.09861229f};
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_log_softmax(c, ag_from_data(c, x, SHP(2, 3)), 1);
    assert_shape(y, 2, 3);
    assert_close(y->data, want, 6, 1e-6);
    ag_ctx_free(c);
}

static void test_softmax_large_logits_are_stable(void **state)
{
    (void)state;
    /* [1000, 1001]: 1/(1+e), e/(1+e); [-1000, -1002]: 1/(1+e^-2), e^-2/(1+e^-2).
     * Without subtracting the max, exp overflows to inf (or underflows to 0). */
    const float x[4] = {1000, 1001, -1000, -1002};
    const float want[4] = {0.268941421f, 0.731058579f, 0.880797078f, 0.119202922f};
    const float want_log[4] = {-1.31326169f, -0.313261688f, -0.126928011f, -2.12692801f};
    ag_ctx *c = ag_ctx_new();
    ag_tensor *xt = ag_from_data(c, x, SHP(2, 2));
    assert_close(ag_softmax(c, xt, -1)->data, want, 4, 1e-6);
    assert_close(ag_log_softmax(c, xt, -1)->data, want_log, 4, 1e-6);
    ag_ctx_free(c);
}

/* Over axis 1 of (2,3,4) the lines are strided by 4: softmax with axis 1 and
 * -2 is the same, sums to 1 down that axis and matches the reference. */
static void test_softmax_middle_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_randn(c, 3, 0.0f, 2.0f, SHP(2, 3, 4));
    ag_tensor *y = ag_softmax(c, x, 1), *y2 = ag_softmax(c, x, -2);
    ag_tensor *ly = ag_log_softmax(c, x, 1);
    float want[24], want_log[24];
    ref_softmax(x, 1, false, want);
    ref_softmax(x, 1, true, want_log);
    assert_close(y->data, want, 24, 1e-6);
    assert_close(y2->data, y->data, 24, 0.0);
    assert_close(ly->data, want_log, 24, 1e-6);
    ag_tensor *s = ag_sum(c, y, 1, false);
    assert_shape(s, 2, 4);
    const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    assert_close(s->data, ones, 8, 1e-6);

    /* and the first axis, as -3 */
    ag_tensor *y0 = ag_softmax(c, x, -3);
    ref_softmax(x, 0, false, want);
    assert_close(y0->data, want, 24, 1e-6);
    ag_ctx_free(c);
}

static void test_softmax_rows_sum_to_one(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_randn(c, 4, 0.0f, 5.0f, SHP(16, 37));
    ag_tensor *y = ag_softmax(c, x, -1), *ly = ag_log_softmax(c, x, -1);
    for (int64_t r = 0; r < 16; r++) {
        double s = 0, sl = 0;
        for (int64_t k = 0; k < 37; k++) {
            float v = y->data[r * 37 + k];
            assert_true(v >= 0.0f && v <= 1.0f);
            s += v;
            sl += exp(ly->data[r * 37 + k]);
        }
        assert_true(fabs(s - 1.0) < 1e-5);
        assert_true(fabs(sl - 1.0) < 1e-5);
    }
    float want[16 * 37];
    ref_softmax(x, 1, false, want);
    assert_close(y->data, want, 16 * 37, 1e-6);
    ag_ctx_free(c);
}

/* -inf logits get probability exactly 0 and log-probability -inf; the rest
 * share the mass: [1, -inf, 1, -inf] -> [1/2, 0, 1/2, 0]. */
static void test_softmax_with_neg_inf_entries(void **state)
{
    (void)state;
    const float x[8] = {1, -INFINITY, 1, -INFINITY, -INFINITY, 2, -INFINITY, -INFINITY};
    const float want[8] = {0.5f, 0, 0.5f, 0, 0, 1, 0, 0};
    const float ln2 = 0.693147181f;
    const float want_log[8] = {-ln2, -INFINITY, -ln2, -INFINITY, -INFINITY, 0, -INFINITY,
                               -INFINITY};
    ag_tensor *xt = leaf(x, SHP(2, 4));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_softmax(c, xt, -1);
    for (int i = 0; i < 8; i++)
        assert_true(y->data[i] == want[i]);
    assert_close(ag_log_softmax(c, xt, -1)->data, want_log, 8, 1e-6);

    /* backward: nothing reaches the -inf logits, and no NaN anywhere.
     * softmax grad = y (g - sum g y): row 0, g = [1,2,3,4]: sum g y = 2,
     * so [0.5 (1 - 2), 0, 0.5 (3 - 2), 0] = [-0.5, 0, 0.5, 0]; row 1 is all 0. */
    const float g[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_true(ag_backward_with(c, y, ag_from_data(c, g, SHP(2, 4))));
    const float want_g[8] = {-0.5f, 0, 0.5f, 0, 0, 0, 0, 0};
    assert_close(xt->grad, want_g, 8, 1e-6);
    ag_ctx_free(c);
    ag_tensor_free(xt);
}

typedef struct {
    int axis;
    bool log_;
} softmax_args;

static ag_tensor *f_softmax(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    const softmax_args *s = user;
    return weighted_sum(c, s->log_ ? ag_log_softmax(c, in[0], s->axis)
                                   : ag_softmax(c, in[0], s->axis));
}

static void gradcheck_softmax(bool log_)
{
    ag_tensor *x = rand_leaf(5, 1.5f, SHP(2, 3, 4));
    ag_tensor *in[1] = {x};
    const int axes[] = {-1, 1, -2, 0};
    for (size_t i = 0; i < sizeof axes / sizeof *axes; i++) {
        softmax_args s = {axes[i], log_};
        assert_gradcheck(f_softmax, in, 1, &s);
    }
    ag_tensor_free(x);
}

static void test_softmax_gradcheck(void **state)
{
    (void)state;
    gradcheck_softmax(false);
}

static void test_log_softmax_gradcheck(void **state)
{
    (void)state;
    gradcheck_softmax(true);
}

/* Gradcheck through -inf logits made by masked_fill: the loss stays finite. */
static ag_tensor *f_softmax_masked(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    const ag_tensor *mask = user;
    return weighted_sum(c, ag_softmax(c, ag_masked_fill(c, in[0], mask, -INFINITY), -1));
}

static void test_softmax_neg_inf_gradcheck(void **state)
{
    (void)state;
    const float m[12] = {0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1};
    ag_tensor *mask = ag_from_data(NULL, m, SHP(3, 4));
    ag_tensor *x = rand_leaf(6, 1.0f, SHP(3, 4));
    ag_tensor *in[1] = {x};
    assert_gradcheck(f_softmax_masked, in, 1, mask);
    ag_tensor_free(x);
    ag_tensor_free(mask);
}

static void test_softmax_bad_axis(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_zeros(c, SHP(2, 3));
    assert_ag_error(assert_null(ag_softmax(c, x, 2)), "softmax", "axis 2", "(2, 3)");
    assert_ag_error(assert_null(ag_log_softmax(c, x, -3)), "log_softmax", "axis -3");
    ag_ctx_free(c);
}

/* ------------------------------------------------------------ masked_fill */

static void test_masked_fill_broadcast_mask(void **state)
{
    (void)state;
    const float a[6] = {1, 2, 3, 4, 5, 6};
    ag_ctx *c = ag_ctx_new();
    ag_tensor *at = ag_from_data(c, a, SHP(2, 3));

    /* a column mask (1,3) applies to every row */
    ag_tensor *col = ag_from_data(c, (const float[3]){0, 1, 0}, SHP(1, 3));
    const float want_col[6] = {1, -9, 3, 4, -9, 6};
    assert_close(ag_masked_fill(c, at, col, -9.0f)->data, want_col, 6, 0.0);

    /* a row mask (2,1); any nonzero (here 2) masks */
    ag_tensor *row = ag_from_data(c, (const float[2]){2, 0}, SHP(2, 1));
    const float want_row[6] = {-9, -9, -9, 4, 5, 6};
    assert_close(ag_masked_fill(c, at, row, -9.0f)->data, want_row, 6, 0.0);

    /* fewer dims: (3) against (2,3); a negative mask value masks too */
    ag_tensor *vec = ag_from_data(c, (const float[3]){-1, 0, 0.5f}, SHP(3));
    const float want_vec[6] = {7, 2, 7, 7, 5, 7};
    assert_close(ag_masked_fill(c, at, vec, 7.0f)->data, want_vec, 6, 0.0);

    /* 3-D: (2,1,3) mask against (2,2,3) */
    ag_tensor *a3 = ag_from_data(c, (const float[12]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
                                 SHP(2, 2, 3));
    ag_tensor *m3 = ag_from_data(c, (const float[6]){1, 0, 0, 0, 0, 1}, SHP(2, 1, 3));
    const float want3[12] = {0, 2, 3, 0, 5, 6, 7, 8, 0, 10, 11, 0};
    ag_tensor *y3 = ag_masked_fill(c, a3, m3, 0.0f);
    assert_shape(y3, 2, 2, 3);
    assert_close(y3->data, want3, 12, 0.0);
    ag_ctx_free(c);
}

static void test_masked_fill_grad_is_zero_where_masked(void **state)
{
    (void)state;
    ag_tensor *a = rand_leaf(1, 1.0f, SHP(2, 3));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *mask = ag_from_data(c, (const float[3]){0, 1, 0}, SHP(3));
    ag_tensor *y = ag_masked_fill(c, a, mask, 100.0f);
    const float g[6] = {1, 2, 3, 4, 5, 6};
    assert_true(ag_backward_with(c, y, ag_from_data(c, g, SHP(2, 3))));
    const float want[6] = {1, 0, 3, 4, 0, 6};
    assert_close(a->grad, want, 6, 0.0);
    ag_ctx_free(c);
    ag_tensor_free(a);
}

static ag_tensor *f_masked_fill(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    return weighted_sum(c, ag_masked_fill(c, in[0], user, 3.0f));
}

static void test_masked_fill_gradcheck(void **state)
{
    (void)state;
    ag_tensor *mask = ag_from_data(NULL, (const float[4]){1, 0, 0, 1}, SHP(4, 1));
    ag_tensor *x = rand_leaf(2, 1.0f, SHP(2, 4, 3));
    ag_tensor *in[1] = {x};
    assert_gradcheck(f_masked_fill, in, 1, mask);
    ag_tensor_free(x);
    ag_tensor_free(mask);
}

static void test_masked_fill_mask_must_broadcast_to_input(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_zeros(c, SHP(3)), *m = ag_zeros(c, SHP(2, 3)), *m4 = ag_zeros(c, SHP(4));
    assert_ag_error(assert_null(ag_masked_fill(c, a, m, 0.0f)), "masked_fill", "(2, 3)", "(3)");
    assert_ag_error(assert_null(ag_masked_fill(c, a, m4, 0.0f)), "masked_fill", "(4)");
    ag_ctx_free(c);
}

/* ------------------------------------------------------------ causal mask */

static void test_causal_mask_square(void **state)
{
    (void)state;
    const float a[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float want[9] = {1, -5, -5, 4, 5, -5, 7, 8, 9};
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_causal_mask(c, ag_from_data(c, a, SHP(3, 3)), -5.0f);
    assert_shape(y, 3, 3);
    assert_close(y->data, want, 9, 0.0);
    ag_ctx_free(c);
}

static void test_causal_mask_non_square(void **state)
{
    (void)state;
    const float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ag_ctx *c = ag_ctx_new();
    /* T=2, S=4: row t keeps columns 0..t */
    const float want_wide[8] = {1, 0, 0, 0, 5, 6, 0, 0};
    ag_tensor *w = ag_causal_mask(c, ag_from_data(c, a, SHP(2, 4)), 0.0f);
    assert_shape(w, 2, 4);
    assert_close(w->data, want_wide, 8, 0.0);
    /* T=4, S=2: rows 1.. keep both columns */
    const float want_tall[8] = {1, 0, 3, 4, 5, 6, 7, 8};
    ag_tensor *t = ag_causal_mask(c, ag_from_data(c, a, SHP(4, 2)), 0.0f);
    assert_shape(t, 4, 2);
    assert_close(t->data, want_tall, 8, 0.0);
    ag_ctx_free(c);
}

/* (2,3,2,3): every (2,3) slice masked the same way, the rest kept. */
static void test_causal_mask_batched(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_randn(c, 9, 0.0f, 1.0f, SHP(2, 3, 2, 3));
    ag_tensor *y = ag_causal_mask(c, x, -1e9f);
    assert_shape(y, 2, 3, 2, 3);
    for (int64_t b = 0; b < 6; b++)
        for (int64_t t = 0; t < 2; t++)
            for (int64_t s = 0; s < 3; s++) {
                int64_t i = (b * 2 + t) * 3 + s;
                assert_true(y->data[i] == (s > t ? -1e9f : x->data[i]));
            }
    ag_ctx_free(c);
}

/* -inf above the diagonal then softmax: exactly 0 there, row 0 exactly
 * [1, 0, ...], rows summing to 1; its gradcheck has a finite loss. */
static void test_causal_mask_softmax_exact_zeros(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_randn(c, 8, 0.0f, 1.0f, SHP(2, 4, 4));
    ag_tensor *p = ag_softmax(c, ag_causal_mask(c, x, -INFINITY), -1);
    for (int64_t b = 0; b < 2; b++)
        for (int64_t t = 0; t < 4; t++) {
            const float *r = p->data + (b * 4 + t) * 4;
            double s = 0;
            for (int64_t j = 0; j < 4; j++) {
                if (j > t)
                    assert_true(r[j] == 0.0f);
                else
                    assert_true(r[j] > 0.0f);
                s += r[j];
            }
            assert_true(fabs(s - 1.0) < 1e-6);
            if (t == 0)
                assert_true(r[0] == 1.0f);
        }
    ag_ctx_free(c);
}

static ag_tensor *f_causal_softmax(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_softmax(c, ag_causal_mask(c, in[0], -INFINITY), -1));
}

static ag_tensor *f_causal(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_causal_mask(c, in[0], 2.0f));
}

static void test_causal_mask_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(10, 1.0f, SHP(2, 3, 4));
    ag_tensor *in[1] = {x};
    assert_gradcheck(f_causal, in, 1, NULL);
    assert_gradcheck(f_causal_softmax, in, 1, NULL);

    /* directly: nothing flows to the masked entries, all of g to the rest */
    ag_ctx *c = ag_ctx_new();
    ag_tensor *g = ag_ones(c, SHP(2, 3, 4));
    assert_true(ag_backward_with(c, ag_causal_mask(c, x, 2.0f), g));
    for (int64_t b = 0; b < 2; b++)
        for (int64_t t = 0; t < 3; t++)
            for (int64_t s = 0; s < 4; s++)
                assert_true(x->grad[(b * 3 + t) * 4 + s] == (s > t ? 0.0f : 1.0f));
    ag_ctx_free(c);
    ag_tensor_free(x);
}

/* ------------------------------------------------------------ cross-entropy */

/* logits [[1,2,3],[0.5,-1,2]], targets [2,0]:
 *   row 0: lse = 3.40760596, loss lse - 3   = 0.407605964
 *   row 1: lse = 2.24131130, loss lse - 0.5 = 1.74131130
 *   mean 1.07445863 */
static const float ce_logits[6] = {1, 2, 3, 0.5f, -1, 2};
#define CE_HAND 1.07445863f

static void test_cross_entropy_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_index *t = ag_index_new(c, (const int32_t[]){2, 0}, SHP(2));
    ag_tensor *l = ag_cross_entropy(c, ag_from_data(c, ce_logits, SHP(2, 3)), t, -100);
    assert_scalar_shape(l);
    assert_close(l->data, (const float[]){CE_HAND}, 1, 1e-6);
    ag_ctx_free(c);
}

/* Ignored rows count neither in the sum nor in the mean, whatever their
 * logits; the default -100 and a class index as ignore_index both work. */
static void test_cross_entropy_ignore_index(void **state)
{
    (void)state;
    const float x[9] = {1, 2, 3, 50, -7, 9, 0.5f, -1, 2};
    ag_tensor *xt = leaf(x, SHP(3, 3));
    ag_ctx *c = ag_ctx_new();
    ag_index *t = ag_index_new(c, (const int32_t[]){2, -100, 0}, SHP(3));
    ag_tensor *l = ag_cross_entropy(c, xt, t, -100);
    assert_close(l->data, (const float[]){CE_HAND}, 1, 1e-6);
    assert_true(ag_backward(c, l));
    for (int k = 3; k < 6; k++)
        assert_true(xt->grad[k] == 0.0f);

    ag_index *t1 = ag_index_new(c, (const int32_t[]){2, 1, 0}, SHP(3));
    assert_close(ag_cross_entropy(c, xt, t1, 1)->data, (const float[]){CE_HAND}, 1, 1e-6);
    ag_ctx_free(c);
    ag_tensor_free(xt);
}

static void test_cross_entropy_all_ignored_is_nan(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_index *t = ag_index_new(c, (const int32_t[]){-100, -100}, SHP(2));
    ag_tensor *l = ag_cross_entropy(c, ag_from_data(c, ce_logits, SHP(2, 3)), t, -100);
    assert_scalar_shape(l);
    assert_true(isnan(l->data[0]));
    ag_ctx_free(c);
}

static void test_cross_entropy_large_logits_are_stable(void **state)
{
    (void)state;
    /* [1000,1001,1002], target 0: log(1 + e + e^2) = 2.40760596;
     * grad softmax - onehot = [0.0900305732 - 1, 0.244728471, 0.665240956] */
    ag_tensor *x = leaf((const float[3]){1000, 1001, 1002}, SHP(1, 3));
    ag_ctx *c = ag_ctx_new();
    ag_index *t = ag_index_new(c, (const int32_t[]){0}, SHP(1));
    ag_tensor *l = ag_cross_entropy(c, x, t, -100);
    assert_close(l->data, (const float[]){2.40760596f}, 1, 1e-6);
    assert_true(ag_backward(c, l));
    const float want_g[3] = {-0.909969427f, 0.244728471f, 0.665240956f};
    assert_close(x->grad, want_g, 3, 1e-6);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

/* d loss / d logits = upstream * (softmax - onehot) / count on counted rows, 0 on ignored ones. */
static void test_cross_entropy_grad_is_softmax_minus_onehot(void **state)
{
    (void)state;
    const int32_t tg[5] = {3, -100, 0, 6, 3};
    ag_tensor *x = rand_leaf(12, 2.0f, SHP(5, 7));
    ag_ctx *c = ag_ctx_new();
    ag_index *t = ag_index_new(c, tg, SHP(5));
    ag_tensor *l = ag_mul_scalar(c, ag_cross_entropy(c, x, t, -100), 2.5f);
    assert_true(ag_backward(c, l));
    float p[35], want[35];
    ref_softmax(x, 1, false, p);
    for (int n = 0; n < 5; n++)
        for (int k = 0; k < 7; k++)
            want[n * 7 + k] = tg[n] == -100 ? 0.0f : 2.5f * (p[n * 7 + k] - (k == tg[n])) / 4.0f;
    assert_close(x->grad, want, 35, 1e-6);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

static ag_tensor *f_cross_entropy(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    return ag_cross_entropy(c, in[0], user, -100);
}

static void test_cross_entropy_gradcheck(void **state)
{
    (void)state;
    ag_index *t = ag_index_new(NULL, (const int32_t[]){4, 0, -100, 2}, SHP(4));
    ag_tensor *x = rand_leaf(13, 1.0f, SHP(4, 5));
    ag_tensor *in[1] = {x};
    assert_gradcheck(f_cross_entropy, in, 1, t);
    ag_tensor_free(x);
    ag_index_free(t);
}

static void test_cross_entropy_target_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_zeros(c, SHP(2, 3));
    ag_index *t = ag_index_new(c, (const int32_t[]){0, 3}, SHP(2));
    assert_ag_error(assert_null(ag_cross_entropy(c, x, t, -100)), "cross_entropy", "target 3",
                    "row 1", "3 classes");
    ag_ctx_free(c);
}

/* ------------------------------------------------------------ embedding */

static void test_embedding_gathers_rows(void **state)
{
    (void)state;
    float w[12];
    for (int i = 0; i < 12; i++)
        w[i] = (float)i; /* row v is [3v, 3v+1, 3v+2] */
    ag_ctx *c = ag_ctx_new();
    ag_index *ix = ag_index_new(c, (const int32_t[]){3, 0, 3, 1, 1, 2}, SHP(2, 3));
    ag_tensor *y = ag_embedding(c, ag_from_data(c, w, SHP(4, 3)), ix);
    assert_shape(y, 2, 3, 3);
    const float want[18] = {9, 10, 11, 0, 1, 2, 9, 10, 11, 3, 4, 5, 3, 4, 5, 6, 7, 8};
    assert_close(y->data, want, 18, 0.0);
    ag_ctx_free(c);
}

/* idx [[3,0,3],[1,1,2]] with output grad 1..18 (three per row):
 *   row 0 <- position 1: [4,5,6]
 *   row 1 <- positions 3, 4: [10+13, 11+14, 12+15] = [23,25,27]
 *   row 2 <- position 5: [16,17,18]
 *   row 3 <- positions 0, 2: [1+7, 2+8, 3+9] = [8,10,12] */
static void test_embedding_repeated_indices_add_grads(void **state)
{
    (void)state;
    ag_tensor *w = rand_leaf(3, 1.0f, SHP(4, 3));
    ag_ctx *c = ag_ctx_new();
    ag_index *ix = ag_index_new(c, (const int32_t[]){3, 0, 3, 1, 1, 2}, SHP(2, 3));
    float g[18];
    for (int i = 0; i < 18; i++)
        g[i] = (float)(i + 1);
    assert_true(ag_backward_with(c, ag_embedding(c, w, ix), ag_from_data(c, g, SHP(2, 3, 3))));
    const float want[12] = {4, 5, 6, 23, 25, 27, 16, 17, 18, 8, 10, 12};
    assert_close(w->grad, want, 12, 0.0);
    ag_ctx_free(c);
    ag_tensor_free(w);
}

/* Large enough for the column-split parallel scatter: against a plain loop. */
static void test_embedding_large_backward_matches_loop(void **state)
{
    (void)state;
    enum { V = 10, C = 70, N = 1000 };
    ag_tensor *w = rand_leaf(4, 1.0f, SHP(V, C));
    ag_ctx *c = ag_ctx_new();
    int32_t *idx = malloc(N * sizeof *idx);
    ag_rng r = ag_rng_new(5);
    for (int i = 0; i < N; i++)
        idx[i] = (int32_t)(ag_rng_next(&r) % V);
    ag_index *ix = ag_index_new(c, idx, SHP(N));
    ag_tensor *g = ag_randn(c, 6, 0.0f, 1.0f, SHP(N, C));
    ag_tensor *y = ag_embedding(c, w, ix);
    for (int i = 0; i < N; i++)
        assert_close(y->data + i * C, w->data + idx[i] * C, C, 0.0);
    assert_true(ag_backward_with(c, y, g));
    double *want = calloc(V * C, sizeof *want);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < C; k++)
            want[idx[i] * C + k] += g->data[i * C + k];
    float wantf[V * C];
    for (int i = 0; i < V * C; i++)
        wantf[i] = (float)want[i];
    assert_close(w->grad, wantf, V * C, 1e-5);
    free(want);
    free(idx);
    ag_ctx_free(c);
    ag_tensor_free(w);
}

static ag_tensor *f_embedding(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    return weighted_sum(c, ag_embedding(c, in[0], user));
}

static void test_embedding_gradcheck(void **state)
{
    (void)state;
    ag_index *ix = ag_index_new(NULL, (const int32_t[]){2, 0, 2, 4, 2, 1}, SHP(3, 2));
    ag_tensor *w = rand_leaf(7, 1.0f, SHP(5, 3));
    ag_tensor *in[1] = {w};
    assert_gradcheck(f_embedding, in, 1, ix);
    ag_tensor_free(w);
    ag_index_free(ix);
}

static void test_embedding_index_out_of_range(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *w = ag_zeros(c, SHP(4, 2));
    ag_index *ix = ag_index_new(c, (const int32_t[]){0, 4}, SHP(2));
    assert_ag_error(assert_null(ag_embedding(c, w, ix)), "embedding", "index 4", "4 rows");
    ag_index *neg = ag_index_new(c, (const int32_t[]){-1}, SHP(1));
    assert_ag_error(assert_null(ag_embedding(c, w, neg)), "embedding", "index -1");
    ag_ctx_free(c);
}

/* ------------------------------------------------------------ dropout */

static void test_dropout_off_is_identity(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(1, 1.0f, SHP(4, 5));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *ye = ag_dropout(c, x, 0.5f, false), *y0 = ag_dropout(c, x, 0.0f, true);
    assert_close(ye->data, x->data, 20, 0.0);
    assert_close(y0->data, x->data, 20, 0.0);
    /* and the grad passes straight through */
    ag_tensor *g = ag_randn(c, 2, 0.0f, 1.0f, SHP(4, 5));
    assert_true(ag_backward_with(c, ag_add(c, ye, y0), g));
    float want[20];
    for (int i = 0; i < 20; i++)
        want[i] = 2.0f * g->data[i];
    assert_close(x->grad, want, 20, 1e-6);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

/* The zeroed fraction is Binomial(n, p) / n: within 6 standard deviations of p;
 * the kept values are x / (1 - p). */
static void check_dropout_fraction(float p)
{
    enum { N = 200000 };
    ag_ctx *c = ag_ctx_new();
    ag_ctx_manual_seed(c, 99);
    ag_tensor *x = ag_rand(c, 1, 0.5f, 2.0f, SHP(N));
    ag_tensor *y = ag_dropout(c, x, p, true);
    assert_shape(y, N);
    int64_t zeros = 0;
    for (int64_t i = 0; i < N; i++) {
        if (y->data[i] == 0.0f)
            zeros++;
        else if (fabsf(y->data[i] - x->data[i] / (1.0f - p)) > 1e-6f * fabsf(y->data[i]))
            fail_msg("p %g: kept y[%lld] = %g, want %g", (double)p, (long long)i,
                     (double)y->data[i], (double)(x->data[i] / (1.0f - p)));
    }
    double frac = (double)zeros / N, sd = sqrt(p * (1.0 - p) / N);
    if (fabs(frac - p) > 6 * sd)
        fail_msg("p %g: zeroed fraction %g", (double)p, frac);
    ag_ctx_free(c);
}

static void test_dropout_zeroes_about_p_and_scales_the_rest(void **state)
{
    (void)state;
    check_dropout_fraction(0.1f);
    check_dropout_fraction(0.5f);
    check_dropout_fraction(0.8f);
}

static void test_dropout_same_seed_same_mask(void **state)
{
    (void)state;
    enum { N = 1000 };
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_ones(NULL, SHP(N));
    ag_ctx_manual_seed(c, 42);
    ag_tensor *a = ag_dropout(c, x, 0.5f, true), *b = ag_dropout(c, x, 0.5f, true);
    ag_ctx_manual_seed(c, 42);
    ag_tensor *a2 = ag_dropout(c, x, 0.5f, true);
    ag_ctx_manual_seed(c, 43);
    ag_tensor *d = ag_dropout(c, x, 0.5f, true);
    assert_memory_equal(a->data, a2->data, N * sizeof(float));
    /* a second call, or another seed, draws another mask */
    int64_t diff_b = 0, diff_d = 0;
    for (int i = 0; i < N; i++) {
        diff_b += a->data[i] != b->data[i];
        diff_d += a->data[i] != d->data[i];
    }
    assert_true(diff_b > N / 4);
    assert_true(diff_d > N / 4);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

/* With x all ones, y is the mask times the scale, so dx = g * y. */
static void test_dropout_grad_is_mask_times_scale(void **state)
{
    (void)state;
    enum { N = 64 };
    ag_tensor *x = ag_ones(NULL, SHP(N));
    ag_set_requires_grad(x, true);
    ag_ctx *c = ag_ctx_new();
    ag_ctx_manual_seed(c, 7);
    ag_tensor *y = ag_dropout(c, x, 0.75f, true);
    ag_tensor *g = ag_randn(c, 8, 0.0f, 1.0f, SHP(N));
    assert_true(ag_backward_with(c, y, g));
    int kept = 0;
    for (int i = 0; i < N; i++) {
        assert_true(y->data[i] == 0.0f || y->data[i] == 4.0f);
        kept += y->data[i] != 0.0f;
        assert_true(x->grad[i] == g->data[i] * y->data[i]);
    }
    assert_true(kept > 0 && kept < N);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

static ag_tensor *f_dropout(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_tanh(c, ag_dropout(c, in[0], 0.5f, true)));
}

/* gradcheck reseeds ctx's generator before every evaluation, so each sees the same mask */
static void test_dropout_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(9, 1.0f, SHP(6, 5));
    ag_tensor *in[1] = {x};
    assert_gradcheck(f_dropout, in, 1, NULL);
    ag_tensor *big = rand_leaf(10, 1.0f, SHP(20, 30)); /* by directions */
    ag_tensor *in2[1] = {big};
    assert_gradcheck(f_dropout, in2, 1, NULL);
    ag_tensor_free(x);
    ag_tensor_free(big);
}

static void test_dropout_bad_probability(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_ones(c, SHP(3));
    assert_ag_error(assert_null(ag_dropout(c, x, 1.0f, true)), "dropout", "probability 1");
    assert_ag_error(assert_null(ag_dropout(c, x, -0.1f, true)), "dropout", "-0.1");
    assert_ag_error(assert_null(ag_dropout(c, x, NAN, true)), "dropout");
    ag_ctx_free(c);
}


/* The vectorizable exponential softmax and cross-entropy use, against libm's
 * expf: within 3 ulp where expf is a normal float, 0 below, 0 at -inf, NaN kept. */
static void test_ag_expf_matches_expf(void **state)
{
    (void)state;
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.3f + (88.3f + 87.3f) * (float)i / 200000.0f;
        float want = expf(x), got = ag_expf(x);
        double rel = fabs((double)got - want) / want;
        worst = rel > worst ? rel : worst;
        if (!(rel <= 3.6e-7))
            fail_msg("ag_expf(%.9g) = %.9g, expf gives %.9g (rel err %.3g)", (double)x,
                     (double)got, (double)want, rel);
    }
    print_message("ag_expf: worst relative error %.3g over [-87.3, 88.3]\n", worst);
    assert_true(ag_expf(-INFINITY) == 0.0f);
    assert_true(ag_expf(-100.0f) == 0.0f);
    assert_true(ag_expf(0.0f) == 1.0f);
    assert_true(isnan(ag_expf(NAN)));
}

/* ------------------------------------------------------------ layer_norm */

/* Row (1, 2, 3, 4): mean 2.5, biased var 1.25, so x_hat = (-1.5, -0.5, 0.5, 1.5)
 * / sqrt(1.25) = (-1.3416408, -0.4472136, 0.4472136, 1.3416408); with
 * w = (1, 1, 2, 0.5), b = (0, 1, 0, -1), eps 0: y = (-1.3416408, 0.5527864,
 * 0.8944272, -0.3291796). Row (5, 5, 5, 5): x_hat 0, y = b. */
static void test_layer_norm_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, FLOATS(1, 2, 3, 4, 5, 5, 5, 5), SHP(2, 4));
    ag_tensor *w = ag_from_data(c, FLOATS(1, 1, 2, 0.5f), SHP(4));
    ag_tensor *b = ag_from_data(c, FLOATS(0, 1, 0, -1), SHP(4));
    ag_tensor *y = ag_layer_norm(c, x, w, b, 0.0f);
    assert_close(y->data, FLOATS(-1.3416408f, 0.5527864f, 0.8944272f, -0.3291796f), 4, 1e-6);
    ag_tensor *y2 = ag_layer_norm(c, x, w, b, 1e-5f);
    assert_close(y2->data + 4, FLOATS(0, 1, 0, -1), 4, 0.0); /* a constant row: 0 / sqrt(eps) */
    ag_ctx_free(c);
}

static ag_tensor *f_layer_norm(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_layer_norm(c, in[0], in[1], in[2], 1e-5f));
}

static void test_layer_norm_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(41, 1.0f, SHP(3, 5)), *w = rand_leaf(42, 1.0f, SHP(5));
    ag_tensor *b = rand_leaf(43, 1.0f, SHP(5));
    ag_tensor *in[3] = {x, w, b};
    assert_gradcheck(f_layer_norm, in, 3, NULL);
    ag_tensor *big = rand_leaf(44, 2.0f, SHP(2, 7, 33)), *bw = rand_leaf(45, 1.0f, SHP(33));
    ag_tensor *bb = rand_leaf(46, 1.0f, SHP(33));
    ag_tensor *in2[3] = {big, bw, bb}; /* x by directions; split over threads */
    assert_gradcheck(f_layer_norm, in2, 3, NULL);
    ag_tensor *ts[] = {x, w, b, big, bw, bb};
    free_all(ts, 6);
}

static void test_layer_norm_errors(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_zeros(c, SHP(2, 4)), *w = ag_ones(c, SHP(4)), *w3 = ag_ones(c, SHP(3));
    ag_tensor *s = ag_zeros(c, 0, NULL);
    assert_ag_error(ag_layer_norm(c, x, w3, w, 1e-5f), "layer_norm", "(2, 4)", "(3)");
    assert_ag_error(ag_layer_norm(c, x, w, w3, 1e-5f), "layer_norm", "(3)");
    assert_ag_error(ag_layer_norm(c, s, w, w, 1e-5f), "layer_norm", "()");
    assert_ag_error(ag_layer_norm(c, x, w, w, -1.0f), "layer_norm", "eps", "-1");
    ag_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ag_expf_matches_expf),
        cmocka_unit_test(test_softmax_last_axis_by_hand),
        cmocka_unit_test(test_log_softmax_last_axis_by_hand),
        cmocka_unit_test(test_softmax_large_logits_are_stable),
        cmocka_unit_test(test_softmax_middle_axis),
        cmocka_unit_test(test_softmax_rows_sum_to_one),
        cmocka_unit_test(test_softmax_with_neg_inf_entries),
        cmocka_unit_test(test_softmax_gradcheck),
        cmocka_unit_test(test_log_softmax_gradcheck),
        cmocka_unit_test(test_softmax_neg_inf_gradcheck),
        cmocka_unit_test(test_softmax_bad_axis),
        cmocka_unit_test(test_masked_fill_broadcast_mask),
        cmocka_unit_test(test_masked_fill_grad_is_zero_where_masked),
        cmocka_unit_test(test_masked_fill_gradcheck),
        cmocka_unit_test(test_masked_fill_mask_must_broadcast_to_input),
        cmocka_unit_test(test_causal_mask_square),
        cmocka_unit_test(test_causal_mask_non_square),
        cmocka_unit_test(test_causal_mask_batched),
        cmocka_unit_test(test_causal_mask_softmax_exact_zeros),
        cmocka_unit_test(test_causal_mask_gradcheck),
        cmocka_unit_test(test_cross_entropy_by_hand),
        cmocka_unit_test(test_cross_entropy_ignore_index),
        cmocka_unit_test(test_cross_entropy_all_ignored_is_nan),
        cmocka_unit_test(test_cross_entropy_large_logits_are_stable),
        cmocka_unit_test(test_cross_entropy_grad_is_softmax_minus_onehot),
        cmocka_unit_test(test_cross_entropy_gradcheck),
        cmocka_unit_test(test_cross_entropy_target_out_of_range),
        cmocka_unit_test(test_embedding_gathers_rows),
        cmocka_unit_test(test_embedding_repeated_indices_add_grads),
        cmocka_unit_test(test_embedding_large_backward_matches_loop),
        cmocka_unit_test(test_embedding_gradcheck),
        cmocka_unit_test(test_embedding_index_out_of_range),
        cmocka_unit_test(test_dropout_off_is_identity),
        cmocka_unit_test(test_dropout_zeroes_about_p_and_scales_the_rest),
        cmocka_unit_test(test_dropout_same_seed_same_mask),
        cmocka_unit_test(test_dropout_grad_is_mask_times_scale),
        cmocka_unit_test(test_dropout_gradcheck),
        cmocka_unit_test(test_dropout_bad_probability),
        cmocka_unit_test(test_layer_norm_by_hand),
        cmocka_unit_test(test_layer_norm_gradcheck),
        cmocka_unit_test(test_layer_norm_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
