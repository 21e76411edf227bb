/* The weight gradient of "same" 3x3 stride-1 convolutions (padding 1, the
 * ResNet's every stride-1 3x3) with AVX-512, straight from the NCHW input
 * and output gradient, without im2col or packing (and of 3x3 stride-2
 * convolutions from their input's phase planes, conv2d_s2.c: the same
 * kernel, each tap reading its phase plane, S2_PHASE below):
 *
 *   dW[co][ci][kh][kw] = sum over the batch's pixels g of
 *                        dy[co][g] * x[ci][g + (kh - 1) * W + (kw - 1)]
 *
 * taken over the long flat plane of each channel (all images one after
 * another, as the direct forward's flat tiles, conv2d_direct.c): a vector
 * of 16 consecutive pixels may run across row ends and from one image into
 * the next, and per tap a mask keeps the lanes whose input pixel lies inside
 * their own image. A work item holds up to 3 output channels x 1 input
 * channel x the 9 taps in 27 accumulators: per 16 pixels 3 loads of dy, 9
 * masked loads of x and 27 FMAs. Taken up to 64 channels each way (stride 2:
 * up to 16 input channels, conv2d_s2.c), where it beats im2col + sgemm (the
 * per-image sgemms are small there: 97 against 155 GFLOPS at 16->16 48x48);
 * past that sgemm's blocking wins (bench/notes.md).
 *
 * The masks of a vector depend only on where its first pixel falls in its
 * image, so they repeat every lcm(H*W, 16) pixels: one table of that period
 * (built per call, in the workspace) serves the whole batch.
 *
 * Order: the batch's pixels in chunks of WG_CHUNK vectors; in each chunk a
 * thread runs its own contiguous range of items (one output-channel block
 * and one input channel each), so a block's dy chunk stays in cache while the
 * input channels pass. Every weight's sum is the chunks' partial sums (each
 * a horizontal sum of its accumulator) added in chunk order by the one
 * thread that owns it: the result does not depend on the thread count. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "ops/conv2d_internal.h"

#define WG_CO 3      /* output channels a work item holds */
#define WG_TAPS 9    /* 3x3 */
#define WG_CHUNK 256 /* vectors (of 16 pixels) per chunk of the batch */

/* One vector of the period: lane 0's image (counted from the period's
 * first) and pixel, its lanes in that image and in the next, and per part
 * and tap the lanes whose input pixel lies inside. */
typedef struct {
    int32_t img, f0;
    __mmask16 part[2];
    __mmask16 tap[2][WG_TAPS];
} wg_vec;

/* The planes the kernel walks: the input's for stride 1; for stride 2 the
 * phase planes of the output's size (conv2d_s2.c), each input channel's
 * four one after another. */
static int64_t plane_pixels(const pasm_conv2d_shape *s) {
    return s->stride == 2 ? (int64_t)s->h_out * s->w_out : (int64_t)s->h_in * s->w_in;
}

/* Vectors in one period of the masks: lcm(HW, 16) / 16. */
static int64_t period_vectors(const pasm_conv2d_shape *s) {
    return pasm_conv2d_flat_period(plane_pixels(s));
}

/* PASM_CONV_WGRAD=0 keeps im2col + sgemm for every weight gradient. */
int pasm_conv2d_wgrad_allowed(void) {
    static int cached = -1;
    return pasm_env_on("PASM_CONV_WGRAD", &cached);
}

int pasm_conv2d_wgrad_ok(const pasm_conv2d_shape *s) {
    /* 16+ pixels an image: a vector spans at most two images. Up to 64
     * channels each way, where the per-image sgemms are small; with more,
     * sgemm's blocking wins (bench/notes.md: 164 vs 187 GFLOPS at 256->256
     * 12x12, 121 vs 173 at 512->512 6x6, a tie at 128->128 24x24). */
    return s->precision != PASM_PRECISION_BF16 && s->kernel == 3 && s->stride == 1 && s->pad == 1 &&
           (int64_t)s->h_in * s->w_in >= 16 && s->c_in <= 64 && s->c_out <= 64 &&
           pasm_conv2d_avx512() && pasm_conv2d_wgrad_allowed();
}

