/* Tests of the CPU batch normalisation: training forward against a double
 * reference (batch mean, biased variance), the running-statistics update
 * (momentum, unbiased variance, PyTorch's rule), saved mean/invstd,
 * gradients of x, gamma and beta through the batch statistics against
 * central finite differences, the evaluation forward and its input
 * gradient, NULL gradients / no affine parameters, and determinism. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "opcheck.h"
#include "pasm/ops.h"

typedef struct {
    pasm_bn_shape s;
    int64_t count; /* n*c*h*w */
    int train;     /* reference in training mode (batch stats) or eval */
    float *x, *gamma, *beta, *rmean, *rvar, *y, *r, *dx, *dgamma, *dbeta, *smean, *sinv;
    double *xd, *gd, *bd, *rmd, *rvd, *yd, *rd;
} bn_case;

/* Double reference forward; in training mode also the batch mean and
 * biased variance per channel (mean_out/var_out may be NULL). */
static void ref_bn(const bn_case *b, double *y, double *mean_out, double *var_out) {
    const pasm_bn_shape *s = &b->s;
    const int hw = s->h * s->w;
    const double m = (double)s->n * hw;
    for (int c = 0; c < s->c; c++) {
        double mean = 0, var = 0;
        if (b->train) {
            for (int i = 0; i < s->n; i++)
                for (int j = 0; j < hw; j++) mean += b->xd[(i * s->c + c) * hw + j];
            mean /= m;
            for (int i = 0; i < s->n; i++)
                for (int j = 0; j < hw; j++) {
                    double d = b->xd[(i * s->c + c) * hw + j] - mean;
                    var += d * d;
                }
            var /= m;
        } else {
            mean = b->rmd[c];
            var = b->rvd[c];
        }
        if (mean_out) mean_out[c] = mean;
        if (var_out) var_out[c] = var;
        double invstd = 1.0 / sqrt(var + (double)s->eps);
        for (int i = 0; i < s->n; i++)
            for (int j = 0; j < hw; j++) {
                int64_t k = (int64_t)(i * s->c + c) * hw + j;
                y[k] = b->gd[c] * (b->xd[k] - mean) * invstd + b->bd[c];
            }
    }
}

static double bn_loss(void *ctx) {
    bn_case *b = ctx;
    ref_bn(b, b->yd, NULL, NULL);
    return weighted_sum(b->count, b->rd, b->yd);
}

static void bn_init(bn_case *b, int n, int c, int h, int w, float x_lo, float x_hi, uint64_t seed) {
    memset(b, 0, sizeof(*b));
    b->s = (pasm_bn_shape){.n = n, .c = c, .h = h, .w = w, .eps = 1e-5f, .momentum = 0.1f};
    b->count = (int64_t)n * c * h * w;
    float **f64[] = {&b->x, &b->y, &b->r, &b->dx};
    for (size_t i = 0; i < 4; i++) *f64[i] = zeroed(b->count, sizeof(float));
    float **fc[] = {&b->gamma, &b->beta, &b->rmean, &b->rvar, &b->dgamma, &b->dbeta, &b->smean, &b->sinv};
    for (size_t i = 0; i < 8; i++) *fc[i] = zeroed(c, sizeof(float));
    b->xd = zeroed(b->count, sizeof(double));
    b->yd = zeroed(b->count, sizeof(double));
    b->rd = zeroed(b->count, sizeof(double));
    double **dc[] = {&b->gd, &b->bd, &b->rmd, &b->rvd};
    for (size_t i = 0; i < 4; i++) *dc[i] = zeroed(c, sizeof(double));
    random_fill(seed, 1, b->count, x_lo, x_hi, b->x, b->xd);
    random_fill(seed, 2, c, 0.5f, 1.5f, b->gamma, b->gd);
    random_fill(seed, 3, c, -0.5f, 0.5f, b->beta, b->bd);
    random_fill(seed, 4, c, -0.2f, 0.2f, b->rmean, b->rmd);
    random_fill(seed, 5, c, 0.5f, 2.0f, b->rvar, b->rvd);
    random_fill(seed, 6, b->count, -1.0f, 1.0f, b->r, b->rd);
}

static void bn_free(bn_case *b) {
    float *f[] = {b->x, b->y, b->r, b->dx, b->gamma, b->beta, b->rmean, b->rvar,
                  b->dgamma, b->dbeta, b->smean, b->sinv};
    double *d[] = {b->xd, b->yd, b->rd, b->gd, b->bd, b->rmd, b->rvd};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) free(f[i]);
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) free(d[i]);
}

