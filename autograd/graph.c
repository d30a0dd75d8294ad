/* graph.c - recording ops and running backward over what they recorded. */
#include "internal.h"

static ag_tensor *record(ag_ctx *ctx, const ag_op *op, ag_tensor *const *inputs, int ninputs,
                         ag_tensor *out)
{
    if (!out || !ctx->grad_enabled)
        return out;
    bool needs = false;
    for (int i = 0; i < ninputs; i++)
        needs = needs || ag_node_of(inputs[i])->requires_grad;
    if (!needs)
        return out;
    ag_node *o = ag_node_of(out);
    o->requires_grad = true;
    o->op = op;
    o->ninputs = ninputs;
    o->inputs = ag_arena_alloc(&ctx->arena, (size_t)ninputs * sizeof *o->inputs);
    memcpy(o->inputs, inputs, (size_t)ninputs * sizeof *o->inputs);
    /* count who will read what in backward, so ag_release knows what it may free */
    uint32_t reads = op->reads ? op->reads : AG_ALL_IN | AG_OUT;
    for (int i = 0; i < ninputs; i++)
        if (reads & AG_IN(i))
            ag_node_of(inputs[i])->saved_refs++;
    if (reads & AG_OUT)
        o->saved_refs++;
    return out;
}

/* Frees t's memory once it is released and nothing reads it; a view then
 * lets go of its base, which may in turn be free. */
static void try_free(ag_tensor *t)
{
    while (t && ag_node_of(t)->released && ag_node_of(t)->saved_refs == 0 && t->data) {
        ag_node *n = ag_node_of(t);
        if (n->owns_data)
            ag_buf_release(n->owner, t->data, t->numel);
        t->data = NULL;
        if (!n->view_of)
            break;
        t = n->view_of;
        ag_node_of(t)->saved_refs--;
    }
}

void ag_release(ag_ctx *ctx, ag_tensor *t)
{
    (void)ctx;
    if (!t || !ag_node_of(t)->owner || ag_node_of(t)->released)
        return;
    ag_node_of(t)->released = true;
    try_free(t);
}

void ag_make_view(ag_tensor *view, ag_tensor *base, float *data)
{
    view->data = data;
    ag_node_of(view)->view_of = base;
    ag_node_of(base)->saved_refs++; /* the view reads base's buffer until it is freed itself */
}

ag_tensor *ag_result(ag_ctx *ctx, const ag_op *op, ag_tensor *const *inputs, int ninputs,
                     int ndim, const int64_t *shape)
{
    return record(ctx, op, inputs, ninputs, ag_empty(ctx, ndim, shape));
}

ag_tensor *ag_result_view(ag_ctx *ctx, const ag_op *op, ag_tensor *const *inputs, int ninputs,
                          int ndim, const int64_t *shape)
{
    return record(ctx, op, inputs, ninputs, ag_new_header(ctx, ndim, shape));
}

void *ag_save(ag_ctx *ctx, ag_tensor *out, const void *attr, size_t bytes)
{
    ag_node *o = ag_node_of(out);
    if (!o->op)
        return NULL;
    o->saved = ag_arena_alloc(&ctx->arena, bytes);
    memcpy(o->saved, attr, bytes);
    return o->saved;
}

const ag_op *(ag_op_of)(const ag_tensor *t) { return ag_op_of(t); }
int (ag_num_inputs)(const ag_tensor *out) { return ag_num_inputs(out); }
ag_tensor *(ag_input)(const ag_tensor *out, int i) { return ag_input(out, i); }
void *(ag_saved)(const ag_tensor *out) { return ag_saved(out); }

static void zero_floats(float *p, int64_t n)
{
    AG_PARALLEL(n / 4, ,
    for (int64_t i = 0; i < n; i++)
        p[i] = 0.0f;
    );
}

float *ag_grad_buf(ag_ctx *ctx, ag_tensor *t, bool *overwrite)
{
    ag_node *n = ag_node_of(t);
    *overwrite = false;
    if (!n->requires_grad)
        return NULL;
    if (t->grad)
        return t->grad;
    if (!n->owner) {
        ag_zero_grad(t);
        return t->grad;
    }
    /* non-leaves get their grad from the ctx running backward; leaves from their own */
    ag_ctx *home = n->op ? ctx : n->owner;
    t->grad = n->op ? ag_buf_alloc(home, t->numel)
                    : ag_arena_alloc(&home->arena, (size_t)t->numel * sizeof(float));
    *overwrite = true;
    return t->grad;
}

bool ag_grad_pass(ag_tensor *out, ag_tensor *t)
{
    /* leaves own their grads; a retained grad stays with out */
    ag_node *n = ag_node_of(t);
    if (!n->requires_grad || t->grad || !n->op || ag_node_of(out)->retain_grad || !out->grad ||
        t->numel != out->numel)
        return false;
    t->grad = out->grad;
    out->grad = NULL;
    return true;
}

