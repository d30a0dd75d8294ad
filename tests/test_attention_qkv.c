/* test_attention_qkv.c - attention over separate q, k, v (ag_attention_qkv):
 * a forward worked by hand; equality with the composition it replaces
 * (matmul_nt, mul_scalar, add, causal_mask, softmax, dropout, matmul) in
 * values and in the grads of q, k and v (accumulated into leaves and assigned
 * to fresh buffers), for both kernels (by rows for short sequences and small
 * heads, by row blocks of 64 otherwise), S equal to, above and below T, no
 * mask, causal, additive masks of several broadcast shapes, and dropout;
 * equality with the packed ag_attention on the same numbers, dropout
 * included; one tensor as q, k and v at once; grads for only some inputs; the
 * same bits on 1 and 2 threads; no-grad mode; gradcheck; and its errors. */
#include "test_util.h"

#include "ag_op.h" /* ag_op_of: whether the op was recorded */

#include <stdlib.h>

#define SHP(...) AG_SHAPE(__VA_ARGS__)

typedef struct {
    int64_t B, H, T, S, hs, hv;
    bool causal;
    int mask; /* 0 none; 1 (T, S); 2 (B, 1, 1, S) padding; 3 (T, 1); 4 (H, T, S) with -inf */
    float p;
} shape_case;

/* The composition the op replaces. */
static ag_tensor *composed(ag_ctx *c, ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *mask,
                           bool causal, float scale, float p, bool training)
{
    ag_tensor *s = ag_mul_scalar(c, ag_matmul_nt(c, q, k), scale);
    if (mask)
        s = ag_add(c, s, mask);
    if (causal)
        s = ag_causal_mask(c, s, -INFINITY);
    return ag_matmul(c, ag_dropout(c, ag_softmax(c, s, -1), p, training), v);
}

/* A mask of the case's kind, persistent, needing no grad; NULL for none. */
static ag_tensor *make_mask(const shape_case *sc)
{
    ag_rng r = ag_rng_new(99);
    ag_tensor *m = NULL;
    switch (sc->mask) {
    case 1:
        m = ag_randn(NULL, &r, 0.0f, 1.0f, SHP(sc->T, sc->S));
        break;
    case 2: /* the keys past each batch row's length: -inf */
        m = ag_zeros(NULL, SHP(sc->B, 1, 1, sc->S));
        for (int64_t b = 0; b < sc->B; b++)
            for (int64_t j = sc->S - b % 2 - 1; j < sc->S && j > 0; j++)
                m->data[b * sc->S + j] = -INFINITY;
        break;
    case 3:
        m = ag_randn(NULL, &r, 0.0f, 1.0f, SHP(sc->T, 1));
        break;
    case 4:
        m = ag_randn(NULL, &r, 0.0f, 1.0f, SHP(sc->H, sc->T, sc->S));
        for (int64_t h = 0; h < sc->H; h++) /* never a whole row: column 0 stays */
            m->data[(h * sc->T + sc->T - 1) * sc->S + sc->S - 1] = -INFINITY;
        break;
    default:
        break;
    }
    return m;
}

static float *copy_of(const float *x, int64_t n)
{
    float *d = malloc((size_t)n * sizeof *d);
    memcpy(d, x, (size_t)n * sizeof *d);
    return d;
}

static void check_case(shape_case sc)
{
    ag_ctx *c = ag_ctx_new();
    uint64_t seed = (uint64_t)(sc.T * 131 + sc.S * 7 + sc.hs + sc.mask);
    ag_tensor *in[3] = {rand_leaf(seed, 1.0f, SHP(sc.B, sc.H, sc.T, sc.hs)),
                        rand_leaf(seed + 1, 1.0f, SHP(sc.B, sc.H, sc.S, sc.hs)),
                        rand_leaf(seed + 2, 1.0f, SHP(sc.B, sc.H, sc.S, sc.hv))};
    ag_tensor *mask = make_mask(&sc);
    float scale = 1.0f / sqrtf((float)sc.hs);

    ag_ctx_manual_seed(c, 5);
    ag_tensor *want = composed(c, in[0], in[1], in[2], mask, sc.causal, scale, sc.p, true);
    assert_true(ag_backward(c, weighted_sum(c, want)));
    float *wg[3];
    for (int i = 0; i < 3; i++)
        wg[i] = copy_of(in[i]->grad, in[i]->numel);

    for (int fresh = 0; fresh < 2; fresh++) {
        ag_tensor *use[3];
        for (int i = 0; i < 3; i++) {
            ag_zero_grad(in[i]);
            use[i] = fresh ? ag_mul_scalar(c, in[i], 1.0f) : in[i]; /* fresh: assigned grads */
        }
        ag_ctx_manual_seed(c, 5);
        ag_tensor *got = ag_attention_qkv(c, use[0], use[1], use[2], mask, sc.causal, scale, sc.p,
                                          true);
        assert_shape(got, sc.B, sc.H, sc.T, sc.hv);
        assert_close(got->data, want->data, got->numel, 2e-6);
        assert_true(ag_backward(c, weighted_sum(c, got)));
        for (int i = 0; i < 3; i++)
            assert_close(in[i]->grad, wg[i], in[i]->numel, 2e-5);
    }
    for (int i = 0; i < 3; i++)
        free(wg[i]);
    free_all(in, 3);
    ag_tensor_free(mask);
    ag_ctx_free(c);
}

