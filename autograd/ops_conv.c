/* ops_conv.c - conv1d and conv2d as torch.nn.functional's (stride, zero
 * padding, dilation, groups, optional bias), through the GEMM:
 *   forward:  y_ng (Mg, P) = w_g (Mg, K) @ col(x_ng) (K, P)        [+ bias]
 *   backward: dw_g (Mg, K) += dy_ng (Mg, P) @ col(x_ng)^T (P, K)
 *             dx_ng = col2im(w_g^T (K, Mg) @ dy_ng (Mg, P))
 *             db (M) += dy summed over n and P
 * for each sample n and group g, with Cg = C / groups, Mg = M / groups,
 * K = Cg kH kW and P = OH OW. col(x) lays out, for every kernel tap, the
 * input pixels that tap meets at each output position (zeros in the padding).
 * A 1x1 kernel with stride 1 and no padding needs no col: it is x itself.
 * conv1d is conv2d with H = kH = 1. ag_conv_direct (the loops written out)
 * is the reference the tests hold this to. */
#include "conv.h"

#include <omp.h>

/* Below this many multiply-adds a call stays on one thread. */
#define CONV_PAR_MIN (1 << 18)

/* ---------------------------------------------------------------- im2col */

/* Where tap (i, j) of channel c meets the input: output rows [r0, r1) and
 * columns [c0, c1), and the offset in x of the input pixel at (r0, c0). */
typedef struct {
    int64_t r0, r1, c0, c1, x0;
} tap_span;

static bool tap(const ag_conv_geom *g, int64_t c, int64_t i, int64_t j, tap_span *t)
{
    int64_t offh = i * g->dh - g->ph, offw = j * g->dw - g->pw;
    ag_conv_valid_range(offh, g->sh, g->H, g->OH, &t->r0, &t->r1);
    ag_conv_valid_range(offw, g->sw, g->W, g->OW, &t->c0, &t->c1);
    if (t->r0 >= t->r1 || t->c0 >= t->c1)
        return false; /* this tap meets only padding */
    t->x0 = (c * g->H + t->r0 * g->sh + offh) * g->W + t->c0 * g->sw + offw;
    return true;
}

/* col (Cg kH kW, OH OW) from x (Cg, H, W): row (c, i, j), column (oh, ow)
 * holds x[c][oh sh - ph + i dh][ow sw - pw + j dw], 0 outside x. Short
 * image rows make the copies short: the loops keep little else live. */
static void im2col(const ag_conv_geom *g, int64_t Cg, const float *x, float *col)
{
    int64_t OH = g->OH, OW = g->OW, P = OH * OW, sw = g->sw, step = g->sh * g->W;
    for (int64_t c = 0; c < Cg; c++)
        for (int64_t i = 0; i < g->kH; i++)
            for (int64_t j = 0; j < g->kW; j++) {
                float *row = col + ((c * g->kH + i) * g->kW + j) * P;
                tap_span t;
                bool any = tap(g, c, i, j, &t);
                if (!any || t.r0 > 0 || t.r1 < OH || t.c0 > 0 || t.c1 < OW)
                    memset(row, 0, (size_t)P * sizeof *row);
                if (!any)
                    continue;
                int64_t n = t.c1 - t.c0, xi = t.x0, ci = t.r0 * OW + t.c0;
                for (int64_t oh = t.r0; oh < t.r1; oh++, xi += step, ci += OW) {
                    const float *src = x + xi;
                    float *dst = row + ci;
                    if (sw == 1)
                        memcpy(dst, src, (size_t)n * sizeof *dst);
                    else
                        for (int64_t q = 0; q < n; q++)
                            dst[q] = src[q * sw];
                }
            }
}

/* gx (Cg, H, W) += the col-shaped dcol folded back: each entry of dcol goes
 * to the input pixel im2col took it from (padding entries are dropped). */
