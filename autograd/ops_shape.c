/* ops_shape.c - reshape (a view), transpose, permute, concat, slice, split;
 * stack, chunk, expand and detach. */
#include "internal.h"

#include <stdlib.h>

/* ---- reshape: same data, new shape; grads pass straight through */

static void reshape_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    if (ag_grad_pass(out, x))
        return;
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    if (gx)
        ag_accum_reduce(gx, x, out->grad, out, 1.0f, overwrite);
}

static const ag_op reshape_op = {"reshape", reshape_backward, AG_NO_DATA};

ag_tensor *ag_reshape(ag_ctx *c, ag_tensor *a, int ndim, const int64_t *shape)
{
    if (!ag_check_inputs("reshape", &a, 1))
        return NULL;
    char sa[128], sb[128];
    int64_t s[AG_MAX_DIMS], known = 1;
    int infer = -1;
    if (ndim < 0 || ndim > AG_MAX_DIMS) {
        ag_error("reshape: %d dims, the most is %d", ndim, AG_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0)
            infer = i;
        else if (s[i] < 0) {
            ag_error("reshape: bad target shape %s for %s", ag_fmt_shape(ndim, shape, sb, sizeof sb),
                     ag_shape_str(a, sa, sizeof sa));
            return NULL;
        } else
            known *= s[i];
    }
    if (infer >= 0)
        s[infer] = known ? a->numel / known : 0;
    if (ag_shape_numel(ndim, s) != a->numel) {
        ag_error("reshape: cannot view %s (%lld elements) as %s", ag_shape_str(a, sa, sizeof sa),
                 (long long)a->numel, ag_fmt_shape(ndim, shape, sb, sizeof sb));
        return NULL;
    }
    ag_tensor *out = ag_result_view(c, &reshape_op, &a, 1, ndim, s);
    if (out)
        ag_make_view(out, a, a->data);
    return out;
}

/* ---- permute: out.shape[i] = in.shape[perm[i]], materialized */

typedef struct {
    int64_t perm[AG_MAX_DIMS]; /* resolved: out axis i is input axis perm[i] */
} permute_attr;

/* Rows [rows id / nt, rows (id + 1) / nt) of permute_kernel: the input offset
 * steps along like an odometer, divisions only at the start of the run. */
static void permute_rows(int id, int nt, int nd, const int64_t *st, int64_t L, int64_t sl,
                         int64_t rows, const ag_tensor *out, float *in_buf, float *out_buf,
                         bool to_in, bool overwrite)
{
    int64_t r0 = rows * id / nt, r1 = rows * (id + 1) / nt;
    int64_t idx[AG_MAX_DIMS], off = 0, q = r0;
    for (int d = nd - 2; d >= 0; d--) {
        idx[d] = q % out->shape[d];
        q /= out->shape[d];
        off += idx[d] * st[d];
    }
    for (int64_t r = r0; r < r1; r++) {
        float *o = out_buf + r * L;
        float *x = in_buf + off;
        if (to_in && overwrite)
            for (int64_t i = 0; i < L; i++)
                x[i * sl] = o[i];
        else if (to_in)
            for (int64_t i = 0; i < L; i++)
                x[i * sl] += o[i];
        else
            for (int64_t i = 0; i < L; i++)
                o[i] = x[i * sl];
        for (int d = nd - 2; d >= 0; d--) { /* next row */
            off += st[d];
            if (++idx[d] < out->shape[d])
                break;
            off -= st[d] * out->shape[d];
            idx[d] = 0;
        }
    }
}

/* Copies in to its permutation out, or with to_in, out back into in (a
 * backward: overwritten or added to). Rows of out's last dim; each in
 * element is touched once, so rows run in parallel. */
