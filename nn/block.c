/* block.c - FeedForward and the pre-LayerNorm transformer Block, whose
 * structure is written once here for all three of its forwards. */
#include "nn.h"

#include <stdio.h>

bool nn_feedforward_init(nn_feedforward *f, nn_params *p, const char *prefix, int64_t n_embd,
                         float dropout, ag_rng *rng)
{
    char name[256];
    f->dropout.p = dropout;
    snprintf(name, sizeof name, "%s.net.0", prefix); /* nn.Sequential indices: 1 is ReLU, 3 Dropout */
    bool ok = nn_linear_init(&f->fc, p, name, n_embd, 4 * n_embd, true, rng);
    snprintf(name, sizeof name, "%s.net.2", prefix);
    return ok && nn_linear_init(&f->proj, p, name, 4 * n_embd, n_embd, true, rng);
}

ag_tensor *nn_feedforward_forward(ag_ctx *c, const nn_feedforward *f, ag_tensor *x, bool training)
{
    ag_tensor *pre = nn_linear_forward(c, &f->fc, x);                      /* (..., 4n) */
    ag_tensor *h = ag_relu(c, pre);
    ag_tensor *y = nn_linear_forward(c, &f->proj, h);                      /* (..., n) */
    ag_tensor *out = nn_dropout_forward(c, &f->dropout, y, training);
    ag_release(c, pre); /* relu's backward reads its output, not pre */
    ag_release(c, h);
    ag_release(c, y);
    return out;
}

bool nn_block_init(nn_block *b, nn_params *p, const char *prefix, int64_t n_embd, int n_head,
                   float dropout, ag_rng *rng)
{
    char name[256];
    snprintf(name, sizeof name, "%s.sa", prefix);
    bool ok = nn_mha_init(&b->sa, p, name, n_embd, n_head, dropout, rng);
    snprintf(name, sizeof name, "%s.ffwd", prefix);
    ok = ok && nn_feedforward_init(&b->ffwd, p, name, n_embd, dropout, rng);
    snprintf(name, sizeof name, "%s.ln1", prefix);
    ok = ok && nn_layernorm_init(&b->ln1, p, name, n_embd);
    snprintf(name, sizeof name, "%s.ln2", prefix);
    return ok && nn_layernorm_init(&b->ln2, p, name, n_embd);
}

/* Row T-1 of (..., T, C) as (..., 1, C); a view when x is (1, T, C). */
static ag_tensor *last_row(ag_ctx *c, ag_tensor *x)
{
    if (!x)
        return NULL;
    int axis = x->ndim >= 2 ? x->ndim - 2 : 0;
    return ag_slice(c, x, axis, x->shape[axis] - 1, x->shape[axis]);
}

/* The block, written once for every forward: x + sa(ln1(x)), then
 * + ffwd(ln2(.)). With kc the heads attend over the cache instead of over x's
 * positions; with last_only only the last row goes on after attention. */
static ag_tensor *run(ag_ctx *c, const nn_block *b, ag_tensor *x, nn_kv_cache *kc, bool last_only,
                      bool training)
{
    ag_tensor *a = nn_layernorm_forward(c, &b->ln1, x);
    ag_tensor *att = kc ? nn_mha_attend_cached(c, &b->sa, kc, a)
                        : nn_mha_attend(c, &b->sa, a, training);           /* (B, T, C) */
    ag_tensor *res = x;                                                     /* the residual */
    if (last_only) {
        ag_tensor *all = att;
        att = last_row(c, all);                                             /* (B, 1, C) */
        res = last_row(c, x);
        ag_release(c, all); /* the last row's view keeps its buffer */
    }
    ag_tensor *sa = nn_mha_project(c, &b->sa, att, training);
    ag_release(c, att);
    ag_tensor *x1 = ag_add(c, res, sa);
    ag_tensor *n2 = nn_layernorm_forward(c, &b->ln2, x1);
    ag_tensor *ff = nn_feedforward_forward(c, &b->ffwd, n2, training);
    ag_tensor *out = ag_add(c, x1, ff);
    ag_tensor *tmp[] = {a, sa, x1, n2, ff};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    if (res != x)
        ag_release(c, res);
    return out;
}

ag_tensor *nn_block_forward(ag_ctx *c, const nn_block *b, ag_tensor *x, bool training)
{
    return run(c, b, x, NULL, false, training);
}

ag_tensor *nn_block_forward_cached(ag_ctx *c, const nn_block *b, nn_kv_cache *kc, ag_tensor *x)
{
    if (!kc) {
        ag_error("nn_block_forward_cached: no cache");
        return NULL;
    }
    return run(c, b, x, kc, false, false);
}

ag_tensor *nn_block_forward_last(ag_ctx *c, const nn_block *b, ag_tensor *x)
{
    return run(c, b, x, NULL, true, false);
}

void nn_block_free(nn_block *b) { nn_mha_free(&b->sa); }
