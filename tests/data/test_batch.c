/* The stratified validation split, mean/std, batch assembly and the
 * augmentation: checked against direct re-implementations of torchvision's
 * semantics (explicit reflect padding, then crop, then flip, then erasing)
 * drawing the same numbers, plus determinism per (seed, epoch, index). */
#include <math.h>

#include "data/data_test_util.h"

/* n images of size S, C channels, labels from counts per class, pixel values from a formula. */
static void make_dataset(pasm_dataset *ds, const int *counts, int n_classes, int C, int S) {
    int n = 0;
    for (int c = 0; c < n_classes; c++)
        n += counts[c];
    assert_int_equal(pasm_dataset_alloc(ds, n, C, S, "test set"), PASM_OK);
    const char *names[8] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    assert_int_equal(pasm_dataset_set_classes(ds, names, n_classes), PASM_OK);
    ds->labelled = 1;
    /* Classes interleaved, so stratification has work to do. */
    int left[8];
    memcpy(left, counts, sizeof(int) * (size_t)n_classes);
    for (int i = 0, c = 0; i < n; c = (c + 1) % n_classes) {
        if (!left[c]) continue;
        left[c]--;
        ds->labels[i++] = c;
    }
    for (size_t k = 0; k < (size_t)n * C * S * S; k++)
        ds->images[k] = (uint8_t)((k * 2654435761u) >> 24);
}

static void test_split_stratified(void **state) {
    (void)state;
    const int counts[] = {100, 20, 1, 5, 2};
    pasm_dataset ds;
    make_dataset(&ds, counts, 5, 1, 4);
    int *ti, *vi, nt, nv;
    assert_int_equal(pasm_dataset_split_indices(&ds, 0.1, 42, &ti, &nt, &vi, &nv), PASM_OK);
    /* 10% rounded: 10, 2, 0 (a single image stays in training), 1 (0.5 rounds up), 1 (at least one
     * of two). */
    const int expect[] = {10, 2, 0, 1, 1};
    int got[5] = {0};
    for (int i = 0; i < nv; i++)
        got[ds.labels[vi[i]]]++;
    for (int c = 0; c < 5; c++)
        assert_int_equal(got[c], expect[c]);
    assert_int_equal(nt + nv, ds.n);
    /* Disjoint, sorted, covering. */
    uint8_t *seen = calloc((size_t)ds.n, 1);
    for (int i = 0; i < nt; i++)
        seen[ti[i]]++, assert_true(i == 0 || ti[i] > ti[i - 1]);
    for (int i = 0; i < nv; i++)
        seen[vi[i]]++, assert_true(i == 0 || vi[i] > vi[i - 1]);
    for (int i = 0; i < ds.n; i++)
        assert_int_equal(seen[i], 1);
    free(seen);
    /* The same seed gives the same split; another seed another. */
    int *ti2, *vi2, nt2, nv2;
    assert_int_equal(pasm_dataset_split_indices(&ds, 0.1, 42, &ti2, &nt2, &vi2, &nv2), PASM_OK);
    assert_int_equal(nv2, nv);
    assert_memory_equal(vi2, vi, sizeof(int) * (size_t)nv);
    free(ti2), free(vi2);
    assert_int_equal(pasm_dataset_split_indices(&ds, 0.1, 43, &ti2, &nt2, &vi2, &nv2), PASM_OK);
    assert_int_equal(nv2, nv);
    assert_true(memcmp(vi2, vi, sizeof(int) * (size_t)nv) != 0);
    free(ti2), free(vi2);

    /* As datasets: the copies hold the right images. */
    pasm_dataset train, val;
    assert_int_equal(pasm_dataset_split(&ds, 0.1, 42, &train, &val), PASM_OK);
    assert_int_equal(val.n, nv);
    assert_int_equal(train.n, nt);
    assert_int_equal(val.n_classes, 5);
    assert_memory_equal(val.images + 16 * 3, ds.images + 16 * (size_t)vi[3], 16);
    assert_int_equal(train.labels[7], ds.labels[ti[7]]);
    assert_non_null(strstr(val.source, "validation"));
    pasm_dataset_free(&train), pasm_dataset_free(&val);
    free(ti), free(vi);

    assert_int_equal(pasm_dataset_split_indices(&ds, 1.0, 1, &ti, &nt, &vi, &nv), PASM_ERR_INVALID);
    ds.labelled = 0;
    assert_int_equal(pasm_dataset_split_indices(&ds, 0.1, 1, &ti, &nt, &vi, &nv), PASM_ERR_INVALID);
    assert_error_has("needs labelled images");
    pasm_dataset_free(&ds);
}

