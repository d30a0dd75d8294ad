/* test_nn_arch_train.c - what training new architectures takes besides
 * layers: weight tying (one parameter in two layers: registry, gradients,
 * safetensors files written and read under PyTorch's names), AdamW
 * parameter groups against PyTorch, the learning-rate schedules against
 * hand-computed values, and gradient accumulation over micro-batches. */
#include "nn_arch_util.h"

#include <unistd.h>

/* A token embedding (V, C) and an output head tied to it, as Llama's
 * tok_embeddings / output or nanoGPT's wte / lm_head. */
typedef struct {
    nn_params p;
    nn_embedding tok;
    nn_rmsnorm norm;
    nn_linear head;
} tied_model;

static void tied_init(tied_model *m, uint64_t seed)
{
    nn_params_init(&m->p);
    ag_rng r = ag_rng_new(seed);
    assert_true(nn_embedding_init(&m->tok, &m->p, "tok_embeddings", 7, 4, &r));
    assert_true(nn_rmsnorm_init(&m->norm, &m->p, "norm", 4, 1e-5f));
    assert_true(nn_linear_init_tied(&m->head, &m->p, "output", m->tok.weight, false, &r));
}

/* logits of idx through embedding, norm, tied head; the mean cross-entropy */
static ag_tensor *tied_loss(ag_ctx *c, const tied_model *m, const ag_index *idx,
                            const ag_index *tgt)
{
    ag_tensor *x = nn_embedding_forward(c, &m->tok, idx);                  /* (N, 4) */
    ag_tensor *logits = nn_linear_forward(c, &m->head, nn_rmsnorm_forward(c, &m->norm, x));
    return ag_cross_entropy(c, logits, tgt, -100);
}

static const int32_t IDX[] = {1, 3, 3, 6, 0}, TGT[] = {2, 3, 5, 1, 1};

static void test_tied_registry(void **state)
{
    (void)state;
    tied_model m;
    tied_init(&m, 1);
    assert_int_equal(m.p.n, 2);                           /* the table once, the norm's weight */
    assert_int_equal(nn_params_numel(&m.p), 7 * 4 + 4);
    assert_ptr_equal(m.head.weight, m.tok.weight);
    assert_ptr_equal(nn_params_find(&m.p, "output.weight"), m.tok.weight);
    assert_ptr_equal(nn_params_find(&m.p, "tok_embeddings.weight"), m.tok.weight);
    assert_int_equal(nn_params_index(&m.p, m.tok.weight), 0);
    assert_true(m.p.flags[0] & NN_PARAM_EMBEDDING);
    assert_false(m.p.flags[1] & NN_PARAM_EMBEDDING);
    /* a tied name is a name: no parameter or second tie may take it */
    assert_ag_error(nn_param(&m.p, "output", "weight", AG_SHAPE(2)), "already registered",
                    "output.weight");
    assert_ag_error(nn_params_tie(&m.p, NULL, "norm.weight", m.tok.weight), "nn_params_tie",
                    "already registered");
    ag_tensor *stranger = ag_param("x", AG_SHAPE(2, 2));
    assert_ag_error(nn_params_tie(&m.p, NULL, "y", stranger), "nn_params_tie", "not a parameter");
    ag_tensor_free(stranger);
    nn_linear l;
    assert_ag_error(nn_linear_init_tied(&l, &m.p, "h2", m.norm.weight, false, NULL),
                    "nn_linear_init_tied", "2-D");
    nn_params_free(&m.p);
}

/* The shared table's grad is the sum of the embedding's and the head's:
 * the same model with two separate copies of the table gives those two. */
