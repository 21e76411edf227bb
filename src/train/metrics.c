/* Classification metrics from a confusion matrix: accuracy, per-class
 * recall and their mean over the classes present. */
#include <math.h>
#include <string.h>

#include "pasm/train.h"

pasm_status pasm_metrics_init(pasm_metrics *m, int n_classes) {
    memset(m, 0, sizeof *m);
    m->n_classes = n_classes;
    m->confusion = pasm_alloc((size_t)n_classes * n_classes * sizeof(int64_t), "confusion matrix");
    return m->confusion ? PASM_OK : PASM_ERR_NOMEM;
}

void pasm_metrics_free(pasm_metrics *m) {
    pasm_free(m->confusion);
    m->confusion = NULL;
}

void pasm_metrics_reset(pasm_metrics *m) {
    memset(m->confusion, 0, (size_t)m->n_classes * m->n_classes * sizeof(int64_t));
    m->count = m->correct = 0;
}

void pasm_metrics_add(pasm_metrics *m, int true_label, int predicted) {
    if (true_label < 0 || true_label >= m->n_classes || predicted < 0 ||
        predicted >= m->n_classes)
        return;
    m->confusion[(int64_t)true_label * m->n_classes + predicted]++;
    m->count++;
    m->correct += true_label == predicted;
}

double pasm_metrics_accuracy(const pasm_metrics *m) {
    return m->count ? (double)m->correct / (double)m->count : NAN;
}

double pasm_metrics_class_accuracy(const pasm_metrics *m, int c) {
    int64_t total = 0;
    for (int j = 0; j < m->n_classes; j++) total += m->confusion[(int64_t)c * m->n_classes + j];
    return total ? (double)m->confusion[(int64_t)c * m->n_classes + c] / (double)total : NAN;
}

double pasm_metrics_mean_class_accuracy(const pasm_metrics *m) {
    double sum = 0;
    int present = 0;
    for (int c = 0; c < m->n_classes; c++) {
        double a = pasm_metrics_class_accuracy(m, c);
        if (!isnan(a)) {
            sum += a;
            present++;
        }
    }
    return present ? sum / present : NAN;
}
