/* The network's modes (PASM_NET_TRAIN, PASM_NET_EVAL, PASM_NET_EVAL_GRAD):
 * what each plans (memory, gradients), that an evaluation network's logits
 * are a training network's evaluation logits on real faces (and those of the
 * unfused layers, run op by op here), that EVAL_GRAD's input gradient is the
 * training network's evaluation-mode one, the errors for what a mode cannot
 * do, weights written between calls, the last block's output staying
 * readable, and no allocation in warm calls. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/net_internal.h"
#include "ops/conv2d_internal.h"
#include "pasm/pasm.h"
#include "util/helpers.h"

#define AFTER5 "tests/fixtures/gray48_after.safetensors"

static pasm_net *make_net(int width, int channels, int size, int batch, pasm_net_mode mode) {
    pasm_net_config cfg = {.arch = "resnet18", .width = width, .in_channels = channels,
                           .num_classes = 7, .input_size = size};
    pasm_net *net = NULL;
    if (pasm_net_create_mode(&net, &cfg, batch, mode))
        fail_msg("pasm_net_create_mode: %s", pasm_last_error());
    return net;
}

/* The first n faces of fer2013-mini.csv's PublicTest at size x size,
 * normalised with mean 0.5, std 0.25 (the fixture's), and their labels. */
static float *load_faces(int n, int size, int channels, int32_t *labels) {
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    pasm_load_spec spec = {.path = test_shared_path("data/fer2013/fer2013-mini.csv"),
                           .split = "PublicTest", .input_size = size, .channels = channels};
    if (pasm_dataset_load(&spec, &ds)) fail_msg("%s", pasm_last_error());
    assert_true(ds.n >= n);
    float *x = malloc((size_t)n * channels * size * size * sizeof(float));
    int idx[64];
    for (int i = 0; i < n; i++) idx[i] = i;
    float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
    if (pasm_batch_make(&ds, idx, n, mean, std, x, labels)) fail_msg("%s", pasm_last_error());
    pasm_dataset_free(&ds);
    return x;
}

/* max|a - b| / max|b|, printed; fails above rel. */
static double check_rel(const char *what, const float *a, const float *b, int64_t n, double rel) {
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > diff || isnan(d)) diff = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    double r = diff / (scale > 0 ? scale : 1);
    printf("  %-44s max|diff| %.3g  max|ref| %.3g  relative %.3g%s\n", what, diff, scale, r,
           memcmp(a, b, (size_t)n * sizeof(float)) ? "" : " (bit-identical)");
    if (!(r <= rel)) fail_msg("%s: relative difference %.3g exceeds %.3g", what, r, rel);
    return r;
}

/* ---- the unfused evaluation forward, op by op, from the state_dict ---- */

static const float *param(pasm_net *net, const char *fmt, const char *prefix) {
    char name[128];
    snprintf(name, sizeof name, fmt, prefix);
    pasm_tensor *t = pasm_net_find(net, name);
    if (!t) fail_msg("no tensor %s", name);
    return t->data;
}

/* y = BN_eval(conv(x)) (then ReLU when relu), malloc'd; its size in *size_out. */
static float *ref_conv_bn(pasm_net *net, const char *conv, const char *bn, const float *x, int n,
                          int c_in, int size, int c_out, int k, int stride, int relu,
                          int *size_out) {
    pasm_conv2d_shape s = {.n = n, .c_in = c_in, .h_in = size, .w_in = size, .c_out = c_out,
                           .kernel = k, .stride = stride, .pad = k / 2};
    assert_int_equal(pasm_conv2d_shape_init(&s), PASM_OK);
    int64_t count = (int64_t)n * c_out * s.h_out * s.w_out;
    float *y = malloc((size_t)count * sizeof(float)), *z = malloc((size_t)count * sizeof(float));
    void *ws = malloc(pasm_conv2d_workspace_size(&s) + 64);
    pasm_conv2d_forward(&s, x, param(net, "%s", conv), NULL, y, ws);
    pasm_bn_shape b = {.n = n, .c = c_out, .h = s.h_out, .w = s.w_out, .eps = 1e-5f};
    pasm_batchnorm_forward_eval(&b, y, param(net, "%s.weight", bn), param(net, "%s.bias", bn),
                                param(net, "%s.running_mean", bn),
                                param(net, "%s.running_var", bn), z);
    if (relu) pasm_relu_forward(count, z, z);
    free(y);
    free(ws);
    *size_out = s.h_out;
    return z;
}

