/* block.c - FeedForward and the pre-LayerNorm transformer Block. */
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
    nn_release_unless(c, y, out);
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

ag_tensor *nn_block_forward(ag_ctx *c, const nn_block *b, ag_tensor *x, bool training)
{
    ag_tensor *a = nn_layernorm_forward(c, &b->ln1, x);
    ag_tensor *sa = nn_mha_forward(c, &b->sa, a, training);
    ag_tensor *x1 = ag_add(c, x, sa);
    ag_tensor *n2 = nn_layernorm_forward(c, &b->ln2, x1);
    ag_tensor *ff = nn_feedforward_forward(c, &b->ffwd, n2, training);
    ag_tensor *out = ag_add(c, x1, ff);
    ag_tensor *tmp[] = {a, sa, x1, n2, ff};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    return out;
}

void nn_block_free(nn_block *b) { nn_mha_free(&b->sa); }
