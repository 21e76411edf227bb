/* 2-D batch normalisation on the CPU, PyTorch semantics: training mode
 * normalises with the batch mean and biased variance and moves the running
 * estimates towards the batch mean and UNBIASED variance
 * (running = (1 - momentum) * running + momentum * batch); evaluation mode
 * normalises with the running estimates. Channels run in parallel; each
 * channel's sums are taken in double in a fixed order (images, then pixels),
 * so the results do not depend on the thread count at all. gamma and beta
 * may be NULL (no affine transform: 1 and 0), and so may the running
 * statistics and the save_* outputs of the training forward. */
#include <math.h>
#include <omp.h>

#include "pasm/ops.h"

/* The per-channel loops in two builds, picked at load time: AVX-512 (eight
 * doubles a vector for the sums) and the baseline (SSE2: two). Both sum in
 * a fixed order, but not the same one: the last bits of a statistic may
 * differ between CPUs, never between runs or thread counts. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define BN_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define BN_CLONES
#endif

/* Sum of x[i*stride + j] over images i and pixels j < hw, in double. */
BN_CLONES static double channel_sum(const float *x, int n, size_t stride, size_t hw) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *row = x + (size_t)i * stride;
        double row_sum = 0.0;
#pragma omp simd reduction(+ : row_sum)
        for (size_t j = 0; j < hw; j++) row_sum += row[j];
        sum += row_sum;
    }
    return sum;
}

/* Sum of (x - mean)^2 over the channel: the two-pass variance, which
 * stays accurate when |mean| >> std. */
BN_CLONES static double channel_sq_dev(const float *x, int n, size_t stride, size_t hw, double mean) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *row = x + (size_t)i * stride;
        double row_sum = 0.0;
#pragma omp simd reduction(+ : row_sum)
        for (size_t j = 0; j < hw; j++) {
            double d = row[j] - mean;
            row_sum += d * d;
        }
        sum += row_sum;
    }
    return sum;
}

/* y = relu?(x * scale + shift + res?) over one channel of every image (the
 * plain affine pass with neither res nor relu), in the separate ops'
 * roundings (a multiply, an add, an add; ReLU maps NaN to 0 as
 * pasm_relu_forward does). */
BN_CLONES static void channel_affine(const float *x, float *y, int n, size_t stride, size_t hw,
                                     float scale, float shift, const float *res, int relu) {
    for (int i = 0; i < n; i++) {
        const float *src = x + (size_t)i * stride;
        float *dst = y + (size_t)i * stride;
        const float *r = res ? res + (size_t)i * stride : NULL;
        if (r && relu) {
#pragma omp simd
            for (size_t j = 0; j < hw; j++) {
                const float v = src[j] * scale + shift + r[j];
                dst[j] = v > 0.0f ? v : 0.0f;
            }
        } else if (r) {
#pragma omp simd
            for (size_t j = 0; j < hw; j++) dst[j] = src[j] * scale + shift + r[j];
        } else if (relu) {
#pragma omp simd
            for (size_t j = 0; j < hw; j++) {
                const float v = src[j] * scale + shift;
                dst[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
#pragma omp simd
            for (size_t j = 0; j < hw; j++) dst[j] = src[j] * scale + shift;
        }
    }
}

void pasm_batchnorm_forward_train(const pasm_bn_shape *s, const float *x, const float *gamma,
                                  const float *beta, float *running_mean, float *running_var,
                                  float *y, float *save_mean, float *save_invstd) {
    pasm_batchnorm_forward_train_fused(s, x, gamma, beta, running_mean, running_var, NULL, 0, y,
                                       save_mean, save_invstd);
}

void pasm_batchnorm_forward_train_fused(const pasm_bn_shape *s, const float *x,
                                        const float *gamma, const float *beta,
                                        float *running_mean, float *running_var,
                                        const float *residual, int relu, float *y,
                                        float *save_mean, float *save_invstd) {
    const size_t hw = (size_t)s->h * s->w, stride = (size_t)s->c * hw;
    const double count = (double)s->n * (double)hw;
    /* PyTorch refuses count == 1 in training; here the running variance
     * then takes the biased value instead of dividing by zero. */
    const double unbias = count > 1.0 ? count / (count - 1.0) : 1.0;
    const double m = s->momentum;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < s->c; c++) {
        const float *xc = x + (size_t)c * hw;
        double mean = channel_sum(xc, s->n, stride, hw) / count;
        double var = channel_sq_dev(xc, s->n, stride, hw, mean) / count;
        double invstd = 1.0 / sqrt(var + (double)s->eps);
        double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
        channel_affine(xc, y + (size_t)c * hw, s->n, stride, hw, (float)(g * invstd),
                       (float)(b - mean * invstd * g), residual ? residual + (size_t)c * hw : NULL,
                       relu);
        if (running_mean) running_mean[c] = (float)((1.0 - m) * running_mean[c] + m * mean);
        if (running_var) running_var[c] = (float)((1.0 - m) * running_var[c] + m * var * unbias);
        if (save_mean) save_mean[c] = (float)mean;
        if (save_invstd) save_invstd[c] = (float)invstd;
    }
}

void pasm_batchnorm_forward_eval(const pasm_bn_shape *s, const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float *y) {
    const size_t hw = (size_t)s->h * s->w, stride = (size_t)s->c * hw;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < s->c; c++) {
        double invstd = 1.0 / sqrt((double)running_var[c] + (double)s->eps);
        double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
        channel_affine(x + (size_t)c * hw, y + (size_t)c * hw, s->n, stride, hw,
                       (float)(g * invstd), (float)(b - running_mean[c] * invstd * g), NULL, 0);
    }
}

