/* One-pixel candidates on windows, on the GPU: the method of src/nn/patch.c
 * (the geometry is nn/patch_plan.h's) over the GPU network's NHWC
 * activations in its compute type.
 *
 * A group of candidates first gets its faces' clean activations (the
 * network's own convolution plans and BN maps at full size, so its
 * values); each candidate's input window is its one pixel. Every windowed
 * layer then runs as: a gather of each candidate's input crop (its window
 * over its face's clean tensor, zero outside the map: patch_gather,
 * attack.cu), one cuDNN convolution without padding over the crops of the
 * whole group (a plan per layer, made for the group's size), and the BN
 * map with the residual and ReLU in place. The last windowed tensor is
 * spread over its clean face at full size and the network runs the rest
 * (pasm_cuda_net_forward_tail_dev). Candidates' records (their face, and
 * their windows' origins for every tensor) go up once per group, and the
 * logits come back. */
#include <stdlib.h>
#include <string.h>

#include "cuda/net_internal.h"
#include "nn/nn_device.h"
#include "nn/patch_plan.h"

#define CONVS (1 + 3 * 8) /* the stem, then per block conv1, conv2, downsample */

struct pasm_cuda_patch {
    pasm_net *net;
    pasm_patch_plan plan;
    int max_faces, max_group;
    int ms; /* ints of a candidate's record: its face, then (row, col) per tensor */
    pasm_cuda_conv *conv[CONVS];
    void *clean[PASM_PATCH_TENSORS], *win[PASM_PATCH_TENSORS];
    void *crop, *res, *tail, *down, *ws; /* down: the clean pass's shortcut */
    size_t ws_bytes;
    float *x_faces, *values;
    pasm_cuda_pixel *face_items;
    int32_t *meta;
    /* host */
    float table[3 * 256];
    int32_t *meta_host;
    pasm_cuda_pixel *face_items_host;
    float *values_host;
    int *slot_face, *slot_of, *face_of; /* pasm_patch_group's */
    int slot_cap;
};

void pasm_cuda_patch_free(pasm_cuda_patch *p) {
    if (!p) return;
    if (p->net && p->net->gpu) pasm_cuda_sync(p->net->gpu->ctx, "ending the candidate windows");
    for (int i = 0; i < CONVS; i++) pasm_cuda_conv_free(p->conv[i]);
    for (int i = 0; i < PASM_PATCH_TENSORS; i++) {
        pasm_cuda_free(p->clean[i]);
        pasm_cuda_free(p->win[i]);
    }
    void *bufs[] = {p->crop, p->res, p->tail, p->down, p->ws, p->x_faces, p->values, p->face_items, p->meta};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pasm_cuda_free(bufs[i]);
    pasm_patch_plan_free(&p->plan);
    free(p->meta_host);
    free(p->face_items_host);
    free(p->values_host);
    free(p->slot_face);
    free(p->slot_of);
    free(p->face_of);
    free(p);
}

/* The layers on windows: conv index, its GPU layers, input and output
 * tensors. */
typedef struct {
    gconv *conv;
    gbn *bn;
    int src, dst;
} wlayer;

static wlayer layer_of(pasm_cuda_net *g, int i) {
    if (i == 0) return (wlayer){&g->stem, &g->stem_bn, 0, 1};
    const int b = (i - 1) / 3, k = (i - 1) % 3;
    gblock *gb = &g->blocks[b];
    if (k == 0) return (wlayer){&gb->conv1, &gb->bn1, 1 + 2 * b, 2 + 2 * b};
    if (k == 1) return (wlayer){&gb->conv2, &gb->bn2, 2 + 2 * b, 3 + 2 * b};
    return (wlayer){gb->has_down ? &gb->down : NULL, &gb->down_bn, 1 + 2 * b, 3 + 2 * b};
}

