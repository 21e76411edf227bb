/* The point attacks on hand-made scorers whose class scores depend on the
 * pixels through Gaussian weights peaking sharply at one chosen pixel per
 * class: grad and iter return the true class's peak, de (fixed seeds, a
 * stated budget) returns it, results do not depend on how images are
 * batched, the network scorer's pixel gradient (PASM_NET_EVAL_GRAD) matches
 * finite differences (the 1/(255 std) chain rule), and a PASM_NET_EVAL
 * network's scorer serves de but not the gradient attacks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

#define SIZE 16
#define K 3
#define GAIN 4.0f
static const int PEAK[K][2] = {{3, 12}, {8, 4}, {13, 10}}; /* (row, col) per class */

/* z_c = GAIN * sum_p w_c(p) x_p / 255 + bias_c, w_c(p) = exp(-d^2 / (2 sigma^2)) */
typedef struct {
    float w[K][SIZE * SIZE];
    float bias[K];
    int calls;
} toy;

static void toy_init(toy *t, float sigma) {
    memset(t, 0, sizeof *t);
    for (int c = 0; c < K; c++)
        for (int r = 0; r < SIZE; r++)
            for (int q = 0; q < SIZE; q++) {
                float dr = (float)(r - PEAK[c][0]), dc = (float)(q - PEAK[c][1]);
                t->w[c][r * SIZE + q] = expf(-(dr * dr + dc * dc) / (2 * sigma * sigma));
            }
}

static void toy_logits(const toy *t, const uint8_t *x, float *z) {
    for (int c = 0; c < K; c++) {
        double s = 0;
        for (int p = 0; p < SIZE * SIZE; p++) s += t->w[c][p] * x[p] / 255.0;
        z[c] = GAIN * (float)s + t->bias[c];
    }
}

static pasm_status toy_probs(void *ctx, const uint8_t *images, int n, float *probs) {
    toy *t = ctx;
    t->calls++;
    for (int i = 0; i < n; i++) {
        float z[K];
        toy_logits(t, images + i * SIZE * SIZE, z);
        pasm_softmax(1, K, z, probs + i * K);
    }
    return PASM_OK;
}

static pasm_status toy_grad(void *ctx, const uint8_t *images, const int32_t *labels, int n,
                            float *probs, float *dpixels) {
    toy *t = ctx;
    toy_probs(ctx, images, n, probs);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < SIZE * SIZE; p++) {
            float d = 0;
            for (int c = 0; c < K; c++)
                d += (probs[i * K + c] - (c == labels[i])) * GAIN * t->w[c][p] / 255.0f;
            dpixels[i * SIZE * SIZE + p] = d;
        }
    return PASM_OK;
}

static pasm_scorer toy_scorer(toy *t, int max_batch) {
    return (pasm_scorer){.channels = 1, .size = SIZE, .n_classes = K, .max_batch = max_batch,
                         .probs = toy_probs, .grad = toy_grad, .ctx = t};
}

/* Three grey faces with seeded mild texture, labelled 0, 1, 2. */
static void toy_images(uint8_t *images, int32_t *labels, int64_t *index, int n) {
    pasm_rng r;
    pasm_rng_init(&r, 11, PASM_RNG_SYNTH, 0, 0);
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < SIZE * SIZE; p++)
            images[i * SIZE * SIZE + p] = (uint8_t)(190 + pasm_rng_below(&r, 21));
        labels[i] = i % K;
        index[i] = i;
    }
}

static void assert_peaks(const pasm_point *pts, const int32_t *labels, int n) {
    for (int i = 0; i < n; i++) {
        printf("  image %d (class %d): (%d, %d), p %.3f -> %.3f, fooled %d, %lld queries\n", i,
               labels[i], pts[i].row, pts[i].col, (double)pts[i].p_true_before,
               (double)pts[i].p_true_after, pts[i].fooled, (long long)pts[i].queries);
        assert_int_equal(pts[i].row, PEAK[labels[i]][0]);
        assert_int_equal(pts[i].col, PEAK[labels[i]][1]);
        assert_true(pts[i].p_true_after < pts[i].p_true_before);
    }
}

