/* test_nn_values.c - the nn layers' values: LayerNorm's statistics (and the
 * one-op LayerNorm equal to its elementwise composition), Linear's values and
 * PyTorch's inits, Head/MultiHeadAttention/FeedForward/Block against the
 * same computation written out in double, batched attention equal to one
 * head at a time, causality of attention, and the block's key/value-cached
 * and last-position forwards equal to its full forward. */
#include "nn_util.h"

/* ------------------------------------------------------------------ values */

/* Rows far from 0 with a tiny spread, and around 0 with a huge one: with
 * default weight and bias each output row has mean 0 and biased variance
 * var / (var + eps) (i.e. 1 up to eps). E[x^2] - E[x]^2 would lose the first
 * row to cancellation; an unbiased variance gives (n-1)/n. */
static void test_layernorm_normalizes(void **state)
{
    (void)state;
    enum { R = 4, D = 8 };
    const float centre[R] = {1000.0f, 0.0f, -50.0f, 3.0f};
    const float spread[R] = {0.01f, 100.0f, 1.0f, 1e-3f};
    ag_rng r = ag_rng_new(9);
    ag_tensor *x = ag_empty(NULL, AG_SHAPE(R, D));
    for (int i = 0; i < R; i++)
        for (int j = 0; j < D; j++)
            x->data[i * D + j] = centre[i] + spread[i] * ag_rng_normal(&r);
    nn_params p;
    nn_params_init(&p);
    nn_layernorm ln;
    assert_true(nn_layernorm_init(&ln, &p, "ln", D));
    assert_true(ln.eps == 1e-5f);
    for (int j = 0; j < D; j++)
        assert_true(ln.weight->data[j] == 1.0f && ln.bias->data[j] == 0.0f);
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = nn_layernorm_forward(c, &ln, x);
    assert_shape(y, R, D);
    for (int i = 0; i < R; i++) {
        double mx = 0, vx = 0, my = 0, vy = 0;
        for (int j = 0; j < D; j++)
            mx += x->data[i * D + j] / (double)D;
        for (int j = 0; j < D; j++) {
            double d = x->data[i * D + j] - mx;
            vx += d * d / D;
            my += y->data[i * D + j] / (double)D;
        }
        for (int j = 0; j < D; j++)
            vy += (y->data[i * D + j] - my) * (y->data[i * D + j] - my) / D;
        double want_v = vx / (vx + 1e-5);
        /* the row mean is a float: off by up to half an ulp of the centre,
         * which shifts the output by that over the row's std */
        double mean_tol = 1e-4 + 0.5 * (double)(nextafterf(fabsf(centre[i]), INFINITY) - fabsf(centre[i])) /
                                      sqrt(vx + 1e-5);
        if (!(fabs(my) <= mean_tol && fabs(vy - want_v) < 2e-3))
            fail_msg("row %d (around %g, spread %g): mean %g, variance %g, want 0 and %g", i,
                     (double)centre[i], (double)spread[i], my, vy, want_v);
        if (spread[i] >= 1.0f)
            assert_true(fabs(vy - 1.0) < 1e-3);
    }

    /* with an affine part: y = (x - mean) / sqrt(var + eps) * w + b, per column */
    ag_fill_normal(ln.weight, &r, 1.0f, 1.0f);
    ag_fill_normal(ln.bias, &r, 0.0f, 1.0f);
    y = nn_layernorm_forward(c, &ln, x);
    for (int i = 0; i < R; i++) {
        double m = 0, v = 0;
        for (int j = 0; j < D; j++)
            m += x->data[i * D + j] / (double)D;
        m = (float)m; /* the float mean the forward subtracts (see above) */
        for (int j = 0; j < D; j++)
            v += (x->data[i * D + j] - m) * (x->data[i * D + j] - m) / D;
        for (int j = 0; j < D; j++) {
            float want = (float)((x->data[i * D + j] - m) / sqrt(v + 1e-5) * ln.weight->data[j] +
                                 ln.bias->data[j]);
            assert_close(&y->data[i * D + j], &want, 1, 1e-4);
        }
    }
    ag_ctx_free(c);
    ag_tensor_free(x);
    nn_params_free(&p);
}

