/* test_gpt_train.c - `gpt train` end to end (the loss falls, the loss log and
 * the checkpoint are complete), resuming after --max-iters, SIGINT or SIGTERM
 * bit-identical to a straight run, and reliability: flat memory over a long
 * run, the same seed giving the same losses, a non-finite loss stopping
 * training with the last good checkpoint intact. */
#include "gpt_util.h"

#include <sys/file.h>

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

/* ------------------------------------------------------------ data safety (issue 11) */

/* A short run's flags into out: n steps, evaluations at 0 and the last. */
static void short_run(argl *a, const char *out, const char *steps)
{
    push(a, "train", "--data", text_path, TINY_MODEL, "--max-iters", steps, "--eval-interval",
         "1000", "--eval-iters", "1", "--sample-tokens", "0", "--out", out, NULL);
}

static char *in_dir(const char *dir, const char *name)
{
    static char bufs[8][800];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static bool bytes_equal(const char *path, const char *bytes, size_t len)
{
    size_t n;
    char *b = read_file(path, &n);
    bool same = n == len && memcmp(b, bytes, len) == 0;
    free(b);
    return same;
}

/* 1. The run directory is locked while a run lasts: a second run into it
 * fails at once, naming the holder's pid (the test's own, holding the lock
 * here; then a real run's), and writes nothing. */
static void test_run_lock(void **state)
{
    (void)state;
    const char *dir = tpath("locked");
    assert_int_equal(mkdir(dir, 0755), 0);
    int fd = open(in_dir(dir, ".lock"), O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    char pid[32], want[1200];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    assert_int_equal(write(fd, pid, (size_t)n), n);
    argl a = {0};
    short_run(&a, dir, "3");
    proc p;
    run(&p, &a);
    assert_int_equal(p.code, 1);
    snprintf(want, sizeof want, "gpt train: another run (pid %ld) is training in %s; wait for it "
             "to end, or give another --out\n", (long)getpid(), dir);
    assert_string_equal(ERR(&p), want);
    assert_string_equal(OUT(&p), "");
    assert_false(file_exists(in_dir(dir, "ckpt.safetensors")));
    assert_false(file_exists(in_dir(dir, "loss.csv")));
    proc_free(&p);
    close(fd); /* the lock goes with the descriptor */

    /* a run that holds it: the second names the first's pid */
    argl l = {0};
    push(&l, "train", "--data", text_path, TINY_MODEL, "--max-iters", "100000000",
         "--eval-interval", "100000000", "--eval-iters", "1", "--sample-tokens", "0", "--out", dir,
         NULL);
    proc first;
    proc_start(&first, &l);
    assert_true(proc_pump(&first, 0, "step 0:"));
    run(&p, &a);
    assert_int_equal(p.code, 1);
    snprintf(want, sizeof want, "gpt train: another run (pid %ld) is training in %s; wait for it "
             "to end, or give another --out\n", (long)first.pid, dir);
    assert_string_equal(ERR(&p), want);
    proc_free(&p);
    kill(first.pid, SIGINT);
    proc_finish(&first);
    assert_int_equal(first.code, 128 + SIGINT);
    proc_free(&first);
    /* the lock went with the first run: a third may resume */
    argl r = {0};
    push(&r, "train", "--data", text_path, "--resume", in_dir(dir, "ckpt.safetensors"),
         "--max-iters", "1", "--sample-tokens", "0", NULL);
    run_ok(&p, &r);
    proc_free(&p);
}

/* 1. A symlink planted at the checkpoint's old fixed temporary name is not
 * followed: its target keeps its bytes, the link stays, the checkpoint is
 * written beside it. */
static void test_tmp_symlink_not_followed(void **state)
{
    (void)state;
    const char *dir = tpath("planted");
    assert_int_equal(mkdir(dir, 0755), 0);
    const char *victim = tpath("victim.txt");
    write_file(victim, "precious", 8);
    const char *link = in_dir(dir, "ckpt.safetensors.tmp");
    assert_int_equal(symlink(victim, link), 0);
    argl a = {0};
    short_run(&a, dir, "3");
    proc p;
    run_ok(&p, &a);
    proc_free(&p);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_true(bytes_equal(victim, "precious", 8));
    gpt_model m;
    gpt_vocab v;
    gpt_train_state ts;
    nn_adamw opt;
    char err[512];
    if (!gpt_ckpt_load(in_dir(dir, "ckpt.safetensors"), &m, &v, &opt, &ts, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(ts.step, 3);
    nn_adamw_free(&opt);
    gpt_free(&m);
    vocab_free(&v);
}

/* 3. A new run into a directory that holds a run refuses, offering --resume
 * and --force, and leaves the files alone; --force starts over. */
static void test_no_silent_overwrite(void **state)
{
    (void)state;
    const char *dir = tpath("twice");
    argl a = {0};
    short_run(&a, dir, "4");
    proc p;
    run_ok(&p, &a);
    proc_free(&p);
    const char *ckpt = in_dir(dir, "ckpt.safetensors"), *csv = in_dir(dir, "loss.csv");
    size_t nc, nl;
    char *cb = read_file(ckpt, &nc), *lb = read_file(csv, &nl);
    run(&p, &a);
    assert_int_equal(p.code, 1);
    char want[1500];
    snprintf(want, sizeof want, "gpt train: %s exists (a run was trained here); continue it with "
             "--resume %s, start over with --force (replaces its checkpoint and loss log), or "
             "give another --out\n", ckpt, ckpt);
    assert_string_equal(ERR(&p), want);
    assert_string_equal(OUT(&p), "");
    proc_free(&p);
    assert_true(bytes_equal(ckpt, cb, nc));
    assert_true(bytes_equal(csv, lb, nl));
    /* a log alone counts as a run too */
    char moved[800];
    snprintf(moved, sizeof moved, "%s.kept", ckpt);
    assert_int_equal(rename(ckpt, moved), 0);
    run(&p, &a);
    assert_int_equal(p.code, 1);
    snprintf(want, sizeof want, "gpt train: %s exists (a run was trained here); continue it with "
             "--resume %s, start over with --force (replaces its checkpoint and loss log), or "
             "give another --out\n", csv, ckpt);
    assert_string_equal(ERR(&p), want);
    proc_free(&p);
    assert_true(bytes_equal(csv, lb, nl));
    assert_int_equal(rename(moved, ckpt), 0);
    /* --force: a new run of 2 steps replaces both */
    argl f = {0};
    short_run(&f, dir, "2");
    push(&f, "--force", NULL);
    run_ok(&p, &f);
    proc_free(&p);
    csv_row *rows;
    int nr = parse_csv(csv, &rows);
    assert_int_equal(check_batch_steps(rows, nr), 2);
    free(rows);
    gpt_model m;
    gpt_vocab v;
    gpt_train_state ts;
    nn_adamw opt;
    char err[512];
    if (!gpt_ckpt_load(ckpt, &m, &v, &opt, &ts, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(ts.step, 2);
    nn_adamw_free(&opt);
    gpt_free(&m);
    vocab_free(&v);
    free(cb);
    free(lb);
}

/* 2, 8. --resume A --out X writes X/ckpt.safetensors (A stays as it was) and a
 * loss log with its header whose elapsed_s goes on from A's; resuming X in
 * place continues its log; the summaries count this invocation's steps, and
 * a resume with nothing left says so and leaves the checkpoint alone. */
static void test_resume_paths(void **state)
{
    (void)state;
    const char *A = tpath("resA"), *X = tpath("resX");
    argl a = {0};
    push(&a, "train", "--data", text_path, TINY_MODEL, "--max-iters", "20", "--eval-interval",
         "10", "--eval-iters", "1", "--sample-tokens", "0", "--out", A, NULL);
    proc p;
    run_ok(&p, &a);
    assert_non_null(strstr(OUT(&p), "\ntrained 20 steps in "));
    assert_non_null(strstr(OUT(&p), " tokens/s, evaluation time excluded); checkpoint "));
    proc_free(&p);
    const char *ackpt = in_dir(A, "ckpt.safetensors");
    size_t na;
    char *abytes = read_file(ackpt, &na);
    csv_row *ra;
    int nra = parse_csv(in_dir(A, "loss.csv"), &ra);
    double a_last = ra[nra - 1].elapsed;
    free(ra);

    argl b = {0};
    push(&b, "train", "--data", text_path, "--resume", ackpt, "--max-iters", "30",
         "--sample-tokens", "0", "--out", X, NULL);
    run_ok(&p, &b);
    char want[1500];
    snprintf(want, sizeof want, "\ntrained 10 steps (30 in all) in ");
    assert_non_null(strstr(OUT(&p), want));
    snprintf(want, sizeof want, "; checkpoint %s, loss log %s\n", in_dir(X, "ckpt.safetensors"),
             in_dir(X, "loss.csv"));
    assert_non_null(strstr(OUT(&p), want));
    proc_free(&p);
    assert_true(bytes_equal(ackpt, abytes, na)); /* A is not written over */
    csv_row *rx;
    int nrx = parse_csv(in_dir(X, "loss.csv"), &rx); /* the header */
    assert_int_equal(rx[0].step, 20);
    if (!(rx[0].elapsed >= a_last))
        fail_msg("the resumed log starts at %.3f s, before the first run's last row %.3f s",
                 rx[0].elapsed, a_last);
    free(rx);

    /* X's checkpoint is not A's: resuming A into X again would replace it */
    run(&p, &b);
    assert_int_equal(p.code, 1);
    snprintf(want, sizeof want, "gpt train: %s exists and is not the checkpoint resumed (%s); "
             "give --force to replace it, or another --out or --checkpoint\n",
             in_dir(X, "ckpt.safetensors"), ackpt);
    assert_string_equal(ERR(&p), want);
    proc_free(&p);

    /* in place: the log goes on, one header, elapsed_s never going back */
    argl c = {0};
    push(&c, "train", "--data", text_path, "--resume", in_dir(X, "ckpt.safetensors"),
         "--max-iters", "40", "--sample-tokens", "0", NULL);
    run_ok(&p, &c);
    assert_non_null(strstr(OUT(&p), "\ntrained 10 steps (40 in all) in "));
    proc_free(&p);
    char *text = read_file(in_dir(X, "loss.csv"), NULL);
    assert_null(strstr(text + 1, "step,batch_loss"));
    free(text);
    nrx = parse_csv(in_dir(X, "loss.csv"), &rx);
    for (int i = 1; i < nrx; i++)
        if (rx[i].elapsed < rx[i - 1].elapsed)
            fail_msg("elapsed_s goes back at row %d (step %lld): %.3f after %.3f", i, rx[i].step,
                     rx[i].elapsed, rx[i - 1].elapsed);
    assert_int_equal(rx[nrx - 1].step, 39);
    free(rx);

    /* nothing left to do */
    size_t nx;
    char *xbytes = read_file(in_dir(X, "ckpt.safetensors"), &nx);
    run_ok(&p, &c);
    snprintf(want, sizeof want, "\nnothing to do: the checkpoint is at step 40 and --max-iters is "
             "40 (raise --max-iters to train on); checkpoint %s, loss log %s\n",
             in_dir(X, "ckpt.safetensors"), in_dir(X, "loss.csv"));
    assert_non_null(strstr(OUT(&p), want));
    assert_null(strstr(OUT(&p), "trained "));
    proc_free(&p);
    assert_true(bytes_equal(in_dir(X, "ckpt.safetensors"), xbytes, nx));
    free(xbytes);
    free(abytes);
}

/* 8. A long evaluation shows its progress (here one that would never end,
 * stopped once the line came). */
static void test_eval_progress(void **state)
{
    (void)state;
    argl a = {0};
    push(&a, "train", "--data", text_path, TINY_MODEL, "--max-iters", "10", "--eval-iters",
         "100000000", "--sample-tokens", "0", "--out", tpath("long_eval"), NULL);
    proc p;
    proc_start(&p, &a);
    assert_true(proc_pump(&p, 1, "evaluating at step 0: "));
    assert_true(proc_pump(&p, 1, " batches\n"));
    kill(p.pid, SIGINT);
    proc_finish(&p);
    assert_int_equal(p.code, 128 + SIGINT);
    long long done, total;
    const char *line = strstr(ERR(&p), "evaluating at step 0: ");
    assert_int_equal(sscanf(line, "evaluating at step 0: %lld/%lld batches\n", &done, &total), 2);
    assert_int_equal(total, 200000000);
    assert_true(done >= 1 && done < total);
    proc_free(&p);
}

/* 5. A configuration too large for this machine is refused before anything
 * is allocated or created; an allocation that fails all the same (a data
 * limit the estimate does not look at) ends with a message and exit 1, not
 * an abort, and leaves no run directory behind. */
static void test_out_of_memory(void **state)
{
    (void)state;
    const char *dir = tpath("huge");
    argl a = {0};
    push(&a, "train", "--data", text_path, "--n-embd", "65536", "--n-layer", "64", "--n-head",
         "4", "--threads", "1", "--out", dir, NULL);
    proc p;
    run(&p, &a);
    assert_int_equal(p.code, 1);
    if (!wildmatch("gpt train: this configuration needs about * TiB of memory (parameters and "
                   "gradients * TiB, AdamW state * TiB, one step's activations at batch 64 x "
                   "block 256 * TiB), more than the * available; lower --batch-size, "
                   "--block-size, --n-embd or --n-layer\n", ERR(&p)))
        fail_msg("unexpected stderr:\n%s", ERR(&p));
    proc_free(&p);
    struct stat st;
    assert_true(stat(dir, &st) != 0);

#if defined(__SANITIZE_ADDRESS__)
    print_message("address sanitizer build: the memory limit cases are skipped (the sanitizer "
                  "cannot start under one)\n");
#else
    /* RLIMIT_AS counts in the estimate: 1 GiB is too little for the lecture model */
    argl l = {0};
    push(&l, "train", "--data", text_path, "--preset", "lecture", "--threads", "1", "--out", dir,
         NULL);
    proc_start_with(&p, &l, NULL, RLIMIT_AS, (rlim_t)1 << 30);
    proc_finish(&p);
    assert_int_equal(p.code, 1);
    if (!wildmatch("gpt train: this configuration needs about * GiB of memory (*), more than the "
                   "* available; lower --batch-size, --block-size, --n-embd or --n-layer\n",
                   ERR(&p)))
        fail_msg("unexpected stderr:\n%s", ERR(&p));
    proc_free(&p);
    assert_true(stat(dir, &st) != 0);

    /* a data limit of 1 GiB and a step that needs about 2.5 GiB: the first
     * step's arena cannot grow (much lower limits make OpenBLAS's start-up
     * hang, before gpt runs at all) */
    argl d = {0};
    push(&d, "train", "--data", text_path, "--n-embd", "64", "--n-head", "4", "--n-layer", "2",
         "--block-size", "256", "--batch-size", "512", "--threads", "1", "--eval-iters", "1",
         "--out", dir, NULL);
    proc_start_with(&p, &d, NULL, RLIMIT_DATA, (rlim_t)1 << 30);
    proc_finish(&p);
    if (strstr(ERR(&p), "this configuration needs about")) /* a host with under 2 GiB free */
        print_message("too little memory free here for the allocation failure case\n");
    else {
        assert_int_equal(p.code, 1);
        if (!wildmatch("*gpt train: out of memory allocating * bytes\ngpt train: a smaller "
                       "--batch-size, --block-size, --n-embd or --n-layer needs less\n", ERR(&p)))
            fail_msg("unexpected stderr:\n%s", ERR(&p));
        /* where it fails depends on the matmul's scratch: in the first
         * evaluation, leaving nothing, or in the step after it, leaving the
         * evaluation's checkpoint; never an empty directory */
        if (stat(dir, &st) == 0 && !file_exists(in_dir(dir, "ckpt.safetensors")))
            fail_msg("%s left behind without a checkpoint", dir);
    }
    proc_free(&p);
#endif
}

/* 5. The estimate the refusal rests on: the parameter count exact, the
 * activations an upper bound on a real training step's arena peak, and not
 * a loose one (within 1.5x plus the 4 MiB of the arena's first block). */
static void test_memory_estimate(void **state)
{
    (void)state;
    const int64_t cfgs[][6] = {/* B, T, C, H, L, V */
                               {8, 16, 32, 4, 2, 65},  {4, 64, 64, 4, 2, 65},
                               {4, 128, 64, 8, 2, 65}, {2, 64, 256, 4, 1, 65},
                               {4, 64, 64, 4, 4, 500}, {16, 32, 128, 4, 3, 58}};
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
        const int64_t *k = cfgs[i];
        gpt_config cfg = {.vocab_size = k[5], .block_size = k[1], .n_embd = k[2],
                          .n_head = (int)k[3], .n_layer = (int)k[4], .dropout = 0.2f};
        gpt_model m;
        char err[256];
        assert_true(gpt_init(&m, &cfg, 1, err, sizeof err));
        assert_int_equal(gpt_param_count(&cfg), nn_params_numel(&m.params));
        ag_ctx *c = ag_ctx_new();
        ag_index *x = ag_index_new(NULL, NULL, AG_SHAPE(k[0], k[1]));
        ag_index *y = ag_index_new(NULL, NULL, AG_SHAPE(k[0], k[1]));
        for (int64_t j = 0; j < x->numel; j++)
            x->data[j] = (int32_t)(j % k[5]), y->data[j] = (int32_t)((j * 7) % k[5]);
        ag_tensor *loss = NULL;
        gpt_forward(c, &m, x, y, true, &loss);
        assert_non_null(loss);
        ag_backward(c, loss);
        double peak = (double)ag_ctx_bytes_peak(c);
        gpt_memory est = gpt_train_memory(&cfg, k[0]);
        double P = (double)nn_params_numel(&m.params);
        assert_true(est.params == 8 * P && est.optimizer == 8 * P);
        if (!(est.activations >= peak && est.activations <= 1.5 * peak + (4 << 20)))
            fail_msg("config %zu: activations estimated %.0f bytes, the step's peak %.0f", i,
                     est.activations, peak);
        ag_index_free(x);
        ag_index_free(y);
        ag_ctx_free(c);
        gpt_free(&m);
    }
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
        cmocka_unit_test(test_run_lock),
        cmocka_unit_test(test_tmp_symlink_not_followed),
        cmocka_unit_test(test_no_silent_overwrite),
        cmocka_unit_test(test_resume_paths),
        cmocka_unit_test(test_eval_progress),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_memory_estimate),
    };
    return cmocka_run_group_tests_name("gpt_train", tests, gpt_setup, teardown);
}
