/* test_threads.c - results on 1 and 2 threads agree (ag_set_num_threads).
 *
 * Each test runs the same computation once per thread count, on inputs large
 * enough to take the parallel paths (more than AG_PAR_MIN elements, several
 * GEMM tiles, many batches), and compares values and grads within float
 * tolerance: a large matmul, batched with broadcast and folded, a broadcast
 * elementwise op, softmax over big rows, sum/mean reductions, embedding
 * backward with repeated indices, dropout (bit for bit: its mask is a
 * function of the seed and the element index) and a small network's forward
 * and backward. The thread count is restored after each test. */
#include "test_util.h"

#include <stdlib.h>

#define SHP(...) AG_SHAPE(__VA_ARGS__)

static int saved_threads;

static int save_threads(void **state)
{
    (void)state;
    saved_threads = ag_get_num_threads();
    return 0;
}

static int restore_threads(void **state)
{
    (void)state;
    ag_set_num_threads(saved_threads);
    return ag_get_num_threads() == saved_threads ? 0 : -1;
}

/* ------------------------------------------------------------ harness */

/* What one run produced: the output and the grads, copied out of the ctx. */
#define MAX_RESULTS 8

typedef struct {
    int n;
    float *data[MAX_RESULTS];
    int64_t numel[MAX_RESULTS];
} results;

static void keep(results *r, const float *data, int64_t numel)
{
    assert_true(r->n < MAX_RESULTS);
    assert_non_null(data);
    float *copy = malloc((size_t)(numel ? numel : 1) * sizeof *copy);
    memcpy(copy, data, (size_t)numel * sizeof *copy);
    r->data[r->n] = copy;
    r->numel[r->n++] = numel;
}

static void results_free(results *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->data[i]);
    r->n = 0;
}

/* A computation: fills r from fresh inputs (same seeds every run). */
typedef void (*work_fn)(ag_ctx *c, results *r);

/* got == want within tol relative to the largest |want| (at least 1): sums
 * regrouped across threads round differently, and where they cancel, an
 * element's own size says nothing about its rounding error. A race or a lost
 * partial sum is off by far more. */
static void assert_close_scaled(const float *got, const float *want, int64_t n, double tol,
                                int which)
{
    double scale = 1.0;
    for (int64_t i = 0; i < n; i++)
        scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * scale))
            fail_msg("result %d [%lld]: 2 threads %.8g, 1 thread %.8g (tol %.2g x %.3g)", which,
                     (long long)i, (double)got[i], (double)want[i], tol, scale);
}

/* Runs w on 1 and on 2 threads; every kept array must agree within tol,
 * or exactly when tol is 0 (bit for bit, NaN never expected). */
static void check_threads_agree(work_fn w, double tol)
{
    results r[2] = {{0}, {0}};
    for (int k = 0; k < 2; k++) {
        ag_set_num_threads(k + 1);
        assert_int_equal(ag_get_num_threads(), k + 1);
        ag_ctx *c = ag_ctx_new();
        w(c, &r[k]);
        ag_ctx_free(c);
    }
    ag_set_num_threads(saved_threads);
    assert_int_equal(r[0].n, r[1].n);
    for (int i = 0; i < r[0].n; i++) {
        assert_int_equal(r[0].numel[i], r[1].numel[i]);
        if (tol == 0.0)
            assert_memory_equal(r[0].data[i], r[1].data[i], (size_t)r[0].numel[i] * sizeof(float));
        else
            assert_close_scaled(r[1].data[i], r[0].data[i], r[0].numel[i], tol, i);
    }
    results_free(&r[0]);
    results_free(&r[1]);
}

/* A leaf in ctx c (its grad lives there too) with N(0, std) values. */
static ag_tensor *rand_in(ag_ctx *c, uint64_t seed, float std, int ndim, const int64_t *shape)
{
    ag_tensor *t = ag_randn(c, TEST_RNG(seed), 0.0f, std, ndim, shape);
    ag_set_requires_grad(t, true);
    return t;
}

/* Backward of sum(y * W) for fixed W; keeps y and the grads of ins. */
static void backward_keep(ag_ctx *c, results *r, ag_tensor *y, ag_tensor **ins, int n)
{
    assert_non_null(y);
    keep(r, y->data, y->numel);
    assert_true(ag_backward(c, weighted_sum(c, y)));
    for (int i = 0; i < n; i++)
        keep(r, ins[i]->grad, ins[i]->numel);
}