static void test_tied_gradient_sums_both_uses(void **state)
{
    (void)state;
    tied_model m;
    tied_init(&m, 2);
    ag_fill_normal(m.norm.weight, TEST_RNG(3), 1.0f, 0.3f);
    ag_index *idx = ag_index_new(NULL, IDX, AG_SHAPE(5)), *tgt = ag_index_new(NULL, TGT, AG_SHAPE(5));
    ag_ctx *c = ag_ctx_new();
    nn_params_zero_grad(&m.p);
    assert_true(ag_backward(c, tied_loss(c, &m, idx, tgt)));

    nn_params q;
    nn_params_init(&q);
    nn_embedding e;
    nn_linear h;
    nn_rmsnorm n;
    assert_true(nn_embedding_init(&e, &q, "e", 7, 4, TEST_RNG(1)));
    assert_true(nn_rmsnorm_init(&n, &q, "n", 4, 1e-5f));
    assert_true(nn_linear_init(&h, &q, "h", 4, 7, false, TEST_RNG(1)));
    memcpy(e.weight->data, m.tok.weight->data, 28 * sizeof(float));
    memcpy(h.weight->data, m.tok.weight->data, 28 * sizeof(float));
    memcpy(n.weight->data, m.norm.weight->data, 4 * sizeof(float));
    nn_params_zero_grad(&q);
    ag_tensor *x = nn_embedding_forward(c, &e, idx);
    ag_tensor *logits = nn_linear_forward(c, &h, nn_rmsnorm_forward(c, &n, x));
    assert_true(ag_backward(c, ag_cross_entropy(c, logits, tgt, -100)));
    float want[28];
    bool head_and_table_both = false;
    for (int k = 0; k < 28; k++) {
        want[k] = e.weight->grad[k] + h.weight->grad[k];
        head_and_table_both |= e.weight->grad[k] != 0 && h.weight->grad[k] != 0;
    }
    assert_true(head_and_table_both);
    assert_close(m.tok.weight->grad, want, 28, 1e-6);
    ag_ctx_free(c);
    ag_index_free(idx);
    ag_index_free(tgt);
    nn_params_free(&q);
    nn_params_free(&m.p);
}

static char *tmp_path(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/agrad_nn_arch_%d_%s", (int)getpid(), name);
    return path;
}

/* Saved once under the embedding's name, the head's name a "tied." metadata
 * entry; read back under either name, and into a fresh model. */
static void test_tied_checkpoint_roundtrip(void **state)
{
    (void)state;
    char err[512];
    tied_model a, b;
    tied_init(&a, 4);
    tied_init(&b, 5);
    ag_fill_normal(a.norm.weight, TEST_RNG(6), 1.0f, 0.3f);
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add_params(w, &a.p);
    const char *path = tmp_path("tied.safetensors");
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);

    nn_st *f = nn_st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(nn_st_count(f), 2);                          /* the table stored once */
    assert_string_equal(nn_st_name(f, 0), "tok_embeddings.weight");
    assert_string_equal(nn_st_name(f, 1), "norm.weight");
    assert_string_equal(nn_st_meta(f, NN_ST_TIED "output.weight"), "tok_embeddings.weight");
    assert_int_equal(nn_st_data_size(f), (28 + 4) * 4);
    assert_true(nn_st_has(f, "output.weight"));
    float head[28];
    assert_true(nn_st_read(f, "output.weight", head, AG_SHAPE(7, 4), err, sizeof err));
    assert_true(bit_equal(head, a.tok.weight->data, 28));
    assert_true(nn_load_params(f, &b.p, err, sizeof err));
    assert_true(bit_equal(b.tok.weight->data, a.tok.weight->data, 28));
    assert_true(bit_equal(b.norm.weight->data, a.norm.weight->data, 4));
    assert_ptr_equal(b.head.weight, b.tok.weight);
    nn_st_close(f);
    unlink(path);
    nn_params_free(&a.p);
    nn_params_free(&b.p);
}

/* Files from PyTorch tools: torch.save's state_dict has both names (the
 * same values), Hugging Face's safetensors keeps one of them, either. */