static void test_grad_finds_the_peak(void **state) {
    toy t;
    toy_init(&t, 1.5f);
    pasm_scorer s = toy_scorer(&t, 64);
    uint8_t images[6 * SIZE * SIZE];
    int32_t labels[6];
    int64_t index[6];
    toy_images(images, labels, index, 6);
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    o.kind = PASM_ATTACK_GRAD;
    o.attack_batch = 4; /* two batches */
    pasm_point pts[6];
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 6, pts), PASM_OK);
    assert_peaks(pts, labels, 6);
    for (int i = 0; i < 6; i++) assert_int_equal(pts[i].queries, 2);
}

static void test_iter_finds_the_peak_and_stops_on_the_flip(void **state) {
    toy t;
    toy_init(&t, 1.5f);
    pasm_scorer s = toy_scorer(&t, 64);
    uint8_t images[3 * SIZE * SIZE];
    int32_t labels[3];
    int64_t index[3];
    toy_images(images, labels, index, 3);
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    o.kind = PASM_ATTACK_ITER;
    o.attack_batch = 2;
    pasm_point pts[3];
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 3, pts), PASM_OK);
    assert_peaks(pts, labels, 3);
    /* Class 0 leads by a margin one dark peak pixel removes (GAIN*~200/255
     * = 3.1 > 1): image 0 is right, then fooled after exactly one step. */
    t.bias[0] = 1.0f;
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 1, pts), PASM_OK);
    assert_true(pts[0].p_true_before > 0.5f);
    assert_int_equal(pts[0].fooled, 1);
    assert_int_equal(pts[0].queries, 2);
    /* With a margin two dark pixels cannot remove (8 > 3.1 * (1 + 0.8)),
     * it runs the whole budget of 2 and still points at the peak. */
    t.bias[0] = 8.0f;
    o.iter_max = 2;
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 1, pts), PASM_OK);
    assert_int_equal(pts[0].fooled, 0);
    assert_int_equal(pts[0].queries, 1 + o.iter_max);
    assert_int_equal(pts[0].row, PEAK[0][0]);
    assert_int_equal(pts[0].col, PEAK[0][1]);
}

/* de: population 32, 20 generations, no early stop; seeds 1, 2, 3. The
 * Gaussian (sigma 2) gives DE a slope to climb; the peak is the optimum. */
static void test_de_finds_the_peak(void **state) {
    toy t;
    toy_init(&t, 2.0f);
    pasm_scorer s = toy_scorer(&t, 1024);
    uint8_t images[3 * SIZE * SIZE];
    int32_t labels[3];
    int64_t index[3];
    toy_images(images, labels, index, 3);
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    o.de_gens = 20;
    o.de_early_stop = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        o.seed = seed;
        pasm_point pts[3];
        assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 3, pts), PASM_OK);
        assert_peaks(pts, labels, 3);
        for (int i = 0; i < 3; i++) assert_int_equal(pts[i].queries, 1 + 32 * 21);
    }
}

/* The same images attacked together in batches of 7, or one at a time,
 * give the same points: streams are keyed by image index, not position. */
static void test_de_independent_of_batching(void **state) {
    toy t;
    toy_init(&t, 2.0f);
    t.bias[0] = 0.5f;
    pasm_scorer s = toy_scorer(&t, 1024);
    uint8_t images[6 * SIZE * SIZE];
    int32_t labels[6];
    int64_t index[6];
    toy_images(images, labels, index, 6);
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    o.seed = 5;
    o.attack_batch = 7;
    pasm_point together[6], alone;
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 6, together), PASM_OK);
    o.attack_batch = 1024;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pasm_attack_images(&s, &o, images + i * SIZE * SIZE, labels + i,
                                            index + i, 1, &alone),
                         PASM_OK);
        assert_memory_equal(&alone, &together[i], sizeof alone);
    }
    /* early stop: a correct image that is fooled stopped before the budget */
    for (int i = 0; i < 6; i++)
        if (together[i].p_true_before > 0.5f && together[i].fooled)
            assert_true(together[i].queries <= 1 + 32 * 9);
}