/* The table of one period's vectors (both strides). */
size_t pasm_conv2d_wgrad_table_bytes(const pasm_conv2d_shape *s) {
    return (size_t)period_vectors(s) * sizeof(wg_vec);
}

size_t pasm_conv2d_wgrad_workspace(const pasm_conv2d_shape *s) {
    return pasm_conv2d_wgrad_ok(s) ? pasm_conv2d_wgrad_table_bytes(s) : 0;
}

/* Tap k = 3 * kh + kw of a stride-2 convolution on the phase planes: phase
 * plane ((kh + 1) & 1, (kw + 1) & 1), shifted one row up when kh = 0 and one
 * column left when kw = 0 (conv2d_s2.c); its row and column masks are
 * those of the "same" 3x3 tap (dh + 1, dw + 1). */
#define S2_PHASE(k) (2 * PASM_CONV2D_S2_PHASE((k) / 3) + PASM_CONV2D_S2_PHASE((k) % 3))
#define S2_DH(k) PASM_CONV2D_S2_SHIFT((k) / 3)
#define S2_DW(k) PASM_CONV2D_S2_SHIFT((k) % 3)

/* The vector whose lane 0 is pixel 16 * e of the period: the flat forward's
 * vector on a batch of exactly one period (the period starts at an image's
 * first pixel and the batch's end cuts nothing) of the "same" 3x3 shape on
 * the planes, its column and row masks combined per tap. */
static void wg_vec_init(const pasm_conv2d_shape *s, int64_t period_images, int64_t e, wg_vec *t) {
    const int64_t hw = plane_pixels(s), g0 = 16 * e;
    const int s2 = s->stride == 2;
    pasm_conv2d_shape one = *s;
    one.n = (int)period_images;
    if (s2) one.h_in = s->h_out, one.w_in = s->w_out, one.stride = 1;
    pasm_conv2d_flat_vec fv;
    pasm_conv2d_flat_vec_init(&one, g0, &fv);
    t->img = (int32_t)(g0 / hw);
    t->f0 = (int32_t)(g0 % hw);
    for (int q = 0; q < 2; q++) {
        t->part[q] = fv.part[q];
        for (int k = 0; k < WG_TAPS; k++)
            t->tap[q][k] = s2 ? fv.col[q][S2_DW(k) + 1] & fv.row[S2_DH(k) + 1]
                              : fv.col[q][k % 3] & fv.row[k / 3];
    }
}

/* What every item needs: the operands, the planes' sizes and strides
 * (x_ci: from one input channel's planes to the next; xs, ys: from one
 * image to the next), the table and where the batch ends. */
typedef struct {
    const pasm_conv2d_shape *s;
    const float *x, *dy;
    float *dw;
    int accumulate; /* add to dw instead of storing the first chunk */
    size_t hw, x_ci, xs, ys;
    ptrdiff_t W;
    const wg_vec *table;
    int64_t period, period_images, vectors;
    int64_t tail_v; /* the last vector when it is cut short by the batch's end, else -1 */
    wg_vec tail;    /* its entry with the lanes past the end removed */
} wg_ctx;

/* One vector: the dy vectors of NCO channels times the 9 shifted x vectors
 * into acc; SPLIT: the vector runs into the next image (second loads); S2:
 * x is phase planes (taps as S2_PHASE). */