static void test_tied_load_pytorch_layouts(void **state)
{
    (void)state;
    char err[512];
    tied_model a, b;
    tied_init(&a, 7);
    tied_init(&b, 8);
    float other[28];
    for (int k = 0; k < 28; k++)
        other[k] = a.tok.weight->data[k] + 1.0f;
    const char *path = tmp_path("layouts.safetensors");
    for (int layout = 0; layout < 4; layout++) {
        nn_st_writer *w = nn_st_writer_new();
        /* 0: only the head's name; 1: both, equal (copies); 2: both, different; 3: neither */
        float copy[28];
        memcpy(copy, a.tok.weight->data, sizeof copy);
        if (layout == 1 || layout == 2)
            nn_st_add(w, "tok_embeddings.weight", a.tok.weight->data, AG_SHAPE(7, 4));
        if (layout <= 2)
            nn_st_add(w, "output.weight", layout == 2 ? other : copy, AG_SHAPE(7, 4));
        nn_st_add(w, "norm.weight", a.norm.weight->data, AG_SHAPE(4));
        assert_true(nn_st_write(w, path, err, sizeof err));
        nn_st_writer_free(w);
        nn_st *f = nn_st_open(path, err, sizeof err);
        assert_non_null(f);
        assert_int_equal(nn_st_count(f), layout == 1 || layout == 2 ? 3 : layout == 0 ? 2 : 1);
        ag_fill(b.tok.weight, 0.0f);
        bool ok = nn_load_params(f, &b.p, err, sizeof err);
        if (layout <= 1) {
            assert_true(ok);
            assert_true(bit_equal(b.tok.weight->data, a.tok.weight->data, 28));
        } else {
            assert_false(ok);
            assert_non_null(strstr(err, layout == 2 ? "differ in the file" : "is missing"));
            assert_true(b.tok.weight->data[0] == 0.0f); /* nothing copied */
        }
        nn_st_close(f);
    }
    /* a tied name must name a tensor the file stores, and be a new name */
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add(w, "a", a.tok.weight->data, AG_SHAPE(7, 4));
    nn_st_add_tied(w, "b", "c");
    assert_false(nn_st_write(w, path, err, sizeof err));
    assert_non_null(strstr(err, "\"b\" is tied to \"c\", which is not stored"));
    nn_st_writer_free(w);
    w = nn_st_writer_new();
    nn_st_add(w, "a", a.tok.weight->data, AG_SHAPE(7, 4));
    nn_st_add_tied(w, "a", "a");
    assert_false(nn_st_write(w, path, err, sizeof err));
    assert_non_null(strstr(err, "added twice"));
    nn_st_writer_free(w);
    /* the same buffer added twice by nn_st_add stays two stored tensors */
    w = nn_st_writer_new();
    nn_st_add(w, "a", a.tok.weight->data, AG_SHAPE(7, 4));
    nn_st_add(w, "b", a.tok.weight->data, AG_SHAPE(7, 4));
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);
    nn_st *f = nn_st_open(path, err, sizeof err);
    assert_int_equal(nn_st_count(f), 2);
    nn_st_close(f);
    unlink(path);
    nn_params_free(&a.p);
    nn_params_free(&b.p);
}

/* ------------------------------------------------------------------ AdamW groups */

static void test_adamw_default_groups(void **state)
{
    (void)state;
    tied_model m;
    tied_init(&m, 9);
    nn_linear l;
    assert_true(nn_linear_init(&l, &m.p, "proj", 4, 4, true, TEST_RNG(1)));
    ag_tensor *s = nn_param(&m.p, NULL, "scale", AG_SCALAR);
    assert_non_null(s);
    nn_adamw o;
    nn_adamw_init(&o, &m.p, 1e-3f);
    for (int i = 0; i < m.p.n; i++)
        assert_false(o.no_decay[i]); /* one group until asked: the GPT example's behaviour */
    assert_int_equal(nn_adamw_decay_groups(&o), 1);
    /* tok_embeddings (and so output), norm, proj.weight, proj.bias, scale */
    const bool want_no_decay[] = {true, true, false, true, true};
    assert_int_equal(m.p.n, 5);
    for (int i = 0; i < m.p.n; i++)
        assert_int_equal(o.no_decay[i], want_no_decay[i]);
    assert_true(nn_adamw_set_decay(&o, "output.weight", true)); /* by its tied name */
    assert_false(o.no_decay[0]);
    assert_false(nn_adamw_set_decay(&o, "nope", true));
    nn_adamw_free(&o);
    nn_params_free(&m.p);
}

