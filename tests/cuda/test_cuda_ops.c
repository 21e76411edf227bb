/* The CUDA backend's ops against the CPU ops (the reference), twice: the
 * kernels' bodies emulated on the host (every CUDA build, GPU or not), and
 * the kernels and cuDNN's convolutions on the GPU (skipped without one).
 * Inputs are NCHW as the CPU ops take them, moved to NHWC with the
 * backend's own layout kernels (themselves checked first, exactly), so each
 * case checks layout, indexing and arithmetic together. Builds without the
 * CUDA backend skip everything. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_backend.h"

/* ---- where the ops run: emulated (host memory) or on the GPU ---- */

static int g_gpu;            /* 0: emulated, 1: GPU */
static pasm_cuda_ctx *g_ctx; /* GPU only */

static int set_mode(int gpu) {
    g_gpu = gpu;
    pasm_cuda_emulate(!gpu);
    if (!gpu) return 1;
    if (getenv("PASM_CUDA_EMULATE")) {
        printf("  PASM_CUDA_EMULATE is set: the GPU half is skipped\n");
        pasm_cuda_emulate(1);
        return 0;
    }
    if (!g_ctx && pasm_cuda_ctx_create(&g_ctx) != PASM_OK) {
        printf("  no GPU here (%s): the GPU half is skipped\n", pasm_last_error());
        pasm_cuda_emulate(1);
        return 0;
    }
    return 1;
}

/* A buffer the ops can use, holding a copy of host (or zeros). */
static void *buf_in(const void *host, size_t bytes) {
    void *p;
    if (!g_gpu) {
        p = calloc(1, bytes ? bytes : 1);
        if (host) memcpy(p, host, bytes);
        return p;
    }
    assert_int_equal(pasm_cuda_alloc(&p, bytes, "test"), PASM_OK);
    if (host) assert_int_equal(pasm_cuda_to_device(g_ctx, p, host, bytes), PASM_OK);
    return p;
}

static void buf_out(void *host, const void *p, size_t bytes) {
    if (!g_gpu) {
        memcpy(host, p, bytes);
        return;
    }
    if (pasm_cuda_to_host(g_ctx, host, p, bytes)) fail_msg("%s", pasm_last_error());
}

static void buf_free(void *p) {
    if (g_gpu) pasm_cuda_free(p);
    else free(p);
}

static pasm_cuda_ctx *ctx(void) { return g_gpu ? g_ctx : NULL; }
#define OK(call)                                                                                 \
    do {                                                                                         \
        if ((call) != PASM_OK) fail_msg("%s: %s", #call, pasm_last_error());                    \
    } while (0)

/* ---- data ---- */

static float *rand_floats(int64_t n, uint64_t seed, float scale, float offset) {
    float *v = malloc((size_t)n * sizeof(float));
    pasm_rng rng;
    pasm_rng_init(&rng, seed, 99, 0, 0);
    for (int64_t i = 0; i < n; i++) v[i] = offset + scale * pasm_rng_normal(&rng);
    return v;
}

static void expect_close(const char *what, const float *mine, const float *ref, int64_t n,
                         double limit) {
    double e = test_rel_diff(mine, ref, n);
    printf("  %-6s %-40s max|diff|/max|ref| %.3g (limit %.1g)\n", g_gpu ? "gpu" : "emu", what, e,
           limit);
    if (!(e <= limit)) fail_msg("%s: %s differs from the CPU by %.3g of its range (limit %.3g)",
                                g_gpu ? "GPU" : "emulated", what, e, limit);
}

/* NCHW fp32 on the host -> NHWC of t in an op buffer, and back. */
static void *to_nhwc(const float *x, int n, int c, int hw, pasm_cuda_dtype t) {
    float *xb = buf_in(x, (size_t)n * c * hw * 4);
    void *y = buf_in(NULL, (size_t)n * c * hw * pasm_cuda_dtype_size(t));
    OK(pasm_cuda_nchw_to_nhwc(ctx(), n, c, hw, xb, y, t));
    buf_free(xb);
    return y;
}

static void from_nhwc(float *host, const void *y, int n, int c, int hw, pasm_cuda_dtype t) {
    float *xb = buf_in(NULL, (size_t)n * c * hw * 4);
    OK(pasm_cuda_nhwc_to_nchw(ctx(), n, c, hw, y, t, xb));
    buf_out(host, xb, (size_t)n * c * hw * 4);
    buf_free(xb);
}

/* ---- cases, each run emulated and on the GPU ---- */

static void case_layouts(void) {
    const int n = 3, c = 5, hw = 7 * 7;
    const int64_t count = (int64_t)n * c * hw;
    float *x = rand_floats(count, 1, 1, 0), *back = malloc(count * 4), *nhwc = malloc(count * 4);
    void *y = to_nhwc(x, n, c, hw, PASM_CUDA_F32);
    buf_out(nhwc, y, count * 4);
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < hw; p++)
                assert_true(nhwc[((int64_t)i * hw + p) * c + ch] == x[((int64_t)i * c + ch) * hw + p]);
    from_nhwc(back, y, n, c, hw, PASM_CUDA_F32);
    assert_memory_equal(back, x, count * 4);
    buf_free(y);
    /* bf16: round to nearest even, 8 significant bits */
    y = to_nhwc(x, n, c, hw, PASM_CUDA_BF16);
    from_nhwc(back, y, n, c, hw, PASM_CUDA_BF16);
    for (int64_t i = 0; i < count; i++) {
        assert_true(fabsf(back[i] - x[i]) <= fabsf(x[i]) * (1.0f / 256));
        uint32_t bits;
        memcpy(&bits, &back[i], 4);
        assert_int_equal(bits & 0xffff, 0);
    }
    buf_free(y);
    /* weights: (K,C,RS) -> (K,RS,C) and back */
    const int k = 4, rs = 9;
    float *w = rand_floats((int64_t)k * c * rs, 2, 1, 0), *wb = malloc((size_t)k * c * rs * 4);
    float *wdev = buf_in(w, (size_t)k * c * rs * 4);
    void *packed = buf_in(NULL, (size_t)k * c * rs * 4);
    float *out = buf_in(NULL, (size_t)k * c * rs * 4);
    OK(pasm_cuda_pack_weight(ctx(), k, c, rs, wdev, packed, PASM_CUDA_F32));
    buf_out(wb, packed, (size_t)k * c * rs * 4);
    for (int o = 0; o < k; o++)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < rs; p++)
                assert_true(wb[((int64_t)o * rs + p) * c + ch] == w[((int64_t)o * c + ch) * rs + p]);
    OK(pasm_cuda_unpack_weight(ctx(), k, c, rs, packed, PASM_CUDA_F32, out));
    buf_out(wb, out, (size_t)k * c * rs * 4);
    assert_memory_equal(wb, w, (size_t)k * c * rs * 4);
    /* several at once (a network's step): each as packed alone, bit for bit,
     * in fp32 and bf16 */
    for (int t = 0; t < 2; t++) {
        const pasm_cuda_dtype dt = t ? PASM_CUDA_BF16 : PASM_CUDA_F32;
        const int shapes[3][3] = {{4, c, 9}, {7, 3, 1}, {2, 5, 9}}; /* k, c, rs */
        pasm_cuda_pack_job jobs[3];
        void *alone[3];
        float *src[3];
        for (int j = 0; j < 3; j++) {
            const size_t cnt = (size_t)shapes[j][0] * shapes[j][1] * shapes[j][2];
            float *h = rand_floats((int64_t)cnt, 30 + j, 1, 0);
            src[j] = buf_in(h, cnt * 4);
            free(h);
            jobs[j] = (pasm_cuda_pack_job){src[j], buf_in(NULL, cnt * 4), shapes[j][0],
                                           shapes[j][1], shapes[j][2]};
            alone[j] = buf_in(NULL, cnt * 4);
            OK(pasm_cuda_pack_weight(ctx(), shapes[j][0], shapes[j][1], shapes[j][2], src[j],
                                     alone[j], dt));
        }
        OK(pasm_cuda_pack_weights(ctx(), 3, jobs, dt));
        for (int j = 0; j < 3; j++) {
            const size_t bytes = (size_t)shapes[j][0] * shapes[j][1] * shapes[j][2] *
                                 pasm_cuda_dtype_size(dt);
            unsigned char *a = malloc(bytes), *b = malloc(bytes);
            buf_out(a, jobs[j].out, bytes);
            buf_out(b, alone[j], bytes);
            assert_memory_equal(a, b, bytes);
            free(a), free(b);
            buf_free(src[j]), buf_free(jobs[j].out), buf_free(alone[j]);
        }
    }
    printf("  %-6s %-40s the same bytes as one at a time\n", g_gpu ? "gpu" : "emu",
           "three weights packed in one launch");
    buf_free(wdev);
    buf_free(packed);
    buf_free(out);
    free(w);
    free(wb);
    free(x);
    free(back);
    free(nhwc);
}