void pasm_batchnorm_fold(const pasm_bn_shape *s, const float *gamma, const float *beta,
                         const float *running_mean, const float *running_var, float *scale,
                         float *shift) {
    /* The expressions of pasm_batchnorm_forward_eval, so a fused epilogue
     * computes what conv + BN computed, rounding for rounding. */
    for (int c = 0; c < s->c; c++) {
        double invstd = 1.0 / sqrt((double)running_var[c] + (double)s->eps);
        double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
        scale[c] = (float)(g * invstd);
        shift[c] = (float)(b - running_mean[c] * invstd * g);
    }
}

/* sum(dy) and sum(dy * (x - mean)) over one channel, in double. */
BN_CLONES static void channel_grad_sums(const float *x, const float *dy, int n, size_t stride, size_t hw,
                              double mean, double *sum_dy, double *sum_dy_xc) {
    double a = 0.0, b = 0.0;
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * stride, *dr = dy + (size_t)i * stride;
        double ra = 0.0, rb = 0.0;
#pragma omp simd reduction(+ : ra, rb)
        for (size_t j = 0; j < hw; j++) {
            ra += dr[j];
            rb += dr[j] * (xr[j] - mean);
        }
        a += ra;
        b += rb;
    }
    *sum_dy = a;
    *sum_dy_xc = b;
}

/* dx = k * dy + a * (x - mean) + b over one channel of every image. */
BN_CLONES static void channel_dx(const float *x, const float *dy, float *dx, int n, size_t stride,
                                 size_t hw, float k, float a, float b, float mean) {
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * stride, *dr = dy + (size_t)i * stride;
        float *out = dx + (size_t)i * stride;
#pragma omp simd
        for (size_t j = 0; j < hw; j++) out[j] = k * dr[j] + a * (xr[j] - mean) + b;
    }
}

/* Through the batch statistics, with xhat = (x - mean) * invstd and M
 * values per channel:
 *   dbeta = sum(dy), dgamma = sum(dy * xhat),
 *   dx = gamma * invstd * (dy - dbeta / M - xhat * dgamma / M). */
void pasm_batchnorm_backward(const pasm_bn_shape *s, const float *x, const float *gamma,
                             const float *save_mean, const float *save_invstd, const float *dy,
                             float *dx, float *dgamma, float *dbeta) {
    const size_t hw = (size_t)s->h * s->w, stride = (size_t)s->c * hw;
    const double count = (double)s->n * (double)hw;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < s->c; c++) {
        const size_t off = (size_t)c * hw;
        const double mean = save_mean[c], invstd = save_invstd[c];
        double sum_dy, sum_dy_xc;
        channel_grad_sums(x + off, dy + off, s->n, stride, hw, mean, &sum_dy, &sum_dy_xc);
        const double sum_dy_xhat = sum_dy_xc * invstd;
        if (dbeta) dbeta[c] = (float)sum_dy;
        if (dgamma) dgamma[c] = (float)sum_dy_xhat;
        if (!dx) continue;
        /* dx = k * dy + a * (x - mean) + b, constants folded per channel;
         * x - mean is taken per element so a large mean does not cancel. */
        const double g = gamma ? gamma[c] : 1.0;
        const double k = g * invstd;
        const double a = -k * invstd * sum_dy_xhat / count;
        const double b = -k * sum_dy / count;
        channel_dx(x + off, dy + off, dx + off, s->n, stride, hw, (float)k, (float)a, (float)b,
                   (float)mean);
    }
}

void pasm_batchnorm_backward_eval(const pasm_bn_shape *s, const float *gamma,
                                  const float *running_var, const float *dy, float *dx) {
    if (!dx) return;
    const size_t hw = (size_t)s->h * s->w, stride = (size_t)s->c * hw;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < s->c; c++) {
        const double g = gamma ? gamma[c] : 1.0;
        const float k = (float)(g / sqrt((double)running_var[c] + (double)s->eps));
        for (int i = 0; i < s->n; i++) {
            const float *dr = dy + (size_t)c * hw + (size_t)i * stride;
            float *out = dx + (size_t)c * hw + (size_t)i * stride;
#pragma omp simd
            for (size_t j = 0; j < hw; j++) out[j] = k * dr[j];
        }
    }
}
