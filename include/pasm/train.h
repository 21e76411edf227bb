/* pasm train: the optimiser (SGD with momentum, Nesterov and weight decay in
 * PyTorch's semantics), learning-rate schedules, the epoch loop, evaluation
 * and metrics. */
#ifndef PASM_TRAIN_H
#define PASM_TRAIN_H

#include "pasm/core.h"
#include "pasm/nn.h"
#include "pasm/data.h"
#include "pasm/io.h"

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
    /* A GPU network's steps keep the momentum on the device; set while the
     * device's copy is the current one (pasm_sgd_sync brings it back). */
    int momentum_on_device;
} pasm_sgd;

pasm_status pasm_sgd_init(pasm_sgd *sgd, const pasm_sgd_options *opt, int64_t count);
void pasm_sgd_free(pasm_sgd *sgd);
/* One step over the flat parameter and gradient blocks with learning rate lr
 * (the schedule's current value; opt.lr is the base). */
void pasm_sgd_step(pasm_sgd *sgd, float *params, const float *grads, float lr);
/* One step over the network's parameters and gradients wherever they are
 * (the flat blocks on the CPU, the device's on the GPU). */
pasm_status pasm_sgd_step_net(pasm_sgd *sgd, pasm_net *net, float lr);
/* Brings a GPU network's momentum into sgd->momentum_buffer (before it is
 * saved); nothing for CPU networks. */
pasm_status pasm_sgd_sync(pasm_sgd *sgd, pasm_net *net);

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

/* ---- evaluation ---- */
/* Runs the network in evaluation mode over the whole dataset (normalised with
 * mean/std, batches of the network's planned size). tta_flip averages the
 * softmax of each face and its mirror image. Adds every prediction to m
 * (initialised by the caller with the dataset's classes); loss (may be NULL)
 * gets the mean cross-entropy of the (averaged) probabilities; probs (may be
 * NULL) gets (n, K) probabilities and logits (may be NULL) the raw logits
 * (those of the unflipped face). net may be of any mode: training uses its
 * own network, the commands a PASM_NET_EVAL one. */
pasm_status pasm_evaluate(pasm_net *net, const pasm_dataset *ds, const float *mean,
                          const float *std, int tta_flip, pasm_metrics *m, double *loss,
                          float *probs, float *logits);

/* ---- the training loop ---- */
typedef enum { PASM_BALANCE_NONE, PASM_BALANCE_WEIGHTS, PASM_BALANCE_SAMPLER } pasm_balance;
pasm_status pasm_balance_parse(const char *name, pasm_balance *out);
const char *pasm_balance_name(pasm_balance b);

typedef struct {
    int epochs;                  /* 30 */
    int batch;                   /* 128 */
    pasm_sgd_options sgd;        /* lr 0.1 (the schedule's peak), momentum 0.9, Nesterov, wd 5e-4 */
    pasm_schedule_kind schedule; /* onecycle */
    int warmup_epochs;           /* cosine: 1 */
    float label_smoothing;       /* 0 */
    pasm_balance balance;        /* none */
    pasm_augment_config augment; /* crop 4 (reflect), flip, no erasing */
    uint64_t seed;
    /* Distillation (PASM's student): when teacher is not NULL the loss is
     * (1-kd_alpha)*CE + kd_alpha*t^2*KL(teacher/t || student/t), the teacher's
     * logits taken in evaluation mode on the same augmented batch. Only its
     * forward runs: a PASM_NET_EVAL network is enough. */
    pasm_net *teacher;
    float kd_alpha, kd_temp;
    /* PASM's replace mix: the training set holds N images and then their N
     * twins (image i's twin is N + i); an epoch visits N samples, each image
     * or, with probability twin_prob drawn anew every epoch, its twin.
     * 0 = off (every image every epoch). */
    int pairs;
    float twin_prob;
    /* Files: out_path (X.safetensors, best on validation or last), and beside
     * it X.last.safetensors, X.state.safetensors, X.metrics.jsonl. NULL: none. */
    const char *out_path;
    int resume;            /* continue from X.state.safetensors */
    int stop_after_epochs; /* end this run (resumably) after that many epochs; 0 = off */
} pasm_train_options;

void pasm_train_defaults(pasm_train_options *o);

typedef struct {
    int epoch, epochs;     /* 1-based epoch */
    int batch, batches;    /* 1-based batch within the epoch */
    double loss;           /* running mean over the epoch */
    double images_per_s;
    double eta_seconds;    /* for the whole run */
    float lr;
} pasm_train_progress;

typedef struct {
    int epoch;
    float lr; /* at the epoch's last step */
    double train_loss, train_accuracy;
    int has_val;
    double val_loss, val_accuracy, val_mean_class_accuracy;
    double images_per_s, seconds;
    int is_best;
} pasm_epoch_stats;

typedef struct {
    void (*on_batch)(void *user, const pasm_train_progress *p);
    void (*on_epoch)(void *user, const pasm_epoch_stats *e);
    void *user;
    /* Set (by a signal handler) to stop: the current step finishes, a
     * resumable state is written and pasm_train returns PASM_ERR_INTERRUPTED. */
    volatile int *stop;
} pasm_train_hooks;

typedef struct {
    int epochs_done;
    int best_epoch;        /* 0 without validation */
    double best_val_accuracy;
    double seconds;
    int64_t steps;
    /* 1: the steps ran on the GPU trainer (batches, augmentation and loss on
     * the GPU); 0: on the host (a CPU network, or a GPU one whose batches
     * the host assembled: noise-valued erasing, a teacher on the CPU,
     * PASM_CUDA_HOST_STEP=1) */
    int gpu_trainer;
    int64_t graph_steps; /* of the GPU trainer's steps, those replayed as a CUDA graph */
} pasm_train_result;

/* Trains net (initialised, or loaded) on train, choosing the best epoch on val
 * (may be NULL). meta (norm_mean/std, classes, args) goes into every
 * checkpoint with the epoch. With opt->resume, the network, optimiser and
 * position come from X.state.safetensors and the run continues where it
 * stopped, ending byte-identical to an uninterrupted run. */
pasm_status pasm_train(pasm_net *net, const pasm_model_meta *meta, const pasm_dataset *train,
                       const pasm_dataset *val, const pasm_train_options *opt,
                       const pasm_train_hooks *hooks, pasm_train_result *result);

/* "X.safetensors" -> "X.last.safetensors" etc. (suffix "last", "state"; or
 * the metrics file with suffix "metrics" and extension "jsonl"). */
void pasm_train_sibling(const char *out_path, const char *suffix, const char *ext, char *buf,
                        size_t len);

#ifdef __cplusplus
}
#endif
#endif
