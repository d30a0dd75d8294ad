/* ops_attention_qkv.c - attention over separate q (B, H, T, hs), k (B, H, S, hs),
 * v (B, H, S, hv) -> (B, H, T, hv), one op: the composition matmul_nt ->
 * mul_scalar -> add mask -> causal_mask -> softmax -> dropout -> matmul per
 * (batch, head) pair, with ops_attention.c's kernels and row code
 * (attention_rows.h) generalized: S keys that may differ from the T queries,
 * an optional causal mask (column j of row t kept for j <= t, as
 * ag_causal_mask) and an optional additive mask. Row t keeps its first n(t)
 * columns: min(t + 1, S) when causal, else S.
 *
 * The packed op (ag_attention) stays as it was, its own fast path: its code
 * is untouched but for the shared rows moving into attention_rows.h.
 * tests/test_attention_qkv.c checks this op against the composition and
 * against the packed op on the same numbers.
 *
 * Recorded under AG_BF16 (ag_set_precision), as ag_attention: the products
 * in ag_gemm_bf16_serial by row blocks, q, k and v kept as bf16 copies (one
 * shared when q is k) unless their FP32 data stays anyway; without an
 * additive mask P is not kept but recomputed in backward from each row's
 * max and 1 / sum, with one (which may be gone by then) P is kept in bf16. */
#include "attention_rows.h"
#include "precision.h"

#include <omp.h>

#define RB 64        /* rows per block, as ops_attention.c's */
#define ROWS_MAX 128 /* max(T, S) max(hs, hv) up to this: by rows, as ops_attention.c's T hs */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

typedef struct {
    int64_t H, T, S, hs, hv;
    float scale, p;
    uint64_t seed;
    bool causal;
    const float *mask;      /* additive, (Bm, Hm, T, S), Bm in {1, B}, Hm in {1, H}; or NULL */
    int64_t mask_b, mask_h; /* its strides over b and h: 0 where it is broadcast */
} qgeom;

typedef struct {
    qgeom g;
    const float *P; /* (B, H, T, S) */
    bool bf16;      /* recorded under AG_BF16: q, k, v's operands, and instead of P */
    const float *stats; /* each row's softmax max and 1 / sum (B, H, T, 2), without a mask */
    const ag_bf16 *P16; /* or P in bf16, with one */
    ag_operand in[3];
} qkv_saved;

static int64_t kept(const qgeom *g, int64_t t) { return g->causal ? min64(t + 1, g->S) : g->S; }

static const float *mask_of(const qgeom *g, int64_t pair)
{
    return g->mask ? g->mask + pair / g->H * g->mask_b + pair % g->H * g->mask_h : NULL;
}

/* Row t's scores pr[0..n) += its mask row, then softmax and dropout */
static void qkv_row(const qgeom *g, int64_t pair, int64_t t, const float *mk, float *pr, float *dr,
                    int64_t width)
{
    int64_t n = kept(g, t);
    if (mk) {
        const float *mr = mk + t * g->S;
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            pr[j] += mr[j];
    }
    softmax_dropout_span(g->p, g->seed, (uint64_t)((pair * g->T + t) * g->S), pr, dr, n, width);
}

/* One pair by row blocks: P (T, S), d = dropout(P) or P, o (T, hv) = d @ v.
 * Causal: block i0's rows have no column past the block's last row. */
static void qpair_forward(const qgeom *g, int64_t pair, const float *q, const float *k,
                          const float *v, float *o, float *P, float *d)
{
    int64_t T = g->T, S = g->S, hs = g->hs, hv = g->hv;
    const float *mk = mask_of(g, pair);
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int64_t rows = min64(RB, T - i0), cols = g->causal ? min64(i0 + rows, S) : S;
        ag_gemm_serial(false, true, rows, cols, hs, g->scale, q + i0 * hs, hs, k, hs, 0.0f,
                       P + i0 * S, S);
        for (int64_t t = i0; t < i0 + rows; t++)
            qkv_row(g, pair, t, mk, P + t * S, d + t * S, cols);
        ag_gemm_serial(false, false, rows, hv, cols, 1.0f, d + i0 * S, S, v, hv, 0.0f,
                       o + i0 * hv, hv);
    }
}

