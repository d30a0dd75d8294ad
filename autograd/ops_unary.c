/* ops_unary.c - elementwise functions of one tensor, shape kept:
 * scalar add/mul/pow, neg, exp, log, sqrt, rsqrt, relu, gelu, tanh, sigmoid,
 * abs, sin, cos, silu, softplus, gelu_erf.
 *
 * Each op is one line of UNARY_OPS; the enum, the ag_op table, both kernels'
 * cases and the public functions are generated from it, so they cannot drift.
 * Adding an op: one line here, its declaration in ag.h. The transcendental
 * functions are vmath.h's, which the compiler vectorizes. */
#include "internal.h"
#include "vmath.h"

/* X(name, args, y = f(x), dx = g * dy/dx, what the backward reads)
 *   name: the op is ag_<name>;  args: PLAIN (a) or SCALAR (a, float s), or
 *   PERIODIC (a), a PLAIN op written with SIN and COS: vmath's fast sin and
 *   cos, which give 0 where |x| > AG_VTRIG_FAST, and in a second pass over
 *   just those elements (rare; inf and NaN among them) libm's;
 *   forward: y from x (and s);  backward: x's grad from g (out's grad), x, y
 *   and s;  reads: AG_IN(0) when the backward uses x, AG_OUT when it uses y.
 * A backward that uses what it does not declare computes with g in its place
 * (never freed memory), so the gradchecks catch a wrong reads column.
 * relu: y > 0 exactly where x > 0; g is loaded either way, so no branch.
 * abs: PyTorch's g * sign(x), 0 at 0. */
#define UNARY_OPS(X)                                                                        \
    X(add_scalar, SCALAR, x + s,                     g,                          AG_NO_DATA) \
    X(mul_scalar, SCALAR, x * s,                     g * s,                      AG_NO_DATA) \
    X(pow_scalar, SCALAR, s == 2.0f ? x * x : powf(x, s), g * s * powf(x, s - 1.0f), AG_IN(0)) \
    X(neg,        PLAIN,  -x,                        -g,                         AG_NO_DATA) \
    X(exp,        PLAIN,  ag_vexpf(x),               g * y,                      AG_OUT)     \
    X(log,        PLAIN,  ag_vlogf(x),               g / x,                      AG_IN(0))   \
    X(sqrt,       PLAIN,  sqrtf(x),                  g * 0.5f / y,               AG_OUT)     \
    X(rsqrt,      PLAIN,  1.0f / sqrtf(x),           g * -0.5f * y * y * y,      AG_OUT)     \
    X(relu,       PLAIN,  x > 0.0f ? x : 0.0f,       y > 0.0f ? g : 0.0f,        AG_OUT)     \
    X(gelu,       PLAIN,  ag_vgeluf(x),              g * ag_vgelu_gradf(x),      AG_IN(0))   \
    X(tanh,       PLAIN,  ag_vtanhf(x),              g * (1.0f - y * y),         AG_OUT)     \
    X(sigmoid,    PLAIN,  ag_vsigmoidf(x),           g * y * (1.0f - y),         AG_OUT)     \
    X(abs,        PLAIN,  fabsf(x),  g * (x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : 0.0f), AG_IN(0)) \
    X(sin,        PERIODIC, SIN(x),                  g * COS(x),                 AG_IN(0))   \
    X(cos,        PERIODIC, COS(x),                  -g * SIN(x),                AG_IN(0))   \
    X(silu,       PLAIN,  ag_vsiluf(x),              g * ag_vsilu_gradf(x),      AG_IN(0))   \
    X(softplus,   PLAIN,  ag_vsoftplusf(x),          g * ag_vsoftplus_gradf(x),  AG_IN(0))   \
    X(gelu_erf,   PLAIN,  ag_vgelu_erff(x),          g * ag_vgelu_erf_gradf(x),  AG_IN(0))

/* SIN, COS in the lines: the fast functions where `wide` is false (the
 * vector loops), libm's where it is true (the pass over what they left) */
#define SIN(x) (wide ? sinf(x) : ag_vsinf(x))
#define COS(x) (wide ? cosf(x) : ag_vcosf(x))
#define IS_PERIODIC_PLAIN false
#define IS_PERIODIC_SCALAR false
#define IS_PERIODIC_PERIODIC true

#define KIND(name, args, fwd, bwd, reads) UNARY_##name,
typedef enum { UNARY_OPS(KIND) UNARY_COUNT } unary_kind;
#undef KIND

/* One parallel loop per kind so each body is a straight vectorizable line. */
#define MAP(N, BODY) AG_PARALLEL((N), , for (int64_t i = 0; i < (N); i++) { BODY; });

static const bool periodic[] = {
#define PERIODIC(name, args, fwd, bwd, reads) [UNARY_##name] = IS_PERIODIC_##args,
    UNARY_OPS(PERIODIC)
#undef PERIODIC
};

static void forward(unary_kind kind, float s, float *yp, const float *xp, int64_t n)
{
    const bool wide = false;
    switch (kind) {
#define CASE(name, args, fwd, bwd, reads)                                                  \
    case UNARY_##name:                                                                     \
        MAP(n, float x = xp[i]; yp[i] = (fwd))                                             \
        break;
        UNARY_OPS(CASE)
#undef CASE
    case UNARY_COUNT:
        break;
    }
}