/* The side of a layer's input crop for its output window. */
static int crop_side(const wlayer *l, const pasm_patch_plan *pl) {
    const pasm_conv2d_shape *s = &l->conv->shape;
    return (pl->win[l->dst] - 1) * s->stride + s->kernel;
}

static pasm_status alloc_n(void **ptr, size_t count, size_t size, const char *what) {
    return pasm_cuda_alloc(ptr, count * size, what);
}

pasm_status pasm_cuda_patch_create(pasm_net *net, const float *table, size_t budget_bytes,
                                   pasm_cuda_patch **out) {
    *out = NULL;
    pasm_cuda_net *g = net->gpu;
    if (!g || net->mode == PASM_NET_TRAIN || net->cfg.in_channels > 3)
        return PASM_OK; /* TRAIN: no conv_tmp; a candidate record holds 3 values */
    pasm_cuda_patch *p = calloc(1, sizeof *p);
    if (!p) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the GPU candidate windows");
    p->net = net;
    pasm_status st = pasm_patch_plan_make(net, &p->plan);
    const pasm_patch_plan *pl = &p->plan;
    if (st || pl->n_blocks == 0) {
        pasm_cuda_patch_free(p);
        return st;
    }
    const int C = net->cfg.in_channels, S = net->cfg.input_size;
    memcpy(p->table, table, (size_t)C * 256 * sizeof(float));
    const size_t es = g->esize;
    const int n_convs = 1 + 3 * pl->n_blocks;
    /* values a face and a candidate hold */
    size_t per_face = 0, per_cand = 0, crop = 0, res = 0, down = 0;
    for (int i = 0; i < pl->n_tensors; i++) {
        per_face += (size_t)pl->c[i] * pl->h[i] * pl->h[i];
        per_cand += (size_t)pl->c[i] * pl->win[i] * pl->win[i];
    }
    for (int i = 0; i < n_convs; i++) {
        wlayer l = layer_of(g, i);
        if (!l.conv) continue;
        size_t hc = (size_t)crop_side(&l, pl);
        if (hc * hc * l.conv->shape.c_in > crop) crop = hc * hc * l.conv->shape.c_in;
        size_t r = (size_t)pl->c[l.dst] * pl->win[l.dst] * pl->win[l.dst];
        if (r > res) res = r;
        size_t d = (size_t)pl->c[l.dst] * pl->h[l.dst] * pl->h[l.dst];
        if (i % 3 == 0 && i > 0 && d > down) down = d; /* a downsample */
    }
    per_face += down;
    const int last = pl->n_tensors - 1;
    const size_t tail = (size_t)pl->c[last] * pl->h[last] * pl->h[last];
    per_cand += crop + res + tail;
    const size_t face_bytes = per_face * es + (size_t)C * S * S * 4,
                 cand_bytes = per_cand * es + (size_t)C * 4 + (2 + 2 * pl->n_tensors) * 4;
    size_t f = budget_bytes / 2 / face_bytes, gm = budget_bytes / 2 / cand_bytes;
    p->max_faces = f < 1 ? 1 : f > 256 ? 256 : (int)f;
    if (p->max_faces > net->max_batch) p->max_faces = net->max_batch;
    p->max_group = gm < 1 ? 1 : gm > (size_t)net->max_batch ? net->max_batch : (int)gm;
    const int F = p->max_faces, G = p->max_group;
    p->ms = 1 + 2 * pl->n_tensors;
    /* the windowed convolutions' plans, for groups of G */
    for (int i = 0; i < n_convs && !st; i++) {
        wlayer l = layer_of(g, i);
        if (!l.conv) continue;
        const int hc = crop_side(&l, pl);
        pasm_conv2d_shape s = l.conv->shape;
        s.n = G, s.h_in = s.w_in = hc, s.pad = 0;
        st = pasm_conv2d_shape_init(&s);
        if (!st && s.h_out != pl->win[l.dst])
            st = pasm_errorf(PASM_ERR_SHAPE, "candidate windows: layer %d gives %d, not %d", i,
                             s.h_out, pl->win[l.dst]);
        if (!st) st = pasm_cuda_conv_create(g->ctx, &s, g->t, PASM_CUDA_CONV_FORWARD, &p->conv[i]);
        if (!st && pasm_cuda_conv_workspace(p->conv[i]) > p->ws_bytes)
            p->ws_bytes = pasm_cuda_conv_workspace(p->conv[i]);
    }
    for (int i = 0; i < pl->n_tensors && !st; i++) {
        st = alloc_n(&p->clean[i], (size_t)F * pl->c[i] * pl->h[i] * pl->h[i], es,
                     "faces' clean activations");
        if (!st)
            st = alloc_n(&p->win[i], (size_t)G * pl->c[i] * pl->win[i] * pl->win[i], es,
                         "candidate windows");
    }
    if (!st) st = alloc_n(&p->crop, (size_t)G * crop, es, "candidate crops");
    if (!st) st = alloc_n(&p->res, (size_t)G * res, es, "candidate residuals");
    if (!st) st = alloc_n(&p->tail, (size_t)G * tail, es, "candidates at full size");
    if (!st && down) st = alloc_n(&p->down, (size_t)F * down, es, "faces' shortcuts");
    if (!st && p->ws_bytes) st = pasm_cuda_alloc(&p->ws, p->ws_bytes, "window convolutions");
    if (!st) st = alloc_n((void **)&p->x_faces, (size_t)F * C * S * S, 4, "faces' inputs");
    if (!st) st = alloc_n((void **)&p->values, (size_t)G * C, 4, "candidates' values");
    if (!st) st = alloc_n((void **)&p->face_items, F, sizeof(pasm_cuda_pixel), "faces");
    if (!st) st = alloc_n((void **)&p->meta, (size_t)G * p->ms, 4, "candidates' records");
    p->meta_host = malloc((size_t)G * p->ms * sizeof(int32_t));
    p->face_items_host = calloc((size_t)F, sizeof(pasm_cuda_pixel));
    p->values_host = malloc((size_t)G * C * sizeof(float));
    p->slot_face = malloc((size_t)F * sizeof(int));
    p->face_of = malloc((size_t)G * sizeof(int));
    if (!st && (!p->meta_host || !p->face_items_host || !p->values_host || !p->slot_face ||
                !p->face_of))
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for the GPU candidate windows");
    if (st) {
        pasm_cuda_patch_free(p);
        return st;
    }
    *out = p;
    return PASM_OK;
}

