/* spiral.c - a classifier built from the engine's primitives alone.
 *
 * Three interleaved spiral arms in the plane, one class each, generated here
 * from a seed. The model is a 2 -> 64 -> 64 -> 3 MLP with tanh, every layer
 * written out as x @ W^T + b over ag_param tensors, trained full-batch with
 * cross-entropy and a hand-written Adam that reads each parameter's grad.
 *
 *   spiral [--steps N] [--lr X] [--seed S] [--threads T] [--dot FILE] [--check]
 *
 * Uses only ag.h: this is how to build an architecture without the nn layer. */
#include "ag.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLASSES 3
#define PER_CLASS 100
#define N_POINTS (CLASSES * PER_CLASS)
#define HIDDEN 64

/* ---------------------------------------------------------------- options */

typedef struct {
    long steps;
    double lr;
    unsigned long long seed;
    long threads; /* 0: OpenMP's default */
    const char *dot;
    bool check;
} options;

/* One thread by default: at 300 x 64 a parallel region costs about what it
 * saves, and far more when the cores are shared with other work. */
static const options defaults = {.steps = 500, .lr = 0.01, .seed = 1, .threads = 1};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: spiral [options]\n"
            "Trains a 2-64-64-3 tanh MLP with Adam on a three-arm spiral (%d points).\n"
            "  --steps N     training steps, full batch (default %ld)\n"
            "  --lr X        Adam learning rate (default %g)\n"
            "  --seed S      seed for the data and the initial weights (default %llu)\n"
            "  --threads T   threads for the kernels, 0 = OpenMP's default (default %ld)\n"
            "  --dot FILE    write the graph of one training step as Graphviz DOT\n"
            "  --check       exit 1 if the final training accuracy is below 95%%\n"
            "  --help        show this and exit\n",
            N_POINTS, defaults.steps, defaults.lr, defaults.seed, defaults.threads);
}

/* A one-line complaint about the command line, and exit code 2. */
static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spiral: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    exit(2);
}

static long parse_long(const char *flag, const char *s, long lo)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo)
        bad("%s wants a %s integer, got '%s'", flag, lo > 0 ? "positive" : "non-negative", s);
    return v;
}

static options parse(int argc, char **argv)
{
    options o = defaults;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--check")) {
            o.check = true;
            continue;
        }
        bool known = !strcmp(a, "--steps") || !strcmp(a, "--lr") || !strcmp(a, "--seed") ||
                     !strcmp(a, "--threads") || !strcmp(a, "--dot");
        if (!known)
            bad("unknown option '%s'", a);
        if (i + 1 >= argc)
            bad("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--steps"))
            o.steps = parse_long(a, v, 1);
        else if (!strcmp(a, "--threads"))
            o.threads = parse_long(a, v, 0);
        else if (!strcmp(a, "--seed"))
            o.seed = (unsigned long long)parse_long(a, v, 0);
        else if (!strcmp(a, "--dot"))
            o.dot = v;
        else {
            char *end;
            errno = 0;
            o.lr = strtod(v, &end);
            if (errno || end == v || *end || !(o.lr > 0.0) || isinf(o.lr))
                bad("%s wants a positive number, got '%s'", a, v);
        }
    }
    return o;
}

/* ---------------------------------------------------------------- data */

/* Arm k: radius r from 0.05 to 1, angle 2 pi k / 3 + 1.5 turns * r, with a
 * little angular noise. Points are (N, 2) floats, labels (N). */
static void make_spiral(ag_rng *rng, float *xy, int32_t *label)
{
    const double two_pi = 6.283185307179586;
    for (int k = 0; k < CLASSES; k++)
        for (int i = 0; i < PER_CLASS; i++) {
            int n = k * PER_CLASS + i;
            double r = 0.05 + 0.95 * i / (PER_CLASS - 1);
            double t = two_pi * k / CLASSES + 1.5 * two_pi * r + 0.1 * ag_rng_normal(rng);
            xy[2 * n] = (float)(r * cos(t));
            xy[2 * n + 1] = (float)(r * sin(t));
            label[n] = k;
        }
}