/* Training BN: statistics, running estimates and the output (with a
 * residual and ReLU on top), then the backward, against the CPU. */
static void case_batchnorm(int n, int c, int h, float offset, float outlier) {
    const int hw = h * h;
    const int64_t count = (int64_t)n * c * hw, m = (int64_t)n * hw;
    pasm_bn_shape s = {.n = n, .c = c, .h = h, .w = h, .eps = 1e-5f, .momentum = 0.1f};
    float *x = rand_floats(count, 3, 2, offset), *gamma = rand_floats(c, 4, 0.5f, 1);
    /* the GPU's one-pass sums are shifted by each channel's first row: an
     * outlier there is their worst case */
    for (int ch = 0; ch < c; ch++) x[(int64_t)ch * hw] += outlier;
    float *beta = rand_floats(c, 5, 0.5f, 0), *res = rand_floats(count, 6, 1, 0);
    float *dy = rand_floats(count, 7, 1, 0);
    float rm[64], rv[64], smean[64], sinv[64], rm2[64], rv2[64], smean2[64], sinv2[64];
    for (int i = 0; i < c; i++) rm[i] = rm2[i] = 0.1f * i, rv[i] = rv2[i] = 1 + 0.2f * i;
    float *y = malloc(count * 4), *y2 = malloc(count * 4), *dx = malloc(count * 4),
          *dx2 = malloc(count * 4);
    float dg[64], db[64], dg2[64], db2[64];
    pasm_batchnorm_forward_train(&s, x, gamma, beta, rm, rv, y, smean, sinv);
    for (int64_t i = 0; i < count; i++) y[i] = fmaxf(y[i] + res[i], 0.0f);
    pasm_batchnorm_backward(&s, x, gamma, smean, sinv, dy, dx, dg, db);

    void *xd = to_nhwc(x, n, c, hw, PASM_CUDA_F32), *resd = to_nhwc(res, n, c, hw, PASM_CUDA_F32);
    void *dyd = to_nhwc(dy, n, c, hw, PASM_CUDA_F32);
    void *yd = buf_in(NULL, count * 4), *dxd = buf_in(NULL, count * 4);
    float *gd = buf_in(gamma, c * 4), *bd = buf_in(beta, c * 4), *rmd = buf_in(rm2, c * 4),
          *rvd = buf_in(rv2, c * 4), *smd = buf_in(NULL, c * 4), *sid = buf_in(NULL, c * 4),
          *scd = buf_in(NULL, c * 4), *shd = buf_in(NULL, c * 4), *dgd = buf_in(NULL, c * 4),
          *dbd = buf_in(NULL, c * 4), *coef = buf_in(NULL, 4 * c * 4);
    double *part = buf_in(NULL, pasm_cuda_bn_partial_doubles(m, c) * sizeof(double));
    OK(pasm_cuda_bn_stats(ctx(), m, c, xd, PASM_CUDA_F32, 1e-5f, 0.1f, gd, bd, rmd, rvd, smd, sid,
                          scd, shd, part));
    OK(pasm_cuda_affine(ctx(), m, c, xd, scd, shd, resd, 1, yd, PASM_CUDA_F32));
    OK(pasm_cuda_bn_backward(ctx(), m, c, xd, dyd, NULL, 0, PASM_CUDA_F32, gd, smd, sid, dxd, dgd, dbd,
                             part, coef));
    from_nhwc(y2, yd, n, c, hw, PASM_CUDA_F32);
    from_nhwc(dx2, dxd, n, c, hw, PASM_CUDA_F32);
    buf_out(rm2, rmd, c * 4);
    buf_out(rv2, rvd, c * 4);
    buf_out(smean2, smd, c * 4);
    buf_out(sinv2, sid, c * 4);
    buf_out(dg2, dgd, c * 4);
    buf_out(db2, dbd, c * 4);
    char what[96];
    snprintf(what, sizeof what, "BN forward %dx%dx%dx%d (+res, ReLU)%s", n, c, h, h,
             outlier != 0 ? ", first row an outlier" : "");
    expect_close(what, y2, y, count, 1e-5);
    expect_close("BN running mean", rm2, rm, c, 1e-6);
    expect_close("BN running var", rv2, rv, c, 1e-6);
    expect_close("BN saved mean", smean2, smean, c, 1e-6);
    expect_close("BN saved invstd", sinv2, sinv, c, 1e-6);
    expect_close("BN input gradient", dx2, dx, count, 1e-5);
    expect_close("BN dgamma", dg2, dg, c, 1e-5);
    expect_close("BN dbeta", db2, db, c, 1e-5);
    /* the backward with the ReLU after it taken on the way (relu_y: the
     * output above, with its residual): the CPU's on dy masked by y > 0 */
    float *dym = malloc(count * 4);
    for (int64_t i = 0; i < count; i++) dym[i] = y[i] > 0 ? dy[i] : 0.0f;
    pasm_batchnorm_backward(&s, x, gamma, smean, sinv, dym, dx, dg, db);
    for (int mask = 0; mask < 2; mask++) { /* mask: dy left masked too */
        OK(pasm_cuda_bn_backward(ctx(), m, c, xd, dyd, yd, mask, PASM_CUDA_F32, gd, smd, sid, dxd,
                                 dgd, dbd, part, coef));
        from_nhwc(dx2, dxd, n, c, hw, PASM_CUDA_F32);
        buf_out(dg2, dgd, c * 4);
        buf_out(db2, dbd, c * 4);
        expect_close("BN input gradient through a ReLU", dx2, dx, count, 1e-5);
        expect_close("BN dgamma through a ReLU", dg2, dg, c, 1e-5);
        expect_close("BN dbeta through a ReLU", db2, db, c, 1e-5);
        from_nhwc(dx2, dyd, n, c, hw, PASM_CUDA_F32); /* dy: as given, or masked */
        assert_memory_equal(dx2, mask ? dym : dy, count * 4);
    }
    /* without dx: the mask alone */
    void *dy_again = to_nhwc(dy, n, c, hw, PASM_CUDA_F32);
    OK(pasm_cuda_bn_backward(ctx(), m, c, xd, dy_again, yd, 1, PASM_CUDA_F32, gd, smd, sid, NULL,
                             dgd, dbd, part, coef));
    from_nhwc(dx2, dy_again, n, c, hw, PASM_CUDA_F32);
    assert_memory_equal(dx2, dym, count * 4);
    buf_free(dy_again);
    buf_free(dyd);
    dyd = to_nhwc(dy, n, c, hw, PASM_CUDA_F32);
    free(dym);

    /* evaluation: fold + affine = pasm_batchnorm_forward_eval */
    pasm_batchnorm_forward_eval(&s, x, gamma, beta, rm, rv, y);
    OK(pasm_cuda_bn_fold(ctx(), c, 1e-5f, gd, bd, rmd, rvd, scd, shd));
    OK(pasm_cuda_affine(ctx(), m, c, xd, scd, shd, NULL, 0, yd, PASM_CUDA_F32));
    from_nhwc(y2, yd, n, c, hw, PASM_CUDA_F32);
    expect_close("BN evaluation forward", y2, y, count, 1e-6);
    /* evaluation backward: dx = dy * scale */
    pasm_batchnorm_backward_eval(&s, gamma, rv, dy, dx);
    OK(pasm_cuda_affine(ctx(), m, c, dyd, scd, NULL, NULL, 0, dxd, PASM_CUDA_F32));
    from_nhwc(dx2, dxd, n, c, hw, PASM_CUDA_F32);
    expect_close("BN evaluation input gradient", dx2, dx, count, 1e-6);

    void *bufs[] = {xd, resd, dyd, yd, dxd, gd, bd, rmd, rvd, smd, sid, scd, shd, dgd, dbd, coef, part};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) buf_free(bufs[i]);
    free(x), free(gamma), free(beta), free(res), free(dy), free(y), free(y2), free(dx), free(dx2);
}

