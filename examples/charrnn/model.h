/* model.h - a character-level GRU or LSTM language model: an embedding,
 * n_layer stacked cells (torch.nn.GRUCell / LSTMCell), a linear head;
 * trained on windows of T characters from a zero state, as
 * tools/charrnn_torch.py does with torch.nn.GRU / LSTM. */
#ifndef CHARRNN_MODEL_H
#define CHARRNN_MODEL_H

#include "nn.h"

typedef struct {
    int64_t vocab_size, n_embd, hidden, n_layer;
    bool lstm;                    /* else GRU */
} charrnn_config;

typedef struct {
    charrnn_config cfg;
    nn_params params;             /* embedding.weight, cells.<l>.weight_ih ..., head.weight/bias */
    nn_embedding embedding;
    nn_gru_cell *gru;             /* n_layer of them, or NULL */
    nn_lstm_cell *lstm;
    nn_linear head;
    float *h, *c;                 /* sampling state: (n_layer, hidden) each */
} charrnn;

/* PyTorch's default inits (embedding N(0, 1), cells and head uniform) from seed. */
bool charrnn_init(charrnn *m, const charrnn_config *cfg, uint64_t seed, char *err, size_t errlen);
void charrnn_free(charrnn *m);
/* idx (B, T) -> logits (T, B, V), time-major; with targets (B, T) *loss is the
 * mean cross-entropy. The inputs of each layer are projected for all T steps
 * at once (nn_gru_forward / nn_lstm_forward). */
ag_tensor *charrnn_forward(ag_ctx *c, const charrnn *m, const ag_index *idx,
                           const ag_index *targets, ag_tensor **loss);
/* Sampling, gradients off: zero state; then one token -> logits (1, V) of the next. */
void charrnn_reset(charrnn *m);
ag_tensor *charrnn_step(ag_ctx *c, charrnn *m, int32_t token);

#endif
