/* ops_binary.c - add, sub, mul, div with NumPy broadcasting.
 * (..a) op (..b) -> broadcast(a, b); backward sums over the broadcast dims. */
#include "internal.h"

enum { ADD, SUB, MUL, DIV };

static const char *const names[] = {"add", "sub", "mul", "div"};

static inline void row(int kind, float *o, const float *a, int64_t sa, const float *b, int64_t sb,
                       int64_t n, bool acc)
{
    /* sa, sb are 0 (broadcast) or 1; the branches let each loop vectorize.
     * acc adds into o (a backward accumulating a grad) instead of writing it. */
#define LOOP(EXPR)                                                                       \
    if (sa && sb)                                                                        \
        for (int64_t i = 0; i < n; i++) { float x = a[i], y = b[i]; o[i] = (acc ? o[i] : 0.0f) + (EXPR); } \
    else if (sa)                                                                         \
        for (int64_t i = 0; i < n; i++) { float x = a[i], y = b[0]; o[i] = (acc ? o[i] : 0.0f) + (EXPR); } \
    else if (sb)                                                                         \
        for (int64_t i = 0; i < n; i++) { float x = a[0], y = b[i]; o[i] = (acc ? o[i] : 0.0f) + (EXPR); } \
    else                                                                                 \
        for (int64_t i = 0; i < n; i++) { float x = a[0], y = b[0]; o[i] = (acc ? o[i] : 0.0f) + (EXPR); }
    switch (kind) {
    case ADD: LOOP(x + y) break;
    case SUB: LOOP(x - y) break;
    case MUL: LOOP(x * y) break;
    default: LOOP(x / y) break;
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

/* out = a op b over out's shape, a and b read through broadcast strides */
static void binary_kernel(int kind, ag_tensor *out, const ag_tensor *a, const ag_tensor *b, bool acc)
{
    int nd = out->ndim;
    if (nd == 0 || (ag_same_shape(a, out) && ag_same_shape(b, out))) {
        int64_t n = out->numel;
        int64_t chunk = 16384, nchunks = (n + chunk - 1) / chunk;
        AG_PARALLEL_FOR(n > AG_PAR_MIN, ,
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t i0 = c * chunk, len = i0 + chunk < n ? chunk : n - i0;
            row(kind, out->data + i0, a->data + (a->numel == 1 ? 0 : i0), a->numel != 1,
                b->data + (b->numel == 1 ? 0 : i0), b->numel != 1, len, acc);
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
        AG_PARALLEL_FOR(out->numel > AG_PAR_MIN, ,
        for (int64_t r = 0; r < rows; r++)
            row(kind, out->data + r * L, a->data + r * ra, ua, b->data + r * rb, ub, L, acc);
        );
        return;
    }
    int64_t sa[AG_MAX_DIMS], sb[AG_MAX_DIMS];
    ag_broadcast_strides(a, nd, out->shape, sa);
    ag_broadcast_strides(b, nd, out->shape, sb);
    AG_PARALLEL_FOR(out->numel > AG_PAR_MIN, ,
    for (int64_t r = 0; r < rows; r++) {
        int64_t oa = 0, ob = 0, q = r;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t k = q % out->shape[d];
            q /= out->shape[d];
            oa += k * sa[d];
            ob += k * sb[d];
        }
        row(kind, out->data + r * L, a->data + oa, sa[nd - 1] != 0, b->data + ob,
            sb[nd - 1] != 0, L, acc);
    }
    );
}

static void binary_backward(ag_ctx *ctx, ag_tensor *out)
{
    int kind = (int)out->iarg[0];
    ag_tensor *a = out->inputs[0], *b = out->inputs[1];
    bool fa, fb;
    const float *g = out->grad;
    int64_t n = out->numel;

    if (kind == ADD || kind == SUB) {
        /* b first: a of out's shape may then take g's buffer (b == a has a grad by then) */
        float *gb = ag_grad_buf(ctx, b, &fb);
        if (gb)
            ag_accum_reduce(gb, b, g, out, kind == ADD ? 1.0f : -1.0f, fb);
        if (ag_same_shape(a, out) && ag_grad_pass(out, a))
            return;
        float *ga = ag_grad_buf(ctx, a, &fa);
        if (ga)
            ag_accum_reduce(ga, a, g, out, 1.0f, fa);
        return;
    }
    float *ga = ag_grad_buf(ctx, a, &fa), *gb = ag_grad_buf(ctx, b, &fb);
    /* mul: ga = g*b, gb = g*a; div: ga = g/b, gb = -g*a/b^2 = -g*out/b.
     * An input of out's shape takes its grad in one pass; a bias-like or
     * per-row factor of mul sums g*a in one pass; anything else is formed
     * over out's shape in scratch, then summed down. */
    ag_tensor gt = *out;
    gt.data = out->grad;
    float *tmp = NULL;
    if (ga) {
        if (ag_same_shape(a, out)) {
            ag_tensor dst = *out;
            dst.data = ga;
            binary_kernel(kind == MUL ? MUL : DIV, &dst, &gt, b, !fa);
        } else {
            ag_tensor t = *out;
            t.data = tmp = ag_scratch(ctx, (size_t)n * sizeof(float));
            binary_kernel(kind == MUL ? MUL : DIV, &t, &gt, b, false);
            ag_accum_reduce(ga, a, tmp, out, 1.0f, fa);
        }
    }
    if (!gb)
        return;
    int64_t L = out->ndim ? out->shape[out->ndim - 1] : 1, rows = L ? n / L : 0;
    int mb = row_mode(b, out, rows, L);
    if (kind == MUL && ag_same_shape(b, out)) {
        ag_tensor dst = *out;
        dst.data = gb;
        binary_kernel(MUL, &dst, &gt, a, !fb);
    } else if (kind == MUL && ag_same_shape(a, out) && (mb == SUFFIX || mb == PER_ROW)) {
        ag_sum_product(gb, mb == PER_ROW, out->grad, a->data, rows, L, fb);
    } else {
        ag_tensor t = *out;
        t.data = tmp ? tmp : ag_scratch(ctx, (size_t)n * sizeof(float));
        if (kind == MUL)
            binary_kernel(MUL, &t, &gt, a, false);
        else {
            binary_kernel(MUL, &t, &gt, out, false);
            binary_kernel(DIV, &t, &t, b, false);
        }
        ag_accum_reduce(gb, b, t.data, out, kind == MUL ? 1.0f : -1.0f, fb);
    }
}

static const ag_op ops[] = {
        {"add", binary_backward, AG_NO_DATA},
    {"sub", binary_backward, AG_NO_DATA},
    {"mul", binary_backward, AG_IN(0) | AG_IN(1)},
    {"div", binary_backward, AG_IN(1) | AG_OUT},
};

static ag_tensor *binary(ag_ctx *c, int kind, ag_tensor *a, ag_tensor *b)
{
    ag_tensor *in[2] = {a, b};
    if (!ag_check_inputs(names[kind], in, 2))
        return NULL;
    int nd;
    int64_t shape[AG_MAX_DIMS];
    if (!ag_broadcast_shape(a, b, &nd, shape)) {
        char sa[128], sb[128];
        ag_error("%s: shapes %s and %s do not broadcast", names[kind], ag_shape_str(a, sa, sizeof sa),
                 ag_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    ag_tensor *out = ag_result(c, &ops[kind], in, 2, nd, shape);
    if (!out)
        return NULL;
    out->iarg[0] = kind;
    binary_kernel(kind, out, a, b, false);
    return out;
}

ag_tensor *ag_add(ag_ctx *c, ag_tensor *a, ag_tensor *b) { return binary(c, ADD, a, b); }
ag_tensor *ag_sub(ag_ctx *c, ag_tensor *a, ag_tensor *b) { return binary(c, SUB, a, b); }
ag_tensor *ag_mul(ag_ctx *c, ag_tensor *a, ag_tensor *b) { return binary(c, MUL, a, b); }
ag_tensor *ag_div(ag_ctx *c, ag_tensor *a, ag_tensor *b) { return binary(c, DIV, a, b); }
