/* Evaluation: the network in evaluation mode over a whole dataset, in
 * batches, optionally averaging each face's softmax with its mirror image's
 * (horizontal-flip test-time augmentation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/ops.h"
#include "pasm/train.h"
#include "train/device_step.h"

static void flip_rows(float *x, int64_t rows, int w) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * w;
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            float t = row[i];
            row[i] = row[j];
            row[j] = t;
        }
    }
}

/* Faces [start, start + n) from their logits (and their mirrors' with
 * TTA): probabilities (averaged with the mirrors'), metrics and loss. */
typedef struct {
    const pasm_dataset *ds;
    int k;
    float *p, *p_flip; /* a batch's probabilities */
    pasm_metrics *m;
    double loss_sum;
    int64_t loss_count;
    float *probs, *logits_out;
} scorer;

static void score(scorer *s, int start, int n, const float *logits, const float *logits_flip) {
    const int k = s->k;
    const pasm_dataset *ds = s->ds;
    if (s->logits_out)
        memcpy(s->logits_out + (size_t)start * k, logits, (size_t)n * k * sizeof(float));
    pasm_softmax(n, k, logits, s->p);
    if (logits_flip) {
        pasm_softmax(n, k, logits_flip, s->p_flip);
        for (int64_t i = 0; i < (int64_t)n * k; i++) s->p[i] = 0.5f * (s->p[i] + s->p_flip[i]);
    }
    for (int i = 0; i < n; i++) {
        const float *row = s->p + (size_t)i * k;
        const int32_t label = ds->labels[start + i];
        int best = 0;
        for (int c = 1; c < k; c++)
            if (row[c] > row[best]) best = c;
        if (ds->labelled && label >= 0 && label < k) {
            if (s->m) pasm_metrics_add(s->m, label, best);
            s->loss_sum += -log(fmax((double)row[label], 1e-30));
            s->loss_count++;
        }
    }
    if (s->probs) memcpy(s->probs + (size_t)start * k, s->p, (size_t)n * k * sizeof(float));
}

/* A GPU network: the images go to the GPU once and the logits come back
 * once (device_step.c). */
static pasm_status evaluate_on_device(pasm_net *net, const pasm_dataset *ds, const float *mean,
                                      const float *std, int tta_flip, scorer *s) {
    const size_t count = (size_t)ds->n * s->k;
    float *logits = malloc(count * sizeof(float));
    float *flipped = tta_flip ? malloc(count * sizeof(float)) : NULL;
    pasm_status st = logits && (!tta_flip || flipped)
                         ? PASM_OK
                         : pasm_errorf(PASM_ERR_NOMEM, "out of memory for evaluation logits");
    if (!st) st = device_eval_logits(net, ds, mean, std, logits, flipped);
    const int batch = pasm_net_max_batch(net);
    for (int start = 0; !st && start < ds->n; start += batch) {
        int n = ds->n - start < batch ? ds->n - start : batch;
        score(s, start, n, logits + (size_t)start * s->k,
              flipped ? flipped + (size_t)start * s->k : NULL);
    }
    free(logits);
    free(flipped);
    return st;
}

pasm_status pasm_evaluate(pasm_net *net, const pasm_dataset *ds, const float *mean,
                          const float *std, int tta_flip, pasm_metrics *m, double *loss,
                          float *probs, float *logits_out) {
    const pasm_net_config *cfg = pasm_net_get_config(net);
    if (ds->channels != cfg->in_channels || ds->size != cfg->input_size)
        return pasm_errorf(PASM_ERR_SHAPE, "%s: images are %d-channel %dx%d, the network takes "
                                           "%d-channel %dx%d",
                           ds->source ? ds->source : "dataset", ds->channels, ds->size, ds->size,
                           cfg->in_channels, cfg->input_size, cfg->input_size);
    const int k = cfg->num_classes, batch = pasm_net_max_batch(net);
    const int64_t per_image = (int64_t)ds->channels * ds->size * ds->size;
    scorer s = {.ds = ds, .k = k, .m = m, .probs = probs, .logits_out = logits_out};
    float *x = NULL, *flip_logits = NULL;
    int *idx = NULL;
    s.p = malloc((size_t)batch * k * sizeof(float));
    s.p_flip = malloc((size_t)batch * k * sizeof(float));
    pasm_status st = PASM_OK;
    if (!s.p || !s.p_flip) {
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for evaluation batches");
        goto done;
    }
    if (device_eval_applies(net, ds)) {
        st = evaluate_on_device(net, ds, mean, std, tta_flip, &s);
        goto done;
    }
    x = malloc((size_t)batch * per_image * sizeof(float));
    flip_logits = malloc((size_t)batch * k * sizeof(float));
    idx = malloc((size_t)batch * sizeof(int));
    if (!x || !flip_logits || !idx) {
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for evaluation batches");
        goto done;
    }
    for (int start = 0; start < ds->n; start += batch) {
        int n = ds->n - start < batch ? ds->n - start : batch;
        for (int i = 0; i < n; i++) idx[i] = start + i;
        if ((st = pasm_batch_make(ds, idx, n, mean, std, x, NULL))) goto done;
        const float *logits;
        if (tta_flip) { /* the mirrors first: the network's logits buffer is reused */
            flip_rows(x, (int64_t)n * ds->channels * ds->size, ds->size);
            if ((st = pasm_net_forward(net, x, n, 0, &logits))) goto done;
            memcpy(flip_logits, logits, (size_t)n * k * sizeof(float));
            flip_rows(x, (int64_t)n * ds->channels * ds->size, ds->size);
        }
        if ((st = pasm_net_forward(net, x, n, 0, &logits))) goto done;
        score(&s, start, n, logits, tta_flip ? flip_logits : NULL);
    }
done:
    if (!st && loss) *loss = s.loss_count ? s.loss_sum / (double)s.loss_count : NAN;
    free(x);
    free(flip_logits);
    free(idx);
    free(s.p);
    free(s.p_flip);
    return st;
}
