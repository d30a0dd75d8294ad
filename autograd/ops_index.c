/* ops_index.c - picking elements by integer indices along one axis:
 * gather (torch.take_along_dim: an index per output element) and
 * index_select (one index list for every slice). Both backwards scatter the
 * output grad back with adds, since an index may repeat.
 *
 * Around the axis the output is (outer, m, inner) and the input (its
 * broadcast, for gather) (outer, n, inner); each index picks one of the n. */
#include "internal.h"

#define COLS 64 /* columns per block in index_select's backward: threads own blocks */

static bool index_in_range(const char *op, const ag_tensor *a, int axis, const ag_index *idx)
{
    int64_t n = a->shape[axis];
    for (int64_t i = 0; i < idx->numel; i++)
        if (idx->data[i] < 0 || idx->data[i] >= n) {
            char sa[128], si[128];
            ag_error("%s: index %d at position %lld is out of range for axis %d of shape %s "
                     "(indices %s)", op, idx->data[i], (long long)i, axis,
                     ag_shape_str(a, sa, sizeof sa),
                     ag_fmt_shape(idx->ndim, idx->shape, si, sizeof si));
            return false;
        }
    return true;
}

/* ---- gather: out[..., k, ...] = a[..., idx[..., k, ...], ...] along axis, the
 * dims other than axis broadcast between a and idx */

typedef struct {
    int ndim, axis;
    int64_t shape[AG_MAX_DIMS]; /* out's */
    int64_t ast[AG_MAX_DIMS];   /* a's strides lined up with out, 0 where a is broadcast */
    const int32_t *ix;          /* (outer, m, inner): idx broadcast to out's shape */
    const int64_t *inner_off;   /* (inner): a's offset of each inner position */
    bool serial;                /* a broadcast before axis: two outer slices share a's elements */
} gather_attr;

static int64_t outer_offset(const gather_attr *g, int64_t o)
{
    int64_t off = 0;
    for (int d = g->axis - 1; d >= 0; d--) {
        off += o % g->shape[d] * g->ast[d];
        o /= g->shape[d];
    }
    return off;
}

/* Forward (to_a false): y[o, k, i] = x[at(o, k, i)]; backward (to_a true):
 * x[at(o, k, i)] += y[o, k, i], where x is a's data or grad and y out's. */
static void gather_kernel(const gather_attr *g, float *x, float *y, int64_t outer, int64_t m,
                          int64_t inner, bool to_a)
{
    int64_t sa = g->ast[g->axis];
    AG_PARALLEL(to_a && g->serial ? 0 : outer * m * inner, ,
    for (int64_t o = 0; o < outer; o++) {
        int64_t base = outer_offset(g, o);
        for (int64_t k = 0; k < m; k++) {
            int64_t row = (o * m + k) * inner;
            const int32_t *ix = g->ix + row;
            float *yr = y + row;
            if (to_a)
                for (int64_t i = 0; i < inner; i++)
                    x[base + ix[i] * sa + g->inner_off[i]] += yr[i];
            else
                for (int64_t i = 0; i < inner; i++)
                    yr[i] = x[base + ix[i] * sa + g->inner_off[i]];
        }
    }
    );
}

static void gather_sizes(const gather_attr *g, int64_t *outer, int64_t *m, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < g->ndim; d++) {
        if (d < g->axis)
            *outer *= g->shape[d];
        if (d > g->axis)
            *inner *= g->shape[d];
    }
    *m = g->shape[g->axis];
}

static void gather_backward(ag_ctx *ctx, ag_tensor *out)
{
    float *ga = ag_grad_of(ctx, ag_input(out, 0));
    if (!ga)
        return;
    const gather_attr *g = ag_saved(out);
    int64_t outer, m, inner;
    gather_sizes(g, &outer, &m, &inner);
    gather_kernel(g, ga, out->grad, outer, m, inner, true);
}

static const ag_op gather_op = {"gather", gather_backward, AG_NO_DATA};