static void test_mean_std(void **state) {
    (void)state;
    pasm_dataset ds;
    assert_int_equal(pasm_dataset_alloc(&ds, 2, 3, 2, "ms"), PASM_OK);
    /* Channel 0: half 0, half 255 -> mean 0.5, std 0.5. Channel 1: all 51 -> 0.2, 0. */
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) {
            ds.images[i * 12 + k] = (uint8_t)(i ? 255 : 0);
            ds.images[i * 12 + 4 + k] = 51;
            ds.images[i * 12 + 8 + k] = (uint8_t)(i * 4 + k);
        }
    float mean[3], std[3];
    assert_int_equal(pasm_dataset_mean_std(&ds, mean, std), PASM_OK);
    assert_float_equal(mean[0], 0.5f, 1e-7);
    assert_float_equal(std[0], 0.5f, 1e-7);
    assert_float_equal(mean[1], 0.2f, 1e-7);
    assert_float_equal(std[1], 0.0f, 1e-7);
    /* Channel 2: 0..7 -> mean 3.5, population std sqrt(5.25). */
    assert_float_equal(mean[2], 3.5f / 255, 1e-7);
    assert_float_equal(std[2], (float)(sqrt(5.25) / 255), 1e-7);
    pasm_dataset_free(&ds);
}

static void test_batch_make(void **state) {
    (void)state;
    const int counts[] = {3, 3};
    pasm_dataset ds;
    make_dataset(&ds, counts, 2, 3, 5);
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.2f, 0.1f};
    const int idx[] = {4, 0, 4};
    float x[3 * 75];
    int32_t labels[3];
    assert_int_equal(pasm_batch_make(&ds, idx, 3, mean, std, x, labels), PASM_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(labels[i], ds.labels[idx[i]]);
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 25; k++) {
                float p = ds.images[idx[i] * 75 + c * 25 + k];
                float want = (p / 255.0f - mean[c]) / std[c]; /* float32, torchvision's order */
                assert_true(x[i * 75 + c * 25 + k] == want);
            }
    }
    const int bad_idx[] = {6};
    assert_int_equal(pasm_batch_make(&ds, bad_idx, 1, mean, std, x, NULL), PASM_ERR_INVALID);
    const float zero[3] = {0.1f, 0, 0.1f};
    assert_int_equal(pasm_batch_make(&ds, idx, 1, mean, zero, x, NULL), PASM_ERR_INVALID);
    pasm_dataset_free(&ds);
}

/* ---- augmentation against a direct reference ---- */

static int reflect(int i, int S) {
    return i < 0 ? -i : i >= S ? 2 * (S - 1) - i : i;
}

