/* The files a training run keeps beside its checkpoint: the resumable state
 * (X.state.safetensors), the last and best models, and the metrics lines. */
#ifndef PASM_TRAIN_STATE_H
#define PASM_TRAIN_STATE_H

#include "pasm/train.h"

typedef struct {
    int epoch;       /* epochs completed */
    int batch_pos;   /* batches done in the current epoch (mid-epoch stop) */
    int64_t step;    /* optimiser steps taken */
    int best_epoch;  /* 1-based; 0 = none yet */
    double best_accuracy;
    double loss_sum; /* current epoch's running sums */
    int64_t correct, seen;
} pasm_train_state;

void pasm_train_state_init(pasm_train_state *ts);
pasm_status pasm_train_state_save(const char *out_path, pasm_net *net, pasm_sgd *sgd,
                                  const pasm_train_state *ts, const pasm_model_meta *meta);
/* Restores net's tensors, the optimiser and the position from X.state. */
pasm_status pasm_train_state_load(const char *out_path, pasm_net *net, pasm_sgd *sgd,
                                  pasm_train_state *ts);
/* A fresh run: an empty metrics file. */
pasm_status pasm_train_metrics_reset(const char *out_path);
/* After an epoch: X.last, X (when best), the metrics line, then X.state. */
pasm_status pasm_train_epoch_files(const char *out_path, pasm_net *net, pasm_sgd *sgd,
                                   const pasm_train_state *ts, const pasm_model_meta *meta,
                                   const pasm_epoch_stats *es);
/* The same files written by a thread while training goes on: what they
 * hold is copied first, into a buffer kept from epoch to epoch (the
 * metadata's strings stay the caller's until the wait). One write at a
 * time: _start makes the writer (*w NULL) or reuses it; _wait joins the
 * write (none pending: PASM_OK) and returns its status, with its message;
 * _free waits, then frees. */
typedef struct pasm_epoch_writer pasm_epoch_writer;
pasm_status pasm_epoch_writer_start(pasm_epoch_writer **w, const char *out_path,
                                    pasm_net *net, pasm_sgd *sgd, const pasm_train_state *ts,
                                    const pasm_model_meta *meta, const pasm_epoch_stats *es);
pasm_status pasm_epoch_writer_wait(pasm_epoch_writer *w);
pasm_status pasm_epoch_writer_free(pasm_epoch_writer **w);

#endif
