/* test_nn_arch_models.c - the two character-level examples' models against
 * their PyTorch twins (tools/llama_torch.py, tools/charrnn_torch.py): the
 * same weights and batch give the same logits, loss and every parameter's
 * gradient within 1e-4 (tests/fixtures/nn_arch_models.safetensors, from
 * tools/fixtures_nn_arch.py); the tied head saves and loads once; and a
 * sampling step equals the forward's last row. */
#include "nn_arch_util.h"

#include <unistd.h>

#include "../examples/charrnn/model.h"
#include "../examples/llama/model.h"

static nn_st *fx;

static int open_fx(void **state)
{
    (void)state;
    fx = open_fixture("nn_arch_models.safetensors");
    return 0;
}

static int close_fx(void **state)
{
    (void)state;
    nn_st_close(fx);
    return 0;
}

static int64_t meta_int(const char *key)
{
    const char *v = nn_st_meta(fx, key);
    if (!v)
        fail_msg("fixture lacks metadata %s", key);
    return strtoll(v, NULL, 10);
}

/* fixture "<prefix>.input.<what>" (floats) as an index array */
static ag_index *fx_index(const char *prefix, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "%s.input.%s", prefix, what);
    ag_tensor *t = fx_tensor(NULL, fx, name);
    ag_index *ix = ag_index_new(NULL, NULL, t->ndim, t->shape);
    for (int64_t i = 0; i < t->numel; i++)
        ix->data[i] = (int32_t)t->data[i];
    ag_tensor_free(t);
    return ix;
}

/* every parameter of p from "<prefix>.<name>" */
static void load_prefixed(nn_params *p, const char *prefix)
{
    char name[512];
    for (int i = 0; i < p->n; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, p->items[i]->name);
        fx_load(fx, name, p->items[i]);
    }
}

static void expect_grads_prefixed(nn_params *p, const char *prefix)
{
    char name[512];
    for (int i = 0; i < p->n; i++) {
        snprintf(name, sizeof name, "%s.grad.%s", prefix, p->items[i]->name);
        assert_non_null(p->items[i]->grad);
        fx_expect(fx, name, p->items[i]->grad, p->items[i]->numel);
    }
}

static llama_config llama_cfg(void)
{
    return (llama_config){meta_int("llama.vocab_size"), meta_int("llama.block_size"),
                          meta_int("llama.n_embd"),     meta_int("llama.n_head"),
                          meta_int("llama.n_layer"),    meta_int("llama.ffn_hidden"),
                          1e-5f,                        10000.0f};
}

static void test_llama_matches_pytorch(void **state)
{
    (void)state;
    llama m;
    char err[256];
    llama_config cfg = llama_cfg();
    assert_true(llama_init(&m, &cfg, 1, err, sizeof err));
    /* Meta's names, the tied head once: 1 + 9 per layer + 1 */
    assert_int_equal(m.params.n, 2 + 9 * (int)cfg.n_layer);
    assert_ptr_equal(nn_params_find(&m.params, "output.weight"), m.tok_embeddings.weight);
    load_prefixed(&m.params, "llama");
    ag_index *idx = fx_index("llama", "idx"), *tgt = fx_index("llama", "targets");
    ag_ctx *c = ag_ctx_new();
    ag_tensor *loss = NULL;
    ag_tensor *logits = llama_forward(c, &m, idx, tgt, &loss);
    assert_shape(logits, idx->shape[0], idx->shape[1], cfg.vocab_size);
    fx_expect(fx, "llama.expected.logits", logits->data, logits->numel);
    fx_expect(fx, "llama.expected.loss", loss->data, 1);
    nn_params_zero_grad(&m.params);
    assert_true(ag_backward(c, loss));
    expect_grads_prefixed(&m.params, "llama"); /* the shared table: embedding + head */

    /* sampling: feeding the first sequence's tokens one by one gives its logits row by row */
    ag_set_grad_enabled(c, false);
    llama_reset(&m);
    int64_t T = idx->shape[1], V = cfg.vocab_size;
    for (int64_t t = 0; t < T; t++) {
        const float *row = llama_step(c, &m, idx->data[t]);
        assert_close(row, logits->data + t * V, V, 1e-5);
    }
    ag_ctx_free(c);
    ag_index_free(idx);
    ag_index_free(tgt);
    llama_free(&m);
}

