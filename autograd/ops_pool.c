/* ops_pool.c - max and average pooling over 1 or 2 spatial dims, as
 * torch.nn.functional's max_pool1d/2d and avg_pool1d/2d (kernel, stride
 * defaulting to the kernel, padding; ceil_mode off). Each (sample, channel)
 * plane is pooled on its own, so planes are the unit of parallel work.
 *   max: the window's maximum over the input pixels it covers (padding never
 *        wins); backward sends each output's grad to the first maximum, whose
 *        index forward kept. NaN wins, as in PyTorch.
 *   avg: the window's sum over kH kW, padding counted as zeros (PyTorch's
 *        count_include_pad=True); backward spreads grad / (kH kW) over it. */
#include "conv.h"

#include <stdint.h>

typedef struct {
    ag_conv_geom g;
    int32_t *arg; /* max: per output, the index in its (H, W) plane of the maximum */
} pool_saved;

/* Input rows [*lo, *hi) of output row o's window (start o s - pad, k rows) in [0, n). */
static void window_rows(int64_t o, int64_t k, int64_t s, int64_t pad, int64_t n, int64_t *lo,
                        int64_t *hi)
{
    int64_t start = o * s - pad;
    *lo = start > 0 ? start : 0;
    *hi = start + k < n ? start + k : n;
}

/* The max walks a plane a row of outputs at a time, tap by tap: for window
 * row ih and tap column j, every output column ow whose window meets input
 * column ow sw - pw + j takes that pixel if it is larger, 8 outputs at once
 * with no branch. Per output the pixels still come in row-major window
 * order, so "first maximum" means what it does in PyTorch's loop. */

typedef int32_t pool_i8 __attribute__((vector_size(32)));

/* Outputs [lo, hi) of a row take input pixel xr[ow sw + off] (index base +
 * ow sw + off in the plane) where it is larger or NaN. Rows are short (a
 * 28-pixel image pooled by 2 has 14 outputs): they go in blocks of 8, the
 * last one overlapping the one before, since taking the same pixel twice
 * changes nothing; a scalar tail's compare-and-branch mispredicts on random
 * data and cost more than the blocks. Stride 1 and 2 load whole vectors
 * (stride 2: two overlapping loads and a shuffle, never past the last pixel). */
static void max_tap(const float *xr, int64_t lo, int64_t hi, int64_t sw, int64_t off,
                    int64_t base, float *m, int32_t *a)
{
    const pool_i8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    int64_t n = hi - lo;
    if (n <= 0)
        return;
    if (n < 8) { /* one block through a copy: lanes past n hold -inf, never taken */
        ag_v8 v = {0}, mv = {0};
        pool_i8 ai = {0};
        for (int k = 0; k < 8; k++) {
            bool in = k < n;
            v[k] = in ? xr[(lo + k) * sw + off] : -INFINITY;
            mv[k] = in ? m[lo + k] : -INFINITY;
            ai[k] = in && a ? a[lo + k] : 0;
        }
        pool_i8 take = (v > mv) | (v != v), vi, mi;
        memcpy(&vi, &v, sizeof vi);
        memcpy(&mi, &mv, sizeof mi);
        mi = (vi & take) | (mi & ~take);
        pool_i8 idx = (int32_t)(base + lo * sw + off) + lane * (int32_t)sw;
        ai = (idx & take) | (ai & ~take);
        memcpy(&mv, &mi, sizeof mv);
        for (int k = 0; k < n; k++) {
            m[lo + k] = mv[k];
            if (a)
                a[lo + k] = ai[k];
        }
        return;
    }
    for (int64_t b = lo; b < hi; b += 8) {
        b = b + 8 <= hi ? b : hi - 8;
        const float *p = xr + b * sw + off;
        ag_v8 v;
        if (sw == 1) {
            v = ag_load8(p);
        } else if (sw == 2) {
            ag_v8 v0 = ag_load8(p), v1 = ag_load8(p + 7); /* p[0..7], p[7..14] */
#if defined(__clang__) || __GNUC__ >= 12
            v = __builtin_shufflevector(v0, v1, 0, 2, 4, 6, 9, 11, 13, 15);
#else
            v = __builtin_shuffle(v0, v1, (pool_i8){0, 2, 4, 6, 9, 11, 13, 15});
#endif
        } else {
            for (int k = 0; k < 8; k++)
                v[k] = p[k * sw];
        }
        ag_v8 mv = ag_load8(m + b);
        pool_i8 take = (v > mv) | (v != v);
        pool_i8 vi, mi;
        memcpy(&vi, &v, sizeof vi);
        memcpy(&mi, &mv, sizeof mi);
        mi = (vi & take) | (mi & ~take);
        memcpy(m + b, &mi, sizeof mi);
        if (a) {
            pool_i8 ai, idx = (int32_t)(base + b * sw + off) + lane * (int32_t)sw;
            memcpy(&ai, a + b, sizeof ai);
            ai = (idx & take) | (ai & ~take);
            memcpy(a + b, &ai, sizeof ai);
        }
    }
}

