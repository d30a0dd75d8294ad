/* model.c - token + position embeddings, n_layer Blocks, a final LayerNorm
 * and the lm_head Linear, as in gpt.py's BigramLanguageModel. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

bool gpt_config_check(const gpt_config *c, char *err, size_t errlen)
{
    const char *bad = c->vocab_size < 1   ? "vocab size must be at least 1"
                      : c->block_size < 1 ? "block size must be at least 1"
                      : c->n_embd < 1     ? "n_embd must be at least 1"
                      : c->n_head < 1     ? "n_head must be at least 1"
                      : c->n_layer < 1    ? "n_layer must be at least 1"
                      : !(c->dropout >= 0.0f && c->dropout < 1.0f) ? "dropout must be in [0, 1)"
                                                                   : NULL;
    if (bad) {
        snprintf(err, errlen, "%s", bad);
        return false;
    }
    if (c->n_embd % c->n_head != 0) {
        snprintf(err, errlen, "n_embd %lld is not divisible by n_head %d", (long long)c->n_embd,
                 c->n_head);
        return false;
    }
    return true;
}

bool gpt_init(gpt_model *m, const gpt_config *cfg, uint64_t seed, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (!gpt_config_check(cfg, err, errlen))
        return false;
    m->cfg = *cfg;
    nn_params_init(&m->params);
    ag_rng rng = ag_rng_new(seed);
    bool ok = nn_embedding_init(&m->tok, &m->params, "token_embedding_table", cfg->vocab_size,
                                cfg->n_embd, &rng) &&
              nn_embedding_init(&m->pos, &m->params, "position_embedding_table", cfg->block_size,
                                cfg->n_embd, &rng);
    m->blocks = calloc((size_t)cfg->n_layer, sizeof *m->blocks);
    char name[64];
    for (int i = 0; ok && m->blocks && i < cfg->n_layer; i++) {
        snprintf(name, sizeof name, "blocks.%d", i);
        ok = nn_block_init(&m->blocks[i], &m->params, name, cfg->n_embd, cfg->n_head, cfg->dropout,
                           &rng);
    }
    ok = ok && m->blocks && nn_layernorm_init(&m->ln_f, &m->params, "ln_f", cfg->n_embd) &&
         nn_linear_init(&m->lm_head, &m->params, "lm_head", cfg->n_embd, cfg->vocab_size, true, &rng);
    m->positions = ag_index_new(NULL, NULL, AG_SHAPE(cfg->block_size));
    for (int64_t t = 0; t < cfg->block_size; t++)
        m->positions->data[t] = (int32_t)t;
    if (!ok) {
        snprintf(err, errlen, "could not build the model");
        gpt_free(m);
    }
    return ok;
}

void gpt_free(gpt_model *m)
{
    for (int i = 0; m->blocks && i < m->cfg.n_layer; i++)
        nn_block_free(&m->blocks[i]);
    free(m->blocks);
    ag_index_free(m->positions);
    nn_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

/* The model, written once for every forward: the embeddings of idx (B, T) at
 * positions pos0 .. pos0+T-1, the blocks, ln_f, lm_head -> logits (B, T, V).
 * With kc each block attends over its cache; with last_only the last block
 * carries only the last position on, and the logits are (B, 1, V). */
