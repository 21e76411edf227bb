/* `pasm info` end to end: runs the built binary on a checkpoint saved in a
 * scratch folder and checks the table, the --json object and exit codes. */
#include "util/helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cJSON.h>

#include "pasm/pasm.h"

static char scratch[256], ckpt[300];

static int setup(void **state) {
    (void)state;
    test_tmpdir(scratch, sizeof scratch);
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", scratch);
    pasm_net_config cfg = {.arch = "resnet18", .width = 16, .in_channels = 1, .num_classes = 7,
                           .input_size = 32};
    pasm_net *net;
    if (pasm_net_create(&net, &cfg, 1) != PASM_OK) return -1;
    pasm_net_init(net, 1);
    pasm_model_meta meta = {.net = cfg, .n_norm = 1, .norm_mean = {0.5f}, .norm_std = {0.25f}};
    pasm_status st = pasm_model_meta_default_classes(&meta, 7);
    if (st == PASM_OK) st = pasm_checkpoint_save(ckpt, net, &meta);
    pasm_model_meta_free(&meta);
    pasm_net_free(net);
    return st == PASM_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    test_rmdir(scratch);
    return 0;
}

static void test_table(void **state) {
    (void)state;
    char args[400], *out;
    snprintf(args, sizeof args, "info '%s'", ckpt);
    assert_int_equal(test_run_pasm(&out, "%s", args), 0);
    assert_non_null(strstr(out, "format"));
    assert_non_null(strstr(out, "Angry,Disgust,Fear,Happy,Sad,Surprise,Neutral"));
    assert_non_null(strstr(out, "conv1.weight"));
    assert_non_null(strstr(out, "[16, 1, 3, 3]"));
    assert_non_null(strstr(out, "layer1.0.bn1.num_batches_tracked"));
    assert_non_null(strstr(out, "I64"));
    free(out);
}

static void test_json(void **state) {
    (void)state;
    char args[400], *out;
    snprintf(args, sizeof args, "info --json '%s'", ckpt);
    assert_int_equal(test_run_pasm(&out, "%s", args), 0);
    cJSON *root = cJSON_Parse(out);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "path")->valuestring, ckpt);
    cJSON *meta = cJSON_GetObjectItem(root, "metadata");
    assert_string_equal(cJSON_GetObjectItem(meta, "format")->valuestring, "pasm");
    assert_string_equal(cJSON_GetObjectItem(meta, "norm_std")->valuestring, "0.25");
    cJSON *tensors = cJSON_GetObjectItem(root, "tensors");
    pasm_safetensors st;
    assert_int_equal(pasm_safetensors_read(ckpt, &st), PASM_OK);
    assert_int_equal(cJSON_GetArraySize(tensors), st.n_tensors);
    for (int i = 0; i < st.n_tensors; i++) { /* same order, names, dtypes, shapes */
        cJSON *t = cJSON_GetArrayItem(tensors, i);
        assert_string_equal(cJSON_GetObjectItem(t, "name")->valuestring, st.tensors[i].name);
        assert_string_equal(cJSON_GetObjectItem(t, "dtype")->valuestring,
                            pasm_dtype_name(st.tensors[i].dtype));
        cJSON *shape = cJSON_GetObjectItem(t, "shape");
        assert_int_equal(cJSON_GetArraySize(shape), st.tensors[i].ndim);
        for (int d = 0; d < st.tensors[i].ndim; d++)
            assert_int_equal(cJSON_GetArrayItem(shape, d)->valuedouble, st.tensors[i].shape[d]);
    }
    pasm_safetensors_free(&st);
    cJSON_Delete(root);
    free(out);
}

static void test_errors_and_usage(void **state) {
    (void)state;
    char *out;
    assert_int_equal(test_run_pasm(&out, "%s", "info"), 2);
    assert_non_null(strstr(out, "usage: pasm info"));
    free(out);
    assert_int_equal(test_run_pasm(&out, "%s", "info --frobnicate x"), 2);
    assert_non_null(strstr(out, "unknown option '--frobnicate'"));
    free(out);
    assert_int_equal(test_run_pasm(&out, "%s", "info --help"), 0);
    assert_non_null(strstr(out, "--json"));
    free(out);

    char bad[300], args[400];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", scratch);
    assert_int_equal(pasm_write_file_atomic(bad, "\x03\0\0\0\0\0\0\0{x}", 11), PASM_OK);
    snprintf(args, sizeof args, "info '%s'", bad);
    assert_int_equal(test_run_pasm(&out, "%s", args), 1);
    assert_non_null(strstr(out, "pasm info: "));
    assert_non_null(strstr(out, "bad.safetensors: header is not valid JSON"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_errors_and_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
