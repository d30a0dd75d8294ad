/* test_bf16_ops.c - the bf16 precision (ag_set_precision) of the products:
 * matmul, matmul_nt, linear, attention and attention_qkv, forward and both
 * grads,
 * - against the same FP32 ops run on operands rounded to bf16 by hand (and,
 *   for backward, on the rounded output grad): the products of bf16 values
 *   are exact in FP32, so only the order of the FP32 sums may differ
 *   (within 1e-5 relative);
 * - against FP32 within the bound bf16 rounding gives: each operand moves by
 *   at most u = 2^-8 of itself (8 significant bits, nearest even), so a
 *   product by at most 2u + u^2, and a sum of K products by at most
 *   (2u + u^2) sum |a_k b_k|, plus FP32's own 2 K 2^-24 sum |a_k b_k|;
 * - the precision an op was recorded with is what its backward uses;
 * - FP32 stays the default and bit for bit what it was;
 * - what backward reads is kept in bf16: an input's FP32 data is freed by
 *   ag_release, and one input read by several products is converted once;
 * - no-grad mode gives the same numbers; 1 and 2 threads the same bits. */
#include "test_util.h"

#include "bf16.h"
#include "internal.h"

#include <stdlib.h>

#define U (1.0 / 256.0) /* bf16's unit roundoff, 2^-8 */

/* A persistent copy of t with every element rounded to bf16. */
static ag_tensor *rounded(const ag_tensor *t, bool grad)
{
    ag_tensor *r = ag_from_data(NULL, t->data, t->ndim, t->shape);
    for (int64_t i = 0; i < r->numel; i++)
        r->data[i] = ag_bf16_float(ag_bf16_round(r->data[i]));
    ag_set_requires_grad(r, grad);
    return r;
}

static ag_tensor *randt(uint64_t seed, int ndim, const int64_t *shape)
{
    ag_tensor *t = ag_randn(NULL, TEST_RNG(seed), 0.0f, 1.0f, ndim, shape);
    ag_set_requires_grad(t, true);
    return t;
}

static float *copy_of(const float *p, int64_t n)
{
    float *c = malloc((size_t)n * sizeof *c);
    memcpy(c, p, (size_t)n * sizeof *c);
    return c;
}

/* ---------------------------------------------------------------- products */

typedef enum { MATMUL, MATMUL_NT, LINEAR } product;

static ag_tensor *run_product(ag_ctx *c, product k, ag_tensor *a, ag_tensor *b, ag_tensor *bias)
{
    return k == MATMUL ? ag_matmul(c, a, b) : k == MATMUL_NT ? ag_matmul_nt(c, a, b)
                                                            : ag_linear(c, a, b, bias);
}

/* The grads of a, b (and bias) of the product under precision p, seeded
 * with G; out: the forward's values. Each array malloc'ed. */
typedef struct {
    float *y, *ga, *gb, *gbias;
} product_result;

static product_result grads_of(ag_precision p, product k, ag_tensor *a, ag_tensor *b,
                               ag_tensor *bias, const ag_tensor *G)
{
    ag_ctx *c = ag_ctx_new();
    ag_set_precision(c, p);
    ag_zero_grad(a);
    ag_zero_grad(b);
    if (bias)
        ag_zero_grad(bias);
    ag_tensor *y = run_product(c, k, a, b, bias);
    assert_non_null(y);
    ag_tensor *g = ag_from_data(c, G->data, y->ndim, y->shape);
    assert_true(ag_backward_with(c, y, g));
    product_result r = {copy_of(y->data, y->numel), copy_of(a->grad, a->numel),
                        copy_of(b->grad, b->numel), bias ? copy_of(bias->grad, bias->numel) : NULL};
    ag_ctx_free(c);
    return r;
}

static void free_result(product_result *r)
{
    free(r->y);
    free(r->ga);
    free(r->gb);
    free(r->gbias);
}

/* |got - want| within the bf16 bound of each element, the sums of |terms| in
 * `mag` (the same product over |a| and |b|) */
static void assert_within_bound(const float *got, const float *want, const float *mag, int64_t n,
                                int64_t K, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        double bound = (2 * U + U * U + 2.0 * (double)K * 0x1p-24) * mag[i] + 1e-6;
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= bound))
            fail_msg("%s[%lld]: bf16 %.8g, fp32 %.8g: off by %.3g, more than the bound %.3g", what,
                     (long long)i, (double)got[i], (double)want[i], d, bound);
    }
}

