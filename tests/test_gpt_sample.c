/* test_gpt_sample.c - gpt_core's checkpoint round trip and UTF-8 vocabulary,
 * called directly, and `gpt sample`: seeds, prompts, greedy and temperature,
 * multi-byte text, and the key/value cache giving the text a full recompute
 * gives. */
#include "gpt_util.h"

/* ------------------------------------------------------------ 3. checkpoints and sampling */

static void test_ckpt_round_trip(void **state)
{
    (void)state;
    const char *text = "héllo wörld, über café! 日本 🎉\n";
    gpt_data d;
    char err[512];
    assert_true(gpt_data_from_text(&d, (const unsigned char *)text, strlen(text), err, sizeof err));
    gpt_config cfg = {d.vocab.size, 8, 16, 2, 2, 0.1f};
    gpt_model m;
    assert_true(gpt_init(&m, &cfg, 5, err, sizeof err));
    /* every parameter random (LayerNorm's ones and zeros would hide a mixup),
     * plus values whose bits are easy to lose in text: -0, a denormal, FLT_MAX */
    ag_rng r = ag_rng_new(99);
    for (int i = 0; i < m.params.n; i++)
        ag_fill_normal(m.params.items[i], &r, 0.0f, 1.0f);
    m.params.items[0]->data[0] = -0.0f;
    m.params.items[0]->data[1] = 1e-40f;
    m.params.items[0]->data[2] = FLT_MAX;
    nn_adamw opt;
    nn_adamw_init(&opt, &m.params, 1e-3f);
    for (int i = 0; i < m.params.n; i++)
        for (int64_t j = 0; j < m.params.items[i]->numel; j++) {
            opt.m[i][j] = ag_rng_normal(&r);
            opt.v[i][j] = fabsf(ag_rng_normal(&r)) * 1e-3f;
        }
    opt.step = 42;
    gpt_train_state ts = {
        .step = 123, .evaluated_at = 100,
        .batch_rng = {UINT64_MAX - 5, 77}, .eval_rng = {12345, 0}, .dropout_rng = {1ull << 63, 999999},
        .batch_size = 16, .max_iters = 5000, .eval_interval = 250, .eval_iters = 20,
        .seed = 9000000000000000000ll, .lr = 3e-4, .weight_decay = 0.01, .grad_clip = 1.5,
    };
    const char *path = tpath("roundtrip.safetensors");
    if (!gpt_ckpt_save(path, &m, &d.vocab, &opt, &ts, err, sizeof err))
        fail_msg("%s", err);

    gpt_model m2;
    gpt_vocab v2;
    nn_adamw opt2;
    gpt_train_state ts2;
    memset(&ts2, 0xA5, sizeof ts2);
    if (!gpt_ckpt_load(path, &m2, &v2, &opt2, &ts2, err, sizeof err))
        fail_msg("%s", err);
    assert_true(vocab_equal(&v2, &d.vocab));
    assert_int_equal(v2.size, 21);
    assert_int_equal(v2.chars[20], 0x1F389);
    assert_int_equal(m2.cfg.vocab_size, cfg.vocab_size);
    assert_int_equal(m2.cfg.block_size, 8);
    assert_int_equal(m2.cfg.n_embd, 16);
    assert_int_equal(m2.cfg.n_head, 2);
    assert_int_equal(m2.cfg.n_layer, 2);
    assert_true(m2.cfg.dropout == 0.1f);
    assert_int_equal(m2.params.n, m.params.n);
    for (int i = 0; i < m.params.n; i++) {
        const ag_tensor *a = m.params.items[i], *b = m2.params.items[i];
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->numel, b->numel);
        if (memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) != 0)
            fail_msg("parameter %s differs after the round trip", a->name);
        if (memcmp(opt.m[i], opt2.m[i], (size_t)a->numel * sizeof(float)) != 0 ||
            memcmp(opt.v[i], opt2.v[i], (size_t)a->numel * sizeof(float)) != 0)
            fail_msg("AdamW state of %s differs after the round trip", a->name);
    }
    assert_true(signbit(m2.params.items[0]->data[0]));
    assert_int_equal(opt2.step, 42);
    assert_true(opt2.params == &m2.params);
    assert_int_equal(ts2.step, 123);
    assert_int_equal(ts2.evaluated_at, 100);
    assert_true(ts2.batch_rng.seed == UINT64_MAX - 5 && ts2.batch_rng.counter == 77);
    assert_true(ts2.eval_rng.seed == 12345 && ts2.eval_rng.counter == 0);
    assert_true(ts2.dropout_rng.seed == 1ull << 63 && ts2.dropout_rng.counter == 999999);
    assert_int_equal(ts2.batch_size, 16);
    assert_int_equal(ts2.max_iters, 5000);
    assert_int_equal(ts2.eval_interval, 250);
    assert_int_equal(ts2.eval_iters, 20);
    assert_true(ts2.seed == 9000000000000000000ll);
    assert_true(ts2.lr == 3e-4 && ts2.weight_decay == 0.01 && ts2.grad_clip == 1.5);

    /* the restored model computes what the saved one did */
    ag_ctx *c = ag_ctx_new();
    ag_index *x = ag_index_new(NULL, NULL, AG_SHAPE(1, 8));
    for (int t = 0; t < 8; t++)
        x->data[t] = t % cfg.vocab_size;
    ag_tensor *l1 = gpt_forward(c, &m, x, NULL, false, NULL);
    ag_tensor *l2 = gpt_forward(c, &m2, x, NULL, false, NULL);
    assert_non_null(l1);
    assert_non_null(l2);
    assert_memory_equal(l1->data, l2->data, (size_t)l1->numel * sizeof(float));
    ag_ctx_free(c);
    ag_index_free(x);
    nn_adamw_free(&opt2);
    gpt_free(&m2);
    vocab_free(&v2);

    /* sampling loads need neither optimizer nor train state */
    if (!gpt_ckpt_load(path, &m2, &v2, NULL, NULL, err, sizeof err))
        fail_msg("%s", err);
    gpt_free(&m2);
    vocab_free(&v2);

    /* a weights-only checkpoint loads for sampling but not for resuming */
    const char *bare = tpath("bare.safetensors");
    assert_true(gpt_ckpt_save(bare, &m, &d.vocab, NULL, NULL, err, sizeof err));
    assert_true(gpt_ckpt_load(bare, &m2, &v2, NULL, NULL, err, sizeof err));
    gpt_free(&m2);
    vocab_free(&v2);
    assert_false(gpt_ckpt_load(bare, &m2, &v2, &opt2, &ts2, err, sizeof err));
    char want[800];
    snprintf(want, sizeof want, "checkpoint %s: *optimizer*", bare);
    if (!wildmatch(want, err))
        fail_msg("error \"%s\" does not match \"%s\"", err, want);
    assert_true(gpt_ckpt_load(bare, &m2, &v2, &opt2, NULL, err, sizeof err) == false);
    assert_false(gpt_ckpt_load(bare, &m2, &v2, NULL, &ts2, err, sizeof err));
    snprintf(want, sizeof want, "checkpoint %s: metadata \"train.step\" is missing", bare);
    assert_string_equal(err, want);

    /* a save into a directory that is not there fails with a message */
    assert_false(gpt_ckpt_save(tpath("no/such/dir/x.safetensors"), &m, &d.vocab, &opt, &ts, err,
                               sizeof err));
    assert_non_null(strstr(err, "no/such/dir/x.safetensors"));

    nn_adamw_free(&opt);
    gpt_free(&m);
    gpt_data_free(&d);
}

