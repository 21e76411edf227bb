/* Thread count for OpenMP and OpenBLAS together: OpenBLAS is the OpenMP
 * build, so both share one pool and 2 cores are never oversubscribed. */
#include <omp.h>

#include "pasm/core.h"

void openblas_set_num_threads(int num_threads);

void pasm_set_threads(int n_threads) {
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    omp_set_num_threads(n_threads);
    openblas_set_num_threads(n_threads);
}

int pasm_get_threads(void) { return omp_get_max_threads(); }
