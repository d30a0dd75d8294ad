/* test_custom_op.c - writing an op with ag_op.h alone, linked against the
 * shared library as a user would: ag_op.h's own example (square), an op
 * with saved attributes (ag_save/ag_saved), one over two inputs read back
 * with ag_input, what the reads mask lets ag_release free (and the default
 * 0 that reads everything), and ag_parallel_for: every index once, ranges
 * of at least the minimum, serial when small or nested, and a kernel on it
 * that gives the serial result. */
#include "test_util.h"

#include <omp.h>
#include <stdlib.h>

#include "ag_op.h"

/* ================================================================ square, as ag_op.h shows it */

static void square_backward(ag_ctx *ctx, ag_tensor *out)
{
    ag_tensor *x = ag_input(out, 0);
    float *gx = ag_grad_of(ctx, x);
    for (int64_t i = 0; gx && i < x->numel; i++)
        gx[i] += 2.0f * x->data[i] * out->grad[i];
}
static const ag_op square_op = {"square", square_backward, AG_IN(0)};

static ag_tensor *square(ag_ctx *c, ag_tensor *x)
{
    if (!ag_check_inputs("square", &x, 1))
        return NULL;
    ag_tensor *y = ag_result(c, &square_op, &x, 1, x->ndim, x->shape);
    for (int64_t i = 0; y && i < x->numel; i++)
        y->data[i] = x->data[i] * x->data[i];
    return y;
}

static ag_tensor *sum_square(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return ag_sum_all(c, square(c, in[0]));
}

