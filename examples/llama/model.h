/* model.h - a Llama-style character-level decoder: token embedding tied to
 * the output head, n_layer blocks of pre-RMSNorm causal self-attention with
 * rotary position embeddings and a SwiGLU feed-forward, a final RMSNorm.
 * Parameter names are Meta's Llama ones (tok_embeddings.weight,
 * layers.0.attention.wq.weight, layers.0.feed_forward.w1.weight,
 * layers.0.attention_norm.weight, norm.weight; output.weight tied to
 * tok_embeddings.weight); tools/llama_torch.py is the same model. */
#ifndef LLAMA_MODEL_H
#define LLAMA_MODEL_H

#include "nn.h"

typedef struct {
    int64_t vocab_size, block_size, n_embd, n_head, n_layer, ffn_hidden;
    float norm_eps;      /* 1e-5 */
    float rope_theta;    /* 10000 */
} llama_config;

typedef struct {
    nn_linear wq, wk, wv, wo;          /* attention.w*: (C, C), no bias */
    nn_swiglu feed_forward;            /* w1, w3 (hidden, C), w2 (C, hidden) */
    nn_rmsnorm attention_norm, ffn_norm;
} llama_layer;

typedef struct {
    llama_config cfg;
    nn_params params;
    nn_embedding tok_embeddings;       /* (V, C), also the output head's weight */
    llama_layer *layers;
    nn_rmsnorm norm;
    nn_linear output;                  /* tied: output.weight is tok_embeddings.weight */
    nn_rope rope;                      /* (block_size, C / n_head) tables */
    int32_t *window;                   /* sampling: the last block_size tokens */
    int64_t len;
} llama;

/* nanoGPT's init from seed: every Linear and the embedding N(0, 0.02), the
 * projections into the residual stream (wo, w2) N(0, 0.02 / sqrt(2 n_layer)),
 * RMSNorm weights ones. */
bool llama_init(llama *m, const llama_config *cfg, uint64_t seed, char *err, size_t errlen);
void llama_free(llama *m);
/* idx (B, T), T <= block_size -> logits (B, T, V); with targets *loss the mean
 * cross-entropy. No dropout. */
ag_tensor *llama_forward(ag_ctx *c, const llama *m, const ag_index *idx, const ag_index *targets,
                         ag_tensor **loss);
/* Sampling, gradients off: an empty window; then append one token (the
 * window slides past block_size) -> logits (V) of the next, recomputing the window. */
void llama_reset(llama *m);
const float *llama_step(ag_ctx *c, llama *m, int32_t token);

#endif
