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
    for (int i = 0; i < p->n_alias; i++)
        if (strcmp(p->alias[i], name) == 0)
            return p->alias_of[i];
    return NULL;
}

int nn_params_index(const nn_params *p, const ag_tensor *t)
{
    for (int i = 0; i < p->n; i++)
        if (p->items[i] == t)
            return i;
    return -1;
}

/* prefix + "." + name (or name alone) into full, n bytes, if that fits and no
 * parameter or tied name of p has it; else false after ag_error. */
static bool new_name(const nn_params *p, char *full, size_t n, const char *prefix,
                     const char *name, const char *who)
{
    int len = prefix && *prefix ? snprintf(full, n, "%s.%s", prefix, name)
                                : snprintf(full, n, "%s", name);
    if (len < 0 || (size_t)len >= n) {
        ag_error("%s: name \"%s.%s\" is longer than %zu bytes", who, prefix, name, n - 1);
        return false;
    }
    if (nn_params_find(p, full)) {
        ag_error("%s: a parameter named \"%s\" is already registered", who, full);
        return false;
    }
    return true;
}

ag_tensor *nn_param(nn_params *p, const char *prefix, const char *name, int ndim,
                    const int64_t *shape)
{
    char full[256];
    if (!new_name(p, full, sizeof full, prefix, name, "nn_param"))
        return NULL;
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 32;
        p->items = nn_check_alloc(realloc(p->items, (size_t)p->cap * sizeof *p->items));
        p->flags = nn_check_alloc(realloc(p->flags, (size_t)p->cap * sizeof *p->flags));
    }
    ag_tensor *t = ag_param(full, ndim, shape);
    if (t) {
        p->flags[p->n] = 0;
        p->items[p->n++] = t;
    }
    return t;
}

bool nn_params_tie(nn_params *p, const char *prefix, const char *name, ag_tensor *t)
{
    char full[256];
    if (nn_params_index(p, t) < 0) {
        ag_error("nn_params_tie: the tensor tied as \"%s\" is not a parameter of this registry",
                 name);
        return false;
    }
    if (!new_name(p, full, sizeof full, prefix, name, "nn_params_tie"))
        return false;
    if (p->n_alias == p->alias_cap) {
        p->alias_cap = p->alias_cap ? 2 * p->alias_cap : 4;
        p->alias = nn_check_alloc(realloc(p->alias, (size_t)p->alias_cap * sizeof *p->alias));
        p->alias_of =
            nn_check_alloc(realloc(p->alias_of, (size_t)p->alias_cap * sizeof *p->alias_of));
    }
    size_t len = strlen(full) + 1;
    p->alias[p->n_alias] = memcpy(nn_check_alloc(malloc(len)), full, len);
    p->alias_of[p->n_alias++] = t;
    return true;
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
    free(p->flags);
    for (int i = 0; i < p->n_alias; i++)
        free(p->alias[i]);
    free(p->alias);
    free(p->alias_of);
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
