/* rmsnorm.c - RMSNorm (Llama's, torch.nn.RMSNorm's): x / sqrt(mean(x^2) + eps) * weight. */
#include "nn.h"

bool nn_rmsnorm_init(nn_rmsnorm *n, nn_params *p, const char *prefix, int64_t dim, float eps)
{
    n->eps = eps;
    n->weight = nn_param(p, prefix, "weight", AG_SHAPE(dim));
    if (!n->weight)
        return false;
    ag_fill(n->weight, 1.0f);
    return true;
}

ag_tensor *nn_rmsnorm_forward(ag_ctx *c, const nn_rmsnorm *n, ag_tensor *x)
{
    return ag_rms_norm(c, x, n->weight, n->eps);
}

ag_tensor *nn_rmsnorm_forward_composed(ag_ctx *c, const nn_rmsnorm *n, ag_tensor *x)
{
    ag_tensor *sq = ag_mul(c, x, x);                                 /* (..., dim) */
    ag_tensor *ms = ag_mean(c, sq, -1, true);                        /* (..., 1) */
    ag_tensor *me = ag_add_scalar(c, ms, n->eps);
    ag_tensor *r = ag_rsqrt(c, me);                                  /* (..., 1) */
    ag_tensor *xn = ag_mul(c, x, r);
    ag_tensor *out = ag_mul(c, xn, n->weight);
    ag_tensor *tmp[] = {sq, ms, me, r, xn};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    return out;
}
