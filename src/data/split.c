/* The seeded, stratified validation split (a fraction of every class, drawn
 * by a Fisher-Yates shuffle on the counter-based generator, so the same seed
 * always holds out the same faces) and per-channel normalisation statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

/* How many of a class's count images go to validation. */
static int val_count(int count, double fraction) {
    int k = (int)floor(count * fraction + 0.5);
    if (k == 0 && count >= 2 && fraction > 0) k = 1;
    if (k >= count) k = count - 1;
    return k < 0 ? 0 : k;
}

/* Marks chosen[i] = 1 for the validation images of class c. */
static void pick_class(const pasm_dataset *ds, int c, double fraction, uint64_t seed, int *members,
                       uint8_t *chosen) {
    int m = 0;
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] == c) members[m++] = i;
    int k = val_count(m, fraction);
    pasm_rng rng;
    pasm_rng_init(&rng, seed, PASM_RNG_SPLIT, (uint64_t)c, 0);
    /* A partial Fisher-Yates shuffle: the first k slots are a uniform k-subset. */
    for (int i = 0; i < k; i++) {
        int j = i + (int)pasm_rng_below(&rng, (uint32_t)(m - i));
        int t = members[i];
        members[i] = members[j];
        members[j] = t;
        chosen[members[i]] = 1;
    }
}

pasm_status pasm_dataset_split_indices(const pasm_dataset *ds, double fraction, uint64_t seed,
                                       int **train_idx, int *n_train, int **val_idx, int *n_val) {
    *train_idx = *val_idx = NULL;
    *n_train = *n_val = 0;
    if (!ds->labelled || ds->n_classes < 1)
        return pasm_errorf(PASM_ERR_INVALID, "%s: a stratified split needs labelled images",
                           ds->source);
    if (!(fraction >= 0.0 && fraction < 1.0))
        return pasm_errorf(PASM_ERR_INVALID, "validation fraction %g outside [0, 1)", fraction);
    int *members = malloc((size_t)ds->n * sizeof *members + 1);
    uint8_t *chosen = calloc((size_t)ds->n + 1, 1);
    int *train = malloc((size_t)ds->n * sizeof *train + 1);
    int *val = malloc((size_t)ds->n * sizeof *val + 1);
    if (!members || !chosen || !train || !val) {
        free(members), free(chosen), free(train), free(val);
        return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory splitting", ds->source);
    }
    for (int c = 0; c < ds->n_classes; c++)
        pick_class(ds, c, fraction, seed, members, chosen);
    for (int i = 0; i < ds->n; i++) {
        if (chosen[i])
            val[(*n_val)++] = i;
        else
            train[(*n_train)++] = i;
    }
    free(members);
    free(chosen);
    *train_idx = train;
    *val_idx = val;
    return PASM_OK;
}

pasm_status pasm_dataset_split(const pasm_dataset *ds, double fraction, uint64_t seed,
                               pasm_dataset *train, pasm_dataset *val) {
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    int *ti, *vi, nt, nv;
    pasm_status st = pasm_dataset_split_indices(ds, fraction, seed, &ti, &nt, &vi, &nv);
    if (st != PASM_OK) return st;
    st = pasm_dataset_subset(ds, ti, nt, train);
    if (st == PASM_OK) st = pasm_dataset_subset(ds, vi, nv, val);
    if (st == PASM_OK) {
        /* Say which part of the source each half is. */
        char *ts = data_sprintf("%s, %g%% held out by seed %llu", ds->source, fraction * 100.0,
                                (unsigned long long)seed);
        char *vs = data_sprintf("%s, %g%% validation by seed %llu", ds->source, fraction * 100.0,
                                (unsigned long long)seed);
        if (ts && vs) {
            free(train->source), train->source = ts;
            free(val->source), val->source = vs;
        } else {
            free(ts), free(vs);
            st = pasm_errorf(PASM_ERR_NOMEM, "out of memory");
        }
    }
    if (st != PASM_OK) pasm_dataset_free(train), pasm_dataset_free(val);
    free(ti);
    free(vi);
    return st;
}

pasm_status pasm_dataset_mean_std(const pasm_dataset *ds, float *mean, float *std) {
    if (ds->n < 1) return pasm_errorf(PASM_ERR_INVALID, "%s: no images for mean/std", ds->source);
    size_t plane = (size_t)ds->size * ds->size;
    for (int c = 0; c < ds->channels; c++) {
        /* Integer sums are exact (and so independent of the thread count). */
        uint64_t sum = 0, sum_sq = 0;
#pragma omp parallel for reduction(+ : sum, sum_sq) schedule(static)
        for (int i = 0; i < ds->n; i++) {
            const uint8_t *p = ds->images + ((size_t)i * ds->channels + c) * plane;
            uint64_t s = 0, q = 0;
            for (size_t k = 0; k < plane; k++) {
                s += p[k];
                q += (uint64_t)p[k] * p[k];
            }
            sum += s;
            sum_sq += q;
        }
        double count = (double)ds->n * (double)plane;
        double m = (double)sum / count;
        double var = (double)sum_sq / count - m * m;
        mean[c] = (float)(m / 255.0);
        std[c] = (float)(sqrt(var > 0 ? var : 0) / 255.0);
    }
    return PASM_OK;
}
