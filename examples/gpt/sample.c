/* sample.c - `gpt sample`: text from a checkpoint. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "cli.h"
#include "commands.h"
#include "generate.h"

int cmd_sample(int argc, char **argv)
{
    const char *path = NULL, *prompt = NULL, *data = NULL, *vocab_file = NULL, *scale = "n_embd";
    const char *precision = NULL;
    int64_t tokens = 500, top_k = 0, seed = 1337, threads = 0;
    double temperature = 1.0;
    bool no_cache = false;
    cli_opt t[] = {
        {"checkpoint", CLI_STRING, &path, "FILE: checkpoint (or gpt.py state_dict) to sample from (required)", 0, 0, false},
        {"prompt", CLI_STRING, &prompt, "TEXT: text to continue (default: gpt.py's token 0)", 0, 0, false},
        {"tokens", CLI_INT, &tokens, "characters to generate", 0, 1e9, false},
        {"temperature", CLI_FLOAT, &temperature, "divides the logits; lower is more conservative, 0 is greedy", 0, 1e6, false},
        {"top-k", CLI_INT, &top_k, "sample among the k most likely characters, 0 for all", 0, 1e9, false},
        {"seed", CLI_INT, &seed, "sampling seed", 0, 9.2e18, false},
        {"threads", CLI_INT, &threads, "threads, 0 for all cores", 0, 1024, false},
        {"no-kv-cache", CLI_BOOL, &no_cache, "recompute the whole context for every character, as gpt.py does", 0, 0, false},
        {"data", CLI_STRING, &data, "FILE: a state_dict's vocabulary: the characters of its training text", 0, 0, false},
        {"vocab", CLI_STRING, &vocab_file, "FILE: a state_dict's vocabulary: a file of just its characters", 0, 0, false},
        {"attention-scale", CLI_STRING, &scale, "NAME: a state_dict's attention scale: n_embd (gpt.py's) or head_size", 0, 0, false},
        {"precision", CLI_STRING, &precision, "NAME: fp32 or bf16, the products' (matmul, linear; the cached attention stays fp32) (default: the checkpoint's, else fp32)", 0, 0, false},
    };
    int n = (int)(sizeof t / sizeof *t);
    char err[1024];
    bool help = false;
    if (!cli_parse(t, n, argc, argv, &help, err, sizeof err)) {
        fprintf(stderr, "gpt sample: %s (see gpt sample --help)\n", err);
        return 2;
    }
    if (help) {
        printf("usage: gpt sample --checkpoint FILE [flags]\n\n"
               "Generates text from a trained checkpoint, cropping the context to the block size.\n"
               "A PyTorch state_dict of gpt.py's model (safetensors) works too: its sizes come from\n"
               "its shapes, its vocabulary from --data or --vocab.\n\n"
               "flags:\n");
        cli_print_help(stdout, t, n);
        return 0;
    }
    if (!path) {
        fprintf(stderr, "gpt sample: --checkpoint FILE is required (see gpt sample --help)\n");
        return 2;
    }
    if (data && vocab_file) {
        fprintf(stderr, "gpt sample: give --data or --vocab, not both\n");
        return 2;
    }
    ag_precision prec = AG_FP32;
    if (precision && !ag_precision_from_name(precision, &prec)) {
        fprintf(stderr, "gpt sample: --precision \"%s\": choose fp32 or bf16 (see gpt sample "
                "--help)\n", precision);
        return 2;
    }
    if (threads > 0)
        ag_set_num_threads((int)threads);
    gpt_vocab given = {0};
    const char *vocab_source = vocab_file ? vocab_file : data;
    if (vocab_source && !gpt_vocab_load(&given, vocab_source, err, sizeof err)) {
        fprintf(stderr, "gpt sample: %s\n", err);
        return 1;
    }
    gpt_weights_opts wo = {vocab_source ? &given : NULL, vocab_source, scale, -1};
    gpt_model m;
    gpt_vocab v;
    bool loaded = gpt_weights_load(path, &wo, &m, &v, err, sizeof err);
    vocab_free(&given);
    if (!loaded) {
        fprintf(stderr, "gpt sample: %s\n", err);
        return 1;
    }
    if (precision)
        m.precision = prec;
    int rc = 0;
    int32_t *ctx_tokens = NULL;
    int64_t nctx = 1;
    if (prompt && *prompt) {
        uint32_t *cp;
        if (!utf8_decode((const unsigned char *)prompt, strlen(prompt), &cp, &nctx, err, sizeof err)) {
            fprintf(stderr, "gpt sample: --prompt: %s\n", err);
            rc = 2;
            goto done;
        }
        ctx_tokens = malloc((size_t)nctx * sizeof *ctx_tokens);
        for (int64_t i = 0; i < nctx; i++) {
            int id = vocab_find(&v, cp[i]);
            if (id < 0) {
                char ch[5] = {0};
                nn_utf8_encode(cp[i], ch);
                fprintf(stderr, "gpt sample: --prompt: character \"%s\" (U+%04X) at position %lld "
                        "is not in the model's vocabulary\n", ch, cp[i], (long long)i);
                free(cp);
                rc = 2;
                goto done;
            }
            ctx_tokens[i] = id;
        }
        free(cp);
        fputs(prompt, stdout);
    } else {
        ctx_tokens = calloc(1, sizeof *ctx_tokens);
    }
    gpt_sample_opts so = {.max_new_tokens = tokens, .temperature = (float)temperature,
                          .top_k = top_k, .rng = ag_rng_new((uint64_t)seed),
                          .no_kv_cache = no_cache};
    int64_t made = gpt_generate(&m, &v, ctx_tokens, nctx, &so, stdout);
    printf("\n");
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "gpt sample: cannot write the sample to standard output: %s\n",
                strerror(errno));
        rc = 1;
    } else if (made < tokens) {
        fprintf(stderr, "gpt sample: the model's logits are not finite after %lld character%s: "
                "the checkpoint's weights overflow (%s)\n", (long long)made, made == 1 ? "" : "s",
                path);
        rc = 1;
    }
done:
    free(ctx_tokens);
    gpt_free(&m);
    vocab_free(&v);
    return rc;
}
