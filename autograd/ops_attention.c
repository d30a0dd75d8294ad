/* ops_attention.c - causal self-attention as one op, the composition
 * matmul_nt -> causal_mask -> softmax -> dropout -> matmul per head.
 *
 * Composed, that writes and rereads four (B, H, T, T) tensors forward and as
 * many backward. Here each (batch, head) pair runs on one thread through
 * T x T tiles that stay in cache; only the softmax P goes to memory (backward
 * needs it), the dropout mask is regenerated, and the products skip the
 * blocks above the diagonal: by row blocks of RB, the masked half costs
 * nothing but the diagonal blocks. The products are serial GEMMs (one pair
 * per thread); for short sequences and small heads (T hs <= ROWS_MAX) the
 * pair runs by rows without BLAS calls instead. tests/test_attention.c
 * checks both against the composition, values and grads.
 *
 * Recorded under AG_BF16 (ag_set_precision) the products run through
 * ag_gemm_bf16_serial, always by row blocks, and qkv is kept as a bf16 copy
 * (unless its FP32 data stays anyway). P is not kept at all: each row's
 * max and 1 / sum are, and backward recomputes the pair's P tile from q and
 * k with the same calls, bit for bit the forward's (FlashAttention's trade:
 * one more (T, T/2) product per pair for (B, H, T, T) floats less, the
 * largest tensor of a lecture step). The softmax stays FP32. */
#include "attention_rows.h"
#include "precision.h"

#include <omp.h>

#define RB 64 /* rows per block; columns past the block's last row are never computed */
#define ROWS_MAX 128 /* T hs up to this: by rows (measured: T 8 with hs 8 or 16, not T 16 or 32) */

typedef struct {
    int64_t T, H, hs, C;
    float scale, p;
    uint64_t seed;
} geom;

/* what backward needs: the geometry, and P (B, H, T, T); under bf16
 * instead each row's softmax max and 1 / sum (B, H, T, 2), and qkv's
 * operand (a bf16 copy or qkv's own data) */
typedef struct {
    geom g;
    const float *P;
    bool bf16;
    const float *stats;
    ag_operand qkv;
} attention_saved;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Where a (batch, head) pair's (T, hs) matrices start: in the packed
 * (B, T, 3C) qkv or its grad (q there, k C later, v 2C later), and in the
 * (B, T, C) output or its grad. */
static int64_t packed_at(const geom *g, int64_t pair)
{
    return pair / g->H * g->T * 3 * g->C + pair % g->H * g->hs;
}

static int64_t out_at(const geom *g, int64_t pair)
{
    return pair / g->H * g->T * g->C + pair % g->H * g->hs;
}

/* Row t of a pair, scores in pr[0..t]: pr becomes their softmax, zero on
 * [t+1, width); with dropout (dr != pr), dr becomes the dropped and rescaled
 * row, zero on [t+1, width) as well. */
static void softmax_dropout_row(const geom *g, int64_t pair, int64_t t, float *pr, float *dr,
                                int64_t width)
{
    float m = pr[0];
    if (t < 32) { /* a simd max spills its lanes through the stack: slow on short rows */
        for (int64_t j = 1; j <= t; j++)
            m = pr[j] > m ? pr[j] : m;
    } else {
#pragma omp simd reduction(max : m)
        for (int64_t j = 1; j <= t; j++)
            m = pr[j] > m ? pr[j] : m;
    }
#pragma omp simd
    for (int64_t j = 0; j <= t; j++)
        pr[j] = ag_expf(pr[j] - m);
    float r = 1.0f / ag_sumf(pr, t + 1);
#pragma omp simd
    for (int64_t j = 0; j <= t; j++)
        pr[j] *= r;
    for (int64_t j = t + 1; j < width; j++)
        pr[j] = 0.0f;
    if (dr != pr) {
        /* locals, not g's fields: a store to dr might otherwise change them, and the loop
         * would not vectorize */
        float p = g->p, inv = 1.0f / (1.0f - p);
        uint64_t seed = g->seed, base = (uint64_t)((pair * g->T + t) * g->T);
        for (int64_t j = 0; j <= t; j++)
            dr[j] = ag_dropout_keep(seed, (int64_t)base + j, p) ? pr[j] * inv : 0.0f;
        for (int64_t j = t + 1; j < width; j++)
            dr[j] = 0.0f;
    }
}

