/* internal.h - what the engine's files share and users don't see: the
 * tensor's private tail, the arena and ctx, and the kernels' helpers. Only
 * the library's sources (and tests and tools that link its objects) have
 * this folder on their include path. */
#ifndef AG_INTERNAL_H
#define AG_INTERNAL_H

#include "ag_op.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- threads
 * (threads.c says how teams are sized and why they shrink under load) */

/* Below this many elements an elementwise loop stays serial: waking threads
 * costs more than the work. Past it, a thread per AG_PAR_MIN elements. */
#define AG_PAR_MIN 32768

/* The same for a matmul, in multiply-adds (2^20: about 15 us on one core). */
#define AG_GEMM_MIN (1 << 20)

/* Parts a loop of `work` units is cut into, each worth at least `grain`:
 * work / grain, at least 1, at most the thread count (ag_set_num_threads).
 * Depends on nothing else, so results that depend on the split do not
 * depend on the machine's load. */
int ag_parts(int64_t work, int64_t grain);

/* Parts for a loop worth splitting only past `min` units: 1 up to min,
 * past it work / min but at least 2 (at most the thread count). */
int ag_parts_past(int64_t work, int64_t min);

/* ag_parts_past for an elementwise loop over `work` elements. */
static inline int ag_par_parts(int64_t work) { return ag_parts_past(work, AG_PAR_MIN); }

/* Threads to run `parts` parts on now: the pool's team, the same for every
 * region -- the thread count, at most the CPUs, fewer while the machine is
 * contended (threads.c) -- when the parts are at least half the team; else
 * 1 (also for one part, or inside a parallel region). Members beyond the
 * parts wait at the barrier: libgomp would end them and create them again
 * for the next larger team, at tens of us a thread. */
int ag_team(int parts);

/* The sum of range(lo, hi, user) over [0, n) cut into ag_par_parts(work)
 * ranges, added in range order: the same bits on any team, loaded or not. */
double ag_parallel_sum(int64_t n, int64_t work,
                       double (*range)(int64_t lo, int64_t hi, void *user), void *user);

/* Caps teams at cap threads for hold_ns, as if the machine were contended
 * (tests: results must not change). */
void ag_team_hold_cap(int cap, int64_t hold_ns);

/* Timing of one parallel region, for the contention cap: begin before
 * `omp parallel`, enter first thing inside it (every thread), end after it. */
typedef struct {
    int64_t t0;
    _Atomic long long late; /* ns from begin to the last worker's enter */
} ag_region;
void ag_region_begin(ag_region *r);
void ag_region_enter(ag_region *r);
void ag_region_end(ag_region *r, int team);
/* For a parallel call timed as a whole (a BLAS call): whether its team came
 * late (cost more than it gave), at time now (ag_now_ns). */
void ag_team_note(int team, bool late, int64_t now);
int64_t ag_now_ns(void); /* CLOCK_MONOTONIC */

/* Runs the for statement given last as `omp for clauses` on a team sized by
 * `work` elements (ag_par_parts, then ag_team), else as a plain loop. An OpenMP if
 * clause would still enter the runtime when false: about 0.4 us and a futex
 * wake per loop, which for the small models is more than the loops
 * themselves. Loops whose result depends on the split (partial sums) cut
 * themselves into ag_par_parts(work) parts and loop over those. */
#define AG_PARALLEL(work, clauses, ...)                                      \
    AG_PARALLEL_TEAM(ag_team(ag_par_parts(work)), clauses, __VA_ARGS__)
/* The same on `team` threads (ag_team's answer; below 2, a plain loop). */
#define AG_PARALLEL_TEAM(team, clauses, ...)                                 \
    do {                                                                     \
        int ag_team_ = (team);                                               \
        if (ag_team_ > 1) {                                                  \
            ag_region ag_region_;                                            \
            ag_region_begin(&ag_region_);                                    \
            _Pragma("omp parallel num_threads(ag_team_)")                    \
            {                                                                \
                ag_region_enter(&ag_region_);                                \
                _Pragma(AG_STR(omp for clauses nowait)) __VA_ARGS__          \
            }                                                                \
            ag_region_end(&ag_region_, ag_team_);                            \
        } else {                                                             \
            __VA_ARGS__                                                      \
        }                                                                    \
    } while (0)
/* AG_PARALLEL_FOR(cond, ...) took a condition and used every thread. */
#define AG_PARALLEL_FOR(...)                                                 \
    _Static_assert(0, "AG_PARALLEL_FOR(n > AG_PAR_MIN, ...) is now AG_PARALLEL(n, ...): see internal.h")
#define AG_STR(x) #x

/* ---------------------------------------------------------------- tensors */

/* A tensor with the engine's state after its public part, in one allocation:
 * every tensor the library hands out is an ag_node, so ag_node_of is a cast. */
