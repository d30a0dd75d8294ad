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
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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

/* The directories a run created, removed again when it fails before it
 * saved anything (deepest first; rmdir leaves one that is not empty). */
typedef struct {
    char path[8][1024];
    int n;
} made_dirs;

/* mkdir -p, recording in made what it created */
static bool make_dirs(const char *path, made_dirs *made, char *err, size_t errlen)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) == 0) {
                if (made->n < 8)
                    snprintf(made->path[made->n++], sizeof made->path[0], "%s", buf);
            } else if (errno != EEXIST) {
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
static bool make_parent(const char *file, made_dirs *made, char *err, size_t errlen)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return true;
    *slash = '\0';
    return make_dirs(dir, made, err, errlen);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A regular file with something in it (a run's checkpoint or log). */
static bool has_content(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* "1.5 GiB" */
static const char *fmt_bytes(double b, char *buf, size_t n)
{
    const char *unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (b >= 1024 && u < 6)
        b /= 1024, u++;
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
    return buf;
}

/* Memory this process can still take, in bytes: the kernel's MemAvailable
 * (free and reclaimable), within RLIMIT_AS less what is mapped already. */
static double available_memory(void)
{
    double avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) {
                avail = (double)kb * 1024;
                break;
            }
        fclose(f);
    }
#ifdef _SC_AVPHYS_PAGES
    if (avail < 0)
        avail = (double)sysconf(_SC_AVPHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
#endif
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        double mapped = 0;
        FILE *s = fopen("/proc/self/statm", "r");
        long pages = 0;
        if (s) {
            if (fscanf(s, "%ld", &pages) == 1)
                mapped = (double)pages * (double)sysconf(_SC_PAGESIZE);
            fclose(s);
        }
        double left = (double)rl.rlim_cur - mapped;
        left = left > 0 ? left : 0;
        avail = avail < 0 || left < avail ? left : avail;
    }
    return avail;
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

/* One training run: what its steps share. It starts zeroed, so the one
 * cleanup frees whatever the steps got to. */
typedef struct {
    gpt_options o;
    cli_opt table[40];
    int ntable;
    char ckpt_path[1024], log_path[1024], out_dir[1024];
    made_dirs made;          /* what this run created, undone if it fails before saving */
    int lock_fd;             /* <out>/.lock, held (flock) while the run lasts; -1 if none */
    bool saved;              /* a checkpoint was written */
    bool log_created;        /* the loss log did not exist before */
    gpt_data data;
    gpt_model model;
    nn_adamw opt;
    gpt_train_state ts;
    FILE *log;
    ag_ctx *c;               /* the step's arena, and the dropout generator */
    ag_index *x, *y;         /* the batch, (B, T) */
    bool tty;                /* progress redrawn in place on stderr */
    double t0, train_time, last_print;
    double elapsed0;         /* the runs' before this one (the checkpoint's), for the log */
    int64_t start_step;      /* the step this invocation started at */
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

/* An evaluation that takes more than 2 s says how far it is: on a terminal a
 * counter redrawn in place, else a line every 10 s. */
static void eval_progress(train_run *r, int64_t step, int64_t done, int64_t total, double t_start,
                          double *last)
{
    double now = gpt_now();
    if (!r->lead || now - t_start < 2)
        return;
    if (r->tty && now - *last >= 0.1)
        fprintf(stderr, "\r\033[Kevaluating at step %lld: %lld/%lld batches", (long long)step,
                (long long)done, (long long)total);
    else if (!r->tty && (*last < t_start || now - *last >= 10))
        fprintf(stderr, "evaluating at step %lld: %lld/%lld batches\n", (long long)step,
                (long long)done, (long long)total);
    else
        return;
    *last = now;
}

/* Mean loss over eval_iters batches of a split, no grad, dropout off (gpt.py's
 * estimate_loss): over this rank's rows of each global batch. done: the
 * batches of this evaluation before this split, for the progress. */
static double estimate(train_run *r, int64_t step, int split, ag_rng *rng, int64_t done,
                       double t_start, double *last)
{
    int64_t B = r->o.batch_size, G = B * r->nranks, iters = r->o.eval_iters;
    double total = 0;
    ag_set_grad_enabled(r->c, false);
    for (int64_t k = 0; k < iters && !stop_signal; k++) {
        gpt_batch_rows(&r->data, split, G, r->rank * B, B, r->model.cfg.block_size, rng, r->x,
                       r->y);
        ag_ctx_reset(r->c);
        ag_tensor *loss = NULL;
        gpt_forward(r->c, &r->model, r->x, r->y, false, &loss);
        total += loss ? loss->data[0] : NAN;
        eval_progress(r, step, done + k + 1, 2 * iters, t_start, last);
    }
    ag_set_grad_enabled(r->c, true);
    return total / (double)iters;
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
    ag_precision prec;
    if (!gpt_options_precision(o, AG_FP32, &prec, r->err, sizeof r->err))
        return fail_all(r, 2, "%s (see gpt train --help)", r->err);
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
 * runs/<preset>), the checkpoint (--checkpoint, else <out>/ckpt.safetensors:
 * the one resumed only when that is its name there) and the loss log (--log,
 * else <out>/loss.csv), as --help says. */
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

/* Refuses a configuration whose training would not fit in memory, before it
 * allocates: the estimate (gpt_train_memory) against what this host can give
 * each of its ranks. held: bytes of it already allocated (a resumed model and
 * its optimizer state, weights read for --init-from). */
static bool check_memory(train_run *r, const gpt_config *cfg, double held)
{
    gpt_memory m = gpt_train_memory(cfg, r->o.batch_size);
    double avail = available_memory();
    int local = nn_dist_local_size() > 1 ? nn_dist_local_size() : 1;
    if (avail < 0 || m.total - held <= avail / local)
        return true;
    char need[32], par[32], opt[32], act[32], have[32];
    return fail(r, 1, "this configuration needs about %s of memory (parameters and gradients %s, "
                "AdamW state %s, one step's activations at batch %lld x block %lld %s), more than "
                "the %s available%s; %s", fmt_bytes(m.total, need, sizeof need),
                fmt_bytes(m.params, par, sizeof par), fmt_bytes(m.optimizer, opt, sizeof opt),
                (long long)r->o.batch_size, (long long)cfg->block_size,
                fmt_bytes(m.activations, act, sizeof act), fmt_bytes(avail / local, have, sizeof have),
                local > 1 ? " to each of this host's ranks" : "",
                r->o.resume ? "lower --batch-size (the checkpoint fixes the model's sizes)"
                            : "lower --batch-size, --block-size, --n-embd or --n-layer");
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
    r->elapsed0 = r->ts.elapsed_s;
    /* the checkpoint's precision unless --precision says otherwise (checked in parse_flags) */
    gpt_options_precision(&r->o, r->model.precision, &r->model.precision, r->err, sizeof r->err);
    return check_memory(r, &r->model.cfg, 12.0 * (double)nn_params_numel(&r->model.params));
}

/* A new model (or --init-from's weights) and optimizer from the options;
 * the generators seeded by --seed. */
static bool init(train_run *r)
{
    const gpt_options *o = &r->o;
    gpt_config cfg = gpt_options_config(o, r->data.vocab.size);
    if (o->init_from) {
        if (!gpt_init_from(&r->model, &r->o, r->table, r->ntable, &r->data.vocab, r->err,
                           sizeof r->err))
            return fail(r, 1, "%s", r->err);
        if (!check_memory(r, &r->model.cfg, 4.0 * (double)nn_params_numel(&r->model.params)))
            return false;
    } else {
        if (!gpt_config_check(&cfg, r->err, sizeof r->err))
            return fail(r, 2, "%s", r->err);
        if (!check_memory(r, &cfg, 0))
            return false;
        if (!gpt_init(&r->model, &cfg, (uint64_t)o->seed, r->err, sizeof r->err))
            return fail(r, 2, "%s", r->err);
    }
    gpt_options_precision(o, AG_FP32, &r->model.precision, r->err, sizeof r->err);
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

/* stdout took what was printed (a full disk or a closed pipe is an error). */
static bool stdout_ok(train_run *r)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return true;
    return fail(r, 1, "cannot write to standard output: %s", strerror(errno ? errno : EIO));
}

/* An exclusive lock on the run directory, <out>/.lock, held until the
 * process ends (flock: the kernel lets go of it however the run ends). The
 * file holds the holder's pid, so a second run names it. */
static bool lock_dir(train_run *r)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/.lock", r->out_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(r, 1, "cannot create the lock file %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = read(fd, pid, sizeof pid - 1);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e != EWOULDBLOCK)
            return fail(r, 1, "cannot lock %s: %s", path, strerror(e));
        return fail(r, 1, "another run (pid %s) is training in %s; wait for it to end, or give "
                    "another --out", *pid ? pid : "unknown", r->out_dir);
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)len) != len) {
        int e = errno;
        close(fd);
        return fail(r, 1, "cannot write the lock file %s: %s", path, strerror(e));
    }
    r->lock_fd = fd;
    return true;
}

