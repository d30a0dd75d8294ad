/* ops_dropout.c - inverted dropout. The keep mask is a pure function of a
 * per-call seed and the element index, so it is the same on any number of
 * threads and backward regenerates it instead of storing it. */
#include "internal.h"

typedef struct {
    uint64_t seed; /* this call's: the keep mask is a function of it */
    float p;
} dropout_attr;

/* y (+)= x * keep / (1 - p) */
static void kernel(float *y, const float *x, int64_t n, uint64_t seed, float p, bool overwrite)
{
    float scale = 1.0f / (1.0f - p);
    AG_PARALLEL(4 * n, ,
    for (int64_t i = 0; i < n; i++) {
        float v = ag_dropout_keep(seed, i, p) ? x[i] * scale : 0.0f;
        y[i] = overwrite ? v : y[i] + v;
    }
    );
}

static void dropout_backward(ag_ctx *ctx, ag_tensor *out)
{
    bool overwrite;
    float *gx = ag_grad_buf(ctx, ag_input(out, 0), &overwrite);
    const dropout_attr *at = ag_saved(out);
    if (gx)
        kernel(gx, out->grad, out->numel, at->seed, at->p, overwrite);
}

static const ag_op dropout_op = {"dropout", dropout_backward, AG_NO_DATA};

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
    dropout_attr at = {.seed = ag_rng_next(&c->rng), .p = p};
    ag_save(c, out, &at, sizeof at);
    kernel(out->data, a->data, a->numel, at.seed, p, true);
    return out;
}
