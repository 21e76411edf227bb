/* pasm's side of the benchmark (bench/run.sh runs it, one measurement per
 * process so that each peak RSS belongs to that measurement alone):
 *   pasm_bench train W      training images/s at batch 128 (forward, loss,
 *                           backward, SGD step with momentum and weight decay)
 *   pasm_bench infer1 W     batch-1 evaluation forward latency, median in ms
 *   pasm_bench infer128 W   batch-128 evaluation forward images/s
 *                           (both on a PASM_NET_EVAL network)
 *   pasm_bench flops W      forward FLOPs per image, counted from the
 *                           network's own convolution and linear shapes
 *   pasm_bench load PATH    seconds to load a FER2013 CSV (gzip) completely
 *   pasm_bench sgemm        OpenBLAS sgemm 2048^3 GFLOPS, best of several
 *   pasm_bench ckpt W DIR   checkpoint I/O of a width-W network in DIR, medians
 *                           in ms: save (pasm_checkpoint_save: a temporary
 *                           file, fsync, rename, the folder fsynced) and load
 *                           (pasm_checkpoint_load_mode: read, validate, build
 *                           a PASM_NET_EVAL network for batch 1 and fill it);
 *                           and the load of DIR/torch_wW.safetensors, PyTorch's
 *                           file (torch_bench.py ckpt), when it is there
 *   pasm_bench bf16native   how bf16 convolutions run here: 1 AMX, 2 AVX512-BF16
 *                           dot products, 0 widened to fp32 sgemm
 *   pasm_bench conv N CIN COUT HW K S [dx|dw]   one fp32 convolution of a
 *                           batch of N, CIN -> COUT channels at HWxHW, kernel
 *                           K, stride S, padding K/2: GFLOPS of the forward
 *                           (or of the input or the weight gradient), best
 *                           of the reps in 1.5 s ("conv_gflops");
 *                           PASM_CONV_DIRECT=0 forces im2col + sgemm
 * train, infer1 and infer128 take "bf16" after W: the same with
 * --precision bf16's convolutions (keys end in _bf16).
 *   pasm_bench gpu-train W B [fp32|bf16]   training images/s of pasm_train on
 *                           the GPU at batch B (bf16 by default) over 28709
 *                           random 48x48 faces (FER2013's size; crop and
 *                           flip, the second of two epochs), and the GPU
 *                           memory pasm held at its peak: "gpu_train_ips",
 *                           "gpu_peak_mb"; "gpu_hoststep_ips": the host-batch
 *                           path's steps; then a per-operation profile
 *   pasm_bench curve MODEL CSV STEPS B [cpu|cuda]   the loss of each of STEPS
 *                           fp32 SGD steps from checkpoint MODEL on CSV's faces in
 *                           file order, batch B, no augmentation ("curve_loss_S"),
 *                           for bench/torch_gpu_bench.py curve's same run
 * Each prints "key value" lines (key = mode, W appended), plus the peak RSS
 * in MiB of the process (getrusage) as "<key>_rss_mb". Not a test: timings
 * depend on the machine and on what else runs on it. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "nn/net_internal.h"
#include "pasm/pasm.h"
#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#define BATCH 128
#define CLASSES 7
#define SIZE 48

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

static int fail(const char *what) {
    fprintf(stderr, "pasm_bench: %s: %s\n", what, pasm_last_error());
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Deterministic inputs in roughly the normalised range, labels 0..6. */
static void fill_batch(float *x, int32_t *labels, int n) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < (int64_t)n * SIZE * SIZE; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1 << 24) * 4.0 - 2.0);
    }
    for (int i = 0; i < n; i++) labels[i] = i % CLASSES;
}

static pasm_precision precision = PASM_PRECISION_FP32;
static pasm_device device = PASM_DEVICE_CPU;
static const char *suffix = ""; /* "_bf16" for bf16 */

/* Training measures a PASM_NET_TRAIN network; inference a PASM_NET_EVAL one,
 * as pasm eval and predict build it. */
