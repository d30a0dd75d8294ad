/* options.h - the flags of train and bench in one table (their defaults are
 * gpt.py's), what a checkpoint does with each, and the named presets. */
#ifndef GPT_OPTIONS_H
#define GPT_OPTIONS_H

#include "cli.h"
#include "model.h"

enum { OPT_TRAIN = 1, OPT_BENCH = 2, OPT_BOTH = OPT_TRAIN | OPT_BENCH };

/* Every flag, in --help order:
 *   X(field, type, flag, default, min, max, commands, kept, help)
 * type: INT (int64_t), FLOAT (double), STRING (const char *) or BOOL (a flag
 * without a value); min and max
 * bound a number (inclusive); commands: OPT_TRAIN, OPT_BENCH or OPT_BOTH.
 * kept, what a checkpoint does with the setting:
 *   RUN    nothing: each run's own;
 *   TRAIN  metadata "train.<field>", restored by --resume unless given again,
 *          within min and max (gpt_train_state has the field);
 *   MODEL  metadata "<field>", the gpt_config field of that name: --resume
 *          takes the checkpoint's;
 *   SHAPE  as MODEL, an INT that shapes the weights, so a value given with
 *          --resume (or by --preset) must equal the checkpoint's.
 * help may start with the value's placeholder and ": " ("FILE: ...", see cli.h).
 * A new setting is one row here, and the code that uses it. */
#define GPT_OPTIONS(X)                                                                             \
    X(preset, STRING, "preset", NULL, 0, 0, OPT_BOTH, RUN,                                          \
      "NAME: tiny, small, medium or lecture; flags given override it")                             \
    X(data, STRING, "data", "data/tinyshakespeare.txt", 0, 0, OPT_TRAIN, RUN,                      \
      "FILE: UTF-8 text to train on")                                                              \
    X(batch_size, INT, "batch-size", 64, 1, 1 << 20, OPT_BOTH, TRAIN, "sequences per batch")       \
    X(block_size, INT, "block-size", 256, 1, 1 << 16, OPT_BOTH, SHAPE, "context length")           \
    X(n_embd, INT, "n-embd", 384, 1, 1 << 16, OPT_BOTH, SHAPE, "embedding width")                  \
    X(n_head, INT, "n-head", 6, 1, 4096, OPT_BOTH, SHAPE,                                          \
      "attention heads per block (must divide n-embd)")                                            \
    X(n_layer, INT, "n-layer", 6, 1, 4096, OPT_BOTH, SHAPE, "transformer blocks")                  \
    X(dropout, FLOAT, "dropout", 0.2, 0, 0.999999, OPT_BOTH, MODEL, "dropout probability in [0, 1)") \
    X(lr, FLOAT, "lr", 3e-4, 0, 10, OPT_BOTH, TRAIN, "AdamW learning rate")                        \
    X(weight_decay, FLOAT, "weight-decay", 0.01, 0, 10, OPT_BOTH, TRAIN, "AdamW weight decay")     \
    X(seed, INT, "seed", 1337, 0, 9.2e18, OPT_BOTH, TRAIN, "seed for init, batches and dropout")   \
    X(threads, INT, "threads", 0, 0, 1024, OPT_BOTH, RUN, "threads, 0 for all cores")              \
    X(precision, STRING, "precision", NULL, 0, 0, OPT_BOTH, RUN,                                   \
      "NAME: fp32 or bf16, the products' (matmul, linear, attention): bf16 rounds their operands " \
      "to bfloat16 and sums in FP32, as torch.autocast (default: a resumed checkpoint's, else "   \
      "fp32; the checkpoint records it)")                                                          \
    X(max_iters, INT, "max-iters", 5000, 1, 1e9, OPT_TRAIN, TRAIN, "training steps")               \
    X(eval_interval, INT, "eval-interval", 500, 1, 1e9, OPT_TRAIN, TRAIN,                          \
      "steps between train/val loss estimates")                                                    \
    X(eval_iters, INT, "eval-iters", 200, 1, 1e9, OPT_TRAIN, TRAIN, "batches per loss estimate")   \
    X(grad_clip, FLOAT, "grad-clip", 0.0, 0, 1e9, OPT_TRAIN, TRAIN,                                \
      "clip the grad norm to this, 0 for off")                                                     \
    X(out, STRING, "out", NULL, 0, 0, OPT_TRAIN, RUN,                                              \
      "DIR: directory for the checkpoint and loss log, locked while the run lasts (default: the " \
      "--resume checkpoint's directory, else runs/<preset>, runs/default without --preset)")       \
    X(checkpoint, STRING, "checkpoint", NULL, 0, 0, OPT_TRAIN, RUN,                                \
      "FILE: checkpoint to write (default: <out>/ckpt.safetensors)")                               \
    X(log, STRING, "log", NULL, 0, 0, OPT_TRAIN, RUN,                                              \
      "FILE: loss history CSV (default: <out>/loss.csv)")                                          \
    X(resume, STRING, "resume", NULL, 0, 0, OPT_TRAIN, RUN,                                        \
      "FILE: continue training from this checkpoint")                                              \
    X(force, BOOL, "force", false, 0, 0, OPT_TRAIN, RUN,                                           \
      "start a new run even where a checkpoint or loss log exists, replacing them")                \
    X(init_from, STRING, "init-from", NULL, 0, 0, OPT_TRAIN, RUN,                                  \
      "FILE: start from these weights (a checkpoint or a gpt.py state_dict), new optimizer")       \
    X(attention_scale, STRING, "attention-scale", "n_embd", 0, 0, OPT_TRAIN, RUN,                  \
      "NAME: a state_dict's attention scale: n_embd (gpt.py's) or head_size")                      \
    X(log_interval, INT, "log-interval", 100, 0, 1e9, OPT_TRAIN, RUN,                              \
      "steps between progress lines when not on a terminal, 0 for none")                           \
    X(sample_tokens, INT, "sample-tokens", 500, 0, 1e9, OPT_TRAIN, RUN,                            \
      "characters to sample after training, 0 for none")                                           \
    X(steps, INT, "steps", 10, 1, 1e9, OPT_BENCH, RUN, "timed steps")                              \
    X(warmup, INT, "warmup", 2, 0, 1e9, OPT_BENCH, RUN, "untimed steps before timing")

