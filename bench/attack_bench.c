/* pasm's side of the attack benchmark (bench/run.sh runs it; its PyTorch
 * counterpart is bench/torch_attack.py, which implements the same attacks):
 *   attack_bench model WIDTH PATH
 *       writes a seeded, untrained network (pasm_net_init seed 1,
 *       normalisation mean 0.5 std 0.25) as a pasm checkpoint, so that both
 *       sides attack the same weights
 *   attack_bench grad|iter|de MODEL CSV N [options]
 *       times pasm_attack_images on the first N faces of the FER2013 CSV
 *       against the checkpoint MODEL, with pasm mine's batching (the
 *       network is planned for min(attack batch, the images one pass can
 *       hold) images, as `pasm mine` plans it)
 *   options: --tag NAME (key name, default the attack's), --pop P, --gens G
 *       (de: 32, 8), --no-early-stop, --iter-max K (8), --batch B (1024),
 *       --threads T (2), --points PATH (writes the points as CSV: index,
 *       label,row,col,fooled,p_true_before,p_true_after,queries),
 *       --device cpu|cuda, --precision fp32|bf16 (the network's convolutions)
 * Prints "key value" lines with key = attack_TAG_wWIDTH: images/s, and
 * _faces, _s (seconds), _queries (images the scorer evaluated), _fooled,
 * _rss_mb (peak RSS), for de also _pop, _gens and _evals_per_s (candidate
 * evaluations per second: the queries without each image's clean pass).
 * Only the attack itself is timed, after a warm-up (grad on 4 faces; for de
 * on the GPU also de's initial population on them, so the GPU scorer has
 * made its windows); loading the faces and the network is not. Not a test: timings
 * depend on the machine and on what else runs on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "pasm/pasm.h"
#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#define WARMUP_FACES 4

typedef struct {
    const char *kind_name, *model, *csv, *tag, *points;
    int n, threads;
    int device;    /* --device cuda: the network on the GPU */
    int precision; /* --precision bf16: its convolutions in mixed precision */
    pasm_attack_options attack;
} bench_args;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int fail(const char *what) {
    fprintf(stderr, "attack_bench: %s: %s\n", what, pasm_last_error());
    return 1;
}

static int usage(void) {
    fprintf(stderr, "usage: attack_bench model WIDTH PATH\n"
                    "       attack_bench grad|iter|de MODEL CSV N [--tag NAME] [--pop P] "
                    "[--gens G]\n"
                    "           [--no-early-stop] [--iter-max K] [--batch B] [--threads T] "
                    "[--points PATH]\n"
                    "           [--device cpu|cuda] [--precision fp32|bf16]\n");
    return 2;
}

static int write_model(int width, const char *path) {
    pasm_net_config cfg = {
        .arch = "resnet18", .width = width, .in_channels = 1, .num_classes = 7, .input_size = 48};
    pasm_net *net;
    if (pasm_net_create(&net, &cfg, 1)) return fail("building the network");
    pasm_net_init(net, 1);
    pasm_model_meta meta = {
        .net = cfg, .n_norm = 1, .norm_mean = {0.5f}, .norm_std = {0.25f}, .seed = 1};
    pasm_status st = pasm_model_meta_default_classes(&meta, 7);
    if (!st) st = pasm_checkpoint_save(path, net, &meta);
    pasm_model_meta_free(&meta);
    pasm_net_free(net);
    return st ? fail(path) : 0;
}

static int write_points(const char *path, const int32_t *labels, const pasm_point *pt, int n) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "attack_bench: cannot write %s\n", path);
        return 1;
    }
    fprintf(f, "index,label,row,col,fooled,p_true_before,p_true_after,queries\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "%d,%d,%d,%d,%d,%.9g,%.9g,%lld\n", i, labels[i], pt[i].row, pt[i].col,
                pt[i].fooled, (double)pt[i].p_true_before, (double)pt[i].p_true_after,
                (long long)pt[i].queries);
    return fclose(f) ? 1 : 0;
}

/* The most images one scorer call can be given: de's candidates of all
 * images go through together, the other attacks pass the images themselves. */
static int plan_batch(const bench_args *a) {
    int64_t want = a->attack.kind == PASM_ATTACK_DE ? (int64_t)a->n * a->attack.de_pop : a->n;
    return want < a->attack.attack_batch ? (int)want : a->attack.attack_batch;
}

static void print_results(const bench_args *a, int width, double seconds, const pasm_point *pt) {
    char key[96];
    snprintf(key, sizeof key, "attack_%s_w%d", a->tag, width);
    int64_t queries = 0;
    int fooled = 0;
    for (int i = 0; i < a->n; i++) {
        queries += pt[i].queries;
        fooled += pt[i].fooled;
    }
    printf("%s %.3f\n%s_faces %d\n%s_s %.3f\n%s_queries %lld\n%s_fooled %d\n", key, a->n / seconds,
           key, a->n, key, seconds, key, (long long)queries, key, fooled);
    if (a->attack.kind == PASM_ATTACK_DE)
        printf("%s_pop %d\n%s_gens %d\n%s_evals_per_s %.1f\n", key, a->attack.de_pop, key,
               a->attack.de_gens, key, (double)(queries - a->n) / seconds);
    printf("%s_precision %s\n%s_rss_mb %.0f\n", key,
           pasm_precision_name((pasm_precision)a->precision), key, peak_rss_mb());
#ifdef PASM_HAVE_CUDA
    if (a->device == PASM_DEVICE_CUDA)
        printf("%s_gpu_peak_mb %.0f\n", key, (double)pasm_cuda_bytes_peak() / 1048576.0);
#endif
}