/* torchvision, literally: pad (reflect), crop at (top, left), flip, erase. */
static void reference(const float *in, float *out, int C, int S, const pasm_augment_config *cfg,
                      uint64_t seed, uint64_t epoch, int index) {
    pasm_rng r;
    pasm_rng_init(&r, seed, PASM_RNG_AUGMENT, epoch, (uint64_t)index);
    int P = cfg->crop_padding, PS = S + 2 * P;
    int top = P ? (int)pasm_rng_below(&r, (uint32_t)(2 * P + 1)) : P;
    int left = P ? (int)pasm_rng_below(&r, (uint32_t)(2 * P + 1)) : P;
    int flip = cfg->hflip && pasm_rng_uniform(&r) < 0.5f;
    float *padded = malloc(sizeof(float) * (size_t)C * PS * PS);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < PS; y++)
            for (int x = 0; x < PS; x++)
                padded[(c * PS + y) * PS + x] =
                    in[(c * S + reflect(y - P, S)) * S + reflect(x - P, S)];
    for (int c = 0; c < C; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int sx = flip ? S - 1 - x : x;
                out[(c * S + y) * S + x] = padded[(c * PS + y + top) * PS + sx + left];
            }
    free(padded);
    if (cfg->erase_p > 0 && pasm_rng_uniform(&r) < cfg->erase_p) {
        double area = (double)S * S, lo = log(cfg->erase_ratio_min), hi = log(cfg->erase_ratio_max);
        for (int attempt = 0; attempt < 10; attempt++) {
            double scale = cfg->erase_scale_min +
                           (cfg->erase_scale_max - cfg->erase_scale_min) * pasm_rng_uniform(&r);
            double aspect = exp(lo + (hi - lo) * pasm_rng_uniform(&r));
            int h = (int)nearbyint(sqrt(area * scale * aspect)),
                w = (int)nearbyint(sqrt(area * scale / aspect));
            if (!(h < S && w < S) || h < 1 || w < 1) continue;
            int i = (int)pasm_rng_below(&r, (uint32_t)(S - h + 1)),
                j = (int)pasm_rng_below(&r, (uint32_t)(S - w + 1));
            for (int c = 0; c < C; c++)
                for (int y = i; y < i + h; y++)
                    for (int x = j; x < j + w; x++)
                        out[(c * S + y) * S + x] = 0.0f;
            break;
        }
    }
}

static float *random_batch(int n, int C, int S, uint64_t seed) {
    float *x = malloc(sizeof(float) * (size_t)n * C * S * S);
    pasm_rng r;
    pasm_rng_init(&r, seed, PASM_RNG_INIT, 0, 0);
    for (size_t k = 0; k < (size_t)n * C * S * S; k++)
        x[k] = pasm_rng_normal(&r) + 3.0f; /* never 0 */
    return x;
}

static void test_augment_matches_reference(void **state) {
    (void)state;
    const int n = 64, C = 3, S = 12;
    pasm_augment_config cfg;
    pasm_augment_defaults(&cfg);
    assert_int_equal(cfg.crop_padding, 4);
    assert_int_equal(cfg.hflip, 1);
    assert_true(cfg.erase_p == 0.0f);
    cfg.erase_p = 0.5f;
    int idx[64];
    for (int i = 0; i < n; i++)
        idx[i] = 1000 + 7 * i;
    float *x = random_batch(n, C, S, 1), *orig = random_batch(n, C, S, 1);
    float *want = malloc(sizeof(float) * (size_t)C * S * S);
    assert_int_equal(pasm_augment_batch(x, n, C, S, &cfg, 99, 3, idx), PASM_OK);
    int flipped_or_moved = 0, erased = 0;
    for (int i = 0; i < n; i++) {
        reference(orig + (size_t)i * C * S * S, want, C, S, &cfg, 99, 3, idx[i]);
        assert_memory_equal(x + (size_t)i * C * S * S, want, sizeof(float) * (size_t)C * S * S);
        flipped_or_moved +=
            memcmp(want, orig + (size_t)i * C * S * S, sizeof(float) * (size_t)C * S * S) != 0;
        for (int k = 0; k < C * S * S; k++)
            if (want[k] == 0.0f) {
                erased++;
                break;
            }
    }
    printf("  %d of %d samples moved or flipped, %d erased (p 0.5)\n", flipped_or_moved, n, erased);
    assert_true(flipped_or_moved > n / 2);
    assert_true(erased > n / 4 && erased < 3 * n / 4);
    free(x), free(orig), free(want);
}

