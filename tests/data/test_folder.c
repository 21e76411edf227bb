/* The image-folder loader on trees the tests build: train/val/test and
 * Kaggle's train/test layouts, one-split roots, unlabelled folders and single
 * files, class naming (FER2013 order, synonyms, Contempt, sorted others),
 * ordering, PNG and JPEG in grey and colour, and the errors: empty class
 * folders, corrupt images, missing split folders. Also class matching. */
#include <sys/stat.h>

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

/* mkdir -p of root/rel. */
static const char *make_dir(const char *root, const char *rel) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    mkdir(path, 0755);
    return path;
}

/* A 6x6 grey PNG filled with value. */
static void grey_png(const char *root, const char *rel, uint8_t value) {
    uint8_t px[36];
    memset(px, value, sizeof px);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    assert_int_equal(pasm_png_write_gray(path, 6, 6, px), PASM_OK);
}

/* A 6x6 grey JPEG filled with value (flat, so JPEG keeps it exactly). */
static void grey_jpg(const char *root, const char *rel, uint8_t value) {
    uint8_t px[36];
    memset(px, value, sizeof px);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    write_jpeg(path, 6, 6, 1, px, 95);
}

static pasm_status load(const char *path, const char *split, int channels, pasm_dataset *ds) {
    pasm_load_spec spec = {.path = path, .split = split, .input_size = 6, .channels = channels};
    return pasm_dataset_load(&spec, ds);
}

/* Image i's first pixel. */
static int first(const pasm_dataset *ds, int i) {
    return ds->images[(size_t)i * ds->channels * 36];
}

static void make_split_tree(const char *root) {
    static const char *const splits[] = {"train", "val", "test"};
    for (int s = 0; s < 3; s++) {
        char rel[256];
        int base = 100 * s;
        snprintf(rel, sizeof rel, "%s/happy", splits[s]), make_dir(root, rel);
        snprintf(rel, sizeof rel, "%s/Sad", splits[s]), make_dir(root, rel);
        snprintf(rel, sizeof rel, "%s/angry", splits[s]), make_dir(root, rel);
        snprintf(rel, sizeof rel, "%s/happy/b.png", splits[s]),
            grey_png(root, rel, (uint8_t)(base + 2));
        snprintf(rel, sizeof rel, "%s/happy/a.jpg", splits[s]),
            grey_jpg(root, rel, (uint8_t)(base + 1));
        snprintf(rel, sizeof rel, "%s/Sad/x.PNG", splits[s]),
            grey_png(root, rel, (uint8_t)(base + 3));
        snprintf(rel, sizeof rel, "%s/angry/z.jpeg", splits[s]),
            grey_jpg(root, rel, (uint8_t)(base + 4));
        snprintf(rel, sizeof rel, "%s/angry/notes.txt", splits[s]);
        write_text(scratch_path(root, rel), "not an image");
        snprintf(rel, sizeof rel, "%s/angry/.hidden.png", splits[s]);
        write_text(scratch_path(root, rel), "dot-files are ignored");
    }
}

