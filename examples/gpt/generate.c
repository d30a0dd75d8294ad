/* generate.c - autoregressive sampling with temperature and top-k. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Draws a token from logits (V) after temperature and top-k. */
static int32_t pick(float *logits, float *tmp, int64_t V, const gpt_sample_opts *o, ag_rng *rng)
{
    for (int64_t i = 0; i < V; i++)
        logits[i] /= o->temperature;
    if (o->top_k > 0 && o->top_k < V) {
        /* the k-th largest value by partial selection; ties above it stay in */
        memcpy(tmp, logits, (size_t)V * sizeof *tmp);
        for (int64_t k = 0; k < o->top_k; k++) {
            int64_t best = k;
            for (int64_t i = k + 1; i < V; i++)
                if (tmp[i] > tmp[best])
                    best = i;
            float t = tmp[k];
            tmp[k] = tmp[best];
            tmp[best] = t;
        }
        float kth = tmp[o->top_k - 1];
        for (int64_t i = 0; i < V; i++)
            if (logits[i] < kth)
                logits[i] = -INFINITY;
    }
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < V; i++)
        sum += exp((double)logits[i] - mx);
    double u = ag_rng_uniform(rng) * sum, acc = 0;
    for (int64_t i = 0; i < V; i++) {
        acc += exp((double)logits[i] - mx);
        if (u < acc)
            return (int32_t)i;
    }
    for (int64_t i = V - 1; i >= 0; i--) /* rounding left u at the very top */
        if (logits[i] > -INFINITY)
            return (int32_t)i;
    return 0;
}

/* Keys and values of every layer for the positions seen so far, and the
 * heads' stacked query/key/value weights, for one-position steps. */
typedef struct {
    ag_ctx *keep;        /* holds the stacked weights for the whole generation */
    ag_tensor **wqkv;    /* per layer (3C, C): all queries, all keys, all values */
    float **k, **v;      /* per layer (block_size, C), head h in columns h*hs.. */
    float *scores;       /* (block_size): one head's attention weights */
    int64_t len;         /* positions cached */
} kv_cache;

static void cache_init(kv_cache *kc, const gpt_model *m)
{
    int L = m->cfg.n_layer;
    int64_t C = m->cfg.n_embd, T = m->cfg.block_size;
    kc->keep = ag_ctx_new();
    ag_set_grad_enabled(kc->keep, false);
    kc->wqkv = calloc((size_t)L, sizeof *kc->wqkv);
    kc->k = calloc((size_t)L, sizeof *kc->k);
    kc->v = calloc((size_t)L, sizeof *kc->v);
    for (int l = 0; l < L; l++) {
        kc->wqkv[l] = nn_mha_qkv_weight(kc->keep, &m->blocks[l].sa);
        kc->k[l] = malloc((size_t)(T * C) * sizeof(float));
        kc->v[l] = malloc((size_t)(T * C) * sizeof(float));
    }
    kc->scores = malloc((size_t)T * sizeof *kc->scores);
    kc->len = 0;
}

static void cache_free(kv_cache *kc, const gpt_model *m)
{
    for (int l = 0; l < m->cfg.n_layer; l++) {
        free(kc->k[l]);
        free(kc->v[l]);
    }
    free(kc->k);
    free(kc->v);
    free(kc->wqkv);
    free(kc->scores);
    ag_ctx_free(kc->keep);
}

/* Causal attention of one new position over the cached ones, per head:
 * qkv (3C) holds this position's query, key and value; out (C). */
static void attend(const kv_cache *kc, int l, const float *qkv, int64_t t, int nh, int64_t hs,
                   float *out)
{
    int64_t C = nh * hs;
    float *scores = kc->scores;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < nh; h++) {
        const float *q = qkv + h * hs;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
            const float *kj = kc->k[l] + j * C + h * hs;
            float s = 0;
            for (int64_t d = 0; d < hs; d++)
                s += q[d] * kj[d];
            scores[j] = s * scale;
            mx = scores[j] > mx ? scores[j] : mx;
        }
        float sum = 0;
        for (int64_t j = 0; j <= t; j++) {
            scores[j] = expf(scores[j] - mx);
            sum += scores[j];
        }
        float *o = out + h * hs;
        for (int64_t d = 0; d < hs; d++)
            o[d] = 0;
        for (int64_t j = 0; j <= t; j++) {
            const float *vj = kc->v[l] + j * C + h * hs;
            float p = scores[j] / sum;
            for (int64_t d = 0; d < hs; d++)
                o[d] += p * vj[d];
        }
    }
}

/* Logits (V) of the next token after `token` at position kc->len, which it
 * appends to the cache: the model's forward for one position, in no-grad mode. */
