/* A training step's data and loss on the GPU: the batch assembled from the
 * uint8 images kept on the device (normalisation and augmentation in one
 * pass, from plans drawn on the host), and the training loss with its
 * gradient, the step's loss and correct count left on the device for the
 * host to read when it wants them. The arithmetic is the host's: the index
 * maps of src/data/augment_map.h and the loss terms of src/ops/loss_math.h,
 * with sums in the host's order. */
#include <math.h>

#include "cuda/cuda_internal.cuh"
#include "data/augment_map.h"
#include "ops/loss_math.h"

pasm_status pasm_cuda_batch(pasm_cuda_ctx *ctx, int n, int c, int s, const uint8_t *images,
                            const int32_t *labels, const int32_t *order,
                            const pasm_augment_plan *plans, const float *table, float *x,
                            int32_t *labels_out, const pasm_cuda_step *step) {
    const int64_t plane = (int64_t)s * s, per_image = c * plane;
    return pasm_each(
        ctx, (int64_t)n * per_image,
        [=] __host__ __device__(int64_t i) { /* i indexes x: ((img * c) + ch) * plane + y * s + x */
            const int64_t img = i / per_image, rest = i % per_image;
            const int ch = (int)(rest / plane), yx = (int)(rest % plane);
            const int64_t at = (step ? step->start : 0) + img;
            const int64_t src = order ? order[at] : at;
            int sy, sx;
            float v = 0.0f;
            if (pasm_augment_source(&plans[at], s, yx / s, yx % s, &sy, &sx))
                v = table[ch * 256 + images[(int64_t)src * per_image + ch * plane + sy * s + sx]];
            x[i] = v;
            if (labels_out && rest == 0) labels_out[img] = labels[src];
        },
        "batch assembly");
}

size_t pasm_cuda_loss_terms_doubles(int n, int k) { return (size_t)n * (1 + 2 * (size_t)k); }

pasm_status pasm_cuda_train_loss(pasm_cuda_ctx *ctx, int n, int k, const float *logits,
                                 const int32_t *labels, float smoothing,
                                 const float *class_weights, const float *teacher, float kd_alpha,
                                 float kd_temp, float *dlogits, double *terms, double *loss,
                                 int32_t *correct, const pasm_cuda_step *step) {
    /* terms: per sample its weighted nll, then n*k smoothing terms, then
     * n*k KL terms, summed by one thread in the host's order */
    double *nll = terms, *smooth = terms + n, *kl = terms + n + (size_t)n * k;
    const double eps = smoothing;
    const float a = kd_alpha;
    pasm_status st = pasm_each(
        ctx, n,
        [=] __host__ __device__(int64_t i) {
            const int y = labels[i];
            if (y < 0 || y >= k) { /* the sum below gives NaN */
                for (int j = 0; j < k; j++) dlogits[i * k + j] = 0.0f;
                return;
            }
            double total = 0.0, w_sum = 0.0;
            for (int r = 0; r < n; r++) {
                const int yr = labels[r];
                total += class_weights ? (yr >= 0 && yr < k ? class_weights[yr] : 0.0) : 1.0;
            }
            for (int j = 0; j < k; j++) w_sum += class_weights ? class_weights[j] : 1.0;
            const double inv_total = 1.0 / total;
            const float *z = logits + i * k;
            const double lse = pasm_log_sum_exp(z, k, 1.0);
            const double w_y = class_weights ? class_weights[y] : 1.0;
            nll[i] = w_y * (lse - z[y]);
            double lse_s = 0, lse_t = 0, inv_t = 0, scale = 0;
            if (teacher) {
                inv_t = 1.0 / (double)kd_temp;
                scale = (double)kd_temp / n;
                lse_s = pasm_log_sum_exp(z, k, inv_t);
                lse_t = pasm_log_sum_exp(teacher + i * k, k, inv_t);
            }
            for (int j = 0; j < k; j++) {
                const double w_j = class_weights ? class_weights[j] : 1.0;
                const double logp = (double)z[j] - lse, p = exp(logp);
                smooth[i * k + j] = w_j * -logp;
                float g = pasm_ce_grad(eps, k, w_y, w_j, w_sum, p, j == y, inv_total);
                if (teacher) {
                    const float gkd = pasm_kd_term((double)teacher[i * k + j] * inv_t - lse_t,
                                                   (double)z[j] * inv_t - lse_s, scale,
                                                   &kl[i * k + j]);
                    g = (1.0f - a) * g + a * gkd;
                }
                dlogits[i * k + j] = g;
            }
        },
        "loss");
    if (st) return st;
    return pasm_each(
        ctx, 1,
        [=] __host__ __device__(int64_t) {
            const int slot = step ? step->b : 0;
            double total = 0.0, nll_sum = 0.0, smooth_sum = 0.0, kl_sum = 0.0;
            int right = 0, bad = 0;
            for (int i = 0; i < n; i++) {
                const int y = labels[i];
                if (y < 0 || y >= k) {
                    bad = 1;
                    continue;
                }
                total += class_weights ? class_weights[y] : 1.0;
                right += pasm_argmax_row(logits + (int64_t)i * k, k) == y;
            }
            correct[slot] = right;
            if (bad || total == 0.0) {
                loss[slot] = NAN;
                return;
            }
            for (int i = 0; i < n; i++) nll_sum += nll[i];
            for (int64_t j = 0; j < (int64_t)n * k; j++) smooth_sum += smooth[j];
            double ce = ((1.0 - eps) * nll_sum + eps / k * smooth_sum) * (1.0 / total);
            if (teacher) {
                for (int64_t j = 0; j < (int64_t)n * k; j++) kl_sum += kl[j];
                const double kd = (double)kd_temp * kd_temp * kl_sum / n;
                ce = (1.0 - a) * ce + a * kd;
            }
            loss[slot] = ce;
        },
        "loss sum");
}

pasm_status pasm_cuda_step_begin(pasm_cuda_ctx *ctx, int32_t *next, int batch, const float *lrs,
                                 const float *moms, pasm_cuda_step *step) {
    return pasm_each(
        ctx, 1,
        [=] __host__ __device__(int64_t) {
            const int32_t b = *next;
            step->b = b;
            step->start = b * batch;
            step->lr = lrs[b];
            step->momentum = moms[b];
            *next = b + 1;
        },
        "step position");
}
