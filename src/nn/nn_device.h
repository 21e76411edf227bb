/* Passes over device memory, for callers that keep a batch on the GPU (the
 * GPU trainer, src/train/device_step.c). x and dx: device fp32 (n, C, S, S);
 * dlogits and the logits: device (n, K). The work is queued on the shared
 * stream and nothing is waited for; the logits stay valid until the next
 * forward. A CPU network (or a CPU build) gets PASM_ERR_INVALID. */
#ifndef PASM_NN_DEVICE_H
#define PASM_NN_DEVICE_H

#include "pasm/nn.h"

pasm_status pasm_net_forward_on_device(pasm_net *net, const float *x, int n, int train,
                                       const float **logits);
pasm_status pasm_net_backward_on_device(pasm_net *net, const float *dlogits, float *dx);

#endif
