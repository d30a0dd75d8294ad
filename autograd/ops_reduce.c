/* ops_reduce.c - sum, mean and max over one axis or all elements.
 * The input is viewed as (outer, n, inner) around the reduced axis;
 * the output is (outer, inner), shaped with or without the kept axis. */
#include "internal.h"

typedef struct {
    int64_t outer, n, inner; /* the input as (outer, n, inner), n reduced */
    float scale;             /* sum: 1, mean: 1 / n */
    const int32_t *arg;      /* max: the k of each maximum, (outer, inner) */
} reduce_attr;

/* y[o, i] = scale * sum_k x[o, k, i] */
static void sum_kernel(float *y, const float *x, int64_t outer, int64_t n, int64_t inner,
                       float scale)
{
    if (inner == 1 && outer == 1) { /* one long row: split it */
        double s = 0;
        AG_PARALLEL_FOR(n > AG_PAR_MIN, simd reduction(+ : s),
        for (int64_t k = 0; k < n; k++)
            s += x[k];
        );
        y[0] = (float)(s * scale);
        return;
    }
    if (inner == 1) {
        AG_PARALLEL_FOR(outer * n > AG_PAR_MIN, ,
        for (int64_t o = 0; o < outer; o++) {
            y[o] = (float)(ag_sumd(x + o * n, n) * scale);
        }
        );
        return;
    }
    AG_PARALLEL_FOR(outer * n * inner > AG_PAR_MIN, ,
    for (int64_t o = 0; o < outer; o++) {
        float *yo = y + o * inner;
        for (int64_t i = 0; i < inner; i++)
            yo[i] = 0.0f;
        for (int64_t k = 0; k < n; k++) {
            const float *r = x + (o * n + k) * inner;
            for (int64_t i = 0; i < inner; i++)
                yo[i] += r[i];
        }
        for (int64_t i = 0; i < inner; i++)
            yo[i] *= scale;
    }
    );
}

static void sum_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    if (!gx)
        return;
    const reduce_attr *at = ag_saved(out);
    int64_t outer = at->outer, n = at->n, inner = at->inner;
    float scale = at->scale;
    const float *g = out->grad;
    /* gx[o, k, i] (+)= scale * g[o, i]; rows of n*inner per o
     * keep the inner loop long */
#define PUT(I, V) gx[I] = (overwrite ? 0.0f : gx[I]) + (V)
    if (outer == 1) { /* sum over everything, or over the first axis: split the rows */
        AG_PARALLEL_FOR(x->numel > AG_PAR_MIN, ,
        for (int64_t k = 0; k < n; k++)
            for (int64_t i = 0; i < inner; i++)
                PUT(k * inner + i, scale * g[i]);
        );
        return;
    }
    AG_PARALLEL_FOR(x->numel > AG_PAR_MIN, ,
    for (int64_t o = 0; o < outer; o++) {
        int64_t base = o * n * inner;
        const float *go = g + o * inner;
        if (inner == 1) {
            float v = scale * go[0];
            for (int64_t k = 0; k < n; k++)
                PUT(base + k, v);
        } else
            for (int64_t k = 0; k < n; k++)
                for (int64_t i = 0; i < inner; i++)
                    PUT(base + k * inner + i, scale * go[i]);
    }
    );
#undef PUT
}

/* y[o, i] = max_k x[o, k, i], arg[o, i] = the first k reaching it */
static void max_kernel(float *y, int32_t *arg, const float *x, int64_t outer, int64_t n,
                       int64_t inner)
{
    AG_PARALLEL_FOR(outer * n * inner > AG_PAR_MIN, collapse(2),
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *p = x + o * n * inner + i;
            float m = p[0];
            int32_t a = 0;
            for (int64_t k = 1; k < n; k++) {
                float v = p[k * inner];
                if (v > m || (v != v && m == m)) { /* a NaN wins, as in torch.max */
                    m = v;
                    a = (int32_t)k;
                }
            }
            y[o * inner + i] = m;
            arg[o * inner + i] = a;
        }
    );
}

static void max_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    float *gx = ag_grad_of(ctx, x);
    if (!gx)
        return;
    const reduce_attr *at = ag_saved(out);
    int64_t outer = at->outer, n = at->n, inner = at->inner;
    const int32_t *arg = at->arg;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            gx[(o * n + arg[o * inner + i]) * inner + i] += out->grad[o * inner + i];
}

static const ag_op sum_op = {"sum", sum_backward, AG_NO_DATA};
static const ag_op mean_op = {"mean", sum_backward, AG_NO_DATA};
static const ag_op max_op = {"max", max_backward, AG_NO_DATA};

static ag_tensor *reduce(ag_ctx *c, const ag_op *op, ag_tensor *a, int axis, bool keepdim,
                         bool all)
{
    if (!ag_check_inputs(op->name, &a, 1))
        return NULL;
    int64_t outer = 1, n, inner = 1, shape[AG_MAX_DIMS];
    int nd = 0;
    if (all) {
        n = a->numel;
    } else {
        if (!ag_resolve_axis(op->name, a, &axis))
            return NULL;
        for (int i = 0; i < axis; i++)
            outer *= a->shape[i];
        for (int i = axis + 1; i < a->ndim; i++)
            inner *= a->shape[i];
        n = a->shape[axis];
        for (int i = 0; i < a->ndim; i++) {
            if (i != axis)
                shape[nd++] = a->shape[i];
            else if (keepdim)
                shape[nd++] = 1;
        }
    }
    if (op == &max_op && n == 0) {
        char b[128];
        ag_error("max: empty axis %d in shape %s", axis, ag_shape_str(a, b, sizeof b));
        return NULL;
    }
    ag_tensor *out = ag_result(c, op, &a, 1, nd, shape);
    if (!out)
        return NULL;
    reduce_attr at = {.outer = outer, .n = n, .inner = inner, .scale = 1.0f};
    if (op == &max_op) {
        int32_t *arg = ag_ctx_alloc(c, (size_t)out->numel * sizeof *arg);
        max_kernel(out->data, arg, a->data, outer, n, inner);
        at.arg = arg;
    } else {
        at.scale = op == &mean_op ? 1.0f / (float)n : 1.0f;
        sum_kernel(out->data, a->data, outer, n, inner, at.scale);
    }
    ag_save(c, out, &at, sizeof at);
    return out;
}

ag_tensor *ag_sum(ag_ctx *c, ag_tensor *a, int axis, bool keepdim)
{
    return reduce(c, &sum_op, a, axis, keepdim, false);
}
ag_tensor *ag_mean(ag_ctx *c, ag_tensor *a, int axis, bool keepdim)
{
    return reduce(c, &mean_op, a, axis, keepdim, false);
}
ag_tensor *ag_max(ag_ctx *c, ag_tensor *a, int axis, bool keepdim)
{
    return reduce(c, &max_op, a, axis, keepdim, false);
}
ag_tensor *ag_sum_all(ag_ctx *c, ag_tensor *a) { return reduce(c, &sum_op, a, 0, false, true); }
ag_tensor *ag_mean_all(ag_ctx *c, ag_tensor *a) { return reduce(c, &mean_op, a, 0, false, true); }
