/* Model metadata: class names, normalisation and run information that travel
 * with a checkpoint, and reading them from a safetensors file. A pasm file
 * carries design.md's __metadata__ keys, each checked against the tensors
 * (width against conv1.weight, classes against fc.weight, ...); a file
 * without them (PyTorch's) has its architecture inferred from tensor shapes
 * and the rest taken from pasm_load_options or defaults. A file that does
 * not say its normalisation loads with n_norm = 0; callers that feed images
 * to the network must then ask for --norm themselves. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "io/checkpoint_internal.h"

static const char *const fer2013_classes[] = {"Angry", "Disgust",  "Fear",   "Happy",
                                              "Sad",   "Surprise", "Neutral"};
static const char *const ferplus_classes[] = {"neutral", "happiness", "surprise", "sadness",
                                              "anger",   "disgust",   "fear",     "contempt"};

/* ------------------------------------------------------- meta basics */

static void free_classes(pasm_model_meta *m) {
    for (int i = 0; m->class_names && i < m->n_classes; i++) free(m->class_names[i]);
    free(m->class_names);
    m->class_names = NULL;
    m->n_classes = 0;
}

void pasm_model_meta_free(pasm_model_meta *m) {
    if (!m) return;
    free_classes(m);
    free(m->args_json);
    memset(m, 0, sizeof *m);
}

/* Takes ownership of names (n malloc'd strings in a malloc'd array). */
static void adopt_classes(pasm_model_meta *m, char **names, int n) {
    free_classes(m);
    m->class_names = names;
    m->n_classes = n;
}

static pasm_status copy_names(const char *const *names, int n, char ***out) {
    char **copy = calloc((size_t)n + 1, sizeof *copy);
    if (!copy) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for %d class names", n);
    for (int i = 0; i < n; i++) {
        copy[i] = strdup(names[i] ? names[i] : "");
        if (!copy[i]) {
            for (int j = 0; j < i; j++) free(copy[j]);
            free(copy);
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory for class names");
        }
    }
    *out = copy;
    return PASM_OK;
}

pasm_status pasm_model_meta_copy(pasm_model_meta *dst, const pasm_model_meta *src) {
    pasm_model_meta tmp = *src;
    tmp.class_names = NULL;
    tmp.args_json = NULL;
    if (src->n_classes > 0) {
        pasm_status st = copy_names((const char *const *)src->class_names, src->n_classes,
                                    &tmp.class_names);
        if (st != PASM_OK) return st;
    }
    if (src->args_json && !(tmp.args_json = strdup(src->args_json))) {
        pasm_model_meta_free(&tmp);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory copying model metadata");
    }
    *dst = tmp;
    return PASM_OK;
}

pasm_status pasm_model_meta_set_classes(pasm_model_meta *m, const char *comma_list) {
    if (!comma_list || !*comma_list)
        return pasm_errorf(PASM_ERR_INVALID, "class list is empty");
    int n = 1;
    for (const char *p = comma_list; *p; p++) n += *p == ',';
    char **names = calloc((size_t)n + 1, sizeof *names);
    if (!names) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for %d class names", n);
    pasm_status st = PASM_OK;
    const char *at = comma_list;
    for (int i = 0; i < n && st == PASM_OK; i++) {
        const char *end = strchr(at, ',');
        if (!end) end = at + strlen(at);
        const char *b = at, *e = end; /* names are trimmed of spaces */
        while (b < e && isspace((unsigned char)*b)) b++;
        while (e > b && isspace((unsigned char)e[-1])) e--;
        if (b == e) st = pasm_errorf(PASM_ERR_INVALID, "class list '%.200s': name %d is empty",
                                     comma_list, i + 1);
        else if (!(names[i] = strndup(b, (size_t)(e - b))))
            st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for class names");
        at = *end ? end + 1 : end;
    }
    if (st != PASM_OK) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        return st;
    }
    adopt_classes(m, names, n);
    return PASM_OK;
}

