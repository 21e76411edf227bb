/* Checkpoint tests: save/load round trips, PyTorch-style files without
 * metadata (architecture inferred from shapes), and every way a checkpoint
 * can disagree with the network: each must fail naming the file, the tensor
 * and the problem. Networks are width 16 at 32x32 to keep this fast. */
#include "util/helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint_internal.h"
#include "pasm/pasm.h"

static char scratch[256];
static pasm_net *net;           /* the reference network, seeded */
static pasm_model_meta ref;     /* its metadata */
static char good_path[300];     /* saved once per run */
static pasm_safetensors good;   /* good_path, parsed: tensors and metadata to edit */

static const char *scratch_path(const char *name) {
    static char path[400];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    return path;
}

static void assert_error_has(const char *part) {
    if (!strstr(pasm_last_error(), part)) {
        print_error("error message \"%s\" lacks \"%s\"\n", pasm_last_error(), part);
        fail();
    }
}

static int setup(void **state) {
    (void)state;
    test_tmpdir(scratch, sizeof scratch);
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 7,
                           .input_size = 32};
    if (pasm_net_create(&net, &cfg, 2) != PASM_OK) return -1;
    pasm_net_init(net, 42);
    /* Make the BN statistics and counters non-trivial so copies are checked. */
    for (int i = 0; i < pasm_net_n_state(net); i++) {
        pasm_tensor *t = pasm_net_state(net, i);
        if (t->dtype == PASM_I64) *(int64_t *)t->data = 1000 + i;
        else if (strstr(t->name, "running_"))
            for (int64_t j = 0; j < pasm_tensor_numel(t); j++) ((float *)t->data)[j] = 0.5f + j;
    }
    ref.net = cfg;
    if (pasm_model_meta_default_classes(&ref, 7) != PASM_OK) return -1;
    ref.n_norm = 1;
    ref.norm_mean[0] = 0.50784314f;
    ref.norm_std[0] = 0.2550f;
    ref.epoch = 12;
    ref.seed = 18446744073709551615ull;
    ref.round = 2;
    ref.args_json = strdup("{\"lr\":0.1,\"note\":\"a \\\"quoted\\\" word\"}");
    snprintf(good_path, sizeof good_path, "%s/good.safetensors", scratch);
    if (pasm_checkpoint_save(good_path, net, &ref) != PASM_OK) return -1;
    return pasm_safetensors_read(good_path, &good) == PASM_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    pasm_safetensors_free(&good);
    pasm_model_meta_free(&ref);
    pasm_net_free(net);
    test_rmdir(scratch);
    return 0;
}

/* ---- building variants of the good file ---- */

typedef struct {
    pasm_tensor tensors[160];
    int n_tensors;
    const char *keys[32], *values[32];
    int n_meta;
} variant;

static void variant_from_good(variant *v) {
    memset(v, 0, sizeof *v);
    assert_true(good.n_tensors <= 150);
    memcpy(v->tensors, good.tensors, (size_t)good.n_tensors * sizeof *good.tensors);
    v->n_tensors = good.n_tensors;
    for (int i = 0; i < good.n_meta; i++) {
        v->keys[i] = good.meta_keys[i];
        v->values[i] = good.meta_values[i];
    }
    v->n_meta = good.n_meta;
}

/* Sets (or with value NULL removes) a metadata key. */
static void variant_meta(variant *v, const char *key, const char *value) {
    for (int i = 0; i < v->n_meta; i++) {
        if (strcmp(v->keys[i], key) != 0) continue;
        if (value) {
            v->values[i] = value;
        } else {
            memmove(&v->keys[i], &v->keys[i + 1], (size_t)(v->n_meta - i - 1) * sizeof(char *));
            memmove(&v->values[i], &v->values[i + 1], (size_t)(v->n_meta - i - 1) * sizeof(char *));
            v->n_meta--;
        }
        return;
    }
    if (value) {
        v->keys[v->n_meta] = key;
        v->values[v->n_meta++] = value;
    }
}

