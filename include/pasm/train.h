/* pasm train: the optimiser (SGD with momentum, Nesterov and weight decay in
 * PyTorch's semantics), learning-rate schedules, the epoch loop, evaluation
 * and metrics. */
#ifndef PASM_TRAIN_H
#define PASM_TRAIN_H

#include "pasm/core.h"
#include "pasm/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float lr;
    float momentum;     /* 0 = plain SGD */
    float dampening;    /* PyTorch's, default 0 */
    float weight_decay; /* L2 added to the gradient, as torch.optim.SGD */
    int nesterov;
} pasm_sgd_options;

typedef struct {
    pasm_sgd_options opt;
    int64_t count;  /* floats in the parameter block */
    float *momentum_buffer;
    int64_t steps;  /* steps taken (the first step initialises the buffer) */
} pasm_sgd;

pasm_status pasm_sgd_init(pasm_sgd *sgd, const pasm_sgd_options *opt, int64_t count);
void pasm_sgd_free(pasm_sgd *sgd);
/* One step over the flat parameter and gradient blocks with learning rate lr
 * (the schedule's current value; opt.lr is the base). */
void pasm_sgd_step(pasm_sgd *sgd, float *params, const float *grads, float lr);

/* ---- learning-rate schedules (per optimiser step) ----
 * onecycle: torch.optim.lr_scheduler.OneCycleLR (two phases, cosine
 *   annealing, pct_start 0.3, div_factor 25, final_div_factor 1e4) including
 *   its momentum cycling between 0.85 and 0.95 (cycle_momentum=True).
 * cosine: linear warm-up from max_lr/warmup_steps to max_lr over warmup_steps,
 *   then cosine to 0 at total_steps.
 * constant: max_lr throughout. */
typedef enum { PASM_SCHEDULE_ONECYCLE, PASM_SCHEDULE_COSINE, PASM_SCHEDULE_CONSTANT } pasm_schedule_kind;

typedef struct {
    pasm_schedule_kind kind;
    float max_lr;
    int64_t total_steps;
    int64_t warmup_steps;   /* cosine only */
    float pct_start, div_factor, final_div_factor; /* onecycle */
    float base_momentum, max_momentum;             /* onecycle */
    int cycle_momentum;                            /* onecycle */
} pasm_schedule;

/* Fills the defaults above for the kind. */
void pasm_schedule_init(pasm_schedule *s, pasm_schedule_kind kind, float max_lr,
                        int64_t total_steps, int64_t warmup_steps);
/* Parses "onecycle", "cosine", "constant". */
pasm_status pasm_schedule_parse(const char *name, pasm_schedule_kind *kind);
const char *pasm_schedule_name(pasm_schedule_kind kind);
/* Learning rate for the step'th optimiser step (0-based). */
float pasm_schedule_lr(const pasm_schedule *s, int64_t step);
/* Momentum for that step: the cycled one for onecycle, else fallback. */
float pasm_schedule_momentum(const pasm_schedule *s, int64_t step, float fallback);

/* ---- classification metrics ---- */
typedef struct {
    int n_classes;
    int64_t *confusion; /* n_classes x n_classes: rows true, columns predicted */
    int64_t count, correct;
} pasm_metrics;

pasm_status pasm_metrics_init(pasm_metrics *m, int n_classes);
void pasm_metrics_free(pasm_metrics *m);
void pasm_metrics_reset(pasm_metrics *m);
void pasm_metrics_add(pasm_metrics *m, int true_label, int predicted);
double pasm_metrics_accuracy(const pasm_metrics *m);
/* Mean over classes that have at least one sample of their recall. */
double pasm_metrics_mean_class_accuracy(const pasm_metrics *m);
/* Recall of class c; NaN when it has no samples. */
double pasm_metrics_class_accuracy(const pasm_metrics *m, int c);

#ifdef __cplusplus
}
#endif
#endif