/* The clean activations of the faces in slots [0, f). */
static pasm_status clean_pass(pasm_cuda_patch *p, int f, const uint8_t *faces,
                              const float *table_dev) {
    pasm_net *net = p->net;
    pasm_cuda_net *g = net->gpu;
    const pasm_patch_plan *pl = &p->plan;
    const int C = net->cfg.in_channels, S = net->cfg.input_size;
    /* each face as a candidate that sets its pixel (0, 0) to its own value */
    pasm_status st = pasm_cuda_pixel_batch(g->ctx, f, C, S, faces, p->face_items, table_dev,
                                           p->x_faces);
    if (!st) st = pasm_cuda_nchw_to_nhwc(g->ctx, f, C, S * S, p->x_faces, p->clean[0], g->t);
    for (int b = -1; b < pl->n_blocks && !st; b++) {
        const int in = b < 0 ? 0 : 1 + 2 * b;
        gconv *c1 = b < 0 ? &g->stem : &g->blocks[b].conv1;
        gbn *b1 = b < 0 ? &g->stem_bn : &g->blocks[b].bn1;
        void *o1 = p->clean[b < 0 ? 1 : 2 + 2 * b];
        const int64_t rows1 = (int64_t)f * c1->shape.h_out * c1->shape.w_out;
        st = pasm_cuda_conv_forward(c1->plan, f, p->clean[in], c1->w_packed, g->conv_tmp, g->ws,
                                    g->ws_bytes);
        if (!st) st = pasm_cuda_net_bn_eval(g, b1, rows1, g->conv_tmp, NULL, 1, o1);
        if (b < 0 || st) continue;
        gblock *gb = &g->blocks[b];
        const int64_t rows2 = (int64_t)f * gb->conv2.shape.h_out * gb->conv2.shape.w_out;
        const void *shortcut = p->clean[in];
        if (gb->has_down) {
            st = pasm_cuda_conv_forward(gb->down.plan, f, p->clean[in], gb->down.w_packed,
                                        g->conv_tmp, g->ws, g->ws_bytes);
            if (!st) st = pasm_cuda_net_bn_eval(g, &gb->down_bn, rows2, g->conv_tmp, NULL, 0, p->down);
            shortcut = p->down;
        }
        if (!st)
            st = pasm_cuda_conv_forward(gb->conv2.plan, f, p->clean[2 + 2 * b], gb->conv2.w_packed,
                                        g->conv_tmp, g->ws, g->ws_bytes);
        if (!st) st = pasm_cuda_net_bn_eval(g, &gb->bn2, rows2, g->conv_tmp, shortcut, 1, p->clean[3 + 2 * b]);
    }
    return st;
}

