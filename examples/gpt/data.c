/* data.c - UTF-8 decoding, the character vocabulary and batches. */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn.h"

bool utf8_decode(const unsigned char *s, size_t len, uint32_t **out, int64_t *n, char *err,
                 size_t errlen)
{
    uint32_t *cp = malloc((len ? len : 1) * sizeof *cp);
    if (!cp) {
        snprintf(err, errlen, "out of memory decoding %zu bytes", len);
        return false;
    }
    int64_t k = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        uint32_t v;
        int extra;
        if (c < 0x80) {
            v = c;
            extra = 0;
        } else if (c >= 0xC2 && c <= 0xDF) {
            v = c & 0x1F;
            extra = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            v = c & 0x0F;
            extra = 2;
        } else if (c >= 0xF0 && c <= 0xF4) {
            v = c & 0x07;
            extra = 3;
        } else
            goto bad;
        if (len - i <= (size_t)extra) /* truncated sequence */
            goto bad;
        for (int j = 1; j <= extra; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                goto bad;
            v = v << 6 | (s[i + j] & 0x3F);
        }
        /* overlong forms, surrogates and values past U+10FFFF */
        if ((extra == 2 && v < 0x800) || (extra == 3 && (v < 0x10000 || v > 0x10FFFF)) ||
            (v >= 0xD800 && v <= 0xDFFF))
            goto bad;
        if (v == 0) {
            snprintf(err, errlen, "NUL byte at offset %zu: not a text file", i);
            free(cp);
            return false;
        }
        cp[k++] = v;
        i += (size_t)extra + 1;
    }
    *out = cp;
    *n = k;
    return true;
bad:
    snprintf(err, errlen, "invalid UTF-8 at byte offset %zu", i);
    free(cp);
    return false;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int vocab_find(const gpt_vocab *v, uint32_t cp)
{
    int lo = 0, hi = v->size - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (v->chars[mid] == cp)
            return mid;
        if (v->chars[mid] < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

bool gpt_data_from_text(gpt_data *d, const unsigned char *text, size_t len, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    uint32_t *cp;
    int64_t n;
    if (!utf8_decode(text, len, &cp, &n, err, errlen))
        return false;
    if (n == 0) {
        snprintf(err, errlen, "the text is empty");
        free(cp);
        return false;
    }
    uint32_t *sorted = malloc((size_t)n * sizeof *sorted);
    d->tokens = malloc((size_t)n * sizeof *d->tokens);
    if (!sorted || !d->tokens) {
        free(sorted);
        free(cp);
        free(d->tokens);
        snprintf(err, errlen, "out of memory");
        return false;
    }
    memcpy(sorted, cp, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_u32);
    int size = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || sorted[i] != sorted[i - 1])
            sorted[size++] = sorted[i];
    if (size < 2) {
        snprintf(err, errlen, "the text has %d distinct character; a language model needs at least 2",
                 size);
        free(sorted);
        free(cp);
        free(d->tokens);
        d->tokens = NULL;
        return false;
    }
    uint32_t *shrunk = realloc(sorted, (size_t)size * sizeof *sorted);
    d->vocab.chars = shrunk ? shrunk : sorted; /* shrinking failed: keep the larger block */
    d->vocab.size = size;
    for (int64_t i = 0; i < n; i++) {
        d->tokens[i] = vocab_find(&d->vocab, cp[i]);
        d->carriage_returns += cp[i] == '\r';
    }
    free(cp);
    d->n = n;
    d->n_train = (int64_t)(0.9 * (double)n); /* gpt.py: n = int(0.9*len(data)) */
    return true;
}

bool gpt_data_load(gpt_data *d, const char *path, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open data file %s: %s", path, strerror(errno));
        return false;
    }
    /* a directory opens and then fails to read; a device may never end
     * (/dev/zero) or be empty (/dev/null); pipes are read to their end */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (S_ISDIR(st.st_mode) || S_ISCHR(st.st_mode) ||
                                       S_ISBLK(st.st_mode))) {
        snprintf(err, errlen, "cannot read data file %s: it is a %s, not a text file", path,
                 S_ISDIR(st.st_mode) ? "directory" : "device");
        fclose(f);
        return false;
    }
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        if (len == cap) {
            unsigned char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (!got)
            break;
    }
    int e = errno;
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, errlen, "cannot read data file %s: %s", path,
                 buf ? strerror(e) : "out of memory");
        return false;
    }
    char why[256];
    bool ok = gpt_data_from_text(d, buf, len, why, sizeof why);
    free(buf);
    if (!ok)
        snprintf(err, errlen, "data file %s: %s", path, why);
    return ok;
}

