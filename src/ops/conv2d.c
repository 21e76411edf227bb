/* 2-D convolution on the CPU: im2col + OpenBLAS sgemm, parallel over the
 * batch. Each OpenMP thread lowers its own images into its own slice of the
 * workspace (inside a parallel region OpenBLAS runs single-threaded, so the
 * two never oversubscribe the cores); a batch smaller than the team runs
 * image by image with OpenBLAS threading instead. For stride-1 convolutions
 * the input gradient is itself a convolution (of dy with the flipped,
 * transposed kernel), so it runs as im2col + one well-shaped sgemm instead of
 * a sgemm with a short summed dimension (Cout) followed by a scatter-add
 * (col2im). Backward accumulates the
 * weight gradient per thread and sums the partials in thread order, so the
 * result is bit-identical run to run for a given thread count; "same" 3x3
 * convolutions of up to 64 channels take it directly from x and dy instead
 * (conv2d_wgrad.c). 3x3 stride-2 convolutions with even input sizes run as
 * four stride-1 convolutions on the input's phase planes (conv2d_s2.c).
 *
 * The evaluation-mode forward fuses batch norm, the residual sum and ReLU
 * into the store of the output (pasm_conv2d_forward_fused).
 *
 * The workspace is planned for omp_get_max_threads() at planning time: the
 * thread count must not grow between pasm_conv2d_workspace_size and the
 * calls that use the workspace. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "ops/conv2d_internal.h"
#include "pasm/ops.h"

/* 64-byte aligned float counts, so every slice starts on a cache line. */
static size_t round_floats(size_t n) { return (n + 15) / 16 * 16; }

static int is_pointwise(const pasm_conv2d_shape *s) {
    return s->kernel == 1 && s->stride == 1 && s->pad == 0;
}

static size_t weight_floats(const pasm_conv2d_shape *s) {
    return round_floats((size_t)s->c_out * s->c_in * s->kernel * s->kernel);
}

/* Whether dx is computed as a forward convolution of dy: stride 1 and a
 * padding the flipped kernel can mirror (P <= K - 1), not a 1x1 without
 * padding (which needs no lowering at all). */
int pasm_conv2d_dx_as_conv(const pasm_conv2d_shape *s) {
    return s->stride == 1 && s->pad <= s->kernel - 1 && !is_pointwise(s);
}

/* The convolution that maps dy (Cout, Ho, Wo) to dx (Cin, H, W) when
 * dx_as_conv: the same kernel size, padding K - 1 - P. */
pasm_conv2d_shape pasm_conv2d_dx_shape(const pasm_conv2d_shape *s) {
    return (pasm_conv2d_shape){.n = s->n, .c_in = s->c_out, .h_in = s->h_out, .w_in = s->w_out,
                               .c_out = s->c_in, .kernel = s->kernel, .stride = 1,
                               .pad = s->kernel - 1 - s->pad, .h_out = s->h_in, .w_out = s->w_in,
                               .precision = s->precision};
}

static size_t col_floats(const pasm_conv2d_shape *s) {
    if (is_pointwise(s)) return 0; /* the image itself is the column matrix */
    size_t n = (size_t)s->c_in * s->kernel * s->kernel * s->h_out * s->w_out;
    if (pasm_conv2d_dx_as_conv(s)) {
        size_t t = (size_t)s->c_out * s->kernel * s->kernel * s->h_in * s->w_in;
        if (t > n) n = t;
    }
    return round_floats(n);
}

