/* test_conv.c - conv1d, conv2d and the max/avg pools (PyTorch parity is
 * test_conv_parity.c).
 *
 * Conv: the im2col + GEMM path against the direct loops (ag_conv_direct, in
 * double) on random shapes covering stride, padding, dilation, groups, 1x1
 * kernels (no im2col) and taps that meet only padding, for the output and
 * the grads of input, weight and bias, both into fresh grad buffers and
 * added to ones that hold values; the threaded path (work split over
 * samples) equal to the one-thread one; gradcheck of every input on several
 * settings with odd sizes.
 * Pools: values by hand (default stride, padding never the max, padding
 * counted in the average, NaN propagating), the grad of ties going to the
 * first maximum, both pools against PyTorch's loop written out on random
 * shapes with ties, NaN and -inf, gradcheck.
 * Both: errors naming the op and the shapes, no-grad mode, an empty batch. */
#include "test_util.h"

#include "conv.h"

#include <stdlib.h>

/* max |got - want| <= tol * max(1, max |want|) */
static void assert_near(const char *what, const float *got, const float *want, int64_t n, double tol)
{
    double num = 0, den = 1;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > num || isnan(d)) {
            num = d;
            at = i;
        }
        den = fabs(want[i]) > den ? fabs(want[i]) : den;
    }
    if (!(num <= tol * den))
        fail_msg("%s: element %lld is %.8g, want %.8g (max error %.3g, scale %.3g)", what,
                 (long long)at, (double)got[at], (double)want[at], num, den);
}

/* ------------------------------------------------------------ GEMM path vs direct loops */

typedef struct {
    int nd;
    int64_t N, C, M, H, W, kH, kW;
    ag_conv_opts o;
    bool bias;
} conv_case;

static ag_conv_geom geom_of(const conv_case *k)
{
    int g = k->o.groups ? k->o.groups : 1;
    ag_conv_geom geo = {.N = k->N, .C = k->C, .H = k->H, .W = k->W, .M = k->M, .kH = k->kH,
                        .kW = k->kW, .groups = g};
    if (k->nd == 1) {
        geo.H = geo.kH = geo.sh = geo.dh = 1;
        geo.sw = k->o.stride[0] ? k->o.stride[0] : 1;
        geo.pw = k->o.padding[0];
        geo.dw = k->o.dilation[0] ? k->o.dilation[0] : 1;
    } else {
        geo.sh = k->o.stride[0] ? k->o.stride[0] : 1;
        geo.sw = k->o.stride[1] ? k->o.stride[1] : 1;
        geo.ph = k->o.padding[0];
        geo.pw = k->o.padding[1];
        geo.dh = k->o.dilation[0] ? k->o.dilation[0] : 1;
        geo.dw = k->o.dilation[1] ? k->o.dilation[1] : 1;
    }
    geo.OH = ag_conv_out_size(geo.H, geo.kH, geo.sh, geo.ph, geo.dh);
    geo.OW = ag_conv_out_size(geo.W, geo.kW, geo.sw, geo.pw, geo.dw);
    return geo;
}

/* Runs case k through the op and through the direct loops and compares the
 * output and all grads. accumulate: x, w, b are persistent leaves whose grads
 * already hold 1s (backward adds); else they live in the ctx (backward writes
 * fresh buffers). */
