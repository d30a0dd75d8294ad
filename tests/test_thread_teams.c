/* test_thread_teams.c - how many threads a loop gets (threads.c).
 *
 * A loop is cut into parts by its work and the thread count alone; the team
 * that runs the parts is one size for every region, never exceeds the CPUs,
 * and shrinks while the machine is contended. So: parts follow the
 * documented formula, teams stay within the CPUs, late teams halve the cap
 * and a probe doubles it back, and -- what makes the adaptation safe --
 * every op gives the same bits whether its parts ran on a full team or on
 * one thread. */
#include "test_util.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define SHP(...) AG_SHAPE(__VA_ARGS__)

static int saved_threads;

static int save_threads(void **state)
{
    (void)state;
    saved_threads = ag_get_num_threads();
    return 0;
}

static int restore_threads(void **state)
{
    (void)state;
    ag_set_num_threads(saved_threads);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ parts and teams */

static void test_parts_follow_work_and_thread_count(void **state)
{
    (void)state;
    ag_set_num_threads(4);
    assert_int_equal(ag_parts(100, 10), 4);
    assert_int_equal(ag_parts(35, 10), 3);
    assert_int_equal(ag_parts(19, 10), 1);
    assert_int_equal(ag_parts(0, 10), 1);
    assert_int_equal(ag_parts(3, 0), 3); /* grain 0 counts as 1 */
    /* elementwise: serial up to AG_PAR_MIN, then 2 parts, then one per AG_PAR_MIN */
    assert_int_equal(ag_par_parts(AG_PAR_MIN), 1);
    assert_int_equal(ag_par_parts(AG_PAR_MIN + 1), 2);
    assert_int_equal(ag_par_parts(3 * AG_PAR_MIN - 1), 2);
    assert_int_equal(ag_par_parts(3 * AG_PAR_MIN), 3);
    assert_int_equal(ag_par_parts(INT64_C(1) << 40), 4);
    assert_int_equal(ag_parts_past(AG_GEMM_MIN, AG_GEMM_MIN), 1);
    assert_int_equal(ag_parts_past(AG_GEMM_MIN + 1, AG_GEMM_MIN), 2);
    ag_set_num_threads(1);
    assert_int_equal(ag_parts_past(AG_GEMM_MIN + 1, AG_GEMM_MIN), 1);
    ag_set_num_threads(4);
    /* the same on a contended machine: parts never look at the load */
    ag_team_hold_cap(1, INT64_C(10000000000));
    assert_int_equal(ag_parts(100, 10), 4);
    assert_int_equal(ag_par_parts(INT64_C(1) << 40), 4);
    assert_int_equal(ag_team(4), 1);
}

static void test_team_within_cpus_and_parts(void **state)
{
    (void)state;
    int cpus = omp_get_num_procs();
    ag_set_num_threads(cpus + 6); /* oversubscribed */
    assert_int_equal(ag_get_num_threads(), cpus + 6);
    assert_int_equal(ag_parts(INT64_C(1) << 40, 1), cpus + 6);
    assert_int_equal(ag_team(cpus + 6), cpus);
    assert_int_equal(ag_threads_in_use(), cpus);
    assert_int_equal(ag_team(1), 1);
    /* one team size for every region (libgomp would recreate threads), for
     * loops of at least half a team of parts */
    if (cpus >= 2) {
        assert_int_equal(ag_team((cpus + 1) / 2 > 2 ? (cpus + 1) / 2 : 2), cpus);
        assert_int_equal(ag_team(cpus), cpus);
    }
    if (cpus >= 6)
        assert_int_equal(ag_team(2), 1);
    /* inside a parallel region: one thread, no nested team */
    int inner[2] = {-1, -1};
#pragma omp parallel num_threads(2)
    inner[omp_get_thread_num() % 2] = ag_team(8);
    assert_int_equal(inner[0], 1);
    if (inner[1] != -1)
        assert_int_equal(inner[1], 1);
}

/* ag_parallel_for's ranges are its parts: the same calls on a capped team */
typedef struct {
    int calls;
    int64_t covered;
} tally;

static void count_range(int64_t lo, int64_t hi, void *user)
{
    tally *t = user;
#pragma omp atomic
    t->calls++;
#pragma omp atomic
    t->covered += hi - lo;
}

static void test_parallel_for_ranges_ignore_the_cap(void **state)
{
    (void)state;
    ag_set_num_threads(4);
    tally full = {0, 0}, capped = {0, 0};
    ag_parallel_for(100000, 1000, count_range, &full);
    ag_team_hold_cap(1, INT64_C(10000000000));
    ag_parallel_for(100000, 1000, count_range, &capped);
    assert_int_equal(full.calls, 4);
    assert_int_equal(capped.calls, 4);
    assert_int_equal(full.covered, 100000);
    assert_int_equal(capped.covered, 100000);
}

/* ------------------------------------------------------------ the contention cap */

static void test_late_teams_halve_the_cap_and_probes_restore_it(void **state)
{
    (void)state;
    if (omp_get_num_procs() < 2)
        skip();
    ag_set_num_threads(2);
    assert_int_equal(ag_threads_in_use(), 2);
    /* one late team among punctual ones is noise */
    for (int i = 0; i < 8; i++)
        ag_team_note(2, i == 3, ag_now_ns());
    assert_int_equal(ag_threads_in_use(), 2);
    /* a second within the last 8 halves the cap */
    ag_team_note(2, true, ag_now_ns());
    assert_int_equal(ag_threads_in_use(), 1);
    assert_int_equal(ag_team(2), 1);
    /* after the 50 ms back-off a probe doubles it back */
    sleep_ms(70);
    assert_int_equal(ag_team(2), 2);
    assert_int_equal(ag_threads_in_use(), 2);
    /* the probe fails at once: capped again (for a doubled back-off) */
    ag_team_note(2, true, ag_now_ns());
    ag_team_note(2, true, ag_now_ns());
    assert_int_equal(ag_threads_in_use(), 1);
    assert_int_equal(ag_team(2), 1);
    sleep_ms(130);
    assert_int_equal(ag_team(2), 2);
    /* setting the thread count starts over */
    ag_team_note(2, true, ag_now_ns());
    ag_team_note(2, true, ag_now_ns());
    assert_int_equal(ag_threads_in_use(), 1);
    ag_set_num_threads(2);
    assert_int_equal(ag_threads_in_use(), 2);
}

/* A region whose worker starts 3 ms late (as if descheduled) counts as late
 * (unless the master was held up too); two of them halve the cap. */
static void late_region(void)
{
    ag_region r;
    ag_region_begin(&r);
#pragma omp parallel num_threads(2)
    {
        if (omp_get_thread_num() == 1)
            sleep_ms(3);
        ag_region_enter(&r);
    }
    assert_true(atomic_load(&r.late) >= 3000000);
    ag_region_end(&r, 2);
}

static void test_region_timing_sees_a_late_worker(void **state)
{
    (void)state;
    if (omp_get_num_procs() < 2)
        skip();
    ag_set_num_threads(2);
    /* two do it; more only when this busy machine also held up the master */
    int regions = 0;
    while (ag_threads_in_use() == 2 && regions < 10) {
        late_region();
        regions++;
    }
    assert_int_equal(ag_threads_in_use(), 1);
    assert_true(regions >= 2);
}

/* ------------------------------------------------------------ same bits on any team */

#define MAX_KEPT 12

typedef struct {
    int n;
    float *data[MAX_KEPT];
    int64_t numel[MAX_KEPT];
} kept;

static void keep(kept *k, const float *data, int64_t numel)
{
    assert_true(k->n < MAX_KEPT);
    assert_non_null(data);
    k->data[k->n] = malloc((size_t)numel * sizeof(float));
    memcpy(k->data[k->n], data, (size_t)numel * sizeof(float));
    k->numel[k->n++] = numel;
}

static ag_tensor *ctx_leaf(ag_ctx *c, uint64_t seed, float std, int ndim, const int64_t *shape)
{
    ag_tensor *t = ag_randn(c, TEST_RNG(seed), 0.0f, std, ndim, shape);
    ag_set_requires_grad(t, true);
    return t;
}

/* Every op family whose parallel loops split sums, rows, tiles or pairs,
 * forward and backward, at sizes that take the parallel paths. */
static void workload(kept *k)
{
    ag_ctx *c = ag_ctx_new();
    ag_ctx_manual_seed(c, 5);
    /* one long sum, a mean, and their grads */
    ag_tensor *x = ctx_leaf(c, 1, 1.0f, SHP(200000));
    ag_tensor *s = ag_add(c, ag_sum(c, x, 0, false), ag_mean_all(c, ag_mul(c, x, x)));
    keep(k, s->data, 1);
    assert_true(ag_backward(c, s));
    keep(k, x->grad, x->numel);
    /* layer norm, a matmul with a bias, gelu, cross-entropy over many rows */
    ag_tensor *h = ctx_leaf(c, 2, 1.0f, SHP(2048, 64));
    ag_tensor *w = ctx_leaf(c, 3, 0.2f, SHP(64)), *b = ctx_leaf(c, 4, 0.2f, SHP(64));
    ag_tensor *wl = ctx_leaf(c, 5, 0.1f, SHP(64, 65)), *bl = ctx_leaf(c, 6, 0.1f, SHP(65));
    ag_tensor *n = ag_layer_norm(c, h, w, b, 1e-5f);
    ag_tensor *logits = ag_add(c, ag_matmul(c, ag_gelu(c, n), wl), bl);
    int32_t *tg = malloc(2048 * sizeof *tg);
    for (int i = 0; i < 2048; i++)
        tg[i] = (i * 37) % 65;
    ag_index *targets = ag_index_new(c, tg, SHP(2048));
    free(tg);
    ag_tensor *loss = ag_cross_entropy(c, logits, targets, -1);
    keep(k, n->data, n->numel);
    keep(k, loss->data, 1);
    assert_true(ag_backward(c, loss));
    keep(k, h->grad, h->numel);
    keep(k, w->grad, 64);
    keep(k, b->grad, 64);
    keep(k, wl->grad, wl->numel);
    keep(k, bl->grad, 65);
    /* attention with dropout: pairs on threads */
    ag_tensor *qkv = ctx_leaf(c, 7, 1.0f, SHP(4, 130, 48));
    ag_tensor *y = ag_attention(c, qkv, 4, 0.5f, 0.2f, true);
    keep(k, y->data, y->numel);
    assert_true(ag_backward(c, weighted_sum(c, y)));
    keep(k, qkv->grad, qkv->numel);
    ag_ctx_free(c);
}

static void kept_free(kept *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->data[i]);
    k->n = 0;
}

