/* test_nn_modules.c - the nn modules as containers: gpt.py's parameter names,
 * the parameter registry, and dropout being the identity in eval mode. */
#include "nn_util.h"

/* ------------------------------------------------------------------ registry */

static void test_block_parameter_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[2];
    } want[] = {
        {"blocks.0.sa.heads.0.key.weight", 2, {2, 6}},
        {"blocks.0.sa.heads.0.query.weight", 2, {2, 6}},
        {"blocks.0.sa.heads.0.value.weight", 2, {2, 6}},
        {"blocks.0.sa.heads.1.key.weight", 2, {2, 6}},
        {"blocks.0.sa.heads.1.query.weight", 2, {2, 6}},
        {"blocks.0.sa.heads.1.value.weight", 2, {2, 6}},
        {"blocks.0.sa.heads.2.key.weight", 2, {2, 6}},
        {"blocks.0.sa.heads.2.query.weight", 2, {2, 6}},
        {"blocks.0.sa.heads.2.value.weight", 2, {2, 6}},
        {"blocks.0.sa.proj.weight", 2, {6, 6}},
        {"blocks.0.sa.proj.bias", 1, {6}},
        {"blocks.0.ffwd.net.0.weight", 2, {24, 6}},
        {"blocks.0.ffwd.net.0.bias", 1, {24}},
        {"blocks.0.ffwd.net.2.weight", 2, {6, 24}},
        {"blocks.0.ffwd.net.2.bias", 1, {6}},
        {"blocks.0.ln1.weight", 1, {6}},
        {"blocks.0.ln1.bias", 1, {6}},
        {"blocks.0.ln2.weight", 1, {6}},
        {"blocks.0.ln2.bias", 1, {6}},
    };
    const int nwant = (int)(sizeof want / sizeof *want);
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(0);
    nn_block b, b1;
    assert_true(nn_block_init(&b, &p, "blocks.0", 6, 3, 0.1f, &r));
    assert_int_equal(p.n, nwant);
    for (int i = 0; i < nwant; i++) {
        const ag_tensor *t = p.items[i];
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->ndim, want[i].ndim);
        for (int d = 0; d < want[i].ndim; d++)
            assert_int_equal(t->shape[d], want[i].shape[d]);
        assert_true(ag_requires_grad(t));
        assert_ptr_equal(nn_params_find(&p, want[i].name), t);
    }
    /* the struct's fields are the registered tensors */
    assert_ptr_equal(b.sa.heads[1].query.weight, p.items[4]);
    assert_ptr_equal(b.ffwd.proj.bias, p.items[14]);
    assert_ptr_equal(b.ln2.weight, p.items[17]);
    assert_int_equal(b.sa.n_head, 3);
    assert_int_equal(b.sa.heads[0].head_size, 2);
    /* 9 * 2*6 + 6*6+6 + 24*6+24 + 6*24+6 + 4*6 */
    assert_int_equal(nn_params_numel(&p), 108 + 42 + 168 + 150 + 24);
    assert_null(nn_params_find(&p, "blocks.0.sa.heads.3.key.weight"));
    assert_null(nn_params_find(&p, "blocks.0.sa.heads.0.key.bias"));

    /* a second block under its own prefix */
    assert_true(nn_block_init(&b1, &p, "blocks.1", 6, 3, 0.1f, &r));
    assert_int_equal(p.n, 2 * nwant);
    assert_string_equal(p.items[nwant]->name, "blocks.1.sa.heads.0.key.weight");
    assert_string_equal(p.items[2 * nwant - 1]->name, "blocks.1.ln2.bias");
    assert_int_equal(nn_params_numel(&p), 2 * 492);

    /* the same prefix again collides on its first name */
    nn_block dup;
    bool ok = true;
    assert_ag_error(ok = nn_block_init(&dup, &p, "blocks.0", 6, 3, 0.1f, &r),
                    "blocks.0.sa.heads.0.key.weight");
    assert_false(ok);
    assert_int_equal(p.n, 2 * nwant);
    nn_block_free(&dup);
    nn_block_free(&b1);
    nn_block_free(&b);
    nn_params_free(&p);
    assert_int_equal(p.n, 0);
    assert_null(p.items);
}