static void compare_with_direct(const conv_case *k, uint64_t seed, bool accumulate)
{
    ag_conv_geom g = geom_of(k);
    assert_true(g.OH >= 1 && g.OW >= 1);
    ag_ctx *c = ag_ctx_new();
    ag_ctx *home = accumulate ? NULL : c;
    int64_t xs[4] = {k->N, k->C, k->H, k->W}, ws[4] = {k->M, k->C / g.groups, k->kH, k->kW};
    if (k->nd == 1) {
        xs[2] = k->W;
        ws[2] = k->kW;
    }
    ag_tensor *x = ag_randn(home, TEST_RNG(seed), 0.0f, 1.0f, k->nd + 2, xs);
    ag_tensor *w = ag_randn(home, TEST_RNG(seed + 1), 0.0f, 0.5f, k->nd + 2, ws);
    ag_tensor *b = k->bias ? ag_randn(home, TEST_RNG(seed + 2), 0.0f, 1.0f, AG_SHAPE(k->M)) : NULL;
    ag_tensor *in[3] = {x, w, b};
    for (int i = 0; i < 3; i++)
        if (in[i]) {
            ag_set_requires_grad(in[i], true);
            if (accumulate) {
                ag_zero_grad(in[i]);
                for (int64_t j = 0; j < in[i]->numel; j++)
                    in[i]->grad[j] = 1.0f;
            }
        }
    ag_tensor *y = (k->nd == 1 ? ag_conv1d : ag_conv2d)(c, x, w, b, &k->o);
    assert_non_null(y);
    if (k->nd == 1)
        assert_shape(y, k->N, k->M, g.OW);
    else
        assert_shape(y, k->N, k->M, g.OH, g.OW);
    ag_tensor *gy = ag_randn(c, TEST_RNG(seed + 3), 0.0f, 1.0f, y->ndim, y->shape);
    assert_true(ag_backward_with(c, y, gy));

    float *want_y = malloc((size_t)y->numel * sizeof(float));
    float *want_gx = calloc((size_t)x->numel, sizeof(float));
    float *want_gw = calloc((size_t)w->numel, sizeof(float));
    float *want_gb = calloc((size_t)k->M, sizeof(float));
    ag_conv_direct(&g, x->data, w->data, b ? b->data : NULL, want_y);
    ag_conv_direct_backward(&g, x->data, w->data, gy->data, want_gx, want_gw, b ? want_gb : NULL);
    float base = accumulate ? 1.0f : 0.0f;
    for (int64_t i = 0; i < x->numel; i++)
        want_gx[i] += base;
    for (int64_t i = 0; i < w->numel; i++)
        want_gw[i] += base;
    for (int64_t i = 0; i < k->M; i++)
        want_gb[i] += base;
    assert_near("y", y->data, want_y, y->numel, 1e-5);
    assert_near("grad x", x->grad, want_gx, x->numel, 1e-5);
    assert_near("grad w", w->grad, want_gw, w->numel, 1e-5);
    if (b)
        assert_near("grad b", b->grad, want_gb, k->M, 1e-5);
    free(want_y);
    free(want_gx);
    free(want_gw);
    free(want_gb);
    ag_ctx_free(c);
    if (accumulate)
        free_all(in, 3);
}

