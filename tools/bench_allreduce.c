/* bench_allreduce.c - does overlapping the gradient all-reduce with backward
 * pay on this machine? Run under mpirun (tools/bench_mpi.sh does):
 *
 *   mpirun -np 2 --oversubscribe build/tools/bench_allreduce [--params N] [--reps R]
 *
 * Times, on every rank with one thread each (medians over R repetitions):
 *   allreduce  nn_dist_average_grads over N floats (the lecture model: 10.8 M)
 *   compute    a stand-in for backward: matmuls of the lecture's feed-forward
 *              shape, as many as take about 4 x allreduce
 *   overlapped MPI_Iallreduce of the same bytes started before the compute,
 *              polled with MPI_Test between matmuls (what hooks inside
 *              backward would do), waited after it
 * Overlap pays when overlapped is clearly below allreduce + compute. With
 * every core busy computing there is nothing left to move the bytes (shared
 * memory copies and the reduction's adds are CPU work), so expect no gain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ag.h"
#include "dist.h"
#include "nn.h"

#ifndef NN_HAVE_MPI
int main(void)
{
    fprintf(stderr, "bench_allreduce: this build has no MPI (install libopenmpi-dev and "
            "reconfigure)\n");
    return 2;
}
#else
#include <mpi.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, cmp);
    return x[n / 2];
}

/* The slowest rank's time: what a step waits for. */
static double slowest(double t)
{
    nn_dist_allreduce_doubles(&t, 1, NN_DIST_MAX);
    return t;
}

typedef struct {
    ag_ctx *c;
    ag_tensor *a, *b;
} work;

/* One piece of the backward stand-in: (B*T, C) @ (C, 4C) at the lecture's
 * sizes scaled down so a piece is short enough to poll between. */
static void piece(work *w)
{
    ag_matmul(w->c, w->a, w->b);
    ag_ctx_reset(w->c);
}

int main(int argc, char **argv)
{
    char err[256];
    if (!nn_dist_init(&argc, &argv, err, sizeof err)) {
        fprintf(stderr, "bench_allreduce: %s\n", err);
        return 1;
    }
    int64_t nparams = 10788929; /* the lecture preset (384 x 6 x 6, vocab 65) */
    int reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--params") == 0)
            nparams = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
    }
    int me = nn_dist_rank(), n = nn_dist_size();
    if (n < 2) {
        fprintf(stderr, "bench_allreduce: run it under mpirun -np 2 (or more)\n");
        return 2;
    }
    if (reps < 1)
        reps = 1;
    ag_set_num_threads(1);

    /* the registry: tensors of at most 1.2 M floats, like the lecture's largest */
    nn_params p;
    nn_params_init(&p);
    ag_rng rng = ag_rng_new(1);
    char name[32];
    for (int64_t left = nparams, i = 0; left > 0; i++) {
        int64_t k = left < 1179648 ? left : 1179648;
        snprintf(name, sizeof name, "t%lld", (long long)i);
        ag_tensor *t = nn_param(&p, NULL, name, 1, &k);
        ag_zero_grad(t);
        ag_fill_uniform(t, &rng, -1, 1);
        memcpy(t->grad, t->data, (size_t)k * sizeof(float));
        left -= k;
    }
    double *t = malloc((size_t)reps * sizeof *t);

    nn_dist_average_grads(&p, NULL, 0); /* warm-up: buffers, connections */
    for (int r = 0; r < reps; r++) {
        nn_dist_allreduce_doubles(&(double){0}, 1, NN_DIST_SUM); /* line up */
        double t0 = now_s();
        nn_dist_average_grads(&p, NULL, 0);
        t[r] = slowest(now_s() - t0);
    }
    double ar = median(t, reps);

    work w = {.c = ag_ctx_new()};
    ag_set_grad_enabled(w.c, false);
    w.a = ag_randn(NULL, &rng, 0, 1, AG_SHAPE(256, 384));
    w.b = ag_randn(NULL, &rng, 0, 1, AG_SHAPE(384, 1536));
    piece(&w);
    double t0 = now_s();
    int calib = 0;
    while (now_s() - t0 < 0.2 || calib < 3)
        piece(&w), calib++;
    double per_piece = (now_s() - t0) / calib;
    double want = 4 * ar;
    nn_dist_allreduce_doubles(&per_piece, 1, NN_DIST_MAX);
    int pieces = (int)(want / per_piece) + 1;

    for (int r = 0; r < reps; r++) {
        nn_dist_allreduce_doubles(&(double){0}, 1, NN_DIST_SUM);
        t0 = now_s();
        for (int k = 0; k < pieces; k++)
            piece(&w);
        t[r] = slowest(now_s() - t0);
    }
    double comp = median(t, reps);

    float *buf = malloc((size_t)nparams * sizeof *buf);
    for (int r = 0; r < reps; r++) {
        nn_dist_allreduce_doubles(&(double){0}, 1, NN_DIST_SUM);
        t0 = now_s();
        float *dst = buf;
        for (int i = 0; i < p.n; i++) {
            memcpy(dst, p.items[i]->grad, (size_t)p.items[i]->numel * sizeof(float));
            dst += p.items[i]->numel;
        }
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)nparams, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
        int done = 0;
        for (int k = 0; k < pieces; k++) {
            piece(&w);
            if (!done)
                MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        }
        MPI_Wait(&req, MPI_STATUS_IGNORE);
        const float *src = buf;
        for (int i = 0; i < p.n; i++) {
            for (int64_t k = 0; k < p.items[i]->numel; k++)
                p.items[i]->grad[k] = src[k] / (float)n;
            src += p.items[i]->numel;
        }
        t[r] = slowest(now_s() - t0);
    }
    double ov = median(t, reps);

    if (me == 0) {
        printf("ranks %d, parameters %.2f M (%.1f MB), bucket %.0f MiB, median of %d\n", n,
               (double)nparams / 1e6, (double)nparams * 4 / 1e6,
               (double)nn_dist_bucket_bytes() / (1 << 20), reps);
        printf("allreduce (blocking, bucketed)   %8.1f ms  (%.2f GB/s of gradient)\n", ar * 1e3,
               (double)nparams * 4 / ar / 1e9);
        printf("compute (%3d matmul pieces)       %8.1f ms\n", pieces, comp * 1e3);
        printf("sequential: allreduce + compute  %8.1f ms\n", (ar + comp) * 1e3);
        printf("overlapped: Iallreduce || compute %7.1f ms  -> saves %.1f ms (%.0f%% of the "
               "all-reduce)\n", ov * 1e3, (ar + comp - ov) * 1e3, 100 * (ar + comp - ov) / ar);
    }
    free(buf);
    free(t);
    ag_tensor_free(w.a);
    ag_tensor_free(w.b);
    ag_ctx_free(w.c);
    nn_params_free(&p);
    nn_dist_finalize();
    return 0;
}
#endif
