/* Convolutions in bf16 (--precision bf16): every convolution product as a
 * bf16 matrix product with fp32 sums (pasm_bf16_gemm: AMX tiles where the
 * CPU has them, else AVX512-BF16 dot products where it has those). The
 * layers around the convolutions and the weights themselves stay fp32;
 * operands are rounded to bf16 as they are packed.
 *
 *   forward  y_i  (Cout x HW)  = W (Cout x CKK) . col_i (CKK x HW)
 *   weights  dW^T (CKK x Cout) = sum_i col_i (CKK x HW) . dy_i^T (HW x Cout)
 *   input    stride 1: a forward of dy by the flipped kernel (as in fp32);
 *            otherwise dcol_i (CKK x HW) = W^T . dy_i, then col2im.
 *
 * Images run in parallel, a contiguous share per thread (with fewer images
 * than threads, the forward shares each image's output rows). Small feature maps
 * are grouped so a product is wide enough for the tiles: several images'
 * columns side by side along N in the forward, along the depth in the weight
 * gradient. Each thread sums its share of the weight gradient in its own
 * buffer; the buffers are added in thread order, so results do not change
 * from run to run for a given thread count. */
#include <omp.h>
#include <string.h>

#include "ops/conv2d_internal.h"
#include "ops/gemm_bf16.h"

pasm_status pasm_precision_parse(const char *text, pasm_precision *out) {
    if (text && strcmp(text, "fp32") == 0) *out = PASM_PRECISION_FP32;
    else if (text && strcmp(text, "bf16") == 0) *out = PASM_PRECISION_BF16;
    else
        return pasm_errorf(PASM_ERR_INVALID, "unknown precision '%s' (fp32 or bf16)",
                           text ? text : "(null)");
    return PASM_OK;
}

const char *pasm_precision_name(pasm_precision p) {
    return p == PASM_PRECISION_BF16 ? "bf16" : "fp32";
}

int pasm_precision_bf16_native(void) { return pasm_bf16_kernel(); }

static size_t align64(size_t bytes) { return (bytes + 63) / 64 * 64; }

static int is_pointwise(const pasm_conv2d_shape *s) {
    return s->kernel == 1 && s->stride == 1 && s->pad == 0;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* Images per forward product: maps under 128 pixels are grouped to about
 * 128 columns. */
static int forward_group(const pasm_conv2d_shape *s) {
    const int hw = s->h_out * s->w_out;
    return hw >= 128 ? 1 : min_int(s->n, (128 + hw - 1) / hw);
}

/* Images per weight-gradient product: a depth of about 512 pixels. */
static int weight_group(const pasm_conv2d_shape *s) {
    const int hw = s->h_out * s->w_out;
    return hw >= 512 ? 1 : min_int(s->n, (512 + hw - 1) / hw);
}

/* Two rows of the column matrix, lowered one at a time and converted to
 * bf16 straight away (the whole fp32 matrix is never written). */
static size_t rows_bytes(const pasm_conv2d_shape *s) {
    if (is_pointwise(s)) return 0;
    return 2 * align64((size_t)s->h_out * s->w_out * sizeof(float));
}

/* The whole column matrix (fp32), for col2im. */
static size_t col_bytes(const pasm_conv2d_shape *s) {
    if (is_pointwise(s)) return 0;
    return align64((size_t)s->c_in * s->kernel * s->kernel * s->h_out * s->w_out * sizeof(float));
}

/* The columns of image x_i's output rows oh0..oh1-1 (all of them: 0, Ho)
 * into B pairs at columns n0... */
static void lower_pairs(const pasm_conv2d_shape *s, const float *x_i, int oh0, int oh1,
                        uint16_t *bp, int Np, int n0, float *rows) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const int cols = (oh1 - oh0) * s->w_out;
    if (is_pointwise(s)) {
        pasm_bf16_pack_pairs(bp, Np, n0, x_i + (size_t)oh0 * s->w_out, ckk, cols, (size_t)hw);
        return;
    }
    float *r0 = rows, *r1 = rows + align64((size_t)hw * sizeof(float)) / sizeof(float);
    for (int k = 0; k < ckk; k += 2) {
        pasm_conv2d_im2col_rows(s, x_i, k, oh0, oh1, r0);
        if (k + 1 < ckk) pasm_conv2d_im2col_rows(s, x_i, k + 1, oh0, oh1, r1);
        pasm_bf16_convert_pairs((uint32_t *)(bp + (size_t)(k / 2) * Np * 2) + n0, r0,
                                k + 1 < ckk ? r1 : NULL, cols);
    }
}

