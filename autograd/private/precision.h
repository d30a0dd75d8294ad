/* precision.h - what the products need for ag_set_precision's bf16: the
 * operands their backward reads, kept as bf16 copies (precision.c). */
#ifndef AG_PRECISION_H
#define AG_PRECISION_H

#include "internal.h"
#include "bf16.h"

/* Whether ops recorded in ctx now run their products in bf16. */
static inline bool ag_bf16_on(const ag_ctx *ctx) { return ctx->precision == AG_BF16; }

/* t's data rounded to bf16, in ctx's arena until the next reset: made once
 * per tensor and step, and shared by every op that asks (the per-head q, k,
 * v linears all read one LayerNorm output). */
const ag_bf16 *ag_bf16_copy(ag_ctx *ctx, const ag_tensor *t);

/* Whether a bf16 product's backward should read t's FP32 data rather than
 * a bf16 copy: t is persistent (a parameter: no copy per step), or a
 * recorded backward reads its data already (it stays in memory anyway, and
 * a copy would only add to it). Otherwise the copy lets ag_release free t. */
bool ag_bf16_reads_fp32(const ag_tensor *t);

/* One operand of a bf16 product: FP32 data (rounded as read) or a bf16 copy. */
typedef struct {
    const void *p;
    bool h; /* p holds ag_bf16 */
} ag_operand;

/* The operand off elements further on. */
static inline ag_operand ag_operand_at(ag_operand x, int64_t off)
{
    return (ag_operand){x.h ? (const void *)((const ag_bf16 *)x.p + off)
                            : (const void *)((const float *)x.p + off), x.h};
}

/* t's operand for a product recorded now: with record (its backward runs)
 * the bf16 copy unless ag_bf16_reads_fp32(t), else t's FP32 data. */
ag_operand ag_bf16_operand(ag_ctx *ctx, const ag_tensor *t, bool record);

#endif