static void ref_forward(pasm_net *net, const float *x, int n, float *logits) {
    const pasm_net_config *cfg = pasm_net_get_config(net);
    int size, w = cfg->width, c_in = w;
    float *h = ref_conv_bn(net, "conv1.weight", "bn1", x, n, cfg->in_channels, cfg->input_size, w,
                           3, 1, 1, &size);
    for (int stage = 0; stage < 4; stage++)
        for (int i = 0; i < 2; i++) {
            int c_out = w << stage, stride = (i == 0 && stage > 0) ? 2 : 1, out_size;
            char p[32], a[64], b[64];
            snprintf(p, sizeof p, "layer%d.%d", stage + 1, i);
            snprintf(a, sizeof a, "%s.conv1.weight", p), snprintf(b, sizeof b, "%s.bn1", p);
            float *t = ref_conv_bn(net, a, b, h, n, c_in, size, c_out, 3, stride, 1, &out_size);
            snprintf(a, sizeof a, "%s.conv2.weight", p), snprintf(b, sizeof b, "%s.bn2", p);
            float *o = ref_conv_bn(net, a, b, t, n, c_out, out_size, c_out, 3, 1, 0, &out_size);
            int64_t count = (int64_t)n * c_out * out_size * out_size;
            if (stride != 1 || c_in != c_out) {
                snprintf(a, sizeof a, "%s.downsample.0.weight", p);
                snprintf(b, sizeof b, "%s.downsample.1", p);
                float *sc =
                    ref_conv_bn(net, a, b, h, n, c_in, size, c_out, 1, stride, 0, &out_size);
                pasm_add_inplace(count, o, sc);
                free(sc);
            } else {
                pasm_add_inplace(count, o, h);
            }
            pasm_relu_forward(count, o, o);
            free(t);
            free(h);
            h = o;
            c_in = c_out;
            size = out_size;
        }
    float *pooled = malloc((size_t)n * c_in * sizeof(float));
    pasm_avgpool_forward(n, c_in, size, size, h, pooled);
    pasm_linear_forward(n, c_in, cfg->num_classes, pooled, param(net, "fc.weight", ""),
                        param(net, "fc.bias", ""), logits);
    free(pooled);
    free(h);
}

/* ---- tests ---- */

/* Bytes of the workspace for stride-2 convolutions on phase planes
 * (conv2d_s2.c) the evaluation modes may plan beyond their old share: one
 * chunk of images of at most 4 MiB (or one image, when larger: not at these
 * sizes), when the CPU runs them. */
static double s2_planes_bytes(void) {
    pasm_conv2d_shape s = {.n = 32, .c_in = 16, .h_in = 48, .w_in = 48, .c_out = 32,
                           .kernel = 3, .stride = 2, .pad = 1};
    return pasm_conv2d_shape_init(&s) == PASM_OK && pasm_conv2d_s2_forward_ok(&s)
               ? 4.0 * 1048576.0
               : 0.0;
}

/* Planned bytes of the three modes: printed, and their ratios to TRAIN's
 * checked against what they were when the modes were written (2 threads,
 * 48x48, 1 channel, 7 classes; width 16 batch 32: EVAL 0.158, EVAL_GRAD
 * 0.186; width 64 batch 128: 0.155 and 0.171; width 64 batch 1024, the
 * attacks' default, 0.140 and 0.152), with a little room, beside the
 * stride-2 planes' chunk (s2_planes_bytes; with it, width 16 batch 32:
 * 0.185 and 0.196). */
