/* shapes.c - a small convolutional classifier on images it draws itself.
 *
 * 16 x 16 grey images of four shapes (ring, square, triangle, cross), each
 * at a random place, size, rotation and stroke width, with noise: drawn here
 * from a seed, nothing downloaded. The network is PyTorch's usual small CNN,
 *
 *   conv 3x3 (1 -> 8, padding 1), ReLU, max pool 2   (N, 8, 8, 8)
 *   conv 3x3 (8 -> 16, padding 1), ReLU, max pool 2  (N, 16, 4, 4)
 *   flatten, Linear 256 -> 4                         (N, 4)
 *
 * written with ag_conv2d and ag_max_pool2d over parameters from an nn_params
 * registry, trained with cross-entropy and AdamW on mini-batches of a fixed
 * training set; accuracy on a held-out set drawn from another seed.
 *
 *   shapes [--steps N] [--batch-size B] [--lr X] [--seed S] [--show] [--check]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "nn.h"

#define SIDE 16
#define PIXELS (SIDE * SIDE)
#define CLASSES 4

static const char *class_names[CLASSES] = {"ring", "square", "triangle", "cross"};

/* ---------------------------------------------------------------- drawing */

/* distance from p to the segment a-b */
static float seg_dist(float px, float py, float ax, float ay, float bx, float by)
{
    float dx = bx - ax, dy = by - ay, t = ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    float ex = px - (ax + t * dx), ey = py - (ay + t * dy);
    return sqrtf(ex * ex + ey * ey);
}

/* Draws one image of class k into img (PIXELS floats in [0, 1] plus noise):
 * each pixel's ink falls off linearly with its distance from the outline. */
static void draw(float *img, int k, ag_rng *r)
{
    float cx = 5.5f + 5.0f * ag_rng_uniform(r), cy = 5.5f + 5.0f * ag_rng_uniform(r);
    float size = 3.0f + 2.5f * ag_rng_uniform(r), width = 0.6f + 0.6f * ag_rng_uniform(r);
    float rot = 6.2831853f * ag_rng_uniform(r);
    /* the outline's corners: square 4, triangle 3, cross 2 strokes of 2 ends */
    float vx[4], vy[4];
    int nv = k == 1 ? 4 : k == 2 ? 3 : 4;
    for (int i = 0; i < nv; i++) {
        float a = rot + 6.2831853f * (float)i / (float)nv;
        vx[i] = cx + size * cosf(a);
        vy[i] = cy + size * sinf(a);
    }
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            float px = (float)x, py = (float)y, d;
            if (k == 0)
                d = fabsf(hypotf(px - cx, py - cy) - size);
            else if (k == 3) /* two strokes through the centre */
                d = fminf(seg_dist(px, py, vx[0], vy[0], vx[2], vy[2]),
                          seg_dist(px, py, vx[1], vy[1], vx[3], vy[3]));
            else {
                d = INFINITY;
                for (int i = 0; i < nv; i++)
                    d = fminf(d, seg_dist(px, py, vx[i], vy[i], vx[(i + 1) % nv], vy[(i + 1) % nv]));
            }
            float ink = 1.0f - d / (width + 0.5f);
            img[y * SIDE + x] = (ink > 0 ? ink : 0) + 0.15f * ag_rng_normal(r);
        }
}

typedef struct {
    float *x;      /* (n, 1, SIDE, SIDE) */
    int32_t *y;    /* (n) */
    int64_t n;
} dataset;

/* n images, classes in turn, drawn from seed */
static dataset make_set(int64_t n, uint64_t seed)
{
    dataset d = {malloc((size_t)(n * PIXELS) * sizeof(float)), malloc((size_t)n * sizeof(int32_t)), n};
    ag_rng r = ag_rng_new(seed);
    for (int64_t i = 0; i < n; i++) {
        d.y[i] = (int32_t)(i % CLASSES);
        draw(d.x + i * PIXELS, d.y[i], &r);
    }
    return d;
}

static void print_image(const float *img)
{
    static const char ramp[] = " .:-=+*#%@";
    for (int y = 0; y < SIDE; y++) {
        for (int x = 0; x < SIDE; x++) {
            float v = img[y * SIDE + x];
            int k = (int)(v * 9.99f);
            putchar(ramp[k < 0 ? 0 : k > 9 ? 9 : k]);
            putchar(ramp[k < 0 ? 0 : k > 9 ? 9 : k]);
        }
        putchar('\n');
    }
}

