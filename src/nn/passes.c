/* Forward and backward passes of the ResNet: the layers in order, then in
 * reverse. No autograd: each layer's backward is called with the activations
 * its forward kept. Gradient flow uses four planned scratch buffers. The
 * evaluation forward (every mode) and EVAL_GRAD's backward live in
 * passes_eval.c; this file runs training and dispatches. */
#include <string.h>

#include "nn/net_internal.h"
#include "nn/nn_device.h"
#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_net.h"

/* on_device: x is device memory and the logits stay there */
static pasm_status forward_device(pasm_net *net, const float *x, int n, int train, int on_device) {
    pasm_status st = pasm_net_device_ready(net);
    if (st) return st;
    st = on_device ? pasm_cuda_net_forward_dev(net, x, n, train)
                   : pasm_cuda_net_forward(net, x, n, train);
    if (st) return st;
    if (train) pasm_net_count_replayed_steps(net, 1); /* counters on the host, statistics moved */
    return PASM_OK;
}
#endif

static void conv_forward(pasm_net *net, conv_layer *c, const float *x, int n) {
    pasm_conv2d_shape s = c->shape;
    s.n = n;
    pasm_conv2d_forward(&s, x, c->weight, NULL, c->out, net->workspace);
}

/* Training-mode batch norm into b->out, then (fused into its output pass)
 * the residual sum when residual is not NULL and ReLU when relu. */
static void bn_forward(pasm_net *net, bn_layer *b, const float *x, int n, const float *residual,
                       int relu) {
    pasm_bn_shape s = b->shape;
    s.n = n;
    pasm_batchnorm_forward_train_fused(&s, x, b->gamma, b->beta, b->running_mean,
                                       b->running_var, residual, relu, b->out, b->save_mean,
                                       b->save_invstd);
    (*b->batches_tracked)++;
}

static void block_forward(pasm_net *net, block *b, const float *in, int n) {
    b->in = in;
    conv_forward(net, &b->conv1, in, n);
    bn_forward(net, &b->bn1, b->conv1.out, n, NULL, 1);
    conv_forward(net, &b->conv2, b->bn1.out, n);
    /* the shortcut first, so bn2's pass adds it and applies ReLU */
    const float *shortcut = in;
    if (b->has_downsample) {
        conv_forward(net, &b->down_conv, in, n);
        bn_forward(net, &b->down_bn, b->down_conv.out, n, NULL, 0);
        shortcut = b->down_bn.out;
    }
    bn_forward(net, &b->bn2, b->conv2.out, n, shortcut, 1);
}

static const float *block_output(const block *b) { return b->bn2.out; }

static pasm_status check_forward(const pasm_net *net, int n, int train) {
    if (n < 1 || n > net->max_batch)
        return pasm_errorf(PASM_ERR_INVALID, "batch of %d images: the network was planned for "
                                             "1 to %d",
                           n, net->max_batch);
    if (train && net->mode != PASM_NET_TRAIN)
        return pasm_errorf(PASM_ERR_INVALID, "a training forward on a network built for "
                                             "evaluation (mode %s): build it with PASM_NET_TRAIN",
                           pasm_net_mode_name(net->mode));
    if (train && n < 2)
        return pasm_errorf(PASM_ERR_INVALID, "a training batch needs at least 2 images for "
                                             "batch normalisation (got %d)",
                           n);
    return PASM_OK;
}

pasm_status pasm_net_forward(pasm_net *net, const float *x, int n, int train,
                             const float **logits) {
    pasm_status st = check_forward(net, n, train);
    if (st) return st;
    net->input = x;
    net->last_n = n;
    net->last_train = train != 0;
#ifdef PASM_HAVE_CUDA
    if (net->gpu) {
        st = forward_device(net, x, n, train, 0);
        if (st) {
            net->last_n = 0;
            return st;
        }
        if (logits) *logits = net->logits;
        return PASM_OK;
    }
#endif
    if (!train) {
        pasm_net_forward_eval(net, x, n);
        if (logits) *logits = net->logits;
        return PASM_OK;
    }
    conv_forward(net, &net->stem_conv, x, n);
    bn_forward(net, &net->stem_bn, net->stem_conv.out, n, NULL, 1);
    const float *h = net->stem_bn.out;
    for (int i = 0; i < 8; i++) {
        block_forward(net, &net->blocks[i], h, n);
        h = block_output(&net->blocks[i]);
    }
    int c = net->final_channels, size = net->final_size, k = net->cfg.num_classes;
    pasm_avgpool_forward(n, c, size, size, h, net->pooled);
    pasm_linear_forward(n, c, k, net->pooled, net->fc_weight, net->fc_bias, net->logits);
    if (logits) *logits = net->logits;
    return PASM_OK;
}

