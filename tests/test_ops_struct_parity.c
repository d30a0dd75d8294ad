/* test_ops_struct_parity.c - the structural ops of issue 12 against PyTorch:
 * with the inputs of tests/fixtures/struct_ops.safetensors (made in float64
 * by tools/fixtures_struct.py), ag_var, ag_cumsum, ag_argmax, ag_gather,
 * ag_index_select, ag_stack, ag_chunk, ag_expand, ag_detach, ag_rms_norm and
 * ag_attention_qkv give PyTorch's outputs, and the grads of sum(out * w) for
 * the fixture's w, within 1e-4 relative (to each element, with a floor of
 * 1% of the tensor's largest). Each case's op arguments are the script's. */
#include "test_util.h"

#include <stdlib.h>

#include "nn.h"

static const char *fixture_dir = "tests/fixtures";
static nn_st *fx;

#define TOL 1e-4

static int setup(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/struct_ops.safetensors", fixture_dir);
    fx = nn_st_open(path, err, sizeof err);
    if (!fx)
        fprintf(stderr, "%s\n", err);
    return fx ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    nn_st_close(fx);
    return 0;
}

/* The fixture tensor `name` in ctx (persistent when ctx is NULL). */
static ag_tensor *get(ag_ctx *c, const char *name)
{
    int nd;
    int64_t shape[AG_MAX_DIMS];
    char err[256];
    if (!nn_st_shape(fx, name, &nd, shape))
        fail_msg("fixture lacks %s", name);
    ag_tensor *t = ag_empty(c, nd, shape);
    if (!nn_st_read(fx, name, t->data, nd, shape, err, sizeof err))
        fail_msg("%s", err);
    return t;
}

static ag_index *get_index(ag_ctx *c, const char *name)
{
    ag_tensor *t = get(c, name);
    ag_index *ix = ag_index_new(c, NULL, t->ndim, t->shape);
    for (int64_t i = 0; i < t->numel; i++)
        ix->data[i] = (int32_t)t->data[i];
    return ix;
}

/* got == the fixture's `name`: shape, then each element within TOL of it
 * relative to max(|want|, 1% of the largest |want|); -inf and NaN exactly */
static void expect(const float *got, int ndim, const int64_t *shape, const char *name)
{
    ag_tensor *want = get(NULL, name);
    if (want->ndim != ndim)
        fail_msg("%s: %d dims, want %d", name, ndim, want->ndim);
    for (int i = 0; i < ndim; i++)
        if (want->shape[i] != shape[i])
            fail_msg("%s: size %lld in dim %d, want %lld", name, (long long)shape[i], i,
                     (long long)want->shape[i]);
    double big = 0;
    for (int64_t i = 0; i < want->numel; i++)
        if (isfinite(want->data[i]) && fabs(want->data[i]) > big)
            big = fabs(want->data[i]);
    for (int64_t i = 0; i < want->numel; i++) {
        double w = want->data[i], g = got[i];
        bool same = (isnan(w) && isnan(g)) || (isinf(w) && w == g);
        double den = fabs(w) > 0.01 * big ? fabs(w) : 0.01 * big;
        if (!same && !(fabs(g - w) <= TOL * den))
            fail_msg("%s[%lld] = %.8g, want %.8g (relative error %.2g)", name, (long long)i, g, w,
                     fabs(g - w) / den);
    }
    ag_tensor_free(want);
}

static void expect_tensor(const ag_tensor *t, const char *name)
{
    assert_non_null(t);
    expect(t->data, t->ndim, t->shape, name);
}

/* One case: the inputs name.in.<key> as persistent leaves that require grad. */
typedef struct {
    const char *name;
    ag_ctx *c;
    ag_tensor *in[4];
    const char *keys[4];
    int n;
} fcase;

static fcase open_case(const char *name, const char *const *keys, int n)
{
    fcase f = {.name = name, .c = ag_ctx_new(), .n = n};
    char buf[128];
    for (int i = 0; i < n; i++) {
        f.keys[i] = keys[i];
        snprintf(buf, sizeof buf, "%s.in.%s", name, keys[i]);
        f.in[i] = get(NULL, buf);
        ag_set_requires_grad(f.in[i], true);
    }
    return f;
}
#define OPEN(name, ...) open_case((name), (const char *[]){__VA_ARGS__}, \
                                  (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)))

