/* The ResNet's passes on the GPU: the layers of src/nn/passes.c and
 * passes_eval.c in the same order, over device buffers, through the
 * backend's ops (cuDNN convolutions, own kernels for the rest). Parameters,
 * gradients and BN statistics sit in device blocks laid out as the host
 * net's (a layer's offset is its host pointer's offset in the host block);
 * convolution weights are packed to KRSC in the compute type before every
 * forward, and weight gradients unpacked back to fp32 KCRS.
 *
 * All work is queued on one stream; a forward waits only to hand the logits
 * back, a backward only to hand the input gradient back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/net_internal.h"

#define TRY(x)                                                                                   \
    do {                                                                                         \
        pasm_status st_ = (x);                                                                   \
        if (st_) return st_;                                                                     \
    } while (0)

static int64_t conv_out_count(const pasm_conv2d_shape *s, int n) {
    return (int64_t)n * s->c_out * s->h_out * s->w_out;
}

/* ---- creation ---- */

typedef struct {
    pasm_net *net;
    pasm_cuda_net *g;
    size_t ws_need, partial_need;
    int64_t largest;    /* the largest convolution output, values */
    int64_t largest_bn; /* the largest BN output, values */
    int64_t largest_w;  /* the largest weight, values */
} builder;

/* values activations of the network's compute type */
static pasm_status alloc_values(const pasm_cuda_net *g, void **p, int64_t values,
                                const char *what) {
    return pasm_cuda_alloc(p, (size_t)values * g->esize, what);
}

static pasm_status make_conv(builder *b, gconv *gc, const conv_layer *c) {
    pasm_cuda_net *g = b->g;
    gc->shape = c->shape;
    gc->shape.n = b->net->max_batch;
    gc->w_off = c->weight - b->net->param_block;
    /* what the mode's passes run: evaluation forwards only, input
     * gradients too, or everything */
    const pasm_net_mode mode = b->net->mode;
    const unsigned needs = mode == PASM_NET_TRAIN ? PASM_CUDA_CONV_ALL
                           : mode == PASM_NET_EVAL_GRAD
                               ? PASM_CUDA_CONV_FORWARD | PASM_CUDA_CONV_DATA
                               : PASM_CUDA_CONV_FORWARD;
    TRY(pasm_cuda_conv_create(g->ctx, &gc->shape, g->t, needs, &gc->plan));
    size_t ws = pasm_cuda_conv_workspace(gc->plan);
    if (ws > b->ws_need) b->ws_need = ws;
    const pasm_conv2d_shape *s = &gc->shape;
    int64_t wcount = (int64_t)s->c_out * s->c_in * s->kernel * s->kernel;
    if (wcount > b->largest_w) b->largest_w = wcount;
    int64_t out = conv_out_count(s, s->n);
    if (out > b->largest) b->largest = out;
    TRY(alloc_values(g, &gc->w_packed, wcount, "packed convolution weights"));
    if (b->net->mode != PASM_NET_TRAIN) return PASM_OK; /* conv_tmp, later */
    gc->own_out = 1;
    return alloc_values(g, &gc->out, out, "convolution outputs");
}

static pasm_status make_bn(builder *b, gbn *gb, const bn_layer *l) {
    pasm_cuda_net *g = b->g;
    pasm_net *net = b->net;
    gb->c = l->shape.c;
    gb->hw = (int64_t)l->shape.h * l->shape.w;
    gb->m_max = (int64_t)net->max_batch * gb->hw;
    gb->gamma_off = l->gamma - net->param_block;
    gb->beta_off = l->beta - net->param_block;
    gb->mean_off = l->running_mean - net->buffer_block;
    gb->var_off = l->running_var - net->buffer_block;
    size_t partial = pasm_cuda_bn_partial_doubles(gb->m_max, gb->c);
    if (partial > b->partial_need) b->partial_need = partial;
    float **f[4] = {&gb->save_mean, &gb->save_invstd, &gb->scale, &gb->shift};
    for (int i = 0; i < 4; i++) TRY(pasm_cuda_alloc((void **)f[i], (size_t)gb->c * 4, "BN state"));
    if (gb->m_max * gb->c > b->largest_bn) b->largest_bn = gb->m_max * gb->c;
    if (net->mode == PASM_NET_EVAL) return PASM_OK; /* the slots, later */
    gb->own_out = 1;
    return alloc_values(g, &gb->out, gb->m_max * gb->c, "BN outputs");
}