static void check_ratios(int width, int batch, double eval_max, double grad_max) {
    pasm_net_config cfg = {.arch = "resnet18", .width = width, .in_channels = 1,
                           .num_classes = 7, .input_size = 48};
    size_t b[3];
    for (int m = 0; m < 3; m++)
        assert_int_equal(pasm_net_planned_bytes(&cfg, batch, (pasm_net_mode)m, &b[m]), PASM_OK);
    double e = (double)b[1] / b[0], g = (double)b[2] / b[0];
    printf("  w%d b%d: train %.1f MiB, eval %.1f MiB (%.3f), eval-grad %.1f MiB (%.3f)\n", width,
           batch, b[0] / 1048576.0, b[1] / 1048576.0, e, b[2] / 1048576.0, g);
    const double planes = s2_planes_bytes();
    assert_true(b[1] <= eval_max * b[0] + planes);
    assert_true(b[2] <= grad_max * b[0] + planes);
    assert_true(b[1] < b[2]);
}

/* Whether the width-16 network's 48x48 convolutions take the direct
 * kernel (an AVX-512 CPU, PASM_CONV_DIRECT not 0); without it an evaluation
 * plans an im2col workspace too (w16 b32: EVAL 0.175 of TRAIN). */
static int direct_conv(void) {
    pasm_conv2d_shape s = {.n = 32, .c_in = 16, .h_in = 48, .w_in = 48, .c_out = 16,
                           .kernel = 3, .stride = 1, .pad = 1};
    return pasm_conv2d_shape_init(&s) == PASM_OK && pasm_conv2d_direct_ok(&s);
}

static void test_memory_plan(void **unused) {
    check_ratios(16, 32, direct_conv() ? 0.165 : 0.18, 0.19);
    check_ratios(64, 128, 0.16, 0.175);
    check_ratios(64, 1024, 0.145, 0.155);
    /* what is planned is what is built */
    pasm_net *train = make_net(16, 1, 48, 32, PASM_NET_TRAIN);
    pasm_net *eval = make_net(16, 1, 48, 32, PASM_NET_EVAL);
    pasm_net *grad = make_net(16, 1, 48, 32, PASM_NET_EVAL_GRAD);
    pasm_net *nets[3] = {train, eval, grad};
    for (int m = 0; m < 3; m++) {
        size_t planned;
        pasm_net_planned_bytes(pasm_net_get_config(nets[m]), 32, (pasm_net_mode)m, &planned);
        assert_int_equal(planned, pasm_net_memory_bytes(nets[m]));
    }
    size_t unused_bytes;
    pasm_net_config cfg = *pasm_net_get_config(eval);
    assert_int_equal(pasm_net_planned_bytes(&cfg, 0, PASM_NET_EVAL, &unused_bytes),
                     PASM_ERR_INVALID);
    assert_int_equal(pasm_net_get_mode(eval), PASM_NET_EVAL);
    assert_string_equal(pasm_net_mode_name(PASM_NET_EVAL_GRAD), "eval-grad");
    /* the full state_dict in every mode, gradients only in training */
    int64_t count;
    assert_non_null(pasm_net_param_block(eval, &count));
    assert_int_equal(pasm_net_n_state(eval), pasm_net_n_state(train));
    assert_null(pasm_net_grad_block(eval, NULL));
    assert_null(pasm_net_grad_block(grad, NULL));
    assert_null(pasm_net_grad(grad, 0)->data);
    assert_string_equal(pasm_net_grad(grad, 0)->name, "conv1.weight");
    assert_non_null(pasm_net_grad_block(train, NULL));
    pasm_net_free(train);
    pasm_net_free(eval);
    pasm_net_free(grad);
}