/* ---------------------------------------------------------------- model */

typedef struct {
    ag_tensor *w, *b; /* (out, in), (out) */
} linear;

#define N_LAYERS 3

typedef struct {
    linear layer[N_LAYERS];
} mlp;

/* PyTorch's Linear init: W and b uniform in +-1/sqrt(fan_in). */
static linear linear_new(const char *name, int in, int out, ag_rng *rng)
{
    char buf[64];
    linear l;
    float bound = 1.0f / sqrtf((float)in);
    snprintf(buf, sizeof buf, "%s.weight", name);
    l.w = ag_param(buf, AG_SHAPE(out, in));
    snprintf(buf, sizeof buf, "%s.bias", name);
    l.b = ag_param(buf, AG_SHAPE(out));
    ag_fill_uniform(l.w, rng, -bound, bound);
    ag_fill_uniform(l.b, rng, -bound, bound);
    return l;
}

static mlp mlp_new(ag_rng *rng)
{
    mlp m;
    m.layer[0] = linear_new("fc1", 2, HIDDEN, rng);
    m.layer[1] = linear_new("fc2", HIDDEN, HIDDEN, rng);
    m.layer[2] = linear_new("fc3", HIDDEN, CLASSES, rng);
    return m;
}

static ag_tensor *linear_forward(ag_ctx *c, const linear *l, ag_tensor *x)
{
    return ag_add(c, ag_matmul_nt(c, x, l->w), l->b);
}

/* (N, 2) points -> (N, 3) logits */
static ag_tensor *mlp_forward(ag_ctx *c, const mlp *m, ag_tensor *x)
{
    ag_tensor *h = ag_tanh(c, linear_forward(c, &m->layer[0], x));
    h = ag_tanh(c, linear_forward(c, &m->layer[1], h));
    return linear_forward(c, &m->layer[2], h);
}

/* ---------------------------------------------------------------- Adam */

typedef struct {
    ag_tensor *p;
    float *m, *v; /* first and second moments, one per element */
} adam_slot;

typedef struct {
    adam_slot slot[2 * N_LAYERS];
    int n;
    long t;
    float lr, beta1, beta2, eps;
} adam;

