/* Losses over logits (N,K) and the softmax, on the CPU in double
 * precision: cross-entropy with PyTorch's label smoothing and class weights,
 * the distillation loss t^2 * KL(teacher || student) at temperature t, and
 * a row-wise softmax. K is small (a handful of expression classes), so rows
 * run in order on the calling thread and the sums have a fixed order. */
#include <math.h>

#include "ops/loss_math.h"
#include "pasm/ops.h"

/* PyTorch's F.cross_entropy(logits, labels, weight=w, label_smoothing=eps)
 * with reduction 'mean' (aten/src/ATen/native/LossNLL.cpp: the nll term
 * plus eps/K times the weighted sum of every class's -log p, both divided
 * by the weights of the true classes). With logp = log_softmax(z), w = 1
 * when no weights are given, and W = sum_i w[y_i]:
 *
 *   loss = ( (1-eps) * sum_i w[y_i] * (-logp[i][y_i])
 *            + eps/K * sum_i sum_k w[k] * (-logp[i][k]) ) / W
 *
 * and its gradient, with p = softmax(z) and S = sum_k w[k]:
 *
 *   dz[i][j] = ( (1-eps) * w[y_i] * (p[i][j] - [j == y_i])
 *                + eps/K * (S * p[i][j] - w[j]) ) / W
 *
 * Without weights that is the familiar (p - target) / N with
 * target = (1-eps) * onehot + eps/K. A label outside [0, K) returns NaN and
 * leaves dlogits and probs untouched; so does W == 0 (PyTorch gives NaN). */
double pasm_cross_entropy(int n, int k, const float *logits, const int32_t *labels,
                          float smoothing, const float *class_weights, float *dlogits,
                          float *probs) {
    if (n <= 0 || k <= 0) return NAN;
    double weight_total = 0.0, class_weight_sum = 0.0;
    for (int i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k) return NAN;
        weight_total += class_weights ? class_weights[labels[i]] : 1.0;
    }
    for (int j = 0; j < k; j++) class_weight_sum += class_weights ? class_weights[j] : 1.0;
    if (weight_total == 0.0) return NAN;

    const double eps = smoothing, inv_total = 1.0 / weight_total;
    double nll_sum = 0.0, smooth_sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        const int y = labels[i];
        const double lse = pasm_log_sum_exp(z, k, 1.0);
        const double w_y = class_weights ? class_weights[y] : 1.0;
        nll_sum += w_y * (lse - z[y]);
        for (int j = 0; j < k; j++) {
            const double w_j = class_weights ? class_weights[j] : 1.0;
            const double logp = (double)z[j] - lse, p = exp(logp);
            smooth_sum += w_j * -logp;
            if (probs) probs[(size_t)i * k + j] = (float)p;
            if (dlogits)
                dlogits[(size_t)i * k + j] =
                    pasm_ce_grad(eps, k, w_y, w_j, class_weight_sum, p, j == y, inv_total);
        }
    }
    return ((1.0 - eps) * nll_sum + eps / k * smooth_sum) * inv_total;
}

/* PyTorch's t*t * F.kl_div(F.log_softmax(s/t), F.softmax(teacher/t),
 * reduction='batchmean'): with p = softmax(teacher/t), q = softmax(s/t),
 *
 *   loss = t^2 / N * sum_i sum_j p[i][j] * (log p[i][j] - log q[i][j])
 *
 * (a term with p == 0 counts 0, as xlogy does), and
 *
 *   dloss/ds[i][j] = t / N * (q[i][j] - p[i][j]).
 *
 * t <= 0 returns NaN and leaves dstudent untouched. */
double pasm_distill_loss(int n, int k, const float *student, const float *teacher, float t,
                         float *dstudent) {
    if (!(t > 0.0f) || n <= 0 || k <= 0) return NAN;
    const double inv_t = 1.0 / (double)t, scale = (double)t / n;
    double kl_sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *s = student + (size_t)i * k, *te = teacher + (size_t)i * k;
        const double lse_s = pasm_log_sum_exp(s, k, inv_t), lse_t = pasm_log_sum_exp(te, k, inv_t);
        for (int j = 0; j < k; j++) {
            const double logp = (double)te[j] * inv_t - lse_t;
            const double logq = (double)s[j] * inv_t - lse_s;
            double kl;
            const float g = pasm_kd_term(logp, logq, scale, &kl);
            kl_sum += kl;
            if (dstudent) dstudent[(size_t)i * k + j] = g;
        }
    }
    return (double)t * t * kl_sum / n;
}

void pasm_softmax(int n, int k, const float *x, float *y) {
    if (k <= 0) return;
    for (int i = 0; i < n; i++) {
        const float *row = x + (size_t)i * k;
        float *out = y + (size_t)i * k;
        const double lse = pasm_log_sum_exp(row, k, 1.0);
        for (int j = 0; j < k; j++) out[j] = (float)exp((double)row[j] - lse);
    }
}
