/* params.c - the named parameter registry, grad norms and clipping. */
#include "nn.h"
#include "private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void nn_params_init(nn_params *p) { memset(p, 0, sizeof *p); }

ag_tensor *nn_params_find(const nn_params *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->items[i]->name, name) == 0)
            return p->items[i];
    return NULL;
}

ag_tensor *nn_param(nn_params *p, const char *prefix, const char *name, int ndim,
                    const int64_t *shape)
{
    char full[256];
    int len = prefix && *prefix ? snprintf(full, sizeof full, "%s.%s", prefix, name)
                                : snprintf(full, sizeof full, "%s", name);
    if (len < 0 || (size_t)len >= sizeof full) {
        ag_error("nn_param: name \"%s.%s\" is longer than %zu bytes", prefix, name, sizeof full - 1);
        return NULL;
    }
    if (nn_params_find(p, full)) {
        ag_error("nn_param: a parameter named \"%s\" is already registered", full);
        return NULL;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 32;
        p->items = nn_check_alloc(realloc(p->items, (size_t)p->cap * sizeof *p->items));
    }
    ag_tensor *t = ag_param(full, ndim, shape);
    if (t)
        p->items[p->n++] = t;
    return t;
}

int64_t nn_params_numel(const nn_params *p)
{
    int64_t n = 0;
    for (int i = 0; i < p->n; i++)
        n += p->items[i]->numel;
    return n;
}

void nn_params_zero_grad(nn_params *p)
{
    for (int i = 0; i < p->n; i++)
        ag_zero_grad(p->items[i]);
}

void nn_params_free(nn_params *p)
{
    for (int i = 0; i < p->n; i++)
        ag_tensor_free(p->items[i]);
    free(p->items);
    memset(p, 0, sizeof *p);
}

float nn_clip_grad_norm(nn_params *p, float max_norm)
{
    double ss = 0;
    for (int i = 0; i < p->n; i++) {
        const ag_tensor *t = p->items[i];
        if (t->grad)
            for (int64_t k = 0; k < t->numel; k++)
                ss += (double)t->grad[k] * t->grad[k];
    }
    float norm = (float)sqrt(ss);
    /* torch adds 1e-6 to the norm before dividing */
    if (norm > max_norm) {
        float s = max_norm / (norm + 1e-6f);
        for (int i = 0; i < p->n; i++) {
            ag_tensor *t = p->items[i];
            if (t->grad)
                for (int64_t k = 0; k < t->numel; k++)
                    t->grad[k] *= s;
        }
    }
    return norm;
}

bool nn_grads_finite(const nn_params *p, const char **bad)
{
    for (int i = 0; i < p->n; i++) {
        const ag_tensor *t = p->items[i];
        if (!t->grad)
            continue;
        for (int64_t k = 0; k < t->numel; k++)
            if (!isfinite(t->grad[k])) {
                if (bad)
                    *bad = t->name;
                return false;
            }
    }
    return true;
}
