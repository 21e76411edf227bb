/* The order in which an epoch visits the training images: a seeded shuffle,
 * or class-balanced sampling; and the class weights of --balance weights. */
#ifndef PASM_TRAIN_SAMPLING_H
#define PASM_TRAIN_SAMPLING_H

#include "pasm/train.h"

/* weights[c] = n / (k * n_c) (sklearn's "balanced"; 0 for an empty class);
 * cdf[i] = cumulative sum over images of 1 / n_(class of image), the
 * distribution the balanced sampler draws from. */
void pasm_class_balance(const pasm_dataset *ds, int k, float *weights, double *cdf);
/* order[0..n-1] for the epoch: a Fisher-Yates shuffle keyed by (seed,
 * PASM_RNG_SHUFFLE, epoch), or, for PASM_BALANCE_SAMPLER, n draws with
 * replacement from cdf (each class equally likely). */
void pasm_epoch_order(const pasm_dataset *ds, pasm_balance balance, const double *cdf,
                      uint64_t seed, int epoch, int *order);

#endif