static pasm_status build(builder *b) {
    pasm_net *net = b->net;
    pasm_cuda_net *g = b->g;
    const pasm_net_config *cfg = &net->cfg;
    TRY(pasm_cuda_ctx_create(&g->ctx));
    const int64_t np = net->n_param_floats, n = net->max_batch;
    TRY(pasm_cuda_alloc((void **)&g->param, (size_t)np * 4, "parameters"));
    const pasm_net_mode mode = net->mode;
    if (mode == PASM_NET_TRAIN)
        TRY(pasm_cuda_alloc((void **)&g->grad, (size_t)np * 4, "gradients"));
    TRY(pasm_cuda_alloc((void **)&g->buffer, (size_t)net->buffer_floats * 4, "BN statistics"));
    g->in_count = (int64_t)cfg->in_channels * cfg->input_size * cfg->input_size;
    TRY(pasm_cuda_alloc((void **)&g->x_nchw, (size_t)(n * g->in_count) * 4, "input"));
    TRY(pasm_cuda_alloc((void **)&g->dx_nchw, (size_t)(n * g->in_count) * 4, "input gradient"));
    TRY(alloc_values(g, &g->x_in, n * g->in_count, "input"));
    TRY(alloc_values(g, &g->dx_in, n * g->in_count, "input gradient"));
    TRY(make_conv(b, &g->stem, &net->stem_conv));
    TRY(make_bn(b, &g->stem_bn, &net->stem_bn));
    for (int i = 0; i < 8; i++) {
        const block *hb = &net->blocks[i];
        gblock *gb = &g->blocks[i];
        TRY(make_conv(b, &gb->conv1, &hb->conv1));
        TRY(make_bn(b, &gb->bn1, &hb->bn1));
        TRY(make_conv(b, &gb->conv2, &hb->conv2));
        TRY(make_bn(b, &gb->bn2, &hb->bn2));
        gb->has_down = hb->has_downsample;
        if (gb->has_down) {
            TRY(make_conv(b, &gb->down, &hb->down_conv));
            TRY(make_bn(b, &gb->down_bn, &hb->down_bn));
        }
    }
    const int c = net->final_channels, k = cfg->num_classes;
    TRY(pasm_cuda_alloc((void **)&g->pooled, (size_t)n * c * 4, "pooled features"));
    TRY(pasm_cuda_alloc((void **)&g->dpooled, (size_t)n * c * 4, "pooled gradient"));
    TRY(pasm_cuda_alloc((void **)&g->logits, (size_t)n * k * 4, "logits"));
    TRY(pasm_cuda_alloc((void **)&g->dlogits, (size_t)n * k * 4, "logit gradient"));
    const int size = net->final_size;
    TRY(pasm_cuda_alloc((void **)&g->staging, (size_t)n * c * size * size * 4, "features"));
    if (mode != PASM_NET_EVAL) /* gradient flow: the largest activation is a BN output */
        for (int i = 0; i < 4; i++)
            TRY(alloc_values(g, &g->scratch[i], b->largest_bn, "gradient scratch"));
    if (mode == PASM_NET_TRAIN)
        TRY(alloc_values(g, &g->dw_packed, b->largest_w, "weight gradient"));
    else {
        TRY(alloc_values(g, &g->conv_tmp, b->largest, "convolution outputs"));
        gconv *convs[1 + 8 * 3];
        int nc = 0;
        convs[nc++] = &g->stem;
        for (int i = 0; i < 8; i++) {
            convs[nc++] = &g->blocks[i].conv1;
            convs[nc++] = &g->blocks[i].conv2;
            if (g->blocks[i].has_down) convs[nc++] = &g->blocks[i].down;
        }
        for (int i = 0; i < nc; i++) convs[i]->out = g->conv_tmp;
    }
    if (mode == PASM_NET_EVAL) {
        /* A block reads slot a, writes bn1 to a+1 and the shortcut's BN to
         * a+2; conv2 has read bn1's output before bn2 overwrites it with
         * the block's output, which the next block reads. */
        for (int i = 0; i < 3; i++)
            TRY(alloc_values(g, &g->slots[i], b->largest_bn, "layer outputs"));
        g->stem_bn.out = g->slots[0];
        int a = 0;
        for (int i = 0; i < 8; i++) {
            gblock *gb = &g->blocks[i];
            gb->bn1.out = g->slots[(a + 1) % 3];
            gb->down_bn.out = g->slots[(a + 2) % 3];
            gb->bn2.out = g->slots[(a + 1) % 3];
            a = (a + 1) % 3;
        }
    }
    g->ws_bytes = b->ws_need;
    TRY(pasm_cuda_alloc(&g->ws, g->ws_bytes, "convolution workspace"));
    TRY(pasm_cuda_alloc((void **)&g->partial, b->partial_need * sizeof(double), "BN sums"));
    int cmax = c > cfg->width ? c : cfg->width;
    return pasm_cuda_alloc((void **)&g->coef, (size_t)cmax * 4 * sizeof(float), "BN coefficients");
}