/* Image x_i's column matrix into A rows at depth k0..k0+HW-1. */
static void lower_rows(const pasm_conv2d_shape *s, const float *x_i, uint16_t *ap, int Kp, int k0,
                       float *row) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    if (is_pointwise(s)) {
        pasm_bf16_pack_rows(ap, Kp, k0, x_i, ckk, hw, (size_t)hw);
        return;
    }
    for (int k = 0; k < ckk; k++) {
        pasm_conv2d_im2col_row(s, x_i, k, row);
        pasm_bf16_convert(ap + (size_t)k * Kp + k0, row, hw);
    }
}

/* ---- workspace layouts ---- */

typedef struct {
    size_t shared, per_thread;          /* bytes */
    size_t col, packed, out, scratch;   /* offsets inside one thread's area */
} layout;

static layout forward_layout(const pasm_conv2d_shape *s) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const int g = forward_group(s), Kp = pasm_bf16_depth(ckk), Np = pasm_bf16_rows(g * hw);
    layout l = {0};
    l.shared = align64((size_t)pasm_bf16_rows(s->c_out) * Kp * sizeof(uint16_t));
    l.col = 0;
    l.packed = rows_bytes(s);
    l.out = l.packed + align64((size_t)Kp * Np * sizeof(uint16_t));
    l.scratch = l.out + (g > 1 ? align64((size_t)s->c_out * g * hw * sizeof(float)) : 0);
    l.per_thread = l.scratch + align64(pasm_bf16_gemm_scratch(pasm_bf16_rows(s->c_out), Np, Kp));
    return l;
}

/* Weight gradient: col, A (col rows), B (dy pairs), dW^T, scratch. */
static layout weight_layout(const pasm_conv2d_shape *s) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const int Kp = pasm_bf16_depth(weight_group(s) * hw);
    const int Mp = pasm_bf16_rows(ckk), Np = pasm_bf16_rows(s->c_out);
    layout l = {0};
    l.col = 0;
    l.packed = rows_bytes(s);
    const size_t a_bytes = align64((size_t)Mp * Kp * sizeof(uint16_t));
    const size_t b_bytes = align64((size_t)Kp * Np * sizeof(uint16_t));
    l.out = l.packed + a_bytes + b_bytes;
    l.scratch = l.out + align64((size_t)ckk * s->c_out * sizeof(float));
    l.per_thread = l.scratch + align64(pasm_bf16_gemm_scratch(Mp, Np, Kp));
    return l;
}

/* Strided input gradient: shared W^T rows; per thread dcol, dy pairs, scratch. */
static layout input_layout(const pasm_conv2d_shape *s) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const int Mp = pasm_bf16_rows(ckk), Kp = pasm_bf16_depth(s->c_out), Np = pasm_bf16_rows(hw);
    layout l = {0};
    l.shared = align64((size_t)Mp * Kp * sizeof(uint16_t));
    l.col = 0;
    l.packed = col_bytes(s);
    l.out = l.packed + align64((size_t)Kp * Np * sizeof(uint16_t));
    l.scratch = l.out;
    l.per_thread = l.scratch + align64(pasm_bf16_gemm_scratch(Mp, Np, Kp));
    return l;
}

static size_t total(layout l, size_t threads) { return l.shared + threads * l.per_thread; }

static size_t flipped_bytes(const pasm_conv2d_shape *s) {
    return align64((size_t)s->c_out * s->c_in * s->kernel * s->kernel * sizeof(float));
}

