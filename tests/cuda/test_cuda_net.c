/* The ResNet on the GPU against the same ResNet on the CPU: the same
 * weights (one seeded init, copied), the same batch; evaluation logits, a
 * training step (logits, loss, every parameter gradient, the running
 * statistics), three SGD steps through pasm_sgd_step_net, the frozen
 * network's input gradient (what the attacks use), the state read back
 * through the accessors after device-side training, and a resumed
 * optimiser. fp32 (cuDNN without TF32) within summation-order error; bf16
 * within bf16's precision. Without a GPU the same comparisons run on the
 * backend's host emulation (test_cuda_device), which checks everything but
 * the device code itself: exactly, since the emulated convolutions are the
 * CPU's. Builds without the CUDA backend check the refusal instead. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pasm/pasm.h"
#include "util/helpers.h"
#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_backend.h"
#include "cuda/cuda_net.h"
#endif

static void expect(const char *what, const float *gpu, const float *cpu, int64_t n, double limit) {
    double e = test_rel_diff(gpu, cpu, n);
    printf("  %-44s max|diff|/max|cpu| %.3g (limit %.2g)\n", what, e, limit);
    if (!(e <= limit)) fail_msg("%s: the GPU differs from the CPU by %.3g (limit %.3g)", what, e, limit);
}

/* fp32 parameters after one SGD step from the same weights: the two sides
 * differ by what the difference of their momenta (the gradients, which may
 * differ where a ReLU went the other way) explains, lr (1 + momentum) |dm|
 * for Nesterov's first step (lr |dm| without), and by rounding beyond that. */
static void expect_step(const float *wg, const float *wc, const float *mg, const float *mc,
                        int64_t n, const pasm_sgd_options *o) {
    assert_non_null(mg); /* momentum > 0: the buffers exist */
    assert_non_null(mc);
    const double f = o->lr * (o->nesterov ? 1.0 + o->momentum : 1.0) * (1 + 1e-3);
    double scale = 0, excess = 0, plain = 0;
    for (int64_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(wc[i]));
        const double d = fabs((double)wg[i] - wc[i]);
        plain = fmax(plain, d);
        excess = fmax(excess, d - f * fabs((double)mg[i] - mc[i]));
    }
    scale = scale > 0 ? scale : 1;
    printf("  %-44s max|diff|/max|cpu| %.3g; beyond the momenta's difference %.3g (limit 1e-05)\n",
           "parameters after one step", plain / scale, excess / scale);
    if (!(excess <= 1e-5 * scale))
        fail_msg("parameters after one step: the GPU differs from the CPU by %.3g beyond what the "
                 "momenta's difference explains (limit 1e-05)",
                 excess / scale);
}

/* The class maps of the last forward of gpu and cpu, compared. */
static void expect_class_maps(const char *what, const pasm_net *gpu, const pasm_net *cpu,
                              const int32_t *labels, int n, int fp32) {
    const int ms = pasm_net_class_map_size(gpu);
    float *mg = malloc((size_t)n * ms * ms * 4), *mc = malloc((size_t)n * ms * ms * 4);
    assert_int_equal(pasm_net_class_map(gpu, labels, mg, NULL), PASM_OK);
    assert_int_equal(pasm_net_class_map(cpu, labels, mc, NULL), PASM_OK);
    expect(what, mg, mc, (int64_t)n * ms * ms, fp32 ? 1e-4 : 0.1);
    free(mg);
    free(mc);
}

