/* SGD against values worked out by hand from torch.optim.SGD's update rule. */
#include <math.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static void run_two_steps(const pasm_sgd_options *opt, float *p) {
    pasm_sgd sgd;
    float g[1] = {0.5f};
    assert_int_equal(pasm_sgd_init(&sgd, opt, 1), PASM_OK);
    pasm_sgd_step(&sgd, p, g, opt->lr);
    pasm_sgd_step(&sgd, p, g, opt->lr);
    pasm_sgd_free(&sgd);
}

static void test_nesterov_weight_decay(void **unused) {
    /* step 1: d = 0.5 + 0.1*1 = 0.6, buf = 0.6, d = 0.6 + 0.9*0.6 = 1.14, p = 0.886
     * step 2: d = 0.5 + 0.0886 = 0.5886, buf = 0.54 + 0.5886 = 1.1286,
     *         d = 0.5886 + 1.01574 = 1.60434, p = 0.886 - 0.160434 = 0.725566 */
    pasm_sgd_options opt = {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f, .nesterov = 1};
    float p[1] = {1.0f};
    run_two_steps(&opt, p);
    assert_true(fabsf(p[0] - 0.725566f) < 1e-6f);
}

static void test_classic_momentum_dampening(void **unused) {
    /* step 1: d = 0.5, buf = 0.5 (no dampening on the first step), p = 1 - 0.05 = 0.95
     * step 2: buf = 0.9*0.5 + 0.5*0.5 = 0.7, p = 0.95 - 0.07 = 0.88 */
    pasm_sgd_options opt = {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.5f};
    float p[1] = {1.0f};
    run_two_steps(&opt, p);
    assert_true(fabsf(p[0] - 0.88f) < 1e-6f);
}

static void test_plain(void **unused) {
    pasm_sgd_options opt = {.lr = 0.1f};
    float p[1] = {1.0f};
    run_two_steps(&opt, p);
    assert_true(fabsf(p[0] - 0.9f) < 1e-6f);
}

static void test_nesterov_needs_momentum(void **unused) {
    pasm_sgd sgd;
    pasm_sgd_options opt = {.lr = 0.1f, .nesterov = 1};
    assert_int_equal(pasm_sgd_init(&sgd, &opt, 1), PASM_ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nesterov_weight_decay),
        cmocka_unit_test(test_classic_momentum_dampening),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_nesterov_needs_momentum),
    };
    return cmocka_run_group_tests_name("train/sgd", tests, NULL, NULL);
}