static void test_linear_values(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(0);
    nn_linear l, nb;
    assert_true(nn_linear_init(&l, &p, "a", 3, 2, true, &r));
    assert_true(nn_linear_init(&nb, &p, "b", 3, 2, false, &r));
    assert_shape(l.weight, 2, 3);
    assert_shape(l.bias, 2);
    assert_null(nb.bias);
    const float w[] = {1, 2, 3, -1, 0, 0.5f}, b[] = {0.5f, -1};
    memcpy(l.weight->data, w, sizeof w);
    memcpy(l.bias->data, b, sizeof b);
    memcpy(nb.weight->data, w, sizeof w);
    const float xv[] = {1, 1, 1, 2, 0, -2};
    ag_tensor *x = ag_from_data(NULL, xv, AG_SHAPE(2, 3));
    ag_tensor *x3 = ag_from_data(NULL, xv, AG_SHAPE(2, 1, 3));
    ag_ctx *c = ag_ctx_new();
    /* x @ W^T + b: [1+2+3+.5, -1+.5-1] and [2-6+.5, -2-1-1] */
    const float want[] = {6.5f, -1.5f, -3.5f, -4.0f}, want_nb[] = {6.0f, -0.5f, -4.0f, -3.0f};
    ag_tensor *y = nn_linear_forward(c, &l, x);
    assert_shape(y, 2, 2);
    assert_close(y->data, want, 4, 0);
    y = nn_linear_forward(c, &nb, x);
    assert_close(y->data, want_nb, 4, 0);
    y = nn_linear_forward(c, &l, x3);
    assert_shape(y, 2, 1, 2);
    assert_close(y->data, want, 4, 0);
    ag_ctx_free(c);
    ag_tensor_free(x);
    ag_tensor_free(x3);
    nn_params_free(&p);
}

static void check_uniform(const ag_tensor *t, float bound, float reach)
{
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < t->numel; i++) {
        float v = t->data[i];
        if (!(fabsf(v) <= bound))
            fail_msg("%s[%lld] = %g is outside +-%g", t->name, (long long)i, (double)v, (double)bound);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    /* the whole range is used (a bound of 1/in, or all zeros, would not reach it) */
    if (!(hi > reach * bound && lo < -reach * bound))
        fail_msg("%s spans [%g, %g], want close to +-%g", t->name, (double)lo, (double)hi, (double)bound);
}

static void test_inits(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(42);
    nn_linear l;
    assert_true(nn_linear_init(&l, &p, "l", 64, 48, true, &r));
    check_uniform(l.weight, 0.125f, 0.97f); /* 1/sqrt(64) */
    check_uniform(l.bias, 0.125f, 0.8f);
    double mean = 0;
    for (int64_t i = 0; i < l.weight->numel; i++)
        mean += l.weight->data[i] / (double)l.weight->numel;
    assert_true(fabs(mean) < 0.01);

    /* a layer with few inputs has the wider bound 1/sqrt(3) */
    nn_linear s;
    assert_true(nn_linear_init(&s, &p, "s", 3, 40, true, &r));
    check_uniform(s.weight, 1.0f / sqrtf(3.0f), 0.9f);
    check_uniform(s.bias, 1.0f / sqrtf(3.0f), 0.8f);

    /* the same seed gives the same weights, another seed others */
    nn_params q;
    nn_params_init(&q);
    ag_rng r1 = ag_rng_new(42), r2 = ag_rng_new(43);
    nn_linear l1, l2;
    assert_true(nn_linear_init(&l1, &q, "l1", 64, 48, true, &r1));
    assert_true(nn_linear_init(&l2, &q, "l2", 64, 48, true, &r2));
    assert_true(bit_equal(l1.weight->data, l.weight->data, l.weight->numel));
    assert_true(bit_equal(l1.bias->data, l.bias->data, l.bias->numel));
    assert_false(bit_equal(l2.weight->data, l.weight->data, l.weight->numel));

    /* Embedding: N(0, 1) */
    nn_embedding e;
    assert_true(nn_embedding_init(&e, &p, "e", 2000, 32, &r));
    assert_shape(e.weight, 2000, 32);
    double m = 0, v = 0;
    int64_t n = e.weight->numel;
    for (int64_t i = 0; i < n; i++)
        m += e.weight->data[i] / (double)n;
    for (int64_t i = 0; i < n; i++)
        v += (e.weight->data[i] - m) * (e.weight->data[i] - m) / (double)n;
    if (!(fabs(m) < 0.02 && fabs(sqrt(v) - 1.0) < 0.02))
        fail_msg("embedding init mean %g std %g, want 0 and 1", m, sqrt(v));
    nn_params_free(&q);
    nn_params_free(&p);
}