static void test_bad_options(void **state) {
    toy t;
    toy_init(&t, 2.0f);
    pasm_scorer s = toy_scorer(&t, 8);
    uint8_t images[SIZE * SIZE] = {0};
    int32_t label = 5; /* outside 0..2 */
    int64_t index = 0;
    pasm_point pt;
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    assert_int_equal(pasm_attack_images(&s, &o, images, &label, &index, 1, &pt), PASM_ERR_INVALID);
    label = 0;
    o.de_pop = 3;
    assert_int_equal(pasm_attack_images(&s, &o, images, &label, &index, 1, &pt), PASM_ERR_INVALID);
    pasm_attack_kind kind;
    assert_int_equal(pasm_attack_parse("pgd", &kind), PASM_ERR_INVALID);
    assert_int_equal(pasm_attack_parse("iter", &kind), PASM_OK);
    assert_int_equal(kind, PASM_ATTACK_ITER);
}

/* The network scorer's pixel gradient against central differences of the
 * cross-entropy over +-1 pixel level (the smallest uint8 step), at the 12
 * most salient pixels of a random width-16 ResNet on 32x32 grey images.
 * ReLU kinks inside the step make a few pixels differ: at least 10 of 12
 * must agree within 10%, all within 35%. */
static void test_net_scorer_gradient(void **state) {
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 4,
                           .input_size = 32};
    pasm_net *net;
    assert_int_equal(pasm_net_create_mode(&net, &cfg, 24, PASM_NET_EVAL_GRAD), PASM_OK);
    pasm_net_init(net, 7);
    float mean = 0.45f, std = 0.21f;
    pasm_scorer s;
    assert_int_equal(pasm_scorer_net(&s, net, &mean, &std), PASM_OK);
    uint8_t img[32 * 32];
    pasm_rng r;
    pasm_rng_init(&r, 3, PASM_RNG_SYNTH, 0, 0);
    for (int p = 0; p < 32 * 32; p++) img[p] = (uint8_t)(40 + pasm_rng_below(&r, 170));
    int32_t label = 2;
    float probs[4], d[32 * 32];
    assert_int_equal(s.grad(s.ctx, img, &label, 1, probs, d), PASM_OK);
    /* the 12 most salient pixels, each probed at -1 and +1 in one batch */
    int pix[12];
    uint8_t used[32 * 32] = {0};
    static uint8_t probes[24 * 32 * 32];
    for (int j = 0; j < 12; j++) {
        int best = -1;
        for (int p = 0; p < 32 * 32; p++)
            if (!used[p] && (best < 0 || fabsf(d[p]) > fabsf(d[best]))) best = p;
        used[best] = 1;
        pix[j] = best;
        for (int sgn = 0; sgn < 2; sgn++) {
            uint8_t *probe = probes + (2 * j + sgn) * 32 * 32;
            memcpy(probe, img, sizeof img);
            probe[best] = (uint8_t)(img[best] + (sgn ? 1 : -1));
        }
    }
    float pp[24 * 4];
    assert_int_equal(s.probs(s.ctx, probes, 24, pp), PASM_OK);
    int close = 0;
    for (int j = 0; j < 12; j++) {
        double fd = (-log((double)pp[(2 * j + 1) * 4 + label]) +
                     log((double)pp[2 * j * 4 + label])) / 2.0;
        double an = d[pix[j]];
        printf("  pixel %4d: analytic %.4e, finite difference %.4e\n", pix[j], an, fd);
        close += fabs(fd - an) <= 0.1 * fabs(an);
        assert_true(fabs(fd - an) <= 0.35 * fabs(an));
    }
    assert_true(close >= 10);
    pasm_scorer_net_free(&s);
    pasm_net_free(net);
}

/* A toy Grad-CAM: the true class's weight map (its peak is the class's). */
static pasm_status toy_cam(void *ctx, const uint8_t *images, const int32_t *labels, int n,
                           float *probs, float *maps) {
    toy *t = ctx;
    toy_probs(ctx, images, n, probs);
    for (int i = 0; i < n; i++)
        memcpy(maps + i * SIZE * SIZE, t->w[labels[i]], sizeof t->w[0]);
    return PASM_OK;
}