/* Training forward, running-stat update, saved statistics, gradients. */
static void check_train(int n, int c, int h, int w, float x_lo, float x_hi, uint64_t seed) {
    bn_case b;
    bn_init(&b, n, c, h, w, x_lo, x_hi, seed);
    b.train = 1;
    printf("bn train n%d c%d %dx%d x in [%g, %g)\n", n, c, h, w, x_lo, x_hi);
    double *mean = zeroed(c, sizeof(double)), *var = zeroed(c, sizeof(double));
    double *want_rm = zeroed(c, sizeof(double)), *want_rv = zeroed(c, sizeof(double));
    double *want_inv = zeroed(c, sizeof(double));
    ref_bn(&b, b.yd, mean, var);
    const double m = (double)n * h * w, mom = b.s.momentum;
    for (int k = 0; k < c; k++) {
        want_rm[k] = (1 - mom) * b.rmd[k] + mom * mean[k];
        want_rv[k] = (1 - mom) * b.rvd[k] + mom * var[k] * m / (m - 1);
        want_inv[k] = 1.0 / sqrt(var[k] + (double)b.s.eps);
    }
    pasm_batchnorm_forward_train(&b.s, b.x, b.gamma, b.beta, b.rmean, b.rvar, b.y, b.smean, b.sinv);
    assert_true(compare_forward("y", b.count, b.y, b.yd, FWD_ATOL, FWD_RTOL));
    assert_true(compare_forward("running_mean", c, b.rmean, want_rm, 1e-6, 1e-6));
    assert_true(compare_forward("running_var (unbiased)", c, b.rvar, want_rv, 1e-6, 1e-6));
    assert_true(compare_forward("save_mean", c, b.smean, mean, 1e-6, 1e-6));
    assert_true(compare_forward("save_invstd", c, b.sinv, want_inv, 1e-6, 1e-6));
    for (int64_t i = 0; i < b.count; i++) b.dx[i] = NAN;
    pasm_batchnorm_backward(&b.s, b.x, b.gamma, b.smean, b.sinv, b.r, b.dx, b.dgamma, b.dbeta);
    assert_true(check_gradient("dx", b.xd, b.count, b.dx, bn_loss, &b));
    assert_true(check_gradient("dgamma", b.gd, c, b.dgamma, bn_loss, &b));
    assert_true(check_gradient("dbeta", b.bd, c, b.dbeta, bn_loss, &b));
    free(mean);
    free(var);
    free(want_rm);
    free(want_rv);
    free(want_inv);
    bn_free(&b);
}

static void test_bn_train(void **state) {
    (void)state;
    check_train(3, 4, 3, 5, -1.0f, 1.0f, 11);
    check_train(2, 3, 4, 4, 2.0f, 4.0f, 12); /* mean far from 0 */
    check_train(1, 2, 1, 7, -2.0f, 1.0f, 13);
    check_train(5, 2, 1, 1, -1.0f, 1.0f, 14); /* 1x1 maps (after pooling-like shapes) */
}

static void test_bn_eval(void **state) {
    (void)state;
    bn_case b;
    bn_init(&b, 3, 4, 3, 4, -1.0f, 2.0f, 21);
    b.train = 0;
    printf("bn eval n3 c4 3x4\n");
    float *rm0 = zeroed(4, sizeof(float)), *rv0 = zeroed(4, sizeof(float));
    memcpy(rm0, b.rmean, 4 * sizeof(float));
    memcpy(rv0, b.rvar, 4 * sizeof(float));
    bn_loss(&b);
    pasm_batchnorm_forward_eval(&b.s, b.x, b.gamma, b.beta, b.rmean, b.rvar, b.y);
    assert_true(compare_forward("y", b.count, b.y, b.yd, FWD_ATOL, FWD_RTOL));
    /* Evaluation leaves the running statistics alone. */
    assert_memory_equal(rm0, b.rmean, 4 * sizeof(float));
    assert_memory_equal(rv0, b.rvar, 4 * sizeof(float));
    /* The folded affine map (what the fused convolution epilogue applies)
     * gives the evaluation forward's values exactly. */
    float scale[4], shift[4];
    pasm_batchnorm_fold(&b.s, b.gamma, b.beta, b.rmean, b.rvar, scale, shift);
    const int64_t hw = 3 * 4;
    for (int64_t i = 0; i < b.count; i++) {
        int c = (int)(i / hw % 4);
        assert_true(b.x[i] * scale[c] + shift[c] == b.y[i]);
    }
    for (int64_t i = 0; i < b.count; i++) b.dx[i] = NAN;
    pasm_batchnorm_backward_eval(&b.s, b.gamma, b.rvar, b.r, b.dx);
    assert_true(check_gradient("dx (running stats constant)", b.xd, b.count, b.dx, bn_loss, &b));
    free(rm0);
    free(rv0);
    bn_free(&b);
}

/* NULL gamma/beta mean no affine transform; NULL gradients are skipped
 * and the others unchanged. */