/* Tensor src of the n candidates gathered as crops for window dst. */
static pasm_status gather(pasm_cuda_patch *p, int n, int src, int dst, int stride, int pad, int hc,
                          void *out) {
    const pasm_patch_plan *pl = &p->plan;
    pasm_cuda_net *g = p->net->gpu;
    return pasm_cuda_patch_gather(g->ctx, n, pl->c[src], pl->h[src], pl->win[src], p->clean[src],
                                  p->win[src], p->meta, p->ms, src, dst, stride, pad, hc, out,
                                  g->t);
}

/* Windowed layer i of n candidates into out (its output window, or the
 * residual), with its BN map, residual and ReLU. */
static pasm_status window_layer(pasm_cuda_patch *p, int i, int n, const void *residual, int relu,
                                void *out) {
    pasm_cuda_net *g = p->net->gpu;
    const wlayer l = layer_of(g, i);
    const pasm_conv2d_shape *s = &l.conv->shape;
    const int wo = p->plan.win[l.dst];
    pasm_status st = gather(p, n, l.src, l.dst, s->stride, s->pad, crop_side(&l, &p->plan), p->crop);
    if (!st)
        st = pasm_cuda_conv_forward(p->conv[i], n, p->crop, l.conv->w_packed, out, p->ws,
                                    p->ws_bytes);
    return st ? st : pasm_cuda_net_bn_eval(g, l.bn, (int64_t)n * wo * wo, out, residual, relu, out);
}

static pasm_status group_forward(pasm_cuda_patch *p, int n, float *logits) {
    pasm_net *net = p->net;
    pasm_cuda_net *g = net->gpu;
    const pasm_patch_plan *pl = &p->plan;
    const int C = net->cfg.in_channels;
    pasm_status st = pasm_cuda_nchw_to_nhwc(g->ctx, n, C, 1, p->values, p->win[0], g->t);
    if (!st) st = window_layer(p, 0, n, NULL, 1, p->win[1]);
    for (int b = 0; b < pl->n_blocks && !st; b++) {
        const int in = 1 + 2 * b, out = 3 + 2 * b, wo = pl->win[out];
        st = window_layer(p, 1 + 3 * b, n, NULL, 1, p->win[2 + 2 * b]);
        if (!st && g->blocks[b].has_down)
            st = window_layer(p, 3 + 3 * b, n, NULL, 0, p->res);
        else if (!st) /* the identity: the block's input at the output window */
            st = gather(p, n, in, out, 1, 0, wo, p->res);
        if (!st) st = window_layer(p, 2 + 3 * b, n, p->res, 1, p->win[out]);
    }
    const int last = pl->n_tensors - 1;
    if (!st) st = gather(p, n, last, -1, 1, 0, pl->h[last], p->tail);
    if (!st) st = pasm_cuda_net_forward_tail_dev(net, pl->n_blocks, p->tail, n);
    if (!st)
        st = pasm_cuda_to_host(g->ctx, logits, pasm_cuda_net_logits(net),
                               (size_t)n * net->cfg.num_classes * sizeof(float));
    return st;
}

