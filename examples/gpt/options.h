/* options.h - the hyperparameter flags shared by train and bench, their
 * defaults (gpt.py's) and the named presets. */
#ifndef GPT_OPTIONS_H
#define GPT_OPTIONS_H

#include "cli.h"
#include "model.h"

typedef struct {
    const char *preset, *data, *out, *checkpoint, *log, *resume;
    int64_t batch_size, block_size, max_iters, eval_interval, eval_iters;
    int64_t n_embd, n_head, n_layer, seed, threads, sample_tokens, log_interval, steps, warmup;
    double lr, dropout, weight_decay, grad_clip;
} gpt_options;

enum { OPT_TRAIN = 1, OPT_BENCH = 2 };

/* The flag table for a command (OPT_TRAIN or OPT_BENCH) over o, which gets gpt.py's defaults. */
int gpt_option_table(gpt_options *o, int which, cli_opt *table, int max);
/* Fills the flags not given explicitly from o->preset; false with err for an unknown preset. */
bool gpt_apply_preset(gpt_options *o, cli_opt *table, int n, char *err, size_t errlen);
/* "tiny, small, medium, lecture" */
const char *gpt_preset_names(void);
/* The model config the options describe (vocab_size left to the caller). */
gpt_config gpt_options_config(const gpt_options *o, int64_t vocab_size);
/* Model FLOPs of one training step (forward + backward = 3x the forward matmuls):
 * 3 B T (L (24 C^2 + 4 T C) + 2 C V). */
double gpt_step_flops(const gpt_config *c, int64_t batch);

#endif