/* What this run would replace: a new run does not write over another's
 * checkpoint or log unless --force says so; a resumed one only over its own
 * checkpoint. */
static bool check_overwrite(train_run *r)
{
    const gpt_options *o = &r->o;
    if (o->force)
        return true;
    if (!o->resume) {
        const char *there = has_content(r->ckpt_path) ? r->ckpt_path
                            : has_content(r->log_path) ? r->log_path
                                                       : NULL;
        if (there)
            return fail(r, 1, "%s exists (a run was trained here); continue it with --resume %s, "
                        "start over with --force (replaces its checkpoint and loss log), or give "
                        "another --out", there, r->ckpt_path);
    } else if (has_content(r->ckpt_path) && !same_file(r->ckpt_path, o->resume))
        return fail(r, 1, "%s exists and is not the checkpoint resumed (%s); give --force to "
                    "replace it, or another --out or --checkpoint", r->ckpt_path, o->resume);
    return true;
}

/* The checkpoint can be written: its directory takes a new file (the one
 * each save makes and renames), found now rather than at the first save. */
static bool check_checkpoint_writable(train_run *r)
{
    if (is_dir(r->ckpt_path))
        return fail(r, 1, "cannot write the checkpoint %s: it is a directory", r->ckpt_path);
    char *tmp = NULL;
    int fd = nn_st_open_temp(r->ckpt_path, &tmp, r->err, sizeof r->err);
    if (fd < 0)
        return fail(r, 1, "cannot write the checkpoint: %s", r->err);
    close(fd);
    unlink(tmp);
    free(tmp);
    return true;
}