/* The same by rows, without BLAS calls, for short sequences and small heads */
static void qpair_forward_rows(const qgeom *g, int64_t pair, const float *q, const float *k,
                               const float *v, float *o, float *P, float *d)
{
    int64_t T = g->T, S = g->S, hs = g->hs, hv = g->hv;
    const float *mk = mask_of(g, pair);
    for (int64_t t = 0; t < T; t++) {
        float *pr = P + t * S, *dr = d + t * S;
        int64_t n = kept(g, t);
        for (int64_t j = 0; j < n; j++)
            pr[j] = ag_dot(q + t * hs, k + j * hs, hs) * g->scale;
        qkv_row(g, pair, t, mk, pr, dr, n);
        weighted_rows(o + t * hv, dr, v, hv, n, hv, true);
    }
}

/* One forward call's tensors and buffers, for qkv_forward_pair */
typedef struct {
    const qgeom *g;
    const ag_tensor *q, *k, *v;
    ag_tensor *out;
    float *P; /* (pairs, T, S) when kept for backward, else NULL */
    int64_t tile;
    bool drop, rows;
} qkv_fwd;

/* One pair's forward: its P tile, or the thread's own (mine); the dropout
 * tile after it in mine. */
static void qkv_forward_pair(const qkv_fwd *f, int64_t pr, float *mine)
{
    const qgeom *g = f->g;
    float *pp = f->P ? f->P + pr * f->tile : mine;
    float *d = f->drop ? (f->P ? mine : mine + f->tile) : pp;
    const float *q = f->q->data + pr * g->T * g->hs, *k = f->k->data + pr * g->S * g->hs;
    const float *v = f->v->data + pr * g->S * g->hv;
    float *o = f->out->data + pr * g->T * g->hv;
    if (f->rows)
        qpair_forward_rows(g, pr, q, k, v, o, pp, d);
    else
        qpair_forward(g, pr, q, k, v, o, pp, d);
}

/* Where to put each input's grad: its buffer and whether to overwrite it */
typedef struct {
    float *q, *k, *v;
    bool oq, ok, ov;
} qkv_grads;

/* pair_backward for one pair: dD = go v^T, dP = dropout'(dD),
 * dS = P (dP - rowsum(dP P)) scale, dq = dS k, dk = dS^T q, dv = D^T go.
 * a (T, S) holds dD then dS; d (T, S) holds D (P without dropout). */
static void qpair_backward(const qgeom *g, int64_t pair, const float *q, const float *k,
                           const float *v, const float *P, const float *go, const qkv_grads *gr,
                           float *a, float *d)
{
    int64_t T = g->T, S = g->S, hs = g->hs, hv = g->hv;
    float *gq = gr->q + pair * T * hs, *gk = gr->k + pair * S * hs, *gv = gr->v + pair * S * hv;
    bool drop = g->p > 0.0f;
    const float *D = drop ? d : P;
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int64_t rows = min64(RB, T - i0), cols = g->causal ? min64(i0 + rows, S) : S;
        ag_gemm_serial(false, true, rows, cols, hv, 1.0f, go + i0 * hv, hv, v, hv, 0.0f,
                       a + i0 * S, S);
        for (int64_t t = i0; t < i0 + rows; t++) {
            const float *pr = P + t * S;
            float *ar = a + t * S;
            int64_t n = kept(g, t);
            softmax_dropout_span_backward(g->p, g->seed, (uint64_t)((pair * T + t) * S), g->scale, pr,
                                          ar, d + t * S, n, cols);
        }
        ag_gemm_serial(false, false, rows, hs, cols, 1.0f, a + i0 * S, S, k, hs,
                       gr->oq ? 0.0f : 1.0f, gq + i0 * hs, hs);
    }
    /* causal: column block j0 of dS and D is nonzero only in rows j0.., and
     * columns from T on (when S > T) in none: their dk, dv rows are 0 */
    for (int64_t j0 = 0; j0 < S; j0 += RB) {
        int64_t w = min64(RB, S - j0), r0 = g->causal ? j0 : 0;
        int64_t kw = g->causal ? (T - j0 < 0 ? 0 : min64(w, T - j0)) : w;
        if (kw > 0) {
            ag_gemm_serial(true, false, kw, hs, T - r0, 1.0f, a + r0 * S + j0, S, q + r0 * hs,
                           hs, gr->ok ? 0.0f : 1.0f, gk + j0 * hs, hs);
            ag_gemm_serial(true, false, kw, hv, T - r0, 1.0f, D + r0 * S + j0, S, go + r0 * hv,
                           hv, gr->ov ? 0.0f : 1.0f, gv + j0 * hv, hv);
        }
        if (gr->ok)
            memset(gk + (j0 + kw) * hs, 0, (size_t)((w - kw) * hs) * sizeof *gk);
        if (gr->ov)
            memset(gv + (j0 + kw) * hv, 0, (size_t)((w - kw) * hv) * sizeof *gv);
    }
}

