/* Private to src/ops: AVX-512 pieces shared by the flat tiles of the direct
 * stride-1 convolution (conv2d_direct.c) and of the stride-2 convolution on
 * phase planes (conv2d_s2.c). Every function is inlined into an AVX-512
 * caller. */
#ifndef PASM_OPS_CONV2D_FLAT_H
#define PASM_OPS_CONV2D_FLAT_H

#include <immintrin.h>

#include "ops/conv2d_internal.h"

/* The epilogue on one vector of sums, in the unfused layers' order: scale
 * and shift a, b (when scaled; a multiply and an add, not an FMA, to round
 * as batch norm does), the residual's values rv (when has_res), ReLU (max
 * with 0 also maps NaN to 0, as pasm_relu_forward). */
__attribute__((target("avx512f"), always_inline)) static inline __m512
pasm_conv2d_epilogue_vec(__m512 out, int scaled, __m512 a, __m512 b, int has_res, __m512 rv,
                         int relu) {
    if (scaled) out = _mm512_add_ps(_mm512_mul_ps(out, a), b);
    if (has_res) out = _mm512_add_ps(out, rv);
    if (relu) out = _mm512_max_ps(out, _mm512_setzero_ps());
    return out;
}

/* The end of a flat tile: rows r = 0..ROWS-1 of sums acc[r][0..NV-1] (the
 * vectors fv) through the epilogue of channel c0 + r (ep NULL: none; a
 * shift without a scale is a bias the sums already hold) into the plane
 * starting at y + at0 + r * plane_stride. NV, SPLIT (a vector may run into
 * the next image) and ROWS are compile-time constants at every call. */
__attribute__((target("avx512f"), always_inline)) static inline void
pasm_conv2d_flat_store(const pasm_conv2d_flat_vec *fv, __m512 acc[][3],
                       const pasm_conv2d_epilogue *ep, int c0, float *y, size_t at0,
                       size_t plane_stride, const int ROWS, const int NV, const int SPLIT) {
    const float *scale = ep ? ep->scale : NULL, *shift = ep ? ep->shift : NULL;
    const float *res = ep ? ep->residual : NULL;
    const int relu = ep && ep->relu;
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; r++) {
        const __m512 a = _mm512_set1_ps(scale ? scale[c0 + r] : 1.0f);
        const __m512 b = _mm512_set1_ps(scale && shift ? shift[c0 + r] : 0.0f);
        const size_t at = at0 + (size_t)r * plane_stride;
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            __m512 rv = _mm512_setzero_ps();
            if (res) {
                rv = _mm512_maskz_loadu_ps(fv[v].part[0], res + at + fv[v].y[0]);
                if (SPLIT && fv[v].part[1])
                    rv = _mm512_mask_loadu_ps(rv, fv[v].part[1], res + at + fv[v].y[1]);
            }
            const __m512 out =
                pasm_conv2d_epilogue_vec(acc[r][v], scale != NULL, a, b, res != NULL, rv, relu);
            _mm512_mask_storeu_ps(y + at + fv[v].y[0], fv[v].part[0], out);
            if (SPLIT && fv[v].part[1])
                _mm512_mask_storeu_ps(y + at + fv[v].y[1], fv[v].part[1], out);
        }
    }
}

/* The flat tile at batch pixel g0 of s's batch: its vectors (three, or what
 * is left of the batch) and whether one of them runs into the next image. */
static inline void pasm_conv2d_flat_kind(const pasm_conv2d_shape *s, int64_t g0, int *nv,
                                         int *split) {
    const int64_t HW = (int64_t)s->h_out * s->w_out, left = s->n * HW - g0;
    *nv = left > 32 ? 3 : left > 16 ? 2 : 1;
    *split = 0;
    for (int v = 0; v < *nv; v++) {
        const int64_t first = g0 + 16 * v;
        const int64_t last = first + (left - 16 * v < 16 ? left - 16 * v : 16) - 1;
        *split |= first / HW != last / HW;
    }
}

#endif
