/* Private to src/ops: the direct AVX-512 convolution kernel that conv2d.c
 * picks at run time for the shapes it handles (conv2d_direct.c). */
#ifndef PASM_OPS_CONV2D_INTERNAL_H
#define PASM_OPS_CONV2D_INTERNAL_H

#include <stdint.h>

#include "pasm/ops.h"

/* Non-zero when the CPU has AVX-512F and PASM_CONV_DIRECT is not set to 0:
 * the direct kernels may run. */
int pasm_conv2d_avx512(void);
/* Non-zero when the CPU has AVX-512F, the shape is one the direct kernel
 * handles (stride 1, K <= 7, Cout a multiple of 8, and rows wide enough to
 * fill most of a 16-lane vector or a "same" padding with planes of 16+
 * pixels, which it takes as flat planes) and PASM_CONV_DIRECT is not set to
 * 0. Independent of the batch size. */
int pasm_conv2d_direct_ok(const pasm_conv2d_shape *s);
/* y = epilogue(conv(x, weight)) over the whole batch (ep NULL: the plain
 * convolution), threads over (image, channel block, output rows) or, on flat
 * planes, over (channel block, 48 pixels of the batch); every output is
 * summed by one thread in a fixed order, so results do not depend on the
 * thread count. */
void pasm_conv2d_direct_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                                const pasm_conv2d_epilogue *ep, float *y);

/* One vector of a flat plane (a "same" convolution's channel planes over
 * the batch one after another, 16 pixels a vector): its lanes in image img
 * (pixels f0..) and in image img + 1 (pixels 0..), each part's element
 * offsets of lane 0 in x and y, and per tap column the part's lanes whose
 * input column is inside, per tap row the lanes whose input row is inside
 * (masks as __mmask16 bits; kernels up to 7). conv2d_direct.c. */
enum { PASM_CONV2D_FLAT_MAX_K = 7 };
typedef struct {
    size_t x[2], y[2];
    uint16_t part[2];
    uint16_t col[2][PASM_CONV2D_FLAT_MAX_K], row[PASM_CONV2D_FLAT_MAX_K];
} pasm_conv2d_flat_vec;
/* The vector whose lane 0 is pixel g0 of the batch's long plane (lanes past
 * the batch's end off). */
void pasm_conv2d_flat_vec_init(const pasm_conv2d_shape *s, int64_t g0, pasm_conv2d_flat_vec *fv);

/* A vector's masks depend only on where its first pixel falls in its
 * image, so they repeat every lcm(hw, 16) pixels, this many vectors. */
static inline int64_t pasm_conv2d_flat_period(int64_t hw) {
    int64_t a = hw, b = 16;
    while (b) {
        const int64_t t = a % b;
        a = b, b = t;
    }
    return hw / a;
}

/* The vectors of one period, built once per call where the batch holds
 * four periods or more (vec NULL: each tile builds its own), and how many
 * vectors the batch's end does not cut. */
enum { PASM_CONV2D_FLAT_PERIOD_MAX = 144 };
typedef struct {
    const pasm_conv2d_flat_vec *vec;
    int64_t period, period_images, whole;
} pasm_conv2d_flat_table;
/* tab for the batch of s, its vectors in vec (PASM_CONV2D_FLAT_PERIOD_MAX
 * entries) when worth it. */
void pasm_conv2d_flat_table_init(const pasm_conv2d_shape *s, pasm_conv2d_flat_vec *vec,
                                 pasm_conv2d_flat_table *tab);
/* The vector at batch pixel g0 (a multiple of 16): a copy from the table,
 * moved to its images, or built. */
static inline void pasm_conv2d_flat_vec_get(const pasm_conv2d_shape *s,
                                            const pasm_conv2d_flat_table *tab, int64_t g0,
                                            pasm_conv2d_flat_vec *fv) {
    const int64_t v = g0 / 16;
    if (!tab->vec || v >= tab->whole) {
        pasm_conv2d_flat_vec_init(s, g0, fv);
        return;
    }
    *fv = tab->vec[v % tab->period];
    const size_t hw = (size_t)s->h_in * s->w_in;
    const size_t img = (size_t)(v / tab->period * tab->period_images);
    const size_t dx = img * (size_t)s->c_in * hw, dy = img * (size_t)s->c_out * hw;
    fv->x[0] += dx, fv->x[1] += dx, fv->y[0] += dy, fv->y[1] += dy;
}

/* Flat tiles of 48 pixels: runs of tiles that work items walk through
 * together (flat_forward): as many as an image has when images hold whole
 * vectors, else one. */
static inline int64_t pasm_conv2d_flat_run(int64_t hw) {
    return hw % 16 == 0 ? (hw + 47) / 48 : 1;
}

/* The weight gradient of a "same" 3x3 stride-1 fp32 convolution (padding 1,
 * 16+ pixels an image, up to 64 channels each way) straight from x and dy
 * (conv2d_wgrad.c): whether it runs for this shape (AVX-512F, neither
 * PASM_CONV_DIRECT nor PASM_CONV_WGRAD set to 0), the workspace it
 * needs (bytes, from the start of the convolution's workspace; 0 when it
 * does not run), and dw = the gradient, summed in an order that does not
 * depend on the thread count. */