/* ------------------------------------------------------------ ops */

static void work_matmul(ag_ctx *c, results *r)
{
    ag_tensor *in[2] = {rand_in(c, 1, 1.0f, SHP(300, 200)), rand_in(c, 2, 1.0f, SHP(200, 500))};
    backward_keep(c, r, ag_matmul(c, in[0], in[1]), in, 2);
}

static void test_threads_large_matmul(void **state)
{
    (void)state;
    check_threads_agree(work_matmul, 1e-5);
}

/* (4,1,64,48) @ (3,48,80) -> (4,3,64,80): 12 batches on threads, both inputs broadcast */
static void work_matmul_broadcast(ag_ctx *c, results *r)
{
    ag_tensor *in[2] = {rand_in(c, 3, 1.0f, SHP(4, 1, 64, 48)), rand_in(c, 4, 1.0f, SHP(3, 48, 80))};
    backward_keep(c, r, ag_matmul(c, in[0], in[1]), in, 2);
}

/* (8,64,96) @ (128,96)^T: folded into one GEMM */
static void work_matmul_nt_fold(ag_ctx *c, results *r)
{
    ag_tensor *in[2] = {rand_in(c, 5, 1.0f, SHP(8, 64, 96)), rand_in(c, 6, 1.0f, SHP(128, 96))};
    backward_keep(c, r, ag_matmul_nt(c, in[0], in[1]), in, 2);
}

static void test_threads_batched_matmul(void **state)
{
    (void)state;
    check_threads_agree(work_matmul_broadcast, 1e-5);
    check_threads_agree(work_matmul_nt_fold, 1e-5);
}

/* (64,1,1024) * (8,1024) -> (64,8,1024), and a (1024) bias added */
static void work_broadcast_binary(ag_ctx *c, results *r)
{
    ag_tensor *in[3] = {rand_in(c, 7, 1.0f, SHP(64, 1, 1024)), rand_in(c, 8, 1.0f, SHP(8, 1024)),
                        rand_in(c, 9, 1.0f, SHP(1024))};
    ag_tensor *y = ag_add(c, ag_mul(c, in[0], in[1]), in[2]);
    assert_shape(y, 64, 8, 1024);
    backward_keep(c, r, ag_div(c, y, ag_add_scalar(c, ag_exp(c, in[2]), 1.0f)), in, 3);
}

static void test_threads_broadcast_elementwise(void **state)
{
    (void)state;
    check_threads_agree(work_broadcast_binary, 1e-5);
}

/* 32 rows of 4096 on the last axis, and over a middle axis of (16,256,32) */
static void work_softmax(ag_ctx *c, results *r)
{
    ag_tensor *in[2] = {rand_in(c, 10, 3.0f, SHP(32, 4096)), rand_in(c, 11, 3.0f, SHP(16, 256, 32))};
    backward_keep(c, r, ag_softmax(c, in[0], -1), in, 1);
    backward_keep(c, r, ag_log_softmax(c, in[1], 1), in + 1, 1);
}

static void test_threads_softmax_big_rows(void **state)
{
    (void)state;
    check_threads_agree(work_softmax, 1e-5);
}

/* one long row (split by threads), many rows, a middle axis, and all elements */
static void work_reductions(ag_ctx *c, results *r)
{
    ag_tensor *x = rand_in(c, 12, 1.0f, SHP(200000));
    ag_tensor *m = rand_in(c, 13, 1.0f, SHP(64, 32, 48));
    keep(r, ag_sum(c, x, 0, false)->data, 1);
    keep(r, ag_mean_all(c, x)->data, 1);
    keep(r, ag_sum(c, m, -1, false)->data, 64 * 32);
    keep(r, ag_mean(c, m, 1, true)->data, 64 * 48);
    ag_tensor *mm = ag_mean(c, m, 1, true);
    ag_tensor *in[1] = {m};
    backward_keep(c, r, ag_add(c, ag_sum(c, m, 0, true), mm), in, 1);
}

static void test_threads_reductions(void **state)
{
    (void)state;
    check_threads_agree(work_reductions, 1e-5);
}

