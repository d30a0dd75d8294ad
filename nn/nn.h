/* nn.h - layers, optimizers and checkpoints built only from ag.h's public ops,
 * so every layer's gradients come out of the autograd graph.
 *
 * Parameters live in an nn_params registry under PyTorch state_dict names
 * ("blocks.0.sa.heads.1.key.weight"); a module's init takes the registry and
 * its name prefix. Forward functions take the step's ctx and, where the
 * module has dropout, whether it is training.
 *
 * Input errors (files, checkpoints) return false with a message in err;
 * programmer errors (shapes) go to ag's error handler like any op's.
 */
#ifndef NN_H
#define NN_H

#include "ag.h"

/* Marks what libagrad-nn exports (built with hidden visibility). */
#if defined(__GNUC__) || defined(__clang__)
#define NN_API __attribute__((visibility("default")))
#else
#define NN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- registry */

/* What a parameter is, for rules such as nn_adamw_default_groups': set by
 * the layer that makes it (nn_embedding_init marks its table). */
enum { NN_PARAM_EMBEDDING = 1u };

typedef struct {
    ag_tensor **items;   /* in registration order; a tied parameter once */
    unsigned *flags;     /* per item: NN_PARAM_* bits */
    int n, cap;
    /* tied names: alias[i] is a second name of the registered parameter alias_of[i] */
    char **alias;
    ag_tensor **alias_of;
    int n_alias, alias_cap;
} nn_params;

NN_API void nn_params_init(nn_params *p);
/* New zeroed parameter named prefix + "." + name (or name alone when prefix is
 * NULL or ""), registered in p. NULL (after ag_error) on a duplicate name. */
NN_API ag_tensor *nn_param(nn_params *p, const char *prefix, const char *name, int ndim,
                    const int64_t *shape);
/* Weight tying: registers prefix + "." + name as a second name of t, a
 * parameter already in p, which two layers then share (e.g. the token
 * embedding and the output head). t stays one item of p: optimizers, grad
 * norms and nn_params_numel count it once, and its grad sums both uses.
 * Checkpoints store its data once under t's name (nn_st_add_params) and
 * load from either name (nn_load_params). false (after ag_error) on a
 * duplicate name or a t not in p. */
NN_API bool nn_params_tie(nn_params *p, const char *prefix, const char *name, ag_tensor *t);
/* The parameter of that name, or of that tied name; NULL if none. */
NN_API ag_tensor *nn_params_find(const nn_params *p, const char *name);
/* The index of t in p->items, or -1. */
NN_API int nn_params_index(const nn_params *p, const ag_tensor *t);
/* Total number of parameter elements. */
NN_API int64_t nn_params_numel(const nn_params *p);
NN_API void nn_params_zero_grad(nn_params *p);
/* Frees every registered parameter and the registry's own memory. */
NN_API void nn_params_free(nn_params *p);
/* sqrt(sum of squared grads); scales all grads by max_norm / norm when the
 * norm exceeds max_norm (torch.nn.utils.clip_grad_norm_). Returns the norm. */
NN_API float nn_clip_grad_norm(nn_params *p, float max_norm);
/* true if every grad is finite; else false and *bad names the first parameter that is not. */
NN_API bool nn_grads_finite(const nn_params *p, const char **bad);

/* ---------------------------------------------------------------- layers */

/* y = x @ W^T + b: (..., in) -> (..., out). weight (out, in), bias (out) or NULL.
 * Init as PyTorch: U(-1/sqrt(in), 1/sqrt(in)) for both. */
typedef struct {
    ag_tensor *weight, *bias;
} nn_linear;
NN_API bool nn_linear_init(nn_linear *l, nn_params *p, const char *prefix, int64_t in, int64_t out,
                    bool bias, ag_rng *rng);
/* A Linear whose weight is weight (out, in), a parameter of p already used
 * elsewhere (weight tying: lm_head sharing the token embedding's (V, C)
 * table), registered under the tied name prefix + ".weight"; a new bias (out)
 * when bias, U(-1/sqrt(in), 1/sqrt(in)). */
NN_API bool nn_linear_init_tied(nn_linear *l, nn_params *p, const char *prefix, ag_tensor *weight,
                                bool bias, ag_rng *rng);
NN_API ag_tensor *nn_linear_forward(ag_ctx *c, const nn_linear *l, ag_tensor *x);

