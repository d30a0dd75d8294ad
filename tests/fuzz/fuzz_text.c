/* fuzz_text.c - libFuzzer harness for the text loader: UTF-8 decoding and the
 * character vocabulary (gpt_data_from_text), the vocabulary's UTF-8 round
 * trip (what checkpoints store), the block-size check and batches. Any bytes
 * (invalid UTF-8, NUL, one huge line, nothing) must be tokenized or refused
 * with a message; accepted text must come back byte for byte. */
#include <string.h>

#include "data.h"
#include "fuzz_common.h"

static bool fuzz_text_one(const uint8_t *data, size_t size)
{
    gpt_data d;
    char err[512] = "";
    if (!gpt_data_from_text(&d, data, size, err, sizeof err)) {
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(d.tokens == NULL && d.vocab.chars == NULL); /* nothing left allocated */
        return false;
    }
    const gpt_vocab *v = &d.vocab;
    FUZZ_CHECK(d.n >= 2 && (uint64_t)d.n <= size);
    FUZZ_CHECK(d.n_train >= 1 && d.n_train < d.n);
    FUZZ_CHECK(v->size >= 2 && v->size <= d.n);
    for (int i = 0; i < v->size; i++) {
        FUZZ_CHECK(v->chars[i] > 0 && v->chars[i] <= 0x10FFFF);
        FUZZ_CHECK(i == 0 || v->chars[i] > v->chars[i - 1]);
        FUZZ_CHECK(vocab_find(v, v->chars[i]) == i);
    }

    /* tokens back to UTF-8 give the input exactly */
    char *text = malloc((size_t)d.n * 4 + 1);
    FUZZ_CHECK(text != NULL);
    size_t k = 0;
    for (int64_t i = 0; i < d.n; i++) {
        FUZZ_CHECK(d.tokens[i] >= 0 && d.tokens[i] < v->size);
        k += (size_t)nn_utf8_encode(v->chars[d.tokens[i]], text + k);
    }
    FUZZ_CHECK(k == size && memcmp(text, data, size) == 0);
    free(text);

    /* the vocabulary as a checkpoint stores it, and back */
    char *s = vocab_to_utf8(v);
    FUZZ_CHECK(s != NULL);
    gpt_vocab back;
    FUZZ_CHECK(vocab_from_utf8(&back, s, err, sizeof err));
    FUZZ_CHECK(vocab_equal(v, &back));
    vocab_free(&back);
    free(s);

    /* block sizes: accepted exactly when both splits hold block_size + 1 tokens */
    const int64_t blocks[] = {1, 2, 3, 8, 64, 256, 1 << 16, INT64_MAX};
    int64_t small = d.n_train < d.n - d.n_train ? d.n_train : d.n - d.n_train;
    ag_rng rng = ag_rng_new(size);
    for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++) {
        int64_t T = blocks[b];
        err[0] = '\0';
        bool ok = gpt_data_check_block(&d, T, err, sizeof err);
        FUZZ_CHECK(ok == (small > T));
        FUZZ_CHECK(ok || err[0] != '\0');
        if (!ok || T > 256)
            continue;
        const int64_t B = 3;
        ag_index *x = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
        ag_index *y = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
        for (int split = 0; split < 2; split++) {
            gpt_batch(&d, split, B, T, &rng, x, y);
            for (int64_t i = 0; i < B * T; i++) {
                FUZZ_CHECK(x->data[i] >= 0 && x->data[i] < v->size);
                FUZZ_CHECK(y->data[i] >= 0 && y->data[i] < v->size);
                if ((i + 1) % T) /* y is x shifted by one within each row */
                    FUZZ_CHECK(y->data[i] == x->data[i + 1]);
            }
        }
        ag_index_free(x);
        ag_index_free(y);
    }
    gpt_data_free(&d);
    return true;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ag_set_num_threads(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_text_one(data, size);
    return 0;
}
#endif