/* qpair_backward by rows, the counterpart of qpair_forward_rows */
static void qpair_backward_rows(const qgeom *g, int64_t pair, const float *q, const float *k,
                                const float *v, const float *P, const float *go,
                                const qkv_grads *gr, float *a)
{
    int64_t T = g->T, S = g->S, hs = g->hs, hv = g->hv;
    float *gq = gr->q + pair * T * hs, *gk = gr->k + pair * S * hs, *gv = gr->v + pair * S * hv;
    bool drop = g->p > 0.0f;
    float inv = 1.0f / (1.0f - g->p);
    if (gr->ok) /* the loops below add into dk and dv */
        memset(gk, 0, (size_t)(S * hs) * sizeof *gk);
    if (gr->ov)
        memset(gv, 0, (size_t)(S * hv) * sizeof *gv);
    for (int64_t t = 0; t < T; t++) {
        const float *pr = P + t * S, *got = go + t * hv, *qt = q + t * hs;
        float *ar = a + t * S;
        uint64_t base = (uint64_t)((pair * T + t) * S);
        int64_t n = kept(g, t);
        float dot = 0.0f;
        for (int64_t j = 0; j < n; j++) { /* dD, then dP through the dropout; dv_j += D_tj go_t */
            float s = ag_dot(got, v + j * hv, hv), dtj = pr[j];
            if (drop) {
                bool kp = ag_dropout_keep(g->seed, (int64_t)base + j, g->p);
                s = kp ? s * inv : 0.0f;
                dtj = kp ? pr[j] * inv : 0.0f;
            }
            float *gvj = gv + j * hv;
#pragma omp simd
            for (int64_t e = 0; e < hv; e++)
                gvj[e] += dtj * got[e];
            ar[j] = s;
            dot += s * pr[j];
        }
        for (int64_t j = 0; j < n; j++) {
            float ds = pr[j] * (ar[j] - dot) * g->scale;
            ar[j] = ds;
            float *gkj = gk + j * hs;
#pragma omp simd
            for (int64_t e = 0; e < hs; e++)
                gkj[e] += ds * qt[e];
        }
        weighted_rows(gq + t * hs, ar, k, hs, n, hs, gr->oq);
    }
}

/* qkv_row in bf16: the mask row added, then the softmax and dropout of
 * softmax_dropout_span, keeping the row's max and 1 / sum in st[0], st[1]
 * when st is not NULL */
static void qkv_row16(const qgeom *g, int64_t pair, int64_t t, const float *mk, float *pr,
                      float *dr, int64_t width, float *st)
{
    int64_t n = kept(g, t);
    if (mk)
        for (int64_t j = 0; j < n; j++)
            pr[j] += mk[t * g->S + j];
    float m = pr[0];
    for (int64_t j = 1; j < n; j++)
        m = pr[j] > m ? pr[j] : m;
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        pr[j] = ag_expf(pr[j] - m);
    float r = 1.0f / ag_sumf(pr, n);
    for (int64_t j = 0; j < n; j++)
        pr[j] *= r;
    for (int64_t j = n; j < width; j++)
        pr[j] = 0.0f;
    if (st)
        st[0] = m, st[1] = r;
    if (dr != pr) {
        float inv = 1.0f / (1.0f - g->p);
        uint64_t base = (uint64_t)((pair * g->T + t) * g->S);
        for (int64_t j = 0; j < n; j++)
            dr[j] = ag_dropout_keep(g->seed, (int64_t)base + j, g->p) ? pr[j] * inv : 0.0f;
        for (int64_t j = n; j < width; j++)
            dr[j] = 0.0f;
    }
}

