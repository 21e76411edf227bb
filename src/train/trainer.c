/* The epoch loop: seeded shuffling (or class-balanced sampling), batch
 * assembly and augmentation, forward, loss (cross-entropy with smoothing and
 * class weights, plus distillation from a teacher), backward, the SGD step
 * under the schedule, per-epoch validation, checkpoints and metrics, and
 * resumable state.
 *
 * Everything random is drawn from the counter-based generator keyed by
 * (seed, purpose, epoch, sample), and the training position is saved after
 * every epoch (and on a stop request, mid-epoch), so a resumed run takes
 * exactly the steps an uninterrupted one takes and ends with the same bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/env.h"
#include "ops/loss_math.h"
#include "pasm/ops.h"
#include "pasm/train.h"
#include "train/device_step.h"
#include "train/sampling.h"
#include "train/train_state.h"

void pasm_train_defaults(pasm_train_options *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 30;
    o->batch = 128;
    o->sgd = (pasm_sgd_options){.lr = 0.1f, .momentum = 0.9f, .weight_decay = 5e-4f,
                                .nesterov = 1};
    o->schedule = PASM_SCHEDULE_ONECYCLE;
    o->warmup_epochs = 1;
    o->balance = PASM_BALANCE_NONE;
    pasm_augment_defaults(&o->augment);
    o->kd_alpha = 0.5f;
    o->kd_temp = 4.0f;
}

pasm_status pasm_balance_parse(const char *name, pasm_balance *out) {
    if (!strcasecmp(name, "none")) *out = PASM_BALANCE_NONE;
    else if (!strcasecmp(name, "weights")) *out = PASM_BALANCE_WEIGHTS;
    else if (!strcasecmp(name, "sampler")) *out = PASM_BALANCE_SAMPLER;
    else
        return pasm_errorf(PASM_ERR_INVALID,
                           "unknown --balance '%s' (known: none, weights, sampler)", name);
    return PASM_OK;
}

const char *pasm_balance_name(pasm_balance b) {
    return b == PASM_BALANCE_WEIGHTS ? "weights" : b == PASM_BALANCE_SAMPLER ? "sampler" : "none";
}

void pasm_train_sibling(const char *out_path, const char *suffix, const char *ext, char *buf,
                        size_t len) {
    size_t n = strlen(out_path);
    const char *dot = strrchr(out_path, '.'), *slash = strrchr(out_path, '/');
    if (dot && (!slash || dot > slash) && !strcmp(dot, ".safetensors")) n = (size_t)(dot - out_path);
    snprintf(buf, len, "%.*s.%s.%s", (int)n, out_path, suffix, ext ? ext : "safetensors");
}

/* ---- working memory of one run, allocated once before the first step ---- */
typedef struct {
    float *x, *dlogits, *dkd, *class_weights;
    int32_t *labels;
    int *order, *batch_idx;
    double *sampler_cdf;
    double *step_loss; /* each step's loss and hits this epoch, until counted */
    int *step_correct;
    float *lrs, *moms; /* the GPU trainer's schedule values for an epoch's steps */
} workspace;

static void workspace_free(workspace *w) {
    free(w->x);
    free(w->dlogits);
    free(w->dkd);
    free(w->class_weights);
    free(w->labels);
    free(w->order);
    free(w->batch_idx);
    free(w->sampler_cdf);
    free(w->step_loss);
    free(w->step_correct);
    free(w->lrs);
    free(w->moms);
}

static pasm_status workspace_init(workspace *w, const pasm_dataset *train, int batch, int k,
                                  int batches) {
    memset(w, 0, sizeof *w);
    int64_t per_image = (int64_t)train->channels * train->size * train->size;
    w->x = malloc((size_t)batch * per_image * sizeof(float));
    w->dlogits = malloc((size_t)batch * k * sizeof(float));
    w->dkd = malloc((size_t)batch * k * sizeof(float));
    w->class_weights = malloc((size_t)k * sizeof(float));
    w->labels = malloc((size_t)batch * sizeof(int32_t));
    w->order = malloc((size_t)train->n * sizeof(int));
    w->batch_idx = malloc((size_t)batch * sizeof(int));
    w->sampler_cdf = malloc((size_t)train->n * sizeof(double));
    w->step_loss = malloc((size_t)batches * sizeof(double));
    w->step_correct = malloc((size_t)batches * sizeof(int));
    w->lrs = malloc((size_t)batches * sizeof(float));
    w->moms = malloc((size_t)batches * sizeof(float));
    if (!w->x || !w->dlogits || !w->dkd || !w->class_weights || !w->labels || !w->order ||
        !w->batch_idx || !w->sampler_cdf || !w->step_loss || !w->step_correct || !w->lrs ||
        !w->moms) {
        workspace_free(w);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for training batches");
    }
    return PASM_OK;
}

