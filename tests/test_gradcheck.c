/* test_gradcheck.c - gradcheck itself: it passes right backwards and rejects
 * a backward that is 1% off, elementwise and by directions, with a report
 * naming the input, the element and both values. */
#include "test_util.h"

#include "ag_op.h" /* user-defined ops */

/* A user-defined op, y = 2x, whose backward can be told to be wrong by a factor. */
static float planted_factor = 1.0f;

static void twice_backward(ag_ctx *ctx, ag_tensor *out)
{
    float *gx = ag_grad_of(ctx, ag_input(out, 0));
    if (gx)
        for (int64_t i = 0; i < out->numel; i++)
            gx[i] += 2.0f * planted_factor * out->grad[i];
}

static const ag_op twice_op = {.name = "twice", .backward = twice_backward};

static ag_tensor *twice(ag_ctx *c, ag_tensor *x)
{
    ag_tensor *out = ag_result(c, &twice_op, &x, 1, x->ndim, x->shape);
    for (int64_t i = 0; i < x->numel; i++)
        out->data[i] = 2.0f * x->data[i];
    return out;
}

/* sum(tanh(twice(x)) * W) */
static ag_tensor *f_twice(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return weighted_sum(c, ag_tanh(c, twice(c, in[0])));
}

static void check_planted(int64_t numel, bool expect_pass, const char *expect_in_report)
{
    ag_tensor *x = rand_leaf(7, 0.5f, AG_SHAPE(numel));
    ag_tensor *in[1] = {x};
    ag_gradcheck_opts o = ag_gradcheck_defaults();
    o.quiet = true;
    bool ok = ag_gradcheck(f_twice, in, 1, NULL, &o);
    if (ok != expect_pass)
        fail_msg("numel %lld factor %g: gradcheck said %d (%s)", (long long)numel,
                 (double)planted_factor, ok, o.report);
    if (expect_in_report && !strstr(o.report, expect_in_report))
        fail_msg("report \"%s\" lacks \"%s\"", o.report, expect_in_report);
    /* gradcheck leaves data as it found it and grads zeroed */
    ag_tensor *ref = ag_randn(NULL, TEST_RNG(7), 0.0f, 0.5f, AG_SHAPE(numel));
    assert_close(x->data, ref->data, numel, 0.0);
    for (int64_t i = 0; i < numel; i++)
        assert_true(x->grad[i] == 0.0f);
    ag_tensor_free(ref);
    ag_tensor_free(x);
}

static void test_right_backward_passes(void **state)
{
    (void)state;
    planted_factor = 1.0f;
    check_planted(10, true, NULL);   /* elementwise */
    check_planted(500, true, NULL);  /* directions */
}

static void test_one_percent_off_fails_elementwise(void **state)
{
    (void)state;
    planted_factor = 1.01f;
    check_planted(10, false, "input 0 element 0 (0): analytic");
    planted_factor = 0.99f;
    check_planted(10, false, "numeric");
    planted_factor = 1.0f;
}

static void test_one_percent_off_fails_by_directions(void **state)
{
    (void)state;
    planted_factor = 1.01f;
    check_planted(500, false, "input 0 direction 0");
    planted_factor = 1.0f;
}

/* An error in one element only is caught and that element is named. */
static void one_wrong_backward(ag_ctx *ctx, ag_tensor *out)
{
    float *gx = ag_grad_of(ctx, ag_input(out, 0));
    for (int64_t i = 0; i < out->numel; i++)
        gx[i] += (i == 5 ? 2.02f : 2.0f) * out->grad[i];
}
static const ag_op one_wrong_op = {.name = "one_wrong", .backward = one_wrong_backward};

static ag_tensor *f_one_wrong(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    ag_tensor *x = in[0];
    ag_tensor *out = ag_result(c, &one_wrong_op, &x, 1, x->ndim, x->shape);
    for (int64_t i = 0; i < x->numel; i++)
        out->data[i] = 2.0f * x->data[i];
    return ag_sum_all(c, ag_mul(c, out, out));
}

static void test_names_the_wrong_element(void **state)
{
    (void)state;
    float d[12] = {0.5f, -1, 1.5f, 0.25f, 1, 2, -0.5f, 0.75f, 1, -2, 0.5f, 1};
    ag_tensor *x = leaf(d, AG_SHAPE(3, 4));
    x->name = NULL;
    ag_tensor *in[1] = {x};
    ag_gradcheck_opts o = ag_gradcheck_defaults();
    o.quiet = true;
    assert_false(ag_gradcheck(f_one_wrong, in, 1, NULL, &o));
    /* element 5 is (1, 1); d/dx sum (2x)^2 = 8x = 16 there, analytic 16.16 */
    assert_non_null(strstr(o.report, "element 5 (1, 1)"));
    assert_non_null(strstr(o.report, "analytic 16.16"));
    assert_non_null(strstr(o.report, "numeric 16"));
    ag_tensor_free(x);
}

static void test_named_parameter_in_report(void **state)
{
    (void)state;
    planted_factor = 1.01f;
    ag_tensor *p = ag_param("layer.weight", AG_SHAPE(4));
    ag_fill(p, 0.3f);
    ag_tensor *in[1] = {p};
    ag_gradcheck_opts o = ag_gradcheck_defaults();
    o.quiet = true;
    assert_false(ag_gradcheck(f_twice, in, 1, NULL, &o));
    assert_non_null(strstr(o.report, "input 0 layer.weight element"));
    planted_factor = 1.0f;
    ag_tensor_free(p);
}

static ag_tensor *f_const(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)in;
    (void)n;
    (void)user;
    return ag_scalar(c, 1.0f);
}

static void test_rejects_bad_setups(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(1, 1.0f, AG_SHAPE(3));
    ag_tensor *in[1] = {x};
    ag_gradcheck_opts o = ag_gradcheck_defaults();
    o.quiet = true;
    assert_false(ag_gradcheck(f_const, in, 1, NULL, &o));
    assert_non_null(strstr(o.report, "does not depend"));

    ag_ctx *c = ag_ctx_new();
    ag_tensor *arena_t = ag_zeros(c, AG_SHAPE(3));
    ag_tensor *in2[1] = {arena_t};
    assert_false(ag_gradcheck(f_twice, in2, 1, NULL, &o));
    assert_non_null(strstr(o.report, "persistent"));
    ag_ctx_free(c);
    ag_tensor_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_right_backward_passes),
        cmocka_unit_test(test_one_percent_off_fails_elementwise),
        cmocka_unit_test(test_one_percent_off_fails_by_directions),
        cmocka_unit_test(test_names_the_wrong_element),
        cmocka_unit_test(test_named_parameter_in_report),
        cmocka_unit_test(test_rejects_bad_setups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
