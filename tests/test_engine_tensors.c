/* test_engine_tensors.c - the tensor basics around the engine: constructors,
 * generators, ag_item, ag_shape_str, ag_print, and DOT export (nodes,
 * labels, edges, escaping). */
#include "test_util.h"

#include "ag_op.h" /* ag_op_of */

#include <stdlib.h>
#include <unistd.h>

/* The text fn writes to a FILE, via a tmpfile. Caller frees. */
static char *capture(void (*fn)(FILE *, const ag_tensor *), const ag_tensor *t)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    fn(f, t);
    long len = ftell(f);
    assert_true(len >= 0);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

#define assert_contains(hay, needle)                                                     \
    do {                                                                                 \
        if (!strstr((hay), (needle)))                                                    \
            fail_msg("\"%s\" not found in:\n%s", (needle), (hay));                       \
    } while (0)

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ================================================================ tensors */

static void test_rand_same_seed_same_numbers(void **state)
{
    (void)state;
    ag_tensor *a = ag_rand(NULL, TEST_RNG(42), -2.0f, 3.0f, AG_SHAPE(1000));
    ag_tensor *b = ag_rand(NULL, TEST_RNG(42), -2.0f, 3.0f, AG_SHAPE(1000));
    ag_tensor *o = ag_rand(NULL, TEST_RNG(43), -2.0f, 3.0f, AG_SHAPE(1000));
    assert_memory_equal(a->data, b->data, 1000 * sizeof(float));
    int same = 0;
    double mean = 0;
    for (int i = 0; i < 1000; i++) {
        assert_true(a->data[i] >= -2.0f && a->data[i] < 3.0f);
        same += a->data[i] == o->data[i];
        mean += a->data[i] / 1000.0;
    }
    assert_true(same < 5);
    assert_float_equal(mean, 0.5, 0.15);

    ag_tensor *n1 = ag_randn(NULL, TEST_RNG(7), 1.0f, 2.0f, AG_SHAPE(20000));
    ag_tensor *n2 = ag_randn(NULL, TEST_RNG(7), 1.0f, 2.0f, AG_SHAPE(20000));
    assert_memory_equal(n1->data, n2->data, 20000 * sizeof(float));
    double m = 0, v = 0;
    for (int i = 0; i < 20000; i++)
        m += n1->data[i] / 20000.0;
    for (int i = 0; i < 20000; i++)
        v += (n1->data[i] - m) * (n1->data[i] - m) / 20000.0;
    assert_float_equal(m, 1.0, 0.06);
    assert_float_equal(sqrt(v), 2.0, 0.06);
    ag_tensor *ts[5] = {a, b, o, n1, n2};
    free_all(ts, 5);
}

/* Given no ag_rng, ag_rand draws from the ctx's generator: it advances
 * between calls, and ag_ctx_manual_seed restarts it. An explicit rng wins
 * over the ctx's, and with neither there is no generator to draw from. */
static void test_ctx_generator_is_seedable(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_ctx_manual_seed(c, 5);
    ag_tensor *a = ag_rand(c, NULL, 0.0f, 1.0f, AG_SHAPE(64));
    ag_tensor *a2 = ag_rand(c, NULL, 0.0f, 1.0f, AG_SHAPE(64));
    assert_memory_not_equal(a->data, a2->data, 64 * sizeof(float));
    ag_ctx_manual_seed(c, 5);
    ag_tensor *b = ag_rand(c, NULL, 0.0f, 1.0f, AG_SHAPE(64));
    assert_memory_equal(a->data, b->data, 64 * sizeof(float));
    ag_tensor *ref = ag_rand(NULL, TEST_RNG(5), 0.0f, 1.0f, AG_SHAPE(64));
    assert_memory_equal(a->data, ref->data, 64 * sizeof(float));

    ag_ctx_manual_seed(c, 9);
    ag_tensor *n = ag_randn(c, NULL, 0.0f, 1.0f, AG_SHAPE(64));
    ag_rng r = ag_rng_new(9);
    for (int i = 0; i < 64; i++)
        assert_true(n->data[i] == ag_rng_normal(&r));
    assert_int_equal(ag_ctx_rng(c)->seed, 9);

    ag_tensor *own = ag_rand(c, TEST_RNG(5), 0.0f, 1.0f, AG_SHAPE(64)); /* ctx's is at seed 9 */
    assert_memory_equal(own->data, ref->data, 64 * sizeof(float));
    ag_tensor *none = ref;
    assert_ag_error(none = ag_randn(NULL, NULL, 0.0f, 1.0f, AG_SHAPE(3)), "ag_randn",
                    "no generator");
    assert_null(none);
    ag_tensor_free(ref);
    ag_ctx_free(c);
}

