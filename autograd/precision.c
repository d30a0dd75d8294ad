/* precision.c - the precision setting (ag_set_precision) and the bf16
 * copies the products keep for their backward. */
#include "precision.h"

void ag_set_precision(ag_ctx *c, ag_precision p) { c->precision = p == AG_BF16 ? AG_BF16 : AG_FP32; }
ag_precision ag_get_precision(const ag_ctx *c) { return c->precision == AG_BF16 ? AG_BF16 : AG_FP32; }
const char *ag_precision_name(ag_precision p) { return p == AG_BF16 ? "bf16" : "fp32"; }
const char *ag_bf16_kernel(void) { return ag_gemm_bf16_kernel(); }

bool ag_precision_from_name(const char *name, ag_precision *p)
{
    if (!name)
        return false;
    if (strcmp(name, "fp32") == 0)
        *p = AG_FP32;
    else if (strcmp(name, "bf16") == 0)
        *p = AG_BF16;
    else
        return false;
    return true;
}

typedef struct {
    const float *src;
    ag_bf16 *dst;
} convert_job;

static void convert_range(int64_t lo, int64_t hi, void *user)
{
    const convert_job *j = user;
    ag_bf16_from_f32(j->dst + lo, j->src + lo, hi - lo);
}

const ag_bf16 *ag_bf16_copy(ag_ctx *c, const ag_tensor *t)
{
    /* the entries most recently used first: a tensor read by many ops stays */
    enum { N = sizeof c->bf16_copies / sizeof *c->bf16_copies };
    int i = 0;
    while (i < N && !(c->bf16_copies[i].src == t && c->bf16_copies[i].data == t->data &&
                      c->bf16_copies[i].generation == c->generation))
        i++;
    ag_bf16 *copy;
    if (i < N) {
        copy = c->bf16_copies[i].copy;
    } else {
        copy = ag_ctx_alloc(c, (size_t)(t->numel ? t->numel : 1) * sizeof *copy);
        convert_job j = {t->data, copy};
        ag_parallel_for(t->numel, 1 << 16, convert_range, &j);
        i = N - 1;
    }
    memmove(&c->bf16_copies[1], &c->bf16_copies[0], (size_t)i * sizeof c->bf16_copies[0]);
    c->bf16_copies[0].src = t;
    c->bf16_copies[0].data = t->data;
    c->bf16_copies[0].generation = c->generation;
    c->bf16_copies[0].copy = copy;
    return copy;
}

bool ag_bf16_reads_fp32(const ag_tensor *t)
{
    const ag_node *n = ag_node_of(t);
    return !n->owner || n->saved_refs > 0;
}

ag_operand ag_bf16_operand(ag_ctx *c, const ag_tensor *t, bool record)
{
    if (!record || ag_bf16_reads_fp32(t))
        return (ag_operand){t->data, false};
    return (ag_operand){ag_bf16_copy(c, t), true};
}
