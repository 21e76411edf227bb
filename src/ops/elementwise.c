/* Elementwise ops on the CPU: ReLU forward/backward and addition (the
 * residual sum of a BasicBlock). Large arrays are split over OpenMP threads;
 * small ones run on the calling thread, where starting a team costs more
 * than the work. Every element is independent, so the result does not
 * depend on the thread count. */
#include "pasm/ops.h"

/* Below this many elements a parallel region is not worth starting. */
#define PARALLEL_MIN ((int64_t)1 << 15)

void pasm_relu_forward(int64_t n, const float *x, float *y) {
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void pasm_relu_backward(int64_t n, const float *y, const float *dy, float *dx) {
    if (!dx) return;
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        /* Load dy unconditionally: a conditional load keeps the loop scalar
         * (and branchy) on CPUs without masked loads. */
        const float g = dy[i];
        dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

void pasm_add_forward(int64_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void pasm_add_inplace(int64_t n, float *y, const float *x) {
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
