/* ckpt.c - saving and loading the GPT example's checkpoints. */
#include "ckpt.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

#define FORMAT "agrad-gpt/1"

static void meta_i(nn_st_writer *w, const char *k, int64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "%" PRId64, v);
    nn_st_add_meta(w, k, b);
}

static void meta_u(nn_st_writer *w, const char *k, uint64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, v);
    nn_st_add_meta(w, k, b);
}

static void meta_f(nn_st_writer *w, const char *k, double v)
{
    char b[40];
    snprintf(b, sizeof b, "%.17g", v);
    nn_st_add_meta(w, k, b);
}

bool gpt_ckpt_save(const char *path, const gpt_model *m, const gpt_vocab *v, const nn_adamw *opt,
                   const gpt_train_state *ts, char *err, size_t errlen)
{
    nn_st_writer *w = nn_st_writer_new();
    char *vs = vocab_to_utf8(v);
    nn_st_add_meta(w, "format", FORMAT);
    nn_st_add_meta(w, "vocab", vs ? vs : "");
    free(vs);
    meta_i(w, "vocab_size", m->cfg.vocab_size);
    meta_i(w, "block_size", m->cfg.block_size);
    meta_i(w, "n_embd", m->cfg.n_embd);
    meta_i(w, "n_head", m->cfg.n_head);
    meta_i(w, "n_layer", m->cfg.n_layer);
    meta_f(w, "dropout", m->cfg.dropout);
    nn_st_add_params(w, &m->params);
    if (opt)
        nn_st_add_adamw(w, opt);
    if (ts) {
        meta_i(w, "train.step", ts->step);
        meta_i(w, "train.evaluated_at", ts->evaluated_at);
        meta_u(w, "train.rng.batch.seed", ts->batch_rng.seed);
        meta_u(w, "train.rng.batch.counter", ts->batch_rng.counter);
        meta_u(w, "train.rng.eval.seed", ts->eval_rng.seed);
        meta_u(w, "train.rng.eval.counter", ts->eval_rng.counter);
        meta_u(w, "train.rng.dropout.seed", ts->dropout_rng.seed);
        meta_u(w, "train.rng.dropout.counter", ts->dropout_rng.counter);
        meta_i(w, "train.batch_size", ts->batch_size);
        meta_i(w, "train.max_iters", ts->max_iters);
        meta_i(w, "train.eval_interval", ts->eval_interval);
        meta_i(w, "train.eval_iters", ts->eval_iters);
        meta_i(w, "train.seed", ts->seed);
        meta_f(w, "train.lr", ts->lr);
        meta_f(w, "train.weight_decay", ts->weight_decay);
        meta_f(w, "train.grad_clip", ts->grad_clip);
    }
    bool ok = nn_st_write(w, path, err, errlen);
    nn_st_writer_free(w);
    return ok;
}

/* Strictly parsed metadata numbers; false (with err) when missing or malformed. */
static bool get_i(const nn_st *f, const char *k, int64_t *out, char *err, size_t errlen)
{
    const char *s = nn_st_meta(f, k);
    char *end = NULL;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end) {
        snprintf(err, errlen, "metadata \"%s\" is %s", k, s ? "not an integer" : "missing");
        return false;
    }
    *out = v;
    return true;
}

static bool get_u(const nn_st *f, const char *k, uint64_t *out, char *err, size_t errlen)
{
    const char *s = nn_st_meta(f, k);
    char *end = NULL;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || !*s || *end || *s == '-') {
        snprintf(err, errlen, "metadata \"%s\" is %s", k, s ? "not an unsigned integer" : "missing");
        return false;
    }
    *out = v;
    return true;
}

static bool get_f(const nn_st *f, const char *k, double *out, char *err, size_t errlen)
{
    const char *s = nn_st_meta(f, k);
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end) {
        snprintf(err, errlen, "metadata \"%s\" is %s", k, s ? "not a number" : "missing");
        return false;
    }
    *out = v;
    return true;
}

