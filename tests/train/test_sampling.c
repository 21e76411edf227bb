/* Epoch orders: shuffles are permutations fixed by (seed, epoch); the
 * balanced sampler draws each class about equally often from an imbalanced
 * set; class weights are n / (k * n_c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/pasm.h"
#include "train/sampling.h"
#include "util/helpers.h"

/* 1000 images: class 0 has 800, class 1 150, class 2 50. */
static void make_imbalanced(pasm_dataset *ds) {
    assert_int_equal(pasm_dataset_alloc(ds, 1000, 1, 4, "imbalanced"), PASM_OK);
    for (int i = 0; i < 1000; i++) ds->labels[i] = i < 800 ? 0 : i < 950 ? 1 : 2;
    ds->labelled = 1;
    const char *names[] = {"a", "b", "c"};
    assert_int_equal(pasm_dataset_set_classes(ds, names, 3), PASM_OK);
}

static void test_shuffle_is_a_seeded_permutation(void **unused) {
    pasm_dataset ds;
    make_imbalanced(&ds);
    static int a[1000], b[1000], c[1000], seen[1000];
    pasm_epoch_order(&ds, PASM_BALANCE_NONE, NULL, 7, 3, a);
    pasm_epoch_order(&ds, PASM_BALANCE_NONE, NULL, 7, 3, b);
    pasm_epoch_order(&ds, PASM_BALANCE_NONE, NULL, 7, 4, c);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 1000; i++) seen[a[i]]++;
    for (int i = 0; i < 1000; i++) assert_int_equal(seen[i], 1);
    pasm_dataset_free(&ds);
}

static void test_balanced_sampler_and_weights(void **unused) {
    pasm_dataset ds;
    make_imbalanced(&ds);
    float weights[3];
    static double cdf[1000];
    pasm_class_balance(&ds, 3, weights, cdf);
    assert_true(fabsf(weights[0] - 1000.0f / (3 * 800)) < 1e-6f);
    assert_true(fabsf(weights[2] - 1000.0f / (3 * 50)) < 1e-5f);
    static int order[1000];
    int per_class[3] = {0};
    for (int epoch = 0; epoch < 30; epoch++) {
        pasm_epoch_order(&ds, PASM_BALANCE_SAMPLER, cdf, 1, epoch, order);
        for (int i = 0; i < 1000; i++) {
            assert_true(order[i] >= 0 && order[i] < 1000);
            per_class[ds.labels[order[i]]]++;
        }
    }
    /* 30000 draws, each class expected 10000: within 3% */
    for (int c = 0; c < 3; c++) {
        printf("  class %d drawn %d times of 30000\n", c, per_class[c]);
        assert_true(abs(per_class[c] - 10000) < 300);
    }
    pasm_dataset_free(&ds);
}

/* The replace mix's epochs: one of each pair (image i or its twin N + i),
 * twins with the given probability, drawn anew every epoch. */
static void test_pairs(void **unused) {
    enum { N = 2000 };
    static int a[N], b[N], c[N], seen[N];
    pasm_epoch_order_pairs(N, 0.3f, 5, 2, a);
    pasm_epoch_order_pairs(N, 0.3f, 5, 2, b);
    pasm_epoch_order_pairs(N, 0.3f, 5, 3, c);
    assert_memory_equal(a, b, sizeof a);
    memset(seen, 0, sizeof seen);
    int twins = 0, flipped = 0;
    for (int k = 0; k < N; k++) {
        assert_true(a[k] >= 0 && a[k] < 2 * N);
        seen[a[k] % N]++;
        twins += a[k] >= N;
    }
    for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1); /* one of each pair */
    /* the twin choice of image i changes between epochs */
    static int twin_a[N], twin_c[N];
    for (int k = 0; k < N; k++) twin_a[a[k] % N] = a[k] >= N, twin_c[c[k] % N] = c[k] >= N;
    for (int i = 0; i < N; i++) flipped += twin_a[i] != twin_c[i];
    printf("  twins %d of %d (p 0.3), %d choices differ between epochs\n", twins, N, flipped);
    assert_true(abs(twins - 600) < 90);   /* ~4.4 sd */
    assert_true(abs(flipped - 840) < 110); /* 2 p (1 - p) N, ~4.4 sd */
    pasm_epoch_order_pairs(N, 0.0f, 5, 2, b);
    for (int k = 0; k < N; k++) assert_true(b[k] < N);
    pasm_epoch_order_pairs(N, 1.0f, 5, 2, b);
    for (int k = 0; k < N; k++) assert_true(b[k] >= N);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shuffle_is_a_seeded_permutation),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_balanced_sampler_and_weights),
    };
    return cmocka_run_group_tests_name("train/sampling", tests, NULL, NULL);
}
