/* test_elem_parity.c - the elementwise ops against PyTorch: for each case in
 * tests/fixtures/elem_ops.safetensors (made by tools/fixtures_elem.py, PyTorch
 * in float64 on the same float32 inputs), the output and the gradient of
 * sum(y * g) for each input match within 1e-4 relative (plus 1e-7 absolute,
 * for the values that are 0 or nearly so).
 *
 * Unary: exp, log, tanh, sigmoid, gelu (tanh form), gelu_erf, silu, softplus,
 * abs, sin and cos (some arguments beyond the fast range), clamp with four
 * pairs of bounds (infinite ones, and min > max). Binary: maximum and minimum
 * broadcast (3,1,4) with (5,4) and of one shape, with ties; where with cond
 * (3,1), a (3,4), b (4), and all of one shape. */
#include "test_util.h"

#include <stdlib.h>

#include "nn.h"

static const char *fixture_dir = "tests/fixtures";
static nn_st *fx;

static int open_fixture(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/elem_ops.safetensors", fixture_dir);
    fx = nn_st_open(path, err, sizeof err);
    if (!fx)
        fprintf(stderr, "%s\n", err);
    return fx ? 0 : -1;
}

static int close_fixture(void **state)
{
    (void)state;
    nn_st_close(fx);
    return 0;
}

/* fixture tensor `name` as a persistent tensor of its shape */
static ag_tensor *load(const char *name, bool requires_grad)
{
    int nd;
    int64_t shape[AG_MAX_DIMS];
    char err[256];
    if (!nn_st_shape(fx, name, &nd, shape))
        fail_msg("fixture lacks %s", name);
    ag_tensor *t = ag_empty(NULL, nd, shape);
    if (!nn_st_read(fx, name, t->data, nd, shape, err, sizeof err))
        fail_msg("%s", err);
    ag_set_requires_grad(t, requires_grad);
    return t;
}

static ag_tensor *loadf(const char *name, const char *part, bool requires_grad)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", name, part);
    return load(key, requires_grad);
}

/* got (n floats) == fixture's `name.part` within 1e-4 relative + 1e-7 */
static void check(const char *name, const char *part, const float *got, int64_t n)
{
    ag_tensor *want = loadf(name, part, false);
    assert_non_null(got);
    assert_int_equal(n, want->numel);
    for (int64_t i = 0; i < n; i++) {
        double w = want->data[i], d = fabs((double)got[i] - w);
        if (!(d <= 1e-4 * fabs(w) + 1e-7))
            fail_msg("%s.%s[%lld] = %.9g, PyTorch %.9g", name, part, (long long)i,
                     (double)got[i], w);
    }
    ag_tensor_free(want);
}

typedef ag_tensor *(*unary_fn)(ag_ctx *, ag_tensor *);

static void check_unary(const char *name, unary_fn f)
{
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = loadf(name, "x", true), *g = loadf(name, "g", false);
    ag_tensor *y = f(c, x);
    assert_non_null(y);
    check(name, "y", y->data, y->numel);
    assert_true(ag_backward_with(c, y, g));
    check(name, "dx", x->grad, x->numel);
    ag_tensor_free(x);
    ag_tensor_free(g);
    ag_ctx_free(c);
}

static void test_unary_matches_pytorch(void **state)
{
    (void)state;
    const struct {
        const char *name;
        unary_fn f;
    } ops[] = {
        {"exp", ag_exp},   {"log", ag_log},           {"tanh", ag_tanh},   {"sigmoid", ag_sigmoid},
        {"gelu", ag_gelu}, {"gelu_erf", ag_gelu_erf}, {"silu", ag_silu},   {"softplus", ag_softplus},
        {"abs", ag_abs},   {"sin", ag_sin},           {"cos", ag_cos},
    };
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        check_unary(ops[k].name, ops[k].f);
}

static void test_clamp_matches_pytorch(void **state)
{
    (void)state;
    for (int k = 0; k < 4; k++) {
        char name[16];
        snprintf(name, sizeof name, "clamp%d", k);
        ag_ctx *c = ag_ctx_new();
        ag_tensor *x = loadf(name, "x", true), *g = loadf(name, "g", false);
        ag_tensor *bounds = loadf(name, "bounds", false);
        ag_tensor *y = ag_clamp(c, x, bounds->data[0], bounds->data[1]);
        assert_non_null(y);
        check(name, "y", y->data, y->numel);
        assert_true(ag_backward_with(c, y, g));
        check(name, "dx", x->grad, x->numel);
        ag_tensor_free(x);
        ag_tensor_free(g);
        ag_tensor_free(bounds);
        ag_ctx_free(c);
    }
}

static void check_binary(const char *name, ag_tensor *(*f)(ag_ctx *, ag_tensor *, ag_tensor *),
                         bool where)
{
    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = loadf(name, "a", true), *b = loadf(name, "b", true), *g = loadf(name, "g", false);
    ag_tensor *cond = where ? loadf(name, "cond", false) : NULL;
    ag_tensor *y = where ? ag_where(c, cond, a, b) : f(c, a, b);
    assert_non_null(y);
    check(name, "y", y->data, y->numel);
    assert_true(ag_backward_with(c, y, g));
    check(name, "da", a->grad, a->numel);
    check(name, "db", b->grad, b->numel);
    ag_tensor *ts[4] = {a, b, g, cond};
    free_all(ts, where ? 4 : 3);
    ag_ctx_free(c);
}

static void test_maximum_minimum_match_pytorch(void **state)
{
    (void)state;
    check_binary("maximum", ag_maximum, false);
    check_binary("minimum", ag_minimum, false);
    check_binary("maximum_same", ag_maximum, false);
    check_binary("minimum_same", ag_minimum, false);
}

static void test_where_matches_pytorch(void **state)
{
    (void)state;
    check_binary("where", NULL, true);
    check_binary("where_same", NULL, true);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_matches_pytorch),
        cmocka_unit_test(test_clamp_matches_pytorch),
        cmocka_unit_test(test_maximum_minimum_match_pytorch),
        cmocka_unit_test(test_where_matches_pytorch),
    };
    return cmocka_run_group_tests(tests, open_fixture, close_fixture);
}