/* One (batch, head) pair: P (T, T) = softmax(scale q k^T) over columns <= row,
 * zero up to the end of the row's block; d (T, T) = dropout(P), or P itself
 * when there is no dropout; o (T, hs) = d @ v.
 * q, k, v are (T, hs) with rows 3C apart inside qkv; o rows are C apart. */
static void pair_forward(const geom *g, int64_t pair, const float *qkv, float *out, float *P,
                         float *d)
{
    int64_t T = g->T, hs = g->hs, C = g->C, ld = 3 * C;
    const float *q = qkv + packed_at(g, pair), *k = q + C, *v = q + 2 * C;
    float *o = out + out_at(g, pair);
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int64_t rows = min64(RB, T - i0), cols = i0 + rows;
        ag_gemm_serial(false, true, rows, cols, hs, g->scale, q + i0 * ld,
                       ld, k, ld, 0.0f, P + i0 * T, T);
        for (int64_t t = i0; t < cols; t++)
            softmax_dropout_row(g, pair, t, P + t * T, d + t * T, cols);
        ag_gemm_serial(false, false, rows, hs, cols, 1.0f, d + i0 * T,
                       T, v, ld, 0.0f, o + i0 * C, C);
    }
}

/* pair_forward by rows, for short sequences and small heads: there a BLAS
 * call costs more than its product, so the dot products run inline. */
static void pair_forward_rows(const geom *g, int64_t pair, const float *qkv, float *out, float *P,
                              float *d)
{
    int64_t T = g->T, hs = g->hs, C = g->C, ld = 3 * C;
    const float *q = qkv + packed_at(g, pair), *k = q + C, *v = q + 2 * C;
    float *o = out + out_at(g, pair);
    for (int64_t t = 0; t < T; t++) {
        float *pr = P + t * T, *dr = d + t * T;
        const float *qt = q + t * ld;
        for (int64_t j = 0; j <= t; j++)
            pr[j] = ag_dot(qt, k + j * ld, hs) * g->scale;
        softmax_dropout_row(g, pair, t, pr, dr, t + 1);
        weighted_rows(o + t * C, dr, v, ld, t + 1, hs, true);
    }
}

/* The same pair backward, given go = dL/do. With S = scale q k^T:
 * dD = go v^T, dP = dropout'(dD), dS = P (dP - rowsum(dP P)) scale,
 * dq = dS k, dk = dS^T q, dv = D^T go, each overwritten or added to.
 * a holds dD then dS; d holds D (unused without dropout: D is P). */
static void pair_backward(const geom *g, int64_t pair, const float *qkv, const float *P,
                          const float *gout, float *gqkv, bool overwrite, float *a, float *d)
{
    float beta = overwrite ? 0.0f : 1.0f; /* the GEMMs' */
    int64_t T = g->T, hs = g->hs, C = g->C, ld = 3 * C;
    const float *q = qkv + packed_at(g, pair), *k = q + C, *v = q + 2 * C;
    const float *go = gout + out_at(g, pair);
    float *gq = gqkv + packed_at(g, pair), *gk = gq + C, *gv = gq + 2 * C;
    bool drop = g->p > 0.0f;
    const float *D = drop ? d : P;
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int64_t rows = min64(RB, T - i0), cols = i0 + rows;
        ag_gemm_serial(false, true, rows, cols, hs, 1.0f, go + i0 * C,
                       C, v, ld, 0.0f, a + i0 * T, T);
        for (int64_t t = i0; t < cols; t++) {
            const float *pr = P + t * T;
            float *ar = a + t * T;
            softmax_dropout_span_backward(g->p, g->seed, (uint64_t)((pair * T + t) * T), g->scale, pr,
                                          ar, d + t * T, t + 1, cols);
        }
        ag_gemm_serial(false, false, rows, hs, cols, 1.0f, a + i0 * T,
                       T, k, ld, beta, gq + i0 * ld, ld);
    }
    /* column block j0 of dS and D is nonzero only in rows j0.. */
    for (int64_t j0 = 0; j0 < T; j0 += RB) {
        int64_t w = min64(RB, T - j0), n = T - j0;
        ag_gemm_serial(true, false, w, hs, n, 1.0f, a + j0 * T + j0,
                       T, q + j0 * ld, ld, beta, gk + j0 * ld, ld);
        ag_gemm_serial(true, false, w, hs, n, 1.0f, D + j0 * T + j0,
                       T, go + j0 * C, C, beta, gv + j0 * ld, ld);
    }
}

