/* Resumable training state and the per-epoch files. The state file holds
 * the whole network ("model.<name>"), the momentum buffer and the position
 * counters; doubles travel bit for bit as I64. Every file is written
 * atomically, in an order that makes a kill at any point safe: the last model,
 * the best, the metrics, and the state last, so a resumed run repeats at most
 * the epoch whose state was not yet written, with the same result. The GPU
 * trainer's are written by a thread from a copy (pasm_epoch_writer) while the
 * next epoch trains: a kill then repeats up to two epochs. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/io.h"
#include "train/train_state.h"

enum { C_EPOCH, C_BATCH_POS, C_STEP, C_BEST_EPOCH, C_BEST_ACC, C_LOSS_SUM, C_CORRECT, C_SEEN,
       C_SGD_STEPS, C_COUNT };

void pasm_train_state_init(pasm_train_state *ts) { memset(ts, 0, sizeof *ts); }

static int64_t bits(double d) {
    int64_t v;
    memcpy(&v, &d, sizeof v);
    return v;
}

static double unbits(int64_t v) {
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

/* X.state from the network's state tensors (in pasm_net_state's order), the
 * momentum (NULL: none) and the counters. */
static pasm_status state_save_tensors(const char *out_path, const pasm_tensor *model, int n_state,
                                      const float *momentum, int64_t count, int64_t sgd_steps,
                                      const pasm_train_state *ts, const pasm_model_meta *meta) {
    char path[4096];
    pasm_train_sibling(out_path, "state", NULL, path, sizeof path);
    pasm_tensor *tensors = calloc((size_t)n_state + 2, sizeof(pasm_tensor));
    if (!tensors) return pasm_errorf(PASM_ERR_NOMEM, "out of memory writing %s", path);
    for (int i = 0; i < n_state; i++) {
        tensors[i] = model[i];
        snprintf(tensors[i].name, sizeof tensors[i].name, "model.%s", model[i].name);
    }
    int64_t counters[C_COUNT] = {ts->epoch, ts->batch_pos, ts->step, ts->best_epoch,
                                 bits(ts->best_accuracy), bits(ts->loss_sum), ts->correct,
                                 ts->seen, sgd_steps};
    int n = n_state;
    tensors[n++] = (pasm_tensor){.name = "train.counters", .dtype = PASM_I64, .ndim = 1,
                                 .shape = {C_COUNT}, .data = counters};
    if (momentum)
        tensors[n++] = (pasm_tensor){.name = "sgd.momentum", .dtype = PASM_F32, .ndim = 1,
                                     .shape = {count}, .data = (void *)momentum};
    const char *keys[] = {"format", "kind", "args"};
    const char *values[] = {"pasm", "train-state", meta->args_json ? meta->args_json : "{}"};
    pasm_status st = pasm_safetensors_write(path, tensors, n, keys, values, 3);
    free(tensors);
    return st;
}

/* The network's state tensors as pasm_net_state gives them (a GPU network's
 * brought to the host); NULL when out of memory. */
static pasm_tensor *state_tensors(pasm_net *net, int *n) {
    *n = pasm_net_n_state(net);
    pasm_tensor *t = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *t);
    for (int i = 0; t && i < *n; i++) t[i] = *pasm_net_state(net, i);
    return t;
}

pasm_status pasm_train_state_save(const char *out_path, pasm_net *net, pasm_sgd *sgd,
                                  const pasm_train_state *ts, const pasm_model_meta *meta) {
    pasm_status sync = pasm_sgd_sync(sgd, net); /* a GPU run's momentum */
    if (sync) return sync;
    int n;
    pasm_tensor *model = state_tensors(net, &n);
    if (!model) return pasm_errorf(PASM_ERR_NOMEM, "out of memory writing %s's state", out_path);
    pasm_status st = state_save_tensors(out_path, model, n, sgd->momentum_buffer, sgd->count,
                                        sgd->steps, ts, meta);
    free(model);
    return st;
}

