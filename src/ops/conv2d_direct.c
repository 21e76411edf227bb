/* Direct stride-1 convolution with AVX-512 intrinsics, straight from the
 * NCHW image (no im2col buffer, no packing): a register tile of 8 output
 * channels x up to 48 output columns (three 16-lane vectors) of one output
 * row accumulates, for every input channel and kernel tap, one masked load of
 * the shifted input row times 8 broadcast weights. Masks zero the lanes that
 * fall into the padding or past the row's end, so borders need no copies.
 * "Same" convolutions whose rows are not whole vectors take the same tile
 * over 48 consecutive pixels of a flat plane instead (flat_ok, below).
 * The tile loops carry unroll pragmas: at -O2 GCC would otherwise keep the
 * accumulators in memory. Compiled for AVX-512F through target attributes
 * and chosen at run time (__builtin_cpu_supports), so the library still runs
 * on CPUs without it. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "ops/conv2d_flat.h"

#define TILE_CO 8
#define MAX_K PASM_CONV2D_FLAT_MAX_K

int pasm_conv2d_avx512(void) {
    static int allowed = -1, cpu = -1; /* read once: this is asked per convolution */
    if (__atomic_load_n(&cpu, __ATOMIC_RELAXED) < 0) {
        __builtin_cpu_init();
        __atomic_store_n(&cpu, __builtin_cpu_supports("avx512f") != 0, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&cpu, __ATOMIC_RELAXED) && pasm_env_on("PASM_CONV_DIRECT", &allowed);
}

static int flat_ok(const pasm_conv2d_shape *s);

int pasm_conv2d_direct_ok(const pasm_conv2d_shape *s) {
    /* Rows narrower than 12 columns would leave most lanes idle, unless
     * vectors run on across rows (flat_ok): the im2col + sgemm path is
     * faster there. */
    return s->stride == 1 && s->kernel <= MAX_K && s->c_out % TILE_CO == 0 &&
           (s->w_out >= 12 || flat_ok(s)) && pasm_conv2d_avx512();
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
                const __m512 rv =
                    res ? _mm512_maskz_loadu_ps(m, res + at + 16 * v) : _mm512_setzero_ps();
                const __m512 out = pasm_conv2d_epilogue_vec(acc[r][rr * NV + v], scale != NULL, a,
                                                            b, res != NULL, rv, relu);
                _mm512_mask_storeu_ps(y + at + 16 * v, m, out);
            }
        }
    }
}

/* "Same" convolutions (input and output of one size: stride 1, 2P = K - 1)
 * are also taken as flat planes: output pixel f = oh * W + ow reads input
 * pixel f + (kh - P) * W + (kw - P), a fixed offset per tap, so a vector
 * may run on across row ends. The planes of one channel over the batch are
 * taken as one long plane, so a vector may also run on from one image into
 * the next: a tile holds 48 consecutive pixels whatever the row length and
 * the plane size. Masks zero the lanes whose input column or row lies in
 * the padding, and the lanes past the batch. At 24x24 and 12x12 this fills
 * every lane where one vector per row would leave a quarter idle, and at
 * 6x6 (36 pixels an image) where a tile per image would. */
static int flat_ok(const pasm_conv2d_shape *s) {
    /* 16+ pixels an image: a vector spans at most two images. */
    return s->stride == 1 && s->h_in == s->h_out && s->w_in == s->w_out && s->w_out % 16 != 0 &&
           s->h_out * s->w_out >= 16;
}

typedef pasm_conv2d_flat_vec flat_vec;

void pasm_conv2d_flat_vec_init(const pasm_conv2d_shape *s, int64_t g0, flat_vec *fv) {
    const int K = s->kernel, P = s->pad, H = s->h_in, W = s->w_in, HW = H * W;
    const int64_t total = (int64_t)s->n * HW;
    const int img = (int)(g0 / HW), f0 = (int)(g0 % HW);
    const size_t x_stride = (size_t)s->c_in * HW, y_stride = (size_t)s->c_out * HW;
    fv->x[0] = (size_t)img * x_stride + (size_t)f0;
    fv->y[0] = (size_t)img * y_stride + (size_t)f0;
    /* lane j >= HW - f0 is pixel f0 + j - HW of the next image */
    fv->x[1] = fv->x[0] + x_stride - (size_t)HW;
    fv->y[1] = fv->y[0] + y_stride - (size_t)HW;
    memset(fv->part, 0, sizeof fv->part);
    memset(fv->col, 0, sizeof fv->col);
    memset(fv->row, 0, sizeof fv->row);
    int oh = f0 / W, ow = f0 % W, q = 0;
    for (int j = 0; j < 16 && g0 + j < total; j++) {
        const __mmask16 bit = (__mmask16)(1u << j);
        if (j == HW - f0) q = 1, oh = ow = 0;
        fv->part[q] |= bit;
        for (int k = 0; k < K; k++) {
            const int iw = ow + k - P, ih = oh + k - P;
            if (iw >= 0 && iw < W) fv->col[q][k] |= bit;
            if (ih >= 0 && ih < H) fv->row[k] |= bit;
        }
        if (++ow == W) ow = 0, oh++;
    }
}