static void test_cam_and_random_points(void **state) {
    toy t;
    toy_init(&t, 1.5f);
    pasm_scorer s = toy_scorer(&t, 64);
    uint8_t images[6 * SIZE * SIZE];
    int32_t labels[6];
    int64_t index[6];
    toy_images(images, labels, index, 6);
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    o.kind = PASM_ATTACK_CAM;
    o.attack_batch = 4;
    pasm_point pts[6], again[6];
    /* a scorer without maps cannot place cam points */
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 6, pts), PASM_ERR_INVALID);
    s.cam = toy_cam;
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 6, pts), PASM_OK);
    assert_peaks(pts, labels, 6); /* the peak, set to 0 (the lower p_true) */
    for (int i = 0; i < 6; i++) assert_int_equal(pts[i].queries, 3);
    /* random: seeded per image index, uniform over the face */
    o.kind = PASM_ATTACK_RANDOM;
    o.seed = 5;
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 6, pts), PASM_OK);
    o.attack_batch = 1;
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 6, again), PASM_OK);
    int distinct = 0;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pts[i].row, again[i].row);
        assert_int_equal(pts[i].col, again[i].col);
        assert_true(pts[i].p_true_after <= pts[i].p_true_before + 1e-6f);
        distinct += i && (pts[i].row != pts[0].row || pts[i].col != pts[0].col);
    }
    assert_true(distinct >= 4);
    o.seed = 6;
    assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 6, again), PASM_OK);
    int moved = 0;
    for (int i = 0; i < 6; i++) moved += pts[i].row != again[i].row || pts[i].col != again[i].col;
    assert_true(moved >= 4);
    /* 6000 draws cover the 16 x 16 face about evenly (chi-square, 255 df) */
    enum { DRAWS = 6000 };
    static uint8_t many[DRAWS * SIZE * SIZE];
    static int32_t many_labels[DRAWS];
    static int64_t many_index[DRAWS];
    static pasm_point many_pts[DRAWS];
    for (int i = 0; i < DRAWS; i++) many_labels[i] = i % K, many_index[i] = i;
    o.attack_batch = 64;
    assert_int_equal(pasm_attack_images(&s, &o, many, many_labels, many_index, DRAWS, many_pts),
                     PASM_OK);
    int count[SIZE * SIZE] = {0};
    for (int i = 0; i < DRAWS; i++) count[many_pts[i].row * SIZE + many_pts[i].col]++;
    double chi = 0, expect = (double)DRAWS / (SIZE * SIZE);
    for (int p = 0; p < SIZE * SIZE; p++) chi += (count[p] - expect) * (count[p] - expect) / expect;
    printf("  random points: chi-square %.1f over 255 degrees of freedom\n", chi);
    assert_true(chi < 340); /* p ~ 0.0003 */
}

/* The network's Grad-CAM: its map sums to logit_c - bias_c (the head is
 * pool + linear), and the scorer's cam point is the upsampled map's peak. */