size_t pasm_conv2d_bf16_workspace(const pasm_conv2d_shape *s, int weight_grad, int input_grad) {
    const size_t threads = (size_t)omp_get_max_threads();
    size_t bytes = total(forward_layout(s), threads);
    if (weight_grad) {
        size_t w = total(weight_layout(s), threads);
        if (w > bytes) bytes = w;
    }
    if (input_grad) {
        size_t d;
        if (pasm_conv2d_dx_as_conv(s)) {
            const pasm_conv2d_shape t = pasm_conv2d_dx_shape(s);
            d = flipped_bytes(s) + total(forward_layout(&t), threads);
        } else {
            d = total(input_layout(s), threads);
        }
        if (d > bytes) bytes = d;
    }
    return bytes;
}

/* The images [begin, end) of thread t of team. */
static void share(int n, int t, int team, int *begin, int *end) {
    *begin = (int)((int64_t)n * t / team);
    *end = (int)((int64_t)n * (t + 1) / team);
}

/* ---- forward ---- */

/* Thread t of team packs its share of W's rows (Cout x CKK) into wp, bf16
 * rows zero-padded to Kp, the last thread the padding rows up to Mp; the
 * team waits at a barrier before reading wp. At a batch of one, packing
 * the weights on one thread was as long as the products (w64: 11M weights
 * each forward). */
static void pack_weight_share(const float *weight, int cout, int ckk, int Mp, int Kp, uint16_t *wp,
                              int t, int team) {
    int m0, m1;
    share(cout, t, team, &m0, &m1);
    if (m1 > m0) {
        pasm_bf16_pack_rows(wp + (size_t)m0 * Kp, Kp, 0, weight + (size_t)m0 * ckk, m1 - m0, ckk,
                            (size_t)ckk);
        pasm_bf16_pad_rows(wp + (size_t)m0 * Kp, m1 - m0, ckk, m1 - m0, Kp);
    }
    if (t == team - 1 && Mp > cout) pasm_bf16_pad_rows(wp + (size_t)cout * Kp, 0, ckk, Mp - cout, Kp);
}

/* Fewer images than threads (a batch of one, say): the batch's output rows
 * shared among the team (a contiguous run of (image, row) each), every
 * thread lowering the columns of its rows into its own B pairs, a product
 * per image its run touches, for every output channel, so no thread waits.
 * Every output is the dot product of the whole-image product, over the same
 * depth in the same order: the same bits. */
static void forward_rows(const pasm_conv2d_shape *s, const float *x, const float *weight,
                         uint16_t *wp, int Mp, int Kp, const pasm_conv2d_epilogue *ep, float *y,
                         char *ws, const layout *l, int threads) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out, wo = s->w_out;
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in, y_stride = (size_t)s->c_out * hw;
    const float *res = ep ? ep->residual : NULL;
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        pack_weight_share(weight, s->c_out, ckk, Mp, Kp, wp, t, team);
#pragma omp barrier
        /* the batch's output rows (image-major) in one contiguous share
         * each, taken a product per image they touch */
        int g0, g1;
        share(s->n * s->h_out, t, team, &g0, &g1);
        char *mine = ws + l->shared + (size_t)t * l->per_thread;
        float *col = (float *)(mine + l->col), *scratch = (float *)(mine + l->scratch);
        uint16_t *bp = (uint16_t *)(mine + l->packed);
        while (g0 < g1) {
            const int i = g0 / s->h_out, r0 = g0 % s->h_out;
            const int r1 = g1 - i * s->h_out < s->h_out ? g1 - i * s->h_out : s->h_out;
            const int p0 = r0 * wo, cols = (r1 - r0) * wo, Np = pasm_bf16_rows(cols);
            float *y_i = y + (size_t)i * y_stride;
            lower_pairs(s, x + (size_t)i * x_stride, r0, r1, bp, Np, 0, col);
            pasm_bf16_pad_pairs(bp, ckk, cols, Kp, Np);
            pasm_bf16_gemm(s->c_out, cols, Kp, wp, bp, y_i + p0, (size_t)hw, 0, scratch);
            if (ep)
                pasm_conv2d_epilogue_pixels(s, ep, res ? res + (size_t)i * y_stride : NULL, y_i,
                                            (size_t)p0, (size_t)(p0 + cols));
            g0 += r1 - r0;
        }
    }
}

