/* ops_embedding.c - row lookup: weight (V, C) gathered by idx (...) -> (..., C).
 * Backward scatters each row's grad back; repeated indices add up. */
#include "internal.h"

typedef struct {
    const int32_t *idx; /* a copy of the indices */
    int64_t n;          /* how many */
} embedding_attr;

static void embedding_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *w = ag_input(out, 0);
    float *gw = ag_grad_of(ctx, w);
    if (!gw)
        return;
    const embedding_attr *at = ag_saved(out);
    const int32_t *idx = at->idx;
    int64_t n = at->n, C = w->shape[1];
    /* split by columns, not rows: two rows may scatter into the same weight row */
    AG_PARALLEL(C >= 32 ? n * C : 0, ,
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
        int64_t c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int64_t r = 0; r < n; r++) {
            float *dst = gw + (int64_t)idx[r] * C;
            const float *src = out->grad + r * C;
            for (int64_t c = c0; c < c1; c++)
                dst[c] += src[c];
        }
    }
    );
}

static const ag_op embedding_op = {"embedding", embedding_backward, AG_NO_DATA};

ag_tensor *ag_embedding(ag_ctx *c, ag_tensor *weight, const ag_index *idx)
{
    /* NULL indices come from a failed ag_index_new, which has reported */
    if (!ag_check_inputs("embedding", &weight, 1) || !idx)
        return NULL;
    char sw[128], si[128];
    if (weight->ndim != 2 || idx->ndim + 1 > AG_MAX_DIMS) {
        ag_error("embedding: weight %s and indices %s; want (V, C) and at most %d dims",
                 ag_shape_str(weight, sw, sizeof sw),
                 ag_fmt_shape(idx->ndim, idx->shape, si, sizeof si), AG_MAX_DIMS - 1);
        return NULL;
    }
    int64_t V = weight->shape[0], C = weight->shape[1];
    for (int64_t i = 0; i < idx->numel; i++)
        if (idx->data[i] < 0 || idx->data[i] >= V) {
            ag_error("embedding: index %d at position %lld is out of range for %lld rows",
                     idx->data[i], (long long)i, (long long)V);
            return NULL;
        }
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
    shape[idx->ndim] = C;
    ag_tensor *out = ag_result(c, &embedding_op, &weight, 1, idx->ndim + 1, shape);
    if (!out)
        return NULL;
    int32_t *saved = ag_ctx_alloc(c, (size_t)idx->numel * sizeof *saved);
    memcpy(saved, idx->data, (size_t)idx->numel * sizeof *saved);
    ag_save(c, out, &(embedding_attr){.idx = saved, .n = idx->numel}, sizeof(embedding_attr));
    AG_PARALLEL(idx->numel * C, ,
    for (int64_t r = 0; r < idx->numel; r++)
        memcpy(out->data + r * C, weight->data + (int64_t)saved[r] * C, (size_t)C * sizeof(float));
    );
    return out;
}