/* PyTorch's weights after 5 SGD steps (running statistics moved), 16 real
 * faces: EVAL logits == TRAIN's evaluation logits == the unfused layers';
 * EVAL_GRAD's input gradient == TRAIN's evaluation-mode one; the last
 * block's output is the same and survives EVAL_GRAD's backward. A smaller
 * batch than planned works too. */
static void test_modes_agree_on_faces(void **unused) {
    enum { N = 16, K = 7, PIX = 48 * 48 };
    pasm_net *net[3];
    pasm_model_meta meta;
    pasm_load_options lo = {.norm = "0.5,0.25"};
    for (int m = 0; m < 3; m++) {
        memset(&meta, 0, sizeof meta);
        if (pasm_checkpoint_load_mode(AFTER5, &lo, N, (pasm_net_mode)m, &net[m], &meta))
            fail_msg("%s", pasm_last_error());
        assert_int_equal(pasm_net_get_mode(net[m]), m);
        pasm_model_meta_free(&meta);
    }
    int32_t labels[N];
    float *x = load_faces(N, 48, 1, labels);
    float ref[N * K], logits[3][N * K], dlogits[N * K];
    float *dx_train = malloc(N * PIX * sizeof(float)), *dx_grad = malloc(N * PIX * sizeof(float));
    ref_forward(net[0], x, N, ref);
    for (int m = 0; m < 3; m++) {
        const float *l;
        assert_int_equal(pasm_net_forward(net[m], x, N, 0, &l), PASM_OK);
        memcpy(logits[m], l, sizeof logits[m]);
    }
    check_rel("train eval logits vs unfused ops", logits[0], ref, N * K, 1e-5);
    check_rel("EVAL logits vs train eval logits", logits[1], logits[0], N * K, 1e-5);
    check_rel("EVAL_GRAD logits vs train eval logits", logits[2], logits[0], N * K, 1e-5);
    /* the average pool's input, readable after the forward */
    const block *last[3] = {&net[0]->blocks[7], &net[1]->blocks[7], &net[2]->blocks[7]};
    int64_t final_count = (int64_t)N * last[0]->c_out * last[0]->size_out * last[0]->size_out;
    check_rel("EVAL last block output vs train", last[1]->bn2.out, last[0]->bn2.out, final_count,
              1e-5);
    pasm_cross_entropy(N, K, logits[0], labels, 0, NULL, dlogits, NULL);
    assert_int_equal(pasm_net_backward(net[0], dlogits, dx_train), PASM_OK);
    assert_int_equal(pasm_net_backward(net[2], dlogits, dx_grad), PASM_OK);
    check_rel("EVAL_GRAD input gradient vs train eval", dx_grad, dx_train, N * PIX, 1e-5);
    check_rel("EVAL_GRAD last block output after backward", last[2]->bn2.out, last[0]->bn2.out,
              final_count, 1e-5);
    /* 5 of the 16: a partial batch in the same plan */
    const float *l;
    assert_int_equal(pasm_net_forward(net[1], x, 5, 0, &l), PASM_OK);
    check_rel("EVAL logits, batch 5 of 16", l, logits[0], 5 * K, 1e-5);
    assert_int_equal(pasm_net_forward(net[2], x, 5, 0, &l), PASM_OK);
    assert_int_equal(pasm_net_backward(net[2], dlogits, dx_grad), PASM_OK);
    assert_int_equal(pasm_net_forward(net[0], x, 5, 0, &l), PASM_OK);
    assert_int_equal(pasm_net_backward(net[0], dlogits, dx_train), PASM_OK);
    check_rel("EVAL_GRAD input gradient, batch 5 of 16", dx_grad, dx_train, 5 * PIX, 1e-5);
    free(x);
    free(dx_train);
    free(dx_grad);
    for (int m = 0; m < 3; m++) pasm_net_free(net[m]);
}

/* An odd size (33: the downsampling blocks' two outputs outgrow the stem's)
 * with 3 channels, width 32, random weights and statistics copied from a
 * training network: every mode against the unfused ops. */