/* Lookup table weight (num, dim), init N(0, 1): idx (...) -> (..., dim). */
typedef struct {
    ag_tensor *weight;
} nn_embedding;
NN_API bool nn_embedding_init(nn_embedding *e, nn_params *p, const char *prefix, int64_t num, int64_t dim,
                       ag_rng *rng);
NN_API ag_tensor *nn_embedding_forward(ag_ctx *c, const nn_embedding *e, const ag_index *idx);

/* (x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased
 * variance, eps 1e-5): (..., dim) -> (..., dim). weight ones, bias zeros. */
typedef struct {
    ag_tensor *weight, *bias;
    float eps;
} nn_layernorm;
NN_API bool nn_layernorm_init(nn_layernorm *ln, nn_params *p, const char *prefix, int64_t dim);
NN_API ag_tensor *nn_layernorm_forward(ag_ctx *c, const nn_layernorm *ln, ag_tensor *x);
/* The same from elementwise primitives (mean, sub, mul, mean, add_scalar, rsqrt,
 * mul, mul, add): the reference nn_layernorm_forward (one ag_layer_norm) is
 * tested against. */
NN_API ag_tensor *nn_layernorm_forward_composed(ag_ctx *c, const nn_layernorm *ln, ag_tensor *x);

/* Dropout with probability p, active only when training. */
typedef struct {
    float p;
} nn_dropout;
NN_API ag_tensor *nn_dropout_forward(ag_ctx *c, const nn_dropout *d, ag_tensor *x, bool training);

/* One head of causal self-attention: key, query, value Linears (n_embd ->
 * head_size, no bias); softmax(mask(q @ k^T * head_size^-0.5)), dropout, @ v.
 * (B, T, n_embd) -> (B, T, head_size). */
typedef struct {
    nn_linear key, query, value;
    int64_t head_size;
    nn_dropout dropout;
} nn_head;
NN_API bool nn_head_init(nn_head *h, nn_params *p, const char *prefix, int64_t n_embd, int64_t head_size,
                  float dropout, ag_rng *rng);
NN_API ag_tensor *nn_head_forward(ag_ctx *c, const nn_head *h, ag_tensor *x, bool training);

/* n_head Heads of n_embd / n_head side by side, concatenated on the last dim,
 * then proj (n_embd -> n_embd) and dropout: (B, T, n_embd) -> (B, T, n_embd). */
typedef struct {
    nn_head *heads;
    int n_head;
    nn_linear proj;
    nn_dropout dropout;
} nn_mha;
NN_API bool nn_mha_init(nn_mha *m, nn_params *p, const char *prefix, int64_t n_embd, int n_head,
                 float dropout, ag_rng *rng);
NN_API ag_tensor *nn_mha_forward(ag_ctx *c, const nn_mha *m, ag_tensor *x, bool training);
/* nn_mha_forward before proj: the heads' outputs side by side, (B, T, C) -> (B, T, C).
 * nn_mha_forward is nn_mha_project(nn_mha_attend(x)). */
NN_API ag_tensor *nn_mha_attend(ag_ctx *c, const nn_mha *m, ag_tensor *x, bool training);
/* nn_mha_forward after the heads: proj, then dropout, (..., C) -> (..., C). */
NN_API ag_tensor *nn_mha_project(ag_ctx *c, const nn_mha *m, ag_tensor *att, bool training);
/* The heads' query, key and value weights stacked, (3C, C): all queries, all keys, all values. */
NN_API ag_tensor *nn_mha_qkv_weight(ag_ctx *c, const nn_mha *m);
/* The same as the lecture writes it, one nn_head_forward per head and a concat:
 * the reference nn_mha_forward (which batches the heads) is tested against. */
NN_API ag_tensor *nn_mha_forward_heads(ag_ctx *c, const nn_mha *m, ag_tensor *x, bool training);
NN_API void nn_mha_free(nn_mha *m);

/* The keys and values one nn_mha has computed for the positions of a sequence
 * so far, so that a new position costs one position's work (sampling). No
 * gradient flows through it: use it in a ctx with gradients off.
 * Lifecycle: nn_kv_cache_init allocates everything once and copies the
 * heads' stacked weights (init again after changing them); each
 * nn_mha_attend_cached (or nn_block_forward_cached) call appends one
 * position; nn_kv_cache_clear starts a new sequence in the same memory;
 * nn_kv_cache_free gives it back. */