typedef int64_t gpt_opt_INT;
typedef double gpt_opt_FLOAT;
typedef const char *gpt_opt_STRING;
typedef bool gpt_opt_BOOL;

typedef struct {
#define X(field, type, ...) gpt_opt_##type field;
    GPT_OPTIONS(X)
#undef X
} gpt_options;

/* GPT_IF(kind, kept, code...): the code for a row whose kept column is kind
 * (TRAIN, SHAPE, or MODEL, which takes SHAPE rows too), nothing otherwise. */
#define GPT_IF(kind, kept, ...) GPT_IF_##kind##_##kept(__VA_ARGS__)
#define GPT_IF_TRAIN_RUN(...)
#define GPT_IF_TRAIN_TRAIN(...) __VA_ARGS__
#define GPT_IF_TRAIN_MODEL(...)
#define GPT_IF_TRAIN_SHAPE(...)
#define GPT_IF_MODEL_RUN(...)
#define GPT_IF_MODEL_TRAIN(...)
#define GPT_IF_MODEL_MODEL(...) __VA_ARGS__
#define GPT_IF_MODEL_SHAPE(...) __VA_ARGS__
#define GPT_IF_SHAPE_RUN(...)
#define GPT_IF_SHAPE_TRAIN(...)
#define GPT_IF_SHAPE_MODEL(...)
#define GPT_IF_SHAPE_SHAPE(...) __VA_ARGS__

/* The flag table for a command (OPT_TRAIN or OPT_BENCH) over o, which gets gpt.py's defaults. */
int gpt_option_table(gpt_options *o, int which, cli_opt *table, int max);
/* Fills the flags not given explicitly from o->preset; false with err for an unknown preset. */
bool gpt_apply_preset(gpt_options *o, cli_opt *table, int n, char *err, size_t errlen);
/* "tiny, small, medium, lecture" */
const char *gpt_preset_names(void);
/* o->precision as an ag_precision, fallback when it is NULL (not given);
 * false with err naming the flag and the choices for any other name. */
bool gpt_options_precision(const gpt_options *o, ag_precision fallback, ag_precision *p, char *err,
                           size_t errlen);
/* The model config the options describe (their MODEL and SHAPE rows; vocab_size the caller's). */
gpt_config gpt_options_config(const gpt_options *o, int64_t vocab_size);
/* Model FLOPs of one training step (forward + backward = 3x the forward matmuls):
 * 3 B T (L (24 C^2 + 4 T C) + 2 C V). */
double gpt_step_flops(const gpt_config *c, int64_t batch);

/* What training a model of config c at batch (per process) needs, in bytes. */
typedef struct {
    double params;      /* the model's parameters P = V C + T C + L (12 C^2 + 10 C) + 2 C + C V + V
                         * as floats: weights and their gradients, 2 P */
    double optimizer;   /* AdamW's two moments, 2 P */
    double activations; /* one training step's arena peak (evaluation needs less, in the same
                         * arena): B T (L (12 C + 1.25 H T) + 18 C + 2 V) + P / 2 floats and 4 MiB,
                         * fitted as an upper bound on ag_ctx_bytes_peak */
    double total;
} gpt_memory;
gpt_memory gpt_train_memory(const gpt_config *c, int64_t batch);
/* The model's parameter count, as above. */
int64_t gpt_param_count(const gpt_config *c);

#endif
