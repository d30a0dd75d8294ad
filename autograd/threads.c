/* threads.c - the documented global thread count, shared with the BLAS, and
 * the parallel-for that ops written outside the library use. */
#include "internal.h"

#include <omp.h>

#ifdef AG_HAVE_OPENBLAS
void openblas_set_num_threads(int n);
#endif

void ag_set_num_threads(int n)
{
    if (n < 1)
        n = 1;
    omp_set_num_threads(n);
#ifdef AG_HAVE_OPENBLAS
    /* The OpenMP build of OpenBLAS runs on our OpenMP pool; this keeps its
     * own idea of the count in step so the two never oversubscribe. */
    openblas_set_num_threads(n);
#endif
}

int ag_get_num_threads(void) { return omp_get_max_threads(); }

void ag_parallel_for(int64_t n, int64_t min_per_thread,
                     void (*fn)(int64_t lo, int64_t hi, void *user), void *user)
{
    if (n <= 0)
        return;
    int64_t chunks = n / (min_per_thread > 1 ? min_per_thread : 1);
    int nt = omp_get_max_threads();
    if (chunks < nt)
        nt = (int)chunks;
    /* serial without entering the OpenMP runtime (see AG_PARALLEL_FOR) */
    if (nt < 2 || omp_in_parallel()) {
        fn(0, n, user);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int64_t id = omp_get_thread_num(), k = omp_get_num_threads();
        int64_t lo = n * id / k, hi = n * (id + 1) / k;
        if (lo < hi)
            fn(lo, hi, user);
    }
}
