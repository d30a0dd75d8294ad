/* attention.c - one causal self-attention Head, MultiHeadAttention made of
 * separate Heads as in the lecture, and its key/value cache for attending
 * one new position at a time. */
#include "nn.h"
#include "private.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool nn_head_init(nn_head *h, nn_params *p, const char *prefix, int64_t n_embd, int64_t head_size,
                  float dropout, ag_rng *rng)
{
    char name[256];
    h->head_size = head_size;
    h->dropout.p = dropout;
    snprintf(name, sizeof name, "%s.key", prefix);
    bool ok = nn_linear_init(&h->key, p, name, n_embd, head_size, false, rng);
    snprintf(name, sizeof name, "%s.query", prefix);
    ok = ok && nn_linear_init(&h->query, p, name, n_embd, head_size, false, rng);
    snprintf(name, sizeof name, "%s.value", prefix);
    ok = ok && nn_linear_init(&h->value, p, name, n_embd, head_size, false, rng);
    return ok;
}

ag_tensor *nn_head_forward(ag_ctx *c, const nn_head *h, ag_tensor *x, bool training)
{
    ag_tensor *k = nn_linear_forward(c, &h->key, x);                       /* (B, T, hs) */
    ag_tensor *q = nn_linear_forward(c, &h->query, x);                     /* (B, T, hs) */
    ag_tensor *scores = ag_matmul_nt(c, q, k);                             /* (B, T, T) */
    ag_tensor *scaled = ag_mul_scalar(c, scores, 1.0f / sqrtf((float)h->head_size));
    ag_tensor *masked = ag_causal_mask(c, scaled, -INFINITY);
    ag_tensor *att = ag_softmax(c, masked, -1);
    ag_tensor *dropped = nn_dropout_forward(c, &h->dropout, att, training);
    ag_tensor *v = nn_linear_forward(c, &h->value, x);                     /* (B, T, hs) */
    ag_tensor *out = ag_matmul(c, dropped, v);                             /* (B, T, hs) */
    /* of the (B, T, T) intermediates only what backward reads stays: att, dropped */
    ag_tensor *tmp[] = {k, q, scores, scaled, masked, att, v};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    ag_release(c, dropped);
    return out;
}

bool nn_mha_init(nn_mha *m, nn_params *p, const char *prefix, int64_t n_embd, int n_head,
                 float dropout, ag_rng *rng)
{
    memset(m, 0, sizeof *m);
    if (n_head <= 0 || n_embd % n_head != 0) {
        ag_error("nn_mha_init: n_embd %lld is not divisible by n_head %d", (long long)n_embd, n_head);
        return false;
    }
    m->heads = calloc((size_t)n_head, sizeof *m->heads);
    if (!m->heads)
        nn_oom();
    m->n_head = n_head;
    m->dropout.p = dropout;
    char name[256];
    bool ok = true;
    for (int i = 0; ok && i < n_head; i++) {
        snprintf(name, sizeof name, "%s.heads.%d", prefix, i);
        ok = nn_head_init(&m->heads[i], p, name, n_embd, n_embd / n_head, dropout, rng);
    }
    snprintf(name, sizeof name, "%s.proj", prefix);
    return ok && nn_linear_init(&m->proj, p, name, n_embd, n_embd, true, rng);
}

ag_tensor *nn_mha_qkv_weight(ag_ctx *c, const nn_mha *m)
{
    int nh = m->n_head;
    ag_tensor **w = ag_ctx_alloc(c, 3 * (size_t)nh * sizeof *w);
    for (int i = 0; i < nh; i++) {
        w[i] = m->heads[i].query.weight;
        w[nh + i] = m->heads[i].key.weight;
        w[2 * nh + i] = m->heads[i].value.weight;
    }
    return ag_concat(c, w, 3 * nh, 0);
}

/* The heads one by one as the lecture writes them, side by side: (B, T, C). */
static ag_tensor *attend_heads(ag_ctx *c, const nn_mha *m, ag_tensor *x, bool training)
{
    ag_tensor **outs = ag_ctx_alloc(c, (size_t)m->n_head * sizeof *outs);
    for (int i = 0; i < m->n_head; i++)
        outs[i] = nn_head_forward(c, &m->heads[i], x, training);           /* (B, T, hs) each */
    ag_tensor *cat = ag_concat(c, outs, m->n_head, -1);                    /* (B, T, n_embd) */
    for (int i = 0; i < m->n_head; i++)
        ag_release(c, outs[i]);
    return cat;
}

/* All heads at once, with the same parameters: the stacked weights make one
 * GEMM, and ag_attention runs the heads' attention as one op over the packed
 * (B, T, 3C) result. Same function as attend_heads (tests compare them), with
 * fewer, larger ops and no (B, H, T, T) tensors; x other than (B, T, C) goes
 * the heads' way. */
ag_tensor *nn_mha_attend(ag_ctx *c, const nn_mha *m, ag_tensor *x, bool training)
{
    if (!x || x->ndim != 3)
        return attend_heads(c, m, x, training);
    ag_tensor *W = nn_mha_qkv_weight(c, m);                                 /* (3C, C) */
    ag_tensor *qkv = ag_matmul_nt(c, x, W);                                 /* (B, T, 3C) */
    int64_t hs = m->heads[0].head_size;
    ag_tensor *cat = ag_attention(c, qkv, m->n_head, 1.0f / sqrtf((float)hs),
                                  m->heads[0].dropout.p, training);         /* (B, T, C) */
    ag_release(c, W);
    ag_release(c, qkv);
    return cat;
}

