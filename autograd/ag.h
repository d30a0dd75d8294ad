/* ag.h - the autograd engine's public header for users of its ops; ag_op.h
 * adds what writing an op takes.
 *
 * Tensors are contiguous row-major float32 arrays of up to AG_MAX_DIMS dims.
 * Ops run eagerly and, while gradients are enabled, record themselves on their
 * output; ag_backward() walks that graph in reverse topological order.
 *
 * Memory: every op allocates its output (and whatever it saves for backward)
 * from an ag_ctx arena; ag_ctx_reset() drops all of it in O(1). Tensors made
 * with a NULL ctx (parameters, fixed inputs) persist until ag_tensor_free().
 *
 * Errors: a programmer error (shape mismatch, bad axis, index out of range)
 * goes to one overridable handler with a message naming the op and the
 * shapes. The default handler prints it and aborts. If a handler returns, the
 * failing op returns NULL, and ops given a NULL input return NULL silently.
 *
 * Conventions, the same in every function:
 * - ctx first; a NULL ctx makes a persistent tensor (constructors only).
 * - An array is followed by its length: (shape..., ndim) pairs come as
 *   (ndim, shape), tensor and size arrays as (ts, n) or (sizes, n); an axis
 *   comes after them, outputs last: ag_concat(c, ts, n, axis),
 *   ag_split(c, a, sizes, n, axis, out), ag_permute(c, a, perm, n).
 * - Randomness comes from an explicit ag_rng, or, given NULL, from the ctx's
 *   generator (ag_ctx_manual_seed); nothing else is random.
 * - A tensor made in a ctx dies at ag_ctx_reset, and one given to ag_release
 *   is gone too: every function that takes a tensor (ops, ag_item, ag_print,
 *   ag_backward) reports it. The check reads the tensor's header, which a
 *   reset arena may have reused, so it is a best effort; reading ->data after
 *   that is undefined. The -Darena_debug=true build frees the memory at each
 *   reset, so AddressSanitizer catches every such use.
 *
 * Global state: the thread count (ag_set_num_threads) and the error handler.
 * A ctx and the tensors made in it belong to one thread at a time; the
 * kernels use OpenMP threads inside each op.
 */
#ifndef AG_H
#define AG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AG_VERSION "0.1.0"
#define AG_MAX_DIMS 6

/* Marks what the shared library exports; it is built with hidden visibility,
 * so nothing else is. */
#if defined(__GNUC__) || defined(__clang__)
#define AG_API __attribute__((visibility("default")))
#else
#define AG_API
#endif

typedef struct ag_ctx ag_ctx;
typedef struct ag_tensor ag_tensor;
typedef struct ag_op ag_op;

/* A small seedable generator (splitmix64 counter). Same seed, same numbers. */
typedef struct {
    uint64_t seed;
    uint64_t counter;
} ag_rng;

/* AG_SHAPE(2, 3) expands to the (ndim, shape) argument pair "2, (int64_t[]){2, 3}";
 * it takes at least one size. AG_SCALAR is the pair of a 0-dim tensor. */
#define AG_SHAPE(...)                                                        \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),               \
        (const int64_t[]){__VA_ARGS__}
#define AG_SCALAR 0, (const int64_t *)NULL

/* ---------------------------------------------------------------- tensors */

/* A tensor as users see it. The engine keeps its own state (the op that
 * made it, its inputs, ownership) past the end of this struct, in the same
 * allocation: tensors are made only by the functions below, never declared
 * by value. data and grad may be read and written; the rest is read-only. */
struct ag_tensor {
    int ndim;                       /* 0 for a scalar */
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    float *data;                    /* numel floats, row-major */
    float *grad;                    /* NULL until a backward reaches it */
    const char *name;               /* parameter name, or NULL */
};

/* Integer index arrays, for embedding lookups and class targets. */
typedef struct {
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    int32_t *data;
} ag_index;

/* New tensor of the given shape; with ctx NULL it is persistent (free it
 * with ag_tensor_free), otherwise it lives in ctx's arena. */
