/* test_optim.c - AdamW and SGD with momentum against PyTorch: five steps on
 * a fixed least-squares problem (tests/fixtures/optim.safetensors, made by
 * tools/make_fixtures.py) give the same parameters after every step; plus
 * grad-norm clipping and changing the learning rate between steps. */
#include "test_util.h"

#include <stdlib.h>

#include "nn.h"

static const char *fixture_dir = "tests/fixtures";

typedef struct {
    nn_st *f;
    ag_tensor *x, *y;
    nn_params p;
    ag_tensor *w, *b;
} problem;

static ag_tensor *load(const nn_st *f, const char *name, int nd, const int64_t *shape)
{
    char err[256];
    ag_tensor *t = ag_zeros(NULL, nd, shape);
    if (!nn_st_read(f, name, t->data, nd, shape, err, sizeof err))
        fail_msg("%s", err);
    return t;
}

static void setup(problem *pb)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/optim.safetensors", fixture_dir);
    pb->f = nn_st_open(path, err, sizeof err);
    if (!pb->f)
        fail_msg("%s", err);
    pb->x = load(pb->f, "x", AG_SHAPE(8, 5));
    pb->y = load(pb->f, "y", AG_SHAPE(8, 3));
    nn_params_init(&pb->p);
    pb->w = nn_param(&pb->p, NULL, "weight", AG_SHAPE(3, 5));
    pb->b = nn_param(&pb->p, NULL, "bias", AG_SHAPE(3));
    assert_true(nn_st_read(pb->f, "weight", pb->w->data, AG_SHAPE(3, 5), err, sizeof err));
    assert_true(nn_st_read(pb->f, "bias", pb->b->data, AG_SHAPE(3), err, sizeof err));
}

static void teardown(problem *pb)
{
    ag_tensor_free(pb->x);
    ag_tensor_free(pb->y);
    nn_params_free(&pb->p);
    nn_st_close(pb->f);
}

/* mean((x @ W^T + b - y)^2) and its grads */
static float loss_and_grads(ag_ctx *c, problem *pb)
{
    ag_ctx_reset(c);
    nn_params_zero_grad(&pb->p);
    ag_tensor *d = ag_sub(c, ag_add(c, ag_matmul_nt(c, pb->x, pb->w), pb->b), pb->y);
    ag_tensor *loss = ag_mean_all(c, ag_mul(c, d, d));
    assert_true(ag_backward(c, loss));
    return ag_item(loss);
}

static void compare_step(problem *pb, const char *tag, int step, float loss)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%d.weight", tag, step);
    ag_tensor *w = load(pb->f, name, AG_SHAPE(3, 5));
    snprintf(name, sizeof name, "%s.%d.bias", tag, step);
    ag_tensor *b = load(pb->f, name, AG_SHAPE(3));
    snprintf(name, sizeof name, "%s.%d.loss", tag, step);
    ag_tensor *l = load(pb->f, name, 0, NULL);
    assert_close(pb->w->data, w->data, 15, 1e-5);
    assert_close(pb->b->data, b->data, 3, 1e-5);
    assert_close(&loss, l->data, 1, 1e-5);
    ag_tensor_free(w);
    ag_tensor_free(b);
    ag_tensor_free(l);
}

static void run_adamw(const char *tag, float lr, float b1, float b2, float eps, float wd)
{
    problem pb;
    setup(&pb);
    nn_adamw opt;
    nn_adamw_init(&opt, &pb.p, lr);
    opt.beta1 = b1;
    opt.beta2 = b2;
    opt.eps = eps;
    opt.weight_decay = wd;
    ag_ctx *c = ag_ctx_new();
    for (int step = 1; step <= 5; step++) {
        float loss = loss_and_grads(c, &pb);
        nn_adamw_step(&opt);
        compare_step(&pb, tag, step, loss);
    }
    assert_int_equal(opt.step, 5);
    ag_ctx_free(c);
    nn_adamw_free(&opt);
    teardown(&pb);
}

