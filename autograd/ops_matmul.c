/* ops_matmul.c - batched matmul with broadcast batch dims.
 *   matmul:    (..., M, K) @ (..., K, N)   -> (..., M, N)
 *   matmul_nt: (..., M, K) @ (..., N, K)^T -> (..., M, N)
 * backward:    dA = dC @ op(B)^T,  dB = A^T @ dC (nt: dC^T @ A),
 * summed over the batches an input was broadcast across.
 * Recorded under AG_BF16 (ag_set_precision), all three products run through
 * ag_gemm_bf16, and an input backward reads is kept as a bf16 copy unless
 * its FP32 data stays anyway (precision.h): the op then does not read it. */
#include "precision.h"

#include <omp.h>

typedef struct {
    int64_t nb;                    /* batches of the output */
    int64_t *oa, *ob;              /* element offset of each batch's A and B */
    bool a_bcast, b_bcast;         /* an input's batch is shared by several outputs */
    bool fold;                     /* A's batches fold into M: B is one matrix */
    bool nt;                       /* B is used transposed (matmul_nt, linear) */
    bool bf16;                     /* recorded under AG_BF16: products in bf16 */
    ag_operand ad, bd;             /* bf16: what backward reads for A and B */
} plan;

/* Offsets of t's matrices for each output batch, t broadcast over (nbd, bshape). */
static bool offsets(ag_ctx *c, const ag_tensor *t, int nbd, const int64_t *bshape, int64_t nb,
                    int64_t **offs)
{
    int tb = t->ndim - 2;
    /* own: t's batch count, kept apart from s because mat may be 0 (M or K empty) */
    int64_t mat = t->shape[t->ndim - 2] * t->shape[t->ndim - 1], st[AG_MAX_DIMS], s = mat, own = 1;
    for (int i = nbd - 1; i >= 0; i--) {
        int j = i - (nbd - tb);
        st[i] = (j < 0 || t->shape[j] == 1) ? 0 : s;
        if (j >= 0) {
            s *= t->shape[j];
            own *= t->shape[j];
        }
    }
    int64_t *o = ag_ctx_alloc(c, (size_t)(nb ? nb : 1) * sizeof *o);
    for (int64_t b = 0; b < nb; b++) {
        int64_t q = b, off = 0;
        for (int i = nbd - 1; i >= 0; i--) {
            off += (q % bshape[i]) * st[i];
            q /= bshape[i];
        }
        o[b] = off;
    }
    *offs = o;
    return own < nb; /* fewer own batches than outputs: broadcast */
}

/* Runs C_b = alpha op(A_b) op(B_b) + beta C_b for each batch. `disjoint` says
 * the C_b never overlap, so batches may run on different threads. */
static void batched(int64_t nb, const int64_t *oa, const int64_t *ob, const int64_t *oc,
                    bool disjoint, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                    int64_t ldc)
{
    /* many small products: one per thread beats splitting each */
    int parts = ag_parts_past(nb * M * N * K, AG_GEMM_MIN);
    int nt = disjoint && nb >= 2 * parts && M * N * K < 512 * 512 * 512 ? ag_team(parts) : 1;
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
#pragma omp for schedule(dynamic) nowait
            for (int64_t b = 0; b < nb; b++)
                ag_gemm_serial(ta, tb, M, N, K, 1.0f, A + oa[b], lda, B + ob[b], ldb, beta,
                               C + oc[b], ldc);
        }
        ag_region_end(&r, nt);
        return;
    }
    for (int64_t b = 0; b < nb; b++)
        ag_gemm(ta, tb, M, N, K, 1.0f, A + oa[b], lda, B + ob[b], ldb, beta, C + oc[b], ldc);
}

/* batched's bf16 products, the operands FP32 or bf16 copies */
static void batched16(int64_t nb, const int64_t *oa, const int64_t *ob, const int64_t *oc,
                      bool disjoint, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                      ag_operand A, int64_t lda, ag_operand B, int64_t ldb, float beta, float *C,
                      int64_t ldc)
{
    int parts = ag_parts_past(nb * M * N * K, AG_GEMM_MIN);
    int nt = disjoint && nb >= 2 * parts && M * N * K < 512 * 512 * 512 ? ag_team(parts) : 1;
    if (nt > 1) {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(nt)
        {
            ag_region_enter(&r);
#pragma omp for schedule(dynamic) nowait
            for (int64_t b = 0; b < nb; b++) {
                ag_operand a = ag_operand_at(A, oa[b]), bb = ag_operand_at(B, ob[b]);
                ag_gemm_bf16_serial(ta, tb, M, N, K, 1.0f, a.p, a.h, lda, bb.p, bb.h, ldb, beta,
                                    C + oc[b], ldc);
            }
        }
        ag_region_end(&r, nt);
        return;
    }
    for (int64_t b = 0; b < nb; b++) {
        ag_operand a = ag_operand_at(A, oa[b]), bb = ag_operand_at(B, ob[b]);
        ag_gemm_bf16(ta, tb, M, N, K, 1.0f, a.p, a.h, lda, bb.p, bb.h, ldb, beta, C + oc[b], ldc);
    }
}

