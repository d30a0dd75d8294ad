/* test_nn_arch.c - the layers of modern architectures: RMSNorm, SwiGLU,
 * RoPE, GRU and LSTM cells (one step and a sequence). Each is gradchecked
 * with respect to its inputs and parameters and matches PyTorch's forward
 * and every gradient (tests/fixtures/nn_arch_layers.safetensors, from
 * tools/fixtures_nn_arch.py) within 1e-4. */
#include "nn_arch_util.h"

static nn_st *fx;

static int open_fx(void **state)
{
    (void)state;
    fx = open_fixture("nn_arch_layers.safetensors");
    return 0;
}

static int close_fx(void **state)
{
    (void)state;
    nn_st_close(fx);
    return 0;
}

/* Seeds out with the fixture's "<prefix>.g<what>" gradient: backward of
 * several outputs at once is one backward of sum(out_k * seed_k). */
static ag_tensor *seeded(ag_ctx *c, const char *prefix, const char *what, ag_tensor *out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.g%s", prefix, what);
    ag_tensor *g = fx_tensor(c, fx, name);
    return ag_sum_all(c, ag_mul(c, out, g));
}

static void expect_out(const char *prefix, const char *what, const ag_tensor *t)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    assert_non_null(t);
    fx_expect(fx, name, t->data, t->numel);
}

static void expect_grad(const char *prefix, const char *what, const ag_tensor *t)
{
    char name[256];
    snprintf(name, sizeof name, "%s.grad.%s", prefix, what);
    assert_non_null(t->grad);
    fx_expect(fx, name, t->grad, t->numel);
}

/* ------------------------------------------------------------------ RMSNorm */

static ag_tensor *f_rmsnorm(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)in, (void)n;
    return weighted_sum(c, nn_rmsnorm_forward(c, u, in[0]));
}

static void test_rmsnorm_gradcheck(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    nn_rmsnorm rn;
    assert_true(nn_rmsnorm_init(&rn, &p, "norm", 5, 1e-5f));
    assert_string_equal(p.items[0]->name, "norm.weight");
    for (int i = 0; i < 5; i++)
        assert_true(rn.weight->data[i] == 1.0f); /* ones, as Llama and torch start it */
    ag_fill_normal(rn.weight, TEST_RNG(4), 1.0f, 0.4f);
    ag_tensor *x = rand_leaf(20, 1.0f, AG_SHAPE(2, 3, 5));
    check_with_params(f_rmsnorm, &rn, &x, 1, &p);
    ag_tensor_free(x);
    nn_params_free(&p);
}

static void test_rmsnorm_matches_pytorch(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    nn_rmsnorm rn;
    assert_true(nn_rmsnorm_init(&rn, &p, "rmsnorm", 8, 1e-5f));
    fx_load_params(fx, &p);
    ag_tensor *x = fx_leaf(fx, "rmsnorm.x");
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = nn_rmsnorm_forward(c, &rn, x);
    expect_out("rmsnorm", "out", y);
    assert_true(ag_backward(c, seeded(c, "rmsnorm", "out", y)));
    expect_grad("rmsnorm", "x", x);
    fx_expect_param_grads(fx, &p, "rmsnorm");

    /* the composition gives the same values (the reference for a fused op) */
    ag_tensor *y2 = nn_rmsnorm_forward_composed(c, &rn, x);
    assert_close(y2->data, y->data, y->numel, 1e-6);
    ag_ctx_free(c);
    ag_tensor_free(x);
    nn_params_free(&p);
}

/* ------------------------------------------------------------------ SwiGLU */

static ag_tensor *f_swiglu(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    return weighted_sum(c, nn_swiglu_forward(c, u, in[0]));
}