pasm_status pasm_model_meta_default_classes(pasm_model_meta *m, int k) {
    if (k < 1) return pasm_errorf(PASM_ERR_INVALID, "cannot name %d classes", k);
    char **names = NULL;
    pasm_status st;
    if (k == 7 || k == 8) {
        st = copy_names(k == 7 ? fer2013_classes : ferplus_classes, k, &names);
    } else {
        char label[32];
        const char **generic = calloc((size_t)k, sizeof *generic);
        char *storage = malloc((size_t)k * sizeof label);
        if (!generic || !storage) {
            st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for %d class names", k);
        } else {
            for (int i = 0; i < k; i++) {
                snprintf(storage + (size_t)i * sizeof label, sizeof label, "class%d", i);
                generic[i] = storage + (size_t)i * sizeof label;
            }
            st = copy_names(generic, k, &names);
        }
        free(generic);
        free(storage);
    }
    if (st == PASM_OK) adopt_classes(m, names, k);
    return st;
}

/* ------------------------------------------------------- value parsing */

/* Whole-string decimal integer in [min, max]. */
static int parse_int(const char *s, long long min, long long max, long long *out) {
    const char *p = s;
    if (*p == '-') p++;
    if (!isdigit((unsigned char)*p)) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) return 0;
    *out = v;
    return 1;
}

