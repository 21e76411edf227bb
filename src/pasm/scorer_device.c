/* The attack scorer's GPU side: see scorer_device.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_device.h"
#include "nn/patch_plan.h"
#include "pasm/scorer_device.h"
#include "train/device_step.h"

#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_backend.h"
#include "cuda/cuda_net.h"

/* The windows' GPU memory at most (pasm_patch_worth says when they pay) */
#define PATCH_BUDGET ((size_t)2 << 30)

/* The picks come back as int32_t into the caller's int. */
_Static_assert(sizeof(int) == sizeof(int32_t), "int is 32 bits");

struct scorer_device {
    pasm_cuda_ctx *ctx;
    pasm_net *net;
    int channels, size, k, batch, last_n;
    pasm_cuda_scale3 scale;   /* the chain rule's 1 / (255 std), per channel */
    float *table;             /* C x 256: pixel -> normalised value */
    pasm_augment_plan *plans; /* a batch of identity plans */
    uint8_t *images, *skip;   /* a batch of images, and of pixels not to pick */
    float *x, *dx, *dlogits;  /* a batch */
    int32_t *pixel;           /* the picks: (batch) */
    void *pick_scratch;       /* the pick's per-lane bests */
    uint8_t *values;          /* ... (batch, C) */
    pasm_cuda_pixel *items;   /* a batch of candidates */
    uint8_t *bound;           /* the bound images, room for bound_cap */
    int bound_n, bound_cap;
    const uint8_t *bound_host; /* ... the caller's copy */
    uint8_t *seen;            /* bound_cap: faces met in one changed call */
    /* candidates on windows: made at the first call that gains by them
     * (their memory is not taken for attacks that never do); windows a
     * pasm_patch_use, 0 when off (PASM_PATCH=0, nothing to window) or when
     * making or running them failed (whole forwards then; with
     * PASM_PATCH=require such a failure is the call's error) */
    pasm_cuda_patch *patch;
    int windows;
    double clean_cost, cand_cost;
    float table_host[3 * 256];
    /* host */
    pasm_cuda_pixel *host_items;
    float *logits;
};

