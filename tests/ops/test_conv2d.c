/* Tests of the CPU convolution: forward against a naive double-precision
 * convolution, input/weight/bias gradients against central finite
 * differences of L = sum(r * conv(x)) on that reference, for several
 * (kernel, stride, pad) combinations with and without bias; the split-batch
 * and image-by-image paths; NULL gradients and overwrite semantics; shape
 * errors; bit-identical weight gradients run to run; the fused evaluation
 * epilogue (batch norm, residual, ReLU) against the separate ops; and the
 * smaller workspace of callers that never want the weight gradient. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "opcheck.h"
#include "ops/conv2d_internal.h"
#include "pasm/ops.h"

/* Double-precision reference: plain loops over the definition. */
static void ref_conv(const pasm_conv2d_shape *s, const double *x, const double *w,
                     const double *b, double *y) {
    const int K = s->kernel;
    for (int i = 0; i < s->n; i++)
        for (int co = 0; co < s->c_out; co++)
            for (int oh = 0; oh < s->h_out; oh++)
                for (int ow = 0; ow < s->w_out; ow++) {
                    double sum = b ? b[co] : 0.0;
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh * s->stride - s->pad + kh;
                                int iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in) continue;
                                sum += x[((i * s->c_in + ci) * s->h_in + ih) * s->w_in + iw] *
                                       w[((co * s->c_in + ci) * K + kh) * K + kw];
                            }
                    y[((i * s->c_out + co) * s->h_out + oh) * s->w_out + ow] = sum;
                }
}

/* One problem: float tensors for the op, the same values in double for the
 * reference, r (the loss weights) in both. */
typedef struct {
    pasm_conv2d_shape s;
    int64_t nx, nw, ny;
    int has_bias;
    float *x, *w, *b, *y, *r, *dx, *dw, *db;
    double *xd, *wd, *bd, *yd, *rd;
    void *ws;
} conv_case;

/* An h x w input (case_init: hw x (hw + 1)). */
static void case_init_hw(conv_case *c, int n, int c_in, int h, int w, int c_out, int k, int stride,
                         int pad, int has_bias, uint64_t seed) {
    memset(c, 0, sizeof(*c));
    c->s = (pasm_conv2d_shape){.n = n, .c_in = c_in, .h_in = h, .w_in = w, .c_out = c_out,
                               .kernel = k, .stride = stride, .pad = pad};
    assert_int_equal(pasm_conv2d_shape_init(&c->s), PASM_OK);
    c->has_bias = has_bias;
    c->nx = (int64_t)n * c_in * c->s.h_in * c->s.w_in;
    c->nw = (int64_t)c_out * c_in * k * k;
    c->ny = (int64_t)n * c_out * c->s.h_out * c->s.w_out;
    c->x = zeroed(c->nx, sizeof(float));
    c->dx = zeroed(c->nx, sizeof(float));
    c->xd = zeroed(c->nx, sizeof(double));
    c->w = zeroed(c->nw, sizeof(float));
    c->dw = zeroed(c->nw, sizeof(float));
    c->wd = zeroed(c->nw, sizeof(double));
    c->b = zeroed(c_out, sizeof(float));
    c->db = zeroed(c_out, sizeof(float));
    c->bd = zeroed(c_out, sizeof(double));
    c->y = zeroed(c->ny, sizeof(float));
    c->r = zeroed(c->ny, sizeof(float));
    c->yd = zeroed(c->ny, sizeof(double));
    c->rd = zeroed(c->ny, sizeof(double));
    random_fill(seed, 1, c->nx, -1.0f, 1.0f, c->x, c->xd);
    random_fill(seed, 2, c->nw, -0.5f, 0.5f, c->w, c->wd);
    random_fill(seed, 3, c_out, -0.5f, 0.5f, c->b, c->bd);
    random_fill(seed, 4, c->ny, -1.0f, 1.0f, c->r, c->rd);
    /* Exactly the planned size (not pasm_alloc's rounding), so ASan sees
     * any overrun; at least one byte so malloc never returns NULL. */
    size_t bytes = pasm_conv2d_workspace_size(&c->s);
    c->ws = zeroed((int64_t)(bytes ? bytes : 1), 1);
}

static void case_init(conv_case *c, int n, int c_in, int hw, int c_out, int k, int stride, int pad,
                      int has_bias, uint64_t seed) {
    case_init_hw(c, n, c_in, hw, hw + 1, c_out, k, stride, pad, has_bias, seed);
}

static void case_free(conv_case *c) {
    float *f[] = {c->x, c->w, c->b, c->y, c->r, c->dx, c->dw, c->db};
    double *d[] = {c->xd, c->wd, c->bd, c->yd, c->rd};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) free(f[i]);
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) free(d[i]);
    free(c->ws);
}

static double case_loss(void *ctx) {
    conv_case *c = ctx;
    ref_conv(&c->s, c->xd, c->wd, c->has_bias ? c->bd : NULL, c->yd);
    return weighted_sum(c->ny, c->rd, c->yd);
}

