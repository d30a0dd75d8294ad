/* ops_norm.c - layer normalization over the last axis as one op, as
 * torch.nn.functional.layer_norm: the composition mean, sub, mul, mean,
 * add_scalar, rsqrt, mul, mul, add in one pass forward and one backward.
 *
 * Composed, a LayerNorm makes about 25 passes over its (rows, C) input
 * between forward and backward; here forward reads x once and writes y once,
 * keeping each row's mean and 1/std (2 floats a row) for backward, which
 * reads x and the output grad once, writes x's grad once and sums the
 * weight and bias grads in per-thread rows. RMS normalization, at the end,
 * is built the same way. */
#include "internal.h"

#include <omp.h>

typedef struct {
    float *mean, *rstd; /* (rows) */
} norm_saved;

/* y (rows, C) = (x - mean) / sqrt(var + eps) * w + b per row; biased var.
 * mean in double: exact to float precision when values sit far from 0. */
static void norm_rows(float *y, const float *x, const float *w, const float *b, int64_t r0,
                      int64_t r1, int64_t C, float eps, float *mean, float *rstd)
{
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float mu = (float)(ag_sumd(xr, C) / (double)C);
#pragma omp simd
        for (int64_t j = 0; j < C; j++)
            yr[j] = xr[j] - mu; /* y holds x - mean until the last loop */
        float rs = 1.0f / sqrtf(ag_dot(yr, yr, C) / (float)C + eps);
#pragma omp simd
        for (int64_t j = 0; j < C; j++)
            yr[j] = yr[j] * rs * w[j] + b[j];
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* Rows [r0, r1) of backward. With xh = (x - mean) rstd and gh = g w:
 * gx (+)= rstd (gh - mean(gh) - xh mean(gh xh));
 * gw_part += g xh, gb_part += g over the rows. xh: 2C floats of scratch. */
static void norm_grad_rows(float *gx, bool overwrite, float *gw_part, float *gb_part, const float *g,
                           const float *x, const float *w, const norm_saved *s, int64_t r0,
                           int64_t r1, int64_t C, float *xh)
{
    for (int64_t r = r0; r < r1; r++) {
        const float *gr = g + r * C, *xr = x + r * C;
        float mu = s->mean[r], rs = s->rstd[r];
        float *wxh = xh + C;
#pragma omp simd
        for (int64_t j = 0; j < C; j++) {
            xh[j] = (xr[j] - mu) * rs;
            wxh[j] = w[j] * xh[j];
        }
        float m1 = ag_dot(gr, w, C) / (float)C, m2 = ag_dot(gr, wxh, C) / (float)C;
        float *gxr = gx ? gx + r * C : NULL;
        if (gxr)
#pragma omp simd
            for (int64_t j = 0; j < C; j++) {
                float v = rs * (gr[j] * w[j] - m1 - xh[j] * m2);
                gxr[j] = overwrite ? v : gxr[j] + v;
            }
        if (gw_part)
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                gw_part[j] += gr[j] * xh[j];
        if (gb_part)
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                gb_part[j] += gr[j];
    }
}

static void norm_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0), *w = ag_input(out, 1), *b = ag_input(out, 2);
    bool overwrite_x, overwrite_w, overwrite_b;
    float *gx = ag_grad_buf(ctx, x, &overwrite_x), *gw = ag_grad_buf(ctx, w, &overwrite_w);
    float *gb = ag_grad_buf(ctx, b, &overwrite_b);
    int64_t C = out->shape[out->ndim - 1], rows = out->numel / C;
    /* rows cut into parts by the work alone, each part its own gw and gb
     * partial sums (added in part order below) and two rows of scratch */
    int parts = ag_par_parts(out->numel);
    float *part = ag_scratch(ctx, (size_t)(parts * 4 * C) * sizeof(float));
    memset(part, 0, (size_t)(parts * 4 * C) * sizeof(float));
    const norm_saved *s = ag_saved(out);
    AG_PARALLEL(out->numel, schedule(static),
    for (int p = 0; p < parts; p++) {
        float *q = part + p * 4 * C;
        norm_grad_rows(gx, overwrite_x, gw ? q : NULL, gb ? q + C : NULL, out->grad, x->data,
                       w->data, s, rows * p / parts, rows * (p + 1) / parts, C, q + 2 * C);
    }
    );
    for (int64_t j = 0; j < C; j++) {
        float sw = 0.0f, sb = 0.0f;
        for (int p = 0; p < parts; p++) {
            sw += part[p * 4 * C + j];
            sb += part[p * 4 * C + C + j];
        }
        if (gw)
            gw[j] = (overwrite_w ? 0.0f : gw[j]) + sw;
        if (gb)
            gb[j] = (overwrite_b ? 0.0f : gb[j]) + sb;
    }
}

