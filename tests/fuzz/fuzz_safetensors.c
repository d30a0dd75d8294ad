/* fuzz_safetensors.c - libFuzzer harness for the safetensors reader
 * (nn_st_parse and every accessor on each tensor) and the GPT checkpoint
 * loaders behind it (gpt_ckpt_load_st: metadata, vocabulary, config, the
 * parameters, AdamW state and training state, then one forward pass; and
 * gpt_weights_load_st, which also reads PyTorch state_dicts).
 * Any byte string must be read or refused with a message; never a crash, a
 * leak, a hang, or a model much larger than the file that describes it. */
#include <math.h>
#include <string.h>

#include "ckpt.h"
#include "fuzz_common.h"
#include "nn.h"
#include "options.h"

/* v lies in the range the command-line flag of that name allows: what
 * `gpt train --resume` would have accepted had it been given as a flag. */
static bool st_flag_range(const char *flag, double v)
{
    gpt_options o;
    cli_opt t[40];
    int n = gpt_option_table(&o, OPT_TRAIN, t, 40);
    const cli_opt *c = cli_find(t, n, flag);
    return c && v >= c->min && v <= c->max;
}

/* What loaded weights must satisfy for sample to run: the config holds,
 * every parameter is finite, and one forward over a few positions works. */
static void st_check_model(const nn_st *f, const gpt_model *m, const gpt_vocab *v)
{
    const gpt_config *c = &m->cfg;
    char why[256];
    FUZZ_CHECK(gpt_config_check(c, why, sizeof why));
    FUZZ_CHECK(v->size == c->vocab_size && v->size >= 2);
    /* every parameter is in the file, so they cannot outnumber its data bytes / 4 */
    FUZZ_CHECK((uint64_t)nn_params_numel(&m->params) <= nn_st_data_size(f) / 4);
    for (int i = 0; i < m->params.n; i++)
        for (int64_t k = 0; k < m->params.items[i]->numel; k++)
            FUZZ_CHECK(isfinite(m->params.items[i]->data[k]));

    /* the model runs: one no-grad forward over a few positions */
    int64_t T = c->block_size < 4 ? c->block_size : 4;
    ag_index *idx = ag_index_new(NULL, NULL, AG_SHAPE(1, T));
    for (int64_t t = 0; t < T; t++)
        idx->data[t] = (int32_t)(t % c->vocab_size);
    ag_ctx *ctx = ag_ctx_new();
    ag_set_grad_enabled(ctx, false);
    ag_tensor *logits = gpt_forward(ctx, m, idx, NULL, false, NULL);
    FUZZ_CHECK(logits && logits->numel == T * c->vocab_size);
    ag_ctx_free(ctx);
    ag_index_free(idx);
}

/* What a loaded checkpoint must satisfy for a resumed train to run. */
static void st_check_loaded(const nn_st *f, const gpt_model *m, const gpt_vocab *v,
                            const nn_adamw *opt, const gpt_train_state *ts)
{
    st_check_model(f, m, v);
    FUZZ_CHECK(opt->step >= 0);
    FUZZ_CHECK(ts->step >= 0 && ts->evaluated_at >= -1);
    FUZZ_CHECK(st_flag_range("batch-size", (double)ts->batch_size));
    FUZZ_CHECK(st_flag_range("max-iters", (double)ts->max_iters));
    FUZZ_CHECK(st_flag_range("eval-interval", (double)ts->eval_interval));
    FUZZ_CHECK(st_flag_range("eval-iters", (double)ts->eval_iters));
    FUZZ_CHECK(st_flag_range("seed", (double)ts->seed));
    FUZZ_CHECK(st_flag_range("lr", ts->lr));
    FUZZ_CHECK(st_flag_range("weight-decay", ts->weight_decay));
    FUZZ_CHECK(st_flag_range("grad-clip", ts->grad_clip));
}