static void test_registry(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(p.n, 0);
    assert_int_equal(nn_params_numel(&p), 0);
    ag_tensor *a = nn_param(&p, "enc", "w", AG_SHAPE(2, 3));
    ag_tensor *b = nn_param(&p, NULL, "b", AG_SHAPE(4));
    ag_tensor *s = nn_param(&p, "", "s", 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(s);
    assert_string_equal(a->name, "enc.w");
    assert_string_equal(b->name, "b");
    assert_string_equal(s->name, "s");
    assert_int_equal(s->numel, 1);
    for (int64_t i = 0; i < a->numel; i++)
        assert_true(a->data[i] == 0.0f); /* zeroed */
    assert_int_equal(nn_params_numel(&p), 6 + 4 + 1);

    /* duplicates are reported through the handler and give NULL; nothing is added */
    ag_tensor *d = a;
    assert_ag_error(d = nn_param(&p, "enc", "w", AG_SHAPE(5)), "enc.w", "already");
    assert_null(d);
    d = a;
    assert_ag_error(d = nn_param(&p, NULL, "enc.w", AG_SHAPE(2, 3)), "enc.w");
    assert_null(d);
    assert_int_equal(p.n, 3);
    assert_int_equal(nn_params_numel(&p), 11);
    assert_ptr_equal(nn_params_find(&p, "enc.w"), a);
    /* a name too long for the registry is refused, not truncated */
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    d = a;
    assert_ag_error(d = nn_param(&p, "enc", longname, AG_SHAPE(1)), "longer");
    assert_null(d);
    assert_int_equal(p.n, 3);

    /* many registrations (growing the array) keep order and lookups */
    for (int i = 0; i < 100; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "p%d", i);
        assert_non_null(nn_param(&p, "many", nm, AG_SHAPE(i % 3 + 1)));
    }
    assert_int_equal(p.n, 103);
    assert_string_equal(p.items[3]->name, "many.p0");
    assert_string_equal(p.items[102]->name, "many.p99");
    assert_int_equal(nn_params_find(&p, "many.p50")->numel, 50 % 3 + 1);
    assert_int_equal(nn_params_numel(&p), 11 + 33 * 6 + 1); /* 1+2+3 per 3, p99 adds 1 */

    /* zero_grad: grads of any value become zero; missing grads are made, zeroed */
    ag_zero_grad(a);
    for (int64_t i = 0; i < a->numel; i++)
        a->grad[i] = (float)i + 1.0f;
    assert_null(b->grad);
    nn_params_zero_grad(&p);
    for (int i = 0; i < p.n; i++) {
        ag_tensor *t = p.items[i];
        assert_non_null(t->grad);
        for (int64_t k = 0; k < t->numel; k++)
            assert_true(t->grad[k] == 0.0f);
    }
    nn_params_free(&p);

    /* n_embd not divisible by n_head */
    nn_params q;
    nn_params_init(&q);
    ag_rng r = ag_rng_new(0);
    nn_mha m;
    bool ok = true;
    assert_ag_error(ok = nn_mha_init(&m, &q, "sa", 6, 4, 0.0f, &r), "6", "4", "divisible");
    assert_false(ok);
    assert_int_equal(q.n, 0);
    nn_mha_free(&m);
    ok = true;
    assert_ag_error(ok = nn_mha_init(&m, &q, "sa", 6, 0, 0.0f, &r), "n_head");
    assert_false(ok);
    nn_mha_free(&m);
    nn_block blk;
    ok = true;
    assert_ag_error(ok = nn_block_init(&blk, &q, "blocks.0", 10, 3, 0.0f, &r), "divisible");
    assert_false(ok);
    nn_block_free(&blk);
    nn_params_free(&q);
}

