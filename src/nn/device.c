/* Networks on the GPU, seen from nn: building and freeing the device
 * mirror, and keeping its two copies of the parameters and statistics in
 * step. The device copy is the one that trains; the host copy is what the
 * accessors hand out. Whichever was written last is newer: a forward or
 * optimiser step on the device makes the device newer (training moves the
 * running statistics), handing out a host pointer makes the host newer
 * (the caller may write through it). Each side is brought up to date
 * before it is used, as one copy of the whole blocks. */
#include "nn/net_internal.h"
#include "nn/nn_device.h"
#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_net.h"
#endif

#ifdef PASM_HAVE_CUDA
/* The host copy brought up to date; 1 when it is (a failed copy leaves
 * both flags as they were: a broken device shows at its next use). */
static int pull_if_newer(pasm_net *net) {
    if (net->gpu_newer) {
        if (pasm_cuda_net_pull(net, 0) != PASM_OK) return 0;
        net->gpu_newer = 0;
    }
    return 1;
}
#endif

void pasm_net_host_view(pasm_net *net, int with_grads) {
#ifdef PASM_HAVE_CUDA
    if (!net->gpu || !pull_if_newer(net)) return;
    /* the gradients alone: a newer host copy of the weights stays */
    if (with_grads) pasm_cuda_net_pull_grads(net);
    net->host_newer = 1; /* the caller may write through what it gets */
#else
    (void)net;
    (void)with_grads;
#endif
}

void pasm_net_host_read(pasm_net *net) {
#ifdef PASM_HAVE_CUDA
    if (net->gpu) pull_if_newer(net);
#else
    (void)net;
#endif
}

pasm_status pasm_net_device_ready(pasm_net *net) {
#ifdef PASM_HAVE_CUDA
    if (!net->gpu || !net->host_newer) return PASM_OK;
    pasm_status st = pasm_cuda_net_push(net);
    if (!st) net->host_newer = 0;
    return st;
#else
    (void)net;
    return PASM_OK;
#endif
}

pasm_status pasm_net_sgd_step_device(pasm_net *net, float lr, float weight_decay, float momentum,
                                     float dampening, int nesterov, int first,
                                     float *host_momentum, int *momentum_on_device) {
    return pasm_net_sgd_step_scheduled(net, NULL, lr, weight_decay, momentum, dampening, nesterov,
                                       first, host_momentum, momentum_on_device);
}

pasm_status pasm_net_sgd_step_scheduled(pasm_net *net, const void *step, float lr,
                                        float weight_decay, float momentum, float dampening,
                                        int nesterov, int first, float *host_momentum,
                                        int *momentum_on_device) {
#ifdef PASM_HAVE_CUDA
    if (!net->gpu)
        return pasm_errorf(PASM_ERR_INVALID, "a device SGD step on a network on the CPU");
    pasm_status st = pasm_net_device_ready(net);
    if (st) return st;
    int upload = host_momentum && !*momentum_on_device && !first;
    st = pasm_cuda_net_sgd(net, lr, weight_decay, momentum, dampening, nesterov, first,
                           host_momentum, upload, step);
    if (st) return st;
    if (host_momentum) *momentum_on_device = 1;
    net->gpu_newer = 1;
    return PASM_OK;
#else
    (void)lr, (void)weight_decay, (void)momentum, (void)dampening, (void)nesterov, (void)first;
    (void)host_momentum, (void)momentum_on_device, (void)net, (void)step;
    return pasm_errorf(PASM_ERR_INVALID, "a device SGD step on a network on the CPU");
#endif
}

void pasm_net_count_replayed_steps(pasm_net *net, int delta) {
    *net->stem_bn.batches_tracked += delta;
    for (int i = 0; i < 8; i++) {
        block *b = &net->blocks[i];
        *b->bn1.batches_tracked += delta;
        *b->bn2.batches_tracked += delta;
        if (b->has_downsample) *b->down_bn.batches_tracked += delta;
    }
    if (delta > 0) net->gpu_newer = 1; /* the replayed steps moved the running statistics */
#ifdef PASM_HAVE_CUDA
    if (net->gpu) pasm_cuda_net_params_changed(net);
#endif
}

pasm_status pasm_net_momentum_to_host(pasm_net *net, float *host_momentum) {
#ifdef PASM_HAVE_CUDA
    if (!net->gpu || !host_momentum) return PASM_OK;
    return pasm_cuda_net_pull_momentum(net, host_momentum);
#else
    (void)net;
    (void)host_momentum;
    return PASM_OK;
#endif
}

int64_t pasm_net_steps_counted(const pasm_net *net) { return *net->stem_bn.batches_tracked; }
