/* ops_softmax.c - softmax and log-softmax over one axis, stable for large
 * logits (the row max is subtracted first). The input is viewed as
 * (outer, n, inner); each (outer, inner) line of n is independent. */
#include "internal.h"

typedef struct {
    int64_t outer, n, inner; /* the input as (outer, n, inner), lines of n */
} softmax_attr;

static void lines(const ag_tensor *t, int axis, int64_t *outer, int64_t *n, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= t->shape[i];
    for (int i = axis + 1; i < t->ndim; i++)
        *inner *= t->shape[i];
    *n = t->shape[axis];
}

/* One contiguous row (the usual last-axis case): y = softmax(x) or log_softmax(x). */
static void row_forward(float *y, const float *x, int64_t n, bool log_)
{
    float m = -INFINITY;
    for (int64_t k = 0; k < n; k++)
        m = x[k] > m ? x[k] : m;
    float s = 0.0f;
    if (log_) {
        /* e^(x - m) goes through y, overwritten below */
#pragma omp simd
        for (int64_t k = 0; k < n; k++)
            y[k] = ag_expf(x[k] - m);
        s = ag_sumf(y, n);
        /* (x - m) - log s, not x - (m + log s): m + log s would be rounded
         * to m's precision, losing digits at large logits */
        float ls = logf(s);
        for (int64_t k = 0; k < n; k++)
            y[k] = (x[k] - m) - ls;
    } else {
#pragma omp simd
        for (int64_t k = 0; k < n; k++)
            y[k] = ag_expf(x[k] - m);
        s = ag_sumf(y, n);
        float r = 1.0f / s;
        for (int64_t k = 0; k < n; k++)
            y[k] *= r;
    }
}

/* y = softmax(x) or log_softmax(x) along each line (stride inner) */
static void forward(float *y, const float *x, int64_t outer, int64_t n, int64_t inner, bool log_)
{
    if (inner == 1) {
        AG_PARALLEL(outer * n, ,
        for (int64_t o = 0; o < outer; o++)
            row_forward(y + o * n, x + o * n, n, log_);
        );
        return;
    }
    AG_PARALLEL(outer * n * inner, collapse(2),
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *xl = x + o * n * inner + i;
            float *yl = y + o * n * inner + i;
            float m = -INFINITY;
            for (int64_t k = 0; k < n; k++)
                m = xl[k * inner] > m ? xl[k * inner] : m;
            float s = 0.0f;
            if (log_) {
                for (int64_t k = 0; k < n; k++)
                    s += ag_expf(xl[k * inner] - m);
                float ls = logf(s);
                for (int64_t k = 0; k < n; k++)
                    yl[k * inner] = (xl[k * inner] - m) - ls;
            } else {
                for (int64_t k = 0; k < n; k++) {
                    float e = ag_expf(xl[k * inner] - m);
                    yl[k * inner] = e;
                    s += e;
                }
                float r = 1.0f / s;
                for (int64_t k = 0; k < n; k++)
                    yl[k * inner] *= r;
            }
        }
    );
}

static const ag_op softmax_op, log_softmax_op;

/* softmax: gx (+)= y (g - sum g y);  log_softmax: gx (+)= g - exp(y) sum g */
static void backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    if (!gx)
        return;
    const softmax_attr *at = ag_saved(out);
    int64_t outer = at->outer, n = at->n, inner = at->inner;
    bool log_ = ag_op_of(out) == &log_softmax_op;
    const float *y = out->data, *g = out->grad;
    if (inner == 1) { /* contiguous rows */
        AG_PARALLEL(outer * n, ,
        for (int64_t o = 0; o < outer; o++) {
            const float *yr = y + o * n, *gr = g + o * n;
            float *xr = gx + o * n;
            float s = 0.0f;
            if (log_) {
                s = ag_sumf(gr, n);
                for (int64_t k = 0; k < n; k++)
                    xr[k] = (overwrite ? 0.0f : xr[k]) + gr[k] - ag_expf(yr[k]) * s;
            } else {
                s = ag_dot(gr, yr, n);
                for (int64_t k = 0; k < n; k++)
                    xr[k] = (overwrite ? 0.0f : xr[k]) + yr[k] * (gr[k] - s);
            }
        }
        );
        return;
    }
    AG_PARALLEL(outer * n * inner, collapse(2),
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * n * inner + i;
            float s = 0.0f;
            for (int64_t k = 0; k < n; k++)
                s += log_ ? g[base + k * inner] : g[base + k * inner] * y[base + k * inner];
            float *gl = gx + base;
            if (log_)
                for (int64_t k = 0; k < n; k++)
                    gl[k * inner] = (overwrite ? 0.0f : gl[k * inner]) + g[base + k * inner] -
                                    ag_expf(y[base + k * inner]) * s;
            else
                for (int64_t k = 0; k < n; k++)
                    gl[k * inner] = (overwrite ? 0.0f : gl[k * inner]) +
                                    y[base + k * inner] * (g[base + k * inner] - s);
        }
    );
}

static const ag_op softmax_op = {"softmax", backward, AG_OUT};
static const ag_op log_softmax_op = {"log_softmax", backward, AG_OUT};

static ag_tensor *softmax(ag_ctx *c, ag_tensor *a, int axis, bool log_)
{
    const ag_op *op = log_ ? &log_softmax_op : &softmax_op;
    if (!ag_check_inputs(op->name, &a, 1) || !ag_resolve_axis(op->name, a, &axis))
        return NULL;
    ag_tensor *out = ag_result(c, op, &a, 1, a->ndim, a->shape);
    if (!out)
        return NULL;
    softmax_attr at;
    lines(a, axis, &at.outer, &at.n, &at.inner);
    ag_save(c, out, &at, sizeof at);
    forward(out->data, a->data, at.outer, at.n, at.inner, log_);
    return out;
}

ag_tensor *ag_softmax(ag_ctx *c, ag_tensor *a, int axis) { return softmax(c, a, axis, false); }
ag_tensor *ag_log_softmax(ag_ctx *c, ag_tensor *a, int axis) { return softmax(c, a, axis, true); }
