/* Training steps on the GPU: see device_step.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "nn/nn_device.h"
#include "train/device_step.h"

int device_host_path_asked(void) { return pasm_env_flag("PASM_CUDA_HOST_STEP"); }

#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_backend.h"

/* The trainer's orders and counts are int; the GPU's int32_t: the same. */
_Static_assert(sizeof(int) == sizeof(int32_t), "int is 32 bits");

struct device_step {
    pasm_cuda_ctx *ctx;
    pasm_net *net, *teacher;
    const pasm_train_options *opt;
    int channels, size, k, batches, max_n;
    uint8_t *images;          /* the training set, (N, C, S, S) */
    int32_t *labels;          /* (N) */
    int32_t *order;           /* the epoch's dataset indices, by position */
    pasm_augment_plan *plans; /* ... and their augmentation */
    float *table;             /* C x 256: pixel -> normalised value */
    float *class_weights;     /* (K) or NULL */
    float *x, *dlogits;       /* a batch */
    int32_t *batch_labels;
    double *terms, *losses; /* loss scratch; a loss per step of the epoch */
    int32_t *correct;       /* a count per step */
    float *lrs, *moms;      /* the schedule's values per step of the epoch */
    int32_t *next;          /* the next step's batch */
    pasm_cuda_step *step;   /* the running step's position and values */
    /* A full batch's step as a graph, captured at the second full step and
     * replayed after; graph_failed: it could not be made (said once). */
    pasm_cuda_graph *graph;
    int graph_failed, full_steps;
    int64_t graph_steps;
    pasm_augment_plan *host_plans; /* the epoch's plans before they are sent */
};

void device_step_free(device_step *d) {
    if (!d) return;
    if (d->ctx) pasm_cuda_sync(d->ctx, "ending a training run");
    pasm_cuda_graph_free(d->graph);
    void *bufs[] = {d->images, d->labels, d->order,  d->plans,   d->table,
                    d->class_weights, d->x, d->dlogits, d->batch_labels, d->terms,
                    d->losses, d->correct, d->lrs, d->moms, d->next, d->step};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pasm_cuda_free(bufs[i]);
    pasm_cuda_ctx_free(d->ctx);
    free(d->host_plans);
    free(d);
}

static pasm_status alloc(void *p, size_t bytes, const char *what) {
    return pasm_cuda_alloc((void **)p, bytes, what);
}

static pasm_status build(device_step *d, const pasm_dataset *train, const pasm_model_meta *meta,
                         const float *class_weights) {
    const int C = d->channels, n_max = d->max_n, k = d->k;
    const size_t per_image = (size_t)C * d->size * d->size;
    pasm_status st;
    if ((st = pasm_cuda_ctx_create(&d->ctx))) return st;
    if ((st = alloc(&d->images, (size_t)train->n * per_image, "the training images")) ||
        (st = alloc(&d->labels, (size_t)train->n * 4, "the training labels")) ||
        (st = alloc(&d->order, (size_t)train->n * 4, "the epoch's order")) ||
        (st = alloc(&d->plans, (size_t)train->n * sizeof(pasm_augment_plan), "augmentation")) ||
        (st = alloc(&d->table, (size_t)C * 256 * 4, "normalisation")) ||
        (st = alloc(&d->x, (size_t)n_max * per_image * 4, "a batch")) ||
        (st = alloc(&d->dlogits, (size_t)n_max * k * 4, "the logits' gradient")) ||
        (st = alloc(&d->batch_labels, (size_t)n_max * 4, "a batch's labels")) ||
        (st = alloc(&d->terms, pasm_cuda_loss_terms_doubles(n_max, k) * 8, "loss terms")) ||
        (st = alloc(&d->losses, (size_t)d->batches * 8, "the epoch's losses")) ||
        (st = alloc(&d->correct, (size_t)d->batches * 4, "the epoch's hits")) ||
        (st = alloc(&d->lrs, (size_t)d->batches * 4, "the epoch's learning rates")) ||
        (st = alloc(&d->moms, (size_t)d->batches * 4, "the epoch's momenta")) ||
        (st = alloc(&d->next, 4, "the step counter")) ||
        (st = alloc(&d->step, sizeof(pasm_cuda_step), "the step")))
        return st;
    if (class_weights) {
        if ((st = alloc(&d->class_weights, (size_t)k * 4, "class weights"))) return st;
        if ((st = pasm_cuda_to_device(d->ctx, d->class_weights, class_weights, (size_t)k * 4)))
            return st;
    }
    float table[3 * 256];
    if ((st = pasm_norm_table(C, meta->norm_mean, meta->norm_std, table))) return st;
    d->host_plans = malloc((size_t)train->n * sizeof *d->host_plans);
    if (!d->host_plans) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the epoch's plans");
    if ((st = pasm_cuda_to_device(d->ctx, d->table, table, (size_t)C * 256 * 4)) ||
        (st = pasm_cuda_to_device(d->ctx, d->images, train->images, (size_t)train->n * per_image)) ||
        (st = pasm_cuda_to_device(d->ctx, d->labels, train->labels, (size_t)train->n * 4)))
        return st;
    return pasm_cuda_sync(d->ctx, "sending the training set to the GPU");
}

