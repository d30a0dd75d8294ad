/* generate.h - sampling text from a trained model, as gpt.py's generate. */
#ifndef GPT_GENERATE_H
#define GPT_GENERATE_H

#include <stdio.h>

#include "data.h"
#include "model.h"

typedef struct {
    int64_t max_new_tokens;
    float temperature;   /* logits are divided by it; 0 takes the most likely (greedy) */
    int64_t top_k;       /* keep the k most likely tokens; 0 keeps all */
    ag_rng rng;
    bool no_kv_cache;    /* recompute the whole context for every token, as gpt.py does */
} gpt_sample_opts;

/* Draws a token from logits (V, divided in place by o->temperature) after
 * o->top_k; tmp is V floats of scratch. Temperature 0 takes the most likely
 * (the first of equals); -1 when the logits are not finite: there is nothing
 * to draw from. (The char-level examples' samplers share it.) */
int32_t gpt_pick_token(float *logits, float *tmp, int64_t V, const gpt_sample_opts *o, ag_rng *rng);

/* Continues the n tokens of ctx_tokens (n >= 1) by max_new_tokens tokens,
 * cropping the context to the last block_size tokens each step, writing each
 * new character to out as it comes. Returns the number generated: fewer than
 * asked when the model's logits stop being finite (weights that overflow) or a
 * write to out fails (ferror(out) tells which).
 * While the context fits in block_size, each layer's keys and values are
 * cached, so a new token costs one position's work; once the window slides,
 * every position moves and the whole window is recomputed, as in gpt.py. */
int64_t gpt_generate(const gpt_model *m, const gpt_vocab *v, const int32_t *ctx_tokens, int64_t n,
                     gpt_sample_opts *o, FILE *out);

#endif