void scorer_device_free(scorer_device *d) {
    if (!d) return;
    if (d->ctx) pasm_cuda_sync(d->ctx, "ending an attack");
    pasm_cuda_patch_free(d->patch);
    free(d->seen);
    void *bufs[] = {d->table, d->plans, d->images, d->skip,   d->x,     d->dx,
                    d->dlogits, d->pixel, d->values, d->items, d->bound, d->pick_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pasm_cuda_free(bufs[i]);
    pasm_cuda_ctx_free(d->ctx);
    free(d->host_items);
    free(d->logits);
    free(d);
}

static pasm_status alloc(void *p, size_t bytes, const char *what) {
    return pasm_cuda_alloc((void **)p, bytes, what);
}

pasm_status scorer_device_create(scorer_device **out, pasm_net *net, const float *mean,
                                 const float *std) {
    *out = NULL;
    const pasm_net_config *cfg = pasm_net_get_config(net);
    if (cfg->device != PASM_DEVICE_CUDA || cfg->in_channels > 3 || device_host_path_asked())
        return PASM_OK;
    scorer_device *d = calloc(1, sizeof *d);
    if (!d) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the attack's GPU scorer");
    d->net = net;
    d->channels = cfg->in_channels;
    d->size = cfg->input_size;
    d->k = cfg->num_classes;
    d->batch = pasm_net_max_batch(net);
    const int C = d->channels, n = d->batch;
    const size_t plane = (size_t)d->size * d->size, per_image = C * plane;
    float table[3 * 256];
    pasm_status st = pasm_norm_table(C, mean, std, table);
    for (int ch = 0; ch < C; ch++) d->scale.v[ch] = 1.0f / (255.0f * std[ch]);
    d->host_items = calloc((size_t)n, sizeof *d->host_items);
    d->logits = malloc((size_t)n * d->k * sizeof(float));
    pasm_augment_plan *plans = calloc((size_t)n, sizeof *plans); /* as they are */
    if (!st && (!d->host_items || !d->logits || !plans))
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for the attack's GPU scorer");
    if (!st) st = pasm_cuda_ctx_create(&d->ctx);
    if (!st) st = alloc(&d->table, (size_t)C * 256 * 4, "normalisation");
    if (!st) st = alloc(&d->plans, (size_t)n * sizeof *plans, "identity plans");
    if (!st) st = alloc(&d->images, (size_t)n * per_image, "a batch of faces to attack");
    if (!st) st = alloc(&d->x, (size_t)n * per_image * 4, "an attack batch");
    if (!st) st = alloc(&d->items, (size_t)n * sizeof *d->items, "attack candidates");
    if (pasm_net_get_mode(net) != PASM_NET_EVAL) { /* the gradient attacks' picks */
        if (!st) st = alloc(&d->skip, (size_t)n * plane, "the pixels not to pick");
        if (!st) st = alloc(&d->dx, (size_t)n * per_image * 4, "its input gradient");
        if (!st) st = alloc(&d->dlogits, (size_t)n * d->k * 4, "the logits' gradient");
        if (!st) st = alloc(&d->pixel, (size_t)n * 4, "the salient pixels");
        if (!st) st = alloc(&d->values, (size_t)n * C, "their values");
        if (!st) st = alloc(&d->pick_scratch, pasm_cuda_salient_scratch_bytes(n), "picking them");
    }
    if (!st) st = pasm_cuda_to_device(d->ctx, d->table, table, (size_t)C * 256 * 4);
    if (!st) st = pasm_cuda_to_device(d->ctx, d->plans, plans, (size_t)n * sizeof *plans);
    if (!st) st = pasm_cuda_sync(d->ctx, "preparing the attack's GPU scorer"); /* plans freed */
    free(plans);
    const pasm_patch_use use = pasm_patch_env();
    pasm_patch_plan plan;
    if (!st && use == PASM_PATCH_REQUIRE && pasm_net_get_mode(net) == PASM_NET_TRAIN)
        st = pasm_errorf(PASM_ERR_INVALID, "PASM_PATCH=require: no candidate windows for a "
                                           "training network on the GPU (they are built for "
                                           "evaluation networks)");
    if (!st && use != PASM_PATCH_OFF && pasm_net_get_mode(net) != PASM_NET_TRAIN &&
        !(st = pasm_patch_plan_make(net, &plan))) {
        d->windows = plan.n_blocks > 0 ? (int)use : 0;
        d->clean_cost = plan.clean_cost;
        d->cand_cost = plan.cand_cost;
        memcpy(d->table_host, table, (size_t)C * 256 * sizeof(float));
        pasm_patch_plan_free(&plan);
        if (!d->windows && use == PASM_PATCH_REQUIRE)
            st = pasm_errorf(PASM_ERR_INVALID, "PASM_PATCH=require: no candidate windows on the "
                                               "GPU (nothing in this network is worth them)");
    }
    if (st) {
        scorer_device_free(d);
        return st;
    }
    *out = d;
    return PASM_OK;
}

static pasm_status batch_size(const scorer_device *d, int n) {
    if (n < 1 || n > d->batch)
        return pasm_errorf(PASM_ERR_INVALID, "attack batch of %d images (the network takes 1 to "
                                             "%d)",
                           n, d->batch);
    return PASM_OK;
}

/* The forward of the batch in d->x, and its logits to the host. */
static pasm_status forward(scorer_device *d, int n, const float **logits) {
    const float *l;
    pasm_status st = pasm_net_forward_on_device(d->net, d->x, n, 0, &l);
    if (!st) st = pasm_cuda_to_host(d->ctx, d->logits, l, (size_t)n * d->k * 4);
    d->last_n = st ? 0 : n;
    *logits = d->logits;
    return st;
}

pasm_status scorer_device_logits(scorer_device *d, const uint8_t *images, int n,
                                 const float **logits) {
    pasm_status st = batch_size(d, n);
    const size_t per_image = (size_t)d->channels * d->size * d->size;
    if (!st) st = pasm_cuda_to_device(d->ctx, d->images, images, (size_t)n * per_image);
    if (!st)
        st = pasm_cuda_batch(d->ctx, n, d->channels, d->size, d->images, NULL, NULL, d->plans,
                             d->table, d->x, NULL, NULL);
    if (!st) st = forward(d, n, logits);
    return st;
}

pasm_status scorer_device_salient(scorer_device *d, const float *dlogits, const uint8_t *skip,
                                  int *pixel, uint8_t *values) {
    const int n = d->last_n;
    if (n < 1 || !d->dx)
        return pasm_errorf(PASM_ERR_INVALID, "salient pixels without a forward or a network "
                                             "planned for gradients");
    const size_t plane = (size_t)d->size * d->size;
    pasm_status st = pasm_cuda_to_device(d->ctx, d->dlogits, dlogits, (size_t)n * d->k * 4);
    if (!st && skip) st = pasm_cuda_to_device(d->ctx, d->skip, skip, (size_t)n * plane);
    if (!st) st = pasm_net_backward_on_device(d->net, d->dlogits, d->dx);
    if (!st)
        st = pasm_cuda_salient(d->ctx, n, d->channels, d->size, d->dx, d->scale,
                               skip ? d->skip : NULL, d->pixel, d->values, d->pick_scratch);
    if (!st) st = pasm_cuda_to_host(d->ctx, pixel, d->pixel, (size_t)n * 4);
    if (!st) st = pasm_cuda_to_host(d->ctx, values, d->values, (size_t)n * d->channels);
    return st;
}

pasm_status scorer_device_bind(scorer_device *d, const uint8_t *images, int n) {
    d->bound_n = 0;
    d->bound_host = NULL;
    if (!images || n <= 0) return PASM_OK;
    const size_t per_image = (size_t)d->channels * d->size * d->size;
    if (n > d->bound_cap) {
        pasm_cuda_free(d->bound);
        free(d->seen);
        d->bound = NULL;
        d->seen = NULL;
        d->bound_cap = 0;
        pasm_status st = alloc(&d->bound, (size_t)n * per_image, "the faces attacked");
        if (st) return st;
        if (!(d->seen = calloc((size_t)n, 1)))
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory binding %d faces", n);
        d->bound_cap = n;
    }
    pasm_status st = pasm_cuda_to_device(d->ctx, d->bound, images, (size_t)n * per_image);
    if (!st) d->bound_n = n, d->bound_host = images;
    return st;
}

pasm_status scorer_device_changed(scorer_device *d, int m, const int *img, const int *row,
                                  const int *col, const uint8_t *values, const float **logits) {
    pasm_status st = batch_size(d, m);
    if (st) return st;
    const int C = d->channels, S = d->size;
    char window_error[512] = "";
    for (int j = 0; j < m; j++) {
        if (img[j] < 0 || img[j] >= d->bound_n || row[j] < 0 || row[j] >= S || col[j] < 0 ||
            col[j] >= S)
            return pasm_errorf(PASM_ERR_INVALID, "attack candidate %d: pixel (%d, %d) of image %d "
                                                 "(%d images of %dx%d bound)",
                               j, row[j], col[j], img[j], d->bound_n, S, S);
        pasm_cuda_pixel *it = &d->host_items[j];
        it->img = img[j], it->row = row[j], it->col = col[j];
        memcpy(it->value, values + (size_t)j * C, (size_t)C);
    }
    if (d->windows) { /* on windows when the call's faces have candidates enough */
        const int worth = pasm_patch_worth(d->clean_cost, d->cand_cost, m, img, d->seen);
        if (worth && !d->patch) {
            st = pasm_cuda_patch_create(d->net, d->table_host, PATCH_BUDGET, &d->patch);
            if (!st && !d->patch)
                st = pasm_errorf(PASM_ERR_INVALID, "no plan for this network's windows");
            if (st && d->windows == PASM_PATCH_REQUIRE)
                return pasm_errorf(st, "PASM_PATCH=require: no candidate windows on the GPU "
                                       "(%s)",
                                   pasm_last_error());
            if (st) { /* no room for them: whole forwards */
                pasm_clear_error();
                d->windows = 0;
            }
        }
        if (d->patch && worth) {
            d->last_n = 0; /* no salient pick follows these */
            *logits = d->logits;
            st = pasm_cuda_patch_forward(d->patch, d->bound, d->bound_host, d->bound_n, d->table,
                                         m, img, row, col, values, d->logits);
            if (!st || d->windows == PASM_PATCH_REQUIRE || st != PASM_ERR_UNSUPPORTED) return st;
            /* CUDA or cuDNN refused (a window convolution cuDNN chose but
             * could not run): whole forwards from here on, this call's
             * included (its candidates are independent of each other). An
             * error that broke the context fails them too: then both
             * messages are the call's. */
            snprintf(window_error, sizeof window_error, "%s", pasm_last_error());
            pasm_clear_error();
            pasm_cuda_patch_free(d->patch);
            d->patch = NULL;
            d->windows = 0;
        }
    }
    st = pasm_cuda_to_device(d->ctx, d->items, d->host_items, (size_t)m * sizeof *d->items);
    if (!st) st = pasm_cuda_pixel_batch(d->ctx, m, C, S, d->bound, d->items, d->table, d->x);
    if (!st) st = forward(d, m, logits);
    if (st && window_error[0])
        st = pasm_errorf(st, "%s (after the candidate windows failed: %s)", pasm_last_error(),
                         window_error);
    return st;
}

#else /* a CPU build: always the host path */

pasm_status scorer_device_create(scorer_device **out, pasm_net *net, const float *mean,
                                 const float *std) {
    (void)net, (void)mean, (void)std;
    *out = NULL;
    return PASM_OK;
}
void scorer_device_free(scorer_device *d) { (void)d; }
static pasm_status none(void) {
    return pasm_errorf(PASM_ERR_INVALID, "no GPU scorer in a CPU build");
}
pasm_status scorer_device_logits(scorer_device *d, const uint8_t *images, int n,
                                 const float **logits) {
    (void)d, (void)images, (void)n, (void)logits;
    return none();
}
pasm_status scorer_device_salient(scorer_device *d, const float *dlogits, const uint8_t *skip,
                                  int *pixel, uint8_t *values) {
    (void)d, (void)dlogits, (void)skip, (void)pixel, (void)values;
    return none();
}
pasm_status scorer_device_bind(scorer_device *d, const uint8_t *images, int n) {
    (void)d, (void)images, (void)n;
    return none();
}
pasm_status scorer_device_changed(scorer_device *d, int m, const int *img, const int *row,
                                  const int *col, const uint8_t *values, const float **logits) {
    (void)d, (void)m, (void)img, (void)row, (void)col, (void)values, (void)logits;
    return none();
}
#endif