static void free_conv(gconv *c) {
    pasm_cuda_conv_free(c->plan);
    pasm_cuda_free(c->w_packed);
    if (c->own_out) pasm_cuda_free(c->out);
}

static void free_bn(gbn *b) {
    pasm_cuda_free(b->save_mean);
    pasm_cuda_free(b->save_invstd);
    pasm_cuda_free(b->scale);
    pasm_cuda_free(b->shift);
    if (b->own_out) pasm_cuda_free(b->out);
}

void pasm_cuda_net_free(pasm_net *net) {
    pasm_cuda_net *g = net->gpu;
    if (!g) return;
    if (g->ctx) pasm_cuda_sync(g->ctx, "freeing the network");
    free_conv(&g->stem);
    free_bn(&g->stem_bn);
    for (int i = 0; i < 8; i++) {
        free_conv(&g->blocks[i].conv1);
        free_conv(&g->blocks[i].conv2);
        free_conv(&g->blocks[i].down);
        free_bn(&g->blocks[i].bn1);
        free_bn(&g->blocks[i].bn2);
        free_bn(&g->blocks[i].down_bn);
    }
    void *bufs[] = {g->param,   g->grad,    g->buffer,     g->momentum, g->x_nchw,
                    g->x_in,    g->dx_in,   g->dx_nchw,    g->pooled,   g->dpooled,
                    g->logits,  g->dlogits, g->scratch[0], g->scratch[1], g->scratch[2],
                    g->scratch[3], g->dw_packed, g->ws, g->partial, g->coef,
                    g->conv_tmp, g->slots[0], g->slots[1], g->slots[2], g->staging};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pasm_cuda_free(bufs[i]);
    pasm_cuda_ctx_free(g->ctx);
    free(g);
    net->gpu = NULL;
}

pasm_status pasm_cuda_net_create(pasm_net *net) {
    pasm_cuda_net *g = calloc(1, sizeof *g);
    if (!g) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the GPU network");
    g->t = net->cfg.precision == PASM_PRECISION_BF16 ? PASM_CUDA_BF16 : PASM_CUDA_F32;
    g->esize = pasm_cuda_dtype_size(g->t);
    net->gpu = g;
    builder b = {.net = net, .g = g};
    const size_t before = pasm_cuda_bytes_now();
    pasm_status st = build(&b);
    g->bytes = pasm_cuda_bytes_now() - before; /* networks are built one at a time */
    if (st) {
        pasm_status keep = st;
        char msg[512];
        snprintf(msg, sizeof msg, "%s", pasm_last_error());
        pasm_cuda_net_free(net);
        return pasm_errorf(keep, "building resnet18 width %d for batch %d on the GPU: %s",
                           net->cfg.width, net->max_batch, msg);
    }
    return PASM_OK;
}