static void test_constructors_values_and_shapes(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *z = ag_zeros(c, AG_SHAPE(2, 3));
    assert_shape(z, 2, 3);
    ag_tensor *z0 = ag_full(c, 4.0f, AG_SCALAR); /* a 0-dim shape without AG_SHAPE() */
    assert_int_equal(z0->ndim, 0);
    assert_int_equal(z0->numel, 1);
    assert_float_equal(ag_item(z0), 4.0f, 0.0f);
    assert_int_equal(z->numel, 6);
    ag_tensor *o = ag_ones(NULL, AG_SHAPE(2, 1, 3, 1, 2)); /* 5-D, persistent */
    assert_shape(o, 2, 1, 3, 1, 2);
    assert_int_equal(o->numel, 12);
    ag_tensor *f = ag_full(c, -1.25f, AG_SHAPE(1, 2, 1, 2, 1, 2)); /* AG_MAX_DIMS */
    assert_shape(f, 1, 2, 1, 2, 1, 2);
    for (int i = 0; i < 6; i++)
        assert_true(z->data[i] == 0.0f);
    for (int i = 0; i < 12; i++)
        assert_true(o->data[i] == 1.0f);
    for (int i = 0; i < 8; i++)
        assert_true(f->data[i] == -1.25f);

    float src[4] = {1, 2, 3, 4};
    ag_tensor *d = ag_from_data(c, src, AG_SHAPE(4, 1));
    src[0] = 100; /* copied, not aliased */
    assert_shape(d, 4, 1);
    assert_true(d->data[0] == 1.0f && d->data[3] == 4.0f);

    ag_tensor *s = ag_scalar(c, 3.5f);
    assert_scalar_shape(s);
    assert_int_equal(s->numel, 1);
    assert_true(s->data[0] == 3.5f);
    ag_tensor *e = ag_zeros(c, AG_SHAPE(3, 0));
    assert_shape(e, 3, 0);
    assert_int_equal(e->numel, 0);

    /* defaults: no grad, leaf, unnamed; params are zeroed, named, requiring grad */
    assert_false(ag_requires_grad(z));
    assert_null(ag_op_of(z));
    assert_null(z->name);
    assert_ptr_equal(ag_tensor_ctx(z), c);
    char name[8] = "fc.w";
    ag_tensor *p = ag_param(name, AG_SHAPE(3));
    name[0] = 'X'; /* the name is copied */
    assert_string_equal(p->name, "fc.w");
    assert_true(ag_requires_grad(p));
    for (int i = 0; i < 3; i++)
        assert_true(p->data[i] == 0.0f);
    ag_tensor_free(o);
    ag_tensor_free(p);
    ag_ctx_free(c);
}

static void test_item_reads_the_one_element(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    assert_true(ag_item(ag_scalar(c, -7.5f)) == -7.5f);
    const float d[1] = {0.125f};
    assert_true(ag_item(ag_from_data(c, d, AG_SHAPE(1, 1, 1))) == 0.125f);
    const float xd[3] = {1, 2, 3};
    ag_tensor *x = ag_from_data(c, xd, AG_SHAPE(3));
    assert_true(ag_item(ag_sum_all(c, x)) == 6.0f);
    ag_ctx_free(c);
}

static void test_shape_str(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    char b[64];
    assert_string_equal(ag_shape_str(ag_zeros(c, AG_SHAPE(2, 3, 4)), b, sizeof b), "(2, 3, 4)");
    assert_string_equal(ag_shape_str(ag_scalar(c, 1), b, sizeof b), "()");
    assert_string_equal(ag_shape_str(ag_zeros(c, AG_SHAPE(5)), b, sizeof b), "(5)");
    assert_string_equal(ag_shape_str(ag_zeros(c, AG_SHAPE(0, 7)), b, sizeof b), "(0, 7)");
    assert_string_equal(ag_shape_str(ag_zeros(c, AG_SHAPE(1, 2, 1, 2, 1)), b, sizeof b),
                        "(1, 2, 1, 2, 1)");
    /* a short buffer gets a terminated prefix */
    char s[5];
    memset(s, 'x', sizeof s);
    ag_shape_str(ag_zeros(c, AG_SHAPE(2, 3, 4)), s, sizeof s);
    assert_string_equal(s, "(2, ");
    ag_ctx_free(c);
}

static void print_case(const ag_tensor *t, const char *want)
{
    char *got = capture(ag_print, t);
    assert_string_equal(got, want);
    free(got);
}

static void test_print_format(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    const float d[6] = {1, 2.5f, -3, 0.1f, 1e-7f, 123456789.0f};
    print_case(ag_from_data(c, d, AG_SHAPE(2, 3)),
               "tensor(2, 3) [[1, 2.5, -3], [0.1, 1e-07, 1.23457e+08]]\n");
    print_case(ag_from_data(c, d, AG_SHAPE(3)), "tensor(3) [1, 2.5, -3]\n");
    print_case(ag_from_data(c, d, AG_SHAPE(3, 1, 2)),
               "tensor(3, 1, 2) [[[1, 2.5]], [[-3, 0.1]], [[1e-07, 1.23457e+08]]]\n");
    print_case(ag_scalar(c, -0.5f), "tensor() -0.5\n");
    print_case(ag_zeros(c, AG_SHAPE(2, 0)), "tensor(2, 0) []\n");
    ag_ctx_free(c);
}

/* ================================================================ DOT */

