/* test_matmul.c - ag_matmul and ag_matmul_nt, and the GEMM kernels under them.
 *
 * Ops: 2-D non-square, batched 3-D and 4-D, broadcast batch dims
 * ((2,1,M,K) @ (3,K,N), (B,T,C) @ (C,N) which folds into one GEMM, 2-D @
 * batched), empty dims; forward values by hand for small cases and against a
 * double-precision reference loop otherwise; gradcheck of both inputs for
 * every case, the broadcast inputs' grads (sums over the broadcast batches)
 * checked directly, and grads accumulating across backward calls.
 *
 * Kernels: every path to a product (ag_gemm_builtin, ag_gemm_serial and
 * ag_gemm as the process runs them; the BLAS and the built-in forced through
 * ag_set_matmul_backend; each ISA kernel the CPU runs, avx512, avx2 and
 * generic, on one thread and on three, the best also on four, so that the
 * threads' rectangles split rows, columns and both) against ag_gemm_naive over all four
 * transpose combinations, sizes of 1, primes, sizes either side of each
 * kernel's register tile (14 x 32, 6 x 16), of the 384-deep blocks and of
 * the column blocks, the small products read in place, alpha != 1, beta 0
 * (over NaN garbage), 1 and 0.5, and submatrices whose leading dimensions
 * exceed their widths (the padding must be neither read nor written). Every
 * shape tools/bench_matmul times: the BLAS and each kernel agree element by
 * element and with sampled double-precision dot products. Backend names. */
#include "test_util.h"

#include "gemm_kernel.h"
#include "internal.h"

#include <stdlib.h>

/* ------------------------------------------------------------ reference */

/* Offset of t's matrix for output batch b (row-major over out's batch dims),
 * t's batch dims aligned to the right and broadcast where they are 1. */
static int64_t batch_offset(const ag_tensor *t, const ag_tensor *out, int64_t b)
{
    int nbd = out->ndim - 2, tbd = t->ndim - 2;
    int64_t off = 0, stride = t->shape[t->ndim - 2] * t->shape[t->ndim - 1];
    for (int i = nbd - 1; i >= 0; i--) {
        int64_t k = b % out->shape[i];
        b /= out->shape[i];
        int j = i - (nbd - tbd);
        if (j < 0)
            continue;
        if (t->shape[j] != 1)
            off += k * stride;
        stride *= t->shape[j];
    }
    return off;
}

/* want = a @ b (nt: a @ b^T) over out's shape, by definition, in double */
static void ref_matmul(const ag_tensor *a, const ag_tensor *b, bool nt, const ag_tensor *out,
                       float *want)
{
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t N = out->shape[out->ndim - 1], nb = M * N != 0 ? out->numel / (M * N) : 0;
    for (int64_t q = 0; q < nb; q++) {
        const float *A = a->data + batch_offset(a, out, q);
        const float *B = b->data + batch_offset(b, out, q);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)A[i * K + k] * (nt ? B[j * K + k] : B[k * N + j]);
                want[(q * M + i) * N + j] = (float)s;
            }
    }
}

static ag_tensor *f_matmul(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_matmul(c, in[0], in[1]));
}

static ag_tensor *f_matmul_nt(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_matmul_nt(c, in[0], in[1]));
}

/* Random a and b of the given shapes: the op's forward matches the reference,
 * its output has out_shape, and gradcheck passes for both inputs. */
static void check_case(bool nt, int nda, const int64_t *sa, int ndb, const int64_t *sb, int ndo,
                       const int64_t *so)
{
    ag_tensor *a = rand_leaf(11 + (uint64_t)nda, 1.0f, nda, sa);
    ag_tensor *b = rand_leaf(23 + (uint64_t)ndb, 1.0f, ndb, sb);
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = nt ? ag_matmul_nt(c, a, b) : ag_matmul(c, a, b);
    assert_non_null(y);
    assert_int_equal(y->ndim, ndo);
    for (int i = 0; i < ndo; i++)
        assert_int_equal(y->shape[i], so[i]);
    float *want = malloc((size_t)(y->numel ? y->numel : 1) * sizeof *want);
    ref_matmul(a, b, nt, y, want);
    assert_close(y->data, want, y->numel, 1e-5);
    free(want);
    ag_ctx_free(c);

    ag_tensor *in[2] = {a, b};
    assert_gradcheck(nt ? f_matmul_nt : f_matmul, in, 2, NULL);
    free_all(in, 2);
}

#define SHP(...) AG_SHAPE(__VA_ARGS__)

/* ------------------------------------------------------------ ops: by hand */

/* A (2,3) and B (3,4) used by the hand-computed tests, and their product:
 *   row 0: [1*1+2*0+3*3, 1*0+2*1+3*-2, 1*-1+2*2+3*1, 1*2+2*-1+3*0] = [10, -4, 6, 0]
 *   row 1: [4*1+5*0+6*3, 4*0+5*1+6*-2, 4*-1+5*2+6*1, 4*2+5*-1+6*0] = [22, -7, 12, 3] */
static const float hand_a[6] = {1, 2, 3, 4, 5, 6};
static const float hand_b[12] = {1, 0, -1, 2, 0, 1, 2, -1, 3, -2, 1, 0};
static const float hand_bt[12] = {1, 0, 3, 0, 1, -2, -1, 2, 1, 2, -1, 0}; /* hand_b^T (4,3) */
static const float hand_c[8] = {10, -4, 6, 0, 22, -7, 12, 3};

static void test_matmul_2d_by_hand(void **state)
{
    (void)state;
    ag_tensor *a = leaf(hand_a, SHP(2, 3)), *b = leaf(hand_b, SHP(3, 4));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_matmul(c, a, b);
    assert_shape(y, 2, 4);
    assert_close(y->data, hand_c, 8, 0.0);

    /* d sum(y) / dA[i,k] = sum_j B[k,j]: rows of B sum to 2, 2, 2;
     * d sum(y) / dB[k,j] = sum_i A[i,k]: 5, 7, 9 down each row of B */
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    const float ga[6] = {2, 2, 2, 2, 2, 2};
    const float gb[12] = {5, 5, 5, 5, 7, 7, 7, 7, 9, 9, 9, 9};
    assert_close(a->grad, ga, 6, 0.0);
    assert_close(b->grad, gb, 12, 0.0);
    ag_ctx_free(c);

    ag_tensor *in[2] = {a, b};
    assert_gradcheck(f_matmul, in, 2, NULL);
    free_all(in, 2);
}

