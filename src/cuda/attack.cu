/* The point attacks' batches on the GPU (src/pasm/scorer_device.c): the
 * candidates of a one-pixel attack assembled from uint8 images kept on the
 * device (one small record per candidate goes up instead of a normalised
 * image), and each image's most salient pixel picked from the input
 * gradient where it was computed (a pixel index and its values come back
 * instead of the gradient). The arithmetic is the host path's
 * (src/pasm/attack.c, src/pasm/scorer.c): the normalisation table of
 * pasm_batch_make, the gradient scaled to pixel units as one float product,
 * channels summed in order, ties to the first pixel. */
#include <math.h>

#include "cuda/cuda_internal.cuh"

pasm_status pasm_cuda_pixel_batch(pasm_cuda_ctx *ctx, int n, int c, int s, const uint8_t *images,
                                  const pasm_cuda_pixel *items, const float *table, float *x) {
    const int64_t plane = (int64_t)s * s, per_image = c * plane;
    return pasm_each(
        ctx, (int64_t)n * per_image,
        [=] __host__ __device__(int64_t i) { /* i indexes x: ((item * c) + ch) * plane + yx */
            const int64_t j = i / per_image, rest = i % per_image;
            const int ch = (int)(rest / plane);
            const int64_t yx = rest % plane;
            const pasm_cuda_pixel it = items[j];
            const uint8_t v = yx == (int64_t)it.row * s + it.col
                                  ? it.value[ch]
                                  : images[(int64_t)it.img * per_image + rest];
            x[i] = table[ch * 256 + v];
        },
        "attack candidates");
}

pasm_status pasm_cuda_salient(pasm_cuda_ctx *ctx, int n, int c, int s, const float *dx,
                              pasm_cuda_scale3 scale, const uint8_t *skip, int32_t *pixel,
                              uint8_t *values) {
    const int plane = s * s;
    return pasm_each(
        ctx, n,
        [=] __host__ __device__(int64_t i) { /* one image */
            const float *d = dx + i * c * plane;
            const uint8_t *sk = skip ? skip + i * plane : NULL;
            int best = -1;
            float best_s = -1.0f;
            for (int p = 0; p < plane; p++) {
                if (sk && sk[p]) continue;
                float sal = 0.0f;
                for (int ch = 0; ch < c; ch++) sal += fabsf(d[ch * plane + p] * scale.v[ch]);
                if (sal > best_s) {
                    best_s = sal;
                    best = p;
                }
            }
            pixel[i] = best;
            for (int ch = 0; ch < c; ch++)
                values[i * c + ch] =
                    best >= 0 && d[ch * plane + best] * scale.v[ch] > 0.0f ? 255 : 0;
        },
        "most salient pixels");
}
