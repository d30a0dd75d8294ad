/* ckpt.h - the GPT example's checkpoints: a safetensors file holding the
 * parameters (gpt.py's names), the AdamW state, and as metadata the
 * vocabulary, the model config and the training state needed to resume. */
#ifndef GPT_CKPT_H
#define GPT_CKPT_H

#include "data.h"
#include "model.h"
#include "options.h"

/* What a resumed run needs besides the weights and the optimizer. */
typedef struct {
    int64_t step;          /* optimizer updates done */
    int64_t evaluated_at;  /* the step whose train/val estimate was already printed, or -1 */
    ag_rng batch_rng, eval_rng, dropout_rng;
    double elapsed_s;      /* wall time of the runs so far (the loss log's elapsed_s goes on
                            * from it); 0 in checkpoints written before it was kept */
    /* the TRAIN rows of GPT_OPTIONS (batch_size, lr, ...), restored unless given again */
#define X(field, type, flag, def, min, max, commands, kept, help) \
    GPT_IF(TRAIN, kept, gpt_opt_##type field;)
    GPT_OPTIONS(X)
#undef X
} gpt_train_state;

/* ts gets o's TRAIN settings, as a checkpoint keeps them. */
void gpt_train_state_settings(gpt_train_state *ts, const gpt_options *o);
/* A resumed run's options from its checkpoint: the MODEL and SHAPE rows from
 * cfg, the TRAIN rows from ts unless given again (t, n: the parsed flags).
 * False with err naming the flag when a SHAPE one given explicitly or by
 * o->preset differs from the checkpoint's. */
bool gpt_options_resume(gpt_options *o, cli_opt *t, int n, const gpt_config *cfg,
                        const gpt_train_state *ts, char *err, size_t errlen);

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

/* ------------------------------------------------------------ weights from PyTorch */

/* How to read weights for sampling or as a training run's start: a
 * checkpoint of this program has everything in its metadata; a PyTorch
 * state_dict of gpt.py's model written as safetensors (save_file(
 * model.state_dict(), path), no metadata needed) gives its sizes by its
 * shapes and needs the vocabulary from outside. */
typedef struct {
    const gpt_vocab *vocab;      /* the vocabulary from --data or --vocab, or NULL. A checkpoint
                                  * of ours must have this one; a state_dict takes it */
    const char *vocab_source;    /* the file it came from, for messages */
    const char *attention_scale; /* a state_dict's attention scale: "n_embd" (gpt.py's
                                  * C**-0.5; NULL means this) or "head_size" (nanoGPT's) */
    double dropout;              /* the model's dropout; < 0: a checkpoint's own, 0 for a state_dict */
} gpt_weights_opts;

/* Builds m and v from path's weights (a checkpoint of this program, or a
 * state_dict as described above: vocab_size and n_embd from
 * token_embedding_table.weight, block_size from position_embedding_table.weight,
 * n_layer and n_head from how many blocks and heads it has; the "tril"
 * buffers are checked and skipped). Optimizer state is not read. On failure
 * nothing is left allocated and err names the file and the problem. */
bool gpt_weights_load(const char *path, const gpt_weights_opts *wo, gpt_model *m, gpt_vocab *v,
                      char *err, size_t errlen);
bool gpt_weights_load_st(const nn_st *f, const char *name, const gpt_weights_opts *wo,
                         gpt_model *m, gpt_vocab *v, char *err, size_t errlen);

/* `gpt train --init-from`: m from o->init_from's weights with the data's
 * vocabulary, o->attention_scale and o->dropout; o's SHAPE rows become the
 * file's, and one given explicitly or by o->preset that differs is an error
 * naming the flag (t, n: the parsed flags). */
bool gpt_init_from(gpt_model *m, gpt_options *o, cli_opt *t, int n, const gpt_vocab *vocab,
                   char *err, size_t errlen);

#endif
