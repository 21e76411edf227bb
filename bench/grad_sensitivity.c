/* How far a float32 ResNet's gradients move when its weights move by a unit or
 * two in the last place: the floor under any comparison of two
 * implementations that sum in different orders (the GPU against the CPU).
 * A ReLU whose input sits within rounding of zero goes one way on one side
 * and the other way on the other, and the gradient behind it jumps.
 *
 *   grad_sensitivity random WIDTH BATCH SEEDS
 *       the network and batch of tests/cuda/test_cuda_net.c (init seed 7,
 *       normal inputs from stream 3/77, labels 0..6,3,...)
 *   grad_sensitivity fixture INIT.safetensors FER2013.csv SEEDS
 *       tests/nn/test_parity.c's gray48 case: the checkpoint and the first
 *       16 PublicTest faces, ((v / 255) - 0.5) / 0.25
 *
 * For each seed s = 1..SEEDS a copy of the network gets every weight
 * multiplied by 1 + u * 6e-8 (u in {-1, 0, 1}, drawn with srand(s): one or
 * two units in the last place), and
 * both take the same training step; printed per seed: the input gradient's
 * and the worst parameter gradient's max|diff|/max|ref|, relative L2 and
 * cosine; in random mode also the momentum after one SGD step, the losses
 * and parameters after three, and the frozen (evaluation) network's input
 * gradient from the trained weights under the same kind of perturbation.
 * These figures set the limits of test_gradient_close (tests/util). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/pasm.h"

typedef struct {
    double max_rel, l2, cosine;
} diff;

static diff compare(const float *a, const float *ref, int64_t n) {
    double m = 0, d = 0, dd = 0, rr = 0, aa = 0, ar = 0;
    for (int64_t i = 0; i < n; i++) {
        const double x = a[i], r = ref[i];
        m = fmax(m, fabs(r));
        d = fmax(d, fabs(x - r));
        dd += (x - r) * (x - r);
        rr += r * r;
        aa += x * x;
        ar += x * r;
    }
    diff out = {m > 0 ? d / m : d, rr > 0 ? sqrt(dd / rr) : sqrt(dd),
                aa > 0 && rr > 0 ? ar / sqrt(aa * rr) : 1};
    return out;
}

static void show(const char *what, diff d) {
    printf("  %-34s max|diff|/max|ref| %-9.3g L2 %-9.3g cosine %.7f\n", what, d.max_rel, d.l2,
           d.cosine);
}

/* Every weight times 1 + u * 6e-8, u in {-1, 0, 1}: one unit in the last
 * place down, or one or two up (1 + 6e-8 rounds to 1 + 2^-23 in float). */
static void perturb(pasm_net *net, unsigned seed) {
    int64_t count;
    float *w = pasm_net_param_block(net, &count);
    srand(seed);
    for (int64_t i = 0; i < count; i++) w[i] *= 1.0f + (float)((rand() % 3) - 1) * 6e-8f;
}

static int check(pasm_status st, const char *what) {
    if (st == PASM_OK) return 0;
    fprintf(stderr, "grad_sensitivity: %s: %s\n", what, pasm_last_error());
    return 1;
}

/* A training step of a and of b on x; their gradients compared. */
static int step(pasm_net *a, pasm_net *b, const float *x, int n, int k, const int32_t *labels,
                float *da, float *db, int64_t in_count) {
    float *la = malloc((size_t)n * k * 4), *ga = malloc((size_t)n * k * 4);
    float *gb = malloc((size_t)n * k * 4);
    const float *l;
    int bad = check(pasm_net_forward(a, x, n, 1, &l), "forward");
    if (!bad) {
        memcpy(la, l, (size_t)n * k * 4);
        pasm_cross_entropy(n, k, la, labels, 0, NULL, ga, NULL);
        bad = check(pasm_net_forward(b, x, n, 1, &l), "forward");
    }
    if (!bad) {
        show("logits", compare(l, la, (int64_t)n * k));
        pasm_cross_entropy(n, k, l, labels, 0, NULL, gb, NULL);
        bad = check(pasm_net_backward(a, ga, da), "backward") ||
              check(pasm_net_backward(b, gb, db), "backward");
    }
    if (!bad) {
        show("input gradient", compare(db, da, in_count));
        diff worst = {0, 0, 1};
        const char *worst_name = "";
        for (int i = 0; i < pasm_net_n_params(a); i++) {
            const pasm_tensor *t = pasm_net_grad(a, i);
            diff d = compare(pasm_net_grad(b, i)->data, t->data, pasm_tensor_numel(t));
            if (d.max_rel > worst.max_rel) worst_name = t->name, worst.max_rel = d.max_rel;
            worst.l2 = fmax(worst.l2, d.l2);
            worst.cosine = fmin(worst.cosine, d.cosine);
        }
        char label[96];
        snprintf(label, sizeof label, "parameter gradients (worst: %.14s)", worst_name);
        show(label, worst);
    }
    free(la), free(ga), free(gb);
    return bad;
}