static pasm_status make_net(pasm_net **net, int width, int batch, pasm_net_mode mode) {
    pasm_net_config cfg = {.arch = "resnet18", .width = width, .in_channels = 1,
                           .num_classes = CLASSES, .input_size = SIZE,
                           .precision = precision, .device = device};
    pasm_status st = pasm_net_create_mode(net, &cfg, batch, mode);
    if (st) return st;
    pasm_net_init(*net, 1);
    return PASM_OK;
}

/* Runs step() at least min_reps times and at least min_s seconds (after
 * warm-up reps), at most max_reps; returns the mean seconds per rep. */
typedef pasm_status (*step_fn)(void *ctx);

static double time_reps(step_fn step, void *ctx, int warmup, int min_reps, int max_reps,
                        double min_s) {
    /* PASM_BENCH_REPS=N: exactly N timed reps (for profiling and for
     * comparing CPU time or instruction counts between builds). */
    const char *fixed = getenv("PASM_BENCH_REPS");
    if (fixed && atoi(fixed) > 0) {
        min_reps = max_reps = atoi(fixed);
        min_s = 0.0;
    }
    for (int i = 0; i < warmup; i++)
        if (step(ctx)) return -1.0;
    double t0 = now_s(), t = 0.0;
    int reps = 0;
    while (reps < max_reps && (reps < min_reps || t < min_s)) {
        if (step(ctx)) return -1.0;
        reps++;
        t = now_s() - t0;
    }
    return t / reps;
}

typedef struct {
    pasm_net *net;
    pasm_sgd sgd;
    float *x, *dlogits, *params;
    int32_t *labels;
    int n;
} train_ctx;

static pasm_status train_step(void *p) {
    train_ctx *c = p;
    const float *logits;
    pasm_status st = pasm_net_forward(c->net, c->x, c->n, 1, &logits);
    if (st) return st;
    pasm_cross_entropy(c->n, CLASSES, logits, c->labels, 0.0f, NULL, c->dlogits, NULL);
    st = pasm_net_backward(c->net, c->dlogits, NULL);
    if (st) return st;
    return pasm_sgd_step_net(&c->sgd, c->net, 0.01f);
}

static pasm_status eval_step(void *p) {
    train_ctx *c = p;
    const float *logits;
    return pasm_net_forward(c->net, c->x, c->n, 0, &logits);
}

static int setup(train_ctx *c, int width, int n, int train) {
    memset(c, 0, sizeof *c);
    c->n = n;
    if (make_net(&c->net, width, n, train ? PASM_NET_TRAIN : PASM_NET_EVAL))
        return fail("building the network");
    c->x = pasm_alloc(sizeof(float) * (size_t)n * SIZE * SIZE, "input");
    c->dlogits = pasm_alloc(sizeof(float) * (size_t)n * CLASSES, "dlogits");
    c->labels = pasm_alloc(sizeof(int32_t) * (size_t)n, "labels");
    if (!c->x || !c->dlogits || !c->labels) return fail("allocating the batch");
    fill_batch(c->x, c->labels, n);
    if (!train) return 0;
    int64_t count;
    c->params = pasm_net_param_block(c->net, &count);
    pasm_sgd_options opt = {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 5e-4f, .nesterov = 1};
    if (pasm_sgd_init(&c->sgd, &opt, count)) return fail("SGD");
    return 0;
}

static void teardown(train_ctx *c) {
    if (c->params) pasm_sgd_free(&c->sgd);
    pasm_free(c->x);
    pasm_free(c->dlogits);
    pasm_free(c->labels);
    pasm_net_free(c->net);
}

static int run_train(int width) {
    train_ctx c;
    int rc = setup(&c, width, BATCH, 1);
    if (!rc) {
        double s = time_reps(train_step, &c, 1, 2, 50, width >= 64 ? 20.0 : 8.0);
        if (s < 0) rc = fail("training step");
        else printf("train_w%d%s %.2f\ntrain_w%d%s_rss_mb %.0f\n", width, suffix, BATCH / s, width,
                    suffix, peak_rss_mb());
    }
    teardown(&c);
    return rc;
}

