/* layers.c - Linear, Embedding, LayerNorm and Dropout, composed from ag ops. */
#include "nn.h"

#include <math.h>

bool nn_linear_init(nn_linear *l, nn_params *p, const char *prefix, int64_t in, int64_t out,
                    bool bias, ag_rng *rng)
{
    /* PyTorch's default: kaiming_uniform(a=sqrt(5)) gives U(+-1/sqrt(in)), and the same bound for the bias */
    float bound = in > 0 ? 1.0f / sqrtf((float)in) : 0.0f;
    l->weight = nn_param(p, prefix, "weight", AG_SHAPE(out, in));
    l->bias = bias ? nn_param(p, prefix, "bias", AG_SHAPE(out)) : NULL;
    if (!l->weight || (bias && !l->bias))
        return false;
    ag_fill_uniform(l->weight, rng, -bound, bound);
    if (l->bias)
        ag_fill_uniform(l->bias, rng, -bound, bound);
    return true;
}

bool nn_linear_init_tied(nn_linear *l, nn_params *p, const char *prefix, ag_tensor *weight,
                         bool bias, ag_rng *rng)
{
    l->weight = weight;
    l->bias = NULL;
    if (!weight || weight->ndim != 2) {
        ag_error("nn_linear_init_tied: %s.weight must be a 2-D (out, in) parameter", prefix);
        return false;
    }
    if (!nn_params_tie(p, prefix, "weight", weight))
        return false;
    if (!bias)
        return true;
    l->bias = nn_param(p, prefix, "bias", AG_SHAPE(weight->shape[0]));
    if (!l->bias)
        return false;
    float bound = 1.0f / sqrtf((float)weight->shape[1]);
    ag_fill_uniform(l->bias, rng, -bound, bound);
    return true;
}

ag_tensor *nn_linear_forward(ag_ctx *c, const nn_linear *l, ag_tensor *x)
{
    return ag_linear(c, x, l->weight, l->bias); /* (..., in) @ (out, in)^T + (out) -> (..., out) */
}

bool nn_embedding_init(nn_embedding *e, nn_params *p, const char *prefix, int64_t num, int64_t dim,
                       ag_rng *rng)
{
    e->weight = nn_param(p, prefix, "weight", AG_SHAPE(num, dim));
    if (!e->weight)
        return false;
    p->flags[p->n - 1] |= NN_PARAM_EMBEDDING;
    ag_fill_normal(e->weight, rng, 0.0f, 1.0f);
    return true;
}

ag_tensor *nn_embedding_forward(ag_ctx *c, const nn_embedding *e, const ag_index *idx)
{
    return ag_embedding(c, e->weight, idx);
}

bool nn_layernorm_init(nn_layernorm *ln, nn_params *p, const char *prefix, int64_t dim)
{
    ln->weight = nn_param(p, prefix, "weight", AG_SHAPE(dim));
    ln->bias = nn_param(p, prefix, "bias", AG_SHAPE(dim));
    ln->eps = 1e-5f;
    if (!ln->weight || !ln->bias)
        return false;
    ag_fill(ln->weight, 1.0f);
    return true;
}

ag_tensor *nn_layernorm_forward(ag_ctx *c, const nn_layernorm *ln, ag_tensor *x)
{
    return ag_layer_norm(c, x, ln->weight, ln->bias, ln->eps);
}

ag_tensor *nn_layernorm_forward_composed(ag_ctx *c, const nn_layernorm *ln, ag_tensor *x)
{
    ag_tensor *mu = ag_mean(c, x, -1, true);                         /* (..., 1) */
    ag_tensor *d = ag_sub(c, x, mu);                                 /* (..., dim) */
    ag_tensor *sq = ag_mul(c, d, d);
    ag_tensor *var = ag_mean(c, sq, -1, true);                       /* biased, (..., 1) */
    ag_tensor *ve = ag_add_scalar(c, var, ln->eps);
    ag_tensor *r = ag_rsqrt(c, ve);                                  /* (..., 1) */
    ag_tensor *xn = ag_mul(c, d, r);
    ag_tensor *xw = ag_mul(c, xn, ln->weight);
    ag_tensor *out = ag_add(c, xw, ln->bias);
    /* the intermediates that no backward reads (sq, xw, ...) are reused by later ops */
    ag_tensor *tmp[] = {mu, d, sq, var, ve, r, xn, xw};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    return out;
}

ag_tensor *nn_dropout_forward(ag_ctx *c, const nn_dropout *d, ag_tensor *x, bool training)
{
    return ag_dropout(c, x, d->p, training);
}