/* A sample's augmentation depends on (seed, epoch, its index), not on its batch position. */
static void test_augment_per_sample(void **state) {
    (void)state;
    const int C = 1, S = 10, plane = C * S * S;
    pasm_augment_config cfg;
    pasm_augment_defaults(&cfg);
    cfg.erase_p = 0.7f;
    float *a = random_batch(6, C, S, 5), *b = malloc(sizeof(float) * 6 * plane);
    /* b holds a's samples in reverse order, with the same indices. */
    for (int i = 0; i < 6; i++)
        memcpy(b + i * plane, a + (5 - i) * plane, sizeof(float) * plane);
    int ia[6] = {10, 11, 12, 13, 14, 15}, ib[6] = {15, 14, 13, 12, 11, 10};
    assert_int_equal(pasm_augment_batch(a, 6, C, S, &cfg, 7, 2, ia), PASM_OK);
    assert_int_equal(pasm_augment_batch(b, 6, C, S, &cfg, 7, 2, ib), PASM_OK);
    for (int i = 0; i < 6; i++)
        assert_memory_equal(a + i * plane, b + (5 - i) * plane, sizeof(float) * plane);
    /* Another epoch draws anew. */
    float *c = random_batch(6, C, S, 5), *d = random_batch(6, C, S, 5);
    assert_int_equal(pasm_augment_batch(c, 6, C, S, &cfg, 7, 2, ia), PASM_OK);
    assert_int_equal(pasm_augment_batch(d, 6, C, S, &cfg, 7, 3, ia), PASM_OK);
    assert_memory_equal(c, a, sizeof(float) * 6 * plane);
    assert_true(memcmp(c, d, sizeof(float) * 6 * plane) != 0);
    free(a), free(b), free(c), free(d);
}

static void test_augment_off_and_errors(void **state) {
    (void)state;
    const int S = 8;
    pasm_augment_config cfg = {0};
    float *x = random_batch(4, 3, S, 2), *orig = random_batch(4, 3, S, 2);
    int idx[4] = {0, 1, 2, 3};
    assert_int_equal(pasm_augment_batch(x, 4, 3, S, &cfg, 1, 0, idx), PASM_OK);
    assert_memory_equal(x, orig, sizeof(float) * 4 * 3 * S * S);
    cfg.crop_padding = S;
    assert_int_equal(pasm_augment_batch(x, 4, 3, S, &cfg, 1, 0, idx), PASM_ERR_INVALID);
    assert_error_has("crop padding 8");
    cfg.crop_padding = 0;
    cfg.erase_p = 0.5f;
    cfg.erase_scale_min = 0.5f, cfg.erase_scale_max = 0.1f, cfg.erase_ratio_min = 1,
    cfg.erase_ratio_max = 1;
    assert_int_equal(pasm_augment_batch(x, 4, 3, S, &cfg, 1, 0, idx), PASM_ERR_INVALID);
    free(x), free(orig);
}

/* Erasing always (p = 1): erased boxes cover 2%..40% of the face in area
 * (give or take the rounding of h and w), aspect within 0.3..3.3, and the
 * random value mode fills N(0, 1). */
