/* The network's private structure: layers with pointers into the planned
 * parameter, gradient, buffer and activation blocks. Shared by the builder
 * (resnet.c), the training passes (passes.c) and the evaluation passes
 * (passes_eval.c).
 *
 * Which pointers exist depends on the mode (resnet.c plans them):
 * - TRAIN: every conv and BN output has its own buffer; dweight, save_* and
 *   the four backward scratch buffers exist.
 * - EVAL, EVAL_GRAD: conv outputs are never materialised (conv->out NULL;
 *   batch norm, residual and ReLU are fused into the convolution), BN outputs
 *   point into three rotating slots, no gradients or save_*. The last
 *   block's output (bn2.out of blocks[7], the average pool's input) has a
 *   buffer of its own, so it stays readable after a forward (and after an
 *   EVAL_GRAD backward, which reuses the slots).
 * - EVAL_GRAD adds a ReLU bit mask per ReLU (stem, and mask_mid / mask_out
 *   in each block) and dpooled. */
#ifndef PASM_NET_INTERNAL_H
#define PASM_NET_INTERNAL_H

#include "pasm/nn.h"
#include "nn/nn_device.h"
#include "pasm/ops.h"

typedef struct {
    pasm_conv2d_shape shape; /* n is the planned maximum; set per call */
    float *weight, *dweight;
    float *out; /* (N, Cout, Ho, Wo) */
} conv_layer;

typedef struct {
    pasm_bn_shape shape;
    float *gamma, *beta, *dgamma, *dbeta;
    float *running_mean, *running_var;
    int64_t *batches_tracked;
    float *save_mean, *save_invstd;
    float *scale, *shift; /* evaluation BN as an affine map, refolded every eval forward */
    float *out; /* BN output; ReLU, where one follows, runs in place on it */
} bn_layer;

typedef struct {
    conv_layer conv1, conv2, down_conv;
    bn_layer bn1, bn2, down_bn;
    int has_downsample;
    int c_out, size_out;
    const float *in; /* the block's input during the last forward */
    uint64_t *mask_mid, *mask_out; /* EVAL_GRAD: ReLU bits of bn1.out and bn2.out */
} block;

#define PASM_NET_MAX_STATE 160

struct pasm_net {
    pasm_net_config cfg;
    pasm_net_mode mode;
    int max_batch;
    int n_state, n_params;
    pasm_tensor state[PASM_NET_MAX_STATE];
    pasm_tensor params[PASM_NET_MAX_STATE], grads[PASM_NET_MAX_STATE];
    float *param_block, *grad_block, *buffer_block;
    int64_t *counter_block;
    int64_t n_param_floats, buffer_floats, n_counters;
    unsigned char *activation_block;
    size_t activation_bytes;
    void *workspace;
    size_t workspace_bytes;

    conv_layer stem_conv;
    bn_layer stem_bn;
    block blocks[8];
    int final_channels, final_size;
    float *fc_weight, *fc_bias, *fc_dweight, *fc_dbias;
    float *pooled, *dpooled, *logits;
    float *scratch[4];   /* TRAIN: gradient flow */
    float *slots[3];     /* EVAL modes: rotating layer outputs, then gradient flow */
    uint64_t *stem_mask; /* EVAL_GRAD: ReLU bits of stem_bn.out */

    const float *input; /* last forward's input */
    int last_n, last_train;

    /* A network on the GPU (cfg.device == PASM_DEVICE_CUDA): the device
     * mirror (src/cuda/net.c), host buffers for what callers read, and
     * which copy of the parameters and statistics is newer (device.c). */
    struct pasm_cuda_net *gpu;
    float *gpu_features; /* host copy of the last block's output (class maps) */
    int gpu_newer, host_newer;
};

/* passes_eval.c: the evaluation forward of every mode (fused layers) and
 * the input-gradient backward of EVAL_GRAD. */
void pasm_net_forward_eval(pasm_net *net, const float *x, int n);
void pasm_net_backward_input(pasm_net *net, const float *dlogits, float *dx);
/* A BN layer's evaluation map (scale, shift) from its current statistics;
 * y = relu?(bn(conv(x)) + residual) for n images with that map fused in
 * (the evaluation forward's arithmetic, into any y). */
void pasm_net_fold_bn(const bn_layer *b);
void pasm_net_conv_bn_eval(pasm_net *net, const conv_layer *c, const bn_layer *b, const float *x,
                           const float *residual, int relu, int n, float *y);
/* The evaluation forward from block first on, h (n, ...) its input: the
 * logits into net->logits (patch.c's candidates run their tail here, with
 * masks 0: no ReLU bits for a backward). */
void pasm_net_forward_eval_tail(pasm_net *net, int first, const float *h, int n, int masks);

/* device.c: keeping a GPU network's two copies in step. Before the host
 * copy is read or written (with_grads: the gradients too); before the
 * device runs. No-ops for CPU networks. */
void pasm_net_host_view(pasm_net *net, int with_grads);
/* The same for a reader inside nn that writes nothing (the device's copy
 * stays current). */
void pasm_net_host_read(pasm_net *net);
/* pasm_net_device_ready: nn_device.h */

#endif