size_t pasm_cuda_net_bytes(const pasm_net *net) { return net->gpu ? net->gpu->bytes : 0; }

/* ---- copies ---- */

pasm_status pasm_cuda_net_push(pasm_net *net) {
    pasm_cuda_net *g = net->gpu;
    g->packed = 0;
    TRY(pasm_cuda_to_device(g->ctx, g->param, net->param_block, (size_t)net->n_param_floats * 4));
    TRY(pasm_cuda_to_device(g->ctx, g->buffer, net->buffer_block, (size_t)net->buffer_floats * 4));
    return pasm_cuda_sync(g->ctx, "sending the weights to the GPU");
}

pasm_status pasm_cuda_net_pull(pasm_net *net, int with_grads) {
    pasm_cuda_net *g = net->gpu;
    TRY(pasm_cuda_to_host(g->ctx, net->param_block, g->param, (size_t)net->n_param_floats * 4));
    TRY(pasm_cuda_to_host(g->ctx, net->buffer_block, g->buffer, (size_t)net->buffer_floats * 4));
    return with_grads ? pasm_cuda_net_pull_grads(net) : PASM_OK;
}

pasm_status pasm_cuda_net_pull_grads(pasm_net *net) {
    pasm_cuda_net *g = net->gpu;
    if (!net->grad_block || !g->grad) return PASM_OK;
    return pasm_cuda_to_host(g->ctx, net->grad_block, g->grad, (size_t)net->n_param_floats * 4);
}

/* ---- forward ---- */

static pasm_status conv_fwd(pasm_cuda_net *g, gconv *c, const void *x, int n) {
    return pasm_cuda_conv_forward(c->plan, n, x, c->w_packed, c->out, g->ws, g->ws_bytes);
}

/* b->out = relu?(bn(x) + residual): batch statistics when training (the
 * running estimates move), else the running estimates. */
static pasm_status bn_fwd(pasm_cuda_net *g, gbn *b, const void *x, const void *residual, int relu,
                          int n, int train) {
    const int64_t m = (int64_t)n * b->hw;
    if (!train) return pasm_cuda_net_bn_eval(g, b, m, x, residual, relu, b->out);
    TRY(pasm_cuda_bn_stats(g->ctx, m, b->c, x, g->t, 1e-5f, 0.1f, g->param + b->gamma_off,
                           g->param + b->beta_off, g->buffer + b->mean_off,
                           g->buffer + b->var_off, b->save_mean, b->save_invstd, b->scale,
                           b->shift, g->partial));
    return pasm_cuda_affine(g->ctx, m, b->c, x, b->scale, b->shift, residual, relu, b->out, g->t);
}

pasm_status pasm_cuda_net_bn_eval(pasm_cuda_net *g, gbn *b, int64_t rows, const void *x,
                                  const void *residual, int relu, void *out) {
    TRY(pasm_cuda_bn_fold(g->ctx, b->c, 1e-5f, g->param + b->gamma_off, g->param + b->beta_off,
                          g->buffer + b->mean_off, g->buffer + b->var_off, b->scale, b->shift));
    return pasm_cuda_affine(g->ctx, rows, b->c, x, b->scale, b->shift, residual, relu, out, g->t);
}

static pasm_status pack(pasm_cuda_net *g, gconv *c) {
    const pasm_conv2d_shape *s = &c->shape;
    return pasm_cuda_pack_weight(g->ctx, s->c_out, s->c_in, s->kernel * s->kernel,
                                 g->param + c->w_off, c->w_packed, g->t);
}