/* The masks of a flat vector depend only on where its first pixel falls in
 * its image, so they repeat every lcm(HW, 16) pixels (a period of whole
 * images). Where the batch holds several periods, flat_forward builds the
 * vectors of one period once (building them cost 2.6% of a width-16
 * inference when every tile built its own) and each tile takes copies,
 * moved to its images (pasm_conv2d_flat_vec_get); the batch's last
 * vectors, which the batch's end cuts, are built as before. Periods of up
 * to PASM_CONV2D_FLAT_PERIOD_MAX vectors (24x24 has 36, 6x6 and 12x12 9); a
 * longer one (13x13: 169) builds every tile's own, as before. */
void pasm_conv2d_flat_table_init(const pasm_conv2d_shape *s, flat_vec *vec,
                                 pasm_conv2d_flat_table *tab) {
    const int64_t hw = (int64_t)s->h_in * s->w_in, total = (int64_t)s->n * hw;
    memset(tab, 0, sizeof *tab);
    tab->period = pasm_conv2d_flat_period(hw);
    tab->period_images = tab->period * 16 / hw;
    tab->whole = total / 16;
    /* only when the batch holds four periods or more: else building them
     * costs what it saves */
    if (tab->period > PASM_CONV2D_FLAT_PERIOD_MAX || tab->period * 4 > tab->whole) return;
    pasm_conv2d_shape one = *s;
    one.n = (int)tab->period_images; /* exactly one period: no vector is cut */
    for (int64_t e = 0; e < tab->period; e++) pasm_conv2d_flat_vec_init(&one, 16 * e, &vec[e]);
    tab->vec = vec;
}

/* One flat tile: output channels co0..co0+7, batch pixels g0..g0+16*NV-1
 * (clipped to the batch). NV and SPLIT (whether a vector runs into the next
 * image) are compile-time constants at every call. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile_flat(const pasm_conv2d_shape *s, const pasm_conv2d_flat_table *tab, const float *x,
          const float *w, const pasm_conv2d_epilogue *ep, float *y, int co0, int64_t g0,
          const int NV, const int SPLIT) {
    const int K = s->kernel, P = s->pad, W = s->w_in;
    const int Cin = s->c_in, KK = K * K, HW = s->h_in * W;
    const size_t w_co = (size_t)Cin * KK;
    const float *scale = ep ? ep->scale : NULL, *shift = ep ? ep->shift : NULL;
    const float *bias = scale ? NULL : shift;
    flat_vec fv[3];
    for (int v = 0; v < NV; v++) pasm_conv2d_flat_vec_get(s, tab, g0 + 16 * v, &fv[v]);
    __m512 acc[TILE_CO][3];
#pragma GCC unroll 8
    for (int r = 0; r < TILE_CO; r++) {
        __m512 b = _mm512_set1_ps(bias ? bias[co0 + r] : 0.0f);
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = b;
    }
    const float *wb = w + (size_t)co0 * w_co;
    for (int ci = 0; ci < Cin; ci++) {
        const float *xc = x + (size_t)ci * HW;
        for (int kh = 0; kh < K; kh++) {
            const float *wk = wb + (size_t)ci * KK + kh * K;
            for (int kw = 0; kw < K; kw++) {
                /* Masked-off lanes are not read, so the addresses may lie
                 * outside the planes; but a vector without lanes in the next
                 * image does not load from it at all: a load whose lanes
                 * are all masked off still costs a slow fault-suppression
                 * assist when its address lies on an unmapped page (after
                 * the last image), measured 7x slower. The first load can
                 * be all off outside x only for the outer taps of the first
                 * and last channel planes of the batch: a few loads a block. */
                const ptrdiff_t off = (ptrdiff_t)(kh - P) * W + (kw - P);
                __m512 in[3];
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++) {
                    in[v] = _mm512_maskz_loadu_ps(fv[v].col[0][kw] & fv[v].row[kh],
                                                  xc + fv[v].x[0] + off);
                    if (SPLIT && fv[v].part[1])
                        in[v] = _mm512_mask_loadu_ps(in[v], fv[v].col[1][kw] & fv[v].row[kh],
                                                     xc + fv[v].x[1] + off);
                }
