/* The in-memory dataset: allocation, freeing, subsets, class counts, and
 * class names (FER2013's and FER+'s lists, synonyms, and remapping a
 * dataset's labels to a model's class list). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/data_internal.h"

const char *const pasm_fer2013_classes[8] = {"Angry", "Disgust",  "Fear",    "Happy",
                                             "Sad",   "Surprise", "Neutral", "Contempt"};
const char *const pasm_ferplus_classes[8] = {"neutral", "happiness", "surprise", "sadness",
                                             "anger",   "disgust",   "fear",     "contempt"};

char *data_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *data_sprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void free_strings(char **s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void pasm_dataset_free(pasm_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    free_strings(ds->class_names, ds->n_classes);
    free_strings(ds->paths, ds->n);
    free(ds->rows);
    free(ds->source);
    memset(ds, 0, sizeof *ds);
}

pasm_status pasm_dataset_alloc(pasm_dataset *ds, int n, int channels, int size,
                               const char *source) {
    memset(ds, 0, sizeof *ds);
    if (n < 0 || (channels != 1 && channels != 3) || size < 1 || size > 4096)
        return pasm_errorf(PASM_ERR_INVALID,
                           "dataset of %d images, %d channels, size %d: need n >= 0, "
                           "channels 1 or 3, size 1..4096",
                           n, channels, size);
    size_t bytes = (size_t)n * (size_t)channels * (size_t)size * (size_t)size;
    ds->images = calloc(bytes ? bytes : 1, 1);
    ds->labels = malloc(((size_t)n ? (size_t)n : 1) * sizeof *ds->labels);
    ds->source = data_strdup(source ? source : "");
    if (!ds->images || !ds->labels || !ds->source) {
        pasm_dataset_free(ds);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for %d images of %dx%dx%d", n, channels,
                           size, size);
    }
    for (int i = 0; i < n; i++)
        ds->labels[i] = -1;
    ds->n = n;
    ds->channels = channels;
    ds->size = size;
    return PASM_OK;
}

pasm_status pasm_dataset_set_classes(pasm_dataset *ds, const char *const *names, int n_classes) {
    char **copy = calloc(n_classes > 0 ? (size_t)n_classes : 1, sizeof *copy);
    if (!copy) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for class names");
    for (int i = 0; i < n_classes; i++) {
        copy[i] = data_strdup(names[i]);
        if (!copy[i]) {
            free_strings(copy, i);
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory for class names");
        }
    }
    free_strings(ds->class_names, ds->n_classes);
    ds->class_names = copy;
    ds->n_classes = n_classes;
    return PASM_OK;
}

static pasm_status copy_paths(const pasm_dataset *ds, const int *idx, int n, pasm_dataset *out) {
    if (!ds->paths) return PASM_OK;
    out->paths = calloc(n > 0 ? (size_t)n : 1, sizeof *out->paths);
    if (!out->paths) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for paths");
    for (int i = 0; i < n; i++) {
        out->paths[i] = data_strdup(ds->paths[idx[i]] ? ds->paths[idx[i]] : "");
        if (!out->paths[i]) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for paths");
    }
    return PASM_OK;
}

pasm_status pasm_dataset_subset(const pasm_dataset *ds, const int *idx, int n, pasm_dataset *out) {
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return pasm_errorf(PASM_ERR_INVALID, "%s: subset index %d outside 0..%d", ds->source,
                               idx[i], ds->n - 1);
    pasm_status st = pasm_dataset_alloc(out, n, ds->channels, ds->size, ds->source);
    if (st != PASM_OK) return st;
    size_t image_bytes = (size_t)ds->channels * ds->size * ds->size;
    for (int i = 0; i < n; i++) {
        memcpy(out->images + i * image_bytes, ds->images + idx[i] * image_bytes, image_bytes);
        out->labels[i] = ds->labels[idx[i]];
    }
    out->labelled = ds->labelled;
    st = pasm_dataset_set_classes(out, (const char *const *)ds->class_names, ds->n_classes);
    if (st == PASM_OK) st = copy_paths(ds, idx, n, out);
    if (st == PASM_OK && ds->rows) {
        out->rows = malloc((n > 0 ? (size_t)n : 1) * sizeof *out->rows);
        if (!out->rows) st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for rows");
        for (int i = 0; st == PASM_OK && i < n; i++)
            out->rows[i] = ds->rows[idx[i]];
    }
    if (st != PASM_OK) pasm_dataset_free(out);
    return st;
}

void pasm_dataset_class_counts(const pasm_dataset *ds, int64_t *counts) {
    for (int c = 0; c < ds->n_classes; c++)
        counts[c] = 0;
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] >= 0 && ds->labels[i] < ds->n_classes) counts[ds->labels[i]]++;
}

/* ---- class names ---- */

