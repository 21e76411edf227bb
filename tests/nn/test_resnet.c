/* ResNet-18 structure (torchvision's names, order and shapes), memory
 * planning (no allocation in a training step), initialisation statistics,
 * and determinism. The input gradients are checked against PyTorch in
 * test_parity.c; the ops against finite differences in tests/ops. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static pasm_net *make_net(int width, int channels, int classes, int size, int batch) {
    pasm_net_config cfg = {.arch = "resnet18", .width = width, .in_channels = channels,
                           .num_classes = classes, .input_size = size};
    pasm_net *net = NULL;
    pasm_status st = pasm_net_create(&net, &cfg, batch);
    if (st) fail_msg("pasm_net_create: %s", pasm_last_error());
    return net;
}

static void test_state_dict_names(void **unused) {
    pasm_net *net = make_net(16, 1, 7, 48, 2);
    /* 20 convs, 20 BNs of 5 tensors, fc weight + bias */
    assert_int_equal(pasm_net_n_state(net), 20 + 100 + 2);
    assert_int_equal(pasm_net_n_params(net), 20 + 40 + 2);
    const char *first[] = {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                           "bn1.running_var", "bn1.num_batches_tracked",
                           "layer1.0.conv1.weight", "layer1.0.bn1.weight"};
    for (int i = 0; i < 8; i++) assert_string_equal(pasm_net_state(net, i)->name, first[i]);
    assert_string_equal(pasm_net_state(net, 120)->name, "fc.weight");
    assert_string_equal(pasm_net_state(net, 121)->name, "fc.bias");
    struct {
        const char *name;
        int ndim;
        int64_t shape[4];
        pasm_dtype dtype;
    } expect[] = {
        {"conv1.weight", 4, {16, 1, 3, 3}, PASM_F32},
        {"layer1.1.conv2.weight", 4, {16, 16, 3, 3}, PASM_F32},
        {"layer2.0.conv1.weight", 4, {32, 16, 3, 3}, PASM_F32},
        {"layer2.0.downsample.0.weight", 4, {32, 16, 1, 1}, PASM_F32},
        {"layer2.0.downsample.1.running_var", 1, {32}, PASM_F32},
        {"layer3.0.downsample.1.num_batches_tracked", 0, {0}, PASM_I64},
        {"layer4.1.bn2.bias", 1, {128}, PASM_F32},
        {"fc.weight", 2, {7, 128}, PASM_F32},
        {"fc.bias", 1, {7}, PASM_F32},
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        pasm_tensor *t = pasm_net_find(net, expect[i].name);
        assert_non_null(t);
        assert_int_equal(t->ndim, expect[i].ndim);
        assert_int_equal(t->dtype, expect[i].dtype);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], expect[i].shape[d]);
    }
    assert_null(pasm_net_find(net, "layer1.0.downsample.0.weight")); /* no shape change */
    assert_null(pasm_net_find(net, "maxpool"));
    pasm_net_free(net);
}

/* torchvision's resnet18 has 11,689,512 parameters; replacing the 7x7x3x64
 * stem (9,408) by a 3x3x3x64 one (1,728) gives 11,681,832. */
static void test_parameter_count_matches_torchvision(void **unused) {
    pasm_net *net = make_net(64, 3, 1000, 32, 1);
    int64_t count = 0;
    pasm_net_param_block(net, &count);
    assert_int_equal(count, 11681832);
    pasm_net_free(net);
}

static void test_bad_configs(void **unused) {
    pasm_net_config cfg = {.arch = "resnet18", .width = 24, .in_channels = 1, .num_classes = 7,
                           .input_size = 48};
    pasm_net *net = NULL;
    assert_int_equal(pasm_net_create(&net, &cfg, 4), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "width 24"));
    cfg.width = 16;
    cfg.input_size = 31;
    assert_int_equal(pasm_net_create(&net, &cfg, 4), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "input size 31"));
    cfg.input_size = 48;
    cfg.in_channels = 2;
    assert_int_equal(pasm_net_create(&net, &cfg, 4), PASM_ERR_INVALID);
    cfg.in_channels = 1;
    strcpy(cfg.arch, "vgg");
    assert_int_equal(pasm_net_create(&net, &cfg, 4), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "vgg"));
    assert_null(net);
}

static void fill_input(float *x, int64_t n, uint64_t seed) {
    pasm_rng r;
    pasm_rng_init(&r, seed, 99, 0, 0);
    for (int64_t i = 0; i < n; i++) x[i] = pasm_rng_normal(&r);
}

