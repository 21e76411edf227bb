/* pasm checkpoints: a network's state_dict (torchvision's names and order)
 * plus design.md's string metadata, in one safetensors file written
 * atomically. Loading checks every tensor against the network the metadata
 * (or, for PyTorch files, the tensor shapes) describes: nothing missing,
 * nothing extra, dtypes and shapes exact, values finite. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "io/checkpoint_internal.h"

#define N_META_KEYS 15

/* ------------------------------------------------------------------ save */

/* Blocks of 4096 values are tested branch-free (all exponent bits set:
 * NaN or infinity), a test the compiler vectorises; only a block that has
 * one is searched for it. A plain isfinite loop was an eighth of a width-64
 * checkpoint's save and load. */
static pasm_status check_finite(const char *path, const pasm_tensor *t) {
    if (t->dtype != PASM_F32) return PASM_OK;
    const float *v = t->data;
    const int64_t n = pasm_tensor_numel(t);
    for (int64_t b = 0; b < n; b += 4096) {
        const int64_t e = n - b < 4096 ? n : b + 4096;
        uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
        for (int64_t i = b; i < e; i++) {
            uint32_t u;
            memcpy(&u, &v[i], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        for (int64_t i = b; bad && i < e; i++)
            if (!isfinite(v[i]))
                return pasm_errorf(PASM_ERR_NUMERIC, "%s: tensor '%s' holds %s at element %lld",
                                   path, t->name, isnan(v[i]) ? "NaN" : "an infinite value",
                                   (long long)i);
    }
    return PASM_OK;
}

/* "a,b,c" from the class names; names may not contain commas. */
static pasm_status join_classes(const char *path, const pasm_model_meta *meta, char **out) {
    size_t len = 1;
    for (int i = 0; i < meta->n_classes; i++) {
        const char *name = meta->class_names[i];
        if (!name || !*name || strchr(name, ','))
            return pasm_errorf(PASM_ERR_INVALID, "%s: class name %d '%s' is empty or has a comma",
                               path, i, name ? name : "");
        len += strlen(name) + 1;
    }
    char *text = malloc(len);
    if (!text) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", path);
    text[0] = 0;
    for (int i = 0; i < meta->n_classes; i++) {
        if (i) strcat(text, ",");
        strcat(text, meta->class_names[i]);
    }
    *out = text;
    return PASM_OK;
}

static void format_floats(char *buf, size_t len, const float *v, int n) {
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < n && at < len; i++) /* %.9g: floats read back exactly */
        at += (size_t)snprintf(buf + at, len - at, i ? ",%.9g" : "%.9g", (double)v[i]);
}

/* The metadata strings live in this struct while the file is written. */
typedef struct {
    const char *keys[N_META_KEYS], *values[N_META_KEYS];
    int n;
    char width[16], in_channels[16], num_classes[16], input_size[16];
    char norm_mean[64], norm_std[64], epoch[16], seed[24], round[16];
    char *classes;
} meta_strings;

static void add(meta_strings *s, const char *key, const char *value) {
    s->keys[s->n] = key;
    s->values[s->n++] = value;
}

static pasm_status check_save_meta(const char *path, const pasm_net_config *cfg,
                                   const pasm_model_meta *meta) {
    if (meta->n_classes != cfg->num_classes)
        return pasm_errorf(PASM_ERR_INVALID, "%s: %d class names for a network with %d classes",
                           path, meta->n_classes, cfg->num_classes);
    if (meta->n_norm != 0 && meta->n_norm != cfg->in_channels)
        return pasm_errorf(PASM_ERR_INVALID,
                           "%s: normalisation for %d channels, network has %d input channels", path,
                           meta->n_norm, cfg->in_channels);
    if (meta->args_json) {
        cJSON *args = cJSON_Parse(meta->args_json);
        int valid = args != NULL;
        cJSON_Delete(args);
        if (!valid) return pasm_errorf(PASM_ERR_INVALID, "%s: args is not valid JSON", path);
    }
    return PASM_OK;
}

/* design.md's keys, in its order. The architecture comes from the network
 * itself, not from meta->net, so the two can never disagree in a file. */
static pasm_status build_meta(const char *path, const pasm_net_config *cfg,
                              const pasm_model_meta *meta, meta_strings *s) {
    pasm_status st = check_save_meta(path, cfg, meta);
    if (st == PASM_OK) st = join_classes(path, meta, &s->classes);
    if (st != PASM_OK) return st;
    snprintf(s->width, sizeof s->width, "%d", cfg->width);
    snprintf(s->in_channels, sizeof s->in_channels, "%d", cfg->in_channels);
    snprintf(s->num_classes, sizeof s->num_classes, "%d", cfg->num_classes);
    snprintf(s->input_size, sizeof s->input_size, "%d", cfg->input_size);
    snprintf(s->epoch, sizeof s->epoch, "%d", meta->epoch);
    snprintf(s->seed, sizeof s->seed, "%llu", (unsigned long long)meta->seed);
    snprintf(s->round, sizeof s->round, "%d", meta->round);
    add(s, "format", "pasm");
    add(s, "format_version", "1");
    add(s, "arch", cfg->arch);
    add(s, "width", s->width);
    add(s, "in_channels", s->in_channels);
    add(s, "num_classes", s->num_classes);
    add(s, "input_size", s->input_size);
    add(s, "classes", s->classes);
    if (meta->n_norm > 0) { /* unknown normalisation is left out, not invented */
        format_floats(s->norm_mean, sizeof s->norm_mean, meta->norm_mean, meta->n_norm);
        format_floats(s->norm_std, sizeof s->norm_std, meta->norm_std, meta->n_norm);
        add(s, "norm_mean", s->norm_mean);
        add(s, "norm_std", s->norm_std);
    }
    add(s, "epoch", s->epoch);
    add(s, "seed", s->seed);
    add(s, "round", s->round);
    add(s, "created_by", "pasm " PASM_VERSION);
    if (meta->args_json) add(s, "args", meta->args_json);
    return PASM_OK;
}

pasm_status pasm_checkpoint_save_tensors(const char *path, const pasm_net_config *cfg,
                                         const pasm_tensor *tensors, int n,
                                         const pasm_model_meta *meta) {
    if (!path || !cfg || !meta || (n > 0 && !tensors))
        return pasm_errorf(PASM_ERR_INVALID, "checkpoint save: NULL argument");
    meta_strings strings = {0};
    pasm_status st = build_meta(path, cfg, meta, &strings);
    for (int i = 0; i < n && st == PASM_OK; i++) st = check_finite(path, &tensors[i]);
    if (st == PASM_OK)
        st = pasm_safetensors_write(path, tensors, n, strings.keys, strings.values, strings.n);
    free(strings.classes);
    return st;
}

pasm_status pasm_checkpoint_save(const char *path, pasm_net *net, const pasm_model_meta *meta) {
    if (!path || !net || !meta) return pasm_errorf(PASM_ERR_INVALID, "checkpoint save: NULL argument");
    int n = pasm_net_n_state(net);
    pasm_tensor *tensors = malloc((size_t)(n > 0 ? n : 1) * sizeof *tensors);
    if (!tensors) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) tensors[i] = *pasm_net_state(net, i);
    pasm_status st = pasm_checkpoint_save_tensors(path, pasm_net_get_config(net), tensors, n, meta);
    free(tensors);
    return st;
}

