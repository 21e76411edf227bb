/* 3x3 stride-2 convolutions with padding 1 and even input sizes (the first
 * 3x3 of every ResNet stage that halves the map) as four stride-1
 * convolutions on the input's phase planes, with AVX-512 and without
 * im2col. Input pixel (2i + a, 2j + b) is pixel (i, j) of phase plane
 * (a, b), and output pixel (oh, ow) reads through tap (kh, kw) the input
 * pixel (2 oh + kh - 1, 2 ow + kw - 1), that is
 *
 *   phase plane ((kh + 1) & 1, (kw + 1) & 1) at (oh + dh, ow + dw),
 *   dh = -1 for kh = 0, else 0 (dw likewise from kw).
 *
 * The phase planes have the output's size, so every tap is a fixed offset
 * in one of them, with the masks of a "same" 3x3 tap (dh + 1, dw + 1): the
 * flat tiles of the direct stride-1 kernel apply (conv2d_direct.c), vectors
 * running across row ends and from one image into the next.
 *
 * - forward: a tile holds 8 output channels x 48 output pixels of the batch,
 *   9 taps per input channel, the epilogue fused as in the direct kernel;
 * - input gradient: phase plane (a, b) of dx is the sum over dy's channels of
 *   dy shifted by (-dh, -dw) for each tap of that phase (1, 2, 2 or 4 of
 *   them); a tile holds 8 input channels x 48 pixels and runs the four
 *   phases one after another, then the phase planes are merged into dx;
 * - weight gradient: conv2d_wgrad.c's kernel on the phase planes, up to 16
 *   input channels (past that im2col + sgemm is faster: pasm_conv2d_s2_dw_ok).
 *
 * The input is split into phase planes (and dx's merged back) in chunks of
 * images (S2_CHUNK_BYTES of planes), a pass each, in the workspace; the
 * weight gradient adds the chunks in order, so no result depends on the
 * thread count. Measured in bench/notes.md. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "ops/conv2d_flat.h"

#define S2_CO 8 /* channels a tile holds */
#define S2_CHUNK_BYTES ((size_t)4 << 20)

/* PASM_CONV_S2=0 keeps im2col + sgemm for stride-2 convolutions. */
static int s2_allowed(void) {
    static int cached = -1;
    return pasm_env_on("PASM_CONV_S2", &cached);
}

static int s2_shape(const pasm_conv2d_shape *s) {
    /* 16+ pixels a phase plane: a vector spans at most two images */
    return s->precision != PASM_PRECISION_BF16 && s->kernel == 3 && s->stride == 2 && s->pad == 1 &&
           s->h_in % 2 == 0 && s->w_in % 2 == 0 && (int64_t)s->h_out * s->w_out >= 16 &&
           pasm_conv2d_avx512() && s2_allowed();
}

int pasm_conv2d_s2_forward_ok(const pasm_conv2d_shape *s) {
    return s2_shape(s) && s->c_out % S2_CO == 0;
}

int pasm_conv2d_s2_dx_ok(const pasm_conv2d_shape *s) {
    return s2_shape(s) && s->c_in % S2_CO == 0;
}

/* Up to 16 input channels, where the per-image sgemm's summed dimension
 * (Cin * 9) is short: 127 against 95 GFLOPS at 16->32 48x48, a tie at 32->64
 * 24x24, 110 against 141 at 64->128 12x12 (bench/notes.md). PASM_CONV_WGRAD=0
 * (conv2d_wgrad.c) also keeps this one on sgemm. */
int pasm_conv2d_s2_dw_ok(const pasm_conv2d_shape *s) {
    return s2_shape(s) && s->c_in <= 16 && s->c_out <= 64 && pasm_conv2d_wgrad_allowed();
}

/* Images per chunk: S2_CHUNK_BYTES of phase planes, at least one. */
static int chunk_images(const pasm_conv2d_shape *s) {
    const size_t image = sizeof(float) * (size_t)s->c_in * s->h_in * s->w_in;
    size_t n = S2_CHUNK_BYTES / image;
    if (n < 1) n = 1;
    return n < (size_t)s->n ? (int)n : s->n;
}

/* The weight gradient's table first (64-byte aligned), then a chunk's planes. */
static size_t table_bytes(const pasm_conv2d_shape *s, int dw) {
    return dw ? (pasm_conv2d_wgrad_table_bytes(s) + 63) / 64 * 64 : 0;
}