/* A restored training setting must be one its command-line flag could have
 * set: a corrupt checkpoint resumed with eval_interval 0 divided by zero in
 * train.c, and batch size 0 or a negative learning rate made no sense (found
 * by tests/fuzz/fuzz_safetensors.c). The flag table holds the ranges. */
static bool flag_range(const char *flag, double v, char *err, size_t errlen)
{
    gpt_options o;
    cli_opt t[40];
    const cli_opt *c = cli_find(t, gpt_option_table(&o, OPT_TRAIN, t, 40), flag);
    if (c && v >= c->min && v <= c->max) /* false for NaN */
        return true;
    snprintf(err, errlen, "training state: %s %g is out of range [%g, %g]", flag, v,
             c ? c->min : 0.0, c ? c->max : 0.0);
    return false;
}

static bool load_train_state(const nn_st *f, gpt_train_state *t, char *e, size_t n)
{
    bool ok = get_i(f, "train.step", &t->step, e, n) &&
              get_i(f, "train.evaluated_at", &t->evaluated_at, e, n) &&
              get_u(f, "train.rng.batch.seed", &t->batch_rng.seed, e, n) &&
              get_u(f, "train.rng.batch.counter", &t->batch_rng.counter, e, n) &&
              get_u(f, "train.rng.eval.seed", &t->eval_rng.seed, e, n) &&
              get_u(f, "train.rng.eval.counter", &t->eval_rng.counter, e, n) &&
              get_u(f, "train.rng.dropout.seed", &t->dropout_rng.seed, e, n) &&
              get_u(f, "train.rng.dropout.counter", &t->dropout_rng.counter, e, n) &&
              get_i(f, "train.batch_size", &t->batch_size, e, n) &&
              get_i(f, "train.max_iters", &t->max_iters, e, n) &&
              get_i(f, "train.eval_interval", &t->eval_interval, e, n) &&
              get_i(f, "train.eval_iters", &t->eval_iters, e, n) &&
              get_i(f, "train.seed", &t->seed, e, n) && get_f(f, "train.lr", &t->lr, e, n) &&
              get_f(f, "train.weight_decay", &t->weight_decay, e, n) &&
              get_f(f, "train.grad_clip", &t->grad_clip, e, n);
    if (ok && (t->step < 0 || t->evaluated_at < -1)) {
        snprintf(e, n, "training state: step %lld, evaluated at %lld", (long long)t->step,
                 (long long)t->evaluated_at);
        return false;
    }
    return ok && flag_range("batch-size", (double)t->batch_size, e, n) &&
           flag_range("max-iters", (double)t->max_iters, e, n) &&
           flag_range("eval-interval", (double)t->eval_interval, e, n) &&
           flag_range("eval-iters", (double)t->eval_iters, e, n) &&
           flag_range("seed", (double)t->seed, e, n) && flag_range("lr", t->lr, e, n) &&
           flag_range("weight-decay", t->weight_decay, e, n) &&
           flag_range("grad-clip", t->grad_clip, e, n);
}

