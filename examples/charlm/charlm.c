/* charlm.c - train and sample for the character-level examples (see charlm.h). */
#include "charlm.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "generate.h"

static double now(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The flags of `train`: the settings, then the model's own. */
static int train_table(charlm_opts *o, const charlm_model *m, cli_opt *t, int max)
{
    cli_opt common[] = {
        {"data", CLI_STRING, &o->data, "UTF-8 text file to train on", 0, 0, false},
        {"out", CLI_STRING, &o->out, "checkpoint to write", 0, 0, false},
        {"batch-size", CLI_INT, &o->batch_size, "sequences per micro-batch", 1, 1 << 20, false},
        {"block-size", CLI_INT, &o->block_size, "characters per sequence", 1, 1 << 16, false},
        {"grad-accum", CLI_INT, &o->grad_accum,
         "micro-batches per step, their gradients summed (loss / N each)", 1, 1 << 20, false},
        {"max-iters", CLI_INT, &o->max_iters, "optimizer steps", 1, 1e9, false},
        {"eval-interval", CLI_INT, &o->eval_interval, "steps between train/val estimates", 1, 1e9,
         false},
        {"eval-iters", CLI_INT, &o->eval_iters, "batches per estimate", 1, 1e9, false},
        {"lr", CLI_FLOAT, &o->lr, "peak AdamW learning rate", 0, 10, false},
        {"min-lr", CLI_FLOAT, &o->min_lr, "learning rate at the last step (cosine decay)", 0, 10,
         false},
        {"warmup", CLI_INT, &o->warmup, "linear warmup steps", 0, 1e9, false},
        {"weight-decay", CLI_FLOAT, &o->weight_decay,
         "AdamW weight decay of matrices (none for 1-D parameters and embeddings)", 0, 10, false},
        {"grad-clip", CLI_FLOAT, &o->grad_clip, "clip the grad norm to this, 0 for off", 0, 1e9,
         false},
        {"seed", CLI_INT, &o->seed, "seed for init, batches and sampling", 0, 9.2e18, false},
        {"threads", CLI_INT, &o->threads, "threads, 0 for all cores", 0, 1024, false},
        {"log-interval", CLI_INT, &o->log_interval, "steps between progress lines, 0 for none", 0,
         1e9, false},
        {"sample-tokens", CLI_INT, &o->sample_tokens, "characters to sample after training", 0, 1e9,
         false},
        {"check-loss", CLI_FLOAT, &o->check_loss,
         "exit 1 unless the final val loss is below this (0: no check)", 0, 1e9, false},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof common / sizeof *common && n < max; i++)
        t[n++] = common[i];
    for (int i = 0; i < m->n_model_opts && n < max; i++)
        t[n++] = m->model_opts[i];
    return n;
}

/* Mean loss over eval_iters batches of a split, no grad, drawn from a
 * generator that depends on (seed, step) only. */
static double estimate(ag_ctx *c, charlm_model *m, const gpt_data *d, const charlm_opts *o,
                       int split, int64_t step, ag_index *x, ag_index *y)
{
    ag_rng r = ag_rng_new((uint64_t)o->seed * 1000003u + (uint64_t)step * 2 + (uint64_t)split);
    double total = 0;
    ag_set_grad_enabled(c, false);
    for (int64_t k = 0; k < o->eval_iters; k++) {
        gpt_batch(d, split, o->batch_size, o->block_size, &r, x, y);
        ag_ctx_reset(c);
        ag_tensor *loss = NULL;
        m->forward(c, m->self, x, y, false, &loss);
        total += loss ? loss->data[0] : NAN;
    }
    ag_set_grad_enabled(c, true);
    return total / (double)o->eval_iters;
}

/* Params, the vocabulary, block_size and the model's flags as metadata. */
static bool save(const char *path, charlm_model *m, const gpt_vocab *v, int64_t block_size,
                 char *err, size_t errlen)
{
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add_params(w, m->params(m->self));
    char *vs = vocab_to_utf8(v), buf[64], key[96];
    nn_st_add_meta(w, "vocab", vs);
    snprintf(buf, sizeof buf, "%lld", (long long)block_size);
    nn_st_add_meta(w, "block_size", buf);
    for (int i = 0; i < m->n_model_opts; i++) {
        const cli_opt *op = &m->model_opts[i];
        snprintf(key, sizeof key, "model.%s", op->name);
        if (op->type == CLI_INT)
            snprintf(buf, sizeof buf, "%lld", (long long)*(int64_t *)op->value);
        else
            snprintf(buf, sizeof buf, "%s", *(const char **)op->value);
        nn_st_add_meta(w, key, buf);
    }
    bool ok = nn_st_write(w, path, err, errlen);
    nn_st_writer_free(w);
    free(vs);
    return ok;
}

/* Writes n characters sampled from the model after the prompt's tokens. */
static void generate(charlm_model *m, const gpt_vocab *v, const int32_t *prompt, int64_t np,
                     int64_t n, gpt_sample_opts *so)
{
    int64_t V = v->size;
    float *logits = malloc((size_t)V * sizeof *logits), *tmp = malloc((size_t)V * sizeof *tmp);
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    m->sample_reset(m->self);
    const float *lg = NULL;
    for (int64_t i = 0; i < np; i++) {
        ag_ctx_reset(c);
        lg = m->sample_next(c, m->self, prompt[i]);
    }
    for (int64_t k = 0; k < n && lg; k++) {
        memcpy(logits, lg, (size_t)V * sizeof *logits);
        int32_t next = gpt_pick_token(logits, tmp, V, so, &so->rng);
        if (next < 0)
            break;
        char b[4];
        fwrite(b, 1, (size_t)nn_utf8_encode(v->chars[next], b), stdout);
        ag_ctx_reset(c);
        lg = m->sample_next(c, m->self, next);
    }
    printf("\n");
    ag_ctx_free(c);
    free(logits);
    free(tmp);
}

/* mkdir -p of the directory part of a file path */
static bool make_parent(const char *file, char *err, size_t errlen)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", file);
    for (char *s = dir + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %.200s: %s", dir, strerror(errno));
            return false;
        }
        *s = '/';
    }
    return true;
}