/* The vector loops (sixteen bytes an index) against one element at a
 * time: batch norm's statistics, affine map (residual, ReLU), backward
 * (with and without the ReLU on the way) and the ReLU's backward, in t,
 * byte for byte, the arithmetic per element being the same. */
static void run_bn_ops(pasm_cuda_dtype t, int64_t m, int c, const void *xd, const void *resd,
                       void *dyd, unsigned char *out) {
    const size_t es = pasm_cuda_dtype_size(t), tb = (size_t)m * c * es;
    float *gamma = rand_floats(c, 31, 0.5f, 1), *beta = rand_floats(c, 32, 0.5f, 0);
    float *gd = buf_in(gamma, c * 4), *bd = buf_in(beta, c * 4), *rmd = buf_in(NULL, c * 4),
          *rvd = buf_in(NULL, c * 4), *smd = buf_in(NULL, c * 4), *sid = buf_in(NULL, c * 4),
          *scd = buf_in(NULL, c * 4), *shd = buf_in(NULL, c * 4), *dgd = buf_in(NULL, c * 4),
          *dbd = buf_in(NULL, c * 4), *coef = buf_in(NULL, 4 * c * 4);
    double *part = buf_in(NULL, pasm_cuda_bn_partial_doubles(m, c) * sizeof(double));
    void *yd = buf_in(NULL, tb), *dxd = buf_in(NULL, tb), *dd = buf_in(NULL, tb);
    float *one = malloc(c * 4);
    for (int i = 0; i < c; i++) one[i] = 1.0f;
    float *ones = buf_in(one, c * 4);
    free(one);
    OK(pasm_cuda_bn_stats(ctx(), m, c, xd, t, 1e-5f, 0.1f, gd, bd, rmd, rvd, smd, sid, scd, shd,
                          part));
    OK(pasm_cuda_affine(ctx(), m, c, xd, scd, shd, resd, 1, yd, t));
    size_t at = 0;
    buf_out(out + at, yd, tb), at += tb;
    const float *small[] = {rmd, rvd, smd, sid, scd, shd};
    for (int i = 0; i < 6; i++) buf_out(out + at, small[i], c * 4), at += c * 4;
    for (int relu = 0; relu < 2; relu++) {
        OK(pasm_cuda_bn_backward(ctx(), m, c, xd, dyd, relu ? yd : NULL, 0, t, gd, smd, sid, dxd,
                                 dgd, dbd, part, coef));
        buf_out(out + at, dxd, tb), at += tb;
        buf_out(out + at, dgd, c * 4), at += c * 4;
        buf_out(out + at, dbd, c * 4), at += c * 4;
    }
    /* the ReLU's mask left in a copy of dy (the copy: dy's affine map by 1 and 0) */
    OK(pasm_cuda_affine(ctx(), m, c, dyd, ones, NULL, NULL, 0, dd, t));
    OK(pasm_cuda_bn_backward(ctx(), m, c, xd, dd, yd, 1, t, gd, smd, sid, dxd, dgd, dbd, part,
                             coef));
    buf_out(out + at, dxd, tb), at += tb;
    buf_out(out + at, dd, tb), at += tb;
    /* the affine map alone (the evaluation's backward: no shift, no ReLU) */
    OK(pasm_cuda_affine(ctx(), m, c, dyd, scd, NULL, NULL, 0, dxd, t));
    buf_out(out + at, dxd, tb), at += tb;
    /* the ReLU's backward: a gradient (dy's affine map) masked by y */
    OK(pasm_cuda_affine(ctx(), m, c, dyd, scd, shd, NULL, 0, dd, t));
    OK(pasm_cuda_relu_backward(ctx(), m * c, yd, dd, t));
    buf_out(out + at, dd, tb), at += tb;
    void *bufs[] = {gd, bd, rmd, rvd, smd, sid, scd, shd, dgd, dbd, coef, part, yd, dxd, dd, ones};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) buf_free(bufs[i]);
    free(gamma), free(beta);
}