size_t pasm_conv2d_s2_workspace(const pasm_conv2d_shape *s, int forward, int dx, int dw) {
    forward = forward && pasm_conv2d_s2_forward_ok(s);
    dx = dx && pasm_conv2d_s2_dx_ok(s);
    dw = dw && pasm_conv2d_s2_dw_ok(s);
    if (!forward && !dx && !dw) return 0;
    const size_t planes = sizeof(float) * (size_t)chunk_images(s) * s->c_in * s->h_in * s->w_in;
    return table_bytes(s, dw) + planes;
}

/* The stride-1 "same" 3x3 shape on the phase planes of n images, with c_in
 * and c_out planes an image in the two operands (the flat vectors' image
 * strides). */
static pasm_conv2d_shape grid_shape(const pasm_conv2d_shape *s, int n, int c_in, int c_out) {
    return (pasm_conv2d_shape){.n = n,
                               .c_in = c_in,
                               .h_in = s->h_out,
                               .w_in = s->w_out,
                               .c_out = c_out,
                               .kernel = 3,
                               .stride = 1,
                               .pad = 1,
                               .h_out = s->h_out,
                               .w_out = s->w_out,
                               .precision = s->precision};
}

/* Tap kh (or kw) of the 3x3 kernel: its phase (0 or 1) and shift (-1 or 0). */
#define PHASE(k) PASM_CONV2D_S2_PHASE(k)
#define SHIFT(k) PASM_CONV2D_S2_SHIFT(k)

/* Phase planes: xp (C, 4, H/2, W/2) of x (C, H, W), C planes; merge is the
 * inverse. Even and odd columns part with two-source permutes, 32 input
 * columns at a time, masked at the row's end. */
__attribute__((target("avx512f"))) static void split_planes(const float *x, int64_t planes, int H,
                                                            int W, float *xp) {
    const int Wg = W / 2;
    const size_t hwg = (size_t)(H / 2) * Wg;
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd =
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
#pragma omp parallel for schedule(static) if (planes * H * W >= (1 << 16))
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x + (size_t)p * H * W;
        float *dst = xp + (size_t)p * 4 * hwg;
        for (int ih = 0; ih < H; ih++) {
            const float *row = src + (size_t)ih * W;
            float *de = dst + (size_t)(ih & 1) * 2 * hwg + (size_t)(ih >> 1) * Wg, *dodd = de + hwg;
            int j = 0;
            for (; j + 32 <= W; j += 32) {
                const __m512 lo = _mm512_loadu_ps(row + j), hi = _mm512_loadu_ps(row + j + 16);
                _mm512_storeu_ps(de + j / 2, _mm512_permutex2var_ps(lo, even, hi));
                _mm512_storeu_ps(dodd + j / 2, _mm512_permutex2var_ps(lo, odd, hi));
            }
            if (j < W) {
                const int left = W - j; /* even, under 32 */
                const __mmask16 m_lo = (__mmask16)((1u << (left < 16 ? left : 16)) - 1u);
                const __mmask16 m_hi = (__mmask16)((1u << (left > 16 ? left - 16 : 0)) - 1u);
                const __mmask16 m_out = (__mmask16)((1u << (left / 2)) - 1u);
                const __m512 lo = _mm512_maskz_loadu_ps(m_lo, row + j);
                const __m512 hi = _mm512_maskz_loadu_ps(m_hi, row + j + 16);
                _mm512_mask_storeu_ps(de + j / 2, m_out, _mm512_permutex2var_ps(lo, even, hi));
                _mm512_mask_storeu_ps(dodd + j / 2, m_out, _mm512_permutex2var_ps(lo, odd, hi));
            }
        }
    }
}

