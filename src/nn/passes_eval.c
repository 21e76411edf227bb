/* The evaluation passes: the forward with running statistics, which every
 * mode runs for train == 0, and EVAL_GRAD's input-gradient backward.
 *
 * Forward: each batch norm is folded into a per-channel scale and shift at
 * every call (O(channels), so weights and statistics written through any
 * pointer the library hands out are always seen), and applied with the
 * residual sum and ReLU in the convolution's epilogue: one pass over each
 * output instead of conv, BN, add and ReLU passes, and no conv outputs. The
 * plan decides where outputs land (net_internal.h), so the same code fills a
 * training network's own buffers or an evaluation network's rotating slots.
 * EVAL_GRAD also records each ReLU's output as bits.
 *
 * Backward (EVAL_GRAD): the frozen network's input gradient, BN statistics
 * constant, no parameter gradients, from the ReLU bits alone; gradients flow
 * through the three forward slots, which the forward no longer needs. */
#include "nn/net_internal.h"

void pasm_net_fold_bn(const bn_layer *b) {
    pasm_batchnorm_fold(&b->shape, b->gamma, b->beta, b->running_mean, b->running_var, b->scale,
                        b->shift);
}

void pasm_net_conv_bn_eval(pasm_net *net, const conv_layer *c, const bn_layer *b, const float *x,
                           const float *residual, int relu, int n, float *y) {
    pasm_conv2d_shape s = c->shape;
    s.n = n;
    pasm_net_fold_bn(b);
    const pasm_conv2d_epilogue ep = {.scale = b->scale, .shift = b->shift,
                                     .residual = residual, .relu = relu};
    pasm_conv2d_forward_fused(&s, x, c->weight, &ep, y, net->workspace);
}

/* b->out = relu?(bn(conv(x)) + residual) for n images. */
static void conv_bn(pasm_net *net, conv_layer *c, bn_layer *b, const float *x,
                    const float *residual, int relu, int n) {
    pasm_net_conv_bn_eval(net, c, b, x, residual, relu, n, b->out);
}

static int64_t bn_count(const bn_layer *b, int n) {
    return (int64_t)n * b->shape.c * b->shape.h * b->shape.w;
}

static void block_forward_eval(pasm_net *net, block *b, const float *in, int n, int masks) {
    b->in = in;
    conv_bn(net, &b->conv1, &b->bn1, in, NULL, 1, n);
    const float *shortcut = in;
    if (b->has_downsample) {
        conv_bn(net, &b->down_conv, &b->down_bn, in, NULL, 0, n);
        shortcut = b->down_bn.out;
    }
    conv_bn(net, &b->conv2, &b->bn2, b->bn1.out, shortcut, 1, n);
    if (masks && b->mask_mid) pasm_relu_mask(bn_count(&b->bn1, n), b->bn1.out, b->mask_mid);
    if (masks && b->mask_out) pasm_relu_mask(bn_count(&b->bn2, n), b->bn2.out, b->mask_out);
}

void pasm_net_forward_eval(pasm_net *net, const float *x, int n) {
    conv_bn(net, &net->stem_conv, &net->stem_bn, x, NULL, 1, n);
    if (net->stem_mask)
        pasm_relu_mask(bn_count(&net->stem_bn, n), net->stem_bn.out, net->stem_mask);
    pasm_net_forward_eval_tail(net, 0, net->stem_bn.out, n, 1);
}

void pasm_net_forward_eval_tail(pasm_net *net, int first, const float *h, int n, int masks) {
    for (int i = first; i < 8; i++) {
        block_forward_eval(net, &net->blocks[i], h, n, masks);
        h = net->blocks[i].bn2.out;
    }
    int c = net->final_channels, size = net->final_size, k = net->cfg.num_classes;
    pasm_avgpool_forward(n, c, size, size, h, net->pooled);
    pasm_linear_forward(n, c, k, net->pooled, net->fc_weight, net->fc_bias, net->logits);
}

/* ---- EVAL_GRAD backward ---- */

static void bn_backward_eval(const bn_layer *b, const float *dy, float *dx, int n) {
    pasm_bn_shape s = b->shape;
    s.n = n;
    pasm_batchnorm_backward_eval(&s, b->gamma, b->running_var, dy, dx);
}

/* Input gradient only: with no weight gradient, the convolution's input x is
 * never read; its planned buffer is passed as a valid pointer. */
static void conv_backward_input(pasm_net *net, const conv_layer *c, const float *x,
                                const float *dy, float *dx, int n) {
    pasm_conv2d_shape s = c->shape;
    s.n = n;
    pasm_conv2d_backward(&s, x, c->weight, dy, dx, NULL, NULL, net->workspace);
}

/* On entry *d holds the gradient of the block's output; on return *d holds
 * the gradient of its input. *a and *t are free buffers; the three trade
 * places (every slot holds any activation of the network). */
static void block_backward_input(pasm_net *net, const block *b, float **d, float **a, float **t,
                                 int n) {
    float *dout = *d, *tmp = *a, *din = *t;
    pasm_relu_backward_mask(bn_count(&b->bn2, n), b->mask_out, dout, dout);
    /* main path: bn2 <- conv2 <- relu <- bn1 <- conv1 */
    bn_backward_eval(&b->bn2, dout, tmp, n);
    conv_backward_input(net, &b->conv2, b->bn1.out, tmp, din, n);
    pasm_relu_backward_mask(bn_count(&b->bn1, n), b->mask_mid, din, din);
    bn_backward_eval(&b->bn1, din, tmp, n);
    conv_backward_input(net, &b->conv1, b->in, tmp, din, n);
    const pasm_conv2d_shape *s = &b->conv1.shape;
    int64_t in_count = (int64_t)n * s->c_in * s->h_in * s->w_in;
    /* shortcut: dout is free once its last reader is done */
    if (b->has_downsample) {
        bn_backward_eval(&b->down_bn, dout, tmp, n);
        conv_backward_input(net, &b->down_conv, b->in, tmp, dout, n);
    }
    pasm_add_inplace(in_count, din, dout);
    *d = din;
    *t = dout;
}

void pasm_net_backward_input(pasm_net *net, const float *dlogits, float *dx) {
    int n = net->last_n;
    int c = net->final_channels, size = net->final_size, k = net->cfg.num_classes;
    pasm_linear_backward(n, c, k, net->pooled, net->fc_weight, dlogits, net->dpooled, NULL, NULL);
    float *d = net->slots[0], *a = net->slots[1], *t = net->slots[2];
    pasm_avgpool_backward(n, c, size, size, net->dpooled, d);
    for (int i = 7; i >= 0; i--) block_backward_input(net, &net->blocks[i], &d, &a, &t, n);
    pasm_relu_backward_mask(bn_count(&net->stem_bn, n), net->stem_mask, d, d);
    bn_backward_eval(&net->stem_bn, d, a, n);
    conv_backward_input(net, &net->stem_conv, net->input, a, dx, n);
}