static void case_vectors(pasm_cuda_dtype t, int n, int c, int h) {
    const int hw = h * h;
    const int64_t count = (int64_t)n * c * hw, m = (int64_t)n * hw;
    const size_t es = pasm_cuda_dtype_size(t), tb = (size_t)count * es;
    const size_t bytes = 7 * tb + 10 * (size_t)c * 4;
    float *x = rand_floats(count, 33, 2, 0.5f), *res = rand_floats(count, 34, 1, 0);
    float *dy = rand_floats(count, 35, 1, 0);
    void *xd = to_nhwc(x, n, c, hw, t), *resd = to_nhwc(res, n, c, hw, t);
    void *dyd = to_nhwc(dy, n, c, hw, t);
    unsigned char *vec = malloc(bytes), *one = malloc(bytes);
    pasm_cuda_set_vectors(1);
    const uint64_t before = pasm_cuda_vector_loops();
    run_bn_ops(t, m, c, xd, resd, dyd, vec);
    const uint64_t used = pasm_cuda_vector_loops() - before;
    pasm_cuda_set_vectors(0);
    run_bn_ops(t, m, c, xd, resd, dyd, one);
    assert_true(pasm_cuda_vector_loops() - before == used);
    pasm_cuda_set_vectors(1);
    /* statistics, affine, two backwards of two vector loops each, the copy,
     * the masking backward (two), affine, affine, ReLU */
    assert_int_equal((int)used, 12);
    /* a pointer off the 16-byte grid: one element at a time, vectors on or not */
    {
        const size_t tb1 = (size_t)(m - 1) * c * es;
        void *yd = buf_in(NULL, tb);
        unsigned char *a = malloc(tb1), *b = malloc(tb1);
        float *sc = buf_in(x, (size_t)c * 4);
        const uint64_t at = pasm_cuda_vector_loops();
        OK(pasm_cuda_affine(ctx(), m - 1, c, (char *)xd + es, sc, NULL, NULL, 1, (char *)yd + es, t));
        buf_out(a, (char *)yd + es, tb1);
        pasm_cuda_set_vectors(0);
        OK(pasm_cuda_affine(ctx(), m - 1, c, (char *)xd + es, sc, NULL, NULL, 1, (char *)yd + es, t));
        pasm_cuda_set_vectors(1);
        buf_out(b, (char *)yd + es, tb1);
        assert_true(pasm_cuda_vector_loops() == at);
        assert_memory_equal(a, b, tb1);
        buf_free(yd), buf_free(sc);
        free(a), free(b);
    }
    printf("  %-6s BN and ReLU ops, %s %dx%dx%dx%d: vectors %s one element at a time\n",
           g_gpu ? "gpu" : "emu", t == PASM_CUDA_BF16 ? "bf16" : "fp32", n, c, h, h,
           memcmp(vec, one, bytes) ? "DIFFER from" : "give the bytes of");
    assert_memory_equal(vec, one, bytes);
    buf_free(xd), buf_free(resd), buf_free(dyd);
    free(x), free(res), free(dy), free(vec), free(one);
}