static void test_matmul_nt_2d_by_hand(void **state)
{
    (void)state;
    ag_tensor *a = leaf(hand_a, SHP(2, 3)), *bt = leaf(hand_bt, SHP(4, 3));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_matmul_nt(c, a, bt);
    assert_shape(y, 2, 4);
    assert_close(y->data, hand_c, 8, 0.0);

    /* d sum(y) / dBt[j,k] = sum_i A[i,k] = 5, 7, 9 along each row of Bt */
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    const float ga[6] = {2, 2, 2, 2, 2, 2};
    const float gbt[12] = {5, 7, 9, 5, 7, 9, 5, 7, 9, 5, 7, 9};
    assert_close(a->grad, ga, 6, 0.0);
    assert_close(bt->grad, gbt, 12, 0.0);
    ag_ctx_free(c);

    ag_tensor *in[2] = {a, bt};
    assert_gradcheck(f_matmul_nt, in, 2, NULL);
    free_all(in, 2);
}

static void test_matmul_batched_3d_by_hand(void **state)
{
    (void)state;
    /* batch 0: [[1,2],[3,4]] @ I = [[1,2],[3,4]]
     * batch 1: [[0,1],[-1,0]] @ [[2,3],[4,5]] = [[4,5],[-2,-3]] */
    const float da[8] = {1, 2, 3, 4, 0, 1, -1, 0};
    const float db[8] = {1, 0, 0, 1, 2, 3, 4, 5};
    const float want[8] = {1, 2, 3, 4, 4, 5, -2, -3};
    ag_tensor *a = leaf(da, SHP(2, 2, 2)), *b = leaf(db, SHP(2, 2, 2));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_matmul(c, a, b);
    assert_shape(y, 2, 2, 2);
    assert_close(y->data, want, 8, 0.0);
    ag_ctx_free(c);
    ag_tensor *in[2] = {a, b};
    assert_gradcheck(f_matmul, in, 2, NULL);
    free_all(in, 2);
}

/* (2,1,1,2) @ (3,2,1) -> (2,3,1,1):
 *   a0 = [1,2] against b = [1,1]^T, [1,0]^T, [0,2]^T: 3, 1, 4
 *   a1 = [3,4]:                                       7, 3, 8
 * With loss sum(y): dA_i = sum_j B_j^T summed over the 3 b batches
 * = [1+1+0, 1+0+2] = [2, 3] for both i; dB_j = sum over the 2 a batches
 * = [1+3, 2+4]^T = [4, 6]^T for every j. */
static void test_matmul_broadcast_by_hand_grads_sum_over_batches(void **state)
{
    (void)state;
    const float da[4] = {1, 2, 3, 4};
    const float db[6] = {1, 1, 1, 0, 0, 2};
    ag_tensor *a = leaf(da, SHP(2, 1, 1, 2)), *b = leaf(db, SHP(3, 2, 1));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_matmul(c, a, b);
    assert_shape(y, 2, 3, 1, 1);
    const float want[6] = {3, 1, 4, 7, 3, 8};
    assert_close(y->data, want, 6, 0.0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    const float ga[4] = {2, 3, 2, 3};
    const float gb[6] = {4, 6, 4, 6, 4, 6};
    assert_close(a->grad, ga, 4, 0.0);
    assert_close(b->grad, gb, 6, 0.0);
    ag_ctx_free(c);
    ag_tensor *in[2] = {a, b};
    assert_gradcheck(f_matmul, in, 2, NULL);
    free_all(in, 2);
}

/* matmul_nt(a, b) is matmul(a, b^T), batch dims broadcast included. */
static void test_matmul_nt_equals_matmul_of_transpose(void **state)
{
    (void)state;
    ag_tensor *a = rand_leaf(1, 1.0f, SHP(2, 1, 5, 7));
    ag_tensor *b = rand_leaf(2, 1.0f, SHP(3, 4, 7));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_matmul_nt(c, a, b);
    ag_tensor *z = ag_matmul(c, a, ag_transpose(c, b, -1, -2));
    assert_shape(y, 2, 3, 5, 4);
    assert_shape(z, 2, 3, 5, 4);
    assert_close(y->data, z->data, y->numel, 1e-6);
    ag_ctx_free(c);
    ag_tensor *in[2] = {a, b};
    free_all(in, 2);
}


/* linear(x, w, b) = x @ w^T + b in one op: hand-worked values, the same
 * values and grads as matmul_nt + add, a gradcheck, and shape errors. */
static ag_tensor *f_linear(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)u;
    return weighted_sum(c, ag_linear(c, in[0], in[1], n > 2 ? in[2] : NULL));
}