static void test_adamw_defaults_match_pytorch(void **state)
{
    (void)state;
    problem pb;
    setup(&pb);
    nn_adamw opt;
    nn_adamw_init(&opt, &pb.p, 0.05f);
    /* PyTorch's defaults */
    assert_true(opt.beta1 == 0.9f && opt.beta2 == 0.999f && opt.eps == 1e-8f &&
                opt.weight_decay == 0.01f);
    nn_adamw_free(&opt);
    teardown(&pb);
    run_adamw("adamw", 0.05f, 0.9f, 0.999f, 1e-8f, 0.01f);
}

static void test_adamw_custom_match_pytorch(void **state)
{
    (void)state;
    run_adamw("adamw2", 0.02f, 0.8f, 0.99f, 1e-6f, 0.1f);
}

static void test_sgd_momentum_matches_pytorch(void **state)
{
    (void)state;
    problem pb;
    setup(&pb);
    nn_sgd opt;
    nn_sgd_init(&opt, &pb.p, 0.1f, 0.9f, 0.01f);
    ag_ctx *c = ag_ctx_new();
    for (int step = 1; step <= 5; step++) {
        float loss = loss_and_grads(c, &pb);
        nn_sgd_step(&opt);
        compare_step(&pb, "sgd", step, loss);
    }
    ag_ctx_free(c);
    nn_sgd_free(&opt);
    teardown(&pb);
}

static void test_lr_change_takes_effect(void **state)
{
    (void)state;
    /* plain SGD, one parameter: p -= lr * g, with lr changed between steps */
    nn_params p;
    nn_params_init(&p);
    ag_tensor *w = nn_param(&p, NULL, "w", AG_SHAPE(1));
    w->data[0] = 1.0f;
    nn_sgd opt;
    nn_sgd_init(&opt, &p, 0.5f, 0.0f, 0.0f);
    ag_zero_grad(w);
    w->grad[0] = 2.0f;
    nn_sgd_step(&opt);                 /* 1 - 0.5*2 = 0 */
    assert_true(w->data[0] == 0.0f);
    opt.lr = 0.25f;
    nn_sgd_step(&opt);                 /* 0 - 0.25*2 = -0.5 */
    assert_true(w->data[0] == -0.5f);
    nn_sgd_free(&opt);
    nn_params_free(&p);
}

static void test_clip_grad_norm(void **state)
{
    (void)state;
    nn_params p;
    nn_params_init(&p);
    ag_tensor *a = nn_param(&p, NULL, "a", AG_SHAPE(2));
    ag_tensor *b = nn_param(&p, NULL, "b", AG_SHAPE(1));
    ag_zero_grad(a);
    ag_zero_grad(b);
    a->grad[0] = 3.0f; /* norm sqrt(9 + 16 + 144) = 13 */
    a->grad[1] = 4.0f;
    b->grad[0] = 12.0f;
    float norm = nn_clip_grad_norm(&p, 100.0f); /* below the limit: unchanged */
    assert_float_equal(norm, 13.0f, 1e-5);
    assert_float_equal(a->grad[0], 3.0f, 0);
    norm = nn_clip_grad_norm(&p, 6.5f);          /* halves every grad */
    assert_float_equal(norm, 13.0f, 1e-5);
    assert_float_equal(a->grad[0], 1.5f, 1e-5);
    assert_float_equal(a->grad[1], 2.0f, 1e-5);
    assert_float_equal(b->grad[0], 6.0f, 1e-5);
    const char *bad = NULL;
    assert_true(nn_grads_finite(&p, &bad));
    b->grad[0] = NAN;
    assert_false(nn_grads_finite(&p, &bad));
    assert_string_equal(bad, "b");
    nn_params_free(&p);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_defaults_match_pytorch),
        cmocka_unit_test(test_adamw_custom_match_pytorch),
        cmocka_unit_test(test_sgd_momentum_matches_pytorch),
        cmocka_unit_test(test_lr_change_takes_effect),
        cmocka_unit_test(test_clip_grad_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