/* gx (+)= the backward column, with x and y read only where the op says it
 * reads them. A loop apiece for = and +=: GCC vectorizes no select on the
 * invariant `overwrite`, and splits only small loops on it itself. */
static void backward(unary_kind kind, float s, float *gx, bool overwrite, const float *gp,
                     const float *xp, const float *yp, int64_t n)
{
    const bool wide = false;
    switch (kind) {
#define BWD_BODY(bwd)                                                                      \
    float x = xr[i], y = yr[i], g = gp[i];                                                 \
    AG_UNUSED(x);                                                                          \
    AG_UNUSED(y);                                                                          \
    bwd
#define CASE(name, args, fwd, bwd, reads)                                                  \
    case UNARY_##name: {                                                                   \
        const float *xr = (reads) & AG_IN(0) ? xp : gp, *yr = (reads) & AG_OUT ? yp : gp;  \
        if (overwrite) {                                                                   \
            MAP(n, BWD_BODY(gx[i] = (bwd)))                                                \
        } else {                                                                           \
            MAP(n, BWD_BODY(gx[i] += (bwd)))                                               \
        }                                                                                  \
        break;                                                                             \
    }
        UNARY_OPS(CASE)
#undef CASE
#undef BWD_BODY
    case UNARY_COUNT:
        break;
    }
}

/* A PERIODIC op's second pass: the elements whose x the fast sin and cos do
 * not cover, again with libm's. The first pass left y = 0 there, and in a
 * backward gx + g * 0, which this pass completes (the sum is off only for
 * an infinite g there: NaN where it should be inf). The forward passes yp
 * (gx and gp NULL), the backward gx and gp (yp NULL). */
static void redo_wide(unary_kind kind, float *yp, float *gx, bool overwrite, const float *gp,
                      const float *xp, int64_t n)
{
    if (ag_vtrig_fast_all(xp, n))
        return;
    const bool wide = true;
    for (int64_t i = 0; i < n; i++) {
        float x = xp[i];
        if (ag_vtrig_fast_ok(x))
            continue;
        switch (kind) {
#define CASE(name, args, fwd, bwd, reads) CASE_##args(name, fwd, bwd)
#define CASE_PLAIN(name, fwd, bwd)
#define CASE_SCALAR(name, fwd, bwd)
#define CASE_PERIODIC(name, fwd, bwd)                                                      \
        case UNARY_##name:                                                                 \
            if (yp) {                                                                      \
                yp[i] = (fwd);                                                             \
            } else {                                                                       \
                float g = gp[i];                                                           \
                gx[i] = (overwrite ? 0.0f : gx[i]) + (bwd);                                \
            }                                                                              \
            break;
            UNARY_OPS(CASE)
#undef CASE
#undef CASE_PLAIN
#undef CASE_SCALAR
#undef CASE_PERIODIC
        default:
            break;
        }
    }
}

static void unary_backward(ag_ctx *ctx, ag_tensor *out);

/* what a SCALAR op saves; the kind is the op record's place in ops[] */
typedef struct {
    float s;
} scalar_attr;

#define OP(name, args, fwd, bwd, reads) [UNARY_##name] = {#name, unary_backward, reads},
static const ag_op ops[] = {UNARY_OPS(OP)};
#undef OP
_Static_assert(sizeof ops / sizeof *ops == UNARY_COUNT, "one ag_op per unary kind");

static void unary_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    bool overwrite;
    float *gx = ag_grad_buf(ctx, x, &overwrite);
    const scalar_attr *at = ag_saved(out);
    unary_kind kind = (unary_kind)(ag_op_of(out) - ops);
    if (!gx)
        return;
    backward(kind, at ? at->s : 0.0f, gx, overwrite, out->grad, x->data, out->data, out->numel);
    if (periodic[kind])
        redo_wide(kind, NULL, gx, overwrite, out->grad, x->data, out->numel);
}

/* at: the scalar of a SCALAR op, NULL for a PLAIN one */
static ag_tensor *unary(ag_ctx *c, unary_kind kind, ag_tensor *a, const scalar_attr *at)
{
    if (!ag_check_inputs(ops[kind].name, &a, 1))
        return NULL;
    ag_tensor *out = ag_result(c, &ops[kind], &a, 1, a->ndim, a->shape);
    if (!out)
        return NULL;
    if (at)
        ag_save(c, out, at, sizeof *at);
    forward(kind, at ? at->s : 0.0f, out->data, a->data, a->numel);
    if (periodic[kind])
        redo_wide(kind, out->data, NULL, true, NULL, a->data, a->numel);
    return out;
}

#define PUBLIC_PLAIN(name)                                                                 \
    ag_tensor *ag_##name(ag_ctx *c, ag_tensor *a) { return unary(c, UNARY_##name, a, NULL); }
#define PUBLIC_SCALAR(name)                                                                \
    ag_tensor *ag_##name(ag_ctx *c, ag_tensor *a, float s)                                 \
    {                                                                                      \
        return unary(c, UNARY_##name, a, &(scalar_attr){s});                               \
    }
#define PUBLIC_PERIODIC(name) PUBLIC_PLAIN(name)
#define PUBLIC(name, args, fwd, bwd, reads) PUBLIC_##args(name)
UNARY_OPS(PUBLIC)
#undef PUBLIC
