/* Tests of --precision bf16's convolutions and the bf16 matrix product under
 * them, on the AMX kernel and on the AVX512-BF16 dot-product kernel where
 * this CPU has them, and on the fallback (widened operands + sgemm) always:
 *   - the rounding to bf16 (nearest even, NaN kept);
 *   - pasm_bf16_gemm over edge sizes (M, N not multiples of 16, depths not of
 *     32, accumulate or overwrite) against a double product of the rounded
 *     operands, and never writing outside M x N;
 *   - convolution forward, weight and input gradients for stride 1 and 2,
 *     1x1 stride 2, one input channel, odd depths and grouped small maps,
 *     against double references computed from the bf16-rounded operands
 *     (the only rounding left is fp32 summation, so the tolerance is tight),
 *     and against the fp32 convolution within bf16's precision;
 *   - the fused epilogue and an exact-size workspace (ASan sees overruns);
 *   - the same result from 1 and 2 threads' worth of partial sums within
 *     fp32 rounding, and bit-identical reruns. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "opcheck.h"
#include "ops/gemm_bf16.h"
#include "pasm/ops.h"

static double r16(float v) { return pasm_bf16_to_float(pasm_bf16_from_float(v)); }

/* The kernel pasm_bf16_gemm runs now, for the printed lines. */
static const char *kernel_name(void) {
    switch (pasm_bf16_kernel()) {
    case PASM_BF16_AMX: return "amx";
    case PASM_BF16_DOT: return "dot";
    default: return "widened";
    }
}

static void test_rounding(void **state) {
    (void)state;
    assert_int_equal(pasm_bf16_from_float(1.0f), 0x3f80);
    assert_int_equal(pasm_bf16_from_float(-2.0f), 0xc000);
    /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1). */
    assert_true(r16(1.0f + 0x1p-8f) == 1.0);
    /* 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to even (1 + 2^-6). */
    assert_true(r16(1.0f + 3 * 0x1p-8f) == 1.0 + 0x1p-6);
    assert_true(r16(1.0f + 0x1p-8f + 0x1p-20f) == 1.0 + 0x1p-7);
    assert_true(isnan(r16(NAN)));
    assert_true(isinf(r16(INFINITY)));
    assert_true(r16(3.0e38f) == INFINITY || r16(3.0e38f) > 2.9e38);
    for (int i = 0; i < 1000; i++) {
        float v = (float)sin(i * 0.37) * powf(2.0f, (float)(i % 40 - 20));
        double err = fabs(r16(v) - v);
        assert_true(err <= fabs(v) * 0x1p-8);
    }
}

/* The vector conversions (AVX512-BF16 where the CPU has it) round exactly as
 * the scalar one does, specials and denormals included, at every length. */
static void test_convert_matches_scalar(void **state) {
    (void)state;
    enum { N = 77 };
    float a[N], b[N];
    const float special[] = {0.0f, -0.0f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, NAN, -NAN, INFINITY,
                             -INFINITY, 1e-40f, -1e-40f, 0x1p-126f, 3.3895e38f, -1.0f};
    for (int i = 0; i < N; i++) {
        a[i] = i < 13 ? special[i] : (float)sin(i * 1.7) * powf(2.0f, (float)(i % 50 - 25));
        b[i] = (float)cos(i * 0.3) * 1000.0f;
    }
    for (int n = 0; n <= N; n += (n < 20 ? 1 : 19)) {
        uint16_t h[N];
        uint32_t p[N];
        pasm_bf16_convert(h, a, n);
        pasm_bf16_convert_pairs(p, a, b, n);
        for (int i = 0; i < n; i++) {
            assert_int_equal(h[i], pasm_bf16_from_float(a[i]));
            assert_int_equal(p[i] & 0xffffu, pasm_bf16_from_float(a[i]));
            assert_int_equal(p[i] >> 16, pasm_bf16_from_float(b[i]));
        }
        pasm_bf16_convert_pairs(p, b, NULL, n);
        for (int i = 0; i < n; i++) assert_int_equal(p[i], pasm_bf16_from_float(b[i]));
    }
}

/* A (M x K) and B (K x N) random, packed, multiplied; C checked against the
 * double product of the rounded values, and the guard band around C intact. */
