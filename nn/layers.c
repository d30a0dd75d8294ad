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

ag_tensor *nn_linear_forward(ag_ctx *c, const nn_linear *l, ag_tensor *x)
{
    ag_tensor *y = ag_matmul_nt(c, x, l->weight); /* (..., in) @ (out, in)^T -> (..., out) */
    return l->bias ? ag_add(c, y, l->bias) : y;
}

bool nn_embedding_init(nn_embedding *e, nn_params *p, const char *prefix, int64_t num, int64_t dim,
                       ag_rng *rng)
{
    e->weight = nn_param(p, prefix, "weight", AG_SHAPE(num, dim));
    if (!e->weight)
        return false;
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
    ag_tensor *mu = ag_mean(c, x, -1, true);                         /* (..., 1) */
    ag_tensor *d = ag_sub(c, x, mu);                                 /* (..., dim) */
    ag_tensor *var = ag_mean(c, ag_mul(c, d, d), -1, true);          /* biased, (..., 1) */
    ag_tensor *r = ag_rsqrt(c, ag_add_scalar(c, var, ln->eps));      /* (..., 1) */
    return ag_add(c, ag_mul(c, ag_mul(c, d, r), ln->weight), ln->bias);
}

ag_tensor *nn_dropout_forward(ag_ctx *c, const nn_dropout *d, ag_tensor *x, bool training)
{
    return ag_dropout(c, x, d->p, training);
}