/* pair_backward by rows, the counterpart of pair_forward_rows. */
static void pair_backward_rows(const geom *g, int64_t pair, const float *qkv, const float *P,
                               const float *gout, float *gqkv, bool overwrite, float *a)
{
    int64_t T = g->T, hs = g->hs, C = g->C, ld = 3 * C;
    const float *q = qkv + packed_at(g, pair), *k = q + C, *v = q + 2 * C;
    const float *go = gout + out_at(g, pair);
    float *gq = gqkv + packed_at(g, pair), *gk = gq + C, *gv = gq + 2 * C;
    bool drop = g->p > 0.0f;
    float inv = 1.0f / (1.0f - g->p);
    if (overwrite) /* the loops below add into dk and dv */
        for (int64_t t = 0; t < T; t++)
            for (int64_t e = 0; e < hs; e++)
                gk[t * ld + e] = gv[t * ld + e] = 0.0f;
    for (int64_t t = 0; t < T; t++) {
        const float *pr = P + t * T, *got = go + t * C, *qt = q + t * ld;
        float *ar = a + t * T, *gqt = gq + t * ld;
        uint64_t base = (uint64_t)((pair * T + t) * T);
        float dot = 0.0f;
        for (int64_t j = 0; j <= t; j++) { /* dD, then dP through the dropout */
            float s = ag_dot(got, v + j * ld, hs);
            if (drop) {
                bool kp = ag_dropout_keep(g->seed, (int64_t)base + j, g->p);
                s = kp ? s * inv : 0.0f;
                /* dv_j += D_tj go_t */
                float dtj = kp ? pr[j] * inv : 0.0f;
                float *gvj = gv + j * ld;
#pragma omp simd
                for (int64_t e = 0; e < hs; e++)
                    gvj[e] += dtj * got[e];
            } else {
                float *gvj = gv + j * ld;
#pragma omp simd
                for (int64_t e = 0; e < hs; e++)
                    gvj[e] += pr[j] * got[e];
            }
            ar[j] = s;
            dot += s * pr[j];
        }
        for (int64_t j = 0; j <= t; j++) {
            float ds = pr[j] * (ar[j] - dot) * g->scale;
            ar[j] = ds;
            float *gkj = gk + j * ld;
#pragma omp simd
            for (int64_t e = 0; e < hs; e++)
                gkj[e] += ds * qt[e];
        }
        weighted_rows(gqt, ar, k, ld, t + 1, hs, overwrite);
    }
}

/* Row t of a pair under bf16: softmax_dropout_row, which keeps the row's
 * max and 1 / sum in st[0], st[1] when st is not NULL. */
static void softmax_row16(const geom *g, int64_t pair, int64_t t, float *pr, float *dr,
                          int64_t width, float *st)
{
    float m = pr[0];
    for (int64_t j = 1; j <= t; j++)
        m = pr[j] > m ? pr[j] : m;
#pragma omp simd
    for (int64_t j = 0; j <= t; j++)
        pr[j] = ag_expf(pr[j] - m);
    float r = 1.0f / ag_sumf(pr, t + 1);
    for (int64_t j = 0; j <= t; j++)
        pr[j] *= r;
    for (int64_t j = t + 1; j < width; j++)
        pr[j] = 0.0f;
    if (st)
        st[0] = m, st[1] = r;
    if (dr != pr) {
        float p = g->p, inv = 1.0f / (1.0f - p);
        uint64_t seed = g->seed, base = (uint64_t)((pair * g->T + t) * g->T);
        for (int64_t j = 0; j <= t; j++)
            dr[j] = ag_dropout_keep(seed, (int64_t)base + j, p) ? pr[j] * inv : 0.0f;
        for (int64_t j = t + 1; j < width; j++)
            dr[j] = 0.0f;
    }
}

/* The scores of row block i0 (rows, up to column cols) of a pair into pt,
 * scaled: the same call forward and backward, so the same bits. */
