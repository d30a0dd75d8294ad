/* main.c - charrnn: a character-level GRU or LSTM on tiny Shakespeare,
 * `charrnn train` and `charrnn sample` (the driver is examples/charlm). */
#include <stdio.h>
#include <string.h>

#include "charlm.h"
#include "model.h"

static struct {
    int64_t n_embd, hidden, n_layer;
    const char *cell;
    charrnn model;
    bool built;
} S = {.n_embd = 32, .hidden = 128, .n_layer = 1, .cell = "gru"};

static cli_opt model_opts[] = {
    {"cell", CLI_STRING, &S.cell, "gru or lstm", 0, 0, false},
    {"n-embd", CLI_INT, &S.n_embd, "character embedding width", 1, 1 << 16, false},
    {"hidden", CLI_INT, &S.hidden, "hidden state width", 1, 1 << 16, false},
    {"n-layer", CLI_INT, &S.n_layer, "stacked cells", 1, 64, false},
};

static bool build(void *self, int64_t vocab, int64_t block_size, uint64_t seed, char *err, size_t n)
{
    (void)self, (void)block_size;
    bool lstm = strcmp(S.cell, "lstm") == 0;
    if (!lstm && strcmp(S.cell, "gru") != 0) {
        snprintf(err, n, "--cell: \"%s\" is neither gru nor lstm", S.cell);
        return false;
    }
    charrnn_config cfg = {vocab, S.n_embd, S.hidden, S.n_layer, lstm};
    S.built = charrnn_init(&S.model, &cfg, seed, err, n);
    return S.built;
}

static void destroy(void *self)
{
    (void)self;
    if (S.built)
        charrnn_free(&S.model);
    S.built = false;
}

static nn_params *params(void *self)
{
    (void)self;
    return &S.model.params;
}

static ag_tensor *forward(ag_ctx *c, void *self, const ag_index *idx, const ag_index *targets,
                          bool training, ag_tensor **loss)
{
    (void)self, (void)training; /* no dropout */
    return charrnn_forward(c, &S.model, idx, targets, loss);
}

static void reset(void *self)
{
    (void)self;
    charrnn_reset(&S.model);
}

static const float *next(ag_ctx *c, void *self, int32_t token)
{
    (void)self;
    ag_tensor *logits = charrnn_step(c, &S.model, token);
    return logits ? logits->data : NULL;
}

int main(int argc, char **argv)
{
    charlm_model m = {
        .prog = "charrnn",
        .about = "A character-level GRU (or --cell lstm): embedding, stacked cells, linear head,\n"
                 "trained by truncated backpropagation over random windows from a zero state.\n"
                 "Its PyTorch twin is tools/charrnn_torch.py.",
        .defaults = {.data = "data/tinyshakespeare.txt", .out = "runs/charrnn/ckpt.safetensors",
                     .batch_size = 32, .block_size = 64, .grad_accum = 1, .max_iters = 2000,
                     .eval_interval = 250, .eval_iters = 50, .warmup = 50, .seed = 1337,
                     .log_interval = 100, .sample_tokens = 300, .lr = 3e-3, .min_lr = 3e-4,
                     .weight_decay = 0.1, .grad_clip = 1.0},
        .model_opts = model_opts,
        .n_model_opts = (int)(sizeof model_opts / sizeof *model_opts),
        .build = build,
        .destroy = destroy,
        .params = params,
        .forward = forward,
        .sample_reset = reset,
        .sample_next = next,
    };
    return charlm_main(&m, argc, argv);
}
