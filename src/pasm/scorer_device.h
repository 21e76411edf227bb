/* The attack scorer's GPU side (src/pasm/scorer.c uses it for a network on
 * the GPU): images go up as uint8 and are normalised on the GPU, the
 * candidates of one-pixel changes are assembled there from images bound
 * once per attack (a 16-byte record each goes up, not an image), and the
 * most salient pixel is picked where the input gradient is (the pick comes
 * back, not the gradient). Softmax and the cross-entropy's gradient stay on
 * the host, in the host path's arithmetic, so the attacks choose exactly
 * the points they choose through the host-batch path. */
#ifndef PASM_PASM_SCORER_DEVICE_H
#define PASM_PASM_SCORER_DEVICE_H

#include "pasm/nn.h"

typedef struct scorer_device scorer_device;

/* *out = NULL (and PASM_OK) where the host path serves: a network on the
 * CPU, a CPU build, more than 3 channels, or PASM_CUDA_HOST_STEP=1. */
pasm_status scorer_device_create(scorer_device **out, pasm_net *net, const float *mean,
                                 const float *std);
void scorer_device_free(scorer_device *d);
/* The network's logits (n, K), host, of images (host uint8 (n, C, S, S)),
 * n <= the network's batch; valid until the next call. */
pasm_status scorer_device_logits(scorer_device *d, const uint8_t *images, int n,
                                 const float **logits);
/* After scorer_device_logits: the input gradient of dlogits (host (n, K))
 * and each image's most salient pixel (pasm_scorer's salient) in pixel and
 * values. skip: host (n, S*S) or NULL. */
pasm_status scorer_device_salient(scorer_device *d, const float *dlogits, const uint8_t *skip,
                                  int *pixel, uint8_t *values);
/* pasm_scorer's bind, and changed's logits (m, K) (host, valid until the
 * next call). */
pasm_status scorer_device_bind(scorer_device *d, const uint8_t *images, int n);
pasm_status scorer_device_changed(scorer_device *d, int m, const int *img, const int *row,
                                  const int *col, const uint8_t *values, const float **logits);

#endif