static int train(charlm_model *m, int argc, char **argv)
{
    charlm_opts o = m->defaults;
    cli_opt table[64];
    int nt = train_table(&o, m, table, 64);
    bool help = false;
    char err[1024];
    if (!cli_parse(table, nt, argc, argv, &help, err, sizeof err)) {
        fprintf(stderr, "%s train: %s (see %s train --help)\n", m->prog, err, m->prog);
        return 2;
    }
    if (help) {
        printf("usage: %s train [flags]\n\n%s\n\nflags:\n", m->prog, m->about);
        cli_print_help(stdout, table, nt);
        return 0;
    }
    if (o.threads > 0)
        ag_set_num_threads((int)o.threads);
    gpt_data d = {0};
    if (!gpt_data_load(&d, o.data, err, sizeof err) ||
        !gpt_data_check_block(&d, o.block_size, err, sizeof err)) {
        fprintf(stderr, "%s train: %s\n", m->prog, err);
        if (strcmp(o.data, "data/tinyshakespeare.txt") == 0)
            fprintf(stderr, "%s train: fetch it with tools/get_data.sh\n", m->prog);
        gpt_data_free(&d);
        return 1;
    }
    if (!m->build(m->self, d.vocab.size, o.block_size, (uint64_t)o.seed, err, sizeof err)) {
        fprintf(stderr, "%s train: %s\n", m->prog, err);
        gpt_data_free(&d);
        return 2;
    }
    nn_params *p = m->params(m->self);
    nn_adamw opt;
    nn_adamw_init(&opt, p, (float)o.lr);
    opt.weight_decay = (float)o.weight_decay;
    int decayed = nn_adamw_decay_groups(&opt);
    printf("%.6f M parameters (%d tensors, %d decayed); vocabulary %d; %lld train / %lld val "
           "tokens; %d threads\n", (double)nn_params_numel(p) / 1e6, p->n, decayed, d.vocab.size,
           (long long)d.n_train, (long long)(d.n - d.n_train), ag_get_num_threads());
    fflush(stdout);

    int64_t B = o.batch_size, T = o.block_size;
    ag_ctx *c = ag_ctx_new();
    ag_index *x = ag_index_new(NULL, NULL, AG_SHAPE(B, T)), *y = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
    ag_rng batch_rng = ag_rng_new((uint64_t)o.seed * 3 + 1);
    double wall = 0, cpu = 0, val = NAN;
    int rc = 0;
    for (int64_t iter = 0; iter <= o.max_iters; iter++) {
        if (iter % o.eval_interval == 0 || iter == o.max_iters) {
            double tr = estimate(c, m, &d, &o, 0, iter, x, y);
            val = estimate(c, m, &d, &o, 1, iter, x, y);
            printf("step %lld: train loss %.4f, val loss %.4f\n", (long long)iter, tr, val);
            fflush(stdout);
        }
        if (iter == o.max_iters)
            break;
        double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        opt.lr = nn_lr_cosine(iter, (float)o.lr, (float)o.min_lr, o.warmup, o.max_iters);
        nn_params_zero_grad(p);
        float step_loss = 0;
        for (int64_t k = 0; k < o.grad_accum; k++) {
            gpt_batch(&d, 0, B, T, &batch_rng, x, y);
            ag_ctx_reset(c);
            ag_tensor *loss = NULL;
            m->forward(c, m->self, x, y, true, &loss);
            /* the mean over all micro-batches: each loss / N, their grads summed */
            ag_tensor *scaled = ag_mul_scalar(c, loss, 1.0f / (float)o.grad_accum);
            step_loss += loss ? loss->data[0] / (float)o.grad_accum : NAN;
            if (!scaled || !ag_backward(c, scaled))
                break;
        }
        const char *bad = NULL;
        if (!isfinite(step_loss) || !nn_grads_finite(p, &bad)) {
            fprintf(stderr, "%s train: the loss or the gradient of %s is not finite at step %lld\n",
                    m->prog, bad ? bad : "?", (long long)iter);
            rc = 1;
            break;
        }
        if (o.grad_clip > 0)
            nn_clip_grad_norm(p, (float)o.grad_clip);
        nn_adamw_step(&opt);
        wall += now(CLOCK_MONOTONIC) - w0;
        cpu += now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (o.log_interval > 0 && (iter + 1) % o.log_interval == 0)
            fprintf(stderr, "step %lld/%lld: loss %.4f, lr %.3g, %.1f ms/step\n", (long long)iter + 1,
                    (long long)o.max_iters, (double)step_loss, (double)opt.lr,
                    1e3 * wall / (double)(iter + 1));
    }
    if (rc == 0) {
        printf("trained %lld steps: %.2f ms/step (wall), %.2f ms/step (CPU, all threads); "
               "%lld tokens/step\n", (long long)o.max_iters, 1e3 * wall / (double)o.max_iters,
               1e3 * cpu / (double)o.max_iters, (long long)(B * T * o.grad_accum));
        if (o.out && (!make_parent(o.out, err, sizeof err) ||
                      !save(o.out, m, &d.vocab, T, err, sizeof err))) {
            fprintf(stderr, "%s train: %s\n", m->prog, err);
            rc = 1;
        } else if (o.out)
            printf("checkpoint %s\n", o.out);
    }
    if (rc == 0 && o.sample_tokens > 0) {
        printf("--- sample ---\n");
        gpt_sample_opts so = {.temperature = 1.0f, .rng = ag_rng_new((uint64_t)o.seed)};
        int32_t first = 0;
        generate(m, &d.vocab, &first, 1, o.sample_tokens, &so);
    }
    if (rc == 0 && o.check_loss > 0 && !(val < o.check_loss)) {
        fprintf(stderr, "%s train: final val loss %.4f is not below --check-loss %.4f\n", m->prog,
                val, o.check_loss);
        rc = 1;
    }
    ag_index_free(x);
    ag_index_free(y);
    ag_ctx_free(c);
    nn_adamw_free(&opt);
    m->destroy(m->self);
    gpt_data_free(&d);
    return rc;
}

