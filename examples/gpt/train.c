/* train.c - `gpt train`: gpt.py's training loop with evaluation, progress,
 * a loss log, checkpoints, resume, and a clean stop on SIGINT/SIGTERM or on
 * a non-finite loss or gradient.
 *
 * Under `mpirun -np N` it trains data-parallel (nn/dist.h): --batch-size is
 * each rank's; every rank draws the offsets of the whole global batch of
 * N x batch-size from the same generator and takes its own slice, so N ranks
 * see exactly the sequences one process at the global batch sees (N = 1 is
 * the single-process run, unchanged). Gradients are averaged across ranks
 * each step, the step's loss and stop flags riding along in the same
 * all-reduce, so every rank applies the same update and stops at the same
 * step. Evaluation is split the same way and reduced; rank 0 alone prints,
 * logs and writes checkpoints. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "commands.h"
#include "dist.h"
#include "generate.h"
#include "options.h"

static volatile sig_atomic_t stop_signal;

static uint64_t eval_seed(uint64_t seed, uint64_t step)
{
    ag_rng r = ag_rng_new(seed ^ (step * 0x9E3779B97F4A7C15ull));
    return ag_rng_next(&r);
}

static void on_signal(int sig) { stop_signal = sig; }

double gpt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Resident set size now, in MiB (Linux /proc; peak RSS elsewhere). */
static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    if (resident > 0)
        return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* mkdir -p */
static bool make_dirs(const char *path, char *err, size_t errlen)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                if (snprintf(err, errlen, "cannot create directory %s: %s", buf, strerror(e)) < 0)
                    err[0] = '\0';
                return false;
            }
            *p = c;
            if (!c)
                break;
        }
    }
    return true;
}

/* mkdir -p of the directory part of a file path (nothing for a bare name) */
static bool make_parent(const char *file, char *err, size_t errlen)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return true;
    *slash = '\0';
    return make_dirs(dir, err, errlen);
}