pasm_status pasm_cuda_net_packed(pasm_cuda_net *g) {
    if (g->packed) return PASM_OK;
    TRY(pack(g, &g->stem));
    for (int i = 0; i < 8; i++) {
        TRY(pack(g, &g->blocks[i].conv1));
        TRY(pack(g, &g->blocks[i].conv2));
        if (g->blocks[i].has_down) TRY(pack(g, &g->blocks[i].down));
    }
    g->packed = 1;
    return PASM_OK;
}

static pasm_status block_fwd(pasm_cuda_net *g, gblock *b, const void *in, int n, int train) {
    b->in = in;
    TRY(conv_fwd(g, &b->conv1, in, n));
    TRY(bn_fwd(g, &b->bn1, b->conv1.out, NULL, 1, n, train));
    const void *shortcut = in;
    if (b->has_down) {
        TRY(conv_fwd(g, &b->down, in, n));
        TRY(bn_fwd(g, &b->down_bn, b->down.out, NULL, 0, n, train));
        shortcut = b->down_bn.out;
    }
    TRY(conv_fwd(g, &b->conv2, b->bn1.out, n));
    return bn_fwd(g, &b->bn2, b->conv2.out, shortcut, 1, n, train);
}

static pasm_status forward_from(pasm_net *net, int first, const void *h, int n, int train);

pasm_status pasm_cuda_net_forward(pasm_net *net, const float *x, int n, int train) {
    pasm_cuda_net *g = net->gpu;
    TRY(pasm_cuda_to_device(g->ctx, g->x_nchw, x, (size_t)(n * g->in_count) * 4));
    TRY(pasm_cuda_net_forward_dev(net, g->x_nchw, n, train));
    return pasm_cuda_to_host(g->ctx, net->logits, g->logits,
                             (size_t)n * net->cfg.num_classes * 4);
}

const float *pasm_cuda_net_logits(const pasm_net *net) { return net->gpu->logits; }

void pasm_cuda_net_params_changed(pasm_net *net) { net->gpu->packed = 0; }

pasm_status pasm_cuda_net_forward_dev(pasm_net *net, const float *x, int n, int train) {
    pasm_cuda_net *g = net->gpu;
    const pasm_net_config *cfg = &net->cfg;
    const int hw = cfg->input_size * cfg->input_size;
    TRY(pasm_cuda_nchw_to_nhwc(g->ctx, n, cfg->in_channels, hw, x, g->x_in, g->t));
    if (train) g->packed = 0; /* a training step always packs: a graph of it must */
    TRY(pasm_cuda_net_packed(g));
    TRY(conv_fwd(g, &g->stem, g->x_in, n));
    TRY(bn_fwd(g, &g->stem_bn, g->stem.out, NULL, 1, n, train));
    TRY(forward_from(net, 0, g->stem_bn.out, n, train));
    g->last_n = n;
    g->last_train = train;
    g->have_forward = 1;
    return PASM_OK;
}

pasm_status pasm_cuda_net_forward_tail_dev(pasm_net *net, int first, const void *h, int n) {
    pasm_cuda_net *g = net->gpu;
    TRY(pasm_cuda_net_packed(g));
    g->have_forward = 0; /* the activations are the candidates': no backward */
    return forward_from(net, first, h, n, 0);
}

/* blocks[first..7], the pool and fc from h, the input of blocks[first] */
static pasm_status forward_from(pasm_net *net, int first, const void *h, int n, int train) {
    pasm_cuda_net *g = net->gpu;
    const pasm_net_config *cfg = &net->cfg;
    for (int i = first; i < 8; i++) {
        TRY(block_fwd(g, &g->blocks[i], h, n, train));
        h = g->blocks[i].bn2.out;
    }
    const int c = net->final_channels, size = net->final_size, k = cfg->num_classes;
    TRY(pasm_cuda_avgpool_forward(g->ctx, n, c, size * size, h, g->t, g->pooled));
    TRY(pasm_cuda_linear_forward(g->ctx, n, c, k, g->pooled, g->param + (net->fc_weight -
                                                                         net->param_block),
                                 g->param + (net->fc_bias - net->param_block), g->logits));
    return PASM_OK;
}

