/* optim.c - SGD with momentum and AdamW, with PyTorch's semantics. */
#include "nn.h"
#include "private.h"

#include "ag_op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float **state(const nn_params *p)
{
    float **s = calloc((size_t)(p->n ? p->n : 1), sizeof *s);
    for (int i = 0; s && i < p->n; i++)
        s[i] = calloc((size_t)(p->items[i]->numel ? p->items[i]->numel : 1), sizeof(float));
    for (int i = 0; s && i < p->n; i++)
        if (!s[i])
            s = NULL;
    if (!s)
        nn_oom();
    return s;
}

static void free_state(float **s, int n)
{
    for (int i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

void nn_sgd_init(nn_sgd *o, nn_params *p, float lr, float momentum, float weight_decay)
{
    memset(o, 0, sizeof *o);
    o->params = p;
    o->lr = lr;
    o->momentum = momentum;
    o->weight_decay = weight_decay;
    o->buf = state(p);
    o->n = p->n;
}

typedef struct {
    void (*fn)(void *, int64_t, int64_t);
    void *arg;
} range_job;

static void run_range(int64_t lo, int64_t hi, void *user)
{
    range_job *j = user;
    j->fn(j->arg, lo, hi);
}

/* Splits [0, n) over the threads when n is large enough to be worth waking
 * them (past 65536, runs of at least 32768: ag_parallel_for, which also
 * uses fewer threads while the machine is busy), calling fn(arg, k0, k1) on
 * each piece; otherwise one call, no OpenMP runtime entered at all. */
static void over_range(int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg)
{
    if (n > 65536)
        ag_parallel_for(n, 32768, run_range, &(range_job){fn, arg});
    else
        fn(arg, 0, n);
}

typedef struct {
    float *w, *g, *b, *m, *v;
    float lr, mu, wd, decay, b1, b2, eps, step_size, bc2_sqrt;
    bool first;
} update_args;

static void sgd_range(void *arg, int64_t k0, int64_t k1)
{
    update_args *a = arg;
    float *w = a->w, *g = a->g, *b = a->b;
    for (int64_t k = k0; k < k1; k++) {
        float d = g[k] + a->wd * w[k];
        if (a->mu != 0.0f) {
            b[k] = a->first ? d : a->mu * b[k] + d;
            d = b[k];
        }
        w[k] -= a->lr * d;
    }
}

static void adamw_range(void *arg, int64_t k0, int64_t k1)
{
    update_args *a = arg;
    float *w = a->w, *g = a->g, *m = a->m, *v = a->v;
    float decay = a->decay, b1 = a->b1, b2 = a->b2, eps = a->eps;
    float step_size = a->step_size, bc2_sqrt = a->bc2_sqrt;
    for (int64_t k = k0; k < k1; k++) {
        w[k] *= decay;
        m[k] = b1 * m[k] + (1.0f - b1) * g[k];
        v[k] = b2 * v[k] + (1.0f - b2) * g[k] * g[k];
        w[k] -= step_size * m[k] / (sqrtf(v[k]) / bc2_sqrt + eps);
    }
}

void nn_sgd_step(nn_sgd *o)
{
    for (int i = 0; i < o->params->n; i++) {
        ag_tensor *t = o->params->items[i];
        if (!t->grad)
            continue;
        update_args a = {.w = t->data, .g = t->grad, .b = o->buf[i], .lr = o->lr,
                         .mu = o->momentum, .wd = o->weight_decay, .first = !o->started};
        over_range(t->numel, sgd_range, &a);
    }
    o->started = true;
}

void nn_sgd_free(nn_sgd *o)
{
    free_state(o->buf, o->n); /* not params->n: the registry may be freed first */
    o->buf = NULL;
}

void nn_adamw_init(nn_adamw *o, nn_params *p, float lr)
{
    memset(o, 0, sizeof *o);
    o->params = p;
    o->lr = lr;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->weight_decay = 0.01f;
    o->m = state(p);
    o->v = state(p);
    o->no_decay = nn_check_alloc(calloc((size_t)(p->n ? p->n : 1), sizeof *o->no_decay));
    o->n = p->n;
}

int nn_adamw_decay_groups(nn_adamw *o)
{
    int decayed = 0;
    for (int i = 0; i < o->n; i++) {
        const ag_tensor *t = o->params->items[i];
        o->no_decay[i] = t->ndim < 2 || (o->params->flags[i] & NN_PARAM_EMBEDDING);
        decayed += !o->no_decay[i];
    }
    return decayed;
}

bool nn_adamw_set_decay(nn_adamw *o, const char *name, bool decay)
{
    int i = nn_params_index(o->params, nn_params_find(o->params, name));
    if (i < 0 || i >= o->n)
        return false;
    o->no_decay[i] = !decay;
    return true;
}

void nn_adamw_step(nn_adamw *o)
{
    o->step++;
    /* bias corrections in double: beta^step underflows gracefully and matches torch's Python floats */
    double bc1 = 1.0 - pow((double)o->beta1, (double)o->step);
    double bc2 = 1.0 - pow((double)o->beta2, (double)o->step);
    float step_size = (float)(o->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - o->lr * o->weight_decay;
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    for (int i = 0; i < o->params->n; i++) {
        ag_tensor *t = o->params->items[i];
        if (!t->grad)
            continue;
        update_args a = {.w = t->data, .g = t->grad, .m = o->m[i], .v = o->v[i],
                         .decay = o->no_decay[i] ? 1.0f : decay,
                         .b1 = b1, .b2 = b2, .eps = eps, .step_size = step_size,
                         .bc2_sqrt = bc2_sqrt};
        over_range(t->numel, adamw_range, &a);
    }
}

void nn_adamw_free(nn_adamw *o)
{
    free_state(o->m, o->n); /* not params->n: the registry may be freed first */
    free_state(o->v, o->n);
    free(o->no_decay);
    o->m = o->v = NULL;
    o->no_decay = NULL;
}