typedef struct {
    ag_tensor pub;                  /* first */

    /* graph; set by ops, read by backward. A leaf has op == NULL. */
    const ag_op *op;
    int ninputs;
    ag_tensor **inputs;
    void *saved;                    /* the op's attributes and whatever it kept for backward */

    /* ownership: the ctx whose arena holds it (NULL: persistent) and that
     * arena's generation when it was made, to catch use after a reset. */
    ag_ctx *owner;
    uint64_t generation;
    ag_tensor *view_of;             /* a view's base, whose buffer it shares */
    int32_t saved_refs;             /* backwards (and live views) that read its data */
    bool requires_grad;
    bool retain_grad;
    bool owns_data;                 /* its data is its own, not a view of another's */
    bool visited;                   /* set only during a graph traversal */
    bool released;                  /* ag_release was called on it */
} ag_node;

static inline ag_node *ag_node_of(const ag_tensor *t) { return (ag_node *)(uintptr_t)t; }

/* ag_op.h's accessors, inlined inside the library (graph.c defines the
 * exported functions as (ag_input)(...), which the macros leave alone). */
#define ag_op_of(t) (ag_node_of(t)->op)
#define ag_num_inputs(out) (ag_node_of(out)->ninputs)
#define ag_input(out, i) (ag_node_of(out)->inputs[(i)])
#define ag_saved(out) ((void *)ag_node_of(out)->saved)

/* ---------------------------------------------------------------- arena */

/* Bump allocator over a list of blocks. After a step that needed more than
 * one block, reset merges them into one block the size of the peak, so a
 * steady training loop allocates nothing and resets in O(1). */
typedef struct {
    char **blocks;
    size_t *caps;
    int nblocks, cap_blocks;
    int cur;          /* block being filled */
    size_t used;      /* bytes used in blocks[cur] */
    size_t total;     /* bytes handed out since reset */
    size_t peak;
    size_t min_block;
    char **grave;     /* debug arenas: the last step's blocks, kept but never reused */
    int ngrave;
} ag_arena;

/* "out of memory allocating <bytes> bytes" (0: the size unknown) through the
 * error handler, then abort if the handler returns. */
_Noreturn void ag_oom(size_t bytes);
void ag_arena_init(ag_arena *a, size_t min_block);
void ag_arena_free(ag_arena *a);
void *ag_arena_alloc(ag_arena *a, size_t bytes); /* 64-byte aligned, never NULL */
void ag_arena_reset(ag_arena *a, bool release);

/* ---------------------------------------------------------------- ctx */

typedef struct ag_free_buf {
    struct ag_free_buf *next;
    int64_t numel;
} ag_free_buf;

struct ag_ctx {
    ag_arena arena;       /* tensors of this step */
    ag_arena scratch;     /* temporaries of one backward node */
    uint64_t generation;
    bool grad_enabled;
    ag_rng rng;
    ag_free_buf *free_bufs[64]; /* freed data and grad buffers of this step, by numel % 64 */
    int precision;        /* ag_precision of the products recorded from now on */
    struct {              /* bf16 copies of this step's tensors, shared by their readers */
        const ag_tensor *src;
        const float *data;
        uint64_t generation;
        uint16_t *copy;
    } bf16_copies[8];     /* the most recently used first */
};

/* Nodes that require grad and have an op, inputs before outputs, into an
 * array from ctx's scratch arena; *n gets the count. Iterative. */
ag_tensor **ag_topo_order(ag_ctx *ctx, ag_tensor *root, int64_t *n);

/* An arena tensor header without data (for views); data left NULL. */
ag_tensor *ag_new_header(ag_ctx *ctx, int ndim, const int64_t *shape);
/* ag_result for a view: out->data is left for the caller to point into an input. */
ag_tensor *ag_result_view(ag_ctx *ctx, const ag_op *op, ag_tensor *const *inputs, int ninputs,
                          int ndim, const int64_t *shape);

/* Float buffers of this step: a freed one of the same size if there is one,
 * else new arena memory. Released ones are reused until the next reset. */
float *ag_buf_alloc(ag_ctx *ctx, int64_t numel);
void ag_buf_release(ag_ctx *ctx, float *buf, int64_t numel);

/* Points view at data inside base's buffer and keeps that buffer alive for it. */
void ag_make_view(ag_tensor *view, ag_tensor *base, float *data);

/* overwrite, the one word for how a backward puts a result into a grad:
 * true writes (=) every element, whatever the buffer held; false adds (+=). */

/* ag_grad_of without the zeroing: *overwrite says the buffer was just made
 * and holds garbage, so the caller must overwrite every element. */
float *ag_grad_buf(ag_ctx *ctx, ag_tensor *t, bool *overwrite);

/* For a backward whose input t's grad is exactly out's grad (add, reshape):
 * when t has no grad yet and is not a leaf, out's grad buffer becomes t's
 * (out's backward is its last reader), saving a copy. false: nothing done,
 * the caller copies or adds as usual. */
bool ag_grad_pass(ag_tensor *out, ag_tensor *t);

/* Memory for a backward's temporaries, valid until that node's backward ends. */
void *ag_scratch(ag_ctx *ctx, size_t bytes);

/* ---------------------------------------------------------------- checks */