pasm_status device_step_create(device_step **out, pasm_net *net, const pasm_dataset *train,
                               const pasm_train_options *opt, const pasm_model_meta *meta,
                               const float *class_weights, int batches) {
    *out = NULL;
    pasm_net *teacher = opt->teacher && opt->kd_alpha > 0 ? opt->teacher : NULL;
    if (pasm_net_get_config(net)->device != PASM_DEVICE_CUDA || opt->augment.erase_random ||
        (teacher && pasm_net_get_config(teacher)->device != PASM_DEVICE_CUDA) ||
        train->channels > 3 || device_host_path_asked())
        return PASM_OK;
    for (int i = 0; i < train->n; i++) /* the loss kernel gives NaN for these too */
        if (train->labels[i] < 0 || train->labels[i] >= pasm_net_get_config(net)->num_classes)
            return pasm_errorf(PASM_ERR_INVALID, "%s: image %d has label %d outside 0..%d",
                               train->source, i, train->labels[i],
                               pasm_net_get_config(net)->num_classes - 1);
    device_step *d = calloc(1, sizeof *d);
    if (!d) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the GPU trainer");
    d->net = net;
    d->teacher = teacher;
    d->opt = opt;
    d->channels = train->channels;
    d->size = train->size;
    d->k = pasm_net_get_config(net)->num_classes;
    d->batches = batches;
    d->max_n = opt->batch;
    pasm_status st = build(d, train, meta, class_weights);
    if (st) {
        device_step_free(d);
        return st;
    }
    *out = d;
    return PASM_OK;
}

pasm_status device_step_epoch(device_step *d, const int *order, int n, int epoch, int first,
                              const float *lrs, const float *moms) {
    /* the sends below must not overwrite what queued steps still read */
    pasm_status st = pasm_cuda_sync(d->ctx, "finishing the last epoch");
    if (st) return st;
    if ((st = pasm_augment_plans(n, d->size, &d->opt->augment, d->opt->seed, (uint64_t)epoch,
                                 order, d->host_plans)))
        return st;
    const int32_t next = first;
    if ((st = pasm_cuda_to_device(d->ctx, d->order, order, (size_t)n * 4)) ||
        (st = pasm_cuda_to_device(d->ctx, d->plans, d->host_plans,
                                  (size_t)n * sizeof *d->host_plans)) ||
        (st = pasm_cuda_to_device(d->ctx, d->lrs, lrs, (size_t)d->batches * 4)) ||
        (st = pasm_cuda_to_device(d->ctx, d->moms, moms, (size_t)d->batches * 4)) ||
        (st = pasm_cuda_to_device(d->ctx, d->next, &next, 4)))
        return st;
    return pasm_cuda_sync(d->ctx, "sending the epoch's plans");
}

/* A step's work, every launch the same whatever the step: what changes is
 * read from d->step on the device. */
static pasm_status step_body(device_step *d, pasm_sgd *sgd, int n) {
    const pasm_train_options *opt = d->opt;
    pasm_status st = pasm_cuda_step_begin(d->ctx, d->next, opt->batch, d->lrs, d->moms, d->step);
    if (st) return st;
    if ((st = pasm_cuda_batch(d->ctx, n, d->channels, d->size, d->images, d->labels, d->order,
                              d->plans, d->table, d->x, d->batch_labels, d->step)))
        return st;
    const float *teacher_logits = NULL, *logits;
    if (d->teacher &&
        (st = pasm_net_forward_on_device(d->teacher, d->x, n, 0, &teacher_logits)))
        return st;
    if ((st = pasm_net_forward_on_device(d->net, d->x, n, 1, &logits))) return st;
    if ((st = pasm_cuda_train_loss(d->ctx, n, d->k, logits, d->batch_labels,
                                   opt->label_smoothing, d->class_weights, teacher_logits,
                                   opt->kd_alpha, opt->kd_temp, d->dlogits, d->terms, d->losses,
                                   d->correct, d->step)))
        return st;
    if ((st = pasm_net_backward_on_device(d->net, d->dlogits, NULL))) return st;
    const pasm_sgd_options *o = &sgd->opt;
    if ((st = pasm_net_sgd_step_scheduled(d->net, d->step, 0, o->weight_decay, 0, o->dampening,
                                          o->nesterov, sgd->steps == 0, sgd->momentum_buffer,
                                          &sgd->momentum_on_device)))
        return st;
    sgd->steps++;
    return PASM_OK;
}