static void scores16(const geom *g, ag_operand q, ag_operand k, int64_t i0, int64_t rows,
                     int64_t cols, float *pt)
{
    int64_t T = g->T, ld = 3 * g->C;
    ag_operand qi = ag_operand_at(q, i0 * ld);
    ag_gemm_bf16_serial(false, true, rows, cols, g->hs, g->scale, qi.p, qi.h, ld, k.p, k.h, ld,
                        0.0f, pt + i0 * T, T);
}

/* pair_forward in bf16: q, k, v from x (qkv's operand); the scores and the
 * softmax in the thread's FP32 tile pt, each row's statistics into st (the
 * pair's (T, 2), or NULL when nothing is kept); d the dropout tile, or pt. */
static void pair_forward16(const geom *g, int64_t pair, ag_operand x, float *out, float *st,
                           float *pt, float *d)
{
    int64_t T = g->T, hs = g->hs, C = g->C, ld = 3 * C;
    ag_operand q = ag_operand_at(x, packed_at(g, pair)), k = ag_operand_at(q, C),
               v = ag_operand_at(q, 2 * C);
    float *o = out + out_at(g, pair);
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int64_t rows = min64(RB, T - i0), cols = i0 + rows;
        scores16(g, q, k, i0, rows, cols, pt);
        for (int64_t t = i0; t < cols; t++)
            softmax_row16(g, pair, t, pt + t * T, d + t * T, cols, st ? st + 2 * t : NULL);
        ag_gemm_bf16_serial(false, false, rows, hs, cols, 1.0f, d + i0 * T, false, T, v.p, v.h,
                            ld, 0.0f, o + i0 * C, C);
    }
}

/* pair_backward in bf16: pt gets P again, row block by row block, from the
 * scores and each row's statistics st; a holds dD then dS, d holds D with
 * dropout (without it, D is P). */
static void pair_backward16(const geom *g, int64_t pair, ag_operand x, const float *st,
                            const float *gout, float *gqkv, bool overwrite, float *a, float *d,
                            float *pt)
{
    float beta = overwrite ? 0.0f : 1.0f;
    int64_t T = g->T, hs = g->hs, C = g->C, ld = 3 * C;
    ag_operand q = ag_operand_at(x, packed_at(g, pair)), k = ag_operand_at(q, C),
               v = ag_operand_at(q, 2 * C);
    const float *go = gout + out_at(g, pair);
    float *gq = gqkv + packed_at(g, pair), *gk = gq + C, *gv = gq + 2 * C;
    bool drop = g->p > 0.0f;
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int64_t rows = min64(RB, T - i0), cols = i0 + rows;
        scores16(g, q, k, i0, rows, cols, pt);
        ag_gemm_bf16_serial(false, true, rows, cols, hs, 1.0f, go + i0 * C, false, C, v.p, v.h,
                            ld, 0.0f, a + i0 * T, T);
        for (int64_t t = i0; t < cols; t++) {
            float *pr = pt + t * T, *ar = a + t * T;
            float m = st[2 * t], r = st[2 * t + 1];
            for (int64_t j = 0; j <= t; j++) /* as softmax_row16: exp, then times 1 / sum */
                pr[j] = ag_expf(pr[j] - m);
            for (int64_t j = 0; j <= t; j++)
                pr[j] *= r;
            for (int64_t j = t + 1; j < cols; j++)
                pr[j] = 0.0f;
            softmax_dropout_span_backward(g->p, g->seed, (uint64_t)((pair * T + t) * T), g->scale, pr,
                                          ar, d + t * T, t + 1, cols);
        }
        ag_gemm_bf16_serial(false, false, rows, hs, cols, 1.0f, a + i0 * T, false, T, k.p, k.h,
                            ld, beta, gq + i0 * ld, ld);
    }
    const float *D = drop ? d : pt;
    for (int64_t j0 = 0; j0 < T; j0 += RB) {
        int64_t w = min64(RB, T - j0), n = T - j0;
        ag_operand qj = ag_operand_at(q, j0 * ld);
        ag_gemm_bf16_serial(true, false, w, hs, n, 1.0f, a + j0 * T + j0, false, T, qj.p, qj.h,
                            ld, beta, gk + j0 * ld, ld);
        ag_gemm_bf16_serial(true, false, w, hs, n, 1.0f, D + j0 * T + j0, false, T, go + j0 * C,
                            false, C, beta, gv + j0 * ld, ld);
    }
}