static void case_elementwise_pool_linear(void) {
    const int n = 4, c = 6, h = 5, hw = h * h, k = 3;
    const int64_t count = (int64_t)n * c * hw;
    float *x = rand_floats(count, 8, 1, 0), *d = rand_floats(count, 9, 1, 0);
    float *want = malloc(count * 4), *got = malloc(count * 4);
    /* ReLU backward (y = x) */
    for (int64_t i = 0; i < count; i++) want[i] = x[i] > 0 ? d[i] : 0;
    void *xd = buf_in(x, count * 4), *dd = buf_in(d, count * 4);
    OK(pasm_cuda_relu_backward(ctx(), count, xd, dd, PASM_CUDA_F32));
    buf_out(got, dd, count * 4);
    assert_memory_equal(got, want, count * 4);
    buf_free(xd);
    buf_free(dd);
    /* average pool */
    float pooled[24], pooled2[24], dp[24];
    pasm_avgpool_forward(n, c, h, h, x, pooled);
    void *xn = to_nhwc(x, n, c, hw, PASM_CUDA_F32);
    float *pd = buf_in(NULL, sizeof pooled);
    OK(pasm_cuda_avgpool_forward(ctx(), n, c, hw, xn, PASM_CUDA_F32, pd));
    buf_out(pooled2, pd, sizeof pooled);
    expect_close("average pool", pooled2, pooled, n * c, 1e-6);
    for (int i = 0; i < n * c; i++) dp[i] = 0.3f * i - 2;
    pasm_avgpool_backward(n, c, h, h, dp, want);
    float *dpd = buf_in(dp, sizeof dp);
    OK(pasm_cuda_avgpool_backward(ctx(), n, c, hw, dpd, xn, PASM_CUDA_F32));
    from_nhwc(got, xn, n, c, hw, PASM_CUDA_F32);
    expect_close("average pool backward", got, want, count, 1e-6);
    /* linear: pooled (n, c) -> (n, k) */
    float *w = rand_floats(k * c, 10, 1, 0), b[3] = {0.5f, -1, 2}, y[12], y2[12], dy[12];
    float dxl[24], dxl2[24], dw[18], dw2[18], dbl[3], dbl2[3];
    for (int i = 0; i < n * k; i++) dy[i] = 0.1f * i - 0.5f;
    pasm_linear_forward(n, c, k, pooled, w, b, y);
    pasm_linear_backward(n, c, k, pooled, w, dy, dxl, dw, dbl);
    float *wd = buf_in(w, k * c * 4), *bd = buf_in(b, sizeof b), *yd = buf_in(NULL, sizeof y);
    float *dyd = buf_in(dy, sizeof dy), *dxd = buf_in(NULL, sizeof dxl),
          *dwd = buf_in(NULL, sizeof dw), *dbd = buf_in(NULL, sizeof dbl);
    OK(pasm_cuda_linear_forward(ctx(), n, c, k, pd, wd, bd, yd));
    OK(pasm_cuda_linear_backward(ctx(), n, c, k, pd, wd, dyd, dxd, dwd, dbd));
    buf_out(y2, yd, sizeof y);
    buf_out(dxl2, dxd, sizeof dxl);
    buf_out(dw2, dwd, sizeof dw);
    buf_out(dbl2, dbd, sizeof dbl);
    expect_close("linear forward", y2, y, n * k, 1e-6);
    expect_close("linear input gradient", dxl2, dxl, n * c, 1e-6);
    expect_close("linear weight gradient", dw2, dw, k * c, 1e-6);
    expect_close("linear bias gradient", dbl2, dbl, k, 1e-6);
    void *bufs[] = {xn, pd, dpd, wd, bd, yd, dyd, dxd, dwd, dbd};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) buf_free(bufs[i]);
    free(x), free(d), free(want), free(got), free(w);
}

static void case_sgd(void) {
    const int64_t count = 1000;
    float *p = rand_floats(count, 11, 1, 0), *g = rand_floats(count, 12, 1, 0);
    float *p2 = malloc(count * 4), *buf2 = malloc(count * 4);
    memcpy(p2, p, count * 4);
    pasm_sgd_options o = {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 5e-4f, .nesterov = 1};
    pasm_sgd sgd;
    assert_int_equal(pasm_sgd_init(&sgd, &o, count), PASM_OK);
    float *pd = buf_in(p2, count * 4), *gd = buf_in(g, count * 4), *bd = buf_in(NULL, count * 4);
    for (int step = 0; step < 3; step++) {
        pasm_sgd_step(&sgd, p, g, 0.1f * (step + 1));
        OK(pasm_cuda_sgd(ctx(), count, pd, gd, bd, 0.1f * (step + 1), 5e-4f, 0.9f, 0, 1,
                         step == 0, NULL));
    }
    buf_out(p2, pd, count * 4);
    buf_out(buf2, bd, count * 4);
    expect_close("SGD parameters after 3 steps", p2, p, count, 1e-6);
    expect_close("SGD momentum after 3 steps", buf2, sgd.momentum_buffer, count, 1e-6);
    pasm_sgd_free(&sgd);
    buf_free(pd), buf_free(gd), buf_free(bd);
    free(p), free(g), free(p2), free(buf2);
}

/* Batch assembly: the CPU's pasm_batch_make + pasm_augment_batch against
 * pasm_cuda_batch from the uint8 images and the plans (crop with reflect
 * padding, flip, erasing with value 0; 3 channels, a batch that takes
 * images out of order and twice). */