static void test_erasing_statistics(void **state) {
    (void)state;
    const int n = 400, S = 32, plane = S * S;
    pasm_augment_config cfg = {0};
    pasm_augment_defaults(&cfg);
    cfg.crop_padding = 0, cfg.hflip = 0, cfg.erase_p = 1.0f;
    float *x = random_batch(n, 1, S, 3);
    int *idx = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++)
        idx[i] = i;
    assert_int_equal(pasm_augment_batch(x, n, 1, S, &cfg, 11, 0, idx), PASM_OK);
    double min_frac = 1, max_frac = 0, sum_frac = 0;
    for (int i = 0; i < n; i++) {
        int zeros = 0, y0 = S, y1 = -1, x0 = S, x1 = -1;
        for (int k = 0; k < plane; k++)
            if (x[i * plane + k] == 0.0f) {
                zeros++;
                int y = k / S, xx = k % S;
                y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1, x0 = xx < x0 ? xx : x0,
                x1 = xx > x1 ? xx : x1;
            }
        assert_true(zeros > 0);
        assert_int_equal(zeros, (y1 - y0 + 1) * (x1 - x0 + 1)); /* one solid box */
        double aspect = (double)(y1 - y0 + 1) / (x1 - x0 + 1);
        assert_true(aspect > 0.3 * 0.7 && aspect < 3.3 / 0.7);
        double frac = (double)zeros / plane;
        min_frac = frac < min_frac ? frac : min_frac, max_frac = frac > max_frac ? frac : max_frac;
        sum_frac += frac;
    }
    printf("  erased area: min %.3f max %.3f mean %.3f of the face\n", min_frac, max_frac,
           sum_frac / n);
    assert_true(min_frac >= 0.01 && max_frac <= 0.45);
    assert_true(fabs(sum_frac / n - 0.21) < 0.03); /* uniform 0.02..0.4 has mean 0.21 */
    /* Random values: about N(0, 1) inside the boxes. */
    cfg.erase_random = 1;
    float *y = random_batch(n, 1, S, 3), *orig = random_batch(n, 1, S, 3);
    assert_int_equal(pasm_augment_batch(y, n, 1, S, &cfg, 11, 0, idx), PASM_OK);
    double s = 0, s2 = 0;
    long m = 0;
    for (int k = 0; k < n * plane; k++)
        if (x[k] == 0.0f) { /* the same boxes: the draws before the values are the same */
            s += y[k], s2 += (double)y[k] * y[k], m++;
            assert_true(y[k] != orig[k]);
        }
    double mean = s / m, sd = sqrt(s2 / m - mean * mean);
    printf("  random erasing values: mean %.3f sd %.3f over %ld pixels\n", mean, sd, m);
    assert_true(fabs(mean) < 0.05 && fabs(sd - 1) < 0.05);
    free(x), free(y), free(orig), free(idx);
}

/* erase_always_from: samples from that index on are always erased (the
 * random-erasing control's second copy), those before it follow erase_p;
 * the erased boxes are those erase_p = 1 draws for the same indices. */
static void test_erase_always_from(void **state) {
    (void)state;
    const int n = 64, S = 24, plane = S * S, from = 40;
    pasm_augment_config cfg = {0};
    pasm_augment_defaults(&cfg);
    cfg.crop_padding = 0, cfg.hflip = 0;
    cfg.erase_always_from = from;
    float *x = random_batch(n, 1, S, 5), *orig = random_batch(n, 1, S, 5);
    float *all = random_batch(n, 1, S, 5);
    int *idx = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) idx[i] = i;
    assert_int_equal(pasm_augment_batch(x, n, 1, S, &cfg, 3, 2, idx), PASM_OK);
    pasm_augment_config one = cfg;
    one.erase_always_from = 0, one.erase_p = 1.0f;
    assert_int_equal(pasm_augment_batch(all, n, 1, S, &one, 3, 2, idx), PASM_OK);
    for (int i = 0; i < n; i++) {
        int changed = memcmp(x + i * plane, orig + i * plane, sizeof(float) * plane) != 0;
        assert_int_equal(changed, i >= from);
        if (i >= from) assert_memory_equal(x + i * plane, all + i * plane, sizeof(float) * plane);
    }
    free(x), free(orig), free(all), free(idx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_erase_always_from),
        cmocka_unit_test(test_split_stratified),   cmocka_unit_test(test_mean_std),
        cmocka_unit_test(test_batch_make),         cmocka_unit_test(test_augment_matches_reference),
        cmocka_unit_test(test_augment_per_sample), cmocka_unit_test(test_augment_off_and_errors),
        cmocka_unit_test(test_erasing_statistics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
