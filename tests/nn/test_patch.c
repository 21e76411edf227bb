/* pasm_net_patch (src/nn/patch.c): one-pixel candidates computed on windows
 * around the changed pixel give the logits of the whole forward over the
 * assembled images, at every position (corners, edges, the middle), for one
 * and three channels and several input sizes, in any order of faces, in
 * groups of any size; its cost model; where it does not apply; its errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static pasm_net *make_net(int width, int channels, int size, int batch, pasm_net_mode mode,
                          int precision) {
    pasm_net_config cfg = {.arch = "resnet18", .width = width, .in_channels = channels,
                           .num_classes = 7, .input_size = size, .precision = precision};
    pasm_net *net = NULL;
    if (pasm_net_create_mode(&net, &cfg, batch, mode))
        fail_msg("pasm_net_create_mode: %s", pasm_last_error());
    return net;
}

/* n faces (n, C, S, S): real faces of fer2013-mini for one channel, smooth
 * random ones for three, normalised (mean 0.5, std 0.25). */
static float *faces(int n, int channels, int size, uint64_t seed) {
    const int64_t per = (int64_t)channels * size * size;
    float *x = malloc((size_t)n * per * sizeof(float));
    assert_non_null(x);
    if (channels == 1) {
        pasm_dataset ds;
        memset(&ds, 0, sizeof ds);
        pasm_load_spec spec = {.path = test_shared_path("data/fer2013/fer2013-mini.csv"),
                               .split = "PublicTest", .input_size = size, .channels = 1};
        if (pasm_dataset_load(&spec, &ds)) fail_msg("%s", pasm_last_error());
        int idx[16];
        int32_t labels[16];
        for (int i = 0; i < n; i++) idx[i] = 3 * i;
        float mean[1] = {0.5f}, std[1] = {0.25f};
        if (pasm_batch_make(&ds, idx, n, mean, std, x, labels)) fail_msg("%s", pasm_last_error());
        pasm_dataset_free(&ds);
        return x;
    }
    pasm_rng r;
    pasm_rng_init(&r, seed, PASM_RNG_SYNTH, 3, 0);
    for (int64_t i = 0; i < n * per; i++) x[i] = (pasm_rng_uniform(&r) - 0.5f) * 4.0f;
    return x;
}

/* m candidates over n faces: every corner, edge middle and the centre of
 * each face, then random pixels, faces in a shuffled order with repeats. */
static int candidates(int n, int channels, int size, uint64_t seed, int *img, int *row, int *col,
                      float *values, int max) {
    const int fixed[9][2] = {{0, 0},        {0, size - 1},        {size - 1, 0},
                             {size - 1, size - 1}, {0, size / 2},  {size / 2, 0},
                             {size - 1, size / 2}, {size / 2, size - 1}, {size / 2, size / 2}};
    pasm_rng r;
    pasm_rng_init(&r, seed, PASM_RNG_SYNTH, 4, 0);
    int m = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 9 && m < max; k++, m++) {
            img[m] = (i * 5 + k) % n; /* faces interleaved, not in runs */
            row[m] = fixed[k][0], col[m] = fixed[k][1];
        }
    for (; m < max; m++) {
        img[m] = (int)pasm_rng_below(&r, (uint32_t)n);
        row[m] = (int)pasm_rng_below(&r, (uint32_t)size);
        col[m] = (int)pasm_rng_below(&r, (uint32_t)size);
    }
    for (int j = 0; j < m * channels; j++) values[j] = (pasm_rng_uniform(&r) - 0.5f) * 6.0f;
    return m;
}

/* The whole forward over the assembled candidates, in batches. */
static void reference(pasm_net *net, const float *x, int m, const int *img, const int *row,
                      const int *col, const float *values, float *logits) {
    const pasm_net_config *cfg = pasm_net_get_config(net);
    const int C = cfg->in_channels, S = cfg->input_size, K = cfg->num_classes;
    const int64_t per = (int64_t)C * S * S;
    const int batch = pasm_net_max_batch(net);
    float *buf = malloc((size_t)batch * per * sizeof(float));
    assert_non_null(buf);
    for (int start = 0; start < m; start += batch) {
        int b = m - start < batch ? m - start : batch;
        for (int j = 0; j < b; j++) {
            int q = start + j;
            memcpy(buf + j * per, x + (int64_t)img[q] * per, (size_t)per * sizeof(float));
            for (int c = 0; c < C; c++)
                buf[j * per + (int64_t)c * S * S + row[q] * S + col[q]] = values[q * C + c];
        }
        const float *out;
        assert_int_equal(pasm_net_forward(net, buf, b, 0, &out), PASM_OK);
        memcpy(logits + (int64_t)start * K, out, (size_t)b * K * sizeof(float));
    }
    free(buf);
}

/* Patch logits against the reference for one configuration; budget bounds
 * the groups. Returns the largest difference relative to max|logit|. */