pasm_status pasm_conv2d_shape_init(pasm_conv2d_shape *s) {
    if (!s) return pasm_errorf(PASM_ERR_INVALID, "%s:%d: conv2d shape is NULL", __FILE__, __LINE__);
    if (s->n <= 0 || s->c_in <= 0 || s->h_in <= 0 || s->w_in <= 0 || s->c_out <= 0 ||
        s->kernel <= 0 || s->stride <= 0 || s->pad < 0)
        return pasm_errorf(PASM_ERR_SHAPE,
                           "%s:%d: conv2d: bad shape n=%d c_in=%d h=%d w=%d c_out=%d k=%d s=%d p=%d",
                           __FILE__, __LINE__, s->n, s->c_in, s->h_in, s->w_in, s->c_out,
                           s->kernel, s->stride, s->pad);
    int hp = s->h_in + 2 * s->pad - s->kernel, wp = s->w_in + 2 * s->pad - s->kernel;
    if (hp < 0 || wp < 0)
        return pasm_errorf(PASM_ERR_SHAPE,
                           "%s:%d: conv2d: kernel %d larger than padded input %dx%d (pad %d)",
                           __FILE__, __LINE__, s->kernel, s->h_in, s->w_in, s->pad);
    s->h_out = hp / s->stride + 1;
    s->w_out = wp / s->stride + 1;
    return PASM_OK;
}

/* The forward's column buffer: the lowered input, none for a pointwise
 * convolution (col_floats is larger when the dx convolution needs more). */
static size_t forward_col_floats(const pasm_conv2d_shape *s) {
    if (is_pointwise(s)) return 0;
    return round_floats((size_t)s->c_in * s->kernel * s->kernel * s->h_out * s->w_out);
}

/* The flipped kernel of the dx convolution, which comes first. */
static size_t flip_floats(const pasm_conv2d_shape *s) {
    return pasm_conv2d_dx_as_conv(s) ? weight_floats(s) : 0;
}

/* Workspace layout: the flipped kernel of the dx convolution (when dx is one);
 * per thread one column buffer; per thread but the first one partial weight
 * gradient (thread 0 accumulates straight into dweight). The forward uses
 * the front of it alone. Where the weight gradient runs directly
 * (conv2d_wgrad.c), it runs first, with its table at the front, and the
 * rest holds what the forward and the input gradient need: no partials, and
 * no column buffers when both of those run directly too. */
static size_t workspace_size(const pasm_conv2d_shape *s) {
    size_t threads = (size_t)omp_get_max_threads();
    if (pasm_conv2d_wgrad_ok(s)) {
        const pasm_conv2d_shape t = pasm_conv2d_dx_shape(s); /* K3 P1 S1: dx is a convolution */
        const size_t fwd = pasm_conv2d_direct_ok(s) ? 0 : threads * forward_col_floats(s);
        const size_t dx = flip_floats(s) + (pasm_conv2d_direct_ok(&t) ? 0 : threads * col_floats(s));
        const size_t bytes = sizeof(float) * (fwd > dx ? fwd : dx);
        const size_t table = pasm_conv2d_wgrad_workspace(s);
        return table > bytes ? table : bytes;
    }
    size_t floats = flip_floats(s) + threads * col_floats(s) + (threads - 1) * weight_floats(s);
    return floats * sizeof(float);
}

static size_t workspace_size_eval(const pasm_conv2d_shape *s, int input_grad) {
    size_t threads = (size_t)omp_get_max_threads();
    size_t floats = pasm_conv2d_direct_ok(s) ? 0 : threads * forward_col_floats(s);
    if (input_grad) {
        size_t dx = threads * col_floats(s);
        if (pasm_conv2d_dx_as_conv(s)) {
            const pasm_conv2d_shape t = pasm_conv2d_dx_shape(s);
            dx = flip_floats(s) + (pasm_conv2d_direct_ok(&t) ? 0 : dx);
        }
        if (dx > floats) floats = dx;
    }
    return floats * sizeof(float);
}

/* Stride-2 3x3 convolutions run on phase planes (conv2d_s2.c) where they
 * can: their workspace alone when every direction wanted does, else the
 * larger of the two. */
size_t pasm_conv2d_workspace_size(const pasm_conv2d_shape *s) {
    if (s->precision == PASM_PRECISION_BF16) return pasm_conv2d_bf16_workspace(s, 1, 1);
    const size_t s2 = pasm_conv2d_s2_workspace(s, 1, 1, 1);
    if (pasm_conv2d_s2_forward_ok(s) && pasm_conv2d_s2_dx_ok(s) && pasm_conv2d_s2_dw_ok(s))
        return s2;
    const size_t rest = workspace_size(s);
    return s2 > rest ? s2 : rest;
}