static void test_linear(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    /* x (1, 2) = [1, 2]; w (3, 2) rows [1, 0], [0, 1], [1, 1]; b = [10, 20, 30]
     * -> [1 + 10, 2 + 20, 3 + 30] */
    ag_tensor *x1 = ag_from_data(c, (float[]){1, 2}, SHP(1, 2));
    ag_tensor *w1 = ag_from_data(c, (float[]){1, 0, 0, 1, 1, 1}, SHP(3, 2));
    ag_tensor *b1 = ag_from_data(c, (float[]){10, 20, 30}, SHP(3));
    ag_tensor *y1 = ag_linear(c, x1, w1, b1);
    assert_shape(y1, 1, 3);
    assert_close(y1->data, ((float[]){11, 22, 33}), 3, 0);

    ag_tensor *x = rand_leaf(3, 1.0f, SHP(2, 5, 7));
    ag_tensor *w = rand_leaf(4, 1.0f, SHP(4, 7));
    ag_tensor *b = rand_leaf(5, 1.0f, SHP(4));
    float *want[3];
    ag_tensor *in[3] = {x, w, b};
    for (int pass = 0; pass < 2; pass++) {
        ag_ctx_reset(c);
        for (int i = 0; i < 3; i++)
            ag_zero_grad(in[i]);
        ag_tensor *y = pass ? ag_linear(c, x, w, b) : ag_add(c, ag_matmul_nt(c, x, w), b);
        assert_shape(y, 2, 5, 4);
        assert_true(ag_backward(c, weighted_sum(c, y)));
        for (int i = 0; i < 3; i++) {
            if (!pass) {
                want[i] = malloc(sizeof(float) * (size_t)in[i]->numel);
                memcpy(want[i], in[i]->grad, sizeof(float) * (size_t)in[i]->numel);
            } else {
                assert_close(in[i]->grad, want[i], in[i]->numel, 1e-5);
                free(want[i]);
            }
        }
    }
    assert_gradcheck(f_linear, in, 3, NULL);
    assert_gradcheck(f_linear, in, 2, NULL); /* without a bias */
    assert_ag_error(ag_linear(c, x, w, ag_zeros(c, SHP(5))), "linear", "(4, 7)", "(5)");
    assert_ag_error(ag_linear(c, x, ag_zeros(c, SHP(2, 4, 7)), NULL), "linear", "(2, 4, 7)");
    assert_ag_error(ag_linear(c, ag_scalar(c, 1.0f), w, b), "linear", "()", "no feature dim");
    ag_ctx_free(c);
    free_all(in, 3);
}

/* A 1-D x, as torch's F.linear takes it: (in) -> (out), the same values and
 * grads as the one-row batch (1, in) -> (1, out), and a gradcheck. */
static void test_linear_1d_input(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    /* the hand-worked case of test_linear without the batch dim */
    ag_tensor *y1 = ag_linear(c, ag_from_data(c, (float[]){1, 2}, SHP(2)),
                              ag_from_data(c, (float[]){1, 0, 0, 1, 1, 1}, SHP(3, 2)),
                              ag_from_data(c, (float[]){10, 20, 30}, SHP(3)));
    assert_shape(y1, 3);
    assert_close(y1->data, ((float[]){11, 22, 33}), 3, 0);

    ag_tensor *x = rand_leaf(6, 1.0f, SHP(7));
    ag_tensor *w = rand_leaf(7, 1.0f, SHP(4, 7));
    ag_tensor *b = rand_leaf(8, 1.0f, SHP(4));
    ag_tensor *in[3] = {x, w, b};
    float want_y[4], *want_g[3];
    for (int pass = 0; pass < 2; pass++) {
        ag_ctx_reset(c);
        for (int i = 0; i < 3; i++)
            ag_zero_grad(in[i]);
        ag_tensor *y = pass ? ag_linear(c, x, w, b)
                            : ag_reshape(c, ag_linear(c, ag_reshape(c, x, SHP(1, 7)), w, b), SHP(4));
        assert_shape(y, 4);
        assert_true(ag_backward(c, weighted_sum(c, y)));
        if (!pass)
            memcpy(want_y, y->data, sizeof want_y);
        else
            assert_close(y->data, want_y, 4, 0.0);
        for (int i = 0; i < 3; i++) {
            if (!pass) {
                want_g[i] = malloc(sizeof(float) * (size_t)in[i]->numel);
                memcpy(want_g[i], in[i]->grad, sizeof(float) * (size_t)in[i]->numel);
            } else {
                assert_close(in[i]->grad, want_g[i], in[i]->numel, 0.0);
                free(want_g[i]);
            }
        }
    }
    assert_gradcheck(f_linear, in, 3, NULL);
    assert_ag_error(ag_linear(c, ag_zeros(c, SHP(6)), w, b), "linear", "(6)", "(4, 7)");
    ag_ctx_free(c);
    free_all(in, 3);
}

/* ------------------------------------------------------------ ops: shapes */

static void test_matmul_2d_non_square(void **state)
{
    (void)state;
    check_case(false, SHP(5, 7), SHP(7, 3), SHP(5, 3));
    check_case(true, SHP(5, 7), SHP(3, 7), SHP(5, 3));
    check_case(false, SHP(1, 9), SHP(9, 1), SHP(1, 1)); /* a dot product */
    check_case(false, SHP(6, 1), SHP(1, 4), SHP(6, 4)); /* an outer product */
}

static void test_matmul_batched_3d(void **state)
{
    (void)state;
    /* 6 batches: enough for the one-batch-per-thread path on 2 threads */
    check_case(false, SHP(6, 3, 4), SHP(6, 4, 5), SHP(6, 3, 5));
    check_case(true, SHP(6, 3, 4), SHP(6, 5, 4), SHP(6, 3, 5));
    check_case(false, SHP(1, 3, 4), SHP(1, 4, 2), SHP(1, 3, 2));
}

static void test_matmul_batched_4d(void **state)
{
    (void)state;
    check_case(false, SHP(2, 3, 4, 5), SHP(2, 3, 5, 3), SHP(2, 3, 4, 3));
    check_case(true, SHP(2, 3, 4, 5), SHP(2, 3, 3, 5), SHP(2, 3, 4, 3));
}

static void test_matmul_broadcast_batch_dims(void **state)
{
    (void)state;
    /* (2,1,M,K) @ (3,K,N) -> (2,3,M,N): each input shared by several outputs */
    check_case(false, SHP(2, 1, 3, 4), SHP(3, 4, 5), SHP(2, 3, 3, 5));
    check_case(true, SHP(2, 1, 3, 4), SHP(3, 5, 4), SHP(2, 3, 3, 5));
    /* and the other way round, with a size-1 dim in b */
    check_case(false, SHP(3, 4, 2), SHP(2, 1, 2, 3), SHP(2, 3, 4, 3));
    /* 1 against N in both positions */
    check_case(false, SHP(1, 3, 2, 4), SHP(2, 1, 4, 3), SHP(2, 3, 2, 3));
}