AG_API ag_tensor *ag_empty(ag_ctx *ctx, int ndim, const int64_t *shape);
AG_API ag_tensor *ag_zeros(ag_ctx *ctx, int ndim, const int64_t *shape);
AG_API ag_tensor *ag_ones(ag_ctx *ctx, int ndim, const int64_t *shape);
AG_API ag_tensor *ag_full(ag_ctx *ctx, float value, int ndim, const int64_t *shape);
/* Copies numel floats from data. */
AG_API ag_tensor *ag_from_data(ag_ctx *ctx, const float *data, int ndim, const int64_t *shape);
/* 0-dim tensor holding v. */
AG_API ag_tensor *ag_scalar(ag_ctx *ctx, float v);
/* Uniform in [lo, hi) / normal(mean, std), drawn from rng, or from ctx's generator
 * (ag_ctx_manual_seed) when rng is NULL, as torch.rand's generator= argument. With
 * ctx NULL the tensor is persistent and rng is required. */
AG_API ag_tensor *ag_rand(ag_ctx *ctx, ag_rng *rng, float lo, float hi, int ndim,
                          const int64_t *shape);
AG_API ag_tensor *ag_randn(ag_ctx *ctx, ag_rng *rng, float mean, float std, int ndim,
                           const int64_t *shape);
/* Persistent leaf that requires grad and carries a name (copied); zeroed. */
AG_API ag_tensor *ag_param(const char *name, int ndim, const int64_t *shape);
/* Frees a persistent tensor (its data, grad and name); no-op for NULL. */
AG_API void ag_tensor_free(ag_tensor *t);

/* Whether gradients flow to t: set on leaves by ag_set_requires_grad (a
 * non-leaf is an error there), on op outputs when any input requires grad. */
AG_API bool ag_requires_grad(const ag_tensor *t);
AG_API void ag_set_requires_grad(ag_tensor *t, bool on);
/* The ctx whose arena holds t; NULL for a persistent tensor. */
AG_API ag_ctx *ag_tensor_ctx(const ag_tensor *t);
/* Keep a non-leaf's grad after backward (leaves always keep theirs). */
AG_API void ag_retain_grad(ag_tensor *t);
/* Sets t's grad to zero (allocating it if it has none). */
AG_API void ag_zero_grad(ag_tensor *t);
/* Value of a one-element tensor. */
AG_API float ag_item(const ag_tensor *t);
/* "(2, 3, 4)" into buf; returns buf. */
AG_API char *ag_shape_str(const ag_tensor *t, char *buf, size_t n);
/* The same for a shape given as (ndim, shape), with no tensor. */
AG_API char *ag_fmt_shape(int ndim, const int64_t *shape, char *buf, size_t n);
AG_API bool ag_same_shape(const ag_tensor *a, const ag_tensor *b);
/* Writes t as a nested list with its shape to f. */
AG_API void ag_print(FILE *f, const ag_tensor *t);

AG_API ag_index *ag_index_new(ag_ctx *ctx, const int32_t *data, int ndim, const int64_t *shape);
AG_API void ag_index_free(ag_index *ix); /* persistent (ctx NULL) index arrays only */
                          
                          /* ---------------------------------------------------------------- fills */
                          
                          AG_API ag_rng ag_rng_new(uint64_t seed);
AG_API uint64_t ag_rng_next(ag_rng *r);
AG_API float ag_rng_uniform(ag_rng *r);                /* [0, 1) */
                            AG_API float ag_rng_normal(ag_rng *r);                 /* N(0, 1) */
                            AG_API void ag_fill(ag_tensor *t, float v);
AG_API void ag_fill_uniform(ag_tensor *t, ag_rng *r, float lo, float hi);
AG_API void ag_fill_normal(ag_tensor *t, ag_rng *r, float mean, float std);

/* ---------------------------------------------------------------- context */

AG_API ag_ctx *ag_ctx_new(void);
AG_API void ag_ctx_free(ag_ctx *ctx);
/* Drops every tensor made in ctx since the last reset, in O(1). */
AG_API void ag_ctx_reset(ag_ctx *ctx);
/* Gradients on (default) or off: with them off, nothing is recorded or saved. */
AG_API void ag_set_grad_enabled(ag_ctx *ctx, bool on);
AG_API bool ag_grad_enabled(const ag_ctx *ctx);
/* Seeds ctx's generator (dropout, ag_rand/ag_randn with a ctx). */
AG_API void ag_ctx_manual_seed(ag_ctx *ctx, uint64_t seed);
AG_API ag_rng *ag_ctx_rng(ag_ctx *ctx);
/* Arena bytes in use now, and the most since ctx was made. */
AG_API size_t ag_ctx_bytes_used(const ag_ctx *ctx);
AG_API size_t ag_ctx_bytes_peak(const ag_ctx *ctx);
/* Scratch memory from ctx's arena, 64-byte aligned; gone at the next reset. */
AG_API void *ag_ctx_alloc(ag_ctx *ctx, size_t bytes);