#ifdef PASM_HAVE_CUDA
/* A training set of n random faces (uint8, 48x48) for the GPU trainer. */
static int random_faces(pasm_dataset *ds, int n) {
    if (pasm_dataset_alloc(ds, n, 1, SIZE, "random faces")) return fail("allocating faces");
    uint64_t s = 0x2545F4914F6CDD1Dull;
    for (int64_t i = 0; i < (int64_t)n * SIZE * SIZE; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ds->images[i] = (uint8_t)(s >> 56);
    }
    for (int i = 0; i < n; i++) ds->labels[i] = i % CLASSES;
    ds->n_classes = CLASSES;
    ds->labelled = 1;
    return 0;
}

typedef struct {
    double ips[8];
    int epochs;
} epoch_log;

static void log_epoch(void *user, const pasm_epoch_stats *e) {
    epoch_log *l = user;
    if (l->epochs < 8) l->ips[l->epochs++] = e->images_per_s;
}

/* pasm_train on the GPU: epochs of n faces at batch b (crop and flip on, no
 * validation), as pasm train runs them. The first epoch includes cuDNN's
 * planning; the last one's images/s is reported. */
static pasm_status gpu_trainer_epochs(int width, int batch, int n, int epochs, epoch_log *log) {
    pasm_dataset ds;
    if (random_faces(&ds, n)) return PASM_ERR_NOMEM;
    pasm_net *net;
    pasm_status st = make_net(&net, width, batch, PASM_NET_TRAIN);
    if (st) {
        pasm_dataset_free(&ds);
        return st;
    }
    pasm_model_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.n_norm = 1;
    meta.norm_mean[0] = 0.5f;
    meta.norm_std[0] = 0.25f;
    pasm_train_options o;
    pasm_train_defaults(&o);
    o.epochs = epochs;
    o.batch = batch;
    o.warmup_epochs = 0;
    pasm_train_hooks hooks = {.on_epoch = log_epoch, .user = log};
    pasm_train_result r;
    st = pasm_train(net, &meta, &ds, NULL, &o, &hooks, &r);
    if (!st && !r.gpu_trainer) st = pasm_errorf(PASM_ERR_INVALID, "the GPU trainer did not run");
    pasm_net_free(net);
    pasm_dataset_free(&ds);
    return st;
}
#endif

static int run_gpu_train(int width, int batch) {
#ifdef PASM_HAVE_CUDA
    device = PASM_DEVICE_CUDA;
    if (pasm_device_check(device)) return fail("gpu-train");
    char line[256];
    printf("# %s\n", pasm_device_describe(device, line, sizeof line));
    /* the trainer over a FER2013-sized set (28709 faces), two epochs */
    epoch_log log = {0};
    const char *faces = getenv("PASM_BENCH_FACES"); /* fewer, for a smoke test */
    const int n = faces && atoi(faces) >= 2 * batch ? atoi(faces) : 28709;
    if (gpu_trainer_epochs(width, batch, n, 2, &log)) return fail("the GPU trainer");
    for (int e = 0; e < log.epochs; e++) printf("# epoch %d: %.1f images/s\n", e + 1, log.ips[e]);
    const double ips = log.ips[log.epochs - 1];
    printf("gpu_train_ips %.1f\ngpu_step_ms %.3f\ngpu_peak_mb %.0f\n", ips, 1e3 * batch / ips,
           (double)pasm_cuda_bytes_peak() / 1048576.0);
    /* the older path for comparison: host batches sent every step, the loss
     * on the host (PASM_CUDA_HOST_STEP=1's path, without augmentation) */
    train_ctx c;
    int rc = setup(&c, width, batch, 1);
    if (!rc) {
        double s = time_reps(train_step, &c, 3, 10, 400, 3.0);
        if (s < 0) rc = fail("training step");
        else printf("gpu_hoststep_ips %.1f\n", batch / s);
    }
    teardown(&c);
    if (rc) return rc;
    /* where a step's time goes: an epoch of 5 steps of the trainer, launch
     * by launch (no graph), each op timed on the GPU by events around it */
    pasm_cuda_profile(1);
    pasm_cuda_profile_reset();
    epoch_log plog = {0};
    if (gpu_trainer_epochs(width, batch, 5 * batch, 1, &plog)) return fail("profiled epoch");
    double ms = pasm_cuda_profile_report(stdout, 5);
    printf("gpu_profiled_step_ms %.3f\n", ms);
    pasm_cuda_profile(0);
    return 0;
#else
    (void)width, (void)batch;
    fprintf(stderr, "pasm_bench: gpu-train: this build has no CUDA backend\n");
    return 1;
#endif
}

