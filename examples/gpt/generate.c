/* generate.c - autoregressive sampling with temperature and top-k. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Draws a token from logits (V) after temperature and top-k. */
static int32_t pick(float *logits, int64_t V, const gpt_sample_opts *o, ag_rng *rng)
{
    for (int64_t i = 0; i < V; i++)
        logits[i] /= o->temperature;
    if (o->top_k > 0 && o->top_k < V) {
        /* the k-th largest value by partial selection; ties above it stay in */
        float *tmp = malloc((size_t)V * sizeof *tmp);
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
        free(tmp);
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

int64_t gpt_generate(const gpt_model *m, const gpt_vocab *v, const int32_t *ctx_tokens, int64_t n,
                     gpt_sample_opts *o, FILE *out)
{
    int64_t T_max = m->cfg.block_size, V = m->cfg.vocab_size;
    int32_t *window = malloc((size_t)T_max * sizeof *window);
    float *logits = malloc((size_t)V * sizeof *logits);
    int64_t len = n < T_max ? n : T_max;
    memcpy(window, ctx_tokens + (n - len), (size_t)len * sizeof *window);
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    int64_t made = 0;
    for (; made < o->max_new_tokens; made++) {
        ag_ctx_reset(c);
        ag_index *idx = ag_index_new(c, window, AG_SHAPE(1, len));
        ag_tensor *lg = gpt_forward(c, m, idx, NULL, false, NULL);  /* (1, len, V) */
        if (!lg)
            break;
        memcpy(logits, lg->data + (len - 1) * V, (size_t)V * sizeof *logits);
        int32_t next = pick(logits, V, o, &o->rng);
        char buf[4];
        fwrite(buf, 1, (size_t)utf8_encode(v->chars[next], buf), out);
        fflush(out);
        if (len == T_max) /* crop to the last block_size tokens */
            memmove(window, window + 1, (size_t)(T_max - 1) * sizeof *window);
        else
            len++;
        window[len - 1] = next;
    }
    ag_ctx_free(c);
    free(window);
    free(logits);
    return made;
}