static void case_batch(void) {
    const int N = 9, C = 3, S = 11, n = 6;
    pasm_dataset ds;
    OK(pasm_dataset_alloc(&ds, N, C, S, "test images"));
    pasm_rng r;
    pasm_rng_init(&r, 5, 99, 1, 0);
    for (int64_t i = 0; i < (int64_t)N * C * S * S; i++) ds.images[i] = (uint8_t)pasm_rng_u32(&r);
    for (int i = 0; i < N; i++) ds.labels[i] = i % 4;
    const int idx[6] = {7, 2, 2, 0, 8, 5};
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.2f, 0.3f};
    pasm_augment_config cfg;
    pasm_augment_defaults(&cfg);
    cfg.crop_padding = 3;
    cfg.erase_p = 0.7f;
    const size_t count = (size_t)n * C * S * S;
    float *want = malloc(count * 4), *got = malloc(count * 4), table[3 * 256];
    int32_t want_labels[6], got_labels[6];
    OK(pasm_batch_make(&ds, idx, n, mean, std, want, want_labels));
    OK(pasm_augment_batch(want, n, C, S, &cfg, 17, 4, idx));
    pasm_augment_plan plans[6];
    OK(pasm_augment_plans(n, S, &cfg, 17, 4, idx, plans));
    int erased = 0, flipped = 0;
    for (int i = 0; i < n; i++) erased += plans[i].h > 0, flipped += plans[i].flip;
    printf("  %-6s batch assembly: %d of %d samples erased, %d flipped\n", g_gpu ? "gpu" : "emu",
           erased, n, flipped);
    OK(pasm_norm_table(C, mean, std, table));
    int32_t order[6];
    for (int i = 0; i < n; i++) order[i] = idx[i];
    void *im = buf_in(ds.images, (size_t)N * C * S * S), *lb = buf_in(ds.labels, N * 4);
    void *od = buf_in(order, sizeof order), *pd = buf_in(plans, sizeof plans);
    void *td = buf_in(table, sizeof table), *xd = buf_in(NULL, count * 4);
    void *ld = buf_in(NULL, sizeof got_labels);
    OK(pasm_cuda_batch(ctx(), n, C, S, im, lb, od, pd, td, xd, ld, NULL));
    buf_out(got, xd, count * 4);
    buf_out(got_labels, ld, sizeof got_labels);
    assert_memory_equal(got, want, count * 4); /* values are moved, never computed anew */
    assert_memory_equal(got_labels, want_labels, sizeof want_labels);
    void *bufs[] = {im, lb, od, pd, td, xd, ld};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) buf_free(bufs[i]);
    free(want), free(got);
    pasm_dataset_free(&ds);
    /* noise-valued erasing has no plan */
    cfg.erase_random = 1;
    assert_int_equal(pasm_augment_plans(n, S, &cfg, 17, 4, idx, plans), PASM_ERR_UNSUPPORTED);
}

/* The salient-pixel pick on hand-made gradients (2 channels, 12x12: 144
 * pixels over 64 lanes), against what the host's scan gives: the first of
 * the largest, whichever lanes the ties fall in; marked pixels skipped; NaN
 * never picked; -1 when all are marked; values 255 where the gradient
 * (times the channel's scale) is positive. */
static void case_salient(void) {
    enum { N = 6, C = 2, S = 12, P = S * S };
    float *dx = calloc((size_t)N * C * P, sizeof(float));
    uint8_t *skip = calloc((size_t)N * P, 1);
    const pasm_cuda_scale3 scale = {{2.0f, 0.5f, 0.0f}};
#define D(img, ch, p) dx[((img) * C + (ch)) * P + (p)]
    /* 0: all zero -> pixel 0 */
    /* 1: a tie between pixels 100 and 37 (lanes 36 and 37) -> 37: 3*2 + 0 = 0*2 + 12*0.5 */
    D(1, 0, 100) = 3, D(1, 1, 37) = -12;
    /* 2: a tie in one lane (pixels 5 and 69, 133) -> 5, and a smaller one elsewhere */
    D(2, 0, 69) = -1, D(2, 0, 5) = 1, D(2, 0, 133) = 1, D(2, 1, 6) = 3;
    /* 3: the largest marked -> the next; a NaN never wins */
    D(3, 0, 50) = 9, D(3, 1, 51) = 10, D(3, 0, 52) = NAN;
    skip[3 * P + 50] = 1;
    /* 4: every pixel marked -> -1 */
    memset(skip + 4 * P, 1, P);
    /* 5: only the last pixel counts, negative in channel 0, positive in 1 */
    D(5, 0, P - 1) = -1, D(5, 1, P - 1) = 1;
#undef D
    const int32_t want[N] = {0, 37, 5, 51, -1, P - 1};
    const uint8_t want_values[N * C] = {0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 0, 255};
    float *dxd = buf_in(dx, (size_t)N * C * P * 4);
    uint8_t *skd = buf_in(skip, (size_t)N * P);
    int32_t *pd = buf_in(NULL, N * 4), got[N];
    uint8_t *vd = buf_in(NULL, N * C), values[N * C];
    void *scratch = buf_in(NULL, pasm_cuda_salient_scratch_bytes(N));
    OK(pasm_cuda_salient(ctx(), N, C, S, dxd, scale, skd, pd, vd, scratch));
    buf_out(got, pd, sizeof got);
    buf_out(values, vd, sizeof values);
    assert_memory_equal(got, want, sizeof got);
    assert_memory_equal(values, want_values, sizeof values);
    /* without a mask, image 3's largest (pixel 50) and image 4's zeros (pixel 0) */
    OK(pasm_cuda_salient(ctx(), N, C, S, dxd, scale, NULL, pd, vd, scratch));
    buf_out(got, pd, sizeof got);
    assert_int_equal(got[3], 50);
    assert_int_equal(got[4], 0);
    buf_free(dxd), buf_free(skd), buf_free(pd), buf_free(vd), buf_free(scratch);
    free(dx), free(skip);
}

/* The training loss: pasm_cross_entropy (smoothing, class weights) mixed
 * with pasm_distill_loss as the trainer mixes them, against the kernel; and
 * a label out of range giving NaN. Exact when emulated (the same
 * arithmetic); the GPU's exp and log may differ from the host's in the last
 * bit. */
