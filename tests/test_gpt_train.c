/* test_gpt_train.c - `gpt train` end to end (the loss falls, the loss log and
 * the checkpoint are complete), resuming after --max-iters, SIGINT or SIGTERM
 * bit-identical to a straight run, and reliability: flat memory over a long
 * run, the same seed giving the same losses, a non-finite loss stopping
 * training with the last good checkpoint intact. */
#include "gpt_util.h"

/* ------------------------------------------------------------ 1. end to end */

static void test_train_end_to_end(void **state)
{
    (void)state;
    const char *out = tpath("e2e");
    argl a = {0};
    push(&a, "train", "--data", text_path, TINY_MODEL, "--lr", "3e-3", "--max-iters", "300",
         "--eval-interval", "100", "--eval-iters", "10", "--sample-tokens", "50", "--out", out,
         NULL);
    proc p;
    run_ok(&p, &a);

    /* the vocabulary the program reports is the fixture's */
    gpt_data d;
    char err[512];
    assert_true(gpt_data_load(&d, text_path, err, sizeof err));
    int V = d.vocab.size;
    char want[128];
    snprintf(want, sizeof want, "; vocabulary %d characters; %lld train / %lld val tokens; 1 thread;",
             V, (long long)d.n_train, (long long)(d.n - d.n_train));
    if (!strstr(OUT(&p), want))
        fail_msg("stdout lacks \"%s\":\n%s", want, OUT(&p));

    /* evals at 0, 100, 200 and the last step; loss from ~log V to well below */
    eval_line ev[16];
    int ne = parse_evals(OUT(&p), ev, 16);
    assert_int_equal(ne, 4);
    const long long steps[] = {0, 100, 200, 299};
    for (int i = 0; i < 4; i++)
        assert_int_equal(ev[i].step, steps[i]);
    double logv = log((double)V);
    assert_true(fabs(ev[0].train - logv) < 0.5 && fabs(ev[0].val - logv) < 0.5);
    if (!(ev[3].train < 0.75 * logv && ev[3].val < 0.75 * logv))
        fail_msg("final losses train %.4f val %.4f not below 0.75 log(%d) = %.4f", ev[3].train,
                 ev[3].val, V, 0.75 * logv);

    assert_non_null(strstr(OUT(&p), "\ntrained 300 steps in "));
    char line[1500];
    char ckpt[700], csv[700];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", out);
    snprintf(csv, sizeof csv, "%s/loss.csv", out);
    snprintf(line, sizeof line, "; checkpoint %s, loss log %s\n", ckpt, csv);
    assert_non_null(strstr(OUT(&p), line));

    /* the loss log: one batch row per step, the evals as printed */
    csv_row *rows;
    int nr = parse_csv(csv, &rows);
    assert_int_equal(nr, 304);
    assert_int_equal(check_batch_steps(rows, nr), 300);
    for (int i = 0; i < 4; i++) {
        const csv_row *r = find_row(rows, nr, steps[i], false);
        assert_non_null(r);
        assert_true(fabs(strtod(r->train, NULL) - ev[i].train) <= 0.5e-4 + 1e-9);
        assert_true(fabs(strtod(r->val, NULL) - ev[i].val) <= 0.5e-4 + 1e-9);
    }
    free(rows);

    /* the checkpoint is a complete one at step 300 */
    gpt_model m;
    gpt_vocab v;
    nn_adamw opt;
    gpt_train_state ts;
    if (!gpt_ckpt_load(ckpt, &m, &v, &opt, &ts, err, sizeof err))
        fail_msg("%s", err);
    assert_true(vocab_equal(&v, &d.vocab));
    assert_int_equal(ts.step, 300);
    assert_int_equal(ts.evaluated_at, 299);
    assert_int_equal(ts.max_iters, 300);
    assert_int_equal(opt.step, 300);
    assert_int_equal(m.cfg.n_embd, 32);
    assert_int_equal(m.cfg.n_layer, 2);
    assert_int_equal(m.cfg.block_size, 16);
    nn_adamw_free(&opt);
    gpt_free(&m);
    vocab_free(&v);

    /* and the sample closes the output: 50 characters of the vocabulary */
    const char *mark = "\n--- sample ---\n";
    const char *s = strstr(OUT(&p), mark);
    assert_non_null(s);
    s += strlen(mark);
    size_t len = strlen(s);
    assert_true(len >= 2 && s[len - 1] == '\n');
    assert_int_equal(utf8_count(s, len - 1), 50);
    assert_in_vocab(s, len - 1, &d.vocab);
    gpt_data_free(&d);
    proc_free(&p);
}