void gpt_data_warn(const gpt_data *d, const char *path, const char *prog, FILE *f)
{
    if (d->carriage_returns)
        fprintf(f, "%s: warning: %s has %lld carriage return%s (\\r, as in Windows CRLF line "
                "endings): the model learns each as a character and will print it. To train on "
                "plain newlines, convert the file first: sed -i 's/\\r$//' %s (or dos2unix)\n", prog,
                path, (long long)d->carriage_returns, d->carriage_returns == 1 ? "" : "s", path);
}

bool gpt_vocab_load(gpt_vocab *v, const char *path, char *err, size_t errlen)
{
    gpt_data d;
    memset(v, 0, sizeof *v);
    if (!gpt_data_load(&d, path, err, errlen))
        return false;
    *v = d.vocab;
    d.vocab.chars = NULL;
    d.vocab.size = 0;
    gpt_data_free(&d);
    return true;
}

bool gpt_data_check_block(const gpt_data *d, int64_t block_size, char *err, size_t errlen)
{
    int64_t train = d->n_train, val = d->n - d->n_train;
    int64_t small = train < val ? train : val;
    /* small <= block_size, not small < block_size + 1: that overflows for
     * block_size INT64_MAX; the message's block_size + 1 is computed unsigned
     * for the same reason */
    if (small <= block_size) {
        snprintf(err, errlen,
                 "the text is too small for block size %lld: the %s split has %lld characters, "
                 "needs at least %llu (use a smaller --block-size or a larger file)",
                 (long long)block_size, train < val ? "training" : "validation", (long long)small,
                 (unsigned long long)block_size + 1);
        return false;
    }
    return true;
}

void vocab_free(gpt_vocab *v)
{
    free(v->chars);
    v->chars = NULL;
    v->size = 0;
}

void gpt_data_free(gpt_data *d)
{
    free(d->tokens);
    vocab_free(&d->vocab);
    memset(d, 0, sizeof *d);
}

char *vocab_to_utf8(const gpt_vocab *v)
{
    char *s = malloc((size_t)v->size * 4 + 1);
    if (!s)
        return NULL;
    size_t k = 0;
    for (int i = 0; i < v->size; i++)
        k += (size_t)nn_utf8_encode(v->chars[i], s + k);
    s[k] = '\0';
    return s;
}

bool vocab_from_utf8(gpt_vocab *v, const char *s, char *err, size_t errlen)
{
    uint32_t *cp;
    int64_t n;
    if (!utf8_decode((const unsigned char *)s, strlen(s), &cp, &n, err, errlen))
        return false;
    for (int64_t i = 1; i < n; i++)
        if (cp[i] <= cp[i - 1]) {
            snprintf(err, errlen, "vocabulary is not sorted and distinct at character %lld",
                     (long long)i);
            free(cp);
            return false;
        }
    if (n < 2) {
        snprintf(err, errlen, "vocabulary has %lld characters, needs at least 2", (long long)n);
        free(cp);
        return false;
    }
    v->chars = cp;
    v->size = (int)n;
    return true;
}

bool vocab_equal(const gpt_vocab *a, const gpt_vocab *b)
{
    return a->size == b->size && memcmp(a->chars, b->chars, (size_t)a->size * sizeof *a->chars) == 0;
}

void gpt_batch_rows(const gpt_data *d, int split, int64_t B, int64_t first, int64_t count,
                    int64_t T, ag_rng *rng, ag_index *x, ag_index *y)
{
    const int32_t *src = split == 0 ? d->tokens : d->tokens + d->n_train;
    int64_t len = split == 0 ? d->n_train : d->n - d->n_train;
    uint64_t range = (uint64_t)(len - T);
    for (int64_t b = 0; b < B; b++) {
        /* every row's start is drawn, so rng moves on by B whichever rows are kept */
        int64_t start = (int64_t)(ag_rng_next(rng) % range);
        if (b < first || b >= first + count)
            continue;
        int64_t row = b - first;
        memcpy(x->data + row * T, src + start, (size_t)T * sizeof(int32_t));
        memcpy(y->data + row * T, src + start + 1, (size_t)T * sizeof(int32_t));
    }
}

void gpt_batch(const gpt_data *d, int split, int64_t B, int64_t T, ag_rng *rng, ag_index *x,
               ag_index *y)
{
    gpt_batch_rows(d, split, B, 0, B, T, rng, x, y);
}
