/* Training steps that stay on the GPU (src/train/device_step.c): the
 * training set's uint8 images and labels are sent to the GPU once a run,
 * each epoch's order and augmentation plans once an epoch, and a step then
 * queues batch assembly, the teacher's and the student's forward, the loss,
 * the backward and the SGD step on the stream without waiting for any of
 * it. The steps' losses and correct counts stay on the GPU until the
 * trainer reads them (device_step_results: the one wait), so the host runs
 * ahead of the GPU by up to an epoch. Results are the host path's: the
 * same batches, augmentation, loss arithmetic and optimiser. */
#ifndef PASM_TRAIN_DEVICE_STEP_H
#define PASM_TRAIN_DEVICE_STEP_H

#include "pasm/train.h"
#include "train/sampling.h"

typedef struct device_step device_step;

/* PASM_CUDA_HOST_STEP=1 in the environment: GPU networks are driven
 * through the host-batch path (training, evaluation and the attacks), as a
 * reference for the device paths. */
int device_host_path_asked(void);

/* *out = NULL (and PASM_OK) when the run takes the host path: a network on
 * the CPU, a CPU build, a teacher on the CPU, noise-valued random erasing
 * (drawn per pixel on the host), or PASM_CUDA_HOST_STEP=1 in the
 * environment. batches: the most steps an epoch takes. */
pasm_status device_step_create(device_step **out, pasm_net *net, const pasm_dataset *train,
                               const pasm_train_options *opt, const pasm_model_meta *meta,
                               const float *class_weights, int batches);
void device_step_free(device_step *d);
/* The epoch's order (n dataset indices) and augmentation plans, and the
 * schedule's lrs and moms for each of its batches, to the GPU; the epoch's
 * steps start at batch first. */
pasm_status device_step_epoch(device_step *d, const int *order, int n, int epoch, int first,
                              const float *lrs, const float *moms);
/* Queues the epoch's next step, of n samples. Full batches after the first
 * run as one CUDA graph, captured once (PASM_CUDA_GRAPHS=0: never; a
 * capture that fails is said once as a note, pasm_note, and the steps run
 * launch by launch). */
pasm_status device_step_run(device_step *d, pasm_sgd *sgd, int n);
/* Steps run as a replayed graph so far (the captured one included). */
int64_t device_step_graph_steps(const device_step *d);
/* Waits for the GPU and reads steps [from, to)'s losses and correct counts. */
pasm_status device_step_results(device_step *d, int from, int to, double *loss, int *correct);

/* Evaluation with the images on the GPU: logits (ds->n x K, host) of every
 * face of ds and, when flipped is not NULL, of its mirror image, normalised
 * as pasm_batch_make, in the host path's batches of the network's size. The
 * faces go up once, in parts of at most 32768 (PASM_CUDA_EVAL_CHUNK=N: N,
 * rounded down to whole batches), and each part's logits come back once. Only where device_eval_applies: not for a network on the CPU,
 * a CPU build, an empty set or PASM_CUDA_HOST_STEP=1 (the host path runs). */
int device_eval_applies(const pasm_net *net, const pasm_dataset *ds);
pasm_status device_eval_logits(pasm_net *net, const pasm_dataset *ds, const float *mean,
                               const float *std, float *logits, float *flipped);

#endif