static double check_config(int width, int channels, int size, int n_faces, int m, size_t budget,
                           uint64_t seed) {
    pasm_net *net = make_net(width, channels, size, 32, PASM_NET_EVAL, 0);
    test_randomise_net(net, seed, 2);
    float *x = faces(n_faces, channels, size, seed);
    int *img = malloc((size_t)m * sizeof(int)), *row = malloc((size_t)m * sizeof(int)),
        *col = malloc((size_t)m * sizeof(int));
    float *values = malloc((size_t)m * channels * sizeof(float));
    float *got = malloc((size_t)m * 7 * sizeof(float)), *want = malloc((size_t)m * 7 * sizeof(float));
    m = candidates(n_faces, channels, size, seed, img, row, col, values, m);
    reference(net, x, m, img, row, col, values, want);
    pasm_net_patch *p = NULL;
    assert_int_equal(pasm_net_patch_create(net, budget, &p), PASM_OK);
    assert_non_null(p);
    assert_int_equal(pasm_net_patch_bind(p, x, n_faces), PASM_OK);
    assert_int_equal(pasm_net_patch_forward(p, m, img, row, col, values, got), PASM_OK);
    char what[96];
    snprintf(what, sizeof what, "w%d C%d %dx%d, %d candidates, budget %zu", width, channels, size,
             size, m, budget);
    double rel = test_rel_diff(got, want, (int64_t)m * 7);
    test_assert_close(what, got, want, (int64_t)m * 7, 2e-5, 1e-4);
    /* the same again after a rebind: nothing left over from the first */
    assert_int_equal(pasm_net_patch_bind(p, x, n_faces), PASM_OK);
    float *again = malloc((size_t)m * 7 * sizeof(float));
    assert_int_equal(pasm_net_patch_forward(p, m, img, row, col, values, again), PASM_OK);
    assert_memory_equal(again, got, (size_t)m * 7 * sizeof(float));
    pasm_net_patch_free(p);
    pasm_net_free(net);
    free(again), free(x), free(img), free(row), free(col), free(values), free(got), free(want);
    return rel;
}

static void test_matches_full_forward(void **state) {
    (void)state;
    check_config(16, 1, 48, 5, 120, 64u << 20, 11);  /* real faces, stages 1-2 and a block of 3 */
    check_config(16, 3, 32, 4, 80, 64u << 20, 12);   /* RGB, a smaller map */
    check_config(16, 1, 64, 3, 60, 64u << 20, 13);   /* a larger map: more blocks windowed */
    check_config(16, 1, 33, 3, 60, 64u << 20, 14);   /* odd sides: uneven strides */
}

/* A budget of one face and one candidate a group: every candidate its own
 * group (a new clean pass each), the same logits. */
static void test_small_groups(void **state) {
    (void)state;
    check_config(16, 1, 48, 4, 40, 1, 21);
    check_config(16, 3, 40, 3, 30, 200u << 10, 22);
}

/* The cost model: at 48x48 a candidate costs about half a forward; a face's
 * clean activations about the first two and a half stages. */
static void test_cost(void **state) {
    (void)state;
    const int widths[2] = {16, 64};
    for (int i = 0; i < 2; i++) {
        pasm_net *net = make_net(widths[i], 1, 48, 4, PASM_NET_EVAL, 0);
        pasm_net_patch *p = NULL;
        assert_int_equal(pasm_net_patch_create(net, 16u << 20, &p), PASM_OK);
        assert_non_null(p);
        double clean, cand = pasm_net_patch_cost(p, &clean);
        printf("  w%d 48x48: a candidate %.3f of a forward, a face's clean pass %.3f\n",
               widths[i], cand, clean);
        assert_true(cand > 0.35 && cand < 0.6);
        assert_true(clean > 0.5 && clean < 0.75);
        pasm_net_patch_free(p);
        pasm_net_free(net);
    }
}

/* bf16 networks get no windows (NULL, no error); errors name the problem. */
static void test_errors(void **state) {
    (void)state;
    pasm_net *net = make_net(16, 1, 32, 4, PASM_NET_EVAL, PASM_PRECISION_BF16);
    pasm_net_patch *p = (pasm_net_patch *)&p;
    assert_int_equal(pasm_net_patch_create(net, 1u << 20, &p), PASM_OK);
    assert_null(p);
    pasm_net_free(net);

    net = make_net(16, 1, 32, 4, PASM_NET_EVAL_GRAD, 0);
    test_randomise_net(net, 5, 2);
    assert_int_equal(pasm_net_patch_create(net, 1u << 20, &p), PASM_OK);
    assert_non_null(p);
    int img = 0, row = 3, col = 4;
    float v = 1.0f, logits[7];
    assert_int_equal(pasm_net_patch_forward(p, 1, &img, &row, &col, &v, logits), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "no faces bound"));
    float *x = faces(2, 1, 32, 5);
    assert_int_equal(pasm_net_patch_bind(p, x, 2), PASM_OK);
    img = 2;
    assert_int_equal(pasm_net_patch_forward(p, 1, &img, &row, &col, &v, logits), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "candidate 0 is face 2"));
    img = 1, col = 32;
    assert_int_equal(pasm_net_patch_forward(p, 1, &img, &row, &col, &v, logits), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "pixel (3, 32)"));
    /* a backward after a patch forward is refused: the activations are the
     * candidates' */
    const float *out;
    assert_int_equal(pasm_net_forward(net, x, 2, 0, &out), PASM_OK);
    col = 4;
    assert_int_equal(pasm_net_patch_forward(p, 1, &img, &row, &col, &v, logits), PASM_OK);
    float dl[14] = {0}, dx[2 * 32 * 32];
    assert_int_not_equal(pasm_net_backward(net, dl, dx), PASM_OK);
    assert_int_equal(pasm_net_patch_bind(p, NULL, 0), PASM_OK);
    assert_int_equal(pasm_net_patch_forward(p, 1, &img, &row, &col, &v, logits), PASM_ERR_INVALID);
    pasm_net_patch_free(p);
    pasm_net_free(net);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_full_forward),
        cmocka_unit_test(test_small_groups),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
