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

#ifdef __cplusplus
}
#endif
#endif
