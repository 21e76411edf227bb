/* Epoch orders and class balancing. Every draw comes from the counter-based
 * generator keyed by (seed, shuffle, epoch), so an epoch's order is the same
 * whenever it is computed, which resuming relies on. */
#include <stdlib.h>

#include "train/sampling.h"

void pasm_class_balance(const pasm_dataset *ds, int k, float *weights, double *cdf) {
    int64_t *counts = calloc((size_t)k, sizeof(int64_t));
    if (!counts) return;
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] >= 0 && ds->labels[i] < k) counts[ds->labels[i]]++;
    for (int c = 0; c < k; c++)
        weights[c] = counts[c] ? (float)((double)ds->n / ((double)k * counts[c])) : 0;
    double acc = 0;
    for (int i = 0; i < ds->n; i++) {
        int y = ds->labels[i];
        acc += (y >= 0 && y < k && counts[y]) ? 1.0 / (double)counts[y] : 0;
        cdf[i] = acc;
    }
    free(counts);
}

static int draw_from(const double *cdf, int n, double u) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* order = a Fisher-Yates shuffle of 0..n-1. */
static void shuffle(pasm_rng *rng, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)pasm_rng_below(rng, (uint32_t)i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

void pasm_epoch_order(const pasm_dataset *ds, pasm_balance balance, const double *cdf,
                      uint64_t seed, int epoch, int *order) {
    pasm_rng rng;
    pasm_rng_init(&rng, seed, PASM_RNG_SHUFFLE, (uint64_t)epoch, 0);
    int n = ds->n;
    if (balance == PASM_BALANCE_SAMPLER) {
        double total = cdf[n - 1];
        for (int i = 0; i < n; i++) order[i] = draw_from(cdf, n, pasm_rng_uniform_double(&rng) * total);
        return;
    }
    shuffle(&rng, n, order);
}

void pasm_epoch_order_pairs(int n_pairs, float twin_prob, uint64_t seed, int epoch, int *order) {
    pasm_rng rng;
    pasm_rng_init(&rng, seed, PASM_RNG_SHUFFLE, (uint64_t)epoch, 0);
    shuffle(&rng, n_pairs, order);
    for (int k = 0; k < n_pairs; k++) {
        const int i = order[k];
        pasm_rng r;
        pasm_rng_init(&r, seed, PASM_RNG_MASK, (uint64_t)epoch, (uint64_t)i);
        if (pasm_rng_uniform(&r) < twin_prob) order[k] = i + n_pairs;
    }
}