/* The loss curve against PyTorch's (bench/torch_gpu_bench.py curve): the
 * checkpoint MODEL trained for STEPS SGD steps (lr 0.001, momentum 0.9,
 * Nesterov, weight decay 5e-4; fp32) on batches of B faces of CSV taken in
 * file order (batch s holds faces s*B .. s*B+B-1, wrapping), normalised
 * with the checkpoint's mean and std, no augmentation; the loss of every
 * step before its update as "curve_loss_S". */
#define CURVE_LR 0.001f /* gentle: two runs' rounding differences grow slowly */

static int run_curve(const char *model, const char *csv, int steps, int batch, const char *dev) {
    pasm_load_spec spec = {.path = csv, .split = "all", .input_size = SIZE, .channels = 1};
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (pasm_dataset_load(&spec, &ds)) return fail(csv);
    pasm_device d = PASM_DEVICE_CPU;
    if (dev && (pasm_device_parse(dev, &d) || pasm_device_check(d))) {
        pasm_dataset_free(&ds);
        return fail(dev);
    }
    pasm_load_options lo = {.device = (int)d};
    pasm_net *net = NULL;
    pasm_model_meta meta;
    memset(&meta, 0, sizeof meta);
    int rc = 1;
    float *x = NULL, *dlogits = NULL;
    int32_t *labels = NULL;
    int *idx = NULL;
    pasm_sgd sgd = {0};
    if (pasm_checkpoint_load_mode(model, &lo, batch, PASM_NET_TRAIN, &net, &meta)) {
        fail(model);
        goto done;
    }
    const int k = pasm_net_get_config(net)->num_classes;
    x = malloc((size_t)batch * SIZE * SIZE * sizeof(float));
    dlogits = malloc((size_t)batch * k * sizeof(float));
    labels = malloc((size_t)batch * sizeof(int32_t));
    idx = malloc((size_t)batch * sizeof(int));
    int64_t count;
    pasm_net_param_block(net, &count);
    pasm_sgd_options opt = {.lr = CURVE_LR, .momentum = 0.9f, .weight_decay = 5e-4f,
                            .nesterov = 1};
    if (!x || !dlogits || !labels || !idx || pasm_sgd_init(&sgd, &opt, count)) {
        fail("allocating");
        goto done;
    }
    char line[256];
    printf("# %s\n", pasm_device_describe(d, line, sizeof line));
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < batch; i++) idx[i] = (int)(((int64_t)s * batch + i) % ds.n);
        const float *logits;
        if (pasm_batch_make(&ds, idx, batch, meta.norm_mean, meta.norm_std, x, labels) ||
            pasm_net_forward(net, x, batch, 1, &logits)) {
            fail("forward");
            goto done;
        }
        double loss = pasm_cross_entropy(batch, k, logits, labels, 0.0f, NULL, dlogits, NULL);
        if (pasm_net_backward(net, dlogits, NULL) || pasm_sgd_step_net(&sgd, net, CURVE_LR)) {
            fail("step");
            goto done;
        }
        printf("curve_loss_%d %.8f\n", s + 1, loss);
    }
    rc = 0;
done:
    if (sgd.momentum_buffer) pasm_sgd_free(&sgd);
    free(x), free(dlogits), free(labels), free(idx);
    pasm_net_free(net);
    pasm_model_meta_free(&meta);
    pasm_dataset_free(&ds);
    return rc;
}

static int run_infer128(int width) {
    train_ctx c;
    int rc = setup(&c, width, BATCH, 0);
    if (!rc) {
        double s = time_reps(eval_step, &c, 1, 3, 100, width >= 64 ? 10.0 : 5.0);
        if (s < 0) rc = fail("evaluation forward");
        else printf("infer128_w%d%s %.2f\ninfer128_w%d%s_rss_mb %.0f\n", width, suffix, BATCH / s,
                    width, suffix, peak_rss_mb());
    }
    teardown(&c);
    return rc;
}