/* ------------------------------------------------------------ 2. resume */

/* The training flags every resume test shares (dropout stays at its 0.2
 * default so the dropout generator's state must survive too). */
static void resume_flags(argl *a, const char *out)
{
    push(a, "--data", text_path, TINY_MODEL, "--lr", "3e-3", "--eval-interval", "50",
         "--eval-iters", "4", "--sample-tokens", "0", "--out", out, NULL);
}

typedef struct {
    eval_line ev[16];
    int ne;
    csv_row *rows;
    int nr;
} run_record;

static run_record straight; /* filled by straight_run, freed by teardown */

/* The reference: 200 steps in one go (trained once, shared by the tests). */
static const run_record *straight_run(void)
{
    static bool done;
    run_record *r = &straight;
    if (done)
        return r;
    const char *out = tpath("straight");
    argl a = {0};
    push(&a, "train", "--max-iters", "200", NULL);
    resume_flags(&a, out);
    proc p;
    run_ok(&p, &a);
    r->ne = parse_evals(OUT(&p), r->ev, 16);
    assert_int_equal(r->ne, 5); /* 0, 50, 100, 150, 199 */
    char csv[700];
    snprintf(csv, sizeof csv, "%s/loss.csv", out);
    r->nr = parse_csv(csv, &r->rows);
    assert_int_equal(check_batch_steps(r->rows, r->nr), 200);
    proc_free(&p);
    done = true;
    return r;
}

/* The stopped run's output and the resumed run's output together must
 * agree with the straight run wherever both have a step: every eval line
 * printed at a step the straight run evaluated is the same text, every
 * straight eval is among them, and the (appended) CSV holds exactly one
 * batch row per step 0..199 with bit-identical losses. */
static void compare_with_straight(const char *stdout_first, const char *stdout_resumed,
                                  const char *csv_path)
{
    const run_record *ref = straight_run();
    eval_line ev[32];
    int ne = parse_evals(stdout_first, ev, 32);
    ne += parse_evals(stdout_resumed, ev + ne, 32 - ne);
    for (int i = 0; i < ref->ne; i++) {
        bool seen = false;
        for (int k = 0; k < ne; k++)
            if (ev[k].step == ref->ev[i].step) {
                assert_string_equal(ev[k].line, ref->ev[i].line);
                seen = true;
            }
        if (!seen)
            fail_msg("no eval line for step %lld after the stop and resume", ref->ev[i].step);
    }
    csv_row *rows;
    int nr = parse_csv(csv_path, &rows);
    assert_int_equal(check_batch_steps(rows, nr), 200);
    int evals = 0;
    for (int i = 0; i < nr; i++) {
        const csv_row *want = find_row(ref->rows, ref->nr, rows[i].step, rows[i].batch);
        if (rows[i].batch) {
            assert_non_null(want);
            if (strcmp(rows[i].batch_loss, want->batch_loss) != 0)
                fail_msg("step %lld: batch loss %s after resume, %s straight", rows[i].step,
                         rows[i].batch_loss, want->batch_loss);
        } else if (want) {
            assert_string_equal(rows[i].train, want->train);
            assert_string_equal(rows[i].val, want->val);
            evals++;
        }
    }
    assert_true(evals >= ref->ne);
    free(rows);
}

/* Stop with --max-iters 120, then --resume CKPT --max-iters 200. */
static void test_resume_after_max_iters(void **state)
{
    (void)state;
    const char *out = tpath("resume_a");
    char ckpt[700], csv[700];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", out);
    snprintf(csv, sizeof csv, "%s/loss.csv", out);
    argl a = {0};
    push(&a, "train", "--max-iters", "120", NULL);
    resume_flags(&a, out);
    proc p1, p2;
    run_ok(&p1, &a);
    csv_row *rows;
    int nr = parse_csv(csv, &rows);
    assert_int_equal(check_batch_steps(rows, nr), 120);
    free(rows);

    argl b = {0};
    push(&b, "train", "--resume", ckpt, "--max-iters", "200", NULL);
    resume_flags(&b, out);
    run_ok(&p2, &b);
    char want[800];
    snprintf(want, sizeof want, "resuming from %s at step 120\n", ckpt);
    if (!strstr(OUT(&p2), want))
        fail_msg("stdout lacks \"%s\":\n%s", want, OUT(&p2));
    compare_with_straight(OUT(&p1), OUT(&p2), csv);
    proc_free(&p1);
    proc_free(&p2);
}