/* Turns axis (negative counts from the end) into an index of t's dims, or reports. */
bool ag_resolve_axis(const char *op, const ag_tensor *t, int *axis);
int64_t ag_shape_numel(int ndim, const int64_t *shape);

/* Row-major strides (in elements) of a shape. */
void ag_strides(int ndim, const int64_t *shape, int64_t *strides);

/* Broadcast: out shape of a and b, or false (reported by the caller). */
bool ag_broadcast_shape(const ag_tensor *a, const ag_tensor *b, int *ndim, int64_t *shape);
/* Strides of t's elements when t is broadcast to (ndim, shape): 0 on broadcast dims. */
void ag_broadcast_strides(const ag_tensor *t, int ndim, const int64_t *shape, int64_t *strides);
/* dst (t's shape) (+)= scale * src, summed over the dims where t was broadcast
 * to src's shape. */
void ag_accum_reduce(float *dst, const ag_tensor *t, const float *src, const ag_tensor *src_shape,
                     float scale, bool overwrite);

/* Sums of the product g * x over rows (rows, L): with per_row, dst[r] (+)= sum_j;
 * else dst[j] (+)= sum_r (a bias-like factor's grad). */
void ag_sum_product(float *dst, bool per_row, const float *g, const float *x, int64_t rows,
                    int64_t L, bool overwrite);

/* ---------------------------------------------------------------- kernels */

/* Row-major C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, op = transpose when ta/tb. */
void ag_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The same with the built-in kernel for the CPU's best ISA (gemm_blocked.c), whatever
 * backend is chosen, and the naive triple loop both are tested against. */
void ag_gemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc);
void ag_gemm_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                   float *C, int64_t ldc);
/* Single-threaded variant for callers that parallelize over a batch themselves. */
void ag_gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc);

/* Counter-based random bits: the same (seed, i) give the same value on any thread. */
static inline uint64_t ag_hash64(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Eight floats as one vector (GCC/clang vector extension): for reductions
 * over short rows, where `omp simd reduction` spills its lanes to the stack
 * and sums them back one by one. No function takes or returns one by value:
 * built without AVX (-Dnative=false) that would be a call across an ABI that
 * differs between AVX and non-AVX code (GCC's -Wpsabi). */
typedef float ag_v8 __attribute__((vector_size(32)));
/* the same, at any float's alignment, and allowed to alias floats */
typedef float ag_v8u __attribute__((vector_size(32), aligned(4), may_alias));

/* The eight floats at p as a vector value (an unaligned load). */
#define ag_load8(p) (*(const ag_v8u *)(const void *)(p))

static inline float ag_hsum8(const ag_v8 *v)
{
    const ag_v8 x = *v;
    return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
}

/* sum of a[i] * b[i], i < n */
static inline float ag_dot(const float *a, const float *b, int64_t n)
{
    ag_v8 acc = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc += ag_load8(a + i) * ag_load8(b + i);
    float s = ag_hsum8(&acc);
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* sum of a[i], i < n */
static inline float ag_sumf(const float *a, int64_t n)
{
    ag_v8 acc = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc += ag_load8(a + i);
    float s = ag_hsum8(&acc);
    for (; i < n; i++)
        s += a[i];
    return s;
}

/* sum of a[i], i < n, accumulated in double: a mean stays exact to float
 * precision when the values sit far from zero (1000 + 0.01 noise) */
typedef float ag_v4 __attribute__((vector_size(16)));
typedef double ag_v4d __attribute__((vector_size(32)));

static inline double ag_sumd(const float *a, int64_t n)
{
    ag_v4d acc = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        ag_v4 v;
        memcpy(&v, a + i, sizeof v);
        acc += __builtin_convertvector(v, ag_v4d);
    }
    double s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    for (; i < n; i++)
        s += a[i];
    return s;
}

/* Dropout's keep decision for element i of a call seeded with seed: kept
 * with probability 1 - p, a pure function so backward regenerates it. */
static inline bool ag_dropout_keep(uint64_t seed, int64_t i, float p)
{
    return (float)(ag_hash64(seed, (uint64_t)i) >> 40) * (1.0f / 16777216.0f) >= p;
}

/* e^x without branches, so loops over it vectorize (libm's expf does not
 * without -ffast-math): x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial
 * for e^r and the exponent bits for 2^n. Within 2 ulp of expf for x up to
 * 88.37 (softmax and cross-entropy only pass x <= 0); exactly 0 below -87.33,
 * so -inf gives 0; NaN stays NaN. tests/test_nnops.c checks it against expf. */
static inline float ag_expf(float x)
{
    const float lo = -87.33654f, hi = 88.37626f; /* 2^n stays a normal float */
    float xc = x > lo ? x : lo; /* NaN becomes lo here: converting NaN to int is undefined */
    xc = xc < hi ? xc : hi;
    float n = __builtin_rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f;             /* ln2 in two parts, so r is exact */
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = p * scale;
    e = x < lo ? 0.0f : e;
    return x != x ? x : e;
}

#define AG_UNUSED(x) (void)(x)

#endif
