/* Elementwise ops on the CPU: ReLU forward/backward (from the output or
 * from a bit mask of it) and addition (the residual sum of a BasicBlock).
 * Large arrays are split over OpenMP threads; small ones run on the calling
 * thread, where starting a team costs more than the work. Every element is
 * independent, so the result does not depend on the thread count. */
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

void pasm_relu_mask(int64_t n, const float *y, uint64_t *mask) {
    const int64_t words = (n + 63) / 64;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t w = 0; w < words; w++) {
        const float *v = y + w * 64;
        const int count = n - w * 64 < 64 ? (int)(n - w * 64) : 64;
        uint64_t bits = 0;
        for (int j = 0; j < count; j++) bits |= (uint64_t)(v[j] > 0.0f) << j;
        mask[w] = bits;
    }
}

void pasm_relu_backward_mask(int64_t n, const uint64_t *mask, const float *dy, float *dx) {
    if (!dx) return;
    const int64_t words = (n + 63) / 64;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t w = 0; w < words; w++) {
        const uint64_t bits = mask[w];
        const int count = n - w * 64 < 64 ? (int)(n - w * 64) : 64;
        const float *g = dy + w * 64;
        float *out = dx + w * 64;
        for (int j = 0; j < count; j++) {
            const float v = g[j];
            out[j] = (bits >> j) & 1 ? v : 0.0f;
        }
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
