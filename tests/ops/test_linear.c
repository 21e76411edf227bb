/* Tests of the fully connected layer: forward against a double reference,
 * gradients of x, weight and bias against central finite differences of
 * L = sum(r * linear(x)), NULL gradients and overwrite semantics. */
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
    int n, in, out, has_bias;
    double *xd, *wd, *bd, *yd, *rd;
} lin_case;

static double lin_loss(void *ctx) {
    lin_case *c = ctx;
    for (int i = 0; i < c->n; i++)
        for (int o = 0; o < c->out; o++) {
            double s = c->has_bias ? c->bd[o] : 0.0;
            for (int k = 0; k < c->in; k++) s += c->xd[i * c->in + k] * c->wd[o * c->in + k];
            c->yd[i * c->out + o] = s;
        }
    return weighted_sum((int64_t)c->n * c->out, c->rd, c->yd);
}

static void check_linear(int n, int in, int out, int has_bias) {
    lin_case c = {.n = n, .in = in, .out = out, .has_bias = has_bias};
    const int64_t nx = (int64_t)n * in, nw = (int64_t)out * in, ny = (int64_t)n * out;
    float *x = zeroed(nx, sizeof(float)), *w = zeroed(nw, sizeof(float));
    float *b = zeroed(out, sizeof(float)), *y = zeroed(ny, sizeof(float));
    float *r = zeroed(ny, sizeof(float)), *dx = zeroed(nx, sizeof(float));
    float *dw = zeroed(nw, sizeof(float)), *db = zeroed(out, sizeof(float));
    c.xd = zeroed(nx, sizeof(double));
    c.wd = zeroed(nw, sizeof(double));
    c.bd = zeroed(out, sizeof(double));
    c.yd = zeroed(ny, sizeof(double));
    c.rd = zeroed(ny, sizeof(double));
    random_fill(9, 1, nx, -1.0f, 1.0f, x, c.xd);
    random_fill(9, 2, nw, -0.5f, 0.5f, w, c.wd);
    random_fill(9, 3, out, -0.5f, 0.5f, b, c.bd);
    random_fill(9, 4, ny, -1.0f, 1.0f, r, c.rd);
    printf("linear n%d %d->%d%s\n", n, in, out, has_bias ? " bias" : "");
    pasm_linear_forward(n, in, out, x, w, has_bias ? b : NULL, y);
    lin_loss(&c);
    assert_true(compare_forward("y", ny, y, c.yd, FWD_ATOL, FWD_RTOL));
    for (int64_t i = 0; i < nx; i++) dx[i] = NAN;
    for (int64_t i = 0; i < nw; i++) dw[i] = NAN;
    for (int i = 0; i < out; i++) db[i] = NAN;
    pasm_linear_backward(n, in, out, x, w, r, dx, dw, db);
    assert_true(check_gradient("dx", c.xd, nx, dx, lin_loss, &c));
    assert_true(check_gradient("dweight", c.wd, nw, dw, lin_loss, &c));
    if (has_bias) assert_true(check_gradient("dbias", c.bd, out, db, lin_loss, &c));
    /* NULL gradients leave the others as they were. */
    float *dw2 = zeroed(nw, sizeof(float));
    pasm_linear_backward(n, in, out, x, w, r, NULL, dw2, NULL);
    assert_memory_equal(dw2, dw, nw * sizeof(float));
    free(dw2);
    float *p[] = {x, w, b, y, r, dx, dw, db};
    for (size_t i = 0; i < 8; i++) free(p[i]);
    double *d[] = {c.xd, c.wd, c.bd, c.yd, c.rd};
    for (size_t i = 0; i < 5; i++) free(d[i]);
}

static void test_linear(void **state) {
    (void)state;
    check_linear(4, 6, 3, 1);
    check_linear(1, 5, 7, 0);
    check_linear(9, 32, 7, 1); /* the classifier head's shape, small */
}

int main(void) {
    pasm_set_threads(2);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_linear)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
