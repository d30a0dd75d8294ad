/* train.c - `gpt train`: gpt.py's training loop with evaluation, progress,
 * a loss log, checkpoints, resume, and a clean stop on SIGINT/SIGTERM or on
 * a non-finite loss or gradient. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "commands.h"
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

/* mkdir -p of the directory part of a file path (nothing for a bare name) */
static bool make_parent(const char *file, char *err, size_t errlen);

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

/* Mean loss over eval_iters batches of a split, no grad, dropout off (gpt.py's estimate_loss). */
static double estimate(ag_ctx *c, const gpt_model *m, const gpt_data *d, int split, int64_t B,
                       int64_t iters, ag_rng *rng, ag_index *x, ag_index *y)
{
    double total = 0;
    ag_set_grad_enabled(c, false);
    for (int64_t k = 0; k < iters && !stop_signal; k++) {
        gpt_batch(d, split, B, m->cfg.block_size, rng, x, y);
        ag_ctx_reset(c);
        ag_tensor *loss = NULL;
        gpt_forward(c, m, x, y, false, &loss);
        total += loss ? loss->data[0] : NAN;
    }
    ag_set_grad_enabled(c, true);
    return total / (double)iters;
}

typedef struct {
    gpt_options o;
    cli_opt table[40];
    int ntable;
    char ckpt_path[1024], log_path[1024];
} train_setup;

/* Architecture flags given with --resume must agree with the checkpoint. */
static bool check_resume_flags(train_setup *s, const gpt_config *cfg, char *err, size_t errlen)
{
    struct { const char *flag; int64_t given, ckpt; } f[] = {
        {"n-embd", s->o.n_embd, cfg->n_embd},
        {"n-head", s->o.n_head, cfg->n_head},
        {"n-layer", s->o.n_layer, cfg->n_layer},
        {"block-size", s->o.block_size, cfg->block_size},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        cli_opt *o = cli_find(s->table, s->ntable, f[i].flag);
        if ((o->set || s->o.preset) && f[i].given != f[i].ckpt) {
            snprintf(err, errlen, "--%s %lld does not match the checkpoint's %lld (a checkpoint "
                     "from another configuration)", f[i].flag, (long long)f[i].given,
                     (long long)f[i].ckpt);
            return false;
        }
    }
    return true;
}

static void usage(FILE *f, train_setup *s)
{
    fprintf(f, "usage: gpt train [flags]\n\n"
               "Trains the lecture's character-level GPT on a text file: 90/10 train/val split,\n"
               "random batches, AdamW, dropout. Prints \"step N: train loss X, val loss Y\" every\n"
               "--eval-interval steps, saves a checkpoint there and at the end, and samples text.\n"
               "Ctrl-C saves a checkpoint and stops; --resume continues from one.\n"
               "Presets: %s.\n\nflags:\n", gpt_preset_names());
    cli_print_help(f, s->table, s->ntable);
}

