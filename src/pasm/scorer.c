/* The scorer the attacks query, over a network in evaluation mode: uint8
 * images are normalised as in training (pixel/255 - mean) / std inside, and
 * the input gradient the network gives (w.r.t. the normalised input) is
 * carried back to pixel units by the chain rule, d/dpixel = d/dx / (255 std).
 * A PASM_NET_EVAL network (no backward planned) gives a scorer without
 * gradients, for de, random and cam; grad and iter need PASM_NET_EVAL_GRAD. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/ops.h"
#include "pasm/pasm_method.h"
#include "pasm/scorer_device.h"
#include "nn/patch_plan.h"

typedef struct {
    pasm_net *net;
    float mean[3], std[3];
    float *x, *dlogits, *maps; /* maps: batch x final size^2 */
    scorer_device *dev;        /* a network on the GPU: the device path (NULL: none) */
    /* a CPU network: one-pixel candidates on windows (pasm_net_patch) */
    pasm_net_patch *patch;
    const uint8_t *bound;      /* the bound faces (the caller's) */
    int n_bound;
    float *xb;                 /* the bound faces, normalised */
    uint8_t *seen;             /* n_bound: faces met in one changed call */
    uint8_t *cand;             /* batch candidates assembled on the host */
    float *values, *logits;    /* batch x C normalised values, batch x K logits */
} net_ctx;

#define PATCH_BUDGET ((size_t)256 << 20) /* the windows' memory */

static void normalise(const net_ctx *c, const uint8_t *images, int n, int channels, int size,
                      float *x) {
    const int64_t plane = (int64_t)size * size;
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < channels; ch++) {
            const uint8_t *src = images + ((int64_t)i * channels + ch) * plane;
            float *dst = x + ((int64_t)i * channels + ch) * plane;
            /* the same float expression as pasm_batch_make */
            for (int64_t p = 0; p < plane; p++)
                dst[p] = ((float)src[p] / 255.0f - c->mean[ch]) / c->std[ch];
        }
}

static pasm_status net_probs(void *ctx, const uint8_t *images, int n, float *probs) {
    net_ctx *c = ctx;
    const pasm_net_config *cfg = pasm_net_get_config(c->net);
    normalise(c, images, n, cfg->in_channels, cfg->input_size, c->x);
    const float *logits;
    pasm_status st = pasm_net_forward(c->net, c->x, n, 0, &logits);
    if (st) return st;
    pasm_softmax(n, cfg->num_classes, logits, probs);
    return PASM_OK;
}

/* Per-image cross-entropy (not the batch mean): each image's gradient is
 * its own, whatever else is in the batch (evaluation-mode BN). */
static void ce_grad(const float *probs, const int32_t *labels, int n, int k, float *dlogits) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++)
            dlogits[i * k + j] = probs[i * k + j] - (j == labels[i] ? 1.0f : 0.0f);
}

static pasm_status net_grad(void *ctx, const uint8_t *images, const int32_t *labels, int n,
                            float *probs, float *dpixels) {
    net_ctx *c = ctx;
    const pasm_net_config *cfg = pasm_net_get_config(c->net);
    const int k = cfg->num_classes, channels = cfg->in_channels;
    const int64_t plane = (int64_t)cfg->input_size * cfg->input_size;
    normalise(c, images, n, channels, cfg->input_size, c->x);
    const float *logits;
    pasm_status st = pasm_net_forward(c->net, c->x, n, 0, &logits);
    if (st) return st;
    pasm_softmax(n, k, logits, probs);
    ce_grad(probs, labels, n, k, c->dlogits);
    if ((st = pasm_net_backward(c->net, c->dlogits, dpixels))) return st;
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < channels; ch++) {
            float *d = dpixels + ((int64_t)i * channels + ch) * plane;
            const float scale = 1.0f / (255.0f * c->std[ch]);
            for (int64_t p = 0; p < plane; p++) d[p] *= scale;
        }
    return PASM_OK;
}

/* Bilinear upsampling of an in x in map to out x out, as F.interpolate(
 * mode="bilinear", align_corners=False): source coordinate (d + 0.5) *
 * in / out - 0.5, clamped at 0, neighbours clamped at the edge. */
static void upsample(const float *src, int in, float *dst, int out, int relu) {
    const float scale = (float)in / (float)out;
    for (int y = 0; y < out; y++) {
        float sy = fmaxf(((float)y + 0.5f) * scale - 0.5f, 0.0f);
        int y0 = (int)sy, y1 = y0 + 1 < in ? y0 + 1 : in - 1;
        float ly = sy - (float)y0;
        for (int x = 0; x < out; x++) {
            float sx = fmaxf(((float)x + 0.5f) * scale - 0.5f, 0.0f);
            int x0 = (int)sx, x1 = x0 + 1 < in ? x0 + 1 : in - 1;
            float lx = sx - (float)x0;
            float v[4] = {src[y0 * in + x0], src[y0 * in + x1], src[y1 * in + x0],
                          src[y1 * in + x1]};
            if (relu)
                for (int j = 0; j < 4; j++) v[j] = fmaxf(v[j], 0.0f);
            dst[y * out + x] = (1 - ly) * ((1 - lx) * v[0] + lx * v[1]) +
                               ly * ((1 - lx) * v[2] + lx * v[3]);
        }
    }
}

