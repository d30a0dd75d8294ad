/* generate.c - autoregressive sampling with temperature and top-k. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int32_t gpt_pick_token(float *logits, float *tmp, int64_t V, const gpt_sample_opts *o, ag_rng *rng)
{
    for (int64_t i = 0; i < V; i++)
        if (!isfinite(logits[i]))
            return -1;
    if (o->temperature == 0) {
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = i;
        return (int32_t)best;
    }
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

/* Logits (V) of the token after window[0..len), recomputing the window. */
static const float *window_logits(ag_ctx *c, const gpt_model *m, const int32_t *window, int64_t len)
{
    ag_tensor *logits = gpt_forward_last(c, m, ag_index_new(c, window, AG_SHAPE(1, len)));
    return logits ? logits->data : NULL;                                    /* (1, 1, V) */
}

/* Logits (V) of the token after `token`, which the cache appends. */
static const float *step_cached(ag_ctx *c, const gpt_model *m, gpt_kv_cache *kc, int32_t token)
{
    ag_tensor *logits = gpt_forward_cached(c, m, kc, token);
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
    gpt_kv_cache kc;
    bool cached = !o->no_kv_cache && gpt_kv_cache_init(&kc, m);
    if (cached) { /* the prompt, one position at a time; the last gives the first logits */
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
        int32_t next = gpt_pick_token(logits, scratch, V, o, &o->rng);
        if (next < 0)
            break;
        char buf[4];
        fwrite(buf, 1, (size_t)nn_utf8_encode(v->chars[next], buf), out);
        if (fflush(out) != 0 || ferror(out))
            break; /* the caller finds the error on out */
        if (len == T_max) { /* crop to the last block_size tokens: positions move */
            memmove(window, window + 1, (size_t)(T_max - 1) * sizeof *window);
            if (cached) {
                gpt_kv_cache_free(&kc);
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
        gpt_kv_cache_free(&kc);
    ag_ctx_free(c);
    free(window);
    free(logits);
    free(scratch);
    return made;
}