ag_tensor *ag_gather(ag_ctx *c, ag_tensor *a, const ag_index *idx, int axis)
{
    /* NULL indices come from a failed ag_index_new, which has reported */
    if (!ag_check_inputs("gather", &a, 1) || !idx || !ag_resolve_axis("gather", a, &axis))
        return NULL;
    char sa[128], si[128];
    gather_attr g = {.ndim = a->ndim, .axis = axis};
    bool ok = idx->ndim == a->ndim;
    for (int d = 0; ok && d < a->ndim; d++) {
        int64_t da = a->shape[d], di = idx->shape[d];
        ok = d == axis || da == di || da == 1 || di == 1;
        g.shape[d] = d == axis ? di : da == 1 ? di : da;
    }
    if (!ok) {
        ag_error("gather: indices %s do not match input %s outside axis %d (want the same "
                 "number of dims, each size equal or 1)",
                 ag_fmt_shape(idx->ndim, idx->shape, si, sizeof si),
                 ag_shape_str(a, sa, sizeof sa), axis);
        return NULL;
    }
    if (!index_in_range("gather", a, axis, idx))
        return NULL;
    ag_tensor *out = ag_result(c, &gather_op, &a, 1, a->ndim, g.shape);
    if (!out)
        return NULL;
    int64_t own[AG_MAX_DIMS], ist[AG_MAX_DIMS], outer, m, inner;
    ag_strides(a->ndim, a->shape, own);
    ag_strides(idx->ndim, idx->shape, ist);
    for (int d = 0; d < a->ndim; d++) {
        bool bcast = d != axis && a->shape[d] == 1 && g.shape[d] != 1;
        g.ast[d] = bcast ? 0 : own[d];
        g.serial = g.serial || (bcast && d < axis);
        if (idx->shape[d] == 1 && g.shape[d] != 1)
            ist[d] = 0; /* idx broadcast along d */
    }
    gather_sizes(&g, &outer, &m, &inner);
    /* idx broadcast to out's shape, and a's offset of each inner position */
    int32_t *ix = ag_ctx_alloc(c, (size_t)out->numel * sizeof *ix);
    int64_t *inner_off = ag_ctx_alloc(c, (size_t)inner * sizeof *inner_off);
    AG_PARALLEL(out->numel, ,
    for (int64_t e = 0; e < out->numel; e++) {
        int64_t q = e, off = 0;
        for (int d = a->ndim - 1; d >= 0; d--) {
            off += q % g.shape[d] * ist[d];
            q /= g.shape[d];
        }
        ix[e] = idx->data[off];
    }
    );
    for (int64_t i = 0; i < inner; i++) {
        int64_t q = i, off = 0;
        for (int d = a->ndim - 1; d > axis; d--) {
            off += q % g.shape[d] * g.ast[d];
            q /= g.shape[d];
        }
        inner_off[i] = off;
    }
    g.ix = ix;
    g.inner_off = inner_off;
    ag_save(c, out, &g, sizeof g);
    gather_kernel(&g, a->data, out->data, outer, m, inner, false);
    return out;
}

/* ---- index_select: out[o, k, i] = a[o, idx[k], i] */

typedef struct {
    int64_t outer, n, inner;
    const int32_t *idx; /* a copy */
    int64_t m;          /* how many */
} select_attr;

static void select_backward(ag_ctx *ctx, ag_tensor *out)
{
    float *ga = ag_grad_of(ctx, ag_input(out, 0));
    if (!ga)
        return;
    const select_attr *at = ag_saved(out);
    int64_t n = at->n, m = at->m, inner = at->inner, nb = (inner + COLS - 1) / COLS;
    const int32_t *idx = at->idx;
    const float *g = out->grad;
    /* a repeated index adds into the same row: threads own (outer, column block) pairs */
    AG_PARALLEL(out->numel, ,
    for (int64_t ob = 0; ob < at->outer * nb; ob++) {
        int64_t o = ob / nb, c0 = ob % nb * COLS, c1 = c0 + COLS < inner ? c0 + COLS : inner;
        for (int64_t k = 0; k < m; k++) {
            float *dst = ga + (o * n + idx[k]) * inner;
            const float *src = g + (o * m + k) * inner;
            for (int64_t i = c0; i < c1; i++)
                dst[i] += src[i];
        }
    }
    );
}

static const ag_op select_op = {"index_select", select_backward, AG_NO_DATA};

ag_tensor *ag_index_select(ag_ctx *c, ag_tensor *a, const ag_index *idx, int axis)
{
    if (!ag_check_inputs("index_select", &a, 1) || !idx ||
        !ag_resolve_axis("index_select", a, &axis))
        return NULL;
    if (idx->ndim > 1) {
        char sa[128], si[128];
        ag_error("index_select: indices %s for input %s; want one dim (or none)",
                 ag_fmt_shape(idx->ndim, idx->shape, si, sizeof si),
                 ag_shape_str(a, sa, sizeof sa));
        return NULL;
    }
    if (!index_in_range("index_select", a, axis, idx))
        return NULL;
    select_attr at = {.outer = 1, .n = a->shape[axis], .inner = 1, .m = idx->numel};
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        if (d < axis)
            at.outer *= a->shape[d];
        if (d > axis)
            at.inner *= a->shape[d];
        shape[d] = d == axis ? at.m : a->shape[d];
    }
    ag_tensor *out = ag_result(c, &select_op, &a, 1, a->ndim, shape);
    if (!out)
        return NULL;
    int32_t *saved = ag_ctx_alloc(c, (size_t)at.m * sizeof *saved);
    memcpy(saved, idx->data, (size_t)at.m * sizeof *saved);
    at.idx = saved;
    ag_save(c, out, &at, sizeof at);
    int64_t n = at.n, m = at.m, inner = at.inner;
    AG_PARALLEL(out->numel, ,
    for (int64_t r = 0; r < at.outer * m; r++)
        memcpy(out->data + r * inner, a->data + (r / m * n + saved[r % m]) * inner,
               (size_t)inner * sizeof(float));
    );
    return out;
}
