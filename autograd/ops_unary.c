/* ops_unary.c - elementwise functions of one tensor, shape kept:
 * scalar add/mul/pow, neg, exp, log, sqrt, rsqrt, relu, gelu, tanh, sigmoid.
 *
 * Each op is one line of UNARY_OPS; the enum, the ag_op table, both kernels'
 * cases and the public functions are generated from it, so they cannot drift.
 * Adding an op: one line here, its declaration in ag.h. */
#include "internal.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

static inline float gelu(float x)
{
    return 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
}

static inline float gelu_grad(float x)
{
    float u = GELU_K * (x + GELU_C * x * x * x);
    float th = tanhf(u);
    float du = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

/* X(name, args, y = f(x), dx = g * dy/dx, what the backward reads)
 *   name: the op is ag_<name>;  args: PLAIN (a) or SCALAR (a, float s)
 *   forward: y from x (and s);  backward: x's grad from g (out's grad), x, y
 *   and s;  reads: AG_IN(0) when the backward uses x, AG_OUT when it uses y.
 * A backward that uses what it does not declare computes with g in its place
 * (never freed memory), so the gradchecks catch a wrong reads column.
 * relu: y > 0 exactly where x > 0; g is loaded either way, so no branch. */
#define UNARY_OPS(X)                                                                        \
    X(add_scalar, SCALAR, x + s,                     g,                          AG_NO_DATA) \
    X(mul_scalar, SCALAR, x * s,                     g * s,                      AG_NO_DATA) \
    X(pow_scalar, SCALAR, s == 2.0f ? x * x : powf(x, s), g * s * powf(x, s - 1.0f), AG_IN(0)) \
    X(neg,        PLAIN,  -x,                        -g,                         AG_NO_DATA) \
    X(exp,        PLAIN,  expf(x),                   g * y,                      AG_OUT)     \
    X(log,        PLAIN,  logf(x),                   g / x,                      AG_IN(0))   \
    X(sqrt,       PLAIN,  sqrtf(x),                  g * 0.5f / y,               AG_OUT)     \
    X(rsqrt,      PLAIN,  1.0f / sqrtf(x),           g * -0.5f * y * y * y,      AG_OUT)     \
    X(relu,       PLAIN,  x > 0.0f ? x : 0.0f,       y > 0.0f ? g : 0.0f,        AG_OUT)     \
    X(gelu,       PLAIN,  gelu(x),                   g * gelu_grad(x),           AG_IN(0))   \
    X(tanh,       PLAIN,  tanhf(x),                  g * (1.0f - y * y),         AG_OUT)     \
    X(sigmoid,    PLAIN,  1.0f / (1.0f + expf(-x)),  g * y * (1.0f - y),         AG_OUT)

#define KIND(name, args, fwd, bwd, reads) UNARY_##name,
typedef enum { UNARY_OPS(KIND) UNARY_COUNT } unary_kind;
#undef KIND

/* One parallel loop per kind so each body is a straight vectorizable line. */
#define MAP(N, BODY) AG_PARALLEL_FOR((N) > AG_PAR_MIN, , for (int64_t i = 0; i < (N); i++) { BODY; });

static void forward(unary_kind kind, float s, float *yp, const float *xp, int64_t n)
{
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
 * reads them (the compiler splits each loop on the invariant `overwrite`). */
static void backward(unary_kind kind, float s, float *gx, bool overwrite, const float *gp,
                     const float *xp, const float *yp, int64_t n)
{
    switch (kind) {
#define CASE(name, args, fwd, bwd, reads)                                                  \
    case UNARY_##name: {                                                                   \
        const float *xr = (reads) & AG_IN(0) ? xp : gp, *yr = (reads) & AG_OUT ? yp : gp;  \
        MAP(n, float x = xr[i]; float y = yr[i]; float g = gp[i]; AG_UNUSED(x);            \
            AG_UNUSED(y); gx[i] = (overwrite ? 0.0f : gx[i]) + (bwd))                      \
        break;                                                                             \
    }
        UNARY_OPS(CASE)
#undef CASE
    case UNARY_COUNT:
        break;
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
    if (gx)
        backward((unary_kind)(ag_op_of(out) - ops), at ? at->s : 0.0f, gx, overwrite, out->grad,
                 x->data, out->data, out->numel);
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
    return out;
}

#define PUBLIC_PLAIN(name)                                                                 \
    ag_tensor *ag_##name(ag_ctx *c, ag_tensor *a) { return unary(c, UNARY_##name, a, NULL); }
#define PUBLIC_SCALAR(name)                                                                \
    ag_tensor *ag_##name(ag_ctx *c, ag_tensor *a, float s)                                 \
    {                                                                                      \
        return unary(c, UNARY_##name, a, &(scalar_attr){s});                               \
    }
#define PUBLIC(name, args, fwd, bwd, reads) PUBLIC_##args(name)
UNARY_OPS(PUBLIC)
#undef PUBLIC
