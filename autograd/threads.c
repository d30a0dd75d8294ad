/* threads.c - the documented global thread count, shared with the BLAS. */
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