/* What check_grads checks beside the forward: all three gradients, or the
 * input gradient alone, or nothing (shapes that test the direct kernel,
 * which computes no weight gradient, and the input gradient only where Cin
 * is a multiple of 8: the finite differences of thousands of values take
 * seconds under the sanitizers). */
enum { FORWARD_ONLY, WITH_DX, ALL_GRADS };

/* The forward and the gradients `level` asks for, of one configuration. */
static void check_grads(int n, int c_in, int hw, int c_out, int k, int stride, int pad,
                        int has_bias, int level) {
    conv_case c;
    case_init(&c, n, c_in, hw, c_out, k, stride, pad, has_bias, 1000 + 97 * k + 13 * stride + pad);
    char name[96];
    snprintf(name, sizeof(name), "conv n%d c%d->%d %dx%d K%d S%d P%d%s", n, c_in, c_out, hw,
             hw + 1, k, stride, pad, has_bias ? " bias" : "");
    printf("%s\n", name);
    pasm_conv2d_forward(&c.s, c.x, c.w, has_bias ? c.b : NULL, c.y, c.ws);
    case_loss(&c);
    assert_true(compare_forward("y", c.ny, c.y, c.yd, FWD_ATOL, FWD_RTOL));
    /* Garbage in the outputs: backward must overwrite, not accumulate. */
    for (int64_t i = 0; i < c.nx; i++) c.dx[i] = NAN;
    for (int64_t i = 0; i < c.nw; i++) c.dw[i] = NAN;
    for (int i = 0; i < c_out; i++) c.db[i] = NAN;
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, c.dw, has_bias ? c.db : NULL, c.ws);
    if (level >= WITH_DX) assert_true(check_gradient("dx", c.xd, c.nx, c.dx, case_loss, &c));
    if (level == ALL_GRADS) {
        assert_true(check_gradient("dweight", c.wd, c.nw, c.dw, case_loss, &c));
        if (has_bias) assert_true(check_gradient("dbias", c.bd, c_out, c.db, case_loss, &c));
    }
    case_free(&c);
}

static void check_case(int n, int c_in, int hw, int c_out, int k, int stride, int pad,
                       int has_bias) {
    check_grads(n, c_in, hw, c_out, k, stride, pad, has_bias, ALL_GRADS);
}

static void test_conv_3x3_s1_p1(void **state) {
    (void)state;
    check_case(3, 2, 5, 3, 3, 1, 1, 1);
    check_case(2, 3, 4, 2, 3, 1, 1, 0);
}

static void check_wgrad_case(conv_case *c, const char *what);

static void test_conv_3x3_s2_p1(void **state) {
    (void)state;
    check_case(3, 2, 6, 3, 3, 2, 1, 0);
    check_case(2, 2, 7, 2, 3, 2, 1, 1);
    /* rows of 41 and 40 (21 and 20 output columns), 3x3 and the 1x1
     * shortcut: forward and dweight against plain loops */
    for (int k = 1; k <= 3; k += 2)
        for (int w = 40; w <= 41; w++) {
            conv_case c;
            case_init_hw(&c, 2, 3, 5, w, 4, k, 2, k / 2, 0, 60 + w + k);
            char what[64];
            snprintf(what, sizeof what, "n2 c3->4 5x%d K%d S2", w, k);
            pasm_conv2d_forward(&c.s, c.x, c.w, NULL, c.y, c.ws);
            case_loss(&c);
            assert_true(compare_forward(what, c.ny, c.y, c.yd, FWD_ATOL, FWD_RTOL));
            pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, c.dw, NULL, c.ws);
            check_wgrad_case(&c, what);
            case_free(&c);
        }
}

static void test_conv_1x1(void **state) {
    (void)state;
    check_case(3, 3, 5, 4, 1, 1, 0, 0); /* pointwise path: no im2col */
    check_case(2, 3, 5, 4, 1, 2, 0, 0); /* ResNet downsample shortcut */
    check_case(2, 2, 4, 2, 1, 1, 1, 1); /* 1x1 with padding takes im2col */
}

static void test_conv_other_kernels(void **state) {
    (void)state;
    check_case(2, 2, 6, 2, 2, 2, 0, 1);
    check_case(2, 1, 7, 2, 5, 3, 2, 0);
    check_case(1, 2, 5, 3, 3, 1, 1, 1); /* one image: threaded-BLAS path */
    check_case(2, 1, 3, 2, 3, 1, 0, 1); /* output 1x2 */
}

/* Shapes the direct AVX-512 kernel takes (stride 1, Cout a multiple of 8,
 * rows of 12+ columns or a "same" padding): the row kernel with one, two
 * and three 16-lane vectors per row (rows that are whole vectors, or no
 * "same" padding), padding 0 to K-1, and dx through the direct kernel where
 * Cin is a multiple of 8. On CPUs without AVX-512 they run the im2col path,
 * equally checked. */