/* backward reads x and w, and the saved row statistics; not b, not the output */
static const ag_op norm_op = {"layer_norm", norm_backward, AG_IN(0) | AG_IN(1)};

ag_tensor *ag_layer_norm(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *b, float eps)
{
    ag_tensor *in[3] = {x, w, b};
    if (!ag_check_inputs("layer_norm", in, 3))
        return NULL;
    char sx[128], sw[128], sb[128];
    int64_t C = x->ndim ? x->shape[x->ndim - 1] : 0;
    if (x->ndim < 1 || C == 0 || w->ndim != 1 || w->shape[0] != C || b->ndim != 1 ||
        b->shape[0] != C) {
        ag_error("layer_norm: input %s with weight %s and bias %s; want (..., C), (C), (C) with C > 0",
                 ag_shape_str(x, sx, sizeof sx), ag_shape_str(w, sw, sizeof sw),
                 ag_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    if (!(eps >= 0.0f)) {
        ag_error("layer_norm: eps %g is negative", (double)eps);
        return NULL;
    }
    ag_tensor *out = ag_result(c, &norm_op, in, 3, x->ndim, x->shape);
    if (!out)
        return NULL;
    int64_t rows = x->numel / C;
    norm_saved *s = ag_ctx_alloc(c, sizeof *s);
    s->mean = ag_ctx_alloc(c, (size_t)rows * sizeof(float));
    s->rstd = ag_ctx_alloc(c, (size_t)rows * sizeof(float));
    ag_node_of(out)->saved = s;
    int parts = ag_par_parts(x->numel);
    AG_PARALLEL(x->numel, schedule(static),
    for (int p = 0; p < parts; p++) {
        norm_rows(out->data, x->data, w->data, b->data, rows * p / parts, rows * (p + 1) / parts,
                  C, eps, s->mean, s->rstd);
    }
    );
    return out;
}

/* ---- rms_norm: y = x / sqrt(mean(x^2) + eps) * w per row of the last axis,
 * the composition mul, mean, add_scalar, rsqrt, mul, mul in one pass each way;
 * 1/rms (1 float a row) is kept for backward. w is optional. */

typedef struct {
    float *rstd; /* (rows) */
} rms_saved;

/* y (rows, C) = x rstd w per row, rstd = 1 / sqrt(mean(x^2) + eps) */
static void rms_rows(float *y, const float *x, const float *w, int64_t r0, int64_t r1, int64_t C,
                     float eps, float *rstd)
{
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float rs = 1.0f / sqrtf(ag_dot(xr, xr, C) / (float)C + eps);
        if (w)
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                yr[j] = xr[j] * rs * w[j];
        else
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                yr[j] = xr[j] * rs;
        rstd[r] = rs;
    }
}

/* Rows [r0, r1) of backward. With xh = x rstd and gh = g w (g without w):
 * gx (+)= rstd (gh - xh mean(gh xh)); gw_part += g xh over the rows.
 * gh: C floats of scratch. */
static void rms_grad_rows(float *gx, bool overwrite, float *gw_part, const float *g, const float *x,
                          const float *w, const float *rstd, int64_t r0, int64_t r1, int64_t C,
                          float *gh)
{
    for (int64_t r = r0; r < r1; r++) {
        const float *gr = g + r * C, *xr = x + r * C;
        float rs = rstd[r];
        if (w) {
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                gh[j] = gr[j] * w[j];
        }
        const float *ghr = w ? gh : gr;
        /* mean(gh xh) = rstd mean(gh x) */
        float m = ag_dot(ghr, xr, C) * rs / (float)C;
        if (gx) {
            float *gxr = gx + r * C;
#pragma omp simd
            for (int64_t j = 0; j < C; j++) {
                float v = rs * (ghr[j] - xr[j] * rs * m);
                gxr[j] = overwrite ? v : gxr[j] + v;
            }
        }
        if (gw_part)
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                gw_part[j] += gr[j] * xr[j] * rs;
    }
}

static void rms_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0), *w = ag_num_inputs(out) > 1 ? ag_input(out, 1) : NULL;
    bool overwrite_x, overwrite_w = false;
    float *gx = ag_grad_buf(ctx, x, &overwrite_x), *gw = w ? ag_grad_buf(ctx, w, &overwrite_w) : NULL;
    int64_t C = out->shape[out->ndim - 1], rows = out->numel / C;
    /* rows cut into parts by the work alone, each part its own gw partial
     * sums (added in part order below) and a row of scratch */
    int parts = ag_par_parts(out->numel);
    float *part = ag_scratch(ctx, (size_t)(parts * 2 * C) * sizeof(float));
    memset(part, 0, (size_t)(parts * 2 * C) * sizeof(float));
    const rms_saved *s = ag_saved(out);
    const float *wd = w ? w->data : NULL;
    AG_PARALLEL(out->numel, schedule(static),
    for (int p = 0; p < parts; p++) {
        float *q = part + p * 2 * C;
        rms_grad_rows(gx, overwrite_x, gw ? q : NULL, out->grad, x->data, wd, s->rstd,
                      rows * p / parts, rows * (p + 1) / parts, C, q + C);
    }
    );
    for (int64_t j = 0; gw && j < C; j++) {
        float sw = 0.0f;
        for (int p = 0; p < parts; p++)
            sw += part[p * 2 * C + j];
        gw[j] = (overwrite_w ? 0.0f : gw[j]) + sw;
    }
}

