/* bench.c - `gpt bench`: timed training steps (forward, backward, AdamW) on
 * random tokens, reported as one line comparable with tools/torch_reference.py. */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "commands.h"
#include "model.h"
#include "options.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cmd_bench(int argc, char **argv)
{
    gpt_options o;
    cli_opt t[40];
    int n = gpt_option_table(&o, OPT_BENCH, t, 40);
    char err[1024];
    bool help = false;
    if (!cli_parse(t, n, argc, argv, &help, err, sizeof err) ||
        !gpt_apply_preset(&o, t, n, err, sizeof err)) {
        fprintf(stderr, "gpt bench: %s (see gpt bench --help)\n", err);
        return 2;
    }
    if (help) {
        printf("usage: gpt bench [--preset P] [--steps N] [--threads T] [flags]\n\n"
               "Times training steps of the model on random tokens (vocabulary 65, as tiny\n"
               "Shakespeare) and prints\n"
               "  bench: preset=P threads=T ms/step=X tokens/s=Y peak_rss_mib=Z gflops=G\n"
               "with the median step time; G is the model's FLOPs per step over it. With\n"
               "--precision bf16 the line goes on with precision=bf16 bf16_kernel=K (K:\n"
               "avx512_bf16, or emulated on a CPU without it).\n\nflags:\n");
        cli_print_help(stdout, t, n);
        return 0;
    }
    ag_precision prec;
    if (!gpt_options_precision(&o, AG_FP32, &prec, err, sizeof err)) {
        fprintf(stderr, "gpt bench: %s (see gpt bench --help)\n", err);
        return 2;
    }
    if (o.threads > 0)
        ag_set_num_threads((int)o.threads);
    gpt_config cfg = gpt_options_config(&o, 65);
    gpt_model m;
    if (!gpt_init(&m, &cfg, (uint64_t)o.seed, err, sizeof err)) {
        fprintf(stderr, "gpt bench: %s\n", err);
        return 2;
    }
    m.precision = prec;
    nn_adamw opt;
    nn_adamw_init(&opt, &m.params, (float)o.lr);
    int64_t B = o.batch_size, T = cfg.block_size;
    ag_index *x = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
    ag_index *y = ag_index_new(NULL, NULL, AG_SHAPE(B, T));
    ag_rng rng = ag_rng_new((uint64_t)o.seed);
    ag_ctx *c = ag_ctx_new();
    ag_ctx_manual_seed(c, (uint64_t)o.seed);
    double *times = malloc((size_t)o.steps * sizeof *times);
    float last = 0;
    for (int64_t s = 0; s < o.warmup + o.steps; s++) {
        for (int64_t i = 0; i < B * T; i++) {
            x->data[i] = (int32_t)(ag_rng_next(&rng) % 65);
            y->data[i] = (int32_t)(ag_rng_next(&rng) % 65);
        }
        double t0 = gpt_now();
        ag_ctx_reset(c);
        ag_tensor *loss = NULL;
        gpt_forward(c, &m, x, y, true, &loss);
        nn_params_zero_grad(&m.params);
        ag_backward(c, loss);
        nn_adamw_step(&opt);
        double dt = gpt_now() - t0;
        last = loss->data[0];
        if (s >= o.warmup)
            times[s - o.warmup] = dt;
    }
    qsort(times, (size_t)o.steps, sizeof *times, cmp_double);
    double med = o.steps % 2 ? times[o.steps / 2]
                             : 0.5 * (times[o.steps / 2 - 1] + times[o.steps / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* bf16 adds its fields; the FP32 line stays as tools parse it */
    char extra[96] = "";
    if (prec == AG_BF16)
        snprintf(extra, sizeof extra, " precision=bf16 bf16_kernel=%s", ag_bf16_kernel());
    printf("bench: preset=%s threads=%d ms/step=%.2f tokens/s=%.0f peak_rss_mib=%.0f gflops=%.1f%s\n",
           o.preset ? o.preset : "custom", ag_get_num_threads(), med * 1e3, (double)(B * T) / med,
           (double)ru.ru_maxrss / 1024.0, gpt_step_flops(&cfg, B) / med / 1e9, extra);
    char ps[64];
    fprintf(stderr, "bench: last loss %.4f, arena peak %.0f MiB, matmul %s, threads in use %d, "
            "precision %s\n", (double)last, (double)ag_ctx_bytes_peak(c) / (1 << 20),
            ag_matmul_backend(), ag_threads_in_use(), gpt_precision_str(prec, ps, sizeof ps));
    free(times);
    ag_index_free(x);
    ag_index_free(y);
    ag_ctx_free(c);
    nn_adamw_free(&opt);
    gpt_free(&m);
    return 0;
}
