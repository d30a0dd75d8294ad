/* ops_binary.c - add, sub, mul, div, maximum, minimum with NumPy broadcasting.
 * (..a) op (..b) -> broadcast(a, b); backward sums over the broadcast dims.
 *
 * Each op is one line of BINARY_OPS; the enum, the kernel's cases, the
 * ag_op table and the public functions are generated from it. */
#include "internal.h"

/* X(name, out = f(x, y), its backward, what that backward reads)
 * maximum, minimum: as torch's, NaN if either is NaN, x at a tie. */
#define BINARY_OPS(X)                                                                       \
    X(add, x + y, add_backward, AG_NO_DATA)                                                 \
    X(sub, x - y, sub_backward, AG_NO_DATA)                                                 \
    X(mul, x * y, mul_backward, AG_IN(0) | AG_IN(1))                                        \
    X(div, x / y, div_backward, AG_IN(1) | AG_OUT)                                          \
    X(maximum, ((x < y) | (y != y)) ? y : x, maximum_backward, AG_IN(0) | AG_IN(1))          \
    X(minimum, ((y < x) | (y != y)) ? y : x, minimum_backward, AG_IN(0) | AG_IN(1))

/* Kernel lines that only backwards use, no ops: the share of g that input
 * x of maximum(x, y) gets, torch's (half each at a tie, all of it to both
 * where one is NaN; minimum's x gets share(y, x)), and g * share with a 0
 * share giving 0 even for an infinite g. */
#define BINARY_HELPERS(X)                                                                   \
    X(share, x == y ? 0.5f : x < y ? 0.0f : 1.0f, NULL, 0)                                  \
    X(mul_share, y == 0.0f ? 0.0f : x * y, NULL, 0)

#define KIND(name, fwd, bwd, reads) BINARY_##name,
typedef enum { BINARY_OPS(KIND) BINARY_COUNT, BINARY_HELPERS(KIND) } binary_kind;
#undef KIND

static inline void row(binary_kind kind, float *o, const float *a, int64_t sa, const float *b, int64_t sb,
                       int64_t n, bool overwrite)
{
    /* sa, sb are 0 (broadcast) or 1; the branches let each loop vectorize.
     * o is overwritten or, in a backward adding to a grad, added to. */
#define LOOP(EXPR)                                                                       \
    if (sa && sb)                                                                        \
        for (int64_t i = 0; i < n; i++) { float x = a[i], y = b[i]; o[i] = (overwrite ? 0.0f : o[i]) + (EXPR); } \
    else if (sa)                                                                         \
        for (int64_t i = 0; i < n; i++) { float x = a[i], y = b[0]; o[i] = (overwrite ? 0.0f : o[i]) + (EXPR); } \
    else if (sb)                                                                         \
        for (int64_t i = 0; i < n; i++) { float x = a[0], y = b[i]; o[i] = (overwrite ? 0.0f : o[i]) + (EXPR); } \
    else                                                                                 \
        for (int64_t i = 0; i < n; i++) { float x = a[0], y = b[0]; o[i] = (overwrite ? 0.0f : o[i]) + (EXPR); }
    switch (kind) {
#define CASE(name, fwd, bwd, reads) case BINARY_##name: LOOP(fwd) break;
        BINARY_OPS(CASE)
        BINARY_HELPERS(CASE)
#undef CASE
    case BINARY_COUNT:
        break;
    }
#undef LOOP
}

/* How an operand lines up with out's rows (all dims but the last, L wide):
 * the whole row, one value per row, the same L values for every row (a
 * bias), one value for everything, or something else (general strides). */
enum { FULL, PER_ROW, SUFFIX, SCALAR, GENERAL };

static int row_mode(const ag_tensor *t, const ag_tensor *out, int64_t rows, int64_t L)
{
    if (t->numel == 1)
        return SCALAR;
    if (ag_same_shape(t, out))
        return FULL;
    int nd = out->ndim, off = nd - t->ndim;
    bool per_row = t->numel == rows && off == 0 && t->shape[nd - 1] == 1;
    for (int i = 0; per_row && i < nd - 1; i++)
        per_row = t->shape[i] == out->shape[i];
    if (per_row)
        return PER_ROW;
    bool suffix = t->numel == L && t->shape[t->ndim - 1] == L;
    return suffix ? SUFFIX : GENERAL;
}

/* out = a op b over out's shape, a and b read through broadcast strides.
 * Reads only the tensors' public part (shape, data): the backwards pass
 * stack copies of out that point at grad or scratch memory. */