static void test_split_layout(void **state) {
    (void)state;
    const char *root = make_dir(dir, "split");
    char rootbuf[4096];
    snprintf(rootbuf, sizeof rootbuf, "%s", root);
    make_split_tree(rootbuf);
    pasm_dataset ds;
    assert_int_equal(load(rootbuf, "Training", 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 4);
    assert_int_equal(ds.n_classes, 7);
    assert_string_equal(ds.class_names[3], "Happy");
    /* Ordered by class (Angry 0, Happy 3, Sad 4), then file name. */
    assert_int_equal(ds.labels[0], 0);
    assert_int_equal(ds.labels[1], 3);
    assert_int_equal(ds.labels[2], 3);
    assert_int_equal(ds.labels[3], 4);
    assert_int_equal(first(&ds, 0), 4);
    assert_int_equal(first(&ds, 1), 1);
    assert_int_equal(first(&ds, 2), 2);
    assert_int_equal(first(&ds, 3), 3);
    assert_non_null(strstr(ds.paths[1], "train/happy/a.jpg"));
    assert_null(ds.rows);
    assert_non_null(strstr(ds.source, "(Training)"));
    pasm_dataset_free(&ds);

    assert_int_equal(load(rootbuf, "PublicTest", 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 4);
    assert_int_equal(first(&ds, 0), 104);
    pasm_dataset_free(&ds);
    assert_int_equal(load(rootbuf, "privatetest", 1, &ds), PASM_OK);
    assert_int_equal(first(&ds, 0), 204);
    pasm_dataset_free(&ds);
    /* Several splits keep the order asked; "all" is train, val, test. */
    assert_int_equal(load(rootbuf, "test+train", 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 8);
    assert_int_equal(first(&ds, 0), 204);
    assert_int_equal(first(&ds, 4), 4);
    pasm_dataset_free(&ds);
    assert_int_equal(load(rootbuf, NULL, 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 12);
    assert_int_equal(first(&ds, 4), 104);
    pasm_dataset_free(&ds);
    assert_int_equal(load(rootbuf, "Holdout", 1, &ds), PASM_ERR_INVALID);
    assert_error_has("has no folder for split 'Holdout'");
}

static void test_kaggle_layout(void **state) {
    (void)state;
    char root[4096];
    snprintf(root, sizeof root, "%s", make_dir(dir, "kaggle"));
    make_dir(root, "train/neutral"), make_dir(root, "test/neutral"),
        make_dir(root, "test/surprise");
    grey_png(root, "train/neutral/1.png", 10);
    grey_png(root, "test/neutral/1.png", 20);
    grey_png(root, "test/surprise/1.png", 30);
    pasm_dataset ds;
    /* test/ serves both PublicTest and PrivateTest, once. */
    assert_int_equal(load(root, "PublicTest", 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 2);
    assert_int_equal(ds.labels[0], 5); /* Surprise before Neutral in FER2013's order */
    assert_int_equal(ds.labels[1], 6);
    pasm_dataset_free(&ds);
    assert_int_equal(load(root, "PublicTest+PrivateTest", 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 2);
    pasm_dataset_free(&ds);
    assert_int_equal(load(root, "Training", 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 1);
    assert_int_equal(ds.n_classes, 7);
    pasm_dataset_free(&ds);
}

static void test_one_split_sorted_classes(void **state) {
    (void)state;
    char root[4096];
    snprintf(root, sizeof root, "%s", make_dir(dir, "pets"));
    make_dir(root, "dog"), make_dir(root, "cat"), make_dir(root, "Zebra");
    grey_png(root, "dog/d.png", 1);
    grey_png(root, "cat/c.png", 2);
    grey_png(root, "Zebra/z.png", 3);
    pasm_dataset ds;
    /* Any split name reads all of a root without split folders. */
    assert_int_equal(load(root, "PrivateTest", 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.n_classes, 3);
    assert_string_equal(ds.class_names[0], "Zebra"); /* strcmp order */
    assert_string_equal(ds.class_names[1], "cat");
    assert_string_equal(ds.class_names[2], "dog");
    assert_int_equal(first(&ds, 0), 3);
    assert_int_equal(first(&ds, 2), 1);
    pasm_dataset_free(&ds);
}

static void test_synonyms_and_contempt(void **state) {
    (void)state;
    char root[4096];
    snprintf(root, sizeof root, "%s", make_dir(dir, "ferplus_folders"));
    static const char *const names[] = {"anger",   "Disgusted", "fearful", "happiness",
                                        "sadness", "surprised", "NEUTRAL", "contempt"};
    for (int i = 0; i < 8; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s", names[i]), make_dir(root, rel);
        snprintf(rel, sizeof rel, "%s/f.png", names[i]), grey_png(root, rel, (uint8_t)(10 * i));
    }
    pasm_dataset ds;
    assert_int_equal(load(root, NULL, 1, &ds), PASM_OK);
    assert_int_equal(ds.n_classes, 8);
    for (int c = 0; c < 8; c++) {
        assert_string_equal(ds.class_names[c], pasm_fer2013_classes[c]);
        assert_int_equal(ds.labels[c], c);
        assert_int_equal(first(&ds, c), 10 * c);
    }
    pasm_dataset_free(&ds);
    /* Two folders meaning one class. */
    make_dir(root, "Happy");
    grey_png(root, "Happy/g.png", 1);
    assert_int_equal(load(root, NULL, 1, &ds), PASM_ERR_FORMAT);
    assert_error_has("class folders 'Happy' and 'happiness' both mean Happy");
}

static void test_colour_and_size(void **state) {
    (void)state;
    char root[4096];
    snprintf(root, sizeof root, "%s", make_dir(dir, "colour"));
    make_dir(root, "a"), make_dir(root, "b");
    /* A flat RGB PNG (PIL luma of (200, 100, 50) is 124) and a flat grey JPEG, 10x4. */
    uint8_t rgb[10 * 4 * 3], grey[10 * 4];
    for (int i = 0; i < 40; i++)
        rgb[3 * i] = 200, rgb[3 * i + 1] = 100, rgb[3 * i + 2] = 50, grey[i] = 77;
    assert_int_equal(pasm_png_write_rgb(scratch_path(root, "a/rgb.png"), 10, 4, rgb), PASM_OK);
    write_jpeg(scratch_path(root, "b/grey.jpg"), 10, 4, 1, grey, 95);
    pasm_dataset ds;
    pasm_load_spec spec = {.path = root, .input_size = 8, .channels = 1};
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_OK);
    assert_int_equal(ds.size, 8);
    for (int k = 0; k < 64; k++)
        assert_int_equal(ds.images[k], 124);
    for (int k = 0; k < 64; k++)
        assert_int_equal(ds.images[64 + k], 77);
    pasm_dataset_free(&ds);
    spec.channels = 3;
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_OK);
    for (int k = 0; k < 64; k++) {
        assert_int_equal(ds.images[k], 200);
        assert_int_equal(ds.images[64 + k], 100);
        assert_int_equal(ds.images[128 + k], 50);
        for (int c = 0; c < 3; c++)
            assert_int_equal(ds.images[192 + c * 64 + k], 77);
    }
    pasm_dataset_free(&ds);
}

static void test_unlabelled(void **state) {
    (void)state;
    char root[4096];
    snprintf(root, sizeof root, "%s", make_dir(dir, "flat"));
    grey_png(root, "2.png", 2);
    grey_png(root, "1.png", 1);
    pasm_dataset ds;
    assert_int_equal(load(root, NULL, 1, &ds), PASM_OK);
    assert_int_equal(ds.n, 2);
    assert_int_equal(ds.labelled, 0);
    assert_int_equal(ds.n_classes, 0);
    assert_int_equal(ds.labels[0], -1);
    assert_int_equal(first(&ds, 0), 1);
    pasm_dataset_free(&ds);
    /* One image file. */
    assert_int_equal(load(scratch_path(root, "2.png"), NULL, 3, &ds), PASM_OK);
    assert_int_equal(ds.n, 1);
    assert_int_equal(ds.channels, 3);
    assert_int_equal(first(&ds, 0), 2);
    assert_non_null(strstr(ds.paths[0], "flat/2.png"));
    pasm_dataset_free(&ds);
}

static void test_bad_folders(void **state) {
    (void)state;
    char root[4096];
    snprintf(root, sizeof root, "%s", make_dir(dir, "bad"));
    make_dir(root, "train/happy"), make_dir(root, "train/sad");
    grey_png(root, "train/happy/1.png", 1);
    write_text(scratch_path(root, "train/sad/readme.txt"), "no faces here");
    pasm_dataset ds;
    assert_int_equal(load(root, "train", 1, &ds), PASM_ERR_FORMAT);
    assert_error_has("bad/train/sad: class folder has no images");
    /* Corrupt images: the first in dataset order is named, whatever the threads did. */
    grey_png(root, "train/sad/1.png", 1);
    for (int i = 0; i < 40; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "train/sad/%02d.png", 10 + i);
        grey_png(root, rel, 3);
    }
    write_text(scratch_path(root, "train/sad/30.png"), "\x89PNG\r\n\x1a\ngarbage");
    write_text(scratch_path(root, "train/sad/45.jpg"), "\xFF\xD8\xFF\xE0 broken");
    assert_int_equal(load(root, "train", 1, &ds), PASM_ERR_FORMAT);
    assert_error_has("train/sad/30.png", "corrupt or unreadable PNG");
    assert_null(ds.images);
    remove(scratch_path(root, "train/sad/30.png"));
    assert_int_equal(load(root, "train", 1, &ds), PASM_ERR_FORMAT);
    assert_error_has("train/sad/45.jpg", "JPEG");
    /* A truncated JPEG. */
    uint8_t px[64 * 64];
    for (int i = 0; i < 64 * 64; i++)
        px[i] = (uint8_t)(i * 7);
    const char *full = scratch_path(dir, "full.jpg");
    write_jpeg(full, 64, 64, 1, px, 90);
    size_t size;
    unsigned char *bytes = read_bytes(full, &size);
    write_bytes(scratch_path(root, "train/sad/45.jpg"), bytes, size * 2 / 3);
    free(bytes);
    assert_int_equal(load(root, "train", 1, &ds), PASM_ERR_FORMAT);
    assert_error_has("train/sad/45.jpg", "Premature end of JPEG file");
    /* No split folder for the split asked. */
    char only_val[4096];
    snprintf(only_val, sizeof only_val, "%s", make_dir(dir, "onlyval/val/happy"));
    grey_png(only_val, "1.png", 1);
    snprintf(only_val, sizeof only_val, "%s/onlyval", dir);
    assert_int_equal(load(only_val, "Training", 1, &ds), PASM_ERR_INVALID);
    assert_error_has("onlyval has no folder for split 'Training' (it has val/)");
    /* A folder with nothing usable. */
    char empty[4096];
    snprintf(empty, sizeof empty, "%s", make_dir(dir, "nothing"));
    write_text(scratch_path(empty, "a.txt"), "x");
    assert_int_equal(load(empty, NULL, 1, &ds), PASM_ERR_FORMAT);
    assert_error_has("nothing: no images");
}

static void test_match_classes(void **state) {
    (void)state;
    char root[4096];
    snprintf(root, sizeof root, "%s", make_dir(dir, "match"));
    make_dir(root, "angry"), make_dir(root, "happy"), make_dir(root, "sad");
    grey_png(root, "angry/1.png", 1);
    grey_png(root, "angry/2.png", 2);
    grey_png(root, "happy/1.png", 3);
    grey_png(root, "sad/1.png", 4);
    pasm_dataset ds;
    assert_int_equal(load(root, NULL, 1, &ds), PASM_OK);
    /* A FER+ model: names and order differ, synonyms match. */
    char *warning = (char *)1;
    assert_int_equal(pasm_dataset_match_classes(&ds, pasm_ferplus_classes, 8, 0, &warning),
                     PASM_OK);
    assert_null(warning);
    assert_int_equal(ds.n, 4);
    assert_int_equal(ds.n_classes, 8);
    assert_string_equal(ds.class_names[4], "anger");
    assert_int_equal(ds.labels[0], 4); /* anger */
    assert_int_equal(ds.labels[2], 1); /* happiness */
    assert_int_equal(ds.labels[3], 3); /* sadness */
    pasm_dataset_free(&ds);

    /* A model without Angry: an error naming it, or the images dropped with a warning. */
    const char *const two[] = {"Sad", "HAPPY"};
    assert_int_equal(load(root, NULL, 1, &ds), PASM_OK);
    assert_int_equal(pasm_dataset_match_classes(&ds, two, 2, 0, NULL), PASM_ERR_INVALID);
    assert_error_has("class 'Angry' (2 images) is not one of the model's classes (Sad, HAPPY)");
    assert_int_equal(ds.n, 4); /* untouched on error */
    assert_int_equal(pasm_dataset_match_classes(&ds, two, 2, 1, &warning), PASM_OK);
    assert_non_null(warning);
    assert_non_null(strstr(warning, "dropped 2 images"));
    assert_non_null(strstr(warning, "Angry (2)"));
    printf("  warning: %s\n", warning);
    free(warning);
    assert_int_equal(ds.n, 2);
    assert_int_equal(ds.labels[0], 1);
    assert_int_equal(ds.labels[1], 0);
    assert_int_equal(first(&ds, 0), 3);
    assert_int_equal(first(&ds, 1), 4);
    assert_non_null(strstr(ds.paths[1], "sad/1.png"));
    assert_string_equal(ds.class_names[0], "Sad");
    pasm_dataset_free(&ds);

    /* Classes of the folder without images never matter. */
    const char *const three[] = {"angry", "happy", "sad"};
    assert_int_equal(load(root, NULL, 1, &ds), PASM_OK);
    assert_int_equal(pasm_dataset_match_classes(&ds, three, 3, 0, NULL), PASM_OK);
    assert_int_equal(ds.labels[3], 2);
    pasm_dataset_free(&ds);
}

static void test_class_names(void **state) {
    (void)state;
    assert_int_equal(pasm_class_canonical("Anger"), 0);
    assert_int_equal(pasm_class_canonical("angry"), 0);
    assert_int_equal(pasm_class_canonical("DISGUSTED"), 1);
    assert_int_equal(pasm_class_canonical("fearful"), 2);
    assert_int_equal(pasm_class_canonical("happiness"), 3);
    assert_int_equal(pasm_class_canonical("Sadness"), 4);
    assert_int_equal(pasm_class_canonical("surprised"), 5);
    assert_int_equal(pasm_class_canonical("neutral"), 6);
    assert_int_equal(pasm_class_canonical("contempt"), 7);
    assert_int_equal(pasm_class_canonical("cat"), -1);
    assert_int_equal(pasm_class_canonical(NULL), -1);
    assert_true(pasm_class_names_match("happiness", "Happy"));
    assert_true(pasm_class_names_match("Cat", "cat"));
    assert_false(pasm_class_names_match("cat", "dog"));
    assert_false(pasm_class_names_match("sad", "angry"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_layout),
        cmocka_unit_test(test_kaggle_layout),
        cmocka_unit_test(test_one_split_sorted_classes),
        cmocka_unit_test(test_synonyms_and_contempt),
        cmocka_unit_test(test_colour_and_size),
        cmocka_unit_test(test_unlabelled),
        cmocka_unit_test(test_bad_folders),
        cmocka_unit_test(test_match_classes),
        cmocka_unit_test(test_class_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