static void permute_kernel(const ag_tensor *in, const ag_tensor *out, const int64_t *perm,
                           float *in_buf, float *out_buf, bool to_in, bool overwrite)
{
    int nd = out->ndim;
    int64_t ist[AG_MAX_DIMS], st[AG_MAX_DIMS];
    ag_strides(in->ndim, in->shape, ist);
    for (int i = 0; i < nd; i++)
        st[i] = ist[perm[i]];
    int64_t L = nd ? out->shape[nd - 1] : 1, sl = nd ? st[nd - 1] : 1;
    int64_t rows = L ? out->numel / L : 0;
    /* each part a run of rows */
    int parts = ag_par_parts(out->numel);
    AG_PARALLEL(out->numel, schedule(static),
    for (int p = 0; p < parts; p++) {
        permute_rows(p, parts, nd, st, L, sl, rows, out, in_buf, out_buf, to_in, overwrite);
    }
    );
}

static void permute_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    const permute_attr *at = ag_saved(out);
    if (gx)
        permute_kernel(x, out, at->perm, gx, out->grad, true, overwrite);
}

static const ag_op permute_op = {"permute", permute_backward, AG_NO_DATA};
static const ag_op transpose_op = {"transpose", permute_backward, AG_NO_DATA};

static ag_tensor *permute(ag_ctx *c, const ag_op *op, ag_tensor *a, const int *perm)
{
    int64_t shape[AG_MAX_DIMS];
    permute_attr at = {{0}};
    bool used[AG_MAX_DIMS] = {false};
    for (int i = 0; i < a->ndim; i++) {
        int k = perm[i] < 0 ? perm[i] + a->ndim : perm[i];
        if (k < 0 || k >= a->ndim || used[k]) {
            char b[128];
            ag_error("%s: axis %d at position %d is not a permutation of the %d axes of %s",
                     op->name, perm[i], i, a->ndim, ag_shape_str(a, b, sizeof b));
            return NULL;
        }
        used[k] = true;
        at.perm[i] = k;
        shape[i] = a->shape[k];
    }
    ag_tensor *out = ag_result(c, op, &a, 1, a->ndim, shape);
    if (!out)
        return NULL;
    ag_save(c, out, &at, sizeof at);
    permute_kernel(a, out, at.perm, a->data, out->data, false, true);
    return out;
}

ag_tensor *ag_permute(ag_ctx *c, ag_tensor *a, const int *perm, int n)
{
    if (!ag_check_inputs("permute", &a, 1))
        return NULL;
    if (n != a->ndim) {
        char b[128];
        ag_error("permute: %d axes given for the %d dims of %s", n, a->ndim,
                 ag_shape_str(a, b, sizeof b));
        return NULL;
    }
    return permute(c, &permute_op, a, perm);
}

ag_tensor *ag_transpose(ag_ctx *c, ag_tensor *a, int axis0, int axis1)
{
    if (!ag_check_inputs("transpose", &a, 1) || !ag_resolve_axis("transpose", a, &axis0) ||
        !ag_resolve_axis("transpose", a, &axis1))
        return NULL;
    int perm[AG_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++)
        perm[i] = i;
    perm[axis0] = axis1;
    perm[axis1] = axis0;
    return permute(c, &transpose_op, a, perm);
}

/* ---- concat, slice: copies of (outer, n, inner) blocks along one axis */

/* dst rows of dn*inner floats starting at column d0*inner (+)= src rows of
 * sn*inner floats starting at s0*inner; len*inner floats per row. */
static void copy_block(float *dst, int64_t dn, int64_t d0, const float *src, int64_t sn,
                       int64_t s0, int64_t len, int64_t outer, int64_t inner, bool overwrite)
{
    int64_t w = len * inner;
    AG_PARALLEL(outer * w, ,
    for (int64_t o = 0; o < outer; o++) {
        float *d = dst + (o * dn + d0) * inner;
        const float *s = src + (o * sn + s0) * inner;
        if (overwrite)
            memcpy(d, s, (size_t)w * sizeof(float));
        else
            for (int64_t i = 0; i < w; i++)
                d[i] += s[i];
    }
    );
}

static void outer_inner(const ag_tensor *t, int axis, int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= t->shape[i];
    for (int i = axis + 1; i < t->ndim; i++)
        *inner *= t->shape[i];
}

typedef struct {
    int axis; /* resolved */
} concat_attr;