static void binary_kernel(binary_kind kind, ag_tensor *out, const ag_tensor *a, const ag_tensor *b, bool overwrite)
{
    int nd = out->ndim;
    if (nd == 0 || (ag_same_shape(a, out) && ag_same_shape(b, out))) {
        int64_t n = out->numel;
        int64_t chunk = 16384, nchunks = (n + chunk - 1) / chunk;
        AG_PARALLEL(n, ,
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t i0 = c * chunk, len = i0 + chunk < n ? chunk : n - i0;
            row(kind, out->data + i0, a->data + (a->numel == 1 ? 0 : i0), a->numel != 1,
                b->data + (b->numel == 1 ? 0 : i0), b->numel != 1, len, overwrite);
        }
        );
        return;
    }
    int64_t L = out->shape[nd - 1], rows = L ? out->numel / L : 0;
    int ma = row_mode(a, out, rows, L), mb = row_mode(b, out, rows, L);
    if (ma != GENERAL && mb != GENERAL) { /* row offsets without index arithmetic */
        int64_t ra = ma == FULL ? L : ma == PER_ROW ? 1 : 0;
        int64_t rb = mb == FULL ? L : mb == PER_ROW ? 1 : 0;
        bool ua = ma == FULL || ma == SUFFIX, ub = mb == FULL || mb == SUFFIX;
        AG_PARALLEL(out->numel, ,
        for (int64_t r = 0; r < rows; r++)
            row(kind, out->data + r * L, a->data + r * ra, ua, b->data + r * rb, ub, L, overwrite);
        );
        return;
    }
    int64_t sa[AG_MAX_DIMS], sb[AG_MAX_DIMS];
    ag_broadcast_strides(a, nd, out->shape, sa);
    ag_broadcast_strides(b, nd, out->shape, sb);
    AG_PARALLEL(out->numel, ,
    for (int64_t r = 0; r < rows; r++) {
        int64_t oa = 0, ob = 0, q = r;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t k = q % out->shape[d];
            q /= out->shape[d];
            oa += k * sa[d];
            ob += k * sb[d];
        }
        row(kind, out->data + r * L, a->data + oa, sa[nd - 1] != 0, b->data + ob,
            sb[nd - 1] != 0, L, overwrite);
    }
    );
}

/* add, sub: each input's grad is g (b's is -g for sub), summed over the
 * dims it was broadcast along */
static void sum_backward(ag_ctx *ctx, ag_tensor *out, float b_sign)
{
    ag_tensor *a = ag_input(out, 0), *b = ag_input(out, 1);
    bool overwrite_a, overwrite_b;
    const float *g = out->grad;
    /* b first: a of out's shape may then take g's buffer (b == a has a grad by then) */
    float *gb = ag_grad_buf(ctx, b, &overwrite_b);
    if (gb)
        ag_accum_reduce(gb, b, g, out, b_sign, overwrite_b);
    if (ag_same_shape(a, out) && ag_grad_pass(out, a))
        return;
    float *ga = ag_grad_buf(ctx, a, &overwrite_a);
    if (ga)
        ag_accum_reduce(ga, a, g, out, 1.0f, overwrite_a);
}

static void add_backward(ag_ctx *ctx, ag_tensor *out) { sum_backward(ctx, out, 1.0f); }
static void sub_backward(ag_ctx *ctx, ag_tensor *out) { sum_backward(ctx, out, -1.0f); }

/* mul: ga = g*b, gb = g*a; div: ga = g/b, gb = -g*a/b^2 = -g*out/b.
 * An input of out's shape takes its grad in one pass; a bias-like or
 * per-row factor of mul sums g*a in one pass; anything else is formed
 * over out's shape in scratch, then summed down. */
