/* ops_loss.c - cross-entropy of class logits against integer targets.
 * (N, C) logits, (N) targets -> 0-dim mean over the rows not ignored.
 * Fused: forward keeps each row's log-sum-exp; backward is softmax - onehot. */
#include "internal.h"

typedef struct {
    const int32_t *targets;
    double *lse;  /* double: m + log(sum) in float would round to m's precision at large logits */
    int64_t count;
    int ignore_index;
} ce_saved;

static void ce_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    float *gx = ag_grad_of(ctx, x);
    if (!gx)
        return;
    const ce_saved *s = ag_saved(out);
    int64_t N = x->shape[0], C = x->shape[1];
    int ignore = s->ignore_index;
    float scale = out->grad[0] / (float)s->count;
    AG_PARALLEL(N * C, ,
    for (int64_t n = 0; n < N; n++) {
        int32_t t = s->targets[n];
        if (t == ignore)
            continue;
        const float *xr = x->data + n * C;
        float *gr = gx + n * C;
        for (int64_t c = 0; c < C; c++)
            gr[c] += scale * ag_expf((float)(xr[c] - s->lse[n]));
        gr[t] -= scale;
    }
    );
}

static const ag_op ce_op = {"cross_entropy", ce_backward, AG_IN(0)};

typedef struct {
    const float *logits;
    int64_t C;
    ce_saved *s;
} ce_rows;

/* Rows [lo, hi): each row's log-sum-exp into s->lse, and the sum of the
 * losses of the rows not ignored (for ag_parallel_sum). */
static double ce_range(int64_t lo, int64_t hi, void *user)
{
    const ce_rows *j = user;
    int64_t C = j->C;
    ce_saved *s = j->s;
    double total = 0;
    for (int64_t n = lo; n < hi; n++) {
        const float *xr = j->logits + n * C;
        float m = -INFINITY, sum = 0.0f;
        for (int64_t k = 0; k < C; k++)
            m = xr[k] > m ? xr[k] : m;
        for (int64_t k = 0; k < C; k++)
            sum += ag_expf(xr[k] - m);
        s->lse[n] = (double)m + logf(sum);
        if (s->targets[n] != s->ignore_index)
            total += s->lse[n] - xr[s->targets[n]];
    }
    return total;
}

ag_tensor *ag_cross_entropy(ag_ctx *c, ag_tensor *logits, const ag_index *targets, int ignore_index)
{
    /* NULL targets come from a failed ag_index_new, which has reported */
    if (!ag_check_inputs("cross_entropy", &logits, 1) || !targets)
        return NULL;
    char sl[128], st[128];
    if (logits->ndim != 2 || targets->ndim != 1 || targets->shape[0] != logits->shape[0]) {
        ag_error("cross_entropy: logits %s and targets %s; want (N, C) and (N)",
                 ag_shape_str(logits, sl, sizeof sl),
                 ag_fmt_shape(targets->ndim, targets->shape, st, sizeof st));
        return NULL;
    }
    int64_t N = logits->shape[0], C = logits->shape[1], count = 0;
    for (int64_t n = 0; n < N; n++) {
        int32_t t = targets->data[n];
        if (t == ignore_index)
            continue;
        if (t < 0 || t >= C) {
            ag_error("cross_entropy: target %d at row %lld is out of range for %lld classes",
                     t, (long long)n, (long long)C);
            return NULL;
        }
        count++;
    }
    ag_tensor *out = ag_result(c, &ce_op, &logits, 1, 0, NULL);
    if (!out)
        return NULL;
    ce_saved *s = ag_ctx_alloc(c, sizeof *s);
    int32_t *tg = ag_ctx_alloc(c, (size_t)N * sizeof *tg);
    memcpy(tg, targets->data, (size_t)N * sizeof *tg);
    s->targets = tg;
    s->lse = ag_ctx_alloc(c, (size_t)N * sizeof(double));
    s->count = count;
    s->ignore_index = ignore_index;
    ag_node_of(out)->saved = s;
    ce_rows job = {logits->data, C, s};
    double total = ag_parallel_sum(N, N * C, ce_range, &job);
    out->data[0] = (float)(total / (double)count); /* no rows counted: NaN, as in PyTorch */
    return out;
}