/* The scaled scores of row block i0 (rows, cols) of a pair into pt: the
 * same call forward and backward, so the same bits */
static void qscores16(const qgeom *g, ag_operand q, ag_operand k, int64_t i0, int64_t rows,
                      int64_t cols, float *pt)
{
    ag_operand qi = ag_operand_at(q, i0 * g->hs);
    ag_gemm_bf16_serial(false, true, rows, cols, g->hs, g->scale, qi.p, qi.h, g->hs, k.p, k.h,
                        g->hs, 0.0f, pt + i0 * g->S, g->S);
}

/* What a pair's backward gets P from: the rows' statistics, or P in bf16 */
typedef struct {
    const float *st;
    const ag_bf16 *P16;
} qkv_keep;

/* qpair_forward in bf16: the scores and softmax in the FP32 tile pt, kept
 * (when kp is not NULL) as each row's statistics or as P in bf16; d the
 * dropout tile, or pt. */
static void qpair_forward16(const qgeom *g, int64_t pair, ag_operand q, ag_operand k,
                            ag_operand v, float *o, const qkv_keep *kp, float *pt, float *d)
{
    int64_t T = g->T, S = g->S, hv = g->hv;
    const float *mk = mask_of(g, pair);
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int64_t rows = min64(RB, T - i0), cols = g->causal ? min64(i0 + rows, S) : S;
        qscores16(g, q, k, i0, rows, cols, pt);
        for (int64_t t = i0; t < i0 + rows; t++) {
            qkv_row16(g, pair, t, mk, pt + t * S, d + t * S, cols,
                      kp && kp->st ? (float *)kp->st + 2 * t : NULL);
            if (kp && kp->P16)
                ag_bf16_from_f32((ag_bf16 *)kp->P16 + t * S, pt + t * S, cols);
        }
        ag_gemm_bf16_serial(false, false, rows, hv, cols, 1.0f, d + i0 * S, false, S, v.p, v.h,
                            hv, 0.0f, o + i0 * hv, hv);
    }
}

/* qpair_backward in bf16: pt gets P again, block by block (recomputed from
 * the rows' statistics, or widened from P16); a holds dD then dS, d holds D
 * with dropout (without it, D is P). */