static const float *step_cached(ag_ctx *c, const gpt_model *m, kv_cache *kc, int32_t token)
{
    int64_t C = m->cfg.n_embd, t = kc->len;
    int nh = m->cfg.n_head;
    int64_t hs = C / nh;
    ag_index *ti = ag_index_new(c, &token, AG_SHAPE(1, 1));
    int32_t pos = (int32_t)t;
    ag_index *pi = ag_index_new(c, &pos, AG_SHAPE(1));
    ag_tensor *x = ag_add(c, nn_embedding_forward(c, &m->tok, ti),      /* (1, 1, C) */
                          nn_embedding_forward(c, &m->pos, pi));
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const nn_block *b = &m->blocks[l];
        ag_tensor *a = nn_layernorm_forward(c, &b->ln1, x);
        ag_tensor *qkv = ag_matmul_nt(c, a, kc->wqkv[l]);                /* (1, 1, 3C) */
        memcpy(kc->k[l] + t * C, qkv->data + C, (size_t)C * sizeof(float));
        memcpy(kc->v[l] + t * C, qkv->data + 2 * C, (size_t)C * sizeof(float));
        ag_tensor *o = ag_empty(c, AG_SHAPE(1, 1, C));
        attend(kc, l, qkv->data, t, nh, hs, o->data);
        x = ag_add(c, x, nn_linear_forward(c, &b->sa.proj, o));
        x = ag_add(c, x, nn_feedforward_forward(c, &b->ffwd, nn_layernorm_forward(c, &b->ln2, x),
                                                false));
    }
    ag_tensor *logits = nn_linear_forward(c, &m->lm_head, nn_layernorm_forward(c, &m->ln_f, x));
    kc->len++;
    return logits ? logits->data : NULL;
}

/* Row i of x (1, T, C) as (1, 1, C), a view. */
static ag_tensor *row_of(ag_ctx *c, ag_tensor *x, int64_t i)
{
    int64_t T = x->shape[1], C = x->shape[2];
    ag_tensor *r = ag_slice(c, ag_reshape(c, x, AG_SHAPE(T, C)), 0, i, i + 1);
    return ag_reshape(c, r, AG_SHAPE(1, 1, C));
}

/* Logits (V) of the token after window[0..len), recomputing the window in
 * no-grad mode: gpt_forward's function, but after the last block's attention
 * only the last position is carried on (proj, feed-forward, ln_f, lm_head):
 * no other row reaches the last position's logits. */
static const float *window_logits(ag_ctx *c, const gpt_model *m, const int32_t *window, int64_t len)
{
    int L = m->cfg.n_layer;
    ag_index *idx = ag_index_new(c, window, AG_SHAPE(1, len));
    ag_index pos = *m->positions; /* the first len positions */
    pos.shape[0] = len;
    pos.numel = len;
    ag_tensor *x = ag_add(c, nn_embedding_forward(c, &m->tok, idx),
                          nn_embedding_forward(c, &m->pos, &pos));          /* (1, len, C) */
    for (int l = 0; l < L - 1; l++)
        x = nn_block_forward(c, &m->blocks[l], x, false);
    const nn_block *b = &m->blocks[L - 1];
    ag_tensor *att = nn_mha_attend(c, &b->sa, nn_layernorm_forward(c, &b->ln1, x), false);
    ag_tensor *x1 = ag_add(c, row_of(c, x, len - 1),
                           nn_linear_forward(c, &b->sa.proj, row_of(c, att, len - 1)));
    ag_tensor *x2 = ag_add(c, x1, nn_feedforward_forward(c, &b->ffwd,
                                                         nn_layernorm_forward(c, &b->ln2, x1), false));
    ag_tensor *logits = nn_linear_forward(c, &m->lm_head, nn_layernorm_forward(c, &m->ln_f, x2));
    return logits ? logits->data : NULL;                                    /* (1, 1, V) */
}

int64_t gpt_generate(const gpt_model *m, const gpt_vocab *v, const int32_t *ctx_tokens, int64_t n,
                     gpt_sample_opts *o, FILE *out)
{
    int64_t T_max = m->cfg.block_size, V = m->cfg.vocab_size;
    int32_t *window = malloc((size_t)T_max * sizeof *window);
    float *logits = malloc((size_t)V * sizeof *logits);
    float *scratch = malloc((size_t)V * sizeof *scratch); /* top-k selection, every step */
    int64_t len = n < T_max ? n : T_max;
    memcpy(window, ctx_tokens + (n - len), (size_t)len * sizeof *window);
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    kv_cache kc;
    bool cached = !o->no_kv_cache;
    if (cached) { /* the prompt, one position at a time; the last gives the first logits */
        cache_init(&kc, m);
        for (int64_t i = 0; i < len; i++) {
            ag_ctx_reset(c);
            const float *lg = step_cached(c, m, &kc, window[i]);
            if (lg && i == len - 1)
                memcpy(logits, lg, (size_t)V * sizeof *logits);
        }
    }
    int64_t made = 0;
    for (; made < o->max_new_tokens; made++) {
        if (!cached) {
            ag_ctx_reset(c);
            const float *lg = window_logits(c, m, window, len);
            if (!lg)
                break;
            memcpy(logits, lg, (size_t)V * sizeof *logits);
        }
        int32_t next = pick(logits, scratch, V, o, &o->rng);
        char buf[4];
        fwrite(buf, 1, (size_t)nn_utf8_encode(v->chars[next], buf), out);
        fflush(out);
        if (len == T_max) { /* crop to the last block_size tokens: positions move */
            memmove(window, window + 1, (size_t)(T_max - 1) * sizeof *window);
            if (cached) {
                cache_free(&kc, m);
                cached = false;
            }
        } else
            len++;
        window[len - 1] = next;
        if (cached && made + 1 < o->max_new_tokens) {
            ag_ctx_reset(c);
            const float *lg = step_cached(c, m, &kc, next);
            if (!lg)
                break;
            memcpy(logits, lg, (size_t)V * sizeof *logits);
        }
    }
    if (cached)
        cache_free(&kc, m);
    ag_ctx_free(c);
    free(window);
    free(logits);
    free(scratch);
    return made;
}