/* ---------------------------------------------------------------- precision */

/* What the products (matmul, matmul_nt, linear, attention, attention_qkv) compute in. */
typedef enum { AG_FP32 = 0, AG_BF16 = 1 } ag_precision;
/* The precision of the products ctx runs from now on, as torch.autocast: AG_BF16 rounds
 * their operands to bfloat16 (nearest even) and sums in FP32, forward and backward; an
 * input their backward reads is kept as a bf16 copy (made once per tensor and step), so
 * ag_release frees its FP32 data, and ag_attention recomputes P in backward instead of
 * keeping it. Their outputs and grads, and every other op, stay FP32. An op's backward
 * uses the precision it was recorded with. Default AG_FP32. */
AG_API void ag_set_precision(ag_ctx *ctx, ag_precision p);
AG_API ag_precision ag_get_precision(const ag_ctx *ctx);
/* "fp32" or "bf16". */
AG_API const char *ag_precision_name(ag_precision p);
/* name ("fp32" or "bf16") into *p; false, *p untouched, for any other name. */
AG_API bool ag_precision_from_name(const char *name, ag_precision *p);
/* What runs the bf16 products: "avx512_bf16" where the CPU has it, else "emulated". */
AG_API const char *ag_bf16_kernel(void);

/* ---------------------------------------------------------------- graph */

/* d(loss)/d(every tensor that requires grad). loss must have one element;
 * for any other shape use ag_backward_with. Leaf grads accumulate across
 * calls until zeroed; non-leaf grads are rebuilt by each call and dropped
 * afterwards unless retained. Returns false (after reporting) on error. */
AG_API bool ag_backward(ag_ctx *ctx, ag_tensor *loss);
/* Same, seeding d(out) = grad_out (same shape as out). */
AG_API bool ag_backward_with(ag_ctx *ctx, ag_tensor *out, const ag_tensor *grad_out);
/* A promise not to use t again (as an op input, or its data): its memory
 * goes back to ctx for the step's later tensors as soon as no recorded
 * backward needs it. Layers call it on their intermediates, which keeps a
 * training step's peak memory near what backward really needs. Persistent
 * tensors are left alone. Using t afterwards is an error. */
AG_API void ag_release(ag_ctx *ctx, ag_tensor *t);
/* Writes the graph that made t as Graphviz DOT (ops, shapes, parameter names). */
AG_API void ag_write_dot(FILE *f, const ag_tensor *t);
AG_API bool ag_save_dot(const char *path, const ag_tensor *t);

/* ---------------------------------------------------------------- errors */

typedef void (*ag_error_handler)(const char *message, void *user);
/* A handler and the user pointer it is called with; fn NULL is the default
 * (print to stderr, abort). */
typedef struct {
    ag_error_handler fn;
    void *user;
} ag_error_hook;
/* Installs h with user (h NULL: the default). Returns the hook it replaces,
 * so ag_set_error_handler(old.fn, old.user) restores it exactly. */
AG_API ag_error_hook ag_set_error_handler(ag_error_handler h, void *user);
/* Reports a printf-style message through the handler. */
AG_API void ag_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------------------------------------------------------- threads */

/* Threads for every kernel (and the BLAS). Default: OpenMP's default. An op
 * too small to split runs on the calling thread; the others use the pool,
 * at most one thread per CPU. Results depend only on this count, never on
 * how many threads ran or on the machine's load. */
AG_API void ag_set_num_threads(int n);
AG_API int ag_get_num_threads(void);
/* Threads the ops may use now: ag_get_num_threads() (at most the CPUs), fewer
 * while other processes hold the cores and the threads would wait on them. */
AG_API int ag_threads_in_use(void);
/* The matmul kernel in use: "openblas:<OpenBLAS's kernel>" (e.g. "openblas:Zen"),
 * "cblas", or "builtin:avx512" / "builtin:avx2" / "builtin:generic". By default
 * the BLAS, unless its kernel is below the CPU's ISA (said once on stderr);
 * the environment variable AG_MATMUL (same names as below) sets the default. */
