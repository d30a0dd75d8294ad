/* data.h - a UTF-8 text as character tokens: vocabulary, encoding, splits, batches. */
#ifndef GPT_DATA_H
#define GPT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ag.h"

typedef struct {
    uint32_t *chars;   /* the vocabulary: sorted distinct code points */
    int size;
} gpt_vocab;

typedef struct {
    int32_t *tokens;   /* the text, one token per character */
    int64_t n;
    int64_t n_train;   /* tokens [0, n_train) train, [n_train, n) validation */
    gpt_vocab vocab;
    int64_t carriage_returns; /* '\r' characters: CRLF line endings, learnt as characters */
} gpt_data;

/* Decodes UTF-8 text of len bytes into code points (malloc'd, *n of them).
 * Invalid UTF-8 (overlong, surrogates, truncated, > U+10FFFF) and NUL bytes
 * are errors naming the byte offset. nn_utf8_encode (nn.h) is the inverse. */
bool utf8_decode(const unsigned char *s, size_t len, uint32_t **out, int64_t *n, char *err,
                 size_t errlen);

/* Builds the vocabulary and tokens of a text held in memory; the first 90%
 * train, the rest validation. Errors: empty text, fewer than 2 distinct characters. */
bool gpt_data_from_text(gpt_data *d, const unsigned char *text, size_t len, char *err, size_t errlen);
/* Reads and tokenizes a file (errors name the file and say why it cannot be
 * read: a directory, a device, a read error). Pipes are read to the end. */
bool gpt_data_load(gpt_data *d, const char *path, char *err, size_t errlen);
/* A warning line on f ("<prog>: warning: ...") when the text has carriage
 * returns, saying how many and how to convert the file; nothing otherwise. */
void gpt_data_warn(const gpt_data *d, const char *path, const char *prog, FILE *f);
/* The vocabulary of a UTF-8 file: its distinct characters, sorted, as gpt.py
 * builds its own from the training text (so the training text itself, or a
 * file of just those characters, gives the same vocabulary). */
bool gpt_vocab_load(gpt_vocab *v, const char *path, char *err, size_t errlen);
/* Each split must hold at least block_size + 1 tokens to draw a batch. */
bool gpt_data_check_block(const gpt_data *d, int64_t block_size, char *err, size_t errlen);
void gpt_data_free(gpt_data *d);

/* Token id of code point cp, or -1. */
int vocab_find(const gpt_vocab *v, uint32_t cp);
/* The vocabulary as one UTF-8 string (malloc'd), and back. */
char *vocab_to_utf8(const gpt_vocab *v);
bool vocab_from_utf8(gpt_vocab *v, const char *s, char *err, size_t errlen);
bool vocab_equal(const gpt_vocab *a, const gpt_vocab *b);
void vocab_free(gpt_vocab *v);

/* x, y (B, T): B random windows of split (0 train, 1 val), y shifted by one,
 * start drawn uniformly from [0, len - T) as gpt.py's get_batch. */
void gpt_batch(const gpt_data *d, int split, int64_t B, int64_t T, ag_rng *rng, ag_index *x,
               ag_index *y);
/* Rows [first, first + count) of the (B, T) batch gpt_batch would draw, into
 * x, y (count, T): rng advances by all B draws. Data-parallel ranks each take
 * their slice of one global batch, so N ranks see what one process sees. */
void gpt_batch_rows(const gpt_data *d, int split, int64_t B, int64_t first, int64_t count,
                    int64_t T, ag_rng *rng, ag_index *x, ag_index *y);

#endif