/* The host's account of a step it did not run itself (a replay: +1), or
 * took back (a failed capture: -1). */
static void account(device_step *d, pasm_sgd *sgd, int delta) {
    pasm_net_count_replayed_steps(d->net, delta);
    sgd->steps += delta;
}

pasm_status device_step_run(device_step *d, pasm_sgd *sgd, int n) {
    if (n != d->max_n || d->graph_failed) return step_body(d, sgd, n);
    /* A graph neither sends nor checks: a host copy written since (or
     * handed out for writing, as saving a checkpoint does) goes first. */
    pasm_status st = pasm_net_device_ready(d->net);
    if (!st && d->teacher) st = pasm_net_device_ready(d->teacher);
    if (st) return st;
    if (d->graph) {
        if (!(st = pasm_cuda_graph_launch(d->ctx, d->graph))) {
            account(d, sgd, 1);
            d->graph_steps++;
        }
        return st;
    }
    /* the first full step runs as it is (it allocates the momentum and
     * plans the convolutions); the second is captured */
    if (d->full_steps++ == 0 || sgd->steps == 0 || pasm_cuda_graph_begin(d->ctx) != PASM_OK) {
        if (d->full_steps > 1 && sgd->steps > 0) d->graph_failed = 1; /* off, or not here */
        return step_body(d, sgd, n);
    }
    const int64_t counted = pasm_net_steps_counted(d->net), steps = sgd->steps;
    st = step_body(d, sgd, n);
    char why[512];
    snprintf(why, sizeof why, "%s", st ? pasm_last_error() : "");
    pasm_status end = pasm_cuda_graph_end(d->ctx, &d->graph);
    if (!st && !end) {
        st = pasm_cuda_graph_launch(d->ctx, d->graph);
        d->graph_steps += !st;
        return st;
    }
    /* nothing captured ran: take back what the host counted of it (and the
     * weights it packed) and run the step as it is */
    pasm_net_count_replayed_steps(d->net, -(int)(pasm_net_steps_counted(d->net) - counted));
    sgd->steps = steps;
    pasm_note("a training step could not run as a CUDA graph (%s); steps run launch by launch",
              st ? why : pasm_last_error());
    d->graph_failed = 1;
    pasm_cuda_graph_free(d->graph);
    d->graph = NULL;
    return step_body(d, sgd, n);
}

int64_t device_step_graph_steps(const device_step *d) { return d->graph_steps; }

pasm_status device_step_results(device_step *d, int from, int to, double *loss, int *correct) {
    if (to <= from) return PASM_OK;
    pasm_status st = pasm_cuda_to_host(d->ctx, loss + from, d->losses + from,
                                       (size_t)(to - from) * 8);
    if (st) return st;
    return pasm_cuda_to_host(d->ctx, correct + from, d->correct + from, (size_t)(to - from) * 4);
}

/* ---- evaluation ---- */

int device_eval_applies(const pasm_net *net, const pasm_dataset *ds) {
    return pasm_net_get_config(net)->device == PASM_DEVICE_CUDA && ds->n > 0 &&
           ds->channels <= 3 && !device_host_path_asked();
}

/* Faces on the GPU at once while evaluating: a large set goes up in parts. */
enum { EVAL_CHUNK = 32768 };

