/* Evaluation: the network in evaluation mode over a whole dataset, in
 * batches, optionally averaging each face's softmax with its mirror image's
 * (horizontal-flip test-time augmentation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/ops.h"
#include "pasm/train.h"

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
    float *x = malloc((size_t)batch * per_image * sizeof(float));
    float *p = malloc((size_t)batch * k * sizeof(float));
    float *p_flip = malloc((size_t)batch * k * sizeof(float));
    int *idx = malloc((size_t)batch * sizeof(int));
    int32_t *labels = malloc((size_t)batch * sizeof(int32_t));
    pasm_status st = PASM_OK;
    double loss_sum = 0;
    int64_t loss_count = 0;
    if (!x || !p || !p_flip || !idx || !labels) {
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for evaluation batches");
        goto done;
    }
    for (int start = 0; start < ds->n; start += batch) {
        int n = ds->n - start < batch ? ds->n - start : batch;
        for (int i = 0; i < n; i++) idx[i] = start + i;
        if ((st = pasm_batch_make(ds, idx, n, mean, std, x, labels))) goto done;
        const float *logits;
        if ((st = pasm_net_forward(net, x, n, 0, &logits))) goto done;
        if (logits_out) memcpy(logits_out + (size_t)start * k, logits, (size_t)n * k * sizeof(float));
        pasm_softmax(n, k, logits, p);
        if (tta_flip) {
            flip_rows(x, (int64_t)n * ds->channels * ds->size, ds->size);
            if ((st = pasm_net_forward(net, x, n, 0, &logits))) goto done;
            pasm_softmax(n, k, logits, p_flip);
            for (int64_t i = 0; i < (int64_t)n * k; i++) p[i] = 0.5f * (p[i] + p_flip[i]);
        }
        for (int i = 0; i < n; i++) {
            const float *row = p + (size_t)i * k;
            int best = 0;
            for (int c = 1; c < k; c++)
                if (row[c] > row[best]) best = c;
            if (ds->labelled && labels[i] >= 0 && labels[i] < k) {
                if (m) pasm_metrics_add(m, labels[i], best);
                loss_sum += -log(fmax((double)row[labels[i]], 1e-30));
                loss_count++;
            }
        }
        if (probs) memcpy(probs + (size_t)start * k, p, (size_t)n * k * sizeof(float));
    }
    if (loss) *loss = loss_count ? loss_sum / (double)loss_count : NAN;
done:
    free(x);
    free(p);
    free(p_flip);
    free(idx);
    free(labels);
    return st;
}