static void test_net_class_map(void **state) {
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 4,
                           .input_size = 32};
    pasm_net *net;
    assert_int_equal(pasm_net_create(&net, &cfg, 8), PASM_OK);
    pasm_net_init(net, 9);
    float x[3 * 32 * 32];
    pasm_rng r;
    pasm_rng_init(&r, 4, PASM_RNG_SYNTH, 0, 0);
    for (int i = 0; i < 3 * 32 * 32; i++) x[i] = pasm_rng_normal(&r);
    const float *logits;
    assert_int_equal(pasm_net_forward(net, x, 3, 0, &logits), PASM_OK);
    int32_t classes[3] = {0, 3, 1};
    int size = 0;
    float maps[3 * 64];
    assert_int_equal(pasm_net_class_map_size(net), 4);
    assert_int_equal(pasm_net_class_map(net, classes, maps, &size), PASM_OK);
    assert_int_equal(size, 4);
    const float *bias = pasm_net_find(net, "fc.bias")->data;
    for (int i = 0; i < 3; i++) {
        double sum = 0;
        for (int p = 0; p < 16; p++) sum += maps[i * 16 + p];
        double want = logits[i * 4 + classes[i]] - bias[classes[i]];
        printf("  image %d: map sum %.6f, logit - bias %.6f\n", i, sum, want);
        assert_true(fabs(sum - want) <= 1e-4 * (1 + fabs(want)));
    }
    int32_t bad = 4;
    assert_int_equal(pasm_net_class_map(net, &bad, maps, &size), PASM_ERR_INVALID);
    /* the scorer: upsampled maps keep the low-resolution peak's cell */
    float mean = 0.5f, std = 0.25f;
    pasm_scorer s;
    assert_int_equal(pasm_scorer_net(&s, net, &mean, &std), PASM_OK);
    uint8_t img[32 * 32];
    for (int p = 0; p < 32 * 32; p++) img[p] = (uint8_t)pasm_rng_below(&r, 256);
    float probs[4], up[32 * 32];
    int32_t label = 2;
    assert_int_equal(s.cam(s.ctx, img, &label, 1, probs, up), PASM_OK);
    assert_int_equal(pasm_net_class_map(net, &label, maps, &size), PASM_OK);
    int lo = 0, hi = 0;
    for (int p = 1; p < 16; p++) lo = maps[p] > maps[lo] ? p : lo;
    for (int p = 1; p < 32 * 32; p++) hi = up[p] > up[hi] ? p : hi;
    printf("  low-res peak (%d, %d), upsampled peak (%d, %d)\n", lo / 4, lo % 4, hi / 32, hi % 32);
    assert_true(abs(hi / 32 / 8 - lo / 4) <= 1 && abs(hi % 32 / 8 - lo % 4) <= 1);
    /* bilinear, align_corners=False: the centre of low-res cell (1, 2) is
     * output pixel (1.5 * 8 - 0.5 + ...) — check one interior value exactly */
    if (maps[1 * 4 + 2] > 0 && maps[1 * 4 + 1] > 0 && maps[2 * 4 + 2] > 0 && maps[2 * 4 + 1] > 0) {
        /* output (12, 12): source (12.5 / 8 - 0.5) = 1.0625 in both axes */
        double ly = 0.0625, lx = 0.0625;
        double want = (1 - ly) * ((1 - lx) * maps[5] + lx * maps[6]) +
                      ly * ((1 - lx) * maps[9] + lx * maps[10]);
        assert_true(fabs(up[12 * 32 + 12] - want) <= 1e-5 * (1 + fabs(want)));
    }
    pasm_scorer_net_free(&s);
    pasm_net_free(net);
}

/* A scorer over a PASM_NET_EVAL network has probabilities (the same as
 * over EVAL_GRAD's) but no gradients: de runs on it, grad and iter are
 * refused with a message naming the mode to use. */
/* A scorer whose gradient is NaN everywhere (a diverged teacher): no pixel
 * is salient. grad leaves each face as it is at pixel (0, 0) (one more
 * forward, nothing changed); iter stops at once. Nothing is written outside
 * the images (the sanitizer build checks). */
static pasm_status nan_grad(void *ctx, const uint8_t *images, const int32_t *labels, int n,
                            float *probs, float *dpixels) {
    pasm_status st = toy_grad(ctx, images, labels, n, probs, dpixels);
    for (int i = 0; i < n * SIZE * SIZE; i++) dpixels[i] = NAN;
    return st;
}

static void test_nan_gradient(void **state) {
    toy t;
    toy_init(&t, 1.5f);
    pasm_scorer s = toy_scorer(&t, 64);
    s.grad = nan_grad;
    uint8_t images[3 * SIZE * SIZE], copy[sizeof images];
    int32_t labels[3];
    int64_t index[3];
    toy_images(images, labels, index, 3);
    memcpy(copy, images, sizeof images);
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    for (int kind = 0; kind < 2; kind++) {
        o.kind = kind ? PASM_ATTACK_ITER : PASM_ATTACK_GRAD;
        pasm_point pts[3];
        assert_int_equal(pasm_attack_images(&s, &o, images, labels, index, 3, pts), PASM_OK);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(pts[i].row, 0);
            assert_int_equal(pts[i].col, 0);
            assert_true(pts[i].p_true_after == pts[i].p_true_before);
            assert_int_equal(pts[i].queries, kind ? 1 : 2);
        }
    }
    assert_memory_equal(images, copy, sizeof images);
}

