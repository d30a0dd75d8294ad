/* test_gpt_mpi.c - `mpirun -np 2 gpt train`, data-parallel, end to end:
 *   - 2 ranks at batch B/2 train as 1 process at batch B: the same batch
 *     and eval losses for 20 steps (--dropout 0) within 1e-4, and the ranks'
 *     parameters bit-identical (gpt checks them at every eval and at the end);
 *   - a checkpoint resumes with a different number of ranks (2 -> 1 -> 2)
 *     and goes on as the straight run;
 *   - SIGTERM to one rank, or SIGUSR1 to mpirun, stops all ranks at the same
 *     step with rank 0's checkpoint saved;
 *   - a rank killed with SIGKILL ends the job with an error within 30 s.
 *
 * Run as: test_gpt_mpi GPT_BINARY FIXTURES_DIR MPIRUN (registered only when
 * the build has MPI). */
#include "gpt_util.h"

#include <dirent.h>

static const char *gpt_binary, *mpirun_path;

#define SMALL_MODEL "--n-embd", "32", "--n-head", "4", "--n-layer", "2", "--block-size", "16", \
                    "--threads", "1", "--dropout", "0", "--lr", "3e-3", "--eval-iters", "2",     \
                    "--sample-tokens", "0"

/* Starts `gpt ARGS` alone (np 0) or as `mpirun -np NP ... gpt ARGS`. */
static void start(proc *p, int np, const argl *args)
{
    argl a = {0};
    char nps[16];
    if (np > 0) {
        snprintf(nps, sizeof nps, "%d", np);
        gpt_path = mpirun_path;
        push(&a, "-np", nps, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
             gpt_binary, NULL);
    } else
        gpt_path = gpt_binary;
    for (int i = 0; i < args->n; i++)
        push(&a, args->v[i], NULL);
    proc_start(p, &a);
    gpt_path = gpt_binary;
}

static void run_np_ok(proc *p, int np, const argl *args)
{
    start(p, np, args);
    proc_finish(p);
    if (p->code != 0) {
        print_error("%s exited %d; stdout:\n%s\nstderr:\n%s\n", p->desc, p->code, OUT(p), ERR(p));
        fail();
    }
}

/* The batch and eval rows of two loss logs agree within tol at every step
 * both have (an eval row only where both evaluated); returns how many compared. */
static int compare_logs(const char *csv_a, const char *csv_b, double tol)
{
    csv_row *a, *b;
    int na = parse_csv(csv_a, &a), nb = parse_csv(csv_b, &b), compared = 0;
    for (int i = 0; i < na; i++) {
        const csv_row *w = find_row(b, nb, a[i].step, a[i].batch);
        if (!w) {
            if (a[i].batch)
                fail_msg("%s has no batch row for step %lld", csv_b, a[i].step);
            continue;
        }
        double d = a[i].batch ? fabs(strtod(a[i].batch_loss, NULL) - strtod(w->batch_loss, NULL))
                              : fmax(fabs(strtod(a[i].train, NULL) - strtod(w->train, NULL)),
                                     fabs(strtod(a[i].val, NULL) - strtod(w->val, NULL)));
        if (!(d <= tol))
            fail_msg("step %lld (%s): %s has %s %s %s, %s has %s %s %s (differ by %g > %g)",
                     a[i].step, a[i].batch ? "batch" : "eval", csv_a, a[i].batch_loss, a[i].train,
                     a[i].val, csv_b, w->batch_loss, w->train, w->val, d, tol);
        compared++;
    }
    free(a);
    free(b);
    return compared;
}

static void need(const proc *p, const char *text)
{
    if (!strstr(OUT(p), text))
        fail_msg("stdout of %s lacks \"%s\":\n%s", p->desc, text, OUT(p));
}

/* The one-process reference at batch 8, 20 steps (trained once). */
static const char *reference(void)
{
    static bool done;
    const char *out = tpath("one");
    if (!done) {
        argl a = {0};
        push(&a, "train", "--data", text_path, SMALL_MODEL, "--batch-size", "8", "--max-iters",
             "20", "--eval-interval", "10", "--out", out, NULL);
        proc p;
        run_np_ok(&p, 0, &a);
        proc_free(&p);
        done = true;
    }
    return tpath("one/loss.csv");
}