/* The model's flags from a checkpoint's "model.<name>" metadata, parsed as
 * if given on the command line (so their ranges are checked too). The
 * strings live in args, freed by the caller. */
static bool model_opts_from(const nn_st *f, charlm_model *m, char **args, char *err, size_t errlen)
{
    for (int i = 0; i < m->n_model_opts; i++) {
        char key[96];
        snprintf(key, sizeof key, "model.%s", m->model_opts[i].name);
        const char *v = nn_st_meta(f, key);
        if (!v) {
            snprintf(err, errlen, "the checkpoint has no metadata \"%s\"", key);
            return false;
        }
        size_t n = strlen(m->model_opts[i].name) + strlen(v) + 4;
        args[i] = malloc(n);
        snprintf(args[i], n, "--%s=%s", m->model_opts[i].name, v);
    }
    bool help = false;
    return cli_parse(m->model_opts, m->n_model_opts, m->n_model_opts, args, &help, err, errlen);
}

static int sample(charlm_model *m, int argc, char **argv)
{
    const char *ckpt = NULL, *prompt = NULL;
    int64_t tokens = 500, seed = 1337, top_k = 0, threads = 0;
    double temperature = 1.0;
    cli_opt t[] = {
        {"checkpoint", CLI_STRING, &ckpt, "checkpoint written by train", 0, 0, false},
        {"prompt", CLI_STRING, &prompt, "text to continue (default: token 0, as gpt.py)", 0, 0, false},
        {"tokens", CLI_INT, &tokens, "characters to generate", 0, 1e9, false},
        {"temperature", CLI_FLOAT, &temperature, "divides the logits; 0 takes the most likely", 0, 1e6, false},
        {"top-k", CLI_INT, &top_k, "keep the k most likely characters, 0 for all", 0, 1e9, false},
        {"seed", CLI_INT, &seed, "sampling seed", 0, 9.2e18, false},
        {"threads", CLI_INT, &threads, "threads, 0 for all cores", 0, 1024, false},
    };
    int nt = (int)(sizeof t / sizeof *t);
    bool help = false;
    char err[1024];
    if (!cli_parse(t, nt, argc, argv, &help, err, sizeof err) || (!help && !ckpt)) {
        fprintf(stderr, "%s sample: %s (see %s sample --help)\n", m->prog,
                ckpt || help ? err : "--checkpoint is required", m->prog);
        return 2;
    }
    if (help) {
        printf("usage: %s sample --checkpoint FILE [flags]\n\nflags:\n", m->prog);
        cli_print_help(stdout, t, nt);
        return 0;
    }
    if (threads > 0)
        ag_set_num_threads((int)threads);
    nn_st *f = nn_st_open(ckpt, err, sizeof err);
    gpt_vocab v = {0};
    char **args = calloc((size_t)m->n_model_opts + 1, sizeof *args);
    int rc = 1;
    bool built = false;
    const char *vs = f ? nn_st_meta(f, "vocab") : NULL, *bs = f ? nn_st_meta(f, "block_size") : NULL;
    if (f && (!vs || !bs))
        snprintf(err, sizeof err, "%s has no vocabulary or block_size metadata", ckpt);
    else if (f && vocab_from_utf8(&v, vs, err, sizeof err) &&
             model_opts_from(f, m, args, err, sizeof err) &&
             (built = m->build(m->self, v.size, strtoll(bs, NULL, 10), 0, err, sizeof err)) &&
             nn_load_params(f, m->params(m->self), err, sizeof err)) {
        int32_t *toks = malloc((strlen(prompt ? prompt : "") + 1) * sizeof *toks);
        int64_t np = 0;
        rc = 0;
        if (prompt) {
            uint32_t *cps = NULL;
            int64_t ncp = 0;
            if (!utf8_decode((const unsigned char *)prompt, strlen(prompt), &cps, &ncp, err,
                             sizeof err))
                rc = 2;
            for (int64_t i = 0; rc == 0 && i < ncp; i++) {
                toks[np] = vocab_find(&v, cps[i]);
                if (toks[np++] < 0) {
                    snprintf(err, sizeof err, "the prompt's character U+%04X is not in the vocabulary",
                             (unsigned)cps[i]);
                    rc = 2;
                }
            }
            free(cps);
            if (rc == 0)
                fputs(prompt, stdout);
        }
        if (!prompt || np == 0)
            toks[np++] = 0;
        gpt_sample_opts so = {.temperature = (float)temperature, .top_k = top_k,
                              .rng = ag_rng_new((uint64_t)seed)};
        if (rc == 0)
            generate(m, &v, toks, np, tokens, &so);
        free(toks);
    }
    if (rc)
        fprintf(stderr, "%s sample: %s\n", m->prog, err);
    if (built)
        m->destroy(m->self);
    for (int i = 0; i < m->n_model_opts; i++)
        free(args[i]);
    free(args);
    vocab_free(&v);
    nn_st_close(f);
    return rc;
}

int charlm_main(charlm_model *m, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "train") == 0)
        return train(m, argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "sample") == 0)
        return sample(m, argc - 2, argv + 2);
    FILE *out = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) ? stdout : stderr;
    fprintf(out, "usage: %s train|sample [flags]\n\n%s\n\n"
                 "  %s train    train on a text file (default data/tinyshakespeare.txt; fetch it\n"
                 "                with tools/get_data.sh), printing train/val loss, then sample\n"
                 "  %s sample   generate text from a checkpoint\n"
                 "Run \"%s <command> --help\" for the flags.\n",
            m->prog, m->about, m->prog, m->prog, m->prog);
    return out == stdout ? 0 : 2;
}