static void check_gemm(int M, int N, int K, int accumulate) {
    const int Mp = pasm_bf16_rows(M), Np = pasm_bf16_rows(N), Kp = pasm_bf16_depth(K);
    float *a = zeroed((int64_t)M * K, sizeof(float)), *b = zeroed((int64_t)K * N, sizeof(float));
    float *bt = zeroed((int64_t)K * N, sizeof(float));
    random_fill(7, 1, (int64_t)M * K, -1.0f, 1.0f, a, NULL);
    random_fill(7, 2, (int64_t)K * N, -1.0f, 1.0f, b, NULL);
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++) bt[(size_t)n * K + k] = b[(size_t)k * N + n];
    uint16_t *ap = zeroed((int64_t)Mp * Kp, sizeof(uint16_t));
    uint16_t *bp = zeroed((int64_t)Kp * Np, sizeof(uint16_t));
    uint16_t *bp2 = zeroed((int64_t)Kp * Np, sizeof(uint16_t));
    /* garbage in the padding: the pad functions must clear it */
    memset(ap, 0x7f, sizeof(uint16_t) * Mp * Kp);
    memset(bp, 0x7f, sizeof(uint16_t) * Kp * Np);
    memset(bp2, 0x7f, sizeof(uint16_t) * Kp * Np);
    pasm_bf16_pack_rows(ap, Kp, 0, a, M, K, (size_t)K);
    pasm_bf16_pad_rows(ap, M, K, Mp, Kp);
    pasm_bf16_pack_pairs(bp, Np, 0, b, K, N, (size_t)N);
    pasm_bf16_pad_pairs(bp, K, N, Kp, Np);
    pasm_bf16_pack_pairs_t(bp2, Np, 0, bt, K, N, (size_t)K);
    pasm_bf16_pad_pairs(bp2, K, N, Kp, Np);
    assert_memory_equal(bp, bp2, sizeof(uint16_t) * Kp * Np);
    const int ldc = N + 3, guard = 16;
    float *cbuf = zeroed((int64_t)(M + 2) * ldc + 2 * guard, sizeof(float));
    for (int64_t i = 0; i < (int64_t)(M + 2) * ldc + 2 * guard; i++) cbuf[i] = 42.0f;
    float *c = cbuf + guard;
    size_t sb = pasm_bf16_gemm_scratch(Mp, Np, Kp);
    float *scratch = sb ? zeroed((int64_t)sb, 1) : NULL;
    pasm_bf16_gemm(M, N, Kp, ap, bp, c, (size_t)ldc, accumulate, scratch);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double want = accumulate ? 42.0 : 0.0, mag = fabs(want);
            for (int k = 0; k < K; k++) {
                double t = r16(a[(size_t)m * K + k]) * r16(b[(size_t)k * N + n]);
                want += t;
                mag += fabs(t);
            }
            double d = fabs(c[(size_t)m * ldc + n] - want) / (1e-30 + mag);
            if (d > worst) worst = d;
            /* fp32 sums of K terms: a few ulps of the magnitude */
            assert_true(fabs(c[(size_t)m * ldc + n] - want) <= 1e-6 * mag * (1 + K / 32.0));
        }
    for (int m = 0; m < M; m++)
        for (int n = N; n < ldc; n++) assert_true(c[(size_t)m * ldc + n] == 42.0f);
    for (int i = 0; i < guard; i++) assert_true(cbuf[i] == 42.0f);
    for (int64_t i = (int64_t)M * ldc; i < (int64_t)(M + 2) * ldc + guard; i++)
        assert_true(c[i] == 42.0f);
    printf("gemm %s M%d N%d K%d%s: max rel %.2e\n", kernel_name(), M, N,
           K, accumulate ? " +=" : "", worst);
    free(a), free(b), free(bt), free(ap), free(bp), free(bp2), free(cbuf), free(scratch);
}

static void gemm_shapes(void) {
    check_gemm(16, 16, 32, 0);
    check_gemm(32, 32, 64, 0);
    check_gemm(37, 50, 71, 0);
    check_gemm(37, 50, 71, 1);
    check_gemm(1, 1, 1, 0);
    check_gemm(9, 130, 9, 1);
    check_gemm(64, 36, 577, 0);
    check_gemm(100, 17, 300, 1);
    check_gemm(23, 48, 40, 1); /* the dot kernel's row blocks of 12 and 11; 32 + 16 columns */
    check_gemm(30, 33, 64, 0); /* rows 12, 12 and 6 */
}

