/* Direct stride-1 convolution with AVX-512 intrinsics, straight from the
 * NCHW image (no im2col buffer, no packing): a register tile of 8 output
 * channels x up to 48 output columns (three 16-lane vectors) of one output
 * row accumulates, for every input channel and kernel tap, one masked load of
 * the shifted input row times 8 broadcast weights. Masks zero the lanes that
 * fall into the padding or past the row's end, so borders need no copies.
 * The tile loops carry unroll pragmas: at -O2 GCC would otherwise keep the
 * accumulators in memory. Compiled for AVX-512F through target attributes
 * and chosen at run time (__builtin_cpu_supports), so the library still runs
 * on CPUs without it. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "ops/conv2d_internal.h"

#define TILE_CO 8
#define MAX_K 7

static int cpu_has_avx512(void) {
    static int cached = -1;
    if (cached < 0) {
        const char *env = getenv("PASM_CONV_DIRECT");
        int allowed = !(env && strcmp(env, "0") == 0);
        __builtin_cpu_init();
        cached = allowed && __builtin_cpu_supports("avx512f");
    }
    return cached;
}

static int flat_ok(const pasm_conv2d_shape *s);

int pasm_conv2d_direct_ok(const pasm_conv2d_shape *s) {
    /* Rows narrower than 12 columns would leave most lanes idle, unless
     * vectors run on across rows (flat_ok): the im2col + sgemm path is
     * faster there. */
    return s->stride == 1 && s->kernel <= MAX_K && s->c_out % TILE_CO == 0 &&
           (s->w_out >= 12 || flat_ok(s)) && cpu_has_avx512();
}

/* Lanes j of the vector starting at output column oc whose input column
 * oc + j + kw - P lies in [0, W) and whose output column lies in [0, Wo). */
static __mmask16 lane_mask(int oc, int kw, int pad, int w_in, int w_out) {
    int lo = pad - kw - oc, hi = w_in - oc - kw + pad;
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    if (hi > w_out - oc) hi = w_out - oc;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* One tile: output channels co0..co0+7, rows oh..oh+NR-1, columns
 * c0..c0+16*NV-1 (NR * NV <= 3 vectors per channel, 24 accumulators at
 * most). NR and NV are compile-time constants at every call, so acc stays
 * in registers; rows past the image (top/bottom padding) load nothing. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile(const pasm_conv2d_shape *s, const float *x, const float *w, const pasm_conv2d_epilogue *ep,
     const float *res, float *y, int co0, int oh, int c0, const int NR, const int NV) {
    const int K = s->kernel, P = s->pad, H = s->h_in, W = s->w_in, Wo = s->w_out;
    const int Cin = s->c_in, KK = K * K;
    const size_t w_co = (size_t)Cin * KK;
    /* A shift without a scale is a bias: the accumulators start from it. */
    const float *scale = ep ? ep->scale : NULL, *shift = ep ? ep->shift : NULL;
    const float *bias = scale ? NULL : shift;
    __m512 acc[TILE_CO][3];
#pragma GCC unroll 8
    for (int r = 0; r < TILE_CO; r++) {
        __m512 b = _mm512_set1_ps(bias ? bias[co0 + r] : 0.0f);
#pragma GCC unroll 8
        for (int q = 0; q < NR * NV; q++)
            acc[r][q] = b;
    }
    __mmask16 mask[3][MAX_K];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
        for (int kw = 0; kw < K; kw++)
            mask[v][kw] = lane_mask(c0 + 16 * v, kw, P, W, Wo);
    const float *wb = w + (size_t)co0 * w_co;
    for (int ci = 0; ci < Cin; ci++) {
        for (int kh = 0; kh < K; kh++) {
            const float *xr[3];
            __mmask16 row_on[3];
#pragma GCC unroll 8
            for (int rr = 0; rr < NR; rr++) {
                const int ih = oh + rr + kh - P;
                const int ok = ih >= 0 && ih < H;
                /* A row outside the image reads nothing (mask 0) from a
                 * harmless address. */
                xr[rr] = x + ((size_t)ci * H + (ok ? ih : 0)) * W;
                row_on[rr] = ok ? (__mmask16)0xFFFF : (__mmask16)0;
            }
            if (NR == 1 && !row_on[0]) continue;
            const float *wk = wb + (size_t)ci * KK + kh * K;
            for (int kw = 0; kw < K; kw++) {
                __m512 in[3];
#pragma GCC unroll 8
                for (int rr = 0; rr < NR; rr++)
#pragma GCC unroll 8
                    for (int v = 0; v < NV; v++) {
                        /* Masked-off lanes are not read, so the address
                         * may point before the row (left padding). */
                        const float *p = xr[rr] + (c0 + 16 * v + kw - P);
                        in[rr * NV + v] = _mm512_maskz_loadu_ps(mask[v][kw] & row_on[rr], p);
                    }
#pragma GCC unroll 8
                for (int r = 0; r < TILE_CO; r++) {
                    __m512 wv = _mm512_set1_ps(wk[(size_t)r * w_co + kw]);
#pragma GCC unroll 8
                    for (int q = 0; q < NR * NV; q++)
                        acc[r][q] = _mm512_fmadd_ps(wv, in[q], acc[r][q]);
                }
            }
        }
    }
    /* The epilogue, in the unfused layers' order: scale and shift (a
     * multiply and an add, not an FMA, to round as batch norm does), the
     * residual, ReLU (max with 0 also maps NaN to 0, as pasm_relu_forward). */
    const size_t plane = (size_t)s->h_out * Wo;
    const int relu = ep && ep->relu;
#pragma GCC unroll 8
    for (int r = 0; r < TILE_CO; r++) {
        const __m512 a = _mm512_set1_ps(scale ? scale[co0 + r] : 1.0f);
        const __m512 b = _mm512_set1_ps(scale && shift ? shift[co0 + r] : 0.0f);
#pragma GCC unroll 8
        for (int rr = 0; rr < NR; rr++) {
            const size_t at = (size_t)(co0 + r) * plane + (size_t)(oh + rr) * Wo + c0;
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                int left = Wo - c0 - 16 * v;
                __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
                __m512 out = acc[r][rr * NV + v];
                if (scale) out = _mm512_add_ps(_mm512_mul_ps(out, a), b);
                if (res) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(m, res + at + 16 * v));
                if (relu) out = _mm512_max_ps(out, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(y + at + 16 * v, m, out);
            }
        }
    }
}

