/* Tests of global average pooling: forward against a double reference,
 * backward against central finite differences of L = sum(r * pool(x)),
 * including 1x1 maps and a size large enough to run in parallel. */
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
    int n, c, h, w;
    double *xd, *yd, *rd;
} pool_case;

static void ref_pool(const pool_case *p) {
    const int hw = p->h * p->w;
    for (int m = 0; m < p->n * p->c; m++) {
        double s = 0;
        for (int j = 0; j < hw; j++) s += p->xd[(int64_t)m * hw + j];
        p->yd[m] = s / hw;
    }
}

static double pool_loss(void *ctx) {
    pool_case *p = ctx;
    ref_pool(p);
    return weighted_sum((int64_t)p->n * p->c, p->rd, p->yd);
}

static void check_pool(int n, int c, int h, int w, int fd) {
    pool_case p = {.n = n, .c = c, .h = h, .w = w};
    const int64_t nx = (int64_t)n * c * h * w, ny = (int64_t)n * c;
    float *x = zeroed(nx, sizeof(float)), *dx = zeroed(nx, sizeof(float));
    float *y = zeroed(ny, sizeof(float)), *r = zeroed(ny, sizeof(float));
    p.xd = zeroed(nx, sizeof(double));
    p.yd = zeroed(ny, sizeof(double));
    p.rd = zeroed(ny, sizeof(double));
    random_fill(3, 1, nx, -2.0f, 2.0f, x, p.xd);
    random_fill(3, 2, ny, -1.0f, 1.0f, r, p.rd);
    printf("avgpool n%d c%d %dx%d\n", n, c, h, w);
    pasm_avgpool_forward(n, c, h, w, x, y);
    ref_pool(&p);
    assert_true(compare_forward("y", ny, y, p.yd, FWD_ATOL, FWD_RTOL));
    for (int64_t i = 0; i < nx; i++) dx[i] = NAN;
    pasm_avgpool_backward(n, c, h, w, r, dx);
    if (fd) assert_true(check_gradient("dx", p.xd, nx, dx, pool_loss, &p));
    /* Exact rule: every pixel of map m gets r[m] / (h*w). */
    for (int64_t i = 0; i < nx; i++) assert_true(dx[i] == r[i / (h * w)] * (float)(1.0 / (h * w)));
    free(x);
    free(dx);
    free(y);
    free(r);
    free(p.xd);
    free(p.yd);
    free(p.rd);
}

static void test_avgpool(void **state) {
    (void)state;
    check_pool(2, 3, 4, 5, 1);
    check_pool(3, 2, 1, 1, 1);
    check_pool(4, 64, 12, 12, 0); /* parallel path; exact rule only */
}

int main(void) {
    pasm_set_threads(2);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_avgpool)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
