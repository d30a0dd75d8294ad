/* test_conv_parity.c - conv1d, conv2d and the max/avg pools against PyTorch:
 * for every case in tests/fixtures/conv_ops.safetensors (tools/fixtures_conv.py:
 * odd sizes, strides, padding, dilation > 1, groups > 1, depthwise, 1x1,
 * ties in max pooling) the output and the grads of input, weight and bias,
 * with backward seeded by the fixture's output grad, are within 1e-4 of
 * PyTorch's relative to each tensor's largest value. */
#include "test_util.h"

#include <stdlib.h>

#include "nn.h"

static const char *fixture_dir = "tests/fixtures";

static nn_st *open_fixture(void)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/conv_ops.safetensors", fixture_dir);
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    return f;
}

/* The fixture's tensor name (persistent; NULL when absent), requiring grad. */
static ag_tensor *load(const nn_st *f, const char *name)
{
    int nd;
    int64_t shape[AG_MAX_DIMS];
    char err[256];
    if (!nn_st_shape(f, name, &nd, shape))
        return NULL;
    ag_tensor *t = ag_empty(NULL, nd, shape);
    if (!nn_st_read(f, name, t->data, nd, shape, err, sizeof err))
        fail_msg("%s", err);
    ag_set_requires_grad(t, true);
    return t;
}

static ag_tensor *need(const nn_st *f, const char *name)
{
    ag_tensor *t = load(f, name);
    if (!t)
        fail_msg("fixture lacks %s", name);
    return t;
}

/* got (the data of a tensor shaped like t) matches the fixture's want: same
 * shape, max |got - want| <= 1e-4 max |want| */
static void check(const char *what, const float *got, const ag_tensor *t, const ag_tensor *want)
{
    if (!got)
        fail_msg("%s: missing", what);
    if (!ag_same_shape(t, want)) {
        char a[128], b[128];
        fail_msg("%s: shape %s, PyTorch's %s", what, ag_shape_str(t, a, sizeof a),
                 ag_shape_str(want, b, sizeof b));
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < want->numel; i++) {
        double d = fabs((double)got[i] - want->data[i]);
        num = d > num || isnan(d) ? d : num;
        den = fabs(want->data[i]) > den ? fabs(want->data[i]) : den;
    }
    if (!(num <= 1e-4 * den))
        fail_msg("%s: max error %.3g relative to %.3g", what, num / den, den);
}

static const char *key(char *buf, const char *op, int i, const char *what)
{
    snprintf(buf, 128, "%s.%d.%s", op, i, what);
    return buf;
}

typedef ag_tensor *(*conv_fn)(ag_ctx *, ag_tensor *, ag_tensor *, ag_tensor *, const ag_conv_opts *);
typedef ag_tensor *(*pool_fn)(ag_ctx *, ag_tensor *, const ag_pool_opts *);

/* Runs every case of op in the fixture; returns how many. */
static int run_cases(const nn_st *f, const char *op, conv_fn conv, pool_fn pool)
{
    char k[128], what[160];
    int i = 0;
    for (; nn_st_has(f, key(k, op, i, "x")); i++) {
        ag_tensor *x = need(f, key(k, op, i, "x")), *gy = need(f, key(k, op, i, "gy"));
        ag_tensor *opts = need(f, key(k, op, i, "opts"));
        ag_tensor *w = conv ? need(f, key(k, op, i, "w")) : NULL;
        ag_tensor *b = conv ? load(f, key(k, op, i, "b")) : NULL;
        const float *o = opts->data;
        ag_ctx *c = ag_ctx_new();
        ag_tensor *y;
        if (conv) {
            ag_conv_opts co = {.stride = {(int)o[0], (int)o[1]}, .padding = {(int)o[2], (int)o[3]},
                               .dilation = {(int)o[4], (int)o[5]}, .groups = (int)o[6]};
            y = conv(c, x, w, b, &co);
        } else {
            ag_pool_opts po = {.kernel = {(int)o[0], (int)o[1]}, .stride = {(int)o[2], (int)o[3]},
                               .padding = {(int)o[4], (int)o[5]}};
            y = pool(c, x, &po);
        }
        assert_non_null(y);
        assert_true(ag_backward_with(c, y, gy));
        /* the output, then the grads of x, w and b */
        const char *names[4] = {"y", "gx", "gw", "gb"};
        ag_tensor *of[4] = {y, x, w, b};
        for (int j = 0; j < 4; j++) {
            ag_tensor *want = load(f, key(k, op, i, names[j]));
            if (!want) {
                assert_null(of[j]); /* pools have no w, b; some convs no b */
                continue;
            }
            snprintf(what, sizeof what, "%s.%d %s", op, i, names[j]);
            check(what, j ? of[j]->grad : y->data, of[j], want);
            ag_tensor_free(want);
        }
        ag_ctx_free(c);
        ag_tensor *all[5] = {x, gy, opts, w, b};
        for (int j = 0; j < 5; j++)
            ag_tensor_free(all[j]);
    }
    return i;
}

static void test_conv2d_matches_pytorch(void **state)
{
    (void)state;
    nn_st *f = open_fixture();
    assert_int_equal(run_cases(f, "conv2d", ag_conv2d, NULL), 6);
    nn_st_close(f);
}

static void test_conv1d_matches_pytorch(void **state)
{
    (void)state;
    nn_st *f = open_fixture();
    assert_int_equal(run_cases(f, "conv1d", ag_conv1d, NULL), 4);
    nn_st_close(f);
}

static void test_pools_match_pytorch(void **state)
{
    (void)state;
    nn_st *f = open_fixture();
    assert_int_equal(run_cases(f, "max_pool2d", NULL, ag_max_pool2d), 4);
    assert_int_equal(run_cases(f, "avg_pool2d", NULL, ag_avg_pool2d), 4);
    assert_int_equal(run_cases(f, "max_pool1d", NULL, ag_max_pool1d), 3);
    assert_int_equal(run_cases(f, "avg_pool1d", NULL, ag_avg_pool1d), 3);
    nn_st_close(f);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_matches_pytorch),
        cmocka_unit_test(test_conv1d_matches_pytorch),
        cmocka_unit_test(test_pools_match_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