static int64_t pick(ag_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(ag_rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* A random valid case: sizes 1..9, kernels 1..4, strides 1..3, padding
 * 0..2, dilation 1..3, groups 1..3, a third of them 1x1 with stride 1. */
static conv_case random_case(ag_rng *r, int nd)
{
    for (;;) {
        conv_case k = {.nd = nd, .N = pick(r, 1, 3), .H = nd == 2 ? pick(r, 1, 9) : 1,
                       .W = pick(r, 1, 9), .bias = pick(r, 0, 1)};
        int g = (int)pick(r, 1, 3);
        k.C = g * pick(r, 1, 3);
        k.M = g * pick(r, 1, 3);
        k.o.groups = g == 1 && pick(r, 0, 1) ? 0 : g; /* 0 is the default, 1 */
        bool one = pick(r, 0, 2) == 0;
        k.kH = nd == 2 && !one ? pick(r, 1, 4) : 1;
        k.kW = one ? 1 : pick(r, 1, 4);
        for (int i = 0; i < nd; i++) {
            k.o.stride[i] = one ? (int)pick(r, 0, 1) : (int)pick(r, 0, 3);
            k.o.padding[i] = one ? 0 : (int)pick(r, 0, 2);
            k.o.dilation[i] = (int)pick(r, 0, 3);
        }
        ag_conv_geom geo = geom_of(&k);
        if (geo.OH >= 1 && geo.OW >= 1)
            return k;
    }
}

static void test_conv_gemm_matches_direct(void **state)
{
    (void)state;
    ag_rng r = ag_rng_new(77);
    int ones = 0;
    for (int i = 0; i < 120; i++) {
        conv_case k = random_case(&r, i % 3 == 0 ? 1 : 2);
        ones += k.kH == 1 && k.kW == 1;
        compare_with_direct(&k, 1000 + 10 * (uint64_t)i, i % 2 == 1);
    }
    assert_true(ones >= 20); /* the no-im2col path was covered */
}

/* Taps that land only in padding (padding 2 around a 1-pixel input) and a
 * kernel exactly the padded input's size: every output meets padding. */
static void test_conv_padding_only_taps(void **state)
{
    (void)state;
    conv_case a = {.nd = 2, .N = 2, .C = 2, .M = 3, .H = 1, .W = 1, .kH = 3, .kW = 5,
                   .o = {.padding = {2, 2}}, .bias = true};
    compare_with_direct(&a, 5, false);
    conv_case b = {.nd = 1, .N = 1, .C = 3, .M = 3, .H = 1, .W = 2, .kW = 3,
                   .o = {.stride = {2}, .padding = {3}, .dilation = {2}, .groups = 3}};
    compare_with_direct(&b, 6, true);
}

/* Large enough to split over threads (uneven: 5 samples over 3 chunks): the
 * same numbers as the direct loops, and as one thread to float rounding. */
static void test_conv_threaded(void **state)
{
    (void)state;
    int saved = ag_get_num_threads();
    conv_case cases[] = {
        {.nd = 2, .N = 5, .C = 6, .M = 8, .H = 20, .W = 19, .kH = 3, .kW = 3,
         .o = {.padding = {1, 1}}, .bias = true},
        {.nd = 2, .N = 3, .C = 16, .M = 32, .H = 32, .W = 32, .kH = 1, .kW = 1,
         .o = {.groups = 2}, .bias = true},
        {.nd = 1, .N = 7, .C = 16, .M = 32, .H = 1, .W = 300, .kW = 5,
         .o = {.stride = {2}, .padding = {2}, .dilation = {2}, .groups = 4}},
    };
    for (int t = 1; t <= 3; t += 2) {
        ag_set_num_threads(t);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            compare_with_direct(&cases[i], 50 + i, false);
            compare_with_direct(&cases[i], 60 + i, true);
        }
    }
    ag_set_num_threads(saved);
}

/* ------------------------------------------------------------ gradcheck */

typedef struct {
    int nd;
    ag_conv_opts o;
} conv_args;

static ag_tensor *f_conv(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    const conv_args *a = u;
    return weighted_sum(c, (a->nd == 1 ? ag_conv1d : ag_conv2d)(c, in[0], in[1], n > 2 ? in[2] : NULL,
                                                              &a->o));
}

static void test_conv2d_gradcheck(void **state)
{
    (void)state;
    struct {
        int64_t N, C, M, H, W, kH, kW;
        ag_conv_opts o;
        bool bias;
    } cases[] = {
        {2, 3, 2, 5, 4, 3, 3, {.padding = {1, 1}}, true},
        {1, 4, 4, 7, 6, 3, 2,
         {.stride = {2, 1}, .padding = {1, 0}, .dilation = {2, 1}, .groups = 2}, true},
        {2, 2, 4, 5, 5, 3, 3, {.stride = {2, 2}, .padding = {2, 1}, .groups = 2}, false},
        {1, 3, 3, 5, 7, 2, 3,
         {.stride = {3, 2}, .padding = {1, 2}, .dilation = {2, 3}, .groups = 3}, true},
        {2, 3, 5, 3, 3, 1, 1, {.groups = 1}, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        conv_args a = {.nd = 2, .o = cases[i].o};
        int g = a.o.groups ? a.o.groups : 1;
        ag_tensor *in[3] = {
            rand_leaf(10 + i, 1.0f, AG_SHAPE(cases[i].N, cases[i].C, cases[i].H, cases[i].W)),
            rand_leaf(20 + i, 0.5f, AG_SHAPE(cases[i].M, cases[i].C / g, cases[i].kH, cases[i].kW)),
            cases[i].bias ? rand_leaf(30 + i, 1.0f, AG_SHAPE(cases[i].M)) : NULL};
        assert_gradcheck(f_conv, in, cases[i].bias ? 3 : 2, &a);
        free_all(in, 3);
    }
}

static void test_conv1d_gradcheck(void **state)
{
    (void)state;
    struct {
        int64_t N, C, M, L, k;
        ag_conv_opts o;
        bool bias;
    } cases[] = {
        {2, 3, 4, 9, 3, {.padding = {1}}, true},
        {1, 4, 6, 11, 3, {.stride = {2}, .padding = {2}, .dilation = {2}, .groups = 2}, true},
        {3, 2, 2, 7, 5, {.stride = {3}, .padding = {2}, .groups = 2}, false},
        {2, 3, 3, 5, 1, {.stride = {2}}, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        conv_args a = {.nd = 1, .o = cases[i].o};
        int g = a.o.groups ? a.o.groups : 1;
        ag_tensor *in[3] = {rand_leaf(40 + i, 1.0f, AG_SHAPE(cases[i].N, cases[i].C, cases[i].L)),
                            rand_leaf(50 + i, 0.5f, AG_SHAPE(cases[i].M, cases[i].C / g, cases[i].k)),
                            cases[i].bias ? rand_leaf(60 + i, 1.0f, AG_SHAPE(cases[i].M)) : NULL};
        assert_gradcheck(f_conv, in, cases[i].bias ? 3 : 2, &a);
        free_all(in, 3);
    }
}

/* The gradcheck must be able to fail here: a weight the forward reads at
 * the wrong tap would pass if the grads were all zero. */
static void test_conv_grads_nonzero(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(1, 1.0f, AG_SHAPE(1, 2, 4, 4));
    ag_tensor *w = rand_leaf(2, 1.0f, AG_SHAPE(3, 2, 3, 3));
    ag_tensor *b = rand_leaf(3, 1.0f, AG_SHAPE(3));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_conv2d(c, x, w, b, &(ag_conv_opts){.padding = {1, 1}});
    assert_true(ag_backward(c, weighted_sum(c, y)));
    ag_tensor *all[3] = {x, w, b};
    for (int i = 0; i < 3; i++) {
        int64_t nz = 0;
        for (int64_t j = 0; j < all[i]->numel; j++)
            nz += all[i]->grad[j] != 0.0f;
        assert_int_equal(nz, all[i]->numel);
    }
    ag_ctx_free(c);
    free_all(all, 3);
}

/* ------------------------------------------------------------ pools */

static ag_tensor *pool_of(ag_ctx *c, const char *op, ag_tensor *x, const ag_pool_opts *o)
{
    if (!strcmp(op, "max_pool1d"))
        return ag_max_pool1d(c, x, o);
    if (!strcmp(op, "max_pool2d"))
        return ag_max_pool2d(c, x, o);
    if (!strcmp(op, "avg_pool1d"))
        return ag_avg_pool1d(c, x, o);
    return ag_avg_pool2d(c, x, o);
}

static void test_pool_values(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    float v[16];
    for (int i = 0; i < 16; i++)
        v[i] = (float)i;
    ag_tensor *x = ag_from_data(c, v, AG_SHAPE(1, 1, 4, 4));
    ag_pool_opts k2 = {.kernel = {2, 2}}; /* stride defaults to the kernel */
    ag_tensor *y = ag_max_pool2d(c, x, &k2);
    assert_shape(y, 1, 1, 2, 2);
    assert_close(y->data, FLOATS(5, 7, 13, 15), 4, 0);
    y = ag_avg_pool2d(c, x, &k2);
    assert_close(y->data, FLOATS(2.5f, 4.5f, 10.5f, 12.5f), 4, 1e-7);
    /* 3x3, stride 1, padding 1: corners average 4 pixels over 9 */
    y = ag_avg_pool2d(c, x, &(ag_pool_opts){.kernel = {3, 3}, .stride = {1, 1}, .padding = {1, 1}});
    assert_shape(y, 1, 1, 4, 4);
    float corner = (0 + 1 + 4 + 5) / 9.0f;
    assert_close(&y->data[0], &corner, 1, 1e-6);
    /* default stride on an odd size drops the remainder: 7 -> 2 */
    ag_tensor *x7 = ag_zeros(c, AG_SHAPE(2, 3, 7, 5));
    assert_shape(ag_max_pool2d(c, x7, &(ag_pool_opts){.kernel = {3, 2}}), 2, 3, 2, 2);
    assert_shape(ag_avg_pool1d(c, ag_zeros(c, AG_SHAPE(2, 3, 7)), &(ag_pool_opts){.kernel = {3}}),
                 2, 3, 2);

    /* 1-d with padding: the average counts padding as 0, the max never takes it */
    ag_tensor *x3 = ag_from_data(c, FLOATS(1, 2, 3), AG_SHAPE(1, 1, 3));
    ag_pool_opts p1 = {.kernel = {3}, .stride = {1}, .padding = {1}};
    y = ag_avg_pool1d(c, x3, &p1);
    assert_close(y->data, FLOATS(1, 2, 5.0f / 3), 3, 1e-6);
    ag_tensor *neg = ag_from_data(c, FLOATS(-1, -2, -3), AG_SHAPE(1, 1, 3));
    y = ag_max_pool1d(c, neg, &p1);
    assert_close(y->data, FLOATS(-1, -1, -2), 3, 0);
    /* NaN wins any window it is in, as in PyTorch */
    ag_tensor *nan = ag_from_data(c, FLOATS(1, NAN, 2, 0, 5), AG_SHAPE(1, 1, 5));
    y = ag_max_pool1d(c, nan, &(ag_pool_opts){.kernel = {2}, .stride = {1}});
    assert_true(isnan(y->data[0]) && isnan(y->data[1]));
    assert_close(&y->data[2], FLOATS(2, 5), 2, 0);
    ag_ctx_free(c);
}

/* The grad of a window with several maxima goes to the first, as PyTorch;
 * overlapping windows that pick the same pixel add up. */
static void test_max_pool_ties(void **state)
{
    (void)state;
    ag_tensor *x = leaf(FLOATS(1, 3, 3, 0, 3, 1, 2, 2, 0), AG_SHAPE(1, 1, 3, 3));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *y = ag_max_pool2d(c, x, &(ag_pool_opts){.kernel = {2, 2}, .stride = {1, 1}});
    assert_close(y->data, FLOATS(3, 3, 3, 3), 4, 0);
    ag_tensor *gy = ag_from_data(c, FLOATS(1, 10, 100, 1000), AG_SHAPE(1, 1, 2, 2));
    assert_true(ag_backward_with(c, y, gy));
    /* windows: {1,3,0,3} -> x[1]; {3,3,3,1} -> x[1]; {0,3,2,2} -> x[4]; {3,1,2,0} -> x[4] */
    assert_close(x->grad, FLOATS(0, 11, 0, 0, 1100, 0, 0, 0, 0), 9, 0);
    ag_ctx_free(c);
    ag_tensor_free(x);

    ag_tensor *x1 = leaf(FLOATS(2, 2, 2, 2), AG_SHAPE(1, 1, 4));
    c = ag_ctx_new();
    y = ag_max_pool1d(c, x1, &(ag_pool_opts){.kernel = {3}, .padding = {1}, .stride = {2}});
    assert_true(ag_backward_with(c, y, ag_from_data(c, FLOATS(1, 10), AG_SHAPE(1, 1, 2))));
    /* windows [pad, 0, 1] -> 0, [1, 2, 3] -> 1 */
    assert_close(x1->grad, FLOATS(1, 10, 0, 0), 4, 0);
    ag_ctx_free(c);
    ag_tensor_free(x1);
}

/* PyTorch's pooling loop written out, per output: the window clipped to
 * the input, max from -inf at the window's first pixel taking any larger
 * value or NaN; the average over kH kW. y and, for max, each output's pixel. */
static void ref_pool(bool is_max, const ag_conv_geom *g, const float *x, float *y, int64_t *arg)
{
    for (int64_t q = 0; q < g->N * g->C; q++)
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;
                int64_t h1 = h0 + g->kH < g->H ? h0 + g->kH : g->H;
                int64_t w1 = w0 + g->kW < g->W ? w0 + g->kW : g->W;
                h0 = h0 > 0 ? h0 : 0;
                w0 = w0 > 0 ? w0 : 0;
                const float *xp = x + q * g->H * g->W;
                int64_t o = (q * g->OH + oh) * g->OW + ow, best = h0 * g->W + w0;
                double s = 0;
                float m = -INFINITY;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) {
                        float v = xp[ih * g->W + iw];
                        s += v;
                        if (v > m || isnan(v)) {
                            m = v;
                            best = ih * g->W + iw;
                        }
                    }
                y[o] = is_max ? m : (float)(s / (double)(g->kH * g->kW));
                if (arg)
                    arg[o] = q * g->H * g->W + best;
            }
}

/* Both pools against ref_pool on random shapes (rows long and short, so
 * the max's vector blocks, their overlapping last block and the short-row
 * path all run, at strides 1, 2 and 3), with ties (small integers) and
 * NaN and -inf among the values: the same outputs, and the grads at the
 * same pixels. */
static void test_pool_matches_reference(void **state)
{
    (void)state;
    ag_rng r = ag_rng_new(31);
    for (int it = 0; it < 300; it++) {
        int nd = it % 4 == 0 ? 1 : 2;
        bool is_max = it % 3 != 0;
        ag_pool_opts o = {.kernel = {0, 0}};
        ag_conv_geom g = {.N = pick(&r, 1, 2), .C = pick(&r, 1, 3), .H = nd == 2 ? pick(&r, 1, 12) : 1,
                          .W = pick(&r, 1, 40), .kH = 1, .sh = 1, .dh = 1, .dw = 1};
        g.kW = pick(&r, 1, 4);
        g.sw = pick(&r, 0, 3);
        g.pw = pick(&r, 0, g.kW / 2);
        o.kernel[nd - 1] = (int)g.kW;
        o.stride[nd - 1] = (int)g.sw;
        o.padding[nd - 1] = (int)g.pw;
        g.sw = g.sw ? g.sw : g.kW;
        if (nd == 2) {
            g.kH = pick(&r, 1, 4);
            g.sh = pick(&r, 0, 3);
            g.ph = pick(&r, 0, g.kH / 2);
            o.kernel[0] = (int)g.kH;
            o.stride[0] = (int)g.sh;
            o.padding[0] = (int)g.ph;
            g.sh = g.sh ? g.sh : g.kH;
        }
        g.OH = ag_conv_out_size(g.H, g.kH, g.sh, g.ph, 1);
        g.OW = ag_conv_out_size(g.W, g.kW, g.sw, g.pw, 1);
        if (g.OH < 1 || g.OW < 1) {
            it--;
            continue;
        }
        int64_t xs[4] = {g.N, g.C, g.H, g.W};
        if (nd == 1)
            xs[2] = g.W;
        ag_tensor *x = ag_param("x", nd + 2, xs);
        int kind = it % 5; /* 0, 1: normal; 2, 3: small integers; 4: max only, with NaN and -inf */
        for (int64_t i = 0; i < x->numel; i++) {
            float v = kind < 2 ? ag_rng_normal(&r) : (float)pick(&r, 0, 2);
            if (kind == 4 && is_max && pick(&r, 0, 9) == 0)
                v = pick(&r, 0, 1) ? NAN : -INFINITY;
            x->data[i] = v;
        }
        ag_ctx *c = ag_ctx_new();
        ag_tensor *y = nd == 1 ? (is_max ? ag_max_pool1d : ag_avg_pool1d)(c, x, &o)
                               : (is_max ? ag_max_pool2d : ag_avg_pool2d)(c, x, &o);
        assert_non_null(y);
        int64_t P = g.N * g.C * g.OH * g.OW;
        assert_int_equal(y->numel, P);
        float *want = malloc((size_t)P * sizeof *want);
        float *want_gx = calloc((size_t)x->numel, sizeof(float));
        int64_t *arg = malloc((size_t)P * sizeof *arg);
        ref_pool(is_max, &g, x->data, want, arg);
        ag_tensor *gy = ag_randn(c, TEST_RNG((uint64_t)it), 0.0f, 1.0f, y->ndim, y->shape);
        assert_true(ag_backward_with(c, y, gy));
        float scale = 1.0f / (float)(g.kH * g.kW);
        for (int64_t i = 0; i < P; i++) {
            if (is_max) {
                want_gx[arg[i]] += gy->data[i];
                continue;
            }
            /* the average's grad: gy / (kH kW) to every pixel of the window */
            int64_t q = i / (g.OH * g.OW), oh = i / g.OW % g.OH, ow = i % g.OW;
            for (int64_t ih = oh * g.sh - g.ph; ih < oh * g.sh - g.ph + g.kH; ih++)
                for (int64_t iw = ow * g.sw - g.pw; iw < ow * g.sw - g.pw + g.kW; iw++)
                    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W)
                        want_gx[(q * g.H + ih) * g.W + iw] += gy->data[i] * scale;
        }
        if (is_max) /* the same pixel, so the same value, NaN included */
            for (int64_t i = 0; i < P; i++)
                if (!(y->data[i] == want[i] || (isnan(y->data[i]) && isnan(want[i]))))
                    fail_msg("case %d: output %lld is %g, want %g", it, (long long)i,
                             (double)y->data[i], (double)want[i]);
        if (!is_max)
            assert_near("avg", y->data, want, P, 1e-6);
        assert_near(is_max ? "max grad" : "avg grad", x->grad, want_gx, x->numel, 1e-6);
        free(want);
        free(want_gx);
        free(arg);
        ag_ctx_free(c);
        ag_tensor_free(x);
    }
}