/* T = 2, S = 3, hs = hv = 1, scale 1: q = (0, ln 3), k = (1, 1, 1) -> row 0
 * weighs three keys equally; causal, row 0 sees key 0 only and row 1 keys
 * 0 and 1 equally; a -inf mask on key 2 drops it. */
static void test_attention_qkv_by_hand(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *q = ag_from_data(c, FLOATS(0.0f, 1.0986123f), SHP(1, 1, 2, 1));
    ag_tensor *k = ag_from_data(c, FLOATS(1, 1, 1), SHP(1, 1, 3, 1));
    ag_tensor *v = ag_from_data(c, FLOATS(3, 6, 9), SHP(1, 1, 3, 1));
    ag_tensor *y = ag_attention_qkv(c, q, k, v, NULL, false, 1.0f, 0.0f, false);
    assert_shape(y, 1, 1, 2, 1);
    assert_close(y->data, FLOATS(6, 6), 2, 1e-6);
    y = ag_attention_qkv(c, q, k, v, NULL, true, 1.0f, 0.0f, false);
    assert_close(y->data, FLOATS(3, 4.5f), 2, 1e-6);
    ag_tensor *m = ag_from_data(c, FLOATS(0, 0, -INFINITY), SHP(3));
    y = ag_attention_qkv(c, q, k, v, m, false, 1.0f, 0.0f, false);
    assert_close(y->data, FLOATS(4.5f, 4.5f), 2, 1e-6);
    /* an additive mask shifts the weights: ln 2 on key 2 of row 0 -> (1, 1, 2) / 4 */
    ag_tensor *m2 = ag_from_data(c, FLOATS(0, 0, 0.6931472f, 0, 0, 0), SHP(2, 3));
    y = ag_attention_qkv(c, q, k, v, m2, false, 1.0f, 0.0f, false);
    assert_close(y->data, FLOATS((3 + 6 + 18) / 4.0f, 6), 2, 1e-6);
    ag_ctx_free(c);
}