size_t pasm_conv2d_workspace_size_eval(const pasm_conv2d_shape *s, int input_grad) {
    if (s->precision == PASM_PRECISION_BF16) return pasm_conv2d_bf16_workspace(s, 0, input_grad);
    const size_t s2 = pasm_conv2d_s2_workspace(s, 1, input_grad, 0);
    if (pasm_conv2d_s2_forward_ok(s) && (!input_grad || pasm_conv2d_s2_dx_ok(s))) return s2;
    const size_t rest = workspace_size_eval(s, input_grad);
    return s2 > rest ? s2 : rest;
}

/* wt (Cin, Cout, K, K) = w (Cout, Cin, K, K) transposed in the channels and
 * rotated by 180 degrees: the kernel of the dx convolution. */
void pasm_conv2d_flip_weight(const pasm_conv2d_shape *s, const float *w, float *wt) {
    const int K = s->kernel, KK = K * K;
    for (int co = 0; co < s->c_out; co++)
        for (int ci = 0; ci < s->c_in; ci++) {
            const float *src = w + ((size_t)co * s->c_in + ci) * KK;
            float *dst = wt + ((size_t)ci * s->c_out + co) * KK;
            for (int j = 0; j < KK; j++) dst[j] = src[KK - 1 - j];
        }
}

/* Where backward's column buffers start: after the flipped kernel. */
static float *backward_columns(const pasm_conv2d_shape *s, float *ws) {
    return ws + flip_floats(s);
}

/* Output columns ow whose input column ow*S - P + kw lies inside [0, W). */
static void valid_range(int out, int in, int stride, int pad, int k, int *lo, int *hi) {
    int a = pad - k; /* ow*S >= P - k */
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = in - 1 + pad - k; /* ow*S <= W - 1 + P - k */
    *hi = b < 0 ? 0 : b / stride + 1;
    if (*hi > out) *hi = out;
    if (*lo > *hi) *lo = *hi;
}

/* Row k = (c*K + kh)*K + kw of the column matrix: row (Ho*Wo) = the input
 * channel c shifted by (kh, kw), zero outside the image. */
void pasm_conv2d_im2col_row(const pasm_conv2d_shape *s, const float *x, int k, float *row) {
    pasm_conv2d_im2col_rows(s, x, k, 0, s->h_out, row);
}

/* Output rows oh0..oh1-1 of that row ((oh1 - oh0) * Wo floats). */
void pasm_conv2d_im2col_rows(const pasm_conv2d_shape *s, const float *x, int k, int oh0, int oh1,
                             float *row) {
    const int H = s->h_in, W = s->w_in, K = s->kernel, S = s->stride, P = s->pad;
    const int Wo = s->w_out;
    const int c = k / (K * K), kh = k / K % K, kw = k % K;
    int lo, hi;
    valid_range(Wo, W, S, P, kw, &lo, &hi);
    for (int oh = oh0; oh < oh1; oh++) {
        float *dst = row + (size_t)(oh - oh0) * Wo;
        int ih = oh * S - P + kh;
        if (ih < 0 || ih >= H) {
            memset(dst, 0, sizeof(float) * Wo);
            continue;
        }
        /* Input column of output column ow: ow * S + shift. */
        const float *src = x + ((size_t)c * H + ih) * W;
        const int shift = kw - P;
        for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
        if (S == 1)
            memcpy(dst + lo, src + lo + shift, sizeof(float) * (hi - lo));
        else
            for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * S + shift];
        for (int ow = hi; ow < Wo; ow++) dst[ow] = 0.0f;
    }
}

/* x (C,H,W) -> col (C*K*K, Ho*Wo). Channels in parallel only when called
 * outside a parallel region (threaded != 0). */
void pasm_conv2d_im2col(const pasm_conv2d_shape *s, const float *x, float *col, int threaded) {
    const int KK = s->kernel * s->kernel;
    const size_t hw = (size_t)s->h_out * s->w_out;
#pragma omp parallel for schedule(static) if (threaded)
    for (int c = 0; c < s->c_in; c++)
        for (int j = 0; j < KK; j++) pasm_conv2d_im2col_row(s, x, c * KK + j, col + (c * KK + j) * hw);
}

