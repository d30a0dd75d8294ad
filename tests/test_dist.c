/* test_dist.c - nn/dist.h's collectives. Run alone it checks the one-process
 * behaviour (every collective leaves data as it is); under
 * `mpirun -np N test_dist N` every rank runs the same tests and checks the
 * results against values it computes by hand for all N ranks: a broadcast
 * makes every rank's parameters rank 0's, the gradient average is the mean of
 * the per-rank grads for buckets of one float, smaller than a tensor and
 * larger than all of them, and the parameter check catches one flipped bit
 * and names the rank.
 *
 * `test_dist --die` and `--hang` are the crash drills (tests/mpi_rank_dies.sh):
 * the last rank kills itself with SIGKILL, or stops answering, while the
 * others wait in an all-reduce; either must end the job instead of hanging it. */
#include "test_util.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "dist.h"
#include "nn.h"

static int expect_size = 1;

/* The test's registry: sizes chosen so that small buckets split tensors and
 * a tensor straddles bucket edges. */
static const int64_t sizes[] = {15, 7, 1000, 1, 64};
#define NT ((int)(sizeof sizes / sizeof *sizes))

static void make(nn_params *p)
{
    nn_params_init(p);
    char name[32];
    for (int i = 0; i < NT; i++) {
        snprintf(name, sizeof name, "w%d", i);
        assert_non_null(nn_param(p, "layer", name, 1, &sizes[i]));
    }
}

/* Rank r's value for element k of tensor i: small integers, so sums over
 * ranks are exact in float and the expected mean is bit-exact. */
static float val(int r, int i, int64_t k) { return (float)((r * 7 + k * 3 + i * 5) % 17 - 8); }

static void test_rank_and_size(void **state)
{
    (void)state;
    assert_int_equal(nn_dist_size(), expect_size);
    assert_in_range(nn_dist_rank(), 0, nn_dist_size() - 1);
    if (expect_size > 1)
        assert_true(nn_dist_available());
}

static void test_local_size_and_broadcast_bytes(void **state)
{
    (void)state;
    /* every test rank runs on this host */
    assert_int_equal(nn_dist_local_size(), nn_dist_size());
    char buf[40];
    snprintf(buf, sizeof buf, "from rank %d", nn_dist_rank());
    nn_dist_broadcast(buf, sizeof buf);
    assert_string_equal(buf, "from rank 0");
}

static void test_broadcast_makes_params_equal(void **state)
{
    (void)state;
    nn_params p;
    make(&p);
    int me = nn_dist_rank();
    for (int i = 0; i < NT; i++)
        for (int64_t k = 0; k < sizes[i]; k++)
            p.items[i]->data[k] = val(me, i, k) + 0.125f * (float)me;
    char err[256] = "";
    if (nn_dist_size() > 1)
        assert_false(nn_dist_check_params(&p, err, sizeof err));
    nn_dist_broadcast_params(&p);
    for (int i = 0; i < NT; i++)
        for (int64_t k = 0; k < sizes[i]; k++)
            assert_true(p.items[i]->data[k] == val(0, i, k));
    assert_true(nn_dist_check_params(&p, err, sizeof err));
    nn_params_free(&p);
}

/* Fills every rank's grads with its own values, averages with the given
 * bucket size and compares with the mean computed here for all ranks; the
 * extras come back summed. */