static void test_matmul_folds_batched_by_2d(void **state)
{
    (void)state;
    /* (B,T,C) @ (C,N): one (B*T, C) @ (C, N) GEMM; Linear's x @ W^T for nt */
    check_case(false, SHP(3, 4, 5), SHP(5, 6), SHP(3, 4, 6));
    check_case(true, SHP(3, 4, 5), SHP(6, 5), SHP(3, 4, 6));
    check_case(false, SHP(2, 2, 3, 4), SHP(4, 2), SHP(2, 2, 3, 2));
    /* a b whose batch dims are all 1 folds too */
    check_case(true, SHP(3, 4, 5), SHP(1, 1, 6, 5), SHP(1, 3, 4, 6));
}

static void test_matmul_2d_by_batched(void **state)
{
    (void)state;
    /* (M,K) @ (B,K,N): a's one matrix is shared by every batch */
    check_case(false, SHP(3, 4), SHP(5, 4, 2), SHP(5, 3, 2));
    check_case(true, SHP(3, 4), SHP(5, 2, 4), SHP(5, 3, 2));
}

/* The folded GEMM and a per-batch loop agree on forward and both grads. */
static void test_matmul_fold_matches_per_batch(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(5, 1.0f, SHP(4, 3, 6)), *w = rand_leaf(6, 1.0f, SHP(6, 5));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_matmul(c, x, w);
    assert_true(ag_backward(c, weighted_sum(c, y)));
    float gx[72], gw[30];
    memcpy(gx, x->grad, sizeof gx);
    memcpy(gw, w->grad, sizeof gw);
    ag_zero_grad(x);
    ag_zero_grad(w);

    /* the same through a (4,1,6,5) copy of w: no fold, per-batch GEMMs */
    ag_tensor *wb = ag_add(c, ag_zeros(c, SHP(4, 1, 6, 5)), w);
    ag_tensor *yb = ag_reshape(c, ag_matmul(c, ag_reshape(c, x, SHP(4, 1, 3, 6)), wb),
                               SHP(4, 3, 5));
    assert_close(yb->data, y->data, y->numel, 1e-5);
    assert_true(ag_backward(c, weighted_sum(c, yb)));
    assert_close(x->grad, gx, 72, 1e-5);
    assert_close(w->grad, gw, 30, 1e-5);
    ag_ctx_free(c);
    ag_tensor *in[2] = {x, w};
    free_all(in, 2);
}

/* Backward adds to grads already there: a second backward over a fresh graph
 * doubles them on every path (folded, batched, broadcast; nt or not). */
static void check_grads_accumulate(bool nt, int nda, const int64_t *sa, int ndb,
                                   const int64_t *sb)
{
    ag_tensor *a = rand_leaf(31, 1.0f, nda, sa), *b = rand_leaf(32, 1.0f, ndb, sb);
    ag_ctx *c = ag_ctx_new();
    float *once[2], *twice[2];
    ag_tensor *in[2] = {a, b};
    for (int pass = 0; pass < 2; pass++) {
        ag_tensor *y = nt ? ag_matmul_nt(c, a, b) : ag_matmul(c, a, b);
        assert_true(ag_backward(c, weighted_sum(c, y)));
        for (int i = 0; i < 2; i++) {
            float **dst = pass ? twice : once;
            dst[i] = malloc((size_t)in[i]->numel * sizeof(float));
            for (int64_t k = 0; k < in[i]->numel; k++)
                dst[i][k] = pass ? in[i]->grad[k] : 2.0f * in[i]->grad[k];
        }
        ag_ctx_reset(c);
    }
    for (int i = 0; i < 2; i++) {
        assert_close(twice[i], once[i], in[i]->numel, 1e-6);
        free(once[i]);
        free(twice[i]);
    }
    ag_ctx_free(c);
    free_all(in, 2);
}

static void test_matmul_grads_accumulate(void **state)
{
    (void)state;
    for (int nt = 0; nt < 2; nt++) {
        check_grads_accumulate(nt, SHP(3, 4, 5), SHP(5, 5));       /* folded */
        check_grads_accumulate(nt, SHP(6, 3, 4), SHP(6, 4, 4));    /* batched */
        check_grads_accumulate(nt, SHP(2, 1, 3, 4), SHP(3, 4, 4)); /* broadcast */
        check_grads_accumulate(nt, SHP(3, 4), SHP(5, 4, 4));       /* 2-D @ batched */
    }
}

/* An empty inner dim gives zeros; an empty outer dim an empty result. */
static void test_matmul_empty_dims(void **state)
{
    (void)state;
    ag_tensor *a = rand_leaf(1, 1.0f, SHP(2, 0)), *b = rand_leaf(2, 1.0f, SHP(0, 3));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_matmul(c, a, b);
    assert_shape(y, 2, 3);
    const float zeros[6] = {0};
    assert_close(y->data, zeros, 6, 0.0);
    assert_true(ag_backward(c, ag_sum_all(c, y)));

    ag_tensor *e = rand_leaf(3, 1.0f, SHP(2, 0, 4)), *f = rand_leaf(4, 1.0f, SHP(4, 3));
    ag_tensor *z = ag_matmul(c, e, f);
    assert_shape(z, 2, 0, 3);
    assert_true(ag_backward(c, ag_sum_all(c, z)));
    assert_close(f->grad, (const float[12]){0}, 12, 0.0);
    ag_ctx_free(c);
    ag_tensor *in[4] = {a, b, e, f};
    free_all(in, 4);
}

static void test_matmul_shape_errors(void **state)
{
    (void)state;
    ag_tensor *a = ag_zeros(NULL, SHP(2, 3)), *b = ag_zeros(NULL, SHP(4, 5));
    ag_tensor *v = ag_zeros(NULL, SHP(3)), *p = ag_zeros(NULL, SHP(2, 3, 4));
    ag_tensor *q = ag_zeros(NULL, SHP(3, 4, 5));
    ag_ctx *c = ag_ctx_new();
    assert_ag_error(assert_null(ag_matmul(c, a, b)), "matmul", "(2, 3)", "(4, 5)", "inner");
    assert_ag_error(assert_null(ag_matmul_nt(c, a, b)), "matmul_nt", "inner");
    assert_ag_error(assert_null(ag_matmul(c, a, v)), "matmul", "2-D");
    assert_ag_error(assert_null(ag_matmul(c, p, q)), "matmul", "(2, 3, 4)", "(3, 4, 5)", "batch");
    ag_ctx_free(c);
    ag_tensor *all[5] = {a, b, v, p, q};
    free_all(all, 5);
}