static pasm_status net_cam(void *ctx, const uint8_t *images, const int32_t *labels, int n,
                           float *probs, float *maps) {
    net_ctx *c = ctx;
    pasm_status st = net_probs(ctx, images, n, probs);
    int fs;
    if (st || (st = pasm_net_class_map(c->net, labels, c->maps, &fs))) return st;
    const int size = pasm_net_get_config(c->net)->input_size;
    for (int i = 0; i < n; i++) {
        const float *m = c->maps + (int64_t)i * fs * fs;
        int positive = 0;
        for (int p = 0; p < fs * fs; p++) positive |= m[p] > 0;
        upsample(m, fs, maps + (int64_t)i * size * size, size, positive);
    }
    return PASM_OK;
}

/* ---- the host's one-pixel candidates: on windows (pasm_net_patch) when
 * the faces have candidates enough to pay for their clean passes (de's
 * populations), else assembled whole (grad's, random's and cam's one or
 * two a face, exactly as the attacks would) ---- */
static pasm_status host_bind(void *ctx, const uint8_t *images, int n) {
    net_ctx *c = ctx;
    free(c->xb), free(c->seen);
    c->xb = NULL, c->seen = NULL, c->bound = NULL, c->n_bound = 0;
    pasm_status st = pasm_net_patch_bind(c->patch, NULL, 0);
    if (!images || n <= 0 || st) return st;
    const pasm_net_config *cfg = pasm_net_get_config(c->net);
    const int64_t per = (int64_t)cfg->in_channels * cfg->input_size * cfg->input_size;
    c->xb = malloc((size_t)n * per * sizeof(float));
    c->seen = calloc((size_t)n, 1);
    if (!c->xb || !c->seen) {
        free(c->xb), free(c->seen);
        c->xb = NULL, c->seen = NULL;
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory binding %d faces", n);
    }
    normalise(c, images, n, cfg->in_channels, cfg->input_size, c->xb);
    if ((st = pasm_net_patch_bind(c->patch, c->xb, n))) return st;
    c->bound = images;
    c->n_bound = n;
    return PASM_OK;
}

static pasm_status host_changed(void *ctx, int m, const int *img, const int *row, const int *col,
                                const uint8_t *values, float *probs) {
    net_ctx *c = ctx;
    const pasm_net_config *cfg = pasm_net_get_config(c->net);
    const int C = cfg->in_channels, S = cfg->input_size, K = cfg->num_classes;
    if (!c->bound) return pasm_errorf(PASM_ERR_INVALID, "scorer: no faces bound");
    if (m > pasm_net_max_batch(c->net))
        return pasm_errorf(PASM_ERR_INVALID, "scorer: %d candidates over the batch of %d", m,
                           pasm_net_max_batch(c->net));
    for (int j = 0; j < m; j++)
        if (img[j] < 0 || img[j] >= c->n_bound || row[j] < 0 || row[j] >= S || col[j] < 0 ||
            col[j] >= S)
            return pasm_errorf(PASM_ERR_INVALID, "scorer: candidate %d is face %d pixel (%d, %d), "
                                                 "outside %d faces of %dx%d",
                               j, img[j], row[j], col[j], c->n_bound, S, S);
    double clean, cand = pasm_net_patch_cost(c->patch, &clean);
    if (!pasm_patch_worth(clean, cand, m, img, c->seen)) {
        pasm_status st = pasm_candidates_assemble(C, S, c->bound, c->n_bound, m, img, row, col,
                                                  values, c->cand);
        return st ? st : net_probs(ctx, c->cand, m, probs);
    }
    for (int j = 0; j < m; j++)
        for (int ch = 0; ch < C; ch++) /* the same float expression as normalise */
            c->values[(int64_t)j * C + ch] =
                ((float)values[(int64_t)j * C + ch] / 255.0f - c->mean[ch]) / c->std[ch];
    pasm_status st = pasm_net_patch_forward(c->patch, m, img, row, col, c->values, c->logits);
    if (!st) pasm_softmax(m, K, c->logits, probs);
    return st;
}

/* ---- the device path (a network on the GPU): the same probabilities and
 * picks as the host path's, with the images and candidates assembled and
 * the pixels picked on the GPU ---- */
static pasm_status dev_probs(void *ctx, const uint8_t *images, int n, float *probs) {
    net_ctx *c = ctx;
    const float *logits;
    pasm_status st = scorer_device_logits(c->dev, images, n, &logits);
    if (!st) pasm_softmax(n, pasm_net_get_config(c->net)->num_classes, logits, probs);
    return st;
}

static pasm_status dev_salient(void *ctx, const uint8_t *images, const int32_t *labels,
                               const uint8_t *skip, int n, float *probs, int *pixel,
                               uint8_t *values) {
    net_ctx *c = ctx;
    pasm_status st = dev_probs(ctx, images, n, probs);
    if (st) return st;
    ce_grad(probs, labels, n, pasm_net_get_config(c->net)->num_classes, c->dlogits);
    return scorer_device_salient(c->dev, c->dlogits, skip, pixel, values);
}