static void test_net_scorer_eval_mode(void **state) {
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 4,
                           .input_size = 32};
    pasm_net *eval, *grad;
    assert_int_equal(pasm_net_create_mode(&eval, &cfg, 4, PASM_NET_EVAL), PASM_OK);
    assert_int_equal(pasm_net_create_mode(&grad, &cfg, 4, PASM_NET_EVAL_GRAD), PASM_OK);
    pasm_net_init(eval, 7);
    pasm_net_init(grad, 7);
    float mean = 0.45f, std = 0.21f;
    pasm_scorer se, sg;
    assert_int_equal(pasm_scorer_net(&se, eval, &mean, &std), PASM_OK);
    assert_int_equal(pasm_scorer_net(&sg, grad, &mean, &std), PASM_OK);
    assert_null(se.grad);
    assert_non_null(sg.grad);
    static uint8_t img[2 * 32 * 32];
    for (int p = 0; p < 2 * 32 * 32; p++) img[p] = (uint8_t)(p * 7 % 251);
    float pe[2 * 4], pg[2 * 4];
    assert_int_equal(se.probs(se.ctx, img, 2, pe), PASM_OK);
    assert_int_equal(sg.probs(sg.ctx, img, 2, pg), PASM_OK);
    assert_memory_equal(pe, pg, sizeof pe);
    int32_t labels[2] = {1, 2};
    int64_t index[2] = {0, 1};
    pasm_point pts[2];
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    o.de_pop = 4;
    o.de_gens = 1;
    assert_int_equal(pasm_attack_images(&se, &o, img, labels, index, 2, pts), PASM_OK);
    o.kind = PASM_ATTACK_GRAD;
    assert_int_equal(pasm_attack_images(&se, &o, img, labels, index, 2, pts), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "PASM_NET_EVAL_GRAD"));
    assert_int_equal(pasm_attack_images(&sg, &o, img, labels, index, 2, pts), PASM_OK);
    pasm_scorer_net_free(&se);
    pasm_scorer_net_free(&sg);
    pasm_net_free(eval);
    pasm_net_free(grad);
}

/* The network scorer's one-pixel candidates on windows (pasm_net_patch),
 * which a CPU network's scorer offers through bind and changed, against
 * whole forwards (PASM_PATCH=0), on 24 faces of fer2013-mini and a width-16
 * network after 5 SGD steps (tests/fixtures): de-like calls (16 candidates
 * a face) agree to float rounding, calls of one candidate a face are whole
 * forwards, byte for byte; de (on windows), random and cam (two
 * candidates a face: whole forwards) through both scorers. */