/* out (B, T, hs) = softmax(causal(q k^T / sqrt(hs))) v in double, weights (hs, C) */
static void ref_head(const float *x, const nn_head *h, int64_t B, int64_t T, int64_t C, double *out)
{
    int64_t hs = h->head_size;
    double *k = calloc((size_t)(B * T * hs), sizeof *k), *q = calloc((size_t)(B * T * hs), sizeof *q),
           *v = calloc((size_t)(B * T * hs), sizeof *v), w[16];
    assert_true(T <= 16);
    for (int64_t r = 0; r < B * T; r++)
        for (int64_t j = 0; j < hs; j++)
            for (int64_t i = 0; i < C; i++) {
                k[r * hs + j] += (double)x[r * C + i] * h->key.weight->data[j * C + i];
                q[r * hs + j] += (double)x[r * C + i] * h->query.weight->data[j * C + i];
                v[r * hs + j] += (double)x[r * C + i] * h->value.weight->data[j * C + i];
            }
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            double mx = -INFINITY, z = 0;
            for (int64_t s = 0; s <= t; s++) {
                double d = 0;
                for (int64_t j = 0; j < hs; j++)
                    d += q[(b * T + t) * hs + j] * k[(b * T + s) * hs + j];
                w[s] = d / sqrt((double)hs);
                mx = fmax(mx, w[s]);
            }
            for (int64_t s = 0; s <= t; s++)
                z += w[s] = exp(w[s] - mx);
            for (int64_t j = 0; j < hs; j++) {
                double o = 0;
                for (int64_t s = 0; s <= t; s++)
                    o += w[s] / z * v[(b * T + s) * hs + j];
                out[(b * T + t) * hs + j] = o;
            }
        }
    free(k);
    free(q);
    free(v);
}

/* A Head and MultiHeadAttention against attention written out in double:
 * the 1/sqrt(head_size) scale, the causal mask, the softmax axis, the head
 * order in the concat and proj all show in the values. */
