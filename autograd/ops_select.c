/* ops_select.c - elementwise choices: where(cond, a, b), cond, a and b
 * broadcast together, and clamp(a, lo, hi). Each backward passes g where
 * its input was chosen and 0 elsewhere (0 even for an infinite or NaN g). */
#include "internal.h"

/* ---------------------------------------------------------------- where */

/* cond != 0 over out's shape as 1/0 bytes (NaN counts as true) */
static uint8_t *expand_cond(ag_ctx *c, const ag_tensor *cond, const ag_tensor *out)
{
    int64_t n = out->numel;
    uint8_t *m = ag_ctx_alloc(c, (size_t)n);
    const float *cd = cond->data;
    if (ag_same_shape(cond, out)) {
        AG_PARALLEL(n, ,
        for (int64_t i = 0; i < n; i++)
            m[i] = cd[i] != 0.0f;
        );
        return m;
    }
    int nd = out->ndim;
    int64_t st[AG_MAX_DIMS];
    ag_broadcast_strides(cond, nd, out->shape, st);
    AG_PARALLEL(n, ,
    for (int64_t e = 0; e < n; e++) {
        int64_t q = e, off = 0;
        for (int d = nd - 1; d >= 0; d--) {
            off += (q % out->shape[d]) * st[d];
            q /= out->shape[d];
        }
        m[e] = cd[off] != 0.0f;
    }
    );
    return m;
}

/* o = m ? a : b over out's shape (N), a and b read through broadcast
 * strides: per row of the last dim (L), their offsets and last strides */
static void where_kernel(float *o, const uint8_t *m, const ag_tensor *a, const ag_tensor *b,
                         const ag_tensor *out)
{
    int64_t n = out->numel;
    const float *ad = a->data, *bd = b->data;
    if (ag_same_shape(a, out) && ag_same_shape(b, out)) {
        AG_PARALLEL(n, ,
        for (int64_t i = 0; i < n; i++)
            o[i] = m[i] ? ad[i] : bd[i];
        );
        return;
    }
    int nd = out->ndim;
    int64_t sa[AG_MAX_DIMS] = {0}, sb[AG_MAX_DIMS] = {0};
    ag_broadcast_strides(a, nd, out->shape, sa);
    ag_broadcast_strides(b, nd, out->shape, sb);
    int64_t L = nd ? out->shape[nd - 1] : 1, rows = L ? n / L : 0;
    int64_t la = nd ? sa[nd - 1] : 0, lb = nd ? sb[nd - 1] : 0;
    AG_PARALLEL(n, ,
    for (int64_t r = 0; r < rows; r++) {
        int64_t oa = 0, ob = 0, q = r;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t k = q % out->shape[d];
            q /= out->shape[d];
            oa += k * sa[d];
            ob += k * sb[d];
        }
        const uint8_t *mr = m + r * L;
        float *orow = o + r * L;
        for (int64_t j = 0; j < L; j++)
            orow[j] = mr[j] ? ad[oa + j * la] : bd[ob + j * lb];
    }
    );
}

typedef struct {
    const uint8_t *m; /* cond over out's shape */
} where_attr;

/* a's grad: g where m, b's: g where !m, each summed over its broadcast dims */
static void where_backward(ag_ctx *ctx, ag_tensor *out)
{
    const where_attr *at = ag_saved(out);
    const uint8_t *m = at->m;
    const float *g = out->grad;
    int64_t n = out->numel;
    float *tmp = NULL;
    for (int k = 0; k < 2; k++) {
        ag_tensor *in = ag_input(out, k);
        bool overwrite;
        float *gk = ag_grad_buf(ctx, in, &overwrite);
        if (!gk)
            continue;
        uint8_t pick = k == 0;
        if (ag_same_shape(in, out)) {
            AG_PARALLEL(n, ,
            for (int64_t i = 0; i < n; i++)
                gk[i] = (overwrite ? 0.0f : gk[i]) + (m[i] == pick ? g[i] : 0.0f);
            );
            continue;
        }
        tmp = tmp ? tmp : ag_scratch(ctx, (size_t)n * sizeof(float));
        AG_PARALLEL(n, ,
        for (int64_t i = 0; i < n; i++)
            tmp[i] = m[i] == pick ? g[i] : 0.0f;
        );
        ag_accum_reduce(gk, in, tmp, out, 1.0f, overwrite);
    }
}

static const ag_op where_op = {"where", where_backward, AG_NO_DATA};

ag_tensor *ag_where(ag_ctx *c, const ag_tensor *cond, ag_tensor *a, ag_tensor *b)
{
    ag_tensor *in[3] = {(ag_tensor *)cond, a, b};
    if (!ag_check_inputs("where", in, 3))
        return NULL;
    ag_tensor ab = {0}; /* a and b's broadcast shape, for the second broadcast */
    int nd;
    int64_t shape[AG_MAX_DIMS];
    bool ok = ag_broadcast_shape(a, b, &ab.ndim, ab.shape) &&
              ag_broadcast_shape(cond, &ab, &nd, shape);
    if (!ok) {
        char sc[128], sa[128], sb[128];
        ag_error("where: shapes %s (cond), %s and %s do not broadcast",
                 ag_shape_str(cond, sc, sizeof sc), ag_shape_str(a, sa, sizeof sa),
                 ag_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    ag_tensor *out = ag_result(c, &where_op, in + 1, 2, nd, shape);
    if (!out)
        return NULL;
    uint8_t *m = expand_cond(c, cond, out);
    ag_save(c, out, &(where_attr){m}, sizeof(where_attr));
    where_kernel(out->data, m, a, b, out);
    return out;
}

/* ---------------------------------------------------------------- clamp */

typedef struct {
    float lo, hi;
} clamp_attr;

/* g where lo <= x <= hi (never for NaN) */
static void clamp_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    if (!gx)
        return;
    const clamp_attr *at = ag_saved(out);
    const float lo = at->lo, hi = at->hi, *xd = x->data, *g = out->grad;
    int64_t n = out->numel;
    AG_PARALLEL(n, ,
    for (int64_t i = 0; i < n; i++)
        gx[i] = (overwrite ? 0.0f : gx[i]) + (((xd[i] >= lo) & (xd[i] <= hi)) ? g[i] : 0.0f);
    );
}

static const ag_op clamp_op = {"clamp", clamp_backward, AG_IN(0)};

ag_tensor *ag_clamp(ag_ctx *c, ag_tensor *a, float lo, float hi)
{
    if (!ag_check_inputs("clamp", &a, 1))
        return NULL;
    ag_tensor *out = ag_result(c, &clamp_op, &a, 1, a->ndim, a->shape);
    if (!out)
        return NULL;
    ag_save(c, out, &(clamp_attr){lo, hi}, sizeof(clamp_attr));
    const float *x = a->data;
    float *y = out->data;
    int64_t n = a->numel;
    /* as torch: min(max(x, lo), hi), so hi wins when lo > hi; NaN passes */
    AG_PARALLEL(n, ,
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] < lo ? lo : x[i];
        y[i] = v > hi ? hi : v;
    }
    );
    return out;
}