static void fmt_eta(double s, char *b, size_t n)
{
    if (s < 0 || !isfinite(s))
        snprintf(b, n, "?");
    else if (s < 60)
        snprintf(b, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(b, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(b, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* Mean loss over eval_iters batches of a split, no grad, dropout off (gpt.py's
 * estimate_loss): over rows [first, first + B) of each global batch of G. */
static double estimate(ag_ctx *c, const gpt_model *m, const gpt_data *d, int split, int64_t G,
                       int64_t first, int64_t B, int64_t iters, ag_rng *rng, ag_index *x,
                       ag_index *y)
{
    double total = 0;
    ag_set_grad_enabled(c, false);
    for (int64_t k = 0; k < iters && !stop_signal; k++) {
        gpt_batch_rows(d, split, G, first, B, m->cfg.block_size, rng, x, y);
        ag_ctx_reset(c);
        ag_tensor *loss = NULL;
        gpt_forward(c, m, x, y, false, &loss);
        total += loss ? loss->data[0] : NAN;
    }
    ag_set_grad_enabled(c, true);
    return total / (double)iters;
}

/* One training run: what its steps share. It starts zeroed, so the one
 * cleanup frees whatever the steps got to. */
typedef struct {
    gpt_options o;
    cli_opt table[40];
    int ntable;
    char ckpt_path[1024], log_path[1024], out_dir[1024];
    gpt_data data;
    gpt_model model;
    nn_adamw opt;
    gpt_train_state ts;
    FILE *log;
    ag_ctx *c;               /* the step's arena, and the dropout generator */
    ag_index *x, *y;         /* the batch, (B, T) */
    bool tty;                /* progress redrawn in place on stderr */
    double t0, train_time, last_print;
    int64_t tokens_done;
    float loss;              /* the last step's */
    int rc;                  /* the exit status */
    char err[1024];
    /* data parallel (nn/dist.h); one process: rank 0 of 1 */
    int rank, nranks;
    bool lead;               /* rank 0: prints, logs, saves */
    bool rank_local;         /* rc comes from this rank alone: end the others with it */
    int stop;                /* the signal every rank agreed to stop on, or 0 */
} train_run;

/* Whether to stop now: the signal seen here with one process, else the one
 * the ranks agreed on in the last all-reduce (a signal that arrives later is
 * in the next one), so all ranks leave the loop at the same step. */
static int stopping(const train_run *r) { return r->nranks == 1 ? stop_signal : r->stop; }

/* The stop flags of an all-reduce's extras: this rank's signal in, the agreed one out. */
static void stop_flags_out(float *f)
{
    f[0] = stop_signal == SIGINT, f[1] = stop_signal == SIGTERM, f[2] = stop_signal == SIGUSR1;
}

static void stop_flags_in(train_run *r, const float *f)
{
    if (!r->stop)
        r->stop = f[0] > 0 ? SIGINT : f[1] > 0 ? SIGTERM : f[2] > 0 ? SIGUSR1 : 0;
}

static const char *signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGUSR1";
}

/* "gpt train: <message>" on stderr, rc the exit status; returns false to stop
 * the run. With several ranks the message names the rank, and the other
 * ranks are ended with it (they may be waiting on this one). */
static bool fail(train_run *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(train_run *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gpt train: ");
    if (r->nranks > 1)
        fprintf(stderr, "rank %d: ", r->rank);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    r->rc = rc;
    r->rank_local = true;
    return false;
}

/* The same for a failure every rank meets alike (the flags, or a decision on
 * all-reduced values): rank 0 says it, and all of them end normally. */
static bool fail_all(train_run *r, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail_all(train_run *r, int rc, const char *fmt, ...)
{
    if (r->lead) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "gpt train: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
    r->rc = rc;
    return false;
}

static void usage(FILE *f, train_run *r)
{
    fprintf(f, "usage: gpt train [flags]\n\n"
               "Trains the lecture's character-level GPT on a text file: 90/10 train/val split,\n"
               "random batches, AdamW, dropout. Prints \"step N: train loss X, val loss Y\" every\n"
               "--eval-interval steps, saves a checkpoint there and at the end, and samples text.\n"
               "Ctrl-C saves a checkpoint and stops; --resume continues from one.\n"
               "Under mpirun -np N it trains data-parallel: --batch-size is per rank, the\n"
               "global batch N times it (see README, \"Training on several machines\").\n"
               "Presets: %s.\n\nflags:\n", gpt_preset_names());
    cli_print_help(f, r->table, r->ntable);
}

/* The flags, the preset, and what can be checked before any file is read. */
static bool parse_flags(train_run *r, int argc, char **argv)
{
    gpt_options *o = &r->o;
    bool help = false;
    r->ntable = gpt_option_table(o, OPT_TRAIN, r->table, 40);
    if (!cli_parse(r->table, r->ntable, argc, argv, &help, r->err, sizeof r->err) ||
        !gpt_apply_preset(o, r->table, r->ntable, r->err, sizeof r->err))
        return fail_all(r, 2, "%s (see gpt train --help)", r->err);
    if (help) {
        if (r->lead)
            usage(stdout, r);
        return false; /* rc 0 */
    }
    /* with --resume the checkpoint sets the architecture (gpt_options_resume
     * names a flag that disagrees), so the defaults' n_head must not be held
     * against a --n-embd that matches it */
    if (o->resume && o->init_from)
        return fail_all(r, 2, "give --resume (the whole run) or --init-from (its weights), not both");
    if (!o->resume && !o->init_from && o->n_embd % o->n_head != 0)
        return fail_all(r, 2, "n_embd %lld is not divisible by n_head %lld", (long long)o->n_embd,
                        (long long)o->n_head);
    if (o->threads > 0)
        ag_set_num_threads((int)o->threads);
    else if (nn_dist_local_size() > 1) /* the host's cores shared among its ranks */
        ag_set_num_threads(ag_get_num_threads() / nn_dist_local_size());
    return true;
}

/* The output directory (--out, else beside --resume's checkpoint, else
 * runs/<preset>), the checkpoint (--checkpoint, else the one resumed, else in
 * it) and the loss log (--log, else in it). */
static bool resolve_paths(train_run *r)
{
    const gpt_options *o = &r->o;
    if (o->out)
        snprintf(r->out_dir, sizeof r->out_dir, "%s", o->out);
    else if (o->resume && !o->checkpoint) {
        snprintf(r->out_dir, sizeof r->out_dir, "%s", o->resume);
        char *slash = strrchr(r->out_dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(r->out_dir, sizeof r->out_dir, ".");
    } else
        snprintf(r->out_dir, sizeof r->out_dir, "runs/%s", o->preset ? o->preset : "default");
    size_t n = sizeof r->ckpt_path;
    int len1 = o->checkpoint ? snprintf(r->ckpt_path, n, "%s", o->checkpoint)
               : o->resume   ? snprintf(r->ckpt_path, n, "%s", o->resume)
                             : snprintf(r->ckpt_path, n, "%s/ckpt.safetensors", r->out_dir);
    int len2 = o->log ? snprintf(r->log_path, sizeof r->log_path, "%s", o->log)
                      : snprintf(r->log_path, sizeof r->log_path, "%s/loss.csv", r->out_dir);
    if (len1 < 0 || len2 < 0 || (size_t)len1 >= n || (size_t)len2 >= sizeof r->log_path)
        return fail(r, 2, "output paths are longer than %zu bytes", n - 1);
    return true;
}

static bool load_data(train_run *r)
{
    const char *path = r->o.data;
    if (gpt_data_load(&r->data, path, r->err, sizeof r->err)) {
        gpt_data_warn(&r->data, path, "gpt train", stderr);
        return true;
    }
    fail(r, 1, "%s", r->err);
    if (access(path, F_OK) != 0 && strcmp(path, "data/tinyshakespeare.txt") == 0)
        fprintf(stderr, "gpt train: fetch it with tools/get_data.sh\n");
    return false;
}

/* Rank 0's copy of the checkpoint at path, parsed on every rank: only rank 0
 * writes checkpoints, so on several hosts only its host has the file. */
static nn_st *broadcast_checkpoint(train_run *r, const char *path)
{
    uint64_t len = UINT64_MAX;
    char *buf = NULL;
    if (r->lead) {
        FILE *f = fopen(path, "rb");
        if (!f)
            snprintf(r->err, sizeof r->err, "cannot open %s: %s", path, strerror(errno));
        else if (fseek(f, 0, SEEK_END) == 0) {
            long n = ftell(f);
            buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
            rewind(f);
            if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n)
                len = (uint64_t)n;
            else
                snprintf(r->err, sizeof r->err, "cannot read %s", path);
        }
        if (f)
            fclose(f);
    }
    nn_dist_broadcast(&len, sizeof len);
    if (len == UINT64_MAX) {
        free(buf);
        if (!r->lead)
            snprintf(r->err, sizeof r->err, "rank 0 could not read the checkpoint %s", path);
        return NULL;
    }
    if (!r->lead && !(buf = malloc((size_t)len + 1))) {
        snprintf(r->err, sizeof r->err, "out of memory for the checkpoint %s", path);
        return NULL;
    }
    nn_dist_broadcast(buf, (size_t)len);
    nn_st *st = nn_st_parse(buf, (size_t)len, r->err, sizeof r->err);
    free(buf);
    return st;
}

/* The model, the optimizer and the training state from --resume; the
 * checkpoint's settings into the options where no flag gives them again. */
static bool resume(train_run *r)
{
    const char *path = r->o.resume;
    gpt_vocab vocab = {0};
    if (r->nranks == 1) {
        if (!gpt_ckpt_load(path, &r->model, &vocab, &r->opt, &r->ts, r->err, sizeof r->err))
            return fail(r, 1, "%s", r->err);
    } else {
        nn_st *st = broadcast_checkpoint(r, path);
        if (!st)
            return fail(r, 1, "%s", r->err);
        bool ok = gpt_ckpt_load_st(st, path, &r->model, &vocab, &r->opt, &r->ts, r->err,
                                   sizeof r->err);
        nn_st_close(st);
        if (!ok)
            return fail(r, 1, "%s", r->err);
    }
    bool same = vocab_equal(&vocab, &r->data.vocab);
    vocab_free(&vocab);
    if (!same)
        return fail(r, 1, "cannot resume from %s: the data file's vocabulary differs from the "
                    "checkpoint's", path);
    if (!gpt_options_resume(&r->o, r->table, r->ntable, &r->model.cfg, &r->ts, r->err,
                            sizeof r->err))
        return fail(r, 1, "cannot resume from %s: %s", path, r->err);
    /* a checkpoint keeps the global batch: split it over however many ranks
     * resume, so the run goes on with the same batches */
    if (!cli_find(r->table, r->ntable, "batch-size")->set) {
        if (r->o.batch_size % r->nranks != 0)
            return fail_all(r, 2, "cannot resume from %s: its global batch of %lld does not "
                            "split over %d ranks; give --batch-size (per rank)", path,
                            (long long)r->o.batch_size, r->nranks);
        r->o.batch_size /= r->nranks;
    }
    return true;
}

/* A new model (or --init-from's weights) and optimizer from the options;
 * the generators seeded by --seed. */
static bool init(train_run *r)
{
    const gpt_options *o = &r->o;
    gpt_config cfg = gpt_options_config(o, r->data.vocab.size);
    if (o->init_from && !gpt_init_from(&r->model, &r->o, r->table, r->ntable, &r->data.vocab,
                                       r->err, sizeof r->err))
        return fail(r, 1, "%s", r->err);
    if (!o->init_from && !gpt_init(&r->model, &cfg, (uint64_t)o->seed, r->err, sizeof r->err))
        return fail(r, 2, "%s", r->err);
    nn_adamw_init(&r->opt, &r->model.params, (float)o->lr);
    r->ts.evaluated_at = -1;
    r->ts.batch_rng = ag_rng_new((uint64_t)o->seed * 3 + 1);
    r->ts.eval_rng = ag_rng_new((uint64_t)o->seed * 3 + 2);
    r->ts.dropout_rng = ag_rng_new((uint64_t)o->seed * 3 + 3);
    nn_dist_broadcast_params(&r->model.params); /* the same start everywhere, whatever the host */
    return true;
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* mpirun forwards SIGUSR1 to every rank at once, whereas on SIGINT or
     * SIGTERM it kills them a second later, too soon to save */
    sigaction(SIGUSR1, &sa, NULL);
}

/* Output directories, the loss log, the opening lines, the signal handlers,
 * the step's ctx and the batch. */
static bool start(train_run *r)
{
    const gpt_options *o = &r->o;
    r->opt.lr = (float)o->lr;
    r->opt.weight_decay = (float)o->weight_decay;
    if (!gpt_data_check_block(&r->data, r->model.cfg.block_size, r->err, sizeof r->err))
        return fail(r, 2, "%s", r->err);
    if (r->lead) {
        if (!make_dirs(r->out_dir, r->err, sizeof r->err) ||
            !make_parent(r->ckpt_path, r->err, sizeof r->err) ||
            !make_parent(r->log_path, r->err, sizeof r->err))
            return fail(r, 2, "%s", r->err);
        r->log = fopen(r->log_path, o->resume ? "a" : "w");
        if (!r->log)
            return fail(r, 1, "cannot write the loss log %s: %s", r->log_path, strerror(errno));
        if (!o->resume)
            fprintf(r->log, "step,batch_loss,train_loss,val_loss,elapsed_s,rss_mib\n");

        printf("%.6f M parameters; vocabulary %d characters; %lld train / %lld val tokens; %d "
               "thread%s; matmul %s\n", (double)nn_params_numel(&r->model.params) / 1e6,
               r->data.vocab.size, (long long)r->data.n_train,
               (long long)(r->data.n - r->data.n_train), ag_get_num_threads(),
               ag_get_num_threads() == 1 ? "" : "s", ag_matmul_backend());
        if (r->nranks > 1)
            printf("data parallel: %d ranks x batch %lld = global batch %lld\n", r->nranks,
                   (long long)o->batch_size, (long long)o->batch_size * r->nranks);
        if (o->resume)
            printf("resuming from %s at step %lld\n", o->resume, (long long)r->ts.step);
        fflush(stdout);
    }
    catch_signals();

    int64_t B = o->batch_size, T = r->model.cfg.block_size;
    r->c = ag_ctx_new();
    *ag_ctx_rng(r->c) = r->ts.dropout_rng;
    /* each rank its own dropout masks; rank 0's generator is the one saved */
    ag_ctx_rng(r->c)->seed ^= (uint64_t)r->rank * 0x9E3779B97F4A7C15ull;
    r->x = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
    r->y = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
    r->tty = isatty(fileno(stderr));
    r->t0 = gpt_now();
    r->loss = NAN;
    return true;
}

/* The checkpoint with the state and settings as they are now (rank 0's call;
 * it keeps the global batch, which a resume splits over its ranks). */
static bool save(train_run *r)
{
    r->ts.dropout_rng = *ag_ctx_rng(r->c);
    gpt_train_state_settings(&r->ts, &r->o);
    r->ts.batch_size = r->o.batch_size * r->nranks;
    return gpt_ckpt_save(r->ckpt_path, &r->model, &r->data.vocab, &r->opt, &r->ts, r->err,
                         sizeof r->err);
}

/* gpt.py's estimate_loss before step iter: printed, logged, and a
 * checkpoint saved. False when a signal cut it short. */
static bool evaluate(train_run *r, int64_t iter)
{
    int64_t B = r->o.batch_size, G = B * r->nranks, iters = r->o.eval_iters;
    /* eval batches depend only on (seed, step), so an estimate is the same
     * whether the run was resumed or how often it evaluated; each rank
     * takes its slice of every global batch */
    ag_rng er = ag_rng_new(eval_seed(r->ts.eval_rng.seed, (uint64_t)iter));
    double tr = estimate(r->c, &r->model, &r->data, 0, G, r->rank * B, B, iters, &er, r->x, r->y);
    double va = estimate(r->c, &r->model, &r->data, 1, G, r->rank * B, B, iters, &er, r->x, r->y);
    if (r->nranks > 1) {
        float f[3];
        stop_flags_out(f);
        double red[5] = {tr, va, f[0], f[1], f[2]};
        nn_dist_allreduce_doubles(red, 5, NN_DIST_SUM);
        tr = red[0] / r->nranks, va = red[1] / r->nranks;
        f[0] = (float)red[2], f[1] = (float)red[3], f[2] = (float)red[4];
        stop_flags_in(r, f);
    }
    if (stopping(r))
        return false;
    /* the ranks must still hold the same weights */
    if (!nn_dist_check_params(&r->model.params, r->err, sizeof r->err))
        return fail_all(r, 1, "at step %lld %s; stopping", (long long)iter, r->err);
    r->ts.evaluated_at = iter;
    r->ts.step = iter;
    if (!r->lead)
        return true;
    if (r->tty)
        fprintf(stderr, "\r\033[K");
    printf("step %lld: train loss %.4f, val loss %.4f\n", (long long)iter, tr, va);
    fflush(stdout);
    fprintf(r->log, "%lld,,%.6f,%.6f,%.3f,%.1f\n", (long long)iter, tr, va, gpt_now() - r->t0,
            rss_mib());
    fflush(r->log);
    if (!save(r))
        fprintf(stderr, "gpt train: warning: %s (training goes on)\n", r->err);
    return true;
}

/* Step iter: one AdamW update on a random batch (this rank's slice of the
 * global one, the gradients averaged over the ranks), logged. False (rc 1)
 * when the loss or a gradient is not finite, before the update. */
static bool step(train_run *r, int64_t iter)
{
    const gpt_options *o = &r->o;
    int64_t B = o->batch_size, T = r->model.cfg.block_size;
    double t = gpt_now();
    gpt_batch_rows(&r->data, 0, B * r->nranks, r->rank * B, B, T, &r->ts.batch_rng, r->x, r->y);
    ag_ctx_reset(r->c);
    ag_tensor *loss = NULL;
    gpt_forward(r->c, &r->model, r->x, r->y, true, &loss);
    float mine = loss ? loss->data[0] : NAN;
    nn_params_zero_grad(&r->model.params);
    if (r->nranks > 1) {
        /* every rank takes part in the all-reduce whatever its loss, so that
         * all of them see the same sum and decide alike */
        if (loss && isfinite(mine))
            ag_backward(r->c, loss);
        float extra[4] = {mine};
        stop_flags_out(extra + 1);
        nn_dist_average_grads(&r->model.params, extra, 4);
        stop_flags_in(r, extra + 1);
        r->loss = extra[0] / (float)r->nranks;
    } else
        r->loss = mine;
    if (!isfinite(r->loss))
        return fail_all(r, 1, "the loss became %g at step %lld; stopping. The last good checkpoint "
                        "is %s", (double)r->loss, (long long)iter, r->ckpt_path);
    if (r->nranks == 1)
        ag_backward(r->c, loss);
    const char *bad = NULL;
    if (!nn_grads_finite(&r->model.params, &bad))
        return fail_all(r, 1, "the gradient of %s became non-finite at step %lld; stopping. The "
                        "last good checkpoint is %s", bad, (long long)iter, r->ckpt_path);
    if (o->grad_clip > 0)
        nn_clip_grad_norm(&r->model.params, (float)o->grad_clip);
    nn_adamw_step(&r->opt);
    r->ts.step = iter + 1;
    r->train_time += gpt_now() - t;
    r->tokens_done += B * r->nranks * T;
    if (!r->lead)
        return true;
    /* memory every 100 steps: the log shows it stays flat */
    if (iter % 100 == 0)
        fprintf(r->log, "%lld,%.6f,,,%.3f,%.1f\n", (long long)iter, (double)r->loss,
                gpt_now() - r->t0, rss_mib());
    else
        fprintf(r->log, "%lld,%.6f,,,%.3f,\n", (long long)iter, (double)r->loss, gpt_now() - r->t0);
    return true;
}

/* After step iter: on a terminal one line redrawn at most every 0.1 s, else
 * a line every --log-interval steps. */
static void progress(train_run *r, int64_t iter)
{
    const gpt_options *o = &r->o;
    if (!r->lead)
        return;
    double now = gpt_now();
    double tps = r->tokens_done / (r->train_time > 0 ? r->train_time : 1e-9);
    char eta[32];
    fmt_eta((double)(o->max_iters - iter - 1) * o->batch_size * r->nranks *
                r->model.cfg.block_size / tps, eta, sizeof eta);
    if (r->tty && now - r->last_print > 0.1) {
        fprintf(stderr, "\r\033[Kstep %lld/%lld | loss %.4f | %.0f tok/s | ETA %s",
                (long long)iter + 1, (long long)o->max_iters, (double)r->loss, tps, eta);
        r->last_print = now;
    } else if (!r->tty && o->log_interval > 0 && (iter + 1) % o->log_interval == 0)
        fprintf(stderr, "step %lld/%lld: loss %.4f, %.0f tok/s, ETA %s\n", (long long)iter + 1,
                (long long)o->max_iters, (double)r->loss, tps, eta);
}

/* Steps from the state's to --max-iters, evaluating every --eval-interval
 * steps and before the last, until done, a signal, or a non-finite value. */
static bool train_loop(train_run *r)
{
    const gpt_options *o = &r->o;
    for (int64_t iter = r->ts.step; iter < o->max_iters && !stopping(r); iter++) {
        bool eval_due = iter % o->eval_interval == 0 || iter == o->max_iters - 1;
        if (eval_due && r->ts.evaluated_at != iter && !evaluate(r, iter))
            break;
        if (!step(r, iter))
            break;
        progress(r, iter);
    }
    if (r->tty && r->lead)
        fprintf(stderr, "\r\033[K");
    if (r->log)
        fclose(r->log);
    r->log = NULL;
    return r->rc == 0;
}

/* The last checkpoint and the line that says how the run ended. */
static bool finish(train_run *r)
{
    /* the last steps since the last evaluation's check */
    if (!nn_dist_check_params(&r->model.params, r->err, sizeof r->err))
        return fail_all(r, 1, "at step %lld %s", (long long)r->ts.step, r->err);
    if (r->lead && !save(r))
        return fail(r, 1, "%s", r->err);
    int sig = stopping(r);
    if (sig) {
        if (r->lead)
            printf("stopped by %s at step %lld; checkpoint saved to %s (continue with --resume "
                   "%s)\n", signal_name(sig), (long long)r->ts.step, r->ckpt_path, r->ckpt_path);
        r->rc = 128 + sig;
        return false;
    }
    if (!r->lead)
        return true;
    printf("trained %lld step%s in %.1f s (%.0f tokens/s); checkpoint %s, loss log %s\n",
           (long long)r->ts.step, r->ts.step == 1 ? "" : "s", gpt_now() - r->t0,
           r->tokens_done / (r->train_time > 0 ? r->train_time : 1), r->ckpt_path, r->log_path);
    nn_dist_stats st = nn_dist_get_stats();
    if (r->nranks > 1 && st.calls > 0)
        printf("all-reduce: %.2f ms/step (%.2f ms in MPI_Allreduce), %.1f%% of the step time; "
               "%.1f MB per step in %lld-MiB buckets; parameters bit-identical on %d ranks\n",
               1e3 * st.total_s / (double)st.calls, 1e3 * st.reduce_s / (double)st.calls,
               100 * st.total_s / (r->train_time > 0 ? r->train_time : 1),
               (double)st.bytes / (double)st.calls / 1e6,
               (long long)(nn_dist_bucket_bytes() >> 20), r->nranks);
    return true;
}

/* --sample-tokens characters of text, as gpt.py ends. */
static void sample(train_run *r)
{
    if (r->o.sample_tokens <= 0 || !r->lead)
        return;
    printf("--- sample ---\n");
    gpt_sample_opts so = {.max_new_tokens = r->o.sample_tokens, .temperature = 1.0f, .top_k = 0,
                          .rng = ag_rng_new((uint64_t)r->o.seed)};
    int32_t first = 0; /* gpt.py starts from token 0 */
    gpt_generate(&r->model, &r->data.vocab, &first, 1, &so, stdout);
    printf("\n");
}

static void cleanup(train_run *r)
{
    if (r->log)
        fclose(r->log);
    ag_index_free(r->x);
    ag_index_free(r->y);
    ag_ctx_free(r->c);
    nn_adamw_free(&r->opt);
    gpt_free(&r->model);
    gpt_data_free(&r->data);
}

int cmd_train(int argc, char **argv)
{
    train_run r;
    memset(&r, 0, sizeof r);
    if (!nn_dist_init(NULL, NULL, r.err, sizeof r.err)) {
        fprintf(stderr, "gpt train: %s\n", r.err);
        return 1;
    }
    r.rank = nn_dist_rank(), r.nranks = nn_dist_size(), r.lead = r.rank == 0;
    bool ok = parse_flags(&r, argc, argv) && resolve_paths(&r) && load_data(&r) &&
              (r.o.resume ? resume(&r) : init(&r)) && start(&r) && train_loop(&r) && finish(&r);
    if (ok)
        sample(&r);
    cleanup(&r);
    /* a failure of this rank alone: the others may be waiting on it */
    if (r.rc != 0 && r.rank_local && r.nranks > 1)
        nn_dist_abort(r.rc);
    nn_dist_finalize();
    return r.rc;
}