__attribute__((target("avx512f"), always_inline)) static inline void
wg_vector(const wg_vec *t, const float *xb, const float *yb, size_t x_next, size_t y_next,
          size_t hw, ptrdiff_t W, __m512 acc[WG_CO][WG_TAPS], const int NCO, const int SPLIT,
          const int S2) {
    __m512 d[WG_CO];
#pragma GCC unroll 4
    for (int r = 0; r < NCO; r++) {
        d[r] = _mm512_maskz_loadu_ps(t->part[0], yb + r * hw);
        if (SPLIT) d[r] = _mm512_mask_loadu_ps(d[r], t->part[1], yb + y_next + r * hw);
    }
#pragma GCC unroll 9
    for (int k = 0; k < WG_TAPS; k++) {
        /* Masked-off lanes are not read: the address may lie before the
         * plane (the first row's upper taps) or past it. */
        const ptrdiff_t off = S2 ? (ptrdiff_t)S2_PHASE(k) * (ptrdiff_t)hw + S2_DH(k) * W + S2_DW(k)
                                 : (ptrdiff_t)(k / 3 - 1) * W + (k % 3 - 1);
        __m512 xv = _mm512_maskz_loadu_ps(t->tap[0][k], xb + off);
        if (SPLIT) xv = _mm512_mask_loadu_ps(xv, t->tap[1][k], xb + x_next + off);
#pragma GCC unroll 4
        for (int r = 0; r < NCO; r++)
            acc[r][k] = _mm512_fmadd_ps(d[r], xv, acc[r][k]);
    }
}

/* Item (co0, ci) over vectors v0..v1-1: the 9 * NCO partial sums added to
 * (first: stored in) dw. */
__attribute__((target("avx512f"), always_inline)) static inline void
wg_item(const wg_ctx *c, int co0, int ci, int64_t v0, int64_t v1, int first, const int NCO,
        const int S2) {
    const pasm_conv2d_shape *s = c->s;
    const size_t hw = c->hw, xs = c->xs, ys = c->ys;
    const ptrdiff_t W = c->W;
    __m512 acc[WG_CO][WG_TAPS];
#pragma GCC unroll 4
    for (int r = 0; r < NCO; r++)
#pragma GCC unroll 9
        for (int k = 0; k < WG_TAPS; k++)
            acc[r][k] = _mm512_setzero_ps();
    int64_t e = v0 % c->period, img0 = v0 / c->period * c->period_images;
    const float *xc = c->x + (size_t)ci * c->x_ci, *yc = c->dy + (size_t)co0 * hw;
    for (int64_t v = v0; v < v1; v++) {
        const wg_vec *t = v == c->tail_v ? &c->tail : &c->table[e];
        const size_t img = (size_t)(img0 + t->img);
        const float *xb = xc + img * xs + t->f0, *yb = yc + img * ys + t->f0;
        if (t->part[1])
            wg_vector(t, xb, yb, xs - hw, ys - hw, hw, W, acc, NCO, 1, S2);
        else
            wg_vector(t, xb, yb, 0, 0, hw, W, acc, NCO, 0, S2);
        if (++e == c->period) e = 0, img0 += c->period_images;
    }
    const size_t w_co = (size_t)s->c_in * WG_TAPS;
#pragma GCC unroll 4
    for (int r = 0; r < NCO; r++) {
        float *dst = c->dw + (size_t)(co0 + r) * w_co + (size_t)ci * WG_TAPS;
#pragma GCC unroll 9
        for (int k = 0; k < WG_TAPS; k++) {
            const float sum = _mm512_reduce_add_ps(acc[r][k]);
            dst[k] = first ? sum : dst[k] + sum;
        }
    }
}

/* Output-channel blocks: of 3, and when Cout % 3 == 1 the last four as two
 * blocks of 2 (18 FMAs per 11 loads, where a block of 1 has 9 per 10). */
static int wg_blocks(int cout) {
    return cout % 3 == 1 && cout > 1 ? cout / 3 + 1 : (cout + 2) / 3;
}

static void wg_block(int cout, int b, int *co0, int *nco) {
    const int pairs = cout % 3 == 1 && cout > 1; /* the last two blocks hold 2 each */
    const int threes = pairs ? cout / 3 - 1 : cout / 3;
    if (b < threes) {
        *co0 = 3 * b, *nco = 3;
    } else if (pairs) {
        *co0 = 3 * threes + 2 * (b - threes), *nco = 2;
    } else {
        *co0 = 3 * threes, *nco = cout - 3 * threes;
    }
}