static void test_gemm_amx(void **state) {
    (void)state;
    int was = pasm_bf16_use_amx(1);
    if (!pasm_bf16_amx()) {
        printf("no AMX-BF16 here: the AMX kernel is not tested\n");
        pasm_bf16_use_amx(was);
        skip();
    }
    gemm_shapes();
    pasm_bf16_use_amx(was);
}

static void test_gemm_dot(void **state) {
    (void)state;
    int was = pasm_bf16_use_amx(0), was_dot = pasm_bf16_use_dot(1);
    if (pasm_bf16_kernel() != PASM_BF16_DOT) {
        printf("no AVX512-BF16 here: the dot-product kernel is not tested\n");
        pasm_bf16_use_dot(was_dot);
        pasm_bf16_use_amx(was);
        skip();
    }
    gemm_shapes();
    pasm_bf16_use_dot(was_dot);
    pasm_bf16_use_amx(was);
}

static void test_gemm_widened(void **state) {
    (void)state;
    int was = pasm_bf16_use_amx(0), was_dot = pasm_bf16_use_dot(0);
    assert_int_equal(pasm_bf16_kernel(), PASM_BF16_WIDENED);
    gemm_shapes();
    pasm_bf16_use_dot(was_dot);
    pasm_bf16_use_amx(was);
}

/* ---- convolutions ---- */

typedef struct {
    pasm_conv2d_shape s;
    int64_t nx, nw, ny;
    float *x, *w, *r, *y, *dx, *dw;
    void *ws;
} bf_case;

static void bf_init(bf_case *c, int n, int c_in, int hw, int c_out, int k, int stride, int pad,
                    uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->s = (pasm_conv2d_shape){.n = n, .c_in = c_in, .h_in = hw, .w_in = hw + 1, .c_out = c_out,
                               .kernel = k, .stride = stride, .pad = pad,
                               .precision = PASM_PRECISION_BF16};
    assert_int_equal(pasm_conv2d_shape_init(&c->s), PASM_OK);
    c->nx = (int64_t)n * c_in * c->s.h_in * c->s.w_in;
    c->nw = (int64_t)c_out * c_in * k * k;
    c->ny = (int64_t)n * c_out * c->s.h_out * c->s.w_out;
    c->x = zeroed(c->nx, sizeof(float));
    c->dx = zeroed(c->nx, sizeof(float));
    c->w = zeroed(c->nw, sizeof(float));
    c->dw = zeroed(c->nw, sizeof(float));
    c->y = zeroed(c->ny, sizeof(float));
    c->r = zeroed(c->ny, sizeof(float));
    random_fill(seed, 1, c->nx, -1.0f, 1.0f, c->x, NULL);
    random_fill(seed, 2, c->nw, -0.5f, 0.5f, c->w, NULL);
    random_fill(seed, 4, c->ny, -1.0f, 1.0f, c->r, NULL);
    size_t bytes = pasm_conv2d_workspace_size(&c->s);
    c->ws = zeroed((int64_t)(bytes ? bytes : 1), 1);
}

static void bf_free(bf_case *c) {
    free(c->x), free(c->w), free(c->r), free(c->y), free(c->dx), free(c->dw), free(c->ws);
}

#define XI(i, ci, ih, iw) ((((int64_t)(i) * s->c_in + (ci)) * s->h_in + (ih)) * s->w_in + (iw))
#define WI(co, ci, kh, kw) ((((int64_t)(co) * s->c_in + (ci)) * K + (kh)) * K + (kw))
#define YI(i, co, oh, ow) ((((int64_t)(i) * s->c_out + (co)) * s->h_out + (oh)) * s->w_out + (ow))

/* Double references of y, dx and dw from the bf16-rounded x, w and r, and
 * the magnitudes (sums of |terms|) that bound fp32 summation error. */