static void test_sample(void **state)
{
    (void)state;
    const char *ckpt = shared_ckpt();
    gpt_model m;
    gpt_vocab v;
    char err[512];
    if (!gpt_ckpt_load(ckpt, &m, &v, NULL, NULL, err, sizeof err))
        fail_msg("%s", err);
    gpt_free(&m);

    /* same seed, same text; another seed, other text */
    proc s1, s2, s3;
    argl a = {0}, b = {0};
    push(&a, "sample", "--checkpoint", ckpt, "--seed", "7", "--tokens", "100", "--threads", "1",
         NULL);
    push(&b, "sample", "--checkpoint", ckpt, "--seed", "8", "--tokens", "100", "--threads", "1",
         NULL);
    run_ok(&s1, &a);
    run_ok(&s2, &a);
    run_ok(&s3, &b);
    assert_string_equal(ERR(&s1), "");
    assert_string_equal(OUT(&s1), OUT(&s2));
    assert_string_not_equal(OUT(&s1), OUT(&s3));
    size_t len = strlen(OUT(&s1));
    assert_true(OUT(&s1)[len - 1] == '\n');
    assert_int_equal(utf8_count(OUT(&s1), len - 1), 100);
    assert_in_vocab(OUT(&s1), len - 1, &v);

    /* a prompt is echoed and continued, also one longer than the block (16) */
    const char *prompts[] = {"First Citizen:", "You are all resolved rather to die than to famish?"};
    for (int i = 0; i < 2; i++) {
        proc p;
        argl c = {0};
        push(&c, "sample", "--checkpoint", ckpt, "--prompt", prompts[i], "--tokens", "30",
             "--threads", "1", NULL);
        run_ok(&p, &c);
        size_t pl = strlen(prompts[i]);
        assert_memory_equal(OUT(&p), prompts[i], pl);
        assert_int_equal(utf8_count(OUT(&p) + pl, strlen(OUT(&p)) - pl - 1), 30);
        assert_in_vocab(OUT(&p), strlen(OUT(&p)) - 1, &v);
        proc_free(&p);
    }

    /* greedy (--top-k 1) does not depend on the seed; a near-zero
     * temperature is greedy too; a high one changes the text */
    proc g1, g2, t1, t2, hot;
    argl ga = {0}, gb = {0}, ta = {0}, tb = {0}, ha = {0};
    push(&ga, "sample", "--checkpoint", ckpt, "--top-k", "1", "--seed", "1", "--tokens", "60",
         "--threads", "1", NULL);
    push(&gb, "sample", "--checkpoint", ckpt, "--top-k", "1", "--seed", "2", "--tokens", "60",
         "--threads", "1", NULL);
    push(&ta, "sample", "--checkpoint", ckpt, "--temperature", "1e-4", "--seed", "3", "--tokens",
         "60", "--threads", "1", NULL);
    push(&tb, "sample", "--checkpoint", ckpt, "--temperature=1e-4", "--seed", "4", "--tokens",
         "60", "--threads", "1", NULL);
    push(&ha, "sample", "--checkpoint", ckpt, "--temperature", "50", "--seed", "7", "--tokens",
         "100", "--threads", "1", NULL);
    run_ok(&g1, &ga);
    run_ok(&g2, &gb);
    run_ok(&t1, &ta);
    run_ok(&t2, &tb);
    run_ok(&hot, &ha);
    assert_string_equal(OUT(&g1), OUT(&g2));
    assert_string_equal(OUT(&t1), OUT(&t2));
    assert_string_equal(OUT(&g1), OUT(&t1));
    assert_string_not_equal(OUT(&g1), OUT(&s1));
    assert_string_not_equal(OUT(&hot), OUT(&s1));
    assert_int_equal(utf8_count(OUT(&g1), strlen(OUT(&g1)) - 1), 60);
    proc *all[] = {&s1, &s2, &s3, &g1, &g2, &t1, &t2, &hot};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        proc_free(all[i]);

    /* a prompt character the model never saw is an error naming it */
    proc e;
    argl ea = {0};
    push(&ea, "sample", "--checkpoint", ckpt, "--prompt", "ab€cd", "--threads", "1", NULL);
    run(&e, &ea);
    assert_int_equal(e.code, 2);
    assert_string_equal(OUT(&e), "");
    assert_string_equal(ERR(&e), "gpt sample: --prompt: character \"€\" (U+20AC) at position 2 "
                                 "is not in the model's vocabulary\n");
    proc_free(&e);
    vocab_free(&v);
}

