/* test_gpt_parity.c - the tiny lecture GPT against PyTorch: with the weights of
 * tests/fixtures/gpt_tiny.safetensors (made by tools/make_fixtures.py in
 * float64) and its batch, the logits, the loss and the grad of every named
 * parameter match PyTorch's within 1e-4 relative error, dropout off. And a
 * PyTorch state_dict (tests/fixtures/torch_gpt.safetensors, made by
 * tools/export_gpt.py) loads without metadata and gives PyTorch's logits;
 * saved as ours it keeps PyTorch's names and logits. */
#include "test_util.h"

#include <stdlib.h>
#include <unistd.h>

#include "ckpt.h"
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

/* ------------------------------------------------------------ a PyTorch state_dict */

/* gpt_weights_load of the fixture made by tools/export_gpt.py (a tiny model
 * trained by PyTorch with gpt.py's n_embd^-0.5 attention, its state_dict
 * as safetensors, no metadata), with the vocabulary given as a file. */
static bool load_torch(gpt_model *m, gpt_vocab *v, const char *vocab_file, const char *scale,
                       char *err, size_t errlen)
{
    char path[512], vpath[512];
    snprintf(path, sizeof path, "%s/torch_gpt.safetensors", fixture_dir);
    snprintf(vpath, sizeof vpath, "%s/%s", fixture_dir, vocab_file);
    gpt_vocab given;
    if (!gpt_vocab_load(&given, vpath, err, errlen))
        fail_msg("%s", err);
    gpt_weights_opts wo = {&given, vpath, scale, -1};
    bool ok = gpt_weights_load(path, &wo, m, v, err, errlen);
    vocab_free(&given);
    return ok;
}

/* m's logits for the fixture's prompt, compared with PyTorch's: the relative error */
static double torch_logits_err(const gpt_model *m)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/torch_gpt_expected.safetensors", fixture_dir);
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    int64_t ni, nl;
    float *idxf = read_tensor(f, "input.idx", &ni);
    float *want = read_tensor(f, "expected.logits", &nl);
    ag_index *idx = ag_index_new(NULL, NULL, AG_SHAPE(1, ni));
    for (int64_t t = 0; t < ni; t++)
        idx->data[t] = (int32_t)idxf[t];
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_tensor *lg = gpt_forward(c, m, idx, NULL, false, NULL);
    assert_non_null(lg);
    assert_int_equal(lg->numel, nl);
    double e = rel_err(lg->data, want, nl);
    ag_ctx_free(c);
    ag_index_free(idx);
    free(idxf);
    free(want);
    nn_st_close(f);
    return e;
}