__attribute__((target("avx512f"))) static void merge_planes(const float *xp, int64_t planes, int H,
                                                            int W, float *x) {
    const int Wg = W / 2;
    const size_t hwg = (size_t)(H / 2) * Wg;
    const __m512i lo_idx =
        _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi_idx =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
#pragma omp parallel for schedule(static) if (planes * H * W >= (1 << 16))
    for (int64_t p = 0; p < planes; p++) {
        const float *src = xp + (size_t)p * 4 * hwg;
        float *dst = x + (size_t)p * H * W;
        for (int ih = 0; ih < H; ih++) {
            const float *se = src + (size_t)(ih & 1) * 2 * hwg + (size_t)(ih >> 1) * Wg;
            const float *so = se + hwg;
            float *row = dst + (size_t)ih * W;
            int j = 0;
            for (; j + 16 <= Wg; j += 16) {
                const __m512 e = _mm512_loadu_ps(se + j), o = _mm512_loadu_ps(so + j);
                _mm512_storeu_ps(row + 2 * j, _mm512_permutex2var_ps(e, lo_idx, o));
                _mm512_storeu_ps(row + 2 * j + 16, _mm512_permutex2var_ps(e, hi_idx, o));
            }
            if (j < Wg) {
                const int left = Wg - j; /* under 16 */
                const __mmask16 m_in = (__mmask16)((1u << left) - 1u);
                const int out = 2 * left; /* under 32 */
                const __mmask16 m_lo = (__mmask16)((1u << (out < 16 ? out : 16)) - 1u);
                const __mmask16 m_hi = (__mmask16)((1u << (out > 16 ? out - 16 : 0)) - 1u);
                const __m512 e = _mm512_maskz_loadu_ps(m_in, se + j);
                const __m512 o = _mm512_maskz_loadu_ps(m_in, so + j);
                _mm512_mask_storeu_ps(row + 2 * j, m_lo, _mm512_permutex2var_ps(e, lo_idx, o));
                _mm512_mask_storeu_ps(row + 2 * j + 16, m_hi, _mm512_permutex2var_ps(e, hi_idx, o));
            }
        }
    }
}

/* Forward tile: output channels co0..co0+7 at the vectors fv of the phase
 * planes xp (g: c_in = 4 Cin planes an image, c_out = Cout); cin = Cin. */
__attribute__((target("avx512f"), always_inline)) static inline void
fwd_tile(const pasm_conv2d_shape *g, const pasm_conv2d_flat_vec *fv, const float *xp,
         const float *w, const pasm_conv2d_epilogue *ep, float *y, int cin, int co0, const int NV,
         const int SPLIT) {
    const ptrdiff_t W = g->w_in, HW = (ptrdiff_t)g->h_in * g->w_in;
    const size_t w_co = (size_t)cin * 9;
    const float *scale = ep ? ep->scale : NULL, *shift = ep ? ep->shift : NULL;
    const float *bias = scale ? NULL : shift;
    __m512 acc[S2_CO][3];
#pragma GCC unroll 8
    for (int r = 0; r < S2_CO; r++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[co0 + r] : 0.0f);
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            acc[r][v] = b;
    }
    const float *wb = w + (size_t)co0 * w_co;
    for (int ci = 0; ci < cin; ci++) {
        const float *xc = xp + (size_t)ci * 4 * HW, *wk = wb + (size_t)ci * 9;
#pragma GCC unroll 3
        for (int kh = 0; kh < 3; kh++)
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++) {
                /* as the direct kernel's flat tiles: masked-off lanes are not
                 * read, and no load reaches into a next image the vector
                 * does not enter */
                const ptrdiff_t off = (2 * PHASE(kh) + PHASE(kw)) * HW + SHIFT(kh) * W + SHIFT(kw);
                __m512 in[3];
#pragma GCC unroll 3
                for (int v = 0; v < NV; v++) {
                    const __mmask16 row = fv[v].row[SHIFT(kh) + 1];
                    in[v] = _mm512_maskz_loadu_ps(fv[v].col[0][SHIFT(kw) + 1] & row,
                                                  xc + fv[v].x[0] + off);
                    if (SPLIT && fv[v].part[1])
                        in[v] = _mm512_mask_loadu_ps(in[v], fv[v].col[1][SHIFT(kw) + 1] & row,
                                                     xc + fv[v].x[1] + off);
                }
#pragma GCC unroll 8
                for (int r = 0; r < S2_CO; r++) {
                    const __m512 wv = _mm512_set1_ps(wk[(size_t)r * w_co + kh * 3 + kw]);
#pragma GCC unroll 3
                    for (int v = 0; v < NV; v++)
                        acc[r][v] = _mm512_fmadd_ps(wv, in[v], acc[r][v]);
                }
            }
    }
    pasm_conv2d_flat_store(fv, acc, ep, co0, y, (size_t)co0 * HW, (size_t)HW, S2_CO, NV, SPLIT);
}

