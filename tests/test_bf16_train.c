/* test_bf16_train.c - training in bf16 (--precision bf16):
 * - a tiny GPT trained 300 steps on tiny_text.txt in bf16 tracks the same
 *   run in FP32 (same init, same batches): the mean loss of the last 50
 *   steps and the val loss after training within 0.05 of FP32's (the
 *   seed-to-seed spread of such a run is larger), and both fell by more than
 *   1.2 from the start;
 * - gpt train, bench and sample take --precision fp32|bf16 and refuse any
 *   other value naming the flag and the choices (exit 2);
 * - the checkpoint records the precision: --resume without the flag keeps
 *   it, with the flag changes it; a checkpoint without the field (written
 *   before it was kept) loads as fp32; the weights stay F32 either way;
 * - the train header and the bench line name the precision and the bf16 kernel.
 * Run as: test_bf16_train GPT_BINARY FIXTURES_DIR. */
#include "gpt_util.h"

/* ---------------------------------------------------------------- in process */

#define STEPS 300

/* Trains the tiny model STEPS steps at precision p; losses[STEPS] gets each
 * step's loss; returns the val loss after, over 20 batches. */
static double train_tiny(ag_precision p, const gpt_data *d, float *losses)
{
    gpt_config cfg = {.vocab_size = d->vocab.size, .block_size = 16, .n_embd = 32, .n_head = 4,
                      .n_layer = 2, .dropout = 0.0f};
    gpt_model m;
    char err[256];
    assert_true(gpt_init(&m, &cfg, 7, err, sizeof err));
    m.precision = p;
    nn_adamw opt;
    nn_adamw_init(&opt, &m.params, 3e-3f);
    ag_index *x = ag_index_new(NULL, NULL, AG_SHAPE(16, 16));
    ag_index *y = ag_index_new(NULL, NULL, AG_SHAPE(16, 16));
    ag_rng batches = ag_rng_new(11);
    ag_ctx *c = ag_ctx_new();
    for (int s = 0; s < STEPS; s++) {
        gpt_batch_rows(d, 0, 16, 0, 16, 16, &batches, x, y);
        ag_ctx_reset(c);
        ag_tensor *loss = NULL;
        gpt_forward(c, &m, x, y, true, &loss);
        assert_int_equal(ag_get_precision(c), p); /* the model set it on the step's ctx */
        losses[s] = loss->data[0];
        nn_params_zero_grad(&m.params);
        assert_true(ag_backward(c, loss));
        nn_adamw_step(&opt);
    }
    ag_set_grad_enabled(c, false);
    ag_rng ev = ag_rng_new(12);
    double val = 0;
    for (int k = 0; k < 20; k++) {
        gpt_batch_rows(d, 1, 16, 0, 16, 16, &ev, x, y);
        ag_ctx_reset(c);
        ag_tensor *loss = NULL;
        gpt_forward(c, &m, x, y, false, &loss);
        val += loss->data[0] / 20.0;
    }
    ag_ctx_free(c);
    ag_index_free(x);
    ag_index_free(y);
    nn_adamw_free(&opt);
    gpt_free(&m);
    return val;
}

static double mean_last(const float *l, int n)
{
    double s = 0;
    for (int i = STEPS - n; i < STEPS; i++)
        s += l[i];
    return s / n;
}

static void bf16_tracks_fp32(void **state)
{
    (void)state;
    gpt_data d;
    char err[256];
    assert_true(gpt_data_load(&d, text_path, err, sizeof err));
    float l32[STEPS], l16[STEPS];
    double v32 = train_tiny(AG_FP32, &d, l32), v16 = train_tiny(AG_BF16, &d, l16);
    double m32 = mean_last(l32, 50), m16 = mean_last(l16, 50);
    print_message("fp32: first loss %.4f, last 50 %.4f, val %.4f; bf16: %.4f, %.4f, %.4f\n",
                  (double)l32[0], m32, v32, (double)l16[0], m16, v16);
    assert_true(fabs((double)l32[0] - l16[0]) < 0.01); /* the same start */
    assert_memory_not_equal(l32, l16, sizeof l32);   /* but bf16 products */
    assert_true(fabs(m16 - m32) <= 0.05);
    assert_true(fabs(v16 - v32) <= 0.05);
    assert_true(m32 < l32[0] - 1.2 && m16 < l16[0] - 1.2);
    gpt_data_free(&d);
}

/* ---------------------------------------------------------------- the program */

static void bad_precision(void **state)
{
    (void)state;
    const char *cmds[] = {"train", "bench", "sample"};
    for (int i = 0; i < 3; i++) {
        argl a = {0};
        push(&a, cmds[i], "--precision", "fp16", NULL);
        if (i != 1) /* found before any file is read */
            push(&a, "--checkpoint", tpath("none.safetensors"), NULL);
        proc p;
        run(&p, &a);
        assert_int_equal(p.code, 2);
        char want[160];
        snprintf(want, sizeof want, "gpt %s: --precision \"fp16\": choose fp32 or bf16 (see gpt %s "
                 "--help)\n", cmds[i], cmds[i]);
        assert_string_equal(ERR(&p), want);
        proc_free(&p);
    }
}