static bool by_rows(const geom *g) { return g->T * g->hs <= ROWS_MAX; }

/* One pair's forward with its buffers: P's tile for the pair when P is kept,
 * else the thread's own (mine); the dropout tile after it in mine. */
static void forward_pair(const geom *g, int64_t pr, const float *qkv, float *out, float *P,
                         float *mine, int64_t tile, bool drop)
{
    float *pp = P ? P + pr * tile : mine;
    float *d = drop ? (P ? mine : mine + tile) : pp;
    if (by_rows(g))
        pair_forward_rows(g, pr, qkv, out, pp, d);
    else
        pair_forward(g, pr, qkv, out, pp, d);
}

static void backward_pair(const geom *g, int64_t pr, const float *qkv, const float *P,
                          const float *gout, float *gqkv, bool overwrite, float *a, float *d)
{
    if (by_rows(g))
        pair_backward_rows(g, pr, qkv, P, gout, gqkv, overwrite, a);
    else
        pair_backward(g, pr, qkv, P, gout, gqkv, overwrite, a, d);
}

/* Parts for a call: past 2^18 multiply-adds of T x T tiles, a thread per
 * 2^18 of them, and no more than the (batch, head) pairs. */
static int parallel_parts(const geom *g, int64_t pairs)
{
    int parts = ag_parts_past(pairs * g->T * g->T * g->hs, 1 << 18);
    return parts < pairs ? parts : (int)pairs;
}

/* attention_backward's pairs under bf16, three tiles of scratch per thread */
static void backward16(const attention_saved *s, int64_t pairs, const float *gout, float *gx,
                       bool overwrite, int nt, float *scratch)
{
    int64_t T = s->g.T, tile = T * T;
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
            float *a = scratch + 3 * omp_get_thread_num() * tile;
#pragma omp for schedule(dynamic) nowait
            for (int64_t pr = 0; pr < pairs; pr++)
                pair_backward16(&s->g, pr, s->qkv, s->stats + pr * 2 * T, gout, gx, overwrite, a,
                                a + tile, a + 2 * tile);
        }
        ag_region_end(&r, nt);
    } else {
        for (int64_t pr = 0; pr < pairs; pr++)
            pair_backward16(&s->g, pr, s->qkv, s->stats + pr * 2 * T, gout, gx, overwrite,
                            scratch, scratch + tile, scratch + 2 * tile);
    }
}

/* ag_attention's forward under bf16: the rows' statistics (pairs, T, 2) kept
 * in st when recorded (else NULL) */
static void forward16(const geom *g, int64_t pairs, ag_operand x, float *out, float *st, int nt,
                      float *scratch, int64_t per_thread)
{
    int64_t T = g->T, tile = T * T;
    bool drop = g->p > 0.0f;
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
            float *pt = scratch + omp_get_thread_num() * per_thread;
#pragma omp for schedule(dynamic) nowait
            for (int64_t pr = 0; pr < pairs; pr++)
                pair_forward16(g, pr, x, out, st ? st + pr * 2 * T : NULL, pt,
                               drop ? pt + tile : pt);
        }
        ag_region_end(&r, nt);
    } else {
        for (int64_t pr = 0; pr < pairs; pr++)
            pair_forward16(g, pr, x, out, st ? st + pr * 2 * T : NULL, scratch,
                           drop ? scratch + tile : scratch);
    }
}

static void attention_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    if (!gx)
        return;
    const attention_saved *s = ag_saved(out);
    geom g = s->g;
    int64_t pairs = out->shape[0] * g.H, tile = g.T * g.T;
    int nt = ag_team(parallel_parts(&g, pairs));
    float *scratch = ag_scratch(ctx, (size_t)((s->bf16 ? 3 : 2) * nt * tile) * sizeof(float));
    const float *P = s->P;
    if (s->bf16) {
        backward16(s, pairs, out->grad, gx, overwrite, nt, scratch);
        return;
    }
    /* each thread its own two tiles; pairs handed out as threads come free */
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
            float *a = scratch + 2 * omp_get_thread_num() * tile;