static void col2im(const ag_conv_geom *g, int64_t Cg, const float *dcol, float *gx)
{
    int64_t OW = g->OW, P = g->OH * OW, sw = g->sw, step = g->sh * g->W;
    for (int64_t c = 0; c < Cg; c++)
        for (int64_t i = 0; i < g->kH; i++)
            for (int64_t j = 0; j < g->kW; j++) {
                tap_span t;
                if (!tap(g, c, i, j, &t))
                    continue;
                const float *row = dcol + ((c * g->kH + i) * g->kW + j) * P;
                int64_t n = t.c1 - t.c0, xi = t.x0, ci = t.r0 * OW + t.c0;
                for (int64_t oh = t.r0; oh < t.r1; oh++, xi += step, ci += OW) {
                    const float *src = row + ci;
                    float *dst = gx + xi;
                    if (sw == 1)
                        for (int64_t q = 0; q < n; q++)
                            dst[q] += src[q];
                    else
                        for (int64_t q = 0; q < n; q++)
                            dst[q * sw] += src[q];
                }
            }
}

/* ---------------------------------------------------------------- direct loops */

void ag_conv_direct(const ag_conv_geom *g, const float *x, const float *w, const float *b,
                    float *y)
{
    int64_t Cg = g->C / g->groups, Mg = g->M / g->groups;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    double s = b ? b[m] : 0.0;
                    int64_t c0 = m / Mg * Cg;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < g->kH; i++)
                            for (int64_t j = 0; j < g->kW; j++) {
                                int64_t ih = oh * g->sh - g->ph + i * g->dh;
                                int64_t iw = ow * g->sw - g->pw + j * g->dw;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                    continue;
                                s += (double)w[((m * Cg + c) * g->kH + i) * g->kW + j] *
                                     x[((n * g->C + c0 + c) * g->H + ih) * g->W + iw];
                            }
                    y[((n * g->M + m) * g->OH + oh) * g->OW + ow] = (float)s;
                }
}

void ag_conv_direct_backward(const ag_conv_geom *g, const float *x, const float *w,
                             const float *gy, float *gx, float *gw, float *gb)
{
    int64_t Cg = g->C / g->groups, Mg = g->M / g->groups;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    float d = gy[((n * g->M + m) * g->OH + oh) * g->OW + ow];
                    if (gb)
                        gb[m] += d;
                    int64_t c0 = m / Mg * Cg;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < g->kH; i++)
                            for (int64_t j = 0; j < g->kW; j++) {
                                int64_t ih = oh * g->sh - g->ph + i * g->dh;
                                int64_t iw = ow * g->sw - g->pw + j * g->dw;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                    continue;
                                int64_t xi = ((n * g->C + c0 + c) * g->H + ih) * g->W + iw;
                                int64_t wi = ((m * Cg + c) * g->kH + i) * g->kW + j;
                                if (gx)
                                    gx[xi] += d * w[wi];
                                if (gw)
                                    gw[wi] += d * x[xi];
                            }
                }
}

/* ---------------------------------------------------------------- GEMM path */

/* The sizes of one (sample, group) task. */
typedef struct {
    const ag_conv_geom *g;
    int64_t Cg, Mg, K, P;
    bool direct; /* 1x1, stride 1, no padding: col(x) is x */
} plan;

static plan make_plan(const ag_conv_geom *g)
{
    plan p = {.g = g, .Cg = g->C / g->groups, .Mg = g->M / g->groups, .P = g->OH * g->OW};
    p.K = p.Cg * g->kH * g->kW;
    p.direct = g->kH == 1 && g->kW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
    return p;
}

/* Chunks worth splitting `tasks` independent (sample, group) products into:
 * a chunk per CONV_PAR_MIN multiply-adds, at most the thread count and the
 * tasks (ag_parts: the same on a busy machine, where fewer threads run them). */
static int conv_threads(const plan *p, int64_t tasks)
{
    int nt = ag_parts(tasks * p->Mg * p->K * p->P, CONV_PAR_MIN);
    return nt < tasks ? nt : tasks < 1 ? 1 : (int)tasks;
}

