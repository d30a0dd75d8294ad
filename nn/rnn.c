/* rnn.c - GRU and LSTM cells as torch.nn.GRUCell / LSTMCell (their parameter
 * names, gate order and init), one step and a whole time-major sequence.
 *
 * The gates are computed one by one from views of the stacked weights (rows
 * g*H .. (g+1)*H of weight_ih and weight_hh: a slice along the first axis is
 * a view), so no step copies its gates out of a (B, G*H) product; the
 * sequence forms project the inputs of all T steps with one GEMM per gate. */
#include "nn.h"

#include <math.h>
#include <stdio.h>

/* weight_ih (G*H, in), weight_hh (G*H, H), bias_ih, bias_hh (G*H) or NULL,
 * in PyTorch's order and init: every one U(-1/sqrt(H), 1/sqrt(H)). */
static bool cell_init(nn_params *p, const char *prefix, int64_t in, int64_t hidden, int gates,
                      bool bias, ag_rng *rng, ag_tensor **w)
{
    static const char *names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    float bound = hidden > 0 ? 1.0f / sqrtf((float)hidden) : 0.0f;
    w[0] = nn_param(p, prefix, names[0], AG_SHAPE(gates * hidden, in));
    w[1] = w[0] ? nn_param(p, prefix, names[1], AG_SHAPE(gates * hidden, hidden)) : NULL;
    w[2] = w[3] = NULL;
    if (bias && w[1]) {
        w[2] = nn_param(p, prefix, names[2], AG_SHAPE(gates * hidden));
        w[3] = w[2] ? nn_param(p, prefix, names[3], AG_SHAPE(gates * hidden)) : NULL;
    }
    if (!w[1] || (bias && !w[3]))
        return false;
    for (int i = 0; i < 4; i++)
        if (w[i])
            ag_fill_uniform(w[i], rng, -bound, bound);
    return true;
}

bool nn_gru_cell_init(nn_gru_cell *g, nn_params *p, const char *prefix, int64_t input_size,
                      int64_t hidden_size, bool bias, ag_rng *rng)
{
    ag_tensor *w[4];
    g->input_size = input_size;
    g->hidden_size = hidden_size;
    bool ok = cell_init(p, prefix, input_size, hidden_size, 3, bias, rng, w);
    g->weight_ih = w[0], g->weight_hh = w[1], g->bias_ih = w[2], g->bias_hh = w[3];
    return ok;
}

bool nn_lstm_cell_init(nn_lstm_cell *l, nn_params *p, const char *prefix, int64_t input_size,
                       int64_t hidden_size, bool bias, ag_rng *rng)
{
    ag_tensor *w[4];
    l->input_size = input_size;
    l->hidden_size = hidden_size;
    bool ok = cell_init(p, prefix, input_size, hidden_size, 4, bias, rng, w);
    l->weight_ih = w[0], l->weight_hh = w[1], l->bias_ih = w[2], l->bias_hh = w[3];
    return ok;
}

/* Rows g*H .. (g+1)*H of a stacked weight (G*H, K) or bias (G*H): a view. */
static ag_tensor *gate(ag_ctx *c, ag_tensor *w, int g, int64_t H)
{
    return w ? ag_slice(c, w, 0, g * H, (g + 1) * H) : NULL;
}

/* x @ W_g^T + b_g for each of the G gates: x (..., K) -> out[g] (..., H). */
static void project(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *b, int G, int64_t H,
                    ag_tensor **out)
{
    for (int g = 0; g < G; g++) {
        ag_tensor *wg = gate(c, w, g, H), *bg = gate(c, b, g, H);
        out[g] = ag_linear(c, x, wg, bg);
        ag_release(c, wg);
        if (bg)
            ag_release(c, bg);
    }
}

/* Zeros (B, H) where a state is NULL (PyTorch's default initial state). */
static ag_tensor *state_or_zeros(ag_ctx *c, ag_tensor *s, int64_t B, int64_t H)
{
    return s ? s : ag_zeros(c, AG_SHAPE(B, H));
}

/* Checks that x is (B, in) for a cell, (T, B, in) for a sequence (the first
 * op would report a wrong size too, but with the sliced weight's shape). */
