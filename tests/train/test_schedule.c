/* Schedules against values printed by torch.optim.lr_scheduler.OneCycleLR
 * (max_lr 0.1, total_steps 100, PyTorch 2.15), cosine with warm-up worked out
 * by hand, and the metrics. */
#include <math.h>
#include <string.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static void test_onecycle_matches_pytorch(void **unused) {
    static const double ref[][3] = {
        {0, 4.000000000e-03, 9.500000000e-01},  {1, 4.281378057e-03, 9.497068979e-01},
        {10, 2.951639485e-02, 9.234204220e-01}, {29, 1.000000000e-01, 8.500000000e-01},
        {30, 9.994965353e-02, 8.500503467e-01}, {31, 9.979871550e-02, 8.502012853e-01},
        {50, 7.938934506e-02, 8.706107374e-01}, {98, 5.074647155e-05, 9.499496533e-01},
        {99, 4.000000000e-07, 9.500000000e-01},
    };
    pasm_schedule s;
    pasm_schedule_init(&s, PASM_SCHEDULE_ONECYCLE, 0.1f, 100, 0);
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        int64_t step = (int64_t)ref[i][0];
        double lr = pasm_schedule_lr(&s, step), mom = pasm_schedule_momentum(&s, step, 0.9f);
        assert_true(fabs(lr - ref[i][1]) <= 1e-6 * ref[i][1] + 1e-9);
        assert_true(fabs(mom - ref[i][2]) <= 1e-6);
    }
}

static void test_cosine_warmup(void **unused) {
    pasm_schedule s;
    pasm_schedule_init(&s, PASM_SCHEDULE_COSINE, 0.1f, 110, 10);
    assert_true(fabsf(pasm_schedule_lr(&s, 0) - 0.01f) < 1e-7f);
    assert_true(fabsf(pasm_schedule_lr(&s, 9) - 0.1f) < 1e-7f);
    assert_true(fabsf(pasm_schedule_lr(&s, 10) - 0.1f) < 1e-7f);
    assert_true(fabsf(pasm_schedule_lr(&s, 60) - 0.05f) < 1e-6f);
    assert_true(pasm_schedule_lr(&s, 110) < 1e-7f);
    assert_true(fabsf(pasm_schedule_momentum(&s, 3, 0.9f) - 0.9f) < 1e-7f);
}

static void test_parse(void **unused) {
    pasm_schedule_kind k;
    assert_int_equal(pasm_schedule_parse("OneCycle", &k), PASM_OK);
    assert_int_equal(k, PASM_SCHEDULE_ONECYCLE);
    assert_int_equal(pasm_schedule_parse("step", &k), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "'step'"));
}

static void test_metrics(void **unused) {
    pasm_metrics m;
    assert_int_equal(pasm_metrics_init(&m, 3), PASM_OK);
    int pairs[][2] = {{0, 0}, {0, 1}, {1, 1}, {1, 1}, {1, 0}, {0, 0}};
    for (int i = 0; i < 6; i++) pasm_metrics_add(&m, pairs[i][0], pairs[i][1]);
    assert_true(fabs(pasm_metrics_accuracy(&m) - 4.0 / 6) < 1e-12);
    assert_true(fabs(pasm_metrics_class_accuracy(&m, 0) - 2.0 / 3) < 1e-12);
    assert_true(isnan(pasm_metrics_class_accuracy(&m, 2)));
    assert_true(fabs(pasm_metrics_mean_class_accuracy(&m) - 2.0 / 3) < 1e-12);
    assert_int_equal(m.confusion[0 * 3 + 1], 1);
    assert_int_equal(m.confusion[1 * 3 + 0], 1);
    pasm_metrics_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_onecycle_matches_pytorch),
        cmocka_unit_test(test_cosine_warmup),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests_name("train/schedule", tests, NULL, NULL);
}