static void qpair_backward16(const qgeom *g, int64_t pair, ag_operand q, ag_operand k,
                             ag_operand v, const qkv_keep *kp, const float *go,
                             const qkv_grads *gr, float *a, float *d, float *pt)
{
    int64_t T = g->T, S = g->S, hs = g->hs, hv = g->hv;
    float *gq = gr->q + pair * T * hs, *gk = gr->k + pair * S * hs, *gv = gr->v + pair * S * hv;
    bool drop = g->p > 0.0f;
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int64_t rows = min64(RB, T - i0), cols = g->causal ? min64(i0 + rows, S) : S;
        if (kp->st)
            qscores16(g, q, k, i0, rows, cols, pt);
        ag_gemm_bf16_serial(false, true, rows, cols, hv, 1.0f, go + i0 * hv, false, hv, v.p, v.h,
                            hv, 0.0f, a + i0 * S, S);
        for (int64_t t = i0; t < i0 + rows; t++) {
            float *pr = pt + t * S, *ar = a + t * S;
            int64_t n = kept(g, t);
            if (kp->st) { /* as qkv_row16: exp, then times 1 / sum */
                float m = kp->st[2 * t], r = kp->st[2 * t + 1];
                for (int64_t j = 0; j < n; j++)
                    pr[j] = ag_expf(pr[j] - m);
                for (int64_t j = 0; j < n; j++)
                    pr[j] *= r;
                for (int64_t j = n; j < cols; j++)
                    pr[j] = 0.0f;
            } else {
                ag_bf16_to_f32(pr, kp->P16 + t * S, cols);
            }
            softmax_dropout_span_backward(g->p, g->seed, (uint64_t)((pair * T + t) * S), g->scale, pr,
                                          ar, d + t * S, n, cols);
        }
        ag_gemm_bf16_serial(false, false, rows, hs, cols, 1.0f, a + i0 * S, false, S, k.p, k.h,
                            hs, gr->oq ? 0.0f : 1.0f, gq + i0 * hs, hs);
    }
    const float *D = drop ? d : pt;
    for (int64_t j0 = 0; j0 < S; j0 += RB) {
        int64_t w = min64(RB, S - j0), r0 = g->causal ? j0 : 0;
        int64_t kw = g->causal ? (T - j0 < 0 ? 0 : min64(w, T - j0)) : w;
        if (kw > 0) {
            ag_operand qr = ag_operand_at(q, r0 * hs);
            ag_gemm_bf16_serial(true, false, kw, hs, T - r0, 1.0f, a + r0 * S + j0, false, S,
                                qr.p, qr.h, hs, gr->ok ? 0.0f : 1.0f, gk + j0 * hs, hs);
            ag_gemm_bf16_serial(true, false, kw, hv, T - r0, 1.0f, D + r0 * S + j0, false, S,
                                go + r0 * hv, false, hv, gr->ov ? 0.0f : 1.0f, gv + j0 * hv, hv);
        }
        if (gr->ok)
            memset(gk + (j0 + kw) * hs, 0, (size_t)((w - kw) * hs) * sizeof *gk);
        if (gr->ov)
            memset(gv + (j0 + kw) * hv, 0, (size_t)((w - kw) * hv) * sizeof *gv);
    }
}

static bool qkv_by_rows(const qgeom *g)
{
    int64_t L = g->T > g->S ? g->T : g->S, h = g->hs > g->hv ? g->hs : g->hv;
    return L * h <= ROWS_MAX;
}

static int qkv_parallel_parts(const qgeom *g, int64_t pairs)
{
    int parts = ag_parts_past(pairs * g->T * g->S * (g->hs + g->hv) / 2, 1 << 18);
    return parts < pairs ? parts : (int)pairs;
}

/* one pair's backward under bf16, three tiles of scratch at a */
static void qkv_backward_pair16(const qkv_saved *s, int64_t pr, const float *gout,
                                const qkv_grads *gr, float *a)
{
    const qgeom *g = &s->g;
    int64_t tile = g->T * g->S;
    ag_operand q = ag_operand_at(s->in[0], pr * g->T * g->hs),
               k = ag_operand_at(s->in[1], pr * g->S * g->hs),
               v = ag_operand_at(s->in[2], pr * g->S * g->hv);
    qkv_keep kp = {s->stats ? s->stats + pr * 2 * g->T : NULL, s->P16 ? s->P16 + pr * tile : NULL};
    qpair_backward16(g, pr, q, k, v, &kp, gout + pr * g->T * g->hv, gr, a, a + tile, a + 2 * tile);
}

static void qkv_backward_pair(const qgeom *g, int64_t pr, ag_tensor *const *in,
                              const float *P, const float *gout, const qkv_grads *gr, float *a,
                              float *d)
{
    const float *q = in[0]->data + pr * g->T * g->hs, *k = in[1]->data + pr * g->S * g->hs;
    const float *v = in[2]->data + pr * g->S * g->hv, *go = gout + pr * g->T * g->hv;
    if (qkv_by_rows(g))
        qpair_backward_rows(g, pr, q, k, v, P, go, gr, a);
    else
        qpair_backward(g, pr, q, k, v, P, go, gr, a, d);
}

