/* test_nn_gradcheck.c - gradients of every nn module with respect to its
 * input and each of its parameters (gradcheck), with and without dropout. */
#include "nn_util.h"

/* ------------------------------------------------------------------ gradchecks */

static void test_gradcheck_linear(void **state)
{
    (void)state;
    for (int bias = 0; bias <= 1; bias++) {
        nn_params p;
        nn_params_init(&p);
        ag_rng r = ag_rng_new(1);
        nn_linear l;
        assert_true(nn_linear_init(&l, &p, "lin", 3, 2, bias, &r));
        assert_int_equal(p.n, bias ? 2 : 1);
        fwd a = {.m = &l};
        ag_tensor *x2 = rand_leaf(10, 1.0f, AG_SHAPE(4, 3));
        ag_tensor *x3 = rand_leaf(11, 1.0f, AG_SHAPE(2, 3, 3));
        check_module(f_linear, &a, x2, &p);
        check_module(f_linear, &a, x3, &p);
        ag_tensor_free(x2);
        ag_tensor_free(x3);
        nn_params_free(&p);
    }
}

static void test_gradcheck_embedding(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(2);
    nn_embedding e;
    assert_true(nn_embedding_init(&e, &p, "emb", 5, 3, &r));
    /* rows 1 and 3 repeat (their grads add up), rows 2 and 4 are unused (zero grad) */
    const int32_t ids[] = {1, 3, 1, 0, 3, 3};
    ag_index *idx = ag_index_new(NULL, ids, AG_SHAPE(2, 3));
    fwd a = {.m = &e, .idx = idx};
    check_module(f_embedding, &a, NULL, &p);

    /* the repeated rows' grads are the sums of their positions' output grads */
    ag_ctx *c = ag_ctx_new();
    ag_zero_grad(e.weight);
    ag_tensor *y = nn_embedding_forward(c, &e, idx);
    assert_shape(y, 2, 3, 3);
    assert_true(bit_equal(y->data + 3 * 3, e.weight->data + 3 * 0, 3)); /* position 3 is row 0 */
    assert_true(bit_equal(y->data + 3 * 5, e.weight->data + 3 * 3, 3)); /* position 5 is row 3 */
    ag_tensor *g = ag_ones(c, AG_SHAPE(2, 3, 3));
    assert_true(ag_backward_with(c, y, g));
    const float want[] = {1, 1, 1, 2, 2, 2, 0, 0, 0, 3, 3, 3, 0, 0, 0};
    assert_close(e.weight->grad, want, 15, 0);
    ag_ctx_free(c);
    ag_index_free(idx);
    nn_params_free(&p);
}

static void test_gradcheck_layernorm(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    nn_layernorm ln;
    assert_true(nn_layernorm_init(&ln, &p, "ln", 5));
    /* non-default affine parameters, so their grads and their use are both exercised */
    ag_rng r = ag_rng_new(3);
    ag_fill_normal(ln.weight, &r, 1.0f, 0.5f);
    ag_fill_normal(ln.bias, &r, 0.0f, 0.5f);
    fwd a = {.m = &ln};
    ag_tensor *x = rand_leaf(12, 1.0f, AG_SHAPE(2, 3, 5));
    check_module(f_layernorm, &a, x, &p);
    ag_tensor *x2 = rand_leaf(13, 2.0f, AG_SHAPE(4, 5));
    check_module(f_layernorm, &a, x2, &p);
    ag_tensor_free(x);
    ag_tensor_free(x2);
    nn_params_free(&p);
}

static void test_gradcheck_head(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(4);
    nn_head h;
    assert_true(nn_head_init(&h, &p, "h", 4, 3, 0.0f, &r));
    assert_int_equal(p.n, 3);
    fwd a = {.m = &h, .training = true}; /* dropout 0: training changes nothing */
    ag_tensor *x = rand_leaf(14, 1.0f, AG_SHAPE(2, 3, 4));
    check_module(f_head, &a, x, &p);
    ag_tensor_free(x);
    nn_params_free(&p);
}

