/* Helpers the PASM commands share: training/validation data loaded the way
 * pasm train loads it (so a round validates on what the baseline did) and
 * a checkpoint's accuracy on a split, with and without flip TTA. */
#include "cli/pasm_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_load_train_val(const char *cmd, const char *data, const char *split, const char *val_data,
                       const char *val_split, double val_fraction, uint64_t seed,
                       const pasm_model_meta *meta, pasm_dataset *train, pasm_dataset *val,
                       int *held_out, int **train_idx, int *n_train) {
    *held_out = 0;
    *train_idx = NULL;
    *n_train = 0;
    memset(val, 0, sizeof *val);
    int rc = cli_load_data_for_model(cmd, data, split, meta, 0, train);
    if (rc) return rc;
    const char *vpath = val_data && val_data[0] ? val_data : data;
    pasm_load_spec spec = {.path = vpath, .split = val_split, .input_size = meta->net.input_size,
                           .channels = meta->net.in_channels};
    pasm_status st = cli_dataset_load(&spec, val);
    if (!st && val->n > 0 && !cli_same_images(train, val)) {
        st = pasm_dataset_match_classes(val, (const char *const *)meta->class_names,
                                        meta->n_classes, 0, NULL);
        if (st) {
            pasm_dataset_free(train);
            pasm_dataset_free(val);
            return cli_fail(cmd, st);
        }
        return EXIT_OK;
    }
    if (st && val_data && val_data[0]) {
        pasm_dataset_free(train);
        return cli_fail(cmd, st);
    }
    if (!st) pasm_dataset_free(val);
    /* no validation split: the same held-out share pasm train takes */
    int *vidx = NULL, n_val = 0;
    st = pasm_dataset_split_indices(train, val_fraction, seed, train_idx, n_train, &vidx, &n_val);
    if (!st) st = pasm_dataset_subset(train, vidx, n_val, val);
    free(vidx);
    if (st) {
        free(*train_idx);
        *train_idx = NULL;
        pasm_dataset_free(train);
        return cli_fail(cmd, st);
    }
    *held_out = 1;
    return EXIT_OK;
}

/* One split's accuracy without and with flip TTA into *out (count 0 when the
 * data has no such split). */
static pasm_status eval_one(pasm_net *net, const pasm_model_meta *meta, const char *data,
                            const char *split, cli_split_accuracy *out) {
    memset(out, 0, sizeof *out);
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    pasm_load_spec spec = {.path = data, .split = split, .input_size = meta->net.input_size,
                           .channels = meta->net.in_channels};
    pasm_status st = cli_dataset_load(&spec, &ds);
    if (st || ds.n == 0 || !ds.labelled) { /* the data has no such split */
        pasm_clear_error();
        pasm_dataset_free(&ds);
        return PASM_OK;
    }
    st = pasm_dataset_match_classes(&ds, (const char *const *)meta->class_names, meta->n_classes,
                                    1, NULL);
    for (int tta = 0; tta < 2 && !st; tta++) {
        pasm_metrics m;
        if ((st = pasm_metrics_init(&m, meta->n_classes))) break;
        st = pasm_evaluate(net, &ds, meta->norm_mean, meta->norm_std, tta, &m, NULL, NULL, NULL);
        *(tta ? &out->accuracy_tta : &out->accuracy) = pasm_metrics_accuracy(&m);
        pasm_metrics_free(&m);
    }
    if (!st) out->count = ds.n;
    pasm_dataset_free(&ds);
    return st;
}

int cli_eval_splits(const char *cmd, const char *model, const cli_model_options *mo, int n,
                    const char *const *data, const char *const *split, cli_split_accuracy *out) {
    memset(out, 0, (size_t)n * sizeof *out);
    pasm_net *net = NULL;
    pasm_model_meta meta;
    int rc = cli_load_model(cmd, model, mo, 256, PASM_NET_EVAL, &net, &meta);
    if (rc) return rc;
    pasm_status st = PASM_OK;
    for (int i = 0; i < n && !st; i++) st = eval_one(net, &meta, data[i], split[i], &out[i]);
    pasm_model_meta_free(&meta);
    pasm_net_free(net);
    return st ? cli_fail(cmd, st) : EXIT_OK;
}
