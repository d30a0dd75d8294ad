/* ops_dropout.c - inverted dropout. The keep mask is a pure function of a
 * per-call seed and the element index, so it is the same on any number of
 * threads and backward regenerates it instead of storing it. */
#include "internal.h"

/* y = x * keep / (1 - p); with accumulate, y += ... (backward into an existing grad) */
static void kernel(float *y, const float *x, int64_t n, uint64_t seed, float p, bool accumulate)
{
    float scale = 1.0f / (1.0f - p);
    AG_PARALLEL_FOR(n > AG_PAR_MIN / 4, ,
    for (int64_t i = 0; i < n; i++) {
        float v = ag_dropout_keep(seed, i, p) ? x[i] * scale : 0.0f;
        y[i] = accumulate ? y[i] + v : v;
    }
    );
}

static void dropout_backward(ag_ctx *ctx, ag_tensor *out)
{
    bool fresh;
    float *gx = ag_grad_buf(ctx, out->inputs[0], &fresh);
    if (gx)
        kernel(gx, out->grad, out->numel, (uint64_t)out->iarg[0], out->farg[0], !fresh);
}

static const ag_op dropout_op = {"dropout", dropout_backward, AG_IN(0) | AG_OUT};

ag_tensor *ag_dropout(ag_ctx *c, ag_tensor *a, float p, bool training)
{
    if (!ag_check_inputs("dropout", &a, 1))
        return NULL;
    if (!c) {
        ag_error("dropout: needs a ctx (its generator and arena), got NULL");
        return NULL;
    }
    if (!(p >= 0.0f && p < 1.0f)) {
        ag_error("dropout: probability %g is not in [0, 1)", (double)p);
        return NULL;
    }
    /* identity as a view, not `a` itself: the caller may release one and keep
     * using the other (the view keeps the shared buffer alive) */
    if (!training || p == 0.0f)
        return ag_reshape(c, a, a->ndim, a->shape);
    ag_tensor *out = ag_result(c, &dropout_op, &a, 1, a->ndim, a->shape);
    if (!out)
        return NULL;
    uint64_t seed = ag_rng_next(&c->rng);
    out->iarg[0] = (int64_t)seed;
    out->farg[0] = p;
    kernel(out->data, a->data, a->numel, seed, p, false);
    return out;
}