static int64_t *seq_offsets(ag_ctx *c, int64_t nb, int64_t step)
{
    int64_t *o = ag_ctx_alloc(c, (size_t)(nb ? nb : 1) * sizeof *o);
    for (int64_t b = 0; b < nb; b++)
        o[b] = b * step;
    return o;
}

/* product_grads' products in bf16: dC rounded as it is read, A and B as
 * the forward kept them (bf16 copies or FP32 data). */
static void product_grads16(const plan *p, const float *g, const int64_t *oc, int64_t M,
                            int64_t N, int64_t K, float *ga, float beta_a, float *gb, float beta_b)
{
    bool nt = p->nt;
    ag_operand A = p->ad, B = p->bd, G = {g, false};
    if (p->fold) {
        int64_t R = p->nb * M;
        if (ga) /* (R, N) @ op(B)^T -> (R, K) */
            ag_gemm_bf16(false, !nt, R, K, N, 1.0f, g, false, N, B.p, B.h, nt ? K : N, beta_a, ga,
                         K);
        if (gb) {
            if (nt) /* dB (N, K) += dC^T (N, R) @ A (R, K) */
                ag_gemm_bf16(true, false, N, K, R, 1.0f, g, false, N, A.p, A.h, K, beta_b, gb, K);
            else    /* dB (K, N) += A^T (K, R) @ dC (R, N) */
                ag_gemm_bf16(true, false, K, N, R, 1.0f, A.p, A.h, K, g, false, N, beta_b, gb, N);
        }
        return;
    }
    if (ga)
        batched16(p->nb, oc, p->ob, p->oa, !p->a_bcast, false, !nt, M, K, N, G, N, B, nt ? K : N,
                  beta_a, ga, K);
    if (gb) {
        if (nt)
            batched16(p->nb, oc, p->oa, p->ob, !p->b_bcast, true, false, N, K, M, G, N, A, K,
                      beta_b, gb, K);
        else
            batched16(p->nb, p->oa, oc, p->ob, !p->b_bcast, true, false, K, N, M, A, K, G, N,
                      beta_b, gb, N);
    }
}

/* The products' grads, and with bias (linear's), the bias's. */
static void product_grads(ag_ctx *ctx, ag_tensor *out, ag_tensor *bias)
{
    ag_tensor *a = ag_input(out, 0), *b = ag_input(out, 1);
    const plan *p = ag_saved(out);
    bool nt = p->nt;
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t N = out->shape[out->ndim - 1];
    bool overwrite_a, overwrite_b;
    float *ga = ag_grad_buf(ctx, a, &overwrite_a), *gb = ag_grad_buf(ctx, b, &overwrite_b);
    const float *g = out->grad;
    int64_t *oc = seq_offsets(ctx, p->nb, M * N);
    /* A grad to overwrite is written with beta 0 where one GEMM covers each
     * of its elements once; where broadcast batches add up, it is zeroed first. */
    if (overwrite_a && !p->fold && p->a_bcast)
        memset(ga, 0, (size_t)a->numel * sizeof *ga);
    if (overwrite_b && !p->fold && p->b_bcast)
        memset(gb, 0, (size_t)b->numel * sizeof *gb);
    if (bias) { /* column sums of the output grad */
        bool overwrite_c;
        float *gc = ag_grad_buf(ctx, bias, &overwrite_c);
        if (gc)
            ag_accum_reduce(gc, bias, g, out, 1.0f, overwrite_c);
    }
    float beta_a = overwrite_a && (p->fold || !p->a_bcast) ? 0.0f : 1.0f;
    float beta_b = overwrite_b && (p->fold || !p->b_bcast) ? 0.0f : 1.0f;
    if (p->bf16) {
        product_grads16(p, g, oc, M, N, K, ga, beta_a, gb, beta_b);
        return;
    }

    if (p->fold) {
        int64_t R = p->nb * M; /* all of A's rows at once */
        if (ga) /* (R, N) @ op(B)^T -> (R, K) */
            ag_gemm(false, !nt, R, K, N, 1.0f, g, N, b->data, nt ? K : N, beta_a, ga, K);
        if (gb) {
            if (nt) /* dB (N, K) += dC^T (N, R) @ A (R, K) */
                ag_gemm(true, false, N, K, R, 1.0f, g, N, a->data, K, beta_b, gb, K);
            else    /* dB (K, N) += A^T (K, R) @ dC (R, N) */
                ag_gemm(true, false, K, N, R, 1.0f, a->data, K, g, N, beta_b, gb, N);
        }
        return;
    }
    if (ga) /* dA_b (M, K) += dC_b (M, N) @ op(B_b)^T */
        batched(p->nb, oc, p->ob, p->oa, !p->a_bcast, false, !nt, M, K, N, g, N, b->data,
                nt ? K : N, beta_a, ga, K);
    if (gb) {
        if (nt) /* dB_b (N, K) += dC_b^T (N, M) @ A_b (M, K) */
            batched(p->nb, oc, p->oa, p->ob, !p->b_bcast, true, false, N, K, M, g, N, a->data, K,
                    beta_b, gb, K);
        else    /* dB_b (K, N) += A_b^T (K, M) @ dC_b (M, N) */
            batched(p->nb, p->oa, oc, p->ob, !p->b_bcast, true, false, K, N, M, a->data, K, g, N,
                    beta_b, gb, N);
    }
}