static bool check_input(const char *who, const ag_tensor *x, int ndim, int64_t in)
{
    if (!x)
        return false;
    if (x->ndim != ndim || x->shape[ndim - 1] != in) {
        char b[128];
        ag_error("%s: input of shape %s, want (%s%lld)", who, ag_shape_str(x, b, sizeof b),
                 ndim == 3 ? "T, B, " : "B, ", (long long)in);
        return false;
    }
    return true;
}

/* One GRU step from the input's projections gi[3] (B, H) (x W_i^T + b_i for
 * r, z, n) and h (B, H):
 *   r = sigmoid(gi_r + h W_hr^T + b_hr), z = sigmoid(gi_z + h W_hz^T + b_hz)
 *   n = tanh(gi_n + r * (h W_hn^T + b_hn)),  h' = (1 - z) n + z h = n + z (h - n) */
static ag_tensor *gru_step(ag_ctx *c, const nn_gru_cell *g, ag_tensor *const *gi, ag_tensor *h)
{
    int64_t H = g->hidden_size;
    ag_tensor *gh[3];
    project(c, h, g->weight_hh, g->bias_hh, 3, H, gh);
    ag_tensor *ar = ag_add(c, gi[0], gh[0]), *az = ag_add(c, gi[1], gh[1]);
    ag_tensor *r = ag_sigmoid(c, ar), *z = ag_sigmoid(c, az);
    ag_tensor *rn = ag_mul(c, r, gh[2]);
    ag_tensor *an = ag_add(c, gi[2], rn);
    ag_tensor *n = ag_tanh(c, an);
    ag_tensor *d = ag_sub(c, h, n);
    ag_tensor *zd = ag_mul(c, z, d);
    ag_tensor *out = ag_add(c, n, zd);
    ag_tensor *tmp[] = {gh[0], gh[1], gh[2], ar, az, r, z, rn, an, n, d, zd};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        ag_release(c, tmp[i]);
    return out;
}

ag_tensor *nn_gru_cell_forward(ag_ctx *c, const nn_gru_cell *g, ag_tensor *x, ag_tensor *h)
{
    if (!check_input("nn_gru_cell_forward", x, 2, g->input_size))
        return NULL;
    h = state_or_zeros(c, h, x->shape[0], g->hidden_size);
    ag_tensor *gi[3];
    project(c, x, g->weight_ih, g->bias_ih, 3, g->hidden_size, gi);
    ag_tensor *out = gru_step(c, g, gi, h);
    for (int k = 0; k < 3; k++)
        ag_release(c, gi[k]);
    return out;
}

/* Step t of a (T, B, H) projection as (B, H): two views, no copy. */
static ag_tensor *at_step(ag_ctx *c, ag_tensor *all, int64_t t)
{
    ag_tensor *s = ag_slice(c, all, 0, t, t + 1);                /* (1, B, H) */
    ag_tensor *r = s ? ag_reshape(c, s, AG_SHAPE(all->shape[1], all->shape[2])) : NULL;
    ag_release(c, s);
    return r;
}

/* The T states (B, H) stacked as (T, B, H) (one copy). */
static ag_tensor *stack_steps(ag_ctx *c, ag_tensor **hs, int64_t T)
{
    ag_tensor **v = ag_ctx_alloc(c, (size_t)T * sizeof *v);
    for (int64_t t = 0; t < T; t++)
        v[t] = hs[t] ? ag_reshape(c, hs[t], AG_SHAPE(1, hs[t]->shape[0], hs[t]->shape[1])) : NULL;
    ag_tensor *out = ag_concat(c, v, (int)T, 0);
    for (int64_t t = 0; t < T; t++)
        if (v[t])
            ag_release(c, v[t]);
    return out;
}

ag_tensor *nn_gru_forward(ag_ctx *c, const nn_gru_cell *g, ag_tensor *x, ag_tensor *h0,
                          ag_tensor **h_last)
{
    if (!check_input("nn_gru_forward", x, 3, g->input_size))
        return NULL;
    int64_t T = x->shape[0], B = x->shape[1], H = g->hidden_size;
    ag_tensor *gi_all[3];
    project(c, x, g->weight_ih, g->bias_ih, 3, H, gi_all);            /* (T, B, H) each */
    ag_tensor **hs = ag_ctx_alloc(c, (size_t)T * sizeof *hs);
    ag_tensor *h = state_or_zeros(c, h0, B, H);
    for (int64_t t = 0; t < T; t++) {
        ag_tensor *gi[3];
        for (int k = 0; k < 3; k++)
            gi[k] = at_step(c, gi_all[k], t);
        h = hs[t] = gru_step(c, g, gi, h);
        for (int k = 0; k < 3; k++)
            ag_release(c, gi[k]);
    }
    for (int k = 0; k < 3; k++)
        ag_release(c, gi_all[k]);
    if (h_last)
        *h_last = h;
    return stack_steps(c, hs, T);
}