static void bf_reference(const bf_case *c, double *y, double *ym, double *dx, double *dxm,
                         double *dw, double *dwm) {
    const pasm_conv2d_shape *s = &c->s;
    const int K = s->kernel;
    memset(dx, 0, sizeof(double) * c->nx);
    memset(dxm, 0, sizeof(double) * c->nx);
    memset(dw, 0, sizeof(double) * c->nw);
    memset(dwm, 0, sizeof(double) * c->nw);
    for (int i = 0; i < s->n; i++)
        for (int co = 0; co < s->c_out; co++)
            for (int oh = 0; oh < s->h_out; oh++)
                for (int ow = 0; ow < s->w_out; ow++) {
                    double sum = 0, mag = 0, r = r16(c->r[YI(i, co, oh, ow)]);
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh * s->stride - s->pad + kh;
                                int iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in) continue;
                                double xv = r16(c->x[XI(i, ci, ih, iw)]);
                                double wv = r16(c->w[WI(co, ci, kh, kw)]);
                                sum += xv * wv;
                                mag += fabs(xv * wv);
                                dx[XI(i, ci, ih, iw)] += r * wv;
                                dxm[XI(i, ci, ih, iw)] += fabs(r * wv);
                                dw[WI(co, ci, kh, kw)] += r * xv;
                                dwm[WI(co, ci, kh, kw)] += fabs(r * xv);
                            }
                    y[YI(i, co, oh, ow)] = sum;
                    ym[YI(i, co, oh, ow)] = mag;
                }
}

/* |got - want| within fp32 summation error of the magnitude. */
static int close_to(const char *what, int64_t count, const float *got, const double *want,
                    const double *mag) {
    double worst = 0;
    int ok = 1;
    for (int64_t i = 0; i < count; i++) {
        double d = fabs(got[i] - want[i]) / (1e-12 + mag[i]);
        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
        if (!(fabs(got[i] - want[i]) <= 2e-6 * mag[i] + 1e-12)) ok = 0;
    }
    printf("  %-8s max |diff| / magnitude %.2e%s\n", what, worst, ok ? "" : "  <-- too large");
    return ok;
}

static void check_conv(int n, int c_in, int hw, int c_out, int k, int stride, int pad) {
    bf_case c;
    bf_init(&c, n, c_in, hw, c_out, k, stride, pad, 300 + 7 * hw + k + stride);
    printf("bf16 %s conv n%d c%d->%d %dx%d K%d S%d P%d\n", kernel_name(), n,
           c_in, c_out, hw, hw + 1, k, stride, pad);
    double *y = zeroed(c.ny, sizeof(double)), *ym = zeroed(c.ny, sizeof(double));
    double *dx = zeroed(c.nx, sizeof(double)), *dxm = zeroed(c.nx, sizeof(double));
    double *dw = zeroed(c.nw, sizeof(double)), *dwm = zeroed(c.nw, sizeof(double));
    bf_reference(&c, y, ym, dx, dxm, dw, dwm);
    for (int64_t i = 0; i < c.ny; i++) c.y[i] = NAN;
    pasm_conv2d_forward(&c.s, c.x, c.w, NULL, c.y, c.ws);
    assert_true(close_to("y", c.ny, c.y, y, ym));
    for (int64_t i = 0; i < c.nx; i++) c.dx[i] = NAN;
    for (int64_t i = 0; i < c.nw; i++) c.dw[i] = NAN;
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, c.dw, NULL, c.ws);
    assert_true(close_to("dx", c.nx, c.dx, dx, dxm));
    assert_true(close_to("dweight", c.nw, c.dw, dw, dwm));
    /* against fp32: within bf16's precision (two roundings of 2^-9 each) */
    pasm_conv2d_shape f = c.s;
    f.precision = PASM_PRECISION_FP32;
    size_t fb = pasm_conv2d_workspace_size(&f);
    void *fws = zeroed((int64_t)(fb ? fb : 1), 1);
    float *yf = zeroed(c.ny, sizeof(float));
    pasm_conv2d_forward(&f, c.x, c.w, NULL, yf, fws);
    for (int64_t i = 0; i < c.ny; i++) assert_true(fabs(yf[i] - c.y[i]) <= 0x1p-7 * ym[i] + 1e-6);
    /* reruns are bit-identical */
    float *y2 = zeroed(c.ny, sizeof(float)), *dw2 = zeroed(c.nw, sizeof(float));
    pasm_conv2d_forward(&c.s, c.x, c.w, NULL, y2, c.ws);
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, NULL, dw2, NULL, c.ws);
    assert_memory_equal(y2, c.y, sizeof(float) * c.ny);
    assert_memory_equal(dw2, c.dw, sizeof(float) * c.nw);
    free(y), free(ym), free(dx), free(dxm), free(dw), free(dwm), free(fws), free(yf), free(y2),
        free(dw2);
    bf_free(&c);
}

