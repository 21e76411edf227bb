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
#include <sys/stat.h>
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

/* ---- data loaded once a process ----
 * `pasm run` and `pasm experiment` run their phases in one process, and
 * each phase loads what it needs: the same splits of the same file again
 * and again (a two-round run read FER2013's csv.gz 14 times, 1.8 s each on
 * the 2-core machine). A CSV's loads are kept and copied out while the file
 * (and a FER+ labels file) is the one that was read: the same device,
 * inode, size and modification time. Folders are read each time. */
enum { CACHE_SLOTS = 6 };
#ifndef CACHE_MAX_BYTES /* (tests set a smaller one) */
#define CACHE_MAX_BYTES ((size_t)1 << 30) /* of images kept in all; a larger load is not */
#endif

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

typedef struct {
    char *path, *split, *labels; /* NULL: an empty slot */
    int input_size, channels;
    file_id id, labels_id;
    pasm_dataset ds;
    unsigned long long used;
} cache_slot;

static cache_slot cache[CACHE_SLOTS];
static unsigned long long cache_clock;

/* A regular file's identity; 0 for anything else (not kept). */
static int identify(const char *path, file_id *id) {
    struct stat sb;
    memset(id, 0, sizeof *id);
    if (!path || stat(path, &sb) || !S_ISREG(sb.st_mode)) return 0;
    *id = (file_id){sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim};
    return 1;
}

static int same_id(const file_id *a, const file_id *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static int same_str(const char *a, const char *b) {
    return !strcmp(a ? a : "", b ? b : "");
}

/* Bytes of a dataset's images. */
static size_t images_bytes(const pasm_dataset *ds) {
    return (size_t)ds->n * ds->channels * ds->size * ds->size;
}

static size_t slot_bytes(const cache_slot *c) { return c->path ? images_bytes(&c->ds) : 0; }

static void slot_free(cache_slot *c) {
    free(c->path), free(c->split), free(c->labels);
    pasm_dataset_free(&c->ds);
    memset(c, 0, sizeof *c);
}

void cli_data_cache_clear(void) {
    for (int i = 0; i < CACHE_SLOTS; i++) slot_free(&cache[i]);
}

/* A copy of all of src. */
static pasm_status dataset_copy(const pasm_dataset *src, pasm_dataset *out) {
    int *idx = malloc((size_t)src->n * sizeof *idx);
    if (!idx) return pasm_errorf(PASM_ERR_NOMEM, "out of memory copying %s", src->source);
    for (int i = 0; i < src->n; i++) idx[i] = i;
    pasm_status st = pasm_dataset_subset(src, idx, src->n, out);
    free(idx);
    return st;
}

pasm_status cli_dataset_load(const pasm_load_spec *spec, pasm_dataset *ds) {
    file_id id, labels_id;
    const int keep = identify(spec->path, &id) && (!spec->labels || identify(spec->labels,
                                                                              &labels_id));
    if (!spec->labels) memset(&labels_id, 0, sizeof labels_id);
    if (keep)
        for (int i = 0; i < CACHE_SLOTS; i++) {
            cache_slot *c = &cache[i];
            if (c->path && !strcmp(c->path, spec->path) && same_str(c->split, spec->split) &&
                same_str(c->labels, spec->labels) && c->input_size == spec->input_size &&
                c->channels == spec->channels && same_id(&c->id, &id) &&
                same_id(&c->labels_id, &labels_id)) {
                c->used = ++cache_clock;
                return dataset_copy(&c->ds, ds);
            }
        }
    pasm_status st = pasm_dataset_load(spec, ds);
    const size_t bytes = st ? 0 : images_bytes(ds);
    if (st || !keep || ds->n == 0 || bytes > CACHE_MAX_BYTES) return st;
    cache_slot *c;
    for (;;) { /* an empty slot once the load fits; until then the least recently used goes */
        size_t total = 0;
        cache_slot *empty = NULL, *oldest = NULL;
        for (int i = 0; i < CACHE_SLOTS; i++) {
            if (!cache[i].path) {
                if (!empty) empty = &cache[i];
                continue;
            }
            total += slot_bytes(&cache[i]);
            if (!oldest || cache[i].used < oldest->used) oldest = &cache[i];
        }
        if (empty && total + bytes <= CACHE_MAX_BYTES) {
            c = empty;
            break;
        }
        slot_free(oldest); /* not NULL: the slots are full, or something takes the room */
    }
    c->path = strdup(spec->path);
    c->split = spec->split ? strdup(spec->split) : NULL;
    c->labels = spec->labels ? strdup(spec->labels) : NULL;
    if (!c->path || (spec->split && !c->split) || (spec->labels && !c->labels) ||
        dataset_copy(ds, &c->ds)) {
        slot_free(c); /* not kept; the load itself stands */
        pasm_clear_error();
        return PASM_OK;
    }
    c->input_size = spec->input_size;
    c->channels = spec->channels;
    c->id = id;
    c->labels_id = labels_id;
    c->used = ++cache_clock;
    return PASM_OK;
}

int cli_load_data_for_model(const char *cmd, const char *path, const char *split,
                            const pasm_model_meta *meta, int ignore_unknown, pasm_dataset *ds) {
    pasm_load_spec spec = {.path = path, .split = split, .input_size = meta->net.input_size,
                           .channels = meta->net.in_channels};
    pasm_status st = cli_dataset_load(&spec, ds);
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
    return a->n == b->n && a->channels == b->channels && a->size == b->size &&
           !memcmp(a->images, b->images, images_bytes(a));
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
