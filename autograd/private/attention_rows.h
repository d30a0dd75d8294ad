/* attention_rows.h - the row code both attention ops share: ops_attention.c
 * (q, k, v packed in one tensor) and ops_attention_qkv.c (separate tensors).
 * Static inline, so each op's kernels inline it as if it were their own. */
#ifndef AG_ATTENTION_ROWS_H
#define AG_ATTENTION_ROWS_H

#include "internal.h"

/* out[e] (+)= sum_j w[j] rows[j ld + e] for e < n, j < m:
 * the sum over j kept in registers, eight columns at a time (adding into out
 * row by row would wait on its own stores) */
static inline void weighted_rows(float *out, const float *w, const float *rows, int64_t ld,
                                 int64_t m, int64_t n, bool overwrite)
{
    int64_t e = 0;
    for (; e + 8 <= n; e += 8) {
        ag_v8 acc = {0};
        for (int64_t j = 0; j < m; j++)
            acc += w[j] * ag_load8(rows + j * ld + e);
        if (!overwrite)
            acc += ag_load8(out + e);
        memcpy(out + e, &acc, sizeof acc);
    }
    for (; e < n; e++) {
        float s = 0.0f;
        for (int64_t j = 0; j < m; j++)
            s += w[j] * rows[j * ld + e];
        out[e] = (overwrite ? 0.0f : out[e]) + s;
    }
}

/* A row's n scores in pr[0..n): pr becomes their softmax, zero on [n, width);
 * with dropout (dr != pr), dr becomes the dropped and rescaled row, zero on
 * [n, width) as well, element j's keep decision that of element base + j of
 * ag_dropout's call seeded with seed. ops_attention.c's softmax_dropout_row
 * is this for n = t + 1, written out there: made a call of this one, it
 * changed how GCC inlines the packed kernels, which then ran 30% slower at
 * the tiny preset. */
static inline void softmax_dropout_span(float p, uint64_t seed, uint64_t base, float *pr, float *dr,
                                        int64_t n, int64_t width)
{
    int64_t t = n - 1;
    float m = pr[0];
    if (t < 32) { /* a simd max spills its lanes through the stack: slow on short rows */
        for (int64_t j = 1; j <= t; j++)
            m = pr[j] > m ? pr[j] : m;
    } else {
#pragma omp simd reduction(max : m)
        for (int64_t j = 1; j <= t; j++)
            m = pr[j] > m ? pr[j] : m;
    }
#pragma omp simd
    for (int64_t j = 0; j <= t; j++)
        pr[j] = ag_expf(pr[j] - m);
    float r = 1.0f / ag_sumf(pr, t + 1);
#pragma omp simd
    for (int64_t j = 0; j <= t; j++)
        pr[j] *= r;
    for (int64_t j = t + 1; j < width; j++)
        pr[j] = 0.0f;
    if (dr != pr) {
        float inv = 1.0f / (1.0f - p);
        for (int64_t j = 0; j <= t; j++)
            dr[j] = ag_dropout_keep(seed, (int64_t)base + j, p) ? pr[j] * inv : 0.0f;
        for (int64_t j = t + 1; j < width; j++)
            dr[j] = 0.0f;
    }
}

/* Backward through a row's softmax and dropout in a block cols wide whose
 * first n scores are kept: ar holds dD, the gradient of the dropped row, and
 * becomes dS = P (dP - sum(dP P)) scale, dP being dD through the dropout
 * (element j kept as element base + j of ag_dropout's call seeded with
 * seed); with dropout (p > 0) dr becomes the dropped row D. Both are zero
 * on [n, cols). */
static inline void softmax_dropout_span_backward(float p, uint64_t seed, uint64_t base,
                                                 float scale, const float *pr, float *ar,
                                                 float *dr, int64_t n, int64_t cols)
{
    if (p > 0.0f) {
        float inv = 1.0f / (1.0f - p);
        for (int64_t j = 0; j < n; j++) {
            bool kp = ag_dropout_keep(seed, (int64_t)base + j, p);
            ar[j] = kp ? ar[j] * inv : 0.0f;
            dr[j] = kp ? pr[j] * inv : 0.0f;
        }
        for (int64_t j = n; j < cols; j++)
            dr[j] = 0.0f;
    }
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < n; j++)
        dot += ar[j] * pr[j];
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        ar[j] = pr[j] * (ar[j] - dot) * scale;
    for (int64_t j = n; j < cols; j++)
        ar[j] = 0.0f;
}

#endif