int cmd_train(int argc, char **argv)
{
    train_setup s;
    char err[1024];
    bool help = false;
    s.ntable = gpt_option_table(&s.o, OPT_TRAIN, s.table, 40);
    gpt_options *o = &s.o;
    if (!cli_parse(s.table, s.ntable, argc, argv, &help, err, sizeof err) ||
        !gpt_apply_preset(o, s.table, s.ntable, err, sizeof err)) {
        fprintf(stderr, "gpt train: %s (see gpt train --help)\n", err);
        return 2;
    }
    if (help) {
        usage(stdout, &s);
        return 0;
    }
    /* with --resume the checkpoint sets the architecture (check_resume_flags
     * names a flag that disagrees), so the defaults' n_head must not be
     * held against a --n-embd that matches it */
    if (!o->resume && o->n_embd % o->n_head != 0) {
        fprintf(stderr, "gpt train: n_embd %lld is not divisible by n_head %lld\n",
                (long long)o->n_embd, (long long)o->n_head);
        return 2;
    }
    if (o->threads > 0)
        ag_set_num_threads((int)o->threads);

    /* where things go */
    char out_dir[1024];
    if (o->out)
        snprintf(out_dir, sizeof out_dir, "%s", o->out);
    else if (o->resume && !o->checkpoint) {
        snprintf(out_dir, sizeof out_dir, "%s", o->resume);
        char *slash = strrchr(out_dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(out_dir, sizeof out_dir, ".");
    } else
        snprintf(out_dir, sizeof out_dir, "runs/%s", o->preset ? o->preset : "default");
    int len1 = o->checkpoint ? snprintf(s.ckpt_path, sizeof s.ckpt_path, "%s", o->checkpoint)
               : o->resume   ? snprintf(s.ckpt_path, sizeof s.ckpt_path, "%s", o->resume)
                             : snprintf(s.ckpt_path, sizeof s.ckpt_path, "%s/ckpt.safetensors", out_dir);
    int len2 = o->log ? snprintf(s.log_path, sizeof s.log_path, "%s", o->log)
                      : snprintf(s.log_path, sizeof s.log_path, "%s/loss.csv", out_dir);
    if (len1 < 0 || len2 < 0 || (size_t)len1 >= sizeof s.ckpt_path || (size_t)len2 >= sizeof s.log_path) {
        fprintf(stderr, "gpt train: output paths are longer than %zu bytes\n", sizeof s.ckpt_path - 1);
        return 2;
    }

    gpt_data data;
    if (!gpt_data_load(&data, o->data, err, sizeof err)) {
        fprintf(stderr, "gpt train: %s\n", err);
        if (access(o->data, F_OK) != 0 && strcmp(o->data, "data/tinyshakespeare.txt") == 0)
            fprintf(stderr, "gpt train: fetch it with tools/get_data.sh\n");
        return 1;
    }

    gpt_model model;
    nn_adamw opt;
    gpt_train_state ts = {0};
    gpt_vocab ckpt_vocab = {0};
    if (o->resume) {
        if (!gpt_ckpt_load(o->resume, &model, &ckpt_vocab, &opt, &ts, err, sizeof err)) {
            fprintf(stderr, "gpt train: %s\n", err);
            gpt_data_free(&data);
            return 1;
        }
        bool same = vocab_equal(&ckpt_vocab, &data.vocab);
        vocab_free(&ckpt_vocab);
        if (!same || !check_resume_flags(&s, &model.cfg, err, sizeof err)) {
            fprintf(stderr, "gpt train: cannot resume from %s: %s\n", o->resume,
                    same ? err : "the data file's vocabulary differs from the checkpoint's");
            nn_adamw_free(&opt);
            gpt_free(&model);
            gpt_data_free(&data);
            return 1;
        }
        /* the run's own settings, unless given again now */
        struct { const char *flag; int64_t *field; int64_t v; } ints[] = {
            {"batch-size", &o->batch_size, ts.batch_size}, {"max-iters", &o->max_iters, ts.max_iters},
            {"eval-interval", &o->eval_interval, ts.eval_interval},
            {"eval-iters", &o->eval_iters, ts.eval_iters}, {"seed", &o->seed, ts.seed}};
        for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
            if (!cli_find(s.table, s.ntable, ints[i].flag)->set)
                *ints[i].field = ints[i].v;
        struct { const char *flag; double *field; double v; } fl[] = {
            {"lr", &o->lr, ts.lr}, {"weight-decay", &o->weight_decay, ts.weight_decay},
            {"grad-clip", &o->grad_clip, ts.grad_clip}};
        for (size_t i = 0; i < sizeof fl / sizeof *fl; i++)
            if (!cli_find(s.table, s.ntable, fl[i].flag)->set)
                *fl[i].field = fl[i].v;
        o->block_size = model.cfg.block_size;
        o->dropout = model.cfg.dropout;
    } else {
        gpt_config cfg = gpt_options_config(o, data.vocab.size);
        if (!gpt_init(&model, &cfg, (uint64_t)o->seed, err, sizeof err)) {
            fprintf(stderr, "gpt train: %s\n", err);
            gpt_data_free(&data);
            return 2;
        }
        nn_adamw_init(&opt, &model.params, (float)o->lr);
        ts.evaluated_at = -1;
        ts.batch_rng = ag_rng_new((uint64_t)o->seed * 3 + 1);
        ts.eval_rng = ag_rng_new((uint64_t)o->seed * 3 + 2);
        ts.dropout_rng = ag_rng_new((uint64_t)o->seed * 3 + 3);
    }
    opt.lr = (float)o->lr;
    opt.weight_decay = (float)o->weight_decay;
    int rc = 0;
    if (!gpt_data_check_block(&data, model.cfg.block_size, err, sizeof err) ||
        !make_dirs(out_dir, err, sizeof err) || !make_parent(s.ckpt_path, err, sizeof err) ||
        !make_parent(s.log_path, err, sizeof err)) {
        fprintf(stderr, "gpt train: %s\n", err);
        rc = 2;
        goto done;
    }

    FILE *log = fopen(s.log_path, o->resume ? "a" : "w");
    if (!log) {
        fprintf(stderr, "gpt train: cannot write the loss log %s: %s\n", s.log_path, strerror(errno));
        rc = 1;
        goto done;
    }
    if (!o->resume)
        fprintf(log, "step,batch_loss,train_loss,val_loss,elapsed_s,rss_mib\n");

    int64_t B = o->batch_size, T = model.cfg.block_size;
    printf("%.6f M parameters; vocabulary %d characters; %lld train / %lld val tokens; %d threads; "
           "matmul %s\n", (double)nn_params_numel(&model.params) / 1e6, data.vocab.size,
           (long long)data.n_train, (long long)(data.n - data.n_train), ag_get_num_threads(),
           ag_matmul_backend());
    if (o->resume)
        printf("resuming from %s at step %lld\n", o->resume, (long long)ts.step);
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    ag_ctx *c = ag_ctx_new();
    *ag_ctx_rng(c) = ts.dropout_rng;
    ag_index *x = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
    ag_index *y = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
    bool tty = isatty(fileno(stderr));
    double t0 = gpt_now(), train_time = 0, last_print = 0;
    int64_t tokens_done = 0;
    float loss_v = NAN;

    for (int64_t iter = ts.step; iter < o->max_iters && !stop_signal; iter++) {
        if ((iter % o->eval_interval == 0 || iter == o->max_iters - 1) && ts.evaluated_at != iter) {
            /* eval batches depend only on (seed, step), so an estimate is the
             * same whether the run was resumed or how often it evaluated */
            ag_rng er = ag_rng_new(eval_seed(ts.eval_rng.seed, (uint64_t)iter));
            double tr = estimate(c, &model, &data, 0, B, o->eval_iters, &er, x, y);
            double va = estimate(c, &model, &data, 1, B, o->eval_iters, &er, x, y);
            if (stop_signal)
                break;
            if (tty)
                fprintf(stderr, "\r\033[K");
            printf("step %lld: train loss %.4f, val loss %.4f\n", (long long)iter, tr, va);
            fflush(stdout);
            fprintf(log, "%lld,,%.6f,%.6f,%.3f,%.1f\n", (long long)iter, tr, va, gpt_now() - t0,
                    rss_mib());
            fflush(log);
            ts.evaluated_at = iter;
            ts.step = iter;
            ts.dropout_rng = *ag_ctx_rng(c);
            gpt_train_state save = ts;
            save.batch_size = B, save.max_iters = o->max_iters, save.eval_interval = o->eval_interval;
            save.eval_iters = o->eval_iters, save.seed = o->seed, save.lr = o->lr;
            save.weight_decay = o->weight_decay, save.grad_clip = o->grad_clip;
            if (!gpt_ckpt_save(s.ckpt_path, &model, &data.vocab, &opt, &save, err, sizeof err))
                fprintf(stderr, "gpt train: warning: %s (training goes on)\n", err);
        }

        double ts0 = gpt_now();
        gpt_batch(&data, 0, B, T, &ts.batch_rng, x, y);
        ag_ctx_reset(c);
        ag_tensor *loss = NULL;
        gpt_forward(c, &model, x, y, true, &loss);
        loss_v = loss ? loss->data[0] : NAN;
        if (!isfinite(loss_v)) {
            fprintf(stderr, "gpt train: the loss became %g at step %lld; stopping. The last good "
                    "checkpoint is %s\n", (double)loss_v, (long long)iter, s.ckpt_path);
            rc = 1;
            break;
        }
        nn_params_zero_grad(&model.params);
        ag_backward(c, loss);
        const char *bad = NULL;
        if (!nn_grads_finite(&model.params, &bad)) {
            fprintf(stderr, "gpt train: the gradient of %s became non-finite at step %lld; "
                    "stopping. The last good checkpoint is %s\n", bad, (long long)iter, s.ckpt_path);
            rc = 1;
            break;
        }
        if (o->grad_clip > 0)
            nn_clip_grad_norm(&model.params, (float)o->grad_clip);
        nn_adamw_step(&opt);
        ts.step = iter + 1;
        train_time += gpt_now() - ts0;
        tokens_done += B * T;
        /* memory every 100 steps: the log shows it stays flat */
        if (iter % 100 == 0)
            fprintf(log, "%lld,%.6f,,,%.3f,%.1f\n", (long long)iter, (double)loss_v, gpt_now() - t0,
                    rss_mib());
        else
            fprintf(log, "%lld,%.6f,,,%.3f,\n", (long long)iter, (double)loss_v, gpt_now() - t0);

        double now = gpt_now();
        double tps = tokens_done / (train_time > 0 ? train_time : 1e-9);
        char eta[32];
        fmt_eta((double)(o->max_iters - iter - 1) * B * T / tps, eta, sizeof eta);
        if (tty && now - last_print > 0.1) {
            fprintf(stderr, "\r\033[Kstep %lld/%lld | loss %.4f | %.0f tok/s | ETA %s",
                    (long long)iter + 1, (long long)o->max_iters, (double)loss_v, tps, eta);
            last_print = now;
        } else if (!tty && o->log_interval > 0 && (iter + 1) % o->log_interval == 0)
            fprintf(stderr, "step %lld/%lld: loss %.4f, %.0f tok/s, ETA %s\n", (long long)iter + 1,
                    (long long)o->max_iters, (double)loss_v, tps, eta);
    }
    if (tty)
        fprintf(stderr, "\r\033[K");
    fclose(log);

    if (rc == 0) {
        ts.dropout_rng = *ag_ctx_rng(c);
        ts.batch_size = B, ts.max_iters = o->max_iters, ts.eval_interval = o->eval_interval;
        ts.eval_iters = o->eval_iters, ts.seed = o->seed, ts.lr = o->lr;
        ts.weight_decay = o->weight_decay, ts.grad_clip = o->grad_clip;
        if (!gpt_ckpt_save(s.ckpt_path, &model, &data.vocab, &opt, &ts, err, sizeof err)) {
            fprintf(stderr, "gpt train: %s\n", err);
            rc = 1;
        } else if (stop_signal) {
            printf("stopped by %s at step %lld; checkpoint saved to %s (continue with --resume %s)\n",
                   stop_signal == SIGINT ? "SIGINT" : "SIGTERM", (long long)ts.step, s.ckpt_path,
                   s.ckpt_path);
            rc = 128 + stop_signal;
        } else {
            printf("trained %lld steps in %.1f s (%.0f tokens/s); checkpoint %s, loss log %s\n",
                   (long long)ts.step, gpt_now() - t0, tokens_done / (train_time > 0 ? train_time : 1),
                   s.ckpt_path, s.log_path);
        }
    }
    if (rc == 0 && o->sample_tokens > 0) {
        printf("--- sample ---\n");
        gpt_sample_opts so = {.max_new_tokens = o->sample_tokens, .temperature = 1.0f, .top_k = 0,
                              .rng = ag_rng_new((uint64_t)o->seed)};
        int32_t start = 0; /* gpt.py starts from token 0 */
        gpt_generate(&model, &data.vocab, &start, 1, &so, stdout);
        printf("\n");
    }
    ag_index_free(x);
    ag_index_free(y);
    ag_ctx_free(c);
done:
    nn_adamw_free(&opt);
    gpt_free(&model);
    gpt_data_free(&data);
    return rc;
}