static int parse_u64(const char *s, uint64_t *out) {
    if (!isdigit((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

/* Comma-separated finite floats; 0 when malformed or more than max. */
static int parse_floats(const char *s, float *out, int max, int *count) {
    int n = 0;
    const char *at = s;
    for (;;) {
        char *end;
        errno = 0;
        float v = strtof(at, &end);
        if (end == at || errno || !isfinite(v) || n == max) return 0;
        out[n++] = v;
        while (isspace((unsigned char)*end)) end++;
        if (*end == 0) break;
        if (*end != ',') return 0;
        at = end + 1;
    }
    *count = n;
    return 1;
}

/* Fills the normalisation from per-channel mean and std lists. A single
 * pair applies to every channel (only for the --norm option). */
static pasm_status set_norm(pasm_model_meta *m, const float *mean, int n_mean, const float *std,
                            int n_std, int allow_broadcast, const char *what) {
    int channels = m->net.in_channels;
    int ok = n_mean == n_std && (n_mean == channels || (allow_broadcast && n_mean == 1));
    if (!ok || channels < 1 || channels > 3)
        return pasm_errorf(PASM_ERR_INVALID,
                           "%s gives %d mean and %d std values for a %d-channel network", what,
                           n_mean, n_std, channels);
    for (int c = 0; c < channels; c++) {
        int i = n_mean == 1 ? 0 : c;
        if (!(std[i] > 0.0f))
            return pasm_errorf(PASM_ERR_INVALID, "%s: std %g is not positive", what, (double)std[i]);
        m->norm_mean[c] = mean[i];
        m->norm_std[c] = std[i];
    }
    m->n_norm = channels;
    return PASM_OK;
}

/* --norm "MEAN,STD" or "m1,m2,m3,s1,s2,s3". */
static pasm_status norm_from_option(pasm_model_meta *m, const char *text) {
    float v[6];
    int n;
    if (!parse_floats(text, v, 6, &n) || n % 2 != 0)
        return pasm_errorf(PASM_ERR_INVALID,
                           "--norm '%.100s' is not MEAN,STD (or three means then three stds)",
                           text);
    return set_norm(m, v, n / 2, v + n / 2, n / 2, 1, "--norm");
}

/* ------------------------------------------------------- reading metadata */

typedef struct {
    const pasm_safetensors *st;
    const char *path;
    pasm_model_meta *meta;
    int64_t width, in_channels, num_classes; /* told by the tensors */
} meta_reader;

static pasm_status required_int(meta_reader *r, const char *key, long long min, long long max,
                                long long *out) {
    const char *text = pasm_safetensors_meta(r->st, key);
    if (!text)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: pasm checkpoint lacks metadata '%s'", r->path,
                           key);
    if (!parse_int(text, min, max, out))
        return pasm_errorf(PASM_ERR_FORMAT, "%s: metadata %s '%.40s' is not an integer in %lld..%lld",
                           r->path, key, text, min, max);
    return PASM_OK;
}

static pasm_status optional_int(meta_reader *r, const char *key, int *out) {
    long long v = 0;
    if (!pasm_safetensors_meta(r->st, key)) return PASM_OK;
    pasm_status st = required_int(r, key, 0, INT_MAX, &v);
    *out = (int)v;
    return st;
}

/* conv1.weight (width, in_channels, 3, 3) and fc.weight (classes, 8 width)
 * tell the architecture; both must be there whatever the metadata says. */
static pasm_status shapes_from_tensors(meta_reader *r) {
    const pasm_tensor *conv1 = pasm_safetensors_find(r->st, "conv1.weight");
    const pasm_tensor *fc = pasm_safetensors_find(r->st, "fc.weight");
    char shape[96];
    if (!conv1 || !fc)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: tensor '%s' is missing; it tells the network's %s (is this a "
                           "ResNet-18 checkpoint?)",
                           r->path, conv1 ? "fc.weight" : "conv1.weight",
                           conv1 ? "number of classes" : "width and input channels");
    if (conv1->ndim != 4 || conv1->shape[0] > INT_MAX || conv1->shape[1] > INT_MAX)
        return pasm_errorf(PASM_ERR_SHAPE,
                           "%s: tensor 'conv1.weight' has shape %s; expected [width, in_channels, "
                           "3, 3]",
                           r->path, pasm_shape_str(conv1, shape, sizeof shape));
    if (fc->ndim != 2 || fc->shape[0] > INT_MAX)
        return pasm_errorf(PASM_ERR_SHAPE,
                           "%s: tensor 'fc.weight' has shape %s; expected [num_classes, features]",
                           r->path, pasm_shape_str(fc, shape, sizeof shape));
    r->width = conv1->shape[0];
    r->in_channels = conv1->shape[1];
    r->num_classes = fc->shape[0];
    return PASM_OK;
}

/* A metadata number that must agree with what a tensor says. */
static pasm_status agree(meta_reader *r, const char *key, long long value, int64_t told,
                         const char *tensor, const char *what) {
    if (value == told) return PASM_OK;
    return pasm_errorf(PASM_ERR_SHAPE, "%s: metadata %s %lld but tensor '%s' has %lld %s", r->path,
                       key, value, tensor, (long long)told, what);
}

static pasm_status read_architecture(meta_reader *r) {
    pasm_net_config *cfg = &r->meta->net;
    long long version, width, channels, classes, size;
    pasm_status st = required_int(r, "format_version", 0, INT_MAX, &version);
    if (st == PASM_OK && version != 1)
        return pasm_errorf(PASM_ERR_UNSUPPORTED,
                           "%s: format_version %lld is not one this pasm reads (1)", r->path,
                           version);
    const char *arch = pasm_safetensors_meta(r->st, "arch");
    if (st == PASM_OK && (!arch || strlen(arch) >= sizeof cfg->arch))
        return pasm_errorf(PASM_ERR_FORMAT, "%s: metadata 'arch' is missing or too long", r->path);
    if (st == PASM_OK) st = required_int(r, "width", 1, INT_MAX, &width);
    if (st == PASM_OK) st = required_int(r, "in_channels", 1, INT_MAX, &channels);
    if (st == PASM_OK) st = required_int(r, "num_classes", 1, INT_MAX, &classes);
    if (st == PASM_OK) st = required_int(r, "input_size", 1, INT_MAX, &size);
    if (st == PASM_OK) st = agree(r, "width", width, r->width, "conv1.weight", "filters");
    if (st == PASM_OK)
        st = agree(r, "in_channels", channels, r->in_channels, "conv1.weight", "input channels");
    if (st == PASM_OK)
        st = agree(r, "num_classes", classes, r->num_classes, "fc.weight", "rows (classes)");
    if (st != PASM_OK) return st;
    strcpy(cfg->arch, arch);
    cfg->width = (int)width;
    cfg->in_channels = (int)channels;
    cfg->num_classes = (int)classes;
    cfg->input_size = (int)size;
    return PASM_OK;
}

static pasm_status read_classes_and_norm(meta_reader *r, const pasm_load_options *opts) {
    pasm_model_meta *m = r->meta;
    const char *classes = pasm_safetensors_meta(r->st, "classes");
    if (!classes)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: pasm checkpoint lacks metadata 'classes'", r->path);
    pasm_status st = pasm_model_meta_set_classes(m, classes);
    if (st != PASM_OK) return pasm_error_prefix(st, "%s: metadata classes", r->path);
    if (m->n_classes != m->net.num_classes)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: metadata classes lists %d names but num_classes is %d",
                           r->path, m->n_classes, m->net.num_classes);
    const char *mean = pasm_safetensors_meta(r->st, "norm_mean");
    const char *std = pasm_safetensors_meta(r->st, "norm_std");
    if (!mean && !std) /* an older or hand-made file: the option may say it */
        return opts && opts->norm ? norm_from_option(m, opts->norm) : PASM_OK;
    float means[3], stds[3];
    int n_mean = 0, n_std = 0;
    if (!mean || !std || !parse_floats(mean, means, 3, &n_mean) ||
        !parse_floats(std, stds, 3, &n_std))
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: metadata norm_mean '%.40s' / norm_std '%.40s' are not lists of "
                           "numbers, one per channel",
                           r->path, mean ? mean : "(missing)", std ? std : "(missing)");
    st = set_norm(m, means, n_mean, stds, n_std, 0, "metadata norm_mean/norm_std");
    return st == PASM_OK ? st : pasm_error_prefix(PASM_ERR_FORMAT, "%s", r->path);
}