static void compare(int precision, int width) {
    const int n = 8, size = 48, k = 7;
    pasm_net_config cfg = {.arch = "resnet18", .width = width, .in_channels = 1,
                           .num_classes = k, .input_size = size, .precision = precision};
    pasm_net *cpu = NULL, *gpu = NULL, *cpu_eval = NULL, *gpu_eval = NULL;
    assert_int_equal(pasm_net_create(&cpu, &cfg, n), PASM_OK);
    pasm_net_init(cpu, 7);
    cfg.device = PASM_DEVICE_CUDA;
    if (pasm_net_create(&gpu, &cfg, n)) fail_msg("%s", pasm_last_error());
    assert_int_equal(pasm_net_copy_state(gpu, cpu), PASM_OK);
    const int fp32 = precision == PASM_PRECISION_FP32;
    /* a real GPU sums in orders of its own, so a ReLU may flip; the host
     * emulation's convolutions are the CPU's */
    const int flips = test_cuda_device() == 1;
    /* fp32 cosines: test_gradient_close's where a ReLU may flip */
    const double cos_lim = flips ? 0.9998 : 0.9999;
    const double lim = fp32 ? 2e-4 : 5e-2, glim = fp32 ? 1e-3 : 0.1;
    printf(" %s width %d, batch %d\n", fp32 ? "fp32" : "bf16", width, n);

    const int64_t in_count = (int64_t)n * size * size;
    float *x = malloc(in_count * 4), *dx_cpu = malloc(in_count * 4), *dx_gpu = malloc(in_count * 4);
    pasm_rng rng;
    pasm_rng_init(&rng, 3, 77, 0, 0);
    for (int64_t i = 0; i < in_count; i++) x[i] = pasm_rng_normal(&rng);
    int32_t labels[8] = {0, 1, 2, 3, 4, 5, 6, 3};
    float lc[56], lg[56], dl_cpu[56], dl_gpu[56];
    const float *l;

    assert_int_equal(pasm_net_forward(cpu, x, n, 0, &l), PASM_OK);
    memcpy(lc, l, sizeof lc);
    if (pasm_net_forward(gpu, x, n, 0, &l)) fail_msg("%s", pasm_last_error());
    memcpy(lg, l, sizeof lg);
    expect("evaluation logits", lg, lc, n * k, lim);

    /* a training step: forward, loss, backward */
    assert_int_equal(pasm_net_forward(cpu, x, n, 1, &l), PASM_OK);
    memcpy(lc, l, sizeof lc);
    double loss_c = pasm_cross_entropy(n, k, lc, labels, 0, NULL, dl_cpu, NULL);
    if (pasm_net_forward(gpu, x, n, 1, &l)) fail_msg("%s", pasm_last_error());
    memcpy(lg, l, sizeof lg);
    double loss_g = pasm_cross_entropy(n, k, lg, labels, 0, NULL, dl_gpu, NULL);
    expect("training logits", lg, lc, n * k, lim);
    printf("  loss cpu %.6f gpu %.6f\n", loss_c, loss_g);
    assert_true(fabs(loss_c - loss_g) <= lim * fmax(1, fabs(loss_c)));
    assert_int_equal(pasm_net_backward(cpu, dl_cpu, dx_cpu), PASM_OK);
    if (pasm_net_backward(gpu, dl_gpu, dx_gpu)) fail_msg("%s", pasm_last_error());
    /* the input gradient's figures, then every parameter gradient's, before
     * either fails: where the two part tells which layer went wrong. fp32:
     * summation order alone, where a ReLU may go the other way at width 64
     * (test_gradient_close); bf16: as the bf16 parity case allows against
     * PyTorch (an untrained network's gradients are cancelling sums) */
    int dx_ok = 1, grads_ok = 1;
    if (fp32) dx_ok = test_gradient_close("input gradient (training)", dx_gpu, dx_cpu, in_count, glim, flips);
    printf("  cosine of the training input gradients %.5f\n", test_cosine(dx_gpu, dx_cpu, in_count));
    double worst = 0, worst_cos = 1;
    const char *worst_name = "";
    for (int i = 0; i < pasm_net_n_params(cpu); i++) {
        pasm_tensor *gc = pasm_net_grad(cpu, i), *gg = pasm_net_grad(gpu, i);
        assert_string_equal(gc->name, gg->name);
        int64_t cnt = pasm_tensor_numel(gc);
        double e = test_rel_diff(gg->data, gc->data, cnt), c = test_cosine(gg->data, gc->data, cnt);
        if (fp32 && e > glim && !test_gradient_close(gc->name, gg->data, gc->data, cnt, glim, flips))
            grads_ok = 0;
        if (e > worst) worst = e, worst_name = gc->name;
        if (c < worst_cos) worst_cos = c;
    }
    int64_t np;
    const float *all_c = pasm_net_grad_block(cpu, &np), *all_g = pasm_net_grad_block(gpu, NULL);
    double all_cos = test_cosine(all_g, all_c, np);
    printf("  %-44s worst max|diff|/max|cpu| %.3g (%s), worst cosine %.5f, cosine of all "
           "%.5f\n",
           "parameter gradients", worst, worst_name, worst_cos, all_cos);
    if (!dx_ok) fail_msg("input gradient (training): the GPU differs from the CPU");
    assert_true(test_cosine(dx_gpu, dx_cpu, in_count) > (fp32 ? cos_lim : 0.9));
    if (fp32 && !grads_ok) fail_msg("parameter gradients: the GPU differs from the CPU");
    if (!fp32) assert_true(all_cos >= 0.95 && worst_cos >= 0.7);
    for (int i = 0; i < pasm_net_n_state(cpu); i++) {
        pasm_tensor *a = pasm_net_state(cpu, i), *b = pasm_net_state(gpu, i);
        if (a->dtype == PASM_I64) {
            assert_int_equal(*(int64_t *)a->data, *(int64_t *)b->data);
            continue;
        }
        if (!strstr(a->name, "running_")) continue;
        double e = test_rel_diff(b->data, a->data, pasm_tensor_numel(a));
        if (e > (fp32 ? 1e-4 : 2e-2)) fail_msg("%s differs by %.3g", a->name, e);
    }
    printf("  running statistics and counters agree\n");
    /* the training network after its backward: the last block's output is
     * still the forward's (class maps read it); the other activations are
     * gone (the GPU's plan gave their place to gradients), so a second
     * backward is refused, not computed from them */
    expect_class_maps("class maps after a training step", gpu, cpu, labels, n, fp32);
    assert_int_equal(pasm_net_backward(gpu, dl_gpu, NULL), PASM_ERR_INVALID);
    printf("  %s\n", pasm_last_error());
    assert_non_null(strstr(pasm_last_error(), "second backward"));

    /* SGD. One step from the same gradients: the update itself, tightly
     * (parameters and the momentum brought back for a checkpoint). Then two
     * more steps each side: the two trajectories drift apart (summation
     * order, then ReLUs that flip), so the losses are held loosely. */
    int64_t count;
    pasm_net_param_block(cpu, &count);
    pasm_sgd_options o = {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 5e-4f, .nesterov = 1};
    pasm_sgd sc, sg;
    assert_int_equal(pasm_sgd_init(&sc, &o, count), PASM_OK);
    assert_int_equal(pasm_sgd_init(&sg, &o, count), PASM_OK);
    float losses_c[3], losses_g[3];
    for (int step = 0; step < 3; step++) {
        assert_int_equal(pasm_sgd_step_net(&sc, cpu, o.lr), PASM_OK);
        if (pasm_sgd_step_net(&sg, gpu, o.lr)) fail_msg("%s", pasm_last_error());
        if (step == 0) {
            assert_int_equal(pasm_sgd_sync(&sg, gpu), PASM_OK);
            /* = the gradients + wd * weights */
            if (fp32 && !test_gradient_close("momentum after one step (synced to the host)",
                                             sg.momentum_buffer, sc.momentum_buffer, count, glim, flips))
                fail_msg("momentum after one step: the GPU differs from the CPU");
            printf("  cosine of the momenta %.5f\n", test_cosine(sg.momentum_buffer, sc.momentum_buffer, count));
            assert_true(test_cosine(sg.momentum_buffer, sc.momentum_buffer, count) > (fp32 ? (flips ? 0.9998 : 0.99999) : 0.95));
            if (fp32) expect_step(pasm_net_param_block(gpu, NULL), pasm_net_param_block(cpu, NULL),
                                  sg.momentum_buffer, sc.momentum_buffer, count, &o);
            else expect("parameters after one step", pasm_net_param_block(gpu, NULL),
                        pasm_net_param_block(cpu, NULL), count, 1e-2);
        }
        assert_int_equal(pasm_net_forward(cpu, x, n, 1, &l), PASM_OK);
        losses_c[step] = (float)pasm_cross_entropy(n, k, l, labels, 0, NULL, dl_cpu, NULL);
        assert_int_equal(pasm_net_forward(gpu, x, n, 1, &l), PASM_OK);
        losses_g[step] = (float)pasm_cross_entropy(n, k, l, labels, 0, NULL, dl_gpu, NULL);
        assert_int_equal(pasm_net_backward(cpu, dl_cpu, NULL), PASM_OK);
        assert_int_equal(pasm_net_backward(gpu, dl_gpu, NULL), PASM_OK);
    }
    printf("  losses after SGD steps: cpu %.5f %.5f %.5f  gpu %.5f %.5f %.5f\n", losses_c[0],
           losses_c[1], losses_c[2], losses_g[0], losses_g[1], losses_g[2]);
    /* fp32 at width 64: on the CPU alone, weights moved by a unit or two in the
     * last place move the losses after these steps by up to 0.43% and the
     * parameters by up to 0.36% (ReLUs that flip); width 16 stays within
     * 2e-6, and holds the trajectory tightly, as does the emulation */
    const double tlim = fp32 ? (width > 16 && flips ? 2e-2 : 2e-3) : 5e-2;
    expect("losses after 1..3 SGD steps", losses_g, losses_c, 3, tlim);
    /* weights as the accessors see them after device training */
    expect("parameters after 3 steps", pasm_net_param_block(gpu, NULL),
           pasm_net_param_block(cpu, NULL), count, tlim);

    /* the frozen network's input gradient in an EVAL_GRAD network */
    cfg.device = PASM_DEVICE_CPU;
    assert_int_equal(pasm_net_create_mode(&cpu_eval, &cfg, n, PASM_NET_EVAL_GRAD), PASM_OK);
    cfg.device = PASM_DEVICE_CUDA;
    if (pasm_net_create_mode(&gpu_eval, &cfg, n, PASM_NET_EVAL_GRAD)) fail_msg("%s", pasm_last_error());
    /* both from the GPU's trained weights: the two copies of training
     * drifted apart a little, and input gradients magnify that */
    assert_int_equal(pasm_net_copy_state(cpu_eval, gpu), PASM_OK);
    assert_int_equal(pasm_net_copy_state(gpu_eval, gpu), PASM_OK);
    assert_int_equal(pasm_net_forward(cpu_eval, x, n, 0, &l), PASM_OK);
    memcpy(lc, l, sizeof lc);
    pasm_cross_entropy(n, k, lc, labels, 0, NULL, dl_cpu, NULL);
    assert_int_equal(pasm_net_forward(gpu_eval, x, n, 0, &l), PASM_OK);
    memcpy(lg, l, sizeof lg);
    pasm_cross_entropy(n, k, lg, labels, 0, NULL, dl_gpu, NULL);
    expect("evaluation logits after training", lg, lc, n * k, fp32 ? 2e-4 : 5e-2);
    assert_int_equal(pasm_net_backward(cpu_eval, dl_cpu, dx_cpu), PASM_OK);
    assert_int_equal(pasm_net_backward(gpu_eval, dl_gpu, dx_gpu), PASM_OK);
    if (fp32 && !test_gradient_close("frozen network's input gradient", dx_gpu, dx_cpu, in_count, 1e-3,
                                    flips))
        fail_msg("frozen network's input gradient: the GPU differs from the CPU");
    printf("  cosine of the frozen input gradients %.5f\n", test_cosine(dx_gpu, dx_cpu, in_count));
    assert_true(test_cosine(dx_gpu, dx_cpu, in_count) > (fp32 ? cos_lim : 0.9));
    /* an evaluation-only network (its layers share buffers) gives the same */
    pasm_net *gpu_plain = NULL;
    if (pasm_net_create_mode(&gpu_plain, &cfg, n, PASM_NET_EVAL)) fail_msg("%s", pasm_last_error());
    assert_int_equal(pasm_net_copy_state(gpu_plain, gpu), PASM_OK);
    assert_int_equal(pasm_net_forward(gpu_plain, x, n, 0, &l), PASM_OK);
    expect("PASM_NET_EVAL network's logits", l, lg, n * k, 1e-5);
    assert_int_equal(pasm_net_backward(gpu_plain, dl_gpu, dx_gpu), PASM_ERR_INVALID);
    expect_class_maps("class maps (Grad-CAM)", gpu_plain, cpu_eval, labels, n, fp32);
    pasm_net_free(gpu_plain);
    /* a smaller batch through the same networks */
    assert_int_equal(pasm_net_forward(gpu_eval, x, 3, 0, &l), PASM_OK);
    /* cuDNN may choose other algorithms for another batch size */
    expect("batch 3 through a batch-8 network", l, lg, 3 * k, fp32 ? 1e-5 : 2e-2);

    pasm_sgd_free(&sc);
    pasm_sgd_free(&sg);
    pasm_net_free(cpu);
    pasm_net_free(gpu);
    pasm_net_free(cpu_eval);
    pasm_net_free(gpu_eval);
    free(x), free(dx_cpu), free(dx_gpu);
}