/* y for tasks [t0, t1) (task = n * groups + group); col: K * P floats unless
 * direct. gemm is ag_gemm_serial inside a parallel loop, ag_gemm otherwise. */
static void forward_tasks(const plan *p, int64_t t0, int64_t t1, const float *x, const float *w,
                          const float *b, float *y, float *col, bool serial)
{
    const ag_conv_geom *g = p->g;
    for (int64_t t = t0; t < t1; t++) {
        int64_t n = t / g->groups, grp = t % g->groups;
        const float *xg = x + (n * g->C + grp * p->Cg) * g->H * g->W;
        const float *wg = w + grp * p->Mg * p->K;
        float *yg = y + (n * g->M + grp * p->Mg) * p->P;
        if (b) /* rows start as the bias and the product adds to them */
            for (int64_t m = 0; m < p->Mg; m++)
                for (int64_t q = 0; q < p->P; q++)
                    yg[m * p->P + q] = b[grp * p->Mg + m];
        if (!p->direct) {
            im2col(g, p->Cg, xg, col);
            xg = col;
        }
        (serial ? ag_gemm_serial : ag_gemm)(false, false, p->Mg, p->P, p->K, 1.0f, wg, p->K, xg,
                                            p->P, b ? 1.0f : 0.0f, yg, p->P);
    }
}

typedef struct {
    const float *x, *w, *gy;
    float *gx, *gw; /* gw: this chunk's (M, K) sum, or the grad itself */
    bool overwrite_x;
} grads;

/* The grads of x and w for tasks [t0, t1); col: K * P floats unless direct. */
static void backward_tasks(const plan *p, int64_t t0, int64_t t1, const grads *d, float *col,
                           bool serial)
{
    const ag_conv_geom *g = p->g;
    int64_t HW = g->H * g->W;
    void (*gemm)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                 const float *, int64_t, float, float *, int64_t) =
        serial ? ag_gemm_serial : ag_gemm;
    for (int64_t t = t0; t < t1; t++) {
        int64_t n = t / g->groups, grp = t % g->groups;
        const float *xg = d->x + (n * g->C + grp * p->Cg) * HW;
        const float *wg = d->w + grp * p->Mg * p->K;
        const float *dy = d->gy + (n * g->M + grp * p->Mg) * p->P;
        if (d->gw) { /* dw_g (Mg, K) += dy (Mg, P) @ col^T (P, K) */
            if (!p->direct) {
                im2col(g, p->Cg, xg, col);
                xg = col;
            }
            gemm(false, true, p->Mg, p->K, p->P, 1.0f, dy, p->P, xg, p->P, 1.0f,
                 d->gw + grp * p->Mg * p->K, p->K);
        }
        if (d->gx) { /* dcol (K, P) = w_g^T (K, Mg) @ dy (Mg, P), folded into dx */
            float *gxg = d->gx + (n * g->C + grp * p->Cg) * HW;
            if (p->direct) {
                gemm(true, false, p->K, p->P, p->Mg, 1.0f, wg, p->K, dy, p->P,
                     d->overwrite_x ? 0.0f : 1.0f, gxg, p->P);
                continue;
            }
            gemm(true, false, p->K, p->P, p->Mg, 1.0f, wg, p->K, dy, p->P, 0.0f, col, p->P);
            if (d->overwrite_x)
                memset(gxg, 0, (size_t)(p->Cg * HW) * sizeof *gxg);
            col2im(g, p->Cg, col, gxg);
        }
    }
}

