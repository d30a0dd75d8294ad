/* rope.c - rotary position embeddings (RoPE) in the rotate-half form of
 * Llama's Hugging Face port: out = x cos + rotate_half(x) sin, where
 * rotate_half(x1 | x2) = (-x2 | x1) over the halves of the head dim and
 * position t, pair i (i < hs/2) turns by angle t theta^(-2i/hs).
 *
 * The tables are constants made once in double: cos (max_T, hs) and sin
 * with rotate_half's sign folded in, (-sin | sin), so the rotation is
 * x cos + swap_halves(x) sin_signed. */
#include "nn.h"
#include "private.h"

#include <math.h>
#include <stdlib.h>

bool nn_rope_init(nn_rope *r, int64_t max_T, int64_t head_size, float theta)
{
    r->cos = r->sin = NULL;
    r->max_T = max_T;
    r->head_size = head_size;
    if (max_T < 1 || head_size < 2 || head_size % 2 || !(theta > 0)) {
        ag_error("nn_rope_init: want max_T >= 1, an even head_size and theta > 0, got %lld, %lld, %g",
                 (long long)max_T, (long long)head_size, (double)theta);
        return false;
    }
    r->cos = ag_empty(NULL, AG_SHAPE(max_T, head_size));
    r->sin = ag_empty(NULL, AG_SHAPE(max_T, head_size));
    int64_t half = head_size / 2;
    for (int64_t t = 0; t < max_T; t++)
        for (int64_t i = 0; i < half; i++) {
            /* torch computes the frequencies in float32: theta^(-2i/hs) rounded first */
            float inv = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)head_size));
            double a = (double)t * (double)inv;
            float c = (float)cos(a), s = (float)sin(a);
            r->cos->data[t * head_size + i] = r->cos->data[t * head_size + half + i] = c;
            r->sin->data[t * head_size + i] = -s;
            r->sin->data[t * head_size + half + i] = s;
        }
    return true;
}

void nn_rope_free(nn_rope *r)
{
    ag_tensor_free(r->cos);
    ag_tensor_free(r->sin);
    r->cos = r->sin = NULL;
}

/* Rows pos0 .. pos0+T of a table, shaped (T, 1, ..., hs) to broadcast
 * against x's dims from t_axis on: views, no copy. */
static ag_tensor *rows(ag_ctx *c, ag_tensor *table, int64_t pos0, int64_t T, int tail)
{
    ag_tensor *s = ag_slice(c, table, 0, pos0, pos0 + T);
    int64_t shape[AG_MAX_DIMS];
    shape[0] = T;
    for (int k = 1; k < tail - 1; k++)
        shape[k] = 1;
    shape[tail - 1] = table->shape[1];
    ag_tensor *v = ag_reshape(c, s, tail, shape);
    ag_release(c, s);
    return v;
}

ag_tensor *nn_rope_forward(ag_ctx *c, const nn_rope *r, ag_tensor *x, int t_axis, int64_t pos0)
{
    if (!x)
        return NULL;
    int ax = t_axis < 0 ? t_axis + x->ndim : t_axis;
    char b[128];
    if (ax < 0 || ax >= x->ndim - 1 || x->shape[x->ndim - 1] != r->head_size) {
        ag_error("nn_rope_forward: x of shape %s, positions on axis %d: want (..., T, ..., %lld)",
                 ag_shape_str(x, b, sizeof b), t_axis, (long long)r->head_size);
        return NULL;
    }
    int64_t T = x->shape[ax], half = r->head_size / 2;
    if (pos0 < 0 || pos0 + T > r->max_T) {
        ag_error("nn_rope_forward: positions %lld .. %lld outside the table's %lld", (long long)pos0,
                 (long long)(pos0 + T), (long long)r->max_T);
        return NULL;
    }
    int tail = x->ndim - ax;                                         /* dims from T on */
    ag_tensor *cs = rows(c, r->cos, pos0, T, tail), *sn = rows(c, r->sin, pos0, T, tail);
    ag_tensor *x1 = ag_slice(c, x, -1, 0, half), *x2 = ag_slice(c, x, -1, half, 2 * half);
    ag_tensor *sw = ag_concat(c, (ag_tensor *[]){x2, x1}, 2, -1);  /* x2 | x1 */
    ag_tensor *a = ag_mul(c, x, cs), *bb = ag_mul(c, sw, sn);
    ag_tensor *out = ag_add(c, a, bb);
    ag_tensor *tmp[] = {cs, sn, x1, x2, sw, a, bb};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    return out;
}