/* Two groups (decay 0.1 on the weight; none on the bias and a table marked
 * as an embedding) with the cosine schedule setting lr at every step: the
 * parameters after each of 6 steps as PyTorch's AdamW with LambdaLR. */
static void test_adamw_groups_match_pytorch(void **state)
{
    (void)state;
    nn_st *f = open_fixture("nn_arch_layers.safetensors");
    nn_params p;
    nn_params_init(&p);
    ag_tensor *w = nn_param(&p, "adamw_groups", "weight", AG_SHAPE(3, 5));
    ag_tensor *b = nn_param(&p, "adamw_groups", "bias", AG_SHAPE(3));
    ag_tensor *e = nn_param(&p, "adamw_groups", "emb", AG_SHAPE(4, 3));
    p.flags[2] |= NN_PARAM_EMBEDDING;
    fx_load_params(f, &p);
    ag_tensor *x = fx_tensor(NULL, f, "adamw_groups.x"), *y = fx_tensor(NULL, f, "adamw_groups.y");
    nn_adamw o;
    nn_adamw_init(&o, &p, 0.05f);
    o.weight_decay = 0.1f;
    assert_int_equal(nn_adamw_decay_groups(&o), 1);
    ag_ctx *c = ag_ctx_new();
    for (int step = 1; step <= 6; step++) {
        ag_ctx_reset(c);
        nn_params_zero_grad(&p);
        ag_tensor *shift = ag_sub(c, ag_slice(c, e, 0, 2, 3), ag_slice(c, e, 0, 0, 1)); /* (1, 3) */
        ag_tensor *d = ag_add(c, ag_sub(c, ag_linear(c, x, w, b), y), shift);
        assert_true(ag_backward(c, ag_mean_all(c, ag_mul(c, d, d))));
        o.lr = nn_lr_cosine(step - 1, 0.05f, 0.005f, 2, 5);
        nn_adamw_step(&o);
        const char *names[] = {"weight", "bias", "emb"};
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof name, "adamw_groups.%d.%s", step, names[k]);
            fx_expect(f, name, p.items[k]->data, p.items[k]->numel);
        }
    }
    ag_ctx_free(c);
    nn_adamw_free(&o);
    ag_tensor_free(x);
    ag_tensor_free(y);
    nn_params_free(&p);
    nn_st_close(f);
}

/* ------------------------------------------------------------------ schedules */

static void test_lr_schedules(void **state)
{
    (void)state;
    /* warmup over 4 steps to 1e-3: 2.5e-4, 5e-4, 7.5e-4, 1e-3, then 1e-3 */
    const float warm[] = {2.5e-4f, 5e-4f, 7.5e-4f, 1e-3f, 1e-3f, 1e-3f};
    for (int s = 0; s < 6; s++)
        assert_float_equal(nn_lr_warmup(s, 1e-3f, 4), warm[s], 1e-9f);
    assert_float_equal(nn_lr_warmup(0, 1e-3f, 0), 1e-3f, 0); /* no warmup */
    /* lr 1, min 0.1, warmup 2, decay to step 6: warmup 0.5, 1; then
     * 0.1 + 0.45 (1 + cos(pi r)) for r = 0, 1/4, 1/2, 3/4, 1; then 0.1 */
    const float cosv[] = {0.5f, 1.0f, 1.0f,
                          0.1f + 0.45f * (1.0f + 0.70710678f), 0.55f,
                          0.1f + 0.45f * (1.0f - 0.70710678f), 0.1f, 0.1f, 0.1f};
    for (int s = 0; s < 9; s++)
        assert_float_equal(nn_lr_cosine(s, 1.0f, 0.1f, 2, 6), cosv[s], 1e-6f);
    /* nanoGPT's shakespeare_char numbers: lr 1e-3, min 1e-4, warmup 100, decay 5000 */
    assert_float_equal(nn_lr_cosine(49, 1e-3f, 1e-4f, 100, 5000), 5e-4f, 1e-9f);
    assert_float_equal(nn_lr_cosine(2550, 1e-3f, 1e-4f, 100, 5000), 5.5e-4f, 1e-9f);
    assert_float_equal(nn_lr_cosine(9999, 1e-3f, 1e-4f, 100, 5000), 1e-4f, 0);
    assert_float_equal(nn_lr_cosine(3, 1e-3f, 1e-4f, 3, 3), 1e-3f, 0); /* empty decay */
}

