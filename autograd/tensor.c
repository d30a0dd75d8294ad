/* tensor.c - making, filling, describing and freeing tensors. */
#include "internal.h"

#include <stdlib.h>

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        ag_oom(n * size);
    return p;
}

int64_t ag_shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

char *ag_fmt_shape(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, ")");
    return buf;
}

char *ag_shape_str(const ag_tensor *t, char *buf, size_t n)
{
    return ag_fmt_shape(t->ndim, t->shape, buf, n);
}

bool ag_same_shape(const ag_tensor *a, const ag_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

void ag_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i];
    }
}

static bool check_shape(const char *op, int ndim, const int64_t *shape)
{
    char b[128];
    if (ndim < 0 || ndim > AG_MAX_DIMS) {
        /* the caller's shape array holds ndim sizes; a negative ndim shows as "()" */
        ag_error("%s: shape %s has %d dims, the most is %d", op,
                 ag_fmt_shape(ndim, shape, b, sizeof b), ndim, AG_MAX_DIMS);
        return false;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            ag_error("%s: negative size in shape %s", op, ag_fmt_shape(ndim, shape, b, sizeof b));
            return false;
        }
    return true;
}

/* A zeroed node of the given shape, no data: in ctx's arena, or on the heap
 * (persistent) when ctx is NULL. */
static ag_node *new_node(ag_ctx *ctx, int ndim, const int64_t *shape)
{
    ag_node *n;
    if (ctx) {
        n = ag_arena_alloc(&ctx->arena, sizeof *n);
        memset(n, 0, sizeof *n);
        n->owner = ctx;
        n->generation = ctx->generation;
    } else {
        n = xcalloc(1, sizeof *n);
    }
    n->pub.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        n->pub.shape[i] = shape[i];
    n->pub.numel = ag_shape_numel(ndim, shape);
    return n;
}

ag_tensor *ag_new_header(ag_ctx *ctx, int ndim, const int64_t *shape)
{
    if (!check_shape("tensor", ndim, shape))
        return NULL;
    return &new_node(ctx, ndim, shape)->pub;
}