static void test_attention_values(void **state)
{
    (void)state;
    enum { B = 2, T = 5, C = 6, H = 3, HS = C / H };
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(50);
    nn_mha m;
    assert_true(nn_mha_init(&m, &p, "sa", C, H, 0.0f, &r));
    for (int i = 0; i < p.n; i++) /* larger weights: a sharper softmax */
        for (int64_t k = 0; k < p.items[i]->numel; k++)
            p.items[i]->data[k] *= 3.0f;
    ag_tensor *x = ag_randn(NULL, TEST_RNG(51), 0.0f, 1.0f, AG_SHAPE(B, T, C));
    double *heads = malloc(sizeof(double) * B * T * C), one[B * T * HS];
    for (int h = 0; h < H; h++) {
        ref_head(x->data, &m.heads[h], B, T, C, one);
        for (int64_t rt = 0; rt < B * T; rt++)
            for (int j = 0; j < HS; j++)
                heads[rt * C + h * HS + j] = one[rt * HS + j];
    }
    ag_ctx *c = ag_ctx_new();
    /* head 1 alone */
    ag_tensor *y = nn_head_forward(c, &m.heads[1], x, false);
    assert_shape(y, B, T, HS);
    for (int64_t rt = 0; rt < B * T; rt++)
        for (int j = 0; j < HS; j++) {
            float want = (float)heads[rt * C + 1 * HS + j];
            assert_close(&y->data[rt * HS + j], &want, 1, 1e-5);
        }
    /* all heads, concatenated in order, through proj */
    y = nn_mha_forward(c, &m, x, false);
    assert_shape(y, B, T, C);
    for (int64_t rt = 0; rt < B * T; rt++)
        for (int o = 0; o < C; o++) {
            double acc = m.proj.bias->data[o];
            for (int i = 0; i < C; i++)
                acc += heads[rt * C + i] * m.proj.weight->data[o * C + i];
            float want = (float)acc;
            assert_close(&y->data[rt * C + o], &want, 1, 1e-5);
        }
    ag_ctx_free(c);
    free(heads);
    ag_tensor_free(x);
    nn_mha_free(&m);
    nn_params_free(&p);
}

/* FeedForward against net.2(relu(net.0(x))) in double, and a Block against
 * its definition x + sa(ln1(x)), then + ffwd(ln2(.)), built from the
 * modules' own forwards (bit for bit: the same ops in the same order). */
static void test_feedforward_and_block_values(void **state)
{
    (void)state;
    enum { B = 2, T = 3, C = 4 };
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(60);
    nn_block b;
    assert_true(nn_block_init(&b, &p, "blocks.0", C, 2, 0.0f, &r));
    ag_fill_normal(b.ln1.weight, &r, 1.0f, 0.5f);
    ag_fill_normal(b.ln1.bias, &r, 0.0f, 0.5f);
    ag_fill_normal(b.ln2.weight, &r, 1.0f, 0.5f);
    ag_fill_normal(b.ln2.bias, &r, 0.0f, 0.5f);
    ag_tensor *x = ag_randn(NULL, TEST_RNG(61), 0.0f, 1.0f, AG_SHAPE(B, T, C));
    ag_ctx *c = ag_ctx_new();

    const nn_feedforward *f = &b.ffwd;
    assert_shape(f->fc.weight, 4 * C, C);
    assert_shape(f->proj.weight, C, 4 * C);
    ag_tensor *y = nn_feedforward_forward(c, f, x, false);
    assert_shape(y, B, T, C);
    int relu_zeros = 0;
    for (int64_t rt = 0; rt < B * T; rt++) {
        double h[4 * C];
        for (int j = 0; j < 4 * C; j++) {
            h[j] = f->fc.bias->data[j];
            for (int i = 0; i < C; i++)
                h[j] += (double)x->data[rt * C + i] * f->fc.weight->data[j * C + i];
            relu_zeros += h[j] <= 0;
            h[j] = h[j] > 0 ? h[j] : 0;
        }
        for (int o = 0; o < C; o++) {
            double acc = f->proj.bias->data[o];
            for (int j = 0; j < 4 * C; j++)
                acc += h[j] * f->proj.weight->data[o * 4 * C + j];
            float want = (float)acc;
            assert_close(&y->data[rt * C + o], &want, 1, 1e-5);
        }
    }
    assert_true(relu_zeros > 0 && relu_zeros < B * T * 4 * C); /* both sides of the ReLU */

    ag_tensor *h1 = ag_add(c, x, nn_mha_forward(c, &b.sa, nn_layernorm_forward(c, &b.ln1, x), false));
    ag_tensor *want = ag_add(c, h1, nn_feedforward_forward(c, f, nn_layernorm_forward(c, &b.ln2, h1), false));
    y = nn_block_forward(c, &b, x, false);
    assert_shape(y, B, T, C);
    assert_true(bit_equal(y->data, want->data, y->numel));
    ag_ctx_free(c);
    ag_tensor_free(x);
    nn_block_free(&b);
    nn_params_free(&p);
}