static void assert_same_bits(const kept *a, const kept *b)
{
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        assert_int_equal(a->numel[i], b->numel[i]);
        if (memcmp(a->data[i], b->data[i], (size_t)a->numel[i] * sizeof(float)) != 0)
            fail_msg("result %d differs between a full and a capped team", i);
    }
}

static void test_capped_teams_give_the_same_bits(void **state)
{
    (void)state;
    for (int threads = 2; threads <= 4; threads += 2) {
        kept full = {0}, capped = {0};
        ag_set_num_threads(threads);
        workload(&full);
        ag_team_hold_cap(1, INT64_C(10000000000));
        workload(&capped);
        assert_same_bits(&full, &capped);
        kept_free(&capped);
        ag_team_hold_cap(2, INT64_C(10000000000));
        workload(&capped);
        assert_same_bits(&full, &capped);
        kept_free(&full);
        kept_free(&capped);
    }
}

/* The built-in kernel and the BLAS path: C does not depend on the team. */
static void test_gemm_same_bits_on_any_team(void **state)
{
    (void)state;
    int64_t shapes[][3] = {{300, 500, 200}, {1, 257, 129}, {97, 131, 61}, {512, 64, 256}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        ag_tensor *a = ag_randn(NULL, TEST_RNG(20 + s), 0.0f, 1.0f, SHP(M, K));
        ag_tensor *b = ag_randn(NULL, TEST_RNG(40 + s), 0.0f, 1.0f, SHP(N, K));
        float *c[4];
        for (int r = 0; r < 4; r++) {
            c[r] = calloc((size_t)(M * N), sizeof(float));
            ag_set_num_threads(4);
            if (r & 1)
                ag_team_hold_cap(1, INT64_C(10000000000));
            if (r < 2)
                ag_gemm(false, true, M, N, K, 1.0f, a->data, K, b->data, K, 0.0f, c[r], N);
            else
                ag_gemm_builtin(false, true, M, N, K, 1.0f, a->data, K, b->data, K, 0.0f, c[r], N);
        }
        assert_memory_equal(c[0], c[1], (size_t)(M * N) * sizeof(float));
        assert_memory_equal(c[2], c[3], (size_t)(M * N) * sizeof(float));
        for (int r = 0; r < 4; r++)
            free(c[r]);
        ag_tensor_free(a);
        ag_tensor_free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts_follow_work_and_thread_count),
        cmocka_unit_test(test_team_within_cpus_and_parts),
        cmocka_unit_test(test_parallel_for_ranges_ignore_the_cap),
        cmocka_unit_test(test_late_teams_halve_the_cap_and_probes_restore_it),
        cmocka_unit_test(test_region_timing_sees_a_late_worker),
        cmocka_unit_test(test_capped_teams_give_the_same_bits),
        cmocka_unit_test(test_gemm_same_bits_on_any_team),
    };
    return cmocka_run_group_tests(tests, save_threads, restore_threads);
}