pasm_status pasm_train_state_load(const char *out_path, pasm_net *net, pasm_sgd *sgd,
                                  pasm_train_state *ts) {
    char path[4096];
    pasm_train_sibling(out_path, "state", NULL, path, sizeof path);
    pasm_safetensors st_file;
    pasm_status st = pasm_safetensors_read(path, &st_file);
    if (st) return pasm_error_prefix(st, "cannot resume");
    for (int i = 0; i < pasm_net_n_state(net) && !st; i++) {
        pasm_tensor *t = pasm_net_state(net, i);
        char name[128];
        snprintf(name, sizeof name, "model.%s", t->name);
        const pasm_tensor *src = pasm_safetensors_find(&st_file, name);
        if (!src || src->dtype != t->dtype || pasm_tensor_numel(src) != pasm_tensor_numel(t))
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: tensor '%s' is missing or has the wrong "
                                              "shape for this network",
                             path, name);
        else memcpy(t->data, src->data, pasm_tensor_bytes(t));
    }
    const pasm_tensor *c = pasm_safetensors_find(&st_file, "train.counters");
    if (!st && (!c || c->dtype != PASM_I64 || pasm_tensor_numel(c) != C_COUNT))
        st = pasm_errorf(PASM_ERR_FORMAT, "%s: tensor 'train.counters' missing or malformed",
                         path);
    const pasm_tensor *mom = pasm_safetensors_find(&st_file, "sgd.momentum");
    if (!st && sgd->momentum_buffer) {
        if (!mom || mom->dtype != PASM_F32 || pasm_tensor_numel(mom) != sgd->count)
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: tensor 'sgd.momentum' missing or of the "
                                              "wrong size",
                             path);
        else memcpy(sgd->momentum_buffer, mom->data, (size_t)sgd->count * sizeof(float));
        sgd->momentum_on_device = 0; /* a GPU run sends it again */
    }
    if (!st) {
        const int64_t *v = c->data;
        ts->epoch = (int)v[C_EPOCH];
        ts->batch_pos = (int)v[C_BATCH_POS];
        ts->step = v[C_STEP];
        ts->best_epoch = (int)v[C_BEST_EPOCH];
        ts->best_accuracy = unbits(v[C_BEST_ACC]);
        ts->loss_sum = unbits(v[C_LOSS_SUM]);
        ts->correct = v[C_CORRECT];
        ts->seen = v[C_SEEN];
        sgd->steps = v[C_SGD_STEPS];
        if (ts->epoch < 0 || ts->batch_pos < 0 || ts->step < 0)
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: negative training counters", path);
    }
    pasm_safetensors_free(&st_file);
    return st;
}

pasm_status pasm_train_metrics_reset(const char *out_path) {
    char path[4096];
    pasm_train_sibling(out_path, "metrics", "jsonl", path, sizeof path);
    return pasm_write_file_atomic(path, "", 0);
}

/* Rewrites the metrics file with the lines of earlier epochs and this one. */
static pasm_status append_metrics(const char *out_path, const pasm_epoch_stats *es) {
    char path[4096], line[1024];
    pasm_train_sibling(out_path, "metrics", "jsonl", path, sizeof path);
    unsigned char *old = NULL;
    size_t old_size = 0;
    if (pasm_read_file(path, &old, &old_size) != PASM_OK) old_size = 0;
    int len;
    if (es->has_val)
        len = snprintf(line, sizeof line,
                       "{\"epoch\":%d,\"lr\":%.6g,\"train_loss\":%.6f,\"train_accuracy\":%.6f,"
                       "\"val_loss\":%.6f,\"val_accuracy\":%.6f,\"val_mean_class_accuracy\":%.6f,"
                       "\"best\":%s,\"images_per_s\":%.1f,\"seconds\":%.2f}\n",
                       es->epoch, es->lr, es->train_loss, es->train_accuracy, es->val_loss,
                       es->val_accuracy, es->val_mean_class_accuracy,
                       es->is_best ? "true" : "false", es->images_per_s, es->seconds);
    else
        len = snprintf(line, sizeof line,
                       "{\"epoch\":%d,\"lr\":%.6g,\"train_loss\":%.6f,\"train_accuracy\":%.6f,"
                       "\"images_per_s\":%.1f,\"seconds\":%.2f}\n",
                       es->epoch, es->lr, es->train_loss, es->train_accuracy, es->images_per_s,
                       es->seconds);
    char *text = malloc(old_size + (size_t)len + 1);
    if (!text) {
        free(old);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory writing %s", path);
    }
    /* keep the lines of epochs before this one (a resumed run may repeat one) */
    size_t kept = 0, at = 0;
    while (at < old_size) {
        size_t end = at;
        while (end < old_size && old[end] != '\n') end++;
        int epoch = 0;
        if (sscanf((const char *)old + at, "{\"epoch\":%d", &epoch) == 1 && epoch < es->epoch) {
            memcpy(text + kept, old + at, end - at);
            kept += end - at;
            text[kept++] = '\n';
        }
        at = end + 1;
    }
    memcpy(text + kept, line, (size_t)len);
    pasm_status st = pasm_write_file_atomic(path, text, kept + (size_t)len);
    free(text);
    free(old);
    return st;
}

/* What an epoch's files hold: the network's state tensors and momentum
 * (borrowed, or copied when the files are written later), the counters,
 * the metadata (its strings borrowed) and the epoch's line. */
typedef struct {
    char out_path[4096];
    pasm_net_config cfg;
    pasm_tensor *model;
    int n_model;
    const float *momentum;
    int64_t count, sgd_steps;
    pasm_train_state ts;
    pasm_model_meta meta;
    pasm_epoch_stats es;
} epoch_files;

static void epoch_files_free(epoch_files *f) {
    free(f->model);
    f->model = NULL;
}

/* The files' contents; with copy (a buffer kept between calls, grown as
 * needed: *copy, *copy_bytes), the tensors' data copied into it. */