/* Items begin..end-1 (item = block * Cin + ci) over one chunk. */
__attribute__((target("avx512f"), always_inline)) static inline void
wg_chunk_items(const wg_ctx *c, int64_t begin, int64_t end, int64_t v0, int64_t v1, const int S2) {
    const int cin = c->s->c_in, first = v0 == 0 && !c->accumulate;
    for (int64_t it = begin; it < end; it++) {
        const int ci = (int)(it % cin);
        int co0, nco;
        wg_block(c->s->c_out, (int)(it / cin), &co0, &nco);
        if (nco == 3)
            wg_item(c, co0, ci, v0, v1, first, 3, S2);
        else if (nco == 2)
            wg_item(c, co0, ci, v0, v1, first, 2, S2);
        else
            wg_item(c, co0, ci, v0, v1, first, 1, S2);
    }
}

__attribute__((target("avx512f"))) static void wg_chunk(const wg_ctx *c, int64_t begin, int64_t end,
                                                        int64_t v0, int64_t v1) {
    wg_chunk_items(c, begin, end, v0, v1, 0);
}

__attribute__((target("avx512f"))) static void wg_chunk_s2(const wg_ctx *c, int64_t begin,
                                                           int64_t end, int64_t v0, int64_t v1) {
    wg_chunk_items(c, begin, end, v0, v1, 1);
}

/* Both strides: s the convolution's shape, x its input (stride 1) or the
 * phase planes of its input (stride 2). */
static void wgrad(const pasm_conv2d_shape *s, const float *x, const float *dy, float *dw,
                  int accumulate, void *workspace) {
    const int s2 = s->stride == 2;
    const int64_t hw = plane_pixels(s), total = (int64_t)s->n * hw;
    wg_ctx c = {.s = s, .x = x, .dy = dy, .dw = dw, .table = workspace, .accumulate = accumulate,
                .hw = (size_t)hw, .x_ci = (size_t)(s2 ? 4 : 1) * (size_t)hw,
                .W = s2 ? s->w_out : s->w_in};
    c.xs = (size_t)s->c_in * c.x_ci;
    c.ys = (size_t)s->c_out * (size_t)hw;
    c.period = period_vectors(s);
    c.period_images = c.period * 16 / hw;
    c.vectors = (total + 15) / 16;
    wg_vec *table = workspace;
    for (int64_t e = 0; e < c.period; e++) wg_vec_init(s, c.period_images, e, &table[e]);
    c.tail_v = -1;
    if (total % 16) {
        const int64_t v = c.vectors - 1;
        const __mmask16 keep = (__mmask16)((1u << (total % 16)) - 1u);
        c.tail_v = v;
        c.tail = table[v % c.period];
        for (int q = 0; q < 2; q++) {
            c.tail.part[q] &= keep;
            for (int k = 0; k < WG_TAPS; k++)
                c.tail.tap[q][k] &= keep;
        }
    }
    const int64_t items = (int64_t)wg_blocks(s->c_out) * s->c_in;
    const int64_t flops = 2 * WG_TAPS * (int64_t)s->c_out * s->c_in * total;
#pragma omp parallel if (flops >= ((int64_t)1 << 20))
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        const int64_t begin = items * t / team, end = items * (t + 1) / team;
        for (int64_t v0 = 0; v0 < c.vectors; v0 += WG_CHUNK) {
            const int64_t v1 = v0 + WG_CHUNK < c.vectors ? v0 + WG_CHUNK : c.vectors;
            if (s2)
                wg_chunk_s2(&c, begin, end, v0, v1);
            else
                wg_chunk(&c, begin, end, v0, v1);
        }
    }
}

void pasm_conv2d_wgrad(const pasm_conv2d_shape *s, const float *x, const float *dy, float *dw,
                       void *workspace) {
    wgrad(s, x, dy, dw, 0, workspace);
}

void pasm_conv2d_wgrad_s2(const pasm_conv2d_shape *s, const float *xp, const float *dy, float *dw,
                          int accumulate, void *workspace) {
    wgrad(s, xp, dy, dw, accumulate, workspace);
}