static void matmul_backward(ag_ctx *ctx, ag_tensor *out) { product_grads(ctx, out, NULL); }

/* linear's inputs: x, w, and the bias when it has one */
static void linear_backward(ag_ctx *ctx, ag_tensor *out)
{
    product_grads(ctx, out, ag_num_inputs(out) > 2 ? ag_input(out, 2) : NULL);
}

static const ag_op matmul_op = {"matmul", matmul_backward, AG_IN(0) | AG_IN(1)};
static const ag_op matmul_nt_op = {"matmul_nt", matmul_backward, AG_IN(0) | AG_IN(1)};
static const ag_op linear_op = {"linear", linear_backward, AG_IN(0) | AG_IN(1)};

/* The same recorded under AG_BF16, by which inputs backward reads as FP32
 * (bit 0: A, bit 1: B); the others it reads from their bf16 copies. */
#define BF16_OPS(name, backward)                                                                 \
    {{name, backward, AG_NO_DATA}, {name, backward, AG_IN(0)}, {name, backward, AG_IN(1)},     \
     {name, backward, AG_IN(0) | AG_IN(1)}}
static const ag_op matmul16_ops[4] = BF16_OPS("matmul", matmul_backward);
static const ag_op matmul_nt16_ops[4] = BF16_OPS("matmul_nt", matmul_backward);
static const ag_op linear16_ops[4] = BF16_OPS("linear", linear_backward);