static void conv_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0), *w = ag_input(out, 1);
    ag_tensor *b = ag_num_inputs(out) > 2 ? ag_input(out, 2) : NULL;
    const ag_conv_geom *g = ag_saved(out);
    plan p = make_plan(g);
    bool overwrite_w, overwrite_b;
    grads d = {.x = x->data, .w = w->data, .gy = out->grad};
    d.gx = ag_grad_buf(ctx, x, &d.overwrite_x);
    float *gw = ag_grad_buf(ctx, w, &overwrite_w);
    float *gb = b ? ag_grad_buf(ctx, b, &overwrite_b) : NULL;
    if (gb) {
        for (int64_t m = 0; m < g->M; m++) {
            float s = 0.0f;
            for (int64_t n = 0; n < g->N; n++)
                s += ag_sumf(out->grad + (n * g->M + m) * p.P, p.P);
            gb[m] = (overwrite_b ? 0.0f : gb[m]) + s;
        }
    }
    int64_t tasks = g->N * g->groups;
    if (!d.gx && !gw)
        return;
    if (gw && overwrite_w)
        memset(gw, 0, (size_t)w->numel * sizeof *gw);
    int nt = conv_threads(&p, tasks);
    int64_t ncol = p.direct ? 0 : p.K * p.P;
    float *col = ag_scratch(ctx, (size_t)(nt * ncol + 1) * sizeof(float));
    if (nt == 1) {
        d.gw = gw;
        backward_tasks(&p, 0, tasks, &d, col, false);
        return;
    }
    /* each chunk sums its own dw; the sums are added in chunk order after */
    float *part = gw ? ag_scratch(ctx, (size_t)(nt * w->numel) * sizeof(float)) : NULL;
    if (part)
        memset(part, 0, (size_t)(nt * w->numel) * sizeof(float));
    AG_PARALLEL_TEAM(ag_team(nt), schedule(static, 1),
    for (int t = 0; t < nt; t++) {
        grads mine = d;
        mine.gw = part ? part + t * w->numel : NULL;
        backward_tasks(&p, tasks * t / nt, tasks * (t + 1) / nt, &mine, col + t * ncol, true);
    }
    );
    for (int t = 0; gw && t < nt; t++) {
        const float *pt = part + t * w->numel;
#pragma omp simd
        for (int64_t i = 0; i < w->numel; i++)
            gw[i] += pt[i];
    }
}

/* backward reads x (for dw) and w (for dx), not the bias or the output */
static const ag_op conv1d_op = {"conv1d", conv_backward, AG_IN(0) | AG_IN(1)};
static const ag_op conv2d_op = {"conv2d", conv_backward, AG_IN(0) | AG_IN(1)};

