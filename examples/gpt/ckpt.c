/* ckpt.c - saving and loading the GPT example's checkpoints. */
#include "ckpt.h"

#include <inttypes.h>
#include <math.h>
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
    nn_st_add_meta(w, "precision", ag_precision_name(m->precision)); /* the weights stay F32 */
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
        meta_FLOAT(w, "train.elapsed_s", ts->elapsed_s);
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
    /* optional: older checkpoints lack it */
    t->elapsed_s = 0;
    if (ok && nn_st_meta(f, "train.elapsed_s") &&
        (!get_FLOAT(f, "train.elapsed_s", &t->elapsed_s, e, n) ||
         !in_range("train.elapsed_s", t->elapsed_s, 0, 1e12, e, n)))
        ok = false;
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
        snprintf(why, n, "not a GPT checkpoint of this program (format \"%s\", want \"%s\")%s",
                 format ? format : "missing", FORMAT,
                 nn_st_has(f, "token_embedding_table.weight")
                     ? ": a PyTorch state_dict has no training state to resume; start from its "
                       "weights with --init-from"
                     : "");
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

/* gpt_ckpt_load_st, the model made with dropout instead of the file's when it is >= 0 */
static bool load_st(const nn_st *f, const char *name, gpt_model *m, gpt_vocab *v, nn_adamw *opt,
                    gpt_train_state *ts, double dropout, char *err, size_t errlen)
{
    char why[400] = "";
    memset(m, 0, sizeof *m);
    memset(v, 0, sizeof *v);
    bool model_built = false, opt_built = false;
    gpt_config cfg;
    uint64_t data_floats = nn_st_data_size(f) / 4;
    bool ok = read_config(f, &cfg, v, why, sizeof why);
    if (ok && dropout >= 0)
        cfg.dropout = (float)dropout;
    ok = ok && (model_built = gpt_init(m, &cfg, 0, why, sizeof why));
    if (ok && (uint64_t)nn_params_numel(&m->params) > data_floats) {
        snprintf(why, sizeof why, "the model has %lld parameters; the file holds %llu",
                 (long long)nn_params_numel(&m->params), (unsigned long long)data_floats);
        ok = false;
    }
    ok = ok && nn_load_params(f, &m->params, why, sizeof why);
    /* the products' precision; checkpoints written before it was kept trained in fp32 */
    const char *prec = nn_st_meta(f, "precision");
    if (ok && prec && !ag_precision_from_name(prec, &m->precision)) {
        snprintf(why, sizeof why, "metadata \"precision\" is \"%.40s\", not fp32 or bf16", prec);
        ok = false;
    }
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

bool gpt_ckpt_load_st(const nn_st *f, const char *name, gpt_model *m, gpt_vocab *v,
                      nn_adamw *opt, gpt_train_state *ts, char *err, size_t errlen)
{
    return load_st(f, name, m, v, opt, ts, -1, err, errlen);
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

/* ------------------------------------------------------------ weights from PyTorch */

#define TOK "token_embedding_table.weight"
#define POS "position_embedding_table.weight"

/* gpt.py's name for a tensor kept in its state_dict that is not a parameter:
 * each head's causal mask, blocks.<i>.sa.heads.<h>.tril */
static bool is_tril(const char *name)
{
    int i, h, used = 0;
    return sscanf(name, "blocks.%d.sa.heads.%d.tril%n", &i, &h, &used) == 2 &&
           (size_t)used == strlen(name) && i >= 0 && h >= 0;
}

static bool copy_vocab(gpt_vocab *dst, const gpt_vocab *src)
{
    dst->chars = malloc((size_t)src->size * sizeof *dst->chars);
    if (!dst->chars)
        return false;
    memcpy(dst->chars, src->chars, (size_t)src->size * sizeof *dst->chars);
    dst->size = src->size;
    return true;
}

/* A state_dict's model config, from its shapes, and its vocabulary (given,
 * or metadata "vocab" if its writer added one); bounded as read_config is. */
static bool torch_config(const nn_st *f, const gpt_weights_opts *wo, gpt_config *cfg,
                         gpt_vocab *v, char *why, size_t n)
{
    int nd = 0, nd2 = 0;
    int64_t tok[AG_MAX_DIMS], pos[AG_MAX_DIMS];
    if (!nn_st_shape(f, TOK, &nd, tok) || nd != 2 || tok[0] < 1 || tok[1] < 1) {
        snprintf(why, n, "a state_dict's " TOK " must be (vocab_size, n_embd)");
        return false;
    }
    if (!nn_st_shape(f, POS, &nd2, pos) || nd2 != 2 || pos[0] < 1 || pos[1] != tok[1]) {
        snprintf(why, n, "a state_dict's " POS " must be (block_size, %lld) beside " TOK,
                 (long long)tok[1]);
        return false;
    }
    /* as many blocks and heads as the names say (each name is a tensor, so
     * the counts are bounded by the file) */
    char name[96];
    int layers = 0, heads = 0;
    for (;; layers++) {
        snprintf(name, sizeof name, "blocks.%d.ln1.weight", layers);
        if (!nn_st_has(f, name))
            break;
    }
    for (;; heads++) {
        snprintf(name, sizeof name, "blocks.0.sa.heads.%d.key.weight", heads);
        if (!nn_st_has(f, name))
            break;
    }
    if (!layers || !heads) {
        snprintf(why, n, "a state_dict of gpt.py's model has blocks.0.ln1.weight and "
                 "blocks.0.sa.heads.0.key.weight; this one lacks %s",
                 !layers ? "blocks.0.ln1.weight" : "blocks.0.sa.heads.0.key.weight");
        return false;
    }
    int64_t C = tok[1];
    if (C > (1 << 16) || pos[0] > (1 << 20) || C % heads != 0) {
        snprintf(why, n, "model sizes out of range (n_embd %lld, block_size %lld, %d heads)",
                 (long long)C, (long long)pos[0], heads);
        return false;
    }
    /* as read_config: a lower bound on the model against the data's floats */
    uint64_t least = 2 * (uint64_t)tok[0] * (uint64_t)C + (uint64_t)pos[0] * (uint64_t)C +
                     12 * (uint64_t)C * (uint64_t)C * (uint64_t)layers;
    if (least > nn_st_data_size(f) / 4) {
        snprintf(why, n, "a model of these sizes has more than %llu parameters; the file holds %llu",
                 (unsigned long long)least, (unsigned long long)(nn_st_data_size(f) / 4));
        return false;
    }
    const char *meta_vocab = nn_st_meta(f, "vocab");
    if (wo && wo->vocab) {
        if (!copy_vocab(v, wo->vocab)) {
            snprintf(why, n, "out of memory");
            return false;
        }
    } else if (meta_vocab) {
        if (!vocab_from_utf8(v, meta_vocab, why, n))
            return false;
    } else {
        snprintf(why, n, "a PyTorch state_dict has no vocabulary: give the training text "
                 "(--data FILE) or a vocabulary file (--vocab FILE)");
        return false;
    }
    if (v->size != tok[0]) {
        snprintf(why, n, "the vocabulary%s%s has %d characters but " TOK " has %lld rows (was the "
                 "model trained on another text?)", wo && wo->vocab ? " of " : "",
                 wo && wo->vocab && wo->vocab_source ? wo->vocab_source : "", v->size,
                 (long long)tok[0]);
        vocab_free(v);
        return false;
    }
    *cfg = (gpt_config){.vocab_size = tok[0], .block_size = pos[0], .n_embd = C, .n_head = heads,
                        .n_layer = layers,
                        .dropout = wo && wo->dropout > 0 ? (float)wo->dropout : 0.0f};
    return true;
}

/* m's parameters from a state_dict: each checked (shape, F32, finite), every
 * other tensor a tril buffer of the right shape, then all copied; with
 * gpt.py's n_embd^-0.5 attention the query weights take the factor between
 * it and this model's head_size^-0.5. */
static bool torch_params(const nn_st *f, gpt_model *m, bool n_embd_scale, char *why, size_t n)
{
    nn_params *p = &m->params;
    for (int i = 0; i < p->n; i++) {
        const ag_tensor *t = p->items[i];
        if (!nn_st_check(f, t->name, t->ndim, t->shape, why, n) ||
            !nn_st_finite(f, t->name, why, n))
            return false;
    }
    int64_t T = m->cfg.block_size;
    for (int i = 0; i < nn_st_count(f); i++) {
        const char *name = nn_st_name(f, i);
        if (nn_params_find(p, name))
            continue;
        if (!is_tril(name)) {
            snprintf(why, n, "tensor \"%s\" in the file is not a parameter of gpt.py's model", name);
            return false;
        }
        int nd;
        int64_t s[AG_MAX_DIMS];
        nn_st_shape(f, name, &nd, s);
        if (nd != 2 || s[0] != T || s[1] != T) {
            snprintf(why, n, "buffer \"%s\" is not (%lld, %lld), the block size", name,
                     (long long)T, (long long)T);
            return false;
        }
    }
    for (int i = 0; i < p->n; i++) {
        ag_tensor *t = p->items[i];
        nn_st_read(f, t->name, t->data, t->ndim, t->shape, why, n);
    }
    if (n_embd_scale) {
        float k = (float)sqrt(1.0 / m->cfg.n_head); /* head_size / n_embd */
        char name[96];
        for (int l = 0; l < m->cfg.n_layer; l++)
            for (int h = 0; h < m->cfg.n_head; h++) {
                snprintf(name, sizeof name, "blocks.%d.sa.heads.%d.query.weight", l, h);
                ag_tensor *q = nn_params_find(p, name);
                for (int64_t j = 0; q && j < q->numel; j++)
                    q->data[j] *= k;
            }
    }
    return true;
}

bool gpt_weights_load_st(const nn_st *f, const char *name, const gpt_weights_opts *wo,
                         gpt_model *m, gpt_vocab *v, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    memset(v, 0, sizeof *v);
    const char *scale = wo && wo->attention_scale ? wo->attention_scale : "n_embd";
    if (strcmp(scale, "n_embd") != 0 && strcmp(scale, "head_size") != 0) {
        snprintf(err, errlen, "attention scale \"%s\": choose n_embd (gpt.py's) or head_size", scale);
        return false;
    }
    const char *format = nn_st_meta(f, "format");
    bool ours = format && strcmp(format, FORMAT) == 0;
    if (ours) {
        if (!load_st(f, name, m, v, NULL, NULL, wo ? wo->dropout : -1, err, errlen))
            return false;
        if (wo && wo->vocab && !vocab_equal(wo->vocab, v)) {
            snprintf(err, errlen, "checkpoint %s: the vocabulary of %s differs from the "
                     "checkpoint's", name, wo->vocab_source ? wo->vocab_source : "the text given");
            gpt_free(m);
            vocab_free(v);
            return false;
        }
        return true;
    }
    char why[400] = "";
    gpt_config cfg;
    bool ok = nn_st_has(f, TOK);
    if (!ok)
        snprintf(why, sizeof why, "not a GPT checkpoint of this program (format \"%s\", want \"%s\") "
                 "nor a state_dict of gpt.py's model (no " TOK ")", format ? format : "missing",
                 FORMAT);
    ok = ok && torch_config(f, wo, &cfg, v, why, sizeof why);
    bool built = ok && gpt_init(m, &cfg, 0, why, sizeof why);
    ok = built && torch_params(f, m, strcmp(scale, "n_embd") == 0, why, sizeof why);
    if (!ok) {
        snprintf(err, errlen, "checkpoint %s: %s", name, why);
        if (built)
            gpt_free(m);
        vocab_free(v);
    }
    return ok;
}

bool gpt_weights_load(const char *path, const gpt_weights_opts *wo, gpt_model *m, gpt_vocab *v,
                      char *err, size_t errlen)
{
    nn_st *f = nn_st_open(path, err, errlen);
    if (!f)
        return false;
    bool ok = gpt_weights_load_st(f, path, wo, m, v, err, errlen);
    nn_st_close(f);
    return ok;
}

bool gpt_init_from(gpt_model *m, gpt_options *o, cli_opt *t, int n, const gpt_vocab *vocab,
                   char *err, size_t errlen)
{
    gpt_weights_opts wo = {vocab, o->data, o->attention_scale, o->dropout};
    gpt_vocab v;
    if (!gpt_weights_load(o->init_from, &wo, m, &v, err, errlen))
        return false;
    vocab_free(&v);
    const gpt_config *cfg = &m->cfg;
    char why[300];
    bool ok = true;
#define X(field, type, flag, def, min, max, commands, kept, help)      \
    GPT_IF(SHAPE, kept, ok = ok && (strcmp(#field, "block_size") == 0 || \
                                    agrees(t, n, o, flag, o->field, cfg->field, why, sizeof why));)
    GPT_OPTIONS(X)
#undef X
    if (!ok || !agrees(t, n, o, "block-size", o->block_size, cfg->block_size, why, sizeof why)) {
        snprintf(err, errlen, "cannot start from %s: %s", o->init_from, why);
        gpt_free(m);
        return false;
    }
#define X(field, type, flag, def, min, max, commands, kept, help) \
    GPT_IF(SHAPE, kept, o->field = cfg->field;)
    GPT_OPTIONS(X)
#undef X
    return true;
}