static void average_with_bucket(size_t bucket_bytes)
{
    nn_params p;
    make(&p);
    int me = nn_dist_rank(), n = nn_dist_size();
    for (int i = 0; i < NT; i++) {
        ag_zero_grad(p.items[i]);
        for (int64_t k = 0; k < sizes[i]; k++)
            p.items[i]->grad[k] = val(me, i, k);
    }
    float extra[2] = {(float)(me + 1), 1.0f};
    nn_dist_set_bucket_bytes(bucket_bytes);
    assert_int_equal(nn_dist_bucket_bytes(), bucket_bytes);
    nn_dist_stats before = nn_dist_get_stats();
    nn_dist_average_grads(&p, extra, 2);
    nn_dist_stats after = nn_dist_get_stats();

    for (int i = 0; i < NT; i++)
        for (int64_t k = 0; k < sizes[i]; k++) {
            float sum = 0;
            for (int r = 0; r < n; r++)
                sum += val(r, i, k);
            float want = sum / (float)n;
            if (p.items[i]->grad[k] != want)
                fail_msg("bucket %zu B: %s[%lld] = %g, the mean over %d ranks is %g", bucket_bytes,
                         p.items[i]->name, (long long)k, (double)p.items[i]->grad[k], n,
                         (double)want);
        }
    assert_true(extra[0] == (float)(n * (n + 1) / 2));
    assert_true(extra[1] == (float)n);

    /* every float went through one bucket of at most bucket_bytes */
    int64_t total = nn_params_numel(&p) + 2;
    int64_t cap = (int64_t)(bucket_bytes / sizeof(float));
    if (n > 1) {
        assert_int_equal(after.calls - before.calls, 1);
        assert_int_equal(after.buckets - before.buckets, (total + cap - 1) / cap);
        assert_int_equal(after.bytes - before.bytes, total * (int64_t)sizeof(float));
        assert_true(after.total_s >= after.reduce_s);
    } else {
        assert_int_equal(after.calls, before.calls);
    }
    nn_dist_set_bucket_bytes((size_t)4 << 20);
    nn_params_free(&p);
}

static void test_average_one_float_buckets(void **state)
{
    (void)state;
    average_with_bucket(sizeof(float));
}

static void test_average_buckets_smaller_than_a_tensor(void **state)
{
    (void)state;
    average_with_bucket(100 * sizeof(float)); /* w2 (1000) spans 11 buckets */
}

static void test_average_bucket_larger_than_all(void **state)
{
    (void)state;
    average_with_bucket((size_t)4 << 20);
}

/* A parameter without a grad on this rank contributes zeros and gets one; a
 * frozen parameter is left alone. */
static void test_average_missing_and_frozen_grads(void **state)
{
    (void)state;
    nn_params p;
    make(&p);
    int me = nn_dist_rank(), n = nn_dist_size();
    ag_set_requires_grad(p.items[1], false);
    for (int i = 0; i < NT; i++)
        if (i != 1 && !(i == 3 && me == 0)) { /* rank 0 has no grad for w3 */
            ag_zero_grad(p.items[i]);
            for (int64_t k = 0; k < sizes[i]; k++)
                p.items[i]->grad[k] = 2.0f;
        }
    nn_dist_average_grads(&p, NULL, 0);
    assert_null(p.items[1]->grad);
    if (n == 1)
        assert_null(p.items[3]->grad); /* one process: nothing is touched */
    else
        assert_true(p.items[3]->grad[0] == 2.0f * (float)(n - 1) / (float)n);
    assert_true(p.items[0]->grad[0] == 2.0f);
    nn_params_free(&p);
}

static void test_checksum_sees_one_bit(void **state)
{
    (void)state;
    nn_params p;
    make(&p);
    for (int i = 0; i < NT; i++)
        for (int64_t k = 0; k < sizes[i]; k++)
            p.items[i]->data[k] = val(0, i, k) * 0.37f;
    uint64_t h = nn_tensor_checksum(p.items[2]);
    assert_true(h == nn_tensor_checksum(p.items[2]));
    uint32_t w;
    memcpy(&w, &p.items[2]->data[500], sizeof w);
    w ^= 1u; /* the lowest mantissa bit */
    memcpy(&p.items[2]->data[500], &w, sizeof w);
    assert_true(h != nn_tensor_checksum(p.items[2]));
    w ^= 1u;
    memcpy(&p.items[2]->data[500], &w, sizeof w);
    assert_true(h == nn_tensor_checksum(p.items[2]));

    /* equal everywhere: passes; one bit off on the last rank: every rank
     * fails, naming that rank and the parameter */
    char err[256] = "";
    assert_true(nn_dist_check_params(&p, err, sizeof err));
    int last = nn_dist_size() - 1;
    if (last > 0) {
        if (nn_dist_rank() == last) {
            memcpy(&w, &p.items[3]->data[0], sizeof w);
            w ^= 1u << 7;
            memcpy(&p.items[3]->data[0], &w, sizeof w);
        }
        assert_false(nn_dist_check_params(&p, err, sizeof err));
        char want[64];
        snprintf(want, sizeof want, "rank %d's parameters differ", last);
        if (!strstr(err, want) || !strstr(err, "layer.w3"))
            fail_msg("the error \"%s\" should name rank %d and layer.w3", err, last);
    }
    nn_params_free(&p);
}