/* BN backward into dx; parameter gradients only after a training forward. */
static void bn_backward(pasm_net *net, bn_layer *b, const float *x, const float *dy, float *dx,
                        int n) {
    pasm_bn_shape s = b->shape;
    s.n = n;
    if (net->last_train)
        pasm_batchnorm_backward(&s, x, b->gamma, b->save_mean, b->save_invstd, dy, dx, b->dgamma,
                                b->dbeta);
    else
        pasm_batchnorm_backward_eval(&s, b->gamma, b->running_var, dy, dx);
}

static void conv_backward(pasm_net *net, conv_layer *c, const float *x, const float *dy,
                          float *dx, int n) {
    pasm_conv2d_shape s = c->shape;
    s.n = n;
    float *dweight = net->last_train ? c->dweight : NULL;
    pasm_conv2d_backward(&s, x, c->weight, dy, dx, dweight, NULL, net->workspace);
}

/* dout holds the gradient of the block's output; on return *din holds the
 * gradient of its input. Uses the scratch buffers other than dout. */
static void block_backward(pasm_net *net, block *b, float *dout, float **din, int n) {
    float *spare[3];
    int k = 0;
    for (int i = 0; i < 4; i++)
        if (net->scratch[i] != dout) spare[k++] = net->scratch[i];
    int64_t out_count = (int64_t)n * b->c_out * b->size_out * b->size_out;
    pasm_relu_backward(out_count, b->bn2.out, dout, dout);
    /* main path: bn2 <- conv2 <- relu <- bn1 <- conv1 */
    bn_backward(net, &b->bn2, b->conv2.out, dout, spare[0], n);
    conv_backward(net, &b->conv2, b->bn1.out, spare[0], spare[1], n);
    int64_t mid_count = (int64_t)n * b->c_out * b->size_out * b->size_out;
    pasm_relu_backward(mid_count, b->bn1.out, spare[1], spare[1]);
    bn_backward(net, &b->bn1, b->conv1.out, spare[1], spare[0], n);
    conv_backward(net, &b->conv1, b->in, spare[0], spare[2], n);
    int64_t in_count = (int64_t)n * b->conv1.shape.c_in * b->conv1.shape.h_in *
                       b->conv1.shape.w_in;
    /* shortcut */
    if (b->has_downsample) {
        bn_backward(net, &b->down_bn, b->down_conv.out, dout, spare[0], n);
        conv_backward(net, &b->down_conv, b->in, spare[0], spare[1], n);
        pasm_add_inplace(in_count, spare[2], spare[1]);
    } else {
        pasm_add_inplace(in_count, spare[2], dout);
    }
    *din = spare[2];
}

pasm_status pasm_net_backward(pasm_net *net, const float *dlogits, float *dx) {
    int n = net->last_n;
    if (net->mode == PASM_NET_EVAL)
        return pasm_errorf(PASM_ERR_INVALID, "backward on a network built for evaluation only "
                                             "(mode eval keeps nothing for it): build it with "
                                             "PASM_NET_EVAL_GRAD for input gradients or "
                                             "PASM_NET_TRAIN for training");
    if (n < 1 || !net->input)
        return pasm_errorf(PASM_ERR_INVALID, "backward called before any forward");
#ifdef PASM_HAVE_CUDA
    if (net->gpu) {
        if (net->mode == PASM_NET_EVAL_GRAD && !dx) return PASM_OK;
        return pasm_cuda_net_backward(net, dlogits, dx);
    }
#endif
    if (net->mode == PASM_NET_EVAL_GRAD) {
        if (dx) pasm_net_backward_input(net, dlogits, dx);
        return PASM_OK;
    }
    int c = net->final_channels, size = net->final_size, k = net->cfg.num_classes;
    float *fc_dw = net->last_train ? net->fc_dweight : NULL;
    float *fc_db = net->last_train ? net->fc_dbias : NULL;
    pasm_linear_backward(n, c, k, net->pooled, net->fc_weight, dlogits, net->dpooled, fc_dw,
                         fc_db);
    float *g = net->scratch[0];
    pasm_avgpool_backward(n, c, size, size, net->dpooled, g);
    for (int i = 7; i >= 0; i--) block_backward(net, &net->blocks[i], g, &g, n);
    int w = net->cfg.width, s = net->cfg.input_size;
    pasm_relu_backward((int64_t)n * w * s * s, net->stem_bn.out, g, g);
    float *dstem = g == net->scratch[0] ? net->scratch[1] : net->scratch[0];
    bn_backward(net, &net->stem_bn, net->stem_conv.out, g, dstem, n);
    conv_backward(net, &net->stem_conv, net->input, dstem, dx, n);
    return PASM_OK;
}