static void test_two_ranks_match_one_process(void **state)
{
    (void)state;
    const char *ref = reference();
    argl a = {0};
    push(&a, "train", "--data", text_path, SMALL_MODEL, "--batch-size", "4", "--max-iters", "20",
         "--eval-interval", "10", "--out", tpath("two"), NULL);
    proc p;
    run_np_ok(&p, 2, &a);
    need(&p, "data parallel: 2 ranks x batch 4 = global batch 8\n");
    need(&p, "parameters bit-identical on 2 ranks\n");
    /* rank 0 alone prints: one start line, one eval line per eval */
    const char *first = strstr(OUT(&p), " M parameters;");
    assert_non_null(first);
    assert_null(strstr(first + 1, " M parameters;"));
    eval_line ev[8];
    assert_int_equal(parse_evals(OUT(&p), ev, 8), 3); /* 0, 10, 19 */
    proc_free(&p);
    /* 20 batch rows and 3 eval rows */
    assert_int_equal(compare_logs(ref, tpath("two/loss.csv"), 1e-4), 23);
}

/* 2 ranks x 4 for 7 steps, resumed by 1 process (its batch: the saved global
 * 8) to 14, resumed by 2 ranks (4 each) to 20: the same as the reference. */
static void test_resume_with_other_rank_counts(void **state)
{
    (void)state;
    const char *ref = reference();
    const char *out = tpath("mixed");
    char ckpt[700];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", out);
    static const struct {
        int np;
        const char *iters;
        const char *want;
    } legs[] = {
        {2, "7", "data parallel: 2 ranks x batch 4 = global batch 8\n"},
        {0, "14", "resuming from "},
        {2, "20", "data parallel: 2 ranks x batch 4 = global batch 8\n"},
    };
    for (int k = 0; k < 3; k++) {
        argl a = {0};
        push(&a, "train", "--data", text_path, SMALL_MODEL, "--max-iters", legs[k].iters,
             "--eval-interval", "10", "--out", out, NULL);
        if (k == 0)
            push(&a, "--batch-size", "4", NULL);
        else
            push(&a, "--resume", ckpt, NULL);
        proc p;
        run_np_ok(&p, legs[k].np, &a);
        need(&p, legs[k].want);
        if (k == 1)
            assert_null(strstr(OUT(&p), "data parallel"));
        proc_free(&p);
    }
    csv_row *rows;
    int nr = parse_csv(tpath("mixed/loss.csv"), &rows);
    assert_int_equal(check_batch_steps(rows, nr), 20);
    free(rows);
    assert_true(compare_logs(tpath("mixed/loss.csv"), ref, 1e-4) >= 23);
}

/* The pid of rank `rank` among mpirun's children (their environment names it). */
static pid_t rank_pid(pid_t mpirun, int rank)
{
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    DIR *d = opendir("/proc");
    assert_non_null(d);
    pid_t found = 0;
    for (struct dirent *e; !found && (e = readdir(d));) {
        char path[300], buf[8192];
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int ppid = 0;
        /* pid (comm) state ppid: comm may hold spaces, so read after the last ')' */
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *close = strrchr(buf, ')');
        if (!close || sscanf(close + 1, " %*c %d", &ppid) != 1 || ppid != mpirun)
            continue;
        snprintf(path, sizeof path, "/proc/%s/environ", e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
            buf[n] = '\0';
            if (strcmp(buf + i, want) == 0)
                found = (pid_t)atoi(e->d_name);
        }
    }
    closedir(d);
    if (!found)
        fail_msg("no child of mpirun %d has %s", (int)mpirun, want);
    return found;
}

/* A long run, stopped after its first eval by sig sent to rank 1 (to_rank)
 * or to mpirun: every rank stops at the same step, status 128 + sig, rank 0
 * saves a checkpoint holding exactly the steps done. */