static ag_tensor *abs_copy(const ag_tensor *t)
{
    ag_tensor *r = ag_from_data(NULL, t->data, t->ndim, t->shape);
    for (int64_t i = 0; i < r->numel; i++)
        r->data[i] = fabsf(r->data[i]);
    ag_set_requires_grad(r, true);
    return r;
}

typedef struct {
    product k;
    int nda;
    int64_t sa[4];
    int ndb;
    int64_t sb[4];
    bool bias;
} product_case;

static void check_product(const product_case *pc)
{
    ag_tensor *a = randt(11, pc->nda, pc->sa), *b = randt(12, pc->ndb, pc->sb);
    ag_tensor *bias = NULL;
    if (pc->bias)
        bias = randt(13, 1, (int64_t[]){pc->sb[0]});
    ag_ctx *c0 = ag_ctx_new();
    ag_tensor *y0 = run_product(c0, pc->k, a, b, bias);
    ag_tensor *G = ag_randn(NULL, TEST_RNG(14), 0.0f, 1.0f, y0->ndim, y0->shape);
    ag_ctx_free(c0);
    int64_t K = a->shape[a->ndim - 1];
    int64_t Mout = pc->k == MATMUL ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];

    product_result h = grads_of(AG_BF16, pc->k, a, b, bias, G);
    product_result f = grads_of(AG_FP32, pc->k, a, b, bias, G);

    /* by hand: the FP32 op on rounded a, b, seeded with the rounded grad */
    ag_tensor *ra = rounded(a, true), *rb = rounded(b, true), *rG = rounded(G, false);
    product_result r = grads_of(AG_FP32, pc->k, ra, rb, bias, rG);
    assert_close(h.y, r.y, G->numel, 1e-5);
    assert_close(h.ga, r.ga, a->numel, 1e-5);
    assert_close(h.gb, r.gb, b->numel, 1e-5);
    if (bias) /* the bias's grad is a sum of FP32 grads: no product, no rounding */
        assert_memory_equal(h.gbias, f.gbias, (size_t)bias->numel * sizeof(float));

    /* against FP32: the same products over |a|, |b|, |G| are the sums of |terms| */
    ag_tensor *aa = abs_copy(a), *ab = abs_copy(b), *aG = abs_copy(G);
    product_result m = grads_of(AG_FP32, pc->k, aa, ab, NULL, aG);
    assert_within_bound(h.y, f.y, m.y, G->numel, K, "y");
    assert_within_bound(h.ga, f.ga, m.ga, a->numel, Mout, "grad a");
    assert_within_bound(h.gb, f.gb, m.gb, b->numel, G->numel / Mout, "grad b");
    /* and bf16 is not FP32: the rounding shows */
    bool differs = false;
    for (int64_t i = 0; i < G->numel; i++)
        differs = differs || h.y[i] != f.y[i];
    assert_true(differs);

    free_result(&h);
    free_result(&f);
    free_result(&r);
    free_result(&m);
    ag_tensor *ts[] = {a, b, bias, G, ra, rb, rG, aa, ab, aG};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        ag_tensor_free(ts[i]);
}

