/* ops_reduce.c - sum, mean and max over one axis or all elements; var,
 * argmax and cumsum over one axis.
 * The input is viewed as (outer, n, inner) around the reduced axis;
 * the output is (outer, inner), shaped with or without the kept axis
 * (cumsum's is the input's own shape). */
#include "internal.h"

#include <stdlib.h>

typedef struct {
    int64_t outer, n, inner; /* the input as (outer, n, inner), n reduced */
    float scale;             /* sum: 1, mean: 1 / n */
    const int32_t *arg;      /* max: the k of each maximum, (outer, inner) */
} reduce_attr;

/* sum of x[lo, hi) for ag_parallel_sum */
static double sum_range(int64_t lo, int64_t hi, void *x)
{
    const float *v = x;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t k = lo; k < hi; k++)
        s += v[k];
    return s;
}

/* y[o, i] = scale * sum_k x[o, k, i] */
static void sum_kernel(float *y, const float *x, int64_t outer, int64_t n, int64_t inner,
                       float scale)
{
    if (inner == 1 && outer == 1) { /* one long row: split it */
        double s = ag_parallel_sum(n, n, sum_range, (void *)x);
        y[0] = (float)(s * scale);
        return;
    }
    if (inner == 1) {
        AG_PARALLEL(outer * n, ,
        for (int64_t o = 0; o < outer; o++) {
            y[o] = (float)(ag_sumd(x + o * n, n) * scale);
        }
        );
        return;
    }
    AG_PARALLEL(outer * n * inner, ,
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
        AG_PARALLEL(x->numel, ,
        for (int64_t k = 0; k < n; k++)
            for (int64_t i = 0; i < inner; i++)
                PUT(k * inner + i, scale * g[i]);
        );
        return;
    }
    AG_PARALLEL(x->numel, ,
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
    AG_PARALLEL(outer * n * inner, collapse(2),
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

/* ---- var: the mean of squared deviations over one axis, divided by n or n - 1 */

#define COLS 64 /* columns per block when the axis is not the last: a block of sums fits in registers */

typedef struct {
    int64_t outer, n, inner;
    float scale;       /* 2 / (n - unbiased): d var / d x = scale (x - mean) */
    const double *mean; /* (outer, inner), in double: x - mean stays exact to float
                         * precision when the values sit far from 0 */
} var_attr;

/* y[o, i] = sum_k (x[o, k, i] - mean)^2 * inv, mean[o, i] = the mean over k;
 * both sums in double, so a spread far below the values' size survives.
 * Rows when inner == 1; otherwise blocks of COLS columns, one thread a block. */
static void var_kernel(float *y, double *mean, const float *x, int64_t outer, int64_t n,
                       int64_t inner, double inv)
{
    int64_t nb = (inner + COLS - 1) / COLS;
    AG_PARALLEL(outer * n * inner, ,
    for (int64_t ob = 0; ob < outer * nb; ob++) {
        int64_t o = ob / nb, c0 = ob % nb * COLS, w = inner - c0 < COLS ? inner - c0 : COLS;
        const float *xo = x + o * n * inner + c0;
        double s[COLS] = {0}, ss[COLS] = {0};
        if (inner == 1) {
            s[0] = ag_sumd(xo, n);
        } else {
            for (int64_t k = 0; k < n; k++)
                for (int64_t i = 0; i < w; i++)
                    s[i] += xo[k * inner + i];
        }
        for (int64_t i = 0; i < w; i++)
            s[i] /= (double)n;
        for (int64_t k = 0; k < n; k++)
            for (int64_t i = 0; i < w; i++) {
                double d = xo[k * inner + i] - s[i];
                ss[i] += d * d;
            }
        for (int64_t i = 0; i < w; i++) {
            y[o * inner + c0 + i] = (float)(ss[i] * inv);
            mean[o * inner + c0 + i] = s[i];
        }
    }
    );
}

static void var_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    if (!gx)
        return;
    const var_attr *at = ag_saved(out);
    int64_t n = at->n, inner = at->inner;
    const double *mean = at->mean;
    const float *g = out->grad, *xd = x->data;
    float scale = at->scale;
    /* gx[o, k, i] (+)= scale g[o, i] (x[o, k, i] - mean[o, i]) */
    AG_PARALLEL(x->numel, ,
    for (int64_t o = 0; o < at->outer; o++)
        for (int64_t k = 0; k < n; k++) {
            int64_t base = (o * n + k) * inner;
            const float *go = g + o * inner;
            const double *mo = mean + o * inner;
            for (int64_t i = 0; i < inner; i++) {
                float v = scale * go[i] * (float)(xd[base + i] - mo[i]);
                gx[base + i] = overwrite ? v : gx[base + i] + v;
            }
        }
    );
}

/* backward reads x and the saved means, not the output */
static const ag_op var_op = {"var", var_backward, AG_IN(0)};

ag_tensor *ag_var(ag_ctx *c, ag_tensor *a, int axis, bool unbiased, bool keepdim)
{
    if (!ag_check_inputs("var", &a, 1) || !ag_resolve_axis("var", a, &axis))
        return NULL;
    int64_t outer = 1, inner = 1, n = a->shape[axis], shape[AG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (i < axis)
            outer *= a->shape[i];
        if (i > axis)
            inner *= a->shape[i];
        if (i != axis)
            shape[nd++] = a->shape[i];
        else if (keepdim)
            shape[nd++] = 1;
    }
    ag_tensor *out = ag_result(c, &var_op, &a, 1, nd, shape);
    if (!out)
        return NULL;
    /* no degrees of freedom left (one element, unbiased; or none): NaN, as torch.var */
    int64_t dof = n - (unbiased ? 1 : 0);
    double inv = dof > 0 ? 1.0 / (double)dof : NAN;
    double *mean = ag_ctx_alloc(c, (size_t)out->numel * sizeof *mean);
    var_kernel(out->data, mean, a->data, outer, n, inner, inv);
    var_attr at = {.outer = outer, .n = n, .inner = inner, .scale = (float)(2.0 * inv),
                   .mean = mean};
    ag_save(c, out, &at, sizeof at);
    return out;
}

/* ---- argmax: max_kernel's arg, into an index array */

ag_index *ag_argmax(ag_ctx *c, ag_tensor *a, int axis, bool keepdim)
{
    if (!ag_check_inputs("argmax", &a, 1) || !ag_resolve_axis("argmax", a, &axis))
        return NULL;
    char b[128];
    if (a->shape[axis] == 0) {
        ag_error("argmax: empty axis %d in shape %s", axis, ag_shape_str(a, b, sizeof b));
        return NULL;
    }
    if (a->shape[axis] > INT32_MAX) {
        ag_error("argmax: axis %d of shape %s is too long for int32 indices", axis,
                 ag_shape_str(a, b, sizeof b));
        return NULL;
    }
    int64_t outer = 1, inner = 1, shape[AG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (i < axis)
            outer *= a->shape[i];
        if (i > axis)
            inner *= a->shape[i];
        if (i != axis)
            shape[nd++] = a->shape[i];
        else if (keepdim)
            shape[nd++] = 1;
    }
    ag_index *ix = ag_index_new(c, NULL, nd, shape);
    if (!ix)
        return NULL;
    /* the maxima themselves are not wanted: scratch, freed or dropped with the arena */
    size_t bytes = (size_t)(ix->numel ? ix->numel : 1) * sizeof(float);
    float *y = c ? ag_ctx_alloc(c, bytes) : malloc(bytes);
    if (!y) {
        ag_index_free(ix);
        ag_error("argmax: out of memory for %lld maxima", (long long)ix->numel);
        return NULL;
    }
    max_kernel(y, ix->data, a->data, outer, a->shape[axis], inner);
    if (!c)
        free(y);
    return ix;
}

/* ---- cumsum: running sums along one axis; backward is the running sum from the end */

typedef struct {
    int64_t outer, n, inner;
} cumsum_attr;

/* dst[o, k, i] (+)= sum over k' <= k (reverse: k' >= k) of src[o, k', i], in double */
static void cumsum_kernel(float *dst, const float *src, int64_t outer, int64_t n, int64_t inner,
                          bool reverse, bool overwrite)
{
    int64_t nb = (inner + COLS - 1) / COLS;
    AG_PARALLEL(outer * n * inner, ,
    for (int64_t ob = 0; ob < outer * nb; ob++) {
        int64_t o = ob / nb, c0 = ob % nb * COLS, w = inner - c0 < COLS ? inner - c0 : COLS;
        double s[COLS] = {0};
        for (int64_t j = 0; j < n; j++) {
            int64_t k = reverse ? n - 1 - j : j, at = (o * n + k) * inner + c0;
            for (int64_t i = 0; i < w; i++) {
                s[i] += src[at + i];
                dst[at + i] = (overwrite ? 0.0f : dst[at + i]) + (float)s[i];
            }
        }
    }
    );
}

static void cumsum_backward(ag_ctx *ctx, ag_tensor *out)
{
    bool overwrite;
    float *gx = ag_grad_buf(ctx, ag_input(out, 0), &overwrite);
    const cumsum_attr *at = ag_saved(out);
    if (gx)
        cumsum_kernel(gx, out->grad, at->outer, at->n, at->inner, true, overwrite);
}

static const ag_op cumsum_op = {"cumsum", cumsum_backward, AG_NO_DATA};

ag_tensor *ag_cumsum(ag_ctx *c, ag_tensor *a, int axis)
{
    if (!ag_check_inputs("cumsum", &a, 1) || !ag_resolve_axis("cumsum", a, &axis))
        return NULL;
    cumsum_attr at = {.outer = 1, .n = a->shape[axis], .inner = 1};
    for (int i = 0; i < a->ndim; i++) {
        if (i < axis)
            at.outer *= a->shape[i];
        if (i > axis)
            at.inner *= a->shape[i];
    }
    ag_tensor *out = ag_result(c, &cumsum_op, &a, 1, a->ndim, a->shape);
    if (!out)
        return NULL;
    ag_save(c, out, &at, sizeof at);
    cumsum_kernel(out->data, a->data, at.outer, at.n, at.inner, false, true);
    return out;
}
