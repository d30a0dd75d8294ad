/* model.c - the Llama-style character model (model.h). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool layer_init(llama_layer *L, nn_params *p, int64_t l, const llama_config *cfg,
                       ag_rng *rng)
{
    char pre[64], name[96];
    int64_t C = cfg->n_embd;
    float std = 0.02f, resid_std = 0.02f / sqrtf(2.0f * (float)cfg->n_layer);
    snprintf(pre, sizeof pre, "layers.%lld", (long long)l);
    nn_linear *w[4] = {&L->wq, &L->wk, &L->wv, &L->wo};
    const char *wn[4] = {"wq", "wk", "wv", "wo"};
    bool ok = true;
    for (int k = 0; ok && k < 4; k++) {
        snprintf(name, sizeof name, "%s.attention.%s", pre, wn[k]);
        ok = nn_linear_init(w[k], p, name, C, C, false, rng);
        if (ok)
            ag_fill_normal(w[k]->weight, rng, 0.0f, k == 3 ? resid_std : std);
    }
    snprintf(name, sizeof name, "%s.feed_forward", pre);
    ok = ok && nn_swiglu_init(&L->feed_forward, p, name, C, cfg->ffn_hidden, rng);
    if (ok) {
        ag_fill_normal(L->feed_forward.w1.weight, rng, 0.0f, std);
        ag_fill_normal(L->feed_forward.w2.weight, rng, 0.0f, resid_std);
        ag_fill_normal(L->feed_forward.w3.weight, rng, 0.0f, std);
    }
    snprintf(name, sizeof name, "%s.attention_norm", pre);
    ok = ok && nn_rmsnorm_init(&L->attention_norm, p, name, C, cfg->norm_eps);
    snprintf(name, sizeof name, "%s.ffn_norm", pre);
    return ok && nn_rmsnorm_init(&L->ffn_norm, p, name, C, cfg->norm_eps);
}

bool llama_init(llama *m, const llama_config *cfg, uint64_t seed, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (cfg->vocab_size < 1 || cfg->block_size < 1 || cfg->n_embd < 1 || cfg->n_head < 1 ||
        cfg->n_layer < 1 || cfg->ffn_hidden < 1 || cfg->n_embd % cfg->n_head ||
        (cfg->n_embd / cfg->n_head) % 2) {
        snprintf(err, errlen, "sizes must be positive and n_embd / n_head even (RoPE turns pairs); "
                 "got n_embd %lld, n_head %lld", (long long)cfg->n_embd, (long long)cfg->n_head);
        return false;
    }
    nn_params_init(&m->params);
    ag_rng rng = ag_rng_new(seed);
    bool ok = nn_embedding_init(&m->tok_embeddings, &m->params, "tok_embeddings", cfg->vocab_size,
                                cfg->n_embd, &rng);
    if (ok)
        ag_fill_normal(m->tok_embeddings.weight, &rng, 0.0f, 0.02f);
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    for (int64_t l = 0; ok && l < cfg->n_layer; l++)
        ok = layer_init(&m->layers[l], &m->params, l, cfg, &rng);
    ok = ok && nn_rmsnorm_init(&m->norm, &m->params, "norm", cfg->n_embd, cfg->norm_eps);
    ok = ok && nn_linear_init_tied(&m->output, &m->params, "output", m->tok_embeddings.weight,
                                   false, &rng);
    ok = ok && nn_rope_init(&m->rope, cfg->block_size, cfg->n_embd / cfg->n_head, cfg->rope_theta);
    m->window = malloc((size_t)cfg->block_size * sizeof *m->window);
    if (!ok) {
        snprintf(err, errlen, "cannot build the model");
        llama_free(m);
    }
    return ok;
}

void llama_free(llama *m)
{
    nn_params_free(&m->params);
    nn_rope_free(&m->rope);
    free(m->layers);
    free(m->window);
    m->layers = NULL;
    m->window = NULL;
}

/* x (B, T, C) through w, as heads (B, H, T, hs): Linear, then the heads'
 * axis moved before the positions (one copy: tensors have no strides). */
static ag_tensor *heads(ag_ctx *c, const llama *m, const nn_linear *w, ag_tensor *x)
{
    int64_t B = x->shape[0], T = x->shape[1], H = m->cfg.n_head, hs = m->cfg.n_embd / H;
    ag_tensor *y = nn_linear_forward(c, w, x);                                  /* (B, T, C) */
    ag_tensor *v = ag_reshape(c, y, AG_SHAPE(B, T, H, hs));
    ag_tensor *out = ag_transpose(c, v, 1, 2);                                  /* (B, H, T, hs) */
    ag_release(c, y);
    ag_release(c, v);
    return out;
}

