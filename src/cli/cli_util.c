/* Shared command-line helpers: strict option parsing with messages that name
 * the option, error printing, threads, signals, model and data loading. */
#include "cli/cli_util.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "pasm %s: %s: '%s' is not an integer in %d..%d\n", cmd, opt, s, lo, hi);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "pasm %s: %s: '%s' is not a number in %g..%g\n", cmd, opt, s, lo, hi);
        return 0;
    }
    *out = (float)v;
    return 1;
}

int cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "pasm %s: %s: '%s' is not a non-negative integer\n", cmd, opt, s);
        return 0;
    }
    *out = v;
    return 1;
}

int cli_fail(const char *cmd, pasm_status st) {
    fprintf(stderr, "pasm %s: %s\n", cmd, pasm_last_error());
    return st == PASM_ERR_INVALID ? EXIT_USAGE : EXIT_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "pasm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(pasm %s --help lists the options)\n", cmd);
    return EXIT_USAGE;
}

void cli_threads(int threads) { pasm_set_threads(threads); }

int cli_stderr_is_tty(void) { return isatty(STDERR_FILENO); }

static volatile int *signal_flag;

static void on_signal(int sig) {
    if (signal_flag) *signal_flag = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C stops at once */
}

void cli_catch_signals(volatile int *flag) {
    signal_flag = flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_precision(const char *cmd, const char *s, int *out) {
    pasm_precision p;
    if (pasm_precision_parse(s, &p)) {
        cli_usage_error(cmd, "--precision: %s", pasm_last_error());
        return 0;
    }
    *out = (int)p;
    return 1;
}

int cli_device(const char *cmd, const char *s, int *out) {
    pasm_device d;
    if (pasm_device_parse(s, &d)) return cli_usage_error(cmd, "--device: %s", pasm_last_error());
    if (pasm_device_check(d)) return cli_fail(cmd, PASM_ERR_UNSUPPORTED);
    *out = (int)d;
    return EXIT_OK;
}

void cli_print_device(int device) {
    if (device == PASM_DEVICE_CPU) return;
    char buf[256];
    printf("device: %s\n", pasm_device_describe((pasm_device)device, buf, sizeof buf));
}

int cli_load_model(const char *cmd, const char *path, const cli_model_options *mo, int max_batch,
                   pasm_net_mode mode, pasm_net **net, pasm_model_meta *meta) {
    pasm_load_options lo = {.input_size = mo ? mo->input_size : 0,
                            .classes = mo ? mo->classes : NULL,
                            .norm = mo ? mo->norm : NULL,
                            .precision = mo ? mo->precision : 0,
                            .device = mo ? mo->device : 0};
    memset(meta, 0, sizeof *meta);
    pasm_status st = pasm_checkpoint_load_mode(path, &lo, max_batch, mode, net, meta);
    if (st) return cli_fail(cmd, st);
    if (meta->n_norm != meta->net.in_channels) {
        fprintf(stderr, "pasm %s: %s has no normalisation (a file saved without pasm's "
                        "metadata): pass --norm MEAN,STD in 0..1 pixel units\n",
                cmd, path);
        pasm_net_free(*net);
        *net = NULL;
        pasm_model_meta_free(meta);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int cli_load_data_for_model(const char *cmd, const char *path, const char *split,
                            const pasm_model_meta *meta, int ignore_unknown, pasm_dataset *ds) {
    pasm_load_spec spec = {.path = path, .split = split, .input_size = meta->net.input_size,
                           .channels = meta->net.in_channels};
    pasm_status st = pasm_dataset_load(&spec, ds);
    if (st) return cli_fail(cmd, st);
    char *warning = NULL;
    st = pasm_dataset_match_classes(ds, (const char *const *)meta->class_names, meta->n_classes,
                                    ignore_unknown, &warning);
    if (warning) {
        fprintf(stderr, "pasm %s: warning: %s\n", cmd, warning);
        free(warning);
    }
    if (st) {
        pasm_dataset_free(ds);
        return cli_fail(cmd, st);
    }
    if (ds->n == 0) {
        fprintf(stderr, "pasm %s: %s: no images to work on\n", cmd, ds->source ? ds->source : path);
        pasm_dataset_free(ds);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

int cli_same_images(const pasm_dataset *a, const pasm_dataset *b) {
    size_t bytes = (size_t)a->n * a->channels * a->size * a->size;
    return a->n == b->n && a->channels == b->channels && a->size == b->size &&
           !memcmp(a->images, b->images, bytes);
}

void cli_print_steps(int device, const pasm_train_result *r) {
    if (!device) return;
    if (!r->gpu_trainer) {
        printf("steps: batches and loss on the host around the GPU network\n");
        return;
    }
    printf("steps: on the GPU (batches, augmentation and loss there); %lld replayed as a CUDA "
           "graph\n",
           (long long)r->graph_steps);
}
