/* The per-row arithmetic of the losses (src/ops/losses.c), shared with the
 * GPU's loss kernel (src/cuda/step.cu) so that both round alike: a row's
 * log-sum-exp and each element's gradient term, all in double. */
#ifndef PASM_LOSS_MATH_H
#define PASM_LOSS_MATH_H

#include <math.h>

#include "core/hostdev.h"

/* log(sum_j exp(z_j * scale)), computed stably around the row maximum
 * (the maximum's own term makes the sum >= 1). Needs k >= 1. */
PASM_HD static inline double pasm_log_sum_exp(const float *z, int k, double scale) {
    double max = (double)z[0] * scale;
    for (int j = 1; j < k; j++)
        if ((double)z[j] * scale > max) max = (double)z[j] * scale;
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += exp((double)z[j] * scale - max);
    return max + log(sum);
}

/* Cross-entropy's gradient at one logit (pasm_cross_entropy's formula):
 * p the class's probability, w_y the true class's weight, w_j this class's,
 * w_sum all classes' weights, inv_total 1 / the batch's true-class weights. */
PASM_HD static inline float pasm_ce_grad(double eps, int k, double w_y, double w_j, double w_sum,
                                         double p, int is_true, double inv_total) {
    double g = (1.0 - eps) * w_y * (p - (is_true ? 1.0 : 0.0)) + eps / k * (w_sum * p - w_j);
    return (float)(g * inv_total);
}

/* Distillation at one logit: the KL term p (log p - log q) (0 when p == 0,
 * as xlogy) into *kl, and the gradient scale * (q - p) returned. */
PASM_HD static inline float pasm_kd_term(double logp, double logq, double scale, double *kl) {
    const double p = exp(logp);
    *kl = p > 0.0 ? p * (logp - logq) : 0.0;
    return (float)(scale * (exp(logq) - p));
}

/* The first class with the largest logit (ties: the lowest index). */
PASM_HD static inline int pasm_argmax_row(const float *z, int k) {
    int best = 0;
    for (int c = 1; c < k; c++)
        if (z[c] > z[best]) best = c;
    return best;
}

#endif