static void stop_by_signal(int sig, const char *name, bool to_rank, const char *dir)
{
    const char *out = tpath(dir);
    char ckpt[700];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", out);
    argl a = {0};
    push(&a, "train", "--data", text_path, SMALL_MODEL, "--batch-size", "4", "--max-iters",
         "1000000", "--eval-interval", "1000000", "--out", out, NULL);
    proc p;
    start(&p, 2, &a);
    if (!proc_pump(&p, 0, "step 0: train loss "))
        fail_msg("gpt train ended before its first eval; stderr:\n%s", ERR(&p));
    usleep(300 * 1000); /* some steps */
    assert_int_equal(kill(to_rank ? rank_pid(p.pid, 1) : p.pid, sig), 0);
    proc_finish(&p);
    char pat[1600];
    snprintf(pat, sizeof pat,
             "*\nstopped by %s at step *; checkpoint saved to %s (continue with --resume %s)\n",
             name, ckpt, ckpt);
    if (!wildmatch(pat, OUT(&p)))
        fail_msg("stdout does not match \"%s\":\n%s\nstderr:\n%s", pat, OUT(&p), ERR(&p));
    assert_int_equal(p.code, 128 + sig);
    long long stopped = atoll(strstr(OUT(&p), "\nstopped by ") + strlen("\nstopped by ") +
                              strlen(name) + strlen(" at step "));
    assert_true(stopped >= 1);
    gpt_model m;
    gpt_vocab v;
    nn_adamw opt;
    gpt_train_state ts;
    char err[512];
    if (!gpt_ckpt_load(ckpt, &m, &v, &opt, &ts, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(ts.step, stopped);
    assert_int_equal(ts.batch_size, 8); /* the global batch */
    nn_adamw_free(&opt);
    gpt_free(&m);
    vocab_free(&v);
    csv_row *rows;
    char csv[700];
    snprintf(csv, sizeof csv, "%s/loss.csv", out);
    int nr = parse_csv(csv, &rows);
    assert_int_equal(check_batch_steps(rows, nr), stopped);
    free(rows);
    proc_free(&p);
}

static void test_sigterm_to_one_rank_stops_all(void **state)
{
    (void)state;
    stop_by_signal(SIGTERM, "SIGTERM", true, "term_rank");
}

static void test_sigusr1_to_mpirun_stops_all(void **state)
{
    (void)state;
    stop_by_signal(SIGUSR1, "SIGUSR1", false, "usr1_mpirun");
}

/* kill -9 of rank 1 mid-run: mpirun ends rank 0 and exits non-zero in bounded time. */
static void test_killed_rank_ends_the_job(void **state)
{
    (void)state;
    argl a = {0};
    push(&a, "train", "--data", text_path, SMALL_MODEL, "--batch-size", "4", "--max-iters",
         "1000000", "--eval-interval", "1000000", "--out", tpath("killed"), NULL);
    proc p;
    start(&p, 2, &a);
    if (!proc_pump(&p, 0, "step 0: train loss "))
        fail_msg("gpt train ended before its first eval; stderr:\n%s", ERR(&p));
    pid_t victim = rank_pid(p.pid, 1), survivor = rank_pid(p.pid, 0);
    double t0 = now_s();
    p.deadline = t0 + 30; /* proc_pump fails the test past it */
    assert_int_equal(kill(victim, SIGKILL), 0);
    proc_finish(&p);
    double took = now_s() - t0;
    print_message("mpirun exited %d %.1f s after rank 1 was killed\n", p.code, took);
    assert_int_not_equal(p.code, 0);
    assert_true(took < 30);
    /* rank 0 is gone too (give the reaper a moment) */
    for (int i = 0; i < 50 && kill(survivor, 0) == 0; i++)
        usleep(100 * 1000);
    assert_true(kill(survivor, 0) != 0 && errno == ESRCH);
    proc_free(&p);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s GPT_BINARY FIXTURES_DIR MPIRUN\n", argv[0]);
        return 2;
    }
    mpirun_path = argv[3];
    if (!gpt_args(3, argv))
        return 2;
    gpt_binary = gpt_path;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_match_one_process),
        cmocka_unit_test(test_resume_with_other_rank_counts),
        cmocka_unit_test(test_sigterm_to_one_rank_stops_all),
        cmocka_unit_test(test_sigusr1_to_mpirun_stops_all),
        cmocka_unit_test(test_killed_rank_ends_the_job),
    };
    return cmocka_run_group_tests_name("gpt_mpi", tests, gpt_setup, gpt_teardown);
}