static void qkv_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *in[3] = {ag_input(out, 0), ag_input(out, 1), ag_input(out, 2)};
    /* An input that needs no grad, or that repeats an earlier one (q == k in
     * self-attention of one tensor), gets a scratch buffer: the pairs write
     * q's, k's and v's grads interleaved, so a shared buffer cannot be both
     * overwritten and added to. Repeats are added in at the end. */
    float *buf[3];
    bool ow[3], dup[3];
    for (int i = 0; i < 3; i++) {
        dup[i] = (i > 0 && in[i] == in[0]) || (i > 1 && in[i] == in[1]);
        buf[i] = dup[i] ? NULL : ag_grad_buf(ctx, in[i], &ow[i]);
        if (!buf[i]) {
            buf[i] = ag_scratch(ctx, (size_t)in[i]->numel * sizeof(float));
            ow[i] = true;
        }
    }
    const qkv_saved *s = ag_saved(out);
    qgeom g = s->g;
    qkv_grads gr = {buf[0], buf[1], buf[2], ow[0], ow[1], ow[2]};
    int64_t pairs = out->shape[0] * g.H, tile = g.T * g.S;
    int nt = ag_team(qkv_parallel_parts(&g, pairs));
    int per = s->bf16 ? 3 : 2; /* tiles per thread */
    float *scratch = ag_scratch(ctx, (size_t)(per * nt * tile) * sizeof(float));
    const float *P = s->P;
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
            float *a = scratch + per * omp_get_thread_num() * tile;
#pragma omp for schedule(dynamic) nowait
            for (int64_t pr = 0; pr < pairs; pr++) {
                if (s->bf16)
                    qkv_backward_pair16(s, pr, out->grad, &gr, a);
                else
                    qkv_backward_pair(&g, pr, in, P + pr * tile, out->grad, &gr, a, a + tile);
            }
        }
        ag_region_end(&r, nt);
    } else {
        for (int64_t pr = 0; pr < pairs; pr++) {
            if (s->bf16)
                qkv_backward_pair16(s, pr, out->grad, &gr, scratch);
            else
                qkv_backward_pair(&g, pr, in, P + pr * tile, out->grad, &gr, scratch,
                                  scratch + tile);
        }
    }
    for (int i = 1; i < 3; i++) {
        if (!dup[i])
            continue;
        bool o;
        float *gx = ag_grad_buf(ctx, in[i], &o); /* the earlier one's, written by now */
        for (int64_t e = 0; gx && e < in[i]->numel; e++)
            gx[e] += buf[i][e];
    }
}

/* backward reads q, k, v and the saved P, not the mask or the output */
static const ag_op qkv_op = {"attention_qkv", qkv_backward, AG_IN(0) | AG_IN(1) | AG_IN(2)};
/* the same under bf16, by which of q, k, v backward reads as FP32 (bit i:
 * input i); the others it reads from their bf16 copies */
#define QKV16(r) {"attention_qkv", qkv_backward, (r) ? (r) : AG_NO_DATA}
static const ag_op qkv16_ops[8] = {QKV16(0), QKV16(1), QKV16(2), QKV16(3),
                                   QKV16(4), QKV16(5), QKV16(6), QKV16(7)};

/* The additive mask lined up with (B, H, T, S) as g's mask, mask_b and
 * mask_h: its own data when its last two dims are (T, S), else a copy
 * expanded over them; false when it does not broadcast. */
static bool place_mask(ag_ctx *c, const ag_tensor *m, int64_t B, qgeom *g)
{
    int64_t want[4] = {B, g->H, g->T, g->S}, ms[4];
    if (m->ndim > 4)
        return false;
    for (int i = 0; i < 4; i++) {
        int j = i - (4 - m->ndim);
        ms[i] = j < 0 ? 1 : m->shape[j];
        if (ms[i] != want[i] && ms[i] != 1)
            return false;
    }
    int64_t TS = g->T * g->S;
    g->mask_b = ms[0] == 1 ? 0 : ms[1] * TS;
    g->mask_h = ms[1] == 1 ? 0 : TS;
    if (ms[2] == g->T && ms[3] == g->S) {
        g->mask = m->data;
        return true;
    }
    float *x = ag_ctx_alloc(c, (size_t)(ms[0] * ms[1] * TS) * sizeof *x);
    for (int64_t bh = 0; bh < ms[0] * ms[1]; bh++)
        for (int64_t t = 0; t < g->T; t++)
            for (int64_t j = 0; j < g->S; j++)
                x[bh * TS + t * g->S + j] =
                    m->data[bh * ms[2] * ms[3] + (ms[2] == 1 ? 0 : t) * ms[3] + (ms[3] == 1 ? 0 : j)];
    g->mask = x;
    return true;
}