/* The loss log: a resumed run's goes on (its elapsed_s too); one new, empty or
 * replaced starts with the header. A write that fails is found here. */
static bool open_log(train_run *r)
{
    bool append = r->o.resume && !r->o.force && has_content(r->log_path);
    struct stat st;
    r->log_created = stat(r->log_path, &st) != 0;
    r->log = fopen(r->log_path, append ? "a" : "w");
    if (!r->log)
        return fail(r, 1, "cannot write the loss log %s: %s", r->log_path, strerror(errno));
    if (!append)
        fprintf(r->log, "step,batch_loss,train_loss,val_loss,elapsed_s,rss_mib\n");
    if (fflush(r->log) != 0 || ferror(r->log))
        return fail(r, 1, "cannot write the loss log %s: %s", r->log_path, strerror(errno));
    return true;
}

/* Output directories (created only now, after every check that needs none),
 * the lock, the loss log, the opening lines, the signal handlers, the step's
 * ctx and the batch. */
static bool start(train_run *r)
{
    const gpt_options *o = &r->o;
    r->opt.lr = (float)o->lr;
    r->opt.weight_decay = (float)o->weight_decay;
    if (!gpt_data_check_block(&r->data, r->model.cfg.block_size, r->err, sizeof r->err))
        return fail(r, 2, "%s", r->err);
    if (r->lead) {
        if (!make_dirs(r->out_dir, &r->made, r->err, sizeof r->err) ||
            !make_parent(r->ckpt_path, &r->made, r->err, sizeof r->err) ||
            !make_parent(r->log_path, &r->made, r->err, sizeof r->err))
            return fail(r, 2, "%s", r->err);
        if (!lock_dir(r) || !check_overwrite(r) || !check_checkpoint_writable(r) || !open_log(r))
            return false;

        char prec[64];
        printf("%.6f M parameters; vocabulary %d characters; %lld train / %lld val tokens; %d "
               "thread%s; matmul %s; precision %s\n", (double)nn_params_numel(&r->model.params) / 1e6,
               r->data.vocab.size, (long long)r->data.n_train,
               (long long)(r->data.n - r->data.n_train), ag_get_num_threads(),
               ag_get_num_threads() == 1 ? "" : "s", ag_matmul_backend(),
               gpt_precision_str(r->model.precision, prec, sizeof prec));
        if (r->nranks > 1)
            printf("data parallel: %d ranks x batch %lld = global batch %lld\n", r->nranks,
                   (long long)o->batch_size, (long long)o->batch_size * r->nranks);
        if (o->resume)
            printf("resuming from %s at step %lld\n", o->resume, (long long)r->ts.step);
        if (!stdout_ok(r))
            return false;
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
    r->start_step = r->ts.step;
    r->loss = NAN;
    return true;
}

/* Seconds of training so far, the runs before this one's included. */
static double elapsed(const train_run *r) { return r->elapsed0 + gpt_now() - r->t0; }

/* The checkpoint with the state and settings as they are now (rank 0's call;
 * it keeps the global batch, which a resume splits over its ranks). */
static bool save(train_run *r)
{
    r->ts.dropout_rng = *ag_ctx_rng(r->c);
    gpt_train_state_settings(&r->ts, &r->o);
    r->ts.batch_size = r->o.batch_size * r->nranks;
    r->ts.elapsed_s = elapsed(r);
    bool ok = gpt_ckpt_save(r->ckpt_path, &r->model, &r->data.vocab, &r->opt, &r->ts, r->err,
                            sizeof r->err);
    r->saved = r->saved || ok;
    return ok;
}

/* gpt.py's estimate_loss before step iter: printed, logged, and a
 * checkpoint saved. False when a signal cut it short. */
static bool evaluate(train_run *r, int64_t iter)
{
    int64_t iters = r->o.eval_iters;
    /* eval batches depend only on (seed, step), so an estimate is the same
     * whether the run was resumed or how often it evaluated; each rank
     * takes its slice of every global batch */
    ag_rng er = ag_rng_new(eval_seed(r->ts.eval_rng.seed, (uint64_t)iter));
    double t_start = gpt_now(), last = 0;
    double tr = estimate(r, iter, 0, &er, 0, t_start, &last);
    double va = estimate(r, iter, 1, &er, iters, t_start, &last);
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
    fprintf(r->log, "%lld,,%.6f,%.6f,%.3f,%.1f\n", (long long)iter, tr, va, elapsed(r), rss_mib());
    bool logged = fflush(r->log) == 0 && !ferror(r->log);
    int e = errno;
    if (!save(r))
        fprintf(stderr, "gpt train: warning: %s (training goes on)\n", r->err);
    if (!logged)
        return fail(r, 1, "cannot write the loss log %s: %s; stopping at step %lld (the "
                    "checkpoint %s is saved)", r->log_path, strerror(e), (long long)iter,
                    r->ckpt_path);
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
        fprintf(r->log, "%lld,%.6f,,,%.3f,%.1f\n", (long long)iter, (double)r->loss, elapsed(r),
                rss_mib());
    else
        fprintf(r->log, "%lld,%.6f,,,%.3f,\n", (long long)iter, (double)r->loss, elapsed(r));
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
    return r->rc == 0;
}

/* Closes the loss log; false (rc 1) when a write to it failed. */
static bool close_log(train_run *r)
{
    if (!r->log)
        return true;
    bool ok = !ferror(r->log);
    int e = errno;
    if (fclose(r->log) != 0 && ok)
        ok = false, e = errno;
    r->log = NULL;
    if (!ok)
        return fail(r, 1, "cannot write the loss log %s: %s", r->log_path, strerror(e));
    return true;
}

/* The last checkpoint and the line that says how the run ended. */
static bool finish(train_run *r)
{
    /* the last steps since the last evaluation's check */
    if (!nn_dist_check_params(&r->model.params, r->err, sizeof r->err))
        return fail_all(r, 1, "at step %lld %s", (long long)r->ts.step, r->err);
    /* nothing trained: a checkpoint resumed in place stays as it is */
    bool nothing = r->ts.step == r->start_step && r->o.resume &&
                   same_file(r->ckpt_path, r->o.resume);
    if (r->lead && !nothing && !save(r))
        return fail(r, 1, "%s", r->err);
    if (r->lead && !close_log(r))
        return false;
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
    int64_t ran = r->ts.step - r->start_step;
    char all[48] = "";
    if (r->start_step > 0)
        snprintf(all, sizeof all, " (%lld in all)", (long long)r->ts.step);
    if (ran == 0)
        printf("nothing to do: the checkpoint is at step %lld and --max-iters is %lld (raise "
               "--max-iters to train on); checkpoint %s, loss log %s\n", (long long)r->ts.step,
               (long long)r->o.max_iters, r->ckpt_path, r->log_path);
    else
        printf("trained %lld step%s%s in %.1f s (%.0f tokens/s, evaluation time excluded); "
               "checkpoint %s, loss log %s\n", (long long)ran, ran == 1 ? "" : "s", all,
               gpt_now() - r->t0, r->tokens_done / (r->train_time > 0 ? r->train_time : 1),
               r->ckpt_path, r->log_path);
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

/* A run that failed before it saved a checkpoint leaves nothing behind: the
 * loss log it created, and the directories it created if that empties them. */
static void undo_files(train_run *r)
{
    if (r->log)
        fclose(r->log);
    r->log = NULL;
    if (!r->lead || r->saved || r->rc == 0)
        return;
    if (r->log_created)
        unlink(r->log_path);
    for (int i = r->made.n - 1; i >= 0; i--) {
        if (strcmp(r->made.path[i], r->out_dir) == 0) { /* its lock too: no run was here before */
            char lock[1100];
            snprintf(lock, sizeof lock, "%s/.lock", r->out_dir);
            unlink(lock);
        }
        rmdir(r->made.path[i]);
    }
}

/* An error ag or nn reports (out of memory, above all) ends the run with
 * exit 1, through here: the files as a failed run leaves them, and the other
 * ranks ended with it. */
static void on_fatal(const char *message, void *arg)
{
    train_run *r = arg;
    if (strstr(message, "out of memory"))
        fprintf(stderr, "gpt train: a smaller --batch-size, --block-size, --n-embd or --n-layer "
                "needs less\n");
    r->rc = 1;
    undo_files(r);
    if (r->nranks > 1)
        nn_dist_abort(1);
}

static void cleanup(train_run *r)
{
    undo_files(r);
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
    r.lock_fd = -1;
    gpt_fatal_errors("gpt train", on_fatal, &r);
    bool ok = parse_flags(&r, argc, argv) && resolve_paths(&r) && load_data(&r) &&
              (r.o.resume ? resume(&r) : init(&r)) && start(&r) && train_loop(&r) && finish(&r);
    if (ok)
        sample(&r);
    if (ok && r.lead)
        stdout_ok(&r);
    cleanup(&r);
    gpt_fatal_errors("gpt", NULL, NULL);
    if (r.lock_fd >= 0)
        close(r.lock_fd);
    /* a failure of this rank alone: the others may be waiting on it */
    if (r.rc != 0 && r.rank_local && r.nranks > 1)
        nn_dist_abort(r.rc);
    nn_dist_finalize();
    return r.rc;
}
