/* install_check.c - built outside the tree against an installed agrad (via
 * pkg-config) by tools/install_check.sh: a Linear layer, a loss, backward,
 * and the grads checked against values worked out by hand. */
#include <math.h>
#include <stdio.h>

#include <ag.h>
#include <nn.h>

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
    printf("install check: agrad %s, matmul %s, %d params: %s\n", AG_VERSION, ag_matmul_backend(),
           p.n, ok ? "ok" : "WRONG");
    ag_ctx_free(c);
    nn_params_free(&p);
    return ok ? 0 : 1;
}