typedef struct {
    const char *op;
    ag_pool_opts o;
} pool_args;

static ag_tensor *f_pool(ag_ctx *c, ag_tensor *const *in, int n, void *u)
{
    (void)n;
    const pool_args *a = u;
    return weighted_sum(c, pool_of(c, a->op, in[0], &a->o));
}

/* Values 0.1 apart in random order: the finite differences (steps of 0.02)
 * never cross a tie between two pixels of a window. */
static ag_tensor *spread_leaf(uint64_t seed, int ndim, const int64_t *shape)
{
    ag_tensor *t = ag_param("x", ndim, shape);
    ag_rng r = ag_rng_new(seed);
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = 0.1f * (float)i - 0.05f * (float)t->numel;
    for (int64_t i = t->numel - 1; i > 0; i--) {
        int64_t j = (int64_t)(ag_rng_next(&r) % (uint64_t)(i + 1));
        float s = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = s;
    }
    return t;
}

static void test_pool_gradcheck(void **state)
{
    (void)state;
    pool_args cases[] = {
        {"max_pool2d", {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 0}}},
        {"max_pool2d", {.kernel = {2, 2}}},
        {"avg_pool2d", {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 1}}},
        {"avg_pool2d", {.kernel = {3, 3}, .stride = {1, 2}}},
        {"max_pool1d", {.kernel = {3}, .stride = {2}, .padding = {1}}},
        {"avg_pool1d", {.kernel = {4}, .stride = {1}, .padding = {2}}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bool two = cases[i].op[8] == '2';
        ag_tensor *x = two ? spread_leaf(i, AG_SHAPE(2, 2, 5, 7)) : spread_leaf(i, AG_SHAPE(2, 3, 9));
        assert_gradcheck(f_pool, &x, 1, &cases[i]);
        ag_tensor_free(x);
    }
}