static adam adam_new(mlp *m, float lr)
{
    adam a = {.n = 0, .t = 0, .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    for (int i = 0; i < N_LAYERS; i++) {
        ag_tensor *ps[2] = {m->layer[i].w, m->layer[i].b};
        for (int j = 0; j < 2; j++) {
            adam_slot *s = &a.slot[a.n++];
            s->p = ps[j];
            s->m = calloc((size_t)ps[j]->numel, sizeof(float));
            s->v = calloc((size_t)ps[j]->numel, sizeof(float));
            if (!s->m || !s->v) {
                fprintf(stderr, "spiral: out of memory\n");
                exit(1);
            }
        }
    }
    return a;
}

static void adam_zero_grad(adam *a)
{
    for (int i = 0; i < a->n; i++)
        ag_zero_grad(a->slot[i].p);
}

/* p -= lr * mhat / (sqrt(vhat) + eps), with bias-corrected moments */
static void adam_step(adam *a)
{
    a->t++;
    float c1 = 1.0f - powf(a->beta1, (float)a->t), c2 = 1.0f - powf(a->beta2, (float)a->t);
    for (int i = 0; i < a->n; i++) {
        adam_slot *s = &a->slot[i];
        const float *g = s->p->grad;
        for (int64_t k = 0; k < s->p->numel; k++) {
            s->m[k] = a->beta1 * s->m[k] + (1.0f - a->beta1) * g[k];
            s->v[k] = a->beta2 * s->v[k] + (1.0f - a->beta2) * g[k] * g[k];
            s->p->data[k] -= a->lr * (s->m[k] / c1) / (sqrtf(s->v[k] / c2) + a->eps);
        }
    }
}

static void adam_free(adam *a)
{
    for (int i = 0; i < a->n; i++) {
        free(a->slot[i].m);
        free(a->slot[i].v);
    }
}

/* ---------------------------------------------------------------- training */

/* Rows whose largest logit is the label's. */
static int correct(const ag_tensor *logits, const int32_t *label)
{
    int n = 0;
    for (int64_t r = 0; r < logits->shape[0]; r++) {
        const float *row = logits->data + r * CLASSES;
        int best = 0;
        for (int k = 1; k < CLASSES; k++)
            if (row[k] > row[best])
                best = k;
        n += best == label[r];
    }
    return n;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    options o = parse(argc, argv);
    if (o.threads > 0)
        ag_set_num_threads((int)o.threads);

    static float xy[N_POINTS * 2];
    static int32_t label[N_POINTS];
    ag_rng data_rng = ag_rng_new(o.seed), init_rng = ag_rng_new(o.seed + 0x5eed);
    make_spiral(&data_rng, xy, label);
    ag_tensor *x = ag_from_data(NULL, xy, AG_SHAPE(N_POINTS, 2));
    ag_index *y = ag_index_new(NULL, label, AG_SHAPE(N_POINTS));

    mlp model = mlp_new(&init_rng);
    adam opt = adam_new(&model, (float)o.lr);
    ag_ctx *c = ag_ctx_new();

    int nt = ag_get_num_threads();
    printf("spiral: %d points, 2-%d-%d-%d tanh MLP, Adam lr %g, %ld steps, %d thread%s, "
           "%s matmul\n",
           N_POINTS, HIDDEN, HIDDEN, CLASSES, o.lr, o.steps, nt, nt == 1 ? "" : "s",
           ag_matmul_backend());
    double t0 = seconds();
    float loss_v = NAN;
    int hits = 0;
    for (long step = 1; step <= o.steps; step++) {
        ag_ctx_reset(c); /* drops the previous step's graph and activations */
        ag_tensor *logits = mlp_forward(c, &model, x);
        ag_tensor *loss = ag_cross_entropy(c, logits, y, -100);
        adam_zero_grad(&opt);
        if (!ag_backward(c, loss))
            return 1;
        if (step == 1 && o.dot) {
            if (!ag_save_dot(o.dot, loss)) {
                fprintf(stderr, "spiral: cannot write %s\n", o.dot);
                return 1;
            }
            printf("wrote the graph of one step to %s\n", o.dot);
        }
        /* loss and accuracy of the weights before this update */
        loss_v = ag_item(loss);
        hits = correct(logits, label);
        adam_step(&opt);
        if (step % 100 == 0 || step == 1)
            printf("step %5ld  loss %.4f  accuracy %6.2f%%\n", step, (double)loss_v,
                   100.0 * hits / N_POINTS);
    }
    /* evaluate the final weights without recording a graph */
    ag_ctx_reset(c);
    ag_set_grad_enabled(c, false);
    ag_tensor *logits = mlp_forward(c, &model, x);
    loss_v = ag_item(ag_cross_entropy(c, logits, y, -100));
    hits = correct(logits, label);
    double acc = 100.0 * hits / N_POINTS;
    printf("final: loss %.4f  accuracy %.2f%% (%d/%d)  in %.2f s\n", (double)loss_v, acc, hits,
           N_POINTS, seconds() - t0);

    ag_ctx_free(c);
    adam_free(&opt);
    for (int i = 0; i < N_LAYERS; i++) {
        ag_tensor_free(model.layer[i].w);
        ag_tensor_free(model.layer[i].b);
    }
    ag_tensor_free(x);
    ag_index_free(y);
    if (o.check && acc < 95.0) {
        fprintf(stderr, "spiral: check failed: accuracy %.2f%% is below 95%%\n", acc);
        return 1;
    }
    return 0;
}