/* Batches per epoch: a last batch of one image is dropped (batch
 * normalisation cannot train on a single image). */
static int batches_per_epoch(int n, int batch) {
    int full = n / batch, rest = n % batch;
    return full + (rest >= 2 ? 1 : 0);
}

static pasm_status loss_error(int epoch, int b, double loss) {
    return pasm_errorf(PASM_ERR_NUMERIC,
                       "epoch %d, batch %d: the loss is %s; stopped without saving this "
                       "epoch (the last good checkpoint is kept). Try a lower --lr",
                       epoch + 1, b + 1, isnan(loss) ? "NaN" : "infinite");
}

/* One optimiser step on the batch order[start..start+n). Returns the loss
 * (before the step) through *loss and the number of correct predictions. */
static pasm_status train_step(pasm_net *net, const pasm_dataset *train,
                              const pasm_train_options *opt, const pasm_model_meta *meta,
                              workspace *w, pasm_sgd *sgd, const pasm_schedule *sched,
                              int64_t step, int epoch, int start, int n, double *loss,
                              int *correct) {
    const int k = pasm_net_get_config(net)->num_classes;
    for (int i = 0; i < n; i++) w->batch_idx[i] = w->order[start + i];
    pasm_status st = pasm_batch_make(train, w->batch_idx, n, meta->norm_mean, meta->norm_std,
                                     w->x, w->labels);
    if (st) return st;
    if ((st = pasm_augment_batch(w->x, n, train->channels, train->size, &opt->augment, opt->seed,
                                 (uint64_t)epoch, w->batch_idx)))
        return st;
    const float *weights = opt->balance == PASM_BALANCE_WEIGHTS ? w->class_weights : NULL;
    const float *teacher_logits = NULL;
    if (opt->teacher && opt->kd_alpha > 0) {
        if ((st = pasm_net_forward(opt->teacher, w->x, n, 0, &teacher_logits))) return st;
    }
    const float *logits;
    if ((st = pasm_net_forward(net, w->x, n, 1, &logits))) return st;
    double ce = pasm_cross_entropy(n, k, logits, w->labels, opt->label_smoothing, weights,
                                   w->dlogits, NULL);
    double total = ce;
    if (teacher_logits) {
        double kd = pasm_distill_loss(n, k, logits, teacher_logits, opt->kd_temp, w->dkd);
        float a = opt->kd_alpha;
        total = (1.0 - a) * ce + a * kd;
        for (int64_t i = 0; i < (int64_t)n * k; i++)
            w->dlogits[i] = (1.0f - a) * w->dlogits[i] + a * w->dkd[i];
    }
    if (!isfinite(total)) return loss_error(epoch, start / opt->batch, total);
    int right = 0;
    for (int i = 0; i < n; i++) right += pasm_argmax_row(logits + (size_t)i * k, k) == w->labels[i];
    if ((st = pasm_net_backward(net, w->dlogits, NULL))) return st;
    sgd->opt.momentum = pasm_schedule_momentum(sched, step, opt->sgd.momentum);
    if ((st = pasm_sgd_step_net(sgd, net, pasm_schedule_lr(sched, step)))) return st;
    *loss = total;
    *correct = right;
    return PASM_OK;
}

