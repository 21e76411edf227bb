/* Resumable training state and the per-epoch files. The state file holds
 * the whole network ("model.<name>"), the momentum buffer and the position
 * counters; doubles travel bit for bit as I64. Every file is written
 * atomically, in an order that makes a kill at any point safe: the last model,
 * the best, the metrics, and the state last, so a resumed run repeats at most
 * the epoch whose state was not yet written, with the same result. */
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

pasm_status pasm_train_state_save(const char *out_path, pasm_net *net, pasm_sgd *sgd,
                                  const pasm_train_state *ts, const pasm_model_meta *meta) {
    char path[4096];
    pasm_train_sibling(out_path, "state", NULL, path, sizeof path);
    pasm_status sync = pasm_sgd_sync(sgd, net); /* a GPU run's momentum */
    if (sync) return sync;
    int n_state = pasm_net_n_state(net);
    pasm_tensor *tensors = calloc((size_t)n_state + 2, sizeof(pasm_tensor));
    if (!tensors) return pasm_errorf(PASM_ERR_NOMEM, "out of memory writing %s", path);
    for (int i = 0; i < n_state; i++) {
        tensors[i] = *pasm_net_state(net, i);
        snprintf(tensors[i].name, sizeof tensors[i].name, "model.%s", pasm_net_state(net, i)->name);
    }
    int64_t counters[C_COUNT] = {ts->epoch, ts->batch_pos, ts->step, ts->best_epoch,
                                 bits(ts->best_accuracy), bits(ts->loss_sum), ts->correct,
                                 ts->seen, sgd->steps};
    int n = n_state;
    tensors[n++] = (pasm_tensor){.name = "train.counters", .dtype = PASM_I64, .ndim = 1,
                                 .shape = {C_COUNT}, .data = counters};
    if (sgd->momentum_buffer)
        tensors[n++] = (pasm_tensor){.name = "sgd.momentum", .dtype = PASM_F32, .ndim = 1,
                                     .shape = {sgd->count}, .data = sgd->momentum_buffer};
    const char *keys[] = {"format", "kind", "args"};
    const char *values[] = {"pasm", "train-state", meta->args_json ? meta->args_json : "{}"};
    pasm_status st = pasm_safetensors_write(path, tensors, n, keys, values, 3);
    free(tensors);
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

pasm_status pasm_train_epoch_files(const char *out_path, pasm_net *net, pasm_sgd *sgd,
                                   const pasm_train_state *ts, const pasm_model_meta *meta,
                                   const pasm_epoch_stats *es) {
    char path[4096];
    pasm_train_sibling(out_path, "last", NULL, path, sizeof path);
    pasm_status st = pasm_checkpoint_save(path, net, meta);
    if (!st && es->is_best) st = pasm_checkpoint_save(out_path, net, meta);
    if (!st) st = append_metrics(out_path, es);
    if (!st) st = pasm_train_state_save(out_path, net, sgd, ts, meta);
    return st;
}
