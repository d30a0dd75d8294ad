/* charlm.h - the train and sample commands shared by the character-level
 * examples (examples/llama, examples/charrnn): a model supplies its flags,
 * its build, its forward and a one-token step for sampling; this driver
 * does the rest with the GPT example's data and flag code (gpt_core):
 * tiny Shakespeare as characters, 90/10 split, random windows, AdamW with
 * parameter groups, warmup + cosine learning rate, gradient accumulation
 * over micro-batches, train/val estimates, a checkpoint, sampling. */
#ifndef CHARLM_H
#define CHARLM_H

#include "cli.h"
#include "data.h"
#include "nn.h"

/* The training settings (flags of `train`); a model's defaults set them. */
typedef struct {
    const char *data;        /* text file */
    const char *out;         /* checkpoint path */
    int64_t batch_size;      /* sequences per micro-batch */
    int64_t block_size;      /* characters per sequence */
    int64_t grad_accum;      /* micro-batches per optimizer step */
    int64_t max_iters;       /* optimizer steps */
    int64_t eval_interval, eval_iters;
    int64_t warmup;          /* linear warmup steps */
    int64_t seed, threads, log_interval, sample_tokens;
    double lr, min_lr;       /* cosine from lr down to min_lr at max_iters; min_lr = lr: constant */
    double weight_decay;     /* on matrices only (nn_adamw_decay_groups) */
    double grad_clip;        /* 0: off */
    double check_loss;       /* > 0: exit 1 unless the final val loss is below it (CI) */
} charlm_opts;

/* A model as the driver sees it. self is the model's own state. */
typedef struct {
    const char *prog;        /* the program's name, "llama" */
    const char *about;       /* what it trains, for --help */
    charlm_opts defaults;
    /* the model's shape flags (INT or STRING), stored in checkpoints as
     * metadata "model.<name>" and restored from them by `sample` */
    cli_opt *model_opts;
    int n_model_opts;
    void *self;
    /* builds the model from model_opts' values for a vocabulary of vocab
     * characters and sequences of up to block_size, its init drawn from seed */
    bool (*build)(void *self, int64_t vocab, int64_t block_size, uint64_t seed, char *err,
                  size_t errlen);
    void (*destroy)(void *self);
    nn_params *(*params)(void *self);
    /* idx (B, T) -> the logits (in the model's own layout; NULL on error);
     * with targets (B, T), *loss the mean cross-entropy over all B T */
    ag_tensor *(*forward)(ag_ctx *c, void *self, const ag_index *idx, const ag_index *targets,
                          bool training, ag_tensor **loss);
    /* sampling, gradients off: forget the sequence, then feed one token and
     * get the logits (V) of the one after it */
    void (*sample_reset)(void *self);
    const float *(*sample_next)(ag_ctx *c, void *self, int32_t token);
} charlm_model;

/* `prog train [flags]` or `prog sample [flags]`; returns the exit status. */
int charlm_main(charlm_model *m, int argc, char **argv);

#endif