static void products_match_hand_and_bound(void **state)
{
    (void)state;
    const product_case cases[] = {
        {MATMUL, 2, {13, 37}, 2, {37, 19}, false},                 /* one GEMM */
        {MATMUL, 4, {2, 3, 5, 17}, 3, {3, 17, 7}, false},          /* b broadcast over dim 0 */
        {MATMUL, 3, {1, 9, 21}, 3, {4, 21, 6}, false},             /* a broadcast */
        {MATMUL_NT, 3, {3, 11, 16}, 3, {3, 13, 16}, false},        /* q k^T */
        {MATMUL_NT, 3, {2, 70, 40}, 2, {50, 40}, false},           /* folds */
        {LINEAR, 3, {2, 33, 24}, 2, {48, 24}, true},
        {LINEAR, 2, {200, 64}, 2, {65, 64}, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_product(&cases[i]);
}

/* ---------------------------------------------------------------- attention */

/* The bf16 attention by hand, with FP32 ops in no-grad mode on rounded
 * operands: S = scale rq rk^T (+ causal), P = softmax(S), P16 = round(P),
 * out = P16 rv; backward from the rounded go: dD = go16 rv^T,
 * dS = P' (dD - rowsum(dD P')) scale, dq = round(dS) rk,
 * dk = round(dS)^T rq, dv = P16^T go16, where P' is P16 (attention_qkv
 * with an additive mask keeps P in bf16) or P (recomputed in FP32). */
typedef struct {
    float *out, *gq, *gk, *gv;
} attn_result;

static ag_tensor *round_in(ag_ctx *c, ag_tensor *t)
{
    ag_tensor *r = ag_from_data(c, t->data, t->ndim, t->shape);
    for (int64_t i = 0; i < r->numel; i++)
        r->data[i] = ag_bf16_float(ag_bf16_round(r->data[i]));
    return r;
}

static attn_result attention_by_hand(ag_tensor *q, ag_tensor *k, ag_tensor *v, const ag_tensor *G,
                                     ag_tensor *mask, bool causal, float scale, bool p16_in_ds)
{
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_tensor *rq = round_in(c, q), *rk = round_in(c, k), *rv = round_in(c, v);
    ag_tensor *s = ag_mul_scalar(c, ag_matmul_nt(c, rq, rk), scale);
    if (mask)
        s = ag_add(c, s, mask);
    if (causal)
        s = ag_causal_mask(c, s, -INFINITY);
    ag_tensor *P = ag_softmax(c, s, -1), *P16 = round_in(c, P);
    ag_tensor *Pds = p16_in_ds ? P16 : P;
    ag_tensor *out = ag_matmul(c, P16, rv);
    ag_tensor *go = round_in(c, ag_from_data(c, G->data, G->ndim, G->shape));
    ag_tensor *dD = ag_matmul_nt(c, go, rv);
    ag_tensor *rowsum = ag_sum(c, ag_mul(c, dD, Pds), -1, true);
    ag_tensor *dS = round_in(c, ag_mul_scalar(c, ag_mul(c, Pds, ag_sub(c, dD, rowsum)), scale));
    ag_tensor *dq = ag_matmul(c, dS, rk);
    ag_tensor *dk = ag_matmul(c, ag_transpose(c, dS, -1, -2), rq);
    ag_tensor *dv = ag_matmul(c, ag_transpose(c, P16, -1, -2), go);
    attn_result r = {copy_of(out->data, out->numel), copy_of(dq->data, dq->numel),
                     copy_of(dk->data, dk->numel), copy_of(dv->data, dv->numel)};
    ag_ctx_free(c);
    return r;
}

static attn_result attention_run(ag_precision p, ag_tensor *q, ag_tensor *k, ag_tensor *v,
                                 const ag_tensor *G, const ag_tensor *mask, bool causal,
                                 float scale, float drop)
{
    ag_ctx *c = ag_ctx_new();
    ag_ctx_manual_seed(c, 5);
    ag_set_precision(c, p);
    ag_zero_grad(q);
    ag_zero_grad(k);
    ag_zero_grad(v);
    ag_tensor *y = ag_attention_qkv(c, q, k, v, mask, causal, scale, drop, true);
    assert_non_null(y);
    assert_true(ag_backward_with(c, y, ag_from_data(c, G->data, y->ndim, y->shape)));
    attn_result r = {copy_of(y->data, y->numel), copy_of(q->grad, q->numel),
                     copy_of(k->grad, k->numel), copy_of(v->grad, v->numel)};
    ag_ctx_free(c);
    return r;
}

static void free_attn(attn_result *r)
{
    free(r->out);
    free(r->gq);
    free(r->gk);
    free(r->gv);
}

static double max_abs(const float *x, int64_t n)
{
    double m = 0;
    /* a plain compare, not fmax: inlined into assert_mostly_close, the fmax
     * reduction made aarch64 GCC 12's vectorizer fail (internal compiler
     * error in vect_transform_reduction); NaN is skipped as fmax skips it */
    for (int64_t i = 0; i < n; i++) {
        double a = fabs((double)x[i]);
        m = a > m ? a : m;
    }
    return m;
}

/* ||got - want|| / ||want|| */
static double rel_err(const float *got, const float *want, int64_t n)
{
    double d = 0, w = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        w += (double)want[i] * want[i];
    }
    return sqrt(d / (w > 0 ? w : 1));
}

/* got == want within 1e-4 (relative to 1 + |want|) but for at most 1% of
 * the elements, which may be one bf16 unit (2^-8) of the largest apart: a
 * weight that rounded to the neighbouring bf16 value */
static void assert_mostly_close(const float *got, const float *want, int64_t n, const char *what)
{
    double loose = 2 * U * max_abs(want, n);
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        off += d > 1e-4 * (1 + fabs((double)want[i]));
        if (!(d <= loose))
            fail_msg("%s[%lld]: %.8g, by hand %.8g", what, (long long)i, (double)got[i],
                     (double)want[i]);
    }
    if (off * 100 > n)
        fail_msg("%s: %lld of %lld elements differ from the hand computation", what,
                 (long long)off, (long long)n);
}

