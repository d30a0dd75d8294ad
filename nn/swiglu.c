/* swiglu.c - Llama's SwiGLU feed-forward: w2(silu(w1 x) * w3 x). */
#include "nn.h"

#include <stdio.h>

bool nn_swiglu_init(nn_swiglu *f, nn_params *p, const char *prefix, int64_t dim, int64_t hidden,
                    ag_rng *rng)
{
    char name[256];
    snprintf(name, sizeof name, "%s.w1", prefix);
    bool ok = nn_linear_init(&f->w1, p, name, dim, hidden, false, rng);
    snprintf(name, sizeof name, "%s.w2", prefix);
    ok = ok && nn_linear_init(&f->w2, p, name, hidden, dim, false, rng);
    snprintf(name, sizeof name, "%s.w3", prefix);
    return ok && nn_linear_init(&f->w3, p, name, dim, hidden, false, rng);
}

ag_tensor *nn_swiglu_forward(ag_ctx *c, const nn_swiglu *f, ag_tensor *x)
{
    ag_tensor *a = nn_linear_forward(c, &f->w1, x);                  /* (..., hidden) */
    ag_tensor *g = ag_silu(c, a);                                   /* a * sigmoid(a) */
    ag_tensor *b = nn_linear_forward(c, &f->w3, x);                  /* (..., hidden) */
    ag_tensor *h = ag_mul(c, g, b);
    ag_tensor *out = nn_linear_forward(c, &f->w2, h);                /* (..., dim) */
    ag_tensor *tmp[] = {a, g, b, h};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    return out;
}