static ag_tensor *conv(ag_ctx *c, const ag_op *op, int nd, ag_tensor *x, ag_tensor *w,
                       ag_tensor *bias, const ag_conv_opts *o)
{
    const char *name = op->name;
    ag_tensor *in[3] = {x, w, bias};
    int nin = bias ? 3 : 2;
    if (!ag_check_inputs(name, in, nin))
        return NULL;
    char sx[128], sw[128], sb[128];
    ag_shape_str(x, sx, sizeof sx);
    ag_shape_str(w, sw, sizeof sw);
    if (x->ndim != nd + 2 || w->ndim != nd + 2) {
        ag_error(nd == 1 ? "%s: input %s and weight %s; want (N, C_in, L) and "
                           "(C_out, C_in/groups, k)"
                         : "%s: input %s and weight %s; want (N, C_in, H, W) and "
                           "(C_out, C_in/groups, kH, kW)",
                 name, sx, sw);
        return NULL;
    }
    int64_t M = w->shape[0];
    if (bias && (bias->ndim != 1 || bias->shape[0] != M)) {
        ag_error("%s: bias %s for weight %s; want (%lld)", name,
                 ag_shape_str(bias, sb, sizeof sb), sw, (long long)M);
        return NULL;
    }
    /* PyTorch's defaults for the fields left 0; [0] is H (L for conv1d), [1] is W */
    static const ag_conv_opts none;
    o = o ? o : &none;
    int64_t s[2] = {1, 1}, pd[2] = {0, 0}, dl[2] = {1, 1}, groups = o->groups ? o->groups : 1;
    bool bad = groups < 1;
    for (int i = 0; i < nd; i++) {
        int k = 2 - nd + i; /* conv1d's one dim is the W slot */
        s[k] = o->stride[i] ? o->stride[i] : 1;
        pd[k] = o->padding[i];
        dl[k] = o->dilation[i] ? o->dilation[i] : 1;
        bad |= s[k] < 1 || pd[k] < 0 || dl[k] < 1;
    }
    char a1[48], a2[48], a3[48];
    if (bad) {
        ag_error("%s: stride %s, padding %s, dilation %s, groups %lld; want stride, dilation and "
                 "groups >= 1, padding >= 0",
                 name, ag_conv_dims_str(a1, sizeof a1, nd, s[0], s[1]),
                 ag_conv_dims_str(a2, sizeof a2, nd, pd[0], pd[1]),
                 ag_conv_dims_str(a3, sizeof a3, nd, dl[0], dl[1]), (long long)groups);
        return NULL;
    }
    int64_t C = x->shape[1];
    if (C % groups || M % groups || w->shape[1] * groups != C || M == 0 || C == 0) {
        ag_error("%s: input %s (C_in %lld) and weight %s (C_out %lld) with groups %lld; want C_in "
                 "and C_out > 0 and divisible by groups, weight.shape[1] = C_in/groups",
                 name, sx, (long long)C, sw, (long long)M, (long long)groups);
        return NULL;
    }
    ag_conv_geom g = {.N = x->shape[0], .C = C, .H = nd == 2 ? x->shape[2] : 1,
                      .W = x->shape[nd + 1], .M = M, .kH = nd == 2 ? w->shape[2] : 1,
                      .kW = w->shape[nd + 1], .sh = s[0], .sw = s[1], .ph = pd[0], .pw = pd[1],
                      .dh = dl[0], .dw = dl[1], .groups = groups};
    g.OH = ag_conv_out_size(g.H, g.kH, g.sh, g.ph, g.dh);
    g.OW = ag_conv_out_size(g.W, g.kW, g.sw, g.pw, g.dw);
    if (g.kH < 1 || g.kW < 1 || g.OH < 1 || g.OW < 1) {
        ag_error("%s: kernel %s with dilation %s spans more than the input %s padded by %s",
                 name, ag_conv_dims_str(a1, sizeof a1, nd, g.kH, g.kW),
                 ag_conv_dims_str(a2, sizeof a2, nd, g.dh, g.dw),
                 sx, ag_conv_dims_str(a3, sizeof a3, nd, g.ph, g.pw));
        return NULL;
    }
    int64_t shape[4] = {g.N, M, g.OH, g.OW};
    if (nd == 1)
        shape[2] = g.OW;
    ag_tensor *out = ag_result(c, op, in, nin, nd + 2, shape);
    if (!out)
        return NULL;
    ag_save(c, out, &g, sizeof g);
    plan p = make_plan(&g);
    int64_t tasks = g.N * g.groups, ncol = p.direct ? 0 : p.K * p.P;
    int nt = conv_threads(&p, tasks);
    float *col = ncol ? ag_buf_alloc(c, nt * ncol) : NULL;
    const float *bd = bias ? bias->data : NULL;
    if (nt == 1) {
        forward_tasks(&p, 0, tasks, x->data, w->data, bd, out->data, col, false);
    } else {
        AG_PARALLEL_TEAM(ag_team(nt), schedule(static, 1),
        for (int t = 0; t < nt; t++) {
            forward_tasks(&p, tasks * t / nt, tasks * (t + 1) / nt, x->data, w->data, bd,
                          out->data, col ? col + t * ncol : NULL, true);
        }
        );
    }
    if (col)
        ag_buf_release(c, col, nt * ncol);
    return out;
}

ag_tensor *ag_conv1d(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *bias, const ag_conv_opts *o)
{
    return conv(c, &conv1d_op, 1, x, w, bias, o);
}

ag_tensor *ag_conv2d(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *bias, const ag_conv_opts *o)
{
    return conv(c, &conv2d_op, 2, x, w, bias, o);
}