static void test_net_scorer_windows(void **state) {
    enum { N = 24, NK = 7, FS = 48, PER = 48 * 48, M = 64 };
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    pasm_load_spec spec = {.path = test_shared_path("data/fer2013/fer2013-mini.csv"),
                           .split = "PublicTest", .input_size = FS, .channels = 1};
    if (pasm_dataset_load(&spec, &ds)) fail_msg("%s", pasm_last_error());
    assert_true(ds.n >= N);
    pasm_load_options lo = {.norm = "0.5,0.25"};
    pasm_model_meta meta;
    memset(&meta, 0, sizeof meta);
    pasm_net *net;
    if (pasm_checkpoint_load_mode("tests/fixtures/gray48_after.safetensors", &lo, M, PASM_NET_EVAL,
                                  &net, &meta))
        fail_msg("%s", pasm_last_error());
    pasm_scorer win, whole;
    /* windows, whatever the caller's PASM_PATCH, and no silent fallback */
    char *saved = test_env_set("PASM_PATCH", "require");
    assert_int_equal(pasm_scorer_net(&win, net, meta.norm_mean, meta.norm_std), PASM_OK);
    setenv("PASM_PATCH", "0", 1);
    assert_int_equal(pasm_scorer_net(&whole, net, meta.norm_mean, meta.norm_std), PASM_OK);
    test_env_restore("PASM_PATCH", saved);
    assert_non_null(win.bind);
    assert_non_null(win.changed);
    assert_null(whole.bind);
    /* 4 faces x 16 candidates, then one candidate for each of 24 faces */
    int img[M], row[M], col[M];
    uint8_t values[M];
    static uint8_t assembled[M * PER];
    float p_win[M * NK], p_whole[M * NK];
    pasm_rng r;
    pasm_rng_init(&r, 9, PASM_RNG_SYNTH, 0, 0);
    assert_int_equal(win.bind(win.ctx, ds.images, N), PASM_OK);
    for (int pass = 0; pass < 2; pass++) {
        const int m = pass ? N : M;
        for (int j = 0; j < m; j++) {
            img[j] = pass ? j : 3 + 5 * (j / 16);
            row[j] = (int)pasm_rng_below(&r, FS), col[j] = (int)pasm_rng_below(&r, FS);
            values[j] = (uint8_t)pasm_rng_below(&r, 256);
            memcpy(assembled + j * PER, ds.images + (int64_t)img[j] * PER, PER);
            assembled[j * PER + row[j] * FS + col[j]] = values[j];
        }
        assert_int_equal(win.changed(win.ctx, m, img, row, col, values, p_win), PASM_OK);
        assert_int_equal(whole.probs(whole.ctx, assembled, m, p_whole), PASM_OK);
        if (pass == 0)
            test_assert_close("16 candidates a face, windows", p_win, p_whole, M * NK, 1e-6, 1e-5);
        else
            assert_memory_equal(p_win, p_whole, sizeof(float) * N * NK);
    }
    img[0] = N; /* a face not bound */
    assert_int_equal(win.changed(win.ctx, 1, img, row, col, values, p_win), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "candidate 0 is face 24"));
    assert_int_equal(win.bind(win.ctx, NULL, 0), PASM_OK);
    assert_int_equal(win.changed(win.ctx, 1, img, row, col, values, p_win), PASM_ERR_INVALID);
    /* the attacks through both */
    int64_t index[N];
    for (int i = 0; i < N; i++) index[i] = i;
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    o.de_pop = 8, o.de_gens = 3, o.attack_batch = 40, o.seed = 3;
    pasm_point a[N], b[N];
    const pasm_attack_kind kinds[3] = {PASM_ATTACK_DE, PASM_ATTACK_RANDOM, PASM_ATTACK_CAM};
    for (int k = 0; k < 3; k++) {
        o.kind = kinds[k];
        assert_int_equal(pasm_attack_images(&win, &o, ds.images, ds.labels, index, N, a), PASM_OK);
        assert_int_equal(pasm_attack_images(&whole, &o, ds.images, ds.labels, index, N, b),
                         PASM_OK);
        int same = 0;
        double worst = 0;
        for (int i = 0; i < N; i++) {
            int eq = a[i].row == b[i].row && a[i].col == b[i].col && a[i].queries == b[i].queries;
            same += eq;
            if (eq && fabs(a[i].p_true_after - b[i].p_true_after) > worst)
                worst = fabs(a[i].p_true_after - b[i].p_true_after);
            assert_true(fabsf(a[i].p_true_before - b[i].p_true_before) == 0.0f);
        }
        printf("  %s: %d of %d points the same, max |p_after diff| %.3g there\n",
               pasm_attack_name(o.kind), same, N, worst);
        /* random's and cam's points do not depend on the candidates' scores */
        assert_true(same >= (o.kind == PASM_ATTACK_DE ? N - 2 : N));
        assert_true(worst <= 1e-5);
    }
    pasm_scorer_net_free(&win);
    pasm_scorer_net_free(&whole);
    pasm_model_meta_free(&meta);
    pasm_net_free(net);
    pasm_dataset_free(&ds);
}

/* pasm_candidates_assemble: each item its image with its one pixel set (RGB,
 * channel-major), and an item outside the images refused, naming it. */
