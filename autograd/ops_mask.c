/* ops_mask.c - masked fill with a constant mask, and the causal mask. */
#include "internal.h"

/* ---- masked_fill: out = mask ? value : a, mask broadcast to a's shape */

/* For each element of a: is it masked? Writes 1/0 bytes (the mask, expanded). */
static uint8_t *expand_mask(ag_ctx *c, const ag_tensor *a, const ag_tensor *mask)
{
    int nd = a->ndim;
    int64_t st[AG_MAX_DIMS];
    ag_broadcast_strides(mask, nd, a->shape, st);
    uint8_t *m = ag_ctx_alloc(c, (size_t)a->numel);
    AG_PARALLEL(a->numel, ,
    for (int64_t e = 0; e < a->numel; e++) {
        int64_t q = e, off = 0;
        for (int d = nd - 1; d >= 0; d--) {
            off += (q % a->shape[d]) * st[d];
            q /= a->shape[d];
        }
        m[e] = mask->data[off] != 0.0f;
    }
    );
    return m;
}

static void masked_fill_backward(ag_ctx *ctx, ag_tensor *out)
{
    float *gx = ag_grad_of(ctx, ag_input(out, 0));
    const uint8_t *m = ag_saved(out);
    if (gx)
        AG_PARALLEL(out->numel, ,
        for (int64_t i = 0; i < out->numel; i++)
            gx[i] += m[i] ? 0.0f : out->grad[i];
        );
}

static const ag_op masked_fill_op = {"masked_fill", masked_fill_backward, AG_NO_DATA};

ag_tensor *ag_masked_fill(ag_ctx *c, ag_tensor *a, const ag_tensor *mask, float value)
{
    ag_tensor *in[2] = {a, (ag_tensor *)mask};
    if (!ag_check_inputs("masked_fill", in, 2))
        return NULL;
    int nd;
    int64_t shape[AG_MAX_DIMS];
    bool ok = ag_broadcast_shape(a, mask, &nd, shape) && nd == a->ndim;
    for (int i = 0; ok && i < nd; i++)
        ok = shape[i] == a->shape[i];
    if (!ok) {
        char sa[128], sm[128];
        ag_error("masked_fill: mask of shape %s does not broadcast to input shape %s",
                 ag_shape_str(mask, sm, sizeof sm), ag_shape_str(a, sa, sizeof sa));
        return NULL;
    }
    ag_tensor *out = ag_result(c, &masked_fill_op, &a, 1, a->ndim, a->shape);
    if (!out)
        return NULL;
    uint8_t *m = expand_mask(c, a, mask);
    ag_node_of(out)->saved = m;
    AG_PARALLEL(a->numel, ,
    for (int64_t i = 0; i < a->numel; i++)
        out->data[i] = m[i] ? value : a->data[i];
    );
    return out;
}

/* ---- causal mask over the last two dims (..., T, S): column s > row t gets value */

static void causal_kernel(float *y, const float *x, int64_t rows, int64_t T, int64_t S,
                          float value, bool overwrite)
{
    AG_PARALLEL(rows * S, ,
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = r % T;
        float *yr = y + r * S;
        const float *xr = x + r * S;
        int64_t keep = t + 1 < S ? t + 1 : S;
        if (!overwrite) { /* a backward adding into a grad: nothing masked to write */
            for (int64_t s = 0; s < keep; s++)
                yr[s] += xr[s];
        } else {
            for (int64_t s = 0; s < keep; s++)
                yr[s] = xr[s];
            for (int64_t s = keep; s < S; s++)
                yr[s] = value;
        }
    }
    );
}

static void causal_backward(ag_ctx *ctx, ag_tensor *out)
{
    bool overwrite;
    float *gx = ag_grad_buf(ctx, ag_input(out, 0), &overwrite);
    int64_t T = out->shape[out->ndim - 2], S = out->shape[out->ndim - 1];
    /* an overwritten grad is the forward itself with 0 as the masked value */
    if (gx)
        causal_kernel(gx, out->grad, out->numel / (S ? S : 1), T, S, 0.0f, overwrite);
}

static const ag_op causal_op = {"causal_mask", causal_backward, AG_NO_DATA};

ag_tensor *ag_causal_mask(ag_ctx *c, ag_tensor *a, float value)
{
    if (!ag_check_inputs("causal_mask", &a, 1))
        return NULL;
    if (a->ndim < 2) {
        char b[128];
        ag_error("causal_mask: needs (..., T, S), got %s", ag_shape_str(a, b, sizeof b));
        return NULL;
    }
    ag_tensor *out = ag_result(c, &causal_op, &a, 1, a->ndim, a->shape);
    if (!out)
        return NULL;
    int64_t T = a->shape[a->ndim - 2], S = a->shape[a->ndim - 1];
    causal_kernel(out->data, a->data, a->numel / (S ? S : 1), T, S, value, true);
    return out;
}