static pasm_status dev_bind(void *ctx, const uint8_t *images, int n) {
    return scorer_device_bind(((net_ctx *)ctx)->dev, images, n);
}

static pasm_status dev_changed(void *ctx, int m, const int *img, const int *row, const int *col,
                               const uint8_t *values, float *probs) {
    net_ctx *c = ctx;
    const float *logits;
    pasm_status st = scorer_device_changed(c->dev, m, img, row, col, values, &logits);
    if (!st) pasm_softmax(m, pasm_net_get_config(c->net)->num_classes, logits, probs);
    return st;
}

pasm_status pasm_scorer_net(pasm_scorer *s, pasm_net *net, const float *mean, const float *std) {
    memset(s, 0, sizeof *s);
    const pasm_net_config *cfg = pasm_net_get_config(net);
    for (int ch = 0; ch < cfg->in_channels; ch++)
        if (!(std[ch] > 0))
            return pasm_errorf(PASM_ERR_INVALID, "normalisation std of channel %d is %g", ch,
                               (double)std[ch]);
    net_ctx *c = calloc(1, sizeof *c);
    const int batch = pasm_net_max_batch(net);
    const int64_t per_image = (int64_t)cfg->in_channels * cfg->input_size * cfg->input_size;
    if (c) {
        c->x = malloc((size_t)batch * per_image * sizeof(float));
        c->dlogits = malloc((size_t)batch * cfg->num_classes * sizeof(float));
        const int fs = pasm_net_class_map_size(net);
        c->maps = malloc((size_t)batch * fs * fs * sizeof(float));
    }
    pasm_status st = c && c->x && c->dlogits && c->maps
                         ? scorer_device_create(&c->dev, net, mean, std)
                         : pasm_errorf(PASM_ERR_NOMEM, "out of memory for the attack's scorer "
                                                       "(batch %d)",
                                       batch);
    if (st) {
        if (c) free(c->x), free(c->dlogits), free(c->maps);
        free(c);
        return st;
    }
    c->net = net;
    memcpy(c->mean, mean, (size_t)cfg->in_channels * sizeof(float));
    memcpy(c->std, std, (size_t)cfg->in_channels * sizeof(float));
    /* An EVAL network plans nothing for backward: no gradients here. */
    const int has_grad = pasm_net_get_mode(net) != PASM_NET_EVAL;
    *s = (pasm_scorer){.channels = cfg->in_channels, .size = cfg->input_size,
                       .n_classes = cfg->num_classes, .max_batch = batch, .probs = net_probs,
                       .grad = has_grad ? net_grad : NULL, .cam = net_cam, .ctx = c};
    if (c->dev) { /* cam and grad (the gradient itself) stay on the host path */
        s->probs = dev_probs;
        s->salient = has_grad ? dev_salient : NULL;
        s->bind = dev_bind;
        s->changed = dev_changed;
        return PASM_OK;
    }
    const pasm_patch_use use = pasm_patch_env();
    if (use == PASM_PATCH_OFF) return PASM_OK;
    if ((st = pasm_net_patch_create(net, PATCH_BUDGET, &c->patch)) || !c->patch) {
        c->patch = NULL;
        if (use == PASM_PATCH_REQUIRE) {
            char why[256];
            snprintf(why, sizeof why, "%s",
                     st                                       ? pasm_last_error()
                     : cfg->device != PASM_DEVICE_CPU         ? "they are CPU code, for a network "
                                                                "on the CPU"
                     : cfg->precision != PASM_PRECISION_FP32  ? "they are fp32 code"
                                                              : "nothing in this network is "
                                                                "worth them");
            pasm_scorer_net_free(s);
            return pasm_errorf(st ? st : PASM_ERR_INVALID,
                               "PASM_PATCH=require: no candidate windows for the attack's "
                               "scorer (%s)",
                               why);
        }
        pasm_clear_error(); /* no memory for them, or they do not apply: whole forwards */
        return PASM_OK;
    }
    c->cand = malloc((size_t)batch * per_image);
    c->values = malloc((size_t)batch * cfg->in_channels * sizeof(float));
    c->logits = malloc((size_t)batch * cfg->num_classes * sizeof(float));
    if (!c->cand || !c->values || !c->logits) {
        pasm_scorer_net_free(s);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the attack's scorer (batch %d)",
                           batch);
    }
    s->bind = host_bind;
    s->changed = host_changed;
    return PASM_OK;
}

void pasm_scorer_net_free(pasm_scorer *s) {
    net_ctx *c = s->ctx;
    if (c) {
        scorer_device_free(c->dev);
        pasm_net_patch_free(c->patch);
        free(c->xb);
        free(c->seen);
        free(c->cand);
        free(c->values);
        free(c->logits);
        free(c->x);
        free(c->dlogits);
        free(c->maps);
        free(c);
    }
    memset(s, 0, sizeof *s); /* nothing left to call: probs and the rest are gone too */
}
