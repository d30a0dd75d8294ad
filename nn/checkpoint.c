/* checkpoint.c - parameters and AdamW state in and out of safetensors files. */
#include "nn.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define OPT_PREFIX "optimizer."

void nn_st_add_params(nn_st_writer *w, const nn_params *p)
{
    for (int i = 0; i < p->n; i++)
        nn_st_add(w, p->items[i]->name, p->items[i]->data, p->items[i]->ndim, p->items[i]->shape);
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

/* name is there with t's shape, as F32, and every value finite */
static bool check(const nn_st *f, const char *name, const ag_tensor *t, char *err, size_t errlen)
{
    return nn_st_check(f, name, t->ndim, t->shape, err, errlen) && nn_st_finite(f, name, err, errlen);
}

bool nn_load_params(const nn_st *f, nn_params *p, char *err, size_t errlen)
{
    for (int i = 0; i < p->n; i++) {
        const ag_tensor *t = p->items[i];
        if (!check(f, t->name, t, err, errlen))
            return false;
    }
    for (int i = 0; i < nn_st_count(f); i++) {
        const char *name = nn_st_name(f, i);
        if (strncmp(name, OPT_PREFIX, strlen(OPT_PREFIX)) != 0 && !nn_params_find(p, name)) {
            snprintf(err, errlen, "tensor \"%s\" in the file is not a parameter of this model", name);
            return false;
        }
    }
    for (int i = 0; i < p->n; i++) {
        ag_tensor *t = p->items[i];
        nn_st_read(f, t->name, t->data, t->ndim, t->shape, err, errlen);
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