/* A node and its data. `who` is the public function, for the error message. */
static ag_tensor *new_tensor(const char *who, ag_ctx *ctx, int ndim, const int64_t *shape,
                             bool zero)
{
    if (!check_shape(who, ndim, shape))
        return NULL;
    ag_node *n = new_node(ctx, ndim, shape);
    ag_tensor *t = &n->pub;
    if (ctx) {
        t->data = ag_buf_alloc(ctx, t->numel);
    } else {
        void *d = NULL;
        if (posix_memalign(&d, 64, (size_t)(t->numel ? t->numel : 1) * sizeof(float)) != 0)
            ag_oom((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        t->data = d;
    }
    n->owns_data = true;
    if (zero)
        memset(t->data, 0, (size_t)t->numel * sizeof(float));
    return t;
}

ag_tensor *ag_empty(ag_ctx *ctx, int ndim, const int64_t *shape)
{
    return new_tensor("ag_empty", ctx, ndim, shape, false);
}

ag_tensor *ag_zeros(ag_ctx *ctx, int ndim, const int64_t *shape)
{
    return new_tensor("ag_zeros", ctx, ndim, shape, true);
}

static ag_tensor *filled(const char *who, ag_ctx *ctx, float value, int ndim,
                         const int64_t *shape)
{
    ag_tensor *t = new_tensor(who, ctx, ndim, shape, false);
    if (t)
        ag_fill(t, value);
    return t;
}

ag_tensor *ag_full(ag_ctx *ctx, float value, int ndim, const int64_t *shape)
{
    return filled("ag_full", ctx, value, ndim, shape);
}

ag_tensor *ag_ones(ag_ctx *ctx, int ndim, const int64_t *shape)
{
    return filled("ag_ones", ctx, 1.0f, ndim, shape);
}

ag_tensor *ag_from_data(ag_ctx *ctx, const float *data, int ndim, const int64_t *shape)
{
    ag_tensor *t = new_tensor("ag_from_data", ctx, ndim, shape, false);
    if (t)
        memcpy(t->data, data, (size_t)t->numel * sizeof(float));
    return t;
}

ag_tensor *ag_scalar(ag_ctx *ctx, float v)
{
    ag_tensor *t = new_tensor("ag_scalar", ctx, 0, NULL, false);
    if (t)
        t->data[0] = v;
    return t;
}

/* The generator of ag_rand/ag_randn: rng, else ctx's, else none (reported). */
static ag_rng *pick_rng(const char *who, ag_ctx *ctx, ag_rng *rng)
{
    if (!rng && !ctx)
        ag_error("%s: no generator: pass an ag_rng, or a ctx to use its generator", who);
    return rng ? rng : ctx ? &ctx->rng : NULL;
}

ag_tensor *ag_rand(ag_ctx *ctx, ag_rng *rng, float lo, float hi, int ndim, const int64_t *shape)
{
    ag_rng *r = pick_rng("ag_rand", ctx, rng);
    ag_tensor *t = r ? new_tensor("ag_rand", ctx, ndim, shape, false) : NULL;
    if (t)
        ag_fill_uniform(t, r, lo, hi);
    return t;
}

ag_tensor *ag_randn(ag_ctx *ctx, ag_rng *rng, float mean, float std, int ndim,
                    const int64_t *shape)
{
    ag_rng *r = pick_rng("ag_randn", ctx, rng);
    ag_tensor *t = r ? new_tensor("ag_randn", ctx, ndim, shape, false) : NULL;
    if (t)
        ag_fill_normal(t, r, mean, std);
    return t;
}

ag_tensor *ag_param(const char *name, int ndim, const int64_t *shape)
{
    ag_tensor *t = new_tensor("ag_param", NULL, ndim, shape, true);
    if (!t)
        return NULL;
    ag_node_of(t)->requires_grad = true;
    if (name) {
        size_t n = strlen(name) + 1;
        char *s = xcalloc(n, 1);
        memcpy(s, name, n);
        t->name = s;
    }
    return t;
}

void ag_tensor_free(ag_tensor *t)
{
    if (!t)
        return;
    if (ag_node_of(t)->owner) {
        char b[128];
        ag_error("ag_tensor_free: tensor %s%sof shape %s lives in a ctx arena; "
                 "ag_ctx_reset frees it", t->name ? t->name : "", t->name ? " " : "",
                 ag_shape_str(t, b, sizeof b));
        return;
    }
    if (ag_node_of(t)->owns_data)
        free(t->data);
    free(t->grad);
    free((char *)t->name);
    free(t);
}

bool ag_requires_grad(const ag_tensor *t) { return ag_node_of(t)->requires_grad; }

void ag_set_requires_grad(ag_tensor *t, bool on)
{
    ag_node *n = ag_node_of(t);
    if (n->op) {
        ag_error("ag_set_requires_grad: tensor made by %s is not a leaf", n->op->name);
        return;
    }
    n->requires_grad = on;
}

ag_ctx *ag_tensor_ctx(const ag_tensor *t) { return ag_node_of(t)->owner; }

void ag_retain_grad(ag_tensor *t) { ag_node_of(t)->retain_grad = true; }

void ag_zero_grad(ag_tensor *t)
{
    if (!t->grad) {
        ag_ctx *owner = ag_node_of(t)->owner;
        if (owner)
            t->grad = ag_arena_alloc(&owner->arena, (size_t)t->numel * sizeof(float));
        else {
            void *g = NULL;
            if (posix_memalign(&g, 64, (size_t)(t->numel ? t->numel : 1) * sizeof(float)) != 0)
                ag_oom((size_t)(t->numel ? t->numel : 1) * sizeof(float));
            t->grad = g;
        }
    }
    memset(t->grad, 0, (size_t)t->numel * sizeof(float));
}

float ag_item(const ag_tensor *t)
{
    ag_tensor *const in[1] = {(ag_tensor *)t};
    if (!ag_check_inputs("ag_item", in, 1))
        return NAN;
    if (t->numel != 1) {
        char b[128];
        ag_error("ag_item: tensor of shape %s has %lld elements, not 1",
                 ag_shape_str(t, b, sizeof b), (long long)t->numel);
        return NAN;
    }
    return t->data[0];
}

static void print_rec(FILE *f, const ag_tensor *t, int dim, int64_t off, int64_t stride_prod)
{
    if (dim == t->ndim) {
        fprintf(f, "%.6g", t->data[off]);
        return;
    }
    int64_t inner = stride_prod / t->shape[dim];
    fputc('[', f);
    for (int64_t i = 0; i < t->shape[dim]; i++) {
        if (i)
            fputs(", ", f);
        print_rec(f, t, dim + 1, off + i * inner, inner);
    }
    fputc(']', f);
}

void ag_print(FILE *f, const ag_tensor *t)
{
    ag_tensor *const in[1] = {(ag_tensor *)t};
    if (!ag_check_inputs("ag_print", in, 1))
        return;
    char b[128];
    fprintf(f, "tensor%s ", ag_shape_str(t, b, sizeof b));
    if (t->numel == 0)
        fputs("[]", f);
    else
        print_rec(f, t, 0, 0, t->numel);
    fputc('\n', f);
}

ag_index *ag_index_new(ag_ctx *ctx, const int32_t *data, int ndim, const int64_t *shape)
{
    if (!check_shape("ag_index_new", ndim, shape))
        return NULL;
    int64_t numel = ag_shape_numel(ndim, shape);
    ag_index *ix;
    if (ctx) {
        ix = ag_arena_alloc(&ctx->arena, sizeof *ix);
        ix->data = ag_arena_alloc(&ctx->arena, (size_t)numel * sizeof(int32_t));
    } else {
        ix = xcalloc(1, sizeof *ix);
        ix->data = xcalloc((size_t)numel, sizeof(int32_t));
    }
    ix->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        ix->shape[i] = shape[i];
    ix->numel = numel;
    if (data)
        memcpy(ix->data, data, (size_t)numel * sizeof(int32_t));
    else
        memset(ix->data, 0, (size_t)numel * sizeof(int32_t));
    return ix;
}

void ag_index_free(ag_index *ix)
{
    if (!ix)
        return;
    free(ix->data);
    free(ix);
}