static pasm_status epoch_files_take(epoch_files *f, const char *out_path, pasm_net *net,
                                    pasm_sgd *sgd, const pasm_train_state *ts,
                                    const pasm_model_meta *meta, const pasm_epoch_stats *es,
                                    void **copy, size_t *copy_bytes) {
    memset(f, 0, sizeof *f);
    if (snprintf(f->out_path, sizeof f->out_path, "%s", out_path) >= (int)sizeof f->out_path)
        return pasm_errorf(PASM_ERR_INVALID, "%s: path too long", out_path);
    pasm_status st = pasm_sgd_sync(sgd, net); /* a GPU run's momentum */
    if (st) return st;
    f->cfg = *pasm_net_get_config(net);
    if (!(f->model = state_tensors(net, &f->n_model)))
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory writing %s's epoch files", out_path);
    f->momentum = sgd->momentum_buffer, f->count = sgd->count, f->sgd_steps = sgd->steps;
    f->ts = *ts, f->meta = *meta, f->es = *es;
    if (!copy) return PASM_OK;
    size_t total = f->momentum ? (size_t)f->count * sizeof(float) : 0;
    for (int i = 0; i < f->n_model; i++) total += pasm_tensor_bytes(&f->model[i]);
    if (total > *copy_bytes) {
        free(*copy);
        *copy_bytes = 0;
        if (!(*copy = malloc(total))) {
            epoch_files_free(f);
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory copying %s's epoch files (%.0f MiB)",
                               out_path, (double)total / 1048576.0);
        }
        *copy_bytes = total;
    }
    unsigned char *at = *copy;
    for (int i = 0; i < f->n_model; i++) {
        const size_t b = pasm_tensor_bytes(&f->model[i]);
        memcpy(at, f->model[i].data, b);
        f->model[i].data = at;
        at += b;
    }
    if (f->momentum) {
        memcpy(at, f->momentum, (size_t)f->count * sizeof(float));
        f->momentum = (const float *)at;
    }
    return PASM_OK;
}

/* X.last, X (when best), the metrics line, then X.state. */
static pasm_status epoch_files_write(const epoch_files *f) {
    char path[4096];
    pasm_train_sibling(f->out_path, "last", NULL, path, sizeof path);
    pasm_status st = pasm_checkpoint_save_tensors(path, &f->cfg, f->model, f->n_model, &f->meta);
    if (!st && f->es.is_best)
        st = pasm_checkpoint_save_tensors(f->out_path, &f->cfg, f->model, f->n_model, &f->meta);
    if (!st) st = append_metrics(f->out_path, &f->es);
    if (!st)
        st = state_save_tensors(f->out_path, f->model, f->n_model, f->momentum, f->count,
                                f->sgd_steps, &f->ts, &f->meta);
    return st;
}

pasm_status pasm_train_epoch_files(const char *out_path, pasm_net *net, pasm_sgd *sgd,
                                   const pasm_train_state *ts, const pasm_model_meta *meta,
                                   const pasm_epoch_stats *es) {
    epoch_files f;
    pasm_status st = epoch_files_take(&f, out_path, net, sgd, ts, meta, es, NULL, NULL);
    if (!st) st = epoch_files_write(&f);
    epoch_files_free(&f);
    return st;
}

struct pasm_epoch_writer {
    pthread_t thread;
    int running;
    epoch_files files;
    void *copy; /* the copied tensors, kept from epoch to epoch */
    size_t copy_bytes;
    pasm_status st;
    char msg[1024];
};

static void *writer_main(void *arg) {
    pasm_epoch_writer *w = arg;
    w->st = epoch_files_write(&w->files);
    if (w->st) snprintf(w->msg, sizeof w->msg, "%s", pasm_last_error());
    return NULL;
}

pasm_status pasm_epoch_writer_start(pasm_epoch_writer **out, const char *out_path,
                                    pasm_net *net, pasm_sgd *sgd, const pasm_train_state *ts,
                                    const pasm_model_meta *meta, const pasm_epoch_stats *es) {
    if (*out && (*out)->running)
        return pasm_errorf(PASM_ERR_INVALID, "epoch files: a write is still pending");
    if (!*out && !(*out = calloc(1, sizeof **out)))
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory writing %s's epoch files", out_path);
    pasm_epoch_writer *w = *out;
    pasm_status st =
        epoch_files_take(&w->files, out_path, net, sgd, ts, meta, es, &w->copy, &w->copy_bytes);
    if (st) return st;
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        epoch_files_free(&w->files);
        return pasm_errorf(PASM_ERR_IO, "%s: could not start the thread writing the epoch files",
                           out_path);
    }
    w->running = 1;
    return PASM_OK;
}

pasm_status pasm_epoch_writer_wait(pasm_epoch_writer *w) {
    if (!w || !w->running) return PASM_OK;
    pthread_join(w->thread, NULL);
    w->running = 0;
    epoch_files_free(&w->files);
    if (w->st) return pasm_errorf(w->st, "%s", w->msg);
    return PASM_OK;
}

pasm_status pasm_epoch_writer_free(pasm_epoch_writer **wp) {
    pasm_status st = pasm_epoch_writer_wait(*wp);
    if (*wp) free((*wp)->copy);
    free(*wp);
    *wp = NULL;
    return st;
}
