/* Tests of the losses and the softmax: cross-entropy with and without
 * label smoothing and class weights, and the distillation loss, each
 * against a double reference, against values PyTorch computed, and with
 * logit gradients against central finite differences of the double
 * reference; the softmax against its definition, in place and for huge
 * logits. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "opcheck.h"
#include "pasm/ops.h"

enum { N = 5, K = 7 };

/* ---- double references ---- */

static void ref_log_softmax(const double *z, int k, double scale, double *logp) {
    double max = -INFINITY, sum = 0;
    for (int j = 0; j < k; j++) max = fmax(max, z[j] * scale);
    for (int j = 0; j < k; j++) sum += exp(z[j] * scale - max);
    for (int j = 0; j < k; j++) logp[j] = z[j] * scale - max - log(sum);
}

/* PyTorch's structure (LossNLL.cpp, cross_entropy_loss_label_smoothing):
 * (1-eps) * weighted-mean nll + eps/K * sum_i sum_k w_k (-logp_ik) / sum_i w_yi. */
static double ref_cross_entropy(int n, int k, const double *z, const int32_t *labels, double eps,
                                const double *w) {
    double nll = 0, smooth = 0, wsum = 0, logp[64];
    for (int i = 0; i < n; i++) {
        ref_log_softmax(z + i * k, k, 1.0, logp);
        double wy = w ? w[labels[i]] : 1.0;
        nll += -wy * logp[labels[i]];
        wsum += wy;
        for (int j = 0; j < k; j++) smooth += -(w ? w[j] : 1.0) * logp[j];
    }
    return (1 - eps) * nll / wsum + eps / k * smooth / wsum;
}

static double ref_distill(int n, int k, const double *s, const double *t, double temp) {
    double kl = 0, logp[64], logq[64];
    for (int i = 0; i < n; i++) {
        ref_log_softmax(t + i * k, k, 1.0 / temp, logp);
        ref_log_softmax(s + i * k, k, 1.0 / temp, logq);
        for (int j = 0; j < k; j++) kl += exp(logp[j]) * (logp[j] - logq[j]);
    }
    return temp * temp * kl / n;
}

/* ---- cross-entropy ---- */

typedef struct {
    double z[N * K], w[K], eps;
    int32_t labels[N];
    int weighted;
} ce_case;

static double ce_loss(void *ctx) {
    ce_case *c = ctx;
    return ref_cross_entropy(N, K, c->z, c->labels, c->eps, c->weighted ? c->w : NULL);
}

static void check_ce(float eps, int weighted) {
    ce_case c = {.eps = eps, .weighted = weighted};
    float z[N * K], w[K], dz[N * K], probs[N * K];
    random_fill(50, 1, N * K, -3.0f, 3.0f, z, c.z);
    random_fill(50, 2, K, 0.2f, 3.0f, w, c.w);
    const int32_t labels[N] = {3, 0, 6, 3, 1};
    memcpy(c.labels, labels, sizeof(labels));
    printf("cross_entropy n%d k%d smoothing %.2f %s\n", N, K, eps, weighted ? "weighted" : "");
    double loss = pasm_cross_entropy(N, K, z, labels, eps, weighted ? w : NULL, dz, probs);
    double want = ce_loss(&c);
    printf("  %-44s |diff| %.3e (loss %.6f)\n", "loss", fabs(loss - want), want);
    assert_true(fabs(loss - want) <= 1e-9 * fabs(want));
    double ref_p[N * K];
    for (int i = 0; i < N; i++) {
        ref_log_softmax(c.z + i * K, K, 1.0, ref_p + i * K);
        for (int j = 0; j < K; j++) ref_p[i * K + j] = exp(ref_p[i * K + j]);
    }
    assert_true(compare_forward("probs", N * K, probs, ref_p, 1e-7, 1e-6));
    assert_true(check_gradient("dlogits", c.z, N * K, dz, ce_loss, &c));
    /* NULL outputs: same loss. */
    assert_true(pasm_cross_entropy(N, K, z, labels, eps, weighted ? w : NULL, NULL, NULL) == loss);
}

static void test_ce_plain(void **state) {
    (void)state;
    check_ce(0.0f, 0);
    check_ce(0.1f, 0);
}

static void test_ce_weighted(void **state) {
    (void)state;
    check_ce(0.0f, 1);
    check_ce(0.1f, 1);
    check_ce(0.3f, 1);
}

/* Logits, labels and weights below, through PyTorch 2.x in float64:
 *   F.cross_entropy(z, y, weight=w or None, label_smoothing=eps)
 * (script: z, y, w as here; the values printed with repr). */