pasm_status pasm_cuda_patch_forward(pasm_cuda_patch *p, const uint8_t *faces,
                                    const uint8_t *faces_host, int n_bound,
                                    const float *table_dev, int m, const int *img, const int *row,
                                    const int *col, const uint8_t *values, float *logits) {
    pasm_net *net = p->net;
    pasm_cuda_net *g = net->gpu;
    const pasm_patch_plan *pl = &p->plan;
    const int C = net->cfg.in_channels, S = net->cfg.input_size, K = net->cfg.num_classes;
    const int64_t per = (int64_t)C * S * S;
    /* PASM_CUDA_PATCH_FAIL=1 (tests): fail as a window convolution that
     * cuDNN chose but could not run would, so the scorer's fallback runs */
    const char *fail = getenv("PASM_CUDA_PATCH_FAIL");
    if (fail && !strcmp(fail, "1"))
        return pasm_errorf(PASM_ERR_UNSUPPORTED, "candidate windows: a convolution could not "
                                                 "run (PASM_CUDA_PATCH_FAIL=1)");
    pasm_status st = pasm_net_device_ready(net);
    if (st) return st;
    if ((st = pasm_cuda_net_packed(g))) return st;
    if (n_bound > p->slot_cap) { /* -1 throughout, as pasm_patch_group leaves it */
        free(p->slot_of);
        p->slot_cap = 0;
        if (!(p->slot_of = malloc((size_t)n_bound * sizeof(int))))
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory for %d faces", n_bound);
        p->slot_cap = n_bound;
        for (int i = 0; i < n_bound; i++) p->slot_of[i] = -1;
    }
    net->last_n = 0; /* the network's activations become the candidates' */
    for (int start = 0; start < m && !st;) {
        int f;
        const int n = pasm_patch_group(img, start, m, p->max_group, p->max_faces, p->slot_of,
                                       p->slot_face, p->face_of, &f);
        for (int i = 0; i < n; i++) {
            const int j = start + i;
            int32_t *mj = p->meta_host + (size_t)i * p->ms;
            mj[0] = p->face_of[i];
            for (int t = 0; t < pl->n_tensors; t++) {
                mj[1 + 2 * t] = pl->lo[t * S + row[j]];
                mj[2 + 2 * t] = pl->lo[t * S + col[j]];
            }
            for (int ch = 0; ch < C; ch++)
                p->values_host[i * C + ch] = p->table[ch * 256 + values[(size_t)j * C + ch]];
        }
        for (int s = 0; s < f; s++) {
            pasm_cuda_pixel *it = &p->face_items_host[s];
            it->img = p->slot_face[s], it->row = 0, it->col = 0;
            for (int ch = 0; ch < C; ch++) it->value[ch] = faces_host[p->slot_face[s] * per + ch * S * S];
        }
        st = pasm_cuda_to_device(g->ctx, p->meta, p->meta_host, (size_t)n * p->ms * 4);
        if (!st) st = pasm_cuda_to_device(g->ctx, p->values, p->values_host, (size_t)n * C * 4);
        if (!st)
            st = pasm_cuda_to_device(g->ctx, p->face_items, p->face_items_host,
                                     (size_t)f * sizeof(pasm_cuda_pixel));
        if (!st) st = clean_pass(p, f, faces, table_dev);
        if (!st) st = group_forward(p, n, logits + (size_t)start * K); /* waits: the logits */
        start += n;
    }
    return st;
}