static void conv_shapes(void) {
    check_conv(2, 3, 8, 16, 3, 1, 1);   /* stride 1: dx as a flipped convolution */
    check_conv(3, 4, 9, 24, 3, 2, 1);   /* stride 2: dx through col2im; 24 = 16 + 8 */
    check_conv(3, 8, 8, 16, 1, 2, 0);   /* the 1x1 stride-2 shortcut */
    check_conv(2, 1, 12, 16, 3, 1, 1);  /* one input channel: depth 9 of 32 */
    check_conv(5, 16, 5, 40, 3, 1, 1);  /* 5x6 maps: grouped images, M and N edges */
    check_conv(9, 32, 4, 32, 3, 1, 1);  /* 4x5 maps, 9 images: groups across both threads */
    check_conv(1, 33, 7, 48, 3, 1, 1);  /* odd channel count, one image */
    check_conv(2, 3, 20, 16, 3, 1, 1);  /* rows of 21: two vectors per output row */
    check_conv(2, 2, 18, 16, 5, 1, 2);  /* 5x5, pad 2: lanes cut on both sides */
    check_conv(2, 2, 17, 16, 3, 1, 0);  /* no padding */
}

static void test_conv_amx(void **state) {
    (void)state;
    int was = pasm_bf16_use_amx(1);
    if (!pasm_bf16_amx()) {
        pasm_bf16_use_amx(was);
        skip();
    }
    conv_shapes();
    pasm_bf16_use_amx(was);
}

static void test_conv_dot(void **state) {
    (void)state;
    int was = pasm_bf16_use_amx(0), was_dot = pasm_bf16_use_dot(1);
    if (pasm_bf16_kernel() != PASM_BF16_DOT) {
        pasm_bf16_use_dot(was_dot);
        pasm_bf16_use_amx(was);
        skip();
    }
    conv_shapes();
    pasm_bf16_use_dot(was_dot);
    pasm_bf16_use_amx(was);
}

static void test_conv_widened(void **state) {
    (void)state;
    int was = pasm_bf16_use_amx(0), was_dot = pasm_bf16_use_dot(0);
    conv_shapes();
    pasm_bf16_use_dot(was_dot);
    pasm_bf16_use_amx(was);
}

/* The fused epilogue in bf16 equals the bf16 convolution followed by the
 * separate ops; the evaluation workspace suffices. */
static void test_conv_bf16_fused(void **state) {
    (void)state;
    bf_case c;
    bf_init(&c, 5, 8, 5, 16, 3, 1, 1, 99);
    float *scale = zeroed(16, sizeof(float)), *shift = zeroed(16, sizeof(float));
    float *res = zeroed(c.ny, sizeof(float)), *want = zeroed(c.ny, sizeof(float));
    random_fill(3, 1, 16, 0.5f, 1.5f, scale, NULL);
    random_fill(3, 2, 16, -0.5f, 0.5f, shift, NULL);
    random_fill(3, 3, c.ny, -1.0f, 1.0f, res, NULL);
    pasm_conv2d_forward(&c.s, c.x, c.w, NULL, want, c.ws);
    const int64_t hw = (int64_t)c.s.h_out * c.s.w_out;
    for (int64_t i = 0; i < c.ny; i++) {
        int co = (int)(i / hw % 16);
        float v = want[i] * scale[co] + shift[co];
        v += res[i];
        want[i] = v > 0.0f ? v : 0.0f;
    }
    size_t eb = pasm_conv2d_workspace_size_eval(&c.s, 1);
    assert_true(eb <= pasm_conv2d_workspace_size(&c.s));
    void *ews = zeroed((int64_t)(eb ? eb : 1), 1);
    pasm_conv2d_epilogue ep = {.scale = scale, .shift = shift, .residual = res, .relu = 1};
    pasm_conv2d_forward_fused(&c.s, c.x, c.w, &ep, c.y, ews);
    assert_memory_equal(c.y, want, sizeof(float) * c.ny);
    /* dx with the evaluation workspace equals dx with the full one */
    float *dx2 = zeroed(c.nx, sizeof(float));
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, NULL, NULL, c.ws);
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, dx2, NULL, NULL, ews);
    assert_memory_equal(dx2, c.dx, sizeof(float) * c.nx);
    free(scale), free(shift), free(res), free(want), free(ews), free(dx2);
    bf_free(&c);
}

