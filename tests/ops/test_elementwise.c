/* Tests of the elementwise ops: ReLU forward against the definition and
 * its backward against central finite differences (inputs kept away from
 * the kink at 0), in place and on arrays large enough to run in parallel;
 * the same backward from a bit mask of y; addition, out of place and in
 * place. */
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
    int64_t n;
    double *xd, *yd, *rd;
} relu_case;

static double relu_loss(void *ctx) {
    relu_case *c = ctx;
    for (int64_t i = 0; i < c->n; i++) c->yd[i] = c->xd[i] > 0 ? c->xd[i] : 0.0;
    return weighted_sum(c->n, c->rd, c->yd);
}

/* Values in [-1, 1) pushed at least 0.01 away from 0, so +-FD_STEP never
 * crosses the kink. */
static void fill_away_from_zero(int64_t n, float *f, double *d, uint64_t seed) {
    random_fill(seed, 1, n, -1.0f, 1.0f, f, d);
    for (int64_t i = 0; i < n; i++)
        if (fabs(d[i]) < 0.01) d[i] = f[i] = f[i] < 0 ? -0.5f : 0.5f;
}

static void check_relu(int64_t n) {
    relu_case c = {.n = n};
    float *x = zeroed(n, sizeof(float)), *y = zeroed(n, sizeof(float));
    float *r = zeroed(n, sizeof(float)), *dx = zeroed(n, sizeof(float));
    c.xd = zeroed(n, sizeof(double));
    c.yd = zeroed(n, sizeof(double));
    c.rd = zeroed(n, sizeof(double));
    fill_away_from_zero(n, x, c.xd, 5 + n);
    random_fill(6 + n, 2, n, -1.0f, 1.0f, r, c.rd);
    printf("relu n=%lld\n", (long long)n);
    pasm_relu_forward(n, x, y);
    relu_loss(&c);
    assert_true(compare_forward("y", n, y, c.yd, 0.0, 0.0)); /* exact */
    for (int64_t i = 0; i < n; i++) dx[i] = NAN;
    pasm_relu_backward(n, y, r, dx);
    if (n <= 4096) assert_true(check_gradient("dx", c.xd, n, dx, relu_loss, &c));
    /* Exact rule: dx = dy where y > 0, else 0; also in place (dx == dy). */
    for (int64_t i = 0; i < n; i++) assert_true(dx[i] == (c.xd[i] > 0 ? r[i] : 0.0f));
    pasm_relu_backward(n, y, r, r);
    assert_memory_equal(r, dx, n * sizeof(float));
    pasm_relu_forward(n, x, x); /* in place */
    assert_memory_equal(x, y, n * sizeof(float));
    pasm_relu_backward(n, y, r, NULL); /* NULL dx is allowed */
    free(x);
    free(y);
    free(r);
    free(dx);
    free(c.xd);
    free(c.yd);
    free(c.rd);
}

static void test_relu(void **state) {
    (void)state;
    check_relu(37);
    check_relu(100003); /* parallel path */
}

/* The bit-mask ReLU backward gives what the one from y gives, exactly,
 * for lengths that end inside a word, on a word and in parallel. */
static void test_relu_mask(void **state) {
    (void)state;
    const int64_t sizes[] = {1, 37, 64, 129, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k], words = (n + 63) / 64;
        float *y = zeroed(n, sizeof(float)), *dy = zeroed(n, sizeof(float));
        float *want = zeroed(n, sizeof(float)), *got = zeroed(n, sizeof(float));
        uint64_t *mask = zeroed(words, sizeof(uint64_t));
        random_fill(11 + n, 1, n, -1.0f, 1.0f, y, NULL);
        random_fill(11 + n, 2, n, -1.0f, 1.0f, dy, NULL);
        pasm_relu_forward(n, y, y);
        if (n > 1) y[1] = -0.0f; /* not > 0 */
        pasm_relu_mask(n, y, mask);
        if (n % 64) assert_true((mask[words - 1] >> (n % 64)) == 0); /* no stray bits */
        pasm_relu_backward(n, y, dy, want);
        pasm_relu_backward_mask(n, mask, dy, got);
        assert_memory_equal(got, want, n * sizeof(float));
        pasm_relu_backward_mask(n, mask, dy, dy); /* in place */
        assert_memory_equal(dy, want, n * sizeof(float));
        free(y);
        free(dy);
        free(want);
        free(got);
        free(mask);
    }
    printf("relu mask: backward from bits == backward from y (n = 1 .. 100003), in place too\n");
}

static void test_add(void **state) {
    (void)state;
    const int64_t sizes[] = {1, 19, 70001};
    for (size_t k = 0; k < 3; k++) {
        int64_t n = sizes[k];
        float *a = zeroed(n, sizeof(float)), *b = zeroed(n, sizeof(float));
        float *y = zeroed(n, sizeof(float));
        random_fill(7, 1, n, -3.0f, 3.0f, a, NULL);
        random_fill(7, 2, n, -3.0f, 3.0f, b, NULL);
        pasm_add_forward(n, a, b, y);
        for (int64_t i = 0; i < n; i++) assert_true(y[i] == a[i] + b[i]);
        pasm_add_inplace(n, a, b);
        assert_memory_equal(a, y, n * sizeof(float));
        pasm_add_forward(n, y, y, y); /* y may alias both inputs */
        for (int64_t i = 0; i < n; i++) assert_true(y[i] == 2.0f * a[i]);
        free(a);
        free(b);
        free(y);
    }
    printf("add: y == a + b exactly (n = 1, 19, 70001), in place too\n");
}

int main(void) {
    pasm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_relu_mask),
        cmocka_unit_test(test_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