/* outs (n of them; one: name.out, else name.out.<i>) against the fixture;
 * then the backward of sum(out_i * w_i) against name.grad.<key> */
static void close_case(fcase *f, ag_tensor **outs, int n)
{
    char buf[128];
    ag_tensor *loss = NULL;
    for (int i = 0; i < n; i++) {
        const char *tag = n > 1 ? "." : "";
        char num[16] = "";
        if (n > 1)
            snprintf(num, sizeof num, "%d", i);
        snprintf(buf, sizeof buf, "%s.out%s%s", f->name, tag, num);
        expect_tensor(outs[i], buf);
        snprintf(buf, sizeof buf, "%s.w%s%s", f->name, tag, num);
        ag_tensor *term = ag_sum_all(f->c, ag_mul(f->c, outs[i], get(f->c, buf)));
        loss = loss ? ag_add(f->c, loss, term) : term;
    }
    assert_true(ag_backward(f->c, loss));
    for (int i = 0; i < f->n; i++) {
        snprintf(buf, sizeof buf, "%s.grad.%s", f->name, f->keys[i]);
        if (!nn_st_has(fx, buf))
            continue; /* a mask */
        assert_non_null(f->in[i]->grad);
        expect(f->in[i]->grad, f->in[i]->ndim, f->in[i]->shape, buf);
    }
    free_all(f->in, f->n);
    ag_ctx_free(f->c);
}

static void close1(fcase *f, ag_tensor *out) { close_case(f, &out, 1); }

static void test_var(void **state)
{
    (void)state;
    fcase f = OPEN("var.a", "x");
    close1(&f, ag_var(f.c, f.in[0], 1, true, false));
    f = OPEN("var.b", "x");
    close1(&f, ag_var(f.c, f.in[0], -1, false, true));
    f = OPEN("var.c", "x"); /* rows near 1000 with a spread of 0.01 */
    close1(&f, ag_var(f.c, f.in[0], 0, true, false));
}

static void test_cumsum(void **state)
{
    (void)state;
    fcase f = OPEN("cumsum.a", "x");
    close1(&f, ag_cumsum(f.c, f.in[0], 1));
    f = OPEN("cumsum.b", "x");
    close1(&f, ag_cumsum(f.c, f.in[0], -1));
}

static void check_argmax(const char *name, int axis, bool keepdim)
{
    char buf[128];
    ag_ctx *c = ag_ctx_new();
    snprintf(buf, sizeof buf, "%s.in.x", name);
    ag_index *ix = ag_argmax(c, get(c, buf), axis, keepdim);
    assert_non_null(ix);
    float got[64];
    assert_true(ix->numel <= 64);
    for (int64_t i = 0; i < ix->numel; i++)
        got[i] = (float)ix->data[i];
    snprintf(buf, sizeof buf, "%s.out", name);
    expect(got, ix->ndim, ix->shape, buf);
    ag_ctx_free(c);
}

static void test_argmax(void **state)
{
    (void)state;
    check_argmax("argmax.a", 1, false); /* a tie in row 1: the first */
    check_argmax("argmax.b", 0, true);
}