/* A signal to a running `gpt train` (after its first eval line) stops it
 * with status 128 + sig and a checkpoint; resuming to 200 steps matches
 * the straight run. */
static void stop_by_signal_and_resume(int sig, const char *name, const char *dir)
{
    const char *out = tpath(dir);
    char ckpt[700], csv[700];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", out);
    snprintf(csv, sizeof csv, "%s/loss.csv", out);
    argl a = {0};
    push(&a, "train", "--max-iters", "1000000", NULL);
    resume_flags(&a, out);
    proc p1, p2;
    proc_start(&p1, &a);
    if (!proc_pump(&p1, 0, "step 0: train loss "))
        fail_msg("gpt train ended before its first eval; stderr:\n%s", ERR(&p1));
    assert_int_equal(kill(p1.pid, sig), 0);
    proc_finish(&p1);
    assert_int_equal(p1.code, 128 + sig);

    char pat[2200];
    snprintf(pat, sizeof pat,
             "*\nstopped by %s at step *; checkpoint saved to %s (continue with --resume %s)\n",
             name, ckpt, ckpt);
    if (!wildmatch(pat, OUT(&p1)))
        fail_msg("stdout does not match \"%s\":\n%s", pat, OUT(&p1));
    long long stopped = atoll(strstr(OUT(&p1), "\nstopped by ") + strlen("\nstopped by ") +
                              strlen(name) + strlen(" at step "));
    assert_true(stopped >= 1);
    if (stopped >= 200)
        print_message("note: %s arrived late (step %lld); only the shared steps compare\n", name,
                      stopped);

    /* the checkpoint holds exactly the steps done, as does the loss log */
    gpt_model m;
    gpt_vocab v;
    nn_adamw opt;
    gpt_train_state ts;
    char err[512];
    if (!gpt_ckpt_load(ckpt, &m, &v, &opt, &ts, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(ts.step, stopped);
    assert_int_equal(opt.step, stopped);
    nn_adamw_free(&opt);
    gpt_free(&m);
    vocab_free(&v);
    csv_row *rows;
    int nr = parse_csv(csv, &rows);
    assert_int_equal(check_batch_steps(rows, nr), stopped);
    free(rows);

    if (stopped < 200) {
        argl b = {0};
        push(&b, "train", "--resume", ckpt, "--max-iters", "200", NULL);
        resume_flags(&b, out);
        run_ok(&p2, &b);
        compare_with_straight(OUT(&p1), OUT(&p2), csv);
        proc_free(&p2);
    }
    proc_free(&p1);
}

static void test_resume_after_sigint(void **state)
{
    (void)state;
    stop_by_signal_and_resume(SIGINT, "SIGINT", "resume_int");
}

static void test_resume_after_sigterm(void **state)
{
    (void)state;
    stop_by_signal_and_resume(SIGTERM, "SIGTERM", "resume_term");
}

/* ------------------------------------------------------------ reliability */

/* Memory stays flat over a long run: the arena is reset every step and
 * nothing accumulates. RSS at step 100 and at step 2900 of the tiny preset
 * are within 3%. (Not under the sanitizers, whose quarantine grows by design.) */
static void test_memory_is_flat(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    skip(); /* clang spells it this way */
#endif
#endif
    argl a = {0};
    push(&a, "train", "--data", text_path, "--preset", "tiny", "--max-iters", "3000",
         "--eval-interval", "1000", "--eval-iters", "5", "--threads", "1", "--sample-tokens",
         "0", "--out", tpath("flat"), NULL);
    proc p;
    run_ok(&p, &a);
    proc_free(&p);
    csv_row *r;
    int n = parse_csv(tpath("flat/loss.csv"), &r);
    const csv_row *early = find_row(r, n, 100, true), *late = find_row(r, n, 2900, true);
    assert_non_null(early);
    assert_non_null(late);
    print_message("rss: %.1f MiB at step 100, %.1f MiB at step 2900\n", early->rss, late->rss);
    assert_true(fabs(late->rss - early->rss) <= 0.03 * early->rss);
    free(r);
}

/* The same seed and thread count give bit-identical losses (2 threads). */
static void test_same_seed_same_losses(void **state)
{
    (void)state;
    char *csv[2];
    for (int k = 0; k < 2; k++) {
        char dir[32];
        snprintf(dir, sizeof dir, "det%d", k);
        argl a = {0};
        push(&a, "train", "--data", text_path, "--n-embd", "32", "--n-head", "4", "--n-layer",
             "2", "--block-size", "16", "--batch-size", "16", "--threads", "2", "--dropout",
             "0.1", "--max-iters", "60", "--eval-interval", "30", "--eval-iters", "3",
             "--sample-tokens", "0", "--out", tpath(dir), NULL);
        proc p;
        run_ok(&p, &a);
        proc_free(&p);
        char path[64];
        snprintf(path, sizeof path, "%s/loss.csv", dir);
        csv_row *r;
        int n = parse_csv(tpath(path), &r);
        assert_int_equal(check_batch_steps(r, n), 60);
        /* the loss columns only: elapsed time and memory differ */
        size_t cap = (size_t)n * 100 + 1, len = 0;
        csv[k] = malloc(cap);
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(csv[k] + len, cap - len, "%lld,%s,%s,%s\n", r[i].step,
                                    r[i].batch_loss, r[i].train, r[i].val);
        free(r);
    }
    assert_string_equal(csv[0], csv[1]);
    free(csv[0]);
    free(csv[1]);
}

/* Weights that blow up: training stops at the first
 * non-finite loss or grad with a message naming the step, exit 1, and the
 * last checkpoint (saved at the step-0 eval) is intact. */
static void test_non_finite_loss_stops_training(void **state)
{
    (void)state;
    argl a = {0};
    /* decay 1 - lr wd = -99: the weights flip and grow a hundredfold each step */
    push(&a, "train", "--data", text_path, TINY_MODEL, "--lr", "10", "--weight-decay", "10",
         "--max-iters", "200",
         "--eval-interval", "1000", "--eval-iters", "2", "--sample-tokens", "0", "--out",
         tpath("nan"), NULL);
    proc p;
    run(&p, &a);
    assert_int_equal(p.code, 1);
    assert_true(wildmatch("*gpt train: the * became * at step *; stopping. The last good "
                          "checkpoint is */nan/ckpt.safetensors\n", ERR(&p)));
    proc_free(&p);
    gpt_model m;
    gpt_vocab v;
    nn_adamw opt;
    gpt_train_state ts;
    char err[512];
    if (!gpt_ckpt_load(tpath("nan/ckpt.safetensors"), &m, &v, &opt, &ts, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(ts.step, 0);
    for (int i = 0; i < m.params.n; i++)
        for (int64_t k = 0; k < m.params.items[i]->numel; k++)
            assert_true(isfinite(m.params.items[i]->data[k]));
    nn_adamw_free(&opt);
    gpt_free(&m);
    vocab_free(&v);
}

/* `gpt train --init-from` a PyTorch state_dict: training starts from its
 * weights (the first estimate is PyTorch's trained model's, far below a new
 * model's), with the file's sizes, and the run's own dropout; the
 * checkpoint it writes is ours. One step: "1 step", one thread: "1 thread". */
static void test_init_from_torch(void **state)
{
    (void)state;
    char ckpt[700], text[700];
    snprintf(ckpt, sizeof ckpt, "%s/torch_gpt.safetensors", fixtures);
    snprintf(text, sizeof text, "%s/torch_gpt.txt", fixtures);
    double first[2];
    for (int k = 0; k < 2; k++) {
        argl a = {0};
        push(&a, "train", "--data", text, "--batch-size", "8", "--max-iters", "1", "--eval-iters",
             "20", "--dropout", "0.1", "--lr", "1e-3", "--threads", "1", "--sample-tokens", "0",
             "--out", tpath(k ? "init_new" : "init_torch"), NULL);
        if (k) /* a new model of the same sizes */
            push(&a, "--n-embd", "8", "--n-head", "2", "--n-layer", "2", "--block-size", "8", NULL);
        else
            push(&a, "--init-from", ckpt, NULL);
        proc p;
        run_ok(&p, &a);
        eval_line ev[4];
        assert_int_equal(parse_evals(OUT(&p), ev, 4), 1); /* step 0, the last */
        first[k] = ev[0].val;
        assert_non_null(strstr(OUT(&p), "; vocabulary 12 characters; 279 train / 31 val tokens; "
                                        "1 thread; "));
        assert_non_null(strstr(OUT(&p), "\ntrained 1 step in "));
        proc_free(&p);
    }
    print_message("first val loss: from PyTorch's weights %.4f, new %.4f\n", first[0], first[1]);
    assert_true(first[0] < 1.5 && first[1] > 2.2); /* ln 12 = 2.48 */
    gpt_model m;
    gpt_vocab v;
    nn_adamw opt;
    gpt_train_state ts;
    char err[512];
    if (!gpt_ckpt_load(tpath("init_torch/ckpt.safetensors"), &m, &v, &opt, &ts, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(m.cfg.n_embd, 8);
    assert_int_equal(m.cfg.n_head, 2);
    assert_int_equal(m.cfg.n_layer, 2);
    assert_int_equal(m.cfg.block_size, 8);
    assert_true(m.cfg.dropout == 0.1f);
    assert_int_equal(ts.step, 1);
    assert_int_equal(opt.step, 1);
    nn_adamw_free(&opt);
    gpt_free(&m);
    vocab_free(&v);
}

/* Text with CRLF line endings trains (each \r a character), with a warning
 * that counts them and says how to convert the file; plain text gets none. */
static void test_crlf_warning(void **state)
{
    (void)state;
    size_t len;
    char *t = read_file(text_path, &len);
    char *crlf = malloc(2 * len + 1);
    size_t n = 0, crs = 0;
    for (size_t i = 0; i < len; i++) {
        if (t[i] == '\n') {
            crlf[n++] = '\r';
            crs++;
        }
        crlf[n++] = t[i];
    }
    const char *path = tpath("crlf.txt");
    write_file(path, crlf, n);
    for (int k = 0; k < 2; k++) {
        argl a = {0};
        push(&a, "train", "--data", k ? text_path : path, TINY_MODEL, "--max-iters", "1",
             "--eval-iters", "1", "--sample-tokens", "0", "--out", tpath(k ? "lf" : "crlf"), NULL);
        proc p;
        run_ok(&p, &a);
        if (k) {
            assert_string_equal(ERR(&p), "");
        } else {
            char want[1600];
            snprintf(want, sizeof want, "gpt train: warning: %s has %zu carriage returns (\\r, as in "
                     "Windows CRLF line endings): the model learns each as a character and will "
                     "print it. To train on plain newlines, convert the file first: sed -i "
                     "'s/\\r$//' %s (or dos2unix)\n", path, crs, path);
            assert_string_equal(ERR(&p), want);
            assert_non_null(strstr(OUT(&p), "; vocabulary 59 characters;")); /* 58 and \r */
        }
        proc_free(&p);
    }
    /* the count, one line ending: "1 carriage return" */
    gpt_data d;
    char err[256];
    assert_true(gpt_data_from_text(&d, (const unsigned char *)"ab\r\ncd\n", 7, err, sizeof err));
    assert_int_equal(d.carriage_returns, 1);
    char *msg = NULL;
    size_t ml = 0;
    FILE *mem = open_memstream(&msg, &ml);
    gpt_data_warn(&d, "x.txt", "gpt train", mem);
    fclose(mem);
    assert_non_null(strstr(msg, "x.txt has 1 carriage return (\\r,"));
    free(msg);
    gpt_data_free(&d);
    free(t);
    free(crlf);
}

/* the straight run is shared by the resume tests; freed here */
static int teardown(void **state)
{
    free(straight.rows);
    return gpt_teardown(state);
}

int main(int argc, char **argv)
{
    if (!gpt_args(argc, argv))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_end_to_end),
        cmocka_unit_test(test_resume_after_max_iters),
        cmocka_unit_test(test_resume_after_sigint),
        cmocka_unit_test(test_resume_after_sigterm),
        cmocka_unit_test(test_memory_is_flat),
        cmocka_unit_test(test_same_seed_same_losses),
        cmocka_unit_test(test_non_finite_loss_stops_training),
        cmocka_unit_test(test_init_from_torch),
        cmocka_unit_test(test_crlf_warning),
    };
    return cmocka_run_group_tests_name("gpt_train", tests, gpt_setup, teardown);
}
