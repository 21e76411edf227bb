/* The scorer the attacks query, over a network in evaluation mode: uint8
 * images are normalised as in training (pixel/255 - mean) / std inside, and
 * the input gradient the network gives (w.r.t. the normalised input) is
 * carried back to pixel units by the chain rule, d/dpixel = d/dx / (255 std).
 * A PASM_NET_EVAL network (no backward planned) gives a scorer without
 * gradients, for de; grad and iter need PASM_NET_EVAL_GRAD. */
#include <stdlib.h>
#include <string.h>

#include "pasm/ops.h"
#include "pasm/pasm_method.h"

typedef struct {
    pasm_net *net;
    float mean[3], std[3];
    float *x, *dlogits;
} net_ctx;

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
    /* Per-image cross-entropy (not the batch mean): each image's gradient is
     * its own, whatever else is in the batch (evaluation-mode BN). */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++)
            c->dlogits[i * k + j] = probs[i * k + j] - (j == labels[i] ? 1.0f : 0.0f);
    if ((st = pasm_net_backward(c->net, c->dlogits, dpixels))) return st;
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < channels; ch++) {
            float *d = dpixels + ((int64_t)i * channels + ch) * plane;
            const float scale = 1.0f / (255.0f * c->std[ch]);
            for (int64_t p = 0; p < plane; p++) d[p] *= scale;
        }
    return PASM_OK;
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
    }
    if (!c || !c->x || !c->dlogits) {
        if (c) free(c->x), free(c->dlogits);
        free(c);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the attack's scorer (batch %d)",
                           batch);
    }
    c->net = net;
    memcpy(c->mean, mean, (size_t)cfg->in_channels * sizeof(float));
    memcpy(c->std, std, (size_t)cfg->in_channels * sizeof(float));
    /* An EVAL network plans nothing for backward: no gradients here. */
    const int has_grad = pasm_net_get_mode(net) != PASM_NET_EVAL;
    *s = (pasm_scorer){.channels = cfg->in_channels, .size = cfg->input_size,
                       .n_classes = cfg->num_classes, .max_batch = batch, .probs = net_probs,
                       .grad = has_grad ? net_grad : NULL, .ctx = c};
    return PASM_OK;
}

void pasm_scorer_net_free(pasm_scorer *s) {
    net_ctx *c = s->ctx;
    if (c) {
        free(c->x);
        free(c->dlogits);
        free(c);
    }
    s->ctx = NULL;
}