static void test_conv_direct_shapes(void **state) {
    (void)state;
    check_case(2, 2, 12, 8, 3, 1, 1, 1);  /* flat forward, im2col dx (Cin 2) */
    check_case(1, 8, 13, 8, 3, 1, 0, 0);  /* rows: one vector; direct dx with padding 2 */
    check_case(1, 1, 11, 16, 5, 1, 2, 1); /* K5, one image, 16 output channels */
    check_grads(1, 1, 35, 8, 3, 1, 1, 0, FORWARD_ONLY); /* 36 columns (flat) */
    check_grads(1, 1, 31, 8, 3, 1, 1, 0, FORWARD_ONLY); /* rows of 32 columns: two vectors */
    check_grads(1, 1, 35, 8, 3, 1, 0, 0, FORWARD_ONLY); /* rows of 34: three, the last masked */
}

/* "Same" convolutions on flat planes, where vectors run across row ends
 * and from one image into the next: maps too small for one vector a row,
 * vectors split between two images, tiles that end inside a row, a partial
 * vector at the end of the batch, and the direct dx of each (Cin a multiple
 * of 8); maps under 16 pixels take im2col + sgemm. */
static void test_conv_direct_flat(void **state) {
    (void)state;
    check_case(2, 8, 6, 8, 3, 1, 1, 1);   /* 6x7: 42 pixels, a vector split at 42 */
    check_case(1, 8, 4, 8, 3, 1, 1, 0);   /* 4x5, one image: a vector and 4 pixels */
    check_grads(1, 8, 7, 8, 5, 1, 2, 1, WITH_DX);  /* K5 on 7x8: a tile of 48, then 8 pixels */
    check_grads(3, 16, 4, 8, 3, 1, 1, 0, WITH_DX); /* 4x5, three images: two vectors split */
    check_grads(5, 8, 4, 8, 3, 1, 1, 1, WITH_DX);  /* 100 pixels: tiles of 48, 48, then 4 */
    check_grads(2, 8, 4, 8, 7, 1, 3, 0, WITH_DX);  /* K7 on 4x5: taps past both images' edges */
    check_grads(2, 8, 6, 8, 5, 1, 2, 1, WITH_DX);  /* K5 on 6x7: a split vector */
    /* 41 images of 6x7: the vectors of one period of masks (21) built once
     * and reused, the batch's last vector (10 pixels) built alone */
    check_grads(41, 8, 6, 8, 3, 1, 1, 1, FORWARD_ONLY);
    check_case(2, 8, 3, 16, 3, 1, 1, 0);  /* 3x4: 12 pixels, im2col + sgemm */
    check_case(1, 8, 1, 8, 3, 1, 1, 1);   /* 1x2: im2col + sgemm */
}

/* A flat convolution large enough for a team of threads, against the
 * reference, and bit for bit the same on one thread. */
static void test_conv_direct_flat_threads(void **state) {
    (void)state;
    const int saved = omp_get_max_threads();
    for (int big = 0; big < 2; big++) {
        conv_case c;
        /* 6x7 maps: 6 tiles x 3 blocks; or 41 images (the period table) */
        case_init(&c, big ? 41 : 6, 16, 6, 24, 3, 1, 1, 1, 91);
        pasm_set_threads(2);
        pasm_conv2d_forward(&c.s, c.x, c.w, c.b, c.y, c.ws);
        case_loss(&c);
        assert_true(compare_forward("y (2 threads)", c.ny, c.y, c.yd, FWD_ATOL, FWD_RTOL));
        float *y1 = zeroed(c.ny, sizeof(float));
        pasm_set_threads(1);
        pasm_conv2d_forward(&c.s, c.x, c.w, c.b, y1, c.ws);
        assert_memory_equal(y1, c.y, c.ny * sizeof(float));
        pasm_set_threads(saved);
        free(y1);
        case_free(&c);
    }
}

/* The weight gradient of one case against plain double loops (dW = the
 * sum of r * shifted x over the batch), each weight within 1e-5 of the sum
 * of its terms' magnitudes: for shapes too large for finite differences. */
static void check_wgrad_case(conv_case *c, const char *what) {
    const pasm_conv2d_shape *s = &c->s;
    const int K = s->kernel;
    double worst = 0.0;
    for (int co = 0; co < s->c_out; co++)
        for (int ci = 0; ci < s->c_in; ci++)
            for (int kh = 0; kh < K; kh++)
                for (int kw = 0; kw < K; kw++) {
                    double sum = 0.0, mag = 0.0;
                    for (int i = 0; i < s->n; i++)
                        for (int oh = 0; oh < s->h_out; oh++)
                            for (int ow = 0; ow < s->w_out; ow++) {
                                const int ih = oh * s->stride - s->pad + kh;
                                const int iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in) continue;
                                const double t =
                                    c->rd[((int64_t)(i * s->c_out + co) * s->h_out + oh) * s->w_out + ow] *
                                    c->xd[((int64_t)(i * s->c_in + ci) * s->h_in + ih) * s->w_in + iw];
                                sum += t, mag += fabs(t);
                            }
                    const float got = c->dw[((co * s->c_in + ci) * K + kh) * K + kw];
                    const double err = fabs(got - sum) / (mag > 1e-30 ? mag : 1e-30);
                    if (!(err <= 1e-5))
                        fail_msg("%s: dweight[%d][%d][%d][%d] %.9g, reference %.9g (sum of |terms| %.3g)",
                                 what, co, ci, kh, kw, got, sum, mag);
                    if (err > worst) worst = err;
                }
    printf("  %s: dweight within %.2g of the sum of |terms|\n", what, worst);
}