/* ------------------------------------------------------------------ load */

/* Same dims; a PyTorch num_batches_tracked is a 0-dim scalar where a
 * network may hold [1], so one-element shapes of at most 1 dim match. */
static int same_shape(const pasm_tensor *want, const pasm_tensor *got) {
    if (want->ndim <= 1 && got->ndim <= 1 && pasm_tensor_numel(want) == 1 &&
        pasm_tensor_numel(got) == 1)
        return 1;
    if (want->ndim != got->ndim) return 0;
    for (int d = 0; d < want->ndim; d++)
        if (want->shape[d] != got->shape[d]) return 0;
    return 1;
}

static pasm_status copy_tensor(const char *path, const pasm_net_config *cfg, pasm_tensor *want,
                               const pasm_tensor *got) {
    char want_shape[96], got_shape[96];
    if (got->dtype != want->dtype)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: tensor '%s' has dtype %s; expected %s", path,
                           want->name, pasm_dtype_name(got->dtype), pasm_dtype_name(want->dtype));
    if (!same_shape(want, got))
        return pasm_errorf(PASM_ERR_SHAPE,
                           "%s: tensor '%s' has shape %s; the network (%s width %d, %d input "
                           "channels, %d classes) expects %s",
                           path, want->name, pasm_shape_str(got, got_shape, sizeof got_shape),
                           cfg->arch, cfg->width, cfg->in_channels, cfg->num_classes,
                           pasm_shape_str(want, want_shape, sizeof want_shape));
    pasm_status st = check_finite(path, got);
    if (st == PASM_OK) memcpy(want->data, got->data, pasm_tensor_bytes(want));
    return st;
}

