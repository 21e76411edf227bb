/* FER+ labels joined to a FER2013 CSV by row position: plurality vote with
 * ties to the lowest column, unknown/NF/no-vote rows dropped, FER+'s eight
 * classes, split selection through either file's Usage, and the mismatches
 * that must be errors. All files are written by the test. */
#include "data/data_test_util.h"

static char dir[256];

static int setup(void **state) {
    (void)state;
    test_tmpdir(dir, sizeof dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_rmdir(dir);
    return 0;
}

#define FERPLUS_HEADER                                                                             \
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"

/* Six official rows; face i has pixels 10*i .. 10*i+3 (2x2). */
static const char *official = "emotion,pixels,Usage\n"
                              "0,0 1 2 3,Training\n"
                              "3,10 11 12 13,Training\n"
                              "6,20 21 22 23,Training\n"
                              "2,30 31 32 33,PublicTest\n"
                              "5,40 41 42 43,PrivateTest\n"
                              "4,50 51 52 53,Training\n";

/* Row by row: happiness plurality; a 4-4 tie of neutral and sadness (lowest,
 * neutral, wins); unknown plurality (dropped); contempt; NF (dropped); no
 * votes at all (dropped). */
static const char *ferplus = FERPLUS_HEADER "Training,fer0000000.png,1,7,0,0,0,0,0,0,2,0\n"
                                            "Training,fer0000001.png,4,0,0,4,1,0,1,0,0,0\n"
                                            "Training,fer0000002.png,2,0,0,0,0,0,0,0,6,2\n"
                                            "PublicTest,fer0028709.png,0,0,1,0,0,0,0,9,0,0\n"
                                            "PrivateTest,,0,0,0,0,0,0,0,0,0,10\n"
                                            "Training,fer0000005.png,0,0,0,0,0,0,0,0,0,0\n";

static pasm_status load(const char *csv, const char *labels, const char *split, pasm_dataset *ds) {
    pasm_load_spec spec = {.path = csv, .split = split, .input_size = 2, .labels = labels};
    return pasm_dataset_load(&spec, ds);
}

static void test_join(void **state) {
    (void)state;
    const char *csv = scratch_path(dir, "fer2013.csv"),
               *labels = scratch_path(dir, "fer2013new.csv");
    write_text(csv, official);
    write_text(labels, ferplus);
    pasm_dataset ds;
    assert_int_equal(load(csv, labels, "all", &ds), PASM_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.n_classes, 8);
    for (int c = 0; c < 8; c++)
        assert_string_equal(ds.class_names[c], pasm_ferplus_classes[c]);
    assert_string_equal(ds.class_names[0], "neutral");
    assert_string_equal(ds.class_names[7], "contempt");
    assert_int_equal(ds.labels[0], 1); /* happiness */
    assert_int_equal(ds.labels[1], 0); /* the tie goes to neutral */
    assert_int_equal(ds.labels[2], 7); /* contempt */
    assert_int_equal(ds.rows[0], 0);
    assert_int_equal(ds.rows[1], 1);
    assert_int_equal(ds.rows[2], 3);
    assert_int_equal(ds.images[2 * 4], 30); /* the face of row 3 */
    pasm_dataset_free(&ds);

    assert_int_equal(load(csv, labels, "Training", &ds), PASM_OK);
    assert_int_equal(ds.n, 2);
    pasm_dataset_free(&ds);
    /* PrivateTest has one row, and FER+ drops it (NF). */
    assert_int_equal(load(csv, labels, "PrivateTest", &ds), PASM_ERR_FORMAT);
    assert_error_has("no faces in split 'PrivateTest'");

    /* Gzip FER+ labels work the same. */
    const char *gz = scratch_path(dir, "fer2013new.csv.gz");
    write_gz(gz, ferplus);
    assert_int_equal(load(csv, gz, "PublicTest", &ds), PASM_OK);
    assert_int_equal(ds.n, 1);
    assert_int_equal(ds.labels[0], 7);
    pasm_dataset_free(&ds);
}

static void test_usage_from_ferplus(void **state) {
    (void)state;
    /* A Kaggle-style CSV without Usage takes FER+'s. */
    const char *csv = scratch_path(dir, "nousage.csv"), *labels = scratch_path(dir, "fp.csv");
    write_text(
        csv, "pixels\n0 1 2 3\n10 11 12 13\n20 21 22 23\n30 31 32 33\n40 41 42 43\n50 51 52 53\n");
    write_text(labels, ferplus);
    pasm_dataset ds;
    assert_int_equal(load(csv, labels, "PublicTest", &ds), PASM_OK);
    assert_int_equal(ds.n, 1);
    assert_int_equal(ds.labelled, 1);
    assert_int_equal(ds.images[0], 30);
    pasm_dataset_free(&ds);
}

static void test_mismatches(void **state) {
    (void)state;
    const char *csv = scratch_path(dir, "fer2013.csv"), *labels = scratch_path(dir, "short.csv");
    write_text(csv, official);
    pasm_dataset ds;
    /* One row fewer in FER+. */
    const char *cut = strstr(ferplus, "Training,fer0000005.png");
    char *fewer = strndup(ferplus, (size_t)(cut - ferplus));
    write_text(labels, fewer);
    free(fewer);
    assert_int_equal(load(csv, labels, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("fer2013.csv has 6 data rows but the FER+ labels have 5");
    /* One row more. */
    char more[2048];
    snprintf(more, sizeof more, "%sTraining,x.png,1,0,0,0,0,0,0,0,0,0\n", ferplus);
    write_text(labels, more);
    assert_int_equal(load(csv, labels, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("6 data rows but the FER+ labels have 7");
    /* Usage that disagrees. */
    char swapped[2048];
    snprintf(swapped, sizeof swapped, "%s", ferplus);
    char *pub = strstr(swapped, "PublicTest,");
    memcpy(pub, "PrivateTest", 11);
    memmove(pub + 11, pub + 10, strlen(pub + 10) + 1); /* "PublicTest," -> "PrivateTest," */
    pub[11] = ',';
    write_text(labels, swapped);
    assert_int_equal(load(csv, labels, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("fer2013.csv:5:",
                     "Usage PublicTest disagrees with the FER+ file's PrivateTest");
}

static void test_bad_ferplus(void **state) {
    (void)state;
    const char *csv = scratch_path(dir, "fer2013.csv"), *labels = scratch_path(dir, "bad.csv");
    write_text(csv, official);
    pasm_dataset ds;
    write_text(
        labels,
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,unknown,NF\n");
    assert_int_equal(load(csv, labels, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("bad.csv:1:", "no 'contempt' column");
    write_text(labels, FERPLUS_HEADER "Training,a.png,1,x,0,0,0,0,0,0,0,0\n");
    assert_int_equal(load(csv, labels, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("bad.csv:2:", "happiness votes 'x'");
    write_text(labels, FERPLUS_HEADER "Training,a.png,1,0,0,0,0,0,0,0,0\n");
    assert_int_equal(load(csv, labels, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("bad.csv:2:", "missing columns");
    write_text(labels, FERPLUS_HEADER "Holdout,a.png,1,0,0,0,0,0,0,0,0,0\n");
    assert_int_equal(load(csv, labels, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("bad.csv:2:", "Usage 'Holdout'");
    write_text(labels, "");
    assert_int_equal(load(csv, labels, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("bad.csv", "empty file");
    assert_int_equal(load(csv, scratch_path(dir, "missing.csv"), "all", &ds), PASM_ERR_IO);
    assert_error_has("missing.csv");
    /* FER+ labels make no sense for a folder. */
    assert_int_equal(load(dir, labels, "all", &ds), PASM_ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_usage_from_ferplus),
        cmocka_unit_test(test_mismatches),
        cmocka_unit_test(test_bad_ferplus),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