/* The direct weight gradient of "same" 3x3 convolutions (conv2d_wgrad.c,
 * where the CPU has AVX-512; the im2col path elsewhere, equally checked):
 * output-channel counts that end in blocks of 3, 2 + 2, 3 + 2 + 2, 2 and 1;
 * one input channel (the stem); planes of exactly 16 pixels (4x4, 16x1) and
 * single rows (1x17: every upper and lower tap off); vectors split between
 * two images; a batch that ends inside a vector; two chunks of the batch,
 * one whose period of masks wraps at a chunk's start; maps under 16 pixels
 * (im2col); and, where the team runs (large shapes), the same bits on one
 * thread and two. */
static void test_conv_wgrad_direct(void **state) {
    (void)state;
    static const int shapes[][5] = {
        /* n, c_in, h, w, c_out */
        {3, 4, 6, 7, 1},   {2, 3, 6, 7, 2},   {2, 2, 6, 7, 3},     {3, 5, 4, 5, 4},
        {2, 4, 5, 6, 5},   {1, 1, 12, 13, 16}, {5, 3, 3, 4, 7},    {1, 2, 4, 5, 8},
        {4, 8, 36, 37, 8}, {3, 6, 7, 8, 64},  {2, 3, 4, 4, 5},     {3, 2, 16, 1, 4},
        {2, 2, 1, 17, 3},  {2, 3, 5, 6, 7},   {100, 8, 6, 7, 8},
    };
    const int saved = omp_get_max_threads();
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int *sh = shapes[k];
        conv_case c;
        case_init_hw(&c, sh[0], sh[1], sh[2], sh[3], sh[4], 3, 1, 1, 0, 700 + k);
        char what[96];
        snprintf(what, sizeof what, "n%d c%d->%d %dx%d%s", sh[0], sh[1], sh[4], sh[2], sh[3],
                 pasm_conv2d_wgrad_ok(&c.s) ? " (direct)" : "");
        for (int64_t i = 0; i < c.nw; i++) c.dw[i] = NAN;
        pasm_set_threads(2);
        pasm_conv2d_backward(&c.s, c.x, c.w, c.r, NULL, c.dw, NULL, c.ws);
        check_wgrad_case(&c, what);
        float *dw1 = zeroed(c.nw, sizeof(float));
        pasm_set_threads(1);
        pasm_conv2d_backward(&c.s, c.x, c.w, c.r, NULL, dw1, NULL, c.ws);
        if (pasm_conv2d_wgrad_ok(&c.s))
            assert_memory_equal(dw1, c.dw, c.nw * sizeof(float));
        /* with dx too: the same weight gradient */
        pasm_set_threads(saved);
        float *dw2 = zeroed(c.nw, sizeof(float));
        pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, dw2, NULL, c.ws);
        if (pasm_conv2d_wgrad_ok(&c.s))
            assert_memory_equal(dw2, dw1, c.nw * sizeof(float));
        free(dw1);
        free(dw2);
        case_free(&c);
    }
    pasm_set_threads(saved);
}

/* dx of one case by plain double loops: every output's r times the weight
 * added to the input it read. */
static void ref_dx(const conv_case *c, double *dx) {
    const pasm_conv2d_shape *s = &c->s;
    const int K = s->kernel;
    memset(dx, 0, sizeof(double) * (size_t)c->nx);
    for (int i = 0; i < s->n; i++)
        for (int co = 0; co < s->c_out; co++)
            for (int oh = 0; oh < s->h_out; oh++)
                for (int ow = 0; ow < s->w_out; ow++) {
                    const double r =
                        c->rd[((int64_t)(i * s->c_out + co) * s->h_out + oh) * s->w_out + ow];
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                const int ih = oh * s->stride - s->pad + kh;
                                const int iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in) continue;
                                dx[((int64_t)(i * s->c_in + ci) * s->h_in + ih) * s->w_in + iw] +=
                                    r * c->wd[((co * s->c_in + ci) * K + kh) * K + kw];
                            }
                }
}