static void test_torch_state_dict(void **state)
{
    (void)state;
    char err[512];
    gpt_model m;
    gpt_vocab v;
    if (!load_torch(&m, &v, "torch_gpt.vocab", NULL, err, sizeof err))
        fail_msg("%s", err);
    /* the sizes, from the shapes alone */
    assert_int_equal(m.cfg.vocab_size, 12);
    assert_int_equal(m.cfg.block_size, 8);
    assert_int_equal(m.cfg.n_embd, 8);
    assert_int_equal(m.cfg.n_head, 2);
    assert_int_equal(m.cfg.n_layer, 2);
    assert_true(m.cfg.dropout == 0.0f);
    assert_int_equal(v.size, 12);
    assert_int_equal(v.chars[0], '\n');
    /* PyTorch's logits */
    double e = torch_logits_err(&m);
    print_message("state_dict logits against PyTorch's: relative error %.2g\n", e);
    assert_true(e < 1e-5);

    /* the training text gives the same vocabulary, and the same model */
    gpt_model m2;
    gpt_vocab v2;
    if (!load_torch(&m2, &v2, "torch_gpt.txt", "n_embd", err, sizeof err))
        fail_msg("%s", err);
    assert_true(vocab_equal(&v, &v2));
    assert_true(torch_logits_err(&m2) < 1e-5);
    gpt_free(&m2);
    vocab_free(&v2);
    /* read with nanoGPT's head_size^-0.5 it is another function */
    if (!load_torch(&m2, &v2, "torch_gpt.vocab", "head_size", err, sizeof err))
        fail_msg("%s", err);
    assert_true(torch_logits_err(&m2) > 1e-2);
    gpt_free(&m2);
    vocab_free(&v2);

    /* the other way: saved as a checkpoint of ours it keeps PyTorch's names and
     * shapes (the tril buffers aside, which are not parameters), and loads to the
     * same logits, also read back as a plain state_dict of head_size^-0.5 (what
     * PyTorch's nanoGPT-style model would load) */
    char dir[] = "/tmp/test_gpt_parity.XXXXXX", path[600], tpath[600];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ours.safetensors", dir);
    assert_true(gpt_ckpt_save(path, &m, &v, NULL, NULL, err, sizeof err));
    char fx[512];
    snprintf(fx, sizeof fx, "%s/torch_gpt.safetensors", fixture_dir);
    nn_st *ft = nn_st_open(fx, err, sizeof err), *fo = nn_st_open(path, err, sizeof err);
    assert_non_null(ft);
    assert_non_null(fo);
    int trils = 0;
    for (int i = 0; i < nn_st_count(ft); i++) {
        const char *nm = nn_st_name(ft, i);
        int nd1, nd2;
        int64_t s1[AG_MAX_DIMS], s2[AG_MAX_DIMS];
        assert_true(nn_st_shape(ft, nm, &nd1, s1));
        if (strstr(nm, ".tril")) {
            trils++;
            assert_false(nn_st_has(fo, nm));
            continue;
        }
        if (!nn_st_shape(fo, nm, &nd2, s2))
            fail_msg("our checkpoint lacks PyTorch's %s", nm);
        assert_int_equal(nd1, nd2);
        assert_memory_equal(s1, s2, (size_t)nd1 * sizeof *s1);
    }
    assert_int_equal(trils, 4); /* 2 layers x 2 heads */
    assert_int_equal(nn_st_count(fo), nn_st_count(ft) - trils);
    /* our parameters alone, as a state_dict would hold them */
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add_params(w, &m.params);
    snprintf(tpath, sizeof tpath, "%s/plain.safetensors", dir);
    assert_true(nn_st_write(w, tpath, err, sizeof err));
    nn_st_writer_free(w);
    gpt_weights_opts ours_opts = {NULL, NULL, NULL, -1}, plain = {&v, "v", "head_size", -1};
    if (!gpt_weights_load(path, &ours_opts, &m2, &v2, err, sizeof err))
        fail_msg("%s", err);
    assert_true(vocab_equal(&v, &v2));
    assert_true(torch_logits_err(&m2) < 1e-5);
    gpt_free(&m2);
    vocab_free(&v2);
    if (!gpt_weights_load(tpath, &plain, &m2, &v2, err, sizeof err))
        fail_msg("%s", err);
    assert_true(torch_logits_err(&m2) < 1e-5);
    gpt_free(&m2);
    vocab_free(&v2);
    nn_st_close(ft);
    nn_st_close(fo);
    unlink(path);
    unlink(tpath);
    rmdir(dir);

    /* a vocabulary of another size, or none, is refused saying so */
    assert_false(load_torch(&m2, &v2, "tiny_text.txt", NULL, err, sizeof err));
    assert_non_null(strstr(err, "has 58 characters but token_embedding_table.weight has 12 rows"));
    gpt_weights_opts none = {NULL, NULL, NULL, -1};
    assert_false(gpt_weights_load(fx, &none, &m2, &v2, err, sizeof err));
    assert_non_null(strstr(err, "no vocabulary: give the training text (--data FILE)"));
    gpt_free(&m);
    vocab_free(&v);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt_matches_pytorch),
        cmocka_unit_test(test_gpt_parameter_names),
        cmocka_unit_test(test_torch_state_dict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