typedef struct {
    ag_tensor *wqkv;     /* (3C, C): nn_mha_qkv_weight when made, persistent */
    float *k, *v;        /* (capacity, C): each position's keys, values; head h in columns h*hs.. */
    float *scores;       /* (capacity): one head's attention weights, scratch */
    int64_t len;         /* positions cached */
    int64_t capacity;
} nn_kv_cache;
/* A cache of capacity positions for m. false (after ag_error) if capacity < 1. */
NN_API bool nn_kv_cache_init(nn_kv_cache *kc, const nn_mha *m, int64_t capacity);
NN_API void nn_kv_cache_clear(nn_kv_cache *kc);
NN_API void nn_kv_cache_free(nn_kv_cache *kc);
/* nn_mha_attend for one new position at kc->len: x (1, 1, C) -> (1, 1, C),
 * each head attending over the positions cached and this one, whose key and
 * value it appends to kc. An error if kc is full or c records gradients. */
NN_API ag_tensor *nn_mha_attend_cached(ag_ctx *c, const nn_mha *m, nn_kv_cache *kc, ag_tensor *x);

/* net.0 Linear n -> 4n, ReLU, net.2 Linear 4n -> n, dropout: (..., n) -> (..., n). */
typedef struct {
    nn_linear fc, proj;
    nn_dropout dropout;
} nn_feedforward;
NN_API bool nn_feedforward_init(nn_feedforward *f, nn_params *p, const char *prefix, int64_t n_embd,
                         float dropout, ag_rng *rng);
NN_API ag_tensor *nn_feedforward_forward(ag_ctx *c, const nn_feedforward *f, ag_tensor *x, bool training);

/* x = x + sa(ln1(x)); x = x + ffwd(ln2(x)): (B, T, n_embd) -> (B, T, n_embd).
 * The three forwards below run that one structure (block.c) and differ only
 * in how the heads attend and which rows go on after attention. */
typedef struct {
    nn_mha sa;
    nn_feedforward ffwd;
    nn_layernorm ln1, ln2;
} nn_block;
NN_API bool nn_block_init(nn_block *b, nn_params *p, const char *prefix, int64_t n_embd, int n_head,
                   float dropout, ag_rng *rng);
/* The whole sequence, for training and evaluation: (B, T, n_embd) -> (B, T, n_embd). */
NN_API ag_tensor *nn_block_forward(ag_ctx *c, const nn_block *b, ag_tensor *x, bool training);
/* One new position x (1, 1, n_embd) at kc->len -> (1, 1, n_embd): the heads
 * attend over kc (made for b->sa) and append this position to it. Eval mode;
 * c must have gradients off. */
NN_API ag_tensor *nn_block_forward_cached(ag_ctx *c, const nn_block *b, nn_kv_cache *kc, ag_tensor *x);
/* The last position only: (B, T, n_embd) -> (B, 1, n_embd), the last row of
 * nn_block_forward in eval mode. The heads attend over all T positions; after
 * that no other row reaches the last, so only it goes through proj and ffwd. */
NN_API ag_tensor *nn_block_forward_last(ag_ctx *c, const nn_block *b, ag_tensor *x);
NN_API void nn_block_free(nn_block *b);

/* ---------------------------------------------------------------- modern blocks */

/* RMSNorm over the last dim, as Llama's (torch.nn.RMSNorm):
 * x / sqrt(mean(x^2) + eps) * weight, (..., dim) -> (..., dim); weight ones.
 * The forward is one ag_rms_norm op. */
typedef struct {
    ag_tensor *weight;
    float eps;
} nn_rmsnorm;
NN_API bool nn_rmsnorm_init(nn_rmsnorm *n, nn_params *p, const char *prefix, int64_t dim, float eps);
NN_API ag_tensor *nn_rmsnorm_forward(ag_ctx *c, const nn_rmsnorm *n, ag_tensor *x);
/* The same from mul, mean, add_scalar, rsqrt, mul, mul: the reference the
 * forward is tested against. */
NN_API ag_tensor *nn_rmsnorm_forward_composed(ag_ctx *c, const nn_rmsnorm *n, ag_tensor *x);

/* Llama's SwiGLU feed-forward, Linears without bias named w1, w2, w3:
 * w2(silu(w1 x) * w3 x), (..., dim) -> (..., dim) through (..., hidden). */