static void check_attention(int64_t B, int64_t H, int64_t T, int64_t S, int64_t hs, bool causal,
                            bool masked)
{
    ag_tensor *q = randt(21, AG_SHAPE(B, H, T, hs)), *k = randt(22, AG_SHAPE(B, H, S, hs));
    ag_tensor *v = randt(23, AG_SHAPE(B, H, S, hs));
    ag_tensor *G = ag_randn(NULL, TEST_RNG(24), 0.0f, 1.0f, AG_SHAPE(B, H, T, hs));
    /* an additive (T, S) mask, made to need no grad */
    ag_tensor *mask = masked ? ag_randn(NULL, TEST_RNG(25), 0.0f, 1.0f, AG_SHAPE(T, S)) : NULL;
    float scale = 1.0f / sqrtf((float)hs);
    attn_result h = attention_run(AG_BF16, q, k, v, G, mask, causal, scale, 0.0f);
    attn_result f = attention_run(AG_FP32, q, k, v, G, mask, causal, scale, 0.0f);
    attn_result r = attention_by_hand(q, k, v, G, mask, causal, scale, masked);
    /* by hand: the same roundings, FP32 sums in another order; a P or dS that
     * lands within FP32's noise of a bf16 tie may round the other way there */
    assert_mostly_close(h.out, r.out, G->numel, "out");
    assert_mostly_close(h.gq, r.gq, q->numel, "grad q");
    assert_mostly_close(h.gk, r.gk, k->numel, "grad k");
    assert_mostly_close(h.gv, r.gv, v->numel, "grad v");
    /* against FP32: the scores move by at most e = (2u + u^2) scale sum |q k|
     * (<= (2u + u^2) scale hs max|q| max|k|), the softmax's weights by a factor
     * within e^(2e), and P itself by u when rounded: out by at most
     * ((e^(2e) - 1) + 2u + 2u^2) max|v| */
    double e = (2 * U + U * U) * scale * (double)hs * max_abs(q->data, q->numel) *
               max_abs(k->data, k->numel); /* a mask adds the same to both */
    double bound = (exp(2 * e) - 1 + 2 * U + 2 * U * U) * max_abs(v->data, v->numel) + 1e-5;
    for (int64_t i = 0; i < G->numel; i++)
        if (!(fabs((double)h.out[i] - f.out[i]) <= bound))
            fail_msg("attention out[%lld]: bf16 %g, fp32 %g, beyond the bound %g", (long long)i,
                     (double)h.out[i], (double)f.out[i], bound);
    /* the grads, through two rounded products each, to a few bf16 units in norm */
    assert_true(rel_err(h.gq, f.gq, q->numel) < 16 * U);
    assert_true(rel_err(h.gk, f.gk, k->numel) < 16 * U);
    assert_true(rel_err(h.gv, f.gv, v->numel) < 16 * U);
    assert_true(rel_err(h.out, f.out, G->numel) > 0); /* rounded, not FP32 */
    free_attn(&h);
    free_attn(&f);
    free_attn(&r);
    ag_tensor *ts[] = {q, k, v, G};
    free_all(ts, 4);
    ag_tensor_free(mask);
}