/* col (C*K*K, Ho*Wo) -> dx (C,H,W): overwrite dx with the sum of every
 * column entry that read it, in a fixed order. */
void pasm_conv2d_col2im(const pasm_conv2d_shape *s, const float *col, float *dx, int threaded) {
    const int C = s->c_in, H = s->h_in, W = s->w_in, K = s->kernel, S = s->stride, P = s->pad;
    const int Ho = s->h_out, Wo = s->w_out;
#pragma omp parallel for schedule(static) if (threaded)
    for (int c = 0; c < C; c++) {
        float *dxc = dx + (size_t)c * H * W;
        memset(dxc, 0, sizeof(float) * H * W);
        for (int kh = 0; kh < K; kh++) {
            for (int kw = 0; kw < K; kw++) {
                const float *row = col + ((size_t)(c * K + kh) * K + kw) * Ho * Wo;
                int lo, hi;
                valid_range(Wo, W, S, P, kw, &lo, &hi);
                for (int oh = 0; oh < Ho; oh++) {
                    int ih = oh * S - P + kh;
                    if (ih < 0 || ih >= H) continue;
                    const float *src = row + (size_t)oh * Wo;
                    float *dst = dxc + (size_t)ih * W;
                    const int shift = kw - P;
                    for (int ow = lo; ow < hi; ow++) dst[ow * S + shift] += src[ow];
                }
            }
        }
    }
}

/* The epilogue on one image's output y_i (Cout, Ho*Wo) in the order of the
 * unfused layers (scale and shift, residual, ReLU), so it rounds as they
 * do. Each row is still in cache from the sgemm that wrote it. */
void pasm_conv2d_epilogue_image(const pasm_conv2d_shape *s, const pasm_conv2d_epilogue *ep,
                                const float *res_i, float *y_i) {
    pasm_conv2d_epilogue_pixels(s, ep, res_i, y_i, 0, (size_t)s->h_out * s->w_out);
}

/* The same on pixels p0..p1-1 of every channel. */
void pasm_conv2d_epilogue_pixels(const pasm_conv2d_shape *s, const pasm_conv2d_epilogue *ep,
                                 const float *res_i, float *y_i, size_t p0, size_t p1) {
    const size_t hw = (size_t)s->h_out * s->w_out, n = p1 - p0;
    for (int co = 0; co < s->c_out; co++) {
        float *row = y_i + (size_t)co * hw + p0;
        const float b = ep->shift ? ep->shift[co] : 0.0f;
        if (ep->scale) {
            const float a = ep->scale[co];
#pragma omp simd
            for (size_t j = 0; j < n; j++) row[j] = row[j] * a + b;
        } else if (ep->shift) {
#pragma omp simd
            for (size_t j = 0; j < n; j++) row[j] += b;
        }
        if (res_i) {
            const float *r = res_i + (size_t)co * hw + p0;
#pragma omp simd
            for (size_t j = 0; j < n; j++) row[j] += r[j];
        }
        if (ep->relu) {
#pragma omp simd
            for (size_t j = 0; j < n; j++) row[j] = row[j] > 0.0f ? row[j] : 0.0f;
        }
    }
}

/* One image: y_i (Cout, Ho*Wo) = W (Cout, CKK) . col (CKK, Ho*Wo), then the
 * epilogue (res_i: this image's residual or NULL). */
static void forward_image(const pasm_conv2d_shape *s, const float *x_i, const float *weight,
                          const pasm_conv2d_epilogue *ep, const float *res_i, float *y_i,
                          float *col, int threaded) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const float *b_mat = x_i;
    if (!is_pointwise(s)) {
        pasm_conv2d_im2col(s, x_i, col, threaded);
        b_mat = col;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->c_out, hw, ckk, 1.0f, weight, ckk,
                b_mat, hw, 0.0f, y_i, hw);
    if (ep) pasm_conv2d_epilogue_image(s, ep, res_i, y_i);
}

/* Whether to split the batch over threads (each running single-threaded
 * BLAS) or to run images one by one with threaded BLAS. */