/* Input-gradient tile of phase (A, B): input channels ci0..ci0+7 at the
 * vectors fv (g: c_in = Cout planes of dy an image, c_out = 4 Cin phase
 * planes of dxp). Phase plane pixel p sums dy[co][p - dh W - dw] w[co][ci]
 * [kh][kw] over the taps of the phase: row mask of "same" tap 1 - dh. */
__attribute__((target("avx512f"), always_inline)) static inline void
dx_tile(const pasm_conv2d_shape *g, const pasm_conv2d_flat_vec *fv, const float *dy, const float *w,
        float *dxp, int cin, int ci0, const int NV, const int SPLIT, const int A, const int B) {
    const ptrdiff_t W = g->w_in, HW = (ptrdiff_t)g->h_in * g->w_in;
    const int cout = g->c_in;
    __m512 acc[S2_CO][3];
#pragma GCC unroll 8
    for (int r = 0; r < S2_CO; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int co = 0; co < cout; co++) {
        const float *yc = dy + (size_t)co * HW, *wk = w + ((size_t)co * cin + ci0) * 9;
#pragma GCC unroll 3
        for (int kh = 0; kh < 3; kh++) {
            if (PHASE(kh) != A) continue;
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++) {
                if (PHASE(kw) != B) continue;
                const ptrdiff_t off = -SHIFT(kh) * W - SHIFT(kw);
                __m512 in[3];
#pragma GCC unroll 3
                for (int v = 0; v < NV; v++) {
                    const __mmask16 row = fv[v].row[1 - SHIFT(kh)];
                    in[v] = _mm512_maskz_loadu_ps(fv[v].col[0][1 - SHIFT(kw)] & row,
                                                  yc + fv[v].x[0] + off);
                    if (SPLIT && fv[v].part[1])
                        in[v] = _mm512_mask_loadu_ps(in[v], fv[v].col[1][1 - SHIFT(kw)] & row,
                                                     yc + fv[v].x[1] + off);
                }
#pragma GCC unroll 8
                for (int r = 0; r < S2_CO; r++) {
                    const __m512 wv = _mm512_set1_ps(wk[(size_t)r * 9 + kh * 3 + kw]);
#pragma GCC unroll 3
                    for (int v = 0; v < NV; v++)
                        acc[r][v] = _mm512_fmadd_ps(wv, in[v], acc[r][v]);
                }
            }
        }
    }
    pasm_conv2d_flat_store(fv, acc, NULL, ci0, dxp, ((size_t)ci0 * 4 + 2 * A + B) * HW,
                           (size_t)(4 * HW), S2_CO, NV, SPLIT);
}

/* The four phases of one input-gradient tile. */
__attribute__((target("avx512f"), always_inline)) static inline void
dx_tiles(const pasm_conv2d_shape *g, const pasm_conv2d_flat_vec *fv, const float *dy,
         const float *w, float *dxp, int cin, int ci0, const int NV, const int SPLIT) {
    dx_tile(g, fv, dy, w, dxp, cin, ci0, NV, SPLIT, 0, 0);
    dx_tile(g, fv, dy, w, dxp, cin, ci0, NV, SPLIT, 0, 1);
    dx_tile(g, fv, dy, w, dxp, cin, ci0, NV, SPLIT, 1, 0);
    dx_tile(g, fv, dy, w, dxp, cin, ci0, NV, SPLIT, 1, 1);
}

/* What a chunk's work items share. */
typedef struct {
    pasm_conv2d_shape g; /* the phase planes' flat shape */
    pasm_conv2d_flat_table tab;
    const float *in, *w;
    const pasm_conv2d_epilogue *ep;
    float *out;
    int cin; /* the convolution's input channels */
} s2_job;

/* The tile of channel block c0 at pixel g0 (forward: output channels, from
 * the phase planes; else input channels, into the phase planes). */