bool gpt_ckpt_load_st(const nn_st *f, const char *name, gpt_model *m, gpt_vocab *v,
                      nn_adamw *opt, gpt_train_state *ts, char *err, size_t errlen)
{
    char why[400] = "";
    memset(m, 0, sizeof *m);
    memset(v, 0, sizeof *v);
    bool model_built = false, opt_built = false;
    const char *format = nn_st_meta(f, "format");
    int64_t vs, bs, ne, nh, nl;
    double dropout;
    bool ok = true;
    if (!format || strcmp(format, FORMAT) != 0) {
        snprintf(why, sizeof why, "not a GPT checkpoint of this program (format \"%s\", want \"%s\")",
                 format ? format : "missing", FORMAT);
        ok = false;
    }
    ok = ok && get_i(f, "vocab_size", &vs, why, sizeof why) &&
         get_i(f, "block_size", &bs, why, sizeof why) && get_i(f, "n_embd", &ne, why, sizeof why) &&
         get_i(f, "n_head", &nh, why, sizeof why) && get_i(f, "n_layer", &nl, why, sizeof why) &&
         get_f(f, "dropout", &dropout, why, sizeof why);
    const char *vocab = nn_st_meta(f, "vocab");
    if (ok && !vocab) {
        snprintf(why, sizeof why, "metadata \"vocab\" is missing");
        ok = false;
    }
    ok = ok && vocab_from_utf8(v, vocab, why, sizeof why);
    if (ok && v->size != vs) {
        snprintf(why, sizeof why, "vocabulary has %d characters but vocab_size is %lld", v->size,
                 (long long)vs);
        ok = false;
    }
    /* bounds before the casts below: a corrupt file must not build a huge model */
    if (ok && (nh < 1 || nh > 4096 || nl < 1 || nl > 4096 || bs < 1 || bs > (1 << 20) || ne < 1 ||
               ne > (1 << 16))) {
        snprintf(why, sizeof why, "model sizes out of range");
        ok = false;
    }
    /* (float)dropout is undefined behaviour past FLT_MAX ("1e39"): check the
     * double (found by review; tests/fuzz/regressions/safetensors/ok-dropout-1e39) */
    if (ok && !(dropout >= 0.0 && dropout < 1.0)) {
        snprintf(why, sizeof why, "dropout %g is not in [0, 1)", dropout);
        ok = false;
    }
    /* Every parameter is stored in the file, so the model cannot need more
     * floats than the file has data bytes / 4. The sizes above still allow
     * terabytes (n_embd 65536, n_layer 4096) that a corrupt header of a few
     * bytes would make gpt_init allocate before any shape is checked; the
     * embeddings, lm_head and each block's 12 n_embd^2 matrix weights are a
     * lower bound on the model that is checked first (no overflow: < 2^58
     * within the bounds), then the exact count once built (found by review;
     * tests/fuzz/regressions/safetensors/ok-huge-config). */
    uint64_t data_floats = nn_st_data_size(f) / 4;
    if (ok) {
        uint64_t C = (uint64_t)ne, least = 2 * (uint64_t)vs * C + (uint64_t)bs * C +
                                           12 * C * C * (uint64_t)nl;
        if (least > data_floats) {
            snprintf(why, sizeof why,
                     "a model of these sizes has more than %llu parameters; the file holds %llu",
                     (unsigned long long)least, (unsigned long long)data_floats);
            ok = false;
        }
    }
    if (ok) {
        gpt_config cfg = {vs, bs, ne, (int)nh, (int)nl, (float)dropout};
        ok = model_built = gpt_init(m, &cfg, 0, why, sizeof why);
    }
    if (ok && (uint64_t)nn_params_numel(&m->params) > data_floats) {
        snprintf(why, sizeof why, "the model has %lld parameters; the file holds %llu",
                 (long long)nn_params_numel(&m->params), (unsigned long long)data_floats);
        ok = false;
    }
    ok = ok && nn_load_params(f, &m->params, why, sizeof why);
    if (ok && opt) {
        nn_adamw_init(opt, &m->params, 0.0f);
        opt_built = true;
        ok = nn_load_adamw(f, opt, why, sizeof why);
    }
    if (ok && ts)
        ok = load_train_state(f, ts, why, sizeof why);
    if (!ok) {
        snprintf(err, errlen, "checkpoint %s: %s", name, why);
        if (opt_built)
            nn_adamw_free(opt);
        if (model_built)
            gpt_free(m);
        vocab_free(v);
    }
    return ok;
}

bool gpt_ckpt_load(const char *path, gpt_model *m, gpt_vocab *v, nn_adamw *opt,
                   gpt_train_state *ts, char *err, size_t errlen)
{
    nn_st *f = nn_st_open(path, err, errlen);
    if (!f)
        return false;
    bool ok = gpt_ckpt_load_st(f, path, m, v, opt, ts, err, errlen);
    nn_st_close(f);
    return ok;
}
