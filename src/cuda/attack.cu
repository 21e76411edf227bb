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

/* A pixel's saliency: the sum over channels of |d * scale|, in channel
 * order (the host's float sum). */
__host__ __device__ static inline float saliency(const float *d, int c, int plane, int p,
                                                 const pasm_cuda_scale3 &scale) {
    float sal = 0.0f;
    for (int ch = 0; ch < c; ch++) sal += fabsf(d[ch * plane + p] * scale.v[ch]);
    return sal;
}

/* (s, p) beats the best so far (bs, bp): larger, or as large and earlier.
 * The host's scan keeps the first of the largest, which is this order's
 * best whatever order the candidates come in; NaN never beats anything. */
__host__ __device__ static inline int beats(float s, int p, float bs, int bp) {
    return s > bs || (s == bs && bp >= 0 && p < bp);
}

size_t pasm_cuda_salient_scratch_bytes(int n) {
    return (size_t)n * PASM_CUDA_SALIENT_LANES * (sizeof(float) + sizeof(int32_t));
}

pasm_status pasm_cuda_salient(pasm_cuda_ctx *ctx, int n, int c, int s, const float *dx,
                              pasm_cuda_scale3 scale, const uint8_t *skip, int32_t *pixel,
                              uint8_t *values, void *scratch) {
    const int plane = s * s, lanes = PASM_CUDA_SALIENT_LANES;
    float *lane_s = (float *)scratch;
    int32_t *lane_p = (int32_t *)(lane_s + (size_t)n * lanes);
    /* each image's pixels shared among its lanes (lane l: l, l + lanes, ...),
     * neighbouring lanes reading neighbouring pixels */
    pasm_status st = pasm_each(
        ctx, (int64_t)n * lanes,
        [=] __host__ __device__(int64_t t) {
            const int64_t i = t / lanes;
            const int lane = (int)(t % lanes);
            const float *d = dx + i * c * plane;
            const uint8_t *sk = skip ? skip + i * plane : NULL;
            float bs = -1.0f;
            int bp = -1;
            for (int p = lane; p < plane; p += lanes) {
                if (sk && sk[p]) continue;
                const float sal = saliency(d, c, plane, p, scale);
                if (sal > bs) bs = sal, bp = p;
            }
            lane_s[t] = bs;
            lane_p[t] = bp;
        },
        "most salient pixels, by lane");
    if (st) return st;
    return pasm_each(
        ctx, n,
        [=] __host__ __device__(int64_t i) { /* one image: its lanes' best, and its values */
            float bs = -1.0f;
            int bp = -1;
            for (int l = 0; l < lanes; l++) {
                const float ls = lane_s[i * lanes + l];
                const int lp = lane_p[i * lanes + l];
                if (lp >= 0 && beats(ls, lp, bs, bp)) bs = ls, bp = lp;
            }
            const float *d = dx + i * c * plane;
            pixel[i] = bp;
            for (int ch = 0; ch < c; ch++)
                values[i * c + ch] = bp >= 0 && d[ch * plane + bp] * scale.v[ch] > 0.0f ? 255 : 0;
        },
        "most salient pixels");
}

template <typename T>
static pasm_status patch_gather(pasm_cuda_ctx *ctx, int g, int c, int h, int w, const T *clean,
                                const T *win, const int32_t *meta, int ms, int src, int dst,
                                int stride, int pad, int hc, T *out) {
    const int64_t per_out = (int64_t)hc * hc * c;
    /* 32-bit division where the indices fit (always, at the attacks' sizes:
     * 37.7M elements for 1024 candidates at width 64): a 64-bit one is a
     * long instruction sequence on the GPU, per element */
    const bool narrow = (int64_t)g * per_out <= (int64_t)UINT32_MAX;
    return pasm_each(
        ctx, (int64_t)g * per_out,
        [=] __host__ __device__(int64_t i) { /* i indexes out: ((j * hc + a) * hc + b) * c + ch */
            int64_t j;
            int rest;
            if (narrow) {
                j = (uint32_t)i / (uint32_t)per_out;
                rest = (int)((uint32_t)i % (uint32_t)per_out);
            } else {
                j = i / per_out;
                rest = (int)(i % per_out);
            }
            const int ch = rest % c;
            const int ab = (int)(rest / c), a = ab / hc, b = ab % hc;
            const int32_t *mj = meta + j * ms;
            const int y = (dst >= 0 ? mj[1 + 2 * dst] : 0) * stride - pad + a;
            const int x = (dst >= 0 ? mj[2 + 2 * dst] : 0) * stride - pad + b;
            T v = from_f<T>(0.0f);
            if (y >= 0 && x >= 0 && y < h && x < h) {
                const int wy = y - mj[1 + 2 * src], wx = x - mj[2 + 2 * src];
                if (wy >= 0 && wx >= 0 && wy < w && wx < w)
                    v = win[((j * w + wy) * w + wx) * c + ch];
                else
                    v = clean[(((int64_t)mj[0] * h + y) * h + x) * c + ch];
            }
            out[i] = v;
        },
        "candidate windows");
}

pasm_status pasm_cuda_patch_gather(pasm_cuda_ctx *ctx, int g, int c, int h, int w,
                                   const void *clean, const void *win, const int32_t *meta,
                                   int ms, int src, int dst, int stride, int pad, int hc,
                                   void *out, pasm_cuda_dtype t) {
    return PASM_BY_DTYPE(t,
                         patch_gather(ctx, g, c, h, w, (const float *)clean, (const float *)win,
                                      meta, ms, src, dst, stride, pad, hc, (float *)out),
                         patch_gather(ctx, g, c, h, w, (const bf16 *)clean, (const bf16 *)win,
                                      meta, ms, src, dst, stride, pad, hc, (bf16 *)out));
}
