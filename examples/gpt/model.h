/* model.h - the lecture's character-level GPT (gpt.py), built from nn layers. */
#ifndef GPT_MODEL_H
#define GPT_MODEL_H

#include "nn.h"

typedef struct {
    int64_t vocab_size, block_size, n_embd;
    int n_head, n_layer;
    float dropout;
} gpt_config;

typedef struct {
    gpt_config cfg;
    nn_params params;           /* gpt.py's state_dict names */
    nn_embedding tok, pos;      /* token_embedding_table, position_embedding_table */
    nn_block *blocks;           /* blocks.0 ... */
    nn_layernorm ln_f;
    nn_linear lm_head;
    ag_index *positions;        /* 0 .. block_size-1 */
    ag_precision precision;     /* of the products: each forward below sets it on its ctx
                                 * (AG_FP32 from gpt_init; a checkpoint records it) */
} gpt_model;

/* Checks cfg (positive sizes, n_embd divisible by n_head, 0 <= dropout < 1);
 * false with a one-line reason in err if it does not hold. */
bool gpt_config_check(const gpt_config *cfg, char *err, size_t errlen);
/* Builds the model with PyTorch's default inits drawn from a generator seeded by seed. */
bool gpt_init(gpt_model *m, const gpt_config *cfg, uint64_t seed, char *err, size_t errlen);
void gpt_free(gpt_model *m);
/* idx (B, T) with T <= block_size -> logits (B, T, vocab). With targets (B, T),
 * *loss gets the mean cross-entropy (0-dim). Dropout is active when training. */
ag_tensor *gpt_forward(ag_ctx *c, const gpt_model *m, const ag_index *idx, const ag_index *targets,
                       bool training, ag_tensor **loss);
/* idx (B, T) -> logits (B, 1, vocab) of the token after the last: gpt_forward's
 * last row in eval mode, with only the last position carried on after the
 * last block's attention (nn_block_forward_last). */
ag_tensor *gpt_forward_last(ag_ctx *c, const gpt_model *m, const ag_index *idx);

/* Every block's key/value cache for one sequence of up to block_size
 * positions, sampled one position at a time (see nn_kv_cache). */
typedef struct {
    nn_kv_cache *layers;  /* one per block */
    int n_layer;
} gpt_kv_cache;
bool gpt_kv_cache_init(gpt_kv_cache *kc, const gpt_model *m);
void gpt_kv_cache_free(gpt_kv_cache *kc);
/* The token at position kc's length -> logits (1, 1, vocab) of the token after
 * it, appending the position to every block's cache: gpt_forward's last row
 * for the tokens so far, at one position's cost. c must have gradients off. */
ag_tensor *gpt_forward_cached(ag_ctx *c, const gpt_model *m, gpt_kv_cache *kc, int32_t token);

#endif