/* ------------------------------------------------------------------ causality */

/* Output at positions <= t is unchanged when inputs after t change; output
 * at every position > t changes. */
static void check_causal(seq_fn f, const void *m, int64_t C)
{
    enum { B = 2, T = 6 };
    ag_tensor *x1 = ag_randn(NULL, TEST_RNG(21), 0.0f, 1.0f, AG_SHAPE(B, T, C));
    ag_tensor *x2 = ag_empty(NULL, AG_SHAPE(B, T, C));
    int64_t n;
    float *y1 = run(f, m, x1, false, 0, &n);
    int64_t oc = n / (B * T);
    for (int t = 0; t < T - 1; t++) {
        memcpy(x2->data, x1->data, (size_t)x1->numel * sizeof(float));
        ag_rng r = ag_rng_new(100 + (uint64_t)t);
        for (int b = 0; b < B; b++)
            for (int s = t + 1; s < T; s++)
                for (int64_t k = 0; k < C; k++)
                    x2->data[(b * T + s) * C + k] = 2.0f * ag_rng_normal(&r);
        float *y2 = run(f, m, x2, false, 0, NULL);
        for (int b = 0; b < B; b++) {
            for (int s = 0; s <= t; s++)
                for (int64_t k = 0; k < oc; k++) {
                    float a = y1[(b * T + s) * oc + k], z = y2[(b * T + s) * oc + k];
                    if (!(fabsf(a - z) <= 1e-6f))
                        fail_msg("t %d: output (%d, %d, %lld) changed from %.9g to %.9g", t, b, s,
                                 (long long)k, (double)a, (double)z);
                }
            for (int s = t + 1; s < T; s++) {
                float d = 0;
                for (int64_t k = 0; k < oc; k++)
                    d = fmaxf(d, fabsf(y1[(b * T + s) * oc + k] - y2[(b * T + s) * oc + k]));
                if (!(d > 1e-4f))
                    fail_msg("t %d: output at (%d, %d) did not change with its input", t, b, s);
            }
        }
        free(y2);
    }
    free(y1);
    ag_tensor_free(x1);
    ag_tensor_free(x2);
}

static void test_causality(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(20);
    nn_head h;
    nn_block b;
    assert_true(nn_head_init(&h, &p, "h", 8, 4, 0.0f, &r));
    assert_true(nn_block_init(&b, &p, "blocks.0", 8, 2, 0.0f, &r));
    check_causal(s_head, &h, 8);
    check_causal(s_block, &b, 8);
    nn_block_free(&b);
    nn_params_free(&p);
}

/* nn_mha_forward batches the heads; nn_mha_forward_heads runs them one by
 * one as the lecture does. Same outputs, same grads for input and every
 * parameter. */