/* "Same" convolutions (input and output of one size: stride 1, 2P = K - 1)
 * are also taken as flat planes: output pixel f = oh * W + ow reads input
 * pixel f + (kh - P) * W + (kw - P), a fixed offset per tap, so a vector
 * may run on across row ends and a tile holds 48 consecutive pixels
 * whatever the row length. Masks zero the lanes whose input column or row
 * lies in the padding, and the lanes past the plane. At 24x24 and 12x12
 * rows this fills every lane where one vector per row would leave a quarter
 * idle, and it takes maps down to 6x6. */
static int flat_ok(const pasm_conv2d_shape *s) {
    return s->h_in == s->h_out && s->w_in == s->w_out && s->w_out % 16 != 0;
}

/* One flat tile: output channels co0..co0+7, plane pixels f0..f0+16*NV-1
 * (clipped to the plane). NV is a compile-time constant at every call. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile_flat(const pasm_conv2d_shape *s, const float *x, const float *w,
          const pasm_conv2d_epilogue *ep, const float *res, float *y, int co0, int f0,
          const int NV) {
    const int K = s->kernel, P = s->pad, H = s->h_in, W = s->w_in;
    const int Cin = s->c_in, KK = K * K, HW = H * W;
    const size_t w_co = (size_t)Cin * KK;
    const float *scale = ep ? ep->scale : NULL, *shift = ep ? ep->shift : NULL;
    const float *bias = scale ? NULL : shift;
    /* Lane j of vector v is pixel f = f0 + 16v + j at (oh, ow): col[v][kw]
     * has its bit when the pixel is in the plane and its input column
     * ow + kw - P is inside, row[v][kh] when its input row oh + kh - P is. */
    __mmask16 col[3][MAX_K], row[3][MAX_K];
    for (int v = 0; v < NV; v++) {
        for (int k = 0; k < K; k++) col[v][k] = row[v][k] = 0;
        int f = f0 + 16 * v, oh = f / W, ow = f % W;
        for (int j = 0; j < 16 && f < HW; j++, f++) {
            for (int k = 0; k < K; k++) {
                const int iw = ow + k - P, ih = oh + k - P;
                if (iw >= 0 && iw < W) col[v][k] |= (__mmask16)(1u << j);
                if (ih >= 0 && ih < H) row[v][k] |= (__mmask16)(1u << j);
            }
            if (++ow == W) ow = 0, oh++;
        }
    }
    __m512 acc[TILE_CO][3];
#pragma GCC unroll 8
    for (int r = 0; r < TILE_CO; r++) {
        __m512 b = _mm512_set1_ps(bias ? bias[co0 + r] : 0.0f);
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = b;
    }
    const float *wb = w + (size_t)co0 * w_co;
    for (int ci = 0; ci < Cin; ci++) {
        const float *xc = x + (size_t)ci * HW + f0;
        for (int kh = 0; kh < K; kh++) {
            const float *wk = wb + (size_t)ci * KK + kh * K;
            for (int kw = 0; kw < K; kw++) {
                /* Masked-off lanes are not read, so the address may lie
                 * outside the plane. */
                const float *p = xc + (kh - P) * W + (kw - P);
                __m512 in[3];
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++)
                    in[v] = _mm512_maskz_loadu_ps(col[v][kw] & row[v][kh], p + 16 * v);
#pragma GCC unroll 8
                for (int r = 0; r < TILE_CO; r++) {
                    __m512 wv = _mm512_set1_ps(wk[(size_t)r * w_co + kw]);
#pragma GCC unroll 8
                    for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(wv, in[v], acc[r][v]);
                }
            }
        }
    }
    const int relu = ep && ep->relu;