/* a @ op(b) (+ bias on every row, for linear), recorded as op. */
static ag_tensor *matmul(ag_ctx *c, const ag_op *op, ag_tensor *a, ag_tensor *b, ag_tensor *bias,
                         bool nt)
{
    const char *name = op->name;
    ag_tensor *in[3] = {a, b, bias};
    int nin = bias ? 3 : 2;
    if (!ag_check_inputs(name, in, nin))
        return NULL;
    char sa[128], sb[128];
    if (a->ndim < 2 || b->ndim < 2) {
        ag_error("%s: needs at least 2-D inputs, got %s and %s", name, ag_shape_str(a, sa, sizeof sa),
                 ag_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t Kb = b->shape[b->ndim - (nt ? 1 : 2)], N = b->shape[b->ndim - (nt ? 2 : 1)];
    /* the batch dims broadcast like elementwise shapes (stack copies: public part only) */
    ag_tensor ba = *a, bb = *b;
    ba.ndim -= 2;
    bb.ndim -= 2;
    int nbd;
    int64_t shape[AG_MAX_DIMS];
    if (K != Kb || !ag_broadcast_shape(&ba, &bb, &nbd, shape)) {
        ag_error("%s: shapes %s and %s do not match (%s)", name, ag_shape_str(a, sa, sizeof sa),
                 ag_shape_str(b, sb, sizeof sb),
                 K != Kb ? "inner dims differ" : "batch dims do not broadcast");
        return NULL;
    }
    int64_t nb = ag_shape_numel(nbd, shape);
    shape[nbd] = M;
    shape[nbd + 1] = N;
    /* bf16: the operands, and the op record that says which of them backward reads as FP32 */
    bool bf16 = ag_bf16_on(c);
    ag_operand A = {a->data, false}, B = {b->data, false};
    if (bf16) {
        bool record = ag_grad_enabled(c) && (ag_requires_grad(a) || ag_requires_grad(b) ||
                                             (bias && ag_requires_grad(bias)));
        A = ag_bf16_operand(c, a, record);
        B = ag_bf16_operand(c, b, record);
        const ag_op *ops16 = op == &linear_op ? linear16_ops
                             : op == &matmul_nt_op ? matmul_nt16_ops : matmul16_ops;
        op = &ops16[(A.h ? 0 : 1) | (B.h ? 0 : 2)];
    }
    ag_tensor *out = ag_result(c, op, in, nin, nbd + 2, shape);
    if (!out)
        return NULL;
    plan *p = ag_ctx_alloc(c, sizeof *p);
    p->nb = nb;
    p->a_bcast = offsets(c, a, nbd, shape, nb, &p->oa);
    p->b_bcast = offsets(c, b, nbd, shape, nb, &p->ob);
    p->fold = !p->a_bcast && b->numel == K * N;
    p->nt = nt;
    p->bf16 = bf16;
    p->ad = A;
    p->bd = B;
    ag_node_of(out)->saved = p;
    float beta = 0.0f;
    if (bias) { /* rows start as the bias and the product adds to them: no second pass */
        int64_t rows = nb * M;
        AG_PARALLEL(rows * N, ,
        for (int64_t r = 0; r < rows; r++)
            memcpy(out->data + r * N, bias->data, (size_t)N * sizeof(float));
        );
        beta = 1.0f;
    }
    if (bf16 && p->fold)
        ag_gemm_bf16(false, nt, nb * M, N, K, 1.0f, A.p, A.h, K, B.p, B.h, nt ? K : N, beta,
                     out->data, N);
    else if (bf16)
        batched16(nb, p->oa, p->ob, seq_offsets(c, nb, M * N), true, false, nt, M, N, K, A, K, B,
                  nt ? K : N, beta, out->data, N);
    else if (p->fold)
        ag_gemm(false, nt, nb * M, N, K, 1.0f, a->data, K, b->data, nt ? K : N, beta, out->data, N);
    else
        batched(nb, p->oa, p->ob, seq_offsets(c, nb, M * N), true, false, nt, M, N, K, a->data, K,
                b->data, nt ? K : N, beta, out->data, N);
    return out;
}

ag_tensor *ag_matmul(ag_ctx *c, ag_tensor *a, ag_tensor *b)
{
    return matmul(c, &matmul_op, a, b, NULL, false);
}

ag_tensor *ag_matmul_nt(ag_ctx *c, ag_tensor *a, ag_tensor *b)
{
    return matmul(c, &matmul_nt_op, a, b, NULL, true);
}

ag_tensor *ag_linear(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *bias)
{
    ag_tensor *in[3] = {x, w, bias};
    if (!ag_check_inputs("linear", in, bias ? 3 : 2))
        return NULL;
    char sw[128], sbias[128];
    if (w->ndim != 2 || (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))) {
        ag_error("linear: weight %s and bias %s; want (out, in) and (out)",
                 ag_shape_str(w, sw, sizeof sw), bias ? ag_shape_str(bias, sbias, sizeof sbias) : "none");
        return NULL;
    }
    if (x->ndim == 0) {
        char sx[128];
        ag_error("linear: input %s has no feature dim; want (..., in) with in = %lld",
                 ag_shape_str(x, sx, sizeof sx), (long long)w->shape[1]);
        return NULL;
    }
    if (x->shape[x->ndim - 1] != w->shape[1]) {
        char sx[128];
        ag_error("linear: input %s has %lld features, weight %s takes %lld",
                 ag_shape_str(x, sx, sizeof sx), (long long)x->shape[x->ndim - 1],
                 ag_shape_str(w, sw, sizeof sw), (long long)w->shape[1]);
        return NULL;
    }
    if (x->ndim > 1)
        return matmul(c, &linear_op, x, w, bias, true);
    /* (in) as torch's F.linear takes it: a one-row batch, viewed back to (out) */
    ag_tensor *row = ag_reshape(c, x, AG_SHAPE(1, x->shape[0]));
    ag_tensor *y = matmul(c, &linear_op, row, w, bias, true);
    ag_tensor *out = y ? ag_reshape(c, y, AG_SHAPE(w->shape[0])) : NULL;
    ag_release(c, row);
    ag_release(c, y);
    return out;
}