static void test_mha_batched_matches_per_head(void **state)
{
    (void)state;
    enum { B = 3, T = 6, C = 12, H = 4 };
    nn_params p;
    nn_params_init(&p);
    ag_rng r = ag_rng_new(77);
    nn_mha m;
    assert_true(nn_mha_init(&m, &p, "sa", C, H, 0.0f, &r));
    ag_tensor *x = rand_leaf(78, 1.0f, AG_SHAPE(B, T, C));
    float *out[2], *gx[2], **gp[2];
    for (int pass = 0; pass < 2; pass++) {
        ag_ctx *c = ag_ctx_new();
        nn_params_zero_grad(&p);
        ag_zero_grad(x);
        ag_tensor *y = pass ? nn_mha_forward_heads(c, &m, x, false) : nn_mha_forward(c, &m, x, false);
        assert_shape(y, B, T, C);
        out[pass] = malloc(sizeof(float) * B * T * C);
        memcpy(out[pass], y->data, sizeof(float) * B * T * C);
        assert_true(ag_backward(c, weighted_sum(c, y)));
        gx[pass] = malloc(sizeof(float) * B * T * C);
        memcpy(gx[pass], x->grad, sizeof(float) * B * T * C);
        gp[pass] = malloc(sizeof(float *) * (size_t)p.n);
        for (int i = 0; i < p.n; i++) {
            gp[pass][i] = malloc(sizeof(float) * (size_t)p.items[i]->numel);
            memcpy(gp[pass][i], p.items[i]->grad, sizeof(float) * (size_t)p.items[i]->numel);
        }
        ag_ctx_free(c);
    }
    assert_close(out[0], out[1], B * T * C, 1e-5);
    assert_close(gx[0], gx[1], B * T * C, 1e-5);
    for (int i = 0; i < p.n; i++) {
        assert_close(gp[0][i], gp[1][i], p.items[i]->numel, 1e-5);
        free(gp[0][i]);
        free(gp[1][i]);
    }
    for (int pass = 0; pass < 2; pass++) {
        free(out[pass]);
        free(gx[pass]);
        free(gp[pass]);
    }
    ag_tensor_free(x);
    nn_mha_free(&m);
    nn_params_free(&p);
}

/* nn_layernorm_forward (one ag_layer_norm) against its composition from
 * elementwise ops: values and the grads of x, weight and bias, with rows far
 * from zero and rows of large spread. R even. */
static void check_layernorm_op(int R, int D)
{
    nn_params p;
    nn_params_init(&p);
    nn_layernorm ln;
    assert_true(nn_layernorm_init(&ln, &p, "ln", D));
    ag_rng r = ag_rng_new(31);
    ag_fill_normal(ln.weight, &r, 1.0f, 0.5f);
    ag_fill_normal(ln.bias, &r, 0.0f, 0.5f);
    ag_tensor *x = rand_leaf(32, 1.0f, AG_SHAPE(2, R / 2, D));
    for (int j = 0; j < D; j++) {
        x->data[j] += 1000.0f;   /* row 0 far from zero */
        x->data[D + j] *= 100.0f; /* row 1 spread wide */
    }
    float *out[2], *g[2][3];
    ag_tensor *wrt[3] = {x, ln.weight, ln.bias};
    for (int pass = 0; pass < 2; pass++) {
        ag_ctx *c = ag_ctx_new();
        nn_params_zero_grad(&p);
        ag_zero_grad(x);
        ag_tensor *xi = ag_mul_scalar(c, x, 1.0f); /* non-leaf: x's grad is assigned, then added */
        ag_tensor *y = pass ? nn_layernorm_forward_composed(c, &ln, xi)
                            : nn_layernorm_forward(c, &ln, xi);
        assert_shape(y, 2, R / 2, D);
        out[pass] = malloc(sizeof(float) * (size_t)(R * D));
        memcpy(out[pass], y->data, sizeof(float) * (size_t)(R * D));
        assert_true(ag_backward(c, weighted_sum(c, y)));
        for (int i = 0; i < 3; i++) {
            g[pass][i] = malloc(sizeof(float) * (size_t)wrt[i]->numel);
            memcpy(g[pass][i], wrt[i]->grad, sizeof(float) * (size_t)wrt[i]->numel);
        }
        ag_ctx_free(c);
    }
    assert_close(out[0], out[1], R * D, 1e-5);
    for (int i = 0; i < 3; i++) {
        assert_close(g[0][i], g[1][i], wrt[i]->numel, 1e-4);
        free(g[0][i]);
        free(g[1][i]);
    }
    free(out[0]);
    free(out[1]);
    ag_tensor_free(x);
    nn_params_free(&p);
}