/* by rows: max(T, S) * max(hs, hv) <= 128; by blocks above */
static void test_attention_qkv_matches_composition(void **state)
{
    (void)state;
    const shape_case cases[] = {
        {2, 2, 5, 5, 4, 4, false, 0, 0}, /* rows */
        {2, 2, 5, 5, 4, 4, true, 0, 0},
        {2, 2, 5, 7, 4, 3, true, 0, 0},  /* S > T */
        {1, 3, 7, 4, 4, 6, true, 0, 0},  /* S < T */
        {2, 2, 5, 7, 4, 3, false, 1, 0}, /* masks */
        {3, 2, 5, 7, 4, 3, true, 2, 0},
        {2, 2, 5, 7, 4, 3, false, 3, 0},
        {2, 3, 6, 6, 4, 4, true, 4, 0},
        {2, 2, 64, 64, 8, 8, true, 0, 0},   /* blocks: exactly one */
        {2, 2, 70, 70, 8, 8, true, 0, 0},   /* a full block and a partial one */
        {1, 2, 70, 90, 4, 5, true, 0, 0},   /* S > T: columns no row keeps */
        {1, 2, 90, 70, 4, 5, true, 1, 0},   /* S < T */
        {1, 1, 130, 100, 8, 8, false, 2, 0}, /* three blocks, no causal */
        {1, 2, 66, 80, 4, 4, false, 4, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_case(cases[i]);
}

static void test_attention_qkv_matches_composition_with_dropout(void **state)
{
    (void)state;
    const shape_case cases[] = {
        {2, 2, 5, 7, 4, 3, true, 0, 0.3f},
        {2, 2, 5, 7, 4, 3, false, 1, 0.2f},
        {2, 2, 70, 70, 8, 8, true, 0, 0.5f},
        {1, 2, 70, 90, 4, 5, true, 2, 0.2f},
        {1, 1, 90, 66, 4, 4, false, 0, 0.3f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_case(cases[i]);
}

/* packed qkv (B, T, 3C) -> q, k, v (B, H, T, hs): the reshape and permute
 * that unpack ag_attention's layout */
static ag_tensor *unpack(ag_ctx *c, ag_tensor *qkv, int H, int part)
{
    int64_t B = qkv->shape[0], T = qkv->shape[1], C = qkv->shape[2] / 3;
    ag_tensor *r = ag_reshape(c, ag_slice(c, qkv, 2, part * C, (part + 1) * C), SHP(B, T, H, C / H));
    return ag_permute(c, r, (int[]){0, 2, 1, 3}, 4);
}

/* the packed fast path and the new op on the same numbers, dropout too */
static void check_packed(int64_t B, int64_t T, int64_t C, int H, float p)
{
    ag_tensor *qkv = rand_leaf(400 + (uint64_t)T, 1.0f, SHP(B, T, 3 * C));
    ag_ctx *c = ag_ctx_new();
    float scale = 1.0f / sqrtf((float)(C / H));
    ag_ctx_manual_seed(c, 9);
    ag_tensor *want = ag_attention(c, qkv, H, scale, p, true);
    assert_true(ag_backward(c, weighted_sum(c, want)));
    float *wg = copy_of(qkv->grad, qkv->numel);
    ag_zero_grad(qkv);
    ag_tensor *q = unpack(c, qkv, H, 0), *k = unpack(c, qkv, H, 1), *v = unpack(c, qkv, H, 2);
    ag_ctx_manual_seed(c, 9);
    ag_tensor *o = ag_attention_qkv(c, q, k, v, NULL, true, scale, p, true);
    ag_tensor *got = ag_reshape(c, ag_permute(c, o, (int[]){0, 2, 1, 3}, 4), SHP(B, T, C));
    assert_close(got->data, want->data, got->numel, 1e-6);
    assert_true(ag_backward(c, weighted_sum(c, got)));
    assert_close(qkv->grad, wg, qkv->numel, 1e-5);
    free(wg);
    ag_tensor_free(qkv);
    ag_ctx_free(c);
}

static void test_attention_qkv_matches_packed(void **state)
{
    (void)state;
    check_packed(2, 5, 8, 2, 0.0f);   /* rows */
    check_packed(4, 8, 32, 4, 0.2f);  /* the tiny preset's T and hs, dropout */
    check_packed(2, 70, 12, 3, 0.0f); /* blocks */
    check_packed(2, 70, 12, 3, 0.5f);
}

/* q, k and v all one tensor (and k == v): its grad is the sum of the three */
static void test_attention_qkv_one_tensor(void **state)
{
    (void)state;
    for (int big = 0; big < 2; big++) {
        int64_t T = big ? 70 : 5, hs = big ? 4 : 3;
        ag_tensor *x = rand_leaf(31 + (uint64_t)big, 1.0f, SHP(2, 2, T, hs));
        ag_tensor *y = rand_leaf(33, 1.0f, SHP(2, 2, T, hs));
        ag_ctx *c = ag_ctx_new();
        ag_tensor *want = composed(c, x, x, x, NULL, true, 0.5f, 0.0f, false);
        ag_tensor *want2 = composed(c, y, x, x, NULL, false, 0.5f, 0.0f, false);
        assert_true(ag_backward(c, ag_add(c, weighted_sum(c, want), weighted_sum(c, want2))));
        float *wx = copy_of(x->grad, x->numel), *wy = copy_of(y->grad, y->numel);
        ag_zero_grad(x);
        ag_zero_grad(y);
        /* through a non-leaf too, whose grad buffer starts unset */
        ag_tensor *xf = ag_mul_scalar(c, x, 1.0f);
        ag_tensor *got = ag_attention_qkv(c, xf, xf, xf, NULL, true, 0.5f, 0.0f, false);
        ag_tensor *got2 = ag_attention_qkv(c, y, x, x, NULL, false, 0.5f, 0.0f, false);
        assert_close(got->data, want->data, got->numel, 2e-6);
        assert_true(ag_backward(c, ag_add(c, weighted_sum(c, got), weighted_sum(c, got2))));
        assert_close(x->grad, wx, x->numel, 2e-5);
        assert_close(y->grad, wy, y->numel, 2e-5);
        free(wx);
        free(wy);
        ag_tensor_free(x);
        ag_tensor_free(y);
        ag_ctx_free(c);
    }
}

/* grads for v alone (q and k need none), and for q alone */
static void test_attention_qkv_some_grads(void **state)
{
    (void)state;
    for (int which = 0; which < 3; which += 2) {
        ag_tensor *in[3];
        for (int i = 0; i < 3; i++) {
            in[i] = ag_randn(NULL, TEST_RNG(50 + (uint64_t)i), 0.0f, 1.0f, SHP(1, 2, 6, 4));
            ag_set_requires_grad(in[i], i == which);
        }
        ag_ctx *c = ag_ctx_new();
        assert_true(ag_backward(c, weighted_sum(c, composed(c, in[0], in[1], in[2], NULL, true,
                                                            0.5f, 0.0f, false))));
        float *w = copy_of(in[which]->grad, in[which]->numel);
        ag_zero_grad(in[which]);
        ag_tensor *y = ag_attention_qkv(c, in[0], in[1], in[2], NULL, true, 0.5f, 0.0f, false);
        assert_true(ag_backward(c, weighted_sum(c, y)));
        assert_close(in[which]->grad, w, in[which]->numel, 2e-5);
        for (int i = 0; i < 3; i++)
            if (i != which)
                assert_null(in[i]->grad);
        free(w);
        free_all(in, 3);
        ag_ctx_free(c);
    }
}

/* Each (batch, head) runs whole on one thread, so thread count changes no bit. */
static void test_attention_qkv_threads_agree(void **state)
{
    (void)state;
    int old = ag_get_num_threads();
    ag_tensor *in[3] = {rand_leaf(61, 1.0f, SHP(2, 4, 100, 16)), rand_leaf(62, 1.0f, SHP(2, 4, 90, 16)),
                        rand_leaf(63, 1.0f, SHP(2, 4, 90, 8))};
    float *out[2], *grad[2][3];
    int64_t n_out = 2 * 4 * 100 * 8;
    for (int r = 0; r < 2; r++) {
        ag_set_num_threads(r + 1);
        ag_ctx *c = ag_ctx_new();
        ag_ctx_manual_seed(c, 3);
        for (int i = 0; i < 3; i++)
            ag_zero_grad(in[i]);
        ag_tensor *y = ag_attention_qkv(c, in[0], in[1], in[2], NULL, true, 0.25f, 0.2f, true);
        assert_true(ag_backward(c, weighted_sum(c, y)));
        out[r] = copy_of(y->data, n_out);
        for (int i = 0; i < 3; i++)
            grad[r][i] = copy_of(in[i]->grad, in[i]->numel);
        ag_ctx_free(c);
    }
    ag_set_num_threads(old);
    assert_memory_equal(out[0], out[1], (size_t)n_out * sizeof(float));
    for (int i = 0; i < 3; i++)
        assert_memory_equal(grad[0][i], grad[1][i], (size_t)in[i]->numel * sizeof(float));
    for (int r = 0; r < 2; r++) {
        free(out[r]);
        for (int i = 0; i < 3; i++)
            free(grad[r][i]);
    }
    free_all(in, 3);
}

/* Without grad nothing is recorded or kept; the values are the same. */
static void test_attention_qkv_no_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *in[3] = {rand_leaf(71, 1.0f, SHP(2, 2, 80, 8)), rand_leaf(72, 1.0f, SHP(2, 2, 80, 8)),
                        rand_leaf(73, 1.0f, SHP(2, 2, 80, 8))};
    ag_tensor *with = ag_attention_qkv(c, in[0], in[1], in[2], NULL, true, 0.3f, 0.1f, false);
    ag_set_grad_enabled(c, false);
    ag_tensor *without = ag_attention_qkv(c, in[0], in[1], in[2], NULL, true, 0.3f, 0.1f, false);
    ag_set_grad_enabled(c, true);
    assert_non_null(ag_op_of(with));
    assert_null(ag_op_of(without));
    assert_memory_equal(with->data, without->data, (size_t)with->numel * sizeof(float));
    free_all(in, 3);
    ag_ctx_free(c);
}

typedef struct {
    bool causal;
    const ag_tensor *mask;
    float p;
} gc_args;

static ag_tensor *f_qkv(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    const gc_args *a = user;
    return weighted_sum(c, ag_attention_qkv(c, in[0], in[1], in[2], a->mask, a->causal, 0.7f,
                                            a->p, true));
}

/* gradcheck reseeds ctx's generator before every evaluation: one dropout mask */
static void test_attention_qkv_gradcheck(void **state)
{
    (void)state;
    ag_tensor *small[3] = {rand_leaf(81, 1.0f, SHP(1, 2, 3, 2)), rand_leaf(82, 1.0f, SHP(1, 2, 4, 2)),
                           rand_leaf(83, 1.0f, SHP(1, 2, 4, 3))};
    ag_tensor *m = ag_randn(NULL, TEST_RNG(84), 0.0f, 1.0f, SHP(3, 4));
    gc_args cases[] = {{false, NULL, 0}, {true, NULL, 0}, {true, m, 0}, {false, m, 0.3f}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_gradcheck(f_qkv, small, 3, &cases[i]);
    /* by directions, row blocks, S > T */
    ag_tensor *big[3] = {rand_leaf(85, 1.0f, SHP(1, 2, 67, 3)), rand_leaf(86, 1.0f, SHP(1, 2, 75, 3)),
                         rand_leaf(87, 1.0f, SHP(1, 2, 75, 2))};
    gc_args bc[] = {{true, NULL, 0}, {true, NULL, 0.3f}, {false, NULL, 0}};
    for (size_t i = 0; i < sizeof bc / sizeof *bc; i++)
        assert_gradcheck(f_qkv, big, 3, &bc[i]);
    free_all(small, 3);
    free_all(big, 3);
    ag_tensor_free(m);
}

static void test_attention_qkv_errors(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *q = ag_zeros(c, SHP(2, 3, 4, 8)), *k = ag_zeros(c, SHP(2, 3, 5, 8));
    ag_tensor *v = ag_zeros(c, SHP(2, 3, 5, 6));
    assert_ag_error(ag_attention_qkv(c, ag_zeros(c, SHP(3, 4, 8)), k, v, NULL, true, 1, 0, true),
                    "attention_qkv", "(3, 4, 8)", "(2, 3, 5, 8)", "(2, 3, 5, 6)");
    assert_ag_error(ag_attention_qkv(c, q, ag_zeros(c, SHP(2, 3, 5, 7)), v, NULL, true, 1, 0, true),
                    "attention_qkv", "(2, 3, 4, 8)", "(2, 3, 5, 7)");
    assert_ag_error(ag_attention_qkv(c, q, k, ag_zeros(c, SHP(2, 3, 6, 6)), NULL, true, 1, 0, true),
                    "attention_qkv", "(2, 3, 6, 6)");
    assert_ag_error(ag_attention_qkv(c, q, ag_zeros(c, SHP(2, 2, 5, 8)), v, NULL, true, 1, 0, true),
                    "attention_qkv", "(2, 2, 5, 8)");
    assert_ag_error(ag_attention_qkv(c, q, ag_zeros(c, SHP(2, 3, 0, 8)), ag_zeros(c, SHP(2, 3, 0, 6)),
                                     NULL, false, 1, 0, true),
                    "attention_qkv", "(2, 3, 0, 8)");
    assert_ag_error(ag_attention_qkv(c, q, k, v, ag_zeros(c, SHP(4, 4)), false, 1, 0, true),
                    "attention_qkv", "mask (4, 4)", "(2, 3, 4, 5)");
    assert_ag_error(ag_attention_qkv(c, q, k, v, ag_zeros(c, SHP(1, 1, 1, 1, 5)), false, 1, 0, true),
                    "attention_qkv", "mask (1, 1, 1, 1, 5)");
    assert_ag_error(ag_attention_qkv(c, q, k, v, NULL, true, 1, 1.0f, true), "attention_qkv",
                    "dropout", "1");
    ag_tensor *mg = ag_zeros(NULL, SHP(4, 5));
    ag_set_requires_grad(mg, true);
    assert_ag_error(ag_attention_qkv(c, q, k, v, mg, false, 1, 0, true), "attention_qkv", "mask",
                    "(4, 5)", "requires grad");
    ag_set_grad_enabled(c, false); /* no grad anywhere: the mask is fine */
    assert_non_null(ag_attention_qkv(c, q, k, v, mg, false, 1, 0, true));
    ag_set_grad_enabled(c, true);
    ag_tensor_free(mg);
    catch_errors();
    assert_null(ag_attention_qkv(c, q, NULL, v, NULL, true, 1, 0, true));
    assert_int_equal(error_count, 0);
    ag_set_error_handler(NULL, NULL);
    ag_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_qkv_by_hand),
        cmocka_unit_test(test_attention_qkv_matches_composition),
        cmocka_unit_test(test_attention_qkv_matches_composition_with_dropout),
        cmocka_unit_test(test_attention_qkv_matches_packed),
        cmocka_unit_test(test_attention_qkv_one_tensor),
        cmocka_unit_test(test_attention_qkv_some_grads),
        cmocka_unit_test(test_attention_qkv_threads_agree),
        cmocka_unit_test(test_attention_qkv_no_grad),
        cmocka_unit_test(test_attention_qkv_gradcheck),
        cmocka_unit_test(test_attention_qkv_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