/* ---------------------------------------------------------------- model */

typedef struct {
    nn_params params;
    ag_tensor *w1, *b1, *w2, *b2;   /* conv1.weight (8,1,3,3), conv2.weight (16,8,3,3), biases */
    nn_linear fc;                   /* fc.weight (4, 256), fc.bias */
} cnn;

/* A conv parameter pair initialised as torch.nn.Conv2d: U(+-1/sqrt(fan_in)) for both. */
static void conv_params(cnn *m, const char *prefix, int64_t out, int64_t in, ag_rng *r,
                        ag_tensor **w, ag_tensor **b)
{
    float bound = 1.0f / sqrtf((float)(in * 9));
    *w = nn_param(&m->params, prefix, "weight", AG_SHAPE(out, in, 3, 3));
    *b = nn_param(&m->params, prefix, "bias", AG_SHAPE(out));
    ag_fill_uniform(*w, r, -bound, bound);
    ag_fill_uniform(*b, r, -bound, bound);
}

static void cnn_init(cnn *m, uint64_t seed)
{
    ag_rng r = ag_rng_new(seed);
    nn_params_init(&m->params);
    conv_params(m, "conv1", 8, 1, &r, &m->w1, &m->b1);
    conv_params(m, "conv2", 16, 8, &r, &m->w2, &m->b2);
    nn_linear_init(&m->fc, &m->params, "fc", 16 * 4 * 4, CLASSES, true, &r);
}

/* x (N, 1, 16, 16) -> logits (N, 4) */
static ag_tensor *cnn_forward(ag_ctx *c, const cnn *m, ag_tensor *x)
{
    const ag_conv_opts same = {.padding = {1, 1}};
    const ag_pool_opts pool = {.kernel = {2, 2}};
    ag_tensor *h = ag_relu(c, ag_conv2d(c, x, m->w1, m->b1, &same));          /* (N, 8, 16, 16) */
    h = ag_max_pool2d(c, h, &pool);                                            /* (N, 8, 8, 8) */
    h = ag_relu(c, ag_conv2d(c, h, m->w2, m->b2, &same));                      /* (N, 16, 8, 8) */
    h = ag_max_pool2d(c, h, &pool);                                            /* (N, 16, 4, 4) */
    h = ag_reshape(c, h, AG_SHAPE(x->shape[0], 16 * 4 * 4));
    return nn_linear_forward(c, &m->fc, h);                                    /* (N, 4) */
}

/* Share of d classified right, in batches of 250, and the confusion counts. */
static double accuracy(const cnn *m, const dataset *d, int64_t confusion[CLASSES][CLASSES])
{
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    int64_t right = 0;
    for (int64_t s = 0; s < d->n; s += 250) {
        int64_t n = d->n - s < 250 ? d->n - s : 250;
        ag_ctx_reset(c);
        ag_tensor *x = ag_from_data(c, d->x + s * PIXELS, AG_SHAPE(n, 1, SIDE, SIDE));
        ag_index *pred = ag_argmax(c, cnn_forward(c, m, x), 1, false);
        for (int64_t i = 0; i < n; i++) {
            right += pred->data[i] == d->y[s + i];
            if (confusion)
                confusion[d->y[s + i]][pred->data[i]]++;
        }
    }
    ag_ctx_free(c);
    return (double)right / (double)d->n;
}

