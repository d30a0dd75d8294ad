/* nn_util.h - what the nn layer suites (test_nn_*.c) share: one module's
 * forward behind the gradcheck signature, gradchecking a module with respect
 * to its input and parameters, keeping finite differences off ReLU's kink,
 * and running a forward into plain memory. */
#ifndef NN_UTIL_H
#define NN_UTIL_H

#include "test_util.h"

#include <stdlib.h>

#include "nn.h"

typedef struct {
    const void *m;       /* the module */
    const ag_index *idx; /* embedding indices */
    bool training;
} fwd;

static inline ag_tensor *f_linear(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    return weighted_sum(c, nn_linear_forward(c, ((fwd *)u)->m, in[0]));
}

static inline ag_tensor *f_embedding(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)in, (void)n;
    const fwd *a = u;
    return weighted_sum(c, nn_embedding_forward(c, a->m, a->idx));
}

static inline ag_tensor *f_layernorm(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    return weighted_sum(c, nn_layernorm_forward(c, ((fwd *)u)->m, in[0]));
}

static inline ag_tensor *f_head(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const fwd *a = u;
    return weighted_sum(c, nn_head_forward(c, a->m, in[0], a->training));
}

static inline ag_tensor *f_mha(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const fwd *a = u;
    return weighted_sum(c, nn_mha_forward(c, a->m, in[0], a->training));
}

static inline ag_tensor *f_ffwd(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const fwd *a = u;
    return weighted_sum(c, nn_feedforward_forward(c, a->m, in[0], a->training));
}

static inline ag_tensor *f_block(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const fwd *a = u;
    return weighted_sum(c, nn_block_forward(c, a->m, in[0], a->training));
}

/* Gradchecks f with respect to x (if any) and every parameter in p. First one
 * backward must give each of them a nonzero gradient: a parameter the forward
 * ignores would otherwise pass (analytic 0 == numeric 0). */
static inline void check_module(ag_gradcheck_fn f, fwd *a, ag_tensor *x, nn_params *p)
{
    ag_tensor *in[64];
    int n = 0;
    if (x)
        in[n++] = x;
    assert_true(p->n > 0 && p->n < 63);
    for (int i = 0; i < p->n; i++) {
        assert_true(ag_requires_grad(p->items[i]));
        assert_null(ag_tensor_ctx(p->items[i])); /* persistent */
        in[n++] = p->items[i];
    }
    ag_ctx *c = ag_ctx_new();
    for (int i = 0; i < n; i++)
        ag_zero_grad(in[i]);
    ag_tensor *y = f(c, in, n, a);
    assert_non_null(y);
    assert_true(ag_backward(c, y));
    for (int i = 0; i < n; i++) {
        bool any = false;
        for (int64_t k = 0; k < in[i]->numel && !any; k++)
            any = in[i]->grad[k] != 0.0f;
        if (!any)
            fail_msg("%s gets no gradient", in[i]->name ? in[i]->name : "the input");
    }
    ag_ctx_free(c);
    assert_gradcheck(f, in, n, a);
}

static inline int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Finite differences across ReLU's kink are wrong by design, so for the
 * modules with a ReLU this sets fc's bias so that each hidden unit's
 * pre-activations over all rows of `in` (fc's input) sit as far from 0 as
 * possible: the bias puts 0 in the middle of the widest gap between that
 * unit's values, so some rows are active and some are not. Returns the
 * smallest |pre-activation|. */
static inline float center_relu_bias(const nn_linear *fc, ag_tensor *in)
{
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_tensor *h = ag_matmul_nt(c, in, fc->weight);
    int64_t units = fc->weight->shape[0], rows = h->numel / units;
    float *v = malloc((size_t)rows * sizeof *v), least = INFINITY;
    assert_true(rows >= 2);
    for (int64_t j = 0; j < units; j++) {
        for (int64_t r = 0; r < rows; r++)
            v[r] = h->data[r * units + j];
        qsort(v, (size_t)rows, sizeof *v, cmp_float);
        int64_t best = 0;
        for (int64_t r = 1; r + 1 < rows; r++)
            if (v[r + 1] - v[r] > v[best + 1] - v[best])
                best = r;
        fc->bias->data[j] = -0.5f * (v[best] + v[best + 1]);
        least = fminf(least, 0.5f * (v[best + 1] - v[best]));
    }
    free(v);
    ag_ctx_free(c);
    return least;
}

/* The input of a Block's feedforward, ln2(x + sa(ln1(x))), as the block's
 * forward computes it with ctx seeded by seed (dropout masks included). */
static inline float center_block_relu(const nn_block *b, ag_tensor *x, bool training, uint64_t seed)
{
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_ctx_manual_seed(c, seed);
    ag_tensor *r = ag_add(c, x, nn_mha_forward(c, &b->sa, nn_layernorm_forward(c, &b->ln1, x), training));
    ag_tensor *in = nn_layernorm_forward(c, &b->ln2, r);
    float m = center_relu_bias(&b->ffwd.fc, in);
    ag_ctx_free(c);
    return m;
}

/* a module's forward behind one signature, for run() */
typedef ag_tensor *(*seq_fn)(ag_ctx *c, const void *m, ag_tensor *x, bool training);

static inline ag_tensor *s_head(ag_ctx *c, const void *m, ag_tensor *x, bool t) { return nn_head_forward(c, m, x, t); }
static inline ag_tensor *s_mha(ag_ctx *c, const void *m, ag_tensor *x, bool t) { return nn_mha_forward(c, m, x, t); }
static inline ag_tensor *s_ffwd(ag_ctx *c, const void *m, ag_tensor *x, bool t) { return nn_feedforward_forward(c, m, x, t); }
static inline ag_tensor *s_block(ag_ctx *c, const void *m, ag_tensor *x, bool t) { return nn_block_forward(c, m, x, t); }
static inline ag_tensor *s_dropout(ag_ctx *c, const void *m, ag_tensor *x, bool t) { return nn_dropout_forward(c, m, x, t); }

/* one forward of m (ctx seeded with seed), copied out into malloc'd memory */
static inline float *run(seq_fn f, const void *m, ag_tensor *x, bool training, uint64_t seed, int64_t *numel)
{
    ag_ctx *c = ag_ctx_new();
    ag_ctx_manual_seed(c, seed);
    ag_tensor *y = f(c, m, x, training);
    assert_non_null(y);
    float *out = malloc((size_t)y->numel * sizeof *out);
    memcpy(out, y->data, (size_t)y->numel * sizeof *out);
    if (numel)
        *numel = y->numel;
    ag_ctx_free(c);
    return out;
}

static inline bool bit_equal(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

#endif