int pasm_net_class_map_size(const pasm_net *net) { return net->final_size; }

pasm_status pasm_net_class_map(const pasm_net *net, const int32_t *classes, float *maps,
                               int *map_size) {
    const int n = net->last_n, c = net->final_channels, size = net->final_size;
    const int k = net->cfg.num_classes;
    if (n < 1) return pasm_errorf(PASM_ERR_INVALID, "class map: no forward pass yet");
    const int64_t plane = (int64_t)size * size;
    const float *feat = block_output(&net->blocks[7]);
#ifdef PASM_HAVE_CUDA
    if (net->gpu) {
        pasm_net_host_read((pasm_net *)net); /* fc.weight as the device has it */
        pasm_status st = pasm_cuda_net_pull_features((pasm_net *)net, net->gpu_features, n);
        if (st) return st;
        feat = net->gpu_features;
    }
#endif
    for (int i = 0; i < n; i++) {
        if (classes[i] < 0 || classes[i] >= k)
            return pasm_errorf(PASM_ERR_INVALID, "class map: image %d has class %d outside 0..%d",
                               i, classes[i], k - 1);
        const float *w = net->fc_weight + (int64_t)classes[i] * c;
        float *m = maps + i * plane;
        for (int64_t p = 0; p < plane; p++) m[p] = 0;
        for (int ch = 0; ch < c; ch++) {
            const float *a = feat + ((int64_t)i * c + ch) * plane;
            const float alpha = w[ch] / (float)plane;
            for (int64_t p = 0; p < plane; p++) m[p] += alpha * a[p];
        }
    }
    if (map_size) *map_size = size;
    return PASM_OK;
}

/* ---- passes over device memory (the GPU trainer, src/train/device_step.c) ---- */

pasm_status pasm_net_forward_on_device(pasm_net *net, const float *x, int n, int train,
                                       const float **logits) {
#ifdef PASM_HAVE_CUDA
    if (!net->gpu) return pasm_errorf(PASM_ERR_INVALID, "a device forward on a network on the CPU");
    pasm_status st = check_forward(net, n, train);
    if (st) return st;
    net->input = x;
    net->last_n = n;
    net->last_train = train != 0;
    if ((st = forward_device(net, x, n, train, 1))) {
        net->last_n = 0;
        return st;
    }
    if (logits) *logits = pasm_cuda_net_logits(net);
    return PASM_OK;
#else
    (void)x, (void)n, (void)train, (void)logits, (void)net;
    return pasm_errorf(PASM_ERR_INVALID, "a device forward on a network on the CPU");
#endif
}

pasm_status pasm_net_backward_on_device(pasm_net *net, const float *dlogits, float *dx) {
#ifdef PASM_HAVE_CUDA
    if (!net->gpu) return pasm_errorf(PASM_ERR_INVALID, "a device backward on a network on the CPU");
    if (net->mode == PASM_NET_EVAL || net->last_n < 1)
        return pasm_errorf(PASM_ERR_INVALID, "a device backward without a forward it can follow");
    return pasm_cuda_net_backward_dev(net, dlogits, dx);
#else
    (void)dlogits, (void)dx, (void)net;
    return pasm_errorf(PASM_ERR_INVALID, "a device backward on a network on the CPU");
#endif
}