/* ------------------------------------------------------------------ accumulation */

/* The mean loss of a batch of 4 sequences in one backward, and as two
 * micro-batches of 2, each loss scaled by 1/2 and its grads accumulated:
 * the same gradient for every parameter. A GRU language model. */
static void test_gradient_accumulation(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    nn_embedding emb;
    nn_gru_cell g;
    nn_linear head;
    assert_true(nn_embedding_init(&emb, &p, "emb", 6, 3, TEST_RNG(1)));
    assert_true(nn_gru_cell_init(&g, &p, "gru", 3, 5, true, TEST_RNG(2)));
    assert_true(nn_linear_init(&head, &p, "head", 5, 6, true, TEST_RNG(3)));
    /* (T, B) = (3, 4) tokens, time-major */
    const int32_t tok[] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5};
    const int32_t tgt[] = {1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0};
    float *full = malloc((size_t)nn_params_numel(&p) * sizeof *full);
    ag_ctx *c = ag_ctx_new();
    for (int micro = 1; micro <= 2; micro++) {
        nn_params_zero_grad(&p);
        int64_t Bm = 4 / micro;
        for (int k = 0; k < micro; k++) {
            ag_ctx_reset(c);
            int32_t ti[12], tt[12];
            for (int t = 0; t < 3; t++)
                for (int64_t b = 0; b < Bm; b++) {
                    ti[t * Bm + b] = tok[t * 4 + k * Bm + b];
                    tt[t * Bm + b] = tgt[t * 4 + k * Bm + b];
                }
            ag_index *x = ag_index_new(c, ti, AG_SHAPE(3, Bm));
            ag_index *y = ag_index_new(c, tt, AG_SHAPE(3 * Bm));
            ag_tensor *h = nn_gru_forward(c, &g, nn_embedding_forward(c, &emb, x), NULL, NULL);
            ag_tensor *logits = ag_reshape(c, nn_linear_forward(c, &head, h), AG_SHAPE(3 * Bm, 6));
            ag_tensor *loss = ag_mul_scalar(c, ag_cross_entropy(c, logits, y, -100), 1.0f / micro);
            assert_true(ag_backward(c, loss));
        }
        int64_t off = 0;
        for (int i = 0; i < p.n; i++) {
            const ag_tensor *t = p.items[i];
            if (micro == 1)
                memcpy(full + off, t->grad, (size_t)t->numel * sizeof *full);
            else
                assert_close(t->grad, full + off, t->numel, 1e-6);
            off += t->numel;
        }
    }
    ag_ctx_free(c);
    free(full);
    nn_params_free(&p);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tied_registry),
        cmocka_unit_test(test_tied_gradient_sums_both_uses),
        cmocka_unit_test(test_tied_checkpoint_roundtrip),
        cmocka_unit_test(test_tied_load_pytorch_layouts),
        cmocka_unit_test(test_adamw_default_groups),
        cmocka_unit_test(test_adamw_groups_match_pytorch),
        cmocka_unit_test(test_lr_schedules),
        cmocka_unit_test(test_gradient_accumulation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
