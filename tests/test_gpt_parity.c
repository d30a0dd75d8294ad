/* test_gpt_parity.c - the tiny lecture GPT against PyTorch: with the weights of
 * tests/fixtures/gpt_tiny.safetensors (made by tools/make_fixtures.py in
 * float64) and its batch, the logits, the loss and the grad of every named
 * parameter match PyTorch's within 1e-4 relative error, dropout off. */
#include "test_util.h"

#include <stdlib.h>

#include "model.h"

static const char *fixture_dir = "tests/fixtures";

/* max |got - want| / max |want|: the error relative to the tensor's scale */
static double rel_err(const float *got, const float *want, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        num = d > num ? d : num;
        den = fabs(want[i]) > den ? fabs(want[i]) : den;
    }
    return den > 0 ? num / den : num;
}

static int64_t meta_int(const nn_st *f, const char *key)
{
    const char *v = nn_st_meta(f, key);
    assert_non_null(v);
    return strtoll(v, NULL, 10);
}

static float *read_tensor(const nn_st *f, const char *name, int64_t *numel)
{
    int nd;
    int64_t shape[AG_MAX_DIMS];
    char err[256];
    if (!nn_st_shape(f, name, &nd, shape))
        fail_msg("fixture lacks %s", name);
    int64_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    float *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    if (!nn_st_read(f, name, d, nd, shape, err, sizeof err))
        fail_msg("%s", err);
    *numel = n;
    return d;
}

static void test_gpt_matches_pytorch(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/gpt_tiny.safetensors", fixture_dir);
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);

    gpt_config cfg = {.vocab_size = meta_int(f, "vocab_size"), .block_size = meta_int(f, "block_size"),
                      .n_embd = meta_int(f, "n_embd"), .n_head = (int)meta_int(f, "n_head"),
                      .n_layer = (int)meta_int(f, "n_layer"), .dropout = 0.0f};
    gpt_model m;
    assert_true(gpt_init(&m, &cfg, 0, err, sizeof err));
    for (int i = 0; i < m.params.n; i++) {
        ag_tensor *p = m.params.items[i];
        if (!nn_st_read(f, p->name, p->data, p->ndim, p->shape, err, sizeof err))
            fail_msg("%s", err);
    }

    int64_t n_idx, n_tg, n_logits, n_loss;
    float *idx_f = read_tensor(f, "input.idx", &n_idx);
    float *tg_f = read_tensor(f, "input.targets", &n_tg);
    int nd;
    int64_t shape[AG_MAX_DIMS];
    assert_true(nn_st_shape(f, "input.idx", &nd, shape));
    assert_int_equal(nd, 2);
    ag_index *idx = ag_index_new(NULL, NULL, 2, shape);
    ag_index *tg = ag_index_new(NULL, NULL, 2, shape);
    for (int64_t i = 0; i < n_idx; i++) {
        idx->data[i] = (int32_t)idx_f[i];
        tg->data[i] = (int32_t)tg_f[i];
    }

    ag_ctx *c = ag_ctx_new();
    ag_tensor *loss = NULL;
    ag_tensor *logits = gpt_forward(c, &m, idx, tg, false, &loss);
    assert_shape(logits, shape[0], shape[1], cfg.vocab_size);
    nn_params_zero_grad(&m.params);
    assert_true(ag_backward(c, loss));

    float *want_logits = read_tensor(f, "expected.logits", &n_logits);
    float *want_loss = read_tensor(f, "expected.loss", &n_loss);
    assert_int_equal(n_logits, logits->numel);
    double e_logits = rel_err(logits->data, want_logits, n_logits);
    double e_loss = rel_err(loss->data, want_loss, 1);
    print_message("parity: logits rel err %.2e, loss %.6f vs %.6f rel err %.2e\n", e_logits,
                  (double)loss->data[0], (double)want_loss[0], e_loss);
    assert_true(e_logits < 1e-4);
    assert_true(e_loss < 1e-4);

    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m.params.n; i++) {
        ag_tensor *p = m.params.items[i];
        char gname[300];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        int64_t n;
        float *want = read_tensor(f, gname, &n);
        assert_int_equal(n, p->numel);
        double e = rel_err(p->grad, want, n);
        if (e > worst) {
            worst = e;
            worst_name = p->name;
        }
        if (!(e < 1e-4))
            fail_msg("grad of %s: rel err %.3e", p->name, e);
        free(want);
    }
    print_message("parity: %d parameter grads, largest rel err %.2e (%s)\n", m.params.n, worst,
                  worst_name);

    free(idx_f);
    free(tg_f);
    free(want_logits);
    free(want_loss);
    ag_index_free(idx);
    ag_index_free(tg);
    ag_ctx_free(c);
    gpt_free(&m);
    nn_st_close(f);
}

/* The names are exactly gpt.py's state_dict names, in its order. */
static void test_gpt_parameter_names(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/gpt_tiny.safetensors", fixture_dir);
    nn_st *f = nn_st_open(path, err, sizeof err);
    assert_non_null(f);
    gpt_config cfg = {13, 8, 16, 4, 2, 0.0f};
    gpt_model m;
    assert_true(gpt_init(&m, &cfg, 0, err, sizeof err));
    /* the fixture holds PyTorch's named_parameters() first, in order */
    for (int i = 0; i < m.params.n; i++)
        assert_string_equal(m.params.items[i]->name, nn_st_name(f, i));
    assert_string_equal(m.params.items[0]->name, "token_embedding_table.weight");
    assert_non_null(nn_params_find(&m.params, "blocks.1.sa.heads.3.value.weight"));
    assert_non_null(nn_params_find(&m.params, "blocks.0.ffwd.net.2.bias"));
    assert_null(nn_params_find(&m.params, "blocks.0.sa.heads.0.key.bias"));
    /* 13*16 + 8*16 + 2 * (4*3*4*16 + 16*16+16 + 16*64+64 + 64*16+16 + 4*16) + 2*16 + 16*13+13 */
    assert_int_equal(nn_params_numel(&m.params), 208 + 128 + 2 * (768 + 272 + 1088 + 1040 + 64) + 32 + 221);
    gpt_free(&m);
    nn_st_close(f);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt_matches_pytorch),
        cmocka_unit_test(test_gpt_parameter_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