int pasm_class_canonical(const char *name) {
    static const struct {
        const char *name;
        int index;
    } names[] = {
        {"angry", 0},    {"anger", 0},     {"disgust", 1},   {"disgusted", 1}, {"fear", 2},
        {"fearful", 2},  {"happy", 3},     {"happiness", 3}, {"sad", 4},       {"sadness", 4},
        {"surprise", 5}, {"surprised", 5}, {"neutral", 6},   {"contempt", 7},
    };
    if (!name) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i].name) == 0) return names[i].index;
    return -1;
}

int pasm_class_names_match(const char *a, const char *b) {
    int ca = pasm_class_canonical(a), cb = pasm_class_canonical(b);
    if (ca >= 0 && ca == cb) return 1;
    return strcasecmp(a, b) == 0;
}

/* Drops images whose label maps to -1 and relabels the rest in place. */
static void relabel_and_compact(pasm_dataset *ds, const int *map) {
    size_t image_bytes = (size_t)ds->channels * ds->size * ds->size;
    int kept = 0;
    for (int i = 0; i < ds->n; i++) {
        int label = ds->labels[i];
        int to = label >= 0 && label < ds->n_classes ? map[label] : -1;
        if (to < 0) {
            if (ds->paths) free(ds->paths[i]);
            continue;
        }
        if (kept != i) {
            memmove(ds->images + kept * image_bytes, ds->images + i * image_bytes, image_bytes);
            if (ds->paths) ds->paths[kept] = ds->paths[i];
            if (ds->rows) ds->rows[kept] = ds->rows[i];
        }
        ds->labels[kept++] = to;
    }
    ds->n = kept;
}

/* "Angry (12), Fear (3)" for the classes map drops. */
static char *dropped_list(const pasm_dataset *ds, const int *map, const int64_t *counts) {
    size_t cap = 64;
    for (int c = 0; c < ds->n_classes; c++)
        cap += strlen(ds->class_names[c]) + 32;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = '\0';
    for (int c = 0; c < ds->n_classes; c++) {
        if (map[c] >= 0 || counts[c] == 0) continue;
        size_t used = strlen(s);
        snprintf(s + used, cap - used, "%s%s (%lld)", used ? ", " : "", ds->class_names[c],
                 (long long)counts[c]);
    }
    return s;
}

static char *joined(const char *const *names, int n) {
    size_t cap = 1;
    for (int i = 0; i < n; i++)
        cap += strlen(names[i]) + 2;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, ", ");
        strcat(s, names[i]);
    }
    return s;
}

pasm_status pasm_dataset_match_classes(pasm_dataset *ds, const char *const *class_names,
                                       int n_classes, int ignore_unknown, char **warning) {
    if (warning) *warning = NULL;
    if (n_classes < 1)
        return pasm_errorf(PASM_ERR_INVALID, "%s: the model has no classes", ds->source);
    if (!ds->labelled) return pasm_dataset_set_classes(ds, class_names, n_classes);
    int *map = malloc((size_t)ds->n_classes * sizeof *map + 1);
    int64_t *counts = malloc((size_t)ds->n_classes * sizeof *counts + 1);
    pasm_status st = PASM_OK;
    if (!map || !counts) {
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory matching classes");
        goto done;
    }
    pasm_dataset_class_counts(ds, counts);
    int64_t dropped = 0;
    for (int c = 0; c < ds->n_classes; c++) {
        map[c] = -1;
        for (int j = 0; j < n_classes && map[c] < 0; j++)
            if (pasm_class_names_match(ds->class_names[c], class_names[j])) map[c] = j;
        if (map[c] >= 0 || counts[c] == 0) continue;
        if (!ignore_unknown) {
            char *known = joined(class_names, n_classes);
            st = pasm_errorf(PASM_ERR_INVALID,
                             "%s: class '%s' (%lld images) is not one of the model's classes (%s)",
                             ds->source, ds->class_names[c], (long long)counts[c],
                             known ? known : "?");
            free(known);
            goto done;
        }
        dropped += counts[c];
    }
    if (dropped > 0 && warning) {
        char *list = dropped_list(ds, map, counts);
        *warning = data_sprintf("%s: dropped %lld images of classes the model does not know: %s",
                                ds->source, (long long)dropped, list ? list : "?");
        free(list);
    }
    relabel_and_compact(ds, map);
    st = pasm_dataset_set_classes(ds, class_names, n_classes);
done:
    free(map);
    free(counts);
    return st;
}