static void test_fp32(void **unused) {
    int where = test_cuda_device();
    if (!where) skip();
    compare(PASM_PRECISION_FP32, 16);
    /* the emulation is slow: width 64 there only with PASM_TEST_WIDE=1 */
    if (where == 1 || getenv("PASM_TEST_WIDE")) compare(PASM_PRECISION_FP32, 64);
}

static void test_bf16(void **unused) {
    int where = test_cuda_device();
    if (!where) skip();
    compare(PASM_PRECISION_BF16, 16);
    if (where == 1 || getenv("PASM_TEST_WIDE")) compare(PASM_PRECISION_BF16, 64);
}

/* A training network's convolution workspaces sit in its arena, each alive
 * for its convolution alone. On the emulation every convolution here needs
 * 3 MiB and scribbles over all of it (PASM_CUDA_EMULATE_WORKSPACE_MB), as a
 * cuDNN algorithm may: with the plan's own placement, a workspace over a
 * live tensor would spoil the results against the CPU's; with the plan
 * check (each tensor apart, poisoned outside its lifetime), a workspace
 * used outside its op fails the check. */
static void test_workspace_in_arena(void **unused) {
    if (test_cuda_device() != 2) skip(); /* the emulation's switch */
    const char *was = getenv("PASM_CUDA_PLAN_CHECK");
    char *check = was ? strdup(was) : NULL;
    setenv("PASM_CUDA_EMULATE_WORKSPACE_MB", "3", 1);
    setenv("PASM_CUDA_PLAN_CHECK", "0", 1);
    compare(PASM_PRECISION_FP32, 16);
    setenv("PASM_CUDA_PLAN_CHECK", "1", 1);
    compare(PASM_PRECISION_BF16, 16);
    unsetenv("PASM_CUDA_EMULATE_WORKSPACE_MB");
    if (check) setenv("PASM_CUDA_PLAN_CHECK", check, 1);
    else unsetenv("PASM_CUDA_PLAN_CHECK");
    free(check);
}

