/* json.h - the JSON of safetensors headers (private to nn): a strict,
 * bounds-checked lexer for reading untrusted headers, and a growing buffer
 * for writing them. Lexer errors are one-line messages in L->err. */
#ifndef NN_JSON_H
#define NN_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "private.h"

typedef struct {
    const char *s, *end; /* the text not yet read */
    const char *begin;   /* start of the text, for byte positions in messages */
    char *err;
    size_t errlen;
} nn_json;

/* Skips whitespace, then consumes c; false (with a message) if c is not next. */
NN_HIDDEN bool nn_json_expect(nn_json *L, char c);
/* Skips whitespace; true if c is next (not consumed). */
NN_HIDDEN bool nn_json_peek(nn_json *L, char c);
/* true if only whitespace is left. */
NN_HIDDEN bool nn_json_at_end(nn_json *L);
/* A string as a new malloc'd C string, escapes decoded (\u0000 refused); NULL on error. */
NN_HIDDEN char *nn_json_string(nn_json *L);
/* [u, u, ...] of at most max non-negative integers into out, *n of them. */
NN_HIDDEN bool nn_json_uint_array(nn_json *L, uint64_t *out, int max, int *n);
/* Skips any value, nested at most a few levels below depth. */
NN_HIDDEN bool nn_json_skip(nn_json *L, int depth);

/* A growing NUL-terminated string; allocation failures abort. */
typedef struct {
    char *s;
    size_t n, cap;
} nn_json_out;

NN_HIDDEN void nn_json_put(nn_json_out *b, const char *s, size_t n);
NN_HIDDEN void nn_json_putf(nn_json_out *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* s as a quoted JSON string: '"' and '\\' escaped, control characters as \u00XX. */
NN_HIDDEN void nn_json_put_string(nn_json_out *b, const char *s);

#endif