/* loss = sum(tanh(x @ W^T)) with W a named parameter */
static void test_write_dot_has_ops_shapes_names_and_edges(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *w = ag_param("layer.weight", AG_SHAPE(3, 2));
    ag_tensor *x = ag_ones(c, AG_SHAPE(4, 2));
    ag_tensor *y = ag_matmul_nt(c, x, w);
    ag_tensor *h = ag_tanh(c, y);
    ag_tensor *loss = ag_sum_all(c, h);
    char *dot = capture(ag_write_dot, loss);

    assert_true(strncmp(dot, "digraph ag {\n", 13) == 0);
    assert_true(strcmp(dot + strlen(dot) - 2, "}\n") == 0);
    assert_contains(dot, "label=\"matmul_nt\"");
    assert_contains(dot, "label=\"tanh\"");
    assert_contains(dot, "label=\"sum\"");
    char piece[256];
    snprintf(piece, sizeof piece,
             "t%p [shape=record, label=\"{layer.weight | (3, 2)}\", style=filled, "
             "fillcolor=lightblue];", (void *)w);
    assert_contains(dot, piece);
    snprintf(piece, sizeof piece, "t%p [shape=record, label=\"{(4, 2)}\"];", (void *)x);
    assert_contains(dot, piece);
    snprintf(piece, sizeof piece, "t%p [shape=record, label=\"{(4, 3)}\"];", (void *)y);
    assert_contains(dot, piece);
    snprintf(piece, sizeof piece,
             "t%p [shape=record, label=\"{()}\", style=filled, fillcolor=lightgrey];",
             (void *)loss);
    assert_contains(dot, piece);
    /* edges: inputs -> op -> output */
    const void *edges[][2] = {{x, y}, {w, y}, {y, h}, {h, loss}};
    for (int k = 0; k < 4; k++) {
        snprintf(piece, sizeof piece, "  t%p -> op%p;\n", edges[k][0], edges[k][1]);
        assert_contains(dot, piece);
    }
    const void *outs[3] = {y, h, loss};
    for (int k = 0; k < 3; k++) {
        snprintf(piece, sizeof piece, "  op%p -> t%p;\n", outs[k], outs[k]);
        assert_contains(dot, piece);
    }
    assert_int_equal(count_of(dot, " -> "), 7);   /* 3 op->t, 4 t->op */
    assert_int_equal(count_of(dot, "shape=record"), 5);
    assert_int_equal(count_of(dot, "shape=ellipse"), 3);
    free(dot);
    ag_tensor_free(w);
    ag_ctx_free(c);
}

/* A tensor reached twice (x*x) is one node with two edges into the op. */
static void test_write_dot_lists_shared_node_once(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *x = ag_param("x", AG_SHAPE(2));
    ag_tensor *y = ag_mul(c, x, x);
    char *dot = capture(ag_write_dot, y);
    char piece[128];
    snprintf(piece, sizeof piece, "t%p [", (void *)x);
    assert_int_equal(count_of(dot, piece), 1);
    snprintf(piece, sizeof piece, "  t%p -> op%p;\n", (void *)x, (void *)y);
    assert_int_equal(count_of(dot, piece), 2);
    assert_contains(dot, "label=\"mul\"");
    free(dot);
    ag_tensor_free(x);
    ag_ctx_free(c);
}

/* Label syntax in a parameter's name is escaped, so the DOT stays valid. */
static void test_write_dot_escapes_names(void **state)
{
    (void)state;
    ag_tensor *w = ag_param("w{1}|\"a\"<b>\\", AG_SHAPE(2));
    char *dot = capture(ag_write_dot, w);
    assert_contains(dot, "label=\"{w\\{1\\}\\|\\\"a\\\"\\<b\\>\\\\ | (2)}\"");
    free(dot);
    ag_tensor_free(w);
}

static void test_save_dot_writes_the_same_text(void **state)
{
    (void)state;
    ag_ctx *c = ag_ctx_new();
    ag_tensor *w = ag_param("w", AG_SHAPE(2, 2));
    ag_tensor *loss = ag_mean_all(c, ag_relu(c, w));
    char *want = capture(ag_write_dot, loss);
    char path[] = "/tmp/ag_test_dotXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_true(ag_save_dot(path, loss));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char got[4096];
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    remove(path);
    assert_string_equal(got, want);
    assert_contains(got, "label=\"mean\"");
    assert_contains(got, "label=\"relu\"");
    assert_false(ag_save_dot("/nonexistent-dir/graph.dot", loss));
    free(want);
    ag_tensor_free(w);
    ag_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rand_same_seed_same_numbers),
        cmocka_unit_test(test_ctx_generator_is_seedable),
        cmocka_unit_test(test_constructors_values_and_shapes),
        cmocka_unit_test(test_item_reads_the_one_element),
        cmocka_unit_test(test_shape_str),
        cmocka_unit_test(test_print_format),
        cmocka_unit_test(test_write_dot_has_ops_shapes_names_and_edges),
        cmocka_unit_test(test_write_dot_lists_shared_node_once),
        cmocka_unit_test(test_write_dot_escapes_names),
        cmocka_unit_test(test_save_dot_writes_the_same_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
