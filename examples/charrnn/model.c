/* model.c - the character-level GRU / LSTM (model.h). */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool charrnn_init(charrnn *m, const charrnn_config *cfg, uint64_t seed, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (cfg->vocab_size < 1 || cfg->n_embd < 1 || cfg->hidden < 1 || cfg->n_layer < 1) {
        snprintf(err, errlen, "vocab_size, n_embd, hidden and n_layer must be positive");
        return false;
    }
    nn_params_init(&m->params);
    ag_rng rng = ag_rng_new(seed);
    bool ok = nn_embedding_init(&m->embedding, &m->params, "embedding", cfg->vocab_size,
                                cfg->n_embd, &rng);
    int64_t L = cfg->n_layer, H = cfg->hidden;
    if (cfg->lstm)
        m->lstm = calloc((size_t)L, sizeof *m->lstm);
    else
        m->gru = calloc((size_t)L, sizeof *m->gru);
    m->h = calloc((size_t)(L * H), sizeof *m->h);
    m->c = calloc((size_t)(L * H), sizeof *m->c);
    char name[64];
    for (int64_t l = 0; ok && l < L; l++) {
        int64_t in = l == 0 ? cfg->n_embd : H;
        snprintf(name, sizeof name, "cells.%lld", (long long)l);
        ok = cfg->lstm ? nn_lstm_cell_init(&m->lstm[l], &m->params, name, in, H, true, &rng)
                       : nn_gru_cell_init(&m->gru[l], &m->params, name, in, H, true, &rng);
    }
    ok = ok && nn_linear_init(&m->head, &m->params, "head", H, cfg->vocab_size, true, &rng);
    if (!ok) {
        snprintf(err, errlen, "cannot build the model");
        charrnn_free(m);
    }
    return ok;
}

void charrnn_free(charrnn *m)
{
    nn_params_free(&m->params);
    free(m->gru);
    free(m->lstm);
    free(m->h);
    free(m->c);
    m->gru = NULL;
    m->lstm = NULL;
    m->h = m->c = NULL;
}

/* (B, T) -> (T, B): the cells run time-major, so each step's inputs are a view */
static ag_index *transposed(ag_ctx *c, const ag_index *a)
{
    int64_t B = a->shape[0], T = a->shape[1];
    ag_index *t = ag_index_new(c, NULL, AG_SHAPE(T, B));
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < T; s++)
            t->data[s * B + b] = a->data[b * T + s];
    return t;
}

ag_tensor *charrnn_forward(ag_ctx *c, const charrnn *m, const ag_index *idx,
                           const ag_index *targets, ag_tensor **loss)
{
    int64_t B = idx->shape[0], T = idx->shape[1], V = m->cfg.vocab_size;
    ag_tensor *x = nn_embedding_forward(c, &m->embedding, transposed(c, idx)); /* (T, B, E) */
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        ag_tensor *y = m->lstm ? nn_lstm_forward(c, &m->lstm[l], x, NULL, NULL, NULL, NULL)
                               : nn_gru_forward(c, &m->gru[l], x, NULL, NULL);  /* (T, B, H) */
        ag_release(c, x);
        x = y;
    }
    ag_tensor *logits = nn_linear_forward(c, &m->head, x);                       /* (T, B, V) */
    ag_release(c, x);
    if (targets && loss) {
        ag_index *tt = transposed(c, targets);
        ag_index flat = *tt; /* the same ints as (T B) */
        flat.ndim = 1;
        flat.shape[0] = T * B;
        ag_tensor *l2 = ag_reshape(c, logits, AG_SHAPE(T * B, V));
        *loss = ag_cross_entropy(c, l2, &flat, -100);
        ag_release(c, l2);
    }
    return logits;
}

void charrnn_reset(charrnn *m)
{
    size_t n = (size_t)(m->cfg.n_layer * m->cfg.hidden);
    memset(m->h, 0, n * sizeof *m->h);
    memset(m->c, 0, n * sizeof *m->c);
}

ag_tensor *charrnn_step(ag_ctx *c, charrnn *m, int32_t token)
{
    int64_t H = m->cfg.hidden;
    ag_index *ix = ag_index_new(c, &token, AG_SHAPE(1));
    ag_tensor *x = nn_embedding_forward(c, &m->embedding, ix);                   /* (1, E) */
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        ag_tensor *h = ag_from_data(c, m->h + l * H, AG_SHAPE(1, H)), *cs = NULL;
        if (m->lstm) {
            cs = ag_from_data(c, m->c + l * H, AG_SHAPE(1, H));
            ag_tensor *c2 = NULL;
            nn_lstm_cell_forward(c, &m->lstm[l], x, h, cs, &x, &c2);
            if (!c2)
                return NULL;
            memcpy(m->c + l * H, c2->data, (size_t)H * sizeof(float));
        } else
            x = nn_gru_cell_forward(c, &m->gru[l], x, h);
        if (!x)
            return NULL;
        memcpy(m->h + l * H, x->data, (size_t)H * sizeof(float));
    }
    return nn_linear_forward(c, &m->head, x);                                    /* (1, V) */
}
