/* gpt_logits.c - prints the logits the GPT example computes for a prompt, one
 * line per position ("pos: v0 v1 ..."), so tools/torch_roundtrip.py can
 * compare them with PyTorch's. The weights load as `gpt sample` loads them.
 *
 *   build/tools/gpt_logits CHECKPOINT PROMPT [--vocab FILE | --data FILE]
 *                          [--attention-scale n_embd|head_size] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"

int main(int argc, char **argv)
{
    if (argc < 3 || (argc - 3) % 2) {
        fprintf(stderr, "usage: gpt_logits CHECKPOINT PROMPT [--vocab FILE | --data FILE] "
                        "[--attention-scale n_embd|head_size]\n");
        return 2;
    }
    const char *vocab_file = NULL, *scale = NULL;
    for (int i = 3; i < argc; i += 2) {
        if (!strcmp(argv[i], "--vocab") || !strcmp(argv[i], "--data"))
            vocab_file = argv[i + 1];
        else if (!strcmp(argv[i], "--attention-scale"))
            scale = argv[i + 1];
        else {
            fprintf(stderr, "gpt_logits: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    char err[1024];
    gpt_vocab given = {0};
    if (vocab_file && !gpt_vocab_load(&given, vocab_file, err, sizeof err)) {
        fprintf(stderr, "gpt_logits: %s\n", err);
        return 1;
    }
    gpt_weights_opts wo = {vocab_file ? &given : NULL, vocab_file, scale, -1};
    gpt_model m;
    gpt_vocab v;
    if (!gpt_weights_load(argv[1], &wo, &m, &v, err, sizeof err)) {
        fprintf(stderr, "gpt_logits: %s\n", err);
        return 1;
    }
    vocab_free(&given);
    uint32_t *cp;
    int64_t n;
    if (!utf8_decode((const unsigned char *)argv[2], strlen(argv[2]), &cp, &n, err, sizeof err) ||
        n < 1 || n > m.cfg.block_size) {
        fprintf(stderr, "gpt_logits: the prompt must be 1 to %lld characters of UTF-8\n",
                (long long)m.cfg.block_size);
        return 2;
    }
    ag_index *idx = ag_index_new(NULL, NULL, AG_SHAPE(1, n));
    for (int64_t t = 0; t < n; t++)
        if ((idx->data[t] = vocab_find(&v, cp[t])) < 0) {
            fprintf(stderr, "gpt_logits: prompt character %lld is not in the vocabulary\n",
                    (long long)t);
            return 2;
        }
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_tensor *lg = gpt_forward(c, &m, idx, NULL, false, NULL); /* (1, n, V) */
    for (int64_t t = 0; t < n; t++) {
        printf("%lld:", (long long)t);
        for (int64_t k = 0; k < m.cfg.vocab_size; k++)
            printf(" %.9g", (double)lg->data[t * m.cfg.vocab_size + k]);
        printf("\n");
    }
    ag_ctx_free(c);
    ag_index_free(idx);
    free(cp);
    gpt_free(&m);
    vocab_free(&v);
    return 0;
}