static void st_check_tensors(const nn_st *f)
{
    char err[512];
    int n = nn_st_count(f);
    uint64_t data_size = nn_st_data_size(f);
    FUZZ_CHECK(n >= 0);
    FUZZ_CHECK(nn_st_name(f, -1) == NULL && nn_st_name(f, n) == NULL);
    for (int i = 0; i < n; i++) {
        const char *name = nn_st_name(f, i);
        FUZZ_CHECK(name && nn_st_has(f, name));
        int nd = -1;
        int64_t shape[AG_MAX_DIMS];
        FUZZ_CHECK(nn_st_shape(f, name, &nd, shape));
        FUZZ_CHECK(nd >= 0 && nd <= AG_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < nd; d++) {
            FUZZ_CHECK(shape[d] >= 0);
            if (shape[d] == 0)
                numel = 0;
        }
        for (int d = 0; d < nd && numel; d++) {
            FUZZ_CHECK(numel <= data_size / (uint64_t)shape[d]); /* the parser bounds it */
            numel *= (uint64_t)shape[d];
        }
        err[0] = '\0';
        if (!nn_st_check(f, name, nd, shape, err, sizeof err)) { /* not F32 */
            FUZZ_CHECK(err[0] != '\0');
            continue;
        }
        FUZZ_CHECK(numel * 4 <= data_size);
        float *dst = malloc(numel ? numel * sizeof *dst : 1);
        FUZZ_CHECK(dst != NULL);
        FUZZ_CHECK(nn_st_read(f, name, dst, nd, shape, err, sizeof err));
        /* a shape that differs is refused, with a message, and copies nothing */
        int64_t other[AG_MAX_DIMS + 1];
        memcpy(other, shape, (size_t)nd * sizeof *other);
        other[nd] = 1;
        err[0] = '\0';
        FUZZ_CHECK(!nn_st_read(f, name, dst, nd + 1, other, err, sizeof err) && err[0]);
        free(dst);
    }
    FUZZ_CHECK(!nn_st_check(f, "no such tensor \x01", 0, NULL, err, sizeof err));
    (void)nn_st_meta(f, "format");
    (void)nn_st_meta(f, "");
}

/* As `gpt sample` and `gpt train --init-from` load weights: without a
 * vocabulary (a checkpoint of ours has one), then with one of as many
 * characters as a token_embedding_table has rows (what a state_dict needs;
 * ours then differs from it and is refused), under both attention scales:
 * true if either loaded. */
static bool st_weights(const nn_st *f)
{
    int nd = 0;
    int64_t shape[AG_MAX_DIMS];
    gpt_vocab given = {0};
    if (nn_st_shape(f, "token_embedding_table.weight", &nd, shape) && nd == 2 && shape[0] >= 2 &&
        shape[0] <= 4096) {
        given.size = (int)shape[0];
        given.chars = malloc((size_t)given.size * sizeof *given.chars);
        FUZZ_CHECK(given.chars != NULL);
        for (int i = 0; i < given.size; i++)
            given.chars[i] = 0x20 + (uint32_t)i;
    }
    bool loaded = false;
    const char *scales[] = {"n_embd", "head_size"};
    for (int k = 0; k < 2; k++) {
        gpt_weights_opts wo = {k && given.chars ? &given : NULL, "<vocab>", scales[k], k ? 0.1 : -1};
        gpt_model m;
        gpt_vocab v;
        char err[1024] = "";
        if (gpt_weights_load_st(f, "<fuzz>", &wo, &m, &v, err, sizeof err)) {
            st_check_model(f, &m, &v);
            gpt_free(&m);
            vocab_free(&v);
            loaded = true;
        } else
            FUZZ_CHECK(err[0] != '\0');
    }
    vocab_free(&given);
    return loaded;
}

/* 0: refused by the reader; 1: read; 2: also loaded as a GPT checkpoint, or
 * its weights for sampling */
static int fuzz_safetensors_one(const uint8_t *data, size_t size)
{
    char err[1024] = "";
    nn_st *f = nn_st_parse(data, size, err, sizeof err);
    if (!f) {
        FUZZ_CHECK(err[0] != '\0');
        return 0;
    }
    st_check_tensors(f);

    /* as `gpt train --resume` loads it */
    gpt_model m;
    gpt_vocab v;
    nn_adamw opt;
    gpt_train_state ts;
    err[0] = '\0';
    bool ok = gpt_ckpt_load_st(f, "<fuzz>", &m, &v, &opt, &ts, err, sizeof err);
    if (ok) {
        st_check_loaded(f, &m, &v, &opt, &ts);
        nn_adamw_free(&opt);
        gpt_free(&m);
        vocab_free(&v);
        /* as `gpt sample` loads it (no optimizer, no training state): a subset */
        err[0] = '\0';
        FUZZ_CHECK(gpt_ckpt_load_st(f, "<fuzz>", &m, &v, NULL, NULL, err, sizeof err));
        gpt_free(&m);
        vocab_free(&v);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    bool weights = st_weights(f);
    FUZZ_CHECK(!ok || weights); /* what resumes, samples */
    nn_st_close(f);
    return ok || weights ? 2 : 1;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ag_set_num_threads(1); /* one worker: deterministic and cheap per input */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_safetensors_one(data, size);
    return 0;
}
#endif