/* 3x3 stride-2 convolutions on phase planes (conv2d_s2.c, where the CPU
 * has AVX-512; im2col + sgemm elsewhere, equally checked): forward, dx and
 * dweight against plain double loops. Phase planes of 4x5 (vectors split
 * between images), 4x4 (exactly one vector), 6x6, one row of 32 (every
 * upper tap off) and one column of 32; rows whose even/odd split and merge
 * end in a partial vector (34 and 50 columns: phase rows of 17 and 25);
 * channel counts the tiles do not take (3 -> 5: forward and dx through
 * im2col, dweight on phase planes in blocks of 3 + 2) and 32 -> 8 (dweight
 * through im2col + sgemm, the rest on phase planes); a batch of three
 * chunks (images of 2 MiB; chunks of 4 MiB), whose weight gradient adds
 * the chunks in order. Each on two threads and on one: the same bits. */
static void test_conv_s2_phases(void **state) {
    (void)state;
    static const int shapes[][5] = {
        /* n, c_in, h, w, c_out */
        {2, 8, 8, 10, 8},  {5, 8, 8, 8, 16}, {3, 16, 12, 12, 8}, {2, 8, 2, 64, 8},
        {1, 8, 64, 2, 16}, {2, 8, 6, 34, 8}, {1, 8, 4, 50, 8},   {2, 3, 10, 12, 5},
        {5, 8, 256, 256, 8}, {2, 32, 8, 8, 8},
    };
    const int saved = omp_get_max_threads();
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int *sh = shapes[k];
        conv_case c;
        case_init_hw(&c, sh[0], sh[1], sh[2], sh[3], sh[4], 3, 2, 1, 1, 900 + k);
        const int fwd = pasm_conv2d_s2_forward_ok(&c.s), dx = pasm_conv2d_s2_dx_ok(&c.s);
        const int dw = pasm_conv2d_s2_dw_ok(&c.s);
        const char *s2_env = getenv("PASM_CONV_S2"), *wg_env = getenv("PASM_CONV_WGRAD");
        if (pasm_conv2d_avx512() && !(s2_env && !strcmp(s2_env, "0")) &&
            !(wg_env && !strcmp(wg_env, "0"))) {
            /* the phase planes run wherever the channels allow */
            assert_int_equal(fwd, sh[4] % 8 == 0);
            assert_int_equal(dx, sh[1] % 8 == 0);
            assert_int_equal(dw, sh[1] <= 16 && sh[4] <= 64);
        }
        char what[96];
        snprintf(what, sizeof what, "n%d c%d->%d %dx%d S2 (phase planes:%s%s%s)", sh[0], sh[1],
                 sh[4], sh[2], sh[3], fwd ? " y" : "", dx ? " dx" : "", dw ? " dw" : "");
        printf("%s\n", what);
        pasm_set_threads(2);
        for (int64_t i = 0; i < c.ny; i++) c.y[i] = NAN;
        pasm_conv2d_forward(&c.s, c.x, c.w, c.b, c.y, c.ws);
        case_loss(&c);
        assert_true(compare_forward("y", c.ny, c.y, c.yd, FWD_ATOL, FWD_RTOL));
        for (int64_t i = 0; i < c.nx; i++) c.dx[i] = NAN;
        for (int64_t i = 0; i < c.nw; i++) c.dw[i] = NAN;
        pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, c.dw, NULL, c.ws);
        double *dxd = zeroed(c.nx, sizeof(double));
        ref_dx(&c, dxd);
        assert_true(compare_forward("dx", c.nx, c.dx, dxd, FWD_ATOL, FWD_RTOL));
        check_wgrad_case(&c, what);
        /* one thread: the same bits; dweight alone and dx alone: the same */
        float *y1 = zeroed(c.ny, sizeof(float)), *dx1 = zeroed(c.nx, sizeof(float));
        float *dw1 = zeroed(c.nw, sizeof(float));
        pasm_set_threads(1);
        pasm_conv2d_forward(&c.s, c.x, c.w, c.b, y1, c.ws);
        pasm_conv2d_backward(&c.s, c.x, c.w, c.r, NULL, dw1, NULL, c.ws);
        pasm_conv2d_backward(&c.s, c.x, c.w, c.r, dx1, NULL, NULL, c.ws);
        if (fwd) assert_memory_equal(y1, c.y, c.ny * sizeof(float));
        if (dx) assert_memory_equal(dx1, c.dx, c.nx * sizeof(float));
        if (dw) assert_memory_equal(dw1, c.dw, c.nw * sizeof(float));
        pasm_set_threads(saved);
        free(y1), free(dx1), free(dw1), free(dxd);
        case_free(&c);
    }
}

/* The split-batch path (n >= threads) and the image-by-image path
 * (threads = 1) agree to float rounding. */
