/* test_engine_backward.c - the graph engine's backward pass: fan-out (a
 * tensor used twice), diamonds, a shared subgraph whose backward runs once,
 * leaf grads accumulating until ag_zero_grad, non-leaf grads dropped unless
 * retained (and rebuilt, not accumulated), ag_backward_with seeds, backward
 * on a leaf, backward run by fresh ctxs over one graph, a 200000-op chain on
 * a small thread stack (so a recursive walk would crash); grad mode (nothing
 * is recorded with gradients off or when no input requires grad); and a
 * user-defined op (ag_result + ag_grad_of) inside a larger graph. */
#include "test_util.h"

#include "ag_op.h" /* user-defined ops, and the graph a tensor was recorded in */

#include <pthread.h>

/* ================================================================ backward */

/* y = x*x + x: x reaches y three times (twice through mul, once through add). */
static void test_tensor_used_twice_gets_both_contributions(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {1.0f, 2.0f, -3.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *y = ag_add(c, ag_mul(c, x, x), x);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    const float want[3] = {3.0f, 5.0f, -5.0f}; /* 2x + 1 */
    assert_close(x->grad, want, 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* a -> b = 3a, a -> c = exp(a), d = b * c: d' = 3 e^a + 3a e^a */
static void test_diamond_adds_both_paths(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float ad[4] = {-1.0f, 0.0f, 0.5f, 1.5f};
    ag_tensor *a = leaf(ad, AG_SHAPE(2, 2));
    ag_tensor *b = ag_mul_scalar(c, a, 3.0f);
    ag_tensor *e = ag_exp(c, a);
    ag_tensor *d = ag_mul(c, b, e);
    assert_true(ag_backward(c, ag_sum_all(c, d)));
    float want[4];
    for (int i = 0; i < 4; i++)
        want[i] = 3.0f * expf(ad[i]) * (1.0f + ad[i]);
    assert_close(a->grad, want, 4, 1e-5);
    ag_tensor_free(a);
    ag_ctx_free(c);
}

/* An identity op that counts how often its backward runs. */
static int probe_calls;

static void probe_backward(ag_ctx *ctx, ag_tensor *out)
{
    probe_calls++;
    float *gx = ag_grad_of(ctx, ag_input(out, 0));
    if (gx)
        for (int64_t i = 0; i < out->numel; i++)
            gx[i] += out->grad[i];
}

static const ag_op probe_op = {.name = "probe", .backward = probe_backward};

static ag_tensor *probe(ag_ctx *c, ag_tensor *x)
{
    ag_tensor *out = ag_result(c, &probe_op, &x, 1, x->ndim, x->shape);
    memcpy(out->data, x->data, (size_t)x->numel * sizeof(float));
    return out;
}

/* h = probe(tanh(x @ w)) feeds two branches: L = sum(h*h) + mean(h).
 * dL/dh = 2h + 1/n, dz = dL/dh (1 - h^2), dw = x^T dz; h's backward runs once. */
static void test_shared_subgraph_used_by_two_branches(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[6] = {0.5f, -1.0f, 0.25f, 1.0f, 0.0f, -0.5f}; /* (3, 2) */
    const float wd[4] = {0.3f, -0.2f, 0.7f, 0.1f};               /* (2, 2) */
    ag_tensor *x = leaf(xd, AG_SHAPE(3, 2));
    ag_tensor *w = leaf(wd, AG_SHAPE(2, 2));
    ag_tensor *h = probe(c, ag_tanh(c, ag_matmul(c, x, w)));
    ag_tensor *l1 = ag_sum_all(c, ag_mul(c, h, h));
    ag_tensor *l2 = ag_mean_all(c, h);
    probe_calls = 0;
    assert_true(ag_backward(c, ag_add(c, l1, l2)));
    assert_int_equal(probe_calls, 1);

    float dz[6], gw[4] = {0}, gx[6] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            float z = xd[i * 2] * wd[j] + xd[i * 2 + 1] * wd[2 + j];
            float hv = tanhf(z);
            dz[i * 2 + j] = (2.0f * hv + 1.0f / 6.0f) * (1.0f - hv * hv);
        }
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 2; j++) {
                gw[k * 2 + j] += xd[i * 2 + k] * dz[i * 2 + j];
                gx[i * 2 + k] += dz[i * 2 + j] * wd[k * 2 + j];
            }
    assert_close(w->grad, gw, 4, 1e-5);
    assert_close(x->grad, gx, 6, 1e-5);
    ag_tensor_free(x);
    ag_tensor_free(w);
    ag_ctx_free(c);
}

/* Two backward calls add up in a leaf's grad (persistent or arena) until zeroed. */
static void test_leaf_grads_accumulate_until_zero_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[2] = {1.5f, -2.0f};
    ag_tensor *p = leaf(xd, AG_SHAPE(2));
    ag_tensor *a = ag_from_data(c, xd, AG_SHAPE(2));
    ag_set_requires_grad(a, true);

    ag_tensor *loss = ag_sum_all(c, ag_mul(c, ag_mul(c, p, p), a)); /* p^2 a */
    assert_true(ag_backward(c, loss));
    assert_true(ag_backward(c, loss)); /* the same graph again */
    float want_p[2], want_a[2];
    for (int i = 0; i < 2; i++) {
        want_p[i] = 2.0f * (2.0f * xd[i] * xd[i]);
        want_a[i] = 2.0f * (xd[i] * xd[i]);
    }
    assert_close(p->grad, want_p, 2, 1e-6);
    assert_close(a->grad, want_a, 2, 1e-6);

    /* a fresh forward in the same ctx also adds to them */
    assert_true(ag_backward(c, ag_sum_all(c, ag_mul(c, ag_mul(c, p, p), a))));
    for (int i = 0; i < 2; i++) {
        want_p[i] *= 1.5f;
        want_a[i] *= 1.5f;
    }
    assert_close(p->grad, want_p, 2, 1e-6);
    assert_close(a->grad, want_a, 2, 1e-6);

    ag_zero_grad(p);
    ag_zero_grad(a);
    const float zeros[2] = {0.0f, 0.0f};
    assert_close(p->grad, zeros, 2, 0.0);
    assert_close(a->grad, zeros, 2, 0.0);
    assert_true(ag_backward(c, ag_sum_all(c, ag_mul(c, ag_mul(c, p, p), a))));
    for (int i = 0; i < 2; i++) {
        want_p[i] = 2.0f * xd[i] * xd[i];
        want_a[i] = xd[i] * xd[i];
    }
    assert_close(p->grad, want_p, 2, 1e-6);
    assert_close(a->grad, want_a, 2, 1e-6);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static void test_nonleaf_grad_dropped_after_backward(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {1.0f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *h = ag_mul_scalar(c, x, 2.0f);
    ag_tensor *loss = ag_sum_all(c, ag_mul(c, h, h));
    assert_true(ag_backward(c, loss));
    assert_null(h->grad);
    assert_null(loss->grad);
    const float want[3] = {8.0f, -8.0f, 16.0f}; /* 8x */
    assert_close(x->grad, want, 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* A retained grad is readable and right, and a second backward rebuilds it
 * rather than adding to it (only leaves accumulate). */
static void test_retain_grad_keeps_nonleaf_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {1.0f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *h = ag_mul_scalar(c, x, 2.0f);
    ag_tensor *loss = ag_sum_all(c, ag_mul(c, h, h));
    ag_retain_grad(h);
    ag_retain_grad(loss);
    assert_true(ag_backward(c, loss));
    const float want_h[3] = {4.0f, -4.0f, 8.0f}; /* 2h */
    assert_non_null(h->grad);
    assert_close(h->grad, want_h, 3, 1e-6);
    assert_non_null(loss->grad);
    assert_true(loss->grad[0] == 1.0f);

    assert_true(ag_backward(c, loss));
    assert_close(h->grad, want_h, 3, 1e-6);
    assert_true(loss->grad[0] == 1.0f);
    const float want_x[3] = {16.0f, -16.0f, 32.0f}; /* the leaf did accumulate: 2 * 8x */
    assert_close(x->grad, want_x, 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

static void test_backward_with_seeds_output_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[6] = {1, 2, 3, 4, 5, 6};
    const float gd[6] = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f, -0.25f};
    ag_tensor *x = leaf(xd, AG_SHAPE(2, 3));
    ag_tensor *y = ag_mul(c, x, x); /* dy/dx = 2x */
    ag_tensor *g = ag_from_data(c, gd, AG_SHAPE(2, 3));
    assert_true(ag_backward_with(c, y, g));
    float want[6];
    for (int i = 0; i < 6; i++)
        want[i] = 2.0f * xd[i] * gd[i];
    assert_close(x->grad, want, 6, 1e-6);

    /* a scalar output seeded with 2.5 scales every grad by 2.5 */
    ag_zero_grad(x);
    assert_true(ag_backward_with(c, ag_sum_all(c, ag_mul_scalar(c, x, 3.0f)), ag_scalar(c, 2.5f)));
    for (int i = 0; i < 6; i++)
        want[i] = 7.5f;
    assert_close(x->grad, want, 6, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

static void test_backward_on_leaf(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *s = ag_param("s", 0, NULL);
    assert_true(ag_backward(c, s));
    assert_true(s->grad[0] == 1.0f);
    assert_true(ag_backward(c, s));
    assert_true(s->grad[0] == 2.0f);

    const float gd[4] = {1, -2, 3, -4};
    ag_tensor *m = ag_zeros(c, AG_SHAPE(2, 2));
    ag_set_requires_grad(m, true);
    assert_true(ag_backward_with(c, m, ag_from_data(c, gd, AG_SHAPE(2, 2))));
    assert_close(m->grad, gd, 4, 0.0);
    ag_tensor_free(s);
    ag_ctx_free(c);
}

/* With gradients off nothing is recorded; a value computed then is a constant
 * once they are back on (the grad flows only through the recorded path). */
static void test_no_grad_mode_records_nothing(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {0.5f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));

    ag_set_grad_enabled(c, false);
    assert_false(ag_grad_enabled(c));
    ag_tensor *y = ag_tanh(c, ag_add(c, x, x));
    ag_tensor *s = ag_sum_all(c, y);
    ag_tensor *outs[2] = {y, s};
    for (int k = 0; k < 2; k++) {
        assert_false(ag_requires_grad(outs[k]));
        assert_null(ag_op_of(outs[k]));
        assert_int_equal(ag_num_inputs(outs[k]), 0);
    }
    for (int i = 0; i < 3; i++)
        assert_float_equal(y->data[i], tanhf(2.0f * xd[i]), 1e-7);
    assert_ag_error(ag_backward(c, s), "ag_backward", "does not require grad");
    assert_null(x->grad);

    ag_set_grad_enabled(c, true);
    assert_true(ag_grad_enabled(c));
    ag_tensor *z = ag_mul(c, y, x); /* y is a constant here: dz/dx = y */
    assert_string_equal(ag_op_of(z)->name, "mul");
    assert_true(ag_backward(c, ag_sum_all(c, z)));
    assert_close(x->grad, y->data, 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

static void test_output_of_constants_is_not_recorded(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_ones(c, AG_SHAPE(2, 2));
    ag_tensor *b = ag_full(c, 2.0f, AG_SHAPE(2, 2));
    ag_tensor *y = ag_matmul(c, a, b);
    assert_false(ag_requires_grad(y));
    assert_null(ag_op_of(y));
    assert_int_equal(ag_num_inputs(y), 0);
    assert_ag_error(ag_backward(c, ag_sum_all(c, y)), "does not require grad");

    /* one input that requires grad is enough; the graph then holds both inputs */
    ag_set_requires_grad(b, true);
    ag_tensor *y2 = ag_matmul(c, a, b);
    assert_true(ag_requires_grad(y2));
    assert_string_equal(ag_op_of(y2)->name, "matmul");
    assert_int_equal(ag_num_inputs(y2), 2);
    assert_ptr_equal(ag_input(y2, 0), a);
    assert_ptr_equal(ag_input(y2, 1), b);
    assert_true(ag_backward(c, ag_sum_all(c, y2)));
    assert_null(a->grad); /* never asked for */
    const float want[4] = {2, 2, 2, 2}; /* d sum(A B)/dB[k][j] = sum_i A[i][k] */
    assert_close(b->grad, want, 4, 1e-6);
    ag_ctx_free(c);
}

/* Backward run by other ctxs than the graph's, each freed after use: a new
 * ctx often lands at a freed one's address, and must not mistake that one's
 * traversal marks on the graph for its own (it would skip every node). */
static void test_backward_by_fresh_ctxs_over_one_graph(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_param("x", AG_SHAPE(2));
    ag_fill(x, 0.5f);
    ag_tensor *loss = ag_sum_all(c, ag_mul(c, ag_tanh(c, x), x)); /* x tanh x */
    float t = tanhf(0.5f), want[2];
    want[0] = want[1] = t + 0.5f * (1.0f - t * t);
    for (int i = 0; i < 20; i++) {
        ag_ctx *b = ag_ctx_new();
        ag_zero_grad(x);
        assert_true(ag_backward(b, loss));
        assert_close(x->grad, want, 2, 1e-6);
        ag_ctx_free(b);
    }
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ---- a deep chain on a small stack: a recursive topological sort or
 * backward would need megabytes of stack here and crash. */

#define CHAIN_LEN 200000

typedef struct {
    float value, grad, mid_grad;
    bool ok;
} chain_result;

static void *run_chain(void *arg)
{
    chain_result *r = arg;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_scalar(c, 0.5f);
    ag_set_requires_grad(x, true);
    ag_tensor *y = x, *mid = NULL;
    for (int i = 0; i < CHAIN_LEN; i++) {
        y = ag_add_scalar(c, y, 1.0f);
        if (i == CHAIN_LEN / 2)
            mid = y;
    }
    y = ag_mul_scalar(c, y, 3.0f);
    ag_retain_grad(mid);
    r->ok = ag_backward(c, y);
    r->value = y->data[0];
    r->grad = x->grad[0];
    r->mid_grad = mid->grad[0];
    ag_ctx_free(c);
    return NULL;
}

static void test_deep_chain_backprops_without_recursion(void **state)
{
    (void)state;
    pthread_attr_t attr;
    pthread_t th;
    chain_result r = {0};
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, (size_t)1 << 20), 0);
    assert_int_equal(pthread_create(&th, &attr, run_chain, &r), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    pthread_attr_destroy(&attr);
    assert_true(r.ok);
    assert_true(r.value == 3.0f * (0.5f + CHAIN_LEN)); /* exact in float */
    assert_true(r.grad == 3.0f);
    assert_true(r.mid_grad == 3.0f);
}

/* ---- a user-defined op: y = x^3 via ag_result, backward 3x^2 g via ag_grad_of */

static void cube_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    float *gx = ag_grad_of(ctx, x);
    if (gx)
        for (int64_t i = 0; i < out->numel; i++)
            gx[i] += 3.0f * x->data[i] * x->data[i] * out->grad[i];
}

static const ag_op cube_op = {.name = "cube", .backward = cube_backward};

static ag_tensor *cube(ag_ctx *c, ag_tensor *x)
{
    ag_tensor *out = ag_result(c, &cube_op, &x, 1, x->ndim, x->shape);
    for (int64_t i = 0; i < x->numel; i++)
        out->data[i] = x->data[i] * x->data[i] * x->data[i];
    return out;
}

static ag_tensor *f_cube_net(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_tanh(c, ag_mul(c, cube(c, in[0]), in[1])));
}

static void test_custom_op_participates_in_backward(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {0.5f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *y = cube(c, x);
    assert_string_equal(ag_op_of(y)->name, "cube");
    assert_true(ag_requires_grad(y));
    /* L = sum(cube(x) * x) = sum x^4: dL/dx = 4x^3 */
    assert_true(ag_backward(c, ag_sum_all(c, ag_mul(c, y, x))));
    float want[3];
    for (int i = 0; i < 3; i++)
        want[i] = 4.0f * xd[i] * xd[i] * xd[i];
    assert_close(x->grad, want, 3, 1e-6);
    assert_null(y->grad);
    ag_tensor_free(x);
    ag_ctx_free(c);

    ag_tensor *in[2] = {rand_leaf(3, 0.7f, AG_SHAPE(2, 3)), rand_leaf(4, 0.7f, AG_SHAPE(3))};
    assert_gradcheck(f_cube_net, in, 2, NULL);
    free_all(in, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_used_twice_gets_both_contributions),
        cmocka_unit_test(test_diamond_adds_both_paths),
        cmocka_unit_test(test_shared_subgraph_used_by_two_branches),
        cmocka_unit_test(test_leaf_grads_accumulate_until_zero_grad),
        cmocka_unit_test(test_nonleaf_grad_dropped_after_backward),
        cmocka_unit_test(test_retain_grad_keeps_nonleaf_grad),
        cmocka_unit_test(test_backward_with_seeds_output_grad),
        cmocka_unit_test(test_backward_on_leaf),
        cmocka_unit_test(test_no_grad_mode_records_nothing),
        cmocka_unit_test(test_output_of_constants_is_not_recorded),
        cmocka_unit_test(test_backward_by_fresh_ctxs_over_one_graph),
        cmocka_unit_test(test_deep_chain_backprops_without_recursion),
        cmocka_unit_test(test_custom_op_participates_in_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