static int split_batch(int n, int threads) { return threads > 1 && n >= threads; }

void pasm_conv2d_forward_fused(const pasm_conv2d_shape *s, const float *x, const float *weight,
                               const pasm_conv2d_epilogue *ep, float *y, void *workspace) {
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t y_stride = (size_t)s->c_out * s->h_out * s->w_out;
    const size_t col_size = forward_col_floats(s);
    const float *res = ep ? ep->residual : NULL;
    float *ws = workspace;
    const int threads = omp_get_max_threads();
    if (s->precision == PASM_PRECISION_BF16) {
        pasm_conv2d_bf16_forward(s, x, weight, ep, y, workspace);
        return;
    }
    if (pasm_conv2d_direct_ok(s)) {
        pasm_conv2d_direct_forward(s, x, weight, ep, y);
        return;
    }
    if (pasm_conv2d_s2_forward_ok(s)) {
        pasm_conv2d_s2_forward(s, x, weight, ep, y, workspace);
        return;
    }
    if (!split_batch(s->n, threads)) {
        for (int i = 0; i < s->n; i++)
            forward_image(s, x + i * x_stride, weight, ep, res ? res + i * y_stride : NULL,
                          y + i * y_stride, ws, 1);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int i = 0; i < s->n; i++) {
        float *col = ws + (size_t)omp_get_thread_num() * col_size;
        forward_image(s, x + i * x_stride, weight, ep, res ? res + i * y_stride : NULL,
                      y + i * y_stride, col, 0);
    }
}

void pasm_conv2d_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                         const float *bias, float *y, void *workspace) {
    const pasm_conv2d_epilogue ep = {.shift = bias};
    pasm_conv2d_forward_fused(s, x, weight, bias ? &ep : NULL, y, workspace);
}

/* One image of backward. dw (if not NULL) gets dy_i . col^T added (or
 * stored when first); dx_i (if not NULL) gets col2im(W^T . dy_i), or, with
 * wt (the flipped kernel, when dx_as_conv), the convolution of dy_i by wt. */
static void backward_image(const pasm_conv2d_shape *s, const float *x_i, const float *weight,
                           const float *wt, const float *dy_i, float *dx_i, float *dw, int first,
                           float *col, int threaded) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const int pointwise = is_pointwise(s);
    if (dw) {
        const float *cols = x_i;
        if (!pointwise) {
            pasm_conv2d_im2col(s, x_i, col, threaded);
            cols = col;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->c_out, ckk, hw, 1.0f, dy_i, hw,
                    cols, hw, first ? 0.0f : 1.0f, dw, ckk);
    }
    if (dx_i && wt) {
        const pasm_conv2d_shape t = pasm_conv2d_dx_shape(s);
        forward_image(&t, dy_i, wt, NULL, NULL, dx_i, col, threaded);
    } else if (dx_i) {
        /* The column buffer is free again: reuse it for d(col). */
        float *dcol = pointwise ? dx_i : col;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, hw, s->c_out, 1.0f, weight, ckk,
                    dy_i, hw, 0.0f, dcol, hw);
        if (!pointwise) pasm_conv2d_col2im(s, dcol, dx_i, threaded);
    }
}

/* dbias[co] = sum over images and pixels of dy, in double, fixed order. */
static void bias_grad(const pasm_conv2d_shape *s, const float *dy, float *dbias) {
    const size_t hw = (size_t)s->h_out * s->w_out;
#pragma omp parallel for schedule(static)
    for (int co = 0; co < s->c_out; co++) {
        double sum = 0.0;
        for (int i = 0; i < s->n; i++) {
            const float *row = dy + ((size_t)i * s->c_out + co) * hw;
            double row_sum = 0.0;
#pragma omp simd reduction(+ : row_sum)
            for (size_t j = 0; j < hw; j++) row_sum += row[j];
            sum += row_sum;
        }
        dbias[co] = (float)sum;
    }
}

/* Threads split the batch into contiguous chunks; thread t's weight
 * gradient lands in dweight (t = 0) or in its partial, then the partials
 * are added to dweight in thread order. */
