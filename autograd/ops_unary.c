/* ops_unary.c - elementwise functions of one tensor, shape kept:
 * scalar add/mul/pow, neg, exp, log, sqrt, rsqrt, relu, gelu, tanh, sigmoid. */
#include "internal.h"

enum { ADD_S, MUL_S, POW_S, NEG, EXP, LOG, SQRT, RSQRT, RELU, GELU, TANH, SIGMOID };

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

/* One parallel loop per kind so each body is a straight vectorizable line. */
#define MAP(N, BODY) AG_PARALLEL_FOR((N) > AG_PAR_MIN, , for (int64_t i = 0; i < (N); i++) { BODY; });

static void forward(int kind, float s, float *y, const float *x, int64_t n)
{
    switch (kind) {
    case ADD_S: MAP(n, y[i] = x[i] + s) break;
    case MUL_S: MAP(n, y[i] = x[i] * s) break;
    case POW_S:
        if (s == 2.0f) {
            MAP(n, y[i] = x[i] * x[i])
        } else {
            MAP(n, y[i] = powf(x[i], s))
        }
        break;
    case NEG: MAP(n, y[i] = -x[i]) break;
    case EXP: MAP(n, y[i] = expf(x[i])) break;
    case LOG: MAP(n, y[i] = logf(x[i])) break;
    case SQRT: MAP(n, y[i] = sqrtf(x[i])) break;
    case RSQRT: MAP(n, y[i] = 1.0f / sqrtf(x[i])) break;
    case RELU: MAP(n, y[i] = x[i] > 0.0f ? x[i] : 0.0f) break;
    case GELU: MAP(n, y[i] = gelu(x[i])) break;
    case TANH: MAP(n, y[i] = tanhf(x[i])) break;
    default: MAP(n, y[i] = 1.0f / (1.0f + expf(-x[i]))) break;
    }
}

/* gx += g * dy/dx, written with x and y = f(x); a fresh gx is assigned
 * instead (the compiler splits each loop on the invariant `fresh`). */
#define ACC(EXPR) gx[i] = (fresh ? 0.0f : gx[i]) + (EXPR)
static void backward(int kind, float s, float *gx, bool fresh, const float *g, const float *x,
                     const float *y, int64_t n)
{
    switch (kind) {
    case ADD_S: MAP(n, ACC(g[i])) break;
    case MUL_S: MAP(n, ACC(g[i] * s)) break;
    case POW_S: MAP(n, ACC(g[i] * s * powf(x[i], s - 1.0f))) break;
    case NEG: MAP(n, ACC(-g[i])) break;
    case EXP: MAP(n, ACC(g[i] * y[i])) break;
    case LOG: MAP(n, ACC(g[i] / x[i])) break;
    case SQRT: MAP(n, ACC(g[i] * 0.5f / y[i])) break;
    case RSQRT: MAP(n, ACC(g[i] * -0.5f * y[i] * y[i] * y[i])) break;
    /* y > 0 exactly where x > 0; g is loaded either way so the loop has no branch */
    case RELU: MAP(n, float gi = g[i]; ACC(y[i] > 0.0f ? gi : 0.0f)) break;
    case GELU: MAP(n, ACC(g[i] * gelu_grad(x[i]))) break;
    case TANH: MAP(n, ACC(g[i] * (1.0f - y[i] * y[i]))) break;
    default: MAP(n, ACC(g[i] * y[i] * (1.0f - y[i]))) break;
    }
}
#undef ACC

static void unary_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = out->inputs[0];
    bool fresh;
    float *gx = ag_grad_buf(ctx, x, &fresh);
    if (gx)
        backward((int)out->iarg[0], out->farg[0], gx, fresh, out->grad, x->data, out->data,
                 out->numel);
}

static const ag_op ops[] = {
    /* reads: what each backward below reads (x is input 0, y the output) */
    {"add_scalar", unary_backward, AG_NO_DATA},
    {"mul_scalar", unary_backward, AG_NO_DATA},
    {"pow_scalar", unary_backward, AG_IN(0)},
    {"neg", unary_backward, AG_NO_DATA},
    {"exp", unary_backward, AG_OUT},
    {"log", unary_backward, AG_IN(0)},
    {"sqrt", unary_backward, AG_OUT},
    {"rsqrt", unary_backward, AG_OUT},
    {"relu", unary_backward, AG_OUT},
    {"gelu", unary_backward, AG_IN(0)},
    {"tanh", unary_backward, AG_OUT},
    {"sigmoid", unary_backward, AG_OUT},
};

static ag_tensor *unary(ag_ctx *c, int kind, ag_tensor *a, float s)
{
    if (!ag_check_inputs(ops[kind].name, &a, 1))
        return NULL;
    ag_tensor *out = ag_result(c, &ops[kind], &a, 1, a->ndim, a->shape);
    if (!out)
        return NULL;
    out->iarg[0] = kind;
    out->farg[0] = s;
    forward(kind, s, out->data, a->data, a->numel);
    return out;
}

ag_tensor *ag_add_scalar(ag_ctx *c, ag_tensor *a, float s) { return unary(c, ADD_S, a, s); }
ag_tensor *ag_mul_scalar(ag_ctx *c, ag_tensor *a, float s) { return unary(c, MUL_S, a, s); }
ag_tensor *ag_pow_scalar(ag_ctx *c, ag_tensor *a, float p) { return unary(c, POW_S, a, p); }
ag_tensor *ag_neg(ag_ctx *c, ag_tensor *a) { return unary(c, NEG, a, 0); }
ag_tensor *ag_exp(ag_ctx *c, ag_tensor *a) { return unary(c, EXP, a, 0); }
ag_tensor *ag_log(ag_ctx *c, ag_tensor *a) { return unary(c, LOG, a, 0); }
ag_tensor *ag_sqrt(ag_ctx *c, ag_tensor *a) { return unary(c, SQRT, a, 0); }
ag_tensor *ag_rsqrt(ag_ctx *c, ag_tensor *a) { return unary(c, RSQRT, a, 0); }
ag_tensor *ag_relu(ag_ctx *c, ag_tensor *a) { return unary(c, RELU, a, 0); }
ag_tensor *ag_gelu(ag_ctx *c, ag_tensor *a) { return unary(c, GELU, a, 0); }
ag_tensor *ag_tanh(ag_ctx *c, ag_tensor *a) { return unary(c, TANH, a, 0); }
ag_tensor *ag_sigmoid(ag_ctx *c, ag_tensor *a) { return unary(c, SIGMOID, a, 0); }