/* random mode's three SGD steps and the frozen network afterwards */
static int trajectory(pasm_net *a, pasm_net *b, const pasm_net_config *cfg, const float *x, int n,
                      const int32_t *labels, unsigned seed) {
    const int k = cfg->num_classes;
    int64_t count, in_count = (int64_t)n * cfg->in_channels * cfg->input_size * cfg->input_size;
    pasm_net_param_block(a, &count);
    pasm_sgd_options o = {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 5e-4f, .nesterov = 1};
    pasm_sgd sa, sb;
    if (check(pasm_sgd_init(&sa, &o, count), "sgd")) return 1;
    if (check(pasm_sgd_init(&sb, &o, count), "sgd")) {
        pasm_sgd_free(&sa);
        return 1;
    }
    float la[3], lb[3], *g = malloc((size_t)n * k * 4);
    float *da = malloc((size_t)in_count * 4), *db = malloc((size_t)in_count * 4);
    const float *l;
    int bad = 0;
    for (int s = 0; s < 3 && !bad; s++) {
        bad = check(pasm_sgd_step_net(&sa, a, o.lr), "sgd step") ||
              check(pasm_sgd_step_net(&sb, b, o.lr), "sgd step");
        if (bad) break;
        if (s == 0) show("momentum after one step", compare(sb.momentum_buffer, sa.momentum_buffer, count));
        pasm_net *nets[2] = {a, b};
        float *losses[2] = {la, lb};
        for (int j = 0; j < 2 && !bad; j++) {
            bad = check(pasm_net_forward(nets[j], x, n, 1, &l), "forward");
            if (bad) break;
            losses[j][s] = (float)pasm_cross_entropy(n, k, l, labels, 0, NULL, g, NULL);
            bad = check(pasm_net_backward(nets[j], g, NULL), "backward");
        }
    }
    if (!bad) {
        show("losses after 1..3 steps", compare(lb, la, 3));
        show("parameters after 3 steps",
             compare(pasm_net_param_block(b, NULL), pasm_net_param_block(a, NULL), count));
        pasm_net *ea = NULL, *eb = NULL;
        bad = check(pasm_net_create_mode(&ea, cfg, n, PASM_NET_EVAL_GRAD), "network") ||
              check(pasm_net_create_mode(&eb, cfg, n, PASM_NET_EVAL_GRAD), "network") ||
              check(pasm_net_copy_state(ea, b), "copy") || check(pasm_net_copy_state(eb, b), "copy");
        if (!bad) {
            perturb(eb, seed + 1000);
            bad = check(pasm_net_forward(ea, x, n, 0, &l), "forward");
            if (!bad) {
                pasm_cross_entropy(n, k, l, labels, 0, NULL, g, NULL);
                bad = check(pasm_net_backward(ea, g, da), "backward") ||
                      check(pasm_net_forward(eb, x, n, 0, &l), "forward");
            }
            if (!bad) {
                pasm_cross_entropy(n, k, l, labels, 0, NULL, g, NULL);
                bad = check(pasm_net_backward(eb, g, db), "backward");
            }
            if (!bad) show("frozen network's input gradient", compare(db, da, in_count));
        }
        pasm_net_free(ea);
        pasm_net_free(eb);
    }
    pasm_sgd_free(&sa);
    pasm_sgd_free(&sb);
    free(g), free(da), free(db);
    return bad;
}

/* The first n PublicTest faces of a FER2013 CSV, normalised as gray48's. */
static int read_faces(const char *path, float *x, int n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "grad_sensitivity: cannot open %s\n", path);
        return 1;
    }
    static char line[16384];
    int got = 0;
    while (got < n && fgets(line, sizeof line, f)) {
        if (!strstr(line, ",PublicTest")) continue;
        char *p = strchr(line, ',');
        if (!p) break;
        p++;
        for (int i = 0; i < 48 * 48; i++) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v > 255) {
                fprintf(stderr, "grad_sensitivity: %s: a PublicTest row's pixel %d is not 0..255\n",
                        path, i);
                fclose(f);
                return 1;
            }
            p = end;
            x[(size_t)got * 2304 + i] = ((float)v / 255.0f - 0.5f) / 0.25f;
        }
        got++;
    }
    fclose(f);
    if (got < n) fprintf(stderr, "grad_sensitivity: %s has %d PublicTest faces, not %d\n", path, got, n);
    return got < n;
}

