/* options.c - flag tables, defaults and presets. */
#include "options.h"

#include <string.h>

int gpt_option_table(gpt_options *o, int which, cli_opt *t, int max)
{
    *o = (gpt_options){
#define X(field, type, flag, def, ...) .field = def,
        GPT_OPTIONS(X)
#undef X
    };
    const struct {
        cli_opt opt;
        int commands;
    } all[] = {
#define X(field, type, flag, def, min, max, commands, kept, help) \
        {{flag, CLI_##type, &o->field, help, min, max, false}, commands},
        GPT_OPTIONS(X)
#undef X
    };
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all && n < max; i++)
        if (all[i].commands & which)
            t[n++] = all[i].opt;
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

bool gpt_options_precision(const gpt_options *o, ag_precision fallback, ag_precision *p, char *err,
                           size_t errlen)
{
    *p = fallback;
    if (!o->precision || ag_precision_from_name(o->precision, p))
        return true;
    snprintf(err, errlen, "--precision \"%s\": choose fp32 or bf16", o->precision);
    return false;
}

gpt_config gpt_options_config(const gpt_options *o, int64_t vocab_size)
{
    gpt_config c = {.vocab_size = vocab_size};
#define X(field, type, flag, def, min, max, commands, kept, help) GPT_IF(MODEL, kept, c.field = o->field;)
    GPT_OPTIONS(X)
#undef X
    return c;
}

int64_t gpt_param_count(const gpt_config *c)
{
    int64_t V = c->vocab_size, T = c->block_size, C = c->n_embd, L = c->n_layer;
    return V * C + T * C + L * (12 * C * C + 10 * C) + 2 * C + C * V + V;
}

gpt_memory gpt_train_memory(const gpt_config *c, int64_t batch)
{
    /* doubles: no overflow for the absurd sizes this is meant to catch */
    double V = (double)c->vocab_size, T = (double)c->block_size, C = (double)c->n_embd,
           L = (double)c->n_layer, H = (double)c->n_head, BT = (double)batch * T;
    double P = V * C + T * C + L * (12 * C * C + 10 * C) + 2 * C + C * V + V;
    gpt_memory m;
    m.params = 2 * P * 4;
    m.optimizer = 2 * P * 4;
    m.activations = (BT * (L * (12 * C + 1.25 * H * T) + 18 * C + 2 * V) + P / 2) * 4 +
                    (double)(4 << 20);
    m.total = m.params + m.optimizer + m.activations;
    return m;
}

double gpt_step_flops(const gpt_config *c, int64_t batch)
{
    double C = (double)c->n_embd, T = (double)c->block_size, V = (double)c->vocab_size;
    double per_token = c->n_layer * (24.0 * C * C + 4.0 * T * C) + 2.0 * C * V;
    return 3.0 * (double)batch * T * per_token;
}