typedef struct {
    nn_linear w1, w2, w3;
} nn_swiglu;
NN_API bool nn_swiglu_init(nn_swiglu *f, nn_params *p, const char *prefix, int64_t dim,
                           int64_t hidden, ag_rng *rng);
NN_API ag_tensor *nn_swiglu_forward(ag_ctx *c, const nn_swiglu *f, ag_tensor *x);

/* Rotary position embeddings (Llama, rotate-half form): for position t and
 * i < hs/2, the pair (x_i, x_{i+hs/2}) turns by t theta^(-2i/hs):
 * out = x cos + rotate_half(x) sin, rotate_half(x1 | x2) = (-x2 | x1).
 * Constant tables (max_T, hs), not parameters: nothing to learn or save. */
typedef struct {
    ag_tensor *cos, *sin;       /* (max_T, hs); sin holds rotate_half's sign: (-sin | sin) */
    int64_t max_T, head_size;
} nn_rope;
/* Tables for positions 0 .. max_T-1 of heads of (even) head_size; theta 10000 as Llama. */
NN_API bool nn_rope_init(nn_rope *r, int64_t max_T, int64_t head_size, float theta);
NN_API void nn_rope_free(nn_rope *r);
/* x (..., T, ..., hs) rotated for positions pos0 .. pos0+T-1, T on axis t_axis:
 * -2 for q, k as (B, H, T, hs), -3 for (B, T, H, hs). Same shape out. */
NN_API ag_tensor *nn_rope_forward(ag_ctx *c, const nn_rope *r, ag_tensor *x, int t_axis,
                                  int64_t pos0);

/* torch.nn.GRUCell: weight_ih (3H, in), weight_hh (3H, H), bias_ih, bias_hh
 * (3H) or NULL, gates stacked r, z, n; every one U(-1/sqrt(H), 1/sqrt(H)):
 *   r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr), z likewise,
 *   n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)),  h' = (1 - z) n + z h. */
typedef struct {
    ag_tensor *weight_ih, *weight_hh, *bias_ih, *bias_hh;
    int64_t input_size, hidden_size;
} nn_gru_cell;
NN_API bool nn_gru_cell_init(nn_gru_cell *g, nn_params *p, const char *prefix, int64_t input_size,
                             int64_t hidden_size, bool bias, ag_rng *rng);
/* One step: x (B, in), h (B, H) or NULL for zeros -> h' (B, H). */
NN_API ag_tensor *nn_gru_cell_forward(ag_ctx *c, const nn_gru_cell *g, ag_tensor *x, ag_tensor *h);
/* The cell over a time-major sequence x (T, B, in) from h0 (B, H) or NULL ->
 * every step's h (T, B, H), as torch.nn.GRU(batch_first=False) with this
 * cell's weights; *h_last (may be NULL) gets the last step's (B, H). The
 * inputs of all steps are projected at once (one GEMM per gate). */
NN_API ag_tensor *nn_gru_forward(ag_ctx *c, const nn_gru_cell *g, ag_tensor *x, ag_tensor *h0,
                                 ag_tensor **h_last);

/* torch.nn.LSTMCell: weight_ih (4H, in), weight_hh (4H, H), bias_ih, bias_hh
 * (4H) or NULL, gates stacked i, f, g, o; every one U(-1/sqrt(H), 1/sqrt(H)):
 *   i, f, o = sigmoid(x W_i^T + b_i + h W_h^T + b_h), g = tanh(...),
 *   c' = f c + i g,  h' = o tanh(c'). */
typedef struct {
    ag_tensor *weight_ih, *weight_hh, *bias_ih, *bias_hh;
    int64_t input_size, hidden_size;
} nn_lstm_cell;
NN_API bool nn_lstm_cell_init(nn_lstm_cell *l, nn_params *p, const char *prefix,
                              int64_t input_size, int64_t hidden_size, bool bias, ag_rng *rng);
/* One step: x (B, in), h and cs (B, H) or NULL for zeros -> *h_out, *c_out (B, H). */
NN_API bool nn_lstm_cell_forward(ag_ctx *c, const nn_lstm_cell *l, ag_tensor *x, ag_tensor *h,
                                 ag_tensor *cs, ag_tensor **h_out, ag_tensor **c_out);
/* Over a time-major sequence x (T, B, in) -> every step's h (T, B, H); the
 * last step's h and c into *h_last, *c_last (either may be NULL). */