static void attention_qkv_matches_hand_and_bound(void **state)
{
    (void)state;
    check_attention(1, 2, 3, 3, 4, true, false);    /* tiny: FP32 runs it by rows */
    check_attention(2, 2, 70, 70, 16, true, false); /* two row blocks */
    check_attention(1, 3, 20, 33, 8, false, false); /* S > T, not causal */
    check_attention(1, 1, 90, 40, 24, true, false); /* S < T */
    check_attention(2, 2, 70, 70, 16, true, true);  /* an additive mask: P kept in bf16 */
    check_attention(1, 2, 20, 33, 8, false, true);
}

/* The packed op: the same numbers as attention_qkv over its split in bf16,
 * forward and grads (dropout included); its grads those of the hand
 * computation with P recomputed in FP32 for dS; within bf16's reach of FP32. */
static ag_tensor *packed_run(ag_ctx *c, ag_tensor *x, int H, float p)
{
    return ag_attention(c, x, H, 0.25f, p, true);
}

/* (B, T, 3C) -> q, k, v (B, H, T, hs) */
static void split_heads(ag_ctx *c, ag_tensor *x, int H, ag_tensor **parts)
{
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2] / 3, hs = C / H;
    ag_split(c, x, (int64_t[]){C, C, C}, 3, -1, parts);
    for (int i = 0; i < 3; i++)
        parts[i] = ag_permute(c, ag_reshape(c, parts[i], AG_SHAPE(B, T, H, hs)),
                              (int[]){0, 2, 1, 3}, 4);
}

/* (B, H, T, hs) -> (B, T, H hs) */
static ag_tensor *merge_heads(ag_ctx *c, ag_tensor *o)
{
    return ag_reshape(c, ag_permute(c, o, (int[]){0, 2, 1, 3}, 4),
                      AG_SHAPE(o->shape[0], o->shape[2], o->shape[1] * o->shape[3]));
}

static ag_tensor *split_run(ag_ctx *c, ag_tensor *x, int H, float p)
{
    ag_tensor *parts[3];
    split_heads(c, x, H, parts);
    return merge_heads(c, ag_attention_qkv(c, parts[0], parts[1], parts[2], NULL, true, 0.25f, p,
                                           true));
}

/* attention_by_hand over x's split, its grads packed back as x's: (B, T, 3C) */
static float *packed_by_hand(ag_tensor *x, const ag_tensor *G, int H)
{
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_tensor *parts[3], *p[3];
    split_heads(c, x, H, parts);
    for (int i = 0; i < 3; i++)
        p[i] = ag_from_data(NULL, parts[i]->data, 4, parts[i]->shape);
    int64_t B = G->shape[0], T = G->shape[1], C = G->shape[2], hs = C / H;
    ag_tensor *g4 = ag_permute(c, ag_reshape(c, (ag_tensor *)G, AG_SHAPE(B, T, H, hs)),
                               (int[]){0, 2, 1, 3}, 4);
    attn_result r = attention_by_hand(p[0], p[1], p[2], g4, NULL, true, 0.25f, false);
    float *gs[3] = {r.gq, r.gk, r.gv};
    ag_tensor *m[3];
    for (int i = 0; i < 3; i++)
        m[i] = merge_heads(c, ag_from_data(c, gs[i], AG_SHAPE(B, H, T, hs)));
    ag_tensor *all = ag_concat(c, m, 3, -1);
    float *out = copy_of(all->data, all->numel);
    free_attn(&r);
    for (int i = 0; i < 3; i++)
        ag_tensor_free(p[i]);
    ag_ctx_free(c);
    return out;
}