int main(int argc, char **argv)
{
    int64_t steps = 1000, batch = 32, seed = 1, threads = 1, n_train = 10000, n_test = 1000;
    double lr = 1e-2;
    bool check = false, show = false;
    cli_opt opts[] = {
        {"steps", CLI_INT, &steps, "AdamW steps", 1, 1e9, false},
        {"batch-size", CLI_INT, &batch, "images per step", 1, 1 << 20, false},
        {"train-size", CLI_INT, &n_train, "training images (drawn once)", CLASSES, 1 << 24, false},
        {"test-size", CLI_INT, &n_test, "held-out images (another seed)", CLASSES, 1 << 24, false},
        {"lr", CLI_FLOAT, &lr, "AdamW learning rate", 0, 10, false},
        {"seed", CLI_INT, &seed, "seed for the images, init and batches", 0, 9.2e18, false},
        {"threads", CLI_INT, &threads, "threads, 0 for all cores", 0, 1024, false},
        {"show", CLI_BOOL, &show, "print one image of each class first", 0, 0, false},
        {"check", CLI_BOOL, &check, "exit 1 unless the test accuracy is at least 90%", 0, 0, false},
    };
    int nopts = (int)(sizeof opts / sizeof *opts);
    bool help = false;
    char err[256];
    if (!cli_parse(opts, nopts, argc - 1, argv + 1, &help, err, sizeof err)) {
        fprintf(stderr, "shapes: %s (see shapes --help)\n", err);
        return 2;
    }
    if (help) {
        printf("usage: shapes [flags]\n\nTrains a small CNN to tell four shapes apart in 16x16 "
               "images it draws itself.\n\nflags:\n");
        cli_print_help(stdout, opts, nopts);
        return 0;
    }
    if (threads > 0)
        ag_set_num_threads((int)threads);
    dataset train = make_set(n_train, (uint64_t)seed * 2 + 1), test = make_set(n_test, (uint64_t)seed * 2 + 2);
    if (show)
        for (int k = 0; k < CLASSES; k++) {
            printf("%s:\n", class_names[k]);
            print_image(train.x + k * PIXELS);
        }
    cnn m;
    cnn_init(&m, (uint64_t)seed);
    nn_adamw opt;
    nn_adamw_init(&opt, &m.params, (float)lr);
    nn_adamw_decay_groups(&opt); /* conv kernels and fc.weight decayed, biases not */
    printf("%lld parameters; %lld training, %lld test images\n",
           (long long)nn_params_numel(&m.params), (long long)n_train, (long long)n_test);

    ag_ctx *c = ag_ctx_new();
    ag_rng br = ag_rng_new((uint64_t)seed * 2 + 3);
    float *xb = malloc((size_t)(batch * PIXELS) * sizeof *xb);
    ag_index *yb = ag_index_new(NULL, NULL, AG_SHAPE(batch));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int64_t s = 0; s < steps; s++) {
        for (int64_t i = 0; i < batch; i++) {
            int64_t j = (int64_t)(ag_rng_next(&br) % (uint64_t)n_train);
            memcpy(xb + i * PIXELS, train.x + j * PIXELS, PIXELS * sizeof *xb);
            yb->data[i] = train.y[j];
        }
        ag_ctx_reset(c);
        ag_tensor *x = ag_from_data(c, xb, AG_SHAPE(batch, 1, SIDE, SIDE));
        ag_tensor *loss = ag_cross_entropy(c, cnn_forward(c, &m, x), yb, -100);
        nn_params_zero_grad(&m.params);
        ag_backward(c, loss);
        opt.lr = nn_lr_cosine(s, (float)lr, (float)lr / 10, steps / 20, steps);
        nn_adamw_step(&opt);
        if ((s + 1) % 50 == 0 || s + 1 == steps)
            printf("step %lld: loss %.4f\n", (long long)s + 1, (double)ag_item(loss));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    int64_t conf[CLASSES][CLASSES] = {{0}};
    double tr = accuracy(&m, &train, NULL), te = accuracy(&m, &test, conf);
    printf("trained %lld steps in %.1f s; accuracy: train %.1f%%, test %.1f%%\n", (long long)steps,
           secs, 100 * tr, 100 * te);
    printf("test confusion (rows: true, columns: predicted %s %s %s %s):\n", class_names[0],
           class_names[1], class_names[2], class_names[3]);
    for (int k = 0; k < CLASSES; k++)
        printf("  %-9s %5lld %5lld %5lld %5lld\n", class_names[k], (long long)conf[k][0],
               (long long)conf[k][1], (long long)conf[k][2], (long long)conf[k][3]);
    free(xb);
    ag_index_free(yb);
    ag_ctx_free(c);
    nn_adamw_free(&opt);
    nn_params_free(&m.params);
    free(train.x);
    free(train.y);
    free(test.x);
    free(test.y);
    if (check && te < 0.9) {
        fprintf(stderr, "shapes: test accuracy %.1f%% is below 90%%\n", 100 * te);
        return 1;
    }
    return 0;
}
