/* test_engine.c - the graph engine and the tensor basics around it:
 *   - backward: fan-out (a tensor used twice), diamonds, a shared subgraph
 *     whose backward runs once, leaf grads accumulating until ag_zero_grad,
 *     non-leaf grads dropped unless retained (and rebuilt, not accumulated),
 *     ag_backward_with seeds, backward on a leaf, backward run by fresh
 *     ctxs over one graph, a 200000-op chain on a small thread stack (so a
 *     recursive walk would crash);
 *   - grad mode: nothing is recorded with gradients off or when no input
 *     requires grad, and backward on such an output is an error;
 *   - the arena: bytes used/peak, reset, growth past the first block, a
 *     steady loop that stops allocating, persistent tensors surviving resets;
 *   - constructors, generators, ag_item, ag_shape_str, ag_print, DOT export
 *     (nodes, labels, edges, escaping);
 *   - a user-defined op (ag_result + ag_grad_of) inside a larger graph. */
#include "test_util.h"

#include "internal.h" /* only for the arena's block count in the merge test */

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* The text fn writes to a FILE, via a tmpfile. Caller frees. */
static char *capture(void (*fn)(FILE *, const ag_tensor *), const ag_tensor *t)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    fn(f, t);
    long len = ftell(f);
    assert_true(len >= 0);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

#define assert_contains(hay, needle)                                                     \
    do {                                                                                 \
        if (!strstr((hay), (needle)))                                                    \
            fail_msg("\"%s\" not found in:\n%s", (needle), (hay));                       \
    } while (0)

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ================================================================ backward */