static pasm_tensor *variant_tensor(variant *v, const char *name) {
    for (int i = 0; i < v->n_tensors; i++)
        if (strcmp(v->tensors[i].name, name) == 0) return &v->tensors[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

static void variant_drop(variant *v, const char *name) {
    pasm_tensor *t = variant_tensor(v, name);
    int i = (int)(t - v->tensors);
    memmove(t, t + 1, (size_t)(v->n_tensors - i - 1) * sizeof *t);
    v->n_tensors--;
}

static const char *variant_write(const variant *v, const char *name) {
    const char *path = scratch_path(name);
    assert_int_equal(pasm_safetensors_write(path, v->tensors, v->n_tensors, v->keys, v->values,
                                            v->n_meta),
                     PASM_OK);
    return path;
}

/* Loads path expecting failure with status want and each given part. */
static void expect_load_fails(const char *path, const pasm_load_options *opts, pasm_status want,
                              const char *part1, const char *part2) {
    pasm_net *loaded = (pasm_net *)1;
    pasm_model_meta meta;
    pasm_clear_error();
    pasm_status got = pasm_checkpoint_load(path, opts, 1, &loaded, &meta);
    if (got != want) print_error("status %d: %s\n", got, pasm_last_error());
    assert_int_equal(got, want);
    assert_null(loaded);
    assert_null(meta.class_names);
    assert_error_has(path);
    if (part1) assert_error_has(part1);
    if (part2) assert_error_has(part2);
}

static void assert_same_state(pasm_net *a, pasm_net *b) {
    assert_int_equal(pasm_net_n_state(a), pasm_net_n_state(b));
    for (int i = 0; i < pasm_net_n_state(a); i++) {
        pasm_tensor *x = pasm_net_state(a, i), *y = pasm_net_state(b, i);
        assert_string_equal(x->name, y->name);
        assert_int_equal(pasm_tensor_bytes(x), pasm_tensor_bytes(y));
        assert_memory_equal(x->data, y->data, pasm_tensor_bytes(x)); /* bit-exact */
    }
}

/* ---- round trips ---- */

static void test_save_load_round_trip(void **state) {
    (void)state;
    pasm_net *loaded;
    pasm_model_meta meta;
    assert_int_equal(pasm_checkpoint_load(good_path, NULL, 3, &loaded, &meta), PASM_OK);
    assert_same_state(net, loaded);
    assert_int_equal(pasm_net_max_batch(loaded), 3);
    assert_string_equal(meta.net.arch, "resnet18");
    assert_int_equal(meta.net.width, 16);
    assert_int_equal(meta.net.in_channels, 1);
    assert_int_equal(meta.net.num_classes, 7);
    assert_int_equal(meta.net.input_size, 32);
    assert_int_equal(meta.n_classes, 7);
    assert_string_equal(meta.class_names[0], "Angry");
    assert_string_equal(meta.class_names[6], "Neutral");
    assert_int_equal(meta.n_norm, 1);
    assert_true(meta.norm_mean[0] == ref.norm_mean[0]); /* exact: %.9g round trip */
    assert_true(meta.norm_std[0] == ref.norm_std[0]);
    assert_int_equal(meta.epoch, 12);
    assert_true(meta.seed == ref.seed);
    assert_int_equal(meta.round, 2);
    assert_string_equal(meta.created_by, "pasm " PASM_VERSION);
    assert_string_equal(meta.args_json, ref.args_json);
    pasm_model_meta_free(&meta);
    pasm_net_free(loaded);
}

static void test_file_layout(void **state) {
    (void)state;
    /* design.md's keys in order; tensors in state_dict order. */
    const char *keys[] = {"format", "format_version", "arch",  "width",     "in_channels",
                          "num_classes", "input_size", "classes", "norm_mean", "norm_std",
                          "epoch",  "seed",          "round", "created_by", "args"};
    assert_int_equal(good.n_meta, 15);
    for (int i = 0; i < 15; i++) assert_string_equal(good.meta_keys[i], keys[i]);
    assert_string_equal(pasm_safetensors_meta(&good, "classes"),
                        "Angry,Disgust,Fear,Happy,Sad,Surprise,Neutral");
    assert_string_equal(pasm_safetensors_meta(&good, "seed"), "18446744073709551615");
    assert_int_equal(good.n_tensors, pasm_net_n_state(net));
    for (int i = 0; i < good.n_tensors; i++)
        assert_string_equal(good.tensors[i].name, pasm_net_state(net, i)->name);
    const pasm_tensor *counter = pasm_safetensors_find(&good, "bn1.num_batches_tracked");
    assert_int_equal(counter->dtype, PASM_I64);
    assert_int_equal(counter->ndim, 0); /* PyTorch's scalar shape [] */
}

/* A file PyTorch wrote: the same tensors, no metadata. */
static void test_pytorch_file_without_metadata(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    v.n_meta = 0;
    /* PyTorch may also store a scalar as [1]: both are accepted. */
    variant_tensor(&v, "layer1.0.bn1.num_batches_tracked")->ndim = 1;
    variant_tensor(&v, "layer1.0.bn1.num_batches_tracked")->shape[0] = 1;
    const char *path = variant_write(&v, "torch.safetensors");

    pasm_net *loaded;
    pasm_model_meta meta;
    assert_int_equal(pasm_checkpoint_load(path, NULL, 1, &loaded, &meta), PASM_OK);
    assert_same_state(net, loaded);
    assert_int_equal(meta.net.width, 16);
    assert_int_equal(meta.net.input_size, 48); /* the default */
    assert_string_equal(meta.class_names[3], "Happy");
    assert_int_equal(meta.n_norm, 0); /* unknown: callers must ask for --norm */
    assert_null(meta.args_json);
    pasm_model_meta_free(&meta);
    pasm_net_free(loaded);

    pasm_load_options opts = {.input_size = 40, .classes = "a, b,c,d,e,f , g", .norm = "0.5,0.25"};
    assert_int_equal(pasm_checkpoint_load(path, &opts, 1, &loaded, &meta), PASM_OK);
    assert_int_equal(meta.net.input_size, 40);
    assert_string_equal(meta.class_names[1], "b");
    assert_string_equal(meta.class_names[5], "f");
    assert_int_equal(meta.n_norm, 1);
    assert_true(meta.norm_mean[0] == 0.5f && meta.norm_std[0] == 0.25f);
    pasm_model_meta_free(&meta);
    pasm_net_free(loaded);

    opts.classes = "a,b";
    expect_load_fails(path, &opts, PASM_ERR_INVALID, "--classes names 2 classes",
                      "'fc.weight' has 7 rows");
    opts.classes = NULL;
    opts.norm = "0.5";
    expect_load_fails(path, &opts, PASM_ERR_INVALID, "--norm '0.5' is not MEAN,STD", NULL);
    opts.norm = "0.5,0,1";
    expect_load_fails(path, &opts, PASM_ERR_INVALID, "--norm", NULL);
    opts.norm = "0.5,-0.2";
    expect_load_fails(path, &opts, PASM_ERR_INVALID, "std -0.2 is not positive", NULL);
}

/* A 3-channel, 8-class network without metadata: FER+ names, per-channel norm. */
static void test_inferred_rgb_ferplus(void **state) {
    (void)state;
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 3, .num_classes = 8,
                           .input_size = 32};
    pasm_net *rgb;
    assert_int_equal(pasm_net_create(&rgb, &cfg, 1), PASM_OK);
    pasm_net_init(rgb, 7);
    int n = pasm_net_n_state(rgb);
    pasm_tensor *tensors = calloc((size_t)n, sizeof *tensors);
    for (int i = 0; i < n; i++) tensors[i] = *pasm_net_state(rgb, i);
    const char *path = scratch_path("rgb.safetensors");
    assert_int_equal(pasm_safetensors_write(path, tensors, n, NULL, NULL, 0), PASM_OK);
    free(tensors);

    pasm_load_options opts = {.norm = "0.1,0.2,0.3,0.4,0.5,0.6"};
    pasm_net *loaded;
    pasm_model_meta meta;
    assert_int_equal(pasm_checkpoint_load(path, &opts, 1, &loaded, &meta), PASM_OK);
    assert_same_state(rgb, loaded);
    assert_int_equal(meta.net.in_channels, 3);
    assert_int_equal(meta.n_classes, 8);
    assert_string_equal(meta.class_names[0], "neutral");
    assert_string_equal(meta.class_names[7], "contempt");
    assert_int_equal(meta.n_norm, 3);
    assert_true(meta.norm_mean[2] == 0.3f && meta.norm_std[0] == 0.4f);
    pasm_model_meta_free(&meta);
    pasm_net_free(loaded);
    opts.norm = "0.1,0.2,0.3,0.4"; /* 2+2 values for 3 channels */
    expect_load_fails(path, &opts, PASM_ERR_INVALID, "--norm gives 2 mean and 2 std values",
                      "3-channel");
    pasm_net_free(rgb);
}

/* ---- corrupt or mismatched checkpoints ---- */

static void test_missing_tensor(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    variant_drop(&v, "layer1.0.conv1.weight");
    variant_drop(&v, "layer4.1.bn2.bias");
    const char *path = variant_write(&v, "missing.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "tensor 'layer1.0.conv1.weight' is missing",
                      "2 of ");
    variant_from_good(&v);
    variant_drop(&v, "conv1.weight");
    path = variant_write(&v, "noconv1.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "tensor 'conv1.weight' is missing",
                      "width and input channels");
}

static void test_shape_mismatch(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    pasm_tensor *t = variant_tensor(&v, "layer2.0.conv1.weight"); /* [32, 16, 3, 3] */
    t->shape[0] = 16;
    t->shape[1] = 32;
    const char *path = variant_write(&v, "shape.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_SHAPE,
                      "tensor 'layer2.0.conv1.weight' has shape [16, 32, 3, 3]",
                      "expects [32, 16, 3, 3]");

    /* torchvision's own resnet18 stem (7x7) is not this network. */
    variant_from_good(&v);
    static float stem[16 * 49];
    pasm_tensor *conv1 = variant_tensor(&v, "conv1.weight");
    conv1->shape[2] = conv1->shape[3] = 7;
    conv1->data = stem;
    path = variant_write(&v, "stem7.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_SHAPE, "tensor 'conv1.weight' has shape [16, 1, 7, 7]",
                      "expects [16, 1, 3, 3]");

    /* A width no network has. */
    variant_from_good(&v);
    v.n_meta = 0;
    static float wide[24 * 9];
    conv1 = variant_tensor(&v, "conv1.weight");
    conv1->shape[0] = 24;
    conv1->data = wide;
    path = variant_write(&v, "width24.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_INVALID, "width 24 is not one of 16, 32, 64", NULL);
}

static void test_dtype_mismatch(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    static int64_t as_i64[16];
    pasm_tensor *t = variant_tensor(&v, "bn1.running_mean");
    t->dtype = PASM_I64;
    t->data = as_i64;
    const char *path = variant_write(&v, "dtype.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "tensor 'bn1.running_mean' has dtype I64",
                      "expected F32");
}

static void test_metadata_contradicts_tensors(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    variant_meta(&v, "width", "32");
    const char *path = variant_write(&v, "meta-width.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_SHAPE, "metadata width 32",
                      "tensor 'conv1.weight' has 16 filters");

    variant_from_good(&v);
    variant_meta(&v, "num_classes", "8");
    path = variant_write(&v, "meta-classes.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_SHAPE, "metadata num_classes 8",
                      "tensor 'fc.weight' has 7 rows");

    variant_from_good(&v);
    variant_meta(&v, "in_channels", "3");
    path = variant_write(&v, "meta-channels.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_SHAPE, "metadata in_channels 3",
                      "has 1 input channels");

    variant_from_good(&v);
    variant_meta(&v, "classes", "a,b,c");
    path = variant_write(&v, "meta-names.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "metadata classes lists 3 names",
                      "num_classes is 7");

    variant_from_good(&v);
    variant_meta(&v, "norm_mean", "0.5,0.5,0.5");
    variant_meta(&v, "norm_std", "0.2,0.2,0.2");
    path = variant_write(&v, "meta-norm.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "norm_mean/norm_std gives 3 mean", "1-channel");
}

static void test_bad_metadata_values(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    variant_meta(&v, "width", "sixteen");
    const char *path = variant_write(&v, "meta-word.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "metadata width 'sixteen' is not an integer",
                      NULL);

    variant_from_good(&v);
    variant_meta(&v, "format_version", "2");
    path = variant_write(&v, "meta-version.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_UNSUPPORTED, "format_version 2", NULL);

    variant_from_good(&v);
    variant_meta(&v, "input_size", NULL);
    path = variant_write(&v, "meta-nosize.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "lacks metadata 'input_size'", NULL);

    variant_from_good(&v);
    variant_meta(&v, "args", "{not json");
    path = variant_write(&v, "meta-args.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "metadata args is not valid JSON", NULL);

    variant_from_good(&v);
    variant_meta(&v, "seed", "-1");
    path = variant_write(&v, "meta-seed.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "metadata seed '-1'", NULL);

    variant_from_good(&v);
    variant_meta(&v, "norm_std", NULL);
    path = variant_write(&v, "meta-halfnorm.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "norm_std '(missing)'", NULL);
}

static void test_missing_norm_is_not_an_error(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    variant_meta(&v, "norm_mean", NULL);
    variant_meta(&v, "norm_std", NULL);
    const char *path = variant_write(&v, "nonorm.safetensors");
    pasm_net *loaded;
    pasm_model_meta meta;
    assert_int_equal(pasm_checkpoint_load(path, NULL, 1, &loaded, &meta), PASM_OK);
    assert_int_equal(meta.n_norm, 0);
    pasm_model_meta_free(&meta);
    pasm_net_free(loaded);
    pasm_load_options opts = {.norm = "0.4,0.3"}; /* the option fills the gap */
    assert_int_equal(pasm_checkpoint_load(path, &opts, 1, &loaded, &meta), PASM_OK);
    assert_int_equal(meta.n_norm, 1);
    assert_true(meta.norm_mean[0] == 0.4f);
    pasm_model_meta_free(&meta);
    pasm_net_free(loaded);
}

static void test_unexpected_tensor(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    static float extra[4];
    pasm_tensor *t = &v.tensors[v.n_tensors++];
    memset(t, 0, sizeof *t);
    strcpy(t->name, "fc2.weight");
    t->dtype = PASM_F32;
    t->ndim = 1;
    t->shape[0] = 4;
    t->data = extra;
    const char *path = variant_write(&v, "extra.safetensors");
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "unexpected tensor 'fc2.weight'", "1 tensors");
}

static void test_non_finite_weights(void **state) {
    (void)state;
    variant v;
    variant_from_good(&v);
    pasm_tensor *t = variant_tensor(&v, "layer3.1.conv2.weight");
    static float poisoned[64 * 64 * 9];
    const int64_t n = pasm_tensor_numel(t);
    assert_true(n <= 64 * 64 * 9 && n > 4097);
    const void *clean = t->data;
    t->data = poisoned;
    /* the first element, each side of the checker's 4096-value blocks, the last */
    const int64_t at[] = {0, 5, 4095, 4096, n - 1};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        memcpy(poisoned, clean, pasm_tensor_bytes(t));
        poisoned[at[k]] = k % 2 ? NAN : -INFINITY;
        const char *path = variant_write(&v, "nan.safetensors");
        char where[64];
        snprintf(where, sizeof where, "at element %lld", (long long)at[k]);
        expect_load_fails(path, NULL, PASM_ERR_NUMERIC,
                          k % 2 ? "tensor 'layer3.1.conv2.weight' holds NaN"
                                : "tensor 'layer3.1.conv2.weight' holds an infinite value",
                          where);
    }
}

static void test_truncated_checkpoint(void **state) {
    (void)state;
    unsigned char *data;
    size_t size;
    assert_int_equal(pasm_read_file(good_path, &data, &size), PASM_OK);
    const char *path = scratch_path("truncated.safetensors");
    assert_int_equal(pasm_write_file_atomic(path, data, size - 100), PASM_OK);
    free(data);
    expect_load_fails(path, NULL, PASM_ERR_FORMAT, "tensor 'fc.weight'", "outside the data block");
    expect_load_fails(scratch_path("absent.safetensors"), NULL, PASM_ERR_IO, "cannot open", NULL);
}

/* ---- saving ---- */

static void test_save_rejects_bad_meta(void **state) {
    (void)state;
    const char *path = scratch_path("rejected.safetensors");
    pasm_model_meta meta;
    assert_int_equal(pasm_model_meta_copy(&meta, &ref), PASM_OK);
    assert_int_equal(pasm_model_meta_default_classes(&meta, 5), PASM_OK);
    assert_int_equal(pasm_checkpoint_save(path, net, &meta), PASM_ERR_INVALID);
    assert_error_has("5 class names for a network with 7 classes");
    assert_int_equal(pasm_model_meta_set_classes(&meta, "a,b,c,d,e,f,g"), PASM_OK);
    meta.n_norm = 3;
    assert_int_equal(pasm_checkpoint_save(path, net, &meta), PASM_ERR_INVALID);
    assert_error_has("normalisation for 3 channels");
    meta.n_norm = 1;
    free(meta.args_json);
    meta.args_json = strdup("{oops");
    assert_int_equal(pasm_checkpoint_save(path, net, &meta), PASM_ERR_INVALID);
    assert_error_has("args is not valid JSON");
    assert_int_equal(access(path, F_OK), -1);

    /* NaN weights are refused rather than written into an unloadable file. */
    free(meta.args_json);
    meta.args_json = NULL;
    float *w = pasm_net_find(net, "fc.bias")->data, saved = w[1];
    w[1] = INFINITY;
    assert_int_equal(pasm_checkpoint_save(path, net, &meta), PASM_ERR_NUMERIC);
    assert_error_has("tensor 'fc.bias' holds an infinite value at element 1");
    w[1] = saved;
    assert_int_equal(access(path, F_OK), -1);
    /* Without args or norm the keys are left out and the file still loads. */
    meta.n_norm = 0;
    assert_int_equal(pasm_checkpoint_save(path, net, &meta), PASM_OK);
    pasm_net *loaded;
    pasm_model_meta back;
    assert_int_equal(pasm_checkpoint_load(path, NULL, 1, &loaded, &back), PASM_OK);
    assert_int_equal(back.n_norm, 0);
    assert_null(back.args_json);
    assert_string_equal(back.class_names[6], "g");
    pasm_model_meta_free(&back);
    pasm_net_free(loaded);
    pasm_model_meta_free(&meta);
}

/* ---- metadata helpers ---- */

static void test_meta_helpers(void **state) {
    (void)state;
    pasm_model_meta m = {0};
    assert_int_equal(pasm_model_meta_set_classes(&m, " happy ,sad,\tangry"), PASM_OK);
    assert_int_equal(m.n_classes, 3);
    assert_string_equal(m.class_names[0], "happy");
    assert_string_equal(m.class_names[2], "angry");
    assert_int_equal(pasm_model_meta_set_classes(&m, "a,,b"), PASM_ERR_INVALID);
    assert_error_has("name 2 is empty");
    assert_int_equal(m.n_classes, 3); /* unchanged on failure */
    assert_int_equal(pasm_model_meta_set_classes(&m, "a,b,"), PASM_ERR_INVALID);
    assert_int_equal(pasm_model_meta_default_classes(&m, 3), PASM_OK);
    assert_string_equal(m.class_names[2], "class2");
    assert_int_equal(pasm_model_meta_default_classes(&m, 0), PASM_ERR_INVALID);

    pasm_model_meta copy;
    m.args_json = strdup("{}");
    assert_int_equal(pasm_model_meta_copy(&copy, &m), PASM_OK);
    assert_ptr_not_equal(copy.class_names, m.class_names);
    assert_ptr_not_equal(copy.class_names[1], m.class_names[1]);
    assert_string_equal(copy.class_names[1], "class1");
    assert_string_equal(copy.args_json, "{}");
    pasm_model_meta_free(&m);
    assert_null(m.class_names);
    assert_string_equal(copy.class_names[0], "class0"); /* survives the original */
    pasm_model_meta_free(&copy);
}

/* The metadata checks alone, as the fuzzer runs them. */
static void test_read_meta_without_network(void **state) {
    (void)state;
    pasm_model_meta meta;
    assert_int_equal(pasm_checkpoint_read_meta(&good, NULL, &meta), PASM_OK);
    assert_int_equal(meta.net.num_classes, 7);
    pasm_model_meta_free(&meta);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_file_layout),
        cmocka_unit_test(test_pytorch_file_without_metadata),
        cmocka_unit_test(test_inferred_rgb_ferplus),
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_dtype_mismatch),
        cmocka_unit_test(test_metadata_contradicts_tensors),
        cmocka_unit_test(test_bad_metadata_values),
        cmocka_unit_test(test_missing_norm_is_not_an_error),
        cmocka_unit_test(test_unexpected_tensor),
        cmocka_unit_test(test_non_finite_weights),
        cmocka_unit_test(test_truncated_checkpoint),
        cmocka_unit_test(test_save_rejects_bad_meta),
        cmocka_unit_test(test_meta_helpers),
        cmocka_unit_test(test_read_meta_without_network),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
