/* The loaders on the real FER2013 files in $PASM_SHARED/data: the mini CSV,
 * the image-folder sample (whose JPEGs must decode to exactly the pixels
 * Pillow put in the CSV), and the full fer2013.csv.gz, whose split and class
 * counts are read from MANIFEST.txt. The full file is skipped under the
 * sanitizers, where it would take minutes. */
#include "data/data_test_util.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

static const char *const splits[3] = {"Training", "PublicTest", "PrivateTest"};

/* counts[split][class] from the MANIFEST table under the line starting with section. */
static void manifest_counts(const char *section, long counts[3][7]) {
    size_t size;
    unsigned char *text = read_bytes(test_shared_path("data/fer2013/MANIFEST.txt"), &size);
    text[size] = '\0';
    const char *p = strstr((const char *)text, section);
    assert_non_null(p);
    for (int s = 0; s < 3; s++) {
        char key[32];
        snprintf(key, sizeof key, "\n  %s ", splits[s]);
        const char *row = strstr(p, key);
        assert_non_null(row);
        row += strlen(key);
        for (int c = 0; c < 7; c++)
            counts[s][c] = strtol(row, (char **)&row, 10);
        long total = strtol(row, NULL, 10), sum = 0;
        for (int c = 0; c < 7; c++)
            sum += counts[s][c];
        assert_int_equal(sum, total);
    }
    free(text);
}

static void check_counts(const pasm_dataset *ds, const long *want) {
    int64_t got[8];
    assert_int_equal(ds->n_classes, 7);
    pasm_dataset_class_counts(ds, got);
    for (int c = 0; c < 7; c++) {
        if (got[c] != want[c])
            fail_msg("%s: class %s has %lld images, MANIFEST says %ld", ds->source,
                     ds->class_names[c], (long long)got[c], want[c]);
    }
}

static void test_mini_csv(void **state) {
    (void)state;
    long want[3][7];
    manifest_counts("fer2013/fer2013-mini.csv", want);
    const int totals[3] = {1400, 350, 350};
    for (int s = 0; s < 3; s++) {
        pasm_load_spec spec = {.path = test_shared_path("data/fer2013/fer2013-mini.csv"),
                               .split = splits[s]};
        pasm_dataset ds;
        assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_OK);
        printf("  %s: %d faces\n", ds.source, ds.n);
        assert_int_equal(ds.n, totals[s]);
        assert_int_equal(ds.size, 48);
        check_counts(&ds, want[s]);
        pasm_dataset_free(&ds);
    }
}

static void test_folder_sample(void **state) {
    (void)state;
    long want[3][7];
    manifest_counts("fer2013-folders-sample/", want);
    const int totals[3] = {210, 70, 70};
    for (int s = 0; s < 3; s++) {
        pasm_load_spec spec = {.path = test_shared_path("data/fer2013-folders-sample"),
                               .split = splits[s]};
        pasm_dataset ds;
        assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_OK);
        printf("  %s: %d faces\n", ds.source, ds.n);
        assert_int_equal(ds.n, totals[s]);
        check_counts(&ds, want[s]);
        for (int c = 0; c < 7; c++)
            assert_string_equal(ds.class_names[c], pasm_fer2013_classes[c]);
        /* The split folder holds the split's own files. */
        assert_non_null(strstr(ds.paths[0], s == 0   ? "/train/angry/Training_"
                                            : s == 1 ? "/val/angry/PublicTest_"
                                                     : "/test/angry/PrivateTest_"));
        pasm_dataset_free(&ds);
    }
}

/* Every train/ JPEG of the sample is one of the mini CSV's Training faces of
 * its class, pixel for pixel: the CSV was made by Pillow decoding them. */
static void test_folder_pixels_match_csv(void **state) {
    (void)state;
    pasm_load_spec folder_spec = {.path = test_shared_path("data/fer2013-folders-sample"),
                                  .split = "train"};
    pasm_dataset folder, csv;
    assert_int_equal(pasm_dataset_load(&folder_spec, &folder), PASM_OK);
    pasm_load_spec csv_spec = {.path = test_shared_path("data/fer2013/fer2013-mini.csv"),
                               .split = "Training"};
    assert_int_equal(pasm_dataset_load(&csv_spec, &csv), PASM_OK);
    int matched = 0;
    for (int i = 0; i < folder.n; i++)
        for (int j = 0; j < csv.n; j++)
            if (csv.labels[j] == folder.labels[i] &&
                memcmp(folder.images + i * 2304, csv.images + j * 2304, 2304) == 0) {
                matched++;
                break;
            }
    printf("  %d of %d folder faces found in the CSV, byte for byte\n", matched, folder.n);
    assert_int_equal(matched, folder.n);
    pasm_dataset_free(&folder);
    pasm_dataset_free(&csv);
}

static void test_full_fer2013(void **state) {
    (void)state;
#ifdef SANITIZED
    skip();
#endif
    long want[3][7];
    manifest_counts("fer2013/fer2013.csv.gz", want);
    pasm_load_spec spec = {.path = test_shared_path("data/fer2013/fer2013.csv.gz"),
                           .split = "Training"};
    pasm_dataset ds;
    double t = pasm_now_seconds();
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_OK);
    printf("  %s: %d faces in %.2f s\n", ds.source, ds.n, pasm_now_seconds() - t);
    assert_int_equal(ds.n, 28709);
    check_counts(&ds, want[0]);
    pasm_dataset_free(&ds);

    /* Both test splits in one pass. Rows run Training, PublicTest, PrivateTest
     * (README), so the first 3589 faces are PublicTest's. */
    spec.split = "PublicTest+PrivateTest";
    t = pasm_now_seconds();
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_OK);
    printf("  %s: %d faces in %.2f s\n", ds.source, ds.n, pasm_now_seconds() - t);
    assert_int_equal(ds.n, 3589 + 3589);
    assert_int_equal(ds.rows[0], 28709);
    assert_int_equal(ds.rows[ds.n - 1], 35886);
    pasm_dataset public_test, private_test;
    int *idx = malloc(sizeof(int) * (size_t)ds.n);
    for (int i = 0; i < ds.n; i++)
        idx[i] = i;
    assert_int_equal(pasm_dataset_subset(&ds, idx, 3589, &public_test), PASM_OK);
    assert_int_equal(pasm_dataset_subset(&ds, idx + 3589, 3589, &private_test), PASM_OK);
    check_counts(&public_test, want[1]);
    check_counts(&private_test, want[2]);
    free(idx);
    pasm_dataset_free(&public_test);
    pasm_dataset_free(&private_test);
    pasm_dataset_free(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mini_csv),
        cmocka_unit_test(test_folder_sample),
        cmocka_unit_test(test_folder_pixels_match_csv),
        cmocka_unit_test(test_full_fer2013),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