/* What is written through a host pointer reaches the GPU, even when the
 * gradients are read in between (their copy must not bring the device's
 * older weights back). */
static void test_host_writes_survive(void **unused) {
    if (!test_cuda_device()) skip();
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 7,
                           .input_size = 48, .device = PASM_DEVICE_CUDA};
    pasm_net *gpu = NULL;
    if (pasm_net_create(&gpu, &cfg, 2)) fail_msg("%s", pasm_last_error());
    pasm_net_init(gpu, 1);
    float x[2 * 48 * 48] = {0}, dl[14] = {0};
    for (int i = 0; i < 2 * 48 * 48; i++) x[i] = (float)((i * 7919) % 13) / 13.0f - 0.5f;
    const float *l;
    assert_int_equal(pasm_net_forward(gpu, x, 2, 1, &l), PASM_OK);
    dl[0] = 1.0f;
    assert_int_equal(pasm_net_backward(gpu, dl, NULL), PASM_OK);
    float before[14];
    assert_int_equal(pasm_net_forward(gpu, x, 2, 0, &l), PASM_OK);
    memcpy(before, l, sizeof before);
    pasm_tensor *bias = pasm_net_find(gpu, "fc.bias");
    ((float *)bias->data)[3] += 1.0f;      /* a write through the host copy */
    (void)pasm_net_grad(gpu, 0);           /* ... then the gradients read */
    assert_float_equal(((float *)pasm_net_find(gpu, "fc.bias")->data)[3],
                       ((float *)bias->data)[3], 0);
    assert_int_equal(pasm_net_forward(gpu, x, 2, 0, &l), PASM_OK);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 7; k++) /* logit 3 of each image moved by exactly the write */
            assert_float_equal(l[i * 7 + k], before[i * 7 + k] + (k == 3 ? 1.0f : 0.0f), 1e-5);
    pasm_net_free(gpu);
}

typedef struct {
    double val_loss[2], train_loss[2];
    int epochs;
} trainer_log;

static void on_epoch(void *user, const pasm_epoch_stats *e) {
    trainer_log *l = user;
    if (l->epochs < 2) {
        l->train_loss[l->epochs] = e->train_loss;
        l->val_loss[l->epochs++] = e->val_loss;
    }
}

/* pasm_evaluate with flip TTA on a GPU network: the images on the GPU (in
 * one part, and in parts of one batch), and the host's batches
 * (PASM_CUDA_HOST_STEP=1): the same probabilities, logits and loss, byte
 * for byte. */
static void evaluate_paths(pasm_net *net, const pasm_model_meta *meta, const pasm_dataset *val) {
    const size_t count = (size_t)val->n * 7;
    float *probs[3], *logits[3];
    double loss[3];
    for (int how = 0; how < 3; how++) {
        probs[how] = malloc(count * sizeof(float));
        logits[how] = malloc(count * sizeof(float));
        if (how == 1) setenv("PASM_CUDA_EVAL_CHUNK", "8", 1);
        if (how == 2) setenv("PASM_CUDA_HOST_STEP", "1", 1);
        pasm_status st = pasm_evaluate(net, val, meta->norm_mean, meta->norm_std, 1, NULL,
                                       &loss[how], probs[how], logits[how]);
        unsetenv("PASM_CUDA_EVAL_CHUNK");
        unsetenv("PASM_CUDA_HOST_STEP");
        if (st) fail_msg("evaluation path %d: %s", how, pasm_last_error());
    }
    printf("  evaluation with TTA: loss %.9f (GPU, one part), %.9f (parts of 8), %.9f (host "
           "batches)\n",
           loss[0], loss[1], loss[2]);
    for (int how = 1; how < 3; how++) {
        assert_true(loss[how] == loss[0]);
        assert_memory_equal(probs[how], probs[0], count * sizeof(float));
        assert_memory_equal(logits[how], logits[0], count * sizeof(float));
    }
    for (int how = 0; how < 3; how++) free(probs[how]), free(logits[how]);
}

/* pasm_train through the library, without checkpoints (so no save hands
 * the host copy out between epochs), with validation after each epoch:
 * path 0 the GPU trainer with its steps replayed as a graph, 1 the host
 * step around the GPU network, 2 the GPU trainer launch by launch. Every
 * batch is full, so epoch 2 is replays only, then validation: a forward
 * after replays must see the replayed steps' weights. Exactly equal on the
 * emulation; on a GPU, 0 and 2 exactly and 1 within the last bits of exp. */
static void trainer_run(int how, const pasm_dataset *train, const pasm_dataset *val,
                        trainer_log *log, float *fc_bias) {
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 7,
                           .input_size = 32, .device = PASM_DEVICE_CUDA};
    pasm_net *net = NULL;
    if (pasm_net_create(&net, &cfg, 8)) fail_msg("%s", pasm_last_error());
    pasm_net_init(net, 5);
    pasm_model_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.n_norm = 1;
    meta.norm_mean[0] = 0.5f;
    meta.norm_std[0] = 0.25f;
    pasm_train_options o;
    pasm_train_defaults(&o);
    o.epochs = 2;
    o.batch = 8;
    o.sgd.lr = 0.02f;
    o.seed = 4;
    pasm_train_hooks hooks = {.on_epoch = on_epoch, .user = log};
    pasm_train_result r;
    if (how == 1) setenv("PASM_CUDA_HOST_STEP", "1", 1);
    if (how == 2) setenv("PASM_CUDA_GRAPHS", "0", 1);
    pasm_status st = pasm_train(net, &meta, train, val, &o, &hooks, &r);
    unsetenv("PASM_CUDA_HOST_STEP");
    unsetenv("PASM_CUDA_GRAPHS");
    if (st) fail_msg("path %d: %s", how, pasm_last_error());
    printf("  path %d: gpu trainer %d, %lld of %lld steps replayed; val loss %.9f %.9f\n", how,
           r.gpu_trainer, (long long)r.graph_steps, (long long)r.steps, log->val_loss[0],
           log->val_loss[1]);
    assert_int_equal(r.gpu_trainer, how != 1);
    if (how == 0) assert_int_equal(r.graph_steps, r.steps - 1); /* all but the first */
    else assert_int_equal(r.graph_steps, 0);
    memcpy(fc_bias, pasm_net_find(net, "fc.bias")->data, 7 * sizeof(float));
    if (how == 0) evaluate_paths(net, &meta, val);
    pasm_net_free(net);
}

