/* `pasm synth`: draws a set of synthetic grey faces into a split/class folder
 * tree with the boxes of their expression regions (regions.csv), for checking
 * where PASM's attacks point against ground truth. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "pasm/synth.h"

static void synth_usage(FILE *out) {
    pasm_synth_options d;
    pasm_synth_options_default(&d);
    fprintf(out,
            "usage: pasm synth --out DIR [options]\n\n"
            "Draws synthetic grey faces whose expression (FER2013's 7 classes) lives only in\n"
            "the mouth, brows and eyes, into DIR/{train,val,test}/<class>/NNNNNN.png (70/15/15,\n"
            "classes balanced) with DIR/regions.csv (the regions' boxes) and DIR/faces.csv.\n"
            "DIR must be new or empty.\n\n"
            "options:\n"
            "  -o, --out DIR       output folder (required)\n"
            "  -n, --count N       faces in all splits together (default %d)\n"
            "  -s, --size N        image side in pixels, %d..%d (default %d)\n"
            "      --seed S        random seed, a non-negative integer (default %llu)\n"
            "      --ambiguous F   fraction of faces blending two classes' expressions,\n"
            "                      labelled with the dominant one (default %g)\n"
            "      --glasses F     fraction of faces wearing glasses (default %g)\n"
            "      --hands F       fraction of faces partly covered by a hand (default %g)\n"
            "  -q, --quiet         print nothing on success (default off)\n"
            "  -h, --help          this text\n",
            d.count, PASM_SYNTH_MIN_SIZE, PASM_SYNTH_MAX_SIZE, d.size, (unsigned long long)d.seed,
            (double)d.ambiguous_fraction, (double)d.glasses_fraction, (double)d.hand_fraction);
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "pasm synth: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (pasm synth --help lists the options)\n");
    return 2;
}

static int parse_int(const char *name, const char *text, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "pasm synth: %s must be an integer in %ld..%ld, got '%s'\n", name, lo, hi,
                text);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int parse_seed(const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || strchr(text, '-')) {
        fprintf(stderr, "pasm synth: --seed must be a non-negative integer, got '%s'\n", text);
        return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

static int parse_fraction(const char *name, const char *text, float *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= 0.0 && v <= 1.0)) {
        fprintf(stderr, "pasm synth: %s must be a number in 0..1, got '%s'\n", name, text);
        return 0;
    }
    *out = (float)v;
    return 1;
}

static void print_split(const pasm_synth_stats *s, int split) {
    int lo = s->per_class[split][0], hi = lo;
    for (int c = 1; c < PASM_SYNTH_N_CLASSES; c++) {
        if (s->per_class[split][c] < lo) lo = s->per_class[split][c];
        if (s->per_class[split][c] > hi) hi = s->per_class[split][c];
    }
    if (lo == hi)
        printf("  %-5s %7d faces (%d per class)\n", pasm_synth_split_name(split), s->count[split],
               lo);
    else
        printf("  %-5s %7d faces (%d-%d per class)\n", pasm_synth_split_name(split),
               s->count[split], lo, hi);
}

static void print_summary(const char *out_dir, const pasm_synth_options *o,
                          const pasm_synth_stats *s) {
    int total = s->count[0] + s->count[1] + s->count[2];
    printf("pasm synth: %d faces of %dx%d (seed %llu) in %s, %.2f s\n", total, o->size, o->size,
           (unsigned long long)o->seed, out_dir, s->seconds);
    for (int split = 0; split < 3; split++) print_split(s, split);
    printf("  %d ambiguous, %d with glasses, %d with a hand; boxes in %s/regions.csv\n",
           s->ambiguous, s->glasses, s->hands, out_dir);
}

enum { OPT_SEED = 256, OPT_AMBIGUOUS, OPT_GLASSES, OPT_HANDS };

/* Fills o and *out_dir from argv; returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, pasm_synth_options *o, const char **out_dir,
                      int *quiet) {
    static const struct option longs[] = {{"out", required_argument, NULL, 'o'},
                                          {"count", required_argument, NULL, 'n'},
                                          {"size", required_argument, NULL, 's'},
                                          {"seed", required_argument, NULL, OPT_SEED},
                                          {"ambiguous", required_argument, NULL, OPT_AMBIGUOUS},
                                          {"glasses", required_argument, NULL, OPT_GLASSES},
                                          {"hands", required_argument, NULL, OPT_HANDS},
                                          {"quiet", no_argument, NULL, 'q'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    optind = 1;
    opterr = 0;
    int c, ok = 1;
    while (ok && (c = getopt_long(argc, argv, ":o:n:s:qh", longs, NULL)) != -1) {
        switch (c) {
        case 'o': *out_dir = optarg; break;
        case 'n': ok = parse_int("--count", optarg, 1, PASM_SYNTH_MAX_COUNT, &o->count); break;
        case 's':
            ok = parse_int("--size", optarg, PASM_SYNTH_MIN_SIZE, PASM_SYNTH_MAX_SIZE, &o->size);
            break;
        case OPT_SEED: ok = parse_seed(optarg, &o->seed); break;
        case OPT_AMBIGUOUS:
            ok = parse_fraction("--ambiguous", optarg, &o->ambiguous_fraction);
            break;
        case OPT_GLASSES: ok = parse_fraction("--glasses", optarg, &o->glasses_fraction); break;
        case OPT_HANDS: ok = parse_fraction("--hands", optarg, &o->hand_fraction); break;
        case 'q': *quiet = 1; break;
        case 'h': synth_usage(stdout); return 0;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!ok) return 2;
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (!*out_dir || !**out_dir) return usage_error("%s", "--out DIR is required");
    return -1;
}

int pasm_cmd_synth(int argc, char **argv) {
    pasm_synth_options o;
    pasm_synth_options_default(&o);
    const char *out_dir = NULL;
    int quiet = 0;
    int code = parse_args(argc, argv, &o, &out_dir, &quiet);
    if (code >= 0) return code;
    pasm_synth_stats stats;
    if (pasm_synth_write(out_dir, &o, &stats) != PASM_OK) {
        fprintf(stderr, "pasm synth: %s\n", pasm_last_error());
        return 1;
    }
    if (!quiet) print_summary(out_dir, &o, &stats);
    return 0;
}