/* 4096 lookups into 50 rows of 64: every row hit about 80 times */
static void work_embedding(ag_ctx *c, results *r)
{
    enum { N = 4096, V = 50, C = 64 };
    ag_index *ix = ag_index_new(c, NULL, SHP(N));
    ag_rng g = ag_rng_new(14);
    for (int i = 0; i < N; i++)
        ix->data[i] = (int32_t)(ag_rng_next(&g) % V);
    ag_tensor *w[1] = {rand_in(c, 15, 1.0f, SHP(V, C))};
    backward_keep(c, r, ag_embedding(c, w[0], ix), w, 1);
}

static void test_threads_embedding_backward(void **state)
{
    (void)state;
    check_threads_agree(work_embedding, 1e-5);
}

/* the mask, the output and the grad, bit for bit */
static void work_dropout(ag_ctx *c, results *r)
{
    ag_ctx_manual_seed(c, 1234);
    ag_tensor *x[1] = {rand_in(c, 16, 1.0f, SHP(300, 400))};
    ag_tensor *y = ag_dropout(c, x[0], 0.3f, true);
    ag_tensor *g = ag_randn(c, NULL, 0.0f, 1.0f, SHP(300, 400));
    assert_true(ag_backward_with(c, y, g));
    keep(r, y->data, y->numel);
    keep(r, x[0]->grad, x[0]->numel);
    /* a second call draws a new seed from ctx's generator the same way */
    keep(r, ag_dropout(c, x[0], 0.5f, true)->data, x[0]->numel);
}

static void test_threads_dropout_masks_identical(void **state)
{
    (void)state;
    check_threads_agree(work_dropout, 0.0);
}

/* ------------------------------------------------------------ a network */

/* x (256,48) -> gelu(x W1^T + b1) = h (256,160)
 *   -> attention-like mixing: a = softmax(0.1 h h^T) (256,256), z = relu(a h)
 *   -> logits = z W2^T + b2 (256,200) -> cross-entropy (some targets ignored) */
static void work_network(ag_ctx *c, results *r)
{
    enum { N = 256, D = 48, H = 160, K = 200 };
    ag_tensor *p[5] = {
        rand_in(c, 20, 1.0f, SHP(N, D)),
        rand_in(c, 21, 0.15f, SHP(H, D)),
        rand_in(c, 22, 0.1f, SHP(H)),
        rand_in(c, 23, 0.1f, SHP(K, H)),
        rand_in(c, 24, 0.1f, SHP(K)),
    };
    ag_index *t = ag_index_new(c, NULL, SHP(N));
    for (int i = 0; i < N; i++)
        t->data[i] = i % 9 == 4 ? -100 : (int32_t)((i * 37) % K);
    ag_tensor *h = ag_gelu(c, ag_add(c, ag_matmul_nt(c, p[0], p[1]), p[2]));
    ag_tensor *a = ag_softmax(c, ag_mul_scalar(c, ag_matmul_nt(c, h, h), 0.1f), -1);
    ag_tensor *z = ag_relu(c, ag_matmul(c, a, h));
    ag_tensor *logits = ag_add(c, ag_matmul_nt(c, z, p[3]), p[4]);
    ag_tensor *loss = ag_cross_entropy(c, logits, t, -100);
    assert_non_null(loss);
    assert_true(isfinite(loss->data[0]));
    keep(r, loss->data, 1);
    assert_true(ag_backward(c, loss));
    for (int i = 0; i < 5; i++)
        keep(r, p[i]->grad, p[i]->numel);
}

static void test_threads_network_forward_backward(void **state)
{
    (void)state;
    check_threads_agree(work_network, 1e-4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_threads_large_matmul, restore_threads),
        cmocka_unit_test_teardown(test_threads_batched_matmul, restore_threads),
        cmocka_unit_test_teardown(test_threads_broadcast_elementwise, restore_threads),
        cmocka_unit_test_teardown(test_threads_softmax_big_rows, restore_threads),
        cmocka_unit_test_teardown(test_threads_reductions, restore_threads),
        cmocka_unit_test_teardown(test_threads_embedding_backward, restore_threads),
        cmocka_unit_test_teardown(test_threads_dropout_masks_identical, restore_threads),
        cmocka_unit_test_teardown(test_threads_network_forward_backward, restore_threads),
    };
    return cmocka_run_group_tests(tests, save_threads, restore_threads);
}