/* pair pr of qkv16_forward, kp the whole call's (NULL: nothing kept) */
static void qkv_pair_forward16(const qgeom *g, int64_t pr, const ag_operand *x, ag_tensor *out,
                               const qkv_keep *kp, float *pt, bool drop)
{
    int64_t tile = g->T * g->S;
    qkv_keep mine = {kp && kp->st ? kp->st + pr * 2 * g->T : NULL,
                     kp && kp->P16 ? kp->P16 + pr * tile : NULL};
    qpair_forward16(g, pr, ag_operand_at(x[0], pr * g->T * g->hs),
                    ag_operand_at(x[1], pr * g->S * g->hs), ag_operand_at(x[2], pr * g->S * g->hv),
                    out->data + pr * g->T * g->hv, kp ? &mine : NULL, pt, drop ? pt + tile : pt);
}

/* ag_attention_qkv's forward under bf16 over the operands x[3]: when
 * recorded it keeps the rows' statistics, or with a mask P in bf16 */
static void qkv16_forward(ag_ctx *c, ag_tensor *out, const qgeom *g, const ag_operand *x,
                          int64_t pairs, int nt)
{
    int64_t tile = g->T * g->S, per_thread = (g->p > 0.0f ? 2 : 1) * tile;
    bool keep = ag_op_of(out) != NULL;
    float *st = keep && !g->mask ? ag_ctx_alloc(c, (size_t)(pairs * 2 * g->T) * sizeof *st) : NULL;
    ag_bf16 *P16 = keep && g->mask ? ag_ctx_alloc(c, (size_t)(pairs * tile) * sizeof *P16) : NULL;
    float *scratch = ag_buf_alloc(c, nt * per_thread);
    qkv_saved saved = {.g = *g, .bf16 = true, .stats = st, .P16 = P16, .in = {x[0], x[1], x[2]}};
    saved.g.mask = NULL;
    ag_save(c, out, &saved, sizeof saved);
    bool drop = g->p > 0.0f;
    qkv_keep kp = {st, P16};
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
            float *pt = scratch + omp_get_thread_num() * per_thread;
#pragma omp for schedule(dynamic) nowait
            for (int64_t pr = 0; pr < pairs; pr++)
                qkv_pair_forward16(g, pr, x, out, keep ? &kp : NULL, pt, drop);
        }
        ag_region_end(&r, nt);
    } else {
        for (int64_t pr = 0; pr < pairs; pr++)
            qkv_pair_forward16(g, pr, x, out, keep ? &kp : NULL, scratch, drop);
    }
    ag_buf_release(c, scratch, nt * per_thread);
}