static void backward_split(const pasm_conv2d_shape *s, const float *x, const float *weight,
                           const float *wt, const float *dy, float *dx, float *dweight, float *ws,
                           int threads) {
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t y_stride = (size_t)s->c_out * s->h_out * s->w_out;
    const size_t col_size = col_floats(s), w_size = weight_floats(s);
    const size_t w_count = (size_t)s->c_out * s->c_in * s->kernel * s->kernel;
    float *partials = dweight ? ws + (size_t)threads * col_size : NULL;
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        const int begin = (int)((int64_t)s->n * t / team), end = (int)((int64_t)s->n * (t + 1) / team);
        float *col = ws + (size_t)t * col_size;
        float *dw = NULL;
        if (dweight) dw = t == 0 ? dweight : partials + (size_t)(t - 1) * w_size;
        for (int i = begin; i < end; i++)
            backward_image(s, x + i * x_stride, weight, wt, dy + i * y_stride,
                           dx ? dx + i * x_stride : NULL, dw, i == begin, col, 0);
        if (dw && begin == end) memset(dw, 0, sizeof(float) * w_count);
#pragma omp barrier
        if (dweight && team > 1) {
#pragma omp for schedule(static)
            for (size_t j = 0; j < w_count; j++) {
                float sum = dweight[j];
                for (int p = 0; p < team - 1; p++) sum += partials[(size_t)p * w_size + j];
                dweight[j] = sum;
            }
        }
    }
}

void pasm_conv2d_backward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                          const float *dy, float *dx, float *dweight, float *dbias,
                          void *workspace) {
    if (dbias) bias_grad(s, dy, dbias);
    if (!dx && !dweight) return;
    if (s->precision == PASM_PRECISION_BF16) {
        pasm_conv2d_bf16_backward(s, x, weight, dy, dx, dweight, workspace);
        return;
    }
    float *s2_dx = dx && pasm_conv2d_s2_dx_ok(s) ? dx : NULL;
    float *s2_dw = dweight && pasm_conv2d_s2_dw_ok(s) ? dweight : NULL;
    if (s2_dx || s2_dw) {
        /* the directions phase planes do not take first, through the rest
         * of this function, then those that they do */
        float *rest_dx = s2_dx ? NULL : dx, *rest_dw = s2_dw ? NULL : dweight;
        if (rest_dx || rest_dw)
            pasm_conv2d_backward(s, x, weight, dy, rest_dx, rest_dw, NULL, workspace);
        pasm_conv2d_s2_backward(s, x, weight, dy, s2_dx, s2_dw, workspace);
        return;
    }
    if (dweight && pasm_conv2d_wgrad_ok(s)) {
        /* directly from x and dy, before the rest uses the workspace */
        pasm_conv2d_wgrad(s, x, dy, dweight, workspace);
        if (!dx) return;
        dweight = NULL;
    }
    float *ws = workspace;
    const int threads = omp_get_max_threads();
    float *wt = NULL;
    if (dx && pasm_conv2d_dx_as_conv(s)) {
        wt = ws;
        pasm_conv2d_flip_weight(s, weight, wt);
        const pasm_conv2d_shape t = pasm_conv2d_dx_shape(s);
        if (pasm_conv2d_direct_ok(&t)) {
            /* dweight through im2col + sgemm, then dx as one direct
             * convolution over the whole batch. */
            if (dweight) pasm_conv2d_backward(s, x, weight, dy, NULL, dweight, NULL, workspace);
            pasm_conv2d_direct_forward(&t, dy, wt, NULL, dx);
            return;
        }
    }
    if (split_batch(s->n, threads)) {
        backward_split(s, x, weight, wt, dy, dx, dweight, backward_columns(s, ws), threads);
        return;
    }
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t y_stride = (size_t)s->c_out * s->h_out * s->w_out;
    for (int i = 0; i < s->n; i++)
        backward_image(s, x + i * x_stride, weight, wt, dy + i * y_stride,
                       dx ? dx + i * x_stride : NULL, dweight, i == 0, backward_columns(s, ws),
                       1);
}