ag_tensor *nn_mha_project(ag_ctx *c, const nn_mha *m, ag_tensor *att, bool training)
{
    ag_tensor *y = nn_linear_forward(c, &m->proj, att);
    ag_tensor *out = nn_dropout_forward(c, &m->dropout, y, training);
    ag_release(c, y);
    return out;
}

ag_tensor *nn_mha_forward(ag_ctx *c, const nn_mha *m, ag_tensor *x, bool training)
{
    ag_tensor *cat = nn_mha_attend(c, m, x, training);
    ag_tensor *out = nn_mha_project(c, m, cat, training);
    ag_release(c, cat);
    return out;
}

ag_tensor *nn_mha_forward_heads(ag_ctx *c, const nn_mha *m, ag_tensor *x, bool training)
{
    ag_tensor *cat = attend_heads(c, m, x, training);
    ag_tensor *out = nn_mha_project(c, m, cat, training);
    ag_release(c, cat);
    return out;
}

void nn_mha_free(nn_mha *m)
{
    free(m->heads);
    m->heads = NULL;
}

/* ---------------------------------------------------------------- key/value cache */

static void *alloc_or_die(size_t bytes)
{
    void *p = malloc(bytes);
    if (!p)
        nn_oom();
    return p;
}

bool nn_kv_cache_init(nn_kv_cache *kc, const nn_mha *m, int64_t capacity)
{
    memset(kc, 0, sizeof *kc);
    if (capacity < 1) {
        ag_error("nn_kv_cache_init: capacity %lld, needs at least 1", (long long)capacity);
        return false;
    }
    ag_ctx *tmp = ag_ctx_new(); /* the stacked weights outlive every step: copied out of it */
    ag_set_grad_enabled(tmp, false);
    ag_tensor *w = nn_mha_qkv_weight(tmp, m);
    kc->wqkv = w ? ag_from_data(NULL, w->data, w->ndim, w->shape) : NULL;
    ag_ctx_free(tmp);
    if (!kc->wqkv)
        return false;
    size_t C = (size_t)kc->wqkv->shape[1];
    kc->k = alloc_or_die((size_t)capacity * C * sizeof(float));
    kc->v = alloc_or_die((size_t)capacity * C * sizeof(float));
    kc->scores = alloc_or_die((size_t)capacity * sizeof(float));
    kc->capacity = capacity;
    return true;
}

void nn_kv_cache_clear(nn_kv_cache *kc) { kc->len = 0; }

void nn_kv_cache_free(nn_kv_cache *kc)
{
    ag_tensor_free(kc->wqkv);
    free(kc->k);
    free(kc->v);
    free(kc->scores);
    memset(kc, 0, sizeof *kc);
}

/* Causal attention of position t over positions 0..t of the cache, per head:
 * q (C) holds position t's queries, head h in q[h*hs..]; out (C). */
static void attend_one(const nn_kv_cache *kc, const float *q, int64_t t, int nh, int64_t hs,
                       float *out)
{
    int64_t C = nh * hs;
    float *scores = kc->scores;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < nh; h++) {
        const float *qh = q + h * hs;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
            const float *kj = kc->k + j * C + h * hs;
            float s = 0;
            for (int64_t d = 0; d < hs; d++)
                s += qh[d] * kj[d];
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
            const float *vj = kc->v + j * C + h * hs;
            float p = scores[j] / sum;
            for (int64_t d = 0; d < hs; d++)
                o[d] += p * vj[d];
        }
    }
}

ag_tensor *nn_mha_attend_cached(ag_ctx *c, const nn_mha *m, nn_kv_cache *kc, ag_tensor *x)
{
    if (!x)
        return NULL;
    int nh = m->n_head;
    int64_t hs = m->heads[0].head_size, C = nh * hs, t = kc->len;
    char s[64];
    if (ag_grad_enabled(c)) {
        ag_error("nn_mha_attend_cached: no gradient flows through the cache; turn gradients off "
                 "(ag_set_grad_enabled)");
        return NULL;
    }
    if (!kc->wqkv || kc->wqkv->shape[1] != C || x->numel != C || x->ndim < 2) {
        ag_error("nn_mha_attend_cached: x %s must be one position (1, 1, %lld) of a cache made "
                 "for this attention", ag_shape_str(x, s, sizeof s), (long long)C);
        return NULL;
    }
    if (t >= kc->capacity) {
        ag_error("nn_mha_attend_cached: the cache is full (%lld positions)", (long long)t);
        return NULL;
    }
    ag_tensor *qkv = ag_matmul_nt(c, x, kc->wqkv);                         /* (1, 1, 3C) */
    ag_tensor *out = ag_empty(c, x->ndim, x->shape);                       /* (1, 1, C) */
    if (!qkv || !out)
        return NULL;
    memcpy(kc->k + t * C, qkv->data + C, (size_t)C * sizeof(float));
    memcpy(kc->v + t * C, qkv->data + 2 * C, (size_t)C * sizeof(float));
    attend_one(kc, qkv->data, t, nh, hs, out->data);
    ag_release(c, qkv);
    kc->len++;
    return out;
}