void pasm_conv2d_bf16_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                              const pasm_conv2d_epilogue *ep, float *y, void *workspace) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const int Kp = pasm_bf16_depth(ckk), Mp = pasm_bf16_rows(s->c_out);
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t y_stride = (size_t)s->c_out * hw;
    const layout l = forward_layout(s);
    const int g = forward_group(s), threads = omp_get_max_threads();
    const float *res = ep ? ep->residual : NULL;
    char *ws = workspace;
    uint16_t *wp = (uint16_t *)ws;
    if (s->n < threads && s->n * s->h_out >= threads) {
        forward_rows(s, x, weight, wp, Mp, Kp, ep, y, ws, &l, threads);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        pack_weight_share(weight, s->c_out, ckk, Mp, Kp, wp, t, team);
#pragma omp barrier
        int begin, end;
        share(s->n, t, team, &begin, &end);
        char *mine = ws + l.shared + (size_t)t * l.per_thread;
        float *col = (float *)(mine + l.col), *out = (float *)(mine + l.out);
        uint16_t *bp = (uint16_t *)(mine + l.packed);
        float *scratch = (float *)(mine + l.scratch);
        for (int i = begin; i < end; i += g) {
            const int gi = min_int(g, end - i), n_cols = gi * hw, Np = pasm_bf16_rows(n_cols);
            for (int j = 0; j < gi; j++)
                lower_pairs(s, x + (size_t)(i + j) * x_stride, 0, s->h_out, bp, Np, j * hw, col);
            pasm_bf16_pad_pairs(bp, ckk, n_cols, Kp, Np);
            if (gi == 1) {
                float *y_i = y + (size_t)i * y_stride;
                pasm_bf16_gemm(s->c_out, hw, Kp, wp, bp, y_i, (size_t)hw, 0, scratch);
                if (ep) pasm_conv2d_epilogue_image(s, ep, res ? res + (size_t)i * y_stride : NULL, y_i);
                continue;
            }
            pasm_bf16_gemm(s->c_out, n_cols, Kp, wp, bp, out, (size_t)n_cols, 0, scratch);
            for (int j = 0; j < gi; j++) {
                float *y_i = y + (size_t)(i + j) * y_stride;
                for (int co = 0; co < s->c_out; co++)
                    memcpy(y_i + (size_t)co * hw, out + (size_t)co * n_cols + (size_t)j * hw,
                           sizeof(float) * hw);
                if (ep)
                    pasm_conv2d_epilogue_image(s, ep, res ? res + (size_t)(i + j) * y_stride : NULL,
                                               y_i);
            }
        }
    }
}

/* ---- backward ---- */

static void weight_gradient(const pasm_conv2d_shape *s, const float *x, const float *dy,
                            float *dweight, char *ws) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const int Mp = pasm_bf16_rows(ckk), Np = pasm_bf16_rows(s->c_out);
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t y_stride = (size_t)s->c_out * hw;
    const size_t w_count = (size_t)s->c_out * ckk;
    const layout l = weight_layout(s);
    const int g = weight_group(s), threads = omp_get_max_threads();
    const size_t a_bytes = align64((size_t)Mp * pasm_bf16_depth(g * hw) * sizeof(uint16_t));
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        int begin, end;
        share(s->n, t, team, &begin, &end);
        char *mine = ws + (size_t)t * l.per_thread;
        float *col = (float *)(mine + l.col), *dwt = (float *)(mine + l.out);
        uint16_t *ap = (uint16_t *)(mine + l.packed);
        uint16_t *bp = (uint16_t *)(mine + l.packed + a_bytes);
        float *scratch = (float *)(mine + l.scratch);
        if (begin == end) memset(dwt, 0, sizeof(float) * w_count);
        for (int i = begin; i < end; i += g) {
            const int gi = min_int(g, end - i), depth = gi * hw, Kp = pasm_bf16_depth(depth);
            for (int j = 0; j < gi; j++) {
                lower_rows(s, x + (size_t)(i + j) * x_stride, ap, Kp, j * hw, col);
                pasm_bf16_pack_pairs_t(bp, Np, j * hw, dy + (size_t)(i + j) * y_stride, hw,
                                       s->c_out, (size_t)hw);
            }
            pasm_bf16_pad_rows(ap, ckk, depth, Mp, Kp);
            pasm_bf16_pad_pairs(bp, depth, s->c_out, Kp, Np);
            pasm_bf16_gemm(ckk, s->c_out, Kp, ap, bp, dwt, (size_t)s->c_out, i != begin, scratch);
        }