ag_tensor *ag_attention_qkv(ag_ctx *c, ag_tensor *q, ag_tensor *k, ag_tensor *v,
                            const ag_tensor *mask, bool causal, float scale, float dropout,
                            bool training)
{
    ag_tensor *in[4] = {q, k, v, (ag_tensor *)mask};
    if (!ag_check_inputs("attention_qkv", in, 3) || (mask && !ag_check_inputs("attention_qkv", in + 3, 1)))
        return NULL;
    char sq[128], sk[128], sv[128];
    bool ok = q->ndim == 4 && k->ndim == 4 && v->ndim == 4;
    for (int i = 0; ok && i < 2; i++)
        ok = k->shape[i] == q->shape[i] && v->shape[i] == q->shape[i];
    ok = ok && k->shape[3] == q->shape[3] && v->shape[2] == k->shape[2] && q->shape[2] > 0 &&
         k->shape[2] > 0 && q->shape[3] > 0 && v->shape[3] > 0;
    if (!ok) {
        ag_error("attention_qkv: q %s, k %s, v %s; want (B, H, T, hs), (B, H, S, hs), "
                 "(B, H, S, hv), each size but B at least 1", ag_shape_str(q, sq, sizeof sq),
                 ag_shape_str(k, sk, sizeof sk), ag_shape_str(v, sv, sizeof sv));
        return NULL;
    }
    if (!(dropout >= 0.0f && dropout < 1.0f)) {
        ag_error("attention_qkv: dropout probability %g is not in [0, 1)", (double)dropout);
        return NULL;
    }
    int64_t B = q->shape[0], H = q->shape[1], T = q->shape[2], S = k->shape[2];
    float p = training ? dropout : 0.0f;
    qgeom g = {.H = H, .T = T, .S = S, .hs = q->shape[3], .hv = v->shape[3], .scale = scale,
               .p = p, .causal = causal};
    if (mask && ag_grad_enabled(c) && ag_requires_grad(mask)) {
        ag_error("attention_qkv: the mask %s requires grad, but it gets none; detach it",
                 ag_shape_str(mask, sk, sizeof sk));
        return NULL;
    }
    if (mask && !place_mask(c, mask, B, &g)) {
        ag_error("attention_qkv: mask %s does not broadcast to (B, H, T, S) = (%lld, %lld, %lld, %lld)",
                 ag_shape_str(mask, sk, sizeof sk), (long long)B, (long long)H, (long long)T,
                 (long long)S);
        return NULL;
    }
    bool bf16 = ag_bf16_on(c);
    ag_operand ops[3] = {{q->data, false}, {k->data, false}, {v->data, false}};
    const ag_op *op = &qkv_op;
    if (bf16) {
        bool record = ag_grad_enabled(c) &&
                      (ag_requires_grad(q) || ag_requires_grad(k) || ag_requires_grad(v));
        unsigned fp32 = 0;
        for (int i = 0; i < 3; i++) {
            ops[i] = ag_bf16_operand(c, in[i], record);
            fp32 |= ops[i].h ? 0u : 1u << i;
        }
        op = &qkv16_ops[fp32];
    }
    ag_tensor *out = ag_result(c, op, in, 3, 4, (int64_t[]){B, H, T, g.hv});
    if (!out)
        return NULL;
    g.seed = p > 0.0f ? ag_rng_next(&c->rng) : 0;
    int64_t pairs = B * H, tile = T * S;
    bool drop = p > 0.0f, rows = qkv_by_rows(&g);
    int nt = ag_team(qkv_parallel_parts(&g, pairs));
    if (bf16) { /* P kept in bf16 when recorded; an FP32 tile (and a dropout tile) per thread */
        qkv16_forward(c, out, &g, ops, pairs, nt);
        return out;
    }
    /* P is kept for backward when the op was recorded; otherwise one tile per thread */
    bool keep_p = ag_op_of(out) != NULL;
    float *P = keep_p ? ag_ctx_alloc(c, (size_t)(pairs * tile) * sizeof(float)) : NULL;
    int64_t per_thread = (keep_p ? 0 : tile) + (drop ? tile : 0);
    float *scratch = per_thread ? ag_buf_alloc(c, nt * per_thread) : NULL;
    qkv_saved saved = {.g = g, .P = P};
    saved.g.mask = NULL; /* backward needs P, not the mask, which may be gone by then */
    ag_save(c, out, &saved, sizeof saved);
    qkv_fwd f = {&g, q, k, v, out, P, tile, drop, rows};
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
            float *mine = scratch ? scratch + omp_get_thread_num() * per_thread : NULL;
#pragma omp for schedule(dynamic) nowait
            for (int64_t pr = 0; pr < pairs; pr++)
                qkv_forward_pair(&f, pr, mine);
        }
        ag_region_end(&r, nt);
    } else {
        for (int64_t pr = 0; pr < pairs; pr++)
            qkv_forward_pair(&f, pr, scratch);
    }
    if (scratch)
        ag_buf_release(c, scratch, nt * per_thread);
    return out;
}