/* ------------------------------------------------------------------ dropout in eval */

/* A module built with dropout 0.5 gives in eval mode exactly what the same
 * weights with dropout 0 give (eval or training); in training it differs. */
static void test_dropout_eval_is_identity(void **state)
{
    (void)state;
    ag_tensor *x = ag_randn(NULL, TEST_RNG(30), 0.0f, 1.0f, AG_SHAPE(2, 5, 8));
    nn_params pa, pb;
    nn_params_init(&pa);
    nn_params_init(&pb);
    nn_head ha, hb;
    nn_mha ma, mb;
    nn_feedforward fa, fb;
    nn_block ba, bb;
    nn_dropout da = {0.5f}, db = {0.0f};
    ag_rng ra = ag_rng_new(31), rb = ag_rng_new(31);
    assert_true(nn_head_init(&ha, &pa, "h", 8, 4, 0.5f, &ra));
    assert_true(nn_head_init(&hb, &pb, "h", 8, 4, 0.0f, &rb));
    assert_true(nn_mha_init(&ma, &pa, "sa", 8, 2, 0.5f, &ra));
    assert_true(nn_mha_init(&mb, &pb, "sa", 8, 2, 0.0f, &rb));
    assert_true(nn_feedforward_init(&fa, &pa, "ffwd", 8, 0.5f, &ra));
    assert_true(nn_feedforward_init(&fb, &pb, "ffwd", 8, 0.0f, &rb));
    assert_true(nn_block_init(&ba, &pa, "blocks.0", 8, 2, 0.5f, &ra));
    assert_true(nn_block_init(&bb, &pb, "blocks.0", 8, 2, 0.0f, &rb));
    assert_int_equal(pa.n, pb.n);
    for (int i = 0; i < pa.n; i++) /* same weights */
        assert_true(bit_equal(pa.items[i]->data, pb.items[i]->data, pa.items[i]->numel));

    const struct {
        const char *what;
        seq_fn f;
        const void *a, *b;
    } mods[] = {
        {"head", s_head, &ha, &hb},
        {"mha", s_mha, &ma, &mb},
        {"feedforward", s_ffwd, &fa, &fb},
        {"block", s_block, &ba, &bb},
        {"dropout", s_dropout, &da, &db},
    };
    for (size_t i = 0; i < sizeof mods / sizeof *mods; i++) {
        int64_t n;
        float *eval_a = run(mods[i].f, mods[i].a, x, false, 1, &n);
        float *eval_a2 = run(mods[i].f, mods[i].a, x, false, 2, NULL);
        float *eval_b = run(mods[i].f, mods[i].b, x, false, 1, NULL);
        float *train_b = run(mods[i].f, mods[i].b, x, true, 1, NULL);
        float *train_a = run(mods[i].f, mods[i].a, x, true, 1, NULL);
        if (!bit_equal(eval_a, eval_b, n) || !bit_equal(eval_a, eval_a2, n) ||
            !bit_equal(eval_a, train_b, n))
            fail_msg("%s: eval output with dropout 0.5 is not the dropout-free output", mods[i].what);
        if (bit_equal(eval_a, train_a, n))
            fail_msg("%s: training output with dropout 0.5 equals eval's", mods[i].what);
        free(eval_a);
        free(eval_a2);
        free(eval_b);
        free(train_b);
        free(train_a);
    }
    /* nn_dropout in eval hands back the same values as its input */
    float *y = run(s_dropout, &da, x, false, 3, NULL);
    assert_true(bit_equal(y, x->data, x->numel));
    free(y);

    nn_mha_free(&ma);
    nn_mha_free(&mb);
    nn_block_free(&ba);
    nn_block_free(&bb);
    nn_params_free(&pa);
    nn_params_free(&pb);
    ag_tensor_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_parameter_names),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_dropout_eval_is_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