static void test_gradcheck_mha(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(5);
    nn_mha m;
    assert_true(nn_mha_init(&m, &p, "sa", 4, 2, 0.0f, &r));
    assert_int_equal(p.n, 2 * 3 + 2);
    fwd a = {.m = &m, .training = true};
    ag_tensor *x = rand_leaf(15, 1.0f, AG_SHAPE(2, 3, 4));
    check_module(f_mha, &a, x, &p);
    ag_tensor_free(x);
    nn_mha_free(&m);
    nn_params_free(&p);
}

static void test_gradcheck_feedforward(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(6);
    nn_feedforward f;
    assert_true(nn_feedforward_init(&f, &p, "ffwd", 3, 0.0f, &r));
    assert_int_equal(p.n, 4);
    fwd a = {.m = &f, .training = true};
    ag_tensor *x = rand_leaf(16, 1.0f, AG_SHAPE(2, 2, 3));
    float margin = center_relu_bias(&f.fc, x);
    assert_true(margin > 0.05f);
    check_module(f_ffwd, &a, x, &p);
    ag_tensor_free(x);
    nn_params_free(&p);
}

static void test_gradcheck_block(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(7);
    nn_block b;
    assert_true(nn_block_init(&b, &p, "blocks.0", 4, 2, 0.0f, &r));
    /* perturb the LayerNorms away from their identity init */
    ag_fill_normal(b.ln1.weight, &r, 1.0f, 0.3f);
    ag_fill_normal(b.ln1.bias, &r, 0.0f, 0.3f);
    ag_fill_normal(b.ln2.weight, &r, 1.0f, 0.3f);
    ag_fill_normal(b.ln2.bias, &r, 0.0f, 0.3f);
    fwd a = {.m = &b, .training = true};
    ag_tensor *x = rand_leaf(17, 1.0f, AG_SHAPE(2, 3, 4));
    float margin = center_block_relu(&b, x, false, 0);
    assert_true(margin > 0.05f);
    check_module(f_block, &a, x, &p);
    ag_tensor_free(x);
    nn_block_free(&b);
    nn_params_free(&p);
}

/* With dropout > 0 and training, gradcheck reseeds the ctx generator before
 * every evaluation, so each one draws the same masks. */
static void test_gradcheck_with_dropout(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(8);
    nn_block b;
    assert_true(nn_block_init(&b, &p, "blocks.0", 4, 2, 0.3f, &r));
    ag_tensor *x = rand_leaf(18, 1.0f, AG_SHAPE(2, 3, 4));
    /* dropout really is active: the training output differs from eval's */
    int64_t n;
    float *yt = run(s_block, &b, x, true, 0, &n);
    float *ye = run(s_block, &b, x, false, 0, NULL);
    assert_false(bit_equal(yt, ye, n));
    free(yt);
    free(ye);
    fwd a = {.m = &b, .training = true};
    /* gradcheck seeds its ctx with opts.seed, 0 by default: the same masks as here */
    float margin = center_block_relu(&b, x, true, 0);
    assert_true(margin > 0.05f);
    check_module(f_block, &a, x, &p);

    nn_params q;
    nn_params_init(&q);
    nn_head h;
    assert_true(nn_head_init(&h, &q, "h", 4, 3, 0.4f, &r));
    fwd ah = {.m = &h, .training = true};
    check_module(f_head, &ah, x, &q);
    nn_params_free(&q);

    ag_tensor_free(x);
    nn_block_free(&b);
    nn_params_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_linear),
        cmocka_unit_test(test_gradcheck_embedding),
        cmocka_unit_test(test_gradcheck_layernorm),
        cmocka_unit_test(test_gradcheck_head),
        cmocka_unit_test(test_gradcheck_mha),
        cmocka_unit_test(test_gradcheck_feedforward),
        cmocka_unit_test(test_gradcheck_block),
        cmocka_unit_test(test_gradcheck_with_dropout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
