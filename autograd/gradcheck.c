/* gradcheck.c - analytic gradients against finite differences, like
 * torch.autograd.gradcheck. Derivatives come from fourth-order central
 * differences, (4 D(h) - D(2h)) / 3 with D(h) = (f(x+h) - f(x-h)) / 2h:
 * its truncation error is O(h^4), so h can be large enough (1e-2) that
 * float32 rounding in f stays far below the tolerances. */
#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>

ag_gradcheck_opts ag_gradcheck_defaults(void)
{
    return (ag_gradcheck_opts){.eps = 1e-2, .atol = 1e-3, .rtol = 1e-3, .max_elementwise = 64,
                               .n_directions = 8, .seed = 0, .quiet = false, .report = ""};
}

typedef struct {
    ag_gradcheck_fn f;
    ag_tensor *const *inputs;
    int n;
    void *user;
    ag_ctx *ctx;
    uint64_t seed;
} problem;

static double eval(const problem *p)
{
    ag_ctx_reset(p->ctx);
    ag_ctx_manual_seed(p->ctx, p->seed);
    ag_set_grad_enabled(p->ctx, false);
    ag_tensor *y = p->f(p->ctx, p->inputs, p->n, p->user);
    return y && y->numel == 1 ? (double)y->data[0] : NAN;
}

/* derivative of f along v (x + h v) for input t; v NULL means the unit vector at element j */
static double numeric(const problem *p, ag_tensor *t, const float *x0, const double *v, int64_t j,
                      double h)
{
    double f[4];
    const double steps[4] = {h, -h, 2 * h, -2 * h};
    for (int s = 0; s < 4; s++) {
        if (v)
            for (int64_t i = 0; i < t->numel; i++)
                t->data[i] = (float)(x0[i] + steps[s] * v[i]);
        else
            t->data[j] = (float)(x0[j] + steps[s]);
        f[s] = eval(p);
    }
    if (v)
        memcpy(t->data, x0, (size_t)t->numel * sizeof(float));
    else
        t->data[j] = x0[j];
    /* the perturbation actually applied is the float one; close enough at these h */
    double d1 = (f[0] - f[1]) / (2 * h), d2 = (f[2] - f[3]) / (4 * h);
    return (4 * d1 - d2) / 3;
}

static bool fail(ag_gradcheck_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(ag_gradcheck_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->report, sizeof o->report, fmt, ap);
    va_end(ap);
    if (!o->quiet)
        fprintf(stderr, "gradcheck: %s\n", o->report);
    return false;
}

static void index_str(const ag_tensor *t, int64_t j, char *buf, size_t n)
{
    int64_t idx[AG_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = j % t->shape[d];
        j /= t->shape[d];
    }
    ag_fmt_shape(t->ndim, idx, buf, n);
}

bool ag_gradcheck(ag_gradcheck_fn f, ag_tensor *const *inputs, int n, void *user,
                  ag_gradcheck_opts *opts)
{
    ag_gradcheck_opts local = ag_gradcheck_defaults();
    ag_gradcheck_opts *o = opts ? opts : &local;
    o->report[0] = '\0';
    for (int i = 0; i < n; i++)
        if (!inputs[i] || ag_tensor_ctx(inputs[i]))
            return fail(o, "input %d is %s; gradcheck takes persistent tensors (made with a NULL ctx)",
                        i, inputs[i] ? "in a ctx arena" : "NULL");

    problem p = {f, inputs, n, user, ag_ctx_new(), o->seed};
    bool ok = true;

    /* analytic grads, copied out */
    ag_ctx_reset(p.ctx);
    ag_ctx_manual_seed(p.ctx, p.seed);
    for (int i = 0; i < n; i++)
        if (ag_requires_grad(inputs[i]))
            ag_zero_grad(inputs[i]);
    ag_tensor *y = f(p.ctx, inputs, n, user);
    if (!y || y->numel != 1) {
        ag_ctx_free(p.ctx);
        return fail(o, "f returned %s, not a one-element tensor", y ? "a larger tensor" : "NULL");
    }
    double y0 = y->data[0];
    if (!ag_requires_grad(y) || !ag_backward(p.ctx, y)) {
        ag_ctx_free(p.ctx);
        return fail(o, "f's output does not depend on any input that requires grad");
    }
    float **grads = calloc((size_t)n, sizeof *grads);
    for (int i = 0; i < n && grads; i++)
        if (ag_requires_grad(inputs[i])) {
            grads[i] = malloc((size_t)(inputs[i]->numel ? inputs[i]->numel : 1) * sizeof(float));
            if (grads[i])
                memcpy(grads[i], inputs[i]->grad, (size_t)inputs[i]->numel * sizeof(float));
        }

    ag_rng rng = ag_rng_new(o->seed ^ 0x5eedULL);
    for (int i = 0; i < n && ok; i++) {
        ag_tensor *t = inputs[i];
        if (!ag_requires_grad(t))
            continue;
        const char *nm = t->name ? t->name : "";
        float *x0 = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        memcpy(x0, t->data, (size_t)t->numel * sizeof(float));
        if (t->numel <= o->max_elementwise) {
            for (int64_t j = 0; j < t->numel && ok; j++) {
                double num = numeric(&p, t, x0, NULL, j, o->eps), ana = grads[i][j];
                double tol = o->atol + o->rtol * fabs(num);
                if (!(fabs(ana - num) <= tol)) {
                    char ix[96];
                    index_str(t, j, ix, sizeof ix);
                    ok = fail(o, "input %d%s%s element %lld %s: analytic %.6g, numeric %.6g "
                              "(|diff| %.3g > tol %.3g; f = %.6g)", i, *nm ? " " : "", nm,
                              (long long)j, ix, ana, num, fabs(ana - num), tol, y0);
                }
            }
        } else {
            double *v = malloc((size_t)t->numel * sizeof *v);
            for (int d = 0; d < o->n_directions && ok; d++) {
                double norm = 0, ana = 0;
                for (int64_t j = 0; j < t->numel; j++) {
                    v[j] = ag_rng_normal(&rng);
                    norm += v[j] * v[j];
                }
                norm = sqrt(norm);
                for (int64_t j = 0; j < t->numel; j++) {
                    v[j] /= norm;
                    ana += v[j] * grads[i][j];
                }
                double num = numeric(&p, t, x0, v, 0, o->eps);
                double tol = o->atol + o->rtol * fabs(num);
                if (!(fabs(ana - num) <= tol))
                    ok = fail(o, "input %d%s%s direction %d: analytic %.6g, numeric %.6g "
                              "(|diff| %.3g > tol %.3g; f = %.6g)", i, *nm ? " " : "", nm, d, ana,
                              num, fabs(ana - num), tol, y0);
            }
            free(v);
        }
        free(x0);
    }

    for (int i = 0; i < n; i++) {
        if (ag_requires_grad(inputs[i]))
            ag_zero_grad(inputs[i]);
        if (grads)
            free(grads[i]);
    }
    free(grads);
    ag_ctx_free(p.ctx);
    return ok;
}