static pasm_status read_run_info(meta_reader *r) {
    pasm_model_meta *m = r->meta;
    pasm_status st = optional_int(r, "epoch", &m->epoch);
    if (st == PASM_OK) st = optional_int(r, "round", &m->round);
    if (st != PASM_OK) return st;
    const char *seed = pasm_safetensors_meta(r->st, "seed");
    if (seed && !parse_u64(seed, &m->seed))
        return pasm_errorf(PASM_ERR_FORMAT, "%s: metadata seed '%.40s' is not an unsigned integer",
                           r->path, seed);
    const char *by = pasm_safetensors_meta(r->st, "created_by");
    if (by) snprintf(m->created_by, sizeof m->created_by, "%s", by);
    const char *args = pasm_safetensors_meta(r->st, "args");
    if (!args) return PASM_OK;
    cJSON *parsed = cJSON_Parse(args);
    int valid = parsed != NULL;
    cJSON_Delete(parsed);
    if (!valid)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: metadata args is not valid JSON", r->path);
    m->args_json = strdup(args);
    return m->args_json ? PASM_OK : pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", r->path);
}

/* A file without pasm metadata: architecture from the tensors, the rest from
 * the options or defaults. */
static pasm_status infer_meta(meta_reader *r, const pasm_load_options *opts) {
    pasm_model_meta *m = r->meta;
    if (r->width > INT_MAX || r->in_channels > INT_MAX || r->num_classes > INT_MAX)
        return pasm_errorf(PASM_ERR_SHAPE, "%s: tensor shapes are too large", r->path);
    strcpy(m->net.arch, "resnet18");
    m->net.width = (int)r->width;
    m->net.in_channels = (int)r->in_channels;
    m->net.num_classes = (int)r->num_classes;
    m->net.input_size = opts && opts->input_size > 0 ? opts->input_size : 48;
    pasm_status st;
    if (opts && opts->classes) {
        st = pasm_model_meta_set_classes(m, opts->classes);
        if (st == PASM_OK && m->n_classes != m->net.num_classes)
            st = pasm_errorf(PASM_ERR_INVALID,
                             "--classes names %d classes but tensor 'fc.weight' has %d rows",
                             m->n_classes, m->net.num_classes);
    } else {
        st = pasm_model_meta_default_classes(m, m->net.num_classes);
    }
    if (st == PASM_OK && opts && opts->norm) st = norm_from_option(m, opts->norm);
    return st == PASM_OK ? st : pasm_error_prefix(st, "%s", r->path);
}

pasm_status pasm_checkpoint_read_meta(const pasm_safetensors *st, const pasm_load_options *opts,
                                      pasm_model_meta *meta) {
    memset(meta, 0, sizeof *meta);
    meta_reader r = {.st = st, .path = st->source ? st->source : "checkpoint", .meta = meta};
    pasm_status status = shapes_from_tensors(&r);
    const char *format = pasm_safetensors_meta(st, "format");
    int is_pasm = format && strcmp(format, "pasm") == 0;
    if (status == PASM_OK && is_pasm) {
        status = read_architecture(&r);
        if (status == PASM_OK) status = read_classes_and_norm(&r, opts);
        if (status == PASM_OK) status = read_run_info(&r);
    } else if (status == PASM_OK) {
        status = infer_meta(&r, opts);
    }
    if (status == PASM_OK) {
        status = pasm_net_config_check(&meta->net);
        if (status != PASM_OK) pasm_error_prefix(status, "%s", r.path);
    }
    if (status != PASM_OK) pasm_model_meta_free(meta);
    return status;
}