static void packed_attention(void **state)
{
    (void)state;
    const struct {
        int64_t B, T, C;
        int H;
        float p;
    } cases[] = {{2, 5, 12, 2, 0.0f}, {2, 80, 48, 3, 0.0f}, {1, 70, 32, 2, 0.3f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        ag_tensor *x = randt(31 + ci, AG_SHAPE(cases[ci].B, cases[ci].T, 3 * cases[ci].C));
        ag_tensor *G = ag_randn(NULL, TEST_RNG(41), 0.0f, 1.0f,
                                AG_SHAPE(cases[ci].B, cases[ci].T, cases[ci].C));
        float *res[3][2];
        for (int run = 0; run < 3; run++) {
            ag_ctx *c = ag_ctx_new();
            ag_ctx_manual_seed(c, 9);
            ag_set_precision(c, run == 2 ? AG_FP32 : AG_BF16);
            ag_zero_grad(x);
            ag_tensor *y = (run == 1 ? split_run : packed_run)(c, x, cases[ci].H, cases[ci].p);
            assert_true(ag_backward_with(c, y, ag_from_data(c, G->data, y->ndim, y->shape)));
            res[run][0] = copy_of(y->data, y->numel);
            res[run][1] = copy_of(x->grad, x->numel);
            ag_ctx_free(c);
        }
        assert_close(res[0][0], res[1][0], G->numel, 1e-5);
        assert_close(res[0][1], res[1][1], x->numel, 1e-5); /* both recompute P */
        if (cases[ci].p == 0.0f) {
            float *hand = packed_by_hand(x, G, cases[ci].H);
            assert_mostly_close(res[0][1], hand, x->numel, "packed grad");
            free(hand);
        }
        assert_true(rel_err(res[0][0], res[2][0], G->numel) < 4 * U);
        assert_true(rel_err(res[0][1], res[2][1], x->numel) < 16 * U);
        assert_true(rel_err(res[0][0], res[2][0], G->numel) > 0);
        for (int run = 0; run < 3; run++)
            free(res[run][0]), free(res[run][1]);
        ag_tensor_free(x);
        ag_tensor_free(G);
    }
}

/* ---------------------------------------------------------------- the setting */

static void setting_and_names(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    assert_int_equal(ag_get_precision(c), AG_FP32);
    ag_set_precision(c, AG_BF16);
    assert_int_equal(ag_get_precision(c), AG_BF16);
    ag_ctx_reset(c); /* a step's reset keeps it */
    assert_int_equal(ag_get_precision(c), AG_BF16);
    ag_ctx_free(c);
    assert_string_equal(ag_precision_name(AG_FP32), "fp32");
    assert_string_equal(ag_precision_name(AG_BF16), "bf16");
    ag_precision p = AG_FP32;
    assert_true(ag_precision_from_name("bf16", &p));
    assert_int_equal(p, AG_BF16);
    assert_true(ag_precision_from_name("fp32", &p));
    assert_int_equal(p, AG_FP32);
    p = AG_BF16;
    assert_false(ag_precision_from_name("fp16", &p));
    assert_false(ag_precision_from_name("BF16", &p));
    assert_false(ag_precision_from_name(NULL, &p));
    assert_int_equal(p, AG_BF16);
    const char *k = ag_bf16_kernel();
    assert_true(strcmp(k, "avx512_bf16") == 0 || strcmp(k, "emulated") == 0);
}

/* y = tanh(x W1^T) W2 over a batch: two linears and a matmul, the backward
 * run after the precision was switched. */
static float *mlp_grads(ag_precision record, ag_precision at_backward, ag_tensor *x,
                        ag_tensor *w1, ag_tensor *w2)
{
    ag_ctx *c = ag_ctx_new();
    ag_set_precision(c, record);
    ag_zero_grad(w1);
    ag_zero_grad(w2);
    ag_tensor *h = ag_tanh(c, ag_linear(c, x, w1, NULL));
    ag_tensor *loss = ag_sum_all(c, ag_matmul(c, h, w2));
    ag_set_precision(c, at_backward);
    assert_true(ag_backward(c, loss));
    float *g = malloc((size_t)(w1->numel + w2->numel) * sizeof *g);
    memcpy(g, w1->grad, (size_t)w1->numel * sizeof *g);
    memcpy(g + w1->numel, w2->grad, (size_t)w2->numel * sizeof *g);
    ag_ctx_free(c);
    return g;
}

static void precision_saved_per_op(void **state)
{
    (void)state;
    ag_tensor *x = ag_randn(NULL, TEST_RNG(51), 0, 1, AG_SHAPE(17, 23));
    ag_tensor *w1 = randt(52, AG_SHAPE(31, 23)), *w2 = randt(53, AG_SHAPE(31, 5));
    size_t bytes = (size_t)(w1->numel + w2->numel) * sizeof(float);
    float *bb = mlp_grads(AG_BF16, AG_BF16, x, w1, w2), *bf = mlp_grads(AG_BF16, AG_FP32, x, w1, w2);
    float *ff = mlp_grads(AG_FP32, AG_FP32, x, w1, w2), *fb = mlp_grads(AG_FP32, AG_BF16, x, w1, w2);
    assert_memory_equal(bb, bf, bytes); /* recorded in bf16: backward in bf16 */
    assert_memory_equal(ff, fb, bytes); /* recorded in FP32: backward in FP32 */
    assert_memory_not_equal(bb, ff, bytes);
    free(bb), free(bf), free(ff), free(fb);
    ag_tensor *ts[] = {x, w1, w2};
    free_all(ts, 3);
}

/* FP32, the default, gives the same bits as before bf16 existed: the same
 * as a ctx that switched to bf16 and back, and as the FP32 GEMM itself. */
static void fp32_default_unchanged(void **state)
{
    (void)state;
    ag_tensor *a = randt(61, AG_SHAPE(9, 14)), *b = randt(62, AG_SHAPE(14, 6));
    ag_ctx *c1 = ag_ctx_new(), *c2 = ag_ctx_new();
    ag_set_precision(c2, AG_BF16);
    ag_set_precision(c2, AG_FP32);
    ag_tensor *y1 = ag_matmul(c1, a, b), *y2 = ag_matmul(c2, a, b);
    float want[9 * 6];
    ag_gemm(false, false, 9, 6, 14, 1.0f, a->data, 14, b->data, 6, 0.0f, want, 6);
    assert_memory_equal(y1->data, want, sizeof want);
    assert_memory_equal(y2->data, want, sizeof want);
    /* the op reads both inputs' FP32 data: a released input stays */
    ag_tensor *x = ag_mul_scalar(c1, a, 2.0f);
    ag_tensor *y3 = ag_matmul(c1, x, b);
    ag_release(c1, x);
    assert_non_null(x->data);
    assert_non_null(y3);
    ag_ctx_free(c1);
    ag_ctx_free(c2);
    ag_tensor_free(a);
    ag_tensor_free(b);
}

/* Under bf16 an intermediate read only by products is kept as a bf16 copy:
 * releasing it frees its FP32 data; read by several products, it is
 * converted once; read as FP32 by another backward (relu's reads its output),
 * no copy is made. Without grads nothing is kept. */
static void saved_in_bf16(void **state)
{
    (void)state;
    ag_tensor *a = randt(71, AG_SHAPE(64, 32));
    ag_tensor *w[3];
    for (int i = 0; i < 3; i++)
        w[i] = randt(72 + (uint64_t)i, AG_SHAPE(16, 32));
    ag_ctx *c = ag_ctx_new();
    ag_set_precision(c, AG_BF16);
    ag_tensor *x = ag_mul_scalar(c, a, 0.5f); /* (64, 32), read only by the linears */
    size_t before = ag_ctx_bytes_used(c);
    ag_tensor *y0 = ag_linear(c, x, w[0], NULL);
    size_t first = ag_ctx_bytes_used(c) - before;
    before = ag_ctx_bytes_used(c);
    ag_tensor *y1 = ag_linear(c, x, w[1], NULL);
    size_t second = ag_ctx_bytes_used(c) - before;
    ag_tensor *y2 = ag_linear(c, x, w[2], NULL);
    /* the first made the copy (64 x 32 bf16), the second shares it */
    assert_true(first >= second + 64 * 32 * sizeof(ag_bf16));
    ag_release(c, x);
    assert_null(x->data);
    ag_tensor *r = ag_relu(c, y0); /* relu's backward reads r: the matmul reads r's FP32 */
    before = ag_ctx_bytes_used(c);
    ag_tensor *z = ag_matmul(c, r, w[1]); /* (64, 16) @ (16, 32) */
    assert_true(ag_ctx_bytes_used(c) - before < (size_t)r->numel * sizeof(ag_bf16) +
                                                    (size_t)z->numel * sizeof(float));
    ag_tensor *loss = ag_add(c, ag_add(c, ag_sum_all(c, z), ag_sum_all(c, y1)), ag_sum_all(c, y2));
    assert_true(ag_backward(c, loss));
    for (int i = 0; i < 3; i++)
        assert_true(isfinite(w[i]->grad[0]));
    assert_true(isfinite(a->grad[0]));
    ag_ctx_free(c);
    for (int i = 0; i < 3; i++)
        ag_tensor_free(w[i]);
    ag_tensor_free(a);
}

/* Without grads (evaluation) bf16 gives the same numbers, keeping nothing. */
static void no_grad_same_numbers(void **state)
{
    (void)state;
    ag_tensor *x = randt(81, AG_SHAPE(2, 40, 3 * 16)), *w = randt(82, AG_SHAPE(10, 16));
    float *got[2];
    for (int grad = 0; grad < 2; grad++) {
        ag_ctx *c = ag_ctx_new();
        ag_set_precision(c, AG_BF16);
        ag_set_grad_enabled(c, grad);
        ag_tensor *y = ag_linear(c, ag_attention(c, x, 2, 0.25f, 0.0f, false), w, NULL);
        got[grad] = copy_of(y->data, y->numel);
        ag_ctx_free(c);
    }
    assert_close(got[0], got[1], 2 * 40 * 10, 1e-6);
    free(got[0]), free(got[1]);
    ag_tensor_free(x);
    ag_tensor_free(w);
}

/* Empty sizes under bf16: K = 0 gives zeros (the bias for linear), M = 0 nothing. */
static void empty_sizes(void **state)
{
    (void)state;
    ag_tensor *a = randt(101, AG_SHAPE(3, 0)), *b = randt(102, AG_SHAPE(0, 4));
    ag_tensor *e = randt(103, AG_SHAPE(0, 5)), *w = randt(104, AG_SHAPE(2, 5));
    ag_tensor *bias = randt(105, AG_SHAPE(2));
    ag_ctx *c = ag_ctx_new();
    ag_set_precision(c, AG_BF16);
    ag_tensor *y = ag_matmul(c, a, b);
    assert_shape(y, 3, 4);
    for (int i = 0; i < 12; i++)
        assert_true(y->data[i] == 0.0f);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    ag_tensor *z = ag_linear(c, e, w, bias);
    assert_shape(z, 0, 2);
    ag_tensor *l = ag_linear(c, a, ag_zeros(c, AG_SHAPE(2, 0)), bias);
    assert_shape(l, 3, 2);
    for (int i = 0; i < 6; i++)
        assert_true(l->data[i] == bias->data[i % 2]);
    ag_ctx_free(c);
    ag_tensor *ts[] = {a, b, e, w, bias};
    free_all(ts, 5);
}

/* The same bits on 1 and 2 threads: a linear over a (B, T, 3C) attention
 * step, forward and grads, in bf16. */
static void same_bits_on_threads(void **state)
{
    (void)state;
    ag_tensor *x = randt(91, AG_SHAPE(4, 70, 3 * 32)), *w = randt(92, AG_SHAPE(48, 32));
    float *got[2][3];
    int saved = ag_get_num_threads();
    for (int run = 0; run < 2; run++) {
        ag_set_num_threads(run + 1);
        ag_ctx *c = ag_ctx_new();
        ag_ctx_manual_seed(c, 3);
        ag_set_precision(c, AG_BF16);
        ag_zero_grad(x);
        ag_zero_grad(w);
        ag_tensor *y = ag_linear(c, ag_attention(c, x, 4, 0.3f, 0.1f, true), w, NULL);
        assert_true(ag_backward(c, weighted_sum(c, y)));
        got[run][0] = copy_of(y->data, y->numel);
        got[run][1] = copy_of(x->grad, x->numel);
        got[run][2] = copy_of(w->grad, w->numel);
        ag_ctx_free(c);
    }
    ag_set_num_threads(saved);
    assert_memory_equal(got[0][0], got[1][0], 4 * 70 * 48 * sizeof(float));
    assert_memory_equal(got[0][1], got[1][1], (size_t)x->numel * sizeof(float));
    assert_memory_equal(got[0][2], got[1][2], (size_t)w->numel * sizeof(float));
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++)
            free(got[r][i]);
    ag_tensor_free(x);
    ag_tensor_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(setting_and_names),
        cmocka_unit_test(products_match_hand_and_bound),
        cmocka_unit_test(attention_qkv_matches_hand_and_bound),
        cmocka_unit_test(packed_attention),
        cmocka_unit_test(precision_saved_per_op),
        cmocka_unit_test(fp32_default_unchanged),
        cmocka_unit_test(saved_in_bf16),
        cmocka_unit_test(no_grad_same_numbers),
        cmocka_unit_test(same_bits_on_threads),
        cmocka_unit_test(empty_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