static void test_allreduce_doubles(void **state)
{
    (void)state;
    int me = nn_dist_rank(), n = nn_dist_size();
    double x[3] = {me, -me, 1.5};
    nn_dist_allreduce_doubles(x, 3, NN_DIST_SUM);
    assert_true(x[0] == n * (n - 1) / 2.0 && x[1] == -x[0] && x[2] == 1.5 * n);
    double y[2] = {me, -me};
    nn_dist_allreduce_doubles(y, 2, NN_DIST_MAX);
    assert_true(y[0] == n - 1 && y[1] == 0);
    double z[1] = {me + 0.5};
    nn_dist_allreduce_doubles(z, 1, NN_DIST_MIN);
    assert_true(z[0] == 0.5);
}

/* The last rank dies with SIGKILL while the others wait on it. */
static int die(void)
{
    if (nn_dist_size() < 2) {
        fprintf(stderr, "--die needs 2 or more ranks\n");
        return 2;
    }
    if (nn_dist_rank() == nn_dist_size() - 1) {
        sleep(1);
        raise(SIGKILL);
    }
    double x = 1;
    nn_dist_allreduce_doubles(&x, 1, NN_DIST_SUM); /* never completes */
    fprintf(stderr, "rank %d: the all-reduce returned without the dead rank\n", nn_dist_rank());
    return 0;
}

/* The last rank stops answering (a lost host, a stuck process) while the
 * others wait on it with a 2 s timeout: their watchdog must end the job. */
static int hang(void)
{
    if (nn_dist_size() < 2) {
        fprintf(stderr, "--hang needs 2 or more ranks\n");
        return 2;
    }
    if (nn_dist_rank() == nn_dist_size() - 1) {
        sleep(60); /* bounded, should mpirun fail to end it */
        return 3;
    }
    nn_dist_set_timeout(2);
    double x = 1;
    nn_dist_allreduce_doubles(&x, 1, NN_DIST_SUM); /* the watchdog exits from here */
    fprintf(stderr, "rank %d: the all-reduce returned without the stuck rank\n", nn_dist_rank());
    return 0;
}

int main(int argc, char **argv)
{
    char err[256];
    if (!nn_dist_init(&argc, &argv, err, sizeof err)) {
        fprintf(stderr, "nn_dist_init: %s\n", err);
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "--die") == 0)
        return die();
    if (argc > 1 && strcmp(argv[1], "--hang") == 0)
        return hang();
    if (argc > 1)
        expect_size = atoi(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_and_size),
        cmocka_unit_test(test_local_size_and_broadcast_bytes),
        cmocka_unit_test(test_broadcast_makes_params_equal),
        cmocka_unit_test(test_average_one_float_buckets),
        cmocka_unit_test(test_average_buckets_smaller_than_a_tensor),
        cmocka_unit_test(test_average_bucket_larger_than_all),
        cmocka_unit_test(test_average_missing_and_frozen_grads),
        cmocka_unit_test(test_checksum_sees_one_bit),
        cmocka_unit_test(test_allreduce_doubles),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    nn_dist_finalize();
    return failed;
}