static void test_trainer_paths(void **unused) {
    const int where = test_cuda_device();
    if (!where) skip();
    pasm_dataset train, val;
    /* 32x32 faces, three batches of 8: the first step runs as it is, the
     * second is captured, the rest of the run replays */
    assert_int_equal(pasm_dataset_alloc(&train, 24, 1, 32, "random faces"), PASM_OK);
    assert_int_equal(pasm_dataset_alloc(&val, 12, 1, 32, "random faces"), PASM_OK);
    pasm_rng rng;
    pasm_rng_init(&rng, 8, 77, 0, 0);
    for (int64_t i = 0; i < 24 * 32 * 32; i++) train.images[i] = (uint8_t)pasm_rng_u32(&rng);
    for (int64_t i = 0; i < 12 * 32 * 32; i++) val.images[i] = (uint8_t)pasm_rng_u32(&rng);
    for (int i = 0; i < 24; i++) train.labels[i] = i % 7;
    for (int i = 0; i < 12; i++) val.labels[i] = i % 7;
    train.n_classes = val.n_classes = 7;
    train.labelled = val.labelled = 1;
    trainer_log log[3];
    memset(log, 0, sizeof log);
    float bias[3][7];
    for (int how = 0; how < 3; how++) trainer_run(how, &train, &val, &log[how], bias[how]);
    for (int e = 0; e < 2; e++) {
        assert_true(log[0].val_loss[e] == log[2].val_loss[e]);
        assert_true(log[0].train_loss[e] == log[2].train_loss[e]);
        if (where == 2) assert_true(log[0].val_loss[e] == log[1].val_loss[e]);
        else assert_true(fabs(log[0].val_loss[e] - log[1].val_loss[e]) <= 1e-4);
    }
    assert_memory_equal(bias[0], bias[2], sizeof bias[0]);
    if (where == 2) assert_memory_equal(bias[0], bias[1], sizeof bias[0]);
    pasm_dataset_free(&train);
    pasm_dataset_free(&val);
}

/* The attacks on a GPU network: the scorer's device path (faces up as
 * uint8, candidates assembled from the bound faces, pixels picked where the
 * gradient is) against the host-batch path around the same network
 * (PASM_CUDA_HOST_STEP=1), every attack, in batches of 6 and 4: the same
 * points, probabilities and query counts, byte for byte (the softmax runs
 * on the host in both), on RGB faces. Each face is labelled with the class the network
 * gives it, so the attacks have a prediction to shake. */
enum { AT_N = 10, AT_BATCH = 6, AT_SIZE = 32, AT_C = 3 };

static pasm_scorer attack_scorer(pasm_net *net, int expect_device) {
    /* per channel, so that a channel mixed up shows */
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.2f, 0.3f};
    pasm_scorer sc;
    if (pasm_scorer_net(&sc, net, mean, std)) fail_msg("scorer: %s", pasm_last_error());
    /* the device path is the GPU scorer's own: picks and candidates */
    assert_int_equal(sc.salient != NULL,
                     expect_device && pasm_net_get_mode(net) != PASM_NET_EVAL);
    assert_int_equal(sc.changed != NULL && sc.bind != NULL, expect_device);
    return sc;
}

static void attack_with(pasm_net *net, const uint8_t *images, const int32_t *labels,
                        pasm_attack_kind kind, int expect_device, pasm_point *pts) {
    pasm_scorer sc = attack_scorer(net, expect_device);
    pasm_attack_options o;
    pasm_attack_defaults(&o);
    o.kind = kind;
    o.de_pop = 6;
    o.de_gens = 2;
    o.iter_max = 3;
    o.attack_batch = AT_BATCH;
    o.seed = 3;
    int64_t index[AT_N];
    for (int i = 0; i < AT_N; i++) index[i] = 100 + i;
    if (pasm_attack_images(&sc, &o, images, labels, index, AT_N, pts))
        fail_msg("%s: %s", pasm_attack_name(kind), pasm_last_error());
    if (expect_device && kind == PASM_ATTACK_DE) { /* bad candidates are refused, naming them */
        const int img = 5, zero = 0, bad = AT_SIZE;
        const uint8_t v[3] = {255, 255, 255};
        float probs[7];
        assert_int_equal(sc.bind(sc.ctx, images, 4), PASM_OK);
        assert_int_equal(sc.changed(sc.ctx, 1, &img, &img, &img, v, probs), PASM_ERR_INVALID);
        assert_non_null(strstr(pasm_last_error(), "image 5 (4 images"));
        assert_int_equal(sc.changed(sc.ctx, 1, &zero, &bad, &img, v, probs), PASM_ERR_INVALID);
        assert_int_equal(sc.bind(sc.ctx, NULL, 0), PASM_OK);
        assert_int_equal(sc.changed(sc.ctx, 1, &zero, &img, &img, v, probs), PASM_ERR_INVALID);
    }
    pasm_scorer_net_free(&sc);
}

