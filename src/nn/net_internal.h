/* The network's private structure: layers with pointers into the planned
 * parameter, gradient, buffer and activation blocks. Shared by the builder
 * (resnet.c) and the passes (passes.c). */
#ifndef PASM_NET_INTERNAL_H
#define PASM_NET_INTERNAL_H

#include "pasm/nn.h"
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
    float *out; /* BN output; ReLU, where one follows, runs in place on it */
} bn_layer;

typedef struct {
    conv_layer conv1, conv2, down_conv;
    bn_layer bn1, bn2, down_bn;
    int has_downsample;
    int c_out, size_out;
    const float *in; /* the block's input during the last forward */
} block;

#define PASM_NET_MAX_STATE 160

struct pasm_net {
    pasm_net_config cfg;
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
    float *scratch[4];

    const float *input; /* last forward's input */
    int last_n, last_train;
};

#endif