static void test_conv_paths_agree(void **state) {
    (void)state;
    const int saved = omp_get_max_threads();
    conv_case c;
    pasm_set_threads(2);
    case_init(&c, 5, 4, 6, 6, 3, 1, 1, 1, 77);
    pasm_conv2d_forward(&c.s, c.x, c.w, c.b, c.y, c.ws);
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, c.dw, c.db, c.ws);
    float *y2 = zeroed(c.ny, sizeof(float)), *dx2 = zeroed(c.nx, sizeof(float));
    float *dw2 = zeroed(c.nw, sizeof(float));
    pasm_set_threads(1);
    pasm_conv2d_forward(&c.s, c.x, c.w, c.b, y2, c.ws); /* 1 thread needs less workspace */
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, dx2, dw2, NULL, c.ws);
    pasm_set_threads(saved);
    double my = 0, mx = 0, mw = 0;
    for (int64_t i = 0; i < c.ny; i++) my = fmax(my, fabs(c.y[i] - y2[i]));
    for (int64_t i = 0; i < c.nx; i++) mx = fmax(mx, fabs(c.dx[i] - dx2[i]));
    for (int64_t i = 0; i < c.nw; i++) mw = fmax(mw, fabs(c.dw[i] - dw2[i]));
    printf("  2 threads vs 1: max |diff| y %.3e dx %.3e dweight %.3e\n", my, mx, mw);
    assert_true(my <= 1e-5 && mx <= 1e-5 && mw <= 1e-4);
    free(y2);
    free(dx2);
    free(dw2);
    case_free(&c);
}

/* NULL gradient pointers: the others come out the same as with all. */
static void test_conv_null_grads(void **state) {
    (void)state;
    conv_case c;
    case_init(&c, 3, 2, 5, 3, 3, 2, 1, 1, 55);
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, c.dw, c.db, c.ws);
    float *dx2 = zeroed(c.nx, sizeof(float)), *dw2 = zeroed(c.nw, sizeof(float));
    float *db2 = zeroed(c.s.c_out, sizeof(float));
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, NULL, dw2, NULL, c.ws);
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, dx2, NULL, NULL, c.ws);
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, NULL, NULL, db2, c.ws);
    assert_memory_equal(dx2, c.dx, c.nx * sizeof(float));
    assert_memory_equal(dw2, c.dw, c.nw * sizeof(float));
    assert_memory_equal(db2, c.db, c.s.c_out * sizeof(float));
    free(dx2);
    free(dw2);
    free(db2);
    case_free(&c);
}

/* Same inputs, same thread count: bit-identical gradients. */
static void test_conv_deterministic(void **state) {
    (void)state;
    conv_case c;
    case_init(&c, 7, 8, 9, 16, 3, 1, 1, 1, 99);
    float *dw2 = zeroed(c.nw, sizeof(float)), *dx2 = zeroed(c.nx, sizeof(float));
    float *db2 = zeroed(c.s.c_out, sizeof(float));
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, c.dw, c.db, c.ws);
    for (int rep = 0; rep < 3; rep++) {
        pasm_conv2d_backward(&c.s, c.x, c.w, c.r, dx2, dw2, db2, c.ws);
        assert_memory_equal(dw2, c.dw, c.nw * sizeof(float));
        assert_memory_equal(dx2, c.dx, c.nx * sizeof(float));
        assert_memory_equal(db2, c.db, c.s.c_out * sizeof(float));
    }
    printf("  conv backward x4 (%d threads): dweight, dx, dbias bit-identical\n",
           omp_get_max_threads());
    free(dw2);
    free(dx2);
    free(db2);
    case_free(&c);
}

/* The fused evaluation epilogue against the layers it replaces: conv, then
 * batch norm with running statistics, the residual sum and ReLU, each as its
 * own op. Shapes for the direct kernel (stride 1, Cout % 8 == 0, 12+
 * columns or a "same" padding), for im2col + sgemm (stride 2, narrow rows
 * without the same padding) and for the pointwise
 * 1x1 shortcut; batches of one (threaded BLAS) and of several (split). A
 * shift alone must equal the bias of pasm_conv2d_forward bit for bit. */