NN_API ag_tensor *nn_lstm_forward(ag_ctx *c, const nn_lstm_cell *l, ag_tensor *x, ag_tensor *h0,
                                  ag_tensor *c0, ag_tensor **h_last, ag_tensor **c_last);

/* ---------------------------------------------------------------- optimizers */

/* torch.optim.SGD: d = g + wd p; buf = momentum buf + d (buf = d at first); p -= lr buf. */
typedef struct {
    nn_params *params;
    float lr, momentum, weight_decay;
    float **buf;
    int n;                 /* parameters when made: the state's own count */
    bool started;
} nn_sgd;
NN_API void nn_sgd_init(nn_sgd *o, nn_params *p, float lr, float momentum, float weight_decay);
NN_API void nn_sgd_step(nn_sgd *o);
NN_API void nn_sgd_free(nn_sgd *o);

/* torch.optim.AdamW: p -= lr wd p; m, v moving averages with bias correction;
 * p -= lr m_hat / (sqrt(v_hat) + eps). Defaults betas 0.9/0.999, eps 1e-8, wd 0.01.
 * lr may be changed between steps.
 * Parameter groups: PyTorch's two param_groups of nanoGPT's
 * configure_optimizers, one decayed by weight_decay and one not. Every
 * parameter starts in the decayed group (one group, as before);
 * nn_adamw_decay_groups applies the documented default split and
 * nn_adamw_set_decay moves one parameter. */
typedef struct {
    nn_params *params;
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;
    float **m, **v;
    bool *no_decay;        /* per parameter: in the group without weight decay */
    int n;                 /* parameters when made: the state's own count */
} nn_adamw;
NN_API void nn_adamw_init(nn_adamw *o, nn_params *p, float lr);
/* The default groups: weight decay for matrices (ndim >= 2), none for 1-D
 * parameters (biases, norm weights), scalars and embedding tables
 * (NN_PARAM_EMBEDDING, so a head tied to the embedding is not decayed either).
 * Returns how many parameters are decayed. */
NN_API int nn_adamw_decay_groups(nn_adamw *o);
/* Puts parameter `name` (or a tied name of it) in the decayed group or not;
 * false if p has no such parameter. */
NN_API bool nn_adamw_set_decay(nn_adamw *o, const char *name, bool decay);
NN_API void nn_adamw_step(nn_adamw *o);
NN_API void nn_adamw_free(nn_adamw *o);

/* ---------------------------------------------------------------- lr schedules
 * Functions of the step (0-based: the step about to be taken) returning the
 * learning rate; set opt.lr to it before each nn_adamw_step. */

/* Linear warmup: lr (step + 1) / warmup for step < warmup, then lr. */
NN_API float nn_lr_warmup(int64_t step, float lr, int64_t warmup);
/* nanoGPT's get_lr: linear warmup to lr over the first warmup steps, then a
 * cosine from lr down to min_lr over steps warmup .. decay_steps, then min_lr:
 *   step < warmup:              lr (step + 1) / warmup
 *   warmup <= step <= decay_steps: min_lr + (lr - min_lr) (1 + cos(pi r)) / 2,
 *                                  r = (step - warmup) / (decay_steps - warmup)
 *   step > decay_steps:         min_lr */
NN_API float nn_lr_cosine(int64_t step, float lr, float min_lr, int64_t warmup, int64_t decay_steps);

/* ---------------------------------------------------------------- safetensors */

/* A safetensors file read into memory: 8-byte little-endian header length,
 * JSON header, raw little-endian data. Only F32 tensors are read. Opening
 * checks, as the format requires, that the tensors' data_offsets tile the
 * data exactly (no overlap, no gap, nothing after the last), and, when the
 * metadata has "crc32c" (this writer's; PyTorch's files have none), that the
 * data's CRC-32C matches it. */
typedef struct nn_st nn_st;
NN_API nn_st *nn_st_open(const char *path, char *err, size_t errlen);
/* Parses a file image (copied); for tests and fuzzing. */
NN_API nn_st *nn_st_parse(const void *buf, size_t len, char *err, size_t errlen);
NN_API void nn_st_close(nn_st *f);
NN_API int nn_st_count(const nn_st *f);
NN_API const char *nn_st_name(const nn_st *f, int i);
NN_API bool nn_st_has(const nn_st *f, const char *name);
/* The __metadata__ string for key, or NULL. */
NN_API const char *nn_st_meta(const nn_st *f, const char *key);
/* true if tensor `name` is there as F32 of shape (ndim, shape); else false with the reason. */
NN_API bool nn_st_check(const nn_st *f, const char *name, int ndim, const int64_t *shape, char *err,
                 size_t errlen);