/* ---- backward ---- */

/* BN backward from dy into dx: through the batch statistics after a
 * training forward (parameter gradients too), else through the frozen
 * affine map (dx = dy * scale). x is the BN's input. */
static pasm_status bn_bwd(pasm_cuda_net *g, gbn *b, const void *x, const void *dy, void *dx,
                          int n) {
    const int64_t m = (int64_t)n * b->hw;
    if (!g->last_train)
        return pasm_cuda_affine(g->ctx, m, b->c, dy, b->scale, NULL, NULL, 0, dx, g->t);
    return pasm_cuda_bn_backward(g->ctx, m, b->c, x, dy, g->t, g->param + b->gamma_off,
                                 b->save_mean, b->save_invstd, dx, g->grad + b->gamma_off,
                                 g->grad + b->beta_off, g->partial, g->coef);
}

/* Conv backward: the input gradient into dx (NULL: none), and after a
 * training forward the weight gradient into the gradient block. */
static pasm_status conv_bwd(pasm_cuda_net *g, gconv *c, const void *x, const void *dy, void *dx,
                            int n) {
    const pasm_conv2d_shape *s = &c->shape;
    if (g->last_train) {
        TRY(pasm_cuda_conv_backward_filter(c->plan, n, x, dy, g->dw_packed, g->ws, g->ws_bytes));
        TRY(pasm_cuda_unpack_weight(g->ctx, s->c_out, s->c_in, s->kernel * s->kernel,
                                    g->dw_packed, g->t, g->grad + c->w_off));
    }
    if (!dx) return PASM_OK;
    return pasm_cuda_conv_backward_data(c->plan, n, dy, c->w_packed, dx, g->ws, g->ws_bytes);
}

static int64_t bn_count(const gbn *b, int n) { return (int64_t)n * b->hw * b->c; }

/* dout: the gradient of the block's output; *din: of its input, in a
 * scratch buffer other than dout. */
static pasm_status block_bwd(pasm_cuda_net *g, gblock *b, void *dout, void **din, int n) {
    void *spare[3];
    int k = 0;
    for (int i = 0; i < 4; i++)
        if (g->scratch[i] != dout) spare[k++] = g->scratch[i];
    TRY(pasm_cuda_relu_backward(g->ctx, bn_count(&b->bn2, n), b->bn2.out, dout, g->t));
    TRY(bn_bwd(g, &b->bn2, b->conv2.out, dout, spare[0], n));
    TRY(conv_bwd(g, &b->conv2, b->bn1.out, spare[0], spare[1], n));
    TRY(pasm_cuda_relu_backward(g->ctx, bn_count(&b->bn1, n), b->bn1.out, spare[1], g->t));
    TRY(bn_bwd(g, &b->bn1, b->conv1.out, spare[1], spare[0], n));
    TRY(conv_bwd(g, &b->conv1, b->in, spare[0], spare[2], n));
    const pasm_conv2d_shape *s = &b->conv1.shape;
    const int64_t in_count = (int64_t)n * s->c_in * s->h_in * s->w_in;
    if (b->has_down) {
        TRY(bn_bwd(g, &b->down_bn, b->down.out, dout, spare[0], n));
        TRY(conv_bwd(g, &b->down, b->in, spare[0], spare[1], n));
        TRY(pasm_cuda_add(g->ctx, in_count, spare[2], spare[1], g->t));
    } else {
        TRY(pasm_cuda_add(g->ctx, in_count, spare[2], dout, g->t));
    }
    *din = spare[2];
    return PASM_OK;
}

pasm_status pasm_cuda_net_backward(pasm_net *net, const float *dlogits, float *dx) {
    pasm_cuda_net *g = net->gpu;
    if (!g->have_forward) return pasm_errorf(PASM_ERR_INVALID, "backward called before any forward");
    const int n = g->last_n, k = net->cfg.num_classes;
    TRY(pasm_cuda_to_device(g->ctx, g->dlogits, dlogits, (size_t)n * k * 4));
    TRY(pasm_cuda_net_backward_dev(net, g->dlogits, dx ? g->dx_nchw : NULL));
    if (!dx) return PASM_OK;
    return pasm_cuda_to_host(g->ctx, dx, g->dx_nchw, (size_t)(n * g->in_count) * 4);
}