static void test_init_statistics(void **unused) {
    pasm_net *net = make_net(64, 1, 7, 32, 1);
    pasm_net_init(net, 3);
    pasm_tensor *w = pasm_net_find(net, "layer3.0.conv2.weight"); /* fan_out 256*9 */
    int64_t n = pasm_tensor_numel(w);
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = ((float *)w->data)[i];
        sum += v;
        sq += v * v;
    }
    double std = sqrt(sq / n - (sum / n) * (sum / n)), expected = sqrt(2.0 / (256 * 9));
    printf("  kaiming std %.5f expected %.5f\n", std, expected);
    assert_true(fabs(std - expected) < 0.02 * expected);
    assert_true(fabs(sum / n) < 0.02 * expected);
    float *fc = pasm_net_find(net, "fc.weight")->data;
    for (int i = 0; i < 7 * 512; i++) assert_true(fabsf(fc[i]) <= 1.0f / sqrtf(512.0f));
    assert_float_equal(((float *)pasm_net_find(net, "bn1.weight")->data)[5], 1.0f, 0);
    assert_float_equal(((float *)pasm_net_find(net, "bn1.running_var")->data)[5], 1.0f, 0);
    pasm_net_free(net);
}

/* Same seed: same weights, same logits, bit for bit; a training step
 * allocates nothing once warm. */
static void test_determinism_and_no_allocation(void **unused) {
    int batch = 4, size = 32;
    pasm_net *a = make_net(16, 1, 7, size, batch), *b = make_net(16, 1, 7, size, batch);
    pasm_net_init(a, 11);
    pasm_net_init(b, 11);
    int64_t count;
    float *pa = pasm_net_param_block(a, &count), *pb = pasm_net_param_block(b, NULL);
    assert_memory_equal(pa, pb, (size_t)count * sizeof(float));
    float x[4 * 32 * 32], dlogits[4 * 7];
    fill_input(x, batch * size * size, 5);
    const float *la, *lb;
    int32_t labels[4] = {0, 3, 6, 2};
    pasm_sgd sgd;
    pasm_sgd_options opt = {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 5e-4f, .nesterov = 1};
    assert_int_equal(pasm_sgd_init(&sgd, &opt, count), PASM_OK);
    for (int step = 0; step < 3; step++) {
        uint64_t allocs = pasm_alloc_count();
#ifndef __SANITIZE_ADDRESS__
        struct mallinfo2 before = mallinfo2();
#endif
        assert_int_equal(pasm_net_forward(a, x, batch, 1, &la), PASM_OK);
        pasm_cross_entropy(batch, 7, la, labels, 0, NULL, dlogits, NULL);
        assert_int_equal(pasm_net_backward(a, dlogits, NULL), PASM_OK);
        pasm_sgd_step(&sgd, pa, pasm_net_grad_block(a, NULL), opt.lr);
        assert_int_equal(pasm_alloc_count(), allocs);
#ifndef __SANITIZE_ADDRESS__
        struct mallinfo2 after = mallinfo2();
        if (step > 0) assert_int_equal(after.uordblks, before.uordblks); /* warm */
#endif
    }
    pasm_sgd_free(&sgd);
    /* b takes the same three steps: identical weights */
    assert_int_equal(pasm_sgd_init(&sgd, &opt, count), PASM_OK);
    for (int step = 0; step < 3; step++) {
        assert_int_equal(pasm_net_forward(b, x, batch, 1, &lb), PASM_OK);
        pasm_cross_entropy(batch, 7, lb, labels, 0, NULL, dlogits, NULL);
        assert_int_equal(pasm_net_backward(b, dlogits, NULL), PASM_OK);
        pasm_sgd_step(&sgd, pb, pasm_net_grad_block(b, NULL), opt.lr);
    }
    pasm_sgd_free(&sgd);
    assert_memory_equal(pa, pb, (size_t)count * sizeof(float));
    assert_int_equal(*(int64_t *)pasm_net_find(a, "bn1.num_batches_tracked")->data, 3);
    pasm_net_free(a);
    pasm_net_free(b);
}

int main(void) {
    pasm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_dict_names),
        cmocka_unit_test(test_parameter_count_matches_torchvision),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_init_statistics),
        cmocka_unit_test(test_determinism_and_no_allocation),
    };
    return cmocka_run_group_tests_name("nn/resnet", tests, NULL, NULL);
}