/* ------------------------------------------------------------ 5. UTF-8 */

static void test_utf8(void **state)
{
    (void)state;
    const char *text = "héllo wörld, über café! 日本 🎉\n";
    gpt_data d;
    char err[512];
    assert_true(gpt_data_from_text(&d, (const unsigned char *)text, strlen(text), err, sizeof err));
    static const uint32_t want[] = {0x0a, 0x20, 0x21, 0x2c, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x68,
                                    0x6c, 0x6f, 0x72, 0x77, 0xe9, 0xf6, 0xfc, 0x65e5, 0x672c, 0x1f389};
    assert_int_equal(d.vocab.size, 21);
    for (int i = 0; i < 21; i++)
        assert_int_equal(d.vocab.chars[i], want[i]);
    assert_int_equal(d.n, 29);
    assert_int_equal(d.n_train, 26); /* int(0.9 * 29) */
    /* the tokens spell the text again */
    char back[128];
    size_t k = 0;
    for (int64_t i = 0; i < d.n; i++) {
        assert_in_range(d.tokens[i], 0, 20);
        k += (size_t)nn_utf8_encode(d.vocab.chars[d.tokens[i]], back + k);
    }
    assert_int_equal(k, strlen(text));
    assert_memory_equal(back, text, k);
    assert_int_equal(vocab_find(&d.vocab, 0x1F389), 20);
    assert_int_equal(vocab_find(&d.vocab, 'z'), -1);
    /* the vocabulary as a string and back */
    char *vs = vocab_to_utf8(&d.vocab);
    assert_string_equal(vs, "\n !,abcdefhlorwéöü日本🎉");
    gpt_vocab v2;
    assert_true(vocab_from_utf8(&v2, vs, err, sizeof err));
    assert_true(vocab_equal(&v2, &d.vocab));
    vocab_free(&v2);
    free(vs);
    assert_false(vocab_from_utf8(&v2, "ba", err, sizeof err));
    assert_string_equal(err, "vocabulary is not sorted and distinct at character 1");
    gpt_data_free(&d);

    /* decoding rejects what is not UTF-8, naming the offset */
    const struct { const char *s; size_t len; const char *err; } bad[] = {
        {"ab\xed\xa0\x80", 5, "invalid UTF-8 at byte offset 2"},     /* a surrogate */
        {"abc\xf4\x90\x80\x80", 7, "invalid UTF-8 at byte offset 3"}, /* > U+10FFFF */
        {"\xe6\x97", 2, "invalid UTF-8 at byte offset 0"},            /* truncated */
        {"x\xe0\x80\xaf", 4, "invalid UTF-8 at byte offset 1"},       /* overlong */
        {"\x80", 1, "invalid UTF-8 at byte offset 0"},                /* lone continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(gpt_data_from_text(&d, (const unsigned char *)bad[i].s, bad[i].len, err,
                                        sizeof err));
        assert_string_equal(err, bad[i].err);
    }

    /* gpt trains on it and samples its characters */
    char big[4096];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s", text);
    const char *path = tpath("utf8.txt");
    write_file(path, big, n);
    argl a = {0};
    push(&a, "train", "--data", path, "--n-embd", "16", "--n-head", "2", "--n-layer", "1",
         "--block-size", "8", "--batch-size", "4", "--max-iters", "5", "--eval-interval", "5",
         "--eval-iters", "2", "--threads", "1", "--sample-tokens", "20", "--out", tpath("utf8"),
         NULL);
    proc p;
    run_ok(&p, &a);
    assert_non_null(strstr(OUT(&p), "; vocabulary 21 characters; 1044 train / 116 val tokens;"));
    eval_line ev[4];
    assert_int_equal(parse_evals(OUT(&p), ev, 4), 2); /* steps 0 and 4 */
    assert_true(gpt_data_from_text(&d, (const unsigned char *)text, strlen(text), err, sizeof err));
    const char *s = strstr(OUT(&p), "\n--- sample ---\n") + strlen("\n--- sample ---\n");
    assert_int_equal(utf8_count(s, strlen(s) - 1), 20);
    assert_in_vocab(s, strlen(s) - 1, &d.vocab);
    proc_free(&p);

    /* and a multi-byte prompt continues */
    char ckpt[700];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", tpath("utf8"));
    argl b = {0};
    push(&b, "sample", "--checkpoint", ckpt, "--prompt", "日本🎉", "--tokens", "10", "--threads",
         "1", NULL);
    run_ok(&p, &b);
    assert_memory_equal(OUT(&p), "日本🎉", strlen("日本🎉"));
    assert_int_equal(utf8_count(OUT(&p), strlen(OUT(&p)) - 1), 13);
    assert_in_vocab(OUT(&p), strlen(OUT(&p)) - 1, &d.vocab);
    proc_free(&p);
    gpt_data_free(&d);
}

/* Sampling with the key/value cache gives the same text as recomputing the
 * whole context for every character (gpt.py's way), before and after the
 * context fills the block and starts to slide. */
static void test_kv_cache_matches_recompute(void **state)
{
    (void)state;
    const char *seeds[] = {"1", "2", "3"};
    for (int s = 0; s < 3; s++) {
        char *text[2];
        for (int k = 0; k < 2; k++) {
            argl a = {0};
            push(&a, "sample", "--checkpoint", shared_ckpt(), "--prompt", "First", "--tokens", "40",
                 "--seed", seeds[s], "--threads", "1", NULL);
            if (k)
                push(&a, "--no-kv-cache", NULL);
            proc p;
            run_ok(&p, &a);
            text[k] = strdup(OUT(&p));
            proc_free(&p);
        }
        assert_true(strlen(text[0]) > 40); /* 40 characters past a 16-wide block: it slid */
        assert_string_equal(text[0], text[1]);
        free(text[0]);
        free(text[1]);
    }
}

/* `gpt sample` on a PyTorch state_dict (tests/fixtures/torch_gpt.safetensors,
 * no metadata): greedy, it continues the prompt exactly as PyTorch did
 * (recorded by tools/export_gpt.py in torch_gpt_expected.safetensors), with
 * the vocabulary from the training text or from the vocabulary file; and
 * --temperature 0 is --top-k 1 whatever the seed. */
static void test_sample_torch_state_dict(void **state)
{
    (void)state;
    char path[700], err[512];
    snprintf(path, sizeof path, "%s/torch_gpt_expected.safetensors", fixtures);
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    const char *prompt = nn_st_meta(f, "prompt"), *greedy = nn_st_meta(f, "greedy");
    assert_non_null(prompt);
    assert_non_null(greedy);
    char want[256];
    snprintf(want, sizeof want, "%s%s\n", prompt, greedy);
    int64_t n = utf8_count(greedy, strlen(greedy));
    char tokens[16];
    snprintf(tokens, sizeof tokens, "%lld", (long long)n);
    char ckpt[700], vocab[700], text[700];
    snprintf(ckpt, sizeof ckpt, "%s/torch_gpt.safetensors", fixtures);
    snprintf(vocab, sizeof vocab, "%s/torch_gpt.vocab", fixtures);
    snprintf(text, sizeof text, "%s/torch_gpt.txt", fixtures);
    const char *how[][4] = {
        {"--vocab", vocab, "--temperature", "0"},
        {"--data", text, "--temperature", "0"},
        {"--vocab", vocab, "--top-k", "1"},
    };
    const char *seeds[] = {"1", "99", "5"};
    for (int i = 0; i < 3; i++) {
        argl a = {0};
        push(&a, "sample", "--checkpoint", ckpt, how[i][0], how[i][1], how[i][2], how[i][3],
             "--seed", seeds[i], "--prompt", prompt, "--tokens", tokens, "--threads", "1", NULL);
        proc p;
        run_ok(&p, &a);
        if (strcmp(OUT(&p), want) != 0)
            fail_msg("%s %s %s %s: \"%s\", PyTorch's greedy text is \"%s\"", how[i][0], how[i][1],
                     how[i][2], how[i][3], OUT(&p), want);
        assert_string_equal(ERR(&p), "");
        proc_free(&p);
    }
    nn_st_close(f);
}

int main(int argc, char **argv)
{
    if (!gpt_args(argc, argv))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ckpt_round_trip),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_kv_cache_matches_recompute),
        cmocka_unit_test(test_sample_torch_state_dict),
    };
    return cmocka_run_group_tests_name("gpt_sample", tests, gpt_setup, gpt_teardown);
}
