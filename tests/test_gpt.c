/* test_gpt.c - the gpt example end to end: the `gpt` program run as a
 * subprocess (train, resume after a stop or a signal, sample, bench, bad
 * input), and the gpt_core library called directly where that is simpler
 * (checkpoint round trip, UTF-8 vocabulary).
 *
 * Usage: test_gpt GPT_BINARY FIXTURES_DIR. Nothing here reads data/: the
 * text is tests/fixtures/tiny_text.txt, other inputs are made in a temporary
 * directory that is removed at the end (TEST_GPT_KEEP=1 keeps it).
 * tiny_text.txt is the first 12 KB of tiny Shakespeare (Coriolanus, public
 * domain): 58 distinct characters, enough for the loss to fall in seconds. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH/FTW_PHYS, mkdtemp */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#include "ckpt.h"
#include "data.h"
#include "model.h"
#include "options.h"

extern char **environ;

static const char *gpt_path, *fixtures;
static char tmp[512];      /* this run's scratch directory */
static char text_path[600]; /* the committed text fixture */

/* ------------------------------------------------------------ small helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* tmp/name, in one of a few rotating static buffers */
static const char *tpath(const char *name)
{
    static char bufs[16][700];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, sizeof bufs[0], "%s/%s", tmp, name);
    return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, NUL-terminated (malloc'd); *len gets its size. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t got;
    while ((got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Matches s against pattern p, where '*' stands for any run of characters
 * and everything else is literal (error messages hold '[' and '?'). */
static bool wildmatch(const char *p, const char *s)
{
    if (!*p)
        return !*s;
    if (*p == '*') {
        for (;; s++) {
            if (wildmatch(p + 1, s))
                return true;
            if (!*s)
                return false;
        }
    }
    return *s && *p == *s && wildmatch(p + 1, s + 1);
}

/* Replaces @T (scratch dir), @F (fixtures dir) and @C (a trained checkpoint). */
static const char *shared_ckpt(void);
static char *subst(const char *s)
{
    size_t cap = strlen(s) + 1;
    for (const char *q = s; *q; q++)
        if (*q == '@')
            cap += 1024;
    char *out = malloc(cap), *o = out;
    for (; *s; s++) {
        const char *rep = NULL;
        if (s[0] == '@' && s[1] == 'T')
            rep = tmp;
        else if (s[0] == '@' && s[1] == 'F')
            rep = fixtures;
        else if (s[0] == '@' && s[1] == 'C')
            rep = shared_ckpt();
        if (rep) {
            o += sprintf(o, "%s", rep);
            s++;
        } else
            *o++ = *s;
    }
    *o = '\0';
    return out;
}

/* Number of code points in UTF-8 s[0..len) (which must be valid). */
static int64_t utf8_count(const char *s, size_t len)
{
    uint32_t *cp;
    int64_t n;
    char err[256];
    if (!utf8_decode((const unsigned char *)s, len, &cp, &n, err, sizeof err))
        fail_msg("not valid UTF-8: %s", err);
    free(cp);
    return n;
}

/* Every character of UTF-8 s[0..len) is in v. */
static void assert_in_vocab(const char *s, size_t len, const gpt_vocab *v)
{
    uint32_t *cp;
    int64_t n;
    char err[256];
    if (!utf8_decode((const unsigned char *)s, len, &cp, &n, err, sizeof err))
        fail_msg("sample is not valid UTF-8: %s", err);
    for (int64_t i = 0; i < n; i++)
        if (vocab_find(v, cp[i]) < 0) {
            free(cp);
            fail_msg("sample character %lld (U+%04X) is not in the vocabulary", (long long)i,
                     cp[i]);
        }
    free(cp);
}

/* ------------------------------------------------------------ subprocesses */

typedef struct {
    char *d;
    size_t n, cap;
} sbuf;

typedef struct {
    pid_t pid;
    int fd[2];    /* stdout, stderr read ends; -1 once at EOF */
    sbuf b[2];
    int code;     /* exit status, or -1 if killed by a signal */
    int sig;      /* the signal that killed it, or 0 */
    double deadline;
    char desc[600]; /* the command line, for messages */
} proc;

typedef struct {
    const char *v[80];
    int n;
} argl;

/* Appends NULL-terminated strings to a. */
static void push(argl *a, ...)
{
    va_list ap;
    va_start(ap, a);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
        assert_true(a->n < 78);
        a->v[a->n++] = s;
    }
    va_end(ap);
    a->v[a->n] = NULL;
}

#define TINY_MODEL "--n-embd", "32", "--n-head", "4", "--n-layer", "2", "--block-size", "16", \
                   "--batch-size", "16", "--threads", "1"

static void proc_start(proc *p, const argl *a)
{
    memset(p, 0, sizeof *p);
    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addclose(&fa, err[0]);
    posix_spawn_file_actions_addclose(&fa, out[1]);
    posix_spawn_file_actions_addclose(&fa, err[1]);
    char *argv[82];
    argv[0] = (char *)gpt_path;
    for (int i = 0; i < a->n; i++)
        argv[i + 1] = (char *)a->v[i];
    argv[a->n + 1] = NULL;
    int rc = posix_spawn(&p->pid, gpt_path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(err[1]);
    if (rc != 0)
        fail_msg("cannot run %s: %s", gpt_path, strerror(rc));
    p->fd[0] = out[0];
    p->fd[1] = err[0];
    for (int k = 0; k < 2; k++) {
        p->b[k].cap = 4096;
        p->b[k].d = calloc(1, p->b[k].cap);
    }
    p->deadline = now_s() + 400; /* generous: sanitizer builds on shared cores */
    snprintf(p->desc, sizeof p->desc, "gpt");
    for (int i = 0; i < a->n; i++) {
        size_t used = strlen(p->desc);
        snprintf(p->desc + used, sizeof p->desc - used, " %s", a->v[i]);
    }
}

/* Reads the child's output until stream k (0 stdout, 1 stderr) holds
 * `until` (true), or both streams end (false). NULL until reads to the end. */
static bool proc_pump(proc *p, int k, const char *until)
{
    for (;;) {
        if (until && strstr(p->b[k].d, until))
            return true;
        if (p->fd[0] < 0 && p->fd[1] < 0)
            return false;
        struct pollfd pf[2];
        int n = 0;
        for (int s = 0; s < 2; s++)
            if (p->fd[s] >= 0)
                pf[n++] = (struct pollfd){.fd = p->fd[s], .events = POLLIN};
        double left = p->deadline - now_s();
        if (left <= 0) {
            kill(p->pid, SIGKILL);
            print_error("%s did not finish in time; stdout so far:\n%s\nstderr:\n%s\n", p->desc,
                        p->b[0].d, p->b[1].d);
            fail();
        }
        int r = poll(pf, (nfds_t)n, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int s = pf[i].fd == p->fd[0] ? 0 : 1;
            sbuf *b = &p->b[s];
            if (b->cap - b->n < 4097) {
                b->cap *= 2;
                b->d = realloc(b->d, b->cap);
            }
            ssize_t got = read(p->fd[s], b->d + b->n, b->cap - b->n - 1);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                close(p->fd[s]);
                p->fd[s] = -1;
            } else {
                b->n += (size_t)got;
                b->d[b->n] = '\0';
            }
        }
    }
}

/* Reads to the end and reaps the child. A sanitizer report or a death by
 * signal fails the test whatever the caller expected. */
static void proc_finish(proc *p)
{
    proc_pump(p, 0, NULL);
    int st;
    while (waitpid(p->pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    p->code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    p->sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    /* print_error: fail_msg's buffer would cut a sanitizer report short */
    if (strstr(p->b[1].d, "Sanitizer") || strstr(p->b[1].d, "runtime error:")) {
        print_error("sanitizer report from %s:\n%s\n", p->desc, p->b[1].d);
        fail();
    }
    if (p->sig) {
        print_error("%s was killed by signal %d; stderr:\n%s\n", p->desc, p->sig, p->b[1].d);
        fail();
    }
}

static void proc_free(proc *p)
{
    free(p->b[0].d);
    free(p->b[1].d);
    p->b[0].d = p->b[1].d = NULL;
}

#define OUT(p) ((p)->b[0].d)
#define ERR(p) ((p)->b[1].d)

/* Runs gpt with a's arguments to completion. */
static void run(proc *p, const argl *a)
{
    proc_start(p, a);
    proc_finish(p);
}

/* Runs and requires exit status 0. */
static void run_ok(proc *p, const argl *a)
{
    run(p, a);
    if (p->code != 0) {
        print_error("%s exited %d; stderr:\n%s\n", p->desc, p->code, ERR(p));
        fail();
    }
}

/* ------------------------------------------------------------ gpt's outputs */

typedef struct {
    long long step;
    double train, val;
    char line[160]; /* the line as printed */
} eval_line;

/* The "step N: train loss X, val loss Y" lines of out (at most max). */
static int parse_evals(const char *out, eval_line *ev, int max)
{
    int n = 0;
    for (const char *s = out; s && *s;) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (strncmp(s, "step ", 5) == 0 && len < sizeof ev->line) {
            eval_line e;
            memcpy(e.line, s, len);
            e.line[len] = '\0';
            int used = 0;
            if (sscanf(e.line, "step %lld: train loss %lf, val loss %lf%n", &e.step, &e.train,
                       &e.val, &used) == 3 &&
                (size_t)used == len) {
                assert_true(n < max);
                ev[n++] = e;
            } else
                fail_msg("malformed eval line \"%s\"", e.line);
        }
        s = nl ? nl + 1 : NULL;
    }
    return n;
}

typedef struct {
    long long step;
    bool batch;            /* a batch_loss row, else an eval row */
    char batch_loss[32], train[32], val[32];
    double rss;            /* MiB, or -1 where the row has none */
} csv_row;

/* The loss CSV: the header once, then rows "step,batch_loss,,,t,rss" or
 * "step,,train,val,t,rss" (rss on eval rows and every 100th step). Returns
 * the number of rows. */
static int parse_csv(const char *path, csv_row **rows)
{
    char *text = read_file(path, NULL);
    const char *hdr = "step,batch_loss,train_loss,val_loss,elapsed_s,rss_mib\n";
    if (strncmp(text, hdr, strlen(hdr)) != 0)
        fail_msg("%s: bad header in\n%.200s", path, text);
    int n = 0, cap = 256;
    *rows = malloc((size_t)cap * sizeof **rows);
    char *save = NULL;
    for (char *line = strtok_r(text + strlen(hdr), "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (n == cap)
            *rows = realloc(*rows, (size_t)(cap *= 2) * sizeof **rows);
        csv_row *r = &(*rows)[n++];
        memset(r, 0, sizeof *r);
        /* split on commas keeping empty fields */
        char *f[7] = {0};
        int nf = 0;
        for (char *q = line; nf < 7;) {
            f[nf++] = q;
            char *c = strchr(q, ',');
            if (!c)
                break;
            *c = '\0';
            q = c + 1;
        }
        if (nf != 6)
            fail_msg("%s: row %d has %d fields", path, n, nf);
        char *end;
        r->step = strtoll(f[0], &end, 10);
        assert_true(*f[0] && !*end);
        r->batch = *f[1] != '\0';
        if (r->batch) {
            assert_true(!*f[2] && !*f[3]);
            snprintf(r->batch_loss, sizeof r->batch_loss, "%s", f[1]);
            assert_true(isfinite(strtod(f[1], NULL)));
        } else {
            assert_true(*f[2] && *f[3]);
            snprintf(r->train, sizeof r->train, "%s", f[2]);
            snprintf(r->val, sizeof r->val, "%s", f[3]);
        }
        assert_true(*f[4] && strtod(f[4], NULL) >= 0);
        r->rss = *f[5] ? strtod(f[5], NULL) : -1;
        assert_true(r->rss == -1 || r->rss > 0);
        /* eval rows and every 100th batch row carry the memory figure */
        assert_true((r->rss > 0) == (!r->batch || r->step % 100 == 0));
    }
    free(text);
    return n;
}

/* The batch rows must be exactly steps 0, 1, ..., and their count is returned. */
static int check_batch_steps(const csv_row *r, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (r[i].batch) {
            if (r[i].step != k)
                fail_msg("batch row %d is for step %lld, want %d", k, r[i].step, k);
            k++;
        }
    return k;
}

static const csv_row *find_row(const csv_row *r, int n, long long step, bool batch)
{
    for (int i = 0; i < n; i++)
        if (r[i].step == step && r[i].batch == batch)
            return &r[i];
    return NULL;
}

/* ------------------------------------------------------------ a trained checkpoint */

/* A small model trained once per run, for the sampling and bad-input tests. */
static const char *shared_ckpt(void)
{
    static char path[700];
    if (path[0])
        return path;
    argl a = {0};
    push(&a, "train", "--data", text_path, TINY_MODEL, "--lr", "3e-3", "--max-iters", "150",
         "--eval-interval", "150", "--eval-iters", "2", "--sample-tokens", "0", "--out",
         tpath("shared"), NULL);
    proc p;
    run_ok(&p, &a);
    proc_free(&p);
    snprintf(path, sizeof path, "%s/shared/ckpt.safetensors", tmp);
    assert_true(file_exists(path));
    return path;
}

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
    snprintf(want, sizeof want, "; vocabulary %d characters; %lld train / %lld val tokens; 1 threads;",
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

/* ------------------------------------------------------------ 4. bad input */

typedef struct {
    const char *argv[24]; /* gpt's arguments; @T, @F, @C are substituted */
    int code;             /* exit status */
    const char *err;      /* all of stderr; '*' matches any run of characters */
    const char *out;      /* stdout pattern, NULL for empty */
} bad_case;

#define DATA(file) "train", "--data", file, TINY_MODEL, "--max-iters", "2", "--out", "@T/bad_out"

static const bad_case bad_cases[] = {
    {{NULL}, 2, "usage: gpt <command> [flags]\n*Run \"gpt <command> --help\" for its flags.*", NULL},
    {{"frobnicate"}, 2,
     "gpt: unknown command \"frobnicate\" (commands: train, sample, bench; see gpt --help)\n", NULL},
    {{"train", "--bogus"}, 2, "gpt train: unknown flag --bogus (see gpt train --help)\n", NULL},
    {{"train", "--batch-size", "abc"}, 2,
     "gpt train: --batch-size: \"abc\" is not an integer (see gpt train --help)\n", NULL},
    {{"train", "--batch-size", "0"}, 2,
     "gpt train: --batch-size: 0 is out of range [1, 1048576] (see gpt train --help)\n", NULL},
    {{"train", "--batch-size", "-3"}, 2,
     "gpt train: --batch-size: -3 is out of range [1, 1048576] (see gpt train --help)\n", NULL},
    {{"train", "--batch-size"}, 2, "gpt train: --batch-size needs a value (see gpt train --help)\n",
     NULL},
    {{"train", "--lr", "-1"}, 2, "gpt train: --lr: -1 is out of range [0, 10] (see gpt train --help)\n",
     NULL},
    {{"train", "--lr", "nan"}, 2, "gpt train: --lr: \"nan\" is not a number (see gpt train --help)\n",
     NULL},
    {{"train", "--dropout", "1"}, 2,
     "gpt train: --dropout: 1 is out of range [0, 0.999999] (see gpt train --help)\n", NULL},
    {{"train", "--preset", "nope"}, 2,
     "gpt train: unknown preset \"nope\" (choose from tiny, small, medium, lecture) "
     "(see gpt train --help)\n", NULL},
    {{"train", "--n-embd", "30", "--n-head", "4"}, 2,
     "gpt train: n_embd 30 is not divisible by n_head 4\n", NULL},
    {{"train", "stray"}, 2, "gpt train: unexpected argument \"stray\" (see gpt train --help)\n", NULL},
    {{DATA("@T/missing.txt")}, 1,
     "gpt train: cannot open data file @T/missing.txt: No such file or directory\n", NULL},
    {{DATA("@T")}, 1, "gpt train: cannot read data file @T\n", NULL},
    {{DATA("@T/empty.txt")}, 1, "gpt train: data file @T/empty.txt: the text is empty\n", NULL},
    {{DATA("@T/aaaa.txt")}, 1,
     "gpt train: data file @T/aaaa.txt: the text has 1 distinct character; a language model "
     "needs at least 2\n", NULL},
    {{DATA("@T/small.txt")}, 2,
     "gpt train: the text is too small for block size 16: the validation split has 10 "
     "characters, needs at least 17 (use a smaller --block-size or a larger file)\n", NULL},
    {{DATA("@T/bad_utf8.txt")}, 1,
     "gpt train: data file @T/bad_utf8.txt: invalid UTF-8 at byte offset 6\n", NULL},
    {{DATA("@T/overlong.txt")}, 1,
     "gpt train: data file @T/overlong.txt: invalid UTF-8 at byte offset 2\n", NULL},
    {{DATA("@T/nul.txt")}, 1, "gpt train: data file @T/nul.txt: NUL byte at offset 4: not a text file\n",
     NULL},
    {{"sample"}, 2, "gpt sample: --checkpoint FILE is required (see gpt sample --help)\n", NULL},
    {{"sample", "--checkpoint", "@T/missing.safetensors"}, 1,
     "gpt sample: cannot open @T/missing.safetensors: No such file or directory\n", NULL},
    {{"sample", "--checkpoint", "@T/truncated.safetensors"}, 1,
     "gpt sample: @T/truncated.safetensors: tensor \"*\": data [*) is outside the * data bytes "
     "(truncated file?)\n", NULL},
    {{"sample", "--checkpoint", "@T/corrupt.safetensors"}, 1,
     "gpt sample: @T/corrupt.safetensors: bad header JSON: expected '{' at byte 0\n", NULL},
    {{"sample", "--checkpoint", "@F/optim.safetensors"}, 1,
     "gpt sample: checkpoint @F/optim.safetensors: not a GPT checkpoint of this program "
     "(format \"missing\", want \"agrad-gpt/1\")\n", NULL},
    {{"sample", "--checkpoint", "@C", "--temperature", "0"}, 2,
     "gpt sample: --temperature: 0 is out of range [1e-06, 1e+06] (see gpt sample --help)\n", NULL},
    {{"sample", "--checkpoint", "@C", "--prompt", "\xff"}, 2,
     "gpt sample: --prompt: invalid UTF-8 at byte offset 0\n", NULL},
    {{"train", "--data", "@F/tiny_text.txt", "--resume", "@C", "--n-embd", "64", "--out",
      "@T/bad_out"}, 1,
     "gpt train: cannot resume from @C: --n-embd 64 does not match the checkpoint's 32 "
     "(a checkpoint from another configuration)\n", NULL},
    {{"train", "--data", "@F/tiny_text.txt", "--resume", "@C", "--preset", "small", "--out",
      "@T/bad_out"}, 1,
     "gpt train: cannot resume from @C: --n-embd 64 does not match the checkpoint's 32 "
     "(a checkpoint from another configuration)\n", NULL},
    {{"train", "--data", "@T/other_vocab.txt", "--resume", "@C", "--out", "@T/bad_out"}, 1,
     "gpt train: cannot resume from @C: the data file's vocabulary differs from the "
     "checkpoint's\n", NULL},
    {{"train", "--data", "@F/tiny_text.txt", "--resume", "@T/corrupt.safetensors", "--out",
      "@T/bad_out"}, 1,
     "gpt train: @T/corrupt.safetensors: bad header JSON: expected '{' at byte 0\n", NULL},
    {{"bench", "--steps", "0"}, 2, "gpt bench: --steps: 0 is out of range [1, 1000000000] "
                                   "(see gpt bench --help)\n", NULL},
    {{"bench", "--max-iters", "5"}, 2, "gpt bench: unknown flag --max-iters (see gpt bench --help)\n",
     NULL},
    {{"sample", "--max-iters", "5"}, 2,
     "gpt sample: unknown flag --max-iters (see gpt sample --help)\n", NULL},
    /* help goes to stdout with status 0 */
    {{"--help"}, 0, "", "usage: gpt <command> [flags]\n*\n  train *\n  sample *\n  bench *"},
    {{"train", "--help"}, 0, "", "usage: gpt train [flags]\n*\nflags:\n*"},
    {{"sample", "--help"}, 0, "", "usage: gpt sample --checkpoint FILE [flags]\n*\nflags:\n*"},
    {{"bench", "--help"}, 0, "",
     "usage: gpt bench *\n  bench: preset=P threads=T ms/step=X tokens/s=Y peak_rss_mib=Z gflops=G\n*"},
};

/* The inputs the table names, made fresh in the scratch directory. */
static void make_bad_inputs(void)
{
    write_file(tpath("empty.txt"), "", 0);
    write_file(tpath("aaaa.txt"), "aaaa", 4);
    char small[101];
    for (int i = 0; i < 100; i++)
        small[i] = "ab"[i % 2];
    write_file(tpath("small.txt"), small, 100); /* 90 train, 10 val < 16 + 1 */
    write_file(tpath("bad_utf8.txt"), "hello \xff\xfe world", 14);
    write_file(tpath("overlong.txt"), "ab\xc0\xaf cd", 7);   /* overlong '/' */
    write_file(tpath("nul.txt"), "abcd\0efgh", 9);

    size_t len;
    char *ck = read_file(shared_ckpt(), &len);
    write_file(tpath("truncated.safetensors"), ck, len / 2);
    ck[8] ^= 0x55; /* the header's opening brace */
    ck[9] ^= 0x55;
    write_file(tpath("corrupt.safetensors"), ck, len);
    free(ck);

    char *text = read_file(text_path, &len);
    text = realloc(text, len + 8);
    memcpy(text + len, "\xe2\x82\xac", 3); /* one more character: a euro sign */
    write_file(tpath("other_vocab.txt"), text, len + 3);
    free(text);
}

static void test_bad_input(void **state)
{
    (void)state;
    make_bad_inputs();
    int n = (int)(sizeof bad_cases / sizeof *bad_cases);
    print_message("bad-input table: %d cases\n", n);
    for (int i = 0; i < n; i++) {
        const bad_case *bc = &bad_cases[i];
        argl a = {0};
        char *owned[24] = {0};
        for (int k = 0; bc->argv[k]; k++)
            a.v[a.n++] = owned[k] = subst(bc->argv[k]);
        a.v[a.n] = NULL;
        char desc[600] = "gpt";
        for (int k = 0; k < a.n; k++)
            snprintf(desc + strlen(desc), sizeof desc - strlen(desc), " %s", bc->argv[k]);
        proc p;
        run(&p, &a); /* fails on a crash or a sanitizer report */
        char *want_err = subst(bc->err);
        char *want_out = bc->out ? subst(bc->out) : NULL;
        if (p.code != bc->code)
            fail_msg("case %d (%s): exit %d, want %d; stderr:\n%s", i, desc, p.code, bc->code,
                     ERR(&p));
        if (!wildmatch(want_err, ERR(&p)))
            fail_msg("case %d (%s): stderr\n\"%s\"\nwant\n\"%s\"", i, desc, ERR(&p), want_err);
        if (want_out ? !wildmatch(want_out, OUT(&p)) : OUT(&p)[0] != '\0')
            fail_msg("case %d (%s): stdout\n\"%s\"\nwant \"%s\"", i, desc, OUT(&p),
                     want_out ? want_out : "");
        /* a failed train leaves no run behind */
        if (bc->code != 0)
            assert_false(file_exists(tpath("bad_out/ckpt.safetensors")));
        free(want_err);
        free(want_out);
        for (int k = 0; k < 24; k++)
            free(owned[k]);
        proc_free(&p);
    }
}

/* Each help lists every flag of its command, one line each, with its default. */
static void check_help_lists(const char *cmd, const char *const *names, int n)
{
    argl a = {0};
    push(&a, cmd, "--help", NULL);
    proc p;
    run_ok(&p, &a);
    for (int i = 0; i < n; i++) {
        char key[80];
        snprintf(key, sizeof key, "\n  --%s ", names[i]);
        const char *s = strstr(OUT(&p), key);
        if (!s)
            fail_msg("gpt %s --help does not list --%s", cmd, names[i]);
        const char *nl = strchr(s + 1, '\n');
        const char *d = strstr(s, "(default: ");
        if (!d || (nl && d > nl))
            fail_msg("gpt %s --help: --%s has no \"(default: \" on its line", cmd, names[i]);
    }
    /* and nothing else: n flag lines */
    int lines = 0;
    for (const char *s = OUT(&p); (s = strstr(s, "\n  --")); s++)
        lines++;
    assert_int_equal(lines, n);
    proc_free(&p);
}

static void test_help(void **state)
{
    (void)state;
    const char *cmds[] = {"train", "bench"};
    const int which[] = {OPT_TRAIN, OPT_BENCH};
    for (int c = 0; c < 2; c++) {
        gpt_options o;
        cli_opt t[40];
        int n = gpt_option_table(&o, which[c], t, 40);
        assert_true(n >= 10);
        const char *names[40];
        for (int i = 0; i < n; i++)
            names[i] = t[i].name;
        check_help_lists(cmds[c], names, n);
    }
    const char *sample_flags[] = {"checkpoint", "prompt", "tokens", "temperature", "top-k", "seed",
                                  "threads", "no-kv-cache"};
    check_help_lists("sample", sample_flags, 8);
    /* gpt.py's defaults, as the README promises */
    argl a = {0};
    push(&a, "train", "--help", NULL);
    proc p;
    run_ok(&p, &a);
    const char *defaults[] = {"--batch-size N         sequences per batch (default: 64)\n",
                              "--block-size N         context length (default: 256)\n",
                              "--n-embd N             embedding width (default: 384)\n",
                              "--n-layer N            transformer blocks (default: 6)\n",
                              "(default: 0.2)\n", "(default: 0.0003)\n",
                              "--max-iters N          training steps (default: 5000)\n"};
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
        if (!strstr(OUT(&p), defaults[i]))
            fail_msg("gpt train --help lacks \"%s\"", defaults[i]);
    proc_free(&p);
}

/* A resume that repeats the checkpoint's own architecture is fine (the
 * defaults' n_head of 6 must not be held against --n-embd 32). */
static void test_resume_with_matching_flags(void **state)
{
    (void)state;
    const char *src = shared_ckpt();
    const char *ckpt = tpath("again.safetensors");
    size_t len;
    char *b = read_file(src, &len);
    write_file(ckpt, b, len);
    free(b);
    argl a = {0};
    push(&a, "train", "--data", text_path, "--resume", ckpt, "--n-embd", "32", "--n-layer", "2",
         "--block-size", "16", "--threads", "1", "--max-iters", "155",
         "--sample-tokens", "0", "--out", tpath("again"), NULL);
    proc p;
    run_ok(&p, &a);
    char want[800];
    snprintf(want, sizeof want, "resuming from %s at step 150\n", ckpt);
    assert_non_null(strstr(OUT(&p), want));
    assert_non_null(strstr(OUT(&p), "\ntrained 155 steps in "));
    proc_free(&p);
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
        k += (size_t)utf8_encode(d.vocab.chars[d.tokens[i]], back + k);
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

/* ------------------------------------------------------------ 6. bench */

static void test_bench(void **state)
{
    (void)state;
    argl a = {0};
    push(&a, "bench", "--n-embd", "16", "--n-head", "2", "--n-layer", "1", "--block-size", "8",
         "--batch-size", "4", "--steps", "3", "--threads", "1", NULL);
    proc p;
    run_ok(&p, &a);
    double ms, tps, rss, gflops;
    int used = 0;
    if (sscanf(OUT(&p), "bench: preset=custom threads=1 ms/step=%lf tokens/s=%lf peak_rss_mib=%lf "
                        "gflops=%lf\n%n", &ms, &tps, &rss, &gflops, &used) != 4 ||
        (size_t)used != strlen(OUT(&p)))
        fail_msg("bench printed \"%s\"", OUT(&p));
    if (!(ms > 0 && tps > 0 && rss > 0 && gflops > 0))
        fail_msg("bench numbers not all positive: \"%s\"", OUT(&p));
    /* tokens/s is the batch's 32 tokens over the step time (ms has 2 decimals) */
    double implied = tps * ms / 1e3;
    if (fabs(implied - 32) > 32 * (0.006 / ms + 0.01))
        fail_msg("tokens/s %.0f and ms/step %.2f imply %.2f tokens per step, want 32", tps, ms,
                 implied);
    assert_true(wildmatch("bench: last loss *, arena peak * MiB, matmul *\n", ERR(&p)));
    proc_free(&p);

    /* a preset's name shows */
    argl b = {0};
    push(&b, "bench", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--threads", "1",
         "--batch-size", "2", NULL);
    run_ok(&p, &b);
    assert_true(wildmatch("bench: preset=tiny threads=1 ms/step=* tokens/s=* peak_rss_mib=* gflops=*\n",
                          OUT(&p)));
    proc_free(&p);
}

/* ------------------------------------------------------------ main */



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

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/test_gpt.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(straight.rows);
    if (getenv("TEST_GPT_KEEP")) {
        fprintf(stderr, "test_gpt: kept %s\n", tmp);
        return 0;
    }
    return nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s GPT_BINARY FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    gpt_path = argv[1];
    fixtures = argv[2];
    snprintf(text_path, sizeof text_path, "%s/tiny_text.txt", fixtures);
    if (access(gpt_path, X_OK) != 0 || access(text_path, R_OK) != 0) {
        fprintf(stderr, "test_gpt: need an executable %s and %s\n", gpt_path, text_path);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_end_to_end),
        cmocka_unit_test(test_resume_after_max_iters),
        cmocka_unit_test(test_resume_after_sigint),
        cmocka_unit_test(test_resume_after_sigterm),
        cmocka_unit_test(test_ckpt_round_trip),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_resume_with_matching_flags),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_bench),
        cmocka_unit_test(test_kv_cache_matches_recompute),
        cmocka_unit_test(test_memory_is_flat),
        cmocka_unit_test(test_same_seed_same_losses),
        cmocka_unit_test(test_non_finite_loss_stops_training),
    };
    return cmocka_run_group_tests_name("gpt", tests, setup, teardown);
}