static void test_attack_paths(void **unused) {
    if (!test_cuda_device()) skip();
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = AT_C,
                           .num_classes = 7, .input_size = AT_SIZE, .device = PASM_DEVICE_CUDA};
    pasm_net *net = NULL;
    if (pasm_net_create_mode(&net, &cfg, AT_BATCH, PASM_NET_EVAL_GRAD))
        fail_msg("%s", pasm_last_error());
    pasm_net_init(net, 9);
    uint8_t images[AT_N * AT_C * AT_SIZE * AT_SIZE];
    int32_t labels[AT_N];
    pasm_rng rng;
    pasm_rng_init(&rng, 5, 91, 0, 0);
    for (size_t i = 0; i < sizeof images; i++) images[i] = (uint8_t)pasm_rng_u32(&rng);
    pasm_scorer sc = attack_scorer(net, 1);
    for (int start = 0; start < AT_N; start += AT_BATCH) {
        const int m = AT_N - start < AT_BATCH ? AT_N - start : AT_BATCH;
        float probs[AT_BATCH * 7];
        assert_int_equal(sc.probs(sc.ctx, images + start * AT_C * AT_SIZE * AT_SIZE, m, probs), PASM_OK);
        for (int b = 0; b < m; b++) {
            int32_t *y = &labels[start + b];
            *y = 0;
            for (int c = 1; c < 7; c++)
                if (probs[b * 7 + c] > probs[b * 7 + *y]) *y = c;
        }
    }
    pasm_scorer_net_free(&sc);
    const pasm_attack_kind kinds[] = {PASM_ATTACK_DE, PASM_ATTACK_GRAD, PASM_ATTACK_ITER,
                                      PASM_ATTACK_RANDOM, PASM_ATTACK_CAM};
    /* whole forwards: test_attack_windows has the windows */
    char *saved = test_env_set("PASM_PATCH", "0");
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        pasm_point dev[AT_N], host[AT_N];
        attack_with(net, images, labels, kinds[k], 1, dev);
        setenv("PASM_CUDA_HOST_STEP", "1", 1);
        attack_with(net, images, labels, kinds[k], 0, host);
        unsetenv("PASM_CUDA_HOST_STEP");
        int fooled = 0, moved = 0;
        for (int i = 0; i < AT_N; i++) {
            fooled += dev[i].fooled;
            moved += dev[i].p_true_after != dev[i].p_true_before;
        }
        printf("  %-6s: the device and host-batch paths agree; %d of %d fooled, %d moved "
               "p(true)\n",
               pasm_attack_name(kinds[k]), fooled, AT_N, moved);
        assert_memory_equal(dev, host, sizeof dev);
        assert_true(moved > 0); /* the attacks did something */
    }
    test_env_restore("PASM_PATCH", saved);
    pasm_net_free(net);
}

/* The GPU scorer's candidates on windows (src/cuda/net_patch.c) against its
 * whole forwards (PASM_PATCH=0), fp32 and bf16, on RGB faces: calls of 8
 * candidates a face (every corner and edge among them) agree to rounding,
 * a call of one candidate a face runs whole forwards (byte for byte), and
 * de and random choose the same points. */
enum { AW_N = 8, AW_BATCH = 32, AW_M = 32 };

static void attack_windows(pasm_precision precision) {
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = AT_C,
                           .num_classes = 7, .input_size = AT_SIZE, .device = PASM_DEVICE_CUDA,
                           .precision = precision};
    pasm_net *net = NULL;
    if (pasm_net_create_mode(&net, &cfg, AW_BATCH, PASM_NET_EVAL))
        fail_msg("%s", pasm_last_error());
    pasm_net_init(net, 4);
    enum { PER = AT_C * AT_SIZE * AT_SIZE };
    static uint8_t images[AW_N * PER];
    int32_t labels[AW_N];
    pasm_rng rng;
    pasm_rng_init(&rng, 6, 91, 0, 0);
    for (size_t i = 0; i < sizeof images; i++) images[i] = (uint8_t)pasm_rng_u32(&rng);
    /* windows, whatever the caller's PASM_PATCH, and no silent fallback */
    char *saved = test_env_set("PASM_PATCH", "require");
    pasm_scorer win = attack_scorer(net, 1), whole;
    setenv("PASM_PATCH", "0", 1);
    whole = attack_scorer(net, 1);
    test_env_restore("PASM_PATCH", saved);
    float pw[AW_M * 7], pf[AW_M * 7];
    assert_int_equal(whole.probs(whole.ctx, images, AW_N, pw), PASM_OK);
    for (int i = 0; i < AW_N; i++) { /* each face's label: the class the network gives it */
        labels[i] = 0;
        for (int c = 1; c < 7; c++)
            if (pw[i * 7 + c] > pw[i * 7 + labels[i]]) labels[i] = c;
    }
    const int E = AT_SIZE - 1, H = AT_SIZE / 2;
    const int edge[8][2] = {{0, 0}, {0, E}, {E, 0}, {E, E}, {0, H}, {H, 0}, {E, H}, {H, E}};
    int img[AW_M], row[AW_M], col[AW_M];
    uint8_t values[AW_M * AT_C];
    for (int pass = 0; pass < 2; pass++) {
        const int m = pass ? AW_N : AW_M; /* 4 faces x 8, then one each */
        assert_int_equal(win.bind(win.ctx, images, AW_N), PASM_OK);
        assert_int_equal(whole.bind(whole.ctx, images, AW_N), PASM_OK);
        for (int j = 0; j < m; j++) {
            img[j] = pass ? j : 1 + 2 * (j / 8);
            row[j] = pass ? (int)pasm_rng_below(&rng, AT_SIZE) : edge[j % 8][0];
            col[j] = pass ? (int)pasm_rng_below(&rng, AT_SIZE) : edge[j % 8][1];
            if (!pass && j % 8 == 7) row[j] = H + 1, col[j] = H - 3; /* and inside */
            for (int c = 0; c < AT_C; c++) values[j * AT_C + c] = (uint8_t)pasm_rng_u32(&rng);
        }
        assert_int_equal(win.changed(win.ctx, m, img, row, col, values, pw), PASM_OK);
        assert_int_equal(whole.changed(whole.ctx, m, img, row, col, values, pf), PASM_OK);
        if (pass) {
            assert_memory_equal(pw, pf, sizeof(float) * m * 7);
        } else {
            char what[64];
            snprintf(what, sizeof what, "%s windows, 8 candidates a face",
                     pasm_precision_name(precision));
            /* bf16 rounds each activation to 8 bits: on a GPU, where the
             * windows' convolutions may sum in another order than the
             * whole map's, that shows; the emulation sums alike */
            const int gpu = test_cuda_device() == 1;
            if (precision && gpu) test_assert_close(what, pw, pf, m * 7, 2e-3, 2e-2);
            else if (gpu) test_assert_close(what, pw, pf, m * 7, 1e-5, 1e-4); /* cuDNN's orders */
            else test_assert_close(what, pw, pf, m * 7, 1e-6, 1e-5);
        }
    }
    assert_int_equal(win.bind(win.ctx, NULL, 0), PASM_OK);
    assert_int_equal(whole.bind(whole.ctx, NULL, 0), PASM_OK);
    pasm_scorer_net_free(&win);
    pasm_scorer_net_free(&whole);
    /* the attacks: the same points (fp32; bf16 rounds its windows otherwise) */
    if (precision == PASM_PRECISION_FP32) {
        const pasm_attack_kind kinds[2] = {PASM_ATTACK_DE, PASM_ATTACK_RANDOM};
        for (int k = 0; k < 2; k++) {
            pasm_point a[AW_N], b[AW_N];
            pasm_attack_options o;
            pasm_attack_defaults(&o);
            o.kind = kinds[k], o.de_pop = 8, o.de_gens = 3, o.attack_batch = AW_BATCH, o.seed = 2;
            int64_t index[AW_N];
            for (int i = 0; i < AW_N; i++) index[i] = i;
            char *was = test_env_set("PASM_PATCH", "require");
            pasm_scorer s1 = attack_scorer(net, 1);
            assert_int_equal(pasm_attack_images(&s1, &o, images, labels, index, AW_N, a), PASM_OK);
            pasm_scorer_net_free(&s1);
            setenv("PASM_PATCH", "0", 1);
            pasm_scorer s2 = attack_scorer(net, 1);
            test_env_restore("PASM_PATCH", was);
            assert_int_equal(pasm_attack_images(&s2, &o, images, labels, index, AW_N, b), PASM_OK);
            pasm_scorer_net_free(&s2);
            int same = 0;
            for (int i = 0; i < AW_N; i++)
                same += a[i].row == b[i].row && a[i].col == b[i].col &&
                        fabsf(a[i].p_true_after - b[i].p_true_after) <= 1e-5f;
            printf("  %-6s: %d of %d points the same on windows\n", pasm_attack_name(o.kind),
                   same, AW_N);
            assert_true(same >= AW_N - 1);
        }
    }
    pasm_net_free(net);
}