/* Median of single-image latencies, each timed on its own. */
static int run_infer1(int width) {
    train_ctx c;
    int rc = setup(&c, width, 1, 0);
    enum { MAX_REPS = 2000 };
    static double lat[MAX_REPS];
    int reps = 0;
    double budget = width >= 64 ? 8.0 : 5.0, t_start;
    for (int i = 0; !rc && i < 10; i++)
        if (eval_step(&c)) rc = fail("evaluation forward");
    t_start = now_s();
    while (!rc && reps < MAX_REPS && (reps < 20 || now_s() - t_start < budget)) {
        double t0 = now_s();
        if (eval_step(&c)) rc = fail("evaluation forward");
        lat[reps++] = now_s() - t0;
    }
    if (!rc) {
        qsort(lat, (size_t)reps, sizeof lat[0], cmp_double);
        printf("infer1_w%d%s %.3f\ninfer1_w%d%s_rss_mb %.0f\n", width, suffix, 1e3 * lat[reps / 2],
               width, suffix, peak_rss_mb());
    }
    teardown(&c);
    return rc;
}

static double conv_flops(const conv_layer *c) {
    const pasm_conv2d_shape *s = &c->shape;
    return 2.0 * s->c_out * s->h_out * s->w_out * s->c_in * s->kernel * s->kernel;
}

/* Multiply-adds of every convolution and of the fc layer, counted as 2
 * FLOPs each; batch norm, ReLU, additions and pooling are left out (as in
 * the usual GFLOP figures, and they are < 1% here). */
static int run_flops(int width) {
    pasm_net *net;
    if (make_net(&net, width, 1, PASM_NET_EVAL)) return fail("building the network");
    double f = conv_flops(&net->stem_conv);
    for (int i = 0; i < 8; i++) {
        const block *b = &net->blocks[i];
        f += conv_flops(&b->conv1) + conv_flops(&b->conv2);
        if (b->has_downsample) f += conv_flops(&b->down_conv);
    }
    f += 2.0 * net->final_channels * net->cfg.num_classes;
    printf("flops_w%d %.6g\n", width, f);
    pasm_net_free(net);
    return 0;
}

static int run_load(const char *path) {
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    pasm_load_spec spec = {.path = path, .split = "all", .input_size = SIZE, .channels = 1};
    double t0 = now_s();
    if (pasm_dataset_load(&spec, &ds)) return fail(path);
    double t = now_s() - t0;
    printf("load_s %.3f\nload_images %d\nload_rss_mb %.0f\n", t, ds.n, peak_rss_mb());
    pasm_dataset_free(&ds);
    return 0;
}

/* Checkpoint I/O (pasm_bench ckpt): one network and its metadata, saved to
 * and loaded from path. */
typedef struct {
    const char *path;
    pasm_net *net;
    pasm_model_meta meta;
} ckpt_ctx;

static pasm_status ckpt_save(void *p) {
    ckpt_ctx *c = p;
    return pasm_checkpoint_save(c->path, c->net, &c->meta);
}

static pasm_status ckpt_load(void *p) {
    ckpt_ctx *c = p;
    pasm_load_options lo = {.norm = "0.5,0.25"}; /* for PyTorch's file, which has none */
    pasm_net *net = NULL;
    pasm_model_meta meta;
    memset(&meta, 0, sizeof meta);
    pasm_status st = pasm_checkpoint_load_mode(c->path, &lo, 1, PASM_NET_EVAL, &net, &meta);
    pasm_net_free(net);
    pasm_model_meta_free(&meta);
    return st;
}

/* Median ms of step's reps after one warm-up: at least 5 reps and 3 s, at
 * most 200 (the disk's cache is part of what a user meets, so warm). */
static double median_ms(step_fn step, void *ctx) {
    enum { MAX_REPS = 200 };
    static double lat[MAX_REPS];
    if (step(ctx)) return -1.0;
    int reps = 0;
    for (double t_start = now_s(); reps < MAX_REPS && (reps < 5 || now_s() - t_start < 3.0);) {
        double t0 = now_s();
        if (step(ctx)) return -1.0;
        lat[reps++] = now_s() - t0;
    }
    qsort(lat, (size_t)reps, sizeof lat[0], cmp_double);
    return 1e3 * lat[reps / 2];
}