/* y (OH, OW) and arg (or NULL) from one plane x (H, W). PyTorch's rule: start
 * at the window's first pixel and -inf, take any larger value or any NaN. */
static void max_plane(const ag_conv_geom *g, const float *x, float *y, int32_t *arg)
{
    int64_t W = g->W, OW = g->OW, sw = g->sw;
    int64_t range[2 * 8]; /* the outputs tap column j meets, the same in every row (j < 8) */
    for (int64_t j = 0; j < g->kW && j < 8; j++)
        ag_conv_valid_range(j - g->pw, sw, W, OW, &range[2 * j], &range[2 * j + 1]);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        int64_t h0, h1;
        window_rows(oh, g->kH, g->sh, g->ph, g->H, &h0, &h1);
        float *m = y + oh * OW;
        int32_t *a = arg ? arg + oh * OW : NULL;
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t w0 = ow * sw - g->pw;
            m[ow] = -INFINITY;
            if (a)
                a[ow] = (int32_t)(h0 * W + (w0 > 0 ? w0 : 0));
        }
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t j = 0; j < g->kW; j++) {
                int64_t lo, hi, off = j - g->pw;
                if (j < 8) {
                    lo = range[2 * j];
                    hi = range[2 * j + 1];
                } else {
                    ag_conv_valid_range(off, sw, W, OW, &lo, &hi);
                }
                const float *xr = x + ih * W;
                max_tap(xr, lo, hi, sw, off, ih * W, m, a);
            }
    }
}

/* y (OH, OW): each window's sum over kH kW, padding as zeros */
static void avg_plane(const ag_conv_geom *g, const float *x, float *y)
{
    int64_t W = g->W, OW = g->OW, sw = g->sw;
    float scale = 1.0f / (float)(g->kH * g->kW);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        int64_t h0, h1;
        window_rows(oh, g->kH, g->sh, g->ph, g->H, &h0, &h1);
        float *s = y + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++)
            s[ow] = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t j = 0; j < g->kW; j++) {
                int64_t lo, hi, off = j - g->pw;
                ag_conv_valid_range(off, sw, W, OW, &lo, &hi);
                const float *xr = x + ih * W;
#pragma omp simd
                for (int64_t ow = lo; ow < hi; ow++)
                    s[ow] += xr[ow * sw + off];
            }
        for (int64_t ow = 0; ow < OW; ow++)
            s[ow] *= scale;
    }
}

/* gx (H, W) += the grad gy (OH, OW) of one plane's average; within one tap
 * distinct outputs meet distinct pixels, so the ow loop has no conflicts */
static void avg_plane_grad(const ag_conv_geom *g, const float *gy, float *gx)
{
    int64_t W = g->W, OW = g->OW, sw = g->sw;
    float scale = 1.0f / (float)(g->kH * g->kW);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        int64_t h0, h1;
        window_rows(oh, g->kH, g->sh, g->ph, g->H, &h0, &h1);
        const float *d = gy + oh * OW;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t j = 0; j < g->kW; j++) {
                int64_t lo, hi, off = j - g->pw;
                ag_conv_valid_range(off, sw, W, OW, &lo, &hi);
                float *xr = gx + ih * W;
#pragma omp simd
                for (int64_t ow = lo; ow < hi; ow++)
                    xr[ow * sw + off] += d[ow] * scale;
            }
    }
}

static void pool_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    if (!gx)
        return;
    const pool_saved *s = ag_saved(out);
    const ag_conv_geom *g = &s->g;
    int64_t planes = g->N * g->C, HW = g->H * g->W, P = g->OH * g->OW;
    const float *gy = out->grad;
    AG_PARALLEL(planes > 1 ? P * g->kH * g->kW * planes : 0, ,
    for (int64_t q = 0; q < planes; q++) {
        float *gxq = gx + q * HW;
        const float *gyq = gy + q * P;
        if (overwrite)
            memset(gxq, 0, (size_t)HW * sizeof *gxq);
        if (s->arg) {
            const int32_t *a = s->arg + q * P;
            for (int64_t i = 0; i < P; i++)
                gxq[a[i]] += gyq[i];
        } else {
            avg_plane_grad(g, gyq, gxq);
        }
    }
    );
}

/* backward needs only the output grad and, for max, the saved indices */
static const ag_op max_pool1d_op = {"max_pool1d", pool_backward, AG_NO_DATA};
static const ag_op max_pool2d_op = {"max_pool2d", pool_backward, AG_NO_DATA};
static const ag_op avg_pool1d_op = {"avg_pool1d", pool_backward, AG_NO_DATA};
static const ag_op avg_pool2d_op = {"avg_pool2d", pool_backward, AG_NO_DATA};