/* Fewer images than threads: the forward shares the batch's output rows
 * among the team (conv2d_bf16.c forward_rows). One image of two threads,
 * two of three, four of five must give the bits those images get inside a
 * batch as large as the team (whole images per thread), with and without
 * the fused epilogue, and so must the input gradient; shapes: stride 1,
 * stride 2, the 1x1 shortcut, pointwise, maps of one and two output rows,
 * fewer output channels than threads. The widened kernel runs OpenBLAS,
 * whose sums may be blocked by the width: within fp32 rounding. */
static void one_image_case(int c_in, int h, int w, int c_out, int k, int stride, int pad, int team,
                           int few) {
    const int saved = omp_get_max_threads();
    pasm_conv2d_shape big = {.n = team, .c_in = c_in, .h_in = h, .w_in = w, .c_out = c_out,
                             .kernel = k, .stride = stride, .pad = pad,
                             .precision = PASM_PRECISION_BF16};
    assert_int_equal(pasm_conv2d_shape_init(&big), PASM_OK);
    pasm_conv2d_shape small = big;
    small.n = few;
    const int64_t nx = (int64_t)team * c_in * h * w, nw = (int64_t)c_out * c_in * k * k;
    const int64_t per_y = (int64_t)c_out * big.h_out * big.w_out, ny = team * per_y;
    float *x = zeroed(nx, sizeof(float)), *wt = zeroed(nw, sizeof(float));
    float *res = zeroed(ny, sizeof(float)), *ya = zeroed(ny, sizeof(float));
    float *yb = zeroed(ny, sizeof(float)), *scale = zeroed(c_out, sizeof(float));
    float *shift = zeroed(c_out, sizeof(float));
    random_fill(41, 1, nx, -1.0f, 1.0f, x, NULL);
    random_fill(41, 2, nw, -0.5f, 0.5f, wt, NULL);
    random_fill(41, 3, ny, -1.0f, 1.0f, res, NULL);
    random_fill(41, 4, c_out, 0.5f, 1.5f, scale, NULL);
    random_fill(41, 5, c_out, -0.5f, 0.5f, shift, NULL);
    pasm_set_threads(team);
    /* each run with exactly the workspace its shape asks for (ASan sees an
     * overrun), filled with NaNs: padding the kernel reads must be zeroed */
    const size_t bytes = pasm_conv2d_workspace_size(&big);
    const size_t small_bytes = pasm_conv2d_workspace_size(&small);
    void *ws = zeroed((int64_t)(bytes ? bytes : 1), 1);
    void *small_ws = zeroed((int64_t)(small_bytes ? small_bytes : 1), 1);
    memset(ws, 0xff, bytes);
    const int exact = pasm_bf16_kernel() != PASM_BF16_WIDENED;
    for (int fused = 0; fused < 2; fused++) {
        pasm_conv2d_epilogue ep = {.scale = scale, .shift = shift, .residual = res, .relu = 1};
        pasm_conv2d_forward_fused(&big, x, wt, fused ? &ep : NULL, ya, ws);
        for (int64_t i = 0; i < ny; i++) yb[i] = NAN;
        memset(small_ws, 0xff, small_bytes);
        pasm_conv2d_forward_fused(&small, x, wt, fused ? &ep : NULL, yb, small_ws);
        double worst = 0;
        for (int64_t i = 0; i < few * per_y; i++) {
            const double d = fabs((double)ya[i] - yb[i]);
            if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
            if (exact ? !(ya[i] == yb[i] || (isnan(ya[i]) && isnan(yb[i])))
                      : !(d <= 1e-5 * (1 + fabs(ya[i]))))
                fail_msg("%d image(s) of %dx%d K%d S%d on %d threads%s: y[%lld] %.9g, in a batch "
                         "of %d %.9g",
                         few, h, w, k, stride, team, fused ? " (fused)" : "", (long long)i,
                         yb[i], team, ya[i]);
        }
        printf("  %d of %d image(s) %dx%d->%dx%d K%d S%d%s: max |diff| %.3g against the batch\n",
               few, team, h, w, big.h_out, big.w_out, k, stride, fused ? " fused" : "", worst);
    }
    /* the input gradient (stride 1: a forward of dy by the flipped kernel) */
    const int64_t per_x = (int64_t)c_in * h * w;
    float *dxa = zeroed(nx, sizeof(float)), *dxb = zeroed(nx, sizeof(float));
    pasm_conv2d_backward(&big, x, wt, res, dxa, NULL, NULL, ws);
    memset(small_ws, 0xff, small_bytes);
    pasm_conv2d_backward(&small, x, wt, res, dxb, NULL, NULL, small_ws);
    for (int64_t i = 0; i < few * per_x; i++) {
        const double d = fabs((double)dxa[i] - dxb[i]);
        if (exact ? !(dxa[i] == dxb[i]) : !(d <= 1e-5 * (1 + fabs(dxa[i]))))
            fail_msg("%d image(s) of %dx%d K%d S%d on %d threads: dx[%lld] %.9g, in a batch %.9g",
                     few, h, w, k, stride, team, (long long)i, dxb[i], dxa[i]);
    }
    pasm_set_threads(saved);
    free(x), free(wt), free(res), free(ya), free(yb), free(scale), free(shift), free(ws);
    free(small_ws), free(dxa), free(dxb);
}