static void test_gather(void **state)
{
    (void)state;
    const struct {
        const char *name;
        int axis;
    } cases[] = {{"gather.a", 1}, {"gather.b", -1}, {"gather.c", 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[128];
        fcase f = OPEN(cases[i].name, "a");
        snprintf(buf, sizeof buf, "%s.in.idx", cases[i].name);
        close1(&f, ag_gather(f.c, f.in[0], get_index(f.c, buf), cases[i].axis));
    }
}

static void test_index_select(void **state)
{
    (void)state;
    const struct {
        const char *name;
        int axis;
    } cases[] = {{"index_select.a", 1}, {"index_select.b", 0}, {"index_select.c", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[128];
        fcase f = OPEN(cases[i].name, "a");
        snprintf(buf, sizeof buf, "%s.in.idx", cases[i].name);
        close1(&f, ag_index_select(f.c, f.in[0], get_index(f.c, buf), cases[i].axis));
    }
}

static void test_stack(void **state)
{
    (void)state;
    const struct {
        const char *name;
        int axis;
    } cases[] = {{"stack.a", 0}, {"stack.b", 1}, {"stack.c", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fcase f = OPEN(cases[i].name, "x0", "x1", "x2");
        close1(&f, ag_stack(f.c, f.in, 3, cases[i].axis));
    }
}

static void test_chunk(void **state)
{
    (void)state;
    ag_tensor *out[4];
    fcase f = OPEN("chunk.a", "x");
    assert_int_equal(ag_chunk(f.c, f.in[0], 3, 0, out), 3);
    close_case(&f, out, 3);
    f = OPEN("chunk.b", "x");
    assert_int_equal(ag_chunk(f.c, f.in[0], 2, 1, out), 2);
    close_case(&f, out, 2);
}

static void test_expand(void **state)
{
    (void)state;
    fcase f = OPEN("expand.a", "x");
    close1(&f, ag_expand(f.c, f.in[0], AG_SHAPE(2, 3, 4)));
    f = OPEN("expand.b", "x");
    close1(&f, ag_expand(f.c, f.in[0], AG_SHAPE(1, 4)));
    f = OPEN("expand.c", "x");
    close1(&f, ag_expand(f.c, f.in[0], AG_SHAPE(-1, 5, -1)));
}

static void test_detach(void **state)
{
    (void)state;
    fcase f = OPEN("detach.a", "x");
    close1(&f, ag_mul(f.c, f.in[0], ag_detach(f.c, f.in[0])));
}

static void test_rms_norm(void **state)
{
    (void)state;
    fcase f = OPEN("rms_norm.a", "x", "w");
    close1(&f, ag_rms_norm(f.c, f.in[0], f.in[1], 1e-5f));
    f = OPEN("rms_norm.b", "x");
    close1(&f, ag_rms_norm(f.c, f.in[0], NULL, 1e-6f));
}

static void test_attention_qkv(void **state)
{
    (void)state;
    float sc = 0.5f; /* hs 4: 4^-0.5 */
    fcase f = OPEN("attn.none", "q", "k", "v");
    close1(&f, ag_attention_qkv(f.c, f.in[0], f.in[1], f.in[2], NULL, false, sc, 0.0f, true));
    f = OPEN("attn.causal", "q", "k", "v");
    close1(&f, ag_attention_qkv(f.c, f.in[0], f.in[1], f.in[2], NULL, true, sc, 0.0f, true));
    f = OPEN("attn.mask", "q", "k", "v", "mask");
    ag_set_requires_grad(f.in[3], false);
    close1(&f, ag_attention_qkv(f.c, f.in[0], f.in[1], f.in[2], f.in[3], false, sc, 0.0f, true));
    f = OPEN("attn.pad_causal", "q", "k", "v", "mask");
    ag_set_requires_grad(f.in[3], false);
    close1(&f, ag_attention_qkv(f.c, f.in[0], f.in[1], f.in[2], f.in[3], true, sc, 0.0f, true));
    /* the row-block kernel, S > T and S < T */
    f = OPEN("attn.big_s", "q", "k", "v");
    close1(&f, ag_attention_qkv(f.c, f.in[0], f.in[1], f.in[2], NULL, true, 0.7f, 0.0f, true));
    f = OPEN("attn.big_t", "q", "k", "v", "mask");
    ag_set_requires_grad(f.in[3], false);
    close1(&f, ag_attention_qkv(f.c, f.in[0], f.in[1], f.in[2], f.in[3], true, 0.7f, 0.0f, true));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_var),         cmocka_unit_test(test_cumsum),
        cmocka_unit_test(test_argmax),      cmocka_unit_test(test_gather),
        cmocka_unit_test(test_index_select), cmocka_unit_test(test_stack),
        cmocka_unit_test(test_chunk),       cmocka_unit_test(test_expand),
        cmocka_unit_test(test_detach),      cmocka_unit_test(test_rms_norm),
        cmocka_unit_test(test_attention_qkv),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