AG_API const char *ag_matmul_backend(void);
/* Forces the matmul kernel: "blas", "builtin" (the best this CPU runs),
 * "builtin:avx512", "builtin:avx2", "builtin:generic", "auto", or a name
 * ag_matmul_backend returned. false (and nothing changed) when this build or
 * CPU lacks it. Not while matmuls run. */
AG_API bool ag_set_matmul_backend(const char *name);

/* ---------------------------------------------------------------- ops
 * Binary elementwise ops broadcast as NumPy does: (3,1,4) + (5,4) -> (3,5,4). */

AG_API ag_tensor *ag_add(ag_ctx *c, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_sub(ag_ctx *c, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_mul(ag_ctx *c, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_div(ag_ctx *c, ag_tensor *a, ag_tensor *b);
/* Elementwise max / min, as torch.maximum / torch.minimum: NaN if either is NaN; at a
 * tie each input gets half the grad. */
AG_API ag_tensor *ag_maximum(ag_ctx *c, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_minimum(ag_ctx *c, ag_tensor *a, ag_tensor *b);
/* cond != 0 ? a : b elementwise, cond, a and b broadcast together (torch.where); cond
 * (no grad, NaN counts as true) is read once, in the forward. */
AG_API ag_tensor *ag_where(ag_ctx *c, const ag_tensor *cond, ag_tensor *a, ag_tensor *b);

/* Elementwise, shape kept. */
AG_API ag_tensor *ag_add_scalar(ag_ctx *c, ag_tensor *a, float s);   /* a + s */
                                AG_API ag_tensor *ag_mul_scalar(ag_ctx *c, ag_tensor *a, float s);   /* a * s */
                                AG_API ag_tensor *ag_pow_scalar(ag_ctx *c, ag_tensor *a, float p);   /* a ^ p */
                                AG_API ag_tensor *ag_neg(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_exp(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_log(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_sqrt(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_rsqrt(ag_ctx *c, ag_tensor *a);                  /* 1 / sqrt(a) */
                           AG_API ag_tensor *ag_relu(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_gelu(ag_ctx *c, ag_tensor *a);                   /* tanh approximation */
                          AG_API ag_tensor *ag_tanh(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_sigmoid(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_abs(ag_ctx *c, ag_tensor *a);        /* |a|; the grad is g sign(a), 0 at 0 */
AG_API ag_tensor *ag_sin(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_cos(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_silu(ag_ctx *c, ag_tensor *a);       /* a * sigmoid(a) */
/* log(1 + e^a), and a itself above 20: torch's softplus with beta 1, threshold 20. */
AG_API ag_tensor *ag_softplus(ag_ctx *c, ag_tensor *a);
/* The exact gelu, a * Phi(a) = 0.5 a (1 + erf(a / sqrt 2)): torch's approximate='none'
 * (ag_gelu is approximate='tanh'). */
AG_API ag_tensor *ag_gelu_erf(ag_ctx *c, ag_tensor *a);
/* min(max(a, lo), hi), as torch.clamp: either bound may be -INFINITY / INFINITY, hi wins
 * when lo > hi, NaN stays NaN; the grad passes where lo <= a <= hi, else 0. */
AG_API ag_tensor *ag_clamp(ag_ctx *c, ag_tensor *a, float lo, float hi);

/* Reductions over one axis (negative counts from the end); keepdim keeps it as size 1. */
AG_API ag_tensor *ag_sum(ag_ctx *c, ag_tensor *a, int axis, bool keepdim);
AG_API ag_tensor *ag_mean(ag_ctx *c, ag_tensor *a, int axis, bool keepdim);
/* Max over axis; the grad goes to the first maximum. */
AG_API ag_tensor *ag_max(ag_ctx *c, ag_tensor *a, int axis, bool keepdim);
/* Over all elements -> 0-dim. */
AG_API ag_tensor *ag_sum_all(ag_ctx *c, ag_tensor *a);
AG_API ag_tensor *ag_mean_all(ag_ctx *c, ag_tensor *a);
/* Variance over axis, as torch.var(a, axis, unbiased, keepdim): the sum of squared
 * deviations from the mean over n - 1 (unbiased) or n; NaN when that is 0. */
AG_API ag_tensor *ag_var(ag_ctx *c, ag_tensor *a, int axis, bool unbiased, bool keepdim);
/* Running sum along axis, shape kept: out[..., k, ...] = sum of a[..., :k+1, ...]. */
AG_API ag_tensor *ag_cumsum(ag_ctx *c, ag_tensor *a, int axis);

/* Shape ops. reshape takes one -1 to infer; it shares a's data (a view). */
AG_API ag_tensor *ag_reshape(ag_ctx *c, ag_tensor *a, int ndim, const int64_t *shape);
AG_API ag_tensor *ag_transpose(ag_ctx *c, ag_tensor *a, int axis0, int axis1);
/* out.shape[i] = a.shape[perm[i]]; n (the length of perm) must equal a's ndim. */
AG_API ag_tensor *ag_permute(ag_ctx *c, ag_tensor *a, const int *perm, int n);
/* Joins n tensors along axis; all other dims equal. */
AG_API ag_tensor *ag_concat(ag_ctx *c, ag_tensor *const *ts, int n, int axis);
/* a[..., start:end, ...] along axis (negative start/end count from the end);
 * a view sharing a's data when every dim before axis has size 1. */
AG_API ag_tensor *ag_slice(ag_ctx *c, ag_tensor *a, int axis, int64_t start, int64_t end);
/* Splits a along axis into n pieces of sizes[i] (summing to the axis size), into out[n];
 * as torch.split(a, sizes, axis). */
AG_API bool ag_split(ag_ctx *c, ag_tensor *a, const int64_t *sizes, int n, int axis,
                     ag_tensor **out);
/* torch.chunk: a split along axis into pieces of ceil(size / chunks), the last one
 * smaller, into out[chunks]; returns how many (fewer than chunks when they run out,
 * chunks empty ones for an empty axis), -1 on error. Pieces of ag_split and ag_chunk
 * are ag_slice's: views sharing a's data when every dim before axis has size 1
 * (axis 0, or (1, T, C) split along T), copies otherwise (tensors have no strides). */
AG_API int ag_chunk(ag_ctx *c, ag_tensor *a, int chunks, int axis, ag_tensor **out);
/* Joins n tensors of one shape along a new axis (-(ndim+1) <= axis <= ndim):
 * n of (2, 3) at axis 1 -> (2, n, 3). */
AG_API ag_tensor *ag_stack(ag_ctx *c, ag_tensor *const *ts, int n, int axis);
/* torch.expand / broadcast_to: a broadcast to (ndim, shape), dims lined up from the
 * end, -1 keeping a's size. A view sharing a's data when the element count stays
 * the same (new leading dims of size 1, or none); otherwise a copy (tensors have no
 * strides to repeat data with) whose backward sums over the broadcast dims. */
AG_API ag_tensor *ag_expand(ag_ctx *c, ag_tensor *a, int ndim, const int64_t *shape);
/* A new tensor sharing a's data that needs no grad and is not recorded
 * (torch.Tensor.detach): no gradient flows back through it. */
AG_API ag_tensor *ag_detach(ag_ctx *c, ag_tensor *a);

/* (..., M, K) @ (..., K, N) -> (..., M, N), batch dims broadcast; both at least 2-D. */
AG_API ag_tensor *ag_matmul(ag_ctx *c, ag_tensor *a, ag_tensor *b);
/* a @ b^T: (..., M, K) @ (..., N, K)^T -> (..., M, N); Linear's x @ W^T, attention's q @ k^T. */
AG_API ag_tensor *ag_matmul_nt(ag_ctx *c, ag_tensor *a, ag_tensor *b);

/* x @ w^T + bias, as torch.nn.functional.linear: (..., in) @ (out, in)^T + (out) -> (..., out),
 * and (in) -> (out) for a 1-D x; bias may be NULL. One op: the bias is the GEMM's starting
 * value, not a second pass. */
AG_API ag_tensor *ag_linear(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *bias);

/* a where mask == 0, value where mask != 0; mask (no grad) broadcasts to a. */
AG_API ag_tensor *ag_masked_fill(ag_ctx *c, ag_tensor *a, const ag_tensor *mask, float value);
/* (..., T, S): entries with column > row get value (-INFINITY for attention). */
AG_API ag_tensor *ag_causal_mask(ag_ctx *c, ag_tensor *a, float value);

/* Over one axis, stable for large logits. */
AG_API ag_tensor *ag_softmax(ag_ctx *c, ag_tensor *a, int axis);
AG_API ag_tensor *ag_log_softmax(ag_ctx *c, ag_tensor *a, int axis);
/* Mean over rows n with targets[n] != ignore_index of -log softmax(logits)[n, targets[n]]:
 * (N, C) logits, (N) targets -> 0-dim. Pass ignore_index -100 as PyTorch does. */
AG_API ag_tensor *ag_cross_entropy(ag_ctx *c, ag_tensor *logits, const ag_index *targets,
                                   int ignore_index);

/* weight (V, C) gathered by idx (...) -> (..., C); repeated indices add their grads. */
AG_API ag_tensor *ag_embedding(ag_ctx *c, ag_tensor *weight, const ag_index *idx);

/* torch.nn.functional.layer_norm over the last axis, one op: x (..., C), weight (C),
 * bias (C) -> (..., C) = (x - mean) / sqrt(var + eps) * weight + bias per row, var
 * biased; the same function as composing mean, sub, mul, mean, add_scalar, rsqrt,
 * mul, mul, add. */
AG_API ag_tensor *ag_layer_norm(ag_ctx *c, ag_tensor *x, ag_tensor *weight, ag_tensor *bias,
                                float eps);
/* RMSNorm over the last axis, one op: x (..., C), weight (C) or NULL -> (..., C)
 * = x / sqrt(mean(x^2) + eps) * weight per row; the same function as composing
 * mul, mean, add_scalar, rsqrt, mul, mul. */
AG_API ag_tensor *ag_rms_norm(ag_ctx *c, ag_tensor *x, ag_tensor *weight, float eps);

/* Causal self-attention of n_head heads packed side by side, one op:
 * qkv (B, T, 3C) holds q | k | v, each C = n_head * hs wide with head h in
 * columns h*hs.. of its part -> (B, T, C), head h's output in the same columns.
 * Per head: dropout(softmax(scale q k^T, entries above the diagonal masked)) @ v,
 * the dropout mask being ag_dropout's over the (B, n_head, T, T) weights; the
 * same function as composing matmul_nt, causal_mask, softmax, dropout, matmul. */
AG_API ag_tensor *ag_attention(ag_ctx *c, ag_tensor *qkv, int n_head, float scale, float dropout,
                               bool training);
/* Attention over separate heads, one op: q (B, H, T, hs), k (B, H, S, hs),
 * v (B, H, S, hv) -> (B, H, T, hv) = dropout(softmax(scale q k^T + mask)) @ v.
 * mask (no grad; an error if it requires one) is NULL or an additive float mask
 * that broadcasts to (B, H, T, S) (-INFINITY drops an entry); causal also drops
 * column s > row t, as ag_causal_mask does; the two combine. The dropout mask is
 * ag_dropout's over the (B, H, T, S) weights. The same function as composing
 * matmul_nt, mul_scalar, add, causal_mask, softmax, dropout, matmul; over
 * ag_attention's packed layout it gives ag_attention's numbers. */
AG_API ag_tensor *ag_attention_qkv(ag_ctx *c, ag_tensor *q, ag_tensor *k, ag_tensor *v,
                                   const ag_tensor *mask, bool causal, float scale,
                                   float dropout, bool training);

/* Integer indices along one axis. gather and index_select copy; their backward adds
 * each output grad back where it came from, so repeated indices add up. Indices
 * must be in [0, size of axis).
 *
 * torch.take_along_dim(a, idx, axis): out[..., k, ...] = a[..., idx[..., k, ...], ...]
 * along axis; idx has a's number of dims, and each other dim equal to a's or 1
 * (broadcast, either side) -> out of the broadcast shape with idx's size along axis.
 * That is torch.gather wherever idx's other dims equal a's. */
AG_API ag_tensor *ag_gather(ag_ctx *c, ag_tensor *a, const ag_index *idx, int axis);
/* torch.index_select: idx (m) or 0-dim picks slices of a along axis ->
 * a's shape with m there. */
AG_API ag_tensor *ag_index_select(ag_ctx *c, ag_tensor *a, const ag_index *idx, int axis);
/* Index of the first maximum along axis (a NaN counts as the maximum, as torch.argmax),
 * axis dropped or kept as 1; no grad. With ctx NULL the index is persistent
 * (ag_index_free). */
AG_API ag_index *ag_argmax(ag_ctx *c, ag_tensor *a, int axis, bool keepdim);

/* Zeroes each element with probability p and scales the rest by 1/(1-p),
 * using ctx's generator. When !training or p == 0 it returns a new view of a
 * (no copy): releasing either one leaves the other usable. 0 <= p < 1. */
AG_API ag_tensor *ag_dropout(ag_ctx *c, ag_tensor *a, float p, bool training);

/* Convolution and pooling, as torch.nn.functional's, in PyTorch's layouts:
 * (N, C, L) for the 1-d ops, (N, C, H, W) for the 2-d ones. Settings come per
 * spatial dim, [0] = H and [1] = W (the 1-d ops read [0] only); a field left
 * 0 takes PyTorch's default, so NULL or (ag_conv_opts){0} is all defaults.
 * Output size per dim: floor((in + 2 pad - dilation (k - 1) - 1) / stride) + 1. */
typedef struct {
    int stride[2];   /* 0: 1 */
    int padding[2];  /* zeros on both sides; 0: none */
    int dilation[2]; /* 0: 1 */
    int groups;      /* 0: 1; C_in and C_out both divisible by it */
} ag_conv_opts;

/* x (N, C_in, L) conv w (C_out, C_in/groups, k) + bias (C_out) -> (N, C_out, L_out);
 * bias may be NULL. Cross-correlation, as PyTorch: no kernel flip. */
AG_API ag_tensor *ag_conv1d(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *bias,
                            const ag_conv_opts *o);
/* x (N, C_in, H, W) conv w (C_out, C_in/groups, kH, kW) + bias (C_out)
 * -> (N, C_out, H_out, W_out); bias may be NULL. */
AG_API ag_tensor *ag_conv2d(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *bias,
                            const ag_conv_opts *o);

/* Pooling windows: kernel (required, >= 1), stride (0: the kernel), padding
 * (at most kernel / 2), per dim as ag_conv_opts; ceil_mode off. */
typedef struct {
    int kernel[2];
    int stride[2];
    int padding[2];
} ag_pool_opts;

/* Max over each window, padding never chosen: (N, C, L) -> (N, C, L_out) and
 * (N, C, H, W) -> (N, C, H_out, W_out); the grad goes to the window's first maximum. */
AG_API ag_tensor *ag_max_pool1d(ag_ctx *c, ag_tensor *x, const ag_pool_opts *o);
AG_API ag_tensor *ag_max_pool2d(ag_ctx *c, ag_tensor *x, const ag_pool_opts *o);
/* Mean over each window of kernel size, padding counted as zeros (PyTorch's
 * count_include_pad=True): shapes as the max pools. */
AG_API ag_tensor *ag_avg_pool1d(ag_ctx *c, ag_tensor *x, const ag_pool_opts *o);
AG_API ag_tensor *ag_avg_pool2d(ag_ctx *c, ag_tensor *x, const ag_pool_opts *o);

/* ---------------------------------------------------------------- gradcheck */

/* f maps inputs to a one-element tensor, allocating from ctx. */
typedef ag_tensor *(*ag_gradcheck_fn)(ag_ctx *ctx, ag_tensor *const *inputs, int n, void *user);

typedef struct {
    double eps;            /* step of the central differences (default 1e-2) */
    double atol, rtol;     /* pass if |analytic - numeric| <= atol + rtol * |numeric| (1e-3, 1e-3) */
    int64_t max_elementwise; /* inputs with more elements are checked by directions (default 64) */
    int n_directions;      /* random directions per large input (default 8) */
    uint64_t seed;         /* for the directions and ctx's generator in f (default 0) */
    bool quiet;            /* don't print the failure report to stderr */
    char report[512];      /* out: why the last check failed, or "" */
} ag_gradcheck_opts;

/* Defaults as documented above. */
AG_API ag_gradcheck_opts ag_gradcheck_defaults(void);
/* Compares ag_backward's gradients of f with respect to each input that
 * requires grad against fourth-order central differences of f: element by
 * element for inputs of at most max_elementwise elements, along random unit
 * directions otherwise. Inputs must be persistent (made with a NULL ctx);
 * their data is restored and their grads left zeroed. opts may be NULL. */
AG_API bool ag_gradcheck(ag_gradcheck_fn f, ag_tensor *const *inputs, int n, void *user,
                         ag_gradcheck_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