static void concat_backward(ag_ctx *ctx, ag_tensor *out)
{
    int axis = ((const concat_attr *)ag_saved(out))->axis;
    int64_t outer, inner, off = 0;
    outer_inner(out, axis, &outer, &inner);
    for (int k = 0; k < ag_num_inputs(out); k++) {
        ag_tensor *x = ag_input(out, k);
        bool overwrite; /* each input's grad is exactly its block: it may be overwritten */
        float *gx = ag_grad_buf(ctx, x, &overwrite);
        if (gx)
            copy_block(gx, x->shape[axis], 0, out->grad, out->shape[axis], off, x->shape[axis],
                       outer, inner, overwrite);
        off += x->shape[axis];
    }
}

static const ag_op concat_op = {"concat", concat_backward, AG_NO_DATA};

ag_tensor *ag_concat(ag_ctx *c, ag_tensor *const *ts, int n, int axis)
{
    if (n < 1) {
        ag_error("concat: no tensors");
        return NULL;
    }
    if (!ag_check_inputs("concat", ts, n) || !ag_resolve_axis("concat", ts[0], &axis))
        return NULL;
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, ts[0]->shape, sizeof shape);
    shape[axis] = 0;
    for (int k = 0; k < n; k++) {
        bool ok = ts[k]->ndim == ts[0]->ndim;
        for (int i = 0; ok && i < ts[0]->ndim; i++)
            ok = i == axis || ts[k]->shape[i] == ts[0]->shape[i];
        if (!ok) {
            char a[128], b[128];
            ag_error("concat: tensor %d of shape %s does not match tensor 0 of shape %s "
                     "outside axis %d", k, ag_shape_str(ts[k], a, sizeof a),
                     ag_shape_str(ts[0], b, sizeof b), axis);
            return NULL;
        }
        shape[axis] += ts[k]->shape[axis];
    }
    ag_tensor *out = ag_result(c, &concat_op, ts, n, ts[0]->ndim, shape);
    if (!out)
        return NULL;
    ag_save(c, out, &(concat_attr){axis}, sizeof(concat_attr));
    int64_t outer, inner, off = 0;
    outer_inner(out, axis, &outer, &inner);
    for (int k = 0; k < n; k++) {
        copy_block(out->data, shape[axis], off, ts[k]->data, ts[k]->shape[axis], 0,
                   ts[k]->shape[axis], outer, inner, true);
        off += ts[k]->shape[axis];
    }
    return out;
}

typedef struct {
    int axis;      /* resolved */
    int64_t start; /* resolved: out is input[start : start + out's size] along axis */
} slice_attr;

static void slice_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    float *gx = ag_grad_of(ctx, x);
    if (!gx)
        return;
    const slice_attr *at = ag_saved(out);
    int axis = at->axis;
    int64_t outer, inner;
    outer_inner(x, axis, &outer, &inner);
    copy_block(gx, x->shape[axis], at->start, out->grad, out->shape[axis], 0, out->shape[axis],
               outer, inner, false);
}

static const ag_op slice_op = {"slice", slice_backward, AG_NO_DATA};

ag_tensor *ag_slice(ag_ctx *c, ag_tensor *a, int axis, int64_t start, int64_t end)
{
    if (!ag_check_inputs("slice", &a, 1) || !ag_resolve_axis("slice", a, &axis))
        return NULL;
    int64_t n = a->shape[axis], s = start < 0 ? start + n : start, e = end < 0 ? end + n : end;
    if (s < 0 || e > n || s > e) {
        char b[128];
        ag_error("slice: [%lld:%lld] out of range for axis %d of shape %s", (long long)start,
                 (long long)end, axis, ag_shape_str(a, b, sizeof b));
        return NULL;
    }
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[axis] = e - s;
    int64_t outer, inner;
    outer_inner(a, axis, &outer, &inner);
    /* with nothing but size-1 dims before the axis the slice is one
     * contiguous block of a: a view, as reshape is, instead of a copy */
    bool view = outer == 1;
    ag_tensor *out = view ? ag_result_view(c, &slice_op, &a, 1, a->ndim, shape)
                          : ag_result(c, &slice_op, &a, 1, a->ndim, shape);
    if (!out)
        return NULL;
    ag_save(c, out, &(slice_attr){.axis = axis, .start = s}, sizeof(slice_attr));
    if (view)
        ag_make_view(out, a, a->data + s * inner);
    else
        copy_block(out->data, e - s, 0, a->data, n, s, e - s, outer, inner, true);
    return out;
}