static void test_square_values_record_and_grads(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_param("x", AG_SHAPE(2, 3));
    const float xs[6] = {-1.5f, 0.0f, 2.0f, 0.5f, -3.0f, 1.0f};
    memcpy(x->data, xs, sizeof xs);
    ag_tensor *y = square(c, x);
    const float want[6] = {2.25f, 0.0f, 4.0f, 0.25f, 9.0f, 1.0f};
    assert_close(y->data, want, 6, 0.0);
    assert_ptr_equal(ag_op_of(y), &square_op);
    assert_int_equal(ag_num_inputs(y), 1);
    assert_ptr_equal(ag_input(y, 0), x);
    assert_true(ag_requires_grad(y));
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    const float gwant[6] = {-3.0f, 0.0f, 4.0f, 1.0f, -6.0f, 2.0f};
    assert_close(x->grad, gwant, 6, 0.0);

    ag_zero_grad(x);
    assert_gradcheck(sum_square, &x, 1, NULL);

    /* a failed earlier op (NULL) passes through without a new report */
    catch_errors();
    assert_null(square(c, NULL));
    assert_int_equal(error_count, 0);
    ag_set_error_handler(NULL, NULL);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

/* ================================================================ saved attributes */

/* y = a x + b with (a, b) the op's attributes: dx = a g */
typedef struct {
    float a, b;
} affine_attr;

static void affine_backward(ag_ctx *ctx, ag_tensor *out)
{
    const affine_attr *at = ag_saved(out);
    float *gx = ag_grad_of(ctx, ag_input(out, 0));
    for (int64_t i = 0; gx && i < out->numel; i++)
        gx[i] += at->a * out->grad[i];
}
static const ag_op affine_op = {"affine", affine_backward, AG_NO_DATA};

static const affine_attr *last_saved;

static ag_tensor *affine(ag_ctx *c, ag_tensor *x, float a, float b)
{
    if (!ag_check_inputs("affine", &x, 1))
        return NULL;
    ag_tensor *y = ag_result(c, &affine_op, &x, 1, x->ndim, x->shape);
    if (!y)
        return NULL;
    affine_attr at = {a, b};
    last_saved = ag_save(c, y, &at, sizeof at);
    for (int64_t i = 0; i < x->numel; i++)
        y->data[i] = a * x->data[i] + b;
    return y;
}

static ag_tensor *sum_affine(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return ag_sum_all(c, ag_tanh(c, affine(c, in[0], -0.75f, 0.25f)));
}

static void test_attributes_saved_only_when_recorded(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_param("x", AG_SHAPE(4));
    ag_fill(x, 2.0f);
    ag_tensor *y = affine(c, x, 3.0f, 1.0f);
    assert_float_equal(y->data[0], 7.0f, 0.0f);
    assert_non_null(last_saved);
    assert_ptr_equal(ag_saved(y), last_saved);
    assert_float_equal(last_saved->a, 3.0f, 0.0f);
    assert_float_equal(last_saved->b, 1.0f, 0.0f);
    assert_true(ag_backward(c, ag_sum_all(c, y)));
    assert_float_equal(x->grad[3], 3.0f, 0.0f);

    /* gradients off: nothing recorded, nothing kept */
    ag_set_grad_enabled(c, false);
    ag_tensor *z = affine(c, x, 3.0f, 1.0f);
    assert_float_equal(z->data[1], 7.0f, 0.0f);
    assert_null(last_saved);
    assert_null(ag_op_of(z));
    assert_null(ag_saved(z));
    ag_set_grad_enabled(c, true);

    ag_fill_normal(x, TEST_RNG(3), 0.0f, 1.0f);
    assert_gradcheck(sum_affine, &x, 1, NULL);
    ag_ctx_free(c);
    ag_tensor_free(x);
}

/* ================================================================ two inputs */

/* y = x * w / (1 + w^2) elementwise, same shapes: dx = g w / (1 + w^2),
 * dw = g x (1 - w^2) / (1 + w^2)^2 */
static void shrink_backward(ag_ctx *ctx, ag_tensor *out)
{
    assert_int_equal(ag_num_inputs(out), 2);
    ag_tensor *x = ag_input(out, 0), *w = ag_input(out, 1);
    float *gx = ag_grad_of(ctx, x), *gw = ag_grad_of(ctx, w);
    for (int64_t i = 0; i < out->numel; i++) {
        float wi = w->data[i], d = 1.0f + wi * wi, g = out->grad[i];
        if (gx)
            gx[i] += g * wi / d;
        if (gw)
            gw[i] += g * x->data[i] * (1.0f - wi * wi) / (d * d);
    }
}
static const ag_op shrink_op = {"shrink", shrink_backward, AG_IN(0) | AG_IN(1)};

static ag_tensor *shrink(ag_ctx *c, ag_tensor *x, ag_tensor *w)
{
    ag_tensor *in[2] = {x, w};
    if (!ag_check_inputs("shrink", in, 2))
        return NULL;
    ag_tensor *y = ag_result(c, &shrink_op, in, 2, x->ndim, x->shape);
    for (int64_t i = 0; y && i < x->numel; i++)
        y->data[i] = x->data[i] * w->data[i] / (1.0f + w->data[i] * w->data[i]);
    return y;
}

static ag_tensor *sum_shrink(ag_ctx *c, ag_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    /* the op twice over a shared input, so grads add up across its uses */
    return ag_sum_all(c, ag_mul(c, shrink(c, in[0], in[1]), shrink(c, in[1], in[0])));
}

static void test_two_inputs_gradcheck(void **state)
{
    (void)state;
    ag_tensor *x = rand_leaf(1, 1.0f, AG_SHAPE(3, 5)), *w = rand_leaf(2, 1.0f, AG_SHAPE(3, 5));
    assert_gradcheck(sum_shrink, ((ag_tensor *[]){x, w}), 2, NULL);
    ag_tensor_free(x);
    ag_tensor_free(w);
}

/* ================================================================ reads */

/* An op that reads what `reads` says, with reads filled in at run time. */
static void copy_backward(ag_ctx *ctx, ag_tensor *out)
{
    float *gx = ag_grad_of(ctx, ag_input(out, 0));
    for (int64_t i = 0; gx && i < out->numel; i++)
        gx[i] += out->grad[i];
}

static ag_tensor *copy_op(ag_ctx *c, const ag_op *op, ag_tensor *x)
{
    ag_tensor *y = ag_result(c, op, &x, 1, x->ndim, x->shape);
    memcpy(y->data, x->data, (size_t)x->numel * sizeof(float));
    return y;
}

/* ag_release(x) frees x's data at once exactly when no recorded backward reads it */
static void test_reads_mask_decides_what_release_frees(void **state)
{
    (void)state;
    const ag_op reads_x = {"reads_x", copy_backward, AG_IN(0)};
    const ag_op reads_out = {"reads_out", copy_backward, AG_OUT};
    const ag_op reads_nothing = {"reads_nothing", copy_backward, AG_NO_DATA};
    const ag_op unset = {.name = "unset", .backward = copy_backward}; /* 0: everything */
    const ag_op *ops[4] = {&reads_x, &reads_out, &reads_nothing, &unset};
    const bool x_kept[4] = {true, false, false, true}, y_kept[4] = {false, true, false, true};
    ag_ctx *c = ag_ctx_new();
    ag_tensor *w = ag_param("w", AG_SHAPE(8));
    ag_fill(w, 1.5f);
    for (int k = 0; k < 4; k++) {
        ag_tensor *x = ag_mul_scalar(c, w, 2.0f); /* a non-leaf, so release may free it */
        ag_tensor *y = copy_op(c, ops[k], x);
        ag_tensor *loss = ag_sum_all(c, y);
        ag_release(c, x);
        ag_release(c, y);
        assert_true((x->data != NULL) == x_kept[k]);
        assert_true((y->data != NULL) == y_kept[k]);
        ag_zero_grad(w);
        assert_true(ag_backward(c, loss));
        assert_float_equal(w->grad[7], 2.0f, 0.0f);
        ag_ctx_reset(c);
    }
    ag_ctx_free(c);
    ag_tensor_free(w);
}

/* ================================================================ ag_parallel_for */

typedef struct {
    int *hits;         /* per index */
    int64_t min_len;   /* shortest range seen */
    int calls;
} cover;

static void mark(int64_t lo, int64_t hi, void *user)
{
    cover *cv = user;
    for (int64_t i = lo; i < hi; i++)
        cv->hits[i]++;
#pragma omp critical
    {
        cv->calls++;
        if (hi - lo < cv->min_len)
            cv->min_len = hi - lo;
    }
}

static cover run_cover(int64_t n, int64_t min_per_thread)
{
    cover cv = {calloc((size_t)(n ? n : 1), sizeof(int)), INT64_MAX, 0};
    ag_parallel_for(n, min_per_thread, mark, &cv);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(cv.hits[i], 1);
    free(cv.hits);
    return cv;
}

static void test_parallel_for_covers_each_index_once(void **state)
{
    (void)state;
    int saved = ag_get_num_threads();
    ag_set_num_threads(4);
    /* split: 4 threads, ranges at least the minimum */
    cover cv = run_cover(100000, 1000);
    assert_int_equal(cv.calls, 4);
    assert_true(cv.min_len >= 1000);
    /* fewer threads than the pool when only 3 minimum-sized ranges fit */
    cv = run_cover(3500, 1000);
    assert_int_equal(cv.calls, 3);
    assert_true(cv.min_len >= 1000);
    /* below twice the minimum: one call on this thread; n 0 runs nothing */
    cv = run_cover(1999, 1000);
    assert_int_equal(cv.calls, 1);
    assert_int_equal(cv.min_len, 1999);
    cv = run_cover(0, 1);
    assert_int_equal(cv.calls, 0);
    /* min_per_thread 0 means 1: as many threads as the pool */
    cv = run_cover(7, 0);
    assert_int_equal(cv.calls, 4);
    /* inside a parallel region: serial, no nested team */
    int calls[2] = {0, 0};
#pragma omp parallel num_threads(2)
    {
        cover in = run_cover(100000, 10);
        calls[omp_get_thread_num() % 2] = in.calls;
    }
    assert_int_equal(calls[0], 1);
    assert_int_equal(calls[1], 1);
    ag_set_num_threads(saved);
}

/* A custom kernel on the pool: y = sqrt(|x|) + x^3 by ranges. */
typedef struct {
    const float *x;
    float *y;
} kernel_args;

static void kernel_range(int64_t lo, int64_t hi, void *user)
{
    kernel_args *k = user;
    for (int64_t i = lo; i < hi; i++)
        k->y[i] = sqrtf(fabsf(k->x[i])) + k->x[i] * k->x[i] * k->x[i];
}

static void test_parallel_for_kernel_matches_serial(void **state)
{
    (void)state;
    int saved = ag_get_num_threads();
    int64_t n = 200003;
    ag_tensor *x = ag_randn(NULL, TEST_RNG(5), 0.0f, 1.0f, AG_SHAPE(n));
    float *serial = malloc((size_t)n * sizeof *serial), *par = malloc((size_t)n * sizeof *par);
    ag_set_num_threads(1);
    ag_parallel_for(n, 4096, kernel_range, &(kernel_args){x->data, serial});
    ag_set_num_threads(3);
    ag_parallel_for(n, 4096, kernel_range, &(kernel_args){x->data, par});
    assert_memory_equal(serial, par, (size_t)n * sizeof *par);
    assert_float_equal(serial[17], sqrtf(fabsf(x->data[17])) + powf(x->data[17], 3.0f), 1e-5f);
    free(serial);
    free(par);
    ag_tensor_free(x);
    ag_set_num_threads(saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_square_values_record_and_grads),
        cmocka_unit_test(test_attributes_saved_only_when_recorded),
        cmocka_unit_test(test_two_inputs_gradcheck),
        cmocka_unit_test(test_reads_mask_decides_what_release_frees),
        cmocka_unit_test(test_parallel_for_covers_each_index_once),
        cmocka_unit_test(test_parallel_for_kernel_matches_serial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