/* ------------------------------------------------------------ errors, no-grad */

static void test_conv_errors(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_zeros(c, AG_SHAPE(2, 3, 5, 5)), *w = ag_zeros(c, AG_SHAPE(4, 3, 3, 3));
    ag_tensor *x1 = ag_zeros(c, AG_SHAPE(2, 3, 5)), *w1 = ag_zeros(c, AG_SHAPE(4, 3, 3));
    assert_ag_error(ag_conv2d(c, x1, w, NULL, NULL), "conv2d", "(2, 3, 5)", "(4, 3, 3, 3)",
                    "(N, C_in, H, W)");
    assert_ag_error(ag_conv1d(c, x, w1, NULL, NULL), "conv1d", "(2, 3, 5, 5)", "(N, C_in, L)");
    assert_ag_error(ag_conv2d(c, x, w, ag_zeros(c, AG_SHAPE(3)), NULL), "conv2d", "bias (3)", "(4)");
    /* 3 channels in 2 groups */
    assert_ag_error(ag_conv2d(c, x, ag_zeros(c, AG_SHAPE(4, 1, 3, 3)), NULL,
                              &(ag_conv_opts){.groups = 2}),
                    "conv2d", "(2, 3, 5, 5)", "(4, 1, 3, 3)", "groups 2", "divisible");
    /* weight's C_in/groups wrong */
    assert_ag_error(ag_conv2d(c, x, ag_zeros(c, AG_SHAPE(4, 2, 3, 3)), NULL, NULL), "conv2d",
                    "(4, 2, 3, 3)", "C_in 3");
    ag_tensor *w5 = ag_zeros(c, AG_SHAPE(5, 1, 3));
    assert_ag_error(ag_conv1d(c, x1, w5, NULL, &(ag_conv_opts){.groups = 3}), "conv1d", "C_out 5",
                    "groups 3");
    /* kernel 7 over 5 + 2 * 0; 3 dilated by 3 spans 7 > 5 + 2 * 0 */
    assert_ag_error(ag_conv2d(c, x, ag_zeros(c, AG_SHAPE(4, 3, 7, 1)), NULL, NULL), "conv2d",
                    "kernel (7, 1)", "(2, 3, 5, 5)");
    assert_ag_error(ag_conv1d(c, x1, w1, NULL, &(ag_conv_opts){.dilation = {3}}), "conv1d",
                    "kernel 3", "dilation 3", "(2, 3, 5)");
    /* ... which padding makes fit */
    assert_non_null(ag_conv1d(c, x1, w1, NULL, &(ag_conv_opts){.dilation = {3}, .padding = {1}}));
    assert_ag_error(ag_conv2d(c, x, w, NULL, &(ag_conv_opts){.stride = {-1, 1}}), "conv2d",
                    "stride (-1, 1)");
    assert_ag_error(ag_conv1d(c, x1, w1, NULL, &(ag_conv_opts){.padding = {-2}}), "conv1d",
                    "padding -2");
    assert_ag_error(ag_conv2d(c, x, w, NULL, &(ag_conv_opts){.groups = -1}), "conv2d", "groups -1");
    assert_null(ag_conv2d(c, NULL, w, NULL, NULL)); /* an earlier failure passes through quietly */
    ag_ctx_free(c);
}