/* One LSTM step from the input's projections gi[4] (i, f, g, o) and (h, cs):
 *   i, f, o = sigmoid(gi + h W_h^T + b_h), g = tanh(...)
 *   c' = f c + i g,  h' = o tanh(c') */
static void lstm_step(ag_ctx *c, const nn_lstm_cell *l, ag_tensor *const *gi, ag_tensor *h,
                      ag_tensor *cs, ag_tensor **h_out, ag_tensor **c_out)
{
    int64_t H = l->hidden_size;
    ag_tensor *gh[4], *a[4];
    project(c, h, l->weight_hh, l->bias_hh, 4, H, gh);
    for (int k = 0; k < 4; k++)
        a[k] = ag_add(c, gi[k], gh[k]);
    ag_tensor *i = ag_sigmoid(c, a[0]), *f = ag_sigmoid(c, a[1]);
    ag_tensor *gg = ag_tanh(c, a[2]), *o = ag_sigmoid(c, a[3]);
    ag_tensor *fc = ag_mul(c, f, cs), *ig = ag_mul(c, i, gg);
    ag_tensor *cn = ag_add(c, fc, ig);
    ag_tensor *tc = ag_tanh(c, cn);
    *h_out = ag_mul(c, o, tc);
    *c_out = cn;
    ag_tensor *tmp[] = {gh[0], gh[1], gh[2], gh[3], a[0], a[1], a[2], a[3],
                        i, f, gg, o, fc, ig, tc};
    for (size_t k = 0; k < sizeof tmp / sizeof *tmp; k++)
        ag_release(c, tmp[k]);
}

bool nn_lstm_cell_forward(ag_ctx *c, const nn_lstm_cell *l, ag_tensor *x, ag_tensor *h,
                          ag_tensor *cs, ag_tensor **h_out, ag_tensor **c_out)
{
    *h_out = *c_out = NULL;
    if (!check_input("nn_lstm_cell_forward", x, 2, l->input_size))
        return false;
    int64_t B = x->shape[0];
    h = state_or_zeros(c, h, B, l->hidden_size);
    cs = state_or_zeros(c, cs, B, l->hidden_size);
    ag_tensor *gi[4];
    project(c, x, l->weight_ih, l->bias_ih, 4, l->hidden_size, gi);
    lstm_step(c, l, gi, h, cs, h_out, c_out);
    for (int k = 0; k < 4; k++)
        ag_release(c, gi[k]);
    return *h_out && *c_out;
}

ag_tensor *nn_lstm_forward(ag_ctx *c, const nn_lstm_cell *l, ag_tensor *x, ag_tensor *h0,
                           ag_tensor *c0, ag_tensor **h_last, ag_tensor **c_last)
{
    if (!check_input("nn_lstm_forward", x, 3, l->input_size))
        return NULL;
    int64_t T = x->shape[0], B = x->shape[1], H = l->hidden_size;
    ag_tensor *gi_all[4];
    project(c, x, l->weight_ih, l->bias_ih, 4, H, gi_all);            /* (T, B, H) each */
    ag_tensor **hs = ag_ctx_alloc(c, (size_t)T * sizeof *hs);
    ag_tensor *h = state_or_zeros(c, h0, B, H), *cs = state_or_zeros(c, c0, B, H);
    for (int64_t t = 0; t < T; t++) {
        ag_tensor *gi[4], *cn;
        for (int k = 0; k < 4; k++)
            gi[k] = at_step(c, gi_all[k], t);
        lstm_step(c, l, gi, h, cs, &hs[t], &cn);
        for (int k = 0; k < 4; k++)
            ag_release(c, gi[k]);
        if (t > 0 || !c0)
            ag_release(c, cs); /* the caller's c0 stays theirs */
        h = hs[t];
        cs = cn;
    }
    for (int k = 0; k < 4; k++)
        ag_release(c, gi_all[k]);
    if (h_last)
        *h_last = h;
    if (c_last)
        *c_last = cs;
    else
        ag_release(c, cs);
    return stack_steps(c, hs, T);
}
