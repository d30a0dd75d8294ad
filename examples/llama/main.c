/* main.c - llama: a Llama-style character model on tiny Shakespeare (RoPE,
 * RMSNorm, SwiGLU, tied embeddings), `llama train` and `llama sample` (the
 * driver is examples/charlm). */
#include <stdio.h>
#include <string.h>

#include "charlm.h"
#include "model.h"

static struct {
    int64_t n_embd, n_head, n_layer, ffn_hidden;
    llama model;
    bool built;
} S = {.n_embd = 64, .n_head = 4, .n_layer = 4, .ffn_hidden = 176};

static cli_opt model_opts[] = {
    {"n-embd", CLI_INT, &S.n_embd, "embedding width", 1, 1 << 16, false},
    {"n-head", CLI_INT, &S.n_head, "attention heads (n_embd / n_head must be even)", 1, 4096, false},
    {"n-layer", CLI_INT, &S.n_layer, "blocks", 1, 4096, false},
    {"ffn-hidden", CLI_INT, &S.ffn_hidden,
     "SwiGLU hidden width (Llama's 2/3 * 4 n_embd, rounded up to 16)", 1, 1 << 20, false},
};

static bool build(void *self, int64_t vocab, int64_t block_size, uint64_t seed, char *err, size_t n)
{
    (void)self;
    llama_config cfg = {vocab, block_size, S.n_embd, S.n_head, S.n_layer, S.ffn_hidden, 1e-5f,
                        10000.0f};
    S.built = llama_init(&S.model, &cfg, seed, err, n);
    return S.built;
}

static void destroy(void *self)
{
    (void)self;
    if (S.built)
        llama_free(&S.model);
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
    return llama_forward(c, &S.model, idx, targets, loss);
}

static void reset(void *self)
{
    (void)self;
    llama_reset(&S.model);
}

static const float *next(ag_ctx *c, void *self, int32_t token)
{
    (void)self;
    return llama_step(c, &S.model, token);
}

int main(int argc, char **argv)
{
    charlm_model m = {
        .prog = "llama",
        .about = "A Llama-style character model: rotary position embeddings, RMSNorm, SwiGLU,\n"
                 "the output head tied to the token embedding; AdamW with no decay on 1-D\n"
                 "parameters and the embedding, linear warmup then cosine decay of the learning\n"
                 "rate, --grad-accum micro-batches per step. Its PyTorch twin is tools/llama_torch.py.",
        .defaults = {.data = "data/tinyshakespeare.txt", .out = "runs/llama/ckpt.safetensors",
                     .batch_size = 32, .block_size = 64, .grad_accum = 1, .max_iters = 2000,
                     .eval_interval = 250, .eval_iters = 50, .warmup = 100, .seed = 1337,
                     .log_interval = 100, .sample_tokens = 300, .lr = 2e-3, .min_lr = 2e-4,
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