static void test_pool_errors(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_zeros(c, AG_SHAPE(2, 3, 5, 4)), *x1 = ag_zeros(c, AG_SHAPE(2, 3, 5));
    assert_ag_error(ag_max_pool2d(c, x1, &(ag_pool_opts){.kernel = {2, 2}}), "max_pool2d", "(2, 3, 5)",
                    "(N, C, H, W)");
    assert_ag_error(ag_avg_pool1d(c, x, &(ag_pool_opts){.kernel = {2}}), "avg_pool1d",
                    "(2, 3, 5, 4)", "(N, C, L)");
    assert_ag_error(ag_max_pool2d(c, x, NULL), "max_pool2d", "kernel (0, 0)");
    assert_ag_error(ag_avg_pool2d(c, x, &(ag_pool_opts){.kernel = {3, 3}, .padding = {2, 1}}),
                    "avg_pool2d", "padding (2, 1)", "kernel / 2");
    assert_ag_error(ag_max_pool1d(c, x1, &(ag_pool_opts){.kernel = {2}, .stride = {-1}}), "max_pool1d",
                    "stride -1");
    assert_ag_error(ag_max_pool2d(c, x, &(ag_pool_opts){.kernel = {2, 5}}), "max_pool2d",
                    "kernel (2, 5)", "larger", "(2, 3, 5, 4)");
    assert_ag_error(ag_avg_pool1d(c, x1, &(ag_pool_opts){.kernel = {8}, .padding = {1}}), "avg_pool1d",
                    "kernel 8", "(2, 3, 5)", "padded by 1");
    ag_ctx_free(c);
}

