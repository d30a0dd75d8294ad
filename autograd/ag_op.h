/* ag_op.h - writing your own op: the op record, a recorded output, what a
 * backward reads (the output's inputs and saved state, grads), and the
 * thread pool. Users of the built-in ops need only ag.h.
 *
 * An op is a forward function and a backward. The forward checks its inputs,
 * makes its output with ag_result and fills out->data; ag_save keeps what the
 * backward needs. The backward reads out->grad and adds each input's share
 * into ag_grad_of(ctx, ag_input(out, i)), which is NULL for an input that
 * needs no grad. y = x * x, with its backward dx += 2 x g:
 *
 *   static void square_backward(ag_ctx *ctx, ag_tensor *out)
 *   {
 *       ag_tensor *x = ag_input(out, 0);
 *       float *gx = ag_grad_of(ctx, x);
 *       for (int64_t i = 0; gx && i < x->numel; i++)
 *           gx[i] += 2.0f * x->data[i] * out->grad[i];
 *   }
 *   static const ag_op square_op = {"square", square_backward, AG_IN(0)};
 *
 *   ag_tensor *square(ag_ctx *c, ag_tensor *x)
 *   {
 *       if (!ag_check_inputs("square", &x, 1))
 *           return NULL;
 *       ag_tensor *y = ag_result(c, &square_op, &x, 1, x->ndim, x->shape);
 *       for (int64_t i = 0; y && i < x->numel; i++)
 *           y->data[i] = x->data[i] * x->data[i];
 *       return y;
 *   }
 *
 * Check it with ag_gradcheck (ag.h), as tests/test_custom_op.c does.
 */
#ifndef AG_OP_H
#define AG_OP_H

#include "ag.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An op: its name (for errors and graphs) and its backward, called once per
 * backward pass with out->grad set; it adds into its inputs' grads.
 * reads says which data the backward reads: AG_IN(i) for input i's, AG_OUT
 * for the output's, AG_NO_DATA for none (it needs only grads and what the op
 * saved). Data that no backward reads can be freed early by ag_release.
 * Left 0, it means everything: the safe choice when unsure. */
struct ag_op {
    const char *name;
    void (*backward)(ag_ctx *ctx, ag_tensor *out);
    uint32_t reads;
};

#define AG_IN(i) (1u << ((i) < 29 ? (i) : 29)) /* inputs from 29 on share a bit */
#define AG_ALL_IN 0x3fffffffu
#define AG_OUT (1u << 30)
#define AG_NO_DATA (1u << 31)

/* ---------------------------------------------------------------- forward */

/* Reports the error for the first input that was given to ag_release or
 * died with its ctx's reset, naming op; false then, and false without a
 * report for a NULL input (an earlier op failed and reported). */
AG_API bool ag_check_inputs(const char *op, ag_tensor *const *inputs, int ninputs);
/* A new output of the given shape in ctx's arena (data not initialized),
 * recorded as op over inputs when gradients are on and any input requires
 * grad. NULL after a report when the shape is bad. */
AG_API ag_tensor *ag_result(ag_ctx *ctx, const ag_op *op, ag_tensor *const *inputs, int ninputs,
                            int ndim, const int64_t *shape);
/* Keeps a copy of the bytes at attr (the op's attributes: a scalar, an axis,
 * a struct of them) in ctx's arena as out's saved state, for its backward.
 * Only when out was recorded: returns the copy, or NULL when no backward will
 * run (then nothing is kept). Memory the op fills itself (statistics of the
 * forward) comes from ag_ctx_alloc; save a pointer to it. */
AG_API void *ag_save(ag_ctx *ctx, ag_tensor *out, const void *attr, size_t bytes);

/* ---------------------------------------------------------------- backward */

/* The op that made t, NULL for a leaf or an output made with gradients off. */
AG_API const ag_op *ag_op_of(const ag_tensor *t);
/* The inputs out was recorded over: how many, and input i (0 <= i < n). */
AG_API int ag_num_inputs(const ag_tensor *out);
AG_API ag_tensor *ag_input(const ag_tensor *out, int i);
/* What ag_save kept for out; NULL if nothing. */
AG_API void *ag_saved(const ag_tensor *out);
/* Inside a backward: the grad buffer of t (t's shape), allocated and zeroed
 * on first use, to add into; NULL when t does not require grad (skip it). */
AG_API float *ag_grad_of(ag_ctx *ctx, ag_tensor *t);

/* ---------------------------------------------------------------- threads */

/* Runs fn(lo, hi, user) over [0, n) split into contiguous, disjoint ranges,
 * one per thread of the pool (ag_set_num_threads), each at least
 * min_per_thread long: below 2 * min_per_thread, or inside another parallel
 * region, it is one call fn(0, n, user) on the calling thread. Returns when
 * every range is done. Ranges must write disjoint memory; pick
 * min_per_thread so a range is worth waking a thread for (the built-in
 * elementwise ops use 16384 elements past 32768). The ranges depend only on
 * n, min_per_thread and the thread count; while other processes hold the
 * cores they run on fewer threads (down to all on the calling thread). */
AG_API void ag_parallel_for(int64_t n, int64_t min_per_thread,
                            void (*fn)(int64_t lo, int64_t hi, void *user), void *user);

#ifdef __cplusplus
}
#endif
#endif