/* ------------------------------------------------------------ kernels */

typedef void (*gemm_fn)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc);

typedef struct {
    bool ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    int64_t pad; /* leading dims exceed the stored widths by this */
} gemm_case;

/* Every way to a product: the entry points as the process runs them, the
 * BLAS and the built-in forced through ag_set_matmul_backend, and each ISA's
 * kernel this CPU runs (avx2 and generic on an AVX-512 machine too) on one
 * thread and on three, split even when tiny. Filled by kernels_init. */
typedef struct {
    char name[48];
    gemm_fn fn;                 /* an entry point, or NULL: */
    const char *backend;        /*   fn under this forced backend (NULL: as is) */
    const ag_gemm_kernel *k;    /* the kernel on `threads` threads, when fn is NULL */
    int threads;
} gemm_path;

static gemm_path kernels[16];
static size_t nkernels;

static void add_path(gemm_path p)
{
    assert_true(nkernels < sizeof kernels / sizeof *kernels);
    kernels[nkernels++] = p;
}

static void kernels_init(void)
{
    if (nkernels)
        return;
    add_path((gemm_path){"ag_gemm_builtin", ag_gemm_builtin, NULL, NULL, 0});
    add_path((gemm_path){"ag_gemm_serial", ag_gemm_serial, NULL, NULL, 0});
    add_path((gemm_path){"ag_gemm", ag_gemm, NULL, NULL, 0});
    if (ag_set_matmul_backend("blas")) {
        add_path((gemm_path){"ag_gemm (blas forced)", ag_gemm, "blas", NULL, 0});
        add_path((gemm_path){"ag_gemm_serial (blas forced)", ag_gemm_serial, "blas", NULL, 0});
    }
    add_path((gemm_path){"ag_gemm (builtin forced)", ag_gemm, "builtin", NULL, 0});
    assert_true(ag_set_matmul_backend("auto"));
    const char *isas[] = {"avx512", "avx2", "generic"};
    for (size_t i = 0; i < sizeof isas / sizeof *isas; i++) {
        const ag_gemm_kernel *k = ag_gemm_kernel_named(isas[i]);
        if (!k)
            continue;
        gemm_path p = {"", NULL, NULL, k, 1};
        snprintf(p.name, sizeof p.name, "builtin:%s, 1 thread", isas[i]);
        add_path(p);
        p.threads = 3;
        snprintf(p.name, sizeof p.name, "builtin:%s, 3 threads", isas[i]);
        add_path(p);
        if (k == ag_gemm_kernel_best()) { /* 2 x 2 rectangles where both dims have two panels */
            p.threads = 4;
            snprintf(p.name, sizeof p.name, "builtin:%s, 4 threads", isas[i]);
            add_path(p);
        }
    }
}

static void run_path(const gemm_path *p, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc)
{
    if (p->fn) {
        char was[64];
        snprintf(was, sizeof was, "%s", ag_matmul_backend());
        if (p->backend)
            assert_true(ag_set_matmul_backend(p->backend));
        p->fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        assert_true(ag_set_matmul_backend(was));
        return;
    }
    int64_t par_min = ag_gemm_par_min;
    ag_gemm_par_min = 0;
    ag_gemm_blocked(p->k, p->threads, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    ag_gemm_par_min = par_min;
}

#define PAD_SENTINEL 12345.0f

/* rows x cols at leading dim ld; the padding columns hold `pad_value` */
static float *matrix(ag_rng *r, int64_t rows, int64_t cols, int64_t ld, float pad_value)
{
    float *m = malloc((size_t)(rows * ld != 0 ? rows * ld : 1) * sizeof *m);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < ld; j++)
            m[i * ld + j] = j < cols ? 2.0f * ag_rng_uniform(r) - 1.0f : pad_value;
    return m;
}

static void case_str(const gemm_case *g, char *buf, size_t n)
{
    snprintf(buf, n, "ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld", g->ta, g->tb,
             (long long)g->M, (long long)g->N, (long long)g->K, (double)g->alpha,
             (double)g->beta, (long long)g->pad);
}

/* Every kernel against ag_gemm_naive on one case. A's and B's padding is NaN,
 * so reading it shows; C's padding is a sentinel that must survive; with
 * beta 0, C starts as NaN, which must be overwritten, not scaled. */
static void check_gemm(gemm_case g)
{
    ag_rng r = ag_rng_new((uint64_t)(g.M * 1000003 + g.N * 1009 + g.K));
    int64_t ar = g.ta ? g.K : g.M, ac = g.ta ? g.M : g.K;
    int64_t br = g.tb ? g.N : g.K, bc = g.tb ? g.K : g.N;
    int64_t lda = ac + g.pad, ldb = bc + g.pad, ldc = g.N + g.pad;
    /* BLAS wants ld >= 1 even for empty matrices */
    lda = lda ? lda : 1;
    ldb = ldb ? ldb : 1;
    float *A = matrix(&r, ar, ac, lda, NAN), *B = matrix(&r, br, bc, ldb, NAN);
    float *C0 = matrix(&r, g.M, g.N, ldc, PAD_SENTINEL);
    if (g.beta == 0.0f)
        for (int64_t i = 0; i < g.M; i++)
            for (int64_t j = 0; j < g.N; j++)
                C0[i * ldc + j] = NAN;
    size_t bytes = (size_t)(g.M * ldc != 0 ? g.M * ldc : 1) * sizeof(float);
    float *want = malloc(bytes), *got = malloc(bytes);
    memcpy(want, C0, bytes);
    ag_gemm_naive(g.ta, g.tb, g.M, g.N, g.K, g.alpha, A, lda, B, ldb, g.beta, want, ldc);

    kernels_init();
    for (size_t k = 0; k < nkernels; k++) {
        memcpy(got, C0, bytes);
        run_path(&kernels[k], g.ta, g.tb, g.M, g.N, g.K, g.alpha, A, lda, B, ldb, g.beta, got,
                 ldc);
        for (int64_t i = 0; i < g.M; i++)
            for (int64_t j = 0; j < ldc; j++) {
                float w = want[i * ldc + j], v = got[i * ldc + j];
                /* float sums of K products of values in [-1, 1] */
                bool ok = j < g.N ? fabsf(v - w) <= 2e-6f * (float)(g.K + 1) * (1.0f + fabsf(w))
                                  : v == PAD_SENTINEL;
                if (!ok) {
                    char cs[160];
                    case_str(&g, cs, sizeof cs);
                    fail_msg("%s (%s): C[%lld, %lld] = %.8g, want %.8g", kernels[k].name, cs,
                             (long long)i, (long long)j, (double)v,
                             (double)(j < g.N ? w : PAD_SENTINEL));
                }
            }
    }
    free(A);
    free(B);
    free(C0);
    free(want);
    free(got);
}