static void test_swiglu_gradcheck(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    nn_swiglu f;
    assert_true(nn_swiglu_init(&f, &p, "ff", 4, 6, TEST_RNG(5)));
    assert_int_equal(p.n, 3);
    assert_string_equal(p.items[0]->name, "ff.w1.weight");
    assert_string_equal(p.items[1]->name, "ff.w2.weight");
    assert_string_equal(p.items[2]->name, "ff.w3.weight");
    assert_shape(f.w2.weight, 4, 6);
    ag_tensor *x = rand_leaf(21, 1.0f, AG_SHAPE(3, 4));
    check_with_params(f_swiglu, &f, &x, 1, &p);
    ag_tensor_free(x);
    nn_params_free(&p);
}

static void test_swiglu_matches_pytorch(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    nn_swiglu f;
    assert_true(nn_swiglu_init(&f, &p, "swiglu", 8, 12, TEST_RNG(5)));
    fx_load_params(fx, &p);
    ag_tensor *x = fx_leaf(fx, "swiglu.x");
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = nn_swiglu_forward(c, &f, x);
    expect_out("swiglu", "out", y);
    assert_true(ag_backward(c, seeded(c, "swiglu", "out", y)));
    expect_grad("swiglu", "x", x);
    fx_expect_param_grads(fx, &p, "swiglu");
    ag_ctx_free(c);
    ag_tensor_free(x);
    nn_params_free(&p);
}

/* ------------------------------------------------------------------ RoPE */

typedef struct {
    const nn_rope *r;
    int t_axis;
    int64_t pos0;
} rope_args;

static ag_tensor *f_rope(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const rope_args *a = u;
    return weighted_sum(c, nn_rope_forward(c, a->r, in[0], a->t_axis, a->pos0));
}

static void test_rope_gradcheck(void **state)
{
    (void)state;
    nn_rope r;
    assert_true(nn_rope_init(&r, 9, 6, 10000.0f));
    ag_tensor *x = rand_leaf(22, 1.0f, AG_SHAPE(1, 2, 4, 6));
    rope_args a = {&r, -2, 5};
    check_with_params(f_rope, &a, &x, 1, NULL);
    ag_tensor_free(x);
    nn_rope_free(&r);
}

static void test_rope_matches_pytorch(void **state)
{
    (void)state;
    nn_rope r;
    assert_true(nn_rope_init(&r, 16, 8, 10000.0f));
    const char *names[] = {"rope", "rope_pos"};
    const int64_t pos0[] = {0, 3};
    for (int k = 0; k < 2; k++) {
        ag_tensor *x = fx_leaf(fx, k ? "rope_pos.x" : "rope.x");
        ag_ctx *c = ag_ctx_new();
        ag_tensor *y = nn_rope_forward(c, &r, x, -2, pos0[k]);
        expect_out(names[k], "out", y);
        assert_true(ag_backward(c, seeded(c, names[k], "out", y)));
        expect_grad(names[k], "x", x);
        ag_ctx_free(c);
        ag_tensor_free(x);
    }
    nn_rope_free(&r);
}

/* Position 0 is the identity; a rotation keeps each pair's norm; and the
 * (B, T, H, hs) layout (t_axis -3) gives the (B, H, T, hs) result transposed. */
static void test_rope_properties_and_layouts(void **state)
{
    (void)state;
    nn_rope r;
    assert_true(nn_rope_init(&r, 8, 4, 10000.0f));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_randn(c, TEST_RNG(23), 0, 1, AG_SHAPE(2, 3, 5, 4));     /* (B, H, T, hs) */
    ag_tensor *y = nn_rope_forward(c, &r, x, -2, 0);
    for (int64_t b = 0; b < 6; b++) /* t = 0 rows unchanged */
        assert_close(y->data + b * 20, x->data + b * 20, 4, 1e-7);
    for (int64_t i = 0; i < x->numel / 4; i++)
        for (int j = 0; j < 2; j++) {
            const float *u = x->data + 4 * i, *v = y->data + 4 * i;
            float n0 = u[j] * u[j] + u[j + 2] * u[j + 2], n1 = v[j] * v[j] + v[j + 2] * v[j + 2];
            assert_float_equal(n0, n1, 1e-5f * (1 + n0));
        }
    ag_tensor *xt = ag_transpose(c, x, 1, 2);                                    /* (B, T, H, hs) */
    ag_tensor *yt = nn_rope_forward(c, &r, xt, -3, 0);
    ag_tensor *back = ag_transpose(c, yt, 1, 2);
    assert_close(back->data, y->data, y->numel, 1e-6);
    /* errors: odd head size, positions past the table, wrong head dim */
    nn_rope bad;
    assert_ag_error(nn_rope_init(&bad, 8, 5, 10000.0f), "nn_rope_init", "even head_size");
    assert_ag_error(nn_rope_forward(c, &r, x, -2, 4), "positions 4 .. 9", "8");
    ag_tensor *w = ag_zeros(c, AG_SHAPE(2, 5, 6));
    assert_ag_error(nn_rope_forward(c, &r, w, -2, 0), "nn_rope_forward", "(2, 5, 6)");
    ag_ctx_free(c);
    nn_rope_free(&r);
}