static ag_tensor *logits_of(ag_ctx *c, const gpt_model *m, const ag_index *idx, int64_t pos0,
                            gpt_kv_cache *kc, bool last_only, bool training)
{
    int64_t T = idx->shape[idx->ndim - 1];
    ag_set_precision(c, m->precision);
    ag_index pos = *m->positions; /* positions pos0 .. pos0+T-1, as a view */
    pos.data += pos0;
    pos.shape[0] = T;
    pos.numel = T;
    ag_tensor *tok = nn_embedding_forward(c, &m->tok, idx);          /* (B, T, C) */
    ag_tensor *pe = nn_embedding_forward(c, &m->pos, &pos);          /* (T, C) */
    ag_tensor *x = ag_add(c, tok, pe);
    ag_release(c, tok);
    ag_release(c, pe);
    int L = m->cfg.n_layer;
    for (int i = 0; i < L; i++) {
        const nn_block *b = &m->blocks[i];
        ag_tensor *next = kc                         ? nn_block_forward_cached(c, b, &kc->layers[i], x)
                          : last_only && i == L - 1 ? nn_block_forward_last(c, b, x)
                                                    : nn_block_forward(c, b, x, training);
        ag_release(c, x);
        x = next;
    }
    ag_tensor *xf = nn_layernorm_forward(c, &m->ln_f, x);
    ag_release(c, x);
    ag_tensor *logits = nn_linear_forward(c, &m->lm_head, xf);       /* (B, T, V) */
    ag_release(c, xf);
    return logits;
}

static bool check_idx(const gpt_model *m, const ag_index *idx, const char *fn)
{
    if (idx->ndim != 2 || idx->shape[1] > m->cfg.block_size || idx->shape[1] < 1) {
        ag_error("%s: idx must be (B, T) with 1 <= T <= block_size %lld", fn,
                 (long long)m->cfg.block_size);
        return false;
    }
    return true;
}

ag_tensor *gpt_forward(ag_ctx *c, const gpt_model *m, const ag_index *idx, const ag_index *targets,
                       bool training, ag_tensor **loss)
{
    if (!check_idx(m, idx, "gpt_forward"))
        return NULL;
    int64_t B = idx->shape[0], T = idx->shape[1];
    ag_tensor *logits = logits_of(c, m, idx, 0, NULL, false, training);
    if (targets && loss) {
        if (targets->numel != B * T) {
            ag_error("gpt_forward: %lld targets for a (%lld, %lld) batch",
                     (long long)targets->numel, (long long)B, (long long)T);
            return NULL;
        }
        ag_index flat = *targets; /* (B*T) view */
        flat.ndim = 1;
        flat.shape[0] = B * T;
        ag_tensor *l2 = ag_reshape(c, logits, AG_SHAPE(B * T, m->cfg.vocab_size));
        *loss = ag_cross_entropy(c, l2, &flat, -100);
    }
    return logits;
}

ag_tensor *gpt_forward_last(ag_ctx *c, const gpt_model *m, const ag_index *idx)
{
    return check_idx(m, idx, "gpt_forward_last") ? logits_of(c, m, idx, 0, NULL, true, false) : NULL;
}

bool gpt_kv_cache_init(gpt_kv_cache *kc, const gpt_model *m)
{
    kc->n_layer = m->cfg.n_layer;
    kc->layers = calloc((size_t)kc->n_layer, sizeof *kc->layers);
    bool ok = kc->layers != NULL;
    for (int i = 0; ok && i < kc->n_layer; i++)
        ok = nn_kv_cache_init(&kc->layers[i], &m->blocks[i].sa, m->cfg.block_size);
    if (!ok)
        gpt_kv_cache_free(kc);
    return ok;
}

void gpt_kv_cache_free(gpt_kv_cache *kc)
{
    for (int i = 0; kc->layers && i < kc->n_layer; i++)
        nn_kv_cache_free(&kc->layers[i]);
    free(kc->layers);
    kc->layers = NULL;
    kc->n_layer = 0;
}

ag_tensor *gpt_forward_cached(ag_ctx *c, const gpt_model *m, gpt_kv_cache *kc, int32_t token)
{
    int64_t t = kc->layers[0].len;
    if (t >= m->cfg.block_size) {
        ag_error("gpt_forward_cached: the cache holds block_size %lld positions already",
                 (long long)m->cfg.block_size);
        return NULL;
    }
    ag_index *idx = ag_index_new(c, &token, AG_SHAPE(1, 1));
    return logits_of(c, m, idx, t, kc, false, false);
}