static const float PT_Z[4 * 5] = {0.5f, -1.25f, 2.0f,  0.0f, 0.75f, 1.5f,  1.5f, -0.5f, 0.25f, -2.0f,
                                  -0.75f, 0.0f, 0.5f, 3.0f, 1.0f,  2.5f, -1.0f, 0.0f, -0.25f, 0.5f};
static const int32_t PT_Y[4] = {2, 0, 3, 1};
static const float PT_W[5] = {1.0f, 2.0f, 0.5f, 1.5f, 3.0f};

static void test_ce_matches_pytorch(void **state) {
    (void)state;
    const struct {
        float eps;
        int weighted;
        double want;
    } cases[] = {
        {0.0f, 0, 1.3610874578914802}, {0.0f, 1, 1.8165296128238235},
        {0.1f, 0, 1.4573374578914804}, {0.1f, 1, 1.9510958461515508},
        {0.3f, 0, 1.64983745789148},   {0.3f, 1, 2.220228312807005},
    };
    double max_diff = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* eps is a float here (PyTorch got the double 0.1 / 0.3): the
         * difference moves the loss by ~1e-9, inside 1e-7 relative. */
        double got = pasm_cross_entropy(4, 5, PT_Z, PT_Y, cases[i].eps,
                                        cases[i].weighted ? PT_W : NULL, NULL, NULL);
        max_diff = fmax(max_diff, fabs(got - cases[i].want));
        assert_true(fabs(got - cases[i].want) <= 1e-7 * cases[i].want);
    }
    printf("cross_entropy vs PyTorch (6 cases): max |diff| %.3e\n", max_diff);
}

static void test_ce_bad_input(void **state) {
    (void)state;
    float z[2 * 3] = {0}, dz[2 * 3] = {7, 7, 7, 7, 7, 7};
    int32_t bad_high[2] = {0, 3}, bad_low[2] = {-1, 0}, ok[2] = {0, 1};
    assert_true(isnan(pasm_cross_entropy(2, 3, z, bad_high, 0.0f, NULL, dz, NULL)));
    assert_true(isnan(pasm_cross_entropy(2, 3, z, bad_low, 0.0f, NULL, dz, NULL)));
    assert_true(dz[0] == 7.0f); /* untouched */
    assert_true(isnan(pasm_cross_entropy(0, 3, z, ok, 0.0f, NULL, dz, NULL)));
    assert_true(isnan(pasm_cross_entropy(2, 0, z, ok, 0.0f, NULL, dz, NULL)));
    float zero_w[3] = {0, 0, 1};
    assert_true(isnan(pasm_cross_entropy(2, 3, z, ok, 0.0f, zero_w, dz, NULL)));
    /* Uniform logits: loss log K, gradient (1/K - onehot) / N. */
    double loss = pasm_cross_entropy(2, 3, z, ok, 0.0f, NULL, dz, NULL);
    assert_true(fabs(loss - log(3.0)) < 1e-12);
    assert_true(fabsf(dz[0] - (1.0f / 3 - 1) / 2) < 1e-7f && fabsf(dz[1] - 1.0f / 6) < 1e-7f);
}

/* ---- distillation ---- */

typedef struct {
    double s[N * K], t[N * K], temp;
} kd_case;

static double kd_loss(void *ctx) {
    kd_case *c = ctx;
    return ref_distill(N, K, c->s, c->t, c->temp);
}

static void test_distill_gradient(void **state) {
    (void)state;
    const float temps[] = {1.0f, 2.0f, 4.0f};
    for (int k = 0; k < 3; k++) {
        kd_case c = {.temp = temps[k]};
        float s[N * K], t[N * K], ds[N * K];
        random_fill(60, 1, N * K, -3.0f, 3.0f, s, c.s);
        random_fill(60, 2, N * K, -3.0f, 3.0f, t, c.t);
        printf("distill n%d k%d t=%g\n", N, K, temps[k]);
        double loss = pasm_distill_loss(N, K, s, t, temps[k], ds);
        double want = kd_loss(&c);
        printf("  %-44s |diff| %.3e (loss %.6f)\n", "loss", fabs(loss - want), want);
        assert_true(fabs(loss - want) <= 1e-9 * fabs(want));
        assert_true(check_gradient("dstudent", c.s, N * K, ds, kd_loss, &c));
        assert_true(pasm_distill_loss(N, K, s, t, temps[k], NULL) == loss);
    }
}