static void product_backward(ag_ctx *ctx, ag_tensor *out, bool div)
{
    ag_tensor *a = ag_input(out, 0), *b = ag_input(out, 1);
    bool overwrite_a, overwrite_b;
    int64_t n = out->numel;
    binary_kind ka = div ? BINARY_div : BINARY_mul; /* ga = g ka b */
    float *ga = ag_grad_buf(ctx, a, &overwrite_a), *gb = ag_grad_buf(ctx, b, &overwrite_b);
    ag_tensor gt = *out;
    gt.data = out->grad;
    float *tmp = NULL;
    if (ga) {
        if (ag_same_shape(a, out)) {
            ag_tensor dst = *out;
            dst.data = ga;
            binary_kernel(ka, &dst, &gt, b, overwrite_a);
        } else {
            ag_tensor t = *out;
            t.data = tmp = ag_scratch(ctx, (size_t)n * sizeof(float));
            binary_kernel(ka, &t, &gt, b, true);
            ag_accum_reduce(ga, a, tmp, out, 1.0f, overwrite_a);
        }
    }
    if (!gb)
        return;
    int64_t L = out->ndim ? out->shape[out->ndim - 1] : 1, rows = L ? n / L : 0;
    int mb = row_mode(b, out, rows, L);
    if (!div && ag_same_shape(b, out)) {
        ag_tensor dst = *out;
        dst.data = gb;
        binary_kernel(BINARY_mul, &dst, &gt, a, overwrite_b);
    } else if (!div && ag_same_shape(a, out) && (mb == SUFFIX || mb == PER_ROW)) {
        ag_sum_product(gb, mb == PER_ROW, out->grad, a->data, rows, L, overwrite_b);
    } else {
        ag_tensor t = *out;
        t.data = tmp ? tmp : ag_scratch(ctx, (size_t)n * sizeof(float));
        if (!div)
            binary_kernel(BINARY_mul, &t, &gt, a, true);
        else {
            binary_kernel(BINARY_mul, &t, &gt, out, true);
            binary_kernel(BINARY_div, &t, &t, b, true);
        }
        ag_accum_reduce(gb, b, t.data, out, div ? -1.0f : 1.0f, overwrite_b);
    }
}

static void mul_backward(ag_ctx *ctx, ag_tensor *out) { product_backward(ctx, out, false); }
static void div_backward(ag_ctx *ctx, ag_tensor *out) { product_backward(ctx, out, true); }

/* maximum, minimum: each input's grad is g times its share (share(own,
 * other) for maximum, share(other, own) for minimum), formed over out's
 * shape in scratch and summed over the dims it was broadcast along. */
static void extremum_backward(ag_ctx *ctx, ag_tensor *out, bool max)
{
    ag_tensor *in[2] = {ag_input(out, 0), ag_input(out, 1)};
    ag_tensor gt = *out;
    gt.data = out->grad;
    float *tmp = NULL;
    for (int k = 0; k < 2; k++) {
        bool overwrite;
        float *gk = ag_grad_buf(ctx, in[k], &overwrite);
        if (!gk)
            continue;
        ag_tensor t = *out;
        t.data = tmp = tmp ? tmp : ag_scratch(ctx, (size_t)out->numel * sizeof(float));
        ag_tensor *own = in[k], *other = in[1 - k];
        binary_kernel(BINARY_share, &t, max ? own : other, max ? other : own, true);
        binary_kernel(BINARY_mul_share, &t, &gt, &t, true);
        ag_accum_reduce(gk, in[k], tmp, out, 1.0f, overwrite);
    }
}

static void maximum_backward(ag_ctx *ctx, ag_tensor *out) { extremum_backward(ctx, out, true); }
static void minimum_backward(ag_ctx *ctx, ag_tensor *out) { extremum_backward(ctx, out, false); }

#define OP(name, fwd, bwd, reads) [BINARY_##name] = {#name, bwd, reads},
static const ag_op ops[] = {BINARY_OPS(OP)};
#undef OP
_Static_assert(sizeof ops / sizeof *ops == BINARY_COUNT, "one ag_op per binary kind");

static ag_tensor *binary(ag_ctx *c, binary_kind kind, ag_tensor *a, ag_tensor *b)
{
    ag_tensor *in[2] = {a, b};
    if (!ag_check_inputs(ops[kind].name, in, 2))
        return NULL;
    int nd;
    int64_t shape[AG_MAX_DIMS];
    if (!ag_broadcast_shape(a, b, &nd, shape)) {
        char sa[128], sb[128];
        ag_error("%s: shapes %s and %s do not broadcast", ops[kind].name, ag_shape_str(a, sa, sizeof sa),
                 ag_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    ag_tensor *out = ag_result(c, &ops[kind], in, 2, nd, shape);
    if (!out)
        return NULL;
    binary_kernel(kind, out, a, b, true);
    return out;
}

#define PUBLIC(name, fwd, bwd, reads)                                                      \
    ag_tensor *ag_##name(ag_ctx *c, ag_tensor *a, ag_tensor *b) { return binary(c, BINARY_##name, a, b); }
BINARY_OPS(PUBLIC)
#undef PUBLIC