/* The tied head survives a checkpoint: stored once, loaded into a fresh model. */
static void test_llama_checkpoint_ties(void **state)
{
    (void)state;
    llama a, b;
    char err[256], path[128];
    llama_config cfg = llama_cfg();
    assert_true(llama_init(&a, &cfg, 1, err, sizeof err));
    assert_true(llama_init(&b, &cfg, 2, err, sizeof err));
    snprintf(path, sizeof path, "/tmp/agrad_llama_%d.safetensors", (int)getpid());
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add_params(w, &a.params);
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);
    nn_st *f = nn_st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(nn_st_count(f), a.params.n);
    assert_false(nn_st_name(f, a.params.n) != NULL);
    assert_string_equal(nn_st_meta(f, NN_ST_TIED "output.weight"), "tok_embeddings.weight");
    assert_true(nn_load_params(f, &b.params, err, sizeof err));
    for (int i = 0; i < a.params.n; i++)
        assert_true(bit_equal(a.params.items[i]->data, b.params.items[i]->data,
                              a.params.items[i]->numel));
    assert_ptr_equal(b.output.weight, b.tok_embeddings.weight);
    nn_st_close(f);
    unlink(path);
    llama_free(&a);
    llama_free(&b);
}

static void rnn_matches_pytorch(const char *kind)
{
    char key[64], err[256];
    snprintf(key, sizeof key, "%s.vocab_size", kind);
    charrnn_config cfg = {.vocab_size = meta_int(key), .lstm = strcmp(kind, "lstm") == 0};
    snprintf(key, sizeof key, "%s.n_embd", kind);
    cfg.n_embd = meta_int(key);
    snprintf(key, sizeof key, "%s.hidden", kind);
    cfg.hidden = meta_int(key);
    snprintf(key, sizeof key, "%s.n_layer", kind);
    cfg.n_layer = meta_int(key);
    charrnn m;
    assert_true(charrnn_init(&m, &cfg, 1, err, sizeof err));
    load_prefixed(&m.params, kind);
    ag_index *idx = fx_index(kind, "idx"), *tgt = fx_index(kind, "targets");
    int64_t B = idx->shape[0], T = idx->shape[1], V = cfg.vocab_size;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *loss = NULL;
    ag_tensor *logits = charrnn_forward(c, &m, idx, tgt, &loss);              /* (T, B, V) */
    assert_shape(logits, T, B, V);
    snprintf(key, sizeof key, "%s.expected.logits", kind);
    ag_tensor *bt = ag_transpose(c, logits, 0, 1);                            /* (B, T, V) */
    fx_expect(fx, key, bt->data, bt->numel);
    snprintf(key, sizeof key, "%s.expected.loss", kind);
    fx_expect(fx, key, loss->data, 1);
    nn_params_zero_grad(&m.params);
    assert_true(ag_backward(c, loss));
    expect_grads_prefixed(&m.params, kind);

    /* stepping the cells one token at a time gives the same logits */
    ag_set_grad_enabled(c, false);
    for (int64_t b = 0; b < B; b++) {
        charrnn_reset(&m);
        for (int64_t t = 0; t < T; t++) {
            ag_tensor *row = charrnn_step(c, &m, idx->data[b * T + t]);
            assert_close(row->data, bt->data + (b * T + t) * V, V, 1e-5);
        }
    }
    ag_ctx_free(c);
    ag_index_free(idx);
    ag_index_free(tgt);
    charrnn_free(&m);
}

static void test_gru_model_matches_pytorch(void **state)
{
    (void)state;
    rnn_matches_pytorch("gru");
}

static void test_lstm_model_matches_pytorch(void **state)
{
    (void)state;
    rnn_matches_pytorch("lstm");
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_matches_pytorch),
        cmocka_unit_test(test_llama_checkpoint_ties),
        cmocka_unit_test(test_gru_model_matches_pytorch),
        cmocka_unit_test(test_lstm_model_matches_pytorch),
    };
    return cmocka_run_group_tests(tests, open_fx, close_fx);
}