static void test_layernorm_op_matches_composition(void **state)
{
    (void)state;
    check_layernorm_op(6, 40);
    check_layernorm_op(100, 400); /* over 32768 elements: split across threads */
}

/* ------------------------------------------------------------------ the block's three forwards */

/* Row t of x (B, T, C) as (B, 1, C). */
static ag_tensor *row(ag_ctx *c, ag_tensor *x, int64_t t) { return ag_slice(c, x, 1, t, t + 1); }

/* Rows of got (B, 1, C) against row t of want (B, T, C). */
static void assert_row(const ag_tensor *got, const ag_tensor *want, int64_t t)
{
    int64_t B = want->shape[0], T = want->shape[1], C = want->shape[2];
    assert_shape(got, B, 1, C);
    for (int64_t b = 0; b < B; b++)
        assert_close(got->data + b * C, want->data + (b * T + t) * C, C, 1e-5);
}

/* One position at a time through the key/value cache, and the last position
 * only, give the full forward's rows. */
static void test_block_cached_and_last_match_full(void **state)
{
    (void)state;
    const int64_t T = 6, C = 16;
    nn_params p;
    nn_params_init(&p);
    ag_rng rng = ag_rng_new(11);
    nn_block b;
    assert_true(nn_block_init(&b, &p, "blocks.0", C, 4, 0.2f, &rng));
    for (int i = 0; i < p.n; i++) /* LayerNorms off their identity start */
        if (strstr(p.items[i]->name, "ln"))
            ag_fill_uniform(p.items[i], &rng, 0.5f, 1.5f);
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_tensor *x = ag_randn(NULL, TEST_RNG(3), 0, 1, AG_SHAPE(2, T, C));
    ag_tensor *full = nn_block_forward(c, &b, x, false);                   /* (2, T, C) */

    /* the last position only, for each batch row */
    assert_row(nn_block_forward_last(c, &b, x), full, T - 1);

    /* one position at a time, for the first sequence; then again after a clear */
    ag_tensor *x0 = ag_slice(c, x, 0, 0, 1), *full0 = ag_slice(c, full, 0, 0, 1);
    nn_kv_cache kc;
    assert_true(nn_kv_cache_init(&kc, &b.sa, T));
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t t = 0; t < T; t++) {
            assert_int_equal(kc.len, t);
            assert_row(nn_block_forward_cached(c, &b, &kc, row(c, x0, t)), full0, t);
        }
        assert_int_equal(kc.len, T);
        nn_kv_cache_clear(&kc);
    }
    /* a full cache, or a ctx that records, is an error */
    for (int64_t t = 0; t < T; t++)
        assert_non_null(nn_block_forward_cached(c, &b, &kc, row(c, x0, t)));
    assert_ag_error(nn_block_forward_cached(c, &b, &kc, row(c, x0, 0)), "cache is full");
    nn_kv_cache_clear(&kc);
    ag_set_grad_enabled(c, true);
    assert_ag_error(nn_block_forward_cached(c, &b, &kc, row(c, x0, 0)), "turn gradients off");
    nn_kv_cache_free(&kc);
    assert_ag_error(nn_kv_cache_init(&kc, &b.sa, 0), "capacity 0");
    nn_kv_cache_free(&kc); /* harmless on a failed init */

    ag_tensor_free(x);
    ag_ctx_free(c);
    nn_block_free(&b);
    nn_params_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_normalizes),
        cmocka_unit_test(test_linear_values),
        cmocka_unit_test(test_inits),
        cmocka_unit_test(test_attention_values),
        cmocka_unit_test(test_feedforward_and_block_values),
        cmocka_unit_test(test_causality),
        cmocka_unit_test(test_mha_batched_matches_per_head),
        cmocka_unit_test(test_layernorm_op_matches_composition),
        cmocka_unit_test(test_block_cached_and_last_match_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
