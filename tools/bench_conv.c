/* bench_conv.c - ms per forward + backward of a small CNN on MNIST-sized
 * input, the same model as tools/bench_conv.py times in PyTorch:
 *   x (32, 1, 28, 28) -> conv 3x3 8 ch, pad 1 -> relu -> max_pool 2
 *     -> conv 3x3 16 ch, pad 1 -> relu -> max_pool 2 -> linear 784 -> 10
 *     -> cross-entropy
 * Prints one line: the median over the timed steps of the wall time and of
 * the process's CPU time per step, and of the forward and backward alone.
 *   build/tools/bench_conv [threads (1)] [steps (50)] [batch (32)] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ag.h"

static double now(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int steps = argc > 2 ? atoi(argv[2]) : 50;
    int64_t B = argc > 3 ? atoll(argv[3]) : 32;
    if (threads < 1 || steps < 1 || B < 1) {
        fprintf(stderr, "usage: bench_conv [threads >= 1] [steps >= 1] [batch >= 1]\n");
        return 2;
    }
    ag_set_num_threads(threads);
    ag_rng r = ag_rng_new(1);
    /* PyTorch's default init scale (uniform in +-1/sqrt(fan_in)); the values don't matter here */
    ag_tensor *w1 = ag_param("conv1.weight", AG_SHAPE(8, 1, 3, 3));
    ag_tensor *b1 = ag_param("conv1.bias", AG_SHAPE(8));
    ag_tensor *w2 = ag_param("conv2.weight", AG_SHAPE(16, 8, 3, 3));
    ag_tensor *b2 = ag_param("conv2.bias", AG_SHAPE(16));
    ag_tensor *w3 = ag_param("fc.weight", AG_SHAPE(10, 16 * 7 * 7));
    ag_tensor *b3 = ag_param("fc.bias", AG_SHAPE(10));
    ag_tensor *params[6] = {w1, b1, w2, b2, w3, b3};
    const float bound[6] = {1 / 3.0f, 1 / 3.0f, 1 / 8.49f, 1 / 8.49f, 1 / 28.0f, 1 / 28.0f};
    for (int i = 0; i < 6; i++)
        ag_fill_uniform(params[i], &r, -bound[i], bound[i]);
    ag_tensor *x = ag_randn(NULL, &r, 0.0f, 1.0f, AG_SHAPE(B, 1, 28, 28));
    int32_t *tg = malloc((size_t)B * sizeof *tg);
    for (int64_t i = 0; i < B; i++)
        tg[i] = (int32_t)(ag_rng_next(&r) % 10);
    ag_index *targets = ag_index_new(NULL, tg, AG_SHAPE(B));

    ag_ctx *c = ag_ctx_new();
    ag_conv_opts pad1 = {.padding = {1, 1}};
    ag_pool_opts pool2 = {.kernel = {2, 2}};
    int warmup = steps / 5 + 2;
    size_t bytes = (size_t)steps * sizeof(double);
    double *wall = malloc(bytes), *cpu = malloc(bytes), *fwd = malloc(bytes), *bwd = malloc(bytes);
    float loss = 0.0f;
    for (int s = -warmup; s < steps; s++) {
        for (int i = 0; i < 6; i++)
            ag_zero_grad(params[i]);
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        ag_tensor *h = ag_max_pool2d(c, ag_relu(c, ag_conv2d(c, x, w1, b1, &pad1)), &pool2);
        h = ag_max_pool2d(c, ag_relu(c, ag_conv2d(c, h, w2, b2, &pad1)), &pool2);
        ag_tensor *logits = ag_linear(c, ag_reshape(c, h, AG_SHAPE(B, 16 * 7 * 7)), w3, b3);
        ag_tensor *l = ag_cross_entropy(c, logits, targets, -100);
        double t1 = now(CLOCK_MONOTONIC);
        if (!l || !ag_backward(c, l))
            return 1;
        double t2 = now(CLOCK_MONOTONIC), c2 = now(CLOCK_PROCESS_CPUTIME_ID);
        loss = ag_item(l);
        ag_ctx_reset(c);
        if (s >= 0) {
            wall[s] = t2 - t0;
            cpu[s] = c2 - c0;
            fwd[s] = t1 - t0;
            bwd[s] = t2 - t1;
        }
    }
    printf("bench_conv: impl=agrad threads=%d batch=%lld ms/step=%.3f cpu_ms/step=%.3f fwd_ms=%.3f "
           "bwd_ms=%.3f loss=%.4f\n",
           threads, (long long)B, median(wall, steps), median(cpu, steps), median(fwd, steps),
           median(bwd, steps), (double)loss);
    ag_ctx_free(c);
    for (int i = 0; i < 6; i++)
        ag_tensor_free(params[i]);
    ag_tensor_free(x);
    ag_index_free(targets);
    free(tg);
    free(wall);
    free(cpu);
    free(fwd);
    free(bwd);
    return 0;
}