static void test_bn_null_pointers(void **state) {
    (void)state;
    bn_case b;
    bn_init(&b, 2, 3, 2, 3, -1.0f, 1.0f, 31);
    b.train = 1;
    for (int c = 0; c < 3; c++) {
        b.gamma[c] = 1.0f;
        b.gd[c] = 1.0;
        b.beta[c] = 0.0f;
        b.bd[c] = 0.0;
    }
    float *y2 = zeroed(b.count, sizeof(float)), *dx2 = zeroed(b.count, sizeof(float));
    float *dg2 = zeroed(3, sizeof(float));
    pasm_batchnorm_forward_train(&b.s, b.x, b.gamma, b.beta, b.rmean, b.rvar, b.y, b.smean, b.sinv);
    pasm_batchnorm_forward_train(&b.s, b.x, NULL, NULL, NULL, NULL, y2, NULL, NULL);
    assert_memory_equal(y2, b.y, b.count * sizeof(float));
    pasm_batchnorm_backward(&b.s, b.x, b.gamma, b.smean, b.sinv, b.r, b.dx, b.dgamma, b.dbeta);
    pasm_batchnorm_backward(&b.s, b.x, NULL, b.smean, b.sinv, b.r, dx2, NULL, NULL);
    assert_memory_equal(dx2, b.dx, b.count * sizeof(float));
    pasm_batchnorm_backward(&b.s, b.x, b.gamma, b.smean, b.sinv, b.r, NULL, dg2, NULL);
    assert_memory_equal(dg2, b.dgamma, 3 * sizeof(float));
    pasm_batchnorm_backward_eval(&b.s, b.gamma, b.rvar, b.r, NULL); /* no crash */
    free(y2);
    free(dx2);
    free(dg2);
    bn_free(&b);
}

static void test_bn_deterministic(void **state) {
    (void)state;
    bn_case b;
    bn_init(&b, 4, 8, 6, 6, -1.0f, 1.0f, 41);
    float *dx2 = zeroed(b.count, sizeof(float)), *dg2 = zeroed(8, sizeof(float));
    pasm_batchnorm_forward_train(&b.s, b.x, b.gamma, b.beta, b.rmean, b.rvar, b.y, b.smean, b.sinv);
    pasm_batchnorm_backward(&b.s, b.x, b.gamma, b.smean, b.sinv, b.r, b.dx, b.dgamma, b.dbeta);
    pasm_batchnorm_backward(&b.s, b.x, b.gamma, b.smean, b.sinv, b.r, dx2, dg2, NULL);
    assert_memory_equal(dx2, b.dx, b.count * sizeof(float));
    assert_memory_equal(dg2, b.dgamma, 8 * sizeof(float));
    free(dx2);
    free(dg2);
    bn_free(&b);
}

/* The training forward with the residual sum and ReLU fused into its output
 * pass equals batch norm, pasm_add_inplace and pasm_relu_forward run one
 * after the other, bit for bit (outputs, running and saved statistics),
 * for every combination; NaNs in the input map to 0 under ReLU as there. */
static void test_bn_train_fused(void **state) {
    (void)state;
    const pasm_bn_shape s = {.n = 3, .c = 5, .h = 7, .w = 6, .eps = 1e-5f, .momentum = 0.1f};
    const int64_t count = (int64_t)s.n * s.c * s.h * s.w;
    float *x = zeroed(count, sizeof(float)), *res = zeroed(count, sizeof(float));
    float *want = zeroed(count, sizeof(float)), *got = zeroed(count, sizeof(float));
    float gamma[5], beta[5];
    random_fill(21, 1, count, -2.0f, 3.0f, x, NULL);
    random_fill(21, 2, count, -1.0f, 1.0f, res, NULL);
    random_fill(21, 3, 5, 0.5f, 1.5f, gamma, NULL);
    random_fill(21, 4, 5, -0.5f, 0.5f, beta, NULL);
    res[7] = NAN; /* a NaN residual: ReLU gives 0, the plain sum NaN */
    for (int mode = 0; mode < 4; mode++) {
        const int with_res = mode & 1, relu = mode >> 1;
        float rm1[5] = {0}, rv1[5] = {1, 1, 1, 1, 1}, sm1[5], si1[5];
        float rm2[5] = {0}, rv2[5] = {1, 1, 1, 1, 1}, sm2[5], si2[5];
        pasm_batchnorm_forward_train(&s, x, gamma, beta, rm1, rv1, want, sm1, si1);
        if (with_res) pasm_add_inplace(count, want, res);
        if (relu) pasm_relu_forward(count, want, want);
        for (int64_t i = 0; i < count; i++) got[i] = -7.0f;
        pasm_batchnorm_forward_train_fused(&s, x, gamma, beta, rm2, rv2, with_res ? res : NULL,
                                           relu, got, sm2, si2);
        assert_memory_equal(got, want, (size_t)count * sizeof(float));
        assert_memory_equal(rm1, rm2, sizeof rm1);
        assert_memory_equal(rv1, rv2, sizeof rv1);
        assert_memory_equal(sm1, sm2, sizeof sm1);
        assert_memory_equal(si1, si2, sizeof si1);
        printf("  fused%s%s: bit-identical to the separate ops\n", with_res ? " + residual" : "",
               relu ? " + relu" : "");
    }
    free(x), free(res), free(want), free(got);
}

int main(void) {
    pasm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_train),
        cmocka_unit_test(test_bn_eval),
        cmocka_unit_test(test_bn_null_pointers),
        cmocka_unit_test(test_bn_deterministic),
        cmocka_unit_test(test_bn_train_fused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
