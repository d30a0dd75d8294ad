/* test_engine_memory.c - where the engine's memory goes: the arena (bytes
 * used/peak, reset, growth past the first block, merging blocks, a steady
 * loop that stops allocating, persistent tensors surviving resets) and
 * ag_release (memory no backward reads is reused, the rest stays; released
 * tensors cannot be used) and the grads a pass hands over. */
#include "test_util.h"

#include "internal.h" /* the arena's block count in the merge test, a tensor's size */

/* ================================================================ arena */

static void test_arena_bytes_used_grows_and_resets(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    assert_int_equal(ag_ctx_bytes_used(c), 0);
    ag_zeros(c, AG_SHAPE(1000));
    size_t u1 = ag_ctx_bytes_used(c);
    assert_true(u1 >= 1000 * sizeof(float) + sizeof(ag_node));
    assert_true(u1 <= 1000 * sizeof(float) + sizeof(ag_node) + 128);
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
    ag_tensor *x = ag_randn(c, NULL, 0.0f, 1.0f, AG_SHAPE(64, 32));
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
    assert_null(ag_tensor_ctx(w));

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
    ag_tensor *x = ag_randn(NULL, TEST_RNG(3), 0.0f, 1.0f, AG_SHAPE(3, 4));
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
        cmocka_unit_test(test_arena_bytes_used_grows_and_resets),
        cmocka_unit_test(test_arena_grows_on_demand),
        cmocka_unit_test(test_steady_loop_keeps_peak_constant),
        cmocka_unit_test(test_arena_merges_blocks_after_big_step),
        cmocka_unit_test(test_persistent_tensors_survive_reset),
        cmocka_unit_test(test_release_reuses_memory_backward_does_not_read),
        cmocka_unit_test(test_release_keeps_what_backward_reads),
        cmocka_unit_test(test_release_keeps_a_viewed_buffer),
        cmocka_unit_test(test_released_tensor_cannot_be_used),
        cmocka_unit_test(test_release_in_no_grad_mode_frees),
        cmocka_unit_test(test_grad_pass_gives_the_copied_grads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
