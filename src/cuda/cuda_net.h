/* The ResNet on the GPU (src/cuda/net.c): a device mirror of a pasm_net.
 * Parameters, gradients and BN statistics keep the host net's flat block
 * layouts (so the two copy as whole blocks); activations are NHWC of the
 * precision's type. A training network keeps every layer's output; the
 * evaluation modes keep what their passes need (net.c). The nn layer decides when copies are needed
 * (src/nn/device.c); these functions do the work. */
#ifndef PASM_CUDA_NET_H
#define PASM_CUDA_NET_H

#include "nn/net_internal.h"

typedef struct pasm_cuda_net pasm_cuda_net;

pasm_status pasm_cuda_net_create(pasm_net *net);
void pasm_cuda_net_free(pasm_net *net);
/* Host parameters and BN statistics -> device, and back (grads too when
 * with_grads). */
pasm_status pasm_cuda_net_push(pasm_net *net);
pasm_status pasm_cuda_net_pull(pasm_net *net, int with_grads);
pasm_status pasm_cuda_net_pull_grads(pasm_net *net);
/* x: host (n, C, S, S). Fills the host logits. */
pasm_status pasm_cuda_net_forward(pasm_net *net, const float *x, int n, int train);
/* dlogits: host (n, K); dx: host (n, C, S, S) or NULL. Parameter gradients
 * (device) only after a training forward. */
pasm_status pasm_cuda_net_backward(pasm_net *net, const float *dlogits, float *dx);
/* The same passes over device memory, queued without waiting: x and dx
 * device fp32 (n, C, S, S) (dx may be NULL), dlogits device (n, K); the
 * logits stay on the device, at pasm_cuda_net_logits (valid until the next
 * forward). */
pasm_status pasm_cuda_net_forward_dev(pasm_net *net, const float *x, int n, int train);
pasm_status pasm_cuda_net_backward_dev(pasm_net *net, const float *dlogits, float *dx);
const float *pasm_cuda_net_logits(const pasm_net *net);
/* The evaluation forward from blocks[first] on, h (device, n x its input in
 * NHWC of the compute type): the logits at pasm_cuda_net_logits. Leaves no
 * forward a backward can follow. */
pasm_status pasm_cuda_net_forward_tail_dev(pasm_net *net, int first, const void *h, int n);

/* One-pixel candidates of bound faces on windows, on the GPU: the device
 * counterpart of pasm_net_patch (pasm/nn.h, src/nn/patch.c), in
 * src/cuda/net_patch.c. create: *out NULL (PASM_OK) where windows do not
 * apply (a training network, or a map the first stage covers); table is
 * the host copy of the normalisation table (C rows of 256) whose device
 * copy the caller passes to forward. forward: logits (m, K) on the host of
 * candidate j = face img[j] of faces (device uint8 (n_bound, C, S, S),
 * faces_host its host copy) with pixel (row[j], col[j]) set to
 * values[j * C ..]; candidates checked by the caller, faces_host unchanged
 * while in use. Free it before its network. */
typedef struct pasm_cuda_patch pasm_cuda_patch;
pasm_status pasm_cuda_patch_create(pasm_net *net, const float *table, size_t budget_bytes,
                                   pasm_cuda_patch **out);
void pasm_cuda_patch_free(pasm_cuda_patch *p);
pasm_status pasm_cuda_patch_forward(pasm_cuda_patch *p, const uint8_t *faces,
                                    const uint8_t *faces_host, int n_bound,
                                    const float *table_dev, int m, const int *img, const int *row,
                                    const int *col, const uint8_t *values, float *logits);
/* The device parameters changed without this file seeing it (a replayed
 * graph), or a queued packing never ran (a failed capture): the next
 * forward packs the weights again. */
void pasm_cuda_net_params_changed(pasm_net *net);
/* One SGD step on the device parameters. host_momentum: the optimiser's
 * buffer, uploaded when upload_momentum (a resumed run). step: NULL, or a
 * device pasm_cuda_step whose lr and momentum replace the arguments. */
pasm_status pasm_cuda_net_sgd(pasm_net *net, float lr, float weight_decay, float momentum,
                              float dampening, int nesterov, int first, const float *host_momentum,
                              int upload_momentum, const void *step);
pasm_status pasm_cuda_net_pull_momentum(pasm_net *net, float *host_momentum);
/* The last block's output of the last forward -> host NCHW fp32 (n images). */
pasm_status pasm_cuda_net_pull_features(pasm_net *net, float *host, int n);
/* Bytes of GPU memory the network holds (without the momentum buffer an
 * optimiser adds at its first step). */
size_t pasm_cuda_net_bytes(const pasm_net *net);

#endif