bool ag_split(ag_ctx *c, ag_tensor *a, const int64_t *sizes, int n, int axis, ag_tensor **out)
{
    if (!ag_check_inputs("split", &a, 1) || !ag_resolve_axis("split", a, &axis))
        return false;
    int64_t total = 0;
    for (int k = 0; k < n; k++)
        total += sizes[k] < 0 ? a->shape[axis] + 1 : sizes[k];
    if (total != a->shape[axis]) {
        char b[128];
        ag_error("split: sizes of %d pieces add up to %lld, not the %lld of axis %d of shape %s", n,
                 (long long)total, (long long)a->shape[axis], axis, ag_shape_str(a, b, sizeof b));
        return false;
    }
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        out[k] = ag_slice(c, a, axis, off, off + sizes[k]);
        if (!out[k])
            return false;
        off += sizes[k];
    }
    return true;
}

/* ---- stack: n equal shapes joined along a new axis; concat's blocks with a size-1 axis */

typedef struct {
    int axis; /* resolved, in the output */
} stack_attr;

static void stack_backward(ag_ctx *ctx, ag_tensor *out)
{
    int axis = ((const stack_attr *)ag_saved(out))->axis, n = ag_num_inputs(out);
    int64_t outer, inner;
    outer_inner(out, axis, &outer, &inner);
    for (int k = 0; k < n; k++) {
        bool overwrite; /* each input's grad is exactly its block */
        float *gx = ag_grad_buf(ctx, ag_input(out, k), &overwrite);
        if (gx)
            copy_block(gx, 1, 0, out->grad, n, k, 1, outer, inner, overwrite);
    }
}

static const ag_op stack_op = {"stack", stack_backward, AG_NO_DATA};

ag_tensor *ag_stack(ag_ctx *c, ag_tensor *const *ts, int n, int axis)
{
    if (n < 1) {
        ag_error("stack: no tensors");
        return NULL;
    }
    if (!ag_check_inputs("stack", ts, n))
        return NULL;
    int nd = ts[0]->ndim;
    char a[128], b[128];
    if (axis < -(nd + 1) || axis > nd || nd + 1 > AG_MAX_DIMS) {
        ag_error("stack: axis %d out of range for stacking tensors of shape %s (at most %d dims)",
                 axis, ag_shape_str(ts[0], a, sizeof a), AG_MAX_DIMS - 1);
        return NULL;
    }
    if (axis < 0)
        axis += nd + 1;
    for (int k = 1; k < n; k++)
        if (!ag_same_shape(ts[k], ts[0])) {
            ag_error("stack: tensor %d of shape %s differs from tensor 0 of shape %s", k,
                     ag_shape_str(ts[k], a, sizeof a), ag_shape_str(ts[0], b, sizeof b));
            return NULL;
        }
    int64_t shape[AG_MAX_DIMS];
    for (int i = 0, j = 0; i <= nd; i++)
        shape[i] = i == axis ? n : ts[0]->shape[j++];
    ag_tensor *out = ag_result(c, &stack_op, ts, n, nd + 1, shape);
    if (!out)
        return NULL;
    ag_save(c, out, &(stack_attr){axis}, sizeof(stack_attr));
    int64_t outer, inner;
    outer_inner(out, axis, &outer, &inner);
    for (int k = 0; k < n; k++)
        copy_block(out->data, n, k, ts[k]->data, 1, 0, 1, outer, inner, true);
    return out;
}

/* ---- chunk: ag_split into pieces of ceil(size / chunks), as torch.chunk */