pasm_status pasm_checkpoint_fill_net(const pasm_safetensors *st, pasm_net *net) {
    const char *path = st->source ? st->source : "checkpoint";
    const pasm_net_config *cfg = pasm_net_get_config(net);
    int n = pasm_net_n_state(net), missing = 0;
    const char *first_missing = NULL;
    for (int i = 0; i < n; i++) {
        pasm_tensor *want = pasm_net_state(net, i);
        const pasm_tensor *got = pasm_safetensors_find(st, want->name);
        if (!got) {
            if (!missing++) first_missing = want->name;
            continue;
        }
        pasm_status status = copy_tensor(path, cfg, want, got);
        if (status != PASM_OK) return status;
    }
    if (missing)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: tensor '%s' is missing (%d of %d expected tensors "
                           "are missing)",
                           path, first_missing, missing, n);
    int extra = 0;
    const char *first_extra = NULL;
    for (int i = 0; i < st->n_tensors; i++)
        if (!pasm_net_find(net, st->tensors[i].name) && !extra++) first_extra = st->tensors[i].name;
    if (extra)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: unexpected tensor '%s' (%d tensors the %s network does not have)",
                           path, first_extra, extra, cfg->arch);
    return PASM_OK;
}

pasm_status pasm_checkpoint_load(const char *path, const pasm_load_options *opts, int max_batch,
                                 pasm_net **net, pasm_model_meta *meta) {
    return pasm_checkpoint_load_mode(path, opts, max_batch, PASM_NET_TRAIN, net, meta);
}

pasm_status pasm_checkpoint_load_mode(const char *path, const pasm_load_options *opts,
                                      int max_batch, pasm_net_mode mode, pasm_net **net,
                                      pasm_model_meta *meta) {
    *net = NULL;
    memset(meta, 0, sizeof *meta);
    pasm_safetensors file;
    pasm_net *built = NULL;
    pasm_status st = pasm_safetensors_read(path, &file);
    if (st != PASM_OK) return st;
    st = pasm_checkpoint_read_meta(&file, opts, meta);
    if (st == PASM_OK) {
        meta->net.precision = opts ? opts->precision : 0;
        meta->net.device = opts ? opts->device : 0;
        st = pasm_net_create_mode(&built, &meta->net, max_batch, mode);
        if (st != PASM_OK) {
            built = NULL; /* create owns its partial work */
            pasm_error_prefix(st, "%s", path);
        }
    }
    if (st == PASM_OK) st = pasm_checkpoint_fill_net(&file, built);
    if (st == PASM_OK) {
        *net = built;
    } else {
        if (built) pasm_net_free(built);
        pasm_model_meta_free(meta);
    }
    pasm_safetensors_free(&file);
    return st;
}