static void test_candidates_assemble(void **state) {
    (void)state;
    enum { C = 3, S = 4, PER = C * S * S };
    uint8_t images[2 * PER], out[3 * PER];
    for (int i = 0; i < 2 * PER; i++) images[i] = (uint8_t)i;
    const int img[3] = {1, 0, 1}, row[3] = {0, 3, 2}, col[3] = {3, 0, 1};
    const uint8_t values[3 * C] = {10, 11, 12, 20, 21, 22, 30, 31, 32};
    assert_int_equal(pasm_candidates_assemble(C, S, images, 2, 3, img, row, col, values, out),
                     PASM_OK);
    for (int j = 0; j < 3; j++)
        for (int ch = 0; ch < C; ch++)
            for (int p = 0; p < S * S; p++) {
                const int at = ch * S * S + p;
                const int want = p == row[j] * S + col[j] ? values[j * C + ch]
                                                          : images[img[j] * PER + at];
                assert_int_equal(out[j * PER + at], want);
            }
    const int bad_img[3] = {1, 2, 0}, bad_row[3] = {0, 4, 0}, bad_col[3] = {-1, 0, 0};
    assert_int_equal(pasm_candidates_assemble(C, S, images, 2, 3, bad_img, row, col, values, out),
                     PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "candidate 1: pixel (3, 0) of image 2, outside 2"));
    assert_int_equal(pasm_candidates_assemble(C, S, images, 2, 3, img, bad_row, col, values, out),
                     PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "candidate 1"));
    assert_int_equal(pasm_candidates_assemble(C, S, images, 2, 3, img, row, bad_col, values, out),
                     PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "candidate 0"));
}

/* PASM_PATCH=require: a scorer that cannot have windows (a bf16 network:
 * they are fp32 code) is refused with the reason; without it the same
 * scorer runs whole forwards; PASM_PATCH=0 has none either way. */
static void test_windows_required(void **state) {
    (void)state;
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 4,
                           .input_size = 48};
    const float mean = 0.5f, std = 0.25f;
    pasm_scorer s;
    for (int bf16 = 0; bf16 < 2; bf16++) {
        cfg.precision = bf16 ? PASM_PRECISION_BF16 : PASM_PRECISION_FP32;
        pasm_net *net;
        if (pasm_net_create_mode(&net, &cfg, 8, PASM_NET_EVAL)) fail_msg("%s", pasm_last_error());
        pasm_net_init(net, 2);
        char *saved = test_env_set("PASM_PATCH", "require");
        pasm_status st = pasm_scorer_net(&s, net, &mean, &std);
        if (bf16) {
            assert_int_equal(st, PASM_ERR_INVALID);
            assert_non_null(strstr(pasm_last_error(), "PASM_PATCH=require: no candidate windows"));
            assert_non_null(strstr(pasm_last_error(), "fp32 code"));
            assert_null(s.ctx);
        } else {
            assert_int_equal(st, PASM_OK);
            assert_non_null(s.changed);
            pasm_scorer_net_free(&s);
        }
        for (int off = 0; off < 2; off++) {
            setenv("PASM_PATCH", off ? "0" : "yes", 1); /* anything else: auto */
            assert_int_equal(pasm_scorer_net(&s, net, &mean, &std), PASM_OK);
            if (off || bf16) assert_null(s.changed);
            else assert_non_null(s.changed);
            pasm_scorer_net_free(&s);
        }
        test_env_restore("PASM_PATCH", saved);
        pasm_net_free(net);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cam_and_random_points),
        cmocka_unit_test(test_windows_required),
        cmocka_unit_test(test_candidates_assemble),
        cmocka_unit_test(test_net_class_map),
        cmocka_unit_test(test_grad_finds_the_peak),
        cmocka_unit_test(test_iter_finds_the_peak_and_stops_on_the_flip),
        cmocka_unit_test(test_de_finds_the_peak),
        cmocka_unit_test(test_de_independent_of_batching),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_net_scorer_gradient),
        cmocka_unit_test(test_net_scorer_eval_mode),
        cmocka_unit_test(test_nan_gradient),
        cmocka_unit_test(test_net_scorer_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