int ag_chunk(ag_ctx *c, ag_tensor *a, int chunks, int axis, ag_tensor **out)
{
    if (!ag_check_inputs("chunk", &a, 1) || !ag_resolve_axis("chunk", a, &axis))
        return -1;
    if (chunks < 1) {
        char b[128];
        ag_error("chunk: %d chunks of shape %s along axis %d; want at least 1", chunks,
                 ag_shape_str(a, b, sizeof b), axis);
        return -1;
    }
    int64_t len = a->shape[axis], size = (len + chunks - 1) / chunks;
    /* an empty axis gives chunks empty pieces, as torch.chunk does */
    int n = size ? (int)((len + size - 1) / size) : chunks;
    int64_t *sizes = malloc((size_t)n * sizeof *sizes);
    if (!sizes) {
        ag_error("chunk: out of memory for %d pieces", n);
        return -1;
    }
    for (int k = 0; k < n; k++)
        sizes[k] = size * (k + 1) <= len ? size : len - size * k;
    bool ok = ag_split(c, a, sizes, n, axis, out);
    free(sizes);
    return ok ? n : -1;
}

/* ---- expand: broadcast_to. Without strides a tensor cannot repeat its data, so
 * only an expand that keeps the element count (new leading or existing size-1
 * dims of size 1: the same floats in the same order) is a view; any other is a
 * copy whose backward sums the grad over the broadcast dims. */

static void expand_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    if (ag_grad_pass(out, x))
        return;
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    if (gx)
        ag_accum_reduce(gx, x, out->grad, out, 1.0f, overwrite);
}

static const ag_op expand_op = {"expand", expand_backward, AG_NO_DATA};

ag_tensor *ag_expand(ag_ctx *c, ag_tensor *a, int ndim, const int64_t *shape)
{
    if (!ag_check_inputs("expand", &a, 1))
        return NULL;
    char sa[128], sb[128];
    int64_t s[AG_MAX_DIMS];
    bool ok = ndim >= a->ndim && ndim <= AG_MAX_DIMS;
    for (int i = 0; ok && i < ndim; i++) {
        int j = i - (ndim - a->ndim); /* a's dim lined up with i, if any */
        s[i] = shape[i] == -1 && j >= 0 ? a->shape[j] : shape[i];
        ok = s[i] >= 0 && (j < 0 || a->shape[j] == s[i] || a->shape[j] == 1);
    }
    if (!ok) {
        ag_error("expand: cannot broadcast %s to %s", ag_shape_str(a, sa, sizeof sa),
                 ag_fmt_shape(ndim < 0 ? 0 : ndim, shape, sb, sizeof sb));
        return NULL;
    }
    bool view = ag_shape_numel(ndim, s) == a->numel;
    ag_tensor *out = view ? ag_result_view(c, &expand_op, &a, 1, ndim, s)
                          : ag_result(c, &expand_op, &a, 1, ndim, s);
    if (!out)
        return NULL;
    if (view) {
        ag_make_view(out, a, a->data);
        return out;
    }
    /* rows of the last dim, each from a's row at the broadcast offset */
    int64_t st[AG_MAX_DIMS], L = s[ndim - 1], rows = L ? out->numel / L : 0;
    ag_broadcast_strides(a, ndim, s, st);
    int64_t sl = st[ndim - 1];
    AG_PARALLEL(out->numel, ,
    for (int64_t r = 0; r < rows; r++) {
        int64_t q = r, off = 0;
        for (int d = ndim - 2; d >= 0; d--) {
            off += q % s[d] * st[d];
            q /= s[d];
        }
        float *o = out->data + r * L;
        const float *x = a->data + off;
        if (sl)
            memcpy(o, x, (size_t)L * sizeof *o);
        else
            for (int64_t i = 0; i < L; i++)
                o[i] = x[0];
    }
    );
    return out;
}

/* ---- detach: the same data under a new header that is not recorded and needs no grad */

ag_tensor *ag_detach(ag_ctx *c, ag_tensor *a)
{
    if (!ag_check_inputs("detach", &a, 1))
        return NULL;
    if (!c) {
        char b[128];
        ag_error("detach: needs a ctx for the new header of %s, got NULL",
                 ag_shape_str(a, b, sizeof b));
        return NULL;
    }
    ag_tensor *out = ag_new_header(c, a->ndim, a->shape);
    if (out)
        ag_make_view(out, a, a->data);
    return out;
}