/* ------------------------------------------------------------------ GRU, LSTM */

static ag_tensor *f_gru_cell(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    return weighted_sum(c, nn_gru_cell_forward(c, u, in[0], in[1]));
}

static ag_tensor *f_gru_seq(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    ag_tensor *last = NULL;
    ag_tensor *y = nn_gru_forward(c, u, in[0], in[1], &last);
    return ag_add(c, weighted_sum(c, y), ag_sum_all(c, last));
}

static ag_tensor *f_lstm_cell(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    ag_tensor *h, *cs;
    assert_true(nn_lstm_cell_forward(c, u, in[0], in[1], in[2], &h, &cs));
    return ag_add(c, weighted_sum(c, h), ag_mul_scalar(c, ag_sum_all(c, cs), 0.5f));
}

static ag_tensor *f_lstm_seq(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    ag_tensor *h, *cs;
    ag_tensor *y = nn_lstm_forward(c, u, in[0], in[1], in[2], &h, &cs);
    return ag_add(c, weighted_sum(c, y), ag_sum_all(c, ag_mul(c, cs, h)));
}

static void test_rnn_cells_init_as_pytorch(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    nn_gru_cell g;
    nn_lstm_cell l;
    assert_true(nn_gru_cell_init(&g, &p, "gru", 5, 4, true, TEST_RNG(6)));
    assert_true(nn_lstm_cell_init(&l, &p, "lstm", 5, 4, false, TEST_RNG(6)));
    const char *want[] = {"gru.weight_ih", "gru.weight_hh", "gru.bias_ih", "gru.bias_hh",
                          "lstm.weight_ih", "lstm.weight_hh"};
    assert_int_equal(p.n, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(p.items[i]->name, want[i]);
    assert_shape(g.weight_ih, 12, 5);
    assert_shape(g.weight_hh, 12, 4);
    assert_shape(g.bias_hh, 12);
    assert_shape(l.weight_ih, 16, 5);
    assert_null(l.bias_ih);
    /* U(-1/sqrt(H), 1/sqrt(H)) = U(-0.5, 0.5), and not all in a narrower band */
    float lo = 1, hi = -1;
    for (int i = 0; i < p.n; i++)
        for (int64_t k = 0; k < p.items[i]->numel; k++) {
            lo = fminf(lo, p.items[i]->data[k]);
            hi = fmaxf(hi, p.items[i]->data[k]);
        }
    assert_true(lo >= -0.5f && hi <= 0.5f && lo < -0.4f && hi > 0.4f);
    nn_params_free(&p);
}

static void test_gru_gradcheck(void **state)
{
    (void)state;
    for (int bias = 0; bias <= 1; bias++) {
        nn_params p;
        nn_params_init(&p);
        nn_gru_cell g;
        assert_true(nn_gru_cell_init(&g, &p, "gru", 3, 4, bias, TEST_RNG(7)));
        ag_tensor *in[2] = {rand_leaf(24, 1.0f, AG_SHAPE(2, 3)), rand_leaf(25, 0.5f, AG_SHAPE(2, 4))};
        check_with_params(f_gru_cell, &g, in, 2, &p);
        ag_tensor *seq[2] = {rand_leaf(26, 1.0f, AG_SHAPE(3, 2, 3)),
                             rand_leaf(27, 0.5f, AG_SHAPE(2, 4))};
        check_with_params(f_gru_seq, &g, seq, 2, &p);
        free_all(in, 2);
        free_all(seq, 2);
        nn_params_free(&p);
    }
}

static void test_lstm_gradcheck(void **state)
{
    (void)state;
    for (int bias = 0; bias <= 1; bias++) {
        nn_params p;
        nn_params_init(&p);
        nn_lstm_cell l;
        assert_true(nn_lstm_cell_init(&l, &p, "lstm", 3, 4, bias, TEST_RNG(8)));
        ag_tensor *in[3] = {rand_leaf(28, 1.0f, AG_SHAPE(2, 3)), rand_leaf(29, 0.5f, AG_SHAPE(2, 4)),
                            rand_leaf(30, 0.5f, AG_SHAPE(2, 4))};
        check_with_params(f_lstm_cell, &l, in, 3, &p);
        ag_tensor *seq[3] = {rand_leaf(31, 1.0f, AG_SHAPE(3, 2, 3)),
                             rand_leaf(32, 0.5f, AG_SHAPE(2, 4)), rand_leaf(33, 0.5f, AG_SHAPE(2, 4))};
        check_with_params(f_lstm_seq, &l, seq, 3, &p);
        free_all(in, 3);
        free_all(seq, 3);
        nn_params_free(&p);
    }
}

static void test_gru_matches_pytorch(void **state)
{
    (void)state;
    const char *names[] = {"gru_cell", "gru_seq"};
    for (int k = 0; k < 2; k++) {
        const char *pre = names[k];
        char nx[64], nh[64];
        nn_params p;
        nn_params_init(&p);
        nn_gru_cell g;
        assert_true(nn_gru_cell_init(&g, &p, pre, 5, 6, true, TEST_RNG(9)));
        fx_load_params(fx, &p);
        snprintf(nx, sizeof nx, "%s.x", pre);
        snprintf(nh, sizeof nh, "%s.h", pre);
        ag_tensor *x = fx_leaf(fx, nx), *h = fx_leaf(fx, nh);
        ag_ctx *c = ag_ctx_new();
        ag_tensor *y = k ? nn_gru_forward(c, &g, x, h, NULL) : nn_gru_cell_forward(c, &g, x, h);
        expect_out(pre, "out", y);
        assert_true(ag_backward(c, seeded(c, pre, "out", y)));
        expect_grad(pre, "x", x);
        expect_grad(pre, "h", h);
        fx_expect_param_grads(fx, &p, pre);
        ag_ctx_free(c);
        ag_tensor_free(x);
        ag_tensor_free(h);
        nn_params_free(&p);
    }
}

static void test_lstm_matches_pytorch(void **state)
{
    (void)state;
    const char *names[] = {"lstm_cell", "lstm_seq"};
    for (int k = 0; k < 2; k++) {
        const char *pre = names[k];
        char nx[64], nh[64], nc[64];
        nn_params p;
        nn_params_init(&p);
        nn_lstm_cell l;
        assert_true(nn_lstm_cell_init(&l, &p, pre, 5, 6, true, TEST_RNG(9)));
        fx_load_params(fx, &p);
        snprintf(nx, sizeof nx, "%s.x", pre);
        snprintf(nh, sizeof nh, "%s.h", pre);
        snprintf(nc, sizeof nc, "%s.c", pre);
        ag_tensor *x = fx_leaf(fx, nx), *h = fx_leaf(fx, nh), *cs = fx_leaf(fx, nc);
        ag_ctx *c = ag_ctx_new();
        ag_tensor *loss;
        if (k == 0) {
            ag_tensor *h2, *c2;
            assert_true(nn_lstm_cell_forward(c, &l, x, h, cs, &h2, &c2));
            expect_out(pre, "h_next", h2);
            expect_out(pre, "c_next", c2);
            loss = ag_add(c, seeded(c, pre, "h_next", h2), seeded(c, pre, "c_next", c2));
        } else {
            ag_tensor *c_last = NULL;
            ag_tensor *y = nn_lstm_forward(c, &l, x, h, cs, NULL, &c_last);
            expect_out(pre, "out", y);
            expect_out(pre, "c_last", c_last);
            loss = ag_add(c, seeded(c, pre, "out", y), seeded(c, pre, "c_last", c_last));
        }
        assert_true(ag_backward(c, loss));
        expect_grad(pre, "x", x);
        expect_grad(pre, "h", h);
        expect_grad(pre, "c", cs);
        fx_expect_param_grads(fx, &p, pre);
        ag_ctx_free(c);
        ag_tensor *all[] = {x, h, cs};
        free_all(all, 3);
        nn_params_free(&p);
    }
}

/* The sequence form is the cell stepped T times, and NULL states are zeros. */
static void test_rnn_sequence_is_the_cell_stepped(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    nn_gru_cell g;
    nn_lstm_cell l;
    assert_true(nn_gru_cell_init(&g, &p, "g", 3, 4, true, TEST_RNG(10)));
    assert_true(nn_lstm_cell_init(&l, &p, "l", 3, 4, true, TEST_RNG(11)));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_randn(c, TEST_RNG(34), 0, 1, AG_SHAPE(5, 2, 3));
    ag_tensor *gh_last, *lh_last, *lc_last;
    ag_tensor *gy = nn_gru_forward(c, &g, x, NULL, &gh_last);
    ag_tensor *ly = nn_lstm_forward(c, &l, x, NULL, NULL, &lh_last, &lc_last);
    assert_shape(gy, 5, 2, 4);
    assert_shape(ly, 5, 2, 4);
    ag_tensor *h = NULL, *lh = NULL, *lc = NULL;
    for (int64_t t = 0; t < 5; t++) {
        ag_tensor *xt = ag_reshape(c, ag_slice(c, x, 0, t, t + 1), AG_SHAPE(2, 3));
        h = nn_gru_cell_forward(c, &g, xt, h);
        assert_true(nn_lstm_cell_forward(c, &l, xt, lh, lc, &lh, &lc));
        assert_close(h->data, gy->data + t * 8, 8, 1e-6);
        assert_close(lh->data, ly->data + t * 8, 8, 1e-6);
    }
    assert_close(gh_last->data, h->data, 8, 0);
    assert_close(lh_last->data, lh->data, 8, 0);
    assert_close(lc_last->data, lc->data, 8, 0);
    /* a wrong input size names the function and the shapes */
    ag_tensor *bad = ag_zeros(c, AG_SHAPE(2, 4));
    assert_ag_error(nn_gru_cell_forward(c, &g, bad, NULL), "nn_gru_cell_forward", "(2, 4)",
                    "(B, 3)");
    assert_ag_error(nn_lstm_forward(c, &l, bad, NULL, NULL, NULL, NULL), "nn_lstm_forward",
                    "(T, B, 3)");
    ag_ctx_free(c);
    nn_params_free(&p);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_gradcheck),
        cmocka_unit_test(test_rmsnorm_matches_pytorch),
        cmocka_unit_test(test_swiglu_gradcheck),
        cmocka_unit_test(test_swiglu_matches_pytorch),
        cmocka_unit_test(test_rope_gradcheck),
        cmocka_unit_test(test_rope_matches_pytorch),
        cmocka_unit_test(test_rope_properties_and_layouts),
        cmocka_unit_test(test_rnn_cells_init_as_pytorch),
        cmocka_unit_test(test_gru_gradcheck),
        cmocka_unit_test(test_lstm_gradcheck),
        cmocka_unit_test(test_gru_matches_pytorch),
        cmocka_unit_test(test_lstm_matches_pytorch),
        cmocka_unit_test(test_rnn_sequence_is_the_cell_stepped),
    };
    return cmocka_run_group_tests(tests, open_fx, close_fx);
}