pasm_status device_eval_logits(pasm_net *net, const pasm_dataset *ds, const float *mean,
                               const float *std, float *logits, float *flipped) {
    if (!device_eval_applies(net, ds))
        return pasm_errorf(PASM_ERR_INVALID, "GPU evaluation of a network or data it does not "
                                             "take");
    const int C = ds->channels, S = ds->size, k = pasm_net_get_config(net)->num_classes;
    const int batch = pasm_net_max_batch(net);
    const size_t per_image = (size_t)C * S * S;
    /* parts of whole batches: the batches are the host path's */
    const char *part = getenv("PASM_CUDA_EVAL_CHUNK"); /* smaller parts, for tests */
    int chunk = (part && atoi(part) > 0 ? atoi(part) : EVAL_CHUNK) / batch * batch;
    if (chunk < batch) chunk = batch;
    if (chunk > ds->n) chunk = ds->n;
    float table[3 * 256];
    pasm_status st0 = pasm_norm_table(C, mean, std, table);
    if (st0) return st0;
    pasm_augment_plan *plans = calloc((size_t)chunk * 2, sizeof *plans); /* as is, mirrored */
    pasm_cuda_ctx *ctx = NULL;
    uint8_t *images = NULL;
    pasm_augment_plan *d_plans = NULL;
    float *d_table = NULL, *x = NULL, *all = NULL;
    pasm_status st = plans ? PASM_OK : pasm_errorf(PASM_ERR_NOMEM, "out of memory for evaluation");
    for (int i = 0; !st && i < chunk; i++) plans[chunk + i].flip = 1;
    if (!st) st = pasm_cuda_ctx_create(&ctx);
    if (!st) st = alloc(&images, (size_t)chunk * per_image, "the images to evaluate");
    if (!st) st = alloc(&d_plans, (size_t)chunk * 2 * sizeof *plans, "their plans");
    if (!st) st = alloc(&d_table, sizeof table, "normalisation");
    if (!st) st = alloc(&x, (size_t)batch * per_image * 4, "a batch");
    if (!st) st = alloc(&all, (size_t)chunk * k * 4, "the logits");
    if (!st) st = pasm_cuda_to_device(ctx, d_plans, plans, (size_t)chunk * 2 * sizeof *plans);
    if (!st) st = pasm_cuda_to_device(ctx, d_table, table, (size_t)C * 256 * 4);
    for (int c0 = 0; !st && c0 < ds->n; c0 += chunk) {
        const int m = ds->n - c0 < chunk ? ds->n - c0 : chunk;
        st = pasm_cuda_to_device(ctx, images, ds->images + (size_t)c0 * per_image,
                                 (size_t)m * per_image);
        for (int pass = 0; !st && pass < (flipped ? 2 : 1); pass++) {
            for (int start = 0; !st && start < m; start += batch) {
                const int n = m - start < batch ? m - start : batch;
                const float *l;
                /* the part's faces in order (no order given), as is or mirrored */
                st = pasm_cuda_batch(ctx, n, C, S, images + (size_t)start * per_image, NULL,
                                     NULL, d_plans + (size_t)pass * chunk + start, d_table, x,
                                     NULL, NULL);
                if (!st) st = pasm_net_forward_on_device(net, x, n, 0, &l);
                if (!st) st = pasm_cuda_copy(ctx, all + (size_t)start * k, l, (size_t)n * k * 4);
            }
            float *dst = (pass ? flipped : logits) + (size_t)c0 * k;
            if (!st) st = pasm_cuda_to_host(ctx, dst, all, (size_t)m * k * 4);
        }
    }
    void *bufs[] = {images, d_plans, d_table, x, all};
    if (!st) st = pasm_cuda_sync(ctx, "evaluating");
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pasm_cuda_free(bufs[i]);
    pasm_cuda_ctx_free(ctx);
    free(plans);
    return st;
}

#else /* a CPU build: always the host path */

pasm_status device_step_create(device_step **out, pasm_net *net, const pasm_dataset *train,
                               const pasm_train_options *opt, const pasm_model_meta *meta,
                               const float *class_weights, int batches) {
    (void)net, (void)train, (void)opt, (void)meta, (void)class_weights, (void)batches;
    *out = NULL;
    return PASM_OK;
}
void device_step_free(device_step *d) { (void)d; }
pasm_status device_step_epoch(device_step *d, const int *order, int n, int epoch, int first,
                              const float *lrs, const float *moms) {
    (void)d, (void)order, (void)n, (void)epoch, (void)first, (void)lrs, (void)moms;
    return pasm_errorf(PASM_ERR_INVALID, "no GPU trainer in a CPU build");
}
pasm_status device_step_run(device_step *d, pasm_sgd *sgd, int n) {
    (void)d, (void)sgd, (void)n;
    return pasm_errorf(PASM_ERR_INVALID, "no GPU trainer in a CPU build");
}
int64_t device_step_graph_steps(const device_step *d) {
    (void)d;
    return 0;
}
int device_eval_applies(const pasm_net *net, const pasm_dataset *ds) {
    (void)net, (void)ds;
    return 0;
}
pasm_status device_eval_logits(pasm_net *net, const pasm_dataset *ds, const float *mean,
                               const float *std, float *logits, float *flipped) {
    (void)net, (void)ds, (void)mean, (void)std, (void)logits, (void)flipped;
    return pasm_errorf(PASM_ERR_INVALID, "no GPU evaluation in a CPU build");
}
pasm_status device_step_results(device_step *d, int from, int to, double *loss, int *correct) {
    (void)d, (void)from, (void)to, (void)loss, (void)correct;
    return pasm_errorf(PASM_ERR_INVALID, "no GPU trainer in a CPU build");
}
#endif