static void test_attack_windows(void **unused) {
    if (!test_cuda_device()) skip();
    attack_windows(PASM_PRECISION_FP32);
    attack_windows(PASM_PRECISION_BF16);
}

#ifdef PASM_HAVE_CUDA
/* The GPU windows under budgets that split a call into groups (down to one
 * face and one candidate a group), faces interleaved and repeated, corners
 * and edges among the pixels, against the scorer's whole forwards: fp32 and
 * bf16, calls of 1, 3, 13 and 32 candidates. */
enum { AG_N = 8, AG_B = 32 };

/* A width-16 evaluation network on the GPU, AG_N random RGB faces and AG_B
 * candidates of them: interleaved and repeated faces with corners and edges
 * among the pixels, or (grouped) 8 candidates for each of the first 4 faces. */
typedef struct {
    pasm_net *net;
    uint8_t images[AG_N * AT_C * AT_SIZE * AT_SIZE];
    int img[AG_B], row[AG_B], col[AG_B];
    uint8_t values[AG_B * AT_C];
} ag_case;

static void ag_make(ag_case *k, pasm_precision precision, uint64_t seed, int grouped) {
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = AT_C,
                           .num_classes = 7, .input_size = AT_SIZE, .device = PASM_DEVICE_CUDA,
                           .precision = precision};
    k->net = NULL;
    if (pasm_net_create_mode(&k->net, &cfg, AG_B, PASM_NET_EVAL))
        fail_msg("%s", pasm_last_error());
    pasm_net_init(k->net, seed);
    pasm_rng rng;
    pasm_rng_init(&rng, seed, 91, 0, 0);
    for (size_t i = 0; i < sizeof k->images; i++) k->images[i] = (uint8_t)pasm_rng_u32(&rng);
    for (int j = 0; j < AG_B; j++) {
        k->img[j] = grouped ? j / 8 : (j * 5 + j / 7) % AG_N;
        k->row[j] = grouped || j % 5 ? (int)pasm_rng_below(&rng, AT_SIZE) : 0;
        k->col[j] = grouped || j % 7 ? (int)pasm_rng_below(&rng, AT_SIZE) : AT_SIZE - 1;
        for (int c = 0; c < AT_C; c++) k->values[j * AT_C + c] = (uint8_t)pasm_rng_u32(&rng);
    }
}

static void windows_in_groups(pasm_precision precision) {
    static ag_case k;
    ag_make(&k, precision, 8, 0);
    pasm_net *net = k.net;
    const uint8_t *images = k.images;
    const int *img = k.img, *row = k.row, *col = k.col;
    const uint8_t *values = k.values;
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.2f, 0.3f};
    char *saved = test_env_set("PASM_PATCH", "0");
    pasm_scorer whole = attack_scorer(net, 1);
    test_env_restore("PASM_PATCH", saved);
    float pf[AG_B * 7], pw[AG_B * 7], lw[AG_B * 7];
    assert_int_equal(whole.bind(whole.ctx, images, AG_N), PASM_OK);
    assert_int_equal(whole.changed(whole.ctx, AG_B, img, row, col, values, pf), PASM_OK);
    float table[3 * 256];
    assert_int_equal(pasm_norm_table(AT_C, mean, std, table), PASM_OK);
    pasm_cuda_ctx *ctx = NULL;
    void *faces = NULL, *table_dev = NULL;
    assert_int_equal(pasm_cuda_ctx_create(&ctx), PASM_OK);
    assert_int_equal(pasm_cuda_alloc(&faces, sizeof k.images, "faces"), PASM_OK);
    assert_int_equal(pasm_cuda_alloc(&table_dev, sizeof table, "table"), PASM_OK);
    assert_int_equal(pasm_cuda_to_device(ctx, faces, images, sizeof k.images), PASM_OK);
    assert_int_equal(pasm_cuda_to_device(ctx, table_dev, table, sizeof table), PASM_OK);
    assert_int_equal(pasm_cuda_sync(ctx, "test"), PASM_OK);
    /* fp32 the extremes too (a group a candidate; one group); bf16's
     * grouping is fp32's, its rounding is what differs */
    const size_t budgets[] = {1000000, 1, (size_t)2 << 30};
    const int gpu = test_cuda_device() == 1;
    for (size_t b = 0; b < (precision ? 1 : sizeof budgets / sizeof budgets[0]); b++) {
        pasm_cuda_patch *p = NULL;
        if (pasm_cuda_patch_create(net, table, budgets[b], &p)) fail_msg("%s", pasm_last_error());
        assert_non_null(p);
        const int calls[] = {1, 3, 13, AG_B};
        for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
            const int m = calls[c];
            if (pasm_cuda_patch_forward(p, faces, images, AG_N, table_dev, m, img, row, col,
                                        values, lw))
                fail_msg("%s", pasm_last_error());
            pasm_softmax(m, 7, lw, pw);
            char what[96];
            snprintf(what, sizeof what, "%s windows, budget %zu bytes, %d candidates",
                     pasm_precision_name(precision), budgets[b], m);
            if (precision) test_assert_close(what, pw, pf, m * 7, gpu ? 2e-3 : 1e-6, 2e-2);
            else test_assert_close(what, pw, pf, m * 7, gpu ? 1e-5 : 1e-6, gpu ? 1e-4 : 1e-5);
        }
        pasm_cuda_patch_free(p);
    }
    pasm_cuda_free(faces);
    pasm_cuda_free(table_dev);
    pasm_cuda_ctx_free(ctx);
    assert_int_equal(whole.bind(whole.ctx, NULL, 0), PASM_OK);
    pasm_scorer_net_free(&whole);
    pasm_net_free(net);
}

