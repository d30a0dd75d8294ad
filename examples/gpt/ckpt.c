/* ckpt.c - saving and loading the GPT example's checkpoints. */
#include "ckpt.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT "agrad-gpt/1"

/* metadata values of the table's types (INT, FLOAT), and U64 for the generators' state */
static void meta_INT(nn_st_writer *w, const char *k, int64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "%" PRId64, v);
    nn_st_add_meta(w, k, b);
}

static void meta_U64(nn_st_writer *w, const char *k, uint64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, v);
    nn_st_add_meta(w, k, b);
}

static void meta_FLOAT(nn_st_writer *w, const char *k, double v)
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
    meta_INT(w, "vocab_size", m->cfg.vocab_size);
#define X(field, type, flag, def, min, max, commands, kept, help) \
    GPT_IF(MODEL, kept, meta_##type(w, #field, m->cfg.field);)
    GPT_OPTIONS(X)
#undef X
    nn_st_add_params(w, &m->params);
    if (opt)
        nn_st_add_adamw(w, opt);
    if (ts) {
        meta_INT(w, "train.step", ts->step);
        meta_INT(w, "train.evaluated_at", ts->evaluated_at);
        meta_U64(w, "train.rng.batch.seed", ts->batch_rng.seed);
        meta_U64(w, "train.rng.batch.counter", ts->batch_rng.counter);
        meta_U64(w, "train.rng.eval.seed", ts->eval_rng.seed);
        meta_U64(w, "train.rng.eval.counter", ts->eval_rng.counter);
        meta_U64(w, "train.rng.dropout.seed", ts->dropout_rng.seed);
        meta_U64(w, "train.rng.dropout.counter", ts->dropout_rng.counter);
#define X(field, type, flag, def, min, max, commands, kept, help) \
        GPT_IF(TRAIN, kept, meta_##type(w, "train." #field, ts->field);)
        GPT_OPTIONS(X)
#undef X
    }
    bool ok = nn_st_write(w, path, err, errlen);
    nn_st_writer_free(w);
    return ok;
}

/* Strictly parsed metadata numbers; false (with err) when missing or malformed. */
static bool get_INT(const nn_st *f, const char *k, int64_t *out, char *err, size_t errlen)
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

static bool get_U64(const nn_st *f, const char *k, uint64_t *out, char *err, size_t errlen)
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

static bool get_FLOAT(const nn_st *f, const char *k, double *out, char *err, size_t errlen)
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
 * set: the train loop divides by eval_interval, and a batch size of 0 or a
 * negative learning rate makes no sense. */
static bool in_range(const char *flag, double v, double min, double max, char *err, size_t errlen)
{
    if (v >= min && v <= max) /* false for NaN */
        return true;
    snprintf(err, errlen, "training state: %s %g is out of range [%g, %g]", flag, v, min, max);
    return false;
}

static bool load_train_state(const nn_st *f, gpt_train_state *t, char *e, size_t n)
{
    bool ok = get_INT(f, "train.step", &t->step, e, n) &&
              get_INT(f, "train.evaluated_at", &t->evaluated_at, e, n) &&
              get_U64(f, "train.rng.batch.seed", &t->batch_rng.seed, e, n) &&
              get_U64(f, "train.rng.batch.counter", &t->batch_rng.counter, e, n) &&
              get_U64(f, "train.rng.eval.seed", &t->eval_rng.seed, e, n) &&
              get_U64(f, "train.rng.eval.counter", &t->eval_rng.counter, e, n) &&
              get_U64(f, "train.rng.dropout.seed", &t->dropout_rng.seed, e, n) &&
              get_U64(f, "train.rng.dropout.counter", &t->dropout_rng.counter, e, n);
#define X(field, type, flag, def, min, max, commands, kept, help) \
    GPT_IF(TRAIN, kept, ok = ok && get_##type(f, "train." #field, &t->field, e, n);)
    GPT_OPTIONS(X)
#undef X
    if (ok && (t->step < 0 || t->evaluated_at < -1)) {
        snprintf(e, n, "training state: step %lld, evaluated at %lld", (long long)t->step,
                 (long long)t->evaluated_at);
        return false;
    }
#define X(field, type, flag, def, min, max, commands, kept, help) \
    GPT_IF(TRAIN, kept, ok = ok && in_range(flag, (double)t->field, min, max, e, n);)
    GPT_OPTIONS(X)
#undef X
    return ok;
}

void gpt_train_state_settings(gpt_train_state *ts, const gpt_options *o)
{
#define X(field, type, flag, def, min, max, commands, kept, help) \
    GPT_IF(TRAIN, kept, ts->field = o->field;)
    GPT_OPTIONS(X)
#undef X
}

static bool given(cli_opt *t, int n, const char *flag)
{
    const cli_opt *c = cli_find(t, n, flag);
    return c && c->set;
}

/* A flag that shapes the weights, given explicitly or by a preset, must equal
 * the checkpoint's: otherwise the checkpoint is from another configuration. */
static bool agrees(cli_opt *t, int n, const gpt_options *o, const char *flag, int64_t value,
                   int64_t ckpt, char *err, size_t errlen)
{
    if ((given(t, n, flag) || o->preset) && value != ckpt) {
        snprintf(err, errlen, "--%s %lld does not match the checkpoint's %lld (a checkpoint from "
                 "another configuration)", flag, (long long)value, (long long)ckpt);
        return false;
    }
    return true;
}

bool gpt_options_resume(gpt_options *o, cli_opt *t, int n, const gpt_config *cfg,
                        const gpt_train_state *ts, char *err, size_t errlen)
{
    /* the first that disagrees is named, block_size (the context, not the
     * network) after the others */
    bool ok = true;
#define X(field, type, flag, def, min, max, commands, kept, help)      \
    GPT_IF(SHAPE, kept, ok = ok && (strcmp(#field, "block_size") == 0 || \
                                    agrees(t, n, o, flag, o->field, cfg->field, err, errlen));)
    GPT_OPTIONS(X)
#undef X
    if (!ok || !agrees(t, n, o, "block-size", o->block_size, cfg->block_size, err, errlen))
        return false;
    /* the checkpoint's model; the run's own settings unless given again now */
#define X(field, type, flag, def, min, max, commands, kept, help) \
    GPT_IF(MODEL, kept, o->field = cfg->field;)                   \
    GPT_IF(TRAIN, kept, if (!given(t, n, flag)) o->field = ts->field;)
    GPT_OPTIONS(X)
#undef X
    return true;
}

/* The model config and vocabulary in f's metadata, bounded so that building
 * the model cannot allocate much more than the file holds. */
static bool read_config(const nn_st *f, gpt_config *cfg, gpt_vocab *v, char *why, size_t n)
{
    const char *format = nn_st_meta(f, "format");
    if (!format || strcmp(format, FORMAT) != 0) {
        snprintf(why, n, "not a GPT checkpoint of this program (format \"%s\", want \"%s\")",
                 format ? format : "missing", FORMAT);
        return false;
    }
    int64_t vs;
    gpt_options c = {0}; /* the MODEL and SHAPE rows as the file has them */
    bool ok = get_INT(f, "vocab_size", &vs, why, n);
#define X(field, type, flag, def, min, max, commands, kept, help) \
    GPT_IF(MODEL, kept, ok = ok && get_##type(f, #field, &c.field, why, n);)
    GPT_OPTIONS(X)
#undef X
    const char *vocab = nn_st_meta(f, "vocab");
    if (ok && !vocab) {
        snprintf(why, n, "metadata \"vocab\" is missing");
        ok = false;
    }
    ok = ok && vocab_from_utf8(v, vocab, why, n);
    if (ok && v->size != vs) {
        snprintf(why, n, "vocabulary has %d characters but vocab_size is %lld", v->size,
                 (long long)vs);
        ok = false;
    }
    /* bounds before the casts to gpt_config's fields: a corrupt file must not build a huge model */
    if (ok && (c.n_head < 1 || c.n_head > 4096 || c.n_layer < 1 || c.n_layer > 4096 ||
               c.block_size < 1 || c.block_size > (1 << 20) || c.n_embd < 1 ||
               c.n_embd > (1 << 16))) {
        snprintf(why, n, "model sizes out of range");
        ok = false;
    }
    /* (float)dropout is undefined behaviour past FLT_MAX ("1e39"): check the double */
    if (ok && !(c.dropout >= 0.0 && c.dropout < 1.0)) {
        snprintf(why, n, "dropout %g is not in [0, 1)", c.dropout);
        ok = false;
    }
    /* Every parameter is stored in the file, so the model cannot need more
     * floats than the file has data bytes / 4. The sizes above still allow
     * terabytes (n_embd 65536, n_layer 4096) that a corrupt header of a few
     * bytes would make gpt_init allocate before any shape is checked; the
     * embeddings, lm_head and each block's 12 n_embd^2 matrix weights are a
     * lower bound on the model that is checked here (no overflow: < 2^58
     * within the bounds), the exact count once it is built. */
    uint64_t data_floats = nn_st_data_size(f) / 4;
    if (ok) {
        uint64_t C = (uint64_t)c.n_embd, least = 2 * (uint64_t)vs * C + (uint64_t)c.block_size * C +
                                                 12 * C * C * (uint64_t)c.n_layer;
        if (least > data_floats) {
            snprintf(why, n, "a model of these sizes has more than %llu parameters; the file holds %llu",
                     (unsigned long long)least, (unsigned long long)data_floats);
            ok = false;
        }
    }
    if (ok)
        *cfg = gpt_options_config(&c, vs);
    return ok;
}

bool gpt_ckpt_load_st(const nn_st *f, const char *name, gpt_model *m, gpt_vocab *v,
                      nn_adamw *opt, gpt_train_state *ts, char *err, size_t errlen)
{
    char why[400] = "";
    memset(m, 0, sizeof *m);
    memset(v, 0, sizeof *v);
    bool model_built = false, opt_built = false;
    gpt_config cfg;
    uint64_t data_floats = nn_st_data_size(f) / 4;
    bool ok = read_config(f, &cfg, v, why, sizeof why);
    ok = ok && (model_built = gpt_init(m, &cfg, 0, why, sizeof why));
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