static void case_loss(void) {
    const int n = 37, k = 7;
    float *z = rand_floats(n * k, 21, 2, 0), *t = rand_floats(n * k, 22, 3, 0.5f);
    float w[7] = {1.5f, 0.5f, 2.0f, 1.0f, 0.25f, 3.0f, 1.0f};
    int32_t y[37];
    for (int i = 0; i < n; i++) y[i] = (i * 5) % k;
    float *dce = malloc(n * k * 4), *dkd = malloc(n * k * 4), *want = malloc(n * k * 4);
    float *got = malloc(n * k * 4);
    const float eps = 0.1f, a = 0.5f, temp = 4.0f;
    void *zd = buf_in(z, n * k * 4), *td = buf_in(t, n * k * 4), *wd = buf_in(w, sizeof w);
    void *yd = buf_in(y, sizeof y), *gd = buf_in(NULL, n * k * 4);
    void *terms = buf_in(NULL, pasm_cuda_loss_terms_doubles(n, k) * 8);
    void *ld = buf_in(NULL, 8), *cd = buf_in(NULL, 4);
    for (int variant = 0; variant < 2; variant++) { /* plain, then weights + smoothing + kd */
        const int kd = variant == 1;
        double ce = pasm_cross_entropy(n, k, z, y, kd ? eps : 0, kd ? w : NULL, dce, NULL);
        double total = ce;
        memcpy(want, dce, n * k * 4);
        if (kd) {
            double d = pasm_distill_loss(n, k, z, t, temp, dkd);
            total = (1.0 - a) * ce + a * d;
            for (int i = 0; i < n * k; i++) want[i] = (1.0f - a) * dce[i] + a * dkd[i];
        }
        int right = 0;
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int c = 1; c < k; c++)
                if (z[i * k + c] > z[i * k + best]) best = c;
            right += best == y[i];
        }
        OK(pasm_cuda_train_loss(ctx(), n, k, zd, yd, kd ? eps : 0, kd ? wd : NULL,
                                kd ? td : NULL, a, temp, gd, terms, ld, cd, NULL));
        double loss;
        int32_t correct;
        buf_out(got, gd, n * k * 4);
        buf_out(&loss, ld, 8);
        buf_out(&correct, cd, 4);
        printf("  %-6s loss %s: %.17g vs the CPU's %.17g, %d right\n", g_gpu ? "gpu" : "emu",
               kd ? "(weights, smoothing, kd)" : "(plain)", loss, total, correct);
        assert_int_equal(correct, right);
        if (!g_gpu) {
            assert_true(loss == total);
            assert_memory_equal(got, want, n * k * 4);
        } else {
            assert_true(fabs(loss - total) <= 1e-12 * fabs(total));
            expect_close("loss gradient", got, want, n * k, 1e-6);
        }
    }
    y[3] = k; /* out of range */
    buf_free(yd);
    yd = buf_in(y, sizeof y);
    OK(pasm_cuda_train_loss(ctx(), n, k, zd, yd, 0, NULL, NULL, a, temp, gd, terms, ld, cd, NULL));
    double loss;
    buf_out(&loss, ld, 8);
    assert_true(isnan(loss));
    void *bufs[] = {zd, td, wd, yd, gd, terms, ld, cd};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) buf_free(bufs[i]);
    free(z), free(t), free(dce), free(dkd), free(want), free(got);
}

static void run_cases(void) {
    case_batch();
    case_salient();
    case_loss();
    case_layouts();
    case_batchnorm(3, 5, 7, 3.0f, 0);
    case_batchnorm(2, 64, 12, -1.0f, 0); /* many channels: chunks of whole rows */
    case_batchnorm(40, 3, 16, 0.5f, 0);  /* many rows: many chunks */
    case_batchnorm(8, 16, 24, 300.0f, 0); /* a mean 150 spreads: one-pass statistics */
    case_batchnorm(64, 4, 24, 0.0f, 3e4f); /* 36,864 rows, the first 15,000 spreads out */
    case_vectors(PASM_CUDA_F32, 3, 16, 9);
    case_vectors(PASM_CUDA_BF16, 3, 16, 9);
    case_vectors(PASM_CUDA_BF16, 2, 64, 12);
    case_vectors(PASM_CUDA_BF16, 2, 24, 5); /* 24 channels: three vectors a row in bf16 */
    case_elementwise_pool_linear();
    case_sgd();
}

static void test_emulated(void **unused) {
    set_mode(0);
    run_cases();
}

static void test_gpu_kernels(void **unused) {
    if (!set_mode(1)) skip();
    run_cases();
    set_mode(0);
}

/* cuDNN's convolutions (NHWC, packed KRSC weights) against the CPU's. */
static void conv_case(int n, int cin, int size, int cout, int k, int stride, pasm_cuda_dtype t) {
    pasm_conv2d_shape s = {.n = n, .c_in = cin, .h_in = size, .w_in = size, .c_out = cout,
                           .kernel = k, .stride = stride, .pad = k / 2};
    assert_int_equal(pasm_conv2d_shape_init(&s), PASM_OK);
    const int hw = size * size, ohw = s.h_out * s.w_out, rs = k * k;
    const int64_t xc = (int64_t)n * cin * hw, yc = (int64_t)n * cout * ohw, wc = (int64_t)cout * cin * rs;
    float *x = rand_floats(xc, 20, 1, 0), *w = rand_floats(wc, 21, 0.2f, 0), *dy = rand_floats(yc, 22, 1, 0);
    float *y = malloc(yc * 4), *dx = malloc(xc * 4), *dw = malloc(wc * 4);
    float *y2 = malloc(yc * 4), *dx2 = malloc(xc * 4), *dw2 = malloc(wc * 4);
    void *ws = malloc(pasm_conv2d_workspace_size(&s));
    pasm_conv2d_forward(&s, x, w, NULL, y, ws);
    pasm_conv2d_backward(&s, x, w, dy, dx, dw, NULL, ws);
    free(ws);
    pasm_cuda_conv *plan;
    OK(pasm_cuda_conv_create(g_ctx, &s, t, PASM_CUDA_CONV_ALL, &plan));
    size_t wsb = pasm_cuda_conv_workspace(plan);
    void *wsd = buf_in(NULL, wsb);
    const size_t es = pasm_cuda_dtype_size(t);
    void *xd = to_nhwc(x, n, cin, hw, t), *dyd = to_nhwc(dy, n, cout, ohw, t);
    float *wf = buf_in(w, wc * 4), *dwf = buf_in(NULL, wc * 4);
    void *wp = buf_in(NULL, wc * es), *dwp = buf_in(NULL, wc * es);
    void *yd = buf_in(NULL, yc * es), *dxd = buf_in(NULL, xc * es);
    OK(pasm_cuda_pack_weight(g_ctx, cout, cin, rs, wf, wp, t));
    OK(pasm_cuda_conv_forward(plan, n, xd, wp, yd, wsd, wsb));
    OK(pasm_cuda_conv_backward_data(plan, n, dyd, wp, dxd, 0, wsd, wsb));
    OK(pasm_cuda_conv_backward_filter(plan, n, xd, dyd, dwp, wsd, wsb));
    OK(pasm_cuda_unpack_weight(g_ctx, cout, cin, rs, dwp, t, dwf));
    from_nhwc(y2, yd, n, cout, ohw, t);
    from_nhwc(dx2, dxd, n, cin, hw, t);
    buf_out(dw2, dwf, wc * 4);
    OK(pasm_cuda_sync(g_ctx, "convolution test"));
    const double lim = t == PASM_CUDA_BF16 ? 2e-2 : 1e-5;
    char what[128];
    const char *tn = t == PASM_CUDA_BF16 ? "bf16" : "fp32";
    snprintf(what, sizeof what, "conv %s %dx%d s%d %d->%d %dx%d forward", tn, k, k, stride, cin, cout, size, size);
    expect_close(what, y2, y, yc, lim);
    snprintf(what, sizeof what, "conv %s %dx%d s%d %d->%d input gradient", tn, k, k, stride, cin, cout);
    expect_close(what, dx2, dx, xc, lim);
    snprintf(what, sizeof what, "conv %s %dx%d s%d %d->%d weight gradient", tn, k, k, stride, cin, cout);
    expect_close(what, dw2, dw, wc, lim);
    /* dx += the input gradient: twice it */
    OK(pasm_cuda_conv_backward_data(plan, n, dyd, wp, dxd, 1, wsd, wsb));
    from_nhwc(dx2, dxd, n, cin, hw, t);
    OK(pasm_cuda_sync(g_ctx, "convolution test"));
    for (int64_t i = 0; i < xc; i++) dx2[i] *= 0.5f;
    expect_close("  ... input gradient added to itself, halved", dx2, dx, xc, lim);
    /* a smaller batch through the same plan */
    OK(pasm_cuda_conv_forward(plan, 1, xd, wp, yd, wsd, wsb));
    from_nhwc(y2, yd, 1, cout, ohw, t);
    expect_close("  ... the same plan at batch 1", y2, y, (int64_t)cout * ohw, lim);
    void *bufs[] = {wsd, xd, dyd, wf, dwf, wp, dwp, yd, dxd};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) buf_free(bufs[i]);
    pasm_cuda_conv_free(plan);
    free(x), free(w), free(dy), free(y), free(dx), free(dw), free(y2), free(dx2), free(dw2);
}