#pragma GCC unroll 8
                for (int r = 0; r < TILE_CO; r++) {
                    __m512 wv = _mm512_set1_ps(wk[(size_t)r * w_co + kw]);
#pragma GCC unroll 8
                    for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(wv, in[v], acc[r][v]);
                }
            }
        }
    }
    pasm_conv2d_flat_store(fv, acc, ep, co0, y, (size_t)co0 * HW, (size_t)HW, TILE_CO, NV, SPLIT);
}

/* The flat tile at batch pixel g0: three vectors, or what is left of the
 * batch; the variant with a second image's loads only where a vector runs
 * into the next image. */
__attribute__((target("avx512f"))) static void
flat(const pasm_conv2d_shape *s, const pasm_conv2d_flat_table *tab, const float *x, const float *w,
     const pasm_conv2d_epilogue *ep, float *y, int co0, int64_t g0) {
    int nv, split;
    pasm_conv2d_flat_kind(s, g0, &nv, &split);
    if (nv == 3) {
        if (split)
            tile_flat(s, tab, x, w, ep, y, co0, g0, 3, 1);
        else
            tile_flat(s, tab, x, w, ep, y, co0, g0, 3, 0);
    } else if (nv == 2) {
        if (split)
            tile_flat(s, tab, x, w, ep, y, co0, g0, 2, 1);
        else
            tile_flat(s, tab, x, w, ep, y, co0, g0, 2, 0);
    } else {
        if (split)
            tile_flat(s, tab, x, w, ep, y, co0, g0, 1, 1);
        else
            tile_flat(s, tab, x, w, ep, y, co0, g0, 1, 0);
    }
}

/* The flat convolution over the whole batch. Work items run through runs
 * of tiles, within a run through the channel blocks and within a block
 * through the run's tiles, so a block's weights serve the run from cache:
 * a run is as many tiles as an image has (ceil(HW / 48), counted from the
 * batch's start) when images hold whole vectors, and the run's input is read
 * again from cache by every block; else one tile, whose input serves every
 * block while the weights stream. */
static void flat_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                         const pasm_conv2d_epilogue *ep, float *y) {
    const int hw = s->h_out * s->w_out, blocks = s->c_out / TILE_CO;
    const int64_t tiles = ((int64_t)s->n * hw + 47) / 48;
    const int64_t run = pasm_conv2d_flat_run(hw);
    const int64_t items = (tiles + run - 1) / run * run * blocks;
    const int64_t flops_per_item = (int64_t)TILE_CO * 48 * s->c_in * s->kernel * s->kernel;
    flat_vec vec[PASM_CONV2D_FLAT_PERIOD_MAX];
    pasm_conv2d_flat_table tab;
    pasm_conv2d_flat_table_init(s, vec, &tab);
#pragma omp parallel for schedule(static) if (items * flops_per_item >= ((int64_t)1 << 17))
    for (int64_t it = 0; it < items; it++) {
        const int64_t t = it / (run * blocks) * run + it % run;
        const int b = (int)(it / run % blocks);
        if (t < tiles) flat(s, &tab, x, weight, ep, y, b * TILE_CO, t * 48);
    }
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
    if (flat_ok(s)) {
        flat_forward(s, x, weight, ep, y);
        return;
    }
    const int blocks = s->c_out / TILE_CO, per = rows_per_item(s);
    const int groups = (s->h_out + per - 1) / per;
    const int64_t items = (int64_t)s->n * blocks * groups;
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t y_stride = (size_t)s->c_out * s->h_out * s->w_out;
    /* Rows of one image and block stay together on a thread (input rows
     * reused from cache); a team starts only when there is work for it. */
    const int64_t flops_per_item =
        (int64_t)TILE_CO * per * s->w_out * s->c_in * s->kernel * s->kernel;
#pragma omp parallel for schedule(static) if (items * flops_per_item >= ((int64_t)1 << 17))
    for (int64_t it = 0; it < items; it++) {
        const int g = (int)(it % groups);
        const int b = (int)((it / groups) % blocks);
        const int i = (int)(it / ((int64_t)groups * blocks));
        const float *res = ep && ep->residual ? ep->residual + i * y_stride : NULL;
        rows(s, x + i * x_stride, weight, ep, res, y + i * y_stride, b * TILE_CO, g * per);
    }
}