/* With gradients off nothing is recorded and the values are the same. */
static void test_no_grad(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(1, 1.0f, AG_SHAPE(2, 4, 6, 5));
    ag_tensor *w = rand_leaf(2, 1.0f, AG_SHAPE(6, 2, 3, 3));
    ag_ctx *c = ag_ctx_new();
    ag_conv_opts o = {.padding = {1, 1}, .groups = 2};
    ag_pool_opts po = {.kernel = {2, 2}};
    ag_tensor *a = ag_max_pool2d(c, ag_conv2d(c, x, w, NULL, &o), &po);
    ag_tensor *a2 = ag_avg_pool2d(c, x, &po);
    ag_set_grad_enabled(c, false);
    ag_tensor *b = ag_max_pool2d(c, ag_conv2d(c, x, w, NULL, &o), &po);
    ag_tensor *b2 = ag_avg_pool2d(c, x, &po);
    assert_false(ag_requires_grad(b) || ag_requires_grad(b2));
    assert_true(ag_requires_grad(a));
    assert_close(b->data, a->data, a->numel, 0);
    assert_close(b2->data, a2->data, a2->numel, 0);
    ag_ctx_free(c);
    ag_tensor_free(x);
    ag_tensor_free(w);
}

/* An empty batch gives an empty output, and backward gives the weight and
 * bias zero grads, as PyTorch. */