#pragma omp barrier
        /* dweight (Cout, CKK) = the threads' dW^T (CKK, Cout), in thread order */
#pragma omp for schedule(static)
        for (int co = 0; co < s->c_out; co++)
            for (int k = 0; k < ckk; k++) {
                float sum = 0.0f;
                for (int p = 0; p < team; p++)
                    sum += ((const float *)(ws + (size_t)p * l.per_thread + l.out))[(size_t)k * s->c_out + co];
                dweight[(size_t)co * ckk + k] = sum;
            }
    }
}

/* dx for a strided (or otherwise not flippable) convolution: dcol = W^T dy. */
static void input_gradient_cols(const pasm_conv2d_shape *s, const float *weight, const float *dy,
                                float *dx, char *ws) {
    const int ckk = s->c_in * s->kernel * s->kernel, hw = s->h_out * s->w_out;
    const int Mp = pasm_bf16_rows(ckk), Kp = pasm_bf16_depth(s->c_out), Np = pasm_bf16_rows(hw);
    const size_t x_stride = (size_t)s->c_in * s->h_in * s->w_in;
    const size_t y_stride = (size_t)s->c_out * hw;
    const layout l = input_layout(s);
    const int threads = omp_get_max_threads();
    uint16_t *wt = (uint16_t *)ws;
    pasm_bf16_pack_rows_t(wt, Kp, weight, ckk, s->c_out, (size_t)ckk);
    pasm_bf16_pad_rows(wt, ckk, s->c_out, Mp, Kp);
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        int begin, end;
        share(s->n, t, omp_get_num_threads(), &begin, &end);
        char *mine = ws + l.shared + (size_t)t * l.per_thread;
        uint16_t *bp = (uint16_t *)(mine + l.packed);
        float *scratch = (float *)(mine + l.scratch);
        for (int i = begin; i < end; i++) {
            float *dx_i = dx + (size_t)i * x_stride;
            float *dcol = is_pointwise(s) ? dx_i : (float *)(mine + l.col);
            pasm_bf16_pack_pairs(bp, Np, 0, dy + (size_t)i * y_stride, s->c_out, hw, (size_t)hw);
            pasm_bf16_pad_pairs(bp, s->c_out, hw, Kp, Np);
            pasm_bf16_gemm(ckk, hw, Kp, wt, bp, dcol, (size_t)hw, 0, scratch);
            if (!is_pointwise(s)) pasm_conv2d_col2im(s, dcol, dx_i, 0);
        }
    }
}

void pasm_conv2d_bf16_backward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                               const float *dy, float *dx, float *dweight, void *workspace) {
    char *ws = workspace;
    if (dweight) weight_gradient(s, x, dy, dweight, ws);
    if (!dx) return;
    if (pasm_conv2d_dx_as_conv(s)) {
        float *wt = (float *)ws;
        pasm_conv2d_flip_weight(s, weight, wt);
        const pasm_conv2d_shape t = pasm_conv2d_dx_shape(s);
        pasm_conv2d_bf16_forward(&t, dy, wt, NULL, dx, ws + flipped_bytes(s));
        return;
    }
    input_gradient_cols(s, weight, dy, dx, ws);
}
