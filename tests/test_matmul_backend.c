/* test_matmul_backend.c - the matmul backend a process starts with, from its
 * environment: tests/meson.build runs this suite once per setting.
 *
 *   (nothing)                     OpenBLAS, or the built-in when OpenBLAS's
 *                                 kernel is below the CPU (then said once)
 *   OPENBLAS_CORETYPE=Prescott    OpenBLAS misdetects an AVX2 / AVX-512 CPU:
 *                                 the built-in kernel for the CPU runs, and
 *                                 stderr says so once, naming both
 *   ... and AG_MATMUL=blas        OpenBLAS's Prescott kernels, as forced
 *                                 (a build without a BLAS: one warning)
 *   AG_MATMUL=builtin:generic     the portable kernel, silently
 *   AG_MATMUL=bogus               one warning, then the default
 *
 * Only the public API: stderr is captured around the first matmuls. */
#include "test_util.h"

#include <stdlib.h>
#include <unistd.h>

#define SHP(...) AG_SHAPE(__VA_ARGS__)

static char captured[4096];

/* Runs a few products (one row, a small one, a threaded one) with fd 2 in
 * a file, into `captured`. */
static void matmuls_capturing_stderr(void)
{
    fflush(stderr);
    FILE *f = tmpfile();
    assert_non_null(f);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(f), 2) >= 0);

    ag_ctx *c = ag_ctx_new();
    ag_tensor *a = ag_rand(c, TEST_RNG(1), -1.0f, 1.0f, SHP(300, 200));
    ag_tensor *b = ag_rand(c, TEST_RNG(2), -1.0f, 1.0f, SHP(200, 100));
    ag_tensor *row = ag_rand(c, TEST_RNG(3), -1.0f, 1.0f, SHP(1, 200));
    for (int i = 0; i < 3; i++) {
        ag_tensor *p = ag_matmul(c, a, b), *q = ag_matmul(c, row, b);
        assert_non_null(p);
        assert_non_null(q);
        (void)ag_matmul_backend();
    }
    ag_ctx_free(c);

    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    rewind(f);
    size_t n = fread(captured, 1, sizeof captured - 1, f);
    captured[n] = '\0';
    fclose(f);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The built-in kernel this CPU gets: "avx512", "avx2", or NULL where
 * OpenBLAS's Prescott kernels are no worse than what the CPU has. */
static const char *best_isa(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return "avx512";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "avx2";
#endif
    return NULL;
}

static bool env_is(const char *name, const char *value)
{
    const char *v = getenv(name);
    return v && strcmp(v, value) == 0;
}

static void test_backend_from_environment(void **state)
{
    (void)state;
    matmuls_capturing_stderr();
    const char *used = ag_matmul_backend();
    /* was it built with a BLAS? (asked after the first choice was made) */
    char was[64];
    snprintf(was, sizeof was, "%s", used);
    bool openblas = ag_set_matmul_backend("blas") && strncmp(ag_matmul_backend(), "openblas:", 9) == 0;
    assert_true(ag_set_matmul_backend(was));
    const char *notice = "agrad: OpenBLAS chose its ";
    const char *isa = best_isa();
    char want[64];

    if (env_is("AG_MATMUL", "builtin:generic")) {
        assert_string_equal(used, "builtin:generic");
        assert_int_equal(count(captured, "agrad:"), 0);
    } else if (env_is("AG_MATMUL", "bogus")) {
        assert_int_equal(count(captured, "agrad: AG_MATMUL=bogus is not"), 1);
        assert_int_equal(count(captured, "agrad: AG_MATMUL="), 1);
    } else if (env_is("AG_MATMUL", "blas")) {
        if (openblas)
            assert_true(strncmp(used, "openblas:", 9) == 0);
        else /* a build without one says it has none */
            assert_int_equal(count(captured, "agrad: AG_MATMUL=blas is not"), 1);
        assert_int_equal(count(captured, notice), 0);
        if (openblas && env_is("OPENBLAS_CORETYPE", "Prescott") && isa)
            assert_string_equal(used, "openblas:Prescott");
    } else if (env_is("OPENBLAS_CORETYPE", "Prescott") && openblas && isa) {
        snprintf(want, sizeof want, "builtin:%s", isa);
        assert_string_equal(used, want);
        /* one line, naming OpenBLAS's kernel and ours */
        assert_int_equal(count(captured, notice), 1);
        assert_int_equal(count(captured, "\n"), 1);
        assert_non_null(strstr(captured, "Prescott"));
        snprintf(want, sizeof want, "built-in %s kernel", isa);
        assert_non_null(strstr(captured, want));
    } else {
        /* the default: the notice comes exactly when OpenBLAS was passed over */
        bool passed_over = openblas && strncmp(used, "builtin:", 8) == 0;
        assert_int_equal(count(captured, notice), passed_over ? 1 : 0);
    }
    if (!env_is("AG_MATMUL", "bogus") && (openblas || !env_is("AG_MATMUL", "blas")))
        assert_int_equal(count(captured, "agrad: AG_MATMUL="), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_from_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
