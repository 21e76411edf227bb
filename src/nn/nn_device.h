/* Passes over device memory, for callers that keep a batch on the GPU (the
 * GPU trainer, src/train/device_step.c). x and dx: device fp32 (n, C, S, S);
 * dlogits and the logits: device (n, K). The work is queued on the shared
 * stream and nothing is waited for; the logits stay valid until the next
 * forward. A CPU network (or a CPU build) gets PASM_ERR_INVALID. */
#ifndef PASM_NN_DEVICE_H
#define PASM_NN_DEVICE_H

#include "pasm/nn.h"

/* The device copy brought up to date with a newer host copy (one send of
 * the parameter and statistics blocks, waited for); a no-op for CPU
 * networks and when the device copy is current. */
pasm_status pasm_net_device_ready(pasm_net *net);
pasm_status pasm_net_forward_on_device(pasm_net *net, const float *x, int n, int train,
                                       const float **logits);
pasm_status pasm_net_backward_on_device(pasm_net *net, const float *dlogits, float *dx);
/* pasm_net_sgd_step_device whose lr and momentum, with step (a device
 * pasm_cuda_step), come from the device. */
pasm_status pasm_net_sgd_step_scheduled(pasm_net *net, const void *step, float lr,
                                        float weight_decay, float momentum, float dampening,
                                        int nesterov, int first, float *host_momentum,
                                        int *momentum_on_device);
/* The host's side of delta training steps that ran without the host (a
 * replayed graph: +1; -1 takes back a step whose capture failed): every BN
 * layer's num_batches_tracked, and the device copy marked newer. A training
 * forward counts its own step. */
void pasm_net_count_replayed_steps(pasm_net *net, int delta);
/* The training steps counted so far (num_batches_tracked). */
int64_t pasm_net_steps_counted(const pasm_net *net);

#endif