/* backward reads x and w, and the saved 1/rms; not the output */
static const ag_op rms_op = {"rms_norm", rms_backward, AG_IN(0) | AG_IN(1)};

ag_tensor *ag_rms_norm(ag_ctx *c, ag_tensor *x, ag_tensor *w, float eps)
{
    ag_tensor *in[2] = {x, w};
    int nin = w ? 2 : 1;
    if (!ag_check_inputs("rms_norm", in, nin))
        return NULL;
    char sx[128], sw[128];
    int64_t C = x->ndim ? x->shape[x->ndim - 1] : 0;
    if (x->ndim < 1 || C == 0 || (w && (w->ndim != 1 || w->shape[0] != C))) {
        ag_error("rms_norm: input %s with weight %s; want (..., C) and (C) or none, with C > 0",
                 ag_shape_str(x, sx, sizeof sx), w ? ag_shape_str(w, sw, sizeof sw) : "none");
        return NULL;
    }
    if (!(eps >= 0.0f)) {
        ag_error("rms_norm: eps %g is negative", (double)eps);
        return NULL;
    }
    ag_tensor *out = ag_result(c, &rms_op, in, nin, x->ndim, x->shape);
    if (!out)
        return NULL;
    int64_t rows = x->numel / C;
    rms_saved *s = ag_ctx_alloc(c, sizeof *s);
    s->rstd = ag_ctx_alloc(c, (size_t)rows * sizeof(float));
    ag_node_of(out)->saved = s;
    const float *wd = w ? w->data : NULL;
    int parts = ag_par_parts(x->numel);
    AG_PARALLEL(x->numel, schedule(static),
    for (int p = 0; p < parts; p++) {
        rms_rows(out->data, x->data, wd, rows * p / parts, rows * (p + 1) / parts, C, eps,
                 s->rstd);
    }
    );
    return out;
}
