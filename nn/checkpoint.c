/* checkpoint.c - parameters and AdamW state in and out of safetensors files. */
#include "nn.h"
#include "private.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define OPT_PREFIX "optimizer."

void nn_st_add_params(nn_st_writer *w, const nn_params *p)
{
    for (int i = 0; i < p->n; i++)
        nn_st_add(w, p->items[i]->name, p->items[i]->data, p->items[i]->ndim, p->items[i]->shape);
    for (int i = 0; i < p->n_alias; i++) /* one copy of the data; the tied name as metadata */
        nn_st_add_tied(w, p->alias[i], p->alias_of[i]->name);
}

void nn_st_add_adamw(nn_st_writer *w, const nn_adamw *opt)
{
    char name[300], step[32];
    for (int i = 0; i < opt->params->n; i++) {
        const ag_tensor *t = opt->params->items[i];
        snprintf(name, sizeof name, OPT_PREFIX "exp_avg.%s", t->name);
        nn_st_add(w, name, opt->m[i], t->ndim, t->shape);
        snprintf(name, sizeof name, OPT_PREFIX "exp_avg_sq.%s", t->name);
        nn_st_add(w, name, opt->v[i], t->ndim, t->shape);
    }
    snprintf(step, sizeof step, "%" PRId64, opt->step);
    nn_st_add_meta(w, OPT_PREFIX "step", step);
}

/* The name t is found under in f: its own, else the first of its tied names
 * the file has (PyTorch tools may keep either name of a shared tensor), else
 * its own (for the "missing" message). */
static const char *name_in_file(const nn_st *f, const nn_params *p, const ag_tensor *t)
{
    if (nn_st_has(f, t->name))
        return t->name;
    for (int i = 0; i < p->n_alias; i++)
        if (p->alias_of[i] == t && nn_st_has(f, p->alias[i]))
            return p->alias[i];
    return t->name;
}

/* A file that stores a tied parameter under two names (as torch.save's
 * state_dict does) must hold the same values under both. */
static bool ties_agree(const nn_st *f, const nn_params *p, char *err, size_t errlen)
{
    for (int i = 0; i < p->n_alias; i++) {
        const ag_tensor *t = p->alias_of[i];
        const char *a = name_in_file(f, p, t), *b = p->alias[i];
        if (a == b || !nn_st_has(f, b))
            continue;
        size_t n = (size_t)t->numel ? (size_t)t->numel : 1;
        float *x = nn_check_alloc(malloc(n * sizeof *x)), *y = nn_check_alloc(malloc(n * sizeof *y));
        bool ok = nn_st_read(f, a, x, t->ndim, t->shape, err, errlen) &&
                  nn_st_read(f, b, y, t->ndim, t->shape, err, errlen);
        if (ok && memcmp(x, y, (size_t)t->numel * sizeof *x) != 0)
            ok = nn_seterr(err, errlen, "tensors \"%s\" and \"%s\" are one tied parameter of "
                           "this model but differ in the file", a, b);
        free(x);
        free(y);
        if (!ok)
            return false;
    }
    return true;
}

/* name is there with t's shape, as F32, and every value finite */
static bool check(const nn_st *f, const char *name, const ag_tensor *t, char *err, size_t errlen)
{
    return nn_st_check(f, name, t->ndim, t->shape, err, errlen) && nn_st_finite(f, name, err, errlen);
}

bool nn_load_params(const nn_st *f, nn_params *p, char *err, size_t errlen)
{
    for (int i = 0; i < p->n; i++) {
        const ag_tensor *t = p->items[i];
        if (!check(f, name_in_file(f, p, t), t, err, errlen))
            return false;
    }
    if (!ties_agree(f, p, err, errlen))
        return false;
    for (int i = 0; i < nn_st_count(f); i++) {
        const char *name = nn_st_name(f, i);
        if (strncmp(name, OPT_PREFIX, strlen(OPT_PREFIX)) != 0 && !nn_params_find(p, name)) {
            snprintf(err, errlen, "tensor \"%s\" in the file is not a parameter of this model", name);
            return false;
        }
    }
    for (int i = 0; i < p->n; i++) {
        ag_tensor *t = p->items[i];
        nn_st_read(f, name_in_file(f, p, t), t->data, t->ndim, t->shape, err, errlen);
    }
    return true;
}

bool nn_load_adamw(const nn_st *f, nn_adamw *opt, char *err, size_t errlen)
{
    const char *step = nn_st_meta(f, OPT_PREFIX "step");
    char *end = NULL;
    long long s = step ? strtoll(step, &end, 10) : -1;
    if (!step || end == step || *end || s < 0) { /* end == step: no digits ("" would read as 0) */
        snprintf(err, errlen, "no valid optimizer step in the file (metadata \"" OPT_PREFIX "step\")");
        return false;
    }
    char name[300];
    for (int pass = 0; pass < 2; pass++) /* check everything, then copy */
        for (int i = 0; i < opt->params->n; i++) {
            const ag_tensor *t = opt->params->items[i];
            snprintf(name, sizeof name, OPT_PREFIX "exp_avg.%s", t->name);
            if (pass == 0 ? !check(f, name, t, err, errlen)
                          : !nn_st_read(f, name, opt->m[i], t->ndim, t->shape, err, errlen))
                return false;
            snprintf(name, sizeof name, OPT_PREFIX "exp_avg_sq.%s", t->name);
            if (pass == 0 ? !check(f, name, t, err, errlen)
                          : !nn_st_read(f, name, opt->v[i], t->ndim, t->shape, err, errlen))
                return false;
        }
    opt->step = s;
    return true;
}