float *ag_grad_of(ag_ctx *ctx, ag_tensor *t)
{
    bool overwrite;
    float *g = ag_grad_buf(ctx, t, &overwrite);
    if (overwrite)
        zero_floats(g, t->numel);
    return g;
}

ag_tensor **ag_topo_order(ag_ctx *ctx, ag_tensor *root, int64_t *n)
{
    /* Iterative DFS with an explicit stack of (node, next input). The arrays
     * grow by doubling in scratch; the old copies are left behind there. */
    int64_t cap = 256, sp = 0, cnt = 0;
    ag_tensor **stack = ag_scratch(ctx, (size_t)cap * sizeof *stack);
    int *next = ag_scratch(ctx, (size_t)cap * sizeof *next);
    int64_t ocap = 256;
    ag_tensor **order = ag_scratch(ctx, (size_t)ocap * sizeof *order);

    if (!ag_node_of(root)->op) {
        *n = 0;
        return order;
    }
    ag_node_of(root)->visited = true;
    stack[sp] = root;
    next[sp++] = 0;
    while (sp) {
        ag_tensor *t = stack[sp - 1];
        ag_node *tn = ag_node_of(t);
        if (next[sp - 1] < tn->ninputs) {
            ag_tensor *in = tn->inputs[next[sp - 1]++];
            ag_node *inn = ag_node_of(in);
            if (!inn->op || !inn->requires_grad || inn->visited)
                continue;
            inn->visited = true;
            if (sp == cap) {
                ag_tensor **s2 = ag_scratch(ctx, (size_t)cap * 2 * sizeof *s2);
                int *n2 = ag_scratch(ctx, (size_t)cap * 2 * sizeof *n2);
                memcpy(s2, stack, (size_t)cap * sizeof *s2);
                memcpy(n2, next, (size_t)cap * sizeof *n2);
                stack = s2;
                next = n2;
                cap *= 2;
            }
            stack[sp] = in;
            next[sp++] = 0;
        } else {
            if (cnt == ocap) {
                ag_tensor **o2 = ag_scratch(ctx, (size_t)ocap * 2 * sizeof *o2);
                memcpy(o2, order, (size_t)ocap * sizeof *o2);
                order = o2;
                ocap *= 2;
            }
            order[cnt++] = t;
            sp--;
        }
    }
    /* every visited node ends in order: clearing the marks there leaves
     * none behind for the next traversal, from this ctx or any other */
    for (int64_t i = 0; i < cnt; i++)
        ag_node_of(order[i])->visited = false;
    *n = cnt;
    return order;
}

static bool run_backward(ag_ctx *ctx, ag_tensor *root, const ag_tensor *seed, bool ones)
{
    const char *who = ones ? "ag_backward" : "ag_backward_with";
    if (!ag_check_inputs(who, &root, 1))
        return false;
    if (!ones && !ag_check_inputs(who, (ag_tensor *const *)&seed, 1))
        return false; /* a NULL grad_out is an earlier op's failure, already reported */
    char b[128];
    if (ones && root->numel != 1) {
        ag_error("ag_backward: output of shape %s is not a scalar; "
                 "use ag_backward_with and pass its grad",
                 ag_shape_str(root, b, sizeof b));
        return false;
    }
    if (!ones && !ag_same_shape(root, seed)) {
        char b2[128];
        ag_error("ag_backward_with: grad of shape %s for output of shape %s",
                 ag_shape_str(seed, b2, sizeof b2), ag_shape_str(root, b, sizeof b));
        return false;
    }
    if (!ag_node_of(root)->requires_grad) {
        ag_error("%s: output does not require grad (no input requires it, "
                 "or it was made with gradients off)", who);
        return false;
    }

    ag_arena_reset(&ctx->scratch, false);
    int64_t n;
    ag_tensor **order = ag_topo_order(ctx, root, &n);
    /* order lives in scratch, which each node's backward resets: keep a copy */
    ag_tensor **nodes = ag_arena_alloc(&ctx->arena, (size_t)n * sizeof *nodes);
    memcpy(nodes, order, (size_t)n * sizeof *nodes);
    for (int64_t i = 0; i < n; i++)
        nodes[i]->grad = NULL;

    float *g = ag_grad_of(ctx, root);
    for (int64_t i = 0; i < root->numel; i++)
        g[i] += ones ? 1.0f : seed->data[i];

    for (int64_t i = n - 1; i >= 0; i--) {
        ag_tensor *t = nodes[i];
        if (t->grad) {
            ag_arena_reset(&ctx->scratch, false);
            ag_node_of(t)->op->backward(ctx, t);
        }
        if (t->grad && !ag_node_of(t)->retain_grad) {
            ag_buf_release(ctx, t->grad, t->numel);
            t->grad = NULL;
        }
    }
    ag_arena_reset(&ctx->scratch, false);
    return true;
}

bool ag_backward(ag_ctx *ctx, ag_tensor *loss) { return run_backward(ctx, loss, NULL, true); }

bool ag_backward_with(ag_ctx *ctx, ag_tensor *out, const ag_tensor *grad_out)
{
    return run_backward(ctx, out, grad_out, false);
}
