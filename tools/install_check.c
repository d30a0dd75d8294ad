/* install_check.c - built outside the tree against an installed agrad (via
 * pkg-config) by tools/install_check.sh: a Linear layer, a loss, backward,
 * and the grads checked against values worked out by hand; then an op
 * written with the installed ag_op.h (its forward on ag_parallel_for). */
#include <math.h>
#include <stdio.h>

#include <ag.h>
#include <ag_op.h>
#include <nn.h>

/* y = x^3, dx += 3 x^2 g */
static void cube_range(int64_t lo, int64_t hi, void *user)
{
    ag_tensor **xy = user;
    for (int64_t i = lo; i < hi; i++)
        xy[1]->data[i] = xy[0]->data[i] * xy[0]->data[i] * xy[0]->data[i];
}

static void cube_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    float *gx = ag_grad_of(ctx, x);
    for (int64_t i = 0; gx && i < x->numel; i++)
        gx[i] += 3.0f * x->data[i] * x->data[i] * out->grad[i];
}

static const ag_op cube_op = {"cube", cube_backward, AG_IN(0)};

static ag_tensor *cube(ag_ctx *c, ag_tensor *x)
{
    if (!ag_check_inputs("cube", &x, 1))
        return NULL;
    ag_tensor *y = ag_result(c, &cube_op, &x, 1, x->ndim, x->shape);
    if (y)
        ag_parallel_for(x->numel, 1, cube_range, (ag_tensor *[]){x, y});
    return y;
}

/* d/dx sum(cube(x)) at x = (1, -2, 0.5) is 3 x^2 = (3, 12, 0.75) */
static int custom_op_ok(void)
{
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_param("x", AG_SHAPE(3));
    x->data[0] = 1.0f;
    x->data[1] = -2.0f;
    x->data[2] = 0.5f;
    ag_tensor *y = cube(c, x);
    int ok = ag_requires_grad(y) && ag_op_of(y) == &cube_op && ag_backward(c, ag_sum_all(c, y)) &&
             fabsf(y->data[1] + 8.0f) < 1e-6f && fabsf(x->grad[0] - 3.0f) < 1e-6f &&
             fabsf(x->grad[1] - 12.0f) < 1e-6f && fabsf(x->grad[2] - 0.75f) < 1e-6f;
    ag_ctx_free(c);
    ag_tensor_free(x);
    return ok;
}

int main(void)
{
    nn_params p;
    nn_params_init(&p);
    ag_rng rng = ag_rng_new(1);
    nn_linear l;
    nn_linear_init(&l, &p, "fc", 2, 1, true, &rng);
    l.weight->data[0] = 0.5f; /* y = 0.5 x0 - 1 x1 + 0.25 */
    l.weight->data[1] = -1.0f;
    l.bias->data[0] = 0.25f;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_from_data(c, (float[]){2, 1}, AG_SHAPE(1, 2));
    ag_tensor *y = nn_linear_forward(c, &l, x);       /* 1 - 1 + 0.25 = 0.25 */
    ag_tensor *loss = ag_sum_all(c, ag_mul(c, y, y)); /* 0.0625; d/dy = 0.5 */
    nn_params_zero_grad(&p);
    ag_backward(c, loss);
    /* dW = 0.5 * x = (1, 0.5), db = 0.5 */
    int ok = fabsf(ag_item(loss) - 0.0625f) < 1e-6f && fabsf(l.weight->grad[0] - 1.0f) < 1e-6f &&
             fabsf(l.weight->grad[1] - 0.5f) < 1e-6f && fabsf(l.bias->grad[0] - 0.5f) < 1e-6f;
    ok = custom_op_ok() && ok;
    printf("install check: agrad %s, matmul %s, %d params: %s\n", AG_VERSION, ag_matmul_backend(),
           p.n, ok ? "ok" : "WRONG");
    ag_ctx_free(c);
    nn_params_free(&p);
    return ok ? 0 : 1;
}