pasm_status pasm_cuda_net_backward_dev(pasm_net *net, const float *dlogits, float *dx) {
    pasm_cuda_net *g = net->gpu;
    if (!g->have_forward) return pasm_errorf(PASM_ERR_INVALID, "backward called before any forward");
    const int n = g->last_n;
    const pasm_net_config *cfg = &net->cfg;
    const int c = net->final_channels, size = net->final_size, k = cfg->num_classes;
    const int64_t fcw = net->fc_weight - net->param_block, fcb = net->fc_bias - net->param_block;
    TRY(pasm_cuda_linear_backward(g->ctx, n, c, k, g->pooled, g->param + fcw, dlogits,
                                  g->dpooled, g->last_train ? g->grad + fcw : NULL,
                                  g->last_train ? g->grad + fcb : NULL));
    void *d = g->scratch[0];
    TRY(pasm_cuda_avgpool_backward(g->ctx, n, c, size * size, g->dpooled, d, g->t));
    for (int i = 7; i >= 0; i--) TRY(block_bwd(g, &g->blocks[i], d, &d, n));
    TRY(pasm_cuda_relu_backward(g->ctx, bn_count(&g->stem_bn, n), g->stem_bn.out, d, g->t));
    void *dstem = d == g->scratch[0] ? g->scratch[1] : g->scratch[0];
    TRY(bn_bwd(g, &g->stem_bn, g->stem.out, d, dstem, n));
    TRY(conv_bwd(g, &g->stem, g->x_in, dstem, dx ? g->dx_in : NULL, n));
    if (!dx) return PASM_OK;
    const int hw = cfg->input_size * cfg->input_size;
    return pasm_cuda_nhwc_to_nchw(g->ctx, n, cfg->in_channels, hw, g->dx_in, g->t, dx);
}

/* ---- the optimiser ---- */

pasm_status pasm_cuda_net_sgd(pasm_net *net, float lr, float weight_decay, float momentum,
                              float dampening, int nesterov, int first, const float *host_momentum,
                              int upload_momentum, const void *step) {
    pasm_cuda_net *g = net->gpu;
    const int64_t np = net->n_param_floats;
    float *buf = NULL;
    if (!g->grad)
        return pasm_errorf(PASM_ERR_INVALID, "an SGD step on a network built for evaluation");
    if (host_momentum) {
        if (!g->momentum)
            TRY(pasm_cuda_alloc((void **)&g->momentum, (size_t)np * 4, "momentum buffer"));
        if (upload_momentum)
            TRY(pasm_cuda_to_device(g->ctx, g->momentum, host_momentum, (size_t)np * 4));
        buf = g->momentum;
    }
    g->packed = 0;
    return pasm_cuda_sgd(g->ctx, np, g->param, g->grad, buf, lr, weight_decay, momentum, dampening,
                         nesterov, first, (const pasm_cuda_step *)step);
}

pasm_status pasm_cuda_net_pull_momentum(pasm_net *net, float *host_momentum) {
    pasm_cuda_net *g = net->gpu;
    if (!g->momentum) return PASM_OK;
    return pasm_cuda_to_host(g->ctx, host_momentum, g->momentum, (size_t)net->n_param_floats * 4);
}

pasm_status pasm_cuda_net_pull_features(pasm_net *net, float *host, int n) {
    pasm_cuda_net *g = net->gpu;
    const int c = net->final_channels, size = net->final_size;
    TRY(pasm_cuda_nhwc_to_nchw(g->ctx, n, c, size * size, g->blocks[7].bn2.out, g->t, g->staging));
    return pasm_cuda_to_host(g->ctx, host, g->staging, (size_t)n * c * size * size * 4);
}