static void test_empty_batch(void **state)
{
    (void)state;
    ag_tensor *w = rand_leaf(1, 1.0f, AG_SHAPE(4, 3, 3, 3)), *b = rand_leaf(2, 1.0f, AG_SHAPE(4));
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_zeros(c, AG_SHAPE(0, 3, 5, 5));
    ag_set_requires_grad(x, true);
    ag_tensor *y = ag_conv2d(c, x, w, b, &(ag_conv_opts){.padding = {1, 1}});
    assert_shape(y, 0, 4, 5, 5);
    ag_tensor *p = ag_max_pool2d(c, y, &(ag_pool_opts){.kernel = {2, 2}});
    assert_shape(p, 0, 4, 2, 2);
    assert_true(ag_backward(c, ag_sum_all(c, p)));
    for (int64_t i = 0; i < w->numel; i++)
        assert_true(w->grad[i] == 0.0f);
    for (int64_t i = 0; i < b->numel; i++)
        assert_true(b->grad[i] == 0.0f);
    ag_ctx_free(c);
    ag_tensor_free(w);
    ag_tensor_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_gemm_matches_direct),
        cmocka_unit_test(test_conv_padding_only_taps),
        cmocka_unit_test(test_conv_threaded),
        cmocka_unit_test(test_conv2d_gradcheck),
        cmocka_unit_test(test_conv1d_gradcheck),
        cmocka_unit_test(test_conv_grads_nonzero),
        cmocka_unit_test(test_pool_values),
        cmocka_unit_test(test_max_pool_ties),
        cmocka_unit_test(test_pool_matches_reference),
        cmocka_unit_test(test_pool_gradcheck),
        cmocka_unit_test(test_conv_errors),
        cmocka_unit_test(test_pool_errors),
        cmocka_unit_test(test_no_grad),
        cmocka_unit_test(test_empty_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