static void check_fused_hw(int n, int c_in, int h, int w, int c_out, int k, int stride, int pad,
                           int residual, int relu) {
    conv_case c;
    case_init_hw(&c, n, c_in, h, w, c_out, k, stride, pad, 0, 4000 + 31 * h + 7 * k + stride);
    pasm_bn_shape bs = {.n = n, .c = c_out, .h = c.s.h_out, .w = c.s.w_out, .eps = 1e-5f,
                        .momentum = 0.1f};
    float *gamma = zeroed(c_out, sizeof(float)), *beta = zeroed(c_out, sizeof(float));
    float *mean = zeroed(c_out, sizeof(float)), *var = zeroed(c_out, sizeof(float));
    float *scale = zeroed(c_out, sizeof(float)), *shift = zeroed(c_out, sizeof(float));
    float *res = zeroed(c.ny, sizeof(float)), *want = zeroed(c.ny, sizeof(float));
    float *got = zeroed(c.ny, sizeof(float));
    random_fill(5, 1, c_out, 0.5f, 1.5f, gamma, NULL);
    random_fill(5, 2, c_out, -0.5f, 0.5f, beta, NULL);
    random_fill(5, 3, c_out, -0.3f, 0.3f, mean, NULL);
    random_fill(5, 4, c_out, 0.2f, 2.0f, var, NULL);
    random_fill(5, 5, c.ny, -1.0f, 1.0f, res, NULL);
    pasm_conv2d_forward(&c.s, c.x, c.w, NULL, c.y, c.ws);
    pasm_batchnorm_forward_eval(&bs, c.y, gamma, beta, mean, var, want);
    if (residual) pasm_add_inplace(c.ny, want, res);
    if (relu) pasm_relu_forward(c.ny, want, want);
    pasm_batchnorm_fold(&bs, gamma, beta, mean, var, scale, shift);
    pasm_conv2d_epilogue ep = {.scale = scale, .shift = shift,
                               .residual = residual ? res : NULL, .relu = relu};
    for (int64_t i = 0; i < c.ny; i++) got[i] = NAN;
    pasm_conv2d_forward_fused(&c.s, c.x, c.w, &ep, got, c.ws);
    double worst = 0;
    for (int64_t i = 0; i < c.ny; i++) {
        double d = fabs((double)got[i] - want[i]) / (1.0 + fabs(want[i]));
        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
    }
    printf("fused n%d c%d->%d %dx%d K%d S%d%s%s: max |diff|/(1+|ref|) %.2e%s\n", n, c_in, c_out,
           h, w, k, stride, residual ? " +res" : "", relu ? " relu" : "", worst,
           memcmp(got, want, c.ny * sizeof(float)) ? "" : " (bit-identical)");
    assert_true(worst <= 1e-6);
    /* A shift alone is a bias. */
    pasm_conv2d_epilogue bias_only = {.shift = c.b};
    pasm_conv2d_forward(&c.s, c.x, c.w, c.b, want, c.ws);
    pasm_conv2d_forward_fused(&c.s, c.x, c.w, &bias_only, got, c.ws);
    assert_memory_equal(got, want, c.ny * sizeof(float));
    float *f[] = {gamma, beta, mean, var, scale, shift, res, want, got};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) free(f[i]);
    case_free(&c);
}

static void check_fused(int n, int c_in, int hw, int c_out, int k, int stride, int pad,
                        int residual, int relu) {
    check_fused_hw(n, c_in, hw, hw + 1, c_out, k, stride, pad, residual, relu);
}

static void test_conv_fused_epilogue(void **state) {
    (void)state;
    check_fused(3, 4, 12, 8, 3, 1, 1, 1, 1);  /* direct: BN + residual + ReLU */
    check_fused(1, 4, 20, 16, 3, 1, 1, 0, 1); /* direct, one image: BN + ReLU */
    check_fused(2, 3, 35, 8, 3, 1, 1, 1, 0);  /* direct flat, 35x36 */
    check_fused(2, 3, 33, 8, 3, 1, 0, 1, 1);  /* direct rows, masked last vector */
    check_fused(3, 4, 9, 6, 3, 2, 1, 0, 1);   /* im2col + sgemm, stride 2 */
    check_fused(3, 4, 6, 8, 3, 1, 1, 1, 1);   /* direct on flat 6x7 planes, split vectors */
    check_fused(2, 4, 6, 8, 3, 1, 0, 1, 1);   /* sgemm: padding 0, rows too narrow for direct */
    check_fused(3, 4, 8, 8, 1, 2, 0, 0, 0);   /* 1x1 stride-2 shortcut + BN */
    check_fused_hw(3, 4, 8, 10, 8, 3, 2, 1, 1, 1);  /* phase planes 4x5: BN + residual + ReLU */
    check_fused_hw(2, 8, 12, 12, 16, 3, 2, 1, 0, 1); /* phase planes 6x6: BN + ReLU */
}

/* The evaluation workspace (no weight gradient) is no larger than the full
 * one and, allocated to the byte (ASan sees overruns), enough for the
 * forward and for backward's dx, which come out as with the full one. */
static void check_eval_workspace(int n, int c_in, int hw, int c_out, int k, int stride, int pad) {
    conv_case c;
    case_init(&c, n, c_in, hw, c_out, k, stride, pad, 0, 600 + hw + k);
    size_t full = pasm_conv2d_workspace_size(&c.s);
    size_t fwd = pasm_conv2d_workspace_size_eval(&c.s, 0);
    size_t dx = pasm_conv2d_workspace_size_eval(&c.s, 1);
    printf("workspace n%d c%d->%d %dx%d K%d S%d P%d: full %zu, forward %zu, forward + dx %zu\n", n,
           c_in, c_out, hw, hw + 1, k, stride, pad, full, fwd, dx);
    assert_true(fwd <= dx && dx <= full);
    float *y2 = zeroed(c.ny, sizeof(float)), *dx2 = zeroed(c.nx, sizeof(float));
    pasm_conv2d_forward(&c.s, c.x, c.w, NULL, c.y, c.ws);
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, c.dx, NULL, NULL, c.ws);
    void *small = malloc(fwd ? fwd : 1);
    pasm_conv2d_forward(&c.s, c.x, c.w, NULL, y2, small);
    assert_memory_equal(y2, c.y, c.ny * sizeof(float));
    free(small);
    small = malloc(dx ? dx : 1);
    pasm_conv2d_forward(&c.s, c.x, c.w, NULL, y2, small);
    pasm_conv2d_backward(&c.s, c.x, c.w, c.r, dx2, NULL, NULL, small);
    assert_memory_equal(y2, c.y, c.ny * sizeof(float));
    assert_memory_equal(dx2, c.dx, c.nx * sizeof(float));
    free(small);
    free(y2);
    free(dx2);
    case_free(&c);
}