static pasm_status check_inputs(pasm_net *net, const pasm_model_meta *meta,
                                const pasm_dataset *train, const pasm_dataset *val,
                                const pasm_train_options *opt) {
    const pasm_net_config *cfg = pasm_net_get_config(net);
    if (train->n < 2)
        return pasm_errorf(PASM_ERR_INVALID, "%s: %d training images; at least 2 are needed",
                           train->source ? train->source : "training data", train->n);
    if (!train->labelled)
        return pasm_errorf(PASM_ERR_INVALID, "%s: the training images have no labels",
                           train->source ? train->source : "training data");
    if (train->channels != cfg->in_channels || train->size != cfg->input_size)
        return pasm_errorf(PASM_ERR_SHAPE, "%s: images are %d-channel %dx%d, the network takes "
                                           "%d-channel %dx%d",
                           train->source, train->channels, train->size, train->size,
                           cfg->in_channels, cfg->input_size, cfg->input_size);
    if (train->n_classes > cfg->num_classes)
        return pasm_errorf(PASM_ERR_SHAPE, "%s has %d classes, the network %d", train->source,
                           train->n_classes, cfg->num_classes);
    if (meta->n_norm != cfg->in_channels)
        return pasm_errorf(PASM_ERR_INVALID, "normalisation mean/std missing for the %d input "
                                             "channels",
                           cfg->in_channels);
    if (opt->epochs < 1 || opt->batch < 2)
        return pasm_errorf(PASM_ERR_INVALID, "need epochs >= 1 and batch >= 2 (got %d, %d)",
                           opt->epochs, opt->batch);
    if (opt->pairs && (train->n % 2 || train->n < 4 || opt->balance == PASM_BALANCE_SAMPLER ||
                       !(opt->twin_prob >= 0 && opt->twin_prob <= 1)))
        return pasm_errorf(PASM_ERR_INVALID, "pairs of twins need an even number of images (got "
                                             "%d), no balanced sampler and a twin probability in "
                                             "0..1",
                           train->n);
    if (opt->batch > pasm_net_max_batch(net))
        return pasm_errorf(PASM_ERR_INVALID, "batch %d exceeds the network's planned %d",
                           opt->batch, pasm_net_max_batch(net));
    if (val && val->n > 0 && (val->channels != train->channels || val->size != train->size))
        return pasm_errorf(PASM_ERR_SHAPE, "%s: validation images differ in size or channels",
                           val->source);
    if (opt->teacher && pasm_net_max_batch(opt->teacher) < opt->batch)
        return pasm_errorf(PASM_ERR_INVALID, "the teacher was planned for smaller batches");
    return PASM_OK;
}

/* Validation after an epoch: loss, accuracy and mean class accuracy. */
static pasm_status validate(pasm_net *net, const pasm_dataset *val, const pasm_model_meta *meta,
                            pasm_epoch_stats *es) {
    if (!val || val->n == 0) return PASM_OK;
    pasm_metrics m;
    pasm_status st = pasm_metrics_init(&m, pasm_net_get_config(net)->num_classes);
    if (st) return st;
    st = pasm_evaluate(net, val, meta->norm_mean, meta->norm_std, 0, &m, &es->val_loss, NULL,
                       NULL);
    es->has_val = 1;
    es->val_accuracy = pasm_metrics_accuracy(&m);
    es->val_mean_class_accuracy = pasm_metrics_mean_class_accuracy(&m);
    pasm_metrics_free(&m);
    return st;
}

/* PASM_TRAIN_SYNC_EPOCH_FILES=1: the GPU trainer writes its epoch files
 * before going on, as the CPU's does (for tests and comparisons). */
static int sync_epoch_files(void) { return pasm_env_flag("PASM_TRAIN_SYNC_EPOCH_FILES"); }