/* The shape in all four transpose combinations. */
static void check_gemm_all_transposes(int64_t M, int64_t N, int64_t K, float alpha, float beta,
                                      int64_t pad)
{
    for (int t = 0; t < 4; t++)
        check_gemm((gemm_case){t & 1, t >> 1, M, N, K, alpha, beta, pad});
}

/* The reference itself, by hand, with both transposes, alpha and beta:
 * op(A) = [[1,2],[3,4]] stored transposed, op(B) = [[5,6],[7,8]] stored transposed;
 * op(A) op(B) = [[19,22],[43,50]]; 2 * that + 0.5 * [[2,4],[6,8]] = [[39,46],[89,104]]. */
static void test_gemm_naive_by_hand(void **state)
{
    (void)state;
    const float at[4] = {1, 3, 2, 4}, bt[4] = {5, 7, 6, 8};
    float C[4] = {2, 4, 6, 8};
    ag_gemm_naive(true, true, 2, 2, 2, 2.0f, at, 2, bt, 2, 0.5f, C, 2);
    const float want[4] = {39, 46, 89, 104};
    assert_close(C, want, 4, 0.0);
}

static void test_gemm_primes_all_transposes(void **state)
{
    (void)state;
    check_gemm_all_transposes(37, 53, 71, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(13, 7, 29, 1.0f, 0.0f, 0);
}

static void test_gemm_sizes_of_one(void **state)
{
    (void)state;
    check_gemm_all_transposes(1, 1, 1, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(1, 17, 5, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(13, 1, 7, 1.0f, 0.5f, 0);
    check_gemm_all_transposes(9, 11, 1, 1.0f, 1.0f, 0);
    check_gemm_all_transposes(1, 300, 1, 1.0f, 0.0f, 0);
    /* one row runs as a GEMV with BLAS: strided rows of A (ta), beta 0 over NaN, and 0.5 */
    check_gemm_all_transposes(1, 1152, 384, 1.0f, 0.0f, 3);
    check_gemm_all_transposes(1, 65, 384, -0.5f, 0.5f, 2);
}

/* Around the 6x16 micro-tile and the 72 (rows) / 256 (cols, depth) blocks. */
static void test_gemm_tile_and_block_boundaries(void **state)
{
    (void)state;
    check_gemm_all_transposes(6, 16, 8, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(5, 15, 8, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(7, 17, 8, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(72, 256, 256, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(73, 257, 257, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(7, 33, 300, 1.0f, 0.0f, 0);  /* two depth blocks */
    check_gemm_all_transposes(100, 300, 260, 1.0f, 0.0f, 0); /* parallel, ragged tiles */
}

static void test_gemm_beta_zero_overwrites_nan(void **state)
{
    (void)state;
    /* check_gemm starts C as NaN whenever beta is 0 */
    check_gemm_all_transposes(37, 53, 71, 1.0f, 0.0f, 0);
    check_gemm((gemm_case){true, false, 100, 300, 260, -1.5f, 0.0f, 2});
    check_gemm_all_transposes(4, 5, 0, 1.0f, 0.0f, 0); /* K = 0: C becomes zeros */
    check_gemm_all_transposes(8, 9, 10, 0.0f, 0.0f, 0); /* alpha = 0 as well */
}

static void test_gemm_beta_one_and_half_accumulate(void **state)
{
    (void)state;
    check_gemm_all_transposes(37, 53, 71, 1.0f, 1.0f, 0);
    check_gemm_all_transposes(37, 53, 71, 1.0f, 0.5f, 0);
    check_gemm((gemm_case){false, true, 100, 300, 260, 1.0f, 0.5f, 0});
    check_gemm_all_transposes(4, 5, 0, 1.0f, 0.5f, 0);  /* K = 0: C is only scaled */
    check_gemm_all_transposes(8, 9, 10, 0.0f, 0.5f, 0); /* alpha = 0: likewise */
}

static void test_gemm_alpha_scales(void **state)
{
    (void)state;
    check_gemm_all_transposes(37, 53, 71, 2.5f, 0.0f, 0);
    check_gemm_all_transposes(37, 53, 71, -0.75f, 1.0f, 0);
    check_gemm((gemm_case){false, false, 73, 257, 100, 0.3f, 0.5f, 0});
}

/* Submatrices: every leading dim larger than the stored width. */
static void test_gemm_submatrix_leading_dims(void **state)
{
    (void)state;
    check_gemm_all_transposes(37, 53, 71, 1.0f, 0.0f, 5);
    check_gemm_all_transposes(37, 53, 71, 1.25f, 0.5f, 1);
    check_gemm_all_transposes(1, 1, 1, 1.0f, 1.0f, 3);
    check_gemm((gemm_case){true, true, 100, 300, 260, 1.0f, 1.0f, 7});
}

/* Edge sizes against every kernel: 1, primes, odd, and one either side of
 * each kernel's register tile (AVX-512 14 x 32, AVX2 and generic 6 x 16),
 * all four transposes, with alpha, beta and padded leading dims rotating. */
static void test_gemm_edge_sizes_every_kernel(void **state)
{
    (void)state;
    const int64_t ms[] = {1, 2, 5, 6, 7, 13, 14, 15, 29, 43};
    const int64_t ns[] = {1, 3, 15, 16, 17, 31, 32, 33, 67};
    const int64_t ks[] = {1, 7, 97};
    const float alphas[] = {1.0f, -0.5f, 2.0f}, betas[] = {0.0f, 1.0f, 0.5f, 0.0f};
    int i = 0;
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t c = 0; c < sizeof ks / sizeof *ks; c++, i++)
                check_gemm((gemm_case){i & 1, (i >> 1) & 1, ms[a], ns[b], ks[c], alphas[i % 3],
                                       betas[i % 4], i % 5 == 0 ? 0 : i % 3 + 1});
}

/* The depth blocks (384 deep, in equal parts: 385 is two of 193 and 192),
 * and more columns than one packed B block holds on common L2 sizes. */
static void test_gemm_depth_and_column_blocks(void **state)
{
    (void)state;
    check_gemm_all_transposes(17, 45, 383, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(17, 45, 385, 1.0f, 0.5f, 1);
    check_gemm_all_transposes(15, 33, 769, -1.0f, 1.0f, 0);
    check_gemm_all_transposes(29, 1100, 70, 1.0f, 0.0f, 2);
    check_gemm((gemm_case){false, true, 31, 4100, 40, 1.0f, 0.5f, 0});
    check_gemm((gemm_case){true, false, 30, 2050, 400, 0.5f, 0.0f, 3});
}

/* Small products read A and B where they are stored, without packing
 * (whole 32- or 16-column panels, few row panels): strided rows of A and B
 * (the padding is NaN), ragged row panels. */
static void test_gemm_unpacked_small_products(void **state)
{
    (void)state;
    check_gemm_all_transposes(64, 32, 64, 1.0f, 0.0f, 0);
    check_gemm_all_transposes(64, 32, 64, 1.0f, 1.0f, 5);
    check_gemm_all_transposes(50, 64, 256, 0.5f, 0.5f, 3);
    check_gemm_all_transposes(9, 16, 33, 1.0f, 0.0f, 17);
    check_gemm_all_transposes(112, 48, 20, 1.0f, 0.0f, 1);
}

/* sum over k of op(A)[i, k] op(B)[k, j] in double */
static double dot_ref(bool ta, bool tb, int64_t i, int64_t j, int64_t K, const float *A,
                      int64_t lda, const float *B, int64_t ldb)
{
    double s = 0;
    for (int64_t k = 0; k < K; k++)
        s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
             (double)(tb ? B[j * ldb + k] : B[k * ldb + j]);
    return s;
}

/* Every shape tools/bench_matmul times, on every kernel: the BLAS (when
 * built with it) and each built-in agree element by element, and 1000
 * sampled elements of each agree with a double-precision dot product. The
 * big ones take the best kernel only in an unoptimized build, and are left
 * out under an emulator (meson's exe_wrapper in a cross build). */
static void test_gemm_bench_shapes(void **state)
{
    (void)state;
    const struct {
        bool ta, tb;
        int64_t M, N, K;
    } shapes[] = {
        {false, true, 16384, 1536, 384}, {false, false, 16384, 384, 1536},
        {true, false, 1536, 384, 16384}, {false, true, 16384, 1152, 384},
        {false, true, 256, 256, 64},     {false, false, 256, 64, 256},
        {false, true, 64, 256, 64},      {false, false, 64, 64, 256},
        {true, false, 64, 64, 256},      {false, true, 64, 64, 32},
        {false, false, 64, 32, 64},      {true, false, 64, 32, 64},
        {false, true, 2048, 512, 128},   {false, false, 2048, 128, 512},
        {true, false, 512, 128, 2048},   {false, true, 512, 256, 64},
        {true, false, 256, 64, 512},     {false, true, 256, 128, 32},
    };
    kernels_init();
    ag_rng r = ag_rng_new(7);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        bool ta = shapes[si].ta, tb = shapes[si].tb;
        int64_t M = shapes[si].M, N = shapes[si].N, K = shapes[si].K;
        int64_t lda = ta ? M : K, ldb = tb ? K : N;
        float *A = matrix(&r, ta ? K : M, lda, lda, 0), *B = matrix(&r, tb ? N : K, ldb, ldb, 0);
        float *C = malloc((size_t)(M * N) * sizeof *C), *first = malloc((size_t)(M * N) * sizeof *C);
        bool big = M * N * K > 100000000;
        if (big && getenv("MESON_EXE_WRAPPER")) { /* emulated (a cross build): minutes each */
            free(A);
            free(B);
            free(C);
            free(first);
            continue;
        }
        const char *first_name = NULL;
        for (size_t k = 0; k < nkernels; k++) {
            const gemm_path *p = &kernels[k];
            /* the forced backends and each ISA's kernel at 3 threads */
            if (p->fn ? !p->backend : p->threads != 3)
                continue;
#ifndef __OPTIMIZE__
            if (big && !(p->fn && (!strcmp(p->backend, "blas") || !strcmp(p->backend, "builtin"))))
                continue;
#endif
            for (int64_t i = 0; i < M * N; i++)
                C[i] = NAN;
            run_path(p, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
            float tol = 2e-6f * (float)(K + 1);
            ag_rng pick = ag_rng_new(si);
            for (int s = 0; s < 1000; s++) {
                int64_t i = (int64_t)(ag_rng_uniform(&pick) * (float)M) % M;
                int64_t j = (int64_t)(ag_rng_uniform(&pick) * (float)N) % N;
                double w = dot_ref(ta, tb, i, j, K, A, lda, B, ldb);
                if (!(fabs(C[i * N + j] - w) <= tol * (1.0 + fabs(w))))
                    fail_msg("%s, %lld x %lld x %lld ta=%d tb=%d: C[%lld, %lld] = %.8g, want %.8g",
                             p->name, (long long)M, (long long)N, (long long)K, ta, tb,
                             (long long)i, (long long)j, (double)C[i * N + j], w);
            }
            if (!first_name) {
                memcpy(first, C, (size_t)(M * N) * sizeof *C);
                first_name = p->name;
                continue;
            }
            for (int64_t i = 0; i < M * N; i++)
                if (!(fabsf(C[i] - first[i]) <= 2 * tol * (1.0f + fabsf(first[i]))))
                    fail_msg("%s and %s differ, %lld x %lld x %lld ta=%d tb=%d: C[%lld] = %.8g "
                             "and %.8g", p->name, first_name, (long long)M, (long long)N,
                             (long long)K, ta, tb, (long long)i, (double)C[i], (double)first[i]);
        }
        (void)big;
        free(A);
        free(B);
        free(C);
        free(first);
    }
}

/* ag_set_matmul_backend: names it takes and refuses, ag_matmul_backend's
 * answers, and that a refused name changes nothing. */
static void test_matmul_backend_names(void **state)
{
    (void)state;
    char was[64];
    snprintf(was, sizeof was, "%s", ag_matmul_backend());
    assert_true(strncmp(was, "openblas:", 9) == 0 || strcmp(was, "cblas") == 0 ||
                strncmp(was, "builtin:", 8) == 0);

    assert_true(ag_set_matmul_backend("builtin"));
    char want[64];
    snprintf(want, sizeof want, "builtin:%s", ag_gemm_kernel_best()->name);
    assert_string_equal(ag_matmul_backend(), want);
    assert_true(ag_set_matmul_backend("builtin:generic"));
    assert_string_equal(ag_matmul_backend(), "builtin:generic");
    if (ag_gemm_kernel_named("avx2")) {
        assert_true(ag_set_matmul_backend("builtin:avx2"));
        assert_string_equal(ag_matmul_backend(), "builtin:avx2");
    } else {
        assert_false(ag_set_matmul_backend("builtin:avx2"));
    }
    assert_int_equal(ag_set_matmul_backend("builtin:avx512"), ag_gemm_kernel_named("avx512") != NULL);

    /* refused: nothing changes */
    snprintf(want, sizeof want, "%s", ag_matmul_backend());
    assert_false(ag_set_matmul_backend("builtin:sse9"));
    assert_false(ag_set_matmul_backend("mkl"));
    assert_false(ag_set_matmul_backend(""));
    assert_false(ag_set_matmul_backend(NULL));
    assert_string_equal(ag_matmul_backend(), want);

    /* a build with a BLAS takes "blas", and names it */
    if (ag_set_matmul_backend("blas"))
        assert_true(strncmp(ag_matmul_backend(), "openblas:", 9) == 0 ||
                    strcmp(ag_matmul_backend(), "cblas") == 0);
    else
        assert_string_equal(ag_matmul_backend(), want);
    /* what it said before is a name it takes back */
    assert_true(ag_set_matmul_backend(was));
    assert_string_equal(ag_matmul_backend(), was);
    assert_true(ag_set_matmul_backend("auto"));
    assert_string_equal(ag_matmul_backend(), was);
}

/* The matmul op gives the same values on every backend (a product big
 * enough to run threaded). */
static void test_matmul_op_same_on_every_backend(void **state)
{
    (void)state;
    const char *names[] = {"blas", "builtin:avx512", "builtin:avx2", "builtin:generic"};
    ag_tensor *a = ag_rand(NULL, TEST_RNG(3), -1.0f, 1.0f, SHP(3, 70, 130));
    ag_tensor *b = ag_rand(NULL, TEST_RNG(4), -1.0f, 1.0f, SHP(130, 90));
    ag_ctx *c = ag_ctx_new();
    char was[64];
    snprintf(was, sizeof was, "%s", ag_matmul_backend());
    assert_true(ag_set_matmul_backend("builtin"));
    ag_tensor *want = ag_matmul(c, a, b);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (!ag_set_matmul_backend(names[i]))
            continue;
        ag_tensor *got = ag_matmul(c, a, b);
        assert_close(got->data, want->data, want->numel, 1e-5);
    }
    assert_true(ag_set_matmul_backend(was));
    ag_ctx_free(c);
    ag_tensor *all[2] = {a, b};
    free_all(all, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_1d_input),
        cmocka_unit_test(test_matmul_2d_by_hand),
        cmocka_unit_test(test_matmul_nt_2d_by_hand),
        cmocka_unit_test(test_matmul_batched_3d_by_hand),
        cmocka_unit_test(test_matmul_broadcast_by_hand_grads_sum_over_batches),
        cmocka_unit_test(test_matmul_nt_equals_matmul_of_transpose),
        cmocka_unit_test(test_matmul_2d_non_square),
        cmocka_unit_test(test_matmul_batched_3d),
        cmocka_unit_test(test_matmul_batched_4d),
        cmocka_unit_test(test_matmul_broadcast_batch_dims),
        cmocka_unit_test(test_matmul_folds_batched_by_2d),
        cmocka_unit_test(test_matmul_2d_by_batched),
        cmocka_unit_test(test_matmul_fold_matches_per_batch),
        cmocka_unit_test(test_matmul_grads_accumulate),
        cmocka_unit_test(test_matmul_empty_dims),
        cmocka_unit_test(test_matmul_shape_errors),
        cmocka_unit_test(test_gemm_naive_by_hand),
        cmocka_unit_test(test_gemm_primes_all_transposes),
        cmocka_unit_test(test_gemm_sizes_of_one),
        cmocka_unit_test(test_gemm_tile_and_block_boundaries),
        cmocka_unit_test(test_gemm_beta_zero_overwrites_nan),
        cmocka_unit_test(test_gemm_beta_one_and_half_accumulate),
        cmocka_unit_test(test_gemm_alpha_scales),
        cmocka_unit_test(test_gemm_submatrix_leading_dims),
        cmocka_unit_test(test_gemm_edge_sizes_every_kernel),
        cmocka_unit_test(test_gemm_depth_and_column_blocks),
        cmocka_unit_test(test_gemm_unpacked_small_products),
        cmocka_unit_test(test_gemm_bench_shapes),
        cmocka_unit_test(test_matmul_backend_names),
        cmocka_unit_test(test_matmul_op_same_on_every_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