static void test_conv_bf16_few_images(void **state) {
    (void)state;
    /* the kernel this CPU runs, then the widened one */
    for (int pass = 0; pass < 2; pass++) {
        const int was = pasm_bf16_use_amx(pass ? 0 : 1), was_dot = pasm_bf16_use_dot(pass ? 0 : 1);
        printf(" kernel %s\n", kernel_name());
        one_image_case(8, 12, 13, 24, 3, 1, 1, 2, 1); /* stride 1 */
        one_image_case(6, 12, 12, 16, 3, 2, 1, 2, 1); /* stride 2 */
        one_image_case(8, 9, 9, 16, 1, 2, 0, 2, 1);   /* the 1x1 shortcut */
        one_image_case(16, 6, 6, 32, 1, 1, 0, 2, 1);  /* pointwise */
        one_image_case(4, 1, 20, 16, 3, 1, 1, 2, 1);  /* one output row: the usual path */
        one_image_case(4, 2, 20, 16, 3, 1, 1, 3, 2);  /* two rows on three threads */
        one_image_case(5, 7, 8, 40, 3, 1, 1, 3, 2);   /* 7 rows on three threads, M edges */
        one_image_case(3, 5, 6, 2, 3, 1, 1, 3, 1);    /* Cout 2 on three threads */
        one_image_case(4, 3, 9, 16, 3, 1, 1, 5, 4);   /* 12 rows of 4 images on five */
        pasm_bf16_use_dot(was_dot);
        pasm_bf16_use_amx(was);
    }
}

static void test_precision_names(void **state) {
    (void)state;
    pasm_precision p;
    assert_int_equal(pasm_precision_parse("bf16", &p), PASM_OK);
    assert_int_equal(p, PASM_PRECISION_BF16);
    assert_int_equal(pasm_precision_parse("fp32", &p), PASM_OK);
    assert_int_equal(p, PASM_PRECISION_FP32);
    assert_int_equal(pasm_precision_parse("fp16", &p), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "fp16"));
    assert_string_equal(pasm_precision_name(PASM_PRECISION_BF16), "bf16");
    assert_int_equal(pasm_precision_bf16_native(), pasm_bf16_kernel());
    printf("bf16 convolutions here: %s\n", kernel_name());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding),        cmocka_unit_test(test_convert_matches_scalar),
        cmocka_unit_test(test_gemm_amx),
        cmocka_unit_test(test_gemm_dot),        cmocka_unit_test(test_gemm_widened),
        cmocka_unit_test(test_conv_amx),        cmocka_unit_test(test_conv_dot),
        cmocka_unit_test(test_conv_widened),    cmocka_unit_test(test_conv_bf16_fused),
        cmocka_unit_test(test_conv_bf16_few_images),
        cmocka_unit_test(test_precision_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