pasm_status pasm_train(pasm_net *net, const pasm_model_meta *meta, const pasm_dataset *train,
                       const pasm_dataset *val, const pasm_train_options *opt,
                       const pasm_train_hooks *hooks, pasm_train_result *result) {
    double t_start = pasm_now_seconds();
    pasm_status st = check_inputs(net, meta, train, val, opt);
    if (st) return st;
    const int k = pasm_net_get_config(net)->num_classes;
    const int n_epoch = opt->pairs ? train->n / 2 : train->n; /* samples an epoch */
    const int batches = batches_per_epoch(n_epoch, opt->batch);
    const int64_t total_steps = (int64_t)batches * opt->epochs;
    pasm_schedule sched;
    pasm_schedule_init(&sched, opt->schedule, opt->sgd.lr, total_steps,
                       (int64_t)opt->warmup_epochs * batches);
    workspace w;
    if ((st = workspace_init(&w, train, opt->batch, k, batches))) return st;
    pasm_class_balance(train, k, w.class_weights, w.sampler_cdf);
    device_step *dev = NULL;
    pasm_epoch_writer *writer = NULL; /* the GPU trainer's epoch files, being written */
    int64_t n_params;
    pasm_net_param_block(net, &n_params);
    pasm_sgd sgd;
    pasm_train_state ts;
    pasm_train_state_init(&ts);
    pasm_model_meta ckpt_meta;
    memset(&ckpt_meta, 0, sizeof ckpt_meta);
    if ((st = pasm_sgd_init(&sgd, &opt->sgd, n_params))) goto done;
    if ((st = pasm_model_meta_copy(&ckpt_meta, meta))) goto done;
    if (opt->resume) {
        if (!opt->out_path) {
            st = pasm_errorf(PASM_ERR_INVALID, "resuming needs the checkpoint path");
            goto done;
        }
        if ((st = pasm_train_state_load(opt->out_path, net, &sgd, &ts))) goto done;
    } else if (opt->out_path) {
        if ((st = pasm_train_metrics_reset(opt->out_path))) goto done;
    }
    if ((st = device_step_create(&dev, net, train, opt, &ckpt_meta,
                                 opt->balance == PASM_BALANCE_WEIGHTS ? w.class_weights : NULL,
                                 batches)))
        goto done;
    int epochs_this_run = 0;
    for (int epoch = ts.epoch; epoch < opt->epochs; epoch++) {
        if (opt->pairs)
            pasm_epoch_order_pairs(n_epoch, opt->twin_prob, opt->seed, epoch, w.order);
        else pasm_epoch_order(train, opt->balance, w.sampler_cdf, opt->seed, epoch, w.order);
        double t_epoch = pasm_now_seconds(), t_counted = t_epoch;
        if (dev) { /* the schedule's values for this epoch's steps, from ts.batch_pos on */
            for (int b = 0; b < batches; b++) {
                int64_t step = ts.step + (b - ts.batch_pos);
                w.lrs[b] = pasm_schedule_lr(&sched, step < 0 ? 0 : step);
                w.moms[b] = pasm_schedule_momentum(&sched, step < 0 ? 0 : step, opt->sgd.momentum);
            }
            if ((st = device_step_epoch(dev, w.order, n_epoch, epoch, ts.batch_pos, w.lrs, w.moms)))
                goto done;
        }
        int64_t seen_this_run = 0;
        float lr = 0;
        /* Steps [counted, b] have run; their losses are counted (and the
         * progress hook told) at once on the host path, and on the GPU
         * path when the epoch ends, a stop is asked or a quarter second
         * has passed: reading them is the GPU path's one wait. */
        int counted = ts.batch_pos;
        for (int b = ts.batch_pos; b < batches; b++) {
            int start = b * opt->batch;
            int n = n_epoch - start < opt->batch ? n_epoch - start : opt->batch;
            lr = pasm_schedule_lr(&sched, ts.step);
            if (dev) {
                st = device_step_run(dev, &sgd, n);
            } else {
                st = train_step(net, train, opt, &ckpt_meta, &w, &sgd, &sched, ts.step, epoch,
                                start, n, &w.step_loss[b], &w.step_correct[b]);
            }
            if (st) goto done;
            ts.step++;
            const int last = b + 1 == batches, stop = hooks && hooks->stop && *hooks->stop;
            if (dev && !last && !stop && pasm_now_seconds() - t_counted < 0.25) continue;
            if (dev && (st = device_step_results(dev, counted, b + 1, w.step_loss,
                                                 w.step_correct)))
                goto done;
            for (; counted <= b; counted++) {
                const int bn = n_epoch - counted * opt->batch < opt->batch
                                   ? n_epoch - counted * opt->batch
                                   : opt->batch;
                if (!isfinite(w.step_loss[counted])) {
                    st = loss_error(epoch, counted, w.step_loss[counted]);
                    goto done;
                }
                ts.batch_pos = counted + 1;
                ts.loss_sum += w.step_loss[counted] * bn;
                ts.correct += w.step_correct[counted];
                ts.seen += bn;
                seen_this_run += bn;
                if (hooks && hooks->on_batch) {
                    double el = pasm_now_seconds() - t_epoch, ips = seen_this_run / fmax(el, 1e-9);
                    int64_t left = total_steps - (ts.step - b + counted);
                    pasm_train_progress p = {epoch + 1, opt->epochs, counted + 1, batches,
                                             ts.loss_sum / (double)ts.seen, ips,
                                             (double)left * opt->batch / fmax(ips, 1e-9),
                                             pasm_schedule_lr(&sched, ts.step - 1 - b + counted)};
                    hooks->on_batch(hooks->user, &p);
                }
            }
            t_counted = pasm_now_seconds();
            if (stop && !last) {
                ts.epoch = epoch;
                if ((st = pasm_epoch_writer_wait(writer))) goto done; /* the last epoch's first */
                if (opt->out_path) st = pasm_train_state_save(opt->out_path, net, &sgd, &ts,
                                                              &ckpt_meta);
                if (!st)
                    st = pasm_errorf(PASM_ERR_INTERRUPTED,
                                     "stopped at epoch %d, batch %d of %d; resume with --resume",
                                     epoch + 1, b + 1, batches);
                goto done;
            }
        }
        pasm_epoch_stats es = {.epoch = epoch + 1, .lr = lr,
                               .train_loss = ts.loss_sum / fmax((double)ts.seen, 1),
                               .train_accuracy = (double)ts.correct / fmax((double)ts.seen, 1)};
        if ((st = validate(net, val, &ckpt_meta, &es))) goto done;
        es.seconds = pasm_now_seconds() - t_epoch;
        es.images_per_s = (double)seen_this_run / fmax(es.seconds, 1e-9);
        es.is_best = !es.has_val || ts.best_epoch == 0 || es.val_accuracy > ts.best_accuracy;
        if (es.is_best) {
            ts.best_epoch = epoch + 1;
            ts.best_accuracy = es.has_val ? es.val_accuracy : 0;
        }
        ts.epoch = epoch + 1;
        ts.batch_pos = 0;
        ts.loss_sum = 0;
        ts.correct = ts.seen = 0;
        ckpt_meta.epoch = epoch + 1;
        if (opt->out_path) {
            /* the GPU trainer's go on while a thread writes them (a CPU
             * epoch dwarfs the write): the previous epoch's finished first */
            if ((st = pasm_epoch_writer_wait(writer))) goto done;
            if (dev && !sync_epoch_files())
                st = pasm_epoch_writer_start(&writer, opt->out_path, net, &sgd, &ts, &ckpt_meta,
                                             &es);
            else
                st = pasm_train_epoch_files(opt->out_path, net, &sgd, &ts, &ckpt_meta, &es);
            if (st) goto done;
        }
        if (hooks && hooks->on_epoch) hooks->on_epoch(hooks->user, &es);
        epochs_this_run++;
        int more = epoch + 1 < opt->epochs;
        if (more && opt->stop_after_epochs && epochs_this_run >= opt->stop_after_epochs) {
            st = pasm_errorf(PASM_ERR_INTERRUPTED, "stopped after epoch %d as asked; resume "
                                                   "with --resume",
                             epoch + 1);
            goto done;
        }
        if (more && hooks && hooks->stop && *hooks->stop) {
            st = pasm_errorf(PASM_ERR_INTERRUPTED,
                             "stopped after epoch %d; resume with --resume", epoch + 1);
            goto done;
        }
    }
done:
    if (writer) { /* the files are written when pasm_train returns; a first error wins */
        char first[1024];
        snprintf(first, sizeof first, "%s", st ? pasm_last_error() : "");
        pasm_status ws = pasm_epoch_writer_free(&writer);
        if (st && ws) pasm_errorf(st, "%s", first);
        if (!st) st = ws;
    }
    if (result) {
        result->epochs_done = ts.epoch;
        result->best_epoch = ts.best_epoch;
        result->best_val_accuracy = ts.best_accuracy;
        result->steps = ts.step;
        result->seconds = pasm_now_seconds() - t_start;
        result->gpu_trainer = dev != NULL;
        result->graph_steps = dev ? device_step_graph_steps(dev) : 0;
    }
    device_step_free(dev);
    pasm_model_meta_free(&ckpt_meta);
    pasm_sgd_free(&sgd);
    workspace_free(&w);
    return st;
}