int main(int argc, char **argv) {
    const int fixture = argc == 5 && !strcmp(argv[1], "fixture");
    if (!fixture && !(argc == 5 && !strcmp(argv[1], "random"))) {
        fprintf(stderr, "usage: grad_sensitivity random WIDTH BATCH SEEDS\n"
                        "       grad_sensitivity fixture INIT.safetensors FER2013.csv SEEDS\n");
        return 2;
    }
    const int seeds = atoi(argv[4]);
    pasm_net_config cfg = {.arch = "resnet18", .in_channels = 1, .num_classes = 7,
                           .input_size = 48, .precision = PASM_PRECISION_FP32};
    int n = 16;
    pasm_model_meta meta;
    memset(&meta, 0, sizeof meta);
    if (!fixture) {
        cfg.width = atoi(argv[2]);
        n = atoi(argv[3]);
        if (cfg.width < 1 || n < 1 || n > 4096) {
            fprintf(stderr, "grad_sensitivity: WIDTH and BATCH must be positive (BATCH <= 4096)\n");
            return 2;
        }
    }
    if (seeds < 1) {
        fprintf(stderr, "grad_sensitivity: SEEDS must be at least 1\n");
        return 2;
    }
    const int64_t in_count = (int64_t)n * 48 * 48;
    float *x = malloc((size_t)in_count * 4), *da = malloc((size_t)in_count * 4);
    float *db = malloc((size_t)in_count * 4);
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    pasm_net *base = NULL;
    int bad = 0;
    if (fixture) {
        bad = check(pasm_checkpoint_load(argv[2], NULL, n, &base, &meta), argv[2]);
        if (!bad && (meta.net.in_channels != 1 || meta.net.input_size != 48)) {
            fprintf(stderr, "grad_sensitivity: %s is a %d-channel %dx%d network; fixture mode "
                            "takes FER2013's 1-channel 48x48 faces\n",
                    argv[2], meta.net.in_channels, meta.net.input_size, meta.net.input_size);
            bad = 1;
        }
        if (!bad) bad = read_faces(argv[3], x, n);
        cfg = meta.net;
        /* gray48's labels are its faces' own: read them from the CSV's first field */
        FILE *f = bad ? NULL : fopen(argv[3], "r");
        static char line[16384];
        int got = 0;
        while (f && got < n && fgets(line, sizeof line, f))
            if (strstr(line, ",PublicTest")) labels[got++] = atoi(line);
        if (f) fclose(f);
        for (int i = 0; i < got && !bad; i++)
            if (labels[i] < 0 || labels[i] >= cfg.num_classes) {
                fprintf(stderr, "grad_sensitivity: %s: PublicTest face %d has label %d, not 0..%d\n",
                        argv[3], i, labels[i], cfg.num_classes - 1);
                bad = 1;
            }
    } else {
        bad = check(pasm_net_create(&base, &cfg, n), "network");
        if (!bad) pasm_net_init(base, 7);
        pasm_rng rng;
        pasm_rng_init(&rng, 3, 77, 0, 0);
        for (int64_t i = 0; i < in_count; i++) x[i] = pasm_rng_normal(&rng);
        for (int i = 0; i < n; i++) labels[i] = i % 8 == 7 ? 3 : i % 8;
    }
    for (int s = 1; s <= seeds && !bad; s++) {
        pasm_net *a = NULL, *b = NULL;
        bad = check(pasm_net_create(&a, &cfg, n), "network") ||
              check(pasm_net_create(&b, &cfg, n), "network") ||
              check(pasm_net_copy_state(a, base), "copy") || check(pasm_net_copy_state(b, base), "copy");
        if (!bad) {
            perturb(b, (unsigned)s);
            printf("seed %d (width %d, batch %d)\n", s, cfg.width, n);
            bad = step(a, b, x, n, cfg.num_classes, labels, da, db, in_count);
            if (!bad && !fixture) bad = trajectory(a, b, &cfg, x, n, labels, (unsigned)s);
        }
        pasm_net_free(a);
        pasm_net_free(b);
    }
    pasm_net_free(base);
    pasm_model_meta_free(&meta);
    free(x), free(da), free(db), free(labels);
    return bad;
}