static int run_ckpt(int width, const char *dir) {
    char path[4096], torch_path[4096];
    snprintf(path, sizeof path, "%s/pasm_w%d.safetensors", dir, width);
    snprintf(torch_path, sizeof torch_path, "%s/torch_w%d.safetensors", dir, width);
    ckpt_ctx c = {.path = path};
    if (make_net(&c.net, width, 1, PASM_NET_EVAL)) return fail("network");
    c.meta.net = *pasm_net_get_config(c.net);
    c.meta.n_norm = 1, c.meta.norm_mean[0] = 0.5f, c.meta.norm_std[0] = 0.25f;
    snprintf(c.meta.created_by, sizeof c.meta.created_by, "pasm_bench");
    int rc = 0;
    if (pasm_model_meta_default_classes(&c.meta, CLASSES)) rc = fail("class names");
    double save = rc ? -1.0 : median_ms(ckpt_save, &c);
    double load = save < 0 ? -1.0 : median_ms(ckpt_load, &c);
    if (!rc && (save < 0 || load < 0)) rc = fail(path);
    FILE *f = rc ? NULL : fopen(path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        printf("ckpt_save_ms_w%d %.2f\nckpt_load_ms_w%d %.2f\nckpt_mib_w%d %.1f\n", width, save,
               width, load, width, (double)ftell(f) / (1 << 20));
        fclose(f);
    }
    FILE *t = rc ? NULL : fopen(torch_path, "rb");
    if (t) {
        fclose(t);
        c.path = torch_path;
        double ms = median_ms(ckpt_load, &c);
        printf("ckpt_load_torch_ok_w%d %d\n", width, ms >= 0);
        if (ms < 0) rc = fail(torch_path);
        else printf("ckpt_load_torch_ms_w%d %.2f\n", width, ms);
    }
    printf("ckpt_w%d_rss_mb %.0f\n", width, peak_rss_mb());
    pasm_model_meta_free(&c.meta);
    pasm_net_free(c.net);
    return rc;
}

/* The practical fp32 peak: the best of several 2048^3 sgemm calls. */
static int run_sgemm(void) {
    const int n = 2048;
    float *a = pasm_alloc(sizeof(float) * n * n, "A"), *b = pasm_alloc(sizeof(float) * n * n, "B");
    float *c = pasm_alloc(sizeof(float) * n * n, "C");
    if (!a || !b || !c) return fail("sgemm matrices");
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)(i % 17) * 0.01f;
        b[i] = (float)(i % 13) * 0.01f;
    }
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    printf("sgemm_gflops %.1f\n", 2.0 * n * n * (double)n / best / 1e9);
    pasm_free(a);
    pasm_free(b);
    pasm_free(c);
    return 0;
}