/* Copies tensor `name` into dst after checking its dtype and that its shape is (ndim, shape). */
NN_API bool nn_st_read(const nn_st *f, const char *name, float *dst, int ndim, const int64_t *shape,
                char *err, size_t errlen);
/* Its shape, or false if absent. */
NN_API bool nn_st_shape(const nn_st *f, const char *name, int *ndim, int64_t *shape);
/* true if every value of F32 tensor `name` is finite; else false naming the
 * tensor, the first element that is not (flat and as an index) and its value. */
NN_API bool nn_st_finite(const nn_st *f, const char *name, char *err, size_t errlen);
/* Bytes of tensor data after the header (a bound on what a valid file can hold). */
NN_API uint64_t nn_st_data_size(const nn_st *f);

/* CRC-32C (Castagnoli) of buf[0..n) continuing crc (0 to start): what the
 * writer stores as metadata "crc32c" (8 hex digits) and the reader checks. */
NN_API uint32_t nn_crc32c(uint32_t crc, const void *buf, size_t n);

/* Writes code point cp (below 0x110000) as UTF-8 to out; returns the bytes written, 1 to 4. */
NN_API int nn_utf8_encode(uint32_t cp, char out[4]);

/* A second name of a stored tensor (a tied parameter's): metadata
 * NN_ST_TIED "<name>" = "<stored name>", written by nn_st_add_tied. The
 * reader's lookups by name (nn_st_has, _check, _read, _shape) follow it;
 * nn_st_count and nn_st_name list stored tensors only. */
#define NN_ST_TIED "tied."

/* Collects tensors (by reference: keep them alive until written) and metadata. */
typedef struct nn_st_writer nn_st_writer;
NN_API nn_st_writer *nn_st_writer_new(void);
NN_API void nn_st_add(nn_st_writer *w, const char *name, const float *data, int ndim,
               const int64_t *shape);
/* name as a second name of the tensor stored as stored_name (added to w by
 * nn_st_add; nn_st_write checks it is): one copy of the data in the file. */
NN_API void nn_st_add_tied(nn_st_writer *w, const char *name, const char *stored_name);
NN_API void nn_st_add_meta(nn_st_writer *w, const char *key, const char *value);
/* Writes a temporary file of its own beside path (nn_st_open_temp), flushes it
 * to disk, then renames it over path, so a crash, a full disk or a second
 * writer never leaves a half-written or mixed path behind. The metadata gets
 * "crc32c", the data's checksum (a key of that name may not be added). */
NN_API bool nn_st_write(nn_st_writer *w, const char *path, char *err, size_t errlen);
/* Creates "<path>.tmp.<pid>.<unique>" with O_EXCL | O_NOFOLLOW (never an
 * existing file, never through a symlink) for writing; returns its fd and
 * *tmp its name (malloc'd), or -1 with err. */
NN_API int nn_st_open_temp(const char *path, char **tmp, char *err, size_t errlen);
NN_API void nn_st_writer_free(nn_st_writer *w);

/* ---------------------------------------------------------------- checkpoints */

/* Adds every parameter under its name, and with opt its state as
 * "optimizer.exp_avg.<name>", "optimizer.exp_avg_sq.<name>" and metadata
 * "optimizer.step". A tied parameter's data is stored once, its second
 * name as NN_ST_TIED metadata. */
NN_API void nn_st_add_params(nn_st_writer *w, const nn_params *p);
NN_API void nn_st_add_adamw(nn_st_writer *w, const nn_adamw *opt);
/* Loads every parameter of p by name, checking shapes; fails on the first
 * missing or mismatched tensor, on a value that is not finite (NaN or inf:
 * the message names the tensor and the element), and on tensors the file
 * has that p lacks (other than "optimizer." ones). A tied parameter loads
 * from any of its names the file has; one stored under two names must hold
 * the same values under both. Everything is checked before anything is
 * copied, so a failed load leaves p (and opt) as they were. */
NN_API bool nn_load_params(const nn_st *f, nn_params *p, char *err, size_t errlen);
NN_API bool nn_load_adamw(const nn_st *f, nn_adamw *opt, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