static void test_conv_eval_workspace(void **state) {
    (void)state;
    check_eval_workspace(3, 8, 12, 8, 3, 1, 1);  /* direct forward and dx */
    check_eval_workspace(3, 2, 12, 8, 3, 1, 1);  /* direct forward, im2col dx (Cin 2) */
    check_eval_workspace(1, 8, 6, 8, 3, 1, 1);   /* direct flat forward and dx, one image */
    check_eval_workspace(1, 4, 6, 8, 3, 1, 0);   /* sgemm both (padding 0), one image */
    check_eval_workspace(3, 4, 9, 6, 3, 2, 1);   /* stride 2: col2im dx */
    check_eval_workspace(3, 4, 8, 8, 1, 2, 0);   /* 1x1 stride 2 */
    check_eval_workspace(2, 4, 7, 6, 1, 1, 0);   /* pointwise: no columns */
}

static void test_conv_shape_errors(void **state) {
    (void)state;
    pasm_conv2d_shape s = {.n = 1, .c_in = 1, .h_in = 2, .w_in = 2, .c_out = 1, .kernel = 3,
                           .stride = 1, .pad = 0};
    assert_int_equal(pasm_conv2d_shape_init(&s), PASM_ERR_SHAPE);
    assert_non_null(strstr(pasm_last_error(), "kernel 3"));
    s.pad = 1;
    assert_int_equal(pasm_conv2d_shape_init(&s), PASM_OK);
    assert_int_equal(s.h_out, 2);
    s.stride = 0;
    assert_int_equal(pasm_conv2d_shape_init(&s), PASM_ERR_SHAPE);
    s.stride = 2;
    s.c_in = 0;
    assert_int_equal(pasm_conv2d_shape_init(&s), PASM_ERR_SHAPE);
    assert_int_equal(pasm_conv2d_shape_init(NULL), PASM_ERR_INVALID);
    /* 48x48, K3 S2 P1 -> 24x24; 1x1 S2 -> 24x24 (ResNet's shapes). */
    pasm_conv2d_shape r = {.n = 2, .c_in = 3, .h_in = 48, .w_in = 48, .c_out = 4, .kernel = 3,
                           .stride = 2, .pad = 1};
    assert_int_equal(pasm_conv2d_shape_init(&r), PASM_OK);
    assert_int_equal(r.h_out, 24);
    assert_int_equal(r.w_out, 24);
    /* A network plans the workspace once for its largest batch and runs
     * smaller ones in it: it never shrinks as the batch grows (stride-2
     * convolutions split a chunk of images into phase planes, up to a bound;
     * a batch of 1 needs less), for training and evaluation alike. */
    for (int c = 0; c < 2; c++) {
        r.c_in = c ? 64 : 3, r.c_out = c ? 64 : 4; /* phase planes (c 1) or im2col */
        size_t last[3] = {0, 0, 0};
        for (r.n = 1; r.n <= 256; r.n *= 2) {
            const size_t now[3] = {pasm_conv2d_workspace_size(&r),
                                   pasm_conv2d_workspace_size_eval(&r, 0),
                                   pasm_conv2d_workspace_size_eval(&r, 1)};
            for (int k = 0; k < 3; k++) {
                assert_true(now[k] >= last[k]);
                last[k] = now[k];
            }
        }
        printf("  c%d->%d 48x48 K3 S2, batch 256: workspace %zu / %zu / %zu bytes\n", r.c_in,
               r.c_out, last[0], last[1], last[2]);
    }
}

int main(void) {
    pasm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_3x3_s1_p1),   cmocka_unit_test(test_conv_3x3_s2_p1),
        cmocka_unit_test(test_conv_1x1),         cmocka_unit_test(test_conv_other_kernels),
        cmocka_unit_test(test_conv_paths_agree), cmocka_unit_test(test_conv_null_grads),
        cmocka_unit_test(test_conv_deterministic), cmocka_unit_test(test_conv_shape_errors),
        cmocka_unit_test(test_conv_direct_shapes),
        cmocka_unit_test(test_conv_direct_flat), cmocka_unit_test(test_conv_direct_flat_threads),
        cmocka_unit_test(test_conv_wgrad_direct), cmocka_unit_test(test_conv_s2_phases),
        cmocka_unit_test(test_conv_fused_epilogue),
        cmocka_unit_test(test_conv_eval_workspace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