static void bench_line(void **state)
{
    (void)state;
    argl a = {0};
    push(&a, "bench", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--threads", "1",
         "--batch-size", "2", "--precision", "bf16", NULL);
    proc p;
    run_ok(&p, &a);
    bool known = wildmatch("bench: preset=tiny threads=1 ms/step=* tokens/s=* peak_rss_mib=* "
                           "gflops=* precision=bf16 bf16_kernel=avx512_bf16\n", OUT(&p)) ||
                 wildmatch("bench: preset=tiny threads=1 ms/step=* tokens/s=* peak_rss_mib=* "
                           "gflops=* precision=bf16 bf16_kernel=emulated\n", OUT(&p));
    if (!known)
        fail_msg("bench printed \"%s\"", OUT(&p));
    assert_true(wildmatch("bench: last loss *, precision bf16 (*)\n", ERR(&p)));
    proc_free(&p);
}

/* metadata "precision" of the checkpoint at path, or "" without it */
static void ckpt_precision(const char *path, char *out, size_t n)
{
    char err[256];
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    const char *s = nn_st_meta(f, "precision");
    snprintf(out, n, "%s", s ? s : "");
    /* the weights are F32 whatever the precision */
    int nd;
    int64_t shape[AG_MAX_DIMS];
    assert_true(nn_st_shape(f, "lm_head.weight", &nd, shape));
    assert_true(nn_st_check(f, "lm_head.weight", nd, shape, err, sizeof err));
    nn_st_close(f);
}

static void train_header(proc *p, const char *want)
{
    char pat[120];
    snprintf(pat, sizeof pat, "* M parameters; *; matmul *; precision %s\n*", want);
    if (!wildmatch(pat, OUT(p)))
        fail_msg("train printed \"%s\", want the header to end \"precision %s\"", OUT(p), want);
}

static void checkpoint_round_trip(void **state)
{
    (void)state;
    const char *ck = tpath("prec/ckpt.safetensors");
    argl a = {0};
    push(&a, "train", "--data", text_path, TINY_MODEL, "--max-iters", "3", "--eval-interval",
         "100", "--eval-iters", "1", "--sample-tokens", "0", "--out", tpath("prec"),
         "--precision", "bf16", NULL);
    proc p;
    run_ok(&p, &a);
    train_header(&p, "bf16 (*)");
    proc_free(&p);
    char got[16];
    ckpt_precision(ck, got, sizeof got);
    assert_string_equal(got, "bf16");

    /* resumed without the flag: the checkpoint's */
    argl b = {0};
    push(&b, "train", "--data", text_path, "--resume", ck, "--max-iters", "5", NULL);
    run_ok(&p, &b);
    train_header(&p, "bf16 (*)");
    proc_free(&p);
    ckpt_precision(ck, got, sizeof got);
    assert_string_equal(got, "bf16");

    /* sampled in the checkpoint's precision, or the flag's */
    argl s = {0};
    push(&s, "sample", "--checkpoint", ck, "--tokens", "20", "--seed", "3", NULL);
    run_ok(&p, &s);
    assert_true(strlen(OUT(&p)) >= 21);
    proc_free(&p);
    push(&s, "--precision", "fp32", NULL);
    run_ok(&p, &s);
    proc_free(&p);

    /* the flag changes it */
    argl c = {0};
    push(&c, "train", "--data", text_path, "--resume", ck, "--max-iters", "7", "--precision",
         "fp32", NULL);
    run_ok(&p, &c);
    train_header(&p, "fp32");
    proc_free(&p);
    ckpt_precision(ck, got, sizeof got);
    assert_string_equal(got, "fp32");

    /* a checkpoint from before the field: a bf16 one, its key renamed in place */
    argl d = {0};
    push(&d, "train", "--data", text_path, "--resume", ck, "--max-iters", "9", "--precision",
         "bf16", NULL);
    run_ok(&p, &d);
    proc_free(&p);
    ckpt_precision(ck, got, sizeof got);
    assert_string_equal(got, "bf16");
    size_t len;
    char *img = read_file(ck, &len);
    char *key = memmem(img, len, "\"precision\"", 11);
    assert_non_null(key);
    memcpy(key, "\"precisiom\"", 11);
    const char *old = tpath("old.safetensors");
    write_file(old, img, len);
    free(img);
    ckpt_precision(old, got, sizeof got);
    assert_string_equal(got, "");
    argl o = {0};
    push(&o, "train", "--data", text_path, "--resume", old, "--max-iters", "11", "--out",
         tpath("prec_old"), NULL);
    run_ok(&p, &o);
    train_header(&p, "fp32");
    proc_free(&p);
}

int main(int argc, char **argv)
{
    if (!gpt_args(argc, argv))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bf16_tracks_fp32),
        cmocka_unit_test(bad_precision),
        cmocka_unit_test(bench_line),
        cmocka_unit_test(checkpoint_round_trip),
    };
    return cmocka_run_group_tests_name("bf16_train", tests, gpt_setup, gpt_teardown);
}