#pragma GCC unroll 8
    for (int r = 0; r < TILE_CO; r++) {
        const __m512 a = _mm512_set1_ps(scale ? scale[co0 + r] : 1.0f);
        const __m512 b = _mm512_set1_ps(scale && shift ? shift[co0 + r] : 0.0f);
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            const int left = HW - f0 - 16 * v;
            const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
            const size_t at = (size_t)(co0 + r) * HW + f0 + 16 * v;
            __m512 out = acc[r][v];
            if (scale) out = _mm512_add_ps(_mm512_mul_ps(out, a), b);
            if (res) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(m, res + at));
            if (relu) out = _mm512_max_ps(out, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(y + at, m, out);
        }
    }
}

/* The flat tile at f0: three vectors, or what is left of the plane. */
__attribute__((target("avx512f"))) static void
flat(const pasm_conv2d_shape *s, const float *x, const float *w, const pasm_conv2d_epilogue *ep,
     const float *res, float *y, int co0, int f0) {
    const int left = s->h_out * s->w_out - f0;
    if (left > 32)
        tile_flat(s, x, w, ep, res, y, co0, f0, 3);
    else if (left > 16)
        tile_flat(s, x, w, ep, res, y, co0, f0, 2);
    else
        tile_flat(s, x, w, ep, res, y, co0, f0, 1);
}

/* Output rows per work item: three when a row fits one vector (the weight
 * broadcasts then serve three rows), else one. */
static int rows_per_item(const pasm_conv2d_shape *s) {
    return s->w_out <= 16 ? 3 : 1;
}

/* Rows oh..oh+rows_per_item-1 (clipped) of one channel block, in chunks of
 * up to 48 columns. */
__attribute__((target("avx512f"))) static void
rows(const pasm_conv2d_shape *s, const float *x, const float *w, const pasm_conv2d_epilogue *ep,
     const float *res, float *y, int co0, int oh) {
    if (rows_per_item(s) == 3) {
        int left = s->h_out - oh;
        if (left >= 3)
            tile(s, x, w, ep, res, y, co0, oh, 0, 3, 1);
        else if (left == 2)
            tile(s, x, w, ep, res, y, co0, oh, 0, 2, 1);
        else
            tile(s, x, w, ep, res, y, co0, oh, 0, 1, 1);
        return;
    }
    for (int c0 = 0; c0 < s->w_out; c0 += 48) {
        int left = s->w_out - c0;
        if (left > 32)
            tile(s, x, w, ep, res, y, co0, oh, c0, 1, 3);
        else if (left > 16)
            tile(s, x, w, ep, res, y, co0, oh, c0, 1, 2);
        else
            tile(s, x, w, ep, res, y, co0, oh, c0, 1, 1);
    }
}

void pasm_conv2d_direct_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                                const pasm_conv2d_epilogue *ep, float *y) {
    const int blocks = s->c_out / TILE_CO, per = rows_per_item(s), is_flat = flat_ok(s);
    /* Work items: groups of rows, or flat tiles of 48 pixels. */
    const int groups = is_flat ? (s->h_out * s->w_out + 47) / 48 : (s->h_out + per - 1) / per;
    const int64_t items = (int64_t)s->n * blocks * groups;
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t y_stride = (size_t)s->c_out * s->h_out * s->w_out;
    /* Rows of one image and block stay together on a thread (input rows
     * reused from cache); a team starts only when there is work for it. */
    const int64_t flops_per_item = (int64_t)TILE_CO * (is_flat ? 48 : per * s->w_out) * s->c_in *
                                   s->kernel * s->kernel;
#pragma omp parallel for schedule(static) if (items * flops_per_item >= ((int64_t)1 << 17))
    for (int64_t it = 0; it < items; it++) {
        const int g = (int)(it % groups);
        const int b = (int)((it / groups) % blocks);
        const int i = (int)(it / ((int64_t)groups * blocks));
        const float *res = ep && ep->residual ? ep->residual + i * y_stride : NULL;
        if (is_flat)
            flat(s, x + i * x_stride, weight, ep, res, y + i * y_stride, b * TILE_CO, g * 48);
        else
            rows(s, x + i * x_stride, weight, ep, res, y + i * y_stride, b * TILE_CO, g * per);
    }
}