static void test_modes_odd_size(void **unused) {
    enum { N = 3, S = 33, K = 7 };
    pasm_net *train = make_net(32, 3, S, N, PASM_NET_TRAIN);
    pasm_net *eval = make_net(32, 3, S, N, PASM_NET_EVAL);
    pasm_net *grad = make_net(32, 3, S, N, PASM_NET_EVAL_GRAD);
    test_randomise_net(train, 5, 1);
    assert_int_equal(pasm_net_copy_state(eval, train), PASM_OK);
    assert_int_equal(pasm_net_copy_state(grad, eval), PASM_OK);
    int32_t labels[N];
    float *x = load_faces(N, S, 3, labels);
    float ref[N * K], want[N * K], dlogits[N * K];
    float *dx_train = malloc(N * 3 * S * S * sizeof(float)),
          *dx_grad = malloc(N * 3 * S * S * sizeof(float));
    ref_forward(train, x, N, ref);
    const float *l;
    assert_int_equal(pasm_net_forward(train, x, N, 0, &l), PASM_OK);
    memcpy(want, l, sizeof want);
    check_rel("33x33 RGB: train eval logits vs unfused ops", want, ref, N * K, 1e-5);
    assert_int_equal(pasm_net_forward(eval, x, N, 0, &l), PASM_OK);
    check_rel("33x33 RGB: EVAL logits vs train eval", l, want, N * K, 1e-5);
    assert_int_equal(pasm_net_forward(grad, x, N, 0, &l), PASM_OK);
    check_rel("33x33 RGB: EVAL_GRAD logits vs train eval", l, want, N * K, 1e-5);
    pasm_cross_entropy(N, K, want, labels, 0, NULL, dlogits, NULL);
    assert_int_equal(pasm_net_backward(train, dlogits, dx_train), PASM_OK);
    assert_int_equal(pasm_net_backward(grad, dlogits, dx_grad), PASM_OK);
    check_rel("33x33 RGB: EVAL_GRAD dx vs train eval dx", dx_grad, dx_train, N * 3 * S * S, 1e-5);
    free(x);
    free(dx_train);
    free(dx_grad);
    pasm_net_free(train);
    pasm_net_free(eval);
    pasm_net_free(grad);
}

/* Weights and statistics written between forwards (through the pointers
 * pasm_net_find hands out, as a caller may) are used by the next one: the
 * folding is redone at every call. */
static void test_writes_between_forwards(void **unused) {
    enum { N = 2, S = 32, K = 7 };
    pasm_net *train = make_net(16, 1, S, N, PASM_NET_TRAIN);
    pasm_net *eval = make_net(16, 1, S, N, PASM_NET_EVAL);
    test_randomise_net(train, 9, 1);
    assert_int_equal(pasm_net_copy_state(eval, train), PASM_OK);
    int32_t labels[N];
    float *x = load_faces(N, S, 1, labels);
    float before[N * K];
    const float *l, *lt;
    assert_int_equal(pasm_net_forward(eval, x, N, 0, &l), PASM_OK);
    memcpy(before, l, sizeof before);
    const char *names[] = {"layer2.0.bn1.running_var", "layer3.1.bn2.weight", "bn1.running_mean",
                           "layer4.0.conv2.weight"};
    for (int i = 0; i < 4; i++) {
        pasm_tensor *te = pasm_net_find(eval, names[i]), *tt = pasm_net_find(train, names[i]);
        float *de = te->data, *dt = tt->data;
        for (int64_t j = 0; j < pasm_tensor_numel(te); j++) de[j] = dt[j] = dt[j] * 1.5f + 0.01f;
    }
    assert_int_equal(pasm_net_forward(eval, x, N, 0, &l), PASM_OK);
    assert_int_equal(pasm_net_forward(train, x, N, 0, &lt), PASM_OK);
    assert_true(test_max_abs_diff(l, before, N * K) > 1e-3); /* the writes changed the logits */
    check_rel("EVAL logits after weight writes vs train", l, lt, N * K, 1e-5);
    free(x);
    pasm_net_free(train);
    pasm_net_free(eval);
}