/* The best time of one convolution direction over 1.5 s of reps. */
static int run_conv(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: pasm_bench conv N CIN COUT HW K STRIDE [dx|dw]\n");
        return 2;
    }
    const char *dir = argc > 8 ? argv[8] : "forward";
    pasm_conv2d_shape s = {.n = atoi(argv[2]), .c_in = atoi(argv[3]), .c_out = atoi(argv[4]),
                           .h_in = atoi(argv[5]), .w_in = atoi(argv[5]), .kernel = atoi(argv[6]),
                           .stride = atoi(argv[7])};
    s.pad = s.kernel / 2;
    if (pasm_conv2d_shape_init(&s)) return fail("conv");
    if (strcmp(dir, "forward") && strcmp(dir, "dx") && strcmp(dir, "dw")) {
        fprintf(stderr, "pasm_bench: conv: unknown direction '%s' (dx, dw)\n", dir);
        return 2;
    }
    const size_t nx = (size_t)s.n * s.c_in * s.h_in * s.w_in;
    const size_t ny = (size_t)s.n * s.c_out * s.h_out * s.w_out;
    const size_t nw = (size_t)s.c_out * s.c_in * s.kernel * s.kernel;
    const size_t ws = pasm_conv2d_workspace_size(&s);
    float *x = pasm_alloc(nx * sizeof(float), "x"), *dx = pasm_alloc(nx * sizeof(float), "dx");
    float *y = pasm_alloc(ny * sizeof(float), "y"), *w = pasm_alloc(nw * sizeof(float), "w");
    float *dw = pasm_alloc(nw * sizeof(float), "dw");
    void *work = pasm_alloc(ws ? ws : 1, "workspace");
    int rc = 0;
    if (!x || !dx || !y || !w || !dw || !work) rc = fail("allocating the convolution");
    for (size_t i = 0; !rc && i < nx; i++) x[i] = (float)(i % 17) / 17.0f - 0.5f;
    for (size_t i = 0; !rc && i < ny; i++) y[i] = (float)(i % 19) / 19.0f - 0.5f;
    for (size_t i = 0; !rc && i < nw; i++) w[i] = (float)(i % 13) / 13.0f - 0.5f;
    double best = INFINITY, t0 = now_s();
    for (int reps = 0; !rc && (reps < 3 || now_s() - t0 < 1.5); reps++) {
        const double a = now_s();
        if (dir[0] == 'f')
            pasm_conv2d_forward(&s, x, w, NULL, y, work);
        else /* y serves as dy */
            pasm_conv2d_backward(&s, x, w, y, dir[1] == 'x' ? dx : NULL, dir[1] == 'w' ? dw : NULL,
                                 NULL, work);
        const double t = now_s() - a;
        if (t < best) best = t;
    }
    if (!rc)
        printf("conv_gflops %.1f\n", 2.0 * nw * s.h_out * s.w_out * (double)s.n / best / 1e9);
    float *blocks[] = {x, dx, y, w, dw};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) pasm_free(blocks[i]);
    pasm_free(work);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: pasm_bench train|infer1|infer128 WIDTH [bf16] | flops WIDTH | load PATH | sgemm | conv N CIN COUT HW K STRIDE [dx|dw]\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "sgemm") == 0) return run_sgemm();
    if (strcmp(mode, "bf16native") == 0) {
        printf("bf16_native %d\n", pasm_precision_bf16_native());
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "pasm_bench: %s needs an argument\n", mode);
        return 2;
    }
    if (strcmp(mode, "load") == 0) return run_load(argv[2]);
    if (strcmp(mode, "conv") == 0) return run_conv(argc, argv);
    if (strcmp(mode, "curve") == 0) {
        if (argc < 6) {
            fprintf(stderr, "usage: pasm_bench curve MODEL CSV STEPS BATCH [cpu|cuda]\n");
            return 2;
        }
        return run_curve(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), argc > 6 ? argv[6] : NULL);
    }
    int width = atoi(argv[2]);
    if (strcmp(mode, "gpu-train") == 0) {
        if (argc < 4) {
            fprintf(stderr, "usage: pasm_bench gpu-train WIDTH BATCH [fp32|bf16]\n");
            return 2;
        }
        precision = argc > 4 && !strcmp(argv[4], "fp32") ? PASM_PRECISION_FP32 : PASM_PRECISION_BF16;
        return run_gpu_train(width, atoi(argv[3]));
    }
    if (strcmp(mode, "ckpt") == 0) {
        if (argc < 4) {
            fprintf(stderr, "usage: pasm_bench ckpt WIDTH DIR\n");
            return 2;
        }
        return run_ckpt(width, argv[3]);
    }
    if (argc > 3 && strcmp(argv[3], "bf16") == 0) {
        precision = PASM_PRECISION_BF16;
        suffix = "_bf16";
    } else if (argc > 3) {
        fprintf(stderr, "pasm_bench: unknown precision '%s' (bf16)\n", argv[3]);
        return 2;
    }
    if (strcmp(mode, "train") == 0) return run_train(width);
    if (strcmp(mode, "infer1") == 0) return run_infer1(width);
    if (strcmp(mode, "infer128") == 0) return run_infer128(width);
    if (strcmp(mode, "flops") == 0) return run_flops(width);
    fprintf(stderr, "pasm_bench: unknown mode '%s'\n", mode);
    return 2;
}
