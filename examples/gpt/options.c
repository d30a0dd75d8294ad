/* options.c - flag tables, defaults and presets. */
#include "options.h"

#include <string.h>

#define BIG 1e9

int gpt_option_table(gpt_options *o, int which, cli_opt *t, int max)
{
    *o = (gpt_options){
        .preset = NULL, .data = "data/tinyshakespeare.txt", .out = NULL, .checkpoint = NULL,
        .log = NULL, .resume = NULL, .batch_size = 64, .block_size = 256, .max_iters = 5000,
        .eval_interval = 500, .eval_iters = 200, .n_embd = 384, .n_head = 6, .n_layer = 6,
        .seed = 1337, .threads = 0, .sample_tokens = 500, .log_interval = 100, .steps = 10,
        .warmup = 2, .lr = 3e-4, .dropout = 0.2, .weight_decay = 0.01, .grad_clip = 0.0,
    };
    const cli_opt all[] = {
        {"preset", CLI_STRING, &o->preset, "tiny, small, medium or lecture; flags given override it", 0, 0, false},
        {"data", CLI_STRING, &o->data, "UTF-8 text file to train on", 0, 0, false},
        {"batch-size", CLI_INT, &o->batch_size, "sequences per batch", 1, 1 << 20, false},
        {"block-size", CLI_INT, &o->block_size, "context length", 1, 1 << 16, false},
        {"n-embd", CLI_INT, &o->n_embd, "embedding width", 1, 1 << 16, false},
        {"n-head", CLI_INT, &o->n_head, "attention heads per block (must divide n-embd)", 1, 4096, false},
        {"n-layer", CLI_INT, &o->n_layer, "transformer blocks", 1, 4096, false},
        {"dropout", CLI_FLOAT, &o->dropout, "dropout probability in [0, 1)", 0, 0.999999, false},
        {"lr", CLI_FLOAT, &o->lr, "AdamW learning rate", 0, 10, false},
        {"weight-decay", CLI_FLOAT, &o->weight_decay, "AdamW weight decay", 0, 10, false},
        {"seed", CLI_INT, &o->seed, "seed for init, batches and dropout", 0, 9.2e18, false},
        {"threads", CLI_INT, &o->threads, "threads, 0 for all cores", 0, 1024, false},
        {"max-iters", CLI_INT, &o->max_iters, "training steps", 1, BIG, false},
        {"eval-interval", CLI_INT, &o->eval_interval, "steps between train/val loss estimates", 1, BIG, false},
        {"eval-iters", CLI_INT, &o->eval_iters, "batches per loss estimate", 1, BIG, false},
        {"grad-clip", CLI_FLOAT, &o->grad_clip, "clip the grad norm to this, 0 for off", 0, 1e9, false},
        {"out", CLI_STRING, &o->out, "directory for the checkpoint and loss log (default: runs/<preset>)", 0, 0, false},
        {"checkpoint", CLI_STRING, &o->checkpoint, "checkpoint file (default: <out>/ckpt.safetensors)", 0, 0, false},
        {"log", CLI_STRING, &o->log, "loss history CSV (default: <out>/loss.csv)", 0, 0, false},
        {"resume", CLI_STRING, &o->resume, "continue training from this checkpoint", 0, 0, false},
        {"log-interval", CLI_INT, &o->log_interval, "steps between progress lines when not on a terminal, 0 for none", 0, BIG, false},
        {"sample-tokens", CLI_INT, &o->sample_tokens, "characters to sample after training, 0 for none", 0, BIG, false},
        {"steps", CLI_INT, &o->steps, "timed steps", 1, BIG, false},
        {"warmup", CLI_INT, &o->warmup, "untimed steps before timing", 0, BIG, false},
    };
    /* which commands take which flag */
    static const char *bench_only[] = {"steps", "warmup"};
    static const char *train_only[] = {"data", "max-iters", "eval-interval", "eval-iters", "out",
                                       "checkpoint", "log", "resume", "log-interval",
                                       "sample-tokens", "grad-clip"};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all && n < max; i++) {
        bool skip = false;
        const char **list = which == OPT_TRAIN ? bench_only : train_only;
        size_t len = which == OPT_TRAIN ? sizeof bench_only / sizeof *bench_only
                                        : sizeof train_only / sizeof *train_only;
        for (size_t k = 0; k < len; k++)
            skip = skip || strcmp(all[i].name, list[k]) == 0;
        if (!skip)
            t[n++] = all[i];
    }
    return n;
}

typedef struct {
    const char *name;
    int64_t n_embd, n_head, n_layer, block_size, batch_size, max_iters;
    double lr, dropout;
} preset;

static const preset presets[] = {
    {"tiny", 32, 4, 3, 8, 32, 5000, 1e-3, 0.0},
    {"small", 64, 4, 4, 32, 16, 5000, 1e-3, 0.0},
    {"medium", 128, 4, 4, 64, 32, 5000, 1e-3, 0.0},
    {"lecture", 384, 6, 6, 256, 64, 5000, 3e-4, 0.2},
};

const char *gpt_preset_names(void) { return "tiny, small, medium, lecture"; }

static void set_int(cli_opt *t, int n, const char *name, int64_t *field, int64_t v)
{
    cli_opt *o = cli_find(t, n, name);
    if (!o || !o->set)
        *field = v;
}

static void set_float(cli_opt *t, int n, const char *name, double *field, double v)
{
    cli_opt *o = cli_find(t, n, name);
    if (!o || !o->set)
        *field = v;
}

bool gpt_apply_preset(gpt_options *o, cli_opt *t, int n, char *err, size_t errlen)
{
    if (!o->preset)
        return true;
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        const preset *p = &presets[i];
        if (strcmp(p->name, o->preset) != 0)
            continue;
        set_int(t, n, "n-embd", &o->n_embd, p->n_embd);
        set_int(t, n, "n-head", &o->n_head, p->n_head);
        set_int(t, n, "n-layer", &o->n_layer, p->n_layer);
        set_int(t, n, "block-size", &o->block_size, p->block_size);
        set_int(t, n, "batch-size", &o->batch_size, p->batch_size);
        set_int(t, n, "max-iters", &o->max_iters, p->max_iters);
        set_float(t, n, "lr", &o->lr, p->lr);
        set_float(t, n, "dropout", &o->dropout, p->dropout);
        return true;
    }
    snprintf(err, errlen, "unknown preset \"%s\" (choose from %s)", o->preset, gpt_preset_names());
    return false;
}

gpt_config gpt_options_config(const gpt_options *o, int64_t vocab_size)
{
    return (gpt_config){vocab_size, o->block_size, o->n_embd, (int)o->n_head, (int)o->n_layer,
                        (float)o->dropout};
}

double gpt_step_flops(const gpt_config *c, int64_t batch)
{
    double C = (double)c->n_embd, T = (double)c->block_size, V = (double)c->vocab_size;
    double per_token = c->n_layer * (24.0 * C * C + 4.0 * T * C) + 2.0 * C * V;
    return 3.0 * (double)batch * T * per_token;
}
