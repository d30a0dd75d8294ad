/* nn_arch_util.h - what the test_nn_arch*.c suites share: reading the
 * PyTorch fixtures of tools/fixtures_nn_arch.py into tensors, comparing
 * against them at 1e-4, and gradchecking a function of several inputs and a
 * registry's parameters. */
#ifndef NN_ARCH_UTIL_H
#define NN_ARCH_UTIL_H

#include "nn_util.h"

static const char *fixture_dir = "tests/fixtures";

/* 1e-4 relative to max(1, |want|): the parity bar of issue 12 */
#define PARITY_TOL 1e-4

static inline nn_st *open_fixture(const char *file)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, file);
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s (make it with tools/fixtures_nn_arch.py)", err);
    return f;
}

/* A persistent tensor holding fixture tensor `name`, in its shape; requires grad. */
static inline ag_tensor *fx_leaf(const nn_st *f, const char *name)
{
    int nd;
    int64_t shape[AG_MAX_DIMS];
    char err[512];
    if (!nn_st_shape(f, name, &nd, shape))
        fail_msg("fixture lacks %s", name);
    ag_tensor *t = ag_empty(NULL, nd, shape);
    if (!nn_st_read(f, name, t->data, nd, shape, err, sizeof err))
        fail_msg("%s", err);
    ag_set_requires_grad(t, true);
    return t;
}

/* The same in ctx c, no grad (a seed gradient, expected values). */
static inline ag_tensor *fx_tensor(ag_ctx *c, const nn_st *f, const char *name)
{
    int nd;
    int64_t shape[AG_MAX_DIMS];
    char err[512];
    if (!nn_st_shape(f, name, &nd, shape))
        fail_msg("fixture lacks %s", name);
    ag_tensor *t = ag_empty(c, nd, shape);
    if (!nn_st_read(f, name, t->data, nd, shape, err, sizeof err))
        fail_msg("%s", err);
    return t;
}

/* t's data from fixture tensor `name` (same shape required). */
static inline void fx_load(const nn_st *f, const char *name, ag_tensor *t)
{
    char err[512];
    if (!nn_st_read(f, name, t->data, t->ndim, t->shape, err, sizeof err))
        fail_msg("%s", err);
}

/* got (n floats, shape of the fixture's `name`) equals the fixture within PARITY_TOL. */
static inline void fx_expect(const nn_st *f, const char *name, const float *got, int64_t n)
{
    ag_tensor *want = fx_tensor(NULL, f, name);
    if (want->numel != n)
        fail_msg("%s: %lld values, the fixture has %lld", name, (long long)n,
                 (long long)want->numel);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want->data[i]);
        if (!(d <= PARITY_TOL * fmax(1.0, fabs((double)want->data[i]))))
            fail_msg("%s[%lld] = %.8g, PyTorch %.8g", name, (long long)i, (double)got[i],
                     (double)want->data[i]);
    }
    ag_tensor_free(want);
}

/* Every parameter of p from the fixture: p's names are "<prefix>.<name>",
 * the fixture's too. */
static inline void fx_load_params(const nn_st *f, nn_params *p)
{
    for (int i = 0; i < p->n; i++)
        fx_load(f, p->items[i]->name, p->items[i]);
}

/* Every parameter's grad against the fixture's "<prefix>.grad.<rest of name>". */
static inline void fx_expect_param_grads(const nn_st *f, const nn_params *p, const char *prefix)
{
    char name[512];
    size_t k = strlen(prefix);
    for (int i = 0; i < p->n; i++) {
        const ag_tensor *t = p->items[i];
        assert_true(strncmp(t->name, prefix, k) == 0 && t->name[k] == '.');
        snprintf(name, sizeof name, "%s.grad.%s", prefix, t->name + k + 1);
        assert_non_null(t->grad);
        fx_expect(f, name, t->grad, t->numel);
    }
}

/* Gradchecks f over the extra inputs (n_in of them, may be 0) followed by
 * every parameter of p; first one backward must reach each of them. */
static inline void check_with_params(ag_gradcheck_fn f, void *user, ag_tensor **extra, int n_in,
                                     nn_params *p)
{
    ag_tensor *in[64];
    int n = 0;
    for (int i = 0; i < n_in; i++)
        in[n++] = extra[i];
    for (int i = 0; p && i < p->n; i++)
        in[n++] = p->items[i];
    assert_true(n < 64);
    ag_ctx *c = ag_ctx_new();
    for (int i = 0; i < n; i++)
        ag_zero_grad(in[i]);
    ag_tensor *y = f(c, in, n, user);
    assert_non_null(y);
    assert_true(ag_backward(c, y));
    for (int i = 0; i < n; i++) {
        bool any = false;
        for (int64_t k = 0; k < in[i]->numel && !any; k++)
            any = in[i]->grad[k] != 0.0f;
        if (!any)
            fail_msg("%s gets no gradient", in[i]->name ? in[i]->name : "an input");
    }
    ag_ctx_free(c);
    assert_gradcheck(f, in, n, user);
}

#endif