static void test_mode_errors(void **unused) {
    enum { N = 2, S = 32 };
    pasm_net *eval = make_net(16, 1, S, N, PASM_NET_EVAL);
    pasm_net *grad = make_net(16, 1, S, N, PASM_NET_EVAL_GRAD);
    pasm_net_init(eval, 1);
    pasm_net_init(grad, 1);
    float x[N * S * S] = {0}, dlogits[N * 7] = {0}, dx[N * S * S];
    const float *l;
    assert_int_equal(pasm_net_backward(grad, dlogits, dx), PASM_ERR_INVALID); /* no forward */
    assert_int_equal(pasm_net_forward(eval, x, N, 1, &l), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "PASM_NET_TRAIN"));
    assert_int_equal(pasm_net_forward(grad, x, N, 1, &l), PASM_ERR_INVALID);
    assert_int_equal(pasm_net_forward(eval, x, N, 0, &l), PASM_OK);
    assert_int_equal(pasm_net_backward(eval, dlogits, dx), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "PASM_NET_EVAL_GRAD"));
    assert_int_equal(pasm_net_forward(grad, x, N, 0, &l), PASM_OK);
    assert_int_equal(pasm_net_backward(grad, dlogits, dx), PASM_OK);
    assert_int_equal(pasm_net_backward(grad, dlogits, NULL), PASM_OK); /* nothing asked */
    pasm_net_config cfg = *pasm_net_get_config(eval);
    pasm_net *bad = NULL;
    assert_int_equal(pasm_net_create_mode(&bad, &cfg, N, (pasm_net_mode)7), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "mode 7"));
    assert_null(bad);
    pasm_net_free(eval);
    pasm_net_free(grad);
}

/* Warm evaluation forwards (EVAL) and forward + backward (EVAL_GRAD)
 * allocate nothing. */
static void test_no_allocation(void **unused) {
    enum { N = 4, S = 32 };
    pasm_net *eval = make_net(16, 1, S, N, PASM_NET_EVAL);
    pasm_net *grad = make_net(16, 1, S, N, PASM_NET_EVAL_GRAD);
    test_randomise_net(eval, 3, 1);
    assert_int_equal(pasm_net_copy_state(grad, eval), PASM_OK);
    int32_t labels[N];
    float *x = load_faces(N, S, 1, labels);
    float dlogits[N * 7], dx[N * S * S];
    for (int step = 0; step < 3; step++) {
        uint64_t allocs = pasm_alloc_count();
#ifndef __SANITIZE_ADDRESS__
        struct mallinfo2 before = mallinfo2();
#endif
        const float *l;
        assert_int_equal(pasm_net_forward(eval, x, N, 0, &l), PASM_OK);
        assert_int_equal(pasm_net_forward(grad, x, N, 0, &l), PASM_OK);
        pasm_cross_entropy(N, 7, l, labels, 0, NULL, dlogits, NULL);
        assert_int_equal(pasm_net_backward(grad, dlogits, dx), PASM_OK);
        assert_int_equal(pasm_alloc_count(), allocs);
#ifndef __SANITIZE_ADDRESS__
        struct mallinfo2 after = mallinfo2();
        if (step > 0) assert_int_equal(after.uordblks, before.uordblks); /* warm */
#endif
    }
    free(x);
    pasm_net_free(eval);
    pasm_net_free(grad);
}

int main(void) {
    pasm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_plan),
        cmocka_unit_test(test_modes_agree_on_faces),
        cmocka_unit_test(test_modes_odd_size),
        cmocka_unit_test(test_writes_between_forwards),
        cmocka_unit_test(test_mode_errors),
        cmocka_unit_test(test_no_allocation),
    };
    return cmocka_run_group_tests_name("nn/modes", tests, NULL, NULL);
}
