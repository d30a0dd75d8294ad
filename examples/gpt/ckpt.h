/* ckpt.h - the GPT example's checkpoints: a safetensors file holding the
 * parameters (gpt.py's names), the AdamW state, and as metadata the
 * vocabulary, the model config and the training state needed to resume. */
#ifndef GPT_CKPT_H
#define GPT_CKPT_H

#include "data.h"
#include "model.h"

/* What a resumed run needs besides the weights and the optimizer. */
typedef struct {
    int64_t step;          /* optimizer updates done */
    int64_t evaluated_at;  /* the step whose train/val estimate was already printed, or -1 */
    ag_rng batch_rng, eval_rng, dropout_rng;
    /* training hyperparameters, restored unless given again on the command line */
    int64_t batch_size, max_iters, eval_interval, eval_iters, seed;
    double lr, weight_decay, grad_clip;
} gpt_train_state;

/* Writes path atomically (temporary file, fsync, rename). opt and ts may be NULL. */
bool gpt_ckpt_save(const char *path, const gpt_model *m, const gpt_vocab *v, const nn_adamw *opt,
                   const gpt_train_state *ts, char *err, size_t errlen);
/* Builds m (and v) from a checkpoint. With opt (not yet initialized) and ts
 * it also restores the optimizer and training state. On failure nothing is
 * left allocated and err names the file and the problem. */
bool gpt_ckpt_load(const char *path, gpt_model *m, gpt_vocab *v, nn_adamw *opt,
                   gpt_train_state *ts, char *err, size_t errlen);
/* The same from a file already parsed (nn_st_parse: an image in memory, as
 * the fuzzer gives); name stands for the file in messages. f stays open. */
bool gpt_ckpt_load_st(const nn_st *f, const char *name, gpt_model *m, gpt_vocab *v,
                      nn_adamw *opt, gpt_train_state *ts, char *err, size_t errlen);

#endif
