/* gpt_util.h - what the gpt suites (test_gpt_*.c) share: the `gpt` program
 * run as a subprocess, parsers for its eval lines and loss CSV, a small model
 * trained once per run (shared_ckpt), and the run's scratch directory.
 *
 * Each suite is run as: test_gpt_X GPT_BINARY FIXTURES_DIR. Nothing here reads
 * data/: the text is tests/fixtures/tiny_text.txt, other inputs are made in a
 * temporary directory that is removed at the end (TEST_GPT_KEEP=1 keeps it).
 * tiny_text.txt is the first 12 KB of tiny Shakespeare (Coriolanus, public
 * domain): 58 distinct characters, enough for the loss to fall in seconds. */
#ifndef GPT_UTIL_H
#define GPT_UTIL_H

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
#include <sys/resource.h>
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

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* tmp/name, in one of a few rotating static buffers */
static inline const char *tpath(const char *name)
{
    static char bufs[16][700];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, sizeof bufs[0], "%s/%s", tmp, name);
    return b;
}

static inline void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, NUL-terminated (malloc'd); *len gets its size. */
static inline char *read_file(const char *path, size_t *len)
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

static inline bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Matches s against pattern p, where '*' stands for any run of characters
 * and everything else is literal (error messages hold '[' and '?'). */
static inline bool wildmatch(const char *p, const char *s)
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
static inline char *subst(const char *s)
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
static inline int64_t utf8_count(const char *s, size_t len)
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
static inline void assert_in_vocab(const char *s, size_t len, const gpt_vocab *v)
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
static inline void push(argl *a, ...)
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

/* argv for gpt with a's arguments (at most 80). A cross build's tests run
 * under meson's exe_wrapper (qemu-user): gpt must too, so argv starts with
 * MESON_EXE_WRAPPER's words (split at spaces, into wrap) when it is set. */
static inline void gpt_argv(char **argv, char *wrap, size_t wrap_size, const argl *a)
{
    int k = 0;
    const char *w = getenv("MESON_EXE_WRAPPER");
    snprintf(wrap, wrap_size, "%s", w ? w : "");
    for (char *t = strtok(wrap, " "); t && k < 6; t = strtok(NULL, " "))
        argv[k++] = t;
    argv[k++] = (char *)gpt_path;
    for (int i = 0; i < a->n; i++)
        argv[k++] = (char *)a->v[i];
    argv[k] = NULL;
}

static inline void proc_start(proc *p, const argl *a)
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
    char *argv[90], wrap[256];
    gpt_argv(argv, wrap, sizeof wrap, a);
    int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, argv, environ);
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

/* proc_start with the child's stdout sent to the file stdout_to (NULL: the
 * pipe, as proc_start) and, when resource >= 0, setrlimit(resource, limit)
 * in the child before it runs gpt (fork and exec, which posix_spawn cannot). */
static inline void proc_start_with(proc *p, const argl *a, const char *stdout_to, int resource,
                                   rlim_t limit)
{
    memset(p, 0, sizeof *p);
    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    char *argv[90], wrap[256];
    gpt_argv(argv, wrap, sizeof wrap, a);
    fflush(NULL);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        int o = stdout_to ? open(stdout_to, O_WRONLY | O_CREAT | O_TRUNC, 0644) : out[1];
        struct rlimit rl = {limit, limit};
        if (o < 0 || dup2(o, 1) < 0 || dup2(err[1], 2) < 0 ||
            (resource >= 0 && setrlimit(resource, &rl) != 0))
            _exit(126);
        close(out[0]);
        close(err[0]);
        execve(argv[0], argv, environ);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    p->fd[0] = out[0];
    p->fd[1] = err[0];
    for (int k = 0; k < 2; k++) {
        p->b[k].cap = 4096;
        p->b[k].d = calloc(1, p->b[k].cap);
    }
    p->deadline = now_s() + 400;
    snprintf(p->desc, sizeof p->desc, "gpt");
    for (int i = 0; i < a->n; i++) {
        size_t used = strlen(p->desc);
        snprintf(p->desc + used, sizeof p->desc - used, " %s", a->v[i]);
    }
}

/* Reads the child's output until stream k (0 stdout, 1 stderr) holds
 * `until` (true), or both streams end (false). NULL until reads to the end. */
static inline bool proc_pump(proc *p, int k, const char *until)
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
static inline void proc_finish(proc *p)
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

static inline void proc_free(proc *p)
{
    free(p->b[0].d);
    free(p->b[1].d);
    p->b[0].d = p->b[1].d = NULL;
}

#define OUT(p) ((p)->b[0].d)
#define ERR(p) ((p)->b[1].d)

/* Runs gpt with a's arguments to completion. */
static inline void run(proc *p, const argl *a)
{
    proc_start(p, a);
    proc_finish(p);
}

/* Runs and requires exit status 0. */
static inline void run_ok(proc *p, const argl *a)
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
static inline int parse_evals(const char *out, eval_line *ev, int max)
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
    double elapsed;        /* elapsed_s */
} csv_row;

/* The loss CSV: the header once, then rows "step,batch_loss,,,t,rss" or
 * "step,,train,val,t,rss" (rss on eval rows and every 100th step). Returns
 * the number of rows. */
static inline int parse_csv(const char *path, csv_row **rows)
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
        r->elapsed = strtod(f[4], NULL);
        r->rss = *f[5] ? strtod(f[5], NULL) : -1;
        assert_true(r->rss == -1 || r->rss > 0);
        /* eval rows and every 100th batch row carry the memory figure */
        assert_true((r->rss > 0) == (!r->batch || r->step % 100 == 0));
    }
    free(text);
    return n;
}

/* The batch rows must be exactly steps 0, 1, ..., and their count is returned. */
static inline int check_batch_steps(const csv_row *r, int n)
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

static inline const csv_row *find_row(const csv_row *r, int n, long long step, bool batch)
{
    for (int i = 0; i < n; i++)
        if (r[i].step == step && r[i].batch == batch)
            return &r[i];
    return NULL;
}

/* ------------------------------------------------------------ a trained checkpoint */

/* A small model trained once per run, for the sampling and bad-input tests. */
static inline const char *shared_ckpt(void)
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

/* ------------------------------------------------------------ the run's scratch directory */

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* CMocka group setup: a fresh scratch directory for this run. */
static inline int gpt_setup(void **state)
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

/* CMocka group teardown: the scratch directory goes (TEST_GPT_KEEP=1 keeps it). */
static inline int gpt_teardown(void **state)
{
    (void)state;
    if (getenv("TEST_GPT_KEEP")) {
        fprintf(stderr, "test_gpt: kept %s\n", tmp);
        return 0;
    }
    return nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Reads GPT_BINARY FIXTURES_DIR from the command line; false (after a
 * message) when they are missing or unusable. */
static inline bool gpt_args(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s GPT_BINARY FIXTURES_DIR\n", argv[0]);
        return false;
    }
    gpt_path = argv[1];
    fixtures = argv[2];
    snprintf(text_path, sizeof text_path, "%s/tiny_text.txt", fixtures);
    if (access(gpt_path, X_OK) != 0 || access(text_path, R_OK) != 0) {
        fprintf(stderr, "%s: need an executable %s and %s\n", argv[0], gpt_path, text_path);
        return false;
    }
    return true;
}

#endif