/* Causal self-attention with RoPE on q and k: (B, T, C) -> (B, T, C), the
 * heads' attention one ag_attention_qkv op over (B, H, T, hs) q, k, v. */
static ag_tensor *attention(ag_ctx *c, const llama *m, const llama_layer *L, ag_tensor *x)
{
    int64_t B = x->shape[0], T = x->shape[1], C = m->cfg.n_embd, hs = C / m->cfg.n_head;
    ag_tensor *q0 = heads(c, m, &L->wq, x), *k0 = heads(c, m, &L->wk, x);
    ag_tensor *q = nn_rope_forward(c, &m->rope, q0, -2, 0);
    ag_tensor *k = nn_rope_forward(c, &m->rope, k0, -2, 0);
    ag_tensor *v = heads(c, m, &L->wv, x);
    ag_tensor *att = ag_attention_qkv(c, q, k, v, NULL, true, 1.0f / sqrtf((float)hs), 0.0f,
                                      false);                                   /* (B, H, T, hs) */
    ag_tensor *bt = ag_transpose(c, att, 1, 2);                                 /* (B, T, H, hs) */
    ag_tensor *y = ag_reshape(c, bt, AG_SHAPE(B, T, C));
    ag_tensor *out = nn_linear_forward(c, &L->wo, y);
    ag_tensor *tmp[] = {q0, k0, q, k, v, att, bt, y};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    return out;
}

/* x + attention(attention_norm(x)), then + feed_forward(ffn_norm(.)) */
static ag_tensor *block(ag_ctx *c, const llama *m, const llama_layer *L, ag_tensor *x)
{
    ag_tensor *h = nn_rmsnorm_forward(c, &L->attention_norm, x);
    ag_tensor *a = attention(c, m, L, h);
    ag_tensor *r = ag_add(c, x, a);
    ag_tensor *h2 = nn_rmsnorm_forward(c, &L->ffn_norm, r);
    ag_tensor *f = nn_swiglu_forward(c, &L->feed_forward, h2);
    ag_tensor *out = ag_add(c, r, f);
    ag_tensor *tmp[] = {h, a, r, h2, f};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    return out;
}

ag_tensor *llama_forward(ag_ctx *c, const llama *m, const ag_index *idx, const ag_index *targets,
                         ag_tensor **loss)
{
    int64_t B = idx->shape[0], T = idx->shape[1], V = m->cfg.vocab_size;
    if (T > m->cfg.block_size) {
        ag_error("llama_forward: %lld positions, more than block_size %lld", (long long)T,
                 (long long)m->cfg.block_size);
        return NULL;
    }
    ag_tensor *x = nn_embedding_forward(c, &m->tok_embeddings, idx);          /* (B, T, C) */
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        ag_tensor *y = block(c, m, &m->layers[l], x);
        ag_release(c, x);
        x = y;
    }
    ag_tensor *xn = nn_rmsnorm_forward(c, &m->norm, x);
    ag_tensor *logits = nn_linear_forward(c, &m->output, xn);                 /* (B, T, V) */
    ag_release(c, x);
    ag_release(c, xn);
    if (targets && loss) {
        ag_index flat = *targets;
        flat.ndim = 1;
        flat.shape[0] = B * T;
        ag_tensor *l2 = ag_reshape(c, logits, AG_SHAPE(B * T, V));
        *loss = ag_cross_entropy(c, l2, &flat, -100);
        ag_release(c, l2);
    }
    return logits;
}

void llama_reset(llama *m) { m->len = 0; }

const float *llama_step(ag_ctx *c, llama *m, int32_t token)
{
    int64_t Tm = m->cfg.block_size;
    if (m->len == Tm) { /* crop to the last block_size tokens */
        memmove(m->window, m->window + 1, (size_t)(Tm - 1) * sizeof *m->window);
        m->len--;
    }
    m->window[m->len++] = token;
    ag_tensor *logits = llama_forward(c, m, ag_index_new(c, m->window, AG_SHAPE(1, m->len)), NULL,
                                      NULL);
    return logits ? logits->data + (m->len - 1) * m->cfg.vocab_size : NULL;
}