/* Same PyTorch inputs: student = PT_Z, teacher below,
 *   F.kl_div(F.log_softmax(z/T, 1), F.softmax(t/T, 1), reduction='batchmean') * T*T. */
static void test_distill_matches_pytorch(void **state) {
    (void)state;
    static const float teacher[4 * 5] = {1.0f, 0.0f,  -1.0f, 2.0f,  0.5f,  0.0f,  0.25f,
                                         0.5f, -0.5f, 1.0f,  3.0f,  -2.0f, 0.0f,  0.0f,
                                         1.0f, -1.0f, 1.0f,  2.0f,  0.5f,  0.0f};
    const float temps[3] = {1.0f, 2.0f, 4.0f};
    const double want[3] = {1.7584812905797877, 1.9710557970390477, 1.9823936011913474};
    double max_diff = 0;
    for (int k = 0; k < 3; k++) {
        double got = pasm_distill_loss(4, 5, PT_Z, teacher, temps[k], NULL);
        max_diff = fmax(max_diff, fabs(got - want[k]));
        assert_true(fabs(got - want[k]) <= 1e-12 * want[k]);
    }
    printf("distill vs PyTorch (t = 1, 2, 4): max |diff| %.3e\n", max_diff);
}

/* Equal logits: zero loss and zero gradient at every temperature; the loss
 * is t^2 times the KL at temperature t. */
static void test_distill_properties(void **state) {
    (void)state;
    float s[N * K], ds[N * K];
    random_fill(61, 1, N * K, -4.0f, 4.0f, s, NULL);
    for (float temp = 0.5f; temp <= 8.0f; temp *= 2.0f) {
        double loss = pasm_distill_loss(N, K, s, s, temp, ds);
        assert_true(fabs(loss) < 1e-12);
        for (int i = 0; i < N * K; i++) assert_true(fabsf(ds[i]) < 1e-7f);
    }
    /* Scaling: at t, loss / t^2 is the KL of the t-softened distributions,
     * i.e. the t = 1 loss of logits divided by t. */
    float t[N * K], s4[N * K], t4[N * K];
    random_fill(62, 1, N * K, -4.0f, 4.0f, t, NULL);
    for (int i = 0; i < N * K; i++) {
        s4[i] = s[i] / 4.0f; /* exact: division by a power of two */
        t4[i] = t[i] / 4.0f;
    }
    double at4 = pasm_distill_loss(N, K, s, t, 4.0f, NULL);
    double kl4 = pasm_distill_loss(N, K, s4, t4, 1.0f, NULL);
    printf("distill t^2 scaling: |loss(t=4) - 16 * KL| = %.3e\n", fabs(at4 - 16.0 * kl4));
    assert_true(fabs(at4 - 16.0 * kl4) <= 1e-12 * at4);
    assert_true(isnan(pasm_distill_loss(N, K, s, t, 0.0f, ds)));
    assert_true(isnan(pasm_distill_loss(N, K, s, t, -1.0f, NULL)));
}

/* ---- softmax ---- */

static void test_softmax(void **state) {
    (void)state;
    float x[N * K], y[N * K];
    double xd[N * K], want[N * K];
    random_fill(70, 1, N * K, -5.0f, 5.0f, x, xd);
    x[0] = 1000.0f; /* overflow-prone without the max shift */
    xd[0] = 1000.0;
    x[K] = -1000.0f;
    xd[K] = -1000.0;
    for (int i = 0; i < N; i++) {
        ref_log_softmax(xd + i * K, K, 1.0, want + i * K);
        for (int j = 0; j < K; j++) want[i * K + j] = exp(want[i * K + j]);
    }
    printf("softmax n%d k%d\n", N, K);
    pasm_softmax(N, K, x, y);
    assert_true(compare_forward("y", N * K, y, want, 1e-7, 1e-6));
    for (int i = 0; i < N; i++) {
        double sum = 0;
        for (int j = 0; j < K; j++) sum += y[i * K + j];
        assert_true(fabs(sum - 1.0) < 1e-6);
    }
    pasm_softmax(N, K, x, x); /* in place */
    assert_memory_equal(x, y, sizeof(y));
    pasm_softmax(N, 0, x, y); /* no classes: nothing to read or write */
    assert_memory_equal(x, y, sizeof(y));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ce_plain),          cmocka_unit_test(test_ce_weighted),
        cmocka_unit_test(test_ce_matches_pytorch), cmocka_unit_test(test_ce_bad_input),
        cmocka_unit_test(test_distill_gradient),  cmocka_unit_test(test_distill_matches_pytorch),
        cmocka_unit_test(test_distill_properties), cmocka_unit_test(test_softmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