#pragma omp for schedule(dynamic) nowait
            for (int64_t pr = 0; pr < pairs; pr++)
                backward_pair(&g, pr, x->data, P + pr * tile, out->grad, gx, overwrite, a, a + tile);
        }
        ag_region_end(&r, nt);
    } else {
        for (int64_t pr = 0; pr < pairs; pr++)
            backward_pair(&g, pr, x->data, P + pr * tile, out->grad, gx, overwrite, scratch,
                          scratch + tile);
    }
}

/* backward reads qkv and the saved P, not the output */
static const ag_op attention_op = {"attention", attention_backward, AG_IN(0)};
/* under bf16 with qkv kept as a bf16 copy: none of the inputs' data */
static const ag_op attention16_op = {"attention", attention_backward, AG_NO_DATA};

ag_tensor *ag_attention(ag_ctx *c, ag_tensor *qkv, int n_head, float scale, float dropout,
                        bool training)
{
    if (!ag_check_inputs("attention", &qkv, 1))
        return NULL;
    char s[128];
    if (qkv->ndim != 3 || n_head <= 0 || qkv->shape[2] % (3 * (int64_t)n_head) != 0 ||
        qkv->shape[1] == 0) {
        ag_error("attention: qkv of shape %s is not (B, T, 3 C) with C divisible by n_head %d",
                 ag_shape_str(qkv, s, sizeof s), n_head);
        return NULL;
    }
    if (!(dropout >= 0.0f && dropout < 1.0f)) {
        ag_error("attention: dropout probability %g is not in [0, 1)", (double)dropout);
        return NULL;
    }
    int64_t B = qkv->shape[0], T = qkv->shape[1], C = qkv->shape[2] / 3;
    bool bf16 = ag_bf16_on(c);
    ag_operand x = {qkv->data, false};
    if (bf16)
        x = ag_bf16_operand(c, qkv, ag_grad_enabled(c) && ag_requires_grad(qkv));
    ag_tensor *out = ag_result(c, x.h ? &attention16_op : &attention_op, &qkv, 1, 3,
                               (int64_t[]){B, T, C});
    if (!out)
        return NULL;
    float p = training ? dropout : 0.0f;
    geom g = {.T = T, .H = n_head, .hs = C / n_head, .C = C, .scale = scale, .p = p,
              .seed = p > 0.0f ? ag_rng_next(&c->rng) : 0};
    int64_t pairs = B * n_head, tile = T * T;
    int nt = ag_team(parallel_parts(&g, pairs));
    if (bf16) { /* the rows' statistics kept when recorded; a P tile (and a dropout tile) per thread */
        float *st = ag_op_of(out) ? ag_ctx_alloc(c, (size_t)(pairs * 2 * T) * sizeof *st) : NULL;
        int64_t per_thread = (p > 0.0f ? 2 : 1) * tile;
        float *scratch = ag_buf_alloc(c, nt * per_thread);
        ag_save(c, out, &(attention_saved){.g = g, .bf16 = true, .stats = st, .qkv = x},
                sizeof(attention_saved));
        forward16(&g, pairs, x, out->data, st, nt, scratch, per_thread);
        ag_buf_release(c, scratch, nt * per_thread);
        return out;
    }
    /* P is kept for backward when the op was recorded; otherwise one tile per thread */
    bool keep_p = ag_op_of(out) != NULL;
    float *P = keep_p ? ag_ctx_alloc(c, (size_t)(pairs * tile) * sizeof(float)) : NULL;
    int64_t per_thread = (keep_p ? 0 : tile) + (p > 0.0f ? tile : 0);
    float *scratch = per_thread ? ag_buf_alloc(c, nt * per_thread) : NULL;
    ag_save(c, out, &(attention_saved){.g = g, .P = P}, sizeof(attention_saved));
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
            float *mine = scratch ? scratch + omp_get_thread_num() * per_thread : NULL;
#pragma omp for schedule(dynamic) nowait
            for (int64_t pr = 0; pr < pairs; pr++)
                forward_pair(&g, pr, qkv->data, out->data, P, mine, tile, p > 0.0f);
        }
        ag_region_end(&r, nt);
    } else {
        for (int64_t pr = 0; pr < pairs; pr++)
            forward_pair(&g, pr, qkv->data, out->data, P, scratch, tile, p > 0.0f);
    }
    if (scratch)
        ag_buf_release(c, scratch, nt * per_thread);
    return out;
}