static int run_attack(const bench_args *a) {
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    pasm_net *net = NULL;
    pasm_model_meta meta;
    memset(&meta, 0, sizeof meta);
    pasm_scorer sc = {0};
    pasm_point *points = NULL;
    int64_t *index = NULL;
    int rc = 1;
    pasm_load_spec spec = {.path = a->csv, .split = "all", .input_size = 48, .channels = 1};
    if (pasm_dataset_load(&spec, &ds)) return fail(a->csv);
    if (ds.n < a->n) {
        fprintf(stderr, "attack_bench: %s has %d faces, %d asked\n", a->csv, ds.n, a->n);
        goto done;
    }
    pasm_load_options lo = {.device = a->device, .precision = a->precision};
    /* input gradients for grad, iter and the warm-up; no training buffers */
    if (pasm_checkpoint_load_mode(a->model, &lo, plan_batch(a), PASM_NET_EVAL_GRAD, &net,
                                  &meta)) {
        fail(a->model);
        goto done;
    }
    if (meta.n_norm != 1 || meta.net.input_size != 48 || meta.net.in_channels != 1) {
        fprintf(stderr, "attack_bench: %s: need a grey 48x48 model with its normalisation\n",
                a->model);
        goto done;
    }
    if (pasm_scorer_net(&sc, net, meta.norm_mean, meta.norm_std)) {
        fail("scorer");
        goto done;
    }
    points = malloc((size_t)a->n * sizeof *points);
    index = malloc((size_t)a->n * sizeof *index);
    if (!points || !index) goto done;
    for (int i = 0; i < a->n; i++)
        index[i] = i;
    pasm_attack_options warm = a->attack;
    warm.kind = PASM_ATTACK_GRAD;
    int n_warm = a->n < WARMUP_FACES ? a->n : WARMUP_FACES;
    if (pasm_attack_images(&sc, &warm, ds.images, ds.labels, index, n_warm, points)) {
        fail("warm-up");
        goto done;
    }
    /* a GPU scorer makes its windows at de's first call (PyTorch's GPU side
     * warms up with its whole attack on a batch of faces) */
    if (a->attack.kind == PASM_ATTACK_DE && a->device == PASM_DEVICE_CUDA) {
        warm = a->attack;
        warm.de_gens = 0;
        if (pasm_attack_images(&sc, &warm, ds.images, ds.labels, index, n_warm, points)) {
            fail("de warm-up");
            goto done;
        }
    }
    double t0 = now_s();
    if (pasm_attack_images(&sc, &a->attack, ds.images, ds.labels, index, a->n, points)) {
        fail(a->kind_name);
        goto done;
    }
    print_results(a, meta.net.width, now_s() - t0, points);
    rc = a->points ? write_points(a->points, ds.labels, points, a->n) : 0;
done:
    free(points);
    free(index);
    pasm_scorer_net_free(&sc);
    pasm_net_free(net);
    pasm_model_meta_free(&meta);
    pasm_dataset_free(&ds);
    return rc;
}

static int parse_int(const char *opt, const char *val, int lo, int *out) {
    char *end;
    long v = val ? strtol(val, &end, 10) : 0;
    if (!val || *end || v < lo || v > 1000000) {
        fprintf(stderr, "attack_bench: %s needs an integer >= %d\n", opt, lo);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int parse_options(int argc, char **argv, bench_args *a) {
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(opt, "--no-early-stop")) {
            a->attack.de_early_stop = 0;
            continue;
        }
        if (!strcmp(opt, "--tag") && val)
            a->tag = val;
        else if (!strcmp(opt, "--points") && val)
            a->points = val;
        else if (!strcmp(opt, "--pop"))
            ok = parse_int(opt, val, 4, &a->attack.de_pop);
        else if (!strcmp(opt, "--gens"))
            ok = parse_int(opt, val, 0, &a->attack.de_gens);
        else if (!strcmp(opt, "--iter-max"))
            ok = parse_int(opt, val, 1, &a->attack.iter_max);
        else if (!strcmp(opt, "--batch"))
            ok = parse_int(opt, val, 1, &a->attack.attack_batch);
        else if (!strcmp(opt, "--device") && val) {
            pasm_device d = PASM_DEVICE_CPU;
            ok = !pasm_device_parse(val, &d);
            if (ok && pasm_device_check(d)) { /* a device not here: not a usage error */
                fprintf(stderr, "attack_bench: %s\n", pasm_last_error());
                exit(1);
            }
            if (!ok) fprintf(stderr, "attack_bench: --device %s: %s\n", val, pasm_last_error());
            a->device = (int)d;
        } else if (!strcmp(opt, "--precision") && val) {
            pasm_precision p = PASM_PRECISION_FP32;
            ok = !pasm_precision_parse(val, &p);
            if (!ok) fprintf(stderr, "attack_bench: --precision %s: %s\n", val, pasm_last_error());
            a->precision = (int)p;
        } else if (!strcmp(opt, "--threads"))
            ok = parse_int(opt, val, 1, &a->threads);
        else {
            fprintf(stderr, "attack_bench: unknown option or missing value: %s\n", opt);
            return 0;
        }
        if (!ok) return 0;
        i++;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "model")) return write_model(atoi(argv[2]), argv[3]);
    if (argc < 5) return usage();
    bench_args a = {
        .kind_name = argv[1], .model = argv[2], .csv = argv[3], .tag = argv[1], .threads = 2};
    pasm_attack_defaults(&a.attack);
    if (pasm_attack_parse(argv[1], &a.attack.kind)) return fail("attack");
    if (!parse_int("N", argv[4], 1, &a.n) || !parse_options(argc - 5, argv + 5, &a)) return usage();
    pasm_set_threads(a.threads);
    return run_attack(&a);
}