/* Windows that fail while they run (a convolution cuDNN offered but could
 * not run; PASM_CUDA_PATCH_FAIL=1 fails them here): the scorer redoes the
 * call with whole forwards and keeps to them, the same bytes as a scorer
 * without windows; with PASM_PATCH=require the failure is the call's error. */
static void windows_that_fail(void) {
    static ag_case k; /* 8 candidates for each of 4 faces: worth windows */
    ag_make(&k, PASM_PRECISION_FP32, 9, 1);
    pasm_net *net = k.net;
    const uint8_t *images = k.images;
    const int *img = k.img, *row = k.row, *col = k.col;
    const uint8_t *values = k.values;
    char *saved_patch = test_env_set("PASM_PATCH", "0");
    pasm_scorer whole = attack_scorer(net, 1);
    setenv("PASM_PATCH", "1", 1);
    pasm_scorer fallback = attack_scorer(net, 1);
    setenv("PASM_PATCH", "require", 1);
    pasm_scorer required = attack_scorer(net, 1);
    test_env_restore("PASM_PATCH", saved_patch);
    float pf[AG_B * 7], pb[AG_B * 7];
    char *saved_fail = test_env_set("PASM_CUDA_PATCH_FAIL", "1");
    pasm_scorer *all[] = {&whole, &fallback, &required};
    for (int i = 0; i < 3; i++) assert_int_equal(all[i]->bind(all[i]->ctx, images, AG_N), PASM_OK);
    assert_int_equal(whole.changed(whole.ctx, AG_B, img, row, col, values, pf), PASM_OK);
    for (int call = 0; call < 2; call++) { /* the failing call, then one after it */
        assert_int_equal(fallback.changed(fallback.ctx, AG_B, img, row, col, values, pb), PASM_OK);
        assert_memory_equal(pb, pf, sizeof pf);
    }
    assert_int_equal(required.changed(required.ctx, AG_B, img, row, col, values, pb),
                     PASM_ERR_UNSUPPORTED);
    assert_non_null(strstr(pasm_last_error(), "could not run"));
    test_env_restore("PASM_CUDA_PATCH_FAIL", saved_fail);
    /* the windows, when they run, sum in another order than whole forwards
     * (these bytes differ), and the scorer that fell back does not try them
     * again (its bytes stay whole forwards') */
    float pr[AG_B * 7];
    assert_int_equal(required.changed(required.ctx, AG_B, img, row, col, values, pr), PASM_OK);
    assert_true(memcmp(pr, pf, sizeof pf) != 0);
    assert_int_equal(fallback.changed(fallback.ctx, AG_B, img, row, col, values, pb), PASM_OK);
    assert_memory_equal(pb, pf, sizeof pf);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(all[i]->bind(all[i]->ctx, NULL, 0), PASM_OK);
        pasm_scorer_net_free(all[i]);
    }
    pasm_net_free(net);
    /* a training network has no windows: require refuses its scorer at once */
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = AT_C,
                           .num_classes = 7, .input_size = AT_SIZE, .device = PASM_DEVICE_CUDA};
    if (pasm_net_create_mode(&net, &cfg, 4, PASM_NET_TRAIN)) fail_msg("%s", pasm_last_error());
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.2f, 0.3f};
    saved_patch = test_env_set("PASM_PATCH", "require");
    pasm_scorer sc;
    assert_int_equal(pasm_scorer_net(&sc, net, mean, std), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "PASM_PATCH=require: no candidate windows for a "
                                              "training network"));
    assert_null(sc.probs); /* nothing half-built to call */
    test_env_restore("PASM_PATCH", saved_patch);
    pasm_net_free(net);
}
#endif

static void test_attack_windows_groups(void **unused) {
#ifdef PASM_HAVE_CUDA
    if (!test_cuda_device()) skip();
    windows_in_groups(PASM_PRECISION_FP32);
    windows_in_groups(PASM_PRECISION_BF16);
    windows_that_fail();
#else
    skip();
#endif
}

/* No GPU (or no CUDA in this build): building a GPU network fails with a
 * message saying why, and nothing leaks or crashes. */
static void test_refusal(void **unused) {
    if (pasm_device_check(PASM_DEVICE_CUDA) == PASM_OK) skip();
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 7,
                           .input_size = 48, .device = PASM_DEVICE_CUDA};
    pasm_net *net = (pasm_net *)0x1;
    assert_int_equal(pasm_net_create(&net, &cfg, 4), PASM_ERR_UNSUPPORTED);
    assert_null(net);
    printf("  %s\n", pasm_last_error());
    assert_non_null(strstr(pasm_last_error(), "cuda"));
    cfg.device = 7;
    assert_int_equal(pasm_net_config_check(&cfg), PASM_ERR_INVALID);
}

int main(void) {
    /* the emulated training networks check their memory plan (net.c) */
    setenv("PASM_CUDA_PLAN_CHECK", "1", 0);
    /* PASM_TEST_ONLY=PATTERN: only the tests it names (cmocka's filter) */
    if (getenv("PASM_TEST_ONLY")) cmocka_set_test_filter(getenv("PASM_TEST_ONLY"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusal),
        cmocka_unit_test(test_host_writes_survive),
        cmocka_unit_test(test_fp32),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_workspace_in_arena),
        cmocka_unit_test(test_trainer_paths),
        cmocka_unit_test(test_attack_paths),
        cmocka_unit_test(test_attack_windows),
        cmocka_unit_test(test_attack_windows_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