int pasm_conv2d_wgrad_ok(const pasm_conv2d_shape *s);
/* Whether PASM_CONV_WGRAD leaves the direct weight gradients on (read once). */
int pasm_conv2d_wgrad_allowed(void);
size_t pasm_conv2d_wgrad_workspace(const pasm_conv2d_shape *s);
void pasm_conv2d_wgrad(const pasm_conv2d_shape *s, const float *x, const float *dy, float *dw,
                       void *workspace);

/* 3x3 stride-2 fp32 convolutions with padding 1 and even input sizes, as
 * four stride-1 convolutions on the input's phase planes (conv2d_s2.c):
 * whether the forward, the input gradient and the weight gradient of this
 * shape run so (AVX-512F, phase planes of 16+ pixels, Cout resp. Cin a
 * multiple of 8 for the first two, up to 16 input and 64 output channels for
 * the weight gradient; neither PASM_CONV_DIRECT nor PASM_CONV_S2 set to 0,
 * nor PASM_CONV_WGRAD for the weight gradient), the workspace
 * they need (bytes; 0 when none runs), and the two directions. Results do
 * not depend on the thread count. */
/* Tap index kh (or kw) of such a convolution: output row oh reads input row
 * 2 oh + kh - 1, which is row oh + SHIFT(kh) of the phase planes of row
 * parity PHASE(kh) (columns likewise). Shared by the tiles (conv2d_s2.c) and
 * the weight gradient (conv2d_wgrad.c). */
#define PASM_CONV2D_S2_PHASE(k) (((k) + 1) & 1)
#define PASM_CONV2D_S2_SHIFT(k) ((k) == 0 ? -1 : 0)
int pasm_conv2d_s2_forward_ok(const pasm_conv2d_shape *s);
int pasm_conv2d_s2_dx_ok(const pasm_conv2d_shape *s);
int pasm_conv2d_s2_dw_ok(const pasm_conv2d_shape *s);
size_t pasm_conv2d_s2_workspace(const pasm_conv2d_shape *s, int forward, int dx, int dw);
void pasm_conv2d_s2_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                            const pasm_conv2d_epilogue *ep, float *y, void *workspace);
/* dx and dw (either may be NULL) of the directions that run so. */
void pasm_conv2d_s2_backward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                             const float *dy, float *dx, float *dw, void *workspace);
/* The weight gradient from the phase planes xp of s's batch (conv2d_wgrad.c;
 * accumulate: add to dw), and the bytes of its table of mask vectors (for
 * either stride: pasm_conv2d_wgrad_workspace is this where it runs). */
size_t pasm_conv2d_wgrad_table_bytes(const pasm_conv2d_shape *s);
void pasm_conv2d_wgrad_s2(const pasm_conv2d_shape *s, const float *xp, const float *dy, float *dw,
                          int accumulate, void *workspace);

/* Shared by the fp32 and bf16 paths (conv2d.c). im2col: x (C,H,W) -> col
 * (C*K*K, Ho*Wo); col2im: the sum back; threaded: channels in parallel (only
 * outside a parallel region). */
void pasm_conv2d_im2col(const pasm_conv2d_shape *s, const float *x, float *col, int threaded);
/* One row k of im2col's output (Ho*Wo floats); its output rows oh0..oh1-1
 * alone ((oh1 - oh0) * Wo floats). */
void pasm_conv2d_im2col_row(const pasm_conv2d_shape *s, const float *x, int k, float *row);
void pasm_conv2d_im2col_rows(const pasm_conv2d_shape *s, const float *x, int k, int oh0, int oh1,
                             float *row);
void pasm_conv2d_col2im(const pasm_conv2d_shape *s, const float *col, float *dx, int threaded);
/* Stride-1 input gradients run as a forward convolution of dy by the
 * flipped kernel: whether this shape's does, that convolution's shape, and
 * its kernel wt (Cin, Cout, K, K) from w (Cout, Cin, K, K). */
int pasm_conv2d_dx_as_conv(const pasm_conv2d_shape *s);
pasm_conv2d_shape pasm_conv2d_dx_shape(const pasm_conv2d_shape *s);
void pasm_conv2d_flip_weight(const pasm_conv2d_shape *s, const float *w, float *wt);
/* The epilogue on one image's output y_i (Cout, Ho*Wo); res_i its residual;
 * on its pixels p0..p1-1 alone. */
void pasm_conv2d_epilogue_image(const pasm_conv2d_shape *s, const pasm_conv2d_epilogue *ep,
                                const float *res_i, float *y_i);
void pasm_conv2d_epilogue_pixels(const pasm_conv2d_shape *s, const pasm_conv2d_epilogue *ep,
                                 const float *res_i, float *y_i, size_t p0, size_t p1);

/* The bf16 path (conv2d_bf16.c), taken when s->precision is
 * PASM_PRECISION_BF16: every product of the convolution in bf16 with fp32
 * sums, forward and backward (pasm_bf16_gemm). Workspace sizes in bytes:
 * training (forward + both gradients), or evaluation (forward, and the
 * input gradient when input_grad). */
size_t pasm_conv2d_bf16_workspace(const pasm_conv2d_shape *s, int weight_grad, int input_grad);
void pasm_conv2d_bf16_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                              const pasm_conv2d_epilogue *ep, float *y, void *workspace);
void pasm_conv2d_bf16_backward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                               const float *dy, float *dx, float *dweight, void *workspace);

#endif