static void test_gpu_conv(void **unused) {
    if (!set_mode(1)) skip();
    for (int t = 0; t < 2; t++) {
        pasm_cuda_dtype dt = t ? PASM_CUDA_BF16 : PASM_CUDA_F32;
        conv_case(4, 1, 48, 16, 3, 1, dt);  /* the stem */
        conv_case(16, 1, 48, 64, 3, 1, dt); /* width 64's (cuDNN 9.14 had no FMA kernel) */
        conv_case(4, 16, 24, 32, 3, 2, dt); /* a downsampling block's conv1 */
        conv_case(4, 16, 24, 32, 1, 2, dt); /* its shortcut */
        conv_case(3, 32, 6, 32, 3, 1, dt);  /* small maps */
    }
    set_mode(0);
}

/* The backend's direct kernels (PASM_CUDA_CONV_DIRECT=1: every direction),
 * which run the directions cuDNN has no plain-FMA kernel for: emulated on
 * the host, then on the GPU when there is one. */
static void direct_cases(void) {
    setenv("PASM_CUDA_CONV_DIRECT", "1", 1);
    for (int t = 0; t < 2; t++) {
        pasm_cuda_dtype dt = t ? PASM_CUDA_BF16 : PASM_CUDA_F32;
        conv_case(5, 1, 48, 64, 3, 1, dt);  /* the stem; 11,520 rows in uneven chunks */
        conv_case(2, 3, 20, 8, 3, 1, dt);   /* RGB */
        conv_case(3, 16, 24, 32, 3, 2, dt); /* stride 2 */
        conv_case(3, 16, 23, 32, 3, 2, dt); /* stride 2, odd size */
        conv_case(3, 16, 24, 32, 1, 2, dt); /* 1x1 shortcut */
        conv_case(2, 64, 3, 48, 3, 1, dt);  /* maps smaller than a chunk */
        conv_case(1, 64, 3, 48, 3, 1, dt);  /* one chunk: summed straight into dw */
    }
    unsetenv("PASM_CUDA_CONV_DIRECT");
}

static void test_direct_conv_emulated(void **unused) {
    set_mode(0);
    direct_cases();
}

static void test_direct_conv_gpu(void **unused) {
    if (!set_mode(1)) skip();
    direct_cases();
    set_mode(0);
}

static void test_probe_without_gpu(void **unused) {
    /* Whatever the machine, the probe answers: a line about the GPU, or why
     * there is none, never a crash. */
    char buf[256] = "";
    pasm_status st = pasm_cuda_probe(buf, sizeof buf);
    printf("  probe: %s\n", st == PASM_OK ? buf : pasm_last_error());
    if (st != PASM_OK) {
        assert_int_equal(st, PASM_ERR_UNSUPPORTED);
        assert_non_null(strstr(pasm_last_error(), "--device cuda"));
        assert_int_equal(pasm_device_check(PASM_DEVICE_CUDA), PASM_ERR_UNSUPPORTED);
    }
    assert_int_equal(pasm_device_check(PASM_DEVICE_CPU), PASM_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_without_gpu),
        cmocka_unit_test(test_emulated),
        cmocka_unit_test(test_gpu_kernels),
        cmocka_unit_test(test_gpu_conv),
        cmocka_unit_test(test_direct_conv_emulated),
        cmocka_unit_test(test_direct_conv_gpu),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pasm_cuda_ctx_free(g_ctx);
    return rc;
}

#else /* a build without the CUDA backend */

static void test_no_cuda_build(void **unused) {
    pasm_status st = pasm_device_check(PASM_DEVICE_CUDA);
    assert_int_equal(st, PASM_ERR_UNSUPPORTED);
    assert_non_null(strstr(pasm_last_error(), "without the CUDA backend"));
    printf("  built without CUDA: %s\n", pasm_last_error());
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_no_cuda_build)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