__attribute__((target("avx512f"))) static void tile(const s2_job *j, int forward, int c0,
                                                    int64_t g0) {
    int nv, split;
    pasm_conv2d_flat_kind(&j->g, g0, &nv, &split);
    pasm_conv2d_flat_vec fv[3];
    for (int v = 0; v < nv; v++)
        pasm_conv2d_flat_vec_get(&j->g, &j->tab, g0 + 16 * v, &fv[v]);
#define S2_TILE(NV, SPLIT)                                                                         \
    do {                                                                                           \
        if (forward)                                                                               \
            fwd_tile(&j->g, fv, j->in, j->w, j->ep, j->out, j->cin, c0, NV, SPLIT);                \
        else                                                                                       \
            dx_tiles(&j->g, fv, j->in, j->w, j->out, j->cin, c0, NV, SPLIT);                       \
    } while (0)
    if (nv == 3 && !split)
        S2_TILE(3, 0);
    else if (nv == 3)
        S2_TILE(3, 1);
    else if (nv == 2 && !split)
        S2_TILE(2, 0);
    else if (nv == 2)
        S2_TILE(2, 1);
    else if (!split)
        S2_TILE(1, 0);
    else
        S2_TILE(1, 1);
#undef S2_TILE
}

/* The flat tiles of a chunk of n images over `blocks` channel blocks, in
 * the order of the direct kernel's flat_forward: runs of tiles, within a run
 * the blocks, within a block the run's tiles. */
static void run_tiles(s2_job *j, int forward, int blocks) {
    const int64_t hw = (int64_t)j->g.h_in * j->g.w_in;
    const int64_t tiles = (j->g.n * hw + 47) / 48, run = pasm_conv2d_flat_run(hw);
    const int64_t items = (tiles + run - 1) / run * run * blocks;
    const int64_t flops_per_item = (int64_t)S2_CO * 48 * 9 * (forward ? j->cin : j->g.c_in);
    pasm_conv2d_flat_vec vec[PASM_CONV2D_FLAT_PERIOD_MAX];
    pasm_conv2d_flat_table_init(&j->g, vec, &j->tab);
#pragma omp parallel for schedule(static) if (items * flops_per_item >= ((int64_t)1 << 17))
    for (int64_t it = 0; it < items; it++) {
        const int64_t t = it / (run * blocks) * run + it % run;
        const int b = (int)(it / run % blocks);
        if (t < tiles) tile(j, forward, b * S2_CO, t * 48);
    }
}

void pasm_conv2d_s2_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                            const pasm_conv2d_epilogue *ep, float *y, void *workspace) {
    const int chunk = chunk_images(s);
    const size_t xs = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t ys = (size_t)s->c_out * s->h_out * s->w_out;
    float *xp = workspace;
    for (int i0 = 0; i0 < s->n; i0 += chunk) {
        const int m = s->n - i0 < chunk ? s->n - i0 : chunk;
        split_planes(x + i0 * xs, (int64_t)m * s->c_in, s->h_in, s->w_in, xp);
        pasm_conv2d_epilogue e;
        if (ep) {
            e = *ep;
            if (e.residual) e.residual += i0 * ys;
        }
        s2_job j = {.g = grid_shape(s, m, 4 * s->c_in, s->c_out),
                    .in = xp,
                    .w = weight,
                    .ep = ep ? &e : NULL,
                    .out = y + i0 * ys,
                    .cin = s->c_in};
        run_tiles(&j, 1, s->c_out / S2_CO);
    }
}

void pasm_conv2d_s2_backward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                             const float *dy, float *dx, float *dw, void *workspace) {
    const int chunk = chunk_images(s);
    const size_t xs = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t ys = (size_t)s->c_out * s->h_out * s->w_out;
    float *planes = (float *)((char *)workspace + table_bytes(s, dw != NULL));
    for (int i0 = 0; i0 < s->n; i0 += chunk) {
        const int m = s->n - i0 < chunk ? s->n - i0 : chunk;
        if (dw) {
            pasm_conv2d_shape sc = *s;
            sc.n = m;
            split_planes(x + i0 * xs, (int64_t)m * s->c_in, s->h_in, s->w_in, planes);
            pasm_conv2d_wgrad_s2(&sc, planes, dy + i0 * ys, dw, i0 > 0, workspace);
        }
        if (dx) {
            s2_job j = {.g = grid_shape(s, m, s->c_out, 4 * s->c_in),
                        .in = dy + i0 * ys,
                        .w = weight,
                        .out = planes,
                        .cin = s->c_in};
            run_tiles(&j, 0, s->c_in / S2_CO);
            merge_planes(planes, (int64_t)m * s->c_in, s->h_in, s->w_in, dx + i0 * xs);
        }
    }
}