static ag_tensor *pool(ag_ctx *c, const ag_op *op, int nd, bool is_max, ag_tensor *x,
                       const ag_pool_opts *o)
{
    const char *name = op->name;
    if (!ag_check_inputs(name, &x, 1))
        return NULL;
    char sx[128], a1[48], a2[48], a3[48];
    ag_shape_str(x, sx, sizeof sx);
    if (x->ndim != nd + 2) {
        ag_error(nd == 1 ? "%s: input %s; want (N, C, L)" : "%s: input %s; want (N, C, H, W)", name,
                 sx);
        return NULL;
    }
    static const ag_pool_opts none;
    o = o ? o : &none;
    /* [0] is H (L for the 1-d pools), [1] is W; 1-d pools use the W slot */
    int64_t k[2] = {1, 1}, s[2] = {1, 1}, pd[2] = {0, 0};
    bool bad = false;
    for (int i = 0; i < nd; i++) {
        int j = 2 - nd + i;
        k[j] = o->kernel[i];
        s[j] = o->stride[i] ? o->stride[i] : k[j];
        pd[j] = o->padding[i];
        bad |= k[j] < 1 || s[j] < 1 || pd[j] < 0 || 2 * pd[j] > k[j];
    }
    if (bad) {
        ag_error("%s: kernel %s, stride %s, padding %s; want kernel >= 1, stride >= 1 (0: the "
                 "kernel), 0 <= padding <= kernel / 2",
                 name, ag_conv_dims_str(a1, sizeof a1, nd, k[0], k[1]),
                 ag_conv_dims_str(a2, sizeof a2, nd, s[0], s[1]),
                 ag_conv_dims_str(a3, sizeof a3, nd, pd[0], pd[1]));
        return NULL;
    }
    int64_t C = x->shape[1];
    ag_conv_geom g = {.N = x->shape[0], .C = C, .H = nd == 2 ? x->shape[2] : 1,
                      .W = x->shape[nd + 1], .M = C, .kH = k[0], .kW = k[1], .sh = s[0],
                      .sw = s[1], .ph = pd[0], .pw = pd[1], .dh = 1, .dw = 1, .groups = C};
    g.OH = ag_conv_out_size(g.H, g.kH, g.sh, g.ph, 1);
    g.OW = ag_conv_out_size(g.W, g.kW, g.sw, g.pw, 1);
    if (g.OH < 1 || g.OW < 1) {
        ag_error("%s: kernel %s is larger than the input %s padded by %s", name,
                 ag_conv_dims_str(a1, sizeof a1, nd, k[0], k[1]), sx,
                 ag_conv_dims_str(a2, sizeof a2, nd, pd[0], pd[1]));
        return NULL;
    }
    if (is_max && g.H * g.W > INT32_MAX) {
        ag_error("%s: input %s has planes of more than 2^31 - 1 elements", name, sx);
        return NULL;
    }
    int64_t shape[4] = {g.N, C, g.OH, g.OW};
    if (nd == 1)
        shape[2] = g.OW;
    ag_tensor *out = ag_result(c, op, &x, 1, nd + 2, shape);
    if (!out)
        return NULL;
    int64_t planes = g.N * C, HW = g.H * g.W, P = g.OH * g.OW;
    /* the maximum's indices only when a backward will read them */
    int32_t *arg = is_max && ag_op_of(out) ? ag_ctx_alloc(c, (size_t)(planes * P + 1) * sizeof *arg)
                                           : NULL;
    ag_save(c, out, &(pool_saved){.g = g, .arg = arg}, sizeof(pool_saved));
    const float *xd = x->data;
    float *yd = out->data;
    AG_PARALLEL(planes > 1 ? P * g.kH * g.kW * planes : 0, ,
    for (int64_t q = 0; q < planes; q++) {
        if (is_max)
            max_plane(&g, xd + q * HW, yd + q * P, arg ? arg + q * P : NULL);
        else
            avg_plane(&g, xd + q * HW, yd + q * P);
    }
    );
    return out;
}

ag_tensor *ag_max_pool1d(ag_ctx *c, ag_tensor *x, const ag_pool_opts *o)
{
    return pool(c, &max_pool1d_op, 1, true, x, o);
}

ag_tensor *ag_max_pool2d(ag_ctx *c, ag_tensor *x, const ag_pool_opts *o)
{
    return pool(c, &max_pool2d_op, 2, true, x, o);
}

ag_tensor *ag_avg_pool1d(ag_ctx *c, ag_tensor *x, const ag_pool_opts *o)
{
    return pool(c, &avg_pool1d_op, 1, false, x, o);
}

ag_tensor *ag_avg_pool2d(ag_ctx *c, ag_tensor *x, const ag_pool_opts *o)
{
    return pool(c, &avg_pool2d_op, 2, false, x, o);
}