/* y = x*x + x: x reaches y three times (twice through mul, once through add). */
static void test_tensor_used_twice_gets_both_contributions(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {1.0f, 2.0f, -3.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *y = ag_add(c, ag_mul(c, x, x), x);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    const float want[3] = {3.0f, 5.0f, -5.0f}; /* 2x + 1 */
    assert_close(x->grad, want, 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* a -> b = 3a, a -> c = exp(a), d = b * c: d' = 3 e^a + 3a e^a */
static void test_diamond_adds_both_paths(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float ad[4] = {-1.0f, 0.0f, 0.5f, 1.5f};
    ag_tensor *a = leaf(ad, AG_SHAPE(2, 2));
    ag_tensor *b = ag_mul_scalar(c, a, 3.0f);
    ag_tensor *e = ag_exp(c, a);
    ag_tensor *d = ag_mul(c, b, e);
    assert_true(ag_backward(c, ag_sum_all(c, d)));
    float want[4];
    for (int i = 0; i < 4; i++)
        want[i] = 3.0f * expf(ad[i]) * (1.0f + ad[i]);
    assert_close(a->grad, want, 4, 1e-5);
    ag_tensor_free(a);
    ag_ctx_free(c);
}

/* An identity op that counts how often its backward runs. */
static int probe_calls;

static void probe_backward(ag_ctx *ctx, ag_tensor *out)
{
    probe_calls++;
    float *gx = ag_grad_of(ctx, out->inputs[0]);
    if (gx)
        for (int64_t i = 0; i < out->numel; i++)
            gx[i] += out->grad[i];
}

static const ag_op probe_op = {.name = "probe", .backward = probe_backward};

static ag_tensor *probe(ag_ctx *c, ag_tensor *x)
{
    ag_tensor *out = ag_result(c, &probe_op, &x, 1, x->ndim, x->shape);
    memcpy(out->data, x->data, (size_t)x->numel * sizeof(float));
    return out;
}

/* h = probe(tanh(x @ w)) feeds two branches: L = sum(h*h) + mean(h).
 * dL/dh = 2h + 1/n, dz = dL/dh (1 - h^2), dw = x^T dz; h's backward runs once. */
static void test_shared_subgraph_used_by_two_branches(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[6] = {0.5f, -1.0f, 0.25f, 1.0f, 0.0f, -0.5f}; /* (3, 2) */
    const float wd[4] = {0.3f, -0.2f, 0.7f, 0.1f};               /* (2, 2) */
    ag_tensor *x = leaf(xd, AG_SHAPE(3, 2));
    ag_tensor *w = leaf(wd, AG_SHAPE(2, 2));
    ag_tensor *h = probe(c, ag_tanh(c, ag_matmul(c, x, w)));
    ag_tensor *l1 = ag_sum_all(c, ag_mul(c, h, h));
    ag_tensor *l2 = ag_mean_all(c, h);
    probe_calls = 0;
    assert_true(ag_backward(c, ag_add(c, l1, l2)));
    assert_int_equal(probe_calls, 1);

    float dz[6], gw[4] = {0}, gx[6] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            float z = xd[i * 2] * wd[j] + xd[i * 2 + 1] * wd[2 + j];
            float hv = tanhf(z);
            dz[i * 2 + j] = (2.0f * hv + 1.0f / 6.0f) * (1.0f - hv * hv);
        }
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 2; j++) {
                gw[k * 2 + j] += xd[i * 2 + k] * dz[i * 2 + j];
                gx[i * 2 + k] += dz[i * 2 + j] * wd[k * 2 + j];
            }
    assert_close(w->grad, gw, 4, 1e-5);
    assert_close(x->grad, gx, 6, 1e-5);
    ag_tensor_free(x);
    ag_tensor_free(w);
    ag_ctx_free(c);
}

/* Two backward calls add up in a leaf's grad (persistent or arena) until zeroed. */
static void test_leaf_grads_accumulate_until_zero_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[2] = {1.5f, -2.0f};
    ag_tensor *p = leaf(xd, AG_SHAPE(2));
    ag_tensor *a = ag_from_data(c, xd, AG_SHAPE(2));
    ag_set_requires_grad(a, true);

    ag_tensor *loss = ag_sum_all(c, ag_mul(c, ag_mul(c, p, p), a)); /* p^2 a */
    assert_true(ag_backward(c, loss));
    assert_true(ag_backward(c, loss)); /* the same graph again */
    float want_p[2], want_a[2];
    for (int i = 0; i < 2; i++) {
        want_p[i] = 2.0f * (2.0f * xd[i] * xd[i]);
        want_a[i] = 2.0f * (xd[i] * xd[i]);
    }
    assert_close(p->grad, want_p, 2, 1e-6);
    assert_close(a->grad, want_a, 2, 1e-6);

    /* a fresh forward in the same ctx also adds to them */
    assert_true(ag_backward(c, ag_sum_all(c, ag_mul(c, ag_mul(c, p, p), a))));
    for (int i = 0; i < 2; i++) {
        want_p[i] *= 1.5f;
        want_a[i] *= 1.5f;
    }
    assert_close(p->grad, want_p, 2, 1e-6);
    assert_close(a->grad, want_a, 2, 1e-6);

    ag_zero_grad(p);
    ag_zero_grad(a);
    const float zeros[2] = {0.0f, 0.0f};
    assert_close(p->grad, zeros, 2, 0.0);
    assert_close(a->grad, zeros, 2, 0.0);
    assert_true(ag_backward(c, ag_sum_all(c, ag_mul(c, ag_mul(c, p, p), a))));
    for (int i = 0; i < 2; i++) {
        want_p[i] = 2.0f * xd[i] * xd[i];
        want_a[i] = xd[i] * xd[i];
    }
    assert_close(p->grad, want_p, 2, 1e-6);
    assert_close(a->grad, want_a, 2, 1e-6);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static void test_nonleaf_grad_dropped_after_backward(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {1.0f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *h = ag_mul_scalar(c, x, 2.0f);
    ag_tensor *loss = ag_sum_all(c, ag_mul(c, h, h));
    assert_true(ag_backward(c, loss));
    assert_null(h->grad);
    assert_null(loss->grad);
    const float want[3] = {8.0f, -8.0f, 16.0f}; /* 8x */
    assert_close(x->grad, want, 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* A retained grad is readable and right, and a second backward rebuilds it
 * rather than adding to it (only leaves accumulate). */
static void test_retain_grad_keeps_nonleaf_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {1.0f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *h = ag_mul_scalar(c, x, 2.0f);
    ag_tensor *loss = ag_sum_all(c, ag_mul(c, h, h));
    ag_retain_grad(h);
    ag_retain_grad(loss);
    assert_true(ag_backward(c, loss));
    const float want_h[3] = {4.0f, -4.0f, 8.0f}; /* 2h */
    assert_non_null(h->grad);
    assert_close(h->grad, want_h, 3, 1e-6);
    assert_non_null(loss->grad);
    assert_true(loss->grad[0] == 1.0f);

    assert_true(ag_backward(c, loss));
    assert_close(h->grad, want_h, 3, 1e-6);
    assert_true(loss->grad[0] == 1.0f);
    const float want_x[3] = {16.0f, -16.0f, 32.0f}; /* the leaf did accumulate: 2 * 8x */
    assert_close(x->grad, want_x, 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

static void test_backward_with_seeds_output_grad(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[6] = {1, 2, 3, 4, 5, 6};
    const float gd[6] = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f, -0.25f};
    ag_tensor *x = leaf(xd, AG_SHAPE(2, 3));
    ag_tensor *y = ag_mul(c, x, x); /* dy/dx = 2x */
    ag_tensor *g = ag_from_data(c, gd, AG_SHAPE(2, 3));
    assert_true(ag_backward_with(c, y, g));
    float want[6];
    for (int i = 0; i < 6; i++)
        want[i] = 2.0f * xd[i] * gd[i];
    assert_close(x->grad, want, 6, 1e-6);

    /* a scalar output seeded with 2.5 scales every grad by 2.5 */
    ag_zero_grad(x);
    assert_true(ag_backward_with(c, ag_sum_all(c, ag_mul_scalar(c, x, 3.0f)), ag_scalar(c, 2.5f)));
    for (int i = 0; i < 6; i++)
        want[i] = 7.5f;
    assert_close(x->grad, want, 6, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

static void test_backward_on_leaf(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *s = ag_param("s", 0, NULL);
    assert_true(ag_backward(c, s));
    assert_true(s->grad[0] == 1.0f);
    assert_true(ag_backward(c, s));
    assert_true(s->grad[0] == 2.0f);

    const float gd[4] = {1, -2, 3, -4};
    ag_tensor *m = ag_zeros(c, AG_SHAPE(2, 2));
    ag_set_requires_grad(m, true);
    assert_true(ag_backward_with(c, m, ag_from_data(c, gd, AG_SHAPE(2, 2))));
    assert_close(m->grad, gd, 4, 0.0);
    ag_tensor_free(s);
    ag_ctx_free(c);
}

/* With gradients off nothing is recorded; a value computed then is a constant
 * once they are back on (the grad flows only through the recorded path). */
static void test_no_grad_mode_records_nothing(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {0.5f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));

    ag_set_grad_enabled(c, false);
    assert_false(ag_grad_enabled(c));
    ag_tensor *y = ag_tanh(c, ag_add(c, x, x));
    ag_tensor *s = ag_sum_all(c, y);
    ag_tensor *outs[2] = {y, s};
    for (int k = 0; k < 2; k++) {
        assert_false(outs[k]->requires_grad);
        assert_null(outs[k]->op);
        assert_int_equal(outs[k]->ninputs, 0);
        assert_null(outs[k]->inputs);
    }
    for (int i = 0; i < 3; i++)
        assert_float_equal(y->data[i], tanhf(2.0f * xd[i]), 1e-7);
    assert_ag_error(ag_backward(c, s), "ag_backward", "does not require grad");
    assert_null(x->grad);

    ag_set_grad_enabled(c, true);
    assert_true(ag_grad_enabled(c));
    ag_tensor *z = ag_mul(c, y, x); /* y is a constant here: dz/dx = y */
    assert_string_equal(z->op->name, "mul");
    assert_true(ag_backward(c, ag_sum_all(c, z)));
    assert_close(x->grad, y->data, 3, 1e-6);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

static void test_output_of_constants_is_not_recorded(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_ones(c, AG_SHAPE(2, 2));
    ag_tensor *b = ag_full(c, 2.0f, AG_SHAPE(2, 2));
    ag_tensor *y = ag_matmul(c, a, b);
    assert_false(y->requires_grad);
    assert_null(y->op);
    assert_int_equal(y->ninputs, 0);
    assert_ag_error(ag_backward(c, ag_sum_all(c, y)), "does not require grad");

    /* one input that requires grad is enough; the graph then holds both inputs */
    ag_set_requires_grad(b, true);
    ag_tensor *y2 = ag_matmul(c, a, b);
    assert_true(y2->requires_grad);
    assert_string_equal(y2->op->name, "matmul");
    assert_int_equal(y2->ninputs, 2);
    assert_ptr_equal(y2->inputs[0], a);
    assert_ptr_equal(y2->inputs[1], b);
    assert_true(ag_backward(c, ag_sum_all(c, y2)));
    assert_null(a->grad); /* never asked for */
    const float want[4] = {2, 2, 2, 2}; /* d sum(A B)/dB[k][j] = sum_i A[i][k] */
    assert_close(b->grad, want, 4, 1e-6);
    ag_ctx_free(c);
}

/* Backward run by other ctxs than the graph's, each freed after use: a new
 * ctx often lands at a freed one's address, and must not mistake that one's
 * traversal marks on the graph for its own (it would skip every node). */
static void test_backward_by_fresh_ctxs_over_one_graph(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_param("x", AG_SHAPE(2));
    ag_fill(x, 0.5f);
    ag_tensor *loss = ag_sum_all(c, ag_mul(c, ag_tanh(c, x), x)); /* x tanh x */
    float t = tanhf(0.5f), want[2];
    want[0] = want[1] = t + 0.5f * (1.0f - t * t);
    for (int i = 0; i < 20; i++) {
        ag_ctx *b = ag_ctx_new();
        ag_zero_grad(x);
        assert_true(ag_backward(b, loss));
        assert_close(x->grad, want, 2, 1e-6);
        ag_ctx_free(b);
    }
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* ---- a deep chain on a small stack: a recursive topological sort or
 * backward would need megabytes of stack here and crash. */

#define CHAIN_LEN 200000

typedef struct {
    float value, grad, mid_grad;
    bool ok;
} chain_result;

static void *run_chain(void *arg)
{
    chain_result *r = arg;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_scalar(c, 0.5f);
    ag_set_requires_grad(x, true);
    ag_tensor *y = x, *mid = NULL;
    for (int i = 0; i < CHAIN_LEN; i++) {
        y = ag_add_scalar(c, y, 1.0f);
        if (i == CHAIN_LEN / 2)
            mid = y;
    }
    y = ag_mul_scalar(c, y, 3.0f);
    ag_retain_grad(mid);
    r->ok = ag_backward(c, y);
    r->value = y->data[0];
    r->grad = x->grad[0];
    r->mid_grad = mid->grad[0];
    ag_ctx_free(c);
    return NULL;
}

static void test_deep_chain_backprops_without_recursion(void **state)
{
    (void)state;
    pthread_attr_t attr;
    pthread_t th;
    chain_result r = {0};
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, (size_t)1 << 20), 0);
    assert_int_equal(pthread_create(&th, &attr, run_chain, &r), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    pthread_attr_destroy(&attr);
    assert_true(r.ok);
    assert_true(r.value == 3.0f * (0.5f + CHAIN_LEN)); /* exact in float */
    assert_true(r.grad == 3.0f);
    assert_true(r.mid_grad == 3.0f);
}

/* ---- a user-defined op: y = x^3 via ag_result, backward 3x^2 g via ag_grad_of */

static void cube_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = out->inputs[0];
    float *gx = ag_grad_of(ctx, x);
    if (gx)
        for (int64_t i = 0; i < out->numel; i++)
            gx[i] += 3.0f * x->data[i] * x->data[i] * out->grad[i];
}

static const ag_op cube_op = {.name = "cube", .backward = cube_backward};

static ag_tensor *cube(ag_ctx *c, ag_tensor *x)
{
    ag_tensor *out = ag_result(c, &cube_op, &x, 1, x->ndim, x->shape);
    for (int64_t i = 0; i < x->numel; i++)
        out->data[i] = x->data[i] * x->data[i] * x->data[i];
    return out;
}

static ag_tensor *f_cube_net(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_tanh(c, ag_mul(c, cube(c, in[0]), in[1])));
}

static void test_custom_op_participates_in_backward(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float xd[3] = {0.5f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *y = cube(c, x);
    assert_string_equal(y->op->name, "cube");
    assert_true(y->requires_grad);
    /* L = sum(cube(x) * x) = sum x^4: dL/dx = 4x^3 */
    assert_true(ag_backward(c, ag_sum_all(c, ag_mul(c, y, x))));
    float want[3];
    for (int i = 0; i < 3; i++)
        want[i] = 4.0f * xd[i] * xd[i] * xd[i];
    assert_close(x->grad, want, 3, 1e-6);
    assert_null(y->grad);
    ag_tensor_free(x);
    ag_ctx_free(c);

    ag_tensor *in[2] = {rand_leaf(3, 0.7f, AG_SHAPE(2, 3)), rand_leaf(4, 0.7f, AG_SHAPE(3))};
    assert_gradcheck(f_cube_net, in, 2, NULL);
    free_all(in, 2);
}

/* ================================================================ arena */

static void test_arena_bytes_used_grows_and_resets(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    assert_int_equal(ag_ctx_bytes_used(c), 0);
    ag_zeros(c, AG_SHAPE(1000));
    size_t u1 = ag_ctx_bytes_used(c);
    assert_true(u1 >= 1000 * sizeof(float) + sizeof(ag_tensor));
    assert_true(u1 <= 1000 * sizeof(float) + sizeof(ag_tensor) + 128);
    ag_zeros(c, AG_SHAPE(1000));
    size_t u2 = ag_ctx_bytes_used(c);
    assert_int_equal(u2, 2 * u1);
    void *p = ag_ctx_alloc(c, 10);
    assert_true((uintptr_t)p % 64 == 0);
    assert_int_equal(ag_ctx_bytes_used(c), u2 + 64);
    assert_int_equal(ag_ctx_bytes_peak(c), u2 + 64);

    ag_ctx_reset(c);
    assert_int_equal(ag_ctx_bytes_used(c), 0);
    assert_int_equal(ag_ctx_bytes_peak(c), u2 + 64);
    ag_zeros(c, AG_SHAPE(1000));
    assert_int_equal(ag_ctx_bytes_used(c), u1);
    assert_int_equal(ag_ctx_bytes_peak(c), u2 + 64); /* a smaller step keeps the peak */
    ag_ctx_free(c);
}

/* 64 MiB in one step, far past the first 4 MiB block: every tensor gets its
 * own memory (filled and read back) and 64-byte aligned data. */
static void test_arena_grows_on_demand(void **state)
{
    (void)state;
    enum { N = 16, ELEMS = 1 << 20 };
    ag_ctx *c = ag_ctx_new();
    ag_tensor *ts[N];
    for (int k = 0; k < N; k++) {
        ts[k] = ag_full(c, (float)k, AG_SHAPE(ELEMS));
        assert_non_null(ts[k]);
        assert_true((uintptr_t)ts[k]->data % 64 == 0);
    }
    for (int k = 0; k < N; k++)
        assert_true(ts[k]->data[0] == (float)k && ts[k]->data[ELEMS - 1] == (float)k);
    size_t want = (size_t)N * ELEMS * sizeof(float);
    assert_true(ag_ctx_bytes_used(c) >= want);
    ag_ctx_reset(c);
    assert_int_equal(ag_ctx_bytes_used(c), 0);
    assert_true(ag_ctx_bytes_peak(c) >= want);
    ag_ctx_free(c);
}

/* One training-like step: forward, backward, in ctx. */
static void small_step(ag_ctx *c, ag_tensor *w)
{
    ag_tensor *x = ag_randn(c, 0, 0.0f, 1.0f, AG_SHAPE(64, 32));
    ag_tensor *h = ag_relu(c, ag_matmul(c, x, w));
    assert_true(ag_backward(c, ag_mean_all(c, ag_mul(c, h, h))));
}

static void test_steady_loop_keeps_peak_constant(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *w = rand_leaf(1, 0.2f, AG_SHAPE(32, 48));
    small_step(c, w);
    size_t used = ag_ctx_bytes_used(c), peak = ag_ctx_bytes_peak(c);
    assert_true(used > 0);
    for (int i = 0; i < 20; i++) {
        ag_ctx_reset(c);
        small_step(c, w);
        assert_int_equal(ag_ctx_bytes_used(c), used);
        assert_int_equal(ag_ctx_bytes_peak(c), peak);
    }
    ag_tensor_free(w);
    ag_ctx_free(c);
}

/* After a step that needed several blocks, reset merges them into one, so
 * the same step again fits without allocating (the O(1)-reset promise). */
static void test_arena_merges_blocks_after_big_step(void **state)
{
    (void)state;
#ifdef AG_ARENA_DEBUG
    skip(); /* the debug arena frees every block at reset by design */
#endif
    ag_ctx *c = ag_ctx_new();
    for (int k = 0; k < 6; k++)
        ag_zeros(c, AG_SHAPE(1 << 20));
    assert_true(c->arena.nblocks > 1);
    ag_ctx_reset(c);
    assert_int_equal(c->arena.nblocks, 1);
    char *block = c->arena.blocks[0];
    for (int k = 0; k < 6; k++)
        ag_zeros(c, AG_SHAPE(1 << 20));
    assert_int_equal(c->arena.nblocks, 1);
    assert_ptr_equal(c->arena.blocks[0], block);
    ag_ctx_free(c);
}

static void test_persistent_tensors_survive_reset(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float d[4] = {1, 2, 3, 4};
    ag_tensor *p = ag_from_data(NULL, d, AG_SHAPE(2, 2));
    ag_tensor *w = ag_param("w", AG_SHAPE(2, 2));
    ag_fill(w, 0.5f);
    assert_true(ag_backward(c, ag_sum_all(c, ag_mul(c, p, w))));
    ag_ctx_reset(c);
    ag_ctx_reset(c);
    assert_close(p->data, d, 4, 0.0);
    assert_close(w->grad, d, 4, 0.0); /* d sum(p w)/dw = p, kept across resets */
    assert_string_equal(w->name, "w");
    assert_null(w->owner);

    /* and they are still valid inputs after the reset */
    catch_errors();
    ag_tensor *y = ag_add(c, p, w);
    assert_int_equal(error_count, 0);
    ag_set_error_handler(NULL, NULL);
    const float want[4] = {1.5f, 2.5f, 3.5f, 4.5f};
    assert_close(y->data, want, 4, 0.0);
    ag_tensor_free(p);
    ag_tensor_free(w);
    ag_ctx_free(c);
}

/* ================================================================ tensors */

static void test_rand_same_seed_same_numbers(void **state)
{
    (void)state;
    ag_tensor *a = ag_rand(NULL, 42, -2.0f, 3.0f, AG_SHAPE(1000));
    ag_tensor *b = ag_rand(NULL, 42, -2.0f, 3.0f, AG_SHAPE(1000));
    ag_tensor *o = ag_rand(NULL, 43, -2.0f, 3.0f, AG_SHAPE(1000));
    assert_memory_equal(a->data, b->data, 1000 * sizeof(float));
    int same = 0;
    double mean = 0;
    for (int i = 0; i < 1000; i++) {
        assert_true(a->data[i] >= -2.0f && a->data[i] < 3.0f);
        same += a->data[i] == o->data[i];
        mean += a->data[i] / 1000.0;
    }
    assert_true(same < 5);
    assert_float_equal(mean, 0.5, 0.15);

    ag_tensor *n1 = ag_randn(NULL, 7, 1.0f, 2.0f, AG_SHAPE(20000));
    ag_tensor *n2 = ag_randn(NULL, 7, 1.0f, 2.0f, AG_SHAPE(20000));
    assert_memory_equal(n1->data, n2->data, 20000 * sizeof(float));
    double m = 0, v = 0;
    for (int i = 0; i < 20000; i++)
        m += n1->data[i] / 20000.0;
    for (int i = 0; i < 20000; i++)
        v += (n1->data[i] - m) * (n1->data[i] - m) / 20000.0;
    assert_float_equal(m, 1.0, 0.06);
    assert_float_equal(sqrt(v), 2.0, 0.06);
    ag_tensor *ts[5] = {a, b, o, n1, n2};
    free_all(ts, 5);
}

/* With a ctx the seed argument is unused: the ctx's generator decides, it
 * advances between calls, and ag_ctx_manual_seed restarts it. */
static void test_ctx_generator_is_seedable(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_ctx_manual_seed(c, 5);
    ag_tensor *a = ag_rand(c, 111, 0.0f, 1.0f, AG_SHAPE(64));
    ag_tensor *a2 = ag_rand(c, 111, 0.0f, 1.0f, AG_SHAPE(64));
    assert_memory_not_equal(a->data, a2->data, 64 * sizeof(float));
    ag_ctx_manual_seed(c, 5);
    ag_tensor *b = ag_rand(c, 999, 0.0f, 1.0f, AG_SHAPE(64));
    assert_memory_equal(a->data, b->data, 64 * sizeof(float));
    ag_tensor *ref = ag_rand(NULL, 5, 0.0f, 1.0f, AG_SHAPE(64));
    assert_memory_equal(a->data, ref->data, 64 * sizeof(float));

    ag_ctx_manual_seed(c, 9);
    ag_tensor *n = ag_randn(c, 0, 0.0f, 1.0f, AG_SHAPE(64));
    ag_rng r = ag_rng_new(9);
    for (int i = 0; i < 64; i++)
        assert_true(n->data[i] == ag_rng_normal(&r));
    assert_int_equal(ag_ctx_rng(c)->seed, 9);
    ag_tensor_free(ref);
    ag_ctx_free(c);
}

static void test_constructors_values_and_shapes(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *z = ag_zeros(c, AG_SHAPE(2, 3));
    assert_shape(z, 2, 3);
    assert_int_equal(z->numel, 6);
    ag_tensor *o = ag_ones(NULL, AG_SHAPE(2, 1, 3, 1, 2)); /* 5-D, persistent */
    assert_shape(o, 2, 1, 3, 1, 2);
    assert_int_equal(o->numel, 12);
    ag_tensor *f = ag_full(c, -1.25f, AG_SHAPE(1, 2, 1, 2, 1, 2)); /* AG_MAX_DIMS */
    assert_shape(f, 1, 2, 1, 2, 1, 2);
    for (int i = 0; i < 6; i++)
        assert_true(z->data[i] == 0.0f);
    for (int i = 0; i < 12; i++)
        assert_true(o->data[i] == 1.0f);
    for (int i = 0; i < 8; i++)
        assert_true(f->data[i] == -1.25f);

    float src[4] = {1, 2, 3, 4};
    ag_tensor *d = ag_from_data(c, src, AG_SHAPE(4, 1));
    src[0] = 100; /* copied, not aliased */
    assert_shape(d, 4, 1);
    assert_true(d->data[0] == 1.0f && d->data[3] == 4.0f);

    ag_tensor *s = ag_scalar(c, 3.5f);
    assert_scalar_shape(s);
    assert_int_equal(s->numel, 1);
    assert_true(s->data[0] == 3.5f);
    ag_tensor *e = ag_zeros(c, AG_SHAPE(3, 0));
    assert_shape(e, 3, 0);
    assert_int_equal(e->numel, 0);

    /* defaults: no grad, leaf, unnamed; params are zeroed, named, requiring grad */
    assert_false(z->requires_grad);
    assert_null(z->op);
    assert_null(z->name);
    assert_ptr_equal(z->owner, c);
    char name[8] = "fc.w";
    ag_tensor *p = ag_param(name, AG_SHAPE(3));
    name[0] = 'X'; /* the name is copied */
    assert_string_equal(p->name, "fc.w");
    assert_true(p->requires_grad);
    for (int i = 0; i < 3; i++)
        assert_true(p->data[i] == 0.0f);
    ag_tensor_free(o);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static void test_item_reads_the_one_element(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    assert_true(ag_item(ag_scalar(c, -7.5f)) == -7.5f);
    const float d[1] = {0.125f};
    assert_true(ag_item(ag_from_data(c, d, AG_SHAPE(1, 1, 1))) == 0.125f);
    const float xd[3] = {1, 2, 3};
    ag_tensor *x = ag_from_data(c, xd, AG_SHAPE(3));
    assert_true(ag_item(ag_sum_all(c, x)) == 6.0f);
    ag_ctx_free(c);
}

static void test_shape_str(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    char b[64];
    assert_string_equal(ag_shape_str(ag_zeros(c, AG_SHAPE(2, 3, 4)), b, sizeof b), "(2, 3, 4)");
    assert_string_equal(ag_shape_str(ag_scalar(c, 1), b, sizeof b), "()");
    assert_string_equal(ag_shape_str(ag_zeros(c, AG_SHAPE(5)), b, sizeof b), "(5)");
    assert_string_equal(ag_shape_str(ag_zeros(c, AG_SHAPE(0, 7)), b, sizeof b), "(0, 7)");
    assert_string_equal(ag_shape_str(ag_zeros(c, AG_SHAPE(1, 2, 1, 2, 1)), b, sizeof b),
                        "(1, 2, 1, 2, 1)");
    /* a short buffer gets a terminated prefix */
    char s[5];
    memset(s, 'x', sizeof s);
    ag_shape_str(ag_zeros(c, AG_SHAPE(2, 3, 4)), s, sizeof s);
    assert_string_equal(s, "(2, ");
    ag_ctx_free(c);
}

static void print_case(const ag_tensor *t, const char *want)
{
    char *got = capture(ag_print, t);
    assert_string_equal(got, want);
    free(got);
}

static void test_print_format(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float d[6] = {1, 2.5f, -3, 0.1f, 1e-7f, 123456789.0f};
    print_case(ag_from_data(c, d, AG_SHAPE(2, 3)),
               "tensor(2, 3) [[1, 2.5, -3], [0.1, 1e-07, 1.23457e+08]]\n");
    print_case(ag_from_data(c, d, AG_SHAPE(3)), "tensor(3) [1, 2.5, -3]\n");
    print_case(ag_from_data(c, d, AG_SHAPE(3, 1, 2)),
               "tensor(3, 1, 2) [[[1, 2.5]], [[-3, 0.1]], [[1e-07, 1.23457e+08]]]\n");
    print_case(ag_scalar(c, -0.5f), "tensor() -0.5\n");
    print_case(ag_zeros(c, AG_SHAPE(2, 0)), "tensor(2, 0) []\n");
    ag_ctx_free(c);
}

/* ================================================================ DOT */

/* loss = sum(tanh(x @ W^T)) with W a named parameter */
static void test_write_dot_has_ops_shapes_names_and_edges(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *w = ag_param("layer.weight", AG_SHAPE(3, 2));
    ag_tensor *x = ag_ones(c, AG_SHAPE(4, 2));
    ag_tensor *y = ag_matmul_nt(c, x, w);
    ag_tensor *h = ag_tanh(c, y);
    ag_tensor *loss = ag_sum_all(c, h);
    char *dot = capture(ag_write_dot, loss);

    assert_true(strncmp(dot, "digraph ag {\n", 13) == 0);
    assert_true(strcmp(dot + strlen(dot) - 2, "}\n") == 0);
    assert_contains(dot, "label=\"matmul_nt\"");
    assert_contains(dot, "label=\"tanh\"");
    assert_contains(dot, "label=\"sum\"");
    char piece[256];
    snprintf(piece, sizeof piece,
             "t%p [shape=record, label=\"{layer.weight | (3, 2)}\", style=filled, "
             "fillcolor=lightblue];", (void *)w);
    assert_contains(dot, piece);
    snprintf(piece, sizeof piece, "t%p [shape=record, label=\"{(4, 2)}\"];", (void *)x);
    assert_contains(dot, piece);
    snprintf(piece, sizeof piece, "t%p [shape=record, label=\"{(4, 3)}\"];", (void *)y);
    assert_contains(dot, piece);
    snprintf(piece, sizeof piece,
             "t%p [shape=record, label=\"{()}\", style=filled, fillcolor=lightgrey];",
             (void *)loss);
    assert_contains(dot, piece);
    /* edges: inputs -> op -> output */
    const void *edges[][2] = {{x, y}, {w, y}, {y, h}, {h, loss}};
    for (int k = 0; k < 4; k++) {
        snprintf(piece, sizeof piece, "  t%p -> op%p;\n", edges[k][0], edges[k][1]);
        assert_contains(dot, piece);
    }
    const void *outs[3] = {y, h, loss};
    for (int k = 0; k < 3; k++) {
        snprintf(piece, sizeof piece, "  op%p -> t%p;\n", outs[k], outs[k]);
        assert_contains(dot, piece);
    }
    assert_int_equal(count_of(dot, " -> "), 7);   /* 3 op->t, 4 t->op */
    assert_int_equal(count_of(dot, "shape=record"), 5);
    assert_int_equal(count_of(dot, "shape=ellipse"), 3);
    free(dot);
    ag_tensor_free(w);
    ag_ctx_free(c);
}

/* A tensor reached twice (x*x) is one node with two edges into the op. */
static void test_write_dot_lists_shared_node_once(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_param("x", AG_SHAPE(2));
    ag_tensor *y = ag_mul(c, x, x);
    char *dot = capture(ag_write_dot, y);
    char piece[128];
    snprintf(piece, sizeof piece, "t%p [", (void *)x);
    assert_int_equal(count_of(dot, piece), 1);
    snprintf(piece, sizeof piece, "  t%p -> op%p;\n", (void *)x, (void *)y);
    assert_int_equal(count_of(dot, piece), 2);
    assert_contains(dot, "label=\"mul\"");
    free(dot);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* Label syntax in a parameter's name is escaped, so the DOT stays valid. */
static void test_write_dot_escapes_names(void **state)
{
    (void)state;
    ag_tensor *w = ag_param("w{1}|\"a\"<b>\\", AG_SHAPE(2));
    char *dot = capture(ag_write_dot, w);
    assert_contains(dot, "label=\"{w\\{1\\}\\|\\\"a\\\"\\<b\\>\\\\ | (2)}\"");
    free(dot);
    ag_tensor_free(w);
}

static void test_save_dot_writes_the_same_text(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *w = ag_param("w", AG_SHAPE(2, 2));
    ag_tensor *loss = ag_mean_all(c, ag_relu(c, w));
    char *want = capture(ag_write_dot, loss);
    char path[] = "/tmp/ag_test_dotXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_true(ag_save_dot(path, loss));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char got[4096];
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    remove(path);
    assert_string_equal(got, want);
    assert_contains(got, "label=\"mean\"");
    assert_contains(got, "label=\"relu\"");
    assert_false(ag_save_dot("/nonexistent-dir/graph.dot", loss));
    free(want);
    ag_tensor_free(w);
    ag_ctx_free(c);
}


/* ---- ag_release: memory no backward reads is reused; the rest stays */

static void test_release_reuses_memory_backward_does_not_read(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = rand_leaf(3, 1.0f, AG_SHAPE(1000));
    ag_tensor *y = ag_mul_scalar(c, x, 2.0f);   /* mul_scalar's backward reads nothing */
    ag_tensor *z = ag_add_scalar(c, y, 1.0f);   /* nor does add_scalar's */
    float *old = y->data;
    size_t used = ag_ctx_bytes_used(c);
    ag_release(c, y);
    assert_null(y->data);
    ag_tensor *w = ag_empty(c, AG_SHAPE(10, 100)); /* same size: gets y's buffer */
    assert_ptr_equal(w->data, old);
    assert_true(ag_ctx_bytes_used(c) < used + 1000 * sizeof(float));
    /* the graph still differentiates: dz/dx = 2 */
    assert_true(ag_backward(c, ag_sum_all(c, z)));
    for (int i = 0; i < 1000; i++)
        assert_true(x->grad[i] == 2.0f);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

static void test_release_keeps_what_backward_reads(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    float xd[3] = {0.5f, -1.0f, 2.0f};
    ag_tensor *x = leaf(xd, AG_SHAPE(3));
    ag_tensor *y = ag_exp(c, x);      /* exp's backward reads y */
    ag_tensor *z = ag_mul(c, y, y);   /* and mul's reads both operands */
    ag_release(c, y);
    assert_non_null(y->data);
    ag_tensor *w = ag_zeros(c, AG_SHAPE(3)); /* must not get y's buffer */
    assert_ptr_not_equal(w->data, y->data);
    assert_true(ag_backward(c, ag_sum_all(c, z)));
    for (int i = 0; i < 3; i++) /* d/dx exp(x)^2 = 2 exp(2x) */
        assert_float_equal(x->grad[i], 2.0f * expf(2.0f * xd[i]), 1e-4f * expf(2.0f * xd[i]));
    ag_ctx_free(c);
    ag_tensor_free(x);
}

static void test_release_keeps_a_viewed_buffer(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_full(c, 7.0f, AG_SHAPE(4, 5));
    ag_tensor *v = ag_reshape(c, y, AG_SHAPE(20));
    ag_release(c, y);
    assert_non_null(y->data);
    ag_tensor *w = ag_full(c, 1.0f, AG_SHAPE(20)); /* must not land on the view's data */
    assert_ptr_not_equal(w->data, v->data);
    for (int i = 0; i < 20; i++)
        assert_true(v->data[i] == 7.0f);
    float *buf = v->data;
    ag_release(c, v); /* the last user of the buffer lets it go */
    assert_null(v->data);
    assert_null(y->data);
    ag_tensor *u = ag_empty(c, AG_SHAPE(20));
    assert_ptr_equal(u->data, buf);
    ag_ctx_free(c);
}

static void test_released_tensor_cannot_be_used(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_ones(c, AG_SHAPE(2));
    ag_release(c, y);
    assert_ag_error(ag_add(c, y, y), "add", "ag_release");
    ag_tensor *one = ag_scalar(c, 2.0f);
    ag_release(c, one);
    float v = 0;
    assert_ag_error(v = ag_item(one), "ag_item", "ag_release");
    assert_true(isnan(v));
    ag_tensor *p = ag_param("p", AG_SHAPE(2)); /* persistent tensors are left alone */
    ag_release(c, p);
    assert_non_null(p->data);
    assert_non_null(ag_add(c, p, p));
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static void test_release_in_no_grad_mode_frees(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_tensor *x = rand_leaf(1, 1.0f, AG_SHAPE(256));
    size_t peak0 = 0;
    for (int step = 0; step < 50; step++) { /* a chain of exps, each released */
        ag_tensor *y = ag_exp(c, x), *z = ag_exp(c, y);
        ag_release(c, y);
        ag_release(c, z);
        if (step == 1)
            peak0 = ag_ctx_bytes_used(c);
    }
    /* after the first rounds only headers are new: 48 more rounds, 2 headers each */
    assert_true(ag_ctx_bytes_used(c) <= peak0 + 48 * 2 * 256);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

/* add, sub and reshape hand their output's grad buffer to an input that has
 * none yet (ag_grad_pass); the grads must be what copying gives, including
 * x + x, an input that later gets more grad, and a retained output grad. */
static ag_tensor *f_passes(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    ag_tensor *u = ag_mul_scalar(c, in[0], 2.0f);                 /* non-leaves */
    ag_tensor *v = ag_tanh(c, in[0]);
    ag_tensor *s = ag_add(c, u, v);                               /* u takes s's grad */
    ag_tensor *d = ag_sub(c, ag_add(c, s, s), v);                 /* s + s; v gets more */
    ag_tensor *r = ag_reshape(c, ag_add(c, d, u), AG_SHAPE(12));  /* u again, then a view */
    return weighted_sum(c, ag_mul(c, r, r));
}

static void test_grad_pass_gives_the_copied_grads(void **state)
{
    (void)state;
    ag_tensor *x = ag_randn(NULL, 3, 0.0f, 1.0f, AG_SHAPE(3, 4));
    ag_set_requires_grad(x, true);
    ag_tensor *in[1] = {x};
    ag_gradcheck_opts o = ag_gradcheck_defaults();
    o.quiet = true;
    if (!ag_gradcheck(f_passes, in, 1, NULL, &o))
        fail_msg("%s", o.report);
    /* by hand: y = 2x + tanh x; d = 2y - tanh x = 4x + tanh x; r = d + 2x = 6x + tanh x,
     * so dL/dx = w 2 r (6 + 1 - tanh^2 x) for L = sum(w r^2) */
    ag_ctx *c = ag_ctx_new();
    ag_zero_grad(x);
    ag_tensor *u = ag_mul_scalar(c, x, 2.0f);
    ag_tensor *s = ag_add(c, u, ag_tanh(c, x));
    ag_retain_grad(s); /* kept: s must not give its buffer away */
    ag_tensor *L = ag_sum_all(c, ag_mul(c, s, s));
    assert_true(ag_backward(c, L));
    for (int i = 0; i < 12; i++) {
        double t = tanh((double)x->data[i]), sv = 2.0 * x->data[i] + t;
        assert_float_equal(s->grad[i], 2.0 * sv, 1e-5);
        assert_float_equal(x->grad[i], 2.0 * sv * (3.0 - t * t), 1e-4);
    }
    ag_ctx_free(c);
    ag_tensor_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_used_twice_gets_both_contributions),
        cmocka_unit_test(test_diamond_adds_both_paths),
        cmocka_unit_test(test_shared_subgraph_used_by_two_branches),
        cmocka_unit_test(test_leaf_grads_accumulate_until_zero_grad),
        cmocka_unit_test(test_nonleaf_grad_dropped_after_backward),
        cmocka_unit_test(test_retain_grad_keeps_nonleaf_grad),
        cmocka_unit_test(test_backward_with_seeds_output_grad),
        cmocka_unit_test(test_backward_on_leaf),
        cmocka_unit_test(test_no_grad_mode_records_nothing),
        cmocka_unit_test(test_output_of_constants_is_not_recorded),
        cmocka_unit_test(test_backward_by_fresh_ctxs_over_one_graph),
        cmocka_unit_test(test_deep_chain_backprops_without_recursion),
        cmocka_unit_test(test_custom_op_participates_in_backward),
        cmocka_unit_test(test_arena_bytes_used_grows_and_resets),
        cmocka_unit_test(test_arena_grows_on_demand),
        cmocka_unit_test(test_steady_loop_keeps_peak_constant),
        cmocka_unit_test(test_arena_merges_blocks_after_big_step),
        cmocka_unit_test(test_persistent_tensors_survive_reset),
        cmocka_unit_test(test_rand_same_seed_same_numbers),
        cmocka_unit_test(test_ctx_generator_is_seedable),
        cmocka_unit_test(test_constructors_values_and_shapes),
        cmocka_unit_test(test_item_reads_the_one_element),
        cmocka_unit_test(test_shape_str),
        cmocka_unit_test(test_print_format),
        cmocka_unit_test(test_write_dot_has_ops_shapes_names_and_edges),
        cmocka_unit_test(test_write_dot_lists_shared_node_once),
        cmocka_unit_test(test_write_dot_escapes_names),
        cmocka_unit_test(test_save_dot_writes_the_same_text),
        cmocka_unit_test(test_release_reuses_memory_backward_does_not_read),
        cmocka_unit_test(test_release_keeps_what_backward_reads),
        cmocka_unit_test(test_release_keeps_a_viewed_buffer),
        cmocka_unit_test(test_released_tensor_cannot_be_used),
        cmocka_unit_test(test_release_in_no_grad_mode_frees),
        cmocka_unit_test(test_grad_pass_gives_the_copied_grads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
