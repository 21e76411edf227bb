/* Global average pooling on the CPU: x (N,C,H,W) -> y (N,C), the mean over
 * each feature map, and its backward, which spreads dy / (H*W) evenly over
 * the map. The means are summed in double in a fixed order, so results do
 * not depend on the thread count. */
#include "pasm/ops.h"

void pasm_avgpool_forward(int n, int c, int h, int w, const float *x, float *y) {
    const int64_t maps = (int64_t)n * c;
    const size_t hw = (size_t)h * w;
    const double inv = 1.0 / (double)hw;
#pragma omp parallel for schedule(static) if (maps * (int64_t)hw >= ((int64_t)1 << 15))
    for (int64_t m = 0; m < maps; m++) {
        const float *src = x + (size_t)m * hw;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (size_t j = 0; j < hw; j++) sum += src[j];
        y[m] = (float)(sum * inv);
    }
}

void pasm_avgpool_backward(int n, int c, int h, int w, const float *dy, float *dx) {
    if (!dx) return;
    const int64_t maps = (int64_t)n * c;
    const size_t hw = (size_t)h * w;
    const float inv = (float)(1.0 / (double)hw);
#pragma omp parallel for schedule(static) if (maps * (int64_t)hw >= ((int64_t)1 << 15))
    for (int64_t m = 0; m < maps; m++) {
        float *dst = dx + (size_t)m * hw;
        const float g = dy[m] * inv;
        for (size_t j = 0; j < hw; j++) dst[j] = g;
    }
}
