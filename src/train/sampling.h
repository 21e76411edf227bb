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

/* order[0..n_pairs-1] for an epoch over pairs (image i and its twin
 * n_pairs + i): the same shuffle of 0..n_pairs-1, then each image i is
 * replaced by its twin with probability twin_prob, drawn per epoch from
 * pasm_rng(seed, PASM_RNG_MASK, epoch, i). */
void pasm_epoch_order_pairs(int n_pairs, float twin_prob, uint64_t seed, int epoch, int *order);

#endif
